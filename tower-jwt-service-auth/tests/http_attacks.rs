//! The server layers against forged and malformed requests: one test per
//! attack, each sent through `VerifyLayer` and `RequirePermissionLayer` to
//! a handler that counts its calls.
//!
//! Every refusal is asserted whole: the status, the exact
//! `WWW-Authenticate` value, the JSON body (`error` and the message, which
//! names the fault, so a test cannot pass on the wrong refusal), the
//! reason the layer counted, and that the handler never ran. Each attack
//! is also sent as a gRPC call (`content-type: application/grpc`, the same
//! `authorization` metadata) to a second service, which must refuse it
//! the gRPC way: HTTP 200, `grpc-status` 16 or 7, the JSON body's message
//! in `grpc-message`, no body, the same reason counted, no handler call. Tokens are
//! forged by hand (serde_json, base64url, jsonwebtoken's raw signing), not
//! with this crate's signer. The positive controls at the top show that the
//! same setup lets a valid token through, so the suite cannot pass by
//! refusing everything.
//!
//! Long on purpose: it is the catalogue of attacks, one short test each,
//! and reads best as one list (the README's "Refusals" points here).
//!
//! The layer reads the system clock, so times are set relative to it, each
//! at least 90 s from the 30 s leeway's edge.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use http::{Request, Response, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use tower::util::BoxCloneService;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_jwt_service_auth::jwt::claims::{TOKEN_TYPE, unix_seconds};
use tower_jwt_service_auth::jwt::keys::{KeySet, VerifyingKey};
use tower_jwt_service_auth::jwt::server::{AuthStats, RequirePermissionLayer, VerifyLayer};
use tower_jwt_service_auth::jwt::verify::{ServiceIdentity, Verifier};

const ORDER_KEY: &[u8] = include_bytes!("keys/order-service.key.pem");
const ORDER_PUB: &[u8] = include_bytes!("keys/order-service.pub.pem");
const USER_KEY: &[u8] = include_bytes!("keys/user-service.key.pem");
const SECRET: &[u8] = b"an HS256 secret of at least 32 bytes!";

const INVALID_TOKEN: &str = r#"Bearer error="invalid_token""#;
const INSUFFICIENT_SCOPE: &str = r#"Bearer error="insufficient_scope""#;

// === the service under attack ===

/// The user service: verifies tokens for `user-service` against
/// order-service's Ed25519 key (`order-1`) and a shared HS256 secret
/// (`shared-1`), trusts the issuers order-service and billing-service, and
/// requires `read:users`. Its handler counts its calls and keeps the
/// identity it was handed.
struct UserService {
    svc: BoxCloneService<Request<String>, Response<String>, Infallible>,
    verify: VerifyLayer,
    calls: Arc<AtomicUsize>,
    seen: Arc<Mutex<Option<ServiceIdentity>>>,
}

impl UserService {
    fn new() -> Self {
        let keys = KeySet::new()
            .with(VerifyingKey::ed25519_pem("order-1", "order-service", ORDER_PUB).unwrap())
            .with(VerifyingKey::hs256("shared-1", SECRET).unwrap());
        let verifier =
            Verifier::new("user-service", keys).trust_issuers(["order-service", "billing-service"]);
        let verify = VerifyLayer::new(verifier);
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(None));
        let (count, keep) = (calls.clone(), seen.clone());
        let svc = ServiceBuilder::new()
            .layer(verify.clone())
            .layer(RequirePermissionLayer::new("read:users"))
            .service(service_fn(move |req: Request<String>| {
                count.fetch_add(1, Ordering::SeqCst);
                *keep.lock().unwrap() = req.extensions().get::<ServiceIdentity>().cloned();
                async { Ok::<_, Infallible>(Response::new("handled".to_owned())) }
            }));
        UserService {
            svc: BoxCloneService::new(svc),
            verify,
            calls,
            seen,
        }
    }

    async fn send(&self, req: Request<String>) -> Response<String> {
        self.svc.clone().oneshot(req).await.unwrap()
    }

    fn handler_calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn stats(&self) -> AuthStats {
        self.verify.stats()
    }
}

