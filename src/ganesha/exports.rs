//! The symbols Ganesha looks up in libganesha_rados_recov.so, and the hooks of struct
//! nfs4_recovery_backend in both of its generations: 13 for 4.3-6.x, 14 for 15.x (a
//! reclaim_complete hook, and a read_clids that hands clients back through Ganesha's
//! exports). Each one is panic-safe (see [`super::guard`]) and trusts nothing it is handed
//! before validating it.

use super::bindings::{
    add_clid_entry_hook, add_rfh_entry_hook, clid_entry_t, config_error_type,
    nfs4_recovery_backend, nfs4_recovery_backend_v15, nfs_client_id_t, nfs_fh4, nfs_grace_start_t,
    GSH15_MEM_COMP_RECOVERY,
};
use super::layout::{read_client, request_server_addr, running_layout, Generation, Layout};
use super::symbols::ganesha;
use super::{config, guard, logging};
use crate::backend::{Backend, ClientInfo, GraceStart};
use crate::config::{hostname, Config, RawConfig};
use std::cell::UnsafeCell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

/// What recovery_init set up; hooks called before it (or after shutdown) do nothing.
struct Running {
    backend: Arc<Backend>,
    layout: Layout,
}

static RUNNING: RwLock<Option<Running>> = RwLock::new(None);

fn running() -> Option<(Arc<Backend>, Layout)> {
    let guard = RUNNING.read().unwrap_or_else(|e| e.into_inner());
    guard.as_ref().map(|r| (Arc::clone(&r.backend), r.layout))
}

/// The 4.3-6.x table, followed by a NULL slot: a Ganesha of an unknown newer generation
/// that reads 14 slots finds nothing behind the 13th (recovery_init then refuses it).
#[repr(C)]
struct Table13 {
    hooks: nfs4_recovery_backend,
    spare: Option<unsafe extern "C" fn()>,
}

/// The vtables handed to Ganesha. Ganesha keeps a pointer to one for the life of the
/// process and only reads it; they live in writable memory because its type is not const.
struct Vtable<T>(UnsafeCell<T>);
// SAFETY: never written after initialisation, by us or (per its source) by Ganesha.
unsafe impl<T> Sync for Vtable<T> {}

static VTABLE: Vtable<Table13> = Vtable(UnsafeCell::new(Table13 {
    hooks: nfs4_recovery_backend {
        recovery_init: Some(recovery_init),
        recovery_shutdown: Some(recovery_shutdown),
        recovery_read_clids: Some(recovery_read_clids),
        add_clid: Some(add_clid),
        rm_clid: Some(rm_clid),
        add_revoke_fh: Some(add_revoke_fh),
        end_grace: Some(end_grace),
        maybe_start_grace: Some(maybe_start_grace),
        try_lift_grace: Some(try_lift_grace),
        set_enforcing: Some(set_enforcing),
        grace_enforcing: Some(grace_enforcing),
        is_member: Some(is_member),
        get_nodeid: Some(get_nodeid),
    },
    spare: None,
}));

static VTABLE15: Vtable<nfs4_recovery_backend_v15> =
    Vtable(UnsafeCell::new(nfs4_recovery_backend_v15 {
        recovery_init: Some(recovery_init),
        recovery_shutdown: Some(recovery_shutdown),
        recovery_read_clids: Some(recovery_read_clids_v15),
        add_clid: Some(add_clid),
        rm_clid: Some(rm_clid),
        reclaim_complete: Some(reclaim_complete),
        add_revoke_fh: Some(add_revoke_fh),
        end_grace: Some(end_grace),
        maybe_start_grace: Some(maybe_start_grace),
        try_lift_grace: Some(try_lift_grace),
        set_enforcing: Some(set_enforcing),
        grace_enforcing: Some(grace_enforcing),
        is_member: Some(is_member),
        get_nodeid: Some(get_nodeid),
    }));

