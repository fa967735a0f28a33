//! Time to notify 1,000 and 10,000 NLM clients after a takeover, side by side with CTDB
//! 4.17's statd-callout notify path (its smnotify helper, four invocations per client: two
//! names x two states) in the same run. Simulated client hosts are addresses on lo in a
//! network namespace; one responder stands in for all their rpcbinds and statds (GETPORT
//! answers port 111, SM_NOTIFY is acknowledged), replying from the address each request was
//! sent to. Needs root.
//!
//!     cargo bench --bench nsm_notify [-- --smnotify-max N] [--only ours|sm-notify|smnotify]
//!         [--sizes 1000,10000] [--in-flight N]
//!
//! Columns: SM_NOTIFYs is every SM_NOTIFY datagram the responder got (retransmissions
//! included), reached the distinct clients that got at least one, no answer what our sender
//! reports as unanswered.
//!
//! The responder counts no SM_NOTIFY from Debian 12's smnotify: under strace it sends the
//! portmapper GETPORT, gets the answer, fails to re-bind its already bound socket (EINVAL)
//! and exits 0 without sending SM_NOTIFY: it sets a zero call timeout ("we don't want to
//! wait for any reply"), and libtirpc's clnt_dg_call tests for a zero timeout (its "hack to
//! provide rpc-based message passing") before the sendto, where the old glibc sunrpc tested
//! after it. Its column is the cost of that path, with nothing delivered. nfs-utils'
//! sm-notify gets one monitor record per client, in the format rpc.statd writes, and
//! notifies once per client (one name) from the moved IP, run two ways: as rpc.statd runs
//! it at boot (retrying up to 15 minutes) and as Samba main's statd-callout runs it after a
//! takeover (`timeout 10`: the clients not reached in 10 s are never notified). Under
//! `cargo test` it only says how to run it.

use ganesha_ctdb_recov::nsm::{self, NotifyPlan, Outcome, PMAP_PROG, SM_NOTIFY, SM_PROG};
use nix::sched::{setns, CloneFlags};
use nix::sys::socket::{
    bind, recvmsg, sendmsg, setsockopt, socket, sockopt, AddressFamily, ControlMessage,
    ControlMessageOwned, MsgFlags, SockFlag, SockType, SockaddrIn,
};
use oncrpc::{XdrReader, XdrWriter};
use std::collections::HashSet;
use std::io::{IoSlice, IoSliceMut, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How many simulated client hosts the namespace gets.
const MAX_CLIENTS: usize = 10_000;
const SOURCE: Ipv4Addr = Ipv4Addr::new(10, 99, 255, 254);

fn client_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 100, (i / 250) as u8, (i % 250 + 1) as u8)
}

/// What the responder saw of one tool's run: SM_NOTIFY datagrams (retransmissions
/// included) and the distinct simulated clients that received at least one.
#[derive(Default)]
struct Tally {
    seen: Mutex<(usize, HashSet<Ipv4Addr>)>,
}

impl Tally {
    fn reset(&self) {
        let mut s = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        *s = (0, HashSet::new());
    }
    fn record(&self, client: Ipv4Addr) {
        let mut s = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        s.0 += 1;
        s.1.insert(client);
    }
    fn read(&self) -> (usize, usize) {
        let s = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        (s.0, s.1.len())
    }
}

fn enter(ns: &str) {
    let f = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("netns");
    setns(&f, CloneFlags::CLONE_NEWNET).expect("setns");
}

