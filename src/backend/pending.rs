//! D1 when the store fails (design §5): a client record a hook could not make durable —
//! the disk is full or read-only, ctdbd is frozen, dead or restarting — is never
//! forgotten. It is kept here, counted as present by every reclaim decision (end_grace
//! keeps the client; a scan sees it), and retried in the background with backoff until the
//! store takes it. Ganesha cannot be told: add_clid returns void in every supported version,
//! so the client is admitted either way (refusing it would mean expiring it, and it would
//! reconnect at once into the same fault).
//!
//! While a fault lasts, hooks do not wait on the store at all: their records go straight
//! here, so a connecting client is answered at once; the retrier is what probes the store.
//! One CRIT line when a fault starts, one line when it clears (not one per client). The
//! count and the oldest record's age are published for `ganesha-ctdb status`.
//!
//! What remains lost: records still pending when ganesha.nfsd itself dies (they were only
//! in its memory); `MAX_PENDING` bounds memory, and records beyond it are counted as lost
//! and logged.

use crate::store::Store;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

/// Most records kept at once: at a typical ~120 bytes of key and value that is under
/// 10 MiB; with maximal keys (~4.2 KiB tags) under 300 MiB.
pub const MAX_PENDING: usize = 65_536;
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// Records per retry batch (one transaction with the ctdb store).
const BATCH: usize = 1000;

/// What a kept record still needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put(Vec<u8>),
    /// rm_clid: delete unless the record now belongs to another client id (a newer
    /// incarnation, or a taker's reclaim).
    DeleteIfOwner(u64),
}

#[derive(Default)]
struct State {
    /// Key → (what it needs, generation when it was kept).
    ops: BTreeMap<String, (Op, u64)>,
    gen: u64,
    /// When the current fault started (the oldest kept record's age), and why.
    since: Option<(Instant, SystemTime)>,
    error: String,
    lost: u64,
    stored_in_fault: usize,
    retrier: bool,
    stop: bool,
}

/// The published view of what is pending (`pending@<node>` and the run-time file).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PendingStatus {
    pub count: usize,
    /// Unix time the oldest pending record was kept (0: none).
    pub since_unix: u64,
    pub lost: u64,
    pub error: String,
}

impl PendingStatus {
    pub fn encode(&self) -> Vec<u8> {
        // The error text last: it may hold spaces, never a newline, nor a NUL (the ctdb
        // store refuses values with one: `ctdb pfetch` could not return them whole).
        format!(
            "v1 count={} since={} lost={} error={}",
            self.count,
            self.since_unix,
            self.lost,
            self.error.replace(['\n', '\0'], " ")
        )
        .into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Option<PendingStatus> {
        let text = std::str::from_utf8(bytes).ok()?;
        let rest = text.strip_prefix("v1 count=")?;
        let (count, rest) = rest.split_once(" since=")?;
        let (since, rest) = rest.split_once(" lost=")?;
        let (lost, error) = rest.split_once(" error=")?;
        Some(PendingStatus {
            count: count.parse().ok()?,
            since_unix: since.parse().ok()?,
            lost: lost.parse().ok()?,
            error: error.to_string(),
        })
    }
}

pub const PENDING_PREFIX: &str = "pending@";

/// Where the status goes besides the log: a key in the grace store (when it is not the
/// failing store itself) and a file in a run-time directory (tmpfs: still writable when
/// the store's disk is full).
pub struct StatusSinks {
    pub grace_store: Option<Arc<dyn Store>>,
    pub run_file: Option<PathBuf>,
    pub node_id: String,
}

pub struct Pending {
    store: Arc<dyn Store>,
    sinks: StatusSinks,
    state: Mutex<State>,
    wake: Condvar,
    /// Publications in order: an older status never overwrites a newer one.
    publishing: Mutex<()>,
}

/// The run-time directory for status files: GANESHA_CTDB_RUNDIR, else /run/ganesha-ctdb.
pub fn run_dir() -> PathBuf {
    std::env::var_os("GANESHA_CTDB_RUNDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/ganesha-ctdb"))
}

/// The run-time status file of `node`.
pub fn run_file(node: &str) -> PathBuf {
    run_dir().join(format!("pending-{node}"))
}

