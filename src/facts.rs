//! What each node publishes about its own set-up, so that `ganesha-ctdb check` run on one
//! node can compare the whole cluster (src/check.rs):
//!
//! - `node@<node>`: written by the backend inside Ganesha when it starts: this library's
//!   version and path, the Ganesha it runs in, and what that Ganesha's configuration says
//!   (Grace_Period, Lease_Lifetime, NLM, CTDB_RECOVERY, each export with the identity of
//!   the filesystem under it). Nodes that differ here hand a moved IP's clients another
//!   grace period, another lease, or file handles the new node does not know (ESTALE).
//! - `script@<node>`: written by the CTDB event script at `monitor` (at most once a
//!   minute): which ganesha-ctdb binary runs it, and whether rpc.statd and rpcbind run on
//!   the node with the statd callout. A node whose record is missing or old does not run
//!   the script.
//!
//! Text records, one `key value` per line (%-escaped values, src/progress.rs), unknown keys
//! ignored, like the progress record.

use crate::progress::{escape, unescape};
use std::path::{Path, PathBuf};

pub const NODE_PREFIX: &str = "node@";
pub const SCRIPT_PREFIX: &str = "script@";
/// This build's version, as every part of the package reports it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// More exports than this in one record are not a configuration this tool compares.
const MAX_EXPORTS: usize = 4096;

/// One EXPORT block as configured, and the filesystem found under its path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportFacts {
    pub id: String,
    pub path: String,
    pub pseudo: String,
    /// Filesystem_id as configured (the fsid Ganesha then puts in file handles).
    pub filesystem_id: Option<String>,
    /// statvfs(path).f_fsid, when the path could be examined: what identifies the
    /// filesystem without a configured Filesystem_id.
    pub fsid: Option<u64>,
}

