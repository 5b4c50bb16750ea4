//! Refreshing access tokens so that no one is signed out by mistake, against an upstream that
//! rotates refresh tokens and revokes everything when a retired one comes back (RFC 9700):
//!
//! - **one flight per refresh token**: the first request that needs a refresh starts it, every
//!   other request carrying the same refresh token waits for that flight (bounded wait) and
//!   shares its result. The grant runs in its own task, so a request that gives up or is
//!   dropped never leaves a half-done rotation that a retry would turn into a reuse;
//! - **rotation grace**: a flight's result is remembered, keyed by the SHA-256 of the refresh
//!   token it consumed (never the token), and handed to requests that arrive later with the old
//!   cookie (parallel fetches, a second tab). Briefly (`grace`) once a response has carried the
//!   new cookie; longer (`HANDOFF`) while no response could (every waiter gave up, or the
//!   response's headers were already sent), so the next request picks it up;
//! - **newest wins**: the newest generation issued for each session is known, and a response
//!   never writes an older one (it writes the newest it can rebuild, or nothing);
//! - sessions that signed out are marked, so their cookies are refused without a call upstream;
//! - counters and a duration histogram, in Prometheus text on demand.
//!
//! Memory is bounded: at most `capacity` remembered results and as many session marks, the
//! oldest dropped first. Flights in the air are bounded by the requests in flight.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tracing::Instrument;

use crate::client::{UpstreamClient, UpstreamError};
use crate::session::{Session, Token, TokenSet};

/// How long an unclaimed result (no response could carry its cookie) is kept for the session's
/// next request.
pub const HANDOFF: Duration = Duration::from_secs(10 * 60);

/// How long a signed-out session's cookies are refused without asking the upstream.
const ENDED_MARK: Duration = Duration::from_secs(24 * 3600);

/// Links followed from a cookie's refresh token to the newest result (each link a rotation that
/// happened while the older cookie was still in use).
const MAX_CHAIN: usize = 16;

#[derive(Debug, Clone, Copy)]
pub struct RefreshConfig {
    /// How long a request waits for a refresh (its own or one it joined) before answering
    /// "unavailable". The refresh itself goes on.
    pub wait: Duration,
    /// Timeout of the refresh grant itself; longer than `wait`, because a grant abandoned after
    /// the upstream rotated is one the next request would replay.
    pub grant_timeout: Duration,
    /// How long a result stays available to late requests once a response has carried it.
    pub grace: Duration,
    /// Remembered results (and session marks) at most.
    pub capacity: usize,
}

impl Default for RefreshConfig {
    fn default() -> Self {
        RefreshConfig {
            wait: Duration::from_secs(5),
            grant_timeout: Duration::from_secs(30),
            grace: Duration::from_secs(60),
            capacity: 100_000,
        }
    }
}

/// SHA-256 of a refresh token: the only form in which one is remembered.
type Key = [u8; 32];

fn key_of(token: &Token) -> Key {
    Sha256::digest(token.expose().as_bytes()).into()
}

/// What a refresh produced: the next tokens and the generation they make.
#[derive(Debug, Clone)]
struct Refreshed {
    tokens: TokenSet,
    generation: u64,
}

#[derive(Debug, Clone)]
enum Outcome {
    Refreshed(Arc<Refreshed>),
    Refused(String),
    Unavailable(String),
}

#[derive(Debug, Clone, Copy)]
enum Mark {
    /// The newest generation issued for the session.
    Newest(u64),
    /// Signed out.
    Ended,
}

/// A map whose entries expire and whose size is capped, the oldest going first.
#[derive(Debug)]
struct Bounded<K, V> {
    entries: HashMap<K, (V, Instant, u64)>,
    order: VecDeque<(K, u64)>,
    capacity: usize,
    next_seq: u64,
}

impl<K: Hash + Eq + Clone, V> Bounded<K, V> {
    fn new(capacity: usize) -> Self {
        Bounded { entries: HashMap::new(), order: VecDeque::new(), capacity: capacity.max(1), next_seq: 0 }
    }

    fn get(&self, key: &K, now: Instant) -> Option<&V> {
        self.entries.get(key).filter(|(_, until, _)| now < *until).map(|(v, _, _)| v)
    }

