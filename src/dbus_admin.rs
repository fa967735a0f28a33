//! Ganesha's D-Bus admin interface: the `grace` method CTDB's event script drives.

use std::time::Duration;

pub const GANESHA_BUS_NAME: &str = "org.ganesha.nfsd";
pub const ADMIN_PATH: &str = "/org/ganesha/nfsd/admin";
pub const ADMIN_INTERFACE: &str = "org.ganesha.nfsd.admin";

/// Calls `org.ganesha.nfsd.admin.grace(arg)` on the system bus (DBUS_SYSTEM_BUS_ADDRESS
/// when set). `arg` is "<event>:<ip>", e.g. "5:10.0.0.5" (take over) or "2:10.0.0.5"
/// (release). Returns Ganesha's message.
pub fn grace(arg: &str, timeout: Duration) -> Result<String, String> {
    let conn = zbus::blocking::connection::Builder::system()
        .and_then(|b| b.method_timeout(timeout).build())
        .map_err(|e| format!("cannot connect to the system D-Bus: {e}"))?;
    let reply = conn
        .call_method(
            Some(GANESHA_BUS_NAME),
            ADMIN_PATH,
            Some(ADMIN_INTERFACE),
            "grace",
            &(arg,),
        )
        .map_err(|e| format!("{ADMIN_INTERFACE}.grace({arg:?}): {e}"))?;
    let (ok, message): (bool, String) = reply
        .body()
        .deserialize()
        .map_err(|e| format!("{ADMIN_INTERFACE}.grace({arg:?}): unexpected reply: {e}"))?;
    if ok {
        Ok(message)
    } else {
        Err(format!(
            "{ADMIN_INTERFACE}.grace({arg:?}) refused: {message}"
        ))
    }
}

/// `org.ganesha.nfsd.admin.get_grace()`: whether Ganesha is in grace now.
pub fn in_grace(timeout: Duration) -> Result<bool, String> {
    let conn = zbus::blocking::connection::Builder::system()
        .and_then(|b| b.method_timeout(timeout).build())
        .map_err(|e| format!("cannot connect to the system D-Bus: {e}"))?;
    let reply = conn
        .call_method(
            Some(GANESHA_BUS_NAME),
            ADMIN_PATH,
            Some(ADMIN_INTERFACE),
            "get_grace",
            &(),
        )
        .map_err(|e| format!("{ADMIN_INTERFACE}.get_grace(): {e}"))?;
    let (in_grace, ok, message): (bool, bool, String) = reply
        .body()
        .deserialize()
        .map_err(|e| format!("{ADMIN_INTERFACE}.get_grace(): unexpected reply: {e}"))?;
    if ok {
        Ok(in_grace)
    } else {
        Err(format!("{ADMIN_INTERFACE}.get_grace() refused: {message}"))
    }
}
