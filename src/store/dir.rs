//! The directory store: one file per key, the embedded default for a single node.
//!
//! Each write is atomic and durable: a temp file is written and fsync'ed, renamed over the
//! target, and the directory is fsync'ed, so a crash leaves either the old or the new value.
//! A file holds `<key>\n<value>`, so the key can be recovered even from a hashed name.

use super::{check_key, Scan, SkippedEntry, Store, StoreError};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Longest encoded key used as a file name; longer keys are named by their SHA-256.
/// (NAME_MAX is 255 on Linux file systems; leave room for the temp-file prefix.)
const MAX_PLAIN_NAME: usize = 200;
const HASHED_PREFIX: char = '#';
const TEMP_PREFIX: &str = ".tmp-";
/// Largest file read as an entry. A record is a tag (at most ~4.2 KiB) and revoked
/// handles; anything far larger is not ours (a device, a log that landed here) and is
/// skipped, never read into memory.
pub const MAX_ENTRY_BYTES: u64 = 1 << 20;

pub struct DirStore {
    dir: PathBuf,
    temp_counter: AtomicU64,
}

impl DirStore {
    /// Opens the store in `dir`, which must exist and be writable. It is not created here:
    /// a typo in `Dir` must not silently start an empty store (every client would lose its
    /// reclaim rights).
    pub fn open(dir: &Path) -> Result<DirStore, StoreError> {
        let meta = fs::metadata(dir).map_err(|e| {
            StoreError::Unavailable(format!(
                "store directory {} cannot be used: {e}; create it (mkdir -p {}) writable by \
                 the user ganesha.nfsd runs as, or set Dir in the CTDB_RECOVERY block",
                dir.display(),
                dir.display()
            ))
        })?;
        if !meta.is_dir() {
            return Err(StoreError::Unavailable(format!(
                "store directory {} is not a directory; set Dir in the CTDB_RECOVERY block to a \
                 directory",
                dir.display()
            )));
        }
        let store = DirStore {
            dir: dir.to_path_buf(),
            temp_counter: AtomicU64::new(0),
        };
        // Prove writability now rather than at the first client's add_clid.
        let probe = store.temp_path();
        File::create(&probe)
            .and_then(|f| f.sync_all())
            .and_then(|_| fs::remove_file(&probe))
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "store directory {} is not writable: {e}; make it writable by the user \
                     ganesha.nfsd runs as",
                    dir.display()
                ))
            })?;
        Ok(store)
    }

    /// Opens an existing store directory for reading only (no write probe): what the
    /// operator's tool does to show a store that is full or read-only.
    pub fn open_for_reading(dir: &Path) -> Result<DirStore, StoreError> {
        match fs::metadata(dir) {
            Ok(m) if m.is_dir() => Ok(DirStore {
                dir: dir.to_path_buf(),
                temp_counter: AtomicU64::new(0),
            }),
            Ok(_) => Err(StoreError::Unavailable(format!(
                "store directory {} is not a directory",
                dir.display()
            ))),
            Err(e) => Err(StoreError::Unavailable(format!(
                "store directory {} cannot be read: {e}",
                dir.display()
            ))),
        }
    }

    pub fn path_of(&self, key: &str) -> PathBuf {
        self.dir.join(file_name_for_key(key))
    }

    fn temp_path(&self) -> PathBuf {
        let n = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        self.dir
            .join(format!("{TEMP_PREFIX}{}-{n}", std::process::id()))
    }

    fn sync_dir(&self) -> std::io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }

    /// Reads an entry that is a regular file of at most MAX_ENTRY_BYTES: never through a
    /// symbolic link (O_NOFOLLOW), never waiting in open() (O_NONBLOCK: a FIFO named like a
    /// key would otherwise hang the caller until a writer appears), never a device.
    fn read_entry(&self, path: &Path) -> std::io::Result<Option<Vec<u8>>> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(std::io::Error::new(
                    ErrorKind::InvalidData,
                    "a symbolic link, not a store entry (not followed)",
                ))
            }
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        if !meta.file_type().is_file() {
            return Err(std::io::Error::new(
                ErrorKind::InvalidData,
                format!("not a regular file ({}), not a store entry", kind_of(&meta)),
            ));
        }
        if meta.len() > MAX_ENTRY_BYTES {
            return Err(std::io::Error::new(
                ErrorKind::InvalidData,
                format!(
                    "{} bytes, more than any store entry ({MAX_ENTRY_BYTES})",
                    meta.len()
                ),
            ));
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.take(MAX_ENTRY_BYTES + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > MAX_ENTRY_BYTES {
            return Err(std::io::Error::new(
                ErrorKind::InvalidData,
                "grew past the largest store entry while being read",
            ));
        }
        Ok(Some(bytes))
    }
}

