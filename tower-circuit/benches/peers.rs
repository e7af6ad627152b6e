//! Our circuit breaker side by side with peer crates, each configured alike.
//!
//! ```text
//! cargo bench -p tower-circuit --bench peers
//! ```
//!
//! Peers (dev-dependencies of this crate only):
//!
//! - `tower-resilience` 0.13 with only its `circuitbreaker` feature, which
//!   brings `tower-resilience-circuitbreaker` 0.13: a tower layer. (That
//!   crate is also published alone as 0.14.0, with the same source.)
//! - `failsafe` 1.3 with its `futures-support` feature: not a tower layer, so
//!   [`Failsafe`] below puts its futures API
//!   (`failsafe::futures::CircuitBreaker::call`) around the inner service's
//!   response future, as a caller would. Two failure policies:
//!   `success_rate_over_time_window` and `consecutive_failures`.
//!
//! Configured alike, as far as each allows:
//!
//! | setting | tower-circuit | tower-resilience | failsafe |
//! | --- | --- | --- | --- |
//! | threshold | failure rate ≥ 50 % | failure rate ≥ 50 % | success rate < 50 % (`success-rate`); 5 failures in a row (`consecutive`) |
//! | minimum calls | 10 | 10, but see below | 10 requests in the window (`success-rate`); none (`consecutive`) |
//! | window | 10 s in 10 buckets (`tower-circuit`); last 100 calls (`tower-circuit-count`) | count, 100 calls | 10 s (`success-rate`: a moving average with a 10 s time constant and a 10 s request counter in 5 slices); none (`consecutive`) |
//! | open for | 30 s | 30 s | 30 s (constant backoff) |
//! | half-open | 1 probe | 1 probe | every call passes while half-open (no setting) |
//!
//! What could not be matched:
//!
//! - `tower-resilience`'s count window is not a sliding window: it counts
//!   every call since the last state change, and it only judges once it
//!   holds `sliding_window_size` calls, so with a size of 100 its minimum of
//!   10 calls has no effect (100 failures in a row open it; our breaker opens
//!   after 10). Its time window (`SlidingWindowType::TimeBased`, the nearest
//!   to our default) keeps one record per call in a `VecDeque` and scans all
//!   of them on every call, so its cost grows with the calls in the last
//!   10 s; it is left out of the timed groups, and the figures printed before
//!   them show how it grows.
//! - `failsafe`'s success-rate policy cannot open until one whole window
//!   (10 s) has passed since it was built or last closed, and its rate is an
//!   exponential moving average rather than a count. Its consecutive policy
//!   has no rate and no minimum; 5 failures in a row is the fewest failures
//!   that can open ours (5 of 10 calls).
//! - `failsafe` wraps a future that already exists, so the adapter calls the
//!   inner service even when the circuit is open (the future is dropped
//!   unpolled); `service_fn` makes that free here, a real client may not.
//!
//! Groups (each service built once, outside the timed loop; the timed loop
//! does `ready().await` and `call(i).await`, as in `benches/breaker.rs`; the
//! inner service is a `service_fn` that answers at once):
//!
//! - `peers/closed/<impl>`: nanoseconds per successful call on a
//!   current-thread runtime.
//! - `peers/open/<impl>`: nanoseconds per rejected call. `tower-circuit` is
//!   opened with [`Breaker::force_open`]; `tower-circuit-tripped` and the
//!   peers are tripped by failures before the timed loop. The open group's
//!   breakers stay open for an hour instead of 30 s, so that a long run
//!   never reaches half-open; the length only sets the deadline a rejection
//!   compares the clock with (ours when tripped, the peers always), so it
//!   does not change the cost.
//! - `peers/throughput/<impl>/<tasks>`: aggregate calls per second with 1, 2
//!   and 8 tasks sharing one (cloned) service on a two-worker runtime.
//!
//! Printed before the groups: heap allocations per call on the closed and
//! open paths, how many failures each needed to open, and the growth of
//! `tower-resilience`'s time window.

