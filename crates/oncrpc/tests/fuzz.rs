//! Property-based fuzzing of every decoder in this crate (issue 15): the XDR reader, RPC
//! reply parsing and TCP record marking, each fed arbitrary bytes, every truncation of a
//! valid encoding, valid encodings with mutations (bit flips, rewritten and huge length
//! words), and round trips through the encoders, which are themselves checked against
//! encodings written out by hand from RFC 4506 and RFC 5531 below.
//!
//! What a decoder allocates is measured on the calling thread (allocation-counter): memory
//! must follow the bytes that arrived, never a length the input announces.
//!
//! Each property runs 512 cases (all of them take a few seconds in `cargo test --release`);
//! a long run sets PROPTEST_CASES, e.g.
//! `PROPTEST_CASES=20000 cargo test --release -p oncrpc --test fuzz` (docs/fuzzing.md).
//! Failing inputs proptest finds are written to proptest-regressions/fuzz.txt beside this
//! crate and replayed first on every run.

use oncrpc::pmap::{getport_args, PMAPPROC_GETPORT, PMAP_PROG, PMAP_VERS};
use oncrpc::rpc::{
    encode_call, parse_reply, read_record, reply_xid, write_record, Auth, CallHeader, RpcError,
    MAX_TCP_REPLY,
};
use oncrpc::{XdrError, XdrReader, XdrWriter};
use proptest::prelude::*;
use proptest::sample::Index;

/// 512 cases per property unless PROPTEST_CASES asks for another number (a long run);
/// failures are kept in this crate's proptest-regressions/fuzz.txt (proptest's default
/// place is not found from a workspace member's tests/).
fn config() -> ProptestConfig {
    fuzz_config::config(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/proptest-regressions/fuzz.txt"
    ))
}

/// Runs `f` and returns what it returned with the peak number of bytes this thread had
/// allocated at once meanwhile.
fn peak_bytes<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let mut out = None;
    let info = allocation_counter::measure(|| out = Some(f()));
    match out {
        Some(v) => (v, info.bytes_max),
        None => unreachable!("measure runs its closure"),
    }
}

// ---------------------------------------------------------------------------------------
// XDR

/// Bounds the schema below decodes variable-length items with.
const MAX_BYTES: usize = 64;
const MAX_WORDS: usize = 16;

#[derive(Debug, Clone, PartialEq)]
enum Item {
    U32(u32),
    I32(i32),
    U64(u64),
    Bool(bool),
    Fixed(Vec<u8>),
    Opaque(Vec<u8>),
    Str(String),
    U32s(Vec<u32>),
}

/// What the reader is told to expect at each position (fixed items carry their length).
#[derive(Debug, Clone, Copy)]
enum Kind {
    U32,
    I32,
    U64,
    Bool,
    Fixed(usize),
    Opaque(usize),
    Str(usize),
    U32s(usize),
}

impl Item {
    fn kind(&self) -> Kind {
        match self {
            Item::U32(_) => Kind::U32,
            Item::I32(_) => Kind::I32,
            Item::U64(_) => Kind::U64,
            Item::Bool(_) => Kind::Bool,
            Item::Fixed(b) => Kind::Fixed(b.len()),
            Item::Opaque(_) => Kind::Opaque(MAX_BYTES),
            Item::Str(_) => Kind::Str(MAX_BYTES),
            Item::U32s(_) => Kind::U32s(MAX_WORDS),
        }
    }

    /// Whether the item starts with a length (or count) word the decoder must check.
    fn has_length_word(&self) -> bool {
        matches!(self, Item::Opaque(_) | Item::Str(_) | Item::U32s(_))
    }
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        any::<u32>().prop_map(Item::U32),
        any::<i32>().prop_map(Item::I32),
        any::<u64>().prop_map(Item::U64),
        any::<bool>().prop_map(Item::Bool),
        prop::collection::vec(any::<u8>(), 0..=12).prop_map(Item::Fixed),
        prop::collection::vec(any::<u8>(), 0..=MAX_BYTES).prop_map(Item::Opaque),
        // Up to MAX_BYTES bytes of UTF-8 (a char is at most 4 bytes).
        prop::collection::vec(any::<char>(), 0..=MAX_BYTES / 4)
            .prop_map(|c| Item::Str(c.into_iter().collect())),
        prop::collection::vec(any::<u32>(), 0..=MAX_WORDS).prop_map(Item::U32s),
    ]
}

