//! The data the controls carry. Samba: ctdb/protocol/protocol_types.c (push/pull per type)
//! and the daemon's memory images in ctdb/include/ctdb_protocol.h, which it sends as they
//! are: ctdb_sock_addr is a raw 28-byte union of sockaddr_in/sockaddr_in6.

use super::{len32, Reader, Result, WireError, Writer};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// sizeof(ctdb_sock_addr) on Linux.
pub const SOCK_ADDR_LEN: usize = 28;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// Node flags (NODE_FLAGS_*).
pub mod node_flags {
    pub const DISCONNECTED: u32 = 0x01;
    pub const UNHEALTHY: u32 = 0x02;
    pub const PERMANENTLY_DISABLED: u32 = 0x04;
    pub const BANNED: u32 = 0x08;
    pub const DELETED: u32 = 0x10;
    pub const STOPPED: u32 = 0x20;
    /// Not counted as a member: DELETED | DISCONNECTED | BANNED | STOPPED.
    pub const INACTIVE: u32 = DELETED | DISCONNECTED | BANNED | STOPPED;
}

/// DB flags in GET_DBMAP.
pub const DB_FLAGS_PERSISTENT: u8 = 0x01;

/// A ctdb_sock_addr: the address (port and scope dropped; public IPs carry none).
pub fn pull_sock_addr(r: &mut Reader) -> Result<IpAddr> {
    let raw: [u8; SOCK_ADDR_LEN] = r.array("sock_addr")?;
    let family = u16::from_le_bytes([raw[0], raw[1]]);
    match family {
        AF_INET => Ok(IpAddr::V4(Ipv4Addr::new(raw[4], raw[5], raw[6], raw[7]))),
        AF_INET6 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&raw[8..24]);
            Ok(IpAddr::V6(Ipv6Addr::from(a)))
        }
        f => Err(WireError::BadValue {
            what: "sock_addr family",
            value: f.into(),
        }),
    }
}

pub fn push_sock_addr(w: &mut Writer, ip: IpAddr) {
    let mut raw = [0u8; SOCK_ADDR_LEN];
    match ip {
        IpAddr::V4(a) => {
            raw[..2].copy_from_slice(&AF_INET.to_le_bytes());
            raw[4..8].copy_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            raw[..2].copy_from_slice(&AF_INET6.to_le_bytes());
            raw[8..24].copy_from_slice(&a.octets());
        }
    }
    w.bytes(&raw);
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeAndFlags {
    pub pnn: u32,
    pub flags: u32,
    pub addr: IpAddr,
}

impl NodeAndFlags {
    /// CTDB counts it as a member: connected, not banned, stopped or deleted.
    pub fn active(&self) -> bool {
        self.flags & node_flags::INACTIVE == 0
    }
}

/// GET_NODEMAP's answer: u32 count, then 36 bytes per node.
pub fn pull_node_map(buf: &[u8]) -> Result<Vec<NodeAndFlags>> {
    let mut r = Reader::new(buf);
    let n = r.count(8 + SOCK_ADDR_LEN, "node map count")?;
    (0..n)
        .map(|_| {
            Ok(NodeAndFlags {
                pnn: r.u32("node pnn")?,
                flags: r.u32("node flags")?,
                addr: pull_sock_addr(&mut r)?,
            })
        })
        .collect()
}

pub fn push_node_map(nodes: &[NodeAndFlags]) -> Result<Vec<u8>> {
    let mut w = Writer::default();
    w.u32(len32(nodes.len(), "node map")?);
    for n in nodes {
        w.u32(n.pnn).u32(n.flags);
        push_sock_addr(&mut w, n.addr);
    }
    Ok(w.buf)
}

/// A public IP and its holder (None: unassigned, PNN 0xFFFFFFFF).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicIp {
    pub holder: Option<u32>,
    pub addr: IpAddr,
}

/// GET_PUBLIC_IPS's answer: u32 count, then 32 bytes per IP.
pub fn pull_public_ips(buf: &[u8]) -> Result<Vec<PublicIp>> {
    let mut r = Reader::new(buf);
    let n = r.count(4 + SOCK_ADDR_LEN, "public IP count")?;
    (0..n)
        .map(|_| {
            let pnn = r.u32("public IP holder")?;
            Ok(PublicIp {
                holder: (pnn != super::packet::CTDB_UNKNOWN_PNN).then_some(pnn),
                addr: pull_sock_addr(&mut r)?,
            })
        })
        .collect()
}

