//! Fault injection for tests: the API can be made to refuse connections ("down"), answer 503 or
//! 500, or answer late, for a period or for the next N requests, for every endpoint or one.
//!
//! "down" works on the connections themselves: new ones are closed as soon as they are
//! accepted, and kept-alive ones fail on their next read, so a client sees exactly what it would
//! see of a crashed server, not an HTTP answer.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::serve::Listener;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Connections are closed without an answer.
    Down,
    /// 503 Service Unavailable.
    Unavailable,
    /// 500 Internal Server Error.
    ServerError,
    /// The answer is delayed by `latency_ms`.
    Latency,
}

/// A fault as the test controls take it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub kind: FaultKind,
    /// Only requests whose path starts with this (e.g. "/oauth/token"); all when absent.
    /// Ignored by `down`, which works below HTTP.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// For the next `count` requests (connections, for `down`).
    #[serde(default)]
    pub count: Option<u32>,
    /// For this many seconds.
    #[serde(default)]
    pub seconds: Option<f64>,
    /// With `latency`: how long to wait.
    #[serde(default)]
    pub latency_ms: Option<u64>,
}

impl FaultSpec {
    pub fn validate(&self) -> Result<(), String> {
        if self.kind == FaultKind::Latency && self.latency_ms.is_none() {
            return Err("a latency fault needs latency_ms".into());
        }
        if let Some(s) = self.seconds {
            if !(s.is_finite() && s > 0.0 && s <= 3600.0) {
                return Err("seconds must be between 0 and 3600".into());
            }
        }
        if self.latency_ms.is_some_and(|ms| ms > 120_000) {
            return Err("latency_ms must be at most 120000".into());
        }
        if self.count == Some(0) {
            return Err("count must be at least 1".into());
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Active {
    spec: FaultSpec,
    remaining: Option<u32>,
    until: Option<Instant>,
}

impl Active {
    fn live(&self, now: Instant) -> bool {
        self.remaining != Some(0) && self.until.is_none_or(|u| now < u)
    }
}

/// What a request should suffer, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Unavailable,
    ServerError,
    Latency(Duration),
}

#[derive(Debug, Default)]
pub struct Faults {
    active: Mutex<Vec<Active>>,
}

impl Faults {
    pub fn add(&self, spec: FaultSpec) {
        let until = spec.seconds.map(|s| Instant::now() + Duration::from_secs_f64(s));
        let remaining = spec.count;
        self.lock().push(Active { spec, remaining, until });
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    pub fn list(&self) -> Vec<FaultSpec> {
        let now = Instant::now();
        self.lock().iter().filter(|a| a.live(now)).map(|a| a.spec.clone()).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Active>> {
        // A poisoned lock only means a panic elsewhere; the list itself is always consistent.
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the API is down now; `consume` counts one refused connection against `count`.
    pub fn down(&self, consume: bool) -> bool {
        self.down_at(consume, Instant::now())
    }

    fn down_at(&self, consume: bool, now: Instant) -> bool {
        let mut active = self.lock();
        active.retain(|a| a.live(now));
        match active.iter_mut().find(|a| a.spec.kind == FaultKind::Down) {
            Some(fault) => {
                if consume {
                    if let Some(n) = fault.remaining.as_mut() {
                        *n -= 1;
                    }
                }
                true
            }
            None => false,
        }
    }

    /// The HTTP-level fault for a request to `path`, counted against its `count`.
    pub fn for_request(&self, path: &str) -> Option<Applied> {
        let now = Instant::now();
        let mut active = self.lock();
        active.retain(|a| a.live(now));
        let fault = active.iter_mut().find(|a| {
            a.spec.kind != FaultKind::Down
                && a.spec.endpoint.as_deref().is_none_or(|prefix| path.starts_with(prefix))
        })?;
        if let Some(n) = fault.remaining.as_mut() {
            *n -= 1;
        }
        Some(match fault.spec.kind {
            FaultKind::Unavailable => Applied::Unavailable,
            FaultKind::ServerError => Applied::ServerError,
            FaultKind::Latency => Applied::Latency(Duration::from_millis(fault.spec.latency_ms.unwrap_or(0))),
            FaultKind::Down => return None,
        })
    }
}

/// A listener whose connections die while the API is "down". Sets TCP_NODELAY on each.
pub struct FaultyListener {
    inner: TcpListener,
    faults: Arc<Faults>,
    on_refused: Arc<dyn Fn() + Send + Sync>,
}

impl FaultyListener {
    pub fn new(inner: TcpListener, faults: Arc<Faults>, on_refused: Arc<dyn Fn() + Send + Sync>) -> Self {
        FaultyListener { inner, faults, on_refused }
    }
}

impl Listener for FaultyListener {
    type Io = FaultyStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = Listener::accept(&mut self.inner).await;
            if self.faults.down(true) {
                (self.on_refused)();
                drop(stream);
                continue;
            }
            let _ = stream.set_nodelay(true);
            return (FaultyStream { inner: stream, faults: self.faults.clone() }, addr);
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A TCP stream that fails its next read while the API is down.
pub struct FaultyStream {
    inner: TcpStream,
    faults: Arc<Faults>,
}

impl AsyncRead for FaultyStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.faults.down(false) {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionReset, "injected fault: down")));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for FaultyStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: FaultKind) -> FaultSpec {
        FaultSpec { kind, endpoint: None, count: None, seconds: None, latency_ms: None }
    }

    #[test]
    fn count_limited_fault_runs_out() {
        let f = Faults::default();
        f.add(FaultSpec { count: Some(2), ..spec(FaultKind::Unavailable) });
        assert_eq!(f.for_request("/frogs"), Some(Applied::Unavailable));
        assert_eq!(f.for_request("/frogs"), Some(Applied::Unavailable));
        assert_eq!(f.for_request("/frogs"), None);
        assert!(f.list().is_empty());
    }

    #[test]
    fn endpoint_specific_fault_leaves_others_alone() {
        let f = Faults::default();
        f.add(FaultSpec { endpoint: Some("/oauth/token".into()), ..spec(FaultKind::ServerError) });
        assert_eq!(f.for_request("/frogs"), None);
        assert_eq!(f.for_request("/oauth/token"), Some(Applied::ServerError));
        f.clear();
        assert_eq!(f.for_request("/oauth/token"), None);
    }

    #[test]
    fn timed_fault_expires() {
        let f = Faults::default();
        f.add(FaultSpec { seconds: Some(0.5), ..spec(FaultKind::Down) });
        assert!(f.down(false));
        assert!(!f.down_at(false, Instant::now() + Duration::from_secs(1)), "over after its period");
        assert!(f.list().is_empty(), "and forgotten");
    }

    #[test]
    fn down_counts_refused_connections_only() {
        let f = Faults::default();
        f.add(FaultSpec { count: Some(1), ..spec(FaultKind::Down) });
        assert!(f.down(false));
        assert!(f.down(false), "peeking does not consume");
        assert!(f.down(true));
        assert!(!f.down(false));
    }

    #[test]
    fn invalid_specs_are_refused() {
        assert!(spec(FaultKind::Latency).validate().is_err());
        assert!(FaultSpec { seconds: Some(-1.0), ..spec(FaultKind::Down) }.validate().is_err());
        assert!(FaultSpec { seconds: Some(f64::NAN), ..spec(FaultKind::Down) }.validate().is_err());
        assert!(FaultSpec { count: Some(0), ..spec(FaultKind::Down) }.validate().is_err());
        assert!(FaultSpec { latency_ms: Some(10), ..spec(FaultKind::Latency) }.validate().is_ok());
    }
}
