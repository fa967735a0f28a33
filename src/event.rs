//! The CTDB event script (`ganesha-ctdb event <name> <args>`, installed as
//! events/legacy/60.ganesha-ctdb.script): what each CTDB event means for the local
//! Ganesha, driven over its D-Bus admin interface (org.ganesha.nfsd.admin.grace).
//!
//! - `startrecovery`: "3:hold" (a node may have died: hold the cluster in grace until the
//!   takeover run is over).
//! - `releaseip <iface> <ip> <mask>` (planned moves, `ctdb disable`, failback): "3:hold:<ip>",
//!   wait until every live node enforces grace, "3:release:<ip>:<token>" (drop the state of
//!   exactly the NFSv4 clients filed under the IP, src/backend/release.rs) and wait for
//!   Ganesha to have done so, then "2:<ip>" (Ganesha's own release: NLM locks held through
//!   the IP). CTDB takes the IP over only after every releaseip returned.
//! - `shutdown` (ctdbd stops; 10.interface removes the IPs without releaseip): the same for
//!   every client.
//! - `takeip <iface> <ip> <mask>`: "5:<ip>" (the IP's recorded clients may reclaim).
//! - `ipreallocated`: "3:ipreallocated" if Ganesha is in grace (the takeover run is over).
//! - `startipreallocate` (CTDB 4.21+, on every node before any IP of a takeover run is
//!   released or taken): "3:hold", as `startrecovery`. CTDB releases nothing until every
//!   node returned, so every node enforces grace before the first `releaseip` (CTDB 4.17
//!   has no such barrier: `releaseip` waits until every live node enforces). The price is a
//!   short cluster grace for every takeover run, also one that moves no IP: on Ganesha
//!   6.5 it lifts a second or two after `ipreallocated`; on a Ganesha whose refused lift
//!   ends reclaims (4.3) at Grace_Period (Debian pairs 4.3 with CTDB 4.17, which never
//!   sends this event).
//! - `monitor`: fails once Ganesha has not been running at two monitor runs in a row (no
//!   event that reached Ganesha between them), so that CTDB moves the node's IPs to nodes
//!   that serve NFS; a quick restart (systemd's) keeps them. When Ganesha is gone the node's exit marker holds the cluster in grace
//!   (src/grace_admin.rs), until its IPs have moved.

use crate::backend::{ReleaseOutcome, RELEASE_LIMIT, RELEASE_PREFIX};
use crate::ctdb::{CtdbApi, CtdbTool};
use crate::dbus_admin;
use crate::grace_admin;
use crate::store::ctdb::CtdbStore;
use crate::store::Store;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// CTDB runs the event script with a 30 s default timeout per event; Ganesha answers the
/// grace call in milliseconds, so 10 s only bounds a hung Ganesha.
pub const DBUS_TIMEOUT: Duration = Duration::from_secs(10);
/// What a releasing node leaves of CTDB's TakeoverTimeout for the rest of `releaseip`
/// after waiting for every live node to enforce grace (the release itself takes
/// milliseconds, then "2:<ip>"). CTDB's takeover helper gives each node's release
/// TakeoverTimeout (9 s by default); a `releaseip` that outlasts it fails the takeover run
/// and earns the node banning credits, so the wait must end well before.
const RELEASE_MARGIN: Duration = Duration::from_secs(3);
/// TakeoverTimeout when ctdbd does not tell it (CTDB's default).
const DEFAULT_TAKEOVER_TIMEOUT: u32 = 9;
/// Monitor runs in a row that must find Ganesha gone before the node is unhealthy: one
/// monitor interval (15 s by default) covers a restart by systemd (5 s).
pub const MONITOR_FAILURES: u32 = 2;

/// Where the event script keeps state between events (CTDB_SCRIPT_VARDIR, as CTDB's own
/// scripts do), and which grace database the backend uses.
pub struct EventContext {
    pub grace_db: String,
    pub records_db: String,
    pub state_dir: PathBuf,
    /// The store directory `Dir` (the statd spool lives there).
    pub dir: PathBuf,
}

