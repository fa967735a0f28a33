//! The short torture run of the suite: a fixed seed whose schedule (`cargo run --release
//! --example torture -- --seed 3 --failovers 4 --plan`) has a Ganesha-only crash followed
//! by a second one while the cluster is in grace, a node crash, a planned move and two
//! simultaneous node crashes, with NFSv4.0, NFSv4.1/4.2 and NLM clients. Any conflict,
//! lost reclaim, missing SM_NOTIFY or stuck cluster outside a declared window fails it.
//! Long runs: docs/reliability.md.

mod common;
mod torture;

use serial_test::serial;

#[test]
#[serial]
fn a_short_fixed_seed_schedule_grants_no_conflict_and_loses_no_reclaim() {
    let opts = torture::Opts {
        seed: 3,
        failovers: 4,
        ..torture::Opts::default()
    };
    let report = torture::run(&opts).unwrap_or_else(|e| panic!("torture run: {e}"));
    eprintln!("{}", report.table());
    let failures = report.failures();
    assert!(
        failures.is_empty(),
        "seed {} violations:\n{failures:#?}\n{}",
        opts.seed,
        report.trace.clone().unwrap_or_default()
    );
    assert_eq!(report.steps.len(), opts.failovers, "every step ran");
    // The holders really reclaimed across the steps (a run where nothing needed reclaiming
    // would prove nothing).
    let reclaims: usize = report.steps.iter().map(|s| s.reclaims.len()).sum();
    assert!(reclaims >= 10, "only {reclaims} reclaims in the run");
}
