//! The one error type of the core. Every variant that concerns a file names it, so that the CLI
//! can print a single line a user can act on.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system error on a named file (missing, unreadable, not writable).
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// The file could be read but its content is not what the format requires.
    #[error("{}: {msg}", path.display())]
    Input { path: PathBuf, msg: String },
    /// Options that cannot work together or are out of range.
    #[error("{0}")]
    Config(String),
    /// The job was cancelled (Ctrl-C) through its [`crate::progress::Progress`] handle.
    #[error("cancelled")]
    Cancelled,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    pub fn input(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Input { path: path.into(), msg: msg.into() }
    }

    /// The same error naming `name` where it named `local` (the staged copy of a remote file).
    #[must_use]
    pub fn named(self, local: &std::path::Path, name: &str) -> Self {
        match self {
            Error::Io { path, source } if path == local => Error::Io { path: name.into(), source },
            Error::Input { path, msg } if path == local => Error::Input { path: name.into(), msg },
            other => other,
        }
    }
}
