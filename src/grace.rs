//! Cluster-wide grace, decided from every node's `grace@<node>` record (design §5).
//!
//! Each node writes only its own [`NodeGrace`]; every decision below reads all records plus
//! CTDB's membership ([`ClusterView`]) and returns what the caller should store. Nothing here
//! does I/O or reads a clock, so `tests/grace_model.rs` can drive these exact functions through
//! every interleaving of crashes, restarts, IP moves, reaper ticks and reclaims.
//!
//! - **S1 (no conflicting grant).** A record never claims more than its node does: [`start`]
//!   and [`join`] set `enforcing` as the node enters grace, and [`try_lift_grace`] clears it in
//!   the same write that lets Ganesha lift. A node lifts only when
//!   no live node needs grace ([`may_lift`]), and a recovering node writes `need_grace`
//!   ([`start`], [`restart`]) before any of its clients' state is exposed, so nobody can lift
//!   while a reclaim window is open. Whoever is about to expose state waits until every live
//!   node enforces: the taker of a crashed node's IP before the old locks go
//!   ([`enforcing_everywhere`]), a releasing node before it drops its clients
//!   ([`may_release_ip`]).
//! - **L1 (grace ends).** A node clears its own `need_grace` as soon as its own reclaim is over,
//!   even while others still recover ([`try_lift_grace`]). Were the clearing tied to
//!   [`may_lift`], two recovering nodes would each wait for the other forever. The last one to
//!   clear it lifts, the others lift at their next try.
//! - **L2 (dead nodes don't block).** Only members of [`ClusterView::live`] count, so the
//!   `need_grace` a dead node left behind is ignored. With no membership (dir store) the caller
//!   puts every node in `live`, and the operator lifts a dead node's grace with the CLI.
//!
//! [`try_lift_grace`] must run as one store transaction (read every record, write our own):
//! decided on a read that predates another node's [`start`], a lift opens S1 again (the model's
//! `non_atomic_lift_breaks_s1`). The other decisions tolerate a stale read.

use std::collections::{BTreeMap, BTreeSet};

/// One node's grace record; only that node writes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeGrace {
    /// The cluster grace period this record belongs to. Epochs are never reused.
    pub epoch: u64,
    /// This node's reclaim window is open: nobody may lift.
    pub need_grace: bool,
    /// This node refuses non-reclaim OPEN/LOCK (it is in grace locally).
    pub enforcing: bool,
}

/// Every node's record as last read, and who CTDB says is live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterView<N: Ord> {
    /// Records of all nodes, dead ones included: their epochs still count as issued.
    pub records: BTreeMap<N, NodeGrace>,
    /// Connected and neither banned nor stopped. A node missing from `records` counts as a
    /// record that neither needs grace nor enforces.
    pub live: BTreeSet<N>,
}

impl<N: Ord> Default for ClusterView<N> {
    fn default() -> Self {
        ClusterView {
            records: BTreeMap::new(),
            live: BTreeSet::new(),
        }
    }
}

impl<N: Ord> ClusterView<N> {
    /// The record of `node`; a node that never wrote one has nothing to recover and enforces
    /// nothing.
    pub fn record(&self, node: &N) -> NodeGrace {
        self.records.get(node).copied().unwrap_or_default()
    }

    /// The live nodes with their records.
    pub fn live_records(&self) -> impl Iterator<Item = (&N, NodeGrace)> + '_ {
        self.live.iter().map(move |n| (n, self.record(n)))
    }
}

/// What `try_lift_grace` must store and answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TryLift {
    /// Our new record, if it changed. Stored in the same transaction as the read.
    pub write: Option<NodeGrace>,
    /// Ganesha may end grace on this node.
    pub lift: bool,
}

/// Highest epoch any node ever wrote; the next new grace period takes the one after it.
pub fn max_epoch<N: Ord>(view: &ClusterView<N>) -> u64 {
    view.records.values().map(|r| r.epoch).max().unwrap_or(0)
}

/// The epoch of the cluster grace in progress, if any: joiners take it so that one grace period
/// has one number.
pub fn grace_epoch<N: Ord>(view: &ClusterView<N>) -> Option<u64> {
    view.live_records()
        .filter(|(_, r)| r.need_grace)
        .map(|(_, r)| r.epoch)
        .max()
}

/// Some live node's reclaim window is open.
pub fn cluster_in_grace<N: Ord>(view: &ClusterView<N>) -> bool {
    view.live_records().any(|(_, r)| r.need_grace)
}

fn others_need_grace<N: Ord>(view: &ClusterView<N>, me: &N) -> bool {
    view.live_records().any(|(n, r)| n != me && r.need_grace)
}

