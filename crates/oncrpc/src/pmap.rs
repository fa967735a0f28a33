//! Finding a service's port: portmapper (RFC 1833, version 2) GETPORT for IPv4, rpcbind
//! version 4 GETADDR for IPv6. Version 2 knows only IPv4 registrations: asked over IPv6,
//! rpcbind answers with the port of the service's IPv4 socket, and rpc.statd binds its
//! IPv6 socket to another port (seen with Debian 12's rpcbind 1.2.6 and nfs-utils 2.6.2:
//! status udp 55847, udp6 34813). nfs-utils' sm-notify asks version 4 for IPv6 peers too.

use crate::XdrWriter;

pub const PMAP_PROG: u32 = 100000;
pub const PMAP_VERS: u32 = 2;
pub const PMAPPROC_GETPORT: u32 = 3;
/// rpcbind version 4 (same program number as the portmapper).
pub const RPCB_VERS4: u32 = 4;
pub const RPCBPROC_GETADDR: u32 = 3;
pub const IPPROTO_TCP: u32 = 6;
pub const IPPROTO_UDP: u32 = 17;
/// Longest universal address a reply may carry (an IPv6 literal with a zone and ".p1.p2"
/// fits many times over).
pub const UADDR_MAX: usize = 256;

/// The arguments of GETPORT: a `mapping` with the port left 0.
pub fn getport_args(prog: u32, vers: u32, protocol: u32) -> Vec<u8> {
    let mut w = XdrWriter::new();
    w.u32(prog).u32(vers).u32(protocol).u32(0);
    w.into_bytes()
}

/// The arguments of GETADDR: an `rpcb` naming the program, version and netid ("udp6",
/// "tcp6"), with the address and owner left empty (any address; rpcbind fills in its own).
pub fn getaddr_args(prog: u32, vers: u32, netid: &str) -> Vec<u8> {
    let mut w = XdrWriter::new();
    w.u32(prog).u32(vers).string(netid).string("").string("");
    w.into_bytes()
}

/// The port of a universal address ("fd00::fe.135.253", "0.0.0.0.8.1": the host part,
/// then the port's high and low byte). None for a malformed one; the empty string (the
/// program is not registered) is malformed here too, the caller tells it apart.
pub fn uaddr_port(uaddr: &str) -> Option<u16> {
    let byte = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse::<u8>().ok())
            .flatten()
    };
    let mut parts = uaddr.rsplitn(3, '.');
    let lo = byte(parts.next()?)?;
    let hi = byte(parts.next()?)?;
    let host = parts.next()?;
    if host.is_empty() {
        return None;
    }
    Some(u16::from(hi) << 8 | u16::from(lo))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::XdrReader;

    #[test]
    fn universal_addresses_give_their_port() {
        assert_eq!(uaddr_port("::.135.253"), Some(34813));
        assert_eq!(uaddr_port("fd00:77:1::fe.3.255"), Some(1023));
        assert_eq!(uaddr_port("0.0.0.0.218.39"), Some(55847));
        assert_eq!(uaddr_port("10.0.0.1.0.111"), Some(111));
        for bad in [
            "", "1.2", ".1.2", "::.256.1", "::.1.-1", "::.+1.2", "::.1", "::.x.1", "::.1.2 ",
        ] {
            assert_eq!(uaddr_port(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn getaddr_args_are_an_rpcb() {
        let b = getaddr_args(100024, 1, "udp6");
        let mut r = XdrReader::new(&b);
        assert_eq!(r.u32("prog").unwrap(), 100024);
        assert_eq!(r.u32("vers").unwrap(), 1);
        assert_eq!(r.string(16, "netid").unwrap(), "udp6");
        assert_eq!(r.string(16, "addr").unwrap(), "");
        assert_eq!(r.string(16, "owner").unwrap(), "");
        assert_eq!(r.remaining(), 0);
    }

    proptest::proptest! {
        /// Any text: a port or None, never a panic.
        #[test]
        fn any_uaddr_is_judged(s in ".{0,40}") {
            let _ = uaddr_port(&s);
        }
    }
}
