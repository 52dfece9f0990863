//! `dataprep tokenize` options: what they mean, their bounds, which objective each applies to,
//! and how they resolve (with the tokenizer) into the pipeline's [`TokenizeConfig`] and the
//! manifest's `config` block, whose hash decides whether an existing output is resumed.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{ensure, flag_of, refuse_given, threads_or_all, CorpusOptions, Given};
use crate::corpus;
use crate::dedup::{DedupConfig, Mode};
use crate::error::{Error, Result};
use crate::lock::{check_disjoint, OutputLock};
use crate::mask::{MaskConfig, Strategy};
use crate::pipeline::tokenize::{tokenize, MlmConfig, Objective, Source, TokenizeConfig, Units};
use crate::pipeline::units;
use crate::pretokenize::Pattern;
use crate::progress::Progress;
use crate::rows::causal::LastRow;
use crate::rows::mlm::Layout;
use crate::shards::manifest::Manifest;
use crate::shards::Dtype;
use crate::tokenizer::Tokenizer;
use crate::unitfile::{Plan, UnitRecord};

/// Longest row we accept: far beyond any model's context, small enough that a row always fits
/// in memory (an absurd value is a typo, and would otherwise abort on allocation).
pub const MAX_SEQ_LEN: usize = 1 << 20;

/// What the rows are built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ObjectiveKind {
    #[default]
    Clm,
    Mlm,
}

/// Dropping duplicate documents before encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DedupMode {
    #[default]
    None,
    Exact,
    Near,
}

/// How positions are chosen for masking (see `dataprep.mask`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MaskStrategy {
    #[default]
    Bernoulli,
    Fixed,
    WholeWord,
    Span,
}

impl MaskStrategy {
    pub fn name(self) -> &'static str {
        match self {
            MaskStrategy::Bernoulli => "bernoulli",
            MaskStrategy::Fixed => "fixed",
            MaskStrategy::WholeWord => "whole_word",
            MaskStrategy::Span => "span",
        }
    }

    /// The masking strategy, with the span parameters where they apply.
    pub fn strategy(self, span_p: f64, max_span: u32) -> Strategy {
        match self {
            MaskStrategy::Bernoulli => Strategy::Bernoulli,
            MaskStrategy::Fixed => Strategy::FixedCount,
            MaskStrategy::WholeWord => Strategy::WholeWord,
            MaskStrategy::Span => Strategy::Span { p_geometric: span_p, max_span },
        }
    }
}

/// A size in bytes written as `256MB`, `1.5GB`, `2KiB` or a plain number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Size {
    Text(String),
    Bytes(u64),
}

impl Size {
    fn bytes(&self) -> Option<u64> {
        match self {
            Size::Text(s) => super::parse_size(s),
            Size::Bytes(n) => (*n > 0).then_some(*n),
        }
    }
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Size::Text(s) => f.write_str(s),
            Size::Bytes(n) => write!(f, "{n}"),
        }
    }
}

