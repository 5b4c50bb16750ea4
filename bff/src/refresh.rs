//! Refreshing access tokens so that no one is signed out by mistake, against an upstream that
//! rotates refresh tokens and revokes everything when a retired one comes back (RFC 9700):
//!
//! - **one flight per refresh token**: the first request that needs a refresh starts it, every
//!   other request carrying the same refresh token waits for that flight (bounded wait) and
//!   shares its result. The grant runs in its own task, so a request that gives up or is
//!   dropped never leaves a half-done rotation that a retry would turn into a reuse; a task that
//!   panics removes its flight on the way out (a drop guard), so the token is not stuck;
//! - **rotation grace**: a flight's result is remembered, keyed by the SHA-256 of the refresh
//!   token it consumed (never the token), and handed to requests that arrive later with the old
//!   cookie (parallel fetches, a second tab): [`HANDOFF`] until a request arrives carrying the
//!   new cookie — proof that the browser has it; a response that set it may never have reached
//!   the browser (tab closed, connection dropped) — then only `grace`;
//! - **newest wins**: the newest generation issued for each session is known, and a response
//!   never writes an older one (it writes the newest it can rebuild, or nothing). A result is
//!   only handed to a cookie older than it, so an upstream that does not rotate (the same
//!   refresh token every time) gets a new flight for every expiry, not the old tokens back;
//! - **sign-out wins**: sessions that signed out are marked until their absolute end (their own
//!   bounded map, never evicted by refresh churn), their cookies refused without a call
//!   upstream; a flight that lands after the sign-out is turned into a refusal and what it got
//!   is revoked;
//! - revocation that fails because the upstream is down is retried in the background;
//! - counters and a duration histogram, in Prometheus text on demand.
//!
//! Time comes from an injected [`Clock`], the upstream from [`TokenGrants`] and what is
//! remembered between requests from a [`RefreshMemory`] (this process's [`InProcess`] memory by
//! default: at most `capacity` remembered results and newest-generation marks,
//! `ended_capacity` sign-out marks, the oldest dropped first), so every interleaving and expiry
//! here is testable without sleeping, and a store shared by several instances changes nothing
//! here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tracing::Instrument;

use crate::client::UpstreamError;
use crate::clock::Clock;
use crate::grants::TokenGrants;
use crate::memory::{provider_keys, Claim, InProcess, Landing, Marks, Outcome, Refreshed, RefreshMemory, TokenKey};
use crate::session::{Session, Token, TokenSet};

/// How long a result no response has carried yet is kept for the session's next request.
pub const HANDOFF: Duration = Duration::from_secs(10 * 60);

/// Links followed from a cookie's refresh token to the newest result (each link a rotation that
/// happened while the older cookie was still in use).
const MAX_CHAIN: usize = 16;

/// Claims one request makes for one refresh at most: a flight that ended without a result (its
/// task panicked, its claimer went away, its instance died) is claimed again, within the wait.
const CLAIMS: u32 = 3;

/// The refusal code a flight that landed after sign-out is turned into.
pub const SIGNED_OUT: &str = "signed_out";

/// The refusal code of a session whose cookie holds no refresh token.
pub const NO_REFRESH_TOKEN: &str = "no_refresh_token";

/// Whether a refresh refused with `code` is over for the *session*: the upstream said the
/// refresh token is no good (`invalid_grant`, RFC 6749 §5.2; an HTTP API's configured refusal
/// statuses), or this library decided so (signed out, another subject's tokens, an answer
/// without usable tokens, no refresh token). Every other refusal (`invalid_client`,
/// `unauthorized_client`, `invalid_request`, `invalid_scope`, `unsupported_grant_type`...) is
/// about the client — a mistyped or half-rotated secret in a deploy — and signing people out
/// for it would end every session that refreshes on the faulty instance: it is an outage
/// ("try again, still signed in"), logged as an error.
pub fn ends_session(code: &str) -> bool {
    matches!(code, "invalid_grant" | SIGNED_OUT | SUBJECT_CHANGED | NO_REFRESH_TOKEN)
        || code == crate::upstream::UNUSABLE_REFRESH_ANSWER
        || code.starts_with(crate::http_api::REFUSED_STATUS)
}

