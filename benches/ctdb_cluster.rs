//! The ctdb store on a real 3-node ctdbd cluster (crates/testbed): add_clid latency and
//! throughput with 1 and with 64 concurrent clients (group commit), side by side with one
//! `ctdb ptrans` per write (what a backend calling the tool per record would do), and the
//! time to load 10,000 records of one IP at takeover (read_clids TAKE_IP), next to a bare
//! `ctdb catdb` of the same database. Needs root.
//!
//!     cargo bench --bench ctdb_cluster [-- --calls N]
//!
//! Under `cargo test` (no --bench flag) it only says how to run it: a cluster takes ~20 s.

use ganesha_ctdb_recov::backend::{Backend, ClientInfo, ClusterNode, GraceStart};
use ganesha_ctdb_recov::ctdb::{CtdbApi, CtdbTool};
use ganesha_ctdb_recov::records::ClientRecord;
use ganesha_ctdb_recov::store::ctdb::CtdbStore;
use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testbed::{Cluster, ClusterSpec};

fn client(i: u64, ip: [u8; 4]) -> ClientInfo {
    ClientInfo {
        clientid: 0x6b06_0000_0000 + i,
        owner: format!("Linux NFSv4.1 bench-client-{i}").into_bytes(),
        caller_addr: Some(format!("::ffff:10.77.2.{}", i % 250 + 1)),
        server_addr: Some(ip.into()),
        server_addr_low32: false,
        minor_version: 1,
        tag: None,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(name: &str, mut samples: Vec<Duration>, wall: Duration) {
    samples.sort();
    println!(
        "{name:<52} n={:<5} median={:>7.2} ms  p99={:>7.2} ms  throughput={:>7.0}/s",
        samples.len(),
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples.len() as f64 / wall.as_secs_f64()
    );
}

fn tool(c: &Cluster, i: usize) -> CtdbTool {
    CtdbTool::with_socket(c.nodes[i].socket())
}

fn backend(c: &Cluster, db: &str) -> Result<Backend, Box<dyn std::error::Error>> {
    let t = tool(c, 0);
    let store = CtdbStore::open(Box::new(t.clone()), db)?;
    let b = Backend::with_cluster(
        Box::new(store),
        None,
        "0",
        Some(ClusterNode {
            pnn: 0,
            ctdb: Arc::new(t),
        }),
    )?;
    Ok(b)
}

/// `threads` clients each making `per_thread` add_clid calls; NFSv4.0 clients (no server
/// address, filed by the public IPs the node holds) when `v40`.
fn bench_add_clid(
    b: &Arc<Backend>,
    threads: u64,
    per_thread: u64,
    base: u64,
    v40: bool,
) -> (Vec<Duration>, Duration) {
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let b = b.clone();
            std::thread::spawn(move || {
                (0..per_thread)
                    .map(|i| {
                        let mut c = client(base + t * per_thread + i, [10, 77, 1, 1]);
                        if v40 {
                            c.minor_version = 0;
                            c.server_addr = None;
                            c.owner = format!("Linux NFSv4.0 bench-{}", c.clientid).into_bytes();
                        }
                        let s = Instant::now();
                        let (_, r) = b.add_clid(&c);
                        r.expect("add_clid stored");
                        s.elapsed()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let samples = handles
        .into_iter()
        .flat_map(|h| h.join().expect("bench thread"))
        .collect();
    (samples, start.elapsed())
}

/// The anchor: one `ctdb ptrans` process per record.
fn bench_ptrans(c: &Cluster, db: &str, threads: u64, per_thread: u64) -> (Vec<Duration>, Duration) {
    let socket = c.nodes[0].socket();
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let socket = socket.clone();
            let db = db.to_string();
            std::thread::spawn(move || {
                (0..per_thread)
                    .map(|i| {
                        let s = Instant::now();
                        let mut child = Command::new("ctdb")
                            .args(["ptrans", &db])
                            .env("CTDB_SOCKET", &socket)
                            .stdin(Stdio::piped())
                            .stdout(Stdio::null())
                            .spawn()
                            .expect("ctdb ptrans");
                        if let Some(mut w) = child.stdin.take() {
                            let _ =
                                writeln!(w, "\"anchor-{t}-{i}\" \"v1 clientid={i} stamp=0.{t}\"");
                        }
                        assert!(child.wait().expect("ptrans").success());
                        s.elapsed()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let samples = handles
        .into_iter()
        .flat_map(|h| h.join().expect("anchor thread"))
        .collect();
    (samples, start.elapsed())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("ctdb_cluster: run with `cargo bench --bench ctdb_cluster` (root; starts a 3-node ctdbd cluster)");
        return Ok(());
    }
    let calls: u64 = args
        .iter()
        .position(|a| a == "--calls")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(320);
    let t = Instant::now();
    let c = Cluster::up(ClusterSpec::new(3, 3)).map_err(|e| e.to_string())?;
    println!(
        "3-node ctdbd cluster healthy after {:.1} s; writes go through node 0",
        t.elapsed().as_secs_f64()
    );
    let db = "bench_recovery.tdb";
    let b = Arc::new(backend(&c, db)?);
    b.read_clids(&GraceStart::Restart);
    b.end_grace();

    let (s, w) = bench_add_clid(&b, 1, calls, 0, false);
    report("ganesha-ctdb add_clid, 1 client", s, w);
    let per = (calls / 64).max(5);
    let (s, w) = bench_add_clid(&b, 64, per, 1_000_000, false);
    report("ganesha-ctdb add_clid, 64 concurrent clients", s, w);
    // NFSv4.0: filing needs the public IP list; one read serves the clients of 2 s.
    let (s, w) = bench_add_clid(&b, 64, per, 2_000_000, true);
    report("ganesha-ctdb add_clid, 64 concurrent NFSv4.0 clients", s, w);
    let ips = tool(&c, 0);
    let start = Instant::now();
    let s: Vec<Duration> = (0..20)
        .map(|_| {
            let t = Instant::now();
            ips.public_ips().expect("ctdb ip all");
            t.elapsed()
        })
        .collect();
    report(
        "(what each v4.0 filing paid before: `ctdb -X ip all`)",
        s,
        start.elapsed(),
    );
    let (s, w) = bench_ptrans(&c, db, 1, (calls / 2).max(20));
    report("anchor: one `ctdb ptrans` per write, 1 writer", s, w);
    let (s, w) = bench_ptrans(&c, db, 64, (per / 2).max(2));
    report("anchor: one `ctdb ptrans` per write, 64 writers", s, w);

    // 10,000 records of one IP, written in one transaction, then a takeover reads them.
    let ip: IpAddr = "10.77.1.9".parse()?;
    let writes: Vec<(Vec<u8>, Option<Vec<u8>>)> = (0..10_000u64)
        .map(|i| {
            let c = client(i, [10, 77, 1, 9]);
            (
                format!("v4@{ip}@{}", c.tag()).into_bytes(),
                Some(
                    ClientRecord {
                        clientid: c.clientid,
                        stamp: "1.1".into(),
                        revoked: Vec::new(),
                        reclaim_complete: None,
                    }
                    .encode(),
                ),
            )
        })
        .collect();
    let t = Instant::now();
    tool(&c, 0).transaction(db, &writes)?;
    println!(
        "(setup: 10,000 records written in one ptrans in {:.0} ms)",
        t.elapsed().as_secs_f64() * 1e3
    );
    let taker = backend(&c, db)?;
    let t = Instant::now();
    let offered = taker.read_clids(&GraceStart::TakeIp(ip));
    let load = t.elapsed();
    if offered.len() != 10_000 {
        let scan = ganesha_ctdb_recov::store::Store::scan(
            &CtdbStore::open(Box::new(tool(&c, 0)), db)?,
            "v4@",
        )?;
        let under = scan
            .entries
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("v4@{ip}@")))
            .count();
        return Err(format!(
            "takeover offered {} of 10,000 records; the store has {under} under {ip} ({} v4 records, {} unparsed: {:?})",
            offered.len(),
            scan.entries.len(),
            scan.skipped.len(),
            scan.skipped.iter().take(3).map(|s| &s.reason).collect::<Vec<_>>()
        )
        .into());
    }
    let t = Instant::now();
    let dump = tool(&c, 1).traverse(db)?;
    let catdb = t.elapsed();
    println!(
        "{:<52} {:>7.0} ms for 10,000 of {} records (anchor: bare `ctdb catdb` {:.0} ms)",
        "takeover load (read_clids TAKE_IP)",
        load.as_secs_f64() * 1e3,
        dump.records.len(),
        catdb.as_secs_f64() * 1e3
    );
    Ok(())
}
