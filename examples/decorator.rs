//! `#[locked]` in a small job runner: two workers race for the same job id, one wins and the
//! other is told the job is locked; a different id runs in parallel; `is_locked!` watches.
//!
//! Run: `cargo run --example decorator`

use std::time::Duration;

use lockwright::{is_locked, locked, release, LockError};

/// What a worker reports back.
#[derive(Debug)]
enum JobError {
    /// Another worker holds the job's lock.
    AlreadyRunning(String),
    /// Anything else from the lock layer (backend down, invalid key...).
    Lock(LockError),
}

impl From<LockError> for JobError {
    fn from(err: LockError) -> Self {
        if err.is_contention() {
            JobError::AlreadyRunning(err.to_string())
        } else {
            JobError::Lock(err)
        }
    }
}

/// The design card's form: fail at once when the job is taken, expire after 30 s at worst.
#[locked(key = "job-{job_id}", nowait, timeout = 4, exp = 30)]
async fn process(worker: &str, job_id: u64) -> Result<String, JobError> {
    println!("  [{worker}] started job {job_id}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!("  [{worker}] finished job {job_id}");
    Ok(format!("job {job_id} done by {worker}"))
}

/// py-cachify's `once`: a second caller gets `None` instead of an error. Any other failure
/// (a backend down) has no room in `Option`, so `on_error` says what to do with it.
#[locked(key = "report-{day}", on_locked = None, on_error = |err| {
    eprintln!("report failed: {err}");
    None
})]
fn nightly_report(day: u32) -> Option<String> {
    Some(format!("report for day {day}"))
}

#[tokio::main]
async fn main() -> Result<(), LockError> {
    println!(
        "job 1 locked before anyone starts? {}",
        is_locked!(process("-", 1)).await?
    );

    // Worker A takes job 1.
    let a = tokio::spawn(process("worker-a", 1));
    while !is_locked!(process("-", 1)).await? {
        tokio::task::yield_now().await;
    }
    println!(
        "job 1 locked while worker-a runs? {}",
        is_locked!(process("-", 1)).await?
    );

    // Worker B races for the same job and is told at once; worker C takes job 2 in parallel.
    let b = tokio::spawn(process("worker-b", 1));
    let c = tokio::spawn(process("worker-c", 2));

    match b.await.expect("worker-b panicked") {
        Ok(done) => println!("worker-b: {done}"),
        Err(JobError::AlreadyRunning(why)) => println!("worker-b: skipped, {why}"),
        Err(JobError::Lock(err)) => return Err(err),
    }
    for (name, handle) in [("worker-a", a), ("worker-c", c)] {
        match handle.await.expect("worker panicked") {
            Ok(done) => println!("{name}: {done}"),
            Err(err) => println!("{name}: failed: {err:?}"),
        }
    }
    println!(
        "job 1 locked after worker-a returned? {}",
        is_locked!(process("-", 1)).await?
    );

    // Sync code uses the same macros with `.blocking()`.
    println!("{:?}", nightly_report(7));
    println!(
        "report 7 locked now? {} (released: {})",
        is_locked!(nightly_report(7)).blocking()?,
        release!(nightly_report(7)).blocking()?
    );
    Ok(())
}
