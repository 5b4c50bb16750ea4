//! The refresh machinery on an injected clock and a scripted upstream: every interleaving around
//! a landing flight, grace and hand-off expiry, sign-out races, panics and revocation retries,
//! deterministic (no wall-clock sleeps, no live upstream). The live-upstream tests stay in
//! `client.rs` and the app's `tests/refresh.rs`.

use crate::http_api::{Fields, ProfileMap};
use tokenless_upstream::config::OAUTH2_PATHS;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::SecretString;
use crate::client::{ClientAuth, ClientConfig, UpstreamClient, UpstreamEndpoints, UpstreamError};
use crate::clock::{Clock, ManualClock};
use crate::cookies::{self, CookiePolicy, ReadSession};
use crate::grants::{BoxFuture, TokenGrants};
use crate::manager::{Limits, SessionManager};
use crate::memory::{Claim, InProcess, Landed, Landing, Marks, NotKept, Outcome, RefreshMemory, TokenKey};
use crate::middleware::attach;
use crate::refresh::{Known, RefreshConfig, Refresher, Revocation, SIGNED_OUT};
use crate::seal::KeyRing;
use crate::session::{Profile, Session, Token, TokenSet};
use tokio::sync::Semaphore;
use tower_cookies::cookie::SameSite;
use tower_cookies::Cookies;

/// What the scripted upstream does on a refresh.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Script {
    /// A new refresh token every time (the demo upstream, RFC 9700's rotation).
    Rotate,
    /// The same refresh token back every time (allowed, and common).
    Keep,
    /// Panics inside the grant.
    Panic,
    /// Upstream down.
    Down,
    /// The same refresh token back, without saying when it ends.
    KeepSilently,
    /// Tokens of another person (a JWT whose `sub` is not the session's).
    OtherSubject,
    /// Refused with an error about the client (`invalid_client`: a wrong secret in a deploy).
    InvalidClient,
    /// Refused: the refresh token is no good (`invalid_grant`).
    Refuse,
}

struct Scripted {
    script: Mutex<VecDeque<Script>>,
    /// Refreshes wait for a permit: a test holds a flight in the air by giving none.
    gate: Semaphore,
    refreshes: AtomicU64,
    /// Refreshes that reached the upstream (held at the gate or past it).
    entered: AtomicU64,
    revoke_failures: AtomicU64,
    /// Revocations refused with these codes, one each, before the rest go through.
    revoke_refusals: Mutex<VecDeque<&'static str>>,
    revoked: Mutex<Vec<String>>,
    lifetime: u64,
}

impl Scripted {
    fn new(script: &[Script], open: bool) -> Arc<Self> {
        Arc::new(Scripted {
            script: Mutex::new(script.iter().copied().collect()),
            gate: Semaphore::new(if open { Semaphore::MAX_PERMITS } else { 0 }),
            refreshes: AtomicU64::new(0),
            entered: AtomicU64::new(0),
            revoke_failures: AtomicU64::new(0),
            revoke_refusals: Mutex::new(VecDeque::new()),
            revoked: Mutex::new(Vec::new()),
            lifetime: 300,
        })
    }

    fn release(&self, n: usize) {
        self.gate.add_permits(n);
    }

    fn entered(&self) -> u64 {
        self.entered.load(Ordering::SeqCst)
    }

    fn refreshes(&self) -> u64 {
        self.refreshes.load(Ordering::SeqCst)
    }

    fn revoked(&self) -> Vec<String> {
        self.revoked.lock().unwrap().clone()
    }
}

impl TokenGrants for Scripted {
    fn refresh<'a>(
        &'a self,
        refresh_token: &'a Token,
        now: u64,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<TokenSet, UpstreamError>> {
        Box::pin(async move {
            self.entered.fetch_add(1, Ordering::SeqCst);
            self.gate.acquire().await.expect("gate open").forget();
            let n = self.refreshes.fetch_add(1, Ordering::SeqCst) + 1;
            let step = self.script.lock().unwrap().pop_front().unwrap_or(Script::Rotate);
            let refresh = match step {
                Script::Rotate | Script::OtherSubject => Token::new(format!("refresh-{n}")),
                Script::Keep | Script::KeepSilently => refresh_token.clone(),
                Script::Panic => panic!("scripted panic inside the refresh grant"),
                Script::Down => return Err(UpstreamError::Unavailable("scripted outage".into())),
                Script::InvalidClient => return Err(UpstreamError::Refused { code: "invalid_client".into() }),
                Script::Refuse => return Err(UpstreamError::Refused { code: "invalid_grant".into() }),
            };
            let access = match step {
                Script::OtherSubject => jwt_of("intruder"),
                _ => format!("access-{n}"),
            };
            Ok(TokenSet {
                access_token: Token::new(access),
                access_expires_at: now + self.lifetime,
                refresh_token: Some(refresh),
                refresh_expires_at: (step != Script::KeepSilently).then_some(now + 30 * 24 * 3600),
                access_issued_at: now,
            })
        })
    }

    fn revoke<'a>(&'a self, tokens: &'a TokenSet) -> BoxFuture<'a, Result<(), UpstreamError>> {
        let token = tokens.refresh_token.as_ref().unwrap_or(&tokens.access_token);
        Box::pin(async move {
            let left = self.revoke_failures.load(Ordering::SeqCst);
            if left > 0 {
                self.revoke_failures.store(left - 1, Ordering::SeqCst);
                return Err(UpstreamError::Unavailable("scripted outage".into()));
            }
            if let Some(code) = self.revoke_refusals.lock().unwrap().pop_front() {
                return Err(UpstreamError::Refused { code: code.into() });
            }
            self.revoked.lock().unwrap().push(token.expose().to_string());
            Ok(())
        })
    }
}

fn config() -> RefreshConfig {
    RefreshConfig {
        wait: Duration::from_secs(5),
        grace: Duration::from_secs(60),
        revoke_retry_delay: Duration::from_millis(5),
        revoke_retries: 4,
        ..RefreshConfig::default()
    }
}

fn session(clock: &ManualClock, id: &str) -> Session {
    let now = clock.unix();
    Session::new(
        id.into(),
        now,
        TokenSet {
            access_token: Token::new("access-0"),
            access_expires_at: now + 300,
            refresh_token: Some(Token::new("refresh-0")),
            refresh_expires_at: Some(now + 30 * 24 * 3600),
            access_issued_at: now,
        },
        Profile { id: "u1".into(), name: "U".into(), email: "u@example.com".into(), roles: vec![] },
    )
}

/// `s`'s access token in its last 10 seconds of 300: the next load refreshes it.
fn expiring(clock: &ManualClock, s: &mut Session) {
    s.tokens.access_issued_at = clock.unix() - 290;
    s.tokens.access_expires_at = clock.unix() + 10;
}

/// An unsigned JWT-shaped token naming `sub` (what the refresher reads; it verifies nothing).
fn jwt_of(sub: &str) -> String {
    use base64::Engine;
    let part = |json: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
    format!("{}.{}.sig", part(r#"{"alg":"none"}"#.into()), part(format!(r#"{{"sub":"{sub}","exp":9999999999}}"#)))
}

/// Which refresh memory a test runs on: the in-process one, or the same behind a store whose
/// every answer takes a few turns of the runtime (as a network store's would), to show the
/// refresh logic holds whatever the [`RefreshMemory`] implementation.
#[derive(Clone, Debug)]
enum Memory {
    InProcess,
    Remote,
    /// [`crate::RedisMemory`] on a real `redis-server`, a new key prefix for every store.
    #[cfg(feature = "redis")]
    Redis(Arc<redis_server::Connected>),
    /// [`crate::SqliteMemory`] on a new file in a folder of the test's own.
    #[cfg(feature = "sqlite")]
    Sqlite(Arc<tempfile::TempDir>),
}

impl Memory {
    fn store(self, config: &RefreshConfig, clock: &Arc<dyn Clock>) -> Arc<dyn RefreshMemory> {
        let local = InProcess::new(config.capacity, config.ended_capacity, clock.clone());
        match self {
            Memory::InProcess => Arc::new(local),
            Memory::Remote => Arc::new(Remote { local, calls: AtomicU64::new(0) }),
            #[cfg(feature = "redis")]
            Memory::Redis(redis) => Arc::new(redis.memory(clock.clone())),
            #[cfg(feature = "sqlite")]
            Memory::Sqlite(dir) => {
                static FILES: AtomicU64 = AtomicU64::new(0);
                let path = dir.path().join(format!("memory-{}.sqlite3", FILES.fetch_add(1, Ordering::SeqCst)));
                let options = crate::SqliteOptions { secrets: vec![[9; 32]], capacity: config.capacity, ended_capacity: config.ended_capacity };
                Arc::new(crate::SqliteMemory::open(&path, options, clock.clone()).expect("a new memory file opens"))
            }
        }
    }

    fn refresher(self, grants: Arc<Scripted>, config: RefreshConfig, clock: &ManualClock) -> Refresher {
        let clock: Arc<dyn Clock> = Arc::new(clock.clone());
        let store = self.store(&config, &clock);
        Refresher::with_memory(grants, config, clock, store)
    }
}

/// [`InProcess`] answering only after a few turns of the runtime: other tasks run between a
/// request's question and its answer, as they would while a shared store is asked.
struct Remote {
    local: InProcess,
    calls: AtomicU64,
}

impl Remote {
    async fn hop(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
    }
}

impl RefreshMemory for Remote {
    fn claim<'a>(&'a self, key: TokenKey, session_id: &'a str, generation: u64) -> BoxFuture<'a, Claim> {
        Box::pin(async move {
            self.hop().await;
            self.local.claim(key, session_id, generation).await
        })
    }

    fn land<'a>(&'a self, key: TokenKey, landing: Landing<'a>) -> BoxFuture<'a, Landed> {
        Box::pin(async move {
            self.hop().await;
            self.local.land(key, landing).await
        })
    }

    fn abandon(&self, key: TokenKey) {
        self.local.abandon(key)
    }

    fn remembered(&self, key: TokenKey) -> BoxFuture<'_, Option<Outcome>> {
        Box::pin(async move {
            self.hop().await;
            self.local.remembered(key).await
        })
    }

    fn shorten(&self, key: TokenKey, left: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.hop().await;
            self.local.shorten(key, left).await
        })
    }

    fn marks<'a>(&'a self, session_id: &'a str, created_at: u64) -> BoxFuture<'a, Marks> {
        Box::pin(async move {
            self.hop().await;
            self.local.marks(session_id, created_at).await
        })
    }

    fn carried<'a>(&'a self, session_id: &'a str, generation: u64, grace: Duration) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.hop().await;
            self.local.carried(session_id, generation, grace).await
        })
    }

    fn forget_use<'a>(&'a self, jti: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.hop().await;
            self.local.forget_use(jti).await
        })
    }

    fn end_at_provider<'a>(&'a self, key: &'a str, at: u64, every: bool, left: Duration) -> BoxFuture<'a, Result<(), NotKept>> {
        Box::pin(async move {
            self.hop().await;
            self.local.end_at_provider(key, at, every, left).await
        })
    }

    fn ended_at_provider<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Option<u64>> {
        Box::pin(async move {
            self.hop().await;
            self.local.ended_at_provider(keys).await
        })
    }

    fn first_use<'a>(&'a self, jti: &'a str, left: Duration) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            self.hop().await;
            self.local.first_use(jti, left).await
        })
    }

    fn sign_out<'a>(&'a self, session_id: &'a str, created_at: u64, left: Duration) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.hop().await;
            self.local.sign_out(session_id, created_at, left).await
        })
    }
}

