//! The recovery backend's meaning, on plain Rust values: what each Ganesha hook does to the
//! store. src/ganesha decodes Ganesha's structs into these types and calls in here.
//!
//! Reclaim rights (design §5, S2): a grace period starts with an epoch bump; the records in
//! scope are offered for reclaim and remembered with the stamp they had. A reclaiming client
//! is re-added by Ganesha (add_clid), which rewrites its record with the current stamp. When
//! the grace period completes (end_grace), offered records whose stamp did not change belong
//! to clients that did not reclaim and are deleted. A crash before end_grace deletes nothing,
//! so the next start offers them again.

use crate::config::{Config, StoreKind};
use crate::ctdb::{CtdbApi, CtdbTool, PublicIp};
use crate::records::{
    grace_key, parse_v4_key, recovery_tag, v4_key, ClientRecord, GraceRecord, ServerIp, V4_PREFIX,
};
use crate::store::ctdb::CtdbStore;
use crate::store::dir::DirStore;
use crate::store::{Store, StoreError};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

mod cluster;
pub mod membership;
mod pending;
mod published;
mod release;

pub use pending::{run_file, PendingStatus, MAX_PENDING, PENDING_PREFIX};
use pending::{Op, Pending, StatusSinks};

pub use release::{ClientReleaser, ReleaseOutcome, RELEASE_LIMIT, RELEASE_PREFIX};

/// A client as Ganesha's nfs_client_id_t describes it, already validated.
#[derive(Clone, Debug)]
pub struct ClientInfo {
    pub clientid: u64,
    /// co_ownerid bytes (nfs_client_record_t.cr_client_val).
    pub owner: Vec<u8>,
    /// gsh_client.hostaddr_str; None when Ganesha has no gsh_client for it.
    pub caller_addr: Option<String>,
    /// The server address the client connected to: from its client record (NFSv4.1+), or
    /// for NFSv4.0, whose record has none, from the connection add_clid's request came in
    /// on where the running Ganesha lets us learn it (src/ganesha/layout.rs); else None.
    pub server_addr: Option<IpAddr>,
    /// `server_addr` is what Ganesha 4.3 and 6.x keep of an NFSv4.1+ client's server
    /// address: a u32, the address itself for IPv4 (and IPv4-mapped IPv6), only the low
    /// 32 bits of a real IPv6 one (nfs4_op_exchange_id.c get_raddr); attribute() matches it
    /// against the public IPs (src/server_addr.rs).
    pub server_addr_low32: bool,
    pub minor_version: u32,
    /// The recovery tag as the running Ganesha builds it, where it builds it itself (15.x:
    /// nfs4_create_clid_name, which honours RecoverySkipIp); else None and `tag()` builds
    /// it by Ganesha's rule.
    pub tag: Option<String>,
}

impl ClientInfo {
    pub fn tag(&self) -> String {
        self.tag
            .clone()
            .unwrap_or_else(|| recovery_tag(self.caller_addr.as_deref(), &self.owner))
    }
}

/// Why Ganesha asks for the client list (nfs_grace_start_t, or none at start-up).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GraceStart {
    /// Server start: gsp == NULL.
    Restart,
    /// EVENT_TAKE_IP (5): this node takes over a public IP.
    TakeIp(IpAddr),
    /// EVENT_UPDATE_CLIENTS (3) with a verb in place of the address: how the CTDB event
    /// script drives cluster grace through Ganesha ("3:hold", "3:join", "3:ipreallocated").
    Control(String),
    /// Any other event that reads clients (4 TAKE_NODEID), or a TAKE_IP whose address does
    /// not parse: logged, nothing offered.
    Unsupported { event: i32, detail: String },
}

/// One client offered for reclaim: Ganesha's add_clid_entry(tag) and add_rfh_entry(b64)s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReclaimEntry {
    pub tag: String,
    pub revoked: Vec<String>,
    /// Handed to Ganesha 15.x with the entry: the client had sent RECLAIM_COMPLETE (or its
    /// record comes from a version that does not tell, which counts as complete).
    pub reclaim_complete: bool,
}

#[derive(Debug)]
pub enum BackendError {
    Store(StoreError),
    Unsupported(String),
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendError::Store(e) => write!(f, "{e}"),
            BackendError::Unsupported(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for BackendError {}

impl From<StoreError> for BackendError {
    fn from(e: StoreError) -> Self {
        BackendError::Store(e)
    }
}

#[derive(Default)]
struct State {
    grace: GraceRecord,
    /// Server IPs whose clients this grace period recovers; None = all (standalone restart).
    scope: Option<BTreeSet<ServerIp>>,
    /// Records offered in this grace period, with the stamp they had when offered.
    offered: HashMap<String, String>,
    /// Keys written for each live client id, so rm_clid finds them even if attribution
    /// would now differ.
    keys_by_clientid: HashMap<u64, Vec<String>>,
    /// Ganesha is in grace on this node (set_enforcing .. end_grace).
    local_in_grace: bool,
    /// set_enforcing ran and no read_clids followed yet: Ganesha cleared its clid list.
    fresh_grace: bool,
    /// The placeholder entry that keeps Ganesha from asking to lift (see cluster.rs) is
    /// in Ganesha's list for this grace period.
    placeholder: bool,
    /// try_lift_grace said false in this grace period: Ganesha now refuses reclaims here.
    lift_refused: bool,
    /// When Ganesha's Grace_Period timer last started, as far as this backend saw: every
    /// nfs_start_grace re-arms it, and read_clids runs inside the ones that read clients
    /// (others only re-arm it later, which makes this earlier than the truth: the safe side).
    armed_at: Option<Instant>,
    /// Public IPs CTDB says this node holds that are not in `known_ips`, and since when the
    /// watcher has seen them so (cluster.rs, missed_takeovers).
    unknown_since: BTreeMap<IpAddr, Instant>,
    /// The public IPs this Ganesha knows it serves: held when it started, taken over
    /// since ("5:<ip>"), minus those released.
    known_ips: BTreeSet<IpAddr>,
    /// This grace period began with Ganesha's start (Restart), the only time a takeip can
    /// miss Ganesha (cluster.rs, missed_takeovers).
    starting: bool,
    /// First time grace_enforcing answered false (start-up waits on it).
    enforcing_wait: Option<Instant>,
    /// The live nodes grace_enforcing last waited for (a starting Ganesha does not listen
    /// until they enforce grace); published for `status`.
    waiting_for: Vec<String>,
    /// When this node's current grace epoch began.
    started_at: Option<Instant>,
    /// IPs this node released while holding: the hold ends once they have a new holder
    /// (`ctdb moveip` runs no ipreallocated event).
    held_for: BTreeSet<IpAddr>,
    held_since: Option<Instant>,
    /// Set when this grace period's epoch could not be stored (see `stamp`).
    stamp_nonce: Option<String>,
    /// Clients whose state this node let go because the IP they reached it through left
    /// (release verb, Ganesha's own "2:<ip>"): their rm_clid keeps their records, which
    /// the IP's taker offers for reclaim.
    released: BTreeSet<u64>,
}

/// Generations of this node's grace record writes: the last issued, and the last that
/// finished (stored or failed). A deferred write older than the last issued is skipped.
#[derive(Default)]
struct GraceWrites {
    issued: u64,
    settled: u64,
}

/// This node in a CTDB cluster: who it is and how to ask ctdbd about IPs and members.
#[derive(Clone)]
pub struct ClusterNode {
    pub pnn: u32,
    pub ctdb: Arc<dyn CtdbApi>,
}

/// How long Ganesha's start waits for its ctdbd to answer and attach the databases.
const CTDB_START_WAIT: Duration = Duration::from_secs(60);

pub struct Backend {
    store: Arc<dyn Store>,
    /// Where `grace@` records live: `store` itself, or with the ctdb store a small database
    /// of their own, polled every second by every node.
    grace_store: Arc<dyn Store>,
    node_id: String,
    cluster: Option<ClusterNode>,
    state: Mutex<State>,
    /// add_clid/rm_clid/add_revoke_fh share it; end_grace's clean-up takes it exclusively
    /// around each record's check and delete, so that a client reclaiming at the very end
    /// of grace cannot have its fresh record deleted.
    records: Arc<RwLock<()>>,
    /// The last grace records and membership read, for decisions that must not wait for
    /// ctdbd (during a CTDB recovery its databases are frozen).
    last_view: Mutex<Option<cluster::Snapshot>>,
    /// The live nodes as CTDB last told them, for the watcher to see a node leave.
    last_membership: Mutex<Option<BTreeSet<String>>>,
    /// The membership as the fast poll read it last over ctdbd's socket, and when.
    fresh_membership: Mutex<Option<(Instant, BTreeSet<String>)>>,
    /// Held while deciding whether a restarted ctdbd stops Ganesha, and by the membership
    /// poll while it replaces the membership that decision reads.
    membership_decision: Mutex<()>,
    /// Generation of this node's grace record writes: a deferred write never overwrites
    /// a newer one.
    grace_writes: Arc<Mutex<GraceWrites>>,
    /// `ctdb ip all` as last read for filing NFSv4.0 clients: one SETCLIENTID_CONFIRM per
    /// v4.0 client would otherwise cost a `ctdb` run (~10 ms) each. Dropped at every grace
    /// event (takeover, control verb, restart), so it is stale at most IP_LIST_TTL.
    ip_list: Mutex<Option<(Instant, Vec<PublicIp>)>>,
    /// How this node makes Ganesha drop released clients' state (src/ganesha); None
    /// outside Ganesha.
    releaser: RwLock<Option<Arc<dyn ClientReleaser>>>,
    /// An NFSv4.0 client was filed by its owner string (once per process is enough).
    v40_heuristic_logged: std::sync::atomic::AtomicBool,
    /// Low-32-bit values whose public-address collision was logged (attribute_low32).
    low32_collision_logged: Mutex<BTreeSet<u32>>,
    /// The public addresses as last read (known_public_addrs).
    public_addrs: Mutex<Option<Vec<IpAddr>>>,
    public_addrs_failed: Mutex<Option<Instant>>,
    /// The running Ganesha calls reclaim_complete (15.x): records of NFSv4.1+ clients then
    /// say whether it came.
    tracks_reclaim_complete: std::sync::atomic::AtomicBool,
    /// Ganesha refuses reclaims for the rest of a grace period once a lift was refused
    /// (4.3; 6.5 with Sticky_Grace): nodes in a takeover run need the placeholder.
    refused_lift_ends_reclaims: std::sync::atomic::AtomicBool,
    /// Ganesha's Grace_Period where it could be read from its configuration (4.3): lets
    /// the watcher re-arm Ganesha's grace timer before it runs out (cluster.rs).
    ganesha_grace_period: Mutex<Option<Duration>>,
    /// The local ctdbd's instance (CtdbApi::daemon_instance) the watcher saw last.
    ctdbd_instance: Mutex<Option<u64>>,
    /// The watcher's last read of the grace records failed (a CTDB recovery froze the
    /// database): a takeover run is likely to follow (wants_to_rearm).
    grace_read_failed: std::sync::atomic::AtomicBool,
    /// The statd spool (set_statd_spool).
    statd_spool: Mutex<Option<std::path::PathBuf>>,
    /// Client records the store could not take yet (D1 under faults).
    pending: Arc<Pending>,
    /// How the NSM notifications of this grace period went, per IP (published.rs).
    nlm_progress: Arc<Mutex<BTreeMap<IpAddr, crate::progress::NlmProgress>>>,
    /// The progress record last published, and whether it was stored.
    progress_published: Mutex<Option<(Vec<u8>, bool)>>,
    wall_anchor: published::WallAnchor,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.pending.stop();
    }
}

/// How long the public IP list read for filing NFSv4.0 clients is reused.
const IP_LIST_TTL: std::time::Duration = std::time::Duration::from_secs(2);

impl Backend {
    /// Opens the configured store and reads this node's grace record.
    pub fn open(config: &Config) -> Result<Backend, BackendError> {
        let store: Box<dyn Store> = match config.store {
            StoreKind::Dir => Box::new(DirStore::open(&config.dir)?),
            StoreKind::Ctdb => {
                let tool = CtdbTool::new();
                // A node that starts with its cluster (a reboot, a restart after a crash)
                // meets ctdbd still joining or recovering, when it cannot attach databases:
                // wait for it, bounded, rather than fail and be restarted until systemd
                // gives up.
                let started = Instant::now();
                let mut said = false;
                let (pnn, store, grace_store) = loop {
                    let attempt = (|| -> Result<_, BackendError> {
                        let nodes = tool.nodes().map_err(|e| {
                            BackendError::Unsupported(format!(
                                "Store = ctdb: cannot ask ctdbd who this node is: {e}; start \
                                 ctdbd first (ganesha.nfsd must start after ctdb)"
                            ))
                        })?;
                        let pnn = nodes
                            .iter()
                            .find(|n| n.this_node)
                            .map(|n| n.pnn)
                            .ok_or_else(|| {
                                BackendError::Unsupported(
                                    "Store = ctdb: `ctdb -X status` did not mark this node".into(),
                                )
                            })?;
                        let store = CtdbStore::open(Box::new(tool.clone()), &config.recovery_db)?;
                        let grace_store =
                            CtdbStore::open(Box::new(tool.clone()), &config.grace_db)?;
                        Ok((pnn, store, grace_store))
                    })();
                    match attempt {
                        Ok(ready) => break ready,
                        Err(e) if started.elapsed() < CTDB_START_WAIT => {
                            if !said {
                                log::warn!(
                                    "{e}; waiting for ctdbd (up to {CTDB_START_WAIT:?}) before \
                                     Ganesha serves"
                                );
                                said = true;
                            }
                            std::thread::sleep(Duration::from_secs(1));
                        }
                        Err(e) => return Err(e),
                    }
                };
                if said {
                    log::info!(
                        "ctdbd answered after {:.1} s",
                        started.elapsed().as_secs_f64()
                    );
                }
                // In a cluster the node is its PNN: grace@<pnn> and stamps "<pnn>.<epoch>"
                // are then unique without configuration.
                return Backend::with_cluster(
                    Box::new(store),
                    Some(Box::new(grace_store)),
                    &pnn.to_string(),
                    Some(ClusterNode {
                        pnn,
                        ctdb: Arc::new(tool),
                    }),
                );
            }
        };
        Backend::with_store(store, &config.node_id)
    }

