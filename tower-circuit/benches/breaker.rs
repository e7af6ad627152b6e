//! What a circuit breaker costs per call.
//!
//! Run with:
//!
//! ```text
//! cargo bench -p tower-circuit --bench breaker
//! ```
//!
//! Each service is built once, outside the timed loop; the timed loop only
//! does `ready().await` and `call(i).await` on it. The inner service is a
//! `service_fn` that answers at once, so the figures are the breaker's own
//! overhead.
//!
//! - **allocations** (printed before the criterion groups): heap
//!   allocations per call for the bare service, the count window, the time
//!   window and the open path. Counting them needs a counting
//!   `#[global_allocator]` wrapping `System`, the one `unsafe` in the
//!   workspace (the workspace lint is `deny`, so this file can allow it;
//!   the library itself keeps `#![forbid(unsafe_code)]`).
//! - `closed_path`: nanoseconds per call on a current-thread runtime, closed
//!   breaker: `bare` (the inner service alone), `count_window` (last 100
//!   calls) and `time_window` (the default, 10 s in 10 buckets). The
//!   difference to `bare` is what the breaker adds to a successful call.
//! - `open_path`: nanoseconds per rejected call, each an
//!   `Err(CircuitOpen)`: `forced_open` (after [`Breaker::force_open`]) and
//!   `tripped` (opened by a failure, so every rejection also reads the clock
//!   for its `retry_after`).
//! - **instructions** (`BREAKER_PROFILE=<service>` under callgrind; see
//!   `profile`): one service's calls and nothing else, the repeatable
//!   figure on a shared machine.
//! - `contention`: aggregate calls per second on a two-worker multi-thread
//!   runtime, with 1, 2 and 8 tasks each calling its own clone of one
//!   service, so the tasks share one breaker: `bare`, `count_window` and
//!   `time_window`. With two workers, 2 tasks should get close to twice the
//!   throughput of 1 unless the breaker's shared state serializes them.

use std::time::Duration;

use criterion::Criterion;
use tokio::runtime::Runtime;
use tower::{Layer, service_fn};
use tower_circuit::BoxError;
use tower_circuit::breaker::{Breaker, CircuitOpen, Config, Window};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
#[path = "support/harness.rs"]
mod harness;
use harness::{
    BenchService, allocs_per_call, bench_calls, bench_shared, call, current_thread, two_workers,
};

/// Calls each task of the `contention` group makes per criterion iteration.
const CALLS_PER_TASK: u64 = 10_000;

/// The inner service: answers its request at once.
fn bare() -> impl BenchService<Error = BoxError> {
    service_fn(|x: u64| async move { Ok::<_, BoxError>(x) })
}

/// A breaker over the last 100 calls.
fn count_breaker() -> Breaker {
    let config = Config::default().window(Window::Count { size: 100 });
    Breaker::new("bench-count", config).expect("valid config")
}

/// A breaker with the default window: 10 s in 10 buckets.
fn time_breaker() -> Breaker {
    Breaker::new("bench-time", Config::default()).expect("valid config")
}

/// `bare()` guarded by `breaker`.
fn guarded(breaker: &Breaker) -> impl BenchService<Error = BoxError> + use<> {
    breaker.errors_layer().layer(bare())
}

/// Checks that `svc` rejects calls, outside any timed loop.
fn assert_rejects<S: BenchService<Error = BoxError>>(rt: &Runtime, svc: &mut S) {
    let result = rt.block_on(call(svc, 0));
    assert!(result.is_err_and(|e| e.is::<CircuitOpen>()));
}

/// A service behind a forced-open breaker: every call is rejected.
fn forced_open(rt: &Runtime) -> impl BenchService<Error = BoxError> + use<> {
    let breaker = count_breaker();
    breaker.force_open();
    let mut svc = guarded(&breaker);
    assert_rejects(rt, &mut svc);
    svc
}