/// `req` as a gRPC call: POST, `content-type: application/grpc`, `te:
/// trailers`, and the same URI and `authorization` headers.
fn as_grpc(req: &Request<String>) -> Request<String> {
    let mut grpc = Request::post(req.uri().clone())
        .body(String::new())
        .unwrap();
    *grpc.headers_mut() = req.headers().clone();
    grpc.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    grpc.headers_mut()
        .insert("te", HeaderValue::from_static("trailers"));
    grpc
}

/// `grpc-message` decoded: `%XX` to the byte, then UTF-8.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// Asserts a trailers-only gRPC refusal: HTTP 200, `content-type:
/// application/grpc`, `grpc-status: code`, `grpc-message` decoding to
/// `message`, and an empty body.
fn assert_grpc_refusal(res: &Response<String>, code: &str, message: &str) {
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[CONTENT_TYPE], "application/grpc");
    assert_eq!(res.headers()["grpc-status"], code);
    let sent = res.headers()["grpc-message"].to_str().unwrap();
    assert_eq!(percent_decode(sent), message);
    assert!(res.body().is_empty(), "a trailers-only answer has no body");
}

/// The gRPC status matching an HTTP refusal's.
fn grpc_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => "16",
        StatusCode::FORBIDDEN => "7",
        other => panic!("no gRPC status for {other}"),
    }
}

/// Sends `req` to a fresh user service, and the same request as a gRPC
/// call ([`as_grpc`]) to another; asserts the HTTP refusal whole
/// ([`assert_refusal`]), the gRPC one ([`assert_grpc_refusal`], with the
/// JSON body's message), and that neither handler ran. Returns both
/// services, HTTP first.
async fn assert_refused(
    req: Request<String>,
    status: StatusCode,
    www_authenticate: &str,
    error: &str,
    message: &str,
) -> [UserService; 2] {
    let grpc = as_grpc(&req);
    let users = UserService::new();
    let res = users.send(req).await;
    assert_refusal(&res, status, www_authenticate, error, message);
    assert_eq!(users.handler_calls(), 0, "the handler must not run");

    let grpc_users = UserService::new();
    let res = grpc_users.send(grpc).await;
    assert_grpc_refusal(&res, grpc_code(status), message);
    assert_eq!(
        grpc_users.handler_calls(),
        0,
        "the gRPC handler must not run"
    );
    assert_eq!(grpc_users.stats(), users.stats(), "counted alike");
    [users, grpc_users]
}

/// Asserts a refusal that never reached the handler, answered with
/// `status`, `www_authenticate`, and exactly `{"error", "message"}`.
fn assert_refusal(
    res: &Response<String>,
    status: StatusCode,
    www_authenticate: &str,
    error: &str,
    message: &str,
) {
    assert_eq!(res.status(), status);
    assert_eq!(
        res.headers().get_all(WWW_AUTHENTICATE).iter().count(),
        1,
        "one challenge"
    );
    assert_eq!(res.headers()[WWW_AUTHENTICATE], www_authenticate);
    assert_eq!(res.headers()[CONTENT_TYPE], "application/json");
    let body: Value = serde_json::from_str(res.body()).unwrap();
    assert_eq!(body, json!({ "error": error, "message": message }));
}

/// Sends `req` to a fresh user service and asserts `401 invalid_token`
/// with `message`, counted by the verifier under `reason`
/// (and as gRPC, `UNAUTHENTICATED`: see [`assert_refused`]).
async fn assert_invalid_token(req: Request<String>, reason: &str, message: &str) {
    let [users, _] = assert_refused(
        req,
        StatusCode::UNAUTHORIZED,
        INVALID_TOKEN,
        "invalid_token",
        message,
    )
    .await;
    let stats = users.stats();
    assert_eq!(stats.rejected, [(reason, 1)]);
    assert_eq!(stats.verified, 0);
}

/// Sends `req` to a fresh user service and asserts `403
/// insufficient_scope` with `message` (and as gRPC, `PERMISSION_DENIED`).
async fn assert_forbidden(req: Request<String>, message: &str) -> AuthStats {
    let [users, _] = assert_refused(
        req,
        StatusCode::FORBIDDEN,
        INSUFFICIENT_SCOPE,
        "insufficient_scope",
        message,
    )
    .await;
    users.stats()
}

