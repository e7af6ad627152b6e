//! The command line: `demo-services [all|user|order|notification|token|keygen|certs|api-keys|drill]`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::api_keys::{self, ApiKeySource};
use crate::auth::{self, ApiKeyRing, KeySource, Keys, ServiceAuth};
use crate::db::Database;
use crate::fault::Faults;
use crate::order::Settings;
use crate::{notification, order, server, tls, user};

mod args;

pub use args::{
    AllArgs, ApiKeysArgs, CertsArgs, Cli, Command, DrillArgs, FaultArgs, KeygenArgs,
    NotificationArgs, OrderArgs, ServiceArgs, TokenArgs, UserArgs,
};

impl ServiceArgs {
    fn layered(&self) -> bool {
        !self.without_layers
    }

    // `--without-layers` is decided here, once per service: either the
    // service's whole stack or its routes alone (`server::without_layers`,
    // where the one stand-in caller is inserted).

    fn user_app(&self, state: &user::State) -> axum::Router {
        if self.without_layers {
            server::without_layers(
                user::routes(state.clone()),
                user::public_routes(state),
                auth::API_GATEWAY,
            )
        } else {
            user::app(state.clone())
        }
    }

    fn notification_app(&self, state: &notification::State) -> axum::Router {
        if self.without_layers {
            server::without_layers(
                notification::routes(state.clone()),
                notification::public_routes(state.clone()),
                auth::ORDER_SERVICE,
            )
        } else {
            notification::app(state.clone())
        }
    }

    /// The database `--database-url` names, or SQLite files under
    /// `--data-dir`.
    fn database(&self) -> Database {
        match &self.database_url {
            Some(url) => Database::Postgres { url: url.clone() },
            None => Database::sqlite(&self.data_dir, self.db_sync),
        }
    }

    /// The order service's state: its clients through the whole client
    /// stack, or with `--without-layers` the bare hyper-util client.
    async fn open_order(
        &self,
        keys: &Keys,
        settings: &Settings,
        faults: Faults,
    ) -> Result<order::State, order::StartError> {
        if !self.without_layers {
            return order::State::open(&self.database(), keys, settings, faults).await;
        }
        let ops = server::ServerParts::new(auth::ORDER_SERVICE, keys, faults);
        let upstream = order::Upstream::without_layers(
            &settings.user_url,
            &settings.notification_url,
            settings.user_transport,
        )
        .map_err(order::StartError::Upstream)?;
        order::State::with_upstream(&self.database(), ops, upstream, settings).await
    }

    fn order_app(&self, state: &order::State) -> axum::Router {
        if self.without_layers {
            server::without_layers(
                order::routes(state.clone()),
                order::public_routes(state.clone()),
                auth::API_GATEWAY,
            )
        } else {
            order::app(state.clone())
        }
    }

    /// The connection limits for each of `services` services run in this
    /// process.
    fn limits(&self, services: usize) -> Result<server::serve::Limits, Error> {
        let derived = server::serve::Limits::default().shared_by(services);
        let limits = server::serve::Limits {
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections.unwrap_or(derived.max_connections),
            ..derived
        };
        limits.validate()?;
        Ok(limits)
    }

    /// The TLS directory `service` serves with, if `--tls-dir` is given;
    /// its files are read and checked now, so a bad one stops the start.
    fn tls(&self, service: &str) -> Result<Option<tls::identity::TlsDir>, Error> {
        let Some(dir) = &self.tls_dir else {
            return Ok(None);
        };
        let tls = tls::identity::TlsDir::open(dir, service)?;
        tls::server::server_config(&tls)?;
        tracing::info!(service, dir = %dir.display(), "serving over mutual TLS");
        Ok(Some(tls))
    }

    /// Refuses `--tls-dir` with `--without-layers` for a command whose
    /// service calls others: the bare clients that measure the layers'
    /// cost speak plaintext only, and TLS is not one of the layers.
    fn refuse_tls_without_layers(&self, command: &str) -> Result<(), Error> {
        if self.tls_dir.is_some() && self.without_layers {
            return Err(format!(
                "`{command}` cannot take --tls-dir with --without-layers: without its layers \
                 the order service calls over plaintext only"
            )
            .into());
        }
        Ok(())
    }

    /// Refuses a dependency's URL whose scheme does not match
    /// `--tls-dir` (https:// with it, http:// without), before anything
    /// starts, naming the flag. The clients check again when built.
    fn check_url(&self, flag: &str, url: &str) -> Result<(), Error> {
        match (self.tls_dir.is_some(), url.starts_with("https://")) {
            (true, false) => Err(format!(
                "{flag} {url}: with --tls-dir the services are called over mutual TLS, \
                 so it must be https://"
            )
            .into()),
            (false, true) => Err(format!(
                "{flag} {url}: https:// needs --tls-dir (the certificates to call with)"
            )
            .into()),
            _ => Ok(()),
        }
    }

