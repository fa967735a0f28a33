//! The NSM sender (design §6): after a takeover of public IP X, tell X's NFSv3/NLM clients
//! that "the server" rebooted, so that they reclaim their locks through X.
//!
//! For each client: portmapper GETPORT (100000 v2 proc 3) for its statd (100024 v1 UDP),
//! then SM_NOTIFY (proc 6) twice, with mon_name = X and with the configured NFS host name,
//! all from source address X over one UDP socket, many clients in flight, each request
//! retransmitted with doubling intervals, the whole run bounded in time. The state number is
//! odd ("up") and strictly greater than any sent before for X: the caller keeps it in the
//! store (`nsm-state@<ip>`), never derived from clocks.

use oncrpc::pmap::{
    getaddr_args, getport_args, uaddr_port, IPPROTO_UDP, RPCBPROC_GETADDR, RPCB_VERS4, UADDR_MAX,
};
pub use oncrpc::pmap::{PMAPPROC_GETPORT, PMAP_PROG, PMAP_VERS};
use oncrpc::rpc::{encode_call, parse_reply, reply_xid, Auth, CallHeader};
use oncrpc::{XdrReader, XdrWriter};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

pub const SM_PROG: u32 = 100024;
pub const SM_VERS: u32 = 1;
pub const SM_NOTIFY: u32 = 6;
/// SM_MAXSTRLEN.
pub const SM_MAXSTRLEN: usize = 1024;

/// The next NSM state after `previous`: odd and strictly greater.
pub fn next_state(previous: u32) -> u32 {
    let next = previous.saturating_add(1);
    if next % 2 == 1 {
        next
    } else {
        next.saturating_add(1)
    }
}

pub fn encode_sm_notify(mon_name: &str, state: u32) -> Vec<u8> {
    let mut w = XdrWriter::new();
    w.string(mon_name).u32(state);
    w.into_bytes()
}

#[derive(Clone, Debug)]
pub struct NotifyPlan {
    /// Source address: the public IP that moved.
    pub source: IpAddr,
    /// The names to announce: the IP itself and the NFS host name.
    pub names: Vec<String>,
    pub state: u32,
    /// Portmapper port on each client (111; tests use a responder elsewhere).
    pub pmap_port: u16,
    pub first_retry: Duration,
    pub total: Duration,
    /// How many requests may await their first answer at once. Sending every client's
    /// GETPORT in one burst overflows the receive buffers (ours and the network's) and turns
    /// into seconds of retransmission; a request that is being retransmitted leaves the
    /// window, so silent clients never hold up the others.
    pub in_flight: usize,
}

/// The admission window the callers use; see `NotifyPlan::in_flight`.
pub const DEFAULT_IN_FLIGHT: usize = 256;
/// Asked of the kernel for the sender's socket (best effort: capped by net.core.rmem_max).
const RECEIVE_BUFFER: usize = 1 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Notified,
    /// The client's portmapper answered that statd is not registered.
    NoStatd,
    /// No answer within the run's time bound; `stage` says what was outstanding.
    NoAnswer {
        stage: String,
    },
    Failed(String),
    /// Recorded by an address of the other family than the sending public address (statd
    /// cannot tell which IP a client used, so an IPv4 client is recorded under the node's
    /// IPv6 addresses too): not sent to.
    OtherFamily,
}

#[derive(Clone, Debug)]
pub struct Report {
    pub outcomes: Vec<(IpAddr, Outcome)>,
    pub elapsed: Duration,
    pub sent: usize,
    /// Replies that did not come from the address their request went to (or answered no
    /// request of ours): ignored, and counted here.
    pub ignored: usize,
}

impl Report {
    pub fn unanswered(&self) -> Vec<IpAddr> {
        self.outcomes
            .iter()
            .filter(|(_, o)| !matches!(o, Outcome::Notified | Outcome::OtherFamily))
            .map(|(a, _)| *a)
            .collect()
    }

