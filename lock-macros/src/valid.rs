//! Checking a `#[locked]` or `#[pooled]` attribute against its function: option values, the key
//! template's placeholders against the parameters, and the shape of the item.
//!
//! Produces [`Options`], from which `expand.rs` writes code without further checks.

use std::time::Duration;

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, FnArg, Ident, ItemFn, Lit, Pat, Path, Signature, Type, UnOp};

use crate::args::Args;
use crate::errors::Errors;
use crate::key::{self, Template};
use crate::kind::Kind;

/// The longest timeout or lease accepted: 365 days, as in lock-core (`MAX_DURATION`).
const MAX_SECONDS: u64 = 365 * 24 * 60 * 60;

/// A `timeout` or `exp` value.
pub enum Seconds {
    /// A literal, checked here (> 0, at most 365 days).
    Literal(Duration),
    /// Any other expression, evaluated as a constant (`const { .. }`: `TIMEOUT`, `2 * SECS`,
    /// `Duration::from_millis(500)`, `Self::LEASE`). Its value is converted by the runtime's
    /// `IntoLockDuration` when the lock is built: an invalid one becomes the handle's
    /// `LockError::InvalidArgument`, which the acquire returns before locking anything.
    Constant(Expr),
}

impl Seconds {
    /// The argument of `Lock::timeout` / `Lock::exp`.
    pub fn to_tokens(&self, krate: &Path) -> TokenStream {
        match self {
            Seconds::Literal(duration) => {
                let (secs, nanos) = (duration.as_secs(), duration.subsec_nanos());
                quote!(#krate::__private::Duration::new(#secs, #nanos))
            }
            Seconds::Constant(expr) => quote_spanned!(expr.span()=> const { #expr }),
        }
    }
}

/// How long a hold lasts.
pub enum Lease {
    Fixed(Seconds),
    Never,
}

/// A pool's `max_size`.
pub enum MaxSize {
    /// A literal, checked here (at least 1, fits a `u32`).
    Literal(u32),
    /// Any other expression, evaluated as a `u32` constant; a zero value becomes the pool
    /// handle's `LockError::InvalidArgument`, returned before any slot is taken.
    Constant(Expr),
}

impl MaxSize {
    /// The `max_size` argument of `Pool::new` / `Pool::with_backend`.
    pub fn to_tokens(&self) -> TokenStream {
        match self {
            MaxSize::Literal(size) => quote!(#size),
            MaxSize::Constant(expr) => quote_spanned!(expr.span()=> const { #expr }),
        }
    }
}

/// Checked options.
pub struct Options {
    /// `#[locked]` or `#[pooled]`.
    pub kind: Kind,
    pub template: Template,
    /// `#[pooled]`: the pool's size (always `Some` for pools, `None` for locks).
    pub max_size: Option<MaxSize>,
    /// `Some` when the generated code must call `.nowait(..)`; `None` keeps the runtime default
    /// (`true`, as in py-cachify).
    pub nowait: Option<bool>,
    pub timeout: Option<Seconds>,
    pub lease: Option<Lease>,
    /// `on_locked` / `on_full`: the span of the option's name, and the value returned on
    /// contention (the lock taken, the pool full, the wait timed out).
    pub on_contention: Option<(Span, Expr)>,
    /// Handles every acquire failure `on_contention` does not: `|err: LockError| -> ReturnType`.
    pub on_error: Option<Expr>,
    pub backend: Option<Expr>,
    /// `py_cachify`: placeholders render as Python's `str.format` would (`KeyPython`), and the
    /// template ends in py-cachify's decorator suffix `-lock`.
    pub py_cachify: bool,
    /// The runtime crate: `::lockwright` unless `crate = ...` says otherwise.
    pub krate: Path,
}

/// A name bound by a parameter pattern.
pub struct Binding {
    pub ident: Ident,
    /// For a binding that is the whole parameter (`x: T`), its type without references (`T` for
    /// `&T` and `&mut T`), when the body can name it (no `impl Trait`).
    pub ty: Option<Type>,
    /// The whole parameter is a reference (`x: &T`): the key reads `*x` as is, so an unsized
    /// `T` (`&(dyn Display + Send)`) needs no coercion.
    pub reference: bool,
}

/// The names a placeholder may use.
pub struct Params {
    /// The span of `self`, for methods.
    pub receiver: Option<Span>,
    pub bindings: Vec<Binding>,
}

impl Params {
    pub fn of(sig: &Signature) -> Params {
        let mut params = Params {
            receiver: sig.receiver().map(|receiver| receiver.self_token.span),
            bindings: Vec::new(),
        };
        for input in &sig.inputs {
            if let FnArg::Typed(typed) = input {
                let first = params.bindings.len();
                collect(&typed.pat, &mut params.bindings);
                if let (Pat::Ident(_), Some(binding)) =
                    (&*typed.pat, params.bindings.get_mut(first))
                {
                    binding.ty = referent(&typed.ty);
                    binding.reference = matches!(&*typed.ty, Type::Reference(_));
                }
            }
        }
        params
    }

    /// The binding called `name` (raw or not: `r#type` and `type` are the same name).
    pub fn find(&self, name: &str) -> Option<&Binding> {
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.bindings
            .iter()
            .find(|binding| binding.ident.unraw() == name)
    }
}

/// `ty` without its references, or `None` when it mentions `impl Trait` (which a body cannot
/// name).
fn referent(ty: &Type) -> Option<Type> {
    fn mentions_impl(tokens: TokenStream) -> bool {
        tokens.into_iter().any(|token| match token {
            TokenTree::Ident(ident) => ident == "impl",
            TokenTree::Group(group) => mentions_impl(group.stream()),
            _ => false,
        })
    }
    match ty {
        Type::Reference(reference) => referent(&reference.elem),
        Type::Paren(paren) => referent(&paren.elem),
        Type::Group(group) => referent(&group.elem),
        Type::ImplTrait(_) | Type::Infer(_) => None,
        ty if mentions_impl(ty.to_token_stream()) => None,
        ty => Some(ty.clone()),
    }
}

fn collect(pat: &Pat, out: &mut Vec<Binding>) {
    match pat {
        Pat::Ident(ident) => {
            out.push(Binding {
                ident: ident.ident.clone(),
                ty: None,
                reference: false,
            });
            if let Some((_, sub)) = &ident.subpat {
                collect(sub, out);
            }
        }
        Pat::Tuple(tuple) => {
            for elem in &tuple.elems {
                collect(elem, out);
            }
        }
        Pat::TupleStruct(tuple) => {
            for elem in &tuple.elems {
                collect(elem, out);
            }
        }
        Pat::Struct(fields) => {
            for field in &fields.fields {
                collect(&field.pat, out);
            }
        }
        Pat::Slice(slice) => {
            for elem in &slice.elems {
                collect(elem, out);
            }
        }
        Pat::Reference(reference) => collect(&reference.pat, out),
        Pat::Paren(paren) => collect(&paren.pat, out),
        Pat::Type(typed) => collect(&typed.pat, out),
        _ => {}
    }
}

/// Items a `kind` attribute cannot wrap, with the reason.
pub fn check_item(kind: Kind, func: &ItemFn, errors: &mut Errors) {
    let sig = &func.sig;
    let name = kind.name();
    if let Some(constness) = &sig.constness {
        errors.at(
            constness.span,
            format_args!(
                "`#[{name}]` cannot be used on a `const fn`: taking a {} happens at run time; remove `const`",
                if kind == Kind::Locked { "lock" } else { "slot" }
            ),
        );
    }
    if let Some(variadic) = &sig.variadic {
        errors.at(
            variadic.span(),
            format_args!("`#[{name}]` cannot be used on a variadic function"),
        );
    }
    // Both would write the function's companion (`is_locked!` / `pool_size!` find it by name).
    let other = match kind {
        Kind::Locked => "pooled",
        Kind::Pooled => "locked",
    };
    if let Some(attr) = func.attrs.iter().find(|attr| {
        attr.path()
            .segments
            .last()
            .is_some_and(|segment| segment.ident == other)
    }) {
        errors.at(
            attr.path().span(),
            format_args!(
                "a function is `#[locked]` or `#[pooled]`, not both: keep one, and take a `{}` handle in the body for the other",
                if kind == Kind::Locked { "Pool" } else { "Lock" }
            ),
        );
    }
}

/// Checks `args` for `func`; `None` when anything is wrong (errors recorded).
pub fn validate(args: Args, func: &ItemFn, errors: &mut Errors) -> Option<Options> {
    let Args {
        kind,
        mut key,
        mut max_size,
        mut nowait,
        mut timeout,
        mut exp,
        mut on_contention,
        mut on_error,
        mut backend,
        mut py_cachify,
        mut krate,
        errors: parse_errors,
    } = args;
    let py_cachify = py_cachify.take().is_some();
    if let Err(err) = parse_errors.finish() {
        errors.push(err);
    }
    check_item(kind, func, errors);
    let params = Params::of(&func.sig);
    let valid_options = kind.valid_options();

    let template = match key.take() {
        None => {
            errors.at(
                Span::call_site(),
                format_args!(
                    "missing `key = \"...\"`: the {}'s key template, e.g. `{}`; valid options: {valid_options}",
                    kind.holder(),
                    kind.example()
                ),
            );
            None
        }
        Some((
            _,
            Expr::Lit(ExprLit {
                lit: Lit::Str(lit), ..
            }),
        )) => {
            let template = key::parse(lit, errors);
            if template.constant().is_some_and(|text| text.is_empty()) {
                errors.at(template.lit.span(), "`key` must not be empty");
            }
            check_placeholders(&template, &params, &func.sig.ident, errors);
            if py_cachify {
                check_python_placeholders(&template, errors);
                Some(template.with_suffix(PY_CACHIFY_SUFFIX))
            } else {
                Some(template)
            }
        }
        Some((_, other)) => {
            errors.at(
                other.span(),
                "`key` must be a string literal: `key = \"job-{id}\"`",
            );
            None
        }
    };

    let nowait_value = match nowait.take() {
        None => None,
        Some((_, None)) => Some(true),
        Some((
            _,
            Some(Expr::Lit(ExprLit {
                lit: Lit::Bool(value),
                ..
            })),
        )) => Some(value.value),
        Some((_, Some(other))) => {
            errors.at(
                other.span(),
                "`nowait` takes `true` or `false` (or write `nowait` alone for `true`)",
            );
            None
        }
    };
    let timeout = timeout
        .take()
        .and_then(|(_, value)| seconds(kind, value, "timeout", &params, errors));
    let lease = exp.take().and_then(|(_, value)| match &value {
        Expr::Path(path) if path.qself.is_none() && path.path.is_ident("never") => {
            Some(Lease::Never)
        }
        Expr::Path(path) if path.qself.is_none() && path.path.is_ident("None") => {
            errors.at(
                value.span(),
                match kind {
                    Kind::Locked => "write `exp = never` for a lock that never expires (py-cachify's `exp=None`)",
                    Kind::Pooled => "write `exp = never` for slots that never expire (py-cachify's `slot_exp=None`)",
                },
            );
            None
        }
        _ => seconds(kind, value, "exp", &params, errors).map(Lease::Fixed),
    });
    // `timeout` alone means "wait up to timeout": without this, py-cachify's default `nowait`
    // would silently ignore it. An explicit `nowait` (the card's `nowait, timeout = 4`) wins.
    let nowait = match (nowait_value, &timeout) {
        (Some(value), _) => Some(value),
        (None, Some(_)) => Some(false),
        (None, None) => None,
    };
    let krate = match krate.take() {
        None => syn::parse_quote!(::lockwright),
        Some((_, Expr::Path(path))) if path.qself.is_none() => path.path,
        Some((
            _,
            Expr::Lit(ExprLit {
                lit: Lit::Str(lit), ..
            }),
        )) => match lit.parse::<Path>() {
            Ok(path) => path,
            Err(_) => {
                errors.at(lit.span(), "`crate` must be a path: `crate = ::lockwright`");
                syn::parse_quote!(::lockwright)
            }
        },
        Some((_, other)) => {
            errors.at(
                other.span(),
                "`crate` must be a path: `crate = ::lockwright`",
            );
            syn::parse_quote!(::lockwright)
        }
    };
    let max_size = match (kind, max_size.take()) {
        (Kind::Locked, _) => None,
        (Kind::Pooled, None) => {
            errors.at(
                Span::call_site(),
                format_args!(
                    "missing `max_size = N`: how many calls may hold a slot of the pool at once, e.g. `{}`; valid options: {valid_options}",
                    kind.example()
                ),
            );
            None
        }
        (Kind::Pooled, Some((_, value))) => max_size_of(value, &params, errors),
    };
    let on_contention = on_contention.take();
    let on_error = on_error.take().map(|(_, value)| value);
    let backend = backend.take().map(|(_, value)| value);

    if !errors.is_empty() {
        return None;
    }
    Some(Options {
        kind,
        template: template?,
        max_size,
        nowait,
        timeout,
        lease,
        on_contention,
        on_error,
        backend,
        py_cachify,
        krate,
    })
}

/// A pool size: a literal from 1 to `u32::MAX`, or a constant expression that does not read the
/// call's arguments (see [`MaxSize::Constant`]).
fn max_size_of(value: Expr, params: &Params, errors: &mut Errors) -> Option<MaxSize> {
    let usage = "`max_size` is a whole number of slots: `max_size = 5`, or a `u32` constant such as `max_size = MAX_SLOTS`";
    match &value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => {
            if !matches!(int.suffix(), "" | "u32") {
                errors.at(
                    int.span(),
                    format_args!("{usage} (without the `{}` suffix)", int.suffix()),
                );
                return None;
            }
            match int.base10_parse::<u32>() {
                Ok(0) => {
                    errors.at(
                        int.span(),
                        "`max_size` must be at least 1: a pool of 0 slots could never be entered",
                    );
                    None
                }
                Ok(size) => Some(MaxSize::Literal(size)),
                Err(_) => {
                    errors.at(
                        int.span(),
                        format_args!(
                            "`max_size` of {} is more than the maximum of {}",
                            int.base10_digits(),
                            u32::MAX
                        ),
                    );
                    None
                }
            }
        }
        Expr::Lit(_) => {
            errors.at(value.span(), usage);
            None
        }
        Expr::Unary(unary)
            if matches!(unary.op, UnOp::Neg(_)) && matches!(&*unary.expr, Expr::Lit(_)) =>
        {
            errors.at(
                value.span(),
                "`max_size` must be at least 1: a pool of 0 slots could never be entered",
            );
            None
        }
        _ => {
            if let Some(argument) = argument_in(value.to_token_stream(), params) {
                errors.at(
                    argument.span(),
                    format_args!(
                        "`max_size` cannot use `{argument}`: every caller of a pool must agree on its size, so it is a literal, a `const` or an expression of constants (`max_size = MAX_SLOTS`); to size a pool per call, take a `Pool` handle in the body: `Pool::new(..)`"
                    ),
                );
                return None;
            }
            Some(MaxSize::Constant(value))
        }
    }
}

/// What py-cachify's `@lock` decorator appends to its formatted key.
const PY_CACHIFY_SUFFIX: &str = "-lock";

/// Under `py_cachify` a placeholder renders as Python's `str.format` would: a Rust format spec
/// (`{id:?}`, `{id:>6}`) has no such rendering.
fn check_python_placeholders(template: &Template, errors: &mut Errors) {
    for hole in template.holes() {
        if !hole.spec.is_empty() {
            errors.at(
                template.span_of(hole.range.clone()),
                format_args!(
                    "`py_cachify` keys render as Python's `str.format` renders them, and Rust's \
                     format spec `:{}` has no faithful rendering: write `{}`",
                    hole.spec,
                    hole.written()
                ),
            );
        }
    }
}

fn check_placeholders(template: &Template, params: &Params, function: &Ident, errors: &mut Errors) {
    for hole in template.holes() {
        let span = template.span_of(hole.range.clone());
        let written = hole.written();
        if hole.root == "self" {
            if params.receiver.is_none() {
                errors.at(
                    span,
                    format_args!(
                        "placeholder `{written}` uses `self`, but `{function}` takes no `self` receiver"
                    ),
                );
            }
            continue;
        }
        match params.find(&hole.root) {
            Some(_) => {}
            None => {
                let mut names: Vec<String> = params
                    .bindings
                    .iter()
                    .map(|b| format!("`{}`", b.ident))
                    .collect();
                if params.receiver.is_some() {
                    names.insert(0, "`self`".to_owned());
                }
                let known = if names.is_empty() {
                    format!("`{function}` has no parameters")
                } else {
                    format!("the parameters of `{function}` are {}", names.join(", "))
                };
                errors.at(
                    span,
                    format_args!("placeholder `{written}` does not name a parameter: {known}"),
                );
            }
        }
    }
}

/// A positive number of seconds, at most 365 days, for a literal; any other expression is a
/// constant checked when the lock is built (see [`Seconds::Constant`]), provided it does not read
/// the call's arguments.
fn seconds(
    kind: Kind,
    value: Expr,
    option: &str,
    params: &Params,
    errors: &mut Errors,
) -> Option<Seconds> {
    let handle = match kind {
        Kind::Locked => "Lock",
        Kind::Pooled => "Pool",
    };
    let constant = if option == "exp" { "LEASE" } else { "TIMEOUT" };
    let usage = format!(
        "`{option}` is a number of seconds or a `Duration`: `{option} = 4`, `{option} = 0.5`, or a constant such as `{option} = {constant}`"
    );
    let zero = format!("`{option}` must be greater than zero");
    let parsed = match &value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => {
            if !matches!(
                int.suffix(),
                "" | "u8"
                    | "u16"
                    | "u32"
                    | "u64"
                    | "u128"
                    | "usize"
                    | "i8"
                    | "i16"
                    | "i32"
                    | "i64"
                    | "i128"
                    | "isize"
            ) {
                errors.at(int.span(), usage);
                return None;
            }
            match int.base10_parse::<u64>() {
                Ok(0) => Err(zero),
                Ok(secs) if secs > MAX_SECONDS => Err(format!(
                    "`{option}` of {secs} seconds is longer than the maximum of 365 days"
                )),
                Ok(secs) => Ok(Duration::from_secs(secs)),
                Err(_) => Err(usage),
            }
        }
        Expr::Lit(ExprLit {
            lit: Lit::Float(float),
            ..
        }) => {
            if !matches!(float.suffix(), "" | "f32" | "f64") {
                errors.at(float.span(), usage);
                return None;
            }
            match float.base10_parse::<f64>() {
                Ok(secs) if secs <= 0.0 => Err(zero),
                Ok(secs) if secs > MAX_SECONDS as f64 => Err(format!(
                    "`{option}` of {secs} seconds is longer than the maximum of 365 days"
                )),
                Ok(secs) if Duration::from_secs_f64(secs).is_zero() => Err(zero),
                Ok(secs) => Ok(Duration::from_secs_f64(secs)),
                Err(_) => Err(usage),
            }
        }
        // A string, a bool, a char...: never a duration.
        Expr::Lit(_) => Err(usage),
        Expr::Unary(unary)
            if matches!(unary.op, UnOp::Neg(_)) && matches!(&*unary.expr, Expr::Lit(_)) =>
        {
            Err(zero)
        }
        _ => {
            if let Some(argument) = argument_in(value.to_token_stream(), params) {
                errors.at(
                    argument.span(),
                    format_args!(
                        "`{option}` cannot use `{argument}`: it is the same for every call, so it is a literal, a `const` or an expression of constants (`{option} = {constant}`, `{option} = 2 * SECS`); to choose it per call, take a `{handle}` handle in the body: `{handle}::new(..).{option}(..)`"
                    ),
                );
                return None;
            }
            return Some(Seconds::Constant(value));
        }
    };
    parsed
        .map(Seconds::Literal)
        .map_err(|message| errors.at(value.span(), message))
        .ok()
}

/// The first `self` or parameter name that `tokens` use as a value: not a field or method name
/// (after `.`), not a path segment (next to `::`).
fn argument_in(tokens: TokenStream, params: &Params) -> Option<Ident> {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let is_colon = |at: usize| matches!(tokens.get(at), Some(TokenTree::Punct(punct)) if punct.as_char() == ':');
    for (at, token) in tokens.iter().enumerate() {
        match token {
            TokenTree::Group(group) => {
                if let Some(found) = argument_in(group.stream(), params) {
                    return Some(found);
                }
            }
            TokenTree::Ident(ident) => {
                let after_dot = at > 0
                    && matches!(&tokens[at - 1], TokenTree::Punct(punct) if punct.as_char() == '.');
                let after_path = at > 1 && is_colon(at - 1) && is_colon(at - 2);
                let before_path = is_colon(at + 1) && is_colon(at + 2);
                let names_argument = ident == "self" || params.find(&ident.to_string()).is_some();
                if names_argument && !after_dot && !after_path && !before_path {
                    return Some(ident.clone());
                }
            }
            TokenTree::Punct(_) | TokenTree::Literal(_) => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(sig: &str) -> Params {
        Params::of(&syn::parse_str::<Signature>(sig).unwrap())
    }

    fn argument(expr: &str, sig: &str) -> Option<String> {
        let tokens: TokenStream = expr.parse().unwrap();
        argument_in(tokens, &params(sig)).map(|ident| ident.to_string())
    }

    #[test]
    fn options_may_not_read_arguments_but_may_name_paths_and_fields() {
        let sig = "fn f(&self, wait: u64, r#type: u8)";
        assert_eq!(argument("wait * 2", sig).as_deref(), Some("wait"));
        assert_eq!(argument("(SECS + wait)", sig).as_deref(), Some("wait"));
        assert_eq!(argument("self.lease", sig).as_deref(), Some("self"));
        assert_eq!(
            argument("Duration::from_secs(r#type)", sig).as_deref(),
            Some("r#type")
        );
        for constant in [
            "TIMEOUT",
            "Self::wait",
            "CONFIG.wait",
            "self::config::WAIT",
            "Duration::from_secs(SECS).saturating_mul(2)",
            "<T as Leased>::LEASE",
        ] {
            assert_eq!(argument(constant, sig), None, "{constant}");
        }
    }
}
