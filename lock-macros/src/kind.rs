//! Which attribute is expanding: `#[locked]` (one holder per key) or `#[pooled]` (at most
//! `max_size` holders per key). Both share the parser, the validator and the expansion; this is
//! where they differ: their names, their options, and what the messages suggest.

/// The attribute being expanded.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Locked,
    Pooled,
}

impl Kind {
    /// The attribute's name, as written: `locked` or `pooled`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Locked => "locked",
            Kind::Pooled => "pooled",
        }
    }

    /// Every option of this attribute, as listed in error messages.
    pub fn valid_options(self) -> &'static str {
        match self {
            Kind::Locked => "`key = \"...\"`, `nowait`, `timeout = <seconds>`, `exp = <seconds> | never`, `on_locked = <value>`, `on_error = |err| <value>`, `backend = <path>`, `py_cachify`, `crate = <path>`",
            Kind::Pooled => "`key = \"...\"`, `max_size = <slots>`, `nowait`, `timeout = <seconds>`, `exp = <seconds> | never`, `on_full = <value>`, `on_error = |err| <value>`, `backend = <path>`, `crate = <path>`",
        }
    }

    /// The option names, for "did you mean" hints.
    pub fn option_names(self) -> &'static [&'static str] {
        match self {
            Kind::Locked => &[
                "key",
                "nowait",
                "timeout",
                "exp",
                "on_locked",
                "on_error",
                "backend",
                "py_cachify",
                "crate",
            ],
            Kind::Pooled => &[
                "key", "max_size", "nowait", "timeout", "exp", "on_full", "on_error", "backend",
                "crate",
            ],
        }
    }

    /// Why `option`, an option of the other attribute, is not one of this one, with what to
    /// write instead; `None` when it is one of this attribute's options.
    pub fn foreign_option(self, option: &str) -> Option<&'static str> {
        match (self, option) {
            (Kind::Pooled, "on_locked") => Some(
                "`on_locked` is not an option of `#[pooled]`: write `on_full = <value>`, the value to return when every slot is taken",
            ),
            (Kind::Pooled, "py_cachify") => Some(
                "`py_cachify` is not an option of `#[pooled]`: it applies to `#[locked]` keys only; a pool's key is its template as written",
            ),
            (Kind::Locked, "on_full") => Some(
                "`on_full` is an option of `#[pooled]`: for `#[locked]` write `on_locked = <value>`, the value to return when the lock is taken",
            ),
            (Kind::Locked, "max_size") => Some(
                "`max_size` is an option of `#[pooled]` (at most N calls at once per key): a `#[locked]` function has one holder per key",
            ),
            _ => None,
        }
    }

    /// The option that gives the value returned on contention: `on_locked` or `on_full`.
    pub fn on_contention(self) -> &'static str {
        match self {
            Kind::Locked => "on_locked",
            Kind::Pooled => "on_full",
        }
    }

    /// An example of the attribute, for messages about a missing key.
    pub fn example(self) -> &'static str {
        match self {
            Kind::Locked => "#[locked(key = \"job-{id}\")]",
            Kind::Pooled => "#[pooled(key = \"user-limit-{user_id}\", max_size = 5)]",
        }
    }

    /// What the key names, for messages: "the lock's" or "the pool's".
    pub fn holder(self) -> &'static str {
        match self {
            Kind::Locked => "lock",
            Kind::Pooled => "pool",
        }
    }
}
