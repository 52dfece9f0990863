//! Sorted runs: the external sort behind every corpus-wide grouping in dedup (exact keys, LSH
//! band buckets).
//!
//! Each worker appends fixed-size records to its own [`RunWriter`]; when its buffer reaches the
//! byte budget it is sorted and spilled to a temporary file (a "run"). [`merge`] then streams all
//! runs in one k-way merge. Invariants:
//! - Memory: one buffer of at most `budget` bytes per writer while reading, and one read buffer
//!   per run while merging; never the whole set of records.
//! - Determinism: records are totally ordered and unique (each carries a document index), so the
//!   merged stream is the same whichever worker saw which batch and wherever runs were cut.
//! - Runs are deleted when the merge (or the writer, on error) is dropped.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use tempfile::TempPath;

use crate::error::{Error, Result};

/// A fixed-size record that can be sorted and written to a run.
pub trait Record: Copy + Ord + Send {
    /// Encoded size in bytes.
    const SIZE: usize;
    /// Writes exactly `SIZE` bytes.
    fn encode(&self, out: &mut [u8]);
    /// Reads a record from exactly `SIZE` bytes.
    fn decode(buf: &[u8]) -> Self;
}

/// A worker's buffer of records, spilled to sorted run files in `dir` when full.
pub struct RunWriter<T: Record> {
    buf: Vec<T>,
    cap: usize,
    dir: PathBuf,
    runs: Vec<TempPath>,
    records: u64,
}

/// What a writer produced: its spilled runs and the sorted rest still in memory.
pub struct Runs<T: Record> {
    files: Vec<TempPath>,
    memory: Vec<T>,
}

impl<T: Record> RunWriter<T> {
    /// A writer holding at most `budget_bytes` of records in memory (at least 1024 records).
    pub fn new(dir: &Path, budget_bytes: usize) -> Self {
        let cap = (budget_bytes / T::SIZE.max(1)).max(1024);
        Self { buf: Vec::new(), cap, dir: dir.to_path_buf(), runs: Vec::new(), records: 0 }
    }

    pub fn push(&mut self, r: T) -> Result<()> {
        if self.buf.len() >= self.cap {
            self.spill()?;
        }
        self.buf.push(r);
        self.records += 1;
        Ok(())
    }

    /// Records pushed so far.
    pub fn len(&self) -> u64 {
        self.records
    }

    fn spill(&mut self) -> Result<()> {
        self.buf.sort_unstable();
        let file = tempfile::Builder::new()
            .prefix(".dedup-run-")
            .tempfile_in(&self.dir)
            .map_err(|e| Error::io(&self.dir, e))?;
        let (f, path) = file.into_parts();
        let mut w = BufWriter::with_capacity(1 << 20, f);
        let mut rec = vec![0u8; T::SIZE];
        for r in &self.buf {
            r.encode(&mut rec);
            w.write_all(&rec).map_err(|e| Error::io(&*path, e))?;
        }
        w.flush().map_err(|e| Error::io(&*path, e))?;
        self.buf.clear();
        self.runs.push(path);
        Ok(())
    }

    /// Sorts what is left in memory and hands everything over for merging.
    pub fn finish(mut self) -> Runs<T> {
        self.buf.sort_unstable();
        Runs { files: std::mem::take(&mut self.runs), memory: std::mem::take(&mut self.buf) }
    }
}

enum Source<T: Record> {
    File { r: BufReader<File>, path: TempPath, buf: Vec<u8> },
    Memory(std::vec::IntoIter<T>),
}

impl<T: Record> Source<T> {
    fn next(&mut self) -> Result<Option<T>> {
        match self {
            Source::Memory(it) => Ok(it.next()),
            Source::File { r, path, buf } => match r.read_exact(buf) {
                Ok(()) => Ok(Some(T::decode(buf))),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
                Err(e) => Err(Error::io(&**path, e)),
            },
        }
    }
}

/// The k-way merge of several writers' runs, in ascending record order.
pub struct Merge<T: Record> {
    sources: Vec<Source<T>>,
    heap: BinaryHeap<Reverse<(T, usize)>>,
}

/// Merges the runs of all writers into one sorted stream.
pub fn merge<T: Record>(all: Vec<Runs<T>>) -> Result<Merge<T>> {
    let mut sources = Vec::new();
    for runs in all {
        for path in runs.files {
            let f = File::open(&path).map_err(|e| Error::io(&*path, e))?;
            sources.push(Source::File { r: BufReader::with_capacity(1 << 16, f), path, buf: vec![0u8; T::SIZE] });
        }
        if !runs.memory.is_empty() {
            sources.push(Source::Memory(runs.memory.into_iter()));
        }
    }
    let mut heap = BinaryHeap::with_capacity(sources.len());
    for (i, s) in sources.iter_mut().enumerate() {
        if let Some(r) = s.next()? {
            heap.push(Reverse((r, i)));
        }
    }
    Ok(Merge { sources, heap })
}

impl<T: Record> Iterator for Merge<T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        let Reverse((r, i)) = self.heap.pop()?;
        match self.sources[i].next() {
            Ok(Some(n)) => self.heap.push(Reverse((n, i))),
            Ok(None) => {}
            Err(e) => return Some(Err(e)),
        }
        Some(Ok(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    struct R(u64);
    impl Record for R {
        const SIZE: usize = 8;
        fn encode(&self, out: &mut [u8]) {
            out.copy_from_slice(&self.0.to_le_bytes());
        }
        fn decode(buf: &[u8]) -> Self {
            R(u64::from_le_bytes(buf.try_into().unwrap()))
        }
    }

    #[test]
    fn merge_of_spilled_and_memory_runs_is_sorted_and_complete() {
        let dir = tempfile::tempdir().unwrap();
        let mut writers: Vec<RunWriter<R>> = (0..3).map(|_| RunWriter::new(dir.path(), 0)).collect();
        let n = 10_000u64;
        for i in 0..n {
            let x = i.wrapping_mul(crate::hash::GOLDEN_GAMMA) % 1_000_003;
            writers[(i % 3) as usize].push(R(x * n + i)).unwrap();
        }
        // cap is 1024 records: each writer spilled several runs.
        assert!(writers[0].runs.len() >= 3);
        let runs: Vec<_> = writers.into_iter().map(RunWriter::finish).collect();
        let out: Vec<R> = merge(runs).unwrap().collect::<Result<_>>().unwrap();
        assert_eq!(out.len() as u64, n);
        assert!(out.windows(2).all(|w| w[0] < w[1]));
        drop(out);
        // Spilled runs are removed once merged and dropped.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