    /// Clients that acknowledged SM_NOTIFY.
    pub fn notified(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|(_, o)| *o == Outcome::Notified)
            .count()
    }

    /// Clients of the other address family, not sent to.
    pub fn other_family(&self) -> Vec<IpAddr> {
        self.outcomes
            .iter()
            .filter(|(_, o)| *o == Outcome::OtherFamily)
            .map(|(a, _)| *a)
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Stage {
    /// Asking the client's portmapper for statd's UDP port (IPv4).
    GetPort,
    /// Asking the client's rpcbind (version 4) for statd's udp6 address: version 2 would
    /// answer with the port of statd's IPv4 socket (crates/oncrpc/src/pmap.rs).
    GetAddr,
    Notify {
        port: u16,
        name: usize,
    },
    Done(Outcome),
}

struct Pending {
    client: usize,
    msg: Vec<u8>,
    to: SocketAddr,
    interval: Duration,
    sends: u32,
}

impl Pending {
    /// Not retransmitted yet: counts against the admission window until answered.
    fn in_window(&self) -> bool {
        self.sends <= 1
    }
}

/// Notifies every client in `clients`; returns who answered and who did not.
pub fn notify(plan: &NotifyPlan, clients: &[IpAddr]) -> io::Result<Report> {
    notify_with(plan, clients, None, Instant::now())
}

/// An xid no request in flight has: unpredictable, so that a peer that sees its own
/// request cannot guess another client's and answer for it.
fn fresh_xid(pending: &HashMap<u32, Pending>) -> u32 {
    loop {
        let xid = getrandom::u32().unwrap_or_else(|_| oncrpc::rpc::next_xid());
        if !pending.contains_key(&xid) {
            return xid;
        }
    }
}

/// As `notify`, with more clients arriving on `late` while it runs (names being resolved:
/// a slow one holds up nobody) until the sender hangs up; the run ends `plan.total` after
/// `start`, and the report's duration counts from there.
pub fn notify_with(
    plan: &NotifyPlan,
    clients: &[IpAddr],
    late: Option<std::sync::mpsc::Receiver<IpAddr>>,
    start: Instant,
) -> io::Result<Report> {
    let mut clients: Vec<IpAddr> = clients.iter().map(|ip| canonical(*ip)).collect();
    let mut known: HashSet<IpAddr> = clients.iter().copied().collect();
    let source = canonical(plan.source);
    let reachable = |ip: &IpAddr| ip.is_ipv4() == source.is_ipv4();
    let mut late = late;
    let socket = UdpSocket::bind(SocketAddr::new(source, 0))?;
    socket.set_read_timeout(Some(Duration::from_millis(5)))?;
    let _ =
        nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::RcvBuf, &RECEIVE_BUFFER);
    let auth = Auth::None;
    let window = plan.in_flight.max(1);
    let first_stage = |ip: &IpAddr| {
        if !reachable(ip) {
            Stage::Done(Outcome::OtherFamily)
        } else if ip.is_ipv6() {
            Stage::GetAddr
        } else {
            Stage::GetPort
        }
    };
    let mut stages: Vec<Stage> = clients.iter().map(first_stage).collect();
    let mut ignored = 0usize;
    let mut pending: HashMap<u32, Pending> = HashMap::new();
    // Send times, earliest first: each loop looks only at what is due, so thousands of
    // requests in flight cost nothing while they wait.
    let mut due: BinaryHeap<Reverse<(Instant, u32)>> = BinaryHeap::new();
    let mut sent = 0usize;
    // Clients [0, admitted) have had their first request queued.
    let mut admitted = 0usize;
    // Pending requests `in_window()`.
    let mut fresh = 0usize;
    let queue = |pending: &mut HashMap<u32, Pending>,
                 due: &mut BinaryHeap<Reverse<(Instant, u32)>>,
                 client: usize,
                 to: SocketAddr,
                 prog: u32,
                 vers: u32,
                 proc_: u32,
                 args: &[u8]| {
        let xid = fresh_xid(pending);
        let msg = encode_call(
            &CallHeader {
                xid,
                prog,
                vers,
                proc_,
            },
            &auth,
            args,
        );
        // One heap entry per pending request: popped when due, pushed again when sent.
        due.push(Reverse((Instant::now(), xid)));
        pending.insert(
            xid,
            Pending {
                client,
                msg,
                to,
                interval: plan.first_retry,
                sends: 0,
            },
        );
    };
    let getport = getport_args(SM_PROG, SM_VERS, IPPROTO_UDP);
    let getaddr = getaddr_args(SM_PROG, SM_VERS, "udp6");
    let deadline = start + plan.total;
    let mut buf = vec![0u8; 65536];
    loop {
        if let Some(rx) = &late {
            loop {
                match rx.try_recv() {
                    Ok(ip) => {
                        let ip = canonical(ip);
                        if known.insert(ip) {
                            stages.push(first_stage(&ip));
                            clients.push(ip);
                        }
                    }
                    Err(std::sync::mpsc::TryRecvError::Empty) => break,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                        late = None;
                        break;
                    }
                }
            }
        }
        let busy = admitted < clients.len() || !pending.is_empty() || late.is_some();
        if !busy || Instant::now() >= deadline {
            break;
        }
        while fresh < window && admitted < clients.len() {
            let (vers, proc_, args) = match stages[admitted] {
                Stage::GetPort => (PMAP_VERS, PMAPPROC_GETPORT, &getport),
                Stage::GetAddr => (RPCB_VERS4, RPCBPROC_GETADDR, &getaddr),
                _ => {
                    admitted += 1; // another address family: nothing to send
                    continue;
                }
            };
            let to = SocketAddr::new(clients[admitted], plan.pmap_port);
            queue(
                &mut pending,
                &mut due,
                admitted,
                to,
                PMAP_PROG,
                vers,
                proc_,
                args,
            );
            fresh += 1;
            admitted += 1;
        }
        let now = Instant::now();
        while let Some(Reverse((at, xid))) = due.peek().copied() {
            if at > now {
                break;
            }
            due.pop();
            let Some(p) = pending.get_mut(&xid) else {
                continue; // answered meanwhile
            };
            // A send error (no route yet) is retried like a lost datagram.
            let _ = socket.send_to(&p.msg, p.to);
            sent += 1;
            let was_in_window = p.in_window();
            p.sends += 1;
            if was_in_window && !p.in_window() {
                fresh -= 1; // now a retransmission: out of the window
            }
            due.push(Reverse((now + p.interval, xid)));
            p.interval = (p.interval * 2).min(Duration::from_secs(4));
        }
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            // ICMP port unreachable surfaces as ConnectionRefused on Linux: keep waiting
            // for the others; the retransmission covers a client that comes up.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
            Err(e) => return Err(e),
        };
        let msg = &buf[..n];
        let Some(xid) = answered_request(&pending, msg, from) else {
            ignored += 1;
            continue;
        };
        let Some(p) = pending.remove(&xid) else {
            continue;
        };
        if p.in_window() {
            fresh -= 1;
        }
        let client = p.client;
        let next = next_stage(&stages[client], msg, xid, plan.names.len());
        if let Stage::Notify { port, name } = next {
            // An admitted client goes on regardless of the window: it holds its place.
            let args = encode_sm_notify(&plan.names[name], plan.state);
            let to = SocketAddr::new(clients[client], port);
            queue(
                &mut pending,
                &mut due,
                client,
                to,
                SM_PROG,
                SM_VERS,
                SM_NOTIFY,
                &args,
            );
            fresh += 1;
        }
        stages[client] = next;
    }
    let outcomes = clients
        .iter()
        .zip(stages)
        .enumerate()
        .map(|(i, (ip, st))| {
            let o = match st {
                Stage::Done(o) => o,
                Stage::GetPort | Stage::GetAddr if i >= admitted => Outcome::NoAnswer {
                    stage: "not asked: the time bound ran out first".into(),
                },
                Stage::GetPort => Outcome::NoAnswer {
                    stage: "portmapper GETPORT".into(),
                },
                Stage::GetAddr => Outcome::NoAnswer {
                    stage: "rpcbind GETADDR".into(),
                },
                Stage::Notify { name, .. } => Outcome::NoAnswer {
                    stage: format!(
                        "SM_NOTIFY {:?}",
                        plan.names.get(name).cloned().unwrap_or_default()
                    ),
                },
            };
            (*ip, o)
        })
        .collect();
    Ok(Report {
        outcomes,
        elapsed: start.elapsed(),
        sent,
        ignored,
    })
}

