//! Against a real 3-node ctdbd cluster (Debian's ctdb 4.17) in network namespaces, with one
//! real ganesha.nfsd per node loading this crate's library with `Store = ctdb`:
//! - the ctdb store: a write on one node is read on the others, records survive a full
//!   cluster restart, 64 concurrent writers lose nothing;
//! - IP takeover: clients holding an open and a lock through public IP X on node A reclaim
//!   through X on the node CTDB moves X to after A is killed (ctdbd and ganesha.nfsd,
//!   SIGKILL), NFSv4.0 and NFSv4.1; a client of another IP is not offered reclaim there.
//!   X is an IPv6 public address, the other an IPv4 one (the cluster has both);
//! - a planned move (`ctdb moveip`) of X: the same;
//! - the kill on Debian 13 (ctdb 4.22, Ganesha 6.5 in a debootstrap root).
//!
//! Clients connect from the bridge namespace to the public IPs. Everything is torn down by
//! pid by the testbed (crates/testbed), also on failure.

mod common;

use common::{client, filed_under, owners, refused, store_on, v4_keys, wait_log};
use ganesha_ctdb_recov::store::Store;
use nfs4_client::{LockType, NfsStat};
use serial_test::serial;
use std::sync::Arc;
use std::time::Duration;
use testbed::{Cluster, ClusterSpec};