impl ExportFacts {
    /// What a client's file handle depends on: the configured id, else the filesystem's.
    pub fn identity(&self) -> String {
        match (&self.filesystem_id, self.fsid) {
            (Some(id), _) => format!("Filesystem_id {id}"),
            (None, Some(f)) => format!("fsid {f:#x}"),
            (None, None) => "unknown (path not readable)".into(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeFacts {
    pub version: String,
    /// The file this library was loaded from.
    pub library: String,
    pub ganesha: String,
    pub pid: u32,
    /// Unix seconds.
    pub started: u64,
    pub config_path: String,
    /// CTDB_RECOVERY's settings as Config::summary prints them.
    pub recovery: String,
    pub grace_period: Option<u32>,
    pub lease_lifetime: Option<u32>,
    pub enable_nlm: bool,
    pub exports: Vec<ExportFacts>,
    /// What could not be read (the configuration file, an export's path).
    pub problems: Vec<String>,
}

/// Where ganesha.nfsd read its configuration: its `-f` argument, else Debian's default.
pub fn config_path_of_this_process() -> PathBuf {
    let args: Vec<String> = std::fs::read("/proc/self/cmdline")
        .map(|b| {
            b.split(|c| *c == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "-f" {
            if let Some(p) = it.next() {
                return PathBuf::from(p);
            }
        } else if let Some(p) = a.strip_prefix("-f").filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
    }
    PathBuf::from(crate::ganesha_conf::DEFAULT_PATH)
}

/// The file mapped at `addr` in this process (/proc/self/maps): the library's own path.
pub fn file_mapped_at(addr: usize) -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (lo, hi) = f.next()?.split_once('-')?;
        let (lo, hi) = (
            usize::from_str_radix(lo, 16).ok()?,
            usize::from_str_radix(hi, 16).ok()?,
        );
        let path = f.nth(4)?;
        (lo <= addr && addr < hi).then(|| path.to_string())
    })
}

fn flag(v: Option<&str>, default: bool) -> bool {
    match v.map(str::to_ascii_lowercase).as_deref() {
        Some("true" | "yes" | "on" | "1") => true,
        Some("false" | "no" | "off" | "0") => false,
        _ => default,
    }
}

impl NodeFacts {
    /// Reads `config_path` as Ganesha's parser would (src/ganesha_conf.rs) and examines
    /// each export's path. Ganesha's defaults where a key is not set: Grace_Period 90,
    /// Lease_Lifetime 60, Enable_NLM true.
    pub fn gather(
        config_path: &Path,
        recovery: String,
        ganesha: &str,
        library: String,
    ) -> NodeFacts {
        let mut f = NodeFacts {
            version: VERSION.into(),
            library,
            ganesha: ganesha.into(),
            pid: std::process::id(),
            started: crate::progress::unix_now(),
            config_path: config_path.display().to_string(),
            recovery,
            enable_nlm: true,
            grace_period: Some(90),
            lease_lifetime: Some(60),
            ..NodeFacts::default()
        };
        let blocks = match crate::ganesha_conf::read(config_path) {
            Ok(b) => b,
            Err(e) => {
                f.problems
                    .push(format!("cannot read the configuration: {e}"));
                f.grace_period = None;
                f.lease_lifetime = None;
                return f;
            }
        };
        fn named<'a>(
            blocks: &'a [crate::ganesha_conf::Block],
            name: &'a str,
        ) -> impl Iterator<Item = &'a crate::ganesha_conf::Block> {
            blocks
                .iter()
                .filter(move |b| b.name.eq_ignore_ascii_case(name))
        }
        for b in named(&blocks, "NFSV4") {
            if let Some(g) = b.get("Grace_Period") {
                f.grace_period = g.parse().ok();
            }
            if let Some(l) = b.get("Lease_Lifetime") {
                f.lease_lifetime = l.parse().ok();
            }
        }
        for b in named(&blocks, "NFS_CORE_PARAM") {
            f.enable_nlm = flag(b.get("Enable_NLM"), f.enable_nlm);
        }
        for b in named(&blocks, "EXPORT") {
            let path = b.get("Path").unwrap_or_default().to_string();
            let fsid = nix::sys::statvfs::statvfs(Path::new(&path))
                // c_ulong: 32 bits on some targets, 64 here.
                .map(|s| {
                    #[allow(clippy::useless_conversion)]
                    u64::from(s.filesystem_id())
                })
                .map_err(|e| f.problems.push(format!("export path {path:?}: {e}")))
                .ok();
            f.exports.push(ExportFacts {
                id: b.get("Export_Id").unwrap_or_default().to_string(),
                pseudo: b.get("Pseudo").unwrap_or_default().to_string(),
                filesystem_id: b.get("Filesystem_id").map(str::to_string),
                path,
                fsid,
            });
        }
        f
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut s = String::from("v1\n");
        let mut line = |k: &str, v: &str| {
            s.push_str(k);
            s.push(' ');
            s.push_str(&escape(v));
            s.push('\n');
        };
        let opt = |v: Option<u32>| v.map_or("-".to_string(), |v| v.to_string());
        line("version", &self.version);
        line("library", &self.library);
        line("ganesha", &self.ganesha);
        line("pid", &self.pid.to_string());
        line("started", &self.started.to_string());
        line("config", &self.config_path);
        line("recovery", &self.recovery);
        line("grace_period", &opt(self.grace_period));
        line("lease_lifetime", &opt(self.lease_lifetime));
        line("enable_nlm", if self.enable_nlm { "1" } else { "0" });
        for e in &self.exports {
            let fields = [
                escape(&e.id),
                escape(&e.path),
                escape(&e.pseudo),
                e.filesystem_id.as_deref().map_or("-".into(), escape),
                e.fsid.map_or("-".into(), |f| f.to_string()),
            ];
            // Fields are escaped (no blank inside): the line's value is not escaped again.
            s.push_str("export ");
            s.push_str(&fields.join(" "));
            s.push('\n');
        }
        for p in &self.problems {
            s.push_str("problem ");
            s.push_str(&escape(p));
            s.push('\n');
        }
        s.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Option<NodeFacts> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.lines();
        if lines.next()? != "v1" {
            return None;
        }
        let opt = |v: &str| -> Option<Option<u32>> {
            if v == "-" {
                Some(None)
            } else {
                v.parse().ok().map(Some)
            }
        };
        let mut f = NodeFacts::default();
        for l in lines {
            let (k, v) = l.split_once(' ').unwrap_or((l, ""));
            match k {
                "export" => {
                    if f.exports.len() >= MAX_EXPORTS {
                        return None;
                    }
                    let w: Vec<&str> = v.split(' ').collect();
                    let [id, path, pseudo, fsid_conf, fsid] = w[..] else {
                        return None;
                    };
                    f.exports.push(ExportFacts {
                        id: unescape(id)?,
                        path: unescape(path)?,
                        pseudo: unescape(pseudo)?,
                        filesystem_id: if fsid_conf == "-" {
                            None
                        } else {
                            Some(unescape(fsid_conf)?)
                        },
                        fsid: if fsid == "-" {
                            None
                        } else {
                            Some(fsid.parse().ok()?)
                        },
                    });
                    continue;
                }
                "problem" => {
                    if f.problems.len() >= MAX_EXPORTS {
                        return None;
                    }
                    f.problems.push(unescape(v)?);
                    continue;
                }
                _ => {}
            }
            let v = unescape(v)?;
            match k {
                "version" => f.version = v,
                "library" => f.library = v,
                "ganesha" => f.ganesha = v,
                "pid" => f.pid = v.parse().ok()?,
                "started" => f.started = v.parse().ok()?,
                "config" => f.config_path = v,
                "recovery" => f.recovery = v,
                "grace_period" => f.grace_period = opt(&v)?,
                "lease_lifetime" => f.lease_lifetime = opt(&v)?,
                "enable_nlm" => f.enable_nlm = v == "1",
                _ => {}
            }
        }
        Some(f)
    }
}

/// What the event script finds on its node at `monitor`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScriptFacts {
    pub version: String,
    /// The ganesha-ctdb binary the script runs.
    pub exe: String,
    /// Unix seconds of the monitor run that wrote it.
    pub at: u64,
    /// rpc.statd runs in this node's network namespace, and the callout it was given
    /// (-H/--ha-callout, else /etc/nfs.conf [statd] ha-callout): its path, and whether it
    /// is ganesha-ctdb's.
    pub statd_running: bool,
    pub statd_callout: Option<String>,
    pub statd_callout_ours: bool,
    pub rpcbind_running: bool,
    /// Why rpc.statd's callout cannot spool NLM hosts here, if it cannot (statd runs as
    /// the owner of its `sm` directory: src/statd_spool.rs).
    pub statd_spool_problem: Option<String>,
}

