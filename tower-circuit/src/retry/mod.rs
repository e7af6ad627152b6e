//! Retries with jittered exponential backoff, a retry budget, and respect
//! for idempotency, `Retry-After` and deadlines.
//!
//! # Why budgets, jitter and idempotency
//!
//! A retry is more load on a dependency that is already failing. Three
//! rules keep retries from making an outage worse:
//!
//! - **jitter**: each retry session draws its own delays, so calls that
//!   failed together do not come back together (tower 0.5's
//!   `ExponentialBackoffMaker` hands every session the same sequence);
//! - **a budget**: retries are at most a share of recent requests (20 % by
//!   default) plus a small floor, so a dead dependency sees about 1.2× the
//!   load instead of 4×. The share is enforced as configured (to 1 ppm):
//!   0.3 allows 30 % and 0.7 allows 70 %; tower's `TpsBudget`, used
//!   before, truncates `1 / share` and allowed 33 % and 100 %;
//! - **idempotency**: only requests that may safely run twice are retried:
//!   by default GET, HEAD, OPTIONS, PUT, DELETE and TRACE, and POST or
//!   PATCH only with an `Idempotency-Key` header; another rule (an
//!   [`Idempotency`], e.g. a table of gRPC methods) can be given with
//!   [`RetryBuilder::idempotency`].
//!
//! Transport errors, attempt timeouts ([`Elapsed`]), 500, 502, 503 and 504
//! are retried; 503 not before its `Retry-After`; 429 only when it carries
//! a `Retry-After`, and not before it; other statuses never; an open
//! circuit never (it fails fast on purpose).
//!
//! A 429 *without* `Retry-After` is not retried: it is a 4xx, the caller's
//! rate is the problem rather than the dependency's health, the server gave
//! no time at which trying again is safe, and blind retries into a server
//! that is shedding load amplify the overload. `Retry-After` must be
//! delay-seconds (`1*DIGIT`, RFC 9110 §10.2.3) or an HTTP-date; anything
//! else is treated as absent, and a number too large is clamped (see
//! [`MAX_RETRY_AFTER_SECS`]), so the call is never retried sooner than the
//! server asked. A retry that
//! would start after the call's [`Deadline`] is not made: the last outcome
//! is returned instead. Every retry is logged (`warn`, target
//! `tower_circuit::retry`) with the attempt, the delay and the reason, and
//! reported to the [`on_retry`](RetryBuilder::on_retry) hook.
//!
//! What is retried is up to a [`RetryClassifier`] (any closure over the
//! attempt's result will do). It is not a `tower_http` classifier: those
//! say whether a response failed, which is what the breaker needs, but not
//! whether trying again can help or when (`Retry-After`).
//!
//! Requests are retried by cloning them, so their body must be `Clone`:
//! `http_body_util::Full<Bytes>` clones without copying its bytes. A
//! streaming body cannot be retried, and the layer does not accept one: a
//! partial body is never resent.
//!
//! ```
//! use std::time::Duration;
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_circuit::BoxError;
//! use tower_circuit::retry::{Backoff, RetryLayer};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), BoxError> {
//! let retry = RetryLayer::builder("user-service")
//!     .max_retries(3)
//!     .backoff(Backoff::default().base(Duration::from_secs(1)))
//!     .build()?;
//! let attempts = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
//! let seen = attempts.clone();
//! let client = ServiceBuilder::new().layer(retry.clone()).service(service_fn(move |_req: Request<()>| {
//!     let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
//!     async move {
//!         let status = if n < 2 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
//!         Ok::<_, BoxError>(Response::builder().status(status).body(()).unwrap())
//!     }
//! }));
//!
//! let res = client.oneshot(Request::get("/users/7").body(()).unwrap()).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(retry.stats().retries, 2);
//! # Ok(())
//! # }
//! ```
//!
//! [`Elapsed`]: crate::timeout::Elapsed
//! [`Deadline`]: crate::timeout::Deadline

