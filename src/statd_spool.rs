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
//!
//! Unprivileged callouts: Debian's rpc.statd drops to the owner of its `sm` directory
//! (user `statd`, nfs-utils' nsm_drop_privileges, CVE-2019-3689) with no capabilities
//! left, and runs the callout so. That user can neither reach ctdbd's socket (root, 0700)
//! nor open the databases or the dir store. It only spools the host's name
//! ([`Spool::add_client`], an entry of its own kind), into a spool directory root created
//! for it ([`ensure_dir`], owned by the `sm` owner); root writes the record: the node's
//! Ganesha (the backend flushes the spool every second, attributing the host to the IPs
//! the node holds then), `monitor`, or a root flusher. ctdb 4.22's statd callout works
//! the same way (a queue directory owned by statd, pushed into the database by root).

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
/// First line of an entry that names a host to monitor, not its writes (see the module
/// comment). No record key starts with '@'.
const ADD_CLIENT: &str = "@add-client";

/// Writes as the store takes them: (key, value) pairs.
pub type Writes = Vec<(String, Vec<u8>)>;

/// Turns a host spooled by name into its writes (the IPs this node holds now).
pub type Attribute<'a> = dyn Fn(&str) -> Result<Writes, String> + 'a;

/// What an entry holds.
#[derive(Debug, PartialEq, Eq)]
enum Entry {
    Writes(Vec<(String, Vec<u8>)>),
    /// A host to monitor, under the IPs this node holds when it is written.
    AddClient(String),
}

/// The spool's directory name under the store directory `Dir`.
pub const SPOOL_NAME: &str = "statd-spool";

/// The spool directory under the store directory `Dir` (which the package creates).
pub fn spool_dir(dir: &Path) -> PathBuf {
    dir.join(SPOOL_NAME)
}

pub struct Spool {
    dir: DirStore,
    path: PathBuf,
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
            path: dir.to_path_buf(),
        })
    }

    /// Keeps `writes` durably; returns the entry's name.
    pub fn add(&self, writes: &[(String, Vec<u8>)]) -> Result<String, StoreError> {
        let name = self.fresh_name();
        self.dir.put(&name, &encode(writes))?;
        Ok(name)
    }

    /// Keeps "monitor `client`" durably, for root to attribute and write; returns the
    /// entry's name.
    pub fn add_client(&self, client: &str) -> Result<String, StoreError> {
        let name = self.fresh_name();
        let mut text = format!("{ADD_CLIENT}\n");
        for b in client.as_bytes() {
            text.push_str(&format!("{b:02x}"));
        }
        text.push('\n');
        self.dir.put(&name, text.as_bytes())?;
        Ok(name)
    }

    fn fresh_name(&self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        format!(
            "{ENTRY_PREFIX}{:020}-{}",
            now.as_nanos(),
            std::process::id()
        )
    }

    /// Drops an entry the store has.
    pub fn remove(&self, name: &str) -> Result<(), StoreError> {
        self.dir.delete(name).map(|_| ())
    }

    /// Writes every entry to `store`, oldest first, one transaction each; an entry the
    /// store took is removed, one it did not is left for the next flush. Bad or expired
    /// entries are dropped and logged. `attribute` turns a host to monitor into its
    /// writes (the IPs this node holds now); when it fails the entry is left.
    pub fn flush(
        &self,
        store: &dyn Store,
        now: SystemTime,
        attribute: &Attribute<'_>,
    ) -> Result<Flushed, StoreError> {
        let scan = self.dir.scan(ENTRY_PREFIX)?;
        for s in scan.skipped {
            log::warn!("statd spool: skipping {}: {}", s.location, s.reason);
        }
        let mut out = Flushed::default();
        for (name, value) in scan.entries {
            let expired = age_of(&name, now).map_or(true, |age| age > SPOOL_MAX_AGE);
            let writes = match decode_entry(&value) {
                Some(Entry::Writes(w)) if !expired => w,
                Some(Entry::AddClient(client)) if !expired => match attribute(&client) {
                    Ok(w) => w,
                    Err(e) => {
                        log::info!("statd spool: {name} ({client:?}) not written yet: {e}");
                        out.left += 1;
                        continue;
                    }
                },
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

    /// The flushers' lock (one flusher at a time, across processes: the callout's
    /// detached ones, `monitor`'s, the node's Ganesha); None while another holds it.
    pub fn try_lock_flusher(&self) -> Result<Option<nix::fcntl::Flock<std::fs::File>>, StoreError> {
        let path = self.path.join(".flusher.lock");
        let file = std::fs::File::create(&path)
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        Ok(nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).ok())
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

fn decode_entry(bytes: &[u8]) -> Option<Entry> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.lines();
    if lines.next() != Some(ADD_CLIENT) {
        return decode(bytes).map(Entry::Writes);
    }
    let hex = lines.next()?;
    if lines.next().is_some() || hex.is_empty() {
        return None;
    }
    let name = unhex(hex)?;
    String::from_utf8(name).ok().map(Entry::AddClient)
}

fn unhex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Creates the spool directory (root: the event script and the backend do) for rpc.statd's
/// user `owner` (uid, gid) to write into, mode 0770; an existing one is left as it is (an
/// operator's or the package's). Its parent, the store directory, must let that user
/// through (the package makes it 0751).
pub fn ensure_dir(dir: &Path, owner: Option<(u32, u32)>) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => {
            return Err(format!(
                "cannot create the statd spool {}: {e}",
                dir.display()
            ))
        }
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o770))
        .map_err(|e| format!("chmod {}: {e}", dir.display()))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid))
            .map_err(|e| format!("chown {} to {uid}:{gid}: {e}", dir.display()))?;
    }
    Ok(())
}

