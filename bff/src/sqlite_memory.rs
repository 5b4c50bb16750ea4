//! [`SqliteMemory`]: the refresh memory of a single instance kept in a SQLite file, so that
//! what must outlive the process does — sign-outs, back-channel logouts, used logout tokens,
//! each session's newest generation and the refresh results late requests need (sealed:
//! [`crate::result_seal`]; a copy of the file signs nobody in).
//!
//! - **Answers come from memory**: an [`InProcess`] answers every question and holds the
//!   flights, filled from the file at start; a signed-in page never reads the file. Results
//!   read at start stay sealed until a request presents their refresh token (its hash finds
//!   them, its second hash opens them), then join the others.
//! - **Writes go through**: each fact is written (one statement, WAL) before the call returns
//!   — a sign-out acknowledged is a sign-out on disk — on the blocking pool, so a request
//!   dropped meanwhile does not stop its write.
//! - **Bounded, failing closed**: the in-process bounds hold in the file too; a sign-out or a
//!   provider end dropped to stay within them becomes a floor (every session that began no
//!   later is over), and the floor is written. Ended rows are collected every minute.
//! - **One process per file** (an exclusive lock): a second one fails to start, with an error
//!   naming the setting. Several instances share `RedisMemory` instead.
//! - A write that fails (a full disk, a file removed under the process) is logged and counted,
//!   and the fact holds in this process until it stops; a provider end not written is
//!   [`NotKept`] (the provider sends it again).
//! - A refresh's waiters are woken before its result is written, not after: a crash between
//!   the upstream's answer and the write loses the result either way (the upstream has
//!   rotated; a cookie from before presented after the restart is reuse to it, whoever holds
//!   the new one), so waiting for the disk would add its sync to every waiter and close no
//!   window.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use rusqlite::{params, Connection, OptionalExtension};

use crate::clock::Clock;
use crate::grants::BoxFuture;
use crate::memory::{Claim, InProcess, Landed, Landing, Marks, NotKept, Outcome, Refreshed, RefreshMemory, TokenKey};
use crate::result_seal::ResultSeal;

/// The file's layout; a file of a later one is refused (written by a newer version).
const SCHEMA: i64 = 1;

/// The file's `application_id` ("TLSL"): a database of another application is refused.
const APPLICATION_ID: i64 = 1_414_288_204;

/// How often ended rows are collected.
const COLLECT_EVERY: Duration = Duration::from_secs(60);

/// Floors never end (as in the process); in the file they are kept this long (ten years, the
/// longest session the settings allow).
const FLOOR_LIFE: Duration = Duration::from_secs(3660 * 24 * 3600);

/// Why the memory's file could not be opened. Each names the setting and the fix.
#[derive(Debug, thiserror::Error)]
pub enum SqliteStartError {
    /// No secret to seal results with.
    #[error("no secret to seal the refresh results kept in session.sqlite_path (SqliteOptions::secrets is empty: derive them from the session key ring)")]
    NoSecret,
    /// Its folder could not be made, or the file not created or opened.
    #[error("session.sqlite_path = {path:?} cannot be created or opened: {detail} (point it at a writable place)")]
    Open {
        /// The file.
        path: PathBuf,
        /// What SQLite or the file system said.
        detail: String,
    },
    /// Another process holds it.
    #[error("session.sqlite_path = {path:?} is in use by another process (one instance per file; several instances share session.store = \"redis\")")]
    Locked {
        /// The file.
        path: PathBuf,
    },
    /// It is not a database this version can read.
    #[error("session.sqlite_path = {path:?} is not a refresh memory this version can read ({detail}); move it away to start with an empty one (signed-out cookies may then open again until their sessions end)")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
}

/// The file memory's settings.
#[derive(Clone)]
pub struct SqliteOptions {
    /// The server secrets results are sealed with (with each consumed token's material): the
    /// first seals, every one opens ([`crate::KeyRing::derive_secrets`]).
    pub secrets: Vec<[u8; 32]>,
    /// Remembered results and newest-generation marks at most.
    pub capacity: usize,
    /// Sign-outs, provider ends and used logout tokens at most, each.
    pub ended_capacity: usize,
}

impl std::fmt::Debug for SqliteOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteOptions")
            .field("capacity", &self.capacity)
            .field("ended_capacity", &self.ended_capacity)
            .finish_non_exhaustive()
    }
}

