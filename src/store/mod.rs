//! Where recovery state lives. Keys are the strings of design §4 (`v4@<ip>@<tag>`,
//! `grace@<node>`, ...); values are bytes. Every write is durable when the call returns (D1).
//! A value that cannot be read back is skipped and logged by the caller, never fatal.

pub mod ctdb;
pub mod dir;
pub mod memory;

use std::fmt;
use std::path::PathBuf;

#[derive(Debug)]
pub enum StoreError {
    /// The store's location is unusable; the message says what to do.
    Unavailable(String),
    /// An operation on one key failed.
    Io {
        op: &'static str,
        key: String,
        path: Option<PathBuf>,
        source: std::io::Error,
    },
    /// The key cannot be stored (contains a newline or NUL).
    BadKey(String),
    /// This store cannot keep the value under `key` as given; `why` says what is wrong.
    BadValue { key: String, why: &'static str },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable(msg) => f.write_str(msg),
            StoreError::Io {
                op,
                key,
                path: Some(path),
                source,
            } => write!(f, "{op} of key {key:?} at {}: {source}", path.display()),
            StoreError::Io {
                op, key, source, ..
            } => write!(f, "{op} of key {key:?}: {source}"),
            StoreError::BadKey(key) => {
                write!(
                    f,
                    "key {key:?} cannot be stored: it contains a newline or NUL"
                )
            }
            StoreError::BadValue { key, why } => {
                write!(f, "the value of key {key:?} cannot be stored: {why}")
            }
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// One entry of a scan that could not be read; the scan goes on without it.
#[derive(Debug)]
pub struct SkippedEntry {
    pub location: String,
    pub reason: String,
}

pub struct Scan {
    pub entries: Vec<(String, Vec<u8>)>,
    pub skipped: Vec<SkippedEntry>,
}

pub trait Store: Send + Sync {
    /// Stores `value` under `key`, durably, replacing any previous value.
    fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    /// Stores several records; with a store that has transactions, in one.
    fn put_many(&self, writes: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        writes.iter().try_for_each(|(k, v)| self.put(k, v))
    }
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Removes `key` durably; `Ok(false)` when it was not there.
    fn delete(&self, key: &str) -> Result<bool, StoreError>;
    /// Removes `key` if its value is `doomed`; `Ok(false)` when absent or kept. Not atomic:
    /// it narrows, not closes, the window in which another writer replaces the value.
    fn delete_if(&self, key: &str, doomed: &dyn Fn(&[u8]) -> bool) -> Result<bool, StoreError> {
        match self.get(key)? {
            Some(v) if doomed(&v) => self.delete(key),
            _ => Ok(false),
        }
    }
    /// Every entry whose key starts with `prefix`, in key order.
    fn scan(&self, prefix: &str) -> Result<Scan, StoreError>;
    /// For log lines and `ganesha-ctdb status`: what and where this store is.
    fn describe(&self) -> String;
}

pub(crate) fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() || key.bytes().any(|b| b == b'\n' || b == 0) {
        return Err(StoreError::BadKey(key.to_string()));
    }
    Ok(())
}
