//! What the refresh machinery remembers between requests, behind a trait: flights in the air,
//! the results they landed (keyed by the SHA-256 of the refresh token each consumed), the
//! newest generation issued per session, the sessions that signed out, the sessions an OpenID
//! provider ended (back-channel logout, by the provider's `sid` or `sub`) and the logout
//! tokens already used. [`InProcess`] keeps
//! it in this process's memory (one lock, bounded maps); a store shared by several instances
//! implements [`RefreshMemory`] and the refresh logic ([`crate::Refresher`]) does not change.
//!
//! Every method is one step a shared store can do atomically (one lock, one script): the
//! compound decisions — "join the flight, or take the remembered result, or fly" and "land:
//! unless signed out meanwhile, number the generation, remember it, wake the waiters" — are
//! single calls. The refresher's own sequences are safe in any interleaving by their order:
//! `end` marks the sign-out before it reads the newest result (a landing after the mark becomes
//! a refusal), and `carried` only ever shortens the result of the generation it names.
//!
//! A result holds the new tokens themselves (the key is only the consumed token's hash): a
//! store outside this process must keep them encrypted and expire them. A shared store
//! (`RedisMemory`, feature `redis`) also has flights whose owner died (a lease that ends) and
//! calls that fail: it answers a claim it cannot make with `Remembered(Unavailable)` — "try
//! again", never a flight that could present a token another instance rotated.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::client::UpstreamError;
use crate::clock::Clock;
use crate::grants::BoxFuture;
use crate::session::{ProviderSession, Token, TokenSet};

/// Expiries never reach further than this (a year): durations come from configuration, and a
/// library user's "forever" must neither overflow nor keep an entry for good.
const LONGEST: Duration = Duration::from_secs(366 * 24 * 3600);

/// `now + d`, never overflowing.
pub(crate) fn after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d.min(LONGEST)).unwrap_or(now)
}

/// The SHA-256 of a refresh token: how a consumed token is looked up (the token itself is never
/// a key); and a second, domain-separated hash of it, from which a shared store derives the
/// key that seals the result (so a dump of the store, which holds only the first, opens
/// nothing).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenKey {
    lookup: [u8; 32],
    seal: [u8; 32],
}

impl TokenKey {
    /// The key of `token`.
    pub fn of(token: &Token) -> Self {
        let lookup = Sha256::digest(token.expose().as_bytes()).into();
        let mut seal = Sha256::new();
        seal.update(b"tokenless/v1/refresh-result-key\0");
        seal.update(token.expose().as_bytes());
        TokenKey { lookup, seal: seal.finalize().into() }
    }

    /// The hash's bytes (a shared store's key).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.lookup
    }

    /// The material a shared store derives the result's sealing key from (with a secret of
    /// its own); never stored.
    pub fn seal_material(&self) -> &[u8; 32] {
        &self.seal
    }
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenKey({}…)", hex::encode(&self.lookup[..4]))
    }
}

/// What a refresh produced: the next tokens and the generation they make for their session.
#[derive(Debug, Clone)]
pub struct Refreshed {
    /// The tokens the upstream answered with.
    pub tokens: TokenSet,
    /// Newer than every generation issued for the session before it.
    pub generation: u64,
}

/// How a flight ended, as its waiters and later requests with the same refresh token see it.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// New tokens.
    Refreshed(Arc<Refreshed>),
    /// The upstream refused the refresh token (or the session signed out meanwhile): the
    /// refusal code.
    Refused(String),
    /// The upstream (or a shared memory) could not be asked; never remembered (the next
    /// request tries again).
    Unavailable(String),
}

/// Waits for a flight's outcome; `None` when the flight ended without one (its task died).
pub type Wait = BoxFuture<'static, Option<Outcome>>;

/// The answer to "I need this refresh token refreshed".
pub enum Claim {
    /// Nothing is in the air or remembered for it: the caller flies, and must
    /// [`RefreshMemory::land`] (or [`RefreshMemory::abandon`]). The wait ends when it lands.
    Fly(Wait),
    /// Another request is refreshing it: wait for that.
    Join(Wait),
    /// It landed already: a refresh newer than the caller's generation, or a refusal.
    Remembered(Outcome),
    /// The session signed out.
    SignedOut,
}

impl std::fmt::Debug for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Claim::Fly(_) => f.write_str("Fly"),
            Claim::Join(_) => f.write_str("Join"),
            Claim::Remembered(outcome) => f.debug_tuple("Remembered").field(outcome).finish(),
            Claim::SignedOut => f.write_str("SignedOut"),
        }
    }
}

/// A flight's end, handed to [`RefreshMemory::land`].
#[derive(Debug)]
pub struct Landing<'a> {
    /// The session whose cookie started the flight.
    pub session_id: &'a str,
    /// That cookie's generation.
    pub generation: u64,
    /// When the session began (Unix seconds).
    pub created_at: u64,
    /// What the upstream answered.
    pub result: Result<TokenSet, UpstreamError>,
    /// How long a refreshed result is kept before any response has carried it.
    pub handoff: Duration,
    /// How long a refusal is kept (copies of the old cookie in the air get it without asking).
    pub grace: Duration,
}