fn items() -> impl Strategy<Value = Vec<Item>> {
    prop::collection::vec(item(), 1..10)
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::U32),
        Just(Kind::I32),
        Just(Kind::U64),
        Just(Kind::Bool),
        (0usize..40).prop_map(Kind::Fixed),
        (0usize..1 << 20).prop_map(Kind::Opaque),
        (0usize..1 << 20).prop_map(Kind::Str),
        (0usize..1 << 20).prop_map(Kind::U32s),
        Just(Kind::Opaque(usize::MAX)),
        Just(Kind::U32s(usize::MAX)),
    ]
}

/// RFC 4506 by hand: big-endian words, lengths before variable items, zero padding to 4.
fn rfc4506(items: &[Item]) -> Vec<u8> {
    fn padded(out: &mut Vec<u8>, b: &[u8]) {
        out.extend_from_slice(b);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    }
    let mut out = Vec::new();
    for it in items {
        match it {
            Item::U32(v) => out.extend_from_slice(&v.to_be_bytes()),
            Item::I32(v) => out.extend_from_slice(&v.to_be_bytes()),
            Item::U64(v) => out.extend_from_slice(&v.to_be_bytes()),
            Item::Bool(v) => out.extend_from_slice(&u32::from(*v).to_be_bytes()),
            Item::Fixed(b) => padded(&mut out, b),
            Item::Opaque(b) => {
                out.extend_from_slice(&(b.len() as u32).to_be_bytes());
                padded(&mut out, b);
            }
            Item::Str(s) => {
                out.extend_from_slice(&(s.len() as u32).to_be_bytes());
                padded(&mut out, s.as_bytes());
            }
            Item::U32s(v) => {
                out.extend_from_slice(&(v.len() as u32).to_be_bytes());
                for w in v {
                    out.extend_from_slice(&w.to_be_bytes());
                }
            }
        }
    }
    out
}

fn write(items: &[Item]) -> Vec<u8> {
    let mut w = XdrWriter::new();
    for it in items {
        match it {
            Item::U32(v) => w.u32(*v),
            Item::I32(v) => w.i32(*v),
            Item::U64(v) => w.u64(*v),
            Item::Bool(v) => w.bool(*v),
            Item::Fixed(b) => w.fixed(b),
            Item::Opaque(b) => w.opaque(b),
            Item::Str(s) => w.string(s),
            Item::U32s(v) => {
                w.u32(v.len() as u32);
                for x in v {
                    w.u32(*x);
                }
                &mut w
            }
        };
    }
    w.into_bytes()
}

fn read_one(r: &mut XdrReader<'_>, kind: Kind) -> Result<Item, XdrError> {
    Ok(match kind {
        Kind::U32 => Item::U32(r.u32("u32")?),
        Kind::I32 => Item::I32(r.i32("i32")?),
        Kind::U64 => Item::U64(r.u64("u64")?),
        Kind::Bool => Item::Bool(r.bool("bool")?),
        Kind::Fixed(n) => Item::Fixed(r.fixed(n, "fixed")?.to_vec()),
        Kind::Opaque(max) => Item::Opaque(r.opaque(max, "opaque")?.to_vec()),
        Kind::Str(max) => Item::Str(r.string(max, "string")?),
        Kind::U32s(max) => Item::U32s(r.u32_array(max, "array")?),
    })
}

/// Decodes `kinds` in order: the items read before the first error, and that error.
/// Checks on the way that the reader never moves backwards or past the end, and that no
/// item makes more than `4 * input + 1 KiB` bytes live at once.
fn read_all(bytes: &[u8], kinds: &[Kind]) -> (Vec<Item>, Option<XdrError>) {
    let mut r = XdrReader::new(bytes);
    let mut out = Vec::new();
    for &k in kinds {
        let before = r.position();
        let (res, peak) = peak_bytes(|| read_one(&mut r, k));
        assert!(
            peak <= 4 * bytes.len() as u64 + 1024,
            "{k:?} on {} bytes made {peak} bytes live",
            bytes.len()
        );
        assert!(r.position() >= before && r.position() <= bytes.len());
        assert_eq!(r.position() + r.remaining(), bytes.len());
        match res {
            Ok(it) => out.push(it),
            Err(e) => {
                assert!(!e.to_string().is_empty());
                return (out, Some(e));
            }
        }
    }
    (out, None)
}