fn refresher(grants: &Arc<Scripted>, clock: &ManualClock, memory: Memory) -> Refresher {
    memory.refresher(grants.clone(), config(), clock)
}

/// Each named test runs once on each [`Memory`].
macro_rules! on_each_memory {
    ($($name:ident),* $(,)?) => {
        mod in_process {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Memory::InProcess).await
            })*
        }
        mod remote {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Memory::Remote).await
            })*
        }
        #[cfg(feature = "redis")]
        mod redis {
            $(#[tokio::test]
            async fn $name() {
                // Held here: the server lives until the test ends.
                let server = super::redis_server::RedisServer::start().await.connect().await;
                super::$name(super::Memory::Redis(server.clone())).await
            })*
        }
        #[cfg(feature = "sqlite")]
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
                super::$name(super::Memory::Sqlite(dir)).await
            })*
        }
    };
}

on_each_memory!(
    a_result_is_kept_for_the_handoff_until_carried_then_for_the_grace_only,
    sign_out_wins_over_a_flight_that_lands_after_it,
    a_non_rotating_upstream_gets_a_new_refresh_for_every_expiry,
    a_panicking_refresh_does_not_poison_the_token,
    an_outage_is_not_remembered_and_the_next_request_tries_again,
    joiners_of_a_held_flight_share_one_grant,
    revocation_is_retried_and_ended_marks_outlive_churn,
    another_subjects_tokens_end_the_session,
    a_kept_refresh_token_keeps_its_known_end,
    an_upgraded_stale_cookie_is_kept_until_carried,
    a_result_written_but_never_carried_outlives_the_grace,
    a_full_sign_out_memory_refuses_more_never_fewer,
    a_sign_in_writes_its_cookie_when_the_memory_cannot_answer,
    a_renewal_finishing_after_the_headers_left_is_kept_for_the_next_request,
    short_lived_tokens_are_not_refreshed_on_every_request,
    sign_out_revokes_the_newest_tokens,
    a_refusal_of_the_client_keeps_the_session,
    a_stale_cookie_whose_newer_token_was_refused_is_over,
    a_renewal_in_the_request_that_refreshed_does_not_count_as_carried,
);

/// `r` refreshing `s` in a task of its own (a request in flight).
fn refreshing(r: &Refresher, s: &Session) -> tokio::task::JoinHandle<Result<Session, UpstreamError>> {
    let (r, s) = (r.clone(), s.clone());
    tokio::spawn(async move { r.refresh(&s).await })
}

/// Lets spawned tasks run until `done` holds (each check yields to the runtime; no sleeping),
/// for 10 s at most.
async fn until(mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "the condition never held");
        tokio::task::yield_now().await;
    }
}

async fn a_result_is_kept_for_the_handoff_until_carried_then_for_the_grace_only(memory: Memory) {
    let (clock, grants) = (ManualClock::new(), Scripted::new(&[], true));
    let r = refresher(&grants, &clock, memory);
    let old = session(&clock, "s");
    let new = r.refresh(&old).await.unwrap();
    assert_eq!(new.generation, 2);
    // Not carried yet: the next request with the old cookie gets it for ten minutes.
    clock.advance(Duration::from_secs(9 * 60));
    assert!(matches!(r.known(&old).await, Known::Newer(s) if s.tokens == new.tokens));
    // A request arrives with the new cookie: only the grace period from now on.
    assert!(matches!(r.arrived(&new).await, Known::Current));
    clock.advance(Duration::from_secs(59));
    assert!(matches!(r.known(&old).await, Known::Newer(_)), "inside the grace period");
    clock.advance(Duration::from_secs(2));
    assert!(matches!(r.known(&old).await, Known::Current), "grace over");
    assert_eq!(grants.refreshes(), 1);
}

/// Finding 1: a sign-out while a refresh is in flight is not undone by its landing.
async fn sign_out_wins_over_a_flight_that_lands_after_it(memory: Memory) {
    let (clock, grants) = (ManualClock::new(), Scripted::new(&[], false));
    let r = refresher(&grants, &clock, memory);
    let s = session(&clock, "s");
    let waiter = refreshing(&r, &s);
    until(|| grants.entered() == 1).await;
    r.end(&s, clock.unix() + 3600).await;
    grants.release(1);
    let answer = waiter.await.unwrap();
    assert!(matches!(&answer, Err(UpstreamError::Refused { code }) if code == SIGNED_OUT), "{answer:?}");
    until(|| grants.revoked() == vec!["refresh-1".to_string()]).await;
    assert!(matches!(r.known(&s).await, Known::SignedOut));
    let mut landed = s.clone();
    landed.generation = 2;
    assert!(r.is_superseded(&landed).await, "no response writes what the flight got");
    assert!(r.refresh(&s).await.is_err(), "no new flight for a signed-out session");
    assert_eq!(grants.refreshes(), 1);
    assert_eq!(r.counts().landed_after_sign_out, 1);
}

/// Finding 5: an upstream that keeps the same refresh token gets a new flight per expiry.
async fn a_non_rotating_upstream_gets_a_new_refresh_for_every_expiry(memory: Memory) {
    let (clock, grants) = (ManualClock::new(), Scripted::new(&[Script::Keep, Script::Keep, Script::Keep], true));
    let r = refresher(&grants, &clock, memory);
    let first = session(&clock, "s");
    let second = r.refresh(&first).await.unwrap();
    assert!(matches!(r.arrived(&second).await, Known::Current), "carried");
    assert_eq!(second.tokens.refresh_token, first.tokens.refresh_token);
    // Still inside the grace period, where the first result is remembered under the same key
    // (short-lived tokens, or the hand-off when no response carried it).
    clock.advance(Duration::from_secs(10));
    let third = r.refresh(&second).await.unwrap();
    assert_ne!(third.tokens.access_token, second.tokens.access_token, "fresh tokens, not the old ones back");
    assert_eq!(third.generation, 3);
    assert_eq!(grants.refreshes(), 2);
    // A cookie of the first generation still gets the newest.
    assert!(matches!(r.known(&first).await, Known::Newer(s) if s.generation == 3));
    assert!(matches!(r.known(&third).await, Known::Current));
}

/// Finding 8: a refresh task that panics does not leave its token stuck.
async fn a_panicking_refresh_does_not_poison_the_token(memory: Memory) {
    let (clock, grants) = (ManualClock::new(), Scripted::new(&[Script::Panic, Script::Rotate], true));
    let r = refresher(&grants, &clock, memory);
    let s = session(&clock, "s");
    // The flight that panicked is claimed again within the same request: a new one flies.
    let first = r.refresh(&s).await.expect("a new flight after the panic");
    assert_eq!(first.tokens.access_token, Token::new("access-2"));
    assert_eq!(r.counts().reclaims, 1);
    assert_eq!(grants.refreshes(), 2);
}

async fn an_outage_is_not_remembered_and_the_next_request_tries_again(memory: Memory) {
    let (clock, grants) = (ManualClock::new(), Scripted::new(&[Script::Down, Script::Rotate], true));
    let r = refresher(&grants, &clock, memory);
    let s = session(&clock, "s");
    assert!(matches!(r.refresh(&s).await, Err(UpstreamError::Unavailable(_))));
    assert!(matches!(r.known(&s).await, Known::Current));
    assert!(r.refresh(&s).await.is_ok());
    assert_eq!(grants.refreshes(), 2);
}

async fn joiners_of_a_held_flight_share_one_grant(memory: Memory) {
    let (clock, grants) = (ManualClock::new(), Scripted::new(&[], false));
    let r = refresher(&grants, &clock, memory);
    let s = session(&clock, "s");
    let waiters: Vec<_> = (0..50)
        .map(|_| refreshing(&r, &s))
        .collect();
    until(|| r.counts().joined == 49).await;
    grants.release(1);
    for w in waiters {
        assert_eq!(w.await.unwrap().unwrap().tokens.access_token, Token::new("access-1"));
    }
    assert_eq!(grants.refreshes(), 1);
}

/// Finding 6: a revocation that fails on an outage is retried; sign-out marks last until the
/// session's end and are not pushed out by refresh churn.
async fn revocation_is_retried_and_ended_marks_outlive_churn(memory: Memory) {
    let (clock, grants) = (ManualClock::new(), Scripted::new(&[], true));
    grants.revoke_failures.store(2, Ordering::SeqCst);
    let cfg = RefreshConfig { capacity: 10, ..config() };
    let r = memory.refresher(grants.clone(), cfg, &clock);
    let s = session(&clock, "ended-one");
    r.end(&s, clock.unix() + 30 * 24 * 3600).await;
    assert_eq!(r.revoke(s.tokens.clone()).await, Revocation::Pending);
    until(|| grants.revoked() == vec!["refresh-0".to_string()]).await;
    until(|| r.counts().revocations_pending == 0).await;
    assert_eq!(r.counts().revocations_abandoned, 0);
    // Churn: many other sessions refresh.
    for i in 0..100 {
        let other = session(&clock, &format!("other-{i}"));
        let mut other = other;
        other.tokens.refresh_token = Some(Token::new(format!("other-refresh-{i}")));
        r.refresh(&other).await.unwrap();
    }
    clock.advance(Duration::from_secs(2 * 24 * 3600));
    assert!(matches!(r.known(&s).await, Known::SignedOut), "still refused two days later, after churn");
    clock.advance(Duration::from_secs(29 * 24 * 3600));
    assert!(matches!(r.known(&s).await, Known::Current), "forgotten after the session's own end");
}

/// A graceful stop waits for the flight a request left behind (its client went away): the grant
/// lands, and its result is there for the cookie from before — instead of dying with the
/// process and leaving that cookie a token the upstream already retired.
#[tokio::test]
async fn a_stop_waits_for_the_flight_a_gone_request_began() {
    let (clock, grants) = (ManualClock::new(), Scripted::new(&[], false));
    let r = refresher(&grants, &clock, Memory::InProcess);
    let old = session(&clock, "s");
    let request = refreshing(&r, &old);
    until(|| grants.entered() == 1).await;
    request.abort();
    assert!(request.await.unwrap_err().is_cancelled());
    assert!(!r.drain(Duration::from_millis(50)).await, "the grant is still at the upstream");
    grants.release(1);
    assert!(r.drain(Duration::from_secs(10)).await, "it landed");
    assert_eq!(grants.refreshes(), 1);
    assert!(matches!(r.known(&old).await, Known::Newer(s) if s.generation == 2), "its result is remembered");
    // Drained once, the refresher works on (a stop that did not happen after all): a new
    // flight, tracked again.
    let mut other = session(&clock, "t");
    other.tokens.refresh_token = Some(Token::new("refresh-of-t"));
    let request = refreshing(&r, &other);
    until(|| grants.entered() == 2).await;
    assert!(!r.drain(Duration::from_millis(50)).await, "the second grant is tracked too");
    grants.release(1);
    assert_eq!(request.await.unwrap().unwrap().generation, 2);
    assert_eq!(grants.refreshes(), 2);
}