impl ScriptFacts {
    pub fn encode(&self) -> Vec<u8> {
        format!(
            "v1\nversion {}\nexe {}\nat {}\nstatd {}\ncallout {}\ncallout_ours {}\nrpcbind {}\n\
             spool {}\n",
            escape(&self.version),
            escape(&self.exe),
            self.at,
            u8::from(self.statd_running),
            self.statd_callout.as_deref().map_or("-".into(), escape),
            u8::from(self.statd_callout_ours),
            u8::from(self.rpcbind_running),
            self.statd_spool_problem
                .as_deref()
                .map_or("-".into(), escape)
        )
        .into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Option<ScriptFacts> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.lines();
        if lines.next()? != "v1" {
            return None;
        }
        let mut s = ScriptFacts::default();
        for l in lines {
            let (k, v) = l.split_once(' ').unwrap_or((l, ""));
            match k {
                "version" => s.version = unescape(v)?,
                "exe" => s.exe = unescape(v)?,
                "at" => s.at = v.parse().ok()?,
                "statd" => s.statd_running = v == "1",
                "callout" => s.statd_callout = if v == "-" { None } else { Some(unescape(v)?) },
                "callout_ours" => s.statd_callout_ours = v == "1",
                "rpcbind" => s.rpcbind_running = v == "1",
                "spool" => s.statd_spool_problem = if v == "-" { None } else { Some(unescape(v)?) },
                _ => {}
            }
        }
        Some(s)
    }

    /// Looks at this node: the running binary, rpc.statd and rpcbind in this network
    /// namespace (/proc, same `ns/net` as this process), and whether statd's user can
    /// write `spool`.
    pub fn gather(spool: &Path) -> ScriptFacts {
        let exe = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let statd = processes_here("rpc.statd").into_iter().next();
        let callout = statd.as_ref().and_then(|args| {
            let mut it = args.iter();
            while let Some(a) = it.next() {
                if a == "-H" || a == "--ha-callout" {
                    return it.next().cloned();
                }
                if let Some(p) = a.strip_prefix("--ha-callout=") {
                    return Some(p.to_string());
                }
            }
            nfs_conf_ha_callout(Path::new("/etc/nfs.conf"))
        });
        let ours = callout.as_deref().is_some_and(|p| {
            std::fs::read(p)
                .map(|b| {
                    let t = String::from_utf8_lossy(&b);
                    t.contains("ganesha-ctdb") && t.contains("statd-callout")
                })
                .unwrap_or(false)
        });
        ScriptFacts {
            version: VERSION.into(),
            exe,
            at: crate::progress::unix_now(),
            statd_running: statd.is_some(),
            statd_callout: callout,
            statd_callout_ours: ours,
            rpcbind_running: !processes_here("rpcbind").is_empty(),
            statd_spool_problem: statd
                .is_some()
                .then(|| spool_problem(spool, crate::statd_spool::statd_owner(Path::new("/etc"))))
                .flatten(),
        }
    }
}

