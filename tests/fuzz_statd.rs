//! Property-based fuzzing of what rpc.statd's callout hands us and what `statd` keeps
//! (issue 15; docs/fuzzing.md): client names (mon_name: any bytes a client sent, as a
//! callout argument), the stored NSM state, and which hosts an IP release makes reclaim
//! through the node's other IPs.
//! Round trips through the memory and directory stores, stored values truncated, mutated
//! and arbitrary. 512 cases per property (64 for the one that writes files); a long run
//! sets PROPTEST_CASES, e.g. `PROPTEST_CASES=20000 cargo test --release --test fuzz_statd`.
//! Failures are kept in proptest-regressions/fuzz_statd.txt and replayed first.

use ganesha_ctdb_recov::records::ServerIp;
use ganesha_ctdb_recov::statd::collateral;
use ganesha_ctdb_recov::statd::{
    add_client, check_client_name, clients_of, del_client, next_state, nsm_state_key,
};
use ganesha_ctdb_recov::store::dir::DirStore;
use ganesha_ctdb_recov::store::memory::MemoryStore;
use ganesha_ctdb_recov::store::Store;
use proptest::prelude::*;
use proptest::sample::Index;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// 512 cases per property unless PROPTEST_CASES asks for another number (a long run).
fn config() -> ProptestConfig {
    fuzz_config::config(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/proptest-regressions/fuzz_statd.txt"
    ))
}

/// What statd may pass as mon_name: anything, with the key syntax's and the store's
/// special characters over-represented, up to past NSM's 1024 bytes.
fn mon_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[^\n\0]{1,40}",
        2 => "[@%.#/:\\[\\] a-z0-9\n\0-]{0,20}",
        1 => "[a-z]{1000,1030}",
        1 => Just(String::new()),
    ]
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|v| IpAddr::V4(Ipv4Addr::from(v))),
        any::<u128>().prop_map(|v| IpAddr::V6(Ipv6Addr::from(v))),
    ]
}

/// The callout's rule, written out: 1 to 1024 bytes (SM_MAXSTRLEN), no newline or NUL.
fn storable(name: &str) -> bool {
    (1..=1024).contains(&name.len()) && !name.contains(['\n', '\0'])
}

fn round_trip(
    store: &dyn Store,
    ip: IpAddr,
    other: IpAddr,
    name: &str,
) -> Result<(), TestCaseError> {
    let fail = |e: ganesha_ctdb_recov::statd::StatdError| TestCaseError::fail(e.to_string());
    prop_assert_eq!(check_client_name(name).is_ok(), storable(name));
    let added = add_client(store, &[ServerIp::Ip(ip)], name);
    prop_assert_eq!(added.is_ok(), storable(name));
    if !storable(name) {
        prop_assert!(clients_of(store, &ip).map_err(fail)?.is_empty());
        return Ok(());
    }
    prop_assert_eq!(
        clients_of(store, &ip).map_err(fail)?,
        vec![(name.to_string(), true)]
    );
    if other != ip {
        prop_assert!(clients_of(store, &other).map_err(fail)?.is_empty());
    }
    del_client(store, &[ServerIp::Ip(ip)], name).map_err(fail)?;
    prop_assert_eq!(
        clients_of(store, &ip).map_err(fail)?,
        vec![(name.to_string(), false)]
    );
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// (d)(a) A name the callout accepts is listed back exactly for that IP (monitored,
    /// then not); every other name is refused and nothing is recorded.
    #[test]
    fn client_names_are_recorded_and_listed_back(name in mon_name(), ip in ip(), other in ip()) {
        round_trip(&MemoryStore::new(), ip, other, &name)?;
    }

    /// (a)(c)(d) Whatever `nsm-state@<ip>` holds (a state, a huge or mangled one, garbage),
    /// the next state is odd, above the stored one while there is room, and stored before
    /// it is used.
    #[test]
    fn the_next_nsm_state_moves_up_from_any_stored_value(
        ip in ip(),
        stored in prop_oneof![
            any::<u32>().prop_map(|n| format!("v1 state={n}").into_bytes()),
            Just(b"v1 state=4294967295".to_vec()),
            Just(b"v1 state=4294967296".to_vec()),
            Just(b"v1 state=-1".to_vec()),
            "v1 state=[ 0-9a-z+-]{0,12}".prop_map(String::into_bytes),
            prop::collection::vec(any::<u8>(), 0..24),
        ],
        flip in prop::option::of((any::<Index>(), any::<u8>())),
    ) {
        let store = MemoryStore::new();
        let mut stored = stored;
        if let (Some((at, x)), false) = (flip, stored.is_empty()) {
            let i = at.index(stored.len());
            stored[i] ^= x;
        }
        store.put(&nsm_state_key(&ip), &stored).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let previous = std::str::from_utf8(&stored)
            .ok()
            .and_then(|s| s.strip_prefix("v1 state="))
            .and_then(|n| n.trim().parse::<u32>().ok());
        let state = next_state(&store, &ip).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(state % 2, 1);
        match previous {
            // u32 states saturate: from u32::MAX - 1 on, the next is u32::MAX.
            Some(p) => prop_assert!(state > p || state == u32::MAX, "{} after {}", state, p),
            // Unreadable: far enough up that no earlier state can be above it.
            None => prop_assert!(state > u32::MAX / 2, "{}", state),
        }
        let again = next_state(&store, &ip).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(again > state || state == u32::MAX);
    }

    /// (d) The hosts a release of X makes reclaim elsewhere: for every other held IP,
    /// exactly the hosts recorded for both X and it (whatever the names), never X itself.
    #[test]
    fn a_release_names_exactly_the_hosts_recorded_for_both_ips(
        names in prop::collection::vec(mon_name().prop_filter("storable", |n| storable(n)), 1..6),
        ips in prop::collection::btree_set(ip(), 2..4),
        picks in prop::collection::vec(any::<u8>(), 6),
    ) {
        let ips: Vec<IpAddr> = ips.into_iter().collect();
        let store = MemoryStore::default();
        // Each name is recorded for the IPs its pick's bits select.
        let mut recorded: Vec<BTreeSet<String>> = vec![BTreeSet::new(); ips.len()];
        for (n, bits) in names.iter().zip(&picks) {
            let chosen: Vec<ServerIp> = ips
                .iter()
                .enumerate()
                .filter(|(i, _)| bits & (1 << i) != 0)
                .map(|(i, ip)| {
                    recorded[i].insert(n.clone());
                    ServerIp::Ip(*ip)
                })
                .collect();
            add_client(&store, &chosen, n).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        let got = collateral(&store, ips[0], &ips).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(!got.contains_key(&ips[0]));
        for (i, ip) in ips.iter().enumerate().skip(1) {
            let want: Vec<String> = recorded[0].intersection(&recorded[i]).cloned().collect();
            let have: Vec<String> = got.get(ip).cloned().unwrap_or_default();
            let have_set: BTreeSet<String> = have.iter().cloned().collect();
            prop_assert_eq!(have.len(), have_set.len(), "no host twice");
            prop_assert_eq!(have_set.into_iter().collect::<Vec<_>>(), want);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: config().cases.div_ceil(8), ..config() })]

    /// (d) The same through real files: long names get hashed file names, odd characters
    /// escaped ones; every accepted name comes back exactly.
    #[test]
    fn client_names_round_trip_through_the_dir_store(name in mon_name(), ip in ip(), other in ip()) {
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let store = DirStore::open(dir.path()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        round_trip(&store, ip, other, &name)?;
    }
}
