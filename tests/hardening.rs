//! What a hostile client can do to a service's side effects: grow its
//! metrics, write into its log, read its files.

use integration_tests::Data;
use std::collections::BTreeSet;
use std::time::Duration;

use demo_services::auth::{Keys, USER_SERVICE};
use demo_services::telemetry::escape::is_unsafe;
use http::{Method, StatusCode};
use integration_tests::{Http, TempDir, logs, start_user};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The values of `label` among the samples of `family` in a Prometheus
/// exposition text.
fn label_values(text: &str, family: &str, label: &str) -> BTreeSet<String> {
    let prefix = format!("{family}{{");
    let needle = format!("{label}=\"");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| {
            let start = l.find(&needle)? + needle.len();
            let end = start + l[start..].find('"')?;
            Some(l[start..end].to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_and_paths_do_not_grow_the_metrics() {
    let keys = Keys::ephemeral();
    let data = Data::new().await;
    let (user, _) = start_user(&data, &keys, None).await;
    let http = Http::default();
    let token = keys
        .token("api-gateway", USER_SERVICE, None, Duration::from_secs(60))
        .unwrap();

    for i in 0..150 {
        // A fresh extension method each time, some of them long, on known
        // and unknown paths, with and without a token.
        let name = format!("M{i}{}", "X".repeat(i % 3 * 200));
        let method = Method::from_bytes(name.as_bytes()).unwrap();
        let path = if i % 2 == 0 {
            format!("/users/{i}")
        } else {
            format!("/no/such/{i}/{}", "p".repeat(i))
        };
        let res = http
            .send(method, &format!("{}{path}", user.url()), None, &[], "")
            .await;
        assert!(res.status.is_client_error(), "{}", res.status);
        let res = http
            .send(
                Method::GET,
                &format!("{}/unknown-{i}", user.url()),
                Some(&token),
                &[],
                "",
            )
            .await;
        assert_eq!(res.status, StatusCode::NOT_FOUND);
    }
    // A known route, so the known labels show up beside the others.
    let res = http.get(&format!("{}/users/1", user.url()), &token).await;
    assert_eq!(res.status, StatusCode::OK);

    let res = http
        .send(
            Method::GET,
            &format!("{}/metrics", user.url()),
            None,
            &[],
            "",
        )
        .await;
    let text = String::from_utf8(res.raw.to_vec()).unwrap();
    let methods = label_values(&text, "http_requests_total", "method");
    let routes = label_values(&text, "http_requests_total", "route");
    let known_methods: BTreeSet<String> = [
        "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE", "other",
    ]
    .map(str::to_owned)
    .into();
    let known_routes: BTreeSet<String> =
        ["/users", "/users/{id}", "/health", "/metrics", "unmatched"]
            .map(str::to_owned)
            .into();
    assert!(
        methods.is_subset(&known_methods),
        "method labels outside the known set: {:?}",
        methods
            .difference(&known_methods)
            .take(5)
            .collect::<Vec<_>>()
    );
    assert!(
        routes.is_subset(&known_routes),
        "route labels outside the known set: {:?}",
        routes.difference(&known_routes).take(5).collect::<Vec<_>>()
    );
    assert!(methods.contains("other") && routes.contains("unmatched"));
    assert!(
        text.len() < 64 * 1024,
        "/metrics is {} bytes after 300 hostile requests",
        text.len()
    );
}

/// Sends `head` (a request line and headers) as raw bytes and reads the
/// status line of the answer.
async fn raw_request(addr: std::net::SocketAddr, head: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head).await.unwrap();
    let mut buf = vec![0; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_paths_and_request_ids_reach_the_log_escaped() {
    logs::capture();
    let keys = Keys::ephemeral();
    let data = Data::new().await;
    let (user, _) = start_user(&data, &keys, None).await;

    // hyper takes any UTF-8 in the request target: a C1 control (NEL, a
    // line break to many log readers), a line separator, a bidi override.
    let marker = "log-injection-path-7f3a";
    let head = format!(
        "GET /{marker}/\u{85}2026-01-01T00:00:00Z\u{a0}ERROR\u{a0}forged\u{2028}line\u{202e}txet HTTP/1.1\r\n\
         host: x\r\nconnection: close\r\n\r\n"
    );
    let status = raw_request(user.addr, head.as_bytes()).await;
    assert!(status.contains("404"), "{status}");

    // A request id with a tab inside: not plain text, so replaced.
    let marker_id = "log-injection-id-7f3a";
    let head = format!(
        "GET /users/1 HTTP/1.1\r\nhost: x\r\nx-request-id: {marker_id}\tERROR forged\r\n\
         connection: close\r\n\r\n"
    );
    let status = raw_request(user.addr, head.as_bytes()).await;
    assert!(status.contains("401"), "{status}");

    let lines = logs::lines_with(marker);
    assert!(!lines.is_empty(), "the request was logged");
    for line in &lines {
        assert!(
            !line.chars().any(is_unsafe),
            "a raw control character in the log: {line:?}"
        );
        assert!(line.contains("\\u{85}"), "shown escaped: {line}");
    }
    assert!(
        logs::lines_with(marker_id).is_empty(),
        "an id that is not plain text is replaced, not logged"
    );
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_files_are_private_to_the_owner() {
    use std::os::unix::fs::PermissionsExt;

    let keys = Keys::ephemeral();
    let root = TempDir::new();
    let dir = root.path().join("data");
    let (user, _) = start_user(&Data::sqlite_at(dir.clone()), &keys, None).await;
    // A write, so the WAL surely holds something.
    let token = keys
        .token("api-gateway", USER_SERVICE, None, Duration::from_secs(60))
        .unwrap();
    let res = Http::default()
        .post(
            &format!("{}/users", user.url()),
            &token,
            &serde_json::json!({ "name": "Mode Test", "email": "mode@example.com" }),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED);

    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&dir) & 0o077, 0, "data dir is {:o}", mode(&dir));
    for name in ["users.db", "users.db-wal", "users.db-shm"] {
        let path = dir.join(name);
        assert_eq!(mode(&path) & 0o077, 0, "{name} is {:o}", mode(&path));
    }
    user.stop().await.unwrap();
}
