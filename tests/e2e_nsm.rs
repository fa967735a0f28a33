//! The NSM sender against a real rpc.statd (nfs-utils) and rpcbind, in a network namespace
//! with a private /run: `ganesha-ctdb notify X` sends SM_NOTIFY from X to the client
//! recorded for X, once naming X and once naming the NFS host name, with a stored odd state
//! that grows with every notification; statd logs both. The statd callout records clients
//! from arguments (any bytes, no shell). Everything is stopped by pid, the namespace deleted.

use ganesha_ctdb_recov::records::ServerIp;
use ganesha_ctdb_recov::statd;
use ganesha_ctdb_recov::store::dir::DirStore;
use ganesha_ctdb_recov::store::Store;
mod common;

use common::run;
use serial_test::serial;
use std::process::Command;
use std::time::{Duration, Instant};
use testbed::procs::Netns;

/// A namespace with addresses 10.99.0.1 (the server's public IP X) and 10.99.0.2 (the
/// client), their IPv6 counterparts fd00:99::1 and fd00:99::2, a private /run, and a real rpcbind + rpc.statd answering as the client; and a
/// dir store. Returns the namespace guard, the work directory and a reader of statd's log.
fn statd_client(extra_addrs: &[&str]) -> (Netns, tempfile::TempDir) {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    for d in ["statd/sm", "statd/sm.bak"] {
        std::fs::create_dir_all(w.join(d)).unwrap();
    }
    std::fs::create_dir_all(w.join("store")).unwrap();
    let mut ns = Netns::new(format!("gctdb-nsm{}", std::process::id())).unwrap();
    // X, the server's public IP, and the client's address.
    for a in [
        "10.99.0.1/32",
        "10.99.0.2/32",
        "fd00:99::1/128",
        "fd00:99::2/128",
    ]
    .iter()
    .chain(extra_addrs)
    {
        run(Command::new("ip").args(["-n", &ns.name, "addr", "add", a, "dev", "lo"]));
    }
    // rpcbind answers UDP on the client's address only (and loopback), so that other
    // hosts' ports 111 in the namespace stay free.
    let script = format!(
        "mount -t tmpfs tmpfs /run && rpcbind -f -w -h 10.99.0.2 -h fd00:99::2 & sleep 0.5; \
         exec rpc.statd -F -d -L -P {}",
        w.join("statd").display()
    );
    let log = std::fs::File::create(w.join("statd.log")).unwrap();
    ns.children.push(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.name,
                "unshare",
                "-m",
                "--propagation",
                "private",
            ])
            .args(["sh", "-c", &script])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    // statd is ready once rpcbind knows it.
    while Instant::now() < deadline {
        let out = Command::new("ip")
            .args(["netns", "exec", &ns.name, "rpcinfo", "-p", "127.0.0.1"])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).contains("status") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (ns, work)
}

fn statd_log(w: &std::path::Path) -> String {
    std::fs::read_to_string(w.join("statd.log")).unwrap_or_default()
}