/// Every option of `dataprep tokenize` (Python: `dataprep.tokenize`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct TokenizeOptions {
    /// Files or directories to read (walked recursively).
    #[schemars(extend("x-required" = true, "x-argument" = true))]
    pub inputs: Vec<String>,
    /// tokenizer.json (any HF tokenizers file) or a .tiktoken file.
    #[schemars(extend("x-required" = true))]
    pub tokenizer: String,
    /// Shard directory.
    #[schemars(extend("x-required" = true))]
    pub out: String,
    /// clm: packed causal rows; mlm: [CLS] A [SEP] (B [SEP]) rows.
    pub objective: ObjectiveKind,
    /// Tokens per row.
    pub seq_len: usize,
    /// Share of documents (by a seeded hash of their index) that go to the val split.
    pub val_fraction: f64,
    /// Seed of the val split (and of NSP draws and static masking).
    pub seed: u64,
    /// Target shard size (e.g. 256MB, 1GiB); a shard closes at the next document boundary.
    pub shard_size: Size,
    /// Encoder threads [default: all cores]; the output is the same for any number.
    pub threads: Option<usize>,
    /// Pad token [default: found by name; clm: else EOS].
    pub pad_token: Option<String>,
    /// Drop duplicate documents before encoding (see `dataprep dedup`).
    pub dedup: DedupMode,
    /// --dedup near: Jaccard similarity at and above which documents are near duplicates.
    pub dedup_threshold: f64,
    /// Split pattern for a .tiktoken file without a .json sidecar (gpt2, cl100k, o200k, llama3, qwen2, or a regex).
    pub pattern: Option<String>,
    #[serde(flatten)]
    pub corpus: CorpusOptions,
    /// clm: final partial row: pad it (n_tokens tells its length) or drop it (counted).
    pub last_row: LastRow,
    /// clm: EOS special token [default: found by name].
    pub eos_token: Option<String>,
    /// clm: BOS special token [default: found by name].
    pub bos_token: Option<String>,
    /// clm: put BOS before each document when the tokenizer has one.
    #[schemars(extend("x-flag" = "--bos"))]
    pub use_bos: bool,
    /// mlm: sentences packed across documents (RoBERTa) or pairs with NSP labels (BERT).
    pub layout: Layout,
    /// mlm: [default: [CLS] or <s>].
    pub cls_token: Option<String>,
    /// mlm: [default: [SEP] or </s>].
    pub sep_token: Option<String>,
    /// mlm: [default: [MASK] or <mask>; required with --static-masking].
    pub mask_token: Option<String>,
    /// mlm nsp: documents per block; random B segments come from the same block.
    pub nsp_block_docs: usize,
    /// mlm nsp: probability of a shorter target length (BERT).
    pub short_seq_prob: f64,
    /// mlm: mask at prep time (adds a labels column).
    pub static_masking: bool,
    /// Static masking: differently masked copies of each row.
    pub dupe_factor: u32,
    /// Static masking: share of tokens masked.
    pub mask_probability: f64,
    /// Static masking: how positions are chosen.
    pub mask_strategy: MaskStrategy,
    /// Static masking: share of masked tokens replaced by [MASK].
    pub replace_mask: f64,
    /// Static masking: share of masked tokens replaced by a random id (the rest stay).
    pub replace_random: f64,
    /// Static masking, span: geometric p of span lengths in words.
    pub span_p: f64,
    /// Static masking, span: longest span, in words.
    pub max_span: u32,
    /// Static masking, fixed: most masked tokens per row.
    pub max_predictions: Option<usize>,
}

impl Default for TokenizeOptions {
    fn default() -> Self {
        Self {
            inputs: Vec::new(),
            tokenizer: String::new(),
            out: String::new(),
            objective: ObjectiveKind::Clm,
            seq_len: 2048,
            val_fraction: 0.0,
            seed: 0,
            shard_size: Size::Text("256MB".into()),
            threads: None,
            pad_token: None,
            dedup: DedupMode::None,
            dedup_threshold: 0.8,
            pattern: None,
            corpus: CorpusOptions::default(),
            last_row: LastRow::Pad,
            eos_token: None,
            bos_token: None,
            use_bos: true,
            layout: Layout::FullSentence,
            cls_token: None,
            sep_token: None,
            mask_token: None,
            nsp_block_docs: 256,
            short_seq_prob: 0.1,
            static_masking: false,
            dupe_factor: 1,
            mask_probability: 0.15,
            mask_strategy: MaskStrategy::Bernoulli,
            replace_mask: 0.8,
            replace_random: 0.1,
            span_p: 0.2,
            max_span: 10,
            max_predictions: None,
        }
    }
}

const CLM_ONLY: [&str; 4] = ["last_row", "eos_token", "bos_token", "use_bos"];
const MLM_ONLY: [&str; 6] = ["layout", "cls_token", "sep_token", "mask_token", "nsp_block_docs", "short_seq_prob"];
const NSP_ONLY: [&str; 2] = ["nsp_block_docs", "short_seq_prob"];
const STATIC_MASKING: [&str; 9] = [
    "static_masking",
    "dupe_factor",
    "mask_probability",
    "mask_strategy",
    "replace_mask",
    "replace_random",
    "span_p",
    "max_span",
    "max_predictions",
];

const EOS_CANDIDATES: [&str; 5] = ["<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>", "[SEP]"];
const BOS_CANDIDATES: [&str; 3] = ["<|begin_of_text|>", "<s>", "<bos>"];
const PAD_CANDIDATES: [&str; 4] = ["<pad>", "[PAD]", "<|pad|>", "<|padding|>"];
const CLS_CANDIDATES: [&str; 2] = ["[CLS]", "<s>"];
const SEP_CANDIDATES: [&str; 2] = ["[SEP]", "</s>"];
const MLM_PAD_CANDIDATES: [&str; 2] = ["[PAD]", "<pad>"];
const MASK_CANDIDATES: [&str; 2] = ["[MASK]", "<mask>"];

