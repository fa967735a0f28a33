//! The single-node end-to-end on every Ganesha Debian ships: 4.3 (Debian 12, this machine),
//! 6.5 (Debian 13) and 15.2 (sid), the latter two from their own packages in roots built by
//! scripts/chroots.sh, each loading this crate's library:
//! NFSv4.0 (an owner naming no address) and NFSv4.1 (Linux's, over IPv4 and over IPv6: filed
//! under ::1 on every version) clients open and lock; after
//! SIGKILL and restart they reclaim while a newcomer gets NFS4ERR_GRACE and a stranger is
//! refused reclaim; a client that did not reclaim is dropped when grace ends; with only
//! NFSv4.1 clients grace lifts once they sent RECLAIM_COMPLETE.

mod common;

use common::single::{Release, Server};
use common::{owners, refused};
use nfs4_client::{Client, LockType, NfsStat, OpenFile};
use serial_test::serial;
use std::net::IpAddr;
use std::time::{Duration, Instant};

const BLOCK: &str = "CTDB_RECOVERY { Store = dir; Dir = $STORE; Node_Id = versions; }";

fn lock(s: &Server, minor: u32, owner: &str, file: &str) -> (Client, OpenFile) {
    lock_at(s, "127.0.0.1".parse().unwrap(), minor, owner, file)
}

fn lock_at(s: &Server, ip: IpAddr, minor: u32, owner: &str, file: &str) -> (Client, OpenFile) {
    let mut c = s.client_at(minor, owner, ip);
    c.establish()
        .unwrap_or_else(|e| panic!("{owner}: {e}\n{}", s.log()));
    if minor > 0 {
        c.reclaim_complete().unwrap();
    }
    let mut f = c.open(&format!("export/{file}")).unwrap();
    c.lock(&mut f, LockType::Write, 0, 100, false).unwrap();
    (c, f)
}

fn reclaim(s: &Server, c: &mut Client, f: &OpenFile, what: &str) {
    c.disconnect();
    c.establish().unwrap();
    let mut r = c
        .reclaim_open(&f.fh)
        .unwrap_or_else(|e| panic!("{what}: OPEN CLAIM_PREVIOUS: {e}\n{}", s.log()));
    // The lock was taken on bytes 0-99 before the crash.
    c.lock(&mut r, LockType::Write, 0, 100, true)
        .unwrap_or_else(|e| panic!("{what}: LOCK reclaim: {e}\n{}", s.log()));
    if c.minor_version() > 0 {
        c.reclaim_complete().unwrap();
    }
}