/// A result read from the file, still sealed: its value (`R|{generation}|{sealed}` or
/// `X|{code}`) and its end (Unix milliseconds).
type Sealed = (String, u64);

/// The refresh memory in a SQLite file (see the module's notes).
pub struct SqliteMemory {
    local: InProcess,
    db: Arc<Mutex<Connection>>,
    seal: ResultSeal,
    /// Results read at start that no request presented the token of yet, by token hash.
    sealed: Mutex<HashMap<[u8; 32], Sealed>>,
    clock: Arc<dyn Clock>,
    options: SqliteOptions,
    failures: Counter,
    /// Dropped with the memory: the collector ends.
    _stop: tokio::sync::watch::Sender<()>,
}

impl std::fmt::Debug for SqliteMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteMemory").field("options", &self.options).finish_non_exhaustive()
    }
}

fn lock(db: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    db.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whole milliseconds of `d` (at most ten years).
fn ms(d: Duration) -> u64 {
    u64::try_from(d.min(FLOOR_LIFE).as_millis()).unwrap_or(u64::MAX)
}

/// SQLite's integers are signed: a Unix-milliseconds moment as one.
fn db_ms(moment: u64) -> i64 {
    i64::try_from(moment).unwrap_or(i64::MAX)
}

/// The name a result is sealed under (its associated data).
fn result_name(key_hex: &str) -> String {
    format!("result:{key_hex}")
}

/// A row of the file: its kind, id, value and end.
struct Row {
    kind: String,
    id: String,
    value: String,
    until: u64,
}

impl Row {
    fn new(kind: &str, id: impl Into<String>, value: impl Into<String>, until: u64) -> Self {
        Row { kind: kind.to_string(), id: id.into(), value: value.into(), until }
    }
}

impl SqliteMemory {
    /// Opens (or creates, with its folder) the file at `path`, takes it for this process and
    /// reads what is still alive in it.
    pub fn open(path: &Path, options: SqliteOptions, clock: Arc<dyn Clock>) -> Result<Self, SqliteStartError> {
        if options.secrets.is_empty() {
            return Err(SqliteStartError::NoSecret);
        }
        let open_error = |detail: String| SqliteStartError::Open { path: path.to_path_buf(), detail };
        if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder).map_err(|e| open_error(format!("its folder: {e}")))?;
        }
        let db = Connection::open(path).map_err(|e| open_error(e.to_string()))?;
        let classify = |e: rusqlite::Error| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                SqliteStartError::Locked { path: path.to_path_buf() }
            }
            Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) => {
                SqliteStartError::Unreadable { path: path.to_path_buf(), detail: e.to_string() }
            }
            _ => open_error(e.to_string()),
        };
        // Exclusive: the first write takes the file for this connection until it closes.
        db.busy_timeout(Duration::ZERO).map_err(classify)?;
        db.pragma_update(None, "locking_mode", "EXCLUSIVE").map_err(classify)?;
        db.pragma_update(None, "journal_mode", "WAL").map_err(classify)?;
        // FULL: a commit is on disk before the call returns, through a power loss too.
        db.pragma_update(None, "synchronous", "FULL").map_err(classify)?;
        let version: i64 = db.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(classify)?;
        if version > SCHEMA {
            return Err(SqliteStartError::Unreadable { path: path.to_path_buf(), detail: format!("layout {version}, written by a newer version") });
        }
        // Another application's database (a path mistyped onto the demo's) is never taken over.
        let application: i64 = db.pragma_query_value(None, "application_id", |row| row.get(0)).map_err(classify)?;
        let tables: i64 = db
            .query_row("SELECT count(*) FROM sqlite_master WHERE name NOT IN ('facts', 'facts_until')", [], |row| row.get(0))
            .map_err(classify)?;
        if application != APPLICATION_ID && (application != 0 || tables > 0) {
            return Err(SqliteStartError::Unreadable { path: path.to_path_buf(), detail: "another application's database".into() });
        }
        db.execute_batch(
            "BEGIN EXCLUSIVE;
             CREATE TABLE IF NOT EXISTS facts (
               kind TEXT NOT NULL, id TEXT NOT NULL, value TEXT NOT NULL, until_ms INTEGER NOT NULL,
               PRIMARY KEY (kind, id)) WITHOUT ROWID;
             CREATE INDEX IF NOT EXISTS facts_until ON facts (until_ms);
             PRAGMA user_version = 1;
             PRAGMA application_id = 1414288204;
             COMMIT;",
        )
        .map_err(classify)?;
        let check: String = db.pragma_query_value(None, "quick_check", |row| row.get(0)).map_err(classify)?;
        if check != "ok" {
            return Err(SqliteStartError::Unreadable { path: path.to_path_buf(), detail: check });
        }
        let now = clock.unix_millis();
        let rows = Self::read(&db, now).map_err(classify)?;
        let (stop, stopped) = tokio::sync::watch::channel(());
        let memory = SqliteMemory {
            local: InProcess::new(options.capacity, options.ended_capacity, clock.clone()),
            db: Arc::new(Mutex::new(db)),
            seal: ResultSeal::new(options.secrets.clone()),
            sealed: Mutex::new(HashMap::new()),
            clock,
            options,
            failures: Counter::default(),
            _stop: stop,
        };
        let count = memory.restore(rows, now);
        tracing::info!(path = %path.display(), count, "the refresh memory is kept in a SQLite file");
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let db = Arc::downgrade(&memory.db);
            runtime.spawn(collect(db, memory.clock.clone(), memory.options.clone(), memory.failures.clone(), stopped));
        }
        Ok(memory)
    }

    /// Every row alive at `now`, the earliest ends first (as the in-process bounds drop them).
    fn read(db: &Connection, now: u64) -> rusqlite::Result<Vec<Row>> {
        let mut read = db.prepare("SELECT kind, id, value, until_ms FROM facts WHERE until_ms > ?1 ORDER BY until_ms")?;
        let rows = read.query_map(params![db_ms(now)], |row| {
            Ok(Row { kind: row.get(0)?, id: row.get(1)?, value: row.get(2)?, until: u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0) })
        })?;
        rows.collect()
    }

    /// Puts what the file holds into the in-process memory. Rows it cannot read are skipped
    /// (logged): none of them can bring a session back, they can only fail to end one.
    fn restore(&self, rows: Vec<Row>, now: u64) -> usize {
        let left = |until: u64| Duration::from_millis(until.saturating_sub(now));
        let mut sealed = HashMap::new();
        let mut count = 0;
        for row in rows {
            let read = match row.kind.as_str() {
                "ended" => row.value.parse().ok().map(|created_at| {
                    self.local.sign_out_now(&row.id, created_at, left(row.until));
                }),
                "provider" => row.value.split_once('|').and_then(|(at, every)| {
                    let at = at.parse().ok()?;
                    self.local.end_at_provider_now(&row.id, at, every == "1", left(row.until));
                    Some(())
                }),
                "jti" => {
                    self.local.use_now(&row.id, left(row.until));
                    Some(())
                }
                "newest" => row.value.parse().ok().map(|generation| self.local.restore_newest(&row.id, generation, left(row.until))),
                "floor" => row.value.parse().ok().map(|floor| self.local.restore_floor(row.id == "provider", floor)),
                // As many as the file holds (the collector bounds it).
                "result" => hex::decode(&row.id).ok().and_then(|h| <[u8; 32]>::try_from(h).ok()).map(|hash| {
                    sealed.insert(hash, (row.value, row.until));
                }),
                _ => None,
            };
            match read {
                Some(()) => count += 1,
                None => tracing::warn!(kind = %row.kind, "a row of the refresh memory's file does not read; skipped"),
            }
        }
        *self.sealed() = sealed;
        count
    }

    fn sealed(&self) -> MutexGuard<'_, HashMap<[u8; 32], Sealed>> {
        self.sealed.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A result read at start for `key`, opened now that its token came: moved into the
    /// in-process memory (it answers from then on).
    fn open_kept(&self, key: &TokenKey) {
        // Held until the result is in the in-process memory: a request for the same token on
        // another thread finds it in one place or the other, never in neither (and flies).
        let mut sealed = self.sealed();
        let Some((value, until)) = sealed.remove(key.as_bytes()) else { return };
        let now = self.clock.unix_millis();
        if until <= now {
            return;
        }
        let outcome = match value.split_once('|') {
            Some(("X", code)) => Some(Outcome::Refused(code.to_string())),
            Some(("R", rest)) => rest.split_once('|').and_then(|(generation, sealed)| {
                let tokens = self.seal.open(key, &result_name(&hex::encode(key.as_bytes())), sealed)?;
                Some(Outcome::Refreshed(Arc::new(Refreshed { tokens, generation: generation.parse().ok()? })))
            }),
            _ => None,
        };
        match outcome {
            Some(outcome) => self.local.remember(*key, outcome, Duration::from_millis(until - now)),
            None => tracing::error!("a refresh result in the memory's file does not open (another key ring, or damaged): ignored"),
        }
    }

    /// Runs `write` on the file (on the blocking pool: a request dropped meanwhile does not
    /// stop it); `false`, logged and counted, when it failed.
    async fn write(&self, what: &'static str, write: impl FnOnce(&Connection) -> rusqlite::Result<()> + Send + 'static) -> bool {
        let db = self.db.clone();
        let done = tokio::task::spawn_blocking(move || write(&lock(&db))).await;
        let problem = match done {
            Ok(Ok(())) => return true,
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        self.failures.inc();
        tracing::error!(%problem, "the refresh memory's file could not keep a {what}: it holds in this process until it stops");
        false
    }

    /// Keeps each row (a later end already kept stays), all in one transaction.
    async fn keep(&self, what: &'static str, rows: Vec<Row>) -> bool {
        self.write(what, move |db| {
            let transaction = db.unchecked_transaction()?;
            for row in &rows {
                transaction.execute(
                    "INSERT INTO facts (kind, id, value, until_ms) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (kind, id) DO UPDATE SET value = excluded.value, until_ms = max(until_ms, excluded.until_ms)",
                    params![row.kind, row.id, row.value, db_ms(row.until)],
                )?;
            }
            transaction.commit()
        })
        .await
    }

    /// Brings a result's end in the file forward to `left` from now.
    async fn shorten_kept(&self, key: TokenKey, left: Duration) {
        let until = db_ms(self.clock.unix_millis().saturating_add(ms(left)));
        let id = hex::encode(key.as_bytes());
        self.write("result's end", move |db| {
            db.execute("UPDATE facts SET until_ms = min(until_ms, ?1) WHERE kind = 'result' AND id = ?2", params![until, id]).map(drop)
        })
        .await;
    }
}

