//! Cluster-wide grace on Ganesha's hooks (design §5): every node keeps its part of the
//! cluster grace in its own `grace@<node>` record; the decisions are src/grace.rs's.
//!
//! How nodes enter grace (CTDB 4.17 has no cluster-wide barrier before releases):
//! - a crash: CTDB runs `startrecovery` on every live node before any `takeip`; the event
//!   script sends "3:hold" to the local Ganesha, which enters grace and marks the node
//!   `held` (it needs the cluster in grace) until `ipreallocated` ("3:ipreallocated");
//! - a planned move: the releasing node holds ("3:hold"), waits until every live node
//!   enforces, and only then releases ("2:<ip>"); the other nodes notice the hold within a
//!   second (a watcher thread reading the grace records wakes Ganesha's reaper, whose
//!   `maybe_start_grace` joins: "3:join");
//! - a takeover ("5:<ip>") or a restart opens the node's own reclaim window (`recovering`).
//!
//! Ganesha 4.3 refuses reclaims for the rest of a grace period once it has asked the
//! backend to lift and heard "no" (GRACE_STATUS_CHANGE_REQ), and it asks at the first reaper
//! tick at which its own reclaim counters agree — at once for a node with nothing to
//! reclaim. A node that holds or joins during a takeover run may become the taker moments
//! later, so it gives Ganesha a placeholder entry that never reclaims: Ganesha then waits
//! for Grace_Period before asking, and the taker's clients can reclaim. The cost is that such
//! a grace period ends at Grace_Period, not early.

use super::{Backend, ReclaimEntry, State};
use crate::grace::{self, ClusterView};
use crate::records::{grace_key, GraceRecord, GRACE_PREFIX};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// How long `grace_enforcing` answers "not yet" at start-up before it stops waiting for
/// nodes that never enforce (a live CTDB node whose Ganesha is not running).
const ENFORCING_WAIT_LIMIT: Duration = Duration::from_secs(30);

/// One node's grace state as the operator tool shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraceStatus {
    pub node: String,
    pub live: bool,
    pub record: GraceRecord,
}

impl Backend {
    /// Every node's grace record and who is live (CTDB membership; without CTDB every node
    /// that has a record, so that a dead node's need holds until the operator lifts it).
    pub(crate) fn grace_records(&self) -> (BTreeMap<String, GraceRecord>, BTreeSet<String>) {
        let mut records = BTreeMap::new();
        match self.gstore().scan(GRACE_PREFIX) {
            Ok(scan) => {
                for (key, value) in scan.entries {
                    let node = key[GRACE_PREFIX.len()..].to_string();
                    match GraceRecord::decode(&value) {
                        Ok(r) => {
                            records.insert(node, r);
                        }
                        Err(e) => log::warn!("skipping grace record {key:?}: {e}"),
                    }
                }
                for s in scan.skipped {
                    log::warn!("skipping grace entry {}: {}", s.location, s.reason);
                }
            }
            Err(e) => log::error!("cannot read grace records: {e}"),
        }
        let everyone = || {
            let mut all: BTreeSet<String> = records.keys().cloned().collect();
            all.insert(self.node_id.clone());
            all
        };
        let live = match &self.cluster {
            None => everyone(),
            Some(c) => match c.ctdb.nodes() {
                Ok(nodes) => nodes
                    .iter()
                    .filter(|n| n.live)
                    .map(|n| n.pnn.to_string())
                    .collect(),
                Err(e) => {
                    // Unknown membership: count everyone, which keeps grace (S1) at the
                    // price of a dead node holding it (L2) until ctdbd answers again.
                    log::error!("cannot read CTDB membership ({e}); counting every node as live");
                    everyone()
                }
            },
        };
        (records, live)
    }

    /// The cluster view with our own record as we hold it in memory (the stored copy may
    /// lag when a write failed).
    pub(super) fn view_with(
        &self,
        st: &State,
    ) -> (ClusterView<String>, BTreeMap<String, GraceRecord>) {
        let (mut records, live) = self.grace_records();
        records.insert(self.node_id.clone(), st.grace.clone());
        let view = ClusterView {
            records: records
                .iter()
                .map(|(n, r)| (n.clone(), r.cluster))
                .collect(),
            live,
        };
        (view, records)
    }

    fn write_grace(&self, st: &State) {
        if let Err(e) = self
            .gstore()
            .put(&grace_key(&self.node_id), &st.grace.encode())
        {
            log::error!(
                "cannot store this node's grace record ({e}); other nodes decide on the \
                 previous one"
            );
        }
    }

    /// set_enforcing: Ganesha entered grace here (it cleared its clid list if the event reads
    /// clients).
    pub fn set_enforcing(&self) {
        let mut st = self.state();
        st.local_in_grace = true;
        st.fresh_grace = true;
        st.placeholder = false;
        st.lift_refused = false;
        if !st.grace.cluster.enforcing {
            st.grace.cluster.enforcing = true;
            self.write_grace(&st);
        }
        log::debug!("grace: this node enforces grace");
    }

