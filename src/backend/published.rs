//! This node's grace progress, published for `ganesha-ctdb status` (src/progress.rs): the
//! watcher writes it once a second when it changed (in a cluster), the grace hooks after
//! each grace event when standalone (no watcher runs there).

use super::{Backend, State};
use crate::progress::{NlmProgress, Progress, PROGRESS_PREFIX};
use crate::records::ServerIp;
use std::net::IpAddr;
use std::time::Instant;

/// Instants as Unix seconds, against one anchor taken when the backend opened: the same
/// instant always gives the same second, so a record is rewritten only when something in
/// it changed (each conversion against the clock of the moment would jitter by a second and
/// rewrite it every other tick).
#[derive(Clone, Copy)]
pub(super) struct WallAnchor {
    at: Instant,
    unix: u64,
}

impl WallAnchor {
    pub(super) fn now() -> WallAnchor {
        WallAnchor {
            at: Instant::now(),
            unix: crate::progress::unix_now(),
        }
    }

    pub(super) fn unix(&self, at: Instant) -> u64 {
        match at.checked_duration_since(self.at) {
            Some(d) => self.unix + d.as_secs(),
            None => self
                .unix
                .saturating_sub(self.at.duration_since(at).as_secs()),
        }
    }
}

impl Backend {
    pub(super) fn progress_of(&self, st: &State) -> Progress {
        let unix_of = |at: Instant| self.wall_anchor.unix(at);
        let grace_period = *self
            .ganesha_grace_period
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // read_clids offers only records in scope: every offered key is this grace's.
        let offered: std::collections::BTreeSet<String> = st.offered.keys().cloned().collect();
        let nlm = self
            .nlm_progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(ip, p)| (ip.to_string(), p.clone()))
            .collect();
        Progress {
            epoch: st.grace.epoch,
            stamp: self.stamp(st),
            in_grace: st.local_in_grace,
            recovering: st.grace.recovering,
            started: st.started_at.map_or(0, unix_of),
            ends: match (st.local_in_grace, st.armed_at, grace_period) {
                (true, Some(at), Some(g)) => unix_of(at) + g.as_secs(),
                _ => 0,
            },
            held_since: if st.grace.held {
                st.held_since.map_or(0, unix_of)
            } else {
                0
            },
            scope: st
                .scope
                .iter()
                .flatten()
                .map(|ip| match ip {
                    ServerIp::Ip(a) => a.to_string(),
                    ServerIp::Local => "local".into(),
                })
                .collect(),
            offered_total: offered.len(),
            offered,
            waiting_for: st.waiting_for.clone(),
            waiting_since: if st.waiting_for.is_empty() {
                0
            } else {
                st.enforcing_wait.map_or(0, unix_of)
            },
            nlm,
        }
    }

    /// Stores `progress@<node>` if it differs from what was last stored; a failed write is
    /// retried at the next call (the log says so once per content). In a cluster only the
    /// publisher thread calls it (src/ganesha/exports.rs): a write that waits out a CTDB
    /// recovery must never hold up the watcher's join.
    pub fn publish_progress(&self) {
        let bytes = {
            let st = self.state();
            self.progress_of(&st).encode()
        };
        let mut last = self
            .progress_published
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if last
            .as_ref()
            .is_some_and(|(b, stored)| *stored && *b == bytes)
        {
            return;
        }
        let key = format!("{PROGRESS_PREFIX}{}", self.node_id);
        match self.gstore().put(&key, &bytes) {
            Ok(()) => *last = Some((bytes, true)),
            Err(e) => {
                // Said once per content: the watcher retries every second.
                if last.as_ref().map_or(true, |(b, _)| *b != bytes) {
                    log::warn!(
                        "cannot publish this node's grace progress for `ganesha-ctdb status` \
                         ({e}); retrying"
                    );
                }
                *last = Some((bytes, false));
            }
        }
    }

    /// Standalone: no watcher publishes, so the grace hooks do.
    pub(super) fn publish_progress_if_standalone(&self) {
        if self.cluster.is_none() {
            self.publish_progress();
        }
    }

    /// The NSM notification of `ip` started (a new grace event) or finished.
    pub(super) fn nlm_progress_started(&self, ip: IpAddr) {
        self.nlm_progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ip, NlmProgress::default());
    }

    pub(super) fn clear_nlm_progress(&self) {
        self.nlm_progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

impl Backend {
    /// Stores `node@<node>` (src/facts.rs) for `ganesha-ctdb check`.
    pub fn publish_facts(&self, facts: &crate::facts::NodeFacts) {
        let key = format!("{}{}", crate::facts::NODE_PREFIX, self.node_id);
        match self.gstore().put(&key, &facts.encode()) {
            Ok(()) => log::debug!("published this node's set-up for `ganesha-ctdb check`"),
            Err(e) => log::warn!(
                "cannot publish this node's set-up for `ganesha-ctdb check` ({e}); check will \
                 report this node as not started"
            ),
        }
        for p in &facts.problems {
            log::warn!("set-up: {p}");
        }
    }
}
