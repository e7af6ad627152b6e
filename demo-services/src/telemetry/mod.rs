//! What an operator sees: Prometheus metrics per service ([`metrics`]),
//! request ids carried through logs and across services ([`request_id`]),
//! and outside text escaped for log lines ([`escape`]).

pub mod escape;
pub mod metrics;
pub mod request_id;

pub use self::escape::Escaped;
pub use self::metrics::Metrics;
