//! The SQLite store: state machines, executions and the decider's input log. The engine is
//! its only user.
//!
//! Durability model (event sourcing, as Temporal does it): the decider is deterministic, so an
//! execution's state is its start (input, time, seed) plus the ordered list of events it was
//! given (with the time of each). Every step is ONE transaction that appends the step's input
//! event (and, when the execution ends, its outcome); on restart the engine replays the log to
//! rebuild the decider state, and the replayed steps' commands that the execution still waits
//! on are its pending work: tasks to dispatch again (handlers are idempotent) and timers to
//! re-arm at their original deadlines. History events are not stored either: replaying
//! rebuilds them exactly (see `Engine::history`). So a step writes one small row, instead of
//! the state's input and output again in history rows and its commands in a pending table.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use asl::interp::Event;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::EngineError;

/// Prefix of an interned definition reference; a JSON definition cannot start with `#`.
const DEFINITION_REF: &str = "#definition:";

/// The layout of the tables below (`PRAGMA user_version`); a store in another format is
/// refused with an explanation instead of being misread.
/// Format 3: executions record their redrives (`redrive_count`, `redrive_nanos`), and the
/// `metadata` table is part of the format.
const STORE_FORMAT: i64 = 3;

pub(crate) struct Store {
    conn: Connection,
    // Execution ARN -> row id, for the input log's integer key (filled as executions are
    // written or looked up; cleared when a group rolls back).
    ids: HashMap<String, i64>,
    // A group commit is open: steps are savepoints inside one outer transaction that
    // `end_group` commits (see `Engine::flush`).
    group: bool,
    /// Where a store in another format was moved when this one was started in its place,
    /// and that format.
    pub(crate) kept_aside: Option<(std::path::PathBuf, i64)>,
}

/// One row of `executions`.
#[derive(Clone, Debug)]
pub(crate) struct ExecutionRow {
    pub arn: String,
    pub name: String,
    pub state_machine: String,
    pub status: String,
    pub input: Value,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub start_nanos: i64,
    pub stop_nanos: Option<i64>,
    pub seed: u64,
    pub redrive_count: u64,
    pub redrive_nanos: Option<i64>,
}

pub(crate) fn to_nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) fn from_nanos(n: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(n.max(0) as u64)
}

fn sql(e: rusqlite::Error) -> EngineError {
    EngineError::store("SQLite", e)
}

fn js(e: serde_json::Error) -> EngineError {
    EngineError::store("corrupt JSON in store", e)
}