fn hand_out_vtable(name: &str, backend: *mut *mut nfs4_recovery_backend) {
    guard(name, (), || {
        logging::init(None);
        if backend.is_null() {
            log::error!("{name}: Ganesha passed a NULL backend pointer");
            return;
        }
        // The table of the generation the running Ganesha reads (its version comes from the
        // library that exports its functions); 13 slots otherwise (recovery_init refuses
        // a version it does not know).
        let table = match running_layout().map(|l| l.generation) {
            Ok(Generation::V15) => VTABLE15.0.get() as *mut nfs4_recovery_backend,
            _ => VTABLE.0.get() as *mut nfs4_recovery_backend,
        };
        // SAFETY: backend is Ganesha's out-parameter for the vtable address.
        unsafe { *backend = table };
    })
}

#[no_mangle]
pub extern "C" fn rados_kv_backend_init(backend: *mut *mut nfs4_recovery_backend) {
    hand_out_vtable("rados_kv_backend_init", backend)
}

#[no_mangle]
pub extern "C" fn rados_ng_backend_init(backend: *mut *mut nfs4_recovery_backend) {
    hand_out_vtable("rados_ng_backend_init", backend)
}

#[no_mangle]
pub extern "C" fn rados_cluster_backend_init(backend: *mut *mut nfs4_recovery_backend) {
    hand_out_vtable("rados_cluster_backend_init", backend)
}

#[no_mangle]
pub extern "C" fn rados_load_config_from_parse(
    parse_tree: *mut c_void,
    err_type: *mut config_error_type,
) -> c_int {
    guard("rados_load_config_from_parse", -1, || {
        logging::init(None);
        // SAFETY: both pointers come straight from Ganesha's config loader.
        unsafe { config::load(parse_tree, err_type) }
    })
}

extern "C" fn recovery_init() -> c_int {
    guard("recovery_init", -libc::EINVAL, || {
        let g = ganesha();
        let layout = match running_layout() {
            Ok(l) => l,
            Err(refusal) => {
                log::error!("{refusal}");
                return -libc::ENOTSUP;
            }
        };
        if layout.generation == Generation::V15
            && (g.add_clid_entry.is_none()
                || g.create_clid_name.is_none()
                || g.mem_stats_update_free.is_none())
        {
            log::error!(
                "Ganesha {} exports no nfs4_add_clid_entry / nfs4_create_clid_name / \
                 gsh_mem_stats_update_free: not the 15.x this library knows; refusing to start",
                layout.name
            );
            return -libc::ENOTSUP;
        }
        logging::init(Some(layout.component_state));
        logging::set_recovery_component(layout.component_recovery);
        let config = match config::parsed_config() {
            Some(c) => c,
            None => match Config::from_raw(&RawConfig::default(), hostname) {
                Ok(c) => c,
                Err(errors) => {
                    for e in errors {
                        log::error!("{e}");
                    }
                    return -libc::EINVAL;
                }
            },
        };
        match Backend::open(&config) {
            Ok(backend) => {
                log::info!("recovery backend ready for Ganesha {} layout", layout.name);
                let backend = Arc::new(backend);
                if layout.release {
                    backend.set_releaser(Arc::new(super::release::ReaperRelease::new(layout)));
                }
                backend.set_tracks_reclaim_complete(layout.generation == Generation::V15);
                if backend.is_cluster() && layout.generation != Generation::V15 {
                    make_server_epoch_unique(&backend);
                }
                // Without Sticky_Grace Ganesha keeps taking reclaims after a refused lift.
                let sticky = layout
                    .sticky_grace
                    .and_then(|off| super::symbols::ganesha().nfs_param_bool(off));
                if sticky == Some(false) {
                    log::info!(
                        "Sticky_Grace is off: a refused grace lift leaves reclaims open, so \
                         nodes in a takeover run may leave grace as soon as no node needs it"
                    );
                }
                backend.set_refused_lift_ends_reclaims(sticky != Some(false));
                // Grace_Period, so that the watcher re-arms Ganesha's timer before it runs
                // out during a takeover run (Ganesha's own bounds: 0 to 180 s; 0 or more
                // than a day means the offset does not fit this build: not used).
                match layout
                    .grace_period
                    .and_then(|off| super::symbols::ganesha().nfs_param_u32(off))
                {
                    Some(g) if (1..=86_400).contains(&g) => {
                        log::info!("Ganesha's Grace_Period: {g} s");
                        backend
                            .set_ganesha_grace_period(std::time::Duration::from_secs(u64::from(g)));
                    }
                    Some(g) => log::warn!(
                        "Grace_Period read as {g} s from nfs_param: not this build's layout; \
                         the grace timer is not re-armed during takeover runs"
                    ),
                    None => {}
                }
                publish_facts(backend.clone(), config.summary(), layout.name);
                let cluster = backend.is_cluster();
                *RUNNING.write().unwrap_or_else(|e| e.into_inner()) = Some(Running {
                    backend: backend.clone(),
                    layout,
                });
                if cluster {
                    spawn_statd_spool_flusher(backend.clone(), &config.dir);
                    spawn_progress_publisher(backend.clone());
                    spawn_membership_poll(backend.clone());
                    spawn_watcher(backend);
                }
                0
            }
            Err(e) => {
                log::error!("cannot start the recovery backend: {e}");
                -libc::EIO
            }
        }
    })
}

