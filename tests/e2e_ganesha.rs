//! Against the real ganesha.nfsd (Debian's nfs-ganesha 4.3 + FSAL_VFS) in a network
//! namespace, with this crate's cdylib loaded as libganesha_rados_recov.so:
//! - NFSv4.0 and NFSv4.1 clients (crates/nfs4-client) open and lock; after SIGKILL and
//!   restart they reclaim (OPEN CLAIM_PREVIOUS, LOCK reclaim) while everything else gets
//!   NFS4ERR_GRACE; a client that never had state is refused reclaim; a client that did not
//!   reclaim in a grace period that completed cannot reclaim after the next restart;
//! - with only NFSv4.1 clients grace lifts as soon as they sent RECLAIM_COMPLETE;
//! - DESTROY_CLIENTID removes the record (rm_clid);
//! - libnfs' nfs-cat (another real NFSv4.0 client) gets a durable record that is dropped
//!   when it does not reclaim;
//! - a bad CTDB_RECOVERY block stops the server with a message naming the key.
//!
//! Processes are killed by the pid we started, the namespace is deleted, also on failure.

use nfs4_client::{LockType, NfsStat};
mod common;

use common::single::Server;
use serial_test::serial;
use std::time::{Duration, Instant};

#[test]
#[serial]
fn a_v40_clients_record_is_durable_offered_after_a_crash_and_dropped_when_it_does_not_reclaim() {
    let mut s = Server::new("CTDB_RECOVERY { Store = dir; Dir = $STORE; Node_Id = e2e; }");
    s.start();
    assert!(
        s.log()
            .contains("recovery backend ready for Ganesha 4.3 layout"),
        "{}",
        s.log()
    );
    assert_eq!(s.nfs_cat("hello.txt"), "hello\n");
    let records = s.records();
    assert_eq!(records.len(), 1, "{records:?}");
    // NFSv4.0 does not say which server address it used: filed by the address of its
    // connection (a real libnfs client, whose owner names no address), tagged exactly as
    // Ganesha tags it (caller address, then the owner's length and bytes).
    assert!(
        records[0].starts_with("v4@127.0.0.1@::ffff:127.0.0.1-("),
        "{records:?}"
    );
    assert!(records[0].contains(":Libnfs pid:"), "{records:?}");

    s.kill();
    let ended_before = s.log().matches("NOT IN GRACE").count();
    s.start();
    assert!(s.log().contains("1 client(s) may reclaim"), "{}", s.log());
    assert_eq!(s.records().len(), 1, "the record survives the crash");

    // The operator's view of a single node: why it is in grace, and a clean pre-flight.
    let tool = |cmd: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ganesha-ctdb"))
            .args(["--store", "dir", "--dir"])
            .arg(s.path("store"))
            .arg(cmd)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (ok, status) = tool("status");
    let verdict = status.lines().next().unwrap_or_default();
    assert!(
        ok && verdict.starts_with("in grace")
            && verdict.contains("node e2e reclaims 127.0.0.1 for")
            && verdict.ends_with("0 of 1 client(s) back"),
        "{status}"
    );
    let (ok, check) = tool("check");
    assert!(
        ok && check.contains("check: 1 node(s) checked from node e2e; no problem found"),
        "{check}"
    );

    // nfs-cat's client does not reclaim; when grace completes it loses its record.
    s.wait_for_log("NOT IN GRACE", ended_before, Duration::from_secs(40));
    assert!(
        s.log()
            .contains("1 client(s) that did not reclaim lost their records"),
        "{}",
        s.log()
    );
    assert_eq!(s.records(), Vec::<String>::new());
}

#[test]
#[serial]
fn a_bad_ctdb_recovery_block_stops_ganesha_naming_the_key() {
    let cases = [
        (
            "CTDB_RECOVERY { Store = rados; }",
            "CTDB_RECOVERY { Store }: \"rados\" is not a store",
        ),
        (
            "CTDB_RECOVERY { Stroe = dir; }",
            "Unknown parameter (Stroe)",
        ),
        (
            "CTDB_RECOVERY { Dir = relative; }",
            "CTDB_RECOVERY { Dir }: \"relative\" is not an absolute path",
        ),
        (
            "CTDB_RECOVERY { Dir = /nonexistent/gctdb; }",
            "mkdir -p /nonexistent/gctdb",
        ),
    ];
    for (block, expected) in cases {
        let mut s = Server::new(block);
        let status = s.start_expect_exit();
        assert!(!status.success(), "{block}: {status}");
        let log = s.log();
        assert!(
            log.contains(expected),
            "{block}: want {expected:?} in\n{log}"
        );
        assert!(
            log.contains("FATAL"),
            "{block}: Ganesha should refuse to start:\n{log}"
        );
    }
}

