//! The SQLite name store.
//!
//! Atomicity comes from SQLite, not from this process: every mutation runs in a
//! `BEGIN IMMEDIATE` transaction (one writer at a time across every connection and process on
//! the file) and `name_key` is the primary key, so two instances can never hold the same
//! case-folded name even if two pools with different policies share a file.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use clock::Clock;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use sysprep::hostname::{CandidateSpace, Hostname, HostnamePolicy, NameContext};

use crate::{
    AllocationRequest, Lease, LeaseState, NamePool, PoolError, PoolOptions, from_millis, to_millis,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS hostname_leases (
    name_key        TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    instance_id     TEXT NOT NULL UNIQUE,
    sequence        INTEGER NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('leased', 'confirmed')),
    allocated_at_ms INTEGER NOT NULL,
    expires_at_ms   INTEGER
);
CREATE INDEX IF NOT EXISTS hostname_leases_sequence ON hostname_leases (sequence);
CREATE INDEX IF NOT EXISTS hostname_leases_expiry ON hostname_leases (expires_at_ms)
    WHERE expires_at_ms IS NOT NULL;
CREATE TABLE IF NOT EXISTS hostname_pool_meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
";

// Invariant kept in hostname_pool_meta: every sequence in [first, hint) is held, so the lowest
// free sequence is found by scanning up from the hint instead of from the start.
const HINT_KEY: &str = "sequence_hint";

const COLUMNS: &str = "name, instance_id, sequence, state, allocated_at_ms, expires_at_ms";

/// A [`NamePool`] on one SQLite file (or in memory).
///
/// Calls run synchronously inside the async methods: each is one short transaction, and
/// waiting on another process's write lock is bounded by the busy timeout.
#[derive(Debug)]
pub struct SqliteNamePool {
    connection: Mutex<Connection>,
    policy: HostnamePolicy,
    clock: Arc<dyn Clock>,
    options: PoolOptions,
}

