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
//! reclaim. A node that holds, or joins the grace another node needs (a restart), may become
//! a taker before the cluster lifts, so it gives Ganesha a placeholder entry that never
//! reclaims: Ganesha then waits for Grace_Period before asking, and the taker's clients can
//! reclaim. The cost is that such a grace period ends at Grace_Period, not early. Ganesha 6.5 with Sticky_Grace off (its
//! default) keeps taking reclaims after a refused lift: no placeholder there, and every node
//! leaves grace as soon as no live node needs it.
//!
//! The placeholder only delays the ask to Grace_Period (with NLM enabled Ganesha 4.3 asks
//! at Grace_Period anyway): a takeover run that lasts longer than that from the moment a
//! node entered grace (two nodes dying together, a recovery whose leader died, a loaded
//! machine) found the node already refused, and the clients it then took over got
//! NFS4ERR_NO_GRACE (seed 3 of the torture run, in CI). Every nfs_start_grace restarts
//! Ganesha's timer, so the watcher re-arms it ("3:rearm") before it runs out while a takeover
//! may still come here: during a takeover run, and while the grace records cannot be read
//! (a CTDB recovery froze the database; torture seed 7, step 96). The ask then comes only
//! once the run is over. Not while another node merely still recovers: its need ends only
//! when its own Ganesha asks, so nodes re-arming for each other would never leave grace
//! (every cluster start). Where Grace_Period cannot be read (versions other than 4.3) this
//! is not done.

use super::{Backend, ReclaimEntry, State};
use crate::grace::{self, ClusterView};
use crate::records::{grace_key, GraceRecord, GRACE_PREFIX};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long `grace_enforcing` answers "not yet" at start-up before it stops waiting for
/// nodes that never enforce (a live CTDB node whose Ganesha is not running).
const ENFORCING_WAIT_LIMIT: Duration = Duration::from_secs(30);

/// Longest a hold for a released IP may last without the IP being taken over.
const HOLD_LIMIT: Duration = Duration::from_secs(120);
/// Longest a hold for a crash (startrecovery, or a node leaving) may last without an
/// ipreallocated: a recovery whose leader died first waits ~5-10 s for an election.
const MEMBERSHIP_HOLD_LIMIT: Duration = Duration::from_secs(60);

/// How long before Ganesha's grace timer runs out the watcher re-arms it: Ganesha asks to
/// lift at the first reaper tick past Grace_Period, and the reaper runs every 10 s at most
/// (Lease_Lifetime / 2 when shorter); the watcher looks every second.
pub(crate) const REARM_MARGIN: Duration = Duration::from_secs(12);

/// How long the watcher lets a public IP that CTDB gave this node go without its takeip
/// ("5:<ip>") before it does the takeover itself: the event script sends it within a
/// second of CTDB assigning the IP; only a takeip that never reached Ganesha takes longer.
pub(crate) const TAKEIP_WAIT: Duration = Duration::from_secs(5);

/// Grace records and live nodes as read at one moment.
pub(crate) type Snapshot = (BTreeMap<String, GraceRecord>, BTreeSet<String>);

impl Backend {
    /// Every node's grace record and who is live (CTDB membership; without CTDB every node
    /// that has a record, so that a dead node's need holds until the operator lifts it).
    pub(crate) fn grace_records(&self) -> Snapshot {
        self.read_and_cache().0
    }

    /// grace_records, and whether CTDB told the membership (rather than everyone being
    /// counted because it did not answer).
    fn read_and_cache(&self) -> (Snapshot, bool) {
        let (snap, known) = self.read_grace_records();
        *self.last_view.lock().unwrap_or_else(|e| e.into_inner()) = Some(snap.clone());
        (snap, known)
    }