use std::task::{Context, Poll};
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode};
use failsafe::futures::CircuitBreaker as _;
use failsafe::{FailurePolicy, StateMachine, backoff, failure_policy};
use tokio::runtime::Runtime;
use tokio::time::Instant;
use tower::{Layer, Service, service_fn};
use tower_circuit::BoxError;
use tower_circuit::breaker::{Breaker, CircuitOpen, Config, Window};
use tower_resilience::circuitbreaker::{
    CircuitBreakerError, CircuitBreakerHandle, CircuitBreakerLayer, CircuitState, SlidingWindowType,
};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
#[path = "support/harness.rs"]
mod harness;
use harness::{
    ALLOC_CALLS, ALLOC_WARM_UP_CALLS, BenchService, allocs_per_call, bench_calls, bench_shared,
    call, current_thread, run, two_workers,
};

/// The name every breaker gets (tower-resilience clones its name into
/// every event it builds, so an empty name would hide a cost).
const NAME: &str = "bench";

/// Failure rate at or above which the rate-based breakers open.
const FAILURE_RATE: f64 = 0.5;

/// Calls a window must hold before its rate counts.
const MINIMUM_CALLS: u32 = 10;

/// The time window: ours in 10 buckets, failsafe's success rate over it.
const TIME_WINDOW: Duration = Duration::from_secs(10);

/// The count window: ours and tower-resilience's.
const COUNT_WINDOW: u32 = 100;

/// failsafe's consecutive policy: the fewest failures that open ours.
const CONSECUTIVE_FAILURES: u32 = 5;

/// How long a tripped breaker stays open, in the closed and throughput
/// groups.
const OPEN_FOR: Duration = Duration::from_secs(30);

/// How long the open group's breakers stay open: long enough that no run
/// reaches half-open.
const OPEN_GROUP_OPEN_FOR: Duration = Duration::from_secs(3600);

/// Failures fed to a breaker before giving up on tripping it.
const MAX_TRIP_FAILURES: u64 = 1_000;

/// Calls each task of the throughput group makes per criterion iteration.
const CALLS_PER_TASK: u64 = 1_000;

/// Calls in tower-resilience's time window at which its cost is printed.
const TIME_WINDOW_FILL: [u64; 3] = [1_000, 10_000, 50_000];

/// Calls timed at each of those fills.
const TIME_WINDOW_TIMED_CALLS: u64 = 1_000;

/// The inner service: answers its request at once.
fn bare() -> impl BenchService<Error = BoxError> {
    service_fn(|x: u64| async move { Ok::<_, BoxError>(x) })
}

/// An inner service that always fails, for tripping breakers.
fn failing() -> impl BenchService<Error = BoxError> {
    service_fn(|_: u64| async move { Err::<u64, BoxError>("down".into()) })
}

// --- tower-circuit -------------------------------------------------------

/// Our breaker: 50 %, at least 10 calls, `window`, open for `open_for`.
fn our_breaker(window: Window, open_for: Duration) -> Breaker {
    let config = Config::default()
        .failure_rate_threshold(FAILURE_RATE)
        .minimum_calls(MINIMUM_CALLS)
        .window(window)
        .open_duration(open_for);
    Breaker::new(NAME, config).expect("valid config")
}

/// The default window: 10 s in 10 buckets.
fn time_window() -> Window {
    Window::Time {
        duration: TIME_WINDOW,
        buckets: 10,
    }
}

fn count_window() -> Window {
    Window::Count { size: COUNT_WINDOW }
}

fn ours(window: Window) -> impl BenchService<Error = BoxError> {
    our_breaker(window, OPEN_FOR).errors_layer().layer(bare())
}

/// Ours, opened by hand.
fn ours_forced_open() -> impl BenchService<Error = BoxError> {
    let breaker = our_breaker(time_window(), OPEN_GROUP_OPEN_FOR);
    breaker.force_open();
    breaker.errors_layer().layer(bare())
}

