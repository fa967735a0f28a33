//! The dir store under faults, against the real ganesha.nfsd (single node, the embedded
//! default): a disk that fills, a store remounted read-only, a store full at start-up, and
//! files in the store directory that are not records (a FIFO, a link to a device, a huge
//! file). No client is admitted without its record being either stored or kept and retried
//! (D1); nothing hangs; the operator sees it (`ganesha-ctdb status`, one CRIT line per
//! fault).

mod common;

use common::single::Server;
use common::{owners, run};
use nfs4_client::{Client, LockType};
use serial_test::serial;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmpfs of `size` mounted over `path` for the test; unmounted on drop (also on panic).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path));
        Tmpfs(path.to_path_buf())
    }

    fn remount(&self, opts: &str) {
        run(Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(&self.0));
    }

    /// Fills it up with a dot-file (the store skips dot-files).
    fn fill(&self) {
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=4k"])
            .arg(format!("of={}", self.0.join(".filler").display()))
            .output();
    }

    fn free(&self) {
        std::fs::remove_file(self.0.join(".filler")).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn server(grace: u32) -> (Server, Tmpfs) {
    let mut s = Server::with_grace("CTDB_RECOVERY { Dir = $STORE; Node_Id = n1; }", grace);
    let fs = Tmpfs::mount(&s.path("store"), "1m");
    s.env.push((
        "GANESHA_CTDB_RUNDIR".into(),
        s.path("run/gctdb").display().to_string(),
    ));
    (s, fs)
}

fn status(s: &Server) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ganesha-ctdb"))
        .arg("--dir")
        .arg(s.path("store"))
        .arg("status")
        .env("GANESHA_CTDB_RUNDIR", s.path("run/gctdb"))
        .output()
        .unwrap();
    assert!(out.status.success(), "status: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits (5 s at most) until `status` shows every one of `needles`: it reads what the
/// node publishes once a second.
fn status_shows(s: &Server, needles: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let st = status(s);
        if needles.iter().all(|n| st.contains(n)) {
            return;
        }
        assert!(Instant::now() < deadline, "want {needles:?}:\n{st}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn crit_lines(s: &Server, needle: &str) -> usize {
    s.log()
        .lines()
        .filter(|l| l.contains(":CRIT :") && l.contains(needle))
        .count()
}

/// A client with an open file and a lock on it.
struct Locked {
    client: Client,
    fh: Vec<u8>,
}

fn connect_and_lock(s: &Server, i: usize) -> Locked {
    let path = format!("export/c{i}.txt");
    std::fs::write(s.path(&path), "x").unwrap();
    let mut client = s.client(1, &owners::linux_v41(1, &format!("client{i}")));
    client
        .establish()
        .unwrap_or_else(|e| panic!("client {i}: {e}\n{}", s.log()));
    client.reclaim_complete().unwrap();
    let mut f = client.open(&path).unwrap();
    client.lock(&mut f, LockType::Write, 0, 10, false).unwrap();
    Locked { client, fh: f.fh }
}

fn wait_records(s: &Server, want: usize, limit: Duration) -> Duration {
    let start = Instant::now();
    while s.records().len() < want {
        assert!(
            start.elapsed() < limit,
            "{} of {want} records stored after {limit:?}:\n{}",
            s.records().len(),
            s.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

/// 30 NFSv4.1 clients connect while the store's disk is full, 10 more while it is
/// read-only: every one is admitted, its record kept and counted, one CRIT line says so,
/// `status` shows them pending; once the disk takes writes again every record lands within
/// seconds; after a SIGKILL every one of the 40 clients reclaims its open and lock.
#[test]
#[serial]
fn a_full_or_read_only_store_loses_no_client() {
    let (mut s, fs) = server(12);
    s.start();
    s.wait_for_log("NOT IN GRACE", 0, Duration::from_secs(30));
    fs.fill();
    let mut clients: Vec<Locked> = (0..30).map(|i| connect_and_lock(&s, i)).collect();
    assert!(
        s.records().len() < 30,
        "the disk was not full: {}",
        s.records().len()
    );
    assert_eq!(
        crit_lines(&s, "store fault:"),
        1,
        "one CRIT line:\n{}",
        s.log()
    );
    status_shows(&s, &["pending, the oldest for", "No space left on device"]);
    fs.free();
    let took = wait_records(&s, 30, Duration::from_secs(10));
    eprintln!("disk full: 30/30 records stored {took:?} after space returned");
    assert!(s.log().contains("store fault cleared"), "{}", s.log());
    status_shows(&s, &["Records pending durability: none"]);

    fs.remount("ro");
    clients.extend((30..40).map(|i| connect_and_lock(&s, i)));
    assert_eq!(s.records().len(), 30);
    status_shows(&s, &["10 pending"]);
    fs.remount("rw");
    let took = wait_records(&s, 40, Duration::from_secs(10));
    eprintln!("read-only store: 10/10 records stored {took:?} after the remount");

    s.kill();
    s.start();
    for (i, c) in clients.iter_mut().enumerate() {
        c.client.disconnect();
        c.client.establish().unwrap();
        let mut r = c
            .client
            .reclaim_open(&c.fh)
            .unwrap_or_else(|e| panic!("client {i} reclaims: {e}\n{}", s.log()));
        c.client.lock(&mut r, LockType::Write, 0, 10, true).unwrap();
    }
}

/// The store full at start-up: the clients reclaim (their rewrites are kept), space is
/// freed, and the grace period's end does not take them for clients that did not reclaim;
/// a start with nothing to reclaim leaves grace although its grace record cannot be
/// stored, and the log says why.
#[test]
#[serial]
fn a_store_full_at_start_up_keeps_reclaimed_clients_and_still_leaves_grace() {
    let (mut s, fs) = server(12);
    s.start();
    s.wait_for_log("NOT IN GRACE", 0, Duration::from_secs(30));
    let mut clients: Vec<Locked> = (0..8).map(|i| connect_and_lock(&s, i)).collect();
    assert_eq!(s.records().len(), 8);
    s.kill();
    fs.fill();
    s.start();
    for c in clients.iter_mut() {
        c.client.disconnect();
        c.client.establish().unwrap();
        let mut r = c.client.reclaim_open(&c.fh).unwrap();
        c.client.lock(&mut r, LockType::Write, 0, 10, true).unwrap();
        c.client.reclaim_complete().unwrap();
    }
    let ends = s.grace_ends();
    let mut all: Vec<&mut Client> = clients.iter_mut().map(|c| &mut c.client).collect();
    s.wait_for_grace_end(ends, Duration::from_secs(40), &mut all);
    fs.free();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        s.records().len(),
        8,
        "end_grace dropped clients that reclaimed:\n{}",
        s.log()
    );
    // Once more: they are offered again (and a newcomer still waits for grace).
    s.kill();
    s.start();
    for c in clients.iter_mut() {
        c.client.disconnect();
        c.client.establish().unwrap();
        c.client.reclaim_open(&c.fh).unwrap();
    }
    drop(clients);

    // Nothing to reclaim and a full disk: grace still ends, and the log says why.
    let (mut s, fs) = server(12);
    s.start();
    s.wait_for_log("NOT IN GRACE", 0, Duration::from_secs(30));
    s.kill();
    fs.fill();
    let ends = s.grace_ends();
    s.start();
    s.wait_for_grace_end(ends, Duration::from_secs(30), &mut []);
    assert!(
        s.log()
            .contains("leaving grace although this node's grace record cannot be stored")
            && s.log().contains("No space left on device"),
        "{}",
        s.log()
    );
    assert!(!s.log().contains("node(s) [] still recover"), "{}", s.log());
    let mut newcomer = s.client(1, &owners::linux_v41(1, "newcomer"));
    newcomer.establish().unwrap();
    newcomer.reclaim_complete().unwrap();
    std::fs::write(s.path("export/n.txt"), "x").unwrap();
    assert!(newcomer.open("export/n.txt").is_ok());
}

/// What lies in the store directory and is not a record — a FIFO named like a key (open()
/// would wait for a writer for ever), a link to /dev/zero (endless), a huge file — is
/// skipped with a warning naming it; Ganesha starts at once and the real records are
/// offered.
#[test]
#[serial]
fn entries_that_are_not_records_are_skipped_without_hanging_ganesha() {
    let mut s = Server::with_grace("CTDB_RECOVERY { Dir = $STORE; Node_Id = n1; }", 12);
    s.start();
    s.wait_for_log("NOT IN GRACE", 0, Duration::from_secs(30));
    let mut c = connect_and_lock(&s, 1);
    s.kill();
    let store = s.path("store");
    let name = |k: &str| store.join(ganesha_ctdb_recov::store::dir::file_name_for_key(k));
    run(Command::new("mkfifo").arg(name("v4@local@fifo")));
    std::os::unix::fs::symlink("/dev/zero", name("v4@local@zero")).unwrap();
    let big = std::fs::File::create(name("v4@local@big")).unwrap();
    big.set_len(64 << 20).unwrap();
    let start = Instant::now();
    s.start();
    let took = start.elapsed();
    let log = s.log();
    for what in ["fifo", "zero", "big"] {
        assert!(
            log.lines()
                .any(|l| l.contains("skipping store entry") && l.contains(what)),
            "{what} not named:\n{log}"
        );
    }
    c.client.disconnect();
    c.client.establish().unwrap();
    c.client.reclaim_open(&c.fh).unwrap();
    eprintln!("started in {took:?} with a FIFO, a /dev/zero link and a 64 MiB file in the store");
}
