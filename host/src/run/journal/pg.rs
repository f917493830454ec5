//! The journal in PostgreSQL, shared by a team: every operator's runs in
//! one database, and one cluster lock per cluster name.
//!
//! The lock is a row per cluster with a lease (`expires_at`), extended by
//! its holder's heartbeat and judged by the database's own clock, so
//! operators' machines need not agree on the time. A lease rather than an
//! advisory lock: an advisory lock belongs to a database session, and a
//! holder cut off from the database keeps believing it holds the lock
//! while the server, once it drops the session, hands it to another. With
//! a lease the holder knows when its claim ends (the lease it last wrote)
//! and stops starting steps when it cannot renew in time (see
//! `cli::run::execute`); a crashed holder's lease simply runs out.
//!
//! The blocking `postgres` client lives on a thread of its own (it runs
//! its own small tokio runtime, which cannot nest inside the run's);
//! callers hand it jobs and wait for the answer, as they wait for SQLite's
//! disk. A lost connection is opened again by the next job.

use super::{
    JournalError, PhaseWhen, RunEnd, RunFilter, RunRecord, StepRecord, StepState, Takeover, now,
};
use crate::process::{alive, this_host};
use postgres::{Client, NoTls, Row};
use std::sync::mpsc;
use std::time::Duration;

/// Schema changes in order; `stackhost_schema.version` counts those
/// applied. A database at a newer version is refused.
const MIGRATIONS: &[&str] = &[
    // 1: runs, steps, and a lock per cluster.
    "CREATE TABLE runs (
        id BIGSERIAL PRIMARY KEY,
        plugin TEXT NOT NULL, version TEXT NOT NULL, digest TEXT NOT NULL,
        command TEXT NOT NULL, invocation TEXT NOT NULL, dry_run BOOLEAN NOT NULL,
        started_at BIGINT NOT NULL, finished_at BIGINT, status TEXT NOT NULL,
        reason TEXT, pid BIGINT, host TEXT, username TEXT, mutating BOOLEAN NOT NULL
     );
     CREATE TABLE steps (
        run_id BIGINT NOT NULL REFERENCES runs(id),
        phase_index INTEGER NOT NULL, step_index INTEGER NOT NULL,
        phase TEXT NOT NULL, phase_when TEXT NOT NULL,
        node TEXT NOT NULL, name TEXT NOT NULL, payload TEXT NOT NULL,
        state TEXT NOT NULL, message TEXT NOT NULL DEFAULT '', data TEXT,
        attempts INTEGER NOT NULL DEFAULT 0, updated_at BIGINT NOT NULL,
        PRIMARY KEY (run_id, phase_index, step_index)
     );
     CREATE TABLE cluster_locks (
        cluster TEXT PRIMARY KEY,
        run_id BIGINT NOT NULL, pid BIGINT NOT NULL, host TEXT NOT NULL,
        username TEXT NOT NULL,
        acquired_at TIMESTAMPTZ NOT NULL, expires_at TIMESTAMPTZ NOT NULL
     );",
];

/// A key for `pg_advisory_xact_lock` while migrating, so two stackhosts
/// opening a new database do not both create the tables.
const MIGRATION_LOCK: i64 = 0x5354_4b48_4a52_4e4c; // "STKHJRNL"

type Job = Box<dyn FnOnce(&mut Conn) + Send>;

/// The journal's PostgreSQL connection, on its own thread.
#[derive(Clone)]
pub(super) struct Pg {
    jobs: mpsc::Sender<Job>,
    /// The URL with any password hidden, for messages.
    shown: String,
}

/// The connection as the thread holds it.
pub(super) struct Conn {
    url: String,
    shown: String,
    client: Option<Client>,
}

impl Conn {
    /// The client, connecting (again) if there is none or it was closed.
    fn client(&mut self) -> Result<&mut Client, JournalError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            let mut config: postgres::Config = self.url.parse().map_err(|e| self.error(e))?;
            config.connect_timeout(Duration::from_secs(10));
            config.application_name("stackhost");
            self.client = Some(config.connect(NoTls).map_err(|e| self.error(e))?);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    fn error(&self, e: postgres::Error) -> JournalError {
        JournalError::Postgres(self.shown.clone(), describe(&e))
    }
}