    /// Finds the credentials of `--service-auth` (logging where they came
    /// from, never a key): what every service command starts with.
    fn prepare(&self, allow_ephemeral: bool) -> Result<Keys, Error> {
        let misplaced = |flag: &str, mode: &str| -> Result<(), Error> {
            Err(format!("{flag} is for --service-auth {mode}").into())
        };
        if self.keys_dir.is_some() && self.service_auth != ServiceAuth::Jwt {
            misplaced("--keys-dir", "jwt")?;
        }
        if self.api_keys_dir.is_some() && self.service_auth != ServiceAuth::ApiKey {
            misplaced("--api-keys-dir", "api-key")?;
        }
        let keys = match self.service_auth {
            ServiceAuth::Jwt => Keys::resolve(self.keys_dir.as_deref(), allow_ephemeral)?,
            ServiceAuth::ApiKey => Keys::api_keys(ApiKeyRing::resolve(
                self.api_keys_dir.as_deref(),
                allow_ephemeral,
            )?),
            ServiceAuth::Mtls => {
                let dir = self.tls_dir.as_deref().ok_or(
                    "--service-auth mtls needs --tls-dir DIR: the client certificate is the \
                     only credential (write the certificates with `demo-services certs --out DIR`)",
                )?;
                Keys::mtls(&tls::certs::trust_domain(dir)?)?
            }
        };
        log_keys(&keys);
        Ok(keys)
    }
}

/// Parses the command line, runs it, and maps failures to exit code 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::All(AllArgs::default_args()));
    // The drill tells its own story on stdout; only problems go to the log.
    init_tracing(if matches!(command, Command::Drill(_)) {
        "error"
    } else {
        "info,sqlx=warn"
    });
    let result = match command {
        Command::Token(args) => token(&args),
        Command::Keygen(args) => keygen(&args.out),
        Command::Certs(args) => certs(&args),
        Command::ApiKeys(args) => write_api_keys(&args.out),
        Command::Drill(args) => runtime().and_then(|rt| rt.block_on(drill(args))),
        service => runtime().and_then(|rt| rt.block_on(serve(service, server::signal()))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo-services: {e}");
            ExitCode::FAILURE
        }
    }
}

impl AllArgs {
    fn default_args() -> AllArgs {
        // Parsing an empty command line yields clap's defaults, so the
        // defaults live in one place.
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            all: AllArgs,
        }
        Only::parse_from(["demo-services"]).all
    }
}

type Error = Box<dyn std::error::Error>;

