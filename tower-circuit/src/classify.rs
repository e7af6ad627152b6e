//! What counts as a failure.
//!
//! A breaker asks a classifier, made per request, what each finished call
//! means: a [`Outcome::Success`], a [`Outcome::Failure`], or
//! [`Outcome::Ignored`] (the call is not counted at all). The same split as
//! [`tower_http::classify`]: a [`MakeClassifier`] looks at the request and
//! returns a [`Classifier`] that judges the response or the error.
//!
//! - [`HttpClassifier`], the default ([`Breaker::layer`]), wraps any
//!   `tower_http` [`MakeClassifier`] (by default
//!   [`ServerErrorsAsFailures`]): 5xx responses, transport errors and
//!   timeouts are failures, 4xx are successes, because a client's mistake
//!   says nothing about the dependency's health. Use the same `tower_http`
//!   classifier for tracing and the breaker, and the logs and the breaker
//!   agree. It only fits `http::Request` in, `http::Response` out: over any
//!   other service the layer does not compile.
//! - [`ErrorsAsFailures`] ([`Breaker::errors_layer`]) suits a service that
//!   is not HTTP: `Err` is a failure, any `Ok` a success. Over HTTP it
//!   would count a `503` as a success, which is why it is not the default.
//! - [`IgnoreErrors`] wraps either and leaves chosen errors uncounted.
//!
//! [`MakeClassifier`]: tower_http::classify::MakeClassifier
//! [`ServerErrorsAsFailures`]: tower_http::classify::ServerErrorsAsFailures
//! [`Breaker::layer`]: crate::breaker::Breaker::layer
//! [`Breaker::errors_layer`]: crate::breaker::Breaker::errors_layer

use std::fmt;

use tower_http::classify::{
    ClassifiedResponse, ClassifyResponse, MakeClassifier as MakeHttpClassifier,
    ServerErrorsAsFailures, SharedClassifier,
};

/// What a finished call means to a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The dependency did its job.
    Success,
    /// The dependency failed; counts towards opening the circuit.
    Failure,
    /// Says nothing about the dependency; not counted.
    Ignored,
}

/// Makes a [`Classifier`] for each request.
#[diagnostic::on_unimplemented(
    message = "the breaker's classifier `{Self}` cannot classify calls taking `{Req}`",
    label = "a breaker layer that classifies HTTP calls, over a service that is not HTTP",
    note = "`Breaker::layer()` classifies HTTP calls only (`http::Request` in, `http::Response` out, 5xx and errors are failures)",
    note = "for a service that is not HTTP use `Breaker::errors_layer()` (every `Err` is a failure), or pick a rule with `.classifier(...)`"
)]
pub trait MakeClassifier<Req> {
    /// The classifier that judges this request's result.
    type Classifier;

    /// Looks at the request before it is sent.
    fn make_classifier(&self, req: &Req) -> Self::Classifier;
}

/// Judges the result of one call.
#[diagnostic::on_unimplemented(
    message = "the breaker's classifier `{Self}` cannot judge a `{Res}` response",
    note = "`Breaker::layer()` classifies HTTP calls only (`http::Request` in, `http::Response` out, 5xx and errors are failures)",
    note = "for a service that is not HTTP use `Breaker::errors_layer()` (every `Err` is a failure), or pick a rule with `.classifier(...)`"
)]
pub trait Classifier<Res, E> {
    /// Classifies the inner service's result.
    fn classify(self, result: Result<&Res, &E>) -> Outcome;
}

/// Counts every `Err` as a failure and every `Ok` as a success.
#[derive(Debug, Clone, Copy, Default)]
pub struct ErrorsAsFailures;

impl<Req> MakeClassifier<Req> for ErrorsAsFailures {
    type Classifier = ErrorsAsFailures;

    fn make_classifier(&self, _req: &Req) -> Self::Classifier {
        ErrorsAsFailures
    }
}

