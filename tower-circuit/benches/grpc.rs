//! What the gRPC client stack costs per unary call, layer by layer and
//! whole, with raw requests and through tonic's client.
//!
//! ```text
//! cargo bench -p tower-circuit --features grpc --bench grpc
//! ```
//!
//! The inner service stands in for the HTTP/2 client: it reads the
//! request body to its end, as a connection would, and answers `GetUser`
//! at once with one small message and `grpc-status: 0` in the trailers;
//! the loop reads that body to its end too, as tonic does (the breaker
//! decides on the trailers). Each service is built once; current-thread
//! runtime.
//!
//! - `raw/*`: a `POST /user.UserService/GetUser` with
//!   `content-type: application/grpc`, its body one `Full<Bytes>` chunk.
//!   No call allocates outside the layers: the request's header map comes
//!   back as the response's headers and is sent again, and the trailers'
//!   map goes back to the inner service after it was read. Rows: the bare
//!   service, each layer alone ([`StatusLayer`], [`ReplayLayer`] with
//!   GetUser in the table, [`RetryLayer`] with [`GrpcRetryClassifier`] and
//!   the table, the gRPC breaker closed, [`RequestTimeoutLayer`] with
//!   [`Fixed`], [`DeadlineLayer`], and [`PropagateDeadlineLayer`] inside a
//!   deadline, which writes `grpc-timeout`), then the whole stack in the
//!   order the demo's order service writes it
//!   (`demo-services/src/order/upstream/grpc.rs`), without its request-id
//!   and signing layers, as the HTTP stack's row in `layers` leaves them out.
//! - `tonic/*`: the same call made by `tonic::client::Grpc::unary` with a
//!   bytes codec (no prost: the message is already encoded), over the bare
//!   service and over the whole stack: what a tonic caller pays.
//!
//! The allocations per call are printed before each row's figures.

use std::convert::Infallible;
use std::fmt::Debug;
use std::future::Future;
use std::hint::black_box;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use criterion::Criterion;
use http::header::{CONTENT_TYPE, HeaderName, TE};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use tokio::runtime::{Builder, Runtime};
use tokio::time::Instant;
use tonic::Status;
use tonic::client::Grpc;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_circuit::BoxError;
use tower_circuit::breaker::{Breaker, Config};
use tower_circuit::grpc::StatusLayer;
use tower_circuit::grpc::replay::ReplayLayer;
use tower_circuit::grpc::retry::{GrpcMethods, GrpcRetryClassifier};
use tower_circuit::retry::RetryLayer;
use tower_circuit::timeout::{DeadlineLayer, Fixed, PropagateDeadlineLayer, RequestTimeoutLayer};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocation_count;

/// The method called, as it appears on the wire.
const GET_USER: &str = "/user.UserService/GetUser";

/// `GetUserRequest { id: 7 }` in a gRPC frame: not compressed, 2 bytes.
const REQUEST_FRAME: &[u8] = b"\x00\x00\x00\x00\x02\x08\x07";

/// The encoded `GetUserRequest { id: 7 }` alone, as tonic's codec takes it.
const REQUEST_MESSAGE: &[u8] = b"\x08\x07";

/// `User { id: 7, name: "Ada" }` in a gRPC frame: not compressed, 7 bytes.
const REPLY_FRAME: &[u8] = b"\x00\x00\x00\x00\x07\x08\x07\x12\x03Ada";

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// The demo's settings (`Resilience::default()` in the order service).
const CALL_DEADLINE: Duration = Duration::from_secs(15);
const TIMEOUT_GET: Duration = Duration::from_secs(3);
const MIN_BUDGET: Duration = Duration::from_millis(10);

/// Calls made before counting allocations, so that lazy initialisation
/// (the runtime's first poll, the header maps' first growth) is not counted.
const ALLOC_WARM_UP_CALLS: u64 = 1_000;

/// Calls over which allocations are counted.
const ALLOC_CALLS: u64 = 100_000;