extern "C" fn recovery_shutdown() {
    guard("recovery_shutdown", (), || {
        if RUNNING
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .is_some()
        {
            log::info!("recovery backend shut down");
        }
    })
}

/// # Safety
/// `gsp` is null or Ganesha's nfs_grace_start_t for this call.
unsafe fn grace_start(gsp: *const nfs_grace_start_t) -> GraceStart {
    if gsp.is_null() {
        return GraceStart::Restart;
    }
    let event = (*gsp).event;
    let ip = if (*gsp).ipaddr.is_null() {
        None
    } else {
        // ipaddr comes from a D-Bus string; bound the read before trusting it.
        let len = libc::strnlen((*gsp).ipaddr, 256);
        let bytes = std::slice::from_raw_parts((*gsp).ipaddr as *const u8, len);
        Some(String::from_utf8_lossy(bytes).into_owned())
    };
    match (event, ip.as_deref().map(str::parse::<IpAddr>)) {
        (5, Some(Ok(addr))) => GraceStart::TakeIp(addr),
        (3, _) => GraceStart::Control(ip.unwrap_or_default()),
        _ => GraceStart::Unsupported {
            event,
            detail: format!(
                "nodeid {}, address {:?}",
                (*gsp).nodeid,
                ip.unwrap_or_default()
            ),
        },
    }
}

extern "C" fn recovery_read_clids(
    gsp: *mut nfs_grace_start_t,
    add_clid_entry: add_clid_entry_hook,
    add_rfh_entry: add_rfh_entry_hook,
) {
    guard("recovery_read_clids", (), || {
        let Some(add_clid_entry) = add_clid_entry else {
            log::error!("recovery_read_clids: Ganesha passed no add_clid_entry callback");
            return;
        };
        // SAFETY: Ganesha's callback copies the name into its own clid_entry_t.
        offer_clients(gsp, |tag, _| unsafe { add_clid_entry(tag) }, add_rfh_entry);
    })
}

/// 15.x's read_clids: the same clients, handed back through Ganesha's exported
/// nfs4_add_clid_entry with each one's RECLAIM_COMPLETE flag (RFC 8881 §8.4.3: a v4.1
/// client that had not completed its reclaim before the restart may not reclaim now).
extern "C" fn recovery_read_clids_v15(gsp: *mut nfs_grace_start_t) {
    guard("recovery_read_clids", (), || {
        let g = ganesha();
        let Some(add_clid_entry) = g.add_clid_entry else {
            log::error!("recovery_read_clids: Ganesha exports no nfs4_add_clid_entry");
            return;
        };
        // SAFETY: nfs4_add_clid_entry copies the name into its own clid_entry_t.
        offer_clients(
            gsp,
            |tag, rc| unsafe { add_clid_entry(tag, rc) },
            g.add_rfh_entry,
        );
    })
}