/// What a post-processor puts on one side of a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// No post-processor (or one we cannot read as a template): find the token by its name.
    Unknown,
    /// The post-processor puts no token there.
    Nothing,
    Token(u32),
}

fn flag(field: &str) -> String {
    flag_of::<TokenizeOptions>(field)
}

fn unit(x: f64) -> bool {
    (0.0..=1.0).contains(&x)
}

impl TokenizeOptions {
    /// Checks every bound and refuses options given for an objective (or mode) they do not
    /// apply to. `given`: the names the user set.
    pub fn validate(&self, given: &Given) -> Result<()> {
        for (field, empty) in
            [("inputs", self.inputs.is_empty()), ("tokenizer", self.tokenizer.is_empty()), ("out", self.out.is_empty())]
        {
            if empty {
                return Err(Error::Config(format!("{} is required", flag(field))));
            }
        }
        let min_len = match (self.objective, self.layout) {
            (ObjectiveKind::Clm, _) => 2,
            (ObjectiveKind::Mlm, Layout::FullSentence) => 3,
            (ObjectiveKind::Mlm, Layout::NspPairs) => 5,
        };
        if self.seq_len < min_len {
            return Err(Error::Config(format!(
                "--seq-len {} is too short (at least {min_len} for this objective and layout)",
                self.seq_len
            )));
        }
        ensure(self.seq_len <= MAX_SEQ_LEN, "--seq-len", format!("at most {MAX_SEQ_LEN}"), self.seq_len)?;
        ensure((0.0..1.0).contains(&self.val_fraction), "--val-fraction", "in [0, 1)", self.val_fraction)?;
        ensure(
            self.shard_size.bytes().is_some(),
            "--shard-size",
            "a positive size such as 256MB, 1GiB or 4096",
            &self.shard_size,
        )?;
        if let Some(t) = self.threads {
            ensure((1..=4096).contains(&t), "--threads", "between 1 and 4096", t)?;
        }
        ensure(
            self.dedup_threshold > 0.0 && self.dedup_threshold <= 1.0,
            "--dedup-threshold",
            "in (0, 1]",
            self.dedup_threshold,
        )?;
        if self.dedup != DedupMode::Near {
            refuse_given(given, &["dedup_threshold"], flag, "applies to --dedup near only")?;
        }
        if self.pattern.is_some() && !self.tokenizer.ends_with(".tiktoken") {
            return Err(Error::Config(format!(
                "--pattern applies to a .tiktoken tokenizer only ({} carries its own pattern)",
                self.tokenizer
            )));
        }
        match self.objective {
            ObjectiveKind::Clm => {
                refuse_given(given, &MLM_ONLY, flag, "applies to --objective mlm only")?;
                refuse_given(given, &STATIC_MASKING, flag, "applies to --objective mlm only")?;
            }
            ObjectiveKind::Mlm => {
                refuse_given(
                    given,
                    &CLM_ONLY,
                    flag,
                    "applies to --objective clm only (MLM rows are [CLS] A [SEP] (B [SEP]))",
                )?;
                if self.layout != Layout::NspPairs {
                    refuse_given(given, &NSP_ONLY, flag, "applies to --layout nsp only")?;
                }
                if !self.static_masking {
                    refuse_given(
                        given,
                        &STATIC_MASKING[1..],
                        flag,
                        "applies with static masking only (--static-masking; dynamic masking is set in the trainer)",
                    )?;
                }
                if self.mask_strategy != MaskStrategy::Span {
                    refuse_given(given, &["span_p", "max_span"], flag, "applies to --mask-strategy span only")?;
                }
                if self.mask_strategy != MaskStrategy::Fixed {
                    refuse_given(given, &["max_predictions"], flag, "applies to --mask-strategy fixed only")?;
                }
            }
        }
        ensure(
            (2..=1 << 24).contains(&self.nsp_block_docs),
            "--nsp-block-docs",
            "between 2 and 16777216",
            self.nsp_block_docs,
        )?;
        ensure(unit(self.short_seq_prob), "--short-seq-prob", "in [0, 1]", self.short_seq_prob)?;
        ensure((1..=1000).contains(&self.dupe_factor), "--dupe-factor", "between 1 and 1000", self.dupe_factor)?;
        ensure(unit(self.mask_probability), "--mask-probability", "in [0, 1]", self.mask_probability)?;
        ensure(unit(self.replace_mask), "--replace-mask", "in [0, 1]", self.replace_mask)?;
        ensure(unit(self.replace_random), "--replace-random", "in [0, 1]", self.replace_random)?;
        ensure(
            self.replace_mask + self.replace_random <= 1.0 + 1e-9,
            "--replace-mask + --replace-random",
            "at most 1",
            self.replace_mask + self.replace_random,
        )?;
        ensure(self.span_p > 0.0 && self.span_p <= 1.0, "--span-p", "in (0, 1]", self.span_p)?;
        ensure((1..=1000).contains(&self.max_span), "--max-span", "between 1 and 1000", self.max_span)?;
        if let Some(n) = self.max_predictions {
            ensure(n >= 1, "--max-predictions", "at least 1", n)?;
        }
        let inputs: Vec<PathBuf> = self.inputs.iter().map(PathBuf::from).collect();
        check_disjoint(&inputs, Path::new(&self.out), "--out")
    }

