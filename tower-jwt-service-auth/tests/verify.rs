//! The verifier against forged and malformed tokens: one test per attack,
//! each asserting the exact rejection. Time is fixed (`NOW`), not read.
//!
//! Long on purpose: one short test per way a token can be wrong, kept in
//! one list beside the verifier's `Rejection` variants.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use serde_json::{Value, json};
use tower_jwt_service_auth::jwt::claims::{Audience, TOKEN_TYPE};
use tower_jwt_service_auth::jwt::keys::{KeyError, KeySet, SigningKey, VerifyingKey};
use tower_jwt_service_auth::jwt::sign::Signer;
use tower_jwt_service_auth::jwt::verify::{Rejection, Verifier};

const ORDER_KEY: &[u8] = include_bytes!("keys/order-service.key.pem");
const ORDER_PUB: &[u8] = include_bytes!("keys/order-service.pub.pem");
const ORDER_KEY_2: &[u8] = include_bytes!("keys/order-service-2.key.pem");
const ORDER_PUB_2: &[u8] = include_bytes!("keys/order-service-2.pub.pem");
const USER_KEY: &[u8] = include_bytes!("keys/user-service.key.pem");
const USER_PUB: &[u8] = include_bytes!("keys/user-service.pub.pem");
const SECRET: &[u8] = b"an HS256 secret of at least 32 bytes!";

const T0: u64 = 1_800_000_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0)
}

fn order_key() -> SigningKey {
    SigningKey::ed25519_pem("order-1", ORDER_KEY).unwrap()
}

/// The notification service's verifier: trusts order-service's Ed25519
/// key and the shared HS256 secret.
fn verifier() -> Verifier {
    let keys = KeySet::new()
        .with(VerifyingKey::ed25519_pem("order-1", "order-service", ORDER_PUB).unwrap())
        .with(VerifyingKey::ed25519_pem("user-1", "user-service", USER_PUB).unwrap())
        .with(VerifyingKey::hs256("shared-1", SECRET).unwrap());
    Verifier::new("notification-service", keys)
}

fn header() -> Value {
    json!({ "alg": "EdDSA", "typ": TOKEN_TYPE, "kid": "order-1" })
}

fn claims() -> Value {
    json!({
        "sub": "order-service",
        "iss": "order-service",
        "aud": "notification-service",
        "iat": T0,
        "nbf": T0,
        "exp": T0 + 300,
        "jti": "t-1",
        "service": true,
        "permissions": ["write:notifications"],
    })
}

/// A token with `header` and `claims`, correctly signed with `key`.
fn forge(key: &SigningKey, header: Value, claims: Value) -> String {
    key.sign_raw(&header, &claims).unwrap()
}

fn check(token: &str) -> Result<tower_jwt_service_auth::jwt::verify::ServiceIdentity, Rejection> {
    verifier().verify_at(token, now())
}

fn with(mut value: Value, key: &str, new: Value) -> Value {
    value[key] = new;
    value
}

fn without(mut value: Value, key: &str) -> Value {
    value.as_object_mut().unwrap().remove(key);
    value
}

// === accepted ===

#[test]
fn a_valid_eddsa_token_is_accepted() {
    let caller = check(&forge(&order_key(), header(), claims())).unwrap();
    assert_eq!(caller.service, "order-service");
    assert_eq!(caller.permissions, ["write:notifications"]);
    assert_eq!(caller.token_id.as_deref(), Some("t-1"));
    assert_eq!(caller.expires_at, now() + Duration::from_secs(300));
}

#[test]
fn the_crypto_backend_signs_and_verifies() {
    // jsonwebtoken compiles with zero or two crypto backends but panics at
    // first use; this fails if feature unification ever brings a second.
    let signer = Signer::new("order-service", order_key());
    let token = signer
        .sign_at(Audience::One("notification-service".into()), now())
        .unwrap();
    assert!(check(&token.token).is_ok());
}

#[test]
fn a_valid_hs256_token_is_accepted() {
    let key = SigningKey::hs256("shared-1", SECRET).unwrap();
    let header = json!({ "alg": "HS256", "typ": TOKEN_TYPE, "kid": "shared-1" });
    assert!(check(&forge(&key, header, claims())).is_ok());
}

