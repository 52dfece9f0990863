//! Where BPE training time goes: reading, splitting, counting, merging, each timed on its own.
//!
//! cargo run --release --example train_phases -- ../shared/corpora/enwiki/AA [vocab] [threads]

use std::path::PathBuf;
use std::time::Instant;

use dataprep::bpe::trainer::{count_words, train_from_counts, TrainerConfig};
use dataprep::corpus::{discover, read_batches, CorpusConfig};
use dataprep::pretokenize::{Pattern, PreTokenizer};
use dataprep::progress::Progress;

fn main() -> dataprep::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let input = PathBuf::from(args.get(1).map_or("../shared/corpora/enwiki/AA", String::as_str));
    let vocab: u32 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(32000);
    let threads: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(2);
    let files = discover(&[input])?;
    let corpus = CorpusConfig::default();
    let p = Progress::new();
    let cfg = TrainerConfig::new(vocab).threads(threads).holdout_every(0);

    let t = Instant::now();
    let (stats, _) = read_batches(&files, &corpus, 1 << 20, threads, &p, || (), |(), _| Ok(()))?;
    let read = t.elapsed().as_secs_f64();
    let mb = stats.bytes as f64 / 1e6;

    let pre = PreTokenizer::new(Pattern::Gpt2)?;
    let t = Instant::now();
    let (_, pieces) = read_batches(
        &files,
        &corpus,
        1 << 20,
        threads,
        &p,
        || 0u64,
        |n, b| {
            for d in &b.docs {
                pre.split(&d.text, |_| *n += 1);
            }
            Ok(())
        },
    )?;
    let split = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let (counts, _, _) = count_words(&files, &corpus, &cfg, 0, &p)?;
    let count = t.elapsed().as_secs_f64();
    let unique = counts.len();

    let t = Instant::now();
    let tok = train_from_counts(counts, &cfg, &p)?;
    let merge = t.elapsed().as_secs_f64();

    println!(
        "{mb:.1} MB, {} pieces, {unique} unique, {} merges, {threads} threads",
        pieces.iter().sum::<u64>(),
        tok.merges().len()
    );
    println!("| phase | cumulative s | phase s | MB/s |");
    println!("|---|---:|---:|---:|");
    println!("| read | {read:.2} | {read:.2} | {:.0} |", mb / read);
    println!("| + split | {split:.2} | {:.2} | {:.0} |", split - read, mb / split);
    println!("| + count | {count:.2} | {:.2} | {:.0} |", count - split, mb / count);
    println!("| merge | {merge:.2} | {merge:.2} | |");
    Ok(())
}