// === requests and forged tokens ===

fn request(authorization: &[HeaderValue]) -> Request<String> {
    let mut req = Request::get("/users/7");
    for value in authorization {
        req = req.header(AUTHORIZATION, value.clone());
    }
    req.body(String::new()).unwrap()
}

fn bearer(token: &str) -> Request<String> {
    request(&[HeaderValue::from_str(&format!("Bearer {token}")).unwrap()])
}

fn now() -> u64 {
    unix_seconds(SystemTime::now())
}

fn header() -> Value {
    json!({ "alg": "EdDSA", "typ": TOKEN_TYPE, "kid": "order-1" })
}

fn hs256_header() -> Value {
    json!({ "alg": "HS256", "typ": TOKEN_TYPE, "kid": "shared-1" })
}

/// Valid claims from order-service for the user service, granting
/// `read:users`, issued now for 5 minutes.
fn claims() -> Value {
    let now = now();
    json!({
        "sub": "order-service",
        "iss": "order-service",
        "aud": "user-service",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": "attack-1",
        "service": true,
        "permissions": ["read:users"],
    })
}

fn with(mut value: Value, key: &str, new: Value) -> Value {
    value[key] = new;
    value
}

fn without(mut value: Value, key: &str) -> Value {
    value.as_object_mut().unwrap().remove(key);
    value
}

fn b64(json: &Value) -> String {
    URL_SAFE_NO_PAD.encode(json.to_string())
}

fn order_key() -> EncodingKey {
    EncodingKey::from_ed_pem(ORDER_KEY).unwrap()
}

/// `header.claims.signature`, the two first parts as given, signed with
/// `key` and `alg`.
fn sign_parts(header: &str, claims: &str, key: &EncodingKey, alg: Algorithm) -> String {
    let message = format!("{header}.{claims}");
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap();
    format!("{message}.{signature}")
}

/// A token correctly signed with order-service's Ed25519 key.
fn forge(header: Value, claims: Value) -> String {
    sign_parts(&b64(&header), &b64(&claims), &order_key(), Algorithm::EdDSA)
}

/// A token correctly signed with the shared HS256 secret.
fn forge_hs256(header: Value, claims: Value) -> String {
    let key = EncodingKey::from_secret(SECRET);
    sign_parts(&b64(&header), &b64(&claims), &key, Algorithm::HS256)
}

/// A token with `alg` in its header and no signature at all.
fn unsigned(alg: &str) -> String {
    format!(
        "{}.{}.",
        b64(&with(header(), "alg", json!(alg))),
        b64(&claims())
    )
}

// === positive controls ===

#[tokio::test]
async fn valid_eddsa_token_reaches_the_handler_with_its_identity() {
    let users = UserService::new();
    let res = users.send(bearer(&forge(header(), claims()))).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.body(), "handled");
    assert_eq!(users.handler_calls(), 1);
    let caller = users.seen.lock().unwrap().clone().expect("an identity");
    assert_eq!(caller.service, "order-service");
    assert_eq!(caller.permissions, ["read:users"]);
    assert_eq!(caller.token_id.as_deref(), Some("attack-1"));
    assert!(caller.expires_at > SystemTime::now() + Duration::from_secs(200));
    assert!(users.stats().rejected.is_empty());
}

#[tokio::test]
async fn valid_token_in_grpc_metadata_reaches_the_handler() {
    // The gRPC refusals below cannot pass by refusing every gRPC call.
    let users = UserService::new();
    let res = users
        .send(as_grpc(&bearer(&forge(header(), claims()))))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.body(), "handled");
    assert_eq!(users.handler_calls(), 1);
    assert!(users.stats().rejected.is_empty());
}

#[tokio::test]
async fn valid_hs256_token_reaches_the_handler() {
    let users = UserService::new();
    let res = users
        .send(bearer(&forge_hs256(hs256_header(), claims())))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(users.handler_calls(), 1);
}

// === the Authorization header ===

#[tokio::test]
async fn missing_authorization_header() {
    let [users, _] = assert_refused(
        request(&[]),
        StatusCode::UNAUTHORIZED,
        "Bearer",
        "missing_token",
        "a bearer token is required",
    )
    .await;
    assert_eq!(users.stats().rejected, [("missing", 1)]);
}

