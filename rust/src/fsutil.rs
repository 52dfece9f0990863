//! Atomic file output: every file the tool writes goes to a temporary name in the same directory
//! and is renamed into place only when complete, so a crash or an error never leaves a
//! half-written file under the final name, and an existing file is replaced only by a whole one.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The temporary sibling used while `path` is being written.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// A writer that counts and hashes (SHA-256) what goes through it: files whose checksum is
/// recorded as they are written (shards, work units), with no second read.
pub struct HashingWriter<W: Write> {
    pub inner: W,
    hash: sha2::Sha256,
    pub bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        use sha2::Digest;
        Self { inner, hash: sha2::Sha256::new(), bytes: 0 }
    }

    /// The inner writer, the byte count and the SHA-256 (lowercase hex).
    pub fn finish(self) -> (W, u64, String) {
        use sha2::Digest;
        (self.inner, self.bytes, format!("{:x}", self.hash.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// SHA-256 of a file's bytes, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::Digest;
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| Error::io(path, e))?;
    Ok(format!("{:x}", h.finalize()))
}

/// Fails early (before any long job) when `path` cannot be created: missing or read-only directory.
pub fn check_writable(path: &Path) -> Result<()> {
    let tmp = temp_path(path);
    File::create(&tmp).map_err(|e| Error::io(path, e))?;
    fs::remove_file(&tmp).map_err(|e| Error::io(&tmp, e))
}

/// Writes a file atomically: `fill` writes into a buffered temp file, which is synced and renamed
/// over `path`. On any error the temp file is removed and `path` is left untouched.
pub fn write_atomic(path: &Path, fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut w = BufWriter::new(File::create(&tmp)?);
        fill(&mut w)?;
        let file = w.into_inner().map_err(std::io::IntoInnerError::into_error)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// Writes several files as one set: after a crash at any point, either every file of the set is
/// the new one or the next [`write_set`] (or [`recover_set`]) on the same `record` makes it so.
///
/// Every file is first written whole under its temporary name; then `record` (written
/// atomically) lists the renames; then the renames are done and `record` is removed. A run killed
/// before `record` exists leaves only temporary files (removed by the next run); one killed after
/// leaves a record that the next run rolls forward. Renaming one file is atomic; renaming several
/// is not, which is why the record exists.
pub fn write_set(record: &Path, files: &[(&Path, &[u8])]) -> Result<()> {
    recover_set(record)?;
    for (path, _) in files {
        remove_temps(path)?;
    }
    let mut renames = Vec::new();
    for (path, bytes) in files {
        let tmp = temp_path(path);
        let written = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            for (t, _) in &renames {
                let _ = fs::remove_file(t);
            }
            return Err(Error::io(path, e));
        }
        renames.push((tmp, path.to_path_buf()));
    }
    commit_renames(record, &renames)
}

/// Renames complete temporary files over their final names as one set: `record` lists the
/// renames first, so an interruption is rolled forward by [`recover_set`] (see [`write_set`]).
pub fn commit_renames(record: &Path, renames: &[(PathBuf, PathBuf)]) -> Result<()> {
    let list: Vec<[String; 2]> =
        renames.iter().map(|(t, p)| [t.display().to_string(), p.display().to_string()]).collect();
    write_atomic(record, |w| serde_json::to_writer(&mut *w, &list).map_err(std::io::Error::other))?;
    recover_set(record)
}

/// Finishes a set of renames that [`write_set`] recorded in `record` and was interrupted in.
pub fn recover_set(record: &Path) -> Result<()> {
    let text = match fs::read(record) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(record, e)),
    };
    let list: Vec<[PathBuf; 2]> =
        serde_json::from_slice(&text).map_err(|e| Error::input(record, format!("unreadable set record: {e}")))?;
    for [tmp, path] in &list {
        match fs::rename(tmp, path) {
            Ok(()) => {}
            // Renamed before the interruption.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && path.exists() => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    if let Some(dir) = record.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(dir, e))?;
    }
    fs::remove_file(record).map_err(|e| Error::io(record, e))
}

/// Removes what an interrupted writer of `path` left: its temporary files (`.<name>.tmp-<pid>`).
pub fn remove_temps(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let prefix = format!(".{name}.tmp-");
    let Ok(entries) = fs::read_dir(dir) else { return Ok(()) };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
        }
    }
    Ok(())
}

/// Whether process `pid` may still be running. Without `/proc` (not Linux) the answer is always
/// yes: a sweep must never remove what a live run is writing.
pub fn pid_alive(pid: u32) -> bool {
    !Path::new("/proc/self").exists() || Path::new("/proc").join(pid.to_string()).exists()
}

/// The pid in a temporary file name `.<name>.tmp-<pid>` ([`temp_path`]).
fn temp_pid(name: &str) -> Option<u32> {
    let (_, pid) = name.strip_prefix('.')?.rsplit_once(".tmp-")?;
    pid.parse().ok()
}

/// Removes, under `dir` and its subdirectories, the temporary files (`.<name>.tmp-<pid>`) of
/// writers that are no longer running: what a killed run left. A file of a live process (another
/// run, or this one) is left alone.
pub fn remove_orphan_temps(dir: &Path) -> Result<()> {
    let Ok(entries) = fs::read_dir(dir) else { return Ok(()) };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            remove_orphan_temps(&path)?;
        } else if temp_pid(&entry.file_name().to_string_lossy()).is_some_and(|pid| !pid_alive(pid)) {
            fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.json");
        fs::write(&p, b"old").unwrap();
        let err = write_atomic(&p, |w| {
            w.write_all(b"partial")?;
            Err(std::io::Error::other("boom"))
        });
        assert!(err.is_err());
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn an_interrupted_set_is_rolled_forward() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, record) = (dir.path().join("a"), dir.path().join("b"), dir.path().join(".a.set"));
        write_set(&record, &[(&a, b"a1"), (&b, b"b1")]).unwrap();
        assert!(!record.exists());
        // Killed after the record and the first rename: the files are from two runs...
        let (ta, tb) = (dir.path().join(".a.tmp-1"), dir.path().join(".b.tmp-1"));
        fs::write(&tb, b"b2").unwrap();
        fs::write(&a, b"a2").unwrap();
        let list = serde_json::json!([[ta, a], [tb, b]]);
        fs::write(&record, list.to_string()).unwrap();
        // ...until the next writer (or reader) finishes the set.
        recover_set(&record).unwrap();
        assert_eq!((fs::read(&a).unwrap(), fs::read(&b).unwrap()), (b"a2".to_vec(), b"b2".to_vec()));
        assert!(!record.exists());
        // Temporary files of a run killed before its record are removed by the next one.
        fs::write(dir.path().join(".a.tmp-99"), b"junk").unwrap();
        write_set(&record, &[(&a, b"a3"), (&b, b"b3")]).unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn orphan_temps_are_removed_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        let dead = dir.path().join("sub/.a.jsonl.tmp-4000000000");
        let live = temp_path(&dir.path().join("b.jsonl"));
        let other = dir.path().join("c.tmp-1");
        for p in [&dead, &live, &other] {
            fs::write(p, b"x").unwrap();
        }
        remove_orphan_temps(dir.path()).unwrap();
        assert!(!dead.exists() && live.exists() && other.exists());
    }

    #[test]
    fn missing_directory_is_reported() {
        let e = check_writable(Path::new("/nonexistent-dir/x.json")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent-dir/x.json"));
    }
}