impl EventContext {
    pub fn new(grace_db: &str, records_db: &str, dir: &Path) -> EventContext {
        let vardir = std::env::var_os("CTDB_SCRIPT_VARDIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/lib/ctdb/scripts"));
        EventContext {
            grace_db: grace_db.to_string(),
            records_db: records_db.to_string(),
            state_dir: vardir.join("ganesha-ctdb"),
            dir: dir.to_path_buf(),
        }
    }

    fn grace_store(&self) -> Result<(CtdbTool, CtdbStore), String> {
        let tool = CtdbTool::new();
        let store =
            CtdbStore::open(Box::new(tool.clone()), &self.grace_db).map_err(|e| e.to_string())?;
        Ok((tool, store))
    }
}

/// Runs one event; an error is printed by the caller and fails the event. Events fail only
/// when Ganesha runs but does not answer (hung): moving an IP away from a Ganesha that may
/// still hold its clients' locks, or holding the cluster in grace without it, cannot be done
/// safely, so CTDB retries and, if it stays hung, bans the node. A Ganesha that is not
/// running holds nothing: the node's exit marker holds the cluster in grace for its
/// clients, and the event goes on once every live node enforces (monitor fails after two
/// runs, see `monitor`).
pub fn run(name: &str, args: &[String], ctx: &EventContext) -> Result<(), String> {
    let ip = || -> Result<IpAddr, String> {
        let ip = args
            .get(1)
            .ok_or_else(|| format!("event {name}: want <interface> <ip> <mask>, got {args:?}"))?;
        ip.parse()
            .map_err(|e| format!("event {name}: {ip:?} is not an IP address ({e})"))
    };
    match name {
        // In startrecovery the databases are frozen until the event returns: no marker can
        // be written now (ExecStopPost or monitor wrote it when Ganesha stopped).
        "startrecovery" | "startipreallocate" => match tell_ganesha(name, "3:hold", ctx) {
            Reach::Answered | Reach::NotRunning => {}
            Reach::Hung(e) => return Err(e),
        },
        "takeip" => match tell_ganesha(name, &format!("5:{}", ip()?), ctx) {
            Reach::Answered => {}
            // It reads the IPs it holds when it starts; meanwhile the marker holds.
            Reach::NotRunning => ensure_exit_marker(name, ctx),
            Reach::Hung(e) => return Err(e),
        },
        "releaseip" => {
            let ip = ip()?;
            match tell_ganesha(name, &format!("3:hold:{ip}"), ctx) {
                Reach::Answered => {
                    wait_for_enforcement(ctx);
                    release_clients(name, &ip.to_string(), ctx);
                    let collateral = nlm_collateral(name, ip, ctx);
                    if let Reach::Hung(e) = tell_ganesha(name, &format!("2:{ip}"), ctx) {
                        return Err(e);
                    }
                    notify_collateral(name, ip, &collateral, ctx);
                }
                Reach::NotRunning => {
                    ensure_exit_marker(name, ctx);
                    wait_for_enforcement(ctx);
                }
                Reach::Hung(e) => return Err(e),
            }
        }
        "shutdown" => match tell_ganesha(name, "3:hold", ctx) {
            Reach::Answered => {
                wait_for_enforcement(ctx);
                release_clients(name, "all", ctx);
            }
            Reach::NotRunning => {}
            Reach::Hung(e) => return Err(e),
        },
        // A hold started in startrecovery may not be in the database yet (it is written
        // once the recovery has unfrozen it), so ask Ganesha instead: a node in grace gets
        // the end of the takeover run; one that is not is not holding.
        "ipreallocated" => match dbus_admin::in_grace(DBUS_TIMEOUT) {
            Ok(true) => {
                ganesha_answered(&ctx.state_dir);
                if let Reach::Hung(e) = tell_ganesha(name, "3:ipreallocated", ctx) {
                    return Err(e);
                }
            }
            Ok(false) => ganesha_answered(&ctx.state_dir),
            Err(e) => {
                eprintln!("ganesha-ctdb: ipreallocated: {e} (is nfs-ganesha running?)");
                if ganesha_gone() {
                    end_exit_marker(ctx);
                }
            }
        },
        "monitor" => return monitor(ctx),
        _ => {}
    }
    Ok(())
}

