//! Dropping released clients' state inside Ganesha (the backend decides which:
//! src/backend/release.rs). Ganesha 4.3 exports no call that expires one client; its reaper
//! expires every confirmed client whose lease is over (nfs4_lease.c valid_lease:
//! cid_last_renew + Lease_Lifetime, unless a request holds a reservation), exactly as after a
//! client stopped renewing: opens and locks released, sessions destroyed, rm_clid called.
//! So the release marks those clients' leases over and wakes the reaper.

use super::bindings as b;
use super::layout::{field, Layout};
use crate::backend::ClientReleaser;
use std::collections::BTreeSet;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

/// Added to a released client's open-file count on 6.x so that the reaper expires it
/// instead of parking it with its state (ganesha_abi.h); taken off again if the client
/// survives the release (a request of it renewed the lease).
const PARK_GUARD: u32 = 1 << 31;

/// The releaser src/ganesha installs into the backend at recovery_init.
pub struct ReaperRelease {
    pub layout: Layout,
    /// Clients whose open-file count carries PARK_GUARD.
    guarded: Mutex<BTreeSet<u64>>,
}

impl ReaperRelease {
    pub fn new(layout: Layout) -> ReaperRelease {
        ReaperRelease {
            layout,
            guarded: Mutex::new(BTreeSet::new()),
        }
    }
}

impl ClientReleaser for ReaperRelease {
    fn stop_ganesha(&self) {
        // SIGKILL, not Ganesha's shutdown: that would wait on ctdbd-bound hooks and D-Bus,
        // and clients must not be served a moment longer.
        // SAFETY: kill(2) with this process's own pid; no memory is touched.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }

    fn expire(&self, clientids: &BTreeSet<u64>) -> Result<usize, String> {
        let mut guarded = self.guarded.lock().unwrap_or_else(|e| e.into_inner());
        let left = walk(
            clientids,
            Action::Expire,
            self.layout.open_state_counter,
            &mut guarded,
        )?;
        if left == 0 {
            // All expired and gone from Ganesha's table: nothing left to restore.
            guarded.retain(|id| !clientids.contains(id));
        }
        if left > 0 {
            match super::symbols::ganesha().reaper_wake {
                // SAFETY: reaper_wake takes no arguments and only signals the reaper thread.
                Some(wake) => unsafe { wake() },
                None => return Err("Ganesha exports no reaper_wake".into()),
            }
        }
        Ok(left)
    }

    fn abandon(&self, clientids: &BTreeSet<u64>) {
        let mut guarded = self.guarded.lock().unwrap_or_else(|e| e.into_inner());
        let mine: BTreeSet<u64> = clientids.intersection(&guarded).copied().collect();
        if mine.is_empty() {
            return;
        }
        let _ = walk(
            &mine,
            Action::Restore,
            self.layout.open_state_counter,
            &mut guarded,
        );
        // Those no longer in the table were expired (and freed): nothing to restore.
        guarded.retain(|id| !mine.contains(id));
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Lease over (and, on 6.x, PARK_GUARD on the open-file count once).
    Expire,
    /// Take PARK_GUARD off again.
    Restore,
}

/// Makes Ganesha's reaper treat these confirmed clients' leases as over, as it would once
/// Lease_Lifetime passed without a renewal: it then expires them (dropping their opens and
/// locks) at its next run. Returns how many of them are still confirmed clients of Ganesha.
/// Under Ganesha's own lock order: the table partition's lock (hashtable_for_each), then
/// each client's cid_mutex, the mutex Ganesha holds whenever it renews a lease. A request
/// of the client in progress renews it when it ends; callers run this again until none is
/// left.
fn walk(
    ids: &BTreeSet<u64>,
    action: Action,
    open_state_counter: Option<usize>,
    guarded: &mut BTreeSet<u64>,
) -> Result<usize, String> {
    let g = super::symbols::ganesha();
    let (Some(for_each), table) = (g.hashtable_for_each, g.confirmed_clients()) else {
        return Err("Ganesha exports no hashtable_for_each".into());
    };
    if table.is_null() {
        return Err("Ganesha's table of confirmed clients is not set up".into());
    }
    let mut walk = Walk {
        ids,
        action,
        open_state_counter,
        guarded,
        present: 0,
        failed: false,
    };
    // SAFETY: the table is Ganesha's and lives as long as the process; visit only reads
    // the entries it is handed and writes cid_last_renew (and the open-file count) under
    // that client's cid_mutex.
    unsafe { for_each(table, visit, &mut walk as *mut Walk as *mut c_void) };
    if walk.failed {
        return Err("an entry of Ganesha's client table could not be read".into());
    }
    Ok(walk.present)
}

struct Walk<'a> {
    ids: &'a BTreeSet<u64>,
    action: Action,
    open_state_counter: Option<usize>,
    guarded: &'a mut BTreeSet<u64>,
    present: usize,
    failed: bool,
}

unsafe extern "C" fn visit(node: *mut c_void, arg: *mut c_void) {
    if node.is_null() || arg.is_null() {
        return;
    }
    // SAFETY: arg is the Walk `walk` passed, alive for the whole walk.
    let walk = &mut *(arg as *mut Walk);
    let ok = super::guard("the client release walk", false, || {
        // SAFETY: node is a live rbt_node of the table (its partition lock is held); its
        // rbt_opaq is a struct hash_data whose val.addr is the nfs_client_id_t.
        unsafe {
            let data: *const u8 = field(node, b::GSH_RBT_OPAQ_OFF as usize);
            if data.is_null() {
                return false;
            }
            let cid: *mut u8 = field(
                data as *const c_void,
                b::GSH_HASH_DATA_VAL_ADDR_OFF as usize,
            );
            if cid.is_null() {
                return false;
            }
            // Set when the client is created and never changed: readable unlocked.
            let clientid: u64 = field(cid as *const c_void, b::GSH_CID_CLIENTID_OFF as usize);
            if !walk.ids.contains(&clientid) {
                return true;
            }
            let mutex = cid.add(b::GSH_CID_MUTEX_OFF as usize) as *mut libc::pthread_mutex_t;
            if libc::pthread_mutex_lock(mutex) != 0 {
                return false;
            }
            let confirmed: i32 = field(cid as *const c_void, b::GSH_CID_CONFIRMED_OFF as usize);
            // Ganesha updates the count with atomic operations; so do we (aligned u32).
            let counter = walk
                .open_state_counter
                .map(|off| AtomicU32::from_ptr(cid.add(off) as *mut u32));
            match walk.action {
                Action::Expire if confirmed == b::GSH_CONFIRMED_CLIENT_ID as i32 => {
                    std::ptr::write_unaligned(
                        cid.add(b::GSH_CID_LAST_RENEW_OFF as usize) as *mut libc::time_t,
                        0,
                    );
                    if let Some(c) = counter {
                        if walk.guarded.insert(clientid) {
                            c.fetch_add(PARK_GUARD, Ordering::SeqCst);
                        }
                    }
                    walk.present += 1;
                }
                Action::Restore => {
                    if let Some(c) = counter {
                        if walk.guarded.remove(&clientid) {
                            c.fetch_sub(PARK_GUARD, Ordering::SeqCst);
                        }
                    }
                }
                Action::Expire => {}
            }
            libc::pthread_mutex_unlock(mutex);
            true
        }
    });
    if !ok {
        walk.failed = true;
    }
}
