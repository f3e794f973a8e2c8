use lockwright::{locked, LockError};

pub struct Job {
    pub id: u64,
}

// A `py_cachify` key renders as Python's `str.format` would: a value with no faithful Python
// rendering does not compile, even when it is `Display` (an `f32` prints other digits than the
// `float` Python would be given).
#[locked(key = "ratio-{ratio}", py_cachify)]
fn scale(ratio: f32) -> Result<f32, LockError> {
    Ok(ratio)
}

#[locked(key = "job-{job}", py_cachify)]
fn run(job: &Job) -> Result<u64, LockError> {
    Ok(job.id)
}

// A field of a supported type is fine.
#[locked(key = "job-{job.id}", py_cachify)]
fn run_by_id(job: &Job) -> Result<u64, LockError> {
    Ok(job.id)
}

fn main() {}
