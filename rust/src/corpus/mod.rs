//! Corpus readers shared by every stage: they turn input paths into a stream of [`Document`]s.
//!
//! Invariants:
//! - Streaming: a file is read line by line or batch by batch, never whole (except plain text in
//!   `TextUnit::File` mode, where the file *is* the document).
//! - Deterministic order: directories are walked recursively in byte order of path names, files in
//!   the order given; documents keep their order inside a file. Every consumer that needs order
//!   (tokenize, dedup) gets it from [`Document::index`].
//! - Compression (`.gz`, `.bz2`, `.zst`) is transparent and chosen by extension.
//! - Invalid UTF-8 never crashes: [`Utf8Policy`] decides, and counts land in [`ReadStats`]. A
//!   JSON escape of a lone surrogate (`"\ud800"`) is invalid text too and goes the same way.
//! - Binary files are not text: a plain-text or WikiExtractor file with a NUL byte in its first
//!   8 KB, or more than 30% invalid UTF-8 in its first 64 KB (of 512 bytes at least), is
//!   skipped whole and counted ([`ReadStats::binary_skipped`], with the first paths named),
//!   never tokenized as text.
//! - The readers are the one definition of which record (JSONL line, Parquet row) is which
//!   document: [`read_file_records`] hands on the raw records with the index of the document each
//!   holds, so a consumer that copies records (dedup output) never re-derives the rules.

mod batches;
pub(crate) mod decompress;
mod jsonl;
mod parquet;
mod text;
mod wiki;

use std::fs;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;

pub use batches::{read_batches, Batch};

use crate::error::{Error, Result};

/// How a file's content is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Sniffed per file: `.jsonl/.ndjson/.json` are JSONL, `.parquet` is Parquet, a file whose
    /// first non-blank bytes are `<doc` is WikiExtractor, anything else plain text.
    Auto,
    Wiki,
    Text,
    Jsonl,
    Parquet,
}

/// What one document is in a plain-text file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TextUnit {
    /// The whole file.
    File,
    /// Each run of non-blank lines (paragraphs separated by one or more blank lines).
    Paragraph,
}

/// What to do with a document that is not valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Utf8Policy {
    /// Replace each invalid sequence by U+FFFD and keep the document (counted).
    Replace,
    /// Drop the document (counted).
    Skip,
    /// Stop with an error naming the file and the document.
    Error,
}

#[derive(Debug, Clone)]
pub struct CorpusConfig {
    pub format: Format,
    pub text_unit: TextUnit,
    /// JSONL: the field holding the text.
    pub jsonl_field: String,
    /// Parquet: the column holding the text.
    pub parquet_column: String,
    pub utf8: Utf8Policy,
}

impl Default for CorpusConfig {
    fn default() -> Self {
        Self {
            format: Format::Auto,
            text_unit: TextUnit::File,
            jsonl_field: "text".into(),
            parquet_column: "text".into(),
            utf8: Utf8Policy::Replace,
        }
    }
}

/// One document with the metadata its format carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Document {
    pub text: String,
    /// Position of the source file in the list from [`discover`].
    pub file: u32,
    /// Position of the document in the whole corpus (0-based, in reading order).
    pub index: u64,
    /// `id` attribute (wiki) or field (JSONL), when present.
    pub id: Option<String>,
    /// `title` attribute (wiki), when present.
    pub title: Option<String>,
}

/// Counts kept while reading; summed over files.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReadStats {
    pub files: u64,
    pub documents: u64,
    /// UTF-8 bytes of the documents handed on.
    pub bytes: u64,
    pub invalid_utf8_replaced: u64,
    pub invalid_utf8_skipped: u64,
    /// Documents with no text (or only whitespace), not handed on.
    pub empty_skipped: u64,
    /// Files skipped as binary (see the module doc); not counted in `files`.
    pub binary_skipped: u64,
    /// The first [`BINARY_PATHS_KEPT`] of them, to name in a summary.
    pub binary_paths: Vec<PathBuf>,
    /// WikiExtractor documents cut off by the end of the file (no `</doc>`): kept, because their
    /// text is the input's, and counted so that a truncated dump does not pass unnoticed.
    pub truncated_documents: u64,
}

