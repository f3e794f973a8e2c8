use lockwright::{locked, LockError};

pub struct Job {
    pub id: u64,
}

// A placeholder's value must implement `Display` (`Debug` with `:?`).
#[locked(key = "job-{job}")]
fn run(job: Job) -> Result<u64, LockError> {
    Ok(job.id)
}

#[locked(key = "job-{job:?}")]
fn run_by_reference(job: &Job) -> Result<u64, LockError> {
    Ok(job.id)
}

pub struct Order {
    pub job: Job,
}

// Through a reference parameter and a field: the message names the field's type.
#[locked(key = "order-{order.job}")]
fn ship(order: &Order) -> Result<u64, LockError> {
    Ok(order.job.id)
}

fn main() {}