    fn insert(&mut self, key: K, value: V, until: Instant, now: Instant) {
        self.next_seq += 1;
        self.entries.insert(key.clone(), (value, until, self.next_seq));
        self.order.push_back((key, self.next_seq));
        // Drop from the front: entries replaced since (stale positions), expired ones, and the
        // oldest while over capacity.
        while let Some((front, seq)) = self.order.front() {
            let current = self.entries.get(front).map(|(_, until, s)| (*until, *s));
            let drop_it = match current {
                Some((_, s)) if s != *seq => {
                    self.order.pop_front();
                    continue;
                }
                None => {
                    self.order.pop_front();
                    continue;
                }
                Some((until, _)) => until <= now || self.entries.len() > self.capacity,
            };
            if !drop_it {
                break;
            }
            if let Some((k, _)) = self.order.pop_front() {
                self.entries.remove(&k);
            }
        }
        // Replaced entries leave stale positions behind a long-lived front entry: rebuild the
        // order from the entries when those outnumber them (amortized constant per insert).
        if self.order.len() > 2 * self.capacity.max(self.entries.len()) + 16 {
            let mut live: Vec<(K, u64)> =
                self.entries.iter().map(|(k, (_, _, seq))| (k.clone(), *seq)).collect();
            live.sort_by_key(|(_, seq)| *seq);
            self.order = live.into();
        }
    }

    /// Brings an entry's expiry forward to `until` (never later).
    fn shorten(&mut self, key: &K, until: Instant) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.1 = entry.1.min(until);
        }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

struct Memory {
    flights: HashMap<Key, watch::Receiver<Option<Outcome>>>,
    results: Bounded<Key, Outcome>,
    sessions: Bounded<String, Mark>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: OutcomeKind,
}

/// How a refresh grant ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum OutcomeKind {
    refreshed,
    refused,
    unavailable,
    timeout,
}

struct Metrics {
    registry: Registry,
    grants: Family<OutcomeLabel, Counter>,
    joined: Counter,
    grace_hits: Counter,
    wait_timeouts: Counter,
    older_not_written: Counter,
    ended_refused: Counter,
    remembered: Gauge,
    duration: Histogram,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("tokenless_refresh");
        let grants = Family::<OutcomeLabel, Counter>::default();
        registry.register("grants", "Refresh grants sent upstream, by outcome", grants.clone());
        let joined = Counter::default();
        registry.register("joined", "Requests that waited for a refresh already in flight", joined.clone());
        let grace_hits = Counter::default();
        registry.register(
            "grace_hits",
            "Requests with a rotated refresh token served the remembered result",
            grace_hits.clone(),
        );
        let wait_timeouts = Counter::default();
        registry.register(
            "wait_timeouts",
            "Requests that stopped waiting for a refresh (it went on)",
            wait_timeouts.clone(),
        );
        let older_not_written = Counter::default();
        registry.register(
            "older_cookie_not_written",
            "Responses that would have set an older session than the newest issued",
            older_not_written.clone(),
        );
        let ended_refused = Counter::default();
        registry.register(
            "signed_out_cookie_refused",
            "Requests carrying the cookie of a session that signed out",
            ended_refused.clone(),
        );
        let remembered = Gauge::default();
        registry.register("remembered", "Refresh results remembered for late requests", remembered.clone());
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register("duration_seconds", "Time a refresh grant took", duration.clone());
        Metrics {
            registry,
            grants,
            joined,
            grace_hits,
            wait_timeouts,
            older_not_written,
            ended_refused,
            remembered,
            duration,
        }
    }

    fn grant(&self, kind: OutcomeKind) -> u64 {
        self.grants.get_or_create(&OutcomeLabel { outcome: kind }).get()
    }
}

/// The counters, as numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefreshCounts {
    /// Refresh grants sent upstream (all outcomes).
    pub grants: u64,
    pub refreshed: u64,
    pub refused: u64,
    pub unavailable: u64,
    pub timeouts: u64,
    pub joined: u64,
    pub grace_hits: u64,
    pub wait_timeouts: u64,
    pub older_not_written: u64,
    pub signed_out_refused: u64,
}

