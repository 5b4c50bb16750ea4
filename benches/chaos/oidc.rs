//! The chaos run's OpenID variant: the instances front node-oidc-provider (`end2end/oidc/
//! provider.mjs`: refresh tokens rotated on every use, a used one presented again revokes its
//! grant, back-channel logout to the balancer's address). Each browser signs in at the
//! provider's own pages (its own provider session, so its own `sid`), browses like the demo
//! variant's browsers, and now and then signs out *at the provider* — far more often while
//! Redis is paused — so that the provider's back-channel logout reaches an instance that
//! cannot store it. The cookies signed out of that way are replayed: once one was refused, a
//! signed-in page for it is a revived session; a signed-in page 10 s after the provider was
//! done, outside every fault window, is a lost logout.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::{round, set_cookie, visit, Children, Fault, LoggedOut, Run, Visit};

/// The provider's client secret for Tokenless (`provider.mjs`'s default).
pub(super) const SECRET: &str = "tokenless-oidc-test-secret";

/// The faults that are not the upstream's, Redis pauses every other one: the back-channel
/// logouts they catch are what this variant is for.
pub(super) const SCHEDULE: [Fault; 6] = [
    Fault::RedisPause,
    Fault::InstanceKilled,
    Fault::RedisPause,
    Fault::RedisRestartedEmpty,
    Fault::RedisPause,
    Fault::RedisRestartedFromAof,
];

/// How long after the provider said a browser was signed out its cookie may still open a page
/// (outside the fault windows) before the logout counts as lost.
const LOGOUT_TAKES: Duration = Duration::from_secs(10);

/// node-oidc-provider, a child process; killed when the run's children are.
pub(super) struct Provider {
    pub(super) issuer: String,
    http: reqwest::Client,
    _child: tokio::process::Child,
}

/// What the provider counted.
pub(super) struct Counters {
    pub(super) refreshes: u64,
    pub(super) reuse: u64,
    pub(super) backchannel: u64,
}

impl Provider {
    /// Started for the app at `origin`, its access tokens living `access_ttl`; what it says
    /// went wrong (a back-channel logout the app refused or never answered) in `logs`.
    pub(super) async fn start(origin: &str, access_ttl: Duration, children: &Children, logs: &std::path::Path) -> Provider {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        assert!(
            root.join("end2end/node_modules/oidc-provider").is_dir(),
            "the OpenID provider's npm package is missing: run `make setup` (npm ci in end2end/)"
        );
        let mut child = tokio::process::Command::new("node")
            .arg("end2end/oidc/provider.mjs")
            .current_dir(root)
            .env("OIDC_PORT", "0")
            .env("OIDC_APP_ORIGIN", origin)
            .env("OIDC_ACCESS_TTL", access_ttl.as_secs().to_string())
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(logs.join("provider.log")).expect("the provider's log"))
            .kill_on_drop(true)
            .spawn()
            .expect("node runs (make setup installs it)");
        children.0.lock().unwrap().push(child.id().unwrap_or(0));
        let mut lines = BufReader::new(child.stdout.take().expect("its stdout")).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the provider starts within 30 s")
            .expect("its stdout reads")
            .expect("it prints `ready <issuer>`");
        let issuer = first.strip_prefix("ready ").expect("`ready <issuer>`").to_string();
        // It logs to stdout as it goes: keep reading, or its writes fail.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Provider { issuer, http: reqwest::Client::new(), _child: child }
    }

    /// The instances' settings for it, served at `origin` (the balancer).
    pub(super) fn settings(&self, origin: &str) -> Vec<(&'static str, String)> {
        vec![
            ("TOKENLESS_UPSTREAM__KIND", "oidc".into()),
            ("TOKENLESS_UPSTREAM__BASE_URL", self.issuer.clone()),
            ("TOKENLESS_UPSTREAM__OIDC__ISSUER", self.issuer.clone()),
            ("TOKENLESS_UPSTREAM__OIDC__CLIENT_ID", "tokenless".into()),
            ("TOKENLESS_UPSTREAM__OIDC__SCOPES", "openid profile email offline_access roles".into()),
            ("TOKENLESS_UPSTREAM__OIDC__ROLES_CLAIM", "/roles".into()),
            ("TOKENLESS_SITE__ORIGIN", origin.into()),
        ]
    }

    pub(super) async fn counters(&self) -> Counters {
        let url = format!("{}/_test/counters", self.issuer);
        let counters: serde_json::Value =
            self.http.get(url).send().await.expect("the provider answers").json().await.expect("its counters");
        let count = |name: &str| counters[name].as_u64().unwrap_or(0);
        Counters { refreshes: count("refreshes"), reuse: count("reuse"), backchannel: count("backchannel") }
    }
}

/// A browser's cookie jar for the provider's pages (and the app's sign-in cookies on the way),
/// following no redirect by itself.
fn jar() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The `action` of the page's form.
fn form_action(page: &str) -> Option<String> {
    let at = page.find("action=\"")? + "action=\"".len();
    Some(page[at..].split('"').next()?.replace("&amp;", "&"))
}

