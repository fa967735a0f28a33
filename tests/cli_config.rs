//! The tool finds the store the CTDB_RECOVERY block of ganesha.conf names (issue 16): no
//! flags to repeat; each flag still overrides its setting; a broken file is named with its
//! line, not guessed around.

use ganesha_ctdb_recov::records::{grace_key, GraceRecord};
use ganesha_ctdb_recov::store::dir::DirStore;
use ganesha_ctdb_recov::store::Store;
use std::path::Path;
use std::process::Command;

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ganesha-ctdb"))
        .args(args)
        .output()
        .expect("run ganesha-ctdb");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn store_with_node(dir: &Path, node: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let s = DirStore::open(dir).unwrap();
    s.put(&grace_key(node), &GraceRecord::default().encode())
        .unwrap();
}

#[test]
fn the_store_comes_from_ganesha_conf_and_flags_override_it() {
    let t = tempfile::tempdir().unwrap();
    let named = t.path().join("named");
    let other = t.path().join("other");
    store_with_node(&named, "from-config");
    store_with_node(&other, "from-flag");
    std::fs::write(
        t.path().join("recovery.conf"),
        format!(
            "# included, as a site would keep it\nCTDB_RECOVERY {{\n  Store = dir;\n  Dir = \"{}\";\n}}\n",
            named.display()
        ),
    )
    .unwrap();
    let conf = t.path().join("ganesha.conf");
    std::fs::write(
        &conf,
        "NFSV4 { RecoveryBackend = rados_cluster; Grace_Period = 90; }\n\
         EXPORT { Export_Id = 1; Path = /srv; Pseudo = /srv; FSAL { Name = VFS; } }\n\
         %include recovery.conf\n",
    )
    .unwrap();
    let conf = conf.to_str().unwrap();

    let (ok, out, err) = cli(&["--config", conf, "grace"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("from-config") && !out.contains("from-flag"),
        "{out}"
    );

    let (ok, out, err) = cli(&["--config", conf, "--dir", other.to_str().unwrap(), "grace"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("from-flag") && !out.contains("from-config"),
        "{out}"
    );
}

#[test]
fn a_broken_or_missing_named_file_is_an_error_that_says_where() {
    let t = tempfile::tempdir().unwrap();
    let conf = t.path().join("ganesha.conf");
    std::fs::write(
        &conf,
        "NFSV4 {\n  Grace_Period = 90;\nCTDB_RECOVERY { Store = \"ctdb; }\n",
    )
    .unwrap();
    let (ok, _, err) = cli(&["--config", conf.to_str().unwrap(), "grace"]);
    assert!(!ok);
    assert!(err.contains(&format!("{}:3:", conf.display())), "{err}");
    assert!(
        err.contains("--config") && err.contains("--store"),
        "says what to do: {err}"
    );

    let missing = t.path().join("missing.conf");
    let (ok, _, err) = cli(&["--config", missing.to_str().unwrap(), "grace"]);
    assert!(!ok);
    assert!(err.contains("missing.conf"), "{err}");

    std::fs::write(&conf, "CTDB_RECOVERY { Store = tdb; }\n").unwrap();
    let (ok, _, err) = cli(&["--config", conf.to_str().unwrap(), "grace"]);
    assert!(!ok);
    assert!(err.contains("Store = tdb"), "{err}");
}
