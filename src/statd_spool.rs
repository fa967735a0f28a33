//! rpc.statd's `add-client`, kept on local disk until the replicated store has it.
//!
//! Why: Ganesha (4.3 nlm4_Lock) takes its grace reference, then asks rpc.statd to monitor
//! a new host (SM_MON), and statd runs the ha-callout synchronously inside that call. While
//! the callout waits on the store, that NLM LOCK holds the reference, and Ganesha refuses
//! to enter grace (`nfs_start_grace` → -EAGAIN, "grace status 0x6"). During a CTDB
//! recovery the persistent databases are frozen for seconds; the torture run (seed 7,
//! steps 56, 58, 92) saw survivors enter grace 2–4 s late that way, after the dead node's
//! locks were free, and a challenger's lock granted in between. So the callout writes the
//! record to a local spool first (fsync'd), gives the replicated store a short time
//! ([`CALLOUT_WAIT`]), and otherwise returns and lets a detached flusher finish the write
//! as soon as ctdbd takes it; `monitor` flushes whatever a flusher left behind.
//!
//! What it costs: a record that is only in the spool is lost if this node dies before the
//! flush (a second fault inside the recovery that delayed it): its host then gets no
//! SM_NOTIFY from the taker. That window is the recovery's length, and only for hosts
//! first monitored during it; holding Ganesha out of grace instead lets a conflicting lock
//! through on every failover with an NLM host arriving.
//!
//! Entries are whole writes (key and value), so any flusher on any node writes the same
//! records, and writing one twice is harmless. An entry older than [`SPOOL_MAX_AGE`] is
//! dropped with a log line: it belongs to a cluster state long gone.

use crate::store::dir::DirStore;
use crate::store::{Store, StoreError};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long the callout lets the store take the record before it returns with the record
/// spooled (a healthy `ctdb ptrans` takes ~15 ms; a CTDB recovery seconds).
pub const CALLOUT_WAIT: Duration = Duration::from_millis(300);
/// How long a detached flusher keeps trying before it leaves the entry to `monitor`.
pub const FLUSHER_LIMIT: Duration = Duration::from_secs(120);
/// Entries older than this are dropped, not written.
pub const SPOOL_MAX_AGE: Duration = Duration::from_secs(3600);

const ENTRY_PREFIX: &str = "spool@";

/// The spool directory under the store directory `Dir` (which the package creates).
pub fn spool_dir(dir: &Path) -> PathBuf {
    dir.join("statd-spool")
}

pub struct Spool {
    dir: DirStore,
}

/// What a flush did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Flushed {
    pub written: usize,
    pub left: usize,
    pub dropped: usize,
}

impl Spool {
    /// Opens the spool, creating its directory (not the store directory above it).
    pub fn open(dir: &Path) -> Result<Spool, StoreError> {
        if let Err(e) = std::fs::create_dir(dir) {
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(StoreError::Unavailable(format!(
                    "cannot create the statd spool {}: {e}",
                    dir.display()
                )));
            }
        }
        Ok(Spool {
            dir: DirStore::open(dir)?,
        })
    }

    /// Keeps `writes` durably; returns the entry's name.
    pub fn add(&self, writes: &[(String, Vec<u8>)]) -> Result<String, StoreError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let name = format!(
            "{ENTRY_PREFIX}{:020}-{}",
            now.as_nanos(),
            std::process::id()
        );
        self.dir.put(&name, &encode(writes))?;
        Ok(name)
    }

    /// Drops an entry the store has.
    pub fn remove(&self, name: &str) -> Result<(), StoreError> {
        self.dir.delete(name).map(|_| ())
    }

    /// Writes every entry to `store`, oldest first, one transaction each; an entry the
    /// store took is removed, one it did not is left for the next flush. Bad or expired
    /// entries are dropped and logged.
    pub fn flush(&self, store: &dyn Store, now: SystemTime) -> Result<Flushed, StoreError> {
        let scan = self.dir.scan(ENTRY_PREFIX)?;
        for s in scan.skipped {
            log::warn!("statd spool: skipping {}: {}", s.location, s.reason);
        }
        let mut out = Flushed::default();
        for (name, value) in scan.entries {
            let expired = age_of(&name, now).map_or(true, |age| age > SPOOL_MAX_AGE);
            let writes = match decode(&value) {
                Some(w) if !expired => w,
                Some(_) => {
                    log::warn!("statd spool: dropping {name}: older than {SPOOL_MAX_AGE:?}");
                    self.remove(&name)?;
                    out.dropped += 1;
                    continue;
                }
                None => {
                    log::warn!("statd spool: dropping {name}: it does not decode");
                    self.remove(&name)?;
                    out.dropped += 1;
                    continue;
                }
            };
            match store.put_many(&writes) {
                Ok(()) => {
                    self.remove(&name)?;
                    out.written += 1;
                }
                Err(e) => {
                    log::info!("statd spool: {name} not written yet: {e}");
                    out.left += 1;
                }
            }
        }
        Ok(out)
    }

    /// Whether nothing is spooled (an unreadable spool counts as not empty).
    pub fn is_empty(&self) -> bool {
        self.dir
            .scan(ENTRY_PREFIX)
            .is_ok_and(|s| s.entries.is_empty() && s.skipped.is_empty())
    }

    /// Whether `name` is still spooled.
    pub fn holds(&self, name: &str) -> bool {
        matches!(self.dir.get(name), Ok(Some(_)))
    }
}