    pub fn with_store(store: Box<dyn Store>, node_id: &str) -> Result<Backend, BackendError> {
        Backend::with_cluster(store, None, node_id, None)
    }

    pub fn with_cluster(
        store: Box<dyn Store>,
        grace_store: Option<Box<dyn Store>>,
        node_id: &str,
        cluster: Option<ClusterNode>,
    ) -> Result<Backend, BackendError> {
        let store: Arc<dyn Store> = Arc::from(store);
        let grace_store: Arc<dyn Store> = match grace_store {
            Some(g) => Arc::from(g),
            None => store.clone(),
        };
        Backend::from_parts(store, grace_store, node_id, cluster)
    }

    /// A backend on stores already shared (tests restart it on the same store).
    pub fn from_parts(
        store: Arc<dyn Store>,
        grace_store: Arc<dyn Store>,
        node_id: &str,
        cluster: Option<ClusterNode>,
    ) -> Result<Backend, BackendError> {
        let grace = match grace_store.get(&grace_key(node_id))? {
            None => GraceRecord::default(),
            Some(bytes) => GraceRecord::decode(&bytes).unwrap_or_else(|e| {
                // The epoch only has to differ from every stamp in the store; a fresh
                // high-entropy start keeps that true when the old one is unreadable.
                log::error!(
                    "grace record {} unreadable ({e}); starting from a new epoch",
                    grace_key(node_id)
                );
                GraceRecord {
                    epoch: now_epoch_floor(),
                    recovering: true,
                    ..GraceRecord::default()
                }
            }),
        };
        log::info!(
            "ganesha-ctdb backend on node {node_id}: store {}, epoch {}{}",
            store.describe(),
            grace.epoch,
            if grace.recovering {
                ", last grace period was interrupted"
            } else {
                ""
            }
        );
        let pending = Pending::new(
            store.clone(),
            StatusSinks {
                // Published where status can read it even when the records' store is the
                // one failing: the grace database (a store of its own with ctdb) and a file
                // in the run-time directory.
                grace_store: (!Arc::ptr_eq(&store, &grace_store)).then(|| grace_store.clone()),
                run_file: Some(run_file(node_id)),
                node_id: node_id.to_string(),
            },
        );
        Ok(Backend {
            pending,
            store,
            grace_store,
            node_id: node_id.to_string(),
            cluster,
            state: Mutex::new(State {
                // A hold stored before a restart runs out like any other: its clock starts
                // now (without one, end_finished_hold never ends it).
                held_since: grace.held.then(Instant::now),
                grace,
                ..State::default()
            }),
            records: Arc::new(RwLock::new(())),
            last_view: Mutex::new(None),
            last_membership: Mutex::new(None),
            fresh_membership: Mutex::new(None),
            membership_decision: Mutex::new(()),
            grace_writes: Arc::new(Mutex::new(GraceWrites::default())),
            ip_list: Mutex::new(None),
            releaser: RwLock::new(None),
            v40_heuristic_logged: std::sync::atomic::AtomicBool::new(false),
            low32_collision_logged: Mutex::new(BTreeSet::new()),
            public_addrs: Mutex::new(None),
            public_addrs_failed: Mutex::new(None),
            tracks_reclaim_complete: std::sync::atomic::AtomicBool::new(false),
            refused_lift_ends_reclaims: std::sync::atomic::AtomicBool::new(true),
            ganesha_grace_period: Mutex::new(None),
            ctdbd_instance: Mutex::new(None),
            grace_read_failed: std::sync::atomic::AtomicBool::new(false),
            statd_spool: Mutex::new(None),
            nlm_progress: Arc::new(Mutex::new(BTreeMap::new())),
            progress_published: Mutex::new(None),
            wall_anchor: published::WallAnchor::now(),
        })
    }

