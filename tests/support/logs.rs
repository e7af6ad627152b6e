//! Capturing the log lines of every service in a test binary.
//!
//! One global subscriber writes every line into one buffer; tests find
//! their own lines by a request id of their own, so tests running in
//! parallel do not mix.

use std::io;
use std::sync::{Mutex, Once};

static BUFFER: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// Starts capturing (INFO and above); idempotent.
pub fn capture() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        tracing_subscriber::fmt()
            .with_writer(|| Writer)
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .init();
    });
}

/// The captured lines that contain `needle`.
pub fn lines_with(needle: &str) -> Vec<String> {
    let text =
        String::from_utf8_lossy(&BUFFER.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    text.lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

struct Writer;

impl io::Write for Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        BUFFER
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
