//! Which public IP an NFSv4.1+ client used, from what Ganesha 4.3 and 6.x keep of it.
//!
//! Those versions store the server address of EXCHANGE_ID's connection as a u32
//! (`cr_server_addr`, nfs4_op_exchange_id.c get_raddr): an IPv4 address (and an
//! IPv4-mapped IPv6 one, `::ffff:a.b.c.d`) whole, a real IPv6 address only by its low 32
//! bits (`s6_addr[12..16]`). Filed as an IPv4 address, a client that came in through an
//! IPv6 public address would be offered on no takeover of it. So the value is matched
//! against the cluster's public addresses. Ganesha 15.x keeps the whole socket address and
//! needs none of this.
//!
//! The ambiguity rule: when several public addresses share those 32 bits (two IPv6
//! addresses, or an IPv6 one whose low 32 bits spell an IPv4 public address), the client
//! is filed under every one of them, never under a guess: a takeover or a release of any
//! of them then covers it (as an NFSv4.0 client whose address is unknown is filed under
//! every IP its node holds), at the price of being offered where it will not come back.
//! The collision is logged once per value; renumbering one of the addresses ends it.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a read of this host's interface addresses is used (an EXCHANGE_ID per client
/// must not read them each time; addresses rarely change).
const LOCAL_ADDRS_TTL: Duration = Duration::from_secs(10);

/// This host's interface addresses (both families), read at most every LOCAL_ADDRS_TTL.
/// A single node without CTDB has no public address list: the addresses a client can have
/// used are the node's own (a single node on 4.3 otherwise filed an NFSv4.1 client that
/// came over IPv6 ::1 under "0.0.0.1"). Empty when they cannot be read.
pub fn local_addrs() -> Vec<IpAddr> {
    static CACHE: Mutex<Option<(Instant, Vec<IpAddr>)>> = Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((at, addrs)) = cache.as_ref() {
        if at.elapsed() < LOCAL_ADDRS_TTL {
            return addrs.clone();
        }
    }
    let addrs: Vec<IpAddr> = match nix::ifaddrs::getifaddrs() {
        Ok(ifs) => ifs
            .filter_map(|i| i.address)
            .filter_map(|a| {
                a.as_sockaddr_in()
                    .map(|v4| IpAddr::V4(v4.ip()))
                    .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
            })
            .collect(),
        Err(e) => {
            log::warn!("cannot read this host's interface addresses ({e})");
            Vec::new()
        }
    };
    *cache = Some((Instant::now(), addrs.clone()));
    addrs
}

/// The 32 bits Ganesha 4.3/6.x keep of `ip`.
pub fn low32(ip: &IpAddr) -> u32 {
    match ip {
        IpAddr::V4(a) => u32::from(*a),
        IpAddr::V6(a) => {
            let o = a.octets();
            u32::from_be_bytes([o[12], o[13], o[14], o[15]])
        }
    }
}

/// How a kept u32 maps onto the public addresses.
#[derive(Debug, PartialEq, Eq)]
pub enum Low32Match {
    /// Exactly one public address has these bits.
    One(IpAddr),
    /// Several do (see the module comment); in the order given.
    Ambiguous(Vec<IpAddr>),
    /// None does: an address that is not public (a node's own), read as the IPv4 address
    /// it is when the client used IPv4.
    NotPublic(Ipv4Addr),
}

pub fn match_low32(kept: u32, public: &[IpAddr]) -> Low32Match {
    let mut hits: Vec<IpAddr> = public
        .iter()
        .filter(|ip| low32(ip) == kept)
        .copied()
        .collect();
    hits.dedup();
    match hits.len() {
        0 => Low32Match::NotPublic(Ipv4Addr::from(kept)),
        1 => Low32Match::One(hits[0]),
        _ => Low32Match::Ambiguous(hits),
    }
}

/// Sets of public addresses that share their low 32 bits, for a warning at start-up.
pub fn collisions(public: &[IpAddr]) -> Vec<Vec<IpAddr>> {
    let mut by: std::collections::BTreeMap<u32, Vec<IpAddr>> = Default::default();
    for ip in public {
        let v = by.entry(low32(ip)).or_default();
        if !v.contains(ip) {
            v.push(*ip);
        }
    }
    by.into_values().filter(|v| v.len() > 1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(s: &[&str]) -> Vec<IpAddr> {
        s.iter().map(|a| a.parse().unwrap()).collect()
    }

    /// What get_raddr computes, from the socket address's bytes, as Ganesha does it.
    fn get_raddr(local: &str) -> u32 {
        match local.parse::<IpAddr>().unwrap() {
            IpAddr::V4(a) => u32::from_be_bytes(a.octets()),
            IpAddr::V6(a) => {
                let o = a.octets();
                u32::from_be_bytes([o[12], o[13], o[14], o[15]])
            }
        }
    }

    #[test]
    fn an_ipv6_public_address_is_found_by_its_low_32_bits() {
        let public = ips(&["10.77.1.1", "fd77:1::1", "fd77:1::2", "10.77.1.2"]);
        for p in &public {
            assert_eq!(
                match_low32(get_raddr(&p.to_string()), &public),
                Low32Match::One(*p)
            );
        }
        // A dual-stack socket hands an IPv4 client's connection over as ::ffff:a.b.c.d.
        assert_eq!(
            match_low32(get_raddr("::ffff:10.77.1.2"), &public),
            Low32Match::One("10.77.1.2".parse().unwrap())
        );
    }

    #[test]
    fn colliding_addresses_are_all_named_never_guessed() {
        // Two IPv6 addresses with the same interface bits, and one whose low 32 bits spell
        // an IPv4 public address (fd00::a4d:101 ends in 0a 4d 01 01 = 10.77.1.1).
        let public = ips(&[
            "fd77:1::5",
            "fd77:2::5",
            "10.77.1.1",
            "fd00::a4d:101",
            "10.77.1.9",
        ]);
        assert_eq!(
            match_low32(get_raddr("fd77:2::5"), &public),
            Low32Match::Ambiguous(ips(&["fd77:1::5", "fd77:2::5"]))
        );
        assert_eq!(
            match_low32(get_raddr("10.77.1.1"), &public),
            Low32Match::Ambiguous(ips(&["10.77.1.1", "fd00::a4d:101"]))
        );
        assert_eq!(
            match_low32(get_raddr("10.77.1.9"), &public),
            Low32Match::One("10.77.1.9".parse().unwrap())
        );
        let mut c = collisions(&public);
        c.sort();
        assert_eq!(
            c,
            vec![
                ips(&["10.77.1.1", "fd00::a4d:101"]),
                ips(&["fd77:1::5", "fd77:2::5"])
            ]
        );
    }

    #[test]
    fn an_address_that_is_not_public_stays_the_ipv4_address_it_reads_as() {
        let public = ips(&["fd77:1::1"]);
        assert_eq!(
            match_low32(get_raddr("10.77.0.1"), &public),
            Low32Match::NotPublic("10.77.0.1".parse().unwrap())
        );
        assert!(collisions(&public).is_empty());
    }
}
