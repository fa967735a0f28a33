//! NFSv3/NLM clients as rpc.statd reports them (its ha-callout), and their notification
//! after a takeover (design §6).
//!
//! `statd-state@<server-ip>@<client>` (CTDB's own key format) says that `client` (the
//! mon_name statd was asked to monitor) has NLM locks through that server IP. rpc.statd
//! cannot tell which IP a client used, so a client is recorded against every public IP this
//! node holds. `del-client` does not delete: Ganesha's SM_UNMON_ALL at start-up makes statd
//! call it for every client, and a takeover notification still needs them. It marks the
//! record unmonitored; the next notification for that IP sends to it (harmless for a client
//! without locks) and then drops it.
//!
//! Ganesha's own NLM release ("2:<ip>", sent when an IP leaves the node) picks the NLM
//! clients that reached the node through that IP but then drops *all* locks of their host
//! (state_nlm_notify works per NSM client, i.e. per mon_name), also those it holds through
//! the node's other IPs, and tells nobody. So `releaseip` reads, before "2:<ip>", which
//! hosts are recorded for the IP and for which of the node's other IPs ([`collateral`]),
//! and once Ganesha has dropped their locks notifies each from those IPs, while the
//! cluster is still in the grace the release started: the host reclaims them there. A host
//! that kept its locks (it never used the released IP) reclaims what it holds, which
//! Ganesha grants to the same owner. This does not wait for the host's SM_UNMON: Ganesha
//! does not always send one for a released host (a torture run lost a lock that way).

use crate::nsm::{self, NotifyPlan, Report};
use crate::records::ServerIp;
use crate::store::{Store, StoreError};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, ToSocketAddrs};
use std::time::Duration;

pub const STATD_PREFIX: &str = "statd-state@";
pub const NSM_STATE_PREFIX: &str = "nsm-state@";
/// Before Ganesha's "2:<released>": for each other IP the node holds (`held`), the hosts
/// recorded for both, i.e. the hosts whose locks through that IP the release drops and who
/// must be told to reclaim them there (see the module comment).
pub fn collateral(
    store: &dyn Store,
    released: IpAddr,
    held: &[IpAddr],
) -> Result<BTreeMap<IpAddr, Vec<String>>, StatdError> {
    let hosts: BTreeSet<String> = clients_of(store, &released)?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let mut out = BTreeMap::new();
    if hosts.is_empty() {
        return Ok(out);
    }
    for ip in held.iter().filter(|ip| **ip != released) {
        let also: Vec<String> = clients_of(store, ip)?
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| hosts.contains(n))
            .collect();
        if !also.is_empty() {
            out.insert(*ip, also);
        }
    }
    Ok(out)
}

pub fn statd_key(ip: &ServerIp, client: &str) -> String {
    format!("{STATD_PREFIX}{ip}@{client}")
}

pub fn nsm_state_key(ip: &IpAddr) -> String {
    format!("{NSM_STATE_PREFIX}{ip}")
}

#[derive(Debug)]
pub enum StatdError {
    /// A client name that cannot be recorded; says why.
    BadName(String),
    Store(StoreError),
    Io(std::io::Error),
}

impl fmt::Display for StatdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatdError::BadName(m) => f.write_str(m),
            StatdError::Store(e) => write!(f, "{e}"),
            StatdError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StatdError {}

impl From<StoreError> for StatdError {
    fn from(e: StoreError) -> Self {
        StatdError::Store(e)
    }
}

/// mon_name comes from the network: any bytes statd passed as an argument. Refuse only
/// what cannot be stored or sent back (NSM names are at most 1024 bytes).
pub fn check_client_name(name: &str) -> Result<(), StatdError> {
    if name.is_empty() {
        return Err(StatdError::BadName("empty client name".into()));
    }
    if name.len() > nsm::SM_MAXSTRLEN {
        return Err(StatdError::BadName(format!(
            "client name of {} bytes is longer than NSM's {} (SM_MAXSTRLEN)",
            name.len(),
            nsm::SM_MAXSTRLEN
        )));
    }
    if name.bytes().any(|b| b == b'\n' || b == 0) {
        return Err(StatdError::BadName(format!(
            "client name {name:?} contains a newline or NUL byte; it cannot be a store key"
        )));
    }
    Ok(())
}

const MONITORED: &[u8] = b"v1 monitored=1";
pub const UNMONITORED: &[u8] = b"v1 monitored=0";

