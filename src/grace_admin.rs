//! Grace records read and written outside Ganesha: by the operator's tool, and by the CTDB
//! event script and systemd on behalf of a node whose Ganesha cannot speak for itself
//! (stopped, crashed, or overridden by the operator).
//!
//! The exit marker: when ganesha.nfsd exits for any reason its clients' locks are gone
//! from the shared filesystem at once, and nothing else tells the other nodes to stop
//! granting. `ganesha-ctdb ganesha-stopped` (systemd's ExecStopPost for nfs-ganesha) and
//! the event script's `monitor` (which finds Ganesha gone) store the node's record as a
//! hold: it needs the cluster in grace, and it enforces (a stopped Ganesha grants
//! nothing). The other nodes' watchers see the need within a second and join. The hold
//! ends when Ganesha starts again on the node (its own restart window takes over) or, if it
//! stays down, once CTDB moved every public IP off the node (the takers' windows cover
//! those clients).

use crate::backend::{PendingStatus, PENDING_PREFIX};
use crate::ctdb::CtdbApi;
use crate::grace::{self, ClusterView};
use crate::records::{grace_key, GraceRecord, GRACE_PREFIX};
use crate::store::Store;
use std::collections::{BTreeMap, BTreeSet};

pub type GraceRecords = BTreeMap<String, GraceRecord>;

/// Every `grace@<node>` record; the entries that could not be read, as reasons.
pub fn read_grace(store: &dyn Store) -> Result<(GraceRecords, Vec<String>), String> {
    let scan = store.scan(GRACE_PREFIX).map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    let mut skipped: Vec<String> = scan
        .skipped
        .iter()
        .map(|s| format!("{}: {}", s.location, s.reason))
        .collect();
    for (key, value) in &scan.entries {
        match GraceRecord::decode(value) {
            Ok(g) => {
                out.insert(key[GRACE_PREFIX.len()..].to_string(), g);
            }
            Err(e) => skipped.push(format!("{key:?}: {e}")),
        }
    }
    Ok((out, skipped))
}

/// What each node published about records it could not store yet: `pending@<node>` in
/// the grace store, and the run-time files of this machine's nodes (which still work when
/// the store's own disk is full); where both exist the local file wins.
pub fn pending_statuses(
    grace: &dyn Store,
    run_dir: Option<&std::path::Path>,
) -> BTreeMap<String, PendingStatus> {
    let mut out = BTreeMap::new();
    if let Ok(scan) = grace.scan(PENDING_PREFIX) {
        for (key, value) in scan.entries {
            if let Some(st) = PendingStatus::decode(&value) {
                out.insert(key[PENDING_PREFIX.len()..].to_string(), st);
            }
        }
    }
    if let Some(Ok(dir)) = run_dir.map(std::fs::read_dir) {
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(node) = name.strip_prefix("pending-") else {
                continue;
            };
            let is_file = entry.file_type().is_ok_and(|t| t.is_file());
            let small = entry.metadata().is_ok_and(|m| m.len() < 64 * 1024);
            if let (true, true, Ok(bytes)) = (is_file, small, std::fs::read(entry.path())) {
                if let Some(st) = PendingStatus::decode(&bytes) {
                    out.insert(node.to_string(), st);
                }
            }
        }
    }
    out
}

/// This node's PNN and the live nodes, as ctdbd tells them.
pub struct Membership {
    pub me: String,
    pub live: BTreeSet<String>,
}

pub fn membership(ctdb: &dyn CtdbApi) -> Result<Membership, String> {
    let nodes = ctdb.nodes().map_err(|e| e.to_string())?;
    let me = nodes
        .iter()
        .find(|n| n.this_node)
        .map(|n| n.pnn.to_string())
        .ok_or("ctdb -X status marks no node as this one")?;
    Ok(Membership {
        me,
        live: nodes
            .iter()
            .filter(|n| n.live)
            .map(|n| n.pnn.to_string())
            .collect(),
    })
}

pub fn view(records: &GraceRecords, live: &BTreeSet<String>) -> ClusterView<String> {
    ClusterView {
        records: records
            .iter()
            .map(|(n, r)| (n.clone(), r.cluster))
            .collect(),
        live: live.clone(),
    }
}

