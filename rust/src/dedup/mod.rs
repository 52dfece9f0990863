//! Deduplication at corpus scale: exact (normalized-text hash) and near (MinHash + LSH) stages,
//! shared by `dataprep dedup` and the tokenize pipeline through [`find_duplicates`].
//!
//! Data flow (every step streams; see `runs` for the external sort):
//! 1. read (parallel, [`crate::corpus::read_batches`]): per document, a 128-bit exact key and, in
//!    near mode, a MinHash signature cut into `b` band hashes; `(key, doc)` and
//!    `(band, hash, doc)` records go to sorted runs on disk;
//! 2. exact: merge the key runs; within a group of equal keys the first document in input order
//!    is kept, the others are removed;
//! 3. buckets: merge the band runs; documents sharing a band bucket (exact-removed ones left out)
//!    become candidate pairs;
//! 4. verify (optional, on by default): re-read the files holding candidates (in parallel, one
//!    file per thread), compute the shingle sets of candidate documents only, keep the pairs whose true Jaccard is at least the threshold;
//! 5. cluster: union-find over the kept pairs; inside a cluster, documents are visited in input
//!    order and one is removed exactly when a pair links it to an already kept document (so with
//!    verification every removed document has a kept partner at or above the threshold, and
//!    chains never remove a document that is far from everything kept).
//!
//! Invariants:
//! - Deterministic whatever the thread count: every record carries the corpus-wide document
//!   index, merged streams are totally ordered, and every decision is made in index order.
//! - Memory is bounded by the configured sort budget plus two bits per document (bitsets) plus
//!   what the candidates need (pairs, and their shingle sets while verifying); nothing per
//!   document is kept in memory for the whole corpus.

// "MinHash", "WikiExtractor", "XXH3" are names, not code.
#![allow(clippy::doc_markdown)]

pub mod bands;
pub mod minhash;
pub mod normalize;
pub mod output;
mod runs;
pub mod unionfind;

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::corpus::{read_batches, CorpusConfig, InputFile, ReadStats};
use crate::error::{Error, Result};
use crate::progress::Progress;
use minhash::{MinHasher, Scratch};
pub use normalize::Normalization;
use runs::{Record, RunWriter};
use unionfind::UnionFind;

/// Which stages run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Exact duplicates of the normalized text only.
    Exact,
    /// Exact duplicates, then near duplicates (MinHash LSH) among what is left.
    Near,
}

/// Options of the dedup stages; build with [`DedupConfig::new`] and the setters.
#[derive(Debug, Clone)]
pub struct DedupConfig {
    pub mode: Mode,
    /// Normalization before the exact hash.
    pub normalization: Normalization,
    /// Words per shingle (near mode).
    pub ngram: usize,
    /// MinHash permutations available to the banding; only the `bands * rows` it uses are
    /// computed.
    pub num_perm: usize,
    /// Jaccard similarity at and above which two documents are near duplicates.
    pub threshold: f64,
    /// Verify candidate pairs by the true Jaccard of their shingles.
    pub verify: bool,
    /// `(bands, rows)` override; `None` derives it from the threshold (see [`bands`]).
    pub bands: Option<(usize, usize)>,
    /// Seed of the MinHash permutations.
    pub seed: u64,
    pub threads: usize,
    /// Reading batch size in bytes of text.
    pub batch_bytes: usize,
    /// In-memory budget of the sort buffers (all workers together); beyond it records spill to
    /// sorted runs on disk.
    pub memory_bytes: usize,
    /// Where runs are spilled (default: the system temporary directory).
    pub temp_dir: Option<PathBuf>,
}

