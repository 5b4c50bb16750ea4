//! Chaos: the worst day, measured. Three app instances (real processes of this build's
//! `tokenless` binary) behind a round-robin balancer (no sticky sessions), one `redis-server`
//! with an append-only file, the demo upstream (a new refresh token on every refresh, a rotated
//! one presented again revokes its sign-in unless inside a 30-s grace that the run accounts
//! for, 4-second access tokens), and simulated browsers,
//! while faults come on a schedule: Redis paused (SIGSTOP) 0.2–3 s, Redis killed and started
//! again empty or from its AOF, an instance killed (SIGKILL) and started again, the upstream
//! answering 503 or stalling 5 s, a rolling restart that gives one instance a wrong client
//! secret for a while.
//!
//! A simulated browser keeps the newest cookie it was sent, sends two or three tabs at once
//! (now and then one of them with the cookie it had before), gives up on a request mid-way now
//! and then (the response, and any cookie in it, lost), and signs out and in again now and then,
//! keeping the cookies it signed out of for anyone to replay later. Printed at the end, from the
//! upstream's own counters and the browsers' logs:
//!
//! - reuse events at the upstream (a rotated refresh token presented again);
//! - grace reuses no SIGKILL explains: the upstream has a 30-s rotation grace (see
//!   [`ROTATION_GRACE`]), and each retired token it took again must have been rotated just
//!   before an instance was killed — anything else (two flights of one token) counts here;
//! - spurious sign-outs (a browser that did not sign out sent to sign in, or its cookie cleared);
//! - revived sessions (a cookie signed out of that later gets a signed-in page);
//! - stuck sessions (a browser without a signed-in page within 10 s after the last fault cleared);
//! - 503 "try again" answers, inside the fault windows (each window: the fault, then what it
//!   leaves for a while, said per fault) and outside them.
//!
//! Exits 1 when any of the first five is not 0, or a 503 came outside every window.
//!
//! The OpenID variant ([`oidc`]) runs the same with node-oidc-provider as the upstream, the
//! browsers signing out at the provider (back-channel logouts, most during Redis pauses), and
//! counts back-channel logouts lost as well.
//!
//! `bash bench/chaos.sh` (release, 10 minutes, 200 browsers, a third of them in the OpenID
//! variant; `CHAOS_SECS`, `CHAOS_BROWSERS`, `CHAOS_OIDC_BROWSERS`, `CHAOS_SEED`,
//! `CHAOS_VARIANT=demo|oidc` for one of the two). Under `cargo test --benches` (make test)
//! each variant runs 60 seconds, with 24 and 8 browsers.
//! Everything listens on loopback; every loop is bounded by the run's length.

#[path = "chaos/oidc.rs"]
mod oidc;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokenless_upstream::{FaultKind, FaultSpec, HashCost, UpstreamConfig, DEMO_USERS};
use tokio::net::{TcpListener, TcpStream};

const KEYS: &str = "5:QmVuY2htYXJrIGtleSwgbmV2ZXIgdXNlIGl0IGVsc2U=";
const COOKIE: &str = "tokenless_session";
const SECRET: &str = tokenless_upstream::config::DEFAULT_CLIENT_SECRET;
/// How long after the last fault cleared every browser must have had a signed-in page.
const STUCK_AFTER: Duration = Duration::from_secs(10);
/// The access tokens' life at the upstream.
const ACCESS_TTL: Duration = Duration::from_secs(4);
/// The upstream's rotation grace, as Okta's and Auth0's: the token a refresh retired, presented
/// again this soon while its successor was never used, gets new tokens instead of ending the
/// sign-in. It covers the one loss no memory can close: an instance killed (SIGKILL) after the
/// upstream rotated and before it stored the answer anywhere; the next instance presents the
/// old token once the dead one's lease (10 s) ends.
const ROTATION_GRACE: Duration = Duration::from_secs(30);
/// A grace reuse is the kill's doing when an instance was killed this soon after the rotation:
/// the answer was on its way to it, or not yet stored (a landing waits out a Redis pause).
const KILL_LOSES_ANSWER: Duration = Duration::from_secs(5);

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Stops everything started here when the run ends, however it ends.
#[derive(Default)]
struct Children(Mutex<Vec<u32>>);