/// Issue 32: a revocation refused for the client's reasons (`invalid_client`: a secret rotated
/// on one side first, mid-deploy) is tried again like one that met an outage; one refused for
/// the token's (`unsupported_token_type`) is not: trying again cannot change that answer.
#[tokio::test]
async fn a_revocation_refused_for_the_client_is_tried_again_one_refused_for_the_token_is_not() {
    let (clock, grants) = (ManualClock::new(), Scripted::new(&[], true));
    grants.revoke_refusals.lock().unwrap().extend(["invalid_client", "unauthorized_client"]);
    let r = Memory::InProcess.refresher(grants.clone(), config(), &clock);
    let s = session(&clock, "s");
    assert_eq!(r.revoke(s.tokens.clone()).await, Revocation::Pending);
    until(|| grants.revoked() == vec!["refresh-0".to_string()]).await;
    until(|| r.counts().revocations_pending == 0).await;
    assert_eq!(r.counts().revocations_abandoned, 0);
    grants.revoke_refusals.lock().unwrap().push_back("unsupported_token_type");
    assert_eq!(r.revoke(s.tokens.clone()).await, Revocation::Failed);
    assert_eq!(r.counts().revocations_pending, 0, "not tried again");
}

/// An upstream that answers a refresh with someone else's tokens (a JWT naming another `sub`)
/// does not hand that person's session to this one: the refresh is a refusal, every waiter gets
/// it, and it is remembered as one (no second grant for the same token).
async fn another_subjects_tokens_end_the_session(memory: Memory) {
    let (clock, grants) = (ManualClock::new(), Scripted::new(&[Script::OtherSubject], true));
    let r = refresher(&grants, &clock, memory.clone());
    let mut s = session(&clock, "s");
    s.tokens.access_token = Token::new(jwt_of("u1"));
    let answer = r.refresh(&s).await;
    assert!(matches!(&answer, Err(UpstreamError::Refused { code }) if code == crate::SUBJECT_CHANGED), "{answer:?}");
    assert!(matches!(r.known(&s).await, Known::Ended));
    assert!(r.refresh(&s).await.is_err());
    assert_eq!(grants.refreshes(), 1);
    until(|| grants.revoked() == vec!["refresh-1".to_string()]).await;
    // Tokens that are not JWTs (or a JWT without `sub`) are not compared: nothing to go by.
    let (clock, grants) = (ManualClock::new(), Scripted::new(&[Script::OtherSubject], true));
    let r = refresher(&grants, &clock, memory);
    assert!(r.refresh(&session(&clock, "t")).await.is_ok());
}

/// An upstream that keeps the refresh token and does not repeat when it ends: the end the
/// cookie knew stays (the session's lifetime is not lost on the first refresh).
async fn a_kept_refresh_token_keeps_its_known_end(memory: Memory) {
    let (clock, grants) = (ManualClock::new(), Scripted::new(&[Script::KeepSilently], true));
    let r = refresher(&grants, &clock, memory);
    let s = session(&clock, "s");
    let next = r.refresh(&s).await.unwrap();
    assert_eq!(next.tokens.refresh_token, s.tokens.refresh_token);
    assert_eq!(next.tokens.refresh_expires_at, s.tokens.refresh_expires_at);
    assert!(next.tokens.refresh_expires_at.is_some());
}

// ---------------------------------------------------------------- through the session manager

const COOKIE: &str = "tokenless_session";

/// A manager on the public builder: the scripted grants, `memory`, the manual clock.
fn manager(grants: &Arc<Scripted>, clock: &ManualClock, memory: Memory) -> Arc<SessionManager> {
    let options = manager_options();
    let clock: Arc<dyn Clock> = Arc::new(clock.clone());
    let manager = SessionManager::builder(Arc::new(nowhere()))
        .options(options.clone())
        .keys(KeyRing::new(&[(1, [9; 32])]).unwrap())
        .grants(grants.clone())
        .memory(memory.store(&options.refresh, &clock))
        .clock(clock)
        .build()
        .unwrap();
    Arc::new(manager)
}

/// An upstream client of nowhere (port 9): the tests answer its grants with [`Scripted`].
fn nowhere() -> UpstreamClient {
    let endpoints = UpstreamEndpoints::at(&"http://127.0.0.1:9".parse().unwrap(), OAUTH2_PATHS.into()).unwrap();
    UpstreamClient::new(ClientConfig {
        endpoints,
        profile: ProfileMap::oidc(),
        registration_fields: Fields::default(),
        client_id: "c".into(),
        client_secret: SecretString::from("s".to_string()),
        auth: ClientAuth::ClientSecretBasic,
        timeout: Duration::from_millis(100),
        connect_timeout: Duration::from_millis(100),
    })
    .unwrap()
}

fn manager_options() -> crate::SessionOptions {
    crate::SessionOptions {
        cookie_name: COOKIE.into(),
        same_site: SameSite::Lax,
        keys: None,
        limits: Limits::default(),
        refresh: config(),
        store: crate::Store::Memory,
    }
}

/// A browser's request carrying `session` in its cookie.
fn jar(m: &SessionManager, session: &Session) -> Cookies {
    let cookies = Cookies::default();
    cookies::write(m.cookie_policy(), &KeyRing::new(&[(1, [9; 32])]).unwrap(), &cookies, session, Duration::from_secs(3600));
    cookies
}

fn in_jar(cookies: &Cookies) -> Option<Session> {
    match cookies::read(&CookiePolicy::new(COOKIE, false, SameSite::Lax), &KeyRing::new(&[(1, [9; 32])]).unwrap(), cookies) {
        ReadSession::Valid { session, .. } => Some(session),
        _ => None,
    }
}

/// A stale cookie upgraded from the remembered results is written; the results are shortened
/// to the grace once a request comes back with the upgrade.
async fn an_upgraded_stale_cookie_is_kept_until_carried(memory: Memory) {
    let (clock, grants) = (ManualClock::new(), Scripted::new(&[], true));
    let m = manager(&grants, &clock, memory);
    let old = session(&clock, "s");
    // A flight whose response could not carry the cookie: kept for the hand-off.
    let new = m.refresher().refresh(&old).await.unwrap();
    let cookies = jar(&m, &old);
    let loaded = m.load(&cookies).await;
    assert_eq!(loaded.session.unwrap().tokens, new.tokens, "upgraded");
    let upgraded = in_jar(&cookies).unwrap();
    assert_eq!(upgraded.generation, 2, "and written");
    // The browser comes back with it.
    assert!(m.load(&jar(&m, &upgraded)).await.session.is_some());
    clock.advance(Duration::from_secs(61));
    assert!(matches!(m.refresher().known(&old).await, Known::Current), "only the grace period once carried");
    assert_eq!(grants.refreshes(), 1);
}

/// Issue 32, finding 3: a refresh result counted as delivered as soon as its cookie was in the
/// jar. The tab closed (or the page failed) before the response arrived: the browser still
/// holds the old cookie, and a minute later presented the rotated token again — a reuse the
/// upstream answers by revoking the sign-in. Now the result stays until a request carries it.
async fn a_result_written_but_never_carried_outlives_the_grace(memory: Memory) {
    let (clock, grants) = (ManualClock::new(), Scripted::new(&[], true));
    let m = manager(&grants, &clock, memory);
    let mut old = session(&clock, "s");
    expiring(&clock, &mut old);
    let cookies = jar(&m, &old);
    let loaded = m.load(&cookies).await;
    assert_eq!(loaded.session.unwrap().generation, 2, "refreshed, and the new cookie written into the jar");
    drop(cookies); // the response never reaches the browser
    // Past the grace, inside the new access token's life.
    clock.advance(Duration::from_secs(3 * 60));
    let late = m.load(&jar(&m, &old)).await;
    assert_eq!(late.session.expect("still signed in").generation, 2, "the remembered result, not a second grant");
    assert_eq!(grants.refreshes(), 1, "the rotated token never went upstream again");
}

/// Issue 32, finding 4: sign-out marks were capped and the oldest dropped even before its end,
/// so a stolen copy of an older signed-out cookie opened again once enough people signed out.
/// Now a memory that must drop one refuses every session that began no later than it.
async fn a_full_sign_out_memory_refuses_more_never_fewer(memory: Memory) {
    let clock = ManualClock::new();
    let grants = Scripted::new(&[], true);
    let cfg = RefreshConfig { ended_capacity: 3, ..config() };
    let r = memory.refresher(grants, cfg, &clock);
    let first = session(&clock, "first");
    r.end(&first, clock.unix() + 3600).await;
    clock.advance(Duration::from_secs(10));
    let later: Vec<Session> = (0..5).map(|i| session(&clock, &format!("later-{i}"))).collect();
    for s in &later {
        r.end(s, clock.unix() + 3600).await;
    }
    assert!(matches!(r.known(&first).await, Known::SignedOut), "the first sign-out holds though its mark was dropped");
    for s in &later {
        assert!(matches!(r.known(s).await, Known::SignedOut));
    }
    clock.advance(Duration::from_secs(10));
    let fresh = session(&clock, "fresh");
    assert!(matches!(r.known(&fresh).await, Known::Current), "a session begun after every dropped mark is untouched");
}

/// Issue 32, finding 6: a sign-in while the memory cannot say whether a newer generation of
/// the (brand-new) session exists answered "yes", the cookie was not written, and the sign-in
/// "succeeded" without one. A new session id has nothing newer: its cookie is always written.
/// And a request whose session's marks cannot be read is answered "try again".
async fn a_sign_in_writes_its_cookie_when_the_memory_cannot_answer(memory: Memory) {
    let clock = ManualClock::new();
    let grants = Scripted::new(&[], true);
    let clock_dyn: Arc<dyn Clock> = Arc::new(clock.clone());
    let options = manager_options();
    let blind = Arc::new(Blind { inner: memory.store(&options.refresh, &clock_dyn) });
    let m = SessionManager::builder(Arc::new(nowhere()))
        .options(options)
        .keys(KeyRing::new(&[(1, [9; 32])]).unwrap())
        .grants(grants)
        .memory(blind)
        .clock(clock_dyn)
        .build()
        .unwrap();
    let cookies = Cookies::default();
    let tokens = session(&clock, "x").tokens;
    let session = m.sign_in_with(&cookies, tokens, Profile { id: "u1".into(), name: "U".into(), email: "u@example.com".into(), roles: vec![] }, None).await;
    assert_eq!(in_jar(&cookies).map(|s| s.id), Some(session.id.clone()), "the new session's cookie is written");

    // A cookie whose sign-out marks cannot be read is neither served nor refused: a signed-out
    // copy must not open for want of its mark, and the cookie stays for when the memory answers.
    let m = Arc::new(m);
    let cookies = jar(&m, &session);
    let before = cookies.get(COOKIE).unwrap().value().to_string();
    let loaded = m.load(&cookies).await;
    assert!(loaded.unavailable && loaded.session.is_none() && loaded.ended.is_none(), "{loaded:?}");
    assert_eq!(cookies.get(COOKIE).unwrap().value(), before, "the cookie is left as it is");
    let app = axum::Router::new()
        .route("/me", axum::routing::get(|| async { "signed-in page" }))
        .layer(crate::SessionLayer::new(m.clone()));
    let sealed = cookies.get(COOKIE).unwrap().value().to_string();
    let request = axum::http::Request::get("/me").header("cookie", format!("{COOKIE}={sealed}")).body(axum::body::Body::empty()).unwrap();
    let answer = tower::ServiceExt::oneshot(app, request).await.unwrap();
    assert_eq!(answer.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.headers()["retry-after"], "1");
    assert!(answer.headers().get("set-cookie").is_none(), "nothing cleared");
}

