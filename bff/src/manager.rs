//! The session manager: turns the request's cookies into a live session (lifetime limits,
//! key rotation, refreshing an access token about to expire) and signs people in and out.
//! One per process, shared; it owns the upstream (any [`Upstream`]) and the key ring.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::clock::Clock;

use rand::RngCore;
use tower_cookies::Cookies;

use crate::client::{RegisterError, UpstreamError};
use crate::grants::TokenGrants;
pub use crate::upstream::SignInError;
use crate::upstream::{Registered, Upstream};
use crate::cookies::{self, CookiePolicy, ReadSession};
use crate::refresh::{Known, RefreshConfig, Refresher, Revocation, SIGNED_OUT};
use crate::config::{SessionOptions, Store};
use crate::memory::{provider_key, InProcess, NotKept, ProviderKeyKind, RefreshMemory};
use crate::seal::{KeyError, KeyRing};
use crate::session::{Freshness, Profile, ProviderSession, Session, Token, TokenSet};

/// How long sessions and tokens may live.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Refresh an access token that expires within this window before using it (at most half
    /// the token's lifetime: see [`Session::freshness`]).
    pub refresh_skew: Duration,
    /// A session unused for this long is over.
    pub idle_timeout: Duration,
    /// A session is over this long after sign-in, however active.
    pub absolute_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            refresh_skew: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(14 * 24 * 3600),
            absolute_timeout: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// What a request whose session's marks cannot be read is told.
pub const MEMORY_UNAVAILABLE: &str = "the refresh memory cannot be reached; try again (still signed in)";

/// The idle clock in the cookie is moved forward at most this often (each move rewrites it).
const TOUCH_EVERY_SECS: u64 = 60;

/// Why a session that existed is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Idle or absolute limit, or the refresh token's own expiry.
    Expired,
    /// The upstream refused to refresh it (revoked, reused, unknown).
    Revoked,
}

/// A request's session after [`SessionManager::load`].
#[derive(Debug, Default)]
pub struct Loaded {
    /// The session, when the request has one that is still good.
    pub session: Option<Session>,
    /// A session came in and ended here; pages say so on the sign-in page.
    pub ended: Option<Ended>,
    /// The access token needed a refresh and the upstream could not be reached: the session is
    /// kept (cookie unchanged), calls that need the upstream will fail with "unavailable".
    pub refresh_failed: bool,
    /// Whether the request's session signed out could not be told (the refresh memory does
    /// not answer): no session, the cookie unchanged, and the request answered "try again,
    /// still signed in" ([`crate::SessionLayer`] does) — never a page of a session that may
    /// have signed out.
    pub unavailable: bool,
}

/// Opens, refreshes, writes and ends sessions; one per process, shared by every request.
pub struct SessionManager {
    clock: Arc<dyn Clock>,
    upstream: Arc<dyn Upstream>,
    refresher: Refresher,
    ring: KeyRing,
    cookie: CookiePolicy,
    limits: Limits,
}

impl std::fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionManager")
            .field("cookie", &self.cookie)
            .field("ring", &self.ring)
            .field("limits", &self.limits)
            .field("refresher", &self.refresher)
            .finish_non_exhaustive()
    }
}

/// Unix seconds by the system clock.
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Builds a [`SessionManager`]: the upstream, the keys, and everything else defaulted from
/// [`SessionOptions::default`] until set.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use tokenless_bff::{KeyRing, SessionConfig, SessionManager, Upstream};
/// # fn build(upstream: Arc<dyn Upstream>) -> Result<SessionManager, Box<dyn std::error::Error>> {
/// // Sign-outs kept in a file (the default store), so that they survive a restart.
/// let options = SessionConfig { sqlite_path: "/var/lib/app/refresh-memory.sqlite3".into(), ..SessionConfig::default() }.validate()?;
/// let manager = SessionManager::builder(upstream)
///     .options(options)
///     .keys(KeyRing::parse("1:qa0WxZ2U2Xo3gqkQ7eYfXb5QvI8cJ6Jr6j9n0m7Q4xs=")?)
///     .secure(true)
///     .build()?;
/// # Ok(manager) }
/// ```
pub struct SessionManagerBuilder {
    upstream: Arc<dyn Upstream>,
    grants: Option<Arc<dyn TokenGrants>>,
    ring: Option<KeyRing>,
    options: SessionOptions,
    secure: bool,
    clock: Arc<dyn Clock>,
    memory: Option<Arc<dyn RefreshMemory>>,
}