    /// Loads the tokenizer the options name.
    pub fn load_tokenizer(&self) -> Result<Tokenizer> {
        Tokenizer::from_file(Path::new(&self.tokenizer), self.pattern.as_deref().map(Pattern::parse))
    }

    /// The special id `wanted` names, else what the post-processor puts there (`from_template`:
    /// `Some(None)` when it puts nothing), else the first candidate the tokenizer has.
    fn find(
        &self,
        tok: &Tokenizer,
        wanted: Option<&String>,
        from_template: Side,
        candidates: &[&str],
        field: &str,
    ) -> Result<Option<u32>> {
        match (wanted, from_template) {
            (Some(w), _) => tok.special_id(w).map(Some).ok_or_else(|| {
                Error::Config(format!("{} '{w}' is not a special token of {}", flag(field), self.tokenizer))
            }),
            (None, Side::Token(id)) => Ok(Some(id)),
            (None, Side::Nothing) => Ok(None),
            (None, Side::Unknown) => Ok(candidates.iter().find_map(|c| tok.special_id(c))),
        }
    }

    fn need(
        &self,
        tok: &Tokenizer,
        wanted: Option<&String>,
        from_template: Side,
        candidates: &[&str],
        field: &str,
        what: &str,
    ) -> Result<u32> {
        // A post-processor that puts nothing there leaves the name search to find one.
        let side = if from_template == Side::Nothing { Side::Unknown } else { from_template };
        let found = self.find(tok, wanted, side, candidates, field)?;
        found.ok_or_else(|| {
            Error::input(
                &self.tokenizer,
                format!("no {what} token found (looked for {}); pass {}", candidates.join(", "), flag(field)),
            )
        })
    }

    /// What the tokenizer's post-processor puts before (`true`) or after one sequence. Several
    /// tokens on one side are not a BOS/EOS: the name search decides.
    fn from_template(tok: &Tokenizer, before: bool) -> Side {
        let Some(t) = tok.template() else { return Side::Unknown };
        let side = if before { &t.before } else { &t.after };
        match side.as_slice() {
            [] => Side::Nothing,
            [id] => Side::Token(*id),
            _ => Side::Unknown,
        }
    }

    /// One line for the user: the engine, and the special tokens put around documents.
    pub fn describe(&self, tok: &Tokenizer, cfg: &TokenizeConfig) -> String {
        let name = |id: u32| tok.special_content(id).map_or_else(|| format!("id {id}"), |c| format!("{c:?}"));
        let source = if tok.template().is_some() { "from its post-processor" } else { "by name" };
        let around = match &cfg.objective {
            Objective::Clm => format!(
                "{}text + EOS {} ({source}; --bos-token/--no-bos/--eos-token change them)",
                cfg.bos.map(|b| format!("BOS {} + ", name(b))).unwrap_or_default(),
                name(cfg.eos)
            ),
            Objective::Mlm(m) => {
                format!(
                    "CLS {} + text + SEP {} ({source}; --cls-token/--sep-token change them)",
                    name(m.cls),
                    name(m.sep)
                )
            }
        };
        format!("tokenizer: {} engine; each document: {around}", tok.engine())
    }