/// Hands Ganesha the clients the backend offers for this grace start: `add_entry` makes
/// Ganesha's entry for a tag (with the client's RECLAIM_COMPLETE flag, for versions that
/// take it), `add_rfh` adds each revoked handle to that entry.
fn offer_clients(
    gsp: *mut nfs_grace_start_t,
    add_entry: impl Fn(*mut c_char, bool) -> *mut clid_entry_t,
    add_rfh: add_rfh_entry_hook,
) {
    let Some((backend, _)) = running() else {
        return;
    };
    // SAFETY: gsp is null or valid for this call (Ganesha holds grace_mutex).
    let start = unsafe { grace_start(gsp) };
    for entry in backend.read_clids(&start) {
        let Ok(tag) = CString::new(entry.tag.clone()) else {
            log::warn!("skipping tag with a NUL byte: {:?}", entry.tag);
            continue;
        };
        let clid = add_entry(tag.as_ptr() as *mut c_char, entry.reclaim_complete);
        let Some(add_rfh) = add_rfh.filter(|_| !clid.is_null()) else {
            continue;
        };
        for fh in entry.revoked {
            if let Ok(fh) = CString::new(fh) {
                // SAFETY: clid is the entry Ganesha just made; it strdup's the handle.
                unsafe { add_rfh(clid, fh.as_ptr() as *mut c_char) };
            }
        }
    }
}

/// 15.x: the client sent RECLAIM_COMPLETE (Ganesha calls this with cid_mutex held).
extern "C" fn reclaim_complete(cid: *mut nfs_client_id_t) {
    guard("reclaim_complete", (), || {
        let Some((backend, layout)) = running() else {
            return;
        };
        if let Some(client) = client_of("reclaim_complete", cid, &layout) {
            backend.reclaim_complete(&client);
        }
    })
}

/// Decodes the client behind a hook's nfs_client_id_t, logging why not when it cannot.
fn client_of(hook: &str, cid: *mut nfs_client_id_t, layout: &Layout) -> Option<ClientInfo> {
    // SAFETY: Ganesha passes a live client (with cid_mutex held) to these hooks.
    match unsafe { read_client(cid as *const c_void, layout) } {
        Ok(c) => Some(c),
        Err(e) => {
            log::error!("{hook}: {e}; client ignored");
            None
        }
    }
}

/// # Safety
/// `cid` points to a live nfs_client_id_t of `layout`'s version whose cid_mutex the
/// caller holds.
unsafe fn recov_tag_slot(cid: *mut nfs_client_id_t, layout: &Layout) -> *mut *mut c_char {
    (cid as *mut u8).add(layout.recov_tag()) as *mut *mut c_char
}

/// Frees a recovery tag the way it was allocated: ours with free(); one 15.x built
/// (nfs4_create_clid_name) as its own backends free it, its memory statistics first.
///
/// # Safety
/// `tag` is a cid_recov_tag this backend set for `layout`'s generation.
unsafe fn free_tag(tag: *mut c_char, layout: &Layout) {
    if tag.is_null() {
        return;
    }
    if layout.generation == Generation::V15 {
        if let Some(update) = ganesha().mem_stats_update_free {
            update(
                tag as *mut c_void,
                GSH15_MEM_COMP_RECOVERY as c_int,
                c"ganesha-ctdb".as_ptr(),
                0,
                c"free_tag".as_ptr(),
            );
        }
    }
    libc::free(tag as *mut c_void);
}

/// The recovery tag 15.x builds itself (nfs4_create_clid_name: honours RecoverySkipIp),
/// owned by the caller; None (logged) when it cannot.
///
/// # Safety
/// `cid` is a live client of a 15.x Ganesha, its cid_mutex held.
unsafe fn ganesha_tag(cid: *mut nfs_client_id_t) -> Option<*mut c_char> {
    let create = ganesha().create_clid_name?;
    let tag = create(cid, std::ptr::null_mut());
    if tag.is_null() {
        log::error!("add_clid: Ganesha built no recovery tag for the client");
        return None;
    }
    Some(tag)
}

