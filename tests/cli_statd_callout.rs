//! rpc.statd's ha-callout, run as statd runs it (the shipped ganesha-conf/statd-callout),
//! with client names a peer chooses: names that look like options are stored under exactly
//! that name, and change nothing else (no help printed, no other store, no file written
//! where the callout happens to run).

use ganesha_ctdb_recov::records::ServerIp;
use ganesha_ctdb_recov::statd;
use ganesha_ctdb_recov::store::dir::DirStore;
use ganesha_ctdb_recov::store::Store;
use std::process::Command;

#[test]
fn option_like_client_names_are_stored_as_names() {
    let work = tempfile::tempdir().unwrap();
    let store_dir = work.path().join("store");
    let cwd = work.path().join("cwd");
    std::fs::create_dir_all(&store_dir).unwrap();
    std::fs::create_dir_all(&cwd).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/ganesha-conf/statd-callout");
    // As rpc.statd runs it, from an unrelated working directory.
    let callout = |args: &[&str]| {
        Command::new(script)
            .current_dir(&cwd)
            .env("GANESHA_CTDB", env!("CARGO_BIN_EXE_ganesha-ctdb"))
            .env(
                "GANESHA_CTDB_OPTS",
                format!("--store dir --dir {}", store_dir.display()),
            )
            .args(args)
            .output()
            .unwrap()
    };
    let names = [
        "-h",
        "--help",
        "-X",
        "--dir=.",
        "--store=dir",
        "--db=other.tdb",
        "--",
        "-",
    ];
    for name in names {
        let out = callout(&["add-client", name, "vm"]);
        assert!(
            out.status.success() && out.stdout.is_empty(),
            "{name:?}: {out:?}"
        );
    }
    let store = DirStore::open(&store_dir).unwrap();
    for name in names {
        assert!(
            store
                .get(&statd::statd_key(&ServerIp::Local, name))
                .unwrap()
                .is_some(),
            "{name:?} stored under its own name"
        );
    }
    assert_eq!(
        std::fs::read_dir(&cwd).unwrap().count(),
        0,
        "nothing written where the callout runs"
    );
    // del-client too.
    let out = callout(&["del-client", "-h", "vm"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        store
            .get(&statd::statd_key(&ServerIp::Local, "-h"))
            .unwrap()
            .as_deref(),
        Some(statd::UNMONITORED)
    );
}
