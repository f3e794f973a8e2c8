//! `is_locked!` and `release!` on the `pub` locked functions of another crate: a free function
//! (through its path), an inherent method and a trait-impl method (through the trait).

use lockwright::{is_locked, release, Lock};
use lockwright_cross_crate_tests::{Job, Runner};

/// Holds `key` while `check` runs (`is_locked!` asks whether anyone holds it).
fn while_held(key: &str, check: impl FnOnce()) {
    let held = Lock::new(key).acquire_blocking().unwrap();
    check();
    drop(held);
}

#[test]
fn locks_of_another_crate_are_seen_and_released_from_here() {
    let runner = Runner { zone: "eu" };
    assert_eq!(runner.run(1).unwrap(), 1);
    while_held("eu-run-1", || {
        assert!(is_locked!(runner.run(1)).blocking().unwrap());
        assert!(is_locked!(<Runner as Job>::run(&runner, 1))
            .blocking()
            .unwrap());
    });
    while_held("eu-inherent-2", || {
        assert!(is_locked!(runner.inherent(2)).blocking().unwrap());
        assert!(is_locked!(Runner::inherent(&runner, 2)).blocking().unwrap());
    });
    while_held("free-3", || {
        assert!(is_locked!(lockwright_cross_crate_tests::free(3))
            .blocking()
            .unwrap());
    });
    let _held = Lock::new("eu-run-4").acquire_blocking().unwrap();
    assert!(release!(runner.run(4)).blocking().unwrap());
    assert!(!is_locked!(runner.run(4)).blocking().unwrap());
}