#[test]
fn an_audience_list_naming_this_service_is_accepted() {
    let claims = with(
        claims(),
        "aud",
        json!(["user-service", "notification-service"]),
    );
    assert!(check(&forge(&order_key(), header(), claims)).is_ok());
}

#[test]
fn expiry_within_the_leeway_is_accepted() {
    let claims = with(claims(), "exp", json!(T0 - 29));
    let claims = with(claims, "iat", json!(T0 - 300));
    assert!(check(&forge(&order_key(), header(), claims)).is_ok());
}

// === the token's shape ===

#[test]
fn an_oversized_token_is_refused_before_decoding() {
    let huge = "a".repeat(9 * 1024);
    assert_eq!(check(&huge), Err(Rejection::TooLarge));
}

#[test]
fn a_token_without_three_parts_is_malformed() {
    assert!(matches!(check("abc.def"), Err(Rejection::Malformed(_))));
    assert!(matches!(check("a.b.c.d"), Err(Rejection::Malformed(_))));
}

#[test]
fn a_header_that_is_not_json_is_malformed() {
    let token = format!(
        "{}.{}.sig",
        URL_SAFE_NO_PAD.encode("not json"),
        URL_SAFE_NO_PAD.encode("{}")
    );
    assert!(matches!(check(&token), Err(Rejection::Malformed(_))));
}

#[test]
fn claims_that_are_not_json_are_malformed() {
    let token = order_key()
        .sign_raw(&header(), &json!("a string, not an object"))
        .unwrap();
    assert!(matches!(check(&token), Err(Rejection::Malformed(_))));
}

// === the header ===

#[test]
fn alg_none_in_any_casing_is_refused() {
    for none in ["none", "None", "NONE", "nOnE"] {
        let header = with(header(), "alg", json!(none));
        let token = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims().to_string())
        );
        assert_eq!(
            check(&token),
            Err(Rejection::DisallowedAlgorithm(none.into())),
            "{none}"
        );
    }
}

#[test]
fn an_algorithm_outside_the_pinned_set_is_refused() {
    for alg in ["RS256", "ES256", "HS512", "eddsa"] {
        let token = forge(&order_key(), with(header(), "alg", json!(alg)), claims());
        assert_eq!(
            check(&token),
            Err(Rejection::DisallowedAlgorithm(alg.into())),
            "{alg}"
        );
    }
}

#[test]
fn a_missing_alg_is_refused() {
    let token = forge(&order_key(), without(header(), "alg"), claims());
    assert!(matches!(
        check(&token),
        Err(Rejection::DisallowedAlgorithm(_))
    ));
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    // Algorithm confusion: HMAC keyed with a public key anyone can read.
    let confused = SigningKey::hs256("order-1", ORDER_PUB).unwrap();
    let header = json!({ "alg": "HS256", "typ": TOKEN_TYPE, "kid": "order-1" });
    assert_eq!(
        check(&forge(&confused, header, claims())),
        Err(Rejection::DisallowedAlgorithm("HS256".into()))
    );
}

#[test]
fn an_unknown_kid_is_refused() {
    let token = forge(
        &order_key(),
        with(header(), "kid", json!("order-9")),
        claims(),
    );
    assert_eq!(check(&token), Err(Rejection::UnknownKey));
}

#[test]
fn a_missing_kid_is_refused() {
    let token = forge(&order_key(), without(header(), "kid"), claims());
    assert_eq!(check(&token), Err(Rejection::UnknownKey));
}

#[test]
fn a_wrong_typ_is_refused() {
    for typ in [json!("JWT"), json!("at+jwt"), json!(1)] {
        let token = forge(&order_key(), with(header(), "typ", typ.clone()), claims());
        assert_eq!(check(&token), Err(Rejection::WrongType), "{typ}");
    }
}

#[test]
fn a_missing_typ_is_refused() {
    let token = forge(&order_key(), without(header(), "typ"), claims());
    assert_eq!(check(&token), Err(Rejection::WrongType));
}

