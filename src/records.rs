//! Client records: the recovery tag Ganesha compares on reclaim, the store keys, and the
//! record values. Pure functions on plain data; nothing here does I/O.

use crate::grace::NodeGrace;
use std::fmt;

/// Ganesha's display buffer for the owner part of a tag is PATH_MAX bytes.
const OWNER_DISPLAY_MAX: usize = 4096;
/// What Ganesha writes in place of the caller address when the client has no gsh_client.
pub const UNKNOWN_ADDR: &str = "(unknown)";

/// Builds the recovery tag exactly as Ganesha's own backends do (rados_kv_create_val, fs):
/// `<caller-addr>-(<n>:<owner>)`, where the owner is copied as is when every byte is
/// printable ASCII and none is '/', and is `0x` + lowercase hex otherwise; `n` is the length
/// of that rendering. Ganesha matches reclaiming clients by comparing this string
/// (nfs4_chk_clid), so any deviation silently refuses every reclaim.
pub fn recovery_tag(caller_addr: Option<&str>, owner: &[u8]) -> String {
    let addr = caller_addr.unwrap_or(UNKNOWN_ADDR);
    let rendered = render_owner(owner);
    format!("{addr}-({}:{rendered})", rendered.len())
}

fn render_owner(owner: &[u8]) -> String {
    // Ganesha renders nothing for an owner whose length is out of range (its assert is
    // compiled out in release builds), so the tag then ends in "-(0:)".
    if owner.is_empty() || owner.len() > OWNER_DISPLAY_MAX {
        return String::new();
    }
    // isprint() in the C locale (Ganesha never calls setlocale): 0x20..=0x7e.
    let plain = owner
        .iter()
        .all(|&b| (0x20..=0x7e).contains(&b) && b != b'/');
    let mut s = if plain {
        owner.iter().map(|&b| b as char).collect::<String>()
    } else {
        let mut s = String::with_capacity(2 + owner.len() * 2);
        s.push_str("0x");
        for b in owner {
            s.push_str(&format!("{b:02x}"));
        }
        s
    };
    // Ganesha's display buffer truncates with "..." when the rendering does not fit;
    // reachable only with owners over 2046 bytes, which NFSv4's XDR (1024) forbids.
    if s.len() >= OWNER_DISPLAY_MAX {
        s.truncate(OWNER_DISPLAY_MAX - 4);
        s.push_str("...");
    }
    s
}

/// Where a client record is filed: the server IP the client used, or `local` when the
/// standalone node cannot tell (NFSv4.0 clients do not say which address they used).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServerIp {
    Ip(std::net::IpAddr),
    Local,
}

impl fmt::Display for ServerIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerIp::Ip(ip) => write!(f, "{ip}"),
            ServerIp::Local => f.write_str("local"),
        }
    }
}

impl ServerIp {
    pub fn parse(s: &str) -> Option<ServerIp> {
        if s == "local" {
            return Some(ServerIp::Local);
        }
        s.parse().ok().map(ServerIp::Ip)
    }
}

pub const V4_PREFIX: &str = "v4@";
pub const GRACE_PREFIX: &str = "grace@";

/// `v4@<server-ip>@<recovery-tag>` (design §4).
pub fn v4_key(ip: &ServerIp, tag: &str) -> String {
    format!("{V4_PREFIX}{ip}@{tag}")
}

/// Splits a `v4@` key back into its server IP and tag.
pub fn parse_v4_key(key: &str) -> Option<(ServerIp, &str)> {
    let rest = key.strip_prefix(V4_PREFIX)?;
    let (ip, tag) = rest.split_once('@')?;
    if tag.is_empty() {
        return None;
    }
    Some((ServerIp::parse(ip)?, tag))
}

/// `grace@<node>`: that node's grace record, written by that node only.
pub fn grace_key(node: &str) -> String {
    format!("{GRACE_PREFIX}{node}")
}

/// The value stored under a `v4@` key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRecord {
    /// The Ganesha client id that wrote the record: rm_clid of an older incarnation of the
    /// same client (same tag) must not delete the newer one's record.
    pub clientid: u64,
    /// `<node>.<epoch>` of the writer: tells a record rewritten during this grace period
    /// (the client reclaimed) from one left over from before it.
    pub stamp: String,
    /// Revoked delegation file handles, base64url with '=' padding, as Ganesha's backends
    /// hand them to add_rfh_entry.
    pub revoked: Vec<String>,
    /// Whether this (NFSv4.1+) client sent RECLAIM_COMPLETE since it established itself
    /// (RFC 8881 §8.4.3), where the running Ganesha tells (15.x's hook); None on versions
    /// without the hook and in records they wrote, which count as complete.
    pub reclaim_complete: Option<bool>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

