//! The `tokenizer.json` schema of HF `tokenizers` (0.23), walked before anything is built: every
//! key and every component `type` is known here or the file is refused, with the JSON path of what
//! is not known (`pre_tokenizer.pretokenizers[1]: unknown pre-tokenizer type "Foo"`).
//!
//! Why a walk of our own when the `tokenizers` crate parses the file anyway: serde's untagged
//! enums there report "data did not match any variant" with a line and column, and a few options
//! (a nonzero BPE dropout) load fine but make ids random. Refusing here names the component.

use serde_json::Value;

/// A refusal: the JSON path and what is wrong there.
pub(crate) struct Refusal {
    pub path: String,
    pub what: String,
}

type Walk = std::result::Result<(), Refusal>;

fn refuse(path: &str, what: impl Into<String>) -> Refusal {
    Refusal { path: path.to_string(), what: what.into() }
}

const TOP: &[&str] = &[
    "version",
    "truncation",
    "padding",
    "added_tokens",
    "normalizer",
    "pre_tokenizer",
    "model",
    "post_processor",
    "decoder",
];
const ADDED: &[&str] = &["id", "content", "single_word", "lstrip", "rstrip", "normalized", "special"];
const TRUNCATION: &[&str] = &["direction", "max_length", "strategy", "stride"];
const PADDING: &[&str] = &["strategy", "direction", "pad_to_multiple_of", "pad_id", "pad_type_id", "pad_token"];

const NORMALIZERS: &[(&str, &[&str])] = &[
    ("NFC", &[]),
    ("NFD", &[]),
    ("NFKC", &[]),
    ("NFKD", &[]),
    ("Lowercase", &[]),
    ("StripAccents", &[]),
    ("Nmt", &[]),
    ("ByteLevel", &[]),
    ("Strip", &["strip_left", "strip_right"]),
    ("Replace", &["pattern", "content"]),
    ("Prepend", &["prepend"]),
    ("BertNormalizer", &["clean_text", "handle_chinese_chars", "strip_accents", "lowercase"]),
    ("Precompiled", &["precompiled_charsmap"]),
    ("Sequence", &["normalizers"]),
];

const PRE_TOKENIZERS: &[(&str, &[&str])] = &[
    ("ByteLevel", &["add_prefix_space", "trim_offsets", "use_regex"]),
    ("Split", &["pattern", "behavior", "invert"]),
    ("Whitespace", &[]),
    ("WhitespaceSplit", &[]),
    ("BertPreTokenizer", &[]),
    ("Punctuation", &["behavior"]),
    ("Digits", &["individual_digits"]),
    // `add_prefix_space` and `str_rep` are the legacy keys HF still reads.
    ("Metaspace", &["replacement", "prepend_scheme", "split", "add_prefix_space", "str_rep"]),
    ("UnicodeScripts", &[]),
    ("CharDelimiterSplit", &["delimiter"]),
    ("FixedLength", &["length"]),
    ("Sequence", &["pretokenizers"]),
];

const MODELS: &[(&str, &[&str])] = &[
    (
        "BPE",
        &[
            "dropout",
            "unk_token",
            "continuing_subword_prefix",
            "end_of_word_suffix",
            "fuse_unk",
            "byte_fallback",
            "ignore_merges",
            "vocab",
            "merges",
        ],
    ),
    ("WordPiece", &["unk_token", "continuing_subword_prefix", "max_input_chars_per_word", "vocab"]),
    ("Unigram", &["unk_id", "vocab", "byte_fallback"]),
    ("WordLevel", &["unk_token", "vocab"]),
];

const POST_PROCESSORS: &[(&str, &[&str])] = &[
    ("TemplateProcessing", &["single", "pair", "special_tokens"]),
    ("BertProcessing", &["sep", "cls"]),
    ("RobertaProcessing", &["sep", "cls", "trim_offsets", "add_prefix_space"]),
    ("ByteLevel", &["add_prefix_space", "trim_offsets", "use_regex"]),
    ("Sequence", &["processors"]),
];

const DECODERS: &[(&str, &[&str])] = &[
    ("ByteLevel", &["add_prefix_space", "trim_offsets", "use_regex"]),
    ("WordPiece", &["prefix", "cleanup"]),
    ("Metaspace", &["replacement", "prepend_scheme", "split", "add_prefix_space", "str_rep"]),
    ("BPEDecoder", &["suffix"]),
    ("CTC", &["pad_token", "word_delimiter_token", "cleanup"]),
    ("Replace", &["pattern", "content"]),
    ("Fuse", &[]),
    ("Strip", &["content", "start", "stop"]),
    ("ByteFallback", &[]),
    ("Sequence", &["decoders"]),
];

