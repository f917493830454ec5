//! The journal: every run and every step, recorded before and after it
//! executes, so a failed or crashed run can be shown and resumed; and the
//! cluster lock that keeps two mutating runs apart. The lock has a TTL
//! that its holder keeps extending, so a dead holder never wedges the
//! cluster.
//!
//! The journal is SQLite in the operator's data directory (the embedded
//! default: one operator, one lock for every cluster), or PostgreSQL for a
//! team ([`pg`]: `journal = "postgres://..."` in config.toml or
//! `STACKHOST_JOURNAL`), where each cluster (the inventory's `cluster`
//! name) has its own lock.

mod pg;
mod sqlite;

use crate::caps::run::StepStatus;
use crate::process::{alive, this_host};
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

/// Why the journal refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("the journal database failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot create the journal directory {0}: {1}")]
    Dir(String, std::io::Error),
    #[error("no run with id {0} in the journal (see `stackhost runs list`)")]
    NoSuchRun(i64),
    #[error(
        "the journal {path} is at schema version {found}, newer than the {known} this stackhost \
         knows; use a newer stackhost (nothing was changed)"
    )]
    TooNew {
        path: String,
        found: i64,
        known: i64,
    },
    #[error(
        "the cluster is locked by run {run} ({plugin} {command}, {holder}, since {since}); \
         the lock expires in {expires_in}s unless its holder renews it. Wait for that run, or \
         pass --force-unlock if its holder is gone"
    )]
    Locked {
        run: i64,
        plugin: String,
        command: String,
        /// Who holds it: `pid P on HOST as USER`.
        holder: String,
        since: String,
        expires_in: u64,
    },
    #[error("the journal database {0} failed: {1}")]
    Postgres(String, String),
    #[error("{0}")]
    Config(String),
}

/// A step's state in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepState {
    Pending,
    Running,
    Ok,
    Changed,
    Skipped,
    Failed,
    NotRun,
    /// Stopped while running by SIGINT or SIGTERM.
    Interrupted,
}

impl StepState {
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::Running => "running",
            StepState::Ok => "ok",
            StepState::Changed => "changed",
            StepState::Skipped => "skipped",
            StepState::Failed => "failed",
            StepState::NotRun => "not-run",
            StepState::Interrupted => "interrupted",
        }
    }

    fn parse(s: &str) -> StepState {
        match s {
            "running" => StepState::Running,
            "ok" => StepState::Ok,
            "changed" => StepState::Changed,
            "skipped" => StepState::Skipped,
            "failed" => StepState::Failed,
            "not-run" => StepState::NotRun,
            "interrupted" => StepState::Interrupted,
            _ => StepState::Pending,
        }
    }

    /// Finished steps are never run again by `resume`.
    pub fn finished(self) -> bool {
        matches!(
            self,
            StepState::Ok | StepState::Changed | StepState::Skipped
        )
    }
}

/// When a phase runs (the plan's `phase-when`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PhaseWhen {
    /// While nothing has failed.
    Normal,
    /// Even after a failure.
    Always,
    /// Only after a failure.
    OnFailure,
}

impl PhaseWhen {
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseWhen::Normal => "normal",
            PhaseWhen::Always => "always",
            PhaseWhen::OnFailure => "on-failure",
        }
    }

    /// From the journal: the `phase_when` column, or (written before it
    /// existed) the `always` column.
    fn parse(s: &str, always: bool) -> PhaseWhen {
        match s {
            "always" => PhaseWhen::Always,
            "on-failure" => PhaseWhen::OnFailure,
            "normal" => PhaseWhen::Normal,
            _ if always => PhaseWhen::Always,
            _ => PhaseWhen::Normal,
        }
    }
}

/// A run as the journal holds it.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub id: i64,
    pub plugin: String,
    pub version: String,
    pub digest: String,
    pub command: String,
    /// The invocation as JSON (command, args, dry-run).
    pub invocation: String,
    pub dry_run: bool,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// `running`, `succeeded`, `failed`, `interrupted`, or `abandoned` (a
    /// run still `running` whose process is gone from this machine).
    pub status: String,
    /// Why the run failed, was interrupted or abandoned, when known.
    pub reason: Option<String>,
    /// The process and host that ran it (unknown for runs journaled before
    /// they were recorded).
    pub pid: Option<u32>,
    pub host: Option<String>,
    /// False for a read-only command (it took no lock and changed nothing).
    pub mutating: bool,
    pub steps: Vec<StepRecord>,
}

/// A step as the journal holds it.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub phase_index: usize,
    pub step_index: usize,
    pub phase: String,
    pub when: PhaseWhen,
    pub node: String,
    pub name: String,
    pub payload: String,
    pub state: StepState,
    pub message: String,
    /// The step's outcome data (JSON), once it finished with some.
    pub data: Option<String>,
    /// How many times the step was started, over the run and its resumes.
    pub attempts: u32,
}