/// How many binary file paths [`ReadStats`] keeps to name.
pub const BINARY_PATHS_KEPT: usize = 5;

impl ReadStats {
    pub fn add(&mut self, o: &ReadStats) {
        self.files += o.files;
        self.documents += o.documents;
        self.bytes += o.bytes;
        self.invalid_utf8_replaced += o.invalid_utf8_replaced;
        self.invalid_utf8_skipped += o.invalid_utf8_skipped;
        self.empty_skipped += o.empty_skipped;
        self.binary_skipped += o.binary_skipped;
        let room = BINARY_PATHS_KEPT.saturating_sub(self.binary_paths.len());
        self.binary_paths.extend(o.binary_paths.iter().take(room).cloned());
        self.truncated_documents += o.truncated_documents;
    }
}

/// An input file found by [`discover`] or given by a [`Listing`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    /// Where its bytes are read.
    pub path: PathBuf,
    /// Size on disk (compressed size for compressed files).
    pub size: u64,
    /// What the run calls it, when that is not `path`: the URL of a remote object whose staged
    /// copy is `path`. Manifests, work units and error messages use the name.
    pub name: Option<String>,
}

impl InputFile {
    pub fn local(path: PathBuf, size: u64) -> Self {
        Self { path, size, name: None }
    }

    /// `(name, size)`: how plans, work units and the config hash list the file.
    pub fn entry(&self) -> (String, u64) {
        (self.name().into_owned(), self.size)
    }

    /// What the run calls the file (see [`InputFile::name`]).
    pub fn name(&self) -> std::borrow::Cow<'_, str> {
        match &self.name {
            Some(n) => std::borrow::Cow::Borrowed(n),
            None => self.path.to_string_lossy(),
        }
    }
}

/// The inputs of a run as its driver lists them (remote objects, listed by the Python layer):
/// each file's name, size and, where this process reads it, its local copy.
pub type Listing = [(String, u64, Option<PathBuf>)];

/// The input files of a listing, in its order. A local copy must exist and have the listed size;
/// a file without one gets its name as path and must not be read (plans, assembling steps).
pub fn listed(listing: &Listing) -> Result<Vec<InputFile>> {
    if listing.is_empty() {
        return Err(Error::Config("no input given".into()));
    }
    listing
        .iter()
        .map(|(name, size, local)| {
            if let Some(p) = local {
                let got = fs::metadata(p).map_err(|e| Error::io(p, e))?.len();
                if got != *size {
                    return Err(Error::input(name, format!("local copy {} has {got} bytes, not {size}", p.display())));
                }
            }
            Ok(InputFile {
                path: local.clone().unwrap_or_else(|| PathBuf::from(name)),
                size: *size,
                name: Some(name.clone()),
            })
        })
        .collect()
}

/// Expands the inputs (files or directories, walked recursively; hidden entries skipped) into a
/// sorted, de-duplicated file list. Errors on a missing path or when no file is found at all.
pub fn discover(inputs: &[PathBuf]) -> Result<Vec<InputFile>> {
    if inputs.is_empty() {
        return Err(Error::Config("no input given".into()));
    }
    let mut out = Vec::new();
    for input in inputs {
        let meta = fs::metadata(input).map_err(|e| Error::io(input, e))?;
        if meta.is_dir() {
            let before = out.len();
            walk(input, &mut out)?;
            if out.len() == before {
                return Err(Error::input(input, "directory contains no files"));
            }
        } else {
            out.push(InputFile::local(input.clone(), meta.len()));
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|f| seen.insert(f.path.clone()));
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<InputFile>) -> Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::io(dir, e))?;
    entries.sort_by_key(fs::DirEntry::file_name);
    for entry in entries {
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let meta = fs::metadata(&path).map_err(|e| Error::io(&path, e))?;
        if meta.is_dir() {
            walk(&path, out)?;
        } else if meta.is_file() {
            out.push(InputFile::local(path, meta.len()));
        }
    }
    Ok(())
}

