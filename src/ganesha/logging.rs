//! The `log` facade routed into Ganesha's own log (DisplayLogComponentLevel), honouring the
//! levels the operator set for COMPONENT_CLIENTID / COMPONENT_STATE. Outside Ganesha (CLI,
//! tests) records go to stderr.

use super::bindings::ganesha_log_level as lvl;
use super::layout::COMPONENT_CLIENTID;
use super::symbols::ganesha;
use std::ffi::CString;
use std::sync::atomic::{AtomicUsize, Ordering};

struct GaneshaLogger;

static LOGGER: GaneshaLogger = GaneshaLogger;
/// COMPONENT_STATE's index for the running Ganesha (moves in 6.x); 0 until known.
static STATE_COMPONENT: AtomicUsize = AtomicUsize::new(0);
/// COMPONENT_RECOVERY's index where the running Ganesha has one (15.x), else 0: then every
/// message of ours goes there, as Ganesha's own recovery messages do.
static RECOVERY_COMPONENT: AtomicUsize = AtomicUsize::new(0);

/// Logs under the version's RECOVERY component from now on (None: CLIENTID and STATE).
pub fn set_recovery_component(component: Option<usize>) {
    RECOVERY_COMPONENT.store(component.unwrap_or(0), Ordering::Relaxed);
}

/// Installs the logger once; later calls only update the STATE component index.
pub fn init(state_component: Option<usize>) {
    if let Some(c) = state_component {
        STATE_COMPONENT.store(c, Ordering::Relaxed);
    }
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
    }
}

fn ganesha_level(level: log::Level) -> i32 {
    (match level {
        log::Level::Error => lvl::NIV_CRIT,
        log::Level::Warn => lvl::NIV_WARN,
        log::Level::Info => lvl::NIV_EVENT,
        log::Level::Debug => lvl::NIV_DEBUG,
        log::Level::Trace => lvl::NIV_FULL_DEBUG,
    }) as i32
}

/// RECOVERY where the version has it; else grace-related modules under STATE, everything
/// else under CLIENTID.
fn component(target: &str) -> usize {
    let recovery = RECOVERY_COMPONENT.load(Ordering::Relaxed);
    if recovery != 0 {
        return recovery;
    }
    let state = STATE_COMPONENT.load(Ordering::Relaxed);
    if state != 0 && target.contains("grace") {
        state
    } else {
        COMPONENT_CLIENTID
    }
}

impl log::Log for GaneshaLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        match ganesha().component_level(component(metadata.target())) {
            Some(current) => current >= ganesha_level(metadata.level()),
            None => metadata.level() <= log::Level::Info,
        }
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let text = format!("ganesha-ctdb: {}", record.args());
        let Some(display) = ganesha().display_log else {
            eprintln!("{} {text}", record.level());
            return;
        };
        // Interior NULs cannot cross into C; they never occur in our messages but a tag
        // fragment could carry one.
        let msg = CString::new(text.replace('\0', "\\0")).unwrap_or_default();
        let file = CString::new(record.file().unwrap_or("ganesha-ctdb")).unwrap_or_default();
        let func = CString::new(record.target()).unwrap_or_default();
        // SAFETY: DisplayLogComponentLevel(component, file, line, function, level, fmt, ...)
        // is Ganesha's printf-style logger; "%s" with one NUL-terminated string matches.
        unsafe {
            display(
                component(record.target()) as i32,
                file.as_ptr(),
                record.line().unwrap_or(0) as i32,
                func.as_ptr(),
                ganesha_level(record.level()),
                c"%s".as_ptr(),
                msg.as_ptr(),
            );
        }
    }

    fn flush(&self) {}
}
