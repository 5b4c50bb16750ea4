//! The state every handler, server function and component on the server can reach, and how it
//! is built from the settings: the upstream client (the embedded demo upstream started first
//! when no upstream is configured), the key ring and the session manager.

use std::sync::Arc;

use axum::extract::FromRef;
use leptos::config::LeptosOptions;
use tokenless_bff::{KeyFile, KeyRing, SessionManager, UpstreamKind};
use tokenless_upstream::{HashCost, RunningUpstream, UpstreamConfig};

use crate::server::settings::{Mode, Settings};

/// How long a refresh's lease in Redis lives between renewals (every third of it while the
/// grant runs, however long the grant takes): when an instance dies mid-refresh, the others
/// wait this long at most before one of them refreshes instead.
const SHARED_LEASE: std::time::Duration = std::time::Duration::from_secs(10);

/// Cloned for every request (extractors, the components' context): one shared reference, so a
/// clone is one reference count, not one per field.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What `AppState` shares.
#[derive(Clone)]
pub struct Shared {
    pub leptos_options: LeptosOptions,
    pub settings: Arc<Settings>,
    pub sessions: Arc<SessionManager>,
    /// What the status card says about the upstream.
    pub upstream_label: Arc<str>,
    /// The embedded demo upstream, when it is the one in use; it stops when the last clone of
    /// the state is dropped.
    pub demo: Option<Arc<RunningUpstream>>,
    /// `demo.bench_fixed_session`: the demo user's session, given to every request.
    pub fixed_session: Option<Arc<tokenless_bff::Session>>,
    /// The OpenID provider people sign in at, when `upstream.kind = "oidc"`.
    pub oidc: Option<Arc<tokenless_bff::oidc::OidcProvider>>,
    /// The CSP's `form-action`: this site, and the provider's end-session page (the sign-out
    /// form's answer sends the browser there).
    pub form_action: Arc<str>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot start the embedded demo upstream: {0}")]
    Demo(#[from] tokenless_upstream::StartError),
    #[error("an address is not a URL: {0}")]
    Url(#[from] url::ParseError),
    #[error(transparent)]
    Upstream(#[from] tokenless_bff::UpstreamBuildError),
    #[error("cannot sign the demo user in for demo.bench_fixed_session: {0}")]
    BenchSession(#[from] tokenless_bff::UpstreamError),
    #[error("setting `session.keys` (env TOKENLESS_SESSION__KEYS) is invalid: {0}")]
    Keys(#[from] tokenless_bff::KeyError),
    #[error(
        "{0}; TOKENLESS_SESSION__DEV_KEY_FILE says where development keeps its key (\"\" for a \
         throw-away key per start), TOKENLESS_SESSION__KEYS sets one"
    )]
    DevKey(#[from] tokenless_bff::KeyFileError),
    #[error(transparent)]
    Redis(#[from] tokenless_bff::RedisStartError),
    #[error("cannot build the session manager: {0}")]
    Sessions(tokenless_bff::BuildError),
    /// The refresh memory's file: the library names the setting, this adds its variable.
    #[error("{0} (env TOKENLESS_SESSION__SQLITE_PATH)")]
    MemoryFile(tokenless_bff::SqliteStartError),
}

impl From<tokenless_bff::BuildError> for StateError {
    fn from(e: tokenless_bff::BuildError) -> Self {
        match e {
            tokenless_bff::BuildError::Sqlite(e) => StateError::MemoryFile(e),
            other => StateError::Sessions(other),
        }
    }
}

impl AppState {
    /// Builds everything the settings describe; starts the demo upstream in this runtime when
    /// no upstream is configured.
    pub async fn build(settings: Settings, leptos_options: LeptosOptions) -> Result<Self, StateError> {
        let (base, demo, label) = match &settings.upstream.base_url {
            // The status shown to anyone does not name the upstream's address (an internal host
            // is nobody's business); the log does.
            Some(base) => {
                tracing::info!(upstream = %base.origin().ascii_serialization(), "upstream configured");
                (base.clone(), None, "configured upstream".to_string())
            }
            None => {
                let demo = start_demo(&settings).await?;
                tracing::info!(
                    api = %demo.base_url(),
                    controls = ?demo.control_url(),
                    "no upstream configured: started the embedded demo upstream (demo users: user@example.com / frogs-are-green, admin@example.com / admin-frogs-rule)"
                );
                tracing::info!(
                    "the demo upstream keeps its accounts and sign-ins {} (TOKENLESS_DEMO__DATABASE; `make reset-demo` starts over)",
                    tokenless_upstream::store::describe(&settings.demo.database)
                );
                let base = url::Url::parse(&demo.base_url())?;
                (base, Some(Arc::new(demo)), "demo upstream (in-process)".to_string())
            }
        };
        // The embedded demo speaks the shape it was started in (a cookie shape through this
        // app's preset of it); a configured upstream is what `[upstream]` says.
        let mut options = settings.upstream.clone();
        if let Some(api) = demo.as_ref().and_then(|_| crate::server::settings::preset(settings.demo.shape)) {
            options.kind = UpstreamKind::HttpApi(Box::new(api));
        }
        let tokenless_bff::Connected { upstream, oidc } = match &options.kind {
            UpstreamKind::Oidc(_) => {
                // Where the provider sends people back: this site's callback (in development
                // without site.origin, the address served: register that one at the provider).
                let site = match &settings.site.origin {
                    Some(origin) => origin.clone(),
                    None => url::Url::parse(&format!("http://{}", settings.server.address))?,
                };
                let callback = site.join(tokenless_bff::oidc::OidcPaths::default().callback.as_str())?;
                tracing::info!(%callback, "the OpenID provider sends people back here (register it there)");
                options.connect(&base, &callback).await?
            }
            _ => tokenless_bff::Connected { upstream: options.build_at(&base)?, oidc: None },
        };
        if let Some(provider) = &oidc {
            tracing::info!(issuer = %provider.options().issuer, "signing in through the OpenID provider");
        }
        let end_session = oidc.as_ref().and_then(|p| p.metadata().additional_metadata().end_session_endpoint.clone());
        let form_action = match end_session {
            Some(url) => format!("'self' {}", url.origin().ascii_serialization()),
            None => "'self'".to_string(),
        };
        let ring = match (settings.session.options.key_ring(), &settings.session.dev_key_file) {
            (Some(ring), _) => ring?,
            // Settings validation refuses production without keys.
            (None, Some(path)) => {
                debug_assert_eq!(settings.server.mode, Mode::Development);
                let (ring, origin) = KeyRing::load_or_create(path)?;
                let shown = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
                match origin {
                    KeyFile::Made => tracing::info!(
                        "no session key configured (TOKENLESS_SESSION__KEYS): made a development key and kept it in {} so sessions survive restarts; delete it to sign everyone out",
                        shown.display()
                    ),
                    KeyFile::Kept => tracing::info!(
                        "no session key configured (TOKENLESS_SESSION__KEYS): using the development key kept in {}",
                        shown.display()
                    ),
                }
                ring
            }
            (None, None) => {
                debug_assert_eq!(settings.server.mode, Mode::Development);
                tracing::warn!(
                    "no session key configured (TOKENLESS_SESSION__KEYS, TOKENLESS_SESSION__DEV_KEY_FILE): using a throw-away key; sessions end when the server stops"
                );
                KeyRing::ephemeral()
            }
        };
        let secure = settings.site.secure();
        if !secure {
            tracing::info!("site served over plain http: the session cookie goes without Secure and __Host-");
        }
        let mut builder = SessionManager::builder(upstream).options(settings.session.options.clone());
        if let tokenless_bff::Store::Redis { url, prefix } = &settings.session.options.store {
            // Shared by every instance with the same keys, Redis and prefix: results sealed with
            // a secret derived from the sealing key and opened with any key's (a key rotation
            // rolls through the instances), leases renewed while the grant runs.
            let options = tokenless_bff::RedisOptions {
                prefix: prefix.clone(),
                secrets: ring.derive_secrets("tokenless/v1/redis-refresh-results"),
                lease: SHARED_LEASE,
                local_capacity: settings.session.options.refresh.capacity,
            };
            let memory =
                tokenless_bff::RedisMemory::connect(secrecy::ExposeSecret::expose_secret(url), options, tokenless_bff::system_clock()).await?;
            tracing::info!(%prefix, "the refresh memory is shared on Redis");
            builder = builder.memory(Arc::new(memory));
        }
        let sessions = Arc::new(builder.keys(ring).secure(secure).build()?);
        let fixed_session = if settings.demo.bench_fixed_session {
            tracing::warn!("demo.bench_fixed_session: every request is the demo user, no cookie involved (benchmarks only)");
            Some(Arc::new(bench_session(&sessions).await?))
        } else {
            None
        };
        Ok(AppState(Arc::new(Shared {
            leptos_options,
            settings: Arc::new(settings),
            sessions,
            upstream_label: label.into(),
            demo,
            fixed_session,
            oidc,
            form_action: form_action.into(),
        })))
    }

    /// The same state serving the site from another directory (tests lay a site out).
    pub fn with_site_root(&self, root: &str) -> AppState {
        let mut shared = Shared::clone(&self.0);
        shared.leptos_options.site_root = root.into();
        AppState(Arc::new(shared))
    }

    pub fn upstream_label(&self) -> String {
        self.upstream_label.to_string()
    }
}

/// The benchmark baseline's session: the demo user, signed in once at start.
async fn bench_session(sessions: &SessionManager) -> Result<tokenless_bff::Session, StateError> {
    let now = tokenless_bff::now();
    let user = &tokenless_upstream::config::DEMO_USERS[0];
    let tokens = sessions.upstream().sign_in(user.email, user.password, now).await.map_err(|e| match e {
        tokenless_bff::SignInError::Upstream(e) => e,
        refused => tokenless_bff::UpstreamError::Unexpected(refused.to_string()),
    })?;
    let profile = sessions.upstream().profile(&tokens).await?;
    Ok(tokenless_bff::Session::new("bench-fixed-session".into(), now, tokens, profile))
}

async fn start_demo(settings: &Settings) -> Result<RunningUpstream, tokenless_upstream::StartError> {
    let d = &settings.demo;
    let config = UpstreamConfig {
        address: d.address,
        control_address: d.control_address,
        access_ttl: d.access_ttl,
        refresh_ttl: d.refresh_ttl,
        test_controls: d.test_controls,
        hash_cost: if d.fast_hashing { HashCost::Fast } else { HashCost::Standard },
        database: d.database.clone(),
        shape: d.shape,
        ..UpstreamConfig::default()
    };
    tokenless_upstream::spawn(config).await
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

/// Leptos's options for this process: what cargo-leptos put in the environment (site root,
/// reload port...), with the name of our output and the address from our settings.
pub fn leptos_options(settings: &Settings) -> LeptosOptions {
    let mut options = match leptos::config::get_configuration(None) {
        Ok(conf) => conf.leptos_options,
        Err(e) => {
            tracing::warn!(error = %e, "Leptos environment unreadable; using defaults");
            LeptosOptions::builder().output_name("tokenless").build()
        }
    };
    if options.output_name.is_empty() {
        options.output_name = "tokenless".into();
    }
    options.site_addr = settings.server.address;
    options
}
