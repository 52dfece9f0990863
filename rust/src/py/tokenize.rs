//! `tokenize` for Python: corpus -> packed shards + manifest (returned as JSON text).

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyIterator};

use super::{options, run_detached, to_json, Listing, PyProgress};
use crate::options::TokenizeOptions;

/// Tokenizes a corpus into packed causal-LM or MLM shards; returns the manifest as JSON text.
/// `options`: the keyword arguments of `dataprep.tokenize` (see `options_schema("tokenize")`).
#[pyfunction]
#[pyo3(signature = (*, progress=None, listing=None, **options))]
fn tokenize(
    py: Python<'_>,
    progress: Option<PyRef<'_, PyProgress>>,
    listing: Option<Listing>,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<String> {
    let (mut opts, given) = options::parse::<TokenizeOptions>("tokenize", options)?;
    opts.corpus.listing = listing;
    let progress = progress.map(|p| p.clone()).unwrap_or_default();
    let manifest = run_detached(py, || opts.run(&given, &progress.0))?;
    to_json(&manifest)
}

/// The run `--engine ray` plans units for: JSON `{"config_hash", "inputs": [[path, bytes], ...]}`.
/// Validates like `tokenize`; takes no lock, writes nothing.
#[pyfunction]
#[pyo3(signature = (*, listing=None, **options))]
fn tokenize_plan(py: Python<'_>, listing: Option<Listing>, options: Option<&Bound<'_, PyDict>>) -> PyResult<String> {
    let (mut opts, given) = options::parse::<TokenizeOptions>("tokenize", options)?;
    opts.corpus.listing = listing;
    let plan = run_detached(py, || opts.plan(&given))?;
    to_json(&plan)
}

/// Reads and encodes `unit_files` (consecutive inputs of the plan) into the work unit file
/// `unit_out`; returns its record as JSON (config hash, files, documents, tokens, bytes, sha256).
#[pyfunction]
#[pyo3(signature = (*, unit_files, unit_out, progress=None, listing=None, **options))]
fn tokenize_unit(
    py: Python<'_>,
    unit_files: Vec<String>,
    unit_out: PathBuf,
    progress: Option<PyRef<'_, PyProgress>>,
    listing: Option<Listing>,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<String> {
    let (mut opts, given) = options::parse::<TokenizeOptions>("tokenize", options)?;
    opts.corpus.listing = listing;
    let progress = progress.map(|p| p.clone()).unwrap_or_default();
    let record = run_detached(py, || opts.unit(&given, &unit_files, &unit_out, &progress.0))?;
    to_json(&record)
}

/// Builds the shards from work units, byte-identical to `tokenize`'s; returns the manifest as JSON
/// text. `units`: an iterable of `(unit file path, SHA-256)` in plan order, pulled as the shards
/// are built (a driver's generator may block until the next unit is done; an exception it
/// raises ends the run with its message).
#[pyfunction]
#[pyo3(signature = (*, units, progress=None, listing=None, **options))]
fn tokenize_assemble(
    py: Python<'_>,
    units: &Bound<'_, PyAny>,
    progress: Option<PyRef<'_, PyProgress>>,
    listing: Option<Listing>,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<String> {
    let (mut opts, given) = options::parse::<TokenizeOptions>("tokenize", options)?;
    opts.corpus.listing = listing;
    let progress = progress.map(|p| p.clone()).unwrap_or_default();
    let iter: Py<PyIterator> = units.try_iter()?.unbind();
    let mut pull = std::iter::from_fn(move || {
        Python::attach(|py| {
            let next = iter.bind(py).clone().next()?;
            Some(next.and_then(|u| u.extract::<(PathBuf, String)>()).map_err(|e| {
                let msg = e.value(py).to_string();
                crate::error::Error::Config(if msg.is_empty() { e.to_string() } else { msg })
            }))
        })
    });
    let units = std::sync::Mutex::new(&mut pull as &mut (dyn Iterator<Item = crate::Result<(PathBuf, String)>> + Send));
    let manifest = run_detached(py, || opts.assemble(&given, &units, &progress.0))?;
    to_json(&manifest)
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(tokenize, m)?)?;
    m.add_function(wrap_pyfunction!(tokenize_plan, m)?)?;
    m.add_function(wrap_pyfunction!(tokenize_unit, m)?)?;
    m.add_function(wrap_pyfunction!(tokenize_assemble, m)?)
}
