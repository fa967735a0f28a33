//! ctdbd through Debian's `ctdb` tool: node map, public IPs, persistent-database reads and
//! transactions. One process per call (≈7 ms of start-up each, ctdb-runtime.md §4), which the
//! store amortises by group commit. `CtdbApi` is the seam a native ctdbd socket client
//! will replace.

use std::fmt;
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub pnn: u32,
    pub address: String,
    /// Connected, not banned, not stopped: it serves clients or will.
    pub live: bool,
    pub this_node: bool,
    /// The raw flags (Disconnected|Unknown|Banned|Disabled|Unhealthy|Stopped|Inactive|PartiallyOnline).
    pub flags: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicIp {
    pub ip: IpAddr,
    /// PNN of the node holding it; None while unassigned.
    pub holder: Option<u32>,
}

#[derive(Debug)]
pub struct CtdbError(pub String);

impl fmt::Display for CtdbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CtdbError {}

pub type Result<T> = std::result::Result<T, CtdbError>;

/// What the backend needs from ctdbd.
pub trait CtdbApi: Send + Sync {
    fn nodes(&self) -> Result<Vec<NodeInfo>>;
    fn public_ips(&self) -> Result<Vec<PublicIp>>;
    /// Attaches the persistent database, creating it cluster-wide if missing.
    fn attach_persistent(&self, db: &str) -> Result<()>;
    /// One persistent transaction: every write (None = delete) commits or none does.
    fn transaction(&self, db: &str, writes: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<()>;
    fn fetch(&self, db: &str, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// All records (deleted ones, stored empty by persistent transactions, are left out).
    fn traverse(&self, db: &str) -> Result<Traverse>;
    fn describe(&self) -> String;
}

#[derive(Debug, Default)]
pub struct Traverse {
    pub records: Vec<(Vec<u8>, Vec<u8>)>,
    /// Records the dump could not be parsed for, with why.
    pub unparsed: Vec<String>,
}

/// The `ctdb` command-line tool, talking to the daemon at `socket` (CTDB_SOCKET) or at
/// its compiled-in default.
#[derive(Debug, Clone)]
pub struct CtdbTool {
    pub tool: PathBuf,
    pub socket: Option<PathBuf>,
    /// A call that takes longer is killed and fails: inside Ganesha a call may otherwise
    /// wait on a CTDB recovery that waits on Ganesha.
    pub timeout: std::time::Duration,
}

/// Long enough for a `catdb` of 10,000 records (≈0.25 s) on a loaded node.
pub const DEFAULT_TOOL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// ptrans reads lines of at most 1023 bytes (fgets into char[1024]): longer pairs go
/// through pstore/pdelete, one transaction each.
const PTRANS_LINE_MAX: usize = 1023;

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(2 + 2 * b.len());
    s.push_str("0x");
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

impl CtdbTool {
    pub fn new() -> Self {
        CtdbTool {
            tool: PathBuf::from("ctdb"),
            socket: std::env::var_os("CTDB_SOCKET").map(PathBuf::from),
            timeout: DEFAULT_TOOL_TIMEOUT,
        }
    }

    /// The tool talking to the daemon listening on `socket`.
    pub fn with_socket(socket: impl Into<PathBuf>) -> Self {
        CtdbTool {
            socket: Some(socket.into()),
            ..CtdbTool::new()
        }
    }

    /// A ctdbd tunable (`ctdb getvar NAME`: "NAME = VALUE").
    pub fn tunable(&self, name: &str) -> Result<u32> {
        let out = self.run(&["getvar", name], None)?;
        let text = String::from_utf8_lossy(&out);
        parse_tunable(&text, name)
            .ok_or_else(|| CtdbError(format!("ctdb getvar {name}: unexpected output {text:?}")))
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.tool);
        c.args(args);
        if let Some(s) = &self.socket {
            c.env("CTDB_SOCKET", s);
        }
        c
    }

    /// Runs the tool; everything — start, feeding its input, its run, collecting its
    /// output — happens within `timeout` of the call, and a tool still running then is
    /// killed and reaped. (Its input is written from a thread of its own: a ctdbd that
    /// stops reading, frozen, would otherwise hold the caller in write() with the deadline
    /// not even started.)
    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<Vec<u8>> {
        let deadline = std::time::Instant::now() + self.timeout;
        let mut cmd = self.command(args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let what = || {
            let shown: Vec<&str> = args
                .iter()
                .map(|a| if a.len() > 40 { "…" } else { *a })
                .collect();
            format!("{} {}", self.tool.display(), shown.join(" "))
        };
        let mut child = cmd.spawn().map_err(|e| {
            CtdbError(format!(
                "cannot run {}: {e} (is the ctdb package installed?)",
                what()
            ))
        })?;
        let mut helpers = Vec::new();
        let mut start = |name: &str, job: Box<dyn FnOnce() -> Vec<u8> + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(job)
                .map(|h| helpers.push(h))
                .map_err(|e| CtdbError(format!("{}: cannot start a helper thread: {e}", what())))
        };
        let started = (|| {
            if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
                let input = input.to_vec();
                // A write error (the tool exited or was killed) shows in its exit status.
                start(
                    "gctdb-tool-in",
                    Box::new(move || {
                        let _ = pipe.write_all(&input);
                        Vec::new()
                    }),
                )?;
            }
            // Drain both pipes while waiting, so that a large dump cannot block the child.
            for pipe in [
                child
                    .stdout
                    .take()
                    .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
                child
                    .stderr
                    .take()
                    .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            ] {
                start(
                    "gctdb-tool-out",
                    Box::new(move || {
                        let mut buf = Vec::new();
                        if let Some(mut p) = pipe {
                            let _ = p.read_to_end(&mut buf);
                        }
                        buf
                    }),
                )?;
            }
            Ok(())
        })();
        let status = match started {
            Err(e) => Err(e),
            Ok(()) => loop {
                match child.try_wait() {
                    Ok(Some(status)) => break Ok(status),
                    Ok(None) if std::time::Instant::now() < deadline => {
                        std::thread::sleep(std::time::Duration::from_millis(2));
                    }
                    Ok(None) => {
                        break Err(CtdbError(format!(
                            "{} did not finish within {:?} (is ctdbd in recovery, frozen, or \
                             hung?); killed",
                            what(),
                            self.timeout
                        )))
                    }
                    Err(e) => break Err(CtdbError(format!("{}: {e}", what()))),
                }
            },
        };
        if status.is_err() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The child is gone: its pipes are closed and every helper ends.
        let mut outputs: Vec<Vec<u8>> = helpers
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect();
        let status = status?;
        let stderr = outputs.pop().unwrap_or_default();
        let stdout = outputs.pop().unwrap_or_default();
        if !status.success() {
            return Err(CtdbError(format!(
                "{} failed ({status}): {}",
                what(),
                String::from_utf8_lossy(&stderr).trim()
            )));
        }
        Ok(stdout)
    }
}

