//! Work unit files: what a slice of a job (`tokenize`'s encoded documents, `train-bpe`'s piece
//! counts) leaves for the step that combines the slices, possibly on another machine
//! (`--engine ray`). One format for every kind: a zstd stream of an 8-byte magic naming the kind,
//! a [`Header`] (length-prefixed JSON: the configuration hash it was made for and its input
//! files), then the kind's records. The file is written under a temporary name and renamed when
//! complete; its size and SHA-256 ([`UnitRecord`]) go into the done record, and the file is
//! checked against them before it is read ([`UnitFile::open`]).

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::corpus::InputFile;
use crate::error::{Error, Result};
use crate::fsutil::{sha256_file, temp_path, HashingWriter};

/// The start of a unit file: what it was made from.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Header {
    /// The whole run's configuration hash (options, tokenizer, every input).
    pub config_hash: String,
    /// The unit's input files (path, size), in corpus order.
    pub files: Vec<(String, u64)>,
    /// Corpus index of the unit's first document, where the unit needs it (`train-bpe`'s hold-out).
    #[serde(default)]
    pub first_index: u64,
}

impl Header {
    pub fn new(config_hash: &str, files: &[InputFile], first_index: u64) -> Self {
        Self { config_hash: config_hash.to_string(), files: files.iter().map(InputFile::entry).collect(), first_index }
    }
}

/// The check every reader of units makes as units come, in order: each was made for the run
/// (its configuration hash) and holds the next inputs; at the end, all of them are covered.
pub struct Coverage<'a> {
    inputs: Vec<(String, u64)>,
    config_hash: &'a str,
    /// Inputs covered by the units so far, and how many units.
    at: usize,
    units: usize,
}

impl<'a> Coverage<'a> {
    pub fn new(files: &[InputFile], config_hash: &'a str) -> Self {
        Self { inputs: files.iter().map(InputFile::entry).collect(), config_hash, at: 0, units: 0 }
    }

    /// Checks the unit at `path` with `header`, before any of it is used.
    pub fn next(&mut self, path: &Path, header: &Header) -> Result<()> {
        if header.config_hash != self.config_hash {
            return Err(Error::input(
                path,
                "work unit was made for other options, tokenizer or inputs; remove it and its done record",
            ));
        }
        let (at, n) = (self.at, header.files.len());
        if self.inputs.get(at..at + n) != Some(header.files.as_slice()) {
            return Err(Error::Config(format!(
                "work unit {}: its files are not the run's inputs from input {at} on (units must come in input order)",
                path.display()
            )));
        }
        self.at += n;
        self.units += 1;
        Ok(())
    }

    /// Refuses units that ended before the inputs did.
    pub fn finish(&self) -> Result<()> {
        if self.at == self.inputs.len() {
            return Ok(());
        }
        Err(Error::Config(format!(
            "the {} work units cover {} input files, not the run's {} inputs",
            self.units,
            self.at,
            self.inputs.len()
        )))
    }
}

/// What a driver plans units from (`plan()` of `tokenize` and `train-bpe`): the run's
/// configuration hash and its inputs (path, size) in reading order.
#[derive(Debug, serde::Serialize)]
pub struct Plan {
    pub config_hash: String,
    pub inputs: Vec<(String, u64)>,
}

/// What a unit's maker reports, and what its done record holds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct UnitRecord {
    pub config_hash: String,
    pub files: Vec<(String, u64)>,
    /// Documents read (the corpus indices the unit spans).
    pub documents: u64,
    /// Tokens (tokenize) or pieces (train-bpe) counted.
    pub tokens: u64,
    /// Size and SHA-256 of the unit file.
    pub bytes: u64,
    pub sha256: String,
}

pub fn put(w: &mut dyn Write, v: u64) -> std::io::Result<()> {
    w.write_all(&v.to_le_bytes())
}