impl SqliteNamePool {
    /// Opens (creating if needed) the store at `path`. Several pools, threads or processes may
    /// open the same file.
    pub fn open(
        path: &Path,
        policy: HostnamePolicy,
        clock: Arc<dyn Clock>,
        options: PoolOptions,
    ) -> Result<Self, PoolError> {
        let connection = Connection::open(path)
            .map_err(|e| unavailable(&format!("opening {}", path.display()), e))?;
        connection
            .busy_timeout(std::time::Duration::from_secs(30))
            .map_err(|e| unavailable("setting the busy timeout", e))?;
        // WAL lets readers run beside the writer; NORMAL sync is durable across process
        // crashes, which is what a lease store needs.
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| unavailable("enabling WAL", e))?;
        connection
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| unavailable("setting synchronous=NORMAL", e))?;
        Self::with_connection(connection, policy, clock, options)
    }

    /// A private in-memory store (tests, the simulated fleet).
    pub fn in_memory(
        policy: HostnamePolicy,
        clock: Arc<dyn Clock>,
        options: PoolOptions,
    ) -> Result<Self, PoolError> {
        let connection = Connection::open_in_memory()
            .map_err(|e| unavailable("opening an in-memory database", e))?;
        Self::with_connection(connection, policy, clock, options)
    }

    fn with_connection(
        connection: Connection,
        policy: HostnamePolicy,
        clock: Arc<dyn Clock>,
        options: PoolOptions,
    ) -> Result<Self, PoolError> {
        connection
            .execute_batch(SCHEMA)
            .map_err(|e| unavailable("creating the hostname_leases schema", e))?;
        Ok(Self {
            connection: Mutex::new(connection),
            policy,
            clock,
            options,
        })
    }

    /// The policy names come from.
    pub fn policy(&self) -> &HostnamePolicy {
        &self.policy
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (the transaction
        // rolls back on drop), so a poisoned lock is safe to keep using.
        self.connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn allocate_sync(&self, request: &AllocationRequest) -> Result<Lease, PoolError> {
        let context = NameContext {
            instance_id: &request.instance_id,
            availability_zone: request.availability_zone.as_deref(),
        };
        // Validate the request before touching the store, so a bad zone is an answer, not a
        // half-done transaction.
        self.policy.check_context(&context)?;

        let now = self.clock.now();
        let now_ms = to_millis(now);
        let mut connection = self.lock();
        let tx = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| unavailable("starting the allocation transaction", e))?;

        // Reclaim abandoned leases first, remembering the lowest freed sequence.
        let lowest_freed: Option<i64> = tx
            .query_row(
                "SELECT MIN(sequence) FROM hostname_leases WHERE expires_at_ms IS NOT NULL AND expires_at_ms <= ?1",
                params![now_ms],
                |row| row.get(0),
            )
            .map_err(|e| unavailable("finding expired leases", e))?;
        if let Some(freed) = lowest_freed {
            tx.execute(
                "DELETE FROM hostname_leases WHERE expires_at_ms IS NOT NULL AND expires_at_ms <= ?1",
                params![now_ms],
            )
            .map_err(|e| unavailable("reclaiming expired leases", e))?;
            // Keep the hint invariant in this same transaction, whichever way it ends.
            lower_hint(&tx, freed)?;
        }

        if let Some(lease) = select_by_instance(&tx, &request.instance_id)? {
            tx.commit()
                .map_err(|e| unavailable("committing the allocation", e))?;
            return Ok(lease);
        }

        let expires_ms = to_millis(now + self.options.lease_ttl);
        let lease = match self.policy.candidate_space() {
            CandidateSpace::Sequence { first, last } => {
                let stored_hint: Option<i64> = tx
                    .query_row(
                        "SELECT value FROM hostname_pool_meta WHERE key = ?1",
                        params![HINT_KEY],
                        |row| row.get(0),
                    )
                    .optional()
                    .map_err(|e| unavailable("reading the sequence hint", e))?;
                let first_i = seq_i64(first);
                let mut next = stored_hint.unwrap_or(first_i).max(first_i);
                let taken = loop {
                    next = lowest_free_from(&tx, next)?;
                    if next > seq_i64(last) {
                        break None;
                    }
                    let sequence = u64::try_from(next).unwrap_or(first);
                    let name = self.policy.candidate(sequence, &context)?;
                    if insert(&tx, &name, &request.instance_id, next, now_ms, expires_ms)? {
                        break Some((name, next));
                    }
                    // The name is held under another sequence (another policy shares the
                    // file): treat this sequence as taken and keep looking.
                    next += 1;
                };
                let Some((name, sequence)) = taken else {
                    // Everything from the hint up is held; remember that, so the next attempt
                    // is cheap until something is released.
                    set_hint(&tx, next)?;
                    tx.commit()
                        .map_err(|e| unavailable("committing the allocation", e))?;
                    return Err(self.exhausted());
                };
                set_hint(&tx, sequence + 1)?;
                Lease {
                    name,
                    instance_id: request.instance_id.clone(),
                    sequence: u64::try_from(sequence).unwrap_or(0),
                    state: LeaseState::Leased,
                    allocated_at: from_millis(now_ms),
                    expires_at: Some(from_millis(expires_ms)),
                }
            }
            CandidateSpace::Hash { attempts } => {
                let mut found = None;
                for attempt in 0..attempts {
                    let name = self.policy.candidate(attempt, &context)?;
                    let sequence = seq_i64(attempt);
                    if insert(
                        &tx,
                        &name,
                        &request.instance_id,
                        sequence,
                        now_ms,
                        expires_ms,
                    )? {
                        found = Some((name, attempt));
                        break;
                    }
                }
                let Some((name, attempt)) = found else {
                    tx.commit()
                        .map_err(|e| unavailable("committing the allocation", e))?;
                    return Err(self.exhausted());
                };
                Lease {
                    name,
                    instance_id: request.instance_id.clone(),
                    sequence: attempt,
                    state: LeaseState::Leased,
                    allocated_at: from_millis(now_ms),
                    expires_at: Some(from_millis(expires_ms)),
                }
            }
        };
        tx.commit()
            .map_err(|e| unavailable("committing the allocation", e))?;
        Ok(lease)
    }

    fn exhausted(&self) -> PoolError {
        PoolError::Exhausted {
            pattern: self.policy.pattern().to_owned(),
            capacity: self.policy.capacity(),
        }
    }

    fn confirm_sync(&self, instance_id: &str) -> Result<Lease, PoolError> {
        let now_ms = to_millis(self.clock.now());
        let mut connection = self.lock();
        let tx = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| unavailable("starting the confirm transaction", e))?;
        tx.execute(
            "UPDATE hostname_leases SET state = 'confirmed', expires_at_ms = NULL
             WHERE instance_id = ?1 AND (expires_at_ms IS NULL OR expires_at_ms > ?2)",
            params![instance_id, now_ms],
        )
        .map_err(|e| unavailable("confirming the lease", e))?;
        let lease = select_live_by_instance(&tx, instance_id, now_ms)?;
        tx.commit()
            .map_err(|e| unavailable("committing the confirmation", e))?;
        lease.ok_or_else(|| PoolError::NotFound {
            instance_id: instance_id.to_owned(),
        })
    }

    fn release_sync(&self, instance_id: &str) -> Result<Option<Lease>, PoolError> {
        let now_ms = to_millis(self.clock.now());
        let mut connection = self.lock();
        let tx = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| unavailable("starting the release transaction", e))?;
        let Some(lease) = select_by_instance(&tx, instance_id)? else {
            return Ok(None);
        };
        tx.execute(
            "DELETE FROM hostname_leases WHERE instance_id = ?1",
            params![instance_id],
        )
        .map_err(|e| unavailable("deleting the lease", e))?;
        if matches!(
            self.policy.candidate_space(),
            CandidateSpace::Sequence { .. }
        ) {
            lower_hint(&tx, seq_i64(lease.sequence))?;
        }
        tx.commit()
            .map_err(|e| unavailable("committing the release", e))?;
        // An expired lease was already free: report it as nothing released.
        Ok(lease.is_live(from_millis(now_ms)).then_some(lease))
    }

    fn query_sync(&self, filter: &str, value: Option<&str>) -> Result<Vec<Lease>, PoolError> {
        let now_ms = to_millis(self.clock.now());
        let connection = self.lock();
        let sql = format!(
            "SELECT {COLUMNS} FROM hostname_leases
             WHERE (expires_at_ms IS NULL OR expires_at_ms > ?1) {filter}
             ORDER BY name_key"
        );
        let mut statement = connection
            .prepare_cached(&sql)
            .map_err(|e| unavailable("preparing the lease query", e))?;
        let rows = match value {
            Some(value) => statement.query_map(params![now_ms, value], read_lease),
            None => statement.query_map(params![now_ms], read_lease),
        }
        .map_err(|e| unavailable("querying leases", e))?;
        rows.map(|row| row.map_err(|e| unavailable("reading a lease row", e))?)
            .collect()
    }
}

