//! Writing the code of a `#[locked]` or `#[pooled]` function and of its hidden companions.
//!
//! The function keeps its signature and its body untouched: a prologue formats the key, builds
//! the lock (or the pool) and acquires it into a guard, then the original block runs; `return`,
//! `?`, panics and a dropped future all leave through the guard's `Drop` (tracing's
//! `#[instrument]` shape). The two attributes differ only in the runtime glue they call (see
//! [`Glue`]): a `Pool` handle instead of a `Lock`, and their own return-type traits, whose
//! messages name their own options.
//!
//! A function has one companion, whichever attribute it has: the companion of a `#[pooled]`
//! function returns a `PoolCall` instead of a `LockedCall`, so `pool_size!` on a `#[locked]`
//! function and `is_locked!` / `release!` on a `#[pooled]` one are type errors that name the
//! macro to use (see `LockedCall::pool_size` in the runtime).
//!
//! The companion `__lockwright_locked_<name>_<suffix>` (see `companion_ident`) has the function's own parameters (receiver,
//! patterns, types and generics) and builds the lock a call would take, without running
//! anything. `is_locked!` and `release!` rewrite a call into the same call of the companion:
//! `process(&name)` → `__lockwright_locked_process(&name)`, `worker.process(42)` →
//! `worker.__lockwright_locked_process(42)`, `Type::process(&worker, 42)` →
//! `Type::__lockwright_locked_process(&worker, 42)`. So every coercion and inference step of a
//! call happens for the companion too (`&String` to `&str`, `Box<i32>` to `Box<dyn Display>`),
//! and arguments are passed as a call passes them: owned ones are moved. The one exception is
//! the receiver, always `&self`: the method form never moves or mutably borrows it, and the path
//! form takes it by reference (`Type::finish(&worker)`, whatever `finish` takes).

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ItemFn, LitStr, Member, ReturnType};

use crate::key::Template;
use crate::kind::Kind;
use crate::valid::{Binding, Lease, Options};

/// The `__private` items the expansion of one kind of attribute calls.
struct Glue {
    /// The handle: `Lock` or `Pool`.
    handle: &'static str,
    /// What the companion returns: `LockedCall` or `PoolCall`.
    call: &'static str,
    /// Gives an async body's guard back, awaited.
    release_after_body: &'static str,
    /// The trait of return types that carry every acquire failure.
    returns: &'static str,
    /// The trait of return types that carry every failure but contention (`on_locked` /
    /// `on_full` given without `on_error`).
    contention_only: &'static str,
    /// `returns`'s conversion as a function, for return types that cannot be named.
    from_error: &'static str,
    /// `contention_only`'s conversion as a function.
    contention_only_from_error: &'static str,
}

impl Glue {
    fn of(kind: Kind) -> Glue {
        match kind {
            Kind::Locked => Glue {
                handle: "Lock",
                call: "LockedCall",
                release_after_body: "release_after_body",
                returns: "LockedReturn",
                contention_only: "ContentionOnlyReturn",
                from_error: "from_lock_error",
                contention_only_from_error: "contention_only_from_lock_error",
            },
            Kind::Pooled => Glue {
                handle: "Pool",
                call: "PoolCall",
                release_after_body: "release_slot_after_body",
                returns: "PooledReturn",
                contention_only: "FullOnlyReturn",
                from_error: "pooled_from_lock_error",
                contention_only_from_error: "full_only_from_lock_error",
            },
        }
    }

    /// `name` as an identifier of the runtime.
    fn ident(name: &str) -> Ident {
        Ident::new(name, Span::call_site())
    }
}

/// The name of the companion of the function `name`: `__lockwright_locked_<name>_<suffix>`
/// (see [`companion_ident`]).
pub fn companion_name(name: &Ident) -> Ident {
    companion_ident(
        &format!("__lockwright_locked_{}", name.unraw()),
        name.span(),
    )
}

