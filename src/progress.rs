//! What a node's grace period waits for, as the node publishes it for `ganesha-ctdb status`:
//! `progress@<node>` in the grace store. Operators of clustered Ganesha keep asking why
//! grace is still on; the grace records say *that* a node needs it, this says *for what*:
//! which clients it offered reclaim (by record key, so the tool can name the missing ones),
//! when Ganesha's Grace_Period runs out at the latest, a hold for a CTDB takeover run, the
//! nodes a starting Ganesha waits for before it listens, and how the NSM notifications of
//! each taken-over IP went.
//!
//! Which offered clients are back is not published: the tool reads it from the client
//! records themselves (a reclaiming client's record is rewritten with the grace period's
//! stamp), so the node writes this record once per grace event, not once per reclaim.
//!
//! The encoding is text, one field per line, unknown lines ignored (an older tool reads a
//! newer node's record); keys and names are %-escaped so that no client-chosen byte can
//! start a line of its own.

use std::collections::{BTreeMap, BTreeSet};

pub const PROGRESS_PREFIX: &str = "progress@";

/// More offered keys than this are counted but not listed (the record stays small enough
/// to be rewritten at every grace event; `status` then names no missing client).
pub const MAX_LISTED_OFFERS: usize = 4096;

/// How the NSM notification of one taken-over IP went.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NlmProgress {
    /// The notification has finished (else: still sending, or still reading the records).
    pub done: bool,
    pub notified: usize,
    /// Clients that did not answer, and names that did not resolve.
    pub silent: Vec<String>,
    /// Reading the records or sending failed: why.
    pub error: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// The node's grace epoch.
    pub epoch: u64,
    /// Records rewritten in this grace period carry this stamp: an offered one that has
    /// it is back.
    pub stamp: String,
    /// Ganesha is in grace on the node.
    pub in_grace: bool,
    /// This grace period's own reclaim window is open (the node offered clients).
    pub recovering: bool,
    /// Unix seconds: when this grace period began (0: not known).
    pub started: u64,
    /// Unix seconds: when Ganesha's Grace_Period runs out at the latest (0: not known).
    pub ends: u64,
    /// Unix seconds: since when the node holds the cluster in grace for a CTDB takeover run
    /// (0: it does not).
    pub held_since: u64,
    /// The public IPs (and `local`) whose clients this grace period offered.
    pub scope: Vec<String>,
    /// How many records were offered, and (up to MAX_LISTED_OFFERS) their keys.
    pub offered_total: usize,
    pub offered: BTreeSet<String>,
    /// A starting Ganesha does not listen until these live nodes enforce grace.
    pub waiting_for: Vec<String>,
    /// Unix seconds: since when it waits for them.
    pub waiting_since: u64,
    pub nlm: BTreeMap<String, NlmProgress>,
}

pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            '\n' => out.push_str("%0A"),
            '\r' => out.push_str("%0D"),
            ' ' => out.push_str("%20"),
            c => out.push(c),
        }
    }
    out
}