/// Deletes ended rows every [`COLLECT_EVERY`], and rows over the bounds (the oldest ends
/// first; sign-outs and provider ends dropped that way become floors, written first), until
/// `stop` is dropped. It does not keep the file open: a memory dropped closes it at once (a
/// restart in the same process opens it again).
async fn collect(db: std::sync::Weak<Mutex<Connection>>, clock: Arc<dyn Clock>, options: SqliteOptions, failures: Counter, mut stop: tokio::sync::watch::Receiver<()>) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(COLLECT_EVERY) => {}
        }
        let Some(db) = db.upgrade() else { return };
        let (now, options) = (clock.unix_millis(), options.clone());
        let done = tokio::task::spawn_blocking(move || collect_now(&lock(&db), now, &options)).await;
        if !matches!(done, Ok(Ok(()))) {
            failures.inc();
            tracing::warn!("collecting the refresh memory's ended rows failed; trying again in a minute");
        }
    }
}

/// One collection (see [`collect`]).
fn collect_now(db: &Connection, now: u64, options: &SqliteOptions) -> rusqlite::Result<()> {
    db.execute("DELETE FROM facts WHERE until_ms <= ?1", params![db_ms(now)])?;
    let floor_until = db_ms(now.saturating_add(ms(FLOOR_LIFE)));
    for (kind, bound) in [("ended", options.ended_capacity), ("provider", options.ended_capacity), ("jti", options.ended_capacity), ("result", options.capacity), ("newest", options.capacity)] {
        let count: i64 = db.query_row("SELECT count(*) FROM facts WHERE kind = ?1", params![kind], |row| row.get(0))?;
        let over = count - i64::try_from(bound).unwrap_or(i64::MAX);
        if over <= 0 {
            continue;
        }
        // A sign-out's value is when its session began; a provider end's, `{at}|{every}`.
        if kind == "ended" || kind == "provider" {
            let latest: Option<i64> = db
                .query_row(
                    "SELECT max(CAST(value AS INTEGER)) FROM (SELECT value FROM facts WHERE kind = ?1 ORDER BY until_ms LIMIT ?2)",
                    params![kind, over],
                    |row| row.get(0),
                )
                .optional()?
                .flatten();
            if let Some(latest) = latest {
                tracing::error!(kind, "the refresh memory's file is full: marks dropped become a floor (every session that began no later is over)");
                db.execute(
                    "INSERT INTO facts (kind, id, value, until_ms) VALUES ('floor', ?1, ?2, ?3)
                     ON CONFLICT (kind, id) DO UPDATE SET value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER)), until_ms = excluded.until_ms",
                    params![kind, latest.to_string(), floor_until],
                )?;
            }
        }
        db.execute(
            "DELETE FROM facts WHERE kind = ?1 AND id IN (SELECT id FROM facts WHERE kind = ?1 ORDER BY until_ms LIMIT ?2)",
            params![kind, over],
        )?;
    }
    Ok(())
}

