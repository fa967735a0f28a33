//! rpc.statd's ha-callout with the ctdb store against a real 2-node ctdbd cluster (Debian's
//! ctdb 4.17): while the replicated database cannot commit (the other node's ctdbd is
//! stopped, so every transaction waits for it), `add-client` returns within its short wait
//! instead of holding the NLM LOCK (and with it Ganesha's grace reference) that made statd
//! call it; the record is kept in the local spool and lands in the database once ctdbd
//! commits again. On a healthy cluster the record is in the database when the callout
//! returns, as before. `del-client` (sent while an NLM LOCK still holds the reference too)
//! gives up within its short bound and leaves the record monitored, the safe side.

mod common;

use ganesha_ctdb_recov::statd_spool::{spool_dir, CALLOUT_WAIT};
use ganesha_ctdb_recov::store::ctdb::CtdbStore;
use ganesha_ctdb_recov::store::Store;
use nix::sys::signal::Signal;
use serial_test::serial;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use testbed::{Cluster, ClusterSpec};

/// The callout as the shipped script runs it, against node `i`'s ctdbd.
fn callout(c: &Cluster, i: usize, dir: &Path, client: &str) -> (Duration, String) {
    callout_action(c, i, dir, "add-client", client)
}

fn callout_action(
    c: &Cluster,
    i: usize,
    dir: &Path,
    action: &str,
    client: &str,
) -> (Duration, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/ganesha-conf/statd-callout");
    let start = Instant::now();
    let out = Command::new(script)
        .env("GANESHA_CTDB", env!("CARGO_BIN_EXE_ganesha-ctdb"))
        .env("CTDB_SOCKET", c.nodes[i].socket())
        .env(
            "GANESHA_CTDB_OPTS",
            format!("--store ctdb --dir {}", dir.display()),
        )
        .args([action, client, "server"])
        .output()
        .unwrap();
    let took = start.elapsed();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "callout failed: {err}");
    (took, err)
}

/// The statd records for `client` in the database, as node `i` reads it.
fn recorded(c: &Cluster, i: usize, client: &str) -> Vec<String> {
    records_of(c, i, client)
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

fn records_of(c: &Cluster, i: usize, client: &str) -> Vec<(String, Vec<u8>)> {
    let tool = ganesha_ctdb_recov::ctdb::CtdbTool::with_socket(c.nodes[i].socket());
    CtdbStore::open(Box::new(tool), "ganesha_recovery.tdb")
        .and_then(|s| s.scan("statd-state@"))
        .map(|s| {
            s.entries
                .into_iter()
                .filter(|(k, _)| k.ends_with(&format!("@{client}")))
                .collect()
        })
        .unwrap_or_default()
}

fn spooled(dir: &Path) -> usize {
    std::fs::read_dir(spool_dir(dir))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("spool"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
#[serial]
fn add_client_does_not_wait_on_a_database_that_cannot_commit_and_loses_nothing() {
    let mut c = Cluster::up(ClusterSpec::new(2, 2)).unwrap();
    c.wait_healthy(Duration::from_secs(90)).unwrap();
    c.wait_settled(Duration::from_secs(60), true).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let held: Vec<String> = c
        .ip_holders(0)
        .unwrap()
        .into_iter()
        .filter(|(_, h)| *h == Some(c.nodes[0].pnn))
        .map(|(ip, _)| ip.to_string())
        .collect();
    assert!(!held.is_empty(), "node 0 holds no public IP");
    let keys = |client: &str| -> Vec<String> {
        let mut k: Vec<String> = held
            .iter()
            .map(|ip| format!("statd-state@{ip}@{client}"))
            .collect();
        k.sort();
        k
    };

    // Healthy: in the database, on the other node too, when the callout returns.
    let (took, _) = callout(&c, 0, dir.path(), "host-healthy");
    assert_eq!(recorded(&c, 1, "host-healthy"), keys("host-healthy"));
    assert_eq!(spooled(dir.path()), 0);
    eprintln!("healthy add-client: {took:?}");

    let (two_took, two_err) = callout(&c, 0, dir.path(), "host-two");
    assert_eq!(
        recorded(&c, 1, "host-two"),
        keys("host-two"),
        "host-two in the database ({two_took:?}: {two_err})"
    );

    // del-client marks it unmonitored (kept for the next takeover notification).
    callout_action(&c, 0, dir.path(), "del-client", "host-healthy");
    assert!(
        records_of(&c, 1, "host-healthy")
            .iter()
            .all(|(_, v)| v.as_slice() == ganesha_ctdb_recov::statd::UNMONITORED),
        "{:?}",
        records_of(&c, 1, "host-healthy")
    );

    // Node 1's ctdbd stopped: node 0's transactions wait for it.
    c.signal_ctdbd(1, Signal::SIGSTOP);
    let (unmon_took, unmon_err) = callout_action(&c, 0, dir.path(), "del-client", "host-two");
    let (took, err) = callout(&c, 0, dir.path(), "host-frozen");
    let left_spooled = spooled(dir.path());
    std::thread::sleep(Duration::from_secs(3));
    let still_spooled = spooled(dir.path());
    c.signal_ctdbd(1, Signal::SIGCONT);
    eprintln!("add-client with a peer stopped: {took:?}; {err}");
    assert_eq!(
        left_spooled, 1,
        "the store took the record at once: nothing was frozen"
    );
    assert_eq!(
        still_spooled, 1,
        "the record left the spool while ctdbd could not commit"
    );
    assert!(
        took < CALLOUT_WAIT + Duration::from_secs(2),
        "add-client held statd (and the NLM LOCK behind it) for {took:?}"
    );
    eprintln!("del-client with a peer stopped: {unmon_took:?}; {unmon_err}");
    assert!(
        unmon_took < CALLOUT_WAIT * 2 + Duration::from_secs(2),
        "del-client held statd for {unmon_took:?}"
    );
    assert!(unmon_err.contains("may stay monitored"), "{unmon_err}");

    // Thawed: the detached flusher writes it; the spool empties.
    let start = Instant::now();
    while recorded(&c, 0, "host-frozen") != keys("host-frozen") || spooled(dir.path()) != 0 {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the spooled record did not land: {:?}, {} spooled",
            recorded(&c, 0, "host-frozen"),
            spooled(dir.path())
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("landed {:?} after SIGCONT", start.elapsed());
    // The unmarking may have committed after the thaw or not; the record stays either way
    // (a notification needs it).
    assert_eq!(recorded(&c, 0, "host-two"), keys("host-two"));
    assert_eq!(recorded(&c, 1, "host-frozen"), keys("host-frozen"));
}
