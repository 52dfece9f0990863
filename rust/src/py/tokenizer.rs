//! `Tokenizer`, `train_bpe` and `split` for Python.

use std::path::PathBuf;
use std::sync::Arc;

use numpy::PyArray1;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::corpus::stats_dict;
use super::{options, run_detached, to_json, Listing, PyProgress};
use crate::bpe;
use crate::options::TrainBpeOptions;
use crate::pretokenize::{Pattern, PreTokenizer};
use crate::tokenizer::{EncodeOptions, Tokenizer};

/// A tokenizer: any HF `tokenizer.json`, a `.tiktoken` ranks file, or one we trained.
/// Thread-safe; encoding releases the GIL.
#[pyclass(name = "Tokenizer", frozen)]
pub struct PyTokenizer(pub Arc<Tokenizer>);

impl PyTokenizer {
    /// The byte-level BPE model, for what only it has (merges, pattern, tiktoken export).
    fn bpe(&self, what: &str) -> PyResult<&bpe::Tokenizer> {
        self.0.bpe().ok_or_else(|| {
            PyValueError::new_err(format!(
                "{what} applies to byte-level BPE tokenizers on the own engine; this one runs on the {} engine",
                self.0.engine()
            ))
        })
    }
}

#[pymethods]
impl PyTokenizer {
    /// Loads any HF `tokenizer.json`, or a `.tiktoken` ranks file (split pattern from its `.json`
    /// sidecar, or `pattern`: gpt2, cl100k, o200k, llama3, qwen2 or a regex). What it cannot run exactly it
    /// refuses with a ValueError naming the JSON path.
    #[staticmethod]
    #[pyo3(signature = (path, pattern=None))]
    fn from_file(py: Python<'_>, path: PathBuf, pattern: Option<&str>) -> PyResult<Self> {
        let pattern = pattern.map(Pattern::parse);
        Ok(Self(Arc::new(run_detached(py, || Tokenizer::from_file(&path, pattern))?)))
    }

    /// Ids of `text`, as HF `encode(text, add_special_tokens).ids` with
    /// `encode_special_tokens = split_special_tokens`.
    #[pyo3(signature = (text, add_special_tokens=false, split_special_tokens=false))]
    fn encode(
        &self,
        py: Python<'_>,
        text: &str,
        add_special_tokens: bool,
        split_special_tokens: bool,
    ) -> PyResult<Vec<u32>> {
        let tok = &self.0;
        run_detached(py, || tok.encode(text, EncodeOptions { add_special_tokens, split_special_tokens }))
    }