#[test]
#[serial]
fn ctdb_store_replicates_survives_a_full_cluster_restart_and_loses_no_concurrent_write() {
    let mut c = Cluster::up(ClusterSpec::new(3, 3)).expect("cluster up");
    let db = "gctdb_store_test.tdb";
    let s1 = store_on(&c, 0, db);
    s1.put("v4@10.77.1.1@client-a", b"v1 clientid=1 stamp=0.1")
        .unwrap();
    for i in 1..3 {
        assert_eq!(
            store_on(&c, i, db)
                .get("v4@10.77.1.1@client-a")
                .unwrap()
                .as_deref(),
            Some(&b"v1 clientid=1 stamp=0.1"[..]),
            "node {i} reads node 0's write"
        );
    }

    // 64 concurrent writers on node 1 (hooks on Ganesha's worker threads): all committed.
    let s2 = Arc::new(store_on(&c, 1, db));
    let writers: Vec<_> = (0..64)
        .map(|i| {
            let s = s2.clone();
            std::thread::spawn(move || {
                s.put(&format!("v4@10.77.1.2@w{i:02}"), format!("v{i}").as_bytes())
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap().expect("group-committed write");
    }
    assert_eq!(
        store_on(&c, 2, db)
            .scan("v4@10.77.1.2@")
            .unwrap()
            .entries
            .len(),
        64
    );
    assert!(s1.delete("v4@10.77.1.1@client-a").unwrap());
    assert_eq!(
        store_on(&c, 2, db).get("v4@10.77.1.1@client-a").unwrap(),
        None
    );
    s1.put("v4@10.77.1.1@client-b", b"kept").unwrap();

    // Full cluster restart: every ctdbd killed, then started again.
    for i in 0..3 {
        c.kill_node(i);
    }
    for i in 0..3 {
        c.start_ctdbd(i).unwrap();
    }
    c.wait_healthy(Duration::from_secs(90)).unwrap();
    for i in 0..3 {
        let s = store_on(&c, i, db);
        let scan = s.scan("v4@10.77.1.2@").unwrap();
        assert_eq!(scan.entries.len(), 64, "node {i}");
        assert!(
            scan.skipped.is_empty(),
            "catdb parsed: {:?}",
            scan.skipped.iter().map(|k| &k.reason).collect::<Vec<_>>()
        );
        assert_eq!(
            s.get("v4@10.77.1.1@client-b").unwrap().as_deref(),
            Some(&b"kept"[..])
        );
        assert_eq!(s.get("v4@10.77.1.1@client-a").unwrap(), None);
    }
}

/// `ganesha-ctdb status` (-X with `machine`) as an operator runs it on node `i`: no
/// store flags, the node's ganesha.conf names the store.
fn tool_status(c: &Cluster, i: usize, machine: bool) -> String {
    let mut cmd = std::process::Command::new(common::target_dir().join("ganesha-ctdb"));
    cmd.arg("--config")
        .arg(c.nodes[i].base.join("ganesha.conf"))
        .arg("status")
        .env("CTDB_SOCKET", c.nodes[i].socket());
    if machine {
        cmd.arg("-X");
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// `status -X` on node `i` once it contains `want` (nodes publish once a second).
fn wait_status(c: &Cluster, i: usize, want: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = tool_status(c, i, true);
        if text.contains(want) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "status never showed {want:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Clients through X (NFSv4.0 and 4.1) and through another IP Y lock files; X moves (node
/// killed, or planned); the X clients reclaim through X on the new holder, the Y client
/// is not offered reclaim there, and newcomers get NFS4ERR_GRACE. X is an IPv6 public
/// address of a cluster that has both families, Y an IPv4 one (Ganesha 4.3 keeps only the
/// low 32 bits of an NFSv4.1 client's IPv6 server address; the backend maps them back, and
/// must not confuse them with an IPv4 address's).
fn takeover_scenario(kill: bool, debian: Option<&'static str>) {
    let mut c = common::ClusterOpts {
        grace_period: 40,
        public_ips6: 3,
        debian,
        ..common::ClusterOpts::default()
    }
    .up();
    let layout = if debian.is_some() { "6.5" } else { "4.3" };
    for n in &c.nodes {
        let log = n.ganesha_log();
        assert!(
            log.contains(&format!(
                "recovery backend ready for Ganesha {layout} layout"
            )),
            "{}: not Ganesha {layout}:\n{log}",
            n.name
        );
    }
    distinct_server_epochs(&c);
    let x = std::net::IpAddr::V6(c.public_ips6[0]);
    let a_pnn = c.holder(x, 0).unwrap().expect("X has a holder");
    let a = c.node_by_pnn(a_pnn).unwrap();
    let holders = c.all_ip_holders(0).unwrap();
    let y = *c
        .all_public_ips()
        .iter()
        .filter(|ip| ip.is_ipv4())
        .find(|ip| {
            holders
                .get(ip)
                .copied()
                .flatten()
                .is_some_and(|h| h != a_pnn)
        })
        .expect("an IP on another node");
    let survivor = (0..c.nodes.len()).find(|i| *i != a).unwrap();

    // Owners as real clients send them: an NFSv4.0 one that names no server address (the
    // backend files it by its connection) and Linux's NFSv4.1 one (never names it).
    let o40 = owners::v40_without_addr("c40", 40);
    let o41 = owners::linux_v41(1, "c41");
    let mut c40 = client(&c, x, 0, &o40);
    c40.establish().unwrap();
    let mut f40 = c40.open("export/x40.txt").unwrap();
    c40.lock(&mut f40, LockType::Write, 0, 100, false).unwrap();
    let mut c41 = client(&c, x, 1, &o41);
    c41.establish().unwrap();
    c41.reclaim_complete().unwrap();
    let mut f41 = c41.open("export/x41.txt").unwrap();
    c41.lock(&mut f41, LockType::Write, 0, 100, false).unwrap();
    let oy = owners::linux_v41(1, "cy");
    let mut cy = client(&c, y, 1, &oy);
    cy.establish().unwrap();
    cy.reclaim_complete().unwrap();
    let mut fy = cy.open("export/y41.txt").unwrap();
    cy.lock(&mut fy, LockType::Write, 0, 100, false).unwrap();

    let keys = v4_keys(&c, survivor);
    let under = |ip| filed_under(&keys, ip);
    assert_eq!(
        (under(x), under(y), keys.len()),
        (2, 1, 3),
        "records by server IP: {keys:?}"
    );
    // The operator's one-screen view agrees: holders and v4 client counts per public IP.
    let status = std::process::Command::new(common::target_dir().join("ganesha-ctdb"))
        .args(["--store", "ctdb", "status", "-X"])
        .env("CTDB_SOCKET", c.nodes[survivor].socket())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(
        text.contains("|PublicIP|Holder|V4Clients|NLMClients|"),
        "{text}"
    );
    assert!(text.contains(&format!("|{x}|{a_pnn}|2|0|")), "{text}");
    let y_pnn = holders.get(&y).copied().flatten().expect("Y's holder");
    assert!(text.contains(&format!("|{y}|{y_pnn}|1|0|")), "{text}");

    let b_pnn = if kill {
        c.kill_node(a);
        c.wait_ip_moved(x, a_pnn, survivor, Duration::from_secs(40))
            .unwrap()
    } else {
        let target = c.nodes[survivor].pnn;
        c.nodes[survivor]
            .ctdb(&["moveip", &x.to_string(), &target.to_string()])
            .unwrap();
        c.wait_ip_moved(x, a_pnn, survivor, Duration::from_secs(40))
            .unwrap()
    };
    let b = c.node_by_pnn(b_pnn).unwrap();
    let want = format!("(takeover of {x}): 2 client(s) may reclaim");
    wait_log(&c, b, &want, Duration::from_secs(30));

    // The operator's view of the takeover: B reclaims X's two clients, none back yet,
    // both named as missing; the verdict says so first.
    let row = format!("|{x}|{b_pnn}|2|0|{b_pnn}|2|0|2|");
    let shown = wait_status(&c, b, &row);
    let verdict = shown.lines().nth(1).unwrap_or_default();
    assert!(
        verdict.starts_with("|1|")
            && verdict.contains(&format!("node {b_pnn} reclaims"))
            && verdict.contains(&x.to_string())
            && verdict.contains("0 of 2 client(s) back"),
        "{shown}"
    );
    let human = tool_status(&c, b, false);
    assert!(
        human.contains("2 expected, 0 back, 2 missing")
            && human.matches("      missing: ").count() >= 2
            && human.contains("c41"),
        "{human}"
    );
    eprintln!("status on node {b_pnn} during the takeover:\n{human}");

    // The X clients reclaim through X, now on node B.
    c40.disconnect();
    c40.establish().unwrap();
    let mut r40 = c40
        .reclaim_open(&f40.fh)
        .expect("v4.0 OPEN CLAIM_PREVIOUS on the new node");
    c40.lock(&mut r40, LockType::Write, 0, 100, true)
        .expect("v4.0 LOCK reclaim on the new node");
    c41.disconnect();
    c41.establish().unwrap();
    let mut r41 = c41
        .reclaim_open(&f41.fh)
        .expect("v4.1 OPEN CLAIM_PREVIOUS on the new node");
    c41.lock(&mut r41, LockType::Write, 0, 100, true)
        .expect("v4.1 LOCK reclaim on the new node");
    c41.reclaim_complete().unwrap();
    let shown = wait_status(&c, b, &format!("|{x}|{b_pnn}|2|0|{b_pnn}|2|2|0|"));
    assert!(shown.contains("2 of 2 client(s) back"), "{shown}");

    // Y's client is not X's: B does not offer it reclaim through X.
    let mut cy_via_x = client(&c, x, 1, &oy);
    cy_via_x.establish().unwrap();
    refused(
        cy_via_x.reclaim_open(&fy.fh),
        &[NfsStat::NO_GRACE, NfsStat::RECLAIM_BAD],
        "reclaim through X by a client of Y",
    );
    // Newcomers wait for grace on B, and on every other live node, through every public
    // address of either family.
    let held = c.all_ip_holders(b).unwrap();
    for (ip, holder) in &held {
        let Some(holder) = holder else { continue };
        let mut newcomer = client(&c, *ip, 0, &owners::linux_v40("newcomer", *ip));
        newcomer.establish().unwrap();
        refused(
            newcomer.open("export/other.txt"),
            &[NfsStat::GRACE],
            &format!("OPEN through {ip} (node {holder}) during the takeover grace"),
        );
    }
    assert!(held.keys().any(|ip| ip.is_ipv4()) && held.keys().any(|ip| ip.is_ipv6()));
    eprintln!("{}", testbed::cluster::tail(&c.nodes[b].ganesha_log(), 12));
}

// Both through an IPv6 public address, with an IPv4 one as Y: IPv4 takeovers of every kind
// are run by e2e_cluster_grace, e2e_cluster_release, e2e_cluster_nlm and torture_short.
#[test]
#[serial]
fn after_a_node_is_killed_its_ips_clients_reclaim_on_the_node_that_takes_the_ip_over() {
    takeover_scenario(true, None);
}

/// The same on Debian 13: Ganesha 6.5 keeps 4.3's low 32 bits of an NFSv4.1 client's IPv6
/// server address, CTDB 4.22 moves the IPv6 address.
#[test]
#[serial]
fn on_debian_13_after_a_node_is_killed_its_ipv6_clients_reclaim_on_the_taker() {
    takeover_scenario(true, Some("trixie"));
}

#[test]
#[serial]
fn after_a_planned_move_the_ips_clients_reclaim_on_the_new_holder() {
    takeover_scenario(false, None);
}

/// Every node's Ganesha runs with a server epoch no other node has (the testbed starts them
/// within a second or two, which gave them the same epoch and the same clientids: torture
/// seed 7, steps 95-96), and Ganesha itself issues clientids with the epoch the backend set
/// (its high 32 bits). Ganesha's log prefix keeps the epoch of its start, so the clientid
/// is the proof.
fn distinct_server_epochs(c: &testbed::Cluster) {
    let mut epochs = std::collections::BTreeSet::new();
    for (i, n) in c.nodes.iter().enumerate() {
        let log = n.ganesha_log();
        let set = log
            .lines()
            .rev()
            .filter_map(|l| l.split("server epoch 0x").nth(1))
            .filter_map(|rest| rest.get(..8))
            .find_map(|hex| u32::from_str_radix(hex, 16).ok())
            .unwrap_or_else(|| panic!("node {i} logged no server epoch:\n{log}"));
        let mut probe = client(
            c,
            n.addr,
            1,
            &owners::linux_v41(1, &format!("epoch-probe-{i}")),
        );
        probe.establish().unwrap();
        let issued = (probe.clientid().expect("a clientid") >> 32) as u32;
        let _ = probe.destroy();
        assert_eq!(
            issued, set,
            "node {i}: Ganesha issues clientids of another epoch"
        );
        assert!(epochs.insert(set), "node {i} shares epoch {set:#x}");
    }
}
