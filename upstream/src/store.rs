//! Users, token families and refresh-token records: the upstream's whole state, behind one lock
//! held for microseconds (password hashing happens outside it). Time is passed in, in
//! milliseconds since the Unix epoch, so expiry is tested without waiting.
//!
//! Rotation with reuse detection (RFC 9700 §4.14.2): each refresh retires the presented token
//! and issues a successor in the same family; presenting a retired token revokes the family
//! (every access and refresh token of that sign-in) and counts a reuse event.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use serde::Serialize;

use crate::tokens::{new_refresh_token, random_hex, token_hash, AccessClaims, Signer};

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

#[derive(Debug)]
struct Family {
    user_id: String,
    revoked: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefreshState {
    Active,
    /// Used once, at `at_ms`; `successor` is the hash of the token that replaced it.
    Rotated {
        at_ms: u64,
        successor: [u8; 32],
    },
    Revoked,
}

#[derive(Debug)]
struct RefreshRecord {
    family: String,
    client_id: String,
    scope: String,
    expires_at_ms: u64,
    state: RefreshState,
}

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

/// Why a grant was refused; all of these are `invalid_grant` on the wire.
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
}

/// Why an access token was refused; all of these are `invalid_token` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("the access token is malformed or its signature is wrong")]
    Invalid,
    #[error("the access token has expired")]
    Expired,
    #[error("the access token was revoked")]
    Revoked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an account with this email already exists")]
pub struct EmailTaken;

/// What the test controls read. Reset with [`Store::reset_counters`].
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
    /// Tokens or families revoked (RFC 7009 calls, reuse, test controls).
    pub revocations: u64,
    /// Requests by "METHOD /path" (test-control requests not counted).
    pub requests: BTreeMap<String, u64>,
    /// Faults applied to requests or connections.
    pub faults_applied: u64,
}

/// The tokens handed to one user, kept in clear only with test controls on, so that end-to-end
/// tests can look for them in what the browser received.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IssuedToUser {
    pub access_tokens: VecDeque<String>,
    pub refresh_tokens: VecDeque<String>,
}

const KEEP_ISSUED: usize = 64;

#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    pub access_ms: u64,
    pub refresh_ms: u64,
    pub grace_ms: u64,
}

#[derive(Debug)]
pub struct Store {
    lifetimes: Lifetimes,
    keep_issued: bool,
    users: HashMap<String, User>,
    user_by_email: HashMap<String, String>,
    families: HashMap<String, Family>,
    refresh: HashMap<[u8; 32], RefreshRecord>,
    revoked_jtis: HashSet<String>,
    issued: HashMap<String, IssuedToUser>,
    /// Croaks by frog id (`POST /frogs/{id}/croaks`).
    croaks: HashMap<u32, u64>,
    pub counters: Counters,
}

/// Emails compare without regard to case or surrounding space.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_ascii_lowercase()
}

impl Store {
    pub fn new(lifetimes: Lifetimes, keep_issued: bool) -> Self {
        Store {
            lifetimes,
            keep_issued,
            users: HashMap::new(),
            user_by_email: HashMap::new(),
            families: HashMap::new(),
            refresh: HashMap::new(),
            revoked_jtis: HashSet::new(),
            issued: HashMap::new(),
            croaks: HashMap::new(),
            counters: Counters::default(),
        }
    }

    /// One more croak for frog `id`; the new total.
    pub fn croak(&mut self, id: u32) -> u64 {
        let n = self.croaks.entry(id).or_default();
        *n += 1;
        *n
    }

    pub fn croaks(&self, id: u32) -> u64 {
        self.croaks.get(&id).copied().unwrap_or(0)
    }

    pub fn add_user(
        &mut self,
        email: &str,
        name: &str,
        password_hash: String,
        roles: Vec<String>,
    ) -> Result<Profile, EmailTaken> {
        let email = normalize_email(email);
        if self.user_by_email.contains_key(&email) {
            return Err(EmailTaken);
        }
        let user =
            User { id: random_hex(8), email: email.clone(), name: name.trim().into(), password_hash, roles };
        let profile = Profile::from(&user);
        self.user_by_email.insert(email, user.id.clone());
        self.users.insert(user.id.clone(), user);
        Ok(profile)
    }

