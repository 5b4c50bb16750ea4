//! [`RedisMemory`]: the refresh memory on Redis, shared by every instance that names the same
//! server and prefix, so that a refresh token is refreshed once however many instances see it.
//!
//! - **A flight is a lease**: the consumed token's hash set with this instance's owner id and
//!   an expiry, atomically inside the claim script, renewed every third of its life while the
//!   grant runs (the app sets it longer than the grant's timeout); landing deletes it if still
//!   ours. Each decision (claim, land) is one
//!   Lua script, so instances interleave only between decisions, as the trait requires.
//! - **Results are sealed**: AES-256-GCM under a key derived from the consumed refresh token
//!   (its [`TokenKey::seal_material`], never stored) and a server secret, the Redis key name as
//!   associated data. The secrets follow the session key ring: sealed with the writing key's,
//!   opened with any key's, so instances amid a key rotation read each other's results. A dump
//!   of Redis holds token hashes, generations and ciphertext: nothing that signs anyone in.
//! - **Waiting elsewhere**: one watcher per token and instance, woken by pub/sub and polling
//!   as a fallback (pub/sub loses messages on reconnect). A lease that ends without a result
//!   (its owner died, or the upstream was down) wakes the waiters empty; the next request
//!   claims again, and exactly one instance takes the new lease.
//! - **Time is the caller's clock** (Unix milliseconds, [`Clock::unix_millis`]): every value
//!   carries its logical end and scripts compare it with the caller's now, so expiries are
//!   testable with a manual clock; Redis's own expiry only collects garbage (a minute later).
//! - **In this process first**: flights this instance flies or waits for are joined locally,
//!   and settled facts (a sign-out, a result) it learned are answered from its own copy
//!   ([`local`]), without asking Redis again. Open questions — has this session signed out on
//!   another instance? — are asked on each request (three reads pipelined on one connection):
//!   that is what makes a sign-out hold everywhere at once.
//!
//! Marks are never dropped to make room here: run Redis with `maxmemory-policy noeviction` (a
//! `volatile-*` policy would evict sign-out marks, which carry an expiry, and revive sessions).
//!
//! Redis trouble never signs anyone out. Every call is bounded (a second), a failed one is
//! logged and counted ([`metrics`]): a refresh that cannot be claimed is answered "unavailable,
//! try again" (never flown here: another instance may have rotated the token, and presenting it
//! again would end the sign-in), a mark that cannot be read refuses nobody, a logout token whose
//! use cannot be recorded is accepted (a replay can only end sessions again). A flight whose
//! Redis stops answering keeps its lease (taken again when it ended meanwhile) and sends its
//! landing again until Redis answers or a lease has passed; its result reaches this instance's
//! waiters only once Redis holds it, or when that time is up. A sign-out Redis did not take
//! is sent again every second until it does. A connection that stalls without failing is made
//! again by a watchdog ([`link`]). A Redis that comes back *empty* gets back what the instances
//! know ([`reseed`]): each keeps a copy of every fact, and none claims anything until it wrote
//! its copy back and every flight's renewal could take its lease again.

mod link;
mod local;
mod metrics;
mod reseed;
mod scripts;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::StreamExt;
use rand::RngCore;
use redis::aio::ConnectionManager;
use tokio::sync::watch;

use crate::client::UpstreamError;
use crate::clock::Clock;
use crate::grants::BoxFuture;
use crate::result_seal::ResultSeal;
use crate::memory::{Claim, InProcess, Landed, Landing, Marks, NotKept, Outcome, Refreshed, RefreshMemory, TokenKey, Wait};
use crate::session::TokenSet;
use local::Settled;
use metrics::SharedMetrics;
use link::Link;
use reseed::Replica;
use scripts::scripts;

/// How much longer than its logical end Redis keeps a value (then collects it).
const GC_SLACK_MS: u64 = 60_000;

/// How long an instance's marker lives unless kept alive (renewed every quarter of it): a
/// stopped instance's goes away on its own.
const MARKER_LIFE: Duration = Duration::from_secs(24 * 3600);

/// Refresh results kept for a write-back at most (about 20 MB with 1-KB JWTs): the oldest go
/// first.
const REPLICA_RESULTS_MAX: usize = 10_000;

/// Commands in one pipeline of a write-back (each answered within the call timeout).
const WRITE_BACK_BATCH: usize = 500;

/// How long after noticing an empty Redis an instance answers "try again" at least (and at
/// least a lease's renewal period and a call): the other instances notice it meanwhile and
/// write back what they know, and each flight's renewal takes its lease again, before this
/// one claims anything.
const SETTLE: Duration = Duration::from_secs(2);

/// How often a waiter looks for a result when no message came.
const POLL: Duration = Duration::from_millis(100);

/// Why the shared memory could not start.
#[derive(Debug, thiserror::Error)]
pub enum RedisStartError {
    /// The URL is not one the client takes.
    #[error("session.redis_url is not a Redis URL the client takes: {0}")]
    Url(String),
    /// No secret to seal results with.
    #[error("no secret to seal the shared refresh results with (RedisOptions::secrets is empty: derive them from the session key ring)")]
    NoSecret,
    /// Nothing answered there.
    #[error("the Redis at session.redis_url cannot be reached: {0} (start it, or set session.store = \"memory\")")]
    Unreachable(String),
}

/// The shared memory's settings.
#[derive(Clone)]
pub struct RedisOptions {
    /// Every key starts with it (`tokenless:`): instances that share it share refreshes.
    pub prefix: String,
    /// The server secrets results are sealed with (with each consumed token's material): the
    /// first seals, every one opens (one per key of the session key ring, the writing key's
    /// first: [`crate::KeyRing::derive_secrets`]).
    pub secrets: Vec<[u8; 32]>,
    /// How long a flight's lease lives between renewals (every third of it while the grant
    /// runs, and until its landing is taken).
    pub lease: Duration,
    /// Settled facts (sign-outs, results) this instance keeps a copy of, at most, each kind.
    pub local_capacity: usize,
}

