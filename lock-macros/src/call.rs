//! `is_locked!(call)`, `release!(call)` and `pool_size!(call)`: the call is rewritten into the
//! same call of the function's hidden companion (see `expand.rs`), and the companion's
//! `LockedCall` (or, for a `#[pooled]` function, `PoolCall`) is asked the question. The function
//! itself does not run.

use proc_macro2::TokenStream;
use quote::quote;
use syn::spanned::Spanned;
use syn::{Expr, ExprCall, ExprMethodCall, ExprPath};

use crate::expand::{companion_name, qualified_companion_name};

/// Which question is asked.
#[derive(Clone, Copy)]
pub enum Op {
    IsLocked,
    Release,
    PoolSize,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::IsLocked => "is_locked",
            Op::Release => "release",
            Op::PoolSize => "pool_size",
        }
    }

    /// The attribute of the functions it asks about.
    fn attribute(self) -> &'static str {
        match self {
            Op::IsLocked | Op::Release => "#[locked]",
            Op::PoolSize => "#[pooled]",
        }
    }
}

pub fn expand(input: TokenStream, op: Op) -> TokenStream {
    match syn::parse2::<Expr>(input).and_then(|call| rewrite(call, op)) {
        Ok(companion_call) => {
            let method = syn::Ident::new(op.name(), proc_macro2::Span::call_site());
            quote!((#companion_call).#method())
        }
        Err(err) => err.to_compile_error(),
    }
}

fn rewrite(call: Expr, op: Op) -> syn::Result<TokenStream> {
    let name = op.name();
    let attribute = op.attribute();
    match call {
        Expr::Paren(paren) => rewrite(*paren.expr, op),
        Expr::Group(group) => rewrite(*group.expr, op),
        Expr::Call(ExprCall { func, args, .. }) => match *func {
            // `<Type as Trait<..>>::method(args)`: the companion qualified by that trait.
            Expr::Path(ExprPath {
                qself: Some(qself),
                path,
                ..
            }) if qself.position > 0 && path.segments.len() == qself.position + 1 => {
                let trait_path: Vec<_> = path.segments.iter().take(qself.position).collect();
                let method = &path.segments[qself.position].ident;
                let companion = qualified_companion_name(method, &trait_path);
                let self_ty = &qself.ty;
                let args = args.iter();
                Ok(quote!(<#self_ty>::#companion(#(#args),*)))
            }
            Expr::Path(ExprPath {
                attrs: _,
                qself,
                mut path,
            }) => {
                let span = path.span();
                let last = path
                    .segments
                    .last_mut()
                    .ok_or_else(|| syn::Error::new(span, "expected a function path"))?;
                last.ident = companion_name(&last.ident);
                let path = ExprPath {
                    attrs: Vec::new(),
                    qself,
                    path,
                };
                let args = args.iter();
                Ok(quote!(#path(#(#args),*)))
            }
            other => Err(syn::Error::new(
                other.span(),
                format_args!(
                    "`{name}!` needs a call of a `{attribute}` function by name, like `{name}!(process(42))`"
                ),
            )),
        },
        Expr::MethodCall(ExprMethodCall {
            receiver,
            method,
            turbofish,
            args,
            ..
        }) => {
            let method = companion_name(&method);
            let args = args.iter();
            Ok(quote!((#receiver).#method #turbofish (#(#args),*)))
        }
        Expr::Await(awaited) => Err(syn::Error::new(
            awaited.span(),
            format_args!(
                "`{name}!` takes the call without `.await` and gives a future: write `{name}!(process(42)).await`"
            ),
        )),
        other => Err(syn::Error::new(
            other.span(),
            format_args!(
                "`{name}!` needs a call of a `{attribute}` function, like `{name}!(process(42))` or `{name}!(worker.process(42))`"
            ),
        )),
    }
}
