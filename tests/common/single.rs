//! One real ganesha.nfsd (Debian's nfs-ganesha + FSAL_VFS) in a network namespace, loading
//! this crate's cdylib as libganesha_rados_recov.so, with NFSv4 clients from the test.
#![allow(dead_code)]

use super::run;
use ganesha_ctdb_recov::store::dir::DirStore;
use ganesha_ctdb_recov::store::Store;
use nfs4_client::{netns, Client, ClientOptions};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub fn built_library() -> PathBuf {
    super::fresh_library(&super::target_dir())
}

/// Which Ganesha runs: this machine's (Debian 12's 4.3), or a Debian release's from its
/// root built by scripts/chroots.sh.
#[derive(Clone, Debug)]
pub struct Release {
    pub name: &'static str,
    pub root: Option<PathBuf>,
    pub version: (u32, u32),
}

impl Release {
    pub fn host() -> Release {
        Release {
            name: "4.3 (Debian 12)",
            root: None,
            version: (4, 3),
        }
    }

    /// trixie (Debian 13, Ganesha 6.5) or sid (Ganesha 15.2); fails the test with what to
    /// run when the root is missing.
    pub fn debian(suite: &str) -> Release {
        let root = testbed::chroot::root(suite).unwrap_or_else(|e| panic!("{e}"));
        let (name, version) = match suite {
            "trixie" => ("6.5 (Debian 13)", (6, 5)),
            "sid" => ("15.2 (Debian sid)", (15, 2)),
            other => panic!("no Ganesha release known for {other}"),
        };
        // sid moves: say so plainly when its Ganesha is no longer the one measured.
        let lib = std::fs::canonicalize(root.join("usr/lib/ganesha/libganesha_nfsd.so"))
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let found = ganesha_ctdb_recov::ganesha::symbols::version_from_library(&lib);
        assert_eq!(
            found,
            Some(version),
            "{suite}'s root has {lib:?}, not Ganesha {}.{}: this matrix cell was measured \
             for that version; a newer one needs its ABI measured and added \
             (docs/architecture.md, \"Ganesha versions\") before the library will load in it",
            version.0,
            version.1
        );
        Release {
            name,
            root: Some(root),
            version,
        }
    }

    /// NFS_CORE_PARAM keys this release needs here: 6.x and later make a failing
    /// PR_SET_IO_FLUSHER fatal unless told otherwise (this sandbox refuses it).
    fn core_extra(&self) -> &'static str {
        if self.version.0 >= 6 {
            " allow_set_io_flusher_fail = true;"
        } else {
            ""
        }
    }
}

/// One ganesha.nfsd in a network namespace of its own, loading this crate's library,
/// its files (config, log, store, export) in a temporary directory.
pub struct Server {
    pub ns: String,
    pub work: tempfile::TempDir,
    pub child: Option<Child>,
    /// Extra environment for ganesha.nfsd.
    pub env: Vec<(String, String)>,
    pub release: Release,
}

impl Server {
    pub fn new(block: &str) -> Server {
        Server::with_grace(block, 12)
    }

    pub fn with_grace(block: &str, grace_period: u32) -> Server {
        Server::of(Release::host(), block, grace_period)
    }

