//! The `ctdb` store: one CTDB persistent database, replicated by ctdbd to every node.
//! Writes use group commit (D1 at a fraction of a transaction per write): a writer queues
//! its record and waits; a committer thread of the store's own takes everything queued into
//! one transaction and publishes each writer's result. A writer waits at most `write_limit`
//! (a frozen ctdbd must not hold Ganesha's hooks): past it the write is reported failed to
//! the caller (who keeps the record and retries, src/backend/pending.rs) and taken out of
//! the queue unless its transaction already started (then it may still commit). Writes
//! given up on never pile up behind a frozen ctdbd. A panic in the commit fails that batch
//! only; the committer carries on.

use super::{check_key, Scan, SkippedEntry, Store, StoreError};
use crate::ctdb::CtdbApi;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

type Write = (Vec<u8>, Option<Vec<u8>>);

/// How long a writer waits for the transaction carrying its record: a little more than one
/// ctdb tool run on a healthy cluster takes at its slowest, well under its 5 s limit.
pub const DEFAULT_WRITE_LIMIT: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Queue {
    pending: Vec<(u64, Write)>,
    next_ticket: u64,
    results: HashMap<u64, Result<(), String>>,
    /// Writers that stopped waiting: their results are not kept.
    abandoned: HashSet<u64>,
    stop: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the committer: something was queued, or the store is being dropped.
    work: Condvar,
    /// Wakes writers: a transaction finished.
    done: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct CtdbStore {
    api: Arc<dyn CtdbApi>,
    db: String,
    shared: Arc<Shared>,
    write_limit: Duration,
}

impl CtdbStore {
    /// Attaches `db` (creating it cluster-wide if missing) and starts its committer.
    pub fn open(api: Box<dyn CtdbApi>, db: &str) -> Result<CtdbStore, StoreError> {
        let api: Arc<dyn CtdbApi> = Arc::from(api);
        api.attach_persistent(db).map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot attach CTDB persistent database {db} via {}: {e}; is ctdbd running \
                 and healthy on this node (`ctdb status`)?",
                api.describe()
            ))
        })?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            done: Condvar::new(),
        });
        let (committer_shared, committer_api, name) = (shared.clone(), api.clone(), db.to_string());
        std::thread::Builder::new()
            .name("gctdb-commit".into())
            .spawn(move || commit_loop(&committer_shared, committer_api.as_ref(), &name))
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot start the commit thread for {db}: {e}"))
            })?;
        Ok(CtdbStore {
            api,
            db: db.to_string(),
            shared,
            write_limit: DEFAULT_WRITE_LIMIT,
        })
    }

    /// How long a writer waits for its transaction (DEFAULT_WRITE_LIMIT).
    pub fn with_write_limit(mut self, limit: Duration) -> CtdbStore {
        self.write_limit = limit;
        self
    }

    /// Queues writes (one transaction's worth, with whatever else is queued) and waits until
    /// the transaction carrying them has committed, or write_limit.
    fn write(&self, writes: Vec<Write>, what: &str) -> Result<(), StoreError> {
        let deadline = Instant::now() + self.write_limit;
        let mut q = self.shared.lock();
        let tickets: Vec<u64> = writes
            .into_iter()
            .map(|w| {
                let t = q.next_ticket;
                q.next_ticket += 1;
                q.pending.push((t, w));
                t
            })
            .collect();
        self.shared.work.notify_one();
        let fail = |message: String| StoreError::Io {
            op: "commit",
            key: what.to_string(),
            path: None,
            source: std::io::Error::other(message),
        };
        loop {
            if tickets.iter().all(|t| q.results.contains_key(t)) {
                let mut outcome = Ok(());
                for t in &tickets {
                    if let Some(Err(e)) = q.results.remove(t) {
                        outcome = Err(fail(e));
                    }
                }
                return outcome;
            }
            let now = Instant::now();
            if now >= deadline {
                // Not started yet: out of the queue. In a running transaction: its result
                // is not kept.
                q.pending.retain(|(t, _)| !tickets.contains(t));
                for t in &tickets {
                    if q.results.remove(t).is_none() {
                        q.abandoned.insert(*t);
                    }
                }
                return Err(fail(format!(
                    "not committed within {:?} (ctdbd slow, in recovery, or frozen?)",
                    self.write_limit
                )));
            }
            q = self
                .shared
                .done
                .wait_timeout(q, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Drop for CtdbStore {
    fn drop(&mut self) {
        // The committer finishes what is queued, then exits.
        self.shared.lock().stop = true;
        self.shared.work.notify_all();
    }
}

/// The committer: one transaction for everything queued, the last write of a key winning
/// (in queue order, so a late batch never undoes a newer write).
fn commit_loop(shared: &Shared, api: &dyn CtdbApi, db: &str) {
    loop {
        let batch = {
            let mut q = shared.lock();
            while q.pending.is_empty() && !q.stop {
                q = shared.work.wait(q).unwrap_or_else(|e| e.into_inner());
            }
            if q.pending.is_empty() {
                return;
            }
            std::mem::take(&mut q.pending)
        };
        let mut last: BTreeMap<&[u8], &Option<Vec<u8>>> = BTreeMap::new();
        for (_, (k, v)) in &batch {
            last.insert(k, v);
        }
        let writes: Vec<Write> = last
            .into_iter()
            .map(|(k, v)| (k.to_vec(), v.clone()))
            .collect();
        let result = match catch_unwind(AssertUnwindSafe(|| api.transaction(db, &writes))) {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(panic) => Err(format!(
                "internal error in the commit ({}); batch failed",
                panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".into())
            )),
        };
        log::debug!(
            "ctdb store: committed {} write(s) in one transaction{}",
            writes.len(),
            if result.is_ok() { "" } else { " (failed)" }
        );
        let mut q = shared.lock();
        for (t, _) in batch {
            if !q.abandoned.remove(&t) {
                q.results.insert(t, result.clone());
            }
        }
        shared.done.notify_all();
    }
}

/// A value this store can hand back as it was given: not empty (an empty record is how
/// CTDB persistent databases mark a deletion) and without a NUL byte (`ctdb pfetch` prints
/// values with "%.*s", which stops at the first NUL; see `ctdb::parse_pfetch`).
fn check_value(key: &str, value: &[u8]) -> Result<(), StoreError> {
    let why = if value.is_empty() {
        "it is empty, which is how CTDB marks a deleted record"
    } else if value.contains(&0) {
        "it has a NUL byte, and `ctdb pfetch` prints values only up to the first one"
    } else {
        return Ok(());
    };
    Err(StoreError::BadValue {
        key: key.to_string(),
        why,
    })
}

impl Store for CtdbStore {
    fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        check_key(key)?;
        check_value(key, value)?;
        self.write(vec![(key.as_bytes().to_vec(), Some(value.to_vec()))], key)
    }

    fn put_many(&self, writes: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        for (key, value) in writes {
            check_key(key)?;
            check_value(key, value)?;
        }
        let what = format!("{} record(s)", writes.len());
        self.write(
            writes
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), Some(v.clone())))
                .collect(),
            &what,
        )
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_key(key)?;
        self.api
            .fetch(&self.db, key.as_bytes())
            .map_err(|e| StoreError::Io {
                op: "fetch",
                key: key.to_string(),
                path: None,
                source: std::io::Error::other(e.to_string()),
            })
    }

    fn delete(&self, key: &str) -> Result<bool, StoreError> {
        self.delete_if(key, &|_| true)
    }

    // One fetch and one transaction (`delete` after `get` would fetch twice).
    fn delete_if(&self, key: &str, doomed: &dyn Fn(&[u8]) -> bool) -> Result<bool, StoreError> {
        check_key(key)?;
        match self.get(key)? {
            Some(v) if doomed(&v) => {
                self.write(vec![(key.as_bytes().to_vec(), None)], key)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn scan(&self, prefix: &str) -> Result<Scan, StoreError> {
        let t = self.api.traverse(&self.db).map_err(|e| {
            StoreError::Unavailable(format!("cannot read {}: {e}", self.describe()))
        })?;
        let mut skipped: Vec<SkippedEntry> = t
            .unparsed
            .into_iter()
            .map(|reason| SkippedEntry {
                location: self.describe(),
                reason,
            })
            .collect();
        let mut entries = Vec::new();
        for (k, v) in t.records {
            match String::from_utf8(k) {
                Ok(k) if k.starts_with(prefix) => entries.push((k, v)),
                Ok(_) => {}
                Err(e) => skipped.push(SkippedEntry {
                    location: self.describe(),
                    reason: format!(
                        "key is not UTF-8: {:?}",
                        String::from_utf8_lossy(e.as_bytes())
                    ),
                }),
            }
        }
        entries.sort();
        Ok(Scan { entries, skipped })
    }

    fn describe(&self) -> String {
        format!("ctdb:{} ({})", self.db, self.api.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctdb::{NodeInfo, PublicIp, Result as CResult, Traverse};
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// In-memory ctdbd double: counts transactions, can be made slow or failing.
    #[derive(Default)]
    struct FakeCtdb {
        db: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
        transactions: AtomicUsize,
        fetches: AtomicUsize,
        fail: std::sync::atomic::AtomicBool,
        panic_once: std::sync::atomic::AtomicBool,
        stall: Mutex<Duration>,
    }

    impl CtdbApi for Arc<FakeCtdb> {
        fn nodes(&self) -> CResult<Vec<NodeInfo>> {
            Ok(vec![])
        }
        fn public_ips(&self) -> CResult<Vec<PublicIp>> {
            Ok(vec![])
        }
        fn attach_persistent(&self, _db: &str) -> CResult<()> {
            Ok(())
        }
        fn transaction(&self, _db: &str, writes: &[(Vec<u8>, Option<Vec<u8>>)]) -> CResult<()> {
            std::thread::sleep(Duration::from_millis(5) + *self.stall.lock().unwrap());
            if self.panic_once.swap(false, Ordering::SeqCst) {
                panic!("thread spawn failed (injected)");
            }
            self.transactions.fetch_add(1, Ordering::SeqCst);
            if self.fail.load(Ordering::SeqCst) {
                return Err(crate::ctdb::CtdbError("commit refused".into()));
            }
            let mut db = self.db.lock().unwrap();
            for (k, v) in writes {
                match v {
                    Some(v) => db.insert(k.clone(), v.clone()),
                    None => db.remove(k),
                };
            }
            Ok(())
        }
        fn fetch(&self, _db: &str, key: &[u8]) -> CResult<Option<Vec<u8>>> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            Ok(self.db.lock().unwrap().get(key).cloned())
        }
        fn traverse(&self, _db: &str) -> CResult<Traverse> {
            Ok(Traverse {
                records: self.db.lock().unwrap().clone().into_iter().collect(),
                unparsed: vec!["at byte 7: junk".into()],
            })
        }
        fn describe(&self) -> String {
            "fake".into()
        }
    }

    #[test]
    fn concurrent_writers_share_transactions_and_lose_nothing() {
        let fake = Arc::new(FakeCtdb::default());
        let store = Arc::new(CtdbStore::open(Box::new(fake.clone()), "t.tdb").unwrap());
        let threads: Vec<_> = (0..64)
            .map(|i| {
                let s = store.clone();
                std::thread::spawn(move || s.put(&format!("k{i}"), format!("v{i}").as_bytes()))
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        let scan = store.scan("k").unwrap();
        assert_eq!(scan.entries.len(), 64);
        assert_eq!(
            scan.skipped.len(),
            1,
            "unparsable dump entries are reported"
        );
        let n = fake.transactions.load(Ordering::SeqCst);
        assert!(n < 64, "64 writers took {n} transactions: no grouping");
    }

    /// Seen writing the pfetch formatter for `ctdb::fuzz` from the tool: `ctdb pfetch`
    /// prints "%.*s\n", so a value with a NUL would come back cut at it. Such a value (and
    /// an empty one, CTDB's deletion mark) is refused, not stored.
    #[test]
    fn values_that_cannot_be_read_back_are_refused() {
        let fake = Arc::new(FakeCtdb::default());
        let store = CtdbStore::open(Box::new(fake.clone()), "t.tdb").unwrap();
        for bad in [&b""[..], b"v1 a\0b", b"\0"] {
            let err = store.put("k", bad).unwrap_err();
            assert!(matches!(err, StoreError::BadValue { .. }), "{err}");
            let err = store
                .put_many(&[("j".into(), b"ok".to_vec()), ("k".into(), bad.to_vec())])
                .unwrap_err();
            assert!(err.to_string().contains("\"k\""), "{err}");
        }
        assert_eq!(fake.transactions.load(Ordering::SeqCst), 0);
        store.put("k", b"v1 fine").unwrap();
    }

    #[test]
    fn a_failed_commit_fails_every_writer_in_it_and_delete_works() {
        let fake = Arc::new(FakeCtdb::default());
        let store = CtdbStore::open(Box::new(fake.clone()), "t.tdb").unwrap();
        store.put("a", b"1").unwrap();
        fake.fail.store(true, Ordering::SeqCst);
        let err = store.put("b", b"2").unwrap_err();
        assert!(err.to_string().contains("commit refused"), "{err}");
        fake.fail.store(false, Ordering::SeqCst);
        assert!(store.delete("a").unwrap());
        assert!(!store.delete("a").unwrap());
        assert_eq!(store.get("a").unwrap(), None);
    }

    /// A panic in the commit (here injected where a thread spawn could fail) fails that
    /// batch's writers, and later writers are committed: nothing wedges.
    #[test]
    fn a_panic_in_the_commit_fails_its_batch_and_later_writes_commit() {
        let fake = Arc::new(FakeCtdb::default());
        let store = CtdbStore::open(Box::new(fake.clone()), "t.tdb").unwrap();
        fake.panic_once.store(true, Ordering::SeqCst);
        let err = store.put("a", b"1").unwrap_err().to_string();
        assert!(err.contains("internal error in the commit"), "{err}");
        store.put("b", b"2").unwrap();
        assert_eq!(store.get("b").unwrap().as_deref(), Some(&b"2"[..]));
    }

    /// ctdbd frozen: a writer gives up after its limit; a write whose transaction was
    /// already running still lands, one that had not started is taken out of the queue (its
    /// caller keeps it), so writes given up on never pile up behind a frozen ctdbd.
    #[test]
    fn writers_wait_at_most_their_limit_and_given_up_writes_do_not_pile_up() {
        let fake = Arc::new(FakeCtdb::default());
        let store = CtdbStore::open(Box::new(fake.clone()), "t.tdb")
            .unwrap()
            .with_write_limit(Duration::from_millis(100));
        *fake.stall.lock().unwrap() = Duration::from_millis(600);
        let start = Instant::now();
        assert!(store.put("k", b"running").is_err());
        for i in 0..20 {
            assert!(store.put("k", format!("queued{i}").as_bytes()).is_err());
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
        let queued = store.shared.lock().pending.len();
        assert!(queued <= 1, "given-up writes piled up: {queued}");
        *fake.stall.lock().unwrap() = Duration::ZERO;
        let deadline = Instant::now() + Duration::from_secs(5);
        while store.get("k").unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "the running transaction never landed"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        store
            .put_many(&[("m1".into(), b"1".to_vec()), ("m2".into(), b"2".to_vec())])
            .unwrap();
        assert_eq!(store.scan("m").unwrap().entries.len(), 2);
    }

    #[test]
    fn delete_if_is_one_fetch_and_at_most_one_transaction() {
        let fake = Arc::new(FakeCtdb::default());
        let store = CtdbStore::open(Box::new(fake.clone()), "t.tdb").unwrap();
        store.put("a", b"old").unwrap();
        let counts = || {
            (
                fake.fetches.swap(0, Ordering::SeqCst),
                fake.transactions.swap(0, Ordering::SeqCst),
            )
        };
        counts();
        assert!(!store.delete_if("a", &|v| v == b"new").unwrap());
        assert_eq!(counts(), (1, 0), "kept: one fetch, nothing written");
        assert!(store.delete_if("a", &|v| v == b"old").unwrap());
        assert_eq!(counts(), (1, 1));
        assert_eq!(store.get("a").unwrap(), None);
        assert!(!store.delete("a").unwrap());
    }
}
