//! The `demo-services` binary as a user runs it: `keygen`, `token`, key
//! material across separately started processes, refusing to start without
//! keys, and graceful shutdown on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use demo_services::auth::Keys;

const BIN: &str = env!("CARGO_BIN_EXE_demo-services");
const SECRET: &str = "a shared secret for the cli tests, 32+ bytes";

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("demo-cli-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn demo(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("SERVICE_JWT_SECRET")
        .env("RUST_LOG", "info");
    cmd
}

fn run(mut cmd: impl std::borrow::BorrowMut<Command>) -> Output {
    cmd.borrow_mut().output().expect("run demo-services")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Reads `stream` line by line on a thread, sending each line.
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

/// Waits (at most 30 s) for a line containing `needle`.
fn wait_for(rx: &mpsc::Receiver<String>, needle: &str) -> String {
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no line with {needle:?} within 30 s"));
        if line.contains(needle) {
            return line;
        }
    }
}

/// `addr=127.0.0.1:PORT` in a log line.
fn addr_in(line: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("addr="))
        .expect("an addr= field")
        .to_owned()
}

/// A raw HTTP/1.1 GET: returns the status line and the body.
fn get(addr: &str, path: &str, token: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer.lines().next().unwrap_or_default().to_owned();
    let body = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}

fn kill(child: &mut Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

fn wait_exit(mut child: Child, within: Duration) -> std::process::ExitStatus {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    rx.recv_timeout(within)
        .unwrap_or_else(|_| panic!("the process did not exit within {within:?}"))
        .expect("wait for the process")
}

fn token(args: &[&str], dir: Option<&Path>) -> String {
    let mut all = vec!["token"];
    all.extend_from_slice(args);
    let dir_arg;
    if let Some(dir) = dir {
        dir_arg = dir.display().to_string();
        all.extend(["--keys-dir", &dir_arg]);
    }
    let out = run(demo(&all).env("SERVICE_JWT_SECRET", SECRET));
    assert!(out.status.success(), "token failed: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout.lines().count(),
        1,
        "the token alone on stdout: {stdout:?}"
    );
    stdout.trim().to_owned()
}

#[test]
fn keygen_writes_keys_that_token_and_the_verifier_use() {
    let dir = TempDir::new("keygen");
    let keys = dir.0.join("keys");
    let out = run(demo(&["keygen", "--out", keys.to_str().unwrap()]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    for service in [
        "user-service",
        "order-service",
        "notification-service",
        "api-gateway",
    ] {
        let private = keys.join(format!("{service}.key.pem"));
        assert!(
            std::fs::read_to_string(&private)
                .unwrap()
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&private).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{service}'s private key is private");
        }
        assert!(keys.join(format!("{service}.pub.pem")).exists());
    }

    // A second keygen into the same place refuses, and changes nothing.
    let before = std::fs::read(keys.join("jwks.json")).unwrap();
    let again = run(demo(&["keygen", "--out", keys.to_str().unwrap()]));
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("does not overwrite"));
    assert_eq!(std::fs::read(keys.join("jwks.json")).unwrap(), before);

    // `token` signs with the gateway's key; a user service holding only
    // the public set accepts it, with the gateway's permissions.
    let jwt = token(
        &["--service", "api-gateway", "--audience", "user-service"],
        Some(&keys),
    );
    let verifier = Keys::from_dir(&keys).unwrap().verifier("user-service");
    let caller = verifier.verify(&jwt).expect("a valid token");
    assert_eq!(caller.service, "api-gateway");
    assert!(caller.has("write:orders") && caller.has("read:users"));

    // Explicit permissions and lifetime.
    let jwt = token(
        &[
            "--service",
            "order-service",
            "--audience",
            "user-service",
            "--permissions",
            "read:users",
            "--ttl",
            "30s",
        ],
        Some(&keys),
    );
    let caller = verifier.verify(&jwt).unwrap();
    assert_eq!(caller.permissions, vec!["read:users".to_owned()]);
    let left = caller
        .expires_at
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(
        left <= Duration::from_secs(30) && left > Duration::from_secs(20),
        "{left:?}"
    );
}

#[test]
fn a_service_started_alone_without_keys_refuses_with_a_clear_message() {
    let dir = TempDir::new("nokeys");
    for service in ["user", "order", "notification"] {
        let out = run(demo(&[
            service,
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            dir.0.to_str().unwrap(),
        ]));
        assert!(!out.status.success(), "{service} started without keys");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("SERVICE_JWT_SECRET") && stderr.contains("--keys-dir"),
            "{service}: {stderr}"
        );
    }
    let out = run(demo(&[
        "token",
        "--service",
        "nobody",
        "--audience",
        "user-service",
    ]));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("unknown service"));
}

