//! The reading options every command shares (flattened into each command's options).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use std::path::PathBuf;

use crate::corpus::{self, CorpusConfig, Format, InputFile, TextUnit, Utf8Policy};
use crate::error::{Error, Result};

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
    /// Not an option: the inputs as the Python layer listed them (remote objects, with their
    /// staged copies where this process reads them). When set, it is the input list, instead of
    /// discovering `inputs` on the local file system.
    #[serde(skip)]
    #[schemars(skip)]
    pub listing: Option<Vec<(String, u64, Option<PathBuf>)>>,
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
            listing: None,
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

    /// The run's input files: the listing when there is one, else `inputs` discovered.
    pub fn files(&self, inputs: &[String]) -> Result<Vec<InputFile>> {
        match &self.listing {
            Some(l) => corpus::listed(l),
            None => corpus::discover(&inputs.iter().map(PathBuf::from).collect::<Vec<_>>()),
        }
    }

    /// The inputs a work unit names (`unit_files`, from the driver's plan): they must be a run of
    /// consecutive `files` (the run's inputs), so that units cover the corpus in order, and each
    /// must be readable here. Names are matched as listed (see [`Self::listing`]), else as paths.
    pub fn unit_slice<'a>(&self, files: &'a [InputFile], unit_files: &[String]) -> Result<&'a [InputFile]> {
        let wanted: Vec<(String, Option<u64>)> = match &self.listing {
            Some(_) => unit_files.iter().map(|n| (n.clone(), None)).collect(),
            None => corpus::discover(&unit_files.iter().map(PathBuf::from).collect::<Vec<_>>())?
                .iter()
                .map(|f| (f.name().into_owned(), Some(f.size)))
                .collect(),
        };
        let not_a_run = || {
            Error::Config(format!(
                "unit files: {} is not a run of consecutive inputs of the plan",
                unit_files.first().map_or("[]", String::as_str)
            ))
        };
        let start = wanted.first().and_then(|(n, _)| files.iter().position(|f| f.name() == n.as_str()));
        let slice = start.and_then(|i| files.get(i..i + wanted.len())).ok_or_else(not_a_run)?;
        for (f, (name, size)) in slice.iter().zip(&wanted) {
            if f.name() != name.as_str() || size.is_some_and(|s| s != f.size) {
                return Err(not_a_run());
            }
            if f.name.is_some() && f.path.as_os_str() == name.as_str() {
                return Err(Error::Config(format!("unit files: {name} has no local copy in the listing")));
            }
        }
        Ok(slice)
    }
}