    /// Ids of each text, as a list of `numpy.uint32` arrays (moved, not copied, into numpy).
    #[pyo3(signature = (texts, threads=None, add_special_tokens=false, split_special_tokens=false))]
    fn encode_batch<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
        threads: Option<i64>,
        add_special_tokens: bool,
        split_special_tokens: bool,
    ) -> PyResult<Vec<Bound<'py, PyArray1<u32>>>> {
        let tok = &self.0;
        let threads = match threads {
            None => crate::all_cores(),
            Some(t) if (1..=4096).contains(&t) => t as usize,
            Some(t) => return Err(PyValueError::new_err(format!("threads: {t} is not between 1 and 4096"))),
        };
        let ids = run_detached(py, || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            tok.encode_batch(&refs, threads, EncodeOptions { add_special_tokens, split_special_tokens })
        })?;
        Ok(ids.into_iter().map(|v| PyArray1::from_vec(py, v)).collect())
    }

    /// Text of `ids`, as HF `decode` gives it.
    #[pyo3(signature = (ids, skip_special_tokens=false))]
    fn decode(&self, ids: Vec<u32>, skip_special_tokens: bool) -> PyResult<String> {
        self.0.decode(&ids, skip_special_tokens).map_err(super::to_pyerr)
    }

    /// Bytes of `ids` (byte-level BPE).
    fn decode_bytes(&self, ids: Vec<u32>) -> PyResult<Vec<u8>> {
        self.bpe("decode_bytes")?.decode_bytes(&ids).map_err(super::to_pyerr)
    }

    /// Bytes of one id, or None (byte-level BPE).
    fn token_bytes(&self, id: u32) -> PyResult<Option<Vec<u8>>> {
        Ok(self.bpe("token_bytes")?.token_bytes(id).map(<[u8]>::to_vec))
    }

    /// Id of a special token, or None.
    fn special_id(&self, content: &str) -> Option<u32> {
        self.0.special_id(content)
    }

    /// `(content, id)` of the special added tokens.
    #[getter]
    fn special_tokens(&self) -> Vec<(String, u32)> {
        self.0.added_tokens().iter().filter(|a| a.special).map(|a| (a.content.clone(), a.id)).collect()
    }

    #[getter]
    fn vocab_size(&self) -> usize {
        self.0.vocab_size()
    }

    /// `own` (our byte-level BPE encoder) or `hf` (the `tokenizers` crate).
    #[getter]
    fn engine(&self) -> &'static str {
        self.0.engine()
    }

    /// What the loader decided that you should know (engine choice, settings not applied).
    #[getter]
    fn notes(&self) -> Vec<String> {
        self.0.notes().to_vec()
    }

    /// `(before, after)`: the special ids the post-processor puts around one text; None when the
    /// file has no post-processor.
    #[getter]
    fn template(&self) -> Option<(Vec<u32>, Vec<u32>)> {
        self.0.template().map(|t| (t.before.clone(), t.after.clone()))
    }

    #[getter]
    fn num_merges(&self) -> PyResult<usize> {
        Ok(self.bpe("num_merges")?.merges().len())
    }

    /// The split regex.
    #[getter]
    fn pattern(&self) -> PyResult<String> {
        Ok(self.bpe("pattern")?.pattern().regex().to_string())
    }

    /// Pre-tokenization pieces of `text`.
    fn split(&self, text: &str) -> PyResult<Vec<String>> {
        Ok(self.bpe("split")?.pre_tokenizer().pieces(text).into_iter().map(String::from).collect())
    }

    /// Writes `tokenizer.json` (HF format) atomically.
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let tok = self.bpe("save")?;
        run_detached(py, || tok.save_hf(&path))
    }

    /// Writes a `.tiktoken` ranks file and its `.json` sidecar (pattern, special tokens).
    #[pyo3(signature = (path, name="dataprep"))]
    fn save_tiktoken(&self, py: Python<'_>, path: PathBuf, name: &str) -> PyResult<()> {
        let tok = self.bpe("save_tiktoken")?;
        run_detached(py, || tok.save_tiktoken(&path, name))
    }

    fn __repr__(&self) -> String {
        format!("Tokenizer(vocab_size={}, engine={:?})", self.0.vocab_size(), self.0.engine())
    }
}

/// Pre-tokenization pieces of `text` under `pattern` (`gpt2`, `cl100k`, `o200k`, `llama3`, `qwen2` or a regex).
#[pyfunction]
fn split(pattern: &str, text: &str) -> PyResult<Vec<String>> {
    let pt = PreTokenizer::new(Pattern::parse(pattern)).map_err(super::to_pyerr)?;
    Ok(pt.pieces(text).into_iter().map(String::from).collect())
}

/// Trains a byte-level BPE tokenizer and, with `out`, writes `tokenizer.json` (and the tiktoken
/// pair); returns `(tokenizer, stats)`. `options`: the keyword arguments of `dataprep.train_bpe`
/// (see `options_schema("train-bpe")`).
#[pyfunction]
#[pyo3(signature = (*, progress=None, listing=None, **options))]
fn train_bpe<'py>(
    py: Python<'py>,
    progress: Option<PyRef<'py, PyProgress>>,
    listing: Option<Listing>,
    options: Option<&Bound<'py, PyDict>>,
) -> PyResult<(PyTokenizer, Bound<'py, PyDict>)> {
    let (mut opts, given) = options::parse::<TrainBpeOptions>("train-bpe", options)?;
    opts.corpus.listing = listing;
    let progress = progress.map(|p| p.clone()).unwrap_or_default();
    let trained = run_detached(py, || opts.run(&given, &progress.0))?;
    trained_result(py, &opts, trained)
}

/// `(tokenizer, stats)` of a training run.
fn trained_result<'py>(
    py: Python<'py>,
    opts: &TrainBpeOptions,
    (tok, st, threads): (crate::bpe::Tokenizer, crate::bpe::trainer::TrainStats, usize),
) -> PyResult<(PyTokenizer, Bound<'py, PyDict>)> {
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
    Ok((PyTokenizer(Arc::new(Tokenizer::from_bpe(tok).map_err(super::to_pyerr)?)), d))
}

