//! Writing what dedup decided: the kept documents, one output file per input file, and an
//! auditable report of the clusters.
//!
//! Layout under the output directory (paths mirror the inputs relative to their common parent):
//! - JSONL input -> JSONL: the kept lines, byte for byte, so every field (metadata) is kept;
//! - Parquet input -> Parquet: the kept rows with every column;
//! - WikiExtractor / plain text -> JSONL objects `{"text", "id", "title"}` (id and title when the
//!   format has them);
//! - `clusters.jsonl`: one cluster per line with, for each member, its file, corpus index, id,
//!   title, whether it was kept, the kept partner it duplicates, their similarity and the start of
//!   its text.
//!
//! Compressed inputs are written uncompressed. Every file is written under a temporary name and
//! renamed when complete.
//!
//! Invariant: which raw record (JSONL line, Parquet row) holds which corpus document is the
//! readers' business alone: the records come from [`corpus::read_file_records`] with the index of
//! the document each holds, so the output never re-derives the rules (blank lines, documents
//! with no text and, under `skip`, invalid UTF-8 are not documents). JSONL lines holding no
//! document are left out; Parquet rows holding none are copied as they are.
//! `tests::raw_records_align_with_the_reader` checks both against what dedup read.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::BooleanArray;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde_json::{json, Value};

use super::{ClusterKind, DedupResult};
use crate::corpus::{self, decompress, CorpusConfig, Document, Format, InputFile, RawRecord, ReadStats};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::progress::Progress;

/// Characters of text shown per document in the report.
const SNIPPET_CHARS: usize = 160;

/// What [`write_output`] wrote.
#[derive(Debug, Clone, Default)]
pub struct OutputStats {
    /// One per input file, in input order.
    pub paths: Vec<PathBuf>,
    pub report: PathBuf,
    pub kept: u64,
    pub removed: u64,
}

#[derive(Debug, Clone, Default)]
struct Meta {
    file: u32,
    id: Option<String>,
    title: Option<String>,
    snippet: String,
}

fn snippet(text: &str) -> String {
    let mut s = String::new();
    for (i, w) in text.split_whitespace().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(w);
        if s.chars().count() >= SNIPPET_CHARS {
            break;
        }
    }
    if s.chars().count() > SNIPPET_CHARS {
        s = s.chars().take(SNIPPET_CHARS).collect::<String>() + "…";
    }
    s
}

/// The deepest directory containing every input file.
fn common_parent(files: &[InputFile]) -> PathBuf {
    let mut base: Option<PathBuf> = None;
    for f in files {
        let parent = f.path.parent().map(Path::to_path_buf).unwrap_or_default();
        base = Some(match base {
            None => parent,
            Some(b) => {
                let mut common = PathBuf::new();
                for (x, y) in b.components().zip(parent.components()) {
                    if x != y {
                        break;
                    }
                    common.push(x);
                }
                common
            }
        });
    }
    base.unwrap_or_default()
}

/// The output path of `file` under `out`.
fn output_path(file: &Path, base: &Path, out: &Path, format: Format) -> PathBuf {
    let rel = file.strip_prefix(base).unwrap_or_else(|_| Path::new(file.file_name().unwrap_or_default()));
    let name = rel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let name = decompress::strip_extension(&name).to_string();
    let name = match format {
        Format::Jsonl | Format::Parquet => name,
        _ => format!("{name}.jsonl"),
    };
    out.join(rel.with_file_name(name))
}

/// Writes `path`'s content to its temporary sibling, returned for the set's commit (every output
/// file and the report are renamed together at the end: a killed run never leaves some files of
/// this run beside others of an earlier one).
fn staged<T>(path: &Path, fill: impl FnOnce(File) -> Result<T>) -> Result<(T, PathBuf)> {
    let tmp = fsutil::temp_path(path);
    let file = File::create(&tmp).map_err(|e| Error::io(path, e))?;
    match fill(file) {
        Ok(v) => Ok((v, tmp)),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// The record of an unfinished commit of the output set.
const SET_RECORD: &str = ".dedup-output.set";

/// One written file: its path (none for a binary input, skipped by the reader), kept documents
/// and the report metadata it collected.
type FileResult = Result<(Option<(PathBuf, PathBuf)>, u64, HashMap<u64, Meta>)>;

/// What one file's writer learns of the documents it reads.
struct Ctx<'a> {
    removed: &'a [u64],
    members: &'a [u64],
    meta: HashMap<u64, Meta>,
    kept: u64,
}

impl Ctx<'_> {
    /// Notes a document read (its report metadata when it is in a cluster); returns whether it
    /// is kept.
    fn take(&mut self, d: &Document) -> bool {
        if self.members.binary_search(&d.index).is_ok() {
            let m = Meta { file: d.file, id: d.id.clone(), title: d.title.clone(), snippet: snippet(&d.text) };
            self.meta.insert(d.index, m);
        }
        let keep = self.removed.binary_search(&d.index).is_err();
        self.kept += u64::from(keep);
        keep
    }
}

