//! Plan, then apply: the host asks the plugin for a plan, then runs its
//! phases in order, the steps of a phase concurrently across nodes, each
//! step in a fresh instance. After a failure the remaining phases are
//! skipped except `always` ones, and the `on-failure` ones run (they are
//! skipped when nothing failed). Every step can read the outcomes of the
//! steps finished before it (`run.outcomes`).

use crate::caps::bindings::exports::stackhost::host::commands as api;
use crate::caps::ctx::{CallCtx, Event, LiveStep, Mutation, ReadOnly};
use crate::caps::run::{Finished, RunOutcomes, StepStatus};
use crate::cluster::Cluster;
use crate::redact::Redactor;
pub use crate::run::journal::PhaseWhen;
use crate::run::journal::{Journal, RunRecord, StepRecord, StepState};
use crate::run::progress::Progress;
use crate::runtime::{CallError, CallLimits, CallReport, LoadedPlugin};
use crate::text::cap_text;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a run is carried out.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub dry_run: bool,
    pub limits: CallLimits,
    /// Default and upper bound for one program's run time.
    pub exec_timeout: Duration,
    /// Serial batches, canaries, concurrency and the failure budget.
    pub rollout: crate::run::policy::RolloutPolicy,
    /// The command is declared read-only: mutating calls are refused.
    pub read_only: bool,
    /// The installed vendor patches, for a plugin granted `patches`.
    pub patches: Option<Arc<dyn crate::caps::patches::PatchRunner>>,
    /// Values of the run's secret arguments: shown as `***` in everything
    /// the run reports or journals.
    pub secrets: Arc<Redactor>,
    /// How steps' progress and live output are shown while they run.
    pub progress: crate::run::progress::Mode,
    /// Set by SIGINT or SIGTERM: no new step starts, running ones stop.
    pub interrupt: Option<Arc<crate::run::interrupt::Interrupt>>,
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

/// What the steps of one run share: their outcomes so far (what the `run`
/// capability reveals) and the live display.
struct RunShared {
    outcomes: Arc<RunOutcomes>,
    progress: Progress,
}

/// Where a run's steps are journaled.
#[derive(Clone)]
pub struct JournalHandle {
    pub journal: Journal,
    pub run: i64,
    /// Ends of steps the journal could not record when they happened (its
    /// database was out of reach), written once it is back (see
    /// `cli::run::execute`), so a resume does not run them again.
    pub unrecorded: Arc<Mutex<Vec<UnrecordedStep>>>,
}

impl JournalHandle {
    pub fn new(journal: Journal, run: i64) -> JournalHandle {
        JournalHandle {
            journal,
            run,
            unrecorded: Default::default(),
        }
    }
}

/// A step's end, kept until the journal can record it.
#[derive(Debug, Clone)]
pub struct UnrecordedStep {
    pub phase: usize,
    pub step: usize,
    pub state: StepState,
    pub message: String,
    pub data: Option<String>,
}

/// The result of one step.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub node: String,
    pub name: String,
    pub status: StepStatus,
    pub message: String,
    /// The structured result the step returned (`step-outcome.data`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    pub events: Vec<Event>,
    pub mutations: Vec<Mutation>,
    pub instantiate_us: u64,
    /// The SSH handshake (TCP connect, key exchange, authentication) this
    /// step waited for, when it opened its node's connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handshake_ms: Option<f64>,
    /// From the step's start to the first bytes its node sent back (time
    /// to first byte: instantiation, handshake, channel, program start).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_byte_ms: Option<f64>,
    pub duration_ms: u64,
}

/// The result of one phase.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    pub name: String,
    pub when: PhaseWhen,
    /// `when` is `always` (kept for readers of the first `--json` format).
    pub always: bool,
    pub steps: Vec<StepReport>,
}

/// Timing figures of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Metrics {
    pub compile_cache: crate::runtime::CacheOutcome,
    pub load_ms: f64,
    pub plan_instantiate_us: u64,
    pub total_ms: f64,
}

