//! What service authentication costs per request.
//!
//! ```text
//! cargo bench -p tower-jwt-service-auth --bench auth
//! ```
//!
//! - `sign` / `verify`: one token, HS256 and EdDSA, through this crate's
//!   `Signer` and strict `Verifier`; `jsonwebtoken_verify` is jsonwebtoken
//!   alone on the same token (signature and its own default checks), for
//!   the overhead of the strict checks.
//! - `server`: the `VerifyLayer` with a cache hit, against the same layer
//!   with the cache off (a full verification per request), and against
//!   `bare`, the same requests (built the same way, with the token) to the
//!   same inner service without the layer: `verify_cache_hit - bare` is
//!   the layer's own cost on a hit.
//! - `client`: the `SignTokenLayer` with its cached token, against signing
//!   a token on every call (no token cache).

use std::convert::Infallible;
use std::hint::black_box;

use criterion::Criterion;
use http::{Request, Response};
use tokio::runtime::{Builder, Runtime};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_jwt_service_auth::jwt::client::SignTokenLayer;
use tower_jwt_service_auth::jwt::keys::{KeySet, SigningKey, VerifyingKey};
use tower_jwt_service_auth::jwt::server::VerifyLayer;
use tower_jwt_service_auth::jwt::sign::Signer;
use tower_jwt_service_auth::jwt::verify::Verifier;

const ORDER_KEY: &[u8] = include_bytes!("../tests/keys/order-service.key.pem");
const ORDER_PUB: &[u8] = include_bytes!("../tests/keys/order-service.pub.pem");
const SECRET: &[u8] = b"an HS256 secret of at least 32 bytes!";

fn keys() -> KeySet {
    KeySet::new()
        .with(VerifyingKey::ed25519_pem("ed", "order-service", ORDER_PUB).expect("key"))
        .with(VerifyingKey::hs256("hs", SECRET).expect("key"))
}

fn signers() -> [(
    &'static str,
    Signer,
    jsonwebtoken::DecodingKey,
    jsonwebtoken::Algorithm,
); 2] {
    [
        (
            "hs256",
            Signer::new(
                "order-service",
                SigningKey::hs256("hs", SECRET).expect("key"),
            ),
            jsonwebtoken::DecodingKey::from_secret(SECRET),
            jsonwebtoken::Algorithm::HS256,
        ),
        (
            "eddsa",
            Signer::new(
                "order-service",
                SigningKey::ed25519_pem("ed", ORDER_KEY).expect("key"),
            ),
            jsonwebtoken::DecodingKey::from_ed_pem(ORDER_PUB).expect("key"),
            jsonwebtoken::Algorithm::EdDSA,
        ),
    ]
}

fn tokens(c: &mut Criterion) {
    let verifier = Verifier::new("user-service", keys());
    for (name, signer, decoding, alg) in signers() {
        c.bench_function(&format!("sign/{name}"), |b| {
            b.iter(|| black_box(signer.sign("user-service").expect("signed")))
        });
        let token = signer.sign("user-service").expect("signed").token;
        c.bench_function(&format!("verify/{name}"), |b| {
            b.iter(|| black_box(verifier.verify(black_box(&token)).expect("valid")))
        });
        let mut plain = jsonwebtoken::Validation::new(alg);
        plain.set_audience(&["user-service"]);
        c.bench_function(&format!("jsonwebtoken_verify/{name}"), |b| {
            b.iter(|| {
                let data =
                    jsonwebtoken::decode::<serde_json::Value>(black_box(&token), &decoding, &plain);
                black_box(data.expect("valid"))
            })
        });
    }
}

fn runtime() -> Runtime {
    Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Runs `iters` requests through `svc`, each built by `req`.
fn run<S, B>(rt: &Runtime, svc: &S, iters: u64, req: impl Fn() -> Request<B>) -> std::time::Duration
where
    S: Service<Request<B>> + Clone,
    S::Error: std::fmt::Debug,
{
    let mut svc = svc.clone();
    rt.block_on(async {
        let start = tokio::time::Instant::now();
        for _ in 0..iters {
            let res = svc.ready().await.expect("ready").call(req()).await;
            let _ = black_box(res.expect("answered"));
        }
        start.elapsed()
    })
}

fn layers(c: &mut Criterion) {
    let rt = runtime();
    let ok =
        service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) });
    let signer = Signer::new(
        "order-service",
        SigningKey::ed25519_pem("ed", ORDER_KEY).expect("key"),
    );
    let bearer = format!(
        "Bearer {}",
        signer.sign("user-service").expect("signed").token
    );
    let request = || {
        Request::get("/users/7")
            .header("authorization", bearer.as_str())
            .body(())
            .expect("request")
    };

    c.bench_function("server/bare", |b| {
        b.iter_custom(|n| run(&rt, &ok, n, request))
    });
    let cached = VerifyLayer::new(Verifier::new("user-service", keys())).layer(ok);
    c.bench_function("server/verify_cache_hit", |b| {
        b.iter_custom(|n| run(&rt, &cached, n, request))
    });
    let uncached = VerifyLayer::with_cache(Verifier::new("user-service", keys()), 0).layer(ok);
    c.bench_function("server/verify_no_cache", |b| {
        b.iter_custom(|n| run(&rt, &uncached, n, request))
    });

    let bare = || Request::get("/users/7").body(()).expect("request");
    c.bench_function("client/bare", |b| b.iter_custom(|n| run(&rt, &ok, n, bare)));
    let client = SignTokenLayer::new(signer.clone(), "user-service").layer(ok);
    c.bench_function("client/cached_token", |b| {
        b.iter_custom(|n| run(&rt, &client, n, bare))
    });
    let sign_every_call = service_fn(move |mut req: Request<()>| {
        let token = signer.sign("user-service").expect("signed").token;
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header"),
        );
        ok.oneshot(req)
    });
    c.bench_function("client/sign_every_call", |b| {
        b.iter_custom(|n| run(&rt, &sign_every_call, n, bare))
    });
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    tokens(&mut c);
    layers(&mut c);
    c.final_summary();
}
