//! nfs4-client: take a byte-range lock, and reclaim it after the server restarted or its
//! IP moved. Used by the demo; prints one line per protocol step.

use clap::{Parser, Subcommand};
use nfs4_client::{netns, Client, ClientOptions, LockType, NfsStat};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    about = "A small NFSv4.0/4.1 client that locks, and reclaims locks after a server restart"
)]
struct Cli {
    /// Network namespace (`ip netns` name) to connect from.
    #[arg(long, global = true)]
    netns: Option<String>,
    /// Server address.
    #[arg(long, global = true, default_value = "127.0.0.1:2049")]
    server: SocketAddr,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Open PATH and lock bytes 0-99 for writing; save what a reclaim needs to STATE and
    /// exit without unlocking (as if the client were still running).
    Lock {
        /// File path from the pseudo root, e.g. export/file.txt.
        path: String,
        /// Where to save the client's identity and filehandle.
        #[arg(long)]
        state: PathBuf,
        /// NFSv4 minor version: 0 or 1.
        #[arg(long, default_value_t = 1)]
        minor: u32,
        /// The client owner string (the server's recovery record is keyed by it).
        #[arg(long)]
        owner: String,
    },
    /// With the identity saved by `lock`: re-establish the client, OPEN CLAIM_PREVIOUS,
    /// LOCK with reclaim, and (4.1) RECLAIM_COMPLETE.
    Reclaim {
        #[arg(long)]
        state: PathBuf,
    },
    /// As a different client: try a normal (non-reclaim) open and write lock of PATH.
    /// Exit status 0 if granted, 2 if refused (the status is printed).
    TryLock {
        path: String,
        #[arg(long, default_value_t = 1)]
        minor: u32,
        #[arg(long)]
        owner: String,
    },
}

fn client(cli: &Cli, minor: u32, owner: &str) -> Client {
    let ns = cli.netns.clone();
    let addr = cli.server;
    Client::new(ClientOptions::new(minor, owner.as_bytes()), move || {
        netns::connect(ns.as_deref(), addr, Duration::from_secs(20))
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn run(cli: &Cli) -> Result<ExitCode, String> {
    match &cli.cmd {
        Cmd::Lock {
            path,
            state,
            minor,
            owner,
        } => {
            let mut c = client(cli, *minor, owner);
            c.establish().map_err(|e| e.to_string())?;
            if *minor > 0 {
                // Nothing to reclaim: a 4.1 client says so before its first normal OPEN.
                c.reclaim_complete().map_err(|e| e.to_string())?;
            }
            println!("NFSv4.{minor} client {owner:?} established (the server recorded it)");
            let mut f = c.open(path).map_err(|e| format!("open {path}: {e}"))?;
            c.lock(&mut f, LockType::Write, 0, 100, false)
                .map_err(|e| format!("lock {path}: {e}"))?;
            println!("OPEN {path} and LOCK bytes 0-99 (write): granted");
            std::fs::write(
                state,
                format!(
                    "minor={minor}\nowner={}\nfh={}\n",
                    hex(owner.as_bytes()),
                    hex(&f.fh)
                ),
            )
            .map_err(|e| format!("write {}: {e}", state.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Reclaim { state } => {
            let text = std::fs::read_to_string(state)
                .map_err(|e| format!("read {}: {e} (run `lock` first)", state.display()))?;
            let field = |k: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(&format!("{k}=")).map(str::to_owned))
                    .ok_or_else(|| format!("{}: no {k}= line", state.display()))
            };
            let minor: u32 = field("minor")?.parse().map_err(|e| format!("minor: {e}"))?;
            let owner = unhex(&field("owner")?).ok_or("owner is not hex")?;
            let fh = unhex(&field("fh")?).ok_or("fh is not hex")?;
            let owner = String::from_utf8_lossy(&owner).into_owned();
            let mut c = client(cli, minor, &owner);
            c.establish().map_err(|e| e.to_string())?;
            println!("NFSv4.{minor} client {owner:?} re-established after the restart");
            let mut f = c
                .reclaim_open(&fh)
                .map_err(|e| format!("OPEN CLAIM_PREVIOUS: {e}"))?;
            println!("OPEN CLAIM_PREVIOUS: NFS4_OK (open reclaimed)");
            c.lock(&mut f, LockType::Write, 0, 100, true)
                .map_err(|e| format!("LOCK reclaim: {e}"))?;
            println!("LOCK bytes 0-99 with reclaim=true: NFS4_OK (lock reclaimed)");
            if minor > 0 {
                c.reclaim_complete().map_err(|e| e.to_string())?;
                println!("RECLAIM_COMPLETE: NFS4_OK");
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::TryLock { path, minor, owner } => {
            let mut c = client(cli, *minor, owner);
            c.establish().map_err(|e| e.to_string())?;
            if *minor > 0 {
                c.reclaim_complete().map_err(|e| e.to_string())?;
            }
            let res = c
                .open(path)
                .and_then(|mut f| c.lock(&mut f, LockType::Write, 0, 100, false));
            match res {
                Ok(()) => {
                    println!("client {owner:?}: OPEN + LOCK bytes 0-99: granted");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) if e.status().is_some() => {
                    let st = e.status().unwrap_or(NfsStat::OK);
                    println!("client {owner:?}: {e} (refused: {st})");
                    Ok(ExitCode::from(2))
                }
                Err(e) => Err(e.to_string()),
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nfs4-client: {e}");
            ExitCode::FAILURE
        }
    }
}