/// One UDP socket on 0.0.0.0:111 answering as every simulated client.
fn responder(ns: String, tally: Arc<Tally>) {
    std::thread::spawn(move || {
        enter(&ns);
        let fd = socket(
            AddressFamily::Inet,
            SockType::Datagram,
            SockFlag::empty(),
            None,
        )
        .expect("socket");
        setsockopt(&fd, sockopt::Ipv4PacketInfo, &true).expect("IP_PKTINFO");
        setsockopt(&fd, sockopt::RcvBuf, &(8 << 20)).ok();
        bind(fd.as_raw_fd(), &SockaddrIn::new(0, 0, 0, 0, 111)).expect("bind 111");
        let mut buf = vec![0u8; 4096];
        loop {
            let mut cmsg = nix::cmsg_space!(libc::in_pktinfo);
            let (n, from, dst) = {
                let mut iov = [IoSliceMut::new(&mut buf)];
                let Ok(msg) = recvmsg::<SockaddrIn>(
                    fd.as_raw_fd(),
                    &mut iov,
                    Some(&mut cmsg),
                    MsgFlags::empty(),
                ) else {
                    continue;
                };
                let dst = msg.cmsgs().ok().and_then(|mut c| {
                    c.find_map(|m| match m {
                        ControlMessageOwned::Ipv4PacketInfo(i) => Some(i.ipi_addr),
                        _ => None,
                    })
                });
                (msg.bytes, msg.address, dst)
            };
            let (Some(from), Some(dst)) = (from, dst) else {
                continue;
            };
            let mut r = XdrReader::new(&buf[..n]);
            let Ok(xid) = r.u32("xid") else { continue };
            let w: Vec<u32> = (0..5).filter_map(|_| r.u32("w").ok()).collect();
            if w.len() < 5 || w[0] != 0 {
                continue;
            }
            let (prog, proc_) = (w[2], w[4]);
            let mut out = XdrWriter::new();
            out.u32(xid).u32(1).u32(0).u32(0).opaque(&[]).u32(0);
            if prog == PMAP_PROG && w[3] >= 3 {
                // rpcbind v3/v4 GETADDR (libtirpc's pmap_getport asks this way): a
                // universal address, this client's own with port 111.
                let ip = Ipv4Addr::from(u32::from_be(dst.s_addr));
                out.string(&format!("{ip}.0.111"));
            } else if prog == PMAP_PROG {
                out.u32(111);
            } else if prog == SM_PROG && proc_ == SM_NOTIFY {
                tally.record(Ipv4Addr::from(u32::from_be(dst.s_addr)));
            }
            let info = libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: dst,
                ipi_addr: dst,
            };
            let _ = sendmsg(
                fd.as_raw_fd(),
                &[IoSlice::new(out.as_bytes())],
                &[ControlMessage::Ipv4PacketInfo(&info)],
                MsgFlags::empty(),
                Some(&from),
            );
        }
    });
}

fn ours(ns: &str, n: usize, in_flight: usize) -> (Duration, usize) {
    let ns = ns.to_string();
    let report = std::thread::spawn(move || {
        enter(&ns);
        let clients: Vec<IpAddr> = (0..n).map(|i| client_addr(i).into()).collect();
        nsm::notify(
            &NotifyPlan {
                source: SOURCE.into(),
                names: vec![SOURCE.to_string(), "nfs.bench".into()],
                state: 1,
                pmap_port: 111,
                first_retry: Duration::from_millis(500),
                in_flight,
                total: Duration::from_secs(120),
            },
            &clients,
        )
        .expect("notify")
    })
    .join()
    .expect("sender thread");
    let silent = report
        .outcomes
        .iter()
        .filter(|(_, o)| *o != Outcome::Notified)
        .count();
    (report.elapsed, silent)
}

fn smnotify(ns: &str, n: usize) -> Duration {
    let script = "while read c; do for s in 2 3; do for name in 10.99.255.254 nfs.bench; do \
                  /usr/libexec/ctdb/smnotify --client=$c --ip=10.99.255.254 --server=$name --stateval=$s; \
                  done; done; done";
    let t = Instant::now();
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("smnotify loop");
    if let Some(mut stdin) = child.stdin.take() {
        for i in 0..n {
            let _ = writeln!(stdin, "{}", client_addr(i));
        }
    }
    let _ = child.wait();
    // smnotify does not wait for answers: give the last datagrams a moment to land.
    std::thread::sleep(Duration::from_millis(200));
    t.elapsed()
}

/// How nfs-utils' sm-notify is run.
#[derive(Clone, Copy)]
enum SmNotifyAs {
    /// rpc.statd's boot-time notifier: `sm-notify -d -f -P <dir> -v <ip>`, retrying up to
    /// its default 15 minutes.
    Statd,
    /// Samba main's statd-callout (anchors.md): `timeout 10 sm-notify -d -f -m 0 -n -P <dir>
    /// -v <ip>` per taken IP, so whatever is not done in 10 s is never notified.
    CtdbMain,
}