impl Store {
    pub(crate) fn open(path: Option<&Path>) -> Result<Store, EngineError> {
        let conn = match path {
            Some(p) => {
                if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        EngineError::store(format!("cannot create {}", dir.display()), e)
                    })?;
                }
                Connection::open(p)
                    .map_err(|e| EngineError::store(format!("cannot open {}", p.display()), e))?
            }
            None => Connection::open_in_memory().map_err(sql)?,
        };
        let where_ = || match path {
            Some(p) => p.display().to_string(),
            None => "the in-memory store".to_string(),
        };
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(sql)?;
        let has_tables: bool = conn
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE name = 'executions')",
                [],
                |r| r.get(0),
            )
            .map_err(sql)?;
        if has_tables && version != STORE_FORMAT {
            let Some(p) = path else {
                return Err(EngineError::store_message(format!(
                    "{} is in store format {version}, expected {STORE_FORMAT}",
                    where_()
                )));
            };
            // Executions in another format cannot be resumed by this version; keep them (as
            // FILE.formatN, next to its WAL) for the fleetprep that wrote them, start afresh.
            drop(conn);
            let aside = |suffix: &str| {
                let mut name = p.as_os_str().to_owned();
                name.push(suffix);
                std::path::PathBuf::from(name)
            };
            let kept = aside(&format!(".format{version}"));
            for extra in ["", "-wal", "-shm"] {
                let from = aside(extra);
                if from.exists() {
                    std::fs::rename(&from, aside(&format!(".format{version}{extra}"))).map_err(
                        |e| {
                            EngineError::store(
                                format!(
                                    "{} is in store format {version} (this fleetprep writes \
                                     format {STORE_FORMAT}) and could not be moved aside (move \
                                     or delete it, or choose another store file)",
                                    from.display()
                                ),
                                e,
                            )
                        },
                    )?;
                }
            }
            tracing::warn!(
                store = %p.display(),
                kept = %kept.display(),
                "the store was written in format {version}; it is kept aside and a new one (format {STORE_FORMAT}) is started"
            );
            let mut fresh = Store::open(path)?;
            fresh.kept_aside = Some((kept, version));
            return Ok(fresh);
        }
        // WAL + synchronous=NORMAL: a committed step survives a process kill (the WAL is
        // written before commit returns); only an OS crash could lose the last steps. A 32 MiB
        // page cache keeps the input log's index hot while 10,000 executions append to it.
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=NORMAL;
             PRAGMA foreign_keys=ON;
             PRAGMA cache_size=-32768;
             PRAGMA wal_autocheckpoint=10000;
             PRAGMA journal_size_limit=67108864;
             CREATE TABLE IF NOT EXISTS state_machines (
                 name TEXT PRIMARY KEY,
                 definition TEXT NOT NULL,
                 created_nanos INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS executions (
                 id INTEGER PRIMARY KEY,
                 arn TEXT NOT NULL UNIQUE,
                 name TEXT NOT NULL,
                 state_machine TEXT NOT NULL,
                 definition TEXT NOT NULL,
                 status TEXT NOT NULL,
                 input TEXT NOT NULL,
                 output TEXT,
                 error TEXT,
                 cause TEXT,
                 start_nanos INTEGER NOT NULL,
                 stop_nanos INTEGER,
                 seed INTEGER NOT NULL,
                 redrive_count INTEGER NOT NULL DEFAULT 0,
                 redrive_nanos INTEGER
             );
             -- Appended in rowid order; the index holds only integers, so it stays small
             -- and cached however many executions interleave their steps.
             CREATE TABLE IF NOT EXISTS inputs (
                 execution INTEGER NOT NULL, -- executions.id
                 seq INTEGER NOT NULL,
                 now_nanos INTEGER NOT NULL,
                 event TEXT NOT NULL
             );
             CREATE UNIQUE INDEX IF NOT EXISTS inputs_by_execution ON inputs(execution, seq);
             CREATE TABLE IF NOT EXISTS definitions (
                 id INTEGER PRIMARY KEY,
                 definition TEXT NOT NULL UNIQUE
             );
             -- What a front end keeps beside the engine's own records (an API server's state
             -- machine types, tags, activities): opaque JSON by kind and key.
             CREATE TABLE IF NOT EXISTS metadata (
                 kind TEXT NOT NULL,
                 key TEXT NOT NULL,
                 value TEXT NOT NULL,
                 PRIMARY KEY (kind, key)
             );",
        )
        .map_err(sql)?;
        conn.execute_batch(&format!("PRAGMA user_version={STORE_FORMAT}"))
            .map_err(sql)?;
        Ok(Store {
            conn,
            group: false,
            ids: HashMap::new(),
            kept_aside: None,
        })
    }

    pub(crate) fn put_state_machine(
        &self,
        name: &str,
        definition: &str,
        now: SystemTime,
    ) -> Result<(), EngineError> {
        self.conn
            .execute(
                "INSERT INTO state_machines(name, definition, created_nanos) VALUES (?1, ?2, ?3)
                 ON CONFLICT(name) DO UPDATE SET definition = excluded.definition",
                params![name, definition, to_nanos(now)],
            )
            .map_err(sql)?;
        Ok(())
    }

    pub(crate) fn delete_state_machine(&self, name: &str) -> Result<bool, EngineError> {
        let n = self
            .conn
            .execute("DELETE FROM state_machines WHERE name = ?1", params![name])
            .map_err(sql)?;
        Ok(n > 0)
    }

    /// Sets (`Some`) or removes (`None`) one metadata entry.
    pub(crate) fn put_metadata(
        &self,
        kind: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<(), EngineError> {
        match value {
            Some(v) => self.conn.execute(
                "INSERT INTO metadata(kind, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT(kind, key) DO UPDATE SET value = excluded.value",
                params![kind, key, v],
            ),
            None => self.conn.execute(
                "DELETE FROM metadata WHERE kind = ?1 AND key = ?2",
                params![kind, key],
            ),
        }
        .map_err(sql)?;
        Ok(())
    }

    /// Every metadata entry of one kind, by key.
    pub(crate) fn metadata(&self, kind: &str) -> Result<Vec<(String, String)>, EngineError> {
        let mut st = self
            .conn
            .prepare("SELECT key, value FROM metadata WHERE kind = ?1 ORDER BY key")
            .map_err(sql)?;
        let rows = st
            .query_map(params![kind], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(sql)
    }

    pub(crate) fn state_machine(&self, name: &str) -> Result<Option<String>, EngineError> {
        self.conn
            .query_row(
                "SELECT definition FROM state_machines WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)
    }

    pub(crate) fn state_machines(&self) -> Result<Vec<String>, EngineError> {
        let mut st = self
            .conn
            .prepare("SELECT name FROM state_machines ORDER BY name")
            .map_err(sql)?;
        let rows = st.query_map([], |r| r.get(0)).map_err(sql)?;
        rows.collect::<Result<Vec<String>, _>>().map_err(sql)
    }

    /// The latest instant any step was recorded at.
    pub(crate) fn latest_time(&self) -> Result<Option<SystemTime>, EngineError> {
        let n: Option<i64> = self
            .conn
            .query_row(
                "SELECT MAX(t) FROM (SELECT MAX(now_nanos) AS t FROM inputs
                   UNION ALL SELECT MAX(start_nanos) FROM executions
                   UNION ALL SELECT MAX(stop_nanos) FROM executions)",
                [],
                |r| r.get(0),
            )
            .map_err(sql)?;
        Ok(n.map(from_nanos))
    }

    /// The definition an execution runs. Executions store a reference
    /// (`#definition:<id>`, see [`Store::definition_ref`]) to a shared row instead of their own
    /// copy: 10,000 executions of one state machine would otherwise write 10,000 copies of a
    /// 30 KB definition. Rows written before that keep the full text, which is read as is.
    pub(crate) fn definition_of(&self, arn: &str) -> Result<String, EngineError> {
        let text: String = self
            .conn
            .query_row(
                "SELECT definition FROM executions WHERE arn = ?1",
                params![arn],
                |r| r.get(0),
            )
            .map_err(sql)?;
        match text.strip_prefix(DEFINITION_REF) {
            Some(id) => {
                let id: i64 = id.parse().map_err(|_| {
                    EngineError::store_message(format!(
                        "execution {arn}: corrupt definition reference {text:?}"
                    ))
                })?;
                self.conn
                    .query_row(
                        "SELECT definition FROM definitions WHERE id = ?1",
                        params![id],
                        |r| r.get(0),
                    )
                    .map_err(sql)
            }
            None => Ok(text),
        }
    }

    /// The reference executions store for `definition` (interned in `definitions`).
    pub(crate) fn definition_ref(&self, definition: &str) -> Result<String, EngineError> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO definitions(definition) VALUES (?1)",
                params![definition],
            )
            .map_err(sql)?;
        let id: i64 = self
            .conn
            .query_row(
                "SELECT id FROM definitions WHERE definition = ?1",
                params![definition],
                |r| r.get(0),
            )
            .map_err(sql)?;
        Ok(format!("{DEFINITION_REF}{id}"))
    }

    fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ExecutionRow> {
        let parse = |s: Option<String>| s.and_then(|t| serde_json::from_str(&t).ok());
        Ok(ExecutionRow {
            arn: r.get(0)?,
            name: r.get(1)?,
            state_machine: r.get(2)?,
            status: r.get(3)?,
            input: parse(r.get(4)?).unwrap_or(Value::Null),
            output: parse(r.get(5)?),
            error: r.get(6)?,
            cause: r.get(7)?,
            start_nanos: r.get(8)?,
            stop_nanos: r.get(9)?,
            seed: r.get::<_, i64>(10)? as u64,
            redrive_count: r.get::<_, i64>(11)? as u64,
            redrive_nanos: r.get(12)?,
        })
    }

    const COLS: &'static str = "arn, name, state_machine, status, input, output, error, cause, start_nanos, stop_nanos, seed, redrive_count, redrive_nanos";

    pub(crate) fn execution_exists(&self, arn: &str) -> Result<bool, EngineError> {
        Ok(!self.existing_executions(&[arn.to_owned()])?.is_empty())
    }

    /// Which of `arns` are stored executions.
    pub(crate) fn existing_executions(
        &self,
        arns: &[String],
    ) -> Result<std::collections::HashSet<String>, EngineError> {
        let mut exists = self
            .conn
            .prepare_cached("SELECT 1 FROM executions WHERE arn = ?1")
            .map_err(sql)?;
        let mut found = std::collections::HashSet::new();
        for arn in arns {
            if exists.exists(params![arn]).map_err(sql)? {
                found.insert(arn.clone());
            }
        }
        Ok(found)
    }

    pub(crate) fn execution(&self, arn: &str) -> Result<Option<ExecutionRow>, EngineError> {
        self.conn
            .query_row(
                &format!("SELECT {} FROM executions WHERE arn = ?1", Self::COLS),
                params![arn],
                Self::row,
            )
            .optional()
            .map_err(sql)
    }

    pub(crate) fn executions(
        &self,
        status: Option<&str>,
    ) -> Result<Vec<ExecutionRow>, EngineError> {
        let q = format!(
            "SELECT {} FROM executions WHERE (?1 IS NULL OR status = ?1) ORDER BY start_nanos, arn",
            Self::COLS
        );
        let mut st = self.conn.prepare(&q).map_err(sql)?;
        let rows = st.query_map(params![status], Self::row).map_err(sql)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(sql)
    }

    pub(crate) fn inputs(&self, arn: &str) -> Result<Vec<(SystemTime, Event)>, EngineError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT now_nanos, event FROM inputs
                 WHERE execution = (SELECT id FROM executions WHERE arn = ?1) ORDER BY seq",
            )
            .map_err(sql)?;
        let rows = st
            .query_map(params![arn], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(sql)?;
        let mut out = Vec::new();
        for row in rows {
            let (n, text) = row.map_err(sql)?;
            out.push((from_nanos(n), serde_json::from_str(&text).map_err(js)?));
        }
        Ok(out)
    }

    /// Persists one decider step atomically: its own transaction, or part of the open group
    /// commit. A step that fails to write inside a group rolls the whole group back (a
    /// savepoint per step would cost a sub-journal write per page): none of the group's steps
    /// had visible effects yet, and the error stops the driver. `durable` commits an open
    /// group right after the step (for callers that promise the step is on disk on return).
    pub(crate) fn commit_step(
        &mut self,
        step: &StepRecord,
        durable: bool,
    ) -> Result<(), EngineError> {
        if self.group {
            if let Err(e) = write_step(&self.conn, &mut self.ids, step) {
                self.group = false;
                self.ids.clear();
                let _ = self.conn.execute_batch("ROLLBACK");
                return Err(e);
            }
            if durable {
                self.conn.execute_batch("COMMIT; BEGIN").map_err(sql)?;
            }
            Ok(())
        } else {
            let tx = self.conn.transaction().map_err(sql)?;
            if let Err(e) = write_step(&tx, &mut self.ids, step) {
                self.ids.clear();
                return Err(e);
            }
            tx.commit().map_err(sql)
        }
    }

    /// Opens a group commit (no-op when one is open).
    pub(crate) fn begin_group(&mut self) -> Result<(), EngineError> {
        if !self.group {
            self.conn.execute_batch("BEGIN").map_err(sql)?;
            self.group = true;
        }
        Ok(())
    }

    /// Commits the open group (no-op when none is open).
    pub(crate) fn end_group(&mut self) -> Result<(), EngineError> {
        if self.group {
            self.group = false;
            self.conn.execute_batch("COMMIT").map_err(sql)?;
        }
        Ok(())
    }
}

