//! The cost of `#[locked]` over the same work written by hand with a guard, in one run, on the
//! in-memory backend (sync and async).
//!
//! Run: `cargo bench --bench locked`. Compare `locked` with `hand_written` in each group: the
//! macro should add nothing measurable (goal: at most 1.05x). On a shared machine the two
//! criterion groups run seconds apart and drift; the run therefore ends with an interleaved
//! comparison (alternating batches of both, median of the per-round ratios), which is the figure
//! to quote.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use lockwright::{locked, Lock, LockError};

#[locked(key = "bench-{id}")]
fn locked_sync(id: u64) -> Result<u64, LockError> {
    Ok(black_box(id))
}

fn hand_written_sync(id: u64) -> Result<u64, LockError> {
    let _guard = Lock::new(format!("bench-{id}")).acquire_blocking()?;
    Ok(black_box(id))
}

#[locked(key = "bench-async-{id}")]
async fn locked_async(id: u64) -> Result<u64, LockError> {
    Ok(black_box(id))
}

async fn hand_written_async(id: u64) -> Result<u64, LockError> {
    let _guard = Lock::new(format!("bench-async-{id}")).acquire().await?;
    Ok(black_box(id))
}

fn sync(c: &mut Criterion) {
    let mut group = c.benchmark_group("sync");
    group.bench_function("locked", |b| b.iter(|| locked_sync(black_box(42)).unwrap()));
    group.bench_function("hand_written", |b| {
        b.iter(|| hand_written_sync(black_box(42)).unwrap())
    });
    group.finish();
}

fn run_async(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("async");
    group.bench_function("locked", |b| {
        b.to_async(&runtime)
            .iter(|| async { locked_async(black_box(42)).await.unwrap() })
    });
    group.bench_function("hand_written", |b| {
        b.to_async(&runtime)
            .iter(|| async { hand_written_async(black_box(42)).await.unwrap() })
    });
    group.finish();
}

/// Median over `rounds` of (time of a batch of `locked`) / (time of a batch of `hand_written`),
/// alternating which goes first.
fn interleaved_ratio(
    rounds: usize,
    batch: u64,
    mut locked: impl FnMut(u64),
    mut hand: impl FnMut(u64),
) -> f64 {
    let time = |f: &mut dyn FnMut(u64)| {
        let start = Instant::now();
        for i in 0..batch {
            f(black_box(i % 64));
        }
        start.elapsed()
    };
    let mut ratios: Vec<f64> = (0..rounds)
        .map(|round| {
            let (l, h): (Duration, Duration) = if round % 2 == 0 {
                let l = time(&mut locked);
                (l, time(&mut hand))
            } else {
                let h = time(&mut hand);
                (time(&mut locked), h)
            };
            l.as_secs_f64() / h.as_secs_f64()
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios[ratios.len() / 2]
}

fn interleaved() {
    let quick = std::env::args().any(|arg| arg == "--test");
    let (rounds, batch) = if quick { (3, 10) } else { (400, 2_000) };
    let sync = interleaved_ratio(
        rounds,
        batch,
        |id| {
            locked_sync(id).unwrap();
        },
        |id| {
            hand_written_sync(id).unwrap();
        },
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let run_async = interleaved_ratio(
        rounds,
        batch,
        |id| {
            runtime.block_on(locked_async(id)).unwrap();
        },
        |id| {
            runtime.block_on(hand_written_async(id)).unwrap();
        },
    );
    println!(
        "interleaved median ratio locked / hand_written ({rounds} rounds of {batch} calls): sync {sync:.3}x, async {run_async:.3}x"
    );
}

criterion_group!(benches, sync, run_async);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    interleaved();
}
