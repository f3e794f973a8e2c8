//! Writing the code of a `#[locked]` function and of its hidden companions.
//!
//! The function keeps its signature and its body untouched: a prologue formats the key, builds
//! the lock and acquires it into a guard, then the original block runs; `return`, `?`, panics
//! and a dropped future all leave through the guard's `Drop` (tracing's `#[instrument]` shape).
//!
//! The companion `__lockwright_locked_<name>` has the function's own parameters (receiver,
//! patterns, types and generics) and builds the lock a call would take, without running
//! anything. `is_locked!` and `release!` rewrite a call into the same call of the companion:
//! `process(&name)` → `__lockwright_locked_process(&name)`, `worker.process(42)` →
//! `worker.__lockwright_locked_process(42)`, `Type::process(&worker, 42)` →
//! `Type::__lockwright_locked_process(&worker, 42)`. So every coercion and inference step of a
//! call happens for the companion too (`&String` to `&str`, `Box<i32>` to `Box<dyn Display>`),
//! and arguments are passed as a call passes them: owned ones are moved. The one exception is
//! the receiver, always `&self`: the method form never moves or mutably borrows it, and the path
//! form takes it by reference (`Type::finish(&worker)`, whatever `finish` takes).

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ItemFn, LitStr, Member, ReturnType};

use crate::key::Template;
use crate::valid::{Lease, Options};

/// The name of the companion of the function `name`.
pub fn companion_name(name: &Ident) -> Ident {
    format_ident!("__lockwright_locked_{}", name.unraw(), span = name.span())
}

/// The function with its lock prologue.
pub fn function(func: &ItemFn, opts: &Options) -> TokenStream {
    let krate = &opts.krate;
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = func;
    let guard = Ident::new("__lockwright_guard", Span::mixed_site());
    let lock = Ident::new("__lockwright_lock", Span::mixed_site());
    let err = Ident::new("__lockwright_err", Span::mixed_site());
    let build = build_lock(opts, func);
    if sig.asyncness.is_none() {
        if let Some((shape, output)) = crate::future::output_of(&sig.output) {
            return future_function(func, opts, shape, &output);
        }
    }
    let acquire = if sig.asyncness.is_some() {
        quote!(#lock.acquire().await)
    } else {
        quote!(#lock.acquire_blocking())
    };
    let on_err = on_error(opts, &sig.output, sig.ident.span(), &err);
    // The body's own statements follow the prologue in the same block: wrapping the user's
    // block as a tail expression would trip `unused_braces` on one-line bodies.
    let (inner, outer): (Vec<_>, Vec<_>) = attrs
        .iter()
        .partition(|attr| matches!(attr.style, syn::AttrStyle::Inner(_)));
    let stmts = &block.stmts;
    let not_a_future = not_a_future_check(opts, &sig.output);
    quote! {
        #(#outer)*
        #vis #sig {
            #(#inner)*
            #not_a_future
            let #guard = {
                let #lock = #build;
                match #acquire {
                    #krate::__private::Ok(#guard) => #guard,
                    #krate::__private::Err(#err) => #on_err,
                }
            };
            #(#stmts)*
        }
    }
}

/// A compile error if a sync function's return type is a future after all (an alias: see
/// `ReturnProbe` in the runtime). `impl Trait` returns cannot be named in the body; those that are
/// futures were spelled out, and took the path of `future_function`.
fn not_a_future_check(opts: &Options, output: &ReturnType) -> TokenStream {
    let krate = &opts.krate;
    let ReturnType::Type(_, ty) = output else {
        return TokenStream::new();
    };
    if mentions_impl(&ty.to_token_stream()) {
        return TokenStream::new();
    }
    quote_spanned! {ty.span()=>
        {
            #[allow(unused_imports)]
            use #krate::__private::{ViaAnyReturn as _, ViaFuture as _};
            #krate::__private::require_not_a_future(
                (&&#krate::__private::ReturnProbe::<#ty>::new()).__lockwright_return_kind(),
            );
        }
    }
}

