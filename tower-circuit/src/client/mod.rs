//! A JSON client for one target service, made from this crate's layers.
//!
//! [`ServiceClient`] assembles the [recommended stack](crate#the-recommended-client-stack)
//! over a `hyper-util` client: deadline, retry, circuit breaker, per-attempt
//! timeout, deadline propagation, then any layers of your own that belong
//! on the wire (service authentication, say), and offers `get`, `post`,
//! `put` and `delete` helpers that send and parse JSON. Each attempt reads
//! the whole response body, capped, inside its own timeout, so a server
//! that stalls mid-body counts as a timeout too.
//!
//! Behind the `client` feature.
//!
//! ```no_run
//! use std::time::Duration;
//! use tower_circuit::client::ServiceClient;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! #[derive(serde::Deserialize)]
//! struct User { id: u64, name: String }
//!
//! let users = ServiceClient::builder("user-service", "http://127.0.0.1:3000")
//!     .deadline(Duration::from_secs(15))
//!     .build()?;
//! let user: User = users.get("/users/7").await?;
//! println!("{} is {}", user.id, user.name);
//! # Ok(())
//! # }
//! ```

mod error;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

pub use self::error::{BuildError, ClientError};

use crate::BoxError;
use crate::breaker::{Breaker, BreakerBuilder, Config};
use crate::retry::{RetryBuilder, RetryLayer, RetryStats};
use crate::timeout::{ByMethod, DeadlineLayer, PropagateDeadlineLayer, RequestTimeoutLayer};

/// The service every layer of the client wraps: requests with a buffered
/// body, responses with the whole body read.
pub type WireService = BoxCloneSyncService<Request<Full<Bytes>>, Response<Bytes>, BoxError>;

/// The plain HTTP/1 client the stack sends through.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

type WireLayer = Box<dyn FnOnce(WireService) -> WireService + Send>;

/// Builds a [`ServiceClient`].
pub struct ServiceClientBuilder {
    name: Arc<str>,
    base_url: String,
    breaker: BreakerBuilder,
    retry: RetryBuilder,
    timeouts: ByMethod,
    deadline: Duration,
    min_budget: Duration,
    max_body: usize,
    http: Option<HttpClient>,
    wire: Vec<WireLayer>,
    bypass: bool,
}

impl fmt::Debug for ServiceClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceClientBuilder")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("breaker", &self.breaker)
            .field("retry", &self.retry)
            .field("timeouts", &self.timeouts)
            .field("deadline", &self.deadline)
            .field("min_budget", &self.min_budget)
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

impl ServiceClientBuilder {
    /// The breaker's configuration (default: [`Config::default`]).
    pub fn breaker(mut self, config: Config) -> Self {
        self.breaker = self.breaker.config(config);
        self
    }

    /// The breaker's configuration and hooks (state changes, rejections),
    /// e.g. to count transitions in metrics. The breaker takes the
    /// client's name.
    pub fn breaker_builder(mut self, builder: BreakerBuilder) -> Self {
        self.breaker = builder;
        self
    }

    /// The retry settings; the builder's name is replaced by the client's.
    pub fn retry(mut self, retry: RetryBuilder) -> Self {
        self.retry = retry;
        self
    }

    /// Per-attempt timeouts (default: 3 s for reads, 10 s for writes).
    pub fn timeouts(mut self, timeouts: ByMethod) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// The budget of one logical call, retries included (default 30 s).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The least budget worth sending (default 1 ms): with less time left,
    /// a call fails at once with a deadline [`Elapsed`](crate::timeout::Elapsed),
    /// which the breaker does not count, instead of reaching the server.
    /// See [`PropagateDeadlineLayer::min_budget`].
    pub fn min_budget(mut self, floor: Duration) -> Self {
        self.min_budget = floor;
        self
    }

    /// The largest response body read (default 4 MiB); a larger one fails
    /// the attempt.
    pub fn max_response_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Sends through `client` instead of a new one (to share its pool).
    pub fn http_client(mut self, client: HttpClient) -> Self {
        self.http = Some(client);
        self
    }

    /// Adds a layer on the wire side, below the timeout: it runs once per
    /// attempt. Layers added first end up outermost among them.
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<WireService> + Send + 'static,
        L::Service: Service<Request<Full<Bytes>>, Response = Response<Bytes>>
            + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as Service<Request<Full<Bytes>>>>::Error: Into<BoxError>,
        <L::Service as Service<Request<Full<Bytes>>>>::Future: Send + 'static,
    {
        self.wire.push(Box::new(move |inner: WireService| {
            BoxCloneSyncService::new(layer.layer(inner).map_err(Into::into))
        }));
        self
    }

    /// Leaves out the deadline, retry, breaker, timeout and propagation
    /// layers: requests go through the wire layers straight to the HTTP
    /// client. For measuring what those layers cost, not for production;
    /// the breaker and retry handles still exist but see no calls.
    pub fn bypass_layers(mut self) -> Self {
        self.bypass = true;
        self
    }