pub(crate) fn unescape(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl Progress {
    pub fn encode(&self) -> Vec<u8> {
        let mut s = String::from("v1\n");
        let mut line = |k: &str, v: String| {
            s.push_str(k);
            s.push(' ');
            s.push_str(&v);
            s.push('\n');
        };
        line("epoch", self.epoch.to_string());
        line("stamp", escape(&self.stamp));
        line("in_grace", u8::from(self.in_grace).to_string());
        line("recovering", u8::from(self.recovering).to_string());
        line("started", self.started.to_string());
        line("ends", self.ends.to_string());
        line("held_since", self.held_since.to_string());
        line("waiting_since", self.waiting_since.to_string());
        line("offered_total", self.offered_total.to_string());
        for ip in &self.scope {
            line("scope", escape(ip));
        }
        for n in &self.waiting_for {
            line("wait", escape(n));
        }
        for k in self.offered.iter().take(MAX_LISTED_OFFERS) {
            line("offer", escape(k));
        }
        for (ip, n) in &self.nlm {
            line(
                "nlm",
                format!(
                    "{} {} {}",
                    escape(ip),
                    if n.done { "done" } else { "sending" },
                    n.notified
                ),
            );
            for name in &n.silent {
                line("nlm_silent", format!("{} {}", escape(ip), escape(name)));
            }
            if let Some(e) = &n.error {
                line("nlm_error", format!("{} {}", escape(ip), escape(e)));
            }
        }
        s.into_bytes()
    }

    /// None for anything that is not a v1 progress record (the caller skips and says so).
    pub fn decode(bytes: &[u8]) -> Option<Progress> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.lines();
        if lines.next()? != "v1" {
            return None;
        }
        let mut p = Progress::default();
        for l in lines {
            let (k, v) = l.split_once(' ').unwrap_or((l, ""));
            let flag = |v: &str| -> Option<bool> {
                match v {
                    "0" => Some(false),
                    "1" => Some(true),
                    _ => None,
                }
            };
            match k {
                "epoch" => p.epoch = v.parse().ok()?,
                "stamp" => p.stamp = unescape(v)?,
                "in_grace" => p.in_grace = flag(v)?,
                "recovering" => p.recovering = flag(v)?,
                "started" => p.started = v.parse().ok()?,
                "ends" => p.ends = v.parse().ok()?,
                "held_since" => p.held_since = v.parse().ok()?,
                "waiting_since" => p.waiting_since = v.parse().ok()?,
                "offered_total" => p.offered_total = v.parse().ok()?,
                "scope" => p.scope.push(unescape(v)?),
                "wait" => p.waiting_for.push(unescape(v)?),
                "offer" => {
                    if p.offered.len() >= MAX_LISTED_OFFERS {
                        return None;
                    }
                    p.offered.insert(unescape(v)?);
                }
                "nlm" => {
                    let mut f = v.split(' ');
                    let ip = unescape(f.next()?)?;
                    let done = match f.next()? {
                        "done" => true,
                        "sending" => false,
                        _ => return None,
                    };
                    let notified = f.next()?.parse().ok()?;
                    let e = p.nlm.entry(ip).or_default();
                    e.done = done;
                    e.notified = notified;
                }
                "nlm_silent" | "nlm_error" => {
                    let (ip, rest) = v.split_once(' ')?;
                    let e = p.nlm.entry(unescape(ip)?).or_default();
                    let rest = unescape(rest)?;
                    if k == "nlm_silent" {
                        if e.silent.len() >= MAX_LISTED_OFFERS {
                            return None;
                        }
                        e.silent.push(rest);
                    } else {
                        e.error = Some(rest);
                    }
                }
                _ => {} // a newer node's field
            }
        }
        Some(p)
    }
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Progress {
        let mut p = Progress {
            epoch: 7,
            stamp: "1.7".into(),
            in_grace: true,
            recovering: true,
            started: 1_800_000_000,
            ends: 1_800_000_090,
            held_since: 0,
            scope: vec!["10.77.1.1".into(), "local".into()],
            offered_total: 2,
            offered: [
                "v4@10.77.1.1@::ffff:10.77.1.254-(21:Linux NFSv4.2 client2)".to_string(),
                "v4@10.77.1.1@weird%\nname\r".to_string(),
            ]
            .into(),
            waiting_for: vec!["2".into()],
            waiting_since: 1_800_000_001,
            nlm: BTreeMap::new(),
        };
        p.nlm.insert(
            "10.77.1.1".into(),
            NlmProgress {
                done: true,
                notified: 3,
                silent: vec!["client 9".into()],
                error: None,
            },
        );
        p.nlm.insert(
            "10.77.1.2".into(),
            NlmProgress {
                done: false,
                notified: 0,
                silent: vec![],
                error: Some("store: timed out".into()),
            },
        );
        p
    }

    #[test]
    fn a_record_reads_back_as_written_whatever_bytes_the_client_names_hold() {
        let p = sample();
        let bytes = p.encode();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(text.lines().filter(|l| l.starts_with("offer ")).count(), 2);
        assert_eq!(Progress::decode(&bytes), Some(p));
    }

    #[test]
    fn a_newer_field_is_ignored_and_a_bad_value_refuses_the_record() {
        let mut bytes = sample().encode();
        bytes.extend_from_slice(b"future_field 42\n");
        assert_eq!(Progress::decode(&bytes), Some(sample()));
        assert_eq!(Progress::decode(b"v1\nepoch x\n"), None);
        assert_eq!(Progress::decode(b"v2\nepoch 1\n"), None);
        assert_eq!(Progress::decode(b"v1\noffer %zz\n"), None);
        assert_eq!(Progress::decode(b"v1\nnlm 1.2.3.4 maybe 3\n"), None);
        assert_eq!(Progress::decode(&[0xff, 0xfe]), None);
    }

    proptest! {
        #![proptest_config(crate::fuzzing::config("progress"))]
        /// Whatever the store hands back, decoding returns (no panic), and never lists
        /// more than MAX_LISTED_OFFERS keys.
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            if let Some(p) = Progress::decode(&bytes) {
                prop_assert!(p.offered.len() <= MAX_LISTED_OFFERS);
            }
        }

        #[test]
        fn any_key_round_trips(keys in proptest::collection::btree_set(".{0,80}", 0..20)) {
            let p = Progress { offered_total: keys.len(), offered: keys, ..Progress::default() };
            prop_assert_eq!(Progress::decode(&p.encode()), Some(p));
        }
    }
}
