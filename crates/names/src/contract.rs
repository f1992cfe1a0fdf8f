//! The contract every [`NamePool`] implementation must pass.
//!
//! Each check is an `async fn` taking a [`PoolFactory`]; [`run_all`] runs them all. A factory
//! must return a pool over a *fresh, empty* namespace (a new SQLite file, a new DynamoDB
//! table or key prefix) that uses the given policy, clock and options. Checks panic with a
//! message naming the broken rule, like any test assertion.
//!
//! ```text
//! #[tokio::test(flavor = "multi_thread")]
//! async fn dynamodb_pool_meets_the_contract() {
//!     names::contract::run_all(&|spec: names::contract::PoolSpec| async move {
//!         std::sync::Arc::new(MyPool::new(spec)) as std::sync::Arc<dyn names::NamePool>
//!     })
//!     .await;
//! }
//! ```

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clock::{Clock, VirtualClock};
use sysprep::hostname::HostnamePolicy;

use crate::{AllocationRequest, LeaseState, NamePool, PoolError, PoolOptions};

/// What a factory builds a pool from.
#[derive(Debug, Clone)]
pub struct PoolSpec {
    /// The naming policy the pool must use.
    pub policy: HostnamePolicy,
    /// A virtual clock the checks advance; pass it to the pool as its `Arc<dyn Clock>`.
    pub clock: Arc<VirtualClock>,
    /// Lease TTL and other tunables.
    pub options: PoolOptions,
}

impl PoolSpec {
    /// The spec's clock as the trait object pools take.
    pub fn dyn_clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }
}

/// Builds a pool over a fresh namespace.
#[async_trait::async_trait]
pub trait PoolFactory: Send + Sync {
    /// A pool over a fresh, empty namespace built from `spec`.
    async fn create(&self, spec: PoolSpec) -> Arc<dyn NamePool>;
}

#[async_trait::async_trait]
impl<F, Fut> PoolFactory for F
where
    F: Fn(PoolSpec) -> Fut + Send + Sync,
    Fut: Future<Output = Arc<dyn NamePool>> + Send,
{
    async fn create(&self, spec: PoolSpec) -> Arc<dyn NamePool> {
        self(spec).await
    }
}

const TTL: Duration = Duration::from_secs(600);

fn spec(pattern: &str, prefix: &str) -> PoolSpec {
    PoolSpec {
        policy: HostnamePolicy::from_pattern(pattern, prefix)
            .unwrap_or_else(|e| panic!("contract policy {pattern:?}: {e}")),
        clock: Arc::new(VirtualClock::new(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        )),
        options: PoolOptions { lease_ttl: TTL },
    }
}

async fn allocate(pool: &dyn NamePool, instance_id: &str) -> Result<crate::Lease, PoolError> {
    pool.allocate(&AllocationRequest::new(instance_id)).await
}

/// Runs every check. Use a multi-threaded tokio runtime so the concurrency check is real.
pub async fn run_all(factory: &dyn PoolFactory) {
    idempotent_allocation(factory).await;
    lookups_are_case_insensitive(factory).await;
    confirm_makes_a_lease_permanent(factory).await;
    release_is_idempotent_and_names_are_reused(factory).await;
    exhausted_pool_is_a_distinct_error(factory).await;
    abandoned_leases_expire_on_the_virtual_clock(factory).await;
    an_expired_holder_gets_a_fresh_lease(factory).await;
    zone_pattern_needs_a_zone(factory).await;
    hash_patterns_allocate_unique_names(factory).await;
    concurrent_allocations_never_collide(factory, 500).await;
}

/// A retried allocation returns the same lease; different instances get different names.
pub async fn idempotent_allocation(factory: &dyn PoolFactory) {
    let pool = factory.create(spec("{prefix}-{seq:3}", "web")).await;
    let first = allocate(&*pool, "i-1").await.expect("allocate i-1");
    let again = allocate(&*pool, "i-1").await.expect("allocate i-1 again");
    assert_eq!(
        first, again,
        "a retried allocation must return the same lease"
    );
    assert_eq!(first.state, LeaseState::Leased);
    assert!(first.expires_at.is_some(), "a new lease expires");
    let other = allocate(&*pool, "i-2").await.expect("allocate i-2");
    assert_ne!(first.name, other.name, "two instances got the same name");
    let by_instance = pool.get_by_instance("i-1").await.expect("get_by_instance");
    assert_eq!(by_instance.as_ref(), Some(&first));
    let listed = pool.list().await.expect("list");
    assert_eq!(listed.len(), 2, "list shows both leases: {listed:?}");
}