/// What is known of a cookie's session beyond the cookie itself.
#[derive(Debug)]
pub enum Known {
    /// Nothing newer.
    Current,
    /// Its refresh token was rotated already: here is the newest session rebuilt from the
    /// remembered results.
    Newer(Session),
    /// Its refresh token was refused, or the session signed out.
    Ended,
}

struct Inner {
    client: Arc<UpstreamClient>,
    config: RefreshConfig,
    memory: Mutex<Memory>,
    metrics: Metrics,
}

/// Shared by every request of the process; cheap to clone.
#[derive(Clone)]
pub struct Refresher {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Refresher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refresher").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

impl Refresher {
    pub fn new(client: Arc<UpstreamClient>, config: RefreshConfig) -> Self {
        let memory = Memory {
            flights: HashMap::new(),
            results: Bounded::new(config.capacity),
            sessions: Bounded::new(config.capacity),
        };
        Refresher {
            inner: Arc::new(Inner { client, config, memory: Mutex::new(memory), metrics: Metrics::new() }),
        }
    }

    pub fn config(&self) -> RefreshConfig {
        self.inner.config
    }

    fn memory(&self) -> MutexGuard<'_, Memory> {
        // Never held across an await; a panic elsewhere cannot leave it half-updated in a way
        // that matters (worst case: a result forgotten, and the upstream asked again).
        self.inner.memory.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What the process knows that the cookie does not: a newer generation built from
    /// remembered results, or that the session ended.
    pub fn known(&self, session: &Session) -> Known {
        let now = Instant::now();
        let memory = self.memory();
        if let Some(Mark::Ended) = memory.sessions.get(&session.id, now) {
            self.inner.metrics.ended_refused.inc();
            return Known::Ended;
        }
        let mut current: Option<Session> = None;
        for _ in 0..MAX_CHAIN {
            let at = current.as_ref().unwrap_or(session);
            let Some(token) = &at.tokens.refresh_token else { break };
            match memory.results.get(&key_of(token), now) {
                Some(Outcome::Refreshed(r)) if r.generation > at.generation => {
                    current = Some(apply(at, r));
                }
                Some(Outcome::Refused(_)) if current.is_none() => return Known::Ended,
                _ => break,
            }
        }
        match current {
            Some(newer) => {
                self.inner.metrics.grace_hits.inc();
                Known::Newer(newer)
            }
            None => Known::Current,
        }
    }

    /// Whether a session newer than `session` was issued: writing `session` would put back
    /// a retired refresh token.
    pub fn is_superseded(&self, session: &Session) -> bool {
        let superseded = match self.memory().sessions.get(&session.id, Instant::now()) {
            Some(Mark::Newest(newest)) => *newest > session.generation,
            Some(Mark::Ended) => true,
            None => false,
        };
        if superseded {
            self.inner.metrics.older_not_written.inc();
        }
        superseded
    }

    /// The session after one refresh of its tokens: joined to a flight in the air for the same
    /// refresh token, or a new flight. `deliverable`: this request's response can still carry a
    /// cookie (its headers are not sent), so the result need only be remembered briefly.
    pub async fn refresh(&self, session: &Session, deliverable: bool) -> Result<Session, UpstreamError> {
        let Some(token) = session.tokens.refresh_token.clone() else {
            return Err(UpstreamError::Refused { code: "no_refresh_token".into() });
        };
        let key = key_of(&token);
        let mut receiver = {
            let mut memory = self.memory();
            if let Some(receiver) = memory.flights.get(&key) {
                self.inner.metrics.joined.inc();
                receiver.clone()
            } else if let Some(landed) = memory.results.get(&key, Instant::now()).cloned() {
                // The flight for this token landed after the caller looked (`known`) and before
                // it asked: use its result. Another flight would send the rotated token again,
                // which the upstream takes for theft and answers by revoking the sign-in.
                drop(memory);
                self.inner.metrics.grace_hits.inc();
                return self.settle(session, &key, Some(landed), deliverable);
            } else {
                let (sender, receiver) = watch::channel(None);
                memory.flights.insert(key, receiver.clone());
                drop(memory);
                self.start(key, token, session.id.clone(), session.generation, sender);
                receiver
            }
        };
        let waited = tokio::time::timeout(self.inner.config.wait, receiver.wait_for(Option::is_some)).await;
        let outcome = match waited {
            Ok(Ok(outcome)) => outcome.clone(),
            // The flight's task ended without a word: only a panic does that.
            Ok(Err(_)) => Some(Outcome::Unavailable("the refresh stopped unexpectedly".into())),
            Err(_) => {
                self.inner.metrics.wait_timeouts.inc();
                return Err(UpstreamError::Unavailable(
                    "timed out waiting for the refresh (it goes on, and its result will be kept)".into(),
                ));
            }
        };
        self.settle(session, &key, outcome, deliverable)
    }

