//! Options from Python: a command's keyword arguments arrive as one dict and become the core's
//! options struct ([`crate::options`]), the single definition of every option.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::to_pyerr;
use crate::options::{self, Given};

/// `options` (keyword arguments; `None` = none given) as the command's options and the names given.
pub(crate) fn parse<T: DeserializeOwned + JsonSchema>(
    command: &str,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<(T, Given)> {
    options::parse(command, to_map(command, options)?).map_err(to_pyerr)
}

fn to_map(command: &str, options: Option<&Bound<'_, PyDict>>) -> PyResult<Map<String, Value>> {
    // JSON has no NaN or infinity: name the option here instead of letting it arrive as null.
    for (k, v) in options.into_iter().flat_map(PyDictMethods::iter) {
        if let Ok(x) = v.cast::<PyFloat>() {
            let x = x.value();
            if !x.is_finite() {
                let field: String = k.extract()?;
                let flag = options::flag_in(command, &field);
                return Err(PyValueError::new_err(format!("{flag} must be a finite number (got {x})")));
            }
        }
    }
    match options {
        Some(d) => pythonize::depythonize(d.as_any()).map_err(|e| {
            pyo3::exceptions::PyTypeError::new_err(format!("{command}: options must be plain values ({e})"))
        }),
        None => Ok(Map::new()),
    }
}

/// The JSON schema of a command's options (`tokenize`, `dedup`, `train-bpe`): each property's
/// type, default and doc. The CLI builds its flags from it.
#[pyfunction]
fn options_schema(command: &str) -> PyResult<String> {
    Ok(options::schema(command).map_err(to_pyerr)?.to_string())
}

/// Checks a command's options (names, types, bounds, what applies to what) without running it.
#[pyfunction]
#[pyo3(signature = (command, **options))]
fn check_options(command: &str, options: Option<&Bound<'_, PyDict>>) -> PyResult<()> {
    options::check(command, to_map(command, options)?).map_err(to_pyerr)
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(options_schema, m)?)?;
    m.add_function(wrap_pyfunction!(check_options, m)?)
}
