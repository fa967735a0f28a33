//! Randomized failover torture (issue 15): a real cluster (ctdbd + ganesha.nfsd per node,
//! one shared export), a population of NFSv4.0, NFSv4.1/4.2 and NFSv3/NLM clients holding
//! and churning byte-range locks through every public IP, faults drawn from a seeded
//! schedule, and an independent checker (checker.rs) that watches what clients are granted.
//! `cargo run --release --example torture -- --help` runs it; tests/torture.rs runs a short
//! fixed-seed schedule in the suite. docs/reliability.md has the results.

#![allow(dead_code)]

pub mod checker;
pub mod faults;
pub mod population;
pub mod rng;

use crate::common::{ClientStatd, ClusterOpts};
use checker::{Checker, Kind, Violation};
use faults::{Fault, Restore};
use nfs4_client::LockType;
use population::{Env, Population};
use rng::Rng;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use testbed::Cluster;

#[derive(Clone, Debug)]
pub struct Opts {
    pub seed: u64,
    pub failovers: usize,
    pub nodes: usize,
    /// Ganesha's own `fs` backend with CTDB 4.17's callout behaviour (the anchor).
    pub stock: bool,
    pub nlm: bool,
    pub grace: u32,
    /// Count violations and go on instead of stopping at the first.
    pub keep_going: bool,
    pub challengers: usize,
    /// Chance that a second fault hits while the cluster is in grace from the first.
    pub second_fault: f64,
    /// Skip the schedule's first steps (to replay a violation quickly).
    pub skip: usize,
    /// Set from outside (a signal): stop after the current step and tear down.
    pub interrupted: Arc<AtomicBool>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            seed: 1,
            failovers: 10,
            nodes: 3,
            stock: false,
            nlm: true,
            grace: 20,
            keep_going: false,
            challengers: 2,
            second_fault: 0.25,
            skip: 0,
            interrupted: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// One step of the schedule.
#[derive(Clone, Debug)]
pub struct Planned {
    pub fault: Fault,
    pub second: Option<(Duration, Fault)>,
}

impl std::fmt::Display for Planned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.fault)?;
        if let Some((d, s)) = &self.second {
            write!(f, ", then after {:.1} s {s}", d.as_secs_f64())?;
        }
        Ok(())
    }
}

/// The schedule a seed names (the same on every machine; nothing the run observes feeds
/// back into it).
pub fn plan(opts: &Opts) -> Vec<Planned> {
    let ips: Vec<Ipv4Addr> = (1..=opts.nodes as u8)
        .map(|i| Ipv4Addr::new(10, 77, 1, i))
        .collect();
    let mut rng = Rng::new(opts.seed);
    (0..opts.failovers)
        .map(|_| {
            let fault = Fault::draw(&mut rng, opts.nodes, &ips, None);
            let again = rng.chance(opts.second_fault);
            let after = rng.millis(500, 5000);
            let busy: Vec<usize> = fault.node().into_iter().collect();
            let second = Fault::draw(&mut rng, opts.nodes, &ips, Some(&busy));
            let starts_grace = matches!(
                fault,
                Fault::Crash(_)
                    | Fault::GaneshaCrash(_)
                    | Fault::MoveIp(..)
                    | Fault::Disable(_)
                    | Fault::Fence(_)
            );
            Planned {
                second: (again && starts_grace && opts.nodes > 2).then_some((after, second)),
                fault,
            }
        })
        .collect()
}

#[derive(Clone, Debug)]
pub struct StepResult {
    pub step: usize,
    pub planned: String,
    pub kind: &'static str,
    pub second: bool,
    /// From the fault until every public IP granted a newcomer's lock again (restarts and
    /// failback included).
    pub grace: Option<Duration>,
    /// From the fault until each reclaim of the step succeeded.
    pub reclaims: Vec<Duration>,
}

pub struct Report {
    pub opts: Opts,
    pub steps: Vec<StepResult>,
    pub violations: Vec<Violation>,
    pub elapsed: Duration,
    pub trace: Option<String>,
}

