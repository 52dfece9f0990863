//! `dataprep dedup` options and the command itself (find duplicates, write what is kept).

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ensure, flag_of, refuse_given, threads_or_all, CorpusOptions, Given};
use crate::corpus;
use crate::dedup::output::{write_output, OutputStats};
use crate::dedup::{find_duplicates, DedupConfig, DedupResult, Mode, Normalization};
use crate::error::{Error, Result};
use crate::lock::{check_disjoint, OutputLock};
use crate::progress::Progress;

/// Every option of `dataprep dedup` (Python: `dataprep.dedup`).
// The flags are the command's options, each its own switch (clippy would have a state machine).
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct DedupOptions {
    /// Files or directories to read (walked recursively).
    #[schemars(extend("x-required" = true, "x-argument" = true))]
    pub inputs: Vec<String>,
    /// Directory for the kept documents, clusters.jsonl (the audit report) and summary.json; none: only find the duplicates.
    #[schemars(extend("x-cli-default" = "deduped"))]
    pub out: Option<String>,
    /// exact: normalized-text hash; near: exact, then MinHash LSH.
    pub mode: Mode,
    /// Jaccard similarity of shingles at and above which documents are near duplicates.
    pub threshold: f64,
    /// Words per shingle (scripts without spaces count each character as a word).
    pub ngram: usize,
    /// MinHash permutations.
    pub num_perm: usize,
    /// LSH bands and rows [default: derived from --threshold].
    #[schemars(extend("x-metavar" = "B R"))]
    pub bands: Option<(usize, usize)>,
    /// Check candidate pairs by their true Jaccard: no pair below the threshold is removed.
    pub verify: bool,
    /// Exact key: Unicode NFC.
    pub nfc: bool,
    /// Exact key: collapse whitespace.
    pub whitespace: bool,
    /// Exact key: ignore case.
    pub lowercase: bool,
    /// MinHash seed.
    pub seed: u64,
    /// Worker threads [default: all cores]; the result is the same for any number.
    pub threads: Option<usize>,
    /// Sort-buffer budget in MB; beyond it signatures spill to sorted runs on disk.
    pub memory_mb: usize,
    /// Where sorted runs are spilled [default: system temp].
    pub temp_dir: Option<String>,
    #[serde(flatten)]
    pub corpus: CorpusOptions,
}

impl Default for DedupOptions {
    fn default() -> Self {
        let d = DedupConfig::new(Mode::Near);
        Self {
            inputs: Vec::new(),
            out: None,
            mode: Mode::Near,
            threshold: d.threshold,
            ngram: d.ngram,
            num_perm: d.num_perm,
            bands: None,
            verify: d.verify,
            nfc: d.normalization.nfc,
            whitespace: d.normalization.whitespace,
            lowercase: d.normalization.lowercase,
            seed: d.seed,
            threads: None,
            memory_mb: d.memory_bytes >> 20,
            temp_dir: None,
            corpus: CorpusOptions::default(),
        }
    }
}

const NEAR_ONLY: [&str; 6] = ["threshold", "ngram", "num_perm", "bands", "verify", "seed"];

fn flag(field: &str) -> String {
    flag_of::<DedupOptions>(field)
}

/// What [`DedupOptions::run`] found and wrote.
pub struct DedupOutcome {
    pub result: DedupResult,
    pub written: Option<OutputStats>,
    pub threads: usize,
}

impl DedupOptions {
    pub fn validate(&self, given: &Given) -> Result<()> {
        if self.inputs.is_empty() {
            return Err(Error::Config(format!("{} is required", flag("inputs"))));
        }
        if self.mode == Mode::Exact {
            refuse_given(given, &NEAR_ONLY, flag, "applies to --mode near only")?;
        }
        ensure(self.threshold > 0.0 && self.threshold <= 1.0, "--threshold", "in (0, 1]", self.threshold)?;
        ensure((1..=64).contains(&self.ngram), "--ngram", "between 1 and 64", self.ngram)?;
        ensure((1..=1024).contains(&self.num_perm), "--num-perm", "between 1 and 1024", self.num_perm)?;
        if let Some((b, r)) = self.bands {
            ensure(b >= 1 && r >= 1, "--bands", "two numbers of at least 1", format!("{b} {r}"))?;
            ensure(
                b.saturating_mul(r) <= self.num_perm,
                "--bands",
                format!("at most --num-perm {} hashes in all (bands x rows)", self.num_perm),
                format!("{b} x {r}"),
            )?;
        }
        if let Some(t) = self.threads {
            ensure((1..=4096).contains(&t), "--threads", "between 1 and 4096", t)?;
        }
        ensure((1..=1 << 20).contains(&self.memory_mb), "--memory-mb", "between 1 and 1048576", self.memory_mb)?;
        if let Some(out) = &self.out {
            let inputs: Vec<PathBuf> = self.inputs.iter().map(PathBuf::from).collect();
            check_disjoint(&inputs, out.as_ref(), "--out")?;
        }
        Ok(())
    }

    /// The dedup stages' configuration.
    pub fn config(&self) -> DedupConfig {
        DedupConfig::new(self.mode)
            .normalization(Normalization { nfc: self.nfc, whitespace: self.whitespace, lowercase: self.lowercase })
            .threshold(self.threshold)
            .ngram(self.ngram)
            .num_perm(self.num_perm)
            .bands(self.bands)
            .verify(self.verify)
            .seed(self.seed)
            .memory_bytes(self.memory_mb << 20)
            .temp_dir(self.temp_dir.as_ref().map(PathBuf::from))
            .threads(threads_or_all(self.threads))
    }

    /// Validates, finds the duplicates and, with `out`, writes the kept documents and the report.
    pub fn run(&self, given: &Given, progress: &Progress) -> Result<DedupOutcome> {
        self.validate(given)?;
        let cfg = self.config();
        let corpus_cfg = self.corpus.config();
        let inputs: Vec<PathBuf> = self.inputs.iter().map(PathBuf::from).collect();
        let _lock = match &self.out {
            Some(dir) => {
                let lock = OutputLock::directory(dir.as_ref(), "dedup")?;
                if let Some(note) = lock.stale_note() {
                    progress.note(note);
                }
                Some(lock)
            }
            None => None,
        };
        if self.corpus.listing.is_some() {
            return Err(Error::Config("dedup: listed (remote) inputs are not supported yet".into()));
        }
        let files = corpus::discover(&inputs)?;
        let result = find_duplicates(&files, &corpus_cfg, &cfg, progress)?;
        let written = match &self.out {
            Some(dir) => Some(write_output(&files, &corpus_cfg, &result, dir.as_ref(), cfg.threads, progress)?),
            None => None,
        };
        Ok(DedupOutcome { result, written, threads: cfg.threads })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_only_options_are_refused_in_exact_mode() {
        let o = DedupOptions { inputs: vec!["x".into()], mode: Mode::Exact, ..Default::default() };
        let given: Given = ["ngram".to_string()].into();
        assert_eq!(o.validate(&given).unwrap_err().to_string(), "--ngram applies to --mode near only");
        let o = DedupOptions { inputs: vec!["x".into()], bands: Some((20, 20)), ..Default::default() };
        assert!(o.validate(&Given::new()).unwrap_err().to_string().starts_with("--bands must be at most"));
    }
}
