//! The client population: real protocol clients in the bridge namespace, each a thread that
//! behaves as the Linux client it imitates: it holds (or churns) a byte-range lock through
//! one public IP, keeps its lease, notices when its server lost its state (a new client ID
//! after reconnecting, for NFSv4; SM_NOTIFY from the IP, for NLM) and reclaims. Challengers
//! try to take locks that holders hold, through any IP, and report every grant.

use super::checker::{Checker, HeldLock, Proto};
use super::rng::Rng;
use nfs4_client::{netns, Client, ClientOptions, LockType, NfsStat, OpenFile};
use nlm_client::{Lock, NlmClient, NlmStat};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where the clients live and what they reach.
#[derive(Clone)]
pub struct Env {
    pub bridge_ns: String,
    /// The export's real path (NFSv3 MNT names it).
    pub export: PathBuf,
    /// The client-side rpc.statd's log (it logs each SM_NOTIFY it receives).
    pub statd_log: Option<PathBuf>,
    pub checker: Arc<Checker>,
    pub stop: Arc<AtomicBool>,
}

/// The NLM holders' host: the bridge's own address, where the client rpc.statd listens.
pub const NLM_HOST: &str = "10.77.1.254";
/// The NLM challengers' host name (no statd answers for it; only the server records it).
const NLM_CHALLENGER: &str = "10.77.1.253";
/// How long a client tries to get its state back before it counts as lost.
const RECOVERY_LIMIT: Duration = Duration::from_secs(240);
const RANGE: (u64, u64) = (0, 100);

pub fn v4(env: &Env, ip: Ipv4Addr, minor: u32, owner: &str) -> Client {
    let ns = env.bridge_ns.clone();
    let addr = SocketAddr::from((ip, 2049));
    let mut opts = ClientOptions::new(minor, owner);
    opts.machine_name = owner.split_whitespace().last().unwrap_or("torture").into();
    Client::new(opts, move || {
        netns::connect(Some(&ns), addr, Duration::from_secs(5))
    })
}

fn nlm(env: &Env, ip: Ipv4Addr, caller: &str) -> NlmClient {
    let ns = env.bridge_ns.clone();
    NlmClient::new(ip.into(), caller, move |addr| {
        netns::connect(Some(&ns), addr, Duration::from_secs(5))
    })
}

/// Errors after which trying again is what a client does (the server is unreachable, busy,
/// or restarted once more meanwhile).
fn transient(e: &nfs4_client::Error) -> bool {
    match e.status() {
        None => true,
        Some(s) => [
            NfsStat(10008), // DELAY
            NfsStat::GRACE,
            NfsStat::STALE_CLIENTID,
            NfsStat::BADSESSION,
            NfsStat::DEADSESSION,
            NfsStat::EXPIRED,
            NfsStat::SEQ_MISORDERED,
        ]
        .contains(&s),
    }
}

/// RECLAIM_COMPLETE on 4.1+ (a second one is answered COMPLETE_ALREADY: fine).
fn reclaim_complete(client: &mut Client) -> nfs4_client::client::Result<()> {
    if client.minor_version() == 0 {
        return Ok(());
    }
    match client.reclaim_complete() {
        Err(e) if e.status() != Some(NfsStat::COMPLETE_ALREADY) => Err(e),
        _ => Ok(()),
    }
}

fn sleep_unless(stop: &AtomicBool, d: Duration) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50).min(end - Instant::now()));
    }
    !stop.load(Ordering::Relaxed)
}

/// An NFSv4 client holding (or, churning, taking and releasing) a write lock on its file.
struct V4Holder {
    name: String,
    env: Env,
    client: Client,
    file: String,
    id: usize,
    churn: bool,
    open: Option<OpenFile>,
    held: bool,
}

impl V4Holder {
    fn set_held(&mut self, held: bool) {
        self.held = held;
        self.env.checker.set_held(self.id, held);
    }

    /// Establishes, opens and locks (once grace allows), as at the population's start and
    /// after a lost reclaim.
    fn acquire(&mut self) -> bool {
        loop {
            let r = (|| -> nfs4_client::client::Result<OpenFile> {
                self.client.disconnect();
                self.client.establish()?;
                reclaim_complete(&mut self.client)?;
                let mut f = self.client.open(&self.file)?;
                if !self.churn {
                    self.client
                        .lock(&mut f, LockType::Write, RANGE.0, RANGE.1, false)?;
                }
                Ok(f)
            })();
            match r {
                Ok(f) => {
                    self.open = Some(f);
                    if !self.churn {
                        self.set_held(true);
                    }
                    self.env
                        .checker
                        .event(format!("{} holds {}", self.name, self.file));
                    return true;
                }
                Err(_) => {
                    if !sleep_unless(&self.env.stop, Duration::from_millis(700)) {
                        return false;
                    }
                }
            }
        }
    }