fn scenario(release: Release) {
    let name = release.name;
    let mut s = Server::of(release.clone(), BLOCK, 15);
    s.start();
    assert!(
        s.log().contains("recovery backend ready for Ganesha"),
        "{name}: {}",
        s.log()
    );
    assert!(
        !s.log().contains("has no mem_comp set"),
        "{name}: the config block is the size this version expects:\n{}",
        s.log()
    );
    let (mut c40, f40) = lock(&s, 0, &owners::v40_without_addr("c40", 40), "f40.txt");
    let (mut c41, f41) = lock(&s, 1, &owners::linux_v41(1, "c41"), "f41.txt");
    let (mut lazy, _) = lock(&s, 1, &owners::linux_v41(1, "lazy"), "lazy.txt");
    // Over IPv6: 4.3 and 6.5 keep only the low 32 bits of the address, 15.x all of it.
    let (mut c6, f6) = lock_at(
        &s,
        "::1".parse().unwrap(),
        1,
        &owners::linux_v41(1, "c6"),
        "hello.txt",
    );

    let records = s.records();
    assert_eq!(records.len(), 4, "{name}: {records:?}");
    assert!(
        records.iter().all(|k| if k.contains("c6") {
            k.starts_with("v4@::1@")
        } else {
            k.starts_with("v4@127.0.0.1@")
        }),
        "{name}: every client filed by the address it used: {records:?}"
    );

    s.kill();
    let ends = s.grace_ends();
    s.start();
    assert!(
        s.log().contains("4 client(s) may reclaim"),
        "{name}: {}",
        s.log()
    );
    let mut newcomer = s.client(1, &owners::linux_v41(1, "newcomer"));
    newcomer.establish().unwrap();
    newcomer.reclaim_complete().unwrap();
    refused(
        newcomer.open("export/other.txt"),
        &[NfsStat::GRACE],
        &format!("{name}: OPEN by a newcomer in grace"),
    );
    let mut stranger = s.client(1, &owners::linux_v41(1, "stranger"));
    stranger.establish().unwrap();
    refused(
        stranger.reclaim_open(&f41.fh),
        &[NfsStat::NO_GRACE, NfsStat::RECLAIM_BAD],
        &format!("{name}: reclaim by a client that never had state"),
    );
    reclaim(&s, &mut c40, &f40, &format!("{name} v4.0"));
    reclaim(&s, &mut c41, &f41, &format!("{name} v4.1"));
    reclaim(&s, &mut c6, &f6, &format!("{name} v4.1 over IPv6"));
    lazy.disconnect();
    s.wait_for_grace_end(
        ends,
        Duration::from_secs(60),
        &mut [&mut c40, &mut c41, &mut c6],
    );
    std::thread::sleep(Duration::from_secs(1));
    let records = s.records();
    assert!(
        !records.iter().any(|k| k.contains("lazy"))
            && records.iter().any(|k| k.contains("c40"))
            && records.iter().any(|k| k.contains("c41"))
            && records.iter().any(|k| k.contains("c6")),
        "{name}: only the client that did not reclaim lost its record: {records:?}"
    );
    drop(s);

    // Only NFSv4.1 clients: grace lifts once they all sent RECLAIM_COMPLETE.
    let mut s = Server::of(release.clone(), BLOCK, 90);
    s.start();
    let (mut c, f) = lock(&s, 1, &owners::linux_v41(1, "early"), "f41.txt");
    let (mut u, uf) = lock(&s, 1, &owners::linux_v41(1, "unfinished"), "f40.txt");
    s.kill();
    let ends = s.grace_ends();
    s.start();
    let started = Instant::now();
    reclaim(&s, &mut c, &f, &format!("{name} v4.1-only"));
    reclaim(&s, &mut u, &uf, &format!("{name} v4.1-only"));
    s.wait_for_grace_end(ends, Duration::from_secs(30), &mut [&mut c, &mut u]);
    eprintln!(
        "{name}: grace lifted {:?} after the restart with only NFSv4.1 clients (Grace_Period 90 s)",
        started.elapsed()
    );

    // RFC 8881 §8.4.3: the server crashes again while one client has reclaimed its open but
    // not yet sent RECLAIM_COMPLETE. Where Ganesha reports RECLAIM_COMPLETE (15.x) that
    // client may not reclaim after the next restart; 4.3 and 6.5 do not tell, and let it.
    s.kill();
    s.start();
    reclaim(&s, &mut c, &f, &format!("{name} second crash"));
    u.disconnect();
    u.establish().unwrap();
    u.reclaim_open(&uf.fh).unwrap();
    s.kill();
    s.start();
    reclaim(&s, &mut c, &f, &format!("{name} third start"));
    u.disconnect();
    u.establish().unwrap();
    let again = u.reclaim_open(&uf.fh);
    if release.version.0 >= 15 {
        refused(
            again,
            &[NfsStat::NO_GRACE, NfsStat::RECLAIM_BAD],
            &format!("{name}: reclaim by a client that had not completed its last reclaim"),
        );
    } else {
        again.unwrap_or_else(|e| panic!("{name}: no RECLAIM_COMPLETE hook, reclaim allowed: {e}"));
    }
}

#[test]
#[serial]
fn ganesha_4_3_debian_12() {
    scenario(Release::host());
}

#[test]
#[serial]
fn ganesha_6_5_debian_13() {
    scenario(Release::debian("trixie"));
}

#[test]
#[serial]
fn ganesha_15_2_debian_sid() {
    scenario(Release::debian("sid"));
}
