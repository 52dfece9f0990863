//! Resume and commit of a `tokenize` output directory.
//!
//! - Configuration check: the config hash is SHA-256 over the command's options
//!   (`config_json`), the tokenizer file's SHA-256 and the input list (path and size). A
//!   directory whose manifest or journal has another hash is refused, never mixed into.
//! - Stale temporaries (`.<name>.tmp-<pid>`, left by a killed run) are removed on open: they
//!   never hold finished work (a shard is renamed into place when complete).
//! - Journal ([`JOURNAL`]): per split, the state at its last completed shard (its shards, the
//!   next document index, the row builder's carry), rewritten atomically each time a shard
//!   completes ([`Checkpoints::record`]).
//! - Commit: the manifest is written (atomically) once every shard is complete, then the journal
//!   is removed. A directory with a manifest is complete: a rerun with the same hash returns it.
//! - Trust but verify: before a rerun builds on the shards the journal lists, or returns a
//!   complete directory's manifest, each listed shard's size and SHA-256 are checked against the
//!   record. A missing or altered shard is an error naming it (remove the directory and rerun),
//!   never continued over. The cost is one read of the finished output per rerun: that read is
//!   the promise that a returned manifest describes the files next to it.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::corpus::InputFile;
use crate::error::{Error, Result};
use crate::fsutil::{sha256_file, write_atomic};
use crate::shards::manifest::{
    read_json, read_manifest, write_json, write_manifest, InputInfo, Journal, Manifest, StreamState, JOURNAL, MANIFEST,
};
use crate::shards::ShardInfo;

/// What decides whether two runs make the same output: the config hash, SHA-256 over the
/// command's options (`config_json`), the tokenizer file's SHA-256 and the input list (path and
/// size). Work units (`super::units`) carry it, so a unit made for other options is never used.
pub(crate) struct Identity {
    pub config_hash: String,
    pub tokenizer_sha256: String,
    pub inputs: Vec<InputInfo>,
}

impl Identity {
    pub fn of(files: &[InputFile], tokenizer_file: &Path, config_json: &serde_json::Value) -> Result<Self> {
        let tokenizer_sha256 = sha256_file(tokenizer_file)?;
        let inputs: Vec<InputInfo> =
            files.iter().map(|f| InputInfo { path: f.name().into_owned(), bytes: f.size }).collect();
        let config_hash = {
            let mut h = Sha256::new();
            h.update(serde_json::to_vec(config_json).unwrap_or_default());
            h.update(tokenizer_sha256.as_bytes());
            for i in &inputs {
                h.update(format!("{}\0{}\n", i.path, i.bytes).as_bytes());
            }
            format!("{:x}", h.finalize())
        };
        Ok(Self { config_hash, tokenizer_sha256, inputs })
    }
}

/// An opened output directory and the identity of the run writing into it.
pub(super) struct OutDir<'a> {
    path: &'a Path,
    pub config_hash: String,
    pub tokenizer_sha256: String,
    pub inputs: Vec<InputInfo>,
}

impl<'a> OutDir<'a> {
    /// Creates `path` if need be, removes stale temporaries and hashes the configuration.
    pub fn open(
        path: &'a Path,
        files: &[InputFile],
        tokenizer_file: &Path,
        config_json: &serde_json::Value,
    ) -> Result<Self> {
        std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
        remove_stale_temps(path)?;
        let Identity { config_hash, tokenizer_sha256, inputs } = Identity::of(files, tokenizer_file, config_json)?;
        Ok(Self { path, config_hash, tokenizer_sha256, inputs })
    }

    fn other_config(&self) -> Error {
        Error::input(
            self.path,
            "holds shards made with other options, tokenizer or inputs; use another --out or remove it",
        )
    }

    /// The manifest of a complete run with this configuration, if there is one.
    pub fn finished(&self) -> Result<Option<Manifest>> {
        match read_manifest(&self.path.join(MANIFEST))? {
            Some(m) if m.config_hash != self.config_hash => Err(self.other_config()),
            Some(m) => {
                // One read of the whole output: what "already complete" promises.
                for split in m.splits.values() {
                    self.verify(&split.shards)?;
                }
                Ok(Some(m))
            }
            None => Ok(None),
        }
    }

    /// The checkpoints of an interrupted run with this configuration, or fresh ones.
    pub fn checkpoints(&self) -> Result<Checkpoints> {
        let journal = match read_json::<Journal>(&self.path.join(JOURNAL))? {
            Some(j) if j.config_hash != self.config_hash => return Err(self.other_config()),
            Some(j) => {
                for state in j.streams.values() {
                    self.verify(&state.shards)?;
                }
                j
            }
            None => Journal { config_hash: self.config_hash.clone(), streams: std::collections::BTreeMap::new() },
        };
        Ok(Checkpoints { path: self.path.join(JOURNAL), journal })
    }

    /// Checks that each of `shards` is in the directory with the size and SHA-256 recorded when it
    /// was written; a missing or altered shard is an error naming it.
    fn verify(&self, shards: &[ShardInfo]) -> Result<()> {
        let advice = "remove the output directory and rerun";
        for shard in shards {
            let path = self.path.join(&shard.file);
            let bytes = match std::fs::metadata(&path) {
                Ok(m) => m.len(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(Error::input(path, format!("finished shard is missing; {advice}")));
                }
                Err(e) => return Err(Error::io(path, e)),
            };
            if bytes != shard.bytes || sha256_file(&path)? != shard.sha256 {
                return Err(Error::input(
                    path,
                    format!("finished shard changed since it was written (size or SHA-256 differs); {advice}"),
                ));
            }
        }
        Ok(())
    }

    /// Copies the tokenizer file next to the shards; returns the copy's file name.
    pub fn copy_tokenizer(&self, tokenizer_file: &Path) -> Result<String> {
        let name = tokenizer_file.file_name().map_or("tokenizer.json".into(), |n| n.to_string_lossy().into_owned());
        let bytes = std::fs::read(tokenizer_file).map_err(|e| Error::io(tokenizer_file, e))?;
        write_atomic(&self.path.join(&name), |w| w.write_all(&bytes))?;
        Ok(name)
    }

    /// Writes the manifest (the run is complete from then on) and removes the journal.
    pub fn commit(&self, manifest: &mut Manifest) -> Result<()> {
        write_manifest(&self.path.join(MANIFEST), manifest)?;
        let _ = std::fs::remove_file(self.path.join(JOURNAL));
        Ok(())
    }
}

/// The journal of a run in progress.
pub(super) struct Checkpoints {
    path: PathBuf,
    journal: Journal,
}

impl Checkpoints {
    /// Where split `name` stands: its state at its last completed shard (empty when none).
    pub fn state(&self, name: &str) -> StreamState {
        self.journal.streams.get(name).cloned().unwrap_or_default()
    }

    /// Records that split `name` now stands at `state` (right after a shard completed).
    pub fn record(&mut self, name: &str, state: &StreamState) -> Result<()> {
        self.journal.streams.insert(name.to_string(), state.clone());
        write_json(&self.path, &self.journal)
    }
}

/// Removes temporary files a killed run left (`.<name>.tmp-<pid>`); they never hold finished work.
fn remove_stale_temps(out: &Path) -> Result<()> {
    for entry in std::fs::read_dir(out).map_err(|e| Error::io(out, e))? {
        let entry = entry.map_err(|e| Error::io(out, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.contains(".tmp-") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}
