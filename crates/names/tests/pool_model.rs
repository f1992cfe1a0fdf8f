//! Model-based property test: random allocate/confirm/release/clock-advance sequences against
//! the SQLite pool and a tiny in-test model. After every step the pool must agree with the
//! model: names unique (case-folded), allocation idempotent, lowest free sequence handed out,
//! expiry on the virtual clock, exhaustion exactly when the pool is full.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clock::VirtualClock;
use names::{AllocationRequest, LeaseState, NamePool, PoolError, PoolOptions, SqliteNamePool};
use proptest::prelude::*;
use sysprep::hostname::HostnamePolicy;

const TTL: u64 = 100;

#[derive(Debug, Clone)]
enum Op {
    Allocate(u8),
    Confirm(u8),
    Release(u8),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..14).prop_map(Op::Allocate),
        2 => (0u8..14).prop_map(Op::Confirm),
        2 => (0u8..14).prop_map(Op::Release),
        1 => (1u64..80).prop_map(Op::Advance),
    ]
}

/// instance -> (sequence, confirmed, expires_at_secs)
type Model = BTreeMap<u8, (u64, bool, u64)>;

fn live(model: &Model, now: u64) -> Model {
    model
        .iter()
        .filter(|(_, (_, confirmed, expires))| *confirmed || now < *expires)
        .map(|(k, v)| (*k, *v))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn pool_agrees_with_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
            let clock = Arc::new(VirtualClock::new(start));
            let policy = HostnamePolicy::from_pattern("{prefix}{seq:1}", "Node").unwrap();
            let pool = SqliteNamePool::in_memory(
                policy,
                clock.clone(),
                PoolOptions { lease_ttl: Duration::from_secs(TTL) },
            )
            .unwrap();
            let mut model: Model = BTreeMap::new();
            let mut now = 0u64;
            for op in ops {
                model = live(&model, now);
                match op {
                    Op::Advance(secs) => {
                        clock.advance_by(Duration::from_secs(secs));
                        now += secs;
                    }
                    Op::Allocate(i) => {
                        let result = pool.allocate(&AllocationRequest::new(format!("i-{i}"))).await;
                        if let Some((seq, _, _)) = model.get(&i) {
                            let lease = result.expect("a live holder's retry succeeds");
                            prop_assert_eq!(lease.sequence, *seq, "idempotent");
                        } else if model.len() == 9 {
                            let is_exhausted = matches!(result, Err(PoolError::Exhausted { .. }));
                            prop_assert!(is_exhausted, "expected exhausted, got {:?}", result);
                        } else {
                            let lease = result.expect("a free name exists");
                            let lowest = (1..=9u64)
                                .find(|s| !model.values().any(|(held, _, _)| held == s))
                                .unwrap();
                            prop_assert_eq!(lease.sequence, lowest, "lowest free sequence");
                            prop_assert_eq!(lease.name.as_str().to_owned(), format!("Node{lowest}"));
                            model.insert(i, (lowest, false, now + TTL));
                        }
                    }
                    Op::Confirm(i) => {
                        let result = pool.confirm(&format!("i-{i}")).await;
                        match model.get_mut(&i) {
                            Some(entry) => {
                                let lease = result.expect("confirm a live lease");
                                prop_assert_eq!(lease.state, LeaseState::Confirmed);
                                entry.1 = true;
                            }
                            None => {
                                let not_found = matches!(result, Err(PoolError::NotFound { .. }));
                                prop_assert!(not_found, "{:?}", result);
                            }
                        }
                    }
                    Op::Release(i) => {
                        let released = pool.release(&format!("i-{i}")).await.expect("release");
                        prop_assert_eq!(released.map(|l| l.sequence), model.remove(&i).map(|e| e.0));
                    }
                }
                // The pool's view equals the model's live leases.
                let listed = pool.list().await.expect("list");
                let expected = live(&model, now);
                let mut keys: Vec<String> = listed.iter().map(|l| l.name.key()).collect();
                keys.sort();
                keys.dedup();
                prop_assert_eq!(keys.len(), listed.len(), "unique names");
                let actual: BTreeMap<u8, (u64, bool)> = listed
                    .iter()
                    .map(|l| {
                        let i: u8 = l.instance_id[2..].parse().unwrap();
                        (i, (l.sequence, l.state == LeaseState::Confirmed))
                    })
                    .collect();
                let wanted: BTreeMap<u8, (u64, bool)> =
                    expected.iter().map(|(i, (s, c, _))| (*i, (*s, *c))).collect();
                prop_assert_eq!(actual, wanted);
            }
            Ok(())
        })?;
    }
}
