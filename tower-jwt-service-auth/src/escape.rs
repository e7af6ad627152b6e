//! Text from a request (or from a key file) made safe for a log line.
//!
//! A token's `alg`, `kid` or `sub` is whatever the sender wrote: with a
//! newline and a timestamp in it, printed raw, it becomes a second, forged
//! log line. Everything such text reaches (a log field, a rejection's
//! message, which is logged) goes through [`Escaped`].

use std::fmt;

/// The most characters of one value shown; the rest is cut and marked, so
/// one request cannot write kilobytes into the log.
pub(crate) const MAX_SHOWN_CHARS: usize = 64;

/// Displays a string with every control and non-printable character
/// escaped (`\n`, `\u{1b}`, as [`str::escape_debug`] does), at most
/// [`MAX_SHOWN_CHARS`] characters of it, then `…` if it was longer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Escaped<'a>(pub(crate) &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.0.chars();
        for c in chars.by_ref().take(MAX_SHOWN_CHARS) {
            // Quotes stay as they are, so plain text reads plainly; a
            // backslash is doubled, so an escaped newline is told from a
            // sent `\n`.
            if c == '"' || c == '\'' {
                fmt::Write::write_char(f, c)?;
            } else {
                write!(f, "{}", c.escape_debug())?;
            }
        }
        if chars.next().is_some() {
            f.write_str("…")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        let shown = Escaped("HS256\n2026-01-01T00:00:00Z INFO fake\r\u{1b}[31m").to_string();
        assert_eq!(
            shown,
            "HS256\\n2026-01-01T00:00:00Z INFO fake\\r\\u{1b}[31m"
        );
        assert!(!shown.chars().any(char::is_control));
    }

    #[test]
    fn long_text_is_cut() {
        let shown = Escaped(&"a".repeat(1000)).to_string();
        assert_eq!(shown, format!("{}…", "a".repeat(MAX_SHOWN_CHARS)));
        assert_eq!(Escaped("plain \"text\"").to_string(), "plain \"text\"");
    }
}