pub(crate) struct NewExecution {
    pub name: String,
    pub state_machine: String,
    /// The stored definition's reference (see [`Store::definition_ref`]).
    pub definition: std::sync::Arc<str>,
    /// The input, as JSON text.
    pub input: String,
    pub seed: u64,
}

/// How an execution ended (from the decider's `Complete` command).
pub(crate) struct Outcome {
    pub status: asl::interp::Status,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
}

/// One decider step, owned, so it can be handed to the store thread.
pub(crate) struct StepRecord {
    pub arn: String,
    pub now: SystemTime,
    pub new_execution: Option<NewExecution>,
    /// The step's input event (sequence number, JSON text).
    pub input: Option<(i64, String)>,
    /// The step redrives the ended execution: it runs again.
    pub redriven: bool,
    pub outcome: Option<Outcome>,
}

impl Outcome {
    /// The outcome among a step's commands, if the step ended the execution.
    pub(crate) fn of(commands: &[asl::interp::Command]) -> Option<Outcome> {
        commands.iter().find_map(|c| match c {
            asl::interp::Command::Complete {
                status,
                output,
                error,
                cause,
            } => Some(Outcome {
                status: *status,
                output: output.clone(),
                error: error.clone(),
                cause: cause.clone(),
            }),
            _ => None,
        })
    }
}

