//! Micro-benchmarks of what every request pays: opening (and, when it changes, sealing) the
//! session cookie, the key ring with the key in second position, the freshness decision, and
//! the refresh bookkeeping when no refresh is needed (alone and with 64 threads at once).
//! `cargo bench -p tokenless-bff --bench core`; figures in BENCHMARKS.md.

use tokenless_bff::http_api::{Fields, ProfileMap};
use tokenless_upstream::config::OAUTH2_PATHS;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use secrecy::SecretString;
use tokenless_bff::{ClientAuth, ClientConfig, UpstreamClient, UpstreamEndpoints};
use tokenless_bff::{Known, RefreshConfig, Refresher};
use tokenless_bff::KeyRing;
use tokenless_bff::{Freshness, Profile, Session, Token, TokenSet};

const NAME: &str = "__Host-tokenless_session";
const NOW: u64 = 1_800_000_000;

/// A session as a real provider fills it: a ~900-byte JWT, an opaque refresh token, a profile.
fn realistic_session() -> Session {
    let jwt = format!("eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.{}.{}", "a".repeat(620), "s".repeat(256));
    assert!((880..=920).contains(&jwt.len()), "{}", jwt.len());
    Session::new(
        "0f1e2d3c4b5a69788796a5b4c3d2e1f0".into(),
        NOW,
        TokenSet {
            access_token: Token::new(jwt),
            access_expires_at: NOW + 300,
            refresh_token: Some(Token::new("Xq3v9aZt0yR8mN2pL5kJ7hG4fD1sA6wE0cB9nM3xQ2u")),
            refresh_expires_at: Some(NOW + 30 * 24 * 3600),
            access_issued_at: NOW,
        },
        Profile {
            id: "user-7f3a".into(),
            name: "Dana User".into(),
            email: "dana.user@example.com".into(),
            roles: vec!["user".into(), "frog-keeper".into()],
        },
    )
}

fn refresher() -> Refresher {
    let base = url::Url::parse("http://127.0.0.1:9").unwrap();
    let client = UpstreamClient::new(ClientConfig {
        endpoints: UpstreamEndpoints::at(&base, OAUTH2_PATHS.into()).unwrap(),
        profile: ProfileMap { roles: "/roles".into(), ..ProfileMap::oidc() },
        registration_fields: Fields::default(),
        client_id: "bench".into(),
        client_secret: SecretString::from("bench"),
        auth: ClientAuth::ClientSecretBasic,
        timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
    })
    .unwrap();
    Refresher::new(Arc::new(client), RefreshConfig::default(), tokenless_bff::system_clock())
}

fn cookie(c: &mut Criterion) {
    let session = realistic_session();
    let ring = KeyRing::new(&[(2, [7u8; 32])]).unwrap();
    let sealed = ring.seal(NAME, &session.to_bytes());
    println!("sealed cookie value: {} bytes (payload {} bytes)", sealed.len(), session.to_bytes().len());

    c.bench_function("seal (serialize + AES-256-GCM + base64)", |b| {
        b.iter(|| ring.seal(NAME, &black_box(&session).to_bytes()))
    });
    c.bench_function("open (base64 + AES-256-GCM + deserialize)", |b| {
        b.iter(|| Session::from_bytes(&ring.open(NAME, black_box(&sealed)).unwrap().plaintext).unwrap())
    });
    c.bench_function("seal + open", |b| {
        b.iter(|| {
            let sealed = ring.seal(NAME, &black_box(&session).to_bytes());
            Session::from_bytes(&ring.open(NAME, &sealed).unwrap().plaintext).unwrap()
        })
    });

    // Where the time goes.
    let bytes = session.to_bytes();
    c.bench_function("part: serialize the session (postcard)", |b| b.iter(|| black_box(&session).to_bytes()));
    c.bench_function("part: deserialize the session (postcard)", |b| {
        b.iter(|| Session::from_bytes(black_box(&bytes)).unwrap())
    });
    {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let encoded = URL_SAFE_NO_PAD.encode(&bytes);
        c.bench_function("part: base64url encode + decode of the payload", |b| {
            b.iter(|| URL_SAFE_NO_PAD.decode(URL_SAFE_NO_PAD.encode(black_box(&bytes))).unwrap())
        });
        black_box(encoded);
    }

    let old = KeyRing::new(&[(1, [9u8; 32])]).unwrap();
    let rotated = KeyRing::new(&[(2, [7u8; 32]), (1, [9u8; 32])]).unwrap();
    let sealed_with_old = old.seal(NAME, &session.to_bytes());
    c.bench_function("open with the key in second position", |b| {
        b.iter(|| {
            let opened = rotated.open(NAME, black_box(&sealed_with_old)).unwrap();
            assert!(opened.stale_key);
            Session::from_bytes(&opened.plaintext).unwrap()
        })
    });
}

/// The refresher's bookkeeping against the in-process memory never waits: polled once, ready.
fn ready<T>(future: impl std::future::Future<Output = T>) -> T {
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(value) => value,
        std::task::Poll::Pending => panic!("the in-process memory made a lookup wait"),
    }
}

fn decisions(c: &mut Criterion) {
    let session = realistic_session();
    c.bench_function("freshness decision", |b| {
        b.iter(|| assert_eq!(black_box(&session).freshness(black_box(NOW), 30), Freshness::Fresh))
    });

    let refresher = refresher();
    c.bench_function("refresh bookkeeping, nothing to do (uncontended)", |b| {
        b.iter(|| {
            assert!(matches!(ready(refresher.known(black_box(&session))), Known::Current));
            assert!(!ready(refresher.is_superseded(&session)));
        })
    });

    // 64 threads doing lookups at once (each its own session, as 64 concurrent requests): the
    // figure is the wall time divided by all lookups made, i.e. the cost of one lookup while 64
    // threads contend for the lock (and for this machine's cores).
    let shared = Arc::new(refresher);
    let sessions: Arc<Vec<Session>> = Arc::new(
        (0..64)
            .map(|i| {
                let mut s = realistic_session();
                s.id = format!("session-{i}");
                s.tokens.refresh_token = Some(Token::new(format!("refresh-token-{i}")));
                s
            })
            .collect(),
    );
    c.bench_function("refresh bookkeeping, nothing to do (64 threads at once)", |b| {
        b.iter_custom(|iters| {
            let per_thread = iters.div_ceil(64).max(1);
            let start = Instant::now();
            let threads: Vec<_> = (0..64)
                .map(|i| {
                    let refresher = shared.clone();
                    let sessions = sessions.clone();
                    std::thread::spawn(move || {
                        let s = &sessions[i];
                        for _ in 0..per_thread {
                            assert!(matches!(ready(refresher.known(black_box(s))), Known::Current));
                            assert!(!ready(refresher.is_superseded(s)));
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            let wall = start.elapsed().as_nanos();
            let done = u128::from(per_thread) * 64;
            Duration::from_nanos((wall * u128::from(iters) / done) as u64)
        })
    });
}

criterion_group!(benches, cookie, decisions);
criterion_main!(benches);