    /// The running Ganesha reports RECLAIM_COMPLETE (15.x).
    pub fn set_tracks_reclaim_complete(&self, tracks: bool) {
        self.tracks_reclaim_complete
            .store(tracks, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the running Ganesha stops taking reclaims once a lift was refused (see
    /// cluster.rs); true unless known otherwise.
    pub fn set_refused_lift_ends_reclaims(&self, ends: bool) {
        self.refused_lift_ends_reclaims
            .store(ends, std::sync::atomic::Ordering::Relaxed);
    }

    /// Ganesha's Grace_Period, as read from its configuration.
    pub fn set_ganesha_grace_period(&self, g: Duration) {
        *self
            .ganesha_grace_period
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(g);
    }

    /// Installs how released clients' state is dropped inside Ganesha.
    pub fn set_releaser(&self, releaser: Arc<dyn ClientReleaser>) {
        *self.releaser.write().unwrap_or_else(|e| e.into_inner()) = Some(releaser);
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    fn gstore(&self) -> &dyn Store {
        self.grace_store.as_ref()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Hooks never leave State half-updated across a panic point, so a poisoned lock
        // still holds consistent data; refusing service would be worse.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `<node>.<epoch>`, and `.<nonce>` when this grace period's epoch could not be
    /// stored: a restart would then hand out the same epoch again, and records rewritten in
    /// this grace period must not look rewritten in that one.
    fn stamp(&self, st: &State) -> String {
        match &st.stamp_nonce {
            None => format!("{}.{}", self.node_id, st.grace.epoch),
            Some(n) => format!("{}.{}.{n}", self.node_id, st.grace.epoch),
        }
    }

    /// recovery_read_clids: the clients that may reclaim, unique by tag.
    pub fn read_clids(&self, start: &GraceStart) -> Vec<ReclaimEntry> {
        // IPs move around grace events: the next v4.0 client is filed by a fresh list.
        *self.ip_list.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let mut st = self.state();
        st.armed_at = Some(Instant::now());
        match start {
            GraceStart::Restart => {
                // Standalone: every record is this node's. In a cluster: the IPs this node
                // holds now (the others come with their takeip), and clients filed under no IP.
                let held = self.held_ips();
                st.known_ips = held.iter().copied().collect();
                st.starting = true;
                st.scope = self.cluster.as_ref().map(|_| {
                    let mut scope: BTreeSet<ServerIp> =
                        held.iter().copied().map(ServerIp::Ip).collect();
                    scope.insert(ServerIp::Local);
                    scope
                });
                // A Ganesha that restarted under its IPs (crashed alone, restarted by
                // systemd) lost every NLM lock, and nothing else tells those clients: no IP
                // moved, and rpc.statd (which runs on) sends SM_NOTIFY only when it starts.
                self.clear_nlm_progress();
                for ip in &held {
                    self.notify_nlm_clients(*ip);
                }
                st.offered.clear();
                // A hold stored before the restart (a takeover run, or the exit marker
                // `ganesha-ctdb ganesha-stopped` wrote when this Ganesha died) ends here:
                // this node's own reclaim window now keeps the cluster in grace, and every
                // other live node holds for a takeover run on its own.
                st.grace.held = false;
                st.held_for.clear();
                st.held_since = None;
                let (view, _) = self.view_with(&st);
                st.grace.cluster = crate::grace::restart(&view, &self.node_id);
                self.begin_epoch(&mut st);
            }
            GraceStart::TakeIp(ip) => {
                if !st.grace.recovering || st.offered.is_empty() && st.scope.is_none() {
                    st.offered.clear();
                    st.scope = Some(BTreeSet::new());
                    let (view, _) = self.view_with(&st);
                    st.grace.cluster = crate::grace::start(&view, &self.node_id);
                    self.begin_epoch(&mut st);
                    self.clear_nlm_progress();
                }
                st.known_ips.insert(*ip);
                if let Some(scope) = st.scope.as_mut() {
                    scope.insert(ServerIp::Ip(*ip));
                }
                if self.cluster.is_some() {
                    self.notify_nlm_clients(*ip);
                }
                if st.lift_refused {
                    log::error!(
                        "takeover of {ip} during a grace period in which Ganesha already asked \
                         to lift: Ganesha 4.3 refuses reclaims (NFS4ERR_NO_GRACE) until this \
                         grace period ends, so {ip}'s clients cannot reclaim here"
                    );
                }
            }
            GraceStart::Control(verb) => {
                if let Some(what) = verb.strip_prefix("release:") {
                    self.release(&mut st, what);
                    return Vec::new();
                }
                return self.control(&mut st, verb);
            }
            GraceStart::Unsupported { event, detail } => {
                log::warn!(
                    "grace event {event} ({detail}) asks for clients this backend does not \
                     track that way; offering none (use takeover by IP, event 5)"
                );
                return Vec::new();
            }
        }
        let current = self.stamp(&st);
        let scan = match self.store.scan(V4_PREFIX) {
            Ok(scan) => scan,
            Err(e) => {
                log::error!(
                    "cannot read client records from {}: {e}; no client can reclaim",
                    self.store.describe()
                );
                return Vec::new();
            }
        };
        for skipped in &scan.skipped {
            log::warn!(
                "skipping store entry {}: {}",
                skipped.location,
                skipped.reason
            );
        }
        // Records still waiting to be stored count as present (D1 under faults).
        let mut entries: BTreeMap<String, Vec<u8>> = scan.entries.into_iter().collect();
        for (key, value) in self.pending.overlay(V4_PREFIX) {
            match value {
                Some(v) => entries.insert(key, v),
                None => entries.remove(&key),
            };
        }
        let mut by_tag: BTreeMap<String, (BTreeSet<String>, bool)> = BTreeMap::new();
        for (key, value) in entries {
            let Some((ip, tag)) = parse_v4_key(&key) else {
                log::warn!("skipping store entry {key:?}: not a v4@<ip>@<tag> key");
                continue;
            };
            let in_scope = st.scope.as_ref().map_or(true, |scope| scope.contains(&ip));
            if !in_scope {
                continue;
            }
            let record = match ClientRecord::decode(&value) {
                Ok(r) => r,
                Err(e) => {
                    log::warn!("skipping client record {key:?}: {e}");
                    continue;
                }
            };
            if record.stamp == current {
                continue; // written in this grace period: the client is already back
            }
            let tag = tag.to_string();
            st.offered.insert(key, record.stamp);
            let e = by_tag.entry(tag).or_insert_with(|| (BTreeSet::new(), true));
            e.0.extend(record.revoked);
            // Complete only if every record of the tag says so (§8.4.3 errs towards no).
            e.1 &= record.reclaim_complete.unwrap_or(true);
        }
        let entries: Vec<ReclaimEntry> = by_tag
            .into_iter()
            .map(|(tag, (revoked, reclaim_complete))| ReclaimEntry {
                tag,
                revoked: revoked.into_iter().collect(),
                reclaim_complete,
            })
            .collect();
        log::info!(
            "grace epoch {} ({}): {} client(s) may reclaim",
            st.grace.epoch,
            describe_scope(&st.scope, start == &GraceStart::Restart),
            entries.len()
        );
        drop(st);
        self.publish_progress_if_standalone();
        entries
    }

    fn begin_epoch(&self, st: &mut State) {
        st.grace.epoch += 1;
        st.started_at = Some(Instant::now());
        st.grace.recovering = true;
        st.grace.cluster.need_grace = true;
        st.grace.cluster.enforcing = true;
        st.local_in_grace = true;
        st.fresh_grace = false;
        match self
            .gstore()
            .put(&grace_key(&self.node_id), &st.grace.encode())
        {
            Ok(()) => st.stamp_nonce = None,
            Err(e) => {
                let nonce = format!("{:08x}", getrandom::u32().unwrap_or(std::process::id()));
                log::error!(
                    "cannot record grace epoch {}: {e}; this grace period's client records \
                     are stamped with nonce {nonce} so that a restart, which would reuse the \
                     epoch, cannot mistake them for its own",
                    st.grace.epoch
                );
                st.stamp_nonce = Some(nonce);
            }
        }
    }

    /// Tells the NLM clients recorded for `ip` that the server behind it restarted (NSM
    /// SM_NOTIFY from `ip`), on a thread of its own: never on Ganesha's grace path.
    fn notify_nlm_clients(&self, ip: IpAddr) {
        let store = self.store.clone();
        self.nlm_progress_started(ip);
        let progress = self.nlm_progress.clone();
        let host = crate::config::hostname().unwrap_or_default();
        let spool = self
            .statd_spool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let cluster = self.cluster.clone();
        let spawned = std::thread::Builder::new()
            .name("gctdb-nsm".into())
            .spawn(move || {
                // A host first monitored just before this Ganesha died is still in the
                // spool (an unprivileged callout's, flushed once a second): record it first
                // (torture_short, seed 3 step 1: a crash 0.23 s after the first NLM lock).
                // The periodic flusher may be writing it this moment: wait for it (bounded)
                // rather than read the records before it is done.
                if let Some(spool) = &spool {
                    flush_statd_spool(
                        spool,
                        store.as_ref(),
                        cluster.as_ref(),
                        Some(std::time::Duration::from_secs(3)),
                    );
                }
                // Right after a takeover ctdbd may still be recovering and answer slowly:
                // reading the records is retried for about a minute before giving up.
                let mut delay = std::time::Duration::from_millis(500);
                let result = loop {
                    match crate::statd::notify_ip(
                        store.as_ref(),
                        ip,
                        &host,
                        std::time::Duration::from_secs(30),
                    ) {
                        Err(crate::statd::StatdError::Store(e))
                            if delay <= std::time::Duration::from_secs(16) =>
                        {
                            log::warn!(
                                "NSM: reading {ip}'s NLM clients: {e}; retrying in {delay:?}"
                            );
                            std::thread::sleep(delay);
                            delay *= 2;
                        }
                        other => break other,
                    }
                };
                {
                    let mut all = progress.lock().unwrap_or_else(|e| e.into_inner());
                    let p = all.entry(ip).or_default();
                    p.done = true;
                    match &result {
                        Ok((report, unresolved)) => {
                            let silent = report.unanswered();
                            p.notified = report.notified();
                            p.silent = silent
                                .iter()
                                .map(|a| a.to_string())
                                .chain(unresolved.iter().cloned())
                                .collect();
                        }
                        Err(e) => p.error = Some(e.to_string()),
                    }
                }
                match result {
                    Ok((report, unresolved))
                        if report.outcomes.is_empty() && unresolved.is_empty() =>
                    {
                        log::debug!("NSM: no NLM clients recorded for {ip}");
                    }
                    Ok((report, unresolved)) => log::info!(
                        "NSM: SM_NOTIFY from {ip}: {} client(s) notified in {:.1} s; no answer \
                         from {:?}; names that did not resolve: {unresolved:?}{}",
                        report.notified(),
                        report.elapsed.as_secs_f64(),
                        report.unanswered(),
                        match report.other_family() {
                            o if o.is_empty() => String::new(),
                            o => format!("; not sent to {o:?} (the other address family)"),
                        }
                    ),
                    Err(e) => log::error!("NSM: notifying the NLM clients of {ip} failed: {e}"),
                }
            });
        if let Err(e) = spawned {
            log::error!("NSM: cannot start the notification of {ip}'s clients ({e})");
        }
    }

    /// Public IPs this node holds now (empty when standalone or ctdbd does not answer).
    pub(super) fn held_ips(&self) -> Vec<IpAddr> {
        let Some(c) = &self.cluster else {
            return Vec::new();
        };
        match c.ctdb.public_ips() {
            Ok(ips) => {
                self.remember_public_addrs(&ips);
                ips.into_iter()
                    .filter(|p| p.holder == Some(c.pnn))
                    .map(|p| p.ip)
                    .collect()
            }
            Err(e) => {
                log::error!("cannot list public IPs: {e}");
                Vec::new()
            }
        }
    }

    /// Writes what rpc.statd's callout spooled under `spool` (src/statd_spool.rs: an
    /// unprivileged callout can only spool a host's name) to the records store, attributed
    /// to the public IPs this node holds now (`local` while it holds none); an entry is
    /// left while ctdbd cannot say which IPs those are. Returns how many were written.
    pub fn flush_statd_spool(&self) -> usize {
        let spool = self
            .statd_spool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        spool.map_or(0, |spool| {
            flush_statd_spool(&spool, self.store.as_ref(), self.cluster.as_ref(), None)
        })
    }

    /// Where the statd spool is (set in a cluster): a restart or takeover flushes it before
    /// it notifies the NLM hosts, so that a host spooled just before a crash is notified.
    pub fn set_statd_spool(&self, spool: std::path::PathBuf) {
        *self.statd_spool.lock().unwrap_or_else(|e| e.into_inner()) = Some(spool);
    }

    /// The public IP list, reused for IP_LIST_TTL (see `ip_list`).
    fn recent_public_ips(&self, c: &ClusterNode) -> crate::ctdb::Result<Vec<PublicIp>> {
        let mut cached = self.ip_list.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, ips)) = cached.as_ref() {
            if at.elapsed() < IP_LIST_TTL {
                return Ok(ips.clone());
            }
        }
        let ips = c.ctdb.public_ips()?;
        *cached = Some((Instant::now(), ips.clone()));
        self.remember_public_addrs(&ips);
        Ok(ips)
    }

    fn remember_public_addrs(&self, ips: &[PublicIp]) {
        *self.public_addrs.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(ips.iter().map(|p| p.ip).collect());
    }

    /// The cluster's public addresses (configuration: who holds them does not matter) as
    /// last read, for filing NFSv4.1 clients by their low 32 bits; read through ctdbd only
    /// when never read yet. A frozen ctdbd must not hold every v4.1 client's
    /// CREATE_SESSION (e2e_ctdb_faults: 400 clients connecting while ctdbd is stopped).
    fn known_public_addrs(&self, c: &ClusterNode) -> crate::ctdb::Result<Vec<IpAddr>> {
        if let Some(a) = self
            .public_addrs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Ok(a);
        }
        // Never read yet: one try; after a failure, none for a while (every client would
        // wait on it).
        let mut failed = self
            .public_addrs_failed
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if failed.is_some_and(|at| at.elapsed() < Duration::from_secs(30)) {
            return Err(crate::ctdb::CtdbError(
                "ctdbd did not list its public IPs a moment ago".into(),
            ));
        }
        match self.recent_public_ips(c) {
            Ok(ips) => Ok(ips.into_iter().map(|p| p.ip).collect()),
            Err(e) => {
                *failed = Some(Instant::now());
                Err(e)
            }
        }
    }

    /// Where a client's record is filed (design §4): by the server address the client
    /// used (NFSv4.1+ from its client record; NFSv4.0 from its connection where Ganesha
    /// lets us learn it). Otherwise (NFSv4.0 on a Ganesha whose request context is not
    /// known) by a public IP named in its owner string (Linux writes "Linux NFSv4.0
    /// <client>/<server>"), else under every public IP this node holds, else `local`; a
    /// release of any of those IPs then releases the client (src/backend/release.rs).
    fn attribute(&self, client: &ClientInfo) -> Vec<ServerIp> {
        if let Some(addr) = client.server_addr.filter(|a| !a.is_unspecified()) {
            return match (&self.cluster, addr) {
                (Some(c), IpAddr::V4(v4)) if client.server_addr_low32 => {
                    self.attribute_low32(client.clientid, u32::from(v4), self.known_public_addrs(c))
                }
                // A single node: the address was one of its own.
                (None, IpAddr::V4(v4)) if client.server_addr_low32 => self.attribute_low32(
                    client.clientid,
                    u32::from(v4),
                    Ok(crate::server_addr::local_addrs()),
                ),
                _ => vec![ServerIp::Ip(addr)],
            };
        }
        let Some(c) = &self.cluster else {
            return vec![ServerIp::Local];
        };
        let ips = match self.recent_public_ips(c) {
            Ok(ips) => ips,
            Err(e) => {
                log::error!(
                    "cannot list public IPs to file client {:#x}: {e}",
                    client.clientid
                );
                return vec![ServerIp::Local];
            }
        };
        if !self
            .v40_heuristic_logged
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            log::warn!(
                "NFSv4.0 client {:#x}: the server address it used is not known for this \
                 Ganesha; filing it (and later ones) by a public IP named in its owner, else \
                 under every public IP this node holds",
                client.clientid
            );
        }
        let owner = String::from_utf8_lossy(&client.owner);
        if let Some(p) = ips.iter().find(|p| names_ip(&owner, &p.ip)) {
            return vec![ServerIp::Ip(p.ip)];
        }
        held_or_local(&ips, c.pnn)
    }

    /// An NFSv4.1+ client on Ganesha 4.3/6.x: the address(es) among `candidates` (the
    /// cluster's public IPs, or a single node's own) whose low 32 bits Ganesha kept
    /// (src/server_addr.rs); every one of them when several share those bits.
    fn attribute_low32(
        &self,
        clientid: u64,
        kept: u32,
        candidates: crate::ctdb::Result<Vec<IpAddr>>,
    ) -> Vec<ServerIp> {
        use crate::server_addr::{match_low32, Low32Match};
        let as_v4 = || vec![ServerIp::Ip(IpAddr::V4(std::net::Ipv4Addr::from(kept)))];
        let public: Vec<IpAddr> = match candidates {
            Ok(ips) => ips,
            Err(e) => {
                log::error!(
                    "cannot list public IPs to file client {clientid:#x} ({e}); filing it \
                     under {} as Ganesha gave it",
                    std::net::Ipv4Addr::from(kept)
                );
                return as_v4();
            }
        };
        match match_low32(kept, &public) {
            Low32Match::One(ip) => vec![ServerIp::Ip(ip)],
            Low32Match::NotPublic(_) => as_v4(),
            Low32Match::Ambiguous(ips) => {
                if self
                    .low32_collision_logged
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(kept)
                {
                    log::warn!(
                        "public addresses {ips:?} share their low 32 bits, which is all Ganesha \
                         keeps of an NFSv4.1 client's server address: such clients are filed \
                         under each of them (a takeover of any offers them); give the IPv6 \
                         addresses distinct interface identifiers to end this"
                    );
                }
                ips.into_iter().map(ServerIp::Ip).collect()
            }
        }
    }

    /// add_clid: makes the client's record durable and returns the tag for cid_recov_tag.
    /// The tag is returned even when the store write failed (the client must still be able
    /// to reclaim what this grace period already offered it); the error says what was lost.
    pub fn add_clid(&self, client: &ClientInfo) -> (String, Result<(), StoreError>) {
        let tag = client.tag();
        let keys: Vec<String> = self
            .attribute(client)
            .iter()
            .map(|ip| v4_key(ip, &tag))
            .collect();
        let _guard = self.records.read().unwrap_or_else(|e| e.into_inner());
        let stamp = {
            let mut st = self.state();
            st.keys_by_clientid.insert(client.clientid, keys.clone());
            self.stamp(&st)
        };
        // A new incarnation has not completed any reclaim yet (15.x tells us when it does).
        let tracks = self
            .tracks_reclaim_complete
            .load(std::sync::atomic::Ordering::Relaxed);
        let record = ClientRecord {
            clientid: client.clientid,
            stamp,
            revoked: Vec::new(),
            reclaim_complete: (tracks && client.minor_version > 0).then_some(false),
        };
        let encoded = record.encode();
        let result = self.durable_put(&keys, &encoded);
        match &result {
            Ok(()) => log::debug!(
                "add_clid {:#x}: stored {}",
                client.clientid,
                keys.join(", ")
            ),
            Err(e) => log::debug!(
                "add_clid {:#x}: not stored yet ({e}); kept and retried",
                client.clientid
            ),
        }
        (tag, result)
    }

    /// Stores `value` under each key, or keeps it for the retrier when the store fails or
    /// a fault is already in progress (then without waiting on the store at all).
    fn durable_put(&self, keys: &[String], value: &[u8]) -> Result<(), StoreError> {
        let mut outcome = Ok(());
        for key in keys {
            let error = if self.pending.active() {
                StoreError::Unavailable("a store fault is in progress".into())
            } else {
                match self.store.put(key, value) {
                    Ok(()) => continue,
                    Err(e) => e,
                }
            };
            self.pending
                .keep(key, Op::Put(value.to_vec()), &error.to_string());
            outcome = Err(error);
        }
        outcome
    }

    /// Records pending durability, for status.
    pub fn pending_status(&self) -> PendingStatus {
        self.pending.status()
    }

    fn keys_of(&self, client: &ClientInfo, forget: bool) -> Vec<String> {
        let known = {
            let mut st = self.state();
            if forget {
                st.keys_by_clientid.remove(&client.clientid)
            } else {
                st.keys_by_clientid.get(&client.clientid).cloned()
            }
        };
        // Not under the state lock: filing may ask ctdbd for the public IPs.
        known.unwrap_or_else(|| {
            let tag = client.tag();
            self.attribute(client)
                .iter()
                .map(|ip| v4_key(ip, &tag))
                .collect()
        })
    }

    /// rm_clid: the client expired or was destroyed; its reclaim rights go with it. A record
    /// already rewritten by a newer incarnation of the same client (same tag) is kept.
    pub fn rm_clid(&self, client: &ClientInfo) {
        let _guard = self.records.read().unwrap_or_else(|e| e.into_inner());
        let released = self.state().released.remove(&client.clientid);
        if released {
            let keys = self.keys_of(client, true);
            log::debug!(
                "rm_clid {:#x}: released with its server IP; record(s) {} kept for the taker",
                client.clientid,
                keys.join(", ")
            );
            return;
        }
        for key in self.keys_of(client, true) {
            // A newer incarnation (same tag, new client id) keeps its record; an unreadable
            // record goes.
            let ours = |bytes: &[u8]| {
                ClientRecord::decode(bytes).map_or(true, |rec| rec.clientid == client.clientid)
            };
            let result = if self.pending.active() {
                Err(StoreError::Unavailable(
                    "a store fault is in progress".into(),
                ))
            } else {
                self.store.delete_if(&key, &ours)
            };
            match result {
                Ok(true) => log::debug!("rm_clid {:#x}: removed {key}", client.clientid),
                Ok(false) => log::debug!(
                    "rm_clid {:#x}: {key} absent or another client's; kept",
                    client.clientid
                ),
                Err(e) => {
                    log::debug!(
                        "rm_clid {:#x}: {e}; the deletion is retried",
                        client.clientid
                    );
                    self.pending
                        .keep(&key, Op::DeleteIfOwner(client.clientid), &e.to_string());
                }
            }
        }
    }

    /// reclaim_complete (15.x): the client sent RECLAIM_COMPLETE; its record says so from
    /// now on, so that after another restart Ganesha lets it reclaim (RFC 8881 §8.4.3).
    pub fn reclaim_complete(&self, client: &ClientInfo) {
        self.update_records(client, "reclaim_complete", "RECLAIM_COMPLETE", |r| {
            let changed = r.reclaim_complete != Some(true);
            r.reclaim_complete = Some(true);
            changed
        });
    }

    /// add_revoke_fh: remembers a revoked delegation's file handle in the client's record.
    pub fn add_revoke_fh(&self, client: &ClientInfo, fh: &[u8]) {
        let encoded = crate::records::base64url(fh);
        self.update_records(client, "add_revoke_fh", "the revoked handle", |r| {
            let changed = !r.revoked.contains(&encoded);
            if changed {
                r.revoked.push(encoded.clone());
            }
            changed
        });
    }

    /// Applies `change` to each of the client's records (the one kept for a retry if the
    /// store has not taken it yet) and stores those it changed durably; a missing or
    /// unreadable record is written afresh. `what` names what the change records, for the
    /// log.
    fn update_records(
        &self,
        client: &ClientInfo,
        hook: &str,
        what: &str,
        change: impl Fn(&mut ClientRecord) -> bool,
    ) {
        let _guard = self.records.read().unwrap_or_else(|e| e.into_inner());
        for key in self.keys_of(client, false) {
            let current = match self.pending.kept_put(&key) {
                Some(v) => Ok(Some(v)),
                None => self.store.get(&key),
            };
            let fresh = || ClientRecord {
                clientid: client.clientid,
                stamp: self.stamp(&self.state()),
                revoked: Vec::new(),
                reclaim_complete: None,
            };
            let mut record = match current {
                Ok(Some(bytes)) => ClientRecord::decode(&bytes).unwrap_or_else(|e| {
                    log::warn!("{hook}: record {key:?} unreadable ({e}); rewriting it");
                    fresh()
                }),
                Ok(None) => {
                    log::warn!(
                        "{hook} {:#x}: no record {key}; creating it",
                        client.clientid
                    );
                    fresh()
                }
                Err(e) => {
                    log::error!("{hook} {:#x}: {e}; {what} not recorded", client.clientid);
                    continue;
                }
            };
            if !change(&mut record) {
                continue;
            }
            if let Err(e) = self.durable_put(std::slice::from_ref(&key), &record.encode()) {
                log::debug!(
                    "{hook} {:#x}: {e}; {what} is kept and retried",
                    client.clientid
                );
            }
        }
    }

    /// end_grace: the grace period completed. Clients offered reclaim that did not come
    /// back lose their records (S2). In a cluster the deletions run on a thread of their
    /// own: Ganesha calls this under its grace mutex, and a CTDB recovery in progress would
    /// hold the database (and with it every grace event) until they finished.
    pub fn end_grace(&self) {
        let mut st = self.state();
        let offered = std::mem::take(&mut st.offered);
        st.grace.recovering = false;
        st.grace.held = false;
        st.held_for.clear();
        st.held_since = None;
        st.grace.cluster.need_grace = false;
        st.grace.cluster.enforcing = false;
        st.local_in_grace = false;
        st.fresh_grace = false;
        st.placeholder = false;
        st.lift_refused = false;
        st.starting = false;
        st.scope = None;
        let epoch = st.grace.epoch;
        if self.cluster.is_some() {
            self.write_grace_later(&st);
            drop(st);
            let store = self.store.clone();
            let records = self.records.clone();
            let pending = self.pending.clone();
            let spawned = std::thread::Builder::new()
                .name("gctdb-end-grace".into())
                .spawn(move || {
                    let removed = drop_unreclaimed(store.as_ref(), &records, &pending, offered);
                    log::info!(
                        "grace epoch {epoch} ended; {removed} client(s) that did not reclaim \
                         lost their records"
                    );
                });
            if let Err(e) = spawned {
                log::error!("end_grace: cannot start the clean-up thread ({e}); records kept");
            }
            return;
        }
        self.write_grace(&st);
        drop(st);
        self.publish_progress_if_standalone();
        let removed = drop_unreclaimed(self.store.as_ref(), &self.records, &self.pending, offered);
        log::info!(
            "grace epoch {epoch} ended; {removed} client(s) that did not reclaim lost their records"
        );
    }

    /// This node's own reclaim window is open.
    pub fn in_grace(&self) -> bool {
        self.state().grace.recovering
    }

    pub fn epoch(&self) -> u64 {
        self.state().grace.epoch
    }
}

/// Deletes each offered record whose stamp did not change since it was offered (its client
/// did not reclaim); returns how many. `records` is taken exclusively per record, not for
/// the whole run: a reclaim writing that record waits for its check and delete, while the
/// hooks are not held up for every record of a large grace period.
fn drop_unreclaimed(
    store: &dyn Store,
    records: &RwLock<()>,
    pending: &Pending,
    offered: HashMap<String, String>,
) -> usize {
    let mut removed = 0usize;
    for (key, stamp) in offered {
        // A rewrite still waiting to be stored: the client did reclaim (D1 under faults).
        let _guard = records.write().unwrap_or_else(|e| e.into_inner());
        if let Some(kept) = pending.kept_put(&key) {
            if ClientRecord::decode(&kept).map_or(true, |rec| rec.stamp != stamp) {
                continue;
            }
        }
        let unreclaimed = |bytes: &[u8]| match ClientRecord::decode(bytes) {
            Ok(rec) => rec.stamp == stamp, // rewritten: the client reclaimed
            Err(e) => {
                log::warn!("end_grace: record {key:?} unreadable ({e}); kept");
                false
            }
        };
        match store.delete_if(&key, &unreclaimed) {
            Ok(true) => removed += 1,
            Ok(false) => {}
            Err(e) => log::error!("end_grace: {e}"),
        }
    }
    removed
}

/// Backend::flush_statd_spool for a thread that holds only the pieces. `wait`: how long
/// to wait for another flusher to finish before going on (None: leave it to that one).
fn flush_statd_spool(
    spool: &std::path::Path,
    store: &dyn Store,
    cluster: Option<&ClusterNode>,
    wait: Option<Duration>,
) -> usize {
    if !spool.is_dir() {
        return 0;
    }
    let s = match crate::statd_spool::Spool::open(spool) {
        Ok(s) if !s.is_empty() => s,
        Ok(_) => return 0,
        Err(e) => {
            log::warn!("statd spool: {e}");
            return 0;
        }
    };
    // Another flusher is at it: it rescans before it leaves; or wait for it.
    let deadline = Instant::now() + wait.unwrap_or_default();
    let _held = loop {
        match s.try_lock_flusher() {
            Ok(Some(held)) => break held,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => return 0,
            Err(e) => {
                log::warn!("statd spool: {e}");
                return 0;
            }
        }
    };
    let attribute = |client: &str| -> Result<Vec<(String, Vec<u8>)>, String> {
        let ips: Vec<ServerIp> = match cluster {
            None => vec![ServerIp::Local],
            Some(c) => held_or_local(
                &c.ctdb
                    .public_ips()
                    .map_err(|e| format!("which IPs this node holds: {e}"))?,
                c.pnn,
            ),
        };
        crate::statd::monitored_writes(&ips, client).map_err(|e| e.to_string())
    };
    match s.flush(store, std::time::SystemTime::now(), &attribute) {
        Ok(f) => {
            if f.written > 0 {
                log::info!(
                    "statd spool: recorded {} NLM host(s) rpc.statd's callout spooled",
                    f.written
                );
            }
            f.written
        }
        Err(e) => {
            log::warn!("statd spool: {e}");
            0
        }
    }
}

/// The public IPs node `pnn` holds in `ips`, or `local` when it holds none.
fn held_or_local(ips: &[PublicIp], pnn: u32) -> Vec<ServerIp> {
    let held: Vec<ServerIp> = ips
        .iter()
        .filter(|p| p.holder == Some(pnn))
        .map(|p| ServerIp::Ip(p.ip))
        .collect();
    if held.is_empty() {
        vec![ServerIp::Local]
    } else {
        held
    }
}

/// Whether `text` names `ip` as a whole address (10.0.0.1 is not named by 10.0.0.10).
fn names_ip(text: &str, ip: &IpAddr) -> bool {
    let needle = ip.to_string();
    let bytes = text.as_bytes();
    let addr_char = |b: u8| b.is_ascii_hexdigit() || b == b'.' || b == b':';
    text.match_indices(&needle).any(|(i, m)| {
        let before = i.checked_sub(1).map(|j| bytes[j]);
        let after = bytes.get(i + m.len()).copied();
        !before.is_some_and(addr_char) && !after.is_some_and(addr_char)
    })
}

fn describe_scope(scope: &Option<BTreeSet<ServerIp>>, restart: bool) -> String {
    match scope {
        None => "all records of this node".into(),
        Some(ips) => {
            let ips: Vec<String> = ips.iter().map(|ip| ip.to_string()).collect();
            if restart {
                format!("restart; records of {}", ips.join(", "))
            } else {
                format!("takeover of {}", ips.join(", "))
            }
        }
    }
}

/// Seconds since the epoch: only used to leave an unreadable grace record behind with an
/// epoch far above any stamp it could have issued.
fn now_epoch_floor() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(1 << 40)
}

/// The server epoch a clustered Ganesha runs with: its start time in seconds × 32 plus its
/// PNN, in the low 32 bits Ganesha puts into clientids and stateids. Two nodes never share
/// one (their PNNs differ below 32; CTDB clusters are smaller), a node's restarts differ
/// by their start seconds, and the value wraps only after 2^27 s (4 years).
pub fn cluster_server_epoch(start_secs: i64, pnn: u32) -> i64 {
    let mixed = (start_secs as u64)
        .wrapping_mul(32)
        .wrapping_add(u64::from(pnn % 32));
    (mixed & 0xFFFF_FFFF) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctdb::testing::FakeCtdb;

    /// Torture seed 7, steps 95-96: nodes 0 and 2 started in the same second.
    #[test]
    fn server_epochs_of_nodes_started_together_differ_and_a_restart_gets_a_new_one() {
        let t = 0x6b0f_8490;
        let e: Vec<i64> = (0..8).map(|pnn| cluster_server_epoch(t, pnn)).collect();
        let distinct: BTreeSet<i64> = e.iter().copied().collect();
        assert_eq!(distinct.len(), 8, "{e:x?}");
        assert_ne!(cluster_server_epoch(t + 1, 0), cluster_server_epoch(t, 0));
        assert!(e.iter().all(|v| (0..=0xFFFF_FFFF).contains(v)));
        // Any two nodes at any two start times within the wrap period differ.
        for (a, b) in [(0u32, 1u32), (2, 31), (5, 6)] {
            for dt in [0i64, 1, 2, 1000, 86_400 * 365] {
                assert_ne!(cluster_server_epoch(t, a), cluster_server_epoch(t + dt, b));
            }
        }
    }
    use crate::store::memory::MemoryStore;

    fn client(id: u64, owner: &str, server: Option<&str>) -> ClientInfo {
        ClientInfo {
            clientid: id,
            owner: owner.as_bytes().to_vec(),
            caller_addr: Some("::ffff:127.0.0.1".into()),
            server_addr: server.map(|s| s.parse().unwrap()),
            server_addr_low32: false,
            minor_version: 1,
            tag: None,
        }
    }

    /// A Linux NFSv4.1 client that reached the server through `seen`, as Ganesha 4.3/6.x
    /// report it: only the low 32 bits of that address.
    fn low32_client(id: u64, seen: &str) -> ClientInfo {
        let ip: IpAddr = seen.parse().unwrap();
        ClientInfo {
            server_addr: Some(IpAddr::V4(crate::server_addr::low32(&ip).into())),
            server_addr_low32: true,
            ..client(id, &format!("Linux NFSv4.1 c{id}"), None)
        }
    }

    /// The keys of `store`'s client records that carry recovery tag `tag`.
    fn keys_tagged(store: &MemoryStore, tag: &str) -> Vec<String> {
        store
            .scan(V4_PREFIX)
            .unwrap()
            .entries
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k.ends_with(&format!("@{tag}")))
            .collect()
    }

