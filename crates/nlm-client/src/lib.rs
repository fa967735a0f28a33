//! Just enough NFSv3 and NLM4 to take and reclaim byte-range locks the way an NFSv3 client
//! does: portmapper GETPORT, MOUNT3 MNT for the export's root handle, NFS3 LOOKUP for a
//! file's handle, NLM4 LOCK (with the reclaim flag after an SM_NOTIFY) and UNLOCK.
//! All over TCP; every reply decoded with bounded lengths.

use oncrpc::pmap::{
    getaddr_args, getport_args, uaddr_port, IPPROTO_TCP, PMAPPROC_GETPORT, PMAP_PROG, PMAP_VERS,
    RPCBPROC_GETADDR, RPCB_VERS4, UADDR_MAX,
};
use oncrpc::{Auth, RpcError, TcpTransport, XdrError, XdrReader, XdrWriter};
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream};

pub const MOUNT_PROG: u32 = 100005;
pub const NFS_PROG: u32 = 100003;
pub const NLM_PROG: u32 = 100021;
const FHSIZE3: usize = 64;
const LM_MAXSTRLEN: usize = 1024;

/// nlm4_stats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NlmStat {
    Granted,
    Denied,
    DeniedNoLocks,
    Blocked,
    DeniedGracePeriod,
    Deadlock,
    Other(u32),
}

impl From<u32> for NlmStat {
    fn from(v: u32) -> Self {
        match v {
            0 => NlmStat::Granted,
            1 => NlmStat::Denied,
            2 => NlmStat::DeniedNoLocks,
            3 => NlmStat::Blocked,
            4 => NlmStat::DeniedGracePeriod,
            5 => NlmStat::Deadlock,
            o => NlmStat::Other(o),
        }
    }
}

#[derive(Debug)]
pub enum Error {
    /// Transport, decoding or RPC-level failure (RpcError carries I/O and XDR errors).
    Rpc(RpcError),
    /// A MOUNT or NFS3 status other than OK.
    Status {
        what: &'static str,
        status: u32,
    },
    NotRegistered {
        prog: u32,
        vers: u32,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Rpc(e) => write!(f, "{e}"),
            Error::Status { what, status } => write!(f, "{what}: status {status}"),
            Error::NotRegistered { prog, vers } => {
                write!(
                    f,
                    "program {prog} version {vers} is not registered with rpcbind"
                )
            }
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
        Error::Rpc(e.into())
    }
}
impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Rpc(e.into())
    }
}

pub type Result<T> = std::result::Result<T, Error>;

type Connector = Box<dyn Fn(SocketAddr) -> io::Result<TcpStream> + Send>;

/// One NLM client host: its caller name (what the server's statd monitors) and how to
/// reach the server.
pub struct NlmClient {
    pub server: IpAddr,
    pub caller_name: String,
    connect: Connector,
    auth: Auth,
}

/// A lock's identity: the file and the owner (oh + svid), as NLM names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lock {
    pub fh: Vec<u8>,
    pub owner: Vec<u8>,
    pub svid: i32,
    pub offset: u64,
    pub len: u64,
}

impl NlmClient {
    pub fn new(
        server: IpAddr,
        caller_name: &str,
        connect: impl Fn(SocketAddr) -> io::Result<TcpStream> + Send + 'static,
    ) -> Self {
        NlmClient {
            server,
            caller_name: caller_name.into(),
            connect: Box::new(connect),
            auth: Auth::Sys {
                machine_name: caller_name.into(),
                uid: 0,
                gid: 0,
            },
        }
    }

    fn transport(&self, port: u16) -> Result<TcpTransport> {
        // Timeouts are the connector's to set.
        let s = (self.connect)(SocketAddr::new(self.server, port))?;
        Ok(TcpTransport::new(s, self.auth.clone()))
    }

