//! A read-only snapshot of a CTDB persistent database's local TDB file, as smbd and the
//! `ctdb` tool read persistent databases (locally, not through a traverse in ctdbd).
//!
//! The format and locking are Samba's lib/tdb (4.17.12 and 4.22.11 are the same on disk;
//! docs/architecture.md, "native ctdbd client", has the references). ctdbd opens persistent
//! databases with TDB_DEFAULT: the old hash function, no mutexes, fcntl locks only.
//!
//! [`snapshot`] takes a read lock on the whole record area (bytes 168 to the end) — the lock
//! tdbbackup takes, which every writer's commit and CTDB's freeze (a write lock on the same
//! range, held for the whole recovery) exclude — without ever blocking: it retries until a
//! deadline and then reports [`TdbError::Busy`] (a CTDB recovery in progress), copies the
//! file and lets go. The lock is an open-file-description lock, so closing another
//! descriptor of the same file in this process does not drop it. [`parse`] then walks every
//! hash chain in memory; it trusts nothing in the file: every offset and length is checked
//! against the image, a chain that loops or two chains that meet are corruption, not a hang.
//! An interrupted commit (a valid recovery record) is [`TdbError::NeedsRecovery`]: only a
//! writer can roll it back, which ctdbd does at its next lock.

use crate::proto::types::LtdbHeader;
use std::collections::HashSet;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

const MAGIC_FOOD: &[u8] = b"TDB file\n\0";
const TDB_VERSION: u32 = 0x2601_1967 + 6;
const TDB_MAGIC: u32 = 0x2601_1999;
const TDB_DEAD_MAGIC: u32 = 0xFEE1_DEAD;
const TDB_RECOVERY_MAGIC: u32 = 0xF53B_C0E7;
const HASH_RWLOCK_MAGIC: u32 = 0x0BAD_1A51;
const FEATURE_FLAG_MAGIC: u32 = 0x0BAD_1A52;
/// sizeof(struct tdb_header): the free list head, then one head per hash chain.
const FREELIST_TOP: usize = 168;
const RECORD_HEADER: usize = 24;
/// A snapshot larger than this is refused rather than read into memory.
pub const MAX_IMAGE: u64 = 1 << 30;

/// The key CTDB keeps a persistent database's sequence number under (not a record).
pub const SEQNUM_KEY: &[u8] = b"__db_sequence_number__\0";

#[derive(Debug)]
pub enum TdbError {
    Io {
        what: String,
        error: std::io::Error,
    },
    /// Another process held a write lock on the records until the deadline (a CTDB
    /// recovery freezes the database that way, or a commit was running).
    Busy(Duration),
    /// A commit was interrupted; a writer rolls it back at its next lock.
    NeedsRecovery,
    /// The file is not a TDB this reader understands (byte order, mutexes, version).
    Unsupported(String),
    /// The file contradicts itself at the given place.
    Corrupt(String),
}

impl std::fmt::Display for TdbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TdbError::Io { what, error } => write!(f, "{what}: {error}"),
            TdbError::Busy(d) => write!(
                f,
                "locked by a writer for {d:?} (a CTDB recovery freezes the database so)"
            ),
            TdbError::NeedsRecovery => {
                f.write_str("a commit was interrupted and not yet rolled back by ctdbd")
            }
            TdbError::Unsupported(why) => write!(f, "unsupported TDB file: {why}"),
            TdbError::Corrupt(why) => write!(f, "corrupt TDB file: {why}"),
        }
    }
}

impl std::error::Error for TdbError {}

type Result<T> = std::result::Result<T, TdbError>;