/// Names compare case-insensitively.
pub async fn lookups_are_case_insensitive(factory: &dyn PoolFactory) {
    let pool = factory.create(spec("{prefix}-{seq:3}", "Web")).await;
    let lease = allocate(&*pool, "i-1").await.expect("allocate");
    assert_eq!(lease.name.as_str(), "Web-001", "the pattern's case is kept");
    for spelling in ["WEB-001", "web-001", "Web-001"] {
        let found = pool.get_by_name(spelling).await.expect("get_by_name");
        assert_eq!(
            found.map(|l| l.instance_id),
            Some("i-1".to_owned()),
            "get_by_name({spelling:?}) must find Web-001"
        );
    }
    assert_eq!(
        pool.get_by_name("web-002").await.expect("get_by_name"),
        None
    );
}

/// Confirmation is idempotent, stops expiry, and needs a live lease.
pub async fn confirm_makes_a_lease_permanent(factory: &dyn PoolFactory) {
    let spec = spec("{prefix}{seq:2}", "c");
    let clock = spec.clock.clone();
    let pool = factory.create(spec).await;
    let lease = allocate(&*pool, "i-1").await.expect("allocate");
    let confirmed = pool.confirm("i-1").await.expect("confirm");
    assert_eq!(confirmed.state, LeaseState::Confirmed);
    assert_eq!(confirmed.expires_at, None);
    assert_eq!(confirmed.name, lease.name);
    let twice = pool.confirm("i-1").await.expect("confirm twice");
    assert_eq!(twice, confirmed, "confirm is idempotent");
    clock.advance_by(TTL * 10);
    assert_eq!(
        pool.get_by_instance("i-1")
            .await
            .expect("get")
            .map(|l| l.name),
        Some(lease.name),
        "a confirmed lease never expires"
    );
    let missing = pool.confirm("i-unknown").await;
    assert!(
        matches!(missing, Err(PoolError::NotFound { .. })),
        "confirming an unknown instance: {missing:?}"
    );
    assert_eq!(
        missing.map(|_| ()).unwrap_err().error_name(),
        "NameLeaseNotFound"
    );
}

/// Release frees the name for the next instance; releasing twice is harmless.
pub async fn release_is_idempotent_and_names_are_reused(factory: &dyn PoolFactory) {
    let pool = factory.create(spec("{prefix}{seq:1}", "n")).await;
    let mut names = Vec::new();
    for i in 1..=9 {
        names.push(
            allocate(&*pool, &format!("i-{i}"))
                .await
                .expect("fill")
                .name,
        );
    }
    let released = pool.release("i-4").await.expect("release");
    assert_eq!(released.map(|l| l.name), Some(names[3].clone()));
    assert_eq!(pool.release("i-4").await.expect("release again"), None);
    assert_eq!(
        pool.release("i-never").await.expect("release unknown"),
        None
    );
    assert_eq!(pool.get_by_instance("i-4").await.expect("get"), None);
    let reused = allocate(&*pool, "i-10")
        .await
        .expect("allocate after release");
    assert_eq!(
        reused.name, names[3],
        "the released name is handed out again"
    );
    let holder = pool
        .get_by_name(names[3].as_str())
        .await
        .expect("get_by_name");
    assert_eq!(holder.map(|l| l.instance_id), Some("i-10".to_owned()));
}

/// A full pool fails with `Exhausted`, and recovers after a release.
pub async fn exhausted_pool_is_a_distinct_error(factory: &dyn PoolFactory) {
    let pool = factory.create(spec("{prefix}{seq:1}", "x")).await;
    for i in 1..=9 {
        allocate(&*pool, &format!("i-{i}")).await.expect("fill");
    }
    let error = allocate(&*pool, "i-10")
        .await
        .expect_err("the tenth allocation");
    assert!(
        matches!(error, PoolError::Exhausted { capacity: 9, .. }),
        "expected Exhausted {{ capacity: 9 }}, got {error:?}"
    );
    assert_eq!(error.error_name(), "NamePoolExhausted");
    assert!(!error.is_retriable());
    // Existing holders are unaffected and can still retry their own allocation.
    allocate(&*pool, "i-3")
        .await
        .expect("idempotent retry on a full pool");
    pool.release("i-1").await.expect("release");
    allocate(&*pool, "i-10")
        .await
        .expect("allocation after a release");
}

