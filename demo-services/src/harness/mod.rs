//! Running the services in-process and calling them: for the `drill`
//! subcommand and for tests. Each service runs on a task, stops gracefully
//! on request, and can start again on the same address and data.

pub mod engines;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::server::ServiceState;
use crate::tls::client;
use crate::tls::identity::TlsDir;

/// A service running on a task, stoppable.
#[derive(Debug)]
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    tls: bool,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

impl Running {
    /// Its base URL: `https://` when it serves over mutual TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops it gracefully and waits until it has (at most 15 s).
    pub async fn stop(mut self) -> Result<(), Error> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(15), &mut self.task)
            .await
            .map_err(|_| format!("the service at {} did not stop within 15 s", self.addr))??
            .map_err(Into::into)
    }
}

/// What starting, stopping or calling a service can fail with.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

async fn listen(addr: Option<SocketAddr>) -> Result<TcpListener, Error> {
    let addr = addr.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}").into())
}

fn spawn<F>(
    listener: TcpListener,
    tls: bool,
    run: impl FnOnce(TcpListener, oneshot::Receiver<()>) -> F,
) -> Result<Running, Error>
where
    F: Future<Output = io::Result<()>> + Send + 'static,
{
    let addr = listener.local_addr()?;
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(run(listener, rx));
    Ok(Running {
        addr,
        tls,
        stop: Some(tx),
        task,
    })
}

async fn stopped(rx: oneshot::Receiver<()>) {
    let _ = rx.await;
}

/// Starts the service of `state` on `addr` (or a fresh loopback port) on
/// a task, serving its whole stack; keep a clone of `state` for its
/// breakers, outbox or metrics.
pub async fn start(state: impl ServiceState, addr: Option<SocketAddr>) -> Result<Running, Error> {
    let listener = listen(addr).await?;
    let app = state.app();
    let tls = state.parts().tls.is_some();
    spawn(listener, tls, move |l, rx| state.run(l, app, stopped(rx)))
}

/// An answer: status, headers and the body as JSON (or `Value::Null`).
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body, parsed.
    pub json: Value,
    /// The body as sent.
    pub raw: Bytes,
}

impl Answer {
    /// The JSON body's `error` code.
    pub fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or("<no error field>")
    }
}

/// An HTTP client for tests: plaintext ([`Http::default`]) or mutual TLS
/// ([`Http::over_tls`]).
#[derive(Debug, Clone)]
pub struct Http(Client);

#[derive(Debug, Clone)]
enum Client {
    Plain(HyperClient<HttpConnector, Full<Bytes>>),
    Tls(HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>),
}

impl Default for Http {
    fn default() -> Self {
        Http(Client::Plain(
            HyperClient::builder(TokioExecutor::new()).build_http(),
        ))
    }
}

impl Http {
    /// A client calling `service` over mutual TLS with `tls` (for tests,
    /// usually the gateway's directory): it presents `tls`'s certificate
    /// and accepts only `service`'s, as the services' own clients do
    /// ([`crate::tls::client`]). `https://` URLs only.
    pub fn over_tls(tls: &TlsDir, service: &str) -> Result<Http, Error> {
        let expect = client::expected(tls, service)?;
        let config = client::client_config(tls, expect, client::ALPN_HTTP1)?;
        Ok(Http(Client::Tls(
            HyperClient::builder(TokioExecutor::new()).build(client::connector(config)),
        )))
    }

    /// Sends `method url` with an optional bearer token, extra headers and
    /// body. Panics when the server cannot be reached within 10 s: for
    /// tests; see [`Http::try_send`].
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Answer {
        match self.try_send(method, url, token, headers, body).await {
            Ok(answer) => answer,
            Err(e) => panic!("{url}: {e}"),
        }
    }

    /// Sends `method url`; an error when there is no answer within 10 s.
    pub async fn try_send(
        &self,
        method: Method,
        url: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Answer, Error> {
        let mut req = Request::builder().method(method).uri(url);
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(Full::new(body.into()))?;
        let sent = async {
            match &self.0 {
                Client::Plain(http) => http.request(req).await,
                Client::Tls(http) => http.request(req).await,
            }
        };
        let res = tokio::time::timeout(Duration::from_secs(10), sent)
            .await
            .map_err(|_| "no answer within 10 s")??;
        let (parts, body) = res.into_parts();
        let raw = body.collect().await?.to_bytes();
        let json = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            json,
            raw,
        })
    }

    /// `GET url` with a token.
    pub async fn get(&self, url: &str, token: &str) -> Answer {
        self.send(Method::GET, url, Some(token), &[], Bytes::new())
            .await
    }

    /// `POST url` with a token and a JSON body.
    pub async fn post(&self, url: &str, token: &str, body: &Value) -> Answer {
        self.post_with(url, token, &[], body).await
    }

    /// `POST url` with a token, extra headers and a JSON body.
    pub async fn post_with(
        &self,
        url: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> Answer {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        self.send(Method::POST, url, Some(token), &all, body.to_string())
            .await
    }
}