fn median_max(v: &mut [Duration]) -> String {
    if v.is_empty() {
        return "–".into();
    }
    v.sort();
    format!(
        "{:.1} / {:.1}",
        v[v.len() / 2].as_secs_f64(),
        v[v.len() - 1].as_secs_f64()
    )
}

impl Report {
    /// Violations outside every declared window.
    pub fn failures(&self) -> Vec<&Violation> {
        self.violations
            .iter()
            .filter(|v| v.declared.is_none())
            .collect()
    }

    /// The table docs/reliability.md shows: per fault kind, failovers, conflicts and lost
    /// reclaims (outside / inside declared windows), grace and reclaim times.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "| fault | failovers | conflicts | lost reclaims | other violations | in declared windows | grace s (median / max) | reclaim s (median / max) |\n|---|---|---|---|---|---|---|---|"
        );
        let mut rows: Vec<(String, Vec<&StepResult>)> = Fault::kinds()
            .iter()
            .map(|k| {
                (
                    k.to_string(),
                    self.steps.iter().filter(|s| s.kind == *k).collect(),
                )
            })
            .collect();
        rows.push((
            "… with a second fault in grace".into(),
            self.steps.iter().filter(|s| s.second).collect(),
        ));
        rows.push(("all".into(), self.steps.iter().collect()));
        for (name, steps) in rows {
            if steps.is_empty() {
                continue;
            }
            let nums: Vec<usize> = steps.iter().map(|s| s.step).collect();
            let of = |k: Kind, declared: bool| {
                self.violations
                    .iter()
                    .filter(|v| {
                        nums.contains(&v.step) && v.kind == k && v.declared.is_some() == declared
                    })
                    .count()
            };
            let other = of(Kind::NoNotify, false) + of(Kind::Stuck, false);
            let declared = of(Kind::Conflict, true) + of(Kind::LostReclaim, true);
            let mut grace: Vec<Duration> = steps.iter().filter_map(|s| s.grace).collect();
            let mut reclaims: Vec<Duration> =
                steps.iter().flat_map(|s| s.reclaims.clone()).collect();
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {} | {other} | {declared} | {} | {} |",
                steps.len(),
                of(Kind::Conflict, false),
                of(Kind::LostReclaim, false),
                median_max(&mut grace),
                median_max(&mut reclaims)
            );
        }
        s
    }
}

/// A newcomer's lock through `ip`: granted once that IP's node is out of grace.
fn granting(env: &Env, ip: Ipv4Addr) -> bool {
    let mut c = population::v4(
        env,
        ip,
        1,
        &format!("Linux NFSv4.1 probe-{}", ip.octets()[3]),
    );
    if c.establish().is_err() {
        return false;
    }
    let ok = c.reclaim_complete().is_ok()
        && match c.open(&format!("export/probe-{ip}.dat")) {
            Ok(mut f) => {
                let locked = c.lock(&mut f, LockType::Write, 0, 1, false).is_ok();
                if locked {
                    let _ = c.unlock(&mut f, 0, 1);
                }
                let _ = c.close(&mut f);
                locked
            }
            Err(_) => false,
        };
    let _ = c.destroy();
    ok
}

fn holders(c: &Cluster) -> BTreeMap<Ipv4Addr, Option<u32>> {
    (0..c.nodes.len())
        .find_map(|i| c.ip_holders(i).ok())
        .unwrap_or_default()
}

fn nfsd_pids(c: &Cluster) -> Vec<Option<i32>> {
    c.nodes.iter().map(|n| n.ganesha_nfsd_pid()).collect()
}

fn say(line: &str) {
    eprintln!("torture: {line}");
}