/// What [`RefreshMemory::land`] decided.
#[derive(Debug)]
pub struct Landed {
    /// What the waiters got.
    pub outcome: Outcome,
    /// Tokens the upstream issued for a session that signed out while the flight was in the
    /// air: the caller revokes them.
    pub revoke: Option<TokenSet>,
}

/// What is marked for a session id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Marks {
    /// It signed out (its cookies are refused until its end).
    pub signed_out: bool,
    /// The newest generation issued for it, if one was issued by a refresh still remembered.
    pub newest: Option<u64>,
    /// A generation whose result no request has carried back yet: the first request that
    /// arrives with a cookie of that generation calls [`RefreshMemory::carried`].
    pub uncarried: Option<u64>,
    /// The memory could not be asked (a shared store that does not answer): nothing above is
    /// known. The session is neither refused nor served (a signed-out cookie must not open
    /// because the mark that refuses it cannot be read): "try again, still signed in".
    pub unknown: bool,
}

/// A mark the memory could not keep (a shared store that does not answer): the caller says
/// so instead of answering as if it had been kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the refresh memory could not keep the mark (its store does not answer); try again")]
pub struct NotKept;

/// Where the refresh machinery keeps what outlives a request. Implementations must make each
/// method atomic with respect to the others (see the module's note).
pub trait RefreshMemory: Send + Sync + 'static {
    /// One atomic decision for a request that needs `key` refreshed, in this order: the session
    /// signed out → [`Claim::SignedOut`]; a flight is in the air → [`Claim::Join`]; a refusal
    /// or a refresh newer than `generation` is remembered → [`Claim::Remembered`]; else the
    /// flight is the caller's → [`Claim::Fly`].
    fn claim<'a>(&'a self, key: TokenKey, session_id: &'a str, generation: u64) -> BoxFuture<'a, Claim>;

    /// One atomic landing: the flight is removed; a refresh for a session that signed out
    /// meanwhile becomes a refusal (its tokens handed back to revoke); a refresh gets the
    /// generation after both the cookie's and the newest issued, which becomes the newest
    /// (kept for the hand-off); a refusal is kept for the grace period; an outage is not kept.
    /// Every waiter wakes with the outcome.
    fn land<'a>(&'a self, key: TokenKey, landing: Landing<'a>) -> BoxFuture<'a, Landed>;

    /// The flight for `key` ended without landing (its task died): waiters wake with `None`,
    /// and the next request flies again. Called from a destructor, so it cannot wait.
    fn abandon(&self, key: TokenKey);

    /// The outcome remembered for `key`, if any.
    fn remembered(&self, key: TokenKey) -> BoxFuture<'_, Option<Outcome>>;

    /// Keeps what is remembered for `key` at most `left` longer (never longer than it was).
    fn shorten(&self, key: TokenKey, left: Duration) -> BoxFuture<'_, ()>;

    /// What is marked for `session_id`, a session that began at `created_at` (Unix seconds): a
    /// memory that had to drop sign-out marks to stay within its bounds answers "signed out" for
    /// every session that began at or before the latest one it dropped (fail closed: more
    /// people signed out than asked, never one brought back).
    fn marks<'a>(&'a self, session_id: &'a str, created_at: u64) -> BoxFuture<'a, Marks>;

    /// Marks `session_id` (begun at `created_at`) signed out for `left` (cookies refused,
    /// flights landing as refusals).
    fn sign_out<'a>(&'a self, session_id: &'a str, created_at: u64, left: Duration) -> BoxFuture<'a, ()>;

    /// A request arrived carrying `generation` of `session_id`: if that generation's result
    /// was still uncarried ([`Marks::uncarried`]), it is kept only `grace` longer (copies of
    /// the older cookie still in the air). Before that, the result is kept for the whole
    /// hand-off: a response that set the new cookie may never have reached the browser.
    fn carried<'a>(&'a self, session_id: &'a str, generation: u64, grace: Duration) -> BoxFuture<'a, ()>;

    /// Ends, at `at` (Unix seconds), the sessions their OpenID provider knows by `key` (see
    /// [`provider_keys`]): every one of them when `every` (a `sid`: the provider never gives it
    /// to another sign-in), else those that began at or before `at` (a `sub`: the person may
    /// sign in again). Remembered for `left` (the sessions' absolute limit: no session that
    /// began before `at` outlives it). [`NotKept`] when it could not be stored where every
    /// instance sees it (it is still kept in this process).
    fn end_at_provider<'a>(&'a self, key: &'a str, at: u64, every: bool, left: Duration) -> BoxFuture<'a, Result<(), NotKept>>;

    /// When sessions known by any of `keys` were ended at their provider: a session of those
    /// keys that began at or before it is over (`u64::MAX` for a key ended with `every`).
    fn ended_at_provider<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Option<u64>>;

    /// Records a logout token's `jti` for `left`: `false` when it was used already (a replay).
    fn first_use<'a>(&'a self, jti: &'a str, left: Duration) -> BoxFuture<'a, bool>;

    /// Forgets a `jti` recorded by [`RefreshMemory::first_use`] whose logout could not be done:
    /// the provider may send it again.
    fn forget_use<'a>(&'a self, jti: &'a str) -> BoxFuture<'a, ()>;

    /// How many results are remembered, when the store can tell cheaply (a gauge).
    fn remembered_count(&self) -> Option<usize> {
        None
    }

    /// Adds the store's own metrics (a shared store: leases, waits, calls that failed) to the
    /// refresher's, under `tokenless_refresh_shared_`.
    fn register_metrics(&self, _registry: &mut prometheus_client::registry::Registry) {}

    /// Waits until what the store still has to write in the background is written (a shared
    /// store: sign-outs and provider logouts it did not take at once, sent again until it
    /// does). [`crate::SessionManager::drain`] waits for it, bounded, before a process stops.
    fn settle(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// The keys under which back-channel logout finds a session of `provider`: its issuer's `sid`
/// and its `sub` — or, when its ID token had no `sid`, its `sub` twice: as everyone's, and as a
/// session the provider cannot name (which a logout naming a `sid` of that person reaches). An
/// issuer is a URL (no spaces), so a key names one issuer's one value.
pub fn provider_keys(provider: &ProviderSession) -> Vec<String> {
    let sub = provider_key(&provider.issuer, ProviderKeyKind::Sub, &provider.subject);
    match &provider.session_id {
        Some(sid) => vec![provider_key(&provider.issuer, ProviderKeyKind::Sid, sid), sub],
        None => vec![sub, provider_key(&provider.issuer, ProviderKeyKind::SubWithoutSid, &provider.subject)],
    }
}

/// Which of the provider's names a key is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKeyKind {
    /// The provider's session id.
    Sid,
    /// The person's subject: all their sessions.
    Sub,
    /// The person's sessions whose ID token had no `sid`.
    SubWithoutSid,
}

