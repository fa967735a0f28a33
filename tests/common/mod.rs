//! Helpers shared by the cluster end-to-end tests: building a cluster of real ctdbd +
//! ganesha.nfsd nodes (crates/testbed), NFSv4 clients in the bridge namespace, waiting.
#![allow(dead_code)]

pub mod single;

use ganesha_ctdb_recov::ctdb::CtdbTool;
use ganesha_ctdb_recov::store::ctdb::CtdbStore;
use nfs4_client::{netns, Client, ClientOptions, NfsStat};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use testbed::cluster::GaneshaSpec;
use testbed::{Cluster, ClusterSpec};

/// Runs `cmd`, fails the test with its output unless it succeeds, returns its stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

/// The cdylib Ganesha loads, target/<profile>/libganesha_ctdb_recov.so. `cargo test`
/// rebuilds the library in target/<profile>/deps but copies it up only on `cargo build`: a
/// test run after a change without one would drive yesterday's library and report on it.
pub fn fresh_library(target: &Path) -> PathBuf {
    let lib = target.join("libganesha_ctdb_recov.so");
    let built = target.join("deps/libganesha_ctdb_recov.so");
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (mtime(&lib), mtime(&built)) {
        (None, _) => panic!("{} missing: cargo build first", lib.display()),
        (Some(up), Some(new)) if up < new => panic!(
            "{} is older than the library this test run built ({}): cargo build first \
             (scripts/test.sh does)",
            lib.display(),
            built.display()
        ),
        _ => lib,
    }
}

pub fn store_on(c: &Cluster, i: usize, db: &str) -> CtdbStore {
    let tool = CtdbTool::with_socket(c.nodes[i].socket());
    CtdbStore::open(Box::new(tool), db).expect("attach test database")
}

/// The keys of every NFSv4 client record (`v4@<server-ip>@<tag>`), read through node `i`.
pub fn v4_keys(c: &Cluster, i: usize) -> Vec<String> {
    use ganesha_ctdb_recov::store::Store;
    store_on(c, i, "ganesha_recovery.tdb")
        .scan("v4@")
        .expect("scan the client records")
        .entries
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

/// How many of `keys` are filed under server IP `ip` (tags render owners with '/' or '.'
/// in hex, Ganesha's format, so records are counted by IP).
pub fn filed_under(keys: &[String], ip: impl Into<IpAddr>) -> usize {
    let prefix = format!("v4@{}@", ip.into());
    keys.iter().filter(|k| k.starts_with(&prefix)).count()
}

/// Owner strings (co_ownerid) as real clients send them.
pub mod owners {
    use std::net::IpAddr;

    /// Linux NFSv4.1/4.2: the uniform client string, "Linux NFSv4.<minor> <nodename>"; it
    /// never names the server address.
    pub fn linux_v41(minor: u32, host: &str) -> String {
        format!("Linux NFSv4.{minor} {host}")
    }

    /// Linux NFSv4.0 (nonuniform string): "Linux NFSv4.0 <nodename>/<server-addr>".
    pub fn linux_v40(host: &str, server: impl Into<IpAddr>) -> String {
        format!("Linux NFSv4.0 {host}/{}", server.into())
    }

    /// An NFSv4.0 owner that names no server address (libnfs's shape).
    pub fn v40_without_addr(host: &str, pid: u32) -> String {
        format!("Libnfs pid:{pid} {host}")
    }
}

/// 3 nodes, 3 public IPs, a ganesha.nfsd per node. `stock`: Ganesha's own `fs` recovery
/// backend with an event script that does what CTDB 4.17's nfs-ganesha callout does
/// (tests/fixtures/ctdb-stock-ganesha.script); otherwise ganesha-ctdb with Store = ctdb and
/// its event script.
pub fn ganesha_cluster(grace_period: u32, stock: bool) -> Cluster {
    ganesha_cluster_with(grace_period, stock, false)
}

/// As ganesha_cluster; `nlm`: NFSv3 + NLM too, each node with rpcbind and rpc.statd whose
/// ha-callout is ganesha-conf/statd-callout.
pub fn ganesha_cluster_with(grace_period: u32, stock: bool, nlm: bool) -> Cluster {
    ClusterOpts {
        grace_period,
        stock,
        nlm,
        ..ClusterOpts::default()
    }
    .up()
}

/// What ganesha_cluster_with takes, and more.
pub struct ClusterOpts {
    pub grace_period: u32,
    pub stock: bool,
    pub nlm: bool,
    pub public_ips: usize,
    /// IPv6 public addresses besides the IPv4 ones (testbed::ClusterSpec::public_ips6).
    pub public_ips6: usize,
    pub nodes: usize,
    /// Debian release whose ctdb and Ganesha run the nodes (scripts/chroots.sh): None for
    /// this machine's (Debian 12), Some("trixie") for Debian 13's ctdb 4.22 and Ganesha 6.5.
    pub debian: Option<&'static str>,
    /// Supervise each ganesha.nfsd as systemd does with the package's drop-in
    /// (packaging/systemd/ganesha-ctdb.conf: its ExecStopPost, restart after this delay).
    pub supervise: Option<Option<Duration>>,
}

impl Default for ClusterOpts {
    fn default() -> Self {
        ClusterOpts {
            grace_period: 20,
            stock: false,
            nlm: false,
            public_ips: 3,
            public_ips6: 0,
            nodes: 3,
            debian: None,
            supervise: None,
        }
    }
}

/// The drop-in's ExecStopPost command line, with the binary under test in place of
/// /usr/sbin/ganesha-ctdb and an unset GANESHA_CTDB_OPTS (as systemd expands it: no word).
pub fn exec_stop_post() -> Vec<String> {
    let dropin = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/systemd/ganesha-ctdb.conf"),
    )
    .expect("the systemd drop-in");
    let line = dropin
        .lines()
        .find_map(|l| l.strip_prefix("ExecStopPost="))
        .expect("the drop-in has an ExecStopPost line");
    line.trim_start_matches('-')
        .split_whitespace()
        .filter(|w| !w.starts_with('$'))
        .map(|w| {
            if w == "/usr/sbin/ganesha-ctdb" {
                target_dir().join("ganesha-ctdb").display().to_string()
            } else {
                w.to_string()
            }
        })
        .collect()
}

