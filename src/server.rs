//! Assembles the gRPC server: health, reflection, the customers.v1 services
//! behind the readiness gate, per-RPC tracing, and graceful shutdown.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tonic::{
    service::interceptor::InterceptedService,
    transport::{Certificate, Identity, Server, ServerTlsConfig, server::TcpIncoming},
};
use tonic_health::{ServingStatus, server::HealthReporter};
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::{Level, error, info, warn};

use crate::{
    api::{
        auth::{AuthLayer, Authenticator},
        customers::CustomerApi,
        gate::{Gate, Readiness},
        hub::HubApi,
        intake::IntakeApi,
        limits::{Limits, LimitsLayer},
        organizations::OrganizationApi,
    },
    domain::{
        customers::{CustomerSettings, Customers},
        hub::HubAccess,
        intake::TicketIntake,
        organizations::Organizations,
    },
    proto::{
        FILE_DESCRIPTOR_SET,
        v1::{
            customer_service_server::CustomerServiceServer, hub_access_service_server::HubAccessServiceServer,
            organization_service_server::OrganizationServiceServer,
            ticket_intake_service_server::TicketIntakeServiceServer,
        },
    },
    store::{PoolSettings, Store},
};

/// Fully-qualified names of the services health reports on (besides "").
pub const SERVICE_NAMES: [&str; 4] = [
    "customers.v1.CustomerService",
    "customers.v1.TicketIntakeService",
    "customers.v1.HubAccessService",
    "customers.v1.OrganizationService",
];

/// Health service name that answers SERVING while the process runs, whatever
/// the database does: for liveness probes, so a database outage makes
/// replicas unready, not restarted.
pub const LIVENESS_SERVICE: &str = "liveness";

/// Everything the server needs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub database_url: String,
    pub pool: PoolSettings,
    pub customers: CustomerSettings,
    pub drain_timeout: Duration,
    pub auth: AuthSettings,
    pub limits: Limits,
    /// Serve over TLS with these files; `None`: plaintext h2c.
    pub tls: Option<TlsFiles>,
}

/// PEM files for TLS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The server's certificate chain.
    pub cert: std::path::PathBuf,
    /// Its private key.
    pub key: std::path::PathBuf,
    /// CA certificates client certificates must chain to; set, clients
    /// without a valid certificate cannot connect (mTLS).
    pub client_ca: Option<std::path::PathBuf>,
}

/// tonic's TLS settings for `files`.
fn tls_config(files: &TlsFiles) -> Result<ServerTlsConfig, String> {
    let read = |path: &std::path::Path| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(read(&files.cert)?, read(&files.key)?));
    if let Some(ca) = &files.client_ca {
        config = config.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    Ok(config)
}

/// Where callers' tokens come from.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    /// TOML file of principals; re-read on SIGHUP.
    pub tokens_file: Option<std::path::PathBuf>,
    /// Serve without tokens on a non-loopback address too.
    pub allow_unauthenticated: bool,
}

/// The authenticator for `settings` on `addr`. Without a tokens file the
/// service runs open only on loopback, unless explicitly allowed.
fn authenticator(settings: &AuthSettings, addr: SocketAddr) -> Result<Authenticator, String> {
    match &settings.tokens_file {
        Some(path) => {
            let auth = Authenticator::from_file(path.clone())?;
            info!(tokens_file = %path.display(), "callers authenticate with bearer tokens");
            Ok(auth)
        }
        None if addr.ip().is_loopback() || settings.allow_unauthenticated => {
            warn!(%addr, "no tokens file: every caller has every permission (unauthenticated mode)");
            Ok(Authenticator::open())
        }
        None => Err(format!(
            "refusing to serve on {addr} without authentication: give --tokens-file (see `customer-service token new`), \
             listen on a loopback address, or pass --allow-unauthenticated"
        )),
    }
}

