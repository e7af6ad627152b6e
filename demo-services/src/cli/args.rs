//! The command line's arguments: every subcommand and flag, with the
//! value parsers that refuse what cannot work (`crate::flags`). What each
//! command does is in the parent module.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::fault::Faults;
use crate::flags;
use crate::order::Resilience;

/// User, Order and Notification services calling each other through
/// tower-circuit and tower-jwt-service-auth.
#[derive(Debug, Parser)]
#[command(name = "demo-services", version)]
pub struct Cli {
    /// What to run; `all` when left out.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// All three services in one process (the default).
    All(AllArgs),
    /// The user service alone.
    User(UserArgs),
    /// The order service alone.
    Order(OrderArgs),
    /// The notification service alone.
    Notification(NotificationArgs),
    /// Prints a signed service token on stdout.
    Token(TokenArgs),
    /// Writes an Ed25519 key pair per service and the public key set.
    Keygen(KeygenArgs),
    /// Writes a CA and a certificate per service for mutual TLS, or
    /// renews the certificates from the CA already there.
    Certs(CertsArgs),
    /// Writes a new API key version per service (for `--service-auth
    /// api-key`), keeping the versions already there.
    ApiKeys(ApiKeysArgs),
    /// Runs the services on loopback through a scripted outage and tells
    /// what happened, step by step.
    Drill(DrillArgs),
}

/// `drill`.
#[derive(Debug, Clone, Args)]
pub struct DrillArgs {
    /// Where the drill's databases go (default: a fresh temporary
    /// directory, removed afterwards).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Where keys and data live.
#[derive(Debug, Clone, Args)]
pub struct ServiceArgs {
    /// Directory of the SQLite databases (one file per service), unless
    /// --database-url is given.
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// A PostgreSQL database instead of SQLite files:
    /// `postgres://user[:password]@host[:port]/database`. The services may
    /// share one (their tables never collide); the order service's
    /// replicas must share theirs. Each service applies its migrations at
    /// start.
    #[arg(long, value_name = "URL", value_parser = flags::database_url,
          conflicts_with_all = ["data_dir", "db_sync"])]
    pub database_url: Option<String>,
    /// How the services prove who they are to each other: `jwt` (a
    /// service token per call), `api-key` (X-Service-Name and X-API-Key)
    /// or `mtls` (the client certificate alone; needs --tls-dir).
    #[arg(long, value_enum, default_value = "jwt")]
    pub service_auth: crate::auth::ServiceAuth,
    /// Per-service Ed25519 keys written by `keygen`; otherwise
    /// SERVICE_JWT_SECRET is used (with `--service-auth jwt`).
    #[arg(long)]
    pub keys_dir: Option<PathBuf>,
    /// The API keys `api-keys --out DIR` wrote (with `--service-auth
    /// api-key`); otherwise `DEMO_API_KEY_<SERVICE>_V<N>` variables, or in
    /// `all` keys made for the process.
    #[arg(long, value_name = "DIR")]
    pub api_keys_dir: Option<PathBuf>,
    /// Leaves out the server and client layers (tokens, tracing, metrics,
    /// deadlines, retries, breakers, timeouts): only for measuring what
    /// they cost. Every request is taken for the service's usual caller.
    #[arg(long)]
    pub without_layers: bool,
    /// How hard SQLite pushes commits to disk: `full` (every commit synced)
    /// or `normal` (synced at checkpoints; the last commits can be lost on
    /// power loss, not on a crash of the process).
    #[arg(long, value_enum, default_value = "full")]
    pub db_sync: crate::db::Durability,
    /// How long a new connection has to send a complete request head
    /// before it is closed.
    #[arg(long, default_value = "10s", value_parser = flags::positive_duration)]
    pub header_read_timeout: Duration,
    /// How long a kept-alive connection may wait between requests before
    /// it is closed.
    #[arg(long, default_value = "60s", value_parser = flags::positive_duration)]
    pub idle_timeout: Duration,
    /// The most connections each service holds at once (default: the
    /// open-file limit less an eighth, shared between the services of
    /// `all`).
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Serve and call over mutual TLS with the certificates `certs` wrote
    /// to this directory: clients must present a certificate from its CA,
    /// and a called service must prove its own SPIFFE ID. The order
    /// service's URLs are then https:// (not with --without-layers, whose
    /// clients speak plaintext only).
    #[arg(long, value_name = "DIR")]
    pub tls_dir: Option<PathBuf>,
}

/// Fault injection, off by default.
#[derive(Debug, Clone, Args)]
pub struct FaultArgs {
    /// Answer 503 to this fraction of authenticated requests (0 to 1,
    /// evenly spread).
    #[arg(long, default_value = "0", value_parser = flags::fraction)]
    pub fault_error_rate: f64,
    /// Delay every authenticated request by this much, e.g. 300ms.
    #[arg(long, default_value = "0ms", value_parser = flags::duration)]
    pub fault_latency: Duration,
}

impl FaultArgs {
    pub(super) fn faults(&self) -> Faults {
        Faults::new(self.fault_error_rate, self.fault_latency)
    }
}

