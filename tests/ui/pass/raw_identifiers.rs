//! Raw identifiers in key templates: `{r#type}` names the parameter `r#type`, `{m.r#ref}` the
//! field `r#ref`.

use lockwright::{is_locked, locked, Lock, LockError};

pub struct Match {
    pub r#ref: u8,
}

#[locked(key = "kind-{r#type}-{r#match.r#ref}")]
fn classify(r#type: &str, r#match: &Match) -> Result<bool, LockError> {
    Lock::new(format!("kind-{}-{}", r#type, r#match.r#ref)).is_locked_by_current_owner_blocking()
}

pub fn main() -> Result<(), LockError> {
    let m = Match { r#ref: 7 };
    // The formatted key is the one held while the body runs.
    assert!(classify("fruit", &m)?);
    assert!(!is_locked!(classify("fruit", &m)).blocking()?);
    Ok(())
}
