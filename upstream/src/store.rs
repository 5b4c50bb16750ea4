//! Users, token families, refresh-token records, revoked access tokens and croaks: the upstream's
//! whole state, in SQLite (a file that survives restarts, or `:memory:`), plus the in-memory
//! counters and issued-token log the test controls read. Time is passed in, in milliseconds
//! since the Unix epoch, so expiry is tested without waiting.
//!
//! Rotation with reuse detection (RFC 9700 §4.14.2): each refresh retires the presented token
//! and issues a successor in the same family; presenting a retired token revokes the family
//! (every access and refresh token of that sign-in) and counts a reuse event. A rotation is one
//! `IMMEDIATE` transaction: the successor is stored and the presented token marked used together,
//! so a crash or a failed write mid-rotation leaves the old token live and no new one.
//!
//! Concurrency: one connection, behind the `Mutex` in [`crate::Upstream`], does every read and
//! write of this process, so requests never contend inside SQLite. Another process on the same
//! file (a second app, a restart overlapping the old one) is handled by WAL (readers never wait
//! for the writer), `IMMEDIATE` write transactions (no lock upgrade that could deadlock) and a
//! busy timeout: it waits for the lock instead of failing with "database is locked".

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use serde::Serialize;

use crate::tokens::{new_refresh_token, random_hex, random_key, token_hash, AccessClaims, Signer};

/// Where the store keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// Gone when the upstream stops: each start is a fresh, isolated store (tests).
    Memory,
    /// A SQLite file, created with its directory when missing.
    File(PathBuf),
}

impl Database {
    /// `":memory:"` is [`Database::Memory`]; anything else a file path.
    pub fn parse(raw: &str) -> Database {
        match raw.trim() {
            ":memory:" => Database::Memory,
            path => Database::File(PathBuf::from(path)),
        }
    }
}

impl std::fmt::Display for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Memory => f.write_str(":memory:"),
            Database::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// The store could not be opened, or a read or write failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the directory {path} for the demo upstream's database: {source}")]
    Directory { path: PathBuf, source: std::io::Error },
    #[error("cannot open the demo upstream's database {database}: {source}")]
    Open { database: Database, source: rusqlite::Error },
    #[error(
        "the demo upstream's database {database} has schema version {found}, newer than this \
         build knows ({known}); delete it (make reset-demo) or point the setting elsewhere"
    )]
    NewerSchema { database: Database, found: i64, known: i64 },
    #[error("the demo upstream's database failed: {0}")]
    Sql(#[from] rusqlite::Error),
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: String,
    pub password_hash: String,
    pub roles: Vec<String>,
}

/// What the resource endpoints show about a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Profile {
    pub id: String,
    pub name: String,
    pub email: String,
    pub roles: Vec<String>,
}

impl From<&User> for Profile {
    fn from(u: &User) -> Self {
        Profile { id: u.id.clone(), name: u.name.clone(), email: u.email.clone(), roles: u.roles.clone() }
    }
}

/// `refresh_tokens.state`.
const ACTIVE: i64 = 0;
const ROTATED: i64 = 1;
const REVOKED: i64 = 2;

/// A token response (RFC 6749 §5.1).
#[derive(Debug, Clone, Serialize)]
pub struct IssuedTokens {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub refresh_token: String,
    pub refresh_expires_in: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub scope: String,
}

/// Why a grant was refused. All but `Storage` are `invalid_grant` on the wire; `Storage` is the
/// upstream's own failure (500), which must never read as a refused grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("the refresh token is unknown")]
    Unknown,
    #[error("the refresh token was issued to another client")]
    OtherClient,
    #[error("the refresh token has expired")]
    Expired,
    #[error("the refresh token was revoked")]
    Revoked,
    #[error("the refresh token was already used; the session has been revoked")]
    Reused,
    #[error("the user no longer exists")]
    NoUser,
    #[error("the token store failed")]
    Storage,
}

/// Why an access token was refused; all but `Storage` are `invalid_token` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("the access token is malformed or its signature is wrong")]
    Invalid,
    #[error("the access token has expired")]
    Expired,
    #[error("the access token was revoked")]
    Revoked,
    #[error("the token store failed")]
    Storage,
}

#[derive(Debug, thiserror::Error)]
pub enum AddUserError {
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the test controls read. Reset with [`Store::reset_counters`]. Kept in memory: they
/// describe this run, not the accounts.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Counters {
    /// Successful grants by `grant_type`.
    pub grants: BTreeMap<String, u64>,
    /// Successful refresh grants by user email.
    pub refreshes_per_user: BTreeMap<String, u64>,
    /// Refused grants by reason.
    pub grant_failures: BTreeMap<String, u64>,
    /// Rotated refresh tokens presented again (each one revoked a family).
    pub reuse_events: u64,
    /// Rotated refresh tokens accepted inside the grace period.
    pub grace_reuses: u64,
    /// When the token of each of the latest grace reuses ([`KEEP_GRACE_LOG`]) had been rotated
    /// (Unix ms), so that a test can say what lost the answer of that rotation.
    pub grace_rotated_at_ms: VecDeque<u64>,
    /// Tokens or families revoked (RFC 7009 calls, reuse, test controls).
    pub revocations: u64,
    /// Requests by "METHOD /path" (test-control requests not counted).
    pub requests: BTreeMap<String, u64>,
    /// Faults applied to requests or connections.
    pub faults_applied: u64,
}

/// The tokens handed to one user, kept in clear (in memory only, never in the database) and only
/// with test controls on, so that end-to-end tests can look for them in what the browser got.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IssuedToUser {
    pub access_tokens: VecDeque<String>,
    pub refresh_tokens: VecDeque<String>,
}

const KEEP_ISSUED: usize = 64;

