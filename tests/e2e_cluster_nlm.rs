//! NFSv3/NLM failover on the real 3-node cluster (design §6): every node runs Ganesha with
//! NLM, its own rpcbind and rpc.statd, statd's ha-callout being ganesha-ctdb's. An NLM client
//! (with a real rpc.statd of its own in the client namespace) locks a file through public IP
//! X; the node holding X is killed; CTDB moves X; the client's statd receives SM_NOTIFY naming
//! X; the client reclaims its lock through X on the new node and gets it, while another
//! client's conflicting lock through another node is refused during grace.

mod common;

use common::{ganesha_cluster_with, store_on, ClientStatd};
use ganesha_ctdb_recov::records::ServerIp;
use ganesha_ctdb_recov::statd;
use ganesha_ctdb_recov::store::Store;
use nlm_client::{Lock, NlmClient, NlmStat};
use serial_test::serial;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};
use testbed::Cluster;

fn nlm(c: &Cluster, ip: Ipv4Addr, caller: &str) -> NlmClient {
    let ns = c.bridge_ns.clone();
    NlmClient::new(ip.into(), caller, move |addr| {
        nfs4_client::netns::connect(Some(&ns), addr, Duration::from_secs(10))
    })
}

#[test]
#[serial]
fn an_nlm_client_is_notified_from_the_moved_ip_and_reclaims_its_lock_there() {
    let grace = 20;
    let mut c = ganesha_cluster_with(grace, false, true);
    let statd = ClientStatd::start(&c);
    let x = c.public_ips[0];
    let holders = c.ip_holders(0).unwrap();
    let a_pnn = holders[&x].unwrap();
    let a = c.node_by_pnn(a_pnn).unwrap();
    let (y, b_pnn) = c
        .public_ips
        .iter()
        .find_map(|ip| holders[ip].filter(|h| *h != a_pnn).map(|h| (*ip, h)))
        .unwrap();
    let b = c.node_by_pnn(b_pnn).unwrap();
    let export = c.dir.join("export").display().to_string();

    // Client 1 (the bridge's own address, 10.77.1.254) locks through X once start-up grace is over.
    let one = nlm(&c, x, "10.77.1.254");
    let started = Instant::now();
    let root = loop {
        match one.mount(&export) {
            Ok(fh) => break fh,
            Err(e) => {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "MNT through {x}: {e}\n{}",
                    c.logs()
                );
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    };
    let fh = one.lookup(&root, "f40.txt").unwrap();
    let mine = Lock {
        fh,
        owner: b"client1-owner".to_vec(),
        svid: 101,
        offset: 0,
        len: 100,
    };
    loop {
        match one.lock(&mine, false, 1).unwrap() {
            NlmStat::Granted => break,
            NlmStat::DeniedGracePeriod
                if started.elapsed() < Duration::from_secs(u64::from(grace) + 40) =>
            {
                std::thread::sleep(Duration::from_secs(1))
            }
            other => panic!("client 1's lock through {x}: {other:?}\n{}", c.logs()),
        }
    }
    // The callout on A recorded client 1 against the IPs A holds.
    let survivor = b;
    let key = statd::statd_key(&ServerIp::Ip(x.into()), "10.77.1.254");
    let deadline = Instant::now() + Duration::from_secs(10);
    while store_on(&c, survivor, "ganesha_recovery.tdb")
        .get(&key)
        .unwrap()
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "{key} not recorded by the statd callout:\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    c.kill_node(a);
    let t_pnn = c
        .wait_ip_moved(x, a_pnn, survivor, Duration::from_secs(40))
        .unwrap();
    let t = c.node_by_pnn(t_pnn).unwrap();

    // The client's statd hears from X.
    statd.wait_notified_from(x, &c);

    // Another client's conflicting lock through Y is refused during the cluster grace.
    let two = nlm(&c, y, "10.77.1.253");
    let root_y = two.mount(&export).unwrap();
    let theirs = Lock {
        fh: two.lookup(&root_y, "f40.txt").unwrap(),
        owner: b"client2-owner".to_vec(),
        svid: 202,
        offset: 0,
        len: 100,
    };
    assert_eq!(
        two.lock(&theirs, false, 1).unwrap(),
        NlmStat::DeniedGracePeriod
    );

    // Client 1 reclaims through X on the new node.
    assert_eq!(
        one.lock(&mine, true, 3).unwrap(),
        NlmStat::Granted,
        "reclaim through {x} on node {t}:\n{}",
        c.logs()
    );
    assert_eq!(
        two.lock(&theirs, false, 1).unwrap(),
        NlmStat::DeniedGracePeriod
    );
    // After grace the reclaimed lock still excludes client 2, until client 1 lets go.
    let deadline = Instant::now() + Duration::from_secs(u64::from(grace) + 40);
    let after = loop {
        match two.lock(&theirs, false, 1).unwrap() {
            NlmStat::DeniedGracePeriod if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_secs(1))
            }
            other => break other,
        }
    };
    assert_eq!(after, NlmStat::Denied, "the reclaimed lock:\n{}", c.logs());
    assert_eq!(one.unlock(&mine).unwrap(), NlmStat::Granted);
    assert_eq!(two.lock(&theirs, false, 1).unwrap(), NlmStat::Granted);
    eprintln!("NLM client notified from {x} and reclaimed on node {t_pnn}");
}

