//! The native client against real ctdbd (Debian's 4.17, a 3-node testbed cluster in network
//! namespaces): its answers decode to what the `ctdb` tool prints for the same daemon, a
//! persistent database it attaches is one ctdbd lists, and a node's death reaches a
//! registered client as messages (TAKE_IP for each IP the node takes, RECONFIGURE after the
//! recovery), which is what the watcher will wait on instead of polling.

use ctdb_client::proto::types::DB_FLAGS_PERSISTENT;
use ctdb_client::Connection;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use testbed::{Cluster, ClusterSpec};

const T: Duration = Duration::from_secs(10);
const SRVID_RECONFIGURE: u64 = 0xF200_0000_0000_0000;
const SRVID_TAKE_IP: u64 = 0xF301_0000_0000_0000;

fn tool_nodes(c: &Cluster, i: usize) -> BTreeMap<u32, bool> {
    // |Node|IP|Disconnected|Unknown|Banned|Disabled|Unhealthy|Stopped|Inactive|PartiallyOnline|ThisNode|
    let out = c.nodes[i].ctdb(&["-X", "status"]).unwrap();
    out.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            Some((f.get(1)?.parse().ok()?, f.get(9)? == &"0"))
        })
        .collect()
}

#[test]
#[serial_test::serial]
fn the_native_client_reads_what_the_ctdb_tool_reads_and_hears_a_takeover() {
    let mut c = Cluster::up(ClusterSpec::new(3, 3)).unwrap();
    c.wait_healthy(Duration::from_secs(90)).unwrap();
    for (i, n) in c.nodes.iter().enumerate() {
        let mut conn = Connection::connect(&n.socket(), T).unwrap();
        assert_eq!(conn.pnn(), n.pnn, "node {i}");
        let nodes: BTreeMap<u32, bool> = conn
            .node_map(T)
            .unwrap()
            .iter()
            .map(|n| (n.pnn, n.active()))
            .collect();
        assert_eq!(nodes, tool_nodes(&c, i), "node {i}'s map");
        let ips: BTreeMap<IpAddr, Option<u32>> = conn
            .public_ips(T)
            .unwrap()
            .into_iter()
            .map(|p| (p.addr, p.holder))
            .collect();
        let tool: BTreeMap<IpAddr, Option<u32>> = c
            .ip_holders(i)
            .unwrap()
            .into_iter()
            .map(|(ip, h)| (IpAddr::V4(ip), h))
            .collect();
        assert_eq!(ips, tool, "node {i}'s public IPs");
    }

    // A persistent database attached natively is one ctdbd lists, with its file on disk.
    let mut conn = Connection::connect(&c.nodes[0].socket(), T).unwrap();
    let db_id = conn.attach_persistent("native_client_test.tdb", T).unwrap();
    let map = conn.db_map(0xF000_0001, T).unwrap();
    let entry = map
        .iter()
        .find(|d| d.db_id == db_id)
        .expect("attached db listed");
    assert_ne!(entry.flags & DB_FLAGS_PERSISTENT, 0);
    let path = conn.db_path(db_id, T).unwrap();
    assert!(
        path.ends_with("native_client_test.tdb.0"),
        "{}",
        path.display()
    );
    let tool = c.nodes[0].ctdb(&["getdbmap"]).unwrap();
    assert!(tool.contains("native_client_test.tdb"), "{tool}");
    // Another node answers about its own databases through this node's daemon, by name
    // as `ctdb -n 1 getdbmap` lists them.
    let names = conn.db_names(1, T).unwrap();
    let tool = c.nodes[0].ctdb(&["-X", "-n", "1", "getdbmap"]).unwrap();
    let tool_names: Vec<&str> = tool
        .lines()
        .skip(1)
        .filter_map(|l| l.split('|').nth(2))
        .collect();
    assert_eq!(names.len(), tool_names.len(), "{names:?} vs {tool}");
    assert!(
        names.iter().all(|n| tool_names.contains(&n.as_str())),
        "{names:?} vs {tool}"
    );
    assert!(
        names.contains(&"native_client_test.tdb".to_string()),
        "attached on every node: {names:?}"
    );

    // The local TDB copy of a persistent database, read without ctdbd: on another node,
    // what node 0's transactions wrote (values past the ltdb header, deletions gone, the
    // sequence number not a record), equal to what `ctdb catdb` lists.
    let mut script = String::new();
    for i in 0..200 {
        script.push_str(&format!(
            "\"key-{i}\" \"value {i} {}\"\n",
            "v".repeat(i % 50)
        ));
    }
    c.nodes[0]
        .ctdb_with_input(&["ptrans", "native_client_test.tdb"], &script)
        .unwrap();
    let mut deletes = String::new();
    for i in (0..200).step_by(4) {
        deletes.push_str(&format!("\"key-{i}\" \"\"\n"));
    }
    c.nodes[0]
        .ctdb_with_input(&["ptrans", "native_client_test.tdb"], &deletes)
        .unwrap();
    let mut on1 = Connection::connect(&c.nodes[1].socket(), T).unwrap();
    let id1 = on1.attach_persistent("native_client_test.tdb", T).unwrap();
    let local = on1.db_path(id1, T).unwrap();
    let image = ctdb_client::tdb::snapshot(&local, T).unwrap();
    let mut read: Vec<(String, String)> = Vec::new();
    let mut seqnum = 0;
    for (k, d) in ctdb_client::tdb::parse(&image).unwrap() {
        match ctdb_client::tdb::ctdb_record(&k, &d) {
            ctdb_client::tdb::CtdbRecord::Value(v) => read.push((
                String::from_utf8(k).unwrap(),
                String::from_utf8(v.to_vec()).unwrap(),
            )),
            ctdb_client::tdb::CtdbRecord::SequenceNumber => seqnum += 1,
            ctdb_client::tdb::CtdbRecord::Deleted => {}
            ctdb_client::tdb::CtdbRecord::Invalid => panic!("invalid record {k:?}"),
        }
    }
    read.sort();
    let mut want: Vec<(String, String)> = (0..200)
        .filter(|i| i % 4 != 0)
        .map(|i| {
            (
                format!("key-{i}"),
                format!("value {i} {}", "v".repeat(i % 50)),
            )
        })
        .collect();
    want.sort();
    assert_eq!(read, want, "node 1's local copy of node 0's writes");
    assert_eq!(seqnum, 1, "one sequence number record");
    let catdb = c.nodes[1]
        .ctdb(&["catdb", "native_client_test.tdb"])
        .unwrap();
    let listed = catdb.lines().filter(|l| l.starts_with("key(")).count();
    assert_eq!(
        listed,
        want.len() + 1,
        "catdb: the same records and the sequence number"
    );
    for (k, v) in &want {
        assert!(
            catdb.contains(&format!("\"{k}\"")) && catdb.contains(v.as_str()),
            "{k} in catdb"
        );
    }

    // Nodes 1 and 2 listen; node 0 dies; they hear of it from ctdbd, not from a poll:
    // together a TAKE_IP for each of node 0's IPs, and each a RECONFIGURE.
    let mut listeners: Vec<Connection> = (1..3)
        .map(|i| {
            let mut l = Connection::connect(&c.nodes[i].socket(), T).unwrap();
            l.register_srvid(SRVID_TAKE_IP, T).unwrap();
            l.register_srvid(SRVID_RECONFIGURE, T).unwrap();
            l
        })
        .collect();
    let mut lost: Vec<IpAddr> = c
        .ip_holders(1)
        .unwrap()
        .into_iter()
        .filter(|(_, h)| *h == Some(0))
        .map(|(ip, _)| IpAddr::V4(ip))
        .collect();
    lost.sort();
    assert!(!lost.is_empty(), "node 0 held no public IP");
    let killed = Instant::now();
    c.kill_node(0);
    let mut taken = Vec::new();
    let mut reconfigured = [None, None];
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && reconfigured.iter().any(Option::is_none) {
        for (k, l) in listeners.iter_mut().enumerate() {
            if let Some(m) = l.next_message(Duration::from_millis(100)).unwrap() {
                match m.srvid {
                    SRVID_TAKE_IP => {
                        let text = m.data.strip_suffix(&[0]).unwrap_or(&m.data);
                        let ip = String::from_utf8_lossy(text)
                            .parse::<IpAddr>()
                            .expect("TAKE_IP carries an address");
                        taken.push((ip, k + 1, killed.elapsed()));
                    }
                    SRVID_RECONFIGURE => {
                        reconfigured[k].get_or_insert(killed.elapsed());
                    }
                    _ => {}
                }
            }
        }
    }
    eprintln!(
        "node 0 killed: TAKE_IP (ip, node, after) {taken:?}; RECONFIGURE on nodes 1, 2 after {reconfigured:?}"
    );
    assert!(
        reconfigured.iter().all(Option::is_some),
        "RECONFIGURE on both survivors"
    );
    let mut heard: Vec<IpAddr> = taken.iter().map(|(ip, _, _)| *ip).collect();
    heard.sort();
    heard.dedup();
    assert_eq!(heard, lost, "a TAKE_IP for each of node 0's IPs");
    for (ip, node, _) in &taken {
        let holder = c.holder(
            match ip {
                IpAddr::V4(v4) => *v4,
                IpAddr::V6(_) => panic!("IPv4 testbed"),
            },
            1,
        );
        assert_eq!(
            holder.unwrap(),
            Some(*node as u32),
            "{ip} is on the node that heard it"
        );
    }
}
