//! Hostname leases: which instance holds which Windows computer name.
//!
//! The naming *policy* (what names look like, which are valid) lives in
//! [`sysprep::hostname`]; this crate keeps the *allocation* honest:
//!
//! - [`NamePool`] is the object-safe async trait (`Arc<dyn NamePool>`) the workflows call. It
//!   is async because the DynamoDB implementation (in the `cloud` crate) is.
//! - `SqliteNamePool` (cargo feature `sqlite`, on by default) is the local implementation: one SQLite file (WAL), a unique
//!   constraint on the case-folded name, every allocation in a `BEGIN IMMEDIATE` transaction,
//!   so it is collision-free across threads, tasks and processes.
//! - `contract` (always in this crate's tests, public behind the `contract-tests` feature) is
//!   the suite every implementation must pass.
//!
//! Semantics every implementation shares:
//! - `allocate` is idempotent per instance id: a retry returns the same lease.
//! - A new lease is *leased* until `confirm`ed; a lease that passes `expires_at` without
//!   confirmation (an abandoned launch) is treated as absent and its name is reused.
//! - `release` is by instance id and idempotent.
//! - Names are unique case-insensitively ([`sysprep::hostname::key`]).
//! - Time comes from the injected [`clock::Clock`], so expiry works on the virtual clock.
//! - With a `{seq:N}` pattern the lowest free sequence is handed out (SQLite); other
//!   implementations only promise *a* free one.
//!
//! This crate does not talk to AWS, and does not decide names itself: candidates come from
//! [`sysprep::hostname::HostnamePolicy::candidate`].
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use names::{AllocationRequest, NamePool, PoolOptions, SqliteNamePool};
//! use sysprep::hostname::HostnamePolicy;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let policy = HostnamePolicy::from_pattern("{prefix}-{seq:3}", "WEB").unwrap();
//! let pool = SqliteNamePool::in_memory(policy, Arc::new(clock::SystemClock), PoolOptions::default())
//!     .unwrap();
//! let lease = pool.allocate(&AllocationRequest::new("i-0abc")).await.unwrap();
//! assert_eq!(lease.name.as_str(), "WEB-001");
//! # });
//! ```

#![warn(missing_docs)]

#[cfg(any(test, feature = "contract-tests"))]
pub mod contract;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sysprep::hostname::{Hostname, PolicyError};

#[cfg(feature = "sqlite")]
pub use sqlite::SqliteNamePool;

/// What the workflow asks for when an instance launches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationRequest {
    /// The EC2 instance id; allocation is idempotent per id.
    pub instance_id: String,
    /// Needed when the pattern has `{zone}`, e.g. `us-east-1a`.
    #[serde(default)]
    pub availability_zone: Option<String>,
}

impl AllocationRequest {
    /// A request for `instance_id` with no availability zone.
    pub fn new(instance_id: impl Into<String>) -> Self {
        Self {
            instance_id: instance_id.into(),
            availability_zone: None,
        }
    }

    /// Adds the availability zone (needed by `{zone}` patterns).
    pub fn in_zone(mut self, availability_zone: impl Into<String>) -> Self {
        self.availability_zone = Some(availability_zone.into());
        self
    }
}

/// Whether a name is held provisionally or for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseState {
    /// Allocated, not yet confirmed; expires at `expires_at`.
    Leased,
    /// The instance carries the name; held until released.
    Confirmed,
}

/// One instance's claim on one name.
///
/// Times serialize as milliseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The leased computer name, as the pattern spells it.
    pub name: Hostname,
    /// The instance holding it.
    pub instance_id: String,
    /// The `{seq}` number, or the hash attempt for hash-only patterns.
    pub sequence: u64,
    /// Leased (expiring) or confirmed (permanent).
    pub state: LeaseState,
    /// When the lease was created, on the pool's clock.
    #[serde(with = "epoch_millis")]
    pub allocated_at: SystemTime,
    /// `None` once confirmed.
    #[serde(with = "epoch_millis_opt", default)]
    pub expires_at: Option<SystemTime>,
}

