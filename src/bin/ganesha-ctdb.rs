//! ganesha-ctdb: the operator's tool for the ganesha-ctdb recovery backend.

use clap::{Parser, Subcommand};
use ganesha_ctdb_recov::config::DEFAULT_DIR;
use ganesha_ctdb_recov::records::{
    parse_v4_key, ClientRecord, GraceRecord, GRACE_PREFIX, V4_PREFIX,
};
use ganesha_ctdb_recov::store::dir::DirStore;
use ganesha_ctdb_recov::store::Store;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "ganesha-ctdb",
    version,
    about = "Inspect the NFSv4 recovery state that NFS-Ganesha keeps through the ganesha-ctdb backend",
    long_about = "ganesha-ctdb is the operator's tool for the ganesha-ctdb recovery backend, which \
NFS-Ganesha loads (NFSV4 { RecoveryBackend = rados_cluster; } with the library on its \
LD_LIBRARY_PATH) to remember which NFSv4 clients may reclaim their opens and locks after a \
restart or an IP takeover.\n\nThe store is the directory named by Dir in the CTDB_RECOVERY block \
of ganesha.conf (default /var/lib/ganesha-ctdb). Reading it is safe while Ganesha runs.",
    after_help = "Examples:\n  \
ganesha-ctdb records                   who may reclaim after the next restart\n  \
ganesha-ctdb records --dir /srv/state  the same for another store directory\n  \
ganesha-ctdb grace -X                  grace records, machine-readable"
)]
struct Cli {
    /// The store directory (Dir in CTDB_RECOVERY).
    #[arg(long, global = true, default_value = DEFAULT_DIR, value_name = "PATH")]
    dir: PathBuf,
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
}

fn run(cli: Cli) -> Result<(), String> {
    let store = DirStore::open(&cli.dir).map_err(|e| e.to_string())?;
    match cli.command {
        Command::Records => list_records(&store, cli.machine),
        Command::Grace => list_grace(&store, cli.machine),
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