/// The journal database.
#[derive(Clone)]
pub struct Journal {
    store: Store,
}

#[derive(Clone)]
enum Store {
    Sqlite(sqlite::Sqlite),
    Postgres(pg::Pg),
}

impl StepStatus {
    /// How a journaled step ended (pending and running ones did not).
    pub fn from_state(s: StepState) -> StepStatus {
        match s {
            StepState::Ok => StepStatus::Ok,
            StepState::Changed => StepStatus::Changed,
            StepState::Skipped => StepStatus::Skipped,
            StepState::Failed => StepStatus::Failed,
            StepState::Interrupted => StepStatus::Interrupted,
            StepState::Pending | StepState::Running | StepState::NotRun => StepStatus::NotRun,
        }
    }
}

impl From<StepStatus> for StepState {
    fn from(s: StepStatus) -> StepState {
        match s {
            StepStatus::Ok => StepState::Ok,
            StepStatus::Changed => StepState::Changed,
            StepStatus::Skipped => StepState::Skipped,
            StepStatus::Failed | StepStatus::Unreachable => StepState::Failed,
            StepStatus::NotRun => StepState::NotRun,
            StepStatus::Interrupted => StepState::Interrupted,
        }
    }
}

/// Where the journal is: `STACKHOST_JOURNAL`, else `journal` in
/// `<config>/config.toml`, else SQLite in the data directory. A value is
/// a `postgres://` or `postgresql://` URL, or a SQLite file path.
pub fn location(paths: &crate::paths::Paths) -> Result<String, JournalError> {
    if let Some(v) = from_env() {
        return Ok(v);
    }
    let file = paths.config.join("config.toml");
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(JournalError::Config(format!(
                "cannot read {}: {e}",
                file.display()
            )));
        }
    };
    let config: toml::Table = toml::from_str(&text)
        .map_err(|e| JournalError::Config(format!("{} is not valid TOML: {e}", file.display())))?;
    location_in(paths, &config, &file)
}