    /// The session after a flight's `outcome`. A response that will carry the new cookie
    /// shortens how long the result is remembered to the grace period.
    fn settle(
        &self,
        session: &Session,
        key: &Key,
        outcome: Option<Outcome>,
        deliverable: bool,
    ) -> Result<Session, UpstreamError> {
        match outcome {
            Some(Outcome::Refreshed(r)) => {
                if deliverable {
                    let until = Instant::now() + self.inner.config.grace;
                    self.memory().results.shorten(key, until);
                }
                Ok(apply(session, &r))
            }
            Some(Outcome::Refused(code)) => Err(UpstreamError::Refused { code }),
            Some(Outcome::Unavailable(detail)) => Err(UpstreamError::Unavailable(detail)),
            None => Err(UpstreamError::Unavailable("no refresh result".into())),
        }
    }

    fn start(
        &self,
        key: Key,
        token: Token,
        session_id: String,
        generation: u64,
        sender: watch::Sender<Option<Outcome>>,
    ) {
        let this = self.clone();
        let span = tracing::info_span!("refresh", session = %session_id, outcome = tracing::field::Empty, elapsed_ms = tracing::field::Empty);
        tokio::spawn(
            async move {
                let started = Instant::now();
                let result = this
                    .inner
                    .client
                    .refresh_grant(&token, crate::manager::now(), Some(this.inner.config.grant_timeout))
                    .await;
                let elapsed = started.elapsed();
                let (outcome, kind) = match result {
                    Ok(tokens) => (
                        Outcome::Refreshed(Arc::new(Refreshed { tokens, generation: generation + 1 })),
                        OutcomeKind::refreshed,
                    ),
                    Err(UpstreamError::Refused { code }) => (Outcome::Refused(code), OutcomeKind::refused),
                    Err(e) => {
                        let kind =
                            if e.is_timeout() { OutcomeKind::timeout } else { OutcomeKind::unavailable };
                        let detail = match e {
                            UpstreamError::Unavailable(detail) => detail,
                            other => other.to_string(),
                        };
                        (Outcome::Unavailable(detail), kind)
                    }
                };
                let m = &this.inner.metrics;
                m.grants.get_or_create(&OutcomeLabel { outcome: kind }).inc();
                m.duration.observe(elapsed.as_secs_f64());
                let span = tracing::Span::current();
                span.record("outcome", format!("{kind:?}"));
                span.record("elapsed_ms", elapsed.as_millis() as u64);
                match &outcome {
                    Outcome::Unavailable(detail) => {
                        tracing::warn!(%detail, "refresh failed; the session is kept")
                    }
                    Outcome::Refused(code) => tracing::info!(%code, "refresh refused"),
                    Outcome::Refreshed(_) => tracing::debug!("refreshed"),
                }
                {
                    let now = Instant::now();
                    let mut memory = this.memory();
                    memory.flights.remove(&key);
                    match &outcome {
                        Outcome::Refreshed(r) => {
                            memory.results.insert(key, outcome.clone(), now + HANDOFF, now);
                            let newest = match memory.sessions.get(&session_id, now) {
                                Some(Mark::Newest(g)) => (*g).max(r.generation),
                                _ => r.generation,
                            };
                            memory.sessions.insert(session_id, Mark::Newest(newest), now + HANDOFF, now);
                        }
                        Outcome::Refused(_) => {
                            let grace = this.inner.config.grace;
                            memory.results.insert(key, outcome.clone(), now + grace, now);
                        }
                        // Not remembered: the next request tries again.
                        Outcome::Unavailable(_) => {}
                    }
                    m.remembered.set(memory.results.len() as i64);
                }
                // No receiver left (every waiter gave up) is fine: the result is remembered.
                let _ = sender.send(Some(outcome));
            }
            .instrument(span),
        );
    }

