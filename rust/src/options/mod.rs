//! Every command's options, defined once. One serde struct per command ([`TokenizeOptions`],
//! [`DedupOptions`], [`TrainBpeOptions`], sharing [`CorpusOptions`]) is the single definition of
//! each option: its name (the field; the CLI flag is `--` + the name with `-` for `_`, unless
//! the field's schema says `x-flag`), type, default (`Default`), doc (the `///` comment, which the
//! CLI shows as help) and bounds (`validate`, one-line errors naming the flag).
//!
//! The Python layer hands a command its options as one dict ([`parse`] turns it into the struct,
//! refusing unknown names and naming the option on a type error); the click CLI builds its flags
//! from [`schema`]. Options the user did not give are absent from the dict, so a command knows
//! which were given and refuses one that does not apply (e.g. `--layout` with `--objective clm`)
//! instead of ignoring it.
//!
//! Why not click (or the PyO3 signature) as the definition, as before: the same option was then
//! declared five times (click, the CLI function, the Python keyword, the PyO3 parameter, the
//! Rust struct) and one of them could silently drop it (`--dedup` with `--objective mlm` did).

pub mod corpus;
pub mod dedup;
pub mod tokenize;
pub mod train_bpe;

use std::collections::BTreeSet;

use schemars::{generate::SchemaSettings, JsonSchema};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

pub use corpus::CorpusOptions;
pub use dedup::DedupOptions;
pub use tokenize::TokenizeOptions;
pub use train_bpe::TrainBpeOptions;

use crate::error::{Error, Result};

/// The names of the options given (keys of the dict), for "does not apply" checks.
pub type Given = BTreeSet<String>;

/// The commands that take options, by name.
pub const COMMANDS: [&str; 3] = ["tokenize", "dedup", "train-bpe"];

/// The JSON schema of `T` with every sub-schema inlined: `properties` (each with `description`,
/// `default`, type or `enum`) is what the CLI builds its flags from.
pub fn schema_of<T: JsonSchema>() -> Value {
    let generator = SchemaSettings::draft2020_12().with(|s| s.inline_subschemas = true).into_generator();
    generator.into_root_schema_for::<T>().to_value()
}

/// The schema of a command's options by command name (see [`COMMANDS`]).
pub fn schema(command: &str) -> Result<Value> {
    match command {
        "tokenize" => Ok(schema_of::<TokenizeOptions>()),
        "dedup" => Ok(schema_of::<DedupOptions>()),
        "train-bpe" => Ok(schema_of::<TrainBpeOptions>()),
        other => Err(Error::Config(format!("unknown command {other:?} ({})", COMMANDS.join(", ")))),
    }
}

/// The flag that names option `field` in messages: `x-flag` from the schema, else `--field-name`.
pub fn flag_of<T: JsonSchema>(field: &str) -> String {
    let schema = schema_of::<T>();
    schema["properties"][field]["x-flag"].as_str().map_or_else(|| flag(field), str::to_string)
}

/// [`flag_of`] by command name; `--field-name` for an unknown command or field.
pub fn flag_in(command: &str, field: &str) -> String {
    schema(command)
        .ok()
        .and_then(|s| s["properties"][field]["x-flag"].as_str().map(str::to_string))
        .unwrap_or_else(|| flag(field))
}

fn flag(field: &str) -> String {
    format!("--{}", field.replace('_', "-"))
}

/// Builds a command's options from a map of option name -> value; returns them with the names
/// given. Unknown names are refused (never skipped); a value of the wrong type or range is
/// refused with the option's flag in the message.
pub fn parse<T: DeserializeOwned + JsonSchema>(command: &str, map: Map<String, Value>) -> Result<(T, Given)> {
    let schema = schema_of::<T>();
    let known = schema["properties"].as_object().cloned().unwrap_or_default();
    for key in map.keys() {
        if !known.contains_key(key) {
            let mut names: Vec<&str> = known.keys().map(String::as_str).collect();
            names.sort_unstable();
            return Err(Error::Config(format!("{command}: unknown option {key:?} (options: {})", names.join(", "))));
        }
    }
    // An explicit null is the default ("not set"), as `None` is for a Python keyword.
    let given: Given = map.iter().filter(|(_, v)| !v.is_null()).map(|(k, _)| k.clone()).collect();
    let value = Value::Object(map);
    let options = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = path.split(['.', '[']).next().unwrap_or_default().to_string();
        let name = known.get(&field).and_then(|p| p["x-flag"].as_str()).map_or_else(|| flag(&field), str::to_string);
        Error::Config(format!("{name}: {}", e.into_inner()))
    })?;
    Ok((options, given))
}

