//! CTDB membership read over ctdbd's own socket (crates/ctdb-client), for the watcher's
//! fast look: a GET_NODEMAP control costs well under a millisecond and ctdbd answers it
//! during a recovery, where the `ctdb` tool run and the grace-record read of the
//! once-a-second watcher waited on frozen databases. The survivors of a node must enter
//! grace before the dead node's locks can be granted to someone else; with the 1 s poll
//! behind a blocked read they entered 1–4 s late (torture seed 7, steps 56 and 58).

use super::Backend;
use ctdb_client::Connection;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How often the membership is looked at.
pub const MEMBERSHIP_INTERVAL: Duration = Duration::from_millis(100);
/// Longest one look may take (connect and control).
const MEMBERSHIP_LIMIT: Duration = Duration::from_secs(1);
/// A membership read natively within this long stands in for the watcher's `ctdb` run.
pub(super) const MEMBERSHIP_FRESH: Duration = Duration::from_secs(2);

/// A connection to the local ctdbd, made again after any failure.
pub struct MembershipPoll {
    socket: PathBuf,
    conn: Option<Connection>,
    failing: bool,
}

impl MembershipPoll {
    pub fn new(socket: PathBuf) -> MembershipPoll {
        MembershipPoll {
            socket,
            conn: None,
            failing: false,
        }
    }

    /// The live nodes' PNNs, as ctdbd's node map says now, and whether this read needed a
    /// new connection (ctdbd may have restarted since the last one).
    pub fn live(&mut self) -> Result<(BTreeSet<String>, bool), String> {
        let fresh = self.conn.is_none();
        self.live_nodes().map(|l| (l, fresh))
    }

    fn live_nodes(&mut self) -> Result<BTreeSet<String>, String> {
        let r = self.read();
        match &r {
            Err(e) if !self.failing => {
                log::warn!("cannot read CTDB membership over ctdbd's socket: {e}; the watcher's once-a-second look stands in");
                self.failing = true;
            }
            Ok(_) if self.failing => {
                log::info!("CTDB membership readable over ctdbd's socket again");
                self.failing = false;
            }
            _ => {}
        }
        r
    }

    fn read(&mut self) -> Result<BTreeSet<String>, String> {
        let conn = match &mut self.conn {
            Some(c) => c,
            None => self.conn.insert(
                Connection::connect(&self.socket, MEMBERSHIP_LIMIT).map_err(|e| e.to_string())?,
            ),
        };
        match conn.node_map(MEMBERSHIP_LIMIT) {
            Ok(nodes) => Ok(nodes
                .iter()
                .filter(|n| n.active())
                .map(|n| n.pnn.to_string())
                .collect()),
            Err(e) => {
                // A restarted ctdbd, or a reply that never came: a new connection next time.
                self.conn = None;
                Err(e.to_string())
            }
        }
    }
}

impl Backend {
    /// The membership poll's reading: remembered for the watcher, and a node that left
    /// starts the hold at once. True when a node left (the caller joins the grace now).
    /// `reconnected`: read over a new connection, maybe to a restarted ctdbd, whose first
    /// node map shows every other node disconnected; whether Ganesha must stop for the
    /// restart is decided first, on the membership from before it (torture seed 7, step
    /// 56: decided on the new daemon's view, "no other node was live", Ganesha kept the
    /// locks the takers' clients came to reclaim).
    pub fn membership_polled(&self, live: BTreeSet<String>, reconnected: bool) -> bool {
        let _decide = self
            .membership_decision
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if reconnected {
            self.stop_if_ctdbd_restarted_locked();
        }
        *self
            .fresh_membership
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), live.clone()));
        self.membership_seen(live)
    }

    /// The poll could not read the membership: the watcher's own look decides again (it
    /// also tells a ctdbd that is gone, which stops this Ganesha).
    pub fn membership_poll_failed(&self) {
        *self
            .fresh_membership
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The native reading if it is recent.
    pub(super) fn fresh_membership(&self) -> Option<BTreeSet<String>> {
        self.fresh_membership
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .filter(|(at, _)| at.elapsed() < MEMBERSHIP_FRESH)
            .map(|(_, live)| live.clone())
    }
}