/// The companion called `base`, pointing at `span`, made so that rustc never offers another
/// function's companion as the fix when a lookup fails (`is_locked!(plain(1))` on a function
/// without `#[locked]` beside a `#[locked] fn plains`). rustc offers any name within a third of
/// the missing name's length in edits, and users' names are often that close. So the name ends
/// in a suffix derived from `base` alone (the same in every crate and every version of this
/// macro, since companions are called across crates), long enough that two different names
/// differ by more than that third. The span is the macro's own (mixed-site, under which item
/// names still resolve as the user's would), which keeps method lookups from suggesting too.
fn companion_ident(base: &str, span: Span) -> Ident {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    // FNV-1a over the name, then a splitmix64 stream from it; never change either.
    let mut state = base.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut name = format!("{base}_");
    for _ in 0..24 + base.len() {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut mixed = state;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^= mixed >> 31;
        name.push(char::from(ALPHABET[(mixed % 62) as usize]));
    }
    Ident::new(&name, Span::mixed_site().located_at(span))
}

/// The name of the companion of a trait-impl method under its trait, for calls that name the
/// trait (`<Actor as Handler<Ping>>::handle(..)`): `__lockwright_locked_<name>__` and the trait's
/// path with its generic arguments as written, punctuation spelled out (`Handler<[u8]>` and
/// `Handler<u8>` differ), so impls of one type never clash.
pub fn qualified_companion_name(name: &Ident, trait_path: &[&syn::PathSegment]) -> Ident {
    fn words(tokens: TokenStream, out: &mut String) {
        for token in tokens {
            match token {
                TokenTree::Ident(ident) => {
                    out.push('_');
                    out.push_str(&ident.unraw().to_string());
                }
                TokenTree::Literal(literal) => {
                    out.push_str("_v");
                    out.extend(
                        literal
                            .to_string()
                            .chars()
                            .filter(char::is_ascii_alphanumeric),
                    );
                }
                TokenTree::Group(group) => {
                    let (open, close) = match group.delimiter() {
                        proc_macro2::Delimiter::Parenthesis => ("_T", "_t"),
                        proc_macro2::Delimiter::Bracket => ("_S", "_s"),
                        proc_macro2::Delimiter::Brace => ("_B", "_b"),
                        proc_macro2::Delimiter::None => ("", ""),
                    };
                    out.push_str(open);
                    words(group.stream(), out);
                    out.push_str(close);
                }
                TokenTree::Punct(punct) => {
                    out.push_str(match punct.as_char() {
                        '<' => "_L",
                        '>' => "_G",
                        ',' => "_C",
                        '&' => "_R",
                        '*' => "_X",
                        ':' => "_P",
                        '\'' => "_Q",
                        '=' => "_E",
                        '+' => "_A",
                        '!' => "_N",
                        '?' => "_M",
                        _ => "_Z",
                    });
                }
            }
        }
    }
    let mut qualified = format!("__lockwright_locked_{}_", name.unraw());
    for segment in trait_path {
        words(segment.to_token_stream(), &mut qualified);
    }
    companion_ident(&qualified, name.span())
}

/// The generated code's own variables: `mixed_site`, so the user's code can neither see nor
/// shadow them.
struct Hygienic {
    guard: Ident,
    lock: Ident,
    err: Ident,
}

impl Hygienic {
    fn new() -> Self {
        let name = |name: &str| Ident::new(name, Span::mixed_site());
        Hygienic {
            guard: name("__lockwright_guard"),
            lock: name("__lockwright_lock"),
            err: name("__lockwright_err"),
        }
    }
}

