//! Work units of `train-bpe`: the pieces of a slice of the inputs counted anywhere and stored in a
//! unit file ([`crate::unitfile`]); the counts of every unit are then summed and merged on one
//! machine. Counts are exact integers and the merge's tie rule depends on nothing else, so the
//! tokenizer is byte-identical to the local engine's for any slicing of the inputs.
//!
//! The held-back documents are chosen by corpus index (`holdout_every`): a unit is told the
//! index of its first document (`first_index`), and [`read_units`] checks each unit was counted
//! at the index the units before it end at.
//!
//! Records after the header: the piece count, then (piece, count) pairs in byte order, then the
//! held-back documents (count, then (index, text) pairs), then the read counts ([`ReadStats`]).

use std::path::{Path, PathBuf};

use super::trainer::{cap_held, count_words, merge_into, Counted, Counts, TrainerConfig};
use crate::corpus::{CorpusConfig, InputFile, ReadStats};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::unitfile::{
    get, get_bytes, get_json, len, put, put_bytes, put_json, Coverage, Header, UnitFile, UnitRecord, UnitWriter,
};

const MAGIC: &[u8; 8] = b"DPBPEC01";

/// Counts `unit` (consecutive inputs of the run, the first of its documents at `first_index`) and
/// writes the unit file `out`.
pub fn count_unit(
    unit: &[InputFile],
    first_index: u64,
    corpus: &CorpusConfig,
    cfg: &TrainerConfig,
    config_hash: &str,
    out: &Path,
    progress: &Progress,
) -> Result<UnitRecord> {
    let (counts, stats, held) = count_words(unit, corpus, cfg, first_index, progress)?;
    let header = Header::new(config_hash, unit, first_index);
    let mut w = UnitWriter::create(out, MAGIC, &header)?;
    let mut pieces: Vec<(&[u8], u64)> = counts.iter().map(|(k, &v)| (k.as_bytes(), v)).collect();
    pieces.sort_unstable();
    let written = (|| {
        let s = w.stream();
        put(s, pieces.len() as u64)?;
        for (p, c) in &pieces {
            put_bytes(s, p)?;
            put(s, *c)?;
        }
        put(s, held.len() as u64)?;
        for (i, t) in &held {
            put(s, *i)?;
            put_bytes(s, t.as_bytes())?;
        }
        put_json(s, &stats)
    })();
    written.map_err(|e| w.error(e))?;
    let tokens = pieces.iter().map(|(_, c)| c).sum();
    w.finish_record(header, stats.documents, tokens)
}

/// Reads the units (path and SHA-256 of each, in input order) of the run over `files` with
/// `config_hash`, checks each as it comes ([`Coverage`]: made for the run, the next inputs,
/// counted at the corpus index the ones before it end at), sums them, and checks that they
/// covered every input.
pub fn read_units(
    units: &[(PathBuf, String)],
    files: &[InputFile],
    config_hash: &str,
    cfg: &TrainerConfig,
    progress: &Progress,
) -> Result<Counted> {
    progress.phase("merging counts", units.len() as u64);
    let mut coverage = Coverage::new(files, config_hash);
    let (mut total, mut stats, mut held) = (Counts::default(), ReadStats::default(), Vec::new());
    for (path, sha256) in units {
        progress.check()?;
        let mut unit = UnitFile::open(path, sha256, MAGIC)?;
        coverage.next(path, &unit.header)?;
        if cfg.holdout_every > 0 && unit.header.first_index != stats.documents {
            return Err(Error::input(
                path,
                format!(
                    "work unit was counted from document {}, but the units before it end at document {}",
                    unit.header.first_index, stats.documents
                ),
            ));
        }
        let read = (|| {
            let r = unit.stream();
            let n = len(r)?;
            let mut counts = Counts::with_capacity(n);
            for _ in 0..n {
                let piece = String::from_utf8(get_bytes(r)?).map_err(|e| crate::unitfile::bad(&e.to_string()))?;
                counts.insert(piece.into(), get(r)?);
            }
            let h = len(r)?;
            let mut unit_held = Vec::with_capacity(h);
            for _ in 0..h {
                let i = get(r)?;
                let t = String::from_utf8(get_bytes(r)?).map_err(|e| crate::unitfile::bad(&e.to_string()))?;
                unit_held.push((i, t));
            }
            let unit_stats: ReadStats = get_json(r)?;
            Ok::<_, std::io::Error>((counts, unit_held, unit_stats))
        })();
        let (counts, unit_held, unit_stats) = read.map_err(|e| unit.damaged(&e))?;
        if counts.len() > total.len() {
            let small = std::mem::replace(&mut total, counts);
            merge_into(&mut total, small);
        } else {
            merge_into(&mut total, counts);
        }
        held.extend(unit_held);
        stats.add(&unit_stats);
        progress.add(1);
    }
    coverage.finish()?;
    Ok((total, stats, cap_held(held, cfg.holdout_max_bytes)))
}
