//! Fault injection, for demonstrations and tests: answer 503 to a fraction
//! of authenticated requests, or delay every one. Off by default; the
//! settings can change while the service runs ([`Faults`] is shared).
//!
//! Errors are spread evenly rather than drawn at random: at rate `r`, the
//! `n`-th request fails when `⌊(n+1)·r⌋ > ⌊n·r⌋`, so exactly that fraction
//! of every run of requests fails (at 0.5, every other one) and tests can
//! reason about what the breaker sees.
//!
//! The latency delays the answer's head; a streamed answer (gRPC
//! `ListUsers`) also waits that long before each message, so a test can
//! hold a stream open past its deadline and see it cut mid-way.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use axum::response::IntoResponse;
use tokio::time::Sleep;
use tower::{Layer, Service};

use crate::api::ApiError;

/// Parts per million, so a rate fits an atomic integer.
const PPM: f64 = 1_000_000.0;

/// The fault settings of one service, shared and changeable at run time.
#[derive(Clone, Default)]
pub struct Faults {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    error_ppm: AtomicU32,
    latency_us: AtomicU64,
    seen: AtomicU64,
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Faults")
            .field("error_rate", &self.error_rate())
            .field("latency", &self.latency())
            .finish()
    }
}

impl Faults {
    /// Faults at `error_rate` (clamped to `[0, 1]`) and `latency`.
    pub fn new(error_rate: f64, latency: Duration) -> Faults {
        let faults = Faults::default();
        faults.set_error_rate(error_rate);
        faults.set_latency(latency);
        faults
    }

    /// Sets the fraction of requests answered 503.
    pub fn set_error_rate(&self, rate: f64) {
        let ppm = (rate.clamp(0.0, 1.0) * PPM).round() as u32;
        self.inner.error_ppm.store(ppm, Ordering::Relaxed);
    }

    /// Sets the delay added to every request.
    pub fn set_latency(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.inner.latency_us.store(us, Ordering::Relaxed);
    }

    /// The fraction of requests answered 503.
    pub fn error_rate(&self) -> f64 {
        f64::from(self.inner.error_ppm.load(Ordering::Relaxed)) / PPM
    }

    /// The delay added to every request.
    pub fn latency(&self) -> Duration {
        Duration::from_micros(self.inner.latency_us.load(Ordering::Relaxed))
    }

    /// Whether any fault is on.
    pub fn is_on(&self) -> bool {
        self.error_rate() > 0.0 || !self.latency().is_zero()
    }

    /// Whether this request fails: evenly spread at the error rate.
    fn next_fails(&self) -> bool {
        let ppm = u64::from(self.inner.error_ppm.load(Ordering::Relaxed));
        if ppm == 0 {
            return false;
        }
        let n = self.inner.seen.fetch_add(1, Ordering::Relaxed);
        let scaled = |k: u64| (u128::from(k) * u128::from(ppm)) / 1_000_000;
        scaled(n + 1) > scaled(n)
    }

    /// The layer injecting these faults.
    pub fn layer(&self) -> FaultLayer {
        FaultLayer {
            faults: self.clone(),
        }
    }
}

/// Injects [`Faults`]; place it after authentication.
#[derive(Debug, Clone)]
pub struct FaultLayer {
    faults: Faults,
}

impl<S> Layer<S> for FaultLayer {
    type Service = Fault<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Fault {
            inner,
            faults: self.faults.clone(),
        }
    }
}

/// The service of [`FaultLayer`].
#[derive(Debug, Clone)]
pub struct Fault<S> {
    inner: S,
    faults: Faults,
}

impl<S> Service<Request<Body>> for Fault<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = FaultFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let latency = self.faults.latency();
        let delay = (!latency.is_zero()).then(|| tokio::time::sleep(latency));
        // A failing request never reaches the handler.
        let inner = (!self.faults.next_fails()).then(|| self.inner.call(req));
        FaultFuture {
            inner,
            delay,
            ready: None,
        }
    }
}

pin_project_lite::pin_project! {
    /// The handler's answer (or the injected 503), once the delay is over.
    pub struct FaultFuture<F> {
        #[pin]
        inner: Option<F>,
        #[pin]
        delay: Option<Sleep>,
        ready: Option<Response<Body>>,
    }
}

impl<F> fmt::Debug for FaultFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultFuture").finish_non_exhaustive()
    }
}

impl<F> Future for FaultFuture<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if this.ready.is_none() {
            let res = match this.inner.as_mut().as_pin_mut() {
                Some(inner) => match std::task::ready!(inner.poll(cx)) {
                    Ok(res) => res,
                    Err(never) => match never {},
                },
                None => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "injected_fault",
                    "fault injection: this request was answered 503 on purpose",
                )
                .into_response(),
            };
            *this.ready = Some(res);
        }
        if let Some(delay) = this.delay.as_pin_mut() {
            std::task::ready!(delay.poll(cx));
        }
        Poll::Ready(Ok(this.ready.take().unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_spread_evenly_at_the_rate() {
        for (rate, n, expected) in [
            (0.5, 10, 5),
            (0.1, 100, 10),
            (0.25, 8, 2),
            (1.0, 7, 7),
            (0.0, 9, 0),
        ] {
            let faults = Faults::new(rate, Duration::ZERO);
            let failed = (0..n).filter(|_| faults.next_fails()).count();
            assert_eq!(failed, expected, "rate {rate}");
        }
        // At 0.5 they alternate.
        let faults = Faults::new(0.5, Duration::ZERO);
        let pattern: Vec<bool> = (0..4).map(|_| faults.next_fails()).collect();
        assert_eq!(pattern, [false, true, false, true]);
    }
}