#[tokio::test]
async fn access_token_in_the_query_string_is_not_accepted() {
    // RFC 6750 §2.3's query parameter leaks tokens into logs; only the
    // header counts.
    let token = forge(header(), claims());
    let req = Request::get(format!("/users/7?access_token={token}"))
        .body(String::new())
        .unwrap();
    assert_refused(
        req,
        StatusCode::UNAUTHORIZED,
        "Bearer",
        "missing_token",
        "a bearer token is required",
    )
    .await;
}

#[tokio::test]
async fn two_authorization_headers() {
    let valid = HeaderValue::from_str(&format!("Bearer {}", forge(header(), claims()))).unwrap();
    assert_invalid_token(
        request(&[valid.clone(), valid]),
        "several_headers",
        "send exactly one Authorization header",
    )
    .await;
}

#[tokio::test]
async fn basic_scheme_instead_of_bearer() {
    assert_invalid_token(
        request(&[HeaderValue::from_static("Basic b3JkZXI6c2VjcmV0")]),
        "malformed",
        "malformed token: expected `Authorization: Bearer <token>`",
    )
    .await;
}

#[tokio::test]
async fn bearer_scheme_without_a_token() {
    assert_invalid_token(
        request(&[HeaderValue::from_static("Bearer")]),
        "malformed",
        "malformed token: expected `Authorization: Bearer <token>`",
    )
    .await;
}

#[tokio::test]
async fn empty_bearer_token() {
    assert_invalid_token(
        request(&[HeaderValue::from_static("Bearer    ")]),
        "malformed",
        "malformed token: the bearer token is empty",
    )
    .await;
}

#[tokio::test]
async fn non_ascii_authorization_header() {
    assert_invalid_token(
        request(&[HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap()]),
        "malformed",
        "malformed token: the Authorization header is not ASCII",
    )
    .await;
}

// === the token's shape ===

#[tokio::test]
async fn oversized_token_is_rejected_before_decoding() {
    // No dots: were it decoded, it would be refused as malformed instead.
    assert_invalid_token(
        bearer(&"a".repeat(9 * 1024)),
        "too_large",
        "the token is larger than allowed",
    )
    .await;
}

#[tokio::test]
async fn truncated_token() {
    let token = forge(header(), claims());
    let truncated = &token[..token.len() / 2];
    assert_eq!(truncated.split('.').count(), 2, "cut inside the claims");
    assert_invalid_token(
        bearer(truncated),
        "malformed",
        "malformed token: a token has three dot-separated parts",
    )
    .await;
}

#[tokio::test]
async fn token_with_four_segments() {
    let token = format!("{}.extra", forge(header(), claims()));
    assert_invalid_token(
        bearer(&token),
        "malformed",
        "malformed token: a token has three dot-separated parts",
    )
    .await;
}

#[tokio::test]
async fn non_base64_segment() {
    let token = forge(header(), claims());
    let (_, rest) = token.split_once('.').unwrap();
    assert_invalid_token(
        bearer(&format!("eyJ*!~.{rest}")),
        "malformed",
        "malformed token: the header is not base64url JSON",
    )
    .await;
}

#[tokio::test]
async fn header_segment_that_is_not_json() {
    let token = format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode("alg=EdDSA"),
        b64(&claims())
    );
    assert_invalid_token(
        bearer(&token),
        "malformed",
        "malformed token: the header is not base64url JSON",
    )
    .await;
}

#[tokio::test]
async fn claims_segment_that_is_not_a_json_object() {
    // Correctly signed, so only the claims' shape is wrong.
    let token = sign_parts(
        &b64(&header()),
        &b64(&json!(["order-service", "user-service"])),
        &order_key(),
        Algorithm::EdDSA,
    );
    assert_invalid_token(
        bearer(&token),
        "malformed",
        "malformed token: the claims are not base64url JSON",
    )
    .await;
}