fn io_err(op: &'static str, key: &str, path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        op,
        key: key.to_string(),
        path: Some(path.to_path_buf()),
        source,
    }
}

fn kind_of(meta: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "not a plain file"
    }
}

/// Splits a file's content into its key and value.
fn split_entry(content: &[u8]) -> Option<(&str, &[u8])> {
    let nl = content.iter().position(|&b| b == b'\n')?;
    let key = std::str::from_utf8(&content[..nl]).ok()?;
    Some((key, &content[nl + 1..]))
}

impl Store for DirStore {
    fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        check_key(key)?;
        let target = self.path_of(key);
        let temp = self.temp_path();
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)?;
            f.write_all(key.as_bytes())?;
            f.write_all(b"\n")?;
            f.write_all(value)?;
            f.sync_all()?;
            fs::rename(&temp, &target)?;
            self.sync_dir()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&temp);
            io_err("write", key, &target, e)
        })
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_key(key)?;
        let path = self.path_of(key);
        let Some(content) = self
            .read_entry(&path)
            .map_err(|e| io_err("read", key, &path, e))?
        else {
            return Ok(None);
        };
        match split_entry(&content) {
            Some((stored, value)) if stored == key => Ok(Some(value.to_vec())),
            _ => Err(io_err(
                "read",
                key,
                &path,
                std::io::Error::new(
                    ErrorKind::InvalidData,
                    "file does not hold this key (corrupt, or a hash collision)",
                ),
            )),
        }
    }

    fn delete(&self, key: &str) -> Result<bool, StoreError> {
        check_key(key)?;
        let path = self.path_of(key);
        match fs::remove_file(&path) {
            Ok(()) => {
                self.sync_dir()
                    .map_err(|e| io_err("delete", key, &path, e))?;
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("delete", key, &path, e)),
        }
    }

    fn scan(&self, prefix: &str) -> Result<Scan, StoreError> {
        let read_dir = fs::read_dir(&self.dir).map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot list store directory {}: {e}",
                self.dir.display()
            ))
        })?;
        let mut entries = Vec::new();
        let mut skipped = Vec::new();
        for dirent in read_dir {
            let dirent = match dirent {
                Ok(d) => d,
                Err(e) => {
                    skipped.push(SkippedEntry {
                        location: self.dir.display().to_string(),
                        reason: format!("directory entry unreadable: {e}"),
                    });
                    continue;
                }
            };
            let name = dirent.file_name();
            let Some(name) = name.to_str() else {
                skipped.push(SkippedEntry {
                    location: dirent.path().display().to_string(),
                    reason: "file name is not a store key".into(),
                });
                continue;
            };
            if name.starts_with('.') {
                continue; // temp files of writes in progress or interrupted by a crash
            }
            if name == crate::statd_spool::SPOOL_NAME
                && dirent.file_type().is_ok_and(|t| t.is_dir())
            {
                continue; // rpc.statd's callout's spool lives beside the records
            }
            // Judged by the directory entry first: a FIFO, device or link is never opened.
            match dirent.file_type() {
                Ok(t) if t.is_file() => {}
                Ok(_) => {
                    let kind = fs::symlink_metadata(dirent.path())
                        .map(|m| kind_of(&m))
                        .unwrap_or("not a plain file");
                    skipped.push(SkippedEntry {
                        location: dirent.path().display().to_string(),
                        reason: format!("{kind}, not a store entry; not read"),
                    });
                    continue;
                }
                Err(e) => {
                    skipped.push(SkippedEntry {
                        location: dirent.path().display().to_string(),
                        reason: format!("cannot tell what it is: {e}"),
                    });
                    continue;
                }
            }
            let named_key = if name.starts_with(HASHED_PREFIX) {
                None
            } else {
                match decode_file_name(name) {
                    Some(k) if k.starts_with(prefix) => Some(k),
                    Some(_) => continue,
                    None => {
                        skipped.push(SkippedEntry {
                            location: dirent.path().display().to_string(),
                            reason: "file name is not a store key".into(),
                        });
                        continue;
                    }
                }
            };
            let path = dirent.path();
            let content = match self.read_entry(&path) {
                Ok(Some(c)) => c,
                Ok(None) => continue, // deleted while we listed
                Err(e) => {
                    skipped.push(SkippedEntry {
                        location: path.display().to_string(),
                        reason: format!("unreadable: {e}"),
                    });
                    continue;
                }
            };
            match split_entry(&content) {
                Some((key, value))
                    if named_key
                        .as_deref()
                        .map_or(file_name_for_key(key) == name, |named| named == key) =>
                {
                    if key.starts_with(prefix) {
                        entries.push((key.to_string(), value.to_vec()));
                    }
                }
                _ => skipped.push(SkippedEntry {
                    location: path.display().to_string(),
                    reason: "content does not match its file name (corrupt or foreign file)".into(),
                }),
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Scan { entries, skipped })
    }

    fn describe(&self) -> String {
        format!("dir:{}", self.dir.display())
    }
}

