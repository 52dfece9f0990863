//! `tokenize` for Python: corpus -> packed shards + manifest (returned as JSON text).

use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::corpus::corpus_config;
use super::{run_detached, PyProgress};
use crate::bpe::Tokenizer;
use crate::corpus;
use crate::dedup::{DedupConfig, Mode};
use crate::pack::LastRow;
use crate::pipeline::tokenize::{tokenize as run, TokenizeConfig};
use crate::pretokenize::Pattern;

/// Tokenizes `inputs` into packed causal-LM shards in `out`; returns the manifest as JSON text.
/// `config_json` is recorded in the manifest and decides (with tokenizer and inputs) whether an
/// existing `out` is resumed. See `dataprep.tokenize`.
#[pyfunction]
#[pyo3(signature = (inputs, tokenizer, out, *, seq_len, val_fraction, seed, rows_per_shard, last_row, threads,
    eos_id, bos_id, pad_id, config_json, dedup="none", dedup_threshold=0.8, pattern=None, format="auto", text_unit="file", jsonl_field="text",
    parquet_column="text", invalid_utf8="replace", progress=None))]
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
    dedup: &str,
    dedup_threshold: f64,
    pattern: Option<&str>,
    format: &str,
    text_unit: &str,
    jsonl_field: &str,
    parquet_column: &str,
    invalid_utf8: &str,
    progress: Option<PyRef<'_, PyProgress>>,
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
    let cfg = TokenizeConfig {
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
    };
    let progress = progress.map(|p| p.clone()).unwrap_or_default();
    let pattern = pattern.map(Pattern::parse);
    let manifest = run_detached(py, || {
        let tok = Tokenizer::from_file(&tokenizer, pattern)?;
        let files = corpus::discover(&inputs)?;
        run(&files, &corpus_cfg, &tok, &tokenizer, &cfg, config, &out, &progress.0)
    })?;
    serde_json::to_string(&manifest).map_err(|e| PyValueError::new_err(e.to_string()))
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(tokenize, m)?)
}