const SPLIT_BEHAVIORS: &[&str] = &["Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"];
const PREPEND_SCHEMES: &[&str] = &["first", "never", "always"];

/// Walks the whole document; the first unknown key, type or unsupported value is refused.
pub(crate) fn walk(doc: &Value) -> Walk {
    let top = doc.as_object().ok_or_else(|| refuse("(root)", "not a JSON object"))?;
    keys(top, "", TOP)?;
    if !top.contains_key("model") {
        return Err(refuse("model", "missing: not a tokenizer.json"));
    }
    match top.get("version") {
        None => {}
        Some(Value::String(v)) if v == "1.0" => {}
        Some(v) => {
            return Err(refuse("version", format!("{v} is not a tokenizer.json version tokenizers reads (\"1.0\")")))
        }
    }
    if let Some(t) = top.get("truncation").filter(|v| !v.is_null()) {
        let o = object(t, "truncation")?;
        keys(o, "truncation", TRUNCATION)?;
        typed(o, "truncation", &[("max_length", Ty::Count), ("stride", Ty::Count)])?;
        one_of(o, "truncation", "strategy", &["LongestFirst", "OnlyFirst", "OnlySecond"])?;
        one_of(o, "truncation", "direction", &["Left", "Right"])?;
    }
    if let Some(p) = top.get("padding").filter(|v| !v.is_null()) {
        let o = object(p, "padding")?;
        keys(o, "padding", PADDING)?;
        typed(
            o,
            "padding",
            &[
                ("pad_to_multiple_of", Ty::CountOrNull),
                ("pad_id", Ty::Count),
                ("pad_type_id", Ty::Count),
                ("pad_token", Ty::Str),
            ],
        )?;
        one_of(o, "padding", "direction", &["Left", "Right"])?;
    }
    if let Some(list) = top.get("added_tokens").filter(|v| !v.is_null()) {
        let list = list.as_array().ok_or_else(|| refuse("added_tokens", "not a list"))?;
        for (i, t) in list.iter().enumerate() {
            let path = format!("added_tokens[{i}]");
            let o = object(t, &path)?;
            keys(o, &path, ADDED)?;
            for k in ["id", "content"] {
                if !o.contains_key(k) {
                    return Err(refuse(&path, format!("no \"{k}\"")));
                }
            }
            typed(
                o,
                &path,
                &[
                    ("id", Ty::Id),
                    ("content", Ty::Str),
                    ("single_word", Ty::Bool),
                    ("lstrip", Ty::Bool),
                    ("rstrip", Ty::Bool),
                    ("normalized", Ty::Bool),
                    ("special", Ty::Bool),
                ],
            )?;
        }
    }
    component(top.get("normalizer"), "normalizer", "normalizer", NORMALIZERS, &normalizer_values)?;
    component(top.get("pre_tokenizer"), "pre_tokenizer", "pre-tokenizer", PRE_TOKENIZERS, &pre_tokenizer_values)?;
    component(top.get("post_processor"), "post_processor", "post-processor", POST_PROCESSORS, &|_, _, _| Ok(()))?;
    component(top.get("decoder"), "decoder", "decoder", DECODERS, &|_, _, _| Ok(()))?;
    model(&top["model"])
}

fn object<'a>(v: &'a Value, path: &str) -> std::result::Result<&'a serde_json::Map<String, Value>, Refusal> {
    v.as_object().ok_or_else(|| refuse(path, "not a JSON object"))
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn keys(o: &serde_json::Map<String, Value>, path: &str, known: &[&str]) -> Walk {
    match o.keys().find(|k| k.as_str() != "type" && !known.contains(&k.as_str())) {
        Some(k) => Err(refuse(&join(path, k), "unknown key (not in the tokenizers 0.23 schema)")),
        None => Ok(()),
    }
}

type Values = dyn Fn(&str, &serde_json::Map<String, Value>, &str) -> Walk;