    fn step(&mut self) -> nfs4_client::client::Result<()> {
        if !self.churn {
            return self.client.renew();
        }
        let Some(f) = self.open.as_mut() else {
            return self.client.renew();
        };
        if self.held {
            match self.client.unlock(f, RANGE.0, RANGE.1) {
                Ok(()) => {
                    self.set_held(false);
                    Ok(())
                }
                Err(e) => Err(e),
            }
        } else {
            match self
                .client
                .lock(f, LockType::Write, RANGE.0, RANGE.1, false)
            {
                Ok(()) => {
                    self.set_held(true);
                    Ok(())
                }
                // Refused in grace: a client just retries later.
                Err(e) if e.status() == Some(NfsStat::GRACE) => Ok(()),
                Err(e) => {
                    if e.status().is_none() {
                        // No reply: the server may have granted it; the client reclaims it.
                        self.set_held(true);
                    }
                    Err(e)
                }
            }
        }
    }

    fn reclaim(&mut self) -> nfs4_client::client::Result<()> {
        if let Some(old) = self.open.as_ref() {
            let fh = old.fh.clone();
            let mut f = self.client.reclaim_open(&fh)?;
            if self.held {
                self.client
                    .lock(&mut f, LockType::Write, RANGE.0, RANGE.1, true)?;
            }
            self.open = Some(f);
        }
        reclaim_complete(&mut self.client)?;
        Ok(())
    }

    /// The client noticed trouble (`why`): reconnect; a new client ID means the server lost
    /// this client's state, so reclaim it (a refused reclaim is a lost reclaim).
    fn recover(&mut self, why: &nfs4_client::Error) {
        let checker = self.env.checker.clone();
        checker.recovering(&self.name, true);
        checker.event(format!("{} noticed: {why}", self.name));
        let old = self.client.clientid();
        let deadline = Instant::now() + RECOVERY_LIMIT;
        let mut last = why.to_string();
        loop {
            if Instant::now() > deadline {
                checker.lost(
                    &self.name,
                    &format!("no server state back within {RECOVERY_LIMIT:?}: {last}"),
                );
                self.set_held(false);
                self.open = None;
                break;
            }
            self.client.disconnect();
            if let Err(e) = self.client.establish() {
                last = e.to_string();
                if !sleep_unless(&self.env.stop, Duration::from_millis(500)) {
                    break;
                }
                continue;
            }
            if self.client.clientid() == old {
                checker.event(format!("{}: server kept its state", self.name));
                break;
            }
            match self.reclaim() {
                Ok(()) => {
                    checker.reclaimed(&self.name);
                    break;
                }
                Err(e) if transient(&e) => {
                    last = e.to_string();
                    if !sleep_unless(&self.env.stop, Duration::from_millis(500)) {
                        break;
                    }
                }
                Err(e) => {
                    if self.held || !self.churn {
                        checker.lost(&self.name, &format!("reclaim refused: {e}"));
                    }
                    self.set_held(false);
                    self.open = None;
                    break;
                }
            }
        }
        if self.open.is_none() && !self.env.stop.load(Ordering::Relaxed) {
            self.acquire();
        }
        checker.recovering(&self.name, false);
    }

    fn run(mut self) {
        if !self.acquire() {
            return;
        }
        let tick = if self.churn {
            Duration::from_millis(300)
        } else {
            Duration::from_secs(1)
        };
        while sleep_unless(&self.env.stop, tick) {
            if let Err(e) = self.step() {
                if self.churn && e.status() == Some(NfsStat::DENIED) {
                    continue;
                }
                self.recover(&e);
            }
        }
    }
}

/// How many SM_NOTIFYs from `ip` the client statd has logged.
pub fn notifies(env: &Env, ip: Ipv4Addr) -> usize {
    let Some(log) = &env.statd_log else {
        return 0;
    };
    let want = format!("Received SM_NOTIFY from {ip}");
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&want))
        .count()
}

/// An NFSv3 client holding an NLM lock through one IP; it reclaims when its statd hears
/// SM_NOTIFY from that IP (as the kernel's lockd does on statd's callback).
struct NlmHolder {
    name: String,
    env: Env,
    ip: Ipv4Addr,
    file: String,
    id: usize,
    svid: i32,
}

