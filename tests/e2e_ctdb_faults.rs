//! The ctdb store under ctdbd faults, against a real ctdbd (Debian's ctdb 4.17, one node)
//! and the real ganesha.nfsd on it: ctdbd frozen (SIGSTOP) while hundreds of clients
//! connect, their records making one commit batch far larger than a pipe buffer; ctdbd
//! killed and restarted under the running Ganesha while clients connect. Every client is
//! admitted without waiting on the frozen daemon for more than the documented bound, every
//! record lands once ctdbd answers again, and Ganesha keeps answering meanwhile.

mod common;

use common::{client, owners, ClusterOpts};
use ganesha_ctdb_recov::store::Store;
use nix::sys::signal::Signal;
use serial_test::serial;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testbed::Cluster;

fn one_node() -> Cluster {
    ClusterOpts {
        nodes: 1,
        public_ips: 1,
        grace_period: 15,
        ..ClusterOpts::default()
    }
    .up()
}

/// The node's own address: clients use it so that nothing depends on the public IP, which
/// CTDB takes down and up again around a restart.
fn node_addr(c: &Cluster) -> Ipv4Addr {
    c.nodes[0].addr
}

/// Client records in the node's database; 0 while ctdbd does not answer.
fn records(c: &Cluster) -> usize {
    let tool = ganesha_ctdb_recov::ctdb::CtdbTool::with_socket(c.nodes[0].socket());
    ganesha_ctdb_recov::store::ctdb::CtdbStore::open(Box::new(tool), "ganesha_recovery.tdb")
        .and_then(|s| s.scan("v4@"))
        .map(|s| s.entries.len())
        .unwrap_or(0)
}

