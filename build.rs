//! Generates Rust bindings for the Ganesha ABI subset in include/ and compiles the C shim
//! that holds the CTDB_RECOVERY config-block tables (static C tables of function pointers
//! and offsets are what Ganesha's parser walks; they are simplest to state in C).

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=include/ganesha_abi.h");
    println!("cargo:rerun-if-changed=include/ganesha_ctdb.h");
    println!("cargo:rerun-if-changed=src/ganesha/config_block.c");

    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let bindings = bindgen::Builder::default()
        .header("include/ganesha_ctdb.h")
        .allowlist_type("nfs4_recovery_backend")
        .allowlist_type("nfs4_recovery_backend_v15")
        .allowlist_type("add_clid_entry_v15_fn")
        .allowlist_type("add_rfh_entry_v15_fn")
        .allowlist_type("create_clid_name_fn")
        .allowlist_type("mem_stats_update_free_fn")
        .allowlist_type("nfs_grace_start_t")
        .allowlist_type("nfs_fh4")
        .allowlist_type("config_error_type")
        .allowlist_type("display_log_component_level_fn")
        .allowlist_type("load_config_from_parse_fn")
        .allowlist_type("ganesha_grace_event")
        .allowlist_type("ganesha_log_level")
        .allowlist_var("GSH_.*")
        .allowlist_var("GSH43_.*")
        .allowlist_var("GSH62_.*")
        .allowlist_var("GSH65_.*")
        .allowlist_var("GSH152_.*")
        .allowlist_var("GSH15_.*")
        .rustified_enum("ganesha_grace_event")
        .constified_enum_module("ganesha_log_level")
        .layout_tests(true)
        .generate()
        .expect(
            "bindgen over include/ganesha_ctdb.h (needs libclang: apt-get install libclang-dev)",
        );
    bindings
        .write_to_file(out.join("ganesha_bindings.rs"))
        .expect("write bindings");

    cc::Build::new()
        .file("src/ganesha/config_block.c")
        .include("include")
        .warnings(true)
        .extra_warnings(true)
        .compile("ganesha_ctdb_shim");
}
