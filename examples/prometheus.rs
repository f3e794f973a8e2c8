//! lockwright's metrics as Prometheus text: `cargo run --example prometheus`.
//!
//! Installs the `metrics-exporter-prometheus` recorder (without its HTTP listener: serve
//! `handle.render()` from your own `/metrics` endpoint), locks on the in-memory backend (three
//! uncontended jobs, a refused `nowait`, a wait that times out, and a waiter that gets the lock
//! when its holder lets go), and prints the scrape. The metric names are in README.md
//! ("Metrics and tracing") and in `lockwright::telemetry`.

use std::thread;
use std::time::Duration;

use lockwright::{telemetry, Lock, LockError, MemoryBackend};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Install the recorder before locking: events before it are not counted anywhere.
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".to_owned()),
            &[0.001, 0.01, 0.1, 1.0, 10.0],
        )?
        .install_recorder()?;
    telemetry::describe_metrics();

    let backend = MemoryBackend::shared();
    for id in 1..=3 {
        let guard = Lock::with_backend(format!("job-{id}"), &backend)
            .exp(10)
            .acquire_blocking()?;
        drop(guard);
    }

    // The holder is this thread; the contenders are other threads (other owners).
    let report = Lock::with_backend("report-7", &backend).exp(10);
    let held = report.acquire_blocking()?;
    let contender = report.clone();
    thread::spawn(move || {
        match contender.acquire_blocking() {
            Err(LockError::Locked { .. }) => println!("refused at once: report-7 is held"),
            other => println!("unexpected: {other:?}"),
        }
        match contender.nowait(false).timeout(0.05).acquire_blocking() {
            Err(LockError::TimedOut { .. }) => println!("timed out after 50 ms: report-7 is held"),
            other => println!("unexpected: {other:?}"),
        }
    })
    .join()
    .expect("the contender thread");
    let waiter = report.nowait(false).timeout(10);
    let waiting = thread::spawn(move || waiter.acquire_blocking().map(|guard| guard.fence()));
    thread::sleep(Duration::from_millis(50));
    drop(held);
    let fence = waiting.join().expect("the waiter thread")?;
    println!("the waiter got report-7 with fence {fence}");

    println!("--- Prometheus text ---");
    print!("{}", handle.render());
    Ok(())
}