/// Whether Ganesha took a grace call.
enum Reach {
    Answered,
    /// Nobody owns its bus name (or there is no bus): it is not running.
    NotRunning,
    /// It runs but did not answer within DBUS_TIMEOUT.
    Hung(String),
}

/// Calls Ganesha's admin grace method, reporting on stdout/stderr (CTDB logs both).
fn tell_ganesha(event: &str, arg: &str, ctx: &EventContext) -> Reach {
    match dbus_admin::grace(arg, DBUS_TIMEOUT) {
        Ok(msg) => {
            println!("ganesha-ctdb: {event}: grace {arg:?}: Ganesha: {msg}");
            ganesha_answered(&ctx.state_dir);
            Reach::Answered
        }
        Err(e) if ganesha_gone() => {
            eprintln!(
                "ganesha-ctdb: {event}: grace {arg:?}: nfs-ganesha is not running ({e}); its \
                 exit marker holds the cluster in grace, and it reads the IPs it holds when \
                 it starts"
            );
            Reach::NotRunning
        }
        Err(e) => {
            let e = format!(
                "{event}: grace {arg:?}: nfs-ganesha runs but does not answer ({e}); failing \
                 the event so that CTDB neither moves an IP whose clients' state it may still \
                 hold nor goes on without it (CTDB retries, and bans the node if it stays hung)"
            );
            eprintln!("ganesha-ctdb: {e}");
            Reach::Hung(e)
        }
    }
}

/// Ganesha is not running: nobody owns its bus name, or there is no bus at all (Ganesha
/// needs it for the admin interface; a slow Ganesha still owns the name).
fn ganesha_gone() -> bool {
    !matches!(dbus_admin::ganesha_on_bus(DBUS_TIMEOUT), Ok(true))
}

/// Stores the exit marker unless this node's record already holds the cluster in grace.
fn ensure_exit_marker(event: &str, ctx: &EventContext) {
    let done = ctx.grace_store().and_then(|(tool, store)| {
        let m = grace_admin::membership(&tool)?;
        let (records, _) = grace_admin::read_grace(&store)?;
        if records
            .get(&m.me)
            .is_some_and(|r| r.cluster.need_grace && r.cluster.enforcing)
        {
            return Ok(None);
        }
        grace_admin::mark_ganesha_stopped(&store, &tool).map(Some)
    });
    match done {
        Ok(Some(msg)) => println!("ganesha-ctdb: {event}: {msg}"),
        Ok(None) => {}
        Err(e) => eprintln!("ganesha-ctdb: {event}: cannot store the exit marker: {e}"),
    }
}

