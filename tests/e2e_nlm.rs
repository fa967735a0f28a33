//! NFSv3 byte-range locks through Ganesha's NLM with ganesha-ctdb loaded, on one node: the
//! real ganesha.nfsd, rpcbind and rpc.statd share a network namespace and a private /run.
//! A lock asked during the start-up grace is refused (DENIED_GRACE_PERIOD; NLM never lifts
//! grace early), granted after it; a second client host's conflicting lock is denied; after
//! unlock it is granted. (Failover with SM_NOTIFY: tests/e2e_cluster_nlm.rs.)
//! With rpc.statd running as Debian runs it (dropped to the owner of its `sm` directory,
//! user statd, no capabilities) and the shipped callout: locks work, the callout says why a
//! single node records nothing, and nothing piles up. (That the records land in a cluster,
//! through the spool: tests/e2e_cluster_nlm.rs, whose nodes run statd so.)

use nlm_client::{Lock, NlmClient, NlmStat};
use serial_test::serial;
use std::process::Command;
use std::time::{Duration, Instant};
use testbed::procs::Netns;

fn client(ns: &str, caller: &str) -> NlmClient {
    let ns = ns.to_string();
    NlmClient::new("127.0.0.1".parse().unwrap(), caller, move |addr| {
        nfs4_client::netns::connect(Some(&ns), addr, Duration::from_secs(10))
    })
}

/// A node: ganesha.nfsd with NLM, rpcbind and rpc.statd in namespace `node`, everything
/// else in `w`; `statd_args`: more of rpc.statd's arguments; `env`: for all of them (statd
/// passes its environment to its callout).
fn start_node(node: &mut Netns, w: &std::path::Path, statd_args: &str, env: &[(&str, String)]) {
    let lib = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|p| p.parent())
        .unwrap()
        .to_path_buf();
    for d in ["export", "store", "statd/sm", "statd/sm.bak", "lib"] {
        std::fs::create_dir_all(w.join(d)).unwrap();
    }
    std::fs::write(w.join("export/f.txt"), "data\n").unwrap();
    std::os::unix::fs::symlink(
        lib.join("libganesha_ctdb_recov.so"),
        w.join("lib/libganesha_rados_recov.so"),
    )
    .unwrap();
    let grace = GRACE;
    std::fs::write(
        w.join("ganesha.conf"),
        format!(
            "NFS_CORE_PARAM {{ Protocols = 3, 4; Enable_NLM = true; Enable_UDP = true; Enable_RQUOTA = false;\n\
               MNT_Port = 20048; NLM_Port = 32803; NSM_Use_Caller_Name = true; }}\n\
             NFS_KRB5 {{ Active_krb5 = false; CCacheDir = {w}/ccache; }}\n\
             NFSV4 {{ RecoveryBackend = rados_cluster; Lease_Lifetime = 10; Grace_Period = {grace}; }}\n\
             CTDB_RECOVERY {{ Dir = {w}/store; Node_Id = nlm; }}\n\
             EXPORT {{ Export_Id = 1; Path = {w}/export; Pseudo = /export; Access_Type = RW;\n\
               Squash = No_Root_Squash; SecType = sys; Protocols = 3, 4; Transports = TCP, UDP;\n\
               FSAL {{ Name = VFS; }} }}\n\
             LOG {{ Default_Log_Level = EVENT; }}\n",
            w = w.display()
        ),
    )
    .unwrap();
    let script = format!(
        "mount -t tmpfs tmpfs /run && mkdir -p /run/ganesha && \
         rpcbind -f -w & sleep 0.5; rpc.statd -F -L -P {w}/statd {statd_args} & sleep 0.5; \
         exec {ganesha}",
        w = w.display(),
        ganesha = testbed::cluster::ganesha_args(w).join(" ")
    );
    node.children.push(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &node.name,
                "unshare",
                "-m",
                "--propagation",
                "private",
            ])
            .args(["sh", "-c", &script])
            .env("LD_LIBRARY_PATH", w.join("lib"))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
}

