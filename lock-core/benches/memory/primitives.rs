//! What an uncontended acquire+release is made of, timed alone in the same run: an atomic
//! read-modify-write, an uncontended mutex section, an `Arc` clone+drop (two atomics), and a
//! monotonic clock read. README.md's account of where a pair's time goes counts these.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::{ns_per_iter, ITERS, ROUNDS};

/// Prints each primitive's cost: the best of [`ROUNDS`] rounds of [`ITERS`] iterations, the
/// primitives interleaved round by round.
pub fn print_costs() {
    let counter = AtomicU64::new(0);
    let mutex = Mutex::new(0u64);
    let shared = Arc::new(0u64);
    let mut best = [f64::INFINITY; 4];
    for _ in 0..ROUNDS {
        let round = [
            ns_per_iter(|| {
                black_box(&counter).fetch_add(1, Ordering::Relaxed);
            }),
            ns_per_iter(|| *black_box(&mutex).lock().unwrap() += 1),
            ns_per_iter(|| drop(black_box(Arc::clone(black_box(&shared))))),
            ns_per_iter(|| {
                black_box(Instant::now());
            }),
        ];
        for (best, round) in best.iter_mut().zip(round) {
            *best = best.min(round);
        }
    }
    let [atomic, mutex, arc, clock] = best;
    println!(
        "primitives alone (best of {ROUNDS} rounds of {ITERS}): atomic fetch_add {atomic:.1} ns, \
         uncontended Mutex lock+unlock {mutex:.1} ns, Arc clone+drop {arc:.1} ns, \
         Instant::now() {clock:.1} ns"
    );
}