/// Writes one step's rows with cached statements (the caller owns the transaction).
fn write_step(
    tx: &Connection,
    ids: &mut HashMap<String, i64>,
    step: &StepRecord,
) -> Result<(), EngineError> {
    {
        if let Some(new) = &step.new_execution {
            tx.prepare_cached("INSERT INTO executions(arn, name, state_machine, definition, status, input, start_nanos, seed)
                     VALUES (?1, ?2, ?3, ?4, 'RUNNING', ?5, ?6, ?7)").map_err(sql)?.execute(params![
                        step.arn,
                        new.name,
                        new.state_machine,
                        new.definition,
                        new.input,
                        to_nanos(step.now),
                        new.seed as i64
                    ]).map_err(sql)?;
            ids.insert(step.arn.clone(), tx.last_insert_rowid());
        }
        if let Some((seq, ev)) = &step.input {
            let id = match ids.get(&step.arn) {
                Some(id) => *id,
                None => {
                    let id: i64 = tx
                        .prepare_cached("SELECT id FROM executions WHERE arn = ?1")
                        .map_err(sql)?
                        .query_row(params![step.arn], |r| r.get(0))
                        .map_err(sql)?;
                    ids.insert(step.arn.clone(), id);
                    id
                }
            };
            tx.prepare_cached(
                "INSERT INTO inputs(execution, seq, now_nanos, event) VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(sql)?
            .execute(params![id, seq, to_nanos(step.now), ev])
            .map_err(sql)?;
        }
        if step.redriven {
            tx.prepare_cached("UPDATE executions SET status = 'RUNNING', output = NULL, error = NULL, cause = NULL, stop_nanos = NULL, redrive_count = redrive_count + 1, redrive_nanos = ?2 WHERE arn = ?1").map_err(sql)?.execute(params![step.arn, to_nanos(step.now)]).map_err(sql)?;
        }
        // Pending work is not stored: replaying the log rebuilds it (`engine::replay`).
        if let Some(end) = &step.outcome {
            let out = match &end.output {
                Some(v) => Some(serde_json::to_string(v).map_err(js)?),
                None => None,
            };
            tx.prepare_cached("UPDATE executions SET status = ?2, output = ?3, error = ?4, cause = ?5, stop_nanos = ?6 WHERE arn = ?1").map_err(sql)?.execute(params![step.arn, end.status.as_str(), out, end.error, end.cause, to_nanos(step.now)]).map_err(sql)?;
        }
    }
    Ok(())
}
