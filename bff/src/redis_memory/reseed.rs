//! A Redis that comes back empty (restarted without persistence, or its data lost) has
//! forgotten sign-outs, back-channel logouts, and the refresh results late requests with an
//! older cookie need: without them a signed-out cookie would open again and a rotated refresh
//! token would be presented again. So every instance keeps a [`Replica`] of those facts,
//! whichever instance made them: it reads them all from Redis whenever its subscription to the
//! facts channel (re)starts — at start, after an outage — and keeps each one the scripts tell
//! on that channel as they store it ([`follow`]). Each instance notices an empty Redis by a
//! marker key of its own that vanished (read with every request's marks, in the same round
//! trip), answers "try again" meanwhile, and writes back its replica and the marks it made
//! itself, each with the end it had. Lost for good is only what no running instance heard:
//! facts stored while every instance was away from Redis, or by instances that all stopped
//! before it came back empty (said in the README's table).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::link::Link;
use super::metrics::SharedMetrics;
use super::{alive, degraded, until};
use crate::clock::Clock;
use crate::memory::Bounded;

/// The channel the scripts tell facts on (`{prefix}facts:`).
pub(super) const FACTS: &str = "facts";

/// The kinds of key a replica keeps, each in a bounded map of its own (so that refresh churn
/// never pushes out a sign-out); the rest (leases, carry marks, used logout tokens) is not
/// written back: a lease is taken again by its flight's renewal, a result not shortened lives
/// its whole hand-off, and a logout token used again can only end sessions again.
const KINDS: [&str; 4] = ["ended:", "provider:", "newest:", "result:"];

/// Keys read per round trip while the replica is filled from Redis.
const SCAN_COUNT: usize = 1000;

/// A fact's value and its logical end (Unix milliseconds).
type Fact = (String, u64);

/// Every instance's copy of the facts Redis holds, for a Redis that comes back empty: each
/// kind ([`KINDS`]) bounded apart, the oldest going first.
pub(super) struct Replica {
    prefix: String,
    maps: [Mutex<Bounded<String, Fact>>; 4],
}

fn locked<T>(map: &Mutex<T>) -> MutexGuard<'_, T> {
    map.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Replica {
    /// At most `marks` of each kind of mark, `results` results.
    pub(super) fn new(prefix: &str, marks: usize, results: usize) -> Self {
        let map = |n: usize| Mutex::new(Bounded::new(n));
        Replica { prefix: prefix.to_string(), maps: [map(marks), map(marks), map(marks), map(results)] }
    }

    /// The map a key of this kind goes in, if it is kept at all.
    fn map(&self, key: &str) -> Option<&Mutex<Bounded<String, Fact>>> {
        let kind = key.strip_prefix(self.prefix.as_str())?;
        KINDS.iter().position(|k| kind.starts_with(k)).map(|i| &self.maps[i])
    }

    /// Keeps `value` (`{until}|{rest}`) as `key`'s, when the key is of a kind kept and the
    /// value alive at `now` (Unix milliseconds; `here` the same moment): a copy kept already
    /// stays when it ends as late or later. `true` when kept.
    pub(super) fn note(&self, key: &str, value: &str, now: u64, here: Instant) -> bool {
        let Some(map) = self.map(key) else { return false };
        let Some(end) = alive(value, now).and(until(value)) else { return false };
        let mut map = locked(map);
        if map.get(key, here).is_some_and(|(_, kept)| *kept >= end) {
            return false;
        }
        let lasts = crate::memory::after(here, Duration::from_millis(end - now));
        map.insert(key.to_string(), (value.to_string(), end), lasts, here);
        true
    }

    /// A fact as the scripts tell it (`{key length}:{key}{value}`), kept as [`Replica::note`]
    /// does. `false` when it is not one (or not kept).
    pub(super) fn heard(&self, message: &str, now: u64, here: Instant) -> bool {
        let Some((length, rest)) = message.split_once(':') else { return false };
        let Some(length) = length.parse::<usize>().ok().filter(|n| *n <= rest.len()) else { return false };
        let (Some(key), Some(value)) = (rest.get(..length), rest.get(length..)) else { return false };
        self.note(key, value, now, here)
    }

    /// Every fact alive at `here`: its key, its value and its end.
    pub(super) fn live(&self, here: Instant) -> Vec<(String, String, u64)> {
        let mut facts = Vec::new();
        for map in &self.maps {
            facts.extend(locked(map).live(here).map(|(key, (value, end), _)| (key.clone(), value.clone(), *end)));
        }
        facts
    }

    /// The pattern matching every key under the prefix (glob characters in it escaped).
    fn pattern(&self) -> String {
        let mut pattern = String::with_capacity(self.prefix.len() + 1);
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('*');
        pattern
    }
}

