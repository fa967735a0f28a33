//! The .deb (packaging/build-deb.sh) on this Debian 12 machine and on Debian 13 (a
//! throwaway overlay of scripts/chroots.sh's trixie root): `apt-get install ./….deb`
//! resolves its Depends against that release's nfs-ganesha (4.3, 6.5) and ctdb (4.17,
//! 4.22) and installs the layout, the installed nfs-ganesha loads the installed library
//! through the systemd drop-in's environment (a real ganesha.nfsd start in a network
//! namespace), `ganesha-ctdb --help` (and, here, `man ganesha-ctdb`) work, and `apt-get
//! purge` leaves nothing. This machine is left as found: the test refuses to run where the
//! package is already installed, and purges it even when an assertion fails.

mod common;

use common::run;
use serial_test::serial;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use testbed::procs::Netns;

const FILES: &[&str] = &[
    "/usr/lib/ganesha-ctdb/libganesha_ctdb_recov.so",
    "/usr/lib/ganesha-ctdb/libganesha_rados_recov.so",
    "/usr/sbin/ganesha-ctdb",
    "/usr/libexec/ganesha-ctdb/statd-callout",
    "/usr/share/doc/ganesha-ctdb/examples/nfs.conf.d/ganesha-ctdb.conf",
    "/usr/lib/systemd/system/nfs-ganesha.service.d/ganesha-ctdb.conf",
    "/usr/share/ctdb/events/legacy/60.ganesha-ctdb.script",
    "/usr/share/man/man8/ganesha-ctdb.8.gz",
    "/usr/share/man/man5/ganesha-ctdb.conf.5.gz",
    "/usr/share/doc/ganesha-ctdb/examples/ganesha.conf",
    "/usr/share/doc/ganesha-ctdb/operations.md",
];

/// Where the package goes: this machine, or an overlay of a Debian root (its changes go
/// to a temporary upper layer, dropped at the end).
enum Target {
    Host,
    Root {
        merged: PathBuf,
        _layers: tempfile::TempDir,
    },
}

impl Target {
    fn debian(suite: &str) -> Target {
        let lower = testbed::chroot::root(suite).unwrap_or_else(|e| panic!("{e}"));
        let layers = tempfile::tempdir().unwrap();
        let (upper, work, merged) = (
            layers.path().join("upper"),
            layers.path().join("work"),
            layers.path().join("merged"),
        );
        for d in [&upper, &work, &merged] {
            std::fs::create_dir_all(d).unwrap();
        }
        run(Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.display(),
                upper.display(),
                work.display()
            ))
            .arg(&merged));
        Target::Root {
            merged,
            _layers: layers,
        }
    }

    /// A path of the target's filesystem, as seen from here.
    fn path(&self, p: &str) -> PathBuf {
        match self {
            Target::Host => PathBuf::from(p),
            Target::Root { merged, .. } => merged.join(p.trim_start_matches('/')),
        }
    }

    /// `words` run on the target, seeing `shared` at their own paths; `ns`: in that
    /// network namespace.
    fn command(&self, words: &[&str], shared: &[&Path], ns: Option<&str>) -> Command {
        let argv: Vec<String> = match self {
            Target::Host => words.iter().map(|w| w.to_string()).collect(),
            Target::Root { merged, .. } => {
                let enter =
                    testbed::chroot::wrap(merged, shared, &testbed::chroot::shell_words(words));
                // Its mounts need a mount namespace of their own (`ip netns exec` makes one).
                let private = if ns.is_some() {
                    &[][..]
                } else {
                    &["unshare", "-m"][..]
                };
                private
                    .iter()
                    .chain(&["sh", "-c"])
                    .map(|w| w.to_string())
                    .chain([enter])
                    .collect()
            }
        };
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).args(&argv);
                c
            }
            None => {
                let mut c = Command::new(&argv[0]);
                c.args(&argv[1..]);
                c
            }
        };
        cmd.env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    }

    fn installed(&self) -> bool {
        self.command(
            &["dpkg-query", "-W", "-f=${Status}", "ganesha-ctdb"],
            &[],
            None,
        )
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Target::Root { merged, .. } = self {
            let _ = Command::new("umount").arg("-l").arg(&*merged).status();
        }
    }
}

struct Purge<'a>(&'a Target);

impl Drop for Purge<'_> {
    fn drop(&mut self) {
        let _ = self
            .0
            .command(&["apt-get", "purge", "-y", "-q", "ganesha-ctdb"], &[], None)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn build_deb() -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let deb = run(&mut Command::new(repo.join("packaging/build-deb.sh")));
    let deb = repo.join(deb.trim());
    assert!(deb.exists(), "{}", deb.display());
    deb
}

