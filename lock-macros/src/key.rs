//! Key templates: `"job-{id}"`, `{user.id}`, `{self.shard}`, `{r#type}`, `{id:?}`, `{id:>6}`,
//! `{{`, `}}`.
//!
//! Scanned at expansion time like thiserror's format shorthand: every placeholder must name a
//! parameter (checked by `valid.rs`), and the template becomes one `format!` call whose
//! arguments are the named values, evaluated once per call before the body runs.

use std::ops::Range;

use proc_macro2::Span;
use syn::{Ident, LitStr};

use crate::errors::Errors;

/// A parsed template.
pub struct Template {
    pub lit: LitStr,
    pub pieces: Vec<Piece>,
}

pub enum Piece {
    Text(String),
    Hole(Hole),
}

/// One `{root.member.member:spec}` placeholder.
pub struct Hole {
    pub root: String,
    /// Field names or tuple indices after the root.
    pub members: Vec<String>,
    /// The format spec after `:`, without the colon (empty when none).
    pub spec: String,
    /// Where the placeholder (braces included) sits in the literal's value.
    pub range: Range<usize>,
}

impl Hole {
    /// The `lockwright::__private` function that checks and wraps the value for the formatting
    /// trait of the spec (whose type, if any, is its last character).
    pub fn check(&self) -> &'static str {
        match self.spec.chars().last() {
            Some('?') => "key_debug",
            Some('x') => "key_lower_hex",
            Some('X') => "key_upper_hex",
            Some('o') => "key_octal",
            Some('b') => "key_binary",
            Some('e') => "key_lower_exp",
            Some('E') => "key_upper_exp",
            Some('p') => "key_pointer",
            _ => "key_display",
        }
    }

    /// The placeholder as written, for messages.
    pub fn written(&self) -> String {
        let mut text = self.root.clone();
        for member in &self.members {
            text.push('.');
            text.push_str(member);
        }
        format!("{{{text}}}")
    }
}

impl Template {
    /// The span of the bytes `range` of the literal's value, or of the whole literal where the
    /// compiler cannot point inside it (stable Rust, escapes).
    pub fn span_of(&self, range: Range<usize>) -> Span {
        let repr = self.lit.token().to_string();
        let offset = if repr.starts_with('"') && !repr.contains('\\') {
            Some(1)
        } else if repr.starts_with('r') {
            repr.find('"').map(|quote| quote + 1)
        } else {
            None
        };
        offset
            .and_then(|offset| {
                self.lit
                    .token()
                    .subspan(range.start + offset..range.end + offset)
            })
            .unwrap_or_else(|| self.lit.span())
    }

    /// The placeholders.
    pub fn holes(&self) -> impl Iterator<Item = &Hole> {
        self.pieces.iter().filter_map(|piece| match piece {
            Piece::Hole(hole) => Some(hole),
            Piece::Text(_) => None,
        })
    }

    /// The `format!` string: text with braces doubled, each hole as `{}` or `{:spec}`.
    pub fn format_string(&self) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => {
                    out.push_str(&text.replace('{', "{{").replace('}', "}}"));
                }
                Piece::Hole(hole) if hole.spec.is_empty() => out.push_str("{}"),
                Piece::Hole(hole) => {
                    out.push_str("{:");
                    out.push_str(&hole.spec);
                    out.push('}');
                }
            }
        }
        out
    }

    /// The template with `suffix` appended as text.
    pub fn with_suffix(mut self, suffix: &str) -> Self {
        match self.pieces.last_mut() {
            Some(Piece::Text(text)) => text.push_str(suffix),
            _ => self.pieces.push(Piece::Text(suffix.to_owned())),
        }
        self
    }

    /// The key itself when the template has no placeholder.
    pub fn constant(&self) -> Option<String> {
        match self.pieces.as_slice() {
            [] => Some(String::new()),
            [Piece::Text(text)] => Some(text.clone()),
            _ => None,
        }
    }
}

/// Scans `lit`, recording a syntax error for each bad placeholder.
pub fn parse(lit: LitStr, errors: &mut Errors) -> Template {
    let mut template = Template {
        lit,
        pieces: Vec::new(),
    };
    let value = template.lit.value();
    let mut text = String::new();
    let mut chars = value.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|&(_, next)| next) == Some('{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek().map(|&(_, next)| next) == Some('}') => {
                chars.next();
                text.push('}');
            }
            '}' => {
                let span = template.span_of(start..start + 1);
                errors.at(
                    span,
                    "unmatched `}` in the key template: write `}}` for a literal brace",
                );
            }
            '{' => {
                let Some(close) = value[start..].find('}').map(|at| start + at) else {
                    let span = template.span_of(start..value.len());
                    errors.at(
                        span,
                        "unclosed `{` in the key template: close the placeholder, or write `{{` for a literal brace",
                    );
                    break;
                };
                while chars.peek().is_some_and(|&(at, _)| at <= close) {
                    chars.next();
                }
                let range = start..close + 1;
                match parse_hole(&value[start + 1..close], range.clone()) {
                    Ok(hole) => {
                        if !text.is_empty() {
                            template.pieces.push(Piece::Text(std::mem::take(&mut text)));
                        }
                        template.pieces.push(Piece::Hole(hole));
                    }
                    Err(message) => {
                        let span = template.span_of(range);
                        errors.at(span, message);
                    }
                }
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        template.pieces.push(Piece::Text(text));
    }
    template
}

