//! A Redis that comes back empty (restarted without persistence, or its data lost) has
//! forgotten sign-outs, back-channel logouts, and the refresh results late requests with an
//! older cookie need: without them a signed-out cookie would open again and a rotated refresh
//! token would be presented again. Each instance notices it by a marker key of its own that
//! vanished (read with every request's marks, in the same round trip), answers "try again"
//! meanwhile, and writes back what it knows: the sign-outs it made or read ([`super::local`]),
//! the provider ends it was told of, and the results it landed ([`Journal`]), each with the end
//! it had. What only a dead instance knew is lost (said in the README's table).

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::memory::{Bounded, TokenKey};

/// A refresh result this instance landed, as Redis held it.
#[derive(Debug, Clone)]
pub(super) struct Kept {
    /// The session it belongs to and the generation it made.
    pub(super) session_id: String,
    pub(super) generation: u64,
    /// The sealed tokens (as stored in Redis).
    pub(super) sealed: String,
}

/// The results this instance landed, until their end (the hand-off), at most `capacity`, the
/// oldest going first.
pub(super) struct Journal {
    kept: Mutex<Bounded<TokenKey, Kept>>,
}

impl Journal {
    pub(super) fn new(capacity: usize) -> Self {
        Journal { kept: Mutex::new(Bounded::new(capacity)) }
    }

    fn kept(&self) -> MutexGuard<'_, Bounded<TokenKey, Kept>> {
        self.kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps `kept` until `until`.
    pub(super) fn record(&self, key: TokenKey, kept: Kept, until: Instant, now: Instant) {
        self.kept().insert(key, kept, until, now);
    }

    /// What is still alive at `now`, with how long it is kept yet.
    pub(super) fn live(&self, now: Instant) -> Vec<(TokenKey, Kept, Duration)> {
        self.kept().live(now).map(|(key, kept, left)| (*key, kept.clone(), left)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Token;

    fn kept(generation: u64) -> Kept {
        Kept { session_id: "s".into(), generation, sealed: "x".into() }
    }

    #[test]
    fn the_journal_keeps_what_lives_within_its_bound() {
        let t0 = Instant::now();
        let journal = Journal::new(2);
        let key = |n: u32| TokenKey::of(&Token::new(format!("r{n}")));
        journal.record(key(1), kept(1), t0 + Duration::from_secs(100), t0);
        journal.record(key(2), kept(2), t0 + Duration::from_secs(50), t0);
        assert_eq!(journal.live(t0).len(), 2);
        // Full: the oldest goes.
        journal.record(key(3), kept(3), t0 + Duration::from_secs(200), t0);
        let mut live: Vec<u64> = journal.live(t0).iter().map(|(_, k, _)| k.generation).collect();
        live.sort();
        assert_eq!(live, [2, 3]);
        // Ended ones are not written back.
        let later = journal.live(t0 + Duration::from_secs(60));
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].2, Duration::from_secs(140), "how long it is kept yet");
    }
}