#[test]
fn an_unknown_crit_is_refused() {
    let token = forge(
        &order_key(),
        with(header(), "crit", json!(["exp-v2"])),
        claims(),
    );
    assert_eq!(check(&token), Err(Rejection::UnknownCritical));
}

// === the signature ===

#[test]
fn tampered_claims_fail_the_signature() {
    let token = forge(&order_key(), header(), claims());
    let mut parts: Vec<&str> = token.split('.').collect();
    let escalated =
        URL_SAFE_NO_PAD.encode(with(claims(), "permissions", json!(["admin"])).to_string());
    parts[1] = &escalated;
    assert_eq!(check(&parts.join(".")), Err(Rejection::BadSignature));
}

#[test]
fn another_services_key_fails_the_signature() {
    // user-service signs with its own key but claims order-service's kid.
    let user = SigningKey::ed25519_pem("order-1", USER_KEY).unwrap();
    assert_eq!(
        check(&forge(&user, header(), claims())),
        Err(Rejection::BadSignature)
    );
}

#[test]
fn a_signature_that_is_not_base64url_is_malformed() {
    let token = forge(&order_key(), header(), claims());
    let (message, _) = token.rsplit_once('.').unwrap();
    assert!(matches!(
        check(&format!("{message}.!!!")),
        Err(Rejection::Malformed(_))
    ));
}

#[test]
fn a_signature_with_non_canonical_trailing_bits_is_malformed() {
    // 64 signature bytes take 86 base64url characters; the last carries 2
    // data bits and 4 unused ones. Setting an unused bit keeps the bytes a
    // lenient decoder sees, but spells the signature differently.
    let token = forge(&order_key(), header(), claims());
    let (message, signature) = token.rsplit_once('.').unwrap();
    assert_eq!(signature.len(), 86);
    let last = signature.chars().last().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let index = alphabet.find(last).unwrap();
    assert_eq!(
        index % 16,
        0,
        "the unused bits of a canonical last character are zero"
    );
    let respelled = alphabet.chars().nth(index + 1).unwrap();
    let forged = format!("{message}.{}{respelled}", &signature[..85]);
    assert!(matches!(check(&forged), Err(Rejection::Malformed(_))));
    assert!(check(&token).is_ok());
}

// === the time claims ===

#[test]
fn an_expired_token_is_refused() {
    let claims = with(
        with(claims(), "exp", json!(T0 - 30)),
        "iat",
        json!(T0 - 300),
    );
    assert_eq!(
        check(&forge(&order_key(), header(), claims)),
        Err(Rejection::Expired)
    );
}

#[test]
fn a_token_not_yet_valid_is_refused() {
    let claims = with(claims(), "nbf", json!(T0 + 31));
    assert_eq!(
        check(&forge(&order_key(), header(), claims)),
        Err(Rejection::NotYetValid)
    );
}

#[test]
fn a_token_issued_in_the_future_is_refused() {
    let claims = with(with(claims(), "iat", json!(T0 + 31)), "nbf", json!(T0));
    assert_eq!(
        check(&forge(&order_key(), header(), claims)),
        Err(Rejection::IssuedInFuture)
    );
}

#[test]
fn a_lifetime_above_the_maximum_is_refused() {
    let claims = with(claims(), "exp", json!(T0 + 3601));
    assert_eq!(
        check(&forge(&order_key(), header(), claims)),
        Err(Rejection::LifetimeTooLong)
    );
}

// === issuer and audience ===

#[test]
fn a_missing_issuer_is_refused() {
    let token = forge(&order_key(), header(), without(claims(), "iss"));
    assert_eq!(check(&token), Err(Rejection::ClaimType("iss")));
}

#[test]
fn an_issuer_other_than_the_keys_owner_is_refused() {
    // order-service's key cannot mint tokens as user-service.
    let claims = with(claims(), "iss", json!("user-service"));
    assert_eq!(
        check(&forge(&order_key(), header(), claims)),
        Err(Rejection::WrongIssuer)
    );
}

