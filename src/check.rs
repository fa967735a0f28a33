//! `ganesha-ctdb check`: the pre-flight an operator runs on one node for the whole cluster.
//! Pure: the tool gathers what the nodes published (src/facts.rs) and what it sees
//! locally, this module names every problem with what to do about it.
//!
//! What must agree between nodes, and why: a client whose IP moves meets the taker's
//! Grace_Period and Lease_Lifetime (a shorter grace ends its reclaim early), the taker's
//! CTDB_RECOVERY (another database: no record, no reclaim), the taker's exports with the
//! same filesystem identity (file handles carry the fsid: another one is ESTALE), and NLM
//! on both or neither (its locks and SM_NOTIFY otherwise go nowhere).

use crate::facts::{NodeFacts, ScriptFacts};
use std::collections::{BTreeMap, BTreeSet};

/// A `script@` record older than this: the event script no longer runs `monitor` there
/// (it republishes every minute; CTDB monitors every 15 s).
pub const SCRIPT_FACTS_STALE: u64 = 180;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// A node, or "cluster" for a disagreement between nodes.
    pub node: String,
    pub what: String,
    pub fix: String,
}

/// What the tool sees on the node it runs on.
#[derive(Clone, Debug, Default)]
pub struct Local {
    pub node: String,
    /// Ganesha's pid from this node's facts runs, is ganesha.nfsd, maps the library.
    pub ganesha: Option<Result<(), String>>,
    /// The event script in CTDB's legacy directory: None when fine, else why not.
    pub event_script: Option<String>,
}

pub struct Inputs<'a> {
    /// A CTDB cluster (the event script, statd and the databases are checked); false for
    /// a standalone node on the dir store.
    pub cluster: bool,
    pub live: &'a BTreeSet<String>,
    pub facts: &'a BTreeMap<String, NodeFacts>,
    pub scripts: &'a BTreeMap<String, ScriptFacts>,
    /// Per live node: the persistent databases attached (Err: could not ask).
    pub dbs: &'a BTreeMap<String, Result<BTreeSet<String>, String>>,
    pub wanted_dbs: &'a [String],
    pub local: &'a Local,
    pub tool_version: &'a str,
    pub now: u64,
}

fn problem(node: &str, what: String, fix: &str) -> Problem {
    Problem {
        node: node.to_string(),
        what,
        fix: fix.to_string(),
    }
}