/// Grace reuses whose rotation time [`Counters`] keeps.
pub const KEEP_GRACE_LOG: usize = 100_000;

/// Expired records are deleted every this many issued token pairs (and at open).
const PRUNE_EVERY: u32 = 1_000;

/// How long a write waits for another process holding the database's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    pub access_ms: u64,
    pub refresh_ms: u64,
    pub grace_ms: u64,
}

/// The schema, one entry per version; `PRAGMA user_version` says how many have run. Append new
/// versions, never edit an old one: files made by earlier builds are migrated forward at open.
const MIGRATIONS: &[&str] = &[
    // 1
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
     CREATE TABLE users (
         id TEXT PRIMARY KEY,
         email TEXT NOT NULL UNIQUE,
         name TEXT NOT NULL,
         password_hash TEXT NOT NULL,
         roles TEXT NOT NULL
     );
     CREATE TABLE families (
         id TEXT PRIMARY KEY,
         user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
         revoked INTEGER NOT NULL DEFAULT 0
     );
     CREATE INDEX families_by_user ON families(user_id);
     CREATE TABLE refresh_tokens (
         hash BLOB PRIMARY KEY,
         family TEXT NOT NULL REFERENCES families(id) ON DELETE CASCADE,
         client_id TEXT NOT NULL,
         scope TEXT NOT NULL,
         expires_at_ms INTEGER NOT NULL,
         state INTEGER NOT NULL,
         rotated_at_ms INTEGER,
         successor BLOB
     ) WITHOUT ROWID;
     CREATE INDEX refresh_tokens_by_family ON refresh_tokens(family);
     CREATE TABLE revoked_access (jti TEXT PRIMARY KEY, expires_at_ms INTEGER NOT NULL) WITHOUT ROWID;
     CREATE TABLE croaks (frog INTEGER PRIMARY KEY, count INTEGER NOT NULL);",
    // 2: the access token a sign-in issued last, for APIs where a refresh retires it.
    "ALTER TABLE families ADD COLUMN access_jti TEXT;",
];

/// How strict the store is beyond rotation and reuse detection, per API shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// Only a sign-in's newest access token is valid: a refresh retires the one before it
    /// (seed 003's backend keeps one token per user).
    pub current_access_only: bool,
    /// A reused refresh token revokes every sign-in of its user, not only its own (seed 002's
    /// backend wipes all of the user's refresh tokens).
    pub reuse_revokes_user: bool,
}

#[derive(Debug)]
pub struct Store {
    conn: Connection,
    lifetimes: Lifetimes,
    keep_issued: bool,
    issued: HashMap<String, IssuedToUser>,
    issued_since_prune: u32,
    policy: Policy,
    pub counters: Counters,
}

/// Emails compare without regard to case or surrounding space.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_ascii_lowercase()
}

