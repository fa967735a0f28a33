//! Against the real ganesha.nfsd (Debian's nfs-ganesha 4.3 + FSAL_VFS) in a network
//! namespace, with this crate's cdylib loaded as libganesha_rados_recov.so: a real NFSv4.0
//! client (libnfs' nfs-cat) gets a durable record; after SIGKILL and restart the backend
//! offers it for reclaim; it does not reclaim, so it loses the record when grace completes.
//! A bad CTDB_RECOVERY block stops the server with a message naming the key.
//! Processes are killed by the pid we started, the namespace is deleted, also on failure.

use ganesha_ctdb_recov::store::dir::DirStore;
use ganesha_ctdb_recov::store::Store;
use serial_test::serial;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

fn built_library() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let lib = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .join("libganesha_ctdb_recov.so");
    assert!(lib.exists(), "{} missing: cargo build first", lib.display());
    lib
}

struct Server {
    ns: String,
    work: tempfile::TempDir,
    child: Option<Child>,
}

impl Server {
    fn new(block: &str) -> Server {
        let work = tempfile::tempdir().unwrap();
        let w = work.path();
        for d in ["lib", "export", "store", "run"] {
            std::fs::create_dir_all(w.join(d)).unwrap();
        }
        std::os::unix::fs::symlink(built_library(), w.join("lib/libganesha_rados_recov.so"))
            .unwrap();
        std::fs::write(w.join("export/hello.txt"), "hello\n").unwrap();
        let block = block.replace("$STORE", &w.join("store").display().to_string());
        std::fs::write(
            w.join("ganesha.conf"),
            format!(
                "NFS_CORE_PARAM {{ Protocols = 4; Enable_NLM = false; Enable_RQUOTA = false; Enable_UDP = false; }}\n\
                 NFS_KRB5 {{ Active_krb5 = false; CCacheDir = {w}/run/ccache; }}\n\
                 NFSV4 {{ RecoveryBackend = rados_cluster; Minor_Versions = 0, 1, 2; Lease_Lifetime = 10; Grace_Period = 12; }}\n\
                 {block}\n\
                 EXPORT {{ Export_Id = 1; Path = {w}/export; Pseudo = /export; Access_Type = RW; Squash = No_Root_Squash;\n\
                          SecType = sys; Protocols = 4; Transports = TCP; FSAL {{ Name = VFS; }} }}\n\
                 LOG {{ Default_Log_Level = EVENT; Components {{ CLIENTID = DEBUG; }} }}\n",
                w = w.display()
            ),
        )
        .unwrap();
        let ns = format!("gctdb-t{}-{}", std::process::id(), rand_suffix());
        run(Command::new("ip").args(["netns", "add", &ns]));
        let server = Server {
            ns,
            work,
            child: None,
        };
        run(Command::new("ip").args(["-n", &server.ns, "link", "set", "lo", "up"]));
        server
    }

    fn path(&self, p: &str) -> PathBuf {
        self.work.path().join(p)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("ganesha.log")).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns,
                "/usr/bin/ganesha.nfsd",
                "-F",
                "-N",
                "NIV_EVENT",
            ])
            .arg("-L")
            .arg(self.path("ganesha.log"))
            .arg("-f")
            .arg(self.path("ganesha.conf"))
            .arg("-p")
            .arg(self.path("run/ganesha.pid"))
            .env("LD_LIBRARY_PATH", self.path("lib"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ganesha.nfsd");
        self.child = Some(child);
    }

    /// Starts and waits until 2049 accepts connections inside the namespace.
    fn start(&mut self) {
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

    fn start_expect_exit(&mut self) -> ExitStatus {
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

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL to the pid we started
            let _ = c.wait();
        }
    }

    fn nfs_cat(&self, file: &str) -> String {
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

    fn records(&self) -> Vec<String> {
        let store = DirStore::open(&self.path("store")).unwrap();
        store
            .scan("v4@")
            .unwrap()
            .entries
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    fn wait_for_log(&self, needle: &str, after: usize, limit: Duration) {
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
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() % 100_000)
        .unwrap_or(0)
}

fn run(cmd: &mut Command) {
    let status = cmd.status().unwrap();
    assert!(status.success(), "{cmd:?}: {status}");
}

#[test]
#[serial]
fn a_v40_clients_record_is_durable_offered_after_a_crash_and_dropped_when_it_does_not_reclaim() {
    let mut s = Server::new("CTDB_RECOVERY { Store = dir; Dir = $STORE; Node_Id = e2e; }");
    s.start();
    assert!(
        s.log()
            .contains("recovery backend ready for Ganesha 4.3/5.x layout"),
        "{}",
        s.log()
    );
    assert_eq!(s.nfs_cat("hello.txt"), "hello\n");
    let records = s.records();
    assert_eq!(records.len(), 1, "{records:?}");
    // NFSv4.0 does not say which server address it used: filed under `local`, tagged
    // exactly as Ganesha tags it (caller address, then the owner's length and bytes).
    assert!(
        records[0].starts_with("v4@local@::ffff:127.0.0.1-("),
        "{records:?}"
    );
    assert!(records[0].contains(":Libnfs pid:"), "{records:?}");

    s.kill();
    let ended_before = s.log().matches("NOT IN GRACE").count();
    s.start();
    assert!(s.log().contains("1 client(s) may reclaim"), "{}", s.log());
    assert_eq!(s.records().len(), 1, "the record survives the crash");

    // nfs-cat's client does not reclaim; when grace completes it loses its record.
    s.wait_for_log("NOT IN GRACE", ended_before, Duration::from_secs(40));
    assert!(
        s.log()
            .contains("1 client(s) that did not reclaim lost their records"),
        "{}",
        s.log()
    );
    assert_eq!(s.records(), Vec::<String>::new());
}

#[test]
#[serial]
fn a_bad_ctdb_recovery_block_stops_ganesha_naming_the_key() {
    let cases = [
        (
            "CTDB_RECOVERY { Store = rados; }",
            "CTDB_RECOVERY { Store }: \"rados\" is not a store",
        ),
        (
            "CTDB_RECOVERY { Stroe = dir; }",
            "Unknown parameter (Stroe)",
        ),
        (
            "CTDB_RECOVERY { Dir = relative; }",
            "CTDB_RECOVERY { Dir }: \"relative\" is not an absolute path",
        ),
        (
            "CTDB_RECOVERY { Dir = /nonexistent/gctdb; }",
            "mkdir -p /nonexistent/gctdb",
        ),
    ];
    for (block, expected) in cases {
        let mut s = Server::new(block);
        let status = s.start_expect_exit();
        assert!(!status.success(), "{block}: {status}");
        let log = s.log();
        assert!(
            log.contains(expected),
            "{block}: want {expected:?} in\n{log}"
        );
        assert!(
            log.contains("FATAL"),
            "{block}: Ganesha should refuse to start:\n{log}"
        );
    }
}