impl std::fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisOptions")
            .field("prefix", &self.prefix)
            .field("lease", &self.lease)
            .field("local_capacity", &self.local_capacity)
            .finish_non_exhaustive()
    }
}

/// A flight this instance flies or waits for: its waiters, and (ours only) its lease value and
/// renewal.
struct LocalFlight {
    sender: watch::Sender<Option<Outcome>>,
    lease: Option<(String, tokio::task::JoinHandle<()>)>,
}

/// The refresh memory on Redis (see the module's notes).
pub struct RedisMemory {
    link: Link,
    options: RedisOptions,
    owner: String,
    /// Numbers this instance's flights (a lease value is `{owner}:{n}`).
    next_flight: std::sync::atomic::AtomicU64,
    clock: Arc<dyn Clock>,
    sealer: Sealer,
    flights: Arc<Mutex<HashMap<TokenKey, LocalFlight>>>,
    settled: Settled,
    /// Provider ends this instance was told of, kept here too: one that Redis did not take
    /// still holds on this instance.
    provider_ends: InProcess,
    /// The facts Redis holds, whichever instance stored them, for a Redis that comes back
    /// empty ([`reseed`]).
    replica: Arc<Replica>,
    /// Dropped with the memory: its background tasks (the watchdog, the replica's follower)
    /// end.
    stop: tokio::sync::watch::Sender<()>,
    /// This instance's marker in Redis has been seen (or set): its absence now means Redis
    /// lost its data.
    marker_seen: std::sync::atomic::AtomicBool,
    /// What this instance knows is being written back to a Redis found empty: until it is,
    /// marks are unknown ("try again").
    writing_back: Arc<std::sync::atomic::AtomicBool>,
    metrics: SharedMetrics,
    /// Sign-outs and provider logouts being sent again ([`RedisMemory::keep_sending`]), for
    /// [`RefreshMemory::settle`].
    sending: tokio_util::task::TaskTracker,
}

impl std::fmt::Debug for RedisMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisMemory").field("options", &self.options).field("owner", &self.owner).finish_non_exhaustive()
    }
}

fn waiting(mut receiver: watch::Receiver<Option<Outcome>>) -> Wait {
    Box::pin(async move { receiver.wait_for(Option::is_some).await.ok().and_then(|outcome| outcome.clone()) })
}

/// `Some(rest)` when `value` (`{until_ms}|{rest}`) is still alive at `now`.
fn alive(value: &str, now: u64) -> Option<&str> {
    let (until, rest) = value.split_once('|')?;
    (until.parse::<u64>().ok()? > now).then_some(rest)
}

/// The logical end of `value` (`{until_ms}|{rest}`).
fn until(value: &str) -> Option<u64> {
    value.split_once('|')?.0.parse().ok()
}

/// Whole milliseconds of `d`, at most a year (what Redis takes as an expiry; a "forever" from
/// configuration neither overflows nor keeps a key for good).
fn ms(d: Duration) -> u64 {
    u64::try_from(d.min(Duration::from_secs(366 * 24 * 3600)).as_millis()).unwrap_or(u64::MAX)
}

impl RedisMemory {
    /// Connects to the Redis at `url` (`redis://127.0.0.1:6379/0`); reconnects by itself
    /// afterwards (calls fail fast meanwhile: see the module's notes).
    pub async fn connect(url: &str, options: RedisOptions, clock: Arc<dyn Clock>) -> Result<Self, RedisStartError> {
        if options.secrets.is_empty() {
            return Err(RedisStartError::NoSecret);
        }
        let client = redis::Client::open(url).map_err(|e| RedisStartError::Url(e.to_string()))?;
        let conn = tokio::time::timeout(CALL_TIMEOUT * 5, ConnectionManager::new_with_config(client.clone(), link::config()))
            .await
            .map_err(|_| RedisStartError::Unreachable(format!("no answer within {:?}", CALL_TIMEOUT * 5)))?
            .map_err(|e| RedisStartError::Unreachable(e.to_string()))?;
        // Loaded now, so that a call sent while Redis is away runs as sent once it answers
        // (not as a "no such script" that nobody is left to send again).
        let mut loading = conn.clone();
        for script in scripts().all() {
            tokio::time::timeout(CALL_TIMEOUT * 5, script.prepare_invoke().load_async(&mut loading))
                .await
                .map_err(|_| RedisStartError::Unreachable(format!("no answer within {:?}", CALL_TIMEOUT * 5)))?
                .map_err(|e| RedisStartError::Unreachable(e.to_string()))?;
        }
        let memory = Self::with_connection(client, conn, options, clock);
        // The marker whose absence later says Redis lost its data.
        let mut marking = memory.link.get();
        tokio::time::timeout(CALL_TIMEOUT * 5, memory.set_marker(false).query_async::<()>(&mut marking))
            .await
            .map_err(|_| RedisStartError::Unreachable(format!("no answer within {:?}", CALL_TIMEOUT * 5)))?
            .map_err(|e| RedisStartError::Unreachable(e.to_string()))?;
        memory.marker_seen.store(true, std::sync::atomic::Ordering::SeqCst);
        memory.keep_marker();
        Ok(memory)
    }