    /// The pipeline configuration and the manifest's `config` block (every option that can
    /// change the output, with special tokens resolved to ids; the thread count is left out since
    /// it never changes the output and so must not block a resume).
    pub fn resolve(&self, tok: &Tokenizer) -> Result<(TokenizeConfig, Value)> {
        let dtype_bytes: u64 = match Dtype::for_vocab(tok.vocab_size()) {
            Dtype::Uint16 => 2,
            Dtype::Uint32 => 4,
        };
        let threads = threads_or_all(self.threads);
        let size = self.shard_size.bytes().unwrap_or(1);
        let dedup = match self.dedup {
            DedupMode::None => None,
            DedupMode::Exact => Some(DedupConfig::new(Mode::Exact).threads(threads)),
            DedupMode::Near => Some(DedupConfig::new(Mode::Near).threshold(self.dedup_threshold).threads(threads)),
        };
        let c = &self.corpus;
        let mut config = json!({
            "inputs": self.inputs,
            "tokenizer": self.tokenizer,
            "seq_len": self.seq_len,
            "val_fraction": self.val_fraction,
            "seed": self.seed,
            "shard_size": self.shard_size.to_string(),
            "pattern": self.pattern,
            "format": c.format,
            "text_unit": c.text_unit,
            "jsonl_field": c.jsonl_field,
            "parquet_column": c.parquet_column,
            "invalid_utf8": c.invalid_utf8,
            "dedup": self.dedup,
            "dedup_threshold": (self.dedup == DedupMode::Near).then_some(self.dedup_threshold),
        });
        let cfg = match self.objective {
            ObjectiveKind::Clm => {
                let eos = self.need(
                    tok,
                    self.eos_token.as_ref(),
                    Self::from_template(tok, false),
                    &EOS_CANDIDATES,
                    "eos_token",
                    "EOS",
                )?;
                let bos = if self.use_bos {
                    self.find(
                        tok,
                        self.bos_token.as_ref(),
                        Self::from_template(tok, true),
                        &BOS_CANDIDATES,
                        "bos_token",
                    )?
                } else {
                    None
                };
                let pad = self
                    .find(tok, self.pad_token.as_ref(), Side::Unknown, &PAD_CANDIDATES, "pad_token")?
                    .unwrap_or(eos);
                let rows_per_shard = (size / (self.seq_len as u64 * dtype_bytes)).max(1);
                extend(
                    &mut config,
                    json!({
                        "objective": "clm",
                        "rows_per_shard": rows_per_shard,
                        "last_row": self.last_row,
                        "eos_id": eos,
                        "bos_id": bos,
                        "pad_id": pad,
                    }),
                );
                TokenizeConfig {
                    seq_len: self.seq_len,
                    val_fraction: self.val_fraction,
                    seed: self.seed,
                    rows_per_shard,
                    last_row: self.last_row,
                    threads,
                    batch_bytes: 1 << 20,
                    eos,
                    bos,
                    pad,
                    dedup,
                    objective: Objective::Clm,
                }
            }
            ObjectiveKind::Mlm => {
                let cls = self.need(
                    tok,
                    self.cls_token.as_ref(),
                    Self::from_template(tok, true),
                    &CLS_CANDIDATES,
                    "cls_token",
                    "CLS",
                )?;
                let sep = self.need(
                    tok,
                    self.sep_token.as_ref(),
                    Self::from_template(tok, false),
                    &SEP_CANDIDATES,
                    "sep_token",
                    "SEP",
                )?;
                let pad =
                    self.need(tok, self.pad_token.as_ref(), Side::Unknown, &MLM_PAD_CANDIDATES, "pad_token", "PAD")?;
                // Recorded in the manifest for dynamic masking; required only to mask here.
                let mask = if self.static_masking {
                    Some(self.need(
                        tok,
                        self.mask_token.as_ref(),
                        Side::Unknown,
                        &MASK_CANDIDATES,
                        "mask_token",
                        "MASK",
                    )?)
                } else {
                    self.find(tok, self.mask_token.as_ref(), Side::Unknown, &MASK_CANDIDATES, "mask_token")?
                };
                // input_ids + token types + special mask + word starts (+ int32 labels when masked).
                let row_bytes = self.seq_len as u64 * (dtype_bytes + 3 + if self.static_masking { 4 } else { 0 }) + 5;
                let rows_per_shard = (size / row_bytes).max(1);
                let mut specials: Vec<u32> =
                    tok.added_tokens().iter().filter(|a| a.special).map(|a| a.id).chain([cls, sep, pad]).collect();
                specials.sort_unstable();
                specials.dedup();
                let nsp = self.layout == Layout::NspPairs;
                let span = self.mask_strategy == MaskStrategy::Span;
                let static_masking = self.static_masking.then(|| {
                    json!({
                        "dupe_factor": self.dupe_factor,
                        "probability": self.mask_probability,
                        "strategy": self.mask_strategy.name(),
                        "replace_mask": self.replace_mask,
                        "replace_random": self.replace_random,
                        "span_p": span.then_some(self.span_p),
                        "max_span": span.then_some(self.max_span),
                        "max_predictions": self.max_predictions,
                        "special_ids": specials,
                    })
                });
                let mlm = sorted(json!({
                    "cls_id": cls,
                    "sep_id": sep,
                    "pad_id": pad,
                    "mask_id": mask,
                    "nsp_block_docs": nsp.then_some(self.nsp_block_docs),
                    "short_seq_prob": nsp.then_some(self.short_seq_prob),
                    "static_masking": static_masking,
                }));
                let masking = match (self.static_masking, mask) {
                    (true, Some(mask_id)) => {
                        let vocab = u32::try_from(tok.vocab_size()).unwrap_or(u32::MAX);
                        let m = MaskConfig::new(mask_id, vocab)
                            .probability(self.mask_probability)
                            .replacement(self.replace_mask, self.replace_random)
                            .strategy(self.mask_strategy.strategy(self.span_p, self.max_span))
                            .special_ids(specials.iter().copied())
                            .max_predictions(self.max_predictions);
                        m.validate()?;
                        Some((m, self.dupe_factor))
                    }
                    _ => None,
                };
                extend(
                    &mut config,
                    json!({
                        "objective": "mlm",
                        "layout": self.layout.manifest_name(),
                        "mlm": mlm,
                        "rows_per_shard": rows_per_shard,
                    }),
                );
                TokenizeConfig {
                    seq_len: self.seq_len,
                    val_fraction: self.val_fraction,
                    seed: self.seed,
                    rows_per_shard,
                    last_row: LastRow::Pad,
                    threads,
                    batch_bytes: 1 << 20,
                    // The manifest's tokenizer block wants an end-of-text id: for MLM rows that is [SEP].
                    eos: sep,
                    bos: Some(cls),
                    pad,
                    dedup,
                    objective: Objective::Mlm(Box::new(MlmConfig {
                        layout: self.layout,
                        cls,
                        sep,
                        nsp_block_docs: self.nsp_block_docs,
                        short_seq_prob: self.short_seq_prob,
                        static_masking: masking,
                        manifest_info: mlm,
                    })),
                }
            }
        };
        Ok((cfg, sorted(config)))
    }

