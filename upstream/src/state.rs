//! The shared state behind every handler, and the Rust face of the test controls.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::{ClientCredentials, HashCost, Shape, UpstreamConfig};
use crate::faults::{FaultSpec, Faults};
use crate::recorder::{RecordedRequest, Recorder};
use crate::store::{Counters, IssuedToUser, Lifetimes, Policy, Store, StoreError};
use crate::tokens::Signer;

#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

struct Inner {
    store: Mutex<Store>,
    signer: Signer,
    clients: Vec<ClientCredentials>,
    hash_cost: HashCost,
    decoy_hash: String,
    faults: Arc<Faults>,
    recorder: Recorder,
    test_controls: bool,
    shape: Shape,
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default()
}

impl Upstream {
    /// Opens (or creates) the store the configuration names. The signing key is the
    /// configured one, else the one kept in the store (made at its first start).
    pub fn new(config: &UpstreamConfig) -> Result<Self, StoreError> {
        let lifetimes = Lifetimes {
            access_ms: config.access_ttl.as_millis() as u64,
            refresh_ms: config.refresh_ttl.as_millis() as u64,
            grace_ms: config.rotation_grace.as_millis() as u64,
        };
        let mut store = Store::open(&config.database, lifetimes, config.test_controls)?;
        store.set_policy(Policy {
            current_access_only: config.shape == Shape::Seed003,
            reuse_revokes_user: config.shape == Shape::Seed002,
        });
        let key = match &config.signing_key {
            Some(key) => key.clone(),
            None => store.signing_key()?,
        };
        Ok(Upstream {
            inner: Arc::new(Inner {
                store: Mutex::new(store),
                signer: Signer::new(&key, &config.issuer),
                clients: config.clients.clone(),
                hash_cost: config.hash_cost,
                decoy_hash: crate::passwords::decoy(config.hash_cost),
                faults: Arc::new(Faults::default()),
                recorder: Recorder::default(),
                test_controls: config.test_controls,
                shape: config.shape,
            }),
        })
    }

    pub fn store(&self) -> MutexGuard<'_, Store> {
        // The store's methods leave it consistent at every return; a panic elsewhere while it
        // was held does not make it unusable.
        self.inner.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn signer(&self) -> &Signer {
        &self.inner.signer
    }

    pub fn clients(&self) -> &[ClientCredentials] {
        &self.inner.clients
    }

    pub fn hash_cost(&self) -> HashCost {
        self.inner.hash_cost
    }

    pub fn decoy_hash(&self) -> &str {
        &self.inner.decoy_hash
    }

    pub fn faults(&self) -> &Arc<Faults> {
        &self.inner.faults
    }

    pub fn recorder(&self) -> &Recorder {
        &self.inner.recorder
    }

    pub fn shape(&self) -> Shape {
        self.inner.shape
    }

    pub fn test_controls_enabled(&self) -> bool {
        self.inner.test_controls
    }

    // ---- the test controls, for tests that hold the upstream in-process ----

    pub fn counters(&self) -> Counters {
        self.store().counters.clone()
    }

    /// Resets counters, faults and the request log (users and tokens stay).
    pub fn reset(&self) {
        self.store().reset_counters();
        self.inner.faults.clear();
        self.inner.recorder.clear();
    }

    pub fn add_fault(&self, spec: FaultSpec) -> Result<(), String> {
        spec.validate()?;
        self.inner.faults.add(spec);
        Ok(())
    }

    pub fn clear_faults(&self) {
        self.inner.faults.clear();
    }

    /// Revokes every sign-in of the user; `None` when there is no such user.
    pub fn revoke_user(&self, email: &str) -> Result<Option<usize>, StoreError> {
        self.store().revoke_user(email)
    }

    pub fn issued_to(&self, email: &str) -> Result<Option<IssuedToUser>, StoreError> {
        self.store().issued_to(email)
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.inner.recorder.list()
    }
}