/// The format of `path` after stripping a compression extension, or `None` when it must be sniffed.
fn format_from_extension(path: &Path) -> Option<Format> {
    let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
    let name = decompress::strip_extension(&name);
    let ext = name.rsplit_once('.').map(|(_, e)| e)?;
    match ext {
        "jsonl" | "ndjson" | "json" => Some(Format::Jsonl),
        "parquet" => Some(Format::Parquet),
        "txt" | "text" | "md" => Some(Format::Text),
        _ => None,
    }
}

/// The raw records of a record-based file, as the reader saw them (see [`read_file_records`]).
#[derive(Debug)]
pub enum RawRecord<'a> {
    /// A JSONL line that holds document `index`: the line as decoded under the UTF-8 policy,
    /// end of line included. Lines that hold no document (blank, empty text, invalid UTF-8
    /// under `skip`) are not handed on.
    Line { text: &'a str, index: u64 },
    /// A batch of Parquet rows with every column, and for each row the index of the document it
    /// holds, `None` for a row that holds none (null, empty text, invalid UTF-8 under `skip`).
    Rows { batch: &'a RecordBatch, index: &'a [Option<u64>] },
}

/// Where [`RawRecord`]s go.
pub(crate) type RecordSink<'a> = &'a mut dyn FnMut(RawRecord<'_>) -> Result<()>;

/// Per-file reading context: turns raw document bytes into [`Document`]s under the UTF-8 policy.
pub(crate) struct Emitter<'a, F: FnMut(Document) -> Result<()>> {
    pub path: &'a Path,
    pub file: u32,
    pub policy: Utf8Policy,
    pub next_index: u64,
    pub stats: ReadStats,
    pub sink: F,
    /// Raw records, for [`read_file_records`] only.
    pub records: Option<RecordSink<'a>>,
}

impl<F: FnMut(Document) -> Result<()>> Emitter<'_, F> {
    /// Hands on one document; `what` names it in an error ("document 3", "line 17"). Returns
    /// its corpus index, or `None` when it is not a document (empty, or skipped invalid UTF-8).
    pub fn emit(
        &mut self,
        bytes: Vec<u8>,
        id: Option<String>,
        title: Option<String>,
        what: &dyn Fn() -> String,
    ) -> Result<Option<u64>> {
        let text = match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => match self.policy {
                Utf8Policy::Replace => {
                    self.stats.invalid_utf8_replaced += 1;
                    String::from_utf8_lossy(e.as_bytes()).into_owned()
                }
                Utf8Policy::Skip => {
                    self.stats.invalid_utf8_skipped += 1;
                    return Ok(None);
                }
                Utf8Policy::Error => {
                    let at = e.utf8_error().valid_up_to();
                    return Err(Error::input(self.path, format!("invalid UTF-8 in {} at byte {at} of it", what())));
                }
            },
        };
        self.emit_str(text, id, title)
    }

    /// [`Emitter::emit`] for text already decoded.
    pub fn emit_str(&mut self, text: String, id: Option<String>, title: Option<String>) -> Result<Option<u64>> {
        if text.trim().is_empty() {
            self.stats.empty_skipped += 1;
            return Ok(None);
        }
        self.stats.documents += 1;
        self.stats.bytes += text.len() as u64;
        let index = self.next_index;
        self.next_index += 1;
        (self.sink)(Document { text, file: self.file, index, id, title })?;
        Ok(Some(index))
    }
}

/// Reads one file, calling `sink` for each document in order. `first_index` is the corpus-wide
/// index of its first document. Returns the file's counts.
pub fn read_file(
    file: &InputFile,
    file_no: u32,
    first_index: u64,
    cfg: &CorpusConfig,
    sink: impl FnMut(Document) -> Result<()>,
) -> Result<ReadStats> {
    read(file, file_no, first_index, cfg, sink, None)
}