pub fn push_public_ips(ips: &[PublicIp]) -> Result<Vec<u8>> {
    let mut w = Writer::default();
    w.u32(len32(ips.len(), "public IPs")?);
    for ip in ips {
        w.u32(ip.holder.unwrap_or(super::packet::CTDB_UNKNOWN_PNN));
        push_sock_addr(&mut w, ip.addr);
    }
    Ok(w.buf)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DbEntry {
    pub db_id: u32,
    pub flags: u8,
}

/// GET_DBMAP's answer: u32 count, then {u32 db_id, u8 flags, 3 pad bytes}.
pub fn pull_db_map(buf: &[u8]) -> Result<Vec<DbEntry>> {
    let mut r = Reader::new(buf);
    let n = r.count(8, "db map count")?;
    (0..n)
        .map(|_| {
            let db_id = r.u32("db id")?;
            let flags = r.u8("db flags")?;
            r.bytes(3, "db flags padding")?;
            Ok(DbEntry { db_id, flags })
        })
        .collect()
}

pub fn push_db_map(dbs: &[DbEntry]) -> Result<Vec<u8>> {
    let mut w = Writer::default();
    w.u32(len32(dbs.len(), "db map")?);
    for d in dbs {
        w.u32(d.db_id).u8(d.flags).bytes(&[0; 3]);
    }
    Ok(w.buf)
}

/// A NUL-terminated string with no length prefix (ctdb_string): DB names, DB paths.
pub fn push_string(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

pub fn pull_string(buf: &[u8], what: &'static str) -> Result<String> {
    let body = buf.strip_suffix(&[0]).ok_or(WireError::BadValue {
        what,
        value: buf.last().copied().unwrap_or(0).into(),
    })?;
    String::from_utf8(body.to_vec()).map_err(|_| WireError::BadValue { what, value: 0 })
}

/// struct ctdb_ltdb_header: before every value in a TDB ctdbd keeps (24 bytes with the
/// 64-bit padding, which ctdbd does not always zero).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LtdbHeader {
    pub rsn: u64,
    pub dmaster: u32,
    pub flags: u32,
}

pub const LTDB_HEADER_LEN: usize = 24;

impl LtdbHeader {
    pub fn push(&self, w: &mut Writer) {
        w.u64(self.rsn)
            .u32(self.dmaster)
            .u32(0)
            .u32(self.flags)
            .u32(0);
    }

    /// A stored value: its header and data. Shorter than a header: no record (as
    /// ctdb_ltdb_fetch treats it); a header alone: a deleted record of a persistent DB.
    pub fn split(value: &[u8]) -> Option<(LtdbHeader, &[u8])> {
        if value.len() < LTDB_HEADER_LEN {
            return None;
        }
        let mut r = Reader::new(value);
        let h = LtdbHeader {
            rsn: r.u64("ltdb rsn").ok()?,
            dmaster: r.u32("ltdb dmaster").ok()?,
            flags: {
                r.u32("ltdb reserved").ok()?;
                r.u32("ltdb flags").ok()?
            },
        };
        Some((h, &value[LTDB_HEADER_LEN..]))
    }
}

/// One record of a ctdb_rec_buffer (TRANS3_COMMIT): key, ltdb header, data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecData {
    pub key: Vec<u8>,
    pub header: LtdbHeader,
    pub data: Vec<u8>,
}

/// A ctdb_rec_buffer: u32 db_id, u32 count, then each record as {u32 length, u32 reqid,
/// u32 keylen, u32 datalen (header included), key, header, data}, back to back.
pub fn push_rec_buffer(db_id: u32, recs: &[RecData]) -> Result<Vec<u8>> {
    let mut w = Writer::default();
    w.u32(db_id).u32(len32(recs.len(), "record count")?);
    for rec in recs {
        let datalen = LTDB_HEADER_LEN + rec.data.len();
        w.u32(len32(16 + rec.key.len() + datalen, "record length")?)
            .u32(0)
            .u32(len32(rec.key.len(), "record key")?)
            .u32(len32(datalen, "record data")?)
            .bytes(&rec.key);
        rec.header.push(&mut w);
        w.bytes(&rec.data);
    }
    Ok(w.buf)
}

