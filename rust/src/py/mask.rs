//! MLM masking, sentence splitting, sequence building and word-start encoding for Python.
//!
//! GIL and copies: arrays come in as read-only numpy views (no copy; `dataprep.mask` makes them
//! C-contiguous with the right dtype first, which copies only when they are not already); the
//! GIL is released while Rust copies the ids into the output buffer and masks it; the output
//! `Vec`s are moved into numpy (no copy) and reshaped in place.

use numpy::{Element, PyArray1, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::run_detached;
use super::tokenizer::PyTokenizer;
use crate::mask::{self, MaskConfig, Strategy, TokenId};
use crate::options::tokenize::MaskStrategy;
use crate::rows::mlm::{build_sequences as build, Documents, Layout, SequenceConfig};
use crate::tokenizer::EncodeCache;

fn contiguous<'a, T: Element>(a: &'a PyReadonlyArray2<'_, T>, name: &str) -> PyResult<&'a [T]> {
    a.as_slice().map_err(|_| PyValueError::new_err(format!("{name} must be C-contiguous")))
}

#[allow(clippy::too_many_arguments)]
fn mask_typed<'py, T: TokenId + Element>(
    py: Python<'py>,
    ids: &PyReadonlyArray2<'py, T>,
    cfg: &MaskConfig,
    seed: u64,
    epoch: u64,
    index: &[u64],
    special: &[u8],
    word_start: &[u8],
    threads: usize,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let shape = ids.shape();
    let (b, t) = (shape[0], shape[1]);
    let src = contiguous(ids, "input_ids")?;
    let (out, labels) = run_detached(py, || {
        let mut out = src.to_vec();
        let mut labels = vec![0i64; out.len()];
        mask::mask_batch(cfg, seed, epoch, index, &mut out, &mut labels, special, word_start, t, threads)?;
        Ok((out, labels))
    })?;
    let out = PyArray1::from_vec(py, out).reshape([b, t])?;
    let labels = PyArray1::from_vec(py, labels).reshape([b, t])?;
    Ok((out.into_any(), labels.into_any()))
}

/// A masking strategy by name (`bernoulli`, `fixed`, `whole_word`, `span`).
pub(super) fn parse_strategy(name: &str, span_p: f64, max_span: u32) -> PyResult<Strategy> {
    let s: MaskStrategy = serde_json::from_value(serde_json::Value::String(name.into())).map_err(|_| {
        PyValueError::new_err(format!("unknown masking strategy {name:?} (bernoulli, fixed, whole_word, span)"))
    })?;
    Ok(s.strategy(span_p, max_span))
}

/// Masks a `(B, T)` batch of ids; returns `(input_ids, labels)`. See `dataprep.mask.mask_batch`.
// By value: PyO3 extracts arguments as owned read-only borrows of the numpy arrays (no copy).
#[allow(clippy::needless_pass_by_value)]
#[pyfunction]
#[pyo3(signature = (input_ids, sample_index, *, epoch, seed, mask_id, vocab_size, special_tokens_mask=None, word_start=None,
    special_ids=vec![], probability=0.15, mask_prob=0.8, random_prob=0.1, strategy="bernoulli", span_p=0.2, max_span=10,
    max_predictions=None, threads=1))]
#[allow(clippy::too_many_arguments)]
fn mask_batch<'py>(
    py: Python<'py>,
    input_ids: &Bound<'py, PyAny>,
    sample_index: PyReadonlyArray1<'py, u64>,
    epoch: u64,
    seed: u64,
    mask_id: u32,
    vocab_size: u32,
    special_tokens_mask: Option<PyReadonlyArray2<'py, u8>>,
    word_start: Option<PyReadonlyArray2<'py, u8>>,
    special_ids: Vec<u32>,
    probability: f64,
    mask_prob: f64,
    random_prob: f64,
    strategy: &str,
    span_p: f64,
    max_span: u32,
    max_predictions: Option<usize>,
    threads: usize,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let strategy = parse_strategy(strategy, span_p, max_span)?;
    let cfg = MaskConfig::new(mask_id, vocab_size)
        .probability(probability)
        .replacement(mask_prob, random_prob)
        .strategy(strategy)
        .special_ids(special_ids)
        .max_predictions(max_predictions);
    let index = sample_index.as_slice().map_err(|_| PyValueError::new_err("sample_index must be contiguous"))?;
    let special = match &special_tokens_mask {
        Some(a) => contiguous(a, "special_tokens_mask")?,
        None => &[],
    };
    let ws = match &word_start {
        Some(a) => contiguous(a, "word_start")?,
        None => &[],
    };
    let threads = threads.max(1);
    if let Ok(a) = input_ids.extract::<PyReadonlyArray2<'py, i64>>() {
        mask_typed(py, &a, &cfg, seed, epoch, index, special, ws, threads)
    } else if let Ok(a) = input_ids.extract::<PyReadonlyArray2<'py, i32>>() {
        mask_typed(py, &a, &cfg, seed, epoch, index, special, ws, threads)
    } else if let Ok(a) = input_ids.extract::<PyReadonlyArray2<'py, u32>>() {
        mask_typed(py, &a, &cfg, seed, epoch, index, special, ws, threads)
    } else if let Ok(a) = input_ids.extract::<PyReadonlyArray2<'py, u16>>() {
        if u64::from(vocab_size) > 1 << 16 || mask_id > u32::from(u16::MAX) {
            return Err(PyValueError::new_err("uint16 ids need vocab_size <= 65536 and a mask id below it"));
        }
        mask_typed(py, &a, &cfg, seed, epoch, index, special, ws, threads)
    } else {
        Err(PyTypeError::new_err("input_ids must be a 2-D numpy array of int64, int32, uint32 or uint16"))
    }
}