/// [`read_file`], and `records` gets the file's raw records with the index of the document each
/// holds ([`RawRecord`]): JSONL lines and Parquet row batches, each right after `sink` got its
/// documents. Formats whose records are the documents (wiki, plain text) hand on none.
pub fn read_file_records(
    file: &InputFile,
    file_no: u32,
    first_index: u64,
    cfg: &CorpusConfig,
    sink: impl FnMut(Document) -> Result<()>,
    records: &mut dyn FnMut(RawRecord<'_>) -> Result<()>,
) -> Result<ReadStats> {
    read(file, file_no, first_index, cfg, sink, Some(records))
}

fn read<'a>(
    file: &'a InputFile,
    file_no: u32,
    first_index: u64,
    cfg: &CorpusConfig,
    sink: impl FnMut(Document) -> Result<()>,
    records: Option<RecordSink<'a>>,
) -> Result<ReadStats> {
    let path = file.path.as_path();
    let named = |e: Error| match &file.name {
        Some(name) => e.named(path, name),
        None => e,
    };
    let format = resolve_format(path, cfg).map_err(named)?;
    if is_skipped_binary(path, format).map_err(named)? {
        let shown = PathBuf::from(file.name().into_owned());
        return Ok(ReadStats { binary_skipped: 1, binary_paths: vec![shown], ..ReadStats::default() });
    }
    let mut em = Emitter {
        path,
        file: file_no,
        policy: cfg.utf8,
        next_index: first_index,
        stats: ReadStats { files: 1, ..ReadStats::default() },
        sink,
        records,
    };
    match format {
        Format::Wiki => wiki::read(&mut em),
        Format::Text => text::read(&mut em, cfg.text_unit),
        Format::Jsonl => jsonl::read(&mut em, &cfg.jsonl_field),
        Format::Parquet => parquet::read(&mut em, &cfg.parquet_column),
        Format::Auto => unreachable!("resolved above"),
    }
    .map_err(named)?;
    Ok(em.stats)
}

/// The format `path` is read as: `cfg.format`, or under [`Format::Auto`] the one its extension
/// names or its content shows. Never [`Format::Auto`].
pub fn resolve_format(path: &Path, cfg: &CorpusConfig) -> Result<Format> {
    Ok(match cfg.format {
        Format::Auto => match format_from_extension(path) {
            Some(f) => f,
            None => sniff(path)?,
        },
        f => f,
    })
}

/// Whether `path`, read as `format`, is a binary file that the readers skip (see the module doc).
pub fn is_skipped_binary(path: &Path, format: Format) -> Result<bool> {
    Ok(matches!(format, Format::Text | Format::Wiki) && looks_binary(path)?)
}

/// Whether the (decompressed) start of `path` shows a binary file: a NUL byte in the first 8 KB
/// (text never holds one; UTF-16 and every binary format do), or more than 30% of the first
/// 64 KB in invalid UTF-8 sequences (a Latin-1 text stays far below: one byte in a word here and
/// there). The share needs a sample of [`BINARY_MIN_SAMPLE`] bytes to mean anything: a shorter
/// file without NUL is text, and the UTF-8 policy deals with its bad bytes. Reads at most 64 KB.
fn looks_binary(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut head = Vec::with_capacity(1 << 16);
    decompress::open(path)?.take(1 << 16).read_to_end(&mut head).map_err(|e| Error::io(path, e))?;
    Ok(is_binary(&head))
}

fn is_binary(head: &[u8]) -> bool {
    if head[..head.len().min(8192)].contains(&0) {
        return true;
    }
    let (mut invalid, mut rest) = (0usize, head);
    while let Err(e) = std::str::from_utf8(rest) {
        // `None`: a sequence cut by the end of the sample, not an invalid one.
        let Some(n) = e.error_len() else { break };
        invalid += n;
        rest = &rest[e.valid_up_to() + n..];
    }
    head.len() >= BINARY_MIN_SAMPLE && invalid * 10 > head.len() * 3
}

