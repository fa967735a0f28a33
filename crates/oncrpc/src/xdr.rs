//! XDR encoding into a growable buffer and bounded decoding from a borrowed slice.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XdrError {
    /// The input ended `needed` bytes short while reading `what`.
    Truncated { what: &'static str, needed: usize },
    /// A variable-length item announced `len` bytes (or elements) but at most `max` are allowed.
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    /// A boolean that was neither 0 nor 1, or a discriminant we do not know.
    BadValue { what: &'static str, value: u32 },
    /// Padding bytes that were not zero.
    BadPadding { what: &'static str },
}

impl fmt::Display for XdrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XdrError::Truncated { what, needed } => {
                write!(f, "XDR input ends {needed} byte(s) short reading {what}")
            }
            XdrError::TooLong { what, len, max } => {
                write!(f, "XDR {what} announces {len}, more than the {max} allowed")
            }
            XdrError::BadValue { what, value } => write!(f, "XDR {what}: unexpected value {value}"),
            XdrError::BadPadding { what } => write!(f, "XDR {what}: non-zero padding"),
        }
    }
}

impl std::error::Error for XdrError {}

fn pad(len: usize) -> usize {
    (4 - len % 4) % 4
}

#[derive(Debug, Default, Clone)]
pub struct XdrWriter {
    buf: Vec<u8>,
}

impl XdrWriter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u32(u32::from(v))
    }

    /// Fixed-length opaque: the bytes and padding, no length word.
    pub fn fixed(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self.buf.extend(std::iter::repeat(0).take(pad(bytes.len())));
        self
    }

    /// Variable-length opaque or string: length word, bytes, padding.
    pub fn opaque(&mut self, bytes: &[u8]) -> &mut Self {
        // Callers hold lengths far below 4 GiB (protocol limits are a few KiB).
        self.u32(bytes.len() as u32);
        self.fixed(bytes)
    }

    pub fn string(&mut self, s: &str) -> &mut Self {
        self.opaque(s.as_bytes())
    }

    /// Raw bytes already in XDR form (a nested encoding).
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self
    }
}

#[derive(Debug, Clone)]
pub struct XdrReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> XdrReader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        XdrReader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], XdrError> {
        if self.remaining() < n {
            return Err(XdrError::Truncated {
                what,
                needed: n - self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, XdrError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn i32(&mut self, what: &'static str) -> Result<i32, XdrError> {
        Ok(self.u32(what)? as i32)
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64, XdrError> {
        let hi = self.u32(what)? as u64;
        let lo = self.u32(what)? as u64;
        Ok(hi << 32 | lo)
    }

    pub fn bool(&mut self, what: &'static str) -> Result<bool, XdrError> {
        match self.u32(what)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(XdrError::BadValue { what, value }),
        }
    }

    pub fn fixed(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], XdrError> {
        let bytes = self.take(n, what)?;
        let padding = self.take(pad(n), what)?;
        if padding.iter().any(|&b| b != 0) {
            return Err(XdrError::BadPadding { what });
        }
        Ok(bytes)
    }

    pub fn fixed_array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], XdrError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.fixed(N, what)?);
        Ok(out)
    }

    /// Variable-length opaque of at most `max` bytes.
    pub fn opaque(&mut self, max: usize, what: &'static str) -> Result<&'a [u8], XdrError> {
        let len = self.u32(what)? as usize;
        if len > max {
            return Err(XdrError::TooLong { what, len, max });
        }
        self.fixed(len, what)
    }

    /// A string of at most `max` bytes; invalid UTF-8 is replaced, never rejected, because
    /// peers' names are only reported, not interpreted.
    pub fn string(&mut self, max: usize, what: &'static str) -> Result<String, XdrError> {
        Ok(String::from_utf8_lossy(self.opaque(max, what)?).into_owned())
    }

    /// The element count of a variable-length array, at most `max`.
    pub fn count(&mut self, max: usize, what: &'static str) -> Result<usize, XdrError> {
        let len = self.u32(what)? as usize;
        if len > max {
            return Err(XdrError::TooLong { what, len, max });
        }
        Ok(len)
    }

    /// A variable-length array of u32 (an NFSv4 bitmap, a gid list).
    pub fn u32_array(&mut self, max: usize, what: &'static str) -> Result<Vec<u32>, XdrError> {
        let n = self.count(max, what)?;
        (0..n).map(|_| self.u32(what)).collect()
    }

    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_primitive_with_padding() {
        let mut w = XdrWriter::new();
        w.u32(7)
            .i32(-2)
            .u64(0x0102_0304_0506_0708)
            .bool(true)
            .opaque(b"abcde")
            .string("xy")
            .fixed(&[9, 9, 9]);
        let bytes = w.into_bytes();
        assert_eq!(bytes.len(), 4 + 4 + 8 + 4 + (4 + 8) + (4 + 4) + 4);
        let mut r = XdrReader::new(&bytes);
        assert_eq!(r.u32("a").unwrap(), 7);
        assert_eq!(r.i32("b").unwrap(), -2);
        assert_eq!(r.u64("c").unwrap(), 0x0102_0304_0506_0708);
        assert!(r.bool("d").unwrap());
        assert_eq!(r.opaque(5, "e").unwrap(), b"abcde");
        assert_eq!(r.string(16, "f").unwrap(), "xy");
        assert_eq!(r.fixed(3, "g").unwrap(), &[9, 9, 9]);
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn rejects_lengths_over_the_bound_before_reading() {
        let mut w = XdrWriter::new();
        w.u32(u32::MAX);
        let bytes = w.into_bytes();
        let err = XdrReader::new(&bytes).opaque(1024, "name").unwrap_err();
        assert_eq!(
            err,
            XdrError::TooLong {
                what: "name",
                len: u32::MAX as usize,
                max: 1024
            }
        );
        assert!(err.to_string().contains("name"));
    }

    #[test]
    fn truncation_bad_bool_and_bad_padding_are_errors() {
        assert!(matches!(
            XdrReader::new(&[0, 0, 1]).u32("x"),
            Err(XdrError::Truncated { needed: 1, .. })
        ));
        assert!(matches!(
            XdrReader::new(&[0, 0, 0, 2]).bool("flag"),
            Err(XdrError::BadValue { value: 2, .. })
        ));
        assert!(matches!(
            XdrReader::new(&[0, 0, 0, 1, b'a', 1, 0, 0]).opaque(8, "o"),
            Err(XdrError::BadPadding { .. })
        ));
        // Announced 8 bytes, only 4 present.
        assert!(matches!(
            XdrReader::new(&[0, 0, 0, 8, 1, 2, 3, 4]).opaque(8, "o"),
            Err(XdrError::Truncated { .. })
        ));
    }

    #[test]
    fn every_prefix_of_a_valid_message_fails_cleanly() {
        let mut w = XdrWriter::new();
        w.u32(1).opaque(b"hello world").u64(5).string("end");
        let bytes = w.into_bytes();
        for cut in 0..bytes.len() {
            let mut r = XdrReader::new(&bytes[..cut]);
            let res = (|| {
                r.u32("a")?;
                r.opaque(64, "b")?;
                r.u64("c")?;
                r.string(64, "d")
            })();
            assert!(res.is_err(), "prefix {cut} decoded");
        }
    }
}