impl NlmHolder {
    fn lock_of(&self, client: &NlmClient) -> Result<Lock, String> {
        let root = client
            .mount(&self.env.export.display().to_string())
            .map_err(|e| format!("MNT: {e}"))?;
        let fh = client
            .lookup(&root, &self.file)
            .map_err(|e| format!("LOOKUP: {e}"))?;
        Ok(Lock {
            fh,
            owner: self.name.clone().into_bytes(),
            svid: self.svid,
            offset: RANGE.0,
            len: RANGE.1,
        })
    }

    fn acquire(&self, client: &NlmClient) -> Option<Lock> {
        loop {
            if let Ok(l) = self.lock_of(client) {
                if let Ok(NlmStat::Granted) = client.lock(&l, false, 1) {
                    self.env.checker.set_held(self.id, true);
                    self.env
                        .checker
                        .event(format!("{} holds {}", self.name, self.file));
                    return Some(l);
                }
            }
            if !sleep_unless(&self.env.stop, Duration::from_millis(700)) {
                return None;
            }
        }
    }

    fn run(self) {
        let client = nlm(&self.env, self.ip, NLM_HOST);
        let Some(mut l) = self.acquire(&client) else {
            return;
        };
        let mut seen = notifies(&self.env, self.ip);
        let checker = self.env.checker.clone();
        while sleep_unless(&self.env.stop, Duration::from_millis(500)) {
            let n = notifies(&self.env, self.ip);
            if n <= seen {
                continue;
            }
            seen = n;
            checker.recovering(&self.name, true);
            checker.event(format!("{}: SM_NOTIFY from {}", self.name, self.ip));
            let deadline = Instant::now() + RECOVERY_LIMIT;
            let mut last = String::new();
            loop {
                if Instant::now() > deadline {
                    checker.lost(&self.name, &format!("reclaim not granted in time: {last}"));
                    break;
                }
                match client.lock(&l, true, 1) {
                    Ok(NlmStat::Granted) => {
                        checker.reclaimed(&self.name);
                        break;
                    }
                    Ok(NlmStat::Denied) => {
                        checker.lost(&self.name, "reclaim refused: NLM4_DENIED");
                        checker.set_held(self.id, false);
                        match self.acquire(&client) {
                            Some(again) => l = again,
                            None => return,
                        }
                        break;
                    }
                    other => last = format!("{other:?}"),
                }
                if !sleep_unless(&self.env.stop, Duration::from_millis(500)) {
                    return;
                }
            }
            checker.recovering(&self.name, false);
        }
    }
}

/// One attempt to take `lock` through `ip`; Some(when) if the server granted it.
fn challenge(env: &Env, n: u64, ip: Ipv4Addr, lock: &HeldLock, nlm_proto: bool) -> Option<Instant> {
    if nlm_proto {
        let c = nlm(env, ip, NLM_CHALLENGER);
        let root = c.mount(&env.export.display().to_string()).ok()?;
        let fh = c
            .lookup(&root, lock.file.trim_start_matches("export/"))
            .ok()?;
        let l = Lock {
            fh,
            owner: format!("challenger-{n}").into_bytes(),
            svid: 9000 + (n % 1000) as i32,
            offset: lock.offset,
            len: lock.len,
        };
        let granted = matches!(c.lock(&l, false, 1), Ok(NlmStat::Granted)).then(Instant::now);
        if granted.is_some() {
            let _ = c.unlock(&l);
        }
        return granted;
    }
    let mut c = v4(env, ip, 1, &format!("Linux NFSv4.1 challenger-{n}"));
    c.establish().ok()?;
    let mut granted = None;
    if c.reclaim_complete().is_ok() {
        if let Ok(mut f) = c.open(&lock.file) {
            if c.lock(&mut f, LockType::Write, lock.offset, lock.len, false)
                .is_ok()
            {
                granted = Some(Instant::now());
                let _ = c.unlock(&mut f, lock.offset, lock.len);
            }
            let _ = c.close(&mut f);
        }
    }
    let _ = c.destroy();
    granted
}

pub struct Population {
    env: Env,
    threads: Vec<JoinHandle<()>>,
}

/// Which holders run on every public IP: (name stem, protocol, churns).
pub fn kinds(nlm_on: bool) -> Vec<(&'static str, Proto, bool)> {
    let mut k = vec![
        ("v40-linux", Proto::V40, false),
        ("v40-noaddr", Proto::V40, false),
        ("v41-linux", Proto::V41, false),
        ("v42-churn", Proto::V42, true),
    ];
    if nlm_on {
        k.push(("nlm", Proto::Nlm, false));
    }
    k
}

