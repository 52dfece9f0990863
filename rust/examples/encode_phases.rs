//! Where encode time goes, without Python: the split pattern alone, then the whole encode, of
//! JSONL documents (one JSON string per line) with a `tokenizer.json`; `REPS` rounds (default 3).
//! `cargo run --release --example encode_phases -- tokenizer.json docs.jsonl... cl100k`
use std::time::Instant;

use dataprep::tokenizer::EncodeCache;
use dataprep::tokenizer::{Tokenizer, DOCUMENT_TEXT};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let tok = Tokenizer::from_file(std::path::Path::new(&args[0]), None)?;
    let pre = dataprep::pretokenize::PreTokenizer::new(dataprep::pretokenize::Pattern::parse(&args[args.len() - 1]))?;
    let args = &args[..args.len() - 1];
    let mut texts = Vec::new();
    for f in &args[1..] {
        for line in std::fs::read_to_string(f)?.lines() {
            texts.push(serde_json::from_str::<String>(line)?);
        }
    }
    let mb = texts.iter().map(String::len).sum::<usize>() as f64 / 1e6;
    for _ in 0..std::env::var("REPS").map_or(3, |v| v.parse().unwrap()) {
        let t = Instant::now();
        let mut n = 0;
        for x in &texts {
            pre.split(x, |_| n += 1);
        }
        println!("split {:.1} MB/s ({n} pieces)", mb / t.elapsed().as_secs_f64());
        let t = Instant::now();
        let mut cache = EncodeCache::new();
        let mut n = 0;
        for x in &texts {
            let mut out = Vec::new();
            tok.encode_into(x, DOCUMENT_TEXT, &mut cache, &mut out)?;
            n += out.len();
        }
        println!("encode {:.1} MB/s ({n} ids)", mb / t.elapsed().as_secs_f64());
    }
    Ok(())
}
