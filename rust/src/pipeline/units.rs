//! Work units of `tokenize`: the read and encode stages run on a slice of the inputs, anywhere,
//! and their result stored in a unit file ([`crate::unitfile`]); the row sinks then run over the
//! unit files in input order (`super::tokenize`, [`super::tokenize::Source::Units`]) and write
//! what the local engine writes.
//!
//! Why this cut: reading and encoding are nearly all of the cost and need nothing but the unit's
//! own files, while the output's layout (split of each document, packing across documents, shard
//! boundaries, resume checkpoints) depends on every document before it. A unit therefore numbers
//! its documents from 0; the assembling step adds the documents of the units before it, which
//! gives each document the corpus index the local engine gives it, and runs the very same sinks.
//! Shards and manifest are byte-identical for any number of nodes, workers or retries.
//! (datatrove's Ray executor instead writes one output per task, so its output changes with the
//! task count; NeMo Curator's Ray Data stages reorder blocks.)
//!
//! Records after the header: batches (`1u8`, the batch's first local document index, the encoded
//! batch in [`UnitBatch`] form), then `0u8` and the unit's read counts ([`ReadStats`] as
//! length-prefixed JSON).

use std::io::{Read, Write};
use std::path::Path;

use super::encode::{Encoder, Ids, Sentences};
use super::resume::Identity;
use super::tokenize::{Objective, TokenizeConfig};
use crate::corpus::{read_batches, CorpusConfig, InputFile, ReadStats};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::rows::mlm::Documents;
use crate::tokenizer::EncodeCache;
use crate::tokenizer::Tokenizer;
use crate::unitfile::{bad, get, get_json, len, put, put_json, Header, UnitFile, UnitRecord, UnitWriter};

const MAGIC: &[u8; 8] = b"DPUNIT01";

/// An encoded batch as bytes in a unit file, and back.
pub(super) trait UnitBatch: Sized {
    fn write(&self, w: &mut dyn Write) -> std::io::Result<()>;
    fn read(r: &mut dyn Read) -> std::io::Result<Self>;
    /// Documents in the batch.
    fn documents(&self) -> usize;
}

fn put_u32s(w: &mut dyn Write, v: &[u32]) -> std::io::Result<()> {
    put(w, v.len() as u64)?;
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    w.write_all(&bytes)
}