fn u32_at(image: &[u8], off: usize) -> Option<u32> {
    let b = image.get(off..off.checked_add(4)?)?;
    Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// Copies the file at `path` under a read lock on its record area, waiting at most `wait`
/// for writers (never blocking in the kernel).
pub fn snapshot(path: &Path, wait: Duration) -> Result<Vec<u8>> {
    let io = |what: &str| {
        let what = format!("{what} {}", path.display());
        move |error| TdbError::Io { what, error }
    };
    let mut file = std::fs::File::open(path).map_err(io("open"))?;
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(1);
    loop {
        match lock_records(&file) {
            Ok(()) => break,
            Err(e) if is_contended(e) => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(TdbError::Busy(wait));
                }
                std::thread::sleep(pause.min(deadline - now));
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(e) => {
                return Err(TdbError::Io {
                    what: format!("read lock on {}", path.display()),
                    error: e.into(),
                })
            }
        }
    }
    let size = file.metadata().map_err(io("stat"))?.len();
    if size > MAX_IMAGE {
        return Err(TdbError::Unsupported(format!(
            "{} is {size} bytes, more than this reader copies ({MAX_IMAGE})",
            path.display()
        )));
    }
    let mut image = Vec::with_capacity(size as usize);
    (&mut file)
        .take(MAX_IMAGE)
        .read_to_end(&mut image)
        .map_err(io("read"))?;
    // Closing the file releases the lock (the only descriptor of its description).
    drop(file);
    Ok(image)
}

fn is_contended(e: nix::errno::Errno) -> bool {
    use nix::errno::Errno;
    matches!(
        e,
        Errno::EAGAIN | Errno::EACCES | Errno::EINTR | Errno::EDEADLK
    )
}

/// F_RDLCK on [168, end of file and beyond), as an open-file-description lock.
fn lock_records(file: &std::fs::File) -> std::result::Result<(), nix::errno::Errno> {
    lock_record_area(file, libc::F_RDLCK)
}

/// `kind` (F_RDLCK, F_WRLCK) on the record area, without waiting.
fn lock_record_area(
    file: &std::fs::File,
    kind: libc::c_int,
) -> std::result::Result<(), nix::errno::Errno> {
    let range = libc::flock {
        l_type: kind as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: FREELIST_TOP as libc::off_t,
        l_len: 0,
        l_pid: 0,
    };
    nix::fcntl::fcntl(file.as_raw_fd(), nix::fcntl::FcntlArg::F_OFD_SETLK(&range)).map(|_| ())
}

/// Every live record of a TDB image, as (key, data), in chain order.
pub fn parse(image: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let corrupt = |why: String| TdbError::Corrupt(why);
    if image.len() < FREELIST_TOP + 4 {
        return Err(corrupt(format!(
            "{} bytes, shorter than a TDB header",
            image.len()
        )));
    }
    if &image[..MAGIC_FOOD.len()] != MAGIC_FOOD {
        return Err(TdbError::Unsupported("no \"TDB file\" magic".into()));
    }
    let at = |off: usize| u32_at(image, off).unwrap_or(0);
    match at(32) {
        TDB_VERSION => {}
        v if v.swap_bytes() == TDB_VERSION => {
            return Err(TdbError::Unsupported(
                "written in the other byte order (CTDB's record headers would be too)".into(),
            ))
        }
        v => return Err(TdbError::Unsupported(format!("version {v:#x}"))),
    }
    match at(40) {
        0 | HASH_RWLOCK_MAGIC => {}
        FEATURE_FLAG_MAGIC if at(60) == 0 => {}
        FEATURE_FLAG_MAGIC => {
            return Err(TdbError::Unsupported(format!(
                "feature flags {:#x} (mutex locking: fcntl locks do not exclude its writers)",
                at(60)
            )))
        }
        r => return Err(TdbError::Unsupported(format!("rwlocks field {r:#x}"))),
    }
    let hash_size = at(36) as usize;
    let data_start = hash_size
        .checked_mul(4)
        .and_then(|t| t.checked_add(FREELIST_TOP + 4))
        .filter(|d| hash_size > 0 && *d <= image.len())
        .ok_or_else(|| {
            corrupt(format!(
                "hash size {hash_size} does not fit a file of {} bytes",
                image.len()
            ))
        })?;
    let recovery = at(44) as usize;
    if recovery != 0 {
        match u32_at(image, recovery.saturating_add(20)) {
            None => return Err(TdbError::NeedsRecovery),
            Some(TDB_RECOVERY_MAGIC) => return Err(TdbError::NeedsRecovery),
            Some(_) => {}
        }
    }
    let mut seen: HashSet<usize> = HashSet::new();
    let mut out = Vec::new();
    for chain in 0..hash_size {
        let mut off = at(FREELIST_TOP + 4 + 4 * chain) as usize;
        while off != 0 {
            let here = |why: &str| corrupt(format!("chain {chain}, record at {off}: {why}"));
            if off < data_start || off % 4 != 0 {
                return Err(here("offset outside the record area or misaligned"));
            }
            if !seen.insert(off) {
                return Err(here("reached twice (a chain loops, or two chains meet)"));
            }
            let field = |i: usize| u32_at(image, off + 4 * i);
            let (Some(next), Some(rec_len), Some(key_len), Some(data_len), Some(magic)) =
                (field(0), field(1), field(2), field(3), field(5))
            else {
                return Err(here("record header past the end of the file"));
            };
            let (rec_len, key_len, data_len) =
                (rec_len as usize, key_len as usize, data_len as usize);
            match magic {
                TDB_MAGIC => {}
                TDB_DEAD_MAGIC => {
                    off = next as usize;
                    continue;
                }
                m => return Err(here(&format!("magic {m:#x} in a hash chain"))),
            }
            let body = off + RECORD_HEADER;
            let fits = key_len
                .checked_add(data_len)
                .is_some_and(|kd| kd <= rec_len)
                && body
                    .checked_add(rec_len)
                    .is_some_and(|end| end <= image.len());
            if !fits {
                return Err(here(&format!(
                    "key {key_len} + data {data_len} bytes do not fit its {rec_len} bytes or the file"
                )));
            }
            out.push((
                image[body..body + key_len].to_vec(),
                image[body + key_len..body + key_len + data_len].to_vec(),
            ));
            off = next as usize;
        }
    }
    Ok(out)
}

