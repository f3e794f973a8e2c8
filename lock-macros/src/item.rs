//! What `#[locked]` is applied to: a function (the common case), an `impl` block (to reach the
//! `#[locked]` methods of a trait impl), or something it refuses with a reason.

use proc_macro2::{Span, TokenStream};
use quote::{quote, ToTokens};
use syn::spanned::Spanned;
use syn::{ImplItem, Item, ItemFn, ItemImpl, Visibility};

use crate::args::Args;
use crate::errors::Errors;
use crate::expand;
use crate::valid;

/// `#[locked(...)]` on any item.
pub fn locked(args: TokenStream, item: TokenStream) -> TokenStream {
    match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Fn(func)) => match function(args, &func) {
            Ok((function, opts)) => {
                let companion = expand::companion(&func, &opts, &func.vis);
                quote!(#function #companion)
            }
            Err(err) => fallback(err, &func),
        },
        Ok(Item::Impl(block)) => impl_block(args, block),
        Ok(Item::Verbatim(tokens)) => match syn::parse2::<syn::TraitItemFn>(tokens.clone()) {
            Ok(decl) if decl.default.is_none() => fallback(no_body(&decl), &decl),
            _ => fallback(
                syn::Error::new(
                    Span::call_site(),
                    "`#[locked]` applies to functions and methods",
                ),
                &tokens,
            ),
        },
        Ok(other) => fallback(unsupported(&other), &other),
        // Not an item: a method declaration without a body (`fn f(&self);` in a trait).
        Err(_) => match syn::parse2::<syn::TraitItemFn>(item.clone()) {
            Ok(decl) if decl.default.is_none() => fallback(no_body(&decl), &decl),
            _ => fallback(
                syn::Error::new(
                    Span::call_site(),
                    "`#[locked]` applies to functions and methods",
                ),
                &item,
            ),
        },
    }
}

fn no_body(decl: &syn::TraitItemFn) -> syn::Error {
    syn::Error::new(
        decl.sig.fn_token.span,
        "`#[locked]` needs a function with a body: put it on the trait's implementations (with `#[locked]` on the `impl` block), not on the declaration",
    )
}

/// Parses and checks the options for `func`, then writes the locked function.
fn function(args: TokenStream, func: &ItemFn) -> syn::Result<(TokenStream, valid::Options)> {
    let args: Args = syn::parse2(args)?;
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

fn unsupported(item: &Item) -> syn::Error {
    let (span, what) = match item {
        Item::Struct(item) => (item.struct_token.span, "a struct"),
        Item::Enum(item) => (item.enum_token.span, "an enum"),
        Item::Union(item) => (item.union_token.span, "a union"),
        Item::Trait(item) => (
            item.trait_token.span,
            "a trait: put it on its methods' implementations",
        ),
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
        format_args!("`#[locked]` applies to functions and methods, not to {what}"),
    )
}

/// `#[locked]` on an `impl` block: expands the `#[locked(...)]` methods inside, and puts their
/// companions (see `expand::companion`) in an inherent `impl` of the same type, since a trait impl cannot hold them.
fn impl_block(args: TokenStream, mut block: ItemImpl) -> TokenStream {
    let mut errors = Errors::default();
    if !args.is_empty() {
        errors.at(
            args.span(),
            "on an `impl` block, `#[locked]` takes no options: write `#[locked(key = \"...\")]` on its methods",
        );
    }
    let in_trait = block.trait_.is_some();
    let mut companions = Vec::new();
    for item in &mut block.items {
        let ImplItem::Fn(method) = item else { continue };
        let Some(at) = method.attrs.iter().position(|attr| {
            attr.path()
                .segments
                .last()
                .is_some_and(|s| s.ident == "locked")
        }) else {
            continue;
        };
        let attr = method.attrs.remove(at);
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
        let vis: Visibility = if in_trait {
            syn::parse_quote!(pub(crate))
        } else {
            method.vis.clone()
        };
        *item = match function(args, &func) {
            Ok((tokens, opts)) => {
                companions.push(expand::companion(&func, &opts, &vis));
                ImplItem::Verbatim(tokens)
            }
            Err(err) => ImplItem::Verbatim(fallback(err, &func)),
        };
    }
    let errors = match errors.finish() {
        Ok(()) => TokenStream::new(),
        Err(err) => err.to_compile_error(),
    };
    if companions.is_empty() {
        return quote!(#errors #block);
    }
    if !in_trait {
        block
            .items
            .extend(companions.into_iter().map(ImplItem::Verbatim));
        return quote!(#errors #block);
    }
    let (impl_generics, _, where_clause) = block.generics.split_for_impl();
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
