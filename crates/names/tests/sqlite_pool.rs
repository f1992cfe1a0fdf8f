//! What only a file-backed store can show: many connections and threads on one file, and
//! case-insensitive uniqueness across policies. (The shared contract runs in the unit tests.)

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clock::{Clock, VirtualClock};
use names::{AllocationRequest, NamePool, PoolError, PoolOptions, SqliteNamePool};
use sysprep::hostname::HostnamePolicy;

fn clock() -> Arc<dyn Clock> {
    Arc::new(VirtualClock::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    ))
}

/// Issue #3: 10,000 concurrent allocations from many threads, each thread with its own
/// connection to one file, so atomicity comes from SQLite's locking, not from a Mutex.
#[test]
fn ten_thousand_concurrent_allocations_have_zero_collisions() {
    const THREADS: usize = 16;
    const PER_THREAD: usize = 625;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("names.db");
    let policy = HostnamePolicy::from_pattern("{prefix}-{seq:5}", "WEB").expect("policy");
    let clock = clock();
    // Create the schema once so the threads race only on allocation.
    SqliteNamePool::open(&path, policy.clone(), clock.clone(), PoolOptions::default())
        .expect("create");

    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let path = path.clone();
            let policy = policy.clone();
            let clock = clock.clone();
            std::thread::spawn(move || {
                let pool = SqliteNamePool::open(&path, policy, clock, PoolOptions::default())
                    .expect("open per thread");
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("runtime");
                runtime.block_on(async {
                    let mut names = Vec::with_capacity(PER_THREAD);
                    for i in 0..PER_THREAD {
                        let id = format!("i-{t:02}{i:05}");
                        let lease = pool
                            .allocate(&AllocationRequest::new(id.as_str()))
                            .await
                            .expect("allocate");
                        names.push((id, lease.name.key()));
                    }
                    names
                })
            })
        })
        .collect();
    let mut keys = HashSet::new();
    let mut instances = HashSet::new();
    for thread in threads {
        for (id, key) in thread.join().expect("allocation thread panicked") {
            assert!(keys.insert(key.clone()), "collision on {key}");
            assert!(instances.insert(id));
        }
    }
    assert_eq!(keys.len(), THREADS * PER_THREAD);
    // Lowest-free-sequence allocation packs the names densely: exactly WEB-00001..WEB-10000.
    let expected: HashSet<String> = (1..=THREADS * PER_THREAD)
        .map(|n| format!("web-{n:05}"))
        .collect();
    assert_eq!(keys, expected);
}

/// Two policies that differ only in case share one file: the second cannot take WEB-001's
/// name in lower case, because uniqueness is on the case-folded name.
#[tokio::test]
async fn names_are_unique_case_insensitively_across_policies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("names.db");
    let clock = clock();
    let upper = SqliteNamePool::open(
        &path,
        HostnamePolicy::from_pattern("{prefix}-{seq:3}", "WEB").expect("policy"),
        clock.clone(),
        PoolOptions::default(),
    )
    .expect("open upper");
    let lower = SqliteNamePool::open(
        &path,
        HostnamePolicy::from_pattern("{prefix}-{seq:3}", "web").expect("policy"),
        clock,
        PoolOptions::default(),
    )
    .expect("open lower");
    let a = upper
        .allocate(&AllocationRequest::new("i-a"))
        .await
        .expect("a");
    let b = lower
        .allocate(&AllocationRequest::new("i-b"))
        .await
        .expect("b");
    assert_eq!(a.name.as_str(), "WEB-001");
    assert_eq!(b.name.as_str(), "web-002");
}

#[tokio::test]
async fn lease_serializes_with_epoch_millis() {
    let pool = SqliteNamePool::in_memory(
        HostnamePolicy::from_pattern("{prefix}{seq:2}", "s").expect("policy"),
        clock(),
        PoolOptions {
            lease_ttl: Duration::from_secs(60),
        },
    )
    .expect("pool");
    let lease = pool
        .allocate(&AllocationRequest::new("i-1"))
        .await
        .expect("allocate");
    let json = serde_json::to_value(&lease).expect("serialize");
    assert_eq!(
        json,
        serde_json::json!({
            "name": "s01", "instance_id": "i-1", "sequence": 1, "state": "leased",
            "allocated_at": 1_800_000_000_000i64, "expires_at": 1_800_000_060_000i64
        })
    );
    let back: names::Lease = serde_json::from_value(json).expect("deserialize");
    assert_eq!(back, lease);
}

#[tokio::test]
async fn corrupt_rows_are_errors_not_panics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("names.db");
    let pool = SqliteNamePool::open(
        &path,
        HostnamePolicy::from_pattern("{prefix}{seq:2}", "s").expect("policy"),
        clock(),
        PoolOptions::default(),
    )
    .expect("pool");
    let connection = rusqlite::Connection::open(&path).expect("open raw");
    connection
        .execute(
            "INSERT INTO hostname_leases (name_key, name, instance_id, sequence, state, allocated_at_ms, expires_at_ms)
             VALUES ('bad_name!', 'bad_name!', 'i-bad', 99, 'confirmed', 0, NULL)",
            [],
        )
        .expect("insert a hand-edited row");
    let error = pool.list().await.expect_err("a row with an invalid name");
    assert!(matches!(error, PoolError::Unavailable { .. }));
    assert!(error.to_string().contains("i-bad"), "{error}");
}
