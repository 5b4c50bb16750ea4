//! What this process learned from Redis and that cannot change back — a session's sign-out, a
//! flight's result — kept here and asked first, so one instance does not ask Redis again for a
//! settled fact. Open questions (has this session ended since?) always go to Redis: their
//! answer can change on another instance at any moment.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::memory::{Outcome, TokenKey};

/// How long a result learned here is answered without Redis (Unix milliseconds): another
/// instance may shorten it once a response carried it, and this copy outlives that by this much
/// at most.
pub(super) const RESULT_FOR_MS: u64 = 1_000;

#[derive(Default)]
struct Facts {
    /// Session ids signed out, until when.
    ended: HashMap<String, u64>,
    /// Results (refreshed or refused), until when.
    results: HashMap<TokenKey, (u64, Outcome)>,
}

/// Settled facts, at most `capacity` of each kind: when full, the ended ones go, and if none
/// has, all of that kind (it is a copy: Redis still has them).
pub(super) struct Settled {
    facts: Mutex<Facts>,
    capacity: usize,
}

impl Settled {
    pub(super) fn new(capacity: usize) -> Self {
        Settled { facts: Mutex::new(Facts::default()), capacity: capacity.max(1) }
    }

    fn facts(&self) -> MutexGuard<'_, Facts> {
        self.facts.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn signed_out(&self, session_id: &str, now: u64) -> bool {
        self.facts().ended.get(session_id).is_some_and(|until| *until > now)
    }

    pub(super) fn keep_signed_out(&self, session_id: &str, until: u64, now: u64) {
        let mut facts = self.facts();
        if facts.ended.len() >= self.capacity && !facts.ended.contains_key(session_id) {
            facts.ended.retain(|_, u| *u > now);
            if facts.ended.len() >= self.capacity {
                facts.ended.clear();
            }
        }
        let entry = facts.ended.entry(session_id.to_string()).or_insert(until);
        *entry = (*entry).max(until);
    }

    /// Every sign-out still alive at `now`, with its end.
    pub(super) fn signed_out_live(&self, now: u64) -> Vec<(String, u64)> {
        self.facts().ended.iter().filter(|(_, until)| **until > now).map(|(id, until)| (id.clone(), *until)).collect()
    }

    pub(super) fn result(&self, key: &TokenKey, now: u64) -> Option<Outcome> {
        self.facts().results.get(key).filter(|(until, _)| *until > now).map(|(_, outcome)| outcome.clone())
    }

    /// Keeps `outcome` (never an outage) until `until`, for [`RESULT_FOR_MS`] at most.
    pub(super) fn keep_result(&self, key: TokenKey, outcome: &Outcome, until: u64, now: u64) {
        if matches!(outcome, Outcome::Unavailable(_)) {
            return;
        }
        let until = until.min(now.saturating_add(RESULT_FOR_MS));
        let mut facts = self.facts();
        if facts.results.len() >= self.capacity && !facts.results.contains_key(&key) {
            facts.results.retain(|_, (u, _)| *u > now);
            if facts.results.len() >= self.capacity {
                facts.results.clear();
            }
        }
        facts.results.insert(key, (until, outcome.clone()));
    }

    /// The result's end brought forward to `until` (never later).
    pub(super) fn shorten(&self, key: &TokenKey, until: u64) {
        if let Some((end, _)) = self.facts().results.get_mut(key) {
            *end = (*end).min(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Token;

    #[test]
    fn facts_end_on_time_and_a_full_copy_makes_room() {
        let settled = Settled::new(2);
        settled.keep_signed_out("a", 100, 0);
        assert!(settled.signed_out("a", 99) && !settled.signed_out("a", 100) && !settled.signed_out("b", 0));
        // A mark is never shortened by a later, shorter one.
        settled.keep_signed_out("a", 50, 0);
        assert!(settled.signed_out("a", 99));
        settled.keep_signed_out("b", 10, 0);
        // Full: the ended "b" goes at 20, "a" stays.
        settled.keep_signed_out("c", 200, 20);
        assert!(settled.signed_out("a", 20) && settled.signed_out("c", 20));
        // Full of live ones: the copy is cleared (Redis still has them), the new one kept.
        settled.keep_signed_out("d", 300, 20);
        assert!(settled.signed_out("d", 20) && !settled.signed_out("a", 20));

        let key = TokenKey::of(&Token::new("r"));
        // Results live a second here at most, outages never.
        settled.keep_result(key, &Outcome::Refused("x".into()), 60_000, 0);
        assert!(settled.result(&key, RESULT_FOR_MS - 1).is_some() && settled.result(&key, RESULT_FOR_MS).is_none());
        settled.keep_result(key, &Outcome::Refused("x".into()), 60_000, 0);
        settled.shorten(&key, 10);
        assert!(settled.result(&key, 9).is_some() && settled.result(&key, 10).is_none());
        let other = TokenKey::of(&Token::new("s"));
        settled.keep_result(other, &Outcome::Unavailable("down".into()), 60_000, 0);
        assert!(settled.result(&other, 0).is_none());
    }
}
