//! The hazard cluster-wide grace exists for (design §1), on a real 3-node ctdbd cluster
//! with a ganesha.nfsd per node exporting one directory (one kernel: byte-range locks
//! conflict across nodes as on a cluster filesystem):
//!
//! client 1 locks a file through public IP X on node A; A fails (its ganesha.nfsd is
//! SIGSTOPped and its ctdbd SIGKILLed; once CTDB has moved X, the stopped ganesha.nfsd is
//! SIGKILLed, which is when a cluster filesystem that fenced A drops A's locks). Client 2
//! asks for the same lock through another node. With ganesha-ctdb client 2 gets
//! NFS4ERR_GRACE until client 1 has reclaimed through X on the new node, then DENIED, then
//! the lock once client 1 unlocks. With Ganesha's stock `fs` backend and the grace events
//! CTDB 4.17's callout sends, client 2 is granted the lock client 1 is about to reclaim.
//! NFSv4.0 and NFSv4.1 each (planned moves: tests/e2e_cluster_release.rs).
//!
//! Also: a node that joined the grace of another node's restart takes over an IP and its
//! clients reclaim; grace lifts cluster-wide after the last NFSv4.1 reclaim; a node killed
//! while it needs grace does not keep the survivors in grace.

mod common;

use common::{client, in_grace, owners, refused, wait_log, ClusterOpts};
use nfs4_client::{Client, LockType, NfsStat, OpenFile};
use serial_test::serial;
use std::process::Command;
use std::time::{Duration, Instant};

struct Holder {
    minor: u32,
    client: Client,
    file: OpenFile,
}

fn renew_all(cs: &mut [&mut Client]) {
    for c in cs.iter_mut() {
        c.renew().expect("renew");
    }
}

