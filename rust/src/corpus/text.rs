//! Plain text: the whole file is one document, or each blank-line separated paragraph is.

use std::io::{BufRead, BufReader, Read};

use super::{decompress, Document, Emitter, TextUnit};
use crate::error::{Error, Result};

pub(super) fn read<F: FnMut(Document) -> Result<()>>(em: &mut Emitter<'_, F>, unit: TextUnit) -> Result<()> {
    let path = em.path;
    let mut r = BufReader::with_capacity(1 << 16, decompress::open(path)?);
    match unit {
        TextUnit::File => {
            let mut buf = Vec::new();
            r.read_to_end(&mut buf).map_err(|e| Error::io(path, e))?;
            em.emit(buf, None, None, &|| "the file".to_string())?;
            Ok(())
        }
        TextUnit::Paragraph => {
            let mut line = Vec::new();
            let mut para = Vec::new();
            let mut n_para = 0u64;
            loop {
                line.clear();
                let n = r.read_until(b'\n', &mut line).map_err(|e| Error::io(path, e))?;
                let blank = line.iter().all(u8::is_ascii_whitespace);
                if (n == 0 || blank) && !para.is_empty() {
                    while matches!(para.last(), Some(b'\n' | b'\r')) {
                        para.pop();
                    }
                    n_para += 1;
                    let k = n_para;
                    em.emit(std::mem::take(&mut para), None, None, &|| format!("paragraph {k}"))?;
                }
                if n == 0 {
                    return Ok(());
                }
                if !blank {
                    para.extend_from_slice(&line);
                }
            }
        }
    }
}