/// Whether a refusal is about the client (its id, secret or rights), not about the token: an
/// answer that a configuration put right on either side changes.
fn about_the_client(code: &str) -> bool {
    matches!(code, "invalid_client" | "unauthorized_client")
}

/// A refresh grant's answer as the session sees it: a refusal that is not the session's
/// ([`ends_session`]) is an outage.
fn as_seen_by_the_session(result: Result<TokenSet, UpstreamError>) -> Result<TokenSet, UpstreamError> {
    match result {
        Err(UpstreamError::Refused { code }) if !ends_session(&code) => {
            tracing::error!(
                %code,
                "the upstream refused this client's refresh (check the client id, secret and configuration of this instance); the session is kept"
            );
            Err(UpstreamError::Unavailable(format!("the upstream refused this client ({code}); try again")))
        }
        other => other,
    }
}

/// How the refresh machinery waits, remembers and retries.
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
    /// Remembered results (and newest-generation marks) at most.
    pub capacity: usize,
    /// Signed-out sessions remembered at most (kept until each session's absolute end).
    pub ended_capacity: usize,
    /// Revocations that failed on an outage are tried again this many times...
    pub revoke_retries: u32,
    /// ...after this delay, doubled each time (capped at a minute).
    pub revoke_retry_delay: Duration,
}

