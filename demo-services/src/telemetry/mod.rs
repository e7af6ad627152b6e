//! What an operator sees: Prometheus metrics per service ([`metrics`]) and
//! request ids carried through logs and across services ([`request_id`]).

pub mod metrics;
pub mod request_id;

pub use self::metrics::Metrics;