impl Drop for Children {
    fn drop(&mut self) {
        for pid in self.0.lock().unwrap().drain(..) {
            for signal in ["-CONT", "-KILL"] {
                let _ = std::process::Command::new("kill")
                    .args([signal, &pid.to_string()])
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
    }
}

fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill").args([signal, &pid.to_string()]).status();
    assert!(status.is_ok_and(|s| s.success()), "kill {signal} {pid}");
}

// ---------------------------------------------------------------- Redis, with its AOF

struct Redis {
    port: u16,
    dir: PathBuf,
    child: tokio::process::Child,
}

impl Redis {
    async fn start(port: u16, dir: &Path, children: &Children) -> Redis {
        std::fs::create_dir_all(dir).unwrap();
        let child = tokio::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--maxmemory-policy", "noeviction"])
            .arg("--dir")
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server runs (scripts/setup.sh test installs it)");
        children.0.lock().unwrap().push(child.id().unwrap_or(0));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !pong(port).await {
            assert!(Instant::now() < deadline, "redis-server did not answer within 20 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Redis { port, dir: dir.to_path_buf(), child }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Killed (SIGKILL) and started again on the same port: from its append-only file, or
    /// `empty`.
    async fn restart(&mut self, empty: bool, children: &Children) {
        let _ = self.child.kill().await;
        if empty {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        *self = Redis::start(self.port, &self.dir.clone(), children).await;
    }
}

/// Whether the Redis on `port` answers PING (done loading its AOF).
async fn pong(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else { return false };
    if stream.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut answer = [0u8; 7];
    matches!(tokio::time::timeout(Duration::from_secs(1), stream.read_exact(&mut answer)).await, Ok(Ok(_))) && &answer == b"+PONG\r\n"
}

// ---------------------------------------------------------------- the app instances

struct Instances {
    ports: Vec<u16>,
    children: Vec<Option<tokio::process::Child>>,
    /// The settings that point the instances at the upstream.
    upstream: Vec<(&'static str, String)>,
    /// The setting their client secret is given in, and the right one.
    secret_setting: &'static str,
    secret: &'static str,
    redis: String,
    logs: PathBuf,
    site: PathBuf,
}

impl Instances {
    async fn start(&mut self, i: usize, secret: &str, all: &Children) {
        // Appended: a restarted instance keeps what it logged before.
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.logs.join(format!("instance-{i}.log"))).unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokenless"))
            .env("TOKENLESS_SERVER__ADDRESS", format!("127.0.0.1:{}", self.ports[i]))
            .env("TOKENLESS_SERVER__LOG", "warn")
            .env("TOKENLESS_SESSION__KEYS", KEYS)
            .env("TOKENLESS_SESSION__STORE", "redis")
            .env("TOKENLESS_SESSION__REDIS_URL", &self.redis)
            .envs(self.upstream.iter().map(|(k, v)| (*k, v.as_str())))
            .env(self.secret_setting, secret)
            .env("LEPTOS_SITE_ROOT", &self.site)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("the tokenless binary of this build");
        all.0.lock().unwrap().push(child.id().unwrap_or(0));
        self.children[i] = Some(child);
        let url = format!("http://127.0.0.1:{}/", self.ports[i]);
        let deadline = Instant::now() + Duration::from_secs(60);
        while reqwest::get(&url).await.is_err() {
            assert!(Instant::now() < deadline, "instance {i} did not answer within 60 s: see {}", self.logs.display());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no shutdown, whatever is in flight is lost.
    async fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill().await;
        }
    }

    /// SIGTERM, as a rolling deploy stops an instance, waited for.
    async fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            if let Some(pid) = child.id() {
                signal(pid, "-TERM");
            }
            if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
                let _ = child.kill().await;
            }
        }
    }
}

/// Round robin over `ports` per connection (the browsers open one per request: no stickiness),
/// the next port when one refuses (a killed instance).
async fn balance(listener: TcpListener, ports: Vec<u16>) {
    let next = Arc::new(AtomicUsize::new(0));
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else { continue };
        let (ports, next) = (ports.clone(), next.clone());
        tokio::spawn(async move {
            let _ = inbound.set_nodelay(true);
            let first = next.fetch_add(1, Ordering::Relaxed);
            for k in 0..ports.len() {
                let port = ports[(first + k) % ports.len()];
                if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", port)).await {
                    let _ = outbound.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    return;
                }
            }
        });
    }
}