/// "node 0 and 2: 90; node 1: 40" for a setting that differs.
fn spread<V: Ord + Clone + std::fmt::Display>(values: &BTreeMap<String, V>) -> Option<String> {
    let mut by_value: BTreeMap<V, Vec<&str>> = BTreeMap::new();
    for (n, v) in values {
        by_value.entry(v.clone()).or_default().push(n);
    }
    (by_value.len() > 1).then(|| {
        by_value
            .iter()
            .map(|(v, nodes)| {
                format!(
                    "node{} {}: {v}",
                    if nodes.len() > 1 { "s" } else { "" },
                    nodes.join(", ")
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    })
}

pub fn problems(i: &Inputs) -> Vec<Problem> {
    let mut out = Vec::new();
    let present: BTreeMap<&String, &NodeFacts> = i
        .live
        .iter()
        .filter_map(|n| i.facts.get(n).map(|f| (n, f)))
        .collect();
    for n in i.live {
        let Some(f) = i.facts.get(n) else {
            out.push(problem(
                n,
                "no Ganesha with this backend has started here (no node@ record)".into(),
                if i.cluster {
                    "set NFSV4 { RecoveryBackend = rados_cluster; } and CTDB_RECOVERY { Store = \
                     ctdb; } in ganesha.conf (docs/operations.md) and start nfs-ganesha"
                } else {
                    "set NFSV4 { RecoveryBackend = rados_cluster; } in ganesha.conf \
                     (docs/operations.md) and start nfs-ganesha"
                },
            ));
            continue;
        };
        if f.version != i.tool_version {
            out.push(problem(
                n,
                format!(
                    "Ganesha runs ganesha-ctdb library {} ({}), this tool is {}",
                    f.version, f.library, i.tool_version
                ),
                "install the same ganesha-ctdb package on every node and restart nfs-ganesha",
            ));
        }
        for p in &f.problems {
            out.push(problem(
                n,
                p.clone(),
                "fix ganesha.conf or the export's path",
            ));
        }
        if let (Some(g), Some(l)) = (f.grace_period, f.lease_lifetime) {
            if g < l {
                out.push(problem(
                    n,
                    format!("Grace_Period ({g} s) is shorter than Lease_Lifetime ({l} s)"),
                    "set NFSV4 { Grace_Period } at least Lease_Lifetime: clients may not \
                     notice a restart before grace ends",
                ));
            }
        }
        match i.scripts.get(n).filter(|_| i.cluster) {
            None if !i.cluster => {}
            None => out.push(problem(
                n,
                "the CTDB event script has not run here (no script@ record)".into(),
                "install 60.ganesha-ctdb.script and `ctdb event script enable legacy \
                 60.ganesha-ctdb` on this node",
            )),
            Some(s) => {
                let age = i.now.saturating_sub(s.at);
                if age > SCRIPT_FACTS_STALE {
                    out.push(problem(
                        n,
                        format!("the CTDB event script last ran `monitor` {age} s ago"),
                        "enable it (`ctdb event script enable legacy 60.ganesha-ctdb`) and \
                         check `ctdb event status legacy monitor` on this node",
                    ));
                }
                if s.version != i.tool_version {
                    out.push(problem(
                        n,
                        format!(
                            "the event script runs ganesha-ctdb {} ({}), this tool is {}",
                            s.version, s.exe, i.tool_version
                        ),
                        "install the same ganesha-ctdb package on every node",
                    ));
                }
                if f.enable_nlm {
                    if !s.rpcbind_running {
                        out.push(problem(
                            n,
                            "NLM is on but rpcbind does not run".into(),
                            "start rpcbind (NLM clients find Ganesha's NLM and statd through it)",
                        ));
                    }
                    if !s.statd_running {
                        out.push(problem(
                            n,
                            "NLM is on but rpc.statd does not run".into(),
                            "start rpc-statd with ganesha-ctdb's callout (nfs.conf.d example)",
                        ));
                    } else if let Some(p) = &s.statd_spool_problem {
                        out.push(problem(
                            n,
                            p.clone(),
                            "nfs-ganesha creates the spool for statd's user when it starts; \
                             the store directory must let that user through (chmod o+x, the \
                             package's 0751)",
                        ));
                    }
                    if s.statd_running && !s.statd_callout_ours {
                        out.push(problem(
                            n,
                            format!(
                                "rpc.statd's ha-callout is {}: NLM clients are not recorded \
                                 for takeovers",
                                s.statd_callout.as_deref().unwrap_or("not set")
                            ),
                            "set [statd] ha-callout = /usr/libexec/ganesha-ctdb/statd-callout \
                             in nfs.conf and restart rpc-statd",
                        ));
                    }
                }
            }
        }
        match i.dbs.get(n) {
            Some(Ok(attached)) => {
                for db in i.wanted_dbs {
                    if !attached.contains(db) {
                        out.push(problem(
                            n,
                            format!("database {db} is not attached"),
                            "start nfs-ganesha here (it attaches the databases) or `ctdb \
                             attach <db> persistent`",
                        ));
                    }
                }
            }
            Some(Err(e)) => out.push(problem(
                n,
                format!("cannot list its databases: {e}"),
                "check that ctdbd runs and answers on this node",
            )),
            None => {}
        }
    }
    if let Some(Err(e)) = &i.local.ganesha {
        out.push(problem(
            &i.local.node,
            e.clone(),
            "start nfs-ganesha (`systemctl start nfs-ganesha`)",
        ));
    }
    if let Some(e) = &i.local.event_script {
        out.push(problem(
            &i.local.node,
            e.clone(),
            "`ctdb event script enable legacy 60.ganesha-ctdb`",
        ));
    }
    let per = |get: &dyn Fn(&NodeFacts) -> String| -> BTreeMap<String, String> {
        present
            .iter()
            .map(|(n, f)| ((*n).clone(), get(f)))
            .collect()
    };
    let opt = |v: Option<u32>| v.map_or("unknown".to_string(), |v| format!("{v} s"));
    let compared: [(&str, BTreeMap<String, String>, &str); 4] = [
        (
            "Grace_Period",
            per(&|f| opt(f.grace_period)),
            "set the same NFSV4 { Grace_Period } on every node",
        ),
        (
            "Lease_Lifetime",
            per(&|f| opt(f.lease_lifetime)),
            "set the same NFSV4 { Lease_Lifetime } on every node",
        ),
        (
            "CTDB_RECOVERY",
            per(&|f| f.recovery.clone()),
            "give every node the same CTDB_RECOVERY block",
        ),
        (
            "Enable_NLM",
            per(&|f| f.enable_nlm.to_string()),
            "set the same NFS_CORE_PARAM { Enable_NLM } on every node",
        ),
    ];
    for (what, values, fix) in compared {
        if let Some(s) = spread(&values) {
            out.push(problem("cluster", format!("{what} differs: {s}"), fix));
        }
    }
    // Exports by Export_Id: on every node, with the same path, pseudo path and filesystem.
    let mut ids: BTreeSet<&String> = BTreeSet::new();
    for f in present.values() {
        ids.extend(f.exports.iter().map(|e| &e.id));
    }
    for id in ids {
        let mut missing = Vec::new();
        let mut identity = BTreeMap::new();
        let mut pseudo = BTreeMap::new();
        for (n, f) in &present {
            match f.exports.iter().find(|e| &e.id == id) {
                Some(e) => {
                    identity.insert((*n).clone(), e.identity());
                    pseudo.insert((*n).clone(), format!("{} at {}", e.pseudo, e.path));
                }
                None => missing.push(n.as_str()),
            }
        }
        if !missing.is_empty() {
            out.push(problem(
                "cluster",
                format!("export {id} is missing on node(s) {}", missing.join(", ")),
                "export the same paths on every node: an IP's clients move with it",
            ));
        }
        if let Some(s) = spread(&identity) {
            out.push(problem(
                "cluster",
                format!("export {id}: the filesystem identity differs ({s}); clients of an IP that moves get ESTALE"),
                "set the same Filesystem_id in this EXPORT block on every node, or export the \
                 same cluster filesystem",
            ));
        }
        if let Some(s) = spread(&pseudo) {
            out.push(problem(
                "cluster",
                format!("export {id} differs: {s}"),
                "give the EXPORT block the same Path and Pseudo on every node",
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::ExportFacts;

    fn facts() -> NodeFacts {
        NodeFacts {
            version: "1.0".into(),
            library: "/lib.so".into(),
            ganesha: "4.3".into(),
            pid: 1,
            started: 0,
            config_path: "/etc/ganesha/ganesha.conf".into(),
            recovery: "Store = ctdb".into(),
            grace_period: Some(90),
            lease_lifetime: Some(60),
            enable_nlm: true,
            exports: vec![ExportFacts {
                id: "1".into(),
                path: "/srv".into(),
                pseudo: "/srv".into(),
                filesystem_id: None,
                fsid: Some(7),
            }],
            problems: vec![],
        }
    }

    fn script() -> ScriptFacts {
        ScriptFacts {
            version: "1.0".into(),
            exe: "/usr/sbin/ganesha-ctdb".into(),
            at: 1000,
            statd_running: true,
            statd_callout: Some("/callout".into()),
            statd_callout_ours: true,
            rpcbind_running: true,
            statd_spool_problem: None,
        }
    }

    struct World {
        live: BTreeSet<String>,
        facts: BTreeMap<String, NodeFacts>,
        scripts: BTreeMap<String, ScriptFacts>,
        dbs: BTreeMap<String, Result<BTreeSet<String>, String>>,
        local: Local,
    }

    fn good() -> World {
        let nodes = ["0", "1", "2"].map(String::from);
        World {
            live: nodes.iter().cloned().collect(),
            facts: nodes.iter().map(|n| (n.clone(), facts())).collect(),
            scripts: nodes.iter().map(|n| (n.clone(), script())).collect(),
            dbs: nodes
                .iter()
                .map(|n| {
                    (
                        n.clone(),
                        Ok(["r.tdb".to_string(), "g.tdb".to_string()].into()),
                    )
                })
                .collect(),
            local: Local {
                node: "0".into(),
                ganesha: Some(Ok(())),
                event_script: None,
            },
        }
    }

    fn check(w: &World) -> Vec<Problem> {
        problems(&Inputs {
            cluster: true,
            live: &w.live,
            facts: &w.facts,
            scripts: &w.scripts,
            dbs: &w.dbs,
            wanted_dbs: &["r.tdb".to_string(), "g.tdb".to_string()],
            local: &w.local,
            tool_version: "1.0",
            now: 1060,
        })
    }

    #[test]
    fn a_consistent_cluster_has_no_problem() {
        assert_eq!(check(&good()), vec![]);
    }

    #[test]
    fn each_broken_setting_is_one_line_naming_the_nodes() {
        let mut w = good();
        w.facts.get_mut("1").unwrap().grace_period = Some(120);
        w.facts.get_mut("2").unwrap().exports[0].filesystem_id = Some("9.9".into());
        w.facts.get_mut("2").unwrap().version = "0.9".into();
        w.scripts.get_mut("1").unwrap().at = 100; // stale
        w.local.event_script = Some("60.ganesha-ctdb.script is not enabled".into());
        w.dbs.insert("2".into(), Ok(["r.tdb".to_string()].into()));
        let p = check(&w);
        let text: Vec<String> = p
            .iter()
            .map(|p| format!("{}: {}", p.node, p.what))
            .collect();
        assert_eq!(p.len(), 6, "{text:#?}");
        let has = |s: &str| text.iter().any(|t| t.contains(s));
        assert!(
            has("cluster: Grace_Period differs: node 1: 120 s; nodes 0, 2: 90 s"),
            "{text:#?}"
        );
        assert!(has("export 1: the filesystem identity differs (node 2: Filesystem_id 9.9; nodes 0, 1: fsid 0x7)"), "{text:#?}");
        assert!(has("2: Ganesha runs ganesha-ctdb library 0.9"), "{text:#?}");
        assert!(
            has("1: the CTDB event script last ran `monitor` 960 s ago"),
            "{text:#?}"
        );
        assert!(has("0: 60.ganesha-ctdb.script is not enabled"), "{text:#?}");
        assert!(has("2: database g.tdb is not attached"), "{text:#?}");
    }

    #[test]
    fn missing_records_nlm_without_statd_and_a_short_grace_are_named() {
        let mut w = good();
        w.facts.remove("2");
        w.scripts.remove("1");
        w.scripts.get_mut("0").unwrap().statd_callout_ours = false;
        w.scripts.get_mut("0").unwrap().statd_spool_problem =
            Some("rpc.statd runs as uid 103 and cannot write /var/lib/x".into());
        w.facts.get_mut("0").unwrap().grace_period = Some(30);
        w.facts.get_mut("1").unwrap().grace_period = Some(30);
        let p = check(&w);
        let text: Vec<String> = p
            .iter()
            .map(|p| format!("{}: {}", p.node, p.what))
            .collect();
        let has = |s: &str| text.iter().any(|t| t.contains(s));
        assert!(
            has("2: no Ganesha with this backend has started here"),
            "{text:#?}"
        );
        assert!(
            has("1: the CTDB event script has not run here"),
            "{text:#?}"
        );
        assert!(has("0: rpc.statd's ha-callout is /callout"), "{text:#?}");
        assert!(
            has("0: rpc.statd runs as uid 103 and cannot write /var/lib/x"),
            "{text:#?}"
        );
        assert!(
            has("0: Grace_Period (30 s) is shorter than Lease_Lifetime (60 s)"),
            "{text:#?}"
        );
        assert_eq!(p.len(), 6, "{text:#?}");
        // A node not live in CTDB is not checked.
        let mut w = good();
        w.live.remove("2");
        w.facts.get_mut("2").unwrap().grace_period = Some(1);
        assert_eq!(check(&w), vec![]);
    }
}