/// What one record of a CTDB database holds, past TDB.
#[derive(Debug, PartialEq, Eq)]
pub enum CtdbRecord<'a> {
    /// A live value (the bytes after the 24-byte ltdb header).
    Value(&'a [u8]),
    /// Deleted: a persistent database deletes by storing the header alone.
    Deleted,
    /// The database's sequence number, kept as a record.
    SequenceNumber,
    /// Shorter than the ltdb header.
    Invalid,
}

pub fn ctdb_record<'a>(key: &[u8], data: &'a [u8]) -> CtdbRecord<'a> {
    if key == SEQNUM_KEY {
        return CtdbRecord::SequenceNumber;
    }
    match LtdbHeader::split(data) {
        None => CtdbRecord::Invalid,
        Some((_, [])) => CtdbRecord::Deleted,
        Some((_, value)) => CtdbRecord::Value(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as the image builder takes it: magic, key, data.
    pub(crate) type Rec<'a> = (u32, &'a [u8], &'a [u8]);

    /// A TDB image as lib/tdb lays it out: `chains` heads, records appended in order.
    pub(crate) fn image(hash_size: u32, chains: &[(usize, Vec<Rec>)]) -> Vec<u8> {
        let mut img = vec![0u8; FREELIST_TOP + 4 + 4 * hash_size as usize];
        img[..MAGIC_FOOD.len()].copy_from_slice(MAGIC_FOOD);
        img[32..36].copy_from_slice(&TDB_VERSION.to_ne_bytes());
        img[36..40].copy_from_slice(&hash_size.to_ne_bytes());
        for (chain, records) in chains {
            let mut link = FREELIST_TOP + 4 + 4 * chain;
            for (magic, k, d) in records {
                let off = img.len();
                img[link..link + 4].copy_from_slice(&(off as u32).to_ne_bytes());
                let rec_len = (k.len() + d.len() + 4).div_ceil(4) * 4;
                for v in [
                    0u32,
                    rec_len as u32,
                    k.len() as u32,
                    d.len() as u32,
                    0,
                    *magic,
                ] {
                    img.extend_from_slice(&v.to_ne_bytes());
                }
                img.extend_from_slice(k);
                img.extend_from_slice(d);
                img.resize(off + RECORD_HEADER + rec_len, 0);
                let tail = (RECORD_HEADER + rec_len) as u32;
                let end = img.len();
                img[end - 4..].copy_from_slice(&tail.to_ne_bytes());
                link = off;
            }
        }
        img
    }

    #[test]
    fn live_records_are_read_and_dead_ones_skipped() {
        let img = image(
            3,
            &[
                (
                    0,
                    vec![(TDB_MAGIC, b"a", b"1"), (TDB_DEAD_MAGIC, b"b", b"2")],
                ),
                (2, vec![(TDB_MAGIC, b"c", b"33"), (TDB_MAGIC, b"d", b"")]),
            ],
        );
        let recs = parse(&img).unwrap();
        assert_eq!(
            recs,
            vec![
                (b"a".to_vec(), b"1".to_vec()),
                (b"c".to_vec(), b"33".to_vec()),
                (b"d".to_vec(), Vec::new())
            ]
        );
    }

    #[test]
    fn a_chain_that_loops_is_corrupt_not_a_hang() {
        let mut img = image(1, &[(0, vec![(TDB_MAGIC, b"a", b"1")])]);
        let first = u32_at(&img, FREELIST_TOP + 4).unwrap() as usize;
        img[first..first + 4].copy_from_slice(&(first as u32).to_ne_bytes());
        let e = parse(&img).unwrap_err().to_string();
        assert!(e.contains("reached twice"), "{e}");
    }

    #[test]
    fn an_interrupted_commit_is_reported_not_read() {
        let mut img = image(1, &[(0, vec![(TDB_MAGIC, b"a", b"1")])]);
        let rec = img.len();
        img.extend_from_slice(&[0u8; 24]);
        img[rec + 20..rec + 24].copy_from_slice(&TDB_RECOVERY_MAGIC.to_ne_bytes());
        img[44..48].copy_from_slice(&(rec as u32).to_ne_bytes());
        assert!(matches!(parse(&img), Err(TdbError::NeedsRecovery)));
        // A finished commit leaves the record with its magic cleared.
        img[rec + 20..rec + 24].copy_from_slice(&0u32.to_ne_bytes());
        assert_eq!(parse(&img).unwrap().len(), 1);
        // A recovery offset past the end: cannot tell, so not read.
        img[44..48].copy_from_slice(&(u32::MAX - 8).to_ne_bytes());
        assert!(matches!(parse(&img), Err(TdbError::NeedsRecovery)));
    }

    #[test]
    fn other_byte_order_and_mutex_files_are_refused() {
        let mut img = image(1, &[]);
        img[32..36].copy_from_slice(&TDB_VERSION.swap_bytes().to_ne_bytes());
        assert!(matches!(parse(&img), Err(TdbError::Unsupported(_))));
        let mut img = image(1, &[]);
        img[40..44].copy_from_slice(&FEATURE_FLAG_MAGIC.to_ne_bytes());
        img[60..64].copy_from_slice(&1u32.to_ne_bytes());
        assert!(parse(&img).unwrap_err().to_string().contains("mutex"));
    }

    #[test]
    fn ctdb_records_past_the_ltdb_header() {
        let live = [vec![0u8; 24], b"v1 x".to_vec()].concat();
        assert_eq!(ctdb_record(b"k", &live), CtdbRecord::Value(b"v1 x"));
        assert_eq!(ctdb_record(b"k", &[0u8; 24]), CtdbRecord::Deleted);
        assert_eq!(ctdb_record(b"k", &[0u8; 23]), CtdbRecord::Invalid);
        assert_eq!(ctdb_record(SEQNUM_KEY, &live), CtdbRecord::SequenceNumber);
    }

    /// Files written by lib/tdb itself (Debian's tdbtool), with stores, replacements and
    /// deletes, read back to what `tdbdump` prints for them.
    #[test]
    fn files_written_by_lib_tdb_read_back_as_tdbdump_prints_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.tdb");
        let mut script = format!("create {}\n", path.display());
        for i in 0..300 {
            script.push_str(&format!("store key{i} value-{i}-{}\n", "x".repeat(i % 37)));
        }
        for i in (0..300).step_by(3) {
            script.push_str(&format!("delete key{i}\n"));
        }
        for i in (1..300).step_by(7) {
            script.push_str(&format!("store key{i} replaced-{i}\n"));
        }
        let ran = std::process::Command::new("tdbtool")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().map(|mut s| s.write_all(script.as_bytes()));
                c.wait()
            });
        assert!(
            ran.is_ok_and(|s| s.success()),
            "tdbtool (Debian's tdb-tools) must be installed: scripts/deps.sh"
        );
        let img = snapshot(&path, Duration::from_secs(5)).unwrap();
        let mut got: Vec<(String, String)> = parse(&img)
            .unwrap()
            .into_iter()
            .map(|(k, v)| (String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()))
            .collect();
        got.sort();
        let mut want = Vec::new();
        for i in 0..300 {
            // Deleted (every third), then stored again where i % 7 == 1.
            let v = if i % 7 == 1 {
                format!("replaced-{i}")
            } else if i % 3 == 0 {
                continue;
            } else {
                format!("value-{i}-{}", "x".repeat(i % 37))
            };
            want.push((format!("key{i}"), v));
        }
        want.sort();
        assert_eq!(got, want);
    }

    /// A writer's lock on the records (CTDB's freeze, a commit) makes the snapshot wait and
    /// then say Busy; it never blocks past its deadline.
    #[test]
    fn a_frozen_database_is_busy_within_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.tdb");
        std::fs::write(&path, image(2, &[(1, vec![(TDB_MAGIC, b"k", b"v")])])).unwrap();
        let holder = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        lock_record_area(&holder, libc::F_WRLCK).unwrap();
        let start = Instant::now();
        let r = snapshot(&path, Duration::from_millis(300));
        assert!(matches!(r, Err(TdbError::Busy(_))), "{r:?}");
        assert!(start.elapsed() < Duration::from_secs(2));
        drop(holder);
        assert_eq!(
            parse(&snapshot(&path, Duration::from_millis(300)).unwrap()).unwrap(),
            vec![(b"k".to_vec(), b"v".to_vec())]
        );
    }
}

