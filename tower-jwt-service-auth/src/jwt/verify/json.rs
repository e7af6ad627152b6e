//! Reading a token's header and claims: JSON that refuses an object
//! holding a member twice, and typed reads of registered claims.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::Rejection;

/// A base64url JSON object, refused if any object in it (at any depth)
/// holds a member twice.
pub(super) fn json_object(
    part: &str,
    name: &'static str,
    what: &'static str,
) -> Result<Map<String, Value>, Rejection> {
    use serde::de::DeserializeSeed;

    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Rejection::Malformed(what))?;
    let duplicate = std::cell::Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let value = UniqueMembers {
        duplicate: &duplicate,
    }
    .deserialize(&mut de)
    .and_then(|value| de.end().map(|()| value));
    match value {
        Ok(Value::Object(map)) => Ok(map),
        _ if duplicate.get() => Err(Rejection::DuplicateMember(name)),
        _ => Err(Rejection::Malformed(what)),
    }
}

/// Reads any JSON value as serde_json's `Value` does, except that an
/// object holding a member twice is an error (and `duplicate` is set, to
/// tell it from malformed JSON).
#[derive(Clone, Copy)]
struct UniqueMembers<'a> {
    duplicate: &'a std::cell::Cell<bool>,
}

impl<'de> serde::de::DeserializeSeed<'de> for UniqueMembers<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for UniqueMembers<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // JSON has no NaN or infinity, so `from(f64)` is never null here.
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if members.contains_key(&name) {
                self.duplicate.set(true);
                return Err(serde::de::Error::custom("a member appears twice"));
            }
            let value = map.next_value_seed(self)?;
            members.insert(name, value);
        }
        Ok(Value::Object(members))
    }
}

/// A NumericDate claim: a non-negative integer number of seconds.
pub(super) fn seconds(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<u64>, Rejection> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or(Rejection::ClaimType(name)),
    }
}

pub(super) fn string<'a>(
    claims: &'a Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'a str>, Rejection> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Rejection::ClaimType(name)),
    }
}