/// Why rpc.statd, running as `owner` (None: root), cannot create entries in `spool`.
fn spool_problem(spool: &Path, owner: Option<(u32, u32)>) -> Option<String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let (uid, gid) = owner?;
    let parent = spool.parent()?;
    let through = |m: &std::fs::Metadata| {
        let mode = m.permissions().mode();
        (m.uid() == uid && mode & 0o100 != 0)
            || (m.gid() == gid && mode & 0o010 != 0)
            || mode & 0o001 != 0
    };
    match std::fs::metadata(parent) {
        Ok(m) if !through(&m) => {
            return Some(format!(
                "rpc.statd runs as uid {uid} and cannot get through {} (mode {:o}): its \
                 callout cannot spool NLM hosts",
                parent.display(),
                m.permissions().mode() & 0o7777
            ))
        }
        Err(e) => return Some(format!("{}: {e}", parent.display())),
        Ok(_) => {}
    }
    let m = match std::fs::metadata(spool) {
        Ok(m) => m,
        Err(_) => {
            return Some(format!(
                "{} does not exist: rpc.statd (uid {uid}) cannot spool NLM hosts until \
                 nfs-ganesha (or `monitor`) creates it",
                spool.display()
            ))
        }
    };
    let mode = m.permissions().mode();
    let writes = (m.uid() == uid && mode & 0o300 == 0o300)
        || (m.gid() == gid && mode & 0o030 == 0o030)
        || mode & 0o003 == 0o003;
    (!writes).then(|| {
        format!(
            "rpc.statd runs as uid {uid} and cannot write {} (owner {}:{}, mode {:o}): its \
             callout cannot spool NLM hosts",
            spool.display(),
            m.uid(),
            m.gid(),
            mode & 0o7777
        )
    })
}

/// `[statd] ha-callout = PATH` in nfs.conf (nfs-utils' INI syntax; nfs.conf.d is not read).
fn nfs_conf_ha_callout(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut in_statd = false;
    let mut found = None;
    for l in text.lines() {
        let l = l.trim();
        if l.starts_with('[') {
            in_statd = l.eq_ignore_ascii_case("[statd]");
        } else if in_statd {
            if let Some((k, v)) = l.split_once('=') {
                if k.trim().eq_ignore_ascii_case("ha-callout") {
                    found = Some(v.trim().to_string());
                }
            }
        }
    }
    found
}

