//! The faults the schedule draws, how each is injected on the testbed, and what brings the
//! cluster back afterwards. Node crashes free the node's locks only once CTDB has declared
//! the node dead, as docs/operations.md requires of the cluster filesystem (the testbed's
//! nodes share one local filesystem, which would drop a dead ganesha.nfsd's locks at once:
//! the node's Ganesha is frozen first and killed, "fenced", after the others saw the
//! node go). A ganesha.nfsd that dies alone is the documented unprotected window.

use super::checker::Checker;
use super::rng::Rng;
use nix::sys::signal::Signal;
use std::fmt;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use testbed::Cluster;

#[derive(Clone, Debug)]
pub enum Fault {
    /// SIGKILL of the node (ctdbd, then Ganesha once the others saw ctdbd go).
    Crash(usize),
    /// ganesha.nfsd alone SIGKILLed; restarted 2 s later (systemd's Restart=on-failure).
    GaneshaCrash(usize),
    /// `ctdb moveip <ip> <pnn of node>`.
    MoveIp(Ipv4Addr, usize),
    /// `ctdb disable` on the node; `ctdb enable` when restoring.
    Disable(usize),
    /// ctdbd SIGKILLed and started again after the delay, Ganesha running throughout.
    CtdbdRestart(usize, Duration),
    /// ctdbd and Ganesha SIGSTOPped for the duration (shorter than CTDB's keepalive
    /// limit), link up, then resumed: nothing should move.
    Hang(usize, Duration),
    /// ctdbd and Ganesha SIGSTOPped and the link taken down (a partitioned, hung node);
    /// once CTDB declares it dead it is fenced (both killed) and started again later.
    Fence(usize),
    /// ctdbd alone SIGSTOPped for the duration (a frozen store), Ganesha serving.
    FrozenCtdbd(usize, Duration),
    /// Every node crashes at once; all start again.
    ClusterRestart,
}

impl Fault {
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Crash(_) => "node crash",
            Fault::GaneshaCrash(_) => "ganesha.nfsd crash",
            Fault::MoveIp(..) => "ctdb moveip",
            Fault::Disable(_) => "ctdb disable/enable",
            Fault::CtdbdRestart(..) => "ctdbd restart",
            Fault::Hang(..) => "hung node (short)",
            Fault::Fence(_) => "fenced node",
            Fault::FrozenCtdbd(..) => "frozen ctdbd",
            Fault::ClusterRestart => "cluster restart",
        }
    }

    pub fn kinds() -> [&'static str; 9] {
        [
            "node crash",
            "ganesha.nfsd crash",
            "ctdb moveip",
            "ctdb disable/enable",
            "ctdbd restart",
            "hung node (short)",
            "fenced node",
            "frozen ctdbd",
            "cluster restart",
        ]
    }

    pub fn node(&self) -> Option<usize> {
        match self {
            Fault::Crash(n)
            | Fault::GaneshaCrash(n)
            | Fault::MoveIp(_, n)
            | Fault::Disable(n)
            | Fault::CtdbdRestart(n, _)
            | Fault::Hang(n, _)
            | Fault::Fence(n)
            | Fault::FrozenCtdbd(n, _) => Some(*n),
            Fault::ClusterRestart => None,
        }
    }

    /// Draws a fault. `second`: a fault added while the cluster is in grace from the first
    /// one (`busy`: nodes that one touches), drawn among those that start a grace.
    pub fn draw(rng: &mut Rng, nodes: usize, ips: &[Ipv4Addr], second: Option<&[usize]>) -> Fault {
        let free: Vec<usize> = (0..nodes)
            .filter(|n| !second.is_some_and(|busy| busy.contains(n)))
            .collect();
        let node = *rng.pick(&free).unwrap_or(&0);
        let ip = *rng.pick(ips).unwrap_or(&Ipv4Addr::UNSPECIFIED);
        if second.is_some() {
            return match rng.below(3) {
                0 => Fault::Crash(node),
                1 => Fault::GaneshaCrash(node),
                _ => Fault::MoveIp(ip, node),
            };
        }
        // Weights: crashes and planned moves are what users meet most.
        match rng.below(100) {
            0..=21 => Fault::Crash(node),
            22..=33 => Fault::GaneshaCrash(node),
            34..=49 => Fault::MoveIp(ip, node),
            50..=61 => Fault::Disable(node),
            62..=71 => Fault::CtdbdRestart(node, rng.millis(500, 4000)),
            72..=79 => Fault::Hang(node, rng.millis(1000, 6000)),
            80..=87 => Fault::Fence(node),
            88..=95 => Fault::FrozenCtdbd(node, rng.millis(2000, 10_000)),
            _ => Fault::ClusterRestart,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::MoveIp(ip, n) => write!(f, "{} {ip} to node {}", self.kind(), n + 1),
            Fault::CtdbdRestart(n, d) | Fault::Hang(n, d) | Fault::FrozenCtdbd(n, d) => {
                write!(
                    f,
                    "{} on node {} for {:.1} s",
                    self.kind(),
                    n + 1,
                    d.as_secs_f64()
                )
            }
            other => match other.node() {
                Some(n) => write!(f, "{} of node {}", self.kind(), n + 1),
                None => f.write_str(self.kind()),
            },
        }
    }
}

