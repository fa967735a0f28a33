//! The stateful client: one client ID (4.0) or client ID + session (4.1), opens with their
//! own open owners, locks with their own lock owners, seqids kept as RFC 7530 §9.1.7 says.

use crate::proto::{self, Claim, CompoundReply, Locker, Op, OpResult, StateId};
use crate::status::NfsStat;
use oncrpc::{Auth, RpcError, TcpTransport, XdrError};
use std::fmt;
use std::io;
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub enum Error {
    /// The server answered `status` to `op`.
    Nfs {
        op: &'static str,
        status: NfsStat,
    },
    Rpc(RpcError),
    Xdr(XdrError),
    Io(io::Error),
    /// The client was used out of order (e.g. no session yet).
    Usage(String),
}

impl Error {
    /// The NFS status, if the server answered with one.
    pub fn status(&self) -> Option<NfsStat> {
        match self {
            Error::Nfs { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Nfs { op, status } => write!(f, "{op}: {status}"),
            Error::Rpc(e) => write!(f, "{e}"),
            Error::Xdr(e) => write!(f, "NFSv4 reply: {e}"),
            Error::Io(e) => write!(f, "{e}"),
            Error::Usage(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for Error {}

impl From<RpcError> for Error {
    fn from(e: RpcError) -> Self {
        Error::Rpc(e)
    }
}
impl From<XdrError> for Error {
    fn from(e: XdrError) -> Self {
        Error::Xdr(e)
    }
}
impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockType {
    Read,
    Write,
}

#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// 0 (SETCLIENTID) or 1/2 (EXCHANGE_ID + sessions).
    pub minor_version: u32,
    /// The co_ownerid / nfs_client_id4.id: what the server's recovery record is keyed by.
    pub owner: Vec<u8>,
    /// Boot verifier; a new value tells the server the client rebooted.
    pub verifier: [u8; 8],
    pub machine_name: String,
}

impl ClientOptions {
    pub fn new(minor_version: u32, owner: impl Into<Vec<u8>>) -> Self {
        ClientOptions {
            minor_version,
            owner: owner.into(),
            verifier: *b"gctdbver",
            machine_name: "nfs4-client".into(),
        }
    }
}

/// An open file: its handle, open stateid and owner, and the lock state of its one lock owner.
#[derive(Debug, Clone)]
pub struct OpenFile {
    pub fh: Vec<u8>,
    pub stateid: StateId,
    open_owner: Vec<u8>,
    open_seqid: u32,
    lock_owner: Vec<u8>,
    lock: Option<(StateId, u32)>,
}

impl OpenFile {
    pub fn has_lock_state(&self) -> bool {
        self.lock.is_some()
    }
}

type Connector = Box<dyn Fn() -> io::Result<TcpStream> + Send>;

pub struct Client {
    opts: ClientOptions,
    connect: Connector,
    rpc: Option<TcpTransport>,
    clientid: Option<u64>,
    session: Option<([u8; 16], u32)>,
    owners: u32,
}

/// RFC 7530 §9.1.7: the seqid advances on every reply except these.
fn advances_seqid(st: NfsStat) -> bool {
    !matches!(
        st.0,
        10022 | 10023 | 10025 | 10026 | 10036 | 10018 | 10020 | 10019
    )
}

impl Client {
    pub fn new(
        opts: ClientOptions,
        connect: impl Fn() -> io::Result<TcpStream> + Send + 'static,
    ) -> Self {
        Client {
            opts,
            connect: Box::new(connect),
            rpc: None,
            clientid: None,
            session: None,
            owners: 0,
        }
    }

    pub fn minor_version(&self) -> u32 {
        self.opts.minor_version
    }

    pub fn owner(&self) -> &[u8] {
        &self.opts.owner
    }

    pub fn clientid(&self) -> Option<u64> {
        self.clientid
    }

    /// Drops the connection and any session; the next call connects anew.
    pub fn disconnect(&mut self) {
        self.rpc = None;
        self.session = None;
        self.clientid = None;
    }

    fn transport(&mut self) -> Result<&mut TcpTransport> {
        if self.rpc.is_none() {
            let stream = (self.connect)()?;
            self.rpc = Some(TcpTransport::new(
                stream,
                Auth::Sys {
                    machine_name: self.opts.machine_name.clone(),
                    uid: 0,
                    gid: 0,
                },
            ));
        }
        self.rpc
            .as_mut()
            .ok_or_else(|| Error::Usage("no connection".into()))
    }

    /// Sends a COMPOUND (with SEQUENCE first on 4.1 when a session exists and `sequenced`),
    /// returns the reply with the SEQUENCE result removed.
    fn compound(&mut self, ops: Vec<Op>, sequenced: bool) -> Result<CompoundReply> {
        let minor = self.opts.minor_version;
        let mut sent = Vec::with_capacity(ops.len() + 1);
        let seq = if minor > 0 && sequenced {
            let (sessionid, sequenceid) = self
                .session
                .ok_or_else(|| Error::Usage("NFSv4.1 call before CREATE_SESSION".into()))?;
            sent.push(Op::Sequence {
                sessionid,
                sequenceid,
            });
            true
        } else {
            false
        };
        sent.extend(ops);
        let args = proto::encode_compound(minor, "", &sent);
        let res = match self.transport()?.call(
            proto::NFS_PROGRAM,
            proto::NFS_V4,
            proto::PROC_COMPOUND,
            &args,
        ) {
            Ok(r) => r,
            Err(e) => {
                self.rpc = None; // a broken connection is not reused
                return Err(e.into());
            }
        };
        let mut reply = proto::decode_compound(&res, &sent)?;
        if seq {
            let first = reply.ops.first().map(|o| o.status).unwrap_or(reply.status);
            if first != NfsStat::OK {
                return Err(Error::Nfs {
                    op: "SEQUENCE",
                    status: first,
                });
            }
            if let Some((_, s)) = self.session.as_mut() {
                *s = s.wrapping_add(1);
            }
            reply.ops.remove(0);
        }
        Ok(reply)
    }

    /// Runs ops and fails with the first failing op's status.
    fn run(&mut self, ops: Vec<Op>) -> Result<Vec<OpResult>> {
        self.run_with(ops, true)
    }

    fn run_with(&mut self, ops: Vec<Op>, sequenced: bool) -> Result<Vec<OpResult>> {
        let names: Vec<&'static str> = ops.iter().map(Op::name).collect();
        let reply = self.compound(ops, sequenced)?;
        for (i, op) in reply.ops.iter().enumerate() {
            if op.status != NfsStat::OK {
                return Err(Error::Nfs {
                    op: names.get(i).copied().unwrap_or("?"),
                    status: op.status,
                });
            }
        }
        if reply.status != NfsStat::OK || reply.ops.len() != names.len() {
            return Err(Error::Nfs {
                op: "COMPOUND",
                status: reply.status,
            });
        }
        Ok(reply.ops.into_iter().map(|o| o.result).collect())
    }

    /// SETCLIENTID + SETCLIENTID_CONFIRM (4.0) or EXCHANGE_ID + CREATE_SESSION (4.1):
    /// after this the server has called the recovery backend's add_clid.
    pub fn establish(&mut self) -> Result<()> {
        self.session = None;
        self.clientid = None;
        if self.opts.minor_version == 0 {
            let r = self.run(vec![Op::SetClientId {
                verifier: self.opts.verifier,
                id: self.opts.owner.clone(),
            }])?;
            let Some(OpResult::SetClientId { clientid, confirm }) = r.into_iter().next() else {
                return Err(Error::Usage("SETCLIENTID reply without a client ID".into()));
            };
            self.run(vec![Op::SetClientIdConfirm { clientid, confirm }])?;
            self.clientid = Some(clientid);
        } else {
            let r = self.run_with(
                vec![Op::ExchangeId {
                    verifier: self.opts.verifier,
                    owner: self.opts.owner.clone(),
                }],
                false,
            )?;
            let Some(OpResult::ExchangeId {
                clientid,
                sequenceid,
            }) = r.into_iter().next()
            else {
                return Err(Error::Usage("EXCHANGE_ID reply without a client ID".into()));
            };
            let r = self.run_with(
                vec![Op::CreateSession {
                    clientid,
                    sequence: sequenceid,
                    machine_name: self.opts.machine_name.clone(),
                }],
                false,
            )?;
            let Some(OpResult::CreateSession { sessionid }) = r.into_iter().next() else {
                return Err(Error::Usage(
                    "CREATE_SESSION reply without a session".into(),
                ));
            };
            self.session = Some((sessionid, 1));
            self.clientid = Some(clientid);
        }
        Ok(())
    }

    fn require_clientid(&self) -> Result<u64> {
        self.clientid
            .ok_or_else(|| Error::Usage("no client ID: call establish() first".into()))
    }

    /// Keeps the lease: RENEW (4.0) or a lone SEQUENCE (4.1).
    pub fn renew(&mut self) -> Result<()> {
        let clientid = self.require_clientid()?;
        if self.opts.minor_version == 0 {
            self.run(vec![Op::Renew(clientid)])?;
        } else {
            self.run(vec![])?;
        }
        Ok(())
    }

    /// Sleeps for `d`, renewing the lease every `every`.
    pub fn keep_alive(&mut self, d: Duration, every: Duration) -> Result<()> {
        let end = Instant::now() + d;
        loop {
            let now = Instant::now();
            if now >= end {
                return Ok(());
            }
            std::thread::sleep(every.min(end - now));
            self.renew()?;
        }
    }

    fn path_ops(path: &str) -> (Vec<Op>, String) {
        let mut parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let name = parts.pop().unwrap_or_default().to_owned();
        let mut ops = vec![Op::PutRootFh];
        ops.extend(parts.into_iter().map(|p| Op::Lookup(p.to_owned())));
        (ops, name)
    }

    /// The filehandle of `path` (from the pseudo root).
    pub fn lookup(&mut self, path: &str) -> Result<Vec<u8>> {
        let (mut ops, name) = Self::path_ops(path);
        if !name.is_empty() {
            ops.push(Op::Lookup(name));
        }
        ops.push(Op::GetFh);
        match self.run(ops)?.pop() {
            Some(OpResult::Fh(fh)) => Ok(fh),
            _ => Err(Error::Usage("GETFH returned no filehandle".into())),
        }
    }

    fn new_owners(&mut self) -> (Vec<u8>, Vec<u8>) {
        self.owners += 1;
        let base = String::from_utf8_lossy(&self.opts.owner).into_owned();
        (
            format!("open-{}-{base}", self.owners).into_bytes(),
            format!("lock-{}-{base}", self.owners).into_bytes(),
        )
    }

    fn finish_open(
        &mut self,
        fh: Vec<u8>,
        stateid: StateId,
        rflags: u32,
        owners: (Vec<u8>, Vec<u8>),
    ) -> Result<OpenFile> {
        let mut f = OpenFile {
            fh,
            stateid,
            open_owner: owners.0,
            open_seqid: 1,
            lock_owner: owners.1,
            lock: None,
        };
        if self.opts.minor_version == 0 && rflags & proto::OPEN4_RESULT_CONFIRM != 0 {
            let seqid = f.open_seqid;
            let r = self.run_seqid(
                vec![
                    Op::PutFh(f.fh.clone()),
                    Op::OpenConfirm {
                        stateid: f.stateid,
                        seqid,
                    },
                ],
                &mut f.open_seqid,
            )?;
            if let Some(OpResult::StateId(s)) = r.last() {
                f.stateid = *s;
            }
        }
        Ok(f)
    }

    /// Runs a seqid-mutating compound (4.0) and advances `seqid` as the RFC says.
    fn run_seqid(&mut self, ops: Vec<Op>, seqid: &mut u32) -> Result<Vec<OpResult>> {
        let res = self.run(ops);
        let advance = match &res {
            Ok(_) => true,
            Err(Error::Nfs { status, .. }) => advances_seqid(*status),
            Err(_) => false,
        };
        if advance && self.opts.minor_version == 0 {
            *seqid = seqid.wrapping_add(1);
        }
        res
    }

    /// OPEN (CLAIM_NULL, read+write, no create) of an existing file. On 4.1 Ganesha answers
    /// NFS4ERR_GRACE until the client sent RECLAIM_COMPLETE, in grace or not.
    pub fn open(&mut self, path: &str) -> Result<OpenFile> {
        let clientid = self.require_clientid()?;
        let (mut ops, name) = Self::path_ops(path);
        let owners = self.new_owners();
        ops.push(Op::Open {
            seqid: 0,
            access: proto::OPEN4_SHARE_ACCESS_BOTH,
            clientid,
            owner: owners.0.clone(),
            claim: Claim::Null(name),
        });
        ops.push(Op::GetFh);
        let r = self.run(ops)?;
        let n = r.len();
        match (&r[n - 2], &r[n - 1]) {
            (OpResult::Open { stateid, rflags }, OpResult::Fh(fh)) => {
                self.finish_open(fh.clone(), *stateid, *rflags, owners)
            }
            _ => Err(Error::Usage(
                "OPEN reply without stateid or filehandle".into(),
            )),
        }
    }

    /// OPEN CLAIM_PREVIOUS of `fh`: reclaims an open held before the server restarted.
    pub fn reclaim_open(&mut self, fh: &[u8]) -> Result<OpenFile> {
        let clientid = self.require_clientid()?;
        let owners = self.new_owners();
        let r = self.run(vec![
            Op::PutFh(fh.to_vec()),
            Op::Open {
                seqid: 0,
                access: proto::OPEN4_SHARE_ACCESS_BOTH,
                clientid,
                owner: owners.0.clone(),
                claim: Claim::Previous,
            },
        ])?;
        match r.last() {
            Some(OpResult::Open { stateid, rflags }) => {
                self.finish_open(fh.to_vec(), *stateid, *rflags, owners)
            }
            _ => Err(Error::Usage("OPEN reply without a stateid".into())),
        }
    }

    /// LOCK a byte range. The first lock of a file creates its lock owner from the open.
    /// On NFS4ERR_DENIED the error carries the status; use `lock_test_holder` in tests that
    /// need to see the holder.
    pub fn lock(
        &mut self,
        f: &mut OpenFile,
        kind: LockType,
        offset: u64,
        length: u64,
        reclaim: bool,
    ) -> Result<()> {
        let clientid = self.require_clientid()?;
        let v41 = self.opts.minor_version > 0;
        let locker = match f.lock {
            None => Locker::New {
                open_seqid: if v41 { 0 } else { f.open_seqid },
                open_stateid: f.stateid,
                lock_seqid: 0,
                clientid,
                owner: f.lock_owner.clone(),
            },
            Some((stateid, seqid)) => Locker::Existing {
                lock_stateid: stateid,
                lock_seqid: if v41 { 0 } else { seqid },
            },
        };
        let new_owner = f.lock.is_none();
        let ops = vec![
            Op::PutFh(f.fh.clone()),
            Op::Lock {
                write: kind == LockType::Write,
                reclaim,
                offset,
                length,
                locker,
            },
        ];
        let res = self.run(ops);
        let advance = match &res {
            Ok(_) => true,
            Err(Error::Nfs { status, .. }) => advances_seqid(*status),
            Err(_) => false,
        };
        if advance && !v41 {
            if new_owner {
                f.open_seqid = f.open_seqid.wrapping_add(1);
            } else if let Some((_, s)) = f.lock.as_mut() {
                *s = s.wrapping_add(1);
            }
        }
        match res?.last() {
            Some(OpResult::StateId(s)) => {
                // The lock owner's seqid starts at 0 on the LOCK that created it.
                let next = if new_owner {
                    1
                } else {
                    f.lock.map(|(_, q)| q).unwrap_or(1)
                };
                f.lock = Some((*s, next));
                Ok(())
            }
            _ => Err(Error::Usage("LOCK reply without a stateid".into())),
        }
    }

    pub fn unlock(&mut self, f: &mut OpenFile, offset: u64, length: u64) -> Result<()> {
        let (stateid, seqid) = f
            .lock
            .ok_or_else(|| Error::Usage("LOCKU without a lock stateid".into()))?;
        let mut next = seqid;
        let v41 = self.opts.minor_version > 0;
        let r = self.run_seqid(
            vec![
                Op::PutFh(f.fh.clone()),
                Op::Locku {
                    write: true,
                    seqid: if v41 { 0 } else { seqid },
                    stateid,
                    offset,
                    length,
                },
            ],
            &mut next,
        );
        f.lock = Some((stateid, next));
        if let Some(OpResult::StateId(s)) = r?.last() {
            f.lock = Some((*s, next));
        }
        Ok(())
    }

    pub fn close(&mut self, f: &mut OpenFile) -> Result<()> {
        let seqid = if self.opts.minor_version > 0 {
            0
        } else {
            f.open_seqid
        };
        let mut next = f.open_seqid;
        let r = self.run_seqid(
            vec![
                Op::PutFh(f.fh.clone()),
                Op::Close {
                    seqid,
                    stateid: f.stateid,
                },
            ],
            &mut next,
        );
        f.open_seqid = next;
        r.map(|_| ())
    }

    /// RECLAIM_COMPLETE (4.1): this client has reclaimed everything it will.
    pub fn reclaim_complete(&mut self) -> Result<()> {
        if self.opts.minor_version == 0 {
            return Err(Error::Usage("RECLAIM_COMPLETE is NFSv4.1+".into()));
        }
        self.run(vec![Op::ReclaimComplete]).map(|_| ())
    }

    /// DESTROY_SESSION + DESTROY_CLIENTID (4.1): a clean goodbye; the server calls rm_clid.
    pub fn destroy(&mut self) -> Result<()> {
        let clientid = self.require_clientid()?;
        if let Some((sessionid, _)) = self.session.take() {
            let reply = self.compound(vec![Op::DestroySession(sessionid)], false)?;
            check(&reply, "DESTROY_SESSION")?;
        }
        let reply = self.compound(vec![Op::DestroyClientId(clientid)], false)?;
        check(&reply, "DESTROY_CLIENTID")?;
        self.clientid = None;
        Ok(())
    }

    /// The open-owner and lock-owner names of `f`, as the server sees them.
    pub fn owners_of(f: &OpenFile) -> (&[u8], &[u8]) {
        (&f.open_owner, &f.lock_owner)
    }
}

fn check(reply: &CompoundReply, op: &'static str) -> Result<()> {
    if reply.status != NfsStat::OK {
        return Err(Error::Nfs {
            op,
            status: reply.status,
        });
    }
    Ok(())
}