/// `a`'s lock on f.txt once the start-up grace is over (refused with DENIED_GRACE_PERIOD
/// before); returns it and the file handle.
fn lock_after_grace(a: &NlmClient, w: &std::path::Path, grace: u64) -> Lock {
    let log = || std::fs::read_to_string(w.join("ganesha.log")).unwrap_or_default();
    let started = Instant::now();
    let root = loop {
        match a.mount(&w.join("export").display().to_string()) {
            Ok(fh) => break fh,
            Err(_) if started.elapsed() < Duration::from_secs(20) => {
                std::thread::sleep(Duration::from_millis(300));
            }
            Err(e) => panic!("MNT: {e}\n{}", log()),
        }
    };
    let fh = a.lookup(&root, "f.txt").unwrap();
    let mine = Lock {
        fh: fh.clone(),
        owner: b"owner-a".to_vec(),
        svid: 1,
        offset: 0,
        len: 100,
    };
    let first = a.lock(&mine, false, 1).unwrap();
    assert_eq!(
        first,
        NlmStat::DeniedGracePeriod,
        "NLM locks wait for the start-up grace\n{}",
        log()
    );
    let mut granted = false;
    while !granted {
        assert!(
            started.elapsed() < Duration::from_secs(grace + 30),
            "grace never ended:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_secs(1));
        match a.lock(&mine, false, 1).unwrap() {
            NlmStat::Granted => granted = true,
            NlmStat::DeniedGracePeriod => {}
            other => panic!("lock during start-up: {other:?}\n{}", log()),
        }
    }
    mine
}

const GRACE: u64 = 10;

#[test]
#[serial]
fn nlm_locks_wait_for_grace_and_conflict_across_client_hosts() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let mut node = Netns::new(format!("gctdb-nlm{}", std::process::id())).unwrap();
    start_node(&mut node, w, "", &[]);
    let a = client(&node.name, "127.0.0.1");
    let mine = lock_after_grace(&a, w, GRACE);
    let b = client(&node.name, "127.0.0.2");
    let theirs = Lock {
        owner: b"owner-b".to_vec(),
        svid: 2,
        ..mine.clone()
    };
    assert_eq!(b.lock(&theirs, false, 1).unwrap(), NlmStat::Denied);
    assert_eq!(a.unlock(&mine).unwrap(), NlmStat::Granted);
    assert_eq!(b.lock(&theirs, false, 1).unwrap(), NlmStat::Granted);
}

/// rpc.statd as Debian runs it: `sm` and `sm.bak` owned by user statd, so statd drops to
/// it with no capabilities, and runs the shipped callout so. That user cannot open the
/// dir store; on a single node (no takeover to notify for; statd notifies its own hosts at
/// a restart) the callout records nothing, says so, and leaves nothing behind, and the
/// lock is granted all the same.
#[test]
#[serial]
fn an_unprivileged_statd_callout_on_a_single_node_records_nothing_and_blocks_nothing() {
    use ganesha_ctdb_recov::records::ServerIp;
    use ganesha_ctdb_recov::store::Store;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // Debian's statd user, as nfs-common's postinst made it own /var/lib/nfs/sm.
    let sm = std::fs::metadata("/var/lib/nfs/sm").expect("nfs-common's /var/lib/nfs/sm");
    let (uid, gid) = (sm.uid(), sm.gid());
    assert_ne!(
        uid, 0,
        "/var/lib/nfs/sm is root's: statd would not drop privileges"
    );
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // statd's user must get through to its state directory.
    std::fs::set_permissions(w, std::fs::Permissions::from_mode(0o711)).unwrap();
    for d in ["statd/sm", "statd/sm.bak", "store"] {
        std::fs::create_dir_all(w.join(d)).unwrap();
    }
    for d in ["statd", "statd/sm", "statd/sm.bak"] {
        std::os::unix::fs::chown(w.join(d), Some(uid), Some(gid)).unwrap();
    }
    let callout = concat!(env!("CARGO_MANIFEST_DIR"), "/ganesha-conf/statd-callout");
    let bin = env!("CARGO_BIN_EXE_ganesha-ctdb");
    let mut node = Netns::new(format!("gctdb-nlmu{}", std::process::id())).unwrap();
    start_node(
        &mut node,
        w,
        &format!("-H {callout} 2>{log}", log = w.join("statd.log").display()),
        // The callout's: the binary under test and this node's store.
        &[
            ("GANESHA_CTDB", bin.to_string()),
            (
                "GANESHA_CTDB_OPTS",
                format!("--store dir --dir {}", w.join("store").display()),
            ),
        ],
    );
    let a = client(&node.name, "127.0.0.1");
    let _mine = lock_after_grace(&a, w, GRACE);
    let statd_log = || std::fs::read_to_string(w.join("statd.log")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !statd_log().contains("not recorded") {
        assert!(
            Instant::now() < deadline,
            "the unprivileged callout never said why it recorded nothing:\n{}",
            statd_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        statd_log().contains("a single node needs no record"),
        "{}",
        statd_log()
    );
    let store = ganesha_ctdb_recov::store::dir::DirStore::open(&w.join("store")).unwrap();
    let key = ganesha_ctdb_recov::statd::statd_key(&ServerIp::Local, "127.0.0.1");
    assert_eq!(store.get(&key).unwrap(), None);
    assert!(!w.join("store/statd-spool").exists(), "nothing spooled");
}
