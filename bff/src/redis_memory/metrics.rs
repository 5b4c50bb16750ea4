//! What an operator watches on the shared memory: leases taken and lost, waits for flights on
//! other instances, answers given without Redis, and every call Redis did not answer.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The Redis call that failed (`claim`, `land`, `marks`...).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct Operation {
    pub(super) operation: &'static str,
}

/// How a wait for another instance's flight ended.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct WaitEnd {
    /// `result` (it landed), `empty` (its lease ended without one), `failed` (Redis did not
    /// answer the last look), `gave_up` (three leases).
    pub(super) end: &'static str,
}

/// The counters; clones share them.
#[derive(Debug, Clone, Default)]
pub(super) struct SharedMetrics {
    pub(super) leases: Counter,
    pub(super) leases_lost: Counter,
    pub(super) leases_retaken: Counter,
    pub(super) remote_waits: Family<WaitEnd, Counter>,
    pub(super) pubsub_lost: Counter,
    pub(super) failures: Family<Operation, Counter>,
    pub(super) try_again: Counter,
    pub(super) landing_retries: Counter,
    pub(super) local_answers: Counter,
    pub(super) reachable: Gauge,
    pub(super) emptied: Counter,
    pub(super) written_back: Counter,
    pub(super) replicated: Counter,
    pub(super) mark_retries: Counter,
    pub(super) reconnects: Counter,
    /// This instance's clock minus Redis's, ms, at the watchdog's last look.
    pub(super) clock_skew_ms: Gauge,
}

impl SharedMetrics {
    pub(super) fn new() -> Self {
        let metrics = SharedMetrics::default();
        metrics.reachable.set(1);
        metrics
    }

    /// Registers every counter in `registry` (the refresher's, under `shared`).
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register("leases", "Refresh flights this instance flew under a Redis lease", self.leases.clone());
        registry.register(
            "leases_lost",
            "Leases another flight held when this one renewed (the grant outlived its lease)",
            self.leases_lost.clone(),
        );
        registry.register(
            "leases_retaken",
            "Leases kept, or taken again, through a Redis outage while their grant ran",
            self.leases_retaken.clone(),
        );
        registry.register(
            "remote_waits",
            "Waits for a refresh another instance flew, by how they ended",
            self.remote_waits.clone(),
        );
        registry.register(
            "pubsub_lost",
            "Waits whose subscription failed or dropped (polling found the result)",
            self.pubsub_lost.clone(),
        );
        registry.register("failures", "Redis calls that failed or timed out, by operation", self.failures.clone());
        registry.register(
            "emptied",
            "Times this instance found Redis empty (restarted without its data) and wrote back what it knew",
            self.emptied.clone(),
        );
        registry.register(
            "written_back",
            "Sign-outs, provider ends and refresh results written back to a Redis found empty",
            self.written_back.clone(),
        );
        registry.register(
            "replicated",
            "Facts (sign-outs, provider ends, refresh results) this instance copied from Redis or heard of, for a write-back",
            self.replicated.clone(),
        );
        registry.register(
            "clock_skew_ms",
            "This instance's clock minus Redis's (TIME), in ms, read every second: marks and results end by the clock of the instance that wrote them",
            self.clock_skew_ms.clone(),
        );
        registry.register(
            "mark_retries",
            "Sign-outs and provider logouts sent to Redis again because it did not answer",
            self.mark_retries.clone(),
        );
        registry.register(
            "reconnects",
            "Connections to Redis made again because the one in use stopped answering",
            self.reconnects.clone(),
        );
        registry.register(
            "try_again",
            "Requests answered 'try again' because Redis could not be asked (a refresh, or whether the session signed out)",
            self.try_again.clone(),
        );
        registry.register(
            "landing_retries",
            "Refresh results sent to Redis again because it did not answer",
            self.landing_retries.clone(),
        );
        registry.register(
            "local_answers",
            "Questions this instance answered from what it learned before, without Redis",
            self.local_answers.clone(),
        );
        registry.register("reachable", "1 when the last call to Redis answered, else 0", self.reachable.clone());
    }

    /// Counts a failed call; `true` when Redis answered the call before it (the first failure).
    pub(super) fn failed(&self, operation: &'static str) -> bool {
        self.failures.get_or_create(&Operation { operation }).inc();
        self.reachable.set(0) == 1
    }

    pub(super) fn waited(&self, end: &'static str) {
        self.remote_waits.get_or_create(&WaitEnd { end }).inc();
    }
}
