//! Where `tokenize --objective mlm` worker time goes against `--objective clm`, on one thread with
//! the documents in memory: the causal encode, sentence splitting alone, and the MLM worker's
//! split + per-sentence encode with word starts into [`Documents`]. Best of 3 rounds.
//!
//! cargo run --release --example mlm_phases -- ../shared/corpora/enwiki/AA tokenizer.json

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use dataprep::corpus::{discover, read_batches, CorpusConfig};
use dataprep::mask::sentences::split_sentences;
use dataprep::progress::Progress;
use dataprep::rows::mlm::Documents;
use dataprep::tokenizer::EncodeCache;
use dataprep::tokenizer::Tokenizer;

fn best_of_3(mut f: impl FnMut()) -> f64 {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() -> dataprep::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let input = PathBuf::from(args.get(1).map_or("../shared/corpora/enwiki/AA", String::as_str));
    let tok = Tokenizer::from_file(Path::new(args.get(2).map_or("tokenizer.json", String::as_str)), None)?;
    let files = discover(&[input])?;
    let texts = Mutex::new(Vec::new());
    read_batches(
        &files,
        &CorpusConfig::default(),
        1 << 20,
        1,
        &Progress::new(),
        || (),
        |(), b| {
            texts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(b.docs.into_iter().map(|d| d.text));
            Ok(())
        },
    )?;
    let texts = texts.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mb = texts.iter().map(String::len).sum::<usize>() as f64 / 1e6;

    let clm = best_of_3(|| {
        let mut cache = EncodeCache::new();
        for t in &texts {
            let mut ids = Vec::with_capacity(t.len() / 3);
            tok.encode_into(t, dataprep::tokenizer::DOCUMENT_TEXT, &mut cache, &mut ids).expect("encode");
        }
    });
    let split = best_of_3(|| {
        for t in &texts {
            std::hint::black_box(split_sentences(t));
        }
    });
    let mlm = best_of_3(|| {
        let mut cache = EncodeCache::new();
        let mut docs = Documents::new();
        for t in &texts {
            for r in split_sentences(t) {
                let (ids, ws) = docs.tokens_mut();
                tok.encode_with_word_starts(&t[r], &mut cache, ids, ws).expect("encode");
                if docs.open_sentence_len() > 0 {
                    docs.end_sentence();
                }
            }
            docs.end_document();
            if docs.ids().len() >= 1 << 18 {
                docs.clear(); // about one 1 MB batch, as the pipeline sends them on
            }
        }
    });
    println!("{mb:.1} MB, 1 thread, best of 3");
    println!("clm encode             {clm:.3} s");
    println!("split_sentences        {split:.3} s");
    println!("mlm split + encode     {mlm:.3} s ({:.2}x clm)", mlm / clm);
    Ok(())
}
