//! The connection every call to Redis goes through, and its watchdog: redis-rs's manager
//! reconnects after an I/O error only, so a connection that stalls without failing (a
//! half-open socket, a middlebox that dropped its state) would time out every call for good.
//! The watchdog pings it every second and, after [`MISSES`] pings in a row went unanswered,
//! makes a new connection and puts it in place once it answers. Its ping is `TIME`: it also
//! measures this instance's clock against Redis's (the `clock_skew_ms` gauge; a warning past
//! [`SKEW_WARNING`]), since every mark and result ends by the clock of the instance that wrote
//! it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::metrics::SharedMetrics;
use super::CALL_TIMEOUT;
use crate::clock::Clock;

/// Unanswered pings in a row (one a second) before the connection is made again.
const MISSES: u32 = 3;

/// A clock this far from Redis's is logged: a grace or a mark ends that much early or late on
/// the instances that read it.
pub(super) const SKEW_WARNING: Duration = Duration::from_secs(1);

/// The connection in use (clones share it, and see a new one once the watchdog made it).
#[derive(Clone)]
pub(super) struct Link {
    client: redis::Client,
    current: Arc<RwLock<ConnectionManager>>,
    /// How many times the connection was made again (a subscriber follows it: its own
    /// connection may be stalled the same way).
    renewed: Arc<AtomicU64>,
}

/// How the shared memory connects: every call bounded, a failed one retried twice.
pub(super) fn config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new().set_connection_timeout(CALL_TIMEOUT).set_response_timeout(CALL_TIMEOUT).set_number_of_retries(2)
}

impl Link {
    pub(super) fn new(client: redis::Client, conn: ConnectionManager) -> Self {
        Link { client, current: Arc::new(RwLock::new(conn)), renewed: Arc::new(AtomicU64::new(0)) }
    }

    /// The connection to send on now.
    pub(super) fn get(&self) -> ConnectionManager {
        self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    pub(super) fn client(&self) -> &redis::Client {
        &self.client
    }

    pub(super) fn renewed(&self) -> u64 {
        self.renewed.load(Ordering::SeqCst)
    }

    /// Pings every second until `stop` is dropped, and makes the connection again after
    /// [`MISSES`] unanswered pings in a row (a new one that does not answer either is not put
    /// in place: the next miss tries again).
    pub(super) async fn watch(self, metrics: SharedMetrics, clock: Arc<dyn Clock>, mut stop: tokio::sync::watch::Receiver<()>) {
        let (mut misses, mut warned) = (0u32, false);
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            let mut conn = self.get();
            let before = clock.unix_millis();
            let answered = tokio::time::timeout(CALL_TIMEOUT, redis::cmd("TIME").query_async::<(u64, u64)>(&mut conn)).await;
            if let Ok(Ok((secs, micros))) = answered {
                misses = 0;
                // Redis read its clock about half-way through the round trip.
                let here = before.midpoint(clock.unix_millis());
                let skew = here as i64 - (secs.saturating_mul(1000).saturating_add(micros / 1000)) as i64;
                metrics.clock_skew_ms.set(skew);
                let far = skew.unsigned_abs() > SKEW_WARNING.as_millis() as u64;
                if far && !warned {
                    tracing::warn!(skew_ms = skew, "this instance's clock is off Redis's: graces and marks end early or late by as much on the others (keep every clock on NTP)");
                }
                warned = far;
                continue;
            }
            misses += 1;
            if misses < MISSES {
                continue;
            }
            let made = tokio::time::timeout(CALL_TIMEOUT * 2, ConnectionManager::new_with_config(self.client.clone(), config())).await;
            let Ok(Ok(mut fresh)) = made else { continue };
            if tokio::time::timeout(CALL_TIMEOUT, redis::cmd("PING").query_async::<String>(&mut fresh)).await.is_ok_and(|r| r.is_ok()) {
                *self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh;
                self.renewed.fetch_add(1, Ordering::SeqCst);
                metrics.reconnects.inc();
                tracing::warn!("the connection to Redis stopped answering while a new one does: it is replaced");
                misses = 0;
            }
        }
    }
}