pub fn pull_rec_buffer(buf: &[u8]) -> Result<(u32, Vec<RecData>)> {
    let mut r = Reader::new(buf);
    let db_id = r.u32("record buffer db id")?;
    let n = r.count(16 + LTDB_HEADER_LEN, "record count")?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let length = r.u32("record length")? as usize;
        r.u32("record reqid")?;
        let keylen = r.u32("record keylen")? as usize;
        let datalen = r.u32("record datalen")? as usize;
        if keylen.checked_add(datalen).and_then(|n| n.checked_add(16)) != Some(length) {
            return Err(WireError::BadValue {
                what: "record length (not 16 + key + data)",
                value: length as u64,
            });
        }
        let key = r.bytes(keylen, "record key")?.to_vec();
        let value = r.bytes(datalen, "record data")?;
        let (header, data) = LtdbHeader::split(value).ok_or(WireError::Truncated {
            what: "record ltdb header",
            needed: LTDB_HEADER_LEN.saturating_sub(value.len()),
        })?;
        out.push(RecData {
            key,
            header,
            data: data.to_vec(),
        });
    }
    Ok((db_id, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
            any::<[u8; 16]>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
        ]
    }

    /// sockaddr_in as ctdbd sends it: family 2 in host order, port and address in network
    /// order, zeros after.
    #[test]
    fn an_ipv4_sock_addr_is_a_raw_sockaddr_in() {
        let mut raw = [0u8; SOCK_ADDR_LEN];
        raw[0] = 2;
        raw[2..4].copy_from_slice(&4379u16.to_be_bytes());
        raw[4..8].copy_from_slice(&[10, 77, 1, 2]);
        let ip = pull_sock_addr(&mut Reader::new(&raw)).unwrap();
        assert_eq!(ip, "10.77.1.2".parse::<IpAddr>().unwrap());
        let mut bad = raw;
        bad[0] = 1;
        assert!(pull_sock_addr(&mut Reader::new(&bad)).is_err());
    }

    #[test]
    fn a_count_larger_than_what_follows_is_refused_before_allocating() {
        let mut buf = 1_000_000u32.to_le_bytes().to_vec();
        buf.extend_from_slice(&[0; 36]);
        assert!(matches!(
            pull_node_map(&buf),
            Err(WireError::TooLong { max: 1, .. })
        ));
        assert!(matches!(
            pull_public_ips(&buf),
            Err(WireError::TooLong { .. })
        ));
        assert!(matches!(pull_db_map(&buf), Err(WireError::TooLong { .. })));
    }

    #[test]
    fn a_header_alone_is_a_deleted_record_and_less_is_none() {
        let mut w = Writer::default();
        LtdbHeader {
            rsn: 5,
            dmaster: 1,
            flags: 0,
        }
        .push(&mut w);
        let (h, data) = LtdbHeader::split(&w.buf).unwrap();
        assert_eq!((h.rsn, data.len()), (5, 0));
        assert!(LtdbHeader::split(&w.buf[..23]).is_none());
        assert_eq!(
            pull_string(b"ganesha_grace.tdb\0", "n").unwrap(),
            "ganesha_grace.tdb"
        );
        assert!(pull_string(b"no nul", "n").is_err());
    }

    proptest! {
        #![proptest_config(fuzz_config::config(concat!(env!("CARGO_MANIFEST_DIR"), "/proptest-regressions/types.txt")))]

        #[test]
        fn maps_and_record_buffers_round_trip(
            nodes in proptest::collection::vec((any::<u32>(), any::<u32>(), any_ip()), 0..20),
            ips in proptest::collection::vec((proptest::option::of(0u32..64), any_ip()), 0..20),
            dbs in proptest::collection::vec((any::<u32>(), any::<u8>()), 0..20),
            recs in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..40), any::<u64>(), proptest::collection::vec(any::<u8>(), 0..2000)), 0..8),
        ) {
            let nodes: Vec<_> = nodes.into_iter().map(|(pnn, flags, addr)| NodeAndFlags { pnn, flags, addr }).collect();
            prop_assert_eq!(pull_node_map(&push_node_map(&nodes).unwrap()).unwrap(), nodes);
            let ips: Vec<_> = ips.into_iter().map(|(holder, addr)| PublicIp { holder, addr }).collect();
            prop_assert_eq!(pull_public_ips(&push_public_ips(&ips).unwrap()).unwrap(), ips);
            let dbs: Vec<_> = dbs.into_iter().map(|(db_id, flags)| DbEntry { db_id, flags }).collect();
            prop_assert_eq!(pull_db_map(&push_db_map(&dbs).unwrap()).unwrap(), dbs);
            let recs: Vec<_> = recs.into_iter().map(|(key, rsn, data)| RecData { key, header: LtdbHeader { rsn, dmaster: 1, flags: 0 }, data }).collect();
            let buf = push_rec_buffer(0xabcd, &recs).unwrap();
            prop_assert_eq!(pull_rec_buffer(&buf).unwrap(), (0xabcd, recs));
            for cut in 0..buf.len().min(300) {
                let _ = pull_rec_buffer(&buf[..cut]);
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = pull_node_map(&bytes);
            let _ = pull_public_ips(&bytes);
            let _ = pull_db_map(&bytes);
            let _ = pull_rec_buffer(&bytes);
            let _ = LtdbHeader::split(&bytes);
        }
    }
}