/// The key of `issuer`'s `value` of `kind` (see [`provider_keys`]).
pub fn provider_key(issuer: &str, kind: ProviderKeyKind, value: &str) -> String {
    let kind = match kind {
        ProviderKeyKind::Sid => "sid",
        ProviderKeyKind::Sub => "sub",
        ProviderKeyKind::SubWithoutSid => "sub-nosid",
    };
    format!("{kind} {issuer} {value}")
}

/// A map whose entries expire and whose size is capped, the oldest going first.
#[derive(Debug)]
pub(crate) struct Bounded<K, V> {
    entries: HashMap<K, (V, Instant, u64)>,
    order: VecDeque<(K, u64)>,
    capacity: usize,
    next_seq: u64,
}

impl<K: Hash + Eq + Clone, V> Bounded<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Bounded { entries: HashMap::new(), order: VecDeque::new(), capacity: capacity.max(1), next_seq: 0 }
    }

    pub(crate) fn get<Q>(&self, key: &Q, now: Instant) -> Option<&V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.get(key).filter(|(_, until, _)| now < *until).map(|(v, _, _)| v)
    }

    /// Inserts (or replaces) `key`; returns the values dropped before their expiry to stay
    /// within capacity.
    pub(crate) fn insert(&mut self, key: K, value: V, until: Instant, now: Instant) -> Vec<V> {
        self.next_seq += 1;
        self.entries.insert(key.clone(), (value, until, self.next_seq));
        self.order.push_back((key, self.next_seq));
        let dropped = self.trim(now);
        // Replaced entries leave stale positions behind a long-lived front entry: rebuild the
        // order from the entries when those outnumber them (amortized constant per insert).
        if self.order.len() > 2 * self.capacity.max(self.entries.len()) + 16 {
            let mut live: Vec<(K, u64)> =
                self.entries.iter().map(|(k, (_, _, seq))| (k.clone(), *seq)).collect();
            live.sort_by_key(|(_, seq)| *seq);
            self.order = live.into();
        }
        dropped
    }

    /// Drops from the front: entries replaced since (stale positions), expired ones, and the
    /// oldest while over capacity — those returned.
    fn trim(&mut self, now: Instant) -> Vec<V> {
        let mut dropped = Vec::new();
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
                if let Some((value, until, _)) = self.entries.remove(&k) {
                    if now < until {
                        dropped.push(value);
                    }
                }
            }
        }
        dropped
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

    #[cfg(feature = "redis")]
    /// Every entry alive at `now`, with how long it is kept yet.
    pub(crate) fn live(&self, now: Instant) -> impl Iterator<Item = (&K, &V, Duration)> {
        self.entries
            .iter()
            .filter(move |(_, (_, until, _))| now < *until)
            .map(move |(key, (value, until, _))| (key, value, until.saturating_duration_since(now)))
    }
}