/// Writes the kept documents of `files` and `clusters.jsonl` under `out_dir` (created if
/// missing), on up to `threads` threads (one file per thread at a time). `result` must come from
/// [`super::find_duplicates`] on the same inputs and options.
pub fn write_output(
    files: &[InputFile],
    corpus: &CorpusConfig,
    result: &DedupResult,
    out_dir: &Path,
    threads: usize,
    progress: &Progress,
) -> Result<OutputStats> {
    fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    // What an interrupted run left (`.<name>.tmp-<pid>` of a dead pid) never holds finished work.
    // An interrupted commit of the last run is finished first (its files are complete), then
    // what killed runs left is removed.
    fsutil::recover_set(&out_dir.join(SET_RECORD))?;
    fsutil::remove_orphan_temps(out_dir)?;
    let base = common_parent(files);
    let mut members: Vec<u64> = result.clusters.iter().flat_map(|c| c.members.iter().map(|m| m.index)).collect();
    members.sort_unstable();
    members.dedup();
    let counts = &result.stats.file_documents;
    if counts.len() != files.len() {
        return Err(Error::Config("dedup result does not match the inputs".into()));
    }
    let firsts: Vec<u64> = counts.iter().scan(0u64, |acc, &n| Some(std::mem::replace(acc, *acc + n))).collect();
    progress.phase("writing", files.iter().map(|f| f.size).sum());
    let next_file = std::sync::atomic::AtomicUsize::new(0);
    let one_file = |no: usize| -> FileResult {
        progress.check()?;
        let file = &files[no];
        let format = corpus::resolve_format(&file.path, corpus)?;
        if corpus::is_skipped_binary(&file.path, format)? {
            // No documents, so no output: an empty file would look like one that had them all removed.
            progress.add(file.size);
            return Ok((None, 0, HashMap::new()));
        }
        let dest = output_path(&file.path, &base, out_dir, format);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let mut ctx = Ctx { removed: &result.removed, members: &members, meta: HashMap::new(), kept: 0 };
        let read = Reading { file, no: no as u32, first: firsts[no], corpus };
        let (stats, tmp) = match format {
            Format::Jsonl => staged(&dest, |f| write_jsonl(&read, &mut ctx, f, &dest))?,
            Format::Parquet => staged(&dest, |f| write_parquet(&read, &mut ctx, f, &dest))?,
            _ => staged(&dest, |f| write_documents(&read, &mut ctx, f, &dest))?,
        };
        if stats.documents != counts[no] {
            let _ = fs::remove_file(&tmp);
            return Err(Error::input(
                &file.path,
                format!("changed since dedup read it: {} documents now, {} then", stats.documents, counts[no]),
            ));
        }
        progress.add(file.size);
        Ok((Some((dest, tmp)), ctx.kept, ctx.meta))
    };
    let mut done: Vec<(usize, FileResult)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads.clamp(1, files.len().max(1)))
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let no = next_file.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if no >= files.len() {
                            break;
                        }
                        let r = one_file(no);
                        let failed = r.is_err();
                        out.push((no, r));
                        if failed {
                            // Let the other workers stop at their next file.
                            next_file.store(files.len(), std::sync::atomic::Ordering::Relaxed);
                            break;
                        }
                    }
                    out
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("writer panicked")).collect()
    });
    done.sort_by_key(|d| d.0);
    let mut stats = OutputStats::default();
    let mut meta = HashMap::new();
    let mut renames = Vec::new();
    let mut failure = None;
    for (_, r) in done {
        match r {
            Ok((written, kept, m)) => {
                if let Some((dest, tmp)) = written {
                    stats.paths.push(dest.clone());
                    renames.push((tmp, dest));
                }
                stats.kept += kept;
                meta.extend(m);
            }
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    stats.removed = result.removed.len() as u64;
    stats.report = out_dir.join("clusters.jsonl");
    let report = failure
        .map_or_else(|| staged(&stats.report, |f| write_report(f, &stats.report, files, &base, result, &meta)), Err);
    match report {
        Ok(((), tmp)) => renames.push((tmp, stats.report.clone())),
        Err(e) => {
            for (tmp, _) in &renames {
                let _ = fs::remove_file(tmp);
            }
            return Err(e);
        }
    }
    fsutil::commit_renames(&out_dir.join(SET_RECORD), &renames)?;
    Ok(stats)
}

/// The file a writer reads: input file, its number and its first corpus index.
struct Reading<'a> {
    file: &'a InputFile,
    no: u32,
    first: u64,
    corpus: &'a CorpusConfig,
}