    fn read_grace_records(&self) -> (Snapshot, bool) {
        let mut records = BTreeMap::new();
        let mut unreadable = false;
        let scanned = self.gstore().scan(GRACE_PREFIX);
        self.grace_read_failed
            .store(scanned.is_err(), std::sync::atomic::Ordering::Relaxed);
        match scanned {
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
            Err(e) => {
                // Not "no node needs grace": during a CTDB recovery catdb fails, and an
                // empty view let a node lift while a taker was reclaiming (torture seed 7,
                // step 42: an NLM challenger granted a lock a moved IP's client had the
                // right to reclaim). Decide on the records read last; with none yet, on
                // every node needing grace (S1 before L2).
                let last = self
                    .last_view
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .map(|(r, _)| r.clone());
                match last {
                    Some(previous) => {
                        log::error!(
                            "cannot read grace records: {e}; deciding on the records read last"
                        );
                        records = previous;
                    }
                    None => {
                        log::error!(
                            "cannot read grace records: {e}; counting every node as needing grace"
                        );
                        unreadable = true;
                    }
                }
            }
        }
        let everyone = || {
            let mut all: BTreeSet<String> = records.keys().cloned().collect();
            all.insert(self.node_id.clone());
            all
        };
        let (live, known) = match &self.cluster {
            None => (everyone(), false),
            Some(_) if self.fresh_membership().is_some() => {
                (self.fresh_membership().unwrap_or_default(), true)
            }
            Some(c) => match c.ctdb.nodes() {
                Ok(nodes) => (
                    nodes
                        .iter()
                        .filter(|n| n.live)
                        .map(|n| n.pnn.to_string())
                        .collect(),
                    true,
                ),
                Err(e) => {
                    // Unknown membership: count everyone, which keeps grace (S1) at the
                    // price of a dead node holding it (L2) until ctdbd answers again.
                    log::error!("cannot read CTDB membership ({e}); counting every node as live");
                    (everyone(), false)
                }
            },
        };
        if unreadable {
            // Nothing read yet: every live node stands in as needing and enforcing grace.
            for n in &live {
                if *n != self.node_id {
                    records.entry(n.clone()).or_insert_with(|| GraceRecord {
                        recovering: true,
                        cluster: crate::grace::NodeGrace {
                            epoch: 0,
                            need_grace: true,
                            enforcing: true,
                        },
                        ..GraceRecord::default()
                    });
                }
            }
        }
        ((records, live), known)
    }

    /// The cluster view with our own record as we hold it in memory (the stored copy may
    /// lag when a write failed).
    pub(super) fn view_with(
        &self,
        st: &State,
    ) -> (ClusterView<String>, BTreeMap<String, GraceRecord>) {
        Self::view_of(self.grace_records(), &self.node_id, st)
    }

    /// As view_with, from the records the watcher read last (at most about a second old).
    /// Hooks that run under Ganesha's grace mutex use it: during a CTDB recovery the
    /// databases are frozen until the startrecovery event returns, and that event waits
    /// for Ganesha ("3:hold"), which would wait for the grace mutex.
    fn cached_view_with(&self, st: &State) -> (ClusterView<String>, BTreeMap<String, GraceRecord>) {
        let cached = self
            .last_view
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let snap = match cached {
            Some(s) => s,
            None => self.grace_records(),
        };
        Self::view_of(snap, &self.node_id, st)
    }

    /// The watcher's read: refreshes what the hooks decide on. Takes no lock the hooks hold.
    pub fn refresh_grace_view(&self) {
        self.stop_if_ctdbd_restarted();
        let ((records, live), known) = self.read_and_cache();
        self.heal_own_record(records.get(&self.node_id));
        // Compared only between memberships CTDB told: the stand-in for an unknown one
        // (every node with a record) would make live nodes look gone, or dead ones come back.
        if !known {
            // Only when another node was live to take this node's IPs over: alone,
            // stopping would end the service and lose the records kept for the store.
            let others = self
                .last_membership
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .is_some_and(|l| l.iter().any(|n| *n != self.node_id));
            if others {
                self.stop_if_ctdbd_is_gone();
            }
            return;
        }
        let _decide = self
            .membership_decision
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // The poll reads the membership ten times a second and decides on each change
        // itself; the watcher's copy may be older than the poll's last (read before a
        // slow scan) and would replay a change the other way round (a node that came
        // back looking gone again, and a needless hold).
        if self.fresh_membership().is_some() {
            return;
        }
        self.membership_seen(live);
    }

