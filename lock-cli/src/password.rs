//! A password given apart from the URL (prompted, or from the environment) put into it, where
//! each URL form carries one: the user info of `redis://`, `rediss://`, `redis+cluster://` and
//! `redis+sentinel://` URLs (the master's, for Sentinel), the `pass` query parameter of unix
//! socket URLs. Percent-encoded, so any character works.

use crate::failure::Failure;

/// `url` with `password` in it.
///
/// # Errors
/// A usage error when the URL already holds a password, or has no `://`. The message never
/// shows the URL (it may hold a password in a form this did not recognise).
pub fn into_url(url: &str, password: &str) -> Result<String, Failure> {
    let encoded = percent_encode(password);
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| Failure::usage("the Redis URL has no scheme (redis://, rediss://, ...)"))?;
    if matches!(scheme, "redis+unix" | "unix") {
        if rest.contains("pass=") {
            return Err(already_has_one());
        }
        let joiner = if rest.contains('?') { '&' } else { '?' };
        return Ok(format!("{url}{joiner}pass={encoded}"));
    }
    // The user info ends at the last `@` before the path: as the library reads it.
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        None => Ok(format!("{scheme}://:{encoded}@{rest}")),
        Some(at) if rest[..at].contains(':') => Err(already_has_one()),
        Some(at) => Ok(format!(
            "{scheme}://{}:{encoded}{}",
            &rest[..at],
            &rest[at..]
        )),
    }
}

fn already_has_one() -> Failure {
    Failure::usage(
        "the Redis URL already holds a password; leave it out of the URL to give it with \
         --ask-password or REDISCLI_AUTH",
    )
}

/// Every byte but the URL-unreserved ones as `%XX` (redis-rs decodes the user info and the
/// query this way).
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::into_url;

    #[test]
    fn a_password_goes_where_each_url_form_carries_one() {
        let cases = [
            (
                "redis://127.0.0.1:6379/0",
                "redis://:p%40w@127.0.0.1:6379/0",
            ),
            (
                "redis://alice@127.0.0.1:6379",
                "redis://alice:p%40w@127.0.0.1:6379",
            ),
            (
                "rediss+cluster://h1:1,h2:2",
                "rediss+cluster://:p%40w@h1:1,h2:2",
            ),
            (
                "redis+sentinel://h1:1,h2:2/mymaster",
                "redis+sentinel://:p%40w@h1:1,h2:2/mymaster",
            ),
            (
                "redis+unix:///tmp/r.sock",
                "redis+unix:///tmp/r.sock?pass=p%40w",
            ),
            (
                "unix:///tmp/r.sock?db=1",
                "unix:///tmp/r.sock?db=1&pass=p%40w",
            ),
        ];
        for (url, expected) in cases {
            assert_eq!(into_url(url, "p@w").unwrap(), expected, "{url}");
        }
    }

    #[test]
    fn a_url_that_already_holds_a_password_is_refused_without_showing_it() {
        for url in ["redis://:hunter2@h:1", "redis+unix:///s?pass=hunter2"] {
            let refused = into_url(url, "other").unwrap_err().to_string();
            assert!(refused.contains("already holds a password"), "{refused}");
            assert!(!refused.contains("hunter2"), "{refused}");
        }
    }
}