    /// Validates the settings and builds the client.
    pub fn build(self) -> Result<ServiceClient, BuildError> {
        let base_url = self.base_url.trim_end_matches('/').to_owned();
        base_url
            .parse::<http::Uri>()
            .ok()
            .filter(|u| u.scheme().is_some() && u.authority().is_some())
            .ok_or_else(|| BuildError::BaseUrl(self.base_url.clone()))?;
        let breaker = self.breaker.build_named(self.name.clone())?;
        let retry = self.retry.rename(self.name.clone()).build()?;
        let http = self
            .http
            .unwrap_or_else(|| Client::builder(TokioExecutor::new()).build_http());
        let max_body = self.max_body;
        let mut wire: WireService = BoxCloneSyncService::new(service_fn(move |req| {
            let http = http.clone();
            async move {
                let res = http.request(req).await?;
                let (parts, body) = res.into_parts();
                let bytes = Limited::new(body, max_body).collect().await?.to_bytes();
                Ok::<_, BoxError>(Response::from_parts(parts, bytes))
            }
        }));
        for layer in self.wire.into_iter().rev() {
            wire = layer(wire);
        }
        let service = if self.bypass {
            wire
        } else {
            BoxCloneSyncService::new(
                ServiceBuilder::new()
                    .layer(DeadlineLayer::new(self.deadline))
                    .layer(retry.clone())
                    .layer(breaker.layer())
                    .layer(RequestTimeoutLayer::new(self.timeouts))
                    .layer(PropagateDeadlineLayer::new().min_budget(self.min_budget))
                    .service(wire),
            )
        };
        Ok(ServiceClient {
            name: self.name,
            base_url: base_url.into(),
            service,
            breaker,
            retry,
        })
    }
}

/// A resilient JSON client for one target service. Cheap to clone; clones
/// share the breaker, the retry budget and the connection pool.
#[derive(Clone)]
pub struct ServiceClient {
    name: Arc<str>,
    base_url: Arc<str>,
    service: WireService,
    breaker: Breaker,
    retry: RetryLayer,
}

impl fmt::Debug for ServiceClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceClient")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

impl ServiceClient {
    /// Starts a builder for the service `name` (used for the breaker, logs
    /// and events) at `base_url`, e.g. `http://127.0.0.1:3000`.
    pub fn builder(name: impl Into<Arc<str>>, base_url: impl Into<String>) -> ServiceClientBuilder {
        let name = name.into();
        ServiceClientBuilder {
            retry: RetryLayer::builder(name.clone()),
            breaker: Breaker::builder(name.clone()),
            name,
            base_url: base_url.into(),
            timeouts: ByMethod::default(),
            deadline: Duration::from_secs(30),
            min_budget: Duration::from_millis(1),
            max_body: 4 * 1024 * 1024,
            http: None,
            wire: Vec::new(),
            bypass: false,
        }
    }

    /// The breaker guarding the service, for health endpoints.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// Retry counts, for metrics.
    pub fn retry_stats(&self) -> RetryStats {
        self.retry.stats()
    }

    /// `GET path`, parsing the JSON answer.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let res = self.send_json(Method::GET, path, None, None::<&()>).await?;
        decode(res)
    }

    /// `POST path` with a JSON body. Not retried: a POST may not be safe to
    /// send twice; see [`post_idempotent`](ServiceClient::post_idempotent).
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let res = self.send_json(Method::POST, path, None, Some(body)).await?;
        decode(res)
    }

    /// `POST path` with an `Idempotency-Key`, which makes it retryable: the
    /// server is expected to apply a key once.
    pub async fn post_idempotent<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        key: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let res = self
            .send_json(Method::POST, path, Some(key), Some(body))
            .await?;
        decode(res)
    }

    /// `PUT path` with a JSON body, parsing the JSON answer.
    pub async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let res = self.send_json(Method::PUT, path, None, Some(body)).await?;
        decode(res)
    }

    /// `DELETE path`; any answer body is ignored.
    pub async fn delete(&self, path: &str) -> Result<(), ClientError> {
        self.send_json(Method::DELETE, path, None, None::<&()>)
            .await?;
        Ok(())
    }

    /// Sends a request through the whole stack as it is; the URI must be
    /// absolute. Non-2xx answers are returned, not turned into errors.
    pub async fn send(&self, req: Request<Full<Bytes>>) -> Result<Response<Bytes>, BoxError> {
        self.service.clone().oneshot(req).await
    }

    async fn send_json<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        idempotency_key: Option<&str>,
        body: Option<&B>,
    ) -> Result<Response<Bytes>, ClientError> {
        let url = format!("{}/{}", self.base_url, path.trim_start_matches('/'));
        let mut req = Request::builder()
            .method(method)
            .uri(&url)
            .header(ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(key) = idempotency_key {
            req = req.header("idempotency-key", key);
        }
        let body = match body {
            Some(body) => {
                req = req.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                Full::new(Bytes::from(
                    serde_json::to_vec(body).map_err(ClientError::Encode)?,
                ))
            }
            None => Full::default(),
        };
        let req = req
            .body(body)
            .map_err(|e| ClientError::InvalidRequest(format!("{url}: {e}")))?;
        let res = self.send(req).await.map_err(ClientError::Unavailable)?;
        if res.status().is_success() {
            Ok(res)
        } else {
            let status = res.status();
            Err(ClientError::Status {
                status,
                body: res.into_body(),
            })
        }
    }
}

fn decode<T: DeserializeOwned>(res: Response<Bytes>) -> Result<T, ClientError> {
    serde_json::from_slice(res.body()).map_err(ClientError::Decode)
}
