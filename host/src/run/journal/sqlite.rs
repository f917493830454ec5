//! The SQLite journal, the embedded default: one file in the operator's
//! data directory (WAL, synchronous writes), one lock for every cluster.
//! Schema migrations run when it is opened.

use super::{
    JournalError, PhaseWhen, RunEnd, RunFilter, RunRecord, StepRecord, StepState, Takeover,
    mark_abandoned, now,
};
use crate::process::{alive, this_host};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    plugin TEXT NOT NULL, version TEXT NOT NULL, digest TEXT NOT NULL,
    command TEXT NOT NULL, invocation TEXT NOT NULL, dry_run INTEGER NOT NULL,
    started_at INTEGER NOT NULL, finished_at INTEGER, status TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS steps (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    phase_index INTEGER NOT NULL, step_index INTEGER NOT NULL,
    phase TEXT NOT NULL, always INTEGER NOT NULL,
    node TEXT NOT NULL, name TEXT NOT NULL, payload TEXT NOT NULL,
    state TEXT NOT NULL, message TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0, updated_at INTEGER NOT NULL,
    PRIMARY KEY (run_id, phase_index, step_index)
);
CREATE TABLE IF NOT EXISTS cluster_lock (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    run_id INTEGER NOT NULL, pid INTEGER NOT NULL,
    acquired_at INTEGER NOT NULL, expires_at INTEGER NOT NULL
);
";

/// Schema changes after the first, in order; `PRAGMA user_version` counts
/// those applied. A journal newer than this host knows is refused.
const MIGRATIONS: &[&str] = &[
    // 1: phases that run only after a failure; step outcome data (WIT 0.1.1).
    "ALTER TABLE steps ADD COLUMN phase_when TEXT NOT NULL DEFAULT '';
     ALTER TABLE steps ADD COLUMN data TEXT;",
    // 2: which process on which host runs a run and holds the lock (so a
    // dead holder is seen at once), and why a run ended as it did.
    "ALTER TABLE runs ADD COLUMN pid INTEGER;
     ALTER TABLE runs ADD COLUMN host TEXT;
     ALTER TABLE runs ADD COLUMN reason TEXT;
     ALTER TABLE runs ADD COLUMN mutating INTEGER;
     ALTER TABLE cluster_lock ADD COLUMN host TEXT NOT NULL DEFAULT '';",
];

/// Apply the migrations `conn` lacks, each in its own transaction.
fn migrate(conn: &Connection, path: &Path) -> Result<(), JournalError> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if found > known {
        return Err(JournalError::TooNew {
            path: path.display().to_string(),
            found,
            known,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        // Another process may be migrating the same journal: take the write
        // lock, then look again.
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let applied = (|| {
            let now: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
            if now <= i as i64 {
                conn.execute_batch(&format!("{sql} PRAGMA user_version = {};", i + 1))?;
            }
            conn.execute_batch("COMMIT")
        })();
        if let Err(e) = applied {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e.into());
        }
    }
    Ok(())
}

/// A SQLite journal.
#[derive(Clone)]
pub struct Sqlite {
    conn: Arc<Mutex<Connection>>,
}