#[tokio::test]
async fn signature_with_non_canonical_trailing_bits() {
    // The last of 86 characters carries 2 signature bits and 4 unused
    // ones; flipping an unused one respells the same signature bytes.
    let token = forge(header(), claims());
    let (message, signature) = token.rsplit_once('.').unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = alphabet.find(signature.chars().last().unwrap()).unwrap();
    let respelled = alphabet.chars().nth(last + 1).unwrap();
    let forged = format!("{message}.{}{respelled}", &signature[..signature.len() - 1]);
    assert_invalid_token(
        bearer(&forged),
        "malformed",
        "malformed token: the signature is not canonical base64url",
    )
    .await;
}

// === algorithm ===

#[tokio::test]
async fn alg_none_lowercase_is_rejected() {
    assert_invalid_token(
        bearer(&unsigned("none")),
        "disallowed_alg",
        "algorithm `none` is not allowed",
    )
    .await;
}

#[tokio::test]
async fn alg_none_mixed_case_is_rejected() {
    assert_invalid_token(
        bearer(&unsigned("nOnE")),
        "disallowed_alg",
        "algorithm `nOnE` is not allowed",
    )
    .await;
}

#[tokio::test]
async fn missing_alg_is_rejected() {
    assert_invalid_token(
        bearer(&forge(without(header(), "alg"), claims())),
        "disallowed_alg",
        "algorithm `(none given)` is not allowed",
    )
    .await;
}

#[tokio::test]
async fn alg_outside_the_pinned_set_is_rejected() {
    let token = forge(with(header(), "alg", json!("RS256")), claims());
    assert_invalid_token(
        bearer(&token),
        "disallowed_alg",
        "algorithm `RS256` is not allowed",
    )
    .await;
}

#[tokio::test]
async fn hs256_token_signed_with_public_key_bytes_is_rejected() {
    // Algorithm confusion: an HMAC keyed with the public key anyone can
    // read, under the Ed25519 key's kid.
    let token = sign_parts(
        &b64(&with(header(), "alg", json!("HS256"))),
        &b64(&claims()),
        &EncodingKey::from_secret(ORDER_PUB),
        Algorithm::HS256,
    );
    assert_invalid_token(
        bearer(&token),
        "disallowed_alg",
        "algorithm `HS256` is not allowed",
    )
    .await;
}

// === kid, typ, crit ===

#[tokio::test]
async fn unknown_kid() {
    let token = forge(with(header(), "kid", json!("order-9")), claims());
    assert_invalid_token(
        bearer(&token),
        "unknown_kid",
        "the token's key id is unknown",
    )
    .await;
}

#[tokio::test]
async fn missing_kid() {
    let token = forge(without(header(), "kid"), claims());
    assert_invalid_token(
        bearer(&token),
        "unknown_kid",
        "the token's key id is unknown",
    )
    .await;
}

#[tokio::test]
async fn wrong_typ() {
    let token = forge(with(header(), "typ", json!("JWT")), claims());
    assert_invalid_token(
        bearer(&token),
        "wrong_typ",
        "the token's typ must be `service+jwt`",
    )
    .await;
}

#[tokio::test]
async fn missing_typ() {
    let token = forge(without(header(), "typ"), claims());
    assert_invalid_token(
        bearer(&token),
        "wrong_typ",
        "the token's typ must be `service+jwt`",
    )
    .await;
}

#[tokio::test]
async fn unknown_crit() {
    let token = forge(with(header(), "crit", json!(["exp-v2"])), claims());
    assert_invalid_token(
        bearer(&token),
        "unknown_crit",
        "the token names critical extensions that are not supported",
    )
    .await;
}

// === signature ===

#[tokio::test]
async fn bad_signature() {
    // Claims escalated to `admin` after signing.
    let token = forge(header(), claims());
    let (head, rest) = token.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let escalated = b64(&with(
        claims(),
        "permissions",
        json!(["read:users", "admin"]),
    ));
    assert_invalid_token(
        bearer(&format!("{head}.{escalated}.{signature}")),
        "bad_signature",
        "the token's signature is invalid",
    )
    .await;
}

#[tokio::test]
async fn signature_from_another_services_key() {
    // user-service signs with its own key under order-service's kid.
    let token = sign_parts(
        &b64(&header()),
        &b64(&claims()),
        &EncodingKey::from_ed_pem(USER_KEY).unwrap(),
        Algorithm::EdDSA,
    );
    assert_invalid_token(
        bearer(&token),
        "bad_signature",
        "the token's signature is invalid",
    )
    .await;
}

