//! A blocking connection to ctdbd's unix-domain socket. Every call takes a bound and keeps
//! it end to end (writing, then reading until its reply arrives); a reply that comes after
//! its call gave up is recognised by its reqid and dropped. Messages that arrive meanwhile
//! (registered srvids) are queued for `next_message`.
//!
//! No handshake: ctdbd gives every connection a client id of its own; the first call, like
//! Samba's client's, asks for this node's PNN (GET_PNN answers in the status).

use crate::proto::packet::{decode, encode_control, Framer, CTDB_UNKNOWN_PNN};
use crate::proto::types::{self, DbEntry, NodeAndFlags, PublicIp};
use crate::proto::{Control, Message, Opcode, Packet, ReplyControl, WireError, CTDB_CURRENT_NODE};
use std::collections::VecDeque;
use std::fmt;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Larger packets are refused (the protocol has no bound; a client needs one: a 10,000-
/// record traverse of small records is a few MiB).
pub const MAX_PACKET: usize = 64 << 20;

#[derive(Debug)]
pub enum ConnError {
    Io {
        what: String,
        error: std::io::Error,
    },
    /// The daemon sent what this client cannot decode: the connection is unusable.
    Wire(WireError),
    Timeout {
        what: String,
        after: Duration,
    },
    /// The control failed on the daemon's side.
    Status {
        what: String,
        status: i32,
        error: Option<String>,
    },
    Closed,
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnError::Io { what, error } => write!(f, "{what}: {error}"),
            ConnError::Wire(e) => write!(f, "{e}"),
            ConnError::Timeout { what, after } => {
                write!(f, "{what}: no answer from ctdbd within {after:?}")
            }
            ConnError::Status {
                what,
                status,
                error,
            } => write!(
                f,
                "{what}: ctdbd answered status {status}{}",
                error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ),
            ConnError::Closed => write!(f, "ctdbd closed the connection"),
        }
    }
}

impl std::error::Error for ConnError {}

impl From<WireError> for ConnError {
    fn from(e: WireError) -> Self {
        ConnError::Wire(e)
    }
}

pub type Result<T> = std::result::Result<T, ConnError>;

pub struct Connection {
    stream: UnixStream,
    path: PathBuf,
    framer: Framer,
    next_reqid: u32,
    pnn: u32,
    messages: VecDeque<Message>,
    /// The last reply packet as it arrived (for captures: examples/capture.rs).
    last_reply: Vec<u8>,
}