impl Default for RefreshConfig {
    fn default() -> Self {
        RefreshConfig {
            wait: Duration::from_secs(5),
            grant_timeout: Duration::from_secs(30),
            grace: Duration::from_secs(60),
            capacity: 100_000,
            ended_capacity: 100_000,
            revoke_retries: 8,
            revoke_retry_delay: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: OutcomeKind,
}

/// How a refresh grant ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum OutcomeKind {
    /// New tokens.
    refreshed,
    /// The upstream refused the refresh token.
    refused,
    /// The upstream could not be reached, or answered 5xx.
    unavailable,
    /// The grant timed out (the upstream may have rotated anyway).
    timeout,
}

struct Metrics {
    registry: Registry,
    grants: Family<OutcomeLabel, Counter>,
    joined: Counter,
    grace_hits: Counter,
    wait_timeouts: Counter,
    reclaims: Counter,
    older_not_written: Counter,
    ended_refused: Counter,
    landed_after_sign_out: Counter,
    revocations_pending: Gauge,
    revocations_abandoned: Counter,
    remembered: Gauge,
    duration: Histogram,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("tokenless_refresh");
        let grants = Family::<OutcomeLabel, Counter>::default();
        registry.register("grants", "Refresh grants sent upstream, by outcome", grants.clone());
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let joined =
            counter(&mut registry, "joined", "Requests that waited for a refresh already in flight");
        let grace_hits = counter(
            &mut registry,
            "grace_hits",
            "Requests with a rotated refresh token served the remembered result",
        );
        let wait_timeouts =
            counter(&mut registry, "wait_timeouts", "Requests that stopped waiting for a refresh (it went on)");
        let reclaims = counter(
            &mut registry,
            "reclaims",
            "Claims made again after the flight waited for ended without a result (it panicked, its claimer went away, its instance died)",
        );
        let older_not_written = counter(
            &mut registry,
            "older_cookie_not_written",
            "Responses that would have set an older session than the newest issued",
        );
        let ended_refused = counter(
            &mut registry,
            "signed_out_cookie_refused",
            "Requests carrying the cookie of a session that signed out",
        );
        let landed_after_sign_out = counter(
            &mut registry,
            "landed_after_sign_out",
            "Refreshes that completed after their session signed out (their tokens revoked)",
        );
        let revocations_abandoned = counter(
            &mut registry,
            "revocations_abandoned",
            "Revocations still failing after every retry (the token lives on upstream)",
        );
        let revocations_pending = Gauge::default();
        registry.register(
            "revocations_pending",
            "Revocations waiting to be tried again after an outage",
            revocations_pending.clone(),
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
            reclaims,
            older_not_written,
            ended_refused,
            landed_after_sign_out,
            revocations_pending,
            revocations_abandoned,
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
    /// Grants that gave new tokens.
    pub refreshed: u64,
    /// Grants the upstream refused.
    pub refused: u64,
    /// Grants that failed on an outage.
    pub unavailable: u64,
    /// Grants that timed out.
    pub timeouts: u64,
    /// Requests that waited for a flight already in the air.
    pub joined: u64,
    /// Requests with a rotated token served the remembered result.
    pub grace_hits: u64,
    /// Requests that stopped waiting for a refresh (it went on).
    pub wait_timeouts: u64,
    /// Claims made again after a flight ended without a result.
    pub reclaims: u64,
    /// Responses that would have written an older session than the newest.
    pub older_not_written: u64,
    /// Requests carrying the cookie of a session that signed out.
    pub signed_out_refused: u64,
    /// Refreshes that landed after their session signed out (revoked).
    pub landed_after_sign_out: u64,
    /// Revocations waiting for a retry.
    pub revocations_pending: u64,
    /// Revocations given up after every retry.
    pub revocations_abandoned: u64,
}

/// What is known of a cookie's session beyond the cookie itself.
#[derive(Debug)]
pub enum Known {
    /// Nothing newer.
    Current,
    /// Its refresh token was rotated already: here is the newest session rebuilt from the
    /// remembered results.
    Newer(Session),
    /// Its refresh token was refused: the cookie is dead, remove it.
    Ended,
    /// The session signed out (or was replaced by a new sign-in): refused, but its cookie is
    /// left alone, since the browser's cookie of that name may already be the new session's.
    SignedOut,
    /// Its OpenID provider ended it (back-channel logout): refused like [`Known::SignedOut`];
    /// the caller marks it signed out and revokes its tokens ([`crate::SessionManager::load`]
    /// does, in the background).
    EndedAtProvider,
    /// The memory could not be asked (a shared store that does not answer): whether it signed
    /// out is not known. Neither served nor refused: "try again", the cookie left as it is.
    Unavailable,
}

/// Whether the upstream confirmed a revocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// Revoked (or the upstream says the token was no good anyway).
    Confirmed,
    /// The upstream could not be reached; it is tried again in the background.
    Pending,
    /// The upstream answered something else (logged); not tried again.
    Failed,
}

struct Inner {
    grants: Arc<dyn TokenGrants>,
    clock: Arc<dyn Clock>,
    config: RefreshConfig,
    memory: Arc<dyn RefreshMemory>,
    metrics: Metrics,
    /// Work requests leave running: flights, revocation retries, sessions the provider ended.
    background: tokio_util::task::TaskTracker,
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

/// Abandons a flight if its task ends without landing (a panic): later requests then start a
/// new flight instead of joining one that will never answer.
struct FlightGuard {
    memory: Arc<dyn RefreshMemory>,
    key: TokenKey,
    landed: bool,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        if !self.landed {
            tracing::error!("a refresh task ended without a result; its flight is removed");
            self.memory.abandon(self.key);
        }
    }
}

impl Refresher {
    /// Refreshes through `grants`, remembering in this process's memory ([`InProcess`], bounded
    /// by the configuration's capacities).
    pub fn new(grants: Arc<dyn TokenGrants>, config: RefreshConfig, clock: Arc<dyn Clock>) -> Self {
        let memory = Arc::new(InProcess::new(config.capacity, config.ended_capacity, clock.clone()));
        Self::with_memory(grants, config, clock, memory)
    }

    /// Refreshes through `grants`, remembering in `memory` (a store several instances share).
    pub fn with_memory(
        grants: Arc<dyn TokenGrants>,
        config: RefreshConfig,
        clock: Arc<dyn Clock>,
        memory: Arc<dyn RefreshMemory>,
    ) -> Self {
        let mut metrics = Metrics::new();
        memory.register_metrics(metrics.registry.sub_registry_with_prefix("shared"));
        let background = tokio_util::task::TaskTracker::new();
        Refresher { inner: Arc::new(Inner { grants, clock, config, memory, metrics, background }) }
    }

