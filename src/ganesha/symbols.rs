//! Ganesha's exported symbols, found at run time with dlsym(RTLD_DEFAULT) instead of
//! link-time imports: the library must also load where Ganesha is absent (the CLI, tests),
//! and a missing symbol must become a clear refusal, not a dlopen failure.

use super::bindings::{
    add_clid_entry_v15_fn, add_rfh_entry_v15_fn, create_clid_name_fn,
    display_log_component_level_fn, load_config_from_parse_fn, mem_stats_update_free_fn,
    nfs_grace_start_t,
};
use std::ffi::{c_char, c_void, CStr};
use std::sync::OnceLock;

/// The running Ganesha as far as we could identify it.
pub struct Ganesha {
    /// (major, minor) from the file name of the library that exports Ganesha's functions
    /// (libganesha_nfsd.so.4.3 → (4, 3)).
    pub version: Option<(u32, u32)>,
    pub library: Option<String>,
    pub display_log: display_log_component_level_fn,
    /// Address of the exported `log_levels_t *component_log_level` variable.
    component_log_level: *const *const i32,
    pub load_config_from_parse: load_config_from_parse_fn,
    /// `int nfs_start_grace(nfs_grace_start_t *)`: lets the backend put this node in grace.
    pub nfs_start_grace: Option<unsafe extern "C" fn(*mut nfs_grace_start_t) -> i32>,
    /// `void reaper_wake(void)`: runs the reaper (maybe_start_grace, try_lift_grace, and
    /// the expiry of clients whose lease is over) now.
    pub reaper_wake: Option<unsafe extern "C" fn()>,
    /// Address of the exported `hash_table_t *ht_confirmed_client_id` variable.
    confirmed_clients: *const *mut c_void,
    /// `void hashtable_for_each(hash_table_t *, void (*)(struct rbt_node *, void *), void *)`:
    /// calls back for every entry with that partition's lock held for reading.
    pub hashtable_for_each: Option<HashtableForEach>,
    /// 15.x: `nfs4_add_clid_entry(name, reclaim_complete)` and `nfs4_add_rfh_entry`.
    pub add_clid_entry: add_clid_entry_v15_fn,
    pub add_rfh_entry: add_rfh_entry_v15_fn,
    /// 15.x: `nfs4_create_clid_name(cid, len)`, the recovery tag.
    pub create_clid_name: create_clid_name_fn,
    /// 15.x: `gsh_mem_stats_update_free`, before free() of a Ganesha-allocated tag.
    pub mem_stats_update_free: mem_stats_update_free_fn,
    /// Address of the exported `nfs_param` (Ganesha's parsed configuration).
    nfs_param: *const u8,
    /// Address of the exported `time_t nfs_ServerEpoch`.
    server_epoch: *mut libc::time_t,
}

/// The callback hashtable_for_each takes: the entry's rbt_node and the caller's argument.
pub type ForEachCallback = unsafe extern "C" fn(node: *mut c_void, arg: *mut c_void);
pub type HashtableForEach =
    unsafe extern "C" fn(ht: *mut c_void, callback: ForEachCallback, arg: *mut c_void);

// SAFETY: the fields are addresses of Ganesha's functions and global variables, which live
// as long as the process; reading the variables is done with volatile reads.
unsafe impl Send for Ganesha {}
unsafe impl Sync for Ganesha {}

static GANESHA: OnceLock<Ganesha> = OnceLock::new();

pub fn ganesha() -> &'static Ganesha {
    GANESHA.get_or_init(resolve)
}

fn lookup(name: &CStr) -> *mut c_void {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name has no preconditions.
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }
}

