//! The demo upstream's store, per operation: what an access-token check, a refresh (rotation) and
//! a sign-in cost in SQLite, in memory and in a file (WAL), one thread. The upstream must stay far
//! cheaper than the app's own work per request, or every benchmark would measure it instead.
//!
//! `cargo bench -p tokenless-upstream --bench store`; under `cargo test --benches` a few
//! iterations only, so it cannot rot.

use std::time::Instant;

use tokenless_upstream::store::{Database, Lifetimes, Store};
use tokenless_upstream::tokens::Signer;

const T0: u64 = 1_800_000_000_000;

fn per_op(iterations: u32, mut op: impl FnMut(u32)) -> f64 {
    let started = Instant::now();
    for i in 0..iterations {
        op(i);
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(iterations)
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let n: u32 = if measuring { 20_000 } else { 50 };
    let lifetimes = Lifetimes { access_ms: 600_000, refresh_ms: 3_600_000, grace_ms: 0 };
    let signer = Signer::new(b"bench key bench key bench key 32", "demo");
    let dir = tempfile::tempdir().expect("a temporary directory");
    println!("| store | access-token check | refresh (rotation) | sign-in (new family) |");
    println!("|---|---:|---:|---:|");
    for (label, database) in
        [("memory", Database::Memory), ("file (WAL)", Database::File(dir.path().join("bench.sqlite3")))]
    {
        let mut store = Store::open(&database, lifetimes, false).expect("store");
        let user = store
            .add_user("bench@example.com", "Bench", "not-a-hash".into(), vec!["user".into()])
            .expect("user")
            .id;
        let first = store.issue_for_password(&user, "c", "", T0, &signer).expect("tokens");
        let check = per_op(n, |i| {
            store.authenticate(&first.access_token, T0 + u64::from(i), &signer).expect("valid");
        });
        let mut refresh_token = first.refresh_token.clone();
        let refresh = per_op(n, |i| {
            refresh_token = store
                .refresh(&refresh_token, "c", T0 + u64::from(i), &signer)
                .expect("rotates")
                .refresh_token;
        });
        let sign_in = per_op(n, |i| {
            store.issue_for_password(&user, "c", "", T0 + u64::from(i), &signer).expect("issues");
        });
        println!("| {label} | {check:.1} µs | {refresh:.1} µs | {sign_in:.1} µs |");
    }
}
