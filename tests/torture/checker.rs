//! The independent checker. It never asks the backend or CTDB what should be: it watches what
//! clients are granted. Holders tell it which locks they hold (acknowledged by the server,
//! or possibly held because a reply was lost: a client keeps the right to reclaim those);
//! challengers tell it when a server granted them a lock that overlaps one of those (S1:
//! a conflicting grant while the holder still had the right to reclaim); holders tell it
//! when a reclaim failed (a lost reclaim) and how long reclaiming took. Conflicts and
//! losses inside a window the docs declare unprotectable are counted apart.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proto {
    V40,
    V41,
    V42,
    Nlm,
}

/// A lock a client holds (or may hold) through public IP `via`.
#[derive(Clone, Debug)]
pub struct HeldLock {
    pub client: String,
    pub proto: Proto,
    pub via: Ipv4Addr,
    pub file: String,
    pub offset: u64,
    pub len: u64,
    /// Challengers try to take it. Churners' locks are not challenged: a churner whose
    /// unlock reply was lost counts the lock as held (it will reclaim it) while the server
    /// may rightly have freed it.
    pub challengeable: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A lock granted to a challenger while its holder had the right to reclaim it.
    Conflict,
    /// A reclaim the server refused, or a holder that could not reclaim in time.
    LostReclaim,
    /// An NLM holder's IP moved or its server restarted and no SM_NOTIFY came.
    NoNotify,
    /// The cluster did not leave grace, or a node did not come back, within the bound.
    Stuck,
}

#[derive(Clone, Debug)]
pub struct Violation {
    pub step: usize,
    pub fault: String,
    pub kind: Kind,
    pub what: String,
    /// The declared window it fell in, if any (docs/operations.md).
    pub declared: Option<String>,
    pub at: Duration,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.kind)?;
        if let Some(w) = &self.declared {
            write!(f, " [declared: {w}]")?;
        }
        write!(f, ": {}", self.what)
    }
}

struct Entry {
    lock: HeldLock,
    held: bool,
}

#[derive(Default)]
struct Inner {
    locks: Vec<Entry>,
    trace: VecDeque<(Duration, String)>,
    step: usize,
    fault: String,
    fault_at: Option<Instant>,
    windows: Vec<(Instant, Instant, String)>,
    declared_conflicts: BTreeMap<String, String>,
    violations: Vec<Violation>,
    reclaims: Vec<Duration>,
    recovering: BTreeSet<String>,
}

pub struct Checker {
    t0: Instant,
    inner: Mutex<Inner>,
}

impl Default for Checker {
    fn default() -> Self {
        Checker {
            t0: Instant::now(),
            inner: Mutex::new(Inner::default()),
        }
    }
}

const TRACE: usize = 400;

impl Checker {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn elapsed(&self) -> Duration {
        self.t0.elapsed()
    }

    pub fn event(&self, what: impl Into<String>) {
        let at = self.t0.elapsed();
        let mut g = self.lock();
        g.trace.push_back((at, what.into()));
        while g.trace.len() > TRACE {
            g.trace.pop_front();
        }
    }

    pub fn register(&self, lock: HeldLock) -> usize {
        let mut g = self.lock();
        g.locks.push(Entry { lock, held: false });
        g.locks.len() - 1
    }

    pub fn set_held(&self, id: usize, held: bool) {
        let mut g = self.lock();
        if let Some(e) = g.locks.get_mut(id) {
            e.held = held;
        }
    }

    /// The locks challengers should try to take now.
    pub fn challengeable(&self) -> Vec<(usize, HeldLock)> {
        self.lock()
            .locks
            .iter()
            .enumerate()
            .filter(|(_, e)| e.held && e.lock.challengeable)
            .map(|(i, e)| (i, e.lock.clone()))
            .collect()
    }

    pub fn begin_step(&self, step: usize, fault: &str) {
        {
            let mut g = self.lock();
            g.step = step;
            g.fault = fault.to_string();
            g.fault_at = Some(Instant::now());
            g.reclaims.clear();
            g.declared_conflicts.clear();
        }
        self.event(format!("step {step}: {fault}"));
    }

    /// From now until `until`, conflicts are inside a window the docs declare (`why`).
    pub fn declare(&self, from: Instant, until: Instant, why: &str) {
        self.lock().windows.push((from, until, why.to_string()));
        self.event(format!("declared window ({why}) for {:?}", until - from));
    }

    fn window_at(g: &Inner, at: Instant) -> Option<String> {
        g.windows
            .iter()
            .find(|(a, b, _)| *a <= at && at <= *b)
            .map(|(_, _, w)| w.clone())
    }