impl ClusterOpts {
    pub fn up(self) -> Cluster {
        let ClusterOpts {
            grace_period,
            stock,
            nlm,
            public_ips,
            public_ips6,
            nodes,
            debian,
            supervise,
        } = self;
        let target = target_dir();
        fresh_library(&target);
        assert!(
            target.join("ganesha-ctdb").exists(),
            "build first: cargo build --workspace --all-targets"
        );
        let mut spec = ClusterSpec::new(nodes, public_ips);
        spec.public_ips6 = public_ips6;
        let mut g = GaneshaSpec::new(
            target.clone(),
            if stock {
                ""
            } else {
                "CTDB_RECOVERY { Store = ctdb; Dir = $NODE; }"
            },
            grace_period,
        );
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        if stock {
            g.recovery_backend = "fs".into();
            spec.event_script = Some(repo.join("tests/fixtures/ctdb-stock-ganesha.script"));
        } else {
            spec.ganesha_ctdb_bin = Some(target.join("ganesha-ctdb"));
            spec.event_script = Some(repo.join("ganesha-conf/events/60.ganesha-ctdb.script"));
        }
        if nlm {
            g.nlm_callout = Some(repo.join("ganesha-conf/statd-callout"));
        }
        if let Some(suite) = debian {
            spec.root = Some(testbed::chroot::root(suite).unwrap_or_else(|e| panic!("{e}")));
            spec.shared = vec![target.clone()];
            // 6.x makes a failing PR_SET_IO_FLUSHER fatal unless told otherwise.
            g.core_extra = "allow_set_io_flusher_fail = true;".into();
        }
        if let Some(restart_after) = supervise {
            g.supervise = Some(testbed::cluster::Supervision {
                exec_stop_post: exec_stop_post(),
                restart_after,
            });
        }
        spec.ganesha = Some(g);
        let c = Cluster::up(spec).expect("cluster up");
        for f in [
            "x40.txt",
            "x41.txt",
            "y41.txt",
            "other.txt",
            "f40.txt",
            "f41.txt",
        ] {
            std::fs::write(c.dir.join("export").join(f), "data\n").unwrap();
        }
        c
    }
}

pub fn client(c: &Cluster, ip: impl Into<IpAddr>, minor: u32, owner: &str) -> Client {
    let ns = c.bridge_ns.clone();
    let addr = SocketAddr::from((ip.into(), 2049));
    Client::new(ClientOptions::new(minor, owner), move || {
        netns::connect(Some(&ns), addr, Duration::from_secs(20))
    })
}

