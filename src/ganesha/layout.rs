//! Versioned access to nfs_client_id_t and the structs it points to. Offsets come from
//! include/ganesha_abi.h (measured for Debian's builds, see ganesha-abi.md); a Ganesha whose
//! version has no table here is refused rather than guessed at.

use super::bindings as b;
use crate::backend::ClientInfo;
use std::ffi::c_void;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The shape of Ganesha's recovery-backend table and how clients are handed back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Generation {
    /// 4.3 to 6.x: 13 hooks; read_clids gets the callbacks as arguments.
    V4,
    /// 15.x: 14 hooks (reclaim_complete at slot 5); read_clids gets only the grace start
    /// and clients go back through the exported nfs4_add_clid_entry(name, reclaim_complete);
    /// the recovery tag is Ganesha's own (nfs4_create_clid_name).
    V15,
}

/// Where nfs_client_record_t keeps the server address the client connected to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ServerAddr {
    /// uint32, host byte order; 0 for NFSv4.0 (and only the low 32 bits of an IPv6 one).
    HostU32(usize),
    /// A sockaddr_t (IPv4 or IPv6), set for NFSv4.0 too.
    Sockaddr(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub name: &'static str,
    pub generation: Generation,
    cid_recov_tag: usize,
    cid_client_record: usize,
    cid_minorversion: usize,
    cid_gsh_client: usize,
    cr_server_addr: ServerAddr,
    cr_client_val_len: usize,
    cr_client_val: usize,
    /// COMPONENT_STATE's index in Ganesha's log component table.
    pub component_state: usize,
    /// COMPONENT_RECOVERY's (15.x logs recovery there), if the version has one.
    pub component_recovery: Option<usize>,
    /// Where the request context add_clid runs in keeps the connection (None: not
    /// measured for this version; NFSv4.0 clients are then filed by their owner string).
    request: Option<RequestLayout>,
    /// nfs_client_id_t's cid_open_state_counter on versions that park expired clients with
    /// their state (6.x): a release raises it past any threshold so that the client is
    /// expired, not parked.
    pub(super) open_state_counter: Option<usize>,
    /// The fields a release touches (cid_last_renew, cid_confirmed, cid_mutex) are known.
    pub release: bool,
    /// Offset in nfs_param of NFSV4 { Sticky_Grace } on versions that have the option and
    /// where it was measured (6.5). None: a refused lift always ends reclaims (4.3 always
    /// works so; on other versions it is not known, and assuming it is the safe side).
    pub(super) sticky_grace: Option<usize>,
    /// Offset in nfs_param of NFSV4 { Grace_Period } (u32 seconds) where it was measured
    /// (4.3). The backend re-arms Ganesha's grace timer before it runs out during a
    /// takeover run (src/backend/cluster.rs); without the offset it cannot.
    pub(super) grace_period: Option<usize>,
}

impl Layout {
    /// Offset of cid_recov_tag (the malloc'd tag Ganesha compares on reclaim).
    pub fn recov_tag(&self) -> usize {
        self.cid_recov_tag
    }
}

/// Offsets into Ganesha's struct req_op_context (see include/ganesha_abi.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RequestLayout {
    caller_addr: usize,
    nfs_vers: usize,
    nfs_minorvers: usize,
    client: usize,
}

pub const COMPONENT_CLIENTID: usize = b::GSH_COMPONENT_CLIENTID as usize;

const REQUEST: RequestLayout = RequestLayout {
    caller_addr: b::GSH43_OPCTX_CALLER_ADDR_OFF as usize,
    nfs_vers: b::GSH43_OPCTX_NFS_VERS_OFF as usize,
    nfs_minorvers: b::GSH43_OPCTX_NFS_MINORVERS_OFF as usize,
    client: b::GSH43_OPCTX_CLIENT_OFF as usize,
};