    /// Restarts the backend on the same store, as a crashed Ganesha would.
    fn restart(b: Backend) -> Backend {
        let (store, grace_store, node_id) =
            (b.store.clone(), b.grace_store.clone(), b.node_id.clone());
        drop(b);
        Backend::from_parts(store, grace_store, &node_id, None).unwrap()
    }

    fn add(b: &Backend, c: &ClientInfo) -> String {
        let (tag, stored) = b.add_clid(c);
        stored.unwrap();
        tag
    }

    fn tags(entries: &[ReclaimEntry]) -> Vec<&str> {
        entries.iter().map(|e| e.tag.as_str()).collect()
    }

    #[test]
    fn restart_offers_previous_clients_and_end_grace_drops_the_absent() {
        let b = Backend::with_store(Box::new(MemoryStore::new()), "n1").unwrap();
        assert!(b.read_clids(&GraceStart::Restart).is_empty());
        b.end_grace();
        let t1 = add(&b, &client(1, "c1", Some("10.0.0.1")));
        let t2 = add(&b, &client(2, "c2", None));

        let b = restart(b);
        let offered = b.read_clids(&GraceStart::Restart);
        assert_eq!(tags(&offered), vec![t1.as_str(), t2.as_str()]);
        // c1 reclaims (Ganesha re-adds it with a new client id); c2 does not.
        add(&b, &client(11, "c1", Some("10.0.0.1")));
        b.end_grace();

        let b = restart(b);
        assert_eq!(tags(&b.read_clids(&GraceStart::Restart)), vec![t1.as_str()]);
    }