    /// Validates, loads the tokenizer, reads and tokenizes: the whole command.
    pub fn run(&self, given: &Given, progress: &Progress) -> Result<Manifest> {
        self.write(given, Source::Read, progress)
    }

    /// The run that work units are made for (`--engine ray`'s driver plans from it): its
    /// configuration hash and its inputs (path, size) in reading order. Validates everything
    /// [`Self::run`] validates; takes no lock and writes nothing.
    pub fn plan(&self, given: &Given) -> Result<Plan> {
        let (tok, cfg, config) = self.prepare(given)?;
        drop((tok, cfg));
        let files = self.corpus.files(&self.inputs)?;
        let config_hash = units::config_hash(&files, Path::new(&self.tokenizer), &config)?;
        Ok(Plan { config_hash, inputs: files.iter().map(corpus::InputFile::entry).collect() })
    }

    /// Reads and encodes `unit_files`, a run of consecutive inputs of [`Self::plan`], into the
    /// work unit file `unit_out` (see [`crate::pipeline::units`]).
    pub fn unit(
        &self,
        given: &Given,
        unit_files: &[String],
        unit_out: &Path,
        progress: &Progress,
    ) -> Result<UnitRecord> {
        let (tok, cfg, config) = self.prepare(given)?;
        let files = self.corpus.files(&self.inputs)?;
        let slice = self.corpus.unit_slice(&files, unit_files)?;
        let config_hash = units::config_hash(&files, Path::new(&self.tokenizer), &config)?;
        units::make_unit(slice, &self.corpus.config(), &tok, &cfg, &config_hash, unit_out, progress)
    }

