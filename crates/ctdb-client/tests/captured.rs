//! Replies captured from a real ctdbd (Debian 12's 4.17, a node of a 3-node testbed cluster
//! with three public IPs; examples/capture.rs wrote tests/captured/ctdb-4.17.txt), decoded
//! by the same code the driver uses, and cut at every length.

use ctdb_client::proto::packet::decode;
use ctdb_client::proto::types::{self, DB_FLAGS_PERSISTENT};
use ctdb_client::proto::{Packet, ReplyControl};

fn captured() -> Vec<(String, Vec<u8>)> {
    let text = include_str!("captured/ctdb-4.17.txt");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut f = l.split_whitespace();
            let name = f.next().unwrap().to_string();
            let hex = f.next().unwrap();
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            (name, bytes)
        })
        .collect()
}

fn reply(name: &str) -> ReplyControl {
    let (_, bytes) = captured().into_iter().find(|(n, _)| n == name).unwrap();
    match decode(&bytes).unwrap() {
        Packet::ReplyControl(h, r) => {
            assert_eq!(h.length as usize, bytes.len());
            assert_eq!(bytes.len() % 8, 0, "padded to 8");
            r
        }
        p => panic!("{name}: {p:?}"),
    }
}

#[test]
fn real_replies_decode_to_the_testbed_cluster() {
    assert_eq!(reply("get_pnn").status, 0, "captured on node 0");
    let nodes = types::pull_node_map(&reply("get_nodemap").data).unwrap();
    assert_eq!(nodes.len(), 3);
    assert!(nodes.iter().all(|n| n.active()));
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.to_string()).collect();
    assert_eq!(addrs, ["10.77.0.1", "10.77.0.2", "10.77.0.3"]);
    let ips = types::pull_public_ips(&reply("get_public_ips").data).unwrap();
    assert_eq!(ips.len(), 3);
    assert!(
        ips.iter().all(|p| p.holder.is_some_and(|h| h < 3)),
        "{ips:?}"
    );
    let id = u32::from_le_bytes(reply("db_attach_persistent").data[..4].try_into().unwrap());
    let map = types::pull_db_map(&reply("get_dbmap").data).unwrap();
    let db = map
        .iter()
        .find(|d| d.db_id == id)
        .expect("the attached db is listed");
    assert_ne!(db.flags & DB_FLAGS_PERSISTENT, 0);
    let path = types::pull_string(&reply("getdbpath").data, "path").unwrap();
    assert!(path.ends_with("ganesha_grace.tdb.0"), "{path}");
    let bad = reply("get_dbmap_bad_request");
    assert_ne!(bad.status, 0);
}

#[test]
fn every_prefix_of_a_real_reply_is_refused() {
    for (name, bytes) in captured() {
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "{name} cut at {cut}");
        }
    }
}
