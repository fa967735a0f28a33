//! Parsing the CTDB_RECOVERY { } block with Ganesha's own parser, so that syntax errors are
//! reported like Ganesha's (file and line); values are then validated by [`crate::config`].

use super::bindings::{
    config_block, config_error_type, GSH_CONFIG_ERR_BOGUS, GSH_CONFIG_ERR_NOT_HARMLESS,
};
use super::symbols::ganesha;
use crate::config::{hostname, Config, RawConfig};
use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::Mutex;

/// struct ctdb_recovery_param in config_block.c.
#[repr(C)]
pub struct RecoveryParam {
    store: *mut c_char,
    dir: *mut c_char,
    node_id: *mut c_char,
    recovery_db: *mut c_char,
    grace_db: *mut c_char,
}

extern "C" {
    fn ganesha_ctdb_config_block() -> *mut config_block;
    fn ganesha_ctdb_config_param() -> *mut RecoveryParam;
    fn ganesha_ctdb_count_block() -> *mut config_block;
    fn ganesha_ctdb_count_param() -> *mut RecoveryParam;
}

/// The configuration the parser produced, taken by recovery_init.
static PARSED: Mutex<Option<Config>> = Mutex::new(None);

pub fn parsed_config() -> Option<Config> {
    PARSED.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// # Safety
/// Each pointer must be null or a NUL-terminated string (Ganesha's parser strdup's them).
unsafe fn raw_from(param: *const RecoveryParam) -> RawConfig {
    let s =
        |p: *mut c_char| (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned());
    RawConfig {
        store: s((*param).store),
        dir: s((*param).dir),
        node_id: s((*param).node_id),
        recovery_db: s((*param).recovery_db),
        grace_db: s((*param).grace_db),
    }
}

fn validate(raw: &RawConfig) -> Result<Config, usize> {
    Config::from_raw(raw, hostname).map_err(|errors| {
        for e in &errors {
            log::error!("{e}");
        }
        errors.len()
    })
}

/// The block's commit callback (called by Ganesha's parser when the block is present).
///
/// # Safety
/// `param` is null or the shim's RecoveryParam, filled by Ganesha's parser.
#[no_mangle]
pub unsafe extern "C" fn ganesha_ctdb_validate_param(param: *const RecoveryParam) -> c_int {
    super::guard("config commit", 1, || {
        if param.is_null() {
            return 1;
        }
        // SAFETY: param is the shim's static struct, filled by Ganesha's parser.
        let raw = unsafe { raw_from(param) };
        match validate(&raw) {
            Ok(_) => 0,
            Err(n) => n as c_int,
        }
    })
}

/// Body of rados_load_config_from_parse: 0, or -1 so that Ganesha refuses to start.
///
/// # Safety
/// `parse_tree` and `err_type` are what Ganesha passed to rados_load_config_from_parse.
pub unsafe fn load(parse_tree: *mut c_void, err_type: *mut config_error_type) -> c_int {
    // Before anything is handed to Ganesha's parser: its structs (the config block among
    // them) differ between versions, and an unknown one must be refused, not guessed at.
    if let Err(refusal) = super::layout::running_layout() {
        log::error!("{refusal}");
        return -1;
    }
    let Some(load_config) = ganesha().load_config_from_parse else {
        log::error!("Ganesha's load_config_from_parse is not available; cannot read CTDB_RECOVERY");
        return -1;
    };
    if err_type.is_null() {
        log::error!("Ganesha passed no error record to rados_load_config_from_parse");
        return -1;
    }
    // SAFETY: block and param are the shim's statics; parse_tree and err_type come from
    // Ganesha's own config loader and are passed through unchanged.
    let (flags, raw) = unsafe {
        let block = ganesha_ctdb_config_block();
        let param = ganesha_ctdb_config_param();
        let before = (*err_type).flags;
        load_config(parse_tree, block, param as *mut c_void, true, err_type);
        ((*err_type).flags & !before, raw_from(param))
    };
    // Ganesha counts an unknown key inside our block as harmless (a WARN); a typo in
    // a recovery setting must stop the server instead.
    if u32::from(flags) & (GSH_CONFIG_ERR_NOT_HARMLESS | GSH_CONFIG_ERR_BOGUS) != 0 {
        log::error!(
            "CTDB_RECOVERY block has errors: the 'Config File (<file>:<line>)' messages name \
             each bad key or value, or a key given twice (the block's keys are Store, Dir, \
             Node_Id, Recovery_DB, Grace_DB, each at most once); refusing to start"
        );
        return -1;
    }
    // SAFETY: as above, over the shim's counting copy of the block (no messages: its error
    // record has no stream); it returns how many CTDB_RECOVERY blocks the file has.
    let blocks = unsafe {
        let mut quiet: config_error_type = std::mem::zeroed();
        load_config(
            parse_tree,
            ganesha_ctdb_count_block(),
            ganesha_ctdb_count_param() as *mut c_void,
            false,
            &mut quiet,
        )
    };
    if blocks > 1 {
        log::error!(
            "the configuration has {blocks} CTDB_RECOVERY blocks (Ganesha's 'Only one \
             CTDB_RECOVERY block allowed' message names the line of the second); merge them \
             into one; refusing to start"
        );
        return -1;
    }
    match validate(&raw) {
        Ok(config) => {
            log::info!("CTDB_RECOVERY: {}", config.summary());
            *PARSED.lock().unwrap_or_else(|e| e.into_inner()) = Some(config);
            0
        }
        Err(_) => -1,
    }
}