/// What must be done to bring the cluster back after a fault.
#[derive(Clone, Debug)]
pub enum Restore {
    /// Start ctdbd and Ganesha again.
    Restart(usize),
    /// Start Ganesha again (its supervisor does, if it has one).
    RestartGanesha(usize),
    Enable(usize),
}

/// Waits until a node other than `i` reports `i` disconnected (CTDB declared it dead).
fn wait_declared_dead(c: &Cluster, i: usize, limit: Duration) -> Result<Duration, String> {
    let t = Instant::now();
    let pnn = c.nodes[i].pnn.to_string();
    while t.elapsed() < limit {
        for (j, n) in c.nodes.iter().enumerate() {
            if j == i {
                continue;
            }
            if let Ok(out) = n.ctdb(&["-X", "status"]) {
                let dead = out.lines().skip(1).any(|l| {
                    let f: Vec<&str> = l.split('|').collect();
                    f.len() > 3 && f[1] == pnn && f[3] == "1"
                });
                if dead {
                    return Ok(t.elapsed());
                }
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("node {} not declared dead within {limit:?}", i + 1))
}

/// SIGKILLs node `i`'s ganesha.nfsd (and, when unsupervised, its wrapper) once CTDB has
/// declared the node dead and every other node's Ganesha is in grace: the fencing after
/// which a cluster filesystem frees the node's locks (docs/operations.md). A real one does
/// it after it saw the node fail and before CTDB can take the node's IPs over (CTDB's
/// recovery needs its lock on that filesystem, which waits for the filesystem's own
/// recovery); the survivors enter grace ≈1 s after the membership change, and the takeover
/// follows their hold.
fn fence_ganesha(c: &mut Cluster, i: usize, checker: &Checker) -> Result<(), String> {
    let took = wait_declared_dead(c, i, Duration::from_secs(90))?;
    let t = Instant::now();
    let others: Vec<usize> = (0..c.nodes.len())
        .filter(|j| *j != i && c.nodes[*j].ganesha_nfsd_pid().is_some())
        .collect();
    while !others
        .iter()
        .all(|j| c.ganesha_grace_state(*j) == Some(true))
        && t.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    checker.event(format!(
        "node {} declared dead by CTDB after {:.2} s, the others in grace {:.2} s later: fenced (its Ganesha killed)",
        i + 1,
        took.as_secs_f64(),
        t.elapsed().as_secs_f64()
    ));
    c.kill_ganesha(i);
    Ok(())
}

/// Injects `f`; returns what restoring needs.
pub fn inject(
    c: &mut Cluster,
    f: &Fault,
    supervised: bool,
    checker: &Checker,
) -> Result<Vec<Restore>, String> {
    checker.event(format!("inject: {f}"));
    Ok(match f {
        Fault::Crash(i) => {
            c.stop_ganesha(*i, true);
            c.kill_ctdbd(*i);
            fence_ganesha(c, *i, checker)?;
            vec![Restore::Restart(*i)]
        }
        Fault::GaneshaCrash(i) => {
            let at = Instant::now();
            // docs/operations.md: unprotected until every live node is in grace, ≈0.7 s;
            // counted up to 2 s.
            checker.declare(at, at + Duration::from_secs(2), "ganesha.nfsd died alone");
            c.crash_ganesha(*i);
            if supervised {
                vec![]
            } else {
                vec![Restore::RestartGanesha(*i)]
            }
        }
        Fault::MoveIp(ip, i) => {
            let pnn = c.nodes[*i].pnn.to_string();
            match c.nodes[*i].ctdb(&["moveip", &ip.to_string(), &pnn]) {
                Ok(_) => checker.event(format!("moveip {ip} to node {} done", i + 1)),
                // Already there, or CTDB refused (a recovery in progress): logged, the
                // step goes on (the checker still watches).
                Err(e) => checker.event(format!("moveip {ip}: {}", e.trim())),
            }
            vec![]
        }
        Fault::Disable(i) => {
            if let Err(e) = c.nodes[*i].ctdb(&["disable"]) {
                checker.event(format!("disable: {}", e.trim()));
            }
            vec![Restore::Enable(*i)]
        }
        Fault::CtdbdRestart(i, d) => {
            c.restart_ctdbd(*i, *d)?;
            vec![]
        }
        Fault::Hang(i, d) => {
            c.freeze_node(*i, true);
            std::thread::sleep(*d);
            c.freeze_node(*i, false);
            vec![]
        }
        Fault::Fence(i) => {
            c.freeze_node(*i, true);
            c.link(*i, false);
            fence_ganesha(c, *i, checker)?;
            c.kill_ctdbd(*i);
            vec![Restore::Restart(*i)]
        }
        Fault::FrozenCtdbd(i, d) => {
            c.signal_ctdbd(*i, Signal::SIGSTOP);
            std::thread::sleep(*d);
            c.signal_ctdbd(*i, Signal::SIGCONT);
            vec![]
        }
        Fault::ClusterRestart => {
            let n = c.nodes.len();
            for i in 0..n {
                c.stop_ganesha(i, true);
            }
            for i in 0..n {
                c.kill_ctdbd(i);
            }
            for i in 0..n {
                c.stop_ganesha(i, false);
                c.kill_ganesha(i);
            }
            (0..n).map(Restore::Restart).collect()
        }
    })
}

/// Brings the cluster back: restarts, enables, then waits until every node is healthy,
/// holds its IPs and listens on 2049.
pub fn restore(c: &mut Cluster, todo: &[Restore], checker: &Checker) -> Result<(), String> {
    let restart: Vec<usize> = todo
        .iter()
        .filter_map(|r| match r {
            Restore::Restart(i) => Some(*i),
            _ => None,
        })
        .collect();
    for i in &restart {
        c.start_ctdbd(*i)?;
    }
    for i in &restart {
        c.spawn_ganesha(*i)?;
    }
    for i in &restart {
        c.wait_ganesha(*i)?;
        checker.event(format!("node {} restarted", i + 1));
    }
    for r in todo {
        match r {
            Restore::RestartGanesha(i) => {
                std::thread::sleep(Duration::from_secs(2));
                c.kill_ganesha(*i);
                c.start_ganesha(*i)?;
                checker.event(format!("node {}: Ganesha restarted", i + 1));
            }
            Restore::Enable(i) => {
                c.nodes[*i].ctdb(&["enable"])?;
                checker.event(format!("node {} enabled", i + 1));
            }
            Restore::Restart(_) => {}
        }
    }
    // A supervised Ganesha comes back on its own; wait for every node's 2049.
    for i in 0..c.nodes.len() {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let up = c.nodes[i].ganesha_nfsd_pid().is_some()
                && nfs4_client::netns::connect(
                    Some(&c.nodes[i].ns),
                    "127.0.0.1:2049".parse().map_err(|_| "addr")?,
                    Duration::from_secs(1),
                )
                .is_ok();
            if up {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("node {}'s Ganesha is not back within 90 s", i + 1));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    c.wait_settled(Duration::from_secs(180), false)
}
