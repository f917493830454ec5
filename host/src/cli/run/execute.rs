//! Carrying a run out: the cluster lock held and renewed for a mutating
//! run, the journal told how it ended (waiting for an unreachable journal
//! a while), and the report printed with the exit code it deserves.

use super::args::ExecFlags;
use crate::run::apply::{JournalHandle, UnrecordedStep};
use crate::run::interrupt::{Interrupt, Signal};
use crate::run::journal::{Journal, RunEnd, Takeover};
use crate::run::report::RunReport;
use std::process::ExitCode;
use std::sync::Arc;

/// Run `work` on a tokio runtime; a mutating run holds the cluster lock,
/// renewed while it runs and released after, and is journaled to the end.
pub(in crate::cli) fn execute<F, Fut>(
    flags: &ExecFlags,
    h: JournalHandle,
    mutating: bool,
    cluster: &str,
    interrupt: Option<Arc<Interrupt>>,
    work: F,
) -> anyhow::Result<RunReport>
where
    F: FnOnce(JournalHandle) -> Fut,
    Fut: Future<Output = RunReport>,
{
    let (journal, run) = (h.journal.clone(), h.run);
    let unrecorded = h.unrecorded.clone();
    if mutating {
        take_lock(&journal, run, cluster, flags)?;
    }
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = tokio.block_on(async {
        if let Some(i) = &interrupt
            && let Err(e) = i.listen()
        {
            tracing::warn!("cannot listen for SIGINT and SIGTERM: {e}");
        }
        let heartbeat = mutating.then(|| {
            let lease = Lease {
                journal: journal.clone(),
                run,
                cluster: cluster.to_string(),
                ttl: flags.lock_ttl,
            };
            tokio::spawn(lease.keep(interrupt.clone()))
        });
        let report = work(h).await;
        if let Some(hb) = heartbeat {
            hb.abort();
        }
        report
    });
    // Blocking work of stopped steps (an artifact being written) ends, and
    // cleans up, before the run is recorded as over.
    tokio.shutdown_timeout(std::time::Duration::from_secs(30));
    let steps: Vec<_> = std::mem::take(&mut *unrecorded.lock().unwrap_or_else(|p| p.into_inner()));
    record_end(&journal, run, cluster, mutating, &report, &steps);
    Ok(report)
}

/// Take the cluster lock for `run`, saying whose it took over; a refusal
/// ends the run as failed.
fn take_lock(journal: &Journal, run: i64, cluster: &str, flags: &ExecFlags) -> anyhow::Result<()> {
    match journal.lock(run, cluster, flags.lock_ttl, flags.force_unlock) {
        Ok(None) => {}
        Ok(Some(Takeover::Forced(prev))) => eprintln!(
            "warning: --force-unlock took the cluster lock from run {prev}; \
             if that run is still going, two mutating runs now overlap"
        ),
        Ok(Some(Takeover::Expired(prev))) => eprintln!(
            "note: the cluster lock of run {prev} had expired (its holder is gone); taking it over"
        ),
        Ok(Some(Takeover::HolderGone { run: prev, pid })) => eprintln!(
            "note: the cluster lock was held by run {prev}, whose process {pid} on this machine \
             is gone; taking it over (`stackhost runs show {prev}`, `stackhost resume {prev}`)"
        ),
        Err(e) => {
            journal.finish_run(run, RunEnd::Failed, Some(&e.to_string()))?;
            return Err(e.into());
        }
    }
    Ok(())
}

/// The cluster lock a mutating run holds.
struct Lease {
    journal: Journal,
    run: i64,
    cluster: String,
    ttl: std::time::Duration,
}

impl Lease {
    /// Renew every third of the lease. A run that can no longer claim the
    /// lock stops starting steps (as if interrupted) before its last lease
    /// runs out and another run may take it.
    async fn keep(self, interrupt: Option<Arc<Interrupt>>) {
        let (run, ttl) = (self.run, self.ttl);
        let mut renewed = std::time::Instant::now();
        let lost = |why: String| {
            eprintln!("error: run {run} {why}; stopping: no new step starts");
            if let Some(i) = &interrupt {
                i.raise(Signal::LockLost);
            }
        };
        loop {
            tokio::time::sleep(ttl / 3).await;
            let journal = self.journal.clone();
            let cluster = self.cluster.clone();
            let answer =
                tokio::task::spawn_blocking(move || journal.renew(run, &cluster, ttl)).await;
            match answer {
                Ok(Ok(true)) => renewed = std::time::Instant::now(),
                Ok(Ok(false)) => {
                    lost("lost the cluster lock (taken with --force-unlock?)".into());
                    break;
                }
                Ok(Err(e)) if renewed.elapsed() >= ttl * 2 / 3 => {
                    lost(format!(
                        "could not renew the cluster lock before its lease ends: {e}"
                    ));
                    break;
                }
                Ok(Err(e)) => tracing::warn!("cannot renew the cluster lock: {e}"),
                Err(e) => tracing::warn!("the lock's heartbeat failed: {e}"),
            }
        }
    }
}

