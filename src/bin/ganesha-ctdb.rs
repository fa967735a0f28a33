//! ganesha-ctdb: the operator's tool for the ganesha-ctdb recovery backend.

use clap::{Parser, Subcommand};
use ganesha_ctdb_recov::config::{
    RawConfig, StoreKind, DEFAULT_DIR, DEFAULT_GRACE_DB, DEFAULT_RECOVERY_DB,
};
use ganesha_ctdb_recov::ctdb::{CtdbApi, CtdbTool};
use ganesha_ctdb_recov::dbus_admin;
use ganesha_ctdb_recov::event;
use ganesha_ctdb_recov::ganesha_conf;
use ganesha_ctdb_recov::grace as cluster_grace;
use ganesha_ctdb_recov::grace_admin::{self, GraceRecords};
use ganesha_ctdb_recov::nsm;
use ganesha_ctdb_recov::progress::{Progress, PROGRESS_PREFIX};
use ganesha_ctdb_recov::records::ServerIp;
use ganesha_ctdb_recov::records::{grace_key, parse_v4_key, ClientRecord, V4_PREFIX};
use ganesha_ctdb_recov::statd;
use ganesha_ctdb_recov::statd_spool;
use ganesha_ctdb_recov::status_view;
use ganesha_ctdb_recov::store::ctdb::CtdbStore;
use ganesha_ctdb_recov::store::dir::DirStore;
use ganesha_ctdb_recov::store::Store;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "ganesha-ctdb",
    version,
    // The shipped scripts put GANESHA_CTDB_OPTS after their own options: the later wins.
    args_override_self = true,
    about = "Inspect the NFSv4 recovery state that NFS-Ganesha keeps through the ganesha-ctdb backend",
    long_about = "ganesha-ctdb is the operator's tool for the ganesha-ctdb recovery backend, which \
NFS-Ganesha loads (NFSV4 { RecoveryBackend = rados_cluster; } with the library on its \
LD_LIBRARY_PATH) to remember which NFSv4 clients may reclaim their opens and locks after a \
restart or an IP takeover.\n\nThe store is the one the CTDB_RECOVERY block of \
/etc/ganesha/ganesha.conf names (--config for another file; each of --store, --dir, --db and \
--grace-db overrides its setting): with Store = dir the directory Dir (default \
/var/lib/ganesha-ctdb), with Store = ctdb the CTDB persistent databases Recovery_DB and Grace_DB \
(default ganesha_recovery.tdb, ganesha_grace.tdb), read through the local ctdbd (CTDB_SOCKET \
selects another). Reading either is safe while Ganesha runs.",
    after_help = "Examples:\n  \
ganesha-ctdb records                   who may reclaim after the next restart\n  \
ganesha-ctdb records --dir /srv/state  the same for another store directory\n  \
ganesha-ctdb --store ctdb grace        every node: live, in grace, needs grace, enforcing\n  \
ganesha-ctdb --store ctdb grace -X     the same, machine-readable\n  \
ganesha-ctdb --store ctdb grace lift 2 node 2 is gone for good: stop waiting for it\n  \
ganesha-ctdb --store ctdb records      the records in the cluster's CTDB database\n  \
ganesha-ctdb event takeip eth0 10.0.0.5 24   what CTDB's event script runs (see `event --help`)"
)]
struct Cli {
    /// The ganesha.conf whose CTDB_RECOVERY block names the store; the flags below override
    /// it. A missing default file means the defaults.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// The store directory (Dir in CTDB_RECOVERY; default /var/lib/ganesha-ctdb).
    #[arg(long = "dir", global = true, value_name = "PATH")]
    dir_flag: Option<PathBuf>,
    /// Which store to read: dir (Store = dir, the default) or ctdb (Store = ctdb).
    #[arg(long = "store", global = true, value_parser = ["dir", "ctdb"])]
    store_flag: Option<String>,
    /// The CTDB persistent database (Recovery_DB in CTDB_RECOVERY; default
    /// ganesha_recovery.tdb), with the ctdb store.
    #[arg(long = "db", global = true, value_name = "NAME.tdb")]
    db_flag: Option<String>,
    /// The CTDB persistent database of the grace records (Grace_DB; default
    /// ganesha_grace.tdb), with the ctdb store.
    #[arg(long = "grace-db", global = true, value_name = "NAME.tdb")]
    grace_db_flag: Option<String>,
    /// What the flags, ganesha.conf and the defaults say, in that order (resolve_store).
    #[arg(skip)]
    dir: PathBuf,
    #[arg(skip)]
    store: String,
    #[arg(skip)]
    db: String,
    #[arg(skip)]
    grace_db: String,
    /// Machine-readable output: '|'-separated fields with a header row, like `ctdb -X`.
    #[arg(short = 'X', global = true)]
    machine: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One screen for an incident. First a verdict: "not in grace", or why the cluster is
    /// in grace ("node 1 reclaims 10.77.1.1 for 41 s more at most, 3 of 5 client(s)
    /// back"); then what each node waits for (its clients' reclaims, a CTDB takeover run,
    /// other nodes to enforce grace before its Ganesha listens); the grace records; records
    /// pending durability; each public IP with its holder, its recorded NFSv4 and NLM
    /// clients and, while a node reclaims its clients, how many are expected, back and
    /// missing (the missing ones named) and how its NSM notification went. Nodes publish
    /// their progress once a second (`progress@<node>` in the grace database).
    /// With -X: '|' tables, each with a header row: verdict, nodes' waits, public IPs
    /// (with the reclaim columns), grace records, pending records.
    Status {
        /// Redraw once a second until interrupted (with -X: print the tables each second).
        #[arg(long)]
        watch: bool,
    },
    /// rpc.statd's ha-callout (nfs.conf: [statd] ha-callout): `add-client <mon_name>
    /// <my_name>` records the NLM client against every public IP this node holds
    /// (statd-state@<ip>@<mon_name>); `del-client` marks it unmonitored but keeps it for
    /// the next takeover notification (Ganesha's SM_UNMON_ALL at start-up must not erase
    /// it). Other callout actions are accepted and ignored. Names are taken as given, never
    /// passed to a shell.
    /// Call it as `statd-callout -- <action> <mon_name> <my_name>` (the shipped script
    /// does): after `--` a name beginning with '-' is a name, not an option.
    StatdCallout {
        /// add-client, del-client, ...
        action: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Send NSM SM_NOTIFY from IP to every NLM client recorded for it (what a takeover of
    /// IP does by itself): mon_name = IP, then NAME; a new odd state number, stored first.
    Notify {
        ip: std::net::IpAddr,
        /// The NFS host name clients mounted by (default: this host's name).
        #[arg(long)]
        name: Option<String>,
        /// Only this client (its mon_name as statd recorded it), not every client of IP;
        /// repeat for several.
        #[arg(long, value_name = "MON_NAME")]
        client: Vec<String>,
        /// Give up on clients that have not answered after this many seconds.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        /// Wait this long before sending. `releaseip` uses it to notify the hosts whose
        /// locks through this node's other IPs Ganesha's release dropped, once the drop is
        /// over.
        #[arg(long, default_value_t = 0, value_name = "MS")]
        delay_ms: u64,
    },
    /// Pre-flight for the whole cluster, run on any one node: every live node runs Ganesha
    /// with this backend and the same library version, Grace_Period, Lease_Lifetime,
    /// CTDB_RECOVERY, NLM setting and exports (same Path, Pseudo and filesystem identity:
    /// Filesystem_id or the filesystem's fsid, else an IP that moves gives its clients
    /// ESTALE); Grace_Period is not shorter than Lease_Lifetime; the CTDB event script runs
    /// on every node (it republishes at `monitor`) and is enabled here; with NLM, rpcbind
    /// and rpc.statd run with ganesha-ctdb's callout; both databases are attached on every
    /// node; this node's Ganesha runs and maps the library. Nodes publish what they check
    /// about themselves (node@ when Ganesha starts, script@ at monitor, in the grace
    /// database). One line per problem, saying what to do; exit status 1 if any. With -X:
    /// |Node|Problem|Fix|.
    Check,
    /// List the NFSv4 client records: server IP, recovery tag, client id, stamp
    /// (<node>.<epoch> of the last write) and revoked delegation handles.
    Records,
    /// The cluster grace: each node's record (status, the default), or an operator's
    /// override for a node that will not come back.
    ///
    /// Need: the node keeps the whole cluster in grace (its own clients reclaim, or a CTDB
    /// takeover run is in progress on it). Enforcing: it refuses non-reclaim OPEN/LOCK.
    /// Live: CTDB counts it (connected, not banned, not stopped); the need of a node that is
    /// not live is ignored. With the dir store there is no membership: every node with a
    /// record counts, and a dead node's need holds the others in grace until `lift`.
    Grace {
        #[command(subcommand)]
        action: Option<GraceAction>,
    },
    /// CTDB event script entry point (installed as events/legacy/60.ganesha-ctdb.script).
    /// It drives the local Ganesha over D-Bus (org.ganesha.nfsd.admin.grace):
    /// `startrecovery`: "3:hold" (enter grace, hold the cluster in grace: a node may have
    /// died); `releaseip <iface> <ip> <mask>`: "3:hold:<ip>", wait until every live node
    /// enforces grace, "3:release:<ip>:<token>" (Ganesha drops the state of exactly the
    /// NFSv4 clients that reached this node through the IP; their records stay for the
    /// taker) and wait until it has, then "2:<ip>" (its NLM locks); `shutdown`: the same
    /// for every client; `takeip <iface> <ip> <mask>`: "5:<ip>" (the IP's recorded clients
    /// may reclaim); `ipreallocated`: "3:ipreallocated" if this node holds (the takeover run
    /// is over); `monitor`: fails when nfs-ganesha has not been running at two monitor runs
    /// in a row (CTDB then moves the node's IPs), and holds the cluster in grace for it
    /// meanwhile. Every other event does nothing. An event fails when nfs-ganesha runs but
    /// does not answer (hung: CTDB retries, and bans the node if it stays so); a Ganesha
    /// that is not running is held for by the node's exit marker instead.
    /// Run by systemd after nfs-ganesha stopped, for whatever reason (the package's drop-in:
    /// ExecStopPost): its clients' locks are gone from the cluster filesystem, so this node
    /// holds the cluster in grace on its behalf until Ganesha restarts here (its clients
    /// reclaim) or CTDB has moved every public IP off the node (they reclaim on the takers).
    /// Does nothing when ctdbd is not running (a single node needs no cluster grace).
    GaneshaStopped,
    Event {
        /// The CTDB event (takeip, releaseip, monitor, ...).
        name: String,
        /// The event's arguments, as CTDB passes them.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Subcommand, Clone)]
enum GraceAction {
    /// Every node's grace record, with CTDB's view of who is live.
    Status,
    /// Clear NODE's need for grace (it is dead and will not recover its clients; with the
    /// dir store, where nothing else says a node is dead). Refused for a live CTDB node.
    Lift { node: String },
    /// Delete NODE's grace record (the node left the cluster). Refused for a live node.
    Remove { node: String },
    /// Ask the local Ganesha to enter the cluster grace now (D-Bus "3:join").
    Join,
}

fn run(cli: Cli) -> Result<(), String> {
    if let Command::Event { name, args } = &cli.command {
        if name == "startup" || name == "monitor" {
            // rpc.statd's callout runs as statd's user and can only spool (statd_spool).
            let dir = statd_spool::spool_dir(&cli.dir);
            let owner = statd_spool::statd_owner(std::path::Path::new("/etc"));
            if let Err(e) = statd_spool::ensure_dir(&dir, owner) {
                eprintln!("ganesha-ctdb: {name}: {e}");
            }
        }
        if name == "monitor" && cli.store == "ctdb" {
            // What a callout's flusher could not write (it gave up, or the node restarted).
            let spool = statd_spool::Spool::open(&statd_spool::spool_dir(&cli.dir));
            if spool.is_ok_and(|s| !s.is_empty()) {
                if let Err(e) = spawn_spool_flusher(&cli) {
                    eprintln!("ganesha-ctdb: monitor: cannot start the statd spool flusher: {e}");
                }
            }
        }
        return event::run(
            name,
            args,
            &event::EventContext::new(&cli.grace_db, &cli.db, &cli.dir),
        );
    }
    if let Command::GaneshaStopped = &cli.command {
        return ganesha_stopped(&cli);
    }
    if let Command::Grace {
        action: Some(GraceAction::Join),
    } = &cli.command
    {
        let msg = dbus_admin::grace("3:join", event::DBUS_TIMEOUT)?;
        println!("Ganesha: {msg}");
        return Ok(());
    }
    if let Command::StatdCallout { action, args } = &cli.command {
        return statd_callout(&cli, action, args);
    }
    if let Command::Notify {
        ip,
        name,
        client,
        timeout,
        delay_ms,
    } = &cli.command
    {
        std::thread::sleep(Duration::from_millis(*delay_ms));
        return notify(&cli, *ip, name.as_deref(), client, *timeout);
    }
    if let Command::Check = &cli.command {
        return check(&cli);
    }
    if let Command::Status { watch } = &cli.command {
        return status(&cli, *watch);
    }
    if let Command::Grace { action } = &cli.command {
        let (store, ctdb): (Box<dyn Store>, Option<CtdbTool>) = if cli.store == "ctdb" {
            let tool = CtdbTool::new();
            let s = CtdbStore::open(Box::new(tool.clone()), &cli.grace_db)
                .map_err(|e| e.to_string())?;
            (Box::new(s), Some(tool))
        } else {
            (
                Box::new(DirStore::open(&cli.dir).map_err(|e| e.to_string())?),
                None,
            )
        };
        return grace_command(
            store.as_ref(),
            ctdb.as_ref(),
            action.clone().unwrap_or(GraceAction::Status),
            cli.machine,
        );
    }
    let store: Box<dyn Store> = if cli.store == "ctdb" {
        Box::new(CtdbStore::open(Box::new(CtdbTool::new()), &cli.db).map_err(|e| e.to_string())?)
    } else {
        Box::new(DirStore::open_for_reading(&cli.dir).map_err(|e| e.to_string())?)
    };
    match cli.command {
        Command::Records => list_records(store.as_ref(), cli.machine),
        _ => Ok(()),
    }
}

fn list_records(store: &dyn Store, machine: bool) -> Result<(), String> {
    let scan = store.scan(V4_PREFIX).map_err(|e| e.to_string())?;
    if machine {
        println!("|ServerIP|Tag|ClientId|Stamp|Revoked|");
    }
    let mut shown = 0usize;
    for (key, value) in &scan.entries {
        let parsed = parse_v4_key(key).ok_or_else(|| format!("not a client key: {key:?}"));
        let record = ClientRecord::decode(value).map_err(|e| e.to_string());
        match (parsed, record) {
            (Ok((ip, tag)), Ok(rec)) => {
                shown += 1;
                if machine {
                    println!(
                        "|{ip}|{tag}|{:#x}|{}|{}|",
                        rec.clientid,
                        rec.stamp,
                        rec.revoked.len()
                    );
                } else {
                    println!(
                        "{ip:<16} {tag}\n                 client {:#x}, written in {}, {} revoked handle(s)",
                        rec.clientid,
                        rec.stamp,
                        rec.revoked.len()
                    );
                }
            }
            (Err(e), _) | (_, Err(e)) => eprintln!("skipping {key:?}: {e}"),
        }
    }
    for s in &scan.skipped {
        eprintln!("skipping {}: {}", s.location, s.reason);
    }
    if !machine {
        println!("{shown} client record(s) in {}", store.describe());
    }
    Ok(())
}

fn read_grace(store: &dyn Store) -> Result<GraceRecords, String> {
    let (records, skipped) = grace_admin::read_grace(store)?;
    for s in skipped {
        eprintln!("skipping {s}");
    }
    Ok(records)
}

/// Live nodes: CTDB's, or (no CTDB) every node with a record.
fn live_nodes(records: &GraceRecords, ctdb: Option<&CtdbTool>) -> Result<BTreeSet<String>, String> {
    match ctdb {
        Some(t) => Ok(grace_admin::membership(t)?.live),
        None => Ok(records.keys().cloned().collect()),
    }
}

/// `ganesha-stopped`: the exit marker (src/grace_admin.rs), when ctdbd runs.
fn ganesha_stopped(cli: &Cli) -> Result<(), String> {
    let tool = CtdbTool::new();
    if let Err(e) = tool.nodes() {
        println!("ganesha-stopped: ctdbd does not answer ({e}); no cluster to hold in grace");
        return Ok(());
    }
    let store =
        CtdbStore::open(Box::new(tool.clone()), &cli.grace_db).map_err(|e| e.to_string())?;
    let done = grace_admin::mark_ganesha_stopped(&store, &tool)?;
    println!("ganesha-stopped: {done}");
    Ok(())
}

fn grace_command(
    store: &dyn Store,
    ctdb: Option<&CtdbTool>,
    action: GraceAction,
    machine: bool,
) -> Result<(), String> {
    let records = read_grace(store)?;
    let live = live_nodes(&records, ctdb)?;
    match action {
        GraceAction::Status | GraceAction::Join => {
            print!("{}", grace_table(store, &records, &live, machine));
            Ok(())
        }
        GraceAction::Lift { node } => {
            refuse_live(&node, &live, ctdb.is_some())?;
            let mut r = records.get(&node).cloned().ok_or_else(|| {
                format!("no grace record for node {node:?} in {}", store.describe())
            })?;
            r.recovering = false;
            r.held = false;
            r.cluster.need_grace = false;
            r.cluster.enforcing = false;
            store
                .put(&grace_key(&node), &r.encode())
                .map_err(|e| e.to_string())?;
            println!("node {node}: no longer holds the cluster in grace");
            Ok(())
        }
        GraceAction::Remove { node } => {
            refuse_live(&node, &live, ctdb.is_some())?;
            if store.delete(&grace_key(&node)).map_err(|e| e.to_string())? {
                println!("node {node}: grace record removed");
            } else {
                println!("node {node}: no grace record in {}", store.describe());
            }
            Ok(())
        }
    }
}

fn grace_table(
    store: &dyn Store,
    records: &GraceRecords,
    live: &BTreeSet<String>,
    machine: bool,
) -> String {
    let mut o = String::new();
    let view = grace_admin::view(records, live);
    let yn = |b: bool| if b { "yes" } else { "no" };
    if machine {
        let _ = writeln!(
            o,
            "|Node|Live|Epoch|ClusterEpoch|NeedGrace|Enforcing|Recovering|Held|"
        );
    } else {
        let _ = writeln!(
            o,
            "Cluster grace: {}{}",
            if cluster_grace::cluster_in_grace(&view) {
                "IN GRACE"
            } else {
                "not in grace"
            },
            cluster_grace::grace_epoch(&view)
                .map(|e| format!(" (epoch {e})"))
                .unwrap_or_default()
        );
        let _ = writeln!(
            o,
            "{:<6} {:<5} {:>6} {:>8} {:<5} {:<9} {:<10} {:<4}",
            "node", "live", "epoch", "cluster", "need", "enforcing", "recovering", "held"
        );
    }
    let mut nodes: BTreeSet<&String> = records.keys().collect();
    nodes.extend(live.iter());
    for n in nodes {
        let r = records.get(n).cloned().unwrap_or_default();
        let l = live.contains(n);
        if machine {
            let _ = writeln!(
                o,
                "|{n}|{}|{}|{}|{}|{}|{}|{}|",
                u8::from(l),
                r.epoch,
                r.cluster.epoch,
                u8::from(r.cluster.need_grace),
                u8::from(r.cluster.enforcing),
                u8::from(r.recovering),
                u8::from(r.held)
            );
        } else {
            let _ = writeln!(
                o,
                "{n:<6} {:<5} {:>6} {:>8} {:<5} {:<9} {:<10} {:<4}",
                yn(l),
                r.epoch,
                r.cluster.epoch,
                yn(r.cluster.need_grace),
                yn(r.cluster.enforcing),
                yn(r.recovering),
                yn(r.held)
            );
        }
    }
    if records.is_empty() && !machine {
        let _ = writeln!(
            o,
            "no grace records in {} (Ganesha has not started on it yet)",
            store.describe()
        );
    }
    o
}

/// `status`: why the cluster is in grace (src/status_view.rs), the grace records, records
/// pending durability, and per public IP its holder, its clients and any reclaim of them.
fn status(cli: &Cli, watch: bool) -> Result<(), String> {
    if !watch {
        show(&status_screen(cli)?);
        return Ok(());
    }
    loop {
        // The whole screen is built before it is drawn: no half-drawn frame while a ctdb
        // call takes its time.
        let screen = match status_screen(cli) {
            Ok(s) => s,
            Err(e) => format!("ganesha-ctdb: {e}\n"),
        };
        let frame = if cli.machine {
            format!("{screen}\n")
        } else {
            format!(
                "\x1b[H\x1b[2J{}  (every 1 s; Ctrl-C ends)\n\n{screen}",
                utc_time_of_day()
            )
        };
        if !show(&frame) {
            return Ok(()); // the reader went away (`status --watch | head`)
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Writes to stdout; false once nobody reads it any more (a closed pipe is the end of the
/// output, not a crash).
fn show(text: &str) -> bool {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .is_ok()
}

/// The time of day in UTC (what the store's stamps and CTDB's logs can be compared with).
fn utc_time_of_day() -> String {
    let t = ganesha_ctdb_recov::progress::unix_now() % 86_400;
    format!("{:02}:{:02}:{:02} UTC", t / 3600, t / 60 % 60, t % 60)
}

fn status_screen(cli: &Cli) -> Result<String, String> {
    let (records, grace, ctdb): (Box<dyn Store>, Box<dyn Store>, Option<CtdbTool>) =
        if cli.store == "ctdb" {
            let tool = CtdbTool::new();
            let r = CtdbStore::open(Box::new(tool.clone()), &cli.db).map_err(|e| e.to_string())?;
            let g = CtdbStore::open(Box::new(tool.clone()), &cli.grace_db)
                .map_err(|e| e.to_string())?;
            (Box::new(r), Box::new(g), Some(tool))
        } else {
            // Read-only: status must work on a full or read-only store.
            let r = DirStore::open_for_reading(&cli.dir).map_err(|e| e.to_string())?;
            let g = DirStore::open_for_reading(&cli.dir).map_err(|e| e.to_string())?;
            (Box::new(r), Box::new(g), None)
        };
    let grace_records = read_grace(grace.as_ref())?;
    let live = live_nodes(&grace_records, ctdb.as_ref())?;
    let mut progress = BTreeMap::new();
    if let Ok(scan) = grace.scan(PROGRESS_PREFIX) {
        for (key, value) in scan.entries {
            match Progress::decode(&value) {
                Some(p) => {
                    progress.insert(key[PROGRESS_PREFIX.len()..].to_string(), p);
                }
                None => eprintln!("skipping {key:?}: not a progress record"),
            }
        }
    }
    let mut stamps = BTreeMap::new();
    let mut v4: BTreeMap<String, usize> = BTreeMap::new();
    for (key, value) in records.scan(V4_PREFIX).map_err(|e| e.to_string())?.entries {
        if let Some((ip, _)) = parse_v4_key(&key) {
            *v4.entry(ip.to_string()).or_default() += 1;
        }
        if let Ok(r) = ClientRecord::decode(&value) {
            stamps.insert(key, r.stamp);
        }
    }
    let mut nlm: BTreeMap<String, usize> = BTreeMap::new();
    for (key, _) in records
        .scan(statd::STATD_PREFIX)
        .map_err(|e| e.to_string())?
        .entries
    {
        if let Some((ip, _)) = key[statd::STATD_PREFIX.len()..].split_once('@') {
            *nlm.entry(ip.to_string()).or_default() += 1;
        }
    }
    let mut holders: BTreeMap<String, String> = BTreeMap::new();
    if let Some(t) = &ctdb {
        for p in t.public_ips().map_err(|e| e.to_string())? {
            holders.insert(
                p.ip.to_string(),
                p.holder.map_or("-".into(), |h| h.to_string()),
            );
        }
    }
    let view = status_view::build(&status_view::Inputs {
        grace: &grace_records,
        live: &live,
        progress: &progress,
        stamps: &stamps,
        holders: &holders,
        v4: &v4,
        nlm: &nlm,
        now: ganesha_ctdb_recov::progress::unix_now(),
    });
    let mut out = String::new();
    if cli.machine {
        out.push_str(&status_view::render_machine(&view));
        out.push_str(&grace_table(grace.as_ref(), &grace_records, &live, true));
        out.push_str(&pending_table(grace.as_ref(), true));
    } else {
        let text = status_view::render(&view);
        // Verdict and per-node reasons first, then the records behind them, then the IPs.
        let (head, ips) = text
            .split_once("\n\n")
            .map_or((text.as_str(), ""), |(a, b)| (a, b));
        out.push_str(head);
        out.push_str("\n\n");
        // Without its "Cluster grace:" line: the verdict said it.
        let table = grace_table(grace.as_ref(), &grace_records, &live, false);
        out.push_str(table.split_once('\n').map_or("", |(_, rest)| rest));
        out.push_str(&pending_table(grace.as_ref(), false));
        out.push('\n');
        out.push_str(ips);
    }
    Ok(out)
}

/// `check` (src/check.rs): gathers what the nodes published and what this node shows.
fn check(cli: &Cli) -> Result<(), String> {
    use ganesha_ctdb_recov::check;
    use ganesha_ctdb_recov::facts::{NodeFacts, ScriptFacts, NODE_PREFIX, SCRIPT_PREFIX};
    let cluster = cli.store == "ctdb";
    let tool = CtdbTool::new();
    let grace: Box<dyn Store> = if cluster {
        Box::new(CtdbStore::open(Box::new(tool.clone()), &cli.grace_db).map_err(|e| e.to_string())?)
    } else {
        Box::new(DirStore::open_for_reading(&cli.dir).map_err(|e| e.to_string())?)
    };
    let scan = |prefix: &str| -> Result<Vec<(String, Vec<u8>)>, String> {
        let s = grace.scan(prefix).map_err(|e| e.to_string())?;
        Ok(s.entries
            .into_iter()
            .map(|(k, v)| (k[prefix.len()..].to_string(), v))
            .collect())
    };
    let mut facts = BTreeMap::new();
    for (node, v) in scan(NODE_PREFIX)? {
        match NodeFacts::decode(&v) {
            Some(f) => {
                facts.insert(node, f);
            }
            None => eprintln!("skipping {NODE_PREFIX}{node}: not a set-up record"),
        }
    }
    let mut scripts = BTreeMap::new();
    for (node, v) in scan(SCRIPT_PREFIX)? {
        match ScriptFacts::decode(&v) {
            Some(f) => {
                scripts.insert(node, f);
            }
            None => eprintln!("skipping {SCRIPT_PREFIX}{node}: not a set-up record"),
        }
    }
    let (me, live) = if cluster {
        let m = grace_admin::membership(&tool)?;
        (m.me, m.live)
    } else {
        // One node: the one that published, or (none yet) this one, so that a Ganesha
        // that never started with the backend is a problem, not an empty cluster.
        let me = facts
            .keys()
            .next()
            .cloned()
            .unwrap_or_else(|| "local".into());
        let live = std::iter::once(me.clone())
            .chain(facts.keys().cloned())
            .collect();
        (me, live)
    };
    let mut dbs = BTreeMap::new();
    if cluster {
        // ctdbd's own protocol: one connection, a GET_DBMAP and a GET_DBNAME per database
        // of each node, instead of a `ctdb -n` run per node.
        let socket = ganesha_ctdb_recov::ctdb::socket_path();
        let t = Duration::from_secs(5);
        let mut conn = ctdb_client::Connection::connect(&socket, t).map_err(|e| e.to_string());
        for n in &live {
            let attached = match (n.parse::<u32>(), conn.as_mut()) {
                (Ok(pnn), Ok(c)) => c
                    .db_names(pnn, t)
                    .map(|names| names.into_iter().collect())
                    .map_err(|e| e.to_string()),
                (Err(e), _) => Err(format!("node {n:?}: {e}")),
                (_, Err(e)) => Err(e.clone()),
            };
            dbs.insert(n.clone(), attached);
        }
    }
    let local = check::Local {
        node: me.clone(),
        ganesha: facts.get(&me).map(local_ganesha),
        event_script: if cluster { local_event_script() } else { None },
    };
    let wanted = [cli.db.clone(), cli.grace_db.clone()];
    let problems = check::problems(&check::Inputs {
        cluster,
        live: &live,
        facts: &facts,
        scripts: &scripts,
        dbs: &dbs,
        wanted_dbs: if cluster { &wanted } else { &[] },
        local: &local,
        tool_version: ganesha_ctdb_recov::facts::VERSION,
        now: ganesha_ctdb_recov::progress::unix_now(),
    });
    if cli.machine {
        println!("|Node|Problem|Fix|");
        for p in &problems {
            println!(
                "|{}|{}|{}|",
                p.node,
                p.what.replace('|', "/"),
                p.fix.replace('|', "/")
            );
        }
    } else {
        for p in &problems {
            let who = if p.node == "cluster" {
                "cluster".to_string()
            } else {
                format!("node {}", p.node)
            };
            println!("{who}: {}\n    fix: {}", p.what, p.fix);
        }
    }
    if problems.is_empty() {
        if !cli.machine {
            println!(
                "check: {} node(s) checked from node {me}; no problem found",
                live.len()
            );
        }
        Ok(())
    } else {
        Err(format!("check: {} problem(s)", problems.len()))
    }
}

/// The Ganesha that published this node's facts still runs and maps the library.
fn local_ganesha(f: &ganesha_ctdb_recov::facts::NodeFacts) -> Result<(), String> {
    let proc_dir = PathBuf::from(format!("/proc/{}", f.pid));
    let comm = std::fs::read_to_string(proc_dir.join("comm")).unwrap_or_default();
    if comm.trim_end() != "ganesha.nfsd" {
        return Err(format!(
            "Ganesha is not running here (pid {}, which published this node's set-up at \
             start, is gone)",
            f.pid
        ));
    }
    let maps = std::fs::read_to_string(proc_dir.join("maps")).unwrap_or_default();
    if f.library.is_empty() || !maps.contains(&f.library) {
        return Err(format!(
            "ganesha.nfsd (pid {}) does not map the library {:?}",
            f.pid, f.library
        ));
    }
    Ok(())
}

/// The event script in CTDB's legacy directory ($CTDB_BASE, else /etc/ctdb): None when it
/// is there, enabled (executable) and ganesha-ctdb's.
fn local_event_script() -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let base = std::env::var_os("CTDB_BASE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/ctdb"));
    let path = base.join("events/legacy/60.ganesha-ctdb.script");
    match std::fs::metadata(&path) {
        Err(e) => Some(format!("{} is not installed ({e})", path.display())),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => {
            Some(format!("{} is not enabled", path.display()))
        }
        Ok(_) => match std::fs::read_to_string(&path) {
            Ok(t) if t.contains("ganesha-ctdb") => None,
            _ => Some(format!("{} does not run ganesha-ctdb", path.display())),
        },
    }
}

/// Client records nodes could not store yet (kept in memory and retried by the backend).
fn pending_table(grace: &dyn Store, machine: bool) -> String {
    let mut o = String::new();
    let run_dir = ganesha_ctdb_recov::backend::run_file("x")
        .parent()
        .map(std::path::Path::to_path_buf);
    let all = grace_admin::pending_statuses(grace, run_dir.as_deref());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let age = |since: u64| {
        if since == 0 {
            0
        } else {
            now.saturating_sub(since)
        }
    };
    if machine {
        let _ = writeln!(o, "|Node|PendingRecords|OldestAgeSecs|Lost|");
        for (node, p) in &all {
            let _ = writeln!(o, "|{node}|{}|{}|{}|", p.count, age(p.since_unix), p.lost);
        }
        return o;
    }
    let troubled: Vec<_> = all
        .iter()
        .filter(|(_, p)| p.count > 0 || p.lost > 0)
        .collect();
    if troubled.is_empty() {
        let _ = writeln!(o, "\nRecords pending durability: none");
        return o;
    }
    let _ = writeln!(
        o,
        "\nRecords pending durability (kept in memory, counted for reclaim, retried):"
    );
    for (node, p) in troubled {
        let _ = writeln!(
            o,
            "node {node}: {} pending, the oldest for {} s{}; last error: {}",
            p.count,
            age(p.since_unix),
            if p.lost > 0 {
                format!(
                    ", {} LOST (over the limit of {})",
                    p.lost,
                    ganesha_ctdb_recov::backend::MAX_PENDING
                )
            } else {
                String::new()
            },
            p.error
        );
    }
    o
}

fn open_records(cli: &Cli) -> Result<(Box<dyn Store>, Option<CtdbTool>), String> {
    if cli.store == "ctdb" {
        let tool = CtdbTool::new();
        let s = CtdbStore::open(Box::new(tool.clone()), &cli.db).map_err(|e| e.to_string())?;
        Ok((Box::new(s), Some(tool)))
    } else {
        Ok((
            Box::new(DirStore::open(&cli.dir).map_err(|e| e.to_string())?),
            None,
        ))
    }
}

/// The public IPs this node holds (the dir store has none: `local`): asked of ctdbd over
/// its socket (two controls, answered during a recovery too), else with the `ctdb` tool.
fn held_ips(ctdb: Option<&CtdbTool>) -> Result<Vec<ServerIp>, String> {
    let Some(t) = ctdb else {
        return Ok(vec![ServerIp::Local]);
    };
    let native = || -> Result<Vec<ServerIp>, String> {
        let limit = Duration::from_secs(1);
        let socket = ganesha_ctdb_recov::ctdb::socket_path();
        let mut c = ctdb_client::Connection::connect(&socket, limit).map_err(|e| e.to_string())?;
        let me = c.pnn();
        Ok(c.public_ips(limit)
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|p| p.holder == Some(me))
            .map(|p| ServerIp::Ip(p.addr))
            .collect())
    };
    match native() {
        Ok(ips) if ips.is_empty() => return Ok(vec![ServerIp::Local]),
        Ok(ips) => return Ok(ips),
        Err(e) => eprintln!(
            "ganesha-ctdb: asking ctdbd which IPs this node holds: {e}; trying the ctdb tool"
        ),
    }
    let me = t
        .nodes()
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|n| n.this_node)
        .ok_or("ctdb -X status marks no node as this one")?
        .pnn;
    let ips: Vec<ServerIp> = t
        .public_ips()
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|p| p.holder == Some(me))
        .map(|p| ServerIp::Ip(p.ip))
        .collect();
    Ok(if ips.is_empty() {
        vec![ServerIp::Local]
    } else {
        ips
    })
}

fn statd_callout(cli: &Cli, action: &str, args: &[String]) -> Result<(), String> {
    let client = || {
        args.first().cloned().ok_or_else(|| {
            format!("statd-callout {action}: want <mon_name> <my_name>, got {args:?}")
        })
    };
    match action {
        "add-client" if cli.store == "ctdb" => {
            let client = client()?;
            add_client_spooled(cli, &client)
                .map_err(|e| format!("statd-callout {action} {client:?}: {e}"))
        }
        "flush" => flush_statd_spool(cli, statd_spool::FLUSHER_LIMIT),
        // Ganesha 4.3 sends SM_UNMON when an NLM LOCK drops its host's last reference,
        // still holding its grace reference (nlm4_Lock's out_dec): as add-client, this
        // must not wait on a database a CTDB recovery froze. Unmarking is only tidying (a
        // record left monitored costs one extra SM_NOTIFY), so past a short bound the
        // callout returns (the transaction, if it started, may still commit).
        "del-client" if cli.store == "ctdb" => {
            let client = client()?;
            let tool = CtdbTool {
                timeout: statd_spool::CALLOUT_WAIT,
                ..CtdbTool::new()
            };
            let done = CtdbStore::open(Box::new(tool.clone()), &cli.db)
                .map_err(|e| e.to_string())
                .map(|s| s.with_write_limit(statd_spool::CALLOUT_WAIT))
                .and_then(|store| {
                    let ips = held_ips(Some(&tool))?;
                    statd::del_client(&store, &ips, &client).map_err(|e| e.to_string())
                });
            if let Err(e) = done {
                eprintln!(
                    "ganesha-ctdb: statd-callout del-client {client:?}: may stay monitored \
                     ({e}); the next takeover notification then sends to it once more"
                );
            }
            Ok(())
        }
        "add-client" | "del-client" => {
            let client = client()?;
            let direct = || -> Result<(), String> {
                let (store, ctdb) = open_records(cli)?;
                let ips = held_ips(ctdb.as_ref())?;
                let r = if action == "add-client" {
                    statd::add_client(store.as_ref(), &ips, &client)
                } else {
                    statd::del_client(store.as_ref(), &ips, &client)
                };
                r.map_err(|e| e.to_string())
            };
            match direct() {
                Ok(()) => Ok(()),
                Err(e) if action == "add-client" => spool_by_name(cli, &client, &e)
                    .map_err(|e| format!("statd-callout {action} {client:?}: {e}")),
                Err(e) => {
                    eprintln!(
                        "ganesha-ctdb: statd-callout del-client {client:?}: may stay monitored \
                         ({e}); the next takeover notification then sends to it once more"
                    );
                    Ok(())
                }
            }
        }
        _ => Ok(()),
    }
}

/// `add-client` with the ctdb store (src/statd_spool.rs): spooled locally first, then
/// written by a detached flusher; returns once the store has it or after CALLOUT_WAIT,
/// so that the NLM LOCK waiting on it does not keep Ganesha out of grace.
fn add_client_spooled(cli: &Cli, client: &str) -> Result<(), String> {
    let ips = match held_ips(Some(&CtdbTool::new())) {
        Ok(ips) => ips,
        // rpc.statd dropped to its own user (Debian): no ctdbd, no database from here.
        Err(e) => return spool_by_name(cli, client, &e),
    };
    let writes = statd::monitored_writes(&ips, client).map_err(|e| e.to_string())?;
    let spool = match statd_spool::Spool::open(&statd_spool::spool_dir(&cli.dir)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ganesha-ctdb: statd-callout: {e}; writing to the store directly");
            let (store, _) = open_records(cli)?;
            return store.put_many(&writes).map_err(|e| e.to_string());
        }
    };
    let name = spool.add(&writes).map_err(|e| e.to_string())?;
    if let Err(e) = spawn_spool_flusher(cli) {
        eprintln!("ganesha-ctdb: statd-callout: cannot start the spool flusher ({e}); the record waits for `monitor`");
        return Ok(());
    }
    let deadline = std::time::Instant::now() + statd_spool::CALLOUT_WAIT;
    while spool.holds(&name) {
        if std::time::Instant::now() >= deadline {
            eprintln!(
                "ganesha-ctdb: statd-callout: {client:?} is spooled; the store did not take it within {:?} (CTDB recovery?), a flusher writes it when it does",
                statd_spool::CALLOUT_WAIT
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(3));
    }
    Ok(())
}

/// `add-client` from a callout that cannot write the record itself (rpc.statd runs it as
/// the owner of its `sm` directory, with no capabilities: src/statd_spool.rs): the host's
/// name goes to the spool, and root writes it under the IPs the node holds then (this
/// node's Ganesha within a second; `monitor`). `why`: what the direct way said.
fn spool_by_name(cli: &Cli, client: &str, why: &str) -> Result<(), String> {
    statd::check_client_name(client).map_err(|e| e.to_string())?;
    if cli.store != "ctdb" {
        // One node, no takeover to notify for (statd itself notifies its hosts when this
        // node restarts), and no flusher: nothing to keep.
        eprintln!(
            "ganesha-ctdb: statd-callout: {client:?} not recorded ({why}); a single node \
             needs no record"
        );
        return Ok(());
    }
    let dir = statd_spool::spool_dir(&cli.dir);
    let spool = statd_spool::Spool::open(&dir).map_err(|e| {
        format!(
            "{why}; and it cannot be spooled either: {e} (running as uid {}: the spool must \
             be writable by rpc.statd's user; `ganesha-ctdb check` tells)",
            nix::unistd::geteuid()
        )
    })?;
    spool.add_client(client).map_err(|e| e.to_string())?;
    eprintln!(
        "ganesha-ctdb: statd-callout: {client:?} spooled for this node's Ganesha to record \
         (not written directly: {why})"
    );
    Ok(())
}

/// The writes that record `client` as monitored under the IPs this node holds now: how
/// root's flushes turn a spooled name into its records.
fn attribute_now(cli: &Cli, client: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
    let tool = (cli.store == "ctdb").then(CtdbTool::new);
    let ips = held_ips(tool.as_ref())?;
    statd::monitored_writes(&ips, client).map_err(|e| e.to_string())
}

/// This program again as `statd-callout -- flush` on the store this run resolved, in a
/// process group of its own and not waited for: rpc.statd waits only for the callout.
fn spawn_spool_flusher(cli: &Cli) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    std::process::Command::new(std::env::current_exe()?)
        .arg("--store")
        .arg(&cli.store)
        .arg("--dir")
        .arg(&cli.dir)
        .arg("--db")
        .arg(&cli.db)
        .arg("--grace-db")
        .arg(&cli.grace_db)
        .args(["statd-callout", "--", "flush"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .map(|_| ())
}

/// Writes the statd spool to the store until it is empty or `limit`; one flusher at a
/// time (a second one leaves at once: the first rescans before it leaves).
fn flush_statd_spool(cli: &Cli, limit: Duration) -> Result<(), String> {
    let dir = statd_spool::spool_dir(&cli.dir);
    let spool = statd_spool::Spool::open(&dir).map_err(|e| e.to_string())?;
    let deadline = std::time::Instant::now() + limit;
    let mut store = None;
    loop {
        // Another flusher runs: it rescans before it leaves.
        let Some(held) = spool.try_lock_flusher().map_err(|e| e.to_string())? else {
            return Ok(());
        };
        loop {
            if store.is_none() {
                store = open_records(cli).ok().map(|(s, _)| s);
            }
            let left = match &store {
                Some(s) => {
                    spool
                        .flush(s.as_ref(), std::time::SystemTime::now(), &|c| {
                            attribute_now(cli, c)
                        })
                        .map_err(|e| e.to_string())?
                        .left
                }
                None => 1,
            };
            if left == 0 {
                break;
            }
            if std::time::Instant::now() >= deadline {
                return Err(format!(
                    "statd spool {}: {left} entr(ies) not written within {limit:?}; `monitor` tries again",
                    dir.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        drop(held);
        // An entry added while this flusher held the lock, whose own flusher left at once.
        if spool.is_empty() {
            return Ok(());
        }
    }
}

fn notify(
    cli: &Cli,
    ip: std::net::IpAddr,
    name: Option<&str>,
    clients: &[String],
    timeout: u64,
) -> Result<(), String> {
    let (store, _) = open_records(cli)?;
    let host = name
        .map(str::to_owned)
        .or_else(ganesha_ctdb_recov::config::hostname)
        .unwrap_or_default();
    let total = Duration::from_secs(timeout);
    let (report, unresolved) = if clients.is_empty() {
        statd::notify_ip(store.as_ref(), ip, &host, total)
    } else {
        statd::notify_clients(
            store.as_ref(),
            ip,
            clients,
            &host,
            total,
            std::time::Instant::now(),
        )
    }
    .map_err(|e| format!("notify {ip}: {e}"))?;
    for n in &unresolved {
        eprintln!("notify {ip}: client {n:?} did not resolve in time; not notified");
    }
    let silent = report.unanswered();
    println!(
        "notify {ip}: {} client(s) notified, {} without answer, in {:.1} s{}",
        report.notified(),
        silent.len() + unresolved.len(),
        report.elapsed.as_secs_f64(),
        if report.ignored > 0 {
            format!(
                "; {} replies ignored (not from the address asked, or answering nothing we sent)",
                report.ignored
            )
        } else {
            String::new()
        }
    );
    for (a, o) in &report.outcomes {
        if *o != nsm::Outcome::Notified {
            println!("  {a}: {o:?}");
        }
    }
    Ok(())
}

fn refuse_live(node: &str, live: &BTreeSet<String>, with_ctdb: bool) -> Result<(), String> {
    if with_ctdb && live.contains(node) {
        return Err(format!(
            "node {node} is live in CTDB: it clears its own need when its clients have \
             reclaimed; stop it first (`ctdb stop`, or shut it down) if it must not recover"
        ));
    }
    Ok(())
}

/// Fills the store settings: each from its flag, else from the CTDB_RECOVERY block of
/// ganesha.conf (--config, or /etc/ganesha/ganesha.conf if it exists), else the default.
fn resolve_store(cli: &mut Cli) -> Result<(), String> {
    let all_flags = cli.dir_flag.is_some()
        && cli.store_flag.is_some()
        && cli.db_flag.is_some()
        && cli.grace_db_flag.is_some();
    let path = cli
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(ganesha_conf::DEFAULT_PATH));
    let raw = if all_flags || (cli.config.is_none() && !path.exists()) {
        RawConfig::default()
    } else {
        let blocks = ganesha_conf::read(&path).map_err(|e| {
            format!(
                "reading the store from {e}
(fix the file, name another with --config, or \
                 give --store, --dir, --db and --grace-db)"
            )
        })?;
        ganesha_conf::ctdb_recovery(&blocks)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .unwrap_or_default()
    };
    let store = cli.store_flag.clone().or(raw.store.clone());
    let name = store.as_deref().unwrap_or("dir");
    cli.store = StoreKind::from_name(name)
        .ok_or_else(|| {
            format!(
                "{}: CTDB_RECOVERY {{ Store = {name}; }} is not a store (dir or ctdb)",
                path.display()
            )
        })?
        .to_string();
    cli.dir = cli
        .dir_flag
        .clone()
        .or(raw.dir.map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR));
    cli.db = cli
        .db_flag
        .clone()
        .or(raw.recovery_db)
        .unwrap_or_else(|| DEFAULT_RECOVERY_DB.to_string());
    cli.grace_db = cli
        .grace_db_flag
        .clone()
        .or(raw.grace_db)
        .unwrap_or_else(|| DEFAULT_GRACE_DB.to_string());
    Ok(())
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    if let Err(e) = resolve_store(&mut cli) {
        eprintln!("ganesha-ctdb: {e}");
        return ExitCode::FAILURE;
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ganesha-ctdb: {e}");
            ExitCode::FAILURE
        }
    }
}
