//! What a tokenizer's post-processor puts around one sequence: the special ids before and after
//! it (`[CLS] $A [SEP]`, `<s> $A </s>`, `<|begin_of_text|> $A`, or nothing). `dataprep tokenize`
//! takes its default BOS/EOS (causal) and CLS/SEP (MLM) from here, so a model gets the special
//! tokens it was trained with, whatever they are named.

use serde_json::Value;

/// Special ids before and after one sequence (`add_special_tokens=True` of HF for one text).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Template {
    pub before: Vec<u32>,
    pub after: Vec<u32>,
}

/// `Ok(None)` when the file has no post-processor; `Err(note)` when the template cannot be read as
/// "specials, the sequence, specials" (then the pipeline falls back to special-token names and
/// says so).
pub(crate) fn parse(post: Option<&Value>) -> Result<Option<Template>, String> {
    match post.filter(|v| !v.is_null()) {
        None => Ok(None),
        Some(p) => one(p, "post_processor").map(Some),
    }
}

fn one(p: &Value, path: &str) -> Result<Template, String> {
    let ty = p.get("type").and_then(Value::as_str).unwrap_or_default();
    let pair_id = |key: &str| -> Result<u32, String> {
        p.get(key)
            .and_then(Value::as_array)
            .and_then(|a| a.get(1))
            .and_then(Value::as_u64)
            .map(|id| id as u32)
            .ok_or_else(|| format!("{path}.{key}: not [\"token\", id]"))
    };
    match ty {
        "ByteLevel" => Ok(Template::default()),
        "BertProcessing" | "RobertaProcessing" => {
            Ok(Template { before: vec![pair_id("cls")?], after: vec![pair_id("sep")?] })
        }
        "Sequence" => {
            // Processors apply in order, each around the result of the one before.
            let mut t = Template::default();
            let list = p.get("processors").and_then(Value::as_array).cloned().unwrap_or_default();
            for (i, q) in list.iter().enumerate() {
                let inner = one(q, &format!("{path}.processors[{i}]"))?;
                let mut before = inner.before;
                before.extend_from_slice(&t.before);
                t.before = before;
                t.after.extend_from_slice(&inner.after);
            }
            Ok(t)
        }
        "TemplateProcessing" => {
            let single =
                p.get("single").and_then(Value::as_array).ok_or_else(|| format!("{path}.single: not a list"))?;
            let specials = p.get("special_tokens").and_then(Value::as_object);
            let mut t = Template::default();
            let mut seen_a = false;
            for (i, piece) in single.iter().enumerate() {
                if let Some(s) = piece.get("Sequence") {
                    if seen_a || s.get("id").and_then(Value::as_str) != Some("A") {
                        return Err(format!("{path}.single[{i}]: only one sequence, $A, is read for documents"));
                    }
                    seen_a = true;
                } else if let Some(name) = piece.get("SpecialToken").and_then(|s| s.get("id")).and_then(Value::as_str) {
                    let ids = specials
                        .and_then(|m| m.get(name))
                        .and_then(|s| s.get("ids"))
                        .and_then(Value::as_array)
                        .ok_or_else(|| format!("{path}.special_tokens: no ids for \"{name}\""))?;
                    let ids = ids.iter().map(|v| v.as_u64().map(|x| x as u32)).collect::<Option<Vec<u32>>>();
                    let ids = ids.ok_or_else(|| format!("{path}.special_tokens.{name}.ids: not integers"))?;
                    if seen_a { &mut t.after } else { &mut t.before }.extend(ids);
                } else {
                    return Err(format!("{path}.single[{i}]: neither a Sequence nor a SpecialToken"));
                }
            }
            if !seen_a {
                return Err(format!("{path}.single: no $A"));
            }
            Ok(t)
        }
        other => Err(format!("{path}: post-processor \"{other}\"")),
    }
}