/// Parses the inside of `{...}`.
fn parse_hole(inner: &str, range: Range<usize>) -> Result<Hole, String> {
    let written = format!("{{{inner}}}");
    let (path, spec) = match inner.split_once(':') {
        Some((path, spec)) => (path, spec),
        None => (inner, ""),
    };
    if path.is_empty() {
        return Err(format!(
            "placeholder `{written}` names no parameter: write `{{name}}` with a parameter of the function, e.g. `{{id}}`"
        ));
    }
    if inner.contains('{') {
        return Err(format!(
            "placeholder `{written}` contains `{{`: placeholders do not nest; write `{{{{` for a literal brace"
        ));
    }
    if path.contains('[') {
        return Err(format!(
            "placeholder `{written}`: indexing is not supported in key templates; use a field (`{{job.id}}`) or a parameter holding the value"
        ));
    }
    if spec.contains('$') || spec.contains('*') {
        return Err(format!(
            "placeholder `{written}`: widths and precisions taken from arguments (`$`, `*`) are not supported in key templates; write the number"
        ));
    }
    let mut parts = path.split('.');
    let root = parts.next().unwrap_or_default();
    if root.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "placeholder `{written}` is positional: a key template names parameters, e.g. `{{id}}`"
        ));
    }
    if !is_ident(root) {
        return Err(format!(
            "placeholder `{written}`: `{root}` is not a parameter name"
        ));
    }
    let members: Vec<String> = parts.map(str::to_owned).collect();
    if let Some(bad) = members
        .iter()
        .find(|member| !is_ident(member) && !is_index(member))
    {
        return Err(format!(
            "placeholder `{written}`: `{bad}` is not a field name or tuple index"
        ));
    }
    Ok(Hole {
        root: root.to_owned(),
        members,
        spec: spec.to_owned(),
        range,
    })
}

/// The identifier `text` (a parameter or field name, `r#type` included), at `span`.
pub fn ident(text: &str, span: Span) -> Ident {
    match text.strip_prefix("r#") {
        Some(raw) => Ident::new_raw(raw, span),
        None => Ident::new(text, span),
    }
}

/// A name, or a raw identifier (`r#type`) where the name may be raw.
fn is_ident(text: &str) -> bool {
    match text.strip_prefix("r#") {
        Some(raw) => is_plain_ident(raw) && !matches!(raw, "self" | "Self" | "super" | "crate"),
        None => is_plain_ident(text),
    }
}

fn is_plain_ident(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|first| first == '_' || first.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
        && text != "_"
}

fn is_index(text: &str) -> bool {
    !text.is_empty()
        && text.chars().all(|c| c.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(text: &str) -> (Template, bool) {
        let mut errors = Errors::default();
        let template = parse(LitStr::new(text, Span::call_site()), &mut errors);
        (template, errors.is_empty())
    }

    #[test]
    fn placeholders_become_positional_format_arguments() {
        let (t, ok) = template("job-{id}-{user.name:?}-{{x}}-{n:>6}");
        assert!(ok);
        assert_eq!(t.format_string(), "job-{}-{:?}-{{x}}-{:>6}");
        let holes: Vec<String> = t.holes().map(Hole::written).collect();
        assert_eq!(holes, ["{id}", "{user.name}", "{n}"]);
        assert_eq!(t.holes().nth(1).unwrap().range, 9..22);
    }

    #[test]
    fn text_only_templates_are_constant() {
        let (t, ok) = template("nightly-{{report}}");
        assert!(ok);
        assert_eq!(t.constant().as_deref(), Some("nightly-{report}"));
        assert_eq!(t.format_string(), "nightly-{{report}}");
    }

    #[test]
    fn tuple_indices_and_self_are_accepted() {
        let (t, ok) = template("{self.shard}-{pair.0}");
        assert!(ok);
        assert_eq!(t.holes().next().unwrap().root, "self");
        assert_eq!(t.holes().nth(1).unwrap().members, ["0"]);
    }

    #[test]
    fn raw_identifiers_name_parameters_and_fields() {
        let (t, ok) = template("{r#type}-{r#match.r#ref}");
        assert!(ok);
        let holes: Vec<String> = t.holes().map(Hole::written).collect();
        assert_eq!(holes, ["{r#type}", "{r#match.r#ref}"]);
        assert!(!template("{r#self}").1);
        assert!(!template("{r#}").1);
    }

    #[test]
    fn the_spec_chooses_the_formatting_trait() {
        let (t, ok) = template("{a}{a:>6}{a:?}{a:#x?}{a:#x}{a:08.3e}{a:X}{a:p}");
        assert!(ok);
        let checks: Vec<&str> = t.holes().map(Hole::check).collect();
        assert_eq!(
            checks,
            [
                "key_display",
                "key_display",
                "key_debug",
                "key_debug",
                "key_lower_hex",
                "key_lower_exp",
                "key_upper_hex",
                "key_pointer"
            ]
        );
    }

    #[test]
    fn malformed_placeholders_are_errors() {
        for bad in [
            "{}", "{0}", "{a[0]}", "{a:>w$}", "{a", "a}", "{a.}", "{a.01}", "{ a}", "{a{b}",
        ] {
            assert!(!template(bad).1, "{bad:?} should be rejected");
        }
    }
}
