//! Ed25519 public keys are checked when they are loaded, from a JWKS or
//! an SPKI PEM: a key of the wrong length, or a weak (small-order or
//! non-canonically encoded) point, is refused with a typed error, so no key
//! that could panic the signature check or accept a signature nobody made
//! ever reaches the verifier. And with every key that is accepted, no token
//! can make verification panic.

use std::time::{Duration, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::{Rng, RngExt};
use serde_json::json;
use tower_jwt_service_auth::jwt::claims::TOKEN_TYPE;
use tower_jwt_service_auth::jwt::keys::{Ed25519KeyPair, KeyError, KeySet, VerifyingKey};
use tower_jwt_service_auth::jwt::verify::{Rejection, Verifier};

const ORDER_PUB: &[u8] = include_bytes!("keys/order-service.pub.pem");

/// The identity point (order 1): `y = 1`.
const IDENTITY: [u8; 32] = {
    let mut b = [0u8; 32];
    b[0] = 1;
    b
};

/// A point of order 2: `y = -1 = p - 1`.
const ORDER_TWO: [u8; 32] = {
    let mut b = [0xff; 32];
    b[0] = 0xec;
    b[31] = 0x7f;
    b
};

/// A point of order 4: `y = 0`.
const ORDER_FOUR: [u8; 32] = [0; 32];

fn jwks(kid: &str, x: &str) -> String {
    json!({ "keys": [{ "kty": "OKP", "crv": "Ed25519", "kid": kid, "x": x, "owner": "order-service" }] })
        .to_string()
}

fn jwks_of(kid: &str, bytes: &[u8]) -> Result<KeySet, KeyError> {
    KeySet::from_jwks(&jwks(kid, &URL_SAFE_NO_PAD.encode(bytes)))
}

/// An SPKI PEM (RFC 8410's layout) around `key`, whatever its length,
/// base64 wrapped at 64 characters as RFC 7468 has it (a real Ed25519
/// key's 60 characters fit one line; a longer wrong one needs two).
fn spki_pem(key: &[u8]) -> String {
    let mut der = vec![0x30, (10 + key.len()) as u8];
    der.extend_from_slice(&[0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70]);
    der.extend_from_slice(&[0x03, (key.len() + 1) as u8, 0x00]);
    der.extend_from_slice(key);
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|l| std::str::from_utf8(l).unwrap())
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    )
}

fn pem_of(kid: &str, bytes: &[u8]) -> Result<VerifyingKey, KeyError> {
    VerifyingKey::ed25519_pem(kid, "order-service", spki_pem(bytes).as_bytes())
}

fn wrong_length(kid: &str, len: usize) -> KeyError {
    KeyError::Ed25519KeyLength {
        kid: kid.to_owned(),
        len,
    }
}

fn weak(kid: &str) -> KeyError {
    KeyError::WeakEd25519Key {
        kid: kid.to_owned(),
    }
}

// === length ===

#[test]
fn jwks_refuses_an_x_of_three_bytes() {
    // "AAAA" is three zero bytes.
    assert_eq!(
        KeySet::from_jwks(&jwks("k", "AAAA")).unwrap_err(),
        wrong_length("k", 3)
    );
}

#[test]
fn jwks_refuses_short_long_and_empty_x() {
    for len in [0, 1, 31, 33, 40, 64] {
        assert_eq!(
            jwks_of("k", &vec![7u8; len]).unwrap_err(),
            wrong_length("k", len),
            "{len} bytes"
        );
    }
}

#[test]
fn jwks_does_not_cut_a_long_x_to_a_valid_key() {
    // A real key with 8 more bytes: cut to 32, it would load as the real one.
    let pair = Ed25519KeyPair::generate();
    let mut x = URL_SAFE_NO_PAD.decode(pair.public_x()).unwrap();
    x.extend_from_slice(&[0; 8]);
    assert_eq!(jwks_of("k", &x).unwrap_err(), wrong_length("k", 40));
}

#[test]
fn pem_refuses_short_long_and_empty_keys() {
    for len in [0, 1, 31, 33, 40, 64] {
        assert_eq!(
            pem_of("k", &vec![7u8; len]).unwrap_err(),
            wrong_length("k", len),
            "{len} bytes"
        );
    }
}

#[test]
fn pem_refuses_what_is_not_an_ed25519_spki() {
    for pem in [
        "".to_owned(),
        "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n".to_owned(),
        spki_pem(&[1; 32]).replace("PUBLIC KEY", "PRIVATE KEY"),
        // An SPKI whose BIT STRING length disagrees with its content.
        spki_pem(&[1; 32]).replace("AyEA", "AyIA"),
        // Another algorithm's OID (X25519, 1.3.101.110).
        spki_pem(&[1; 32]).replace("K2Vw", "K2Vu"),
    ] {
        assert!(
            matches!(
                VerifyingKey::ed25519_pem("k", "o", pem.as_bytes()),
                Err(KeyError::InvalidKey(_))
            ),
            "{pem:?}"
        );
    }
}