/// Who rpc.statd runs as: the owner of `<state dir>/sm` when that is not root
/// (nfs-utils' nsm_drop_privileges). The state directory is nfs.conf's `[statd]
/// state-directory-path` (the last one set in `/etc/nfs.conf`, then `/etc/nfs.conf.d/*.conf`
/// in order), else /var/lib/nfs.
pub fn statd_owner(etc: &Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let mut files = vec![etc.join("nfs.conf")];
    if let Ok(rd) = std::fs::read_dir(etc.join("nfs.conf.d")) {
        let mut more: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "conf"))
            .collect();
        more.sort();
        files.extend(more);
    }
    let mut state = PathBuf::from("/var/lib/nfs");
    for f in files {
        if let Ok(text) = std::fs::read_to_string(&f) {
            if let Some(p) = statd_state_dir(&text) {
                state = PathBuf::from(p);
            }
        }
    }
    let m = std::fs::metadata(state.join("sm")).ok()?;
    (m.uid() != 0).then_some((m.uid(), m.gid()))
}

/// `state-directory-path` of the `[statd]` section of one nfs.conf file, if set.
fn statd_state_dir(text: &str) -> Option<String> {
    let mut in_statd = false;
    let mut found = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_statd = line.trim_matches(|c| c == '[' || c == ']').trim() == "statd";
            continue;
        }
        if !in_statd || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            if k.trim() == "state-directory-path" {
                found = Some(v.trim().to_string());
            }
        }
    }
    found
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
        let f = spool.flush(&Refusing, now, &unattributable).unwrap();
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
        let f = spool.flush(&store, now, &unattributable).unwrap();
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
        let f = spool.flush(&store, later, &unattributable).unwrap();
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

    fn unattributable(client: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
        Err(format!("no IPs for {client}"))
    }

    /// What an unprivileged callout spools: the host only; the flush attributes it to the
    /// IPs held then, and leaves it while that fails.
    #[test]
    fn a_host_spooled_by_name_is_written_under_the_ips_held_at_the_flush() {
        let d = tempfile::tempdir().unwrap();
        let spool = Spool::open(&spool_dir(d.path())).unwrap();
        let name = spool.add_client("fd00:77:1::fe").unwrap();
        let store = MemoryStore::default();
        let now = SystemTime::now();
        let f = spool.flush(&store, now, &unattributable).unwrap();
        assert_eq!((f.written, f.left), (0, 1));
        assert!(spool.holds(&name));
        let held = |client: &str| -> Result<Vec<(String, Vec<u8>)>, String> {
            Ok(vec![(
                format!("statd-state@10.0.0.1@{client}"),
                b"v1 monitored=1".to_vec(),
            )])
        };
        let f = spool.flush(&store, now, &held).unwrap();
        assert_eq!((f.written, f.left), (1, 0));
        assert_eq!(
            store.get("statd-state@10.0.0.1@fd00:77:1::fe").unwrap(),
            Some(b"v1 monitored=1".to_vec())
        );
        assert!(!spool.holds(&name));
        assert_eq!(
            decode_entry(b"@add-client\n6869\n"),
            Some(Entry::AddClient("hi".into()))
        );
        for bad in [
            &b"@add-client\n"[..],
            b"@add-client\n6\n",
            b"@add-client\n68\n69\n",
        ] {
            assert_eq!(decode_entry(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn statds_state_directory_is_read_from_nfs_conf() {
        let text = "[general]\nstate-directory-path = /nope\n[statd]\n# state-directory-path = /x\n\
                    port = 662\n state-directory-path = /srv/statd \n[mountd]\nstate-directory-path=/y\n";
        assert_eq!(statd_state_dir(text).as_deref(), Some("/srv/statd"));
        assert_eq!(statd_state_dir("[statd]\nport=1\n"), None);
        // The owner of its sm directory, unless root (statd then stays root).
        let d = tempfile::tempdir().unwrap();
        let etc = d.path().join("etc");
        let state = d.path().join("state");
        std::fs::create_dir_all(etc.join("nfs.conf.d")).unwrap();
        std::fs::create_dir_all(state.join("sm")).unwrap();
        std::fs::write(
            etc.join("nfs.conf.d/ganesha-ctdb.conf"),
            format!("[statd]\nstate-directory-path={}\n", state.display()),
        )
        .unwrap();
        assert_eq!(statd_owner(&etc), None, "root-owned sm: statd stays root");
        std::os::unix::fs::chown(state.join("sm"), Some(103), Some(65534)).unwrap();
        assert_eq!(statd_owner(&etc), Some((103, 65534)));
        // The spool directory is made for that user, once.
        let spool = d.path().join("statd-spool");
        ensure_dir(&spool, Some((103, 65534))).unwrap();
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let m = std::fs::metadata(&spool).unwrap();
        assert_eq!(
            (m.uid(), m.gid(), m.permissions().mode() & 0o777),
            (103, 65534, 0o770)
        );
        std::os::unix::fs::chown(&spool, Some(0), Some(0)).unwrap();
        ensure_dir(&spool, Some((103, 65534))).unwrap();
        assert_eq!(
            std::fs::metadata(&spool).unwrap().uid(),
            0,
            "an existing one is left"
        );
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
            let _ = decode_entry(&bytes);
            proptest::prop_assert_eq!(decode(&encode(&writes)), Some(writes));
        }
    }
}