/// What went wrong, as the server or the connection says it (the
/// client's own text is only "db error" for a server's refusal).
fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// `url` with its password, if any, replaced by `***`.
fn hide_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // `host=db password=x`: hide the value of `password`.
        return url
            .split(' ')
            .map(|w| match w.split_once('=') {
                Some(("password", _)) => "password=***".to_string(),
                _ => w.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" ");
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some(parts) => parts,
        None => return url.to_string(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

impl Pg {
    /// Connect to `url`, migrate the schema, and start the thread.
    pub(super) fn open(url: &str) -> Result<Pg, JournalError> {
        let shown = hide_password(url);
        let (tx, rx) = mpsc::channel::<Job>();
        let mut conn = Conn {
            url: url.to_string(),
            shown: shown.clone(),
            client: None,
        };
        std::thread::Builder::new()
            .name("journal-pg".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job(&mut conn);
                }
            })
            .map_err(|e| JournalError::Postgres(shown.clone(), e.to_string()))?;
        let pg = Pg { jobs: tx, shown };
        pg.call(migrate)?;
        Ok(pg)
    }

    /// Run `f` on the connection's thread and wait for its answer. A
    /// failure that left the connection closed is retried once on a new
    /// connection, for calls that read or that write all-or-nothing.
    fn call<T: Send + 'static>(
        &self,
        f: impl Fn(&mut Conn) -> Result<T, JournalError> + Send + 'static,
    ) -> Result<T, JournalError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |conn: &mut Conn| {
            let mut answer = f(conn);
            if answer.is_err() && conn.client.as_ref().is_some_and(Client::is_closed) {
                conn.client = None;
                answer = f(conn);
            }
            let _ = tx.send(answer);
        });
        self.jobs.send(job).map_err(|_| self.gone())?;
        rx.recv().map_err(|_| self.gone())?
    }

    fn gone(&self) -> JournalError {
        JournalError::Postgres(self.shown.clone(), "its connection thread ended".into())
    }

    #[allow(clippy::too_many_arguments)] // one column each
    pub(super) fn begin_run(
        &self,
        plugin: &str,
        version: &str,
        digest: &str,
        command: &str,
        invocation: &str,
        dry_run: bool,
        mutating: bool,
    ) -> Result<i64, JournalError> {
        let args = (
            plugin.to_string(),
            version.to_string(),
            digest.to_string(),
            command.to_string(),
            invocation.to_string(),
        );
        self.call(move |c| {
            let (plugin, version, digest, command, invocation) = &args;
            let row = c
                .client()?
                .query_one(
                    "INSERT INTO runs (plugin, version, digest, command, invocation, dry_run,
                                       started_at, status, pid, host, username, mutating)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', $8, $9, $10, $11)
                     RETURNING id",
                    &[
                        plugin,
                        version,
                        digest,
                        command,
                        invocation,
                        &dry_run,
                        &now(),
                        &i64::from(std::process::id()),
                        &this_host(),
                        &crate::process::local_user(),
                        &mutating,
                    ],
                )
                .map_err(|e| c.error(e))?;
            Ok(row.get::<_, i64>(0))
        })
    }

    pub(super) fn record_plan(&self, run: i64, steps: &[StepRecord]) -> Result<(), JournalError> {
        let steps = steps.to_vec();
        self.call(move |c| {
            let shown = c.shown.clone();
            let err = |e: postgres::Error| JournalError::Postgres(shown.clone(), describe(&e));
            let mut tx = c.client()?.transaction().map_err(err)?;
            let insert = tx
                .prepare(
                    "INSERT INTO steps (run_id, phase_index, step_index, phase, phase_when, node,
                                        name, payload, state, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9)",
                )
                .map_err(err)?;
            for s in &steps {
                tx.execute(
                    &insert,
                    &[
                        &run,
                        &(s.phase_index as i32),
                        &(s.step_index as i32),
                        &s.phase,
                        &s.when.as_str(),
                        &s.node,
                        &s.name,
                        &s.payload,
                        &now(),
                    ],
                )
                .map_err(err)?;
            }
            tx.commit().map_err(err)
        })
    }

    /// Run one statement that changes rows; returns how many.
    fn execute(
        &self,
        sql: &'static str,
        params: impl Fn() -> Vec<Box<dyn postgres::types::ToSql + Sync + Send>> + Send + 'static,
    ) -> Result<u64, JournalError> {
        self.call(move |c| {
            let values = params();
            let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = values
                .iter()
                .map(|v| v.as_ref() as &(dyn postgres::types::ToSql + Sync))
                .collect();
            c.client()?.execute(sql, &refs).map_err(|e| c.error(e))
        })
    }

    pub(super) fn step_started(
        &self,
        run: i64,
        phase: usize,
        step: usize,
    ) -> Result<(), JournalError> {
        self.execute(
            "UPDATE steps SET state = 'running', attempts = attempts + 1, updated_at = $4
             WHERE run_id = $1 AND phase_index = $2 AND step_index = $3",
            move || {
                vec![
                    Box::new(run),
                    Box::new(phase as i32),
                    Box::new(step as i32),
                    Box::new(now()),
                ]
            },
        )?;
        Ok(())
    }

    pub(super) fn step_finished(
        &self,
        run: i64,
        phase: usize,
        step: usize,
        state: StepState,
        message: &str,
        data: Option<&str>,
    ) -> Result<(), JournalError> {
        let (message, data) = (message.to_string(), data.map(String::from));
        self.execute(
            "UPDATE steps SET state = $4, message = $5, data = $6, updated_at = $7
             WHERE run_id = $1 AND phase_index = $2 AND step_index = $3",
            move || {
                vec![
                    Box::new(run),
                    Box::new(phase as i32),
                    Box::new(step as i32),
                    Box::new(state.as_str()),
                    Box::new(message.clone()),
                    Box::new(data.clone()),
                    Box::new(now()),
                ]
            },
        )?;
        Ok(())
    }

    pub(super) fn finish_run(
        &self,
        run: i64,
        end: RunEnd,
        reason: Option<&str>,
    ) -> Result<(), JournalError> {
        let reason = reason.map(String::from);
        self.execute(
            "UPDATE runs SET status = $2, finished_at = $3, reason = $4 WHERE id = $1",
            move || {
                vec![
                    Box::new(run),
                    Box::new(end.as_str()),
                    Box::new(now()),
                    Box::new(reason.clone()),
                ]
            },
        )?;
        Ok(())
    }

    pub(super) fn discard_run(&self, run: i64) -> Result<(), JournalError> {
        self.execute(
            "DELETE FROM runs WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM steps WHERE run_id = $1)",
            move || vec![Box::new(run)],
        )?;
        Ok(())
    }

    pub(super) fn reopen_run(&self, run: i64) -> Result<(), JournalError> {
        self.execute(
            "UPDATE runs SET status = 'running', finished_at = NULL, reason = NULL, pid = $2,
                             host = $3, username = $4
             WHERE id = $1",
            move || {
                vec![
                    Box::new(run),
                    Box::new(i64::from(std::process::id())),
                    Box::new(this_host()),
                    Box::new(crate::process::local_user()),
                ]
            },
        )?;
        Ok(())
    }

    pub(super) fn list(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, JournalError> {
        let filter = filter.clone();
        self.call(move |c| {
            let rows = c
                .client()?
                .query(
                    "SELECT id, plugin, version, digest, command, invocation, dry_run, started_at,
                            finished_at, status, reason, pid, host, mutating
                     FROM runs
                     WHERE ($1 OR (NOT dry_run AND mutating))
                       AND ($2::TEXT IS NULL OR plugin = $2)
                       AND started_at >= $3
                     ORDER BY id DESC",
                    &[
                        &filter.all,
                        &filter.plugin,
                        &filter.since.unwrap_or(i64::MIN),
                    ],
                )
                .map_err(|e| c.error(e))?;
            let mut runs = Vec::new();
            for row in &rows {
                let run = run_from_row(row);
                if filter.status.as_ref().is_none_or(|s| *s == run.status) {
                    runs.push(run);
                    if runs.len() >= filter.limit {
                        break;
                    }
                }
            }
            Ok(runs)
        })
    }

    pub(super) fn get(&self, id: i64) -> Result<RunRecord, JournalError> {
        self.call(move |c| {
            let client = c.client()?;
            let row = client
                .query_opt(
                    "SELECT id, plugin, version, digest, command, invocation, dry_run, started_at,
                            finished_at, status, reason, pid, host, mutating
                     FROM runs WHERE id = $1",
                    &[&id],
                )
                .map_err(|e| c.error(e))?
                .ok_or(JournalError::NoSuchRun(id))?;
            let mut run = run_from_row(&row);
            let steps = c
                .client()?
                .query(
                    "SELECT phase_index, step_index, phase, phase_when, node, name, payload, state,
                            message, attempts, data
                     FROM steps WHERE run_id = $1 ORDER BY phase_index, step_index",
                    &[&id],
                )
                .map_err(|e| c.error(e))?;
            run.steps = steps
                .iter()
                .map(|r| StepRecord {
                    phase_index: r.get::<_, i32>(0) as usize,
                    step_index: r.get::<_, i32>(1) as usize,
                    phase: r.get(2),
                    when: PhaseWhen::parse(r.get(3), false),
                    node: r.get(4),
                    name: r.get(5),
                    payload: r.get(6),
                    state: StepState::parse(r.get(7)),
                    message: r.get(8),
                    attempts: r.get::<_, i32>(9) as u32,
                    data: r.get(10),
                })
                .collect();
            Ok(run)
        })
    }

    /// Take the lock of `cluster` for `run` (see [`super::Journal::lock`]),
    /// judging leases by the database's clock.
    pub(super) fn lock(
        &self,
        run: i64,
        cluster: &str,
        ttl: Duration,
        force: bool,
    ) -> Result<Option<Takeover>, JournalError> {
        let cluster = cluster.to_string();
        let ttl = ttl.as_secs().max(1) as f64;
        self.call(move |c| {
            let shown = c.shown.clone();
            let err = |e: postgres::Error| JournalError::Postgres(shown.clone(), describe(&e));
            let mut tx = c.client()?.transaction().map_err(err)?;
            // One locker at a time; readers of the table are not blocked.
            tx.batch_execute("LOCK TABLE cluster_locks IN EXCLUSIVE MODE")
                .map_err(err)?;
            let held = tx
                .query_opt(
                    "SELECT l.run_id, l.pid, l.host, l.username,
                            extract(epoch FROM l.acquired_at)::BIGINT,
                            ceil(extract(epoch FROM l.expires_at - now()))::BIGINT,
                            coalesce(r.plugin, ''), coalesce(r.command, '')
                     FROM cluster_locks l LEFT JOIN runs r ON r.id = l.run_id
                     WHERE l.cluster = $1",
                    &[&cluster],
                )
                .map_err(err)?;
            let mut taken_from = None;
            if let Some(h) = held {
                let (holder, pid, host, user): (i64, i64, String, String) =
                    (h.get(0), h.get(1), h.get(2), h.get(3));
                let (acquired, left): (i64, i64) = (h.get(4), h.get(5));
                let pid = u32::try_from(pid).unwrap_or(0);
                let gone = host == this_host() && !alive(pid);
                if holder != run && left > 0 && !force && !gone {
                    return Err(JournalError::Locked {
                        run: holder,
                        plugin: h.get(6),
                        command: h.get(7),
                        holder: format!("pid {pid} on {host} as {user}"),
                        since: crate::time::format_time(acquired.max(0) as u64),
                        expires_in: left as u64,
                    });
                }
                if holder != run {
                    taken_from = Some(if left <= 0 {
                        Takeover::Expired(holder)
                    } else if gone {
                        Takeover::HolderGone { run: holder, pid }
                    } else {
                        Takeover::Forced(holder)
                    });
                }
            }
            tx.execute(
                "INSERT INTO cluster_locks (cluster, run_id, pid, host, username, acquired_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, now(), now() + make_interval(secs => $6))
                 ON CONFLICT (cluster) DO UPDATE SET
                    run_id = EXCLUDED.run_id, pid = EXCLUDED.pid, host = EXCLUDED.host,
                    username = EXCLUDED.username, acquired_at = EXCLUDED.acquired_at,
                    expires_at = EXCLUDED.expires_at",
                &[
                    &cluster,
                    &run,
                    &i64::from(std::process::id()),
                    &this_host(),
                    &crate::process::local_user(),
                    &ttl,
                ],
            )
            .map_err(err)?;
            tx.commit().map_err(err)?;
            Ok(taken_from)
        })
    }

    pub(super) fn renew(
        &self,
        run: i64,
        cluster: &str,
        ttl: Duration,
    ) -> Result<bool, JournalError> {
        let cluster = cluster.to_string();
        let ttl = ttl.as_secs().max(1) as f64;
        let n = self.execute(
            "UPDATE cluster_locks SET expires_at = now() + make_interval(secs => $3)
             WHERE cluster = $1 AND run_id = $2",
            move || vec![Box::new(cluster.clone()), Box::new(run), Box::new(ttl)],
        )?;
        Ok(n == 1)
    }

    pub(super) fn unlock(&self, run: i64, cluster: &str) -> Result<(), JournalError> {
        let cluster = cluster.to_string();
        self.execute(
            "DELETE FROM cluster_locks WHERE cluster = $1 AND run_id = $2",
            move || vec![Box::new(cluster.clone()), Box::new(run)],
        )?;
        Ok(())
    }
}

