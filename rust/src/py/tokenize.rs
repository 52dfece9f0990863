//! `tokenize` for Python: corpus -> packed shards + manifest (returned as JSON text).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::{options, run_detached, PyProgress};
use crate::options::TokenizeOptions;

/// Tokenizes a corpus into packed causal-LM or MLM shards; returns the manifest as JSON text.
/// `options`: the keyword arguments of `dataprep.tokenize` (see `options_schema("tokenize")`).
#[pyfunction]
#[pyo3(signature = (*, progress=None, **options))]
fn tokenize(
    py: Python<'_>,
    progress: Option<PyRef<'_, PyProgress>>,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<String> {
    let (opts, given) = options::parse::<TokenizeOptions>("tokenize", options)?;
    let progress = progress.map(|p| p.clone()).unwrap_or_default();
    let manifest = run_detached(py, || opts.run(&given, &progress.0))?;
    serde_json::to_string(&manifest).map_err(|e| PyValueError::new_err(e.to_string()))
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(tokenize, m)?)
}
