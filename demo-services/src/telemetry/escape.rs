//! Text from outside written into log lines safely.
//!
//! A log line is one line: a value that carries a line break, a terminal
//! escape sequence or a bidirectional override could forge lines or hide
//! text when someone reads the log. Values a request can influence (paths,
//! error texts that quote an answer, panic messages) are written through
//! [`Escaped`], or with `?` (`Debug`), which escapes them the same way.

use std::fmt::{self, Write};

/// Shows a value's `Display` text with every control character, line or
/// paragraph separator and bidirectional formatting character escaped
/// (`\n`, `\u{1b}`, `\u{202e}`), the rest unchanged:
/// `tracing::warn!(error = %Escaped(&e), "...")`.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<T>(pub T);

impl<T: fmt::Display> fmt::Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(EscapeWriter(f), "{}", self.0)
    }
}

/// Whether `c` must not reach a log line as itself.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
        )
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

struct EscapeWriter<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl Write for EscapeWriter<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Runs of safe text go out in one piece; only unsafe characters are
        // written one by one.
        let mut rest = s;
        while let Some(at) = rest.find(is_unsafe) {
            let (safe, tail) = rest.split_at(at);
            self.0.write_str(safe)?;
            let mut chars = tail.chars();
            if let Some(c) = chars.next() {
                match c {
                    '\n' => self.0.write_str("\\n")?,
                    '\r' => self.0.write_str("\\r")?,
                    '\t' => self.0.write_str("\\t")?,
                    c => write!(self.0, "\\u{{{:x}}}", u32::from(c))?,
                }
            }
            rest = chars.as_str();
        }
        self.0.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_could_forge_or_hide_a_line() {
        let text = "a\nb\r\tc\u{1b}[31md\u{202e}e\u{2028}f\u{85}g \\ h é";
        assert_eq!(
            Escaped(text).to_string(),
            "a\\nb\\r\\tc\\u{1b}[31md\\u{202e}e\\u{2028}f\\u{85}g \\ h é"
        );
        assert_eq!(Escaped("plain text").to_string(), "plain text");
    }
}