/// From `start`, follows redirects and posts each page's form as `fill` fills it, at most 12
/// steps, until a redirect leads to a URL starting with `stop_at`: that URL.
async fn through(
    jar: &reqwest::Client,
    issuer: &str,
    start: &str,
    stop_at: &str,
    fill: impl Fn(&str) -> Vec<(&'static str, String)>,
) -> Option<url::Url> {
    let base = url::Url::parse(issuer).ok()?;
    let mut response = jar.get(start).send().await.ok()?;
    for _ in 0..12 {
        if response.status().is_redirection() {
            let next = base.join(response.headers().get("location")?.to_str().ok()?).ok()?;
            if next.as_str().starts_with(stop_at) {
                return Some(next);
            }
            response = jar.get(next).send().await.ok()?;
            continue;
        }
        if !response.status().is_success() {
            return None;
        }
        let page = response.text().await.ok()?;
        let action = base.join(&form_action(&page)?).ok()?;
        response = jar.post(action).form(&fill(&page)).send().await.ok()?;
    }
    None
}

/// Signs in at the provider as `account` through the app's button link: the session cookie and
/// the jar that holds the provider session.
async fn sign_in(run: &Run, issuer: &str, account: &'static str) -> Option<(String, reqwest::Client)> {
    let jar = jar();
    let begun = jar.get(format!("{}/auth/login?next=%2Faccount", run.base)).send().await.ok()?;
    let to_provider = begun.headers().get("location")?.to_str().ok()?.to_string();
    let fill = |page: &str| {
        if page.contains(r#"value="login""#) {
            vec![("prompt", "login".to_string()), ("login", account.to_string()), ("password", "any".to_string())]
        } else {
            vec![("prompt", "consent".to_string())]
        }
    };
    let callback = through(&jar, issuer, &to_provider, &run.base, fill).await?;
    let landed = jar.get(callback).send().await.ok()?;
    let cookie = set_cookie(landed.headers()).flatten()?;
    Some((cookie, jar))
}

/// Signs out at the provider itself (its end-session page, confirmed): it then tells the app
/// by back-channel logout. Whether the provider said it was done.
async fn sign_out_at_provider(jar: &reqwest::Client, issuer: &str) -> bool {
    let fill = |page: &str| {
        let xsrf = page.split(r#"name="xsrf" value=""#).nth(1).and_then(|rest| rest.split('"').next()).unwrap_or("");
        vec![("xsrf", xsrf.to_string()), ("logout", "yes".to_string())]
    };
    let start = format!("{issuer}/session/end?client_id=tokenless");
    through(jar, issuer, &start, &format!("{issuer}/session/end/success"), fill).await.is_some()
}

/// One browser of the OpenID variant, until the run stops.
pub(super) async fn browse(run: Arc<Run>, id: usize, seed: u64, issuer: String) {
    let mut rng = StdRng::seed_from_u64(seed);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let account = if id % 2 == 0 { "dana" } else { "ada" };
    let mut signed_in: Option<reqwest::Client> = None;
    let mut cookie: Option<String> = None;
    let mut previous: Option<String> = None;
    while Instant::now() < run.stop {
        let (Some(current), Some(provider_jar)) = (cookie.clone(), signed_in.as_ref()) else {
            match sign_in(&run, &issuer, account).await {
                Some((fresh, jar)) => {
                    (cookie, previous, signed_in) = (Some(fresh), None, Some(jar));
                }
                None => tokio::time::sleep(Duration::from_millis(200)).await,
            }
            continue;
        };
        tokio::time::sleep(Duration::from_millis(rng.gen_range(100..500))).await;
        let stalled = run.stalled.load(Ordering::SeqCst);
        let roll: f64 = rng.gen();
        let out_at = if stalled { 0.25 } else { 0.01 };
        if roll < out_at {
            if sign_out_at_provider(provider_jar, &issuer).await {
                run.tally.provider_logouts.fetch_add(1, Ordering::Relaxed);
                if stalled {
                    run.tally.logouts_in_stalls.fetch_add(1, Ordering::Relaxed);
                }
                let at = Instant::now();
                let mut out = run.logged_out_at_provider.lock().unwrap();
                out.extend([Some(current), previous.take()].into_iter().flatten().map(|cookie| LoggedOut { cookie, at, refused: false }));
                while out.len() > 500 {
                    out.pop_front();
                }
                (cookie, signed_in) = (None, None);
            }
            continue;
        }
        if roll < out_at + 0.04 {
            replay(&client, &run, id, &mut rng).await;
            continue;
        }
        round(&client, &run, id, &mut rng, &mut cookie, &mut previous, &current, false).await;
    }
}

/// Sends a cookie whose provider session ended: refused (noted), or a signed-in page — a
/// revived session after a refusal, a lost logout once the logout had time to take.
async fn replay(client: &reqwest::Client, run: &Arc<Run>, id: usize, rng: &mut StdRng) {
    let picked = {
        let out = run.logged_out_at_provider.lock().unwrap();
        (!out.is_empty()).then(|| {
            out[rng.gen_range(0..out.len())].cookie.clone()
        })
    };
    let Some(old) = picked else { return };
    run.tally.logout_replays.fetch_add(1, Ordering::Relaxed);
    let answer = visit(client, run, "/account", &old, None).await;
    let now = Instant::now();
    let mut out = run.logged_out_at_provider.lock().unwrap();
    // Others may have come and gone meanwhile: found again by its cookie.
    let Some(entry) = out.iter_mut().find(|e| e.cookie == old) else { return };
    match answer {
        Visit::SignIn(_) => entry.refused = true,
        Visit::SignedIn(_) if entry.refused => {
            drop(out);
            run.problem(&run.tally.revived, id, "a cookie refused after its back-channel logout got a signed-in page");
        }
        Visit::SignedIn(_) if now.duration_since(entry.at) > LOGOUT_TAKES && !run.in_a_window(now) => {
            drop(out);
            run.problem(&run.tally.lost_logouts, id, "a cookie whose provider session ended long ago got a signed-in page");
        }
        Visit::SignedIn(_) | Visit::GaveUp => {}
        trouble @ (Visit::TryAgain | Visit::Failed(_)) => {
            drop(out);
            run.trouble(id, trouble);
        }
    }
}