/// JSONL: the kept lines as the reader decoded them, so every field (metadata) is kept. Write
/// errors name `path`, the output file (a full disk is the output's problem, not the input's).
fn write_jsonl(read: &Reading<'_>, ctx: &mut Ctx<'_>, out: File, path: &Path) -> Result<ReadStats> {
    let werr = |e| Error::io(path, e);
    let mut w = BufWriter::with_capacity(1 << 20, out);
    let removed = ctx.removed;
    let mut lines = |record: RawRecord<'_>| -> Result<()> {
        if let RawRecord::Line { text, index } = record {
            if removed.binary_search(&index).is_err() {
                w.write_all(text.trim_end_matches(['\n', '\r']).as_bytes()).map_err(werr)?;
                w.write_all(b"\n").map_err(werr)?;
            }
        }
        Ok(())
    };
    let take = |d: Document| {
        ctx.take(&d);
        Ok(())
    };
    let stats = corpus::read_file_records(read.file, read.no, read.first, read.corpus, take, &mut lines)?;
    let f = w.into_inner().map_err(|e| Error::io(path, e.into_error()))?;
    f.sync_all().map_err(werr)?;
    Ok(stats)
}

/// Wiki and plain text: the kept documents as JSONL objects `{"text", "id", "title"}`.
fn write_documents(read: &Reading<'_>, ctx: &mut Ctx<'_>, out: File, path: &Path) -> Result<ReadStats> {
    let mut w = BufWriter::with_capacity(1 << 20, out);
    let stats = corpus::read_file(read.file, read.no, read.first, read.corpus, |d| {
        if ctx.take(&d) {
            let mut obj = serde_json::Map::new();
            obj.insert("text".into(), Value::String(d.text));
            if let Some(id) = d.id {
                obj.insert("id".into(), Value::String(id));
            }
            if let Some(title) = d.title {
                obj.insert("title".into(), Value::String(title));
            }
            serde_json::to_writer(&mut w, &obj).map_err(|e| Error::io(path, e.into()))?;
            w.write_all(b"\n").map_err(|e| Error::io(path, e))?;
        }
        Ok(())
    })?;
    let f = w.into_inner().map_err(|e| Error::io(path, e.into_error()))?;
    f.sync_all().map_err(|e| Error::io(path, e))?;
    Ok(stats)
}

/// Parquet: every row but the removed documents' rows, with every column.
fn write_parquet(read: &Reading<'_>, ctx: &mut Ctx<'_>, out: File, dest: &Path) -> Result<ReadStats> {
    let path = read.file.path.as_path();
    let bad = |e: &dyn std::fmt::Display| Error::input(path, format!("not a readable Parquet file: {e}"));
    let werr = |e: ::parquet::errors::ParquetError| Error::io(dest, std::io::Error::other(e));
    // The schema (from the footer) before any row: a file without rows still gets its columns.
    let input = File::open(path).map_err(|e| Error::io(path, e))?;
    let schema = ParquetRecordBatchReaderBuilder::try_new(input).map_err(|e| bad(&e))?.schema().clone();
    let props = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::default())).build();
    let mut writer = ArrowWriter::try_new(out, Arc::clone(&schema), Some(props)).map_err(werr)?;
    let removed = ctx.removed;
    let mut rows = |record: RawRecord<'_>| -> Result<()> {
        if let RawRecord::Rows { batch, index } = record {
            // A row that holds no document has no index and is copied as it is.
            let keep: Vec<bool> = index.iter().map(|i| i.is_none_or(|i| removed.binary_search(&i).is_err())).collect();
            let kept =
                arrow_select::filter::filter_record_batch(batch, &BooleanArray::from(keep)).map_err(|e| bad(&e))?;
            writer.write(&kept).map_err(werr)?;
        }
        Ok(())
    };
    let take = |d: Document| {
        ctx.take(&d);
        Ok(())
    };
    let stats = corpus::read_file_records(read.file, read.no, read.first, read.corpus, take, &mut rows)?;
    writer.close().map_err(werr)?;
    Ok(stats)
}