/// nfs-utils' sm-notify: one monitor record per client in <dir>/sm, in the format rpc.statd
/// writes, then sm-notify from the moved IP. Its -v address must reverse-resolve (it becomes
/// mon_name): /etc/netns/<ns>/hosts, which `ip netns exec` mounts over /etc/hosts, names it.
fn sm_notify(ns: &str, n: usize, how: SmNotifyAs) -> Duration {
    let dir = std::env::temp_dir().join(format!("gctdb-smnotify-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("sm")).expect("sm dir");
    std::fs::create_dir_all(dir.join("sm.bak")).expect("sm.bak dir");
    for i in 0..n {
        let c = client_addr(i);
        // addr prog vers proc (hex), 16-byte private cookie (hex), mon_name, my_name.
        let line = format!(
            "{:08x} {:08x} {:08x} {:08x} {} {} bench\n",
            u32::from_ne_bytes(c.octets()),
            100021,
            4,
            16,
            "0".repeat(32),
            c
        );
        std::fs::write(dir.join("sm").join(c.to_string()), line).expect("monitor record");
    }
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]);
    match how {
        SmNotifyAs::Statd => cmd.args(["sm-notify", "-d", "-f"]),
        SmNotifyAs::CtdbMain => {
            cmd.args(["timeout", "10", "sm-notify", "-d", "-f", "-m", "0", "-n"])
        }
    };
    cmd.arg("-P")
        .arg(&dir)
        .args(["-v", &SOURCE.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let t = Instant::now();
    let status = cmd.status();
    let elapsed = t.elapsed();
    let _ = std::fs::remove_dir_all(&dir);
    let timed_out =
        matches!(how, SmNotifyAs::CtdbMain) && status.as_ref().is_ok_and(|s| s.code() == Some(124));
    if !timed_out && !status.as_ref().is_ok_and(|s| s.success()) {
        eprintln!("sm-notify failed: {status:?}");
    }
    elapsed
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("nsm_notify: run with `cargo bench --bench nsm_notify` (root; builds a namespace with 10,000 addresses)");
        return;
    }
    let smnotify_max: usize = args
        .iter()
        .position(|a| a == "--smnotify-max")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let only = value("--only");
    let run = |tool: &str| only.as_deref().map_or(true, |o| o == tool);
    let sizes: Vec<usize> = value("--sizes")
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 10_000]);
    let in_flight: usize = value("--in-flight")
        .and_then(|v| v.parse().ok())
        .unwrap_or(nsm::DEFAULT_IN_FLIGHT);
    let ns = format!("gctdb-nsmb{}", std::process::id());
    let ok = |c: &mut Command| assert!(c.status().expect("ip").success(), "{c:?}");
    ok(Command::new("ip").args(["netns", "add", &ns]));
    let etc = format!("/etc/netns/{ns}");
    // Removes the namespace (and whatever still runs in it) and its /etc, also on a panic.
    struct Cleanup(String, String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            testbed::procs::remove_netns(&self.0);
            let _ = std::fs::remove_dir_all(&self.1);
        }
    }
    let _cleanup = Cleanup(ns.clone(), etc.clone());
    std::fs::create_dir_all(&etc).expect("/etc/netns/<ns>");
    std::fs::write(
        format!("{etc}/hosts"),
        format!("127.0.0.1 localhost\n{SOURCE} nfs.bench\n"),
    )
    .expect("hosts for sm-notify");
    ok(Command::new("ip").args(["-n", &ns, "link", "set", "lo", "up"]));
    let mut batch = format!("address add {SOURCE}/32 dev lo\n");
    for i in 0..MAX_CLIENTS {
        batch.push_str(&format!("address add {}/32 dev lo\n", client_addr(i)));
    }
    let mut ipb = Command::new("ip")
        .args(["-n", &ns, "-batch", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("ip -batch");
    ipb.stdin
        .take()
        .expect("stdin")
        .write_all(batch.as_bytes())
        .expect("batch");
    assert!(ipb.wait().expect("ip -batch").success());
    let tally = Arc::new(Tally::default());
    responder(ns.clone(), tally.clone());
    std::thread::sleep(Duration::from_millis(300));

    println!(
        "{:<46} {:>7} {:>10} {:>11} {:>8} {:>10}",
        "", "clients", "time", "SM_NOTIFYs", "reached", "no answer"
    );
    let row = |what: &str, n: usize, t: Duration, silent: String| {
        let (datagrams, reached) = tally.read();
        println!(
            "{:<46} {:>7} {:>8.2} s {:>11} {:>8} {:>10}",
            what,
            n,
            t.as_secs_f64(),
            datagrams,
            reached,
            silent
        );
    };
    if sizes.iter().any(|&n| n > MAX_CLIENTS) {
        eprintln!("sizes above {MAX_CLIENTS} (the simulated hosts) are skipped");
    }
    for n in sizes.into_iter().filter(|&n| n <= MAX_CLIENTS) {
        if run("ours") {
            tally.reset();
            let (t, silent) = ours(&ns, n, in_flight);
            row(
                "ganesha-ctdb notify (one socket, in flight)",
                n,
                t,
                silent.to_string(),
            );
        }
        if run("sm-notify") {
            tally.reset();
            let t = sm_notify(&ns, n, SmNotifyAs::Statd);
            row("nfs-utils sm-notify, statd's way", n, t, "-".into());
            tally.reset();
            let t = sm_notify(&ns, n, SmNotifyAs::CtdbMain);
            row("sm-notify, Samba main callout's way", n, t, "-".into());
        }
        if n <= smnotify_max && run("smnotify") {
            tally.reset();
            let t = smnotify(&ns, n);
            row(
                "CTDB 4.17 statd-callout (smnotify x4/client)",
                n,
                t,
                "-".into(),
            );
        }
    }
}
