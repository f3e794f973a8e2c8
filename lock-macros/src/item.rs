//! What `#[locked]` or `#[pooled]` is applied to: a function (the common case), an `impl` block
//! (to reach the `#[locked]` / `#[pooled]` methods of a trait impl), or something it refuses
//! with a reason.

use std::collections::HashSet;

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{quote, ToTokens};
use syn::spanned::Spanned;
use syn::{ImplItem, Item, ItemFn, ItemImpl, Visibility};

use crate::args::Args;
use crate::errors::Errors;
use crate::expand;
use crate::kind::Kind;
use crate::valid;

/// `#[locked(...)]` or `#[pooled(...)]` (as `kind` says) on any item.
pub fn attribute(kind: Kind, args: TokenStream, item: TokenStream) -> TokenStream {
    let not_a_function = || {
        syn::Error::new(
            Span::call_site(),
            format_args!("`#[{}]` applies to functions and methods", kind.name()),
        )
    };
    match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Fn(func)) => match function(kind, args, &func) {
            Ok((function, opts)) => {
                let name = expand::companion_name(&func.sig.ident);
                let companion = expand::companion(&func, &opts, &func.vis, &name);
                quote!(#function #companion)
            }
            Err(err) => fallback(err, &func),
        },
        Ok(Item::Impl(block)) => impl_block(kind, args, block),
        Ok(Item::Trait(definition)) if kind == Kind::Locked => trait_definition(args, definition),
        Ok(Item::Trait(definition)) => fallback(pooled_trait(&definition), &definition),
        Ok(Item::Verbatim(tokens)) => match syn::parse2::<syn::TraitItemFn>(tokens.clone()) {
            Ok(decl) if decl.default.is_none() => fallback(no_body(kind, &decl), &decl),
            _ => fallback(not_a_function(), &tokens),
        },
        Ok(other) => fallback(unsupported(kind, &other), &other),
        // Not an item: a method declaration without a body (`fn f(&self);` in a trait).
        Err(_) => match syn::parse2::<syn::TraitItemFn>(item.clone()) {
            Ok(decl) if decl.default.is_none() => fallback(no_body(kind, &decl), &decl),
            _ => fallback(not_a_function(), &item),
        },
    }
}

fn no_body(kind: Kind, decl: &syn::TraitItemFn) -> syn::Error {
    let name = kind.name();
    syn::Error::new(
        decl.sig.fn_token.span,
        format_args!("`#[{name}]` needs a function with a body: put it on the trait's implementations (with `#[{name}]` on the `impl` block), not on the declaration"),
    )
}

/// `#[pooled]` on a trait: its companions would have to answer `pool_size!` through generics and
/// `dyn`, which only `#[locked]` traits do.
fn pooled_trait(definition: &syn::ItemTrait) -> syn::Error {
    syn::Error::new(
        definition.trait_token.span,
        "`#[pooled]` does not apply to a trait: put `#[pooled(key = \"...\", max_size = N)]` on the methods of its impls, with `#[pooled]` on those impls, and ask `pool_size!` where the type is known",
    )
}

/// Parses and checks the options for `func`, then writes the locked (or pooled) function.
fn function(
    kind: Kind,
    args: TokenStream,
    func: &ItemFn,
) -> syn::Result<(TokenStream, valid::Options)> {
    let args = Args::parse(kind, args)?;
    let mut errors = Errors::default();
    match valid::validate(args, func, &mut errors) {
        Some(opts) => Ok((expand::function(func, &opts), opts)),
        None => Err(errors
            .finish()
            .expect_err("validation failed without an error")),
    }
}