/// Writes `clusters.jsonl` into `file` (`path` names it in errors).
fn write_report(
    file: File,
    path: &Path,
    files: &[InputFile],
    base: &Path,
    result: &DedupResult,
    meta: &HashMap<u64, Meta>,
) -> Result<()> {
    let mut w = std::io::BufWriter::new(file);
    let written = (|| -> std::io::Result<()> {
        for (k, c) in result.clusters.iter().enumerate() {
            let members: Vec<Value> = c
                .members
                .iter()
                .map(|m| {
                    let md = meta.get(&m.index).cloned().unwrap_or_default();
                    let file = files
                        .get(md.file as usize)
                        .map(|f| f.path.strip_prefix(base).unwrap_or(&f.path).to_string_lossy().into_owned());
                    json!({
                        "index": m.index,
                        "file": file,
                        "id": md.id,
                        "title": md.title,
                        "kept": m.kept,
                        "duplicate_of": m.partner,
                        "similarity": m.similarity,
                        "text": md.snippet,
                    })
                })
                .collect();
            let kind = match c.kind {
                ClusterKind::Exact => "exact",
                ClusterKind::Near => "near",
            };
            let line = json!({ "cluster": k, "kind": kind, "size": c.members.len(), "members": members });
            serde_json::to_writer(&mut w, &line)?;
            w.write_all(b"\n")?;
        }
        w.into_inner().map_err(std::io::IntoInnerError::into_error)?.sync_all()
    })();
    written.map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedup::{find_duplicates, DedupConfig, Mode};

    #[test]
    fn raw_records_align_with_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        let inp = dir.path().join("in");
        fs::create_dir_all(inp.join("sub")).unwrap();
        // Blank lines, an empty text, invalid UTF-8 and extra fields between duplicates.
        let mut jsonl = b"{\"text\": \"alpha beta\", \"id\": 1, \"lang\": \"en\"}\n\n{\"text\": \"  \"}\n".to_vec();
        jsonl.extend_from_slice(
            b"{\"text\": \"bad \xff\"}\n{\"text\": \"alpha  beta\", \"id\": 2}\n{\"text\": \"gamma\"}\n",
        );
        fs::write(inp.join("a.jsonl"), &jsonl).unwrap();
        fs::write(inp.join("sub/b.txt"), "gamma\n\nalpha beta\n\ndelta").unwrap();
        let corpus = CorpusConfig { text_unit: corpus::TextUnit::Paragraph, ..CorpusConfig::default() };
        let files = corpus::discover(std::slice::from_ref(&inp)).unwrap();
        let cfg = DedupConfig::new(Mode::Exact).temp_dir(Some(dir.path().to_path_buf()));
        let r = find_duplicates(&files, &corpus, &cfg, &Progress::new()).unwrap();
        // docs: 0 alpha beta, 1 bad, 2 alpha  beta, 3 gamma | 4 gamma, 5 alpha beta, 6 delta
        assert_eq!(r.removed, vec![2, 4, 5]);
        let out = dir.path().join("out");
        let st = write_output(&files, &corpus, &r, &out, 2, &Progress::new()).unwrap();
        assert_eq!(st.kept, 4);
        let a = fs::read_to_string(out.join("a.jsonl")).unwrap();
        let lines: Vec<&str> = a.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].contains("\"lang\": \"en\""), "{a}");
        assert!(lines[1].contains("bad \u{fffd}"));
        let b = fs::read_to_string(out.join("sub/b.txt.jsonl")).unwrap();
        assert_eq!(b.trim(), "{\"text\":\"delta\"}");
        let report = fs::read_to_string(out.join("clusters.jsonl")).unwrap();
        let first: Value = serde_json::from_str(report.lines().next().unwrap()).unwrap();
        assert_eq!(first["members"][0]["file"], "a.jsonl");
        assert_eq!(first["members"][0]["id"], "1");
        assert_eq!(first["members"][2]["duplicate_of"], 0);
        assert_eq!(first["members"][2]["file"], "sub/b.txt");
    }

    #[test]
    #[allow(clippy::many_single_char_names)]
    fn parquet_keeps_every_column() {
        use arrow_array::{Array, Int64Array, RecordBatch, StringArray};
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.parquet");
        let text = StringArray::from(vec![Some("one two"), None, Some("one  two"), Some("three")]);
        let ids = Int64Array::from(vec![10, 11, 12, 13]);
        let batch = RecordBatch::try_from_iter([("text", Arc::new(text) as _), ("n", Arc::new(ids) as _)]).unwrap();
        let mut w = ArrowWriter::try_new(File::create(&p).unwrap(), batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let files = corpus::discover(&[p]).unwrap();
        let corpus = CorpusConfig::default();
        let cfg = DedupConfig::new(Mode::Exact).temp_dir(Some(dir.path().to_path_buf()));
        let r = find_duplicates(&files, &corpus, &cfg, &Progress::new()).unwrap();
        assert_eq!(r.removed, vec![1]);
        let out = dir.path().join("out");
        write_output(&files, &corpus, &r, &out, 2, &Progress::new()).unwrap();
        let rd = ParquetRecordBatchReaderBuilder::try_new(File::open(out.join("d.parquet")).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let b = rd.map(|b| b.unwrap()).next().unwrap();
        let n = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(n.values().to_vec(), vec![10, 11, 13]);
    }
}