mod backoff;
mod budget;
mod classify;
mod config;
pub mod future;
mod idempotency;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::{Extensions, HeaderMap, Method, Request, Response, Uri, Version};
use tower_layer::Layer;
use tower_service::Service;

pub use self::backoff::{Backoff, Jitter, Random, ThreadRandom};
pub use self::classify::{
    Decision, DefaultRetryClassifier, MAX_RETRY_AFTER_SECS, RetryClassifier, RetryReason,
    is_idempotent, retry_after,
};
pub use self::config::{RetryBudget, RetryConfigError};
pub use self::idempotency::{DefaultIdempotency, Idempotency};

use self::budget::RetryBudgetState;
#[cfg(feature = "grpc")]
pub(crate) use self::classify::classify_error;
pub(crate) use self::classify::digits;
use self::future::ResponseFuture;
use crate::BoxError;
use crate::timeout::Deadline;

/// A retry about to be made, as reported to the hook.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RetryEvent {
    /// The layer's name (the target service).
    pub name: Arc<str>,
    /// The number of the attempt about to be made (2 for the first retry).
    pub attempt: u32,
    /// The pause before it.
    pub delay: Duration,
    /// Why.
    pub reason: RetryReason,
}

/// Counts since the layer was built, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RetryStats {
    /// Retries made.
    pub retries: u64,
    /// Retries not made because the budget was spent.
    pub budget_exhausted: u64,
}

/// The retry hook, shared by the layer's services.
type OnRetry = Arc<dyn Fn(&RetryEvent) + Send + Sync>;

pub(crate) struct Shared {
    name: Arc<str>,
    max_retries: u32,
    backoff: Backoff,
    max_retry_after: Duration,
    retry_non_idempotent: bool,
    budget: Option<RetryBudgetState>,
    on_retry: Option<OnRetry>,
    retries: AtomicU64,
    budget_exhausted: AtomicU64,
}

impl Shared {
    fn report(&self, event: &RetryEvent) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            target: "tower_circuit::retry",
            retry = &*event.name,
            attempt = event.attempt,
            delay_ms = event.delay.as_millis() as u64,
            reason = %event.reason,
            "retrying"
        );
        if let Some(hook) = &self.on_retry {
            hook(event);
        }
    }
}

/// Builds a [`RetryLayer`].
#[derive(Clone)]
pub struct RetryBuilder<I = DefaultIdempotency> {
    name: Arc<str>,
    max_retries: u32,
    backoff: Backoff,
    max_retry_after: Duration,
    retry_non_idempotent: bool,
    budget: Option<RetryBudget>,
    on_retry: Option<OnRetry>,
    idempotency: I,
}