/// Everything a run produced.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub plugin: String,
    pub version: String,
    pub command: String,
    pub dry_run: bool,
    /// Set when the plan itself failed; no phase ran then.
    pub plan_error: Option<String>,
    /// The plan refused the operator's arguments (`plan_error` says why):
    /// a usage error, exit status 2.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub usage_error: bool,
    /// Why the rollout stopped early, if it did.
    pub halted: Option<String>,
    /// The signal that stopped the run (`SIGINT`, `SIGTERM`), if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<&'static str>,
    pub plan_events: Vec<Event>,
    pub phases: Vec<PhaseReport>,
    pub metrics: Metrics,
}

impl RunReport {
    /// True when the plan and every step that ran succeeded.
    pub fn succeeded(&self) -> bool {
        self.interrupted.is_none()
            && self.plan_error.is_none()
            && self
                .phases
                .iter()
                .flat_map(|p| &p.steps)
                .all(|s| !s.status.is_failure())
    }

    /// Every mutation recorded during a dry run, in order.
    pub fn mutations(&self) -> impl Iterator<Item = &Mutation> {
        self.phases
            .iter()
            .flat_map(|p| &p.steps)
            .flat_map(|s| &s.mutations)
    }
}

/// Plan and apply `invocation` with `plugin` on `cluster`, journaling the
/// plan and every step when `journal` is given.
pub async fn run(
    plugin: Arc<LoadedPlugin>,
    version: String,
    cluster: Arc<Cluster>,
    invocation: api::Invocation,
    opts: RunOptions,
    journal: Option<JournalHandle>,
) -> RunReport {
    let start = Instant::now();
    let ctx = call_ctx(&plugin, &cluster, &opts, ReadOnly::Plan, None, None);
    let CallReport {
        result,
        events: plan_events,
        instantiate,
        ..
    } = plugin.plan(ctx, opts.limits, &invocation).await;
    let plan_events = plan_events
        .into_iter()
        .map(|mut e| {
            e.message = opts.secrets.text(e.message);
            e
        })
        .collect();
    let mut report = new_report(
        &plugin,
        version,
        &invocation,
        &opts,
        plan_events,
        instantiate,
    );
    report.usage_error = matches!(result, Err(CallError::Usage(_)));
    let plan = match result.map_err(|e| e.to_string()).and_then(check_plan_size) {
        Ok(plan) => plan,
        Err(e) => {
            report.plan_error = Some(cap_text(opts.secrets.text(e), MAX_STEP_MESSAGE));
            report.metrics.total_ms = start.elapsed().as_secs_f64() * 1e3;
            return report;
        }
    };
    if let Some(j) = &journal
        && let Err(e) = j
            .journal
            .record_plan(j.run, &plan_records(&plan, &opts.secrets))
    {
        report.plan_error = Some(format!("cannot journal the plan, so nothing was run: {e}"));
        return report;
    }
    let shared = Arc::new(RunShared {
        outcomes: Arc::new(RunOutcomes::new(opts.secrets.clone())),
        progress: Progress::new(opts.progress, opts.secrets.clone()),
    });
    apply_plan(
        &plugin,
        &cluster,
        invocation,
        &opts,
        journal,
        plan,
        HashMap::new(),
        shared,
        &mut report,
    )
    .await;
    report.metrics.total_ms = start.elapsed().as_secs_f64() * 1e3;
    report
}