/// The argument vectors of the processes named `comm` in this process's network
/// namespace.
fn processes_here(comm: &str) -> Vec<Vec<String>> {
    let me = std::fs::read_link("/proc/self/ns/net").ok();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let p = e.path();
        let is_pid = e
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit());
        if !is_pid {
            continue;
        }
        let name = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        if name.trim_end() != comm || std::fs::read_link(p.join("ns/net")).ok() != me {
            continue;
        }
        let args = std::fs::read(p.join("cmdline"))
            .map(|b| {
                b.split(|c| *c == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        out.push(args);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> NodeFacts {
        NodeFacts {
            version: "0.1.0".into(),
            library: "/usr/lib/ganesha-ctdb/libganesha_ctdb_recov.so".into(),
            ganesha: "4.3".into(),
            pid: 42,
            started: 1_800_000_000,
            config_path: "/etc/ganesha/ganesha.conf".into(),
            recovery: "Store = ctdb, Recovery_DB = a.tdb".into(),
            grace_period: Some(90),
            lease_lifetime: None,
            enable_nlm: true,
            exports: vec![
                ExportFacts {
                    id: "1".into(),
                    path: "/srv/with space".into(),
                    pseudo: "/x".into(),
                    filesystem_id: Some("100.1".into()),
                    fsid: Some(0xdead),
                },
                ExportFacts {
                    id: "2".into(),
                    path: "/srv/b".into(),
                    pseudo: String::new(),
                    filesystem_id: None,
                    fsid: None,
                },
            ],
            problems: vec!["export path \"/srv/b\": ENOENT".into()],
        }
    }

    /// statd's user (as Debian runs it) must get through Dir and write the spool.
    #[test]
    fn a_spool_statds_user_cannot_write_is_named() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("store");
        let spool = dir.join("statd-spool");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        assert_eq!(spool_problem(&spool, None), None, "statd runs as root");
        let p = spool_problem(&spool, Some((103, 65534))).unwrap();
        assert!(p.contains("cannot get through") && p.contains("750"), "{p}");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o751)).unwrap();
        let p = spool_problem(&spool, Some((103, 65534))).unwrap();
        assert!(p.contains("does not exist"), "{p}");
        crate::statd_spool::ensure_dir(&spool, Some((103, 65534))).unwrap();
        assert_eq!(spool_problem(&spool, Some((103, 65534))), None);
        std::os::unix::fs::chown(&spool, Some(0), Some(0)).unwrap();
        let p = spool_problem(&spool, Some((103, 65534))).unwrap();
        assert!(p.contains("cannot write") && p.contains("owner 0:0"), "{p}");
    }

    #[test]
    fn node_facts_read_back_as_written() {
        assert_eq!(NodeFacts::decode(&sample().encode()), Some(sample()));
        let s = ScriptFacts {
            version: "0.1.0".into(),
            exe: "/usr/sbin/ganesha-ctdb".into(),
            at: 5,
            statd_running: true,
            statd_callout: Some("/usr/libexec/ganesha-ctdb/statd-callout".into()),
            statd_callout_ours: true,
            rpcbind_running: false,
            statd_spool_problem: Some("rpc.statd runs as uid 103 and cannot write x".into()),
        };
        assert_eq!(ScriptFacts::decode(&s.encode()), Some(s.clone()));
        let none = ScriptFacts {
            statd_spool_problem: None,
            ..s
        };
        assert_eq!(ScriptFacts::decode(&none.encode()), Some(none));
        assert_eq!(NodeFacts::decode(b"v1\nexport 1 2\n"), None);
        assert_eq!(NodeFacts::decode(b"v1\npid x\n"), None);
    }

    #[test]
    fn the_configuration_ganesha_reads_is_what_is_published() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("ganesha.conf");
        let export = dir.path().join("export");
        std::fs::create_dir(&export).unwrap();
        std::fs::write(
            &conf,
            format!(
                "NFS_CORE_PARAM {{ Enable_NLM = false; }}\nNFSV4 {{ Grace_Period = 40; }}\n\
                 EXPORT {{ Export_Id = 7; Path = {}; Pseudo = /e; FSAL {{ Name = VFS; }} }}\n\
                 EXPORT {{ Export_Id = 8; Path = /nonexistent/x; Filesystem_id = 9.9; }}\n",
                export.display()
            ),
        )
        .unwrap();
        let f = NodeFacts::gather(&conf, "Store = dir".into(), "4.3", "lib.so".into());
        assert_eq!(
            (f.grace_period, f.lease_lifetime, f.enable_nlm),
            (Some(40), Some(60), false)
        );
        assert_eq!(f.exports.len(), 2);
        assert!(f.exports[0].fsid.is_some() && f.exports[0].filesystem_id.is_none());
        assert_eq!(f.exports[1].identity(), "Filesystem_id 9.9");
        assert_eq!(f.problems.len(), 1, "{:?}", f.problems);
        assert_eq!(NodeFacts::decode(&f.encode()), Some(f));
    }

    #[test]
    fn this_process_is_found_by_its_network_namespace_and_name() {
        let me = std::fs::read_to_string("/proc/self/comm").unwrap();
        assert!(!processes_here(me.trim_end()).is_empty());
        assert!(processes_here("no-such-process-name").is_empty());
        let addr = this_process_is_found_by_its_network_namespace_and_name as *const () as usize;
        assert!(file_mapped_at(addr).is_some_and(|p| p.contains("ganesha_ctdb")));
    }

    proptest! {
        #![proptest_config(crate::fuzzing::config("facts"))]
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = NodeFacts::decode(&bytes);
            let _ = ScriptFacts::decode(&bytes);
        }
    }
}
