//! The binary under connection floods and repeated signals, as an attacker
//! or an impatient operator meets it: a descriptor limit of 1,024 with
//! 1,040 silent sockets open, a thousand connections holding large
//! unfinished request heads, and a second SIGTERM during shutdown.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use demo_services::server::serve::MAX_HEAD_SIZE;

const BIN: &str = env!("CARGO_BIN_EXE_demo-services");
const SECRET: &str = "a shared secret for the flood tests, 32+ bytes";

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("demo-flood-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn arg(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A spawned service, killed if the test ends early.
struct Service {
    child: Option<Child>,
    log: mpsc::Receiver<String>,
}

impl Service {
    /// Starts `command` (a shell command line or the binary's arguments)
    /// and waits for its "listening" line; returns it and its address.
    fn start(mut cmd: Command) -> (Service, String) {
        let mut child = cmd
            .env("SERVICE_JWT_SECRET", SECRET)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start demo-services");
        let log = lines(child.stderr.take().unwrap());
        let service = Service {
            child: Some(child),
            log,
        };
        let line = service.wait_for("service listening");
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("addr="))
            .expect("an addr= field")
            .to_owned();
        (service, addr)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Waits (at most 30 s) for a log line containing `needle`.
    fn wait_for(&self, needle: &str) -> String {
        loop {
            let line = self
                .log
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("no log line with {needle:?} within 30 s"));
            if line.contains(needle) {
                return line;
            }
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `within`.
    fn wait_exit(mut self, within: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        rx.recv_timeout(within)
            .unwrap_or_else(|_| panic!("the process did not exit within {within:?}"))
            .expect("wait for the process")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn lines(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn user_service(dir: &TempDir) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["user", "--listen", "127.0.0.1:0", "--data-dir", dir.arg()])
        .env("RUST_LOG", "info");
    cmd
}

/// `GET /health` on a fresh connection: the status line, within `bound`.
fn health(addr: &str, bound: Duration) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(bound)).unwrap();
    write!(
        stream,
        "GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.lines().next().unwrap_or_default().to_owned()
}

/// This process's soft open-file limit.
fn own_fd_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("Max open files"))?;
            let soft = line["Max open files".len()..].split_whitespace().next()?;
            Some(if soft == "unlimited" {
                u64::MAX
            } else {
                soft.parse().ok()?
            })
        })
        .unwrap_or(0)
}

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("a VmRSS line");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Bytes received but not yet read by the server on port `port`, over all
/// its established connections (from /proc/net/tcp).
fn unread_by_server(port: u16) -> u64 {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = u16::from_str_radix(fields.get(1)?.rsplit(':').next()?, 16).ok()?;
            let established = *fields.get(3)? == "01";
            let rx = u64::from_str_radix(fields.get(4)?.rsplit(':').next()?, 16).ok()?;
            (local_port == port && established).then_some(rx)
        })
        .sum()
}