    /// Runs `work` in the background, counted by [`Refresher::drain`].
    pub(crate) fn in_background(&self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        self.inner.background.spawn(work);
    }

    /// Waits until the work requests left running has finished — flights (their results
    /// stored for later requests and the other instances), revocations being retried, then
    /// what the memory still has to write ([`RefreshMemory::settle`]) — or `within` has
    /// passed; `true` when nothing is left. Work begun meanwhile is waited for too.
    pub async fn drain(&self, within: Duration) -> bool {
        let background = &self.inner.background;
        background.close();
        let all = async {
            background.wait().await;
            self.inner.memory.settle().await;
        };
        let drained = tokio::time::timeout(within, all).await.is_ok();
        background.reopen();
        drained
    }

    /// The configuration it runs with.
    pub fn config(&self) -> RefreshConfig {
        self.inner.config
    }

    /// The clock every expiry here is measured with.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// The memory it keeps between requests.
    pub fn memory(&self) -> &dyn RefreshMemory {
        &*self.inner.memory
    }

    /// What the memory knows that the cookie does not: a newer generation built from
    /// remembered results, or that the session ended.
    ///
    /// Its three questions go to the memory at once (a shared store answers them in one round
    /// trip), and are read in this order.
    pub async fn known(&self, session: &Session) -> Known {
        self.look_up(session).await.0
    }

    /// [`Refresher::known`], and the marks it read.
    async fn look_up(&self, session: &Session) -> (Known, Marks) {
        let keys = session.provider.as_ref().map(provider_keys).unwrap_or_default();
        let (marks, ended_at_provider, newest) = tokio::join!(
            self.memory().marks(&session.id, session.created_at),
            self.memory().ended_at_provider(&keys),
            self.newest_known(session)
        );
        if marks.signed_out {
            self.inner.metrics.ended_refused.inc();
            return (Known::SignedOut, marks);
        }
        if marks.unknown {
            return (Known::Unavailable, marks);
        }
        if session.provider.is_some() && ended_at_provider.is_some_and(|at| session.created_at <= at) {
            self.inner.metrics.ended_refused.inc();
            return (Known::EndedAtProvider, marks);
        }
        let known = match newest {
            Err(()) => Known::Ended,
            Ok(Some(newer)) => {
                self.inner.metrics.grace_hits.inc();
                Known::Newer(newer)
            }
            Ok(None) => Known::Current,
        };
        (known, marks)
    }

    /// [`Refresher::known`] for `session` as a request's cookie carried it: when it is the
    /// generation of a refresh no request had carried yet, the browser has it now, so only
    /// copies of the older cookie still in the air need that result (the grace from now on).
    /// Only for a session read from a cookie: one rebuilt or refreshed while handling the
    /// request is not in the browser yet.
    pub async fn arrived(&self, session: &Session) -> Known {
        let (known, marks) = self.look_up(session).await;
        if matches!(known, Known::Current) && marks.uncarried == Some(session.generation) {
            self.memory().carried(&session.id, session.generation, self.inner.config.grace).await;
        }
        known
    }

    /// Whether a session newer than `session` was issued, or it signed out: writing `session`
    /// would put back a retired refresh token.
    pub async fn is_superseded(&self, session: &Session) -> bool {
        let marks = self.memory().marks(&session.id, session.created_at).await;
        let superseded = marks.signed_out || marks.newest.is_some_and(|newest| newest > session.generation);
        if superseded {
            self.inner.metrics.older_not_written.inc();
        }
        superseded
    }

