//! `ganesha-ctdb grace` on a dir store (no CTDB membership: every node with a record counts
//! as live): status in text and -X, lift and remove of a node that will not come back.

use ganesha_ctdb_recov::grace::NodeGrace;
use ganesha_ctdb_recov::records::{grace_key, GraceRecord};
use ganesha_ctdb_recov::store::dir::DirStore;
use ganesha_ctdb_recov::store::Store;
use std::process::Command;

fn cli(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let exe = env!("CARGO_BIN_EXE_ganesha-ctdb");
    let out = Command::new(exe)
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("run ganesha-ctdb");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn record(need: bool, enforcing: bool) -> GraceRecord {
    GraceRecord {
        epoch: 3,
        recovering: need,
        held: false,
        cluster: NodeGrace {
            epoch: 7,
            need_grace: need,
            enforcing,
        },
    }
}

#[test]
fn status_lift_and_remove_on_a_dir_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = DirStore::open(dir.path()).unwrap();
    store
        .put(&grace_key("a"), &record(true, true).encode())
        .unwrap();
    store
        .put(&grace_key("b"), &record(false, true).encode())
        .unwrap();

    let (ok, out, err) = cli(dir.path(), &["grace"]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("Cluster grace: IN GRACE (epoch 7)"),
        "{out}"
    );

    let (ok, out, _) = cli(dir.path(), &["grace", "-X"]);
    assert!(ok);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "|Node|Live|Epoch|ClusterEpoch|NeedGrace|Enforcing|Recovering|Held|"
    );
    assert_eq!(lines[1], "|a|1|3|7|1|1|1|0|");
    assert_eq!(lines[2], "|b|1|3|7|0|1|0|0|");

    // Node a is gone for good: without membership only the operator can say so.
    let (ok, out, err) = cli(dir.path(), &["grace", "lift", "a"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("node a: no longer holds the cluster in grace"),
        "{out}"
    );
    let (_, out, _) = cli(dir.path(), &["grace"]);
    assert!(out.starts_with("Cluster grace: not in grace"), "{out}");

    let (ok, out, _) = cli(dir.path(), &["grace", "remove", "a"]);
    assert!(ok && out.contains("node a: grace record removed"), "{out}");
    assert_eq!(store.get(&grace_key("a")).unwrap(), None);

    let (ok, _, err) = cli(dir.path(), &["grace", "lift", "nobody"]);
    assert!(!ok);
    assert!(err.contains("no grace record for node \"nobody\""), "{err}");
}

/// `status --watch | head`: the reader goes away; the tool ends quietly instead of
/// panicking on the closed pipe.
#[test]
fn status_watch_ends_quietly_when_its_reader_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ganesha-ctdb"))
        .args(["--store", "dir", "--dir"])
        .arg(dir.path())
        .args(["status", "--watch"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