/// A function that returns a future it builds (see `future.rs`): the key is formatted and the
/// lock built from the arguments first, then the body builds its future, and the function
/// returns another one that acquires (waiting without blocking), runs that future, and releases
/// when it completes or is dropped. Lock failures become the future's `Output`.
fn future_function(
    func: &ItemFn,
    opts: &Options,
    shape: crate::future::Shape,
    output: &syn::Type,
) -> TokenStream {
    let krate = &opts.krate;
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = func;
    let guard = Ident::new("__lockwright_guard", Span::mixed_site());
    let lock = Ident::new("__lockwright_lock", Span::mixed_site());
    let err = Ident::new("__lockwright_err", Span::mixed_site());
    let body = Ident::new("__lockwright_body", Span::mixed_site());
    let build = build_lock(opts, func);
    let output = ReturnType::Type(Default::default(), Box::new(output.clone()));
    let on_err = on_error(opts, &output, sig.ident.span(), &err);
    let (inner, outer): (Vec<_>, Vec<_>) = attrs
        .iter()
        .partition(|attr| matches!(attr.style, syn::AttrStyle::Inner(_)));
    let stmts = &block.stmts;
    let locked = quote! {
        async move {
            let #guard = match #lock.acquire().await {
                #krate::__private::Ok(#guard) => #guard,
                #krate::__private::Err(#err) => #on_err,
            };
            #body.await
        }
    };
    let locked = match shape {
        crate::future::Shape::Impl => locked,
        crate::future::Shape::Boxed => quote!(#krate::__private::Box::pin(#locked)),
    };
    quote! {
        #(#outer)*
        #vis #sig {
            #(#inner)*
            let #lock = #build;
            let #body = { #(#stmts)* };
            #locked
        }
    }
}

/// What the prologue does with an acquire error `err`: with `on_locked`, return that value for
/// contention; hand the rest to `on_error` if given, else return it through the return type
/// (which must then carry a `LockError`: a compile error otherwise, never a runtime panic).
fn on_error(opts: &Options, output: &ReturnType, name: Span, err: &Ident) -> TokenStream {
    let krate = &opts.krate;
    let (ret, span) = match output {
        ReturnType::Default => (quote_spanned!(name=> ()), name),
        ReturnType::Type(_, ty) => (ty.to_token_stream(), ty.span()),
    };
    let otherwise = match &opts.on_error {
        Some(handler) => quote_spanned! {handler.span()=>
            return #krate::__private::handle_error(#handler, #err)
        },
        None if mentions_impl(&ret) => quote_spanned! {span=>
            return #krate::__private::from_lock_error(#err)
        },
        None => quote_spanned! {span=>
            return <#ret as #krate::__private::LockedReturn>::from_lock_error(#err)
        },
    };
    match &opts.on_locked {
        None => otherwise,
        Some(value) => quote! {{
            if #krate::__private::LockError::is_contention(&#err) {
                // Through `identity`, so `on_locked = ()` is no `return ()` (clippy::unused_unit).
                return #krate::__private::identity(#value);
            }
            #otherwise
        }},
    }
}

fn mentions_impl(tokens: &TokenStream) -> bool {
    tokens.clone().into_iter().any(|token| match token {
        TokenTree::Ident(ident) => ident == "impl",
        TokenTree::Group(group) => mentions_impl(&group.stream()),
        _ => false,
    })
}