    /// CTDB's membership as read now. A node that was live and is not any more starts a
    /// failover before CTDB runs startrecovery (which waits for a leader election when
    /// the leader died): hold the cluster in grace from here, as startrecovery would.
    /// True when a node left.
    pub(crate) fn membership_seen(&self, live: BTreeSet<String>) -> bool {
        let before = self
            .last_membership
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(live.clone());
        let Some(before) = before else { return false };
        let gone: Vec<&String> = before.difference(&live).collect();
        if gone.is_empty() || self.cluster.is_none() {
            return false;
        }
        let mut st = self.state();
        log::info!(
            "grace: node(s) {gone:?} left the cluster; holding the cluster in grace until \
             CTDB's takeover run is over"
        );
        st.grace.held = true;
        st.held_since = Some(Instant::now());
        st.grace.cluster.need_grace = true;
        if st.local_in_grace {
            st.grace.cluster.enforcing = true;
        }
        // Deferred: CTDB's recovery may freeze the database any moment now.
        self.write_grace_later(&st);
        true
    }

    /// The local ctdbd restarted under this Ganesha, however quickly (torture seed 7, step
    /// 7: ctdbd down 0.5 s, between two looks of the watcher): the other nodes saw it go and
    /// took this node's public IPs, and their clients' reclaims there met the locks this
    /// Ganesha still held (NFS4ERR_DENIED, NLM4_DENIED). Stop as for a ctdbd that is gone,
    /// unless this Ganesha serves no IP any more (a `ctdb` service restart first ran
    /// `shutdown`, which released every client) or no other node was live to take them.
    fn stop_if_ctdbd_restarted(&self) {
        let _decide = self
            .membership_decision
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.stop_if_ctdbd_restarted_locked();
    }