/// Unconfirmed leases vanish at `lease_ttl` on the pool's clock and their names are reused.
pub async fn abandoned_leases_expire_on_the_virtual_clock(factory: &dyn PoolFactory) {
    let spec = spec("{prefix}{seq:1}", "e");
    let clock = spec.clock.clone();
    let pool = factory.create(spec).await;
    for i in 1..=9 {
        allocate(&*pool, &format!("i-{i}")).await.expect("fill");
        if i != 5 {
            pool.confirm(&format!("i-{i}")).await.expect("confirm");
        }
    }
    let abandoned = pool
        .get_by_instance("i-5")
        .await
        .expect("get")
        .expect("i-5 leased");
    assert!(allocate(&*pool, "i-late").await.is_err(), "pool is full");
    clock.advance_by(TTL - Duration::from_secs(1));
    assert!(
        pool.get_by_instance("i-5").await.expect("get").is_some(),
        "a lease is live until its expiry"
    );
    clock.advance_by(Duration::from_secs(1));
    assert_eq!(
        pool.get_by_instance("i-5").await.expect("get"),
        None,
        "an unconfirmed lease is gone at lease_ttl"
    );
    assert!(
        matches!(pool.confirm("i-5").await, Err(PoolError::NotFound { .. })),
        "an expired lease cannot be confirmed"
    );
    assert_eq!(pool.list().await.expect("list").len(), 8);
    let late = allocate(&*pool, "i-late")
        .await
        .expect("allocate after expiry");
    assert_eq!(late.name, abandoned.name, "the abandoned name is reused");
}

/// A retry after the instance's own lease expired is a new allocation with a fresh expiry.
pub async fn an_expired_holder_gets_a_fresh_lease(factory: &dyn PoolFactory) {
    let spec = spec("{prefix}{seq:2}", "r");
    let clock = spec.clock.clone();
    let pool = factory.create(spec).await;
    let first = allocate(&*pool, "i-1").await.expect("allocate");
    clock.advance_by(TTL);
    let again = allocate(&*pool, "i-1")
        .await
        .expect("allocate after expiry");
    assert_eq!(again.state, LeaseState::Leased);
    assert!(
        again.expires_at > first.expires_at,
        "the new lease must expire later than the old one: {again:?} vs {first:?}"
    );
    assert_eq!(
        pool.get_by_instance("i-1")
            .await
            .expect("get")
            .map(|l| l.name),
        Some(again.name),
        "the fresh lease is live"
    );
}

/// A `{zone}` pattern without a zone is a request error, not a store failure.
pub async fn zone_pattern_needs_a_zone(factory: &dyn PoolFactory) {
    let pool = factory.create(spec("{prefix}{zone}{seq:3}", "app")).await;
    let error = allocate(&*pool, "i-1").await.expect_err("no zone given");
    assert_eq!(error.error_name(), "InvalidNameRequest", "{error:?}");
    let lease = pool
        .allocate(&AllocationRequest::new("i-1").in_zone("eu-west-1c"))
        .await
        .expect("allocate with a zone");
    assert_eq!(lease.name.as_str(), "appc001");
    assert!(pool.list().await.expect("list").len() == 1);
}

/// Hash-only patterns rehash on collision and stay unique.
pub async fn hash_patterns_allocate_unique_names(factory: &dyn PoolFactory) {
    // {hash:1} has 16 names: collisions are certain, so rehashing is exercised.
    let pool = factory.create(spec("{prefix}{hash:1}", "h")).await;
    let mut seen = HashSet::new();
    let mut exhausted = 0;
    for i in 0..16 {
        match allocate(&*pool, &format!("i-{i:017x}")).await {
            Ok(lease) => assert!(seen.insert(lease.name.key()), "duplicate {}", lease.name),
            Err(PoolError::Exhausted { .. }) => exhausted += 1,
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert!(
        seen.len() >= 12,
        "rehashing should find most of 16 names: {seen:?}"
    );
    assert_eq!(seen.len() + exhausted, 16);
}

/// `count` allocations at once (tasks on the current runtime) get `count` distinct names.
pub async fn concurrent_allocations_never_collide(factory: &dyn PoolFactory, count: usize) {
    let pool = factory.create(spec("{prefix}-{seq:5}", "con")).await;
    let handles: Vec<_> = (0..count)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move {
                // Every instance asks twice, as a retrying workflow would.
                let request = AllocationRequest::new(format!("i-{i:08}"));
                let first = pool.allocate(&request).await;
                let second = pool.allocate(&request).await;
                (first, second)
            })
        })
        .collect();
    let mut keys = HashSet::new();
    for handle in handles {
        let (first, second) = handle.await.expect("allocation task panicked");
        let first = first.expect("concurrent allocate");
        assert_eq!(Ok(&first), second.as_ref(), "retry returned another lease");
        assert!(keys.insert(first.name.key()), "collision on {}", first.name);
    }
    assert_eq!(keys.len(), count);
    assert_eq!(pool.list().await.expect("list").len(), count);
}
