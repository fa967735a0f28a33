//! The `ctdb` store: one CTDB persistent database, replicated by ctdbd to every node.
//! Writes use group commit (D1 at a fraction of a transaction per write): a writer queues
//! its record; whoever finds no commit in flight becomes the leader, takes every queued
//! record into one transaction and wakes the others; each caller returns only once the
//! transaction holding its own record has committed, with that transaction's result.

use super::{check_key, Scan, SkippedEntry, Store, StoreError};
use crate::ctdb::CtdbApi;
use std::collections::HashMap;
use std::sync::{Condvar, Mutex};

type Write = (Vec<u8>, Option<Vec<u8>>);

#[derive(Default)]
struct Queue {
    pending: Vec<(u64, Write)>,
    next_ticket: u64,
    committing: bool,
    results: HashMap<u64, Result<(), String>>,
}

pub struct CtdbStore {
    api: Box<dyn CtdbApi>,
    db: String,
    queue: Mutex<Queue>,
    done: Condvar,
}

impl CtdbStore {
    /// Attaches `db` (creating it cluster-wide if missing).
    pub fn open(api: Box<dyn CtdbApi>, db: &str) -> Result<CtdbStore, StoreError> {
        api.attach_persistent(db).map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot attach CTDB persistent database {db} via {}: {e}; is ctdbd running \
                 and healthy on this node (`ctdb status`)?",
                api.describe()
            ))
        })?;
        Ok(CtdbStore {
            api,
            db: db.to_string(),
            queue: Mutex::new(Queue::default()),
            done: Condvar::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues one write and returns when the transaction that carried it has committed.
    fn write(&self, w: Write, key: &str) -> Result<(), StoreError> {
        let mut q = self.lock();
        let ticket = q.next_ticket;
        q.next_ticket += 1;
        q.pending.push((ticket, w));
        loop {
            if let Some(r) = q.results.remove(&ticket) {
                return r.map_err(|message| StoreError::Io {
                    op: "commit",
                    key: key.to_string(),
                    path: None,
                    source: std::io::Error::other(message),
                });
            }
            if !q.committing {
                // Lead: commit everything queued so far, including our own record.
                let batch: Vec<(u64, Write)> = std::mem::take(&mut q.pending);
                q.committing = true;
                drop(q);
                let writes: Vec<Write> = batch.iter().map(|(_, w)| w.clone()).collect();
                let result = self
                    .api
                    .transaction(&self.db, &writes)
                    .map_err(|e| e.to_string());
                log::debug!(
                    "ctdb store: committed {} write(s) in one transaction{}",
                    writes.len(),
                    if result.is_ok() { "" } else { " (failed)" }
                );
                q = self.lock();
                for (t, _) in batch {
                    q.results.insert(t, result.clone());
                }
                q.committing = false;
                self.done.notify_all();
            } else {
                q = self.done.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        }
    }
}

impl Store for CtdbStore {
    fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        check_key(key)?;
        if value.is_empty() {
            // An empty record is how CTDB persistent databases mark a deletion.
            return Err(StoreError::BadKey(format!("{key} (empty value)")));
        }
        self.write((key.as_bytes().to_vec(), Some(value.to_vec())), key)
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
                self.write((key.as_bytes().to_vec(), None), key)?;
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
            std::thread::sleep(Duration::from_millis(5));
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