    /// stop_if_ctdbd_restarted under `membership_decision`, which the membership poll
    /// holds while it replaces the membership this decides on.
    pub(super) fn stop_if_ctdbd_restarted_locked(&self) {
        let Some(c) = &self.cluster else { return };
        let Some(now) = c.ctdb.daemon_instance() else {
            return;
        };
        let before = self
            .ctdbd_instance
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(now);
        if before.map_or(true, |b| b == now) {
            return;
        }
        let others = self
            .last_membership
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|l| l.iter().any(|n| *n != self.node_id));
        let serving = !self.state().known_ips.is_empty();
        if !(others && serving) {
            log::warn!(
                "this node's ctdbd restarted ({}); Ganesha keeps running: {}",
                c.ctdb.describe(),
                if others {
                    "it serves no public IP"
                } else {
                    "no other node was live to take its IPs"
                }
            );
            return;
        }
        self.stop_ganesha_for(format!(
            "this node's ctdbd restarted under this Ganesha ({}): the other nodes took this \
             node's public IPs",
            c.ctdb.describe()
        ));
    }

    /// `why` the other nodes take this node's public IPs, whose clients must reclaim there
    /// the locks this Ganesha holds: it stops (systemd starts it again).
    fn stop_ganesha_for(&self, why: String) {
        log::error!(
            "{why}, where their clients must reclaim the locks this Ganesha holds; stopping \
             Ganesha so that they can (systemd starts it again)"
        );
        log::logger().flush();
        match self
            .releaser
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            Some(r) => r.stop_ganesha(),
            None => log::error!("not inside Ganesha: nothing to stop"),
        }
    }

    /// The local ctdbd is gone (its socket refuses connections; a frozen or busy ctdbd
    /// still accepts them): the other nodes count this node dead and take its public IPs,
    /// whose clients will reclaim there, refused while this Ganesha still holds their locks.
    /// So this Ganesha stops, as smbd does when it loses ctdbd: its locks go with it, after
    /// the others entered grace for the node (they see ctdbd's connections close at once),
    /// and systemd starts it again.
    fn stop_if_ctdbd_is_gone(&self) {
        let Some(c) = &self.cluster else { return };
        // Twice, a moment apart: a connection that failed once for another reason is not
        // a dead daemon.
        if !c.ctdb.daemon_gone() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
        if !c.ctdb.daemon_gone() {
            return;
        }
        self.stop_ganesha_for(format!(
            "this node's ctdbd is gone ({} refuses connections): CTDB moves this node's public \
             IPs to other nodes",
            c.ctdb.describe()
        ));
    }

    /// While Ganesha runs, this node's record is what its memory says: another writer
    /// (the exit marker from `monitor`, racing this Ganesha's start; an operator) would
    /// otherwise leave a need in the store that this node never clears, and other nodes
    /// would wait on it for ever. The watcher rewrites a stored record that differs.
    fn heal_own_record(&self, stored: Option<&GraceRecord>) {
        let st = self.state();
        {
            let w = self.grace_writes.lock().unwrap_or_else(|e| e.into_inner());
            if w.settled != w.issued {
                return; // a deferred write is on its way
            }
        }
        let mine = GraceRecord::decode(&st.grace.encode()).unwrap_or_else(|_| st.grace.clone());
        if stored == Some(&mine) {
            return;
        }
        log::warn!(
            "grace: this node's stored grace record ({}) is not what this node holds ({}); \
             rewriting it",
            stored.map_or("none".into(), |r| String::from_utf8_lossy(&r.encode())
                .into_owned()),
            String::from_utf8_lossy(&mine.encode())
        );
        self.write_grace(&st);
    }

    fn view_of(
        (mut records, mut live): Snapshot,
        me: &str,
        st: &State,
    ) -> (ClusterView<String>, BTreeMap<String, GraceRecord>) {
        live.insert(me.to_string());
        records.insert(me.to_string(), st.grace.clone());
        let view = ClusterView {
            records: records
                .iter()
                .map(|(n, r)| (n.clone(), r.cluster))
                .collect(),
            live,
        };
        (view, records)
    }

    pub(super) fn write_grace(&self, st: &State) -> bool {
        let mut w = self.grace_writes.lock().unwrap_or_else(|e| e.into_inner());
        w.issued += 1;
        let result = self
            .gstore()
            .put(&grace_key(&self.node_id), &st.grace.encode());
        w.settled = w.issued;
        match result {
            Ok(()) => true,
            Err(e) => {
                log::error!(
                    "cannot store this node's grace record ({e}); {}",
                    if self.cluster.is_some() {
                        "other nodes decide on the previous one"
                    } else {
                        "the next start reads the previous one"
                    }
                );
                false
            }
        }
    }

    /// Stores our grace record from another thread: CTDB sends "hold" from its
    /// startrecovery event, and the databases stay frozen until that event returns.
    pub(super) fn write_grace_later(&self, st: &State) {
        if self.cluster.is_none() {
            // No CTDB, nothing frozen: write now (a deferred write could otherwise land
            // after a restarted backend in the same process wrote a newer record).
            self.write_grace(st);
            return;
        }
        let value = st.grace.encode();
        let key = grace_key(&self.node_id);
        let gens = self.grace_writes.clone();
        let store = self.grace_store.clone();
        let mine = {
            let mut w = gens.lock().unwrap_or_else(|e| e.into_inner());
            w.issued += 1;
            w.issued
        };
        let spawned = std::thread::Builder::new()
            .name("gctdb-grace-write".into())
            .spawn(move || {
                let mut w = gens.lock().unwrap_or_else(|e| e.into_inner());
                if w.issued != mine {
                    return; // a newer record was written meanwhile
                }
                if let Err(e) = store.put(&key, &value) {
                    log::error!("cannot store this node's grace record ({e})");
                }
                w.settled = mine;
            });
        if let Err(e) = spawned {
            log::error!("cannot start a thread to store the grace record ({e})");
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
            // Deferred: this may run inside CTDB's startrecovery event, when the database
            // is frozen until the event returns (and the read_clids that follows writes
            // the record anyway).
            self.write_grace_later(&st);
        }
        log::debug!("grace: this node enforces grace");
    }

    /// read_clids with event 3: the event script's verbs. Returns the placeholder entry
    /// when one is needed (see the module comment).
    pub(super) fn control(&self, st: &mut State, verb: &str) -> Vec<ReclaimEntry> {
        // "hold" (startrecovery) or "hold:<ip>" (releaseip of that IP).
        let (verb, released) = match verb.split_once(':') {
            Some(("hold", ip)) => ("hold", ip.parse::<IpAddr>().ok()),
            _ => (verb, None),
        };
        let hold = verb == "hold";
        if verb == "rearm" && st.local_in_grace && !st.fresh_grace {
            // read_clids noted the new start of Ganesha's timer; nothing else changes.
            log::debug!("grace: Grace_Period timer re-armed (a CTDB takeover run is in progress)");
            return Vec::new();
        }
        let (view, _) = self.cached_view_with(st);
        let me = self.node_id.clone();
        match verb {
            "hold" => {
                st.grace.held = true;
                st.held_since.get_or_insert_with(Instant::now);
                st.held_for.extend(released);
                st.grace.cluster = grace::start(&view, &me);
                log::info!(
                    "grace: holding the cluster in grace (epoch {}) for a CTDB takeover run",
                    st.grace.cluster.epoch
                );
            }
            "ipreallocated" => {
                st.grace.held = false;
                st.held_for.clear();
                st.held_since = None;
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
                if other == "rearm" {
                    // Ganesha left grace between the watcher's look and the call, and the
                    // call started a new grace period: take part in the cluster's.
                    log::info!("grace: a timer re-arm found Ganesha out of grace; rejoining");
                } else if other != "join" {
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
        if hold {
            self.write_grace_later(st);
        } else {
            self.write_grace(st);
        }
        if std::mem::take(&mut st.fresh_grace) {
            st.placeholder = false; // Ganesha cleared its list
        }
        // A hold or a join: this node may become a taker before the cluster lifts, also when
        // it joined for another node's restart (no run yet: a failure may start one).
        let needs_placeholder = self
            .refused_lift_ends_reclaims
            .load(std::sync::atomic::Ordering::Relaxed);
        if verb != "ipreallocated" && needs_placeholder && !st.placeholder {
            st.placeholder = true;
            return vec![ReclaimEntry {
                tag: format!(
                    "ganesha-ctdb:placeholder:{}:{}",
                    self.node_id, st.grace.cluster.epoch
                ),
                revoked: Vec::new(),
                reclaim_complete: false,
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
        let (view, _) = self.cached_view_with(&st);
        let done = !st.grace.held;
        let t = grace::try_lift_grace(&view, &me, done);
        if let Some(w) = t.write {
            st.grace.cluster = w;
            if !w.need_grace {
                st.grace.recovering = false;
            }
        }
        // Decided on records up to a second old, not in one transaction with our write
        // (the ctdb tool offers none). What makes that safe: in a crash every live node is
        // held by its own startrecovery event (its own flag, never stale); in a planned move
        // the releasing node waits until every live node enforces, so a node that lifted on
        // a stale view is seen not enforcing and rejoins before anything is released.
        let mut lift = t.lift;
        let mut unstored = false;
        // Alone: no CTDB and no other node's record (the dir store shared by several nodes
        // has theirs).
        let alone = self.cluster.is_none() && view.records.keys().all(|n| *n == me);
        if lift && !self.write_grace(&st) {
            if alone {
                // Nobody else reads a standalone node's record: leave grace at Grace_Period
                // as Ganesha decided (the record only tells the next start that this grace
                // period was interrupted, and a start offers every record anyway).
                log::error!(
                    "grace: leaving grace although this node's grace record cannot be stored \
                     (the error above); a standalone node has no other node to tell"
                );
            } else {
                // Others must see that we stop enforcing before we do (a releasing node
                // relies on it): stay in grace until the store takes the record.
                st.grace.cluster.enforcing = true;
                self.write_grace_later(&st);
                lift = false;
                unstored = true;
            }
        } else if !lift && t.write.is_some() {
            self.write_grace_later(&st);
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
                    if unstored {
                        "this node cannot store that it stops enforcing grace (the error \
                         above), and the other nodes must know before it does; retrying at \
                         every reaper tick"
                            .to_string()
                    } else if st.grace.held {
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
        let (view, _) = self.cached_view_with(&st);
        if grace::enforcing_everywhere(&view) {
            if let Some(since) = st.enforcing_wait.take() {
                log::info!(
                    "grace: every live node enforces grace (waited {:.1} s)",
                    since.elapsed().as_secs_f64()
                );
            }
            st.waiting_for.clear();
            return true;
        }
        let lagging: Vec<String> = view
            .live
            .iter()
            .filter(|n| !view.record(n).enforcing)
            .cloned()
            .collect();
        let since = *st.enforcing_wait.get_or_insert_with(Instant::now);
        if since.elapsed() > ENFORCING_WAIT_LIMIT {
            log::error!(
                "grace: node(s) {lagging:?} have not entered grace after {ENFORCING_WAIT_LIMIT:?}; \
                 carrying on without them (is their nfs-ganesha running?)"
            );
            st.waiting_for.clear();
            return true;
        }
        // Once per set of laggards: Ganesha asks every second, and at start-up it does not
        // listen on NFS meanwhile, which looks like a hang during a rolling start.
        if st.waiting_for != lagging {
            log::warn!(
                "grace: waiting for node(s) {lagging:?} to enforce grace (their Ganesha starts \
                 or joins); until they do, a starting Ganesha does not listen on NFS, so that \
                 no node grants what this node's clients may reclaim; at most \
                 {ENFORCING_WAIT_LIMIT:?}, see `ganesha-ctdb status`"
            );
            st.waiting_for = lagging;
        }
        false
    }

    /// maybe_start_grace / the watcher: another live node needs the cluster in grace and
    /// this node is not in grace.
    pub fn wants_to_join(&self) -> bool {
        let st = self.state();
        if st.local_in_grace {
            return false;
        }
        let (view, _) = self.cached_view_with(&st);
        grace::join(&view, &self.node_id).is_some()
    }

    /// The watcher: Ganesha's grace timer runs out within REARM_MARGIN while a takeover
    /// may still come to this node (a CTDB takeover run in progress here or on another
    /// live node, or the grace records unreadable: a CTDB recovery), and this Ganesha has
    /// not asked to lift yet. It would ask, be refused, and then (4.3) refuse the reclaims
    /// of any IP this node takes over later in this grace period; re-arming keeps it from
    /// asking.
    pub fn wants_to_rearm(&self, now: Instant) -> bool {
        let Some(g) = *self
            .ganesha_grace_period
            .lock()
            .unwrap_or_else(|e| e.into_inner())
        else {
            return false;
        };
        if !self
            .refused_lift_ends_reclaims
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return false;
        }
        let st = self.state();
        if !st.local_in_grace || st.lift_refused {
            return false;
        }
        let Some(armed) = st.armed_at else {
            return false;
        };
        if now.saturating_duration_since(armed) + REARM_MARGIN < g {
            return false;
        }
        let (view, records) = self.cached_view_with(&st);
        if takeover_run(&st, &view, &records) {
            return true;
        }
        // Grace records that cannot be read mean a CTDB recovery froze the database, and
        // takeovers follow it (torture seed 7, step 96: a fenced node's recovery froze it
        // for a minute; the reaper asked meanwhile, was refused, and the hold and the
        // takeip of 10.77.1.2 came seconds later: its clients got NFS4ERR_NO_GRACE).
        // Not for another node that still recovers: its need ends only when its own
        // Ganesha asks, and nodes re-arming for each other would never ask.
        self.grace_read_failed
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The watcher, during the grace period Ganesha started with: public IPs CTDB has given
    /// this node for TAKEIP_WAIT that this Ganesha does not know it serves (`known_ips`).
    /// Their takeip never reached Ganesha: Ganesha 4.3 reads the IPs it holds at the start
    /// of its grace period but answers D-Bus only once every live node enforces grace
    /// (seconds later), and a takeip in between finds "nobody on the bus" (torture seed 3,
    /// step 4: a failback to a node whose Ganesha was starting; every reclaim got
    /// NFS4ERR_NO_GRACE). The caller does the takeover ("5:<ip>") itself.
    pub fn missed_takeovers(&self, now: Instant) -> Vec<IpAddr> {
        {
            let mut st = self.state();
            if self.cluster.is_none() || !(st.local_in_grace && st.starting) {
                st.unknown_since.clear();
                return Vec::new();
            }
        }
        // Outside the state lock: a ctdb call may take seconds. Only addresses really on
        // this node's interfaces: after a release CTDB may list the node as the holder until
        // the taker has the IP, but 10.interface has removed it.
        let held: BTreeSet<IpAddr> = self
            .held_ips()
            .into_iter()
            .filter(|ip| std::net::UdpSocket::bind((*ip, 0)).is_ok())
            .collect();
        let mut st = self.state();
        let missing: BTreeSet<IpAddr> = held.difference(&st.known_ips).copied().collect();
        st.unknown_since.retain(|ip, _| missing.contains(ip));
        let mut due = Vec::new();
        for ip in missing {
            let since = *st.unknown_since.entry(ip).or_insert(now);
            if now.saturating_duration_since(since) >= TAKEIP_WAIT {
                due.push(ip);
            }
        }
        if !due.is_empty() {
            log::warn!(
                "grace: this node holds {due:?} but Ganesha never had their takeover (a takeip \
                 while it was starting); offering their clients now"
            );
        }
        due
    }

    /// The watcher: this node refused to lift (another node needed grace) and no other
    /// live node needs it any more; running the reaper now lifts at once instead of at the
    /// next tick.
    pub fn wants_to_retry_lift(&self) -> bool {
        let st = self.state();
        if !(st.local_in_grace && st.lift_refused) || st.grace.held {
            return false;
        }
        let (view, _) = self.cached_view_with(&st);
        grace::may_lift(&view, &self.node_id, true)
    }

    /// The watcher: ends this node's hold once every IP it released has a new holder (the
    /// taker has then recorded its own need), or when a hold has lasted HOLD_LIMIT (CTDB
    /// never finished the takeover: do not keep the cluster in grace for ever).
    pub fn end_finished_hold(&self) {
        let (held, released, since) = {
            let st = self.state();
            (st.grace.held, st.held_for.clone(), st.held_since)
        };
        if !held {
            return;
        }
        let limit = if released.is_empty() {
            MEMBERSHIP_HOLD_LIMIT
        } else {
            HOLD_LIMIT
        };
        let expired = since.is_some_and(|t| t.elapsed() > limit);
        let taken = !released.is_empty()
            && match &self.cluster {
                Some(c) => match c.ctdb.public_ips() {
                    Ok(ips) => released.iter().all(|ip| {
                        ips.iter()
                            .any(|p| p.ip == *ip && p.holder.is_some_and(|h| h != c.pnn))
                    }),
                    Err(_) => false,
                },
                None => false,
            };
        if !(taken || expired) {
            return;
        }
        let mut st = self.state();
        if !st.grace.held {
            return;
        }
        if expired && !taken {
            log::error!(
                "grace: this node held the cluster in grace for {limit:?} without CTDB \
                 finishing a takeover run; ending the hold"
            );
        } else {
            log::info!(
                "grace: released IP(s) {:?} taken over; hold ended",
                st.held_for
            );
        }
        st.grace.held = false;
        st.held_for.clear();
        st.held_since = None;
        st.grace.cluster.need_grace = st.grace.recovering;
        self.write_grace(&st);
    }

    pub fn is_cluster(&self) -> bool {
        self.cluster.is_some()
    }
}

/// A CTDB takeover run is in progress: this node or another live one holds the cluster in
/// grace for it, so an IP may still be taken over here.
fn takeover_run(
    st: &State,
    view: &ClusterView<String>,
    records: &BTreeMap<String, GraceRecord>,
) -> bool {
    st.grace.held
        || view
            .live
            .iter()
            .any(|n| records.get(n).is_some_and(|r| r.held))
}
