//! `is_locked!` and `release!` on the `pub` locked functions of another crate: a free function
//! (through its path), an inherent method and a trait-impl method (through the trait); and
//! `pool_size!` on its pooled ones.

use lockwright::{is_locked, pool_size, release, Lock, Pool};
use lockwright_cross_crate_tests::{Job, Runner, Upload};

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

#[test]
fn pools_of_another_crate_are_counted_from_here() {
    let runner = Runner { zone: "us" };
    assert_eq!(runner.send(5).unwrap(), 5);
    let _slot = Pool::new("us-upload", 3).acquire_blocking().unwrap();
    assert_eq!(pool_size!(runner.send(0)).blocking().unwrap(), 1);
    assert_eq!(
        pool_size!(<Runner as Upload>::send(&runner, 0))
            .blocking()
            .unwrap(),
        1
    );
    let _slots = (
        Pool::new("free-pool-6", 2).acquire_blocking().unwrap(),
        Pool::new("free-pool-6", 2).acquire_blocking().unwrap(),
    );
    assert_eq!(
        pool_size!(lockwright_cross_crate_tests::free_pooled(6))
            .blocking()
            .unwrap(),
        2
    );
    assert!(lockwright_cross_crate_tests::free_pooled(6).is_err());
}
