//! `dedup` and `dedup_banding` for Python (see `dataprep.dedup`).

use numpy::PyArray1;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::corpus::stats_dict;
use super::{options, run_detached, PyProgress};
use crate::dedup::{bands, DedupConfig, Mode};
use crate::options::dedup::DedupOutcome;
use crate::options::DedupOptions;

/// `(bands, rows, probability)`: the banding chosen for `threshold` and the probability that a
/// pair exactly at the threshold becomes a candidate.
#[pyfunction]
#[pyo3(signature = (threshold=0.8, num_perm=128, verify=true))]
fn dedup_banding(threshold: f64, num_perm: usize, verify: bool) -> (usize, usize, f64) {
    let (b, r) = DedupConfig::new(Mode::Near).threshold(threshold).num_perm(num_perm).verify(verify).banding();
    (b, r, bands::collision_probability(threshold, b, r))
}

/// Finds duplicates and, when `out` is given, writes the kept documents and `clusters.jsonl`
/// there. `options`: the keyword arguments of `dataprep.dedup` (see `options_schema("dedup")`).
/// Returns a dict of statistics with `removed` (numpy uint64 indices).
#[pyfunction]
#[pyo3(signature = (*, progress=None, **options))]
#[pyo3(name = "dedup")]
fn dedup_py<'py>(
    py: Python<'py>,
    progress: Option<PyRef<'py, PyProgress>>,
    options: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyDict>> {
    let (opts, given) = options::parse::<DedupOptions>("dedup", options)?;
    let progress = progress.map(|p| p.clone()).unwrap_or_default();
    let DedupOutcome { result, written, threads } = run_detached(py, || opts.run(&given, &progress.0))?;
    let s = &result.stats;
    let d = stats_dict(py, &s.read)?;
    d.set_item("mode", if opts.mode == Mode::Exact { "exact" } else { "near" })?;
    d.set_item("exact_removed", s.exact_removed)?;
    d.set_item("near_removed", s.near_removed)?;
    d.set_item("kept", s.documents - result.removed.len() as u64)?;
    d.set_item("no_shingles", s.no_shingles)?;
    d.set_item("candidate_pairs", s.candidate_pairs)?;
    d.set_item("similar_pairs", s.similar_pairs)?;
    d.set_item("clusters", result.clusters.len())?;
    d.set_item("bands", s.bands)?;
    d.set_item("rows", s.rows)?;
    d.set_item("threshold", opts.threshold)?;
    d.set_item("verify", opts.verify)?;
    d.set_item("ngram", opts.ngram)?;
    d.set_item("num_perm", opts.num_perm)?;
    d.set_item("seed", opts.seed)?;
    let norm = PyDict::new(py);
    norm.set_item("nfc", opts.nfc)?;
    norm.set_item("whitespace", opts.whitespace)?;
    norm.set_item("lowercase", opts.lowercase)?;
    d.set_item("normalization", norm)?;
    d.set_item("threads", threads)?;
    d.set_item("read_seconds", s.read_seconds)?;
    d.set_item("verify_seconds", s.verify_seconds)?;
    d.set_item("dedup_seconds", s.seconds)?;
    if let Some(w) = written {
        d.set_item("outputs", w.paths)?;
        d.set_item("report", w.report)?;
    }
    d.set_item("removed", PyArray1::from_vec(py, result.removed))?;
    Ok(d)
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(dedup_py, m)?)?;
    m.add_function(wrap_pyfunction!(dedup_banding, m)?)?;
    Ok(())
}
