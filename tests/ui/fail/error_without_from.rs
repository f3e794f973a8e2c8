use lockwright::locked;

#[derive(Debug)]
struct AppError;

#[locked(key = "job")]
fn process() -> Result<(), AppError> {
    Ok(())
}

fn main() {}