/// See [`looks_binary`].
const BINARY_MIN_SAMPLE: usize = 512;

/// WikiExtractor or plain text, from the first non-blank bytes of the (decompressed) content.
fn sniff(path: &Path) -> Result<Format> {
    use std::io::Read;
    let mut head = Vec::with_capacity(4096);
    decompress::open(path)?.take(4096).read_to_end(&mut head).map_err(|e| Error::io(path, e))?;
    let start = head.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(head.len());
    Ok(if head[start..].starts_with(b"<doc") { Format::Wiki } else { Format::Text })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    pub(crate) fn read_all(path: &Path, cfg: &CorpusConfig) -> Result<(Vec<Document>, ReadStats)> {
        let f = InputFile::local(path.to_path_buf(), 0);
        let mut docs = Vec::new();
        let stats = read_file(&f, 0, 0, cfg, |d| {
            docs.push(d);
            Ok(())
        })?;
        Ok((docs, stats))
    }

    const WIKI: &str = "<doc id=\"1\" url=\"u\" title=\"A &amp; B\">\nA & B\n\nFirst doc.\n</doc>\n<doc id=\"2\" url=\"u\" title=\"C\">\nC\n\nSecond.\n</doc>\n";

    #[test]
    fn wiki_plain_and_compressed_agree() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("wiki_00");
        fs::write(&plain, WIKI).unwrap();
        let gz = dir.path().join("wiki_01.gz");
        let mut e = flate2::write::GzEncoder::new(fs::File::create(&gz).unwrap(), flate2::Compression::default());
        e.write_all(WIKI.as_bytes()).unwrap();
        e.finish().unwrap();
        let zst = dir.path().join("wiki_02.zst");
        fs::write(&zst, zstd::encode_all(WIKI.as_bytes(), 3).unwrap()).unwrap();
        let bz = dir.path().join("wiki_03.bz2");
        let mut e = bzip2::write::BzEncoder::new(fs::File::create(&bz).unwrap(), bzip2::Compression::default());
        e.write_all(WIKI.as_bytes()).unwrap();
        e.finish().unwrap();
        let cfg = CorpusConfig::default();
        let (base, _) = read_all(&plain, &cfg).unwrap();
        assert_eq!(base.len(), 2);
        assert_eq!(base[0].title.as_deref(), Some("A & B"));
        assert_eq!(base[0].id.as_deref(), Some("1"));
        assert_eq!(base[0].text, "A & B\n\nFirst doc.");
        assert_eq!(base[1].index, 1);
        for p in [&gz, &zst, &bz] {
            let (docs, _) = read_all(p, &cfg).unwrap();
            assert_eq!(docs, base, "{}", p.display());
        }
    }

    #[test]
    fn utf8_policies() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.txt");
        fs::write(&p, b"good para\n\nbad \xff para\n\nlast").unwrap();
        let mut cfg = CorpusConfig { text_unit: TextUnit::Paragraph, ..CorpusConfig::default() };
        let (docs, st) = read_all(&p, &cfg).unwrap();
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[1].text, "bad \u{fffd} para");
        assert_eq!(st.invalid_utf8_replaced, 1);
        cfg.utf8 = Utf8Policy::Skip;
        let (docs, st) = read_all(&p, &cfg).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(st.invalid_utf8_skipped, 1);
        cfg.utf8 = Utf8Policy::Error;
        let e = read_all(&p, &cfg).unwrap_err().to_string();
        assert!(e.contains("bad.txt") && e.contains("invalid UTF-8"), "{e}");
    }

    #[test]
    fn binary_files_are_skipped_counted_and_named() {
        assert!(is_binary(b"PK\x03\x04\0\0rest"));
        assert!(is_binary(&[0xffu8; 1000]));
        assert!(!is_binary(b"ok \xff\xfe"));
        // Latin-1 text: a few invalid bytes among many valid ones is text (replaced later).
        assert!(!is_binary(b"caf\xe9 au lait, cr\xe8me br\xfbl\xe9e, and more plain words"));
        assert!(!is_binary(b""));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("blob.bin");
        fs::write(&p, b"\x7fELF\x02\x01\x01\0\0\0 some text after").unwrap();
        let (docs, st) = read_all(&p, &CorpusConfig::default()).unwrap();
        assert!(docs.is_empty());
        assert_eq!((st.files, st.binary_skipped, st.binary_paths), (0, 1, vec![p]));
    }

    #[test]
    fn truncated_wiki_document_is_kept_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("wiki_00");
        fs::write(&p, "<doc id=\"1\" title=\"A\">\nA\n</doc>\n<doc id=\"2\" title=\"B\">\nB\n\ncut he").unwrap();
        let (docs, st) = read_all(&p, &CorpusConfig::default()).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].text, "B\n\ncut he");
        assert_eq!(st.truncated_documents, 1);
    }

    #[test]
    fn raw_records_carry_the_index_of_their_document() {
        use arrow_array::{Int64Array, StringArray};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let cfg = CorpusConfig { utf8: Utf8Policy::Skip, ..CorpusConfig::default() };
        let read = |path: PathBuf| {
            let f = InputFile::local(path, 0);
            let (mut docs, mut records) = (Vec::new(), Vec::new());
            let mut on_record = |r: RawRecord<'_>| {
                records.push(match r {
                    RawRecord::Line { text, index } => (text.to_string(), vec![Some(index)]),
                    RawRecord::Rows { batch, index } => (format!("{} columns", batch.num_columns()), index.to_vec()),
                });
                Ok(())
            };
            let on_doc = |d: Document| {
                docs.push(d.index);
                Ok(())
            };
            read_file_records(&f, 0, 5, &cfg, on_doc, &mut on_record).unwrap();
            (docs, records)
        };
        // A blank line, an empty text and invalid UTF-8 (skipped) hold no document.
        let jsonl = dir.path().join("a.jsonl");
        fs::write(&jsonl, b"{\"text\": \"a\"}\n\n{\"text\": \" \"}\n{\"text\": \"b \xff\"}\n{\"text\": \"c\"}\r\n")
            .unwrap();
        let (docs, records) = read(jsonl);
        assert_eq!(docs, [5, 6]);
        assert_eq!(
            records,
            [("{\"text\": \"a\"}\n".into(), vec![Some(5)]), ("{\"text\": \"c\"}\r\n".into(), vec![Some(6)])]
        );
        // Parquet rows come with every column; null and empty rows hold no document.
        let pq = dir.path().join("b.parquet");
        let text = StringArray::from(vec![Some("x"), None, Some(" "), Some("y")]);
        let n = Int64Array::from(vec![1, 2, 3, 4]);
        let batch = RecordBatch::try_from_iter([("text", Arc::new(text) as _), ("n", Arc::new(n) as _)]).unwrap();
        let mut w =
            ::parquet::arrow::ArrowWriter::try_new(fs::File::create(&pq).unwrap(), batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let (docs, records) = read(pq);
        assert_eq!(docs, [5, 6]);
        assert_eq!(records, [("2 columns".into(), vec![Some(5), None, None, Some(6)])]);
    }

    #[test]
    fn discover_walks_sorted_and_skips_hidden() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("b/c")).unwrap();
        for p in ["b/c/z.txt", "a.txt", ".hidden", "b/y.txt"] {
            fs::write(dir.path().join(p), "x").unwrap();
        }
        let files = discover(&[dir.path().to_path_buf()]).unwrap();
        let names: Vec<_> = files.iter().map(|f| f.path.strip_prefix(dir.path()).unwrap().to_path_buf()).collect();
        assert_eq!(names, [PathBuf::from("a.txt"), "b/c/z.txt".into(), "b/y.txt".into()]);
        let e = discover(&[dir.path().join("missing")]).unwrap_err().to_string();
        assert!(e.contains("missing"), "{e}");
    }
}