    /// On a connection made already (several memories may share one). Called within a Tokio
    /// runtime, it starts the connection's watchdog and the replica's follower (see the module's notes),
    /// which end with the memory.
    pub fn with_connection(client: redis::Client, conn: ConnectionManager, options: RedisOptions, clock: Arc<dyn Clock>) -> Self {
        let mut owner = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut owner);
        let sealer = Sealer { seal: ResultSeal::new(options.secrets.clone()), prefix: options.prefix.clone() };
        let link = Link::new(client, conn);
        let metrics = SharedMetrics::new();
        let replica = Arc::new(Replica::new(&options.prefix, options.local_capacity, options.local_capacity.min(REPLICA_RESULTS_MAX)));
        let (stop, stopped) = tokio::sync::watch::channel(());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(link.clone().watch(metrics.clone(), clock.clone(), stopped.clone()));
            runtime.spawn(reseed::follow(link.clone(), replica.clone(), clock.clone(), metrics.clone(), reseed::REFILL_EVERY, stopped));
        }
        RedisMemory {
            link,
            sealer,
            settled: Settled::new(options.local_capacity),
            provider_ends: InProcess::copy(options.local_capacity, clock.clone()),
            replica,
            stop,
            marker_seen: std::sync::atomic::AtomicBool::new(false),
            writing_back: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            metrics,
            sending: tokio_util::task::TaskTracker::new(),
            options,
            owner: format!("{}:", hex::encode(owner)),
            next_flight: std::sync::atomic::AtomicU64::new(0),
            clock,
            flights: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}{kind}:{id}", self.options.prefix)
    }

    fn token_key(&self, kind: &str, key: &TokenKey) -> String {
        self.key(kind, &hex::encode(key.as_bytes()))
    }

    fn flights(&self) -> MutexGuard<'_, HashMap<TokenKey, LocalFlight>> {
        self.flights.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A stored result as an outcome, at the caller's now; kept here for a moment (late
    /// requests with the same old cookie come in bursts).
    fn outcome(&self, key: &TokenKey, value: &str) -> Option<Outcome> {
        let now = self.clock.unix_millis();
        let outcome = self.sealer.outcome(key, value, now)?;
        self.settled.keep_result(*key, &outcome, until(value).unwrap_or(now), now);
        Some(outcome)
    }

    /// A bounded call (see [`degraded`]), counted.
    async fn call<T>(&self, what: &'static str, call: impl std::future::Future<Output = Result<T, redis::RedisError>>) -> Option<T> {
        degraded(&self.metrics, what, call).await
    }

    /// Keeps the lease `value` alive while the grant for a cookie of `generation` runs. A
    /// renewal that Redis did not answer may still run there later (it was sent): the first
    /// one after the outage takes an ended lease again, its answer is lost with the timed-out
    /// call, and the next renewal that answers says the lease was kept through the outage.
    fn renew_while_flying(&self, key: &TokenKey, value: &str, generation: u64) -> tokio::task::JoinHandle<()> {
        let link = self.link.clone();
        let (lease, result) = (self.token_key("lease", key), self.sealer.result_key(key));
        let (owner, lease_ms) = (value.to_string(), ms(self.options.lease));
        let every = self.options.lease / 3;
        let (metrics, clock) = (self.metrics.clone(), self.clock.clone());
        tokio::spawn(async move {
            let mut missed = false;
            loop {
                tokio::time::sleep(every).await;
                let mut renew = scripts().renew.prepare_invoke();
                renew.key(&lease).key(&result).arg(&owner).arg(lease_ms).arg(clock.unix_millis()).arg(generation);
                match degraded(&metrics, "renew", renew.invoke_async::<i64>(&mut link.get())).await {
                    Some(0) => {
                        metrics.leases_lost.inc();
                        tracing::warn!("a refresh lease was taken by another flight while its grant ran (Redis unreachable for longer than the lease?)");
                        break;
                    }
                    // The landing is in: nothing left to keep.
                    Some(3) => break,
                    Some(_) if missed => {
                        missed = false;
                        metrics.leases_retaken.inc();
                        tracing::info!("a refresh lease was kept through a Redis outage");
                    }
                    Some(_) => {}
                    None => missed = true,
                }
            }
        })
    }

    /// Waits, in one task per token and instance, for the flight another instance flies: a
    /// message on its channel or a poll finds the result; a lease gone without one ends the
    /// wait empty.
    fn watch_remote(&self, key: TokenKey, sender: watch::Sender<Option<Outcome>>, generation: u64) {
        let link = self.link.clone();
        let flights = self.flights.clone();
        let (lease, result, channel) =
            (self.token_key("lease", &key), self.token_key("result", &key), self.token_key("done", &key));
        let deadline = tokio::time::Instant::now() + self.options.lease.saturating_mul(3);
        let (sealer, clock, metrics) = (self.sealer.clone(), self.clock.clone(), self.metrics.clone());
        tokio::spawn(async move {
            // Without a subscription (it failed, or timed out), polling alone finds the result.
            let mut pubsub = match degraded(&metrics, "subscribe", link.client().get_async_pubsub()).await {
                Some(mut p) => degraded(&metrics, "subscribe", p.subscribe(&channel)).await.map(|()| p),
                None => None,
            };
            if pubsub.is_none() {
                metrics.pubsub_lost.inc();
            }
            // A refresh newer than the waiter's cookie, or a refusal (as the claim script reads it).
            let usable = |outcome: &Outcome| match outcome {
                Outcome::Refreshed(r) => r.generation > generation,
                _ => true,
            };
            let outcome = loop {
                let mut conn = link.get();
                let value: Option<Option<String>> =
                    degraded(&metrics, "poll", redis::cmd("GET").arg(&result).query_async(&mut conn)).await;
                let found = value.flatten().and_then(|v| sealer.outcome(&key, &v, clock.unix_millis())).filter(usable);
                if found.is_some() {
                    metrics.waited("result");
                    break found;
                }
                let leased: Option<bool> = degraded(&metrics, "poll", redis::cmd("EXISTS").arg(&lease).query_async(&mut conn)).await;
                if leased == Some(false) {
                    // Landed between the two reads, or ended without a result: one last look.
                    let value: Option<Option<String>> =
                        degraded(&metrics, "poll", redis::cmd("GET").arg(&result).query_async(&mut conn)).await;
                    let read = value.is_some();
                    let found = value.flatten().and_then(|v| sealer.outcome(&key, &v, clock.unix_millis())).filter(usable);
                    metrics.waited(match (&found, read) {
                        (Some(_), _) => "result",
                        (None, true) => "empty",
                        (None, false) => "failed",
                    });
                    break found;
                }
                if tokio::time::Instant::now() >= deadline {
                    metrics.waited("gave_up");
                    break None;
                }
                let closed = match pubsub.as_mut() {
                    Some(p) => matches!(tokio::time::timeout(POLL, p.on_message().next()).await, Ok(None)),
                    None => {
                        tokio::time::sleep(POLL).await;
                        false
                    }
                };
                if closed {
                    // The subscription's connection closed: polling alone from now on.
                    metrics.pubsub_lost.inc();
                    tracing::warn!("a subscription to Redis dropped while waiting for a refresh; polling");
                    pubsub = None;
                }
            };
            flights.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
            let _ = sender.send(outcome);
        });
    }
}