/// Where each item's encoding ends.
fn item_ends(items: &[Item]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut total = 0;
    for it in items {
        total += rfc4506(std::slice::from_ref(it)).len();
        ends.push(total);
    }
    ends
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    /// Replaces the 4-byte word at a word boundary (length words included).
    SetWord(Index, u32),
    Truncate(Index),
    Append(Vec<u8>),
}

fn huge_word() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(u32::MAX),
        Just(0x8000_0000),
        Just(0x7fff_ffff),
        Just(MAX_BYTES as u32 + 1),
        Just(MAX_WORDS as u32 + 1),
        any::<u32>(),
        0u32..80,
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        (any::<Index>(), huge_word()).prop_map(|(i, w)| Mutation::SetWord(i, w)),
        any::<Index>().prop_map(Mutation::Truncate),
        prop::collection::vec(any::<u8>(), 1..16).prop_map(Mutation::Append),
    ]
}

fn mutate(bytes: &mut Vec<u8>, m: &Mutation) {
    match m {
        Mutation::FlipBit(i, bit) if !bytes.is_empty() => {
            let at = i.index(bytes.len());
            bytes[at] ^= 1 << bit;
        }
        Mutation::SetWord(i, w) if bytes.len() >= 4 => {
            let at = i.index(bytes.len() / 4) * 4;
            bytes[at..at + 4].copy_from_slice(&w.to_be_bytes());
        }
        Mutation::Truncate(i) if !bytes.is_empty() => {
            let at = i.index(bytes.len());
            bytes.truncate(at);
        }
        Mutation::Append(extra) => bytes.extend_from_slice(extra),
        _ => {}
    }
}