/// Stores the exit marker for this node (see the module comment); returns what it stored.
pub fn mark_ganesha_stopped(store: &dyn Store, ctdb: &dyn CtdbApi) -> Result<String, String> {
    let m = membership(ctdb)?;
    let (records, _) = read_grace(store)?;
    let mut mine = records.get(&m.me).cloned().unwrap_or_default();
    let mut live = m.live.clone();
    live.insert(m.me.clone());
    mine.held = true;
    mine.cluster = grace::start(&view(&records, &live), &m.me);
    store
        .put(&grace_key(&m.me), &mine.encode())
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "node {}: Ganesha is not running; holding the cluster in grace (epoch {}) on its behalf",
        m.me, mine.cluster.epoch
    ))
}

/// Ends this node's exit marker once the node holds no public IP (the takers' reclaim
/// windows cover its clients); Ok(None) when there is nothing to end yet.
pub fn end_stopped_hold(store: &dyn Store, ctdb: &dyn CtdbApi) -> Result<Option<String>, String> {
    let m = membership(ctdb)?;
    let me: u32 = m.me.parse().map_err(|_| format!("PNN {:?}", m.me))?;
    let held_ips: Vec<String> = ctdb
        .public_ips()
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|p| p.holder == Some(me))
        .map(|p| p.ip.to_string())
        .collect();
    let (records, _) = read_grace(store)?;
    let Some(mut mine) = records.get(&m.me).cloned() else {
        return Ok(None);
    };
    if !mine.cluster.need_grace || !held_ips.is_empty() {
        return Ok(None);
    }
    // Its clients reclaim on the takers; a stopped Ganesha still grants nothing.
    mine.held = false;
    mine.recovering = false;
    mine.cluster.need_grace = false;
    mine.cluster.enforcing = true;
    store
        .put(&grace_key(&m.me), &mine.encode())
        .map_err(|e| e.to_string())?;
    Ok(Some(format!(
        "node {}: Ganesha is not running and the node holds no public IP; it no longer holds \
         the cluster in grace",
        m.me
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctdb::testing::FakeCtdb;
    use crate::grace::NodeGrace;
    use crate::store::memory::MemoryStore;

    #[test]
    fn the_exit_marker_holds_until_the_node_has_no_public_ip() {
        let store = MemoryStore::new();
        // Node 1 of a 2-node cluster, holding one public IP.
        let ctdb = FakeCtdb::new(1, Some(vec![0, 1]), &[("10.0.0.2", Some(1))]);
        // Node 0 is in a grace period (epoch 4); node 1's last record is out of grace.
        let g = |epoch, need_grace, enforcing| GraceRecord {
            epoch,
            recovering: need_grace,
            held: false,
            cluster: NodeGrace {
                epoch,
                need_grace,
                enforcing,
            },
        };
        store.put("grace@0", &g(4, true, true).encode()).unwrap();
        store.put("grace@1", &g(2, false, false).encode()).unwrap();
        mark_ganesha_stopped(&store, &ctdb).unwrap();
        let mine = GraceRecord::decode(&store.get("grace@1").unwrap().unwrap()).unwrap();
        assert!(mine.held && mine.cluster.need_grace && mine.cluster.enforcing);
        assert_eq!(mine.cluster.epoch, 4, "joins the grace in progress");
        assert_eq!(mine.epoch, 2, "its own reclaim epoch is Ganesha's to bump");

        assert_eq!(
            end_stopped_hold(&store, &ctdb).unwrap(),
            None,
            "still holds 10.0.0.2"
        );
        ctdb.ips.lock().unwrap().clear();
        assert!(end_stopped_hold(&store, &ctdb).unwrap().is_some());
        let mine = GraceRecord::decode(&store.get("grace@1").unwrap().unwrap()).unwrap();
        assert!(!mine.cluster.need_grace && mine.cluster.enforcing);
        assert_eq!(
            end_stopped_hold(&store, &ctdb).unwrap(),
            None,
            "nothing left to end"
        );
    }
}