extern "C" fn add_clid(cid: *mut nfs_client_id_t) {
    guard("add_clid", (), || {
        let Some((backend, layout)) = running() else {
            return;
        };
        let Some(mut client) = client_of("add_clid", cid, &layout) else {
            return;
        };
        if client.minor_version == 0 && client.server_addr.is_none() {
            // SAFETY: add_clid runs on the thread of the SETCLIENTID_CONFIRM request, with
            // the live client Ganesha passed (cid_mutex held).
            match unsafe { request_server_addr(cid as *const c_void, &layout) } {
                Ok(addr) => client.server_addr = Some(addr),
                Err(why) => log::debug!(
                    "add_clid {:#x}: server address of the NFSv4.0 connection unknown: {why}",
                    client.clientid
                ),
            }
        }
        // 15.x: Ganesha's own tag, whose buffer becomes cid_recov_tag as its backends do.
        let mut theirs: Option<*mut c_char> = None;
        if layout.generation == Generation::V15 {
            // SAFETY: add_clid runs with the live client and its cid_mutex held.
            let Some(t) = (unsafe { ganesha_tag(cid) }) else {
                return;
            };
            // SAFETY: a NUL-terminated string Ganesha just built; bounded read.
            let text = unsafe {
                let len = libc::strnlen(t, 16384);
                String::from_utf8_lossy(std::slice::from_raw_parts(t as *const u8, len))
                    .into_owned()
            };
            client.tag = Some(text);
            theirs = Some(t);
        }
        let (tag, _stored) = backend.add_clid(&client);
        // SAFETY: the slot is the client's cid_recov_tag, which only this backend sets
        // (freed by Ganesha or rm_clid); ours comes from malloc, Ganesha frees it with free().
        unsafe {
            let buf = match theirs {
                Some(t) => t,
                None => {
                    let len = tag.len();
                    let buf = libc::malloc(len + 1) as *mut u8;
                    if buf.is_null() {
                        log::error!("add_clid: out of memory for the recovery tag");
                        return;
                    }
                    std::ptr::copy_nonoverlapping(tag.as_ptr(), buf, len);
                    *buf.add(len) = 0;
                    buf as *mut c_char
                }
            };
            let slot = recov_tag_slot(cid, &layout);
            let old = *slot;
            *slot = buf;
            free_tag(old, &layout);
        }
    })
}

extern "C" fn rm_clid(cid: *mut nfs_client_id_t) {
    guard("rm_clid", (), || {
        let Some((backend, layout)) = running() else {
            return;
        };
        if let Some(client) = client_of("rm_clid", cid, &layout) {
            backend.rm_clid(&client);
        }
        if cid.is_null() {
            return; // client_of logged it; there is no tag to clear
        }
        // As Ganesha's own backends do: free the tag and clear it, so the caller's later
        // free() sees NULL.
        // SAFETY: cid is live with cid_mutex held; the tag is the one add_clid set.
        unsafe {
            let slot = recov_tag_slot(cid, &layout);
            free_tag(*slot, &layout);
            *slot = std::ptr::null_mut();
        }
    })
}

extern "C" fn add_revoke_fh(cid: *mut nfs_client_id_t, fh: *mut nfs_fh4) {
    guard("add_revoke_fh", (), || {
        let Some((backend, layout)) = running() else {
            return;
        };
        let Some(client) = client_of("add_revoke_fh", cid, &layout) else {
            return;
        };
        if fh.is_null() {
            log::error!("add_revoke_fh: Ganesha passed a NULL file handle");
            return;
        }
        // SAFETY: fh is Ganesha's nfs_fh4 for this call; length bounded by NFS4_FHSIZE.
        let bytes = unsafe {
            let len = (*fh).nfs_fh4_len as usize;
            if len == 0 || len > 128 || (*fh).nfs_fh4_val.is_null() {
                log::error!("add_revoke_fh: file handle of {len} bytes (NFSv4 allows 1 to 128)");
                return;
            }
            std::slice::from_raw_parts((*fh).nfs_fh4_val as *const u8, len).to_vec()
        };
        backend.add_revoke_fh(&client, &bytes);
    })
}