    /// The session after one refresh of its tokens: joined to a flight in the air for the same
    /// refresh token, a result that landed for it meanwhile, or a new flight. Until a request
    /// arrives carrying it ([`Refresher::arrived`] sees that), the result is kept for [`HANDOFF`].
    pub async fn refresh(&self, session: &Session) -> Result<Session, UpstreamError> {
        let Some(token) = session.tokens.refresh_token.clone() else {
            return Err(UpstreamError::Refused { code: NO_REFRESH_TOKEN.into() });
        };
        let key = TokenKey::of(&token);
        // One wait for the whole request, however many claims it takes.
        let deadline = tokio::time::Instant::now() + self.inner.config.wait;
        for attempt in 1..=CLAIMS {
            let wait = match self.memory().claim(key, &session.id, session.generation).await {
                Claim::SignedOut => {
                    self.inner.metrics.ended_refused.inc();
                    return Err(UpstreamError::Refused { code: SIGNED_OUT.into() });
                }
                Claim::Join(wait) => {
                    self.inner.metrics.joined.inc();
                    wait
                }
                // The flight for this token landed after the caller looked (`known`) and before
                // it asked: use its result. Another flight would send the rotated token again,
                // which the upstream takes for theft and answers by revoking the sign-in.
                Claim::Remembered(Outcome::Refreshed(r)) => {
                    self.inner.metrics.grace_hits.inc();
                    return Ok(apply(session, &r));
                }
                Claim::Remembered(Outcome::Refused(code)) => return Err(UpstreamError::Refused { code }),
                Claim::Remembered(Outcome::Unavailable(detail)) => return Err(UpstreamError::Unavailable(detail)),
                Claim::Fly(wait) => {
                    let subject = crate::http_api::jwt_sub(session.tokens.access_token.expose());
                    self.start(key, token.clone(), session, subject);
                    wait
                }
            };
            let outcome = match tokio::time::timeout_at(deadline, wait).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    self.inner.metrics.wait_timeouts.inc();
                    return Err(UpstreamError::Unavailable(
                        "timed out waiting for the refresh (it goes on, and its result will be kept)".into(),
                    ));
                }
            };
            return match outcome {
                // A sign-out between the landing and this waiter's wake-up wins too; when that
                // cannot be read, "try again" (the result stays remembered for the next request).
                Some(Outcome::Refreshed(r)) => {
                    let marks = self.memory().marks(&session.id, session.created_at).await;
                    if marks.signed_out {
                        Err(UpstreamError::Refused { code: SIGNED_OUT.into() })
                    } else if marks.unknown {
                        Err(UpstreamError::Unavailable(crate::manager::MEMORY_UNAVAILABLE.into()))
                    } else {
                        Ok(apply(session, &r))
                    }
                }
                Some(Outcome::Refused(code)) => Err(UpstreamError::Refused { code }),
                Some(Outcome::Unavailable(detail)) => Err(UpstreamError::Unavailable(detail)),
                // The flight ended without a word: its task panicked, the request that was
                // claiming it went away before the memory answered, or (a shared memory) the
                // instance flying it stopped and its lease ended. Nothing was landed, so claim
                // again (within the same wait): exactly one of the waiters flies.
                None if attempt < CLAIMS => {
                    self.inner.metrics.reclaims.inc();
                    continue;
                }
                None => break,
            };
        }
        Err(UpstreamError::Unavailable("the refresh stopped unexpectedly".into()))
    }

    /// Runs the grant for `token` in its own task and lands its result. `subject` is the `sub`
    /// of the session's access token when it is a JWT: tokens for anyone else are refused.
    fn start(&self, key: TokenKey, token: Token, session: &Session, subject: Option<String>) {
        let (session_id, generation, created_at) = (session.id.clone(), session.generation, session.created_at);
        let this = self.clone();
        let span = tracing::info_span!("refresh", session = %session_id, outcome = tracing::field::Empty, elapsed_ms = tracing::field::Empty);
        // Made before the spawn: a task dropped before it first runs abandons its flight too.
        let guard = FlightGuard { memory: self.inner.memory.clone(), key, landed: false };
        self.inner.background.spawn(
            async move {
                // The whole guard moves into the task (not just the field it sets).
                let mut guard = guard;
                let started = Instant::now();
                let config = this.inner.config;
                let result = this.inner.grants.refresh(&token, this.inner.clock.unix(), config.grant_timeout).await;
                let result = as_seen_by_the_session(result);
                let (result, foreign) = match result {
                    Ok(tokens) if !same_subject(subject.as_deref(), &tokens) => {
                        tracing::error!("a refresh answered with another subject's tokens; the session ends");
                        (Err(UpstreamError::Refused { code: SUBJECT_CHANGED.into() }), Some(tokens))
                    }
                    other => (other, None),
                };
                let elapsed = started.elapsed();
                let kind = match &result {
                    Ok(_) => OutcomeKind::refreshed,
                    Err(UpstreamError::Refused { .. }) => OutcomeKind::refused,
                    Err(e) if e.is_timeout() => OutcomeKind::timeout,
                    Err(_) => OutcomeKind::unavailable,
                };
                let m = &this.inner.metrics;
                m.grants.get_or_create(&OutcomeLabel { outcome: kind }).inc();
                m.duration.observe(elapsed.as_secs_f64());
                let span = tracing::Span::current();
                span.record("outcome", format!("{kind:?}"));
                span.record("elapsed_ms", elapsed.as_millis() as u64);
                let landing =
                    Landing { session_id: &session_id, generation, created_at, result, handoff: HANDOFF, grace: config.grace };
                let landed = this.memory().land(key, landing).await;
                guard.landed = true;
                if let Some(count) = this.memory().remembered_count() {
                    m.remembered.set(i64::try_from(count).unwrap_or(i64::MAX));
                }
                match &landed.outcome {
                    Outcome::Unavailable(detail) => {
                        tracing::warn!(%detail, "refresh failed; the session is kept")
                    }
                    Outcome::Refused(code) => tracing::info!(%code, "refresh refused"),
                    Outcome::Refreshed(_) => tracing::debug!("refreshed"),
                }
                // Someone else's sign-in handed to this session: ended upstream, never used.
                if let Some(tokens) = foreign {
                    this.revoke(tokens).await;
                }
                if let Some(tokens) = landed.revoke {
                    m.landed_after_sign_out.inc();
                    tracing::info!("the session signed out while its refresh was in flight; revoking what it got");
                    this.revoke(tokens).await;
                }
            }
            .instrument(span),
        );
    }

    /// Marks `session` as signed out until `until` (Unix seconds; its absolute end): its
    /// cookies are refused, no refresh starts for it, and a refresh in flight for it lands as
    /// a refusal. Returns the newest session known once the mark is set — the one to revoke: a
    /// refresh that landed before the mark is in it, one landing after becomes a refusal (and
    /// is revoked by the refresher).
    pub async fn end(&self, session: &Session, until: u64) -> Session {
        let left = Duration::from_secs(until.saturating_sub(self.inner.clock.unix()));
        // At least the grace period, so copies of the cookie in the air are refused too.
        let left = left.max(self.inner.config.grace);
        self.memory().sign_out(&session.id, session.created_at, left).await;
        self.newest_known(session).await.ok().flatten().unwrap_or_else(|| session.clone())
    }

    /// The newest session the remembered results rebuild from `session`: `Ok(None)` when there
    /// is nothing newer, `Err(())` when its refresh token, or a newer one of the same session,
    /// was refused.
    async fn newest_known(&self, session: &Session) -> Result<Option<Session>, ()> {
        let mut current: Option<Session> = None;
        for _ in 0..MAX_CHAIN {
            let at = current.as_ref().unwrap_or(session);
            let Some(token) = &at.tokens.refresh_token else { break };
            match self.memory().remembered(TokenKey::of(token)).await {
                Some(Outcome::Refreshed(r)) if r.generation > at.generation => {
                    current = Some(apply(at, &r));
                }
                // Refused at any link: the newest refresh token of the session is no good, so
                // the session is over (not the last good link's tokens, which the upstream may
                // have revoked with it).
                Some(Outcome::Refused(_)) => return Err(()),
                _ => break,
            }
        }
        Ok(current)
    }

    /// Ends the sign-in of `tokens` upstream. When the upstream cannot be reached, it is tried
    /// again in the background (`revoke_retries` times, the delay doubling) and `Pending` says so.
    pub async fn revoke(&self, tokens: TokenSet) -> Revocation {
        match self.inner.grants.revoke(&tokens).await {
            // RFC 7009: the upstream answers 200 also for tokens it does not know; only a 2xx
            // confirms. A refusal about the client (a secret rotated on one side first, in a
            // deploy) may pass later: tried again, like an outage. Any other error code
            // (unsupported_token_type) means the token may live on: said, not tried again.
            Ok(()) => Revocation::Confirmed,
            Err(UpstreamError::Refused { code }) if about_the_client(&code) => {
                tracing::error!(%code, "revocation refused for this client (check its id and secret); trying again in the background");
                self.retry_revocation(tokens);
                Revocation::Pending
            }
            Err(UpstreamError::Refused { code }) => {
                tracing::error!(%code, "revocation refused; the token may live on upstream until it expires");
                Revocation::Failed
            }
            Err(UpstreamError::Unavailable(detail)) => {
                tracing::warn!(%detail, "revocation failed on an outage; trying again in the background");
                self.retry_revocation(tokens);
                Revocation::Pending
            }
            Err(e) => {
                tracing::warn!(error = %e, "revocation failed");
                Revocation::Failed
            }
        }
    }

    fn retry_revocation(&self, tokens: TokenSet) {
        let this = self.clone();
        let metrics_gauge = self.inner.metrics.revocations_pending.clone();
        metrics_gauge.inc();
        self.inner.background.spawn(async move {
            let config = this.inner.config;
            let mut delay = config.revoke_retry_delay;
            let mut done = false;
            for attempt in 1..=config.revoke_retries {
                tokio::time::sleep(delay).await;
                match this.inner.grants.revoke(&tokens).await {
                    Ok(()) => {
                        tracing::info!(attempt, "revocation confirmed after a retry");
                        done = true;
                        break;
                    }
                    Err(UpstreamError::Unavailable(detail)) => {
                        tracing::warn!(attempt, %detail, "revocation retry failed");
                    }
                    Err(UpstreamError::Refused { code }) if about_the_client(&code) => {
                        tracing::warn!(attempt, %code, "revocation retry refused for this client");
                    }
                    Err(e) => {
                        tracing::warn!(attempt, error = %e, "revocation retry failed; giving up");
                        break;
                    }
                }
                delay = (delay * 2).min(Duration::from_secs(60));
            }
            if !done {
                this.inner.metrics.revocations_abandoned.inc();
                tracing::error!("revocation never confirmed; the token lives on upstream until it expires");
            }
            metrics_gauge.dec();
        });
    }

    /// The counters, as numbers.
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
            reclaims: m.reclaims.get(),
            older_not_written: m.older_not_written.get(),
            signed_out_refused: m.ended_refused.get(),
            landed_after_sign_out: m.landed_after_sign_out.get(),
            revocations_pending: u64::try_from(m.revocations_pending.get()).unwrap_or(0),
            revocations_abandoned: m.revocations_abandoned.get(),
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

/// The refusal code of a refresh that answered with another person's tokens.
pub const SUBJECT_CHANGED: &str = "subject_changed";

/// Whether refreshed `tokens` are the same person's: when both the session's access token and
/// the new one are JWTs with a `sub`, they must name the same subject (an upstream that mixed up
/// its answers must not hand one person's session to another). Opaque tokens say nothing.
fn same_subject(subject: Option<&str>, tokens: &TokenSet) -> bool {
    match (subject, crate::http_api::jwt_sub(tokens.access_token.expose())) {
        (Some(before), Some(after)) => before == after,
        _ => true,
    }
}

/// `session` with a refresh's result in it. An upstream that kept the refresh token and did not
/// say when it ends leaves the end the cookie knew (the token is the same one).
fn apply(session: &Session, r: &Refreshed) -> Session {
    let mut next = session.clone();
    next.tokens = r.tokens.clone();
    if next.tokens.refresh_expires_at.is_none() && next.tokens.refresh_token == session.tokens.refresh_token {
        next.tokens.refresh_expires_at = session.tokens.refresh_expires_at;
    }
    next.generation = r.generation;
    next
}