/// Fills `replica` with the facts Redis holds now (`SCAN`, then the values of the kept keys).
/// `None` when Redis stopped answering before the end.
async fn fill(link: &Link, replica: &Replica, clock: &dyn Clock, metrics: &SharedMetrics) -> Option<u64> {
    let (pattern, mut cursor, mut kept) = (replica.pattern(), 0u64, 0u64);
    loop {
        let mut conn = link.get();
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(SCAN_COUNT);
        let (next, keys): (u64, Vec<String>) = degraded(metrics, "replica", scan.query_async(&mut conn)).await?;
        let keys: Vec<String> = keys.into_iter().filter(|key| replica.map(key).is_some()).collect();
        if !keys.is_empty() {
            let values: Vec<Option<String>> = degraded(metrics, "replica", redis::cmd("MGET").arg(&keys).query_async(&mut conn)).await?;
            let (now, here) = (clock.unix_millis(), clock.now());
            for (key, value) in keys.iter().zip(values) {
                if value.is_some_and(|value| replica.note(key, &value, now, here)) {
                    kept += 1;
                }
            }
        }
        if next == 0 {
            return Some(kept);
        }
        cursor = next;
    }
}

/// Writes a session's newest generation back unless Redis has a higher one already (another
/// instance wrote back a fresher replica first). KEYS: the mark. ARGV: its value
/// (`{until}|{generation}`), px.
const WRITE_BACK_NEWEST: &str = r"
local have = redis.call('GET', KEYS[1])
if have then
  local gen = tonumber(string.match(have, '|(%d+)$')) or 0
  if (tonumber(string.match(ARGV[1], '|(%d+)$')) or 0) <= gen then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

/// The command that writes one fact back into a Redis found empty, to live `px` ms: never over
/// what another instance wrote back meanwhile (`SET NX`), except a newest generation, where the
/// higher one wins. A plain command (`EVAL`, not a loaded script: the emptied Redis lost those
/// too), so that it can go in a pipeline.
pub(super) fn write_back_command(key: &str, value: &str, px: u64, newest: bool) -> redis::Cmd {
    let mut cmd;
    if newest {
        cmd = redis::cmd("EVAL");
        cmd.arg(WRITE_BACK_NEWEST).arg(1).arg(key).arg(value).arg(px);
    } else {
        cmd = redis::cmd("SET");
        cmd.arg(key).arg(value).arg("PX").arg(px).arg("NX");
    }
    cmd
}

/// How often the replica is filled from Redis again while subscribed: what a message lost on
/// the way (a subscription stalled without failing, a fill that failed half-way) missed is
/// there by then.
pub(super) const REFILL_EVERY: Duration = Duration::from_secs(60);