#[test]
fn both_loaders_accept_real_keys() {
    let pair = Ed25519KeyPair::generate();
    let x = URL_SAFE_NO_PAD.decode(pair.public_x()).unwrap();
    assert_eq!(jwks_of("k", &x).unwrap().len(), 1);
    assert!(pem_of("k", &x).is_ok());
    assert!(VerifyingKey::ed25519_pem("k", "order-service", ORDER_PUB).is_ok());
}

// === weak keys ===

#[test]
fn jwks_refuses_the_identity_point() {
    // The example, verbatim.
    assert_eq!(
        KeySet::from_jwks(&jwks("k", "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")).unwrap_err(),
        weak("k")
    );
}

#[test]
fn both_loaders_refuse_small_order_points() {
    for point in [IDENTITY, ORDER_TWO, ORDER_FOUR] {
        assert_eq!(jwks_of("k", &point).unwrap_err(), weak("k"), "{point:?}");
        assert_eq!(pem_of("k", &point).unwrap_err(), weak("k"), "{point:?}");
    }
}

#[test]
fn both_loaders_refuse_a_non_canonical_encoding_of_a_valid_point() {
    // `y + p` for a small `y` still fits in 255 bits and decodes to the
    // point `y` names; find one that is a point and not of small order.
    let p_plus = |y: u8| {
        let mut b = ORDER_TWO; // p - 1
        let (low, carry) = b[0].overflowing_add(y + 1);
        b[0] = low;
        assert!(!carry, "small y only");
        b
    };
    let mut found = 0;
    for y in 2..=17u8 {
        let canonical = {
            let mut b = [0u8; 32];
            b[0] = y;
            b
        };
        if jwks_of("k", &canonical).is_err() {
            continue; // not a point (or weak)
        }
        found += 1;
        assert_eq!(jwks_of("k", &p_plus(y)).unwrap_err(), weak("k"), "y = {y}");
        assert_eq!(pem_of("k", &p_plus(y)).unwrap_err(), weak("k"), "y = {y}");
    }
    assert!(found > 0, "some small y is a valid point");
}

#[test]
fn a_token_signed_01_then_zeros_finds_no_weak_key_to_match() {
    let verifier = Verifier::new("user-service", KeySet::new());
    assert!(jwks_of("weak-1", &IDENTITY).is_err());
    let mut signature = [0u8; 64];
    signature[0] = 1;
    let token = token("weak-1", &signature);
    assert_eq!(verifier.verify(&token), Err(Rejection::UnknownKey));
}

// === no panic, whatever the token ===

fn token(kid: &str, signature: &[u8]) -> String {
    let header = json!({ "alg": "EdDSA", "typ": TOKEN_TYPE, "kid": kid });
    let claims = json!({
        "sub": "order-service", "iss": "order-service", "aud": "user-service",
        "iat": 1_800_000_000u64, "exp": 1_800_000_300u64, "service": true,
    });
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

#[test]
fn no_signature_of_any_length_panics_with_any_accepted_key() {
    let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut rng = rand::rng();
    // Keys accepted by each loader: generated ones, and the test key file.
    let mut keys =
        KeySet::new().with(VerifyingKey::ed25519_pem("file", "order-service", ORDER_PUB).unwrap());
    for i in 0..4 {
        let pair = Ed25519KeyPair::generate();
        keys.insert(
            pair.verifying_key(format!("pem-{i}"), "order-service")
                .unwrap(),
        );
        let x = URL_SAFE_NO_PAD.decode(pair.public_x()).unwrap();
        let jwk = jwks_of(&format!("jwks-{i}"), &x).unwrap();
        keys.insert(jwk.get(&format!("jwks-{i}")).unwrap().clone());
    }
    let kids = [
        "file", "pem-0", "pem-1", "pem-2", "pem-3", "jwks-0", "jwks-1", "jwks-2", "jwks-3",
    ];
    let verifier = Verifier::new("user-service", keys);
    let mut zeros_then_one = [0u8; 64];
    zeros_then_one[0] = 1;
    for kid in kids {
        for len in 0..=130 {
            let mut random = vec![0u8; len];
            rng.fill_bytes(&mut random);
            for signature in [vec![0u8; len], vec![0xff; len], random] {
                let result = verifier.verify_at(&token(kid, &signature), at);
                assert_eq!(result, Err(Rejection::BadSignature), "{kid}, {len} bytes");
            }
        }
        assert_eq!(
            verifier.verify_at(&token(kid, &zeros_then_one), at),
            Err(Rejection::BadSignature)
        );
        // And random tokens of every shape, for good measure.
        for _ in 0..200 {
            let len = rng.random_range(0..200);
            let mut signature = vec![0u8; len];
            rng.fill_bytes(&mut signature);
            assert!(verifier.verify_at(&token(kid, &signature), at).is_err());
        }
    }
}