pub fn add_client(store: &dyn Store, ips: &[ServerIp], client: &str) -> Result<(), StatdError> {
    store.put_many(&monitored_writes(ips, client)?)?;
    Ok(())
}

/// The records `add-client` writes: `client` monitored under each of `ips`.
pub fn monitored_writes(
    ips: &[ServerIp],
    client: &str,
) -> Result<Vec<(String, Vec<u8>)>, StatdError> {
    check_client_name(client)?;
    Ok(ips
        .iter()
        .map(|ip| (statd_key(ip, client), MONITORED.to_vec()))
        .collect())
}

/// Marks the client unmonitored where it is recorded (see the module comment).
pub fn del_client(store: &dyn Store, ips: &[ServerIp], client: &str) -> Result<(), StatdError> {
    check_client_name(client)?;
    for ip in ips {
        let key = statd_key(ip, client);
        if store.get(&key)?.is_some() {
            store.put(&key, UNMONITORED)?;
        }
    }
    Ok(())
}

/// The clients recorded for `ip`: (name, still monitored).
pub fn clients_of(store: &dyn Store, ip: &IpAddr) -> Result<Vec<(String, bool)>, StatdError> {
    let prefix = format!("{STATD_PREFIX}{ip}@");
    let scan = store.scan(&prefix)?;
    for s in &scan.skipped {
        log::warn!("skipping statd entry {}: {}", s.location, s.reason);
    }
    Ok(scan
        .entries
        .into_iter()
        .map(|(k, v)| (k[prefix.len()..].to_string(), v != UNMONITORED))
        .collect())
}

/// Takes the next NSM state for `ip` (odd, above every state sent before) and stores it
/// before anything is sent.
pub fn next_state(store: &dyn Store, ip: &IpAddr) -> Result<u32, StatdError> {
    let key = nsm_state_key(ip);
    let previous = match store.get(&key)? {
        None => 0,
        Some(v) => String::from_utf8_lossy(&v)
            .strip_prefix("v1 state=")
            .and_then(|n| n.trim().parse::<u32>().ok())
            .unwrap_or_else(|| {
                // Unreadable: jump far enough that no earlier state can be above it.
                log::error!("{key} unreadable; continuing from a high state");
                u32::MAX / 2
            }),
    };
    let state = nsm::next_state(previous);
    store.put(&key, format!("v1 state={state}").as_bytes())?;
    Ok(state)
}

/// A client name given as an address literal (statd hands IPv6 ones bracketed or not).
fn literal(client: &str) -> Option<IpAddr> {
    client.trim_matches(|c| c == '[' || c == ']').parse().ok()
}

/// Most name lookups running at once (each is a thread blocked in getaddrinfo).
const RESOLVERS: usize = 32;

/// Resolves `names` on threads of their own, sending each address as it is found: a name
/// whose DNS server never answers delays nobody. Returns the names not resolved (failed, or
/// still pending when the caller stopped listening) through `unresolved` once all are done.
/// A name with addresses of both families resolves to one of `ipv4`'s family (the sending
/// public address's), so that it can be reached from it.
fn resolve_in_background(
    names: Vec<String>,
    ipv4: bool,
    found: std::sync::mpsc::Sender<IpAddr>,
) -> std::sync::Arc<std::sync::Mutex<BTreeSet<String>>> {
    use std::sync::{Arc, Mutex};
    let outstanding: Arc<Mutex<BTreeSet<String>>> =
        Arc::new(Mutex::new(names.iter().cloned().collect()));
    let queue = Arc::new(Mutex::new(names));
    let workers = queue.lock().map(|q| q.len()).unwrap_or(0).min(RESOLVERS);
    for _ in 0..workers {
        let (queue, outstanding, found) = (queue.clone(), outstanding.clone(), found.clone());
        let spawned = std::thread::Builder::new()
            .name("gctdb-resolve".into())
            .spawn(move || loop {
                let Some(name) = queue.lock().ok().and_then(|mut q| q.pop()) else {
                    return;
                };
                let addrs: Vec<IpAddr> = (name.as_str(), 0u16)
                    .to_socket_addrs()
                    .map(|a| a.map(|a| nsm::canonical(a.ip())).collect())
                    .unwrap_or_default();
                let addr = addrs
                    .iter()
                    .find(|a| a.is_ipv4() == ipv4)
                    .or(addrs.first())
                    .copied();
                if let Some(ip) = addr {
                    if let Ok(mut o) = outstanding.lock() {
                        o.remove(&name);
                    }
                    let _ = found.send(ip);
                }
            });
        if let Err(e) = spawned {
            log::warn!("NSM: cannot start a name resolver ({e}); fewer names resolve at once");
        }
    }
    outstanding
}

