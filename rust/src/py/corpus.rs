//! `read_documents` and `discover` for inspection and tests, and the reading statistics as a dict.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::run_detached;
use crate::corpus::{self, ReadStats};
use crate::options::CorpusOptions;

pub(crate) fn stats_dict<'py>(py: Python<'py>, s: &ReadStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("files", s.files)?;
    d.set_item("documents", s.documents)?;
    d.set_item("bytes", s.bytes)?;
    d.set_item("invalid_utf8_replaced", s.invalid_utf8_replaced)?;
    d.set_item("invalid_utf8_skipped", s.invalid_utf8_skipped)?;
    d.set_item("empty_skipped", s.empty_skipped)?;
    d.set_item("truncated_documents", s.truncated_documents)?;
    d.set_item("binary_skipped", s.binary_skipped)?;
    d.set_item("binary_skipped_paths", s.binary_paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>())?;
    Ok(d)
}

/// Reads every document of `inputs` into memory: `(docs, stats)`, each doc a dict with `text`,
/// `file`, `index`, `id`, `title`. For inspection and tests; stages stream instead.
/// `options`: the corpus reading options (`format`, `text_unit`, `jsonl_field`, `parquet_column`,
/// `invalid_utf8`), as every command takes them.
#[pyfunction]
#[pyo3(signature = (inputs, **options))]
fn read_documents<'py>(
    py: Python<'py>,
    inputs: Vec<PathBuf>,
    options: Option<&Bound<'py, PyDict>>,
) -> PyResult<(Vec<Bound<'py, PyDict>>, Bound<'py, PyDict>)> {
    let (opts, _) = super::options::parse::<CorpusOptions>("read_documents", options)?;
    let cfg = opts.config();
    let (docs, stats) = run_detached(py, || {
        let files = corpus::discover(&inputs)?;
        let mut docs = Vec::new();
        let mut stats = ReadStats::default();
        for (no, f) in files.iter().enumerate() {
            let st = corpus::read_file(f, no as u32, stats.documents, &cfg, |d| {
                docs.push(d);
                Ok(())
            })?;
            stats.add(&st);
        }
        Ok((docs, stats))
    })?;
    let out = docs
        .into_iter()
        .map(|d| {
            let x = PyDict::new(py);
            x.set_item("text", d.text)?;
            x.set_item("file", d.file)?;
            x.set_item("index", d.index)?;
            x.set_item("id", d.id)?;
            x.set_item("title", d.title)?;
            Ok(x)
        })
        .collect::<PyResult<_>>()?;
    Ok((out, stats_dict(py, &stats)?))
}

/// The files `inputs` expand to, with their sizes.
#[pyfunction]
fn discover(py: Python<'_>, inputs: Vec<PathBuf>) -> PyResult<Vec<(PathBuf, u64)>> {
    let files = run_detached(py, || corpus::discover(&inputs))?;
    Ok(files.into_iter().map(|f| (f.path, f.size)).collect())
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(read_documents, m)?)?;
    m.add_function(wrap_pyfunction!(discover, m)?)?;
    Ok(())
}