impl RefreshMemory for SqliteMemory {
    fn claim<'a>(&'a self, key: TokenKey, session_id: &'a str, generation: u64) -> BoxFuture<'a, Claim> {
        self.open_kept(&key);
        self.local.claim(key, session_id, generation)
    }

    fn land<'a>(&'a self, key: TokenKey, landing: Landing<'a>) -> BoxFuture<'a, Landed> {
        Box::pin(async move {
            let (session_id, handoff, grace) = (landing.session_id.to_string(), landing.handoff, landing.grace);
            let landed = self.local.land(key, landing).await;
            let now = self.clock.unix_millis();
            let id = hex::encode(key.as_bytes());
            match &landed.outcome {
                Outcome::Refreshed(refreshed) => {
                    let until = now.saturating_add(ms(handoff));
                    match self.seal.seal(&key, &result_name(&id), &refreshed.tokens) {
                        Some(sealed) => {
                            let generation = refreshed.generation;
                            // One transaction (one sync to disk) for both.
                            let rows = vec![
                                Row::new("result", id, format!("R|{generation}|{sealed}"), until),
                                Row::new("newest", session_id, generation.to_string(), until),
                            ];
                            self.keep("refresh result", rows).await;
                        }
                        None => tracing::error!("a refresh result could not be sealed for the memory's file: it holds in this process only"),
                    }
                }
                Outcome::Refused(code) => {
                    self.keep("refusal", vec![Row::new("result", id, format!("X|{code}"), now.saturating_add(ms(grace)))]).await;
                }
                Outcome::Unavailable(_) => {}
            }
            landed
        })
    }

