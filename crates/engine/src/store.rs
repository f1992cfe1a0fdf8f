//! The SQLite store: state machines, executions, the decider's input log, history and
//! pending commands. The engine is its only user.
//!
//! Durability model (event sourcing, as Temporal does it): the decider is deterministic, so an
//! execution's state is its start (input, time, seed) plus the ordered list of events it was
//! given (with the time of each). Every step is ONE transaction that appends the step's input
//! event, the history events it produced, and the pending-command changes; on restart the
//! engine replays the log to rebuild the decider state, re-dispatches pending tasks (handlers
//! are idempotent) and re-arms pending timers from their persisted deadlines.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use asl::history::HistoryEvent;
use asl::interp::Event;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::EngineError;

/// Prefix of an interned definition reference; a JSON definition cannot start with `#`.
const DEFINITION_REF: &str = "#definition:";

pub(crate) struct Store {
    conn: Connection,
    // A group commit is open: steps are savepoints inside one outer transaction that
    // `end_group` commits (see `Engine::flush`).
    group: bool,
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
}

/// A pending command row: a task to (re-)dispatch or a timer to (re-)arm.
#[derive(Clone, Debug)]
pub(crate) enum Pending {
    Task(asl::interp::Command),
    Timer { token: u64, fire_at: SystemTime },
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
    EngineError::Store(e.to_string())
}

fn js(e: serde_json::Error) -> EngineError {
    EngineError::Store(format!("corrupt JSON in store: {e}"))
}

impl Store {
    pub(crate) fn open(path: Option<&Path>) -> Result<Store, EngineError> {
        let conn = match path {
            Some(p) => {
                if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        EngineError::Store(format!("cannot create {}: {e}", dir.display()))
                    })?;
                }
                Connection::open(p)
                    .map_err(|e| EngineError::Store(format!("cannot open {}: {e}", p.display())))?
            }
            None => Connection::open_in_memory().map_err(sql)?,
        };
        // WAL + synchronous=NORMAL: a committed step survives a process kill (the WAL is
        // written before commit returns); only an OS crash could lose the last steps.
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=NORMAL;
             PRAGMA foreign_keys=ON;
             PRAGMA wal_autocheckpoint=10000;
             PRAGMA journal_size_limit=67108864;
             CREATE TABLE IF NOT EXISTS state_machines (
                 name TEXT PRIMARY KEY,
                 definition TEXT NOT NULL,
                 created_nanos INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS executions (
                 arn TEXT PRIMARY KEY,
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
                 seed INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS inputs (
                 execution TEXT NOT NULL,
                 seq INTEGER NOT NULL,
                 now_nanos INTEGER NOT NULL,
                 event TEXT NOT NULL,
                 PRIMARY KEY (execution, seq)
             );
             CREATE TABLE IF NOT EXISTS history (
                 execution TEXT NOT NULL,
                 id INTEGER NOT NULL,
                 event TEXT NOT NULL,
                 PRIMARY KEY (execution, id)
             );
             CREATE TABLE IF NOT EXISTS definitions (
                 id INTEGER PRIMARY KEY,
                 definition TEXT NOT NULL UNIQUE
             );
             CREATE TABLE IF NOT EXISTS pending (
                 execution TEXT NOT NULL,
                 token INTEGER NOT NULL,
                 kind TEXT NOT NULL,
                 fire_nanos INTEGER,
                 command TEXT,
                 PRIMARY KEY (execution, token)
             );",
        )
        .map_err(sql)?;
        Ok(Store { conn, group: false })
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
                    EngineError::Store(format!(
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
        })
    }

    const COLS: &'static str = "arn, name, state_machine, status, input, output, error, cause, start_nanos, stop_nanos, seed";

    pub(crate) fn execution_exists(&self, arn: &str) -> Result<bool, EngineError> {
        self.conn
            .prepare_cached("SELECT 1 FROM executions WHERE arn = ?1")
            .map_err(sql)?
            .exists(params![arn])
            .map_err(sql)
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
            .prepare("SELECT now_nanos, event FROM inputs WHERE execution = ?1 ORDER BY seq")
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

    pub(crate) fn history(&self, arn: &str) -> Result<Vec<HistoryEvent>, EngineError> {
        let mut st = self
            .conn
            .prepare("SELECT event FROM history WHERE execution = ?1 ORDER BY id")
            .map_err(sql)?;
        let rows = st
            .query_map(params![arn], |r| r.get::<_, String>(0))
            .map_err(sql)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(serde_json::from_str(&row.map_err(sql)?).map_err(js)?);
        }
        Ok(out)
    }

    pub(crate) fn pending(&self, arn: &str) -> Result<Vec<Pending>, EngineError> {
        let mut st = self
            .conn
            .prepare("SELECT token, kind, fire_nanos, command FROM pending WHERE execution = ?1 ORDER BY token")
            .map_err(sql)?;
        let rows = st
            .query_map(params![arn], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            })
            .map_err(sql)?;
        let mut out = Vec::new();
        for row in rows {
            let (token, kind, fire, cmd) = row.map_err(sql)?;
            if kind == "timer" {
                out.push(Pending::Timer {
                    token: token as u64,
                    fire_at: from_nanos(fire.unwrap_or(0)),
                });
            } else if let Some(c) = cmd {
                out.push(Pending::Task(serde_json::from_str(&c).map_err(js)?));
            }
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
        step: &StepRecord<'_>,
        durable: bool,
    ) -> Result<(), EngineError> {
        if self.group {
            if let Err(e) = write_step(&self.conn, step) {
                self.group = false;
                let _ = self.conn.execute_batch("ROLLBACK");
                return Err(e);
            }
            if durable {
                self.conn.execute_batch("COMMIT; BEGIN").map_err(sql)?;
            }
            Ok(())
        } else {
            let tx = self.conn.transaction().map_err(sql)?;
            write_step(&tx, step)?;
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

    /// Forgets a pending row that no longer matters (a stale timer or task token).
    pub(crate) fn drop_pending(&self, arn: &str, token: u64) -> Result<(), EngineError> {
        self.conn
            .execute(
                "DELETE FROM pending WHERE execution = ?1 AND token = ?2",
                params![arn, token as i64],
            )
            .map_err(sql)?;
        Ok(())
    }
}

pub(crate) struct NewExecution<'a> {
    pub name: &'a str,
    pub state_machine: &'a str,
    pub definition: &'a str,
    /// The input, as JSON text.
    pub input: &'a str,
    pub seed: u64,
}