impl Connection {
    /// Connects and learns this node's PNN, within `timeout`.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Connection> {
        let stream = UnixStream::connect(path).map_err(|error| ConnError::Io {
            what: format!("connect to ctdbd at {}", path.display()),
            error,
        })?;
        let mut c = Connection {
            stream,
            path: path.to_path_buf(),
            framer: Framer::new(MAX_PACKET),
            next_reqid: 1,
            pnn: CTDB_UNKNOWN_PNN,
            messages: VecDeque::new(),
            last_reply: Vec::new(),
        };
        let r = c.control(CTDB_CURRENT_NODE, Opcode::GetPnn, 0, &[], timeout)?;
        c.pnn = u32::try_from(r.status).map_err(|_| ConnError::Status {
            what: "GET_PNN".into(),
            status: r.status,
            error: r.error,
        })?;
        Ok(c)
    }

    pub fn pnn(&self) -> u32 {
        self.pnn
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The bytes of the last control reply, as ctdbd sent them.
    pub fn last_reply(&self) -> &[u8] {
        &self.last_reply
    }

    fn reqid(&mut self) -> u32 {
        let id = self.next_reqid;
        // 0 is what daemon-sent messages carry; 0xFFFFFFFF is REQID_INVALID.
        self.next_reqid = match self.next_reqid.wrapping_add(1) {
            0 | u32::MAX => 1,
            n => n,
        };
        id
    }

    /// Sends a control to `dest` and waits for its reply, all within `timeout`.
    pub fn control(
        &mut self,
        dest: u32,
        opcode: Opcode,
        srvid: u64,
        data: &[u8],
        timeout: Duration,
    ) -> Result<ReplyControl> {
        let what = format!("{opcode:?}");
        let deadline = Instant::now() + timeout;
        let reqid = self.reqid();
        let packet = encode_control(
            reqid,
            dest,
            self.pnn,
            &Control {
                opcode: opcode as u32,
                srvid,
                flags: 0,
                data: data.to_vec(),
            },
        )?;
        self.write_all(&packet, deadline, &what, timeout)?;
        loop {
            match self.read_packet(deadline, &what, timeout)? {
                Packet::ReplyControl(h, r) if h.reqid == reqid => return Ok(r),
                Packet::Message(_, m) => self.messages.push_back(m),
                _ => {} // a late reply to a call that gave up, or nothing for a client
            }
        }
    }

    /// A control whose reply must have status 0.
    fn control_ok(
        &mut self,
        dest: u32,
        opcode: Opcode,
        srvid: u64,
        data: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>> {
        let r = self.control(dest, opcode, srvid, data, timeout)?;
        if r.status != 0 {
            return Err(ConnError::Status {
                what: format!("{opcode:?}"),
                status: r.status,
                error: r.error,
            });
        }
        Ok(r.data)
    }

    pub fn node_map(&mut self, timeout: Duration) -> Result<Vec<NodeAndFlags>> {
        let data = self.control_ok(CTDB_CURRENT_NODE, Opcode::GetNodeMap, 0, &[], timeout)?;
        Ok(types::pull_node_map(&data)?)
    }

    pub fn public_ips(&mut self, timeout: Duration) -> Result<Vec<PublicIp>> {
        let data = self.control_ok(CTDB_CURRENT_NODE, Opcode::GetPublicIps, 0, &[], timeout)?;
        Ok(types::pull_public_ips(&data)?)
    }

    /// The databases attached on node `pnn` (CTDB_CURRENT_NODE: this one).
    pub fn db_map(&mut self, pnn: u32, timeout: Duration) -> Result<Vec<DbEntry>> {
        let data = self.control_ok(pnn, Opcode::GetDbMap, 0, &[], timeout)?;
        Ok(types::pull_db_map(&data)?)
    }

    /// The local path of database `db_id`'s TDB on this node.
    pub fn db_path(&mut self, db_id: u32, timeout: Duration) -> Result<PathBuf> {
        let data = self.control_ok(
            CTDB_CURRENT_NODE,
            Opcode::GetDbPath,
            0,
            &db_id.to_le_bytes(),
            timeout,
        )?;
        Ok(PathBuf::from(types::pull_string(&data, "db path")?))
    }

    /// The name of database `db_id` on node `pnn`.
    pub fn db_name(&mut self, pnn: u32, db_id: u32, timeout: Duration) -> Result<String> {
        let data = self.control_ok(pnn, Opcode::GetDbName, 0, &db_id.to_le_bytes(), timeout)?;
        Ok(types::pull_string(&data, "db name")?)
    }

    /// The names of the databases node `pnn` has attached, within `timeout` in all.
    pub fn db_names(&mut self, pnn: u32, timeout: Duration) -> Result<Vec<String>> {
        let deadline = Instant::now() + timeout;
        let left = || deadline.saturating_duration_since(Instant::now());
        let ids = self.db_map(pnn, left())?;
        ids.iter()
            .map(|d| self.db_name(pnn, d.db_id, left()))
            .collect()
    }

    /// Attaches (or finds) the persistent database `name`; its db_id.
    pub fn attach_persistent(&mut self, name: &str, timeout: Duration) -> Result<u32> {
        let data = self.control_ok(
            CTDB_CURRENT_NODE,
            Opcode::DbAttachPersistent,
            0,
            &types::push_string(name),
            timeout,
        )?;
        let mut r = crate::proto::Reader::new(&data);
        Ok(r.u32("db id")?)
    }

    /// Asks ctdbd to pass messages for `srvid` to this connection.
    pub fn register_srvid(&mut self, srvid: u64, timeout: Duration) -> Result<()> {
        self.control_ok(
            CTDB_CURRENT_NODE,
            Opcode::RegisterSrvid,
            srvid,
            &[],
            timeout,
        )
        .map(|_| ())
    }

    /// The next message for a registered srvid, waiting at most `timeout`.
    pub fn next_message(&mut self, timeout: Duration) -> Result<Option<Message>> {
        if let Some(m) = self.messages.pop_front() {
            return Ok(Some(m));
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.read_packet(deadline, "waiting for a message", timeout) {
                Ok(Packet::Message(_, m)) => return Ok(Some(m)),
                Ok(_) => {}
                Err(ConnError::Timeout { .. }) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    fn write_all(
        &mut self,
        bytes: &[u8],
        deadline: Instant,
        what: &str,
        timeout: Duration,
    ) -> Result<()> {
        let mut sent = 0;
        while sent < bytes.len() {
            let left = time_left(deadline, what, timeout)?;
            self.stream
                .set_write_timeout(Some(left))
                .map_err(|error| io_error(what, error))?;
            match self.stream.write(&bytes[sent..]) {
                Ok(0) => return Err(ConnError::Closed),
                Ok(n) => sent += n,
                Err(e) if is_timeout(&e) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => return Err(io_error(what, error)),
            }
        }
        Ok(())
    }

    fn read_packet(&mut self, deadline: Instant, what: &str, timeout: Duration) -> Result<Packet> {
        let mut buf = [0u8; 64 * 1024];
        loop {
            if let Some(p) = self.framer.next_packet()? {
                let packet = decode(&p)?;
                if matches!(packet, Packet::ReplyControl(..)) {
                    self.last_reply = p;
                }
                return Ok(packet);
            }
            let left = time_left(deadline, what, timeout)?;
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|error| io_error(what, error))?;
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(ConnError::Closed),
                Ok(n) => self.framer.feed(&buf[..n]),
                Err(e) if is_timeout(&e) || e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => return Err(io_error(what, error)),
            }
        }
    }
}

/// What is left of a call's bound, or its timeout.
fn time_left(deadline: Instant, what: &str, timeout: Duration) -> Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(ConnError::Timeout {
            what: what.to_string(),
            after: timeout,
        });
    }
    Ok(left)
}