/// How the run ended, for the journal.
fn run_end(report: &RunReport) -> (RunEnd, Option<String>) {
    if let Some(sig) = report.interrupted {
        (RunEnd::Interrupted, Some(format!("interrupted by {sig}")))
    } else if report.succeeded() {
        (RunEnd::Succeeded, None)
    } else if let Some(e) = &report.plan_error {
        (RunEnd::Failed, Some(format!("the plan failed: {e}")))
    } else if let Some(h) = &report.halted {
        (RunEnd::Failed, Some(format!("the rollout halted: {h}")))
    } else {
        (RunEnd::Failed, Some("some steps failed".to_string()))
    }
}

/// What the journal must hear before the run is over: the ends of steps
/// it could not record, the run's end, the lock's release. If its database
/// is out of reach, wait for it a while: a step whose end is lost would
/// run again on resume.
fn record_end(
    journal: &Journal,
    run: i64,
    cluster: &str,
    mutating: bool,
    report: &RunReport,
    steps: &[UnrecordedStep],
) {
    let (end, reason) = run_end(report);
    let record = || -> Result<(), crate::run::journal::JournalError> {
        for s in steps {
            journal.step_finished(run, s.phase, s.step, s.state, &s.message, s.data.as_deref())?;
        }
        journal.finish_run(run, end, reason.as_deref())?;
        if mutating {
            journal.unlock(run, cluster)?;
        }
        Ok(())
    };
    let deadline = std::time::Instant::now() + JOURNAL_WAIT;
    let mut said = false;
    loop {
        match record() {
            Ok(()) => {
                if said {
                    eprintln!("note: the journal is back; run {run} is recorded");
                }
                return;
            }
            Err(e) if std::time::Instant::now() < deadline => {
                if !said {
                    eprintln!(
                        "error: cannot record the end of run {run} in the journal: {e}; \
                         retrying for up to {}s",
                        JOURNAL_WAIT.as_secs()
                    );
                    said = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            Err(e) => {
                eprintln!(
                    "error: the journal did not record the end of run {run}: {e}. It shows as \
                     running until its holder is seen gone; its lock lapses after --lock-ttl; \
                     `stackhost resume {run}` may run again the steps whose end was not recorded"
                );
                return;
            }
        }
    }
}

/// How long the end of a run waits for an unreachable journal database.
const JOURNAL_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Print the report and pick the exit code.
pub(in crate::cli) fn finish(
    flags: &ExecFlags,
    run: i64,
    report: &RunReport,
    resumable: bool,
) -> anyhow::Result<ExitCode> {
    if flags.json {
        crate::cli::print_json(&envelope(run, report))?;
    } else {
        crate::cli::report::print(report, flags.verbose)?;
        if flags.timing {
            crate::cli::report::print_timing(report)?;
        }
        if report.interrupted.is_some() && !report.dry_run {
            println!(
                "\nrun {run} is journaled as interrupted: `stackhost runs show {run}`; \
                 `stackhost resume {run}` runs what was stopped or not started"
            );
        } else if !report.succeeded() && !report.dry_run && report.plan_error.is_none() {
            if resumable {
                println!(
                    "\nrun {run} is journaled: `stackhost runs show {run}`; after fixing the cause, `stackhost resume {run}`"
                );
            } else {
                println!(
                    "\nrun {run} is journaled: `stackhost runs show {run}`; it took secret arguments, \
                     which the journal does not keep, so it cannot be resumed: run the command again"
                );
            }
        } else if report.plan_error.is_some() {
            println!(
                "\nrun {run} is journaled: `stackhost runs show {run}`; its plan failed, so there is \
                 nothing to resume: fix the cause and run the command again"
            );
        }
    }
    if let Some(sig) = report.interrupted {
        let code = match sig {
            "SIGTERM" => 143,
            "SIGINT" => 130,
            // The lock or the journal was lost: a failed run.
            _ => crate::cli::EXIT_FAILED_STEPS,
        };
        return Ok(ExitCode::from(code));
    }
    Ok(if report.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::cli::EXIT_FAILED_STEPS)
    })
}

/// The one `--json` document of `run` and `resume`, success or failure:
/// `{run, plugin, command, status, report, data, error}`. `data` lists
/// the steps that returned data (phase, node, step, data); `error` is the
/// plan's failure or the halt reason.
pub(super) fn envelope(run: i64, report: &RunReport) -> serde_json::Value {
    let status = if report.interrupted.is_some() {
        "interrupted"
    } else if report.succeeded() {
        "succeeded"
    } else {
        "failed"
    };
    let data: Vec<serde_json::Value> = report
        .phases
        .iter()
        .flat_map(|p| p.steps.iter().map(move |s| (p, s)))
        .filter_map(|(p, s)| {
            s.data.as_ref().map(
                |d| serde_json::json!({"phase": p.name, "node": s.node, "step": s.name, "data": d}),
            )
        })
        .collect();
    let error = report
        .plan_error
        .clone()
        .or_else(|| report.halted.clone())
        .or_else(|| report.interrupted.map(|s| format!("interrupted by {s}")));
    serde_json::json!({
        "run": run,
        "plugin": report.plugin,
        "command": report.command,
        "status": status,
        "report": report,
        "data": data,
        "error": error,
    })
}