impl<I> fmt::Debug for RetryBuilder<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBuilder")
            .field("name", &self.name)
            .field("max_retries", &self.max_retries)
            .field("backoff", &self.backoff)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl<I> RetryBuilder<I> {
    /// At most this many retries per call (default 3, so 4 attempts).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// The backoff (default: [`Backoff::default`]).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The longest `Retry-After` honoured (default 30 s); a server asking
    /// for more gets its answer returned rather than an early retry.
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// Sets the budget (default [`RetryBudget::default`]).
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Turns the budget off: every failed call may use all its retries.
    pub fn no_budget(mut self) -> Self {
        self.budget = None;
        self
    }

    /// The rule that says which requests may be retried (default
    /// [`DefaultIdempotency`]: by method, and POST or PATCH with an
    /// `Idempotency-Key`). A gRPC client, whose calls are all POSTs, gives
    /// its table of methods (`grpc::retry::GrpcMethods`, feature `grpc`).
    pub fn idempotency<I2: Idempotency>(self, rule: I2) -> RetryBuilder<I2> {
        RetryBuilder {
            name: self.name,
            max_retries: self.max_retries,
            backoff: self.backoff,
            max_retry_after: self.max_retry_after,
            retry_non_idempotent: self.retry_non_idempotent,
            budget: self.budget,
            on_retry: self.on_retry,
            idempotency: rule,
        }
    }

    /// Retries every request, whatever the idempotency rule says. Only for
    /// services known to make them idempotent some other way.
    pub fn retry_non_idempotent(mut self) -> Self {
        self.retry_non_idempotent = true;
        self
    }

    /// Calls `hook` before each retry.
    pub fn on_retry<F>(mut self, hook: F) -> Self
    where
        F: Fn(&RetryEvent) + Send + Sync + 'static,
    {
        self.on_retry = Some(Arc::new(hook));
        self
    }

    /// Validates and builds the layer.
    pub fn build(self) -> Result<RetryLayer<DefaultRetryClassifier, I>, RetryConfigError> {
        self.backoff.validate()?;
        let budget = match self.budget {
            None => None,
            Some(b) => {
                if b.window < Duration::from_secs(1) || b.window > Duration::from_secs(60) {
                    return Err(RetryConfigError::BudgetWindow(b.window));
                }
                if !(0.0..=10.0).contains(&b.share) {
                    return Err(RetryConfigError::BudgetShare(b.share));
                }
                Some(RetryBudgetState::new(b.window, b.floor_per_sec, b.share))
            }
        };
        Ok(RetryLayer {
            shared: Arc::new(Shared {
                name: self.name,
                max_retries: self.max_retries,
                backoff: self.backoff,
                max_retry_after: self.max_retry_after,
                retry_non_idempotent: self.retry_non_idempotent,
                budget,
                on_retry: self.on_retry,
                retries: AtomicU64::new(0),
                budget_exhausted: AtomicU64::new(0),
            }),
            classifier: DefaultRetryClassifier,
            idempotency: self.idempotency,
        })
    }
}

/// Wraps services in a [`Retry`]. Every service built from one layer (and
/// its clones) shares the budget and the counts.
#[derive(Clone)]
pub struct RetryLayer<C = DefaultRetryClassifier, I = DefaultIdempotency> {
    shared: Arc<Shared>,
    classifier: C,
    idempotency: I,
}

impl<C, I> fmt::Debug for RetryLayer<C, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("name", &self.shared.name)
            .field("max_retries", &self.shared.max_retries)
            .finish_non_exhaustive()
    }
}

impl RetryLayer {
    /// Starts a builder; `name` (the target service) appears in logs and events.
    pub fn builder(name: impl Into<Arc<str>>) -> RetryBuilder {
        RetryBuilder {
            name: name.into(),
            max_retries: 3,
            backoff: Backoff::default(),
            max_retry_after: Duration::from_secs(30),
            retry_non_idempotent: false,
            budget: Some(RetryBudget::default()),
            on_retry: None,
            idempotency: DefaultIdempotency,
        }
    }
}

impl<C, I> RetryLayer<C, I> {
    /// Replaces the classifier that decides what is retried.
    pub fn classifier<C2>(self, classifier: C2) -> RetryLayer<C2, I> {
        RetryLayer {
            shared: self.shared,
            classifier,
            idempotency: self.idempotency,
        }
    }

    /// Counts since the layer was built.
    pub fn stats(&self) -> RetryStats {
        RetryStats {
            retries: self.shared.retries.load(Ordering::Relaxed),
            budget_exhausted: self.shared.budget_exhausted.load(Ordering::Relaxed),
        }
    }
}

impl<S, C: Clone, I: Clone> Layer<S> for RetryLayer<C, I> {
    type Service = Retry<S, C, I>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry {
            inner,
            shared: self.shared.clone(),
            classifier: self.classifier.clone(),
            idempotency: self.idempotency.clone(),
        }
    }
}

/// Retries failed attempts. Built by [`RetryLayer`].
#[derive(Clone)]
pub struct Retry<S, C = DefaultRetryClassifier, I = DefaultIdempotency> {
    inner: S,
    shared: Arc<Shared>,
    classifier: C,
    idempotency: I,
}