impl ClientRecord {
    /// Text so that operators can read it with `ctdb catdb` or `cat`:
    /// `v1 clientid=<n> stamp=<node.epoch> [rc=0|1] [rfh=<b64>]...`
    pub fn encode(&self) -> Vec<u8> {
        let mut s = format!("v1 clientid={} stamp={}", self.clientid, self.stamp);
        if let Some(rc) = self.reclaim_complete {
            s.push_str(if rc { " rc=1" } else { " rc=0" });
        }
        for fh in &self.revoked {
            s.push_str(" rfh=");
            s.push_str(fh);
        }
        s.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<ClientRecord, DecodeError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| DecodeError("client record is not UTF-8".into()))?;
        let mut words = text.split(' ');
        if words.next() != Some("v1") {
            return Err(DecodeError(format!(
                "unknown client record format: {text:.40}"
            )));
        }
        let mut clientid = None;
        let mut stamp = None;
        let mut revoked = Vec::new();
        let mut reclaim_complete = None;
        for word in words {
            let (k, v) = word
                .split_once('=')
                .ok_or_else(|| DecodeError(format!("malformed field {word:.40}")))?;
            match k {
                "clientid" => {
                    clientid = Some(
                        v.parse::<u64>()
                            .map_err(|_| DecodeError(format!("bad clientid {v:.40}")))?,
                    )
                }
                "stamp" if !v.is_empty() => stamp = Some(v.to_string()),
                "rc" if v == "0" || v == "1" => reclaim_complete = Some(v == "1"),
                "rfh" if is_base64url(v) => revoked.push(v.to_string()),
                _ => return Err(DecodeError(format!("bad field {word:.60}"))),
            }
        }
        Ok(ClientRecord {
            clientid: clientid.ok_or_else(|| DecodeError("no clientid".into()))?,
            stamp: stamp.ok_or_else(|| DecodeError("no stamp".into()))?,
            revoked,
            reclaim_complete,
        })
    }
}

fn is_base64url(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'='))
}

/// base64url with '=' padding: the alphabet and padding of Ganesha's base64url_encode,
/// whose output Ganesha later decodes when it replays revoked handles.
pub fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// This node's grace record (`grace@<node>`), written by this node only.
///
/// `epoch` numbers this node's own reclaim windows: record stamps are `<node>.<epoch>`, so
/// it only ever grows. `cluster` is the node's part of the cluster grace (src/grace.rs):
/// the cluster grace epoch, whether it needs the cluster in grace, whether it enforces.
/// `recovering`: its own reclaim window is open (a crash leaves it open, so the next start
/// offers the same clients). `held`: a CTDB takeover run is in progress on it
/// (startrecovery or releaseip until ipreallocated); it keeps the cluster in grace.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct GraceRecord {
    pub epoch: u64,
    pub recovering: bool,
    pub held: bool,
    pub cluster: NodeGrace,
}

impl GraceRecord {
    pub fn encode(&self) -> Vec<u8> {
        format!(
            "v1 epoch={} in_grace={} held={} enforcing={} cluster_epoch={}",
            self.epoch,
            u8::from(self.recovering),
            u8::from(self.held),
            u8::from(self.cluster.enforcing),
            self.cluster.epoch
        )
        .into_bytes()
    }