    /// Standalone, the hooks publish progress@<node>; status reads who is back from the
    /// records' stamps (src/status_view.rs), and nothing is written per reclaim.
    #[test]
    fn status_sees_the_restart_grace_and_each_client_coming_back() {
        use crate::progress::{Progress, PROGRESS_PREFIX};
        let b = Backend::with_store(Box::new(MemoryStore::new()), "n1").unwrap();
        b.read_clids(&GraceStart::Restart);
        b.end_grace();
        add(&b, &client(1, "c1", None));
        add(&b, &client(2, "c2", None));
        let b = restart(b);
        b.set_ganesha_grace_period(Duration::from_secs(90));
        assert_eq!(b.read_clids(&GraceStart::Restart).len(), 2);
        let status = |b: &Backend| {
            let grace = crate::grace_admin::read_grace(b.gstore()).unwrap().0;
            let progress: BTreeMap<String, Progress> = b
                .gstore()
                .scan(PROGRESS_PREFIX)
                .unwrap()
                .entries
                .into_iter()
                .map(|(k, v)| {
                    (
                        k[PROGRESS_PREFIX.len()..].to_string(),
                        Progress::decode(&v).unwrap(),
                    )
                })
                .collect();
            let stamps = b
                .store()
                .scan(V4_PREFIX)
                .unwrap()
                .entries
                .into_iter()
                .map(|(k, v)| (k, ClientRecord::decode(&v).unwrap().stamp))
                .collect();
            let live = grace.keys().cloned().collect();
            crate::status_view::build(&crate::status_view::Inputs {
                grace: &grace,
                live: &live,
                progress: &progress,
                stamps: &stamps,
                holders: &BTreeMap::new(),
                v4: &BTreeMap::new(),
                nlm: &BTreeMap::new(),
                now: crate::progress::unix_now(),
            })
        };
        let s = status(&b);
        assert!(s.verdict.starts_with("in grace"), "{}", s.verdict);
        assert!(
            s.verdict.contains("node n1 reclaims local for"),
            "{}",
            s.verdict
        );
        assert!(
            s.verdict.ends_with("0 of 2 client(s) back"),
            "{}",
            s.verdict
        );
        add(&b, &client(11, "c1", None)); // c1 reclaims
        let s = status(&b);
        assert!(
            s.verdict.ends_with("1 of 2 client(s) back"),
            "{}",
            s.verdict
        );
        let local = s.ips.iter().find(|r| r.ip == "local").unwrap();
        assert_eq!(local.reclaim.as_ref().unwrap().missing.len(), 1);
        b.end_grace();
        assert_eq!(status(&b).verdict, "not in grace");
    }