#[test]
#[serial]
fn a_real_statd_receives_sm_notify_naming_the_moved_ip_and_the_host_name() {
    let (ns, work) = statd_client(&[]);
    let w = work.path();
    let statd_log = || statd_log(w);
    let store = DirStore::open(&w.join("store")).unwrap();
    let x = ServerIp::Ip("10.99.0.1".parse().unwrap());
    statd::add_client(&store, std::slice::from_ref(&x), "10.99.0.2").unwrap();

    let bin = env!("CARGO_BIN_EXE_ganesha-ctdb");
    let notify = |expect: u32| {
        let out = run(&mut notify_command(&ns.name, w, 10));
        assert!(
            out.contains("1 client(s) notified, 0 without answer"),
            "{out}\n{}",
            statd_log()
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        let want_ip = format!("Received SM_NOTIFY from 10.99.0.1, state: {expect}");
        let want_name = format!("Received SM_NOTIFY from nfs.example, state: {expect}");
        while !(statd_log().contains(&want_ip) && statd_log().contains(&want_name))
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = statd_log();
        assert!(
            log.contains(&want_ip) && log.contains(&want_name),
            "want {want_ip:?} and {want_name:?} in:\n{log}"
        );
    };
    notify(1);
    notify(3); // strictly greater and odd, from the store, not a clock
    assert_eq!(
        store
            .get(&statd::nsm_state_key(&"10.99.0.1".parse().unwrap()))
            .unwrap()
            .as_deref(),
        Some(&b"v1 state=3"[..])
    );

    // The shipped callout script, as rpc.statd runs it, takes names as arguments and never
    // through a shell; GANESHA_CTDB_OPTS reaches the tool (here: the dir store of this test).
    let pwned = w.join("pwned");
    let odd = format!("evil;$(touch {p})`touch {p}` name", p = pwned.display());
    run(Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/ganesha-conf/statd-callout"
    ))
    .env("GANESHA_CTDB", bin)
    .env(
        "GANESHA_CTDB_OPTS",
        format!("--store dir --dir {}", w.join("store").display()),
    )
    .args(["add-client", &odd, "vm"]));
    assert!(!pwned.exists(), "a shell ran the name");
    assert!(store
        .get(&statd::statd_key(&ServerIp::Local, &odd))
        .unwrap()
        .is_some());
    let out = Command::new(bin)
        .arg("--dir")
        .arg(w.join("store"))
        .args(["statd-callout", "add-client", "two\nlines", "vm"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("newline"));
}

/// Another NFSv3 client (10.99.0.3, itself recorded for X) answers every portmapper lookup
/// it can guess, from its own address, with "statd not registered": it sees its own
/// request's xid and answers the neighbouring ones, which is where another client's would
/// be with sequential xids. The real statd at 10.99.0.2 still gets SM_NOTIFY, and the
/// forged replies are counted as ignored.
#[test]
#[serial]
fn a_hostile_client_cannot_keep_another_from_being_notified() {
    let (ns, work) = statd_client(&["10.99.0.3/32"]);
    let w = work.path();
    let store = DirStore::open(&w.join("store")).unwrap();
    let x = ServerIp::Ip("10.99.0.1".parse().unwrap());
    for client in ["10.99.0.3", "10.99.0.2"] {
        statd::add_client(&store, std::slice::from_ref(&x), client).unwrap();
    }
    let name = ns.name.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let hostile = std::thread::spawn(move || {
        nfs4_client::netns::enter(&name).unwrap();
        let sock = std::net::UdpSocket::bind("10.99.0.3:111").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 2048];
        let mut forged = 0usize;
        while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
            let Ok((_, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let seen = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
            for d in 1..=256u32 {
                for xid in [seen.wrapping_add(d), seen.wrapping_sub(d)] {
                    let mut r = Vec::with_capacity(28);
                    for word in [xid, 1, 0, 0, 0, 0, 0] {
                        r.extend_from_slice(&word.to_be_bytes());
                    }
                    let _ = sock.send_to(&r, from);
                    forged += 1;
                }
            }
        }
        forged
    });
    let out = run(&mut notify_command(&ns.name, w, 4));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let forged = hostile.join().unwrap();
    assert!(forged > 0, "the hostile client saw no request");
    assert!(
        statd_log(w).contains("Received SM_NOTIFY from 10.99.0.1"),
        "the victim was not notified ({forged} forged replies): {out}\n{}",
        statd_log(w)
    );
    assert!(out.contains("replies ignored"), "{out}");
}

