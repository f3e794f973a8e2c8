//! Async bodies run in a block of their own so the release can be awaited: every shape that
//! compiles without `#[locked]` still compiles with it (borrows returned from `self`, moved
//! arguments, `?` on another error type, early returns, elided and named lifetimes, `Self`).

use lockwright::{locked, LockError};

#[derive(Debug)]
pub struct AppError;

impl From<LockError> for AppError {
    fn from(_: LockError) -> Self {
        AppError
    }
}

impl From<std::num::ParseIntError> for AppError {
    fn from(_: std::num::ParseIntError) -> Self {
        AppError
    }
}

struct Store {
    name: String,
    items: Vec<u32>,
}

impl Store {
    #[locked(key = "name-{self.name}", on_error = |_| "")]
    async fn name(&self) -> &str {
        &self.name
    }

    #[locked(key = "items-{id}", on_error = |_| unreachable!())]
    async fn items_mut(&mut self, id: u32) -> &mut Vec<u32> {
        &mut self.items
    }

    #[locked(key = "first-{id}", on_error = |_| None)]
    async fn first<'a>(&'a self, id: u32) -> Option<&'a u32> {
        self.items.first()
    }

    #[locked(key = "into-{id}")]
    async fn into_self(self, id: u32) -> Result<Self, LockError> {
        Ok(self)
    }
}

#[locked(key = "parse-{text}")]
async fn parse(text: String) -> Result<u32, AppError> {
    if text.is_empty() {
        return Ok(0);
    }
    let n: u32 = text.parse()?;
    Ok(n)
}

#[locked(key = "moved-{name}", on_error = |_| String::new())]
async fn moved(name: String) -> String {
    name
}

#[locked(key = "unit-{id}", on_error = |_| ())]
async fn unit(id: u32) {
    if id == 0 {
        return;
    }
    tokio::task::yield_now().await;
}

#[locked(key = "awaits-{id}", on_error = |_| 0)]
async fn awaits_only(id: u32) -> u32 {
    std::future::ready(id).await
}

#[locked(key = "opaque-{id}", on_error = |_| 0)]
async fn opaque(id: u32) -> impl std::fmt::Display {
    id
}

pub fn main() -> Result<(), AppError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let mut store = Store {
            name: "s".into(),
            items: vec![1],
        };
        assert_eq!(store.name().await, "s");
        store.items_mut(1).await.push(2);
        assert_eq!(store.first(1).await, Some(&1));
        let store = store.into_self(1).await?;
        assert_eq!(store.items, [1, 2]);
        assert_eq!(parse(String::new()).await?, 0);
        assert_eq!(parse("7".into()).await?, 7);
        assert!(parse("x".into()).await.is_err());
        assert_eq!(moved("m".into()).await, "m");
        unit(0).await;
        unit(1).await;
        assert_eq!(awaits_only(3).await, 3);
        assert_eq!(opaque(4).await.to_string(), "4");
        Ok(())
    })
}
