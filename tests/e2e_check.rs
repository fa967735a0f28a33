//! `ganesha-ctdb check` on a real 3-node cluster (ctdbd + ganesha.nfsd with NLM, rpcbind
//! and rpc.statd per node): it passes on the cluster as tests/common sets it up, then names
//! each setting broken on purpose, one line each: another Grace_Period on one node, another
//! Filesystem_id for the export on another, the event script disabled on the node it runs
//! on, and a node whose published library version is not this build's.

mod common;

use ganesha_ctdb_recov::facts::{NodeFacts, NODE_PREFIX};
use ganesha_ctdb_recov::store::Store;
use serial_test::serial;
use std::time::{Duration, Instant};
use testbed::Cluster;

/// `ganesha-ctdb check` as an operator runs it on node `i` (no store flags: the node's
/// ganesha.conf names the store); its exit status and output.
fn check(c: &Cluster, i: usize) -> (bool, String) {
    let out = std::process::Command::new(common::target_dir().join("ganesha-ctdb"))
        .arg("--config")
        .arg(c.nodes[i].base.join("ganesha.conf"))
        .arg("check")
        .env("CTDB_SOCKET", c.nodes[i].socket())
        .env("CTDB_BASE", c.nodes[i].base.join("etc"))
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Restarts node `i`'s Ganesha with the spec changed by `change` (then restored).
fn restart_ganesha_with(
    c: &mut Cluster,
    i: usize,
    change: impl Fn(&mut testbed::cluster::GaneshaSpec),
) {
    let before = c.spec.ganesha.clone();
    if let Some(g) = c.spec.ganesha.as_mut() {
        change(g);
    }
    c.kill_ganesha(i);
    c.start_ganesha(i).unwrap();
    c.spec.ganesha = before;
}

#[test]
#[serial]
fn check_passes_on_a_good_cluster_and_names_each_broken_setting() {
    let mut c = common::ganesha_cluster_with(40, false, true);
    // The event scripts publish at their first `monitor` (every 15 s once Ganesha runs).
    let deadline = Instant::now() + Duration::from_secs(60);
    let good = loop {
        let (ok, out) = check(&c, 0);
        if ok {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "check never passed:\n{out}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_secs(2));
    };
    assert!(
        good.contains("check: 3 node(s) checked from node 0; no problem found"),
        "{good}"
    );

    // Break four things.
    restart_ganesha_with(&mut c, 1, |g| g.grace_period = 33);
    restart_ganesha_with(&mut c, 2, |g| {
        g.export_extra = "Filesystem_id = 100.2;".into()
    });
    let script = c.nodes[0]
        .base
        .join("etc/events/legacy/60.ganesha-ctdb.script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    // Node 0's library as an older package would publish it.
    let grace = common::store_on(&c, 0, "ganesha_grace.tdb");
    let key = format!("{NODE_PREFIX}0");
    let mut f = NodeFacts::decode(&grace.get(&key).unwrap().expect("node@0")).unwrap();
    f.version = "0.0.1".into();
    grace.put(&key, &f.encode()).unwrap();

    let wanted = [
        "cluster: Grace_Period differs: node 1: 33 s; nodes 0, 2: 40 s",
        "cluster: export 1: the filesystem identity differs (node 2: Filesystem_id 100.2; nodes 0, 1: fsid",
        "60.ganesha-ctdb.script is not enabled",
        "node 0: Ganesha runs ganesha-ctdb library 0.0.1",
    ];
    // Nodes 1 and 2 publish their new set-up once their Ganesha has started.
    let deadline = Instant::now() + Duration::from_secs(30);
    let out = loop {
        let (ok, out) = check(&c, 0);
        if wanted.iter().all(|w| out.contains(w)) {
            assert!(!ok, "check exits non-zero on problems:\n{out}");
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "check did not name every problem:\n{out}"
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    let problems = out
        .lines()
        .filter(|l| l.starts_with("node ") || l.starts_with("cluster:"));
    assert_eq!(
        problems.count(),
        4,
        "one line per problem, nothing else:\n{out}"
    );
    assert!(out.contains("ganesha-ctdb: check: 4 problem(s)"), "{out}");
    eprintln!("check on node 0 with four settings broken:\n{out}");
}
