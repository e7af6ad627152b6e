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
//! - `contention`: aggregate calls per second on a two-worker multi-thread
//!   runtime, with 1, 2 and 8 tasks each calling its own clone of one
//!   service, so the tasks share one breaker: `bare`, `count_window` and
//!   `time_window`. With two workers, 2 tasks should get close to twice the
//!   throughput of 1 unless the breaker's shared state serializes them.

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use tokio::runtime::{Builder, Runtime};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_circuit::BoxError;
use tower_circuit::breaker::{Breaker, CircuitOpen, Config, Window};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocation_count;

/// Calls each task of the `contention` group makes per criterion iteration.
const CALLS_PER_TASK: u64 = 10_000;

/// Task counts of the `contention` group.
const TASKS: [u64; 3] = [1, 2, 8];

/// Calls made before counting allocations, so that lazy initialisation
/// (thread-locals, the runtime's first poll) is not counted.
const ALLOC_WARM_UP_CALLS: u64 = 1_000;

/// Calls over which allocations are counted.
const ALLOC_CALLS: u64 = 100_000;

/// A service the benchmarks can call: the bare `service_fn` or the same
/// wrapped in a breaker, cloneable and sendable to spawned tasks.
trait BenchService:
    Service<u64, Response = u64, Error = BoxError, Future: Send> + Clone + Send + 'static
{
}

impl<S> BenchService for S where
    S: Service<u64, Response = u64, Error = BoxError, Future: Send> + Clone + Send + 'static
{
}

/// The inner service: answers its request at once.
fn bare() -> impl BenchService {
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
fn guarded(breaker: &Breaker) -> impl BenchService + use<> {
    breaker.layer().layer(bare())
}

/// Checks that `svc` rejects calls, outside any timed loop.
fn assert_rejects<S: BenchService>(rt: &Runtime, svc: &mut S) {
    let result = rt.block_on(call(svc, 0));
    assert!(result.is_err_and(|e| e.is::<CircuitOpen>()));
}

/// A service behind a forced-open breaker: every call is rejected.
fn forced_open(rt: &Runtime) -> impl BenchService + use<> {
    let breaker = count_breaker();
    breaker.force_open();
    let mut svc = guarded(&breaker);
    assert_rejects(rt, &mut svc);
    svc
}

/// A service behind a breaker that a failure opened: every further call is
/// rejected for the next hour.
fn tripped(rt: &Runtime) -> impl BenchService + use<> {
    let config = Config::default()
        .window(Window::Count { size: 100 })
        .minimum_calls(1)
        .open_duration(Duration::from_secs(3600));
    let breaker = Breaker::new("bench-tripped", config).expect("valid config");
    let failing = service_fn(|_: u64| async move { Err::<u64, BoxError>("down".into()) });
    let mut svc = breaker.layer().layer(failing);
    let first = rt.block_on(call(&mut svc, 0));
    assert!(first.is_err_and(|e| !e.is::<CircuitOpen>()));
    assert_rejects(rt, &mut svc);
    svc
}

/// One call, as the timed loops make it.
async fn call<S>(svc: &mut S, i: u64) -> Result<S::Response, S::Error>
where
    S: Service<u64>,
{
    svc.ready().await?.call(black_box(i)).await
}

/// `calls` calls in a row, each result black-boxed.
async fn run<S: BenchService>(svc: &mut S, calls: u64) {
    for i in 0..calls {
        let _ = black_box(call(svc, i).await);
    }
}

fn current_thread() -> Runtime {
    Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn two_workers() -> Runtime {
    Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Benches `iters` calls in one `block_on`, so the per-call figure is not
/// dominated by entering the runtime.
fn bench_calls<S: BenchService>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    name: &str,
    mut svc: S,
) {
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                run(&mut svc, iters).await;
                start.elapsed()
            })
        });
    });
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

/// Benches `svc` shared by 1, 2 and 8 tasks. One criterion iteration is
/// `CALLS_PER_TASK` calls per task; each task makes all its iterations in
/// one spawn, and the time is the wall time from the first spawn to the
/// last join.
fn bench_shared<S: BenchService>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    name: &str,
    svc: S,
) {
    for tasks in TASKS {
        group.throughput(Throughput::Elements(tasks * CALLS_PER_TASK));
        group.bench_with_input(BenchmarkId::new(name, tasks), &tasks, |b, &tasks| {
            b.iter_custom(|iters| {
                let calls = iters * CALLS_PER_TASK;
                rt.block_on(async {
                    let start = Instant::now();
                    let handles: Vec<_> = (0..tasks)
                        .map(|_| {
                            let mut svc = svc.clone();
                            tokio::spawn(async move { run(&mut svc, calls).await })
                        })
                        .collect();
                    for handle in handles {
                        handle.await.expect("task panicked");
                    }
                    start.elapsed()
                })
            });
        });
    }
}

fn contention(c: &mut Criterion) {
    let rt = two_workers();
    let mut group = c.benchmark_group("contention");
    bench_shared(&mut group, &rt, "bare", bare());
    bench_shared(&mut group, &rt, "count_window", guarded(&count_breaker()));
    bench_shared(&mut group, &rt, "time_window", guarded(&time_breaker()));
    group.finish();
}

/// Allocations per call of `svc`, after a warm-up.
fn allocs_per_call<S: BenchService>(rt: &Runtime, mut svc: S) -> Option<f64> {
    rt.block_on(async {
        run(&mut svc, ALLOC_WARM_UP_CALLS).await;
        let before = allocation_count()?;
        run(&mut svc, ALLOC_CALLS).await;
        let after = allocation_count()?;
        Some((after - before) as f64 / ALLOC_CALLS as f64)
    })
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

/// `criterion_main!` with the allocation figures first. (`criterion_group!`
/// would define an undocumented `pub fn`, which the workspace lints flag.)
fn main() {
    print_allocations();
    let mut criterion = Criterion::default().configure_from_args();
    closed_path(&mut criterion);
    open_path(&mut criterion);
    contention(&mut criterion);
    criterion.final_summary();
}
