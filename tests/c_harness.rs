//! The C harness (tests/c): builds fake libganesha_nfsd.so.4.3, .6.5, .4.1 and .15.2 with
//! `make`, then runs harness executables linked to them that dlopen() this crate's cdylib
//! exactly as ganesha.nfsd does and drive every recovery hook with client objects at that
//! version's offsets: the 13-hook table with 4.3's and 6.5's client layouts (harness.c),
//! 15.2's 14-hook generation with Ganesha's exported entry and tag functions
//! (harness15.c), and 4.1, which must be refused. Run plainly, and under valgrind (which
//! must be installed: scripts/deps.sh).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The harness executables: one per fake Ganesha version (4.1 must be refused).
const HARNESSES: [&str; 4] = ["harness-4.3", "harness-6.5", "harness-4.1", "harness-15.2"];

fn c_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("c")
}

/// target/<profile>/ holds the cdylib; this test executable is target/<profile>/deps/<name>.
fn built_library() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps/");
    let lib = profile_dir.join("libganesha_ctdb_recov.so");
    assert!(
        lib.exists(),
        "{} is missing: run `cargo build` first",
        lib.display()
    );
    lib
}

fn text(output: &Output) -> String {
    format!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs `make` in tests/c once per test process (both tests need the executables).
fn build_harness() -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = BUILT.get_or_init(|| {
        let output = Command::new("make")
            .arg("-C")
            .arg(c_dir())
            .arg("all")
            .output()
            .map_err(|e| {
                format!("cannot run make ({e}): install gcc and make (scripts/deps.sh)")
            })?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!("make in tests/c failed\n{}", text(&output)))
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    c_dir().join("build")
}

/// Runs one harness executable, optionally behind a wrapper command (valgrind).
fn run_harness(name: &str, wrapper: &[&str], extra: &[&str]) -> Output {
    let build = build_harness();
    let work = tempfile::tempdir().expect("temp work dir");
    let mut args: Vec<String> = wrapper.iter().map(|s| s.to_string()).collect();
    args.push(build.join(name).display().to_string());
    args.push(built_library().display().to_string());
    args.push(work.path().display().to_string());
    args.extend(extra.iter().map(|s| s.to_string()));
    Command::new(&args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", args[0]))
}

fn assert_passed(name: &str, output: &Output) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let failed: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(
        output.status.success() && failed.is_empty() && stdout.contains("PASS"),
        "{name} failed ({}): {failed:#?}\n{}",
        output.status,
        text(output)
    );
}

#[test]
fn c_harness_passes() {
    for name in HARNESSES {
        let output = run_harness(name, &[], &[]);
        assert_passed(name, &output);
    }
}

#[test]
fn c_harness_is_valgrind_clean() {
    let found = Command::new("valgrind").arg("--version").output();
    assert!(
        found.as_ref().is_ok_and(|o| o.status.success()),
        "valgrind is not installed: this test needs it (apt-get install valgrind, or \
         scripts/deps.sh; CI installs it)"
    );
    let valgrind = [
        "valgrind",
        "--error-exitcode=99",
        "--leak-check=full",
        "--errors-for-leak-kinds=definite",
        "--show-leak-kinds=definite",
    ];
    for name in HARNESSES {
        // Mapped, the library's process-lifetime statics are "still reachable"; unloaded
        // they would be reported as "definitely lost".
        let output = run_harness(name, &valgrind, &["--no-dlclose"]);
        assert_passed(name, &output);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let summaries: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("ERROR SUMMARY:"))
            .collect();
        assert!(
            !summaries.is_empty() && summaries.iter().all(|l| l.contains(" 0 errors from")),
            "{name}: valgrind reported errors: {summaries:#?}\n{}",
            text(&output)
        );
    }
}