struct Maps {
    flights: HashMap<TokenKey, watch::Sender<Option<Outcome>>>,
    results: Bounded<TokenKey, Outcome>,
    /// The newest generation issued per session id, and the key of the result that issued it
    /// while no request has carried it back.
    newest: Bounded<String, (u64, Option<TokenKey>)>,
    /// Session ids that signed out, with when each session began.
    ended: Bounded<String, u64>,
    /// The latest beginning of a session whose sign-out mark was dropped to stay within
    /// capacity before its end: every session that began at or before it counts as signed out.
    ended_floor: Option<u64>,
    /// Provider keys ([`provider_keys`]) with the moment their sessions were ended, and whether
    /// every session of the key ended (not only those begun by then).
    provider_ended: Bounded<String, (u64, bool)>,
    /// The latest moment of a provider key dropped to stay within capacity before its expiry:
    /// every provider session that began at or before it counts as ended (more people signed
    /// out than asked, never one brought back).
    provider_floor: Option<u64>,
    /// Logout tokens' `jti`s already used.
    used_jtis: Bounded<String, ()>,
}

/// The refresh memory of one process: bounded maps under one lock (never held across an
/// await), expiries on the injected clock. Every answer is ready at once.
pub struct InProcess {
    clock: Arc<dyn Clock>,
    maps: Mutex<Maps>,
    /// A mark dropped to stay within capacity becomes a floor (fail closed); not in a copy of
    /// what a shared store holds ([`InProcess::copy`]), where the store has them all.
    floors: bool,
}

impl std::fmt::Debug for InProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcess").finish_non_exhaustive()
    }
}

fn waiting(mut receiver: watch::Receiver<Option<Outcome>>) -> Wait {
    Box::pin(async move { receiver.wait_for(Option::is_some).await.ok().and_then(|outcome| outcome.clone()) })
}

impl InProcess {
    /// At most `capacity` remembered results and newest-generation marks, and `ended_capacity`
    /// each of sign-out marks, provider keys ended by back-channel logout and used logout
    /// tokens, the oldest dropped first. A sign-out mark dropped early turns into "every
    /// session that began no later than it is signed out", a provider key dropped early into
    /// "every provider session that began before it is over"; a used logout token dropped
    /// early could be replayed, which ends sessions again (and a person's newer ones): none
    /// brings an ended session back.
    pub fn new(capacity: usize, ended_capacity: usize, clock: Arc<dyn Clock>) -> Self {
        InProcess {
            clock,
            maps: Mutex::new(Maps {
                flights: HashMap::new(),
                results: Bounded::new(capacity),
                newest: Bounded::new(capacity),
                ended: Bounded::new(ended_capacity),
                ended_floor: None,
                provider_ended: Bounded::new(ended_capacity),
                provider_floor: None,
                used_jtis: Bounded::new(ended_capacity),
            }),
            floors: true,
        }
    }

    #[cfg(feature = "redis")]
    /// A bounded copy of marks a shared store holds in full (a Redis memory's own copy of the
    /// provider ends it received): a mark dropped to make room is only forgotten here.
    pub(crate) fn copy(capacity: usize, clock: Arc<dyn Clock>) -> Self {
        InProcess { floors: false, ..Self::new(1, capacity, clock) }
    }

    fn maps(&self) -> MutexGuard<'_, Maps> {
        // Never held across an await; a panic elsewhere cannot leave the maps half-updated in a
        // way that matters (worst case: a result forgotten, and the upstream asked again).
        self.maps.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn claim_now(&self, key: TokenKey, session_id: &str, generation: u64) -> Claim {
        let now = self.clock.now();
        let mut maps = self.maps();
        // (A session under the floor is refused before it gets here: `marks` says so.)
        if maps.ended.get(session_id, now).is_some() {
            return Claim::SignedOut;
        }
        if let Some(sender) = maps.flights.get(&key) {
            return Claim::Join(waiting(sender.subscribe()));
        }
        match maps.results.get(&key, now) {
            Some(Outcome::Refreshed(r)) if r.generation > generation => {
                Claim::Remembered(Outcome::Refreshed(r.clone()))
            }
            Some(Outcome::Refused(code)) => Claim::Remembered(Outcome::Refused(code.clone())),
            _ => {
                let (sender, receiver) = watch::channel(None);
                maps.flights.insert(key, sender);
                Claim::Fly(waiting(receiver))
            }
        }
    }