proptest! {
    #![proptest_config(config())]

    /// (d) XdrWriter writes what RFC 4506 says, and XdrReader reads it back exactly.
    #[test]
    fn xdr_round_trips_through_the_rfc4506_encoding(items in items()) {
        let bytes = write(&items);
        prop_assert_eq!(&bytes, &rfc4506(&items));
        prop_assert_eq!(bytes.len() % 4, 0);
        let kinds: Vec<Kind> = items.iter().map(Item::kind).collect();
        let (back, err) = read_all(&bytes, &kinds);
        prop_assert_eq!(err, None);
        prop_assert_eq!(back, items);
    }

    /// (b) Every prefix of a valid encoding decodes the items that are complete in it, and
    /// the first incomplete one is a Truncated error (never a wrong value or a panic).
    #[test]
    fn xdr_every_truncation_keeps_the_complete_items_and_reports_the_cut(items in items()) {
        let bytes = write(&items);
        let kinds: Vec<Kind> = items.iter().map(Item::kind).collect();
        let ends = item_ends(&items);
        for cut in 0..bytes.len() {
            let (back, err) = read_all(&bytes[..cut], &kinds);
            let complete = ends.iter().filter(|&&e| e <= cut).count();
            prop_assert_eq!(&back[..], &items[..complete], "cut {}", cut);
            prop_assert!(
                matches!(err, Some(XdrError::Truncated { needed, .. }) if needed > 0),
                "cut {}: {:?}", cut, err
            );
        }
    }

    /// (c) A length or count word above the decoder's bound is refused as TooLong naming the
    /// announced length, before anything is read or allocated for it.
    #[test]
    fn xdr_announced_lengths_over_the_bound_are_refused_before_allocating(
        mut items in items(),
        variable in item().prop_filter("a length word", Item::has_length_word),
        at in any::<Index>(),
        len in prop_oneof![Just(u32::MAX), Just(0x8000_0000u32), MAX_BYTES as u32 + 1..],
    ) {
        let victim = at.index(items.len() + 1);
        items.insert(victim, variable);
        let max = match items[victim] { Item::U32s(_) => MAX_WORDS, _ => MAX_BYTES };
        let mut bytes = write(&items);
        let at = item_ends(&items[..victim]).last().copied().unwrap_or(0);
        bytes[at..at + 4].copy_from_slice(&len.to_be_bytes());
        let kinds: Vec<Kind> = items.iter().map(Item::kind).collect();
        let mut r = XdrReader::new(&bytes);
        for k in &kinds[..victim] {
            prop_assert!(read_one(&mut r, *k).is_ok());
        }
        let (res, peak) = peak_bytes(|| read_one(&mut r, kinds[victim]));
        prop_assert_eq!(
            res,
            Err(XdrError::TooLong {
                what: match items[victim] {
                    Item::Opaque(_) => "opaque",
                    Item::Str(_) => "string",
                    _ => "array",
                },
                len: len as usize,
                max,
            })
        );
        prop_assert_eq!(peak, 0, "allocated for a refused length");
    }

    /// (c) Mutated encodings (bit flips, rewritten words, cuts, garbage appended) never
    /// panic, never yield an item over its bound, and allocate by what is there.
    #[test]
    fn xdr_mutated_encodings_are_values_or_errors(
        items in items(),
        mutations in prop::collection::vec(mutation(), 1..5),
    ) {
        let mut bytes = write(&items);
        for m in &mutations {
            mutate(&mut bytes, m);
        }
        let kinds: Vec<Kind> = items.iter().map(Item::kind).collect();
        let (back, _) = read_all(&bytes, &kinds);
        for it in back {
            match it {
                Item::Opaque(b) => prop_assert!(b.len() <= MAX_BYTES),
                Item::Str(s) => prop_assert!(s.len() <= 3 * MAX_BYTES), // U+FFFD is 3 bytes
                Item::U32s(v) => prop_assert!(v.len() <= MAX_WORDS),
                _ => {}
            }
        }
    }

    /// (a) Arbitrary bytes read as arbitrary schemas, with bounds up to usize::MAX: never a
    /// panic, and memory stays proportional to the input.
    #[test]
    fn xdr_arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        kinds in prop::collection::vec(kind(), 1..12),
    ) {
        read_all(&bytes, &kinds);
    }
}

// ---------------------------------------------------------------------------------------
// RPC replies (RFC 5531 §9)

const REPLY: u32 = 1;

#[derive(Debug, Clone)]
enum Reply {
    Success { results: Vec<u8> },
    ProgUnavail,
    ProgMismatch(u32, u32),
    ProcUnavail,
    GarbageArgs,
    SystemErr,
    UnknownAccept(u32),
    RpcMismatch(u32, u32),
    AuthError(u32),
    UnknownReject(u32),
    UnknownReplyStat(u32),
}

/// What parse_reply should make of a reply, comparable (RpcError holds io::Error).
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Body(Vec<u8>),
    ProgUnavail,
    ProgMismatch(u32, u32),
    ProcUnavail,
    GarbageArgs,
    SystemErr,
    RpcMismatch(u32, u32),
    AuthError(u32),
    Unknown(&'static str, u32),
    XidMismatch(u32, u32),
    NotAReply(u32),
    Xdr(XdrError),
    Other(String),
}

fn outcome(r: Result<&[u8], RpcError>) -> Outcome {
    match r {
        Ok(b) => Outcome::Body(b.to_vec()),
        Err(RpcError::ProgUnavail) => Outcome::ProgUnavail,
        Err(RpcError::ProgMismatch { low, high }) => Outcome::ProgMismatch(low, high),
        Err(RpcError::ProcUnavail) => Outcome::ProcUnavail,
        Err(RpcError::GarbageArgs) => Outcome::GarbageArgs,
        Err(RpcError::SystemErr) => Outcome::SystemErr,
        Err(RpcError::RpcMismatch { low, high }) => Outcome::RpcMismatch(low, high),
        Err(RpcError::AuthError(s)) => Outcome::AuthError(s),
        Err(RpcError::UnknownStatus { what, value }) => Outcome::Unknown(what, value),
        Err(RpcError::XidMismatch { sent, got }) => Outcome::XidMismatch(sent, got),
        Err(RpcError::NotAReply(t)) => Outcome::NotAReply(t),
        Err(RpcError::Xdr(e)) => Outcome::Xdr(e),
        Err(e) => Outcome::Other(e.to_string()),
    }
}

fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..64).prop_map(|results| Reply::Success { results }),
        1 => Just(Reply::ProgUnavail),
        1 => (any::<u32>(), any::<u32>()).prop_map(|(l, h)| Reply::ProgMismatch(l, h)),
        1 => Just(Reply::ProcUnavail),
        1 => Just(Reply::GarbageArgs),
        1 => Just(Reply::SystemErr),
        1 => (6u32..).prop_map(Reply::UnknownAccept),
        1 => (any::<u32>(), any::<u32>()).prop_map(|(l, h)| Reply::RpcMismatch(l, h)),
        1 => any::<u32>().prop_map(Reply::AuthError),
        1 => (2u32..).prop_map(Reply::UnknownReject),
        1 => (2u32..).prop_map(Reply::UnknownReplyStat),
    ]
}

/// A reply message by hand: the bytes before the procedure's results, and the whole.
fn reply_bytes(xid: u32, verf: &(u32, Vec<u8>), r: &Reply) -> (usize, Vec<u8>) {
    let mut m = Vec::new();
    let mut w = |v: u32| m.extend_from_slice(&v.to_be_bytes());
    w(xid);
    w(REPLY);
    let accepted = |m: &mut Vec<u8>, stat: u32| {
        m.extend_from_slice(&0u32.to_be_bytes()); // MSG_ACCEPTED
        m.extend_from_slice(&verf.0.to_be_bytes());
        m.extend_from_slice(&(verf.1.len() as u32).to_be_bytes());
        m.extend_from_slice(&verf.1);
        m.resize(m.len().div_ceil(4) * 4, 0);
        m.extend_from_slice(&stat.to_be_bytes());
    };
    let denied = |m: &mut Vec<u8>, stat: u32, words: &[u32]| {
        m.extend_from_slice(&1u32.to_be_bytes()); // MSG_DENIED
        m.extend_from_slice(&stat.to_be_bytes());
        for w in words {
            m.extend_from_slice(&w.to_be_bytes());
        }
    };
    match r {
        Reply::Success { results } => {
            accepted(&mut m, 0);
            let header = m.len();
            m.extend_from_slice(results);
            return (header, m);
        }
        Reply::ProgUnavail => accepted(&mut m, 1),
        Reply::ProgMismatch(l, h) => {
            accepted(&mut m, 2);
            m.extend_from_slice(&l.to_be_bytes());
            m.extend_from_slice(&h.to_be_bytes());
        }
        Reply::ProcUnavail => accepted(&mut m, 3),
        Reply::GarbageArgs => accepted(&mut m, 4),
        Reply::SystemErr => accepted(&mut m, 5),
        Reply::UnknownAccept(v) => accepted(&mut m, *v),
        Reply::RpcMismatch(l, h) => denied(&mut m, 0, &[*l, *h]),
        Reply::AuthError(s) => denied(&mut m, 1, &[*s]),
        Reply::UnknownReject(v) => denied(&mut m, *v, &[]),
        Reply::UnknownReplyStat(v) => m.extend_from_slice(&v.to_be_bytes()),
    }
    let len = m.len();
    (len, m)
}

fn expected(r: &Reply) -> Outcome {
    match r {
        Reply::Success { results } => Outcome::Body(results.clone()),
        Reply::ProgUnavail => Outcome::ProgUnavail,
        Reply::ProgMismatch(l, h) => Outcome::ProgMismatch(*l, *h),
        Reply::ProcUnavail => Outcome::ProcUnavail,
        Reply::GarbageArgs => Outcome::GarbageArgs,
        Reply::SystemErr => Outcome::SystemErr,
        Reply::UnknownAccept(v) => Outcome::Unknown("accept_stat", *v),
        Reply::RpcMismatch(l, h) => Outcome::RpcMismatch(*l, *h),
        Reply::AuthError(s) => Outcome::AuthError(*s),
        Reply::UnknownReject(v) => Outcome::Unknown("reject_stat", *v),
        Reply::UnknownReplyStat(v) => Outcome::Unknown("reply_stat", *v),
    }
}