type IdsAndStarts<'py> = (Bound<'py, PyArray1<u32>>, Bound<'py, PyArray1<u8>>);

/// `(ids, word_start)` of `text` (special tokens as text): `word_start[i]` is 1 when token `i`
/// begins a word, by the tokenizer's own convention.
#[pyfunction]
#[allow(clippy::type_complexity)] // (ids, word starts), spelled out for the reader
fn encode_with_word_starts<'py>(
    py: Python<'py>,
    tokenizer: &Bound<'py, PyTokenizer>,
    text: &str,
) -> PyResult<IdsAndStarts<'py>> {
    let tok = &tokenizer.get().0;
    let (ids, ws) = run_detached(py, || {
        let (mut ids, mut ws) = (Vec::new(), Vec::new());
        tok.encode_with_word_starts(text, &mut EncodeCache::new(), &mut ids, &mut ws)?;
        Ok((ids, ws))
    })?;
    Ok((PyArray1::from_vec(py, ids), PyArray1::from_vec(py, ws)))
}

/// The sentences of `text` (see the splitting rule in `dataprep.mask.split_sentences`).
#[pyfunction]
fn split_sentences(text: &str) -> Vec<String> {
    mask::sentences::split_sentences(text).into_iter().map(|r| text[r].to_string()).collect()
}

/// Rows from documents given as lists of `(ids, word_start)` sentences; a dict of numpy arrays.
#[pyfunction]
#[pyo3(signature = (documents, seq_len, *, cls_id, sep_id, pad_id, layout="full_sentence", seed=0, short_seq_prob=0.1))]
#[allow(clippy::too_many_arguments)]
fn build_sequences<'py>(
    py: Python<'py>,
    documents: Vec<Vec<(Vec<u32>, Vec<u8>)>>,
    seq_len: usize,
    cls_id: u32,
    sep_id: u32,
    pad_id: u32,
    layout: &str,
    seed: u64,
    short_seq_prob: f64,
) -> PyResult<Bound<'py, PyDict>> {
    let layout = Layout::from_manifest_name(layout)
        .ok_or_else(|| PyValueError::new_err(format!("unknown layout {layout:?} (full_sentence, nsp)")))?;
    let mut docs = Documents::new();
    for d in documents {
        for (ids, ws) in d {
            if ids.len() != ws.len() {
                return Err(PyValueError::new_err("each sentence needs as many word-start flags as ids"));
            }
            docs.push_sentence(&ids, &ws);
        }
        docs.end_document();
    }
    let cfg = SequenceConfig::new(seq_len, cls_id, sep_id, pad_id).layout(layout).short_seq_prob(short_seq_prob);
    let rows = run_detached(py, || build(&cfg, &docs, seed))?;
    let n = rows.len();
    let d = PyDict::new(py);
    d.set_item("input_ids", PyArray1::from_vec(py, rows.input_ids).reshape([n, seq_len])?)?;
    d.set_item("token_type_ids", PyArray1::from_vec(py, rows.token_type_ids).reshape([n, seq_len])?)?;
    d.set_item("special_tokens_mask", PyArray1::from_vec(py, rows.special_tokens_mask).reshape([n, seq_len])?)?;
    d.set_item("word_start", PyArray1::from_vec(py, rows.word_start).reshape([n, seq_len])?)?;
    d.set_item("nsp_label", PyArray1::from_vec(py, rows.nsp_label))?;
    d.set_item("length", PyArray1::from_vec(py, rows.length))?;
    Ok(d)
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(mask_batch, m)?)?;
    m.add_function(wrap_pyfunction!(encode_with_word_starts, m)?)?;
    m.add_function(wrap_pyfunction!(split_sentences, m)?)?;
    m.add_function(wrap_pyfunction!(build_sequences, m)?)?;
    Ok(())
}
