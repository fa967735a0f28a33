//! NFSv4 COMPOUND encoding and decoding for the operations this client uses
//! (RFC 7530 for 4.0, RFC 5661 for 4.1). Decoding is bounded and strict: an operation the
//! client did not send, or a body it cannot parse, is an error, never a guess.

use crate::status::NfsStat;
use oncrpc::{XdrError, XdrReader, XdrWriter};

pub const NFS_PROGRAM: u32 = 100003;
pub const NFS_V4: u32 = 4;
pub const PROC_COMPOUND: u32 = 1;

const NFS4_FHSIZE: usize = 128;
const NFS4_OPAQUE_LIMIT: usize = 1024;
const MAX_OPS: usize = 16;
const MAX_NAME: usize = 4096;

pub const OPEN4_SHARE_ACCESS_READ: u32 = 1;
pub const OPEN4_SHARE_ACCESS_BOTH: u32 = 3;
pub const OPEN4_RESULT_CONFIRM: u32 = 2;
pub const EXCHGID4_FLAG_USE_NON_PNFS: u32 = 0x0001_0000;

mod opnum {
    pub const CLOSE: u32 = 4;
    pub const GETFH: u32 = 10;
    pub const LOCK: u32 = 12;
    pub const LOCKU: u32 = 14;
    pub const LOOKUP: u32 = 15;
    pub const OPEN: u32 = 18;
    pub const OPEN_CONFIRM: u32 = 20;
    pub const PUTFH: u32 = 22;
    pub const PUTROOTFH: u32 = 24;
    pub const RENEW: u32 = 30;
    pub const SETCLIENTID: u32 = 35;
    pub const SETCLIENTID_CONFIRM: u32 = 36;
    pub const EXCHANGE_ID: u32 = 42;
    pub const CREATE_SESSION: u32 = 43;
    pub const DESTROY_SESSION: u32 = 44;
    pub const SEQUENCE: u32 = 53;
    pub const DESTROY_CLIENTID: u32 = 57;
    pub const RECLAIM_COMPLETE: u32 = 58;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StateId {
    pub seqid: u32,
    pub other: [u8; 12],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Open by name in the current (directory) filehandle.
    Null(String),
    /// Reclaim the open of the current filehandle after a server restart.
    Previous,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locker {
    /// First lock of this lock owner: derived from an open.
    New {
        open_seqid: u32,
        open_stateid: StateId,
        lock_seqid: u32,
        clientid: u64,
        owner: Vec<u8>,
    },
    Existing {
        lock_stateid: StateId,
        lock_seqid: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    PutRootFh,
    PutFh(Vec<u8>),
    Lookup(String),
    GetFh,
    SetClientId {
        verifier: [u8; 8],
        id: Vec<u8>,
    },
    SetClientIdConfirm {
        clientid: u64,
        confirm: [u8; 8],
    },
    Renew(u64),
    Open {
        seqid: u32,
        access: u32,
        clientid: u64,
        owner: Vec<u8>,
        claim: Claim,
    },
    OpenConfirm {
        stateid: StateId,
        seqid: u32,
    },
    Lock {
        write: bool,
        reclaim: bool,
        offset: u64,
        length: u64,
        locker: Locker,
    },
    Locku {
        write: bool,
        seqid: u32,
        stateid: StateId,
        offset: u64,
        length: u64,
    },
    Close {
        seqid: u32,
        stateid: StateId,
    },
    ExchangeId {
        verifier: [u8; 8],
        owner: Vec<u8>,
    },
    CreateSession {
        clientid: u64,
        sequence: u32,
        machine_name: String,
    },
    Sequence {
        sessionid: [u8; 16],
        sequenceid: u32,
    },
    ReclaimComplete,
    DestroySession([u8; 16]),
    DestroyClientId(u64),
}

impl Op {
    pub fn opnum(&self) -> u32 {
        use opnum::*;
        match self {
            Op::PutRootFh => PUTROOTFH,
            Op::PutFh(_) => PUTFH,
            Op::Lookup(_) => LOOKUP,
            Op::GetFh => GETFH,
            Op::SetClientId { .. } => SETCLIENTID,
            Op::SetClientIdConfirm { .. } => SETCLIENTID_CONFIRM,
            Op::Renew(_) => RENEW,
            Op::Open { .. } => OPEN,
            Op::OpenConfirm { .. } => OPEN_CONFIRM,
            Op::Lock { .. } => LOCK,
            Op::Locku { .. } => LOCKU,
            Op::Close { .. } => CLOSE,
            Op::ExchangeId { .. } => EXCHANGE_ID,
            Op::CreateSession { .. } => CREATE_SESSION,
            Op::Sequence { .. } => SEQUENCE,
            Op::ReclaimComplete => RECLAIM_COMPLETE,
            Op::DestroySession(_) => DESTROY_SESSION,
            Op::DestroyClientId(_) => DESTROY_CLIENTID,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Op::PutRootFh => "PUTROOTFH",
            Op::PutFh(_) => "PUTFH",
            Op::Lookup(_) => "LOOKUP",
            Op::GetFh => "GETFH",
            Op::SetClientId { .. } => "SETCLIENTID",
            Op::SetClientIdConfirm { .. } => "SETCLIENTID_CONFIRM",
            Op::Renew(_) => "RENEW",
            Op::Open { .. } => "OPEN",
            Op::OpenConfirm { .. } => "OPEN_CONFIRM",
            Op::Lock { .. } => "LOCK",
            Op::Locku { .. } => "LOCKU",
            Op::Close { .. } => "CLOSE",
            Op::ExchangeId { .. } => "EXCHANGE_ID",
            Op::CreateSession { .. } => "CREATE_SESSION",
            Op::Sequence { .. } => "SEQUENCE",
            Op::ReclaimComplete => "RECLAIM_COMPLETE",
            Op::DestroySession(_) => "DESTROY_SESSION",
            Op::DestroyClientId(_) => "DESTROY_CLIENTID",
        }
    }

    fn encode(&self, w: &mut XdrWriter) {
        w.u32(self.opnum());
        match self {
            Op::PutRootFh | Op::GetFh => {}
            Op::PutFh(fh) => {
                w.opaque(fh);
            }
            Op::Lookup(name) => {
                w.string(name);
            }
            Op::SetClientId { verifier, id } => {
                w.fixed(verifier).opaque(id);
                // A callback the server cannot reach: no delegations, which these tests
                // do not want anyway.
                w.u32(0x4000_0000)
                    .string("tcp")
                    .string("127.0.0.1.0.0")
                    .u32(1);
            }
            Op::SetClientIdConfirm { clientid, confirm } => {
                w.u64(*clientid).fixed(confirm);
            }
            Op::Renew(clientid) => {
                w.u64(*clientid);
            }
            Op::Open {
                seqid,
                access,
                clientid,
                owner,
                claim,
            } => {
                w.u32(*seqid).u32(*access).u32(0); // share_deny NONE
                w.u64(*clientid).opaque(owner);
                w.u32(0); // OPEN4_NOCREATE: tests open files the server side prepared
                match claim {
                    Claim::Null(name) => {
                        w.u32(0).string(name);
                    }
                    Claim::Previous => {
                        w.u32(1).u32(0); // delegate_type OPEN_DELEGATE_NONE
                    }
                }
            }
            Op::OpenConfirm { stateid, seqid } => {
                put_stateid(w, stateid);
                w.u32(*seqid);
            }
            Op::Lock {
                write,
                reclaim,
                offset,
                length,
                locker,
            } => {
                w.u32(if *write { 2 } else { 1 })
                    .bool(*reclaim)
                    .u64(*offset)
                    .u64(*length);
                match locker {
                    Locker::New {
                        open_seqid,
                        open_stateid,
                        lock_seqid,
                        clientid,
                        owner,
                    } => {
                        w.bool(true).u32(*open_seqid);
                        put_stateid(w, open_stateid);
                        w.u32(*lock_seqid).u64(*clientid).opaque(owner);
                    }
                    Locker::Existing {
                        lock_stateid,
                        lock_seqid,
                    } => {
                        w.bool(false);
                        put_stateid(w, lock_stateid);
                        w.u32(*lock_seqid);
                    }
                }
            }
            Op::Locku {
                write,
                seqid,
                stateid,
                offset,
                length,
            } => {
                w.u32(if *write { 2 } else { 1 }).u32(*seqid);
                put_stateid(w, stateid);
                w.u64(*offset).u64(*length);
            }
            Op::Close { seqid, stateid } => {
                w.u32(*seqid);
                put_stateid(w, stateid);
            }
            Op::ExchangeId { verifier, owner } => {
                w.fixed(verifier).opaque(owner);
                w.u32(EXCHGID4_FLAG_USE_NON_PNFS);
                w.u32(0); // SP4_NONE
                w.u32(0); // no implementation id
            }
            Op::CreateSession {
                clientid,
                sequence,
                machine_name,
            } => {
                w.u64(*clientid).u32(*sequence).u32(0); // no persist, no back channel
                for _ in 0..2 {
                    // headerpad, maxrequest, maxresponse, maxresponse_cached, maxops, maxreqs, rdma_ird<>
                    w.u32(0)
                        .u32(1 << 20)
                        .u32(1 << 20)
                        .u32(64 << 10)
                        .u32(16)
                        .u32(1)
                        .u32(0);
                }
                w.u32(0x4000_0000); // cb_program
                w.u32(1).u32(1); // one callback_sec_parms4: AUTH_SYS
                w.u32(0).string(machine_name).u32(0).u32(0).u32(0);
            }
            Op::Sequence {
                sessionid,
                sequenceid,
            } => {
                w.fixed(sessionid).u32(*sequenceid);
                w.u32(0).u32(0).bool(false); // slot 0, highest slot 0, do not cache
            }
            Op::ReclaimComplete => {
                w.bool(false); // rca_one_fs: the whole server
            }
            Op::DestroySession(id) => {
                w.fixed(id);
            }
            Op::DestroyClientId(clientid) => {
                w.u64(*clientid);
            }
        }
    }
}

fn put_stateid(w: &mut XdrWriter, s: &StateId) {
    w.u32(s.seqid).fixed(&s.other);
}

pub fn encode_compound(minor_version: u32, tag: &str, ops: &[Op]) -> Vec<u8> {
    let mut w = XdrWriter::new();
    w.string(tag).u32(minor_version).u32(ops.len() as u32);
    for op in ops {
        op.encode(&mut w);
    }
    w.into_bytes()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    /// Success with no body we use, or any failure without a body.
    Done,
    Fh(Vec<u8>),
    SetClientId {
        clientid: u64,
        confirm: [u8; 8],
    },
    Open {
        stateid: StateId,
        rflags: u32,
    },
    StateId(StateId),
    LockDenied {
        offset: u64,
        length: u64,
        write: bool,
        clientid: u64,
        owner: Vec<u8>,
    },
    ExchangeId {
        clientid: u64,
        sequenceid: u32,
    },
    CreateSession {
        sessionid: [u8; 16],
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpReply {
    pub opnum: u32,
    pub status: NfsStat,
    pub result: OpResult,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompoundReply {
    pub status: NfsStat,
    pub ops: Vec<OpReply>,
}

/// Decodes a COMPOUND4res for the ops that were sent: replies must come in the same order
/// and may stop early (at the first failure).
pub fn decode_compound(bytes: &[u8], sent: &[Op]) -> Result<CompoundReply, XdrError> {
    let mut r = XdrReader::new(bytes);
    let status = NfsStat(r.u32("compound status")?);
    r.opaque(MAX_NAME, "compound tag")?;
    let n = r.count(MAX_OPS.min(sent.len()), "compound result count")?;
    let mut ops = Vec::with_capacity(n);
    for op in &sent[..n] {
        let opnum = r.u32("resop number")?;
        if opnum != op.opnum() {
            return Err(XdrError::BadValue {
                what: "resop number (not the op sent at this position)",
                value: opnum,
            });
        }
        let st = NfsStat(r.u32("op status")?);
        let result = decode_result(&mut r, opnum, st)?;
        ops.push(OpReply {
            opnum,
            status: st,
            result,
        });
    }
    Ok(CompoundReply { status, ops })
}

fn get_stateid(r: &mut XdrReader<'_>) -> Result<StateId, XdrError> {
    Ok(StateId {
        seqid: r.u32("stateid seqid")?,
        other: r.fixed_array::<12>("stateid other")?,
    })
}

fn decode_result(r: &mut XdrReader<'_>, opnum: u32, st: NfsStat) -> Result<OpResult, XdrError> {
    use opnum::*;
    if st != NfsStat::OK {
        return match (opnum, st) {
            (LOCK, NfsStat::DENIED) => Ok(OpResult::LockDenied {
                offset: r.u64("denied offset")?,
                length: r.u64("denied length")?,
                write: matches!(r.u32("denied locktype")?, 2 | 4),
                clientid: r.u64("denied owner clientid")?,
                owner: r.opaque(NFS4_OPAQUE_LIMIT, "denied owner")?.to_vec(),
            }),
            (SETCLIENTID, NfsStat::CLID_INUSE) => {
                r.string(MAX_NAME, "netid")?;
                r.string(MAX_NAME, "addr")?;
                Ok(OpResult::Done)
            }
            _ => Ok(OpResult::Done),
        };
    }
    Ok(match opnum {
        PUTROOTFH | PUTFH | LOOKUP | RENEW | SETCLIENTID_CONFIRM | RECLAIM_COMPLETE
        | DESTROY_SESSION | DESTROY_CLIENTID => OpResult::Done,
        GETFH => OpResult::Fh(r.opaque(NFS4_FHSIZE, "filehandle")?.to_vec()),
        SETCLIENTID => OpResult::SetClientId {
            clientid: r.u64("clientid")?,
            confirm: r.fixed_array::<8>("setclientid_confirm")?,
        },
        OPEN => {
            let stateid = get_stateid(r)?;
            r.bool("cinfo atomic")?;
            r.u64("cinfo before")?;
            r.u64("cinfo after")?;
            let rflags = r.u32("rflags")?;
            r.u32_array(8, "attrset")?;
            skip_delegation(r)?;
            OpResult::Open { stateid, rflags }
        }
        OPEN_CONFIRM | LOCK | LOCKU | CLOSE => OpResult::StateId(get_stateid(r)?),
        EXCHANGE_ID => {
            // The rest (flags, state protection, owner, scope, impl id) is not needed and
            // EXCHANGE_ID is sent alone, so decoding stops here.
            let clientid = r.u64("eir_clientid")?;
            let sequenceid = r.u32("eir_sequenceid")?;
            r.rest();
            OpResult::ExchangeId {
                clientid,
                sequenceid,
            }
        }
        CREATE_SESSION => {
            let sessionid = r.fixed_array::<16>("csr_sessionid")?;
            r.rest(); // sent alone: sequence, flags, channel attributes follow
            OpResult::CreateSession { sessionid }
        }
        SEQUENCE => {
            r.fixed(16, "sr_sessionid")?;
            for what in [
                "sr_sequenceid",
                "sr_slotid",
                "sr_highest_slotid",
                "sr_target_highest_slotid",
                "sr_status_flags",
            ] {
                r.u32(what)?;
            }
            OpResult::Done
        }
        other => {
            return Err(XdrError::BadValue {
                what: "result of an operation this client never sends",
                value: other,
            })
        }
    })
}

fn skip_ace(r: &mut XdrReader<'_>) -> Result<(), XdrError> {
    r.u32("ace type")?;
    r.u32("ace flag")?;
    r.u32("ace mask")?;
    r.opaque(MAX_NAME, "ace who")?;
    Ok(())
}

fn skip_delegation(r: &mut XdrReader<'_>) -> Result<(), XdrError> {
    match r.u32("delegation type")? {
        0 => Ok(()),
        1 => {
            get_stateid(r)?;
            r.bool("recall")?;
            skip_ace(r)
        }
        2 => {
            get_stateid(r)?;
            r.bool("recall")?;
            match r.u32("limitby")? {
                1 => {
                    r.u64("filesize")?;
                }
                2 => {
                    r.u32("num_blocks")?;
                    r.u32("bytes_per_block")?;
                }
                value => {
                    return Err(XdrError::BadValue {
                        what: "limitby",
                        value,
                    })
                }
            }
            skip_ace(r)
        }
        3 => match r.u32("why no delegation")? {
            7 | 8 => r.bool("will signal").map(|_| ()),
            _ => Ok(()),
        },
        value => Err(XdrError::BadValue {
            what: "delegation type",
            value,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(body: impl FnOnce(&mut XdrWriter)) -> Vec<u8> {
        let mut w = XdrWriter::new();
        body(&mut w);
        w.into_bytes()
    }

    #[test]
    fn open_reply_with_a_read_delegation_and_getfh_decodes() {
        let sent = [
            Op::PutFh(vec![1]),
            Op::Open {
                seqid: 0,
                access: 3,
                clientid: 1,
                owner: b"o".to_vec(),
                claim: Claim::Null("f".into()),
            },
            Op::GetFh,
        ];
        let bytes = reply(|w| {
            w.u32(0).string("").u32(3);
            w.u32(opnum::PUTFH).u32(0);
            w.u32(opnum::OPEN).u32(0);
            w.u32(1).fixed(&[7; 12]); // stateid
            w.bool(true)
                .u64(1)
                .u64(2)
                .u32(OPEN4_RESULT_CONFIRM)
                .u32(1)
                .u32(0);
            w.u32(1)
                .u32(9)
                .fixed(&[8; 12])
                .bool(false)
                .u32(0)
                .u32(0)
                .u32(0)
                .string("EVERYONE@");
            w.u32(opnum::GETFH).u32(0).opaque(&[0xfe; 20]);
        });
        let rep = decode_compound(&bytes, &sent).unwrap();
        assert_eq!(rep.ops.len(), 3);
        assert_eq!(
            rep.ops[1].result,
            OpResult::Open {
                stateid: StateId {
                    seqid: 1,
                    other: [7; 12]
                },
                rflags: OPEN4_RESULT_CONFIRM
            }
        );
        assert_eq!(rep.ops[2].result, OpResult::Fh(vec![0xfe; 20]));
    }

    #[test]
    fn a_failed_op_ends_the_results_and_lock_denied_names_the_holder() {
        let sent = [
            Op::PutFh(vec![1]),
            Op::Lock {
                write: true,
                reclaim: false,
                offset: 0,
                length: 10,
                locker: Locker::Existing {
                    lock_stateid: StateId::default(),
                    lock_seqid: 1,
                },
            },
        ];
        let bytes = reply(|w| {
            w.u32(10010).string("t").u32(2);
            w.u32(opnum::PUTFH).u32(0);
            w.u32(opnum::LOCK)
                .u32(10010)
                .u64(0)
                .u64(100)
                .u32(2)
                .u64(77)
                .opaque(b"holder");
        });
        let rep = decode_compound(&bytes, &sent).unwrap();
        assert_eq!(rep.status, NfsStat::DENIED);
        assert_eq!(
            rep.ops[1].result,
            OpResult::LockDenied {
                offset: 0,
                length: 100,
                write: true,
                clientid: 77,
                owner: b"holder".to_vec()
            }
        );
    }

    #[test]
    fn replies_that_do_not_match_what_was_sent_are_rejected() {
        let sent = [Op::PutRootFh];
        let wrong_op = reply(|w| {
            w.u32(0)
                .string("")
                .u32(1)
                .u32(opnum::GETFH)
                .u32(0)
                .opaque(&[1]);
        });
        assert!(decode_compound(&wrong_op, &sent).is_err());
        let too_many = reply(|w| {
            w.u32(0)
                .string("")
                .u32(2)
                .u32(opnum::PUTROOTFH)
                .u32(0)
                .u32(opnum::PUTROOTFH)
                .u32(0);
        });
        assert!(decode_compound(&too_many, &sent).is_err());
        let big_fh = reply(|w| {
            w.u32(0)
                .string("")
                .u32(1)
                .u32(opnum::GETFH)
                .u32(0)
                .opaque(&[0; 129]);
        });
        assert!(decode_compound(&big_fh, &[Op::GetFh]).is_err());
    }

    #[test]
    fn truncated_replies_are_errors() {
        let sent = [Op::SetClientId {
            verifier: [0; 8],
            id: b"x".to_vec(),
        }];
        let bytes = reply(|w| {
            w.u32(0)
                .string("")
                .u32(1)
                .u32(opnum::SETCLIENTID)
                .u32(0)
                .u64(5)
                .fixed(&[1; 8]);
        });
        assert!(decode_compound(&bytes, &sent).is_ok());
        for cut in 0..bytes.len() {
            assert!(decode_compound(&bytes[..cut], &sent).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn lock_encodes_open_to_lock_owner() {
        let op = Op::Lock {
            write: true,
            reclaim: true,
            offset: 5,
            length: 6,
            locker: Locker::New {
                open_seqid: 2,
                open_stateid: StateId {
                    seqid: 1,
                    other: [3; 12],
                },
                lock_seqid: 0,
                clientid: 9,
                owner: b"lo".to_vec(),
            },
        };
        let bytes = encode_compound(0, "", &[op]);
        let mut r = XdrReader::new(&bytes);
        r.opaque(10, "tag").unwrap();
        assert_eq!(r.u32("minor").unwrap(), 0);
        assert_eq!(r.u32("n").unwrap(), 1);
        let words: Vec<u32> = (0..4).map(|_| r.u32("w").unwrap()).collect();
        assert_eq!(words, vec![opnum::LOCK, 2, 1, 0]); // WRITE_LT, reclaim, offset hi
        assert_eq!(r.u32("offset lo").unwrap(), 5);
        assert_eq!(r.u64("length").unwrap(), 6);
        assert!(r.bool("new").unwrap());
        assert_eq!(r.u32("open seqid").unwrap(), 2);
    }
}

/// Property-based fuzzing of the COMPOUND reply decoder (issue 15; docs/fuzzing.md):
/// replies written out by hand from RFC 7530/5661 for the operations sent, every
/// truncation, mutations and arbitrary bytes. 512 cases per property; PROPTEST_CASES=N for
/// a long run (`cargo test --release -p nfs4-client`).
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::Index;

    fn config() -> ProptestConfig {
        fuzz_config::config(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/proto.txt"
        ))
    }

    fn stateid() -> impl Strategy<Value = StateId> {
        (any::<u32>(), any::<[u8; 12]>()).prop_map(|(seqid, other)| StateId { seqid, other })
    }

    /// An operation sent and the result the server gives it (a status other than OK ends
    /// the reply there).
    fn lock() -> impl Strategy<Value = Op> {
        (any::<bool>(), stateid()).prop_map(|(write, s)| Op::Lock {
            write,
            reclaim: false,
            offset: 0,
            length: 1,
            locker: Locker::Existing {
                lock_stateid: s,
                lock_seqid: 1,
            },
        })
    }

    fn op_and_result() -> impl Strategy<Value = (Op, NfsStat, OpResult)> {
        prop_oneof![
            Just((Op::PutRootFh, NfsStat::OK, OpResult::Done)),
            Just((Op::ReclaimComplete, NfsStat::OK, OpResult::Done)),
            any::<u64>().prop_map(|c| (Op::Renew(c), NfsStat::OK, OpResult::Done)),
            prop::collection::vec(any::<u8>(), 0..=NFS4_FHSIZE).prop_map(|fh| (
                Op::GetFh,
                NfsStat::OK,
                OpResult::Fh(fh)
            )),
            (stateid(), stateid()).prop_map(|(s, r)| {
                (
                    Op::Close {
                        seqid: 1,
                        stateid: s,
                    },
                    NfsStat::OK,
                    OpResult::StateId(r),
                )
            }),
            (lock(), stateid()).prop_map(|(op, r)| (op, NfsStat::OK, OpResult::StateId(r))),
            (
                lock(),
                any::<u64>(),
                any::<u64>(),
                any::<bool>(),
                any::<u64>(),
                prop::collection::vec(any::<u8>(), 0..40)
            )
                .prop_map(|(op, offset, length, write, clientid, owner)| {
                    (
                        op,
                        NfsStat::DENIED,
                        OpResult::LockDenied {
                            offset,
                            length,
                            write,
                            clientid,
                            owner,
                        },
                    )
                }),
            (any::<u64>(), any::<[u8; 8]>()).prop_map(|(clientid, confirm)| {
                (
                    Op::SetClientId {
                        verifier: [0; 8],
                        id: b"x".to_vec(),
                    },
                    NfsStat::OK,
                    OpResult::SetClientId { clientid, confirm },
                )
            }),
            (any::<[u8; 16]>(), 1u32..).prop_map(|(sessionid, err)| {
                (
                    Op::Sequence {
                        sessionid,
                        sequenceid: 1,
                    },
                    NfsStat(err),
                    OpResult::Done,
                )
            }),
        ]
    }

    /// COMPOUND4res by hand; results after the first failure are not sent.
    fn reply(status: u32, tag: &str, ops: &[(Op, NfsStat, OpResult)]) -> Vec<u8> {
        let mut w = XdrWriter::new();
        let n = ops
            .iter()
            .position(|(_, st, _)| *st != NfsStat::OK)
            .map_or(ops.len(), |i| i + 1);
        w.u32(status).string(tag).u32(n as u32);
        for (op, st, res) in &ops[..n] {
            w.u32(op.opnum()).u32(st.0);
            match res {
                OpResult::Fh(fh) => {
                    w.opaque(fh);
                }
                OpResult::StateId(s) => {
                    w.u32(s.seqid).fixed(&s.other);
                }
                OpResult::SetClientId { clientid, confirm } => {
                    w.u64(*clientid).fixed(confirm);
                }
                OpResult::LockDenied {
                    offset,
                    length,
                    write,
                    clientid,
                    owner,
                } => {
                    w.u64(*offset)
                        .u64(*length)
                        .u32(if *write { 2 } else { 1 })
                        .u64(*clientid)
                        .opaque(owner);
                }
                _ => {}
            }
        }
        w.into_bytes()
    }

    proptest! {
        #![proptest_config(config())]

        /// (d) A reply decodes to the results it carries, stopping at the first failure.
        #[test]
        fn compound_replies_decode_to_their_results(
            ops in prop::collection::vec(op_and_result(), 0..6),
            status in any::<u32>(),
            tag in "[ -~]{0,12}",
        ) {
            let bytes = reply(status, &tag, &ops);
            let sent: Vec<Op> = ops.iter().map(|(o, _, _)| o.clone()).collect();
            let n = ops.iter().position(|(_, st, _)| *st != NfsStat::OK).map_or(ops.len(), |i| i + 1);
            let got = decode_compound(&bytes, &sent).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(got.status, NfsStat(status));
            let want: Vec<OpReply> = ops[..n]
                .iter()
                .map(|(o, st, r)| OpReply { opnum: o.opnum(), status: *st, result: r.clone() })
                .collect();
            prop_assert_eq!(got.ops, want);
            // (b) Every prefix is an error: each of these results has a fixed shape.
            for cut in 0..bytes.len() {
                prop_assert!(decode_compound(&bytes[..cut], &sent).is_err(), "cut {}", cut);
            }
        }

        /// (c)(a) Mutated replies (flipped bytes, rewritten words such as a count or a
        /// length of u32::MAX) and arbitrary bytes: an error, or results that answer the
        /// operations sent, in order, never more of them.
        #[test]
        fn mutated_and_arbitrary_replies_are_errors_or_answers(
            ops in prop::collection::vec(op_and_result(), 1..5),
            flips in prop::collection::vec((any::<Index>(), any::<u8>()), 0..3),
            words in prop::collection::vec((any::<Index>(), prop_oneof![Just(u32::MAX), Just(129u32), any::<u32>()]), 0..2),
            garbage in prop::collection::vec(any::<u8>(), 0..96),
        ) {
            let mut bytes = reply(0, "", &ops);
            for (at, w) in &words {
                let i = at.index(bytes.len() / 4) * 4;
                bytes[i..i + 4].copy_from_slice(&w.to_be_bytes());
            }
            for (at, x) in &flips {
                let i = at.index(bytes.len());
                bytes[i] ^= x;
            }
            let sent: Vec<Op> = ops.iter().map(|(o, _, _)| o.clone()).collect();
            for input in [&bytes[..], &garbage[..]] {
                if let Ok(r) = decode_compound(input, &sent) {
                    prop_assert!(r.ops.len() <= sent.len());
                    for (got, op) in r.ops.iter().zip(&sent) {
                        prop_assert_eq!(got.opnum, op.opnum());
                        if let OpResult::Fh(fh) = &got.result {
                            prop_assert!(fh.len() <= NFS4_FHSIZE);
                        }
                    }
                }
            }
        }
    }
}
