//! Releasing exactly the NFSv4 clients of an IP that leaves this node (design §5, R1).
//!
//! When CTDB moves public IP X away (a planned move, `ctdb disable`, a shutdown), the
//! clients that reached this node through X must lose their state here — their opens and
//! locks on the shared filesystem — before the taker offers them reclaim, or their reclaim
//! there is refused while this node still holds the locks. Ganesha's own release ("2:X")
//! only expires clients whose owner string contains X, which NFSv4.1+ owners never do and
//! many NFSv4.0 owners do not. This backend filed every client by the server IP it used, so
//! it knows them all: the event script sends "3:release:X:<token>" after every live node
//! enforces grace, and the clients filed under X are expired inside Ganesha the way its
//! reaper expires a client whose lease ran out ([`ClientReleaser`]). Their records stay for
//! the taker (rm_clid keeps them), and when Ganesha no longer has any of them this node
//! stores `release@<node>` = the token, which the event script waits for before it lets
//! CTDB go on to the takeover.

use super::{Backend, State};
use crate::records::{parse_v4_key, ServerIp};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Key prefix of a node's last completed release (`release@<node>`) in the grace store.
pub const RELEASE_PREFIX: &str = "release@";

/// Longest a release keeps asking Ganesha to drop clients that are still there (a request
/// of theirs in progress renews the lease when it ends); the event script waits a little
/// longer for the outcome.
pub const RELEASE_LIMIT: Duration = Duration::from_secs(10);

/// How this node makes Ganesha drop clients' state: src/ganesha forces their leases over
/// and wakes the reaper; unit tests use a double.
pub trait ClientReleaser: Send + Sync {
    /// Asks Ganesha to expire these clients; returns how many of them it still has.
    fn expire(&self, clientids: &BTreeSet<u64>) -> Result<usize, String>;
    /// The release gave up on these (still there): undo whatever `expire` changed in them
    /// besides their lease.
    fn abandon(&self, _clientids: &BTreeSet<u64>) {}
    /// Ends the Ganesha process at once (its locks go with it): the node lost its ctdbd.
    fn stop_ganesha(&self);
}

/// What a release is for: one public IP, or every client (the node leaves the cluster).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    Ip(IpAddr),
    All,
}

/// `release@<node>` value: the outcome of the release the event script asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseOutcome {
    pub token: String,
    /// Clients filed under the released IP(s).
    pub clients: usize,
    /// Of those, how many Ganesha still had when the release gave up (0: complete).
    pub left: usize,
}

impl ReleaseOutcome {
    pub fn encode(&self) -> Vec<u8> {
        format!(
            "v1 token={} clients={} left={}",
            self.token, self.clients, self.left
        )
        .into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Option<ReleaseOutcome> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut words = text.split(' ');
        if words.next()? != "v1" {
            return None;
        }
        let (mut token, mut clients, mut left) = (None, None, None);
        for w in words {
            match w.split_once('=')? {
                ("token", v) if !v.is_empty() => token = Some(v.to_string()),
                ("clients", v) => clients = v.parse().ok(),
                ("left", v) => left = v.parse().ok(),
                _ => return None,
            }
        }
        Some(ReleaseOutcome {
            token: token?,
            clients: clients?,
            left: left?,
        })
    }
}

/// "<ip>:<token>" or "all:<token>" (an IPv6 address has colons: the token is the last field).
/// A token has a character that no IPv6 group has (the event script's are "<pid>-<ns>"):
/// otherwise "fd00::1:2" would read as fd00::1 with token "2", and a verb cut short, or
/// missing its token, would release another IP.
fn parse(what: &str) -> Option<(Scope, &str)> {
    let (scope, token) = what.rsplit_once(':')?;
    if !token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        || token.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return None;
    }
    let scope = match scope {
        "all" => Scope::All,
        ip => Scope::Ip(ip.parse().ok()?),
    };
    Some((scope, token))
}