/// Waits until `want` client records are in the database, renewing `clients` meanwhile
/// (their 10 s leases must outlive the fault: an expired client's record goes).
fn wait_records(
    c: &Cluster,
    want: usize,
    limit: Duration,
    clients: &mut [nfs4_client::Client],
) -> Duration {
    let start = Instant::now();
    let mut renewed = Instant::now();
    loop {
        let n = records(c);
        if n >= want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "{n} of {want} records after {limit:?}:\n{}",
            c.logs()
        );
        if renewed.elapsed() > Duration::from_secs(2) {
            renew_all(clients);
            renewed = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn renew_all(clients: &mut [nfs4_client::Client]) {
    for cl in clients.iter_mut() {
        cl.renew().expect("RENEW");
    }
}

/// A client renewing its lease all along: the longest a RENEW (a SEQUENCE compound)
/// waited, i.e. whether Ganesha kept answering.
fn watchdog(c: &Cluster, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Duration> {
    let mut w = client(c, node_addr(c), 1, &owners::linux_v41(1, "watchdog"));
    w.establish().unwrap();
    w.reclaim_complete().unwrap();
    std::thread::spawn(move || {
        let mut worst = Duration::ZERO;
        while !stop.load(Ordering::SeqCst) {
            let t = Instant::now();
            w.renew().expect("RENEW during the fault");
            worst = worst.max(t.elapsed());
            std::thread::sleep(Duration::from_millis(200));
        }
        worst
    })
}

/// ctdbd frozen for 10 s while 400 NFSv4.1 clients connect: the first waits at most the
/// store's write limit (2 s), the rest not at all (their records go straight to the
/// retrier); the retrier's batch (~90 KB of `ctdb ptrans` input) cannot hold anyone past the
/// tool's 5 s limit; every record is durable soon after SIGCONT; RENEW never waits on it.
#[test]
#[serial]
fn a_frozen_ctdbd_delays_no_client_long_and_loses_no_record() {
    let c = one_node();
    let base = records(&c);
    let stop = Arc::new(AtomicBool::new(false));
    let dog = watchdog(&c, stop.clone());
    let frozen_at = Instant::now();
    c.signal_ctdbd(0, Signal::SIGSTOP);
    let mut worst = Duration::ZERO;
    let mut clients = Vec::new();
    for i in 0..400 {
        let mut cl = client(
            &c,
            node_addr(&c),
            1,
            &owners::linux_v41(1, &format!("host-{i:03}")),
        );
        let t = Instant::now();
        cl.establish()
            .unwrap_or_else(|e| panic!("client {i} during the freeze: {e}\n{}", c.logs()));
        worst = worst.max(t.elapsed());
        clients.push(cl);
    }
    let connected_in = frozen_at.elapsed();
    while frozen_at.elapsed() < Duration::from_secs(10) {
        renew_all(&mut clients);
        std::thread::sleep(Duration::from_millis(500));
    }
    c.signal_ctdbd(0, Signal::SIGCONT);
    let resumed = Instant::now();
    let durable = wait_records(&c, base + 400, Duration::from_secs(30), &mut clients);
    stop.store(true, Ordering::SeqCst);
    let renew_worst = dog.join().unwrap();
    eprintln!(
        "ctdbd frozen {:?} with 400 clients connecting (all in {connected_in:?}): longest \
         connect {worst:?}; 400/400 records durable {durable:?} after SIGCONT; longest \
         RENEW {renew_worst:?}",
        resumed - frozen_at
    );
    assert!(worst < Duration::from_secs(4), "a connect waited {worst:?}");
    assert!(
        renew_worst < Duration::from_secs(1),
        "RENEW waited {renew_worst:?}"
    );
    // The retrier logs the end of the fault right after its last batch committed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c.nodes[0].ganesha_log().contains("store fault cleared") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = c.nodes[0].ganesha_log();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("store fault:") && l.contains(":CRIT :"))
            .count(),
        1,
        "one CRIT line for the fault:\n{log}"
    );
    assert!(log.contains("store fault cleared"), "{log}");
    drop(clients);
}

/// ctdbd killed (its link up, Ganesha running) while 10 clients connect, and started again
/// 3 s later: the clients are admitted at once (the tool fails fast) and their records land
/// once ctdbd is back.
#[test]
#[serial]
fn a_ctdbd_restart_under_a_running_ganesha_loses_no_record() {
    let mut c = one_node();
    let base = records(&c);
    let stop = Arc::new(AtomicBool::new(false));
    let dog = watchdog(&c, stop.clone());
    let addr = node_addr(&c);
    let (tx, rx) = std::sync::mpsc::channel();
    let bridge = c.bridge_ns.clone();
    // Clients connect from another thread while ctdbd goes down and comes back.
    let connector = std::thread::spawn(move || {
        let mut worst = Duration::ZERO;
        let mut clients = Vec::new();
        for i in 0..10 {
            let mut cl = nfs4_client::Client::new(
                nfs4_client::ClientOptions::new(1, owners::linux_v41(1, &format!("rs-{i}"))),
                {
                    let bridge = bridge.clone();
                    move || {
                        nfs4_client::netns::connect(
                            Some(&bridge),
                            std::net::SocketAddr::from((addr, 2049)),
                            Duration::from_secs(20),
                        )
                    }
                },
            );
            let t = Instant::now();
            cl.establish().expect("connect while ctdbd is down");
            worst = worst.max(t.elapsed());
            clients.push(cl);
            let _ = tx.send(i);
            std::thread::sleep(Duration::from_millis(300));
        }
        (worst, clients)
    });
    rx.recv().unwrap();
    c.restart_ctdbd(0, Duration::from_secs(3)).unwrap();
    let (worst, mut clients) = connector.join().unwrap();
    let durable = wait_records(&c, base + 10, Duration::from_secs(60), &mut clients);
    stop.store(true, Ordering::SeqCst);
    let renew_worst = dog.join().unwrap();
    eprintln!(
        "ctdbd killed and restarted (3 s down) while 10 clients connected: longest connect \
         {worst:?}; 10/10 records durable {durable:?} after the restart; longest RENEW \
         {renew_worst:?}"
    );
    assert!(worst < Duration::from_secs(4), "a connect waited {worst:?}");
    drop(clients);
}

/// Whether anyone holds a lock conflicting with a write lock on [0, 100) of `path`.
fn locked(path: &std::path::Path) -> bool {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut probe = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 100,
        l_pid: 0,
    };
    nix::fcntl::fcntl(
        std::os::fd::AsRawFd::as_raw_fd(&f),
        nix::fcntl::FcntlArg::F_OFD_GETLK(&mut probe),
    )
    .unwrap();
    probe.l_type != libc::F_UNLCK as libc::c_short
}

/// ganesha.nfsd SIGKILLed (as the fail-stop does) while a `ctdb ptrans` it started waits
/// on a stopped ctdbd: a client's lock must go with Ganesha. The tool inherited Ganesha's
/// descriptors of the exported files, and with them the open-file-description locks, and
/// kept them after Ganesha died (torture seed 7, step 7: the takers' clients' reclaims
/// were refused).
#[test]
#[serial]
fn a_killed_ganesha_leaves_no_lock_behind_in_the_ctdb_tool_it_started() {
    let c = one_node();
    let file = c.dir.join("export").join("x41.txt");
    let mut holder = client(&c, node_addr(&c), 1, &owners::linux_v41(1, "holder"));
    holder.establish().unwrap();
    holder.reclaim_complete().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let locked = holder
            .open("export/x41.txt")
            .and_then(|mut f| holder.lock(&mut f, nfs4_client::LockType::Write, 0, 100, false));
        match locked {
            Ok(()) => break,
            Err(e) if e.status() == Some(nfs4_client::NfsStat::GRACE) => {
                assert!(Instant::now() < deadline, "still in grace");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => panic!("lock: {e}"),
        }
    }
    assert!(locked(&file), "the client's lock is a lock on the file");

    // ctdbd stopped; a second client's add_clid starts `ctdb ptrans`, which waits on it.
    c.signal_ctdbd(0, Signal::SIGSTOP);
    let bridge = c.bridge_ns.clone();
    let addr = node_addr(&c);
    let second = std::thread::spawn(move || {
        let mut cl = nfs4_client::Client::new(
            nfs4_client::ClientOptions::new(1, owners::linux_v41(1, "second")),
            move || {
                nfs4_client::netns::connect(
                    Some(&bridge),
                    std::net::SocketAddr::from((addr, 2049)),
                    Duration::from_secs(20),
                )
            },
        );
        let _ = cl.establish();
    });
    let ganesha = c.nodes[0].ganesha_nfsd_pid().expect("ganesha.nfsd runs");
    let tool_runs = || {
        testbed::procs::tree(ganesha).into_iter().any(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|n| n.trim() == "ctdb")
        })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !tool_runs() {
        assert!(Instant::now() < deadline, "no ctdb tool started by Ganesha");
        std::thread::sleep(Duration::from_millis(20));
    }
    c.crash_ganesha(0);
    let deadline = Instant::now() + Duration::from_secs(2);
    while std::path::Path::new(&format!("/proc/{ganesha}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let still = locked(&file);
    c.signal_ctdbd(0, Signal::SIGCONT);
    let _ = second.join();
    assert!(
        !still,
        "the lock outlived Ganesha (held by a process it started)"
    );
}
