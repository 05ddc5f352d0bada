//! nsqd: NSQ's daemon over the crash-safe engine. TCP protocol V2 ([`tcp`]), the HTTP API
//! ([`http`]), and the housekeeping that drives timeouts, fsync timers and cursor persistence.

pub mod auth;
pub mod clients;
pub use nsq_protocol::compression;
pub mod context;
pub mod e2e;
pub mod http;
pub mod http_edge;
pub mod identify;
pub mod lookup;
pub mod metrics;
pub mod options;
pub mod replay;
pub mod stats;
pub mod statsd;
pub mod tcp;
pub mod tls;

use context::Nsqd;
use nsq_engine::{Engine, Options as EngineOptions, Retention, SyncPolicy};
use options::NsqdOptions;
use std::future::Future;
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The NSQ version we speak and report (`/info`, IDENTIFY), so clients enable what they expect.
pub const VERSION: &str = crate::version::NSQ_VERSION;

/// How often timeouts are checked, fsync timers fired and cursors considered for persisting.
const TICK: Duration = Duration::from_millis(100);

/// NSQ's numeric log levels, as `/config/log_level` reports them.
pub fn log_level_number(level: &str) -> i32 {
    match level {
        "debug" => 1,
        "info" => 2,
        "warn" => 3,
        "error" => 4,
        _ => 5,
    }
}

