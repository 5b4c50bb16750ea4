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
use crate::memory::{Claim, InProcess, Landed, Landing, Marks, Outcome, RefreshMemory, TokenKey};
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
}

struct Scripted {
    script: Mutex<VecDeque<Script>>,
    /// Refreshes wait for a permit: a test holds a flight in the air by giving none.
    gate: Semaphore,
    refreshes: AtomicU64,
    /// Refreshes that reached the upstream (held at the gate or past it).
    entered: AtomicU64,
    revoke_failures: AtomicU64,
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

/// An unsigned JWT-shaped token naming `sub` (what the refresher reads; it verifies nothing).
fn jwt_of(sub: &str) -> String {
    use base64::Engine;
    let part = |json: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
    format!("{}.{}.sig", part(r#"{"alg":"none"}"#.into()), part(format!(r#"{{"sub":"{sub}","exp":9999999999}}"#)))
}

/// Which refresh memory a test runs on: the in-process one, or the same behind a store whose
/// every answer takes a few turns of the runtime (as a network store's would), to show the
/// refresh logic holds whatever the [`RefreshMemory`] implementation.
#[derive(Clone, Copy, Debug)]
enum Memory {
    InProcess,
    Remote,
}

impl Memory {
    fn store(self, config: &RefreshConfig, clock: &Arc<dyn Clock>) -> Arc<dyn RefreshMemory> {
        let local = InProcess::new(config.capacity, config.ended_capacity, clock.clone());
        match self {
            Memory::InProcess => Arc::new(local),
            Memory::Remote => Arc::new(Remote { local, calls: AtomicU64::new(0) }),
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

    fn marks<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Marks> {
        Box::pin(async move {
            self.hop().await;
            self.local.marks(session_id).await
        })
    }

    fn end_at_provider<'a>(&'a self, key: &'a str, at: u64, every: bool, left: Duration) -> BoxFuture<'a, ()> {
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

    fn sign_out<'a>(&'a self, session_id: &'a str, left: Duration) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.hop().await;
            self.local.sign_out(session_id, left).await
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
    };
}

on_each_memory!(
    a_result_is_kept_for_the_handoff_until_delivered_then_for_the_grace_only,
    sign_out_wins_over_a_flight_that_lands_after_it,
    a_non_rotating_upstream_gets_a_new_refresh_for_every_expiry,
    a_panicking_refresh_does_not_poison_the_token,
    an_outage_is_not_remembered_and_the_next_request_tries_again,
    joiners_of_a_held_flight_share_one_grant,
    revocation_is_retried_and_ended_marks_outlive_churn,
    another_subjects_tokens_end_the_session,
    a_kept_refresh_token_keeps_its_known_end,
    an_upgraded_stale_cookie_counts_as_delivered,
    a_renewal_finishing_after_the_headers_left_is_kept_for_the_next_request,
    short_lived_tokens_are_not_refreshed_on_every_request,
    sign_out_revokes_the_newest_tokens,
);

/// Lets spawned tasks run until `done` holds (each check yields to the runtime; no sleeping),
/// for 10 s at most.
async fn until(mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "the condition never held");
        tokio::task::yield_now().await;
    }
}

async fn a_result_is_kept_for_the_handoff_until_delivered_then_for_the_grace_only(memory: Memory) {
    let (clock, grants) = (ManualClock::new(), Scripted::new(&[], true));
    let r = refresher(&grants, &clock, memory);
    let old = session(&clock, "s");
    let new = r.refresh(&old).await.unwrap();
    assert_eq!(new.generation, 2);
    // Not delivered yet: the next request with the old cookie gets it for ten minutes.
    clock.advance(Duration::from_secs(9 * 60));
    assert!(matches!(r.known(&old).await, Known::Newer(s) if s.tokens == new.tokens));
    // Delivered: only the grace period from now on.
    r.delivered(&old, &new).await;
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
    let waiter = tokio::spawn({
        let (r, s) = (r.clone(), s.clone());
        async move { r.refresh(&s).await }
    });
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
    r.delivered(&first, &second).await;
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
    let first = r.refresh(&s).await;
    assert!(matches!(first, Err(UpstreamError::Unavailable(_))), "{first:?}");
    let second = r.refresh(&s).await.expect("a new flight after the panic");
    assert_eq!(second.tokens.access_token, Token::new("access-2"));
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
        .map(|_| {
            let (r, s) = (r.clone(), s.clone());
            tokio::spawn(async move { r.refresh(&s).await })
        })
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

/// An upstream that answers a refresh with someone else's tokens (a JWT naming another `sub`)
/// does not hand that person's session to this one: the refresh is a refusal, every waiter gets
/// it, and it is remembered as one (no second grant for the same token).
async fn another_subjects_tokens_end_the_session(memory: Memory) {
    let (clock, grants) = (ManualClock::new(), Scripted::new(&[Script::OtherSubject], true));
    let r = refresher(&grants, &clock, memory);
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
    let endpoints = UpstreamEndpoints::at(&"http://127.0.0.1:9".parse().unwrap(), OAUTH2_PATHS.into()).unwrap();
    let client = UpstreamClient::new(ClientConfig {
        endpoints,
        profile: ProfileMap::oidc(),
        registration_fields: Fields::default(),
        client_id: "c".into(),
        client_secret: SecretString::from("s".to_string()),
        auth: ClientAuth::ClientSecretBasic,
        timeout: Duration::from_millis(100),
        connect_timeout: Duration::from_millis(100),
    })
    .unwrap();
    let options = crate::SessionOptions {
        cookie_name: COOKIE.into(),
        same_site: SameSite::Lax,
        keys: None,
        limits: Limits::default(),
        refresh: config(),
    };
    let clock: Arc<dyn Clock> = Arc::new(clock.clone());
    let manager = SessionManager::builder(Arc::new(client))
        .options(options.clone())
        .keys(KeyRing::new(&[(1, [9; 32])]).unwrap())
        .grants(grants.clone())
        .memory(memory.store(&options.refresh, &clock))
        .clock(clock)
        .build()
        .unwrap();
    Arc::new(manager)
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

/// Finding 4: a stale cookie upgraded from the remembered results shortens them to the grace.
async fn an_upgraded_stale_cookie_counts_as_delivered(memory: Memory) {
    let (clock, grants) = (ManualClock::new(), Scripted::new(&[], true));
    let m = manager(&grants, &clock, memory);
    let old = session(&clock, "s");
    // A flight whose response could not carry the cookie: kept for the hand-off.
    let new = m.refresher().refresh(&old).await.unwrap();
    let cookies = jar(&m, &old);
    let loaded = m.load(&cookies).await;
    assert_eq!(loaded.session.unwrap().tokens, new.tokens, "upgraded");
    assert_eq!(in_jar(&cookies).unwrap().generation, 2, "and written");
    clock.advance(Duration::from_secs(61));
    assert!(matches!(m.refresher().known(&old).await, Known::Current), "only the grace period after delivery");
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