// === the inner service ===

/// A header map handed back and forth between the loop and the inner
/// service, so that no call allocates a map for its trailers.
#[derive(Clone, Default)]
struct Spare(Arc<Mutex<Option<HeaderMap>>>);

impl Spare {
    fn take(&self) -> HeaderMap {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        slot.take().unwrap_or_default()
    }

    fn put(&self, map: HeaderMap) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(map);
    }
}

/// The stand-in for the HTTP/2 client: reads the request body, then
/// answers OK with one message.
#[derive(Clone)]
struct Upstream {
    spare: Spare,
}

impl<B> Service<Request<B>> for Upstream
where
    B: Body,
    B::Error: Debug,
{
    type Response = Response<Reply>;
    type Error = BoxError;
    type Future = Answer<B>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (parts, body) = req.into_parts();
        Answer {
            body,
            headers: Some(parts.headers),
            trailers: Some(self.spare.take()),
        }
    }
}

pin_project_lite::pin_project! {
    /// [`Upstream`]'s response future: drains the request body, then
    /// answers, reusing the request's header map for the response's.
    struct Answer<B> {
        #[pin]
        body: B,
        headers: Option<HeaderMap>,
        trailers: Option<HeaderMap>,
    }
}

impl<B> Future for Answer<B>
where
    B: Body,
    B::Error: Debug,
{
    type Output = Result<Response<Reply>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        while let Some(frame) = ready!(this.body.as_mut().poll_frame(cx)) {
            black_box(frame.expect("the request body reads"));
        }
        let mut headers = this.headers.take().expect("polled after completion");
        headers.clear();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        let reply = Reply {
            data: Some(Bytes::from_static(REPLY_FRAME)),
            trailers: this.trailers.take(),
        };
        let mut res = Response::new(reply);
        *res.headers_mut() = headers;
        Poll::Ready(Ok(res))
    }
}