/// Resume a journaled run: its recorded plan, without planning again;
/// finished steps are reported, never run again.
pub async fn resume(
    plugin: Arc<LoadedPlugin>,
    cluster: Arc<Cluster>,
    invocation: api::Invocation,
    opts: RunOptions,
    journal: JournalHandle,
    record: &RunRecord,
) -> RunReport {
    let start = Instant::now();
    let mut report = new_report(
        &plugin,
        record.version.clone(),
        &invocation,
        &opts,
        vec![],
        Duration::ZERO,
    );
    let mut phases: Vec<api::Phase> = Vec::new();
    let mut done = HashMap::new();
    let shared = Arc::new(RunShared {
        outcomes: Arc::new(RunOutcomes::new(opts.secrets.clone())),
        progress: Progress::new(opts.progress, opts.secrets.clone()),
    });
    for s in &record.steps {
        if phases.len() <= s.phase_index {
            phases.push(api::Phase {
                name: s.phase.clone(),
                when: match s.when {
                    PhaseWhen::Normal => api::PhaseWhen::Normal,
                    PhaseWhen::Always => api::PhaseWhen::Always,
                    PhaseWhen::OnFailure => api::PhaseWhen::OnFailure,
                },
                steps: vec![],
            });
        }
        phases[s.phase_index].steps.push(api::Step {
            node: s.node.clone(),
            name: s.name.clone(),
            payload: s.payload.clone(),
        });
        if s.state.finished() {
            done.insert(
                (s.phase_index, s.step_index),
                (s.state, s.message.clone(), s.data.clone()),
            );
            // What the earlier attempts did is there for `run.outcomes`.
            shared.outcomes.finished(Finished {
                phase_index: s.phase_index,
                step_index: s.step_index,
                phase: s.phase.clone(),
                node: s.node.clone(),
                name: s.name.clone(),
                status: StepStatus::from_state(s.state),
                message: s.message.clone(),
                data: s.data.clone(),
            });
        }
    }
    let plan = api::ExecutionPlan { phases };
    apply_plan(
        &plugin,
        &cluster,
        invocation,
        &opts,
        Some(journal),
        plan,
        done,
        shared,
        &mut report,
    )
    .await;
    report.metrics.total_ms = start.elapsed().as_secs_f64() * 1e3;
    report
}

fn call_ctx(
    plugin: &LoadedPlugin,
    cluster: &Arc<Cluster>,
    opts: &RunOptions,
    read_only: ReadOnly,
    shared: Option<Arc<RunOutcomes>>,
    progress: Option<Arc<dyn LiveStep>>,
) -> Arc<CallCtx> {
    Arc::new(
        CallCtx::new(
            plugin.name.clone(),
            cluster.clone(),
            plugin.grant.clone(),
            opts.dry_run,
            opts.exec_timeout,
        )
        .read_only(read_only)
        .with_patches(opts.patches.clone())
        .in_run(shared, progress),
    )
}

fn new_report(
    plugin: &LoadedPlugin,
    version: String,
    invocation: &api::Invocation,
    opts: &RunOptions,
    plan_events: Vec<Event>,
    instantiate: Duration,
) -> RunReport {
    RunReport {
        plugin: plugin.name.clone(),
        version,
        command: invocation.command.clone(),
        dry_run: opts.dry_run,
        plan_error: None,
        usage_error: false,
        halted: None,
        interrupted: None,
        plan_events,
        phases: Vec::new(),
        metrics: Metrics {
            compile_cache: plugin.cache,
            load_ms: plugin.load_time.as_secs_f64() * 1e3,
            plan_instantiate_us: instantiate.as_micros() as u64,
            total_ms: 0.0,
        },
    }
}

/// Longest step message (or plan error) kept in the report and journal.
pub const MAX_STEP_MESSAGE: usize = 64 << 10;
/// Most steps in one plan, the largest step payload, and the most bytes
/// of payloads, names and node names in one plan together.
pub const MAX_PLAN_STEPS: usize = 100_000;
pub const MAX_PAYLOAD: usize = 1 << 20;
pub const MAX_PLAN_BYTES: usize = 64 << 20;

/// Refuse a plan bigger than the host keeps (the plugin made it).
fn check_plan_size(plan: api::ExecutionPlan) -> Result<api::ExecutionPlan, String> {
    let steps: Vec<&api::Step> = plan.phases.iter().flat_map(|p| &p.steps).collect();
    if steps.len() > MAX_PLAN_STEPS {
        return Err(format!(
            "the plan has {} steps, more than the {MAX_PLAN_STEPS} a plan may have",
            steps.len()
        ));
    }
    if let Some(big) = steps.iter().find(|s| s.payload.len() > MAX_PAYLOAD) {
        return Err(format!(
            "step `{}` carries a payload of {} bytes, more than the {MAX_PAYLOAD} bytes a step may carry",
            cap_text(big.name.clone(), 200),
            big.payload.len()
        ));
    }
    let bytes: usize = plan
        .phases
        .iter()
        .map(|p| {
            p.name.len()
                + p.steps
                    .iter()
                    .map(|s| s.payload.len() + s.name.len() + s.node.len())
                    .sum::<usize>()
        })
        .sum();
    if bytes > MAX_PLAN_BYTES {
        return Err(format!(
            "the plan is {bytes} bytes, more than the {MAX_PLAN_BYTES} bytes a plan may be"
        ));
    }
    Ok(plan)
}

