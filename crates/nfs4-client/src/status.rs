//! nfsstat4 values (RFC 7530 §13, RFC 5661 §15) with their protocol names.

use std::fmt;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct NfsStat(pub u32);

impl NfsStat {
    pub const OK: NfsStat = NfsStat(0);
    pub const PERM: NfsStat = NfsStat(1);
    pub const NOENT: NfsStat = NfsStat(2);
    pub const ACCESS: NfsStat = NfsStat(13);
    pub const INVAL: NfsStat = NfsStat(22);
    pub const DENIED: NfsStat = NfsStat(10010);
    pub const EXPIRED: NfsStat = NfsStat(10011);
    pub const GRACE: NfsStat = NfsStat(10013);
    pub const SHARE_DENIED: NfsStat = NfsStat(10015);
    pub const CLID_INUSE: NfsStat = NfsStat(10017);
    pub const STALE_CLIENTID: NfsStat = NfsStat(10022);
    pub const STALE_STATEID: NfsStat = NfsStat(10023);
    pub const BAD_STATEID: NfsStat = NfsStat(10025);
    pub const BAD_SEQID: NfsStat = NfsStat(10026);
    pub const NO_GRACE: NfsStat = NfsStat(10033);
    pub const RECLAIM_BAD: NfsStat = NfsStat(10034);
    pub const RECLAIM_CONFLICT: NfsStat = NfsStat(10035);
    pub const BADXDR: NfsStat = NfsStat(10036);
    pub const BADSESSION: NfsStat = NfsStat(10052);
    pub const COMPLETE_ALREADY: NfsStat = NfsStat(10054);
    pub const SEQ_MISORDERED: NfsStat = NfsStat(10063);
    pub const DEADSESSION: NfsStat = NfsStat(10078);

    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "NFS4_OK",
            1 => "NFS4ERR_PERM",
            2 => "NFS4ERR_NOENT",
            5 => "NFS4ERR_IO",
            13 => "NFS4ERR_ACCESS",
            17 => "NFS4ERR_EXIST",
            20 => "NFS4ERR_NOTDIR",
            21 => "NFS4ERR_ISDIR",
            22 => "NFS4ERR_INVAL",
            10001 => "NFS4ERR_BADHANDLE",
            10004 => "NFS4ERR_NOTSUPP",
            10006 => "NFS4ERR_SERVERFAULT",
            10008 => "NFS4ERR_DELAY",
            10010 => "NFS4ERR_DENIED",
            10011 => "NFS4ERR_EXPIRED",
            10012 => "NFS4ERR_LOCKED",
            10013 => "NFS4ERR_GRACE",
            10014 => "NFS4ERR_FHEXPIRED",
            10015 => "NFS4ERR_SHARE_DENIED",
            10017 => "NFS4ERR_CLID_INUSE",
            10018 => "NFS4ERR_RESOURCE",
            10020 => "NFS4ERR_NOFILEHANDLE",
            10021 => "NFS4ERR_MINOR_VERS_MISMATCH",
            10022 => "NFS4ERR_STALE_CLIENTID",
            10023 => "NFS4ERR_STALE_STATEID",
            10024 => "NFS4ERR_OLD_STATEID",
            10025 => "NFS4ERR_BAD_STATEID",
            10026 => "NFS4ERR_BAD_SEQID",
            10033 => "NFS4ERR_NO_GRACE",
            10034 => "NFS4ERR_RECLAIM_BAD",
            10035 => "NFS4ERR_RECLAIM_CONFLICT",
            10036 => "NFS4ERR_BADXDR",
            10037 => "NFS4ERR_LOCKS_HELD",
            10038 => "NFS4ERR_OPENMODE",
            10044 => "NFS4ERR_OP_ILLEGAL",
            10052 => "NFS4ERR_BADSESSION",
            10053 => "NFS4ERR_BADSLOT",
            10054 => "NFS4ERR_COMPLETE_ALREADY",
            10063 => "NFS4ERR_SEQ_MISORDERED",
            10071 => "NFS4ERR_OP_NOT_IN_SESSION",
            10078 => "NFS4ERR_DEADSESSION",
            _ => return None,
        })
    }
}

impl fmt::Display for NfsStat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "nfsstat4 {}", self.0),
        }
    }
}

impl fmt::Debug for NfsStat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