    /// The record is rewritten only when something in it changed: times converted against
    /// the clock of the moment flipped by a second between ticks, and every flip was a ctdb
    /// write that, during a recovery, held the watcher up.
    #[test]
    fn progress_in_an_unchanged_grace_reads_the_same_a_second_later() {
        let b = Backend::with_store(Box::new(MemoryStore::new()), "n1").unwrap();
        b.set_ganesha_grace_period(Duration::from_secs(90));
        b.read_clids(&GraceStart::Restart);
        let snapshot = || b.progress_of(&b.state()).encode();
        let first = snapshot();
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(400));
            assert_eq!(snapshot(), first);
        }
        let anchor = published::WallAnchor::now();
        let earlier = Instant::now() - Duration::from_millis(1500);
        assert_eq!(anchor.unix(earlier), anchor.unix(earlier));
        assert!(anchor.unix(earlier) < anchor.unix(Instant::now() + Duration::from_secs(2)));
    }

    #[test]
    fn crash_during_grace_keeps_reclaim_rights() {
        let b = Backend::with_store(Box::new(MemoryStore::new()), "n1").unwrap();
        b.read_clids(&GraceStart::Restart);
        b.end_grace();
        add(&b, &client(1, "c1", None));
        add(&b, &client(2, "c2", None));
        let b = restart(b);
        assert_eq!(b.read_clids(&GraceStart::Restart).len(), 2);
        add(&b, &client(3, "c1", None)); // c1 reclaims, then the server crashes
        let b = restart(b);
        assert_eq!(
            b.read_clids(&GraceStart::Restart).len(),
            2,
            "c2 keeps its rights"
        );
    }

    #[test]
    fn rm_clid_spares_a_newer_incarnation_with_the_same_tag() {
        let b = Backend::with_store(Box::new(MemoryStore::new()), "n1").unwrap();
        b.read_clids(&GraceStart::Restart);
        b.end_grace();
        add(&b, &client(1, "c1", None));
        add(&b, &client(2, "c1", None)); // client rebooted: same owner, new client id
        b.rm_clid(&client(1, "c1", None)); // the old one expires
        let b = restart(b);
        assert_eq!(b.read_clids(&GraceStart::Restart).len(), 1);
        b.rm_clid(&client(2, "c1", None));
        b.end_grace();
        let b = restart(b);
        assert!(b.read_clids(&GraceStart::Restart).is_empty());
    }

    #[test]
    fn takeover_offers_only_that_ips_clients_and_entries_are_unique() {
        let b = Backend::with_store(Box::new(MemoryStore::new()), "n1").unwrap();
        b.read_clids(&GraceStart::Restart);
        b.end_grace();
        add(&b, &client(1, "a", Some("10.0.0.1")));
        add(&b, &client(2, "b", Some("10.0.0.2")));
        b.add_revoke_fh(&client(1, "a", Some("10.0.0.1")), b"\x01\x02");
        b.add_revoke_fh(&client(1, "a", Some("10.0.0.1")), b"\x01\x02");
        let offered = b.read_clids(&GraceStart::TakeIp("10.0.0.1".parse().unwrap()));
        assert_eq!(offered.len(), 1);
        assert!(offered[0].tag.ends_with("-(1:a)"));
        assert_eq!(offered[0].revoked, vec!["AQI=".to_string()]);
        // A second takeover in the same grace period adds that IP's clients.
        let offered = b.read_clids(&GraceStart::TakeIp("10.0.0.2".parse().unwrap()));
        assert_eq!(offered.len(), 2);
    }

    /// ctdbd as these tests see it: two public IPs, 10.0.0.1 held by this node (PNN 0)
    /// and 10.0.0.2 by node 1; ctdbd does not answer for the node map until a test says
    /// who is live.
    fn ctdb() -> Arc<FakeCtdb> {
        Arc::new(FakeCtdb::new(
            0,
            None,
            &[("10.0.0.1", Some(0)), ("10.0.0.2", Some(1))],
        ))
    }

    /// Node 0 of a cluster whose ctdbd is `ctdb`, records and grace records in `store`.
    fn node0(store: Arc<MemoryStore>, ctdb: &Arc<FakeCtdb>) -> Backend {
        let cluster = ClusterNode {
            pnn: 0,
            ctdb: ctdb.clone(),
        };
        Backend::from_parts(store.clone(), store, "0", Some(cluster)).unwrap()
    }

    #[test]
    fn v4_0_clients_are_filed_from_one_ip_list_until_the_next_grace_event() {
        let lister = ctdb();
        let store = Arc::new(MemoryStore::new());
        let b = node0(store.clone(), &lister);
        let v40 = |id: u64, owner: &str| ClientInfo {
            minor_version: 0,
            ..client(id, owner, None)
        };
        let calls = || lister.ip_calls();
        // Named in the owner: filed by that IP, held here or not.
        let t1 = add(&b, &v40(1, "Linux NFSv4.0 c1/10.0.0.2 tcp"));
        // Not named: every IP this node holds.
        let t2 = add(&b, &v40(2, "Linux NFSv4.0 c2 tcp"));
        assert_eq!(calls(), 1, "the second client reused the list");
        let keys: Vec<String> = store
            .scan(V4_PREFIX)
            .unwrap()
            .entries
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            keys,
            vec![format!("v4@10.0.0.1@{t2}"), format!("v4@10.0.0.2@{t1}")]
        );
        // A grace event (here one the backend does not track) drops the list.
        b.read_clids(&GraceStart::Unsupported {
            event: 4,
            detail: "test".into(),
        });
        add(&b, &v40(3, "Linux NFSv4.0 c3 tcp"));
        assert_eq!(calls(), 2);
    }

    /// Ganesha 4.3/6.x keep 32 bits of a v4.1 client's server address: an IPv6 public
    /// address is found by them, and colliding public addresses all get the client.
    #[test]
    fn v4_1_clients_of_an_ipv6_public_address_are_filed_under_it() {
        let lister = Arc::new(FakeCtdb::new(
            0,
            None,
            &[
                ("10.0.0.1", Some(0)),
                ("fd77:1::1", Some(0)),
                ("fd77:1::a00:2", Some(1)),
                ("10.0.0.2", Some(1)),
                ("fd77:1::9", Some(0)),
                ("fd77:2::9", Some(1)),
            ],
        ));
        let store = Arc::new(MemoryStore::new());
        let b = node0(store.clone(), &lister);
        let keys_of = |tag: &str| keys_tagged(&store, tag);
        let t = add(&b, &low32_client(1, "fd77:1::1"));
        assert_eq!(keys_of(&t), vec![format!("v4@fd77:1::1@{t}")]);
        let t = add(&b, &low32_client(2, "10.0.0.1"));
        assert_eq!(keys_of(&t), vec![format!("v4@10.0.0.1@{t}")]);
        // fd77:1::a00:2 ends in 0a 00 00 02: the same 32 bits as 10.0.0.2.
        let t = add(&b, &low32_client(3, "10.0.0.2"));
        assert_eq!(
            keys_of(&t),
            vec![format!("v4@10.0.0.2@{t}"), format!("v4@fd77:1::a00:2@{t}")]
        );
        let t = add(&b, &low32_client(4, "fd77:2::9"));
        assert_eq!(
            keys_of(&t),
            vec![format!("v4@fd77:1::9@{t}"), format!("v4@fd77:2::9@{t}")]
        );
        // Not a public address (the node's own): the IPv4 address it reads as.
        let t = add(&b, &low32_client(5, "10.0.9.1"));
        assert_eq!(keys_of(&t), vec![format!("v4@10.0.9.1@{t}")]);
    }

    /// A single node without CTDB: the kept bits are matched against the node's own
    /// interface addresses (an NFSv4.1 client over IPv6 loopback is filed under ::1, not
    /// "0.0.0.1"); an IPv4 client stays under its address; bits no interface has read as
    /// the IPv4 address they spell.
    #[test]
    fn a_single_node_files_v4_1_clients_by_its_own_addresses() {
        let local = crate::server_addr::local_addrs();
        let loopback6: IpAddr = "::1".parse().unwrap();
        assert!(
            local.contains(&loopback6),
            "this host has no ::1: {local:?}"
        );
        let store = Arc::new(MemoryStore::new());
        let b = Backend::from_parts(store.clone(), store.clone(), "0", None).unwrap();
        let keys_of = |tag: &str| keys_tagged(&store, tag);
        let t = add(&b, &low32_client(1, "::1"));
        assert_eq!(keys_of(&t), vec![format!("v4@::1@{t}")]);
        let t = add(&b, &low32_client(2, "127.0.0.1"));
        assert_eq!(keys_of(&t), vec![format!("v4@127.0.0.1@{t}")]);
        let t = add(&b, &low32_client(3, "fd99:77::a09:901"));
        assert_eq!(keys_of(&t), vec![format!("v4@10.9.9.1@{t}")]);
    }

    #[test]
    fn a_hold_stored_before_a_restart_has_a_clock() {
        let store = Arc::new(MemoryStore::new());
        let held = GraceRecord {
            epoch: 7,
            held: true,
            ..GraceRecord::default()
        };
        store.put(&grace_key("0"), &held.encode()).unwrap();
        let b = node0(store, &ctdb());
        let st = b.state();
        assert!(st.grace.held);
        assert!(
            st.held_since.is_some(),
            "without a start the hold limit never ends it"
        );
    }

    /// A hold, and a join for another node's restart, give Ganesha the placeholder entry
    /// only where a refused lift would end reclaims (4.3, and by default any version not
    /// known otherwise): a node that joined with nothing to reclaim would ask at once, be
    /// refused, and then refuse the reclaims of an IP it takes over before the cluster
    /// lifts (CI: a takeover during a restart's grace).
    #[test]
    fn a_hold_or_a_join_brings_the_placeholder_only_where_a_refused_lift_ends_reclaims() {
        for verb in ["hold", "join"] {
            for ends in [true, false] {
                let ctdb = ctdb();
                *ctdb.live.lock().unwrap() = Some(vec![0, 1]);
                let store = Arc::new(MemoryStore::new());
                // Node 1 restarted: it recovers its own clients, no takeover run.
                let restarting = GraceRecord {
                    epoch: 1,
                    recovering: true,
                    cluster: crate::grace::NodeGrace {
                        epoch: 1,
                        need_grace: true,
                        enforcing: true,
                    },
                    ..GraceRecord::default()
                };
                store.put(&grace_key("1"), &restarting.encode()).unwrap();
                let b = node0(store, &ctdb);
                if !ends {
                    b.set_refused_lift_ends_reclaims(false);
                }
                let entries = b.read_clids(&GraceStart::Control(verb.into()));
                assert_eq!(
                    tags(&entries)
                        .iter()
                        .filter(|t| t.starts_with("ganesha-ctdb:placeholder:"))
                        .count(),
                    usize::from(ends),
                    "{verb}, refused lift ends reclaims: {ends}; entries {:?}",
                    tags(&entries)
                );
                assert_eq!(b.state().grace.held, verb == "hold");
                // The placeholder keeps Ganesha from asking: a refused ask would come only
                // at Grace_Period, and this node still may not lift while node 1 recovers.
                assert!(!b.try_lift(), "{verb}: node 1 still recovers");
            }
        }
    }

    /// Seed 3 of the torture run: a takeover run that outlasted Grace_Period found the
    /// taker refused (4.3 then answers NFS4ERR_NO_GRACE to every reclaim). While a run is in
    /// progress the watcher re-arms Ganesha's timer before it runs out; not otherwise, not
    /// once Ganesha asked, and not where Grace_Period or the 4.3 behaviour is unknown.
    #[test]
    fn the_grace_timer_is_rearmed_before_it_runs_out_only_during_a_takeover_run() {
        let ctdb = ctdb();
        *ctdb.live.lock().unwrap() = Some(vec![0, 1]);
        let store = Arc::new(MemoryStore::new());
        let b = node0(store.clone(), &ctdb);
        let g = Duration::from_secs(20);
        let soon = |after: u64| Instant::now() + Duration::from_secs(after);
        b.read_clids(&GraceStart::Control("hold".into()));
        assert!(!b.wants_to_rearm(soon(9)), "Grace_Period unknown");
        b.set_ganesha_grace_period(g);
        assert!(!b.wants_to_rearm(soon(0)), "just armed");
        assert!(b.wants_to_rearm(soon(9)), "12 s margin before 20 s");
        // Ganesha re-armed: the timer starts again, the clid list and the hold stay.
        assert!(b
            .read_clids(&GraceStart::Control("rearm".into()))
            .is_empty());
        assert!(b.state().grace.held);
        assert!(!b.wants_to_rearm(soon(7)));
        assert!(b.wants_to_rearm(soon(8)));
        // The run is over here and nowhere else holds: Ganesha may ask.
        b.read_clids(&GraceStart::Control("ipreallocated".into()));
        assert!(!b.wants_to_rearm(soon(19)));
        // Another live node holds: a takeover may still come here.
        let other = GraceRecord {
            epoch: 1,
            held: true,
            cluster: crate::grace::NodeGrace {
                epoch: 1,
                need_grace: true,
                enforcing: true,
            },
            ..GraceRecord::default()
        };
        store.put(&grace_key("1"), &other.encode()).unwrap();
        b.refresh_grace_view();
        assert!(b.wants_to_rearm(soon(9)));
        // Too late once Ganesha asked and was refused (it refuses reclaims already).
        assert!(!b.try_lift());
        assert!(!b.wants_to_rearm(soon(19)));
        // Where a refused lift leaves reclaims open (6.5's default) nothing is needed.
        let b = node0(Arc::new(MemoryStore::new()), &ctdb);
        b.set_ganesha_grace_period(g);
        b.set_refused_lift_ends_reclaims(false);
        b.read_clids(&GraceStart::Control("hold".into()));
        assert!(!b.wants_to_rearm(soon(19)));
    }

    /// Seed 3 of the torture run: a failback's takeip reached a Ganesha that had read the
    /// IPs it holds but was not on D-Bus yet; the IP's clients got NFS4ERR_NO_GRACE. The
    /// watcher takes such an IP over itself, once, after TAKEIP_WAIT; never an IP this
    /// Ganesha knows, one it released, or one not on this node's interfaces.
    #[test]
    fn a_takeip_that_never_reached_ganesha_is_done_by_the_watcher() {
        let ctdb = Arc::new(FakeCtdb::new(
            0,
            Some(vec![0, 1]),
            &[
                ("127.0.0.1", Some(0)),
                ("127.0.0.2", Some(1)),
                ("10.255.0.9", Some(1)),
            ],
        ));
        let b = node0(Arc::new(MemoryStore::new()), &ctdb);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(b.missed_takeovers(at(9)).is_empty(), "not in grace");
        b.read_clids(&GraceStart::Restart);
        assert!(b.missed_takeovers(at(9)).is_empty(), "held at start");
        // CTDB gives this node 127.0.0.2 and 10.255.0.9 (not on any interface here).
        *ctdb.ips.lock().unwrap() = vec![
            ("127.0.0.1", Some(0)),
            ("127.0.0.2", Some(0)),
            ("10.255.0.9", Some(0)),
        ];
        assert!(
            b.missed_takeovers(at(0)).is_empty(),
            "its takeip may be under way"
        );
        assert!(b.missed_takeovers(at(4)).is_empty());
        let two: IpAddr = "127.0.0.2".parse().unwrap();
        assert_eq!(b.missed_takeovers(at(5)), vec![two]);
        b.read_clids(&GraceStart::TakeIp(two));
        assert!(b.missed_takeovers(at(20)).is_empty(), "taken over");
        // Released here, still listed as held until the taker has it: not taken back.
        b.read_clids(&GraceStart::Control("release:127.0.0.1:t1".into()));
        let _ = b.missed_takeovers(at(21));
        assert_eq!(
            b.missed_takeovers(at(30)),
            vec!["127.0.0.1".parse::<IpAddr>().unwrap()],
            "a released IP still on the interface after TAKEIP_WAIT is served here again"
        );
        // Only in the grace period Ganesha started with (D-Bus is up afterwards).
        b.end_grace();
        b.read_clids(&GraceStart::Control("hold".into()));
        *ctdb.ips.lock().unwrap() = vec![("127.0.0.3", Some(0))];
        let _ = b.missed_takeovers(at(40));
        assert!(b.missed_takeovers(at(50)).is_empty());
    }

    #[test]
    fn only_a_membership_ctdb_told_can_make_a_node_look_gone() {
        let ctdb = ctdb();
        let store = Arc::new(MemoryStore::new());
        let b = node0(store, &ctdb);
        let live = |l: Option<Vec<u32>>| *ctdb.live.lock().unwrap() = l;
        live(Some(vec![0, 1]));
        b.refresh_grace_view();
        // ctdbd does not answer: everyone with a record (only us) stands in, for decisions.
        live(None);
        b.refresh_grace_view();
        live(Some(vec![0, 1]));
        b.refresh_grace_view();
        assert!(!b.state().grace.held, "node 1 never left");
        // Positive control: node 1 does leave.
        live(Some(vec![0]));
        b.refresh_grace_view();
        assert!(b.state().grace.held);
    }

    /// Counts stop_ganesha calls.
    #[derive(Default)]
    struct Stopper(std::sync::atomic::AtomicUsize);

    impl ClientReleaser for Stopper {
        fn expire(&self, _: &BTreeSet<u64>) -> Result<usize, String> {
            Ok(0)
        }
        fn stop_ganesha(&self) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn ganesha_stops_when_its_ctdbd_is_gone_but_not_when_slow_alone_or_never_seen() {
        let ctdb = ctdb();
        let store = Arc::new(MemoryStore::new());
        let b = node0(store, &ctdb);
        let stopper = Arc::new(Stopper::default());
        b.set_releaser(stopper.clone());
        let stops = || stopper.0.load(std::sync::atomic::Ordering::SeqCst);
        let live = |l: Option<Vec<u32>>| *ctdb.live.lock().unwrap() = l;
        let gone = |g: bool| ctdb.gone.store(g, std::sync::atomic::Ordering::SeqCst);
        // Never seen: a Ganesha started before its ctdbd waits, it does not stop.
        gone(true);
        b.refresh_grace_view();
        assert_eq!(stops(), 0);
        // Alone in the cluster: nobody would take its IPs; it keeps serving.
        gone(false);
        live(Some(vec![0]));
        b.refresh_grace_view();
        gone(true);
        live(None);
        b.refresh_grace_view();
        assert_eq!(stops(), 0);
        gone(false);
        live(Some(vec![0, 1]));
        b.refresh_grace_view();
        // Slow or frozen (no answer, socket there): nothing.
        live(None);
        b.refresh_grace_view();
        assert_eq!(stops(), 0);
        // Gone after it was seen: stop.
        gone(true);
        b.refresh_grace_view();
        assert_eq!(stops(), 1);
    }

    /// Torture seed 7, step 7: ctdbd killed and back 0.5 s later, unseen by a watcher that
    /// looks for a refusing socket; the takers' reclaims met this Ganesha's locks.
    #[test]
    fn ganesha_stops_when_its_ctdbd_restarted_under_it_while_it_serves_ips() {
        let ctdb = ctdb();
        *ctdb.live.lock().unwrap() = Some(vec![0, 1]);
        let b = node0(Arc::new(MemoryStore::new()), &ctdb);
        let stopper = Arc::new(Stopper::default());
        b.set_releaser(stopper.clone());
        let stops = || stopper.0.load(std::sync::atomic::Ordering::SeqCst);
        let instance = |i: Option<u64>| *ctdb.instance.lock().unwrap() = i;
        b.read_clids(&GraceStart::Restart); // serves 10.0.0.1
        instance(Some(7));
        b.refresh_grace_view();
        b.refresh_grace_view();
        instance(None); // socket missing for a moment: daemon_gone's business
        b.refresh_grace_view();
        assert_eq!(stops(), 0, "same daemon");
        instance(Some(8));
        b.refresh_grace_view();
        assert_eq!(stops(), 1, "restarted");
        // After `shutdown` released every client there is nothing to protect.
        b.read_clids(&GraceStart::Control("release:all:t".into()));
        instance(Some(9));
        b.refresh_grace_view();
        assert_eq!(stops(), 1);
        // Alone in the cluster: nobody took the IPs.
        let b = node0(Arc::new(MemoryStore::new()), &ctdb);
        let stopper = Arc::new(Stopper::default());
        b.set_releaser(stopper.clone());
        *ctdb.live.lock().unwrap() = Some(vec![0]);
        b.read_clids(&GraceStart::Restart);
        b.refresh_grace_view();
        instance(Some(10));
        b.refresh_grace_view();
        assert_eq!(stopper.0.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    /// Torture seed 7, step 56: the membership poll reconnected to the restarted ctdbd,
    /// whose first node map shows only this node, and the restart was then judged on it
    /// ("no other node was live"): Ganesha kept the locks the takers' clients reclaimed.
    #[test]
    fn a_restarted_ctdbd_seen_first_by_the_membership_poll_still_stops_ganesha() {
        let ctdb = ctdb();
        *ctdb.live.lock().unwrap() = Some(vec![0, 1]);
        let b = node0(Arc::new(MemoryStore::new()), &ctdb);
        let stopper = Arc::new(Stopper::default());
        b.set_releaser(stopper.clone());
        let stops = || stopper.0.load(std::sync::atomic::Ordering::SeqCst);
        let set = |n: &[&str]| {
            n.iter()
                .map(|s| s.to_string())
                .collect::<BTreeSet<String>>()
        };
        b.read_clids(&GraceStart::Restart); // serves 10.0.0.1
        *ctdb.instance.lock().unwrap() = Some(7);
        b.refresh_grace_view();
        assert!(!b.membership_polled(set(&["0", "1"]), true));
        assert!(!b.membership_polled(set(&["0", "1"]), false));
        assert_eq!(stops(), 0);
        // ctdbd restarted: the poll's new connection reads the new daemon's view first.
        *ctdb.instance.lock().unwrap() = Some(8);
        b.membership_polled(set(&["0"]), true);
        assert_eq!(
            stops(),
            1,
            "judged on the membership from before the restart"
        );
        b.refresh_grace_view();
        assert_eq!(stops(), 1, "one restart, one stop");
    }

    /// A grace store whose scans fail while `broken` (catdb during a CTDB recovery).
    struct UnreadableScans {
        inner: MemoryStore,
        broken: std::sync::atomic::AtomicBool,
    }

    /// Node 0 of a live cluster {0, 1} whose grace records sit in an UnreadableScans.
    fn node0_with_unreadable_grace() -> (Backend, Arc<UnreadableScans>) {
        let ctdb = ctdb();
        *ctdb.live.lock().unwrap() = Some(vec![0, 1]);
        let grace = Arc::new(UnreadableScans {
            inner: MemoryStore::new(),
            broken: std::sync::atomic::AtomicBool::new(false),
        });
        let cluster = ClusterNode { pnn: 0, ctdb };
        let b = Backend::from_parts(
            Arc::new(MemoryStore::new()),
            grace.clone(),
            "0",
            Some(cluster),
        )
        .unwrap();
        (b, grace)
    }

    impl Store for UnreadableScans {
        fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
            self.inner.put(key, value)
        }
        fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get(key)
        }
        fn delete(&self, key: &str) -> Result<bool, StoreError> {
            self.inner.delete(key)
        }
        fn scan(&self, prefix: &str) -> Result<crate::store::Scan, StoreError> {
            if self.broken.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(StoreError::Unavailable("ctdb catdb timed out".into()));
            }
            self.inner.scan(prefix)
        }
        fn describe(&self) -> String {
            "unreadable".into()
        }
    }

    /// Torture seed 7, step 96: Ganesha 4.3 asked to lift while a fenced node's CTDB
    /// recovery froze the grace records, was refused, and refused the reclaims of the IP
    /// taken over seconds later. The timer is re-armed while the records are unreadable;
    /// not for a node that merely still recovers (its need ends only when its Ganesha
    /// asks: nodes starting together would re-arm for each other forever).
    #[test]
    fn the_grace_timer_is_rearmed_while_the_grace_records_are_unreadable() {
        let (b, grace) = node0_with_unreadable_grace();
        b.set_ganesha_grace_period(Duration::from_secs(20));
        let soon = |after: u64| Instant::now() + Duration::from_secs(after);
        let node1 = |need: bool| GraceRecord {
            epoch: 3,
            recovering: need,
            held: false,
            cluster: crate::grace::NodeGrace {
                epoch: 1,
                need_grace: need,
                enforcing: true,
            },
        };
        b.read_clids(&GraceStart::Restart);
        assert!(b.state().local_in_grace);
        // Node 1 still recovers its clients: a lift would be refused.
        grace.put(&grace_key("1"), &node1(true).encode()).unwrap();
        b.refresh_grace_view();
        assert!(!b.wants_to_rearm(soon(0)), "just armed");
        assert!(
            !b.wants_to_rearm(soon(9)),
            "node 1 still recovers: this node asks (and is refused) as node 1 does"
        );
        grace.put(&grace_key("1"), &node1(false).encode()).unwrap();
        b.refresh_grace_view();
        assert!(
            !b.wants_to_rearm(soon(9)),
            "nothing keeps the cluster in grace"
        );
        // The records cannot be read (a CTDB recovery froze them): a takeover may follow.
        grace
            .broken
            .store(true, std::sync::atomic::Ordering::SeqCst);
        b.refresh_grace_view();
        assert!(b.wants_to_rearm(soon(9)), "grace records unreadable");
        grace
            .broken
            .store(false, std::sync::atomic::Ordering::SeqCst);
        b.refresh_grace_view();
        assert!(!b.wants_to_rearm(soon(9)));
    }

    /// Torture seed 7, step 42: a catdb that failed during a CTDB recovery read as "no node
    /// needs grace", and a node lifted while the taker of a moved IP reclaimed.
    #[test]
    fn a_grace_read_that_fails_is_not_a_cluster_without_needs() {
        let needing = |need: bool| GraceRecord {
            epoch: 3,
            recovering: need,
            held: false,
            cluster: crate::grace::NodeGrace {
                epoch: 7,
                need_grace: need,
                enforcing: true,
            },
        };
        let (b, grace) = node0_with_unreadable_grace();
        grace.put(&grace_key("1"), &needing(true).encode()).unwrap();
        let others_need = |b: &Backend| {
            let (records, _) = b.grace_records();
            records.get("1").is_some_and(|r| r.cluster.need_grace)
        };
        // Nothing read yet and the read fails: node 1 stands in as needing grace.
        grace
            .broken
            .store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(others_need(&b));
        // Read once, then the read fails: the records read last decide.
        grace
            .broken
            .store(false, std::sync::atomic::Ordering::SeqCst);
        assert!(others_need(&b));
        grace
            .broken
            .store(true, std::sync::atomic::Ordering::SeqCst);
        b.refresh_grace_view();
        assert!(others_need(&b), "a failed read keeps node 1's need");
        // A read that works shows the need gone.
        grace
            .put(&grace_key("1"), &needing(false).encode())
            .unwrap();
        grace
            .broken
            .store(false, std::sync::atomic::Ordering::SeqCst);
        assert!(!others_need(&b));
    }

    #[test]
    fn a_record_another_writer_left_is_replaced_by_what_the_node_holds() {
        let ctdb = ctdb();
        *ctdb.live.lock().unwrap() = Some(vec![0, 1]);
        let store = Arc::new(MemoryStore::new());
        let b = node0(store.clone(), &ctdb);
        b.read_clids(&GraceStart::Restart);
        b.end_grace();
        // end_grace stores from a thread of its own in a cluster: wait for it.
        let settled = || {
            let w = b.grace_writes.lock().unwrap();
            w.issued == w.settled
        };
        while !settled() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let ours = store.get(&grace_key("0")).unwrap().unwrap();
        assert!(!GraceRecord::decode(&ours).unwrap().recovering);
        // The exit marker, written by `monitor` while this Ganesha was starting.
        let marker = GraceRecord {
            held: true,
            cluster: crate::grace::NodeGrace {
                epoch: 9,
                need_grace: true,
                enforcing: true,
            },
            ..GraceRecord::decode(&ours).unwrap()
        };
        store.put(&grace_key("0"), &marker.encode()).unwrap();
        b.refresh_grace_view();
        assert_eq!(store.get(&grace_key("0")).unwrap().unwrap(), ours);
        // Nothing to heal: no write.
        store.put("grace@canary", b"x").unwrap();
        b.refresh_grace_view();
        assert_eq!(store.get(&grace_key("0")).unwrap().unwrap(), ours);
    }

    #[test]
    fn an_owner_names_an_ip_only_as_a_whole_address() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(names_ip("Linux NFSv4.0 10.0.0.9/10.0.0.1 tcp", &ip));
        assert!(names_ip("10.0.0.1", &ip));
        assert!(!names_ip("Linux NFSv4.0 10.0.0.9/10.0.0.10 tcp", &ip));
        assert!(!names_ip("110.0.0.1", &ip));
        assert!(!names_ip("::ffff:10.0.0.1a", &ip));
    }

    #[test]
    fn bad_records_are_skipped() {
        let store = MemoryStore::new();
        store
            .put(
                "v4@local@good-(1:g)",
                &ClientRecord {
                    clientid: 1,
                    stamp: "x.1".into(),
                    revoked: vec![],
                    reclaim_complete: None,
                }
                .encode(),
            )
            .unwrap();
        store.put("v4@local@bad-(1:b)", b"garbage").unwrap();
        store.put("v4@nonsense", b"v1 clientid=1 stamp=x").unwrap();
        let b = Backend::with_store(Box::new(store), "n1").unwrap();
        assert_eq!(
            tags(&b.read_clids(&GraceStart::Restart)),
            vec!["good-(1:g)"]
        );
    }
}