/// The journal rows of a fresh plan, all pending.
/// Payloads are journaled with secrets hidden (a run that took secrets is
/// not resumed; see `stackhost resume`).
fn plan_records(plan: &api::ExecutionPlan, secrets: &Redactor) -> Vec<StepRecord> {
    plan.phases
        .iter()
        .enumerate()
        .flat_map(|(pi, phase)| {
            phase
                .steps
                .iter()
                .enumerate()
                .map(move |(si, step)| StepRecord {
                    phase_index: pi,
                    step_index: si,
                    phase: phase.name.clone(),
                    when: when(phase.when),
                    node: step.node.clone(),
                    name: step.name.clone(),
                    payload: secrets.text(step.payload.clone()),
                    state: StepState::Pending,
                    message: String::new(),
                    attempts: 0,
                    data: None,
                })
        })
        .collect()
}

/// The journal's form of a plan's `phase-when`.
fn when(w: api::PhaseWhen) -> PhaseWhen {
    match w {
        api::PhaseWhen::Normal => PhaseWhen::Normal,
        api::PhaseWhen::Always => PhaseWhen::Always,
        api::PhaseWhen::OnFailure => PhaseWhen::OnFailure,
    }
}

/// A finished step from an earlier attempt: its state, message and data.
type Done = (StepState, String, Option<String>);