impl Sqlite {
    /// Open (creating) the SQLite journal at `path`.
    pub fn open(path: &Path) -> Result<Sqlite, JournalError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| JournalError::Dir(dir.display().to_string(), e))?;
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        // Switching a new database to WAL needs it to itself, and SQLite
        // answers `busy` at once rather than waiting when another process
        // is doing the same: retry that for a while.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let set_up = (|| -> Result<(), JournalError> {
                conn.pragma_update(None, "journal_mode", "WAL")?;
                conn.pragma_update(None, "synchronous", "FULL")?;
                conn.execute_batch(SCHEMA)?;
                migrate(&conn, path)
            })();
            match set_up {
                Err(JournalError::Sqlite(rusqlite::Error::SqliteFailure(e, _)))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => break other?,
            }
        }
        Ok(Sqlite {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// The connection, for one statement or transaction at a time.
    pub(super) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record a new run; returns its id.
    #[allow(clippy::too_many_arguments)] // one column each
    pub fn begin_run(
        &self,
        plugin: &str,
        version: &str,
        digest: &str,
        command: &str,
        invocation: &str,
        dry_run: bool,
        mutating: bool,
    ) -> Result<i64, JournalError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO runs (plugin, version, digest, command, invocation, dry_run, started_at, status, pid, host, mutating)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'running', ?8, ?9, ?10)",
            params![plugin, version, digest, command, invocation, dry_run, now(), std::process::id(), this_host(), mutating],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// Record the plan's steps, all pending.
    pub fn record_plan(&self, run: i64, steps: &[StepRecord]) -> Result<(), JournalError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for s in steps {
            tx.execute(
                "INSERT INTO steps (run_id, phase_index, step_index, phase, always, phase_when, node, name, payload, state, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'pending', ?10)",
                params![run, s.phase_index as i64, s.step_index as i64, s.phase, s.when == PhaseWhen::Always, s.when.as_str(), s.node, s.name, s.payload, now()],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Mark a step as started (before it runs).
    pub fn step_started(&self, run: i64, phase: usize, step: usize) -> Result<(), JournalError> {
        self.conn().execute(
            "UPDATE steps SET state = 'running', attempts = attempts + 1, updated_at = ?4
             WHERE run_id = ?1 AND phase_index = ?2 AND step_index = ?3",
            params![run, phase as i64, step as i64, now()],
        )?;
        Ok(())
    }

    /// Record how a step ended (after it ran).
    pub fn step_finished(
        &self,
        run: i64,
        phase: usize,
        step: usize,
        state: StepState,
        message: &str,
        data: Option<&str>,
    ) -> Result<(), JournalError> {
        self.conn().execute(
            "UPDATE steps SET state = ?4, message = ?5, data = ?6, updated_at = ?7
             WHERE run_id = ?1 AND phase_index = ?2 AND step_index = ?3",
            params![
                run,
                phase as i64,
                step as i64,
                state.as_str(),
                message,
                data,
                now()
            ],
        )?;
        Ok(())
    }

    /// Record how the run ended, and why when it did not succeed.
    pub fn finish_run(
        &self,
        run: i64,
        end: RunEnd,
        reason: Option<&str>,
    ) -> Result<(), JournalError> {
        self.conn().execute(
            "UPDATE runs SET status = ?2, finished_at = ?3, reason = ?4 WHERE id = ?1",
            params![run, end.as_str(), now(), reason],
        )?;
        Ok(())
    }

    /// Forget a run that never got a plan (its plan refused the
    /// operator's arguments).
    pub fn discard_run(&self, run: i64) -> Result<(), JournalError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let steps: i64 = tx.query_row(
            "SELECT count(*) FROM steps WHERE run_id = ?1",
            params![run],
            |r| r.get(0),
        )?;
        if steps == 0 {
            tx.execute("DELETE FROM runs WHERE id = ?1", params![run])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Mark a run as running again, in this process (for `resume`).
    pub fn reopen_run(&self, run: i64) -> Result<(), JournalError> {
        self.conn().execute(
            "UPDATE runs SET status = 'running', finished_at = NULL, reason = NULL, pid = ?2,
                             host = ?3
             WHERE id = ?1",
            params![run, std::process::id(), this_host()],
        )?;
        Ok(())
    }

    /// The most recent runs that pass `filter`, newest first (steps not
    /// loaded).
    pub fn list(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, JournalError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, plugin, version, digest, command, invocation, dry_run, started_at, finished_at, status,
                    reason, pid, host, mutating
             FROM runs
             WHERE (?1 OR (dry_run = 0 AND coalesce(mutating, 1) = 1))
               AND (?2 IS NULL OR plugin = ?2)
               AND started_at >= ?3
             ORDER BY id DESC",
        )?;
        let rows = stmt.query_map(
            params![filter.all, filter.plugin, filter.since.unwrap_or(i64::MIN)],
            run_from_row,
        )?;
        let mut runs = Vec::new();
        for run in rows {
            let run = run?;
            // `abandoned` is worked out per row, so the status is matched here.
            if filter.status.as_ref().is_none_or(|s| *s == run.status) {
                runs.push(run);
                if runs.len() >= filter.limit {
                    break;
                }
            }
        }
        Ok(runs)
    }

    /// One run with its steps.
    pub fn get(&self, id: i64) -> Result<RunRecord, JournalError> {
        let conn = self.conn();
        let mut run = conn
            .query_row(
                "SELECT id, plugin, version, digest, command, invocation, dry_run, started_at, finished_at, status,
                        reason, pid, host, mutating
                 FROM runs WHERE id = ?1",
                params![id],
                run_from_row,
            )
            .optional()?
            .ok_or(JournalError::NoSuchRun(id))?;
        let mut stmt = conn.prepare(
            "SELECT phase_index, step_index, phase, always, node, name, payload, state, message, attempts,
                    phase_when, data
             FROM steps WHERE run_id = ?1 ORDER BY phase_index, step_index",
        )?;
        run.steps = stmt
            .query_map(params![id], |r| {
                Ok(StepRecord {
                    phase_index: r.get::<_, i64>(0)? as usize,
                    step_index: r.get::<_, i64>(1)? as usize,
                    phase: r.get(2)?,
                    when: PhaseWhen::parse(&r.get::<_, String>(10)?, r.get(3)?),
                    node: r.get(4)?,
                    name: r.get(5)?,
                    payload: r.get(6)?,
                    state: StepState::parse(&r.get::<_, String>(7)?),
                    message: r.get(8)?,
                    attempts: r.get(9)?,
                    data: r.get(11)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(run)
    }

    /// Take the lock of `cluster` for `run`, or say who holds it. An
    /// expired lock is taken over; `force` takes a live one. SQLite keeps
    /// one lock for every cluster (one operator's machine); PostgreSQL one
    /// per cluster name.
    pub fn lock(
        &self,
        run: i64,
        _cluster: &str,
        ttl: Duration,
        force: bool,
    ) -> Result<Option<Takeover>, JournalError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let held: Option<(i64, u32, i64, i64, String)> = tx
            .query_row(
                "SELECT run_id, pid, acquired_at, expires_at, host FROM cluster_lock WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        let now = now();
        let here = this_host();
        let mut taken_from = None;
        if let Some((holder, pid, acquired, expires, host)) = held {
            // A holder on this machine whose process is gone will never
            // renew or release: no need to wait out its lease.
            let gone = host == here && !alive(pid);
            if expires > now && !force && !gone {
                let (plugin, command) = tx
                    .query_row(
                        "SELECT plugin, command FROM runs WHERE id = ?1",
                        params![holder],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?
                    .unwrap_or_default();
                return Err(JournalError::Locked {
                    run: holder,
                    plugin,
                    command,
                    holder: format!("pid {pid} on {host}"),
                    since: crate::time::format_time(acquired.max(0) as u64),
                    expires_in: (expires - now) as u64,
                });
            }
            taken_from = Some(if expires <= now {
                Takeover::Expired(holder)
            } else if gone {
                Takeover::HolderGone { run: holder, pid }
            } else {
                Takeover::Forced(holder)
            });
        }
        tx.execute(
            "INSERT OR REPLACE INTO cluster_lock (id, run_id, pid, acquired_at, expires_at, host)
             VALUES (1, ?1, ?2, ?3, ?4, ?5)",
            params![
                run,
                std::process::id(),
                now,
                now + ttl.as_secs().max(1) as i64,
                here
            ],
        )?;
        tx.commit()?;
        Ok(taken_from)
    }

    /// Extend the lock held by `run`; false when it is no longer ours.
    pub fn renew(&self, run: i64, _cluster: &str, ttl: Duration) -> Result<bool, JournalError> {
        let n = self.conn().execute(
            "UPDATE cluster_lock SET expires_at = ?2 WHERE id = 1 AND run_id = ?1",
            params![run, now() + ttl.as_secs().max(1) as i64],
        )?;
        Ok(n == 1)
    }

    /// Release the lock if `run` holds it.
    pub fn unlock(&self, run: i64, _cluster: &str) -> Result<(), JournalError> {
        self.conn().execute(
            "DELETE FROM cluster_lock WHERE id = 1 AND run_id = ?1",
            params![run],
        )?;
        Ok(())
    }
}

fn run_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRecord> {
    let mut run = run_columns(r)?;
    mark_abandoned(&mut run);
    Ok(run)
}

fn run_columns(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRecord> {
    Ok(RunRecord {
        id: r.get(0)?,
        plugin: r.get(1)?,
        version: r.get(2)?,
        digest: r.get(3)?,
        command: r.get(4)?,
        invocation: r.get(5)?,
        dry_run: r.get(6)?,
        started_at: r.get(7)?,
        finished_at: r.get(8)?,
        status: r.get(9)?,
        reason: r.get(10)?,
        pid: r.get(11)?,
        host: r.get(12)?,
        mutating: r.get::<_, Option<bool>>(13)?.unwrap_or(true),
        steps: Vec::new(),
    })
}