/// A memory that cannot tell anything about a session (a shared store that does not answer
/// its reads): "newer than anything", as [`crate::RedisMemory`] answers then.
struct Blind {
    inner: Arc<dyn RefreshMemory>,
}

impl RefreshMemory for Blind {
    fn claim<'a>(&'a self, key: TokenKey, session_id: &'a str, generation: u64) -> BoxFuture<'a, Claim> {
        self.inner.claim(key, session_id, generation)
    }
    fn land<'a>(&'a self, key: TokenKey, landing: Landing<'a>) -> BoxFuture<'a, Landed> {
        self.inner.land(key, landing)
    }
    fn abandon(&self, key: TokenKey) {
        self.inner.abandon(key)
    }
    fn remembered(&self, key: TokenKey) -> BoxFuture<'_, Option<Outcome>> {
        self.inner.remembered(key)
    }
    fn shorten(&self, key: TokenKey, left: Duration) -> BoxFuture<'_, ()> {
        self.inner.shorten(key, left)
    }
    fn marks<'a>(&'a self, _session_id: &'a str, _created_at: u64) -> BoxFuture<'a, Marks> {
        Box::pin(async { Marks { signed_out: false, newest: Some(u64::MAX), uncarried: None, unknown: true } })
    }
    fn sign_out<'a>(&'a self, session_id: &'a str, created_at: u64, left: Duration) -> BoxFuture<'a, ()> {
        self.inner.sign_out(session_id, created_at, left)
    }
    fn carried<'a>(&'a self, session_id: &'a str, generation: u64, grace: Duration) -> BoxFuture<'a, ()> {
        self.inner.carried(session_id, generation, grace)
    }
    fn end_at_provider<'a>(&'a self, key: &'a str, at: u64, every: bool, left: Duration) -> BoxFuture<'a, Result<(), NotKept>> {
        self.inner.end_at_provider(key, at, every, left)
    }
    fn ended_at_provider<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Option<u64>> {
        self.inner.ended_at_provider(keys)
    }
    fn first_use<'a>(&'a self, jti: &'a str, left: Duration) -> BoxFuture<'a, bool> {
        self.inner.first_use(jti, left)
    }
    fn forget_use<'a>(&'a self, jti: &'a str) -> BoxFuture<'a, ()> {
        self.inner.forget_use(jti)
    }
}

/// Finding 3: a renewal that finishes after the response's headers left keeps its result for
/// the next request (hand-off), and writes nothing into the jar already sent.
async fn a_renewal_finishing_after_the_headers_left_is_kept_for_the_next_request(memory: Memory) {
    let (clock, grants) = (ManualClock::new(), Scripted::new(&[], false));
    let m = manager(&grants, &clock, memory);
    let old = session(&clock, "s");
    let cookies = jar(&m, &old);
    let before = cookies.get(COOKIE).unwrap().value().to_string();
    let request = attach(&m, cookies.clone()).await;
    let renewing = tokio::spawn({
        let (request, old) = (request.clone(), old.clone());
        async move { request.renew_after_refusal(&old).await }
    });
    until(|| grants.entered() == 1).await;
    // The headers leave while the refresh is in the air.
    request.commit();
    grants.release(1);
    let renewed = renewing.await.unwrap().unwrap();
    assert_eq!(renewed.generation, 2);
    assert_eq!(cookies.get(COOKIE).unwrap().value(), before, "nothing written after the headers left");
    clock.advance(Duration::from_secs(5 * 60));
    assert!(
        matches!(m.refresher().known(&old).await, Known::Newer(s) if s.generation == 2),
        "the next request with the old cookie still gets the result minutes later"
    );
    assert_eq!(grants.refreshes(), 1);
}

/// Finding 11: tokens that live no longer than the skew are not refreshed on every request.
async fn short_lived_tokens_are_not_refreshed_on_every_request(memory: Memory) {
    let (clock, grants) = (ManualClock::new(), Scripted::new(&[], true));
    let m = manager(&grants, &clock, memory);
    let mut s = session(&clock, "s");
    // A 10-second token (seed 003), the skew 30 s.
    s.tokens.access_expires_at = clock.unix() + 10;
    let cookies = jar(&m, &s);
    for _ in 0..3 {
        assert!(m.load(&cookies).await.session.is_some());
    }
    assert_eq!(grants.refreshes(), 0, "a token just issued is never refreshed");
    clock.advance(Duration::from_secs(6));
    assert!(m.load(&cookies).await.session.is_some());
    assert_eq!(grants.refreshes(), 1, "refreshed in the last half of its life");
}

/// Finding 1 through the manager: sign-out revokes the newest token, not the cookie's retired one.
async fn sign_out_revokes_the_newest_tokens(memory: Memory) {
    let (clock, grants) = (ManualClock::new(), Scripted::new(&[], true));
    let m = manager(&grants, &clock, memory);
    let old = session(&clock, "s");
    m.refresher().refresh(&old).await.unwrap();
    let cookies = jar(&m, &old);
    let revocation = m.sign_out(&cookies, Some(&old)).await;
    assert_eq!(revocation, Some(Revocation::Confirmed));
    assert_eq!(grants.revoked(), vec!["refresh-1".to_string()], "the successor, which is the live one");
    assert!(in_jar(&cookies).is_none(), "cookies cleared");
    assert!(m.load(&jar(&m, &old)).await.session.is_none(), "the old cookie is refused");
}

/// Issue 32, finding 5: a refusal about the client (`invalid_client`: a mistyped or
/// half-rotated secret on one instance) is an outage, not a sign-out: the cookie stays, nothing
/// is remembered, and the next refresh with the right secret goes through.
async fn a_refusal_of_the_client_keeps_the_session(memory: Memory) {
    let (clock, grants) = (ManualClock::new(), Scripted::new(&[Script::InvalidClient, Script::Rotate], true));
    let m = manager(&grants, &clock, memory);
    let mut s = session(&clock, "s");
    expiring(&clock, &mut s);
    let cookies = jar(&m, &s);
    let before = cookies.get(COOKIE).unwrap().value().to_string();
    let loaded = m.load(&cookies).await;
    assert!(loaded.session.is_some() && loaded.refresh_failed, "still signed in, told to try again: {loaded:?}");
    assert_eq!(loaded.ended, None);
    assert_eq!(cookies.get(COOKIE).unwrap().value(), before, "the cookie is neither cleared nor rewritten");
    assert!(matches!(m.refresher().known(&s).await, Known::Current), "no refusal remembered");
    assert_eq!(m.refresher().counts().unavailable, 1);
    // The secret is mended: the same cookie refreshes.
    let loaded = m.load(&jar(&m, &s)).await;
    assert_eq!(loaded.session.unwrap().generation, 2);
    assert_eq!(grants.refreshes(), 2);
    // Which codes end a session: the token's, never the client's.
    for code in ["invalid_grant", "signed_out", "subject_changed", "unusable_refresh_answer", "no_refresh_token", "status 401"] {
        assert!(crate::refresh::ends_session(code), "{code}");
    }
    for code in ["invalid_client", "unauthorized_client", "invalid_request", "invalid_scope", "unsupported_grant_type", "", "invalid_grant_x"] {
        assert!(!crate::refresh::ends_session(code), "{code}");
    }
}

/// A cookie two generations old, whose session's newer refresh token was refused since (reuse
/// detected, revoked upstream): over, not served with the last good generation's tokens (found
/// by the chaos run: a cookie signed out of opened again that way).
async fn a_stale_cookie_whose_newer_token_was_refused_is_over(memory: Memory) {
    let (clock, grants) = (ManualClock::new(), Scripted::new(&[Script::Rotate, Script::Refuse], true));
    let r = refresher(&grants, &clock, memory);
    let old = session(&clock, "s");
    let newer = r.refresh(&old).await.unwrap();
    assert!(matches!(r.refresh(&newer).await, Err(UpstreamError::Refused { .. })));
    assert!(matches!(r.known(&newer).await, Known::Ended));
    assert!(matches!(r.known(&old).await, Known::Ended), "the older cookie too");
    assert_eq!(grants.refreshes(), 2);
}

/// A request whose cookie was refreshed on the way in, and whose new access token the upstream
/// then refused (renewed in the same request): the session it renews is not one the browser has,
/// so the first result stays for the hand-off (found by review: it was cut to the grace, and a
/// tab closed before the response presented the first token again minutes later).
async fn a_renewal_in_the_request_that_refreshed_does_not_count_as_carried(memory: Memory) {
    let (clock, grants) = (ManualClock::new(), Scripted::new(&[], true));
    let m = manager(&grants, &clock, memory);
    let mut old = session(&clock, "s");
    expiring(&clock, &mut old);
    let request = attach(&m, jar(&m, &old)).await;
    let current = request.session().expect("refreshed on the way in");
    assert_eq!(current.generation, 2);
    let renewed = request.renew_after_refusal(&current).await.unwrap();
    assert_eq!(renewed.generation, 3);
    // The response never reaches the browser; it comes back minutes later with the first cookie.
    clock.advance(Duration::from_secs(3 * 60));
    let late = m.load(&jar(&m, &old)).await;
    assert_eq!(late.session.expect("still signed in").generation, 3, "both remembered results");
    assert_eq!(grants.refreshes(), 2, "no token presented twice");
}

/// A `redis-server` of the test's own on a free loopback port, stopped when dropped.
#[cfg(feature = "redis")]
pub(crate) mod redis_server {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::clock::Clock;
    use crate::redis_memory::{RedisMemory, RedisOptions};

    pub(crate) struct RedisServer {
        pub(crate) url: String,
        child: tokio::process::Child,
    }

    impl RedisServer {
        pub(crate) async fn start() -> Self {
            // The probe listener is closed before the server binds the port.
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            Self::start_on(port).await
        }

        /// On `port` (a server started again where a killed one was).
        pub(crate) async fn start_on(port: u16) -> Self {
            let child = tokio::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .stdout(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("redis-server runs (scripts/setup.sh test installs it)");
            let url = format!("redis://127.0.0.1:{port}/");
            let client = redis::Client::open(url.as_str()).unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                    if redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok() {
                        break;
                    }
                }
                assert!(std::time::Instant::now() < deadline, "redis-server did not answer within 10 s");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            RedisServer { url, child }
        }

        pub(crate) async fn connect(self) -> Arc<Connected> {
            let client = redis::Client::open(self.url.as_str()).unwrap();
            let conn = redis::aio::ConnectionManager::new(client.clone()).await.unwrap();
            Arc::new(Connected { client, conn, _server: self })
        }

        /// Stops the server (a crash): every connection to it fails from now on.
        pub(crate) async fn kill(&mut self) {
            let _ = self.child.kill().await;
        }

        /// Freezes the server (`SIGSTOP`): connections stay open, nothing is answered, what is
        /// sent waits in them until [`RedisServer::resume`].
        pub(crate) fn pause(&self) {
            self.signal("-STOP");
        }

        pub(crate) fn resume(&self) {
            self.signal("-CONT");
        }