/// Two Ganeshas started in the same second get the same server epoch (their start time),
/// and with it the same clientids, session ids and stateids: a client whose IP moved from
/// one to the other is told its state was kept, does not reclaim, and loses its locks
/// (torture seed 7, steps 95-96: 31 conflicting grants). The epoch becomes the start time
/// with this node's PNN mixed in (crate::backend::cluster_server_epoch), unique across
/// nodes; set here, before any client exists.
fn make_server_epoch_unique(backend: &Backend) {
    let g = ganesha();
    let (Some(start), Ok(pnn)) = (g.server_epoch(), backend.node_id().parse::<u32>()) else {
        log::warn!(
            "cannot make the server epoch unique in the cluster (nfs_ServerEpoch not exported \
             or node {:?} not a PNN): two Ganeshas started in one second would share clientids",
            backend.node_id()
        );
        return;
    };
    let epoch = crate::backend::cluster_server_epoch(start, pnn);
    if g.set_server_epoch(epoch) {
        log::info!(
            "server epoch {epoch:#010x} (start {start:#x} × 32 + node {pnn}): no other node's \
             Ganesha issues these clientids"
        );
    }
}

extern "C" fn end_grace() {
    guard("end_grace", (), || {
        if let Some((backend, _)) = running() {
            backend.end_grace();
        }
    })
}

extern "C" fn maybe_start_grace() {
    // The reaper, while this node is out of grace: join a cluster grace another node needs.
    guard("maybe_start_grace", (), || {
        if let Some((backend, _)) = running() {
            if backend.wants_to_join() {
                join_cluster_grace();
            }
        }
    })
}

/// Enters grace as a joiner: nfs_start_grace with EVENT_UPDATE_CLIENTS and the verb "join"
/// (which calls set_enforcing and recovery_read_clids(event 3, "join") back).
fn join_cluster_grace() {
    start_grace(3, c"join", "join the cluster grace");
}

/// Restarts Ganesha's Grace_Period timer while it is in grace: nfs_start_grace with the
/// verb "rearm" (read_clids notes the time; Ganesha's clid list is kept). See
/// src/backend/cluster.rs for why.
fn rearm_grace_timer() {
    start_grace(3, c"rearm", "re-arm the grace timer");
}

/// What the event script's takeip does ("5:<ip>"), for a takeip that never reached
/// Ganesha (Backend::missed_takeovers).
fn take_ip(ip: std::net::IpAddr) {
    if let Ok(addr) = CString::new(ip.to_string()) {
        start_grace(5, &addr, &format!("take over {ip}"));
    }
}

/// In a cluster: reads CTDB's membership over ctdbd's socket every
/// MEMBERSHIP_INTERVAL (src/backend/membership.rs), and when a node left enters grace at
/// once, trying again every 50 ms while Ganesha refuses (requests still hold
/// references to the state out of grace) instead of at the watcher's next second.
fn spawn_membership_poll(backend: Arc<Backend>) {
    use crate::backend::membership::{MembershipPoll, MEMBERSHIP_INTERVAL};
    let spawned = std::thread::Builder::new()
        .name("gctdb-members".into())
        .spawn(move || {
            let mut poll = MembershipPoll::new(crate::ctdb::socket_path());
            loop {
                std::thread::sleep(MEMBERSHIP_INTERVAL);
                let still_running = running().is_some_and(|(b, _)| Arc::ptr_eq(&b, &backend));
                if !still_running {
                    return;
                }
                let left = super::guard("the membership poll", false, || match poll.live() {
                    Ok((live, reconnected)) => backend.membership_polled(live, reconnected),
                    Err(_) => {
                        backend.membership_poll_failed();
                        false
                    }
                });
                if left {
                    join_until_in_grace(&backend);
                }
            }
        });
    if let Err(e) = spawned {
        log::error!("cannot start the membership poll ({e}); the watcher notices a node leave within a second");
    }
}

/// How long the membership poll keeps trying to enter grace after a node left; past it
/// the watcher and the reaper go on trying.
const JOIN_RETRY_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