/// A unary answer's body: one message, then `grpc-status: 0`.
struct Reply {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Body for Reply {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(data) = this.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(this.trailers.take().map(|mut trailers| {
            trailers.clear();
            // A `HeaderName` constant: inserting a name given as `&str`
            // copies it.
            trailers.insert(GRPC_STATUS, HeaderValue::from_static("0"));
            Ok(Frame::trailers(trailers))
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

// === raw requests ===

/// The `GetUser` request, in `headers` (cleared first).
fn request(uri: &Uri, mut headers: HeaderMap) -> Request<Full<Bytes>> {
    headers.clear();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(TE, HeaderValue::from_static("trailers"));
    let mut req = Request::new(Full::new(Bytes::from_static(REQUEST_FRAME)));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = uri.clone();
    *req.version_mut() = Version::HTTP_2;
    *req.headers_mut() = headers;
    req
}

/// `calls` raw calls in a row, each response read to its end.
async fn run_raw<S, RB>(svc: &mut S, spare: &Spare, calls: u64)
where
    S: Service<Request<Full<Bytes>>, Response = Response<RB>>,
    S::Error: Debug,
    RB: Body,
    RB::Error: Debug,
{
    let uri = Uri::from_static(GET_USER);
    let mut headers = HeaderMap::new();
    for _ in 0..calls {
        let req = request(&uri, headers);
        let res = svc.ready().await.unwrap().call(black_box(req)).await;
        let (parts, body) = res.expect("the call succeeds").into_parts();
        let mut body = pin!(body);
        while let Some(frame) = body.as_mut().frame().await {
            match frame.expect("the body reads").into_trailers() {
                Ok(trailers) => spare.put(trailers),
                Err(frame) => drop(black_box(frame)),
            }
        }
        headers = parts.headers;
    }
}

fn measure_raw<S, RB>(c: &mut Criterion, rt: &Runtime, name: &str, spare: &Spare, svc: S)
where
    S: Service<Request<Full<Bytes>>, Response = Response<RB>> + Clone,
    S::Error: Debug,
    RB: Body,
    RB::Error: Debug,
{
    let allocs = rt.block_on(async {
        let mut svc = svc.clone();
        run_raw(&mut svc, spare, ALLOC_WARM_UP_CALLS).await;
        let before = allocation_count()?;
        run_raw(&mut svc, spare, ALLOC_CALLS).await;
        Some((allocation_count()? - before) as f64 / ALLOC_CALLS as f64)
    });
    println!("allocs/call raw/{name}: {:.2}", allocs.unwrap_or(f64::NAN));
    c.bench_function(&format!("grpc/raw/{name}"), |b| {
        b.iter_custom(|iters| {
            let mut svc = svc.clone();
            rt.block_on(async {
                let start = Instant::now();
                run_raw(&mut svc, spare, iters).await;
                start.elapsed()
            })
        })
    });
}

// === through tonic ===

/// Messages as they are: the request is encoded already, the reply is
/// handed over undecoded. What a prost codec would add is the same with
/// or without the layers.
#[derive(Clone, Copy, Default)]
struct BytesCodec;

impl Codec for BytesCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = BytesCodec;
    type Decoder = BytesCodec;

    fn encoder(&mut self) -> Self::Encoder {
        BytesCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        BytesCodec
    }
}

impl Encoder for BytesCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        bytes::BufMut::put(dst, item);
        Ok(())
    }
}

impl Decoder for BytesCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// `calls` calls of `GetUser` through tonic's client.
async fn run_tonic<S, RB>(grpc: &mut Grpc<S>, calls: u64)
where
    S: Service<Request<tonic::body::Body>, Response = Response<RB>>,
    S::Error: Into<BoxError> + Debug,
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    for _ in 0..calls {
        grpc.ready().await.expect("ready");
        let message = tonic::Request::new(Bytes::from_static(REQUEST_MESSAGE));
        let path = PathAndQuery::from_static(GET_USER);
        let res = grpc.unary(black_box(message), path, BytesCodec).await;
        black_box(res.expect("the call succeeds"));
    }
}

fn measure_tonic<S, RB>(c: &mut Criterion, rt: &Runtime, name: &str, svc: S)
where
    S: Service<Request<tonic::body::Body>, Response = Response<RB>> + Clone,
    S::Error: Into<BoxError> + Debug,
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    let origin = Uri::from_static("http://127.0.0.1:3000");
    let allocs = rt.block_on(async {
        let mut grpc = Grpc::with_origin(svc.clone(), origin.clone());
        run_tonic(&mut grpc, ALLOC_WARM_UP_CALLS).await;
        let before = allocation_count()?;
        run_tonic(&mut grpc, ALLOC_CALLS).await;
        Some((allocation_count()? - before) as f64 / ALLOC_CALLS as f64)
    });
    println!(
        "allocs/call tonic/{name}: {:.2}",
        allocs.unwrap_or(f64::NAN)
    );
    c.bench_function(&format!("grpc/tonic/{name}"), |b| {
        b.iter_custom(|iters| {
            let mut grpc = Grpc::with_origin(svc.clone(), origin.clone());
            rt.block_on(async {
                let start = Instant::now();
                run_tonic(&mut grpc, iters).await;
                start.elapsed()
            })
        })
    });
}

// === the rows ===

/// GetUser, idempotent, as the demo declares it.
fn methods() -> GrpcMethods {
    GrpcMethods::new().idempotent(GET_USER)
}

fn retry() -> RetryLayer<GrpcRetryClassifier, GrpcMethods> {
    RetryLayer::builder("bench")
        .idempotency(methods())
        .build()
        .expect("valid settings")
        .classifier(GrpcRetryClassifier)
}

/// A breaker with the default window (10 s in 10 buckets), as the demo's.
fn breaker() -> Breaker {
    Breaker::new("bench", Config::default()).expect("valid config")
}

