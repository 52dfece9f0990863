//! `dedup` and `dedup_banding` for Python (see `dataprep.dedup`).

use std::path::PathBuf;

use numpy::PyArray1;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::corpus::{corpus_config, stats_dict};
use super::{run_detached, PyProgress};
use crate::corpus;
use crate::dedup::{bands, find_duplicates, output, DedupConfig, Mode, Normalization};

/// `(bands, rows, probability)`: the banding chosen for `threshold` and the probability that a
/// pair exactly at the threshold becomes a candidate.
#[pyfunction]
#[pyo3(signature = (threshold=0.8, num_perm=128, verify=true))]
fn dedup_banding(threshold: f64, num_perm: usize, verify: bool) -> (usize, usize, f64) {
    let (b, r) = DedupConfig::new(Mode::Near).threshold(threshold).num_perm(num_perm).verify(verify).banding();
    (b, r, bands::collision_probability(threshold, b, r))
}

/// Finds duplicates and, when `out_dir` is given, writes the kept documents and
/// `clusters.jsonl` there. Returns a dict of statistics with `removed` (numpy uint64 indices).
#[pyfunction]
#[pyo3(signature = (inputs, out_dir=None, *, mode="near", threshold=0.8, ngram=5, num_perm=128, bands=None,
    verify=true, nfc=true, whitespace=true, lowercase=false, seed=1, threads=None, memory_mb=512, temp_dir=None,
    format="auto", text_unit="file", jsonl_field="text", parquet_column="text", invalid_utf8="replace", progress=None))]
#[pyo3(name = "dedup")]
// The Python keyword arguments, owned as PyO3 extracts them.
#[allow(clippy::too_many_arguments, clippy::fn_params_excessive_bools, clippy::needless_pass_by_value)]
fn dedup_py<'py>(
    py: Python<'py>,
    inputs: Vec<PathBuf>,
    out_dir: Option<PathBuf>,
    mode: &str,
    threshold: f64,
    ngram: usize,
    num_perm: usize,
    bands: Option<(usize, usize)>,
    verify: bool,
    nfc: bool,
    whitespace: bool,
    lowercase: bool,
    seed: u64,
    threads: Option<usize>,
    memory_mb: usize,
    temp_dir: Option<PathBuf>,
    format: &str,
    text_unit: &str,
    jsonl_field: &str,
    parquet_column: &str,
    invalid_utf8: &str,
    progress: Option<PyRef<'py, PyProgress>>,
) -> PyResult<Bound<'py, PyDict>> {
    let corpus_cfg = corpus_config(format, text_unit, jsonl_field, parquet_column, invalid_utf8)?;
    let mode = match mode {
        "exact" => Mode::Exact,
        "near" => Mode::Near,
        o => return Err(PyValueError::new_err(format!("unknown dedup mode {o:?} (exact, near)"))),
    };
    let mut cfg = DedupConfig::new(mode)
        .normalization(Normalization { nfc, whitespace, lowercase })
        .threshold(threshold)
        .ngram(ngram)
        .num_perm(num_perm)
        .bands(bands)
        .verify(verify)
        .seed(seed)
        .memory_bytes(memory_mb << 20)
        .temp_dir(temp_dir);
    if let Some(t) = threads {
        cfg = cfg.threads(t);
    }
    let progress = progress.map(|p| p.clone()).unwrap_or_default();
    let (result, written) = run_detached(py, || {
        let files = corpus::discover(&inputs)?;
        let result = find_duplicates(&files, &corpus_cfg, &cfg, &progress.0)?;
        let written = match &out_dir {
            Some(dir) => Some(output::write_output(&files, &corpus_cfg, &result, dir, cfg.threads, &progress.0)?),
            None => None,
        };
        Ok((result, written))
    })?;
    let s = &result.stats;
    let d = stats_dict(py, &s.read)?;
    d.set_item("mode", if mode == Mode::Exact { "exact" } else { "near" })?;
    d.set_item("exact_removed", s.exact_removed)?;
    d.set_item("near_removed", s.near_removed)?;
    d.set_item("kept", s.documents - result.removed.len() as u64)?;
    d.set_item("no_shingles", s.no_shingles)?;
    d.set_item("candidate_pairs", s.candidate_pairs)?;
    d.set_item("similar_pairs", s.similar_pairs)?;
    d.set_item("clusters", result.clusters.len())?;
    d.set_item("bands", s.bands)?;
    d.set_item("rows", s.rows)?;
    d.set_item("threshold", threshold)?;
    d.set_item("verify", verify)?;
    d.set_item("threads", cfg.threads)?;
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