/// Serves on `listener` until `shutdown` completes, then drains in-flight
/// calls for at most `drain_timeout`.
///
/// Health answers NOT_SERVING from the first moment, and SERVING once the
/// database is reachable and migrated; on shutdown it turns NOT_SERVING
/// before the listener closes.
pub async fn serve(
    config: ServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let addr = listener.local_addr()?;
    let auth = Arc::new(authenticator(&config.auth, addr)?);
    let (health, health_service) = tonic_health::server::health_reporter();
    set_health(&health, ServingStatus::NotServing).await;
    health
        .set_service_status(LIVENESS_SERVICE, ServingStatus::Serving)
        .await;

    let store = Store::open(&config.database_url, &config.pool).await?;
    let readiness = Readiness::default();
    let customers = Customers::new(store.clone(), config.customers);
    let gate = Gate::new(readiness.clone());
    let (draining_tx, draining) = tokio::sync::watch::channel(false);

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let trace = TraceLayer::new_for_grpc()
        .make_span_with(|req: &http::Request<_>| tracing::info_span!("rpc", method = %req.uri().path()))
        .on_request(())
        .on_response(DefaultOnResponse::new().level(Level::INFO))
        .on_failure(DefaultOnFailure::new().level(Level::WARN));

    let limits = config.limits;
    let max_message = limits.max_message_bytes;
    let mut builder = Server::builder();
    if let Some(files) = &config.tls {
        builder = builder.tls_config(tls_config(files)?)?;
        info!(mtls = files.client_ca.is_some(), "serving over TLS");
    }
    let router = builder
        .max_concurrent_streams(Some(limits.max_streams_per_connection))
        .initial_stream_window_size(limits.stream_window_bytes)
        .initial_connection_window_size(limits.connection_window_bytes)
        .http2_keepalive_interval(limits.keepalive)
        .http2_keepalive_timeout(limits.keepalive.map(|_| Duration::from_secs(20)))
        .layer(
            tower::ServiceBuilder::new()
                .layer(trace)
                .layer(AuthLayer::new(auth.clone()))
                .layer(LimitsLayer::new(limits))
                .into_inner(),
        )
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(InterceptedService::new(
            CustomerServiceServer::new(CustomerApi::new(
                customers.clone(),
                draining,
                limits.stream_idle_timeout,
            ))
            .max_decoding_message_size(max_message),
            gate.clone(),
        ))
        .add_service(InterceptedService::new(
            TicketIntakeServiceServer::new(IntakeApi::new(TicketIntake::new(customers.clone())))
                .max_decoding_message_size(max_message),
            gate.clone(),
        ))
        .add_service(InterceptedService::new(
            HubAccessServiceServer::new(HubApi::new(HubAccess::new(customers.clone())))
                .max_decoding_message_size(max_message),
            gate.clone(),
        ))
        .add_service(InterceptedService::new(
            OrganizationServiceServer::new(OrganizationApi::new(Organizations::new(customers)))
                .max_decoding_message_size(max_message),
            gate,
        ));

    info!(%addr, "listening");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // With an incoming stream tonic ignores its own `tcp_nodelay`: without
    // it, Nagle held a response's last frame back until the client's
    // delayed ACK, 40 ms later.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = router.serve_with_incoming_shutdown(incoming, async {
        let _ = stop_rx.await;
    });
    tokio::pin!(server);
    tokio::pin!(shutdown);

    let readiness_task = tokio::spawn(become_ready(store.clone(), health.clone(), readiness.clone()));
    let reload_task = (!auth.is_open()).then(|| tokio::spawn(reload_on_sighup(auth.clone())));

    let result = tokio::select! {
        result = &mut server => result.map_err(Into::into),
        () = &mut shutdown => {
            info!("shutting down: health NOT_SERVING, draining in-flight calls");
            readiness_task.abort();
            set_health(&health, ServingStatus::NotServing).await;
            let _ = draining_tx.send(true);
            let _ = stop_tx.send(());
            match tokio::time::timeout(config.drain_timeout, &mut server).await {
                Ok(result) => result.map_err(Into::into),
                Err(_) => {
                    warn!(deadline = ?config.drain_timeout, "drain deadline passed; remaining calls are cut off");
                    Ok(())
                }
            }
        }
    };
    readiness_task.abort();
    if let Some(task) = reload_task {
        task.abort();
    }
    if let Err(e) = store.close().await {
        warn!(error = %e, "closing the database pool");
    }
    info!("stopped");
    result
}

/// Re-reads the tokens file on every SIGHUP; a broken file keeps the old principals.
async fn reload_on_sighup(auth: Arc<Authenticator>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            error!("cannot listen for SIGHUP; the tokens file will not be reloaded");
            return;
        };
        while hangups.recv().await.is_some() {
            match auth.reload() {
                Ok(count) => info!(principals = count, "tokens file reloaded"),
                Err(e) => error!(error = %e, "tokens file reload failed; keeping the previous principals"),
            }
        }
    }
    #[cfg(not(unix))]
    drop(auth);
}

/// Connects and migrates, retrying with backoff until it works; then opens the gate.
async fn become_ready(store: Store, health: HealthReporter, readiness: Readiness) {
    let mut delay = Duration::from_millis(200);
    loop {
        match store.migrate().await {
            Ok(()) => break,
            Err(e) => {
                error!(error = %e, retry_in = ?delay, "database not ready");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
    readiness.set(true);
    set_health(&health, ServingStatus::Serving).await;
    info!(backend = ?store.backend(), "database ready; serving");
    watch_database(store, health, readiness).await;
}

/// How often the database is pinged once serving.
const DB_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Pings the database; when it stops answering, health turns NOT_SERVING
/// and calls fail fast with UNAVAILABLE at the gate instead of waiting on
/// the pool; when it answers again, both recover without a restart.
async fn watch_database(store: Store, health: HealthReporter, readiness: Readiness) {
    let mut interval = tokio::time::interval(DB_CHECK_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let reachable = matches!(tokio::time::timeout(DB_CHECK_INTERVAL, store.ping()).await, Ok(Ok(())));
        if reachable != readiness.is_ready() {
            readiness.set(reachable);
            if reachable {
                set_health(&health, ServingStatus::Serving).await;
                info!("database reachable again; serving");
            } else {
                set_health(&health, ServingStatus::NotServing).await;
                warn!("database unreachable; NOT_SERVING until it answers again");
            }
        }
    }
}

async fn set_health(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    for name in SERVICE_NAMES {
        health.set_service_status(name, status).await;
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => info!("SIGINT received"),
        () = term => info!("SIGTERM received"),
    }
}

/// Binds `addr`, for callers that want the real port before serving.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