/// Runs the scenario on this machine's ctdb and Ganesha or on those of `debian`; returns
/// whether client 2 was ever granted the conflicting lock while client 1 had not reclaimed.
fn scenario(stock: bool, debian: Option<&'static str>) -> bool {
    let grace_period = 20;
    let mut c = ClusterOpts {
        grace_period,
        stock,
        debian,
        ..ClusterOpts::default()
    }
    .up();
    let x = c.public_ips[0];
    let holders = c.ip_holders(0).unwrap();
    let a_pnn = holders[&x].expect("X held");
    let a = c.node_by_pnn(a_pnn).unwrap();
    let (y, b_pnn) = c
        .public_ips
        .iter()
        .find_map(|ip| holders[ip].filter(|h| *h != a_pnn).map(|h| (*ip, h)))
        .expect("an IP on another node");
    let b = c.node_by_pnn(b_pnn).unwrap();

    let mut ones: Vec<Holder> = Vec::new();
    for (minor, file) in [(0u32, "export/f40.txt"), (1, "export/f41.txt")] {
        // Owners as real clients send them, neither naming X: Ganesha's own release would
        // miss both.
        let owner = if minor == 0 {
            owners::v40_without_addr("client1", 4000)
        } else {
            owners::linux_v41(minor, "client1")
        };
        let mut cl = client(&c, x, minor, &owner);
        cl.establish().unwrap();
        if minor > 0 {
            cl.reclaim_complete().unwrap();
        }
        let mut f = cl.open(file).unwrap();
        cl.lock(&mut f, LockType::Write, 0, 100, false).unwrap();
        ones.push(Holder {
            minor,
            client: cl,
            file: f,
        });
    }
    // Client 2 (v4.0 and v4.1) through Y on B opens the same files before the failover,
    // so that what it asks during the failover is only the lock.
    let mut twos: Vec<(Client, OpenFile)> = Vec::new();
    for (minor, file) in [(0u32, "export/f40.txt"), (1, "export/f41.txt")] {
        let owner = if minor == 0 {
            owners::linux_v40("client2", y)
        } else {
            owners::linux_v41(minor, "client2")
        };
        let mut cl = client(&c, y, minor, &owner);
        cl.establish().unwrap();
        if minor > 0 {
            cl.reclaim_complete().unwrap();
        }
        let mut f = cl.open(file).unwrap();
        refused(
            cl.lock(&mut f, LockType::Write, 0, 100, false),
            &[NfsStat::DENIED],
            "client 2 before the failover",
        );
        twos.push((cl, f));
    }

    let t0 = Instant::now();
    c.stop_ganesha(a, true);
    c.kill_ctdbd(a);
    // Measure when every live node is in grace and when CTDB has moved X.
    let live: Vec<usize> = (0..3).filter(|i| *i != a).collect();
    let (mut all_in_grace_at, mut moved_at) = (None, None);
    let mut renewed = Instant::now();
    loop {
        let now = t0.elapsed();
        assert!(
            now < Duration::from_secs(45),
            "X did not move:\n{}",
            c.logs()
        );
        if all_in_grace_at.is_none() && live.iter().all(|i| in_grace(&c, *i)) {
            all_in_grace_at = Some(now);
        }
        if moved_at.is_none() && c.holder(x, b).ok().flatten().is_some_and(|h| h != a_pnn) {
            moved_at = Some(now);
        }
        if let Some(m) = moved_at {
            if all_in_grace_at.is_some() || now > m + Duration::from_secs(2) {
                break;
            }
        }
        // Client 2 keeps its lease (10 s) while a leader election may take as long.
        if renewed.elapsed() > Duration::from_secs(2) {
            for (cl, _) in twos.iter_mut() {
                cl.renew().unwrap();
            }
            renewed = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let moved = moved_at.expect("the loop ends only once X moved");
    // CTDB has run its takeover (ipreallocated follows takeip by milliseconds).
    std::thread::sleep(Duration::from_millis(300));
    let all_in_grace = live.iter().all(|i| in_grace(&c, *i));
    eprintln!(
        "{} crash: X moved after {moved:?}; every live node in grace after \
         {all_in_grace_at:?}; all in grace once CTDB finished: {all_in_grace}",
        if stock {
            "stock fs backend"
        } else {
            "ganesha-ctdb"
        },
    );
    c.kill_ganesha(a); // the cluster filesystem fences A: its locks go
    let taker = c.node_by_pnn(c.holder(x, b).unwrap().unwrap()).unwrap();

    // Client 2 asks for the lock client 1 is about to reclaim, for a few seconds.
    let mut granted = false;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until && !granted {
        for (cl, f) in twos.iter_mut() {
            // The open itself carries the lock state: NFSv4.0 seqids must advance, or the
            // server replays its cached answer.
            match cl.lock(f, LockType::Write, 0, 100, false) {
                Ok(()) => granted = true,
                Err(e) if e.status() == Some(NfsStat::GRACE) => {}
                Err(e) => panic!("client 2 during the failover: {e}"),
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    if stock || granted {
        return granted;
    }
    assert!(
        all_in_grace && all_in_grace_at.is_some_and(|g| g <= moved + Duration::from_secs(1)),
        "every live node must be in grace within 1 s of CTDB's takeover:\n{}",
        c.logs()
    );
    wait_log(
        &c,
        taker,
        &format!("takeover of {x}"),
        Duration::from_secs(10),
    );

    // Client 1 reclaims through X, now on the taker.
    for h in ones.iter_mut() {
        h.client.disconnect();
        h.client.establish().unwrap();
        let mut r = h
            .client
            .reclaim_open(&h.file.fh)
            .unwrap_or_else(|e| panic!("v4.{} OPEN CLAIM_PREVIOUS: {e}\n{}", h.minor, c.logs()));
        h.client
            .lock(&mut r, LockType::Write, 0, 100, true)
            .unwrap_or_else(|e| panic!("v4.{} LOCK reclaim: {e}", h.minor));
        if h.minor > 0 {
            h.client.reclaim_complete().unwrap();
        }
        h.file = r;
    }
    // Until the cluster leaves grace client 2 gets GRACE, then DENIED (client 1 holds it).
    let deadline = Instant::now() + Duration::from_secs(u64::from(grace_period) * 3 + 20);
    let mut outcome: Vec<Option<Result<(), Option<NfsStat>>>> = vec![None; twos.len()];
    while outcome.iter().any(Option::is_none) {
        assert!(
            Instant::now() < deadline,
            "grace never ended:\n{}",
            c.logs()
        );
        for (i, (cl, f)) in twos.iter_mut().enumerate() {
            if outcome[i].is_some() {
                cl.renew().unwrap();
                continue;
            }
            match cl.lock(f, LockType::Write, 0, 100, false) {
                Err(e) if e.status() == Some(NfsStat::GRACE) => cl.renew().unwrap(),
                other => outcome[i] = Some(other.map_err(|e| e.status())),
            }
        }
        let mut all: Vec<&mut Client> = ones.iter_mut().map(|h| &mut h.client).collect();
        renew_all(&mut all);
        std::thread::sleep(Duration::from_secs(1));
    }
    let outcome: Vec<(usize, Result<(), Option<NfsStat>>)> =
        outcome.into_iter().flatten().enumerate().collect();
    for (i, o) in &outcome {
        assert_eq!(*o, Err(Some(NfsStat::DENIED)), "client 2 #{i} after grace");
    }
    // Client 1 unlocks; client 2 gets the lock.
    for (h, (cl, f)) in ones.iter_mut().zip(twos.iter_mut()) {
        h.client.unlock(&mut h.file, 0, 100).unwrap();
        cl.lock(f, LockType::Write, 0, 100, false)
            .expect("client 2 after client 1 unlocked");
    }
    false
}

#[test]
#[serial]
fn after_a_crash_no_node_grants_the_lock_client_1_is_about_to_reclaim() {
    assert!(!scenario(false, None));
}

#[test]
#[serial]
fn with_the_stock_fs_backend_a_second_client_is_granted_the_crashed_clients_lock() {
    assert!(
        scenario(true, None),
        "the hazard did not show with the stock backend"
    );
}

/// The same crash on Debian 13's ctdb 4.22 and Ganesha 6.5 (scripts/chroots.sh trixie).
#[test]
#[serial]
fn on_debian_13_after_a_crash_no_node_grants_the_lock_client_1_is_about_to_reclaim() {
    assert!(!scenario(false, Some("trixie")));
}

/// The anchor on Debian 13, out of the suite's time budget (it shows what the 4.3 anchor
/// above shows; measured, docs/grace-hazard.md): `cargo test --test e2e_cluster_grace --
/// --ignored`.
#[test]
#[serial]
#[ignore = "the Debian 13 anchor: run with --ignored (the suite runs the 4.3 one)"]
fn on_debian_13_with_the_stock_fs_backend_a_second_client_is_granted_the_crashed_clients_lock() {
    assert!(
        scenario(true, Some("trixie")),
        "the hazard did not show with the stock backend on Debian 13"
    );
}

/// Restart of one node's Ganesha (A): the other nodes join the grace A needs, with nothing
/// of their own to reclaim, and their reapers look at lifting. While A still recovers, a
/// public IP Y moves (`ctdb moveip`) from B to the third node J: Y's client reclaims there.
/// Ganesha 4.3 refuses reclaims for the rest of a grace period once it has asked to lift
/// and been refused, and a node that joined with nothing to reclaim asked at once: Y's
/// client got NFS4ERR_NO_GRACE (CI, a takeover during a restart's grace) until a joining
/// node gave Ganesha the placeholder entry, as a held one does. A's client reclaims; the
/// cluster lifts (6.5: within about a reaper tick; 4.3: at Grace_Period, the placeholder's
/// cost). Then A restarts again and dies for good while it needs grace: the survivors do not
/// stay in grace for it.
#[test]
#[serial]
fn a_node_that_joined_a_restarts_grace_takes_over_reclaims_and_a_dead_node_does_not_hold_it() {
    grace_lift(None);
}

#[test]
#[serial]
fn on_debian_13_a_node_that_joined_a_restarts_grace_takes_over_reclaims_and_a_dead_node_does_not_hold_it(
) {
    grace_lift(Some("trixie"));
}

fn grace_lift(debian: Option<&'static str>) {
    let grace_period = 25;
    let mut c = ClusterOpts {
        grace_period,
        debian,
        ..ClusterOpts::default()
    }
    .up();
    let holders = c.ip_holders(0).unwrap();
    let x = c.public_ips[0];
    let a_pnn = holders[&x].expect("X has a holder");
    let a = c.node_by_pnn(a_pnn).unwrap();
    let (y, b_pnn) = holders
        .iter()
        .find_map(|(ip, h)| h.filter(|h| *h != a_pnn).map(|h| (*ip, h)))
        .expect("an IP on another node");
    let j = (0..3)
        .find(|i| *i != a && c.nodes[*i].pnn != b_pnn)
        .unwrap();
    // Only A's restart is to put the cluster in grace, not a takeover run of the bring-up.
    common::wait_quiet(&c);
    let (mut one, f) = v41_lock_holder(&c, x, "early", "export/f41.txt");
    let (mut moved, g) = v41_lock_holder(&c, y, "moved", "export/y41.txt");

    let looked_before = reaper_looks(&c, j);
    c.kill_ganesha(a);
    c.start_ganesha(a).unwrap();
    // The others join the grace A needs (watcher, within about a second).
    let t = Instant::now();
    while !(0..3).all(|i| in_grace(&c, i)) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "not every node joined:\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("every node in grace {:?} after A restarted", t.elapsed());
    // J's reaper looks at lifting (Ganesha logs each look) while A still recovers.
    while reaper_looks(&c, j) <= looked_before {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "J's reaper never looked at lifting:\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    c.nodes[j]
        .ctdb(&["moveip", &y.to_string(), &c.nodes[j].pnn.to_string()])
        .unwrap();
    c.wait_ip_moved(y, b_pnn, j, Duration::from_secs(40))
        .unwrap_or_else(|e| panic!("{e}:\n{}", c.logs()));
    wait_log(&c, j, &format!("takeover of {y}"), Duration::from_secs(30));
    reclaim_v41(&c, &mut moved, &g);
    eprintln!(
        "Y's client reclaimed on J {:?} after A restarted; J's grace:\n{}",
        t.elapsed(),
        c.nodes[j]
            .ganesha_log()
            .lines()
            .filter(|l| l.contains("grace:") || l.contains("IN GRACE"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    reclaim_v41(&c, &mut one, &f);
    let bound = if debian.is_some() {
        Duration::from_secs(20)
    } else {
        Duration::from_secs(u64::from(grace_period) + 20)
    };
    let lifted = wait_grace_lifted(&c, &[0, 1, 2], bound, &mut [&mut one, &mut moved]);
    eprintln!("cluster-wide lift {lifted:?} after the last RECLAIM_COMPLETE (Grace_Period {grace_period} s)");

    // A restarts again; its client does not come back; A dies for good while it needs grace.
    c.kill_ganesha(a);
    c.start_ganesha(a).unwrap();
    let others: Vec<usize> = (0..3).filter(|i| *i != a).collect();
    let t = Instant::now();
    while !others.iter().all(|i| in_grace(&c, *i)) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "not every node joined:\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    c.kill_node(a);
    let dead = Instant::now();
    // CTDB's recovery after A's death holds the survivors for one takeover run; with the
    // placeholder that Ganesha 4.3 needs they leave grace at Grace_Period at the latest,
    // while A's record keeps saying it needs grace.
    while others.iter().any(|i| in_grace(&c, *i)) {
        assert!(
            dead.elapsed() < Duration::from_secs(u64::from(grace_period) + 25),
            "survivors still in grace {:?} after A died:\n{}",
            dead.elapsed(),
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("survivors left grace {:?} after A died", dead.elapsed());
    let status = Command::new(common::target_dir().join("ganesha-ctdb"))
        .args(["--store", "ctdb", "grace", "-X"])
        .env("CTDB_SOCKET", c.nodes[others[0]].socket())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    let a_line = text
        .lines()
        .find(|l| l.starts_with(&format!("|{}|", c.nodes[a].pnn)))
        .unwrap_or_default();
    assert!(
        a_line.starts_with(&format!("|{}|0|", c.nodes[a].pnn)),
        "A not live: {text}"
    );
    assert!(
        a_line.contains("|1|1|1|"),
        "A's record still needs grace: {text}"
    );
}

/// A node dies; the only client of its public IP X is NFSv4.1 and reclaims through X on
/// the taker, then sends RECLAIM_COMPLETE. Returns how long after that every live node was
/// out of grace. Nodes that held the cluster in grace during CTDB's takeover run give a
/// Ganesha that stops taking reclaims after a refused lift (4.3) a placeholder entry and
/// so stay in grace until Grace_Period; 6.5 with Sticky_Grace off (its default) needs none.
fn lift_after_crash_reclaim(debian: Option<&'static str>, grace_period: u32) -> Duration {
    let mut c = ClusterOpts {
        grace_period,
        debian,
        ..ClusterOpts::default()
    }
    .up();
    let x = c.public_ips[0];
    let a = c.node_by_pnn(c.holder(x, 0).unwrap().unwrap()).unwrap();
    let watch = (0..3).find(|i| *i != a).unwrap();
    let (mut one, f) = v41_lock_holder(&c, x, "lone", "export/f41.txt");

    let a_pnn = c.nodes[a].pnn;
    c.kill_node(a);
    let taker = c
        .wait_ip_moved(x, a_pnn, watch, Duration::from_secs(45))
        .unwrap_or_else(|e| panic!("{e}:\n{}", c.logs()));
    let taker = c.node_by_pnn(taker).unwrap();
    wait_log(
        &c,
        taker,
        &format!("takeover of {x}"),
        Duration::from_secs(20),
    );
    reclaim_v41(&c, &mut one, &f);
    let live: Vec<usize> = (0..3).filter(|i| *i != a).collect();
    let lifted = wait_grace_lifted(
        &c,
        &live,
        Duration::from_secs(u64::from(grace_period) + 25),
        &mut [&mut one],
    );
    eprintln!(
        "{}: every live node out of grace {lifted:?} after the taker's last RECLAIM_COMPLETE \
         (Grace_Period {grace_period} s)",
        debian.unwrap_or("Debian 12")
    );
    lifted
}

#[test]
#[serial]
fn on_debian_13_the_cluster_leaves_grace_once_the_takers_clients_reclaimed_after_a_crash() {
    let grace_period = 60;
    let lifted = lift_after_crash_reclaim(Some("trixie"), grace_period);
    assert!(
        lifted < Duration::from_secs(u64::from(grace_period) / 2),
        "Ganesha 6.5 needs no placeholder: the cluster should leave grace within a few \
         reaper ticks, not at Grace_Period ({lifted:?})"
    );
}

/// A Linux NFSv4.1 client through `x` (RECLAIM_COMPLETE sent) holding a write lock on
/// bytes 0-99 of `path`; the file as it opened it.
fn v41_lock_holder(
    c: &testbed::Cluster,
    x: std::net::Ipv4Addr,
    host: &str,
    path: &str,
) -> (Client, OpenFile) {
    let mut one = client(c, x, 1, &owners::linux_v41(1, host));
    one.establish().unwrap();
    one.reclaim_complete().unwrap();
    let f = one.open(path).unwrap();
    let mut locked = f.clone();
    one.lock(&mut locked, LockType::Write, 0, 100, false)
        .unwrap();
    (one, f)
}

/// How often node `i`'s Ganesha has looked at lifting its grace (nfs_try_lift_grace logs
/// each look).
fn reaper_looks(c: &testbed::Cluster, i: usize) -> usize {
    c.nodes[i].ganesha_log().matches("check grace:").count()
}

/// The client reconnects, reclaims its open and lock of `f`, and sends RECLAIM_COMPLETE.
fn reclaim_v41(c: &testbed::Cluster, one: &mut Client, f: &OpenFile) {
    one.disconnect();
    one.establish().unwrap();
    let mut r = one
        .reclaim_open(&f.fh)
        .unwrap_or_else(|e| panic!("OPEN CLAIM_PREVIOUS: {e}\n{}", c.logs()));
    one.lock(&mut r, LockType::Write, 0, 100, true)
        .unwrap_or_else(|e| panic!("LOCK reclaim: {e}\n{}", c.logs()));
    one.reclaim_complete().unwrap();
}

/// Waits (at most `limit`) until none of `nodes` is in grace, `clients` keeping their
/// leases; returns how long that took.
fn wait_grace_lifted(
    c: &testbed::Cluster,
    nodes: &[usize],
    limit: Duration,
    clients: &mut [&mut Client],
) -> Duration {
    let done = Instant::now();
    while nodes.iter().any(|i| in_grace(c, *i)) {
        assert!(
            done.elapsed() < limit,
            "still in grace {:?} after the last RECLAIM_COMPLETE:\n{}",
            done.elapsed(),
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
        for one in clients.iter_mut() {
            let _ = one.renew();
        }
    }
    done.elapsed()
}
