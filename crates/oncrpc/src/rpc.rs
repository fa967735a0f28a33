//! ONC RPC v2 calls: the call header with AUTH_NONE or AUTH_SYS, reply parsing that maps
//! every rejection to an error naming it, and a TCP transport with record marking.

use crate::xdr::{XdrError, XdrReader, XdrWriter};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU32, Ordering};

const CALL: u32 = 0;
const REPLY: u32 = 1;
const MSG_ACCEPTED: u32 = 0;
const MSG_DENIED: u32 = 1;
const AUTH_NONE: u32 = 0;
const AUTH_SYS: u32 = 1;
/// RFC 5531: opaque_auth bodies are at most 400 bytes.
const MAX_AUTH_BODY: usize = 400;
/// Largest reply we accept on TCP: far above any COMPOUND reply our client asks for.
pub const MAX_TCP_REPLY: usize = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    Sys {
        machine_name: String,
        uid: u32,
        gid: u32,
    },
}

impl Auth {
    fn encode(&self, w: &mut XdrWriter) {
        match self {
            Auth::None => {
                w.u32(AUTH_NONE).opaque(&[]);
            }
            Auth::Sys {
                machine_name,
                uid,
                gid,
            } => {
                let mut body = XdrWriter::new();
                body.u32(0) // stamp: servers ignore it
                    .string(machine_name)
                    .u32(*uid)
                    .u32(*gid)
                    .u32(0); // no supplementary gids
                w.u32(AUTH_SYS).opaque(body.as_bytes());
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallHeader {
    pub xid: u32,
    pub prog: u32,
    pub vers: u32,
    pub proc_: u32,
}

/// A process-wide xid sequence seeded from the clock, so two runs do not reuse xids a
/// server's duplicate request cache might still hold.
pub fn next_xid() -> u32 {
    static XID: AtomicU32 = AtomicU32::new(0);
    let _ = XID.compare_exchange(
        0,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32).rotate_left(20))
            .unwrap_or(1)
            | 1,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    XID.fetch_add(1, Ordering::Relaxed)
}

/// Encodes a call message: header, credentials, a null verifier, then `args` (already XDR).
pub fn encode_call(h: &CallHeader, auth: &Auth, args: &[u8]) -> Vec<u8> {
    let mut w = XdrWriter::new();
    w.u32(h.xid)
        .u32(CALL)
        .u32(2)
        .u32(h.prog)
        .u32(h.vers)
        .u32(h.proc_);
    auth.encode(&mut w);
    w.u32(AUTH_NONE).opaque(&[]);
    w.raw(args);
    w.into_bytes()
}

#[derive(Debug)]
pub enum RpcError {
    Io(io::Error),
    Xdr(XdrError),
    /// A reply whose xid is not the call's.
    XidMismatch {
        sent: u32,
        got: u32,
    },
    NotAReply(u32),
    ProgUnavail,
    ProgMismatch {
        low: u32,
        high: u32,
    },
    ProcUnavail,
    GarbageArgs,
    SystemErr,
    RpcMismatch {
        low: u32,
        high: u32,
    },
    AuthError(u32),
    UnknownStatus {
        what: &'static str,
        value: u32,
    },
    TooLarge {
        len: usize,
        max: usize,
    },
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RpcError::Io(e) => write!(f, "RPC transport: {e}"),
            RpcError::Xdr(e) => write!(f, "RPC reply: {e}"),
            RpcError::XidMismatch { sent, got } => {
                write!(
                    f,
                    "RPC reply xid {got:#x} does not match call xid {sent:#x}"
                )
            }
            RpcError::NotAReply(t) => write!(f, "RPC message type {t} where a reply was expected"),
            RpcError::ProgUnavail => write!(f, "RPC program unavailable on the server"),
            RpcError::ProgMismatch { low, high } => {
                write!(
                    f,
                    "RPC program version mismatch (server has {low}..={high})"
                )
            }
            RpcError::ProcUnavail => write!(f, "RPC procedure unavailable"),
            RpcError::GarbageArgs => write!(f, "RPC server could not decode the arguments"),
            RpcError::SystemErr => write!(f, "RPC server system error"),
            RpcError::RpcMismatch { low, high } => {
                write!(f, "RPC version mismatch (server has {low}..={high})")
            }
            RpcError::AuthError(s) => write!(f, "RPC authentication error {s}"),
            RpcError::UnknownStatus { what, value } => write!(f, "RPC {what} {value} unknown"),
            RpcError::TooLarge { len, max } => {
                write!(f, "RPC record of {len} bytes exceeds the {max} allowed")
            }
        }
    }
}

impl std::error::Error for RpcError {}

impl From<io::Error> for RpcError {
    fn from(e: io::Error) -> Self {
        RpcError::Io(e)
    }
}

impl From<XdrError> for RpcError {
    fn from(e: XdrError) -> Self {
        RpcError::Xdr(e)
    }
}

/// The xid of a reply, for matching replies to calls on datagram transports.
pub fn reply_xid(msg: &[u8]) -> Result<u32, RpcError> {
    Ok(XdrReader::new(msg).u32("xid")?)
}

/// Checks a reply message against the call's xid and returns the procedure's results.
pub fn parse_reply(msg: &[u8], xid: u32) -> Result<&[u8], RpcError> {
    let mut r = XdrReader::new(msg);
    let got = r.u32("xid")?;
    if got != xid {
        return Err(RpcError::XidMismatch { sent: xid, got });
    }
    let mtype = r.u32("msg_type")?;
    if mtype != REPLY {
        return Err(RpcError::NotAReply(mtype));
    }
    match r.u32("reply_stat")? {
        MSG_ACCEPTED => {
            r.u32("verifier flavor")?;
            r.opaque(MAX_AUTH_BODY, "verifier body")?;
            match r.u32("accept_stat")? {
                0 => Ok(r.rest()),
                1 => Err(RpcError::ProgUnavail),
                2 => Err(RpcError::ProgMismatch {
                    low: r.u32("low")?,
                    high: r.u32("high")?,
                }),
                3 => Err(RpcError::ProcUnavail),
                4 => Err(RpcError::GarbageArgs),
                5 => Err(RpcError::SystemErr),
                value => Err(RpcError::UnknownStatus {
                    what: "accept_stat",
                    value,
                }),
            }
        }
        MSG_DENIED => match r.u32("reject_stat")? {
            0 => Err(RpcError::RpcMismatch {
                low: r.u32("low")?,
                high: r.u32("high")?,
            }),
            1 => Err(RpcError::AuthError(r.u32("auth_stat")?)),
            value => Err(RpcError::UnknownStatus {
                what: "reject_stat",
                value,
            }),
        },
        value => Err(RpcError::UnknownStatus {
            what: "reply_stat",
            value,
        }),
    }
}

/// One RPC program on one TCP connection, one call at a time.
pub struct TcpTransport {
    stream: TcpStream,
    pub auth: Auth,
}

impl TcpTransport {
    pub fn new(stream: TcpStream, auth: Auth) -> Self {
        TcpTransport { stream, auth }
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    pub fn call(
        &mut self,
        prog: u32,
        vers: u32,
        proc_: u32,
        args: &[u8],
    ) -> Result<Vec<u8>, RpcError> {
        let h = CallHeader {
            xid: next_xid(),
            prog,
            vers,
            proc_,
        };
        let msg = encode_call(&h, &self.auth, args);
        write_record(&mut self.stream, &msg)?;
        let reply = read_record(&mut self.stream, MAX_TCP_REPLY)?;
        Ok(parse_reply(&reply, h.xid)?.to_vec())
    }
}

/// Writes one record as a single last fragment.
pub fn write_record(w: &mut impl Write, msg: &[u8]) -> io::Result<()> {
    let len = u32::try_from(msg.len())
        .ok()
        .filter(|l| *l < 0x8000_0000)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "RPC record over 2 GiB"))?;
    let mut buf = Vec::with_capacity(msg.len() + 4);
    buf.extend_from_slice(&(len | 0x8000_0000).to_be_bytes());
    buf.extend_from_slice(msg);
    w.write_all(&buf)
}

