//! Process teardown by pid: a process and all its descendants, found through /proc.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// `pid` and every process descending from it, parents first.
pub fn tree(pid: i32) -> Vec<i32> {
    let all: Vec<(i32, i32)> = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .filter_map(|p| Some((p, parent_of(p)?)))
                .collect()
        })
        .unwrap_or_default();
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(all.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out
}

pub fn alive(pid: i32) -> bool {
    // A zombie still has /proc/<pid>; treat it as gone (its parent reaps it).
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rfind(')')
                .and_then(|i| s.get(i + 2..i + 3))
                .is_some_and(|state| state != "Z")
        })
        .unwrap_or(false)
}

pub fn signal(pid: i32, sig: Signal) {
    let _ = kill(Pid::from_raw(pid), sig);
}

/// SIGKILLs `pid` and its descendants and waits (up to `limit`) until they are gone.
pub fn kill_tree(pid: i32, limit: Duration) {
    let pids = tree(pid);
    for p in &pids {
        signal(*p, Signal::SIGKILL);
    }
    let deadline = Instant::now() + limit;
    while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills everything still running in network namespace `ns` (daemons that detached from
/// the tree a test started included), by the pids `ip netns pids` lists, then deletes it.
pub fn remove_netns(ns: &str) {
    if let Ok(out) = std::process::Command::new("ip")
        .args(["netns", "pids", ns])
        .output()
    {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                kill_tree(pid, Duration::from_secs(5));
            }
        }
    }
    let _ = std::process::Command::new("ip")
        .args(["netns", "del", ns])
        .status();
}

/// A network namespace a test made (loopback up) and the processes it started there.
/// Dropping it kills those (and anything else left in the namespace) by pid and deletes it,
/// also when the test panics.
pub struct Netns {
    pub name: String,
    pub children: Vec<std::process::Child>,
}

impl Netns {
    pub fn new(name: String) -> Result<Netns, String> {
        let ns = Netns {
            name,
            children: Vec::new(),
        };
        for args in [
            vec!["netns", "add", &ns.name],
            vec!["-n", &ns.name, "link", "set", "lo", "up"],
        ] {
            let st = std::process::Command::new("ip")
                .args(&args)
                .status()
                .map_err(|e| format!("ip {args:?}: {e}"))?;
            if !st.success() {
                return Err(format!("ip {args:?}: {st}"));
            }
        }
        Ok(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for mut c in self.children.drain(..) {
            kill_tree(c.id() as i32, Duration::from_secs(10));
            let _ = c.wait();
        }
        remove_netns(&self.name);
    }
}