fn join_until_in_grace(backend: &Arc<Backend>) {
    let start = std::time::Instant::now();
    let mut tries = 0u32;
    while super::guard("the membership poll", false, || backend.wants_to_join()) {
        if start.elapsed() > JOIN_RETRY_LIMIT {
            log::warn!(
                "grace: Ganesha refused to enter grace {tries} time(s) in {JOIN_RETRY_LIMIT:?} \
                 (requests hold references to the state out of grace); the watcher goes on trying"
            );
            return;
        }
        tries += 1;
        if start_grace_quietly(3, c"join") == 0 {
            if tries > 1 {
                log::info!(
                    "grace: joined after {tries} tries in {:?} (Ganesha refused while requests held references)",
                    start.elapsed()
                );
            }
            return;
        }
        // Ganesha logs every refusal ("Unable to start grace"): not much faster.
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// nfs_start_grace(event, arg); its return code (-EAGAIN: requests hold references to
/// the current grace state), nothing logged.
fn start_grace_quietly(event: c_int, arg: &CStr) -> c_int {
    let Some(start) = ganesha().nfs_start_grace else {
        return -libc::ENOSYS;
    };
    let mut gsp = nfs_grace_start_t {
        event,
        nodeid: -1,
        ipaddr: arg.as_ptr() as *mut c_char,
    };
    // SAFETY: gsp and the string it points to outlive the call; Ganesha only reads them.
    unsafe { start(&mut gsp) }
}

/// nfs_start_grace(event, arg) as the D-Bus grace method calls it.
fn start_grace(event: c_int, arg: &CStr, what: &str) {
    let rc = start_grace_quietly(event, arg);
    if rc == -libc::ENOSYS {
        log::error!("Ganesha exports no nfs_start_grace; cannot {what}");
    } else if rc != 0 {
        // -EAGAIN: requests hold references to the current grace state; the next reaper
        // tick (or watcher wake-up) tries again.
        log::info!("grace: cannot {what} now ({rc}); retrying at the next tick");
    }
}

extern "C" fn try_lift_grace() -> bool {
    guard("try_lift_grace", true, || match running() {
        Some((backend, _)) => backend.try_lift(),
        None => true,
    })
}

extern "C" fn set_enforcing() {
    guard("set_enforcing", (), || {
        if let Some((backend, _)) = running() {
            backend.set_enforcing();
        }
    })
}

extern "C" fn grace_enforcing() -> bool {
    guard("grace_enforcing", true, || match running() {
        Some((backend, _)) => backend.grace_enforcing(),
        None => true,
    })
}

/// How often the watcher reads the grace records (two `ctdb` tool runs).
const WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// In a cluster: notices within WATCH_INTERVAL that another node needs the cluster in grace
/// (or no longer does, after this node refused to lift) and wakes Ganesha's reaper so that
/// maybe_start_grace joins (or try_lift_grace lifts) at once instead of at its next tick
/// (up to 10 s later).
fn spawn_watcher(backend: Arc<Backend>) {
    let spawned = std::thread::Builder::new()
        .name("gctdb-watch".into())
        .spawn(move || loop {
            std::thread::sleep(WATCH_INTERVAL);
            let still_running = running().is_some_and(|(b, _)| Arc::ptr_eq(&b, &backend));
            if !still_running {
                return;
            }
            let (join, lift, rearm) =
                super::guard("the grace watcher", (false, false, false), || {
                    backend.refresh_grace_view();
                    backend.end_finished_hold();
                    let join = backend.wants_to_join();
                    let rearm = !join && backend.wants_to_rearm(std::time::Instant::now());
                    (join, !join && backend.wants_to_retry_lift(), rearm)
                });
            if rearm {
                rearm_grace_timer();
            }
            let missed = super::guard("the grace watcher", Vec::new(), || {
                backend.missed_takeovers(std::time::Instant::now())
            });
            for ip in missed {
                take_ip(ip);
            }
            match ganesha().reaper_wake {
                // SAFETY: reaper_wake takes no arguments and only signals the reaper.
                Some(w) if join || lift => unsafe { w() },
                None if join => join_cluster_grace(),
                _ => {}
            }
        });
    if let Err(e) = spawned {
        log::error!("cannot start the grace watcher ({e}); joining waits for the reaper tick");
    }
}

/// In a cluster: publishes this node's grace progress for `ganesha-ctdb status` once a
/// second when it changed, on a thread of its own: during a CTDB recovery, or while a
/// fenced node holds up every transaction, a write waits out its timeout, and the watcher
/// must join the cluster grace meanwhile (torture seed 7, step 2: with the write on the
/// watcher the others entered grace 10 s after CTDB declared the node dead).
fn spawn_progress_publisher(backend: Arc<Backend>) {
    every_second(backend, "gctdb-progress", "the progress publisher", |b| {
        b.publish_progress()
    })
    .unwrap_or_else(|e| {
        log::warn!("cannot start the progress publisher ({e}); `status` shows less")
    });
}

/// A thread `name` that runs `work` on `backend` every WATCH_INTERVAL until this backend
/// is no longer the running one; a panic in `work` is logged as `what`'s.
fn every_second(
    backend: Arc<Backend>,
    name: &str,
    what: &'static str,
    work: impl Fn(&Backend) + Send + 'static,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || loop {
            std::thread::sleep(WATCH_INTERVAL);
            let still_running = running().is_some_and(|(b, _)| Arc::ptr_eq(&b, &backend));
            if !still_running {
                return;
            }
            guard(what, (), || work(&backend));
        })
        .map(|_| ())
}

