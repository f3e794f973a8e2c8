//! Key placeholders rendered as Python's `str.format` renders the same value, for
//! `#[locked(py_cachify)]` keys: py-cachify formats its decorator keys with `key.format(...)`, so
//! a lock both sides share needs the same text for the same argument.
//!
//! Implemented only where the rendering is faithful: Python's `True`/`False`, `None` (for
//! `Option`, whose `Some` renders as its value, like a Python argument that is not `None`),
//! integers, strings, and `f64` (Python's `repr`: shortest round trip, `1.0`, `1e+16`, `nan`).
//! Other types fail to compile with a message: `f32` (Python has no single precision: the `f64`
//! Python would be given prints other digits), `char` is taken as a one-letter `str`.

use std::fmt;

use crate::__private::KeyPart;

/// The value of a placeholder of a `#[locked(py_cachify)]` key: it renders as Python's
/// `str.format` would render the same argument.
#[diagnostic::on_unimplemented(
    message = "a `py_cachify` key placeholder's value must render as Python's `str.format` renders it, and `{Self}` has no faithful rendering",
    label = "this placeholder's value is a `{Self}`",
    note = "py_cachify keys take bool, integers, strings, char, f64 and Option of those (None renders `None`); name a field of such a type (`{{name.field}}`), or pass the text py-cachify's key would hold"
)]
pub trait KeyPython {
    /// Writes the value as Python's `format(value)` would.
    fn python_fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

/// Integers, strings and `char`: Rust's `Display` is Python's `str`.
macro_rules! python_as_display {
    ($($ty:ty),*) => {$(
        impl KeyPython for $ty {
            #[inline]
            fn python_fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }
    )*};
}

python_as_display!(
    i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize, str, String, char
);

impl KeyPython for bool {
    fn python_fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if *self { "True" } else { "False" })
    }
}

impl<T: KeyPython> KeyPython for Option<T> {
    fn python_fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Some(value) => value.python_fmt(f),
            None => f.write_str("None"),
        }
    }
}

impl KeyPython for f64 {
    /// Python's `repr(float)`: the shortest text that reads back as the same value (as Rust's
    /// `Debug`, with the same switch to an exponent below 1e-4 and from 1e16), but the exponent
    /// signed and of at least two digits (`1e+16`, `1e-05`), and `nan`.
    fn python_fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_nan() {
            return f.write_str("nan");
        }
        let text = format!("{self:?}");
        match text.split_once('e') {
            None => f.write_str(&text),
            Some((mantissa, exponent)) => {
                let (sign, digits) = match exponent.strip_prefix('-') {
                    Some(digits) => ('-', digits),
                    None => ('+', exponent),
                };
                write!(f, "{mantissa}e{sign}{digits:0>2}")
            }
        }
    }
}

impl<T: KeyPython + ?Sized> KeyPython for &T {
    #[inline]
    fn python_fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).python_fmt(f)
    }
}

impl<T: KeyPython + ?Sized> KeyPython for Box<T> {
    #[inline]
    fn python_fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).python_fmt(f)
    }
}

impl<T: KeyPython + ?Sized> KeyPython for std::sync::Arc<T> {
    #[inline]
    fn python_fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).python_fmt(f)
    }
}

impl KeyPython for std::borrow::Cow<'_, str> {
    #[inline]
    fn python_fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

/// `{name}` in a `#[locked(py_cachify)]` key.
#[inline]
pub fn key_python<T: KeyPython + ?Sized>(value: &T) -> KeyPart<'_, T> {
    KeyPart::new(value, <T as KeyPython>::python_fmt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn python(value: &(impl KeyPython + ?Sized)) -> String {
        format!("{}", key_python(value))
    }

    /// The expected texts are what CPython 3.11 prints for `'{}'.format(value)`.
    #[test]
    fn values_render_as_python_formats_them() {
        assert_eq!(python(&true), "True");
        assert_eq!(python(&false), "False");
        assert_eq!(python(&None::<u32>), "None");
        assert_eq!(python(&Some(7u32)), "7");
        assert_eq!(python(&Some(true)), "True");
        assert_eq!(python(&-42i64), "-42");
        assert_eq!(python("ab c"), "ab c");
        for (value, expected) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-0.0, "-0.0"),
            (2.5, "2.5"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e300, "1.5e+300"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.2345e-100, "1.2345e-100"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
        ] {
            assert_eq!(python(&value), expected, "{value:?}");
        }
    }
}