fn refused(res: Result<impl std::fmt::Debug, nfs4_client::Error>, allowed: &[NfsStat], what: &str) {
    match res {
        Err(e) if e.status().is_some_and(|s| allowed.contains(&s)) => {}
        other => panic!("{what}: want one of {allowed:?}, got {other:?}"),
    }
}

/// Every client is filed by the server address it used: NFSv4.1 from its client record,
/// NFSv4.0 from its connection (Ganesha 4.3; src/ganesha/layout.rs).
fn key_of(_minor_version: u32, owner: &str) -> String {
    format!("v4@127.0.0.1@::ffff:127.0.0.1-({}:{owner})", owner.len())
}

#[test]
#[serial]
fn v40_and_v41_clients_reclaim_opens_and_locks_after_sigkill_and_only_they_may() {
    let mut s = Server::with_grace(
        "CTDB_RECOVERY { Store = dir; Dir = $STORE; Node_Id = e2e; }",
        20,
    );
    s.start();
    let mut c40 = s.client(0, "c40");
    let mut c41 = s.client(1, "c41");
    let mut lazy = s.client(1, "lazy");
    c40.establish().unwrap();
    let f40 = c40.open("export/f40.txt").unwrap();
    let mut f40_before = f40.clone();
    c40.lock(&mut f40_before, LockType::Write, 0, 100, false)
        .unwrap();
    c41.establish().unwrap();
    c41.reclaim_complete().unwrap();
    let mut f41 = c41.open("export/f41.txt").unwrap();
    c41.lock(&mut f41, LockType::Write, 0, 100, false).unwrap();
    lazy.establish().unwrap();
    lazy.reclaim_complete().unwrap();
    let mut flazy = lazy.open("export/lazy.txt").unwrap();
    lazy.lock(&mut flazy, LockType::Write, 0, 100, false)
        .unwrap();
    let mut keys = s.records();
    keys.sort();
    let mut want = vec![key_of(0, "c40"), key_of(1, "c41"), key_of(1, "lazy")];
    want.sort();
    assert_eq!(keys, want, "add_clid made each record durable");

    // Crash. The records survive; all three may reclaim.
    s.kill();
    let ended = s.grace_ends();
    s.start();
    assert!(s.log().contains("3 client(s) may reclaim"), "{}", s.log());

    // A client that never had state is refused reclaim, and normal opens wait for grace.
    let mut stranger = s.client(1, "stranger");
    stranger.establish().unwrap();
    refused(
        stranger.reclaim_open(&f41.fh),
        &[NfsStat::NO_GRACE, NfsStat::RECLAIM_BAD],
        "reclaim by a client that never had state",
    );
    let mut stranger40 = s.client(0, "stranger40");
    stranger40.establish().unwrap();
    refused(
        stranger40.open("export/other.txt"),
        &[NfsStat::GRACE],
        "OPEN CLAIM_NULL in grace",
    );

    // Both real clients reclaim the open and the lock.
    for c in [&mut c40, &mut c41] {
        c.disconnect();
        c.establish().unwrap();
    }
    let mut r40 = c40.reclaim_open(&f40.fh).expect("v4.0 OPEN CLAIM_PREVIOUS");
    c40.lock(&mut r40, LockType::Write, 0, 100, true)
        .expect("v4.0 LOCK reclaim");
    let mut r41 = c41.reclaim_open(&f41.fh).expect("v4.1 OPEN CLAIM_PREVIOUS");
    c41.lock(&mut r41, LockType::Write, 0, 100, true)
        .expect("v4.1 LOCK reclaim");
    c41.reclaim_complete().unwrap();
    // A non-reclaim LOCK is refused during grace, even for a client that reclaimed.
    let mut probe = r41.clone();
    refused(
        c41.lock(&mut probe, LockType::Write, 200, 100, false),
        &[NfsStat::GRACE],
        "non-reclaim LOCK in grace",
    );

    // lazy never comes back. v4.0 clients keep grace for the full Grace_Period.
    s.wait_for_grace_end(
        ended,
        Duration::from_secs(45),
        &mut [&mut c40, &mut c41, &mut stranger40],
    );
    assert!(
        s.log()
            .contains("1 client(s) that did not reclaim lost their records"),
        "{}",
        s.log()
    );
    let keys = s.records();
    assert!(!keys.contains(&key_of(1, "lazy")), "{keys:?}");
    assert!(
        keys.contains(&key_of(0, "c40")) && keys.contains(&key_of(1, "c41")),
        "{keys:?}"
    );

    // Out of grace the reclaimed locks are real: a conflicting lock is denied, a free range granted.
    let mut other = stranger40.open("export/f40.txt").expect("open after grace");
    refused(
        stranger40.lock(&mut other, LockType::Write, 50, 10, false),
        &[NfsStat::DENIED],
        "conflict with the reclaimed v4.0 lock",
    );
    let mut r41b = r41.clone();
    c41.lock(&mut r41b, LockType::Write, 200, 100, false)
        .expect("normal LOCK after grace");

    // `stranger` stopped renewing: the reaper expires it and rm_clid removes its record.
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.records().contains(&key_of(1, "stranger")) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
        for c in [&mut c40, &mut c41, &mut stranger40] {
            c.renew().unwrap();
        }
    }

    // Next crash: lazy lost its right to reclaim; the clients that reclaimed keep theirs,
    // and so does stranger40, which arrived during grace and is a live client now.
    let mut keys = s.records();
    keys.sort();
    let mut want = vec![key_of(0, "c40"), key_of(1, "c41"), key_of(0, "stranger40")];
    want.sort();
    assert_eq!(keys, want);
    s.kill();
    s.start();
    assert!(s.log().contains("3 client(s) may reclaim"), "{}", s.log());
    lazy.disconnect();
    lazy.establish().unwrap();
    refused(
        lazy.reclaim_open(&flazy.fh),
        &[NfsStat::NO_GRACE, NfsStat::RECLAIM_BAD],
        "reclaim by a client whose record went with the completed grace period",
    );
    for c in [&mut c40, &mut c41] {
        c.disconnect();
        c.establish().unwrap();
    }
    c41.reclaim_open(&f41.fh)
        .expect("a client that reclaimed last time may reclaim again");
    c40.reclaim_open(&f40.fh)
        .expect("a v4.0 client that reclaimed last time may reclaim again");
}