    fn land_now(&self, key: TokenKey, landing: Landing<'_>) -> Landed {
        let now = self.clock.now();
        let mut maps = self.maps();
        let sender = maps.flights.remove(&key);
        let signed_out = maps.ended.get(landing.session_id, now).is_some()
            || maps.ended_floor.is_some_and(|floor| landing.created_at <= floor);
        let (outcome, revoke) = match landing.result {
            Ok(tokens) if signed_out => (Outcome::Refused(crate::refresh::SIGNED_OUT.into()), Some(tokens)),
            Ok(tokens) => {
                let newest = maps.newest.get(landing.session_id, now).map_or(0, |(generation, _)| *generation);
                let generation = landing.generation.max(newest) + 1;
                maps.newest.insert(landing.session_id.to_string(), (generation, Some(key)), after(now, landing.handoff), now);
                (Outcome::Refreshed(Arc::new(Refreshed { tokens, generation })), None)
            }
            Err(UpstreamError::Refused { code }) => (Outcome::Refused(code), None),
            Err(UpstreamError::Unavailable(detail)) => (Outcome::Unavailable(detail), None),
            Err(other) => (Outcome::Unavailable(other.to_string()), None),
        };
        match &outcome {
            Outcome::Refreshed(_) => drop(maps.results.insert(key, outcome.clone(), after(now, landing.handoff), now)),
            Outcome::Refused(_) => drop(maps.results.insert(key, outcome.clone(), after(now, landing.grace), now)),
            Outcome::Unavailable(_) => {}
        }
        // Under the lock: a request claiming right after sees the result, never an empty gap.
        // No receiver left (every waiter gave up) is fine: the result is remembered.
        if let Some(sender) = sender {
            let _ = sender.send(Some(outcome.clone()));
        }
        Landed { outcome, revoke }
    }
}

impl RefreshMemory for InProcess {
    fn claim<'a>(&'a self, key: TokenKey, session_id: &'a str, generation: u64) -> BoxFuture<'a, Claim> {
        let claim = self.claim_now(key, session_id, generation);
        Box::pin(std::future::ready(claim))
    }

    fn land<'a>(&'a self, key: TokenKey, landing: Landing<'a>) -> BoxFuture<'a, Landed> {
        let landed = self.land_now(key, landing);
        Box::pin(std::future::ready(landed))
    }

    fn abandon(&self, key: TokenKey) {
        // Dropping the sender wakes every waiter with "no outcome".
        self.maps().flights.remove(&key);
    }

    fn remembered(&self, key: TokenKey) -> BoxFuture<'_, Option<Outcome>> {
        let outcome = self.maps().results.get(&key, self.clock.now()).cloned();
        Box::pin(std::future::ready(outcome))
    }

    fn shorten(&self, key: TokenKey, left: Duration) -> BoxFuture<'_, ()> {
        let until = after(self.clock.now(), left);
        self.maps().results.shorten(&key, until);
        Box::pin(std::future::ready(()))
    }

    fn marks<'a>(&'a self, session_id: &'a str, created_at: u64) -> BoxFuture<'a, Marks> {
        let now = self.clock.now();
        let maps = self.maps();
        let newest = maps.newest.get(session_id, now);
        let marks = Marks {
            signed_out: maps.ended.get(session_id, now).is_some()
                || maps.ended_floor.is_some_and(|floor| created_at <= floor),
            newest: newest.map(|(generation, _)| *generation),
            uncarried: newest.and_then(|(generation, key)| key.map(|_| *generation)),
            unknown: false,
        };
        Box::pin(std::future::ready(marks))
    }

    fn sign_out<'a>(&'a self, session_id: &'a str, created_at: u64, left: Duration) -> BoxFuture<'a, ()> {
        self.sign_out_now(session_id, created_at, left);
        Box::pin(std::future::ready(()))
    }

    fn carried<'a>(&'a self, session_id: &'a str, generation: u64, grace: Duration) -> BoxFuture<'a, ()> {
        self.carried_now(session_id, generation, grace);
        Box::pin(std::future::ready(()))
    }

    fn end_at_provider<'a>(&'a self, key: &'a str, at: u64, every: bool, left: Duration) -> BoxFuture<'a, Result<(), NotKept>> {
        self.end_at_provider_now(key, at, every, left);
        Box::pin(std::future::ready(Ok(())))
    }

    fn ended_at_provider<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Option<u64>> {
        let ended = self.ended_at_provider_now(keys);
        Box::pin(std::future::ready(ended))
    }

    fn first_use<'a>(&'a self, jti: &'a str, left: Duration) -> BoxFuture<'a, bool> {
        let now = self.clock.now();
        let mut maps = self.maps();
        let first = maps.used_jtis.get(jti, now).is_none();
        if first {
            let dropped = maps.used_jtis.insert(jti.to_string(), (), after(now, left), now);
            if !dropped.is_empty() {
                tracing::warn!("the used-logout-token memory is full: the oldest is forgotten early");
            }
        }
        Box::pin(std::future::ready(first))
    }

    fn forget_use<'a>(&'a self, jti: &'a str) -> BoxFuture<'a, ()> {
        self.maps().used_jtis.shorten(&jti.to_string(), self.clock.now());
        Box::pin(std::future::ready(()))
    }

    fn remembered_count(&self) -> Option<usize> {
        Some(self.maps().results.len())
    }
}

impl InProcess {
    /// [`RefreshMemory::sign_out`], at once.
    pub(crate) fn sign_out_now(&self, session_id: &str, created_at: u64, left: Duration) {
        let now = self.clock.now();
        let mut maps = self.maps();
        let dropped = maps.ended.insert(session_id.to_string(), created_at, after(now, left), now);
        if let Some(latest) = dropped.into_iter().max().filter(|_| self.floors) {
            tracing::error!(
                "the sign-out memory is full (session.refresh_memory): every session that began before the oldest sign-out dropped is signed out too"
            );
            maps.ended_floor = Some(maps.ended_floor.map_or(latest, |floor| floor.max(latest)));
        }
    }