/// Create the schema table, then apply the migrations the database lacks,
/// under an advisory lock that serializes concurrent openers.
fn migrate(c: &mut Conn) -> Result<(), JournalError> {
    let shown = c.shown.clone();
    let err = |e: postgres::Error| JournalError::Postgres(shown.clone(), describe(&e));
    let mut tx = c.client()?.transaction().map_err(err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(err)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS stackhost_schema (version INTEGER NOT NULL)")
        .map_err(err)?;
    let found: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM stackhost_schema",
            &[],
        )
        .map_err(err)?
        .get(0);
    let known = MIGRATIONS.len() as i32;
    if found > known {
        return Err(JournalError::TooNew {
            path: shown.clone(),
            found: found.into(),
            known: known.into(),
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(sql).map_err(err)?;
        tx.execute(
            "INSERT INTO stackhost_schema (version) VALUES ($1)",
            &[&(i as i32 + 1)],
        )
        .map_err(err)?;
    }
    tx.commit().map_err(err)
}

fn run_from_row(r: &Row) -> RunRecord {
    let mut run = RunRecord {
        id: r.get(0),
        plugin: r.get(1),
        version: r.get(2),
        digest: r.get(3),
        command: r.get(4),
        invocation: r.get(5),
        dry_run: r.get(6),
        started_at: r.get(7),
        finished_at: r.get(8),
        status: r.get(9),
        reason: r.get(10),
        pid: r
            .get::<_, Option<i64>>(11)
            .and_then(|p| u32::try_from(p).ok()),
        host: r.get(12),
        mutating: r.get(13),
        steps: Vec::new(),
    };
    super::mark_abandoned(&mut run);
    run
}

#[cfg(test)]
mod tests {
    use super::hide_password;

    #[test]
    fn passwords_are_hidden_in_messages() {
        assert_eq!(
            hide_password("postgres://ops:s3cret@db:5432/stackhost"),
            "postgres://ops:***@db:5432/stackhost"
        );
        assert_eq!(
            hide_password("postgres://ops@db/stackhost"),
            "postgres://ops@db/stackhost"
        );
        assert_eq!(hide_password("host=db user=ops"), "host=db user=ops");
        assert_eq!(
            hide_password("host=db password=s3cret user=ops"),
            "host=db password=*** user=ops"
        );
    }
}
