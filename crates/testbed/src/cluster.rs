//! The cluster: namespaces, ctdbd per node (in a private view of /etc/ctdb, /var/lib/ctdb
//! and /run, as ctdb-runtime.md describes), optional D-Bus + ganesha.nfsd per node.

use crate::procs;
use nix::sys::signal::Signal;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, String>;

#[derive(Debug, Clone)]
pub struct GaneshaSpec {
    /// Directory holding libganesha_rados_recov.so (our library under Ganesha's name).
    pub lib_dir: PathBuf,
    /// The CTDB_RECOVERY block; `$NODE` is replaced by the node's directory.
    pub recovery_block: String,
    pub grace_period: u32,
    pub lease_lifetime: u32,
    /// NFSV4 RecoveryBackend: "rados_cluster" loads our library; "fs" is Ganesha's stock
    /// backend (the anchor), with RecoveryRoot in the node's directory.
    pub recovery_backend: String,
    /// NFSv3 + NLM as well: each node's Ganesha runs with its own rpcbind and rpc.statd
    /// (in a private /run), statd calling this ha-callout.
    pub nlm_callout: Option<PathBuf>,
    /// Extra NFS_CORE_PARAM keys (6.x here: allow_set_io_flusher_fail = true;).
    pub core_extra: String,
    /// Extra EXPORT keys (e.g. a Filesystem_id for one node only).
    pub export_extra: String,
    /// Run ganesha.nfsd as systemd runs nfs-ganesha with ganesha-ctdb's drop-in: when it
    /// exits, for any reason, run this command (ExecStopPost) in the node's environment,
    /// then start it again after `restart_after` (Restart=, RestartSec=; None: no restart).
    pub supervise: Option<Supervision>,
}

#[derive(Debug, Clone)]
pub struct Supervision {
    pub exec_stop_post: Vec<String>,
    pub restart_after: Option<Duration>,
}

