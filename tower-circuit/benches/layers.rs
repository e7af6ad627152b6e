//! What the retry, timeout and deadline layers cost on the success path.
//!
//! ```text
//! cargo bench -p tower-circuit --bench layers
//! ```
//!
//! Each service is built once; the timed loop sends one `GET` (a request
//! that already carries a header, as real ones do) per call, to an inner
//! `service_fn` that answers at once with the request itself, which the
//! loop sends again: no call pays for building a request. Current-thread
//! runtime. Compared:
//! the bare service, `tower::timeout::Timeout` (3 s), our
//! [`RequestTimeout`] (by method), [`WithDeadline`] (a 5 s budget) and
//! [`PropagateDeadline`] inside a deadline (it writes the header), and the
//! recommended client stack with and without its breaker. The allocations
//! per call are printed first.
//!
//! Instruction counts, which stay repeatable on a shared machine: run one
//! case alone at two call counts under callgrind and divide the difference
//! by the difference in calls (see BENCHMARKS.md):
//!
//! ```text
//! LAYERS_ONLY=retry:20000 valgrind --tool=callgrind target/release/deps/layers-<hash>
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;
use http::{Request, Response};
use tokio::runtime::{Builder, Runtime};
use tokio::time::Instant;
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_circuit::breaker::{Breaker, Config};
use tower_circuit::retry::RetryLayer;
use tower_circuit::timeout::{DeadlineLayer, PropagateDeadlineLayer, RequestTimeoutLayer};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocation_count;

fn request() -> Request<()> {
    Request::get("/users/7")
        .header("accept", "application/json")
        .body(())
        .expect("a valid request")
}

/// Answers with the request itself as the body, so the loop can send it
/// again and no call pays for building a request.
fn bare() -> impl Service<Request<()>, Response = Response<Request<()>>, Error = BoxError> + Clone {
    service_fn(|req: Request<()>| async { Ok::<_, BoxError>(Response::new(req)) })
}

async fn run<S>(svc: &mut S, calls: u64)
where
    S: Service<Request<()>, Response = Response<Request<()>>>,
    S::Error: std::fmt::Debug,
{
    let mut req = request();
    for _ in 0..calls {
        let res = svc.ready().await.unwrap().call(black_box(req)).await;
        req = res.unwrap().into_body();
        // The request comes back with the budget header the propagation
        // layer wrote into it; a request entering a client stack has none,
        // and `Retry` would otherwise copy this call's value into the next
        // call's replay (its first clone allocates a shared handle).
        req.headers_mut().remove("x-request-budget-ms");
    }
}

/// A `tower::retry` policy that never retries: the cheapest retry layer.
#[derive(Clone)]
struct NeverRetry;

impl<Req, Res, E> tower::retry::Policy<Req, Res, E> for NeverRetry {
    type Future = std::future::Ready<()>;

    fn retry(&mut self, _req: &mut Req, _result: &mut Result<Res, E>) -> Option<Self::Future> {
        None
    }

    fn clone_request(&mut self, _req: &Req) -> Option<Req> {
        None
    }
}

fn runtime() -> Runtime {
    Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn measure<S>(c: &mut Criterion, rt: &Runtime, name: &str, svc: S)
where
    S: Service<Request<()>, Response = Response<Request<()>>> + Clone,
    S::Error: std::fmt::Debug,
{
    if let Some((only, calls)) = instruction_count_mode() {
        // Nothing but the calls, for `valgrind --tool=callgrind`: the
        // difference between two call counts is what the calls cost.
        if only == name {
            rt.block_on(run(&mut svc.clone(), calls));
        }
        return;
    }
    // Allocations per call, after a warm-up.
    let allocs = rt.block_on(async {
        let mut svc = svc.clone();
        run(&mut svc, 1_000).await;
        let before = allocation_count()?;
        run(&mut svc, 100_000).await;
        Some((allocation_count()? - before) as f64 / 100_000.0)
    });
    println!("allocs/call {name}: {:.2}", allocs.unwrap_or(f64::NAN));
    c.bench_function(&format!("layers/{name}"), |b| {
        b.iter_custom(|iters| {
            let mut svc = svc.clone();
            rt.block_on(async {
                let start = Instant::now();
                run(&mut svc, iters).await;
                start.elapsed()
            })
        })
    });
}

/// `LAYERS_ONLY=<case>:<calls>`: run only that case, `calls` times, with
/// no warm-up, allocation count or criterion (for instruction counts).
fn instruction_count_mode() -> Option<(String, u64)> {
    let spec = std::env::var("LAYERS_ONLY").ok()?;
    let (name, calls) = spec.split_once(':')?;
    Some((name.to_owned(), calls.parse().ok()?))
}

fn layers(c: &mut Criterion) {
    let rt = runtime();
    measure(c, &rt, "bare", bare());
    measure(
        c,
        &rt,
        "tower_retry",
        tower::retry::RetryLayer::new(NeverRetry).layer(bare()),
    );
    let retry = RetryLayer::builder("bench")
        .build()
        .expect("valid settings");
    measure(c, &rt, "retry", retry.layer(bare()));
    let tower_timeout = tower::timeout::TimeoutLayer::new(Duration::from_secs(3)).layer(bare());
    measure(c, &rt, "tower_timeout", tower_timeout);
    measure(
        c,
        &rt,
        "request_timeout",
        RequestTimeoutLayer::by_method().layer(bare()),
    );
    measure(
        c,
        &rt,
        "deadline",
        DeadlineLayer::new(Duration::from_secs(5)).layer(bare()),
    );
    let propagate = ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::from_secs(5)))
        .layer(PropagateDeadlineLayer::new())
        .service(bare());
    measure(c, &rt, "deadline_and_propagate", propagate);
    let stack = ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::from_secs(5)))
        .layer(
            RetryLayer::builder("bench")
                .build()
                .expect("valid settings"),
        )
        .layer(RequestTimeoutLayer::by_method())
        .layer(PropagateDeadlineLayer::new())
        .service(bare());
    measure(c, &rt, "stack_without_breaker", stack);
    // The recommended client stack (see the crate's docs), breaker included.
    let breaker = Breaker::new("bench", Config::default()).expect("valid settings");
    let stack = ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::from_secs(5)))
        .layer(
            RetryLayer::builder("bench")
                .build()
                .expect("valid settings"),
        )
        .layer(breaker.layer())
        .layer(RequestTimeoutLayer::by_method())
        .layer(PropagateDeadlineLayer::new())
        .service(bare());
    measure(c, &rt, "full_stack", stack);
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    layers(&mut c);
    c.final_summary();
}