/// A claim on its way to Redis: dropped before the answer (the request that asked was
/// dropped), it removes the local flight — waiters wake empty and the next request claims
/// again — and gives up the lease the claim may take when Redis runs it. Disarmed (`lease`
/// taken) once the answer is in.
struct Unanswered<'a> {
    memory: &'a RedisMemory,
    key: TokenKey,
    lease: Option<String>,
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        let Some(lease) = self.lease.take() else { return };
        tracing::debug!("a claim was dropped before Redis answered; its flight is removed");
        self.memory.flights().remove(&self.key);
        self.memory.release(self.key, lease);
    }
}

/// Stops a lease's renewal for good (waited for: nothing of it runs after this).
async fn stop(renewal: Option<tokio::task::JoinHandle<()>>) {
    if let Some(renewal) = renewal {
        renewal.abort();
        let _ = renewal.await;
    }
}

/// Sealing and opening results ([`crate::result_seal`]), named by their Redis key: the memory
/// and its watcher tasks both do it.
#[derive(Clone)]
struct Sealer {
    seal: ResultSeal,
    prefix: String,
}

impl Sealer {
    /// The Redis key a token's result lives at (also the associated data of its sealing).
    fn result_key(&self, key: &TokenKey) -> String {
        format!("{}result:{}", self.prefix, hex::encode(key.as_bytes()))
    }

    fn seal(&self, key: &TokenKey, tokens: &TokenSet) -> Option<String> {
        self.seal.seal(key, &self.result_key(key), tokens)
    }

    fn open(&self, key: &TokenKey, sealed: &str) -> Option<TokenSet> {
        self.seal.open(key, &self.result_key(key), sealed)
    }

    /// A stored result (`{until}|R|{generation}|{sealed}` or `{until}|X|{code}`) as an outcome,
    /// if alive at `now`.
    fn outcome(&self, key: &TokenKey, value: &str, now: u64) -> Option<Outcome> {
        let rest = alive(value, now)?;
        match rest.split_once('|')? {
            ("X", code) => Some(Outcome::Refused(code.to_string())),
            ("R", rest) => {
                let (generation, sealed) = rest.split_once('|')?;
                let Some(tokens) = self.open(key, sealed) else {
                    tracing::error!("a refresh result in Redis does not open (another secret, or tampered): ignored");
                    return None;
                };
                Some(Outcome::Refreshed(Arc::new(Refreshed { tokens, generation: generation.parse().ok()? })))
            }
            _ => None,
        }
    }
}

/// What a request that needs a refresh gets while Redis cannot be asked.
pub const SHARED_MEMORY_UNAVAILABLE: &str = "the shared refresh memory (Redis) cannot be reached; try again";

/// How long one call to Redis may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// A Redis call, bounded by [`CALL_TIMEOUT`]; a failed one is counted under `what` and
/// answered as if Redis knew nothing. The first failure after a success is a warning, the next
/// ones (Redis still away: one per request) are debug lines, and Redis answering again is said.
async fn degraded<T>(
    metrics: &SharedMetrics,
    what: &'static str,
    call: impl std::future::Future<Output = Result<T, redis::RedisError>>,
) -> Option<T> {
    let problem = match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(value)) => {
            if metrics.reachable.set(1) == 0 {
                tracing::info!("Redis answers again");
            }
            return Some(value);
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {CALL_TIMEOUT:?}"),
    };
    if metrics.failed(what) {
        tracing::warn!(%problem, "Redis failed ({what}); going on with what this process knows, refreshes answer \"try again\"");
    } else {
        tracing::debug!(%problem, "Redis failed again ({what})");
    }
    None
}