    /// [`RefreshMemory::carried`], at once: the key of the result it shortened, if any.
    pub(crate) fn carried_now(&self, session_id: &str, generation: u64, grace: Duration) -> Option<TokenKey> {
        let now = self.clock.now();
        let mut maps = self.maps();
        let key = match maps.newest.entries.get_mut(session_id) {
            Some(((newest, key), until, _)) if *newest == generation && now < *until => key.take(),
            _ => None,
        };
        if let Some(key) = key {
            maps.results.shorten(&key, after(now, grace));
        }
        key
    }

    /// Kept in this process (also the copy a shared store keeps of what it could not store).
    pub(crate) fn end_at_provider_now(&self, key: &str, at: u64, every: bool, left: Duration) {
        let now = self.clock.now();
        let mut maps = self.maps();
        let (at, every) = match maps.provider_ended.get(key, now) {
            Some(&(earlier, was_every)) => (at.max(earlier), every || was_every),
            None => (at, every),
        };
        let dropped = maps.provider_ended.insert(key.to_string(), (at, every), after(now, left), now);
        if let Some(latest) = dropped.into_iter().map(|(at, _)| at).max().filter(|_| self.floors) {
            tracing::warn!("the back-channel logout memory is full: every provider session that began before the oldest one dropped is ended");
            maps.provider_floor = Some(maps.provider_floor.map_or(latest, |floor| floor.max(latest)));
        }
    }

    #[cfg(feature = "redis")]
    /// Every provider end kept here and still alive: its key, moment, whether it ended every
    /// session of the key, and how long it is kept yet.
    pub(crate) fn provider_ends_live(&self) -> Vec<(String, u64, bool, Duration)> {
        let maps = self.maps();
        maps.provider_ended.live(self.clock.now()).map(|(key, &(at, every), left)| (key.clone(), at, every, left)).collect()
    }

    /// A floor read back from a store (the provider's, or the sign-outs'): the later one holds.
    #[cfg(feature = "sqlite")]
    pub(crate) fn restore_floor(&self, provider: bool, floor: u64) {
        let mut maps = self.maps();
        let kept = if provider { &mut maps.provider_floor } else { &mut maps.ended_floor };
        *kept = Some(kept.map_or(floor, |f| f.max(floor)));
    }

    /// The moment and the `every` of a provider key's end kept here.
    #[cfg(feature = "sqlite")]
    pub(crate) fn provider_end(&self, key: &str) -> Option<(u64, bool)> {
        self.maps().provider_ended.get(key, self.clock.now()).copied()
    }

    /// A logout token's `jti` read back from a store, used for `left`.
    #[cfg(feature = "sqlite")]
    pub(crate) fn use_now(&self, jti: &str, left: Duration) {
        let now = self.clock.now();
        drop(self.maps().used_jtis.insert(jti.to_string(), (), after(now, left), now));
    }

    /// A session's newest generation read back from a store, for `left` (which result issued
    /// it is not known: it is kept its whole hand-off).
    #[cfg(feature = "sqlite")]
    pub(crate) fn restore_newest(&self, session_id: &str, generation: u64, left: Duration) {
        let now = self.clock.now();
        let mut maps = self.maps();
        let newest = maps.newest.get(session_id, now).map_or(0, |(g, _)| *g);
        if generation > newest {
            drop(maps.newest.insert(session_id.to_string(), (generation, None), after(now, left), now));
        }
    }

    /// A result read back from a store, for `left`.
    #[cfg(feature = "sqlite")]
    pub(crate) fn remember(&self, key: TokenKey, outcome: Outcome, left: Duration) {
        let now = self.clock.now();
        let mut maps = self.maps();
        if maps.results.get(&key, now).is_none() {
            drop(maps.results.insert(key, outcome, after(now, left), now));
        }
    }

    /// What this process keeps of provider ends (see [`RefreshMemory::ended_at_provider`]).
    pub(crate) fn ended_at_provider_now(&self, keys: &[String]) -> Option<u64> {
        let now = self.clock.now();
        let maps = self.maps();
        let marks = keys.iter().filter_map(|key| maps.provider_ended.get(key.as_str(), now));
        marks.map(|&(at, every)| if every { u64::MAX } else { at }).chain(maps.provider_floor).max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    /// Every future of [`InProcess`] is ready on its first poll.
    fn now<T>(future: BoxFuture<'_, T>) -> T {
        let mut future = future;
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match future.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(value) => value,
            std::task::Poll::Pending => panic!("an in-process answer was not ready"),
        }
    }

    fn now_ok(future: BoxFuture<'_, Result<(), NotKept>>) {
        now(future).expect("kept in this process");
    }

    fn tokens(refresh: &str) -> TokenSet {
        TokenSet {
            access_token: Token::new(format!("access-{refresh}")),
            refresh_token: Some(Token::new(refresh)),
            access_expires_at: 1_000,
            refresh_expires_at: None,
            access_issued_at: 700,
        }
    }