    fn abandon(&self, key: TokenKey) {
        self.local.abandon(key);
    }

    fn remembered(&self, key: TokenKey) -> BoxFuture<'_, Option<Outcome>> {
        self.open_kept(&key);
        self.local.remembered(key)
    }

    fn shorten(&self, key: TokenKey, left: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.open_kept(&key);
            self.local.shorten(key, left).await;
            self.shorten_kept(key, left).await;
        })
    }

    fn marks<'a>(&'a self, session_id: &'a str, created_at: u64) -> BoxFuture<'a, Marks> {
        self.local.marks(session_id, created_at)
    }

    fn sign_out<'a>(&'a self, session_id: &'a str, created_at: u64, left: Duration) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            // A mark the process drops to stay within bounds stays in the file until the
            // collector drops it there too, as a floor: read back, it fails closed the same way.
            self.local.sign_out_now(session_id, created_at, left);
            let until = self.clock.unix_millis().saturating_add(ms(left));
            self.keep("sign-out", vec![Row::new("ended", session_id, created_at.to_string(), until)]).await;
        })
    }

    fn carried<'a>(&'a self, session_id: &'a str, generation: u64, grace: Duration) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Some(key) = self.local.carried_now(session_id, generation, grace) {
                self.shorten_kept(key, grace).await;
            }
        })
    }

    fn end_at_provider<'a>(&'a self, key: &'a str, at: u64, every: bool, left: Duration) -> BoxFuture<'a, Result<(), NotKept>> {
        Box::pin(async move {
            self.local.end_at_provider_now(key, at, every, left);
            let (at, every) = self.local.provider_end(key).unwrap_or((at, every));
            let until = self.clock.unix_millis().saturating_add(ms(left));
            let kept = self.keep("provider end", vec![Row::new("provider", key, format!("{at}|{}", if every { "1" } else { "0" }), until)]).await;
            kept.then_some(()).ok_or(NotKept)
        })
    }

    fn ended_at_provider<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Option<u64>> {
        self.local.ended_at_provider(keys)
    }

    fn first_use<'a>(&'a self, jti: &'a str, left: Duration) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let first = self.local.first_use(jti, left).await;
            if first {
                // One not written is only logged: replayed after a restart, it can only end
                // sessions again.
                let until = self.clock.unix_millis().saturating_add(ms(left));
                self.keep("used logout token", vec![Row::new("jti", jti, "", until)]).await;
            }
            first
        })
    }

    fn forget_use<'a>(&'a self, jti: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.local.forget_use(jti).await;
            let jti = jti.to_string();
            self.write("forgotten logout token", move |db| db.execute("DELETE FROM facts WHERE kind = 'jti' AND id = ?1", params![jti]).map(drop)).await;
        })
    }

    fn remembered_count(&self) -> Option<usize> {
        self.local.remembered_count()
    }

    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register("file_failures", "Writes to the refresh memory's SQLite file that failed (the fact held in this process only)", self.failures.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::UpstreamError;
    use crate::clock::ManualClock;
    use crate::session::{Token, TokenSet};

    fn options() -> SqliteOptions {
        SqliteOptions { secrets: vec![[3; 32]], capacity: 100, ended_capacity: 100 }
    }

    fn open(path: &Path, clock: &ManualClock) -> SqliteMemory {
        SqliteMemory::open(path, options(), Arc::new(clock.clone())).expect("opens")
    }

    fn tokens(n: u32) -> TokenSet {
        TokenSet {
            access_token: Token::new(format!("access-{n}")),
            access_expires_at: 1_000,
            refresh_token: Some(Token::new(format!("refresh-{n}"))),
            refresh_expires_at: None,
            access_issued_at: 1,
        }
    }

    fn landing(session_id: &str, result: Result<TokenSet, UpstreamError>) -> Landing<'_> {
        Landing { session_id, created_at: 100, generation: 1, result, handoff: Duration::from_secs(600), grace: Duration::from_secs(60) }
    }

    /// What must outlive the process does: a sign-out, a provider end, a used logout token, a
    /// refresh result (the late pre-rotation cookie gets it, no second grant) and a refusal.
    #[tokio::test]
    async fn what_was_kept_is_there_after_a_restart() {
        let (dir, clock) = (tempfile::tempdir().unwrap(), ManualClock::new());
        let path = dir.path().join("nested/memory.sqlite3");
        let (rotated, refused) = (TokenKey::of(&Token::new("refresh-0")), TokenKey::of(&Token::new("refresh-x")));
        {
            let memory = open(&path, &clock);
            memory.sign_out("gone", 100, Duration::from_secs(3600)).await;
            memory.end_at_provider("sid https://id s-1", 50, true, Duration::from_secs(3600)).await.expect("kept");
            assert!(memory.first_use("jti-1", Duration::from_secs(3600)).await);
            assert!(matches!(memory.claim(rotated, "kept", 1).await, Claim::Fly(_)));
            memory.land(rotated, landing("kept", Ok(tokens(1)))).await;
            assert!(matches!(memory.claim(refused, "other", 1).await, Claim::Fly(_)));
            memory.land(refused, landing("other", Err(UpstreamError::Refused { code: "invalid_grant".into() }))).await;
        }
        clock.advance(Duration::from_secs(30));
        let memory = open(&path, &clock);
        assert!(memory.marks("gone", 100).await.signed_out, "the sign-out");
        assert!(!memory.marks("someone", 100).await.signed_out);
        assert_eq!(memory.marks("kept", 100).await.newest, Some(2), "the newest generation");
        assert_eq!(memory.ended_at_provider(&["sid https://id s-1".into()]).await, Some(u64::MAX), "the provider end");
        assert!(!memory.first_use("jti-1", Duration::from_secs(3600)).await, "the used logout token");
        match memory.claim(rotated, "kept", 1).await {
            Claim::Remembered(Outcome::Refreshed(r)) => assert_eq!((r.tokens.clone(), r.generation), (tokens(1), 2)),
            other => panic!("the result, opened with the late cookie's token: {other:?}"),
        }
        assert!(matches!(memory.remembered(refused).await, Some(Outcome::Refused(code)) if code == "invalid_grant"));
        // Each lived its own time: the refusal its grace (60 s), the rest longer.
        clock.advance(Duration::from_secs(31));
        drop(memory);
        let memory = open(&path, &clock);
        assert!(memory.remembered(refused).await.is_none(), "the refusal's grace is over");
        assert!(memory.remembered(rotated).await.is_some());
        assert!(memory.marks("gone", 100).await.signed_out);
    }

    /// A result kept only the grace once carried is kept only that long in the file too.
    #[tokio::test]
    async fn a_carried_result_is_shortened_in_the_file() {
        let (dir, clock) = (tempfile::tempdir().unwrap(), ManualClock::new());
        let path = dir.path().join("memory.sqlite3");
        let key = TokenKey::of(&Token::new("refresh-0"));
        {
            let memory = open(&path, &clock);
            assert!(matches!(memory.claim(key, "s", 1).await, Claim::Fly(_)));
            memory.land(key, landing("s", Ok(tokens(1)))).await;
            memory.carried("s", 2, Duration::from_secs(5)).await;
        }
        clock.advance(Duration::from_secs(6));
        assert!(open(&path, &clock).remembered(key).await.is_none(), "gone after the grace, not the hand-off");
    }

    /// Over its bound the file drops the oldest sign-outs into a floor: after a restart every
    /// session that began no later than the dropped ones is still signed out.
    #[tokio::test]
    async fn a_full_file_fails_closed_across_a_restart() {
        let (dir, clock) = (tempfile::tempdir().unwrap(), ManualClock::new());
        let path = dir.path().join("memory.sqlite3");
        let small = SqliteOptions { ended_capacity: 2, ..options() };
        {
            let memory = SqliteMemory::open(&path, small.clone(), Arc::new(clock.clone())).unwrap();
            for (n, created_at) in [(1, 10), (2, 20), (3, 30)] {
                memory.sign_out(&format!("s{n}"), created_at, Duration::from_secs(3600 + n)).await;
            }
        }
        let memory = SqliteMemory::open(&path, small.clone(), Arc::new(clock.clone())).unwrap();
        assert!(memory.marks("s1", 10).await.signed_out, "dropped, under the floor");
        assert!(memory.marks("unrelated", 5).await.signed_out, "began before the floor: refused too");
        assert!(memory.marks("s3", 30).await.signed_out);
        assert!(!memory.marks("new", 40).await.signed_out, "began after: served");
        // The collector keeps the file within the bound the same way: what it drops becomes a
        // floor there, read back after the next restart.
        collect_now(&lock(&memory.db), clock.unix_millis(), &small).unwrap();
        let ended: i64 = lock(&memory.db).query_row("SELECT count(*) FROM facts WHERE kind = 'ended'", [], |r| r.get(0)).unwrap();
        assert_eq!(ended, 2, "sign-outs kept");
        drop(memory);
        let memory = SqliteMemory::open(&path, small, Arc::new(clock.clone())).unwrap();
        assert!(memory.marks("s1", 10).await.signed_out, "dropped by the collector, under its floor");
        assert!(!memory.marks("new", 40).await.signed_out);
    }

    #[tokio::test]
    async fn ended_rows_are_collected() {
        let (dir, clock) = (tempfile::tempdir().unwrap(), ManualClock::new());
        let memory = open(&dir.path().join("memory.sqlite3"), &clock);
        memory.sign_out("short", 1, Duration::from_secs(10)).await;
        memory.sign_out("long", 1, Duration::from_secs(1000)).await;
        clock.advance(Duration::from_secs(11));
        collect_now(&lock(&memory.db), clock.unix_millis(), &options()).unwrap();
        let ids: Vec<String> =
            lock(&memory.db).prepare("SELECT id FROM facts").unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
        assert_eq!(ids, ["long"]);
    }

    /// A copy of the file signs nobody in: results are sealed, no token is in it.
    #[tokio::test]
    async fn the_file_holds_no_token() {
        let (dir, clock) = (tempfile::tempdir().unwrap(), ManualClock::new());
        let path = dir.path().join("memory.sqlite3");
        let key = TokenKey::of(&Token::new("refresh-0"));
        {
            let memory = open(&path, &clock);
            assert!(matches!(memory.claim(key, "s", 1).await, Claim::Fly(_)));
            memory.land(key, landing("s", Ok(tokens(7)))).await;
        }
        let mut bytes = std::fs::read(&path).unwrap();
        for extra in ["-wal", "-shm"] {
            bytes.extend(std::fs::read(format!("{}{extra}", path.display())).unwrap_or_default());
        }
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("result"), "the rows are there");
        for token in ["access-7", "refresh-7", "refresh-0"] {
            assert!(!text.contains(token), "{token} in the file");
        }
    }

    #[tokio::test]
    async fn a_file_another_process_holds_is_a_clear_error() {
        let (dir, clock) = (tempfile::tempdir().unwrap(), ManualClock::new());
        let path = dir.path().join("memory.sqlite3");
        let _first = open(&path, &clock);
        let second = SqliteMemory::open(&path, options(), Arc::new(clock.clone()));
        let error = second.expect_err("one process per file").to_string();
        assert!(error.contains("session.sqlite_path") && error.contains("in use by another process"), "{error}");
    }

    #[tokio::test]
    async fn a_damaged_or_foreign_file_is_a_clear_error_never_a_panic() {
        let (dir, clock) = (tempfile::tempdir().unwrap(), ManualClock::new());
        let garbage = dir.path().join("garbage.sqlite3");
        std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
        let error = SqliteMemory::open(&garbage, options(), Arc::new(clock.clone())).expect_err("not a database").to_string();
        assert!(error.contains("session.sqlite_path") && error.contains("move it away"), "{error}");
        // A real database whose pages were damaged after its header.
        let damaged = dir.path().join("damaged.sqlite3");
        {
            let memory = open(&damaged, &clock);
            for n in 0..200 {
                memory.sign_out(&format!("session-{n}"), 1, Duration::from_secs(3600)).await;
            }
        }
        let mut bytes = std::fs::read(&damaged).unwrap();
        assert!(bytes.len() > 4096, "more than one page");
        for b in &mut bytes[4096..] {
            *b ^= 0xa5;
        }
        std::fs::write(&damaged, bytes).unwrap();
        let _ = std::fs::remove_file(format!("{}-wal", damaged.display()));
        let error = SqliteMemory::open(&damaged, options(), Arc::new(clock.clone())).expect_err("damaged").to_string();
        assert!(error.contains("session.sqlite_path"), "{error}");
        // Another application's database.
        let foreign = dir.path().join("foreign.sqlite3");
        Connection::open(&foreign).unwrap().execute_batch("CREATE TABLE users (id INTEGER); INSERT INTO users VALUES (1);").unwrap();
        let error = SqliteMemory::open(&foreign, options(), Arc::new(clock.clone())).expect_err("not ours").to_string();
        assert!(error.contains("another application"), "{error}");
        let users: i64 = Connection::open(&foreign).unwrap().query_row("SELECT count(*) FROM users", [], |r| r.get(0)).unwrap();
        assert_eq!(users, 1, "left as it was");
        // A file from a later version.
        let later = dir.path().join("later.sqlite3");
        Connection::open(&later).unwrap().pragma_update(None, "user_version", 9).unwrap();
        let error = SqliteMemory::open(&later, options(), Arc::new(clock.clone())).expect_err("newer").to_string();
        assert!(error.contains("newer version"), "{error}");
    }

    #[tokio::test]
    async fn a_place_that_cannot_be_written_is_a_clear_error() {
        let (dir, clock) = (tempfile::tempdir().unwrap(), ManualClock::new());
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        let error = SqliteMemory::open(&file.join("memory.sqlite3"), options(), Arc::new(clock.clone())).expect_err("under a file").to_string();
        assert!(error.contains("session.sqlite_path") && error.contains("writable"), "{error}");
        let error = SqliteMemory::open(&dir.path().join("m.sqlite3"), SqliteOptions { secrets: Vec::new(), ..options() }, Arc::new(clock.clone()))
            .expect_err("no secret")
            .to_string();
        assert!(error.contains("secret"), "{error}");
    }
}
