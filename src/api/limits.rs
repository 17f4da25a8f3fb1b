//! Protective limits in front of the customers.v1 services: a global cap on
//! calls in flight, past which calls are shed at once with
//! RESOURCE_EXHAUSTED (queueing would only turn overload into timeouts),
//! and a deadline for unary calls that leaves the streaming import and
//! export alone. Health and reflection are never limited, so probes and
//! operators get through an overload.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use tokio::sync::Semaphore;
use tonic::Status;
use tower::{Layer, Service};

use crate::domain::Error;

/// Methods that stream: no unary deadline.
const STREAMING: [&str; 2] = [
    "/customers.v1.CustomerService/ImportCustomers",
    "/customers.v1.CustomerService/ExportCustomers",
];

/// The limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Calls in flight across all connections.
    pub max_concurrent_calls: usize,
    /// Longest a unary call may take (the caller's own `grpc-timeout` also applies).
    pub unary_timeout: Duration,
    /// Largest message a caller may send.
    pub max_message_bytes: usize,
    /// Streams one HTTP/2 connection may have open.
    pub max_streams_per_connection: u32,
    /// HTTP/2 keepalive ping interval; `None`: no pings.
    pub keepalive: Option<Duration>,
    /// Longest an import's client may stay silent before the import stops.
    pub stream_idle_timeout: Duration,
    /// HTTP/2 flow control: bytes a caller may send on one stream ahead of
    /// what the server has read.
    pub stream_window_bytes: u32,
    /// The same across all streams of one connection. Much larger than a
    /// stream's, so imports the server reads slowly or not at all (their
    /// batches wait on the database) cannot take the whole of it. With equal
    /// windows (hyper's default, 1 MiB each) an import's next chunks got the
    /// window the server freed before a unary call on the same connection
    /// did: a create waited 0.4–1.0 s at worst during an import, and two
    /// waiting imports held up every call on their connection.
    pub connection_window_bytes: u32,
}

/// [`Limits::stream_window_bytes`]: 256 KiB is ~3,500 CSV rows in flight, a
/// quarter second of import at a 100 ms round trip.
pub const STREAM_WINDOW_BYTES: u32 = 256 * 1024;

/// [`Limits::connection_window_bytes`]: room for 16 stalled streams; the
/// most a connection's callers can make the server hold unread.
pub const CONNECTION_WINDOW_BYTES: u32 = 16 * STREAM_WINDOW_BYTES;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_concurrent_calls: 1024,
            unary_timeout: Duration::from_secs(30),
            max_message_bytes: 4 * 1024 * 1024,
            max_streams_per_connection: 256,
            keepalive: Some(Duration::from_secs(30)),
            stream_idle_timeout: Duration::from_secs(60),
            stream_window_bytes: STREAM_WINDOW_BYTES,
            connection_window_bytes: CONNECTION_WINDOW_BYTES,
        }
    }
}

/// The layer applying [`Limits`].
#[derive(Clone, Debug)]
pub struct LimitsLayer {
    permits: Arc<Semaphore>,
    unary_timeout: Duration,
}

impl LimitsLayer {
    /// A layer enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limits.max_concurrent_calls.max(1))),
            unary_timeout: limits.unary_timeout,
        }
    }
}

impl<S> Layer<S> for LimitsLayer {
    type Service = LimitsService<S>;
    fn layer(&self, inner: S) -> LimitsService<S> {
        LimitsService {
            inner,
            permits: self.permits.clone(),
            unary_timeout: self.unary_timeout,
        }
    }
}

/// See [`LimitsLayer`].
#[derive(Clone, Debug)]
pub struct LimitsService<S> {
    inner: S,
    permits: Arc<Semaphore>,
    unary_timeout: Duration,
}

/// tonic answers a message over the size limit with OUT_OF_RANGE; gRPC's
/// own implementations, and our contract, say RESOURCE_EXHAUSTED. Such
/// errors come back trailers-only, so the status is in the headers.
fn oversized_is_exhausted(mut response: http::Response<tonic::body::Body>) -> http::Response<tonic::body::Body> {
    let headers = response.headers_mut();
    let too_large = headers.get("grpc-status").is_some_and(|s| s == "11")
        && headers.get("grpc-message").is_some_and(|m| {
            let m = String::from_utf8_lossy(m.as_bytes()).replace("%20", " ");
            m.contains("decoded message length too large")
        });
    if too_large {
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
    }
    response
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B> Service<http::Request<B>> for LimitsService<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        if !path.starts_with("/customers.v1.") {
            return Box::pin(self.inner.call(request));
        }
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            let err = Error::ResourceExhausted {
                reason: "OVERLOADED",
                message: "the service is at its limit of calls in flight; retry with backoff".into(),
                metadata: Vec::new(),
            };
            return Box::pin(std::future::ready(Ok(Status::from(err).into_http())));
        };
        let deadline = (!STREAMING.contains(&path)).then_some(self.unary_timeout);
        let call = self.inner.call(request);
        Box::pin(async move {
            let _permit = permit;
            let Some(deadline) = deadline else {
                return call.await.map(oversized_is_exhausted);
            };
            match tokio::time::timeout(deadline, call).await {
                Ok(answer) => answer.map(oversized_is_exhausted),
                // Dropping the call rolls back whatever it had begun.
                Err(_) => Ok(Status::deadline_exceeded(format!(
                    "the call took longer than the server's {} s limit for unary calls",
                    deadline.as_secs_f64()
                ))
                .into_http()),
            }
        })
    }
}