/// The errors, next to the item as written, so the rest of the crate (and IDEs) still see it.
fn fallback(err: syn::Error, item: &dyn ToTokens) -> TokenStream {
    let errors = err.to_compile_error();
    quote!(#errors #item)
}

fn unsupported(kind: Kind, item: &Item) -> syn::Error {
    let (span, what) = match item {
        Item::Struct(item) => (item.struct_token.span, "a struct"),
        Item::Enum(item) => (item.enum_token.span, "an enum"),
        Item::Union(item) => (item.union_token.span, "a union"),
        Item::Mod(item) => (item.mod_token.span, "a module"),
        Item::Const(item) => (item.const_token.span, "a const"),
        Item::Static(item) => (item.static_token.span, "a static"),
        Item::Type(item) => (item.type_token.span, "a type alias"),
        Item::Use(item) => (item.use_token.span, "a `use`"),
        Item::ForeignMod(item) => (item.abi.span(), "an `extern` block"),
        other => (other.span(), "this item"),
    };
    syn::Error::new(
        span,
        format_args!(
            "`#[{}]` applies to functions and methods, not to {what}",
            kind.name()
        ),
    )
}

/// `#[locked]` or `#[pooled]` on an `impl` block: expands the `#[locked(...)]` and
/// `#[pooled(...)]` methods inside (either block attribute expands both), and puts their
/// companions (see `expand::companion`) in an inherent `impl` of the same type, since a trait
/// impl cannot hold them.
fn impl_block(kind: Kind, args: TokenStream, mut block: ItemImpl) -> TokenStream {
    let mut errors = Errors::default();
    let name = kind.name();
    let (qualified, in_trait_companions) = match syn::parse2::<Option<syn::Ident>>(args.clone()) {
        Ok(None) => (false, false),
        Ok(Some(word)) if word == "qualified" && block.trait_.is_some() => (true, false),
        Ok(Some(word)) if word == "trait_companions" && block.trait_.is_some() => (true, true),
        _ => {
            errors.at(
                args.span(),
                format_args!("on an `impl` block, `#[{name}]` takes no options but, on a trait impl, `qualified` (`is_locked!` / `pool_size!` then name the trait: `<Type as Trait>::method(..)`) or `trait_companions` (the trait is `#[locked]` too, so `is_locked!` works through generics and `dyn`): write `#[{name}(key = \"...\")]` on its methods"),
            );
            (false, false)
        }
    };
    // The companions of a trait impl have a name qualified by the trait (and its arguments), for
    // calls that name it, and the plain name for the method form (`actor.run(1)`) unless that
    // could clash: the impl says `qualified`, or the trait has arguments of its own (another impl
    // of it for the same type, `Handler<Pong>` next to `Handler<Ping>`, would clash).
    let plain_name_too = match &block.trait_ {
        None => true,
        Some((_, trait_path, _)) => {
            let impl_params: HashSet<String> = block
                .generics
                .params
                .iter()
                .map(|param| match param {
                    syn::GenericParam::Lifetime(l) => l.lifetime.ident.to_string(),
                    syn::GenericParam::Type(t) => t.ident.to_string(),
                    syn::GenericParam::Const(c) => c.ident.to_string(),
                })
                .collect();
            let own_arguments = trait_path.segments.last().is_some_and(|segment| {
                matches!(segment.arguments, syn::PathArguments::AngleBracketed(_))
                    && idents(&segment.arguments.to_token_stream())
                        .iter()
                        .all(|ident| !impl_params.contains(ident))
            });
            !qualified && !own_arguments
        }
    };
    let is_trait_impl = block.trait_.is_some();
    // The companions of a trait impl go in an inherent impl, which may keep only the generics its
    // self type uses: the others (`M` of `impl<M> Handler<M> for Logger`) move to each companion.
    let (kept_generics, moved_generics) = if is_trait_impl {
        split_generics(&block.generics, &block.self_ty)
    } else {
        (block.generics.clone(), syn::Generics::default())
    };
    let mut companions = Vec::new();
    // With `trait_companions`: the companions that go inside the trait impl itself.
    let mut in_trait = Vec::new();
    for item in &mut block.items {
        let ImplItem::Fn(method) = item else { continue };
        let Some((at, method_kind)) = method.attrs.iter().enumerate().find_map(|(at, attr)| {
            let ident = &attr.path().segments.last()?.ident;
            [Kind::Locked, Kind::Pooled]
                .into_iter()
                .find(|kind| ident == kind.name())
                .map(|kind| (at, kind))
        }) else {
            continue;
        };
        let attr = method.attrs.remove(at);
        if in_trait_companions && method_kind == Kind::Pooled {
            errors.at(
                attr.path().span(),
                "`trait_companions` covers `#[locked]` methods only: ask `pool_size!` where the type is known, and mark this impl `#[locked]` or `#[locked(qualified)]`",
            );
        }
        let args = match attr.meta {
            syn::Meta::List(list) => list.tokens,
            _ => TokenStream::new(),
        };
        let func = ItemFn {
            attrs: method.attrs.clone(),
            vis: method.vis.clone(),
            sig: method.sig.clone(),
            block: Box::new(method.block.clone()),
        };
        // A trait method is as visible as the trait, so its companion is `pub`: callers in
        // other crates check it too.
        let vis: Visibility = if is_trait_impl {
            syn::parse_quote!(pub)
        } else {
            method.vis.clone()
        };
        *item = match function(method_kind, args, &func) {
            Ok((tokens, opts)) => {
                let plain = expand::companion_name(&func.sig.ident);
                match &block.trait_ {
                    Some((_, trait_path, _)) => {
                        let companion = trait_companion(&func, trait_path, &moved_generics);
                        let segments: Vec<_> = trait_path.segments.iter().collect();
                        let name = expand::qualified_companion_name(&func.sig.ident, &segments);
                        companions.push(expand::companion(&companion, &opts, &vis, &name));
                        if in_trait_companions && method_kind == Kind::Locked {
                            // Overrides the hidden method `#[locked]` on the trait declared.
                            let inherited = Visibility::Inherited;
                            in_trait.push(expand::companion(&func, &opts, &inherited, &plain));
                        } else if plain_name_too {
                            companions.push(expand::companion(&companion, &opts, &vis, &plain));
                        }
                    }
                    None => companions.push(expand::companion(&func, &opts, &vis, &plain)),
                }
                ImplItem::Verbatim(tokens)
            }
            Err(err) => ImplItem::Verbatim(fallback(err, &func)),
        };
    }
    let errors = match errors.finish() {
        Ok(()) => TokenStream::new(),
        Err(err) => err.to_compile_error(),
    };
    block
        .items
        .extend(in_trait.into_iter().map(ImplItem::Verbatim));
    if companions.is_empty() {
        return quote!(#errors #block);
    }
    if block.trait_.is_none() {
        block
            .items
            .extend(companions.into_iter().map(ImplItem::Verbatim));
        return quote!(#errors #block);
    }
    let (impl_generics, _, where_clause) = kept_generics.split_for_impl();
    let self_ty = &block.self_ty;
    quote! {
        #errors
        #block
        #[allow(private_interfaces)]
        impl #impl_generics #self_ty #where_clause {
            #(#companions)*
        }
    }
}

/// Splits a trait impl's generics into those its self type uses (kept on the inherent impl of
/// the companions) and the others, with every bound or `where` predicate naming one of the
/// others (moved to each companion, where they are constrained by its parameters).
fn split_generics(generics: &syn::Generics, self_ty: &syn::Type) -> (syn::Generics, syn::Generics) {
    let used = idents(&self_ty.to_token_stream());
    let name = |param: &syn::GenericParam| match param {
        syn::GenericParam::Lifetime(lifetime) => lifetime.lifetime.ident.to_string(),
        syn::GenericParam::Type(ty) => ty.ident.to_string(),
        syn::GenericParam::Const(konst) => konst.ident.to_string(),
    };
    let moved_names: HashSet<String> = generics
        .params
        .iter()
        .map(name)
        .filter(|name| !used.contains(name))
        .collect();
    let names_moved = |tokens: TokenStream| idents(&tokens).iter().any(|i| moved_names.contains(i));
    let mut kept = syn::Generics::default();
    let mut moved = syn::Generics::default();
    let mut moved_predicates: Vec<syn::WherePredicate> = Vec::new();
    for param in &generics.params {
        if moved_names.contains(&name(param)) {
            moved.params.push(param.clone());
            continue;
        }
        // A kept parameter's bounds that name a moved one become `where` predicates of the
        // companion; its other bounds stay (the self type may need them).
        let mut param = param.clone();
        match &mut param {
            syn::GenericParam::Type(ty) => {
                let (moving, staying): (Vec<_>, Vec<_>) = std::mem::take(&mut ty.bounds)
                    .into_iter()
                    .partition(|bound| names_moved(bound.to_token_stream()));
                if !moving.is_empty() {
                    let ident = &ty.ident;
                    moved_predicates.push(syn::parse_quote!(#ident: #(#moving)+*));
                }
                ty.bounds = staying.into_iter().collect();
                if ty.bounds.is_empty() {
                    ty.colon_token = None;
                }
            }
            syn::GenericParam::Lifetime(lifetime) => {
                let (moving, staying): (Vec<_>, Vec<_>) = std::mem::take(&mut lifetime.bounds)
                    .into_iter()
                    .partition(|bound| moved_names.contains(&bound.ident.to_string()));
                if !moving.is_empty() {
                    let name = &lifetime.lifetime;
                    moved_predicates.push(syn::parse_quote!(#name: #(#moving)+*));
                }
                lifetime.bounds = staying.into_iter().collect();
                if lifetime.bounds.is_empty() {
                    lifetime.colon_token = None;
                }
            }
            syn::GenericParam::Const(_) => {}
        }
        kept.params.push(param);
    }
    if let Some(where_clause) = &generics.where_clause {
        for predicate in &where_clause.predicates {
            if names_moved(predicate.to_token_stream()) {
                moved_predicates.push(predicate.clone());
            } else {
                kept.make_where_clause().predicates.push(predicate.clone());
            }
        }
    }
    if !moved_predicates.is_empty() {
        moved
            .make_where_clause()
            .predicates
            .extend(moved_predicates);
    }
    (kept, moved)
}

/// Every identifier in `tokens` (lifetimes by their name without the quote).
fn idents(tokens: &TokenStream) -> HashSet<String> {
    let mut found = HashSet::new();
    for token in tokens.clone() {
        match token {
            TokenTree::Ident(ident) => {
                found.insert(ident.to_string());
            }
            TokenTree::Group(group) => found.extend(idents(&group.stream())),
            _ => {}
        }
    }
    found
}

/// The method of a trait impl as its companion in an inherent impl sees it: with the generics
/// the inherent impl could not keep, and `Self::Assoc` spelled `<Self as Trait>::Assoc` (in an
/// inherent impl the bare form is ambiguous).
fn trait_companion(func: &ItemFn, trait_path: &syn::Path, moved: &syn::Generics) -> ItemFn {
    let mut func = func.clone();
    let generics = &mut func.sig.generics;
    // The method's own parameters first, so a turbofish on the call still lines up; lifetimes
    // before the rest, as Rust requires (a stable sort keeps each group's order).
    let mut params: Vec<syn::GenericParam> = generics.params.iter().cloned().collect();
    params.extend(moved.params.iter().cloned());
    params.sort_by_key(|param| !matches!(param, syn::GenericParam::Lifetime(_)));
    generics.params = params.into_iter().collect();
    if let Some(where_clause) = &moved.where_clause {
        generics
            .make_where_clause()
            .predicates
            .extend(where_clause.predicates.iter().cloned());
    }
    let mut qualify = QualifySelf(trait_path);
    syn::visit_mut::VisitMut::visit_signature_mut(&mut qualify, &mut func.sig);
    func
}

/// Rewrites `Self::X...` type paths to `<Self as Trait>::X...`.
struct QualifySelf<'a>(&'a syn::Path);

impl syn::visit_mut::VisitMut for QualifySelf<'_> {
    fn visit_type_path_mut(&mut self, ty: &mut syn::TypePath) {
        if ty.qself.is_none()
            && ty.path.segments.len() > 1
            && ty.path.segments[0].ident == "Self"
            && ty.path.segments[0].arguments.is_none()
        {
            let trait_path = self.0;
            let rest: Vec<_> = ty.path.segments.iter().skip(1).cloned().collect();
            *ty = syn::parse_quote!(<Self as #trait_path>::#(#rest)::*);
        }
        syn::visit_mut::visit_type_path_mut(self, ty);
    }
}

/// `#[locked]` on a trait definition: each method gets a hidden provided companion that answers
/// `is_locked!` with an error (the method takes no lock here), which
/// `#[locked(trait_companions)]` impls override for their `#[locked]` methods. So
/// `is_locked!(s.run(1))` resolves through the trait: for `s: &impl Job`, a generic `S: Job`, or
/// `&dyn Job` (the companion keeps the method's generics and `where` clause, so it is as
/// object-safe as the method), from any crate that sees the trait.
fn trait_definition(args: TokenStream, mut definition: syn::ItemTrait) -> TokenStream {
    let mut errors = Errors::default();
    if !args.is_empty() {
        errors.at(
            args.span(),
            "on a trait, `#[locked]` takes no options: write `#[locked(key = \"...\")]` on the methods of its impls, and `#[locked(trait_companions)]` on those impls",
        );
    }
    let companions: Vec<syn::TraitItem> = definition
        .items
        .iter()
        .filter_map(|item| match item {
            syn::TraitItem::Fn(method) => Some(method),
            _ => None,
        })
        .map(|method| {
            let sig = &method.sig;
            let name = expand::companion_name(&sig.ident);
            let method_name = syn::ext::IdentExt::unraw(&sig.ident).to_string();
            let generics = &sig.generics;
            let where_clause = &generics.where_clause;
            let inputs = sig.inputs.iter().map(|input| match input {
                syn::FnArg::Receiver(_) => quote!(&self),
                syn::FnArg::Typed(typed) => {
                    let ty = &typed.ty;
                    quote!(_: #ty)
                }
            });
            let cfgs = method.attrs.iter().filter(|attr| attr.path().is_ident("cfg"));
            syn::TraitItem::Verbatim(quote! {
                #(#cfgs)*
                #[doc(hidden)]
                #[allow(clippy::too_many_arguments, clippy::needless_pass_by_value)]
                fn #name #generics (#(#inputs),*) -> ::lockwright::__private::LockedCall #where_clause {
                    ::lockwright::__private::LockedCall::none(#method_name)
                }
            })
        })
        .collect();
    definition.items.extend(companions);
    let errors = match errors.finish() {
        Ok(()) => TokenStream::new(),
        Err(err) => err.to_compile_error(),
    };
    quote!(#errors #definition)
}
