//! Parsing the options of `#[locked(...)]` and `#[pooled(...)]`: `name`, `name = value`, comma
//! separated. One grammar serves both; an option of the other attribute is reported with what
//! to write instead (see `Kind::foreign_option`).
//!
//! Parsing only splits the attribute into options and checks the grammar; values are checked by
//! `valid.rs`, which knows the function. Every error is recorded and parsing resumes at the next
//! comma, so one attribute reports all its problems together.

use proc_macro2::{Span, TokenTree};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::{Expr, ExprLit, Ident, Lit, LitStr, Token};

use crate::errors::Errors;
use crate::kind::Kind;

mod kw {
    syn::custom_keyword!(key);
    syn::custom_keyword!(nowait);
    syn::custom_keyword!(timeout);
    syn::custom_keyword!(exp);
    syn::custom_keyword!(on_locked);
    syn::custom_keyword!(on_error);
    syn::custom_keyword!(backend);
    syn::custom_keyword!(py_cachify);
    syn::custom_keyword!(max_size);
    syn::custom_keyword!(on_full);
}

/// One option that may be given at most once (serde's `Attr`): the span of its name and its value.
pub struct Opt<T> {
    name: &'static str,
    value: Option<(Span, T)>,
}

impl<T> Opt<T> {
    fn new(name: &'static str) -> Self {
        Opt { name, value: None }
    }

    /// Sets the value, or records a duplicate error at `span`.
    fn set(&mut self, errors: &mut Errors, span: Span, value: T) {
        if self.value.is_some() {
            errors.at(
                span,
                format_args!("duplicate option `{}`: give it once", self.name),
            );
        } else {
            self.value = Some((span, value));
        }
    }

    /// Takes the value out.
    pub fn take(&mut self) -> Option<(Span, T)> {
        self.value.take()
    }
}

/// The options as written, not yet checked.
pub struct Args {
    /// The attribute they were written in.
    pub kind: Kind,
    pub key: Opt<Expr>,
    /// `#[pooled]`: how many slots the pool has.
    pub max_size: Opt<Expr>,
    /// `nowait` alone is `None`; `nowait = value` is `Some(value)`.
    pub nowait: Opt<Option<Expr>>,
    pub timeout: Opt<Expr>,
    pub exp: Opt<Expr>,
    /// `on_locked` (`#[locked]`) or `on_full` (`#[pooled]`): the value returned on contention.
    pub on_contention: Opt<Expr>,
    /// A closure from `LockError` to the return type, for failures `on_contention` does not cover.
    pub on_error: Opt<Expr>,
    pub backend: Opt<Expr>,
    /// `py_cachify`: the key is py-cachify's decorator key (Python's rendering, `-lock`).
    pub py_cachify: Opt<()>,
    pub krate: Opt<Expr>,
    /// Grammar errors (unknown or duplicate options, missing values).
    pub errors: Errors,
}

impl Args {
    /// The options of a `kind` attribute's `tokens`. Grammar errors are collected in
    /// [`Args::errors`]; `Err` only for tokens that are no option list at all.
    pub fn parse(kind: Kind, tokens: proc_macro2::TokenStream) -> syn::Result<Self> {
        (|input: ParseStream| Args::parse_all(kind, input)).parse2(tokens)
    }

    /// No options at all.
    pub fn empty(kind: Kind) -> Self {
        Args {
            kind,
            key: Opt::new("key"),
            max_size: Opt::new("max_size"),
            nowait: Opt::new("nowait"),
            timeout: Opt::new("timeout"),
            exp: Opt::new("exp"),
            on_contention: Opt::new(kind.on_contention()),
            on_error: Opt::new("on_error"),
            backend: Opt::new("backend"),
            py_cachify: Opt::new("py_cachify"),
            krate: Opt::new("crate"),
            errors: Errors::default(),
        }
    }

