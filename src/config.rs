//! The CTDB_RECOVERY { } block, validated. Ganesha's parser hands us strings (see
//! src/ganesha/config.rs); this module decides what they mean, so that every message can name
//! the key, the bad value and what to write instead.

use std::fmt;
use std::path::PathBuf;

pub const DEFAULT_DIR: &str = "/var/lib/ganesha-ctdb";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Dir,
    Ctdb,
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreKind::Dir => "dir",
            StoreKind::Ctdb => "ctdb",
        })
    }
}

impl StoreKind {
    /// `Store = ...` as ganesha.conf writes it (case-insensitive).
    pub fn from_name(name: &str) -> Option<StoreKind> {
        if name.eq_ignore_ascii_case("dir") {
            Some(StoreKind::Dir)
        } else if name.eq_ignore_ascii_case("ctdb") {
            Some(StoreKind::Ctdb)
        } else {
            None
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub store: StoreKind,
    pub dir: PathBuf,
    pub node_id: String,
    /// The CTDB persistent database of the ctdb store.
    pub recovery_db: String,
    /// The CTDB persistent database holding the grace records (polled every second).
    pub grace_db: String,
}

#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub key: &'static str,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CTDB_RECOVERY {{ {} }}: {}", self.key, self.message)
    }
}

/// The raw strings as Ganesha's parser left them (None = not set and no default).
#[derive(Default, Debug)]
pub struct RawConfig {
    pub store: Option<String>,
    pub dir: Option<String>,
    pub node_id: Option<String>,
    pub recovery_db: Option<String>,
    pub grace_db: Option<String>,
}

impl Config {
    /// The settings in effect, as the log line at start-up shows them: only those the
    /// chosen store uses (the ctdb store takes its node id from ctdbd, and no directory).
    pub fn summary(&self) -> String {
        match self.store {
            StoreKind::Dir => format!(
                "Store = dir, Dir = {}, Node_Id = {}",
                self.dir.display(),
                self.node_id
            ),
            StoreKind::Ctdb => format!(
                "Store = ctdb, Recovery_DB = {}, Grace_DB = {} (the node id is ctdbd's PNN)",
                self.recovery_db, self.grace_db
            ),
        }
    }

    /// Validates raw values; returns every error, not just the first.
    pub fn from_raw(
        raw: &RawConfig,
        hostname: impl FnOnce() -> Option<String>,
    ) -> Result<Config, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let name = raw.store.as_deref().unwrap_or("dir");
        let store = match StoreKind::from_name(name) {
            Some(kind) => kind,
            None => {
                errors.push(ConfigError {
                    key: "Store",
                    message: format!("{name:?} is not a store; write Store = dir; (a directory, the default) or Store = ctdb; (CTDB persistent databases)"),
                });
                StoreKind::Dir
            }
        };
        let dir = PathBuf::from(raw.dir.as_deref().unwrap_or(DEFAULT_DIR));
        if !dir.is_absolute() {
            errors.push(ConfigError {
                key: "Dir",
                message: format!(
                    "{:?} is not an absolute path; write e.g. Dir = {DEFAULT_DIR};",
                    dir.display().to_string()
                ),
            });
        }
        let node_id = match raw.node_id.as_deref() {
            Some(id) => id.to_string(),
            None => hostname().unwrap_or_default(),
        };
        if let Err(why) = check_node_id(&node_id) {
            let source = if raw.node_id.is_some() {
                ""
            } else {
                " (taken from the host name because Node_Id is not set)"
            };
            errors.push(ConfigError {
                key: "Node_Id",
                message: format!("{node_id:?}{source} {why}; write Node_Id = <name>; with 1 to 64 letters, digits, '.', '-' or '_'"),
            });
        }
        let recovery_db = raw
            .recovery_db
            .clone()
            .unwrap_or_else(|| DEFAULT_RECOVERY_DB.to_string());
        if let Err(why) = check_db_name(&recovery_db) {
            errors.push(ConfigError {
                key: "Recovery_DB",
                message: format!(
                    "{recovery_db:?} {why}; write e.g. Recovery_DB = {DEFAULT_RECOVERY_DB};"
                ),
            });
        }
        let grace_db = raw
            .grace_db
            .clone()
            .unwrap_or_else(|| DEFAULT_GRACE_DB.to_string());
        if let Err(why) = check_db_name(&grace_db) {
            errors.push(ConfigError {
                key: "Grace_DB",
                message: format!("{grace_db:?} {why}; write e.g. Grace_DB = {DEFAULT_GRACE_DB};"),
            });
        } else if grace_db == recovery_db {
            errors.push(ConfigError {
                key: "Grace_DB",
                message: format!(
                    "{grace_db:?} is also Recovery_DB; the grace records need a small database \
                     of their own (every node polls it): write e.g. Grace_DB = {DEFAULT_GRACE_DB};"
                ),
            });
        }
        if errors.is_empty() {
            Ok(Config {
                store,
                dir,
                node_id,
                recovery_db,
                grace_db,
            })
        } else {
            Err(errors)
        }
    }
}