pub fn refused<T: std::fmt::Debug>(
    res: Result<T, nfs4_client::Error>,
    allowed: &[NfsStat],
    what: &str,
) {
    match res {
        Err(e) if e.status().is_some_and(|s| allowed.contains(&s)) => {}
        other => panic!("{what}: want one of {allowed:?}, got {other:?}"),
    }
}

pub fn wait_log(c: &Cluster, node: usize, needle: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if c.nodes[node].ganesha_log().contains(needle) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "node {} never logged {needle:?}:\n{}",
        c.nodes[node].name,
        c.logs()
    );
}

/// The last line of node `i`'s ganesha.log saying whether it is in grace.
pub fn in_grace(c: &Cluster, i: usize) -> bool {
    c.ganesha_grace_state(i).unwrap_or(false)
}

/// Waits (60 s at most) until, for 3 s in a row, no node's Ganesha is in grace and no live
/// node's grace record is held: CTDB may still run a takeover run after the cluster came
/// up, and a test of what one grace event does must not start inside another.
pub fn wait_quiet(c: &Cluster) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut quiet_since: Option<Instant> = None;
    loop {
        let held = Command::new(target_dir().join("ganesha-ctdb"))
            .args(["--store", "ctdb", "grace", "-X"])
            .env("CTDB_SOCKET", c.nodes[0].socket())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| {
                String::from_utf8_lossy(&o.stdout).lines().skip(1).any(|l| {
                    let f: Vec<&str> = l.split('|').collect();
                    f.len() > 8 && f[2] == "1" && f[8] == "1"
                })
            })
            .unwrap_or(true);
        let quiet = !held && !(0..c.nodes.len()).any(|i| in_grace(c, i));
        match (quiet, quiet_since) {
            (true, Some(t)) if t.elapsed() >= Duration::from_secs(3) => return,
            (true, None) => quiet_since = Some(Instant::now()),
            (false, _) => quiet_since = None,
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "the cluster never settled out of grace:\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// A real rpc.statd (with its rpcbind) in the bridge namespace: the NFSv3 clients' host
/// (10.77.1.254), whose log shows each SM_NOTIFY it receives.
pub struct ClientStatd {
    child: Option<std::process::Child>,
    pub log: PathBuf,
}

impl ClientStatd {
    pub fn start(c: &Cluster) -> ClientStatd {
        let dir = c.dir.join("client-statd");
        for d in ["sm", "sm.bak"] {
            std::fs::create_dir_all(dir.join(d)).expect("client statd directories");
        }
        let log = c.dir.join("client-statd.log");
        let child = Command::new("ip")
            .args(["netns", "exec", &c.bridge_ns, "unshare", "-m", "--propagation", "private"])
            .args(["sh", "-c"])
            .arg(format!(
                "mount -t tmpfs tmpfs /run; rpcbind -f -w & sleep 0.5; exec rpc.statd -F -d -L -P {} 2>{}",
                dir.display(),
                log.display()
            ))
            .spawn()
            .expect("start the client rpc.statd");
        ClientStatd {
            child: Some(child),
            log,
        }
    }

    /// How many SM_NOTIFYs from `ip` this statd has logged.
    pub fn notifies_from(&self, ip: impl Into<IpAddr>) -> usize {
        let ip = ip.into();
        let want = format!("Received SM_NOTIFY from {ip}");
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&want))
            .count()
    }

    /// Waits (40 s at most) until this statd logged an SM_NOTIFY from `ip`.
    pub fn wait_notified_from(&self, ip: impl Into<IpAddr>, c: &Cluster) {
        self.wait_more_notifies(ip, 0, c);
    }

    /// Waits (40 s at most) until this statd logged more than `before` SM_NOTIFYs from `ip`.
    pub fn wait_more_notifies(&self, ip: impl Into<IpAddr>, before: usize, c: &Cluster) {
        let ip = ip.into();
        let want = format!("more than {before} SM_NOTIFY from {ip}");
        let deadline = Instant::now() + Duration::from_secs(40);
        while self.notifies_from(ip) <= before {
            assert!(
                Instant::now() < deadline,
                "client statd never got {want:?}:\n{}\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default(),
                c.logs()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for ClientStatd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            testbed::procs::kill_tree(c.id() as i32, Duration::from_secs(5));
            let _ = c.wait();
        }
    }
}