const V4_3: Layout = Layout {
    name: "4.3",
    generation: Generation::V4,
    cid_recov_tag: b::GSH_CID_RECOV_TAG_OFF as usize,
    cid_client_record: b::GSH_CID_CLIENT_RECORD_OFF as usize,
    cid_minorversion: b::GSH43_CID_MINORVERSION_OFF as usize,
    cid_gsh_client: b::GSH43_CID_GSH_CLIENT_OFF as usize,
    cr_server_addr: ServerAddr::HostU32(b::GSH_CR_SERVER_ADDR_OFF as usize),
    cr_client_val_len: b::GSH_CR_CLIENT_VAL_LEN_OFF as usize,
    cr_client_val: b::GSH_CR_CLIENT_VAL_OFF as usize,
    component_state: b::GSH_COMPONENT_STATE_V4 as usize,
    component_recovery: None,
    request: Some(REQUEST),
    open_state_counter: None,
    release: true,
    sticky_grace: None,
    grace_period: Some(b::GSH43_NFS_PARAM_GRACE_PERIOD_OFF as usize),
};

/// 5.x: the client struct as 4.3; its request context was not measured.
const V5: Layout = Layout {
    name: "5.x",
    request: None,
    grace_period: None,
    ..V4_3
};

const V6: Layout = Layout {
    name: "6.2",
    cid_minorversion: b::GSH62_CID_MINORVERSION_OFF as usize,
    cid_gsh_client: b::GSH62_CID_GSH_CLIENT_OFF as usize,
    component_state: b::GSH_COMPONENT_STATE_V6 as usize,
    open_state_counter: Some(b::GSH62_CID_OPEN_STATE_COUNTER_OFF as usize),
    grace_period: None,
    ..V4_3
};

/// 6.5: 6.2's structs, and Sticky_Grace (off by default) in nfs_param.
const V6_5: Layout = Layout {
    name: "6.5",
    sticky_grace: Some(b::GSH65_NFS_PARAM_STICKY_GRACE_OFF as usize),
    ..V6
};

/// Debian sid's 15.2 (ganesha_abi.h). Its own release ("2:<ip>") matches clients by their
/// server address, so no release of ours is needed and none is attempted (the fields it
/// would touch were not measured).
const V15: Layout = Layout {
    name: "15.2",
    generation: Generation::V15,
    cid_recov_tag: b::GSH152_CID_RECOV_TAG_OFF as usize,
    cid_client_record: b::GSH152_CID_CLIENT_RECORD_OFF as usize,
    cid_minorversion: b::GSH152_CID_MINORVERSION_OFF as usize,
    cid_gsh_client: b::GSH152_CID_GSH_CLIENT_OFF as usize,
    cr_server_addr: ServerAddr::Sockaddr(b::GSH152_CR_SERVER_ADDR_OFF as usize),
    cr_client_val_len: b::GSH152_CR_CLIENT_VAL_LEN_OFF as usize,
    cr_client_val: b::GSH152_CR_CLIENT_VAL_OFF as usize,
    component_state: b::GSH_COMPONENT_STATE_V6 as usize,
    component_recovery: Some(b::GSH_COMPONENT_RECOVERY_V15 as usize),
    request: None,
    open_state_counter: None,
    release: false,
    sticky_grace: None,
    grace_period: None,
};

/// The versions whose layouts were measured: 4.3 (Debian 12's binaries and the source),
/// every 5.x (unchanged from 4.3 up to 5.9 for every field we read), 6.2 and 6.5 (Debian
/// 13's; its sal_data.h, fsal_api.h and recovery-backend table are 6.2's).
pub fn layout_for(version: (u32, u32)) -> Option<Layout> {
    match version {
        (4, 3) => Some(V4_3),
        (5, _) => Some(V5),
        (6, 2) => Some(V6),
        (6, 5) => Some(V6_5),
        (15, 2) => Some(V15),
        _ => None,
    }
}

/// The layout of the Ganesha this library runs in, or the refusal to log.
pub fn running_layout() -> Result<Layout, String> {
    let g = super::symbols::ganesha();
    g.version.and_then(layout_for).ok_or_else(|| {
        format!(
            "Ganesha {} (from {}) has a client struct layout ganesha-ctdb does not know \
             (supported: {SUPPORTED}); refusing to start rather than guess",
            g.version
                .map_or("of unknown version".into(), |(a, b)| format!("{a}.{b}")),
            g.library.as_deref().unwrap_or("no libganesha_nfsd found")
        )
    })
}

