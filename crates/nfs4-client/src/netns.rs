//! Connecting to a server inside a network namespace from a process outside it: a
//! short-lived thread enters the namespace and connects; the socket stays in that namespace
//! when the thread ends and is used from any thread.

use nix::sched::{setns, CloneFlags};
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Moves the calling thread into the named network namespace (`ip netns add` name): sockets
/// it creates from then on live there.
pub fn enter(ns: &str) -> io::Result<()> {
    let path = format!("/var/run/netns/{ns}");
    let f = std::fs::File::open(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("network namespace {path}: {e}")))?;
    setns(&f, CloneFlags::CLONE_NEWNET).map_err(|e| io::Error::other(format!("setns({path}): {e}")))
}

/// Connects to `addr` from inside the named namespace (`ip netns add` name), or from the
/// current one when `ns` is None. The stream gets `timeout` as read and write timeout so a
/// hung server fails a test instead of hanging it.
pub fn connect(ns: Option<&str>, addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let ns = ns.map(str::to_owned);
    let stream = std::thread::spawn(move || -> io::Result<TcpStream> {
        if let Some(ns) = ns {
            enter(&ns)?;
        }
        TcpStream::connect_timeout(&addr, timeout)
    })
    .join()
    .map_err(|_| io::Error::other("netns connect thread panicked"))??;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}
