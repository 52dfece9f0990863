//! `tokenize` for Python: corpus -> packed shards + manifest (returned as JSON text).

use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::corpus::corpus_config;
use super::mask::parse_strategy;
use super::tokenizer::PyTokenizer;
use super::{run_detached, PyProgress};
use crate::corpus;
use crate::dedup::{DedupConfig, Mode};
use crate::mask::MaskConfig;
use crate::pipeline::tokenize::{tokenize as run, LastRow, Layout, MlmConfig, Objective, TokenizeConfig};

/// Tokenizes `inputs` into packed causal-LM or MLM shards in `out`; returns the manifest as JSON
/// text. `config_json` is recorded in the manifest and decides (with tokenizer and inputs) whether
/// an existing `out` is resumed; `mlm_json` is the manifest's `mlm` block. With
/// `objective="mlm"`, `cls_id` and `sep_id` are required, and `mask_id` too with
/// `static_masking`. `loaded` is the tokenizer already read from the `tokenizer` path, whose
/// file is copied next to the shards and hashed. See `dataprep.tokenize`.
#[pyfunction]
#[pyo3(signature = (inputs, tokenizer, out, *, seq_len, val_fraction, seed, rows_per_shard, last_row, threads,
    eos_id, bos_id, pad_id, config_json, loaded, dedup="none", dedup_threshold=0.8, format="auto", text_unit="file", jsonl_field="text",
    parquet_column="text", invalid_utf8="replace", progress=None, objective="clm", layout="full_sentence", cls_id=None,
    sep_id=None, mask_id=None, nsp_block_docs=256, short_seq_prob=0.1, static_masking=false, dupe_factor=1,
    mask_probability=0.15, mask_prob=0.8, random_prob=0.1, mask_strategy="bernoulli", span_p=0.2, max_span=10,
    max_predictions=None, special_ids=vec![], mlm_json="null"))]
#[allow(clippy::too_many_arguments)]
fn tokenize(
    py: Python<'_>,
    inputs: Vec<PathBuf>,
    tokenizer: PathBuf,
    out: PathBuf,
    seq_len: usize,
    val_fraction: f64,
    seed: u64,
    rows_per_shard: u64,
    last_row: &str,
    threads: usize,
    eos_id: u32,
    bos_id: Option<u32>,
    pad_id: u32,
    config_json: &str,
    loaded: PyRef<'_, PyTokenizer>,
    dedup: &str,
    dedup_threshold: f64,
    format: &str,
    text_unit: &str,
    jsonl_field: &str,
    parquet_column: &str,
    invalid_utf8: &str,
    progress: Option<PyRef<'_, PyProgress>>,
    objective: &str,
    layout: &str,
    cls_id: Option<u32>,
    sep_id: Option<u32>,
    mask_id: Option<u32>,
    nsp_block_docs: usize,
    short_seq_prob: f64,
    static_masking: bool,
    dupe_factor: u32,
    mask_probability: f64,
    mask_prob: f64,
    random_prob: f64,
    mask_strategy: &str,
    span_p: f64,
    max_span: u32,
    max_predictions: Option<usize>,
    special_ids: Vec<u32>,
    mlm_json: &str,
) -> PyResult<String> {
    let corpus_cfg = corpus_config(format, text_unit, jsonl_field, parquet_column, invalid_utf8)?;
    let last_row = match last_row {
        "pad" => LastRow::Pad,
        "drop" => LastRow::Drop,
        o => return Err(PyValueError::new_err(format!("unknown last-row rule {o:?} (pad, drop)"))),
    };
    let config: serde_json::Value =
        serde_json::from_str(config_json).map_err(|e| PyValueError::new_err(format!("config_json: {e}")))?;
    let dedup = match dedup {
        "none" => None,
        "exact" => Some(DedupConfig::new(Mode::Exact).threads(threads.max(1))),
        "near" => Some(DedupConfig::new(Mode::Near).threshold(dedup_threshold).threads(threads.max(1))),
        o => return Err(PyValueError::new_err(format!("unknown dedup mode {o:?} (none, exact, near)"))),
    };
    let mut masking = None;
    let objective = match objective {
        "clm" => Objective::Clm,
        "mlm" => {
            let layout = match layout {
                "full_sentence" => Layout::FullSentence,
                "nsp" => Layout::NspPairs,
                o => return Err(PyValueError::new_err(format!("unknown MLM layout {o:?} (full_sentence, nsp)"))),
            };
            let need = |id: Option<u32>, what: &str| {
                id.ok_or_else(|| PyValueError::new_err(format!("objective mlm needs {what}")))
            };
            if static_masking {
                // Completed with the vocabulary size once the tokenizer is loaded (GIL released).
                masking = Some((
                    need(mask_id, "mask_id with static masking")?,
                    parse_strategy(mask_strategy, span_p, max_span)?,
                ));
            }
            Objective::Mlm(Box::new(MlmConfig {
                layout,
                cls: need(cls_id, "cls_id")?,
                sep: need(sep_id, "sep_id")?,
                nsp_block_docs,
                short_seq_prob,
                static_masking: None,
                manifest_info: serde_json::from_str(mlm_json)
                    .map_err(|e| PyValueError::new_err(format!("mlm_json: {e}")))?,
            }))
        }
        o => return Err(PyValueError::new_err(format!("unknown objective {o:?} (clm, mlm)"))),
    };
    let mut cfg = TokenizeConfig {
        seq_len,
        val_fraction,
        seed,
        rows_per_shard: rows_per_shard.max(1),
        last_row,
        threads: threads.max(1),
        batch_bytes: 1 << 20,
        eos: eos_id,
        bos: bos_id,
        pad: pad_id,
        dedup,
        objective,
    };
    let progress = progress.map(|p| p.clone()).unwrap_or_default();
    // The tokenizer Python already loaded from `tokenizer` (to find special ids): not parsed twice.
    let tok = loaded.0.clone();
    let manifest = run_detached(py, || {
        if let (Objective::Mlm(m), Some((mask_id, strategy))) = (&mut cfg.objective, masking) {
            let vocab = u32::try_from(tok.vocab_size()).unwrap_or(u32::MAX);
            let mask_cfg = MaskConfig::new(mask_id, vocab)
                .probability(mask_probability)
                .replacement(mask_prob, random_prob)
                .strategy(strategy)
                .special_ids(special_ids)
                .max_predictions(max_predictions);
            m.static_masking = Some((mask_cfg, dupe_factor));
        }
        let files = corpus::discover(&inputs)?;
        run(&files, &corpus_cfg, &tok, &tokenizer, &cfg, config, &out, &progress.0)
    })?;
    serde_json::to_string(&manifest).map_err(|e| PyValueError::new_err(e.to_string()))
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(tokenize, m)?)
}
