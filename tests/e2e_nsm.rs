//! The NSM sender against a real rpc.statd (nfs-utils) and rpcbind, in a network namespace
//! with a private /run: `ganesha-ctdb notify X` sends SM_NOTIFY from X to the client
//! recorded for X, once naming X and once naming the NFS host name, with a stored odd state
//! that grows with every notification; statd logs both. The statd callout records clients
//! from arguments (any bytes, no shell). Everything is stopped by pid, the namespace deleted.

use ganesha_ctdb_recov::records::ServerIp;
use ganesha_ctdb_recov::statd;
use ganesha_ctdb_recov::store::dir::DirStore;
use ganesha_ctdb_recov::store::Store;
mod common;

use common::run;
use serial_test::serial;
use std::process::Command;
use std::time::{Duration, Instant};
use testbed::procs::Netns;

#[test]
#[serial]
fn a_real_statd_receives_sm_notify_naming_the_moved_ip_and_the_host_name() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    for d in ["statd/sm", "statd/sm.bak"] {
        std::fs::create_dir_all(w.join(d)).unwrap();
    }
    std::fs::create_dir_all(w.join("store")).unwrap();
    let mut ns = Netns::new(format!("gctdb-nsm{}", std::process::id())).unwrap();
    // X, the server's public IP, and the client's address.
    for a in ["10.99.0.1/32", "10.99.0.2/32"] {
        run(Command::new("ip").args(["-n", &ns.name, "addr", "add", a, "dev", "lo"]));
    }
    let script = format!(
        "mount -t tmpfs tmpfs /run && rpcbind -f -w & sleep 0.5; \
         exec rpc.statd -F -d -L -P {}",
        w.join("statd").display()
    );
    let log = std::fs::File::create(w.join("statd.log")).unwrap();
    ns.children.push(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.name,
                "unshare",
                "-m",
                "--propagation",
                "private",
            ])
            .args(["sh", "-c", &script])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let statd_log = || std::fs::read_to_string(w.join("statd.log")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(10);
    // statd is ready once rpcbind knows it.
    while Instant::now() < deadline {
        let out = Command::new("ip")
            .args(["netns", "exec", &ns.name, "rpcinfo", "-p", "127.0.0.1"])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).contains("status") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    let store = DirStore::open(&w.join("store")).unwrap();
    let x = ServerIp::Ip("10.99.0.1".parse().unwrap());
    statd::add_client(&store, std::slice::from_ref(&x), "10.99.0.2").unwrap();

    let bin = env!("CARGO_BIN_EXE_ganesha-ctdb");
    let notify = |expect: u32| {
        let out = run(Command::new("ip")
            .args(["netns", "exec", &ns.name, bin, "--dir"])
            .arg(w.join("store"))
            .args([
                "notify",
                "10.99.0.1",
                "--name",
                "nfs.example",
                "--timeout",
                "10",
            ]));
        assert!(
            out.contains("1 client(s) notified, 0 without answer"),
            "{out}\n{}",
            statd_log()
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        let want_ip = format!("Received SM_NOTIFY from 10.99.0.1, state: {expect}");
        let want_name = format!("Received SM_NOTIFY from nfs.example, state: {expect}");
        while !(statd_log().contains(&want_ip) && statd_log().contains(&want_name))
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = statd_log();
        assert!(
            log.contains(&want_ip) && log.contains(&want_name),
            "want {want_ip:?} and {want_name:?} in:\n{log}"
        );
    };
    notify(1);
    notify(3); // strictly greater and odd, from the store, not a clock
    assert_eq!(
        store
            .get(&statd::nsm_state_key(&"10.99.0.1".parse().unwrap()))
            .unwrap()
            .as_deref(),
        Some(&b"v1 state=3"[..])
    );

    // The shipped callout script, as rpc.statd runs it, takes names as arguments and never
    // through a shell; GANESHA_CTDB_OPTS reaches the tool (here: the dir store of this test).
    let pwned = w.join("pwned");
    let odd = format!("evil;$(touch {p})`touch {p}` name", p = pwned.display());
    run(Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/ganesha-conf/statd-callout"
    ))
    .env("GANESHA_CTDB", bin)
    .env(
        "GANESHA_CTDB_OPTS",
        format!("--store dir --dir {}", w.join("store").display()),
    )
    .args(["add-client", &odd, "vm"]));
    assert!(!pwned.exists(), "a shell ran the name");
    assert!(store
        .get(&statd::statd_key(&ServerIp::Local, &odd))
        .unwrap()
        .is_some());
    let out = Command::new(bin)
        .arg("--dir")
        .arg(w.join("store"))
        .args(["statd-callout", "add-client", "two\nlines", "vm"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("newline"));
}