/// The request of ours a datagram from `from` answers, if any: its xid must be one we are
/// waiting for, and it must come from the address that request went to (another host,
/// another NFS client say, must not answer for a client and mark it as having no statd).
fn answered_request(pending: &HashMap<u32, Pending>, msg: &[u8], from: SocketAddr) -> Option<u32> {
    let xid = reply_xid(msg).ok()?;
    pending
        .get(&xid)
        .is_some_and(|p| same_endpoint(p.to, from))
        .then_some(xid)
}

/// Where a client goes after the reply `msg` to its request `xid` in `stage`: GETPORT's
/// result is one unsigned int (RFC 1833; what follows it is not read), 0 meaning statd is
/// not registered; GETADDR's a universal address, empty meaning not registered;
/// SM_NOTIFY's result (void) is not read. A reply that is not an accepted
/// success, or a port that is not one, ends the client as Failed, saying why.
fn next_stage(stage: &Stage, msg: &[u8], xid: u32, names: usize) -> Stage {
    match (stage, parse_reply(msg, xid)) {
        (Stage::GetPort, Ok(body)) => match XdrReader::new(body).u32("port") {
            Ok(0) => Stage::Done(Outcome::NoStatd),
            Ok(port) => match u16::try_from(port) {
                Ok(port) => Stage::Notify { port, name: 0 },
                Err(_) => Stage::Done(Outcome::Failed(format!("portmapper returned port {port}"))),
            },
            Err(e) => Stage::Done(Outcome::Failed(format!("GETPORT reply: {e}"))),
        },
        (Stage::GetAddr, Ok(body)) => match XdrReader::new(body).string(UADDR_MAX, "uaddr") {
            Ok(uaddr) if uaddr.is_empty() => Stage::Done(Outcome::NoStatd),
            Ok(uaddr) => match uaddr_port(&uaddr) {
                Some(port) if port != 0 => Stage::Notify { port, name: 0 },
                _ => Stage::Done(Outcome::Failed(format!(
                    "rpcbind returned address {uaddr:?}"
                ))),
            },
            Err(e) => Stage::Done(Outcome::Failed(format!("GETADDR reply: {e}"))),
        },
        (Stage::Notify { port, name }, Ok(_)) if name + 1 < names => Stage::Notify {
            port: *port,
            name: name + 1,
        },
        (Stage::Notify { .. }, Ok(_)) => Stage::Done(Outcome::Notified),
        (_, Err(e)) => Stage::Done(Outcome::Failed(e.to_string())),
        (Stage::Done(o), Ok(_)) => Stage::Done(o.clone()),
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, how a dual-stack socket shows an IPv4
/// peer) as the IPv4 address it is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The same address and port, an IPv4-mapped IPv6 address being the IPv4 one.
fn same_endpoint(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && canonical(a.ip()) == canonical(b.ip())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oncrpc::XdrReader;

    #[test]
    fn state_numbers_are_odd_and_grow() {
        assert_eq!(next_state(0), 1);
        assert_eq!(next_state(1), 3);
        assert_eq!(next_state(2), 3);
        assert_eq!(next_state(7), 9);
        assert_eq!(next_state(u32::MAX - 1), u32::MAX);
    }

    #[test]
    fn sm_notify_args_are_xdr_stat_chge() {
        let b = encode_sm_notify("10.0.0.5", 9);
        let mut r = XdrReader::new(&b);
        assert_eq!(r.string(SM_MAXSTRLEN, "mon_name").unwrap(), "10.0.0.5");
        assert_eq!(r.u32("state").unwrap(), 9);
        assert_eq!(r.remaining(), 0);
    }

    /// What a test responder received: the program called and, for SM_NOTIFY, its args.
    struct Seen {
        prog: u32,
        vers: u32,
        notify: Option<(String, u32)>,
    }

    /// A responder standing in for a client's rpcbind and statd on a loopback port: answers
    /// GETPORT with its own port (or 0 when not `register`), acknowledges SM_NOTIFY, ignores
    /// the first `drop_first` datagrams, and reports every request it answers, in order.
    fn responder(register: bool, drop_first: usize) -> (u16, std::sync::mpsc::Receiver<Seen>) {
        responder_on("127.0.0.1:0", register, drop_first)
    }

    fn responder_on(
        bind: &str,
        register: bool,
        drop_first: usize,
    ) -> (u16, std::sync::mpsc::Receiver<Seen>) {
        let sock = UdpSocket::bind(bind).unwrap();
        let port = sock.local_addr().unwrap().port();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut dropped = 0;
            sock.set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                if dropped < drop_first {
                    dropped += 1;
                    continue;
                }
                let mut r = XdrReader::new(&buf[..n]);
                let xid = r.u32("xid").unwrap();
                let words: Vec<u32> = (0..5).map(|_| r.u32("w").unwrap()).collect();
                let (prog, vers, proc_) = (words[2], words[3], words[4]);
                for _ in 0..2 {
                    r.u32("flavor").unwrap();
                    r.opaque(400, "auth").unwrap();
                }
                let mut w = XdrWriter::new();
                w.u32(xid).u32(1).u32(0).u32(0).opaque(&[]).u32(0);
                let mut notify = None;
                if prog == PMAP_PROG && vers == PMAP_VERS && proc_ == PMAPPROC_GETPORT {
                    w.u32(if register { u32::from(port) } else { 0 });
                } else if prog == PMAP_PROG && vers == RPCB_VERS4 && proc_ == RPCBPROC_GETADDR {
                    // As rpcbind answers: its wildcard address and the port's two bytes.
                    w.string(&if register {
                        format!("::.{}.{}", port >> 8, port & 0xff)
                    } else {
                        String::new()
                    });
                } else if prog == SM_PROG && proc_ == SM_NOTIFY {
                    let name = r.string(SM_MAXSTRLEN, "mon_name").unwrap();
                    notify = Some((name, r.u32("state").unwrap()));
                }
                let _ = tx.send(Seen { prog, vers, notify });
                let _ = sock.send_to(w.as_bytes(), from);
            }
        });
        (port, rx)
    }

    fn plan(port: u16) -> NotifyPlan {
        NotifyPlan {
            source: "127.0.0.1".parse().unwrap(),
            names: vec!["10.77.1.1".into(), "nfs.example".into()],
            state: 5,
            pmap_port: port,
            first_retry: Duration::from_millis(50),
            total: Duration::from_secs(3),
            in_flight: DEFAULT_IN_FLIGHT,
        }
    }

    /// From an IPv6 public address: an IPv6 client is notified over IPv6; an IPv4 client
    /// (recorded under every IP of its node, IPv6 ones too) is set aside without a send,
    /// not reported as silent; an IPv4-mapped address counts as the IPv4 one.
    #[test]
    fn an_ipv6_source_notifies_ipv6_clients_and_sets_ipv4_ones_aside() {
        let (port, rx) = responder_on("[::1]:0", true, 0);
        let p = NotifyPlan {
            source: "::1".parse().unwrap(),
            ..plan(port)
        };
        let clients: Vec<IpAddr> = ["::1", "127.0.0.1", "::ffff:127.0.0.2"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let report = notify(&p, &clients).unwrap();
        assert_eq!(
            report.outcomes,
            vec![
                ("::1".parse().unwrap(), Outcome::Notified),
                ("127.0.0.1".parse().unwrap(), Outcome::OtherFamily),
                ("127.0.0.2".parse().unwrap(), Outcome::OtherFamily),
            ]
        );
        assert!(report.unanswered().is_empty(), "{report:?}");
        assert_eq!(report.other_family().len(), 2);
        let seen: Vec<Seen> = rx.try_iter().collect();
        // statd's IPv6 port comes from rpcbind version 4, never from version 2's GETPORT
        // (which names statd's IPv4 socket).
        assert!(
            seen.iter()
                .any(|s| s.prog == PMAP_PROG && s.vers == RPCB_VERS4),
            "GETADDR asked"
        );
        assert!(!seen
            .iter()
            .any(|s| s.prog == PMAP_PROG && s.vers == PMAP_VERS));
        let got: Vec<(String, u32)> = seen.into_iter().filter_map(|s| s.notify).collect();
        assert!(got.contains(&("10.77.1.1".into(), 5)), "{got:?}");
    }

    #[test]
    fn notifies_with_both_names_and_survives_lost_datagrams() {
        let (port, rx) = responder(true, 2);
        let report = notify(&plan(port), &["127.0.0.1".parse().unwrap()]).unwrap();
        assert_eq!(report.outcomes[0].1, Outcome::Notified, "{report:?}");
        let got: Vec<(String, u32)> = rx.try_iter().filter_map(|s| s.notify).collect();
        assert!(got.contains(&("10.77.1.1".into(), 5)), "{got:?}");
        assert!(got.contains(&("nfs.example".into(), 5)), "{got:?}");
        assert!(
            report.sent > 3,
            "lost datagrams were retransmitted: {report:?}"
        );
    }

    #[test]
    fn reports_unregistered_statd_and_silent_clients_within_the_bound() {
        let (port, _rx) = responder(false, 0);
        let report = notify(&plan(port), &["127.0.0.1".parse().unwrap()]).unwrap();
        assert_eq!(report.outcomes[0].1, Outcome::NoStatd);
        // Nobody listens on the port: no answer, reported, within the time bound.
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = silent.local_addr().unwrap().port();
        drop(silent);
        let mut pl = plan(p);
        pl.total = Duration::from_millis(600);
        let report = notify(&pl, &["127.0.0.1".parse().unwrap()]).unwrap();
        assert!(
            matches!(report.outcomes[0].1, Outcome::NoAnswer { .. }),
            "{report:?}"
        );
        assert!(report.elapsed < Duration::from_secs(2));
        assert_eq!(report.unanswered().len(), 1);
    }

    #[test]
    fn the_window_bounds_requests_awaiting_their_first_answer() {
        let (port, rx) = responder(true, 0);
        let mut pl = plan(port);
        pl.in_flight = 1;
        let one: IpAddr = "127.0.0.1".parse().unwrap();
        let report = notify(&pl, &[one, one, one]).unwrap();
        assert!(report.unanswered().is_empty(), "{report:?}");
        // One request at a time: each client is done before the next is asked.
        let (g, n) = (PMAP_PROG, SM_PROG);
        let order: Vec<u32> = rx.try_iter().map(|s| s.prog).collect();
        assert_eq!(order, vec![g, n, n, g, n, n, g, n, n]);
        // A wide window asks every client at once.
        pl.in_flight = DEFAULT_IN_FLIGHT;
        let (port, rx) = responder(true, 0);
        pl.pmap_port = port;
        let report = notify(&pl, &[one, one, one]).unwrap();
        assert!(report.unanswered().is_empty(), "{report:?}");
        let order: Vec<u32> = rx.try_iter().map(|s| s.prog).collect();
        assert_eq!(&order[..3], &[g, g, g], "{order:?}");
    }

    #[test]
    fn a_silent_client_does_not_hold_up_the_next() {
        let (port, _rx) = responder(true, 0);
        // Same port on another loopback address, never answering.
        let mute = UdpSocket::bind(("127.0.0.2", port)).unwrap();
        mute.set_nonblocking(true).unwrap();
        let mut pl = plan(port);
        pl.in_flight = 1;
        pl.total = Duration::from_secs(2);
        let silent: IpAddr = "127.0.0.2".parse().unwrap();
        let live: IpAddr = "127.0.0.1".parse().unwrap();
        let report = notify(&pl, &[silent, live]).unwrap();
        assert_eq!(report.outcomes[1].1, Outcome::Notified, "{report:?}");
        assert_eq!(
            report.outcomes[0].1,
            Outcome::NoAnswer {
                stage: "portmapper GETPORT".into()
            }
        );
        let mut buf = [0u8; 512];
        let mut got = 0;
        while mute.recv_from(&mut buf).is_ok() {
            got += 1;
        }
        assert!(got > 2, "the silent client was retried ({got} datagrams)");
    }

    /// Another client (here 127.0.0.3, itself being notified) answers the GETPORTs it can
    /// guess with "port 0" for every xid near its own: the victim is still notified, and the
    /// forged replies are counted as ignored. The victim's statd loses its first datagram,
    /// so its request is still open (retransmitted after 0.5 s) when the forgeries arrive;
    /// answered at once, the run could end before they do.
    #[test]
    fn a_hostile_peer_cannot_answer_for_another_client() {
        let (port, _rx) = responder(true, 1);
        let hostile = UdpSocket::bind(("127.0.0.3", port)).unwrap();
        hostile
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let attacker = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut forged = 0;
            while let Ok((n, from)) = hostile.recv_from(&mut buf) {
                let seen = u32::from_be_bytes(buf[..4].try_into().unwrap());
                let _ = n;
                for delta in 0..64u32 {
                    for xid in [seen.wrapping_add(delta), seen.wrapping_sub(delta)] {
                        let mut w = XdrWriter::new();
                        w.u32(xid).u32(1).u32(0).u32(0).opaque(&[]).u32(0).u32(0);
                        let _ = hostile.send_to(w.as_bytes(), from);
                        forged += 1;
                    }
                }
            }
            forged
        });
        let mut pl = plan(port);
        pl.total = Duration::from_secs(4);
        let victim: IpAddr = "127.0.0.1".parse().unwrap();
        let evil: IpAddr = "127.0.0.3".parse().unwrap();
        let report = notify(&pl, &[evil, victim]).unwrap();
        assert_eq!(
            report.outcomes[1],
            (victim, Outcome::Notified),
            "{report:?}"
        );
        let forged = attacker.join().unwrap();
        assert!(
            forged > 0 && report.ignored > 0,
            "{forged} forged, {report:?}"
        );
    }

    #[test]
    fn clients_arriving_late_are_notified_and_a_hung_one_holds_up_nobody() {
        let (port, _rx) = responder(true, 0);
        let mut pl = plan(port);
        pl.total = Duration::from_secs(2);
        let (tx, rx) = std::sync::mpsc::channel();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            tx.send("127.0.0.1".parse::<IpAddr>().unwrap()).unwrap();
            // A name that never resolves: the sender stays open past the time bound.
            std::thread::sleep(Duration::from_secs(4));
            drop(tx);
        });
        let start = Instant::now();
        let report = notify_with(&pl, &[], Some(rx), start).unwrap();
        assert_eq!(report.outcomes.len(), 1);
        assert_eq!(report.outcomes[0].1, Outcome::Notified);
        assert!(
            report.elapsed >= Duration::from_secs(2) && report.elapsed < Duration::from_secs(3),
            "bounded by the plan, not the hung resolution: {:?}",
            report.elapsed
        );
        let _ = sender;
    }

    #[test]
    fn garbage_replies_never_panic() {
        // Every truncation of a valid GETPORT reply is rejected by the decoder.
        let mut w = XdrWriter::new();
        w.u32(7).u32(1).u32(0).u32(0).opaque(&[]).u32(0).u32(1234);
        let full = w.into_bytes();
        for cut in 0..full.len() {
            let r = parse_reply(&full[..cut], 7)
                .ok()
                .map(|b| XdrReader::new(b).u32("port").is_ok());
            assert_ne!(r, Some(true), "cut {cut}");
        }
    }
}