    /// Builds the output from work units (each unit file's path and SHA-256, in plan order, as
    /// they become ready): the same shards and manifest as [`Self::run`], with its lock,
    /// journal and resume.
    pub fn assemble(&self, given: &Given, units: &Units<'_>, progress: &Progress) -> Result<Manifest> {
        self.write(given, Source::Units(units), progress)
    }

    /// Validates, loads the tokenizer and resolves the configuration.
    fn prepare(&self, given: &Given) -> Result<(Tokenizer, TokenizeConfig, Value)> {
        self.validate(given)?;
        let tok = self.load_tokenizer()?;
        let (cfg, config) = self.resolve(&tok)?;
        Ok((tok, cfg, config))
    }

    /// The output from `source`: the command, after [`Self::prepare`].
    fn write(&self, given: &Given, source: Source<'_, '_>, progress: &Progress) -> Result<Manifest> {
        let (tok, cfg, config) = self.prepare(given)?;
        progress.note(self.describe(&tok, &cfg));
        for n in tok.notes() {
            progress.note(format!("tokenizer: {n}"));
        }
        let out = Path::new(&self.out);
        let lock = OutputLock::directory(out, "tokenize")?;
        if let Some(note) = lock.stale_note() {
            progress.note(note);
        }
        let files = self.corpus.files(&self.inputs)?;
        tokenize(&files, &self.corpus.config(), &tok, Path::new(&self.tokenizer), &cfg, config, out, source, progress)
    }
}

fn extend(target: &mut Value, more: Value) {
    if let (Value::Object(t), Value::Object(m)) = (target, more) {
        t.extend(m);
    }
}

/// `v` with the keys of every object in sorted order: the canonical form that is hashed.
fn sorted(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect::<Map<_, _>>())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(names: &[&str]) -> Given {
        names.iter().map(|s| (*s).to_string()).collect()
    }

    fn base() -> TokenizeOptions {
        TokenizeOptions { inputs: vec!["in".into()], tokenizer: "t.json".into(), out: "o".into(), ..Default::default() }
    }

    #[test]
    fn bounds_name_the_flag() {
        for (o, flag) in [
            (TokenizeOptions { seq_len: 0, ..base() }, "--seq-len"),
            (TokenizeOptions { seq_len: 10_000_000, ..base() }, "--seq-len"),
            (TokenizeOptions { val_fraction: f64::NAN, ..base() }, "--val-fraction"),
            (TokenizeOptions { val_fraction: 1.0, ..base() }, "--val-fraction"),
            (TokenizeOptions { threads: Some(0), ..base() }, "--threads"),
            (TokenizeOptions { shard_size: Size::Text("-1MB".into()), ..base() }, "--shard-size"),
            (TokenizeOptions { dedup_threshold: 0.0, ..base() }, "--dedup-threshold"),
        ] {
            let e = o.validate(&Given::new()).unwrap_err().to_string();
            assert!(e.starts_with(flag), "{e}");
        }
        assert!(base().validate(&Given::new()).is_ok());
    }

    #[test]
    fn options_for_another_objective_are_refused() {
        let e = base().validate(&given(&["layout"])).unwrap_err().to_string();
        assert_eq!(e, "--layout applies to --objective mlm only");
        let mlm = TokenizeOptions { objective: ObjectiveKind::Mlm, ..base() };
        let e = mlm.validate(&given(&["use_bos"])).unwrap_err().to_string();
        assert!(e.starts_with("--bos applies to --objective clm only"), "{e}");
        let e = mlm.validate(&given(&["dupe_factor"])).unwrap_err().to_string();
        assert!(e.starts_with("--dupe-factor applies with static masking only"), "{e}");
        let e = base().validate(&given(&["dedup_threshold"])).unwrap_err().to_string();
        assert_eq!(e, "--dedup-threshold applies to --dedup near only");
        assert!(mlm.validate(&given(&["dedup", "mask_token"])).is_ok());
    }

    #[test]
    fn canonical_form_sorts_keys_recursively() {
        let v = sorted(json!({"b": 1, "a": {"d": 2, "c": [{"f": 1, "e": 2}]}}));
        assert_eq!(v.to_string(), r#"{"a":{"c":[{"e":2,"f":1}],"d":2},"b":1}"#);
    }
}
