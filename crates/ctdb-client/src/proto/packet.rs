//! Packets: the 32-byte header every packet starts with, REQ_CONTROL / REPLY_CONTROL and
//! REQ_MESSAGE, and the framing of a byte stream into packets.
//!
//! Samba: ctdb/protocol/protocol.h (struct ctdb_req_header), protocol_header.c,
//! protocol_control.c, protocol_message.c; the daemon's side in ctdb/common/ctdb_io.c
//! (queue_process, ctdb_queue_send). `length` is the whole packet including zero padding
//! to a multiple of 8 (CTDB_DS_ALIGNMENT); it is also the only framing on the stream.

use super::{len32, Reader, Result, WireError, Writer};

pub const CTDB_MAGIC: u32 = 0x4354_4442; // "CTDB"
pub const CTDB_PROTOCOL: u32 = 1;
pub const HEADER_LEN: usize = 32;
/// Packets are padded to this (CTDB_DS_ALIGNMENT).
pub const ALIGNMENT: usize = 8;
/// The node the client is connected to.
pub const CTDB_CURRENT_NODE: u32 = 0xF000_0001;
/// A PNN not known yet (the reference client's srcnode before GET_PNN answered).
pub const CTDB_UNKNOWN_PNN: u32 = 0xFFFF_FFFF;
/// The control is not answered (required for broadcasts).
pub const CTRL_FLAG_NOREPLY: u32 = 1;

/// enum ctdb_operation (the values a client sends or receives).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    ReqCall,
    ReplyCall,
    ReqMessage,
    ReqControl,
    ReplyControl,
    Other(u32),
}

impl Operation {
    pub fn code(self) -> u32 {
        match self {
            Operation::ReqCall => 0,
            Operation::ReplyCall => 1,
            Operation::ReqMessage => 5,
            Operation::ReqControl => 7,
            Operation::ReplyControl => 8,
            Operation::Other(v) => v,
        }
    }

    pub fn from_code(v: u32) -> Operation {
        match v {
            0 => Operation::ReqCall,
            1 => Operation::ReplyCall,
            5 => Operation::ReqMessage,
            7 => Operation::ReqControl,
            8 => Operation::ReplyControl,
            v => Operation::Other(v),
        }
    }
}

/// enum ctdb_controls: the opcodes this crate uses, identical in Samba 4.17 and 4.22.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Opcode {
    ProcessExists = 0,
    Ping = 3,
    GetDbPath = 4,
    GetDbMap = 9,
    GetRecMode = 15,
    DbAttach = 18,
    RegisterSrvid = 23,
    DeregisterSrvid = 24,
    GetDbName = 25,
    GetPnn = 35,
    GetTunable = 49,
    DbAttachPersistent = 61,
    GetPublicIps = 90,
    GetNodeMap = 91,
    Trans3Commit = 119,
    GetDbSeqnum = 120,
    DbGetHealth = 122,
    GetRunState = 138,
    DbOpenFlags = 149,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The whole packet, padding included.
    pub length: u32,
    pub generation: u32,
    pub operation: Operation,
    pub destnode: u32,
    pub srcnode: u32,
    pub reqid: u32,
}

impl Header {
    fn push(&self, w: &mut Writer) {
        w.u32(self.length)
            .u32(CTDB_MAGIC)
            .u32(CTDB_PROTOCOL)
            .u32(self.generation)
            .u32(self.operation.code())
            .u32(self.destnode)
            .u32(self.srcnode)
            .u32(self.reqid);
    }

    pub fn pull(r: &mut Reader) -> Result<Header> {
        let length = r.u32("header length")?;
        let magic = r.u32("header magic")?;
        if magic != CTDB_MAGIC {
            return Err(WireError::BadValue {
                what: "header magic",
                value: magic.into(),
            });
        }
        let version = r.u32("header version")?;
        if version != CTDB_PROTOCOL {
            return Err(WireError::BadValue {
                what: "header protocol version",
                value: version.into(),
            });
        }
        Ok(Header {
            length,
            generation: r.u32("header generation")?,
            operation: Operation::from_code(r.u32("header operation")?),
            destnode: r.u32("header destnode")?,
            srcnode: r.u32("header srcnode")?,
            reqid: r.u32("header reqid")?,
        })
    }
}