/// Waits until every live node enforces grace (S1: a planned release must not drop state
/// before that), at most TakeoverTimeout − RELEASE_MARGIN (6 s by default; the others
/// notice a hold within about a second).
fn wait_for_enforcement(ctx: &EventContext) {
    let start = Instant::now();
    let store = ctx.grace_store();
    let takeover_timeout = store
        .as_ref()
        .ok()
        .and_then(|(tool, _)| tool.tunable("TakeoverTimeout").ok())
        .unwrap_or(DEFAULT_TAKEOVER_TIMEOUT);
    let limit = Duration::from_secs(u64::from(takeover_timeout))
        .saturating_sub(RELEASE_MARGIN)
        .max(Duration::from_secs(1));
    loop {
        // What still stands in the way of grace::may_release_ip, in words.
        let lagging = store
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|(tool, store)| {
                let (records, _) = grace_admin::read_grace(store)?;
                let m = grace_admin::membership(tool)?;
                let view = grace_admin::view(&records, &m.live);
                if crate::grace::may_release_ip(&view, &m.me) {
                    return Ok(Vec::new());
                }
                let mut lagging: Vec<String> = view
                    .live
                    .iter()
                    .filter(|n| !view.record(n).enforcing)
                    .map(|n| format!("node {n} not enforcing"))
                    .collect();
                if !view.record(&m.me).need_grace {
                    lagging.push(format!("node {}'s own need for grace not stored yet", m.me));
                }
                Ok(lagging)
            });
        match lagging {
            Ok(l) if l.is_empty() => {
                println!(
                    "ganesha-ctdb: every live node enforces grace ({} ms)",
                    start.elapsed().as_millis()
                );
                return;
            }
            Ok(l) if start.elapsed() > limit => {
                eprintln!(
                    "ganesha-ctdb: still {} after {limit:?}; releasing anyway \
                     (is nfs-ganesha running on those nodes?)",
                    l.join(", ")
                );
                return;
            }
            Err(e) if start.elapsed() > limit => {
                eprintln!("ganesha-ctdb: cannot read the grace records ({e}); releasing anyway");
                return;
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Before Ganesha's "2:<ip>": the NLM hosts whose locks through this node's other IPs
/// the release drops, by IP (crate::statd's module comment says why). A failure costs those
/// hosts only those locks, and is said.
fn nlm_collateral(event: &str, ip: IpAddr, ctx: &EventContext) -> BTreeMap<IpAddr, Vec<String>> {
    let found = (|| -> Result<BTreeMap<IpAddr, Vec<String>>, String> {
        let tool = CtdbTool::new();
        let me: u32 = grace_admin::membership(&tool)?
            .me
            .parse()
            .map_err(|e| format!("this node's PNN: {e}"))?;
        let held: Vec<IpAddr> = tool
            .public_ips()
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|p| p.holder == Some(me))
            .map(|p| p.ip)
            .collect();
        let store = CtdbStore::open(Box::new(tool), &ctx.records_db).map_err(|e| e.to_string())?;
        crate::statd::collateral(&store, ip, &held).map_err(|e| e.to_string())
    })();
    found.unwrap_or_else(|e| {
        eprintln!(
            "ganesha-ctdb: {event}: cannot read {ip}'s NLM hosts ({e}): hosts that also \
             locked through this node's other IPs lose those locks without notification"
        );
        BTreeMap::new()
    })
}

/// Ganesha drops a released host's locks on a thread of its own right after answering
/// "2:<ip>" (milliseconds); the notification waits this long so that the host's reclaims
/// come after the drop, not before it.
const COLLATERAL_DELAY_MS: u64 = 1000;

/// After "2:<ip>": tells each host [`nlm_collateral`] named to reclaim through the other
/// IP, in a process of its own per IP (a notification may take seconds; CTDB waits for the
/// event). Its output goes to `<state_dir>/nlm-collateral.log`.
fn notify_collateral(
    event: &str,
    released: IpAddr,
    collateral: &BTreeMap<IpAddr, Vec<String>>,
    ctx: &EventContext,
) {
    if collateral.is_empty() {
        return;
    }
    let log_path = ctx.state_dir.join("nlm-collateral.log");
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("ganesha-ctdb"));
    for (ip, hosts) in collateral {
        let log = std::fs::create_dir_all(&ctx.state_dir).and_then(|()| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
        });
        let (out, err) = match log.and_then(|f| Ok((f.try_clone()?, f))) {
            Ok((o, e)) => (Stdio::from(o), Stdio::from(e)),
            Err(e) => {
                eprintln!(
                    "ganesha-ctdb: {event}: {}: {e}; its output is lost",
                    log_path.display()
                );
                (Stdio::null(), Stdio::null())
            }
        };
        let mut cmd = Command::new(&exe);
        cmd.args([
            "--store",
            "ctdb",
            "--db",
            &ctx.records_db,
            "--grace-db",
            &ctx.grace_db,
        ])
        .args(["notify", &ip.to_string(), "--timeout", "20"])
        .args(["--delay-ms", &COLLATERAL_DELAY_MS.to_string()]);
        for h in hosts {
            cmd.arg("--client").arg(h);
        }
        // Its own process group: CTDB's end of the event must not take it along.
        let spawned = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn();
        match spawned {
            Ok(_) => println!(
                "ganesha-ctdb: {event}: Ganesha dropped every lock of {} NLM host(s) of \
                 {released}, also through {ip}: notifying them from {ip} ({})",
                hosts.len(),
                log_path.display()
            ),
            Err(e) => eprintln!(
                "ganesha-ctdb: {event}: cannot start the notification from {ip} of {} NLM \
                 host(s) ({e}): they lose their locks through {ip}",
                hosts.len()
            ),
        }
    }
}