/// `all`.
#[derive(Debug, Clone, Args)]
pub struct AllArgs {
    /// The user service's address; order and notification take the next
    /// two ports (or, with port 0, ports of their own).
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub service: ServiceArgs,
    /// Where the order service finds the user service, http://HOST:PORT,
    /// or https:// with --tls-dir (default: the one started here).
    #[arg(long, value_parser = flags::service_url)]
    pub user_url: Option<String>,
    /// Where the order service finds the notification service,
    /// http://HOST:PORT, or https:// with --tls-dir (default: the one
    /// started here).
    #[arg(long, value_parser = flags::service_url)]
    pub notification_url: Option<String>,
    /// How the order service fetches users: `http` (REST, JSON) or `grpc`
    /// (user.UserService over HTTP/2, at the host and port of the user
    /// URL).
    #[arg(long, value_enum, default_value = "http")]
    pub user_transport: crate::order::UserTransport,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub resilience: Resilience,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub faults: FaultArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub broker: crate::broker::BrokerArgs,
    /// Do not serve gRPC server reflection (the health service stays):
    /// for deployments that do not describe their API to anyone asking.
    #[arg(long)]
    pub no_grpc_reflection: bool,
    /// With fault flags: the one service to inject them into
    /// (user-service, order-service or notification-service); all three
    /// when left out.
    #[arg(long)]
    pub fault_target: Option<String>,
}

/// `user`.
#[derive(Debug, Clone, Args)]
pub struct UserArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// Do not serve gRPC server reflection (the health service stays):
    /// for deployments that do not describe their API to anyone asking.
    #[arg(long)]
    pub no_grpc_reflection: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub service: ServiceArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub faults: FaultArgs,
}

/// `notification`.
#[derive(Debug, Clone, Args)]
pub struct NotificationArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3002")]
    pub listen: SocketAddr,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub service: ServiceArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub faults: FaultArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub broker: crate::broker::BrokerArgs,
}

/// `order`.
#[derive(Debug, Clone, Args)]
pub struct OrderArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3001")]
    pub listen: SocketAddr,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub service: ServiceArgs,
    /// Base URL of the user service, http://HOST:PORT (https:// with
    /// --tls-dir, and only then).
    #[arg(long, default_value = "http://127.0.0.1:3000", value_parser = flags::service_url)]
    pub user_url: String,
    /// Base URL of the notification service, http://HOST:PORT (https://
    /// with --tls-dir, and only then).
    #[arg(long, default_value = "http://127.0.0.1:3002", value_parser = flags::service_url)]
    pub notification_url: String,
    /// How the order service fetches users: `http` (REST, JSON) or `grpc`
    /// (user.UserService over HTTP/2, at the host and port of the user
    /// URL).
    #[arg(long, value_enum, default_value = "http")]
    pub user_transport: crate::order::UserTransport,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub resilience: Resilience,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub faults: FaultArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub broker: crate::broker::BrokerArgs,
}

/// `token`.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The calling service (subject and issuer), e.g. api-gateway.
    #[arg(long)]
    pub service: String,
    /// The target service: user-service, order-service or
    /// notification-service.
    #[arg(long, value_parser = flags::audience)]
    pub audience: String,
    /// Comma-separated permissions; the service's usual ones when left out.
    #[arg(long, value_delimiter = ',')]
    pub permissions: Option<Vec<String>>,
    /// Lifetime, e.g. 5m or 30s (at most 1h: the services refuse tokens
    /// living longer).
    #[arg(long, default_value = "5m", value_parser = flags::token_ttl)]
    pub ttl: Duration,
    /// Per-service keys written by `keygen`; otherwise SERVICE_JWT_SECRET.
    #[arg(long)]
    pub keys_dir: Option<PathBuf>,
}

/// `keygen`.
#[derive(Debug, Clone, Args)]
pub struct KeygenArgs {
    /// Directory to write the keys into.
    #[arg(long)]
    pub out: PathBuf,
}

/// `api-keys`.
#[derive(Debug, Clone, Args)]
pub struct ApiKeysArgs {
    /// Directory to write the keys into (`<service>.v<N>.apikey`, readable
    /// by their owner only).
    #[arg(long)]
    pub out: PathBuf,
}

/// `certs`.
#[derive(Debug, Clone, Args)]
pub struct CertsArgs {
    /// Directory to write the CA and the certificates into.
    #[arg(long)]
    pub out: PathBuf,
    /// The trust domain of every SPIFFE ID, spiffe://NAME/SERVICE
    /// (default: demo.local; with --renew, the directory's, and no
    /// other is accepted).
    #[arg(long, value_parser = flags::trust_domain)]
    pub trust_domain: Option<String>,
    /// Lifetime of the service certificates, from 1m to 2160h (90 days).
    #[arg(long, default_value = "24h", value_parser = flags::cert_ttl)]
    pub ttl: Duration,
    /// Reissue the service certificates (new keys) from the CA already in
    /// the directory, keeping its trust domain.
    #[arg(long)]
    pub renew: bool,
}