    fn landing(session_id: &str, generation: u64, result: Result<TokenSet, UpstreamError>) -> Landing<'_> {
        Landing {
            session_id,
            generation,
            created_at: 0,
            result,
            handoff: Duration::from_secs(600),
            grace: Duration::from_secs(60),
        }
    }

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
    fn durations_from_configuration_never_overflow() {
        let now = Instant::now();
        assert!(after(now, Duration::MAX) > now);
        assert_eq!(after(now, Duration::from_secs(5)), now + Duration::from_secs(5));
    }

    #[test]
    fn keys_are_hashes_not_tokens() {
        let k = TokenKey::of(&Token::new("refresh-token-value"));
        assert_ne!(&k.as_bytes()[..], b"refresh-token-value".as_slice());
        assert_eq!(k, TokenKey::of(&Token::new("refresh-token-value")));
        assert!(!format!("{k:?}").contains("refresh"), "{k:?}");
    }

    #[tokio::test]
    async fn one_flight_then_the_remembered_result() {
        let clock = ManualClock::new();
        let memory = InProcess::new(10, 10, Arc::new(clock.clone()));
        let key = TokenKey::of(&Token::new("r1"));
        let Claim::Fly(mine) = now(memory.claim(key, "s", 1)) else { panic!("the first claim flies") };
        let Claim::Join(joined) = now(memory.claim(key, "s", 1)) else { panic!("the second joins") };
        let landed = now(memory.land(key, landing("s", 1, Ok(tokens("r2")))));
        assert!(landed.revoke.is_none());
        for wait in [mine, joined] {
            let Some(Outcome::Refreshed(r)) = wait.await else { panic!("both wake with the result") };
            assert_eq!(r.generation, 2);
        }
        assert_eq!(now(memory.marks("s", 0)), Marks { signed_out: false, newest: Some(2), uncarried: Some(2), unknown: false });
        // A late request with the old cookie gets the result without a flight...
        assert!(matches!(now(memory.claim(key, "s", 1)), Claim::Remembered(Outcome::Refreshed(_))));
        // ...but a cookie as new as the result (an upstream that does not rotate) flies again.
        assert!(matches!(now(memory.claim(key, "s", 2)), Claim::Fly(_)));
        // That second landing is numbered after the newest, whatever the cookie said.
        let landed = now(memory.land(key, landing("s", 1, Ok(tokens("r2")))));
        assert!(matches!(landed.outcome, Outcome::Refreshed(r) if r.generation == 3));
        // The hand-off ends.
        clock.advance(Duration::from_secs(601));
        assert!(now(memory.remembered(key)).is_none());
        assert_eq!(now(memory.marks("s", 0)).newest, None);
    }

    #[tokio::test]
    async fn refusals_are_kept_for_the_grace_and_outages_not_at_all() {
        let clock = ManualClock::new();
        let memory = InProcess::new(10, 10, Arc::new(clock.clone()));
        let down = TokenKey::of(&Token::new("down"));
        assert!(matches!(now(memory.claim(down, "s", 1)), Claim::Fly(_)));
        now(memory.land(down, landing("s", 1, Err(UpstreamError::Unavailable("502".into())))));
        assert!(matches!(now(memory.claim(down, "s", 1)), Claim::Fly(_)), "an outage is tried again");
        let refused = TokenKey::of(&Token::new("refused"));
        assert!(matches!(now(memory.claim(refused, "s", 1)), Claim::Fly(_)));
        now(memory.land(refused, landing("s", 1, Err(UpstreamError::Refused { code: "invalid_grant".into() }))));
        assert!(matches!(now(memory.claim(refused, "s", 1)), Claim::Remembered(Outcome::Refused(c)) if c == "invalid_grant"));
        clock.advance(Duration::from_secs(61));
        assert!(matches!(now(memory.claim(refused, "s", 1)), Claim::Fly(_)), "grace over");
    }

    #[tokio::test]
    async fn a_landing_after_sign_out_is_a_refusal_and_hands_its_tokens_back() {
        let clock = ManualClock::new();
        let memory = InProcess::new(10, 10, Arc::new(clock.clone()));
        let key = TokenKey::of(&Token::new("r1"));
        let Claim::Fly(wait) = now(memory.claim(key, "s", 1)) else { panic!() };
        now(memory.sign_out("s", 0, Duration::from_secs(3600)));
        assert!(matches!(now(memory.claim(TokenKey::of(&Token::new("other")), "s", 1)), Claim::SignedOut));
        let landed = now(memory.land(key, landing("s", 1, Ok(tokens("r2")))));
        assert!(matches!(landed.revoke, Some(t) if t.refresh_token == Some(Token::new("r2"))));
        assert!(matches!(wait.await, Some(Outcome::Refused(c)) if c == crate::refresh::SIGNED_OUT));
        assert_eq!(now(memory.marks("s", 0)).newest, None, "no generation issued");
    }

    #[tokio::test]
    async fn an_abandoned_flight_wakes_its_waiters_empty_and_flies_again() {
        let memory = InProcess::new(10, 10, Arc::new(ManualClock::new()));
        let key = TokenKey::of(&Token::new("r1"));
        let Claim::Fly(wait) = now(memory.claim(key, "s", 1)) else { panic!() };
        memory.abandon(key);
        assert!(wait.await.is_none());
        assert!(matches!(now(memory.claim(key, "s", 1)), Claim::Fly(_)));
    }

    fn provider(sid: Option<&str>, sub: &str) -> ProviderSession {
        ProviderSession {
            issuer: "https://id.example".into(),
            subject: sub.into(),
            session_id: sid.map(str::to_string),
            id_token: Token::new("id"),
        }
    }

    #[test]
    fn sessions_ended_at_the_provider_by_sid_or_sub_until_their_limit() {
        let clock = ManualClock::new();
        let memory = InProcess::new(10, 10, Arc::new(clock.clone()));
        let day = Duration::from_secs(86_400);
        let key = |kind, value| provider_key("https://id.example", kind, value);
        let dana = provider_keys(&provider(Some("s-1"), "dana"));
        let dana_elsewhere = provider_keys(&provider(Some("s-2"), "dana"));
        let dana_unnamed = provider_keys(&provider(None, "dana"));
        assert_eq!(dana, ["sid https://id.example s-1", "sub https://id.example dana"]);
        assert_eq!(dana_unnamed, ["sub https://id.example dana", "sub-nosid https://id.example dana"]);
        assert_eq!(now(memory.ended_at_provider(&dana)), None);
        // By sid: every session of it, whenever it began (the same second included).
        now_ok(memory.end_at_provider(&key(ProviderKeyKind::Sid, "s-1"), 1000, true, day));
        assert_eq!(now(memory.ended_at_provider(&dana)), Some(u64::MAX));
        assert_eq!(now(memory.ended_at_provider(&dana_elsewhere)), None, "another provider session of the same person");
        // A logout naming a sid reaches the person's sessions the provider could not name.
        now_ok(memory.end_at_provider(&key(ProviderKeyKind::SubWithoutSid, "dana"), 1000, false, day));
        assert_eq!(now(memory.ended_at_provider(&dana_unnamed)), Some(1000));
        assert_eq!(now(memory.ended_at_provider(&dana_elsewhere)), None);
        // Without a sid, the person: every session of theirs that began by then.
        now_ok(memory.end_at_provider(&key(ProviderKeyKind::Sub, "dana"), 2000, false, day));
        assert_eq!(now(memory.ended_at_provider(&dana_elsewhere)), Some(2000));
        // An earlier moment never moves the mark back.
        now_ok(memory.end_at_provider(&key(ProviderKeyKind::Sub, "dana"), 1500, false, day));
        assert_eq!(now(memory.ended_at_provider(&dana_elsewhere)), Some(2000));
        // Another issuer's dana is someone else.
        let other = provider_keys(&ProviderSession { issuer: "https://other.example".into(), ..provider(None, "dana") });
        assert_eq!(now(memory.ended_at_provider(&other)), None);
        clock.advance(day + Duration::from_secs(1));
        assert_eq!(now(memory.ended_at_provider(&dana)), None, "forgotten after the sessions' absolute limit");
    }

    #[test]
    fn a_full_provider_memory_ends_more_sessions_never_fewer() {
        let memory = InProcess::new(10, 2, Arc::new(ManualClock::new()));
        let day = Duration::from_secs(86_400);
        let key = |sub: &str| provider_key("https://id.example", ProviderKeyKind::Sub, sub);
        now_ok(memory.end_at_provider(&provider_key("https://id.example", ProviderKeyKind::Sid, "s-a"), 100, true, day));
        now_ok(memory.end_at_provider(&key("b"), 200, false, day));
        now_ok(memory.end_at_provider(&key("c"), 300, false, day));
        // s-a was dropped to make room: its sessions stay ended through the floor (its moment,
        // 100), which ends everyone's provider sessions that began by then.
        assert_eq!(now(memory.ended_at_provider(&[key("z")])), Some(100));
        assert_eq!(now(memory.ended_at_provider(&[key("c")])), Some(300));
    }

    #[test]
    fn a_logout_token_is_used_once() {
        let clock = ManualClock::new();
        let memory = InProcess::new(10, 2, Arc::new(clock.clone()));
        let window = Duration::from_secs(362);
        assert!(now(memory.first_use("j1", window)));
        assert!(!now(memory.first_use("j1", window)), "a replay");
        assert!(now(memory.first_use("j2", window)));
        clock.advance(window);
        assert!(now(memory.first_use("j1", window)), "forgotten once its token is too old to be accepted");
        // Full: the oldest is forgotten (a replay of it ends sessions again: more sign-outs,
        // never fewer), the newest always remembered.
        assert!(now(memory.first_use("j3", window)));
        assert!(now(memory.first_use("j4", window)));
        assert!(!now(memory.first_use("j4", window)));
    }
}
