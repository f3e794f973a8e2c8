use lockwright::{locked, LockError};

pub struct Order {
    pub id: u64,
}

// A placeholder's fields must exist.
#[locked(key = "order-{order.nope}")]
fn ship(order: &Order) -> Result<u64, LockError> {
    Ok(order.id)
}

#[locked(key = "pair-{pair.2}")]
fn pair(pair: (u8, u8)) -> Result<u8, LockError> {
    Ok(pair.0)
}

fn main() {}