    /// rpcbind over TCP: GETPORT (version 2) for an IPv4 server, GETADDR (version 4,
    /// netid tcp6) for an IPv6 one, as a real client asks (version 2 names IPv4 sockets).
    pub fn getport(&self, prog: u32, vers: u32) -> Result<u16> {
        let mut t = self.transport(111)?;
        if self.server.is_ipv6() {
            let args = getaddr_args(prog, vers, "tcp6");
            let reply = t.call(PMAP_PROG, RPCB_VERS4, RPCBPROC_GETADDR, &args)?;
            let uaddr = XdrReader::new(&reply).string(UADDR_MAX, "uaddr")?;
            return uaddr_port(&uaddr)
                .filter(|p| *p != 0)
                .ok_or(Error::NotRegistered { prog, vers });
        }
        let args = getport_args(prog, vers, IPPROTO_TCP);
        let reply = t.call(PMAP_PROG, PMAP_VERS, PMAPPROC_GETPORT, &args)?;
        let port = XdrReader::new(&reply).u32("port")?;
        if port == 0 || port > u32::from(u16::MAX) {
            return Err(Error::NotRegistered { prog, vers });
        }
        Ok(port as u16)
    }

    /// MOUNT3 MNT: the root handle of `path` (the export's real path for NFSv3).
    pub fn mount(&self, path: &str) -> Result<Vec<u8>> {
        let mut t = self.transport(self.getport(MOUNT_PROG, 3)?)?;
        let mut w = XdrWriter::new();
        w.string(path);
        let reply = t.call(MOUNT_PROG, 3, 1, w.as_bytes())?;
        let mut r = XdrReader::new(&reply);
        let status = r.u32("mountstat3")?;
        if status != 0 {
            return Err(Error::Status {
                what: "MNT",
                status,
            });
        }
        Ok(r.opaque(FHSIZE3, "fhandle3")?.to_vec())
    }

    /// NFS3 LOOKUP of `name` in directory `dir`.
    pub fn lookup(&self, dir: &[u8], name: &str) -> Result<Vec<u8>> {
        let mut t = self.transport(2049)?;
        let mut w = XdrWriter::new();
        w.opaque(dir).string(name);
        let reply = t.call(NFS_PROG, 3, 3, w.as_bytes())?;
        let mut r = XdrReader::new(&reply);
        let status = r.u32("nfsstat3")?;
        if status != 0 {
            return Err(Error::Status {
                what: "LOOKUP",
                status,
            });
        }
        Ok(r.opaque(FHSIZE3, "nfs_fh3")?.to_vec())
    }

    fn alock(&self, w: &mut XdrWriter, l: &Lock) {
        w.string(&self.caller_name)
            .opaque(&l.fh)
            .opaque(&l.owner)
            .i32(l.svid)
            .u64(l.offset)
            .u64(l.len);
    }

    fn nlm(&self, proc_: u32, args: &[u8]) -> Result<NlmStat> {
        let mut t = self.transport(self.getport(NLM_PROG, 4)?)?;
        let reply = t.call(NLM_PROG, 4, proc_, args)?;
        let mut r = XdrReader::new(&reply);
        r.opaque(LM_MAXSTRLEN, "cookie")?;
        Ok(NlmStat::from(r.u32("nlm4_stats")?))
    }

    /// NLM4_LOCK, non-blocking, exclusive; `reclaim` after the server's SM_NOTIFY.
    pub fn lock(&self, l: &Lock, reclaim: bool, state: i32) -> Result<NlmStat> {
        let mut w = XdrWriter::new();
        w.opaque(b"gctdb").bool(false).bool(true);
        self.alock(&mut w, l);
        w.bool(reclaim).i32(state);
        self.nlm(2, w.as_bytes())
    }

    /// NLM4_UNLOCK.
    pub fn unlock(&self, l: &Lock) -> Result<NlmStat> {
        let mut w = XdrWriter::new();
        w.opaque(b"gctdb");
        self.alock(&mut w, l);
        self.nlm(4, w.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_map_and_unknown_values_are_kept() {
        assert_eq!(NlmStat::from(0), NlmStat::Granted);
        assert_eq!(NlmStat::from(4), NlmStat::DeniedGracePeriod);
        assert_eq!(NlmStat::from(77), NlmStat::Other(77));
    }
}
