//! `ganesha-ctdb status`: why the cluster is in grace, on one screen. Pure: the tool reads
//! the grace records, CTDB's membership and public IPs, every node's published progress
//! (src/progress.rs) and the client records, and this module decides what to say.
//!
//! Which offered clients are back comes from the client records: a reclaim rewrites the
//! record with the grace period's stamp; a record that is gone was destroyed or expired
//! (it no longer needs its reclaim).

use crate::grace;
use crate::progress::{NlmProgress, Progress};
use crate::records::{parse_v4_key, GraceRecord, ServerIp};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// What the tool read.
pub struct Inputs<'a> {
    pub grace: &'a BTreeMap<String, GraceRecord>,
    pub live: &'a BTreeSet<String>,
    pub progress: &'a BTreeMap<String, Progress>,
    /// Client record key → stamp of every readable record.
    pub stamps: &'a BTreeMap<String, String>,
    /// Public IP → holder ("-" for none); empty without CTDB.
    pub holders: &'a BTreeMap<String, String>,
    /// NFSv4 and NLM clients recorded per server IP.
    pub v4: &'a BTreeMap<String, usize>,
    pub nlm: &'a BTreeMap<String, usize>,
    /// Unix seconds.
    pub now: u64,
}

/// One node's reclaim of one server IP's clients (or `local`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reclaim {
    pub node: String,
    pub expected: usize,
    pub back: usize,
    /// Offered records no longer stored: the client was destroyed or expired.
    pub gone: usize,
    /// Recovery tags of the clients still missing.
    pub missing: Vec<String>,
    pub nlm: Option<NlmProgress>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpRow {
    pub ip: String,
    pub holder: String,
    pub v4: usize,
    pub nlm: usize,
    pub reclaim: Option<Reclaim>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRow {
    pub node: String,
    /// What keeps this node (and with it the cluster) in grace, or what it waits for.
    pub waits_for: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub in_grace: bool,
    pub epoch: Option<u64>,
    pub verdict: String,
    pub nodes: Vec<NodeRow>,
    pub ips: Vec<IpRow>,
}

fn secs(n: u64) -> String {
    format!("{n} s")
}

/// A node's reclaims, by server IP, from its progress and the client records.
fn reclaims_of(
    node: &str,
    p: &Progress,
    stamps: &BTreeMap<String, String>,
) -> Vec<(String, Reclaim)> {
    let mut by_ip: BTreeMap<String, Reclaim> = BTreeMap::new();
    for ip in &p.scope {
        by_ip.entry(ip.clone()).or_default();
    }
    for key in &p.offered {
        let Some((ip, tag)) = parse_v4_key(key) else {
            continue;
        };
        let ip = match ip {
            ServerIp::Ip(a) => a.to_string(),
            ServerIp::Local => "local".into(),
        };
        let r = by_ip.entry(ip).or_default();
        r.expected += 1;
        match stamps.get(key) {
            Some(s) if *s == p.stamp => r.back += 1,
            Some(_) => r.missing.push(tag.to_string()),
            None => r.gone += 1,
        }
    }
    for (ip, n) in &p.nlm {
        by_ip.entry(ip.clone()).or_default().nlm = Some(n.clone());
    }
    by_ip
        .into_iter()
        .map(|(ip, mut r)| {
            r.node = node.to_string();
            (ip, r)
        })
        .collect()
}

/// "3 of 5 clients back" over a node's reclaims (the offered keys the node did not list
/// count as missing: the tool cannot tell).
fn back_summary(p: &Progress, reclaims: &[(String, Reclaim)]) -> String {
    let back: usize = reclaims.iter().map(|(_, r)| r.back + r.gone).sum();
    let total = p
        .offered_total
        .max(reclaims.iter().map(|(_, r)| r.expected).sum());
    format!("{back} of {total} client(s) back")
}

fn time_left(p: &Progress, now: u64) -> String {
    if p.ends == 0 {
        "until its clients are back or Ganesha's Grace_Period runs out".into()
    } else {
        format!("for {} more at most", secs(p.ends.saturating_sub(now)))
    }
}

pub fn build(i: &Inputs) -> Status {
    let view = crate::grace_admin::view(i.grace, i.live);
    let in_grace = grace::cluster_in_grace(&view);
    let epoch = grace::grace_epoch(&view);
    let mut reclaim_by_ip: BTreeMap<String, Reclaim> = BTreeMap::new();
    let mut reasons = Vec::new();
    let mut nodes = Vec::new();
    let mut all: BTreeSet<&String> = i.grace.keys().collect();
    all.extend(i.live.iter());
    let needing: Vec<String> = view
        .live_records()
        .filter(|(_, r)| r.need_grace)
        .map(|(n, _)| n.clone())
        .collect();
    for n in all {
        let r = i.grace.get(n).cloned().unwrap_or_default();
        let live = i.live.contains(n);
        let p = i.progress.get(n).filter(|p| p.epoch == r.epoch);
        let mut why = Vec::new();
        if let Some(p) = p {
            if !p.waiting_for.is_empty() {
                why.push(format!(
                    "waits for node(s) {} to enforce grace before its Ganesha listens{}",
                    p.waiting_for.join(", "),
                    if p.waiting_since > 0 {
                        format!(" ({} so far)", secs(i.now.saturating_sub(p.waiting_since)))
                    } else {
                        String::new()
                    }
                ));
            }
        }
        if r.recovering {
            match p.filter(|p| p.in_grace) {
                Some(p) => {
                    let reclaims = reclaims_of(n, p, i.stamps);
                    let ips: Vec<&str> = reclaims.iter().map(|(ip, _)| ip.as_str()).collect();
                    let text = format!(
                        "reclaims {} {}, {}",
                        if ips.is_empty() {
                            "its clients".to_string()
                        } else {
                            ips.join(", ")
                        },
                        time_left(p, i.now),
                        back_summary(p, &reclaims)
                    );
                    if live {
                        reasons.push(format!("node {n} {text}"));
                    }
                    why.push(text);
                    for (ip, rc) in reclaims {
                        reclaim_by_ip.insert(ip, rc);
                    }
                }
                None => {
                    let text = "its clients reclaim (no progress published yet)".to_string();
                    if live {
                        reasons.push(format!("node {n}: {text}"));
                    }
                    why.push(text);
                }
            }
        }
        if r.held {
            let since = p.map_or(0, |p| p.held_since);
            let text = format!(
                "holds the cluster in grace for a CTDB takeover run{}",
                if since > 0 {
                    format!(" ({} so far)", secs(i.now.saturating_sub(since)))
                } else {
                    String::new()
                }
            );
            if live {
                reasons.push(format!("node {n} {text}"));
            }
            why.push(text);
        }
        if r.cluster.need_grace && !r.recovering && !r.held {
            why.push(
                "needs the cluster in grace (Ganesha not running here: its exit marker)".into(),
            );
            if live {
                reasons.push(format!(
                    "node {n} holds the cluster in grace: its Ganesha is not running"
                ));
            }
        }
        if !live && r.cluster.need_grace {
            why.push("not live in CTDB: its need is ignored".into());
        }
        if why.is_empty() && r.cluster.enforcing && live {
            let others: Vec<&str> = needing
                .iter()
                .filter(|m| *m != n)
                .map(String::as_str)
                .collect();
            why.push(if others.is_empty() {
                "enforces grace, lifting".into()
            } else {
                format!("in grace for node(s) {}", others.join(", "))
            });
        }
        nodes.push(NodeRow {
            node: n.clone(),
            waits_for: if why.is_empty() {
                "-".into()
            } else {
                why.join("; ")
            },
        });
    }
    let mut ips: BTreeMap<String, IpRow> = BTreeMap::new();
    let keys: BTreeSet<&String> = i
        .holders
        .keys()
        .chain(i.v4.keys())
        .chain(i.nlm.keys())
        .chain(reclaim_by_ip.keys().filter(|k| *k != "local"))
        .collect();
    for ip in keys {
        ips.insert(
            ip.clone(),
            IpRow {
                ip: ip.clone(),
                holder: i.holders.get(ip).cloned().unwrap_or_else(|| "-".into()),
                v4: i.v4.get(ip).copied().unwrap_or(0),
                nlm: i.nlm.get(ip).copied().unwrap_or(0),
                reclaim: reclaim_by_ip.get(ip).cloned(),
            },
        );
    }
    if let Some(local) = reclaim_by_ip.get("local").filter(|r| r.expected > 0) {
        ips.insert(
            "local".into(),
            IpRow {
                ip: "local".into(),
                holder: local.node.clone(),
                v4: i.v4.get("local").copied().unwrap_or(0),
                nlm: 0,
                reclaim: Some(local.clone()),
            },
        );
    }
    let verdict = if in_grace {
        format!(
            "in grace{}: {}",
            epoch.map(|e| format!(" (epoch {e})")).unwrap_or_default(),
            if reasons.is_empty() {
                "a live node needs it".to_string()
            } else {
                reasons.join("; ")
            }
        )
    } else {
        let waiting: Vec<String> = i
            .progress
            .iter()
            .filter(|(_, p)| !p.waiting_for.is_empty())
            .map(|(n, p)| {
                format!(
                    "node {n} waits for node(s) {} to enforce grace",
                    p.waiting_for.join(", ")
                )
            })
            .collect();
        if waiting.is_empty() {
            "not in grace".into()
        } else {
            format!("not in grace; {}", waiting.join("; "))
        }
    };
    Status {
        in_grace,
        epoch,
        verdict,
        nodes,
        ips: ips.into_values().collect(),
    }
}

/// The human form: verdict, then what each node waits for, then the IP table with each
/// reclaim's progress under its IP.
pub fn render(s: &Status) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{}", s.verdict);
    let _ = writeln!(o);
    for n in &s.nodes {
        let _ = writeln!(o, "node {:<4} {}", n.node, n.waits_for);
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{:<40} {:<6} {:>10} {:>11}",
        "public IP", "holder", "v4 clients", "NLM clients"
    );
    for r in &s.ips {
        let _ = writeln!(o, "{:<40} {:<6} {:>10} {:>11}", r.ip, r.holder, r.v4, r.nlm);
        if let Some(rc) = &r.reclaim {
            let _ = writeln!(
                o,
                "    reclaiming on node {}: {} expected, {} back, {} missing{}",
                rc.node,
                rc.expected,
                rc.back + rc.gone,
                rc.missing.len(),
                if rc.gone > 0 {
                    format!(" ({} of those back no longer exist)", rc.gone)
                } else {
                    String::new()
                }
            );
            for m in rc.missing.iter().take(20) {
                let _ = writeln!(o, "      missing: {m}");
            }
            if rc.missing.len() > 20 {
                let _ = writeln!(o, "      ... and {} more", rc.missing.len() - 20);
            }
            if let Some(n) = &rc.nlm {
                let _ = writeln!(o, "    NLM: {}", nlm_text(n));
            }
        }
    }
    o
}