/// In a cluster: records the NLM hosts rpc.statd's callout spooled (src/statd_spool.rs: on
/// Debian the callout runs as user statd and cannot write them), once a second, on a
/// thread of its own (a write may wait out a CTDB recovery). Creates the spool for statd's
/// user first. A single node needs no records (no takeover; statd notifies its hosts
/// itself at a restart).
fn spawn_statd_spool_flusher(backend: Arc<Backend>, dir: &std::path::Path) {
    let spool = crate::statd_spool::spool_dir(dir);
    let owner = crate::statd_spool::statd_owner(std::path::Path::new("/etc"));
    if let Err(e) = crate::statd_spool::ensure_dir(&spool, owner) {
        log::warn!("{e}: rpc.statd's callout cannot spool NLM hosts when it runs unprivileged");
    }
    backend.set_statd_spool(spool);
    every_second(backend, "gctdb-statd", "the statd spool flusher", |b| {
        b.flush_statd_spool();
    })
    .unwrap_or_else(|e| {
        log::warn!("cannot start the statd spool flusher ({e}); `monitor` writes the spool")
    });
}

/// What `ganesha-ctdb check` compares between nodes (src/facts.rs), on a thread of its own:
/// it examines each export's path, which on a hung cluster filesystem may not return.
fn publish_facts(backend: Arc<Backend>, recovery: String, ganesha: &'static str) {
    let spawned = std::thread::Builder::new()
        .name("gctdb-facts".into())
        .spawn(move || {
            let library = crate::facts::file_mapped_at(publish_facts as *const () as usize)
                .unwrap_or_default();
            let facts = crate::facts::NodeFacts::gather(
                &crate::facts::config_path_of_this_process(),
                recovery,
                ganesha,
                library,
            );
            backend.publish_facts(&facts);
        });
    if let Err(e) = spawned {
        log::warn!("cannot publish this node's set-up for `ganesha-ctdb check` ({e})");
    }
}

extern "C" fn is_member() -> bool {
    guard("is_member", true, || true)
}

extern "C" fn get_nodeid(pnodeid: *mut *mut c_char) -> c_int {
    guard("get_nodeid", -libc::EINVAL, || {
        if pnodeid.is_null() {
            log::error!("get_nodeid: Ganesha passed a NULL pointer for the node id");
            return -libc::EINVAL;
        }
        let id = match running() {
            Some((b, _)) => b.node_id().to_string(),
            None => return -libc::ENOENT,
        };
        let Ok(c) = CString::new(id) else {
            return -libc::EINVAL;
        };
        // SAFETY: Ganesha frees *pnodeid with gsh_free (free() in its libc allocator build),
        // so it must come from malloc: strdup does that.
        unsafe {
            let dup = libc::strdup(c.as_ptr());
            if dup.is_null() {
                return -libc::ENOMEM;
            }
            *pnodeid = dup;
        }
        0
    })
}