/// Runs the schedule `opts` names on a fresh cluster.
pub fn run(opts: &Opts) -> Result<Report, String> {
    let started = Instant::now();
    let schedule = plan(opts);
    say(&format!(
        "seed {} · {} failover(s) on {} nodes · {} backend · grace {} s · NLM {}",
        opts.seed,
        opts.failovers,
        opts.nodes,
        if opts.stock {
            "stock fs"
        } else {
            "ganesha-ctdb"
        },
        opts.grace,
        if opts.nlm { "on" } else { "off" }
    ));
    let mut c = ClusterOpts {
        grace_period: opts.grace,
        stock: opts.stock,
        nlm: opts.nlm,
        nodes: opts.nodes,
        public_ips: opts.nodes,
        // The package's systemd drop-in (ExecStopPost + Restart=on-failure after 2 s); the
        // stock backend has no exit marker: the harness restarts its Ganesha.
        supervise: (!opts.stock).then_some(Some(Duration::from_secs(2))),
        ..ClusterOpts::default()
    }
    .up();
    say(&format!(
        "cluster up after {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        c.dir.display()
    ));
    let ips = c.public_ips.clone();
    let statd = opts.nlm.then(|| ClientStatd::start(&c));
    let statd_log = statd.as_ref().map(|s| s.log.clone());
    for f in population::files(&ips, opts.nlm)
        .into_iter()
        .chain(ips.iter().map(|ip| format!("probe-{ip}.dat")))
    {
        std::fs::write(c.dir.join("export").join(&f), "data\n").map_err(|e| format!("{f}: {e}"))?;
    }
    let checker = Arc::new(Checker::default());
    let env = Env {
        bridge_ns: c.bridge_ns.clone(),
        export: c.dir.join("export"),
        statd_log,
        checker: checker.clone(),
        stop: Arc::new(AtomicBool::new(false)),
    };
    let pop = Population::start(env.clone(), &ips, opts.nlm, opts.challengers, opts.seed);
    let want = ips.len() * population::kinds(opts.nlm).iter().filter(|k| !k.2).count();
    let deadline = Instant::now() + Duration::from_secs(120);
    while checker.challengeable().len() < want {
        if Instant::now() > deadline {
            pop.stop();
            return Err(format!(
                "only {} of {want} holders got their locks within 120 s\n{}",
                checker.challengeable().len(),
                checker.trace(40)
            ));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    say(&format!(
        "{want} holders hold their locks; churners and {} challenger(s) running",
        opts.challengers
    ));
    let mut steps = Vec::new();
    let mut trace = None;
    for (n, p) in schedule.iter().enumerate().skip(opts.skip) {
        let step = n + 1;
        if opts.interrupted.load(std::sync::atomic::Ordering::Relaxed) {
            say(&format!(
                "interrupted before step {step}; tearing the cluster down"
            ));
            break;
        }
        let t0 = Instant::now();
        let before = holders(&c);
        let pids_before = nfsd_pids(&c);
        let notified_before: BTreeMap<Ipv4Addr, usize> = ips
            .iter()
            .map(|ip| (*ip, population::notifies(&env, *ip)))
            .collect();
        checker.begin_step(step, &p.to_string());
        let acted = (|| -> Result<_, String> {
            let mut todo: Vec<Restore> = faults::inject(&mut c, &p.fault, !opts.stock, &checker)?;
            if let Some((after, f2)) = &p.second {
                std::thread::sleep(*after);
                todo.extend(faults::inject(&mut c, f2, !opts.stock, &checker)?);
            }
            // Let CTDB act on it before anything is brought back.
            std::thread::sleep(Duration::from_secs(3));
            let mid = (holders(&c), nfsd_pids(&c));
            faults::restore(&mut c, &todo, &checker)?;
            Ok(mid)
        })();
        let (mid, pids_mid) = match acted {
            Ok(mid) => mid,
            Err(e) => {
                // Keep the cluster's logs for the post-mortem.
                c.spec.keep = true;
                pop.stop();
                return Err(format!(
                    "seed {} step {step} ({p}): {e}\ntrace:\n{}",
                    opts.seed,
                    checker.trace(60)
                ));
            }
        };
        let restored = Instant::now();
        // Liveness: every IP grants a newcomer again within Grace_Period of the last
        // grace-starting event (the failback after a restore) plus CTDB's own delays.
        let bound = Duration::from_secs(u64::from(opts.grace) + 90);
        let mut open: Vec<Ipv4Addr> = ips.clone();
        let grace = loop {
            open.retain(|ip| !granting(&env, *ip));
            if open.is_empty() {
                break Some(t0.elapsed());
            }
            if restored.elapsed() > bound {
                checker.violation(
                    Kind::Stuck,
                    format!(
                        "{open:?} still refuse newcomers {bound:?} after the cluster was restored"
                    ),
                );
                break None;
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        while !checker.still_recovering().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(300));
        }
        let stuck = checker.still_recovering();
        if !stuck.is_empty() {
            checker.violation(
                Kind::Stuck,
                format!("clients still recovering 90 s after grace ended: {stuck:?}"),
            );
        }
        if opts.nlm {
            let after = holders(&c);
            let pids_after = nfsd_pids(&c);
            for ip in &ips {
                let node_of = |h: &BTreeMap<Ipv4Addr, Option<u32>>| {
                    h.get(ip).copied().flatten().and_then(|p| c.node_by_pnn(p))
                };
                let restarted = |i: Option<usize>| {
                    i.is_some_and(|i| {
                        pids_before[i] != pids_mid[i]
                            || pids_mid[i] != pids_after[i]
                            || pids_before[i] != pids_after[i]
                    })
                };
                let moved = before.get(ip) != mid.get(ip) || mid.get(ip) != after.get(ip);
                if !(moved || restarted(node_of(&before)) || restarted(node_of(&after))) {
                    continue;
                }
                let deadline = Instant::now() + Duration::from_secs(30);
                while population::notifies(&env, *ip) <= notified_before[ip]
                    && Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(300));
                }
                if population::notifies(&env, *ip) <= notified_before[ip] {
                    checker.violation(
                        Kind::NoNotify,
                        format!("{ip} moved or its Ganesha restarted, and no SM_NOTIFY from it reached the NLM host"),
                    );
                }
            }
        }
        pop.sweep(&ips, opts.nlm);
        let reclaims = checker.step_reclaims();
        let violations: Vec<Violation> = checker
            .violations()
            .into_iter()
            .filter(|v| v.step == step)
            .collect();
        say(&format!(
            "step {step}/{}: {p} · grace {} · {} reclaim(s){} · {} violation(s){} · {:.0} s",
            schedule.len(),
            grace
                .map(|g| format!("{:.1} s", g.as_secs_f64()))
                .unwrap_or("STUCK".into()),
            reclaims.len(),
            reclaims
                .iter()
                .max()
                .map(|m| format!(" (last {:.1} s)", m.as_secs_f64()))
                .unwrap_or_default(),
            violations.len(),
            if violations.iter().all(|v| v.declared.is_some()) && !violations.is_empty() {
                " (all in declared windows)"
            } else {
                ""
            },
            t0.elapsed().as_secs_f64()
        ));
        for v in &violations {
            say(&format!("  {v}"));
        }
        steps.push(StepResult {
            step,
            planned: p.to_string(),
            kind: p.fault.kind(),
            second: p.second.is_some(),
            grace,
            reclaims,
        });
        if violations.iter().any(|v| v.declared.is_none()) {
            // Keep the cluster's logs for the post-mortem.
            c.spec.keep = true;
            say(&format!("trace of step {step}:\n{}", checker.trace(60)));
        }
        if violations.iter().any(|v| v.declared.is_none()) && !opts.keep_going {
            let t = checker.trace(80);
            say(&format!(
                "VIOLATION at seed {} step {step} ({p}):\n{}\ntrace (last events):\n{t}\n{}",
                opts.seed,
                violations
                    .iter()
                    .map(|v| format!("  {v}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                c.logs()
            ));
            trace = Some(t);
            break;
        }
    }
    pop.stop();
    Ok(Report {
        opts: opts.clone(),
        steps,
        violations: checker.violations(),
        elapsed: started.elapsed(),
        trace,
    })
}