/// Run the phases in order under the rollout policy, skipping the steps
/// in `done`. One failure budget covers the whole run; a node whose step
/// failed takes no part in later normal phases. `always` phases run
/// whatever happened; `on-failure` phases only once a step failed or the
/// run halted.
#[allow(clippy::too_many_arguments)]
async fn apply_plan(
    plugin: &Arc<LoadedPlugin>,
    cluster: &Arc<Cluster>,
    invocation: api::Invocation,
    opts: &RunOptions,
    journal: Option<JournalHandle>,
    plan: api::ExecutionPlan,
    done: HashMap<(usize, usize), Done>,
    shared: Arc<RunShared>,
    report: &mut RunReport,
) {
    let invocation = Arc::new(invocation);
    let nodes: BTreeSet<&str> = plan
        .phases
        .iter()
        .flat_map(|p| &p.steps)
        .map(|s| s.node.as_str())
        .collect();
    let budget = opts.rollout.budget(nodes.len());
    let mut failures = 0usize;
    let mut failed_nodes: BTreeSet<String> = BTreeSet::new();
    let mut halted: Option<String> = None;
    let not_run_here = |j: &Option<JournalHandle>, pi, si, why: &str| {
        if let Some(j) = j {
            let _ = j
                .journal
                .step_finished(j.run, pi, si, StepState::NotRun, why, None);
        }
    };
    for (pi, phase) in plan.phases.into_iter().enumerate() {
        let when = when(phase.when);
        let phase_name = Arc::new(phase.name.clone());
        let n = phase.steps.len();
        let mut pending: Vec<Option<api::Step>> = phase.steps.into_iter().map(Some).collect();
        let mut results: Vec<Option<StepReport>> = (0..n).map(|_| None).collect();
        let semaphore = Arc::new(tokio::sync::Semaphore::new(opts.rollout.in_flight(n)));
        // Decided once, when the phase starts: whether anything failed
        // before it.
        let failed_before = failures > 0 || halted.is_some();
        for (bi, batch) in opts.rollout.batches(n).into_iter().enumerate() {
            let canary = opts.rollout.canaries > 0 && bi == 0;
            let mut tasks = tokio::task::JoinSet::new();
            // Each task with its step, and whether the step got past its
            // wait for a slot (an interrupted step that never started is
            // `not-run`, not stopped).
            let mut running: HashMap<
                tokio::task::Id,
                (usize, String, String, Arc<std::sync::atomic::AtomicBool>),
            > = HashMap::new();
            for si in batch {
                let step = pending[si].take().expect("each step is in one batch");
                let interrupted = opts
                    .interrupt
                    .as_ref()
                    .and_then(|i| i.signal())
                    .map(|sig| format!("interrupted by {} before it started", sig.name()));
                let skip = interrupted.or_else(|| match when {
                    PhaseWhen::Normal => halted
                        .as_deref()
                        .or_else(|| {
                            failed_nodes
                                .contains(&step.node)
                                .then_some("this node failed earlier in the run")
                        })
                        .map(str::to_string),
                    PhaseWhen::Always => None,
                    PhaseWhen::OnFailure => (!failed_before)
                        .then(|| "an on-failure phase, and nothing failed".to_string()),
                });
                if let Some(why) = skip {
                    not_run_here(&journal, pi, si, &why);
                    let r = not_run(step, &why);
                    shared
                        .outcomes
                        .finished(finished(pi, si, &phase_name, &r, None));
                    results[si] = Some(r);
                    continue;
                }
                if let Some((state, message, data)) = done.get(&(pi, si)) {
                    let status = StepStatus::from_state(*state);
                    let message = format!("done in an earlier attempt: {message}");
                    results[si] = Some(StepReport {
                        status,
                        message,
                        data: data.as_deref().and_then(|d| serde_json::from_str(d).ok()),
                        ..not_run(step, "")
                    });
                    continue;
                }
                if cluster.get(&step.node).is_none() {
                    let msg = format!(
                        "the plan names node `{}`, which is not part of this run",
                        step.node
                    );
                    if let Some(j) = &journal {
                        let _ =
                            j.journal
                                .step_finished(j.run, pi, si, StepState::Failed, &msg, None);
                    }
                    let r = failed_step(step, msg);
                    shared
                        .outcomes
                        .finished(finished(pi, si, &phase_name, &r, None));
                    let (node, name) = (r.node.clone(), r.name.clone());
                    let task = tasks.spawn(async move { (si, r) });
                    running.insert(task.id(), (si, node, name, Default::default()));
                    continue;
                }
                let (plugin, inv, sem) = (plugin.clone(), invocation.clone(), semaphore.clone());
                let secrets = opts.secrets.clone();
                let read_only = if opts.read_only {
                    ReadOnly::Command
                } else {
                    ReadOnly::No
                };
                let (cluster, opts, limits, journal) =
                    (cluster.clone(), opts.clone(), opts.limits, journal.clone());
                let (shared, phase_name) = (shared.clone(), phase_name.clone());
                let (node, name) = (step.node.clone(), step.name.clone());
                let started = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let started_here = started.clone();
                let task = tasks.spawn(async move {
                    let _permit = sem.acquire_owned().await.expect("semaphore never closes");
                    // Interrupted while this step waited for its slot.
                    if let Some(sig) = opts.interrupt.as_ref().and_then(|i| i.signal()) {
                        let why = format!("interrupted by {} before it started", sig.name());
                        return (si, not_run(step, &why));
                    }
                    started_here.store(true, std::sync::atomic::Ordering::SeqCst);
                    if let Some(j) = &journal
                        && let Err(e) = j.journal.step_started(j.run, pi, si)
                    {
                        // Nothing lost: a step that cannot be journaled does not run.
                        return (
                            si,
                            failed_step(
                                step,
                                format!("cannot journal the step, so it did not run: {e}"),
                            ),
                        );
                    }
                    let progress: Arc<dyn LiveStep> =
                        Arc::new(shared.progress.step(&step.node, &step.name));
                    let ctx = call_ctx(
                        &plugin,
                        &cluster,
                        &opts,
                        read_only,
                        Some(shared.outcomes.clone()),
                        Some(progress),
                    );
                    let report = redact_step(
                        &secrets,
                        apply(&plugin, &secrets, ctx, limits, &inv, step).await,
                    );
                    let data = report.data.as_ref().map(|d| d.to_string());
                    if let Some(j) = &journal
                        && let Err(e) = j.journal.step_finished(
                            j.run,
                            pi,
                            si,
                            report.status.into(),
                            &report.message,
                            data.as_deref(),
                        )
                    {
                        // The step ran: keep its end to record once the
                        // database is back, and start no more steps, since
                        // none could be journaled before it runs.
                        eprintln!(
                            "error: cannot journal the end of step {} on {}: {e}; no new step \
                             starts",
                            report.name, report.node
                        );
                        j.unrecorded.lock().unwrap_or_else(|p| p.into_inner()).push(
                            UnrecordedStep {
                                phase: pi,
                                step: si,
                                state: report.status.into(),
                                message: report.message.clone(),
                                data: data.clone(),
                            },
                        );
                        if let Some(i) = &opts.interrupt {
                            i.raise(crate::run::interrupt::Signal::JournalLost);
                        }
                    }
                    shared
                        .outcomes
                        .finished(finished(pi, si, &phase_name, &report, data));
                    (si, report)
                });
                running.insert(task.id(), (si, node, name, started));
            }
            let mut batch_failed = Vec::new();
            let mut stopping = false;
            loop {
                let joined = match opts.interrupt.as_ref().filter(|_| !stopping) {
                    Some(interrupt) => tokio::select! {
                        joined = tasks.join_next_with_id() => joined,
                        () = interrupt.wait() => {
                            // Dropping a step's future kills its programs'
                            // process groups and removes its unfinished
                            // artifacts (see cluster::local, ssh::group,
                            // artifact::Writer).
                            tasks.abort_all();
                            stopping = true;
                            continue;
                        }
                    },
                    None => tasks.join_next_with_id().await,
                };
                let Some(joined) = joined else { break };
                let (si, step) = match joined {
                    Ok((_, pair)) => pair,
                    Err(e) if e.is_cancelled() => {
                        let (si, node, name, started) =
                            running.remove(&e.id()).expect("every task is in `running`");
                        let sig = opts
                            .interrupt
                            .as_ref()
                            .and_then(|i| i.signal())
                            .map_or("a signal", |s| s.name());
                        let step = api::Step {
                            node,
                            name,
                            payload: String::new(),
                        };
                        if !started.load(std::sync::atomic::Ordering::SeqCst) {
                            // It never started: still pending in the journal.
                            let r =
                                not_run(step, &format!("interrupted by {sig} before it started"));
                            shared
                                .outcomes
                                .finished(finished(pi, si, &phase_name, &r, None));
                            results[si] = Some(r);
                            continue;
                        }
                        let message = format!(
                            "interrupted by {sig} while running: stopped, and its programs killed"
                        );
                        if let Some(j) = &journal {
                            let _ = j.journal.step_finished(
                                j.run,
                                pi,
                                si,
                                StepState::Interrupted,
                                &message,
                                None,
                            );
                        }
                        let r = StepReport {
                            status: StepStatus::Interrupted,
                            ..failed_step(step, message)
                        };
                        shared
                            .outcomes
                            .finished(finished(pi, si, &phase_name, &r, None));
                        (si, r)
                    }
                    // A panic here is a host bug; let it surface as one.
                    Err(e) => std::panic::resume_unwind(e.into_panic()),
                };
                if step.status.is_failure() {
                    failures += 1;
                    failed_nodes.insert(step.node.clone());
                    batch_failed.push(step.node.clone());
                }
                results[si] = Some(step);
            }
            if halted.is_none() && canary && !batch_failed.is_empty() {
                halted = Some(format!("canary step failed on {}", batch_failed.join(", ")));
            } else if halted.is_none() && failures > budget {
                halted = Some(format!(
                    "{failures} failed step(s) exceeded the run's failure budget of {budget} (--max-fail)"
                ));
            }
            if let Some(why) = &halted {
                shared.outcomes.halted(why);
            }
        }
        let steps = results
            .into_iter()
            .map(|r| r.expect("every step has a result"))
            .collect();
        report.phases.push(PhaseReport {
            name: phase.name,
            when,
            always: when == PhaseWhen::Always,
            steps,
        });
    }
    report.halted = halted;
    report.interrupted = opts
        .interrupt
        .as_ref()
        .and_then(|i| i.signal())
        .map(|s| s.name());
}