/// Parses and validates a command's options without running it (for a CLI that reports a bad
/// option before it prints anything else).
pub fn check(command: &str, map: Map<String, Value>) -> Result<()> {
    match command {
        "tokenize" => parse::<TokenizeOptions>(command, map).and_then(|(o, g)| o.validate(&g)),
        "dedup" => parse::<DedupOptions>(command, map).and_then(|(o, g)| o.validate(&g)),
        "train-bpe" => parse::<TrainBpeOptions>(command, map).and_then(|(o, g)| o.validate(&g)),
        other => Err(Error::Config(format!("unknown command {other:?} ({})", COMMANDS.join(", ")))),
    }
}

/// One-line range checks that name the flag; `what` says what the value must be.
pub(crate) fn ensure(ok: bool, flag: &str, what: impl std::fmt::Display, got: impl std::fmt::Display) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!("{flag} must be {what} (got {got})")))
    }
}

/// Refuses the options in `names` that were given although `why` says they do not apply.
pub(crate) fn refuse_given(given: &Given, names: &[&str], flag_of: impl Fn(&str) -> String, why: &str) -> Result<()> {
    match names.iter().find(|n| given.contains(**n)) {
        Some(n) => Err(Error::Config(format!("{} {why}", flag_of(n)))),
        None => Ok(()),
    }
}

/// The worker threads to use: the option, else every core. Never part of a configuration hash.
pub(crate) fn threads_or_all(threads: Option<usize>) -> usize {
    threads.unwrap_or_else(crate::all_cores)
}

/// Bytes in `256MB`, `1.5GB`, `2KiB`, `4096` (decimal K/M/G, binary Ki/Mi/Gi).
pub fn parse_size(text: &str) -> Option<u64> {
    let s = text.trim().to_ascii_uppercase();
    let s = s.strip_suffix('B').unwrap_or(&s);
    let units: [(&str, f64); 6] =
        [("KI", 1024.0), ("MI", 1_048_576.0), ("GI", 1_073_741_824.0), ("K", 1e3), ("M", 1e6), ("G", 1e9)];
    let (num, mult) =
        units.iter().find_map(|(suffix, mult)| s.strip_suffix(suffix).map(|n| (n, *mult))).unwrap_or((s, 1.0));
    let x: f64 = num.trim().parse().ok()?;
    let bytes = x * mult;
    (1.0..1e18).contains(&bytes).then_some(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_the_cli_says() {
        assert_eq!(parse_size("256MB"), Some(256_000_000));
        assert_eq!(parse_size("2KiB"), Some(2048));
        assert_eq!(parse_size("1.5GB"), Some(1_500_000_000));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("0"), None);
        assert_eq!(parse_size("-5MB"), None);
        assert_eq!(parse_size("nanMB"), None);
        assert_eq!(parse_size("lots"), None);
    }

    #[test]
    fn unknown_options_and_bad_types_name_the_option() {
        let map = |v: Value| v.as_object().cloned().unwrap();
        let e = parse::<TokenizeOptions>("tokenize", map(serde_json::json!({"seqlen": 5}))).unwrap_err();
        assert!(e.to_string().contains("unknown option \"seqlen\""), "{e}");
        let e = parse::<TokenizeOptions>("tokenize", map(serde_json::json!({"seq_len": -5}))).unwrap_err();
        assert!(e.to_string().starts_with("--seq-len: "), "{e}");
        let e = parse::<TokenizeOptions>("tokenize", map(serde_json::json!({"objective": "gpt"}))).unwrap_err();
        assert!(e.to_string().starts_with("--objective: "), "{e}");
        let (o, given) =
            parse::<TokenizeOptions>("tokenize", map(serde_json::json!({"seq_len": 64, "use_bos": false}))).unwrap();
        assert_eq!(o.seq_len, 64);
        assert!(!o.use_bos);
        assert_eq!(given.len(), 2);
    }

    #[test]
    fn every_option_has_a_doc_and_a_default() {
        for command in COMMANDS {
            let s = schema(command).unwrap();
            let props = s["properties"].as_object().unwrap();
            assert!(!props.is_empty());
            for (name, p) in props {
                assert!(p["description"].as_str().is_some_and(|d| !d.is_empty()), "{command} {name}: no doc");
                assert!(p.get("default").is_some(), "{command} {name}: no default");
            }
        }
    }
}