fn get_u32s(r: &mut dyn Read) -> std::io::Result<Vec<u32>> {
    let n = len(r)?;
    let mut bytes = vec![0u8; n * 4];
    r.read_exact(&mut bytes)?;
    Ok(bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

fn put_usizes(w: &mut dyn Write, v: &[usize]) -> std::io::Result<()> {
    put(w, v.len() as u64)?;
    let bytes: Vec<u8> = v.iter().flat_map(|&x| (x as u64).to_le_bytes()).collect();
    w.write_all(&bytes)
}

fn get_usizes(r: &mut dyn Read) -> std::io::Result<Vec<usize>> {
    let n = len(r)?;
    (0..n).map(|_| len(r)).collect()
}

impl UnitBatch for Vec<Vec<u32>> {
    fn write(&self, w: &mut dyn Write) -> std::io::Result<()> {
        put(w, self.len() as u64)?;
        self.iter().try_for_each(|d| put_u32s(w, d))
    }

    fn read(r: &mut dyn Read) -> std::io::Result<Self> {
        let n = len(r)?;
        (0..n).map(|_| get_u32s(r)).collect()
    }

    fn documents(&self) -> usize {
        self.len()
    }
}

impl UnitBatch for Documents {
    fn write(&self, w: &mut dyn Write) -> std::io::Result<()> {
        let (ids, word_start, sentence_ends, doc_ends) = self.parts();
        put_u32s(w, ids)?;
        put(w, word_start.len() as u64)?;
        w.write_all(word_start)?;
        put_usizes(w, sentence_ends)?;
        put_usizes(w, doc_ends)
    }

    fn read(r: &mut dyn Read) -> std::io::Result<Self> {
        let ids = get_u32s(r)?;
        let mut word_start = vec![0u8; len(r)?];
        r.read_exact(&mut word_start)?;
        let sentence_ends = get_usizes(r)?;
        let doc_ends = get_usizes(r)?;
        Documents::from_parts(ids, word_start, sentence_ends, doc_ends).ok_or_else(|| bad("inconsistent documents"))
    }

    fn documents(&self) -> usize {
        self.len()
    }
}

/// The configuration hash of a run over `files` (all its inputs) with `tokenizer_file` and
/// `config_json`: what a unit must have been made for.
pub fn config_hash(files: &[InputFile], tokenizer_file: &Path, config_json: &serde_json::Value) -> Result<String> {
    Ok(Identity::of(files, tokenizer_file, config_json)?.config_hash)
}

/// Makes the work unit `out` from `unit` (a slice of the run's inputs `files`, in order) for the
/// run that `cfg` describes; `config_hash` is the run's ([`config_hash`]).
pub fn make_unit(
    unit: &[InputFile],
    corpus: &CorpusConfig,
    tok: &Tokenizer,
    cfg: &TokenizeConfig,
    config_hash: &str,
    out: &Path,
    progress: &Progress,
) -> Result<UnitRecord> {
    if cfg.dedup.is_some() {
        return Err(Error::Config("--dedup is not supported with work units (--engine ray) yet".into()));
    }
    let (threads, batch_bytes) = (cfg.threads, cfg.batch_bytes);
    match &cfg.objective {
        Objective::Clm => encode_unit(unit, corpus, &Ids(tok), config_hash, threads, batch_bytes, out, progress),
        Objective::Mlm(_) => {
            encode_unit(unit, corpus, &Sentences(tok), config_hash, threads, batch_bytes, out, progress)
        }
    }
}

/// Reads and encodes `files` (a slice of the run's inputs, numbered from document 0) with
/// `encoder` and writes the unit file `out` (temporary name, then rename).
#[allow(clippy::too_many_arguments)]
fn encode_unit<E: Encoder>(
    files: &[InputFile],
    corpus: &CorpusConfig,
    encoder: &E,
    config_hash: &str,
    threads: usize,
    batch_bytes: usize,
    out: &Path,
    progress: &Progress,
) -> Result<UnitRecord>
where
    E::Batch: UnitBatch,
{
    let header = Header::new(config_hash, files, 0);
    let mut w = UnitWriter::create(out, MAGIC, &header)?;
    let (stats, tokens) = write_batches(files, corpus, encoder, threads, batch_bytes, &mut w, progress)?;
    (|| {
        w.stream().write_all(&[0])?;
        put_json(w.stream(), &stats)
    })()
    .map_err(|e| w.error(e))?;
    w.finish_record(header, stats.documents, tokens)
}

/// The read and encode stages of `tokenize`, with the unit file in place of the writer thread:
/// batches are written in input order (by sequence number). Returns the read counts and tokens.
#[allow(clippy::too_many_arguments)]
fn write_batches<E: Encoder>(
    files: &[InputFile],
    corpus: &CorpusConfig,
    encoder: &E,
    threads: usize,
    batch_bytes: usize,
    unit: &mut UnitWriter,
    progress: &Progress,
) -> Result<(ReadStats, u64)>
where
    E::Batch: UnitBatch,
{
    let (tx, rx) = crossbeam_channel::bounded::<(u64, u64, E::Batch)>(2 * threads + 2);
    let path = unit.path().to_path_buf();
    let io_error = move |e| Error::io(&path, e);
    let w = unit.stream();
    let (read, written) = std::thread::scope(|scope| {
        let writer = scope.spawn(move || {
            let mut pending = std::collections::BTreeMap::new();
            let (mut next_seq, mut tokens) = (0u64, 0u64);
            for (seq, first, docs) in &rx {
                pending.insert(seq, (first, docs));
                while let Some((first, docs)) = pending.remove(&next_seq) {
                    tokens += E::tokens(&docs);
                    let mut record = || {
                        w.write_all(&[1])?;
                        put(w, first)?;
                        docs.write(w)
                    };
                    record().map_err(&io_error)?;
                    next_seq += 1;
                }
            }
            Ok::<_, Error>(tokens)
        });
        let read = read_batches(files, corpus, batch_bytes, threads, progress, EncodeCache::new, |cache, batch| {
            let first = batch.docs.first().map_or(0, |d| d.index);
            let mut docs = encoder.batch(batch.bytes, batch.docs.len());
            for d in &batch.docs {
                encoder.encode(cache, &d.text, &mut docs)?;
            }
            progress.add_tokens(E::tokens(&docs));
            tx.send((batch.seq, first, docs)).map_err(|_| Error::Cancelled)
        });
        drop(tx);
        (read, writer.join().expect("unit writer panicked"))
    });
    // The writer's error (a full disk) explains the reader's "Cancelled" it caused.
    let tokens = written?;
    let (stats, _) = read?;
    Ok((stats, tokens))
}

/// A tokenize unit file being read back: its header, then its batches in order, then its read
/// counts.
pub(super) struct UnitReader(UnitFile);

impl UnitReader {
    /// Opens `path` after checking its SHA-256 against `sha256` (the unit's done record).
    pub fn open(path: &Path, sha256: &str) -> Result<Self> {
        UnitFile::open(path, sha256, MAGIC).map(Self)
    }

    pub fn header(&self) -> &Header {
        &self.0.header
    }

    /// The next batch (its first local document index and the batch), or the unit's read counts
    /// at the end.
    pub fn next<B: UnitBatch>(&mut self) -> Result<std::result::Result<(u64, B), ReadStats>> {
        let f = &mut self.0;
        let r = f.stream();
        let mut tag = [0u8; 1];
        let read = (|| {
            r.read_exact(&mut tag)?;
            match tag[0] {
                1 => Ok(Ok((get(r)?, B::read(r)?))),
                0 => Ok(Err(get_json(r)?)),
                t => Err(bad(&format!("unknown record tag {t}"))),
            }
        })();
        read.map_err(|e| f.damaged(&e))
    }
}
