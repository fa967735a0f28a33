//! The wire format, pure: `Reader` (bounded pulls with a `what` label) and `Writer`, the
//! packet header and framing (packet.rs), controls and messages, and the data types the
//! controls carry (types.rs).

use std::fmt;

pub mod packet;
pub mod types;

pub use packet::{
    Control, Header, Message, Opcode, Operation, Packet, ReplyControl, CTDB_CURRENT_NODE,
    HEADER_LEN,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// The input ended `needed` bytes short while reading `what`.
    Truncated { what: &'static str, needed: usize },
    /// `what` announced `len` (bytes or elements) where at most `max` can be there.
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    /// A value that is not one the protocol defines.
    BadValue { what: &'static str, value: u64 },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated { what, needed } => {
                write!(f, "ctdb packet ends {needed} byte(s) short reading {what}")
            }
            WireError::TooLong { what, len, max } => {
                write!(f, "ctdb {what} announces {len}, more than the {max} there")
            }
            WireError::BadValue { what, value } => {
                write!(f, "ctdb {what}: unexpected value {value:#x}")
            }
        }
    }
}

impl std::error::Error for WireError {}

pub type Result<T> = std::result::Result<T, WireError>;

/// Bounded reads from a borrowed slice.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(WireError::Truncated {
                what,
                needed: n - self.remaining(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N, what)?);
        Ok(out)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub fn i32(&mut self, what: &'static str) -> Result<i32> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count of `elem`-byte elements that must all be in what is left: checked before
    /// the caller allocates anything for them.
    pub fn count(&mut self, elem: usize, what: &'static str) -> Result<usize> {
        let n = self.u32(what)? as usize;
        let max = self.remaining() / elem.max(1);
        if n > max {
            return Err(WireError::TooLong { what, len: n, max });
        }
        Ok(n)
    }
}

/// Writes into a growable buffer.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }
    /// Zero bytes up to a multiple of `align`.
    pub fn pad_to(&mut self, align: usize) -> &mut Self {
        while self.buf.len() % align != 0 {
            self.buf.push(0);
        }
        self
    }
}

/// `len` converted for a u32 length field; a value past u32 is a caller's bug the daemon
/// could not read either.
pub(crate) fn len32(len: usize, what: &'static str) -> Result<u32> {
    u32::try_from(len).map_err(|_| WireError::TooLong {
        what,
        len,
        max: u32::MAX as usize,
    })
}
