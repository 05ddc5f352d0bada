//! Listening sockets with the largest accept backlog the system allows.
//!
//! A flood of connections (a reconnect storm after a restart) fills the kernel's queue of
//! connections not yet accepted; with a small backlog the overflow drops SYNs and clients
//! wait out retransmits (seconds). Go's net package, so NSQ, asks for `net.core.somaxconn`;
//! so do we, for every TCP and HTTP listener of nsqd and nsqlookupd.

use std::io;
use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpSocket};

/// Where Linux publishes the largest backlog `listen` honours.
const SOMAXCONN_PATH: &str = "/proc/sys/net/core/somaxconn";
/// Linux's default `somaxconn` since 5.4, for systems that do not publish it.
const FALLBACK_BACKLOG: u32 = 4096;

/// The largest accept backlog the system allows (`listen` silently caps larger ones).
pub fn max_backlog() -> u32 {
    std::fs::read_to_string(SOMAXCONN_PATH)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(FALLBACK_BACKLOG)
        .min(i32::MAX as u32)
}

/// Binds `address` (with `SO_REUSEADDR`, as `TcpListener::bind` does) and listens with
/// [`max_backlog`].
pub fn bind(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(max_backlog())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_and_accepts_with_the_system_backlog() {
        assert!(max_backlog() >= 1);
        let listener = bind("127.0.0.1:0".parse().expect("address")).expect("bind");
        let address = listener.local_addr().expect("bound address");
        let client = tokio::net::TcpStream::connect(address);
        let (accepted, connected) = tokio::join!(listener.accept(), client);
        assert!(accepted.is_ok() && connected.is_ok());
        // The port is taken now: a second bind fails with the operating system's error.
        assert!(bind(address).is_err());
    }
}
