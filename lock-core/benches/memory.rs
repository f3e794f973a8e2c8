//! Uncontended acquire+release on the memory backend, next to the floor measured in the same
//! run: `Mutex<HashMap<String, _>>` insert+remove, the least any in-process keyed lock must do.
//!
//! Run: `cargo bench -p lock-core --bench memory`. Criterion prints each timing; the last lines
//! print the same-run ratios (goal: at most 2x the floor). The default lock (no `exp`) includes
//! registering with the lease watchdog; the `exp = 30 s` line shows the cost without it.
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

/// Best-of-7 nanoseconds per iteration of `f`, so the ratio lines come from one run.
fn best_ns(mut f: impl FnMut()) -> f64 {
    const ITERS: u32 = 200_000;
    (0..7)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..ITERS {
                f();
            }
            start.elapsed().as_nanos() as f64 / f64::from(ITERS)
        })
        .fold(f64::INFINITY, f64::min)
}

fn print_ratios() {
    let map = Mutex::new(HashMap::new());
    let lock = Lock::with_backend("bench-key", &MemoryBackend::shared());
    let rt = runtime();
    let floor_ns = best_ns(|| floor(&map, "bench-key"));
    let blocking_ns = best_ns(|| drop(lock.acquire_blocking().unwrap()));
    let fixed = lock.clone().exp(30);
    let fixed_ns = best_ns(|| drop(fixed.acquire_blocking().unwrap()));
    let async_ns = best_ns(|| rt.block_on(async { drop(lock.acquire().await.unwrap()) }));
    let block_on_only_ns = best_ns(|| rt.block_on(async {}));
    println!("same-run ratios (best of 7 x 200k iterations):");
    println!("  floor  Mutex<HashMap> insert+remove: {floor_ns:7.1} ns");
    println!(
        "  memory blocking acquire+release:     {blocking_ns:7.1} ns = {:.2}x floor",
        blocking_ns / floor_ns
    );
    println!(
        "  memory blocking, exp = 30 s (no watchdog): {fixed_ns:7.1} ns = {:.2}x floor",
        fixed_ns / floor_ns
    );
    let async_net = async_ns - block_on_only_ns;
    println!(
        "  memory async acquire+release:        {async_net:7.1} ns = {:.2}x floor \
         (runtime block_on overhead of {block_on_only_ns:.1} ns subtracted)",
        async_net / floor_ns
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
    }
    // `cargo bench` passes `--bench`; without it (`cargo test --bench memory`) every contended
    // row runs for a few milliseconds, as a smoke test.
    if std::env::args().any(|arg| arg == "--bench") {
        contended::print_table(Duration::from_secs(1), 3);
    } else if !std::env::args().any(|arg| arg == "--list") {
        contended::print_table(Duration::from_millis(20), 1);
    }
}