fn resolve() -> Ganesha {
    let log = lookup(c"DisplayLogComponentLevel");
    let levels = lookup(c"component_log_level");
    let load = lookup(c"load_config_from_parse");
    let start_grace = lookup(c"nfs_start_grace");
    let wake = lookup(c"reaper_wake");
    let confirmed = lookup(c"ht_confirmed_client_id");
    let for_each = lookup(c"hashtable_for_each");
    let add_clid_entry = lookup(c"nfs4_add_clid_entry");
    let add_rfh_entry = lookup(c"nfs4_add_rfh_entry");
    let create_clid_name = lookup(c"nfs4_create_clid_name");
    let mem_stats_free = lookup(c"gsh_mem_stats_update_free");
    let nfs_param = lookup(c"nfs_param");
    let library = library_of(load);
    let version = library.as_deref().and_then(version_from_library);
    Ganesha {
        version,
        library,
        // SAFETY: a non-null dlsym result for these names is Ganesha's function of that
        // signature (ganesha-abi.md); null stays None.
        display_log: unsafe {
            std::mem::transmute::<*mut c_void, display_log_component_level_fn>(log)
        },
        component_log_level: levels as *const *const i32,
        load_config_from_parse: unsafe {
            std::mem::transmute::<*mut c_void, load_config_from_parse_fn>(load)
        },
        // SAFETY: as above; both are exported by Ganesha 4.3-6.2 with these signatures
        // (ganesha-abi.md). A null pointer stays None.
        nfs_start_grace: unsafe {
            std::mem::transmute::<
                *mut c_void,
                Option<unsafe extern "C" fn(*mut nfs_grace_start_t) -> i32>,
            >(start_grace)
        },
        reaper_wake: unsafe {
            std::mem::transmute::<*mut c_void, Option<unsafe extern "C" fn()>>(wake)
        },
        confirmed_clients: confirmed as *const *mut c_void,
        // SAFETY: as above; exported by 4.3-6.2 with this signature (hashtable.h).
        hashtable_for_each: unsafe {
            std::mem::transmute::<*mut c_void, Option<HashtableForEach>>(for_each)
        },
        // SAFETY: exported by 15.x with these signatures (ganesha_abi.h; read from its
        // binaries); 4.3-6.x export none of them (null stays None).
        add_clid_entry: unsafe {
            std::mem::transmute::<*mut c_void, add_clid_entry_v15_fn>(add_clid_entry)
        },
        add_rfh_entry: unsafe {
            std::mem::transmute::<*mut c_void, add_rfh_entry_v15_fn>(add_rfh_entry)
        },
        create_clid_name: unsafe {
            std::mem::transmute::<*mut c_void, create_clid_name_fn>(create_clid_name)
        },
        mem_stats_update_free: unsafe {
            std::mem::transmute::<*mut c_void, mem_stats_update_free_fn>(mem_stats_free)
        },
        nfs_param: nfs_param as *const u8,
        server_epoch: lookup(c"nfs_ServerEpoch") as *mut libc::time_t,
    }
}

impl Ganesha {
    /// Ganesha's server epoch (its start time unless `-E`), None if not exported.
    pub fn server_epoch(&self) -> Option<libc::time_t> {
        // SAFETY: a non-null dlsym result for nfs_ServerEpoch is that time_t variable.
        (!self.server_epoch.is_null()).then(|| unsafe { self.server_epoch.read_volatile() })
    }

    /// Sets the server epoch. Only at recovery_init: the epoch is the high half of every
    /// clientid, session id and stateid, so it must not change once one exists.
    pub fn set_server_epoch(&self, epoch: libc::time_t) -> bool {
        if self.server_epoch.is_null() {
            return false;
        }
        // SAFETY: as above; recovery_init runs before Ganesha's worker threads serve any
        // request, so nothing reads it concurrently.
        unsafe { self.server_epoch.write_volatile(epoch) };
        true
    }
}

/// This thread's `op_ctx` (Ganesha's `__thread struct req_op_context *`): the request the
/// calling hook runs in, or null outside one. dlsym of a TLS symbol answers the calling
/// thread's copy, so it is looked up on every call rather than cached.
pub fn current_op_ctx() -> *const c_void {
    let slot = lookup(c"op_ctx") as *const *const c_void;
    if slot.is_null() {
        return std::ptr::null();
    }
    // SAFETY: a non-null dlsym result for op_ctx is this thread's pointer variable.
    unsafe { std::ptr::read_volatile(slot) }
}