    /// Marks a session as signed out: its cookies are refused from now on.
    pub fn ended(&self, session_id: &str) {
        let now = Instant::now();
        self.memory().sessions.insert(session_id.to_string(), Mark::Ended, now + ENDED_MARK, now);
    }

    pub fn counts(&self) -> RefreshCounts {
        let m = &self.inner.metrics;
        let refreshed = m.grant(OutcomeKind::refreshed);
        let refused = m.grant(OutcomeKind::refused);
        let unavailable = m.grant(OutcomeKind::unavailable);
        let timeouts = m.grant(OutcomeKind::timeout);
        RefreshCounts {
            grants: refreshed + refused + unavailable + timeouts,
            refreshed,
            refused,
            unavailable,
            timeouts,
            joined: m.joined.get(),
            grace_hits: m.grace_hits.get(),
            wait_timeouts: m.wait_timeouts.get(),
            older_not_written: m.older_not_written.get(),
            signed_out_refused: m.ended_refused.get(),
        }
    }

    /// The metrics in the Prometheus / OpenMetrics text format.
    pub fn metrics_text(&self) -> String {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.inner.metrics.registry) {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        text
    }
}

/// `session` with a refresh's result in it.
fn apply(session: &Session, r: &Refreshed) -> Session {
    let mut next = session.clone();
    next.tokens = r.tokens.clone();
    next.generation = r.generation;
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_map_expires_and_drops_the_oldest() {
        let t0 = Instant::now();
        let mut m: Bounded<u32, &str> = Bounded::new(3);
        m.insert(1, "a", t0 + Duration::from_secs(10), t0);
        m.insert(2, "b", t0 + Duration::from_secs(1), t0);
        m.insert(3, "c", t0 + Duration::from_secs(10), t0);
        assert_eq!(m.get(&2, t0), Some(&"b"));
        assert_eq!(m.get(&2, t0 + Duration::from_secs(2)), None, "expired");
        m.insert(4, "d", t0 + Duration::from_secs(10), t0);
        assert_eq!(m.len(), 3);
        assert_eq!(m.get(&1, t0), None, "the oldest went first");
        assert_eq!(m.get(&4, t0), Some(&"d"));
        // Replacing an entry moves it to the back.
        m.insert(2, "b2", t0 + Duration::from_secs(10), t0);
        m.insert(5, "e", t0 + Duration::from_secs(10), t0);
        assert_eq!(m.get(&2, t0), Some(&"b2"));
        assert_eq!(m.get(&3, t0), None);
        assert!(m.order.len() <= 4, "stale positions are dropped: {}", m.order.len());
        m.shorten(&2, t0);
        assert_eq!(m.get(&2, t0), None, "shortened to now");
    }

    #[test]
    fn many_inserts_stay_within_capacity() {
        let t0 = Instant::now();
        let mut m: Bounded<u32, u32> = Bounded::new(100);
        for i in 0..10_000 {
            m.insert(i % 250, i, t0 + Duration::from_secs(60), t0);
        }
        assert_eq!(m.len(), 100);
        assert!(m.order.len() <= 216, "{}", m.order.len());
        // One long-lived entry in front, one key replaced over and over behind it.
        let mut m: Bounded<u32, u32> = Bounded::new(10);
        m.insert(0, 0, t0 + Duration::from_secs(3600), t0);
        for i in 0..10_000 {
            m.insert(1, i, t0 + Duration::from_secs(60), t0);
        }
        assert_eq!(m.len(), 2);
        assert!(m.order.len() <= 36, "stale positions do not pile up: {}", m.order.len());
        assert_eq!(m.get(&1, t0), Some(&9_999));
        assert_eq!(m.get(&0, t0), Some(&0));
    }

    #[test]
    fn keys_are_hashes_not_tokens() {
        let k = key_of(&Token::new("refresh-token-value"));
        assert_eq!(k.len(), 32);
        assert_ne!(&k[..], b"refresh-token-value".as_slice());
        assert_eq!(k, key_of(&Token::new("refresh-token-value")));
    }
}