impl Lease {
    /// True when the lease counts at `now` (confirmed, or leased and not yet expired).
    pub fn is_live(&self, now: SystemTime) -> bool {
        match (self.state, self.expires_at) {
            (LeaseState::Confirmed, _) => true,
            (LeaseState::Leased, Some(expires_at)) => now < expires_at,
            (LeaseState::Leased, None) => true,
        }
    }
}

/// Tunables shared by implementations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolOptions {
    /// How long an unconfirmed lease lives. It must outlast the launch lifecycle hook
    /// (heartbeats included), or a slow launch loses its name.
    pub lease_ttl: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            // A lifecycle hook's HeartbeatTimeout is at most 7200 s; three hours covers one
            // full timeout plus the workflow's own retries. Launches kept alive longer by
            // heartbeats (up to 48 h) should confirm early or use a longer TTL.
            lease_ttl: Duration::from_secs(3 * 3600),
        }
    }
}

/// Why a pool operation failed. [`PoolError::error_name`] is the stable name workflows
/// `Retry`/`Catch` on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error(
        "name pool exhausted: pattern {pattern:?} has {capacity} names and all are leased; release names or widen {{seq:N}}"
    )]
    /// Every candidate name is held.
    Exhausted {
        /// The naming pattern.
        pattern: String,
        /// How many names it has.
        capacity: u64,
    },
    #[error("instance {instance_id:?} holds no live lease (never allocated, released or expired)")]
    /// The instance holds no live lease.
    NotFound {
        /// The instance asked about.
        instance_id: String,
    },
    #[error("invalid allocation request: {0}")]
    /// The request cannot produce a name (e.g. no zone for a `{zone}` pattern).
    InvalidRequest(#[from] PolicyError),
    #[error("name store unavailable: {message}")]
    /// The store failed; worth retrying.
    Unavailable {
        /// What failed, naming the store and the operation.
        message: String,
    },
}

impl PoolError {
    /// The error name surfaced to the state machines.
    pub fn error_name(&self) -> &'static str {
        match self {
            PoolError::Exhausted { .. } => "NamePoolExhausted",
            PoolError::NotFound { .. } => "NameLeaseNotFound",
            PoolError::InvalidRequest(_) => "InvalidNameRequest",
            PoolError::Unavailable { .. } => "NamePoolUnavailable",
        }
    }

    /// Only a store outage is worth retrying; the others are answers.
    pub fn is_retriable(&self) -> bool {
        matches!(self, PoolError::Unavailable { .. })
    }
}

/// A store of hostname leases. Object-safe: share it as `Arc<dyn NamePool>`.
#[async_trait::async_trait]
pub trait NamePool: Send + Sync {
    /// Leases a free name to `request.instance_id`, or returns the live lease it already has.
    /// Fails with [`PoolError::Exhausted`] when every candidate is held.
    async fn allocate(&self, request: &AllocationRequest) -> Result<Lease, PoolError>;

    /// Makes the instance's lease permanent (it no longer expires). Idempotent.
    /// [`PoolError::NotFound`] if the instance holds no live lease.
    async fn confirm(&self, instance_id: &str) -> Result<Lease, PoolError>;

    /// Frees the instance's name. Returns the released lease, or `None` if it held none.
    async fn release(&self, instance_id: &str) -> Result<Option<Lease>, PoolError>;

    /// The instance's live lease.
    async fn get_by_instance(&self, instance_id: &str) -> Result<Option<Lease>, PoolError>;

    /// The live lease on `name`, compared case-insensitively.
    async fn get_by_name(&self, name: &str) -> Result<Option<Lease>, PoolError>;

    /// Every live lease, ordered by case-folded name.
    async fn list(&self) -> Result<Vec<Lease>, PoolError>;
}

pub(crate) fn to_millis(time: SystemTime) -> i64 {
    let millis = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    i64::try_from(millis).unwrap_or(i64::MAX)
}

pub(crate) fn from_millis(millis: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap_or(0))
}

mod epoch_millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::SystemTime;

    pub fn serialize<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(super::to_millis(*time))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        Ok(super::from_millis(i64::deserialize(d)?))
    }
}

mod epoch_millis_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::SystemTime;

    pub fn serialize<S: Serializer>(time: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match time {
            Some(time) => s.serialize_some(&super::to_millis(*time)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
        Ok(Option::<i64>::deserialize(d)?.map(super::from_millis))
    }
}