    fn record(&self, g: &mut Inner, kind: Kind, what: String, declared: Option<String>) {
        let at = self.t0.elapsed();
        g.trace.push_back((
            at,
            format!(
                "VIOLATION {kind:?}{}: {what}",
                declared
                    .as_ref()
                    .map(|w| format!(" (declared: {w})"))
                    .unwrap_or_default()
            ),
        ));
        let v = Violation {
            step: g.step,
            fault: g.fault.clone(),
            kind,
            what,
            declared,
            at,
        };
        g.violations.push(v);
    }

    /// A challenger was granted `by` through `via` over lock `id` at `at`. A conflict if its
    /// holder still (may) hold it.
    pub fn challenge_granted(&self, id: usize, by: &str, via: Ipv4Addr, at: Instant) -> bool {
        let mut g = self.lock();
        let Some(e) = g.locks.get(id) else {
            return false;
        };
        if !e.held {
            return false;
        }
        let l = e.lock.clone();
        let declared = Self::window_at(&g, at);
        if let Some(w) = &declared {
            g.declared_conflicts.insert(l.client.clone(), w.clone());
        }
        let what = format!(
            "{by} was granted {}[{}..+{}] through {via} while {} ({:?}, through {}) had the right to reclaim it",
            l.file, l.offset, l.len, l.client, l.proto, l.via
        );
        self.record(&mut g, Kind::Conflict, what, declared);
        true
    }

    pub fn recovering(&self, client: &str, on: bool) {
        let mut g = self.lock();
        if on {
            g.recovering.insert(client.to_string());
        } else {
            g.recovering.remove(client);
        }
    }

    pub fn still_recovering(&self) -> Vec<String> {
        self.lock().recovering.iter().cloned().collect()
    }

    pub fn reclaimed(&self, client: &str) {
        let took = {
            let mut g = self.lock();
            let took = g.fault_at.map(|t| t.elapsed());
            if let Some(t) = took {
                g.reclaims.push(t);
            }
            took
        };
        self.event(format!("{client} reclaimed ({took:.2?} after the fault)"));
    }

    pub fn lost(&self, client: &str, why: &str) {
        let mut g = self.lock();
        let declared = g.declared_conflicts.get(client).cloned();
        self.record(
            &mut g,
            Kind::LostReclaim,
            format!("{client}: {why}"),
            declared,
        );
    }

    pub fn violation(&self, kind: Kind, what: String) {
        let mut g = self.lock();
        self.record(&mut g, kind, what, None);
    }

    pub fn step_reclaims(&self) -> Vec<Duration> {
        self.lock().reclaims.clone()
    }

    pub fn violations(&self) -> Vec<Violation> {
        self.lock().violations.clone()
    }

    pub fn trace(&self, last: usize) -> String {
        let g = self.lock();
        let mut s = String::new();
        for (at, what) in g.trace.iter().skip(g.trace.len().saturating_sub(last)) {
            let _ = writeln!(s, "  {:>9.3} s  {what}", at.as_secs_f64());
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(client: &str) -> HeldLock {
        HeldLock {
            client: client.into(),
            proto: Proto::V41,
            via: Ipv4Addr::new(10, 77, 1, 1),
            file: "export/a".into(),
            offset: 0,
            len: 100,
            challengeable: true,
        }
    }

    #[test]
    fn a_grant_over_a_held_lock_is_a_conflict_and_over_a_free_one_is_not() {
        let c = Checker::default();
        c.begin_step(1, "crash");
        let id = c.register(lock("h"));
        assert!(!c.challenge_granted(id, "x", Ipv4Addr::LOCALHOST, Instant::now()));
        c.set_held(id, true);
        assert_eq!(c.challengeable().len(), 1);
        assert!(c.challenge_granted(id, "x", Ipv4Addr::LOCALHOST, Instant::now()));
        let v = c.violations();
        assert_eq!(
            (v.len(), v[0].kind, v[0].declared.clone()),
            (1, Kind::Conflict, None)
        );
    }

    #[test]
    fn a_conflict_in_a_declared_window_and_the_loss_it_causes_are_counted_apart() {
        let c = Checker::default();
        c.begin_step(1, "ganesha-crash");
        let id = c.register(lock("h"));
        c.set_held(id, true);
        let now = Instant::now();
        c.declare(now, now + Duration::from_secs(2), "ganesha-only crash");
        c.challenge_granted(id, "x", Ipv4Addr::LOCALHOST, now + Duration::from_secs(1));
        c.lost("h", "DENIED");
        c.lost("other", "NO_GRACE");
        let v = c.violations();
        assert!(v[0].declared.is_some() && v[1].declared.is_some());
        assert!(v[2].declared.is_none(), "{v:?}");
        c.challenge_granted(id, "x", Ipv4Addr::LOCALHOST, now + Duration::from_secs(3));
        assert!(c.violations()[3].declared.is_none());
    }
}
