//! A real N-node CTDB cluster on one machine, for tests and the demo: each node is a network
//! namespace with a veth on a shared bridge, its own ctdbd (Debian's ctdb 4.17, real event
//! scripts moving real public IPs), and optionally its own private D-Bus and ganesha.nfsd
//! loading our library. Every node exports the same local directory with FSAL_VFS, so
//! byte-range locks conflict across nodes as on a cluster filesystem. Clients reach the
//! public IPs from the bridge namespace.
//!
//! Everything started is recorded by pid and torn down by pid (descendants found through
//! /proc's parent links), namespaces are deleted, also when a test panics.

pub mod chroot;
pub mod cluster;
pub mod procs;

pub use cluster::{Cluster, ClusterSpec, Node};