pub const DEFAULT_RECOVERY_DB: &str = "ganesha_recovery.tdb";
pub const DEFAULT_GRACE_DB: &str = "ganesha_grace.tdb";

/// CTDB database names become file names on every node: a plain `name.tdb`.
fn check_db_name(name: &str) -> Result<(), &'static str> {
    if !name.ends_with(".tdb") || name.len() <= 4 {
        return Err("is not a CTDB database name (it must end in .tdb)");
    }
    if name.len() > 128
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err("must be 5 to 128 letters, digits, '.', '-' or '_'");
    }
    Ok(())
}

fn check_node_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("is empty");
    }
    if id.len() > 64 {
        return Err("is longer than 64 characters");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err("has characters other than letters, digits, '.', '-' and '_'");
    }
    Ok(())
}

/// The host name of this UTS namespace (what `hostname` prints), read without libc.
pub fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(store: Option<&str>, dir: Option<&str>, node: Option<&str>) -> RawConfig {
        RawConfig {
            store: store.map(Into::into),
            dir: dir.map(Into::into),
            node_id: node.map(Into::into),
            recovery_db: None,
            grace_db: None,
        }
    }

    #[test]
    fn the_start_up_line_names_only_what_the_store_uses() {
        let host = || Some("h1".to_string());
        let dir = Config::from_raw(&raw(Some("dir"), Some("/srv/rec"), None), host).unwrap();
        assert_eq!(dir.summary(), "Store = dir, Dir = /srv/rec, Node_Id = h1");
        let ctdb = Config::from_raw(&raw(Some("ctdb"), None, None), host).unwrap();
        let line = ctdb.summary();
        assert!(
            line.starts_with(
                "Store = ctdb, Recovery_DB = ganesha_recovery.tdb, Grace_DB = ganesha_grace.tdb"
            ),
            "{line}"
        );
        assert!(
            !line.contains("Dir =") && !line.contains("Node_Id ="),
            "{line}"
        );
    }

    #[test]
    fn recovery_db_must_be_a_tdb_name() {
        for bad in ["x", "../etc.tdb", "a b.tdb", ".tdb"] {
            let mut r = raw(None, None, Some("n1"));
            r.recovery_db = Some(bad.into());
            let errs = Config::from_raw(&r, || None).unwrap_err();
            assert_eq!(errs[0].key, "Recovery_DB", "{bad}");
            assert!(errs[0].to_string().contains(bad), "{}", errs[0]);
        }
        let c = Config::from_raw(&raw(None, None, Some("n1")), || None).unwrap();
        assert_eq!(c.recovery_db, "ganesha_recovery.tdb");
    }

    #[test]
    fn defaults() {
        let c = Config::from_raw(&RawConfig::default(), || Some("host1".into())).unwrap();
        assert_eq!(
            c,
            Config {
                store: StoreKind::Dir,
                dir: DEFAULT_DIR.into(),
                node_id: "host1".into(),
                recovery_db: DEFAULT_RECOVERY_DB.into(),
                grace_db: DEFAULT_GRACE_DB.into(),
            }
        );
        let c = Config::from_raw(&raw(Some("CTDB"), Some("/srv/x"), Some("n-2")), || None).unwrap();
        assert_eq!(
            (c.store, c.dir.to_str(), c.node_id.as_str()),
            (StoreKind::Ctdb, Some("/srv/x"), "n-2")
        );
    }

    #[test]
    fn every_error_names_key_and_value() {
        let errs = Config::from_raw(
            &raw(Some("rados"), Some("relative/dir"), Some("a b")),
            || None,
        )
        .unwrap_err();
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(errs.len(), 3, "{text:?}");
        assert!(
            text[0].contains("Store")
                && text[0].contains("\"rados\"")
                && text[0].contains("Store = dir;")
        );
        assert!(
            text[1].contains("Dir")
                && text[1].contains("relative/dir")
                && text[1].contains("absolute")
        );
        assert!(text[2].contains("Node_Id") && text[2].contains("\"a b\""));
    }

    #[test]
    fn bad_hostname_default_says_where_it_came_from() {
        let errs = Config::from_raw(&RawConfig::default(), || Some("x".repeat(65))).unwrap_err();
        assert!(
            errs[0].to_string().contains("taken from the host name"),
            "{}",
            errs[0]
        );
        let errs = Config::from_raw(&RawConfig::default(), || None).unwrap_err();
        assert!(errs[0].to_string().contains("is empty"));
    }
}