impl RedisMemory {
    async fn claim_shared(&self, key: TokenKey, session_id: &str, generation: u64) -> Claim {
        // Redis came back empty and is being written back (and settled): whether another
        // instance is refreshing this token cannot be told yet.
        if self.writing_back.load(std::sync::atomic::Ordering::SeqCst) {
            self.metrics.try_again.inc();
            return Claim::Remembered(Outcome::Unavailable(SHARED_MEMORY_UNAVAILABLE.into()));
        }
        // One question to Redis per token and instance: the first request here registers the
        // flight before asking, so the others join it instead of asking again.
        let (sender, receiver) = {
            let mut flights = self.flights();
            if let Some(flight) = flights.get(&key) {
                self.metrics.local_answers.inc();
                return Claim::Join(waiting(flight.sender.subscribe()));
            }
            let (sender, receiver) = watch::channel(None);
            flights.insert(key, LocalFlight { sender: sender.clone(), lease: None });
            (sender, receiver)
        };
        let now = self.clock.unix_millis();
        let value = format!("{}{}", self.owner, self.next_flight.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        // The request may be dropped while Redis is asked (client gone, a proxy's timeout): the
        // local flight it registered, which only its answer would settle, goes with it, and
        // the lease the claim may still take when Redis runs it is given up.
        let mut unanswered = Unanswered { memory: self, key, lease: Some(value.clone()) };
        let mut conn = self.link.get();
        let answer: Option<Vec<String>> = self
            .call(
                "claim",
                scripts()
                    .claim
                    .key(self.key("ended", session_id))
                    .key(self.token_key("lease", &key))
                    .key(self.sealer.result_key(&key))
                    .key(self.marker())
                    .arg(now)
                    .arg(&self.owner)
                    .arg(ms(self.options.lease))
                    .arg(generation)
                    .arg(&value)
                    .arg(if self.marker_seen.load(std::sync::atomic::Ordering::SeqCst) { "1" } else { "0" })
                    .invoke_async(&mut conn),
            )
            .await;
        // Without Redis, nobody can tell whether another instance rotated this token already:
        // refreshing here could present a rotated token (and the upstream would end the
        // sign-in). The request is answered "try again" instead; the session is kept.
        let unavailable = Outcome::Unavailable(SHARED_MEMORY_UNAVAILABLE.into());
        unanswered.lease = None;
        drop(unanswered);
        let (claim, outcome) = match answer.as_deref() {
            Some([first, ..]) if first == "fly" => {
                self.metrics.leases.inc();
                let renewal = self.renew_while_flying(&key, &value, generation);
                if let Some(flight) = self.flights().get_mut(&key) {
                    flight.lease = Some((value, renewal));
                }
                return Claim::Fly(waiting(receiver));
            }
            Some([first, ..]) if first == "join" => {
                self.watch_remote(key, sender, generation);
                return Claim::Join(waiting(receiver));
            }
            Some([first, ..]) if first == "signed_out" => {
                (Claim::SignedOut, Outcome::Refused(crate::refresh::SIGNED_OUT.into()))
            }
            // Redis lost its data since this instance last looked (a waiter woken by a lease
            // that vanished with it claims again before any request asked for marks): whether
            // another instance is refreshing this token cannot be told until the write-back.
            Some([first, ..]) if first == "emptied" => {
                self.emptied(None).await;
                self.metrics.try_again.inc();
                (Claim::Remembered(unavailable.clone()), unavailable)
            }
            // A result that does not open (another secret) is "try again" too.
            Some([first, stored]) if first == "result" => match self.outcome(&key, stored) {
                Some(outcome) => (Claim::Remembered(outcome.clone()), outcome),
                None => {
                    self.metrics.try_again.inc();
                    (Claim::Remembered(unavailable.clone()), unavailable)
                }
            },
            Some(_) => {
                self.metrics.try_again.inc();
                (Claim::Remembered(unavailable.clone()), unavailable)
            }
            None => {
                // The claim was sent and may still run when Redis answers again: its lease,
                // which nobody here flies, is given up right behind it (same connection, same
                // order), or other instances would wait a whole lease for nothing.
                self.metrics.try_again.inc();
                self.release(key, value);
                (Claim::Remembered(unavailable.clone()), unavailable)
            }
        };
        // Settled without a flight: whoever joined meanwhile gets the same answer.
        self.flights().remove(&key);
        let _ = sender.send(Some(outcome));
        claim
    }

    /// Sends a landing until Redis answers it (it is the same decision each time: the script
    /// keeps the first result for a cookie generation), for the hand-off at most: after that no
    /// request waits for it. Meanwhile its waiters here wait too (within their own limit): a
    /// result only this instance knows could be presented elsewhere as the old token again. An
    /// outage of the upstream is sent once: nothing is kept for it, and the lease ends on its own.
    async fn send_landing(&self, key: &TokenKey, landing: &Landing<'_>, kind: &str, keep: Duration, payload: &str, lease: &str) -> Option<Vec<String>> {
        let give_up = tokio::time::Instant::now() + crate::refresh::HANDOFF;
        loop {
            let mut conn = self.link.get();
            let answer: Option<Vec<String>> = self
                .call(
                    "land",
                    scripts()
                        .land
                        .key(self.token_key("lease", key))
                        .key(self.key("ended", landing.session_id))
                        .key(self.key("newest", landing.session_id))
                        .key(self.sealer.result_key(key))
                        .key(self.token_key("done", key))
                        .key(self.key("carry", landing.session_id))
                        .key(self.key(reseed::FACTS, ""))
                        .arg(self.clock.unix_millis())
                        .arg(lease)
                        .arg(kind)
                        .arg(landing.generation)
                        .arg(ms(keep))
                        .arg(ms(keep).saturating_add(GC_SLACK_MS))
                        .arg(payload)
                        .arg(hex::encode(key.as_bytes()))
                        .invoke_async(&mut conn),
                )
                .await;
            if answer.is_some() || kind == "U" || tokio::time::Instant::now() >= give_up {
                return answer;
            }
            self.metrics.landing_retries.inc();
            tokio::time::sleep(POLL).await;
        }
    }

    async fn land_shared(&self, key: TokenKey, landing: Landing<'_>) -> Landed {
        let (kind, keep, payload) = match &landing.result {
            Ok(tokens) => ("R", landing.handoff, self.sealer.seal(&key, tokens).unwrap_or_default()),
            Err(UpstreamError::Refused { code }) => ("X", landing.grace, code.clone()),
            Err(_) => ("U", Duration::ZERO, String::new()),
        };
        // A result or a refusal: the lease is renewed until Redis took the landing (it is sent
        // again while Redis does not answer, and the lease must not end under another instance
        // meanwhile); a renewal that runs after the landing finds its result and takes nothing.
        // An outage lands nothing: the renewal stops first (one after the landing would lease
        // the token for nobody).
        let lease = self.flights().get_mut(&key).and_then(|f| f.lease.take());
        let (lease_value, mut renewal) = match lease {
            Some((value, renewal)) => (Some(value), Some(renewal)),
            None => (None, None),
        };
        if kind == "U" {
            stop(renewal.take()).await;
        }
        let answer = self.send_landing(&key, &landing, kind, keep, &payload, &lease_value.unwrap_or_default()).await;
        stop(renewal).await;
        let now = self.clock.unix_millis();
        let (outcome, revoke) = match (landing.result, answer.as_deref()) {
            (Ok(tokens), Some([first, ..])) if first == "signed_out" => {
                (Outcome::Refused(crate::refresh::SIGNED_OUT.into()), Some(tokens))
            }
            (Ok(tokens), Some([first, generation])) if first == "refreshed" => {
                let generation = generation.parse().unwrap_or(landing.generation.saturating_add(1));
                let outcome = Outcome::Refreshed(Arc::new(Refreshed { tokens, generation }));
                self.settled.keep_result(key, &outcome, now.saturating_add(ms(keep)), now);
                // Kept for a write-back even if this instance does not hear its own telling.
                let (until, here) = (now.saturating_add(ms(keep)), self.clock.now());
                self.replica.note(&self.sealer.result_key(&key), &format!("{until}|R|{generation}|{payload}"), now, here);
                self.replica.note(&self.key("newest", landing.session_id), &format!("{until}|{generation}"), now, here);
                (outcome, None)
            }
            // This cookie generation landed already: an earlier sending of this landing (Redis
            // did not answer it in time), or — the upstream answered the same token twice —
            // another flight, whose result stays (ours goes back upstream).
            // Ours goes back upstream only when it is another sign-in's refresh token: an
            // upstream that keeps the refresh token answered both with the same one, and
            // revoking it would end the result that stays.
            (Ok(tokens), Some([first, stored])) if first == "exists" => match self.outcome(&key, stored) {
                Some(Outcome::Refreshed(kept)) => {
                    let other = kept.tokens != tokens;
                    if other {
                        tracing::warn!("a refresh token was refreshed twice (a lease lost while Redis was away); the first result stays");
                    }
                    let revoke = (other && kept.tokens.refresh_token != tokens.refresh_token).then_some(tokens);
                    (Outcome::Refreshed(kept), revoke)
                }
                // The kept result does not open here (another secret): nothing revoked.
                _ => {
                    self.metrics.try_again.inc();
                    (Outcome::Unavailable(SHARED_MEMORY_UNAVAILABLE.into()), None)
                }
            },
            // Redis could not number it within the hand-off: the next generation after the
            // cookie's, for this process's waiters (per-process behaviour).
            (Ok(tokens), _) => {
                tracing::error!("a refresh result never reached Redis within the hand-off; only this instance's waiters could get it, elsewhere the session will have to sign in again");
                (Outcome::Refreshed(Arc::new(Refreshed { tokens, generation: landing.generation.saturating_add(1) })), None)
            }
            // A good result of this cookie generation landed first (a second flight after a
            // lease lost in an outage was refused): it stays, and is what the waiters get.
            (Err(UpstreamError::Refused { code }), Some([first, stored])) if first == "exists" => {
                match self.outcome(&key, stored) {
                    Some(kept) => (kept, None),
                    None => (Outcome::Refused(code), None),
                }
            }
            (Err(UpstreamError::Refused { code }), _) => {
                let outcome = Outcome::Refused(code);
                self.settled.keep_result(key, &outcome, now.saturating_add(ms(keep)), now);
                (outcome, None)
            }
            (Err(UpstreamError::Unavailable(detail)), _) => (Outcome::Unavailable(detail), None),
            (Err(other), _) => (Outcome::Unavailable(other.to_string()), None),
        };
        if let Some(flight) = self.flights().remove(&key) {
            let _ = flight.sender.send(Some(outcome.clone()));
        }
        Landed { outcome, revoke }
    }

    /// Gives up the lease `owner` of `key` (if still ours) and wakes the waiters, in the
    /// background.
    fn release(&self, key: TokenKey, owner: String) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let mut conn = self.link.get();
        let (lease, channel, metrics) = (self.token_key("lease", &key), self.token_key("done", &key), self.metrics.clone());
        runtime.spawn(async move {
            let mut release = scripts().release.prepare_invoke();
            release.key(lease).key(channel).arg(owner);
            let _: Option<i64> = degraded(&metrics, "release", release.invoke_async(&mut conn)).await;
        });
    }

