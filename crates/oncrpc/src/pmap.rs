//! Portmapper (RFC 1833, version 2) GETPORT: how the NSM sender finds a client's statd and
//! the NLM test client finds MOUNT and NLM.

use crate::XdrWriter;

pub const PMAP_PROG: u32 = 100000;
pub const PMAP_VERS: u32 = 2;
pub const PMAPPROC_GETPORT: u32 = 3;
pub const IPPROTO_TCP: u32 = 6;
pub const IPPROTO_UDP: u32 = 17;

/// The arguments of GETPORT: a `mapping` with the port left 0.
pub fn getport_args(prog: u32, vers: u32, protocol: u32) -> Vec<u8> {
    let mut w = XdrWriter::new();
    w.u32(prog).u32(vers).u32(protocol).u32(0);
    w.into_bytes()
}