/// Client names that need DNS while the namespace's DNS server never answers: the client
/// recorded by address is notified at once, the names are reported unresolved, and the run
/// ends at its bound with its true duration.
#[test]
#[serial]
fn a_hung_dns_server_delays_no_client_recorded_by_address() {
    let (ns, work) = statd_client(&["10.99.0.53/32"]);
    let w = work.path();
    // `ip netns exec` gives the namespace /etc/netns/<ns>/resolv.conf as /etc/resolv.conf.
    let etc = std::path::PathBuf::from(format!("/etc/netns/{}", ns.name));
    std::fs::create_dir_all(&etc).unwrap();
    struct Cleanup(std::path::PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = Cleanup(etc.clone());
    std::fs::write(
        etc.join("resolv.conf"),
        "nameserver 10.99.0.53\noptions timeout:5 attempts:3\n",
    )
    .unwrap();
    let name = ns.name.clone();
    let black_hole = std::thread::spawn(move || {
        nfs4_client::netns::enter(&name).unwrap();
        let sock = std::net::UdpSocket::bind("10.99.0.53:53").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(12)))
            .unwrap();
        let mut buf = [0u8; 1500];
        let mut queries = 0;
        while sock.recv_from(&mut buf).is_ok() {
            queries += 1; // and never answer
        }
        queries
    });
    let store = DirStore::open(&w.join("store")).unwrap();
    let x = ServerIp::Ip("10.99.0.1".parse().unwrap());
    for client in [
        "a.hung.example",
        "b.hung.example",
        "c.hung.example",
        "10.99.0.2",
    ] {
        statd::add_client(&store, std::slice::from_ref(&x), client).unwrap();
    }
    let start = Instant::now();
    let child = notify_command(&ns.name, w, 3)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut notified_after = None;
    while notified_after.is_none() && start.elapsed() < Duration::from_secs(3) {
        if statd_log(w).contains("Received SM_NOTIFY from 10.99.0.1") {
            notified_after = Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let took = start.elapsed();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("hung DNS: the client given by address notified after {notified_after:?}; notify took {took:?}:\n{text}");
    let queries = black_hole.join().unwrap();
    assert!(
        queries > 0,
        "the names were looked up in the hung DNS server"
    );
    assert!(
        notified_after.is_some_and(|t| t < Duration::from_secs(1)),
        "the client given by address waited for DNS: {notified_after:?}"
    );
    assert!(
        took < Duration::from_secs(6),
        "the run outlived its bound: {took:?}"
    );
    for n in ["a.hung.example", "b.hung.example", "c.hung.example"] {
        assert!(text.contains(n), "{n} reported unresolved: {text}");
    }
    assert!(
        text.contains("in 3.") || text.contains("in 2."),
        "true duration: {text}"
    );
}

/// An IPv6 public address X6 and an IPv6 client: the sender asks the client's rpcbind
/// (version 4 GETADDR: version 2 would name statd's IPv4 port, and statd's IPv6 socket has
/// another) and the real statd receives SM_NOTIFY from X6 over IPv6. An IPv4 client
/// recorded for X6 too (a node records every client under every IP it holds) is named as
/// of the other family, not as one that did not answer.
#[test]
#[serial]
fn a_real_statd_receives_sm_notify_over_ipv6_from_an_ipv6_public_address() {
    let (ns, work) = statd_client(&[]);
    let w = work.path();
    let store = DirStore::open(&w.join("store")).unwrap();
    let x6 = ServerIp::Ip("fd00:99::1".parse().unwrap());
    statd::add_client(&store, std::slice::from_ref(&x6), "fd00:99::2").unwrap();
    statd::add_client(&store, std::slice::from_ref(&x6), "10.99.0.2").unwrap();
    let out = run(&mut notify_command_from(&ns.name, w, "fd00:99::1", 10));
    assert!(
        out.contains("1 client(s) notified, 0 without answer"),
        "{out}\n{}",
        statd_log(w)
    );
    assert!(out.contains("10.99.0.2"), "the IPv4 client is named: {out}");
    let want = "Received SM_NOTIFY from fd00:99::1, state: 1";
    let deadline = Instant::now() + Duration::from_secs(5);
    while !statd_log(w).contains(want) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = statd_log(w);
    assert!(log.contains(want), "want {want:?} in:\n{log}");
    assert!(
        log.contains("Received SM_NOTIFY from nfs.example, state: 1"),
        "{log}"
    );
}

/// `ganesha-ctdb --dir <w>/store notify 10.99.0.1 --name nfs.example --timeout <secs>`,
/// run inside the client's network namespace `ns`.
fn notify_command(ns: &str, w: &std::path::Path, secs: u32) -> Command {
    notify_command_from(ns, w, "10.99.0.1", secs)
}

/// As notify_command, from public address `x`.
fn notify_command_from(ns: &str, w: &std::path::Path, x: &str, secs: u32) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        ns,
        env!("CARGO_BIN_EXE_ganesha-ctdb"),
        "--dir",
    ])
    .arg(w.join("store"))
    .args(["notify", x, "--name", "nfs.example", "--timeout"])
    .arg(secs.to_string());
    cmd
}