/// A control request: what the client asks of `destnode`'s daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Control {
    pub opcode: u32,
    pub srvid: u64,
    pub flags: u32,
    pub data: Vec<u8>,
}

/// A control's answer. Some controls answer in `status` itself (GET_PNN: the PNN).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyControl {
    pub status: i32,
    pub data: Vec<u8>,
    /// The daemon's error text, if any (sent without a NUL; a trailing NUL is dropped).
    pub error: Option<String>,
}

/// A message: from the daemon, what a registered srvid receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub srvid: u64,
    pub data: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    ReplyControl(Header, ReplyControl),
    Message(Header, Message),
    /// REQ_CONTROL: what a daemon receives (the tests' fake daemon decodes them).
    Control(Header, Control),
    /// Any other operation (calls, tunnels): the header, and the body left undecoded.
    Other(Header, Vec<u8>),
}

fn finish(mut w: Writer, header: &mut Header) -> Vec<u8> {
    w.pad_to(ALIGNMENT);
    let length = w.buf.len() as u32;
    w.buf[..4].copy_from_slice(&length.to_le_bytes());
    header.length = length;
    w.buf
}

fn start(header: &Header) -> Writer {
    let mut w = Writer::default();
    header.push(&mut w);
    w
}

/// A REQ_CONTROL packet. `client_id` is sent as 0: ctdbd puts its own in (ctdb_daemon.c).
pub fn encode_control(reqid: u32, destnode: u32, srcnode: u32, c: &Control) -> Result<Vec<u8>> {
    let mut h = Header {
        length: 0,
        generation: 0,
        operation: Operation::ReqControl,
        destnode,
        srcnode,
        reqid,
    };
    let mut w = start(&h);
    w.u32(c.opcode)
        .u32(0)
        .u64(c.srvid)
        .u32(0)
        .u32(c.flags)
        .u32(len32(c.data.len(), "control data")?)
        .bytes(&c.data);
    Ok(finish(w, &mut h))
}

/// A REPLY_CONTROL packet, as ctdbd builds it (the tests' fake daemon).
pub fn encode_reply_control(header: &Header, r: &ReplyControl) -> Result<Vec<u8>> {
    let mut h = Header {
        operation: Operation::ReplyControl,
        ..*header
    };
    let err = r.error.as_deref().unwrap_or("").as_bytes();
    let mut w = start(&h);
    w.i32(r.status)
        .u32(len32(r.data.len(), "reply data")?)
        .u32(len32(err.len(), "reply error")?)
        .bytes(&r.data)
        .bytes(err);
    Ok(finish(w, &mut h))
}

/// A REQ_MESSAGE packet.
pub fn encode_message(header: &Header, m: &Message) -> Result<Vec<u8>> {
    let mut h = Header {
        operation: Operation::ReqMessage,
        ..*header
    };
    let mut w = start(&h);
    w.u64(m.srvid)
        .u32(len32(m.data.len(), "message data")?)
        .bytes(&m.data);
    Ok(finish(w, &mut h))
}

/// Decodes one whole packet (as `Framer` cut it). The header's length must be the slice's.
pub fn decode(buf: &[u8]) -> Result<Packet> {
    let mut r = Reader::new(buf);
    let h = Header::pull(&mut r)?;
    if h.length as usize != buf.len() {
        return Err(WireError::BadValue {
            what: "header length (not the packet's)",
            value: h.length.into(),
        });
    }
    Ok(match h.operation {
        Operation::ReplyControl => {
            let status = r.i32("reply status")?;
            let datalen = r.u32("reply datalen")? as usize;
            let errorlen = r.u32("reply errorlen")? as usize;
            let data = r.bytes(datalen, "reply data")?.to_vec();
            let err = r.bytes(errorlen, "reply error")?;
            let err = err.strip_suffix(&[0]).unwrap_or(err);
            let error = (!err.is_empty()).then(|| String::from_utf8_lossy(err).into_owned());
            Packet::ReplyControl(
                h,
                ReplyControl {
                    status,
                    data,
                    error,
                },
            )
        }
        Operation::ReqMessage => {
            let srvid = r.u64("message srvid")?;
            let len = r.u32("message datalen")? as usize;
            let data = r.bytes(len, "message data")?.to_vec();
            Packet::Message(h, Message { srvid, data })
        }
        Operation::ReqControl => {
            let opcode = r.u32("control opcode")?;
            r.u32("control pad")?;
            let srvid = r.u64("control srvid")?;
            r.u32("control client_id")?;
            let flags = r.u32("control flags")?;
            let len = r.u32("control datalen")? as usize;
            let data = r.bytes(len, "control data")?.to_vec();
            Packet::Control(
                h,
                Control {
                    opcode,
                    srvid,
                    flags,
                    data,
                },
            )
        }
        _ => Packet::Other(h, r.bytes(r.remaining(), "body")?.to_vec()),
    })
}

