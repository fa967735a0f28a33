//! ganesha-ctdb: the operator's tool for the ganesha-ctdb recovery backend.

use clap::{Parser, Subcommand};
use ganesha_ctdb_recov::config::{DEFAULT_DIR, DEFAULT_RECOVERY_DB};
use ganesha_ctdb_recov::ctdb::CtdbTool;
use ganesha_ctdb_recov::dbus_admin;
use ganesha_ctdb_recov::records::{
    parse_v4_key, ClientRecord, GraceRecord, GRACE_PREFIX, V4_PREFIX,
};
use ganesha_ctdb_recov::store::ctdb::CtdbStore;
use ganesha_ctdb_recov::store::dir::DirStore;
use ganesha_ctdb_recov::store::Store;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "ganesha-ctdb",
    version,
    about = "Inspect the NFSv4 recovery state that NFS-Ganesha keeps through the ganesha-ctdb backend",
    long_about = "ganesha-ctdb is the operator's tool for the ganesha-ctdb recovery backend, which \
NFS-Ganesha loads (NFSV4 { RecoveryBackend = rados_cluster; } with the library on its \
LD_LIBRARY_PATH) to remember which NFSv4 clients may reclaim their opens and locks after a \
restart or an IP takeover.\n\nThe store is the directory named by Dir in the CTDB_RECOVERY block \
of ganesha.conf (default /var/lib/ganesha-ctdb), or with --store ctdb the CTDB persistent \
database named by Recovery_DB (default ganesha_recovery.tdb), read through the local ctdbd \
(CTDB_SOCKET selects another). Reading either is safe while Ganesha runs.",
    after_help = "Examples:\n  \
ganesha-ctdb records                   who may reclaim after the next restart\n  \
ganesha-ctdb records --dir /srv/state  the same for another store directory\n  \
ganesha-ctdb grace -X                  grace records, machine-readable\n  \
ganesha-ctdb --store ctdb records      the records in the cluster's CTDB database\n  \
ganesha-ctdb event takeip eth0 10.0.0.5 24   what CTDB's event script runs (see `event --help`)"
)]
struct Cli {
    /// The store directory (Dir in CTDB_RECOVERY).
    #[arg(long, global = true, default_value = DEFAULT_DIR, value_name = "PATH")]
    dir: PathBuf,
    /// Which store to read: dir (Store = dir) or ctdb (Store = ctdb).
    #[arg(long, global = true, default_value = "dir", value_parser = ["dir", "ctdb"])]
    store: String,
    /// The CTDB persistent database (Recovery_DB in CTDB_RECOVERY), with --store ctdb.
    #[arg(long, global = true, default_value = DEFAULT_RECOVERY_DB, value_name = "NAME.tdb")]
    db: String,
    /// Machine-readable output: '|'-separated fields with a header row, like `ctdb -X`.
    #[arg(short = 'X', global = true)]
    machine: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the NFSv4 client records: server IP, recovery tag, client id, stamp
    /// (<node>.<epoch> of the last write) and revoked delegation handles.
    Records,
    /// Show each node's grace record: its epoch and whether a grace period is open
    /// (open after a crash until the next grace period completes).
    Grace,
    /// CTDB event script entry point (installed as events/legacy/60.ganesha-ctdb.script):
    /// on `takeip <iface> <ip> <mask>` asks the local Ganesha over D-Bus to take over the
    /// IP's clients (admin grace "5:<ip>": grace, and the IP's recorded clients may
    /// reclaim); on `releaseip <iface> <ip> <mask>` to release it ("2:<ip>": grace, drop
    /// the IP's NLM locks and NFSv4.0 clients). Every other event does nothing. A Ganesha
    /// that is not running is reported, not an error: CTDB must not ban the node for it.
    Event {
        /// The CTDB event (takeip, releaseip, monitor, ...).
        name: String,
        /// The event's arguments, as CTDB passes them.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn run(cli: Cli) -> Result<(), String> {
    if let Command::Event { name, args } = &cli.command {
        return event(name, args);
    }
    let store: Box<dyn Store> = if cli.store == "ctdb" {
        Box::new(CtdbStore::open(Box::new(CtdbTool::new()), &cli.db).map_err(|e| e.to_string())?)
    } else {
        Box::new(DirStore::open(&cli.dir).map_err(|e| e.to_string())?)
    };
    match cli.command {
        Command::Records => list_records(store.as_ref(), cli.machine),
        Command::Grace => list_grace(store.as_ref(), cli.machine),
        Command::Event { .. } => Ok(()),
    }
}

/// CTDB runs the event script with a 30 s default timeout per event; Ganesha answers
/// the grace call in milliseconds, so 10 s only bounds a hung Ganesha.
const DBUS_TIMEOUT: Duration = Duration::from_secs(10);

fn event(name: &str, args: &[String]) -> Result<(), String> {
    let code = match name {
        "takeip" => 5,
        "releaseip" => 2,
        _ => return Ok(()),
    };
    let ip = args
        .get(1)
        .ok_or_else(|| format!("event {name}: want <interface> <ip> <mask>, got {args:?}"))?;
    let ip: std::net::IpAddr = ip
        .parse()
        .map_err(|e| format!("event {name}: {ip:?} is not an IP address ({e})"))?;
    let arg = format!("{code}:{ip}");
    match dbus_admin::grace(&arg, DBUS_TIMEOUT) {
        Ok(msg) => println!("ganesha-ctdb: {name} {ip}: Ganesha: {msg}"),
        Err(e) => eprintln!(
            "ganesha-ctdb: {name} {ip}: {e} (is nfs-ganesha running? it reads this IP's \
             clients when it starts)"
        ),
    }
    Ok(())
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

fn list_grace(store: &dyn Store, machine: bool) -> Result<(), String> {
    let scan = store.scan(GRACE_PREFIX).map_err(|e| e.to_string())?;
    if machine {
        println!("|Node|Epoch|InGrace|");
    }
    for (key, value) in &scan.entries {
        let node = &key[GRACE_PREFIX.len()..];
        match GraceRecord::decode(value) {
            Ok(g) if machine => println!("|{node}|{}|{}|", g.epoch, u8::from(g.in_grace)),
            Ok(g) => println!(
                "node {node}: epoch {}, {}",
                g.epoch,
                if g.in_grace {
                    "grace period open"
                } else {
                    "not in grace"
                }
            ),
            Err(e) => eprintln!("skipping {key:?}: {e}"),
        }
    }
    if scan.entries.is_empty() && !machine {
        println!(
            "no grace records in {} (Ganesha has not started on it yet)",
            store.describe()
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ganesha-ctdb: {e}");
            ExitCode::FAILURE
        }
    }
}
