//! Randomized failover torture on the real testbed (issue 15; tests/torture/ holds the
//! harness, docs/reliability.md the results). Needs root; builds and tears down its own
//! cluster in network namespaces.
//!
//!     cargo run --release --example torture -- --seed 7 --failovers 100 --nodes 3

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/torture/mod.rs"]
mod torture;

use clap::Parser;

/// Randomized failovers against a real ctdbd + ganesha.nfsd cluster, checked by what the
/// clients are granted. Exit status 1 on a conflict, a lost reclaim, a missing SM_NOTIFY or
/// a stuck cluster outside the windows docs/operations.md declares.
#[derive(Parser)]
struct Args {
    /// Names the schedule: the same seed draws the same faults on every machine.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 10)]
    failovers: usize,
    /// 3 or 5 nodes (as many public IPs as nodes).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Run Ganesha's stock `fs` backend instead (the anchor); implies --keep-going.
    #[arg(long)]
    stock: bool,
    /// No NFSv3/NLM clients (and no rpc.statd on the nodes).
    #[arg(long)]
    no_nlm: bool,
    /// Grace_Period on every node, seconds.
    #[arg(long, default_value_t = 20)]
    grace: u32,
    /// Count violations and go on instead of stopping at the first.
    #[arg(long)]
    keep_going: bool,
    #[arg(long, default_value_t = 2)]
    challengers: usize,
    /// Skip the schedule's first N steps (replays a violation's step sooner).
    #[arg(long, default_value_t = 0)]
    skip: usize,
    /// Print the schedule the seed names and exit (no cluster).
    #[arg(long)]
    plan: bool,
}

fn main() {
    let a = Args::parse();
    let opts = torture::Opts {
        seed: a.seed,
        failovers: a.failovers,
        nodes: a.nodes,
        stock: a.stock,
        nlm: !a.no_nlm,
        grace: a.grace,
        keep_going: a.keep_going || a.stock,
        challengers: a.challengers,
        skip: a.skip,
        ..torture::Opts::default()
    };
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, opts.interrupted.clone()) {
            eprintln!(
                "torture: cannot catch signal {sig} ({e}); stopping it leaves the cluster up"
            );
        }
    }
    if a.plan {
        for (i, p) in torture::plan(&opts).iter().enumerate() {
            println!("{:>4}  {p}", i + 1);
        }
        return;
    }
    match torture::run(&opts) {
        Ok(r) => {
            println!(
                "\nseed {} · {} of {} failover(s) on {} nodes · {} · {:.1} min\n",
                opts.seed,
                r.steps.len(),
                opts.failovers,
                opts.nodes,
                if opts.stock {
                    "stock fs backend"
                } else {
                    "ganesha-ctdb"
                },
                r.elapsed.as_secs_f64() / 60.0
            );
            print!("{}", r.table());
            for v in &r.violations {
                println!("step {} ({}): {v}", v.step, v.fault);
            }
            if !r.failures().is_empty() && !opts.stock {
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("torture: the run could not go on: {e}");
            std::process::exit(2);
        }
    }
}
