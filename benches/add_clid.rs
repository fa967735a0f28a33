//! add_clid latency on the dir store: median and p99 over N calls (default 10,000), side by
//! side with the system calls Ganesha's own `fs` backend makes for the same hook (fs_add_clid:
//! one mkdir per 255-byte segment of the tag under v4recov/, no fsync), in the same run and
//! on the same file system.
//!
//!     cargo bench --bench add_clid [-- --calls N --dir PATH]
//!
//! The store directory defaults to target/bench-add-clid (the disk the project lives on;
//! /tmp may be tmpfs, where fsync costs nothing and the numbers would flatter us).

use ganesha_ctdb_recov::backend::{Backend, ClientInfo, GraceStart};
use ganesha_ctdb_recov::store::dir::DirStore;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn client(i: u64) -> ClientInfo {
    ClientInfo {
        clientid: 0x6b06_0000_0000 + i,
        owner: format!("Linux NFSv4.1 bench-client-{i}").into_bytes(),
        caller_addr: Some(format!("::ffff:10.77.2.{}", i % 250 + 1)),
        server_addr: Some([10, 77, 1, 1].into()),
        server_addr_low32: false,
        minor_version: 1,
        tag: None,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn report(name: &str, mut samples: Vec<Duration>, wall: Duration) {
    samples.sort();
    println!(
        "{name:<44} n={:<6} median={:>8.1} us  p99={:>8.1} us  max={:>8.1} us  throughput={:>8.0}/s",
        samples.len(),
        percentile(&samples, 0.5).as_secs_f64() * 1e6,
        percentile(&samples, 0.99).as_secs_f64() * 1e6,
        samples.last().map_or(0.0, |d| d.as_secs_f64() * 1e6),
        samples.len() as f64 / wall.as_secs_f64()
    );
}

fn fresh_dir(base: &Path, name: &str) -> std::io::Result<PathBuf> {
    let dir = base.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn bench_ours(base: &Path, calls: u64) -> Result<(), Box<dyn std::error::Error>> {
    let dir = fresh_dir(base, "dir-store")?;
    let backend = Backend::with_store(Box::new(DirStore::open(&dir)?), "bench")?;
    backend.read_clids(&GraceStart::Restart);
    backend.end_grace();
    let mut samples = Vec::with_capacity(calls as usize);
    let start = Instant::now();
    for i in 0..calls {
        let c = client(i);
        let t = Instant::now();
        let (_tag, stored) = backend.add_clid(&c);
        samples.push(t.elapsed());
        stored?;
    }
    report(
        "ganesha-ctdb add_clid (dir store, durable)",
        samples,
        start.elapsed(),
    );
    Ok(())
}

/// What recovery_fs.c's fs_add_clid does: mkdir of each NAME_MAX segment of the tag.
fn bench_fs_anchor(base: &Path, calls: u64) -> Result<(), Box<dyn std::error::Error>> {
    let root = fresh_dir(base, "fs-anchor/v4recov")?;
    let mut samples = Vec::with_capacity(calls as usize);
    let start = Instant::now();
    for i in 0..calls {
        let tag = client(i).tag();
        let t = Instant::now();
        let mut path = root.clone();
        for segment in tag.as_bytes().chunks(255) {
            path.push(String::from_utf8_lossy(segment).as_ref());
            match std::fs::create_dir(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e.into()),
            }
        }
        samples.push(t.elapsed());
    }
    report(
        "anchor: Ganesha fs backend syscalls (no fsync)",
        samples,
        start.elapsed(),
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary with test
    // flags instead, and then a short pass checks that the benchmark still works.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let benchmarking = args.iter().any(|a| a == "--bench");
    let mut calls = if benchmarking { 10_000u64 } else { 200 };
    let mut base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-add-clid");
    let mut args = args.into_iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--calls" => calls = args.next().ok_or("--calls needs a number")?.parse()?,
            "--dir" => base = args.next().ok_or("--dir needs a path")?.into(),
            "--bench" => {}
            other if benchmarking => {
                return Err(format!("unknown argument {other}; use --calls N --dir PATH").into())
            }
            _ => {}
        }
    }
    println!(
        "add_clid benchmark: {calls} calls, store under {}",
        base.display()
    );
    bench_ours(&base, calls)?;
    bench_fs_anchor(&base, calls)?;
    let _ = std::fs::remove_dir_all(&base);
    Ok(())
}