impl<Res, E> Classifier<Res, E> for ErrorsAsFailures {
    fn classify(self, result: Result<&Res, &E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
}

/// Classifies HTTP calls with a [`tower_http::classify::MakeClassifier`].
///
/// A response the inner classifier calls a failure, and every error, is a
/// [`Outcome::Failure`]. Responses whose verdict needs the end of the body
/// (gRPC's trailers) count as successes: the breaker does not wait for
/// bodies.
#[derive(Debug, Clone)]
pub struct HttpClassifier<M = SharedClassifier<ServerErrorsAsFailures>> {
    make: M,
}

impl Default for HttpClassifier {
    /// 5xx responses and errors are failures, everything else a success.
    fn default() -> Self {
        HttpClassifier::new(ServerErrorsAsFailures::make_classifier())
    }
}

impl<M> HttpClassifier<M> {
    /// Wraps a `tower_http` classifier.
    pub fn new(make: M) -> Self {
        HttpClassifier { make }
    }
}

impl<M, B> MakeClassifier<http::Request<B>> for HttpClassifier<M>
where
    M: MakeHttpClassifier,
{
    type Classifier = HttpOutcome<M::Classifier>;

    fn make_classifier(&self, req: &http::Request<B>) -> Self::Classifier {
        HttpOutcome(self.make.make_classifier(req))
    }
}

/// The per-request classifier of [`HttpClassifier`].
#[derive(Debug, Clone)]
pub struct HttpOutcome<C>(C);

impl<C, B, E> Classifier<http::Response<B>, E> for HttpOutcome<C>
where
    C: ClassifyResponse,
{
    fn classify(self, result: Result<&http::Response<B>, &E>) -> Outcome {
        match result {
            Ok(res) => match self.0.classify_response(res) {
                ClassifiedResponse::Ready(Ok(())) | ClassifiedResponse::RequiresEos(_) => {
                    Outcome::Success
                }
                ClassifiedResponse::Ready(Err(_)) => Outcome::Failure,
            },
            Err(_) => Outcome::Failure,
        }
    }
}

/// Leaves errors that match a predicate uncounted.
///
/// ```
/// use tower_circuit::classify::{Classifier, ErrorsAsFailures, IgnoreErrors, MakeClassifier, Outcome};
///
/// #[derive(Debug)]
/// struct NotFound;
///
/// let classify = IgnoreErrors::new(ErrorsAsFailures, |e: &&str| e.starts_with("not found"));
/// let c = classify.make_classifier(&());
/// assert_eq!(Classifier::<(), &str>::classify(c, Err(&"not found: 7")), Outcome::Ignored);
/// ```
#[derive(Clone)]
pub struct IgnoreErrors<M, F> {
    inner: M,
    predicate: F,
}

impl<M, F> IgnoreErrors<M, F> {
    /// Wraps `inner`; errors for which `predicate` returns `true` are ignored.
    pub fn new(inner: M, predicate: F) -> Self {
        IgnoreErrors { inner, predicate }
    }
}

impl<M: fmt::Debug, F> fmt::Debug for IgnoreErrors<M, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IgnoreErrors")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<Req, M, F> MakeClassifier<Req> for IgnoreErrors<M, F>
where
    M: MakeClassifier<Req>,
    F: Clone,
{
    type Classifier = IgnoreErrors<M::Classifier, F>;

    fn make_classifier(&self, req: &Req) -> Self::Classifier {
        IgnoreErrors {
            inner: self.inner.make_classifier(req),
            predicate: self.predicate.clone(),
        }
    }
}

impl<Res, E, C, F> Classifier<Res, E> for IgnoreErrors<C, F>
where
    C: Classifier<Res, E>,
    F: Fn(&E) -> bool,
{
    fn classify(self, result: Result<&Res, &E>) -> Outcome {
        match result {
            Err(e) if (self.predicate)(e) => Outcome::Ignored,
            other => self.inner.classify(other),
        }
    }
}
