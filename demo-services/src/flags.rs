//! Value parsers for the command line: a value a flag cannot work with is
//! refused by clap with one line naming the flag, before anything starts,
//! rather than accepted and failing later (a zero timeout that fails every
//! call, a token every service refuses, an `ftp://` dependency).

use std::time::Duration;

use crate::auth;

/// A duration above zero: timeouts, windows and waits of zero would fail
/// or spin on every call.
pub fn positive_duration(text: &str) -> Result<Duration, String> {
    let d = tower_circuit::parse_duration(text)?;
    if d.is_zero() {
        return Err(format!("`{text}` is zero; give a duration above zero"));
    }
    Ok(d)
}

/// A duration of zero (off) or more.
pub fn duration(text: &str) -> Result<Duration, String> {
    tower_circuit::parse_duration(text)
}

/// The longest first retry delay: the backoff is capped at 10 s, so a
/// longer first delay would silently raise the cap.
pub const MAX_RETRY_BASE_DELAY: Duration = Duration::from_secs(10);

/// `--retry-base-delay`: above zero, at most [`MAX_RETRY_BASE_DELAY`].
pub fn retry_base_delay(text: &str) -> Result<Duration, String> {
    at_most(positive_duration(text)?, MAX_RETRY_BASE_DELAY, text)
}

/// `--database-url`: a `postgres://` or `postgresql://` URL (the rest is
/// checked when connecting, which names what is wrong).
pub fn database_url(text: &str) -> Result<String, String> {
    if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        Ok(text.to_owned())
    } else {
        Err("expected a postgres:// URL (SQLite is the default: use --data-dir)".to_owned())
    }
}

/// The longest `--outbox-lease`: a replica that dies while sending holds
/// its records back at most this long.
pub const MAX_OUTBOX_LEASE: Duration = Duration::from_secs(30);

/// `--outbox-lease`: from 1 s to [`MAX_OUTBOX_LEASE`].
pub fn outbox_lease(text: &str) -> Result<Duration, String> {
    let d = at_most(positive_duration(text)?, MAX_OUTBOX_LEASE, text)?;
    if d < Duration::from_secs(1) {
        return Err(format!("`{text}` is below the minimum of 1s"));
    }
    Ok(d)
}

/// `token --ttl`: above zero, at most [`auth::MAX_TOKEN_LIFETIME`], the
/// longest lifetime the services' verifiers accept (a longer token would
/// be refused with a 401 by every service).
pub fn token_ttl(text: &str) -> Result<Duration, String> {
    at_most(positive_duration(text)?, auth::MAX_TOKEN_LIFETIME, text)
        .map_err(|e| format!("{e} (the services refuse tokens living longer)"))
}

fn at_most(d: Duration, max: Duration, text: &str) -> Result<Duration, String> {
    if d > max {
        Err(format!("`{text}` is above the maximum of {max:?}"))
    } else {
        Ok(d)
    }
}

/// `certs --ttl`: from [`MIN_LEAF_TTL`] to [`MAX_LEAF_TTL`].
///
/// [`MIN_LEAF_TTL`]: crate::tls::certs::MIN_LEAF_TTL
/// [`MAX_LEAF_TTL`]: crate::tls::certs::MAX_LEAF_TTL
pub fn cert_ttl(text: &str) -> Result<Duration, String> {
    let ttl = duration(text)?;
    crate::tls::certs::check_ttl(ttl).map_err(|e| e.to_string())?;
    Ok(ttl)
}

/// `certs --trust-domain`: lowercase letters, digits, `.`, `-` and `_`.
pub fn trust_domain(text: &str) -> Result<String, String> {
    crate::tls::certs::check_trust_domain(text).map_err(|e| e.to_string())?;
    Ok(text.to_owned())
}

/// A service name a token can be addressed to: one of the three services
/// (the gateway verifies nothing).
pub fn audience(text: &str) -> Result<String, String> {
    if auth::AUDIENCES.contains(&text) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "unknown audience `{}`; known: {}",
            text.escape_debug(),
            auth::AUDIENCES.join(", ")
        ))
    }
}

/// A dependency's base URL: `http://` or `https://` and a host,
/// optionally a port, nothing after (the client appends paths). Which of
/// the two a service accepts depends on `--tls-dir`, checked when its
/// clients are built.
pub fn service_url(text: &str) -> Result<String, String> {
    let bad = |why: &str| format!("`{}` {why}", text.escape_debug());
    let (scheme, rest) = ["http://", "https://"]
        .into_iter()
        .find_map(|scheme| text.strip_prefix(scheme).map(|rest| (scheme, rest)))
        .ok_or_else(|| bad("is not an http:// or https:// URL"))?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() {
        return Err(bad("has no host"));
    }
    if authority.contains(['/', '?', '#', '@']) || authority.chars().any(char::is_whitespace) {
        return Err(bad("must be http[s]://HOST[:PORT] with nothing after it"));
    }
    text.parse::<http::Uri>()
        .map_err(|e| bad(&format!("is not a valid URL: {e}")))?;
    Ok(format!("{scheme}{authority}"))
}

/// A fraction from 0 to 1 (a fault injection rate).
pub fn fraction(text: &str) -> Result<f64, String> {
    let r: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    if (0.0..=1.0).contains(&r) {
        Ok(r)
    } else {
        Err(format!("{r} is not between 0 and 1"))
    }
}

/// A rate above 0 and at most 1 (a breaker's failure threshold).
pub fn rate(text: &str) -> Result<f64, String> {
    let r: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    if r > 0.0 && r <= 1.0 {
        Ok(r)
    } else {
        Err(format!("{r} is not in (0, 1]"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            service_url("http://127.0.0.1:3000").unwrap(),
            "http://127.0.0.1:3000"
        );
        assert_eq!(service_url("http://users/").unwrap(), "http://users");
        assert_eq!(
            service_url("https://127.0.0.1:3000/").unwrap(),
            "https://127.0.0.1:3000"
        );
        for bad in [
            "ftp://x",
            "http://",
            "https://",
            "http://x/path",
            "https://x?q",
            "x:3000",
            "http://a b",
            "httpsx://a",
        ] {
            assert!(service_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert!(positive_duration("0s").is_err());
        assert!(positive_duration("0ms").is_err());
        assert_eq!(duration("0ms"), Ok(Duration::ZERO));
        assert!(retry_base_delay("11s").is_err());
        assert!(retry_base_delay("10s").is_ok());
        assert!(token_ttl("2h").is_err());
        assert!(token_ttl("1h").is_ok());
    }
}
