use lockwright::{locked, LockError};

#[locked(key = "count")]
fn count() -> u32 {
    1
}

#[locked(key = "unit")]
async fn unit() {}

type Alias = Option<u8>;

#[locked(key = "alias")]
fn alias() -> Alias {
    None
}

fn main() {
    let _ = LockError::Locked { key: "x".into() };
}