    pub fn email_taken(&self, email: &str) -> bool {
        self.user_by_email.contains_key(&normalize_email(email))
    }

    pub fn user_by_email(&self, email: &str) -> Option<&User> {
        self.user_by_email.get(&normalize_email(email)).and_then(|id| self.users.get(id))
    }

    pub fn user(&self, id: &str) -> Option<&User> {
        self.users.get(id)
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    pub fn active_sessions(&self) -> usize {
        self.families.values().filter(|f| !f.revoked).count()
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
        let family = random_hex(12);
        self.families.insert(family.clone(), Family { user_id: user_id.into(), revoked: false });
        let tokens = self.issue_in_family(&family, client_id, scope, now_ms, signer)?;
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
        let result = self.try_refresh(presented, client_id, now_ms, signer);
        if let Err(e) = &result {
            let reason = match e {
                GrantError::Unknown => "unknown",
                GrantError::OtherClient => "other_client",
                GrantError::Expired => "expired",
                GrantError::Revoked => "revoked",
                GrantError::Reused => "reused",
                GrantError::NoUser => "no_user",
            };
            *self.counters.grant_failures.entry(reason.into()).or_default() += 1;
        }
        result
    }

    fn try_refresh(
        &mut self,
        presented: &str,
        client_id: &str,
        now_ms: u64,
        signer: &Signer,
    ) -> Result<IssuedTokens, GrantError> {
        let hash = token_hash(presented);
        let record = self.refresh.get(&hash).ok_or(GrantError::Unknown)?;
        if record.client_id != client_id {
            return Err(GrantError::OtherClient);
        }
        let family_id = record.family.clone();
        let scope = record.scope.clone();
        let family = self.families.get(&family_id).ok_or(GrantError::Revoked)?;
        if family.revoked {
            return Err(GrantError::Revoked);
        }
        match record.state {
            RefreshState::Revoked => Err(GrantError::Revoked),
            RefreshState::Active if now_ms >= record.expires_at_ms => Err(GrantError::Expired),
            RefreshState::Active => {
                let tokens = self.issue_in_family(&family_id, client_id, &scope, now_ms, signer)?;
                let successor = token_hash(&tokens.refresh_token);
                if let Some(old) = self.refresh.get_mut(&hash) {
                    old.state = RefreshState::Rotated { at_ms: now_ms, successor };
                }
                self.count_refresh(&family_id);
                Ok(tokens)
            }
            RefreshState::Rotated { at_ms, successor } => {
                let successor_unused =
                    matches!(self.refresh.get(&successor).map(|r| r.state), Some(RefreshState::Active));
                let in_grace = self.lifetimes.grace_ms > 0
                    && now_ms.saturating_sub(at_ms) <= self.lifetimes.grace_ms
                    && successor_unused;
                if in_grace {
                    // The immediately previous token, inside the grace period: a new branch of
                    // the same family; its successor stays valid.
                    self.counters.grace_reuses += 1;
                    let tokens = self.issue_in_family(&family_id, client_id, &scope, now_ms, signer)?;
                    self.count_refresh(&family_id);
                    return Ok(tokens);
                }
                self.counters.reuse_events += 1;
                tracing::warn!(family = %family_id, "refresh token reuse detected; revoking the family");
                self.revoke_family(&family_id);
                Err(GrantError::Reused)
            }
        }
    }

    fn issue_in_family(
        &mut self,
        family_id: &str,
        client_id: &str,
        scope: &str,
        now_ms: u64,
        signer: &Signer,
    ) -> Result<IssuedTokens, GrantError> {
        let user_id = self.families.get(family_id).map(|f| f.user_id.clone()).ok_or(GrantError::Revoked)?;
        let user = self.users.get(&user_id).ok_or(GrantError::NoUser)?;
        let now_s = now_ms / 1000;
        let access_s = (self.lifetimes.access_ms / 1000).max(1);
        let claims = AccessClaims {
            iss: signer.issuer().into(),
            sub: user.id.clone(),
            aud: client_id.into(),
            iat: now_s,
            exp: now_s + access_s,
            jti: random_hex(12),
            sid: family_id.into(),
            roles: user.roles.clone(),
            scope: scope.into(),
        };
        let access_token = signer.sign(&claims).map_err(|e| {
            tracing::error!(error = %e, "signing an access token failed");
            GrantError::Revoked
        })?;
        let refresh_token = new_refresh_token();
        self.refresh.insert(
            token_hash(&refresh_token),
            RefreshRecord {
                family: family_id.into(),
                client_id: client_id.into(),
                scope: scope.into(),
                expires_at_ms: now_ms + self.lifetimes.refresh_ms,
                state: RefreshState::Active,
            },
        );
        if self.keep_issued {
            let kept = self.issued.entry(user_id).or_default();
            kept.access_tokens.push_back(access_token.clone());
            kept.refresh_tokens.push_back(refresh_token.clone());
            while kept.access_tokens.len() > KEEP_ISSUED {
                kept.access_tokens.pop_front();
            }
            while kept.refresh_tokens.len() > KEEP_ISSUED {
                kept.refresh_tokens.pop_front();
            }
        }
        self.prune(now_ms);
        Ok(IssuedTokens {
            access_token,
            token_type: "Bearer",
            expires_in: access_s,
            refresh_token,
            refresh_expires_in: self.lifetimes.refresh_ms / 1000,
            scope: scope.into(),
        })
    }

    fn count_grant(&mut self, grant_type: &str) {
        *self.counters.grants.entry(grant_type.into()).or_default() += 1;
    }

    fn count_refresh(&mut self, family_id: &str) {
        self.count_grant("refresh_token");
        let email = self
            .families
            .get(family_id)
            .and_then(|f| self.users.get(&f.user_id))
            .map(|u| u.email.clone())
            .unwrap_or_default();
        *self.counters.refreshes_per_user.entry(email).or_default() += 1;
    }

    /// Drops records of expired refresh tokens once the map has grown, so memory stays bounded.
    fn prune(&mut self, now_ms: u64) {
        if self.refresh.len() < 10_000 {
            return;
        }
        self.refresh.retain(|_, r| r.expires_at_ms > now_ms);
        let live: HashSet<&String> = self.refresh.values().map(|r| &r.family).collect();
        self.families.retain(|id, _| live.contains(id));
    }

    fn revoke_family(&mut self, family_id: &str) -> bool {
        let Some(family) = self.families.get_mut(family_id) else { return false };
        if family.revoked {
            return false;
        }
        family.revoked = true;
        for record in self.refresh.values_mut().filter(|r| r.family == family_id) {
            record.state = RefreshState::Revoked;
        }
        self.counters.revocations += 1;
        true
    }

    /// Checks an access token: signature, expiry, revocation of the token and of its family.
    pub fn authenticate(
        &self,
        token: &str,
        now_ms: u64,
        signer: &Signer,
    ) -> Result<AccessClaims, AccessError> {
        let claims = signer.verify(token).ok_or(AccessError::Invalid)?;
        if now_ms >= claims.exp.saturating_mul(1000) {
            return Err(AccessError::Expired);
        }
        if self.revoked_jtis.contains(&claims.jti) {
            return Err(AccessError::Revoked);
        }
        match self.families.get(&claims.sid) {
            Some(f) if !f.revoked && self.users.contains_key(&claims.sub) => Ok(claims),
            _ => Err(AccessError::Revoked),
        }
    }

    /// RFC 7009. Returns whether anything was revoked. A refresh token takes its whole family
    /// with it; an access token only itself. Tokens of another client are left alone.
    pub fn revoke(&mut self, token: &str, client_id: &str, now_ms: u64, signer: &Signer) -> bool {
        if let Some(record) = self.refresh.get(&token_hash(token)) {
            if record.client_id != client_id {
                return false;
            }
            let family = record.family.clone();
            return self.revoke_family(&family);
        }
        match self.authenticate(token, now_ms, signer) {
            Ok(claims) if claims.aud == client_id => {
                let fresh = self.revoked_jtis.insert(claims.jti);
                if fresh {
                    self.counters.revocations += 1;
                }
                fresh
            }
            _ => false,
        }
    }

    /// Revokes every sign-in of a user (test controls). `None` when there is no such user.
    pub fn revoke_user(&mut self, email: &str) -> Option<usize> {
        let user_id = self.user_by_email.get(&normalize_email(email))?.clone();
        let families: Vec<String> = self
            .families
            .iter()
            .filter(|(_, f)| f.user_id == user_id && !f.revoked)
            .map(|(id, _)| id.clone())
            .collect();
        Some(families.iter().filter(|f| self.revoke_family(f)).count())
    }

    pub fn issued_to(&self, email: &str) -> Option<IssuedToUser> {
        let user_id = self.user_by_email.get(&normalize_email(email))?;
        Some(self.issued.get(user_id).cloned().unwrap_or_default())
    }

    pub fn reset_counters(&mut self) {
        self.counters = Counters::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000_000;

    fn signer() -> Signer {
        Signer::new(b"test key test key test key test!", "demo")
    }

    fn store(grace_ms: u64) -> (Store, String) {
        let mut s = Store::new(Lifetimes { access_ms: 10_000, refresh_ms: 100_000, grace_ms }, true);
        let p = s.add_user("Ann@Example.com ", "Ann", "hash".into(), vec!["user".into()]).unwrap();
        (s, p.id)
    }

    #[test]
    fn emails_are_unique_regardless_of_case() {
        let (mut s, _) = store(0);
        assert_eq!(s.add_user("ann@example.COM", "Other", "h".into(), vec![]), Err(EmailTaken));
        assert!(s.email_taken(" ANN@example.com"));
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
        assert_eq!(s.refresh(&t3.refresh_token, "c", T0 + 5, &sg).unwrap_err(), GrantError::Revoked);
        assert_eq!(s.authenticate(&t3.access_token, T0 + 5, &sg).unwrap_err(), AccessError::Revoked);
        assert_eq!(s.authenticate(&t1.access_token, T0 + 5, &sg).unwrap_err(), AccessError::Revoked);
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
        assert!(!s.revoke(&t.refresh_token, "other", T0, &sg));
        assert!(s.refresh(&t.refresh_token, "c", T0, &sg).is_ok(), "still usable by its client");
    }

    #[test]
    fn revocation_of_refresh_and_access_tokens() {
        let (mut s, id) = store(0);
        let sg = signer();
        let t = s.issue_for_password(&id, "c", "", T0, &sg).unwrap();
        assert!(s.revoke(&t.access_token, "c", T0, &sg));
        assert_eq!(s.authenticate(&t.access_token, T0, &sg).unwrap_err(), AccessError::Revoked);
        assert!(s.refresh(&t.refresh_token, "c", T0, &sg).is_ok(), "access revocation leaves the family");

        let u = s.issue_for_password(&id, "c", "", T0, &sg).unwrap();
        assert!(s.revoke(&u.refresh_token, "c", T0, &sg));
        assert!(!s.revoke(&u.refresh_token, "c", T0, &sg), "second time: nothing left to revoke");
        assert_eq!(s.authenticate(&u.access_token, T0, &sg).unwrap_err(), AccessError::Revoked);
        assert!(!s.revoke("not a token", "c", T0, &sg));
    }

    #[test]
    fn grace_accepts_only_the_immediately_previous_token_in_time() {
        let (mut s, id) = store(2_000);
        let sg = signer();
        let t1 = s.issue_for_password(&id, "c", "", T0, &sg).unwrap();
        let t2 = s.refresh(&t1.refresh_token, "c", T0, &sg).unwrap();
        assert!(s.refresh(&t1.refresh_token, "c", T0 + 1_000, &sg).is_ok(), "inside the grace period");
        assert_eq!(s.counters.grace_reuses, 1);
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
        assert_eq!(s.revoke_user("ann@example.com"), Some(2));
        assert!(s.authenticate(&a.access_token, T0, &sg).is_err());
        assert!(s.refresh(&b.refresh_token, "c", T0, &sg).is_err());
        assert_eq!(s.revoke_user("nobody@example.com"), None);
        assert_eq!(s.active_sessions(), 0);
    }

    #[test]
    fn issued_tokens_are_kept_for_the_test_controls() {
        let (mut s, id) = store(0);
        let t = s.issue_for_password(&id, "c", "", T0, &signer()).unwrap();
        let kept = s.issued_to("ann@example.com").unwrap();
        assert_eq!(kept.access_tokens.back(), Some(&t.access_token));
        assert_eq!(kept.refresh_tokens.back(), Some(&t.refresh_token));
    }
}
