//! The .deb (packaging/build-deb.sh) on this Debian 12 machine: `apt-get install ./….deb`
//! installs the layout, the installed nfs-ganesha loads the installed library through the
//! systemd drop-in's environment (a real ganesha.nfsd start in a network namespace),
//! `ganesha-ctdb --help` and `man ganesha-ctdb` work, and `apt-get purge` leaves nothing.
//! The machine is left as found: the test refuses to run where the package is already
//! installed, and purges it even when an assertion fails.

mod common;

use common::run;
use serial_test::serial;
use std::path::Path;
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

fn installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "ganesha-ctdb"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = Command::new("apt-get")
            .args(["purge", "-y", "-q", "ganesha-ctdb"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status();
    }
}

#[test]
#[serial]
fn the_deb_installs_loads_into_the_real_ganesha_and_purges_cleanly() {
    assert!(
        !installed(),
        "ganesha-ctdb is already installed here; this test installs and purges it, so it \
         runs only where it is not"
    );
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let deb = run(&mut Command::new(repo.join("packaging/build-deb.sh")));
    let deb = repo.join(deb.trim());
    assert!(deb.exists(), "{}", deb.display());

    let _purge = Purge;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q"])
        .arg(&deb)
        .env("DEBIAN_FRONTEND", "noninteractive"));
    assert!(installed());
    for f in FILES {
        assert!(Path::new(f).exists(), "{f} not installed");
    }
    assert!(Path::new("/var/lib/ganesha-ctdb").is_dir());
    let help = run(Command::new("/usr/sbin/ganesha-ctdb").arg("--help"));
    assert!(help.contains("status") && help.contains("grace"), "{help}");
    let man = run(Command::new("man").args(["-P", "cat", "ganesha-ctdb"]));
    assert!(
        man.contains("ganesha-ctdb") && man.contains("status"),
        "{man}"
    );
    let man5 = run(Command::new("man").args(["-P", "cat", "5", "ganesha-ctdb.conf"]));
    assert!(man5.contains("Recovery_DB"), "{man5}");

    // The installed nfs-ganesha, with the drop-in's environment, loads the installed library.
    let dropin =
        std::fs::read_to_string("/usr/lib/systemd/system/nfs-ganesha.service.d/ganesha-ctdb.conf")
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
            "NFS_CORE_PARAM {{ Protocols = 4; Enable_NLM = false; Enable_RQUOTA = false; Enable_UDP = false; }}\n\
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
    let ganesha = testbed::cluster::ganesha_command(&ns.name, w, Path::new(&ld_path))
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

    run(Command::new("apt-get")
        .args(["purge", "-y", "-q", "ganesha-ctdb"])
        .env("DEBIAN_FRONTEND", "noninteractive"));
    assert!(!installed());
    for f in FILES {
        assert!(!Path::new(f).exists(), "{f} left after purge");
    }
    assert!(
        !Path::new("/var/lib/ganesha-ctdb").exists(),
        "store dir left after purge"
    );
}