/// `(ranks, sidecar)`: the tiktoken files `train_bpe` writes next to a `tokenizer.json`.
#[pyfunction]
fn tiktoken_paths(out: PathBuf) -> (PathBuf, PathBuf) {
    crate::options::train_bpe::tiktoken_paths(&out)
}

/// The run `--engine ray` plans train-bpe units for: JSON `{"config_hash", "inputs": [[path, bytes], ...]}`.
#[pyfunction]
#[pyo3(signature = (*, listing=None, **options))]
fn train_bpe_plan(py: Python<'_>, listing: Option<Listing>, options: Option<&Bound<'_, PyDict>>) -> PyResult<String> {
    let (mut opts, given) = options::parse::<TrainBpeOptions>("train-bpe", options)?;
    opts.corpus.listing = listing;
    let plan = run_detached(py, || opts.plan(&given))?;
    to_json(&plan)
}

/// Documents in `unit_files` (consecutive inputs of the plan).
#[pyfunction]
#[pyo3(signature = (*, unit_files, progress=None, listing=None, **options))]
fn train_bpe_documents(
    py: Python<'_>,
    unit_files: Vec<String>,
    progress: Option<PyRef<'_, PyProgress>>,
    listing: Option<Listing>,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<u64> {
    let (mut opts, given) = options::parse::<TrainBpeOptions>("train-bpe", options)?;
    opts.corpus.listing = listing;
    let progress = progress.map(|p| p.clone()).unwrap_or_default();
    run_detached(py, || opts.documents(&given, &unit_files, &progress.0))
}

/// Counts the pieces of `unit_files` (first document at corpus index `first_index`) into the work
/// unit file `unit_out`; returns its record as JSON.
#[pyfunction]
#[pyo3(signature = (*, unit_files, first_index, unit_out, progress=None, listing=None, **options))]
fn train_bpe_unit(
    py: Python<'_>,
    unit_files: Vec<String>,
    first_index: u64,
    unit_out: PathBuf,
    progress: Option<PyRef<'_, PyProgress>>,
    listing: Option<Listing>,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<String> {
    let (mut opts, given) = options::parse::<TrainBpeOptions>("train-bpe", options)?;
    opts.corpus.listing = listing;
    let progress = progress.map(|p| p.clone()).unwrap_or_default();
    let record = run_detached(py, || opts.count_unit(&given, &unit_files, first_index, &unit_out, &progress.0))?;
    to_json(&record)
}

/// Trains from work units (`units`: each unit file's path and SHA-256, in plan order) and writes
/// the files like `train_bpe`; returns `(tokenizer, stats)` like `train_bpe`.
#[pyfunction]
#[pyo3(signature = (*, units, progress=None, listing=None, **options))]
fn train_bpe_merge<'py>(
    py: Python<'py>,
    units: Vec<(PathBuf, String)>,
    progress: Option<PyRef<'py, PyProgress>>,
    listing: Option<Listing>,
    options: Option<&Bound<'py, PyDict>>,
) -> PyResult<(PyTokenizer, Bound<'py, PyDict>)> {
    let (mut opts, given) = options::parse::<TrainBpeOptions>("train-bpe", options)?;
    opts.corpus.listing = listing;
    let progress = progress.map(|p| p.clone()).unwrap_or_default();
    let trained = run_detached(py, || opts.merge(&given, &units, &progress.0))?;
    trained_result(py, &opts, trained)
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(train_bpe_plan, m)?)?;
    m.add_function(wrap_pyfunction!(train_bpe_documents, m)?)?;
    m.add_function(wrap_pyfunction!(train_bpe_unit, m)?)?;
    m.add_function(wrap_pyfunction!(train_bpe_merge, m)?)?;
    m.add_function(wrap_pyfunction!(tiktoken_paths, m)?)?;
    m.add_class::<PyTokenizer>()?;
    m.add_function(wrap_pyfunction!(split, m)?)?;
    m.add_function(wrap_pyfunction!(train_bpe, m)?)?;
    Ok(())
}
