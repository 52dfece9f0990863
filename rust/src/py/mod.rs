//! The PyO3 layer: the only code that knows about Python. Every long call goes through
//! [`run_detached`], the one place that releases the GIL and maps core errors to Python ones;
//! cancellation (Ctrl-C) reaches a job through its `Progress` handle, which the Python side
//! cancels from its main thread while the job runs on another.

mod corpus;
mod dedup;
mod mask;
mod options;
mod tokenize;
mod tokenizer;

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::exceptions::{PyException, PyKeyboardInterrupt, PyValueError};
use pyo3::prelude::*;

use crate::error::Error;
use crate::progress;

pyo3::create_exception!(
    _core,
    DataprepError,
    PyException,
    "A problem with an input, an output or the options; the message names it."
);

fn to_pyerr(e: Error) -> PyErr {
    match e {
        Error::Cancelled => PyKeyboardInterrupt::new_err("cancelled"),
        Error::Config(msg) => PyValueError::new_err(msg),
        other => DataprepError::new_err(other.to_string()),
    }
}

/// The `listing` keyword of the corpus-reading calls: `[(name, size, local copy or None)]`, the
/// inputs as `dataprep.storage` listed remote objects (see `options::CorpusOptions::listing`).
pub(crate) type Listing = Vec<(String, u64, Option<PathBuf>)>;

/// `v` as JSON text, the form results that are documents (manifests, plans, unit records) take.
pub(crate) fn to_json(v: &impl serde::Serialize) -> PyResult<String> {
    serde_json::to_string(v).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// Runs `f` with the GIL released and maps its error.
pub(crate) fn run_detached<T: Send>(py: Python<'_>, f: impl FnOnce() -> crate::Result<T> + Send) -> PyResult<T> {
    py.detach(f).map_err(to_pyerr)
}

/// Progress of a running job; poll `snapshot()` from another thread, `cancel()` to stop it.
#[pyclass(name = "Progress", frozen)]
#[derive(Default, Clone)]
pub struct PyProgress(pub Arc<progress::Progress>);

#[pymethods]
impl PyProgress {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// `(phase, done, total, documents, tokens)`: units done and total in the current phase.
    fn snapshot(&self) -> (String, u64, u64, u64, u64) {
        let s = self.0.snapshot();
        (s.phase, s.done, s.total, s.docs, s.tokens)
    }

    fn cancel(&self) {
        self.0.cancel();
    }

    /// Notes the job left for the user (not errors), in order.
    fn notes(&self) -> Vec<String> {
        self.0.notes()
    }
}

/// Fails (naming the path) when `path` cannot be written, before a long job starts.
#[pyfunction]
fn check_writable(path: PathBuf) -> PyResult<()> {
    crate::fsutil::check_writable(&path).map_err(to_pyerr)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("DataprepError", m.py().get_type::<DataprepError>())?;
    m.add_class::<PyProgress>()?;
    m.add_function(wrap_pyfunction!(check_writable, m)?)?;
    corpus::register(m)?;
    tokenizer::register(m)?;
    tokenize::register(m)?;
    dedup::register(m)?;
    mask::register(m)?;
    options::register(m)?;
    Ok(())
}