impl Default for CtdbTool {
    fn default() -> Self {
        Self::new()
    }
}

/// Parses `ctdb -X status`.
/// The value in `ctdb getvar NAME`'s "NAME = VALUE" line.
pub fn parse_tunable(out: &str, name: &str) -> Option<u32> {
    out.lines().find_map(|l| {
        let (n, v) = l.split_once('=')?;
        (n.trim() == name).then(|| v.trim().parse().ok()).flatten()
    })
}

pub fn parse_status(out: &str) -> Vec<NodeInfo> {
    out.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split('|').collect();
            // |Node|IP|Disconnected|Unknown|Banned|Disabled|Unhealthy|Stopped|Inactive|PartiallyOnline|ThisNode|
            if f.len() < 12 {
                return None;
            }
            let pnn = f[1].parse().ok()?;
            let flag = |i: usize| f[i] == "1";
            Some(NodeInfo {
                pnn,
                address: f[2].to_string(),
                live: !flag(3) && !flag(5) && !flag(8),
                this_node: f[11] == "Y",
                flags: f[3..11].join(""),
            })
        })
        .collect()
}

/// Parses `ctdb -X ip all`.
pub fn parse_ips(out: &str) -> Vec<PublicIp> {
    out.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split('|').collect();
            if f.len() < 3 {
                return None;
            }
            let ip = f[1].parse().ok()?;
            // -1: unassigned; anything that is not a PNN counts as unassigned too.
            let holder = f[2].parse::<u32>().ok();
            Some(PublicIp { ip, holder })
        })
        .collect()
}