    /// read_clids with event 3: the event script's verbs. Returns the placeholder entry
    /// when one is needed (see the module comment).
    pub(super) fn control(&self, st: &mut State, verb: &str) -> Vec<ReclaimEntry> {
        let (view, records) = self.view_with(st);
        let me = self.node_id.clone();
        match verb {
            "hold" => {
                st.grace.held = true;
                st.grace.cluster = grace::start(&view, &me);
                log::info!(
                    "grace: holding the cluster in grace (epoch {}) for a CTDB takeover run",
                    st.grace.cluster.epoch
                );
            }
            "ipreallocated" => {
                st.grace.held = false;
                st.grace.cluster.need_grace = st.grace.recovering;
                log::info!(
                    "grace: takeover run over; this node {}",
                    if st.grace.recovering {
                        "still recovers its own clients"
                    } else {
                        "no longer needs grace"
                    }
                );
            }
            other => {
                if other != "join" {
                    log::warn!(
                        "grace event 3 with unknown verb {other:?}; joining the cluster grace"
                    );
                }
                match grace::join(&view, &me) {
                    Some(j) => st.grace.cluster = j,
                    None => st.grace.cluster.enforcing = true,
                }
                log::info!(
                    "grace: joined the cluster grace (epoch {})",
                    st.grace.cluster.epoch
                );
            }
        }
        st.local_in_grace = true;
        self.write_grace(st);
        if std::mem::take(&mut st.fresh_grace) {
            st.placeholder = false; // Ganesha cleared its list
        }
        let takeover_run = st.grace.held
            || view
                .live
                .iter()
                .any(|n| records.get(n).is_some_and(|r| r.held));
        if verb != "ipreallocated" && takeover_run && !st.placeholder {
            st.placeholder = true;
            return vec![ReclaimEntry {
                tag: format!(
                    "ganesha-ctdb:placeholder:{}:{}",
                    self.node_id, st.grace.cluster.epoch
                ),
                revoked: Vec::new(),
            }];
        }
        Vec::new()
    }

    /// try_lift_grace: Ganesha's own reclaim window here is over (all its clients sent
    /// RECLAIM_COMPLETE, or Grace_Period passed). Lift only if no other live node needs
    /// grace; a held node's window stays open until its takeover run is over.
    pub fn try_lift(&self) -> bool {
        let mut st = self.state();
        let me = self.node_id.clone();
        let (view, _) = self.view_with(&st);
        let done = !st.grace.held;
        let t = grace::try_lift_grace(&view, &me, done);
        if let Some(w) = t.write {
            st.grace.cluster = w;
            if !w.need_grace {
                st.grace.recovering = false;
            }
            self.write_grace(&st);
        }
        let mut lift = t.lift;
        if lift {
            // The read above and our write are not one transaction: a node that started
            // in between would not have been seen. Read again after our write.
            let (again, _) = self.view_with(&st);
            if !grace::may_lift(&again, &me, true) {
                st.grace.cluster.enforcing = true;
                self.write_grace(&st);
                lift = false;
            }
        }
        if !lift {
            if !st.lift_refused {
                let waiting: Vec<&String> = view
                    .live
                    .iter()
                    .filter(|n| **n != me && view.record(n).need_grace)
                    .collect();
                log::info!(
                    "grace: staying in grace: {}",
                    if st.grace.held {
                        "a CTDB takeover run is in progress on this node".to_string()
                    } else {
                        format!("node(s) {waiting:?} still recover their clients")
                    }
                );
            }
            st.lift_refused = true;
        }
        lift
    }

    /// grace_enforcing: every live node refuses non-reclaim OPEN/LOCK. Ganesha waits on
    /// it at start-up; a live node that never enforces (its Ganesha is down) is given up on
    /// after ENFORCING_WAIT_LIMIT, loudly.
    pub fn grace_enforcing(&self) -> bool {
        let mut st = self.state();
        let (view, _) = self.view_with(&st);
        if grace::enforcing_everywhere(&view) {
            st.enforcing_wait = None;
            return true;
        }
        let lagging: Vec<&String> = view
            .live
            .iter()
            .filter(|n| !view.record(n).enforcing)
            .collect();
        let since = *st.enforcing_wait.get_or_insert_with(Instant::now);
        if since.elapsed() > ENFORCING_WAIT_LIMIT {
            log::error!(
                "grace: node(s) {lagging:?} have not entered grace after {ENFORCING_WAIT_LIMIT:?}; \
                 carrying on without them (is their nfs-ganesha running?)"
            );
            return true;
        }
        log::info!("grace: waiting for node(s) {lagging:?} to enforce grace");
        false
    }

    /// maybe_start_grace / the watcher: another live node needs the cluster in grace and
    /// this node is not in grace.
    pub fn wants_to_join(&self) -> bool {
        let st = self.state();
        if st.local_in_grace {
            return false;
        }
        let (view, _) = self.view_with(&st);
        grace::join(&view, &self.node_id).is_some()
    }

    /// Every node's grace state, for the operator tool.
    pub fn grace_status(&self) -> Vec<GraceStatus> {
        let (records, live) = self.grace_records();
        records
            .into_iter()
            .map(|(node, record)| GraceStatus {
                live: live.contains(&node),
                node,
                record,
            })
            .collect()
    }

    pub fn is_cluster(&self) -> bool {
        self.cluster.is_some()
    }
}