/// A step's result as `run.outcomes` gives it.
fn finished(pi: usize, si: usize, phase: &str, r: &StepReport, data: Option<String>) -> Finished {
    Finished {
        phase_index: pi,
        step_index: si,
        phase: phase.to_string(),
        node: r.node.clone(),
        name: r.name.clone(),
        status: r.status,
        message: r.message.clone(),
        data,
    }
}

/// The most bytes of data one step may return.
pub const MAX_DATA: usize = 1 << 20;

async fn apply(
    plugin: &LoadedPlugin,
    secrets: &Redactor,
    ctx: Arc<CallCtx>,
    limits: CallLimits,
    inv: &api::Invocation,
    step: api::Step,
) -> StepReport {
    let start = Instant::now();
    let cluster = ctx.cluster.clone();
    let CallReport {
        result,
        mutations,
        events,
        instantiate,
    } = plugin.apply_step(ctx, limits, inv, &step).await;
    let ms = |d: std::time::Duration| (d.as_secs_f64() * 1e4).round() / 10.0;
    let node = cluster.get(&step.node);
    let handshake_ms = node.and_then(|n| n.transport.take_handshake()).map(ms);
    // An answer from before this step began was another step's.
    let first_byte_ms = node
        .and_then(|n| n.transport.take_first_byte())
        .and_then(|t| t.checked_duration_since(start))
        .map(ms);
    let (status, message, data) = match result {
        Ok(out) => {
            let status = match out.status {
                api::StepStatus::Ok => StepStatus::Ok,
                api::StepStatus::Changed => StepStatus::Changed,
                api::StepStatus::Skipped => StepStatus::Skipped,
            };
            match out.data.map(parse_data).transpose() {
                Ok(data) => (status, out.message, data),
                // The step did its work; its result is unusable, and a
                // rollback reading it would be misled: say so as a failure.
                Err(why) => (
                    StepStatus::Failed,
                    format!("{} (the step's data was refused: {why})", out.message),
                    None,
                ),
            }
        }
        Err(e @ CallError::Plugin(crate::caps::bindings::WitError::Unreachable(_))) => {
            (StepStatus::Unreachable, e.to_string(), None)
        }
        Err(e) => (StepStatus::Failed, e.to_string(), None),
    };
    // The plugin chose the message: keep the report and journal small
    // (secrets hidden first, so the cut cannot leave half of one).
    let message = cap_text(secrets.text(message), MAX_STEP_MESSAGE);
    StepReport {
        node: step.node,
        name: step.name,
        status,
        message,
        data,
        events,
        mutations,
        instantiate_us: instantiate.as_micros() as u64,
        handshake_ms,
        first_byte_ms,
        duration_ms: start.elapsed().as_millis() as u64,
    }
}