/// The expression building the `Lock` of one call: key, backend and options.
fn build_lock(opts: &Options, func: &ItemFn) -> TokenStream {
    let krate = &opts.krate;
    let key = key_expr(&opts.template, func, krate);
    let mut lock = match &opts.backend {
        None => quote!(#krate::__private::Lock::new(#key)),
        Some(backend) => {
            let backend = quote_spanned!(backend.span()=> #krate::__private::backend(&(#backend)));
            quote!(#krate::__private::Lock::with_backend(#key, #backend))
        }
    };
    if let Some(nowait) = opts.nowait {
        lock.extend(quote!(.nowait(#nowait)));
    }
    if let Some(timeout) = opts.timeout {
        let (secs, nanos) = (timeout.as_secs(), timeout.subsec_nanos());
        lock.extend(quote!(.timeout(#krate::__private::Duration::new(#secs, #nanos))));
    }
    match opts.lease {
        None => {}
        Some(Lease::Fixed(exp)) => {
            let (secs, nanos) = (exp.as_secs(), exp.subsec_nanos());
            lock.extend(quote!(.exp(#krate::__private::Duration::new(#secs, #nanos))));
        }
        Some(Lease::Never) => lock.extend(quote!(.never_expires())),
    }
    lock
}

/// `"text"` for a constant key, else one `format!` over the placeholders' values.
fn key_expr(template: &Template, func: &ItemFn, krate: &syn::Path) -> TokenStream {
    let span = template.lit.span();
    if let Some(text) = template.constant() {
        return LitStr::new(&text, span).into_token_stream();
    }
    let format = LitStr::new(&template.format_string(), span);
    let values = template.holes().map(|hole| {
        let root = if hole.root == "self" {
            let span = func
                .sig
                .receiver()
                .map_or_else(Span::call_site, |receiver| receiver.self_token.span);
            quote_spanned!(span=> self)
        } else {
            // The parameter's own identifier, so it resolves to the binding in the signature.
            binding_ident(func, &hole.root).into_token_stream()
        };
        let members = hole
            .members
            .iter()
            .map(|member| match member.parse::<u32>() {
                Ok(index) => Member::Unnamed(syn::Index { index, span }),
                Err(_) => Member::Named(Ident::new(member, span)),
            });
        quote!(&(#root #(.#members)*))
    });
    quote!(#krate::__private::format!(#format, #(#values),*))
}

fn binding_ident(func: &ItemFn, name: &str) -> Ident {
    crate::valid::Params::of(&func.sig)
        .bindings
        .into_iter()
        .map(|binding| binding.ident)
        .find(|ident| ident == name)
        .unwrap_or_else(|| Ident::new(name, Span::call_site()))
}

/// The companion of `func` (see the module docs). `vis` is its visibility.
pub fn companion(func: &ItemFn, opts: &Options, vis: &syn::Visibility) -> TokenStream {
    let krate = &opts.krate;
    let sig = &func.sig;
    let generics = &sig.generics;
    let where_clause = &generics.where_clause;
    let cfgs = func.attrs.iter().filter(|attr| attr.path().is_ident("cfg"));
    // The function's own parameters, so a call coerces and infers exactly as a call of the
    // function does (only parameter attributes other than `cfg` are dropped). The receiver is
    // `&self` whatever the function takes: asking about a lock never needs to own or mutate,
    // and method calls reach `&self` from any receiver by autoref and autoderef.
    let inputs = sig.inputs.iter().map(|input| match input {
        FnArg::Receiver(_) => quote!(&self),
        FnArg::Typed(typed) => {
            let mut typed = typed.clone();
            typed.attrs.retain(|attr| attr.path().is_ident("cfg"));
            typed.into_token_stream()
        }
    });
    let build = build_lock(opts, func);
    let companion = companion_name(&sig.ident);
    quote! {
        #(#cfgs)*
        #[doc(hidden)]
        #[allow(
            dead_code,
            unused_variables,
            unused_mut,
            non_snake_case,
            clippy::too_many_arguments,
            clippy::needless_pass_by_value,
            clippy::used_underscore_binding
        )]
        #[inline]
        #vis fn #companion #generics (#(#inputs),*) -> #krate::__private::LockedCall #where_clause {
            #krate::__private::LockedCall::new(#build)
        }
    }
}