/// Keeps `replica` up to date until `stop` is dropped: subscribes to the facts channel, fills
/// the replica from Redis (what was stored before, or while the subscription was down), then
/// keeps every fact heard, and fills it again every `refill_every` (a fill that failed, the
/// next second). A subscription that drops, or whose connection the watchdog found stalled,
/// starts over a second later.
pub(super) async fn follow(
    link: Link,
    replica: Arc<Replica>,
    clock: Arc<dyn Clock>,
    metrics: SharedMetrics,
    refill_every: Duration,
    mut stop: tokio::sync::watch::Receiver<()>,
) {
    let channel = format!("{}{FACTS}:", replica.prefix);
    loop {
        let renewed = link.renewed();
        let subscribed = match degraded(&metrics, "replica", link.client().get_async_pubsub()).await {
            Some(mut pubsub) => degraded(&metrics, "replica", pubsub.subscribe(&channel)).await.map(|()| pubsub),
            None => None,
        };
        if let Some(mut pubsub) = subscribed {
            let filling = || async {
                let kept = fill(&link, &replica, clock.as_ref(), &metrics).await;
                metrics.replicated.inc_by(kept.unwrap_or(0));
                kept.is_some()
            };
            let mut filled = filling().await;
            let mut refilled = tokio::time::Instant::now();
            let mut messages = pubsub.on_message();
            let mut tick = tokio::time::interval(refill_every.min(Duration::from_secs(1)));
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    message = messages.next() => {
                        let Some(message) = message else { break };
                        let Ok(payload) = message.get_payload::<String>() else { continue };
                        if replica.heard(&payload, clock.unix_millis(), clock.now()) {
                            metrics.replicated.inc();
                        }
                    }
                    _ = tick.tick() => {
                        if link.renewed() != renewed {
                            break;
                        }
                        if !filled || refilled.elapsed() >= refill_every {
                            // Messages wait in the subscription meanwhile.
                            filled = filling().await;
                            refilled = tokio::time::Instant::now();
                        }
                    }
                }
            }
            tracing::warn!("the subscription to the shared memory's facts dropped; subscribing again");
        }
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replica_keeps_the_facts_that_are_written_back_and_the_latest_end() {
        let t0 = Instant::now();
        let replica = Replica::new("p:", 1, 1);
        assert!(replica.heard("9:p:ended:s2000|1", 1000, t0), "a sign-out told on the channel");
        assert!(!replica.note("p:lease:ab", "2000|x", 1000, t0), "a lease is not kept");
        assert!(!replica.note("q:ended:s", "2000|1", 1000, t0), "another prefix");
        assert!(!replica.note("p:ended:t", "900|1", 1000, t0), "ended already");
        assert!(!replica.note("p:ended:s", "1500|1", 1000, t0), "an earlier end does not replace a later one");
        assert!(replica.note("p:ended:s", "3000|1", 1000, t0), "a later end does");
        assert!(replica.note("p:newest:s", "2200|4", 1000, t0), "each kind bounded apart: churn never pushes a sign-out out");
        assert!(replica.note("p:result:ab", "2000|R|2|sealed", 1000, t0));
        assert!(replica.note("p:result:cd", "2500|R|3|sealed", 1000, t0));
        let mut live = replica.live(t0);
        live.sort();
        assert_eq!(
            live,
            [
                ("p:ended:s".to_string(), "3000|1".to_string(), 3000),
                ("p:newest:s".to_string(), "2200|4".to_string(), 2200),
                ("p:result:cd".to_string(), "2500|R|3|sealed".to_string(), 2500)
            ],
            "the oldest result went to stay within its bound; the mark with its latest end"
        );
        assert_eq!(replica.live(t0 + Duration::from_millis(1600)).len(), 1, "ended ones are not written back");
    }

    #[test]
    fn a_message_that_is_not_a_fact_is_ignored() {
        let (t0, replica) = (Instant::now(), Replica::new("p:", 10, 10));
        for message in ["", "x", "99:p:ended:s2000|1", "abc:p:ended:s", "3:p:e", "10:p:ended:s", "9:p:ended:s", "2:é2000|1"] {
            assert!(!replica.heard(message, 1000, t0), "{message:?}");
        }
        assert!(replica.live(t0).is_empty());
    }

    /// A fact stored without its message reaching this instance (a subscription that stalled
    /// without failing, a fill that failed half-way) is in the replica by the next fill.
    #[tokio::test]
    async fn a_fact_whose_message_was_lost_is_filled_in_later() {
        let redis = crate::tests::refresher::redis_server::RedisServer::start().await;
        let client = redis::Client::open(redis.url.as_str()).unwrap();
        let conn = client.get_connection_manager_with_config(super::super::link::config()).await.unwrap();
        let link = Link::new(client, conn);
        let replica = Arc::new(Replica::new("lost:", 10, 10));
        let clock: Arc<dyn Clock> = Arc::new(crate::clock::SystemClock);
        let (_stop, stopped) = tokio::sync::watch::channel(());
        let metrics = SharedMetrics::default();
        let until = clock.unix_millis() + 3_600_000;
        let value = format!("{until}|1");
        let knows = |key: &str| replica.live(Instant::now()).contains(&(key.to_string(), value.clone(), until));
        let _: () = redis::cmd("SET").arg("lost:ended:before").arg(&value).query_async(&mut link.get()).await.unwrap();
        tokio::spawn(follow(link.clone(), replica.clone(), clock.clone(), metrics, Duration::from_millis(200), stopped));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !knows("lost:ended:before") {
            assert!(std::time::Instant::now() < deadline, "the first fill never came");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Filled and subscribed: stored as a script stores it, but never told on the channel.
        let _: () = redis::cmd("SET").arg("lost:ended:s").arg(&value).query_async(&mut link.get()).await.unwrap();
        while !knows("lost:ended:s") {
            assert!(std::time::Instant::now() < deadline, "the replica never learned the fact");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Two instances write back: a fact already there stays; of two newest generations, the
    /// higher stays, whichever came first.
    #[tokio::test]
    async fn a_write_back_never_replaces_a_fact_nor_a_higher_generation() {
        let redis = crate::tests::refresher::redis_server::RedisServer::start().await;
        let client = redis::Client::open(redis.url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let write = |key: &str, value: &str, newest: bool| {
            let cmd = write_back_command(key, value, 60_000, newest);
            let mut conn = conn.clone();
            async move {
                let _: redis::Value = cmd.query_async(&mut conn).await.unwrap();
            }
        };
        write("p:newest:s", "9000|5", true).await;
        write("p:newest:s", "9000|3", true).await;
        write("p:newest:t", "9000|3", true).await;
        write("p:newest:t", "9000|5", true).await;
        write("p:ended:s", "9000|1", false).await;
        write("p:ended:s", "8000|1", false).await;
        for (key, value) in [("p:newest:s", "9000|5"), ("p:newest:t", "9000|5"), ("p:ended:s", "9000|1")] {
            let kept: String = redis::cmd("GET").arg(key).query_async(&mut conn).await.unwrap();
            assert_eq!(kept, value, "{key}");
        }
        let px: i64 = redis::cmd("PTTL").arg("p:newest:t").query_async(&mut conn).await.unwrap();
        assert!(px > 50_000, "with its life: {px}");
    }

    #[test]
    fn the_scan_pattern_escapes_the_prefix() {
        assert_eq!(Replica::new("a*b[1]?:", 1, 1).pattern(), r"a\*b\[1\]\?:*");
    }
}