/// Installs, loads into the target's own ganesha.nfsd, purges. `core_extra`: what that
/// Ganesha needs in NFS_CORE_PARAM to run here.
fn install_load_purge(target: &Target, core_extra: &str) {
    assert!(
        !target.installed(),
        "ganesha-ctdb is already installed here; this test installs and purges it, so it \
         runs only where it is not"
    );
    let deb = build_deb();
    let deb_dir = deb.parent().unwrap().to_path_buf();
    let _purge = Purge(target);
    let deb_arg = deb.display().to_string();
    run(&mut target.command(
        &["apt-get", "install", "-y", "-q", &deb_arg],
        &[&deb_dir],
        None,
    ));
    assert!(target.installed());
    for f in FILES {
        assert!(target.path(f).exists(), "{f} not installed");
    }
    assert!(target.path("/var/lib/ganesha-ctdb").is_dir());
    {
        // rpc.statd's user gets through to its spool, and owns it where nfs-common is in.
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let mode = |p: &str| {
            std::fs::metadata(target.path(p))
                .map(|m| m.permissions().mode() & 0o7777)
                .unwrap_or_else(|e| panic!("{p}: {e}"))
        };
        assert_eq!(mode("/var/lib/ganesha-ctdb"), 0o751);
        assert_eq!(mode("/var/lib/ganesha-ctdb/statd-spool"), 0o770);
        if let Ok(sm) = std::fs::metadata(target.path("/var/lib/nfs/sm")) {
            let spool =
                std::fs::metadata(target.path("/var/lib/ganesha-ctdb/statd-spool")).unwrap();
            assert_eq!((spool.uid(), spool.gid()), (sm.uid(), sm.gid()));
        }
    }
    let help = run(&mut target.command(&["/usr/sbin/ganesha-ctdb", "--help"], &[], None));
    assert!(help.contains("status") && help.contains("grace"), "{help}");
    if let Target::Host = target {
        let man = run(Command::new("man").args(["-P", "cat", "ganesha-ctdb"]));
        assert!(
            man.contains("ganesha-ctdb") && man.contains("status"),
            "{man}"
        );
        let man5 = run(Command::new("man").args(["-P", "cat", "5", "ganesha-ctdb.conf"]));
        assert!(man5.contains("Recovery_DB"), "{man5}");
    }
    // The drop-in extends the unit that release's nfs-ganesha ships.
    assert!(
        target
            .path("/usr/lib/systemd/system/nfs-ganesha.service")
            .exists(),
        "no nfs-ganesha.service for the drop-in to extend"
    );

    // The installed nfs-ganesha, with the drop-in's environment, loads the installed library.
    let dropin = std::fs::read_to_string(
        target.path("/usr/lib/systemd/system/nfs-ganesha.service.d/ganesha-ctdb.conf"),
    )
    .unwrap();
    let ld_path = dropin
        .lines()
        .find_map(|l| l.strip_prefix("Environment=LD_LIBRARY_PATH="))
        .expect("drop-in sets LD_LIBRARY_PATH")
        .trim()
        .to_string();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::create_dir_all(w.join("export")).unwrap();
    std::fs::create_dir_all(w.join("store")).unwrap();
    std::fs::write(
        w.join("ganesha.conf"),
        format!(
            "NFS_CORE_PARAM {{ Protocols = 4; Enable_NLM = false; Enable_RQUOTA = false; Enable_UDP = false; {core_extra} }}\n\
             NFS_KRB5 {{ Active_krb5 = false; CCacheDir = {w}/ccache; }}\n\
             NFSV4 {{ RecoveryBackend = rados_cluster; Lease_Lifetime = 10; Grace_Period = 10; }}\n\
             CTDB_RECOVERY {{ Dir = {w}/store; Node_Id = pkg; }}\n\
             EXPORT {{ Export_Id = 1; Path = {w}/export; Pseudo = /export; Access_Type = RW; \
             SecType = sys; Protocols = 4; Transports = TCP; FSAL {{ Name = VFS; }} }}\n",
            w = w.display()
        ),
    )
    .unwrap();
    let mut ns = Netns::new(format!("gctdb-pkg{}", std::process::id())).unwrap();
    let mut words = vec!["env".to_string(), format!("LD_LIBRARY_PATH={ld_path}")];
    words.extend(testbed::cluster::ganesha_args(w));
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let ganesha = target
        .command(&words, &[w], Some(&ns.name))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = ganesha.id();
    ns.children.push(ganesha);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut maps = String::new();
    let mut log = String::new();
    while Instant::now() < deadline {
        log = std::fs::read_to_string(w.join("ganesha.log")).unwrap_or_default();
        maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
        if log.contains("recovery backend ready") && maps.contains("/usr/lib/ganesha-ctdb/") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(ns);
    assert!(log.contains("recovery backend ready"), "{log}");
    assert!(
        maps.contains("/usr/lib/ganesha-ctdb/libganesha_ctdb_recov.so"),
        "ganesha.nfsd did not map the installed library:\n{maps}"
    );

    run(&mut target.command(&["apt-get", "purge", "-y", "-q", "ganesha-ctdb"], &[], None));
    assert!(!target.installed());
    for f in FILES {
        assert!(!target.path(f).exists(), "{f} left after purge");
    }
    assert!(
        !target.path("/var/lib/ganesha-ctdb").exists(),
        "store dir left after purge"
    );
}

#[test]
#[serial]
fn the_deb_installs_loads_into_the_real_ganesha_and_purges_cleanly() {
    install_load_purge(&Target::Host, "");
}

/// Debian 13: nfs-ganesha 6.5 and ctdb 4.22 satisfy the Depends, 6.5 loads the library.
#[test]
#[serial]
fn on_debian_13_the_deb_installs_loads_into_its_ganesha_and_purges_cleanly() {
    // 6.x makes a failing PR_SET_IO_FLUSHER (refused in this container) fatal by default.
    install_load_purge(
        &Target::debian("trixie"),
        "allow_set_io_flusher_fail = true;",
    );
}
