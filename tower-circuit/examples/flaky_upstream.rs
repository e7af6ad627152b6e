//! A circuit breaker in front of a real HTTP client, talking to an upstream
//! that goes down and comes back.
//!
//! The example starts a small axum server on a loopback port whose
//! `GET /item` answers `200 ok` while it is healthy and `503` while it is
//! not, then calls it through a `hyper_util` client wrapped in
//! [`Breaker::layer`] (5xx responses and transport errors count as
//! failures). It walks the breaker through its whole cycle:
//!
//! 1. a few healthy calls: the circuit stays **closed**;
//! 2. the upstream starts failing: once half of at least five calls failed,
//!    the circuit **opens**;
//! 3. calls are now rejected at once with `CircuitOpen`, and the server's hit
//!    counter shows they never reached it;
//! 4. the upstream recovers; after the open duration the next call is let
//!    through as a probe (**half-open**), succeeds, and **closes** the circuit.
//!
//! State changes are printed by an `on_state_change` hook, and the breaker's
//! own `tracing` events (warn on open, info on half-open and closed) show up
//! through `tracing_subscriber::fmt`.
//!
//! Run it with:
//!
//! ```text
//! cargo run -p tower-circuit --example flaky_upstream
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_circuit::BoxError;
use tower_circuit::breaker::{Breaker, CircuitOpen, CircuitState, Config, Window};

/// What the test server shares with `main`: a switch to make it fail, and a
/// count of the requests that actually reached it.
#[derive(Debug, Default)]
struct Upstream {
    healthy: AtomicBool,
    hits: AtomicUsize,
}

impl Upstream {
    fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::SeqCst);
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn item(State(upstream): State<Arc<Upstream>>) -> (StatusCode, &'static str) {
    upstream.hits.fetch_add(1, Ordering::SeqCst);
    if upstream.healthy.load(Ordering::SeqCst) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "upstream is down")
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // The breaker logs its transitions through `tracing`; print them.
    tracing_subscriber::fmt().init();

    // --- The flaky upstream -------------------------------------------------
    let upstream = Arc::new(Upstream::default());
    upstream.set_healthy(true);
    let app = Router::new()
        .route("/item", get(item))
        .with_state(upstream.clone());
    // Loopback and an ephemeral port: nothing outside this machine can reach
    // it, and two runs never fight over a port.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    // The server task is dropped with the runtime when `main` returns, so no
    // shutdown dance is needed for an example.
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            eprintln!("server error: {err}");
        }
    });
    let uri = format!("http://{addr}/item");
    println!("upstream listening on {uri}");

    // --- The breaker ----------------------------------------------------------
    // Small numbers so the demo moves quickly: judge the last 10 calls, but
    // only once there are 5 of them, open at a 50 % failure rate, and probe
    // again after half a second.
    let open_duration = Duration::from_millis(500);
    let breaker = Breaker::builder("flaky-upstream")
        .config(
            Config::default()
                .minimum_calls(5)
                .failure_rate_threshold(0.5)
                .window(Window::Count { size: 10 })
                .open_duration(open_duration),
        )
        .on_state_change(|change| {
            let open_for = change
                .open_for
                .map(|d| format!(", open for {} ms", d.as_millis()))
                .unwrap_or_default();
            println!(
                ">>> breaker `{}`: {} -> {} (failure rate {:.0} % over {} calls{open_for})",
                change.name,
                change.from,
                change.to,
                change.failure_rate * 100.0,
                change.calls,
            );
        })
        .build()?;

    // --- The guarded client ---------------------------------------------------
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    // `layer()` counts 5xx answers as failures, not only transport errors: a
    // 503 is an `Ok` response to hyper (`errors_layer()` would miss it).
    let mut service = ServiceBuilder::new().layer(breaker.layer()).service(client);

    let mut n = 0;
    let mut call = async |label: &str| -> Result<(), BoxError> {
        n += 1;
        let request = Request::get(uri.as_str()).body(Full::new(Bytes::new()))?;
        let result = service.ready().await?.call(request).await;
        match result {
            Ok(response) => {
                let status = response.status();
                // Read the body to the end so the connection goes back to the
                // pool for the next call.
                let body = response.into_body().collect().await?.to_bytes();
                println!(
                    "#{n:<2} {label:<10} {status} {:?}",
                    String::from_utf8_lossy(&body)
                );
            }
            Err(err) => match err.downcast_ref::<CircuitOpen>() {
                Some(open) => {
                    let retry_after = open
                        .retry_after()
                        .map_or_else(|| "unknown".to_owned(), |d| format!("{} ms", d.as_millis()));
                    println!(
                        "#{n:<2} {label:<10} rejected fast by `{}` ({}), retry after {retry_after}",
                        open.name(),
                        open.state(),
                    );
                }
                // A transport error (refused connection, reset...) is not
                // fatal for the demo: the breaker counted it as a failure.
                None => println!("#{n:<2} {label:<10} error: {err}"),
            },
        }
        Ok(())
    };

    println!("\n== 1. upstream healthy: calls pass, the circuit stays closed");
    for _ in 0..3 {
        call("healthy").await?;
    }

    println!("\n== 2. upstream failing: call until the breaker opens");
    upstream.set_healthy(false);
    // Bounded, so a bug in the breaker could not turn the demo into a loop.
    for _ in 0..20 {
        if breaker.state() == CircuitState::Open {
            break;
        }
        call("failing").await?;
    }
    if breaker.state() != CircuitState::Open {
        return Err("the breaker never opened".into());
    }

    println!("\n== 3. circuit open: calls fail fast and never reach the server");
    let hits_before = upstream.hits();
    println!("server hits so far: {hits_before}");
    for _ in 0..3 {
        call("open").await?;
    }
    let hits_after = upstream.hits();
    println!(
        "server hits now:    {hits_after} (+{})",
        hits_after - hits_before
    );

    println!("\n== 4. upstream recovers: wait out the open duration, then probe");
    upstream.set_healthy(true);
    // The breaker says how long it stays open; sleeping that long means the
    // next call is let through as a probe.
    let wait = breaker.stats().retry_after.unwrap_or(open_duration);
    println!("sleeping {} ms", wait.as_millis());
    tokio::time::sleep(wait).await;
    // No timer moves the breaker to half-open: this call does, and its
    // success closes the circuit (half_open_max_calls is 1 by default).
    call("probe").await?;
    for _ in 0..2 {
        call("healthy").await?;
    }

    if breaker.state() != CircuitState::Closed {
        return Err("the breaker did not close again".into());
    }
    println!("\n== final metrics\n{:#?}", breaker.stats());
    Ok(())
}