impl Backend {
    /// The release verb ("3:release:<ip>|all:<token>"): marks the clients filed under the IP
    /// as released and drops their state in Ganesha on a thread of its own (this runs under
    /// Ganesha's grace mutex, which its reaper takes too).
    pub(super) fn release(&self, st: &mut State, what: &str) {
        let Some((scope, token)) = parse(what) else {
            log::error!("grace event 3 with a malformed release {what:?}; nothing released");
            return;
        };
        let ids: BTreeSet<u64> = st
            .keys_by_clientid
            .iter()
            .filter(|(_, keys)| match scope {
                Scope::All => true,
                Scope::Ip(ip) => keys
                    .iter()
                    .any(|k| matches!(parse_v4_key(k), Some((ServerIp::Ip(a), _)) if a == ip)),
            })
            .map(|(id, _)| *id)
            .collect();
        st.released.extend(ids.iter().copied());
        match scope {
            Scope::Ip(ip) => {
                st.known_ips.remove(&ip);
            }
            Scope::All => st.known_ips.clear(),
        }
        let shown = match scope {
            Scope::Ip(ip) => ip.to_string(),
            Scope::All => "every public IP".into(),
        };
        log::info!(
            "releasing {} NFSv4 client(s) that reached this node through {shown}; their \
             records stay for the taker",
            ids.len()
        );
        let releaser = self
            .releaser
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let store = self.grace_store.clone();
        let key = format!("{RELEASE_PREFIX}{}", self.node_id);
        let token = token.to_string();
        let spawned = std::thread::Builder::new()
            .name("gctdb-release".into())
            .spawn(move || {
                let left = drop_in_ganesha(releaser.as_deref(), &ids, &shown);
                let outcome = ReleaseOutcome {
                    token,
                    clients: ids.len(),
                    left,
                };
                if let Err(e) = store.put(&key, &outcome.encode()) {
                    log::error!(
                        "release of {shown}: cannot store its outcome ({e}); the event script \
                         waits for it until its limit"
                    );
                }
            });
        if let Err(e) = spawned {
            log::error!("release of {what}: cannot start the release thread ({e})");
        }
    }
}