/// Ours, opened by failures; returns the service and the failures it took.
fn ours_tripped(rt: &Runtime) -> (impl BenchService<Error = BoxError>, u64) {
    let breaker = our_breaker(time_window(), OPEN_GROUP_OPEN_FOR);
    let mut trip = breaker.errors_layer().layer(failing());
    let failures = rt.block_on(feed_failures(&mut trip, is_our_rejection));
    (breaker.errors_layer().layer(bare()), failures)
}

fn is_our_rejection(err: &BoxError) -> bool {
    err.is::<CircuitOpen>()
}

// --- tower-resilience ----------------------------------------------------

/// tower-resilience's layer: 50 %, a count window of 100 (its default;
/// see the module docs for why not its time window), at least 10 calls, open
/// for `open_for`, one half-open probe. `build_with_handle`, so that every
/// service the layer makes shares one circuit (`build` gives each service it
/// wraps a circuit of its own; clones share it either way).
fn resilience_layer(open_for: Duration) -> (CircuitBreakerLayer, CircuitBreakerHandle) {
    CircuitBreakerLayer::builder()
        .name(NAME)
        .failure_rate_threshold(FAILURE_RATE)
        .sliding_window_type(SlidingWindowType::CountBased)
        .sliding_window_size(COUNT_WINDOW as usize)
        .minimum_number_of_calls(MINIMUM_CALLS as usize)
        .wait_duration_in_open(open_for)
        .permitted_calls_in_half_open(1)
        .build_with_handle()
        .expect("valid config")
}

fn resilience() -> impl BenchService<Error = CircuitBreakerError<BoxError>> {
    resilience_layer(OPEN_FOR).0.layer(bare())
}

/// tower-resilience, opened by failures through a service sharing its
/// circuit; returns the service and the failures it took.
fn resilience_tripped(
    rt: &Runtime,
) -> (
    impl BenchService<Error = CircuitBreakerError<BoxError>>,
    u64,
) {
    let (layer, handle) = resilience_layer(OPEN_GROUP_OPEN_FOR);
    let mut trip = layer.layer(failing());
    let failures = rt.block_on(feed_failures(&mut trip, is_resilience_rejection));
    assert_eq!(handle.state(), CircuitState::Open);
    (layer.layer(bare()), failures)
}

fn is_resilience_rejection(err: &CircuitBreakerError<BoxError>) -> bool {
    err.is_circuit_open()
}

/// The time window, for the printed growth figures only.
fn resilience_time_window() -> impl BenchService<Error = CircuitBreakerError<BoxError>> {
    CircuitBreakerLayer::builder()
        .name(NAME)
        .failure_rate_threshold(FAILURE_RATE)
        .sliding_window_type(SlidingWindowType::TimeBased)
        .sliding_window_duration(TIME_WINDOW)
        .minimum_number_of_calls(MINIMUM_CALLS as usize)
        .wait_duration_in_open(OPEN_FOR)
        .permitted_calls_in_half_open(1)
        .build()
        .expect("valid config")
        .layer(bare())
}

// --- failsafe ------------------------------------------------------------

/// failsafe is not a tower layer: this adapter hands the inner service's
/// response future to `failsafe::futures::CircuitBreaker::call`, which
/// asks the state machine on its first poll and records the outcome.
struct Failsafe<S, P> {
    inner: S,
    breaker: StateMachine<P, ()>,
}

impl<S: Clone, P> Clone for Failsafe<S, P> {
    fn clone(&self) -> Self {
        Failsafe {
            inner: self.inner.clone(),
            breaker: self.breaker.clone(),
        }
    }
}

impl<S, P> Service<u64> for Failsafe<S, P>
where
    S: Service<u64>,
    P: FailurePolicy + Send + Sync,
{
    type Response = S::Response;
    type Error = failsafe::Error<S::Error>;
    type Future = failsafe::futures::ResponseFuture<S::Future, P, (), failsafe::Any>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(failsafe::Error::Inner)
    }

    fn call(&mut self, req: u64) -> Self::Future {
        self.breaker.call(self.inner.call(req))
    }
}