#[tokio::test]
async fn forged_signature_on_a_cached_tokens_claims() {
    // The cache is keyed by the whole token: a verified header and claims
    // with another signature are verified afresh, not served from it.
    let users = UserService::new();
    let token = forge(header(), claims());
    assert_eq!(users.send(bearer(&token)).await.status(), StatusCode::OK);
    let (message, _) = token.rsplit_once('.').unwrap();
    let forged = format!("{message}.{}", URL_SAFE_NO_PAD.encode([0u8; 64]));
    let res = users.send(bearer(&forged)).await;
    assert_refusal(
        &res,
        StatusCode::UNAUTHORIZED,
        INVALID_TOKEN,
        "invalid_token",
        "the token's signature is invalid",
    );
    assert_eq!(users.handler_calls(), 1, "only the valid request ran");
    assert_eq!(users.stats().rejected, [("bad_signature", 1)]);
    // And as a gRPC call, after the valid token was cached.
    let res = users.send(as_grpc(&bearer(&forged))).await;
    assert_grpc_refusal(&res, "16", "the token's signature is invalid");
    assert_eq!(users.handler_calls(), 1);
    assert_eq!(users.stats().rejected, [("bad_signature", 2)]);
}

// === time ===

#[tokio::test]
async fn expired_beyond_leeway() {
    let now = now();
    let claims = with(claims(), "exp", json!(now - 120));
    let claims = with(
        with(claims, "iat", json!(now - 420)),
        "nbf",
        json!(now - 420),
    );
    assert_invalid_token(
        bearer(&forge(header(), claims)),
        "expired",
        "the token has expired",
    )
    .await;
}

#[tokio::test]
async fn nbf_in_future() {
    let claims = with(claims(), "nbf", json!(now() + 120));
    assert_invalid_token(
        bearer(&forge(header(), claims)),
        "not_yet_valid",
        "the token is not valid yet",
    )
    .await;
}

#[tokio::test]
async fn iat_in_future_beyond_leeway() {
    let now = now();
    let claims = with(claims(), "iat", json!(now + 120));
    let claims = with(claims, "exp", json!(now + 420));
    assert_invalid_token(
        bearer(&forge(header(), claims)),
        "issued_in_future",
        "the token was issued in the future",
    )
    .await;
}

#[tokio::test]
async fn lifetime_above_maximum() {
    let claims = with(claims(), "exp", json!(now() + 2 * 3600));
    assert_invalid_token(
        bearer(&forge(header(), claims)),
        "lifetime_too_long",
        "the token's lifetime is longer than allowed",
    )
    .await;
}

#[tokio::test]
async fn missing_exp() {
    assert_invalid_token(
        bearer(&forge(header(), without(claims(), "exp"))),
        "claim_type",
        "claim `exp` is missing or of the wrong type",
    )
    .await;
}

// === issuer, subject, audience ===

#[tokio::test]
async fn missing_iss() {
    assert_invalid_token(
        bearer(&forge(header(), without(claims(), "iss"))),
        "claim_type",
        "claim `iss` is missing or of the wrong type",
    )
    .await;
}

#[tokio::test]
async fn wrong_iss() {
    // The shared secret binds no owner; only the trusted list refuses.
    let claims = with(claims(), "iss", json!("api-gateway"));
    let claims = with(claims, "sub", json!("api-gateway"));
    assert_invalid_token(
        bearer(&forge_hs256(hs256_header(), claims)),
        "wrong_issuer",
        "the token's issuer is not trusted",
    )
    .await;
}

#[tokio::test]
async fn issuer_not_owner_of_ed25519_key() {
    // billing-service is trusted, but order-service's key cannot sign for it.
    let claims = with(claims(), "iss", json!("billing-service"));
    let claims = with(claims, "sub", json!("billing-service"));
    assert_invalid_token(
        bearer(&forge(header(), claims)),
        "wrong_issuer",
        "the token's issuer is not trusted",
    )
    .await;
}