// ---------------------------------------------------------------- what the browsers log

#[derive(Default)]
struct Tally {
    pages: AtomicU64,
    try_again: AtomicU64,
    try_again_outside: AtomicU64,
    spurious: AtomicU64,
    revived: AtomicU64,
    gave_up: AtomicU64,
    /// Requests that failed below HTTP inside a fault window (an instance killed under them).
    lost: AtomicU64,
    errors: AtomicU64,
    sign_outs: AtomicU64,
    replays: AtomicU64,
    /// The OpenID variant: sign-outs at the provider (its back-channel logout to the app).
    provider_logouts: AtomicU64,
    /// ... of them begun while Redis was paused.
    logouts_in_stalls: AtomicU64,
    /// Replays of cookies whose provider session ended.
    logout_replays: AtomicU64,
    /// A cookie whose provider session ended, given a signed-in page 10 s or more after the
    /// provider said it was done, outside every fault window (the logout never took).
    lost_logouts: AtomicU64,
}

/// What the run shares: the tally, the fault windows, the cookies signed out of, and when the
/// last fault cleared.
struct Run {
    base: String,
    tally: Tally,
    started: Instant,
    /// (from, to) of each fault and what it leaves behind; `to` is `None` while it lasts.
    windows: Mutex<Vec<(Instant, Option<Instant>)>>,
    signed_out: Mutex<VecDeque<String>>,
    /// Cookies whose provider session ended: since when, and whether one was refused since.
    logged_out_at_provider: Mutex<VecDeque<LoggedOut>>,
    /// Redis is paused (SIGSTOP) now.
    stalled: Arc<std::sync::atomic::AtomicBool>,
    /// When the schedule ended (the last window closed); browsers' signed-in pages after it.
    calm_since: Mutex<Option<Instant>>,
    first_page_after_calm: Mutex<Vec<Option<Instant>>>,
    stop: Instant,
}

impl Run {
    fn in_a_window(&self, at: Instant) -> bool {
        self.windows.lock().unwrap().iter().any(|(from, to)| at >= *from && to.is_none_or(|to| at <= to))
    }

    /// A "try again" or a failed request: expected inside a fault window (a connection lost
    /// there, not an HTTP answer, too), a problem outside.
    fn trouble(&self, browser: usize, visit: Visit) {
        let inside = self.in_a_window(Instant::now());
        match visit {
            Visit::TryAgain if inside => {
                self.tally.try_again.fetch_add(1, Ordering::Relaxed);
            }
            Visit::TryAgain => self.problem(&self.tally.try_again_outside, browser, "503 outside every fault window"),
            Visit::Failed(why) if inside && !why.starts_with(char::is_numeric) => {
                self.tally.lost.fetch_add(1, Ordering::Relaxed);
            }
            Visit::Failed(why) => self.problem(&self.tally.errors, browser, &format!("failed: {why}")),
            Visit::SignedIn(_) | Visit::SignIn(_) | Visit::GaveUp => {}
        }
    }

    fn problem(&self, counter: &AtomicU64, browser: usize, what: &str) {
        counter.fetch_add(1, Ordering::Relaxed);
        eprintln!("[{:6.1} s] browser {browser}: {what}", self.started.elapsed().as_secs_f64());
    }
}

/// A cookie whose session the provider ended (the OpenID variant).
struct LoggedOut {
    cookie: String,
    at: Instant,
    refused: bool,
}

enum Visit {
    /// 200: a signed-in page (and the cookie it set, if any: `Some(None)` cleared it).
    SignedIn(Option<Option<String>>),
    /// Sent to sign in (303 to /login), the cookie cleared or not.
    SignIn(Option<Option<String>>),
    TryAgain,
    GaveUp,
    Failed(String),
}

/// The session cookie a response set: `Some(Some(value))`, `Some(None)` when it cleared it.
fn set_cookie(headers: &reqwest::header::HeaderMap) -> Option<Option<String>> {
    headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).fold(None, |found, v| {
        let (name, rest) = v.split_once('=')?;
        if name != COOKIE {
            return found;
        }
        let value = rest.split(';').next().unwrap_or("");
        let cleared = value.is_empty() || rest.to_ascii_lowercase().contains("max-age=0");
        Some((!cleared).then(|| value.to_string()))
    })
}

