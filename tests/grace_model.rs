//! Exhaustive explicit-state check of the cluster grace protocol (design §5), driving the real
//! decision functions of `ganesha_ctdb_recov::grace`.
//!
//! World: three nodes A, B, C and two or three public IPs, each IP with one client that holds a
//! lock through it. Per node: alive or dead, its `grace@` record as last written, whether
//! Ganesha is in grace there, and reads it has made but not yet acted on. Per IP: who holds it
//! (or is releasing it, or released it and waits for the taker) and the state of its client's
//! lock: `Held`, `Fenced` (its server died; the cluster filesystem still holds the lock) or
//! `Exposed` (nobody holds it until the client reclaims: a conflicting grant now corrupts data).
//!
//! Actions: a node crashes (CTDB moves each of its IPs to a live node, which `start`s grace);
//! a dead node restarts (`restart`); a planned move (the releaser `start`s, reads
//! `may_release_ip`, later drops its clients' state, then a node takes the IP and `start`s);
//! the reaper of a node out of grace reads the records (`join`/`done_enforcing`) and acts on
//! that read later; `try_lift_grace` on a node in grace whose own reclaim is over (Ganesha only
//! asks then); a client reclaims through the node now holding its IP while it is in grace;
//! Grace_Period runs out on a node (its unreclaimed clients lose their right); the cluster
//! filesystem lets a crashed node's locks go, once every live node enforces (assumption A1).
//!
//! Late observations: `join` and `may_release_ip` are decided on a read and applied later, with
//! any other actions in between, so a node can act on a view that is many steps old. Only
//! `try_lift_grace` is one step (one store transaction); `non_atomic_lift_breaks_s1` shows
//! that splitting it loses S1.
//!
//! Checked: S1 in every reachable state (an `Exposed` lock ⇒ every live node in grace); a
//! node's epoch never goes backwards; L1/L2: with no more crashes, restarts or new moves, every
//! run of the remaining actions ends with no live node in grace (no cycles, no stuck states),
//! and the longest such run is reported.
//!
//! The checker can fail: each `*_breaks_s1` / `*_never_ends_grace` test swaps one rule for a
//! plausible wrong one (stock Ganesha's lift, a non-atomic lift, enforcing cleared after the
//! lift, a drop without waiting, clearing need only when lifting, counting dead nodes) and
//! expects a counterexample, printed with `-- --nocapture` like the state counts.
//! `GRACE_MODEL_BUDGET=crashes,restarts,moves` deepens the correct-protocol runs.
//!
//! A1: a crashed node's locks stay fenced until every live node enforces. Either the cluster
//! filesystem keeps them until the taker releases them after `grace_enforcing`, or CTDB's
//! `startrecovery` (all nodes, before any `takeip`) puts every node in grace. Without one of the
//! two, S1 cannot hold in the seconds before the other nodes' reapers join.

use ganesha_ctdb_recov::grace::{self, ClusterView, NodeGrace};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::Instant;

const N: usize = 3;
const MAX_IPS: usize = 3;
type Node = u8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rules {
    /// The functions of `grace` as they are meant to be called.
    Correct,
    /// Stock Ganesha: lift as soon as our own reclaim is over, whoever else recovers.
    StockLift,
    /// Clear `need_grace` only when `may_lift` says yes.
    ClearNeedOnlyWhenLifting,
    /// `try_lift_grace` decided on a read, written and acted on later.
    NonAtomicLift,
    /// Ignore membership: dead nodes' records count.
    DeadNodesCount,
    /// A releasing node drops its clients' state without waiting for `may_release_ip`.
    DropWithoutWaiting,
    /// The lift clears `need_grace` only; `enforcing` is cleared later (`done_enforcing` on the
    /// reaper, as if `end_grace` had written it only when nobody needs grace any more).
    EnforcingClearedLater,
}