/// Checks, outside the timed loops, that `breaker` judged the calls it
/// saw, all successes: the rows measured the path that reads the
/// trailers, not one that drops the call unrecorded.
fn assert_counted(breaker: &Breaker) {
    let stats = breaker.stats();
    assert!(stats.calls > 0, "the breaker recorded no call");
    assert_eq!(stats.failures, 0, "the breaker recorded failures");
}

/// Checks, outside the timed loops, that the propagation row writes
/// `grpc-timeout`, as it does only for gRPC requests.
fn assert_propagates(rt: &Runtime) {
    let check = tower::service_fn(|req: Request<Full<Bytes>>| async move {
        assert!(req.headers().contains_key("grpc-timeout"));
        assert!(req.headers().contains_key("x-request-budget-ms"));
        Ok::<_, BoxError>(Response::new(()))
    });
    let svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(CALL_DEADLINE))
        .layer(PropagateDeadlineLayer::new().min_budget(MIN_BUDGET))
        .service(check);
    let uri = Uri::from_static(GET_USER);
    rt.block_on(svc.oneshot(request(&uri, HeaderMap::new())))
        .expect("the call succeeds");
}

/// The demo's client stack (`demo-services/src/order/upstream/grpc.rs`)
/// over `$inner`, outermost first, without the request id and the
/// signing. A macro because the stack's type depends on the request body
/// (raw or tonic's), and written out once so both rows measure the same.
macro_rules! demo_stack {
    ($breaker:expr, $inner:expr) => {
        ServiceBuilder::new()
            .layer(StatusLayer::new())
            .layer(DeadlineLayer::new(CALL_DEADLINE))
            .layer(ReplayLayer::new(methods()))
            .layer(retry())
            .layer($breaker.grpc_layer())
            .layer(RequestTimeoutLayer::new(Fixed(TIMEOUT_GET)))
            .layer(PropagateDeadlineLayer::new().min_budget(MIN_BUDGET))
            .service($inner)
    };
}

fn rows(c: &mut Criterion) {
    let rt = Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let spare = Spare::default();
    let upstream = Upstream {
        spare: spare.clone(),
    };

    measure_raw(c, &rt, "bare", &spare, upstream.clone());
    measure_raw(
        c,
        &rt,
        "status",
        &spare,
        StatusLayer::new().layer(upstream.clone()),
    );
    measure_raw(
        c,
        &rt,
        "replay",
        &spare,
        ReplayLayer::new(methods()).layer(upstream.clone()),
    );
    measure_raw(c, &rt, "retry", &spare, retry().layer(upstream.clone()));
    let alone = breaker();
    measure_raw(
        c,
        &rt,
        "breaker",
        &spare,
        alone.grpc_layer().layer(upstream.clone()),
    );
    assert_counted(&alone);
    measure_raw(
        c,
        &rt,
        "request_timeout",
        &spare,
        RequestTimeoutLayer::new(Fixed(TIMEOUT_GET)).layer(upstream.clone()),
    );
    measure_raw(
        c,
        &rt,
        "deadline",
        &spare,
        DeadlineLayer::new(CALL_DEADLINE).layer(upstream.clone()),
    );
    let propagate = ServiceBuilder::new()
        .layer(DeadlineLayer::new(CALL_DEADLINE))
        .layer(PropagateDeadlineLayer::new().min_budget(MIN_BUDGET))
        .service(upstream.clone());
    assert_propagates(&rt);
    measure_raw(c, &rt, "deadline_and_propagate", &spare, propagate);
    let raw = breaker();
    let stack = demo_stack!(raw, upstream.clone());
    measure_raw(c, &rt, "full_stack", &spare, stack);
    assert_counted(&raw);

    measure_tonic(c, &rt, "bare", upstream.clone());
    let tonic = breaker();
    measure_tonic(c, &rt, "full_stack", demo_stack!(tonic, upstream.clone()));
    assert_counted(&tonic);
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    rows(&mut c);
    c.final_summary();
}
