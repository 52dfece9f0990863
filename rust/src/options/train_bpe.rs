//! `dataprep train-bpe` options and the command itself (train, then write the files).

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use std::time::Instant;

use sha2::{Digest, Sha256};

use super::{ensure, flag_of, refuse_given, threads_or_all, CorpusOptions, Given};
use crate::bpe::trainer::{self, SpecialsAt, TrainStats, TrainerConfig};
use crate::bpe::units;
use crate::bpe::Tokenizer;
use crate::corpus;
use crate::error::{Error, Result};
use crate::fsutil::{check_writable, recover_set, write_set};
use crate::lock::OutputLock;
use crate::pretokenize::Pattern;
use crate::progress::Progress;
use crate::unitfile::{Plan, UnitRecord};

/// Largest vocabulary we train: ids must fit the shards' uint32 and a realistic memory budget.
pub const MAX_VOCAB_SIZE: u32 = 1 << 24;

/// Every option of `dataprep train-bpe` (Python: `dataprep.train_bpe`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct TrainBpeOptions {
    /// Files or directories to read (walked recursively).
    #[schemars(extend("x-required" = true, "x-argument" = true))]
    pub inputs: Vec<String>,
    /// Total ids, including the 256 bytes and the special tokens.
    pub vocab_size: u32,
    /// Where to write tokenizer.json (checked for writability before training); none: write nothing.
    #[schemars(extend("x-cli-default" = "tokenizer.json"))]
    pub out: Option<String>,
    /// Also write <out stem>.tiktoken and its .tiktoken.json sidecar next to --out.
    pub tiktoken: bool,
    /// Split pattern: gpt2, cl100k, o200k, llama3, qwen2, or a regex.
    pub pattern: String,
    /// A special token (repeatable), given ids in order where --specials says. E.g. --special-token '<|endoftext|>'.
    #[schemars(extend("x-flag" = "--special-token"))]
    pub special_tokens: Vec<String>,
    /// Ids of the special tokens: last (after every merge; the bytes are ids 0-255, as tiktoken-format loaders expect) or first (0..k-1).
    pub specials: SpecialsAt,
    /// Pairs seen fewer times are never merged.
    pub min_frequency: u64,
    /// Longest token in bytes [default: no limit].
    pub max_token_length: Option<usize>,
    /// Worker threads [default: all cores]; the output is the same for any number.
    pub threads: Option<usize>,
    /// Hold back every n-th document to measure bytes per token (0: none).
    pub holdout_every: u64,
    #[serde(flatten)]
    pub corpus: CorpusOptions,
}

impl Default for TrainBpeOptions {
    fn default() -> Self {
        let t = TrainerConfig::new(32000);
        Self {
            inputs: Vec::new(),
            vocab_size: t.vocab_size,
            out: None,
            tiktoken: true,
            pattern: "gpt2".into(),
            special_tokens: Vec::new(),
            specials: t.specials,
            min_frequency: t.min_frequency,
            max_token_length: t.max_token_length,
            threads: None,
            holdout_every: t.holdout_every,
            corpus: CorpusOptions::default(),
        }
    }
}

fn flag(field: &str) -> String {
    flag_of::<TrainBpeOptions>(field)
}

/// The tiktoken ranks file and its JSON sidecar written next to a `tokenizer.json`.
pub fn tiktoken_paths(out: &Path) -> (PathBuf, PathBuf) {
    let ranks = out.with_extension("tiktoken");
    let mut side = ranks.clone().into_os_string();
    side.push(".json");
    (ranks, PathBuf::from(side))
}

/// The record of an unfinished set of renames for the files written next to `out`.
fn set_record(out: &Path) -> PathBuf {
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    out.with_file_name(format!(".{name}.set"))
}

impl TrainBpeOptions {
    pub fn validate(&self, given: &Given) -> Result<()> {
        if self.inputs.is_empty() {
            return Err(Error::Config(format!("{} is required", flag("inputs"))));
        }
        if self.out.is_none() {
            refuse_given(given, &["tiktoken"], flag, "applies with --out only")?;
        }
        // The lower bound (256 bytes + the special tokens) is the trainer's own check.
        ensure(
            self.vocab_size <= MAX_VOCAB_SIZE,
            "--vocab-size",
            format!("at most {MAX_VOCAB_SIZE}"),
            self.vocab_size,
        )?;
        ensure(self.min_frequency >= 1, "--min-frequency", "at least 1", self.min_frequency)?;
        if let Some(n) = self.max_token_length {
            ensure(n >= 1, "--max-token-length", "at least 1", n)?;
        }
        if let Some(t) = self.threads {
            ensure((1..=4096).contains(&t), "--threads", "between 1 and 4096", t)?;
        }
        Ok(())
    }

    pub fn config(&self) -> TrainerConfig {
        TrainerConfig::new(self.vocab_size)
            .pattern(Pattern::parse(&self.pattern))
            .special_tokens(self.special_tokens.clone())
            .specials_at(self.specials)
            .min_frequency(self.min_frequency)
            .max_token_length(self.max_token_length)
            .threads(threads_or_all(self.threads))
            .holdout_every(self.holdout_every)
    }

    /// The files `run` writes: `tokenizer.json`, then the tiktoken pair when asked for.
    pub fn outputs(&self) -> Vec<PathBuf> {
        let Some(out) = &self.out else { return Vec::new() };
        let out = PathBuf::from(out);
        let mut paths = vec![out.clone()];
        if self.tiktoken {
            let (ranks, side) = tiktoken_paths(&out);
            paths.extend([ranks, side]);
        }
        paths
    }