/// Why [`SessionManagerBuilder::build`] could not build.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Neither [`SessionManagerBuilder::keys`] nor the options' `keys` gave a key.
    #[error("no session key: configure `keys` (`ID:BASE64`, 32 bytes; `openssl rand -base64 32`) or give a KeyRing")]
    NoKey,
    /// The options' keys do not parse.
    #[error("the session keys do not parse: {0}")]
    Keys(#[from] KeyError),
    /// `store = "sqlite"` without a file.
    #[error("session.sqlite_path is empty: name the file the refresh memory is kept in (sign-outs survive restarts), or set session.store = \"memory\" to keep it in this process (forgotten at restart)")]
    NoSqlitePath,
    /// A store whose feature this build does not have.
    #[error("session.store = \"{store}\" needs tokenless-bff's `{feature}` feature (features = [\"{feature}\"] in Cargo.toml)")]
    StoreNotBuilt {
        /// The configured store.
        store: &'static str,
        /// The feature that builds it.
        feature: &'static str,
    },
    /// `store = "redis"`: connecting is asynchronous, so the app connects and hands it over.
    #[error("session.store = \"redis\": connect with RedisMemory::connect(url, options, clock).await and give it to SessionManagerBuilder::memory (feature `redis`)")]
    RedisNotGiven,
    /// The SQLite file could not be opened.
    #[cfg(feature = "sqlite")]
    #[error(transparent)]
    Sqlite(#[from] crate::SqliteStartError),
}

impl SessionManagerBuilder {
    /// The validated session settings (cookie name and SameSite, configured keys, limits,
    /// refresh waits and memory).
    pub fn options(mut self, options: SessionOptions) -> Self {
        self.options = options;
        self
    }

    /// The key ring sealing the cookie (instead of the options' `keys`).
    pub fn keys(mut self, ring: KeyRing) -> Self {
        self.ring = Some(ring);
        self
    }

    /// The site is served over https: the cookie gets `Secure` and the `__Host-` prefix.
    pub fn secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// The clock expiries are measured with (tests inject a manual one).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Where the refresh machinery remembers flights and results, instead of the options'
    /// `store` (a store several instances share: `RedisMemory` after connecting, feature `redis`).
    pub fn memory(mut self, memory: Arc<dyn RefreshMemory>) -> Self {
        self.memory = Some(memory);
        self
    }

    /// Refresh and revocation answered by `grants` instead of the upstream (test doubles).
    pub fn grants(mut self, grants: Arc<dyn TokenGrants>) -> Self {
        self.grants = Some(grants);
        self
    }

    /// The manager.
    pub fn build(self) -> Result<SessionManager, BuildError> {
        let ring = match (self.ring, self.options.key_ring()) {
            (Some(ring), _) => ring,
            (None, Some(ring)) => ring?,
            (None, None) => return Err(BuildError::NoKey),
        };
        let grants = self.grants.unwrap_or_else(|| self.upstream.clone());
        let o = &self.options;
        let memory: Arc<dyn RefreshMemory> = match (self.memory, &o.store) {
            (Some(memory), _) => memory,
            (None, Store::Memory) => Arc::new(InProcess::new(o.refresh.capacity, o.refresh.ended_capacity, self.clock.clone())),
            (None, Store::Sqlite { path: None }) => return Err(BuildError::NoSqlitePath),
            (None, Store::Sqlite { path: Some(path) }) => sqlite_memory(path, &ring, o, self.clock.clone())?,
            (None, Store::Redis { .. }) if cfg!(feature = "redis") => return Err(BuildError::RedisNotGiven),
            (None, Store::Redis { .. }) => return Err(BuildError::StoreNotBuilt { store: "redis", feature: "redis" }),
        };
        let refresher = Refresher::with_memory(grants, o.refresh, self.clock.clone(), memory);
        Ok(SessionManager {
            clock: self.clock,
            upstream: self.upstream,
            refresher,
            ring,
            cookie: o.cookie_policy(self.secure),
            limits: o.limits,
        })
    }
}

/// The SQLite memory of `store = "sqlite"`, its results sealed with secrets of `ring`.
#[cfg(feature = "sqlite")]
fn sqlite_memory(path: &std::path::Path, ring: &KeyRing, o: &SessionOptions, clock: Arc<dyn Clock>) -> Result<Arc<dyn RefreshMemory>, BuildError> {
    let options = crate::SqliteOptions {
        secrets: ring.derive_secrets("tokenless/v1/sqlite-refresh-results"),
        capacity: o.refresh.capacity,
        ended_capacity: o.refresh.ended_capacity,
    };
    Ok(Arc::new(crate::SqliteMemory::open(path, options, clock)?))
}

#[cfg(not(feature = "sqlite"))]
fn sqlite_memory(_: &std::path::Path, _: &KeyRing, _: &SessionOptions, _: Arc<dyn Clock>) -> Result<Arc<dyn RefreshMemory>, BuildError> {
    Err(BuildError::StoreNotBuilt { store: "sqlite", feature: "sqlite" })
}

impl SessionManager {
    /// A builder for the manager of sessions signed in against `upstream`. Until
    /// [`SessionManagerBuilder::options`] says otherwise, the refresh memory is this process's
    /// (a manager built in code: tests, examples); options read from configuration name their
    /// store (`sqlite` unless set).
    pub fn builder(upstream: Arc<dyn Upstream>) -> SessionManagerBuilder {
        SessionManagerBuilder {
            upstream,
            grants: None,
            ring: None,
            options: SessionOptions { store: Store::Memory, ..SessionOptions::default() },
            secure: false,
            clock: crate::clock::system(),
            memory: None,
        }
    }

    /// A manager from its parts (the builder is the usual way).
    pub fn new(
        upstream: Arc<dyn Upstream>,
        ring: KeyRing,
        cookie: CookiePolicy,
        limits: Limits,
        refresh: RefreshConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let grants: Arc<dyn TokenGrants> = upstream.clone();
        Self::with_grants(upstream, grants, ring, cookie, limits, refresh, clock)
    }

    /// As [`SessionManager::new`], with refresh and revocation answered by `grants` instead of
    /// the upstream (tests drive every interleaving through a double).
    pub fn with_grants(
        upstream: Arc<dyn Upstream>,
        grants: Arc<dyn TokenGrants>,
        ring: KeyRing,
        cookie: CookiePolicy,
        limits: Limits,
        refresh: RefreshConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let refresher = Refresher::new(grants, refresh, clock.clone());
        SessionManager { clock, upstream, refresher, ring, cookie, limits }
    }

    /// Unix seconds by the manager's clock.
    pub fn now(&self) -> u64 {
        self.clock.unix()
    }

    /// Single-flight refresh, rotation grace, newest-wins bookkeeping and their counters.
    pub fn refresher(&self) -> &Refresher {
        &self.refresher
    }

    /// Waits, at most `within`, for what requests left running: refreshes in flight (their
    /// results stored for the requests and instances that come later), revocations being
    /// retried, sessions the provider ended being closed, back-channel logouts being stored,
    /// and what the memory still sends (sign-outs and provider logouts a shared store did not
    /// take at once: [`crate::RefreshMemory::settle`]). Call it when the server has stopped
    /// taking requests (axum's graceful shutdown) and before the process exits: a refresh
    /// whose answer dies with the process leaves the browser its old refresh token, which the
    /// upstream has retired — presented again, that is reuse, and the sign-in ends. `true`
    /// when nothing was left.
    pub async fn drain(&self, within: std::time::Duration) -> bool {
        self.refresher.drain(within).await
    }

    /// The upstream every sign-in, refresh and resource call goes to.
    pub fn upstream(&self) -> &dyn Upstream {
        &*self.upstream
    }

    /// The session cookie's attributes.
    pub fn cookie_policy(&self) -> &CookiePolicy {
        &self.cookie
    }

    /// How long sessions may live.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The moment a session is over at the latest: its refresh token's expiry or the absolute
    /// limit, whichever is first.
    pub fn ends_at(&self, session: &Session) -> u64 {
        session.ends_at().min(session.created_at.saturating_add(self.limits.absolute_timeout.as_secs()))
    }

    /// Opens the request's session and brings it up to date: an unreadable cookie is removed,
    /// a session past its limits is ended, an access token about to expire is refreshed, a
    /// value sealed with an old key is sealed again. Every change goes into `cookies`, so it
    /// reaches the browser on this response.
    pub async fn load(&self, cookies: &Cookies) -> Loaded {
        let now = self.now();
        let (mut session, stale_key) = match cookies::read(&self.cookie, &self.ring, cookies) {
            ReadSession::Absent => return Loaded::default(),
            ReadSession::Invalid => {
                tracing::debug!("session cookie does not open; removing it");
                cookies::clear(&self.cookie, cookies);
                return Loaded::default();
            }
            ReadSession::Valid { session, stale_key } => (session, stale_key),
        };
        let incoming = session.clone();
        let mut rewrite = stale_key;
        // Another request may have rotated this cookie's refresh token already, or signed out.
        match self.refresher.arrived(&session).await {
            Known::Current => {}
            Known::Newer(newer) => {
                tracing::debug!(session = %session.id, generation = newer.generation, "the cookie was rotated already; using the newest tokens");
                session = newer;
                rewrite = true;
            }
            Known::Ended => {
                tracing::info!(session = %session.id, "the cookie's session ended; removing it");
                cookies::clear(&self.cookie, cookies);
                return Loaded { ended: Some(Ended::Revoked), ..Loaded::default() };
            }
            // Refused, but the cookie is not deleted: the browser's cookie of that name may be a
            // new session already (signed in again in another tab while this request was on
            // its way), and deleting it would sign the user out of that one.
            Known::SignedOut => {
                tracing::info!(session = %session.id, "the cookie's session signed out; refused");
                return Loaded { ended: Some(Ended::Revoked), ..Loaded::default() };
            }
            Known::Unavailable => {
                tracing::warn!(session = %session.id, "the refresh memory cannot tell whether this session signed out; try again");
                return Loaded { unavailable: true, ..Loaded::default() };
            }
            // Ended by the provider: refused now, without asking it; marked signed out here
            // (later requests stop at the mark, a refresh in flight lands as a refusal) and its
            // tokens revoked in the background — an offline grant may outlive the provider's
            // session.
            Known::EndedAtProvider => {
                tracing::info!(session = %session.id, "the provider ended the cookie's session; refused");
                let until = session.created_at.saturating_add(self.limits.absolute_timeout.as_secs());
                let refresher = self.refresher.clone();
                self.refresher.in_background(async move {
                    let newest = refresher.end(&session, until).await;
                    refresher.revoke(newest.tokens).await;
                });
                return Loaded { ended: Some(Ended::Revoked), ..Loaded::default() };
            }
        }
        let idle_over = now.saturating_sub(session.last_seen_at) > self.limits.idle_timeout.as_secs();
        if idle_over || now >= self.ends_at(&session) {
            tracing::info!(session = %session.id, idle = idle_over, "session reached its time limit");
            cookies::clear(&self.cookie, cookies);
            return Loaded { ended: Some(Ended::Expired), ..Loaded::default() };
        }
        let mut refresh_failed = false;
        match session.freshness(now, self.limits.refresh_skew.as_secs()) {
            Freshness::Fresh => {}
            Freshness::Over => {
                cookies::clear(&self.cookie, cookies);
                return Loaded { ended: Some(Ended::Expired), ..Loaded::default() };
            }
            Freshness::Refresh => match self.refresher.refresh(&session).await {
                Ok(refreshed) => {
                    session = refreshed;
                    rewrite = true;
                }
                Err(UpstreamError::Refused { code }) => {
                    tracing::info!(session = %session.id, %code, "refresh refused; signing out");
                    if code != SIGNED_OUT {
                        cookies::clear(&self.cookie, cookies);
                    }
                    return Loaded { ended: Some(Ended::Revoked), ..Loaded::default() };
                }
                Err(e) => {
                    tracing::warn!(session = %session.id, error = %e, "refresh failed; keeping the session");
                    refresh_failed = true;
                }
            },
        }
        if now.saturating_sub(session.last_seen_at) >= TOUCH_EVERY_SECS {
            session.last_seen_at = now;
            rewrite = true;
        }
        // A session upgraded from the remembered results is written even when this request's
        // own refresh failed: the browser must not keep presenting a rotated token. Written is
        // not carried: the results stay for the hand-off until a request arrives with them.
        if rewrite && (!refresh_failed || session.generation > incoming.generation) {
            self.store(cookies, &session, now).await;
        }
        Loaded { session: Some(session), ended: None, refresh_failed, unavailable: false }
    }

    /// New tokens for a session whose access token `refused` the upstream just turned down:
    /// the newest already known when another request rotated them, else one refresh (single
    /// flight). Until a request arrives carrying the result, it is kept for the session's next
    /// request.
    pub async fn renew(&self, session: &Session, refused: &Token) -> Result<Session, UpstreamError> {
        let current = match self.refresher.known(session).await {
            Known::Current => session.clone(),
            Known::Newer(newer) => newer,
            Known::Ended => return Err(UpstreamError::Refused { code: "session_ended".into() }),
            Known::SignedOut | Known::EndedAtProvider => {
                return Err(UpstreamError::Refused { code: SIGNED_OUT.into() })
            }
            Known::Unavailable => return Err(UpstreamError::Unavailable(MEMORY_UNAVAILABLE.into())),
        };
        if current.tokens.access_token != *refused {
            return Ok(current);
        }
        self.refresher.refresh(&current).await
    }

    /// Writes `session` into the response's cookies, unless a newer generation of it was issued
    /// since (or it signed out): an older cookie would put back a retired refresh token.
    /// `true` when written.
    pub async fn store(&self, cookies: &Cookies, session: &Session, now: u64) -> bool {
        if self.superseded(session).await {
            return false;
        }
        self.write(cookies, session, now);
        true
    }

    /// Whether a newer generation of `session` was issued since (or it signed out): writing it
    /// would put back a retired refresh token.
    pub(crate) async fn superseded(&self, session: &Session) -> bool {
        let superseded = self.refresher.is_superseded(session).await;
        if superseded {
            tracing::debug!(session = %session.id, generation = session.generation, "a newer cookie was issued; not writing this one");
        }
        superseded
    }

    /// Writes `session` into the response's cookies, its lifetime the session's end.
    pub(crate) fn write(&self, cookies: &Cookies, session: &Session, now: u64) {
        let max_age = Duration::from_secs(self.ends_at(session).saturating_sub(now));
        cookies::write(&self.cookie, &self.ring, cookies, session, max_age);
    }

    /// Keeps what a failed plain form post typed for the page the browser goes back to
    /// (`cookies::write_form_memory`); `false` when it does not fit in one cookie.
    pub fn remember_form(&self, cookies: &Cookies, bytes: &[u8]) -> bool {
        cookies::write_form_memory(&self.cookie, &self.ring, cookies, bytes)
    }

    /// Takes (and deletes) the form memory, if the request carries one that opens.
    pub fn take_form(&self, cookies: &Cookies) -> Option<Vec<u8>> {
        cookies::take_form_memory(&self.cookie, &self.ring, cookies)
    }

    /// Keeps a sign-in begun at an OpenID provider until its callback, sealed in a cookie of
    /// its own (`cookies::write_pending`); `false` when it cannot be kept.
    pub fn keep_pending(&self, cookies: &Cookies, state: &str, bytes: &[u8]) -> bool {
        cookies::write_pending(&self.cookie, &self.ring, cookies, state, bytes)
    }

    /// Takes (and deletes) the sign-in begun with `state`, if this browser began it.
    pub fn take_pending(&self, cookies: &Cookies, state: &str) -> Option<Vec<u8>> {
        cookies::take_pending(&self.cookie, &self.ring, cookies, state)
    }

    /// A new session (a new id) for a sign-in made elsewhere (an OpenID provider's callback):
    /// the tokens, the profile and the provider's sign-in as given, the cookie written.
    pub async fn sign_in_with(
        &self,
        cookies: &Cookies,
        tokens: TokenSet,
        profile: Profile,
        provider: Option<ProviderSession>,
    ) -> Session {
        let now = self.now();
        let mut session = Session::new(new_session_id(), now, tokens, profile);
        session.provider = provider;
        // A new id: nothing newer can exist, so nothing is asked (a shared memory that does not
        // answer must not turn a sign-in into a success without a cookie).
        self.write(cookies, &session, now);
        tracing::info!(session = %session.id, user = %session.profile.id, "signed in");
        session
    }

    /// Signs in upstream, then reads the profile; on success the session cookie is written.
    pub async fn sign_in(
        &self,
        cookies: &Cookies,
        email: &str,
        password: &str,
    ) -> Result<Session, SignInError> {
        let now = self.now();
        let tokens = self.upstream.sign_in(email, password, now).await?;
        Ok(self.start(cookies, tokens, now).await?)
    }

    /// A new session (a new id) for tokens just issued: the profile read, the cookie written.
    async fn start(&self, cookies: &Cookies, tokens: TokenSet, now: u64) -> Result<Session, UpstreamError> {
        let profile: Profile = match self.upstream.profile(&tokens).await {
            Ok(profile) => profile,
            // No session will carry these tokens: the sign-in they are is ended upstream too
            // (retried in the background on an outage), not left alive until it expires.
            Err(e) => {
                tracing::warn!(error = %e, "signed in upstream but the profile could not be read; ending that sign-in");
                self.refresher.revoke(tokens).await;
                return Err(e);
            }
        };
        let session = Session::new(new_session_id(), now, tokens, profile);
        // A new id: nothing newer can exist (see `sign_in_with`).
        self.write(cookies, &session, now);
        tracing::info!(session = %session.id, user = %session.profile.id, "signed in");
        Ok(session)
    }

    /// Creates the account upstream and signs in with it (or keeps the sign-in the upstream
    /// gave with the account).
    pub async fn register(
        &self,
        cookies: &Cookies,
        email: &str,
        name: &str,
        password: &str,
    ) -> Result<Session, RegisterError> {
        let now = self.now();
        if let Registered::SignedIn(tokens) = self.upstream.register(email, name, password, now).await? {
            return Ok(self.start(cookies, tokens, now).await?);
        }
        match self.sign_in(cookies, email, password).await {
            Ok(session) => Ok(session),
            Err(SignInError::InvalidCredentials) => Err(RegisterError::Upstream(UpstreamError::Unexpected(
                "the new account's credentials were refused".into(),
            ))),
            Err(SignInError::Upstream(e)) => Err(RegisterError::Upstream(e)),
        }
    }

    /// Ends `session` everywhere this process can see: marked signed out until its absolute
    /// end (its cookies refused, a refresh in flight for it revoked when it lands), and its
    /// newest refresh token revoked upstream (RFC 7009; the access token when there is none).
    /// The newest: a refresh may have rotated the cookie's token already, and an upstream may
    /// answer 200 to revoking a retired token without revoking its successor.
    pub async fn end(&self, session: &Session) -> Revocation {
        // Until the absolute end, which bounds every generation of the session.
        let until = session.created_at.saturating_add(self.limits.absolute_timeout.as_secs());
        let newest = self.refresher.end(session, until).await;
        let revocation = self.refresher.revoke(newest.tokens).await;
        tracing::info!(session = %session.id, ?revocation, "session ended");
        revocation
    }

    /// Ends the sessions an OpenID provider's back-channel logout names: every session of its
    /// `sid` when it names one (and the person's sessions whose ID token had no `sid`, that
    /// began by now), else every session of its person `sub` that began by now (a sign-in in
    /// the same second included: seconds are the sessions' clock).
    /// The next request with such a cookie is signed out without asking the provider
    /// ([`Known::EndedAtProvider`]). Remembered until the sessions' absolute limit.
    /// [`NotKept`] when the memory could not store it for every instance (a shared store that
    /// does not answer): this instance refuses those sessions all the same, and the caller
    /// says the logout failed, so the provider can send it again.
    pub async fn end_at_provider(&self, issuer: &str, session_id: Option<&str>, subject: Option<&str>) -> Result<(), NotKept> {
        let (memory, now, left) = (self.refresher.memory(), self.now(), self.limits.absolute_timeout);
        let kept = match (session_id, subject) {
            (Some(sid), subject) => {
                // Every session of that sid, whenever it began: the provider never reuses one.
                let by_sid = memory.end_at_provider(&provider_key(issuer, ProviderKeyKind::Sid, sid), now, true, left).await;
                // The person's sessions whose ID token named no sid may be this one.
                let by_sub = match subject {
                    Some(sub) => {
                        let key = provider_key(issuer, ProviderKeyKind::SubWithoutSid, sub);
                        memory.end_at_provider(&key, now, false, left).await
                    }
                    None => Ok(()),
                };
                by_sid.and(by_sub)
            }
            (None, Some(sub)) => memory.end_at_provider(&provider_key(issuer, ProviderKeyKind::Sub, sub), now, false, left).await,
            (None, None) => return Ok(()),
        };
        match kept {
            Ok(()) => tracing::info!(%issuer, by_session = session_id.is_some(), "the provider ended sessions (back-channel logout)"),
            Err(NotKept) => tracing::error!(%issuer, "a back-channel logout could not be stored where every instance sees it (held on this one, and sent on until the shared store takes it)"),
        }
        kept
    }

    /// Signs out: ends the session (see [`SessionManager::end`]) and deletes every session
    /// cookie, even when revocation fails. `None` when there was no session.
    pub async fn sign_out(&self, cookies: &Cookies, session: Option<&Session>) -> Option<Revocation> {
        let revocation = match session {
            Some(session) => Some(self.end(session).await),
            None => None,
        };
        cookies::clear(&self.cookie, cookies);
        revocation
    }
}

fn new_session_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}
