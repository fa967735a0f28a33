//! Brings up a cluster, prints its state, tears it down (a smoke check of the harness).
fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3);
    let t = std::time::Instant::now();
    match testbed::Cluster::up(testbed::ClusterSpec::new(n, n)) {
        Ok(c) => {
            println!("up in {:?}: status {:?}", t.elapsed(), c.status());
            println!("ips {:?}", c.ip_holders(0));
            if let Ok(cmd) = std::env::var("UP_RUN") {
                let st = std::process::Command::new("sh")
                    .arg("-c")
                    .arg(&cmd)
                    .env("CTDB_SOCKET", c.nodes[0].socket())
                    .status();
                println!("UP_RUN: {st:?}");
            }
            for n in &c.nodes {
                let pid = n.ctdbd_pid().unwrap_or(0);
                println!(
                    "{} ctdbd {pid} tree {:?}",
                    n.name,
                    testbed::procs::tree(pid)
                );
            }
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