/// The files the population uses, to create in the export before it starts.
pub fn files(ips: &[Ipv4Addr], nlm_on: bool) -> Vec<String> {
    ips.iter()
        .flat_map(|ip| {
            kinds(nlm_on)
                .into_iter()
                .map(move |(k, _, _)| format!("t-{ip}-{k}.dat"))
        })
        .collect()
}

impl Population {
    /// Starts every holder and `challengers` challenger threads (seeded from `seed`).
    pub fn start(
        env: Env,
        ips: &[Ipv4Addr],
        nlm_on: bool,
        challengers: usize,
        seed: u64,
    ) -> Population {
        let mut threads = Vec::new();
        let mut svid = 100;
        for ip in ips {
            for (kind, proto, churn) in kinds(nlm_on) {
                let file = format!("t-{ip}-{kind}.dat");
                let host = format!("torture-{kind}-{}", ip.octets()[3]);
                let name = match proto {
                    // As Linux names them (tests/common owners): 4.0 with the server address,
                    // 4.1+ the uniform string; an address-less 4.0 owner as libnfs sends it.
                    Proto::V40 if kind == "v40-linux" => format!("Linux NFSv4.0 {host}/{ip}"),
                    Proto::V40 => format!("Libnfs pid:{svid} {host}"),
                    Proto::V41 => format!("Linux NFSv4.1 {host}"),
                    Proto::V42 => format!("Linux NFSv4.2 {host}"),
                    Proto::Nlm => format!("nlm {host} svid {svid}"),
                };
                let id = env.checker.register(HeldLock {
                    client: name.clone(),
                    proto,
                    via: *ip,
                    file: format!("export/{file}"),
                    offset: RANGE.0,
                    len: RANGE.1,
                    challengeable: !churn,
                });
                svid += 1;
                let env2 = env.clone();
                let ip = *ip;
                let t = match proto {
                    Proto::Nlm => {
                        let h = NlmHolder {
                            name,
                            env: env2,
                            ip,
                            file,
                            id,
                            svid,
                        };
                        std::thread::spawn(move || h.run())
                    }
                    _ => {
                        let minor = match proto {
                            Proto::V40 => 0,
                            Proto::V41 => 1,
                            _ => 2,
                        };
                        let h = V4Holder {
                            client: v4(&env2, ip, minor, &name),
                            name,
                            env: env2,
                            file: format!("export/{file}"),
                            id,
                            churn,
                            open: None,
                            held: false,
                        };
                        std::thread::spawn(move || h.run())
                    }
                };
                threads.push(t);
            }
        }
        for c in 0..challengers {
            let env = env.clone();
            let ips = ips.to_vec();
            let mut rng = Rng::new(seed ^ (0xC4A1_1E46 + c as u64));
            threads.push(std::thread::spawn(move || {
                let mut n = c as u64 * 1_000_000;
                while sleep_unless(&env.stop, rng.millis(150, 400)) {
                    let held = env.checker.challengeable();
                    let (Some((id, lock)), Some(ip)) =
                        (rng.pick(&held).cloned(), rng.pick(&ips).copied())
                    else {
                        continue;
                    };
                    n += 1;
                    let use_nlm = nlm_on && rng.chance(0.4);
                    if let Some(at) = challenge(&env, n, ip, &lock, use_nlm) {
                        let by = format!(
                            "challenger {n} ({})",
                            if use_nlm { "NLM" } else { "NFSv4.1" }
                        );
                        env.checker.challenge_granted(id, &by, ip, at);
                    }
                }
            }));
        }
        Population { env, threads }
    }

    /// Every challengeable held lock, challenged once through every IP (NFSv4.1 and, with
    /// NLM on, NLM): after a step, a lock lost silently shows here.
    pub fn sweep(&self, ips: &[Ipv4Addr], nlm_on: bool) {
        let mut n = 900_000_000;
        for (id, lock) in self.env.checker.challengeable() {
            for ip in ips {
                for use_nlm in [false, true] {
                    if use_nlm && !nlm_on {
                        continue;
                    }
                    n += 1;
                    if let Some(at) = challenge(&self.env, n, *ip, &lock, use_nlm) {
                        let by = format!("sweep challenger {n}");
                        self.env.checker.challenge_granted(id, &by, *ip, at);
                    }
                }
            }
        }
    }

    pub fn stop(self) {
        self.env.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}
