//! The reading options every command shares (flattened into each command's options).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::corpus::{CorpusConfig, Format, TextUnit, Utf8Policy};

/// How input files are read (see `README.md#corpus-formats`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
// No `deny_unknown_fields`: serde does not support it on flattened structs; `options::parse`
// refuses unknown names for the whole command instead.
#[serde(default)]
pub struct CorpusOptions {
    /// Input format; auto: by extension, else WikiExtractor if the file starts with <doc.
    pub format: Format,
    /// Plain text: one document per file or per blank-line separated paragraph.
    pub text_unit: TextUnit,
    /// JSONL: the field holding the text.
    pub jsonl_field: String,
    /// Parquet: the column holding the text.
    pub parquet_column: String,
    /// Invalid UTF-8 in a document: replace with U+FFFD, skip the document, or stop.
    pub invalid_utf8: Utf8Policy,
}

impl Default for CorpusOptions {
    fn default() -> Self {
        let c = CorpusConfig::default();
        Self {
            format: c.format,
            text_unit: c.text_unit,
            jsonl_field: c.jsonl_field,
            parquet_column: c.parquet_column,
            invalid_utf8: c.utf8,
        }
    }
}

impl CorpusOptions {
    pub fn config(&self) -> CorpusConfig {
        CorpusConfig {
            format: self.format,
            text_unit: self.text_unit,
            jsonl_field: self.jsonl_field.clone(),
            parquet_column: self.parquet_column.clone(),
            utf8: self.invalid_utf8,
        }
    }
}
