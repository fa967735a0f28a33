//! ganesha-ctdb: an NFS-Ganesha recovery backend that keeps client recovery records in a
//! replicated store (CTDB persistent databases, or a directory), keyed by the server IP the
//! client used, so that an IP takeover lets exactly that IP's clients reclaim.
//!
//! Data flows one way: Ganesha hook → [`ganesha`] (raw pointers decoded into Rust values) →
//! [`backend`] → [`records`] → [`store`]. Nothing below `ganesha` sees a raw pointer.

#![deny(unsafe_code)]

pub mod backend;
pub mod check;
pub mod config;
pub mod ctdb;
pub mod dbus_admin;
pub mod event;
pub mod facts;
#[allow(unsafe_code)]
pub mod ganesha;
pub mod ganesha_conf;
pub mod grace;
pub mod grace_admin;
pub mod nsm;
pub mod progress;
pub mod records;
pub mod server_addr;
pub mod statd;
pub mod statd_spool;
pub mod status_view;
pub mod store;

/// Shared by the `fuzz` test modules (docs/fuzzing.md).
#[cfg(test)]
pub(crate) mod fuzzing {
    use proptest::test_runner::Config;

    /// 512 cases per property unless PROPTEST_CASES asks for another number (a long run);
    /// failures proptest finds are kept in proptest-regressions/<name>.txt at the crate root
    /// and replayed first.
    pub fn config(name: &str) -> Config {
        let path = format!(
            "{}/proptest-regressions/{name}.txt",
            env!("CARGO_MANIFEST_DIR")
        );
        fuzz_config::config(Box::leak(path.into_boxed_str()))
    }

    /// Runs `f`; returns its result and the peak number of bytes this thread had allocated
    /// at once meanwhile.
    pub fn peak_bytes<T>(f: impl FnOnce() -> T) -> (T, u64) {
        let mut out = None;
        let info = allocation_counter::measure(|| out = Some(f()));
        match out {
            Some(v) => (v, info.bytes_max),
            None => unreachable!("measure runs its closure"),
        }
    }
}