    /// Validates, checks the outputs can be written, trains, then writes the files.
    pub fn run(&self, given: &Given, progress: &Progress) -> Result<(Tokenizer, TrainStats, usize)> {
        self.train(given, None, progress)
    }

    /// The run that work units are made for (`--engine ray`'s driver plans from it): its
    /// configuration hash and inputs (path, size) in reading order. Validates like [`Self::run`];
    /// takes no lock and writes nothing.
    pub fn plan(&self, given: &Given) -> Result<Plan> {
        self.validate(given)?;
        self.config().validate()?;
        let files = self.corpus.files(&self.inputs)?;
        let config_hash = self.config_hash(&files);
        Ok(Plan { config_hash, inputs: files.iter().map(corpus::InputFile::entry).collect() })
    }

    /// Documents in `unit_files` (consecutive inputs of the plan): the driver adds them up to
    /// tell each unit the corpus index of its first document (the hold-out is chosen by index).
    pub fn documents(&self, given: &Given, unit_files: &[String], progress: &Progress) -> Result<u64> {
        self.validate(given)?;
        let files = self.corpus.files(&self.inputs)?;
        let unit = self.corpus.unit_slice(&files, unit_files)?;
        let cfg = self.config();
        let (stats, _) = corpus::read_batches(
            unit,
            &self.corpus.config(),
            cfg.batch_bytes,
            cfg.threads,
            progress,
            || (),
            |(), _| Ok(()),
        )?;
        Ok(stats.documents)
    }

    /// Counts the pieces of `unit_files` (consecutive inputs of the plan, their first document at
    /// corpus index `first_index`) into the work unit file `unit_out` ([`crate::bpe::units`]).
    pub fn count_unit(
        &self,
        given: &Given,
        unit_files: &[String],
        first_index: u64,
        unit_out: &Path,
        progress: &Progress,
    ) -> Result<UnitRecord> {
        self.validate(given)?;
        let cfg = self.config();
        cfg.validate()?;
        let files = self.corpus.files(&self.inputs)?;
        let unit = self.corpus.unit_slice(&files, unit_files)?;
        let hash = self.config_hash(&files);
        units::count_unit(unit, first_index, &self.corpus.config(), &cfg, &hash, unit_out, progress)
    }

    /// Trains from work units (each unit file's path and SHA-256, in plan order) and writes the
    /// files: the same tokenizer as [`Self::run`].
    pub fn merge(
        &self,
        given: &Given,
        units: &[(PathBuf, String)],
        progress: &Progress,
    ) -> Result<(Tokenizer, TrainStats, usize)> {
        self.train(given, Some(units), progress)
    }

    /// SHA-256 over the options that change the counts or the tokenizer (not `out`, `threads`,
    /// `tiktoken`) and the inputs (path, size): what a work unit must have been counted for.
    fn config_hash(&self, files: &[corpus::InputFile]) -> String {
        let canonical = Self { out: None, threads: None, tiktoken: false, ..self.clone() };
        let mut h = Sha256::new();
        h.update(serde_json::to_vec(&canonical).unwrap_or_default());
        for f in files {
            h.update(format!("{}\0{}\n", f.name(), f.size).as_bytes());
        }
        format!("{:x}", h.finalize())
    }

    /// Validates, checks the outputs can be written, trains (from the inputs, or from `units`),
    /// then writes the files.
    fn train(
        &self,
        given: &Given,
        units: Option<&[(PathBuf, String)]>,
        progress: &Progress,
    ) -> Result<(Tokenizer, TrainStats, usize)> {
        self.validate(given)?;
        let cfg = self.config();
        cfg.validate()?;
        let _lock = match &self.out {
            Some(out) => {
                let out = Path::new(out);
                if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
                }
                for p in self.outputs() {
                    check_writable(&p)?;
                }
                let lock = OutputLock::file(out, "train-bpe")?;
                if let Some(note) = lock.stale_note() {
                    progress.note(note);
                }
                // A run killed while renaming its files: finish that set before anything else.
                recover_set(&set_record(out))?;
                Some(lock)
            }
            None => None,
        };
        let files = self.corpus.files(&self.inputs)?;
        let (tok, stats) = match units {
            None => trainer::train(&files, &self.corpus.config(), &cfg, progress)?,
            Some(units) => {
                let t0 = Instant::now();
                let counted = units::read_units(units, &files, &self.config_hash(&files), &cfg, progress)?;
                trainer::train_counted(counted, files.first().map(|f| f.path.as_path()), &cfg, t0, progress)?
            }
        };
        if let Some(out) = &self.out {
            // The files appear together or not at all (a kill between two renames must not leave
            // a tokenizer.json and a .tiktoken from different runs).
            // The contents in the order of `outputs()`, the one list of the files written.
            let out = Path::new(out);
            let mut contents = vec![tok.hf_json_bytes()];
            if self.tiktoken {
                let name = out.file_stem().map_or("dataprep".into(), |s| s.to_string_lossy().into_owned());
                let (ranks, sidecar) = tok.tiktoken_bytes(&name);
                contents.extend([ranks, sidecar]);
            }
            let paths = self.outputs();
            let files: Vec<(&Path, &[u8])> =
                paths.iter().map(PathBuf::as_path).zip(contents.iter().map(Vec::as_slice)).collect();
            write_set(&set_record(out), &files)?;
        }
        Ok((tok, stats, cfg.threads))
    }
}