impl DedupConfig {
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            normalization: Normalization::default(),
            ngram: 5,
            num_perm: 128,
            threshold: 0.8,
            verify: true,
            bands: None,
            seed: 1,
            threads: crate::all_cores(),
            batch_bytes: 1 << 20,
            memory_bytes: 512 << 20,
            temp_dir: None,
        }
    }

    #[must_use]
    pub fn normalization(mut self, n: Normalization) -> Self {
        self.normalization = n;
        self
    }
    #[must_use]
    pub fn ngram(mut self, n: usize) -> Self {
        self.ngram = n;
        self
    }
    #[must_use]
    pub fn num_perm(mut self, n: usize) -> Self {
        self.num_perm = n;
        self
    }
    #[must_use]
    pub fn threshold(mut self, t: f64) -> Self {
        self.threshold = t;
        self
    }
    #[must_use]
    pub fn verify(mut self, v: bool) -> Self {
        self.verify = v;
        self
    }
    #[must_use]
    pub fn bands(mut self, b: Option<(usize, usize)>) -> Self {
        self.bands = b;
        self
    }
    #[must_use]
    pub fn seed(mut self, s: u64) -> Self {
        self.seed = s;
        self
    }
    #[must_use]
    pub fn threads(mut self, t: usize) -> Self {
        self.threads = t.max(1);
        self
    }
    #[must_use]
    pub fn batch_bytes(mut self, b: usize) -> Self {
        self.batch_bytes = b.max(1);
        self
    }
    #[must_use]
    pub fn memory_bytes(mut self, b: usize) -> Self {
        self.memory_bytes = b;
        self
    }
    #[must_use]
    pub fn temp_dir(mut self, d: Option<PathBuf>) -> Self {
        self.temp_dir = d;
        self
    }

    /// The `(bands, rows)` in use: the override, or the optimum for the threshold with the
    /// weights that fit `verify` (see [`bands`]).
    pub fn banding(&self) -> (usize, usize) {
        self.bands.unwrap_or_else(|| {
            let w = if self.verify { bands::VERIFIED_WEIGHTS } else { bands::UNVERIFIED_WEIGHTS };
            bands::optimal_bands(self.threshold, self.num_perm, w)
        })
    }

    fn validate(&self) -> Result<()> {
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            return Err(Error::Config(format!("threshold must be in (0, 1], got {}", self.threshold)));
        }
        if self.ngram == 0 {
            return Err(Error::Config("ngram must be at least 1".into()));
        }
        if self.num_perm == 0 || self.num_perm > 1024 {
            return Err(Error::Config(format!("num_perm must be in 1..=1024, got {}", self.num_perm)));
        }
        if let Some((b, r)) = self.bands {
            if b == 0 || r == 0 || b * r > self.num_perm {
                return Err(Error::Config(format!(
                    "bands x rows must be at least 1 x 1 and fit in num_perm ({b} x {r} > {})",
                    self.num_perm
                )));
            }
        }
        Ok(())
    }
}

/// Which stage a cluster comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterKind {
    Exact,
    Near,
}

/// One document of a cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// Corpus-wide [`crate::corpus::Document::index`].
    pub index: u64,
    pub kept: bool,
    /// For a removed document, the kept document it duplicates.
    pub partner: Option<u64>,
    /// Jaccard similarity to `partner` (1.0 for exact duplicates; `None` when near pairs were
    /// not verified).
    pub similarity: Option<f64>,
}

/// Documents linked as duplicates, in input order.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub kind: ClusterKind,
    pub members: Vec<Member>,
}

/// Counts and timings of a run.
#[derive(Debug, Clone, Default)]
pub struct DedupStats {
    pub read: ReadStats,
    pub documents: u64,
    pub bytes: u64,
    pub exact_removed: u64,
    pub near_removed: u64,
    /// Near mode: documents with no word, left to exact dedup only.
    pub no_shingles: u64,
    /// Distinct pairs that shared a band bucket.
    pub candidate_pairs: u64,
    /// Candidate pairs at or above the threshold (all of them when not verifying).
    pub similar_pairs: u64,
    pub bands: usize,
    pub rows: usize,
    /// Records spilled to / merged from sorted runs.
    pub run_records: u64,
    /// Documents in each input file, in input order (lets the output be written in parallel).
    pub file_documents: Vec<u64>,
    pub read_seconds: f64,
    /// Re-reading candidates and computing their exact Jaccard.
    pub verify_seconds: f64,
    pub seconds: f64,
}