/// Parses `ctdb catdb` output: `key(N) = "…"`, header lines, `data(M) = "…"`. Debian's
/// 4.17 tool prints printable ASCII raw and every other byte as `\XX`, so a string is read
/// by its announced length: `\XX` naming a non-printable byte is one escaped byte, anything
/// else one raw byte. (A raw backslash followed by hex digits naming a control byte would
/// be misread; our keys and values never contain one.)
pub fn parse_catdb(out: &[u8]) -> Traverse {
    let mut t = Traverse::default();
    let mut pos = 0;
    while let Some(off) = find(&out[pos..], b"key(") {
        let start = pos + off;
        match parse_item(out, start, b"key(") {
            Ok((key, after_key)) => match find(&out[after_key..], b"data(")
                .ok_or_else(|| "no data(...) after the key".to_string())
                .and_then(|d| parse_item(out, after_key + d, b"data("))
            {
                Ok((data, after)) => {
                    if !data.is_empty() {
                        t.records.push((key, data));
                    }
                    pos = after;
                }
                Err(e) => {
                    t.unparsed
                        .push(format!("record {:?}: {e}", String::from_utf8_lossy(&key)));
                    pos = after_key;
                }
            },
            Err(e) => {
                t.unparsed.push(format!("at byte {start}: {e}"));
                pos = start + 4;
            }
        }
    }
    t
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_item(
    out: &[u8],
    start: usize,
    label: &[u8],
) -> std::result::Result<(Vec<u8>, usize), String> {
    let mut p = start + label.len();
    let close = find(&out[p..], b") = \"").ok_or("no ') = \"'")?;
    let n: usize = std::str::from_utf8(&out[p..p + close])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or("length is not a number")?;
    p += close + 5;
    // The announced length is the tool's word: reserve no more than the output can hold.
    let mut bytes = Vec::with_capacity(n.min(out.len().saturating_sub(p)));
    while bytes.len() < n {
        let b = *out.get(p).ok_or("output ends inside a string")?;
        if b == b'\\' {
            if let Some(v) = out
                .get(p + 1..p + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .filter(|v| !(0x20..0x7f).contains(v))
            {
                bytes.push(v);
                p += 3;
                continue;
            }
        }
        bytes.push(b);
        p += 1;
    }
    if out.get(p) != Some(&b'"') {
        return Err(format!("string of {n} bytes not followed by '\"'"));
    }
    Ok((bytes, p + 1))
}

impl CtdbApi for CtdbTool {
    fn nodes(&self) -> Result<Vec<NodeInfo>> {
        let out = self.run(&["-X", "status"], None)?;
        let nodes = parse_status(&String::from_utf8_lossy(&out));
        if nodes.is_empty() {
            return Err(CtdbError("ctdb -X status listed no nodes".into()));
        }
        Ok(nodes)
    }

    fn public_ips(&self) -> Result<Vec<PublicIp>> {
        let out = self.run(&["-X", "ip", "all"], None)?;
        Ok(parse_ips(&String::from_utf8_lossy(&out)))
    }

    fn attach_persistent(&self, db: &str) -> Result<()> {
        self.run(&["attach", db, "persistent"], None).map(|_| ())
    }

    fn transaction(&self, db: &str, writes: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<()> {
        let mut input = String::new();
        let mut long = Vec::new();
        for (k, v) in writes {
            let line = format!(
                "\"{}\" \"{}\"\n",
                hex(k),
                v.as_deref().map(hex).unwrap_or_default()
            );
            if line.len() > PTRANS_LINE_MAX {
                long.push((k, v));
            } else {
                input.push_str(&line);
            }
        }
        if !input.is_empty() {
            self.run(&["ptrans", db], Some(input.as_bytes()))?;
        }
        for (k, v) in long {
            match v {
                Some(v) => self.run(&["pstore", db, &hex(k), &hex(v)], None)?,
                None => self.run(&["pdelete", db, &hex(k)], None)?,
            };
        }
        Ok(())
    }

    fn fetch(&self, db: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let mut out = self.run(&["pfetch", db, &hex(key)], None)?;
        if out.last() == Some(&b'\n') {
            out.pop();
        }
        Ok((!out.is_empty()).then_some(out))
    }

    fn traverse(&self, db: &str) -> Result<Traverse> {
        Ok(parse_catdb(&self.run(&["catdb", db], None)?))
    }

    fn describe(&self) -> String {
        match &self.socket {
            Some(s) => format!("ctdbd at {}", s.display()),
            None => "ctdbd".into(),
        }
    }
}

/// A ctdbd double for unit tests: a node map, the public IPs with their holders, and
/// databases that accept everything and hold nothing (the stores under test are in memory).
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    pub(crate) struct FakeCtdb {
        /// This node's PNN.
        pub me: u32,
        /// The live PNNs it reports; None: ctdbd does not answer.
        pub live: Mutex<Option<Vec<u32>>>,
        /// Public IPs and the PNN holding each.
        pub ips: Mutex<Vec<(&'static str, Option<u32>)>>,
        /// How many times the public IPs were asked for.
        pub ip_calls: AtomicUsize,
    }

    impl FakeCtdb {
        pub(crate) fn new(
            me: u32,
            live: Option<Vec<u32>>,
            ips: &[(&'static str, Option<u32>)],
        ) -> FakeCtdb {
            FakeCtdb {
                me,
                live: Mutex::new(live),
                ips: Mutex::new(ips.to_vec()),
                ip_calls: AtomicUsize::new(0),
            }
        }

        pub(crate) fn ip_calls(&self) -> usize {
            self.ip_calls.load(Ordering::SeqCst)
        }
    }

    impl CtdbApi for FakeCtdb {
        fn nodes(&self) -> Result<Vec<NodeInfo>> {
            let live = self.live.lock().unwrap().clone();
            let live = live.ok_or_else(|| CtdbError("timed out".into()))?;
            Ok(live
                .into_iter()
                .map(|pnn| NodeInfo {
                    pnn,
                    address: String::new(),
                    live: true,
                    this_node: pnn == self.me,
                    flags: String::new(),
                })
                .collect())
        }
        fn public_ips(&self) -> Result<Vec<PublicIp>> {
            self.ip_calls.fetch_add(1, Ordering::SeqCst);
            Ok(self
                .ips
                .lock()
                .unwrap()
                .iter()
                .map(|(ip, holder)| PublicIp {
                    ip: ip.parse().unwrap(),
                    holder: *holder,
                })
                .collect())
        }
        fn attach_persistent(&self, _: &str) -> Result<()> {
            Ok(())
        }
        fn transaction(&self, _: &str, _: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<()> {
            Ok(())
        }
        fn fetch(&self, _: &str, _: &[u8]) -> Result<Option<Vec<u8>>> {
            Ok(None)
        }
        fn traverse(&self, _: &str) -> Result<Traverse> {
            Ok(Traverse::default())
        }
        fn describe(&self) -> String {
            "fake ctdbd".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunables_are_read_from_getvar_output() {
        assert_eq!(
            parse_tunable("TakeoverTimeout = 9\n", "TakeoverTimeout"),
            Some(9)
        );
        assert_eq!(
            parse_tunable("TakeoverTimeout = nine\n", "TakeoverTimeout"),
            None
        );
        assert_eq!(
            parse_tunable("MonitorInterval = 15\n", "TakeoverTimeout"),
            None
        );
    }

    #[test]
    fn status_marks_disconnected_banned_and_stopped_nodes_not_live() {
        let out = "|Node|IP|Disconnected|Unknown|Banned|Disabled|Unhealthy|Stopped|Inactive|PartiallyOnline|ThisNode|\n\
                   |0|10.77.0.1|0|0|0|0|0|0|0|0|N|\n\
                   |1|10.77.0.2|1|0|0|0|0|0|1|0|N|\n\
                   |2|10.77.0.3|0|0|0|1|1|0|0|0|Y|\n\
                   |3|10.77.0.4|0|0|0|0|0|1|1|0|N|\n";
        let n = parse_status(out);
        assert_eq!(n.len(), 4);
        assert!(n[0].live && !n[0].this_node);
        assert!(!n[1].live, "disconnected");
        assert!(n[2].live && n[2].this_node, "disabled/unhealthy still live");
        assert!(!n[3].live, "stopped");
    }

    #[test]
    fn ips_with_unassigned() {
        let out = "|Public IP|Node|\n|10.77.1.1|0|\n|10.77.1.2|-1|\n|bogus|1|\n";
        let ips = parse_ips(out);
        assert_eq!(ips.len(), 2);
        assert_eq!(ips[0].holder, Some(0));
        assert_eq!(ips[1].holder, None);
    }

    #[test]
    fn catdb_is_read_by_length_with_escapes_and_embedded_quotes() {
        let out = b"key(23) = \"__db_sequence_number__\\00\"\ndata(8) = \"\\02\\00\\00\\00\\00\\00\\00\\00\"\n\n\
key(9) = \"v4@a\"b\\\\x\"\ndmaster: 0\nrsn: 2\nflags: 0x00000000\ndata(5) = \"ab\\80\nc\"\n\n\
key(5) = \"gone!\"\ndmaster: 0\nrsn: 3\nflags: 0x00000000\ndata(0) = \"\"\n\nDumped 2 records\n";
        let t = parse_catdb(out);
        assert!(t.unparsed.is_empty(), "{:?}", t.unparsed);
        assert_eq!(t.records.len(), 2, "the empty (deleted) record is left out");
        assert_eq!(t.records[0].0, b"__db_sequence_number__\0".to_vec());
        assert_eq!(t.records[0].1, vec![2, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(t.records[1].0, b"v4@a\"b\\\\x".to_vec());
        assert_eq!(t.records[1].1, vec![b'a', b'b', 0x80, b'\n', b'c']);
    }

    #[test]
    fn truncated_catdb_reports_instead_of_panicking() {
        let full = b"key(3) = \"abc\"\ndmaster: 0\ndata(3) = \"xyz\"\n".to_vec();
        let complete = full.iter().rposition(|b| *b == b'"').unwrap() + 1;
        for cut in 0..full.len() {
            let t = parse_catdb(&full[..cut]);
            assert_eq!(t.records.len(), usize::from(cut >= complete), "cut {cut}");
        }
        assert_eq!(parse_catdb(&full).records.len(), 1);
    }

    /// A tool that never reads its input (a frozen ctdbd behind it): a batch larger than a
    /// pipe buffer must not hold the caller past the timeout, and the tool is killed.
    #[test]
    fn a_tool_that_stops_reading_is_bounded_by_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("ctdb");
        let pidfile = dir.path().join("pid");
        std::fs::write(
            &tool,
            format!(
                "#!/bin/sh\necho $$ > {}\nexec sleep 30\n",
                pidfile.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        let t = CtdbTool {
            tool,
            socket: None,
            timeout: std::time::Duration::from_millis(500),
        };
        let writes: Vec<(Vec<u8>, Option<Vec<u8>>)> = (0..600)
            .map(|i| {
                (
                    format!("v4@10.0.0.1@client-{i}").into_bytes(),
                    Some(vec![b'x'; 150]),
                )
            })
            .collect();
        let start = std::time::Instant::now();
        let err = t.transaction("db.tdb", &writes).unwrap_err().to_string();
        let took = start.elapsed();
        assert!(took < std::time::Duration::from_secs(3), "took {took:?}");
        assert!(err.contains("did not finish"), "{err}");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "the tool was killed and reaped"
        );
    }

    #[test]
    fn hex_keys_for_ptrans() {
        assert_eq!(hex(b"v4@"), "0x763440");
    }
}