impl GaneshaSpec {
    pub fn new(lib_dir: PathBuf, recovery_block: &str, grace_period: u32) -> Self {
        GaneshaSpec {
            lib_dir,
            recovery_block: recovery_block.into(),
            grace_period,
            lease_lifetime: 10,
            recovery_backend: "rados_cluster".into(),
            nlm_callout: None,
            core_extra: String::new(),
            export_extra: String::new(),
            supervise: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub nodes: usize,
    pub public_ips: usize,
    /// IPv6 public addresses besides the IPv4 ones (fd00:77:1::1, ::2, ...), moved by
    /// CTDB's 10.interface like the others and reachable from the bridge namespace.
    pub public_ips6: usize,
    pub ganesha: Option<GaneshaSpec>,
    /// The `ganesha-ctdb` binary: when set, each node gets the 60.ganesha-ctdb event
    /// script (ganesha-conf/) enabled, calling it.
    pub ganesha_ctdb_bin: Option<PathBuf>,
    /// The event script shim to install (ganesha-conf/events/60.ganesha-ctdb.script).
    pub event_script: Option<PathBuf>,
    /// Keep the work directory after teardown (for debugging); its path is printed.
    pub keep: bool,
    /// Run each node's ctdbd, event scripts and Ganesha from this Debian root (built by
    /// scripts/chroots.sh, see crate::chroot) instead of this machine's packages.
    pub root: Option<PathBuf>,
    /// Directories the daemons must see at their own paths inside `root` besides the
    /// cluster's (the build directory holding ganesha-ctdb and the library).
    pub shared: Vec<PathBuf>,
}

impl ClusterSpec {
    pub fn new(nodes: usize, public_ips: usize) -> Self {
        ClusterSpec {
            nodes,
            public_ips,
            public_ips6: 0,
            ganesha: None,
            ganesha_ctdb_bin: None,
            event_script: None,
            keep: std::env::var_os("TESTBED_KEEP").is_some(),
            root: None,
            shared: Vec::new(),
        }
    }
}

pub struct Node {
    pub pnn: u32,
    pub name: String,
    pub ns: String,
    pub base: PathBuf,
    pub addr: Ipv4Addr,
    ctdbd: Option<Child>,
    dbus: Option<Child>,
    ganesha: Option<Child>,
    /// The Debian root the node's daemons run from and the paths shared into it.
    root: Option<PathBuf>,
    shared: Vec<PathBuf>,
}

impl Node {
    pub fn socket(&self) -> PathBuf {
        self.base.join("runroot/ctdb/ctdbd.socket")
    }

    pub fn dbus_address(&self) -> String {
        format!(
            "unix:path={}",
            self.base.join("dbus/system_bus_socket").display()
        )
    }

    pub fn ganesha_log(&self) -> String {
        fs::read_to_string(self.base.join("ganesha.log")).unwrap_or_default()
    }

    pub fn ctdb_log(&self) -> String {
        fs::read_to_string(self.base.join("log.ctdb")).unwrap_or_default()
    }

    /// Runs the `ctdb` tool against this node's daemon (from the host, as an operator would
    /// with CTDB_SOCKET).
    pub fn ctdb(&self, args: &[&str]) -> Result<String> {
        self.ctdb_with_input(args, "")
    }

    /// `ctdb` with `input` on its standard input (ptrans), against this node's daemon.
    pub fn ctdb_with_input(&self, args: &[&str], input: &str) -> Result<String> {
        use std::io::Write;
        let mut cmd = match &self.root {
            None => {
                let mut c = Command::new("ctdb");
                c.args(args).env("CTDB_SOCKET", self.socket());
                c
            }
            // A newer tool only honours CTDB_SOCKET in CTDB's test mode: run the root's
            // own tool where the node's /run is /run, as on a real node.
            Some(_) => {
                let words: Vec<&str> = std::iter::once("ctdb")
                    .chain(args.iter().copied())
                    .collect();
                let mut c = Command::new("unshare");
                c.args(["--mount", "sh", "-c"]).arg(
                    self.in_view(&crate::chroot::shell_words(&words))
                        .unwrap_or_default(),
                );
                c
            }
        };
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("ctdb {args:?}: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(input.as_bytes())
                .map_err(|e| format!("ctdb {args:?} input: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("ctdb {args:?}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "ctdb {args:?} on {}: {}{}",
                self.name,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A shell snippet running `cmd` (shell words) in this node's Debian root with its
    /// /run as /run and the shared paths at their own; None for a node of this machine.
    pub fn in_view(&self, cmd: &str) -> Option<String> {
        let root = self.root.as_ref()?;
        let shared: Vec<&Path> = self.shared.iter().map(PathBuf::as_path).collect();
        let runroot = self.base.join("runroot");
        Some(crate::chroot::wrap_binds(
            root,
            &shared,
            &[(runroot.as_path(), Path::new("/run"))],
            cmd,
        ))
    }

    pub fn ctdbd_pid(&self) -> Option<i32> {
        self.ctdbd.as_ref().map(|c| c.id() as i32)
    }

    /// The process the testbed started for Ganesha (a supervising shell when supervised).
    pub fn ganesha_pid(&self) -> Option<i32> {
        self.ganesha.as_ref().map(|c| c.id() as i32)
    }

    /// ganesha.nfsd itself: the started process or, supervised, its child of that name
    /// (found in the tree of the pid we started, never by name across the machine).
    pub fn ganesha_nfsd_pid(&self) -> Option<i32> {
        let root = self.ganesha_pid()?;
        procs::tree(root).into_iter().find(|p| {
            fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "ganesha.nfsd")
        })
    }

    pub fn ctdbd_running(&mut self) -> bool {
        self.ctdbd
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

pub struct Cluster {
    pub spec: ClusterSpec,
    pub id: String,
    work: Option<tempfile::TempDir>,
    pub dir: PathBuf,
    pub bridge_ns: String,
    pub nodes: Vec<Node>,
    pub public_ips: Vec<Ipv4Addr>,
    /// ClusterSpec::public_ips6 of them.
    pub public_ips6: Vec<Ipv6Addr>,
    namespaces: Vec<String>,
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn ip(args: &[&str]) -> Result<()> {
    run(Command::new("ip").args(args))
}

/// rpc.statd as Debian runs it: nfs-common makes user statd own /var/lib/nfs/sm, and statd
/// drops to the owner of its `sm` directory (no capabilities left), running its callout so.
/// The node's statd directory is given the same owner, and the cluster directory lets that
/// user through to the node's statd spool. Where this machine's sm is root's, nothing.
fn statd_as_debian_runs_it(cluster: &Path, node: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(sm) = fs::metadata("/var/lib/nfs/sm") else {
        return Ok(());
    };
    if sm.uid() == 0 {
        return Ok(());
    }
    for d in ["statd", "statd/sm", "statd/sm.bak"] {
        let p = node.join(d);
        std::os::unix::fs::chown(&p, Some(sm.uid()), Some(sm.gid()))
            .map_err(|e| format!("chown {}: {e}", p.display()))?;
    }
    for d in [cluster, node] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o711))
            .map_err(|e| format!("chmod {}: {e}", d.display()))?;
    }
    Ok(())
}

/// The bridge namespace's IPv6 address: the clients' source address towards IPv6 public
/// addresses.
pub const BRIDGE_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 1, 0, 0, 0, 0, 0xfe);

/// Duplicate address detection off on `dev` in `ns` (and for addresses added later).
fn no_dad(ns: &str, dev: &str) -> Result<()> {
    for key in [
        format!("net.ipv6.conf.{dev}.accept_dad=0"),
        format!("net.ipv6.conf.{dev}.disable_ipv6=0"),
    ] {
        run(Command::new("ip").args(["netns", "exec", ns, "sysctl", "-qw", &key]))?;
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))
}

/// ganesha.nfsd in the foreground, its config, log and pid file in `dir` (the layout every
/// test uses); as arguments (`ganesha_command`) or joined for a shell script.
pub fn ganesha_args(dir: &Path) -> Vec<String> {
    let d = dir.display();
    ["/usr/bin/ganesha.nfsd", "-F", "-N", "NIV_EVENT"]
        .into_iter()
        .map(String::from)
        .chain([
            "-L".into(),
            format!("{d}/ganesha.log"),
            "-f".into(),
            format!("{d}/ganesha.conf"),
            "-p".into(),
            format!("{d}/ganesha.pid"),
        ])
        .collect()
}

/// `ip netns exec <ns>` ganesha.nfsd (`ganesha_args`), loading libraries from `lib` first;
/// its output discarded (it logs to `dir`/ganesha.log).
pub fn ganesha_command(ns: &str, dir: &Path, lib: &Path) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns])
        .args(ganesha_args(dir))
        .env("LD_LIBRARY_PATH", lib)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

fn mkdir(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(|e| format!("mkdir {}: {e}", path.display()))
}

/// ctdbd's MonitorInterval (s) while a cluster with Ganesha comes up: the cap of CTDB's
/// doubling monitor interval (2, 4, 8, ... s after start-up; 5, 10, ... after a health
/// change), so that the bring-up is not spent in monitor events.
const BRING_UP_MONITOR_INTERVAL: u32 = 60;

impl Cluster {
    /// Builds the namespaces and configuration and starts every ctdbd (and Ganesha, if
    /// specified); returns once all nodes are healthy and every public IP has a holder.
    pub fn up(spec: ClusterSpec) -> Result<Cluster> {
        if spec.nodes == 0
            || spec.nodes > 8
            || spec.public_ips == 0
            || spec.public_ips > 16
            || spec.public_ips6 > 16
        {
            return Err(format!(
                "cluster of {} node(s), {} IPv4 and {} IPv6 public IP(s): want 1-8 nodes, \
                 1-16 IPv4 and 0-16 IPv6 IPs",
                spec.nodes, spec.public_ips, spec.public_ips6
            ));
        }
        let work = tempfile::Builder::new()
            .prefix("testbed-")
            .tempdir()
            .map_err(|e| format!("work dir: {e}"))?;
        let dir = work.path().to_path_buf();
        let id = format!("tb{}", std::process::id() % 100_000);
        let mut c = Cluster {
            bridge_ns: format!("{id}br"),
            nodes: Vec::new(),
            public_ips: (1..=spec.public_ips as u8)
                .map(|i| Ipv4Addr::new(10, 77, 1, i))
                .collect(),
            public_ips6: (1..=spec.public_ips6 as u16)
                .map(|i| Ipv6Addr::new(0xfd00, 0x77, 1, 0, 0, 0, 0, i))
                .collect(),
            namespaces: Vec::new(),
            id,
            work: Some(work),
            dir,
            spec,
        };
        c.build()?;
        for i in 0..c.nodes.len() {
            c.start_ctdbd(i)?;
        }
        if c.spec.ganesha.is_some() {
            // As systemd starts a node: ctdbd and Ganesha side by side. Waiting for health
            // first would wait for ever once CTDB ran two monitor events before Ganesha
            // (the event script then reports the node unhealthy, as it must; CTDB runs
            // them early after each recovery of the bring-up).
            c.wait_joined(Duration::from_secs(90))?;
            // All at once, as a cluster starts: a starting Ganesha waits (grace_enforcing)
            // until the other nodes enforce the grace it needs.
            for i in 0..c.nodes.len() {
                c.spawn_ganesha(i)?;
            }
            for i in 0..c.nodes.len() {
                c.wait_ganesha(i)?;
            }
            c.wait_healthy(Duration::from_secs(90))?;
            // Nodes starting together hold each other in grace for a reaper tick or two
            // (NLM: for Grace_Period); tests start from a cluster that grants.
            let deadline = Instant::now() + Duration::from_secs(90);
            while (0..c.nodes.len()).any(|i| c.ganesha_grace_state(i).unwrap_or(true)) {
                if Instant::now() > deadline {
                    return Err(format!(
                        "Ganesha still in grace 90 s after start:\n{}",
                        c.logs()
                    ));
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            for n in &c.nodes {
                n.ctdb(&["setvar", "MonitorInterval", "15"])?;
            }
        } else {
            c.wait_healthy(Duration::from_secs(90))?;
        }
        Ok(c)
    }

    fn build(&mut self) -> Result<()> {
        let br = self.bridge_ns.clone();
        ip(&["netns", "add", &br])?;
        self.namespaces.push(br.clone());
        ip(&["-n", &br, "link", "set", "lo", "up"])?;
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &br, "addr", "add", "10.77.0.254/24", "dev", "br0"])?;
        ip(&["-n", &br, "addr", "add", "10.77.1.254/24", "dev", "br0"])?;
        if !self.public_ips6.is_empty() {
            // No duplicate address detection: an address is usable at once (CTDB's
            // 10.interface adds the public ones; tests connect right after a takeover).
            no_dad(&br, "br0")?;
            ip(&[
                "-n",
                &br,
                "addr",
                "add",
                &format!("{BRIDGE_IP6}/64"),
                "dev",
                "br0",
                "nodad",
            ])?;
        }
        ip(&["-n", &br, "link", "set", "br0", "up"])?;
        let shared = self.dir.join("shared/.ctdb");
        mkdir(&shared)?;
        mkdir(&self.dir.join("export"))?;
        let nodes_file: String = (1..=self.spec.nodes)
            .map(|i| format!("10.77.0.{i}\n"))
            .collect();
        let public: String = self
            .public_ips
            .iter()
            .map(|a| format!("{a}/24 eth0\n"))
            .chain(self.public_ips6.iter().map(|a| format!("{a}/64 eth0\n")))
            .collect();
        for i in 1..=self.spec.nodes {
            let name = format!("n{i}");
            let ns = format!("{}n{i}", self.id);
            let base = self.dir.join(&name);
            let addr = Ipv4Addr::new(10, 77, 0, i as u8);
            ip(&["netns", "add", &ns])?;
            self.namespaces.push(ns.clone());
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            let peer = format!("vn{i}");
            ip(&[
                "-n", &br, "link", "add", &peer, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            ip(&["-n", &br, "link", "set", &peer, "master", "br0", "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ])?;
            if !self.public_ips6.is_empty() {
                no_dad(&ns, "eth0")?;
            }
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            for d in [
                "etc/events/legacy",
                "var/volatile",
                "var/persistent",
                "var/state",
                "runroot/ctdb",
                "dbus",
                "run",
                "lib",
            ] {
                mkdir(&base.join(d))?;
            }
            // Bound over /etc/ganesha/ganesha.conf in the node's views (ctdbd's, so its
            // event scripts, and rpc.statd's, so its callout) before Ganesha writes it: the
            // tool finds the store there with no flag, as on a configured node.
            write(&base.join("ganesha.conf"), "")?;
            let etc = base.join("etc");
            write(
                &etc.join("ctdb.conf"),
                &format!(
                    "[logging]\n\tlocation = file:{b}/log.ctdb\n\tlog level = NOTICE\n\
                     [cluster]\n\tcluster lock = {lock}/cluster.lock\n\tnode address = {addr}\n\tleader timeout = 5\n\
                     [database]\n\tvolatile database directory = {b}/var/volatile\n\
                     \tpersistent database directory = {b}/var/persistent\n\
                     \tstate database directory = {b}/var/state\n\
                     [legacy]\n\trealtime scheduling = false\n",
                    b = base.display(),
                    lock = shared.display()
                ),
            )?;
            write(&etc.join("nodes"), &nodes_file)?;
            write(&etc.join("public_addresses"), &public)?;
            // Recoveries are held back for RerecoveryTimeout after each one (10 s by
            // default): tests that kill nodes in sequence would wait for it.
            // A node whose Ganesha is not running fails its second monitor run (ganesha-ctdb's
            // event script), and the cluster starts Ganesha only once ctdbd is healthy: a
            // slow bring-up must not meet that second run, so monitoring is slow until
            // Ganesha runs (`up` sets the default 15 s back).
            let monitor = if self.spec.ganesha.is_some() {
                format!("MonitorInterval={BRING_UP_MONITOR_INTERVAL}\n")
            } else {
                String::new()
            };
            write(
                &etc.join("ctdb.tunables"),
                &format!("RerecoveryTimeout=2\n{monitor}"),
            )?;
            for f in [
                "functions",
                "notify.sh",
                "debug-hung-script.sh",
                "debug_locks.sh",
                "script.options",
            ] {
                let etc_ctdb = match &self.spec.root {
                    Some(r) => r.join("etc/ctdb"),
                    None => PathBuf::from("/etc/ctdb"),
                };
                let src = etc_ctdb.join(f);
                if src.exists() {
                    fs::copy(&src, etc.join(f))
                        .map_err(|e| format!("copy {}: {e}", src.display()))?;
                }
            }
            for s in ["00.ctdb", "01.reclock", "05.system", "10.interface"] {
                let file = format!("{s}.script");
                symlink(
                    Path::new("/usr/share/ctdb/events/legacy").join(&file),
                    etc.join("events/legacy").join(&file),
                )
                .map_err(|e| format!("symlink {file}: {e}"))?;
            }
            if let Some(script) = &self.spec.event_script {
                let dst = etc.join("events/legacy/60.ganesha-ctdb.script");
                fs::copy(script, &dst).map_err(|e| format!("copy {}: {e}", script.display()))?;
                fs::set_permissions(&dst, fs::Permissions::from_mode(0o755))
                    .map_err(|e| format!("chmod {}: {e}", dst.display()))?;
            }
            self.nodes.push(Node {
                pnn: (i - 1) as u32,
                name,
                ns,
                base,
                addr,
                ctdbd: None,
                dbus: None,
                ganesha: None,
                root: self.spec.root.clone(),
                shared: std::iter::once(self.dir.clone())
                    .chain(self.spec.shared.iter().cloned())
                    .collect(),
            });
        }
        Ok(())
    }

    fn node_env(&self, i: usize) -> Vec<(String, String)> {
        let n = &self.nodes[i];
        let mut env = vec![
            ("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into()),
            ("DBUS_SYSTEM_BUS_ADDRESS".into(), n.dbus_address()),
            ("CTDB_SOCKET".into(), n.socket().display().to_string()),
        ];
        if let Some(bin) = &self.spec.ganesha_ctdb_bin {
            env.push(("GANESHA_CTDB".into(), bin.display().to_string()));
        }
        env
    }

    /// Starts ctdbd on node `i` in its namespace and private view, in the foreground (-i)
    /// so the pid we hold is ctdbd's own.
    pub fn start_ctdbd(&mut self, i: usize) -> Result<()> {
        self.link(i, true);
        let env = self.node_env(i);
        let n = &mut self.nodes[i];
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(n.base.join("log.ctdb"))
            .map_err(|e| format!("log: {e}"))?;
        let view = r#"mount --make-rslave / 2>/dev/null
mount --bind "$1/etc" "$3/etc/ctdb" && mount --bind "$1/var" "$3/var/lib/ctdb" && mount --bind "$1/runroot" "$3/run" || exit 97
[ -e "$3/etc/ganesha/ganesha.conf" ] && { mount --bind "$1/ganesha.conf" "$3/etc/ganesha/ganesha.conf" || exit 97; }
exec unshare --uts -- $ENTER sh -c 'hostname "$0" && exec /usr/sbin/ctdbd -i' "$2""#;
        // In a Debian root: its /proc, /sys and /dev, the cluster's files and the build
        // directory at their own paths, and ctdbd (and its event scripts) chrooted there.
        let (prefix, enter) = match &n.root {
            None => (String::new(), String::new()),
            Some(r) => {
                let shared: Vec<&Path> = n.shared.iter().map(PathBuf::as_path).collect();
                (
                    crate::chroot::mounts(r, &shared, &[]),
                    crate::chroot::shell_words(&["chroot".to_string(), r.display().to_string()]),
                )
            }
        };
        let root = n
            .root
            .as_ref()
            .map(|r| r.display().to_string())
            .unwrap_or_default();
        let script = format!("{prefix}{}", view.replace("$ENTER", &enter));
        let child = Command::new("ip")
            .args(["netns", "exec", &n.ns, "sh", "-c", &script, "sh"])
            .arg(&n.base)
            .arg(&n.name)
            .arg(&root)
            .env_clear()
            .envs(env)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start ctdbd on {}: {e}", n.name))?;
        n.ctdbd = Some(child);
        Ok(())
    }

    /// `ctdb -X status` from the first node whose daemon answers: pnn -> flags all clear.
    pub fn status(&self) -> Result<BTreeMap<u32, bool>> {
        self.nodes_without(&[])
    }

    /// pnn -> no flag of `ctdb -X status` set but those in `allowed` (column names, e.g.
    /// "Unhealthy"); the columns are found by name, as they moved between CTDB versions.
    fn nodes_without(&self, allowed: &[&str]) -> Result<BTreeMap<u32, bool>> {
        let mut last = String::from("no node answered");
        for n in &self.nodes {
            match n.ctdb(&["-X", "status"]) {
                Ok(out) => {
                    let mut lines = out.lines();
                    let header: Vec<&str> = lines.next().unwrap_or("").split('|').collect();
                    let col = |name: &str| header.iter().position(|h| *h == name);
                    let (Some(pnn_col), Some(first), Some(last_flag)) =
                        (col("Node"), col("Disconnected"), col("PartiallyOnline"))
                    else {
                        return Err(format!("ctdb -X status: unknown header {header:?}"));
                    };
                    let mut m = BTreeMap::new();
                    for line in lines {
                        let f: Vec<&str> = line.split('|').collect();
                        if f.len() != header.len() {
                            continue;
                        }
                        let ok = (first..=last_flag)
                            .all(|c| f[c] == "0" || allowed.contains(&header[c]));
                        if let Ok(pnn) = f[pnn_col].parse() {
                            m.insert(pnn, ok);
                        }
                    }
                    return Ok(m);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Waits until every running ctdbd is connected and in the cluster, healthy or not
    /// (without Ganesha the event script reports a node unhealthy: it must not hold IPs).
    pub fn wait_joined(&mut self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        let running: Vec<u32> = self
            .nodes
            .iter_mut()
            .filter_map(|n| n.ctdbd_running().then_some(n.pnn))
            .collect();
        let mut last = Ok(BTreeMap::new());
        while Instant::now() < deadline {
            last = self.nodes_without(&["Unhealthy", "PartiallyOnline"]);
            if let Ok(m) = &last {
                if running.iter().all(|p| m.get(p).copied().unwrap_or(false)) {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        Err(format!(
            "ctdbd nodes not joined within {limit:?}: {last:?}\n{}",
            self.nodes
                .iter()
                .map(|n| format!("--- {} log.ctdb tail:\n{}", n.name, tail(&n.ctdb_log(), 15)))
                .collect::<String>()
        ))
    }

    /// IPv4 public IP -> holder pnn (None: unassigned), asked of node `via`.
    pub fn ip_holders(&self, via: usize) -> Result<BTreeMap<Ipv4Addr, Option<u32>>> {
        Ok(self
            .all_ip_holders(via)?
            .into_iter()
            .filter_map(|(ip, h)| match ip {
                IpAddr::V4(v4) => Some((v4, h)),
                IpAddr::V6(_) => None,
            })
            .collect())
    }

    /// Every public IP (IPv4 and IPv6) -> holder pnn (None: unassigned), asked of `via`.
    pub fn all_ip_holders(&self, via: usize) -> Result<BTreeMap<IpAddr, Option<u32>>> {
        let out = self.nodes[via].ctdb(&["-X", "ip", "all"])?;
        let mut m = BTreeMap::new();
        for line in out.lines().skip(1) {
            let f: Vec<&str> = line.split('|').collect();
            if f.len() < 3 {
                continue;
            }
            if let Ok(ip) = f[1].parse() {
                m.insert(
                    ip,
                    f[2].parse::<i64>()
                        .ok()
                        .filter(|p| *p >= 0)
                        .map(|p| p as u32),
                );
            }
        }
        Ok(m)
    }

    pub fn holder(&self, ip: impl Into<IpAddr>, via: usize) -> Result<Option<u32>> {
        Ok(self.all_ip_holders(via)?.get(&ip.into()).copied().flatten())
    }

    /// Every public IP, IPv4 first.
    pub fn all_public_ips(&self) -> Vec<IpAddr> {
        self.public_ips
            .iter()
            .map(|a| IpAddr::V4(*a))
            .chain(self.public_ips6.iter().map(|a| IpAddr::V6(*a)))
            .collect()
    }

    /// Waits until every running node is healthy and every public IP has a holder among
    /// them, and the assignment has been stable for 3 s (failback after start-up).
    pub fn wait_healthy(&mut self, limit: Duration) -> Result<()> {
        self.wait_settled(limit, true)
    }

    /// As wait_healthy; `spread`: also every running node holds an IP when there are
    /// enough (CTDB does not undo an operator's `ctdb moveip`, so after one it may not).
    pub fn wait_settled(&mut self, limit: Duration, spread: bool) -> Result<()> {
        let deadline = Instant::now() + limit;
        let mut stable_since: Option<(Instant, BTreeMap<IpAddr, Option<u32>>)> = None;
        let public = self.public_ips.len() + self.public_ips6.len();
        let running: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].ctdbd_running())
            .collect();
        while Instant::now() < deadline {
            if let Some(i) = running.iter().find(|i| !self.nodes[**i].ctdbd_running()) {
                let n = &self.nodes[*i];
                return Err(format!(
                    "ctdbd on {} exited while the cluster was starting:\n{}",
                    n.name,
                    tail(&n.ctdb_log(), 20)
                ));
            }
            let ok = (|| -> Result<Option<BTreeMap<IpAddr, Option<u32>>>> {
                let st = self.status()?;
                let healthy = running
                    .iter()
                    .all(|i| st.get(&self.nodes[*i].pnn).copied().unwrap_or(false));
                if !healthy {
                    return Ok(None);
                }
                let holders = self.all_ip_holders(running[0])?;
                let all = holders.values().all(|h| h.is_some()) && holders.len() == public;
                // With as many IPs as nodes, CTDB gives every healthy node one.
                let spread = !spread
                    || public < running.len()
                    || running
                        .iter()
                        .all(|i| holders.values().any(|h| *h == Some(self.nodes[*i].pnn)));
                Ok((all && spread).then_some(holders))
            })();
            match (ok, &stable_since) {
                (Ok(Some(h)), Some((t, prev))) if *prev == h => {
                    if t.elapsed() >= Duration::from_secs(3) {
                        return Ok(());
                    }
                }
                (Ok(Some(h)), _) => stable_since = Some((Instant::now(), h)),
                _ => stable_since = None,
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        Err(format!(
            "cluster not healthy within {limit:?}: status {:?}, ips {:?}\n{}",
            self.status(),
            self.all_ip_holders(0),
            self.nodes
                .iter()
                .map(|n| format!("--- {} log.ctdb tail:\n{}", n.name, tail(&n.ctdb_log(), 15)))
                .collect::<String>()
        ))
    }

    /// Starts node `i`'s D-Bus (once) and ganesha.nfsd without waiting for it.
    pub fn spawn_ganesha(&mut self, i: usize) -> Result<()> {
        let g = self
            .spec
            .ganesha
            .clone()
            .ok_or("the cluster was built without Ganesha")?;
        let env = self.node_env(i);
        let export = self.dir.join("export");
        let n = &mut self.nodes[i];
        if n.dbus.is_none() {
            let conf = n.base.join("dbus.conf");
            write(
                &conf,
                &format!(
                    "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n \
                     \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n\
                     <busconfig><type>system</type><listen>unix:path={}/dbus/system_bus_socket</listen>\
                     <auth>EXTERNAL</auth><policy context=\"default\"><allow user=\"*\"/><allow own=\"*\"/>\
                     <allow send_destination=\"*\"/><allow receive_sender=\"*\"/></policy></busconfig>\n",
                    n.base.display()
                ),
            )?;
            let child = Command::new("dbus-daemon")
                .arg(format!("--config-file={}", conf.display()))
                .args(["--nofork", "--nopidfile"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("dbus-daemon: {e}"))?;
            n.dbus = Some(child);
            let sock = n.base.join("dbus/system_bus_socket");
            let deadline = Instant::now() + Duration::from_secs(10);
            while !sock.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let lib = n.base.join("lib");
        let link = lib.join("libganesha_rados_recov.so");
        if !link.exists() {
            let target = ["libganesha_rados_recov.so", "libganesha_ctdb_recov.so"]
                .iter()
                .map(|f| g.lib_dir.join(f))
                .find(|p| p.exists())
                .ok_or_else(|| format!("no ganesha-ctdb library in {}", g.lib_dir.display()))?;
            symlink(target, &link).map_err(|e| format!("library link: {e}"))?;
        }
        let b = n.base.display().to_string();
        let block = g.recovery_block.replace("$NODE", &b);
        mkdir(&n.base.join("recov"))?;
        let (core, protocols, transports) = if g.nlm_callout.is_some() {
            (
                "NFS_CORE_PARAM { Protocols = 3, 4; Enable_NLM = true; Enable_RQUOTA = false; Enable_UDP = true; \
                 MNT_Port = 20048; NLM_Port = 32803; NSM_Use_Caller_Name = true; }",
                "3, 4",
                "TCP, UDP",
            )
        } else {
            (
                "NFS_CORE_PARAM { Protocols = 4; Enable_NLM = false; Enable_RQUOTA = false; Enable_UDP = false; $EXTRA }",
                "4",
                "TCP",
            )
        };
        let core = core.replace("$EXTRA", &g.core_extra);
        let backend = match g.recovery_backend.as_str() {
            "fs" => format!("RecoveryBackend = fs; RecoveryRoot = {b}/recov;"),
            other => format!("RecoveryBackend = {other};"),
        };
        write(
            &n.base.join("ganesha.conf"),
            &format!(
                "{core}\n\
                 NFS_KRB5 {{ Active_krb5 = false; CCacheDir = {b}/run/ccache; }}\n\
                 NFSV4 {{ {backend} Minor_Versions = 0, 1, 2; Lease_Lifetime = {}; Grace_Period = {}; }}\n\
                 {block}\n\
                 EXPORT {{ Export_Id = 1; Path = {}; Pseudo = /export; Access_Type = RW; Squash = No_Root_Squash;\n\
                          SecType = sys; Protocols = {protocols}; Transports = {transports}; {} FSAL {{ Name = VFS; }} }}\n\
                 LOG {{ Default_Log_Level = EVENT; Components {{ CLIENTID = DEBUG; }} }}\n",
                g.lease_lifetime,
                g.grace_period,
                export.display(),
                g.export_extra
            ),
        )?;
        let mut ganesha_args = format!("exec {}", ganesha_args(&n.base).join(" "));
        if let Some(sv) = &g.supervise {
            // As systemd: ExecStopPost after every exit, then Restart= after RestartSec=.
            let post: Vec<String> = sv.exec_stop_post.iter().map(|a| shell_quote(a)).collect();
            let again = match sv.restart_after {
                Some(d) => format!("sleep {}", d.as_secs_f64()),
                None => "exit 0".into(),
            };
            ganesha_args = format!(
                "while :; do {} >>{b}/supervisor.log 2>&1; {} >>{b}/supervisor.log 2>&1; {again}; done",
                &ganesha_args["exec ".len()..],
                post.join(" ")
            );
        }
        let mut cmd = Command::new("ip");
        match (&g.nlm_callout, &self.spec.root) {
            (None, None) => {
                cmd.args(["netns", "exec", &n.ns, "sh", "-c"])
                    .arg(&ganesha_args);
            }
            (None, Some(_)) => {
                // The command goes into a script: it holds quotes of its own.
                let script = n.base.join("run-ganesha.sh");
                write(&script, &format!("{ganesha_args}\n"))?;
                let view = n
                    .in_view(&crate::chroot::shell_words(&[
                        "/bin/sh".to_string(),
                        script.display().to_string(),
                    ]))
                    .ok_or("node without a root")?;
                cmd.args(["netns", "exec", &n.ns, "sh", "-c"]).arg(view);
            }
            (Some(_), Some(_)) => {
                return Err("NLM in a Debian root is not supported by the testbed".into())
            }
            (Some(callout), None) => {
                // rpcbind and statd need /run of their own: a private mount namespace.
                mkdir(&n.base.join("statd/sm"))?;
                mkdir(&n.base.join("statd/sm.bak"))?;
                statd_as_debian_runs_it(&self.dir, &n.base)?;
                cmd.args([
                    "netns",
                    "exec",
                    &n.ns,
                    "unshare",
                    "-m",
                    "--propagation",
                    "private",
                ])
                .args(["sh", "-c"])
                .arg(format!(
                    "mount -t tmpfs tmpfs /run; mkdir -p /run/ganesha; \
                     mount --bind {b}/ganesha.conf /etc/ganesha/ganesha.conf || exit 97; \
                     rpcbind -f -w & sleep 0.5; \
                         rpc.statd -F -d -L -P {b}/statd -H {} 2>{b}/statd.log & sleep 0.5; \
                         {ganesha_args}",
                    callout.display()
                ));
            }
        }
        cmd.env_clear()
            .envs(env)
            .env("LD_LIBRARY_PATH", &lib)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().map_err(|e| format!("ganesha.nfsd: {e}"))?;
        n.ganesha = Some(child);
        Ok(())
    }

    /// Starts node `i`'s D-Bus (once) and ganesha.nfsd; returns once 2049 accepts.
    pub fn start_ganesha(&mut self, i: usize) -> Result<()> {
        self.spawn_ganesha(i)?;
        self.wait_ganesha(i)
    }

    /// Waits until node `i`'s ganesha.nfsd accepts connections on 2049.
    pub fn wait_ganesha(&mut self, i: usize) -> Result<()> {
        let n = &mut self.nodes[i];
        let Some(mut child) = n.ganesha.take() else {
            return Err(format!("ganesha.nfsd on {} was not started", n.name));
        };
        // Ganesha's start waits up to 60 s for a ctdbd that is still joining or recovering.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if nfs4_client::netns::connect(
                Some(&n.ns),
                "127.0.0.1:2049".parse().map_err(|_| "addr")?,
                Duration::from_secs(1),
            )
            .is_ok()
            {
                break;
            }
            if let Ok(Some(st)) = child.try_wait() {
                return Err(format!(
                    "ganesha.nfsd on {} exited ({st}):\n{}",
                    n.name,
                    tail(&n.ganesha_log(), 30)
                ));
            }
            if Instant::now() > deadline {
                procs::kill_tree(child.id() as i32, Duration::from_secs(10));
                let _ = child.wait();
                return Err(format!(
                    "ganesha.nfsd on {} did not listen:\n{}",
                    n.name,
                    tail(&n.ganesha_log(), 30)
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        n.ganesha = Some(child);
        Ok(())
    }

    /// What node `i`'s ganesha.log last said: Some(true) in grace, Some(false) out of
    /// grace, None when it has said neither yet.
    pub fn ganesha_grace_state(&self, i: usize) -> Option<bool> {
        self.nodes[i].ganesha_log().lines().rev().find_map(|l| {
            if l.contains("Now IN GRACE") {
                Some(true)
            } else if l.contains("Now NOT IN GRACE") {
                Some(false)
            } else {
                None
            }
        })
    }

    /// SIGKILLs node `i`'s ganesha.nfsd and ctdbd (and their descendants): a node crash.
    pub fn kill_node(&mut self, i: usize) {
        self.kill_ganesha(i);
        self.kill_ctdbd(i);
    }

    /// SIGKILLs node `i`'s ctdbd only (its Ganesha keeps running, or stays stopped).
    pub fn kill_ctdbd(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].ctdbd.take() {
            procs::kill_tree(c.id() as i32, Duration::from_secs(10));
            let _ = c.wait();
        }
        self.link(i, false);
    }

    /// Sends `sig` to node `i`'s ctdbd (SIGSTOP: a frozen daemon; SIGCONT resumes it).
    pub fn signal_ctdbd(&self, i: usize, sig: Signal) {
        if let Some(pid) = self.nodes[i].ctdbd_pid() {
            procs::signal(pid, sig);
        }
    }

    /// SIGKILLs node `i`'s ctdbd and its helpers with the node's link left up (its Ganesha
    /// keeps serving), then starts it again: a ctdbd crash and restart under a running
    /// Ganesha.
    pub fn restart_ctdbd(&mut self, i: usize, down_for: Duration) -> Result<()> {
        if let Some(mut c) = self.nodes[i].ctdbd.take() {
            procs::kill_tree(c.id() as i32, Duration::from_secs(10));
            let _ = c.wait();
        }
        std::thread::sleep(down_for);
        self.start_ctdbd(i)
    }

    /// A killed ctdbd leaves its public IPs configured (ctdb-runtime.md §3), and the node
    /// would keep answering ARP for them; a crashed machine answers nothing. Taking the
    /// link down after the kill (so that the others see the connection drop at once)
    /// models that; starting ctdbd again brings it up.
    pub fn link(&self, i: usize, up: bool) {
        let _ = ip(&[
            "-n",
            &self.nodes[i].ns,
            "link",
            "set",
            "eth0",
            if up { "up" } else { "down" },
        ]);
    }

    pub fn kill_ganesha(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].ganesha.take() {
            procs::kill_tree(c.id() as i32, Duration::from_secs(10));
            let _ = c.wait();
        }
    }

    /// SIGKILLs node `i`'s ganesha.nfsd alone (its supervisor, if any, carries on as
    /// systemd would); returns its pid.
    pub fn crash_ganesha(&self, i: usize) -> Option<i32> {
        let pid = self.nodes[i].ganesha_nfsd_pid()?;
        procs::signal(pid, Signal::SIGKILL);
        Some(pid)
    }

    /// SIGSTOP / SIGCONT node `i`'s ganesha.nfsd (a node that hangs before it is fenced).
    pub fn stop_ganesha(&self, i: usize, stop: bool) {
        if let Some(pid) = self.nodes[i].ganesha_nfsd_pid() {
            procs::signal(
                pid,
                if stop {
                    Signal::SIGSTOP
                } else {
                    Signal::SIGCONT
                },
            );
        }
    }

    /// SIGSTOP / SIGCONT node `i`'s ctdbd and ganesha.nfsd together: a hung node (its
    /// processes keep their sockets and locks and answer nothing).
    pub fn freeze_node(&self, i: usize, stop: bool) {
        let sig = if stop {
            Signal::SIGSTOP
        } else {
            Signal::SIGCONT
        };
        self.signal_ctdbd(i, sig);
        if let Some(pid) = self.nodes[i].ganesha_nfsd_pid() {
            procs::signal(pid, sig);
        }
    }

    /// Waits until `ip` is held by a node other than `not` (after a failover).
    pub fn wait_ip_moved(
        &self,
        ip: impl Into<IpAddr>,
        not: u32,
        via: usize,
        limit: Duration,
    ) -> Result<u32> {
        let ip = ip.into();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(h)) = self.holder(ip, via) {
                if h != not {
                    return Ok(h);
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(format!("{ip} did not move off node {not} within {limit:?}"))
    }

    pub fn node_by_pnn(&self, pnn: u32) -> Option<usize> {
        self.nodes.iter().position(|n| n.pnn == pnn)
    }

    /// A readable summary of every node's logs, for assertion messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for n in &self.nodes {
            let _ = write!(
                s,
                "--- {} ganesha.log:\n{}\n--- {} log.ctdb:\n{}\n",
                n.name,
                tail(&n.ganesha_log(), 40),
                n.name,
                tail(&n.ctdb_log(), 15)
            );
        }
        s
    }

    fn teardown(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill_node(i);
            if let Some(mut d) = self.nodes[i].dbus.take() {
                let _ = d.kill();
                let _ = d.wait();
            }
        }
        for ns in self.namespaces.drain(..).rev() {
            procs::remove_netns(&ns);
        }
        if self.spec.keep {
            if let Some(w) = self.work.take() {
                eprintln!("testbed: kept {}", w.keep().display());
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// `arg` as one word for sh.
fn shell_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', "'\\''"))
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