#[test]
fn a_shared_secret_works_across_separately_started_processes() {
    let dir = TempDir::new("shared");
    let mut user = demo(&[
        "user",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.0.to_str().unwrap(),
    ])
    .env("SERVICE_JWT_SECRET", SECRET)
    .stderr(Stdio::piped())
    .stdout(Stdio::null())
    .spawn()
    .unwrap();
    let log = lines(user.stderr.take().unwrap());
    let addr = addr_in(&wait_for(&log, "user service listening"));

    let jwt = token(
        &["--service", "api-gateway", "--audience", "user-service"],
        None,
    );
    let (status, body) = get(&addr, "/users/1", &jwt);
    assert!(status.contains("200"), "{status}: {body}");
    assert!(body.contains("Ada Lovelace"));

    // A token for another audience is refused.
    let other = token(
        &["--service", "api-gateway", "--audience", "order-service"],
        None,
    );
    let (status, _) = get(&addr, "/users/1", &other);
    assert!(status.contains("401"), "{status}");

    kill(&mut user, "-TERM");
    assert!(wait_exit(user, Duration::from_secs(10)).success());
}

#[test]
fn sigterm_stops_all_three_gracefully() {
    let dir = TempDir::new("sigterm");
    let mut all = demo(&[
        "all",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.0.to_str().unwrap(),
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let banner = lines(all.stdout.take().unwrap());
    let log = lines(all.stderr.take().unwrap());
    wait_for(&log, "ephemeral");
    let order = wait_for(&banner, "order-service");
    let token_line = wait_for(&banner, "TOKEN=");
    let jwt = token_line.trim().trim_start_matches("TOKEN=");
    let addr = order
        .split("http://")
        .nth(1)
        .expect("a URL")
        .trim()
        .to_owned();
    let (status, body) = get(&addr, "/orders?userId=1", jwt);
    assert!(
        status.contains("200"),
        "the banner's token works: {status} {body}"
    );

    kill(&mut all, "-TERM");
    wait_for(&log, "shutting down");
    let status = wait_exit(all, Duration::from_secs(10));
    assert!(status.success(), "{status}");
    assert!(dir.0.join("orders.db").exists() && dir.0.join("users.db").exists());
}

#[test]
fn the_drill_runs_and_tells_the_story() {
    let out = run(demo(&["drill"]));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("breaker open"), "{stdout}");
    assert!(stdout.contains("all were delivered"), "{stdout}");
}

/// Runs `args` and asserts it fails before starting anything, with one
/// line on stderr mentioning each of `needles`.
fn refused(args: &[&str], needles: &[&str]) {
    let out = run(demo(args).env("SERVICE_JWT_SECRET", SECRET));
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{args:?} was accepted");
    assert!(
        out.stdout.is_empty(),
        "{args:?} printed {:?}",
        text(&out.stdout)
    );
    let first = stderr.lines().next().unwrap_or_default();
    for needle in needles {
        assert!(
            first.contains(needle),
            "{args:?}: {first:?} ({needle:?})\n{stderr}"
        );
    }
}

#[test]
fn values_the_services_cannot_work_with_are_refused_with_one_line() {
    let gateway = ["token", "--service", "api-gateway"];
    let token = |more: &[&'static str]| [&gateway[..], more].concat();
    // Every service refuses tokens living longer than an hour.
    refused(
        &token(&["--audience", "user-service", "--ttl", "2h"]),
        &["--ttl", "2h"],
    );
    refused(
        &token(&["--audience", "user-service", "--ttl", "0s"]),
        &["--ttl", "zero"],
    );
    refused(
        &token(&["--audience", "users", "--ttl", "5m"]),
        &["--audience", "unknown audience", "users"],
    );
    refused(
        &token(&["--audience", "api-gateway"]),
        &["--audience", "api-gateway"],
    );
    for (flag, value) in [
        ("--timeout-get", "0s"),
        ("--breaker-open-duration", "0ms"),
        ("--call-deadline", "0s"),
        ("--header-read-timeout", "0s"),
        ("--retry-base-delay", "0ms"),
        ("--retry-base-delay", "11s"),
        ("--user-url", "ftp://x"),
        ("--user-url", "http://"),
        ("--notification-url", "https://notifications"),
        ("--notification-url", "http://host/path"),
    ] {
        refused(
            &["order", "--listen", "127.0.0.1:0", flag, value],
            &[flag, value],
        );
    }
    refused(
        &["all", "--user-url", "ftp://x"],
        &["--user-url", "ftp://x"],
    );
    refused(&["user", "--idle-timeout", "0s"], &["--idle-timeout"]);
    // With --tls-dir the order service calls over mutual TLS only, and
    // without it over plaintext only: a URL of the other kind is refused
    // before anything starts.
    refused(
        &["order", "--listen", "127.0.0.1:0", "--tls-dir", "certs"],
        &["--user-url", "http://127.0.0.1:3000", "https://"],
    );
    refused(
        &[
            "all",
            "--listen",
            "127.0.0.1:0",
            "--tls-dir",
            "certs",
            "--notification-url",
            "http://notifications",
        ],
        &["--notification-url", "http://notifications", "https://"],
    );
    refused(
        &[
            "order",
            "--listen",
            "127.0.0.1:0",
            "--user-url",
            "https://users",
        ],
        &["--user-url", "https://users", "--tls-dir"],
    );
    refused(
        &["all", "--tls-dir", "certs", "--without-layers"],
        &["--tls-dir", "--without-layers"],
    );
    // The certificate is mtls mode's only credential.
    refused(
        &["user", "--service-auth", "mtls"],
        &["--service-auth mtls", "--tls-dir"],
    );
    refused(
        &["user", "--service-auth", "api-key", "--keys-dir", "keys"],
        &["--keys-dir", "--service-auth jwt"],
    );
    refused(
        &["notification", "--api-keys-dir", "api-keys"],
        &["--api-keys-dir", "--service-auth api-key"],
    );

    // The limits themselves are accepted.
    let jwt = token_with(&["--audience", "user-service", "--ttl", "1h"]);
    assert_eq!(jwt.split('.').count(), 3);
}

fn token_with(args: &[&str]) -> String {
    let mut all = vec!["--service", "api-gateway"];
    all.extend_from_slice(args);
    token(&all, None)
}

#[test]
fn a_data_dir_that_cannot_be_used_is_named() {
    let dir = TempDir::new("baddata");
    // A regular file where the data directory should be.
    let file = dir.0.join("not-a-dir");
    std::fs::write(&file, "").unwrap();
    let data = file.join("data");
    for service in ["user", "order", "notification"] {
        let out = run(demo(&[
            service,
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .env("SERVICE_JWT_SECRET", SECRET));
        assert!(!out.status.success(), "{service} started");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(data.to_str().unwrap()),
            "{service}: the error names the directory: {stderr}"
        );
    }
}

#[test]
fn help_shows_each_services_own_default_port() {
    for (service, port, other) in [
        ("user", "127.0.0.1:3000", "3002"),
        ("notification", "127.0.0.1:3002", "3000"),
    ] {
        let out = run(demo(&[service, "--help"]));
        let help = text(&out.stdout);
        let listen = help
            .lines()
            .skip_while(|l| !l.contains("--listen"))
            .take_while(|l| !l.contains("--data-dir"))
            .collect::<Vec<_>>()
            .join(" ");
        assert!(listen.contains(port), "{service}: {listen}");
        assert!(!listen.contains(other), "{service}: {listen}");
    }
}

#[test]
fn reflection_can_be_turned_off_where_the_user_service_runs() {
    // What the flag does is tested against the service (tests/grpc.rs);
    // here, that the commands running the user service take it.
    for service in ["user", "all"] {
        let help = text(&run(demo(&[service, "--help"])).stdout);
        assert!(help.contains("--no-grpc-reflection"), "{service}: {help}");
    }
    for service in ["order", "notification"] {
        let help = text(&run(demo(&[service, "--help"])).stdout);
        assert!(!help.contains("--no-grpc-reflection"), "{service}: {help}");
    }
}

/// A raw HTTP/1.1 POST of JSON: returns the status line, the headers and
/// the body.
fn post(addr: &str, path: &str, token: &str, headers: &str, body: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_default();
    (head.to_owned(), body.to_owned())
}

/// What the banner of one `all` run says to do, done: the order it shows
/// how to create, and a read from the user service with its token.
fn run_the_banner(dir: &Path) -> i64 {
    let mut all = demo(&[
        "all",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.to_str().unwrap(),
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let banner = lines(all.stdout.take().unwrap());
    let user = wait_for(&banner, "user-service ");
    let order = wait_for(&banner, "order-service ");
    let url = |line: &str| {
        line.split("http://")
            .nth(1)
            .expect("a URL")
            .trim()
            .to_owned()
    };
    let (user, order) = (url(&user), url(&order));
    let jwt = wait_for(&banner, "TOKEN=")
        .trim()
        .trim_start_matches("TOKEN=")
        .to_owned();
    let key = wait_for(&banner, "Idempotency-Key:");
    let key = key
        .split("Idempotency-Key:")
        .nth(1)
        .unwrap()
        .trim()
        .trim_end_matches(['\'', '\\', ' '])
        .to_owned();
    let body = wait_for(&banner, "-d '");
    let body = body
        .split("-d '")
        .nth(1)
        .unwrap()
        .trim_end()
        .trim_end_matches('\'');
    let (head, answer) = post(
        &order,
        "/orders",
        &jwt,
        &format!("Idempotency-Key: {key}\r\n"),
        body,
    );
    assert!(head.starts_with("HTTP/1.1 201"), "{head}\n{answer}");
    assert!(!head.contains("idempotent-replayed"), "a new order: {head}");
    let order: serde_json::Value = serde_json::from_str(&answer).unwrap();

    // The ephemeral keys die with the process, so the banner gives the
    // tokens for the other services and says how to mint more.
    let user_token = wait_for(&banner, "USER_TOKEN=");
    let user_token = user_token.trim().trim_start_matches("USER_TOKEN=");
    wait_for(&banner, "keygen --out keys");
    let (status, body) = get(&user, "/users/1", user_token);
    assert!(status.contains("200"), "{status}: {body}");

    kill(&mut all, "-TERM");
    assert!(wait_exit(all, Duration::from_secs(10)).success());
    order["id"].as_i64().unwrap()
}

#[test]
fn the_api_key_banner_shows_a_working_call_and_no_key_reaches_the_log() {
    let dir = TempDir::new("api-key-banner");
    let mut all = demo(&[
        "all",
        "--service-auth",
        "api-key",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.0.to_str().unwrap(),
    ])
    // Debug: every accepted key is logged (by version), so a leak shows.
    .env("RUST_LOG", "debug")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let stderr = all.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut text);
        text
    });
    let banner = lines(all.stdout.take().unwrap());
    let order = wait_for(&banner, "order-service ");
    let order = order
        .split("http://")
        .nth(1)
        .expect("a URL")
        .trim()
        .to_owned();
    let key = wait_for(&banner, "KEY=");
    let key = key.trim().trim_start_matches("KEY=").to_owned();
    assert_eq!(key.len(), 64, "{key}");
    let call = wait_for(&banner, "-H 'X-Service-Name: api-gateway'");
    assert!(call.contains("-H \"X-API-Key: $KEY\""), "{call}");
    let (head, answer) = post(
        &order,
        "/orders",
        "not-a-token",
        &format!("X-Service-Name: api-gateway\r\nX-API-Key: {key}\r\n"),
        r#"{"userId": 1, "items": [{"productId": "p-1", "quantity": 2, "unitPrice": 9.99}]}"#,
    );
    assert!(head.starts_with("HTTP/1.1 201"), "{head}\n{answer}");
    let order: serde_json::Value = serde_json::from_str(&answer).unwrap();
    // The order service called the user service with its own key.
    assert_eq!(order["user"]["source"], "live", "{answer}");

    kill(&mut all, "-TERM");
    assert!(wait_exit(all, Duration::from_secs(10)).success());
    let log = log.join().unwrap();
    assert!(log.contains("API key accepted"), "{log}");
    assert!(!log.contains(&key), "the gateway's key is in the log");
}

#[test]
fn the_banner_creates_a_new_order_on_each_run() {
    let dir = TempDir::new("banner");
    let first = run_the_banner(&dir.0);
    let second = run_the_banner(&dir.0);
    assert_eq!(
        (first, second),
        (1, 2),
        "the second run made an order of its own"
    );
}

/// A free loopback port: bound and released, for a service that must come
/// back on the same port after a restart.
fn free_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// A service started by [`start`]; killed if the test ends without
/// [`stop`]ping it, so a failed assertion leaves no process behind.
struct Service(Option<Child>);

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `service` with `args` and the shared secret; waits (bounded) for
/// it to listen and returns it with its address.
fn start(service: &str, args: &[&str]) -> (Service, String) {
    let mut all = vec![service];
    all.extend_from_slice(args);
    let mut child = demo(&all)
        .env("SERVICE_JWT_SECRET", SECRET)
        .env("RUST_LOG", "info,sqlx=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = lines(child.stderr.take().unwrap());
    let service_guard = Service(Some(child));
    let addr = addr_in(&wait_for(&log, &format!("{service} service listening")));
    // Keep reading so the process never blocks on a full pipe.
    std::thread::spawn(move || while log.recv().is_ok() {});
    (service_guard, addr)
}

fn stop(mut service: Service) {
    let mut child = service.0.take().expect("a running service");
    kill(&mut child, "-TERM");
    assert!(wait_exit(child, Duration::from_secs(10)).success());
}

/// Waits (at most `within`) until `check` holds, looking every 50 ms (on
/// tokio's clock, as the workspace's lints ask).
fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let deadline = tokio::time::Instant::now() + within;
        while !check() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

/// The steps of "Try an outage by hand" in the README, with its flags,
/// and what its comments say each one shows.
#[test]
fn the_outage_walk_through_does_what_it_says() {
    let dir = TempDir::new("walkthrough");
    let data = dir.0.to_str().unwrap();
    let (user_port, note_port) = (free_port(), free_port());
    let (mut users, user_addr) = start("user", &["--data-dir", data, "--listen", &user_port]);
    let (mut notes, _) = start(
        "notification",
        &["--data-dir", data, "--listen", &note_port],
    );
    let user_url = format!("http://{user_addr}");
    let note_url = format!("http://{note_port}");
    let (order_service, addr) = start(
        "order",
        &[
            "--data-dir",
            data,
            "--listen",
            "127.0.0.1:0",
            "--user-url",
            &user_url,
            "--notification-url",
            &note_url,
            "--breaker-minimum-calls",
            "2",
            "--breaker-open-duration",
            "5s",
        ],
    );
    let jwt = token(
        &["--service", "api-gateway", "--audience", "order-service"],
        None,
    );
    let order = |user: u32| -> (String, serde_json::Value) {
        let body = format!(
            r#"{{"userId": {user}, "items": [{{"productId": "p-1", "quantity": 1, "unitPrice": 5}}]}}"#
        );
        let (head, body) = post(&addr, "/orders", &jwt, "", &body);
        let status = head.lines().next().unwrap_or_default().to_owned();
        (status, serde_json::from_str(&body).unwrap_or_default())
    };

    // order 1: "source": "live".
    let (status, json) = order(1);
    assert!(status.contains("201"), "{status} {json}");
    assert_eq!(
        (json["id"].as_i64(), json["user"]["source"].as_str()),
        (Some(1), Some("live"))
    );
    // kill the user service; order 1 again: from the kept copy.
    stop(users);
    let (status, json) = order(1);
    assert!(status.contains("201"), "{status} {json}");
    assert_eq!(
        (json["id"].as_i64(), json["user"]["source"].as_str()),
        (Some(2), Some("cache"))
    );
    // order 2: never seen, breaker open: 503.
    let (status, json) = order(2);
    assert!(status.contains("503"), "{status} {json}");
    assert_eq!(json["error"], "user_service_unavailable");
    // The user service comes back; the README waits out the open breaker
    // (5 s), this waits until /health says it is over.
    (users, _) = start("user", &["--data-dir", data, "--listen", &user_port]);
    eventually(
        Duration::from_secs(15),
        "the breaker lets a probe through",
        || {
            let (_, body) = get(&addr, "/health", "");
            let health: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            health["dependencies"]["user-service"]["retryAfter"]
                .as_f64()
                .is_none_or(|left| left <= 0.0)
        },
    );
    let (status, json) = order(2);
    assert!(status.contains("201"), "{status} {json}");
    assert_eq!(
        (json["id"].as_i64(), json["user"]["source"].as_str()),
        (Some(3), Some("live"))
    );
    // kill the notification service; order 3: 201, queued.
    stop(notes);
    let (status, json) = order(3);
    assert!(status.contains("201"), "{status} {json}");
    assert_eq!(
        (json["id"].as_i64(), json["notification"].as_str()),
        (Some(4), Some("queued"))
    );
    // It comes back; order 4's notification is delivered within the
    // README's 10 s.
    (notes, _) = start(
        "notification",
        &["--data-dir", data, "--listen", &note_port],
    );
    eventually(Duration::from_secs(10), "order 4 delivered", || {
        let (_, body) = get(&addr, "/orders/4", &jwt);
        body.contains(r#""notification":"delivered""#)
    });
    stop(order_service);
    stop(users);
    stop(notes);
}

/// `--without-layers` (the benchmark switch) serves each service's routes
/// alone: no token is needed, and every request is taken for the one caller
/// the service really has, with that caller's own permissions, so the
/// handlers' permission checks still hold.
#[test]
fn without_layers_the_routes_run_alone_for_the_one_stand_in_caller() {
    let data = TempDir::new("bare");
    let dir = data.0.to_str().unwrap();
    let (users, addr) = start(
        "user",
        &[
            "--data-dir",
            dir,
            "--listen",
            &free_port(),
            "--without-layers",
        ],
    );
    let (status, body) = get(&addr, "/users/1", "not-a-token");
    assert!(status.contains("200"), "{status} {body}");
    assert!(body.contains("Ada Lovelace"), "{body}");
    stop(users);

    let (notes, addr) = start(
        "notification",
        &[
            "--data-dir",
            dir,
            "--listen",
            &free_port(),
            "--without-layers",
        ],
    );
    let body = r#"{"userId": 1, "orderId": 7, "channel": "email", "message": "hi"}"#;
    let (head, answer) = post(&addr, "/notifications", "not-a-token", "", body);
    assert!(head.starts_with("HTTP/1.1 202"), "{head} {answer}");
    let (status, body) = get(&addr, "/notifications?orderId=7", "not-a-token");
    assert!(
        status.contains("403"),
        "the order service does not hold read:notifications: {status} {body}"
    );
    stop(notes);
}

#[test]
fn certs_writes_a_ca_and_renews_from_it_in_the_same_trust_domain() {
    let dir = TempDir::new("certs");
    let out_dir = dir.0.join("certs");
    let out_arg = out_dir.to_str().unwrap();
    let out = run(demo(&["certs", "--out", out_arg]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("trust domain demo.local"));
    let pem = std::fs::read_to_string(out_dir.join("user-service.pem")).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    let ca = std::fs::read(out_dir.join("ca.pem")).unwrap();

    // A second plain `certs` refuses to replace the CA.
    let again = run(demo(&["certs", "--out", out_arg]));
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("does not overwrite a CA"));

    // Renewing into another trust domain is refused; renewing is not.
    let other = run(demo(&[
        "certs",
        "--out",
        out_arg,
        "--renew",
        "--trust-domain",
        "other.local",
    ]));
    assert!(!other.status.success());
    assert!(text(&other.stderr).contains("trust domain is demo.local, not other.local"));
    let renewed = run(demo(&["certs", "--out", out_arg, "--renew", "--ttl", "1h"]));
    assert!(renewed.status.success(), "{}", text(&renewed.stderr));
    assert_eq!(std::fs::read(out_dir.join("ca.pem")).unwrap(), ca);
    assert_ne!(
        std::fs::read_to_string(out_dir.join("user-service.pem")).unwrap(),
        pem
    );

    // Flags out of range are refused before anything runs.
    for bad in [&["--ttl", "30s"][..], &["--trust-domain", "Demo.Local"][..]] {
        let mut args = vec!["certs", "--out", out_arg];
        args.extend_from_slice(bad);
        let out = run(demo(&args));
        assert!(!out.status.success(), "{bad:?}");
        assert!(text(&out.stderr).contains("invalid value"), "{bad:?}");
    }
}
