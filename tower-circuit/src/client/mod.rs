//! A JSON facade over a client stack you build, and the `hyper-util`
//! service at its bottom.
//!
//! [`ServiceClient`] offers `get`, `post`, `put` and `delete` helpers that
//! send and parse JSON through any `Service<Request<Full<Bytes>>, Response
//! = Response<Bytes>>`: usually the [recommended
//! stack](crate#the-recommended-client-stack) over [`wire`], written out
//! where it is used, outermost first, so it reads as what it is. [`wire`]
//! reads each whole response body, capped; put it innermost, inside the
//! per-attempt timeout, so a server that stalls mid-body counts as a
//! timeout too.
//!
//! Behind the `client` feature.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use tower::ServiceBuilder;
//! use tower_circuit::breaker::Breaker;
//! use tower_circuit::client::{DEFAULT_MAX_BODY, ServiceClient, wire};
//! use tower_circuit::retry::RetryLayer;
//! use tower_circuit::timeout::{ByMethod, DeadlineLayer, PropagateDeadlineLayer, RequestTimeoutLayer};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! #[derive(serde::Deserialize)]
//! struct User { id: u64, name: String }
//!
//! let breaker = Breaker::builder("user-service").build()?;
//! let retry = RetryLayer::builder("user-service").build()?;
//! let http = Client::builder(TokioExecutor::new()).build_http();
//! let stack = ServiceBuilder::new()
//!     .layer(DeadlineLayer::new(Duration::from_secs(15)))
//!     .layer(retry)
//!     .layer(breaker.layer())
//!     .layer(RequestTimeoutLayer::new(ByMethod::default()))
//!     .layer(PropagateDeadlineLayer::new())
//!     .service(wire(http, DEFAULT_MAX_BODY));
//! let users = ServiceClient::new("user-service", "http://127.0.0.1:3000", stack)?;
//! let user: User = users.get("/users/7").await?;
//! println!("{} is {}", user.id, user.name);
//! # Ok(())
//! # }
//! ```

mod error;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt, service_fn};

pub use self::error::{BuildError, ClientError};

use crate::BoxError;

/// A client stack behind one type: requests with a buffered body,
/// responses with the whole body read.
pub type WireService = BoxCloneSyncService<Request<Full<Bytes>>, Response<Bytes>, BoxError>;

/// The plain HTTP/1 client [`wire`] usually sends through; any
/// hyper-util client with a buffered body will do (over TLS, say).
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// The response body [`wire`] reads at most unless told otherwise: 4 MiB.
pub const DEFAULT_MAX_BODY: usize = 4 * 1024 * 1024;

/// The bottom of a client stack: sends through `http` and reads the whole
/// response body, failing the attempt when it is longer than `max_body`
/// bytes. Reading the body here, under the per-attempt timeout, makes a
/// server that stalls mid-body a timeout like any other.
///
/// `http` may use any connector: [`HttpClient`]'s plain TCP, or one that
/// wraps it in TLS.
pub fn wire<C>(http: Client<C, Full<Bytes>>, max_body: usize) -> WireService
where
    C: Connect + Clone + Send + Sync + 'static,
{
    BoxCloneSyncService::new(service_fn(move |req| {
        let http = http.clone();
        async move {
            let res = http.request(req).await?;
            let (parts, body) = res.into_parts();
            let bytes = Limited::new(body, max_body).collect().await?.to_bytes();
            Ok::<_, BoxError>(Response::from_parts(parts, bytes))
        }
    }))
}

/// A JSON client for one target service over the stack the caller built.
/// Cheap to clone; clones share the stack (its breaker, retry budget and
/// connection pool).
#[derive(Clone)]
pub struct ServiceClient {
    name: Arc<str>,
    base_url: Arc<str>,
    service: WireService,
}

impl fmt::Debug for ServiceClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceClient")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl ServiceClient {
    /// A client for the service `name` (for the caller's logs and metrics)
    /// at `base_url`, e.g. `http://127.0.0.1:3000`, sending through
    /// `service`. Fails when the URL is not absolute.
    pub fn new<S>(
        name: impl Into<Arc<str>>,
        base_url: impl Into<String>,
        service: S,
    ) -> Result<ServiceClient, BuildError>
    where
        S: Service<Request<Full<Bytes>>, Response = Response<Bytes>>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        let given = base_url.into();
        let base_url = given.trim_end_matches('/').to_owned();
        base_url
            .parse::<http::Uri>()
            .ok()
            .filter(|u| u.scheme().is_some() && u.authority().is_some())
            .ok_or_else(|| BuildError::BaseUrl(given.clone()))?;
        Ok(ServiceClient {
            name: name.into(),
            base_url: base_url.into(),
            service: BoxCloneSyncService::new(service.map_err(Into::into)),
        })
    }

    /// The target service's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The base URL paths are joined to, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.base_url
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

    /// Sends a request through the stack as it is; the URI must be
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