pub const SUPPORTED: &str = "4.3, 5.x, 6.2, 6.5, 15.2";

#[derive(Debug, PartialEq, Eq)]
pub struct LayoutError(pub String);

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Reads a `T` at `base + off` without alignment assumptions.
///
/// # Safety
/// `base + off .. + size_of::<T>()` must be readable memory of the struct in question.
pub(super) unsafe fn field<T: Copy>(base: *const c_void, off: usize) -> T {
    std::ptr::read_unaligned((base as *const u8).add(off) as *const T)
}

/// Decodes a client from Ganesha's nfs_client_id_t.
///
/// # Safety
/// `cid` must be null or point to a live nfs_client_id_t of the Ganesha version `layout`
/// was chosen for; Ganesha guarantees that for the duration of the hooks that pass one.
pub unsafe fn read_client(cid: *const c_void, layout: &Layout) -> Result<ClientInfo, LayoutError> {
    if cid.is_null() {
        return Err(LayoutError("Ganesha passed a NULL client".into()));
    }
    let clientid: u64 = field(cid, b::GSH_CID_CLIENTID_OFF as usize);
    let record: *const c_void = field(cid, layout.cid_client_record);
    if record.is_null() {
        return Err(LayoutError(format!(
            "client {clientid:#x} has no client record"
        )));
    }
    let len: i32 = field(record, layout.cr_client_val_len);
    if !(0..=b::GSH_NFS4_OPAQUE_LIMIT as i32).contains(&len) {
        return Err(LayoutError(format!(
            "client {clientid:#x} has an owner of {len} bytes (NFSv4 allows 0 to 1024)"
        )));
    }
    let owner = std::slice::from_raw_parts(
        (record as *const u8).add(layout.cr_client_val),
        len as usize,
    )
    .to_vec();
    let server_addr = match layout.cr_server_addr {
        ServerAddr::HostU32(off) => {
            let server: u32 = field(record, off);
            (server != 0).then(|| IpAddr::V4(Ipv4Addr::from(server)))
        }
        ServerAddr::Sockaddr(off) => {
            let ss = std::slice::from_raw_parts((record as *const u8).add(off), 28);
            let family = i32::from(u16::from_ne_bytes([ss[0], ss[1]]));
            match family {
                libc::AF_INET => sockaddr_ip(ss, 16).ok(),
                libc::AF_INET6 => sockaddr_ip(ss, 28).ok(),
                _ => None,
            }
        }
    };
    let minor_version: u32 = field(cid, layout.cid_minorversion);
    if minor_version > 2 {
        return Err(LayoutError(format!(
            "client {clientid:#x} has minor version {minor_version}: the struct layout does not \
             match Ganesha {}",
            layout.name
        )));
    }
    let gsh_client: *const c_void = field(cid, layout.cid_gsh_client);
    let caller_addr = if gsh_client.is_null() {
        None
    } else {
        Some(
            read_hostaddr(gsh_client)
                .map_err(|e| LayoutError(format!("client {clientid:#x}: {e}")))?,
        )
    };
    Ok(ClientInfo {
        clientid,
        owner,
        caller_addr,
        server_addr,
        server_addr_low32: matches!(layout.cr_server_addr, ServerAddr::HostU32(_)),
        minor_version,
        tag: None,
    })
}

/// The server address of the connection the calling hook's request came in on, for an
/// NFSv4.0 client (whose client record has none): read from Ganesha's request context and
/// ntirpc's transport, and only trusted when every cross-check holds — the request is
/// NFSv4.0 from this very client (same gsh_client), and both of the transport's address
/// buffers point at their own storage, which is where a TCP connection's do and nothing
/// else's would. The reason is returned when it cannot be learned.
///
/// # Safety
/// `cid` must be a live nfs_client_id_t of the version `layout` was chosen for, and the
/// call must run on the thread of the hook Ganesha called with it (add_clid).
pub unsafe fn request_server_addr(cid: *const c_void, layout: &Layout) -> Result<IpAddr, String> {
    let Some(req) = layout.request else {
        return Err(format!(
            "Ganesha {}'s request context is not known to ganesha-ctdb",
            layout.name
        ));
    };
    if cid.is_null() {
        return Err("no client".into());
    }
    addr_from_request(
        super::symbols::current_op_ctx(),
        cid,
        &req,
        layout.cid_gsh_client,
    )
}