/// `r` with the run's secrets hidden in its message, events, mutations and data.
fn redact_step(secrets: &Redactor, mut r: StepReport) -> StepReport {
    if secrets.is_empty() {
        return r;
    }
    r.message = secrets.text(r.message);
    for e in &mut r.events {
        e.message = secrets.text(std::mem::take(&mut e.message));
    }
    for m in &mut r.mutations {
        m.detail = secrets.text(std::mem::take(&mut m.detail));
        m.diff = m.diff.take().map(|d| secrets.text(d));
    }
    if let Some(data) = &mut r.data {
        secrets.json(data);
    }
    r
}

/// A step's data: a JSON document of at most [`MAX_DATA`] bytes.
fn parse_data(text: String) -> Result<serde_json::Value, String> {
    if text.len() > MAX_DATA {
        return Err(format!(
            "it is {} bytes, more than the {MAX_DATA} bytes a step's data may be",
            text.len()
        ));
    }
    serde_json::from_str(&text).map_err(|e| format!("it is not JSON: {e}"))
}

fn not_run(step: api::Step, why: &str) -> StepReport {
    StepReport {
        status: StepStatus::NotRun,
        ..failed_step(step, why.into())
    }
}

fn failed_step(step: api::Step, message: String) -> StepReport {
    StepReport {
        node: step.node,
        name: step.name,
        status: StepStatus::Failed,
        message,
        data: None,
        events: vec![],
        mutations: vec![],
        instantiate_us: 0,
        handshake_ms: None,
        first_byte_ms: None,
        duration_ms: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_data_must_be_json_and_small() {
        assert_eq!(parse_data(r#"{"a":[1,2]}"#.into()).unwrap()["a"][1], 2);
        assert!(
            parse_data("not json".into())
                .unwrap_err()
                .contains("not JSON")
        );
        let big = format!("\"{}\"", "x".repeat(MAX_DATA));
        assert!(
            parse_data(big)
                .unwrap_err()
                .contains("more than the 1048576 bytes")
        );
    }
}
