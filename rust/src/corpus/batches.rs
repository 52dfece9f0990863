//! Reading in batches, for every parallel stage (BPE training, dedup, tokenize): one reader
//! thread streams documents into batches of about `batch_bytes`, a bounded channel hands them to
//! worker threads. Memory is bounded by `(2 * threads + 1) * batch_bytes` of text however large
//! the corpus is.
//!
//! Batches carry a sequence number so that stages whose output must not depend on scheduling
//! (tokenize) can restore input order; order-free stages (counting) ignore it.
//!
//! NOTE: threads are scoped and made per call, never a global pool: DataLoader workers fork the
//! Python process, and a global pool started before the fork would deadlock in the child.

use std::sync::Mutex;

use super::{read_file, CorpusConfig, Document, InputFile, ReadStats};
use crate::error::{Error, Result};
use crate::progress::Progress;

/// Consecutive documents in corpus order.
#[derive(Debug, Default)]
pub struct Batch {
    pub seq: u64,
    pub docs: Vec<Document>,
    /// UTF-8 bytes of text in `docs`.
    pub bytes: usize,
}

/// Reads `files` and runs `work` on every batch on `threads` worker threads, each with its own
/// state from `init`. Returns the read counts and the workers' final states.
///
/// The first error (from reading or from `work`) stops the pipeline and is returned.
pub fn read_batches<S: Send>(
    files: &[InputFile],
    cfg: &CorpusConfig,
    batch_bytes: usize,
    threads: usize,
    progress: &Progress,
    init: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, Batch) -> Result<()> + Sync,
) -> Result<(ReadStats, Vec<S>)> {
    let threads = threads.max(1);
    let (tx, rx) = crossbeam_channel::bounded::<Batch>(2 * threads);
    let failed: Mutex<Option<Error>> = Mutex::new(None);
    let fail = |e: Error| {
        let mut f = failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if f.is_none() {
            *f = Some(e);
        }
    };
    let has_failed = || failed.lock().map_or(true, |f| f.is_some());
    let total: u64 = files.iter().map(|f| f.size).sum();
    progress.phase("reading", total);

    let (stats, states) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let rx = rx.clone();
                let (init, work, fail) = (&init, &work, &fail);
                s.spawn(move || {
                    let mut state = init();
                    for batch in rx {
                        let n = batch.docs.len() as u64;
                        if let Err(e) = progress.check().and_then(|()| work(&mut state, batch)) {
                            fail(e);
                            break;
                        }
                        progress.add_docs(n);
                    }
                    state
                })
            })
            .collect();
        drop(rx);

        let mut stats = ReadStats::default();
        let mut batch = Batch::default();
        let mut seq = 0u64;
        let mut done_files = 0u64;
        let result = (|| {
            for (no, file) in files.iter().enumerate() {
                let mut in_file = 0u64;
                let st = read_file(file, no as u32, stats.documents, cfg, |doc| {
                    if has_failed() {
                        return Err(Error::Cancelled);
                    }
                    in_file += doc.text.len() as u64;
                    progress.set_done(done_files + in_file.min(file.size));
                    batch.bytes += doc.text.len();
                    batch.docs.push(doc);
                    if batch.bytes >= batch_bytes {
                        let full = std::mem::replace(&mut batch, Batch { seq: seq + 1, ..Batch::default() });
                        seq += 1;
                        tx.send(full).map_err(|_| Error::Cancelled)?;
                    }
                    Ok(())
                })?;
                stats.add(&st);
                done_files += file.size;
                progress.set_done(done_files);
            }
            if !batch.docs.is_empty() {
                tx.send(std::mem::take(&mut batch)).map_err(|_| Error::Cancelled)?;
            }
            Ok(())
        })();
        drop(tx);
        if let Err(e) = result {
            fail(e);
        }
        let states: Vec<S> = workers.into_iter().map(|w| w.join().expect("worker panicked")).collect();
        (stats, states)
    });
    match failed.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner) {
        // A worker's real error wins over the reader's "Cancelled" that it caused.
        Some(e) => Err(e),
        None => Ok((stats, states)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn batches_cover_every_document_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for f in 0..3 {
            let p = dir.path().join(format!("f{f}.txt"));
            let text: Vec<String> = (0..50).map(|i| format!("doc {f} {i}")).collect();
            fs::write(&p, text.join("\n\n")).unwrap();
            files.push(InputFile::local(p, 10));
        }
        let cfg = CorpusConfig { text_unit: super::super::TextUnit::Paragraph, ..CorpusConfig::default() };
        let progress = Progress::new();
        let (stats, states) =
            read_batches(&files, &cfg, 64, 3, &progress, Vec::new, |v: &mut Vec<(u64, Vec<u64>)>, b| {
                v.push((b.seq, b.docs.iter().map(|d| d.index).collect()));
                Ok(())
            })
            .unwrap();
        assert_eq!(stats.documents, 150);
        let mut all: Vec<_> = states.into_iter().flatten().collect();
        all.sort();
        let seqs: Vec<u64> = all.iter().map(|x| x.0).collect();
        assert_eq!(seqs, (0..all.len() as u64).collect::<Vec<_>>());
        let idx: Vec<u64> = all.into_iter().flat_map(|x| x.1).collect();
        assert_eq!(idx, (0..150).collect::<Vec<_>>());
    }

    #[test]
    fn worker_error_is_returned() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        fs::write(&p, "x\n\ny\n\nz").unwrap();
        let files = vec![InputFile::local(p, 1)];
        let cfg = CorpusConfig { text_unit: super::super::TextUnit::Paragraph, ..CorpusConfig::default() };
        let e = read_batches(&files, &cfg, 1, 2, &Progress::new(), || (), |(), _| Err(Error::Config("nope".into())))
            .unwrap_err();
        assert_eq!(e.to_string(), "nope");
    }
}
