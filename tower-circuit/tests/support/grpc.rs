//! A hand-made gRPC server on 127.0.0.1:0 over hyper's HTTP/2, whose
//! answer each method names, and the HTTP/2 client the tests call it with.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// One step of a response body.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// A length-prefixed gRPC message.
    Message(&'static [u8]),
    /// Trailers with these `(name, value)` pairs.
    Trailers(&'static [(&'static str, &'static str)]),
    /// The body fails, once the test calls [`Server::release`]: hyper
    /// resets the stream. (Failing at once, the reset could overtake the
    /// head and the message, and the error would not be mid-stream.)
    Error,
    /// The body never goes on.
    Hang,
}

/// A whole answer: status, head and body.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: &'static [(&'static str, &'static str)],
    pub(crate) body: &'static [Step],
}

/// The answer to each method, by path.
fn answer(path: &str) -> Answer {
    const GRPC: (&str, &str) = ("content-type", "application/grpc");
    let ok = StatusCode::OK;
    match path {
        "/test.Svc/TrailersOnlyUnavailable" => Answer {
            status: ok,
            headers: &[GRPC, ("grpc-status", "14"), ("grpc-message", "down")],
            body: &[],
        },
        "/test.Svc/Unavailable" => Answer {
            status: ok,
            headers: &[GRPC],
            body: &[
                Step::Message(b"hi"),
                Step::Trailers(&[("grpc-status", "14")]),
            ],
        },
        "/test.Svc/NotFound" => Answer {
            status: ok,
            headers: &[GRPC],
            body: &[
                Step::Message(b"hi"),
                Step::Trailers(&[("grpc-status", "5")]),
            ],
        },
        "/test.Svc/Ok" => Answer {
            status: ok,
            headers: &[GRPC],
            body: &[
                Step::Message(b"hi"),
                Step::Trailers(&[("grpc-status", "0")]),
            ],
        },
        "/test.Svc/MidStreamError" => Answer {
            status: ok,
            headers: &[GRPC],
            body: &[Step::Message(b"hi"), Step::Error],
        },
        "/test.Svc/NoStatus" => Answer {
            status: ok,
            headers: &[GRPC],
            body: &[Step::Message(b"hi")],
        },
        "/test.Svc/TrailersWithoutStatus" => Answer {
            status: ok,
            headers: &[GRPC],
            body: &[Step::Message(b"hi"), Step::Trailers(&[("x-other", "1")])],
        },
        "/test.Svc/Hang" => Answer {
            status: ok,
            headers: &[GRPC],
            body: &[Step::Message(b"hi"), Step::Hang],
        },
        "/test.Svc/BudgetSpent" => Answer {
            status: ok,
            headers: &[GRPC, ("grpc-status", "4"), ("x-request-budget-ms", "0")],
            body: &[],
        },
        "/test.Svc/BudgetSpentInTrailers" => Answer {
            status: ok,
            headers: &[GRPC],
            body: &[Step::Trailers(&[
                ("grpc-status", "4"),
                ("x-request-budget-ms", "0"),
            ])],
        },
        "/test.Svc/Proxy503" => Answer {
            status: StatusCode::SERVICE_UNAVAILABLE,
            headers: &[("content-type", "text/plain")],
            body: &[],
        },
        "/test.Svc/Bare404" => Answer {
            status: StatusCode::NOT_FOUND,
            headers: &[],
            body: &[],
        },
        "/test.Svc/Bare401" => Answer {
            status: StatusCode::UNAUTHORIZED,
            headers: &[],
            body: &[],
        },
        _ => Answer {
            status: ok,
            headers: &[GRPC, ("grpc-status", "12")],
            body: &[],
        },
    }
}

fn header_map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(*name, HeaderValue::from_static(value));
    }
    map
}

/// A body that plays its steps; `release` holds back its error.
pub(crate) struct Script(VecDeque<Step>, Option<oneshot::Receiver<()>>);

impl Body for Script {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.0.pop_front() {
            None => Poll::Ready(None),
            Some(Step::Message(payload)) => {
                let mut framed = vec![0u8];
                framed.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
                framed.extend_from_slice(payload);
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(framed)))))
            }
            Some(Step::Trailers(pairs)) => {
                Poll::Ready(Some(Ok(Frame::trailers(header_map(pairs)))))
            }
            Some(Step::Error) => {
                if let Some(release) = &mut self.1
                    && Pin::new(release).poll(cx).is_pending()
                {
                    self.0.push_front(Step::Error);
                    return Poll::Pending;
                }
                Poll::Ready(Some(Err(std::io::Error::other("server body failed"))))
            }
            Some(Step::Hang) => {
                self.0.push_front(Step::Hang);
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

/// A running server: its address and how many requests reached it.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    release: Mutex<Option<oneshot::Sender<()>>>,
}

impl Server {
    /// Lets the (first) body that fails mid-stream fail.
    pub(crate) fn release(&self) {
        if let Some(tx) = self.release.lock().unwrap().take() {
            let _ = tx.send(());
        }
    }

    pub(crate) fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub(crate) fn uri(&self, method: &str) -> String {
        format!("http://{}/test.Svc/{method}", self.addr)
    }
}

/// Starts the server on 127.0.0.1:0, HTTP/2 only (prior knowledge, as
/// gRPC over cleartext does).
pub(crate) async fn serve() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let (release, held) = oneshot::channel();
    let held = Arc::new(Mutex::new(Some(held)));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            let held = held.clone();
            let service = service_fn(move |req: Request<Incoming>| {
                counter.fetch_add(1, Ordering::SeqCst);
                let answer = answer(req.uri().path());
                let fails = answer.body.iter().any(|s| matches!(s, Step::Error));
                let release = if fails {
                    held.lock().unwrap().take()
                } else {
                    None
                };
                async move {
                    let steps = answer.body.iter().cloned().collect();
                    let mut res = Response::new(Script(steps, release));
                    *res.status_mut() = answer.status;
                    *res.headers_mut() = header_map(answer.headers);
                    Ok::<_, Infallible>(res)
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Server {
        addr,
        hits,
        release: Mutex::new(Some(release)),
    }
}

/// The HTTP/2 cleartext client gRPC calls go through.
pub(crate) type H2Client<B = Empty<Bytes>> = Client<HttpConnector, B>;

pub(crate) fn client<B>() -> H2Client<B>
where
    B: Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// A gRPC request to `uri`, with no message (the server does not read it).
pub(crate) fn grpc_request(uri: &str) -> Request<Empty<Bytes>> {
    Request::post(uri)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Empty::new())
        .unwrap()
}