/// Debian 13's ctdb 4.22 (whose tool knows only the default socket, as on a real node):
/// the shipped statd callout, run on the node holding X as rpc.statd runs it, records a
/// client against the IPs that node holds; the node dies; the taker's Ganesha 6.5 sends
/// SM_NOTIFY from X to that client's rpc.statd. (Ganesha's NLM itself is not run in the
/// Debian 13 root; the NLM lock path is the same code as above.)
#[test]
#[serial]
fn on_debian_13_the_statd_callout_records_and_the_taker_notifies_from_the_moved_ip() {
    let mut c = common::ClusterOpts {
        grace_period: 20,
        debian: Some("trixie"),
        ..common::ClusterOpts::default()
    }
    .up();
    let statd = ClientStatd::start(&c);
    let x = c.public_ips[0];
    let a_pnn = c.holder(x, 0).unwrap().unwrap();
    let a = c.node_by_pnn(a_pnn).unwrap();
    let survivor = (0..3).find(|i| *i != a).unwrap();
    // The callout as rpc.statd runs it: a copy inside the cluster directory, which the
    // Debian root sees at the same path.
    let callout = c.dir.join("statd-callout");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/ganesha-conf/statd-callout"),
        &callout,
    )
    .unwrap();
    let bin = common::target_dir().join("ganesha-ctdb");
    let cmd = testbed::chroot::shell_words(&[
        "env".to_string(),
        format!("GANESHA_CTDB={}", bin.display()),
        "/bin/sh".into(),
        callout.display().to_string(),
        "add-client".into(),
        "10.77.1.254".into(),
        c.nodes[a].name.clone(),
    ]);
    let out = Command::new("ip")
        .args(["netns", "exec", &c.nodes[a].ns, "sh", "-c"])
        .arg(c.nodes[a].in_view(&cmd).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "statd callout on Debian 13: {out:?}");
    let key = statd::statd_key(&ServerIp::Ip(x.into()), "10.77.1.254");
    assert!(
        store_on(&c, survivor, "ganesha_recovery.tdb")
            .get(&key)
            .unwrap()
            .is_some(),
        "{key} not recorded by the callout through ctdb 4.22:\n{}",
        c.logs()
    );

    c.kill_node(a);
    c.wait_ip_moved(x, a_pnn, survivor, Duration::from_secs(40))
        .unwrap();
    statd.wait_notified_from(x, &c);
}
