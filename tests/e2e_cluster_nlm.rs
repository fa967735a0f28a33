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
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::{Duration, Instant};
use testbed::Cluster;

fn nlm(c: &Cluster, ip: impl Into<IpAddr>, caller: &str) -> NlmClient {
    let ns = c.bridge_ns.clone();
    NlmClient::new(ip.into(), caller, move |addr| {
        nfs4_client::netns::connect(Some(&ns), addr, Duration::from_secs(10))
    })
}

#[test]
#[serial]
fn an_nlm_client_is_notified_from_the_moved_ip_and_reclaims_its_lock_there() {
    nlm_failover(false);
}

/// The same over IPv6: the client reaches an IPv6 public address, node-side statd hands the
/// callout the IPv6 literal, and the taker's SM_NOTIFY goes from the IPv6 address to the
/// client's statd over IPv6 (rpcbind version 4 finds it).
#[test]
#[serial]
fn an_nlm_client_of_an_ipv6_address_is_notified_from_it_and_reclaims_there() {
    nlm_failover(true);
}

fn nlm_failover(ipv6: bool) {
    let grace = 20;
    let mut c = common::ClusterOpts {
        grace_period: grace,
        nlm: true,
        public_ips6: if ipv6 { 3 } else { 0 },
        ..common::ClusterOpts::default()
    }
    .up();
    let statd = ClientStatd::start(&c);
    let family: Vec<IpAddr> = c
        .all_public_ips()
        .into_iter()
        .filter(|ip| ip.is_ipv6() == ipv6)
        .collect();
    let x = family[0];
    let holders = c.all_ip_holders(0).unwrap();
    let a_pnn = holders[&x].unwrap();
    let a = c.node_by_pnn(a_pnn).unwrap();
    let (y, b_pnn) = family
        .iter()
        .find_map(|ip| holders[ip].filter(|h| *h != a_pnn).map(|h| (*ip, h)))
        .unwrap();
    let b = c.node_by_pnn(b_pnn).unwrap();
    let export = c.dir.join("export").display().to_string();
    // The bridge's own address: where the client's statd is reached.
    let me = if ipv6 {
        testbed::cluster::BRIDGE_IP6.to_string()
    } else {
        "10.77.1.254".to_string()
    };

    // Client 1 locks through X once start-up grace is over.
    let one = nlm(&c, x, &me);
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
    let key = statd::statd_key(&ServerIp::Ip(x), &me);
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
    // The root's own /etc/ganesha/ganesha.conf is Debian's sample: the node's names the
    // store, as an existing install's GANESHA_CTDB_OPTS would point at it.
    let conf = c.nodes[a].base.join("ganesha.conf");
    let cmd = testbed::chroot::shell_words(&[
        "env".to_string(),
        format!("GANESHA_CTDB={}", bin.display()),
        format!("GANESHA_CTDB_OPTS=--config {}", conf.display()),
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

/// Takes `l` through `client`, waiting out grace (`limit` at most).
fn lock_after_grace(c: &Cluster, client: &NlmClient, l: &Lock, limit: Duration) {
    let started = Instant::now();
    loop {
        match client.lock(l, false, 1) {
            Ok(NlmStat::Granted) => return,
            Ok(NlmStat::DeniedGracePeriod) | Err(_) if started.elapsed() < limit => {
                std::thread::sleep(Duration::from_millis(500))
            }
            other => panic!("lock through {}: {other:?}\n{}", client.server, c.logs()),
        }
    }
}

fn nlm_lock(c: &Cluster, client: &NlmClient, file: &str, svid: i32) -> Lock {
    let export = c.dir.join("export").display().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    let root = loop {
        match client.mount(&export) {
            Ok(fh) => break fh,
            Err(e) if Instant::now() < deadline => {
                eprintln!("MNT through {}: {e}", client.server);
                std::thread::sleep(Duration::from_millis(500))
            }
            Err(e) => panic!("MNT through {}: {e}\n{}", client.server, c.logs()),
        }
    };
    Lock {
        fh: client.lookup(&root, file).unwrap(),
        owner: format!("owner-{svid}").into_bytes(),
        svid,
        offset: 0,
        len: 100,
    }
}

/// Ganesha's own NLM release ("2:X") drops every lock of a host that reached the node
/// through X, also those it holds through the node's other IPs (state_nlm_notify works per
/// host). A host locks through X and Y, both held by node A; `ctdb moveip X` to B: the host
/// hears SM_NOTIFY from Y as well as from X, reclaims both locks while the cluster is in
/// grace, and after grace another host's conflicting lock on the Y file is refused.
#[test]
#[serial]
fn a_host_that_also_locked_through_another_ip_of_the_releasing_node_is_notified_from_it() {
    let grace = 20;
    let c = ganesha_cluster_with(grace, false, true);
    let statd = ClientStatd::start(&c);
    let holders = c.ip_holders(0).unwrap();
    let x = c.public_ips[0];
    let a_pnn = holders[&x].unwrap();
    let others: Vec<(Ipv4Addr, u32)> = c
        .public_ips
        .iter()
        .filter_map(|ip| holders[ip].filter(|h| *h != a_pnn).map(|h| (*ip, h)))
        .collect();
    let (y, _) = others[0];
    let (z, b_pnn) = others[1];
    let a = c.node_by_pnn(a_pnn).unwrap();
    c.nodes[a]
        .ctdb(&["moveip", &y.to_string(), &a_pnn.to_string()])
        .unwrap();
    assert_eq!(c.holder(y, a).unwrap(), Some(a_pnn), "Y moved onto A");
    let limit = Duration::from_secs(u64::from(grace) + 60);
    let via_x = nlm(&c, x, "10.77.1.254");
    let via_y = nlm(&c, y, "10.77.1.254");
    let lock_x = nlm_lock(&c, &via_x, "f40.txt", 101);
    let lock_y = nlm_lock(&c, &via_y, "f41.txt", 102);
    lock_after_grace(&c, &via_x, &lock_x, limit);
    lock_after_grace(&c, &via_y, &lock_y, limit);
    let key = statd::statd_key(&ServerIp::Ip(y.into()), "10.77.1.254");
    let deadline = Instant::now() + Duration::from_secs(10);
    while store_on(&c, a, "ganesha_recovery.tdb")
        .get(&key)
        .unwrap()
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "{key} not recorded:\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let (from_x, from_y) = (statd.notifies_from(x), statd.notifies_from(y));
    // Every node out of the grace the first move started: Ganesha 4.3 refuses reclaims for
    // the rest of a grace period in which it already asked to lift (docs/architecture.md),
    // and B may still be in that one.
    let deadline = Instant::now() + limit;
    while (0..3).any(|i| common::in_grace(&c, i)) {
        assert!(Instant::now() < deadline, "still in grace:\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(300));
    }

    let b = c.node_by_pnn(b_pnn).unwrap();
    c.nodes[b]
        .ctdb(&["moveip", &x.to_string(), &b_pnn.to_string()])
        .unwrap();
    // As a client's lockd does: each reclaim as soon as its server's SM_NOTIFY came.
    let moved = Instant::now();
    statd.wait_more_notifies(x, from_x, &c);
    let x_notified = moved.elapsed();
    assert_eq!(
        via_x.lock(&lock_x, true, 3).unwrap(),
        NlmStat::Granted,
        "reclaim through X on B, notified {x_notified:?} after the move:\n{}",
        c.logs()
    );
    statd.wait_more_notifies(y, from_y, &c);
    let y_notified = moved.elapsed();
    assert_eq!(
        via_y.lock(&lock_y, true, 3).unwrap(),
        NlmStat::Granted,
        "reclaim through Y on A, notified {y_notified:?} after the move:\n{}",
        c.logs()
    );
    eprintln!("SM_NOTIFY from X after {x_notified:?}, from Y after {y_notified:?}");
    // After grace the Y lock still excludes another host (through Z, on a third node).
    let other = nlm(&c, z, "10.77.1.253");
    let theirs = Lock {
        owner: b"other-owner".to_vec(),
        svid: 303,
        ..nlm_lock(&c, &other, "f41.txt", 303)
    };
    let deadline = Instant::now() + limit;
    let after = loop {
        match other.lock(&theirs, false, 1).unwrap() {
            NlmStat::DeniedGracePeriod if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_secs(1))
            }
            st => break st,
        }
    };
    assert_eq!(
        after,
        NlmStat::Denied,
        "the reclaimed Y lock:\n{}",
        c.logs()
    );
    assert!(
        c.nodes[a].ctdb_log().contains("NLM host(s) of"),
        "releaseip recorded the hosts:\n{}",
        c.logs()
    );
}