/// A service behind a breaker that a failure opened: every further call is
/// rejected for the next hour.
fn tripped(rt: &Runtime) -> impl BenchService<Error = BoxError> + use<> {
    let config = Config::default()
        .window(Window::Count { size: 100 })
        .minimum_calls(1)
        .open_duration(Duration::from_secs(3600));
    let breaker = Breaker::new("bench-tripped", config).expect("valid config");
    let failing = service_fn(|_: u64| async move { Err::<u64, BoxError>("down".into()) });
    let mut svc = breaker.errors_layer().layer(failing);
    let first = rt.block_on(call(&mut svc, 0));
    assert!(first.is_err_and(|e| !e.is::<CircuitOpen>()));
    assert_rejects(rt, &mut svc);
    svc
}

fn closed_path(c: &mut Criterion) {
    let rt = current_thread();
    let mut group = c.benchmark_group("closed_path");
    bench_calls(&mut group, &rt, "bare", bare());
    bench_calls(&mut group, &rt, "count_window", guarded(&count_breaker()));
    bench_calls(&mut group, &rt, "time_window", guarded(&time_breaker()));
    group.finish();
}

fn open_path(c: &mut Criterion) {
    let rt = current_thread();
    let mut group = c.benchmark_group("open_path");
    bench_calls(&mut group, &rt, "forced_open", forced_open(&rt));
    bench_calls(&mut group, &rt, "tripped", tripped(&rt));
    group.finish();
}

fn contention(c: &mut Criterion) {
    let rt = two_workers();
    let mut group = c.benchmark_group("contention");
    bench_shared(&mut group, &rt, "bare", bare(), CALLS_PER_TASK);
    bench_shared(
        &mut group,
        &rt,
        "count_window",
        guarded(&count_breaker()),
        CALLS_PER_TASK,
    );
    bench_shared(
        &mut group,
        &rt,
        "time_window",
        guarded(&time_breaker()),
        CALLS_PER_TASK,
    );
    group.finish();
}

fn print_allocations() {
    let rt = current_thread();
    let figures = [
        ("closed bare", allocs_per_call(&rt, bare())),
        (
            "closed count window",
            allocs_per_call(&rt, guarded(&count_breaker())),
        ),
        (
            "closed time window",
            allocs_per_call(&rt, guarded(&time_breaker())),
        ),
        ("open forced", allocs_per_call(&rt, forced_open(&rt))),
        ("open tripped", allocs_per_call(&rt, tripped(&rt))),
    ];
    for (name, figure) in figures {
        match figure {
            Some(allocs) => println!("allocs/call {name}: {allocs:.2}"),
            None => println!("allocs/call {name}: not measured (no counting allocator)"),
        }
    }
}

/// Calls made by [`profile`]: enough that the setup's instructions are noise.
const PROFILE_CALLS: u64 = 200_000;

/// Runs one service `PROFILE_CALLS` times and nothing else, for an
/// instruction count under `valgrind --tool=callgrind` (repeatable on a
/// shared machine, where wall-clock figures are not): subtract the `bare`
/// run's total and divide by the calls.
fn profile(which: &str) {
    let rt = current_thread();
    let calls = PROFILE_CALLS;
    match which {
        "bare" => rt.block_on(harness::run(&mut bare(), calls)),
        "count" => rt.block_on(harness::run(&mut guarded(&count_breaker()), calls)),
        "time" => rt.block_on(harness::run(&mut guarded(&time_breaker()), calls)),
        "forced" => {
            let mut svc = forced_open(&rt);
            rt.block_on(harness::run(&mut svc, calls));
        }
        "tripped" => {
            let mut svc = tripped(&rt);
            rt.block_on(harness::run(&mut svc, calls));
        }
        other => panic!("BREAKER_PROFILE: unknown service `{other}`"),
    }
}

/// `criterion_main!` with the allocation figures first. (`criterion_group!`
/// would define an undocumented `pub fn`, which the workspace lints flag.)
///
/// With `BREAKER_PROFILE=<bare|count|time|forced|tripped>` it only runs that
/// service (see [`profile`]).
fn main() {
    if let Ok(which) = std::env::var("BREAKER_PROFILE") {
        profile(&which);
        return;
    }
    print_allocations();
    let mut criterion = Criterion::default().configure_from_args();
    closed_path(&mut criterion);
    open_path(&mut criterion);
    contention(&mut criterion);
    criterion.final_summary();
}