#[derive(Clone, Copy)]
struct Config {
    rules: Rules,
    /// Initial holder of each IP.
    owners: &'static [Node],
    max_crashes: u8,
    max_restarts: u8,
    max_moves: u8,
    /// Stop at the first S1 violation (for the broken rules).
    stop_at_s1: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Lock {
    Held,
    Fenced,
    Exposed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum At {
    Held(Node),
    Releasing {
        from: Node,
        may_drop: bool,
    },
    InFlight(Node),
    Unhosted,
    /// No such IP in this configuration.
    Unused,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Ip {
    at: At,
    lock: Lock,
}

/// A read of every record and of membership, as some node made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Snap {
    recs: [NodeGrace; N],
    live: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct NodeState {
    alive: bool,
    rec: NodeGrace,
    in_grace: bool,
    /// maybe_start_grace read the records; its decision is not applied yet.
    join_read: Option<Snap>,
    /// NonAtomicLift only: try_lift_grace read the records.
    lift_read: Option<Snap>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct State {
    nodes: [NodeState; N],
    /// Clients are anonymous, so the list is kept sorted (see `canonical`).
    ips: [Ip; MAX_IPS],
    crashes: u8,
    restarts: u8,
    moves: u8,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Action {
    Crash { node: Node, takers: Vec<Node> },
    Restart(Node),
    MoveBegin { ip: usize, from: Node },
    ReleaseRead { ip: usize },
    ReleaseDrop { ip: usize },
    Take { ip: usize, to: Node },
    ReaperRead(Node),
    ReaperAct(Node),
    TryLift(Node),
    LiftRead(Node),
    LiftAct(Node),
    Reclaim { ip: usize },
    Timeout(Node),
    FsRelease { ip: usize },
}

impl Action {
    /// Allowed once crashes, restarts and new moves have stopped (L1/L2 runs).
    fn is_progress(&self) -> bool {
        !matches!(
            self,
            Action::Crash { .. } | Action::Restart(_) | Action::MoveBegin { .. }
        )
    }
}

fn name(n: Node) -> char {
    (b'A' + n) as char
}

fn nodes() -> impl Iterator<Item = Node> {
    0..N as Node
}

fn view_of(snap: &Snap, rules: Rules) -> ClusterView<Node> {
    let live = if rules == Rules::DeadNodesCount {
        (1 << N) - 1
    } else {
        snap.live
    };
    ClusterView {
        records: nodes().map(|n| (n, snap.recs[n as usize])).collect(),
        live: nodes().filter(|n| live & (1 << n) != 0).collect(),
    }
}

impl State {
    fn initial(cfg: &Config) -> State {
        let node = NodeState {
            alive: true,
            rec: NodeGrace::default(),
            in_grace: false,
            join_read: None,
            lift_read: None,
        };
        let mut ips = [Ip {
            at: At::Unused,
            lock: Lock::Held,
        }; MAX_IPS];
        for (ip, &o) in ips.iter_mut().zip(cfg.owners) {
            ip.at = At::Held(o);
        }
        State {
            nodes: [node; N],
            ips,
            crashes: 0,
            restarts: 0,
            moves: 0,
        }
        .canonical()
    }

    /// One representative per symmetry class: nodes are interchangeable (their roles are in the
    /// state), clients too, and only differences between epochs matter to `grace` (a new grace
    /// is the highest epoch + 1). Cuts the state space about sixfold.
    fn canonical(&self) -> State {
        const PERMS: [[Node; N]; 6] = [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ];
        let mut base = *self;
        let low = base
            .nodes
            .iter()
            .flat_map(|n| {
                let reads = n.join_read.iter().chain(n.lift_read.iter());
                std::iter::once(n.rec.epoch).chain(reads.flat_map(|r| r.recs.map(|x| x.epoch)))
            })
            .min()
            .unwrap_or(0);
        for n in &mut base.nodes {
            n.rec.epoch -= low;
            for r in n.join_read.iter_mut().chain(n.lift_read.iter_mut()) {
                for x in &mut r.recs {
                    x.epoch -= low;
                }
            }
        }
        let mut best: Option<State> = None;
        for p in PERMS {
            let m = |n: Node| p[n as usize];
            let mask = |live: u8| {
                nodes()
                    .filter(|&n| live & (1 << n) != 0)
                    .fold(0u8, |acc, n| acc | 1 << m(n))
            };
            let snap = |s: Snap| {
                let mut recs = s.recs;
                for n in nodes() {
                    recs[m(n) as usize] = s.recs[n as usize];
                }
                Snap {
                    recs,
                    live: mask(s.live),
                }
            };
            let mut t = base;
            for n in nodes() {
                let x = base.nodes[n as usize];
                t.nodes[m(n) as usize] = NodeState {
                    join_read: x.join_read.map(snap),
                    lift_read: x.lift_read.map(snap),
                    ..x
                };
            }
            for ip in &mut t.ips {
                ip.at = match ip.at {
                    At::Held(h) => At::Held(m(h)),
                    At::Releasing { from, may_drop } => At::Releasing {
                        from: m(from),
                        may_drop,
                    },
                    At::InFlight(f) => At::InFlight(m(f)),
                    other => other,
                };
            }
            t.ips.sort_unstable();
            if best.map_or(true, |b| t < b) {
                best = Some(t);
            }
        }
        best.unwrap_or(base)
    }

    fn node(&mut self, n: Node) -> &mut NodeState {
        &mut self.nodes[n as usize]
    }

    fn alive(&self, n: Node) -> bool {
        self.nodes[n as usize].alive
    }

    fn snap(&self) -> Snap {
        let mut live = 0;
        for n in nodes() {
            if self.alive(n) {
                live |= 1 << n;
            }
        }
        Snap {
            recs: self.nodes.map(|x| x.rec),
            live,
        }
    }

    fn view(&self, rules: Rules) -> ClusterView<Node> {
        view_of(&self.snap(), rules)
    }

    /// An old read, with our own record as it is now: a node always knows its own record.
    fn stale_view(&self, snap: &Snap, me: Node, rules: Rules) -> ClusterView<Node> {
        let mut snap = *snap;
        snap.recs[me as usize] = self.nodes[me as usize].rec;
        view_of(&snap, rules)
    }

    /// Ganesha's own reclaim condition on `n`: every client it recovers has reclaimed (or lost
    /// its right), and no IP it released is still waiting for its taker.
    fn reclaim_done(&self, n: Node) -> bool {
        self.ips.iter().all(|ip| match ip.at {
            At::Held(h) => h != n || ip.lock == Lock::Held,
            At::Releasing { from, .. } | At::InFlight(from) => from != n,
            At::Unhosted | At::Unused => true,
        })
    }

    fn start(&mut self, n: Node, rules: Rules) {
        let rec = grace::start(&self.view(rules), &n);
        let node = self.node(n);
        node.rec = rec;
        node.in_grace = true;
    }

    fn s1_holds(&self) -> bool {
        !self.ips.iter().any(|ip| ip.lock == Lock::Exposed)
            || self.nodes.iter().all(|n| !n.alive || n.in_grace)
    }

    fn quiescent(&self) -> bool {
        self.nodes.iter().all(|n| !n.alive || !n.in_grace)
    }

    fn successors(&self, cfg: &Config) -> Vec<(Action, State)> {
        let rules = cfg.rules;
        let mut out = Vec::new();

        for n in nodes() {
            let me = self.nodes[n as usize];
            if me.alive && self.crashes < cfg.max_crashes {
                self.crash(n, rules, &mut out);
            }
            if !me.alive && self.restarts < cfg.max_restarts {
                let mut t = *self;
                t.restarts += 1;
                t.node(n).alive = true;
                let rec = grace::restart(&t.view(rules), &n);
                *t.node(n) = NodeState {
                    alive: true,
                    rec,
                    in_grace: true,
                    join_read: None,
                    lift_read: None,
                };
                for ip in &mut t.ips {
                    if ip.at == At::Unhosted {
                        ip.at = At::Held(n);
                    }
                }
                out.push((Action::Restart(n), t));
            }
            if !me.alive {
                continue;
            }
            let view = self.view(rules);
            if !me.in_grace && me.join_read.is_none() {
                // A read that decides nothing changes nothing: only keep the ones that act.
                if grace::join(&view, &n).is_some() || grace::done_enforcing(&view, &n).is_some() {
                    let mut t = *self;
                    t.node(n).join_read = Some(self.snap());
                    out.push((Action::ReaperRead(n), t));
                }
            }
            if let Some(snap) = me.join_read {
                let mut t = *self;
                t.node(n).join_read = None;
                // Ganesha only calls maybe_start_grace out of grace; a start since the read
                // makes the old decision moot.
                if !me.in_grace {
                    let v = self.stale_view(&snap, n, rules);
                    if let Some(rec) = grace::join(&v, &n) {
                        t.node(n).rec = rec;
                        t.node(n).in_grace = true;
                    } else if let Some(rec) = grace::done_enforcing(&v, &n) {
                        t.node(n).rec = rec;
                    }
                }
                out.push((Action::ReaperAct(n), t));
            }
            if me.in_grace && self.reclaim_done(n) {
                self.try_lift(n, cfg, &mut out);
            }
            if let Some(snap) = me.lift_read {
                let mut t = *self;
                t.node(n).lift_read = None;
                if me.in_grace && self.reclaim_done(n) {
                    let v = self.stale_view(&snap, n, rules);
                    let r = grace::try_lift_grace(&v, &n, true);
                    if let Some(rec) = r.write {
                        t.node(n).rec = rec;
                    }
                    if r.lift {
                        t.node(n).in_grace = false;
                    }
                }
                out.push((Action::LiftAct(n), t));
            }
            if me.in_grace
                && self
                    .ips
                    .iter()
                    .any(|ip| ip.at == At::Held(n) && ip.lock != Lock::Held)
            {
                let mut t = *self;
                for ip in &mut t.ips {
                    if ip.at == At::Held(n) {
                        ip.lock = Lock::Held;
                    }
                }
                out.push((Action::Timeout(n), t));
            }
        }

        for (i, ip) in self.ips.iter().enumerate() {
            match ip.at {
                At::Held(from) => {
                    if self.alive(from)
                        && self.moves < cfg.max_moves
                        && nodes().any(|o| o != from && self.alive(o))
                    {
                        let mut t = *self;
                        t.moves += 1;
                        t.start(from, rules);
                        t.ips[i].at = At::Releasing {
                            from,
                            may_drop: false,
                        };
                        out.push((Action::MoveBegin { ip: i, from }, t));
                    }
                    if ip.lock != Lock::Held
                        && self.alive(from)
                        && self.nodes[from as usize].in_grace
                    {
                        let mut t = *self;
                        t.ips[i].lock = Lock::Held;
                        out.push((Action::Reclaim { ip: i }, t));
                    }
                }
                At::Releasing {
                    from,
                    may_drop: false,
                } => {
                    let ok = rules == Rules::DropWithoutWaiting
                        || grace::may_release_ip(&self.view(rules), &from);
                    if ok {
                        let mut t = *self;
                        t.ips[i].at = At::Releasing {
                            from,
                            may_drop: true,
                        };
                        out.push((Action::ReleaseRead { ip: i }, t));
                    }
                }
                At::Releasing {
                    from,
                    may_drop: true,
                } => {
                    let mut t = *self;
                    t.ips[i].at = At::InFlight(from);
                    if t.ips[i].lock == Lock::Held {
                        t.ips[i].lock = Lock::Exposed;
                    }
                    out.push((Action::ReleaseDrop { ip: i }, t));
                }
                At::InFlight(_) => {
                    for to in nodes().filter(|&o| self.alive(o)) {
                        let mut t = *self;
                        t.ips[i].at = At::Held(to);
                        t.start(to, rules);
                        out.push((Action::Take { ip: i, to }, t));
                    }
                }
                At::Unhosted | At::Unused => {}
            }
            if ip.lock == Lock::Fenced && grace::enforcing_everywhere(&self.view(rules)) {
                let mut t = *self;
                t.ips[i].lock = Lock::Exposed;
                out.push((Action::FsRelease { ip: i }, t));
            }
        }
        out
    }

    fn crash(&self, n: Node, rules: Rules, out: &mut Vec<(Action, State)>) {
        let mut t = *self;
        t.crashes += 1;
        *t.node(n) = NodeState {
            alive: false,
            in_grace: false,
            join_read: None,
            lift_read: None,
            ..self.nodes[n as usize]
        };
        let mut moving = Vec::new();
        for (i, ip) in t.ips.iter_mut().enumerate() {
            match ip.at {
                At::Held(h) | At::Releasing { from: h, .. } if h == n => {
                    if ip.lock == Lock::Held {
                        ip.lock = Lock::Fenced;
                    }
                    moving.push(i);
                }
                At::InFlight(h) if h == n => moving.push(i),
                _ => {}
            }
        }
        let takers: Vec<Node> = nodes().filter(|&o| t.alive(o)).collect();
        if moving.is_empty() || takers.is_empty() {
            for &i in &moving {
                t.ips[i].at = At::Unhosted;
            }
            out.push((
                Action::Crash {
                    node: n,
                    takers: Vec::new(),
                },
                t,
            ));
            return;
        }
        // CTDB may spread the IPs over several nodes: try every assignment.
        let combos = takers.len().pow(moving.len() as u32);
        for mut c in 0..combos {
            let mut u = t;
            let mut chosen = Vec::new();
            for &i in &moving {
                let to = takers[c % takers.len()];
                c /= takers.len();
                u.ips[i].at = At::Held(to);
                chosen.push(to);
            }
            let mut started = chosen.clone();
            started.sort_unstable();
            started.dedup();
            for &to in &started {
                u.start(to, rules);
            }
            out.push((
                Action::Crash {
                    node: n,
                    takers: chosen,
                },
                u,
            ));
        }
    }

    fn try_lift(&self, n: Node, cfg: &Config, out: &mut Vec<(Action, State)>) {
        let me = self.nodes[n as usize];
        let view = self.view(cfg.rules);
        let mut t = *self;
        match cfg.rules {
            Rules::Correct | Rules::DeadNodesCount | Rules::DropWithoutWaiting => {
                let r = grace::try_lift_grace(&view, &n, true);
                if let Some(rec) = r.write {
                    t.node(n).rec = rec;
                }
                if r.lift {
                    t.node(n).in_grace = false;
                }
            }
            Rules::EnforcingClearedLater => {
                let r = grace::try_lift_grace(&view, &n, true);
                if let Some(rec) = r.write {
                    t.node(n).rec = NodeGrace {
                        enforcing: me.rec.enforcing,
                        ..rec
                    };
                }
                if r.lift {
                    t.node(n).in_grace = false;
                }
            }
            Rules::StockLift => {
                t.node(n).rec = NodeGrace {
                    need_grace: false,
                    enforcing: false,
                    ..me.rec
                };
                t.node(n).in_grace = false;
            }
            Rules::ClearNeedOnlyWhenLifting => {
                if grace::may_lift(&view, &n, true) {
                    t.node(n).rec = NodeGrace {
                        need_grace: false,
                        enforcing: false,
                        ..me.rec
                    };
                    t.node(n).in_grace = false;
                }
            }
            Rules::NonAtomicLift => {
                if me.lift_read.is_none() {
                    t.node(n).lift_read = Some(self.snap());
                    out.push((Action::LiftRead(n), t));
                }
                return;
            }
        }
        if t != *self {
            out.push((Action::TryLift(n), t));
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for n in nodes() {
            let x = &self.nodes[n as usize];
            write!(
                f,
                "{}{}[e{}{}{}]{}{} ",
                name(n),
                if x.alive { "" } else { "✝" },
                x.rec.epoch,
                if x.rec.need_grace { " need" } else { "" },
                if x.rec.enforcing { " enf" } else { "" },
                if x.alive && x.in_grace { "G" } else { "" },
                if x.join_read.is_some() || x.lift_read.is_some() {
                    "r"
                } else {
                    ""
                },
            )?;
        }
        for (i, ip) in self.ips.iter().enumerate() {
            let at = match ip.at {
                At::Held(h) => format!("{}", name(h)),
                At::Releasing { from, may_drop } => {
                    format!("{}>{}", name(from), if may_drop { "ok" } else { "?" })
                }
                At::InFlight(from) => format!("{}>…", name(from)),
                At::Unhosted => "-".into(),
                At::Unused => continue,
            };
            write!(f, "| ip{i}@{at} {:?} ", ip.lock)?;
        }
        Ok(())
    }
}

struct Outcome {
    states: usize,
    progress_edges: usize,
    /// Shortest path to a state breaking S1 (or an epoch going backwards).
    s1: Option<Vec<String>>,
    /// Shortest path to a state from which no progress run reaches quiescence.
    stuck: Option<Vec<String>>,
    /// States from which some progress run loops forever or gets stuck out of quiescence.
    unending: usize,
    /// Longest progress run from any reachable state to quiescence.
    longest: usize,
    secs: f64,
}

fn explore(cfg: &Config) -> Outcome {
    let began = Instant::now();
    let init = State::initial(cfg);
    let mut index: HashMap<State, u32> = HashMap::new();
    let mut states: Vec<State> = Vec::new();
    let mut parent: Vec<u32> = Vec::new();
    let mut progress: Vec<Vec<u32>> = Vec::new();
    index.insert(init, 0);
    states.push(init);
    parent.push(0);
    progress.push(Vec::new());
    let mut s1 = None;
    let mut queue = VecDeque::from([0u32]);
    while let Some(i) = queue.pop_front() {
        let s = states[i as usize];
        for (action, t) in s.successors(cfg) {
            let bad_epoch =
                nodes().any(|n| t.nodes[n as usize].rec.epoch < s.nodes[n as usize].rec.epoch);
            let t = t.canonical();
            let j = match index.get(&t) {
                Some(&j) => j,
                None => {
                    let j = states.len() as u32;
                    index.insert(t, j);
                    states.push(t);
                    parent.push(i);
                    progress.push(Vec::new());
                    queue.push_back(j);
                    j
                }
            };
            if action.is_progress() {
                progress[i as usize].push(j);
            }
            if s1.is_none() && (!t.s1_holds() || bad_epoch) {
                let mut tr = trace(cfg, &states, &parent, j);
                if bad_epoch {
                    tr = trace(cfg, &states, &parent, i);
                    tr.push(format!("{action:?} (names up to symmetry)\n    => {t}"));
                    tr.push("an epoch went backwards".into());
                }
                s1 = Some(tr);
                if cfg.stop_at_s1 {
                    return Outcome {
                        states: states.len(),
                        progress_edges: 0,
                        s1,
                        stuck: None,
                        unending: 0,
                        longest: 0,
                        secs: began.elapsed().as_secs_f64(),
                    };
                }
            }
        }
    }

    // L1/L2: which states can reach quiescence using progress actions only (backwards search).
    let count = states.len();
    let mut reverse: Vec<Vec<u32>> = vec![Vec::new(); count];
    let mut edges = 0;
    for (i, succ) in progress.iter().enumerate() {
        for &j in succ {
            reverse[j as usize].push(i as u32);
            edges += 1;
        }
    }
    let mut reaches = vec![false; count];
    let mut work: VecDeque<u32> = VecDeque::new();
    for (i, s) in states.iter().enumerate() {
        if s.quiescent() {
            reaches[i] = true;
            work.push_back(i as u32);
        }
    }
    while let Some(j) = work.pop_front() {
        for &i in &reverse[j as usize] {
            if !reaches[i as usize] {
                reaches[i as usize] = true;
                work.push_back(i);
            }
        }
    }
    let stuck = (0..count)
        .find(|&i| !reaches[i])
        .map(|i| trace(cfg, &states, &parent, i as u32));

    // Every run ends well: settle quiescent states, then any state all of whose progress
    // successors are settled. What is left has a run that loops or gets stuck.
    let mut longest = vec![0usize; count];
    let mut pending: Vec<usize> = progress.iter().map(Vec::len).collect();
    let mut settled = vec![false; count];
    let mut ready: VecDeque<u32> = (0..count as u32)
        .filter(|&i| states[i as usize].quiescent())
        .collect();
    while let Some(j) = ready.pop_front() {
        settled[j as usize] = true;
        for &i in &reverse[j as usize] {
            let i = i as usize;
            if states[i].quiescent() {
                continue;
            }
            longest[i] = longest[i].max(longest[j as usize] + 1);
            pending[i] -= 1;
            if pending[i] == 0 {
                ready.push_back(i as u32);
            }
        }
    }
    let unending = settled.iter().filter(|&&s| !s).count();
    Outcome {
        states: count,
        progress_edges: edges,
        s1,
        stuck,
        unending,
        longest: longest.into_iter().max().unwrap_or(0),
        secs: began.elapsed().as_secs_f64(),
    }
}

/// The actions from the initial state to `i`, each with the state it led to. States are
/// stored up to symmetry; the trace is replayed concretely so that names stay put.
fn trace(cfg: &Config, states: &[State], parent: &[u32], i: u32) -> Vec<String> {
    let mut path = vec![i];
    let mut k = i;
    while k != 0 {
        k = parent[k as usize];
        path.push(k);
    }
    path.reverse();
    let mut here = states[0];
    let mut out = vec![format!("start\n    => {here}")];
    for &k in &path[1..] {
        let Some((action, next)) = here
            .successors(cfg)
            .into_iter()
            .find(|(_, t)| t.canonical() == states[k as usize])
        else {
            out.push("? (no step found)".into());
            break;
        };
        out.push(format!("{action:?}\n    => {next}"));
        here = next;
    }
    out
}

fn report(label: &str, o: &Outcome) {
    println!(
        "{label}: {} states, {} progress edges, longest run to quiescence {} steps, {:.1} s",
        o.states, o.progress_edges, o.longest, o.secs
    );
}

fn show(trace: &[String]) -> String {
    trace.join("\n")
}

/// `GRACE_MODEL_BUDGET=crashes,restarts,moves` overrides the bounds of the correct-protocol
/// runs, for deeper checks in release mode.
fn with_budget(cfg: Config) -> Config {
    let Ok(text) = std::env::var("GRACE_MODEL_BUDGET") else {
        return cfg;
    };
    let b: Vec<u8> = text
        .split(',')
        .filter_map(|x| x.trim().parse().ok())
        .collect();
    match b[..] {
        [max_crashes, max_restarts, max_moves] => Config {
            max_crashes,
            max_restarts,
            max_moves,
            ..cfg
        },
        _ => panic!("GRACE_MODEL_BUDGET={text:?}: want crashes,restarts,moves"),
    }
}

fn assert_correct(label: &str, cfg: Config) {
    let cfg = with_budget(cfg);
    let label = format!(
        "{label} (≤{} crashes, ≤{} restarts, ≤{} moves)",
        cfg.max_crashes, cfg.max_restarts, cfg.max_moves
    );
    let label = label.as_str();
    let o = explore(&cfg);
    report(label, &o);
    if let Some(t) = &o.s1 {
        panic!("{label}: S1 violated:\n{}", show(t));
    }
    if let Some(t) = &o.stuck {
        panic!("{label}: grace never ends from:\n{}", show(t));
    }
    assert_eq!(o.unending, 0, "{label}: some progress runs never end");
}

const CORRECT: Config = Config {
    rules: Rules::Correct,
    owners: &[0, 1, 2],
    max_crashes: 2,
    max_restarts: 2,
    max_moves: 1,
    stop_at_s1: false,
};

#[test]
fn three_ips_one_per_node() {
    assert_correct("3 IPs on A, B, C", CORRECT);
}

#[test]
fn two_ips_and_an_idle_node() {
    assert_correct(
        "2 IPs on A, A; C idle",
        Config {
            owners: &[0, 0],
            max_restarts: 1,
            max_moves: 2,
            ..CORRECT
        },
    );
}

fn expect_s1_violation(label: &str, rules: Rules) {
    let o = explore(&Config {
        rules,
        stop_at_s1: true,
        ..CORRECT
    });
    report(label, &o);
    let t =
        o.s1.unwrap_or_else(|| panic!("{label}: the checker missed a broken rule"));
    println!("{label}: counterexample\n{}", show(&t));
}

#[test]
fn stock_lift_breaks_s1() {
    expect_s1_violation("stock lift", Rules::StockLift);
}

#[test]
fn non_atomic_lift_breaks_s1() {
    expect_s1_violation("non-atomic lift", Rules::NonAtomicLift);
}

#[test]
fn dropping_state_without_waiting_breaks_s1() {
    expect_s1_violation("drop without waiting", Rules::DropWithoutWaiting);
}

#[test]
fn clearing_enforcing_after_the_lift_breaks_s1() {
    expect_s1_violation("enforcing cleared later", Rules::EnforcingClearedLater);
}

fn expect_stuck(label: &str, rules: Rules, max_crashes: u8, max_restarts: u8) {
    let o = explore(&Config {
        rules,
        max_crashes,
        max_restarts,
        max_moves: 0,
        ..CORRECT
    });
    report(label, &o);
    assert!(o.s1.is_none(), "{label}: unexpected S1 violation");
    let t = o
        .stuck
        .unwrap_or_else(|| panic!("{label}: the checker missed a grace that never ends"));
    println!("{label}: counterexample\n{}", show(&t));
}

#[test]
fn clearing_need_only_when_lifting_never_ends_grace() {
    // A takeover and a restart at once: each recovering node waits for the other.
    expect_stuck(
        "clear need only when lifting",
        Rules::ClearNeedOnlyWhenLifting,
        1,
        1,
    );
}

#[test]
fn counting_dead_nodes_never_ends_grace() {
    // A taker dies while it needs grace.
    expect_stuck("dead nodes count", Rules::DeadNodesCount, 2, 0);
}