/// Asks Ganesha until it holds none of `ids` (or RELEASE_LIMIT); returns how many it still
/// holds.
fn drop_in_ganesha(
    releaser: Option<&dyn ClientReleaser>,
    ids: &BTreeSet<u64>,
    what: &str,
) -> usize {
    if ids.is_empty() {
        return 0;
    }
    let Some(releaser) = releaser else {
        log::error!(
            "release of {what}: this backend cannot drop clients inside Ganesha (not running \
             in ganesha.nfsd?); {} client(s) keep their state here until their lease ends",
            ids.len()
        );
        return ids.len();
    };
    let start = Instant::now();
    let mut pause = Duration::from_millis(10);
    loop {
        match releaser.expire(ids) {
            Ok(0) => {
                log::info!(
                    "released {} NFSv4 client(s) of {what} in {} ms",
                    ids.len(),
                    start.elapsed().as_millis()
                );
                return 0;
            }
            Ok(left) if start.elapsed() >= RELEASE_LIMIT => {
                releaser.abandon(ids);
                log::error!(
                    "release of {what}: Ganesha still holds {left} of {} client(s) after \
                     {RELEASE_LIMIT:?} (requests of theirs in progress?); they keep their \
                     state here until their lease ends, and their reclaims on the taker may \
                     be refused until then",
                    ids.len()
                );
                return left;
            }
            Ok(_) => {}
            Err(e) => {
                releaser.abandon(ids);
                log::error!(
                    "release of {what}: {e}; {} client(s) keep their state here until their \
                     lease ends",
                    ids.len()
                );
                return ids.len();
            }
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{ClientInfo, ClusterNode, GraceStart};
    use crate::ctdb::testing::FakeCtdb;
    use crate::store::memory::MemoryStore;
    use crate::store::Store;
    use std::sync::{Arc, Mutex};

    /// Ganesha double: holds a set of live client ids; an expire drops them after `lag`
    /// calls (the reaper runs after the walk).
    #[derive(Default)]
    struct FakeGanesha {
        live: Mutex<BTreeSet<u64>>,
        calls: Mutex<usize>,
    }

    impl ClientReleaser for FakeGanesha {
        fn expire(&self, ids: &BTreeSet<u64>) -> Result<usize, String> {
            let mut calls = self.calls.lock().unwrap();
            *calls += 1;
            let mut live = self.live.lock().unwrap();
            let present = live.intersection(ids).count();
            if *calls > 1 {
                live.retain(|id| !ids.contains(id));
            }
            Ok(present)
        }
        fn stop_ganesha(&self) {}
    }

    fn client(id: u64, owner: &str, server: Option<&str>, minor: u32) -> ClientInfo {
        ClientInfo {
            clientid: id,
            owner: owner.as_bytes().to_vec(),
            caller_addr: Some("::ffff:10.0.9.9".into()),
            server_addr: server.map(|s| s.parse().unwrap()),
            server_addr_low32: false,
            minor_version: minor,
            tag: None,
        }
    }

    fn wait_outcome(store: &MemoryStore, token: &str) -> ReleaseOutcome {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(o) = store
                .get("release@0")
                .unwrap()
                .and_then(|v| ReleaseOutcome::decode(&v))
                .filter(|o| o.token == token)
            {
                return o;
            }
            assert!(Instant::now() < deadline, "no outcome for {token}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn release_drops_exactly_the_ips_clients_in_ganesha_and_keeps_their_records() {
        let store = Arc::new(MemoryStore::new());
        let cluster = ClusterNode {
            pnn: 0,
            // One node holding both public IPs.
            ctdb: Arc::new(FakeCtdb::new(
                0,
                Some(vec![0]),
                &[("10.0.0.1", Some(0)), ("10.0.0.2", Some(0))],
            )),
        };
        let b = Backend::from_parts(store.clone(), store.clone(), "0", Some(cluster)).unwrap();
        let ganesha = Arc::new(FakeGanesha::default());
        b.set_releaser(ganesha.clone());
        // Through X: a v4.1 client (owner names no IP) and a v4.0 client whose connection
        // was known; through Y: one of each; a v4.0 client filed by the owner heuristic
        // under both (it names neither).
        let x41 = client(1, "Linux NFSv4.1 h1", Some("10.0.0.1"), 1);
        let x40 = client(2, "Libnfs pid:1 h2", Some("10.0.0.1"), 0);
        let y41 = client(3, "Linux NFSv4.1 h3", Some("10.0.0.2"), 1);
        let y40 = client(4, "Linux NFSv4.0 h4/10.0.0.2", None, 0);
        let both = client(5, "Libnfs pid:5 h5", None, 0);
        for c in [&x41, &x40, &y41, &y40, &both] {
            b.add_clid(c).1.unwrap();
            ganesha.live.lock().unwrap().insert(c.clientid);
        }
        b.read_clids(&GraceStart::Control("release:10.0.0.1:t1".into()));
        let o = wait_outcome(&store, "t1");
        assert_eq!((o.clients, o.left), (3, 0));
        assert_eq!(
            *ganesha.live.lock().unwrap(),
            BTreeSet::from([3, 4]),
            "Y's clients keep their state"
        );
        // Ganesha's reaper now expires them: rm_clid keeps what the taker offers.
        for c in [&x41, &x40, &both] {
            b.rm_clid(c);
        }
        let keys: Vec<String> = store
            .scan("v4@10.0.0.1@")
            .unwrap()
            .entries
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys.len(), 3, "{keys:?}");
        // A later expiry of a client that was not released still removes its records.
        b.rm_clid(&y41);
        assert_eq!(store.scan("v4@10.0.0.2@").unwrap().entries.len(), 2);
    }

    #[test]
    fn release_all_and_malformed_verbs() {
        let store = Arc::new(MemoryStore::new());
        let b = Backend::from_parts(store.clone(), store.clone(), "0", None).unwrap();
        let ganesha = Arc::new(FakeGanesha::default());
        b.set_releaser(ganesha.clone());
        b.add_clid(&client(1, "a", Some("fd00::1"), 1)).1.unwrap();
        b.add_clid(&client(2, "b", None, 0)).1.unwrap();
        ganesha.live.lock().unwrap().extend([1, 2]);
        for bad in [
            "release:10.0.0.1",
            "release:nonsense:t",
            "release:10.0.0.1:a b",
        ] {
            b.read_clids(&GraceStart::Control(bad.into()));
        }
        assert_eq!(
            *ganesha.calls.lock().unwrap(),
            0,
            "malformed: nothing released"
        );
        b.read_clids(&GraceStart::Control("release:fd00::1:t6".into()));
        assert_eq!(wait_outcome(&store, "t6").clients, 1);
        b.read_clids(&GraceStart::Control("release:all:t7".into()));
        let o = wait_outcome(&store, "t7");
        assert_eq!((o.clients, o.left), (2, 0));
        assert!(ganesha.live.lock().unwrap().is_empty());
    }

    /// Found by `fuzz::release_verbs_round_trip`: "::1:0:0:A" cut to "::1:0" read as IP ::1
    /// with token "0", so a verb cut short (or without its token) released another IP.
    #[test]
    fn a_verb_cut_short_never_names_another_ip() {
        for bad in [
            "::1:0",
            "fd00::1:2",
            "fd00::1:abc",
            "10.0.0.1:",
            "all:",
            "all:ff",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        let ip: IpAddr = "fd00::1:2".parse().unwrap();
        assert_eq!(parse("fd00::1:2:12-34"), Some((Scope::Ip(ip), "12-34")));
        assert_eq!(parse("all:t7"), Some((Scope::All, "t7")));
    }

    #[test]
    fn outcome_round_trip() {
        let o = ReleaseOutcome {
            token: "123-abc".into(),
            clients: 4,
            left: 1,
        };
        assert_eq!(ReleaseOutcome::decode(&o.encode()), Some(o));
        for bad in [
            &b"v1 token= clients=1 left=0"[..],
            b"v2 token=a clients=1 left=0",
            b"v1 token=a clients=x left=0",
            b"v1 token=a",
        ] {
            assert_eq!(ReleaseOutcome::decode(bad), None, "{bad:?}");
        }
    }
}

/// Property-based fuzzing of the release verb's argument and `release@<node>`'s value
/// (issue 15; docs/fuzzing.md): round trips, every truncation, arbitrary text. 512 cases
/// per property; PROPTEST_CASES=N for a long run.
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::fuzzing::config;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn scope() -> impl Strategy<Value = Scope> {
        prop_oneof![
            Just(Scope::All),
            any::<u32>().prop_map(|v| Scope::Ip(IpAddr::V4(Ipv4Addr::from(v)))),
            any::<u128>().prop_map(|v| Scope::Ip(IpAddr::V6(Ipv6Addr::from(v)))),
            // Zero groups, so that addresses are written with "::".
            prop::array::uniform8(prop_oneof![Just(0u16), any::<u16>()])
                .prop_map(|g| Scope::Ip(IpAddr::V6(Ipv6Addr::from(g)))),
        ]
    }

    /// Tokens as the event script makes them ("<pid>-<ns>"), and any other of letters,
    /// digits and '-' with one that is not a hex digit.
    const TOKEN: &str = "[0-9]{1,7}-[0-9]{1,20}|[A-Za-z0-9-]{0,8}[g-zG-Z-][A-Za-z0-9-]{0,8}";

    proptest! {
        #![proptest_config(config("release"))]

        /// (d) "<ip>:<token>" and "all:<token>" read back as sent, IPv6 addresses (colons
        /// and all) included; (b) no prefix reads as another IP with the token.
        #[test]
        fn release_verbs_round_trip(s in scope(), token in TOKEN) {
            let what = match s {
                Scope::All => format!("all:{token}"),
                Scope::Ip(ip) => format!("{ip}:{token}"),
            };
            prop_assert_eq!(parse(&what), Some((s, token.as_str())));
            for cut in 0..what.len() {
                if let Some((_, t)) = parse(&what[..cut]) {
                    // Only a cut inside the token can still parse, with a shorter token.
                    prop_assert!(token.starts_with(t) && t.len() < token.len(), "cut {}", cut);
                }
            }
        }

        /// (a) Arbitrary verbs: never a panic; a token taken is plain and could not be the
        /// last group of an IPv6 address.
        #[test]
        fn release_verbs_arbitrary_text(what in "[0-9a-fA-Z:.l -]{0,40}|\\PC{0,20}") {
            if let Some((_, token)) = parse(&what) {
                prop_assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
                prop_assert!(!token.bytes().all(|b| b.is_ascii_hexdigit()));
            }
        }

        /// (d)(b)(a) `release@<node>`: round trip; prefixes and garbage are nothing or a
        /// stable outcome.
        #[test]
        fn release_outcomes_round_trip(
            token in TOKEN,
            clients in any::<usize>(),
            left in any::<usize>(),
            garbage in "(v1 |token=|clients=|left=|[0-9]{1,3}| |[a-z=-]{1,4}){0,8}",
        ) {
            let o = ReleaseOutcome { token, clients, left };
            let bytes = o.encode();
            prop_assert_eq!(ReleaseOutcome::decode(&bytes), Some(o));
            for cut in 0..bytes.len() {
                if let Some(p) = ReleaseOutcome::decode(&bytes[..cut]) {
                    prop_assert_eq!(p.encode(), bytes[..cut].to_vec());
                }
            }
            if let Some(p) = ReleaseOutcome::decode(garbage.as_bytes()) {
                prop_assert_eq!(ReleaseOutcome::decode(&p.encode()), Some(p));
            }
        }
    }
}
