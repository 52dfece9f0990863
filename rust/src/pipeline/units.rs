//! Work units: the read and encode stages of `tokenize` run on a slice of the inputs, anywhere,
//! and their result stored in a file; the row sinks then run over the unit files in input order
//! (`super::tokenize`, [`super::tokenize::Source::Units`]) and write what the local engine writes.
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
//! A unit file is a zstd stream: [`MAGIC`], the [`Header`] (length-prefixed JSON: the
//! configuration hash it was made for and its input files), then batches (`1u8`, the batch's
//! first local document index, the encoded batch in [`UnitBatch`] form), then `0u8` and the
//! unit's read counts ([`ReadStats`] as length-prefixed JSON). [`UnitRecord`] (what the maker returns) holds the file's SHA-256,
//! checked before the file is read.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::encode::{Encoder, Ids, Sentences};
use super::resume::Identity;
use super::tokenize::{Objective, TokenizeConfig};
use crate::bpe::EncodeCache;
use crate::corpus::{read_batches, CorpusConfig, InputFile, ReadStats};
use crate::error::{Error, Result};
use crate::fsutil::{sha256_file, temp_path};
use crate::progress::Progress;
use crate::rows::mlm::Documents;
use crate::tokenizer::Tokenizer;

const MAGIC: &[u8; 8] = b"DPUNIT01";

/// What a unit's maker reports, and what its done record holds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct UnitRecord {
    /// The run's configuration hash (options, tokenizer, every input): see `resume::Identity`.
    pub config_hash: String,
    /// The unit's input files (path, size), in corpus order.
    pub files: Vec<(String, u64)>,
    /// Documents read (the corpus indices the unit spans).
    pub documents: u64,
    pub tokens: u64,
    /// Size and SHA-256 of the unit file.
    pub bytes: u64,
    pub sha256: String,
}

/// The start of a unit file: what it was made from.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct Header {
    pub config_hash: String,
    pub files: Vec<(String, u64)>,
}

/// An encoded batch as bytes in a unit file, and back.
pub(super) trait UnitBatch: Sized {
    fn write(&self, w: &mut dyn Write) -> std::io::Result<()>;
    fn read(r: &mut dyn Read) -> std::io::Result<Self>;
    /// Documents in the batch.
    fn documents(&self) -> usize;
}

fn put(w: &mut dyn Write, v: u64) -> std::io::Result<()> {
    w.write_all(&v.to_le_bytes())
}

fn get(r: &mut dyn Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

/// A length read from a unit file, bounded so that a damaged length cannot ask for terabytes.
fn len(r: &mut dyn Read) -> std::io::Result<usize> {
    let n = get(r)?;
    usize::try_from(n).ok().filter(|&n| n < 1 << 40).ok_or_else(|| bad("length out of range"))
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

fn put_json(w: &mut dyn Write, v: &impl serde::Serialize, path: &Path) -> Result<()> {
    let json = serde_json::to_vec(v).map_err(|e| Error::io(path, std::io::Error::other(e)))?;
    (|| {
        put(w, json.len() as u64)?;
        w.write_all(&json)
    })()
    .map_err(|e| Error::io(path, e))
}

/// Counts the bytes written through it and hashes them.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
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
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let tmp = temp_path(out);
    let result = (|| {
        let file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let hashing = Hashing { inner: BufWriter::new(file), hash: Sha256::new(), bytes: 0 };
        let mut z = zstd::Encoder::new(hashing, 1).map_err(|e| Error::io(out, e))?;
        z.write_all(MAGIC).map_err(|e| Error::io(out, e))?;
        let header = Header {
            config_hash: config_hash.to_string(),
            files: files.iter().map(|f| (f.path.display().to_string(), f.size)).collect(),
        };
        put_json(&mut z, &header, out)?;
        let (stats, tokens) = write_batches(files, corpus, encoder, threads, batch_bytes, &mut z, out, progress)?;
        z.write_all(&[0]).map_err(|e| Error::io(out, e))?;
        put_json(&mut z, &stats, out)?;
        let finish = (|| {
            let mut hashing = z.finish()?;
            hashing.flush()?;
            let Hashing { inner, hash, bytes } = hashing;
            inner.into_inner().map_err(std::io::IntoInnerError::into_error)?.sync_all()?;
            Ok::<_, std::io::Error>((format!("{:x}", hash.finalize()), bytes))
        })();
        let (sha256, bytes) = finish.map_err(|e| Error::io(out, e))?;
        std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))?;
        Ok(UnitRecord {
            config_hash: header.config_hash,
            files: header.files,
            documents: stats.documents,
            tokens,
            bytes,
            sha256,
        })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
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
    w: &mut (dyn Write + Send),
    out: &Path,
    progress: &Progress,
) -> Result<(ReadStats, u64)>
where
    E::Batch: UnitBatch,
{
    let (tx, rx) = crossbeam_channel::bounded::<(u64, u64, E::Batch)>(2 * threads + 2);
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
                    record().map_err(|e| Error::io(out, e))?;
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

/// A unit file being read back: its header, then its batches in order, then its read counts.
pub(super) struct UnitReader {
    r: BufReader<zstd::Decoder<'static, BufReader<std::fs::File>>>,
    path: std::path::PathBuf,
    pub header: Header,
}

impl UnitReader {
    /// Opens `path` after checking its SHA-256 against `sha256` (the unit's done record) and
    /// reads its header.
    pub fn open(path: &Path, sha256: &str) -> Result<Self> {
        if sha256_file(path)? != sha256 {
            return Err(Error::input(
                path,
                "work unit changed since it was made (SHA-256 differs); remove it and its done record and rerun",
            ));
        }
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let z = zstd::Decoder::new(file).map_err(|e| Error::io(path, e))?;
        let mut r = BufReader::new(z);
        let damaged = |e: &dyn std::fmt::Display| Error::input(path, format!("work unit is damaged: {e}"));
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic).map_err(|e| damaged(&e))?;
        if &magic != MAGIC {
            return Err(Error::input(path, "not a dataprep work unit (or one of another version)"));
        }
        let header = get_json(&mut r).map_err(|e| damaged(&e))?;
        Ok(Self { r, path: path.to_path_buf(), header })
    }

    fn damaged(&self, e: &dyn std::fmt::Display) -> Error {
        Error::input(&self.path, format!("work unit is damaged: {e}"))
    }

    /// The next batch (its first local document index and the batch), or the unit's read counts
    /// at the end.
    pub fn next<B: UnitBatch>(&mut self) -> Result<std::result::Result<(u64, B), ReadStats>> {
        let mut tag = [0u8; 1];
        self.r.read_exact(&mut tag).map_err(|e| self.damaged(&e))?;
        match tag[0] {
            1 => {
                let first = get(&mut self.r).map_err(|e| self.damaged(&e))?;
                let batch = B::read(&mut self.r).map_err(|e| self.damaged(&e))?;
                Ok(Ok((first, batch)))
            }
            0 => Ok(Err(get_json(&mut self.r).map_err(|e| self.damaged(&e))?)),
            t => Err(self.damaged(&format!("unknown record tag {t}"))),
        }
    }
}

fn get_json<T: serde::de::DeserializeOwned>(r: &mut dyn Read) -> std::io::Result<T> {
    let n = len(r)?;
    let mut json = vec![0u8; n];
    r.read_exact(&mut json)?;
    serde_json::from_slice(&json).map_err(|e| bad(&e.to_string()))
}
