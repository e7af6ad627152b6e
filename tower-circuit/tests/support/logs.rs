//! Capturing `tracing` output in tests.
//!
//! One global subscriber per test binary, writing into a buffer that each
//! test installs for its own thread. A scoped `set_default` subscriber can
//! miss events when other test threads register the same callsites first
//! (tracing caches each callsite's interest), so tests that read log lines
//! use this instead. Paused-clock tests run on their test thread, so the
//! buffer sees exactly that test's lines.

use std::cell::RefCell;
use std::io;
use std::sync::{Arc, Mutex, Once};

thread_local! {
    static BUFFER: RefCell<Option<Arc<Mutex<Vec<u8>>>>> = const { RefCell::new(None) };
}

/// Starts capturing this thread's log lines (INFO and above).
pub(crate) fn capture() -> Logs {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        tracing_subscriber::fmt()
            .with_writer(|| ThreadWriter)
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .init();
    });
    let buffer = Arc::new(Mutex::new(Vec::new()));
    BUFFER.with(|b| *b.borrow_mut() = Some(buffer.clone()));
    Logs(buffer)
}

/// The lines captured so far.
pub(crate) struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

struct ThreadWriter;

impl io::Write for ThreadWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        BUFFER.with(|b| {
            if let Some(buffer) = &*b.borrow() {
                buffer.lock().unwrap().extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