/// Success rate over a 10 s window: opens when the rate drops below 50 %
/// with at least 10 requests in the window, stays open `open_for`.
fn failsafe_success_rate_breaker(open_for: Duration) -> StateMachine<impl FailurePolicy, ()> {
    let policy = failure_policy::success_rate_over_time_window(
        1.0 - FAILURE_RATE,
        MINIMUM_CALLS,
        TIME_WINDOW,
        backoff::constant(open_for),
    );
    failsafe::Config::new().failure_policy(policy).build()
}

/// Five failures in a row, open `open_for`.
fn failsafe_consecutive_breaker(open_for: Duration) -> StateMachine<impl FailurePolicy, ()> {
    let policy =
        failure_policy::consecutive_failures(CONSECUTIVE_FAILURES, backoff::constant(open_for));
    failsafe::Config::new().failure_policy(policy).build()
}

fn failsafe_success_rate() -> impl BenchService<Error = failsafe::Error<BoxError>> {
    Failsafe {
        inner: bare(),
        breaker: failsafe_success_rate_breaker(OPEN_FOR),
    }
}

fn failsafe_consecutive() -> impl BenchService<Error = failsafe::Error<BoxError>> {
    Failsafe {
        inner: bare(),
        breaker: failsafe_consecutive_breaker(OPEN_FOR),
    }
}

/// failsafe's success-rate breaker, opened by failures. Its policy refuses
/// to open before a whole window (10 s) has passed since it was built, so
/// the failures are fed on failsafe's own mock clock
/// (`failsafe::clock::freeze`, hidden from its docs but public, what its own
/// tests use) moved one window ahead; the open deadline is then an hour
/// past that mock time, which the real clock does not reach during a run.
fn failsafe_success_rate_tripped(
    rt: &Runtime,
) -> (impl BenchService<Error = failsafe::Error<BoxError>>, u64) {
    let breaker = failsafe_success_rate_breaker(OPEN_GROUP_OPEN_FOR);
    let mut trip = Failsafe {
        inner: failing(),
        breaker: breaker.clone(),
    };
    let failures = failsafe::clock::freeze(|clock| {
        clock.advance(TIME_WINDOW);
        rt.block_on(feed_failures(&mut trip, is_failsafe_rejection))
    });
    (
        Failsafe {
            inner: bare(),
            breaker,
        },
        failures,
    )
}

fn failsafe_consecutive_tripped(
    rt: &Runtime,
) -> (impl BenchService<Error = failsafe::Error<BoxError>>, u64) {
    let breaker = failsafe_consecutive_breaker(OPEN_GROUP_OPEN_FOR);
    let mut trip = Failsafe {
        inner: failing(),
        breaker: breaker.clone(),
    };
    let failures = rt.block_on(feed_failures(&mut trip, is_failsafe_rejection));
    (
        Failsafe {
            inner: bare(),
            breaker,
        },
        failures,
    )
}

fn is_failsafe_rejection(err: &failsafe::Error<BoxError>) -> bool {
    matches!(err, failsafe::Error::Rejected)
}

// --- driving the services ------------------------------------------------

/// Calls `svc` (whose inner service fails) until a call is rejected;
/// returns the failures it took. Panics if it never opens.
async fn feed_failures<S: BenchService>(svc: &mut S, is_rejection: fn(&S::Error) -> bool) -> u64 {
    for failures in 0..=MAX_TRIP_FAILURES {
        match call(svc, failures).await {
            Ok(_) => panic!("the failing service answered"),
            Err(err) if is_rejection(&err) => return failures,
            Err(_) => {}
        }
    }
    panic!("{MAX_TRIP_FAILURES} failures did not open the breaker");
}

/// Checks, outside any timed loop, that `svc` rejects its calls.
fn assert_rejects<S: BenchService>(rt: &Runtime, svc: &mut S, is_rejection: fn(&S::Error) -> bool) {
    let result = rt.block_on(call(svc, 0));
    assert!(
        result.is_err_and(|e| is_rejection(&e)),
        "the breaker is not open"
    );
}

