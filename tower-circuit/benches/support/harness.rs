//! What the breaker benches share: the service bound, one call, runtimes,
//! and the per-call, shared-by-tasks and allocation measurements.
//! Included with `#[path]` next to `counting_alloc.rs`.

use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Throughput};
use tokio::runtime::{Builder, Runtime};
use tokio::time::Instant;
use tower::{Service, ServiceExt};

use crate::counting_alloc::allocation_count;

/// Task counts of the groups where tasks share one service.
pub(crate) const TASKS: [u64; 3] = [1, 2, 8];

/// Calls made before counting allocations, so that lazy initialisation
/// (thread-locals, the runtime's first poll) is not counted.
pub(crate) const ALLOC_WARM_UP_CALLS: u64 = 1_000;

/// Calls over which allocations are counted.
pub(crate) const ALLOC_CALLS: u64 = 100_000;

/// A service the benchmarks can call: the bare `service_fn` or the same
/// behind a breaker, cloneable and sendable to spawned tasks. Each keeps its
/// own error type, so no conversion is timed.
pub(crate) trait BenchService:
    Service<u64, Response = u64, Error: Send + 'static, Future: Send> + Clone + Send + 'static
{
}

impl<S> BenchService for S where
    S: Service<u64, Response = u64, Error: Send + 'static, Future: Send> + Clone + Send + 'static
{
}

/// One call, as the timed loops make it.
pub(crate) async fn call<S>(svc: &mut S, i: u64) -> Result<S::Response, S::Error>
where
    S: Service<u64>,
{
    svc.ready().await?.call(black_box(i)).await
}

/// `calls` calls in a row, each result black-boxed.
pub(crate) async fn run<S: BenchService>(svc: &mut S, calls: u64) {
    for i in 0..calls {
        let _ = black_box(call(svc, i).await);
    }
}

pub(crate) fn current_thread() -> Runtime {
    Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

pub(crate) fn two_workers() -> Runtime {
    Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Benches `iters` calls in one `block_on`, so the per-call figure is not
/// dominated by entering the runtime.
pub(crate) fn bench_calls<S: BenchService>(
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

/// Benches `svc` shared by 1, 2 and 8 tasks. One criterion iteration is
/// `calls_per_task` calls per task; each task makes all its iterations in
/// one spawn, and the time is the wall time from the first spawn to the
/// last join.
pub(crate) fn bench_shared<S: BenchService>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    name: &str,
    svc: S,
    calls_per_task: u64,
) {
    for tasks in TASKS {
        group.throughput(Throughput::Elements(tasks * calls_per_task));
        group.bench_with_input(BenchmarkId::new(name, tasks), &tasks, |b, &tasks| {
            b.iter_custom(|iters| {
                let calls = iters * calls_per_task;
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

/// Allocations per call of `svc`, after a warm-up.
pub(crate) fn allocs_per_call<S: BenchService>(rt: &Runtime, mut svc: S) -> Option<f64> {
    rt.block_on(async {
        run(&mut svc, ALLOC_WARM_UP_CALLS).await;
        let before = allocation_count()?;
        run(&mut svc, ALLOC_CALLS).await;
        let after = allocation_count()?;
        Some((after - before) as f64 / ALLOC_CALLS as f64)
    })
}