fn age_of(name: &str, now: SystemTime) -> Option<Duration> {
    let nanos: u128 = name
        .strip_prefix(ENTRY_PREFIX)?
        .split('-')
        .next()?
        .parse()
        .ok()?;
    let at = UNIX_EPOCH.checked_add(Duration::from_nanos(u64::try_from(nanos).ok()?))?;
    Some(now.duration_since(at).unwrap_or_default())
}

/// `<key>\n<hex value>\n` per write (keys hold no newline: check_key).
fn encode(writes: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = String::new();
    for (k, v) in writes {
        out.push_str(k);
        out.push('\n');
        for b in v {
            out.push_str(&format!("{b:02x}"));
        }
        out.push('\n');
    }
    out.into_bytes()
}

fn decode(bytes: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() || lines.len() % 2 != 0 {
        return None;
    }
    lines
        .chunks(2)
        .map(|kv| {
            let (k, hex) = (kv[0], kv[1]);
            if k.is_empty() || hex.len() % 2 != 0 {
                return None;
            }
            let v = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect::<Option<Vec<u8>>>()?;
            Some((k.to_string(), v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    struct Refusing;
    impl Store for Refusing {
        fn put(&self, key: &str, _: &[u8]) -> Result<(), StoreError> {
            Err(StoreError::Unavailable(format!("frozen: {key}")))
        }
        fn get(&self, _: &str) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(None)
        }
        fn delete(&self, _: &str) -> Result<bool, StoreError> {
            Ok(false)
        }
        fn scan(&self, _: &str) -> Result<crate::store::Scan, StoreError> {
            Err(StoreError::Unavailable("frozen".into()))
        }
        fn describe(&self) -> String {
            "refusing".into()
        }
    }

    fn writes() -> Vec<(String, Vec<u8>)> {
        vec![
            (
                "statd-state@10.0.0.1@host-a".into(),
                b"v1 monitored=1".to_vec(),
            ),
            (
                "statd-state@10.0.0.2@host-a".into(),
                b"v1 monitored=1".to_vec(),
            ),
        ]
    }

    #[test]
    fn an_entry_stays_until_the_store_takes_it() {
        let d = tempfile::tempdir().unwrap();
        let spool = Spool::open(&spool_dir(d.path())).unwrap();
        let name = spool.add(&writes()).unwrap();
        let now = SystemTime::now();
        let f = spool.flush(&Refusing, now).unwrap();
        assert_eq!(
            f,
            Flushed {
                written: 0,
                left: 1,
                dropped: 0
            }
        );
        assert!(spool.holds(&name));
        let store = MemoryStore::default();
        let f = spool.flush(&store, now).unwrap();
        assert_eq!(
            f,
            Flushed {
                written: 1,
                left: 0,
                dropped: 0
            }
        );
        assert!(!spool.holds(&name));
        for (k, v) in writes() {
            assert_eq!(store.get(&k).unwrap(), Some(v), "{k}");
        }
    }

    #[test]
    fn expired_and_garbled_entries_are_dropped_not_written() {
        let d = tempfile::tempdir().unwrap();
        let spool = Spool::open(&spool_dir(d.path())).unwrap();
        spool.add(&writes()).unwrap();
        spool
            .dir
            .put("spool@00000000000000000001-1", b"odd\n")
            .unwrap();
        let store = MemoryStore::default();
        let later = SystemTime::now() + SPOOL_MAX_AGE + Duration::from_secs(1);
        let f = spool.flush(&store, later).unwrap();
        assert_eq!(
            f,
            Flushed {
                written: 0,
                left: 0,
                dropped: 2
            }
        );
        assert!(store.scan("").unwrap().entries.is_empty());
    }

    #[test]
    fn values_round_trip_through_the_entry_encoding() {
        let w = vec![("k@1".to_string(), vec![0u8, 10, 255, b'\n'])];
        assert_eq!(decode(&encode(&w)), Some(w));
        assert_eq!(decode(b"k\nzz\n"), None);
        assert_eq!(decode(b"k\n"), None);
    }

    #[test]
    fn a_missing_store_directory_is_an_error_that_names_it() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("no/such");
        let e = Spool::open(&spool_dir(&missing)).err().unwrap().to_string();
        assert!(e.contains("no/such/statd-spool"), "{e}");
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;

    proptest::proptest! {
        #![proptest_config(crate::fuzzing::config("statd_spool"))]

        /// A spool file is read back from disk: any bytes decode to writes or to nothing,
        /// never a panic; what was encoded comes back.
        #[test]
        fn entries_decode_any_bytes_and_round_trip(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
            writes in proptest::collection::vec(
                ("[a-z@.:0-9-]{1,40}", proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)),
                1..5,
            ),
        ) {
            let _ = decode(&bytes);
            proptest::prop_assert_eq!(decode(&encode(&writes)), Some(writes));
        }
    }
}