/// A component (or `null`), its `type` among `types`, its keys, its nested sequence.
fn component(v: Option<&Value>, path: &str, kind: &str, types: &[(&str, &[&str])], values: &Values) -> Walk {
    let Some(v) = v.filter(|v| !v.is_null()) else { return Ok(()) };
    let o = object(v, path)?;
    let ty = o.get("type").and_then(Value::as_str).ok_or_else(|| refuse(path, format!("{kind} without a \"type\"")))?;
    let Some((_, known)) = types.iter().find(|(t, _)| *t == ty) else {
        return Err(refuse(path, format!("unknown {kind} type \"{ty}\"")));
    };
    keys(o, path, known)?;
    values(ty, o, path)?;
    if ty == "Sequence" {
        let key = known[0];
        let list = o.get(key).and_then(Value::as_array).ok_or_else(|| refuse(&join(path, key), "not a list"))?;
        for (i, item) in list.iter().enumerate() {
            component(Some(item), &format!("{}[{i}]", join(path, key)), kind, types, values)?;
        }
    }
    Ok(())
}

fn pattern(o: &serde_json::Map<String, Value>, path: &str) -> Walk {
    let p = join(path, "pattern");
    let pat = o
        .get("pattern")
        .and_then(Value::as_object)
        .ok_or_else(|| refuse(&p, "not {\"String\": ...} or {\"Regex\": ...}"))?;
    match pat.iter().next() {
        Some((k, v)) if pat.len() == 1 && (k == "String" || k == "Regex") && v.is_string() => Ok(()),
        _ => Err(refuse(&p, "not {\"String\": ...} or {\"Regex\": ...}")),
    }
}

/// The JSON type a field must have.
#[derive(Clone, Copy)]
enum Ty {
    Bool,
    Str,
    StrOrNull,
    /// A non-negative integer.
    Count,
    CountOrNull,
    /// A token id (fits u32).
    Id,
    NumberOrNull,
}

fn typed(o: &serde_json::Map<String, Value>, path: &str, fields: &[(&str, Ty)]) -> Walk {
    for &(key, ty) in fields {
        let Some(v) = o.get(key) else { continue };
        let ok = match ty {
            Ty::Bool => v.is_boolean(),
            Ty::Str => v.is_string(),
            Ty::StrOrNull => v.is_string() || v.is_null(),
            Ty::Count => v.is_u64(),
            Ty::CountOrNull => v.is_u64() || v.is_null(),
            Ty::Id => v.as_u64().is_some_and(|x| u32::try_from(x).is_ok()),
            Ty::NumberOrNull => v.is_number() || v.is_null(),
        };
        if !ok {
            let want = match ty {
                Ty::Bool => "true or false",
                Ty::Str => "a string",
                Ty::StrOrNull => "a string or null",
                Ty::Count => "a non-negative integer",
                Ty::CountOrNull => "a non-negative integer or null",
                Ty::Id => "a token id (an integer below 2^32)",
                Ty::NumberOrNull => "a number or null",
            };
            return Err(refuse(&join(path, key), format!("{v} is not {want}")));
        }
    }
    Ok(())
}

/// A regex as Oniguruma (HF's engine) compiles it.
fn regex_compiles(o: &serde_json::Map<String, Value>, path: &str) -> Walk {
    if let Some(re) = o.get("pattern").and_then(|p| p.get("Regex")).and_then(Value::as_str) {
        if let Err(e) = tokenizers::utils::SysRegex::new(re) {
            return Err(refuse(&join(path, "pattern"), format!("regex does not compile: {e}")));
        }
    }
    Ok(())
}

fn one_of(o: &serde_json::Map<String, Value>, path: &str, key: &str, allowed: &[&str]) -> Walk {
    match o.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(()),
        Some(v) => Err(refuse(&join(path, key), format!("{v} is not one of {}", allowed.join(", ")))),
    }
}

fn normalizer_values(ty: &str, o: &serde_json::Map<String, Value>, path: &str) -> Walk {
    match ty {
        "Replace" => {
            pattern(o, path)?;
            regex_compiles(o, path)?;
            typed(o, path, &[("content", Ty::Str)])
        }
        "Strip" => typed(o, path, &[("strip_left", Ty::Bool), ("strip_right", Ty::Bool)]),
        "Prepend" => typed(o, path, &[("prepend", Ty::Str)]),
        "BertNormalizer" => {
            typed(o, path, &[("clean_text", Ty::Bool), ("handle_chinese_chars", Ty::Bool), ("lowercase", Ty::Bool)])
        }
        _ => Ok(()),
    }
}