/// The function's inner attributes (`#![...]`, which go inside the new body) and outer ones.
fn inner_and_outer(attrs: &[syn::Attribute]) -> (Vec<&syn::Attribute>, Vec<&syn::Attribute>) {
    attrs
        .iter()
        .partition(|attr| matches!(attr.style, syn::AttrStyle::Inner(_)))
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
    if sig.asyncness.is_none() {
        if let Some((shape, output)) = crate::future::output_of(&sig.output) {
            return future_function(func, opts, shape, &output);
        }
    }
    let Hygienic { guard, lock, err } = Hygienic::new();
    let build = build_lock(opts, func);
    let acquire = if sig.asyncness.is_some() {
        quote!(#lock.acquire().await)
    } else {
        quote!(#lock.acquire_blocking())
    };
    let on_err = on_error(opts, &sig.output, sig.ident.span(), &err);
    // The body's own statements follow the prologue in the same block: wrapping the user's
    // block as a tail expression would trip `unused_braces` on one-line bodies.
    let (inner, outer) = inner_and_outer(attrs);
    let stmts = &block.stmts;
    let not_a_future = not_a_future_check(opts, &sig.output);
    let release = Glue::ident(Glue::of(opts.kind).release_after_body);
    let body = match awaited_release_output(sig) {
        // An async body runs in a block of its own, so every way out of it (`return`, `?`, the
        // tail) reaches the release, which is awaited: when the call returns, the lock is free
        // for every process. The block's type is the function's, for `?` to know its error.
        Some(output) => {
            let out = Ident::new("__lockwright_output", Span::mixed_site());
            quote! {
                #[allow(clippy::redundant_async_block, clippy::async_yields_async)]
                let #out: #output = async { #(#stmts)* }.await;
                #krate::__private::#release(#guard).await;
                #out
            }
        }
        // Sync bodies release when the guard drops, synchronously; an async body whose type
        // cannot be named (`impl Trait`) releases in the background as the guard drops.
        None => quote!(#(#stmts)*),
    };
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
            #body
        }
    }
}

/// The type an async function's body evaluates to, when it can be written in a `let`: not for
/// sync functions, nor for a return type that mentions `impl` (an opaque type has no name).
fn awaited_release_output(sig: &syn::Signature) -> Option<TokenStream> {
    sig.asyncness?;
    match &sig.output {
        ReturnType::Default => Some(quote!(())),
        ReturnType::Type(_, ty) if !mentions_impl(&ty.to_token_stream()) => Some(quote!(#ty)),
        ReturnType::Type(..) => None,
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
    let Hygienic { guard, lock, err } = Hygienic::new();
    let body = Ident::new("__lockwright_body", Span::mixed_site());
    let out = Ident::new("__lockwright_output", Span::mixed_site());
    let build = build_lock(opts, func);
    let output = ReturnType::Type(Default::default(), Box::new(output.clone()));
    let on_err = on_error(opts, &output, sig.ident.span(), &err);
    let (inner, outer) = inner_and_outer(attrs);
    let stmts = &block.stmts;
    let release = Glue::ident(Glue::of(opts.kind).release_after_body);
    let locked = quote! {
        async move {
            let #guard = match #lock.acquire().await {
                #krate::__private::Ok(#guard) => #guard,
                #krate::__private::Err(#err) => #on_err,
            };
            // Awaited, so the lock is free for every process once the future has completed.
            let #out = #body.await;
            #krate::__private::#release(#guard).await;
            #out
        }
    };
    // The boxed shape names its type, which every `return` of the body then coerces to; an
    // `impl Future` cannot be named on a closure.
    let (locked, closure_ret) = match shape {
        crate::future::Shape::Impl => (locked, TokenStream::new()),
        crate::future::Shape::Boxed => {
            let ret = match &sig.output {
                ReturnType::Type(arrow, ty) => quote!(#arrow #ty),
                ReturnType::Default => TokenStream::new(),
            };
            (quote!(#krate::__private::Box::pin(#locked)), ret)
        }
    };
    quote! {
        #(#outer)*
        #vis #sig {
            #(#inner)*
            let #lock = #build;
            // In a closure, so a `return` in the body gives the future it returns, still wrapped.
            #[allow(clippy::redundant_closure_call)]
            let #body = (move || #closure_ret { #(#stmts)* })();
            #locked
        }
    }
}

/// What the prologue does with an acquire error `err`: with `on_locked` / `on_full`, return that
/// value for contention; hand the rest to `on_error` if given, else return it through the return
/// type (which must then carry a `LockError`: a compile error otherwise, never a runtime panic).
fn on_error(opts: &Options, output: &ReturnType, name: Span, err: &Ident) -> TokenStream {
    let krate = &opts.krate;
    let glue = Glue::of(opts.kind);
    let returns = Glue::ident(glue.returns);
    let contention_only = Glue::ident(glue.contention_only);
    let from_error = Glue::ident(glue.from_error);
    let contention_only_from_error = Glue::ident(glue.contention_only_from_error);
    let (ret, span) = match output {
        ReturnType::Default => (quote_spanned!(name=> ()), name),
        ReturnType::Type(_, ty) => (ty.to_token_stream(), ty.span()),
    };
    let otherwise = match (&opts.on_error, &opts.on_contention) {
        // The return type is given to the closure, so a wrong one is reported in the closure.
        (Some(handler), _) => {
            let span = handler.span();
            let private = respan(quote!(#krate::__private), span);
            let ret = (!mentions_impl(&ret)).then(|| quote_spanned!(span=> ::<#ret>));
            quote_spanned! {span=>
                return #private::handle_error #ret (#handler, #err)
            }
        }
        // Reported at `on_locked` / `on_full`, which covers contention only.
        (None, Some((on_contention, _))) if mentions_impl(&ret) => quote_spanned! {*on_contention=>
            return #krate::__private::#contention_only_from_error(#err)
        },
        (None, Some((on_contention, _))) => {
            let ret = respan(ret, *on_contention);
            quote_spanned! {*on_contention=>
                return <#ret as #krate::__private::#contention_only>::from_lock_error(#err)
            }
        }
        (None, None) if mentions_impl(&ret) => quote_spanned! {span=>
            return #krate::__private::#from_error(#err)
        },
        (None, None) => quote_spanned! {span=>
            return <#ret as #krate::__private::#returns>::from_lock_error(#err)
        },
    };
    match &opts.on_contention {
        None => otherwise,
        Some((_, value)) => quote! {{
            if #krate::__private::LockError::is_contention(&#err) {
                // Through `identity`, so `on_locked = ()` is no `return ()` (clippy::unused_unit).
                return #krate::__private::identity(#value);
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

/// The expression building the `Lock` (or `Pool`) of one call: key, size, backend and options.
fn build_lock(opts: &Options, func: &ItemFn) -> TokenStream {
    let krate = &opts.krate;
    let key = key_expr(&opts.template, func, krate, opts.py_cachify);
    let handle = Glue::ident(Glue::of(opts.kind).handle);
    // The pool's size follows the key: `Pool::new(key, max_size)`, `Pool::with_backend(key,
    // max_size, backend)`.
    let max_size = opts.max_size.as_ref().map(|size| {
        let size = size.to_tokens();
        quote!(, #size)
    });
    let mut lock = match &opts.backend {
        None => quote!(#krate::__private::#handle::new(#key #max_size)),
        Some(backend) => {
            let backend = quote_spanned!(backend.span()=> #krate::__private::backend(&(#backend)));
            quote!(#krate::__private::#handle::with_backend(#key #max_size, #backend))
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
/// Under `py_cachify` every value goes through `key_python` instead (Python's rendering).
fn key_expr(template: &Template, func: &ItemFn, krate: &syn::Path, python: bool) -> TokenStream {
    let span = template.lit.span();
    if let Some(text) = template.constant() {
        return LitStr::new(&text, span).into_token_stream();
    }
    let format = LitStr::new(&template.format_string(), span);
    let params = crate::valid::Params::of(&func.sig);
    let values = template.holes().map(|hole| {
        let span = template.span_of(hole.range.clone());
        let private = respan(quote!(#krate::__private), span);
        let check = Ident::new(if python { "key_python" } else { hole.check() }, span);
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
                    reference,
                }) if hole.check() != "key_pointer" => {
                    let arg = if *reference {
                        quote_spanned!(span=> &*#ident)
                    } else {
                        quote_spanned!(span=> &#ident)
                    };
                    quote_spanned!(span=> (*#private::key_root::<#ty>(#arg)))
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

/// The companion of `func` (see the module docs), called `companion`, with visibility `vis`.
pub fn companion(
    func: &ItemFn,
    opts: &Options,
    vis: &syn::Visibility,
    companion: &Ident,
) -> TokenStream {
    let krate = &opts.krate;
    let sig = &func.sig;
    let generics = &sig.generics;
    let where_clause = &generics.where_clause;
    // `cfg` so it exists exactly when the function does; lint levels because it holds the
    // user's own expressions (key placeholders, options).
    let cfgs = func.attrs.iter().filter(|attr| {
        // Not `forbid`: the companion's own `allow`s would then be errors.
        ["cfg", "allow", "warn", "deny"]
            .iter()
            .any(|name| attr.path().is_ident(name))
            && matches!(attr.style, syn::AttrStyle::Outer)
    });
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
    let call = Glue::ident(Glue::of(opts.kind).call);
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
        #vis fn #companion #generics (#(#inputs),*) -> #krate::__private::#call #where_clause {
            #krate::__private::#call::new(#build)
        }
    }
}