#[test]
fn a_subject_other_than_the_issuer_is_refused() {
    // `sub` is the caller the handler sees: order-service's key, signing
    // as itself, must not name user-service there.
    let claims = with(claims(), "sub", json!("user-service"));
    assert_eq!(
        check(&forge(&order_key(), header(), claims)),
        Err(Rejection::SubjectNotIssuer)
    );
}

#[test]
fn an_untrusted_issuer_is_refused() {
    let key = SigningKey::hs256("shared-1", SECRET).unwrap();
    let header = json!({ "alg": "HS256", "typ": TOKEN_TYPE, "kid": "shared-1" });
    let claims = with(claims(), "iss", json!("api-gateway"));
    let token = forge(&key, header, claims);
    let strict = verifier().trust_issuers(["order-service", "user-service"]);
    assert_eq!(strict.verify_at(&token, now()), Err(Rejection::WrongIssuer));
}

#[test]
fn a_missing_audience_is_refused() {
    let token = forge(&order_key(), header(), without(claims(), "aud"));
    assert_eq!(check(&token), Err(Rejection::ClaimType("aud")));
}

#[test]
fn a_token_for_another_service_is_refused() {
    let claims = with(claims(), "aud", json!("user-service"));
    assert_eq!(
        check(&forge(&order_key(), header(), claims)),
        Err(Rejection::WrongAudience)
    );
}

// === claim types ===

#[test]
fn registered_claims_of_the_wrong_json_type_are_refused() {
    let cases = [
        ("exp", json!("1800000300")),
        ("exp", json!(1800000300.5)),
        ("iat", json!(-1)),
        ("nbf", json!(null)),
        ("iss", json!(["order-service"])),
        ("sub", json!(42)),
        ("aud", json!(7)),
        ("aud", json!(["notification-service", 7])),
    ];
    for (claim, value) in cases {
        let token = forge(&order_key(), header(), with(claims(), claim, value.clone()));
        assert_eq!(
            check(&token),
            Err(Rejection::ClaimType(claim)),
            "{claim} = {value}"
        );
    }
}

#[test]
fn a_missing_exp_is_refused() {
    let token = forge(&order_key(), header(), without(claims(), "exp"));
    assert_eq!(check(&token), Err(Rejection::ClaimType("exp")));
}

#[test]
fn permissions_that_are_not_a_list_of_strings_are_refused() {
    for value in [json!("write:notifications"), json!([1, 2])] {
        let token = forge(&order_key(), header(), with(claims(), "permissions", value));
        assert_eq!(check(&token), Err(Rejection::ClaimType("permissions")));
    }
}

// === service tokens and permissions ===

#[test]
fn a_token_that_is_not_a_service_token_is_forbidden() {
    for service in [
        None,
        Some(json!(false)),
        Some(json!("true")),
        Some(json!(1)),
    ] {
        let claims = match &service {
            None => without(claims(), "service"),
            Some(v) => with(claims(), "service", v.clone()),
        };
        let rejection = check(&forge(&order_key(), header(), claims)).unwrap_err();
        assert_eq!(rejection, Rejection::NotAService, "{service:?}");
        assert_eq!(rejection.status(), StatusCode::FORBIDDEN);
        assert_eq!(rejection.error_code(), Some("insufficient_scope"));
    }
}

#[test]
fn a_missing_permission_is_forbidden() {
    let caller = check(&forge(&order_key(), header(), claims())).unwrap();
    assert!(caller.require("write:notifications").is_ok());
    let rejection = caller.require("read:users").unwrap_err();
    assert_eq!(rejection, Rejection::MissingPermission("read:users".into()));
    assert_eq!(
        rejection.www_authenticate(),
        "Bearer error=\"insufficient_scope\""
    );
}

#[test]
fn rejections_map_to_rfc_6750_answers() {
    assert_eq!(Rejection::Missing.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(Rejection::Missing.www_authenticate(), "Bearer");
    assert_eq!(Rejection::Missing.body_error(), "missing_token");
    for r in [
        Rejection::Expired,
        Rejection::BadSignature,
        Rejection::SeveralHeaders,
        Rejection::TooLarge,
    ] {
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.www_authenticate(), "Bearer error=\"invalid_token\"");
        assert_eq!(r.body_error(), "invalid_token");
    }
}