async fn visit(client: &reqwest::Client, run: &Run, path: &str, cookie: &str, give_up: Option<Duration>) -> Visit {
    let request = client.get(format!("{}{path}", run.base)).header("cookie", format!("{COOKIE}={cookie}"));
    let request = match give_up {
        Some(after) => request.timeout(after),
        None => request,
    };
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) if give_up.is_some() && e.is_timeout() => return Visit::GaveUp,
        Err(e) => return Visit::Failed(e.to_string()),
    };
    let set = set_cookie(response.headers());
    let status = response.status();
    let location = response.headers().get("location").and_then(|l| l.to_str().ok()).unwrap_or("").to_string();
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(_) if give_up.is_some() => return Visit::GaveUp,
        Err(e) => return Visit::Failed(e.to_string()),
    };
    match status.as_u16() {
        200 => Visit::SignedIn(set),
        303 if location.starts_with("/login") => Visit::SignIn(set),
        503 => Visit::TryAgain,
        other => Visit::Failed(format!("{other} {location} {}", String::from_utf8_lossy(&body[..body.len().min(120)]))),
    }
}

/// Signs in with the form post a browser without JavaScript makes; the session cookie.
async fn sign_in(client: &reqwest::Client, run: &Run, who: usize) -> Option<String> {
    let user = &DEMO_USERS[who % DEMO_USERS.len()];
    let body = serde_urlencoded::to_string([("email", user.email), ("password", user.password), ("next", "/")]).unwrap();
    let answer = client
        .post(format!("{}/api/login", run.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .header("sec-fetch-site", "same-origin")
        .body(body)
        .send()
        .await
        .ok()?;
    if !answer.status().is_success() {
        return None;
    }
    set_cookie(answer.headers()).flatten()
}

async fn sign_out(client: &reqwest::Client, run: &Run, cookie: &str) -> bool {
    let answer = client
        .post(format!("{}/api/logout", run.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .header("sec-fetch-site", "same-origin")
        .header("cookie", format!("{COOKIE}={cookie}"))
        .send()
        .await;
    answer.is_ok_and(|a| a.status().is_success())
}

/// One browser, until the run stops.
async fn browse(run: Arc<Run>, id: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut cookie: Option<String> = None;
    let mut previous: Option<String> = None;
    while Instant::now() < run.stop {
        let Some(current) = cookie.clone() else {
            match sign_in(&client, &run, id).await {
                Some(fresh) => {
                    cookie = Some(fresh);
                    previous = None;
                }
                None => tokio::time::sleep(Duration::from_millis(200)).await,
            }
            continue;
        };
        tokio::time::sleep(Duration::from_millis(rng.gen_range(100..500))).await;
        let roll: f64 = rng.gen();
        if roll < 0.02 {
            // Signs out, and keeps what it signed out of for anyone to replay later.
            if sign_out(&client, &run, &current).await {
                run.tally.sign_outs.fetch_add(1, Ordering::Relaxed);
                let mut signed_out = run.signed_out.lock().unwrap();
                signed_out.extend([Some(current), previous.take()].into_iter().flatten());
                while signed_out.len() > 500 {
                    signed_out.pop_front();
                }
                cookie = None;
            }
            continue;
        }
        if roll < 0.05 {
            let replayed = {
                let signed_out = run.signed_out.lock().unwrap();
                (!signed_out.is_empty()).then(|| signed_out[rng.gen_range(0..signed_out.len())].clone())
            };
            if let Some(old) = replayed {
                run.tally.replays.fetch_add(1, Ordering::Relaxed);
                if let Visit::SignedIn(_) = visit(&client, &run, "/account", &old, None).await {
                    run.problem(&run.tally.revived, id, "a cookie signed out of got a signed-in page");
                }
            }
            continue;
        }
        round(&client, &run, id, &mut rng, &mut cookie, &mut previous, &current, true).await;
    }
}

/// Two or three tabs at once of a signed-in browser; now and then one with the cookie before
/// the newest, now and then one that gives up mid-way. The browser keeps the cookie of the
/// response it processed last; sent to sign in without signing out, it counts as spurious.
/// `frogs`: most tabs open the page that calls the upstream's API (the demo's), the others
/// the account page (the profile in the session: every upstream has one).
#[allow(clippy::too_many_arguments)]
async fn round(
    client: &reqwest::Client,
    run: &Arc<Run>,
    id: usize,
    rng: &mut StdRng,
    cookie: &mut Option<String>,
    previous: &mut Option<String>,
    current: &str,
    frogs: bool,
) {
    let tabs = rng.gen_range(2..=3);
    let mut inflight = FuturesUnordered::new();
    for tab in 0..tabs {
        let stale = tab == 0 && previous.is_some() && rng.gen_bool(0.15);
        let sent = if stale { previous.clone().unwrap_or_else(|| current.to_string()) } else { current.to_string() };
        let give_up = rng.gen_bool(0.05).then(|| Duration::from_millis(rng.gen_range(1..40)));
        let path = if frogs && rng.gen_bool(0.7) { "/frogs" } else { "/account" };
        let (client, run) = (client.clone(), run.clone());
        inflight.push(async move { visit(&client, &run, path, &sent, give_up).await });
    }
    let mut signed_out_by_it = false;
    while let Some(answer) = inflight.next().await {
        let set = match answer {
            Visit::SignedIn(set) => {
                run.tally.pages.fetch_add(1, Ordering::Relaxed);
                if let Some(calm) = *run.calm_since.lock().unwrap() {
                    let mut firsts = run.first_page_after_calm.lock().unwrap();
                    if firsts[id].is_none() {
                        firsts[id] = Some(Instant::now().max(calm));
                    }
                }
                set
            }
            Visit::SignIn(set) => {
                signed_out_by_it = true;
                set
            }
            Visit::GaveUp => {
                run.tally.gave_up.fetch_add(1, Ordering::Relaxed);
                None
            }
            trouble @ (Visit::TryAgain | Visit::Failed(_)) => {
                run.trouble(id, trouble);
                None
            }
        };
        // The browser keeps the cookie of the response it processed last.
        match set {
            Some(Some(value)) => {
                if cookie.as_ref() != Some(&value) {
                    *previous = cookie.take();
                    *cookie = Some(value);
                }
            }
            Some(None) => {
                signed_out_by_it = true;
                *cookie = None;
            }
            None => {}
        }
    }
    if signed_out_by_it {
        run.problem(&run.tally.spurious, id, "sent to sign in (or its cookie cleared) without signing out");
        *cookie = None;
    }
}

// ---------------------------------------------------------------- the faults

#[derive(Debug, Clone, Copy)]
enum Fault {
    RedisPause,
    UpstreamDown,
    UpstreamStall,
    InstanceKilled,
    RedisRestartedEmpty,
    RedisRestartedFromAof,
    WrongSecret,
}

/// The order the faults come in, round after round.
const SCHEDULE: [Fault; 7] = [
    Fault::RedisPause,
    Fault::InstanceKilled,
    Fault::RedisRestartedEmpty,
    Fault::WrongSecret,
    Fault::UpstreamDown,
    Fault::RedisRestartedFromAof,
    Fault::UpstreamStall,
];

/// How long a fault takes at most, to fit the schedule in the run.
fn lasts(fault: Fault) -> Duration {
    Duration::from_secs(match fault {
        Fault::RedisPause | Fault::UpstreamDown | Fault::InstanceKilled => 3,
        Fault::RedisRestartedEmpty | Fault::RedisRestartedFromAof => 2,
        Fault::UpstreamStall => 8,
        Fault::WrongSecret => 10,
    })
}

/// How long after a fault ends its effects may still answer "try again": a refresh waits up to
/// 5 s for a flight (`session.refresh_wait_ms`), a killed instance's lease lives 10 s.
fn settling(fault: Fault) -> Duration {
    match fault {
        Fault::InstanceKilled => Duration::from_secs(16),
        _ => Duration::from_secs(7),
    }
}

struct World {
    redis: Redis,
    instances: Instances,
    /// The demo upstream (the OpenID variant's provider is a process of its own).
    upstream: Option<tokenless_upstream::RunningUpstream>,
    children: Arc<Children>,
    /// When each SIGKILL of an instance was sent (Unix ms).
    kills: Vec<u64>,
    /// Redis is paused (SIGSTOP) now.
    stalled: Arc<std::sync::atomic::AtomicBool>,
}

impl World {
    async fn inject(&mut self, fault: Fault, rng: &mut StdRng) -> String {
        match fault {
            Fault::RedisPause => {
                let ms = rng.gen_range(200..3000);
                signal(self.redis.pid(), "-STOP");
                self.stalled.store(true, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                self.stalled.store(false, Ordering::SeqCst);
                signal(self.redis.pid(), "-CONT");
                format!("Redis paused {ms} ms")
            }
            Fault::UpstreamDown | Fault::UpstreamStall => {
                let (kind, latency_ms, what) = match fault {
                    Fault::UpstreamDown => (FaultKind::Unavailable, None, "the upstream answering 503 for 3 s"),
                    _ => (FaultKind::Latency, Some(5000), "the upstream stalling 5 s for 3 s"),
                };
                let spec = FaultSpec { kind, endpoint: None, count: None, seconds: Some(3.0), latency_ms };
                let demo = self.upstream.as_ref().expect("upstream faults are the demo upstream's");
                demo.upstream.add_fault(spec).expect("a valid fault");
                tokio::time::sleep(Duration::from_secs(3) + latency_ms.map_or(Duration::ZERO, Duration::from_millis)).await;
                what.to_string()
            }
            Fault::InstanceKilled => {
                let i = rng.gen_range(0..self.instances.ports.len());
                self.kills.push(unix_ms());
                self.instances.kill(i).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                self.instances.start(i, self.instances.secret, &self.children).await;
                format!("instance {i} killed (SIGKILL) and started again")
            }
            Fault::RedisRestartedEmpty | Fault::RedisRestartedFromAof => {
                let empty = matches!(fault, Fault::RedisRestartedEmpty);
                self.redis.restart(empty, &self.children).await;
                format!("Redis killed and started again {}", if empty { "empty" } else { "from its AOF" })
            }
            Fault::WrongSecret => {
                let i = rng.gen_range(0..self.instances.ports.len());
                self.instances.stop(i).await;
                self.instances.start(i, "a-mistyped-secret", &self.children).await;
                tokio::time::sleep(Duration::from_secs(5)).await;
                self.instances.stop(i).await;
                self.instances.start(i, self.instances.secret, &self.children).await;
                format!("instance {i} restarted with a wrong client secret for 5 s, then mended")
            }
        }
    }
}

/// The upstream a run fronts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// The demo upstream, in this process: every fault.
    Demo,
    /// node-oidc-provider ([`oidc`]): browsers sign in and out at the provider, whose
    /// back-channel logouts come during Redis pauses too; the faults that are not the
    /// upstream's.
    Oidc,
}

impl Variant {
    fn schedule(self) -> &'static [Fault] {
        match self {
            Variant::Demo => &SCHEDULE,
            Variant::Oidc => &oidc::SCHEDULE,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Variant::Demo => "the demo upstream",
            Variant::Oidc => "node-oidc-provider",
        }
    }
}

async fn chaos(secs: u64, browsers: usize, seed: u64, variant: Variant) -> bool {
    let children = Arc::new(Children::default());
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let logs = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(match variant {
        Variant::Demo => "chaos",
        Variant::Oidc => "chaos-oidc",
    });
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs).unwrap();
    let redis = Redis::start(free_port(), &scratch.path().join("redis"), &children).await;
    // The balancer's address first: the provider sends browsers back to it.
    let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", front.local_addr().unwrap());
    let (upstream, provider, settings, secret_setting) = match variant {
        Variant::Demo => {
            let demo = tokenless_upstream::spawn(UpstreamConfig {
                access_ttl: ACCESS_TTL,
                rotation_grace: ROTATION_GRACE,
                test_controls: true,
                hash_cost: HashCost::Fast,
                ..UpstreamConfig::default()
            })
            .await
            .expect("the demo upstream");
            let settings = vec![("TOKENLESS_UPSTREAM__BASE_URL", demo.base_url())];
            (Some(demo), None, settings, "TOKENLESS_UPSTREAM__CLIENT_SECRET")
        }
        Variant::Oidc => {
            let provider = oidc::Provider::start(&base, ACCESS_TTL, &children, &logs).await;
            let settings = provider.settings(&base);
            (None, Some(provider), settings, "TOKENLESS_UPSTREAM__OIDC__CLIENT_SECRET")
        }
    };
    let secret = match variant {
        Variant::Demo => SECRET,
        Variant::Oidc => oidc::SECRET,
    };
    let site = scratch.path().join("site");
    std::fs::create_dir_all(&site).unwrap();
    let mut instances = Instances {
        ports: (0..3).map(|_| free_port()).collect(),
        children: vec![None, None, None],
        upstream: settings,
        secret_setting,
        secret,
        redis: redis.url(),
        logs: logs.clone(),
        site,
    };
    for i in 0..3 {
        instances.start(i, secret, &children).await;
    }
    tokio::spawn(balance(front, instances.ports.clone()));
    let stalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut world =
        World { redis, instances, upstream, children: children.clone(), kills: Vec::new(), stalled: stalled.clone() };

    let started = Instant::now();
    let run = Arc::new(Run {
        base,
        tally: Tally::default(),
        started,
        windows: Mutex::new(Vec::new()),
        signed_out: Mutex::new(VecDeque::new()),
        logged_out_at_provider: Mutex::new(VecDeque::new()),
        stalled,
        calm_since: Mutex::new(None),
        first_page_after_calm: Mutex::new(vec![None; browsers]),
        stop: started + Duration::from_secs(secs),
    });
    let tasks: Vec<_> = (0..browsers)
        .map(|id| {
            let (run, seed) = (run.clone(), seed.wrapping_add(id as u64));
            match &provider {
                None => tokio::spawn(browse(run, id, seed)),
                Some(provider) => tokio::spawn(oidc::browse(run, id, seed, provider.issuer.clone())),
            }
        })
        .collect();

    // Faults from the 5th second on, in the schedule's order, each only if it and what it
    // leaves behind end early enough for the stuck check; a calm gap between two (1–3 s in a
    // short run, 2–5 s in a long one).
    let mut rng = StdRng::seed_from_u64(seed);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let gaps = if secs < 120 { 1000..3000 } else { 2000..5000 };
    let mut injected = Vec::new();
    let fits = |fault: Fault| {
        Instant::now() + lasts(fault) + settling(fault) + STUCK_AFTER + Duration::from_secs(3) < run.stop
    };
    let schedule = variant.schedule();
    let mut next = 0;
    loop {
        let Some(fault) = (0..schedule.len()).map(|k| schedule[(next + k) % schedule.len()]).find(|f| fits(*f)) else {
            break;
        };
        next = (next..next + schedule.len())
            .find(|k| std::mem::discriminant(&schedule[k % schedule.len()]) == std::mem::discriminant(&fault))
            .unwrap_or(next)
            + 1;
        let from = Instant::now();
        let index = {
            let mut windows = run.windows.lock().unwrap();
            windows.push((from, None));
            windows.len() - 1
        };
        let what = world.inject(fault, &mut rng).await;
        let cleared = Instant::now() + settling(fault);
        run.windows.lock().unwrap()[index].1 = Some(cleared);
        eprintln!("[{:6.1} s] fault: {what} ({:.1} s)", started.elapsed().as_secs_f64(), from.elapsed().as_secs_f64());
        injected.push(what);
        tokio::time::sleep(Duration::from_millis(rng.gen_range(gaps.clone()))).await;
    }
    let calm = run.windows.lock().unwrap().iter().filter_map(|(_, to)| *to).max().unwrap_or_else(Instant::now);
    tokio::time::sleep_until(calm.into()).await;
    *run.calm_since.lock().unwrap() = Some(calm);
    eprintln!("[{:6.1} s] calm: the last fault's window closed", started.elapsed().as_secs_f64());
    for task in tasks {
        task.await.expect("a browser task");
    }

    let t = &run.tally;
    let firsts = run.first_page_after_calm.lock().unwrap().clone();
    let stuck = firsts.iter().filter(|f| !f.is_some_and(|at| at <= calm + STUCK_AFTER)).count();
    let slowest = firsts.iter().flatten().map(|at| at.saturating_duration_since(calm)).max().unwrap_or_default();
    let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
    let window_secs: f64 = run
        .windows
        .lock()
        .unwrap()
        .iter()
        .map(|(from, to)| to.map_or(0.0, |to| to.saturating_duration_since(*from).as_secs_f64()))
        .sum();
    let (grants, reuse, unexplained) = match (&world.upstream, &provider) {
        (Some(demo), _) => {
            let counters = demo.upstream.counters();
            let killed =
                |rotated: &u64| world.kills.iter().any(|k| (*rotated..=rotated + KILL_LOSES_ANSWER.as_millis() as u64).contains(k));
            let explained = counters.grace_rotated_at_ms.iter().filter(|r| killed(r)).count() as u64;
            println!(
                "grace reuses (a retired token presented again within {} s, its successor never used): {}, {explained} of them within {} s after one of the {} SIGKILLs",
                ROTATION_GRACE.as_secs(),
                counters.grace_reuses,
                KILL_LOSES_ANSWER.as_secs(),
                world.kills.len(),
            );
            let grants = counters.grants.get("refresh_token").copied().unwrap_or(0);
            (grants, counters.reuse_events, Some(counters.grace_reuses.saturating_sub(explained)))
        }
        (None, Some(provider)) => {
            let counters = provider.counters().await;
            println!(
                "provider: refreshes {}, back-channel logouts it delivered {} ({} while Redis was paused, by the browsers' count); logouts at the provider {}, their cookies replayed {}",
                counters.refreshes,
                counters.backchannel,
                load(&t.logouts_in_stalls),
                load(&t.provider_logouts),
                load(&t.logout_replays),
            );
            (counters.refreshes, counters.reuse, None)
        }
        (None, None) => unreachable!("a run fronts one upstream"),
    };
    println!(
        "chaos ({}): {secs} s, {browsers} browsers over 3 instances, access tokens {} s, seed {seed}",
        variant.name(),
        ACCESS_TTL.as_secs()
    );
    println!("faults ({}): {}", injected.len(), injected.join("; "));
    println!(
        "signed-in pages {} | sign-outs {} | replays of signed-out cookies {} | requests given up mid-way {} | refresh grants {grants} | connections lost in fault windows {} | errors {}",
        load(&t.pages),
        load(&t.sign_outs),
        load(&t.replays),
        load(&t.gave_up),
        load(&t.lost),
        load(&t.errors),
    );
    println!(
        "503 try again: {} inside the fault windows ({window_secs:.0} s in all), {} outside",
        load(&t.try_again),
        load(&t.try_again_outside)
    );
    println!("slowest first signed-in page after the calm: {:.1} s", slowest.as_secs_f64());
    let mut invariants = vec![("reuse events at the upstream", reuse)];
    if let Some(unexplained) = unexplained {
        invariants.push(("grace reuses no SIGKILL explains", unexplained));
    }
    invariants.extend([
        ("spurious sign-outs", load(&t.spurious)),
        ("revived sessions", load(&t.revived)),
        ("stuck sessions", stuck as u64),
    ]);
    if variant == Variant::Oidc {
        invariants.push(("back-channel logouts lost", load(&t.lost_logouts)));
    }
    for (what, n) in &invariants {
        println!("{what}: {n}");
    }
    drop(world);
    invariants.iter().all(|(_, n)| *n == 0) && load(&t.try_again_outside) == 0 && load(&t.errors) == 0
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not: the 60-second smoke of
    // each variant. CHAOS_VARIANT=demo or oidc runs one.
    let benching = std::env::args().any(|a| a == "--bench");
    let secs = env_or("CHAOS_SECS", if benching { 600 } else { 60 });
    let browsers = env_or("CHAOS_BROWSERS", if benching { 200 } else { 24 }) as usize;
    let seed = env_or("CHAOS_SEED", rand::random::<u32>() as u64);
    let variants = match std::env::var("CHAOS_VARIANT").as_deref() {
        Ok("demo") => vec![Variant::Demo],
        Ok("oidc") => vec![Variant::Oidc],
        Ok(other) if !other.is_empty() => {
            eprintln!("CHAOS_VARIANT is demo or oidc (both when unset), not {other:?}");
            std::process::exit(2);
        }
        _ => vec![Variant::Demo, Variant::Oidc],
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let mut held = true;
    for variant in variants {
        // The provider answers a sign-in in several round trips: fewer browsers keep its
        // share of the two cores like the demo's.
        let browsers = match variant {
            Variant::Demo => browsers,
            Variant::Oidc => env_or("CHAOS_OIDC_BROWSERS", (browsers as u64 / 3).max(8)) as usize,
        };
        if !runtime.block_on(chaos(secs, browsers, seed, variant)) {
            eprintln!("chaos ({}): an invariant does not hold (see above; instance logs under target/tmp/)", variant.name());
            held = false;
        }
    }
    if !held {
        std::process::exit(1);
    }
}