fn nlm_text(n: &NlmProgress) -> String {
    if let Some(e) = &n.error {
        return format!("SM_NOTIFY failed: {e}");
    }
    if !n.done {
        return "sending SM_NOTIFY".into();
    }
    if n.silent.is_empty() {
        format!("{} client(s) notified, all answered", n.notified)
    } else {
        format!(
            "{} client(s) notified; no answer from {}",
            n.notified,
            n.silent.join(", ")
        )
    }
}

/// The -X form: '|'-separated tables with a header row each, like `ctdb -X`.
pub fn render_machine(s: &Status) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "|InGrace|Epoch|Verdict|");
    let _ = writeln!(
        o,
        "|{}|{}|{}|",
        u8::from(s.in_grace),
        s.epoch.map(|e| e.to_string()).unwrap_or_default(),
        s.verdict.replace('|', "/")
    );
    let _ = writeln!(o, "|Node|WaitsFor|");
    for n in &s.nodes {
        let _ = writeln!(o, "|{}|{}|", n.node, n.waits_for.replace('|', "/"));
    }
    let _ = writeln!(
        o,
        "|PublicIP|Holder|V4Clients|NLMClients|ReclaimNode|Expected|Back|Missing|NLMNotified|NLMSilent|"
    );
    for r in &s.ips {
        let (node, exp, back, miss, notified, silent) = match &r.reclaim {
            Some(rc) => (
                rc.node.clone(),
                rc.expected.to_string(),
                (rc.back + rc.gone).to_string(),
                rc.missing.len().to_string(),
                rc.nlm
                    .as_ref()
                    .map_or(String::new(), |n| n.notified.to_string()),
                rc.nlm
                    .as_ref()
                    .map_or(String::new(), |n| n.silent.len().to_string()),
            ),
            None => Default::default(),
        };
        let _ = writeln!(
            o,
            "|{}|{}|{}|{}|{node}|{exp}|{back}|{miss}|{notified}|{silent}|",
            r.ip, r.holder, r.v4, r.nlm
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grace::NodeGrace;

    fn rec(recovering: bool, held: bool, need: bool, enforcing: bool) -> GraceRecord {
        GraceRecord {
            epoch: 3,
            recovering,
            held,
            cluster: NodeGrace {
                epoch: 5,
                need_grace: need,
                enforcing,
            },
        }
    }

    struct World {
        grace: BTreeMap<String, GraceRecord>,
        live: BTreeSet<String>,
        progress: BTreeMap<String, Progress>,
        stamps: BTreeMap<String, String>,
        holders: BTreeMap<String, String>,
        v4: BTreeMap<String, usize>,
        nlm: BTreeMap<String, usize>,
    }

    impl World {
        fn status(&self, now: u64) -> Status {
            build(&Inputs {
                grace: &self.grace,
                live: &self.live,
                progress: &self.progress,
                stamps: &self.stamps,
                holders: &self.holders,
                v4: &self.v4,
                nlm: &self.nlm,
                now,
            })
        }
    }

    /// Node 1 took 10.0.0.1 over with 3 clients offered: one back, one missing, one gone.
    fn takeover() -> World {
        takeover_of("10.0.0.1")
    }

    fn takeover_of(ip: &str) -> World {
        let key = |t: &str| format!("v4@{ip}@{t}");
        let mut w = World {
            grace: [
                ("0".to_string(), rec(false, false, false, true)),
                ("1".to_string(), rec(true, false, true, true)),
            ]
            .into(),
            live: ["0".to_string(), "1".to_string()].into(),
            progress: BTreeMap::new(),
            stamps: [
                (key("a"), "1.3".to_string()),
                (key("b"), "2.7".to_string()),
                ("v4@10.0.0.2@c".to_string(), "0.2".to_string()),
            ]
            .into(),
            holders: [
                (ip.to_string(), "1".to_string()),
                ("10.0.0.2".to_string(), "0".to_string()),
            ]
            .into(),
            v4: [(ip.to_string(), 2), ("10.0.0.2".to_string(), 1)].into(),
            nlm: [(ip.to_string(), 1)].into(),
        };
        let mut p = Progress {
            epoch: 3,
            stamp: "1.3".into(),
            in_grace: true,
            recovering: true,
            started: 1000,
            ends: 1090,
            scope: vec![ip.into()],
            offered_total: 3,
            offered: [key("a"), key("b"), key("gone")].into(),
            ..Progress::default()
        };
        p.nlm.insert(
            ip.into(),
            NlmProgress {
                done: true,
                notified: 1,
                silent: vec![],
                error: None,
            },
        );
        w.progress.insert("1".into(), p);
        w
    }

    #[test]
    fn a_takeover_in_progress_names_the_node_the_ip_the_time_left_and_who_is_missing() {
        let s = takeover().status(1049);
        assert_eq!(
            s.verdict,
            "in grace (epoch 5): node 1 reclaims 10.0.0.1 for 41 s more at most, 2 of 3 client(s) back"
        );
        let row = s.ips.iter().find(|r| r.ip == "10.0.0.1").unwrap();
        let rc = row.reclaim.as_ref().unwrap();
        assert_eq!((rc.expected, rc.back, rc.gone), (3, 1, 1));
        assert_eq!(rc.missing, vec!["b".to_string()]);
        assert!(s
            .ips
            .iter()
            .find(|r| r.ip == "10.0.0.2")
            .unwrap()
            .reclaim
            .is_none());
        assert_eq!(s.nodes[0].waits_for, "in grace for node(s) 1");
        let text = render(&s);
        assert!(text.contains("missing: b"), "{text}");
        assert!(
            text.contains("NLM: 1 client(s) notified, all answered"),
            "{text}"
        );
        let x = render_machine(&s);
        assert!(x.contains("|10.0.0.1|1|2|1|1|3|2|1|1|0|"), "{x}");
        assert!(x.contains("|10.0.0.2|0|1|0||||||"), "{x}");
        assert!(
            x.starts_with("|InGrace|Epoch|Verdict|\n|1|5|in grace (epoch 5): node 1"),
            "{x}"
        );
    }

    /// An IPv6 public address: named in the verdict as it is printed everywhere else, and
    /// the `-X` row still splits into its ten fields at '|' (the colons are no separator).
    #[test]
    fn an_ipv6_takeover_reads_the_same_and_its_machine_row_splits_cleanly() {
        let s = takeover_of("fd77:1::1").status(1049);
        assert!(
            s.verdict
                .contains("node 1 reclaims fd77:1::1 for 41 s more at most"),
            "{}",
            s.verdict
        );
        let x = render_machine(&s);
        let row = x
            .lines()
            .find(|l| l.starts_with("|fd77:1::1|"))
            .unwrap_or_else(|| panic!("{x}"));
        let fields: Vec<&str> = row.trim_matches('|').split('|').collect();
        assert_eq!(
            fields,
            vec!["fd77:1::1", "1", "2", "1", "1", "3", "2", "1", "1", "0"],
            "{row}"
        );
    }

    #[test]
    fn a_hold_a_dead_node_and_a_waiting_start_are_each_explained() {
        let mut w = takeover();
        w.grace.insert("2".into(), rec(false, true, true, true));
        w.live.insert("2".into());
        w.progress.insert(
            "2".into(),
            Progress {
                epoch: 3,
                in_grace: true,
                held_since: 1040,
                ..Progress::default()
            },
        );
        // Node 3 needs grace but CTDB does not count it: ignored.
        w.grace.insert("3".into(), rec(true, false, true, true));
        let s = w.status(1050);
        assert!(
            s.verdict.contains(
                "node 2 holds the cluster in grace for a CTDB takeover run (10 s so far)"
            ),
            "{}",
            s.verdict
        );
        assert!(!s.verdict.contains("node 3"), "{}", s.verdict);
        let n3 = s.nodes.iter().find(|n| n.node == "3").unwrap();
        assert!(
            n3.waits_for.contains("not live in CTDB"),
            "{}",
            n3.waits_for
        );

        // After the grace: not in grace, but a starting node waits for the others.
        let mut w = takeover();
        w.grace.insert("1".into(), rec(false, false, false, false));
        w.progress.insert(
            "0".into(),
            Progress {
                epoch: 3,
                waiting_for: vec!["1".into()],
                waiting_since: 1045,
                ..Progress::default()
            },
        );
        let s = w.status(1050);
        assert_eq!(
            s.verdict,
            "not in grace; node 0 waits for node(s) 1 to enforce grace"
        );
        assert!(
            s.nodes[0].waits_for.contains("(5 s so far)"),
            "{:?}",
            s.nodes
        );
    }

    #[test]
    fn progress_of_another_epoch_is_not_used() {
        let mut w = takeover();
        w.progress.get_mut("1").unwrap().epoch = 2;
        let s = w.status(1049);
        assert!(
            s.verdict.contains("no progress published yet"),
            "{}",
            s.verdict
        );
        assert!(s.ips.iter().all(|r| r.reclaim.is_none()));
    }
}