/// Bytes kept as they are in file names; everything else is %XX. '%' itself is escaped, so
/// the mapping is one to one; a leading '.' is escaped so no key hides as a dot-file.
fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'.' | b'-' | b'_' | b'@' | b':' | b'(' | b')' | b'+' | b',' | b'='
        )
}

pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for (i, b) in key.bytes().enumerate() {
        if is_plain(b) && !(i == 0 && b == b'.') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn decode_file_name(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = name.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else if is_plain(bytes[i]) {
            out.push(bytes[i]);
            i += 1;
        } else {
            return None;
        }
    }
    let key = String::from_utf8(out).ok()?;
    // Only the canonical encoding names a key (rejects e.g. "%41" for "A"), and only of a
    // key the store takes (not "%0A", "%00" or "").
    check_key(&key).ok()?;
    (encode_key(&key) == name).then_some(key)
}

pub fn file_name_for_key(key: &str) -> String {
    let encoded = encode_key(key);
    if encoded.len() <= MAX_PLAIN_NAME {
        return encoded;
    }
    let digest = Sha256::digest(key.as_bytes());
    let mut name = String::with_capacity(65);
    name.push(HASHED_PREFIX);
    for b in digest {
        name.push_str(&format!("{b:02x}"));
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_for_any_key() {
        for key in [
            "v4@10.0.0.1@::ffff:10.0.0.2-(3:abc)",
            "v4@local@h-(5:a b/c)",
            "grace@node-1",
            ".hidden",
            "100%",
            "ü and \t and \\ and \"",
            "v4@fd00::1@x",
        ] {
            let name = file_name_for_key(key);
            assert!(!name.starts_with('.'), "{name}");
            assert!(!name.contains('/'), "{name}");
            assert_eq!(decode_file_name(&name).as_deref(), Some(key), "{name}");
        }
    }

    #[test]
    fn non_canonical_names_are_not_keys() {
        assert_eq!(decode_file_name("%41"), None);
        assert_eq!(decode_file_name("a%4"), None);
        assert_eq!(decode_file_name("a b"), None);
        assert_eq!(decode_file_name("%ZZ"), None);
    }

    /// Found by `fuzz::only_canonical_names_decode`: "%00" and "%0A" decoded to keys with a
    /// NUL or newline, which no store entry can have (and "" to the empty key).
    #[test]
    fn names_of_keys_the_store_refuses_are_not_keys() {
        for name in ["", "%00", "%0A", "a%0Ab", "%00%0A"] {
            assert_eq!(decode_file_name(name), None, "{name}");
        }
    }

    #[test]
    fn long_keys_get_hashed_names_under_name_max() {
        let key = format!("v4@10.0.0.1@h-(2050:0x{})", "ab".repeat(1024));
        let name = file_name_for_key(&key);
        assert!(name.starts_with('#') && name.len() == 65);
        let short = "k".repeat(MAX_PLAIN_NAME);
        assert_eq!(file_name_for_key(&short), short);
    }

    #[test]
    fn put_get_delete_scan() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::open(dir.path()).unwrap();
        let long = format!("v4@local@{}", "x/".repeat(300));
        store.put("v4@local@a", b"one").unwrap();
        store.put("v4@local@a", b"two").unwrap();
        store.put(&long, b"long\nvalue").unwrap();
        store.put("grace@n1", b"g").unwrap();
        assert_eq!(store.get("v4@local@a").unwrap(), Some(b"two".to_vec()));
        assert_eq!(store.get(&long).unwrap(), Some(b"long\nvalue".to_vec()));
        assert_eq!(store.get("v4@local@zz").unwrap(), None);
        let scan = store.scan("v4@").unwrap();
        let keys: Vec<_> = scan.entries.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys, vec!["v4@local@a".to_string(), long.clone()]);
        assert!(scan.skipped.is_empty());
        assert!(store.delete("v4@local@a").unwrap());
        assert!(!store.delete("v4@local@a").unwrap());
        assert!(store.delete(&long).unwrap());
        assert_eq!(store.scan("v4@").unwrap().entries.len(), 0);
        // No temp files are left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec![file_name_for_key("grace@n1")]);
    }

    #[test]
    fn bad_entries_are_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::open(dir.path()).unwrap();
        store.put("v4@local@good", b"v").unwrap();
        fs::write(dir.path().join("v4@local@forged"), b"v4@local@other\nv").unwrap();
        fs::write(dir.path().join("v4@local@nonewline"), b"garbage").unwrap();
        fs::write(dir.path().join("not a key"), b"x").unwrap();
        fs::write(dir.path().join("#0000"), b"v4@local@h\nv").unwrap();
        fs::write(dir.path().join(".tmp-1-1"), b"partial").unwrap();
        let scan = store.scan("v4@").unwrap();
        assert_eq!(
            scan.entries,
            vec![("v4@local@good".to_string(), b"v".to_vec())]
        );
        assert_eq!(scan.skipped.len(), 4, "{:?}", scan.skipped);
        assert!(store.get("v4@local@forged").is_err());
    }

    /// A FIFO would hang open(); a link to /dev/zero would be read for ever; a directory or
    /// an oversized file is not ours either. Each is skipped and named, with the key name.
    #[test]
    fn only_regular_files_of_bounded_size_are_read() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::open(dir.path()).unwrap();
        store.put("v4@local@good", b"v").unwrap();
        let fifo = dir.path().join(file_name_for_key("v4@local@fifo"));
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        symlink(
            "/dev/zero",
            dir.path().join(file_name_for_key("v4@local@zero")),
        )
        .unwrap();
        let elsewhere = dir.path().join("elsewhere");
        fs::write(&elsewhere, b"v4@local@linked\nv").unwrap();
        symlink(
            &elsewhere,
            dir.path().join(file_name_for_key("v4@local@linked")),
        )
        .unwrap();
        fs::create_dir(dir.path().join(file_name_for_key("v4@local@dir"))).unwrap();
        let big = dir.path().join(file_name_for_key("v4@local@big"));
        let mut content = b"v4@local@big\n".to_vec();
        content.resize(MAX_ENTRY_BYTES as usize + 10, b'x');
        fs::write(&big, content).unwrap();

        let start = std::time::Instant::now();
        let scan = store.scan("v4@").unwrap();
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "a read blocked"
        );
        assert_eq!(
            scan.entries,
            vec![("v4@local@good".to_string(), b"v".to_vec())]
        );
        let reasons: Vec<String> = scan
            .skipped
            .iter()
            .map(|s| format!("{}: {}", s.location, s.reason))
            .collect();
        assert_eq!(reasons.len(), 5, "{reasons:?}");
        for (what, why) in [
            ("fifo", "a FIFO"),
            ("zero", "a symbolic link"),
            ("linked", "a symbolic link"),
            ("dir", "a directory"),
            ("big", "bytes, more than"),
        ] {
            assert!(
                reasons.iter().any(|r| r.contains(what) && r.contains(why)),
                "{what}: {reasons:?}"
            );
        }
        // Reading one key directly refuses the same way, without blocking.
        for key in ["v4@local@fifo", "v4@local@zero", "v4@local@big"] {
            assert!(store.get(key).is_err(), "{key}");
        }
    }

    #[test]
    fn missing_or_unwritable_dir_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = DirStore::open(&missing).err().unwrap().to_string();
        assert!(err.contains("nope") && err.contains("mkdir -p"), "{err}");
        let file = dir.path().join("file");
        fs::write(&file, b"").unwrap();
        let err = DirStore::open(&file).err().unwrap().to_string();
        assert!(err.contains("not a directory"), "{err}");
        assert!(store_keys_reject_newlines());
    }

    fn store_keys_reject_newlines() -> bool {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::open(dir.path()).unwrap();
        matches!(store.put("a\nb", b""), Err(StoreError::BadKey(_)))
    }
}

