//! Writing the code of a `#[locked]` function and of its hidden companions.
//!
//! The function keeps its signature and its body untouched: a prologue formats the key, builds
//! the lock and acquires it into a guard, then the original block runs; `return`, `?`, panics
//! and a dropped future all leave through the guard's `Drop` (tracing's `#[instrument]` shape).
//!
//! The companion `__lockwright_locked_<name>` takes the same parameters by reference (`&self`
//! for any receiver) and builds the lock a call would take, without running anything.
//! `is_locked!` and `release!` rewrite a call into a companion call with every argument borrowed:
//! `process(42)` → `__lockwright_locked_process(&(42))`, `worker.process(42)` →
//! `worker.__lockwright_locked_process(&(42))`, `Type::process(&worker, 42)` →
//! `Type::__lockwright_locked_process(&(&worker), &(42))`, where deref coercion turns the
//! borrowed receiver (`&&T`, `&&mut T`, `&T`, `&Box<T>`...) into `&self`.

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ItemFn, LitStr, Member, Pat, ReturnType, Type};

use crate::key::Template;
use crate::valid::{Binding, Lease, Options};

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
    let acquire = if sig.asyncness.is_some() {
        quote!(#lock.acquire().await)
    } else {
        quote!(#lock.acquire_blocking())
    };
    let on_err = on_error(opts, &sig.output, sig.ident.span(), &err);
    quote! {
        #(#attrs)*
        #vis #sig {
            let #guard = {
                let #lock = #build;
                match #acquire {
                    #krate::__private::Ok(#guard) => #guard,
                    #krate::__private::Err(#err) => #on_err,
                }
            };
            #block
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
    let otherwise = match (&opts.on_error, &opts.on_locked) {
        // The return type is given to the closure, so a wrong one is reported in the closure.
        (Some(handler), _) => {
            let span = handler.span();
            let private = respan(quote!(#krate::__private), span);
            let ret = (!mentions_impl(&ret)).then(|| quote_spanned!(span=> ::<#ret>));
            quote_spanned! {span=>
                return #private::handle_error #ret (#handler, #err)
            }
        }
        // Reported at `on_locked`, which covers contention only.
        (None, Some((on_locked, _))) if mentions_impl(&ret) => quote_spanned! {*on_locked=>
            return #krate::__private::contention_only_from_lock_error(#err)
        },
        (None, Some((on_locked, _))) => {
            let ret = respan(ret, *on_locked);
            quote_spanned! {*on_locked=>
                return <#ret as #krate::__private::ContentionOnlyReturn>::from_lock_error(#err)
            }
        }
        (None, None) if mentions_impl(&ret) => quote_spanned! {span=>
            return #krate::__private::from_lock_error(#err)
        },
        (None, None) => quote_spanned! {span=>
            return <#ret as #krate::__private::LockedReturn>::from_lock_error(#err)
        },
    };
    match &opts.on_locked {
        None => otherwise,
        Some((_, value)) => quote! {{
            if #krate::__private::LockError::is_contention(&#err) {
                return #value;
            }
            #otherwise
        }},
    }
}

/// `tokens` with every token at `span`, so a diagnostic about them points there.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            if let TokenTree::Group(group) = &token {
                let mut respanned = Group::new(group.delimiter(), respan(group.stream(), span));
                respanned.set_span(span);
                token = TokenTree::Group(respanned);
            } else {
                token.set_span(span);
            }
            token
        })
        .collect()
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
    if let Some(timeout) = &opts.timeout {
        let timeout = timeout.to_tokens(krate);
        lock.extend(quote_spanned!(timeout.span()=> .timeout(#timeout)));
    }
    match &opts.lease {
        None => {}
        Some(Lease::Fixed(exp)) => {
            let exp = exp.to_tokens(krate);
            lock.extend(quote_spanned!(exp.span()=> .exp(#exp)));
        }
        Some(Lease::Never) => lock.extend(quote!(.never_expires())),
    }
    lock
}

/// `"text"` for a constant key, else one `format!` over the placeholders' values. Each value is
/// `__private::key_display(&(*__private::key_root::<T>(&param)).field)` (the check named after
/// the placeholder's format trait), spanned at the placeholder: a missing field or a value
/// without the trait is reported there, once, with the parameter's own type (see `key_root`).
fn key_expr(template: &Template, func: &ItemFn, krate: &syn::Path) -> TokenStream {
    let span = template.lit.span();
    if let Some(text) = template.constant() {
        return LitStr::new(&text, span).into_token_stream();
    }
    let format = LitStr::new(&template.format_string(), span);
    let params = crate::valid::Params::of(&func.sig);
    let values = template.holes().map(|hole| {
        let span = template.span_of(hole.range.clone());
        let private = respan(quote!(#krate::__private), span);
        let check = Ident::new(hole.check(), span);
        let root = if hole.root == "self" {
            let receiver = func
                .sig
                .receiver()
                .map_or_else(Span::call_site, |receiver| receiver.self_token.span);
            let receiver = quote_spanned!(receiver=> self);
            quote_spanned!(span=> (*#private::key_root::<Self>(&#receiver)))
        } else {
            // The parameter's own identifier, so it resolves to the binding in the signature.
            match params.find(&hole.root) {
                Some(Binding {
                    ident,
                    ty: Some(ty),
                    ..
                }) if hole.check() != "key_pointer" => {
                    quote_spanned!(span=> (*#private::key_root::<#ty>(&#ident)))
                }
                Some(binding) => binding.ident.to_token_stream(),
                None => crate::key::ident(&hole.root, span).into_token_stream(),
            }
        };
        let members = hole
            .members
            .iter()
            .map(|member| match member.parse::<u32>() {
                Ok(index) => Member::Unnamed(syn::Index { index, span }),
                Err(_) => Member::Named(crate::key::ident(member, span)),
            });
        quote_spanned!(span=> #private::#check(&(#root #(.#members)*)))
    });
    quote!(#krate::__private::format!(#format, #(#values),*))
}

/// The companion of `func` (see the module docs). `vis` is its visibility.
pub fn companion(func: &ItemFn, opts: &Options, vis: &syn::Visibility) -> TokenStream {
    let krate = &opts.krate;
    let sig = &func.sig;
    let name = &sig.ident;
    let generics = &sig.generics;
    let where_clause = &generics.where_clause;
    let cfgs = func.attrs.iter().filter(|attr| attr.path().is_ident("cfg"));
    let attrs = quote! {
        #(#cfgs)*
        #[doc(hidden)]
        #[allow(dead_code, unused_variables, non_snake_case, clippy::too_many_arguments)]
        #[inline]
    };
    let typed: Vec<&syn::PatType> = sig
        .inputs
        .iter()
        .filter_map(|input| match input {
            FnArg::Typed(typed) => Some(typed),
            FnArg::Receiver(_) => None,
        })
        .collect();
    let params = typed.iter().map(|typed| {
        let pat = companion_pat(&typed.pat);
        let ty = &typed.ty;
        let param_attrs = &typed.attrs;
        match &**ty {
            // `&impl A + B` would be ambiguous.
            Type::ImplTrait(_) | Type::TraitObject(_) => quote!(#(#param_attrs)* #pat: &(#ty)),
            _ => quote!(#(#param_attrs)* #pat: &#ty),
        }
    });
    let build = build_lock(opts, func);
    let companion = companion_name(name);
    let receiver = sig.receiver().map(|_| quote!(&self,));
    quote! {
        #attrs
        #vis fn #companion #generics (#receiver #(#params),*) -> #krate::__private::LockedCall #where_clause {
            #krate::__private::LockedCall::new(#build)
        }
    }
}

/// The parameter pattern taken by reference: the same names, without `mut` / `ref` (match
/// ergonomics binds them as references); `_` for patterns with `&`, which cannot match a
/// reference to the value (a placeholder using such a name was refused by `valid.rs`).
fn companion_pat(pat: &Pat) -> Pat {
    if has_reference(pat) {
        return syn::parse_quote!(_);
    }
    let mut pat = pat.clone();
    strip_modes(&mut pat);
    pat
}

fn has_reference(pat: &Pat) -> bool {
    match pat {
        Pat::Reference(_) => true,
        Pat::Ident(ident) => ident
            .subpat
            .as_ref()
            .is_some_and(|(_, sub)| has_reference(sub)),
        Pat::Tuple(tuple) => tuple.elems.iter().any(has_reference),
        Pat::TupleStruct(tuple) => tuple.elems.iter().any(has_reference),
        Pat::Struct(fields) => fields.fields.iter().any(|field| has_reference(&field.pat)),
        Pat::Slice(slice) => slice.elems.iter().any(has_reference),
        Pat::Paren(paren) => has_reference(&paren.pat),
        Pat::Type(typed) => has_reference(&typed.pat),
        _ => false,
    }
}

fn strip_modes(pat: &mut Pat) {
    match pat {
        Pat::Ident(ident) => {
            ident.by_ref = None;
            ident.mutability = None;
            if let Some((_, sub)) = &mut ident.subpat {
                strip_modes(sub);
            }
        }
        Pat::Tuple(tuple) => tuple.elems.iter_mut().for_each(strip_modes),
        Pat::TupleStruct(tuple) => tuple.elems.iter_mut().for_each(strip_modes),
        Pat::Struct(fields) => fields
            .fields
            .iter_mut()
            .for_each(|field| strip_modes(&mut field.pat)),
        Pat::Slice(slice) => slice.elems.iter_mut().for_each(strip_modes),
        Pat::Paren(paren) => strip_modes(&mut paren.pat),
        Pat::Type(typed) => strip_modes(&mut typed.pat),
        _ => {}
    }
}
