//! The failover demo (README's main command runs it through scripts/demo.sh): a real
//! 3-node ctdbd cluster in network namespaces, one ganesha.nfsd per node with ganesha-ctdb
//! (Store = ctdb), NFSv4.0 and NFSv4.1 clients locking through public IP X; the node
//! holding X is killed; CTDB moves X; every node refuses newcomers with NFS4ERR_GRACE while
//! the clients reclaim through X on the new node. Needs root; tears everything down by pid.

use nfs4_client::{netns, Client, ClientOptions, LockType};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use testbed::cluster::{tail, GaneshaSpec};
use testbed::{Cluster, ClusterSpec};

fn step(s: &str) {
    println!("\n== {s}");
}

fn client(c: &Cluster, ip: Ipv4Addr, minor: u32, owner: &str) -> Client {
    let ns = c.bridge_ns.clone();
    let addr = SocketAddr::from((ip, 2049));
    Client::new(ClientOptions::new(minor, owner), move || {
        netns::connect(Some(&ns), addr, Duration::from_secs(20))
    })
}

fn records(c: &Cluster, via: usize, bin: &Path) {
    let out = Command::new(bin)
        .args(["--store", "ctdb", "records"])
        .env("CTDB_SOCKET", c.nodes[via].socket())
        .output();
    match out {
        Ok(o) => print!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => println!("ganesha-ctdb records: {e}"),
    }
}

fn main() -> Result<(), String> {
    let target: PathBuf = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .parent()
        .and_then(Path::parent)
        .ok_or("target dir")?
        .to_path_buf();
    let bin = target.join("ganesha-ctdb");
    let mut spec = ClusterSpec::new(3, 3);
    spec.ganesha = Some(GaneshaSpec::new(
        target.clone(),
        "CTDB_RECOVERY { Store = ctdb; Dir = $NODE; }",
        40,
    ));
    spec.ganesha_ctdb_bin = Some(bin.clone());
    spec.event_script = Some(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("ganesha-conf/events/60.ganesha-ctdb.script"),
    );

    step("Bringing up 3 ctdbd nodes (network namespaces on one bridge) and a ganesha.nfsd on each");
    let t = Instant::now();
    let c = Cluster::up(spec)?;
    println!(
        "healthy after {:.1} s; work dir {}",
        t.elapsed().as_secs_f64(),
        c.dir.display()
    );
    for f in ["x40.txt", "x41.txt", "other.txt"] {
        std::fs::write(c.dir.join("export").join(f), "data\n").map_err(|e| e.to_string())?;
    }
    print!("{}", c.nodes[0].ctdb(&["ip", "all"])?);
    let x = c.public_ips[0];
    let a_pnn = c.holder(x, 0)?.ok_or("X unassigned")?;
    let a = c.node_by_pnn(a_pnn).ok_or("no such node")?;
    let survivor = (0..3).find(|i| *i != a).ok_or("no survivor")?;

    step(&format!(
        "NFSv4.0 and NFSv4.1 clients open and lock a file each through {x} (node {a_pnn})"
    ));
    let err = |e: nfs4_client::Error| e.to_string();
    // Owners as Linux sends them: v4.0 names the server address, v4.1 never does.
    let mut c40 = client(&c, x, 0, &format!("Linux NFSv4.0 demo40/{x}"));
    c40.establish().map_err(err)?;
    let mut f40 = c40.open("export/x40.txt").map_err(err)?;
    c40.lock(&mut f40, LockType::Write, 0, 100, false)
        .map_err(err)?;
    println!("v4.0: OPEN export/x40.txt + LOCK 0-99: granted");
    let mut c41 = client(&c, x, 1, "Linux NFSv4.1 demo41");
    c41.establish().map_err(err)?;
    c41.reclaim_complete().map_err(err)?;
    let mut f41 = c41.open("export/x41.txt").map_err(err)?;
    c41.lock(&mut f41, LockType::Write, 0, 100, false)
        .map_err(err)?;
    println!("v4.1: OPEN export/x41.txt + LOCK 0-99: granted");
    println!("records in the CTDB database (ganesha-ctdb --store ctdb records):");
    records(&c, survivor, &bin);

    step(&format!(
        "SIGKILL node {a_pnn}: its ctdbd and its ganesha.nfsd"
    ));
    let mut c = c;
    let t = Instant::now();
    c.kill_node(a);
    let b_pnn = c.wait_ip_moved(x, a_pnn, survivor, Duration::from_secs(40))?;
    let b = c.node_by_pnn(b_pnn).ok_or("no such node")?;
    println!(
        "CTDB moved {x} to node {b_pnn} after {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !c.nodes[b]
        .ganesha_log()
        .contains(&format!("takeover of {x}"))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    for line in c.nodes[b]
        .ganesha_log()
        .lines()
        .filter(|l| l.contains(&format!("takeover of {x}")) || l.contains("Now IN GRACE"))
    {
        println!(
            "  node {b_pnn}: {}",
            line.split(" :EVENT :").last().unwrap_or(line)
        );
    }

    step("Newcomers are refused on every node while the old clients may reclaim (cluster grace)");
    let holders = c.ip_holders(b)?;
    for ip in c.public_ips.clone() {
        let node = holders
            .get(&ip)
            .copied()
            .flatten()
            .map_or("?".into(), |p| p.to_string());
        let mut newcomer = client(&c, ip, 0, &format!("Linux NFSv4.0 newcomer/{ip}"));
        newcomer.establish().map_err(err)?;
        match newcomer.open("export/x41.txt") {
            Ok(_) => println!("newcomer through {ip} (node {node}): OPEN granted (unexpected!)"),
            Err(e) => println!("newcomer through {ip} (node {node}): {e}"),
        }
    }

    step(&format!(
        "Both clients reclaim through {x}, now on node {b_pnn}"
    ));
    c40.disconnect();
    c40.establish().map_err(err)?;
    let mut r40 = c40.reclaim_open(&f40.fh).map_err(err)?;
    c40.lock(&mut r40, LockType::Write, 0, 100, true)
        .map_err(err)?;
    println!("v4.0: OPEN CLAIM_PREVIOUS + LOCK reclaim: NFS4_OK");
    c41.disconnect();
    c41.establish().map_err(err)?;
    let mut r41 = c41.reclaim_open(&f41.fh).map_err(err)?;
    c41.lock(&mut r41, LockType::Write, 0, 100, true)
        .map_err(err)?;
    c41.reclaim_complete().map_err(err)?;
    println!("v4.1: OPEN CLAIM_PREVIOUS + LOCK reclaim + RECLAIM_COMPLETE: NFS4_OK");
    println!(
        "\nlast lines of node {b_pnn}'s ganesha.log:\n{}",
        tail(&c.nodes[b].ganesha_log(), 4)
    );
    step("Tearing down (by pid)");
    Ok(())
}