/// Property-based fuzzing of the directory store's file-name and entry decoding (issue 15;
/// docs/fuzzing.md): key <-> file name round trips for any storable key, arbitrary and
/// mutated names (only a key's canonical name decodes), entries split back into key and
/// value, and a real directory read back after writes and foreign files. 512 cases per
/// property (64 for the one that writes files); PROPTEST_CASES=N for a long run.
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::fuzzing::config;
    use proptest::prelude::*;
    use proptest::sample::Index;
    use std::collections::BTreeMap;

    /// Keys a store takes: not empty, no newline or NUL; short and long (hashed names),
    /// with the escaping's own characters over-represented.
    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => "[^\n\0]{1,40}",
            3 => "[.%#/@:()a-zA-Z0-9 _-]{1,40}",
            1 => "[^\n\0]{150,260}",
            1 => "%[0-9A-F]{2}[.a]{0,3}",
        ]
    }

    proptest! {
        #![proptest_config(config("dir"))]

        /// (d) Every storable key gets a file name that is safe (no '/', no leading '.',
        /// within NAME_MAX) and decodes back to the key, or, when the escaped key is too
        /// long, a hashed name that decodes to nothing (the key is read from the file).
        #[test]
        fn file_names_round_trip_for_any_key(key in key()) {
            let name = file_name_for_key(&key);
            prop_assert!(!name.is_empty() && name.len() <= 255, "{}", name);
            prop_assert!(!name.contains('/') && !name.starts_with('.'), "{}", name);
            if name.starts_with(HASHED_PREFIX) {
                prop_assert!(encode_key(&key).len() > MAX_PLAIN_NAME);
                prop_assert_eq!(name.len(), 65);
                prop_assert_eq!(decode_file_name(&name), None);
            } else {
                prop_assert_eq!(decode_file_name(&name), Some(key));
            }
        }

        /// (c)(a) Names mutated (a character replaced, removed or added, an escape cut) and
        /// arbitrary names: a name decodes only if it is exactly its key's name.
        #[test]
        fn only_canonical_names_decode(
            key in key(),
            at in any::<Index>(),
            with in prop_oneof![Just('%'), Just('.'), Just('#'), Just('a'), any::<char>()],
            how in 0u8..3,
            arbitrary in "[%0-9A-Fa-f.+a-z@:() é-]{0,24}",
        ) {
            let name = encode_key(&key);
            let mut chars: Vec<char> = name.chars().collect();
            let i = at.index(chars.len() + 1);
            match how {
                0 if i < chars.len() => chars[i] = with,
                1 if i < chars.len() => {
                    chars.remove(i);
                }
                _ => chars.insert(i, with),
            }
            let mutated: String = chars.into_iter().collect();
            for name in [mutated.as_str(), arbitrary.as_str()] {
                if let Some(k) = decode_file_name(name) {
                    prop_assert_eq!(encode_key(&k), name);
                    prop_assert!(check_key(&k).is_ok(), "{:?}", k);
                }
            }
        }

        /// (d)(b)(a) An entry splits back into its key and value (values may hold
        /// newlines); a file cut before its first newline has no key; arbitrary content
        /// splits only at its first newline.
        #[test]
        fn entries_split_into_key_and_value(
            key in key(),
            value in prop::collection::vec(any::<u8>(), 0..64),
            garbage in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let content = [key.as_bytes(), b"\n", &value].concat();
            prop_assert_eq!(split_entry(&content), Some((key.as_str(), &value[..])));
            for cut in 0..=key.len() {
                prop_assert_eq!(split_entry(&content[..cut]), None);
            }
            if let Some((k, v)) = split_entry(&garbage) {
                prop_assert!(!k.contains('\n'));
                prop_assert_eq!([k.as_bytes(), b"\n", v].concat(), garbage);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: config("dir").cases.div_ceil(8), ..config("dir") })]

        /// (d) Through real files: what was put is what a scan and a get return; a file
        /// whose name is a key but whose content names another key is skipped, not read
        /// as either.
        #[test]
        fn a_directory_reads_back_what_was_put(
            writes in prop::collection::vec((key(), prop::collection::vec(any::<u8>(), 0..32)), 1..6),
            foreign in key(),
        ) {
            let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
            let store = DirStore::open(dir.path()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut want = BTreeMap::new();
            for (k, v) in &writes {
                store.put(k, v).map_err(|e| TestCaseError::fail(e.to_string()))?;
                want.insert(k.clone(), v.clone());
            }
            prop_assume!(!want.contains_key(&foreign));
            // A file named for `foreign` holding another key's entry.
            let (other, _) = want.iter().next().map(|(k, v)| (k.clone(), v.clone())).unwrap_or_default();
            fs::write(dir.path().join(file_name_for_key(&foreign)), [other.as_bytes(), b"\nx"].concat())
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let scan = store.scan("").map_err(|e| TestCaseError::fail(e.to_string()))?;
            let got: BTreeMap<String, Vec<u8>> = scan.entries.into_iter().collect();
            prop_assert_eq!(&got, &want);
            prop_assert_eq!(scan.skipped.len(), 1, "{:?}", scan.skipped);
            for (k, v) in &want {
                prop_assert_eq!(store.get(k).ok().flatten(), Some(v.clone()));
            }
        }
    }
}
