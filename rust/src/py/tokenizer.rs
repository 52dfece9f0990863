//! `Tokenizer`, `train_bpe` and `split` for Python.

use std::path::PathBuf;
use std::sync::Arc;

use numpy::PyArray1;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::corpus::stats_dict;
use super::{options, run_detached, PyProgress};
use crate::bpe::Tokenizer;
use crate::options::TrainBpeOptions;
use crate::pretokenize::{Pattern, PreTokenizer};

/// A byte-level BPE tokenizer. Thread-safe; encoding releases the GIL.
#[pyclass(name = "Tokenizer", frozen)]
pub struct PyTokenizer(pub Arc<Tokenizer>);

#[pymethods]
impl PyTokenizer {
    /// Loads a byte-level BPE `tokenizer.json` (ours or HF's), or a `.tiktoken` ranks file
    /// (split pattern from its `.json` sidecar, or `pattern`: gpt2, cl100k, o200k or a regex).
    #[staticmethod]
    #[pyo3(signature = (path, pattern=None))]
    fn from_file(py: Python<'_>, path: PathBuf, pattern: Option<&str>) -> PyResult<Self> {
        let pattern = pattern.map(Pattern::parse);
        Ok(Self(Arc::new(run_detached(py, || Tokenizer::from_file(&path, pattern))?)))
    }

    /// Ids of `text`. Special-token strings in `text` are encoded as ordinary text.
    fn encode(&self, py: Python<'_>, text: &str) -> PyResult<Vec<u32>> {
        let tok = &self.0;
        run_detached(py, || Ok(tok.encode(text)))
    }

    /// Ids of each text, as a list of `numpy.uint32` arrays (moved, not copied, into numpy).
    #[pyo3(signature = (texts, threads=None))]
    fn encode_batch<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
        threads: Option<usize>,
    ) -> PyResult<Vec<Bound<'py, PyArray1<u32>>>> {
        let tok = &self.0;
        let threads = threads.unwrap_or_else(crate::all_cores);
        let ids = run_detached(py, || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            Ok(tok.encode_batch(&refs, threads))
        })?;
        Ok(ids.into_iter().map(|v| PyArray1::from_vec(py, v)).collect())
    }

    /// Text of `ids`; invalid UTF-8 (ids cut inside a character) becomes U+FFFD.
    fn decode(&self, ids: Vec<u32>) -> PyResult<String> {
        let bytes = self.0.decode_bytes(&ids).map_err(super::to_pyerr)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Bytes of `ids`.
    fn decode_bytes(&self, ids: Vec<u32>) -> PyResult<Vec<u8>> {
        self.0.decode_bytes(&ids).map_err(super::to_pyerr)
    }

    /// Bytes of one id, or None.
    fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
        self.0.token_bytes(id).map(<[u8]>::to_vec)
    }

    /// Id of a special token, or None.
    fn special_id(&self, content: &str) -> Option<u32> {
        self.0.special_id(content)
    }

    #[getter]
    fn special_tokens(&self) -> Vec<(String, u32)> {
        self.0.specials().iter().map(|s| (s.content.clone(), s.id)).collect()
    }

    #[getter]
    fn vocab_size(&self) -> usize {
        self.0.vocab_size()
    }

    #[getter]
    fn num_merges(&self) -> usize {
        self.0.merges().len()
    }

    /// The split regex.
    #[getter]
    fn pattern(&self) -> String {
        self.0.pattern().regex().to_string()
    }

    /// Pre-tokenization pieces of `text`.
    fn split(&self, text: &str) -> Vec<String> {
        self.0.pre_tokenizer().pieces(text).into_iter().map(String::from).collect()
    }

    /// Writes `tokenizer.json` (HF format) atomically.
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let tok = &self.0;
        run_detached(py, || tok.save_hf(&path))
    }

    /// Writes a `.tiktoken` ranks file and its `.json` sidecar (pattern, special tokens).
    #[pyo3(signature = (path, name="dataprep"))]
    fn save_tiktoken(&self, py: Python<'_>, path: PathBuf, name: &str) -> PyResult<()> {
        let tok = &self.0;
        run_detached(py, || tok.save_tiktoken(&path, name))
    }

    fn __repr__(&self) -> String {
        format!("Tokenizer(vocab_size={}, pattern={:?})", self.0.vocab_size(), self.0.pattern().name())
    }
}

/// Pre-tokenization pieces of `text` under `pattern` (`gpt2`, `cl100k`, `o200k` or a regex).
#[pyfunction]
fn split(pattern: &str, text: &str) -> PyResult<Vec<String>> {
    let pt = PreTokenizer::new(Pattern::parse(pattern)).map_err(super::to_pyerr)?;
    Ok(pt.pieces(text).into_iter().map(String::from).collect())
}

/// Trains a byte-level BPE tokenizer and, with `out`, writes `tokenizer.json` (and the tiktoken
/// pair); returns `(tokenizer, stats)`. `options`: the keyword arguments of `dataprep.train_bpe`
/// (see `options_schema("train-bpe")`).
#[pyfunction]
#[pyo3(signature = (*, progress=None, **options))]
fn train_bpe<'py>(
    py: Python<'py>,
    progress: Option<PyRef<'py, PyProgress>>,
    options: Option<&Bound<'py, PyDict>>,
) -> PyResult<(PyTokenizer, Bound<'py, PyDict>)> {
    let (opts, given) = options::parse::<TrainBpeOptions>("train-bpe", options)?;
    let progress = progress.map(|p| p.clone()).unwrap_or_default();
    let (tok, st, threads) = run_detached(py, || opts.run(&given, &progress.0))?;
    let d = stats_dict(py, &st.read)?;
    d.set_item("unique_words", st.unique_words)?;
    d.set_item("merges", st.merges)?;
    d.set_item("vocab_size", tok.vocab_size())?;
    d.set_item("read_count_seconds", st.read_count_seconds)?;
    d.set_item("merge_seconds", st.merge_seconds)?;
    d.set_item("total_seconds", st.total_seconds)?;
    d.set_item("holdout_documents", st.holdout_documents)?;
    d.set_item("holdout_bytes", st.holdout_bytes)?;
    d.set_item("holdout_tokens", st.holdout_tokens)?;
    d.set_item("threads", threads)?;
    d.set_item("outputs", opts.outputs())?;
    Ok((PyTokenizer(Arc::new(tok)), d))
}

/// `(ranks, sidecar)`: the tiktoken files `train_bpe` writes next to a `tokenizer.json`.
#[pyfunction]
fn tiktoken_paths(out: PathBuf) -> (PathBuf, PathBuf) {
    crate::options::train_bpe::tiktoken_paths(&out)
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(tiktoken_paths, m)?)?;
    m.add_class::<PyTokenizer>()?;
    m.add_function(wrap_pyfunction!(split, m)?)?;
    m.add_function(wrap_pyfunction!(train_bpe, m)?)?;
    Ok(())
}
