//! Everything that touches Ganesha's memory or calls into Ganesha: the only module with
//! `unsafe`. It identifies the running Ganesha, decodes its structs into plain Rust values
//! (validating every pointer and length first), and hands them to [`crate::backend`].

mod bindings {
    #![allow(
        non_camel_case_types,
        non_upper_case_globals,
        non_snake_case,
        dead_code
    )]
    #![allow(clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/ganesha_bindings.rs"));
}

pub mod config;
mod exports;
pub mod layout;
pub mod logging;
mod release;
pub mod spawn;
pub mod symbols;

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs a hook body so that a panic never unwinds into Ganesha's C frames (undefined
/// behaviour): it is logged and the hook returns `fallback`.
pub(crate) fn guard<R>(hook: &str, fallback: R, body: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(r) => r,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            // Logging itself must not panic again here.
            let _ = catch_unwind(AssertUnwindSafe(|| {
                log::error!("ganesha-ctdb: internal error in {hook}: {what}; hook answered with its safe default")
            }));
            fallback
        }
    }
}