fn init_tracing(default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn token(args: &TokenArgs) -> Result<(), Error> {
    if auth::permissions_of(&args.service).is_none() {
        return Err(format!(
            "unknown service {:?}; known: {}",
            args.service,
            auth::SERVICES.join(", ")
        )
        .into());
    }
    let keys = Keys::resolve(args.keys_dir.as_deref(), false)?;
    let token = keys.token(
        &args.service,
        &args.audience,
        args.permissions.clone(),
        args.ttl,
    )?;
    println!("{token}");
    Ok(())
}

fn keygen(out: &Path) -> Result<(), Error> {
    for path in auth::keygen(out)? {
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn write_api_keys(out: &Path) -> Result<(), Error> {
    for path in api_keys::generate(out)? {
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn certs(args: &CertsArgs) -> Result<(), Error> {
    use crate::tls::certs;
    let now = time::OffsetDateTime::now_utc();
    let issued = if args.renew {
        certs::renew(&args.out, args.trust_domain.as_deref(), args.ttl, now)?
    } else {
        let trust_domain = args
            .trust_domain
            .as_deref()
            .unwrap_or(certs::DEFAULT_TRUST_DOMAIN);
        certs::create(&args.out, trust_domain, args.ttl, now)?
    };
    for path in &issued.files {
        println!("wrote {}", path.display());
    }
    println!(
        "trust domain {}: certificates valid until {}, the CA until {}",
        issued.trust_domain,
        certs::Utc(issued.leaves_not_after),
        certs::Utc(issued.ca_not_after)
    );
    Ok(())
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}").into())
}

fn log_keys(keys: &Keys) {
    if let Some(ring) = keys.api_key_ring() {
        // Where from and which versions; never a key.
        match ring.source() {
            ApiKeySource::Dir(dir) => {
                tracing::info!(dir = %dir.display(), "service auth: API keys from --api-keys-dir")
            }
            ApiKeySource::Env => tracing::info!(
                "service auth: API keys from {}* variables",
                api_keys::ENV_PREFIX
            ),
            ApiKeySource::Ephemeral => tracing::warn!(
                "service auth: neither --api-keys-dir nor {}* variables given; generated \
                 API keys for this process",
                api_keys::ENV_PREFIX
            ),
        }
        return;
    }
    match keys.source() {
        KeySource::KeysDir => tracing::info!("keys: per-service Ed25519 keys from --keys-dir"),
        KeySource::SharedSecret => {
            tracing::info!("keys: shared HS256 secret from {}", auth::SECRET_ENV)
        }
        KeySource::Ephemeral => tracing::warn!(
            "keys: neither {} nor --keys-dir given; generated ephemeral Ed25519 keys, \
             so tokens work only against this process and die with it",
            auth::SECRET_ENV
        ),
        KeySource::Unused => {
            tracing::info!("service auth: client certificates alone (mutual TLS)")
        }
    }
}

/// Runs a service command until `shutdown`.
async fn serve(
    command: Command,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    match command {
        Command::User(args) => {
            let keys = args.service.prepare(false)?;
            let listener = bind(args.listen).await?;
            let limits = args.service.limits(1)?;
            let mut state =
                user::State::open(&args.service.database(), &keys, args.faults.faults()).await?;
            state.server.limits = limits;
            state.server.tls = args.service.tls(auth::USER_SERVICE)?;
            state.grpc_reflection = !args.no_grpc_reflection;
            let app = args.service.user_app(&state);
            user::run(listener, state, app, stopped()).await?;
        }
        Command::Notification(args) => {
            let keys = args.service.prepare(false)?;
            let listener = bind(args.listen).await?;
            let limits = args.service.limits(1)?;
            let mut state =
                notification::State::open(&args.service.database(), &keys, args.faults.faults())
                    .await?;
            if let Some(nats) = args.broker.nats() {
                state = state.with_nats(&nats).await?;
            }
            state.server.limits = limits;
            state.server.tls = args.service.tls(auth::NOTIFICATION_SERVICE)?;
            let app = args.service.notification_app(&state);
            notification::run(listener, state, app, stopped()).await?;
        }
        Command::Order(args) => {
            args.service.refuse_tls_without_layers("order")?;
            args.service.check_url("--user-url", &args.user_url)?;
            args.service
                .check_url("--notification-url", &args.notification_url)?;
            let keys = args.service.prepare(false)?;
            let limits = args.service.limits(1)?;
            let listener = bind(args.listen).await?;
            let settings = Settings {
                user_url: args.user_url,
                notification_url: args.notification_url,
                user_transport: args.user_transport,
                resilience: args.resilience,
                tls: args.service.tls(auth::ORDER_SERVICE)?,
                nats: args.broker.nats(),
            };
            let mut state = args
                .service
                .open_order(&keys, &settings, args.faults.faults())
                .await?;
            state.server.limits = limits;
            let app = args.service.order_app(&state);
            order::run(listener, state, app, stopped()).await?;
        }
        Command::All(args) => {
            args.service.refuse_tls_without_layers("all")?;
            if let Some(url) = &args.user_url {
                args.service.check_url("--user-url", url)?;
            }
            if let Some(url) = &args.notification_url {
                args.service.check_url("--notification-url", url)?;
            }
            let keys = args.service.prepare(true)?;
            let limits = args.service.limits(3)?;
            let port = |i: u16| {
                let mut addr = args.listen;
                if addr.port() != 0 {
                    addr.set_port(addr.port() + i);
                }
                addr
            };
            let users = bind(port(0)).await?;
            let orders = bind(port(1)).await?;
            let notifications = bind(port(2)).await?;
            let (user_addr, order_addr, notification_addr) = (
                users.local_addr()?,
                orders.local_addr()?,
                notifications.local_addr()?,
            );
            let scheme = match args.service.tls_dir {
                Some(_) => "https",
                None => "http",
            };
            let settings = Settings {
                user_url: args.user_url.unwrap_or(format!("{scheme}://{user_addr}")),
                notification_url: args
                    .notification_url
                    .unwrap_or(format!("{scheme}://{notification_addr}")),
                user_transport: args.user_transport,
                resilience: args.resilience,
                tls: args.service.tls(auth::ORDER_SERVICE)?,
                nats: args.broker.nats(),
            };
            let database = args.service.database();
            let faults_for = |service: &str| match &args.fault_target {
                Some(target) if target != service => Faults::default(),
                _ => args.faults.faults(),
            };
            if let Some(target) = &args.fault_target
                && !auth::SERVICES.contains(&target.as_str())
            {
                return Err(format!("--fault-target: unknown service {target:?}").into());
            }
            let mut user_state =
                user::State::open(&database, &keys, faults_for(auth::USER_SERVICE)).await?;
            let mut notification_state =
                notification::State::open(&database, &keys, faults_for(auth::NOTIFICATION_SERVICE))
                    .await?;
            if let Some(nats) = &settings.nats {
                notification_state = notification_state.with_nats(nats).await?;
            }
            let mut order_state = args
                .service
                .open_order(&keys, &settings, faults_for(auth::ORDER_SERVICE))
                .await?;
            let layered = args.service.layered();
            user_state.server.limits = limits;
            user_state.server.tls = args.service.tls(auth::USER_SERVICE)?;
            user_state.grpc_reflection = !args.no_grpc_reflection;
            notification_state.server.limits = limits;
            notification_state.server.tls = args.service.tls(auth::NOTIFICATION_SERVICE)?;
            order_state.server.limits = limits;
            if !layered {
                tracing::warn!(
                    "--without-layers: no authentication, tracing, metrics or resilience"
                );
            }
            print_banner(
                &keys,
                &args.service,
                user_addr,
                order_addr,
                notification_addr,
            )?;
            let user_app = args.service.user_app(&user_state);
            let order_app = args.service.order_app(&order_state);
            let notification_app = args.service.notification_app(&notification_state);
            let (a, b, c) = tokio::join!(
                user::run(users, user_state, user_app, stopped()),
                order::run(orders, order_state, order_app, stopped()),
                notification::run(
                    notifications,
                    notification_state,
                    notification_app,
                    stopped()
                ),
            );
            a?;
            b?;
            c?;
        }
        Command::Token(_)
        | Command::Keygen(_)
        | Command::Certs(_)
        | Command::ApiKeys(_)
        | Command::Drill(_) => {
            unreachable!("handled before the services start")
        }
    }
    tracing::info!("stopped");
    Ok(())
}

async fn drill(args: DrillArgs) -> Result<(), Error> {
    let (dir, temporary) = match args.data_dir {
        Some(dir) => (dir, false),
        None => (
            std::env::temp_dir().join(format!("demo-services-drill-{}", std::process::id())),
            true,
        ),
    };
    let mut say = |line: String| println!("{line}");
    let result = crate::drill::run(&dir, &mut say).await;
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let report = result.map_err(|e| e.to_string())?;
    if report.closed_again && report.drained {
        Ok(())
    } else {
        Err("the drill did not end with the breaker closed and the outbox empty".into())
    }
}

/// How the banner's curl commands prove who the caller is: set-up lines
/// to paste first, the arguments of each call, and the URL scheme.
struct CurlAuth {
    intro: String,
    setup: String,
    args: String,
    scheme: &'static str,
}

/// curl's arguments for presenting api-gateway's certificate from `dir`
/// and checking the service's against its CA.
fn curl_tls_args(dir: &Path) -> String {
    let file = |name: &str| dir.join(name).display().to_string();
    format!(
        "--cert {} --key {} --cacert {}",
        file(&tls::certs::cert_file(auth::API_GATEWAY)),
        file(&tls::certs::key_file(auth::API_GATEWAY)),
        file(tls::certs::CA_CERT)
    )
}

impl CurlAuth {
    /// As api-gateway calling the order service, in `keys`' mode; over
    /// mutual TLS (with the gateway's certificate) whenever `--tls-dir`
    /// is given, whatever the mode.
    fn of(keys: &Keys, service: &ServiceArgs) -> Result<CurlAuth, Error> {
        let mut auth = CurlAuth::credential(keys, service)?;
        if let (Some(dir), "http") = (service.tls_dir.as_deref(), auth.scheme) {
            auth.args = format!("{} {}", curl_tls_args(dir), auth.args);
            auth.scheme = "https";
        }
        Ok(auth)
    }

    fn credential(keys: &Keys, service: &ServiceArgs) -> Result<CurlAuth, Error> {
        let ttl = Duration::from_secs(30 * 60);
        Ok(match keys.service_auth() {
            ServiceAuth::Jwt => CurlAuth {
                intro: "the token is api-gateway's, for order-service, valid 30 minutes".into(),
                setup: format!(
                    "TOKEN={}",
                    keys.token(auth::API_GATEWAY, auth::ORDER_SERVICE, None, ttl)?
                ),
                args: "-H \"Authorization: Bearer $TOKEN\"".into(),
                scheme: "http",
            },
            ServiceAuth::ApiKey => {
                let ring = keys.api_key_ring().ok_or("no API keys")?;
                let (version, key) = ring
                    .newest(auth::API_GATEWAY)
                    .ok_or("no API key for api-gateway")?;
                // The key itself only when nothing else can show it: keys
                // made for this process.
                let value = match ring.source() {
                    ApiKeySource::Ephemeral => key.to_owned(),
                    ApiKeySource::Env => {
                        format!("${}", api_keys::env_var(auth::API_GATEWAY, version))
                    }
                    ApiKeySource::Dir(dir) => format!(
                        "$(cat {})",
                        dir.join(api_keys::key_file(auth::API_GATEWAY, version))
                            .display()
                    ),
                };
                CurlAuth {
                    intro: format!("api-gateway's API key, version {version}"),
                    setup: format!("KEY={value}"),
                    args: "-H 'X-Service-Name: api-gateway' -H \"X-API-Key: $KEY\"".into(),
                    scheme: "http",
                }
            }
            ServiceAuth::Mtls => {
                let dir = service.tls_dir.as_deref().ok_or("no --tls-dir")?;
                CurlAuth {
                    intro: "api-gateway's client certificate is the credential".into(),
                    setup: format!("CERTS={}", dir.display()),
                    args: format!(
                        "--cert $CERTS/{} --key $CERTS/{} --cacert $CERTS/{}",
                        tls::certs::cert_file(auth::API_GATEWAY),
                        tls::certs::key_file(auth::API_GATEWAY),
                        tls::certs::CA_CERT
                    ),
                    scheme: "https",
                }
            }
        })
    }
}

fn print_banner(
    keys: &Keys,
    service: &ServiceArgs,
    user: SocketAddr,
    order: SocketAddr,
    notification: SocketAddr,
) -> Result<(), Error> {
    let curl = CurlAuth::of(keys, service)?;
    let (scheme, args) = (curl.scheme, &curl.args);
    // Over TLS the certificates name `localhost`, not the address.
    let host = |addr: SocketAddr| match scheme {
        "https" => format!("localhost:{}", addr.port()),
        _ => addr.to_string(),
    };
    let order_url = format!("{scheme}://{}", host(order));
    // A key of this run: pasting the command twice shows the replay, and
    // the next run's command creates a new order instead of replaying an
    // old one from the same data directory.
    let key = format!("example-{}", crate::db::unix_millis());
    println!(
        "\
demo-services running, data in {data}:
  user-service          {scheme}://{user}
  order-service         {order_url}
  notification-service  {scheme}://{notification}

Create an order ({intro}):

  {setup}
  curl -s -X POST {order_url}/orders \\
    {args} -H 'Content-Type: application/json' \\
    -H 'Idempotency-Key: {key}' \\
    -d '{{\"userId\": 1, \"items\": [{{\"productId\": \"p-1\", \"quantity\": 2, \"unitPrice\": 9.99}}]}}'

Read it back: curl -s {order_url}/orders/ID {args}  (ID from the answer)
Health: curl -s {health}{order_url}/health     Stop: Ctrl-C",
        data = service.database().describe(),
        user = host(user),
        notification = host(notification),
        intro = curl.intro,
        setup = curl.setup,
        health = match service.tls_dir.as_deref() {
            Some(dir) => format!("{} ", curl_tls_args(dir)),
            None => String::new(),
        },
    );
    if keys.source() == KeySource::Ephemeral {
        let ttl = Duration::from_secs(30 * 60);
        let users = keys.token(auth::API_GATEWAY, auth::USER_SERVICE, None, ttl)?;
        let notifications = keys.token(auth::API_GATEWAY, auth::NOTIFICATION_SERVICE, None, ttl)?;
        println!(
            "
The keys were made for this process, so `demo-services token` cannot sign
for it. Tokens for the other two services (api-gateway's, 30 minutes):

  USER_TOKEN={users}
  NOTIFICATION_TOKEN={notifications}

For tokens from another terminal, start with keys on disk instead:
  cargo run -p demo-services -- keygen --out keys
  cargo run -p demo-services -- all --keys-dir keys
  cargo run -q -p demo-services -- token --keys-dir keys --service api-gateway --audience user-service"
        );
    }
    if keys.api_key_ring().map(ApiKeyRing::source) == Some(&ApiKeySource::Ephemeral) {
        println!(
            "
The API keys were made for this process: the same KEY works against all
three services. For keys on disk (and a rotation), start with:
  cargo run -p demo-services -- api-keys --out api-keys
  cargo run -p demo-services -- all --service-auth api-key --api-keys-dir api-keys"
        );
    }
    println!();
    Ok(())
}