// === keys ===

#[test]
fn both_keys_verify_during_a_rotation_and_the_old_one_stops_after() {
    let mut verifier = verifier();
    verifier
        .keys_mut()
        .insert(VerifyingKey::ed25519_pem("order-2", "order-service", ORDER_PUB_2).unwrap());
    let old = forge(&order_key(), header(), claims());
    let new_key = SigningKey::ed25519_pem("order-2", ORDER_KEY_2).unwrap();
    let new = forge(&new_key, with(header(), "kid", json!("order-2")), claims());
    assert!(verifier.verify_at(&old, now()).is_ok());
    assert!(verifier.verify_at(&new, now()).is_ok());
    verifier.keys_mut().remove("order-1");
    assert_eq!(verifier.verify_at(&old, now()), Err(Rejection::UnknownKey));
    assert!(verifier.verify_at(&new, now()).is_ok());
}

/// The raw 32-byte Ed25519 public key inside an SPKI PEM, base64url.
fn jwk_x(pem: &[u8]) -> String {
    let text = std::str::from_utf8(pem).unwrap();
    let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    URL_SAFE_NO_PAD.encode(&der[der.len() - 32..])
}

#[test]
fn a_jwks_document_loads_ed25519_and_hs256_keys() {
    let jwks = json!({ "keys": [
        { "kty": "OKP", "crv": "Ed25519", "kid": "order-1", "owner": "order-service", "x": jwk_x(ORDER_PUB) },
        { "kty": "oct", "kid": "shared-1", "k": URL_SAFE_NO_PAD.encode(SECRET) },
    ]});
    let keys = KeySet::from_jwks(&jwks.to_string()).unwrap();
    assert_eq!(keys.len(), 2);
    let verifier = Verifier::new("notification-service", keys);
    assert!(
        verifier
            .verify_at(&forge(&order_key(), header(), claims()), now())
            .is_ok()
    );
}

#[test]
fn a_jwks_document_with_bad_keys_is_refused_with_a_reason() {
    let no_owner =
        json!({ "keys": [{ "kty": "OKP", "crv": "Ed25519", "kid": "a", "x": jwk_x(ORDER_PUB) }] });
    assert!(
        matches!(KeySet::from_jwks(&no_owner.to_string()), Err(KeyError::InvalidKey(why)) if why.contains("owner"))
    );
    let rsa = json!({ "keys": [{ "kty": "RSA", "kid": "r", "n": "x", "e": "AQAB" }] });
    assert!(
        matches!(KeySet::from_jwks(&rsa.to_string()), Err(KeyError::InvalidKey(why)) if why.contains("unsupported"))
    );
    assert!(KeySet::from_jwks("not json").is_err());
}

#[test]
fn short_hs256_secrets_and_empty_kids_are_refused() {
    assert_eq!(
        SigningKey::hs256("k", b"short").unwrap_err(),
        KeyError::SecretTooShort(5)
    );
    assert_eq!(
        VerifyingKey::hs256("", SECRET).unwrap_err(),
        KeyError::EmptyKid
    );
    assert!(matches!(
        SigningKey::hs256_env("k", "TOWER_JWT_TEST_SURELY_UNSET_4711"),
        Err(KeyError::MissingEnv(var)) if var == "TOWER_JWT_TEST_SURELY_UNSET_4711"
    ));
}

#[test]
fn the_signer_mints_five_minute_tokens_with_unique_ids() {
    let signer = Signer::new("order-service", order_key()).permissions(["write:notifications"]);
    let a = signer
        .sign_at(Audience::One("notification-service".into()), now())
        .unwrap();
    let b = signer
        .sign_at(Audience::One("notification-service".into()), now())
        .unwrap();
    assert_eq!(a.claims.exp - a.claims.iat, 300);
    assert_ne!(a.claims.jti, b.claims.jti);
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(a.token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        header,
        json!({ "alg": "EdDSA", "typ": TOKEN_TYPE, "kid": "order-1" })
    );
}
