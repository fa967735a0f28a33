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
    /// Validates raw values; returns every error, not just the first.
    pub fn from_raw(
        raw: &RawConfig,
        hostname: impl FnOnce() -> Option<String>,
    ) -> Result<Config, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let store = match raw.store.as_deref().unwrap_or("dir") {
            s if s.eq_ignore_ascii_case("dir") => StoreKind::Dir,
            s if s.eq_ignore_ascii_case("ctdb") => StoreKind::Ctdb,
            other => {
                errors.push(ConfigError {
                    key: "Store",
                    message: format!("{other:?} is not a store; write Store = dir; (a directory, the default) or Store = ctdb; (CTDB persistent databases)"),
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
