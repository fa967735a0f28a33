//! A client of ctdbd's unix-domain socket protocol, as Samba's own clients speak it
//! (ctdb/protocol/, ctdb/client/ in Samba 4.17 and 4.22, whose client-visible wire format
//! is the same): `proto` is the pure part — every packet and data type with its length,
//! push and pull, no I/O, every announced length checked against the bytes there before
//! anything is allocated; `conn` is a blocking driver over the socket with a bound on every
//! call.
//!
//! Integers are in host byte order on the wire (ctdbd copies its structs), which this crate
//! writes as little-endian: the only byte order Debian's ctdb runs on here (x86_64, arm64).
//! Addresses inside `ctdb_sock_addr` are in network order.

#![forbid(unsafe_code)]

pub mod conn;
pub mod proto;
pub mod tdb;

pub use conn::{ConnError, Connection};
pub use proto::WireError;
