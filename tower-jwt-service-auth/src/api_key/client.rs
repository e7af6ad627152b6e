use std::fmt;
use std::task::{Context, Poll};

use http::Request;
use http::header::{HeaderName, HeaderValue};
use tower_layer::Layer;
use tower_service::Service;

use super::{API_KEY_HEADER, MAX_HEADER_BYTES, SERVICE_NAME_HEADER, TokenProblem};

/// Sends this service's name and API key on every outbound request, in
/// [`SERVICE_NAME_HEADER`] and [`API_KEY_HEADER`].
///
/// Both header values are checked and built once, here. The key's is
/// marked sensitive: `Debug` output (this layer's too) shows `Sensitive`
/// instead, and HTTP/2 sends it never-indexed, out of the compression
/// tables.
#[derive(Debug, Clone)]
pub struct ApiKeyClientLayer {
    service: HeaderValue,
    key: HeaderValue,
}

impl ApiKeyClientLayer {
    /// Sends `key` as the key of `service`. Both must be 1 to
    /// [`MAX_HEADER_BYTES`] visible ASCII characters without spaces, as the
    /// server requires.
    pub fn new(service: &str, key: &str) -> Result<Self, ClientConfigError> {
        Ok(ApiKeyClientLayer {
            service: header_value(SERVICE_NAME_HEADER, service, None)?,
            key: header_value(API_KEY_HEADER, key, None)?,
        })
    }

    /// Reads the service name from the environment variable `service_var`
    /// and the key from `key_var`.
    ///
    /// ```no_run
    /// use tower_jwt_service_auth::api_key::ApiKeyClientLayer;
    ///
    /// // At startup: refuse to run without credentials rather than send
    /// // requests that will all be refused.
    /// let auth = ApiKeyClientLayer::from_env("SERVICE_NAME", "NOTIFICATION_API_KEY")
    ///     .unwrap_or_else(|e| panic!("cannot call notification-service: {e}"));
    /// ```
    pub fn from_env(service_var: &str, key_var: &str) -> Result<Self, ClientConfigError> {
        let service = env(service_var, SERVICE_NAME_HEADER)?;
        let key = env(key_var, API_KEY_HEADER)?;
        Ok(ApiKeyClientLayer {
            service: header_value(SERVICE_NAME_HEADER, &service, Some(service_var))?,
            key: header_value(API_KEY_HEADER, &key, Some(key_var))?,
        })
    }

    /// The service name sent.
    pub fn service(&self) -> &str {
        // Checked to be visible ASCII when built.
        self.service.to_str().unwrap_or_default()
    }
}

impl<S> Layer<S> for ApiKeyClientLayer {
    type Service = ApiKeyClient<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ApiKeyClient {
            inner,
            service: self.service.clone(),
            key: self.key.clone(),
        }
    }
}

/// Adds the API-key headers to each request. Built by
/// [`ApiKeyClientLayer`].
#[derive(Debug, Clone)]
pub struct ApiKeyClient<S> {
    inner: S,
    service: HeaderValue,
    key: HeaderValue,
}

impl<S> ApiKeyClient<S> {
    /// Sends `layer`'s headers on `inner`'s requests; the same as
    /// `layer.layer(inner)`.
    pub fn new(inner: S, layer: &ApiKeyClientLayer) -> Self {
        layer.layer(inner)
    }

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

impl<S, B> Service<Request<B>> for ApiKeyClient<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // `insert`, not `append`: a second key would be refused.
        let headers = req.headers_mut();
        headers.insert(SERVICE_NAME_HEADER, self.service.clone());
        headers.insert(API_KEY_HEADER, self.key.clone());
        self.inner.call(req)
    }
}

/// Why an [`ApiKeyClientLayer`] could not be built. Never holds the key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientConfigError {
    /// The environment variable is not set.
    MissingEnv(String),
    /// A value cannot be sent in its header.
    InvalidValue {
        /// The header it was meant for.
        header: HeaderName,
        /// The environment variable it came from, if any.
        var: Option<String>,
        /// What is wrong with it (never the value itself).
        why: String,
    },
}

impl fmt::Display for ClientConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientConfigError::MissingEnv(var) => {
                write!(f, "environment variable {var} is not set")
            }
            ClientConfigError::InvalidValue { header, var, why } => {
                match var {
                    Some(var) => write!(f, "environment variable {var} ")?,
                    None => f.write_str("the value ")?,
                }
                write!(f, "cannot be sent as {header}: {why}")
            }
        }
    }
}

impl std::error::Error for ClientConfigError {}

fn env(var: &str, header: HeaderName) -> Result<String, ClientConfigError> {
    std::env::var(var).map_err(|e| match e {
        std::env::VarError::NotPresent => ClientConfigError::MissingEnv(var.to_owned()),
        std::env::VarError::NotUnicode(_) => ClientConfigError::InvalidValue {
            header,
            var: Some(var.to_owned()),
            why: "it is not valid Unicode".to_owned(),
        },
    })
}

fn header_value(
    header: HeaderName,
    value: &str,
    var: Option<&str>,
) -> Result<HeaderValue, ClientConfigError> {
    let why = match TokenProblem::of(value.as_bytes()) {
        None => None,
        Some(TokenProblem::Empty) => Some("it is empty".to_owned()),
        Some(TokenProblem::TooLong) => Some(format!("it is longer than {MAX_HEADER_BYTES} bytes")),
        Some(TokenProblem::NotVisibleAscii) => Some(
            "it holds spaces, control characters (a trailing newline?) or non-ASCII characters"
                .to_owned(),
        ),
    };
    let invalid = |why| ClientConfigError::InvalidValue {
        header: header.clone(),
        var: var.map(str::to_owned),
        why,
    };
    if let Some(why) = why {
        return Err(invalid(why));
    }
    let mut value =
        HeaderValue::from_str(value).map_err(|_| invalid("it is not a header value".to_owned()))?;
    if header == API_KEY_HEADER {
        value.set_sensitive(true);
    }
    Ok(value)
}