/// [`location`], from a config file already parsed (`config`, read from
/// `file`).
pub fn location_in(
    paths: &crate::paths::Paths,
    config: &toml::Table,
    file: &Path,
) -> Result<String, JournalError> {
    if let Some(v) = from_env() {
        return Ok(v);
    }
    match config.get("journal") {
        None => Ok(paths.data.join("journal.sqlite").display().to_string()),
        Some(toml::Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(_) => Err(JournalError::Config(format!(
            "{}: `journal` must be a postgres:// URL or a file path",
            file.display()
        ))),
    }
}

fn from_env() -> Option<String> {
    std::env::var("STACKHOST_JOURNAL")
        .ok()
        .filter(|v| !v.is_empty())
}

/// Which runs `runs list` shows.
#[derive(Debug, Clone)]
pub struct RunFilter {
    pub limit: usize,
    /// Dry runs and read-only commands too (hidden by default).
    pub all: bool,
    pub status: Option<String>,
    pub plugin: Option<String>,
    /// Started at or after this time (seconds since the epoch).
    pub since: Option<i64>,
}

impl Default for RunFilter {
    fn default() -> RunFilter {
        RunFilter {
            limit: 20,
            all: false,
            status: None,
            plugin: None,
            since: None,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    Succeeded,
    Failed,
    /// Stopped by SIGINT or SIGTERM.
    Interrupted,
}

impl RunEnd {
    fn as_str(self) -> &'static str {
        match self {
            RunEnd::Succeeded => "succeeded",
            RunEnd::Failed => "failed",
            RunEnd::Interrupted => "interrupted",
        }
    }
}

/// Whose lock a run took, when it was not free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Takeover {
    /// The holder's lease had expired.
    Expired(i64),
    /// The holder's process is gone from this machine.
    HolderGone { run: i64, pid: u32 },
    /// `--force-unlock` took a live lock.
    Forced(i64),
}

/// Seconds since the Unix epoch (SQLite integers are signed).
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Journal {
    /// Open the journal the configuration names (see [`location`]).
    pub fn open_configured(paths: &crate::paths::Paths) -> Result<Journal, JournalError> {
        Journal::open_at(&location(paths)?)
    }

    /// Open the journal at `at`: a `postgres://` URL or a SQLite file.
    pub fn open_at(at: &str) -> Result<Journal, JournalError> {
        if at.starts_with("postgres://") || at.starts_with("postgresql://") {
            Ok(Journal {
                store: Store::Postgres(pg::Pg::open(at)?),
            })
        } else {
            Journal::open(Path::new(at))
        }
    }

    /// Open (creating) the SQLite journal at `path`.
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        Ok(Journal {
            store: Store::Sqlite(sqlite::Sqlite::open(path)?),
        })
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
        match &self.store {
            Store::Postgres(pg) => pg.begin_run(
                plugin, version, digest, command, invocation, dry_run, mutating,
            ),
            Store::Sqlite(db) => db.begin_run(
                plugin, version, digest, command, invocation, dry_run, mutating,
            ),
        }
    }

    /// Record the plan's steps, all pending.
    pub fn record_plan(&self, run: i64, steps: &[StepRecord]) -> Result<(), JournalError> {
        match &self.store {
            Store::Postgres(pg) => pg.record_plan(run, steps),
            Store::Sqlite(db) => db.record_plan(run, steps),
        }
    }

    /// Mark a step as started (before it runs).
    pub fn step_started(&self, run: i64, phase: usize, step: usize) -> Result<(), JournalError> {
        match &self.store {
            Store::Postgres(pg) => pg.step_started(run, phase, step),
            Store::Sqlite(db) => db.step_started(run, phase, step),
        }
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
        match &self.store {
            Store::Postgres(pg) => pg.step_finished(run, phase, step, state, message, data),
            Store::Sqlite(db) => db.step_finished(run, phase, step, state, message, data),
        }
    }

    /// Record how the run ended, and why when it did not succeed.
    pub fn finish_run(
        &self,
        run: i64,
        end: RunEnd,
        reason: Option<&str>,
    ) -> Result<(), JournalError> {
        match &self.store {
            Store::Postgres(pg) => pg.finish_run(run, end, reason),
            Store::Sqlite(db) => db.finish_run(run, end, reason),
        }
    }

    /// Forget a run that never got a plan (its plan refused the
    /// operator's arguments).
    pub fn discard_run(&self, run: i64) -> Result<(), JournalError> {
        match &self.store {
            Store::Postgres(pg) => pg.discard_run(run),
            Store::Sqlite(db) => db.discard_run(run),
        }
    }

    /// Mark a run as running again, in this process (for `resume`).
    pub fn reopen_run(&self, run: i64) -> Result<(), JournalError> {
        match &self.store {
            Store::Postgres(pg) => pg.reopen_run(run),
            Store::Sqlite(db) => db.reopen_run(run),
        }
    }

    /// The most recent runs that pass `filter`, newest first (steps not
    /// loaded).
    pub fn list(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, JournalError> {
        match &self.store {
            Store::Postgres(pg) => pg.list(filter),
            Store::Sqlite(db) => db.list(filter),
        }
    }

    /// One run with its steps.
    pub fn get(&self, id: i64) -> Result<RunRecord, JournalError> {
        match &self.store {
            Store::Postgres(pg) => pg.get(id),
            Store::Sqlite(db) => db.get(id),
        }
    }

    /// Take the lock of `cluster` for `run`, or say who holds it. An
    /// expired lock is taken over; `force` takes a live one. SQLite keeps
    /// one lock for every cluster (one operator's machine); PostgreSQL one
    /// per cluster name.
    pub fn lock(
        &self,
        run: i64,
        cluster: &str,
        ttl: Duration,
        force: bool,
    ) -> Result<Option<Takeover>, JournalError> {
        match &self.store {
            Store::Postgres(pg) => pg.lock(run, cluster, ttl, force),
            Store::Sqlite(db) => db.lock(run, cluster, ttl, force),
        }
    }

    /// Extend the lock held by `run`; false when it is no longer ours.
    pub fn renew(&self, run: i64, cluster: &str, ttl: Duration) -> Result<bool, JournalError> {
        match &self.store {
            Store::Postgres(pg) => pg.renew(run, cluster, ttl),
            Store::Sqlite(db) => db.renew(run, cluster, ttl),
        }
    }

    /// Release the lock if `run` holds it.
    pub fn unlock(&self, run: i64, cluster: &str) -> Result<(), JournalError> {
        match &self.store {
            Store::Postgres(pg) => pg.unlock(run, cluster),
            Store::Sqlite(db) => db.unlock(run, cluster),
        }
    }
}

/// A run still `running` whose process is gone from this machine is shown
/// as `abandoned`.
pub(super) fn mark_abandoned(run: &mut RunRecord) {
    let gone = run.status == "running"
        && run.host.as_deref() == Some(this_host().as_str())
        && run.pid.is_some_and(|p| !alive(p));
    if gone {
        run.status = "abandoned".into();
        run.reason.get_or_insert_with(|| {
            format!(
                "its process ({}) is gone: killed, or its machine restarted",
                run.pid.unwrap_or_default()
            )
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;
    use sqlite::SCHEMA;

    impl Journal {
        fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
            match &self.store {
                Store::Sqlite(db) => db.conn(),
                Store::Postgres(_) => unreachable!("these tests use SQLite"),
            }
        }
    }

    #[test]
    fn a_round_one_journal_is_migrated_and_a_newer_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sqlite");
        {
            // The schema as round 1 left it, with a run in it.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            conn.execute_batch(
                "INSERT INTO runs VALUES (1, 'p', '1.0.0', 'd', 'c', '{}', 0, 1, NULL, 'failed');
                 INSERT INTO steps (run_id, phase_index, step_index, phase, always, node, name,
                                    payload, state, updated_at)
                 VALUES (1, 0, 0, 'cleanup', 1, 'local', 's', '', 'pending', 1);",
            )
            .unwrap();
        }
        let j = Journal::open(&path).unwrap();
        let run = j.get(1).unwrap();
        assert_eq!(
            (run.steps[0].when, run.steps[0].data.clone()),
            (PhaseWhen::Always, None)
        );
        drop(j);
        Journal::open(&path).expect("opening a migrated journal again changes nothing");

        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let err = Journal::open(&path)
            .err()
            .expect("a newer journal is refused");
        assert!(
            err.to_string()
                .contains("schema version 99, newer than the 2"),
            "{err}"
        );
    }

    #[test]
    fn records_steps_and_locks() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("j.sqlite")).unwrap();
        let run = j
            .begin_run("p", "1.0.0", "d", "c", "{}", false, true)
            .unwrap();
        let step = StepRecord {
            phase_index: 0,
            step_index: 0,
            phase: "ph".into(),
            when: PhaseWhen::OnFailure,
            node: "local".into(),
            name: "s".into(),
            payload: "x".into(),
            state: StepState::Pending,
            message: String::new(),
            attempts: 0,
            data: None,
        };
        j.record_plan(run, &[step]).unwrap();
        j.step_started(run, 0, 0).unwrap();
        j.step_finished(run, 0, 0, StepState::Changed, "done", Some(r#"{"n":1}"#))
            .unwrap();
        let got = j.get(run).unwrap();
        assert_eq!(
            (
                got.steps[0].state,
                got.steps[0].attempts,
                got.steps[0].when,
                got.steps[0].data.as_deref()
            ),
            (
                StepState::Changed,
                1,
                PhaseWhen::OnFailure,
                Some(r#"{"n":1}"#)
            )
        );

        assert_eq!(
            j.lock(run, "c", Duration::from_secs(60), false).unwrap(),
            None
        );
        let other = j
            .begin_run("q", "1.0.0", "d", "c", "{}", false, true)
            .unwrap();
        let err = j
            .lock(other, "c", Duration::from_secs(60), false)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("locked by run {run} (p c")),
            "{err}"
        );
        assert_eq!(
            j.lock(other, "c", Duration::from_secs(60), true).unwrap(),
            Some(Takeover::Forced(run))
        );
        assert!(
            !j.renew(run, "c", Duration::from_secs(60)).unwrap(),
            "the old holder lost the lock"
        );
        j.unlock(other, "c").unwrap();
        assert_eq!(
            j.lock(run, "c", Duration::from_secs(60), false).unwrap(),
            None
        );
    }

    #[test]
    fn a_lock_whose_holder_died_on_this_machine_is_taken_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("j.sqlite")).unwrap();
        let dead = run_dead_process();
        let run = j
            .begin_run("p", "1.0.0", "d", "c", "{}", false, true)
            .unwrap();
        j.lock(run, "c", Duration::from_secs(600), false).unwrap();
        // The holder's process and pid, as a killed stackhost leaves them.
        j.conn()
            .execute_batch(&format!(
                "UPDATE cluster_lock SET pid = {dead}; UPDATE runs SET pid = {dead} WHERE id = {run};"
            ))
            .unwrap();
        assert_eq!(j.get(run).unwrap().status, "abandoned");
        let next = j
            .begin_run("q", "1.0.0", "d", "c", "{}", false, true)
            .unwrap();
        assert_eq!(
            j.lock(next, "c", Duration::from_secs(600), false).unwrap(),
            Some(Takeover::HolderGone { run, pid: dead })
        );
        // A live holder elsewhere (another host) is still respected.
        j.conn()
            .execute_batch(&format!(
                "UPDATE cluster_lock SET pid = {dead}, host = 'other-machine'"
            ))
            .unwrap();
        let third = j
            .begin_run("r", "1.0.0", "d", "c", "{}", false, true)
            .unwrap();
        assert!(j.lock(third, "c", Duration::from_secs(600), false).is_err());
    }

    #[test]
    fn two_processes_opening_a_new_journal_at_once_migrate_it_once() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("j.sqlite");
            let opened: Vec<_> = (0..4)
                .map(|_| {
                    let path = path.clone();
                    std::thread::spawn(move || Journal::open(&path).map(drop))
                })
                .collect();
            for t in opened {
                t.join().unwrap().expect("every opener succeeds");
            }
        }
    }

    /// The pid of a process that has exited and been reaped.
    fn run_dead_process() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }
}