/// Property-based fuzzing of the CTDB_RECOVERY values (issue 15; docs/fuzzing.md): any
/// mix of set, unset, valid and invalid values is accepted exactly when the documented
/// rules (docs/configuration.md) accept each, every refusal names its key and quotes its
/// value, and an accepted Node_Id makes stamps and keys that round trip. 512 cases per
/// property; PROPTEST_CASES=N for a long run.
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::fuzzing::config;
    use crate::records::{grace_key, ClientRecord};
    use crate::store::dir::{decode_file_name, file_name_for_key};
    use proptest::prelude::*;

    fn store() -> impl Strategy<Value = Option<String>> {
        prop::option::of(prop_oneof![
            "[dD][iI][rR]",
            "[cC][tT][dD][bB]",
            "[ -~]{0,8}",
            Just(" dir".to_string()),
        ])
    }

    fn dir() -> impl Strategy<Value = Option<String>> {
        prop::option::of(prop_oneof!["/[ -~]{0,30}", "[ -~]{0,30}", "\\PC{0,10}"])
    }

    fn node_id() -> impl Strategy<Value = Option<String>> {
        prop::option::of(name())
    }

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => "[A-Za-z0-9._-]{1,64}",
            1 => "[A-Za-z0-9._-]{65,70}",
            1 => Just(String::new()),
            1 => "[ -~]{1,12}",
            1 => "\\PC{1,6}",
        ]
    }

    fn db() -> impl Strategy<Value = Option<String>> {
        prop::option::of(prop_oneof![
            3 => "[A-Za-z0-9._-]{1,124}\\.tdb",
            1 => "[A-Za-z0-9._-]{125,130}\\.tdb",
            1 => Just(".tdb".to_string()),
            1 => Just(DEFAULT_GRACE_DB.to_string()),
            1 => Just(DEFAULT_RECOVERY_DB.to_string()),
            1 => "[ -~]{0,12}(\\.tdb)?",
        ])
    }

    /// The documented rules, written out independently of from_raw.
    fn plain(s: &str) -> bool {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    }

    fn db_ok(s: &str) -> bool {
        s.ends_with(".tdb") && (5..=128).contains(&s.len()) && plain(s)
    }

    proptest! {
        #![proptest_config(config("config"))]

        /// Accepted iff every value follows its rule; otherwise one error per bad value, in
        /// the block's order, each naming its key and quoting the value.
        #[test]
        fn values_are_accepted_exactly_by_the_documented_rules(
            raw in (store(), dir(), node_id(), db(), db()).prop_map(|(store, dir, node_id, recovery_db, grace_db)| {
                RawConfig { store, dir, node_id, recovery_db, grace_db }
            }),
            host in prop::option::of(name()),
        ) {
            let store = raw.store.as_deref().unwrap_or("dir");
            let dir = raw.dir.as_deref().unwrap_or(DEFAULT_DIR);
            let node = raw.node_id.clone().or(host.clone()).unwrap_or_default();
            let rec = raw.recovery_db.as_deref().unwrap_or(DEFAULT_RECOVERY_DB);
            let grace = raw.grace_db.as_deref().unwrap_or(DEFAULT_GRACE_DB);
            let mut bad: Vec<(&str, String)> = Vec::new();
            if !["dir", "ctdb"].iter().any(|k| store.eq_ignore_ascii_case(k)) {
                bad.push(("Store", format!("{store:?}")));
            }
            if !dir.starts_with('/') {
                bad.push(("Dir", format!("{dir:?}")));
            }
            if node.is_empty() || node.len() > 64 || !plain(&node) {
                bad.push(("Node_Id", format!("{node:?}")));
            }
            if !db_ok(rec) {
                bad.push(("Recovery_DB", format!("{rec:?}")));
            }
            if !db_ok(grace) || grace == rec {
                bad.push(("Grace_DB", format!("{grace:?}")));
            }
            match Config::from_raw(&raw, || host.clone()) {
                Ok(c) => {
                    prop_assert!(bad.is_empty(), "accepted despite {:?}", bad);
                    prop_assert_eq!(
                        c.store,
                        if store.eq_ignore_ascii_case("ctdb") { StoreKind::Ctdb } else { StoreKind::Dir }
                    );
                    prop_assert_eq!(c.dir, PathBuf::from(dir));
                    prop_assert_eq!((c.node_id.as_str(), c.recovery_db.as_str(), c.grace_db.as_str()), (node.as_str(), rec, grace));
                }
                Err(errors) => {
                    let keys: Vec<&str> = errors.iter().map(|e| e.key).collect();
                    let want: Vec<&str> = bad.iter().map(|(k, _)| *k).collect();
                    prop_assert_eq!(keys, want);
                    for (e, (_, quoted)) in errors.iter().zip(&bad) {
                        let text = e.to_string();
                        prop_assert!(text.contains(e.key) && text.contains(quoted.as_str()), "{}", text);
                    }
                }
            }
        }

        /// Every Node_Id the rules allow is accepted, and makes record stamps that decode
        /// back and a grace key whose dir-store file name decodes back.
        #[test]
        fn an_accepted_node_id_makes_stamps_and_keys_that_round_trip(
            node in "[A-Za-z0-9._-]{1,64}",
            epoch in any::<u64>(),
            clientid in any::<u64>(),
        ) {
            let raw = RawConfig { node_id: Some(node.clone()), ..RawConfig::default() };
            prop_assert!(Config::from_raw(&raw, || None).is_ok());
            let r = ClientRecord {
                clientid,
                stamp: format!("{node}.{epoch}"),
                revoked: Vec::new(),
                reclaim_complete: None,
            };
            prop_assert_eq!(ClientRecord::decode(&r.encode()), Ok(r));
            let key = grace_key(&node);
            prop_assert_eq!(decode_file_name(&file_name_for_key(&key)), Some(key));
        }
    }
}
