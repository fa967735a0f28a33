//! The proptest configuration every fuzz test of the workspace shares (docs/fuzzing.md):
//! 512 cases per property unless PROPTEST_CASES asks for another number (a long run), and
//! failures kept in the file given (replayed first on the next run).

use proptest::test_runner::{Config, FileFailurePersistence};

/// `regressions`: where this test's failures are kept, e.g.
/// `concat!(env!("CARGO_MANIFEST_DIR"), "/proptest-regressions/proto.txt")`.
pub fn config(regressions: &'static str) -> Config {
    let default = Config {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(regressions))),
        ..Config::default() // reads PROPTEST_CASES and the other PROPTEST_* variables
    };
    if std::env::var_os("PROPTEST_CASES").is_some() {
        default
    } else {
        Config {
            cases: 512,
            ..default
        }
    }
}
