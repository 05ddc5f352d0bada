//! nsqlookupd: the directory of which nsqd produces which topic. nsqd instances keep a TCP V1
//! connection open to it and register their topics and channels ([`tcp`]); consumers ask it
//! over HTTP ([`http`]) instead of hard-coding nsqd addresses. The state ([`registry`]) lives
//! in memory only, as in NSQ: nsqd re-registers everything when it reconnects.

pub mod http;
pub mod metrics;
pub mod options;
pub mod registry;
pub mod tcp;

use options::LookupdOptions;
use registry::Registry;
use std::future::{Future, IntoFuture};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;

/// The NSQ version we report.
pub const VERSION: &str = crate::version::NSQ_VERSION;

/// Why nsqlookupd could not run.
#[derive(Debug, thiserror::Error)]
pub enum LookupdError {
    /// A listener could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// State shared by the TCP and HTTP sides.
#[derive(Debug)]
pub struct Lookupd {
    /// Resolved options.
    pub opts: LookupdOptions,
    /// The TCP port actually listened on (told to nsqd in IDENTIFY).
    pub tcp_port: u16,
    /// The HTTP port actually listened on.
    pub http_port: u16,
    registry: Mutex<Registry>,
}

impl Lookupd {
    /// The registration database, locked.
    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs nsqlookupd until `shutdown` resolves.
pub async fn run(
    opts: LookupdOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), LookupdError> {
    let bind = |address| async move {
        crate::listen::bind(address).map_err(|source| LookupdError::Listen { address, source })
    };
    let tcp = bind(opts.tcp_address).await?;
    let http = bind(opts.http_address).await?;
    // The bound addresses, not the requested ones: port 0 picks a port, and scripts read it.
    let bound = |l: &tokio::net::TcpListener, asked| l.local_addr().unwrap_or(asked);
    let (tcp_bound, http_bound) = (
        bound(&tcp, opts.tcp_address),
        bound(&http, opts.http_address),
    );
    tracing::info!("{}", crate::version::version_line("nsqlookupd"));
    tracing::info!("HTTP: listening on {http_bound}");
    tracing::info!("TCP: listening on {tcp_bound}");
    let lookupd = Arc::new(Lookupd {
        tcp_port: tcp_bound.port(),
        http_port: http_bound.port(),
        opts,
        registry: Mutex::new(Registry::default()),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let tcp_task = tokio::spawn(tcp::serve(tcp, lookupd.clone(), stop_rx.clone()));
    let mut http_stop = stop_rx.clone();
    let http_task = tokio::spawn(
        axum::serve(
            http,
            http::router(lookupd.clone())
                .into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = http_stop.changed().await;
        })
        .into_future(),
    );
    shutdown.await;
    tracing::info!("exiting");
    let _ = stop_tx.send(true);
    let _ = tcp_task.await;
    let _ = http_task.await;
    Ok(())
}
