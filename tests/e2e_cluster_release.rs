//! Planned moves and Ganesha-only crashes on a real 3-node ctdbd cluster with a
//! ganesha.nfsd per node exporting one directory (one kernel: locks conflict across nodes as
//! on a cluster filesystem), with the owners real clients send: Linux NFSv4.1
//! ("Linux NFSv4.1 <host>", no server address), Linux NFSv4.0 (names the server address)
//! and an NFSv4.0 owner that names none.
//!
//! - `ctdb moveip X` and `ctdb disable`: the releasing node drops exactly the state of the
//!   clients that reached it through the IPs that leave (design R1), after every live node
//!   enforces grace; they reclaim through X on the taker; a client of another IP of the
//!   releasing node keeps its state (its lock still excludes); client 2 through another
//!   node gets only NFS4ERR_GRACE until then and NFS4ERR_DENIED after grace, and the lock
//!   once client 1 unlocks. Ganesha 4.3's own release ("2:X") would keep the v4.1 and the
//!   address-less v4.0 clients' locks, and their reclaims on the taker would be refused.
//! - The stock `fs` backend under the same planned move: client 2 is granted client 1's lock.
//! - ganesha.nfsd SIGKILLed alone under a live ctdbd, supervised as systemd does with the
//!   package's drop-in (see `after_ganesha_alone_dies_...` for what is guaranteed).

mod common;

use common::{client, filed_under, in_grace, owners, v4_keys, wait_log, ClusterOpts};
use nfs4_client::{Client, LockType, NfsStat, OpenFile};
use serial_test::serial;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use testbed::Cluster;

/// A client holding a write lock on bytes 0-99 of `path`, through `via`.
struct Holder {
    what: String,
    via: Ipv4Addr,
    path: String,
    client: Client,
    file: OpenFile,
}

fn lock_via(c: &Cluster, via: Ipv4Addr, minor: u32, owner: &str, path: &str) -> Holder {
    std::fs::write(c.dir.join(path), "data\n").unwrap();
    let mut cl = client(c, via, minor, owner);
    cl.establish().unwrap();
    if minor > 0 {
        cl.reclaim_complete().unwrap();
    }
    let mut file = cl.open(path).unwrap();
    cl.lock(&mut file, LockType::Write, 0, 100, false)
        .unwrap_or_else(|e| panic!("{owner} locks {path}: {e}"));
    Holder {
        what: format!("v4.{minor} {owner:?} via {via}"),
        via,
        path: path.into(),
        client: cl,
        file,
    }
}

impl Holder {
    /// OPEN CLAIM_PREVIOUS and LOCK reclaim through `via` (a new connection).
    fn reclaim(&mut self, c: &Cluster) {
        self.client.disconnect();
        self.client.establish().unwrap();
        let mut r = self
            .client
            .reclaim_open(&self.file.fh)
            .unwrap_or_else(|e| panic!("{}: OPEN CLAIM_PREVIOUS: {e}\n{}", self.what, c.logs()));
        self.client
            .lock(&mut r, LockType::Write, 0, 100, true)
            .unwrap_or_else(|e| panic!("{}: LOCK reclaim: {e}\n{}", self.what, c.logs()));
        if self.client.minor_version() > 0 {
            self.client.reclaim_complete().unwrap();
        }
        self.file = r;
    }
}

/// Client 2: one NFSv4.1 client through another node, with every contested file open.
struct Contender {
    client: Client,
    files: Vec<(String, OpenFile)>,
}

impl Contender {
    fn new(c: &Cluster, via: Ipv4Addr, paths: &[&str]) -> Contender {
        let mut cl = client(c, via, 1, &owners::linux_v41(1, "client2"));
        cl.establish().unwrap();
        cl.reclaim_complete().unwrap();
        let files = paths
            .iter()
            .map(|p| (p.to_string(), cl.open(p).unwrap()))
            .collect();
        Contender { client: cl, files }
    }