// --- criterion groups ----------------------------------------------------

fn closed(c: &mut Criterion) {
    let rt = current_thread();
    let mut group = c.benchmark_group("peers/closed");
    bench_calls(&mut group, &rt, "bare", bare());
    bench_calls(&mut group, &rt, "tower-circuit", ours(time_window()));
    bench_calls(&mut group, &rt, "tower-circuit-count", ours(count_window()));
    bench_calls(&mut group, &rt, "tower-resilience", resilience());
    bench_calls(
        &mut group,
        &rt,
        "failsafe-success-rate",
        failsafe_success_rate(),
    );
    bench_calls(
        &mut group,
        &rt,
        "failsafe-consecutive",
        failsafe_consecutive(),
    );
    group.finish();
}

/// Benches the rejections of `svc`, checking before and after that it
/// rejects.
fn bench_open<S: BenchService>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    name: &str,
    mut svc: S,
    is_rejection: fn(&S::Error) -> bool,
) {
    assert_rejects(rt, &mut svc, is_rejection);
    bench_calls(group, rt, name, svc.clone());
    assert_rejects(rt, &mut svc, is_rejection);
}

fn open(c: &mut Criterion) {
    let rt = current_thread();
    let mut group = c.benchmark_group("peers/open");
    bench_open(
        &mut group,
        &rt,
        "tower-circuit",
        ours_forced_open(),
        is_our_rejection,
    );
    let (svc, _) = ours_tripped(&rt);
    bench_open(
        &mut group,
        &rt,
        "tower-circuit-tripped",
        svc,
        is_our_rejection,
    );
    let (svc, _) = resilience_tripped(&rt);
    bench_open(
        &mut group,
        &rt,
        "tower-resilience",
        svc,
        is_resilience_rejection,
    );
    let (svc, _) = failsafe_success_rate_tripped(&rt);
    bench_open(
        &mut group,
        &rt,
        "failsafe-success-rate",
        svc,
        is_failsafe_rejection,
    );
    let (svc, _) = failsafe_consecutive_tripped(&rt);
    bench_open(
        &mut group,
        &rt,
        "failsafe-consecutive",
        svc,
        is_failsafe_rejection,
    );
    group.finish();
}

fn throughput(c: &mut Criterion) {
    let rt = two_workers();
    let mut group = c.benchmark_group("peers/throughput");
    // One iteration is thousands of calls, so a flat plan: the same number
    // of iterations in each sample rather than 1, 2, ..., 100 of them.
    group.sampling_mode(SamplingMode::Flat);
    bench_shared(&mut group, &rt, "bare", bare(), CALLS_PER_TASK);
    bench_shared(
        &mut group,
        &rt,
        "tower-circuit",
        ours(time_window()),
        CALLS_PER_TASK,
    );
    bench_shared(
        &mut group,
        &rt,
        "tower-circuit-count",
        ours(count_window()),
        CALLS_PER_TASK,
    );
    bench_shared(
        &mut group,
        &rt,
        "tower-resilience",
        resilience(),
        CALLS_PER_TASK,
    );
    bench_shared(
        &mut group,
        &rt,
        "failsafe-success-rate",
        failsafe_success_rate(),
        CALLS_PER_TASK,
    );
    bench_shared(
        &mut group,
        &rt,
        "failsafe-consecutive",
        failsafe_consecutive(),
        CALLS_PER_TASK,
    );
    group.finish();
}

// --- printed figures -----------------------------------------------------

/// One row of the printed table: allocations per call closed and open
/// (`None`: not measured for this row), and the failures it took to open
/// (`None`: opened by hand, or no open path).
struct Row {
    name: &'static str,
    closed: Option<Option<f64>>,
    open: Option<Option<f64>>,
    failures: Option<u64>,
}