/// Milliseconds as SQLite stores them (an i64; far beyond any real instant).
fn ms(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn storage(e: rusqlite::Error) -> GrantError {
    tracing::error!(error = %e, "the token store failed");
    GrantError::Storage
}

fn read_user(row: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    let roles: String = row.get(4)?;
    Ok(User {
        id: row.get(0)?,
        email: row.get(1)?,
        name: row.get(2)?,
        password_hash: row.get(3)?,
        // Written by this module as a JSON array; anything else reads as no roles.
        roles: serde_json::from_str(&roles).unwrap_or_default(),
    })
}

const USER_COLUMNS: &str = "id, email, name, password_hash, roles";

/// What a refresh grant found and did, decided inside its transaction.
enum Rotation {
    /// `grace`: when the presented token had been rotated, if it was accepted inside the grace.
    Issued { tokens: IssuedTokens, user_id: String, email: String, grace: Option<u64> },
    Reused { revoked: bool },
}

impl Store {
    /// Opens (creating when missing) and migrates the database.
    pub fn open(database: &Database, lifetimes: Lifetimes, keep_issued: bool) -> Result<Store, StoreError> {
        let open_error = |source| StoreError::Open { database: database.clone(), source };
        let conn = match database {
            Database::Memory => Connection::open_in_memory().map_err(open_error)?,
            Database::File(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|source| StoreError::Directory { path: dir.to_path_buf(), source })?;
                }
                owner_only(path).map_err(|source| StoreError::Directory { path: path.to_path_buf(), source })?;
                let conn = Connection::open(path).map_err(open_error)?;
                conn.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
                let mode: String =
                    conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(open_error)?;
                if !mode.eq_ignore_ascii_case("wal") {
                    tracing::warn!(%mode, "the demo upstream's database did not switch to WAL");
                }
                conn
            }
        };
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;").map_err(open_error)?;
        let mut store = Store {
            conn,
            lifetimes,
            keep_issued,
            issued: HashMap::new(),
            issued_since_prune: 0,
            policy: Policy::default(),
            counters: Counters::default(),
        };
        store.migrate(database).map_err(|e| match e {
            StoreError::Sql(source) => StoreError::Open { database: database.clone(), source },
            other => other,
        })?;
        store.prune(crate::state::now_ms())?;
        Ok(store)
    }

    /// Sets how strict the store is (see [`Policy`]).
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    /// A fresh in-memory store (tests).
    pub fn in_memory(lifetimes: Lifetimes, keep_issued: bool) -> Result<Store, StoreError> {
        Store::open(&Database::Memory, lifetimes, keep_issued)
    }

    fn migrate(&mut self, database: &Database) -> Result<(), StoreError> {
        let known = MIGRATIONS.len() as i64;
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if found > known {
            return Err(StoreError::NewerSchema { database: database.clone(), found, known });
        }
        for (version, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", version as i64 + 1)?;
            tracing::debug!(version = version + 1, %database, "demo upstream schema migrated");
        }
        tx.commit()?;
        Ok(())
    }

    /// The key access tokens are signed with: made once and kept with the data, so tokens issued
    /// before a restart stay valid after it.
    pub fn signing_key(&mut self) -> Result<Vec<u8>, StoreError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('signing_key', ?1)", [random_key()])?;
        let key: Vec<u8> =
            tx.query_row("SELECT value FROM meta WHERE key = 'signing_key'", [], |r| r.get(0))?;
        tx.commit()?;
        Ok(key)
    }

    /// One more croak for frog `id`; the new total.
    pub fn croak(&mut self, id: u32) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn
            .prepare_cached(
                "INSERT INTO croaks (frog, count) VALUES (?1, 1)
             ON CONFLICT (frog) DO UPDATE SET count = count + 1 RETURNING count",
            )?
            .query_row([id], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    }

    pub fn croaks(&self, id: u32) -> Result<u64, StoreError> {
        let n: Option<i64> = self
            .conn
            .prepare_cached("SELECT count FROM croaks WHERE frog = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }

    pub fn add_user(
        &mut self,
        email: &str,
        name: &str,
        password_hash: String,
        roles: Vec<String>,
    ) -> Result<Profile, AddUserError> {
        let user = User {
            id: random_hex(8),
            email: normalize_email(email),
            name: name.trim().into(),
            password_hash,
            roles,
        };
        let roles = serde_json::to_string(&user.roles).unwrap_or_else(|_| "[]".into());
        let inserted = self.conn.execute(
            "INSERT INTO users (id, email, name, password_hash, roles) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![user.id, user.email, user.name, user.password_hash, roles],
        );
        match inserted {
            Ok(_) => Ok(Profile::from(&user)),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
            {
                Err(AddUserError::EmailTaken)
            }
            Err(e) => Err(AddUserError::Store(e.into())),
        }
    }

    pub fn email_taken(&self, email: &str) -> Result<bool, StoreError> {
        Ok(self.user_by_email(email)?.is_some())
    }

    pub fn user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE email = ?1"))?
            .query_row([normalize_email(email)], read_user)
            .optional()?)
    }

    pub fn user(&self, id: &str) -> Result<Option<User>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))?
            .query_row([id], read_user)
            .optional()?)
    }

    pub fn user_count(&self) -> Result<usize, StoreError> {
        let n: i64 = self.conn.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?;
        Ok(n.max(0) as usize)
    }

    pub fn active_sessions(&self) -> Result<usize, StoreError> {
        let n: i64 =
            self.conn.query_row("SELECT COUNT(*) FROM families WHERE revoked = 0", [], |r| r.get(0))?;
        Ok(n.max(0) as usize)
    }

    /// A new sign-in: a new family with its first access and refresh token.
    pub fn issue_for_password(
        &mut self,
        user_id: &str,
        client_id: &str,
        scope: &str,
        now_ms: u64,
        signer: &Signer,
    ) -> Result<IssuedTokens, GrantError> {
        let lifetimes = self.lifetimes;
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(storage)?;
        let family = random_hex(12);
        tx.execute("INSERT INTO families (id, user_id) VALUES (?1, ?2)", params![family, user_id]).map_err(
            |e| match e {
                // No such user (the foreign key).
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    GrantError::NoUser
                }
                e => storage(e),
            },
        )?;
        let (tokens, user_id, _) =
            issue_in_family(&tx, &lifetimes, &family, client_id, scope, now_ms, signer)?;
        tx.commit().map_err(storage)?;
        self.after_issue(&user_id, &tokens, now_ms);
        self.count_grant("password");
        Ok(tokens)
    }

    /// `grant_type=refresh_token`.
    pub fn refresh(
        &mut self,
        presented: &str,
        client_id: &str,
        now_ms: u64,
        signer: &Signer,
    ) -> Result<IssuedTokens, GrantError> {
        let (lifetimes, policy) = (self.lifetimes, self.policy);
        let result =
            self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(storage).and_then(
                |tx| {
                    let rotation = rotate(&tx, &lifetimes, policy, presented, client_id, now_ms, signer)?;
                    // A reuse revoked the family: that write is committed too.
                    tx.commit().map_err(storage)?;
                    Ok(rotation)
                },
            );
        match result {
            Ok(Rotation::Issued { tokens, user_id, email, grace }) => {
                if let Some(rotated_at) = grace {
                    self.counters.grace_reuses += 1;
                    if self.counters.grace_rotated_at_ms.len() == KEEP_GRACE_LOG {
                        self.counters.grace_rotated_at_ms.pop_front();
                    }
                    self.counters.grace_rotated_at_ms.push_back(rotated_at);
                }
                self.after_issue(&user_id, &tokens, now_ms);
                self.count_grant("refresh_token");
                *self.counters.refreshes_per_user.entry(email).or_default() += 1;
                Ok(tokens)
            }
            Ok(Rotation::Reused { revoked }) => {
                self.counters.reuse_events += 1;
                if revoked {
                    self.counters.revocations += 1;
                }
                self.count_failure(GrantError::Reused);
                Err(GrantError::Reused)
            }
            Err(e) => {
                self.count_failure(e);
                Err(e)
            }
        }
    }

    fn count_failure(&mut self, e: GrantError) {
        let reason = match e {
            GrantError::Unknown => "unknown",
            GrantError::OtherClient => "other_client",
            GrantError::Expired => "expired",
            GrantError::Revoked => "revoked",
            GrantError::Reused => "reused",
            GrantError::NoUser => "no_user",
            GrantError::Storage => "storage",
        };
        *self.counters.grant_failures.entry(reason.into()).or_default() += 1;
    }

    fn count_grant(&mut self, grant_type: &str) {
        *self.counters.grants.entry(grant_type.into()).or_default() += 1;
    }

    /// Keeps the tokens for the test controls and prunes now and then.
    fn after_issue(&mut self, user_id: &str, tokens: &IssuedTokens, now_ms: u64) {
        if self.keep_issued {
            let kept = self.issued.entry(user_id.to_string()).or_default();
            kept.access_tokens.push_back(tokens.access_token.clone());
            kept.refresh_tokens.push_back(tokens.refresh_token.clone());
            while kept.access_tokens.len() > KEEP_ISSUED {
                kept.access_tokens.pop_front();
            }
            while kept.refresh_tokens.len() > KEEP_ISSUED {
                kept.refresh_tokens.pop_front();
            }
        }
        self.issued_since_prune += 1;
        if self.issued_since_prune >= PRUNE_EVERY {
            self.issued_since_prune = 0;
            if let Err(e) = self.prune(now_ms) {
                tracing::warn!(error = %e, "pruning expired tokens failed; trying again later");
            }
        }
    }

    /// Deletes expired refresh tokens, the sign-ins left without any, and expired access-token
    /// revocations, so the file stays as small as the live sessions.
    fn prune(&mut self, now_ms: u64) -> Result<(), StoreError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM refresh_tokens WHERE expires_at_ms <= ?1", [ms(now_ms)])?;
        tx.execute("DELETE FROM families WHERE id NOT IN (SELECT family FROM refresh_tokens)", [])?;
        tx.execute("DELETE FROM revoked_access WHERE expires_at_ms <= ?1", [ms(now_ms)])?;
        tx.commit()?;
        Ok(())
    }

    /// Checks an access token: signature, expiry, revocation of the token and of its family.
    pub fn authenticate(
        &self,
        token: &str,
        now_ms: u64,
        signer: &Signer,
    ) -> Result<AccessClaims, AccessError> {
        self.check_access(token, now_ms, signer).unwrap_or_else(|e| {
            tracing::error!(error = %e, "the token store failed");
            Err(AccessError::Storage)
        })
    }

    /// [`Store::authenticate`], with the database's failure kept apart from the token's.
    fn check_access(
        &self,
        token: &str,
        now_ms: u64,
        signer: &Signer,
    ) -> rusqlite::Result<Result<AccessClaims, AccessError>> {
        let Some(claims) = signer.verify(token) else { return Ok(Err(AccessError::Invalid)) };
        if now_ms >= claims.exp.saturating_mul(1000) {
            return Ok(Err(AccessError::Expired));
        }
        let (revoked, live): (bool, bool) = self
            .conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM revoked_access WHERE jti = ?1),
                        EXISTS (SELECT 1 FROM families f JOIN users u ON u.id = f.user_id
                                WHERE f.id = ?2 AND f.revoked = 0 AND u.id = ?3
                                  AND (?4 = 0 OR f.access_jti = ?1))",
            )?
            .query_row(params![claims.jti, claims.sid, claims.sub, self.policy.current_access_only], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        if revoked || !live {
            return Ok(Err(AccessError::Revoked));
        }
        Ok(Ok(claims))
    }

    /// RFC 7009. Returns whether anything was revoked. A refresh token takes its whole family
    /// with it; an access token only itself. Tokens of another client are left alone.
    pub fn revoke(
        &mut self,
        token: &str,
        client_id: &str,
        now_ms: u64,
        signer: &Signer,
    ) -> Result<bool, StoreError> {
        let record: Option<(String, String)> = self
            .conn
            .prepare_cached("SELECT family, client_id FROM refresh_tokens WHERE hash = ?1")?
            .query_row([&token_hash(token)[..]], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((family, owner)) = record {
            if owner != client_id {
                return Ok(false);
            }
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let revoked = revoke_family(&tx, &family)?;
            tx.commit()?;
            if revoked {
                self.counters.revocations += 1;
            }
            return Ok(revoked);
        }
        match self.check_access(token, now_ms, signer)? {
            Ok(claims) if claims.aud == client_id => {
                let fresh = self.conn.execute(
                    "INSERT OR IGNORE INTO revoked_access (jti, expires_at_ms) VALUES (?1, ?2)",
                    params![claims.jti, ms(claims.exp.saturating_mul(1000))],
                )? == 1;
                if fresh {
                    self.counters.revocations += 1;
                }
                Ok(fresh)
            }
            _ => Ok(false),
        }
    }

    /// Revokes every sign-in of a user (test controls). `None` when there is no such user.
    pub fn revoke_user(&mut self, email: &str) -> Result<Option<usize>, StoreError> {
        let Some(user) = self.user_by_email(email)? else { return Ok(None) };
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let families: Vec<String> = tx
            .prepare("SELECT id FROM families WHERE user_id = ?1 AND revoked = 0")?
            .query_map([&user.id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut n = 0;
        for family in &families {
            if revoke_family(&tx, family)? {
                n += 1;
            }
        }
        tx.commit()?;
        self.counters.revocations += n as u64;
        Ok(Some(n))
    }

    pub fn issued_to(&self, email: &str) -> Result<Option<IssuedToUser>, StoreError> {
        let Some(user) = self.user_by_email(email)? else { return Ok(None) };
        Ok(Some(self.issued.get(&user.id).cloned().unwrap_or_default()))
    }

    pub fn reset_counters(&mut self) {
        self.counters = Counters::default();
    }
}

/// Marks a family and all its refresh tokens revoked; whether it was live.
fn revoke_family(tx: &Transaction<'_>, family: &str) -> rusqlite::Result<bool> {
    if tx.execute("UPDATE families SET revoked = 1 WHERE id = ?1 AND revoked = 0", [family])? == 0 {
        return Ok(false);
    }
    tx.execute("UPDATE refresh_tokens SET state = ?1 WHERE family = ?2", params![REVOKED, family])?;
    tracing::debug!(%family, "token family revoked");
    Ok(true)
}

/// A new access token and refresh token in `family`; the user's id and email.
fn issue_in_family(
    tx: &Transaction<'_>,
    lifetimes: &Lifetimes,
    family: &str,
    client_id: &str,
    scope: &str,
    now_ms: u64,
    signer: &Signer,
) -> Result<(IssuedTokens, String, String), GrantError> {
    let owner: Option<(Option<String>, Option<String>, Option<String>)> = tx
        .prepare_cached(
            "SELECT u.id, u.email, u.roles FROM families f LEFT JOIN users u ON u.id = f.user_id
             WHERE f.id = ?1",
        )
        .and_then(|mut s| s.query_row([family], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional())
        .map_err(storage)?;
    let (user_id, email, roles) = match owner {
        None => return Err(GrantError::Revoked),
        Some((Some(id), Some(email), roles)) => {
            (id, email, roles.and_then(|r| serde_json::from_str::<Vec<String>>(&r).ok()).unwrap_or_default())
        }
        Some(_) => return Err(GrantError::NoUser),
    };
    let now_s = now_ms / 1000;
    let access_s = (lifetimes.access_ms / 1000).max(1);
    let claims = AccessClaims {
        iss: signer.issuer().into(),
        sub: user_id.clone(),
        aud: client_id.into(),
        iat: now_s,
        exp: now_s + access_s,
        jti: random_hex(12),
        sid: family.into(),
        roles,
        scope: scope.into(),
    };
    let access_token = signer.sign(&claims).map_err(|e| {
        tracing::error!(error = %e, "signing an access token failed");
        GrantError::Storage
    })?;
    tx.prepare_cached("UPDATE families SET access_jti = ?1 WHERE id = ?2")
        .and_then(|mut s| s.execute(params![claims.jti, family]))
        .map_err(storage)?;
    let refresh_token = new_refresh_token();
    tx.prepare_cached(
        "INSERT INTO refresh_tokens (hash, family, client_id, scope, expires_at_ms, state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut s| {
        s.execute(params![
            &token_hash(&refresh_token)[..],
            family,
            client_id,
            scope,
            ms(now_ms.saturating_add(lifetimes.refresh_ms)),
            ACTIVE
        ])
    })
    .map_err(storage)?;
    let tokens = IssuedTokens {
        access_token,
        token_type: "Bearer",
        expires_in: access_s,
        refresh_token,
        refresh_expires_in: lifetimes.refresh_ms / 1000,
        scope: scope.into(),
    };
    Ok((tokens, user_id, email))
}

/// The refresh grant's decision and writes, inside one transaction.
fn rotate(
    tx: &Transaction<'_>,
    lifetimes: &Lifetimes,
    policy: Policy,
    presented: &str,
    client_id: &str,
    now_ms: u64,
    signer: &Signer,
) -> Result<Rotation, GrantError> {
    let hash = token_hash(presented);
    type Record = (String, String, String, i64, i64, Option<i64>, Option<Vec<u8>>, bool);
    let record: Record = tx
        .prepare_cached(
            "SELECT t.family, t.client_id, t.scope, t.expires_at_ms, t.state, t.rotated_at_ms,
                    t.successor, f.revoked
             FROM refresh_tokens t JOIN families f ON f.id = t.family WHERE t.hash = ?1",
        )
        .and_then(|mut s| {
            s.query_row([&hash[..]], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
            })
            .optional()
        })
        .map_err(storage)?
        .ok_or(GrantError::Unknown)?;
    let (family, owner, scope, expires_at_ms, state, rotated_at_ms, successor, family_revoked) = record;
    if owner != client_id {
        return Err(GrantError::OtherClient);
    }
    if family_revoked || state == REVOKED {
        return Err(GrantError::Revoked);
    }
    if state == ACTIVE {
        if ms(now_ms) >= expires_at_ms {
            return Err(GrantError::Expired);
        }
        let (tokens, user_id, email) =
            issue_in_family(tx, lifetimes, &family, client_id, &scope, now_ms, signer)?;
        tx.prepare_cached(
            "UPDATE refresh_tokens SET state = ?1, rotated_at_ms = ?2, successor = ?3 WHERE hash = ?4",
        )
        .and_then(|mut s| {
            s.execute(params![ROTATED, ms(now_ms), &token_hash(&tokens.refresh_token)[..], &hash[..]])
        })
        .map_err(storage)?;
        return Ok(Rotation::Issued { tokens, user_id, email, grace: None });
    }
    // Rotated: the immediately previous token, inside the grace period and while its successor
    // is unused, opens a new branch of the same family; anything else is theft.
    let successor_unused = match &successor {
        Some(successor) => {
            let s: Option<i64> = tx
                .prepare_cached("SELECT state FROM refresh_tokens WHERE hash = ?1")
                .and_then(|mut st| st.query_row([&successor[..]], |r| r.get(0)).optional())
                .map_err(storage)?;
            s == Some(ACTIVE)
        }
        None => false,
    };
    let at_ms = rotated_at_ms.unwrap_or(0).max(0) as u64;
    let in_grace =
        lifetimes.grace_ms > 0 && now_ms.saturating_sub(at_ms) <= lifetimes.grace_ms && successor_unused;
    if in_grace {
        let (tokens, user_id, email) =
            issue_in_family(tx, lifetimes, &family, client_id, &scope, now_ms, signer)?;
        return Ok(Rotation::Issued { tokens, user_id, email, grace: Some(at_ms) });
    }
    tracing::warn!(%family, "refresh token reuse detected; revoking the family");
    let mut revoked = revoke_family(tx, &family).map_err(storage)?;
    if policy.reuse_revokes_user {
        let others: Vec<String> = tx
            .prepare_cached(
                "SELECT id FROM families WHERE revoked = 0
                 AND user_id = (SELECT user_id FROM families WHERE id = ?1)",
            )
            .and_then(|mut s| s.query_map([&family], |r| r.get(0))?.collect())
            .map_err(storage)?;
        for other in &others {
            revoked |= revoke_family(tx, other).map_err(storage)?;
        }
    }
    Ok(Rotation::Reused { revoked })
}

/// Creates the database file readable by its owner only (it holds the signing key and password
/// hashes; SQLite gives its `-wal` and `-shm` files the same mode). An existing file is left as
/// it is.
#[cfg(unix)]
fn owner_only(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
fn owner_only(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Where the data is, for a log line: "in /abs/path" or "in memory (...)".
pub fn describe(database: &Database) -> String {
    match database {
        Database::Memory => "in memory (gone when the upstream stops)".into(),
        Database::File(path) => {
            format!("in {}", std::fs::canonicalize(path).unwrap_or_else(|_| path.clone()).display())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000_000;
    const LIFETIMES: Lifetimes = Lifetimes { access_ms: 10_000, refresh_ms: 100_000, grace_ms: 0 };

    fn signer() -> Signer {
        Signer::new(b"test key test key test key test!", "demo")
    }

    fn with_ann(mut s: Store) -> (Store, String) {
        let p = s.add_user("Ann@Example.com ", "Ann", "hash".into(), vec!["user".into()]).unwrap();
        (s, p.id)
    }

    fn store(grace_ms: u64) -> (Store, String) {
        with_ann(Store::in_memory(Lifetimes { grace_ms, ..LIFETIMES }, true).unwrap())
    }

    fn state_of(s: &Store, token: &str) -> Option<i64> {
        s.conn
            .query_row("SELECT state FROM refresh_tokens WHERE hash = ?1", [&token_hash(token)[..]], |r| {
                r.get(0)
            })
            .optional()
            .unwrap()
    }

    fn count(s: &Store, table: &str) -> i64 {
        s.conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn emails_are_unique_regardless_of_case() {
        let (mut s, _) = store(0);
        assert!(matches!(
            s.add_user("ann@example.COM", "Other", "h".into(), vec![]),
            Err(AddUserError::EmailTaken)
        ));
        assert!(s.email_taken(" ANN@example.com").unwrap());
        let ann = s.user_by_email("ANN@example.com").unwrap().unwrap();
        assert_eq!((ann.name.as_str(), ann.roles.as_slice()), ("Ann", &["user".to_string()][..]));
        assert_eq!(s.user_count().unwrap(), 1);
    }

    #[test]
    fn rotation_chain_then_reuse_revokes_the_family() {
        let (mut s, id) = store(0);
        let sg = signer();
        let t1 = s.issue_for_password(&id, "c", "", T0, &sg).unwrap();
        let t2 = s.refresh(&t1.refresh_token, "c", T0 + 1, &sg).unwrap();
        let t3 = s.refresh(&t2.refresh_token, "c", T0 + 2, &sg).unwrap();
        assert_ne!(t1.refresh_token, t2.refresh_token);
        assert!(s.authenticate(&t3.access_token, T0 + 3, &sg).is_ok());
        assert_eq!(s.counters.grants["refresh_token"], 2);
        assert_eq!(s.counters.refreshes_per_user["ann@example.com"], 2);

        // R1 again, after R2 and R3 exist: theft. The whole family goes.
        assert_eq!(s.refresh(&t1.refresh_token, "c", T0 + 4, &sg).unwrap_err(), GrantError::Reused);
        assert_eq!(s.counters.reuse_events, 1);
        assert_eq!(s.counters.revocations, 1);
        assert_eq!(s.refresh(&t3.refresh_token, "c", T0 + 5, &sg).unwrap_err(), GrantError::Revoked);
        assert_eq!(s.authenticate(&t3.access_token, T0 + 5, &sg).unwrap_err(), AccessError::Revoked);
        assert_eq!(s.authenticate(&t1.access_token, T0 + 5, &sg).unwrap_err(), AccessError::Revoked);
        assert_eq!(s.active_sessions().unwrap(), 0);
    }

    #[test]
    fn a_second_sign_in_is_a_separate_family() {
        let (mut s, id) = store(0);
        let sg = signer();
        let a = s.issue_for_password(&id, "c", "", T0, &sg).unwrap();
        let b = s.issue_for_password(&id, "c", "", T0, &sg).unwrap();
        s.refresh(&a.refresh_token, "c", T0, &sg).unwrap();
        assert_eq!(s.refresh(&a.refresh_token, "c", T0, &sg).unwrap_err(), GrantError::Reused);
        assert!(s.authenticate(&b.access_token, T0, &sg).is_ok(), "other sign-in untouched");
        assert!(s.refresh(&b.refresh_token, "c", T0, &sg).is_ok());
    }

    #[test]
    fn expiry_of_access_and_refresh_tokens() {
        let (mut s, id) = store(0);
        let sg = signer();
        let t = s.issue_for_password(&id, "c", "", T0, &sg).unwrap();
        assert!(s.authenticate(&t.access_token, T0 + 9_999, &sg).is_ok());
        assert_eq!(s.authenticate(&t.access_token, T0 + 10_000, &sg).unwrap_err(), AccessError::Expired);
        assert_eq!(s.refresh(&t.refresh_token, "c", T0 + 100_000, &sg).unwrap_err(), GrantError::Expired);
        assert_eq!(s.counters.grant_failures["expired"], 1);
    }

    #[test]
    fn tokens_are_bound_to_their_client() {
        let (mut s, id) = store(0);
        let sg = signer();
        let t = s.issue_for_password(&id, "c", "", T0, &sg).unwrap();
        assert_eq!(s.refresh(&t.refresh_token, "other", T0, &sg).unwrap_err(), GrantError::OtherClient);
        assert!(!s.revoke(&t.refresh_token, "other", T0, &sg).unwrap());
        assert!(!s.revoke(&t.access_token, "other", T0, &sg).unwrap());
        assert!(s.refresh(&t.refresh_token, "c", T0, &sg).is_ok(), "still usable by its client");
    }

    #[test]
    fn unknown_users_and_tokens() {
        let (mut s, _) = store(0);
        let sg = signer();
        assert_eq!(s.issue_for_password("nobody", "c", "", T0, &sg).unwrap_err(), GrantError::NoUser);
        assert_eq!(s.refresh("never issued", "c", T0, &sg).unwrap_err(), GrantError::Unknown);
        assert_eq!(s.authenticate("garbage", T0, &sg).unwrap_err(), AccessError::Invalid);
        assert_eq!(s.counters.grant_failures["unknown"], 1);
    }

    #[test]
    fn revocation_of_refresh_and_access_tokens() {
        let (mut s, id) = store(0);
        let sg = signer();
        let t = s.issue_for_password(&id, "c", "", T0, &sg).unwrap();
        assert!(s.revoke(&t.access_token, "c", T0, &sg).unwrap());
        assert!(!s.revoke(&t.access_token, "c", T0, &sg).unwrap(), "already revoked");
        assert_eq!(s.authenticate(&t.access_token, T0, &sg).unwrap_err(), AccessError::Revoked);
        assert!(s.refresh(&t.refresh_token, "c", T0, &sg).is_ok(), "access revocation leaves the family");

        let u = s.issue_for_password(&id, "c", "", T0, &sg).unwrap();
        assert!(s.revoke(&u.refresh_token, "c", T0, &sg).unwrap());
        assert!(!s.revoke(&u.refresh_token, "c", T0, &sg).unwrap(), "second time: nothing left to revoke");
        assert_eq!(s.authenticate(&u.access_token, T0, &sg).unwrap_err(), AccessError::Revoked);
        assert!(!s.revoke("not a token", "c", T0, &sg).unwrap());
    }

    #[test]
    fn grace_accepts_only_the_immediately_previous_token_in_time() {
        let (mut s, id) = store(2_000);
        let sg = signer();
        let t1 = s.issue_for_password(&id, "c", "", T0, &sg).unwrap();
        let t2 = s.refresh(&t1.refresh_token, "c", T0, &sg).unwrap();
        assert!(s.refresh(&t1.refresh_token, "c", T0 + 1_000, &sg).is_ok(), "inside the grace period");
        assert_eq!(s.counters.grace_reuses, 1);
        assert_eq!(s.counters.grace_rotated_at_ms, [T0], "when t1 was rotated");
        assert!(s.refresh(&t2.refresh_token, "c", T0 + 1_000, &sg).is_ok(), "successor still valid");
        // t1 again, now that its successor has been used: reuse.
        assert_eq!(s.refresh(&t1.refresh_token, "c", T0 + 1_500, &sg).unwrap_err(), GrantError::Reused);
    }

    #[test]
    fn grace_window_closes() {
        let (mut s, id) = store(2_000);
        let sg = signer();
        let t1 = s.issue_for_password(&id, "c", "", T0, &sg).unwrap();
        s.refresh(&t1.refresh_token, "c", T0, &sg).unwrap();
        assert_eq!(s.refresh(&t1.refresh_token, "c", T0 + 2_001, &sg).unwrap_err(), GrantError::Reused);
    }

    #[test]
    fn revoke_user_ends_every_sign_in() {
        let (mut s, id) = store(0);
        let sg = signer();
        let a = s.issue_for_password(&id, "c", "", T0, &sg).unwrap();
        let b = s.issue_for_password(&id, "c", "", T0, &sg).unwrap();
        assert_eq!(s.revoke_user("ann@example.com").unwrap(), Some(2));
        assert!(s.authenticate(&a.access_token, T0, &sg).is_err());
        assert!(s.refresh(&b.refresh_token, "c", T0, &sg).is_err());
        assert_eq!(s.revoke_user("nobody@example.com").unwrap(), None);
        assert_eq!(s.active_sessions().unwrap(), 0);
    }

    #[test]
    fn issued_tokens_are_kept_for_the_test_controls() {
        let (mut s, id) = store(0);
        let t = s.issue_for_password(&id, "c", "", T0, &signer()).unwrap();
        let kept = s.issued_to("ann@example.com").unwrap().unwrap();
        assert_eq!(kept.access_tokens.back(), Some(&t.access_token));
        assert_eq!(kept.refresh_tokens.back(), Some(&t.refresh_token));
        assert!(s.issued_to("nobody@example.com").unwrap().is_none());
        let stored: Vec<u8> = s.conn.query_row("SELECT hash FROM refresh_tokens", [], |r| r.get(0)).unwrap();
        assert_eq!(stored, token_hash(&t.refresh_token), "only the hash is stored");
    }

    #[test]
    fn croaks_count_up() {
        let (mut s, _) = store(0);
        assert_eq!(s.croaks(3).unwrap(), 0);
        assert_eq!(s.croak(3).unwrap(), 1);
        assert_eq!(s.croak(3).unwrap(), 2);
        assert_eq!(s.croaks(3).unwrap(), 2);
        assert_eq!(s.croaks(4).unwrap(), 0);
    }

    #[test]
    fn expired_records_are_pruned() {
        let (mut s, id) = store(0);
        let sg = signer();
        let old = s.issue_for_password(&id, "c", "", T0, &sg).unwrap();
        s.revoke(&old.access_token, "c", T0, &sg).unwrap();
        let live = s.issue_for_password(&id, "c", "", T0 + 50_000, &sg).unwrap();
        s.prune(T0 + 100_000).unwrap();
        assert_eq!(count(&s, "refresh_tokens"), 1);
        assert_eq!(count(&s, "families"), 1);
        assert_eq!(count(&s, "revoked_access"), 0, "the revoked access token had expired");
        assert!(s.refresh(&live.refresh_token, "c", T0 + 100_001, &sg).is_ok());
    }

    /// A write failing in the middle of a rotation (the successor stored, the presented token not
    /// yet marked used) rolls back: the old token stays live and no new one exists.
    #[test]
    fn a_rotation_that_fails_midway_leaves_nothing_half_done() {
        let (mut s, id) = store(0);
        let sg = signer();
        let t = s.issue_for_password(&id, "c", "", T0, &sg).unwrap();
        s.conn
            .execute_batch(
                "CREATE TEMP TRIGGER fail_rotation BEFORE UPDATE OF state ON refresh_tokens
                 BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
            )
            .unwrap();
        assert_eq!(s.refresh(&t.refresh_token, "c", T0 + 1, &sg).unwrap_err(), GrantError::Storage);
        assert_eq!(s.counters.grant_failures["storage"], 1);
        assert_eq!(count(&s, "refresh_tokens"), 1, "the successor was not kept");
        assert_eq!(state_of(&s, &t.refresh_token), Some(ACTIVE));
        s.conn.execute_batch("DROP TRIGGER fail_rotation").unwrap();
        let next = s.refresh(&t.refresh_token, "c", T0 + 2, &sg).unwrap();
        assert_eq!(state_of(&s, &t.refresh_token), Some(ROTATED));
        assert_eq!(state_of(&s, &next.refresh_token), Some(ACTIVE));
        assert_eq!(s.counters.reuse_events, 0);
    }

    #[test]
    fn everything_but_the_counters_survives_a_reopen() {
        // Opening prunes by the real clock: the times here are now, not a fixed instant.
        let t0 = crate::state::now_ms();
        let dir = tempfile::tempdir().unwrap();
        let db = Database::File(dir.path().join("nested/demo.sqlite3"));
        let sg;
        let (t1, t2, ann);
        {
            let (mut s, id) = with_ann(Store::open(&db, LIFETIMES, true).unwrap());
            ann = id;
            sg = Signer::new(&s.signing_key().unwrap(), "demo");
            t1 = s.issue_for_password(&ann, "c", "", t0, &sg).unwrap();
            t2 = s.refresh(&t1.refresh_token, "c", t0 + 1, &sg).unwrap();
            s.croak(7).unwrap();
        }
        let mut s = Store::open(&db, LIFETIMES, true).unwrap();
        assert_eq!(
            Signer::new(&s.signing_key().unwrap(), "demo").verify(&t2.access_token).map(|c| c.sub),
            Some(ann)
        );
        assert!(s.email_taken("ann@example.com").unwrap());
        assert!(s.authenticate(&t2.access_token, t0 + 2, &sg).is_ok(), "the access token still works");
        assert_eq!(s.croaks(7).unwrap(), 1);
        assert_eq!(s.counters, Counters::default(), "counters describe one run");
        let t3 = s.refresh(&t2.refresh_token, "c", t0 + 3, &sg).unwrap();
        assert_eq!(
            s.refresh(&t1.refresh_token, "c", t0 + 4, &sg).unwrap_err(),
            GrantError::Reused,
            "reuse still caught"
        );
        assert_eq!(s.authenticate(&t3.access_token, t0 + 5, &sg).unwrap_err(), AccessError::Revoked);
    }

    #[test]
    fn a_database_from_a_newer_build_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo.sqlite3");
        drop(Store::open(&Database::File(path.clone()), LIFETIMES, false).unwrap());
        Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
        let e = Store::open(&Database::File(path.clone()), LIFETIMES, false).unwrap_err().to_string();
        assert!(
            e.contains("schema version 99") && e.contains("make reset-demo") && e.contains("demo.sqlite3"),
            "{e}"
        );
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, "not SQLite, just some text that is long enough to be a header").unwrap();
        let e = Store::open(&Database::File(path), LIFETIMES, false).unwrap_err().to_string();
        assert!(e.contains("notes.txt"), "{e}");
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let e = Store::open(&Database::File(file.join("below-a-file.sqlite3")), LIFETIMES, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot create the directory"), "{e}");
    }

    /// Two stores on one file (two processes, or a restart overlapping the old one), each
    /// rotating its own sign-ins from two threads at once: every write waits its turn, none
    /// fails with "database is locked", and each chain rotates exactly once per step.
    #[test]
    fn two_connections_on_one_file_never_see_database_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::File(dir.path().join("shared.sqlite3"));
        let (mut first, ann) = with_ann(Store::open(&db, LIFETIMES, false).unwrap());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let Database::File(path) = &db else { unreachable!() };
            let mode = std::fs::metadata(path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "owner-only: {mode:o}");
        }
        let key = first.signing_key().unwrap();
        let second = Store::open(&db, LIFETIMES, false).unwrap();
        assert_eq!(
            Store::open(&db, LIFETIMES, false).unwrap().signing_key().unwrap(),
            key,
            "one key per file"
        );
        let stores = [std::sync::Mutex::new(first), std::sync::Mutex::new(second)];
        std::thread::scope(|scope| {
            for store in &stores {
                let (key, ann) = (&key, &ann);
                scope.spawn(move || {
                    let sg = Signer::new(key, "demo");
                    let mut token = store.lock().unwrap().issue_for_password(ann, "c", "", T0, &sg).unwrap();
                    for i in 0..200 {
                        token =
                            store.lock().unwrap().refresh(&token.refresh_token, "c", T0 + i, &sg).unwrap();
                    }
                });
            }
        });
        let first = stores[0].lock().unwrap();
        assert_eq!(first.active_sessions().unwrap(), 2);
        assert_eq!(count(&first, "refresh_tokens"), 2 * 201);
    }
}
