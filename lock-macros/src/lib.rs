//! Procedural macros of [lockwright](https://docs.rs/lockwright): `#[locked]`, `is_locked!` and
//! `release!`; `#[pooled]` and `pool_size!`. Use them through the `lockwright` crate, which
//! re-exports them and provides the runtime they expand to.
//!
//! The work is split in stages, shared by both attributes (`kind` says which one expands and
//! holds what differs): `args` parses the attribute, `key` scans the key template, `valid`
//! checks both against the function, `expand` writes the code (`future` finds the output of
//! functions that return a future), `call` rewrites the calls given to `is_locked!` /
//! `release!` / `pool_size!`; `item` is the glue.

mod args;
mod call;
mod errors;
mod expand;
mod future;
mod item;
mod key;
mod kind;
mod valid;

use proc_macro::TokenStream;

#[doc = include_str!("../docs/locked.md")]
#[proc_macro_attribute]
pub fn locked(args: TokenStream, item: TokenStream) -> TokenStream {
    item::attribute(kind::Kind::Locked, args.into(), item.into()).into()
}

#[doc = include_str!("../docs/pooled.md")]
#[proc_macro_attribute]
pub fn pooled(args: TokenStream, item: TokenStream) -> TokenStream {
    item::attribute(kind::Kind::Pooled, args.into(), item.into()).into()
}

#[doc = include_str!("../docs/is_locked.md")]
#[proc_macro]
pub fn is_locked(call: TokenStream) -> TokenStream {
    call::expand(call.into(), call::Op::IsLocked).into()
}

#[doc = include_str!("../docs/release.md")]
#[proc_macro]
pub fn release(call: TokenStream) -> TokenStream {
    call::expand(call.into(), call::Op::Release).into()
}

#[doc = include_str!("../docs/pool_size.md")]
#[proc_macro]
pub fn pool_size(call: TokenStream) -> TokenStream {
    call::expand(call.into(), call::Op::PoolSize).into()
}