#[test]
#[serial]
fn with_only_v41_clients_grace_lifts_once_they_sent_reclaim_complete() {
    let mut s = Server::with_grace(
        "CTDB_RECOVERY { Store = dir; Dir = $STORE; Node_Id = e2e; }",
        90,
    );
    s.start();
    let mut c = s.client(1, "early");
    c.establish().unwrap();
    c.reclaim_complete().unwrap();
    let mut f = c.open("export/f41.txt").unwrap();
    c.lock(&mut f, LockType::Write, 0, 100, false).unwrap();

    // A clean goodbye removes the record at once (DESTROY_CLIENTID -> rm_clid).
    let mut bye = s.client(1, "goodbye");
    bye.establish().unwrap();
    assert!(s.records().contains(&key_of(1, "goodbye")));
    bye.destroy().unwrap();
    assert!(
        !s.records().contains(&key_of(1, "goodbye")),
        "{:?}",
        s.records()
    );

    s.kill();
    let ended = s.grace_ends();
    s.start();
    let restarted = Instant::now();
    c.disconnect();
    c.establish().unwrap();
    let mut r = c.reclaim_open(&f.fh).unwrap();
    c.lock(&mut r, LockType::Write, 0, 100, true).unwrap();
    c.reclaim_complete().unwrap();
    // Ganesha asks the backend at its next reaper tick (5 s with lease 10); 30 s is far
    // below the 90 s Grace_Period that a v4.0 client would have to wait.
    s.wait_for_grace_end(ended, Duration::from_secs(30), &mut [&mut c]);
    // (wait_for_grace_end has failed the test if grace lasted past those 30 s.)
    let lifted_after = restarted.elapsed();
    let mut next = s.client(0, "after-grace");
    next.establish().unwrap();
    let mut o = next
        .open("export/other.txt")
        .expect("normal OPEN after early lift");
    next.lock(&mut o, LockType::Write, 0, 10, false).unwrap();
    eprintln!("grace lifted {lifted_after:?} after the restart (Grace_Period 90 s)");
}
