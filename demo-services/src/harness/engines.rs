//! The real engines some tests run against: PostgreSQL and NATS with
//! JetStream.
//!
//! The project's machines (developers' and CI's) run both on loopback; a
//! user's fresh machine has neither. So a test that needs one asks here
//! first: on a machine without it the test returns early and the run says,
//! once per test binary and past the test harness's output capture, what
//! was skipped and why. Under CI (`CI` set) an unreachable engine fails the
//! test instead, so a broken CI machine cannot pass by skipping.
//!
//! `TEST_DATABASE_URL` and `TEST_NATS_URL` point elsewhere on loopback
//! (defaults: `postgres://postgres@127.0.0.1:5432/test` and
//! `nats://127.0.0.1:4222`).

use std::io::Write;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Once;
use std::time::Duration;

/// The PostgreSQL tests use unless `TEST_DATABASE_URL` says otherwise.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// The NATS server tests use unless `TEST_NATS_URL` says otherwise.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// PostgreSQL's URL, or `None` (and a note) when nothing listens there.
pub fn postgres() -> Option<String> {
    static NOTE: Once = Once::new();
    let url = std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.into());
    reachable("PostgreSQL", "TEST_DATABASE_URL", &url, 5432, &NOTE).then_some(url)
}

/// The NATS server's URL, or `None` (and a note) when nothing listens
/// there.
pub fn nats() -> Option<String> {
    static NOTE: Once = Once::new();
    let url = std::env::var("TEST_NATS_URL").unwrap_or_else(|_| DEFAULT_NATS_URL.into());
    reachable("NATS", "TEST_NATS_URL", &url, 4222, &NOTE).then_some(url)
}

/// Whether a TCP connection to `url`'s host and port opens within a
/// second. Panics under CI when it does not.
fn reachable(engine: &str, var: &str, url: &str, default_port: u16, note: &Once) -> bool {
    let error = match connect(url, default_port) {
        Ok(()) => return true,
        Err(e) => e,
    };
    if std::env::var_os("CI").is_some() {
        panic!("{engine} is required under CI but {url} cannot be reached: {error}");
    }
    note.call_once(|| {
        // Straight to the process's stderr: libtest captures only what
        // the print macros write, and a skip must be seen.
        let _ = writeln!(
            std::io::stderr(),
            "note: skipping the tests that need {engine}: {url} cannot be reached ({error}); \
             start it or set {var}"
        );
    });
    false
}

fn connect(url: &str, default_port: u16) -> Result<(), String> {
    // scheme://[user@]host[:port][/path][?query]
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let with_port = match host_port.rsplit_once(':') {
        Some((_, port)) if port.parse::<u16>().is_ok() => host_port.to_owned(),
        _ => format!("{host_port}:{default_port}"),
    };
    let addrs: Vec<SocketAddr> = with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {with_port}: {e}"))?
        .collect();
    let mut last = format!("{with_port} has no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}
