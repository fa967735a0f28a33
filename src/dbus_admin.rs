//! Ganesha's D-Bus admin interface: the `grace` and `get_grace` methods CTDB's event script
//! drives.

use std::time::Duration;

pub const GANESHA_BUS_NAME: &str = "org.ganesha.nfsd";
pub const ADMIN_PATH: &str = "/org/ganesha/nfsd/admin";
pub const ADMIN_INTERFACE: &str = "org.ganesha.nfsd.admin";

/// Calls `org.ganesha.nfsd.admin.<method>` on the system bus (DBUS_SYSTEM_BUS_ADDRESS when
/// set) and decodes the reply body, which always ends in Ganesha's (success, message).
fn call<A, R>(method: &str, args: &A, shown: &str, timeout: Duration) -> Result<R, String>
where
    A: zbus::export::serde::Serialize + zbus::zvariant::DynamicType,
    R: for<'d> zbus::zvariant::DynamicDeserialize<'d>,
{
    let what = format!("{ADMIN_INTERFACE}.{method}({shown})");
    let conn = zbus::blocking::connection::Builder::system()
        .and_then(|b| b.method_timeout(timeout).build())
        .map_err(|e| format!("cannot connect to the system D-Bus: {e}"))?;
    let reply = conn
        .call_method(
            Some(GANESHA_BUS_NAME),
            ADMIN_PATH,
            Some(ADMIN_INTERFACE),
            method,
            args,
        )
        .map_err(|e| format!("{what}: {e}"))?;
    reply
        .body()
        .deserialize()
        .map_err(|e| format!("{what}: unexpected reply: {e}"))
}

/// `grace(arg)`: `arg` is "<event>:<ip or verb>", e.g. "5:10.0.0.5" (take over),
/// "2:10.0.0.5" (release), "3:hold". Returns Ganesha's message.
pub fn grace(arg: &str, timeout: Duration) -> Result<String, String> {
    let (ok, message): (bool, String) = call("grace", &(arg,), &format!("{arg:?}"), timeout)?;
    if ok {
        Ok(message)
    } else {
        Err(format!(
            "{ADMIN_INTERFACE}.grace({arg:?}) refused: {message}"
        ))
    }
}

/// `get_grace()`: whether Ganesha is in grace now.
pub fn in_grace(timeout: Duration) -> Result<bool, String> {
    let (in_grace, ok, message): (bool, bool, String) = call("get_grace", &(), "", timeout)?;
    if ok {
        Ok(in_grace)
    } else {
        Err(format!("{ADMIN_INTERFACE}.get_grace() refused: {message}"))
    }
}

/// Whether a process owns Ganesha's bus name, i.e. ganesha.nfsd runs (its connection, and
/// the name with it, goes when the process exits). Tells a dead Ganesha from a slow one.
pub fn ganesha_on_bus(timeout: Duration) -> Result<bool, String> {
    let conn = zbus::blocking::connection::Builder::system()
        .and_then(|b| b.method_timeout(timeout).build())
        .map_err(|e| format!("cannot connect to the system D-Bus: {e}"))?;
    let reply = conn
        .call_method(
            Some("org.freedesktop.DBus"),
            "/org/freedesktop/DBus",
            Some("org.freedesktop.DBus"),
            "NameHasOwner",
            &(GANESHA_BUS_NAME,),
        )
        .map_err(|e| format!("org.freedesktop.DBus.NameHasOwner({GANESHA_BUS_NAME}): {e}"))?;
    reply
        .body()
        .deserialize::<bool>()
        .map_err(|e| format!("NameHasOwner: unexpected reply: {e}"))
}