/// What [`find_duplicates`] found.
#[derive(Debug, Clone, Default)]
pub struct DedupResult {
    /// Sorted corpus-wide indices of the documents to drop.
    pub removed: Vec<u64>,
    /// Exact clusters (by first member), then near clusters (by first member).
    pub clusters: Vec<Cluster>,
    pub stats: DedupStats,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct ExactRec {
    key: u128,
    doc: u64,
}

impl Record for ExactRec {
    const SIZE: usize = 24;
    fn encode(&self, out: &mut [u8]) {
        out[..16].copy_from_slice(&self.key.to_le_bytes());
        out[16..].copy_from_slice(&self.doc.to_le_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        Self {
            key: u128::from_le_bytes(b[..16].try_into().unwrap()),
            doc: u64::from_le_bytes(b[16..].try_into().unwrap()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct BandRec {
    band: u32,
    hash: u64,
    doc: u64,
}

impl Record for BandRec {
    const SIZE: usize = 20;
    fn encode(&self, out: &mut [u8]) {
        out[..4].copy_from_slice(&self.band.to_le_bytes());
        out[4..12].copy_from_slice(&self.hash.to_le_bytes());
        out[12..].copy_from_slice(&self.doc.to_le_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        Self {
            band: u32::from_le_bytes(b[..4].try_into().unwrap()),
            hash: u64::from_le_bytes(b[4..12].try_into().unwrap()),
            doc: u64::from_le_bytes(b[12..].try_into().unwrap()),
        }
    }
}

/// A fixed-size set of document indices.
struct BitSet(Vec<u64>);

impl BitSet {
    fn new(n: u64) -> Self {
        Self(vec![0; n.div_ceil(64) as usize])
    }
    fn insert(&mut self, i: u64) {
        self.0[(i / 64) as usize] |= 1 << (i % 64);
    }
    fn contains(&self, i: u64) -> bool {
        self.0.get((i / 64) as usize).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
}

struct Worker {
    exact: RunWriter<ExactRec>,
    bands: RunWriter<BandRec>,
    sc: Scratch,
    norm: String,
    no_shingles: u64,
    per_file: Vec<u64>,
}

/// Buckets larger than this give a star (to the first) and a chain (to the previous) of pairs
/// instead of all pairs, so one huge bucket cannot make the pair count quadratic.
const ALL_PAIRS_MAX: usize = 64;

/// Name prefix of a run's spill directory: `dataprep-spill-<pid>-<random>`.
const SPILL_PREFIX: &str = "dataprep-spill-";

/// Removes the spill directories in `parent` of runs no longer alive (killed: a finished or
/// failed run removes its own). A directory that cannot be removed (another user's) is left: it
/// is not this run's to clean, and this run does not depend on it.
fn remove_orphan_spills(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid: Option<u32> =
            name.strip_prefix(SPILL_PREFIX).and_then(|r| r.split_once('-')).and_then(|(p, _)| p.parse().ok());
        if pid.is_some_and(|pid| !crate::fsutil::pid_alive(pid)) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Finds the exact (and, in [`Mode::Near`], near) duplicates of the documents of `files`.
///
/// The result is identical for every thread count. `progress` gets the phases `reading`,
/// `exact`, `buckets` and, when verifying, `rereading` and `verifying`.
pub fn find_duplicates(
    files: &[InputFile],
    corpus: &CorpusConfig,
    cfg: &DedupConfig,
    progress: &Progress,
) -> Result<DedupResult> {
    cfg.validate()?;
    let start = Instant::now();
    let near = cfg.mode == Mode::Near;
    let (nbands, rows) = if near { cfg.banding() } else { (0, 0) };
    // Only the b * r permutations the bands use are computed (the first ones of the seed's
    // sequence, so a signature does not depend on `num_perm` beyond that).
    let hasher = MinHasher::new(if near { nbands * rows } else { 1 }, cfg.ngram, cfg.seed);
    let tmp_parent = cfg.temp_dir.clone().unwrap_or_else(std::env::temp_dir);
    remove_orphan_spills(&tmp_parent);
    // Removed when dropped; the pid in the name lets the next run remove it after a kill.
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{SPILL_PREFIX}{}-", std::process::id()))
        .tempdir_in(&tmp_parent)
        .map_err(|e| Error::io(&tmp_parent, e))?;
    let threads = cfg.threads.max(1);
    let budget = cfg.memory_bytes / threads / if near { 2 } else { 1 };

    // 1. read: keys and band hashes to sorted runs.
    let (read, workers) = read_batches(
        files,
        corpus,
        cfg.batch_bytes,
        threads,
        progress,
        || Worker {
            exact: RunWriter::new(tmp.path(), budget),
            bands: RunWriter::new(tmp.path(), budget),
            sc: Scratch::default(),
            norm: String::new(),
            no_shingles: 0,
            per_file: vec![0; files.len()],
        },
        |w: &mut Worker, batch| {
            for doc in &batch.docs {
                w.per_file[doc.file as usize] += 1;
                let key = normalize::exact_key(&doc.text, cfg.normalization, &mut w.norm);
                w.exact.push(ExactRec { key, doc: doc.index })?;
                if near {
                    if hasher.signature(&doc.text, &mut w.sc) {
                        for b in 0..nbands {
                            let hash = hasher.band_hash(b, rows, &mut w.sc);
                            w.bands.push(BandRec { band: b as u32, hash, doc: doc.index })?;
                        }
                    } else {
                        w.no_shingles += 1;
                    }
                }
            }
            Ok(())
        },
    )?;
    let read_seconds = start.elapsed().as_secs_f64();
    let n = read.documents;
    let mut stats = DedupStats {
        documents: n,
        bytes: read.bytes,
        bands: nbands,
        rows,
        read_seconds,
        file_documents: vec![0; files.len()],
        ..DedupStats::default()
    };
    let mut exact_runs = Vec::new();
    let mut band_runs = Vec::new();
    let mut band_total = 0;
    for w in workers {
        for (total, n) in stats.file_documents.iter_mut().zip(&w.per_file) {
            *total += n;
        }
        band_total += w.bands.len();
        stats.no_shingles += w.no_shingles;
        stats.run_records += w.exact.len() + w.bands.len();
        exact_runs.push(w.exact.finish());
        band_runs.push(w.bands.finish());
    }

    // 2. exact: groups of equal keys, first in input order kept.
    progress.phase("exact", n);
    let mut removed_exact = BitSet::new(n);
    let mut clusters = Vec::new();
    let mut group: Vec<u64> = Vec::new();
    let mut group_key = None;
    let flush_exact = |group: &mut Vec<u64>, clusters: &mut Vec<Cluster>, removed: &mut BitSet| {
        if group.len() > 1 {
            let first = group[0];
            let members = group
                .iter()
                .map(|&d| {
                    let kept = d == first;
                    if !kept {
                        removed.insert(d);
                    }
                    Member { index: d, kept, partner: (!kept).then_some(first), similarity: (!kept).then_some(1.0) }
                })
                .collect();
            clusters.push(Cluster { kind: ClusterKind::Exact, members });
        }
        group.clear();
    };
    for (i, rec) in runs::merge(exact_runs)?.enumerate() {
        let rec = rec?;
        if group_key != Some(rec.key) {
            flush_exact(&mut group, &mut clusters, &mut removed_exact);
            group_key = Some(rec.key);
        }
        group.push(rec.doc);
        if i % 65536 == 0 {
            progress.set_done(i as u64);
            progress.check()?;
        }
    }
    flush_exact(&mut group, &mut clusters, &mut removed_exact);
    clusters.sort_by_key(|c| c.members[0].index);
    stats.exact_removed = clusters.iter().map(|c| c.members.len() as u64 - 1).sum();

    let mut removed: Vec<u64> =
        clusters.iter().flat_map(|c| c.members.iter().filter(|m| !m.kept).map(|m| m.index)).collect();
    if near {
        // 3. buckets: candidate pairs from shared band hashes.
        progress.phase("buckets", band_total);
        let mut pairs: Vec<(u64, u64)> = Vec::new();
        let mut bucket: Vec<u64> = Vec::new();
        let mut bucket_key = None;
        let flush_bucket = |bucket: &mut Vec<u64>, pairs: &mut Vec<(u64, u64)>| {
            let k = bucket.len();
            if k > 1 && k <= ALL_PAIRS_MAX {
                for i in 0..k {
                    for j in i + 1..k {
                        pairs.push((bucket[i], bucket[j]));
                    }
                }
            } else if k > ALL_PAIRS_MAX {
                for j in 1..k {
                    pairs.push((bucket[0], bucket[j]));
                    if j > 1 {
                        pairs.push((bucket[j - 1], bucket[j]));
                    }
                }
            }
            bucket.clear();
        };
        for (i, rec) in runs::merge(band_runs)?.enumerate() {
            let rec = rec?;
            if bucket_key != Some((rec.band, rec.hash)) {
                flush_bucket(&mut bucket, &mut pairs);
                bucket_key = Some((rec.band, rec.hash));
            }
            if !removed_exact.contains(rec.doc) {
                bucket.push(rec.doc);
            }
            if i % 65536 == 0 {
                progress.set_done(i as u64);
                progress.check()?;
            }
        }
        flush_bucket(&mut bucket, &mut pairs);
        pairs.sort_unstable();
        pairs.dedup();
        stats.candidate_pairs = pairs.len() as u64;

        // 4. verify: true Jaccard of the candidates' shingle sets.
        let edges: Vec<(u64, u64, Option<f64>)> = if cfg.verify && !pairs.is_empty() {
            let t = Instant::now();
            let edges = verify(files, corpus, cfg, &hasher, &pairs, n, &stats.file_documents, progress)?;
            stats.verify_seconds = t.elapsed().as_secs_f64();
            edges
        } else {
            pairs.into_iter().map(|(a, b)| (a, b, None)).collect()
        };
        stats.similar_pairs = edges.len() as u64;

        // 5. cluster and keep.
        let near_clusters = cluster(edges);
        let before = removed.len();
        removed.extend(near_clusters.iter().flat_map(|c| c.members.iter().filter(|m| !m.kept).map(|m| m.index)));
        stats.near_removed = (removed.len() - before) as u64;
        clusters.extend(near_clusters);
    }
    removed.sort_unstable();
    stats.read = read;
    stats.seconds = start.elapsed().as_secs_f64();
    Ok(DedupResult { removed, clusters, stats })
}

/// Sorted shingle sets by document index.
type ShingleSets = Vec<(u64, Vec<u64>)>;

/// Re-reads the corpus for the shingle sets of the documents in `pairs` and keeps the pairs at or
/// above the threshold, with their Jaccard.
#[allow(clippy::too_many_arguments)] // internal; the arguments are the stage's whole context
fn verify(
    files: &[InputFile],
    corpus: &CorpusConfig,
    cfg: &DedupConfig,
    hasher: &MinHasher,
    pairs: &[(u64, u64)],
    n: u64,
    file_documents: &[u64],
    progress: &Progress,
) -> Result<Vec<(u64, u64, Option<f64>)>> {
    let mut wanted = BitSet::new(n);
    for &(a, b) in pairs {
        wanted.insert(a);
        wanted.insert(b);
    }
    // NOTE: files are re-read in parallel, one per thread (the first pass gave each file's first
    // index), not through `read_batches`: there the single reader thread was the bottleneck of
    // this pass, which computes little besides parsing.
    let firsts: Vec<u64> = file_documents.iter().scan(0u64, |acc, &k| Some(std::mem::replace(acc, *acc + k))).collect();
    progress.phase("rereading", files.iter().map(|f| f.size).sum());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let states: Vec<Result<ShingleSets>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..cfg.threads.clamp(1, files.len().max(1)))
            .map(|_| {
                s.spawn(|| {
                    let mut sc = Scratch::default();
                    let mut sets = Vec::new();
                    loop {
                        let no = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if no >= files.len() {
                            return Ok(sets);
                        }
                        let (first, count) = (firsts[no], file_documents[no]);
                        if !(first..first + count).any(|d| wanted.contains(d)) {
                            progress.add(files[no].size);
                            continue;
                        }
                        let mut seen = 0u64;
                        crate::corpus::read_file(&files[no], no as u32, first, corpus, |doc| {
                            seen += 1;
                            if seen.is_multiple_of(1024) {
                                progress.check()?;
                            }
                            if wanted.contains(doc.index) {
                                sets.push((doc.index, hasher.shingle_set(&doc.text, &mut sc)));
                            }
                            Ok(())
                        })?;
                        if seen != count {
                            return Err(Error::input(&files[no].path, "changed while dedup was reading it"));
                        }
                        progress.add(files[no].size);
                    }
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("verify reader panicked")).collect()
    });
    let states = states.into_iter().collect::<Result<Vec<_>>>()?;
    let mut sets: ShingleSets = states.into_iter().flatten().collect();
    sets.sort_unstable_by_key(|s| s.0);
    let get = |d: u64| -> &[u64] { sets.binary_search_by_key(&d, |s| s.0).map_or(&[][..], |i| &sets[i].1) };

    progress.phase("verifying", pairs.len() as u64);
    let threads = cfg.threads.max(1);
    let chunk = pairs.len().div_ceil(threads).max(1);
    let t = cfg.threshold;
    let parts: Vec<Vec<(u64, u64, Option<f64>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = pairs
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    let mut out = Vec::new();
                    for (i, &(a, b)) in part.iter().enumerate() {
                        let j = minhash::jaccard(get(a), get(b));
                        // Compare in f64 with a tiny slack so that a pair exactly at the threshold
                        // (e.g. 4/5 at 0.8) is not lost to rounding.
                        if j + 1e-12 >= t {
                            out.push((a, b, Some(j)));
                        }
                        if i % 4096 == 4095 {
                            progress.add(4096);
                        }
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("verify worker panicked")).collect()
    });
    progress.set_done(pairs.len() as u64);
    Ok(parts.into_iter().flatten().collect())
}

/// Union-find clusters over `edges` (`a < b`), and the keep rule of the module docs.
fn cluster(mut edges: Vec<(u64, u64, Option<f64>)>) -> Vec<Cluster> {
    let mut nodes: Vec<u64> = edges.iter().flat_map(|e| [e.0, e.1]).collect();
    nodes.sort_unstable();
    nodes.dedup();
    let pos = |d: u64| nodes.binary_search(&d).expect("node of an edge") as u32;
    let mut uf = UnionFind::new(nodes.len());
    for e in &edges {
        uf.union(pos(e.0), pos(e.1));
    }
    // Decide in input order: each node looks at its edges to earlier nodes.
    edges.sort_unstable_by_key(|e| (e.1, e.0));
    let mut kept = vec![false; nodes.len()];
    let mut members: Vec<Member> = Vec::with_capacity(nodes.len());
    let mut e = 0;
    for (i, &d) in nodes.iter().enumerate() {
        let mut best: Option<(u64, Option<f64>)> = None;
        while e < edges.len() && edges[e].1 == d {
            let (a, _, sim) = edges[e];
            if kept[pos(a) as usize] {
                let better = match (best, sim) {
                    (None, _) => true,
                    (Some((_, Some(bs))), Some(s)) => s > bs,
                    _ => false,
                };
                if better {
                    best = Some((a, sim));
                }
            }
            e += 1;
        }
        kept[i] = best.is_none();
        members.push(Member {
            index: d,
            kept: kept[i],
            partner: best.map(|b| b.0),
            similarity: best.and_then(|b| b.1),
        });
    }
    // Group by component; label components by their first (smallest) member.
    let mut by_root: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    let mut clusters: Vec<Cluster> = Vec::new();
    for (i, m) in members.into_iter().enumerate() {
        let root = uf.find(i as u32);
        let c = *by_root.entry(root).or_insert_with(|| {
            clusters.push(Cluster { kind: ClusterKind::Near, members: Vec::new() });
            clusters.len() - 1
        });
        clusters[c].members.push(m);
    }
    clusters
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::Path;

    /// A deterministic pseudo-random text of `n` words from a 5000-word vocabulary.
    pub(crate) fn words(seed: u64, n: usize) -> Vec<String> {
        let mut s = seed.wrapping_mul(crate::hash::GOLDEN_GAMMA) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                format!("w{}", s % 5000)
            })
            .collect()
    }

    fn write_jsonl(dir: &Path, texts: &[String]) -> Vec<InputFile> {
        let p = dir.join("docs.jsonl");
        let lines: Vec<String> = texts.iter().map(|t| serde_json::json!({ "text": t }).to_string()).collect();
        fs::write(&p, lines.join("\n")).unwrap();
        crate::corpus::discover(&[p]).unwrap()
    }

    fn run(texts: &[String], cfg: &DedupConfig) -> DedupResult {
        let dir = tempfile::tempdir().unwrap();
        let files = write_jsonl(dir.path(), texts);
        let cfg = cfg.clone().temp_dir(Some(dir.path().to_path_buf()));
        find_duplicates(&files, &CorpusConfig::default(), &cfg, &Progress::new()).unwrap()
    }

    #[test]
    fn exact_keeps_exactly_one_of_each_group() {
        let texts: Vec<String> =
            ["a b c", "x y", "a  b c", " a b c\n", "x y", "unique", "A B C"].iter().map(|s| (*s).to_string()).collect();
        let r = run(&texts, &DedupConfig::new(Mode::Exact));
        assert_eq!(r.removed, vec![2, 3, 4]);
        assert_eq!(r.clusters.len(), 2);
        assert_eq!(r.clusters[0].members.iter().filter(|m| m.kept).count(), 1);
        assert_eq!(r.clusters[0].members[0].index, 0);
        assert_eq!(r.stats.exact_removed, 3);
        let lower = Normalization { lowercase: true, ..Normalization::default() };
        let r = run(&texts, &DedupConfig::new(Mode::Exact).normalization(lower));
        assert_eq!(r.removed, vec![2, 3, 4, 6]);
    }

    /// 40 originals of 300 words, then for each a copy with `k` of every 100 words replaced.
    fn planted(k: usize) -> Vec<String> {
        let mut texts = Vec::new();
        for i in 0..40 {
            texts.push(words(i, 300).join(" "));
        }
        for i in 0..40u64 {
            let mut w = words(i, 300);
            let noise = words(1000 + i, 300);
            for j in (0..300).filter(|j| j % 100 < k) {
                w[j] = format!("new{}", noise[j]);
            }
            texts.push(w.join(" "));
        }
        texts
    }

    #[test]
    fn near_recall_and_precision_on_planted_set() {
        // 1 word in 100 replaced: J ~ 0.9, every copy must be caught.
        let r = run(&planted(1), &DedupConfig::new(Mode::Near));
        assert_eq!(r.removed, (40..80).collect::<Vec<u64>>());
        assert_eq!(r.stats.near_removed, 40);
        for c in &r.clusters {
            assert_eq!(c.members.len(), 2);
            assert!(c.members[1].similarity.unwrap() >= 0.8);
            assert_eq!(c.members[1].partner, Some(c.members[0].index));
        }
        // 30 words in 100 replaced: J far below 0.8, nothing removed.
        let r = run(&planted(30), &DedupConfig::new(Mode::Near));
        assert!(r.removed.is_empty(), "{:?}", r.removed);
    }

    #[test]
    fn threshold_just_above_is_caught_just_below_is_kept() {
        // Unigram sets of 100 words sharing s: J = s / (200 - s); 89 -> 0.8018, 88 -> 0.7857.
        let base: Vec<String> = (0..100).map(|i| format!("t{i}")).collect();
        let copy = |shared: usize| {
            let mut w = base.clone();
            for (j, x) in w.iter_mut().enumerate().skip(shared) {
                *x = format!("u{j}");
            }
            w.join(" ")
        };
        let cfg = DedupConfig::new(Mode::Near).ngram(1).threshold(0.8).bands(Some((64, 2)));
        let r = run(&[base.join(" "), copy(89)], &cfg);
        assert_eq!(r.removed, vec![1]);
        let sim = r.clusters[0].members[1].similarity.unwrap();
        assert!((sim - 89.0 / 111.0).abs() < 1e-9);
        let r = run(&[base.join(" "), copy(88)], &cfg);
        assert!(r.removed.is_empty());
        assert_eq!(r.stats.candidate_pairs, 1);
        // Without verification the candidate is accepted on MinHash evidence.
        let r = run(&[base.join(" "), copy(88)], &cfg.clone().verify(false));
        assert_eq!(r.removed, vec![1]);
        assert_eq!(r.clusters[0].members[1].similarity, None);
    }

    #[test]
    fn chains_never_remove_a_document_far_from_what_is_kept() {
        // a ~ b and b ~ c but a and c are far apart: b goes, c stays.
        let a: Vec<String> = (0..100).map(|i| format!("t{i}")).collect();
        let mut b = a.clone();
        for (j, x) in b.iter_mut().enumerate().take(10) {
            *x = format!("u{j}");
        }
        let mut c = b.clone();
        for (j, x) in c.iter_mut().enumerate().skip(90) {
            *x = format!("v{j}");
        }
        let cfg = DedupConfig::new(Mode::Near).ngram(1).threshold(0.8).bands(Some((64, 2)));
        let r = run(&[a.join(" "), b.join(" "), c.join(" ")], &cfg);
        assert_eq!(r.removed, vec![1]);
        assert_eq!(r.clusters.len(), 1);
        assert_eq!(r.clusters[0].members.iter().map(|m| m.kept).collect::<Vec<_>>(), [true, false, true]);
    }

    #[test]
    fn same_result_for_any_thread_count_and_spilled_runs() {
        let mut texts = planted(2);
        texts.extend(planted(2).into_iter().take(10)); // exact copies too
        let dir = tempfile::tempdir().unwrap();
        let files = write_jsonl(dir.path(), &texts);
        let go = |threads: usize, memory: usize| {
            let cfg = DedupConfig::new(Mode::Near)
                .threads(threads)
                .batch_bytes(3000)
                .memory_bytes(memory)
                .temp_dir(Some(dir.path().to_path_buf()));
            let r = find_duplicates(&files, &CorpusConfig::default(), &cfg, &Progress::new()).unwrap();
            (r.removed, r.clusters)
        };
        let one = go(1, 1 << 30);
        assert_eq!(one.0.len(), 50);
        assert_eq!(go(3, 0), one);
        assert_eq!(go(2, 0), one);
    }

    #[test]
    fn empty_and_single_document_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("empty.jsonl");
        fs::write(&p, "\n").unwrap();
        let files = crate::corpus::discover(&[p]).unwrap();
        let r =
            find_duplicates(&files, &CorpusConfig::default(), &DedupConfig::new(Mode::Near), &Progress::new()).unwrap();
        assert!(r.removed.is_empty() && r.clusters.is_empty());
        assert_eq!(r.stats.documents, 0);
        let r = run(&["only one".to_string()], &DedupConfig::new(Mode::Near));
        assert!(r.removed.is_empty());
        assert_eq!(r.stats.documents, 1);
        // Documents without any word are left to exact dedup.
        let r = run(&["?!".to_string(), "...".to_string(), "?!".to_string()], &DedupConfig::new(Mode::Near));
        assert_eq!(r.removed, vec![2]);
        assert_eq!(r.stats.no_shingles, 3);
    }

    #[test]
    fn cjk_near_duplicates() {
        let base = "東京は日本の首都であり、世界で最も人口の多い都市圏の一つである。経済、政治、文化の中心地として知られ、多くの企業の本社が置かれている。";
        let text = base.repeat(3);
        let mut near: Vec<char> = text.chars().collect();
        near[10] = '京';
        let near: String = near.into_iter().collect();
        let other = "大阪は関西地方の中心都市で、食文化と商業の街として有名である。".repeat(3);
        let r = run(&[text, near, other], &DedupConfig::new(Mode::Near));
        assert_eq!(r.removed, vec![1]);
    }

    #[test]
    fn bad_options_are_errors() {
        let files = Vec::new();
        for cfg in [
            DedupConfig::new(Mode::Near).threshold(0.0),
            DedupConfig::new(Mode::Near).ngram(0),
            DedupConfig::new(Mode::Near).bands(Some((20, 20))),
        ] {
            let e = find_duplicates(&files, &CorpusConfig::default(), &cfg, &Progress::new()).unwrap_err();
            assert!(matches!(e, Error::Config(_)), "{e}");
        }
    }
}