    /// Decodes; records written before cluster grace existed (`v1 epoch= in_grace=`) read
    /// as enforcing while recovering, cluster epoch = epoch.
    pub fn decode(bytes: &[u8]) -> Result<GraceRecord, DecodeError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| DecodeError("grace record is not UTF-8".into()))?;
        let mut words = text.split(' ');
        if words.next() != Some("v1") {
            return Err(DecodeError(format!(
                "unknown grace record format: {text:.40}"
            )));
        }
        let (mut epoch, mut recovering, mut held) = (0u64, false, false);
        let (mut enforcing, mut cluster_epoch) = (None, None);
        let flag = |v: &str, word: &str| match v {
            "0" => Ok(false),
            "1" => Ok(true),
            _ => Err(DecodeError(format!("bad field {word:.60}"))),
        };
        let num = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| DecodeError(format!("bad number {v:.40}")))
        };
        for word in words {
            match word.split_once('=') {
                Some(("epoch", v)) => epoch = num(v)?,
                Some(("in_grace", v)) => recovering = flag(v, word)?,
                Some(("held", v)) => held = flag(v, word)?,
                Some(("enforcing", v)) => enforcing = Some(flag(v, word)?),
                Some(("cluster_epoch", v)) => cluster_epoch = Some(num(v)?),
                _ => return Err(DecodeError(format!("bad field {word:.60}"))),
            }
        }
        Ok(GraceRecord {
            epoch,
            recovering,
            held,
            cluster: NodeGrace {
                epoch: cluster_epoch.unwrap_or(epoch),
                need_grace: recovering || held,
                enforcing: enforcing.unwrap_or(recovering),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_owner_is_copied() {
        assert_eq!(
            recovery_tag(Some("::ffff:127.0.0.1"), b"Linux NFSv4.1 client1"),
            "::ffff:127.0.0.1-(21:Linux NFSv4.1 client1)"
        );
    }

    #[test]
    fn binary_or_slash_owner_is_hex_and_length_counts_rendering() {
        assert_eq!(
            recovery_tag(Some("10.0.0.1"), b"a/b"),
            "10.0.0.1-(8:0x612f62)"
        );
        assert_eq!(
            recovery_tag(Some("10.0.0.1"), &[0, 0xff]),
            "10.0.0.1-(6:0x00ff)"
        );
        // DEL (0x7f) and bytes >= 0x80 are not isprint in the C locale.
        assert_eq!(recovery_tag(Some("h"), &[b'a', 0x7f]), "h-(6:0x617f)");
        assert_eq!(recovery_tag(Some("h"), "é".as_bytes()), "h-(6:0xc3a9)");
    }

    #[test]
    fn unknown_address_and_empty_owner() {
        assert_eq!(recovery_tag(None, b"x"), "(unknown)-(1:x)");
        assert_eq!(recovery_tag(Some("h"), b""), "h-(0:)");
    }

    #[test]
    fn long_owners_follow_ganesha_lengths() {
        let owner = vec![b'a'; 1024];
        let tag = recovery_tag(Some("h"), &owner);
        assert_eq!(tag, format!("h-(1024:{})", "a".repeat(1024)));
        let bin = vec![0xabu8; 1024];
        let tag = recovery_tag(Some("h"), &bin);
        assert!(tag.starts_with("h-(2050:0xabab"));
        assert_eq!(tag.len(), "h-(2050:)".len() + 2050);
        // Beyond Ganesha's 4096-byte display buffer: truncated with "...".
        let huge = vec![0x01u8; 3000];
        let tag = recovery_tag(Some("h"), &huge);
        assert!(tag.starts_with("h-(4095:0x0101"));
        assert!(tag.ends_with("...)"));
        assert_eq!(recovery_tag(Some("h"), &vec![b'a'; 4097]), "h-(0:)");
    }

    #[test]
    fn v4_keys_round_trip() {
        let ip = ServerIp::Ip("10.77.1.3".parse().unwrap());
        let tag = "::ffff:10.0.0.9-(8:0x612f62)";
        let key = v4_key(&ip, tag);
        assert_eq!(key, "v4@10.77.1.3@::ffff:10.0.0.9-(8:0x612f62)");
        assert_eq!(parse_v4_key(&key), Some((ip, tag)));
        let v6 = ServerIp::Ip("fd00::1".parse().unwrap());
        assert_eq!(parse_v4_key(&v4_key(&v6, "t@x")), Some((v6, "t@x")));
        assert_eq!(parse_v4_key("v4@local@t"), Some((ServerIp::Local, "t")));
        assert_eq!(parse_v4_key("v4@nonsense@t"), None);
        assert_eq!(parse_v4_key("v4@10.0.0.1@"), None);
        assert_eq!(parse_v4_key("grace@n1"), None);
    }

    #[test]
    fn client_record_round_trip_and_rejects_garbage() {
        let rec = ClientRecord {
            clientid: 0x5f00_0000_0001,
            stamp: "node1.7".into(),
            revoked: vec![base64url(b"\x01\x02\x03\x04"), base64url(&[0xfb, 0xff])],
            reclaim_complete: None,
        };
        assert_eq!(ClientRecord::decode(&rec.encode()), Ok(rec.clone()));
        for rc in [Some(false), Some(true)] {
            let r = ClientRecord {
                reclaim_complete: rc,
                ..rec.clone()
            };
            assert_eq!(ClientRecord::decode(&r.encode()), Ok(r));
        }
        for bad in [
            &b""[..],
            b"v2 clientid=1 stamp=a",
            b"v1 clientid=x stamp=a",
            b"v1 stamp=a",
            b"v1 clientid=1",
            b"v1 clientid=1 stamp=a rfh=not/b64",
            b"v1 clientid=1 stamp=a extra",
            b"v1 clientid=1 stamp=a rc=2",
            b"\xff\xfe",
        ] {
            assert!(ClientRecord::decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn base64url_matches_rfc4648_with_padding() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg==");
        assert_eq!(base64url(b"fo"), "Zm8=");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(b"foob"), "Zm9vYg==");
        assert_eq!(base64url(&[0xfb, 0xff, 0xbf]), "-_-_");
    }

    #[test]
    fn grace_record_round_trip() {
        let g = GraceRecord {
            epoch: 42,
            recovering: false,
            held: true,
            cluster: NodeGrace {
                epoch: 7,
                need_grace: true,
                enforcing: true,
            },
        };
        assert_eq!(GraceRecord::decode(&g.encode()), Ok(g));
        // Written before cluster grace: enforcing while recovering, cluster epoch = epoch.
        let old = GraceRecord::decode(b"v1 epoch=5 in_grace=1").unwrap();
        assert_eq!(
            old.cluster,
            NodeGrace {
                epoch: 5,
                need_grace: true,
                enforcing: true
            }
        );
        assert!(GraceRecord::decode(b"v1 epoch=-1").is_err());
        assert!(GraceRecord::decode(b"v1 in_grace=2").is_err());
    }
}

/// Property-based fuzzing of the stored values' decoders (issue 15; docs/fuzzing.md):
/// ClientRecord, GraceRecord and `v4@` keys, with round trips, every truncation of an
/// encoding, mutations and arbitrary bytes. 512 cases per property; PROPTEST_CASES=N for a
/// long run.
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::fuzzing::{config, peak_bytes};
    use proptest::prelude::*;
    use proptest::sample::Index;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    fn client_record() -> impl Strategy<Value = ClientRecord> {
        (
            any::<u64>(),
            prop_oneof![
                // What the backend writes: <Node_Id>.<epoch>.
                ("[A-Za-z0-9._-]{1,64}", any::<u64>()).prop_map(|(n, e)| format!("{n}.{e}")),
                // Anything the decoder takes: no space, not empty.
                "[^ ]{1,40}",
            ],
            // Revoked handles as add_revoke_fh encodes them (NFSv4 handles are 1 to 128 bytes).
            prop::collection::vec(prop::collection::vec(any::<u8>(), 1..=128), 0..4),
            prop::option::of(any::<bool>()),
        )
            .prop_map(|(clientid, stamp, fhs, reclaim_complete)| ClientRecord {
                clientid,
                stamp,
                revoked: fhs.iter().map(|f| base64url(f)).collect(),
                reclaim_complete,
            })
    }

    /// Records as the backend keeps them: `need_grace` is "recovering or held", which the
    /// encoding does not store separately.
    fn grace_record() -> impl Strategy<Value = GraceRecord> {
        (
            any::<u64>(),
            any::<bool>(),
            any::<bool>(),
            any::<u64>(),
            any::<bool>(),
        )
            .prop_map(
                |(epoch, recovering, held, cluster_epoch, enforcing)| GraceRecord {
                    epoch,
                    recovering,
                    held,
                    cluster: NodeGrace {
                        epoch: cluster_epoch,
                        need_grace: recovering || held,
                        enforcing,
                    },
                },
            )
    }

    /// Text with the decoders' words over-represented, plus arbitrary bytes.
    fn near_valid() -> impl Strategy<Value = Vec<u8>> {
        let word = prop_oneof![
            Just("v1".to_string()),
            Just("clientid=".to_string()),
            Just("stamp=".to_string()),
            Just("rc=".to_string()),
            Just("rfh=".to_string()),
            Just("epoch=".to_string()),
            Just("in_grace=".to_string()),
            Just("held=".to_string()),
            Just("enforcing=".to_string()),
            Just("cluster_epoch=".to_string()),
            Just("18446744073709551616".to_string()),
            Just("-1".to_string()),
            "[0-9]{1,3}",
            "[a-zA-Z0-9=_-]{1,6}",
            Just(" ".to_string()),
            Just("=".to_string()),
        ];
        prop_oneof![
            3 => prop::collection::vec(word, 0..12).prop_map(|w| w.concat().into_bytes()),
            1 => prop::collection::vec(any::<u8>(), 0..64),
        ]
    }

    fn server_ip() -> impl Strategy<Value = ServerIp> {
        prop_oneof![
            Just(ServerIp::Local),
            any::<u32>().prop_map(|v| ServerIp::Ip(IpAddr::V4(Ipv4Addr::from(v)))),
            any::<u128>().prop_map(|v| ServerIp::Ip(IpAddr::V6(Ipv6Addr::from(v)))),
        ]
    }

    /// Error texts quote at most a few dozen characters of the input, however long it is.
    fn short(e: &DecodeError) -> bool {
        !e.0.is_empty() && e.0.chars().count() <= 120
    }

    proptest! {
        #![proptest_config(config("records"))]

        /// (d) A client record decodes to what was encoded.
        #[test]
        fn client_records_round_trip(r in client_record()) {
            prop_assert_eq!(ClientRecord::decode(&r.encode()), Ok(r));
        }

        /// (b) Every prefix of an encoded client record is an error or, cut inside its last
        /// value (the format has no terminator), a record that encodes back to that prefix.
        #[test]
        fn client_record_prefixes_are_errors_or_themselves(r in client_record()) {
            let bytes = r.encode();
            for cut in 0..bytes.len() {
                match ClientRecord::decode(&bytes[..cut]) {
                    Ok(p) => prop_assert_eq!(p.encode(), bytes[..cut].to_vec(), "cut {}", cut),
                    Err(e) => prop_assert!(short(&e), "{}", e),
                }
            }
        }

        /// (c)(a) Mutated records and arbitrary bytes: a value or a short error; whatever
        /// decodes re-encodes to something that decodes to the same record.
        #[test]
        fn client_record_garbage_is_an_error_or_a_stable_record(
            r in client_record(),
            flips in prop::collection::vec((any::<Index>(), any::<u8>()), 0..3),
            garbage in near_valid(),
        ) {
            let mut bytes = r.encode();
            for (at, x) in &flips {
                let i = at.index(bytes.len());
                bytes[i] ^= x;
            }
            for input in [&bytes[..], &garbage[..], &[b"v1 ".as_slice(), &garbage].concat()[..]] {
                let (res, peak) = peak_bytes(|| ClientRecord::decode(input));
                prop_assert!(peak <= 4 * input.len() as u64 + 1024);
                match res {
                    Ok(d) => prop_assert_eq!(ClientRecord::decode(&d.encode()), Ok(d)),
                    Err(e) => prop_assert!(short(&e), "{}", e),
                }
            }
        }

        /// (d) A grace record decodes to what was encoded.
        #[test]
        fn grace_records_round_trip(g in grace_record()) {
            prop_assert_eq!(GraceRecord::decode(&g.encode()), Ok(g));
        }

        /// (b)(c)(a) Prefixes, mutations, arbitrary bytes: a short error or a record that is
        /// stable under encode and decode (records written before cluster grace included).
        #[test]
        fn grace_record_garbage_is_an_error_or_a_stable_record(
            g in grace_record(),
            flips in prop::collection::vec((any::<Index>(), any::<u8>()), 0..3),
            garbage in near_valid(),
        ) {
            let whole = g.encode();
            let mut flipped = whole.clone();
            for (at, x) in &flips {
                let i = at.index(flipped.len());
                flipped[i] ^= x;
            }
            let mut inputs: Vec<Vec<u8>> = (0..whole.len()).map(|c| whole[..c].to_vec()).collect();
            inputs.push(flipped);
            inputs.push(garbage.clone());
            inputs.push([b"v1 ".as_slice(), &garbage].concat());
            for input in &inputs {
                match GraceRecord::decode(input) {
                    Ok(d) => prop_assert_eq!(GraceRecord::decode(&d.encode()), Ok(d)),
                    Err(e) => prop_assert!(short(&e), "{}", e),
                }
            }
        }

        /// (d) `v4@<ip>@<tag>` keys split back into their IP and tag, for any tag (tags may
        /// hold '@': Ganesha's tags copy printable owners), including real recovery tags.
        #[test]
        fn v4_keys_round_trip(
            ip in server_ip(),
            tag in prop_oneof!["[^\n]{1,40}".prop_map(|t| t), (
                prop::option::of("[0-9a-f:.]{1,20}"),
                prop::collection::vec(any::<u8>(), 0..80),
            ).prop_map(|(addr, owner)| recovery_tag(addr.as_deref(), &owner))],
        ) {
            let key = v4_key(&ip, &tag);
            prop_assert_eq!(parse_v4_key(&key), Some((ip, tag.as_str())));
        }

        /// (a) Arbitrary keys: never a panic; a key that parses names a tag it ends with.
        #[test]
        fn v4_key_parsing_never_panics(key in "(v4@)?[0-9a-f:.@lcoa]{0,30}") {
            if let Some((_, tag)) = parse_v4_key(&key) {
                prop_assert!(!tag.is_empty() && key.ends_with(tag));
            }
        }
    }
}
