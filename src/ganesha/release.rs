//! Dropping released clients' state inside Ganesha (the backend decides which:
//! src/backend/release.rs). Ganesha 4.3 exports no call that expires one client; its reaper
//! expires every confirmed client whose lease is over (nfs4_lease.c valid_lease:
//! cid_last_renew + Lease_Lifetime, unless a request holds a reservation), exactly as after a
//! client stopped renewing: opens and locks released, sessions destroyed, rm_clid called.
//! So the release marks those clients' leases over and wakes the reaper.

use super::bindings as b;
use super::layout::field;
use crate::backend::ClientReleaser;
use std::collections::BTreeSet;
use std::ffi::c_void;

/// The releaser src/ganesha installs into the backend at recovery_init.
pub struct ReaperRelease;

impl ClientReleaser for ReaperRelease {
    fn expire(&self, clientids: &BTreeSet<u64>) -> Result<usize, String> {
        let left = expire_leases(clientids)?;
        if left > 0 {
            match super::symbols::ganesha().reaper_wake {
                // SAFETY: reaper_wake takes no arguments and only signals the reaper thread.
                Some(wake) => unsafe { wake() },
                None => return Err("Ganesha exports no reaper_wake".into()),
            }
        }
        Ok(left)
    }
}

/// Makes Ganesha's reaper treat these confirmed clients' leases as over, as it would once
/// Lease_Lifetime passed without a renewal: it then expires them (dropping their opens and
/// locks) at its next run. Returns how many of them are still confirmed clients of Ganesha.
/// Under Ganesha's own lock order: the table partition's lock (hashtable_for_each), then
/// each client's cid_mutex, the mutex Ganesha holds whenever it renews a lease. A request
/// of the client in progress renews it when it ends; callers run this again until none is
/// left.
fn expire_leases(ids: &BTreeSet<u64>) -> Result<usize, String> {
    let g = super::symbols::ganesha();
    let (Some(for_each), table) = (g.hashtable_for_each, g.confirmed_clients()) else {
        return Err("Ganesha exports no hashtable_for_each".into());
    };
    if table.is_null() {
        return Err("Ganesha's table of confirmed clients is not set up".into());
    }
    let mut walk = Walk {
        ids,
        present: 0,
        failed: false,
    };
    // SAFETY: the table is Ganesha's and lives as long as the process; visit only reads
    // the entries it is handed and writes cid_last_renew under that client's cid_mutex.
    unsafe { for_each(table, visit, &mut walk as *mut Walk as *mut c_void) };
    if walk.failed {
        return Err("an entry of Ganesha's client table could not be read".into());
    }
    Ok(walk.present)
}

struct Walk<'a> {
    ids: &'a BTreeSet<u64>,
    present: usize,
    failed: bool,
}

unsafe extern "C" fn visit(node: *mut c_void, arg: *mut c_void) {
    if node.is_null() || arg.is_null() {
        return;
    }
    // SAFETY: arg is the Walk expire_leases passed, alive for the whole walk.
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
            if confirmed == b::GSH_CONFIRMED_CLIENT_ID as i32 {
                std::ptr::write_unaligned(
                    cid.add(b::GSH_CID_LAST_RENEW_OFF as usize) as *mut libc::time_t,
                    0,
                );
                walk.present += 1;
            }
            libc::pthread_mutex_unlock(mutex);
            true
        }
    });
    if !ok {
        walk.failed = true;
    }
}