/// Polls `done` every 50 ms until it holds, for at most `within`.
async fn wait_until(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the user service with at most 1,024 descriptors and `args`,
/// opens 1,040 sockets that never send a byte, and then asks a new client's
/// question; returns the service once it was answered.
async fn silent_flood_with_1024_descriptors(name: &str, args: &[&str]) -> Option<Service> {
    const SILENT: usize = 1040;
    if own_fd_limit() < 2 * SILENT as u64 {
        eprintln!("skipped: this process may not open {SILENT} sockets");
        return None;
    }
    let dir = TempDir::new(name);
    let mut cmd = Command::new("sh");
    // The header read timeout stays at its 10 s default: only shedding can
    // make room within the test's bound.
    cmd.args([
        "-c",
        "ulimit -n 1024 && exec \"$0\" \"$@\"",
        BIN,
        "user",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.arg(),
    ])
    .args(args)
    .env("RUST_LOG", "info");
    let (service, addr) = Service::start(cmd);

    let mut silent = Vec::with_capacity(SILENT);
    for _ in 0..SILENT {
        silent.push(TcpStream::connect(&addr).expect("connect a silent socket"));
    }
    let began = tokio::time::Instant::now();
    let status = health(&addr, Duration::from_secs(5));
    let took = began.elapsed();
    eprintln!("{name}: a new client was answered in {took:?} with {SILENT} silent sockets open");
    assert!(status.contains("200"), "answered: {status:?}");
    Some(service)
}

#[tokio::test]
async fn with_1024_descriptors_and_1040_silent_sockets_a_new_client_is_answered() {
    let Some(service) = silent_flood_with_1024_descriptors("fds", &[]).await else {
        return;
    };
    service.wait_for("connection cap reached");
    service.signal("-TERM");
    assert!(service.wait_exit(Duration::from_secs(15)).success());
}

#[tokio::test]
async fn out_of_descriptors_the_oldest_silent_sockets_make_room() {
    // A cap above the descriptor limit: accepting fails before the cap is
    // reached, and each failure sheds the longest-waiting connection.
    let Some(service) =
        silent_flood_with_1024_descriptors("emfile", &["--max-connections", "4096"]).await
    else {
        return;
    };
    service.wait_for("accepting a connection failed");
    service.signal("-TERM");
    assert!(service.wait_exit(Duration::from_secs(15)).success());
}

#[tokio::test]
async fn a_thousand_large_unfinished_heads_do_not_pin_100_mib() {
    const CONNECTIONS: usize = 1000;
    const BOUND_KIB: u64 = 100 * 1024;
    if own_fd_limit() < 3 * CONNECTIONS as u64 {
        eprintln!("skipped: this process may not open {CONNECTIONS} sockets twice");
        return;
    }
    let dir = TempDir::new("rss");
    let (service, addr) = Service::start(user_service(&dir));
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let before = rss_kib(service.pid());

    // The attack as reported: 400 KiB of head that never ends, on each of
    // a thousand connections.
    let head = |size: usize| {
        let mut head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: ".to_vec();
        head.resize(size, b'a');
        head
    };
    let large = head(400 * 1024);
    let mut held = Vec::with_capacity(2 * CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let mut stream = TcpStream::connect(&addr).unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        // The server answers 431 and closes once it has MAX_HEAD_SIZE of it.
        let _ = stream.write_all(&large);
        held.push(stream);
    }
    wait_until(
        Duration::from_secs(30),
        "the server reads what was sent",
        || unread_by_server(port) == 0,
    )
    .await;
    let after_large = rss_kib(service.pid());

    // The worst that fits: just under the limit, held open.
    let under = head(MAX_HEAD_SIZE - 1024);
    for _ in 0..CONNECTIONS {
        let mut stream = TcpStream::connect(&addr).unwrap();
        stream.write_all(&under).unwrap();
        held.push(stream);
    }
    wait_until(
        Duration::from_secs(30),
        "the server reads what was sent",
        || unread_by_server(port) == 0,
    )
    .await;
    let after_under = rss_kib(service.pid());
    eprintln!(
        "server RSS: {before} KiB at start, {after_large} KiB after {CONNECTIONS} heads of 400 KiB, \
         {after_under} KiB with {CONNECTIONS} more holding {} KiB each",
        MAX_HEAD_SIZE / 1024 - 1
    );
    assert!(
        after_large < BOUND_KIB && after_under < BOUND_KIB,
        "RSS {after_large} KiB / {after_under} KiB, bound {BOUND_KIB} KiB"
    );
    drop(held);
}

#[test]
fn a_second_sigterm_during_shutdown_exits_at_once() {
    let dir = TempDir::new("twice");
    let mut cmd = user_service(&dir);
    // Every authenticated request takes a minute, so shutdown has a
    // request in flight to wait for (up to its 10 s grace).
    cmd.args(["--fault-latency", "60s"])
        .env("RUST_LOG", "info,tower_http=debug");
    let (service, addr) = Service::start(cmd);

    let token = Command::new(BIN)
        .args([
            "token",
            "--service",
            "api-gateway",
            "--audience",
            "user-service",
        ])
        .env("SERVICE_JWT_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(token.status.success());
    let token = String::from_utf8(token.stdout).unwrap();
    let mut in_flight = TcpStream::connect(&addr).unwrap();
    write!(
        in_flight,
        "GET /users/1 HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\r\n",
        token.trim()
    )
    .unwrap();
    service.wait_for("started processing request");

    service.signal("-TERM");
    service.wait_for("shutting down");
    service.signal("-TERM");
    service.wait_for("second signal");
    let status = service.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(128 + 15), "{status}");
}