/// request_server_addr on an explicit request context (tests build one).
///
/// # Safety
/// `ctx` is null or a live req_op_context of the layout `req` describes; `cid` a live client.
unsafe fn addr_from_request(
    ctx: *const c_void,
    cid: *const c_void,
    req: &RequestLayout,
    cid_gsh_client: usize,
) -> Result<IpAddr, String> {
    if ctx.is_null() {
        return Err("the hook runs outside a request".into());
    }
    let vers: u32 = field(ctx, req.nfs_vers);
    let minor: u32 = field(ctx, req.nfs_minorvers);
    if (vers, minor) != (4, 0) {
        return Err(format!("the request is NFS {vers}.{minor}, not 4.0"));
    }
    let ctx_client: *const c_void = field(ctx, req.client);
    let cid_client: *const c_void = field(cid, cid_gsh_client);
    if ctx_client.is_null() || ctx_client != cid_client {
        return Err("the request comes from another client".into());
    }
    let remote: *const u8 = field(ctx, req.caller_addr);
    if remote.is_null() {
        return Err("the request has no caller address".into());
    }
    // Each address of the transport: a struct netbuf (16 bytes) right before its storage.
    let netbuf = |ss: *const u8| ss.sub(16) as *const c_void;
    let size = b::GSH_NTIRPC_RPC_ADDRESS_SIZE as usize;
    let local = remote.sub(size);
    let remote_buf: *const u8 = field(netbuf(remote), b::GSH_NTIRPC_NETBUF_BUF_OFF as usize);
    let local_buf: *const u8 = field(netbuf(local), b::GSH_NTIRPC_NETBUF_BUF_OFF as usize);
    if remote_buf != remote || local_buf != local {
        return Err("the caller address is not a connection's (ntirpc layout differs?)".into());
    }
    let len: u32 = field(netbuf(local), b::GSH_NTIRPC_NETBUF_LEN_OFF as usize);
    sockaddr_ip(std::slice::from_raw_parts(local, 128), len as usize)
}

/// The address in a sockaddr_in/sockaddr_in6 of `len` bytes; IPv4-mapped IPv6 addresses
/// (a dual-stack listener's view of an IPv4 connection) as the IPv4 address they are.
fn sockaddr_ip(ss: &[u8], len: usize) -> Result<IpAddr, String> {
    let family = u16::from_ne_bytes([ss[0], ss[1]]);
    let port = u16::from_be_bytes([ss[2], ss[3]]);
    let ip = match (i32::from(family), len) {
        (libc::AF_INET, 16) => IpAddr::V4(Ipv4Addr::new(ss[4], ss[5], ss[6], ss[7])),
        (libc::AF_INET6, 28) => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&ss[8..24]);
            let v6 = Ipv6Addr::from(a);
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        _ => {
            return Err(format!(
                "the local address is not IPv4/IPv6 (family {family}, {len} bytes)"
            ))
        }
    };
    if port == 0 || ip.is_unspecified() {
        return Err(format!(
            "the local address {ip} port {port} is not a connection's"
        ));
    }
    Ok(ip)
}