    /// Asks for every file's lock once; the answers by path.
    fn try_all(&mut self) -> Vec<(String, Result<(), Option<NfsStat>>)> {
        let cl = &mut self.client;
        self.files
            .iter_mut()
            .map(|(p, f)| {
                (
                    p.clone(),
                    cl.lock(f, LockType::Write, 0, 100, false)
                        .map_err(|e| e.status()),
                )
            })
            .collect()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Planned {
    MoveIp,
    Disable,
    /// `ctdb shutdown` of A: its IPs go in the shutdown event, without releaseip.
    Shutdown,
}

fn renew(hs: &mut [Holder]) {
    for h in hs.iter_mut() {
        let _ = h.client.renew();
    }
}

/// Returns whether client 2 was ever granted a lock a client of X had the right to
/// reclaim (the stock backend's outcome; with ganesha-ctdb the run asserts it never is).
fn planned_move(kind: Planned, stock: bool, debian: Option<&'static str>) -> bool {
    let grace_period = 20;
    let c = ClusterOpts {
        grace_period,
        stock,
        debian,
        public_ips: 4,
        ..ClusterOpts::default()
    }
    .up();
    // A holds two public IPs: X moves, Z stays (with moveip).
    let holders = c.ip_holders(0).unwrap();
    let (a_pnn, x, z) = c
        .nodes
        .iter()
        .find_map(|n| {
            let mine: Vec<Ipv4Addr> = holders
                .iter()
                .filter(|(_, h)| **h == Some(n.pnn))
                .map(|(ip, _)| *ip)
                .collect();
            (mine.len() == 2).then(|| (n.pnn, mine[0], mine[1]))
        })
        .expect("4 IPs on 3 nodes: one node holds two");
    let a = c.node_by_pnn(a_pnn).unwrap();
    let (y, b_pnn) = holders
        .iter()
        .find_map(|(ip, h)| h.filter(|h| *h != a_pnn).map(|h| (*ip, h)))
        .unwrap();
    let b = c.node_by_pnn(b_pnn).unwrap();
    let other = (0..3).find(|i| *i != a && *i != b).unwrap();

    let mut ones = vec![
        lock_via(
            &c,
            x,
            0,
            &owners::linux_v40("client1a", x),
            "export/x40a.txt",
        ),
        lock_via(
            &c,
            x,
            0,
            &owners::v40_without_addr("client1b", 101),
            "export/x40b.txt",
        ),
        lock_via(
            &c,
            x,
            1,
            &owners::linux_v41(1, "client1c"),
            "export/x41.txt",
        ),
    ];
    let mut threes = vec![
        lock_via(
            &c,
            z,
            0,
            &owners::v40_without_addr("client3a", 303),
            "export/z40.txt",
        ),
        lock_via(
            &c,
            z,
            2,
            &owners::linux_v41(2, "client3b"),
            "export/z42.txt",
        ),
    ];
    let x_paths: Vec<String> = ones.iter().map(|h| h.path.clone()).collect();
    let all_paths: Vec<&str> = ones
        .iter()
        .chain(&threes)
        .map(|h| h.path.as_str())
        .collect();
    let mut two = Contender::new(&c, y, &all_paths);
    for (p, r) in two.try_all() {
        assert_eq!(
            r,
            Err(Some(NfsStat::DENIED)),
            "client 2 on {p} before the move"
        );
    }
    if !stock {
        // Every client is filed under the IP it used, the address-less v4.0 ones too.
        let keys = v4_keys(&c, b);
        let under = |ip| filed_under(&keys, ip);
        assert_eq!((under(x), under(z), under(y)), (3, 2, 1), "{keys:?}");
    }

    let t0 = Instant::now();
    match kind {
        Planned::MoveIp => {
            let target = c.nodes[other].pnn;
            c.nodes[b]
                .ctdb(&["moveip", &x.to_string(), &target.to_string()])
                .unwrap();
        }
        Planned::Disable => {
            c.nodes[a].ctdb(&["disable"]).unwrap();
        }
        Planned::Shutdown => {
            c.nodes[a].ctdb(&["shutdown"]).unwrap();
        }
    }
    let moving: Vec<Ipv4Addr> = match kind {
        Planned::MoveIp => vec![x],
        Planned::Disable | Planned::Shutdown => vec![x, z],
    };
    let live: Vec<usize> = (0..3)
        .filter(|i| kind != Planned::Shutdown || *i != a)
        .collect();
    // Until the IPs moved, and 3 s more: client 2 asks for the X (and Z) locks.
    let mut all_in_grace_at = None;
    let mut moved_at = None;
    let mut granted: Vec<(Duration, String)> = Vec::new();
    while moved_at.map_or(true, |m: Duration| {
        t0.elapsed() < m + Duration::from_secs(3)
    }) {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{moving:?} did not move:\n{}",
            c.logs()
        );
        if all_in_grace_at.is_none() && live.iter().all(|i| in_grace(&c, *i)) {
            all_in_grace_at = Some(t0.elapsed());
        }
        if moved_at.is_none() {
            let h = c.ip_holders(b).unwrap_or_default();
            if moving
                .iter()
                .all(|ip| h.get(ip).copied().flatten().is_some_and(|p| p != a_pnn))
            {
                moved_at = Some(t0.elapsed());
            }
        }
        for (p, r) in two.try_all() {
            match r {
                Ok(()) => granted.push((t0.elapsed(), p)),
                Err(Some(NfsStat::GRACE)) | Err(Some(NfsStat::DENIED)) => {}
                Err(e) => panic!("client 2 on {p} during the move: {e:?}"),
            }
        }
        let _ = two.client.renew();
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!(
        "{} {kind:?}: every node in grace after {all_in_grace_at:?}, {moving:?} moved after \
         {moved_at:?}; client 2 granted {granted:?}",
        if stock {
            "stock fs backend"
        } else {
            "ganesha-ctdb"
        }
    );
    let holders = c.ip_holders(b).unwrap();
    let taker_of = |ip: Ipv4Addr| c.node_by_pnn(holders[&ip].unwrap()).unwrap();

    // Client 1 (and, when Z moved too, client 3) reclaim through their IP on its taker.
    let mut reclaimers: Vec<&mut Holder> = ones.iter_mut().collect();
    if kind != Planned::MoveIp {
        reclaimers.extend(threes.iter_mut());
    }
    if stock {
        // The anchor: whatever Ganesha answers, is client 2 granted what client 1 held?
        for h in reclaimers {
            h.client.disconnect();
            let _ = h.client.establish();
            if let Ok(mut r) = h.client.reclaim_open(&h.file.fh) {
                let out = h.client.lock(&mut r, LockType::Write, 0, 100, true);
                eprintln!("stock: {} reclaims: {out:?}", h.what);
            }
        }
        let until = Instant::now() + Duration::from_secs(u64::from(grace_period) + 15);
        while Instant::now() < until {
            for (p, r) in two.try_all() {
                if r.is_ok() && x_paths.contains(&p) {
                    granted.push((t0.elapsed(), p));
                }
            }
            if !granted.is_empty() {
                break;
            }
            let _ = two.client.renew();
            std::thread::sleep(Duration::from_secs(1));
        }
        eprintln!("stock fs backend {kind:?}: client 2 granted {granted:?}");
        return !granted.is_empty();
    }
    assert!(
        granted.is_empty(),
        "client 2 was granted {granted:?} during the move:\n{}",
        c.logs()
    );
    if debian.is_some() && kind != Planned::MoveIp {
        // CTDB 4.21+ takeover runs: every node entered grace in startipreallocate, before
        // any release (`ctdb moveip` releases and takes without a takeover run).
        for n in &c.nodes {
            let log = n.ctdb_log();
            let held = log.find("startipreallocate: grace \"3:hold\": Ganesha");
            let released = log.find("releaseip: grace");
            assert!(
                held.is_some() && released.map_or(true, |r| held < Some(r)),
                "{} did not hold in startipreallocate before releasing:\n{log}",
                n.name
            );
        }
    }
    for ip in &moving {
        wait_log(
            &c,
            taker_of(*ip),
            &format!("takeover of {ip}"),
            Duration::from_secs(20),
        );
    }
    let released = match kind {
        Planned::Shutdown => {
            "releasing 5 NFSv4 client(s) that reached this node through every public IP".to_string()
        }
        _ => format!("releasing 3 NFSv4 client(s) that reached this node through {x}"),
    };
    assert!(
        c.nodes[a].ganesha_log().contains(&released),
        "A released X's clients:\n{}",
        c.logs()
    );
    for h in reclaimers {
        assert!(moving.contains(&h.via));
        h.reclaim(&c);
    }
    if kind == Planned::MoveIp {
        // Z's clients on A were not touched: their state is alive and their locks hold.
        for h in threes.iter_mut() {
            h.client
                .renew()
                .unwrap_or_else(|e| panic!("{} after X moved: {e}", h.what));
        }
    }
    // Until the cluster leaves grace client 2 gets GRACE, then DENIED everywhere.
    let deadline = Instant::now() + Duration::from_secs(u64::from(grace_period) * 3 + 20);
    loop {
        assert!(
            Instant::now() < deadline,
            "grace never ended:\n{}",
            c.logs()
        );
        let answers = two.try_all();
        if answers.iter().all(|(_, r)| *r != Err(Some(NfsStat::GRACE))) {
            for (p, r) in answers {
                assert_eq!(r, Err(Some(NfsStat::DENIED)), "client 2 on {p} after grace");
            }
            break;
        }
        for (p, r) in &answers {
            assert!(r.is_err(), "client 2 granted {p} in grace:\n{}", c.logs());
        }
        renew(&mut ones);
        renew(&mut threes);
        let _ = two.client.renew();
        std::thread::sleep(Duration::from_secs(1));
    }
    // Client 1 unlocks: client 2 gets those locks (Z's stay with client 3).
    for h in ones.iter_mut() {
        h.client.unlock(&mut h.file, 0, 100).unwrap();
    }
    for (p, r) in two.try_all() {
        let want = if x_paths.contains(&p) {
            Ok(())
        } else {
            Err(Some(NfsStat::DENIED))
        };
        assert_eq!(r, want, "client 2 on {p} after client 1 unlocked");
    }
    eprintln!("{}", testbed::cluster::tail(&c.nodes[a].ganesha_log(), 15));
    false
}

#[test]
#[serial]
fn a_planned_move_releases_exactly_the_moved_ips_clients_and_they_reclaim_on_the_taker() {
    assert!(!planned_move(Planned::MoveIp, false, None));
}

#[test]
#[serial]
fn ctdb_disable_releases_every_client_of_the_node_and_they_reclaim_on_the_takers() {
    assert!(!planned_move(Planned::Disable, false, None));
}

#[test]
#[serial]
fn ctdb_shutdown_releases_every_client_of_the_node_and_they_reclaim_on_the_takers() {
    assert!(!planned_move(Planned::Shutdown, false, None));
}

#[test]
#[serial]
fn with_the_stock_fs_backend_a_planned_move_lets_a_second_client_take_client_1s_lock() {
    assert!(
        planned_move(Planned::MoveIp, true, None),
        "the hazard did not show with the stock backend"
    );
}

/// The planned move on Debian 13's ctdb 4.22 and Ganesha 6.5, where a client whose lease
/// ended is parked with its state rather than expired: the release must still drop it.
/// Out of the suite's time budget (its 6.5 release path also runs in the `ctdb disable`
/// test below): `cargo test --test e2e_cluster_release -- --ignored`.
#[test]
#[serial]
#[ignore = "Debian 13 moveip: run with --ignored (the suite runs Debian 13's disable)"]
fn on_debian_13_a_planned_move_releases_exactly_the_moved_ips_clients() {
    assert!(!planned_move(Planned::MoveIp, false, Some("trixie")));
}

/// `ctdb disable` on Debian 13: CTDB 4.22's takeover run starts with startipreallocate on
/// every node, where each enters grace before anything is released.
#[test]
#[serial]
fn on_debian_13_ctdb_disable_holds_every_node_in_startipreallocate_then_releases() {
    assert!(!planned_move(Planned::Disable, false, Some("trixie")));
}

/// ganesha.nfsd on A (holding X) is SIGKILLed alone; ctdbd lives on. Supervised as
/// systemd does with the package's drop-in: its ExecStopPost (`ganesha-ctdb
/// ganesha-stopped`) stores A's exit marker, and Ganesha restarts 3 s later.
///
/// What is guaranteed, and asserted: every live node enforces grace within a bound of the
/// death (the marker is stored in ~0.1 s, the other nodes' watchers read the grace records
/// every second and join through their reaper), and from then on no conflicting lock is
/// granted; client 1 reclaims through X once it answers again. What is not: between the
/// death and that moment the filesystem has already dropped the dead process's locks and no
/// node knows yet, so client 2 can be granted the lock (recorded, and then released so that
/// client 1's reclaim can be checked). The test prints when.
#[test]
#[serial]
fn after_ganesha_alone_dies_every_node_enforces_grace_within_the_bound_and_its_clients_reclaim() {
    let c = ClusterOpts {
        grace_period: 20,
        supervise: Some(Some(Duration::from_secs(3))),
        ..ClusterOpts::default()
    }
    .up();
    let holders = c.ip_holders(0).unwrap();
    let x = c.public_ips[0];
    let a_pnn = holders[&x].unwrap();
    let a = c.node_by_pnn(a_pnn).unwrap();
    let (y, b_pnn) = holders
        .iter()
        .find_map(|(ip, h)| h.filter(|h| *h != a_pnn).map(|h| (*ip, h)))
        .unwrap();
    let others: Vec<usize> = (0..3).filter(|i| *i != a).collect();
    let _ = b_pnn;
    let mut ones = vec![
        lock_via(
            &c,
            x,
            1,
            &owners::linux_v41(1, "client1a"),
            "export/k41.txt",
        ),
        lock_via(
            &c,
            x,
            0,
            &owners::v40_without_addr("client1b", 7),
            "export/k40.txt",
        ),
    ];
    let paths: Vec<String> = ones.iter().map(|h| h.path.clone()).collect();
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    let mut two = Contender::new(&c, y, &paths);
    for (p, r) in two.try_all() {
        assert_eq!(r, Err(Some(NfsStat::DENIED)), "client 2 on {p} before");
    }
    let log_lines = |i: usize| c.nodes[i].ganesha_log().lines().count();
    let before: Vec<usize> = (0..3).map(log_lines).collect();
    let entered = |i: usize| {
        c.nodes[i]
            .ganesha_log()
            .lines()
            .skip(before[i])
            .any(|l| l.contains("Now IN GRACE"))
    };

    let t0 = Instant::now();
    c.crash_ganesha(a).expect("ganesha.nfsd runs on A");
    let mut enforcing_at = None;
    let mut granted: Vec<(Duration, String)> = Vec::new();
    while enforcing_at.is_none() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the other nodes never entered grace:\n{}",
            c.logs()
        );
        for (p, r) in two.try_all() {
            if r.is_ok() {
                granted.push((t0.elapsed(), p));
            }
        }
        if others.iter().all(|i| entered(*i)) {
            enforcing_at = Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let enforcing_at = enforcing_at.unwrap();
    eprintln!(
        "ganesha.nfsd killed alone: every other node in grace after {enforcing_at:?}; client 2 \
         granted inside that window: {granted:?}"
    );
    assert!(
        enforcing_at < Duration::from_secs(5),
        "the documented bound is a few seconds, took {enforcing_at:?}:\n{}",
        c.logs()
    );
    // What client 2 got inside the window it gives back (the unprotectable part).
    for (p, f) in two.files.iter_mut() {
        if granted.iter().any(|(_, g)| g == p) {
            two.client.unlock(f, 0, 100).unwrap();
        }
    }
    // Client 1 reclaims through X once it answers again (A restarted, or CTDB moved X).
    let deadline = Instant::now() + Duration::from_secs(60);
    for h in ones.iter_mut() {
        loop {
            for (p, r) in two.try_all() {
                assert!(
                    r.is_err(),
                    "client 2 granted {p} after every node enforced grace"
                );
            }
            h.client.disconnect();
            if h.client.establish().is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "X never answered again:\n{}",
                c.logs()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        h.reclaim(&c);
    }
    // After grace, client 2 is refused: client 1 holds its locks again.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        assert!(
            Instant::now() < deadline,
            "grace never ended:\n{}",
            c.logs()
        );
        let answers = two.try_all();
        if answers.iter().all(|(_, r)| *r != Err(Some(NfsStat::GRACE))) {
            for (p, r) in answers {
                assert_eq!(r, Err(Some(NfsStat::DENIED)), "client 2 on {p} after grace");
            }
            break;
        }
        renew(&mut ones);
        let _ = two.client.renew();
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Waits (10 s at most) until node `i`'s ganesha.nfsd is no longer `before`: it logs why it
/// stops just before it exits, so the log line alone does not mean the process is gone.
fn wait_nfsd_gone(c: &Cluster, i: usize, before: Option<i32>, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.nodes[i].ganesha_nfsd_pid() == before {
        assert!(
            Instant::now() < deadline,
            "{name}'s ganesha.nfsd {before:?} did not stop:\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The event script when Ganesha does not answer (docs/operations.md): on A it is not
/// running (killed, no supervisor to write the exit marker) and `ctdb moveip X` releases X
/// there. A's releaseip stores the marker itself and waits until every live node enforces,
/// so by the time X is configured on the taker B and C are in grace; the client of X
/// reclaims there; A's hold ends once it holds no IP.
#[test]
#[serial]
fn releasing_an_ip_whose_ganesha_is_not_running_puts_the_cluster_in_grace_first() {
    let mut c = ClusterOpts::default().up();
    let holders = c.ip_holders(0).unwrap();
    let x = c.public_ips[0];
    let a_pnn = holders[&x].unwrap();
    let a = c.node_by_pnn(a_pnn).unwrap();
    let target = (0..3).find(|i| *i != a).unwrap();
    let mut one = lock_via(&c, x, 1, &owners::linux_v41(1, "client1"), "export/d41.txt");
    c.kill_ganesha(a);
    let before: Vec<usize> = (0..3)
        .map(|i| c.nodes[i].ganesha_log().lines().count())
        .collect();
    let entered = |c: &Cluster, i: usize| {
        c.nodes[i]
            .ganesha_log()
            .lines()
            .skip(before[i])
            .any(|l| l.contains("Now IN GRACE"))
    };
    let ctdb_before = c.nodes[a].ctdb_log().len();
    let t0 = Instant::now();
    c.nodes[target]
        .ctdb(&["moveip", &x.to_string(), &c.nodes[target].pnn.to_string()])
        .unwrap();
    let others: Vec<usize> = (0..3).filter(|i| *i != a).collect();
    let mut in_grace_when_moved = None;
    while in_grace_when_moved.is_none() {
        assert!(
            t0.elapsed() < Duration::from_secs(40),
            "X never moved:\n{}",
            c.logs()
        );
        if c.holder(x, target)
            .ok()
            .flatten()
            .is_some_and(|h| h != a_pnn)
        {
            in_grace_when_moved = Some(others.iter().all(|i| entered(&c, *i)));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let ctdb_log = c.nodes[a].ctdb_log()[ctdb_before..].to_string();
    // The order is the event script's: releaseip returns (and CTDB may take X over) only
    // after it saw every live node enforce.
    let marker = ctdb_log.find("holding the cluster in grace");
    let enforced = ctdb_log.find("every live node enforces grace");
    assert!(
        ctdb_log.contains("nfs-ganesha is not running")
            && marker.is_some()
            && enforced.is_some_and(|e| e > marker.unwrap_or(usize::MAX)),
        "A's releaseip stored the exit marker, then waited for every live node:\n{ctdb_log}"
    );
    assert_eq!(
        in_grace_when_moved,
        Some(true),
        "X reached the taker before every live node enforced grace:\n{}",
        c.logs()
    );
    eprintln!(
        "X moved {:?} after moveip, every live node in grace first",
        t0.elapsed()
    );
    one.reclaim(&c);
}

/// A third node's Ganesha hangs (SIGSTOP: it answers nothing and cannot join the grace)
/// while `ctdb moveip X` releases X on A. A's releaseip waits for C to enforce only until
/// CTDB's TakeoverTimeout less a margin, then releases anyway (C grants nothing while it
/// is stopped), so the release ends inside the time CTDB gives it: the `ctdb moveip`
/// (whose own limit is 10 s) succeeds and X moves. Waiting longer made CTDB fail the
/// release, and a takeover run's release with it (banning credits).
#[test]
#[serial]
fn a_hung_ganesha_elsewhere_does_not_hold_a_release_past_ctdbs_takeover_timeout() {
    let c = ClusterOpts::default().up();
    let holders = c.ip_holders(0).unwrap();
    let x = c.public_ips[0];
    let a_pnn = holders[&x].unwrap();
    let a = c.node_by_pnn(a_pnn).unwrap();
    let others: Vec<usize> = (0..3).filter(|i| *i != a).collect();
    let (target, hung) = (others[0], others[1]);
    let mut one = lock_via(&c, x, 1, &owners::linux_v41(1, "client1"), "export/h41.txt");
    c.stop_ganesha(hung, true);
    let ctdb_before = c.nodes[a].ctdb_log().len();
    let moved = c.nodes[target].ctdb(&["moveip", &x.to_string(), &c.nodes[target].pnn.to_string()]);
    let ctdb_log = c.nodes[a].ctdb_log()[ctdb_before..].to_string();
    c.stop_ganesha(hung, false);
    assert!(
        moved.is_ok(),
        "ctdb moveip failed while node {} hung: {moved:?}\n{ctdb_log}",
        c.nodes[hung].pnn
    );
    assert!(
        ctdb_log.contains(&format!("still node {} not enforcing", c.nodes[hung].pnn))
            && ctdb_log.contains("releasing anyway"),
        "A waited for the hung node and then released:\n{ctdb_log}"
    );
    assert_eq!(
        c.holder(x, target).unwrap(),
        Some(c.nodes[target].pnn),
        "X moved to the target"
    );
    // The client of X reclaims on the target.
    wait_log(
        &c,
        target,
        &format!("takeover of {x}"),
        Duration::from_secs(20),
    );
    one.reclaim(&c);
}

/// ctdbd dies on node A (SIGKILL, 3 s down) while A's Ganesha serves: the other nodes take
/// A's public IP X, and its client must reclaim there. A's Ganesha, which still held the
/// client's lock, stops as soon as it sees its ctdbd gone (as smbd does), so the reclaim on
/// the taker is granted; systemd (here its stand-in) starts it again. Before, the reclaim
/// met A's lock: NFS4ERR_DENIED (found by the torture harness).
#[test]
#[serial]
fn a_ganesha_whose_ctdbd_dies_stops_so_that_its_clients_reclaim_on_the_taker() {
    let mut c = ClusterOpts {
        supervise: Some(Some(Duration::from_secs(2))),
        ..ClusterOpts::default()
    }
    .up();
    let x = c.public_ips[0];
    let a_pnn = c.holder(x, 0).unwrap().unwrap();
    let a = c.node_by_pnn(a_pnn).unwrap();
    let survivor = (0..3).find(|i| *i != a).unwrap();
    let mut one = lock_via(
        &c,
        x,
        1,
        &owners::linux_v41(1, "client1"),
        "export/cd41.txt",
    );
    let nfsd_before = c.nodes[a].ganesha_nfsd_pid();
    c.restart_ctdbd(a, Duration::from_secs(3)).unwrap();
    wait_log(&c, a, "this node's ctdbd is gone", Duration::from_secs(20));
    wait_nfsd_gone(&c, a, nfsd_before, "A");
    let t_pnn = c
        .wait_ip_moved(x, a_pnn, survivor, Duration::from_secs(40))
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    let t = c.node_by_pnn(t_pnn).unwrap();
    wait_log(&c, t, &format!("takeover of {x}"), Duration::from_secs(20));
    // The client reclaims wherever X is now (the taker, or A again after failback).
    one.reclaim(&c);
    c.wait_healthy(Duration::from_secs(120)).unwrap();

    // ctdbd back within 0.3 s (torture seed 7, step 7): the watcher, which looks once a
    // second, rarely sees its socket refuse, but the others took the IPs all the same. It
    // sees the daemon's new socket instead and stops Ganesha.
    // New locks only once the first failure's grace is over everywhere.
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while (0..3).any(|i| common::in_grace(&c, i)) {
        assert!(
            std::time::Instant::now() < deadline,
            "still in grace:\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let b_pnn = c.holder(x, 0).unwrap().unwrap();
    let b = c.node_by_pnn(b_pnn).unwrap();
    let survivor = (0..3).find(|i| *i != b).unwrap();
    let mut two = lock_via(
        &c,
        x,
        1,
        &owners::linux_v41(2, "client2"),
        "export/cd41b.txt",
    );
    let stops = |c: &Cluster| {
        let log = c.nodes[b].ganesha_log();
        log.matches("ctdbd restarted under this Ganesha").count()
            + log.matches("this node's ctdbd is gone").count()
    };
    let stops_before = stops(&c);
    let nfsd_before = c.nodes[b].ganesha_nfsd_pid();
    c.restart_ctdbd(b, Duration::from_millis(300)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while stops(&c) == stops_before {
        assert!(
            std::time::Instant::now() < deadline,
            "B's Ganesha did not stop after its ctdbd restarted:\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_nfsd_gone(&c, b, nfsd_before, "B");
    c.wait_ip_moved(x, b_pnn, survivor, Duration::from_secs(40))
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    two.reclaim(&c);
    c.wait_healthy(Duration::from_secs(120)).unwrap();
}
