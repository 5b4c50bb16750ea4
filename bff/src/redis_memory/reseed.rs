//! A Redis that comes back empty (restarted without persistence, or its data lost) has
//! forgotten sign-outs, back-channel logouts, and the refresh results late requests with an
//! older cookie need: without them a signed-out cookie would open again and a rotated refresh
//! token would be presented again. Each instance notices it by a marker key of its own that
//! vanished (read with every request's marks, in the same round trip), answers "try again"
//! meanwhile, and writes back what it knows: the sign-outs it made or read ([`super::local`]),
//! the provider ends it was told of, and the results it landed ([`Journal`]), each with the end
//! it had. What only a dead instance knew is lost (said in the README's table).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::memory::TokenKey;

/// A refresh result this instance landed, as Redis held it.
#[derive(Debug, Clone)]
pub(super) struct Kept {
    /// The session it belongs to and the generation it made.
    pub(super) session_id: String,
    pub(super) generation: u64,
    /// The stored value (`{until}|R|{generation}|{sealed}`).
    pub(super) value: String,
    /// Its logical end (Unix milliseconds).
    pub(super) until: u64,
}

/// The results this instance landed, until their end, at most `capacity` (the oldest ended
/// ones go first; when none has, the one ending soonest).
pub(super) struct Journal {
    kept: Mutex<HashMap<TokenKey, Kept>>,
    capacity: usize,
}

impl Journal {
    pub(super) fn new(capacity: usize) -> Self {
        Journal { kept: Mutex::new(HashMap::new()), capacity: capacity.max(1) }
    }

    fn kept(&self) -> MutexGuard<'_, HashMap<TokenKey, Kept>> {
        self.kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn record(&self, key: TokenKey, kept: Kept, now: u64) {
        let mut all = self.kept();
        if all.len() >= self.capacity && !all.contains_key(&key) {
            all.retain(|_, k| k.until > now);
            if all.len() >= self.capacity {
                if let Some(soonest) = all.iter().min_by_key(|(_, k)| k.until).map(|(key, _)| *key) {
                    all.remove(&soonest);
                }
            }
        }
        all.insert(key, kept);
    }

    /// What is still alive at `now`.
    pub(super) fn live(&self, now: u64) -> Vec<(TokenKey, Kept)> {
        let mut all = self.kept();
        all.retain(|_, k| k.until > now);
        all.iter().map(|(key, kept)| (*key, kept.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Token;

    fn kept(until: u64) -> Kept {
        Kept { session_id: "s".into(), generation: 2, value: format!("{until}|R|2|x"), until }
    }

    #[test]
    fn the_journal_keeps_what_lives_within_its_bound() {
        let journal = Journal::new(2);
        let key = |n: u32| TokenKey::of(&Token::new(format!("r{n}")));
        journal.record(key(1), kept(100), 0);
        journal.record(key(2), kept(50), 0);
        assert_eq!(journal.live(0).len(), 2);
        // Full of live ones: the one ending soonest goes.
        journal.record(key(3), kept(200), 0);
        let live: Vec<u64> = journal.live(0).iter().map(|(_, k)| k.until).collect();
        assert!(live.contains(&100) && live.contains(&200) && live.len() == 2, "{live:?}");
        // Ended ones are not written back.
        assert_eq!(journal.live(150).len(), 1);
    }
}