fn verifier() -> impl Strategy<Value = (u32, Vec<u8>)> {
    (any::<u32>(), prop::collection::vec(any::<u8>(), 0..=400))
}

/// An independent reading of RFC 5531's accepted-success header: where the results start,
/// if `msg` is a successful reply to `xid`.
fn success_header(msg: &[u8], xid: u32) -> Option<usize> {
    let word = |i: usize| -> Option<u32> {
        msg.get(i..i + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    if word(0)? != xid || word(4)? != REPLY || word(8)? != 0 {
        return None;
    }
    let vlen = word(16)? as usize;
    if vlen > 400 {
        return None;
    }
    let padded = vlen.div_ceil(4) * 4;
    let body = msg.get(20..20 + padded)?;
    if body[vlen..].iter().any(|&b| b != 0) {
        return None;
    }
    (word(20 + padded)? == 0).then_some(24 + padded)
}

proptest! {
    #![proptest_config(config())]

    /// (d) Every kind of reply decodes to what was encoded; after an error reply's last
    /// field anything may follow (it is not read); a success's results are the rest.
    #[test]
    fn rpc_replies_decode_to_what_was_sent(
        xid in any::<u32>(),
        verf in verifier(),
        r in reply(),
        trailer in prop::collection::vec(any::<u8>(), 0..8),
    ) {
        let (_, mut msg) = reply_bytes(xid, &verf, &r);
        let mut want = expected(&r);
        msg.extend_from_slice(&trailer);
        if let Outcome::Body(b) = &mut want {
            b.extend_from_slice(&trailer);
        }
        let (got, peak) = peak_bytes(|| outcome(parse_reply(&msg, xid)));
        prop_assert_eq!(got, want);
        // Outcome::Body copies the results; parse_reply itself borrows them.
        prop_assert!(peak <= msg.len() as u64);
        prop_assert_eq!(reply_xid(&msg).ok(), Some(xid));
    }

    /// (b) A reply cut anywhere before the end of its header is a Truncated XDR error; a
    /// success cut inside its results is a success with the results that arrived (the
    /// procedure's own decoder must then refuse them: `nsm` and the clients do).
    #[test]
    fn rpc_every_truncation_is_an_error_or_shorter_results(
        xid in any::<u32>(),
        verf in verifier(),
        r in reply(),
    ) {
        let (header, msg) = reply_bytes(xid, &verf, &r);
        for cut in 0..msg.len() {
            let got = outcome(parse_reply(&msg[..cut], xid));
            if cut >= header {
                prop_assert_eq!(got, Outcome::Body(msg[header..cut].to_vec()), "cut {}", cut);
            } else {
                prop_assert!(
                    matches!(got, Outcome::Xdr(XdrError::Truncated { .. })),
                    "cut {}: {:?}", cut, got
                );
            }
        }
    }

    /// A reply whose xid is not the call's is refused whatever follows it.
    #[test]
    fn rpc_a_reply_to_another_call_is_never_taken(
        sent in any::<u32>(),
        got in any::<u32>(),
        rest in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        prop_assume!(sent != got);
        let mut msg = got.to_be_bytes().to_vec();
        msg.extend_from_slice(&rest);
        prop_assert_eq!(outcome(parse_reply(&msg, sent)), Outcome::XidMismatch(sent, got));
    }

    /// (c) Mutated replies (verifier lengths up to u32::MAX included) never panic, parse
    /// without allocating, and are taken as a success only when an independent reading of
    /// the header agrees, with the same results.
    #[test]
    fn rpc_mutated_replies_are_checked_like_any_reply(
        xid in any::<u32>(),
        verf in verifier(),
        r in reply(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let (_, mut msg) = reply_bytes(xid, &verf, &r);
        for m in &mutations {
            mutate(&mut msg, m);
        }
        check_any_reply(&msg, xid)?;
    }

    /// (a) Arbitrary datagrams, and arbitrary bytes after a well-formed reply header.
    #[test]
    fn rpc_arbitrary_datagrams_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..128),
        prefix in prop::sample::select(vec![
            vec![],
            vec![0, 0, 0, 7, 0, 0, 0, 1],
            vec![0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, 0],
            vec![0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, 1],
            vec![0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
        ]),
    ) {
        let mut msg = prefix;
        msg.extend_from_slice(&bytes);
        check_any_reply(&msg, 7)?;
        let xid = reply_xid(&msg).ok();
        prop_assert_eq!(
            xid,
            (msg.len() >= 4).then(|| u32::from_be_bytes([msg[0], msg[1], msg[2], msg[3]]))
        );
    }
}

fn check_any_reply(msg: &[u8], xid: u32) -> Result<(), TestCaseError> {
    let mut res = None;
    let info = allocation_counter::measure(|| res = Some(parse_reply(msg, xid).map(|b| b.len())));
    prop_assert_eq!(info.bytes_total, 0, "parse_reply allocated");
    let got = res.ok_or_else(|| TestCaseError::fail("no result"))?;
    match (got, success_header(msg, xid)) {
        (Ok(len), Some(header)) => prop_assert_eq!(len, msg.len() - header),
        (Err(_), None) => {}
        (got, want) => prop_assert!(false, "parse_reply {:?}, RFC 5531 reading {:?}", got, want),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Calls and GETPORT arguments: encoders, checked by an independent reading

fn auth() -> impl Strategy<Value = Auth> {
    prop_oneof![
        Just(Auth::None),
        ("[ -~]{0,64}", any::<u32>(), any::<u32>()).prop_map(|(machine_name, uid, gid)| {
            Auth::Sys {
                machine_name,
                uid,
                gid,
            }
        }),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// (d) A call is RFC 5531's call header, the credential (AUTH_SYS: stamp, machine name,
    /// uid, gid, no further gids), a null verifier, then the arguments untouched.
    #[test]
    fn rpc_calls_are_encoded_per_rfc5531(
        h in (any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>())
            .prop_map(|(xid, prog, vers, proc_)| CallHeader { xid, prog, vers, proc_ }),
        a in auth(),
        args in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let msg = encode_call(&h, &a, &args);
        let mut r = XdrReader::new(&msg);
        let words: Vec<u32> = (0..6).map(|_| r.u32("w")).collect::<Result<_, _>>()?;
        prop_assert_eq!(words, vec![h.xid, 0, 2, h.prog, h.vers, h.proc_]);
        let flavor = r.u32("cred flavor")?;
        let body = r.opaque(400, "cred body")?;
        match &a {
            Auth::None => prop_assert_eq!((flavor, body.len()), (0, 0)),
            Auth::Sys { machine_name, uid, gid } => {
                prop_assert_eq!(flavor, 1);
                let mut b = XdrReader::new(body);
                b.u32("stamp")?;
                prop_assert_eq!(&b.string(255, "machine")?, machine_name);
                prop_assert_eq!((b.u32("uid")?, b.u32("gid")?), (*uid, *gid));
                prop_assert_eq!(b.count(16, "gids")?, 0);
                prop_assert_eq!(b.remaining(), 0);
            }
        }
        prop_assert_eq!((r.u32("verf flavor")?, r.opaque(400, "verf")?.len()), (0, 0));
        prop_assert_eq!(r.rest(), &args[..]);
    }

    /// GETPORT's argument is a `mapping` with the port 0, per RFC 1833.
    #[test]
    fn getport_args_are_a_mapping_with_port_zero(prog in any::<u32>(), vers in any::<u32>(), proto in any::<u32>()) {
        let mut want = Vec::new();
        for w in [prog, vers, proto, 0] {
            want.extend_from_slice(&w.to_be_bytes());
        }
        prop_assert_eq!(getport_args(prog, vers, proto), want);
        prop_assert_eq!((PMAP_PROG, PMAP_VERS, PMAPPROC_GETPORT), (100000, 2, 3));
    }
}

// ---------------------------------------------------------------------------------------
// TCP record marking (RFC 5531 §11)

/// `msg` cut into fragments at `cuts` (indexes into it), each with its header.
fn fragments(msg: &[u8], cuts: &[Index]) -> Vec<u8> {
    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(msg.len() + 1)).collect();
    at.push(0);
    at.push(msg.len());
    at.sort_unstable();
    at.dedup();
    if at.len() == 1 {
        at.push(0); // an empty message: one empty last fragment
    }
    let mut wire = Vec::new();
    for (n, pair) in at.windows(2).enumerate() {
        let frag = &msg[pair[0]..pair[1]];
        let last = n + 2 == at.len();
        let word = frag.len() as u32 | if last { 0x8000_0000 } else { 0 };
        wire.extend_from_slice(&word.to_be_bytes());
        wire.extend_from_slice(frag);
    }
    wire
}

proptest! {
    #![proptest_config(config())]

    /// (d) A record read back is the message, however it was fragmented; one too large for
    /// the bound is refused; the next record on the stream is left for the next read.
    #[test]
    fn records_round_trip_across_any_fragmentation(
        msg in prop::collection::vec(any::<u8>(), 0..600),
        cuts in prop::collection::vec(any::<Index>(), 0..5),
        next in prop::collection::vec(any::<u8>(), 0..16),
        max in prop_oneof![Just(MAX_TCP_REPLY), 0usize..700],
    ) {
        let mut wire = fragments(&msg, &cuts);
        write_record(&mut wire, &next).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut stream = &wire[..];
        match read_record(&mut stream, max) {
            Ok(got) => {
                prop_assert_eq!(got, msg);
                let again = read_record(&mut stream, MAX_TCP_REPLY)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(again, next);
            }
            Err(RpcError::TooLarge { len, max: m }) => {
                prop_assert!(msg.len() > max && len > max && m == max, "{} {} {}", msg.len(), len, max);
            }
            Err(e) => prop_assert!(false, "{}", e),
        }
    }

    /// (b) Every cut of a record stream before its last byte is an error, never a record.
    #[test]
    fn records_cut_short_are_errors(
        msg in prop::collection::vec(any::<u8>(), 0..300),
        cuts in prop::collection::vec(any::<Index>(), 0..4),
    ) {
        let wire = fragments(&msg, &cuts);
        for cut in 0..wire.len() {
            prop_assert!(read_record(&mut &wire[..cut], MAX_TCP_REPLY).is_err(), "cut {}", cut);
        }
    }

    /// (c) A fragment header announcing up to the bound (4 MiB) or 2 GiB, followed by only
    /// a few bytes: an error, with memory for the bytes that came, not the announced length.
    #[test]
    fn records_announced_lengths_do_not_size_buffers(
        len in prop_oneof![Just(0x7fff_ffffu32), Just(MAX_TCP_REPLY as u32), 1u32..=0x7fff_ffff],
        last in any::<bool>(),
        data in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        prop_assume!(len as usize > data.len());
        let mut wire = (len | if last { 0x8000_0000 } else { 0 }).to_be_bytes().to_vec();
        wire.extend_from_slice(&data);
        let (res, peak) = peak_bytes(|| read_record(&mut &wire[..], MAX_TCP_REPLY));
        prop_assert!(res.is_err());
        prop_assert!(peak <= 4096, "{} bytes live for {} bytes announced and {} sent", peak, len, data.len());
    }

    /// (a) Arbitrary streams: never a panic, memory proportional to the input.
    #[test]
    fn records_arbitrary_streams_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let (res, peak) = peak_bytes(|| read_record(&mut &bytes[..], MAX_TCP_REPLY));
        prop_assert!(peak <= 4 * bytes.len() as u64 + 4096, "{} live for {} in", peak, bytes.len());
        if let Ok(rec) = res {
            prop_assert!(rec.len() + 4 <= bytes.len());
        }
    }
}

/// Found by `records_announced_lengths_do_not_size_buffers`: read_record sized its buffer by
/// the fragment header, so 4 bytes announcing 4 MiB made 4 MiB live before any data came.
#[test]
fn a_fragment_header_alone_allocates_nothing_for_its_announced_length() {
    let wire = (MAX_TCP_REPLY as u32).to_be_bytes();
    let (res, peak) = peak_bytes(|| read_record(&mut &wire[..], MAX_TCP_REPLY));
    assert!(
        matches!(&res, Err(RpcError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof),
        "{res:?}"
    );
    assert!(peak < 4096, "{peak} bytes live");
}