fn io_error(what: &str, error: std::io::Error) -> ConnError {
    ConnError::Io {
        what: what.to_string(),
        error,
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::packet::encode_reply_control;
    use std::os::unix::net::UnixListener;

    /// A daemon double on a real unix socket: answers GET_PNN with 2, then runs `serve`.
    fn daemon(
        serve: impl FnOnce(&mut UnixStream, &mut Framer) + Send + 'static,
    ) -> (tempfile_dir::Dir, PathBuf) {
        let dir = tempfile_dir::Dir::new();
        let path = dir.0.join("ctdbd.socket");
        let listener = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut f = Framer::new(MAX_PACKET);
            let req = read_one(&mut s, &mut f);
            let Packet::Control(h, _) = req else {
                panic!("{req:?}")
            };
            let reply = ReplyControl {
                status: 2,
                data: vec![],
                error: None,
            };
            s.write_all(&encode_reply_control(&h, &reply).unwrap())
                .unwrap();
            serve(&mut s, &mut f);
        });
        (dir, path)
    }

    fn read_one(s: &mut UnixStream, f: &mut Framer) -> Packet {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(p) = f.next_packet().unwrap() {
                return decode(&p).unwrap();
            }
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "client closed");
            f.feed(&buf[..n]);
        }
    }

    /// A directory removed on drop (no tempfile dependency for one use).
    mod tempfile_dir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                let p = std::env::temp_dir().join(format!(
                    "ctdb-client-test-{}-{:?}",
                    std::process::id(),
                    std::thread::current().id()
                ));
                let _ = std::fs::remove_dir_all(&p);
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn a_reply_is_matched_by_reqid_and_messages_in_between_are_kept() {
        let (_dir, path) = daemon(|s, f| {
            let Packet::Control(h, c) = read_one(s, f) else {
                panic!()
            };
            assert_eq!(c.opcode, Opcode::GetNodeMap as u32);
            // A stale reply, a message, then the answer.
            let stale = crate::proto::Header {
                reqid: h.reqid.wrapping_add(100),
                ..h
            };
            s.write_all(
                &encode_reply_control(
                    &stale,
                    &ReplyControl {
                        status: 0,
                        data: vec![9],
                        error: None,
                    },
                )
                .unwrap(),
            )
            .unwrap();
            let m = Message {
                srvid: 0xF200_0000_0000_0000,
                data: vec![],
            };
            s.write_all(&crate::proto::packet::encode_message(&h, &m).unwrap())
                .unwrap();
            let nodes = vec![NodeAndFlags {
                pnn: 0,
                flags: 0,
                addr: "10.0.0.1".parse().unwrap(),
            }];
            let data = types::push_node_map(&nodes).unwrap();
            s.write_all(
                &encode_reply_control(
                    &h,
                    &ReplyControl {
                        status: 0,
                        data,
                        error: None,
                    },
                )
                .unwrap(),
            )
            .unwrap();
        });
        let mut c = Connection::connect(&path, Duration::from_secs(5)).unwrap();
        assert_eq!(c.pnn(), 2);
        let nodes = c.node_map(Duration::from_secs(5)).unwrap();
        assert_eq!(nodes.len(), 1);
        let m = c.next_message(Duration::from_millis(10)).unwrap().unwrap();
        assert_eq!(m.srvid, 0xF200_0000_0000_0000);
    }

    /// A daemon that stops answering (a frozen ctdbd) costs the call its bound, no more.
    #[test]
    fn a_silent_daemon_times_the_call_out_within_its_bound() {
        let (_dir, path) = daemon(|s, f| {
            let _ = read_one(s, f);
            std::thread::sleep(Duration::from_secs(2));
        });
        let mut c = Connection::connect(&path, Duration::from_secs(5)).unwrap();
        let started = Instant::now();
        let e = c.node_map(Duration::from_millis(300)).unwrap_err();
        assert!(matches!(e, ConnError::Timeout { .. }), "{e}");
        assert!(started.elapsed() < Duration::from_millis(1500));
    }

    #[test]
    fn a_failed_control_says_what_ctdbd_said() {
        let (_dir, path) = daemon(|s, f| {
            let Packet::Control(h, _) = read_one(s, f) else {
                panic!()
            };
            let r = ReplyControl {
                status: -1,
                data: vec![],
                error: Some("node is disconnected".into()),
            };
            s.write_all(&encode_reply_control(&h, &r).unwrap()).unwrap();
        });
        let mut c = Connection::connect(&path, Duration::from_secs(5)).unwrap();
        let e = c.db_map(1, Duration::from_secs(5)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "GetDbMap: ctdbd answered status -1 (node is disconnected)"
        );
    }
}