#[tokio::test]
async fn sub_other_than_iss() {
    // The handler's `ServiceIdentity::service` is `sub`: order-service's
    // key, signing as itself (`iss`), must not be able to name another
    // caller there.
    let claims = with(claims(), "sub", json!("billing-service"));
    assert_invalid_token(
        bearer(&forge(header(), claims)),
        "subject_not_issuer",
        "the token's subject must be its issuer",
    )
    .await;
}

#[tokio::test]
async fn missing_aud() {
    assert_invalid_token(
        bearer(&forge(header(), without(claims(), "aud"))),
        "claim_type",
        "claim `aud` is missing or of the wrong type",
    )
    .await;
}

#[tokio::test]
async fn wrong_aud() {
    let claims = with(claims(), "aud", json!("notification-service"));
    assert_invalid_token(
        bearer(&forge(header(), claims)),
        "wrong_audience",
        "the token is not meant for this service",
    )
    .await;
}

#[tokio::test]
async fn audience_list_without_this_service() {
    let claims = with(
        claims(),
        "aud",
        json!(["notification-service", "billing-service"]),
    );
    assert_invalid_token(
        bearer(&forge(header(), claims)),
        "wrong_audience",
        "the token is not meant for this service",
    )
    .await;
}

// === claim types ===

#[tokio::test]
async fn exp_as_string() {
    let claims = with(claims(), "exp", json!((now() + 300).to_string()));
    assert_invalid_token(
        bearer(&forge(header(), claims)),
        "claim_type",
        "claim `exp` is missing or of the wrong type",
    )
    .await;
}

#[tokio::test]
async fn exp_as_fraction() {
    let claims = with(claims(), "exp", json!(now() as f64 + 300.5));
    assert_invalid_token(
        bearer(&forge(header(), claims)),
        "claim_type",
        "claim `exp` is missing or of the wrong type",
    )
    .await;
}

#[tokio::test]
async fn nbf_as_string() {
    let claims = with(claims(), "nbf", json!(now().to_string()));
    assert_invalid_token(
        bearer(&forge(header(), claims)),
        "claim_type",
        "claim `nbf` is missing or of the wrong type",
    )
    .await;
}

#[tokio::test]
async fn iat_as_string() {
    let claims = with(claims(), "iat", json!(now().to_string()));
    assert_invalid_token(
        bearer(&forge(header(), claims)),
        "claim_type",
        "claim `iat` is missing or of the wrong type",
    )
    .await;
}

#[tokio::test]
async fn iss_as_number() {
    let claims = with(claims(), "iss", json!(42));
    assert_invalid_token(
        bearer(&forge(header(), claims)),
        "claim_type",
        "claim `iss` is missing or of the wrong type",
    )
    .await;
}

#[tokio::test]
async fn aud_as_number() {
    let claims = with(claims(), "aud", json!(7));
    assert_invalid_token(
        bearer(&forge(header(), claims)),
        "claim_type",
        "claim `aud` is missing or of the wrong type",
    )
    .await;
}

#[tokio::test]
async fn sub_as_number() {
    let claims = with(claims(), "sub", json!(42));
    assert_invalid_token(
        bearer(&forge(header(), claims)),
        "claim_type",
        "claim `sub` is missing or of the wrong type",
    )
    .await;
}

#[tokio::test]
async fn permissions_as_string() {
    let claims = with(claims(), "permissions", json!("read:users"));
    assert_invalid_token(
        bearer(&forge(header(), claims)),
        "claim_type",
        "claim `permissions` is missing or of the wrong type",
    )
    .await;
}

// === not a service token, or not allowed ===

#[tokio::test]
async fn service_claim_false_is_forbidden() {
    let claims = with(claims(), "service", json!(false));
    let stats = assert_forbidden(
        bearer(&forge(header(), claims)),
        "the token is not a service token",
    )
    .await;
    assert_eq!(stats.rejected, [("not_a_service", 1)]);
}

#[tokio::test]
async fn service_claim_missing_is_forbidden() {
    let stats = assert_forbidden(
        bearer(&forge(header(), without(claims(), "service"))),
        "the token is not a service token",
    )
    .await;
    assert_eq!(stats.rejected, [("not_a_service", 1)]);
}