/// Property-based fuzzing of the reply path (issue 15; docs/fuzzing.md): which datagram
/// answers which request (xid and source checks), and what a GETPORT or SM_NOTIFY reply
/// does to its client, against replies written out by hand from RFC 5531 and RFC 1833:
/// round trips, every truncation, mutations, arbitrary datagrams. 512 cases per property;
/// PROPTEST_CASES=N for a long run.
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::fuzzing::{config, peak_bytes};
    use proptest::prelude::*;
    use proptest::sample::Index;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[derive(Debug, Clone)]
    enum Answer {
        /// Accepted, SUCCESS, with these result bytes (GETPORT: the port word first).
        Success(Vec<u8>),
        /// Accepted with another accept_stat (1..=5, with PROG_MISMATCH's two words).
        NotAccepted(u32),
        /// MSG_DENIED: RPC_MISMATCH or AUTH_ERROR.
        Denied(u32),
    }

    fn word(v: u32) -> Vec<u8> {
        v.to_be_bytes().to_vec()
    }

    /// RFC 5531 by hand; also how long the header before the results is.
    fn reply(xid: u32, verf: &[u8], a: &Answer) -> (Vec<u8>, usize) {
        let mut m = [word(xid), word(1)].concat();
        match a {
            Answer::Success(_) | Answer::NotAccepted(_) => {
                m.extend(word(0)); // MSG_ACCEPTED
                m.extend(word(1)); // AUTH_SYS verifier flavour: any is taken
                m.extend(word(verf.len() as u32));
                m.extend_from_slice(verf);
                m.resize(m.len().div_ceil(4) * 4, 0);
                match a {
                    Answer::NotAccepted(stat) => {
                        m.extend(word(*stat));
                        if *stat == 2 {
                            m.extend([word(1), word(1)].concat());
                        }
                    }
                    Answer::Success(results) => {
                        m.extend(word(0));
                        let header = m.len();
                        m.extend_from_slice(results);
                        return (m, header);
                    }
                    Answer::Denied(_) => unreachable!(),
                }
            }
            Answer::Denied(stat) => {
                m.extend([word(1), word(*stat), word(5), word(6)].concat());
            }
        }
        let len = m.len();
        (m, len)
    }

    fn answer() -> impl Strategy<Value = Answer> {
        let port = prop_oneof![
            Just(0u32),
            1u32..=65535,
            Just(65536u32),
            Just(u32::MAX),
            any::<u32>()
        ];
        prop_oneof![
            4 => (port, prop::collection::vec(any::<u8>(), 0..8))
                .prop_map(|(p, rest)| Answer::Success([word(p), rest].concat())),
            1 => prop::collection::vec(any::<u8>(), 0..4).prop_map(Answer::Success),
            1 => (1u32..=5).prop_map(Answer::NotAccepted),
            1 => (0u32..=1).prop_map(Answer::Denied),
        ]
    }

    fn stage(names: usize) -> impl Strategy<Value = Stage> {
        prop_oneof![
            Just(Stage::GetPort),
            Just(Stage::GetAddr),
            (any::<u16>(), 0..names).prop_map(|(port, name)| Stage::Notify { port, name }),
            Just(Stage::Done(Outcome::NoStatd)),
        ]
    }

    /// What RFC 1833 and the sender's stages say a reply means, read independently.
    fn expected(stage: &Stage, a: &Answer, names: usize) -> Stage {
        let failed = Stage::Done(Outcome::Failed(String::new()));
        match (stage, a) {
            (Stage::GetPort, Answer::Success(r)) if r.len() >= 4 => {
                match u32::from_be_bytes([r[0], r[1], r[2], r[3]]) {
                    0 => Stage::Done(Outcome::NoStatd),
                    p if p <= 65535 => Stage::Notify {
                        port: p as u16,
                        name: 0,
                    },
                    _ => failed,
                }
            }
            (Stage::GetPort, _) => failed,
            (Stage::GetAddr, Answer::Success(r)) => expected_getaddr(r),
            (Stage::GetAddr, _) => failed,
            (Stage::Notify { port, name }, Answer::Success(_)) => {
                if name + 1 < names {
                    Stage::Notify {
                        port: *port,
                        name: name + 1,
                    }
                } else {
                    Stage::Done(Outcome::Notified)
                }
            }
            (Stage::Done(o), Answer::Success(_)) => Stage::Done(o.clone()),
            (_, _) => failed,
        }
    }

    /// A GETADDR result read by hand: an XDR string (length, bytes, padding to 4) holding
    /// "<host>.<port high>.<port low>"; empty is "no statd".
    fn expected_getaddr(r: &[u8]) -> Stage {
        let failed = Stage::Done(Outcome::Failed(String::new()));
        let Some(len) = r
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        else {
            return failed;
        };
        if len > UADDR_MAX || r.len() < 4 + len.div_ceil(4) * 4 {
            return failed;
        }
        let text = String::from_utf8_lossy(&r[4..4 + len]);
        if text.is_empty() {
            return Stage::Done(Outcome::NoStatd);
        }
        let f: Vec<&str> = text.rsplitn(3, '.').collect();
        let byte = |s: &str| {
            s.parse::<u8>()
                .ok()
                .filter(|_| s.bytes().all(|b| b.is_ascii_digit()))
        };
        match (
            f.as_slice(),
            f.first().and_then(|s| byte(s)),
            f.get(1).and_then(|s| byte(s)),
        ) {
            ([_, _, host], Some(lo), Some(hi)) if !host.is_empty() && (hi, lo) != (0, 0) => {
                Stage::Notify {
                    port: u16::from(hi) * 256 + u16::from(lo),
                    name: 0,
                }
            }
            _ => failed,
        }
    }

    /// Failed's message is free text: compared by kind only, and it must say something.
    fn same(got: &Stage, want: &Stage) -> bool {
        match (got, want) {
            (Stage::Done(Outcome::Failed(why)), Stage::Done(Outcome::Failed(_))) => !why.is_empty(),
            _ => got == want,
        }
    }

    fn next_checked(
        stage: &Stage,
        msg: &[u8],
        xid: u32,
        names: usize,
    ) -> Result<Stage, TestCaseError> {
        let (next, peak) = peak_bytes(|| next_stage(stage, msg, xid, names));
        prop_assert!(
            peak <= 1024,
            "{} bytes live deciding on a {}-byte reply",
            peak,
            msg.len()
        );
        Ok(next)
    }

    fn sock() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<u32>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
            (any::<u128>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
        ]
    }

    /// How the reply's source relates to where the request went.
    #[derive(Debug, Clone, Copy)]
    enum From {
        Same,
        /// The IPv4 address as an IPv4-mapped IPv6 one (a dual-stack socket), or back.
        Mapped,
        OtherPort(u16),
        OtherHost(u32),
    }

    fn from_strategy() -> impl Strategy<Value = From> {
        prop_oneof![
            Just(From::Same),
            Just(From::Mapped),
            (1u16..).prop_map(From::OtherPort),
            (1u32..).prop_map(From::OtherHost),
        ]
    }

    /// The source for `how`, and whether the reply counts.
    fn source(to: SocketAddr, how: From) -> (SocketAddr, bool) {
        match how {
            From::Same => (to, true),
            From::Mapped => match to.ip() {
                IpAddr::V4(v4) => (
                    SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), to.port()),
                    true,
                ),
                IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                    Some(v4) => (SocketAddr::new(IpAddr::V4(v4), to.port()), true),
                    None => (to, true),
                },
            },
            From::OtherPort(d) => (SocketAddr::new(to.ip(), to.port().wrapping_add(d)), false),
            From::OtherHost(d) => {
                let ip = match to.ip() {
                    IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4).wrapping_add(d))),
                    IpAddr::V6(v6) => {
                        IpAddr::V6(Ipv6Addr::from(u128::from(v6).wrapping_add(u128::from(d))))
                    }
                };
                (SocketAddr::new(ip, to.port()), false)
            }
        }
    }

    fn pending_of(requests: &[(u32, SocketAddr)]) -> HashMap<u32, Pending> {
        requests
            .iter()
            .enumerate()
            .map(|(client, &(xid, to))| {
                (
                    xid,
                    Pending {
                        client,
                        msg: Vec::new(),
                        to,
                        interval: Duration::from_millis(1),
                        sends: 1,
                    },
                )
            })
            .collect()
    }

    proptest! {
        #![proptest_config(config("nsm"))]

        /// (d) Replies as a portmapper and statd send them move the client as RFC 1833
        /// says: port 0 is "no statd", a port over 65535 a failure, results after the port
        /// are not read; any other reply fails the client, saying why.
        #[test]
        fn replies_move_clients_as_the_protocols_say(
            names in 1usize..4,
            st in (1usize..4).prop_flat_map(stage),
            xid in any::<u32>(),
            verf in prop::collection::vec(any::<u8>(), 0..=400),
            a in answer(),
        ) {
            let st = match st {
                Stage::Notify { port, name } => Stage::Notify { port, name: name % names },
                s => s,
            };
            let (msg, _) = reply(xid, &verf, &a);
            let got = next_checked(&st, &msg, xid, names)?;
            let want = expected(&st, &a, names);
            prop_assert!(same(&got, &want), "{:?} then {:?}: got {:?}, want {:?}", st, a, got, want);
        }

        /// (b) A GETPORT reply cut before the end of its port word fails the client: never
        /// "no statd", never a port read from a shorter word.
        #[test]
        fn every_truncation_of_a_getport_reply_fails_the_client(
            xid in any::<u32>(),
            verf in prop::collection::vec(any::<u8>(), 0..=40),
            port in any::<u32>(),
            rest in prop::collection::vec(any::<u8>(), 0..8),
        ) {
            let a = Answer::Success([word(port), rest].concat());
            let (msg, header) = reply(xid, &verf, &a);
            let whole = expected(&Stage::GetPort, &a, 2);
            for cut in 0..msg.len() {
                let got = next_checked(&Stage::GetPort, &msg[..cut], xid, 2)?;
                if cut >= header + 4 {
                    prop_assert!(same(&got, &whole), "cut {}: {:?}", cut, got);
                } else {
                    prop_assert!(
                        matches!(&got, Stage::Done(Outcome::Failed(why)) if !why.is_empty()),
                        "cut {}: {:?}", cut, got
                    );
                }
            }
        }

        /// (c) Mutated replies (bit flips, rewritten words such as a verifier length of
        /// u32::MAX) never panic, and a client only moves on when the mutated reply still
        /// reads, independently, as an accepted success to its xid.
        #[test]
        fn mutated_replies_move_a_client_only_when_still_valid(
            xid in any::<u32>(),
            verf in prop::collection::vec(any::<u8>(), 0..=16),
            a in answer(),
            flips in prop::collection::vec((any::<Index>(), any::<u8>()), 0..3),
            words in prop::collection::vec(
                (any::<Index>(), prop_oneof![Just(u32::MAX), Just(401u32), Just(0u32), any::<u32>()]),
                0..2,
            ),
        ) {
            let (mut msg, _) = reply(xid, &verf, &a);
            for (at, w) in &words {
                let i = at.index(msg.len() / 4) * 4;
                msg[i..i + 4].copy_from_slice(&w.to_be_bytes());
            }
            for (at, x) in &flips {
                let i = at.index(msg.len());
                msg[i] ^= x;
            }
            let got = next_checked(&Stage::GetPort, &msg, xid, 2)?;
            let still = success_results(&msg, xid);
            match still {
                Some(results) => {
                    let want = expected(&Stage::GetPort, &Answer::Success(results), 2);
                    prop_assert!(same(&got, &want), "got {:?}, want {:?}", got, want);
                }
                None => prop_assert!(matches!(got, Stage::Done(Outcome::Failed(_))), "{:?}", got),
            }
        }

        /// (a) Arbitrary datagrams in every stage: never a panic, never a move on.
        #[test]
        fn arbitrary_datagrams_fail_or_are_ignored(
            bytes in prop::collection::vec(any::<u8>(), 0..64),
            xid in any::<u32>(),
            names in 1usize..3,
        ) {
            let mut msg = word(xid);
            msg.extend_from_slice(&bytes);
            for st in [Stage::GetPort, Stage::Notify { port: 1, name: 0 }] {
                let got = next_checked(&st, &msg, xid, names)?;
                if success_results(&msg, xid).is_none() {
                    prop_assert!(matches!(got, Stage::Done(Outcome::Failed(_))), "{:?}", got);
                }
                next_checked(&st, &bytes, xid, names)?;
            }
        }

        /// A datagram answers a request only when its xid is one we wait for and it comes
        /// from the address that request went to (an IPv4-mapped form of it included):
        /// another host or port is ignored, whatever the datagram says.
        #[test]
        fn replies_count_only_from_the_address_asked(
            requests in prop::collection::vec((any::<u32>(), sock()), 1..8),
            which in any::<Index>(),
            known_xid in any::<bool>(),
            stray_xid in any::<u32>(),
            how in from_strategy(),
            rest in prop::collection::vec(any::<u8>(), 0..32),
        ) {
            let pending = pending_of(&requests);
            let (xid, to) = requests[which.index(requests.len())];
            // A duplicate xid in `requests` keeps the last request's address.
            let to = pending.get(&xid).map_or(to, |p| p.to);
            let (from, counts) = source(to, how);
            let xid = if known_xid { xid } else { stray_xid };
            let mut msg = word(xid);
            msg.extend_from_slice(&rest);
            let want = (pending.contains_key(&xid) && counts).then_some(xid);
            prop_assert_eq!(answered_request(&pending, &msg, from), want);
            // Fewer than four bytes carry no xid: nobody's answer.
            for cut in 0..4 {
                prop_assert_eq!(answered_request(&pending, &msg[..cut], from), None);
            }
        }
    }

    /// An independent reading of an accepted-success reply to `xid`: its results.
    fn success_results(msg: &[u8], xid: u32) -> Option<Vec<u8>> {
        let w = |i: usize| {
            msg.get(i..i + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        if w(0)? != xid || w(4)? != 1 || w(8)? != 0 {
            return None;
        }
        let vlen = w(16)? as usize;
        if vlen > 400 {
            return None;
        }
        let padded = vlen.div_ceil(4) * 4;
        if msg.get(20 + vlen..20 + padded)?.iter().any(|&b| b != 0) {
            return None;
        }
        (w(20 + padded)? == 0).then(|| msg[24 + padded..].to_vec())
    }
}