/// This running node starts recovering clients: it takes over an IP, or releases one (its
/// `need_grace` then keeps the cluster in grace until the taker has started). Joins the grace in
/// progress, ours included: a second takeover inside one grace period must not renumber it, or
/// clients still reclaiming under the first number would look excluded (S2).
pub fn start<N: Ord>(view: &ClusterView<N>, me: &N) -> NodeGrace {
    let mine = view.record(me);
    let ours = mine.need_grace.then_some(mine.epoch);
    recovering(view, others_grace_epoch(view, me).max(ours))
}

/// This node restarted (`recovery_read_clids` with no grace-start argument). Our record is
/// from before the crash: the others stopped counting its `need_grace` when we died, so that
/// grace may have ended since, and rejoining its epoch would reuse a finished (or lower) number.
pub fn restart<N: Ord>(view: &ClusterView<N>, me: &N) -> NodeGrace {
    recovering(view, others_grace_epoch(view, me))
}

fn recovering<N: Ord>(view: &ClusterView<N>, in_progress: Option<u64>) -> NodeGrace {
    NodeGrace {
        epoch: in_progress.unwrap_or_else(|| max_epoch(view).saturating_add(1)),
        need_grace: true,
        enforcing: true,
    }
}

fn others_grace_epoch<N: Ord>(view: &ClusterView<N>, me: &N) -> Option<u64> {
    view.live_records()
        .filter(|(n, r)| *n != me && r.need_grace)
        .map(|(_, r)| r.epoch)
        .max()
}

/// `maybe_start_grace`: Ganesha calls it only while this node is out of grace, so if a cluster
/// grace is in progress we enter it. Our own `enforcing` flag is not consulted: out of grace, a
/// record that still says enforcing is stale and must not keep us granting.
pub fn join<N: Ord>(view: &ClusterView<N>, me: &N) -> Option<NodeGrace> {
    let epoch = grace_epoch(view)?;
    let mine = view.record(me);
    Some(NodeGrace {
        // Our own number never goes backwards.
        epoch: epoch.max(mine.epoch),
        // A join never clears a need: only our own finished reclaim does.
        need_grace: mine.need_grace,
        enforcing: true,
    })
}

/// `grace_enforcing`: every live node refuses non-reclaim grants, so clients' old state may be
/// let go and reclaims may begin.
pub fn enforcing_everywhere<N: Ord>(view: &ClusterView<N>) -> bool {
    view.live_records().all(|(_, r)| r.enforcing)
}

/// Ganesha may end grace here: nobody else's reclaim window is open, and ours is closed.
pub fn may_lift<N: Ord>(view: &ClusterView<N>, me: &N, my_reclaim_done: bool) -> bool {
    my_reclaim_done && !others_need_grace(view, me)
}

/// Our reclaim window is closed; we keep enforcing until the cluster's is.
pub fn lift<N: Ord>(view: &ClusterView<N>, me: &N) -> NodeGrace {
    NodeGrace {
        need_grace: false,
        ..view.record(me)
    }
}

/// We may stop enforcing: no node needs grace any more. Counts our own `need_grace` whether or
/// not membership lists us, since only we can clear it.
pub fn done_enforcing<N: Ord>(view: &ClusterView<N>, me: &N) -> Option<NodeGrace> {
    let mine = view.record(me);
    if !mine.enforcing || mine.need_grace || others_need_grace(view, me) {
        return None;
    }
    Some(NodeGrace {
        enforcing: false,
        ..mine
    })
}

/// A planned move: the releasing node (`me`) may drop its clients' state for the IP. Our own
/// `need_grace` must already be stored: it is what stops every other node from lifting between
/// this read and the drop, so a stale "yes" stays true.
pub fn may_release_ip<N: Ord>(view: &ClusterView<N>, me: &N) -> bool {
    view.record(me).need_grace && enforcing_everywhere(view)
}

