//! Versioned access to nfs_client_id_t and the structs it points to. Offsets come from
//! include/ganesha_abi.h (measured for Debian's builds, see ganesha-abi.md); a Ganesha whose
//! version has no table here is refused rather than guessed at.

use super::bindings as b;
use crate::backend::ClientInfo;
use std::ffi::c_void;
use std::fmt;
use std::net::Ipv4Addr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub name: &'static str,
    cid_minorversion: usize,
    cid_gsh_client: usize,
    /// COMPONENT_STATE's index in Ganesha's log component table.
    pub component_state: usize,
}

pub const COMPONENT_CLIENTID: usize = b::GSH_COMPONENT_CLIENTID as usize;

const V4: Layout = Layout {
    name: "4.3/5.x",
    cid_minorversion: b::GSH43_CID_MINORVERSION_OFF as usize,
    cid_gsh_client: b::GSH43_CID_GSH_CLIENT_OFF as usize,
    component_state: b::GSH_COMPONENT_STATE_V4 as usize,
};

const V6: Layout = Layout {
    name: "6.2",
    cid_minorversion: b::GSH62_CID_MINORVERSION_OFF as usize,
    cid_gsh_client: b::GSH62_CID_GSH_CLIENT_OFF as usize,
    component_state: b::GSH_COMPONENT_STATE_V6 as usize,
};

/// The versions whose layouts were measured: 4.3 (Debian 12's binaries and the source),
/// every 5.x (unchanged from 4.3 up to 5.9 for every field we read) and 6.2.
pub fn layout_for(version: (u32, u32)) -> Option<Layout> {
    match version {
        (4, 3) | (5, _) => Some(V4),
        (6, 2) => Some(V6),
        _ => None,
    }
}

pub const SUPPORTED: &str = "4.3, 5.x, 6.2";

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
unsafe fn field<T: Copy>(base: *const c_void, off: usize) -> T {
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
    let record: *const c_void = field(cid, b::GSH_CID_CLIENT_RECORD_OFF as usize);
    if record.is_null() {
        return Err(LayoutError(format!(
            "client {clientid:#x} has no client record"
        )));
    }
    let len: i32 = field(record, b::GSH_CR_CLIENT_VAL_LEN_OFF as usize);
    if !(0..=b::GSH_NFS4_OPAQUE_LIMIT as i32).contains(&len) {
        return Err(LayoutError(format!(
            "client {clientid:#x} has an owner of {len} bytes (NFSv4 allows 0 to 1024)"
        )));
    }
    let owner = std::slice::from_raw_parts(
        (record as *const u8).add(b::GSH_CR_CLIENT_VAL_OFF as usize),
        len as usize,
    )
    .to_vec();
    let server: u32 = field(record, b::GSH_CR_SERVER_ADDR_OFF as usize);
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
        server_addr: (server != 0).then(|| Ipv4Addr::from(server)),
        minor_version,
    })
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
        assert_eq!(layout_for((4, 3)), Some(V4));
        assert_eq!(layout_for((5, 9)), Some(V4));
        assert_eq!(layout_for((6, 2)), Some(V6));
        for v in [(4, 2), (3, 5), (6, 3), (7, 0)] {
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
        let c = unsafe { read_client(cid.as_ptr() as *const c_void, &V4) }.unwrap();
        assert_eq!(c.clientid, 0x1234);
        assert_eq!(c.owner, b"a\0b/c");
        assert_eq!(c.caller_addr.as_deref(), Some("::ffff:10.0.0.9"));
        assert_eq!(c.server_addr, Some(Ipv4Addr::new(10, 77, 1, 3)));
        assert_eq!(c.minor_version, 1);
        assert_eq!(c.tag(), "::ffff:10.0.0.9-(12:0x6100622f63)");

        // Hostile values are errors, not reads out of bounds.
        record[72..76].copy_from_slice(&(-1i32).to_ne_bytes());
        assert!(unsafe { read_client(cid.as_ptr() as *const c_void, &V4) }.is_err());
        record[72..76].copy_from_slice(&5i32.to_ne_bytes());
        gsh[104..232].fill(b'x');
        assert!(unsafe { read_client(cid.as_ptr() as *const c_void, &V4) }.is_err());
        cid[1208..1216].fill(0);
        let c = unsafe { read_client(cid.as_ptr() as *const c_void, &V4) }.unwrap();
        assert_eq!(c.caller_addr, None);
        cid[88..96].fill(0);
        assert!(unsafe { read_client(cid.as_ptr() as *const c_void, &V4) }.is_err());
        assert!(unsafe { read_client(std::ptr::null(), &V4) }.is_err());
    }
}