    fn parse_option(&mut self, input: ParseStream) -> syn::Result<()> {
        // `#[locked("job-{id}")]`: taken as the key (so its placeholders are still checked),
        // with an error that says how to write it.
        if input.peek(LitStr) {
            let lit: LitStr = input.parse()?;
            let span = lit.span();
            self.errors.at(
                span,
                format_args!(
                    "the key is an option like the others: write `key = {}`",
                    lit.token()
                ),
            );
            let value = Expr::Lit(ExprLit {
                attrs: Vec::new(),
                lit: Lit::Str(lit),
            });
            self.key.set(&mut self.errors, span, value);
            return Ok(());
        }
        let lookahead = input.lookahead1();
        if lookahead.peek(kw::key) {
            let name = input.parse::<kw::key>()?.span;
            let value = value(input, name, "key", "key = \"job-{id}\"")?;
            self.key.set(&mut self.errors, name, value);
        } else if lookahead.peek(kw::nowait) {
            let name = input.parse::<kw::nowait>()?.span;
            let value = if input.peek(Token![=]) {
                Some(value(input, name, "nowait", "nowait = true")?)
            } else {
                None
            };
            self.nowait.set(&mut self.errors, name, value);
        } else if lookahead.peek(kw::timeout) {
            let name = input.parse::<kw::timeout>()?.span;
            let value = value(input, name, "timeout", "timeout = 4")?;
            self.timeout.set(&mut self.errors, name, value);
        } else if lookahead.peek(kw::exp) {
            let name = input.parse::<kw::exp>()?.span;
            let value = value(input, name, "exp", "exp = 2` or `exp = never")?;
            self.exp.set(&mut self.errors, name, value);
        } else if lookahead.peek(kw::max_size) {
            let name = input.parse::<kw::max_size>()?.span;
            let value = value(input, name, "max_size", "max_size = 5")?;
            if self.foreign(name, "max_size") {
                return Ok(());
            }
            self.max_size.set(&mut self.errors, name, value);
        } else if lookahead.peek(kw::on_locked) {
            let name = input.parse::<kw::on_locked>()?.span;
            let value = value(
                input,
                name,
                "on_locked",
                "on_locked = <the value to return when the lock is taken>",
            )?;
            if self.foreign(name, "on_locked") {
                return Ok(());
            }
            self.on_contention.set(&mut self.errors, name, value);
        } else if lookahead.peek(kw::on_full) {
            let name = input.parse::<kw::on_full>()?.span;
            let value = value(
                input,
                name,
                "on_full",
                "on_full = <the value to return when every slot is taken>",
            )?;
            if self.foreign(name, "on_full") {
                return Ok(());
            }
            self.on_contention.set(&mut self.errors, name, value);
        } else if lookahead.peek(kw::on_error) {
            let name = input.parse::<kw::on_error>()?.span;
            let value = value(input, name, "on_error", "on_error = |err| <value>")?;
            self.on_error.set(&mut self.errors, name, value);
        } else if lookahead.peek(kw::backend) {
            let name = input.parse::<kw::backend>()?.span;
            let value = value(input, name, "backend", "backend = MY_BACKEND")?;
            self.backend.set(&mut self.errors, name, value);
        } else if lookahead.peek(kw::py_cachify) {
            let name = input.parse::<kw::py_cachify>()?.span;
            if input.peek(Token![=]) {
                return Err(syn::Error::new(
                    name,
                    "`py_cachify` takes no value: write `py_cachify` alone",
                ));
            }
            if self.foreign(name, "py_cachify") {
                return Ok(());
            }
            self.py_cachify.set(&mut self.errors, name, ());
        } else if lookahead.peek(Token![crate]) {
            let name = input.parse::<Token![crate]>()?.span;
            let value = value(input, name, "crate", "crate = ::lockwright")?;
            self.krate.set(&mut self.errors, name, value);
        } else if input.peek(Ident::peek_any) {
            let unknown = input.call(Ident::parse_any)?;
            return Err(unknown_option(self.kind, &unknown));
        } else {
            return Err(lookahead.error());
        }
        Ok(())
    }

    /// Records an error at `span` if `option` belongs to the other attribute; says whether it did.
    fn foreign(&mut self, span: Span, option: &str) -> bool {
        match self.kind.foreign_option(option) {
            Some(message) => {
                self.errors.at(span, message);
                true
            }
            None => false,
        }
    }
}

/// `= value` after an option name; `name` spans the option's name.
fn value(input: ParseStream, name: Span, option: &str, example: &str) -> syn::Result<Expr> {
    let missing = || syn::Error::new(name, format_args!("`{option}` needs a value: `{example}`"));
    if !input.peek(Token![=]) {
        return Err(missing());
    }
    input.parse::<Token![=]>()?;
    if input.is_empty() || input.peek(Token![,]) {
        return Err(missing());
    }
    input.parse()
}

fn unknown_option(kind: Kind, unknown: &Ident) -> syn::Error {
    let written = unknown.to_string();
    let hint = kind
        .option_names()
        .iter()
        .find(|name| edit_distance(name, &written) <= 2)
        .map(|name| format!(" (did you mean `{name}`?)"))
        .unwrap_or_default();
    syn::Error::new(
        unknown.span(),
        format_args!(
            "unknown option `{written}`{hint}; valid options: {}",
            kind.valid_options()
        ),
    )
}

/// Levenshtein distance, for "did you mean" hints on a handful of short names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != cb))
                .min(row[j] + 1)
                .min(above + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Skips to the next top-level comma (or the end), to resume after an error.
fn skip_to_comma(input: ParseStream) {
    while !input.is_empty() && !input.peek(Token![,]) {
        if input.parse::<TokenTree>().is_err() {
            break;
        }
    }
}

impl Args {
    fn parse_all(kind: Kind, input: ParseStream) -> syn::Result<Self> {
        let mut args = Args::empty(kind);
        while !input.is_empty() {
            if let Err(err) = args.parse_option(input) {
                args.errors.push(err);
                skip_to_comma(input);
            }
            if input.is_empty() {
                break;
            }
            if let Err(err) = input.parse::<Token![,]>() {
                args.errors.push(err);
                skip_to_comma(input);
                let _ = input.parse::<Option<Token![,]>>();
            }
        }
        Ok(args)
    }
}

#[cfg(test)]
mod tests {
    use super::edit_distance;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("timeout", "timeout"), 0);
        assert_eq!(edit_distance("timeout", "timout"), 1);
        assert_eq!(edit_distance("nowait", "no_wait"), 1);
        assert_eq!(edit_distance("exp", "expires"), 4);
    }
}