impl<S: fmt::Debug, C, I> fmt::Debug for Retry<S, C, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl<S, C, I> Retry<S, C, I> {
    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, I, B, ResB> Service<Request<B>> for Retry<S, C, I>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone,
    S::Error: Into<BoxError>,
    B: Clone,
    C: RetryClassifier<ResB> + Clone,
    I: Idempotency,
{
    type Response = Response<ResB>;
    type Error = BoxError;
    type Future = ResponseFuture<S, B, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if let Some(budget) = &self.shared.budget {
            budget.deposit();
        }
        let template = (self.shared.retry_non_idempotent || self.idempotency.is_idempotent(&req))
            .then(|| Replay::of(&req));
        let deadline = Deadline::of(&req);
        // The service that was polled ready makes this call; the future
        // keeps it for the retries, and a fresh clone stays here.
        let clone = self.inner.clone();
        let mut service = std::mem::replace(&mut self.inner, clone);
        let future = service.call(req);
        ResponseFuture::new(
            future,
            service,
            template,
            deadline,
            self.shared.clone(),
            self.classifier.clone(),
        )
    }
}

/// What a retry sends again: a copy of the request's method, URI, version,
/// headers, extensions and body, kept until the call ends.
///
/// The headers are kept as a list, one allocation, rather than as a second
/// `HeaderMap`, whose clone takes two (its index and its entries): the
/// copy is made on every call that may be retried and used only by the
/// few that are, so the success path pays for the list and a retry pays
/// for rebuilding the map. Names and values are reference-counted or
/// static, so copying them copies no text.
pub(crate) struct Replay<B> {
    method: Method,
    uri: Uri,
    version: Version,
    headers: Vec<(HeaderName, HeaderValue)>,
    extensions: Extensions,
    body: B,
}

impl<B: Clone> Replay<B> {
    /// A copy of `req`.
    pub(crate) fn of(req: &Request<B>) -> Self {
        // `len` counts every value, so a repeated header keeps all of its
        // values, in their order.
        let mut headers = Vec::with_capacity(req.headers().len());
        headers.extend(
            req.headers()
                .iter()
                .map(|(name, value)| (name.clone(), value.clone())),
        );
        Replay {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers,
            extensions: req.extensions().clone(),
            body: req.body().clone(),
        }
    }

    /// The request to send again.
    pub(crate) fn request(&self) -> Request<B> {
        let mut headers = HeaderMap::with_capacity(self.headers.len());
        for (name, value) in &self.headers {
            headers.append(name.clone(), value.clone());
        }
        let mut req = Request::new(self.body.clone());
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        *req.headers_mut() = headers;
        *req.extensions_mut() = self.extensions.clone();
        req
    }
}

#[cfg(test)]
mod tests {
    use http::header::{ACCEPT, AUTHORIZATION, HeaderValue};
    use http::{Method, Request, Version};

    use super::Replay;

    #[derive(Debug, Clone, PartialEq)]
    struct Tag(u32);

    #[test]
    fn a_replay_sends_the_request_as_it_was() {
        let mut secret = HeaderValue::from_static("Bearer abc");
        secret.set_sensitive(true);
        let mut req = Request::builder()
            .method(Method::PUT)
            .uri("https://users.internal/users/7?full=1")
            .version(Version::HTTP_2)
            .header(ACCEPT, "application/json")
            .header("x-trace", "one")
            .header(ACCEPT, "text/plain")
            .header(AUTHORIZATION, secret)
            .body("the body".to_owned())
            .expect("a valid request");
        req.extensions_mut().insert(Tag(7));

        let again = Replay::of(&req).request();

        assert_eq!(again.method(), Method::PUT);
        assert_eq!(again.uri(), req.uri());
        assert_eq!(again.version(), Version::HTTP_2);
        assert_eq!(again.headers(), req.headers());
        let accepts: Vec<_> = again.headers().get_all(ACCEPT).iter().collect();
        assert_eq!(accepts, ["application/json", "text/plain"]);
        assert!(again.headers()[AUTHORIZATION].is_sensitive());
        assert_eq!(again.extensions().get::<Tag>(), Some(&Tag(7)));
        assert_eq!(again.body(), "the body");
    }
}
