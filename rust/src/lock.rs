//! One writer per output: an exclusive lock on the output directory (`<dir>/.dataprep.lock`) or,
//! for a single output file, on a hidden sibling (`.<name>.lock`).
//!
//! The lock is an OS file lock (`flock`), so it is released by the kernel when its holder dies,
//! even by `kill -9`: a lock can never be stuck. The file also holds the holder's host, pid and
//! command, to name it in the error a second writer gets, and to recognise (and report) a lock
//! file left behind by a holder that died: its text is still there while nobody holds the lock.
//! A clean release removes the file. Another process may have opened the file just before it was
//! removed; so after taking the lock, a process checks that the path still names the file it
//! locked (same inode) and starts over if not: two writers can never hold one output.
//!
//! NOTE: `flock` is local to a machine (and unreliable on some network filesystems); two hosts
//! writing one shared directory are told apart by the host name in the message only when the
//! filesystem honours the lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Name of the lock file inside an output directory.
pub const LOCK_FILE: &str = ".dataprep.lock";

/// An exclusive hold on an output; released on drop.
#[derive(Debug)]
pub struct OutputLock {
    file: File,
    path: PathBuf,
    /// What a holder that died without releasing left in the lock file (host, pid, command).
    pub stale: Option<String>,
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

impl OutputLock {
    /// Locks the output directory `dir` (created if missing) for `command`.
    pub fn directory(dir: &Path, command: &str) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Self::acquire(&dir.join(LOCK_FILE), dir, command)
    }

    /// Locks the single output file `file` (its directory must exist) for `command`.
    pub fn file(file: &Path, command: &str) -> Result<Self> {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Self::acquire(&file.with_file_name(format!(".{name}.lock")), file, command)
    }

    fn acquire(path: &Path, what: &Path, command: &str) -> Result<Self> {
        use std::os::unix::fs::MetadataExt;
        loop {
            let mut file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(path)
                .map_err(|e| Error::io(path, e))?;
            let mut holder = String::new();
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    let _ = file.read_to_string(&mut holder);
                    let holder = holder.trim();
                    let holder = if holder.is_empty() { "another process" } else { holder };
                    return Err(Error::input(
                        what,
                        format!("is being written by {holder}; wait for it to finish, or write elsewhere"),
                    ));
                }
                Err(TryLockError::Error(e)) => return Err(Error::io(path, e)),
            }
            // The holder before us may have removed the file after we opened it: then we hold a
            // lock on a name that no longer exists, and must take the new one.
            let ours = file.metadata().map_err(|e| Error::io(path, e))?;
            match std::fs::metadata(path) {
                Ok(now) if now.ino() == ours.ino() && now.dev() == ours.dev() => {}
                _ => continue,
            }
            file.read_to_string(&mut holder).map_err(|e| Error::io(path, e))?;
            let stale = Some(holder.trim().to_string()).filter(|h| !h.is_empty());
            let me = format!("dataprep {command} (pid {} on {})\n", std::process::id(), host());
            file.set_len(0).map_err(|e| Error::io(path, e))?;
            file.seek(SeekFrom::Start(0)).map_err(|e| Error::io(path, e))?;
            file.write_all(me.as_bytes()).and_then(|()| file.sync_all()).map_err(|e| Error::io(path, e))?;
            return Ok(Self { file, path: path.to_path_buf(), stale });
        }
    }

    /// The note a CLI shows when a dead holder's lock was taken over, if any.
    pub fn stale_note(&self) -> Option<String> {
        self.stale
            .as_ref()
            .map(|h| format!("{}: took over the lock of {h}, which ended without releasing it", self.path.display()))
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Removed while still locked (see the module docs); the kernel drops the flock when the
        // file closes. A holder killed before this leaves the file with its text: a stale lock.
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

/// Refuses an output inside an input tree (the run would read its own output) and an input
/// inside the output (a rerun would read what the last run wrote).
pub fn check_disjoint(inputs: &[PathBuf], out: &Path, out_flag: &str) -> Result<()> {
    let out = absolute(out);
    for input in inputs {
        let input = absolute(input);
        if out.starts_with(&input) {
            return Err(Error::Config(format!(
                "{out_flag} {} is inside the input {}: the run would read its own output",
                out.display(),
                input.display()
            )));
        }
        if input.starts_with(&out) {
            return Err(Error::Config(format!(
                "the input {} is inside {out_flag} {}: a rerun would read what the last run wrote",
                input.display(),
                out.display()
            )));
        }
    }
    Ok(())
}

/// `path` made absolute with symlinks resolved as far as it exists (the rest appended).
fn absolute(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = existing.canonicalize() {
            return rest.into_iter().rev().fold(c, |acc, part| acc.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = if parent.as_os_str().is_empty() { PathBuf::from(".") } else { parent.to_path_buf() };
            }
            _ => return std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let a = OutputLock::directory(dir.path(), "tokenize").unwrap();
        assert!(a.stale.is_none());
        let e = OutputLock::directory(dir.path(), "tokenize").unwrap_err().to_string();
        assert!(e.contains("is being written by dataprep tokenize (pid"), "{e}");
        drop(a);
        assert!(!dir.path().join(LOCK_FILE).exists(), "a clean release removes the lock file");
        let b = OutputLock::directory(dir.path(), "tokenize").unwrap();
        assert!(b.stale.is_none(), "a clean release leaves no stale note");
    }

    #[test]
    fn a_dead_holders_lock_is_taken_over_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOCK_FILE), "dataprep tokenize (pid 1 on elsewhere)\n").unwrap();
        let lock = OutputLock::directory(dir.path(), "tokenize").unwrap();
        assert!(lock.stale_note().unwrap().contains("pid 1 on elsewhere"));
    }

    #[test]
    fn outputs_and_inputs_must_not_nest() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("corpus");
        std::fs::create_dir(&input).unwrap();
        let e = check_disjoint(std::slice::from_ref(&input), &input.join("out"), "--out").unwrap_err().to_string();
        assert!(e.contains("is inside the input"), "{e}");
        let e = check_disjoint(&[input.join("a.txt")], &input, "--out").unwrap_err().to_string();
        assert!(e.contains("is inside --out"), "{e}");
        assert!(check_disjoint(&[input], &dir.path().join("corpus-out"), "--out").is_ok());
    }
}