/// Reads fragments until the last one, refusing records larger than `max`. Memory grows with
/// the bytes that arrive, not with the length a fragment header announces: a peer that
/// announces `max` bytes and sends none costs nothing.
pub fn read_record(r: &mut impl Read, max: usize) -> Result<Vec<u8>, RpcError> {
    let mut out = Vec::new();
    loop {
        let mut hdr = [0u8; 4];
        r.read_exact(&mut hdr)?;
        let word = u32::from_be_bytes(hdr);
        let len = (word & 0x7fff_ffff) as usize;
        if out.len() + len > max {
            return Err(RpcError::TooLarge {
                len: out.len() + len,
                max,
            });
        }
        let start = out.len();
        Read::take(&mut *r, len as u64).read_to_end(&mut out)?;
        let got = out.len() - start;
        if got < len {
            return Err(RpcError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("RPC record fragment of {len} bytes ends after {got}"),
            )));
        }
        if word & 0x8000_0000 != 0 {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(xid: u32, body: impl FnOnce(&mut XdrWriter)) -> Vec<u8> {
        let mut w = XdrWriter::new();
        w.u32(xid).u32(REPLY);
        body(&mut w);
        w.into_bytes()
    }

    #[test]
    fn call_header_is_rfc5531_with_auth_sys() {
        let msg = encode_call(
            &CallHeader {
                xid: 0x11,
                prog: 100003,
                vers: 4,
                proc_: 1,
            },
            &Auth::Sys {
                machine_name: "m".into(),
                uid: 0,
                gid: 0,
            },
            &[0xaa, 0xbb, 0xcc, 0xdd],
        );
        let mut r = XdrReader::new(&msg);
        let words: Vec<u32> = (0..6).map(|_| r.u32("w").unwrap()).collect();
        assert_eq!(words, vec![0x11, CALL, 2, 100003, 4, 1]);
        assert_eq!(r.u32("flavor").unwrap(), AUTH_SYS);
        let body = r.opaque(400, "body").unwrap().to_vec();
        let mut b = XdrReader::new(&body);
        b.u32("stamp").unwrap();
        assert_eq!(b.string(255, "machine").unwrap(), "m");
        assert_eq!(r.u32("verf").unwrap(), AUTH_NONE);
        assert_eq!(r.opaque(400, "verf").unwrap(), b"");
        assert_eq!(r.rest(), &[0xaa, 0xbb, 0xcc, 0xdd]);
    }

    #[test]
    fn accepted_success_returns_the_results() {
        let msg = reply(5, |w| {
            w.u32(MSG_ACCEPTED)
                .u32(AUTH_NONE)
                .opaque(&[])
                .u32(0)
                .u32(42);
        });
        assert_eq!(parse_reply(&msg, 5).unwrap(), &42u32.to_be_bytes());
    }

    #[test]
    fn every_rejection_is_named() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                reply(1, |w| {
                    w.u32(MSG_ACCEPTED).u32(0).opaque(&[]).u32(1);
                }),
                "unavailable",
            ),
            (
                reply(1, |w| {
                    w.u32(MSG_ACCEPTED).u32(0).opaque(&[]).u32(2).u32(1).u32(3);
                }),
                "1..=3",
            ),
            (
                reply(1, |w| {
                    w.u32(MSG_ACCEPTED).u32(0).opaque(&[]).u32(4);
                }),
                "decode",
            ),
            (
                reply(1, |w| {
                    w.u32(MSG_DENIED).u32(1).u32(5);
                }),
                "authentication error 5",
            ),
            (
                reply(1, |w| {
                    w.u32(MSG_DENIED).u32(0).u32(2).u32(2);
                }),
                "version mismatch",
            ),
            (
                reply(1, |w| {
                    w.u32(7);
                }),
                "reply_stat 7",
            ),
        ];
        for (msg, want) in cases {
            let err = parse_reply(&msg, 1).unwrap_err().to_string();
            assert!(err.contains(want), "{err} lacks {want}");
        }
        let msg = reply(2, |w| {
            w.u32(MSG_ACCEPTED);
        });
        assert!(matches!(
            parse_reply(&msg, 3),
            Err(RpcError::XidMismatch { sent: 3, got: 2 })
        ));
    }

    #[test]
    fn every_truncation_of_a_reply_is_an_error_not_a_panic() {
        let msg = reply(9, |w| {
            w.u32(MSG_ACCEPTED)
                .u32(AUTH_SYS)
                .opaque(b"verifier")
                .u32(2)
                .u32(1)
                .u32(4);
        });
        for cut in 0..msg.len() {
            assert!(parse_reply(&msg[..cut], 9).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn record_marking_joins_fragments_and_bounds_size() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&3u32.to_be_bytes());
        wire.extend_from_slice(b"abc");
        wire.extend_from_slice(&(0x8000_0000u32 | 2).to_be_bytes());
        wire.extend_from_slice(b"de");
        assert_eq!(read_record(&mut &wire[..], 16).unwrap(), b"abcde");
        assert!(matches!(
            read_record(&mut &wire[..], 4),
            Err(RpcError::TooLarge { len: 5, max: 4 })
        ));
        let mut out = Vec::new();
        write_record(&mut out, b"xyz").unwrap();
        assert_eq!(read_record(&mut &out[..], 16).unwrap(), b"xyz");
    }
}
