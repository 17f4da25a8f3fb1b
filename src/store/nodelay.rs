//! Works around sqlx 0.9.0 opening database TCP sockets without
//! TCP_NODELAY (sqlx issue #4335; fixed by PR #4336, not yet released):
//! a request written in more than one segment then waits for the server's
//! delayed ACK, 40 ms on Linux, per statement. Measured here: an import of
//! 100,000 rows into PostgreSQL over TCP took 17.6 s with the stall and
//! 6.7 s over a Unix socket.
//!
//! sqlx offers no handle on its sockets, so after each new connection this
//! sets TCP_NODELAY on every TCP socket of the process connected to the
//! database's port. Remove once sqlx ships the fix.

/// Sets TCP_NODELAY on this process's TCP sockets whose peer port is `port`.
#[cfg(target_os = "linux")]
pub fn apply(port: u16) {
    each_socket(|socket| {
        let to_db = socket
            .peer_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .is_some_and(|a| a.port() == port);
        if to_db && !socket.tcp_nodelay().unwrap_or(true) {
            let _ = socket.set_tcp_nodelay(true);
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
        // or, if the number was reused, act on another socket, where
        // TCP_NODELAY changes nothing but the timing of its writes.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        f(socket2::SockRef::from(&fd));
    }
}

/// Elsewhere sqlx's sockets are left as they are.
#[cfg(not(target_os = "linux"))]
pub fn apply(_port: u16) {}
