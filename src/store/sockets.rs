//! Options sqlx 0.9.0 does not set on its database TCP sockets. sqlx offers
//! no handle on them, so after each new connection [`apply`] walks this
//! process's sockets connected to the database's port. Remove each part
//! once sqlx ships it.
//!
//! - TCP_NODELAY (sqlx issue #4335; fixed by PR #4336, not yet released):
//!   a request written in more than one segment waited for the server's
//!   delayed ACK, 40 ms on Linux, per statement. Measured here: an import
//!   of 100,000 rows into PostgreSQL over TCP took 17.6 s with the stall
//!   and 6.7 s over a Unix socket.
//! - Dead-peer detection (sqlx issue #3540; PR #4355 open): a database that
//!   vanishes without closing its sockets (a failover, a host gone, a
//!   dropped NAT mapping) left a statement waiting through ~15 minutes of
//!   retransmissions, or for ever once the server had acknowledged it.
//!   Measured here with the intake batch writer's connection blackholed:
//!   every ticket failed DEADLINE_EXCEEDED for 15 min 39 s, until the
//!   kernel gave up.
//!   Keepalive probes plus TCP_USER_TIMEOUT close such a connection after
//!   [`DeadPeer`]'s time; the pool and the writer then open new ones.

use std::time::Duration;

/// How long a database connection may leave data or keepalive probes
/// unanswered before the kernel closes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadPeer(pub Duration);

impl DeadPeer {
    /// Probes start after a third of the time idle and repeat every third;
    /// TCP_USER_TIMEOUT then decides. A live server's kernel acknowledges
    /// probes whatever its queries are doing, and since Linux 5.10 a server
    /// slow to read (zero window) counts as live while it acknowledges.
    #[cfg(target_os = "linux")]
    fn keepalive(self) -> socket2::TcpKeepalive {
        let third = (self.0 / 3).max(Duration::from_secs(1));
        socket2::TcpKeepalive::new()
            .with_time(third)
            .with_interval(third)
            .with_retries(3)
    }
}

/// Sets the options on this process's TCP sockets whose peer port is `port`.
#[cfg(target_os = "linux")]
pub fn apply(port: u16, dead_peer: Option<DeadPeer>) {
    each_socket(|socket| {
        let to_db = socket
            .peer_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .is_some_and(|a| a.port() == port);
        if !to_db {
            return;
        }
        if !socket.tcp_nodelay().unwrap_or(true) {
            let _ = socket.set_tcp_nodelay(true);
        }
        if let Some(dead) = dead_peer
            && !socket.keepalive().unwrap_or(true)
        {
            let _ = socket.set_tcp_user_timeout(Some(dead.0));
            let _ = socket.set_tcp_keepalive(&dead.keepalive());
        }
    });
}

/// Calls `f` with each socket this process has open, from `/proc/self/fd`
/// (the tests read the server's socket options this way too).
#[cfg(target_os = "linux")]
pub fn each_socket(mut f: impl FnMut(socket2::SockRef<'_>)) {
    use std::os::fd::{BorrowedFd, RawFd};
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<RawFd>().ok()) else {
            continue;
        };
        let is_socket =
            std::fs::read_link(entry.path()).is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
        // SAFETY: the descriptor is only borrowed for socket-option calls.
        // Should another thread close it meanwhile, the calls fail (EBADF)
        // or, if the number was reused, act on another socket, where these
        // options change nothing but the timing of its writes and how soon
        // a vanished peer is noticed.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        f(socket2::SockRef::from(&fd));
    }
}

/// Elsewhere sqlx's sockets are left as they are.
#[cfg(not(target_os = "linux"))]
pub fn apply(_port: u16, _dead_peer: Option<DeadPeer>) {}