/// gsh_client.hostaddr_str: inet_ntop output in a char[128]; must be NUL-terminated ASCII.
unsafe fn read_hostaddr(gsh_client: *const c_void) -> Result<String, String> {
    let bytes = std::slice::from_raw_parts(
        (gsh_client as *const u8).add(b::GSH_CLIENT_HOSTADDR_STR_OFF as usize),
        b::GSH_SOCK_NAME_MAX as usize,
    );
    let end = bytes
        .iter()
        .position(|&c| c == 0)
        .ok_or("caller address is not NUL-terminated")?;
    let s = &bytes[..end];
    if !s.iter().all(|c| c.is_ascii_graphic()) {
        return Err("caller address is not printable".into());
    }
    Ok(String::from_utf8_lossy(s).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_measured_versions_have_layouts() {
        assert_eq!(layout_for((4, 3)), Some(V4_3));
        assert_eq!(layout_for((5, 9)), Some(V5));
        assert_eq!(layout_for((6, 2)), Some(V6));
        assert_eq!(layout_for((6, 5)), Some(V6_5));
        assert_eq!(layout_for((15, 2)), Some(V15));
        for v in [(4, 2), (3, 5), (6, 3), (7, 0), (15, 1), (16, 0)] {
            assert_eq!(layout_for(v), None, "{v:?}");
        }
    }

    /// Builds an nfs_client_id_t at the 4.3 offsets in a buffer and reads it back.
    #[test]
    fn reads_a_client_at_the_4_3_offsets() {
        let mut record = [0u8; 80 + 16];
        record[64..68].copy_from_slice(&0x0a4d_0103u32.to_ne_bytes());
        record[72..76].copy_from_slice(&5i32.to_ne_bytes());
        record[76..81].copy_from_slice(b"a\0b/c");
        let mut gsh = [0u8; 360];
        gsh[104..120].copy_from_slice(b"::ffff:10.0.0.9\0");
        let mut cid = [0u8; 1216];
        cid[0..8].copy_from_slice(&0x1234u64.to_ne_bytes());
        cid[88..96].copy_from_slice(&(record.as_ptr() as usize).to_ne_bytes());
        cid[1192..1196].copy_from_slice(&1u32.to_ne_bytes());
        cid[1208..1216].copy_from_slice(&(gsh.as_ptr() as usize).to_ne_bytes());
        let c = unsafe { read_client(cid.as_ptr() as *const c_void, &V4_3) }.unwrap();
        assert_eq!(c.clientid, 0x1234);
        assert_eq!(c.owner, b"a\0b/c");
        assert_eq!(c.caller_addr.as_deref(), Some("::ffff:10.0.0.9"));
        assert_eq!(c.server_addr, Some(IpAddr::V4(Ipv4Addr::new(10, 77, 1, 3))));
        assert_eq!(c.minor_version, 1);
        assert_eq!(c.tag(), "::ffff:10.0.0.9-(12:0x6100622f63)");

        // Hostile values are errors, not reads out of bounds.
        record[72..76].copy_from_slice(&(-1i32).to_ne_bytes());
        assert!(unsafe { read_client(cid.as_ptr() as *const c_void, &V4_3) }.is_err());
        record[72..76].copy_from_slice(&5i32.to_ne_bytes());
        gsh[104..232].fill(b'x');
        assert!(unsafe { read_client(cid.as_ptr() as *const c_void, &V4_3) }.is_err());
        cid[1208..1216].fill(0);
        let c = unsafe { read_client(cid.as_ptr() as *const c_void, &V4_3) }.unwrap();
        assert_eq!(c.caller_addr, None);
        cid[88..96].fill(0);
        assert!(unsafe { read_client(cid.as_ptr() as *const c_void, &V4_3) }.is_err());
        assert!(unsafe { read_client(std::ptr::null(), &V4_3) }.is_err());
    }

    /// ntirpc's xp_local then xp_remote (struct rpc_address each: netbuf, sockaddr_storage),
    /// laid out as libntirpc 4.3's SVCXPRT has them, with a local address of `local`.
    fn transport(local: &[u8]) -> Vec<u64> {
        let mut x = vec![0u64; 2 * 144 / 8];
        let base = x.as_mut_ptr() as *mut u8;
        // SAFETY: writes stay inside the 288-byte buffer.
        unsafe {
            for (i, len) in [(0usize, local.len() as u32), (144, 28)] {
                std::ptr::write_unaligned(base.add(i + 4) as *mut u32, len);
                std::ptr::write_unaligned(base.add(i + 8) as *mut usize, base.add(i + 16) as usize);
            }
            std::ptr::copy_nonoverlapping(local.as_ptr(), base.add(16), local.len());
        }
        x
    }

    fn sockaddr_in(ip: [u8; 4], port: u16) -> Vec<u8> {
        let mut s = vec![0u8; 16];
        s[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        s[2..4].copy_from_slice(&port.to_be_bytes());
        s[4..8].copy_from_slice(&ip);
        s
    }

    fn sockaddr_in6(ip: Ipv6Addr, port: u16) -> Vec<u8> {
        let mut s = vec![0u8; 28];
        s[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        s[2..4].copy_from_slice(&port.to_be_bytes());
        s[8..24].copy_from_slice(&ip.octets());
        s
    }

    #[test]
    fn an_nfsv4_0_clients_server_address_comes_from_its_own_connection() {
        let req = V4_3.request.unwrap();
        let gsh = [0u8; 360];
        let other_gsh = [0u8; 360];
        let mut cid = [0u8; 1216];
        cid[1208..1216].copy_from_slice(&(gsh.as_ptr() as usize).to_ne_bytes());
        let mut xprt = transport(&sockaddr_in6("::ffff:10.77.1.1".parse().unwrap(), 2049));
        let remote = unsafe { (xprt.as_mut_ptr() as *mut u8).add(144 + 16) } as usize;
        let mut ctx = [0u8; 256];
        let put =
            |ctx: &mut [u8; 256], off: usize, v: &[u8]| ctx[off..off + v.len()].copy_from_slice(v);
        put(&mut ctx, req.nfs_vers, &4u32.to_ne_bytes());
        put(&mut ctx, req.nfs_minorvers, &0u32.to_ne_bytes());
        put(&mut ctx, req.client, &(gsh.as_ptr() as usize).to_ne_bytes());
        put(&mut ctx, req.caller_addr, &remote.to_ne_bytes());
        let read = |ctx: &[u8; 256]| unsafe {
            addr_from_request(
                ctx.as_ptr() as *const c_void,
                cid.as_ptr() as *const c_void,
                &req,
                V4_3.cid_gsh_client,
            )
        };
        assert_eq!(
            read(&ctx),
            Ok("10.77.1.1".parse().unwrap()),
            "v4-mapped as IPv4"
        );

        // Every cross-check refuses on its own.
        let mut c = ctx;
        put(&mut c, req.nfs_minorvers, &1u32.to_ne_bytes());
        assert!(read(&c).is_err(), "an NFSv4.1 request");
        let mut c = ctx;
        put(
            &mut c,
            req.client,
            &(other_gsh.as_ptr() as usize).to_ne_bytes(),
        );
        assert!(read(&c).is_err(), "another client's request");
        let mut c = ctx;
        put(&mut c, req.caller_addr, &(remote + 8).to_ne_bytes());
        assert!(read(&c).is_err(), "not a transport's address");
        let mut c = ctx;
        put(&mut c, req.caller_addr, &0usize.to_ne_bytes());
        assert!(read(&c).is_err(), "no caller address");
        assert!(unsafe {
            addr_from_request(std::ptr::null(), cid.as_ptr() as *const c_void, &req, 1208)
        }
        .is_err());
        // A UDP transport's local buffer points elsewhere (its pktinfo).
        let base = xprt.as_mut_ptr() as *mut u8;
        unsafe { std::ptr::write_unaligned(base.add(8) as *mut usize, 0x1000) };
        assert!(read(&ctx).is_err(), "local buffer not its own");
    }

    #[test]
    fn local_addresses_are_checked() {
        let v4 = sockaddr_in([10, 77, 1, 2], 2049);
        assert_eq!(sockaddr_ip(&pad(&v4), 16), Ok("10.77.1.2".parse().unwrap()));
        let v6 = sockaddr_in6("fd00::5".parse().unwrap(), 2049);
        assert_eq!(sockaddr_ip(&pad(&v6), 28), Ok("fd00::5".parse().unwrap()));
        assert!(
            sockaddr_ip(&pad(&v4), 28).is_err(),
            "length of another family"
        );
        assert!(
            sockaddr_ip(&pad(&sockaddr_in([10, 0, 0, 1], 0)), 16).is_err(),
            "port 0"
        );
        assert!(sockaddr_ip(&pad(&sockaddr_in([0, 0, 0, 0], 2049)), 16).is_err());
        assert!(sockaddr_ip(&[0u8; 128], 16).is_err(), "family 0");
    }

    fn pad(s: &[u8]) -> Vec<u8> {
        let mut v = s.to_vec();
        v.resize(128, 0);
        v
    }
}