        fn signal(&self, signal: &str) {
            let pid = self.child.id().expect("redis-server runs").to_string();
            let status = std::process::Command::new("kill").args([signal, &pid]).status().unwrap();
            assert!(status.success(), "kill {signal} {pid}");
        }

        pub(crate) fn port(&self) -> u16 {
            self.url.trim_end_matches('/').rsplit(':').next().and_then(|p| p.parse().ok()).unwrap()
        }
    }

    pub(crate) struct Connected {
        client: redis::Client,
        conn: redis::aio::ConnectionManager,
        _server: RedisServer,
    }

    impl std::fmt::Debug for Connected {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Connected({:?})", self._server)
        }
    }

    impl std::fmt::Debug for RedisServer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.url)
        }
    }

    impl Connected {
        /// The server's URL.
        pub(crate) fn url(&self) -> &str {
            &self._server.url
        }

        /// A memory of its own (a new prefix) on the shared connection.
        pub(crate) fn memory(&self, clock: Arc<dyn Clock>) -> RedisMemory {
            self.memory_with_prefix(&format!("t{}:", rand::random::<u64>()), clock)
        }

        /// A memory under `prefix`: two with the same one are two instances sharing Redis.
        pub(crate) fn memory_with_prefix(&self, prefix: &str, clock: Arc<dyn Clock>) -> RedisMemory {
            self.memory_with_secrets(prefix, vec![[7; 32]], clock)
        }

        /// A memory under `prefix` sealing with the first of `secrets`, opening with each.
        pub(crate) fn memory_with_secrets(&self, prefix: &str, secrets: Vec<[u8; 32]>, clock: Arc<dyn Clock>) -> RedisMemory {
            // Longer than the grant's timeout (30 s), as the app sets it.
            let options = RedisOptions { prefix: prefix.to_string(), secrets, lease: Duration::from_secs(35), local_capacity: 1000 };
            RedisMemory::with_connection(self.client.clone(), self.conn.clone(), options, clock)
        }
    }
}

/// Several instances on one Redis: two refreshers, each with its own [`crate::RedisMemory`]
/// (its own owner id and local flights) under one prefix, the way two app instances share it.
#[cfg(feature = "redis")]
mod across_instances {
    use super::redis_server::{Connected, RedisServer};
    use super::*;

    /// Two instances sharing `redis` under one prefix, with the same clock and upstream.
    fn instances(redis: &Connected, grants: &Arc<Scripted>, clock: &ManualClock) -> (Refresher, Refresher) {
        instances_with_prefix(redis, grants, clock, &format!("shared{}:", rand::random::<u64>()))
    }

    #[tokio::test]
    async fn many_requests_on_two_instances_refresh_once_and_late_ones_get_the_result() {
        let redis = RedisServer::start().await.connect().await;
        let (clock, grants) = (ManualClock::new(), Scripted::new(&[], false));
        let prefix = format!("many{}:", rand::random::<u64>());
        let (a, b) = instances_with_prefix(&redis, &grants, &clock, &prefix);
        let s = session(&clock, "s");
        let waiters: Vec<_> = (0..40)
            .map(|i| refreshing(if i % 2 == 0 { &a } else { &b }, &s))
            .collect();
        // Every request is in: one flies (held at the upstream), the rest wait on either side.
        until(|| grants.entered() == 1 && a.counts().joined + b.counts().joined == 39).await;
        grants.release(1);
        for w in waiters {
            let refreshed = w.await.unwrap().expect("every request gets the refresh");
            assert_eq!((refreshed.tokens.access_token, refreshed.generation), (Token::new("access-1"), 2));
        }
        assert_eq!(grants.refreshes(), 1, "one refresh across both instances");
        // Landed: no lease left behind (another instance would wait for it).
        let mut raw = ::redis::aio::ConnectionManager::new(::redis::Client::open(redis.url()).unwrap()).await.unwrap();
        let leases: Vec<String> = ::redis::cmd("KEYS").arg(format!("{prefix}lease:*")).query_async(&mut raw).await.unwrap();
        assert!(leases.is_empty(), "{leases:?}");
        // A late request with the old cookie, on either instance: the result, no second grant.
        for r in [&a, &b] {
            assert!(matches!(r.known(&s).await, Known::Newer(n) if n.generation == 2));
            assert_eq!(r.refresh(&s).await.unwrap().generation, 2);
        }
        assert_eq!(grants.refreshes(), 1);
    }

    #[tokio::test]
    async fn a_sign_out_or_a_provider_logout_on_one_instance_holds_on_the_other() {
        let redis = RedisServer::start().await.connect().await;
        let (clock, grants) = (ManualClock::new(), Scripted::new(&[], true));
        let (a, b) = instances(&redis, &grants, &clock);
        let s = session(&clock, "s");
        a.end(&s, clock.unix() + 3600).await;
        assert!(matches!(b.known(&s).await, Known::SignedOut));
        assert!(b.refresh(&s).await.is_err(), "no refresh for a signed-out session anywhere");
        assert_eq!(grants.refreshes(), 0);
        // Back-channel logout received by one instance: the other refuses the session too.
        let key = crate::memory::provider_key("https://id.example", crate::memory::ProviderKeyKind::Sid, "s-1");
        a.memory().end_at_provider(&key, clock.unix(), true, Duration::from_secs(3600)).await.expect("stored");
        assert_eq!(b.memory().ended_at_provider(&[key]).await, Some(u64::MAX));
        // A logout token used on one instance is a replay on the other.
        assert!(a.memory().first_use("jti-1", Duration::from_secs(360)).await);
        assert!(!b.memory().first_use("jti-1", Duration::from_secs(360)).await);
        // Marks end with their time, on the shared clock.
        clock.advance(Duration::from_secs(3601));
        assert!(matches!(b.known(&s).await, Known::Current));
    }

    #[tokio::test]
    async fn an_instance_that_dies_mid_flight_lets_exactly_one_other_take_over() {
        let redis = RedisServer::start().await.connect().await;
        let clock = ManualClock::new();
        let prefix = format!("dies{}:", rand::random::<u64>());
        // Another instance took the lease for this token and died: nobody renews it, and it
        // ends on its own.
        let key = TokenKey::of(&Token::new("refresh-0"));
        let mut raw = ::redis::aio::ConnectionManager::new(::redis::Client::open(redis.url()).unwrap()).await.unwrap();
        let lease = format!("{prefix}lease:{}", hex::encode(key.as_bytes()));
        let _: () = ::redis::cmd("SET").arg(&lease).arg("dead-instance:0").arg("PX").arg(300).query_async(&mut raw).await.unwrap();
        // The survivors wait for it, get nothing when its lease ends, and the next claim flies
        // on exactly one of them.
        let grants = Scripted::new(&[], true);
        let (a, b) = instances_with_prefix(&redis, &grants, &clock, &prefix);
        let s = session(&clock, "s");
        let started = std::time::Instant::now();
        let (first_a, first_b) = tokio::join!(a.refresh(&s), b.refresh(&s));
        // Both claim again once the lease ended without a result (within their own wait):
        // exactly one flies, the other gets its result.
        assert_eq!(first_a.unwrap().tokens, first_b.unwrap().tokens);
        assert!(started.elapsed() >= Duration::from_millis(250), "nobody flew while the lease lived");
        assert_eq!(grants.refreshes(), 1, "exactly one took over");
        assert!(a.counts().reclaims + b.counts().reclaims >= 2, "{:?} {:?}", a.counts(), b.counts());
    }

    #[tokio::test]
    async fn what_redis_holds_opens_nothing_and_a_dead_redis_signs_nobody_out() {
        let mut server = RedisServer::start().await;
        let url = server.url.clone();
        let client = ::redis::Client::open(url.as_str()).unwrap();
        let conn = ::redis::aio::ConnectionManager::new(client.clone()).await.unwrap();
        let clock = ManualClock::new();
        let clock_arc: Arc<dyn Clock> = Arc::new(clock.clone());
        let options = crate::RedisOptions { prefix: "dump:".into(), secrets: vec![[9; 32]], lease: Duration::from_secs(10), local_capacity: 1000 };
        let memory: Arc<dyn RefreshMemory> =
            Arc::new(crate::RedisMemory::with_connection(client.clone(), conn.clone(), options, clock_arc.clone()));
        let grants = Scripted::new(&[], true);
        let r = Refresher::with_memory(grants.clone(), config(), clock_arc, memory);
        let s = session(&clock, "s");
        let refreshed = r.refresh(&s).await.unwrap();
        // Every value in Redis: no token in it, in any encoding a reader would try.
        let mut plain = ::redis::aio::ConnectionManager::new(client).await.unwrap();
        let keys: Vec<String> = ::redis::cmd("KEYS").arg("dump:*").query_async(&mut plain).await.unwrap();
        assert!(!keys.is_empty());
        for key in &keys {
            let value: Option<String> = ::redis::cmd("GET").arg(key).query_async(&mut plain).await.unwrap_or(None);
            let dump = format!("{key} {}", value.unwrap_or_default());
            for token in [refreshed.tokens.access_token.expose(), "refresh-1", "refresh-0", s.tokens.refresh_token.as_ref().unwrap().expose()] {
                assert!(!dump.contains(token), "{token} in {dump}");
            }
        }
        // Redis dies: a refresh is "try again" (never flown blind: another instance may have
        // rotated the token), within the call timeouts, and no mark that cannot be read signs
        // anyone out.
        server.kill().await;
        let mut later = s.clone();
        later.tokens.refresh_token = Some(Token::new("refresh-other"));
        let started = std::time::Instant::now();
        match r.refresh(&later).await {
            Err(UpstreamError::Unavailable(detail)) => assert_eq!(detail, crate::SHARED_MEMORY_UNAVAILABLE),
            other => panic!("{other:?}"),
        }
        assert_eq!(grants.refreshes(), 1, "nothing sent upstream without Redis");
        // Whether a session signed out cannot be read: neither served nor refused ("try
        // again"; a signed-out copy must not open for want of its mark).
        assert!(matches!(r.known(&later).await, Known::Unavailable));
        assert!(matches!(r.known(&s).await, Known::Unavailable));
        // What this instance learned before is still answered from its own copy.
        let key = TokenKey::of(s.tokens.refresh_token.as_ref().unwrap());
        assert!(matches!(r.memory().remembered(key).await, Some(Outcome::Refreshed(n)) if n.tokens == refreshed.tokens));
        assert!(started.elapsed() < Duration::from_secs(10), "bounded waits: {:?}", started.elapsed());
    }

    /// A shared-memory metric of `r` (`tokenless_refresh_shared_{name}`, summed over labels).
    fn shared(r: &Refresher, name: &str) -> u64 {
        crate::tests::metric(&r.metrics_text(), &format!("tokenless_refresh_shared_{name}"))
    }

    /// Two instances on `url`, each with its own connections (as two processes have), a short
    /// lease, under one new prefix.
    async fn instances_apart(url: &str, grants: &Arc<Scripted>, clock: &ManualClock, lease: Duration) -> (Refresher, Refresher) {
        let prefix = format!("apart{}:", rand::random::<u64>());
        (instance_leasing(url, &prefix, grants, clock, lease).await, instance_leasing(url, &prefix, grants, clock, lease).await)
    }