fn cell(figure: Option<Option<f64>>) -> String {
    match figure {
        None => "-".to_owned(),
        Some(None) => "n/a".to_owned(),
        Some(Some(allocs)) => format!("{allocs:.2}"),
    }
}

fn print_allocations() {
    let rt = current_thread();
    let (ours_tripped_svc, ours_failures) = ours_tripped(&rt);
    let (resilience_open, resilience_failures) = resilience_tripped(&rt);
    let (success_rate_open, success_rate_failures) = failsafe_success_rate_tripped(&rt);
    let (consecutive_open, consecutive_failures) = failsafe_consecutive_tripped(&rt);
    let rows = [
        Row {
            name: "bare",
            closed: Some(allocs_per_call(&rt, bare())),
            open: None,
            failures: None,
        },
        Row {
            name: "tower-circuit (forced open)",
            closed: Some(allocs_per_call(&rt, ours(time_window()))),
            open: Some(allocs_per_call(&rt, ours_forced_open())),
            failures: None,
        },
        Row {
            name: "tower-circuit-tripped",
            closed: None,
            open: Some(allocs_per_call(&rt, ours_tripped_svc)),
            failures: Some(ours_failures),
        },
        Row {
            name: "tower-circuit-count",
            closed: Some(allocs_per_call(&rt, ours(count_window()))),
            open: None,
            failures: None,
        },
        Row {
            name: "tower-resilience",
            closed: Some(allocs_per_call(&rt, resilience())),
            open: Some(allocs_per_call(&rt, resilience_open)),
            failures: Some(resilience_failures),
        },
        Row {
            name: "failsafe-success-rate",
            closed: Some(allocs_per_call(&rt, failsafe_success_rate())),
            open: Some(allocs_per_call(&rt, success_rate_open)),
            failures: Some(success_rate_failures),
        },
        Row {
            name: "failsafe-consecutive",
            closed: Some(allocs_per_call(&rt, failsafe_consecutive())),
            open: Some(allocs_per_call(&rt, consecutive_open)),
            failures: Some(consecutive_failures),
        },
    ];
    println!(
        "heap allocations per call ({ALLOC_CALLS} calls after {ALLOC_WARM_UP_CALLS} warm-up calls)"
    );
    println!(
        "{:<28} {:>8} {:>8} {:>17}",
        "impl", "closed", "open", "failures to open"
    );
    for row in rows {
        let failures = row
            .failures
            .map_or_else(|| "-".to_owned(), |n| n.to_string());
        println!(
            "{:<28} {:>8} {:>8} {failures:>17}",
            row.name,
            cell(row.closed),
            cell(row.open),
        );
    }
    println!();
}

/// tower-resilience's time window scans every record of the last 10 s on
/// each call: prints the cost per call as the window fills.
fn print_resilience_time_window() {
    let rt = current_thread();
    let mut svc = resilience_time_window();
    let mut figures = Vec::new();
    rt.block_on(async {
        let mut made = 0;
        for fill in TIME_WINDOW_FILL {
            run(&mut svc, fill - made).await;
            let start = Instant::now();
            run(&mut svc, TIME_WINDOW_TIMED_CALLS).await;
            let elapsed = start.elapsed();
            made = fill + TIME_WINDOW_TIMED_CALLS;
            figures.push(format!(
                "{fill} calls: {:.0} ns",
                elapsed.as_nanos() as f64 / TIME_WINDOW_TIMED_CALLS as f64
            ));
        }
    });
    println!(
        "tower-resilience time window (10 s), ns per closed call with this many calls in the window: {}",
        figures.join(", ")
    );
    println!();
}

/// `criterion_main!` with the printed figures first. (`criterion_group!`
/// would define an undocumented `pub fn`, which the workspace lints flag.)
fn main() {
    print_allocations();
    print_resilience_time_window();
    let mut criterion = Criterion::default().configure_from_args();
    closed(&mut criterion);
    open(&mut criterion);
    throughput(&mut criterion);
    criterion.final_summary();
}