/// Cuts a byte stream into packets: the first u32 of each is its length. Sans I/O: the
/// driver feeds what it read and takes the packets out. A length below the header's, or
/// above `max_packet` (the protocol has no limit of its own; ours bounds memory), is an
/// error: the stream cannot be resynchronised and the connection must be dropped.
pub struct Framer {
    buf: Vec<u8>,
    max_packet: usize,
}

impl Framer {
    pub fn new(max_packet: usize) -> Framer {
        Framer {
            buf: Vec::new(),
            max_packet,
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole packet, if it has arrived.
    pub fn next_packet(&mut self) -> Result<Option<Vec<u8>>> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let mut len = [0u8; 4];
        len.copy_from_slice(&self.buf[..4]);
        let len = u32::from_le_bytes(len) as usize;
        if len < HEADER_LEN {
            return Err(WireError::BadValue {
                what: "packet length (below a header's)",
                value: len as u64,
            });
        }
        if len > self.max_packet {
            return Err(WireError::TooLong {
                what: "packet length",
                len,
                max: self.max_packet,
            });
        }
        if self.buf.len() < len {
            return Ok(None);
        }
        let rest = self.buf.split_off(len);
        Ok(Some(std::mem::replace(&mut self.buf, rest)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// GET_PNN as Samba's client sends it (64 bytes: 60 padded to 8).
    #[test]
    fn get_pnn_is_the_bytes_samba_sends() {
        let c = Control {
            opcode: Opcode::GetPnn as u32,
            srvid: 0,
            flags: 0,
            data: vec![],
        };
        let bytes = encode_control(7, CTDB_CURRENT_NODE, CTDB_UNKNOWN_PNN, &c).unwrap();
        assert_eq!(
            bytes,
            hex(
                "40000000 42445443 01000000 00000000 07000000 010000f0 ffffffff 07000000
                 23000000 00000000 0000000000000000 00000000 00000000 00000000 00000000"
            )
        );
        match decode(&bytes).unwrap() {
            Packet::Control(h, back) => {
                assert_eq!((h.reqid, h.length, back), (7, 64, c));
            }
            p => panic!("{p:?}"),
        }
    }

    /// ctdbd's answer to GET_PNN: status is the PNN, 44 bytes padded to 48.
    #[test]
    fn a_reply_in_the_status_decodes() {
        let bytes = hex(
            "30000000 42445443 01000000 05000000 08000000 00000000 02000000 07000000
             02000000 00000000 00000000 00000000",
        );
        match decode(&bytes).unwrap() {
            Packet::ReplyControl(h, r) => {
                assert_eq!((h.reqid, h.srcnode, r.status), (7, 2, 2));
                assert!(r.data.is_empty() && r.error.is_none());
            }
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn an_error_text_with_or_without_its_nul_reads_the_same() {
        let h = Header {
            length: 0,
            generation: 0,
            operation: Operation::ReplyControl,
            destnode: 0,
            srcnode: 0,
            reqid: 1,
        };
        for text in ["node is disconnected", "node is disconnected\0"] {
            let r = ReplyControl {
                status: -1,
                data: vec![],
                error: Some(text.into()),
            };
            match decode(&encode_reply_control(&h, &r).unwrap()).unwrap() {
                Packet::ReplyControl(_, back) => {
                    assert_eq!(back.error.as_deref(), Some("node is disconnected"))
                }
                p => panic!("{p:?}"),
            }
        }
    }

    #[test]
    fn a_stream_is_cut_at_each_packets_length_and_bad_lengths_are_refused() {
        let c = Control {
            opcode: 3,
            srvid: 9,
            flags: 0,
            data: vec![1, 2, 3],
        };
        let a = encode_control(1, 0, 0, &c).unwrap();
        let b = encode_control(2, 0, 0, &c).unwrap();
        let mut stream = a.clone();
        stream.extend_from_slice(&b);
        let mut f = Framer::new(1 << 20);
        for byte in &stream[..stream.len() - 1] {
            f.feed(&[*byte]);
            if let Some(p) = f.next_packet().unwrap() {
                assert_eq!(p, a);
            }
        }
        assert_eq!(f.next_packet().unwrap(), None);
        f.feed(&stream[stream.len() - 1..]);
        assert_eq!(f.next_packet().unwrap(), Some(b));
        let mut f = Framer::new(1 << 20);
        f.feed(&16u32.to_le_bytes());
        assert!(f.next_packet().is_err());
        let mut f = Framer::new(1024);
        f.feed(&4096u32.to_le_bytes());
        assert!(matches!(f.next_packet(), Err(WireError::TooLong { .. })));
    }

    fn any_header() -> impl Strategy<Value = Header> {
        (any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(g, d, s, r)| Header {
            length: 0,
            generation: g,
            operation: Operation::ReqMessage,
            destnode: d,
            srcnode: s,
            reqid: r,
        })
    }

    proptest! {
        #![proptest_config(fuzz_config::config(concat!(env!("CARGO_MANIFEST_DIR"), "/proptest-regressions/packet.txt")))]

        #[test]
        fn controls_replies_and_messages_round_trip(
            h in any_header(),
            opcode in any::<u32>(), srvid in any::<u64>(), flags in any::<u32>(),
            status in any::<i32>(),
            data in proptest::collection::vec(any::<u8>(), 0..300),
            error in proptest::option::of("[a-z ]{1,40}"),
        ) {
            let c = Control { opcode, srvid, flags, data: data.clone() };
            let bytes = encode_control(h.reqid, h.destnode, h.srcnode, &c).unwrap();
            prop_assert_eq!(bytes.len() % ALIGNMENT, 0);
            match decode(&bytes).unwrap() {
                Packet::Control(hh, back) => { prop_assert_eq!(back, c); prop_assert_eq!(hh.reqid, h.reqid); }
                p => prop_assert!(false, "{:?}", p),
            }
            let r = ReplyControl { status, data: data.clone(), error };
            match decode(&encode_reply_control(&h, &r).unwrap()).unwrap() {
                Packet::ReplyControl(_, back) => prop_assert_eq!(back, r),
                p => prop_assert!(false, "{:?}", p),
            }
            let m = Message { srvid, data };
            match decode(&encode_message(&h, &m).unwrap()).unwrap() {
                Packet::Message(_, back) => prop_assert_eq!(back, m),
                p => prop_assert!(false, "{:?}", p),
            }
        }

        /// Every prefix of a packet, and garbage of every length, is an error or a
        /// packet — never a panic, never an allocation sized by an announced length.
        #[test]
        fn truncation_and_garbage_never_panic(
            data in proptest::collection::vec(any::<u8>(), 0..200),
            garbage in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            let h = Header { length: 0, generation: 0, operation: Operation::ReplyControl, destnode: 0, srcnode: 0, reqid: 1 };
            let bytes = encode_reply_control(&h, &ReplyControl { status: 0, data, error: None }).unwrap();
            for cut in 0..bytes.len() {
                prop_assert!(decode(&bytes[..cut]).is_err());
            }
            let _ = decode(&garbage);
            let mut g = garbage.clone();
            if g.len() >= 12 {
                g[4..8].copy_from_slice(&CTDB_MAGIC.to_le_bytes());
                g[8..12].copy_from_slice(&CTDB_PROTOCOL.to_le_bytes());
                let len = g.len() as u32;
                g[..4].copy_from_slice(&len.to_le_bytes());
            }
            let _ = decode(&g);
        }
    }
}
