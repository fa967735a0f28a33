//! ganesha-ctdb: an NFS-Ganesha recovery backend that keeps client recovery records in a
//! replicated store (CTDB persistent databases, or a directory), keyed by the server IP the
//! client used, so that an IP takeover lets exactly that IP's clients reclaim.
//!
//! Data flows one way: Ganesha hook → [`ganesha`] (raw pointers decoded into Rust values) →
//! [`backend`] → [`records`] → [`store`]. Nothing below `ganesha` sees a raw pointer.

#![deny(unsafe_code)]

pub mod backend;
pub mod config;
pub mod ctdb;
pub mod dbus_admin;
pub mod event;
#[allow(unsafe_code)]
pub mod ganesha;
pub mod grace;
pub mod grace_admin;
pub mod nsm;
pub mod records;
pub mod statd;
pub mod store;
