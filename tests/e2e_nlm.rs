//! NFSv3 byte-range locks through Ganesha's NLM with ganesha-ctdb loaded, on one node: the
//! real ganesha.nfsd, rpcbind and rpc.statd share a network namespace and a private /run.
//! A lock asked during the start-up grace is refused (DENIED_GRACE_PERIOD; NLM never lifts
//! grace early), granted after it; a second client host's conflicting lock is denied; after
//! unlock it is granted. (Failover with SM_NOTIFY: tests/e2e_cluster_nlm.rs.)

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

#[test]
#[serial]
fn nlm_locks_wait_for_grace_and_conflict_across_client_hosts() {
    let lib = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|p| p.parent())
        .unwrap()
        .to_path_buf();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    for d in ["export", "store", "statd/sm", "statd/sm.bak", "lib"] {
        std::fs::create_dir_all(w.join(d)).unwrap();
    }
    std::fs::write(w.join("export/f.txt"), "data\n").unwrap();
    std::os::unix::fs::symlink(
        lib.join("libganesha_ctdb_recov.so"),
        w.join("lib/libganesha_rados_recov.so"),
    )
    .unwrap();
    let grace: u64 = 10;
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
    let mut node = Netns::new(format!("gctdb-nlm{}", std::process::id())).unwrap();
    let script = format!(
        "mount -t tmpfs tmpfs /run && mkdir -p /run/ganesha && \
         rpcbind -f -w & sleep 0.5; rpc.statd -F -L -P {w}/statd & sleep 0.5; \
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
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let log = || std::fs::read_to_string(w.join("ganesha.log")).unwrap_or_default();
    let a = client(&node.name, "127.0.0.1");
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
