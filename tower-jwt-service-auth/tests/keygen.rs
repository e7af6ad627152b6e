//! Generated Ed25519 key pairs: the PEMs match what OpenSSL writes for the
//! same seed, and tokens signed with them verify (and only with them).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tower_jwt_service_auth::jwt::keys::{Ed25519KeyPair, KeySet};
use tower_jwt_service_auth::jwt::sign::Signer;
use tower_jwt_service_auth::jwt::verify::Verifier;

const ORDER_KEY: &str = include_str!("keys/order-service.key.pem");
const ORDER_PUB: &str = include_str!("keys/order-service.pub.pem");

fn der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).unwrap()
}

#[test]
fn pems_match_openssl_for_the_same_seed() {
    // The last 32 bytes of an OpenSSL Ed25519 PKCS#8 key are its seed.
    let private = der(ORDER_KEY);
    let seed: [u8; 32] = private[private.len() - 32..].try_into().unwrap();
    let pair = Ed25519KeyPair::from_seed(seed);
    assert_eq!(pair.private_pem(), ORDER_KEY);
    assert_eq!(pair.public_pem(), ORDER_PUB);
    let read_back = Ed25519KeyPair::from_private_pem(ORDER_KEY).unwrap();
    assert_eq!(read_back.public_x(), pair.public_x());
    assert!(Ed25519KeyPair::from_private_pem(ORDER_PUB).is_err());
}

#[test]
fn generated_pairs_differ_and_sign_tokens_that_verify() {
    let a = Ed25519KeyPair::generate();
    let b = Ed25519KeyPair::generate();
    assert_ne!(a.public_x(), b.public_x());

    let signer = Signer::new("order-service", a.signing_key("order-1").unwrap());
    let token = signer.sign("user-service").unwrap();

    let trusted = KeySet::new().with(a.verifying_key("order-1", "order-service").unwrap());
    let identity = Verifier::new("user-service", trusted)
        .verify(token.token.as_str())
        .unwrap();
    assert_eq!(identity.service, "order-service");

    // The other pair's public key under the same kid does not verify it.
    let impostor = KeySet::new().with(b.verifying_key("order-1", "order-service").unwrap());
    assert!(
        Verifier::new("user-service", impostor)
            .verify(token.token.as_str())
            .is_err()
    );
}

#[test]
fn public_jwk_loads_back_as_a_key_set() {
    let pair = Ed25519KeyPair::generate();
    let doc = serde_json::json!({ "keys": [pair.public_jwk("order-1", "order-service")] });
    let keys = KeySet::from_jwks(&doc.to_string()).unwrap();
    let signer = Signer::new("order-service", pair.signing_key("order-1").unwrap());
    let token = signer.sign("user-service").unwrap();
    let identity = Verifier::new("user-service", keys)
        .verify(token.token.as_str())
        .unwrap();
    assert_eq!(identity.service, "order-service");

    // The key is bound to its owner: another issuer with it is refused.
    let pretender = Signer::new("user-service", pair.signing_key("order-1").unwrap());
    let forged = pretender.sign("user-service").unwrap();
    let keys = KeySet::from_jwks(&doc.to_string()).unwrap();
    assert!(
        Verifier::new("user-service", keys)
            .trust_issuers(["user-service", "order-service"])
            .verify(forged.token.as_str())
            .is_err()
    );
}