/// Asks Ganesha to drop the state of the clients filed under `what` (an IP, or "all") and
/// waits until it has (`release@<pnn>` carries our token), a little longer than the
/// backend's own limit.
fn release_clients(event: &str, what: &str, ctx: &EventContext) {
    let token = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let start = Instant::now();
    if !matches!(
        tell_ganesha(event, &format!("3:release:{what}:{token}"), ctx),
        Reach::Answered
    ) {
        return;
    }
    let limit = RELEASE_LIMIT + Duration::from_secs(5);
    let what = if what == "all" {
        "every public IP"
    } else {
        what
    };
    let store = ctx.grace_store();
    let mut last_error = String::new();
    while start.elapsed() < limit {
        let outcome = store
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|(tool, store)| {
                let m = grace_admin::membership(tool)?;
                let key = format!("{RELEASE_PREFIX}{}", m.me);
                Ok(store
                    .get(&key)
                    .map_err(|e| e.to_string())?
                    .and_then(|v| ReleaseOutcome::decode(&v))
                    .filter(|o| o.token == token))
            });
        match outcome {
            Ok(Some(o)) if o.left == 0 => {
                println!(
                    "ganesha-ctdb: {event}: released the {} NFSv4 client(s) of {what} ({} ms)",
                    o.clients,
                    start.elapsed().as_millis()
                );
                return;
            }
            Ok(Some(o)) => {
                eprintln!(
                    "ganesha-ctdb: {event}: Ganesha still holds {} of the {} NFSv4 client(s) \
                     of {what}; their reclaims elsewhere may be refused until their lease ends",
                    o.left, o.clients
                );
                return;
            }
            Ok(None) => {}
            Err(e) => last_error = e,
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "ganesha-ctdb: {event}: no word from Ganesha on releasing the clients of {what} after \
         {limit:?}{}",
        if last_error.is_empty() {
            String::new()
        } else {
            format!(" ({last_error})")
        }
    );
}

/// `monitor`: Ganesha answers; or, when it does not at MONITOR_FAILURES runs in a row, the
/// node is reported unhealthy so that CTDB moves its IPs. A Ganesha that is not running is
/// held for by the exit marker from the first such run.
/// How often `monitor` republishes `script@<node>` (src/facts.rs); `check` counts a record
/// older than SCRIPT_FACTS_STALE as a script that no longer runs.
const SCRIPT_FACTS_EVERY: u64 = 60;

/// `monitor`: what `ganesha-ctdb check` learns about this node from the event script
/// (src/facts.rs), at most once a minute. Never fails the event: a slow ctdbd only delays
/// the record.
fn publish_script_facts(ctx: &EventContext) {
    let stamp = ctx.state_dir.join("script-published");
    let now = crate::progress::unix_now();
    let last = std::fs::read_to_string(&stamp)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    if now.saturating_sub(last) < SCRIPT_FACTS_EVERY {
        return;
    }
    let done = ctx.grace_store().and_then(|(tool, store)| {
        let me = grace_admin::membership(&tool)?.me;
        let facts = crate::facts::ScriptFacts::gather(&crate::statd_spool::spool_dir(&ctx.dir));
        store
            .put(
                &format!("{}{me}", crate::facts::SCRIPT_PREFIX),
                &facts.encode(),
            )
            .map_err(|e| e.to_string())
    });
    match done {
        Ok(()) => {
            let _ = std::fs::create_dir_all(&ctx.state_dir)
                .and_then(|_| std::fs::write(&stamp, now.to_string()));
        }
        Err(e) => eprintln!("ganesha-ctdb: monitor: cannot publish this node's set-up: {e}"),
    }
}

fn monitor(ctx: &EventContext) -> Result<(), String> {
    let verdict = monitor_ganesha(ctx);
    // After the verdict: a write that waits out a CTDB recovery must not delay it.
    publish_script_facts(ctx);
    verdict
}