fn pre_tokenizer_values(ty: &str, o: &serde_json::Map<String, Value>, path: &str) -> Walk {
    match ty {
        "Split" => {
            pattern(o, path)?;
            regex_compiles(o, path)?;
            typed(o, path, &[("invert", Ty::Bool)])?;
            one_of(o, path, "behavior", SPLIT_BEHAVIORS)
        }
        "ByteLevel" => {
            typed(o, path, &[("add_prefix_space", Ty::Bool), ("trim_offsets", Ty::Bool), ("use_regex", Ty::Bool)])
        }
        "Digits" => typed(o, path, &[("individual_digits", Ty::Bool)]),
        "Punctuation" => one_of(o, path, "behavior", SPLIT_BEHAVIORS),
        "Metaspace" => {
            typed(o, path, &[("replacement", Ty::Str), ("split", Ty::Bool)])?;
            one_of(o, path, "prepend_scheme", PREPEND_SCHEMES)
        }
        _ => Ok(()),
    }
}

fn model(v: &Value) -> Walk {
    let o = object(v, "model")?;
    // HF also reads a model without "type" by trying each model's shape in turn; that is a guess,
    // so such a file is refused (every file `tokenizers` >= 0.10 writes carries the type).
    let ty = o
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| refuse("model", "no \"type\" (write it: BPE, WordPiece, Unigram or WordLevel)"))?;
    let Some((_, known)) = MODELS.iter().find(|(t, _)| *t == ty) else {
        return Err(refuse("model", format!("unknown model type \"{ty}\"")));
    };
    keys(o, "model", known)?;
    typed(
        o,
        "model",
        &[
            ("dropout", Ty::NumberOrNull),
            ("continuing_subword_prefix", if ty == "WordPiece" { Ty::Str } else { Ty::StrOrNull }),
            ("end_of_word_suffix", Ty::StrOrNull),
            ("unk_token", if ty == "BPE" { Ty::StrOrNull } else { Ty::Str }),
            ("fuse_unk", Ty::Bool),
            ("byte_fallback", Ty::Bool),
            ("ignore_merges", Ty::Bool),
            ("max_input_chars_per_word", Ty::Count),
            ("unk_id", Ty::CountOrNull),
        ],
    )?;
    // Ids of a token -> id vocabulary (Unigram's is a list of [piece, score]).
    if let Some(vocab) = o.get("vocab").and_then(Value::as_object) {
        for (token, id) in vocab {
            if id.as_u64().is_none_or(|x| u32::try_from(x).is_err()) {
                return Err(refuse(
                    &format!("model.vocab.{token}"),
                    format!("{id} is not a token id (an integer below 2^32)"),
                ));
            }
        }
    }
    if ty == "BPE" {
        merges(o)?;
    }
    if ty == "BPE" {
        match o.get("dropout") {
            None | Some(Value::Null) => {}
            Some(d) if d.as_f64() == Some(0.0) => {}
            Some(d) => {
                return Err(refuse(
                    "model.dropout",
                    format!("BPE dropout {d} makes ids random at every call; set it to null for data preparation"),
                ))
            }
        }
    }
    Ok(())
}

/// Every merge names two tokens of the vocabulary whose concatenation is one too (HF refuses the
/// file otherwise; here the merge is named).
fn merges(o: &serde_json::Map<String, Value>) -> Walk {
    let Some(vocab) = o.get("vocab").and_then(Value::as_object) else {
        return Err(refuse("model.vocab", "not an object of token -> id"));
    };
    let Some(list) = o.get("merges").and_then(Value::as_array) else {
        return Err(refuse("model.merges", "not a list"));
    };
    for (i, m) in list.iter().enumerate() {
        let path = format!("model.merges[{i}]");
        let (l, r) = match m {
            Value::String(s) => s.split_once(' ').ok_or_else(|| refuse(&path, "not \"a b\""))?,
            Value::Array(v) if v.len() == 2 => match (v[0].as_str(), v[1].as_str()) {
                (Some(l), Some(r)) => (l, r),
                _ => return Err(refuse(&path, "not a pair of strings")),
            },
            _ => return Err(refuse(&path, "not \"a b\" or [\"a\", \"b\"]")),
        };
        for t in [l, r] {
            if !vocab.contains_key(t) {
                return Err(refuse(&path, format!("token {t:?} is not in the vocab")));
            }
        }
        if !vocab.contains_key(&format!("{l}{r}")) {
            return Err(refuse(&path, format!("the merged token {:?} is not in the vocab", format!("{l}{r}"))));
        }
    }
    Ok(())
}