    #[tokio::test]
    async fn dropped_subscriptions_leave_the_waiters_polling() {
        let redis = RedisServer::start().await;
        let (clock, grants) = (ManualClock::new(), Scripted::new(&[], false));
        let (a, b) = instances_apart(&redis.url, &grants, &clock, Duration::from_secs(35)).await;
        let s = session(&clock, "s");
        let flying = refreshing(&a, &s);
        until(|| grants.entered() == 1).await;
        let waiting = refreshing(&b, &s);
        // B's watcher is subscribed; then every subscription is killed, as a failover would.
        let mut raw = watching_a_flight(&redis.url).await;
        let killed: i64 = ::redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub").query_async(&mut raw).await.unwrap();
        assert_eq!(killed, 3, "B's subscription, and each instance's to the facts channel");
        until(|| shared(&b, "pubsub_lost") == 1).await;
        // The result lands with nobody subscribed: B's polling finds it.
        grants.release(1);
        let (flown, waited) = (flying.await.unwrap().unwrap(), waiting.await.unwrap().unwrap());
        assert_eq!((flown.tokens, flown.generation), (waited.tokens, waited.generation));
        assert_eq!(grants.refreshes(), 1);
        assert_eq!(shared(&b, "remote_waits"), 1);
        assert_eq!(shared(&a, "leases"), 1);
    }

    #[tokio::test]
    async fn a_grant_outliving_its_lease_while_redis_is_paused_keeps_it() {
        let redis = RedisServer::start().await;
        let (clock, grants) = (ManualClock::new(), Scripted::new(&[], false));
        let lease = Duration::from_millis(600);
        let (a, b) = instances_apart(&redis.url, &grants, &clock, lease).await;
        let s = session(&clock, "s");
        let flying = refreshing(&a, &s);
        until(|| grants.entered() == 1).await;
        // Frozen for more than twice the lease while the grant runs: the lease ends in Redis.
        redis.pause();
        tokio::time::sleep(lease * 2 + Duration::from_millis(300)).await;
        redis.resume();
        // A's renewal, sent during the pause, takes the ended lease again before anyone else
        // can: B's request waits for A's flight instead of flying the same token.
        until(|| shared(&a, "leases_retaken") >= 1).await;
        let waiting = refreshing(&b, &s);
        until(|| b.counts().joined == 1).await;
        grants.release(1);
        let (flown, waited) = (flying.await.unwrap().unwrap(), waiting.await.unwrap().unwrap());
        assert_eq!(flown.tokens, waited.tokens);
        assert_eq!(grants.refreshes(), 1, "one grant, no token presented twice");
        assert!(shared(&a, "failures") >= 1, "the renewals that timed out are counted");
    }

    #[tokio::test]
    async fn a_landing_redis_cannot_take_is_sent_again_and_nobody_flies_the_token_twice() {
        let redis = RedisServer::start().await;
        let (clock, grants) = (ManualClock::new(), Scripted::new(&[], false));
        let lease = Duration::from_millis(600);
        let (a, b) = instances_apart(&redis.url, &grants, &clock, lease).await;
        let s = session(&clock, "s");
        let flying = refreshing(&a, &s);
        until(|| grants.entered() == 1).await;
        // The grant answers while Redis is frozen, past the lease: the landing cannot be told.
        redis.pause();
        grants.release(1);
        until(|| grants.refreshes() == 1).await;
        // A request with the same cookie on B meanwhile: "try again", nothing sent upstream.
        match b.refresh(&s).await {
            Err(UpstreamError::Unavailable(detail)) => assert_eq!(detail, crate::SHARED_MEMORY_UNAVAILABLE),
            other => panic!("{other:?}"),
        }
        tokio::time::sleep(lease * 2).await;
        redis.resume();
        // A's landing reaches Redis (sent again until it answers); A's request gets the result.
        let flown = flying.await.unwrap().unwrap();
        assert!(shared(&a, "landing_retries") >= 1);
        // B's late request: the remembered result, not a second grant.
        let late = b.refresh(&s).await.unwrap();
        assert_eq!((late.tokens, late.generation), (flown.tokens, flown.generation));
        assert_eq!(grants.refreshes(), 1);
        assert!(shared(&b, "try_again") >= 1);
    }

