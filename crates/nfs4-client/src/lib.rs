//! A small NFSv4.0/NFSv4.1 client built for one job: prove that a server lets a client
//! reclaim its opens and byte-range locks after a restart or an IP takeover, and refuses
//! everyone else while it is in grace. It speaks just the operations that needs: client
//! and session set-up, LOOKUP, OPEN (CLAIM_NULL / CLAIM_PREVIOUS), OPEN_CONFIRM, LOCK (new
//! and existing lock owners, reclaim flag), LOCKU, CLOSE, RENEW, RECLAIM_COMPLETE.

pub mod client;
pub mod netns;
pub mod proto;
pub mod status;

pub use client::{Client, ClientOptions, Error, LockType, OpenFile};
pub use status::NfsStat;
