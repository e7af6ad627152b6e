//! How long a request may take.

use std::time::Duration;

use http::Method;

/// Chooses the timeout of each request.
///
/// Implemented by [`ByMethod`] (HTTP), [`Fixed`] (any request) and any
/// closure `Fn(&Req) -> Duration`.
pub trait TimeoutPolicy<Req> {
    /// The time `req` may take.
    fn timeout(&self, req: &Req) -> Duration;
}

impl<Req, F> TimeoutPolicy<Req> for F
where
    F: Fn(&Req) -> Duration,
{
    fn timeout(&self, req: &Req) -> Duration {
        self(req)
    }
}

/// The same timeout for every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fixed(pub Duration);

impl<Req> TimeoutPolicy<Req> for Fixed {
    fn timeout(&self, _req: &Req) -> Duration {
        self.0
    }
}

/// Timeouts by HTTP method: reads are expected to be quick, writes may do
/// more work.
///
/// Defaults: 3 s for GET, HEAD, OPTIONS and TRACE; 10 s for POST, PUT,
/// PATCH, DELETE and any other method. Individual methods can be overridden.
///
/// ```
/// use std::time::Duration;
/// use http::Method;
/// use tower_circuit::timeout::ByMethod;
///
/// let policy = ByMethod::default()
///     .reads(Duration::from_secs(2))
///     .method(Method::DELETE, Duration::from_secs(30));
/// # let _ = policy;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByMethod {
    reads: Duration,
    writes: Duration,
    overrides: Vec<(Method, Duration)>,
}

impl Default for ByMethod {
    fn default() -> Self {
        ByMethod {
            reads: Duration::from_secs(3),
            writes: Duration::from_secs(10),
            overrides: Vec::new(),
        }
    }
}

impl ByMethod {
    /// Sets the timeout of GET, HEAD, OPTIONS and TRACE.
    pub fn reads(mut self, timeout: Duration) -> Self {
        self.reads = timeout;
        self
    }

    /// Sets the timeout of every other method.
    pub fn writes(mut self, timeout: Duration) -> Self {
        self.writes = timeout;
        self
    }

    /// Sets the timeout of one method, over the two groups.
    pub fn method(mut self, method: Method, timeout: Duration) -> Self {
        self.overrides.retain(|(m, _)| *m != method);
        self.overrides.push((method, timeout));
        self
    }

    /// The timeout for `method`.
    pub fn for_method(&self, method: &Method) -> Duration {
        if let Some((_, d)) = self.overrides.iter().find(|(m, _)| m == method) {
            return *d;
        }
        match *method {
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE => self.reads,
            _ => self.writes,
        }
    }
}

impl<B> TimeoutPolicy<http::Request<B>> for ByMethod {
    fn timeout(&self, req: &http::Request<B>) -> Duration {
        self.for_method(req.method())
    }
}