    #[tokio::test]
    async fn redis_killed_mid_flight_and_started_again_gets_the_landing() {
        let mut redis = RedisServer::start().await;
        let port = redis.port();
        let (clock, grants) = (ManualClock::new(), Scripted::new(&[], false));
        let (a, b) = instances_apart(&redis.url, &grants, &clock, Duration::from_millis(600)).await;
        let s = session(&clock, "s");
        let flying = refreshing(&a, &s);
        until(|| grants.entered() == 1).await;
        redis.kill().await;
        grants.release(1);
        // Down: B answers "try again" and sends nothing.
        assert!(matches!(b.refresh(&s).await, Err(UpstreamError::Unavailable(_))));
        until(|| shared(&a, "landing_retries") >= 1).await;
        // Started again, empty: A's landing, sent again, is the first thing it holds.
        let again = RedisServer::start_on(port).await.connect().await;
        let mut raw = ::redis::aio::ConnectionManager::new(::redis::Client::open(again.url()).unwrap()).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let keys: Vec<String> = ::redis::cmd("KEYS").arg("apart*:result:*").query_async(&mut raw).await.unwrap();
            if !keys.is_empty() {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "A's landing never reached the new Redis");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A's own request got it, or stopped waiting first (its limit is 5 s): never other tokens.
        if let Ok(flown) = flying.await.unwrap() {
            assert_eq!(flown.tokens.access_token, Token::new("access-1"));
        }
        // B: "try again" while it finds the Redis empty and writes back, then A's result.
        let late = loop {
            match b.refresh(&s).await {
                Ok(late) => break late,
                Err(UpstreamError::Unavailable(_)) => {
                    assert!(std::time::Instant::now() < deadline, "B never answered");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(other) => panic!("{other}"),
            }
        };
        assert_eq!(late.tokens.access_token, Token::new("access-1"));
        assert_eq!(grants.refreshes(), 1);
        // Redis reachable again: the gauge says so.
        assert_eq!(shared(&b, "reachable"), 1);
    }

    #[tokio::test]
    async fn a_second_landing_for_one_cookie_keeps_the_first_and_revokes_only_another_sign_in() {
        let redis = RedisServer::start().await.connect().await;
        let clock = ManualClock::new();
        let prefix = format!("twice{}:", rand::random::<u64>());
        let memory = |clock: &ManualClock| redis.memory_with_prefix(&prefix, Arc::new(clock.clone()));
        let (a, b) = (memory(&clock), memory(&clock));
        let key = TokenKey::of(&Token::new("refresh-0"));
        let tokens = |access: &str, refresh: &str| TokenSet {
            access_token: Token::new(access),
            access_expires_at: 10,
            refresh_token: Some(Token::new(refresh)),
            refresh_expires_at: None,
            access_issued_at: 0,
        };
        let landing = |result: TokenSet| Landing {
            session_id: "s",
            generation: 1,
            created_at: 0,
            result: Ok(result),
            handoff: Duration::from_secs(600),
            grace: Duration::from_secs(60),
        };
        let first = a.land(key, landing(tokens("access-1", "refresh-1"))).await;
        assert!(matches!(&first.outcome, Outcome::Refreshed(r) if r.generation == 2) && first.revoke.is_none());
        // The same landing sent again (Redis did not answer it in time): nothing changes.
        let again = a.land(key, landing(tokens("access-1", "refresh-1"))).await;
        assert!(matches!(&again.outcome, Outcome::Refreshed(r) if r.generation == 2) && again.revoke.is_none());
        // A second flight for the same cookie with another sign-in's tokens: the first result
        // stays, the second goes back upstream.
        let second = b.land(key, landing(tokens("access-2", "refresh-2"))).await;
        match (&second.outcome, &second.revoke) {
            (Outcome::Refreshed(r), Some(revoke)) => {
                assert_eq!((r.generation, &r.tokens.access_token), (2, &Token::new("access-1")));
                assert_eq!(revoke.refresh_token, Some(Token::new("refresh-2")));
            }
            other => panic!("{other:?}"),
        }
        // An upstream that keeps the refresh token: the kept result has the same one, so
        // nothing is revoked (it would end the result that stays).
        let kept = b.land(key, landing(tokens("access-3", "refresh-1"))).await;
        assert!(matches!(&kept.outcome, Outcome::Refreshed(r) if r.tokens.access_token == Token::new("access-1")));
        assert!(kept.revoke.is_none());
        // The next expiry of a kept token (its cookie a generation on) lands anew.
        let next = b.land(key, Landing { generation: 2, ..landing(tokens("access-4", "refresh-0")) }).await;
        assert!(matches!(&next.outcome, Outcome::Refreshed(r) if r.generation == 3));
    }

    /// Issue 32, finding 2: the claim registered its local flight before asking Redis and only
    /// the answer removed it. A request dropped meanwhile (client gone, a proxy's timeout) left
    /// a flight nobody would answer: every later request for the token on this instance joined
    /// it, waited and got "try again", until a restart.
    #[tokio::test]
    async fn a_claim_dropped_while_redis_is_paused_leaves_no_flight_behind() {
        let redis = RedisServer::start().await;
        let (clock, grants) = (ManualClock::new(), Scripted::new(&[], true));
        let (a, _) = instances_apart(&redis.url, &grants, &clock, Duration::from_secs(35)).await;
        let s = session(&clock, "s");
        let key = TokenKey::of(s.tokens.refresh_token.as_ref().unwrap());
        redis.pause();
        let dropped = tokio::time::timeout(Duration::from_millis(10), a.memory().claim(key, &s.id, s.generation)).await;
        assert!(dropped.is_err(), "no answer from a paused Redis within 10 ms");
        redis.resume();
        let refreshed = a.refresh(&s).await.expect("the next request flies instead of joining a dead flight");
        assert_eq!(refreshed.generation, 2);
        assert_eq!(grants.refreshes(), 1);
        assert_eq!(a.counts().joined, 0);
    }

    /// Issue 32, finding 8: the results' secret came from the sealing key alone, so during a
    /// rolling key rotation (some instances sealing with the new key, some with the old, all
    /// reading both) no instance could read another's results.
    #[tokio::test]
    async fn instances_amid_a_key_rotation_read_each_others_results() {
        let redis = RedisServer::start().await.connect().await;
        let (clock, grants) = (ManualClock::new(), Scripted::new(&[], true));
        let prefix = format!("rotation{}:", rand::random::<u64>());
        let (old, new) = ([1; 32], [2; 32]);
        let instance = |secrets: Vec<[u8; 32]>| {
            let clock: Arc<dyn Clock> = Arc::new(clock.clone());
            let memory: Arc<dyn RefreshMemory> = Arc::new(redis.memory_with_secrets(&prefix, secrets, clock.clone()));
            Refresher::with_memory(grants.clone(), config(), clock, memory)
        };
        let (not_yet, rotated) = (instance(vec![old, new]), instance(vec![new, old]));
        let (s, mut t) = (session(&clock, "s"), session(&clock, "t"));
        t.tokens.refresh_token = Some(Token::new("t-refresh-0"));
        let from_not_yet = not_yet.refresh(&s).await.unwrap();
        let from_rotated = rotated.refresh(&t).await.unwrap();
        assert!(matches!(rotated.known(&s).await, Known::Newer(n) if n.tokens == from_not_yet.tokens));
        assert!(matches!(not_yet.known(&t).await, Known::Newer(n) if n.tokens == from_rotated.tokens));
        assert_eq!(grants.refreshes(), 2);
    }

    /// Issue 32, finding 9: a refusal landing for a cookie generation that already has a good
    /// result (a second flight after a lease lost in an outage) replaced it.
    #[tokio::test]
    async fn a_later_refusal_never_replaces_a_good_result_of_the_same_cookie() {
        let redis = RedisServer::start().await.connect().await;
        let (clock, grants) = (ManualClock::new(), Scripted::new(&[], true));
        let prefix = format!("late{}:", rand::random::<u64>());
        let (a, b) = instances_with_prefix(&redis, &grants, &clock, &prefix);
        let s = session(&clock, "s");
        let good = a.refresh(&s).await.unwrap();
        let key = TokenKey::of(s.tokens.refresh_token.as_ref().unwrap());
        let refused = crate::memory::Landing {
            session_id: &s.id,
            generation: s.generation,
            created_at: s.created_at,
            result: Err(UpstreamError::Refused { code: "invalid_grant".into() }),
            handoff: crate::HANDOFF,
            grace: Duration::from_secs(60),
        };
        let landed = b.memory().land(key, refused).await;
        assert!(matches!(&landed.outcome, Outcome::Refreshed(r) if r.tokens == good.tokens), "{:?}", landed.outcome);
        assert!(matches!(a.known(&s).await, Known::Newer(n) if n.tokens == good.tokens));
        clock.advance(Duration::from_secs(2));
        assert!(matches!(b.memory().remembered(key).await, Some(Outcome::Refreshed(_))), "what Redis keeps");
    }

    /// Issue 32, finding 1: a provider's logout that Redis does not take is an error (the
    /// endpoint answers 400, the provider may send it again), and holds on this instance
    /// meanwhile.
    #[tokio::test]
    async fn a_provider_logout_redis_does_not_take_is_not_kept_and_holds_here() {
        let redis = RedisServer::start().await;
        let (clock, grants) = (ManualClock::new(), Scripted::new(&[], true));
        let (a, b) = instances_apart(&redis.url, &grants, &clock, Duration::from_secs(35)).await;
        let key = crate::memory::provider_key("https://id.example", crate::memory::ProviderKeyKind::Sid, "s-1");
        redis.pause();
        let kept = a.memory().end_at_provider(&key, clock.unix(), true, Duration::from_secs(3600)).await;
        assert_eq!(kept, Err(NotKept));
        assert_eq!(a.memory().ended_at_provider(std::slice::from_ref(&key)).await, Some(u64::MAX), "held here while Redis is away");
        redis.resume();
        assert_eq!(a.memory().ended_at_provider(std::slice::from_ref(&key)).await, Some(u64::MAX), "and after");
        // Sent again (the provider's retry), it reaches every instance.
        a.memory().end_at_provider(&key, clock.unix(), true, Duration::from_secs(3600)).await.expect("stored");
        assert_eq!(b.memory().ended_at_provider(&[key]).await, Some(u64::MAX));
    }

    /// A Redis restarted empty forgot every sign-out, provider end and refresh result: a
    /// signed-out cookie would open again and a late pre-rotation cookie would present its
    /// rotated token again. Each instance notices (its marker key is gone), answers "try again"
    /// meanwhile, and writes back what it knows, so the other instances know it again too.
    #[tokio::test]
    async fn a_redis_restarted_empty_gets_back_what_the_instances_knew() {
        let mut redis = RedisServer::start().await;
        let port = redis.port();
        let (clock, grants) = (ManualClock::new(), Scripted::new(&[], true));
        let (a, b) = instances_apart(&redis.url, &grants, &clock, Duration::from_secs(10)).await;
        let stored = Stored::on(&a, &clock).await;
        assert!(matches!(b.known(&stored.gone).await, Known::SignedOut));
        redis.kill().await;
        let _again = RedisServer::start_on(port).await;
        // A notices on its next question to Redis (a session it has no local answer for).
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while shared(&a, "emptied") == 0 {
            assert!(std::time::Instant::now() < deadline, "A never noticed the empty Redis");
            assert!(!matches!(a.known(&session(&clock, "someone")).await, Known::Current | Known::Newer(_)), "no answer from an empty Redis before the write-back");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // B learns from Redis what only A knew.
        stored.known_again(&b, deadline).await;
        assert_eq!(grants.refreshes(), 1);
        assert!(shared(&a, "written_back") >= 3);
    }

    /// Waits until a watcher on `url` is subscribed to another instance's flight; a connection
    /// of the test's own to it.
    async fn watching_a_flight(url: &str) -> ::redis::aio::ConnectionManager {
        let mut raw = ::redis::aio::ConnectionManager::new(::redis::Client::open(url).unwrap()).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let channels: Vec<String> = ::redis::cmd("PUBSUB").arg("CHANNELS").query_async(&mut raw).await.unwrap();
            if channels.iter().any(|c| c.contains(":done:")) {
                return raw;
            }
            assert!(std::time::Instant::now() < deadline, "no watcher ever subscribed");
            tokio::task::yield_now().await;
        }
    }

    /// An instance on `url` under `prefix`, with connections of its own and a 10-s lease.
    async fn instance(url: &str, prefix: &str, grants: &Arc<Scripted>, clock: &ManualClock) -> Refresher {
        instance_leasing(url, prefix, grants, clock, Duration::from_secs(10)).await
    }

    /// An instance on `url` under `prefix`, with connections of its own (as a process has).
    async fn instance_leasing(url: &str, prefix: &str, grants: &Arc<Scripted>, clock: &ManualClock, lease: Duration) -> Refresher {
        let clock: Arc<dyn Clock> = Arc::new(clock.clone());
        let options = crate::RedisOptions { prefix: prefix.into(), secrets: vec![[7; 32]], lease, local_capacity: 1000 };
        let memory: Arc<dyn RefreshMemory> = Arc::new(crate::RedisMemory::connect(url, options, clock.clone()).await.unwrap());
        Refresher::with_memory(grants.clone(), config(), clock, memory)
    }

    /// Asks `instance` about a session it has no local answer for until it noticed that Redis
    /// came back empty.
    async fn noticing(instance: &Refresher, clock: &ManualClock, name: &str) {
        let someone = session(clock, "someone");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while shared(instance, "emptied") == 0 {
            assert!(std::time::Instant::now() < deadline, "{name} never noticed the empty Redis");
            let _ = instance.known(&someone).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What one instance stored before Redis came back empty: a sign-out, a refresh result and
    /// a provider end.
    struct Stored {
        gone: Session,
        kept: Session,
        refreshed: TokenSet,
        ended: String,
    }

    impl Stored {
        async fn on(a: &Refresher, clock: &ManualClock) -> Self {
            let (gone, mut kept) = (session(clock, "gone"), session(clock, "kept"));
            kept.tokens.refresh_token = Some(Token::new("kept-refresh-0"));
            a.end(&gone, clock.unix() + 3600).await;
            let refreshed = a.refresh(&kept).await.unwrap().tokens;
            let ended = crate::memory::provider_key("https://id.example", crate::memory::ProviderKeyKind::Sid, "s-1");
            a.memory().end_at_provider(&ended, clock.unix(), true, Duration::from_secs(3600)).await.expect("stored");
            Stored { gone, kept, refreshed, ended }
        }

        /// Waits until `r` knows all of it from Redis again (until `deadline`); the late cookie
        /// then gets the result, without a second grant.
        async fn known_again(&self, r: &Refresher, deadline: std::time::Instant) {
            loop {
                let signed_out = matches!(r.known(&self.gone).await, Known::SignedOut);
                let upgraded = matches!(r.known(&self.kept).await, Known::Newer(n) if n.tokens == self.refreshed);
                let provider = r.memory().ended_at_provider(std::slice::from_ref(&self.ended)).await == Some(u64::MAX);
                if signed_out && upgraded && provider {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "written back: sign-out {signed_out}, result {upgraded}, provider end {provider}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(r.refresh(&self.kept).await.unwrap().tokens, self.refreshed, "the late cookie gets the result, no second grant");
        }
    }

    /// Waits until `n` clients listen on `prefix`'s facts channel.
    async fn listening(url: &str, prefix: &str, n: i64) {
        let mut raw = ::redis::aio::ConnectionManager::new(::redis::Client::open(url).unwrap()).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (_, count): (String, i64) = ::redis::cmd("PUBSUB").arg("NUMSUB").arg(format!("{prefix}facts:")).query_async(&mut raw).await.unwrap();
            if count >= n {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{count} of {n} instances listen for facts");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Issue 32: what the instance that stored a fact knew is not all a Redis restarted empty
    /// gets back. An instance running when another stores a sign-out, a provider end or a
    /// result hears of it; one started later reads it from Redis at start. The one that stored
    /// them then stops, Redis comes back empty, and the first keeps everything alive.
    #[tokio::test]
    async fn a_redis_restarted_empty_gets_back_what_a_stopped_instance_stored() {
        let mut redis = RedisServer::start().await;
        let port = redis.port();
        let (clock, grants) = (ManualClock::new(), Scripted::new(&[], true));
        let prefix = format!("replica{}:", rand::random::<u64>());
        let a = instance(&redis.url, &prefix, &grants, &clock).await;
        let b = instance(&redis.url, &prefix, &grants, &clock).await;
        listening(&redis.url, &prefix, 2).await;
        let stored = Stored::on(&a, &clock).await;
        // Started after: it reads them at start.
        let c = instance(&redis.url, &prefix, &grants, &clock).await;
        // The sign-out, the provider end, the result and the session's newest generation.
        until(|| shared(&b, "replicated") == 4 && shared(&c, "replicated") == 4).await;
        drop(a);
        redis.kill().await;
        let _again = RedisServer::start_on(port).await;
        // B notices (asked about a session it has no local answer for) and writes back.
        noticing(&b, &clock, "B").await;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        // An instance started now learns from Redis what only the stopped one stored.
        let d = instance(&redis.url, &prefix, &grants, &clock).await;
        stored.known_again(&d, deadline).await;
        assert_eq!(grants.refreshes(), 1);
        assert_eq!(shared(&c, "emptied"), 0, "C was not asked: B alone wrote it back");
    }

    /// Issue 32 (chaos run): Redis comes back empty while A refreshes a token. B notices
    /// first and writes back what it knows, but A's lease is gone: claiming at once, B would
    /// fly the token A is refreshing (a reuse). B answers "try again" for a lease's renewal
    /// period at least; A's renewal takes its lease again meanwhile, and B then waits for A's
    /// result. A request waiting on B for A's flight when Redis empties does not fly it either.
    #[tokio::test]
    async fn after_redis_came_back_empty_a_flight_elsewhere_is_not_flown_again() {
        let mut redis = RedisServer::start().await;
        let port = redis.port();
        let (clock, grants) = (ManualClock::new(), Scripted::new(&[], false));
        // A lease long enough that its renewal (every 10 s) comes after everything below but
        // the settling: the waiter and B's first claim find no lease in the emptied Redis.
        let (a, b) = instances_apart(&redis.url, &grants, &clock, Duration::from_secs(30)).await;
        let s = session(&clock, "s");
        // B has something of its own to write back (a sign-out), A a flight in the air, and a
        // request on B waits for it.
        b.end(&session(&clock, "other"), clock.unix() + 3600).await;
        let flying = refreshing(&a, &s);
        until(|| grants.entered() == 1).await;
        let early = refreshing(&b, &s);
        // The waiter's watcher is subscribed to A's flight (it joined).
        watching_a_flight(&redis.url).await;
        redis.kill().await;
        let _again = RedisServer::start_on(port).await;
        // B notices first (on a request of its own).
        // The waiter woke when the lease vanished: it claims again, and B finds out there.
        assert!(matches!(early.await.unwrap(), Err(UpstreamError::Unavailable(_))), "the waiter: try again");
        assert_eq!(grants.entered(), 1, "the waiter did not fly");
        noticing(&b, &clock, "B").await;
        until(|| shared(&b, "written_back") >= 1).await;
        // B has written back all it knows, not A's lease: it answers "try again" instead of
        // flying, until A's renewal took the lease again.
        assert!(matches!(b.refresh(&s).await, Err(UpstreamError::Unavailable(_))), "try again while settling");
        assert_eq!(grants.entered(), 1, "not flown");
        // B answers again once settled (a renewal period and a call), and then joins A's flight.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while b.memory().marks("s", s.created_at).await.unknown {
            assert!(std::time::Instant::now() < deadline, "B never answered again");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let waiting = refreshing(&b, &s);
        let flew = tokio::time::timeout(Duration::from_millis(500), until(|| grants.entered() == 2)).await;
        assert!(flew.is_err(), "B flew the token A is refreshing");
        grants.release(2);
        let waited = waiting.await.unwrap().expect("B got A's result");
        // A's own request may have stopped waiting (its limit is 5 s): never other tokens.
        if let Ok(flown) = flying.await.unwrap() {
            assert_eq!(flown.tokens, waited.tokens);
        }
        assert_eq!(waited.tokens.access_token, Token::new("access-1"));
        assert_eq!(grants.refreshes(), 1);
    }

    /// A connection that stops answering without failing (a half-open socket, a middlebox
    /// that lost its state) is made again: redis-rs's manager reconnects after an I/O error
    /// only, and every call would otherwise time out for good (seen once in the chaos run).
    #[tokio::test]
    async fn a_connection_that_stalls_without_failing_is_made_again() {
        let redis = RedisServer::start().await;
        let proxy = Stalling::start(redis.port()).await;
        let (clock, grants) = (ManualClock::new(), Scripted::new(&[], true));
        let url = format!("redis://127.0.0.1:{}/", proxy.port);
        let a = instance(&url, &format!("stall{}:", rand::random::<u64>()), &grants, &clock).await;
        let s = session(&clock, "s");
        assert!(!a.memory().marks("s", s.created_at).await.unknown);
        proxy.freeze();
        assert!(a.memory().marks("s", s.created_at).await.unknown, "the stalled connection answers nothing");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while a.memory().marks("s", s.created_at).await.unknown {
            assert!(std::time::Instant::now() < deadline, "the stalled connection was never replaced");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(shared(&a, "reconnects"), 1);
    }

    /// Issue 32: a sign-out made while this instance's Redis connection answers nothing holds
    /// here at once, and reaches the other instances once a connection answers again (the mark
    /// is sent again, without the request that made it).
    #[tokio::test]
    async fn a_sign_out_redis_did_not_take_reaches_the_other_instances_later() {
        let redis = RedisServer::start().await;
        let proxy = Stalling::start(redis.port()).await;
        let (clock, grants) = (ManualClock::new(), Scripted::new(&[], true));
        let prefix = format!("late-mark{}:", rand::random::<u64>());
        let a = instance(&format!("redis://127.0.0.1:{}/", proxy.port), &prefix, &grants, &clock).await;
        let b = instance(&redis.url, &prefix, &grants, &clock).await;
        let s = session(&clock, "s");
        assert!(matches!(b.known(&s).await, Known::Current));
        proxy.freeze();
        a.end(&s, clock.unix() + 3600).await;
        assert!(matches!(a.known(&s).await, Known::SignedOut), "here at once");
        assert!(matches!(b.known(&s).await, Known::Current), "the mark is stuck in the frozen connection");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !matches!(b.known(&s).await, Known::SignedOut) {
            assert!(std::time::Instant::now() < deadline, "the sign-out never reached the other instance");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(shared(&a, "mark_retries") >= 1);
    }

    /// Issue 32, finding 1 (the OpenID side of the sign-out above): a provider's logout whose
    /// write to Redis is lost (the connection stalled: the command never arrives) is an error
    /// to the provider and holds here at once, and it is sent on: once a connection answers
    /// again, the other instances hold it too, even if the provider never sends it again
    /// (node-oidc-provider does not).
    #[tokio::test]
    async fn a_provider_logout_redis_did_not_take_reaches_the_other_instances_later() {
        let redis = RedisServer::start().await;
        let proxy = Stalling::start(redis.port()).await;
        let (clock, grants) = (ManualClock::new(), Scripted::new(&[], true));
        let prefix = format!("late-end{}:", rand::random::<u64>());
        let a = instance(&format!("redis://127.0.0.1:{}/", proxy.port), &prefix, &grants, &clock).await;
        let b = instance(&redis.url, &prefix, &grants, &clock).await;
        let key = crate::memory::provider_key("https://id.example", crate::memory::ProviderKeyKind::Sid, "s-1");
        proxy.freeze();
        let kept = a.memory().end_at_provider(&key, clock.unix(), true, Duration::from_secs(3600)).await;
        assert_eq!(kept, Err(NotKept), "the provider is told");
        assert_eq!(a.memory().ended_at_provider(std::slice::from_ref(&key)).await, Some(u64::MAX), "here at once");
        assert_eq!(b.memory().ended_at_provider(std::slice::from_ref(&key)).await, None, "stuck in the frozen connection");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while b.memory().ended_at_provider(std::slice::from_ref(&key)).await != Some(u64::MAX) {
            assert!(std::time::Instant::now() < deadline, "the logout never reached the other instance");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(shared(&a, "mark_retries") >= 1);
    }

    /// Issue 32, finding 9: every instance measures its clock against Redis's (the watchdog's
    /// ping is TIME), since marks and results end by the writer's clock: one an hour ahead
    /// shows an hour of skew.
    #[tokio::test]
    async fn each_instance_measures_its_clock_against_redis() {
        let redis = RedisServer::start().await;
        let (clock, grants) = (ManualClock::new(), Scripted::new(&[], true));
        let a = instance(&redis.url, &format!("skew{}:", rand::random::<u64>()), &grants, &clock).await;
        clock.advance(Duration::from_secs(3600));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !(3_590_000..3_610_000).contains(&shared(&a, "clock_skew_ms")) {
            assert!(std::time::Instant::now() < deadline, "no skew measured: {}", shared(&a, "clock_skew_ms"));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A graceful stop waits for the sign-outs Redis did not take yet (sent again until it
    /// does): stopped without them, the other instances would never refuse that session.
    #[tokio::test]
    async fn a_stop_waits_for_a_sign_out_redis_did_not_take_yet() {
        let redis = RedisServer::start().await;
        let proxy = Stalling::start(redis.port()).await;
        let (clock, grants) = (ManualClock::new(), Scripted::new(&[], true));
        let prefix = format!("stop-mark{}:", rand::random::<u64>());
        let a = instance(&format!("redis://127.0.0.1:{}/", proxy.port), &prefix, &grants, &clock).await;
        let b = instance(&redis.url, &prefix, &grants, &clock).await;
        let s = session(&clock, "s");
        proxy.freeze();
        a.end(&s, clock.unix() + 3600).await;
        assert!(matches!(b.known(&s).await, Known::Current), "the mark is stuck in the frozen connection");
        assert!(a.drain(Duration::from_secs(30)).await, "the mark got through before the stop ended");
        assert!(matches!(b.known(&s).await, Known::SignedOut), "stored for the other instances");
    }

    /// A loopback TCP proxy to a port whose connections made so far can be frozen: nothing
    /// forwarded either way any more, the sockets left open. Connections made after go through.
    struct Stalling {
        port: u16,
        frozen_below: Arc<AtomicU64>,
        next: Arc<AtomicU64>,
    }

    impl Stalling {
        async fn start(target: u16) -> Self {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let (frozen_below, next) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
            let (frozen, numbers) = (frozen_below.clone(), next.clone());
            tokio::spawn(async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    let id = numbers.fetch_add(1, Ordering::SeqCst);
                    let Ok(outbound) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else { continue };
                    let ((in_read, in_write), (out_read, out_write)) = (inbound.into_split(), outbound.into_split());
                    for (mut from, mut to) in [
                        (Box::new(in_read) as Box<dyn tokio::io::AsyncRead + Send + Unpin>, Box::new(out_write) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>),
                        (Box::new(out_read), Box::new(in_write)),
                    ] {
                        let frozen = frozen.clone();
                        tokio::spawn(async move {
                            let mut buf = vec![0u8; 16 * 1024];
                            loop {
                                let Ok(n) = from.read(&mut buf).await else { return };
                                if n == 0 {
                                    return;
                                }
                                if id < frozen.load(Ordering::SeqCst) {
                                    // Held open, answering nothing, for as long as the test runs.
                                    std::future::pending::<()>().await;
                                }
                                if to.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        });
                    }
                }
            });
            Stalling { port, frozen_below, next }
        }

        /// Freezes every connection made so far.
        fn freeze(&self) {
            self.frozen_below.store(self.next.load(Ordering::SeqCst), Ordering::SeqCst);
        }
    }

    fn instances_with_prefix(redis: &Connected, grants: &Arc<Scripted>, clock: &ManualClock, prefix: &str) -> (Refresher, Refresher) {
        let one = || {
            let clock: Arc<dyn Clock> = Arc::new(clock.clone());
            let memory: Arc<dyn RefreshMemory> = Arc::new(redis.memory_with_prefix(prefix, clock.clone()));
            Refresher::with_memory(grants.clone(), config(), clock, memory)
        };
        (one(), one())
    }
}

/// Issue 33: the builder builds the store the options name, or says what to do — never the
/// in-process memory in place of the one configured.
#[tokio::test]
async fn the_builder_builds_the_configured_store_or_says_what_to_do() {
    let build = |config: crate::SessionConfig| {
        SessionManager::builder(Arc::new(nowhere()))
            .options(config.validate().unwrap())
            .keys(KeyRing::new(&[(1, [9; 32])]).unwrap())
            .build()
    };
    let error = build(crate::SessionConfig::default()).err().expect("no file named").to_string();
    assert!(error.contains("session.sqlite_path") && error.contains("store = \"memory\""), "{error}");
    let redis = crate::SessionConfig {
        store: "redis".into(),
        redis_url: SecretString::from("redis://127.0.0.1:9/0".to_string()),
        ..crate::SessionConfig::default()
    };
    let error = build(redis).err().expect("not connected").to_string();
    assert!(error.contains("RedisMemory::connect") && error.contains("SessionManagerBuilder::memory"), "{error}");
    #[cfg(feature = "sqlite")]
    {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory.sqlite3");
        let config = || crate::SessionConfig { sqlite_path: path.display().to_string(), ..crate::SessionConfig::default() };
        let manager = build(config()).expect("the file memory");
        assert!(path.exists(), "the file is made");
        let error = build(config()).err().expect("the file is taken").to_string();
        assert!(error.contains("in use by another process"), "{error}");
        drop(manager);
    }
}