/// Notifies every NLM client recorded for `ip`, from `ip`, with `ip` and `nfs_hostname` as
/// names; then drops the records of clients statd no longer monitors. Names are resolved in
/// parallel inside the run's time bound (`total`, counted from the call): clients recorded
/// by address are notified at once whatever DNS does. Returns the report and the names that
/// did not resolve in time.
pub fn notify_ip(
    store: &dyn Store,
    ip: IpAddr,
    nfs_hostname: &str,
    total: Duration,
) -> Result<(Report, Vec<String>), StatdError> {
    let start = std::time::Instant::now();
    let clients = clients_of(store, &ip)?;
    let all: Vec<String> = clients.iter().map(|(n, _)| n.clone()).collect();
    let out = notify_clients(store, ip, &all, nfs_hostname, total, start)?;
    // Notified: drop what statd had unmonitored, unless it monitored the client again
    // while the notification ran.
    for (name, monitored) in clients {
        if monitored {
            continue;
        }
        let key = statd_key(&ServerIp::Ip(ip), &name);
        if let Err(e) = store.delete_if(&key, &|v| v == UNMONITORED) {
            log::warn!("NSM: cannot drop unmonitored {key}: {e}");
        }
    }
    Ok(out)
}

/// Notifies the NLM clients `clients` from `ip` (as notify_ip, for the clients given);
/// `start` is when the run's time bound `total` began.
pub fn notify_clients(
    store: &dyn Store,
    ip: IpAddr,
    clients: &[String],
    nfs_hostname: &str,
    total: Duration,
    start: std::time::Instant,
) -> Result<(Report, Vec<String>), StatdError> {
    let mut addrs = Vec::new();
    let mut names = Vec::new();
    for name in clients {
        match literal(name) {
            Some(a) => addrs.push(a),
            None => names.push(name.clone()),
        }
    }
    let state = next_state(store, &ip)?;
    let mut announce = vec![ip.to_string()];
    if !nfs_hostname.is_empty() && nfs_hostname != announce[0] {
        announce.push(nfs_hostname.to_string());
    }
    let plan = NotifyPlan {
        source: ip,
        names: announce,
        state,
        pmap_port: 111,
        first_retry: Duration::from_millis(500),
        in_flight: nsm::DEFAULT_IN_FLIGHT,
        total,
    };
    let (found, late) = std::sync::mpsc::channel();
    let outstanding = resolve_in_background(names, nsm::canonical(ip).is_ipv4(), found);
    let report = nsm::notify_with(&plan, &addrs, Some(late), start).map_err(StatdError::Io)?;
    let unresolved: Vec<String> = outstanding
        .lock()
        .map(|o| o.iter().cloned().collect())
        .unwrap_or_default();
    Ok((report, unresolved))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    #[test]
    fn names_from_the_network_are_kept_or_refused_clearly() {
        let s = MemoryStore::default();
        let ips = vec![
            ServerIp::Ip("10.0.0.1".parse().unwrap()),
            ServerIp::Ip("fd00::1".parse().unwrap()),
        ];
        for name in [
            "host-a.example",
            "10.1.2.3",
            "fe80::1%eth0",
            "a b;$(rm -rf /)",
            &"x".repeat(1024),
        ] {
            add_client(&s, &ips, name).unwrap();
            assert!(
                s.get(&statd_key(&ips[1], name)).unwrap().is_some(),
                "{name}"
            );
        }
        for bad in ["", "two\nlines", &"x".repeat(1025)] {
            let e = add_client(&s, &ips, bad).unwrap_err().to_string();
            assert!(!e.is_empty());
        }
        assert_eq!(
            clients_of(&s, &"10.0.0.1".parse().unwrap()).unwrap().len(),
            5
        );
    }

    #[test]
    fn del_client_keeps_the_record_for_the_next_notification() {
        let s = MemoryStore::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let ips = vec![ServerIp::Ip(ip)];
        add_client(&s, &ips, "a").unwrap();
        add_client(&s, &ips, "b").unwrap();
        del_client(&s, &ips, "a").unwrap();
        del_client(&s, &ips, "never-added").unwrap();
        let mut c = clients_of(&s, &ip).unwrap();
        c.sort();
        assert_eq!(c, vec![("a".to_string(), false), ("b".to_string(), true)]);
    }

    #[test]
    fn a_release_names_its_hosts_under_each_other_held_ip() {
        let s = MemoryStore::default();
        let x: IpAddr = "10.0.0.1".parse().unwrap();
        let y: IpAddr = "10.0.0.2".parse().unwrap();
        let z: IpAddr = "10.0.0.3".parse().unwrap();
        let w: IpAddr = "fd00::4".parse().unwrap();
        // The node held X and Y when h1 and 10.9.9.9 locked, and Y alone when "y-only"
        // did; "far" is recorded on another node's IP Z only.
        add_client(&s, &[ServerIp::Ip(x), ServerIp::Ip(y)], "h1").unwrap();
        add_client(&s, &[ServerIp::Ip(x), ServerIp::Ip(y)], "10.9.9.9").unwrap();
        add_client(&s, &[ServerIp::Ip(y)], "y-only").unwrap();
        add_client(&s, &[ServerIp::Ip(z)], "far").unwrap();
        // Unmonitored (statd already saw the host go) is still a host to tell.
        del_client(&s, &[ServerIp::Ip(x), ServerIp::Ip(y)], "h1").unwrap();
        let c = collateral(&s, x, &[x, y, w]).unwrap();
        assert_eq!(
            c,
            BTreeMap::from([(y, vec!["10.9.9.9".to_string(), "h1".to_string()])])
        );
        // Nobody recorded for the released IP: nothing to do.
        assert!(collateral(&s, w, &[x, y, w]).unwrap().is_empty());
        // The released IP itself is never a source.
        assert!(collateral(&s, x, &[x]).unwrap().is_empty());
    }

    #[test]
    fn states_are_odd_increasing_and_stored_first() {
        let s = MemoryStore::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(next_state(&s, &ip).unwrap(), 1);
        assert_eq!(next_state(&s, &ip).unwrap(), 3);
        s.put(&nsm_state_key(&ip), b"v1 state=10").unwrap();
        assert_eq!(next_state(&s, &ip).unwrap(), 11);
        s.put(&nsm_state_key(&ip), b"garbage").unwrap();
        assert!(next_state(&s, &ip).unwrap() > 11);
    }

    #[test]
    fn notify_sends_from_the_ip_and_drops_unmonitored_records() {
        // No client listens on 127.0.0.2: the report says so, within the bound.
        let s = MemoryStore::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let ips = vec![ServerIp::Ip(ip)];
        add_client(&s, &ips, "127.0.0.2").unwrap();
        // Literal addresses only: a host name would send a DNS query off this machine.
        add_client(&s, &ips, "127.0.0.3").unwrap();
        del_client(&s, &ips, "127.0.0.3").unwrap();
        let (report, unresolved) =
            notify_ip(&s, ip, "nfs.example", Duration::from_millis(300)).unwrap();
        let mut silent = report.unanswered();
        silent.sort();
        assert_eq!(
            silent,
            vec![
                "127.0.0.2".parse::<IpAddr>().unwrap(),
                "127.0.0.3".parse().unwrap()
            ]
        );
        assert!(unresolved.is_empty());
        assert_eq!(
            clients_of(&s, &ip).unwrap(),
            vec![("127.0.0.2".to_string(), true)]
        );
    }

    #[test]
    fn a_client_monitored_again_during_the_notification_is_kept() {
        let s = MemoryStore::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let ips = vec![ServerIp::Ip(ip)];
        add_client(&s, &ips, "127.0.0.3").unwrap();
        del_client(&s, &ips, "127.0.0.3").unwrap();
        std::thread::scope(|t| {
            // Nobody answers on 127.0.0.3, so the run lasts its whole 600 ms bound; statd
            // monitors the client again in the middle of it.
            t.spawn(|| {
                std::thread::sleep(Duration::from_millis(200));
                add_client(&s, &ips, "127.0.0.3").unwrap();
            });
            notify_ip(&s, ip, "nfs.example", Duration::from_millis(600)).unwrap();
        });
        assert_eq!(
            clients_of(&s, &ip).unwrap(),
            vec![("127.0.0.3".to_string(), true)]
        );
    }
}
