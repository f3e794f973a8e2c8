//! Uncontended acquire+release on the memory backend, next to the floor measured in the same
//! run: `Mutex<HashMap<String, _>>` insert+remove, the least any in-process keyed lock must do.
//!
//! Run: `cargo bench -p lock-core --bench memory`. Criterion prints each timing; the last lines
//! print the same-run ratios (goal: at most 2x the floor). The default lock (no `exp`) includes
//! registering with the lease watchdog; the `exp = 30 s` line shows the cost without it.
//!
//! Then the cost of the primitives a pair is made of (an atomic, a mutex section, an `Arc`
//! clone, a clock read), timed alone in the same run.
//!
//! Then the contended rows (`memory/contended.rs`): 8 threads on 1 key and on 1,000 keys, next to
//! `std::sync::Mutex<()>` and `tokio::sync::Mutex<()>` floors measured in the same run, printed as
//! a markdown table of pairs/s with the ratios.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use lock_core::{Lock, MemoryBackend};

#[path = "memory/contended.rs"]
mod contended;
#[path = "memory/primitives.rs"]
mod primitives;

fn floor(map: &Mutex<HashMap<String, u64>>, key: &str) {
    map.lock().unwrap().insert(key.to_owned(), 1);
    black_box(map.lock().unwrap().remove(key));
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let map = Mutex::new(HashMap::new());
    let lock = Lock::with_backend("bench-key", &MemoryBackend::shared());
    let rt = runtime();
    let mut group = c.benchmark_group("uncontended acquire+release");
    group.bench_function("floor: Mutex<HashMap> insert+remove", |b| {
        b.iter(|| floor(&map, "bench-key"))
    });
    group.bench_function("lockwright memory, blocking", |b| {
        b.iter(|| drop(lock.acquire_blocking().unwrap()))
    });
    let fixed = lock.clone().exp(30);
    group.bench_function(
        "lockwright memory, blocking, exp = 30 s (no watchdog)",
        |b| b.iter(|| drop(fixed.acquire_blocking().unwrap())),
    );
    group.bench_function("lockwright memory, async", |b| {
        b.to_async(&rt)
            .iter(|| async { drop(lock.acquire().await.unwrap()) })
    });
    group.finish();
}

/// Rounds of the ratio lines: each round times every contender once, in turn, and each keeps its
/// best round, so a slow spell of the machine (another tenant, a frequency change) does not land
/// on one contender only.
const ROUNDS: usize = 15;
const ITERS: u32 = 100_000;

/// Nanoseconds per iteration of `f`, over [`ITERS`] iterations.
fn ns_per_iter(mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..ITERS {
        f();
    }
    start.elapsed().as_nanos() as f64 / f64::from(ITERS)
}

/// [`ns_per_iter`] of an awaited `f`, every iteration awaited in one loop inside the caller's
/// task (as criterion's async bencher does), so no runtime entry is counted with it.
async fn ns_per_iter_async<F: std::future::Future<Output = ()>>(mut f: impl FnMut() -> F) -> f64 {
    let start = Instant::now();
    for _ in 0..ITERS {
        f().await;
    }
    start.elapsed().as_nanos() as f64 / f64::from(ITERS)
}

fn print_ratios() {
    let map = Mutex::new(HashMap::new());
    let lock = Lock::with_backend("bench-key", &MemoryBackend::shared());
    let fixed = lock.clone().exp(30);
    let rt = runtime();
    let [mut floor_ns, mut blocking_ns, mut fixed_ns, mut async_ns] = [f64::INFINITY; 4];
    for _ in 0..ROUNDS {
        floor_ns = floor_ns.min(ns_per_iter(|| floor(&map, "bench-key")));
        blocking_ns = blocking_ns.min(ns_per_iter(|| drop(lock.acquire_blocking().unwrap())));
        fixed_ns = fixed_ns.min(ns_per_iter(|| drop(fixed.acquire_blocking().unwrap())));
        // In a task, as async callers are: the owner is the task.
        let task_lock = lock.clone();
        let round = rt.block_on(rt.spawn(async move {
            let lock = &task_lock;
            ns_per_iter_async(|| async move { drop(lock.acquire().await.unwrap()) }).await
        }));
        async_ns = async_ns.min(round.unwrap());
    }
    println!("same-run ratios (best of {ROUNDS} interleaved rounds of {ITERS} iterations each):");
    println!("  floor  Mutex<HashMap> insert+remove: {floor_ns:7.1} ns");
    println!(
        "  memory blocking acquire+release:     {blocking_ns:7.1} ns = {:.2}x floor",
        blocking_ns / floor_ns
    );
    println!(
        "  memory blocking, exp = 30 s (no watchdog): {fixed_ns:7.1} ns = {:.2}x floor",
        fixed_ns / floor_ns
    );
    println!(
        "  memory async acquire+release:        {async_ns:7.1} ns = {:.2}x floor \
         (awaited in a loop in one task)",
        async_ns / floor_ns
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    if !std::env::args().any(|arg| arg == "--test" || arg == "--list") {
        print_ratios();
        primitives::print_costs();
    }
    // `cargo bench` passes `--bench`; without it (`cargo test --bench memory`) every contended
    // row runs for a few milliseconds, as a smoke test.
    if std::env::args().any(|arg| arg == "--bench") {
        contended::print_table(Duration::from_secs(1), 3);
    } else if !std::env::args().any(|arg| arg == "--list") {
        contended::print_table(Duration::from_millis(20), 1);
    }
}