/// Why nsqd could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum NsqdError {
    /// The data directory could not be opened (locked, corrupt, unreadable).
    #[error("{0}")]
    Engine(#[from] nsq_engine::Error),
    /// A listener could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A flag asks for something this build does not do yet.
    #[error("{0}")]
    Unsupported(String),
    /// The TLS certificate, key or CA could not be used.
    #[error("failed to build TLS config - {0}")]
    Tls(#[from] tls::TlsError),
    /// The auth server client could not be set up.
    #[error("failed to set up the auth client - {0}")]
    Auth(#[from] auth::AuthError),
    /// `--data-path` is not an existing directory.
    #[error("--data-path {0}: not an existing directory (create it first)")]
    NoDataPath(std::path::PathBuf),
}

/// Environment variable naming a journal of every fsync (see [`nsq_engine::fs::SyncJournalFs`]):
/// lets the power-cut tests drop exactly what was never fsynced. Not for production.
pub const SYNC_JOURNAL_ENV: &str = "NSQD_TEST_SYNC_JOURNAL";

/// The engine options nsqd's flags mean.
pub fn engine_options(opts: &NsqdOptions) -> EngineOptions {
    let mut options = flag_options(opts);
    if let Some(path) = std::env::var_os(SYNC_JOURNAL_ENV) {
        match nsq_engine::fs::SyncJournalFs::new(std::path::Path::new(&path)) {
            Ok(fs) => {
                tracing::warn!(
                    "journaling every fsync to {} ({SYNC_JOURNAL_ENV}; a test setting)",
                    path.to_string_lossy()
                );
                options.fs = Arc::new(fs);
            }
            Err(e) => tracing::error!(
                "cannot open the fsync journal {}: {e}",
                path.to_string_lossy()
            ),
        }
    }
    options
}

fn flag_options(opts: &NsqdOptions) -> EngineOptions {
    EngineOptions {
        max_bytes_per_file: opts.max_bytes_per_file.max(4096),
        sync: SyncPolicy {
            every: opts.sync_every,
            timeout: opts.sync_timeout,
        },
        max_msg_size: opts.max_msg_size,
        mem_queue_size: opts.mem_queue_size,
        retention: Retention {
            time_ns: opts
                .retention_time
                .map(|d| d.as_nanos().min(i64::MAX as u128) as i64),
            bytes: opts.retention_bytes,
        },
        max_defer: opts.max_req_timeout,
        ..EngineOptions::default()
    }
}

/// Runs nsqd until `shutdown` resolves, then stops accepting, closes clients, fsyncs the
/// logs and persists every cursor.
pub async fn run(opts: NsqdOptions, shutdown: impl Future<Output = ()>) -> Result<(), NsqdError> {
    // Like NSQ, refuse a missing directory rather than create one: a mistyped path or an
    // unmounted volume would otherwise start an empty store in the wrong place.
    if !opts.data_path.is_dir() {
        return Err(NsqdError::NoDataPath(opts.data_path.clone()));
    }
    tracing::info!("{}", crate::version::version_line("nsqd"));
    let tls_config = opts.tls.server_config()?;
    let auth = if opts.auth_http_addresses.is_empty() {
        None
    } else {
        Some(auth::AuthClient::new(
            opts.auth_http_addresses.clone(),
            opts.tls.root_ca_file.as_deref(),
            opts.http_client_connect_timeout,
            opts.http_client_request_timeout,
        )?)
    };
    let engine =
        tokio::task::block_in_place(|| Engine::open(&opts.data_path, engine_options(&opts)))?;
    for event in engine.recovery_events() {
        tracing::warn!("recovery: {event}");
    }
    let tcp = crate::listen::bind(opts.tcp_address).map_err(|source| NsqdError::Listen {
        address: opts.tcp_address,
        source,
    })?;
    let http = crate::listen::bind(opts.http_address).map_err(|source| NsqdError::Listen {
        address: opts.http_address,
        source,
    })?;
    // The bound addresses, not the requested ones: port 0 picks a port, and scripts read it.
    let bound = |l: &tokio::net::TcpListener, asked| l.local_addr().unwrap_or(asked);
    tracing::info!("TCP: listening on {}", bound(&tcp, opts.tcp_address));
    tracing::info!("HTTP: listening on {}", bound(&http, opts.http_address));
    let https = match &tls_config {
        Some(config) => {
            let listener =
                crate::listen::bind(opts.https_address).map_err(|source| NsqdError::Listen {
                    address: opts.https_address,
                    source,
                })?;
            tracing::info!(
                "HTTPS: listening on {}",
                bound(&listener, opts.https_address)
            );
            Some(tls::HttpsListener::new(listener, config.clone()))
        }
        None => None,
    };
    let https_port = https
        .as_ref()
        .and_then(|l| axum::serve::Listener::local_addr(l).ok())
        .map_or(opts.https_address.port(), |a| a.port());
    let refuse_plain_http = opts.tls.required == tls::TlsRequired::Everywhere;
    let advertised = lookup::Advertised {
        address: opts.broadcast_address.clone(),
        tcp_port: opts.broadcast_tcp_port.unwrap_or_else(|| {
            tcp.local_addr()
                .map_or(opts.tcp_address.port(), |a| a.port())
        }),
        http_port: opts.broadcast_http_port.unwrap_or_else(|| {
            http.local_addr()
                .map_or(opts.http_address.port(), |a| a.port())
        }),
    };
    let statsd_prefix = opts
        .statsd
        .as_ref()
        .map(|s| statsd::expand_prefix(&s.prefix, &advertised.address, advertised.http_port));
    let nsqd = Arc::new(Nsqd::new(Arc::new(engine), opts));
    let (stop_tx, stop_rx) = watch::channel(false);
    let statsd_task = nsqd
        .opts
        .statsd
        .clone()
        .zip(statsd_prefix)
        .map(|(s, prefix)| tokio::spawn(statsd::run(nsqd.clone(), s, prefix, stop_rx.clone())));
    let lookup_task = tokio::spawn(lookup::run(nsqd.clone(), advertised, stop_rx.clone()));

    let security = Arc::new(tcp::Security {
        tls: tls_config.map(tokio_rustls::TlsAcceptor::from),
        auth,
    });
    let tcp_task = tokio::spawn(tcp::serve(tcp, nsqd.clone(), security, stop_rx.clone()));
    let mut http_stop = stop_rx.clone();
    let plain_router = if refuse_plain_http {
        axum::Router::new()
            .fallback(tls::refuse_plain_http)
            .with_state(https_port)
    } else {
        http::router(nsqd.clone())
    };
    // `tap_io` only to get axum's `ConnectInfo<SocketAddr>` for a listener of our own.
    let http_listener = axum::serve::ListenerExt::tap_io(http_edge::HttpListener(http), |_| {});
    let http_task = tokio::spawn(
        axum::serve(
            http_listener,
            plain_router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = http_stop.changed().await;
        })
        .into_future(),
    );
    let https_task = https.map(|listener| {
        use axum::serve::ListenerExt;
        let mut https_stop = stop_rx.clone();
        tokio::spawn(
            axum::serve(
                listener.tap_io(|_| {}),
                http::router(nsqd.clone())
                    .into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = https_stop.changed().await;
            })
            .into_future(),
        )
    });
    let housekeeping = tokio::spawn(housekeeping(nsqd.clone(), stop_rx.clone()));

    shutdown.await;
    tracing::info!("exiting");
    nsqd.set_exiting();
    let _ = stop_tx.send(true);
    let _ = tcp_task.await;
    let _ = http_task.await;
    if let Some(task) = https_task {
        let _ = task.await;
    }
    let _ = housekeeping.await;
    if let Some(task) = statsd_task {
        let _ = task.await;
    }
    let _ = lookup_task.await;
    // Give connection tasks a moment to flush their last frames.
    tokio::time::sleep(Duration::from_millis(50)).await;
    tokio::task::block_in_place(|| nsqd.engine.flush())?;
    Ok(())
}

/// Every tick: requeue timed-out messages (waking subscribers), fire fsync timers, persist
/// changed cursors and apply retention; after a topology change, drop the latency windows of
/// deleted channels (a channel re-created under the same name starts empty, as in NSQ).
async fn housekeeping(nsqd: Arc<Nsqd>, mut stop: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(TICK);
    let mut topology = nsqd.engine.topology_generation();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        let generation = nsqd.engine.topology_generation();
        if generation != topology {
            topology = generation;
            if let Some(e2e) = &nsqd.e2e {
                e2e.retain(|topic, channel| nsqd.engine.channel(topic, channel).is_some());
            }
        }
        let engine = nsqd.engine.clone();
        match tokio::task::spawn_blocking(move || engine.tick()).await {
            Ok(Ok(report)) => {
                if report.timed_out > 0 {
                    nsqd.wake_all();
                }
                if report.segments_deleted > 0 {
                    tracing::info!(
                        segments = report.segments_deleted,
                        "retention: deleted consumed segments"
                    );
                }
            }
            Ok(Err(e)) => tracing::error!(error = %e, "housekeeping failed"),
            Err(e) => tracing::error!(error = %e, "housekeeping task failed"),
        }
    }
}