    /// This instance's marker key: set at start, kept alive while the instance runs
    /// ([`MARKER_LIFE`]); gone means Redis lost its data.
    fn marker(&self) -> String {
        self.key("marker", self.owner.trim_end_matches(':'))
    }

    /// Sets the marker (`SET`, or `SET XX` to keep it alive without bringing back one that
    /// vanished: that must be noticed).
    fn set_marker(&self, only_if_there: bool) -> redis::Cmd {
        let mut set = redis::cmd("SET");
        set.arg(self.marker()).arg("1").arg("PX").arg(ms(MARKER_LIFE));
        if only_if_there {
            set.arg("XX");
        }
        set
    }

    /// What the marker read with a request's marks says: `true` when Redis lost its data (the
    /// marker, seen before, is gone), and what this instance knows is being written back.
    async fn emptied(&self, marker: Option<&str>) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        if marker.is_some() {
            self.marker_seen.store(true, SeqCst);
            return false;
        }
        // Never seen (a memory made on a connection of its own, `with_connection`): set it.
        if !self.marker_seen.load(SeqCst) {
            let mut conn = self.link.get();
            let _: Option<()> = self.call("marker", self.set_marker(false).query_async(&mut conn)).await;
            return false;
        }
        if !self.writing_back.swap(true, SeqCst) {
            self.metrics.emptied.inc();
            tracing::error!("Redis lost its data (restarted empty?): writing back the sign-outs, provider ends and refresh results this instance knows of; meanwhile signed-in requests here answer \"try again\"");
            self.write_back();
        }
        true
    }

    /// Writes back, in the background, what a Redis found empty lost and this instance knows
    /// (its replica, and the marks it made itself even if Redis never took them), each with the
    /// end it had (never over a value another instance wrote back meanwhile, except a lower
    /// newest generation: [`reseed::write_back_command`]), in pipelines of [`WRITE_BACK_BATCH`] commands, each
    /// sent again every second until Redis takes it; then sets the marker again and answers
    /// marks from Redis again.
    fn write_back(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.writing_back.store(false, std::sync::atomic::Ordering::SeqCst);
            return;
        };
        let now = self.clock.unix_millis();
        let mut commands: Vec<redis::Cmd> = Vec::new();
        let newest = self.key("newest", "");
        let mut set = |key: String, value: String, until: u64| {
            let px = until.saturating_sub(now).saturating_add(GC_SLACK_MS);
            commands.push(reseed::write_back_command(&key, &value, px, key.starts_with(&newest)));
        };
        for (session_id, until) in self.settled.signed_out_live(now) {
            set(self.key("ended", &session_id), format!("{until}|1"), until);
        }
        for (key, at, every, left) in self.provider_ends.provider_ends_live() {
            let until = now.saturating_add(ms(left));
            set(self.key("provider", &key), format!("{until}|{at}|{}", if every { "1" } else { "0" }), until);
        }
        for (key, value, until) in self.replica.live(self.clock.now()) {
            set(key, value, until);
        }
        let count = commands.len() as u64;
        commands.push(self.set_marker(false));
        let (link, metrics, writing_back) = (self.link.clone(), self.metrics.clone(), self.writing_back.clone());
        // Long enough for every flight's renewal (every third of a lease) to take its lease
        // again in the emptied Redis: no claim here misses a flight elsewhere.
        let settled = tokio::time::Instant::now() + SETTLE.max(self.options.lease / 3 + CALL_TIMEOUT);
        runtime.spawn(async move {
            for batch in commands.chunks(WRITE_BACK_BATCH) {
                let mut pipe = redis::pipe();
                for cmd in batch {
                    pipe.add_command(cmd.clone()).ignore();
                }
                loop {
                    if degraded(&metrics, "write_back", pipe.query_async::<()>(&mut link.get())).await.is_some() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            metrics.written_back.inc_by(count);
            tracing::warn!(count, "written back to Redis after it came back empty");
            // The other instances notice too (on their next request) and write back theirs,
            // their leases among them; until then a claim here could miss a flight there.
            tokio::time::sleep_until(settled).await;
            writing_back.store(false, std::sync::atomic::Ordering::SeqCst);
        });
    }

    /// Keeps the marker alive while this instance runs (`SET XX`: one that vanished stays
    /// gone, to be noticed).
    fn keep_marker(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (link, metrics, keep) = (self.link.clone(), self.metrics.clone(), self.set_marker(true));
        let mut stop = self.stop.subscribe();
        runtime.spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    () = tokio::time::sleep(MARKER_LIFE / 4) => {}
                }
                let _: Option<Option<String>> = degraded(&metrics, "marker", keep.query_async(&mut link.get())).await;
            }
        });
    }

    /// What a value kept for `left` from now is stamped with: the caller's now, its logical
    /// end, and how long Redis keeps it before collecting it.
    fn lifetime(&self, left: Duration) -> (u64, u64, u64) {
        let now = self.clock.unix_millis();
        (now, now.saturating_add(ms(left)), ms(left).saturating_add(GC_SLACK_MS))
    }

    /// Stores a sign-out mark (`{until}|1` at `key`) in the background, sent again until Redis
    /// takes it or it ended ([`RedisMemory::keep_sending`]).
    fn keep_mark(&self, key: String, until: u64) -> tokio::task::JoinHandle<bool> {
        let facts = self.key(reseed::FACTS, "");
        self.keep_sending("sign_out", until, move |now| {
            let mut script = scripts().mark.prepare_invoke();
            script.key(&key).key(&facts).arg(now).arg(until).arg(until - now + GC_SLACK_MS).arg("1");
            script
        })
    }

    /// Runs the script `invocation(now)` makes in the background, again every second until
    /// Redis takes it (`true`), the fact it stores ends at `until` or the memory stops: a
    /// sign-out or a provider's logout received while Redis is away reaches the other instances
    /// once it answers, whether or not the request that brought it is still there.
    fn keep_sending(
        &self,
        what: &'static str,
        until: u64,
        invocation: impl Fn(u64) -> redis::ScriptInvocation<'static> + Send + 'static,
    ) -> tokio::task::JoinHandle<bool> {
        let (link, metrics, clock) = (self.link.clone(), self.metrics.clone(), self.clock.clone());
        let mut stop = self.stop.subscribe();
        self.sending.spawn(async move {
            loop {
                let now = clock.unix_millis();
                if now >= until {
                    return false;
                }
                if degraded(&metrics, what, invocation(now).invoke_async::<i64>(&mut link.get())).await.is_some() {
                    return true;
                }
                metrics.mark_retries.inc();
                tokio::select! {
                    _ = stop.changed() => return false,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        })
    }
}

impl RefreshMemory for RedisMemory {
    fn claim<'a>(&'a self, key: TokenKey, session_id: &'a str, generation: u64) -> BoxFuture<'a, Claim> {
        Box::pin(self.claim_shared(key, session_id, generation))
    }

    fn land<'a>(&'a self, key: TokenKey, landing: Landing<'a>) -> BoxFuture<'a, Landed> {
        Box::pin(self.land_shared(key, landing))
    }

    fn abandon(&self, key: TokenKey) {
        // Waiters here wake empty; the lease is given up so another instance may fly at once.
        let Some(flight) = self.flights().remove(&key) else { return };
        let Some((owner, renewal)) = flight.lease else { return };
        renewal.abort();
        self.release(key, owner);
    }

    fn settle(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.sending.close();
            self.sending.wait().await;
            self.sending.reopen();
        })
    }

    fn remembered(&self, key: TokenKey) -> BoxFuture<'_, Option<Outcome>> {
        Box::pin(async move {
            if let Some(known) = self.settled.result(&key, self.clock.unix_millis()) {
                self.metrics.local_answers.inc();
                return Some(known);
            }
            let mut conn = self.link.get();
            let mut read = redis::cmd("GET");
            read.arg(self.sealer.result_key(&key));
            let value = self.call("read", read.query_async::<Option<String>>(&mut conn)).await.flatten()?;
            self.outcome(&key, &value)
        })
    }

    fn shorten(&self, key: TokenKey, left: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let now = self.clock.unix_millis();
            let until = now.saturating_add(ms(left));
            self.settled.shorten(&key, until);
            let mut conn = self.link.get();
            let mut script = scripts().shorten.prepare_invoke();
            script.key(self.sealer.result_key(&key)).arg(now).arg(until);
            let _: Option<i64> = self.call("shorten", script.invoke_async(&mut conn)).await;
        })
    }

    fn marks<'a>(&'a self, session_id: &'a str, _created_at: u64) -> BoxFuture<'a, Marks> {
        Box::pin(async move {
            let now = self.clock.unix_millis();
            if self.settled.signed_out(session_id, now) {
                self.metrics.local_answers.inc();
                return Marks { signed_out: true, newest: None, uncarried: None, unknown: false };
            }
            let unknown = Marks { signed_out: false, newest: Some(u64::MAX), uncarried: None, unknown: true };
            if self.writing_back.load(std::sync::atomic::Ordering::SeqCst) {
                return unknown;
            }
            let mut conn = self.link.get();
            let mut read = redis::cmd("MGET");
            read.arg(self.key("ended", session_id))
                .arg(self.key("newest", session_id))
                .arg(self.key("carry", session_id))
                .arg(self.marker());
            let values: Option<Vec<Option<String>>> = self.call("marks", read.query_async(&mut conn)).await;
            if let Some(values) = &values {
                if self.emptied(values.get(3).and_then(Option::as_deref)).await {
                    return unknown;
                }
            }
            // Unknown: serve nobody (a signed-out cookie must not open for want of its mark),
            // refuse nobody, write no cookie (it could carry a retired refresh token: "newer
            // than anything").
            let Some(values) = values else {
                self.metrics.try_again.inc();
                return unknown;
            };
            // A value alive now, whole (`{until}|{rest}`); `value` gives its rest.
            let whole = |i: usize| values.get(i).and_then(Option::as_deref).filter(|v| alive(v, now).is_some());
            let value = |i: usize| whole(i).and_then(|v| alive(v, now));
            if let Some(ended) = whole(0).and_then(until) {
                self.settled.keep_signed_out(session_id, ended, now);
            }
            Marks {
                signed_out: value(0).is_some(),
                newest: value(1).and_then(|n| n.parse().ok()),
                uncarried: value(2).and_then(|c| c.split_once('|')).and_then(|(generation, _)| generation.parse().ok()),
                unknown: false,
            }
        })
    }

    fn carried<'a>(&'a self, session_id: &'a str, generation: u64, grace: Duration) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let mut conn = self.link.get();
            let mut script = scripts().carried.prepare_invoke();
            script
                .key(self.key("carry", session_id))
                .arg(self.clock.unix_millis())
                .arg(generation)
                .arg(ms(grace))
                .arg(self.key("result", ""));
            // Not answered: the result stays for the hand-off, and the next request tries again.
            let _: Option<i64> = self.call("carried", script.invoke_async(&mut conn)).await;
        })
    }

    fn sign_out<'a>(&'a self, session_id: &'a str, _created_at: u64, left: Duration) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let (now, until, _) = self.lifetime(left);
            // Here at once, whatever Redis answers: this instance refuses the session from now.
            self.settled.keep_signed_out(session_id, until, now);
            // Answered within a call's time when Redis does (the other instances refuse the
            // session from then on); otherwise the mark goes on being sent without this request.
            let stored = self.keep_mark(self.key("ended", session_id), until);
            let _ = tokio::time::timeout(CALL_TIMEOUT + Duration::from_millis(100), stored).await;
        })
    }

    fn end_at_provider<'a>(&'a self, key: &'a str, at: u64, every: bool, left: Duration) -> BoxFuture<'a, Result<(), NotKept>> {
        Box::pin(async move {
            // Here at once, whatever Redis answers: this instance refuses those sessions from now.
            self.provider_ends.end_at_provider_now(key, at, every, left);
            let (_, until, _) = self.lifetime(left);
            let (key, facts) = (self.key("provider", key), self.key(reseed::FACTS, ""));
            // Not taken within a call's time: an error to the provider (it may send it again),
            // and sent on meanwhile, so that the other instances refuse those sessions once
            // Redis answers even if the provider never does.
            let stored = self.keep_sending("provider_end", until, move |now| {
                let mut script = scripts().provider_end.prepare_invoke();
                script
                    .key(&key)
                    .key(&facts)
                    .arg(now)
                    .arg(until)
                    .arg(until - now + GC_SLACK_MS)
                    .arg(at)
                    .arg(if every { "1" } else { "0" });
                script
            });
            match tokio::time::timeout(CALL_TIMEOUT + Duration::from_millis(100), stored).await {
                Ok(Ok(true)) => Ok(()),
                _ => Err(NotKept),
            }
        })
    }

    fn ended_at_provider<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Option<u64>> {
        Box::pin(async move {
            if keys.is_empty() {
                return None;
            }
            let here = self.provider_ends.ended_at_provider_now(keys);
            let now = self.clock.unix_millis();
            let mut conn = self.link.get();
            let mut mget = redis::cmd("MGET");
            for key in keys {
                mget.arg(self.key("provider", key));
            }
            let Some(values) = self.call::<Vec<Option<String>>>("provider_marks", mget.query_async(&mut conn)).await else {
                return here;
            };
            values
                .iter()
                .flatten()
                .filter_map(|v| alive(v, now))
                .filter_map(|rest| {
                    let (at, every) = rest.split_once('|')?;
                    Some(if every == "1" { u64::MAX } else { at.parse().ok()? })
                })
                .chain(here)
                .max()
        })
    }

    fn first_use<'a>(&'a self, jti: &'a str, left: Duration) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let (now, until, gc_ms) = self.lifetime(left);
            let mut conn = self.link.get();
            let mut script = scripts().first_use.prepare_invoke();
            script.key(self.key("jti", jti)).arg(now).arg(until).arg(gc_ms);
            let first: Option<i64> = self.call("first_use", script.invoke_async(&mut conn)).await;
            // Redis down: accepted (a replay can only end sessions again).
            first.is_none_or(|n| n == 1)
        })
    }

    fn forget_use<'a>(&'a self, jti: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let mut conn = self.link.get();
            let mut forget = redis::cmd("DEL");
            forget.arg(self.key("jti", jti));
            let _: Option<i64> = self.call("forget_use", forget.query_async(&mut conn)).await;
        })
    }

    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.metrics.register(registry);
    }
}