impl Pending {
    pub fn new(store: Arc<dyn Store>, sinks: StatusSinks) -> Arc<Pending> {
        Arc::new(Pending {
            store,
            sinks,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            publishing: Mutex::new(()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fault is in progress: writes go straight here.
    pub fn active(&self) -> bool {
        !self.lock().ops.is_empty()
    }

    /// Keeps `op` for `key` (replacing what was kept for it: the latest wins) after
    /// `error`; starts the retrier if needed.
    pub fn keep(self: &Arc<Self>, key: &str, op: Op, error: &str) {
        let mut st = self.lock();
        if !st.ops.contains_key(key) && st.ops.len() >= MAX_PENDING {
            st.lost += 1;
            if st.lost == 1 || st.lost.is_power_of_two() {
                log::error!(
                    "store fault: {} records are waiting to be stored already (the limit); \
                     {} record(s) could not be kept and are lost: those clients cannot \
                     reclaim after a restart",
                    MAX_PENDING,
                    st.lost
                );
            }
            return;
        }
        st.gen += 1;
        let gen = st.gen;
        st.ops.insert(key.to_string(), (op, gen));
        if st.since.is_none() {
            st.since = Some((Instant::now(), SystemTime::now()));
            st.error = error.to_string();
            st.stored_in_fault = 0;
            log::error!(
                "store fault: {error}; client records are kept in memory (counted as present \
                 for reclaim) and retried until {} takes them",
                self.store.describe()
            );
        }
        if !st.retrier {
            let me = self.clone();
            match std::thread::Builder::new()
                .name("gctdb-retry".into())
                .spawn(move || me.retry_loop())
            {
                Ok(_) => st.retrier = true,
                Err(e) => log::error!(
                    "store fault: cannot start the retry thread ({e}); the next kept record \
                     tries again"
                ),
            }
        }
        // Published by the retrier: a hook never writes to a store in a fault.
        self.wake.notify_all();
    }

    /// The value kept for `key` when a put is waiting (its client is back: end_grace must
    /// not drop it; add_revoke_fh must build on it).
    pub fn kept_put(&self, key: &str) -> Option<Vec<u8>> {
        match self.lock().ops.get(key) {
            Some((Op::Put(v), _)) => Some(v.clone()),
            _ => None,
        }
    }

    /// What a scan of `prefix` must see on top of the store: kept puts (Some) and kept
    /// deletions (None).
    pub fn overlay(&self, prefix: &str) -> Vec<(String, Option<Vec<u8>>)> {
        self.lock()
            .ops
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, (op, _))| {
                (
                    k.clone(),
                    match op {
                        Op::Put(v) => Some(v.clone()),
                        Op::DeleteIfOwner(_) => None,
                    },
                )
            })
            .collect()
    }

    pub fn status(&self) -> PendingStatus {
        let st = self.lock();
        PendingStatus {
            count: st.ops.len(),
            since_unix: st
                .since
                .and_then(|(_, t)| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs()),
            lost: st.lost,
            error: if st.ops.is_empty() {
                String::new()
            } else {
                st.error.clone()
            },
        }
    }

    /// Ends the retrier (the backend shuts down); what is still kept is lost.
    pub fn stop(&self) {
        let mut st = self.lock();
        st.stop = true;
        if !st.ops.is_empty() {
            log::error!(
                "shutting down with {} client record(s) not yet stored: those clients cannot \
                 reclaim after this restart",
                st.ops.len()
            );
        }
        self.wake.notify_all();
    }

    /// Writes the status where `status` reads it: the run-time file every time, the grace
    /// store (which may be failing too) when `to_store`.
    fn publish(&self, to_store: bool) {
        let _one_at_a_time = self.publishing.lock().unwrap_or_else(|e| e.into_inner());
        let status = self.status();
        let bytes = status.encode();
        if let Some(path) = &self.sinks.run_file {
            // Whole or not at all: hooks and the retrier publish concurrently, and status
            // reads meanwhile.
            let temp = path.with_extension(format!("tmp{}", std::process::id()));
            let written = path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|_| std::fs::write(&temp, &bytes))
                .and_then(|_| std::fs::rename(&temp, path));
            if let Err(e) = written {
                log::debug!("cannot write {}: {e}", path.display());
            }
        }
        if let (true, Some(g)) = (to_store, &self.sinks.grace_store) {
            let key = format!("{PENDING_PREFIX}{}", self.sinks.node_id);
            if let Err(e) = g.put(&key, &bytes) {
                log::debug!("cannot publish {key}: {e}");
            }
        }
    }

    fn retry_loop(self: Arc<Self>) {
        let mut pause = RETRY_FIRST;
        let mut stored_at: Option<Instant> = None;
        loop {
            let snapshot: Vec<(String, Op, u64)> = {
                let mut st = self.lock();
                while st.ops.is_empty() && !st.stop {
                    st = self.wake.wait(st).unwrap_or_else(|e| e.into_inner());
                }
                if st.stop {
                    st.retrier = false;
                    return;
                }
                st.ops
                    .iter()
                    .map(|(k, (op, g))| (k.clone(), op.clone(), *g))
                    .collect()
            };
            // Every round to the local file; to the grace store every few seconds (it may be
            // in the same fault and make each publication wait).
            let to_store = stored_at.map_or(true, |t| t.elapsed() > Duration::from_secs(5));
            self.publish(to_store);
            if to_store {
                stored_at = Some(Instant::now());
            }
            let (done, failure) = self.apply(&snapshot);
            {
                let mut st = self.lock();
                for (key, gen) in &done {
                    if st.ops.get(key).is_some_and(|(_, g)| g == gen) {
                        st.ops.remove(key);
                    }
                }
                st.stored_in_fault += done.len();
                if st.ops.is_empty() {
                    if let Some((since, _)) = st.since.take() {
                        log::error!(
                            "store fault cleared: {} kept client record(s) stored, {:.1} s after \
                             the fault began",
                            st.stored_in_fault,
                            since.elapsed().as_secs_f64()
                        );
                    }
                    pause = RETRY_FIRST;
                } else if let Some(e) = failure {
                    log::debug!("store fault: retry failed: {e}");
                    st.error = e;
                }
            }
            if !self.active() {
                self.publish(true); // cleared: say so everywhere at once
                stored_at = None;
                continue;
            }
            if done.is_empty() {
                let st = self.lock();
                let _ = self.wake.wait_timeout(st, pause);
                pause = (pause * 2).min(RETRY_MAX);
            } else {
                pause = RETRY_FIRST;
            }
        }
    }

    /// Tries the snapshot; returns what was stored (key, generation) and the last error.
    fn apply(&self, snapshot: &[(String, Op, u64)]) -> (Vec<(String, u64)>, Option<String>) {
        let mut done = Vec::new();
        let mut failure = None;
        let puts: Vec<(&String, &Vec<u8>, u64)> = snapshot
            .iter()
            .filter_map(|(k, op, g)| match op {
                Op::Put(v) => Some((k, v, *g)),
                Op::DeleteIfOwner(_) => None,
            })
            .collect();
        for chunk in puts.chunks(BATCH) {
            let writes: Vec<(String, Vec<u8>)> = chunk
                .iter()
                .map(|(k, v, _)| ((*k).clone(), (*v).clone()))
                .collect();
            match self.store.put_many(&writes) {
                Ok(()) => done.extend(chunk.iter().map(|(k, _, g)| ((*k).clone(), *g))),
                Err(e) => {
                    failure = Some(e.to_string());
                    break;
                }
            }
        }
        if failure.is_none() {
            for (key, op, gen) in snapshot {
                let Op::DeleteIfOwner(clientid) = op else {
                    continue;
                };
                let ours = |bytes: &[u8]| {
                    crate::records::ClientRecord::decode(bytes)
                        .map_or(true, |rec| rec.clientid == *clientid)
                };
                match self.store.delete_if(key, &ours) {
                    Ok(_) => done.push((key.clone(), *gen)),
                    Err(e) => {
                        failure = Some(e.to_string());
                        break;
                    }
                }
            }
        }
        (done, failure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::store::{Scan, StoreError};
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A store that fails every write while `broken`.
    struct Flaky {
        inner: MemoryStore,
        broken: AtomicBool,
    }

    impl Store for Flaky {
        fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
            if self.broken.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable("No space left on device".into()));
            }
            self.inner.put(key, value)
        }
        fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get(key)
        }
        fn delete(&self, key: &str) -> Result<bool, StoreError> {
            if self.broken.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable("read-only file system".into()));
            }
            self.inner.delete(key)
        }
        fn scan(&self, prefix: &str) -> Result<Scan, StoreError> {
            self.inner.scan(prefix)
        }
        fn describe(&self) -> String {
            "flaky".into()
        }
    }

    #[test]
    fn kept_records_are_present_then_stored_when_the_store_comes_back() {
        let store = Arc::new(Flaky {
            inner: MemoryStore::new(),
            broken: AtomicBool::new(true),
        });
        let dir = tempfile::tempdir().unwrap();
        let p = Pending::new(
            store.clone(),
            StatusSinks {
                grace_store: None,
                run_file: Some(dir.path().join("pending-n1")),
                node_id: "n1".into(),
            },
        );
        store
            .inner
            .put("v4@local@gone", b"v1 clientid=9 stamp=x")
            .unwrap();
        p.keep(
            "v4@local@a",
            Op::Put(b"A".to_vec()),
            "No space left on device",
        );
        p.keep(
            "v4@local@b",
            Op::Put(b"B".to_vec()),
            "No space left on device",
        );
        p.keep(
            "v4@local@gone",
            Op::DeleteIfOwner(9),
            "read-only file system",
        );
        assert!(p.active() && p.kept_put("v4@local@a").is_some());
        assert_eq!(p.kept_put("v4@local@gone"), None);
        assert_eq!(
            p.overlay("v4@local@"),
            vec![
                ("v4@local@a".into(), Some(b"A".to_vec())),
                ("v4@local@b".into(), Some(b"B".to_vec())),
                ("v4@local@gone".into(), None)
            ]
        );
        // The retrier publishes (hooks never write status themselves).
        let shown = || {
            std::fs::read(dir.path().join("pending-n1"))
                .ok()
                .and_then(|b| PendingStatus::decode(&b))
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while shown().map_or(true, |s| s.count != 3) {
            assert!(Instant::now() < deadline, "never published: {:?}", shown());
            std::thread::sleep(Duration::from_millis(10));
        }
        let s = shown().unwrap();
        assert!(s.since_unix > 0 && s.error.contains("No space"), "{s:?}");
        // The latest op for a key wins.
        p.keep("v4@local@b", Op::Put(b"B2".to_vec()), "x");
        std::thread::sleep(Duration::from_millis(300));
        assert!(p.active(), "still broken: nothing stored, nothing dropped");
        store.broken.store(false, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(10);
        while p.active() {
            assert!(Instant::now() < deadline, "never stored");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(store.get("v4@local@a").unwrap().as_deref(), Some(&b"A"[..]));
        assert_eq!(
            store.get("v4@local@b").unwrap().as_deref(),
            Some(&b"B2"[..])
        );
        assert_eq!(store.get("v4@local@gone").unwrap(), None);
        let deadline = Instant::now() + Duration::from_secs(5);
        while shown().map_or(true, |s| (s.count, s.since_unix) != (0, 0)) {
            assert!(
                Instant::now() < deadline,
                "cleared, not published: {:?}",
                shown()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        p.stop();
    }

    #[test]
    fn memory_is_bounded() {
        let store = Arc::new(Flaky {
            inner: MemoryStore::new(),
            broken: AtomicBool::new(true),
        });
        let p = Pending::new(
            store,
            StatusSinks {
                grace_store: None,
                run_file: None,
                node_id: "n".into(),
            },
        );
        for i in 0..MAX_PENDING + 5 {
            p.keep(&format!("k{i}"), Op::Put(vec![1]), "full");
        }
        let s = p.status();
        assert_eq!((s.count, s.lost), (MAX_PENDING, 5));
        p.stop();
    }

    #[test]
    fn status_round_trip() {
        let s = PendingStatus {
            count: 3,
            since_unix: 1_700_000_000,
            lost: 1,
            error: "write of key \"a b\": No space left on device".into(),
        };
        assert_eq!(PendingStatus::decode(&s.encode()), Some(s));
        assert_eq!(
            PendingStatus::decode(b"v1 count=x since=1 lost=0 error="),
            None
        );
    }
}

/// Property-based fuzzing of `pending@<node>`'s decoder (issue 15; docs/fuzzing.md): round
/// trips, every truncation, arbitrary bytes. 512 cases per property; PROPTEST_CASES=N for
/// a long run.
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::fuzzing::config;
    use proptest::prelude::*;

    fn status() -> impl Strategy<Value = PendingStatus> {
        (
            any::<usize>(),
            any::<u64>(),
            any::<u64>(),
            "(\\PC|[\n\0 ]){0,60}",
        )
            .prop_map(|(count, since_unix, lost, error)| PendingStatus {
                count,
                since_unix,
                lost,
                error,
            })
    }

    proptest! {
        #![proptest_config(config("pending"))]

        /// (d) The status decodes to what was encoded, the error text with its newlines and
        /// NULs as spaces (the error text may itself hold " lost=" or " error=").
        #[test]
        fn pending_status_round_trips(s in status(), tricky in prop::sample::select(vec!["", " lost=1", " error=x", " since=2"])) {
            let s = PendingStatus { error: format!("{}{tricky}", s.error), ..s };
            let bytes = s.encode();
            prop_assert!(!bytes.contains(&0) && !bytes.contains(&b'\n'));
            let want = PendingStatus { error: s.error.replace(['\n', '\0'], " "), ..s };
            prop_assert_eq!(PendingStatus::decode(&bytes), Some(want));
        }

        /// (b)(a) Prefixes and arbitrary bytes: nothing, or a status that encodes back to
        /// the input (every number whole: a prefix cut inside one misses the next field).
        #[test]
        fn pending_status_prefixes_and_garbage(s in status(), garbage in prop::collection::vec(any::<u8>(), 0..80)) {
            let bytes = s.encode();
            for cut in 0..bytes.len() {
                if let Some(p) = PendingStatus::decode(&bytes[..cut]) {
                    prop_assert_eq!(p.encode(), bytes[..cut].to_vec(), "cut {}", cut);
                }
            }
            if let Some(p) = PendingStatus::decode(&garbage) {
                let want = PendingStatus { error: p.error.replace(['\n', '\0'], " "), ..p.clone() };
                prop_assert_eq!(PendingStatus::decode(&p.encode()), Some(want));
            }
        }
    }
}
