//! Progress and cancellation shared between a long-running job (on worker threads, no GIL) and
//! whoever renders it (Python's rich progress bar polls [`Progress::snapshot`]).
//!
//! Everything is atomics so the hot loops only pay a relaxed add every batch, never a lock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::error::{Error, Result};

#[derive(Debug, Default)]
pub struct Progress {
    phase: Mutex<String>,
    /// Units done / total in the current phase (bytes while reading, merges while merging).
    done: AtomicU64,
    total: AtomicU64,
    /// Documents read so far (all phases).
    docs: AtomicU64,
    /// Tokens produced so far (encoding stages).
    tokens: AtomicU64,
    cancel: AtomicBool,
    /// Things the user should know that are not errors (a stale lock taken over, ...).
    notes: Mutex<Vec<String>>,
}

/// A consistent-enough copy of the counters for display.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub phase: String,
    pub done: u64,
    pub total: u64,
    pub docs: u64,
    pub tokens: u64,
}

impl Progress {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a note for whoever renders the job (shown after it).
    pub fn note(&self, text: impl Into<String>) {
        self.notes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(text.into());
    }

    /// The notes recorded so far.
    pub fn notes(&self) -> Vec<String> {
        self.notes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Starts a new phase with `total` units (0 when unknown).
    pub fn phase(&self, name: &str, total: u64) {
        *self.phase.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = name.to_string();
        self.done.store(0, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
    }

    pub fn add(&self, units: u64) {
        self.done.fetch_add(units, Ordering::Relaxed);
    }

    pub fn set_done(&self, units: u64) {
        self.done.store(units, Ordering::Relaxed);
    }

    pub fn add_docs(&self, docs: u64) {
        self.docs.fetch_add(docs, Ordering::Relaxed);
    }

    pub fn add_tokens(&self, tokens: u64) {
        self.tokens.fetch_add(tokens, Ordering::Relaxed);
    }

    /// Asks the job to stop at its next check; it then returns [`Error::Cancelled`].
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// Returns `Err(Cancelled)` once [`Progress::cancel`] was called. Jobs call it once per batch.
    pub fn check(&self) -> Result<()> {
        if self.cancel.load(Ordering::Relaxed) {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            phase: self.phase.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone(),
            done: self.done.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
            docs: self.docs.load(Ordering::Relaxed),
            tokens: self.tokens.load(Ordering::Relaxed),
        }
    }
}
