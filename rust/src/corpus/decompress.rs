//! Transparent decompression chosen by file extension.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::error::{Error, Result};

const EXTENSIONS: [&str; 3] = [".gz", ".bz2", ".zst"];

/// `name` without a trailing compression extension.
pub fn strip_extension(name: &str) -> &str {
    EXTENSIONS.iter().find_map(|e| name.strip_suffix(e)).unwrap_or(name)
}

/// Opens `path` for reading its decompressed bytes.
pub fn open(path: &Path) -> Result<Box<dyn Read + Send>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let buf = BufReader::with_capacity(1 << 16, file);
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    Ok(if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(buf))
    } else if name.ends_with(".bz2") {
        Box::new(bzip2::read::MultiBzDecoder::new(buf))
    } else if name.ends_with(".zst") {
        Box::new(zstd::stream::read::Decoder::with_buffer(buf).map_err(|e| Error::io(path, e))?)
    } else {
        Box::new(buf)
    })
}