fn monitor_ganesha(ctx: &EventContext) -> Result<(), String> {
    let why = match dbus_admin::in_grace(DBUS_TIMEOUT) {
        Ok(_) => {
            ganesha_answered(&ctx.state_dir);
            return Ok(());
        }
        Err(e) if ganesha_gone() => {
            let marker = ctx.grace_store().and_then(|(tool, store)| {
                // Holds (again) until the node has no IP; a marker ExecStopPost wrote stays.
                match grace_admin::end_stopped_hold(&store, &tool)? {
                    Some(done) => Ok(done),
                    None if holds_any_ip(&tool) => grace_admin::mark_ganesha_stopped(&store, &tool),
                    None => Ok("holds no public IP".into()),
                }
            });
            match marker {
                Ok(msg) => println!("ganesha-ctdb: monitor: {msg}"),
                Err(e) => eprintln!("ganesha-ctdb: monitor: cannot update the grace records: {e}"),
            }
            format!("nfs-ganesha is not running ({e})")
        }
        Err(e) => format!("nfs-ganesha runs but does not answer ({e})"),
    };
    let failures = count_ganesha_down(&ctx.state_dir);
    if failures >= MONITOR_FAILURES {
        Err(format!(
            "{why}, at {failures} monitor runs in a row: this node must not hold public IPs; \
             start nfs-ganesha (`systemctl start nfs-ganesha`)"
        ))
    } else {
        println!(
            "ganesha-ctdb: monitor: {why}; the node is reported unhealthy if that is still so \
             at the next monitor run"
        );
        Ok(())
    }
}

/// The monitor runs in a row that found Ganesha gone, in `<state_dir>/ganesha-down`.
const DOWN_COUNTER: &str = "ganesha-down";

/// Ganesha answered an event: the runs that found it gone are over. Not only `monitor`
/// says so: a monitor run before Ganesha's first start (CTDB runs them 2, 6, 14 s after its
/// own) was otherwise still counted when the next run met a quick restart, maybe a minute
/// later, and the node was reported unhealthy and lost its IPs (CI's cluster bring-up).
/// Every takeover run ends with `ipreallocated` on every node, which asks Ganesha.
fn ganesha_answered(state_dir: &Path) {
    let _ = std::fs::remove_file(state_dir.join(DOWN_COUNTER));
}

/// One more monitor run that found Ganesha gone; how many in a row.
fn count_ganesha_down(state_dir: &Path) -> u32 {
    let counter = state_dir.join(DOWN_COUNTER);
    let failures = std::fs::read_to_string(&counter)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(0)
        .saturating_add(1);
    let _ = std::fs::create_dir_all(state_dir)
        .and_then(|_| std::fs::write(&counter, failures.to_string()));
    failures
}

fn holds_any_ip(tool: &CtdbTool) -> bool {
    let Ok(m) = grace_admin::membership(tool) else {
        return true;
    };
    match tool.public_ips() {
        Ok(ips) => ips
            .iter()
            .any(|p| p.holder.is_some_and(|h| h.to_string() == m.me)),
        Err(_) => true,
    }
}

fn end_exit_marker(ctx: &EventContext) {
    match ctx
        .grace_store()
        .and_then(|(tool, store)| grace_admin::end_stopped_hold(&store, &tool))
    {
        Ok(Some(msg)) => println!("ganesha-ctdb: {msg}"),
        Ok(None) => {}
        Err(e) => eprintln!("ganesha-ctdb: cannot update this node's grace record: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs that found Ganesha gone count only until any event reaches it; a garbled
    /// counter counts as none.
    #[test]
    fn an_event_that_reaches_ganesha_ends_the_run_of_monitor_failures() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("ganesha-ctdb");
        assert_eq!(count_ganesha_down(&state), 1);
        assert_eq!(count_ganesha_down(&state), 2);
        ganesha_answered(&state);
        assert_eq!(count_ganesha_down(&state), 1, "a fresh outage");
        std::fs::write(state.join(DOWN_COUNTER), "junk").unwrap();
        assert_eq!(count_ganesha_down(&state), 1);
        ganesha_answered(&state);
        ganesha_answered(&state);
    }
}
