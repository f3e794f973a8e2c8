//! The generated code names its runtime by absolute paths: a crate with its own `lockwright`
//! module, `Result` alias, shadowed `Option` / `Ok` / `Err` / `String` and `format` still works.
#![allow(dead_code, non_camel_case_types, unused_macros)]

mod lockwright {}
mod core {}

type Result<T> = std::result::Result<T, ::lockwright::LockError>;
struct Option;
struct Ok;
struct Err;
struct String;
struct Duration;
struct Lock;
macro_rules! format {
    ($($t:tt)*) => {
        compile_error!("the user's format! was called")
    };
}

#[::lockwright::locked(key = "hygiene-{id}-{name}", timeout = 1, exp = 2)]
fn process(id: u64, name: &str) -> Result<u64> {
    let __lockwright_guard = id;
    ::std::result::Result::Ok(__lockwright_guard)
}

#[::lockwright::locked(key = "hygiene-once-{id}", on_locked = 0, on_error = |_| 0)]
async fn once(id: u64) -> u64 {
    id
}

pub fn main() {
    assert_eq!(process(1, "a").unwrap(), 1);
    assert!(!::lockwright::is_locked!(process(1, "a"))
        .blocking()
        .unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(runtime.block_on(once(2)), 2);
}