#[async_trait::async_trait]
impl NamePool for SqliteNamePool {
    async fn allocate(&self, request: &AllocationRequest) -> Result<Lease, PoolError> {
        self.allocate_sync(request)
    }

    async fn confirm(&self, instance_id: &str) -> Result<Lease, PoolError> {
        self.confirm_sync(instance_id)
    }

    async fn release(&self, instance_id: &str) -> Result<Option<Lease>, PoolError> {
        self.release_sync(instance_id)
    }

    async fn get_by_instance(&self, instance_id: &str) -> Result<Option<Lease>, PoolError> {
        Ok(self
            .query_sync("AND instance_id = ?2", Some(instance_id))?
            .into_iter()
            .next())
    }

    async fn get_by_name(&self, name: &str) -> Result<Option<Lease>, PoolError> {
        let key = sysprep::hostname::key(name);
        Ok(self
            .query_sync("AND name_key = ?2", Some(&key))?
            .into_iter()
            .next())
    }

    async fn list(&self) -> Result<Vec<Lease>, PoolError> {
        self.query_sync("", None)
    }
}

fn unavailable(doing: &str, error: rusqlite::Error) -> PoolError {
    PoolError::Unavailable {
        message: format!("sqlite: {doing}: {error}"),
    }
}

fn seq_i64(sequence: u64) -> i64 {
    // Sequences are at most 999_999_999 ({seq:9}) and attempts are few.
    i64::try_from(sequence).unwrap_or(i64::MAX)
}

/// The lowest sequence >= `from` that no row holds (walks the sequence index).
fn lowest_free_from(tx: &rusqlite::Transaction<'_>, from: i64) -> Result<i64, PoolError> {
    let mut statement = tx
        .prepare_cached(
            "SELECT sequence FROM hostname_leases WHERE sequence >= ?1 ORDER BY sequence",
        )
        .map_err(|e| unavailable("preparing the sequence scan", e))?;
    let mut rows = statement
        .query(params![from])
        .map_err(|e| unavailable("scanning sequences", e))?;
    let mut next = from;
    while let Some(row) = rows
        .next()
        .map_err(|e| unavailable("scanning sequences", e))?
    {
        let held: i64 = row
            .get(0)
            .map_err(|e| unavailable("reading a sequence", e))?;
        if held > next {
            break;
        }
        if held == next {
            next += 1;
        }
    }
    Ok(next)
}

fn set_hint(tx: &rusqlite::Transaction<'_>, hint: i64) -> Result<(), PoolError> {
    tx.execute(
        "INSERT INTO hostname_pool_meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![HINT_KEY, hint],
    )
    .map_err(|e| unavailable("storing the sequence hint", e))?;
    Ok(())
}