    pub fn of(release: Release, block: &str, grace_period: u32) -> Server {
        let work = tempfile::tempdir().unwrap();
        let w = work.path();
        for d in ["lib", "export", "store", "run"] {
            std::fs::create_dir_all(w.join(d)).unwrap();
        }
        // A copy, not a link: inside a Debian root only the work directory is shared.
        std::fs::copy(built_library(), w.join("lib/libganesha_rados_recov.so")).unwrap();
        for f in ["hello.txt", "f40.txt", "f41.txt", "lazy.txt", "other.txt"] {
            std::fs::write(w.join("export").join(f), "hello\n").unwrap();
        }
        let block = block.replace("$STORE", &w.join("store").display().to_string());
        std::fs::write(
            w.join("ganesha.conf"),
            format!(
                "NFS_CORE_PARAM {{ Protocols = 4; Enable_NLM = false; Enable_RQUOTA = false; Enable_UDP = false;{extra} }}\n\
                 NFS_KRB5 {{ Active_krb5 = false; CCacheDir = {w}/run/ccache; }}\n\
                 NFSV4 {{ RecoveryBackend = rados_cluster; Minor_Versions = 0, 1, 2; Lease_Lifetime = 10; Grace_Period = {grace_period}; }}\n\
                 {block}\n\
                 EXPORT {{ Export_Id = 1; Path = {w}/export; Pseudo = /export; Access_Type = RW; Squash = No_Root_Squash;\n\
                          SecType = sys; Protocols = 4; Transports = TCP; FSAL {{ Name = VFS; }} }}\n\
                 LOG {{ Default_Log_Level = EVENT; Components {{ CLIENTID = DEBUG; }} }}\n",
                w = w.display(),
                extra = release.core_extra(),
            ),
        )
        .unwrap();
        let ns = format!("gctdb-t{}-{}", std::process::id(), rand_suffix());
        run(Command::new("ip").args(["netns", "add", &ns]));
        let server = Server {
            ns,
            work,
            child: None,
            env: Vec::new(),
            release,
        };
        run(Command::new("ip").args(["-n", &server.ns, "link", "set", "lo", "up"]));
        server
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.work.path().join(p)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("ganesha.log")).unwrap_or_default()
    }

    pub fn spawn(&mut self) {
        let mut cmd = match &self.release.root {
            None => {
                testbed::cluster::ganesha_command(&self.ns, self.work.path(), &self.path("lib"))
            }
            Some(root) => {
                let inner = format!(
                    "env LD_LIBRARY_PATH={} {}",
                    testbed::chroot::shell_quote(&self.path("lib").display().to_string()),
                    testbed::chroot::shell_words(&testbed::cluster::ganesha_args(self.work.path()))
                );
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &self.ns, "sh", "-c"])
                    .arg(testbed::chroot::wrap(root, &[self.work.path()], &inner))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                c
            }
        };
        let child = cmd
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .spawn()
            .expect("spawn ganesha.nfsd");
        self.child = Some(child);
    }

    /// Starts and waits until 2049 accepts connections inside the namespace.
    pub fn start(&mut self) {
        self.spawn();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let probe = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &self.ns,
                    "bash",
                    "-c",
                    "exec 3<>/dev/tcp/127.0.0.1/2049",
                ])
                .stderr(Stdio::null())
                .status()
                .unwrap();
            if probe.success() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("ganesha.nfsd exited ({status}):\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("ganesha.nfsd did not listen within 30 s:\n{}", self.log());
    }

    pub fn start_expect_exit(&mut self) -> ExitStatus {
        self.spawn();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("ganesha.nfsd kept running:\n{}", self.log());
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL to the pid we started
            let _ = c.wait();
        }
    }

    pub fn nfs_cat(&self, file: &str) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "nfs-cat"])
            .arg(format!("nfs://127.0.0.1/export/{file}?version=4"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "nfs-cat: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn records(&self) -> Vec<String> {
        let store = DirStore::open_for_reading(&self.path("store")).unwrap();
        store
            .scan("v4@")
            .unwrap()
            .entries
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    pub fn client(&self, minor_version: u32, owner: &str) -> Client {
        self.client_at(minor_version, owner, "127.0.0.1".parse().expect("address"))
    }

    /// A client that reaches the server through `ip` (in the server's namespace: its
    /// loopback addresses, 127.0.0.1 or ::1).
    pub fn client_at(&self, minor_version: u32, owner: &str, ip: std::net::IpAddr) -> Client {
        let ns = self.ns.clone();
        let addr = std::net::SocketAddr::from((ip, 2049));
        Client::new(ClientOptions::new(minor_version, owner), move || {
            netns::connect(Some(&ns), addr, Duration::from_secs(20))
        })
    }

    pub fn grace_ends(&self) -> usize {
        self.log().matches("NOT IN GRACE").count()
    }

    /// Waits for the `after+1`-th "NOT IN GRACE", renewing `clients` meanwhile so their
    /// leases (10 s) outlive the wait.
    pub fn wait_for_grace_end(&self, after: usize, limit: Duration, clients: &mut [&mut Client]) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.grace_ends() > after {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
            for c in clients.iter_mut() {
                c.renew().expect("renew while waiting for grace to end");
            }
        }
        panic!("grace did not end within {limit:?}:\n{}", self.log());
    }

    pub fn wait_for_log(&self, needle: &str, after: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.log().matches(needle).count() > after {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("{needle:?} not logged within {limit:?}:\n{}", self.log());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        testbed::procs::remove_netns(&self.ns);
    }
}

pub fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() % 100_000)
        .unwrap_or(0)
}