pub fn get(r: &mut dyn Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

pub fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

/// A length read from a unit file, bounded so that a damaged length cannot ask for terabytes.
pub fn len(r: &mut dyn Read) -> std::io::Result<usize> {
    let n = get(r)?;
    usize::try_from(n).ok().filter(|&n| n < 1 << 40).ok_or_else(|| bad("length out of range"))
}

pub fn put_bytes(w: &mut dyn Write, b: &[u8]) -> std::io::Result<()> {
    put(w, b.len() as u64)?;
    w.write_all(b)
}

pub fn get_bytes(r: &mut dyn Read) -> std::io::Result<Vec<u8>> {
    let mut b = vec![0u8; len(r)?];
    r.read_exact(&mut b)?;
    Ok(b)
}

pub fn put_json(w: &mut dyn Write, v: &impl serde::Serialize) -> std::io::Result<()> {
    put_bytes(w, &serde_json::to_vec(v).map_err(std::io::Error::other)?)
}

pub fn get_json<T: serde::de::DeserializeOwned>(r: &mut dyn Read) -> std::io::Result<T> {
    serde_json::from_slice(&get_bytes(r)?).map_err(|e| bad(&e.to_string()))
}

/// A unit file being written. Dropped without [`UnitWriter::finish`], it leaves nothing.
pub struct UnitWriter {
    z: Option<zstd::Encoder<'static, HashingWriter<BufWriter<std::fs::File>>>>,
    tmp: PathBuf,
    out: PathBuf,
}

impl UnitWriter {
    /// Starts `out` (its directory is created) with `magic` and `header`.
    pub fn create(out: &Path, magic: &[u8; 8], header: &Header) -> Result<Self> {
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let tmp = temp_path(out);
        let file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let hashing = HashingWriter::new(BufWriter::new(file));
        let mut w = Self { z: None, tmp, out: out.to_path_buf() };
        let mut z = zstd::Encoder::new(hashing, 1).map_err(|e| Error::io(out, e))?;
        (|| {
            z.write_all(magic)?;
            put_json(&mut z, header)
        })()
        .map_err(|e| Error::io(out, e))?;
        w.z = Some(z);
        Ok(w)
    }

    /// The stream to write records to (`Send`, for a writer thread).
    pub fn stream(&mut self) -> &mut (dyn Write + Send) {
        self.z.as_mut().expect("unit writer used after finish")
    }

    /// An I/O error of this file.
    pub fn error(&self, e: std::io::Error) -> Error {
        Error::io(&self.out, e)
    }

    /// Where the file goes.
    pub fn path(&self) -> &Path {
        &self.out
    }

    /// Ends the file (see [`Self::finish`]) and returns its record.
    pub fn finish_record(self, header: Header, documents: u64, tokens: u64) -> Result<UnitRecord> {
        let (bytes, sha256) = self.finish()?;
        Ok(UnitRecord { config_hash: header.config_hash, files: header.files, documents, tokens, bytes, sha256 })
    }

    /// Ends the stream, syncs and renames the file into place; returns its size and SHA-256.
    pub fn finish(mut self) -> Result<(u64, String)> {
        let z = self.z.take().expect("unit writer finished twice");
        let done = (|| {
            let mut hashing = z.finish()?;
            hashing.flush()?;
            let (inner, bytes, sha256) = hashing.finish();
            inner.into_inner().map_err(std::io::IntoInnerError::into_error)?.sync_all()?;
            std::fs::rename(&self.tmp, &self.out)?;
            Ok::<_, std::io::Error>((bytes, sha256))
        })();
        done.map_err(|e| Error::io(&self.out, e))
    }
}

impl Drop for UnitWriter {
    fn drop(&mut self) {
        if self.tmp.exists() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// A unit file being read back: its header, then the kind's records.
pub struct UnitFile {
    r: BufReader<zstd::Decoder<'static, BufReader<std::fs::File>>>,
    path: PathBuf,
    pub header: Header,
}

impl UnitFile {
    /// Opens `path` after checking its SHA-256 against `sha256` (the unit's done record) and its
    /// magic against `magic`, and reads its header.
    pub fn open(path: &Path, sha256: &str, magic: &[u8; 8]) -> Result<Self> {
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
        let mut m = [0u8; 8];
        r.read_exact(&mut m).map_err(|e| damaged(&e))?;
        if &m != magic {
            return Err(Error::input(path, "not a dataprep work unit of this kind (or of another version)"));
        }
        let header = get_json(&mut r).map_err(|e| damaged(&e))?;
        Ok(Self { r, path: path.to_path_buf(), header })
    }

    /// The record stream.
    pub fn stream(&mut self) -> &mut dyn Read {
        &mut self.r
    }

    /// The error for a record that could not be read.
    pub fn damaged(&self, e: &dyn std::fmt::Display) -> Error {
        Error::input(&self.path, format!("work unit is damaged: {e}"))
    }
}