/// `try_lift_grace`. `my_reclaim_done`: Ganesha's own condition holds (it only asks then) and
/// no IP we released still waits for its taker (CTDB's `ipreallocated` has run), since our
/// `need_grace` is all that holds the cluster in grace for those clients until then.
///
/// Clears our need at once so that other recovering nodes can lift (L1 above); when Ganesha
/// may lift, stops enforcing in the same write, because Ganesha leaves grace after `true`
/// whatever `end_grace` later manages to store.
pub fn try_lift_grace<N: Ord>(view: &ClusterView<N>, me: &N, my_reclaim_done: bool) -> TryLift {
    let mine = view.record(me);
    if !my_reclaim_done {
        return TryLift {
            write: None,
            lift: false,
        };
    }
    let mut new = lift(view, me);
    let lifting = may_lift(view, me, true);
    if lifting {
        new.enforcing = false;
    }
    TryLift {
        write: (new != mine).then_some(new),
        lift: lifting,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(epoch: u64, need_grace: bool, enforcing: bool) -> NodeGrace {
        NodeGrace {
            epoch,
            need_grace,
            enforcing,
        }
    }

    fn view(records: &[(&str, NodeGrace)], live: &[&str]) -> ClusterView<String> {
        ClusterView {
            records: records.iter().map(|(n, r)| (n.to_string(), *r)).collect(),
            live: live.iter().map(|n| n.to_string()).collect(),
        }
    }

    fn me(n: &str) -> String {
        n.to_string()
    }

    #[test]
    fn start_opens_a_new_grace_after_the_highest_epoch_ever_written() {
        // C is dead but its epoch 7 was issued: never reuse it.
        let v = view(
            &[
                ("a", g(3, false, false)),
                ("b", g(3, false, false)),
                ("c", g(7, true, true)),
            ],
            &["a", "b"],
        );
        assert_eq!(start(&v, &me("a")), g(8, true, true));
        assert_eq!(restart(&v, &me("a")), g(8, true, true));
    }

    #[test]
    fn start_joins_a_grace_in_progress() {
        let v = view(
            &[
                ("a", g(3, false, false)),
                ("b", g(4, true, true)),
                ("c", g(4, false, true)),
            ],
            &["a", "b", "c"],
        );
        assert_eq!(start(&v, &me("a")), g(4, true, true));
        assert_eq!(restart(&v, &me("a")), g(4, true, true));
    }

    #[test]
    fn a_second_takeover_keeps_our_own_grace_number() {
        let v = view(
            &[("a", g(4, true, true)), ("b", g(3, false, false))],
            &["a", "b"],
        );
        assert_eq!(start(&v, &me("a")), g(4, true, true));
    }

    #[test]
    fn restart_ignores_our_own_stale_need() {
        // We died needing grace at 4; the others have since finished (and reached 5).
        let v = view(
            &[("a", g(4, true, true)), ("b", g(5, false, false))],
            &["a", "b"],
        );
        assert_eq!(restart(&v, &me("a")), g(6, true, true));
    }

    #[test]
    fn start_with_no_records_at_all() {
        let v = view(&[], &["a"]);
        assert_eq!(start(&v, &me("a")), g(1, true, true));
    }

    #[test]
    fn epochs_issued_and_in_progress() {
        let v = view(
            &[
                ("a", g(2, true, true)),
                ("b", g(5, false, false)),
                ("c", g(9, true, true)),
            ],
            &["a", "b"],
        );
        assert_eq!(max_epoch(&v), 9, "dead c's number was issued");
        assert_eq!(grace_epoch(&v), Some(2), "dead c's need does not count");
        assert_eq!(
            grace_epoch(&view(&[("a", g(2, false, true))], &["a"])),
            None
        );
        assert_eq!(max_epoch(&ClusterView::<String>::default()), 0);
    }

    #[test]
    fn join_enters_the_grace_another_node_started() {
        let v = view(
            &[("a", g(2, false, false)), ("b", g(3, true, true))],
            &["a", "b"],
        );
        assert_eq!(join(&v, &me("a")), Some(g(3, false, true)));
    }

    #[test]
    fn join_ignores_a_dead_node_and_a_quiet_cluster() {
        let dead = view(
            &[("a", g(2, false, false)), ("b", g(3, true, true))],
            &["a"],
        );
        assert_eq!(join(&dead, &me("a")), None);
        let quiet = view(
            &[("a", g(2, false, false)), ("b", g(3, false, false))],
            &["a", "b"],
        );
        assert_eq!(join(&quiet, &me("a")), None);
    }

    #[test]
    fn join_does_not_trust_a_stale_enforcing_flag_nor_drop_a_need() {
        let v = view(
            &[("a", g(3, true, true)), ("b", g(3, true, true))],
            &["a", "b"],
        );
        assert_eq!(join(&v, &me("a")), Some(g(3, true, true)));
    }

    #[test]
    fn enforcing_everywhere_counts_live_nodes_only() {
        let v = view(
            &[
                ("a", g(3, true, true)),
                ("b", g(3, false, true)),
                ("c", g(1, false, false)),
            ],
            &["a", "b", "c"],
        );
        assert!(!enforcing_everywhere(&v));
        let c_dead = ClusterView {
            live: ["a", "b"].iter().map(|n| n.to_string()).collect(),
            ..v
        };
        assert!(enforcing_everywhere(&c_dead));
        // A live node that never wrote a record enforces nothing.
        let unknown = view(&[("a", g(3, true, true))], &["a", "d"]);
        assert!(!enforcing_everywhere(&unknown));
    }

    #[test]
    fn may_lift_needs_our_reclaim_done_and_nobody_else_recovering() {
        let v = view(
            &[("a", g(3, true, true)), ("b", g(3, true, true))],
            &["a", "b"],
        );
        assert!(!may_lift(&v, &me("a"), true), "b still recovers");
        let b_dead = view(&[("a", g(3, true, true)), ("b", g(3, true, true))], &["a"]);
        assert!(
            may_lift(&b_dead, &me("a"), true),
            "dead b does not block (L2)"
        );
        assert!(
            !may_lift(&b_dead, &me("a"), false),
            "our own reclaim is open"
        );
    }

    #[test]
    fn lift_clears_only_the_need() {
        let v = view(&[("a", g(3, true, true))], &["a"]);
        assert_eq!(lift(&v, &me("a")), g(3, false, true));
    }

    #[test]
    fn cluster_in_grace_is_any_live_need() {
        let v = view(
            &[("a", g(3, false, true)), ("b", g(3, true, true))],
            &["a", "b"],
        );
        assert!(cluster_in_grace(&v));
        assert!(!cluster_in_grace(&view(
            &[("a", g(3, false, true)), ("b", g(3, true, true))],
            &["a"]
        )));
        assert!(!cluster_in_grace(&view(&[], &["a"])));
    }

    #[test]
    fn may_release_ip_waits_for_every_live_node_and_our_own_need() {
        let all = view(
            &[
                ("a", g(3, true, true)),
                ("b", g(3, false, true)),
                ("c", g(2, false, false)),
            ],
            &["a", "b"],
        );
        assert!(may_release_ip(&all, &me("a")));
        let c_live = ClusterView {
            live: ["a", "b", "c"].iter().map(|n| n.to_string()).collect(),
            ..all.clone()
        };
        assert!(!may_release_ip(&c_live, &me("a")), "c still grants");
        let no_need = view(
            &[("a", g(3, false, true)), ("b", g(3, false, true))],
            &["a", "b"],
        );
        assert!(
            !may_release_ip(&no_need, &me("a")),
            "b could lift after our read"
        );
    }

    #[test]
    fn done_enforcing_once_no_node_needs_grace() {
        let busy = view(
            &[("a", g(3, false, true)), ("b", g(3, true, true))],
            &["a", "b"],
        );
        assert_eq!(done_enforcing(&busy, &me("a")), None);
        let quiet = view(
            &[("a", g(3, false, true)), ("b", g(3, false, false))],
            &["a", "b"],
        );
        assert_eq!(done_enforcing(&quiet, &me("a")), Some(g(3, false, false)));
        let ours = view(&[("a", g(3, true, true))], &[]);
        assert_eq!(done_enforcing(&ours, &me("a")), None, "our own need counts");
        let idle = view(&[("a", g(3, false, false))], &["a"]);
        assert_eq!(done_enforcing(&idle, &me("a")), None, "nothing to change");
    }

    #[test]
    fn try_lift_clears_our_need_while_others_still_recover() {
        let v = view(
            &[("a", g(3, true, true)), ("b", g(3, true, true))],
            &["a", "b"],
        );
        assert_eq!(
            try_lift_grace(&v, &me("a"), true),
            TryLift {
                write: Some(g(3, false, true)),
                lift: false
            }
        );
        // Then b, done too, sees nobody else and lifts, no longer enforcing in the same write.
        let v = view(
            &[("a", g(3, false, true)), ("b", g(3, true, true))],
            &["a", "b"],
        );
        assert_eq!(
            try_lift_grace(&v, &me("b"), true),
            TryLift {
                write: Some(g(3, false, false)),
                lift: true
            }
        );
    }

    #[test]
    fn try_lift_does_nothing_before_our_reclaim_is_done() {
        let v = view(&[("a", g(3, true, true))], &["a"]);
        assert_eq!(
            try_lift_grace(&v, &me("a"), false),
            TryLift {
                write: None,
                lift: false
            }
        );
    }

    #[test]
    fn try_lift_without_change_writes_nothing() {
        let v = view(
            &[("a", g(3, false, true)), ("b", g(3, true, true))],
            &["a", "b"],
        );
        assert_eq!(
            try_lift_grace(&v, &me("a"), true),
            TryLift {
                write: None,
                lift: false
            }
        );
    }

    #[test]
    fn works_with_numeric_node_ids() {
        let v: ClusterView<u32> = ClusterView {
            records: [(0, g(1, true, true)), (1, g(1, false, true))]
                .into_iter()
                .collect(),
            live: [0, 1].into_iter().collect(),
        };
        assert!(enforcing_everywhere(&v));
        assert!(!may_lift(&v, &1, true));
        assert!(may_lift(&v, &0, true));
    }
}