pub(crate) struct StepRecord<'a> {
    pub arn: &'a str,
    pub now: SystemTime,
    pub new_execution: Option<NewExecution<'a>>,
    /// The step's input event (sequence number, JSON text).
    pub input: Option<(i64, &'a str)>,
    pub consumed: Option<u64>,
    pub history: &'a [HistoryEvent],
    pub commands: &'a [asl::interp::Command],
}

/// Writes one step's rows with cached statements (the caller owns the transaction).
fn write_step(tx: &Connection, step: &StepRecord<'_>) -> Result<(), EngineError> {
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
        }
        if let Some((seq, ev)) = step.input {
            tx.prepare_cached(
                "INSERT INTO inputs(execution, seq, now_nanos, event) VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(sql)?
            .execute(params![step.arn, seq, to_nanos(step.now), ev])
            .map_err(sql)?;
        }
        if let Some(t) = step.consumed {
            tx.prepare_cached("DELETE FROM pending WHERE execution = ?1 AND token = ?2")
                .map_err(sql)?
                .execute(params![step.arn, t as i64])
                .map_err(sql)?;
        }
        let mut ins = tx
            .prepare_cached("INSERT INTO history(execution, id, event) VALUES (?1, ?2, ?3)")
            .map_err(sql)?;
        for e in step.history {
            ins.execute(params![
                step.arn,
                e.id,
                serde_json::to_string(e).map_err(js)?
            ])
            .map_err(sql)?;
        }
        for c in step.commands {
            use asl::interp::Command as C;
            match c {
                C::ScheduleTask { token, .. } => {
                    tx.prepare_cached("INSERT OR REPLACE INTO pending(execution, token, kind, command) VALUES (?1, ?2, 'task', ?3)").map_err(sql)?.execute(params![step.arn, *token as i64, serde_json::to_string(c).map_err(js)?]).map_err(sql)?;
                }
                C::StartTimer { token, fire_at } => {
                    tx.prepare_cached("INSERT OR REPLACE INTO pending(execution, token, kind, fire_nanos) VALUES (?1, ?2, 'timer', ?3)").map_err(sql)?.execute(params![step.arn, *token as i64, to_nanos(*fire_at)]).map_err(sql)?;
                }
                C::CancelTimer { token } => {
                    tx.prepare_cached("DELETE FROM pending WHERE execution = ?1 AND token = ?2")
                        .map_err(sql)?
                        .execute(params![step.arn, *token as i64])
                        .map_err(sql)?;
                }
                C::Complete {
                    status,
                    output,
                    error,
                    cause,
                } => {
                    let out = match output {
                        Some(v) => Some(serde_json::to_string(v).map_err(js)?),
                        None => None,
                    };
                    tx.prepare_cached("UPDATE executions SET status = ?2, output = ?3, error = ?4, cause = ?5, stop_nanos = ?6 WHERE arn = ?1").map_err(sql)?.execute(params![step.arn, status.as_str(), out, error, cause, to_nanos(step.now)]).map_err(sql)?;
                    tx.prepare_cached("DELETE FROM pending WHERE execution = ?1")
                        .map_err(sql)?
                        .execute(params![step.arn])
                        .map_err(sql)?;
                }
            }
        }
    }
    Ok(())
}