#[cfg(test)]
mod fuzz {
    use super::tests::image;
    use super::*;
    use proptest::prelude::*;

    fn valid() -> Vec<u8> {
        image(
            5,
            &[
                (
                    0,
                    vec![
                        (TDB_MAGIC, b"key-a", b"value-a"),
                        (TDB_DEAD_MAGIC, b"x", b"y"),
                    ],
                ),
                (
                    3,
                    vec![(TDB_MAGIC, b"k", b""), (TDB_MAGIC, b"key-c", b"cc")],
                ),
                (4, vec![(TDB_MAGIC, b"", b"empty key")]),
            ],
        )
    }

    proptest! {
        #![proptest_config(fuzz_config::config(concat!(env!("CARGO_MANIFEST_DIR"), "/proptest-regressions/tdb.txt")))]

        /// (a) A file ctdbd or anyone else wrote: any bytes are records or an error.
        #[test]
        fn any_bytes_parse_or_fail(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let _ = parse(&bytes);
        }

        /// (b), (c) Every truncation and word-sized mutation of a valid image is an error
        /// or records that lie inside the image (no panic, no loop, nothing invented).
        #[test]
        fn truncated_and_mutated_images_fail_or_stay_inside(
            cut in 0usize..400,
            at in 0usize..400,
            word in any::<u32>(),
        ) {
            let img = valid();
            let _ = parse(&img[..cut.min(img.len())]);
            let mut m = img.clone();
            let at = at.min(m.len().saturating_sub(4)) & !3;
            m[at..at + 4].copy_from_slice(&word.to_ne_bytes());
            if let Ok(recs) = parse(&m) {
                let total: usize = recs.iter().map(|(k, v)| k.len() + v.len()).sum();
                prop_assert!(total <= m.len());
            }
        }
    }

    #[test]
    fn the_valid_image_reads_back() {
        assert_eq!(
            parse(&valid()).unwrap(),
            vec![
                (b"key-a".to_vec(), b"value-a".to_vec()),
                (b"k".to_vec(), Vec::new()),
                (b"key-c".to_vec(), b"cc".to_vec()),
                (Vec::new(), b"empty key".to_vec()),
            ]
        );
    }
}