/// The path of the shared object that contains `addr`.
fn library_of(addr: *mut c_void) -> Option<String> {
    if addr.is_null() {
        return None;
    }
    let mut info = libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    // SAFETY: info is a valid out-parameter; dladdr only reads addr as a number.
    let found = unsafe { libc::dladdr(addr as *const c_void, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is a NUL-terminated string owned by the dynamic linker.
    let name = unsafe { CStr::from_ptr(info.dli_fname as *const c_char) };
    Some(name.to_string_lossy().into_owned())
}

/// `.../libganesha_nfsd.so.4.3` → (4, 3). Anything else is unknown.
pub fn version_from_library(path: &str) -> Option<(u32, u32)> {
    let base = path.rsplit('/').next()?;
    let rest = base.strip_prefix("libganesha_nfsd.so.")?;
    let mut parts = rest.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

impl Ganesha {
    /// The bool at `off` in nfs_param (None outside Ganesha). Callers pass an offset of
    /// their version's layout (layout.rs), read after Ganesha parsed its configuration.
    pub fn nfs_param_bool(&self, off: usize) -> Option<bool> {
        if self.nfs_param.is_null() {
            return None;
        }
        // SAFETY: nfs_param is Ganesha's exported configuration struct (over 600 bytes on
        // every supported version) and `off` lies inside it for the running version.
        let byte = unsafe { std::ptr::read_volatile(self.nfs_param.add(off)) };
        Some(byte != 0)
    }

    /// The u32 at `off` in nfs_param (None outside Ganesha), as nfs_param_bool.
    pub fn nfs_param_u32(&self, off: usize) -> Option<u32> {
        if self.nfs_param.is_null() {
            return None;
        }
        // SAFETY: as nfs_param_bool; the callers' offsets are of 4-byte aligned u32 fields.
        let v = unsafe { std::ptr::read_volatile(self.nfs_param.add(off) as *const u32) };
        Some(v)
    }

    /// Ganesha's table of confirmed NFSv4 clients (null outside Ganesha).
    pub fn confirmed_clients(&self) -> *mut c_void {
        if self.confirmed_clients.is_null() {
            return std::ptr::null_mut();
        }
        // SAFETY: the address of Ganesha's exported pointer variable, set at start-up.
        unsafe { std::ptr::read_volatile(self.confirmed_clients) }
    }

    /// Ganesha's current level for a log component, or None outside Ganesha.
    pub fn component_level(&self, component: usize) -> Option<i32> {
        if self.component_log_level.is_null() {
            return None;
        }
        // SAFETY: component_log_level is Ganesha's exported pointer to its array of
        // COMPONENT_COUNT levels (37 in 4.3 to 6.x; 15.x adds QOS, RECOVERY, RDMA, GRPC: 41);
        // callers pass the indices of their version's components (at most 38), and nothing
        // above the smallest count is read on an older version.
        unsafe {
            let array = std::ptr::read_volatile(self.component_log_level);
            let count = match self.version {
                Some((major, _)) if major >= 15 => 41,
                _ => 37,
            };
            if array.is_null() || component >= count {
                return None;
            }
            Some(std::ptr::read_volatile(array.add(component)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_library_names() {
        assert_eq!(
            version_from_library("/usr/lib/ganesha/libganesha_nfsd.so.4.3"),
            Some((4, 3))
        );
        assert_eq!(version_from_library("libganesha_nfsd.so.6.2"), Some((6, 2)));
        assert_eq!(
            version_from_library("/usr/lib/ganesha/libganesha_nfsd.so"),
            None
        );
        assert_eq!(version_from_library("/usr/bin/ganesha.nfsd"), None);
        assert_eq!(version_from_library("libganesha_nfsd.so.x.1"), None);
    }

    #[test]
    fn outside_ganesha_nothing_resolves() {
        let g = ganesha();
        assert!(g.display_log.is_none() && g.load_config_from_parse.is_none());
        assert_eq!(g.version, None);
        assert_eq!(g.component_level(21), None);
    }
}