/// Lowers the stored hint to `sequence` (a freed sequence is the new lowest candidate).
fn lower_hint(tx: &rusqlite::Transaction<'_>, sequence: i64) -> Result<(), PoolError> {
    tx.execute(
        "UPDATE hostname_pool_meta SET value = MIN(value, ?2) WHERE key = ?1",
        params![HINT_KEY, sequence],
    )
    .map_err(|e| unavailable("lowering the sequence hint", e))?;
    Ok(())
}

/// Inserts a lease; `false` when the case-folded name is already held.
fn insert(
    tx: &rusqlite::Transaction<'_>,
    name: &Hostname,
    instance_id: &str,
    sequence: i64,
    now_ms: i64,
    expires_ms: i64,
) -> Result<bool, PoolError> {
    let inserted = tx
        .execute(
            "INSERT INTO hostname_leases
                 (name_key, name, instance_id, sequence, state, allocated_at_ms, expires_at_ms)
             VALUES (?1, ?2, ?3, ?4, 'leased', ?5, ?6)
             ON CONFLICT (name_key) DO NOTHING",
            params![
                name.key(),
                name.as_str(),
                instance_id,
                sequence,
                now_ms,
                expires_ms
            ],
        )
        .map_err(|e| unavailable("inserting the lease", e))?;
    Ok(inserted == 1)
}

fn select_by_instance(
    tx: &rusqlite::Transaction<'_>,
    instance_id: &str,
) -> Result<Option<Lease>, PoolError> {
    tx.query_row(
        &format!("SELECT {COLUMNS} FROM hostname_leases WHERE instance_id = ?1"),
        params![instance_id],
        read_lease,
    )
    .optional()
    .map_err(|e| unavailable("looking up the instance's lease", e))?
    .transpose()
}

fn select_live_by_instance(
    tx: &rusqlite::Transaction<'_>,
    instance_id: &str,
    now_ms: i64,
) -> Result<Option<Lease>, PoolError> {
    Ok(select_by_instance(tx, instance_id)?.filter(|lease| lease.is_live(from_millis(now_ms))))
}

/// Reads a row; a row that fails validation (hand-edited file) is an error naming it, not a
/// panic.
fn read_lease(row: &Row<'_>) -> rusqlite::Result<Result<Lease, PoolError>> {
    let name: String = row.get(0)?;
    let instance_id: String = row.get(1)?;
    let sequence: i64 = row.get(2)?;
    let state: String = row.get(3)?;
    let allocated_at_ms: i64 = row.get(4)?;
    let expires_at_ms: Option<i64> = row.get(5)?;
    let corrupt = |what: String| PoolError::Unavailable {
        message: format!("sqlite: hostname_leases row for instance {instance_id:?}: {what}"),
    };
    let name = match Hostname::parse(&name) {
        Ok(name) => name,
        Err(error) => return Ok(Err(corrupt(format!("name {name:?}: {error}")))),
    };
    let state = match state.as_str() {
        "leased" => LeaseState::Leased,
        "confirmed" => LeaseState::Confirmed,
        other => return Ok(Err(corrupt(format!("unknown state {other:?}")))),
    };
    Ok(Ok(Lease {
        name,
        instance_id: instance_id.clone(),
        sequence: u64::try_from(sequence).unwrap_or(0),
        state,
        allocated_at: from_millis(allocated_at_ms),
        expires_at: expires_at_ms.map(from_millis),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{self, PoolSpec};

    fn memory_pool(spec: PoolSpec) -> Arc<dyn NamePool> {
        let clock = spec.dyn_clock();
        Arc::new(
            SqliteNamePool::in_memory(spec.policy, clock, spec.options).expect("in-memory pool"),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn in_memory_pool_meets_the_contract() {
        contract::run_all(&|spec: PoolSpec| async move { memory_pool(spec) }).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn file_pool_meets_the_contract() {
        let dir = tempfile::tempdir().expect("tempdir");
        let counter = std::sync::atomic::AtomicUsize::new(0);
        let dir_path = dir.path().to_owned();
        contract::run_all(&move |spec: PoolSpec| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let path = dir_path.join(format!("names-{n}.db"));
            async move {
                let clock = spec.dyn_clock();
                Arc::new(
                    SqliteNamePool::open(&path, spec.policy, clock, spec.options).expect("open"),
                ) as Arc<dyn NamePool>
            }
        })
        .await;
    }
}