#[tokio::test]
async fn service_claim_string_is_forbidden() {
    let claims = with(claims(), "service", json!("true"));
    let stats = assert_forbidden(
        bearer(&forge(header(), claims)),
        "the token is not a service token",
    )
    .await;
    assert_eq!(stats.rejected, [("not_a_service", 1)]);
}

#[tokio::test]
async fn missing_permission_is_forbidden() {
    // A valid token: the verifier lets it through, the route's permission
    // layer refuses it.
    let claims = with(claims(), "permissions", json!(["write:users"]));
    let stats = assert_forbidden(
        bearer(&forge(header(), claims)),
        "the caller lacks the permission `read:users`",
    )
    .await;
    assert_eq!((stats.verified, stats.rejected), (1, vec![]));
}

// === duplicate members ===
//
// JSON leaves it to the parser which of two equal member names wins; this
// verifier and another reader of the same token could then disagree on its
// `alg` or `sub`. Each token below puts a bad value first and a good one
// last, so a last-wins parser would accept it.

/// `object` with `"name": first` added before its own member `name`, so
/// the object's value comes last.
fn duplicated(object: &Value, name: &str, first: Value) -> String {
    let text = object.to_string();
    let inner = text.strip_prefix('{').unwrap();
    format!("{{{}:{first},{inner}", json!(name))
}

fn forge_raw(header: &str, claims: &str) -> String {
    sign_parts(
        &URL_SAFE_NO_PAD.encode(header),
        &URL_SAFE_NO_PAD.encode(claims),
        &order_key(),
        Algorithm::EdDSA,
    )
}

async fn assert_duplicate(token: String, part: &str) {
    assert_invalid_token(
        bearer(&token),
        "duplicate_member",
        &format!("malformed token: a member appears twice in the {part}"),
    )
    .await;
}

#[tokio::test]
async fn the_duplication_helper_keeps_a_token_valid_without_duplicates() {
    // Control: the same construction with a member added once is accepted.
    let header = duplicated(&without(header(), "alg"), "alg", json!("EdDSA"));
    let users = UserService::new();
    let res = users
        .send(bearer(&forge_raw(&header, &claims().to_string())))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn duplicate_alg_is_refused() {
    let header = duplicated(&header(), "alg", json!("none"));
    assert_duplicate(forge_raw(&header, &claims().to_string()), "header").await;
}

#[tokio::test]
async fn duplicate_kid_is_refused() {
    let header = duplicated(&header(), "kid", json!("user-1"));
    assert_duplicate(forge_raw(&header, &claims().to_string()), "header").await;
}

#[tokio::test]
async fn duplicate_sub_is_refused() {
    let claims = duplicated(&claims(), "sub", json!("billing-service"));
    assert_duplicate(forge_raw(&header().to_string(), &claims), "claims").await;
}

#[tokio::test]
async fn duplicate_aud_is_refused() {
    let claims = duplicated(&claims(), "aud", json!("notification-service"));
    assert_duplicate(forge_raw(&header().to_string(), &claims), "claims").await;
}

#[tokio::test]
async fn duplicate_exp_is_refused() {
    let claims = duplicated(&claims(), "exp", json!(now() - 3600));
    assert_duplicate(forge_raw(&header().to_string(), &claims), "claims").await;
}

#[tokio::test]
async fn duplicate_permissions_is_refused() {
    let claims = duplicated(&claims(), "permissions", json!(["write:users"]));
    assert_duplicate(forge_raw(&header().to_string(), &claims), "claims").await;
}

#[tokio::test]
async fn a_duplicate_member_nested_in_a_claim_is_refused() {
    let claims = with(claims(), "ext", json!({ "tenant": "a" }))
        .to_string()
        .replace(r#""tenant":"a""#, r#""tenant":"b","tenant":"a""#);
    assert!(claims.contains(r#""tenant":"b","tenant":"a""#));
    assert_duplicate(forge_raw(&header().to_string(), &claims), "claims").await;
}

#[tokio::test]
async fn an_escaped_spelling_of_a_member_name_is_a_duplicate_too() {
    // `"\u0073ub"` is `"sub"` once unescaped.
    let claims = claims()
        .to_string()
        .replacen('{', r#"{"\u0073ub":"billing-service","#, 1);
    assert_duplicate(forge_raw(&header().to_string(), &claims), "claims").await;
}
