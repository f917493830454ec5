//! Plan, then apply: the host asks the plugin for a plan, then a
//! [`Rollout`] runs its phases in order, the steps of a phase concurrently
//! across nodes under the rollout policy, each step in a fresh instance.
//! After a failure the remaining phases are skipped except `always` ones,
//! and the `on-failure` ones run (they are skipped when nothing failed).
//! Every step can read the outcomes of the steps finished before it
//! (`run.outcomes`).

use crate::caps::bindings::WitError;
use crate::caps::bindings::exports::stackhost::host::commands as api;
use crate::caps::ctx::{CallCtx, LiveStep, ReadOnly};
use crate::caps::patches::PatchRunner;
use crate::caps::run::{Finished, RunOutcomes, StepStatus};
use crate::cluster::Cluster;
use crate::redact::Redactor;
use crate::run::interrupt::{Interrupt, Signal};
use crate::run::journal::{Journal, PhaseWhen, RunRecord, StepState};
use crate::run::plan::{self, Done, MAX_STEP_MESSAGE};
use crate::run::policy::RolloutPolicy;
use crate::run::progress::{self, Progress};
use crate::run::report::{Metrics, PhaseReport, RunReport, StepReport};
use crate::runtime::{CallError, CallLimits, CallReport, LoadedPlugin};
use crate::text::cap_text;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::{Id, JoinSet};

/// How a run is carried out.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub dry_run: bool,
    pub limits: CallLimits,
    /// Default and upper bound for one program's run time.
    pub exec_timeout: Duration,
    /// Serial batches, canaries, concurrency and the failure budget.
    pub rollout: RolloutPolicy,
    /// The command is declared read-only: mutating calls are refused.
    pub read_only: bool,
    /// The installed vendor patches, for a plugin granted `patches`.
    pub patches: Option<Arc<dyn PatchRunner>>,
    /// Values of the run's secret arguments: shown as `***` in everything
    /// the run reports or journals.
    pub secrets: Arc<Redactor>,
    /// How steps' progress and live output are shown while they run.
    pub progress: progress::Mode,
    /// Set by SIGINT or SIGTERM: no new step starts, running ones stop.
    pub interrupt: Option<Arc<Interrupt>>,
    /// Asked once the plan is made and before any step runs (a
    /// destructive command's confirmation): `Err` with why not, and
    /// nothing runs.
    pub confirm: Option<Confirm>,
}

/// A confirmation asked with the plan (see [`RunOptions::confirm`]).
#[derive(Clone)]
pub struct Confirm(pub Arc<ConfirmFn>);

/// What a [`Confirm`] calls: `Err` with why the run must not go on.
pub type ConfirmFn = dyn Fn(&api::ExecutionPlan) -> Result<(), String> + Send + Sync;

impl std::fmt::Debug for Confirm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Confirm(..)")
    }
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

impl RunOptions {
    /// What the run lends its capabilities.
    fn extensions(&self) -> crate::caps::ctx::Extensions {
        let mut lent = crate::caps::ctx::Extensions::default();
        if let Some(patches) = &self.patches {
            lent.insert(crate::caps::patches::Lent(patches.clone()));
        }
        lent
    }
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
        events,
        instantiate,
        ..
    } = plugin.plan(ctx, opts.limits, &invocation).await;
    let events = events
        .into_iter()
        .map(|mut e| {
            e.message = opts.secrets.text(e.message);
            e
        })
        .collect();
    let mut report = new_report(&plugin, version, &invocation, &opts, events, instantiate);
    report.usage_error = matches!(result, Err(CallError::Usage(_)));
    let plan = match result
        .map_err(|e| e.to_string())
        .and_then(plan::check_plan_size)
    {
        Ok(plan) => plan,
        Err(e) => {
            report.plan_error = Some(cap_text(opts.secrets.text(e), MAX_STEP_MESSAGE));
            report.metrics.total_ms = start.elapsed().as_secs_f64() * 1e3;
            return report;
        }
    };
    if let Some(confirm) = &opts.confirm {
        let asked = confirm.0.clone();
        let shown = plan.clone();
        // The answer comes from the terminal: off the async threads.
        let answer = tokio::task::spawn_blocking(move || asked(&shown))
            .await
            .unwrap_or_else(|e| Err(format!("the confirmation failed: {e}")));
        if let Err(why) = answer {
            report.declined = Some(why);
            report.metrics.total_ms = start.elapsed().as_secs_f64() * 1e3;
            return report;
        }
    }
    if let Some(j) = &journal
        && let Err(e) = j
            .journal
            .record_plan(j.run, &plan::plan_records(&plan, &opts.secrets))
    {
        report.plan_error = Some(format!("cannot journal the plan, so nothing was run: {e}"));
        return report;
    }
    let rollout = Rollout::new(plugin, cluster, invocation, opts, journal, HashMap::new());
    rollout.apply(plan, &mut report).await;
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
    let recorded = plan::recorded(record);
    let rollout = Rollout::new(
        plugin,
        cluster,
        invocation,
        opts,
        Some(journal),
        recorded.done,
    );
    // What the earlier attempts did is there for `run.outcomes`.
    for f in recorded.finished {
        rollout.outcomes.finished(f);
    }
    rollout.apply(recorded.plan, &mut report).await;
    report.metrics.total_ms = start.elapsed().as_secs_f64() * 1e3;
    report
}

/// A run being applied: the plugin, the nodes, the journal, the live
/// display and the run's failure budget, carried through its phases and
/// batches. One failure budget covers the whole run; a node whose step
/// failed takes no part in later normal phases.
struct Rollout {
    plugin: Arc<LoadedPlugin>,
    cluster: Arc<Cluster>,
    invocation: Arc<api::Invocation>,
    opts: RunOptions,
    journal: Option<JournalHandle>,
    /// Steps finished in an earlier attempt (a resumed run).
    done: HashMap<(usize, usize), Done>,
    outcomes: Arc<RunOutcomes>,
    progress: Arc<Progress>,
    /// Nodes with a failed step the run may absorb and go on
    /// (`--max-fail`).
    budget: usize,
    failures: usize,
    failed_nodes: BTreeSet<String>,
    halted: Option<String>,
}

/// The steps of one batch running as tasks: each task's phase index,
/// step index, node and name, and whether it got past its wait for a
/// slot (an interrupted step that never started is `not-run`, not
/// stopped).
type Running = HashMap<Id, (usize, String, String, Arc<AtomicBool>)>;

impl Rollout {
    fn new(
        plugin: Arc<LoadedPlugin>,
        cluster: Arc<Cluster>,
        invocation: api::Invocation,
        opts: RunOptions,
        journal: Option<JournalHandle>,
        done: HashMap<(usize, usize), Done>,
    ) -> Rollout {
        Rollout {
            outcomes: Arc::new(RunOutcomes::new(opts.secrets.clone())),
            progress: Arc::new(Progress::new(opts.progress, opts.secrets.clone())),
            plugin,
            cluster,
            invocation: Arc::new(invocation),
            opts,
            journal,
            done,
            budget: 0,
            failures: 0,
            failed_nodes: BTreeSet::new(),
            halted: None,
        }
    }

    /// Run the phases in order. `always` phases run whatever happened;
    /// `on-failure` phases only once a step failed or the run halted.
    async fn apply(mut self, plan: api::ExecutionPlan, report: &mut RunReport) {
        let nodes: BTreeSet<&str> = plan
            .phases
            .iter()
            .flat_map(|p| &p.steps)
            .map(|s| s.node.as_str())
            .collect();
        self.budget = self.opts.rollout.budget(nodes.len());
        for (pi, phase) in plan.phases.into_iter().enumerate() {
            let phase = self.phase(pi, phase).await;
            report.phases.push(phase);
        }
        report.interrupted = self.signal().map(|s| s.name());
        report.halted = self.halted;
    }

    fn signal(&self) -> Option<Signal> {
        self.opts.interrupt.as_ref().and_then(|i| i.signal())
    }

    async fn phase(&mut self, pi: usize, phase: api::Phase) -> PhaseReport {
        let when = plan::when(phase.when);
        let name = Arc::new(phase.name);
        let n = phase.steps.len();
        let mut pending: Vec<Option<api::Step>> = phase.steps.into_iter().map(Some).collect();
        let mut results: Vec<Option<StepReport>> = (0..n).map(|_| None).collect();
        let slots = Arc::new(tokio::sync::Semaphore::new(self.opts.rollout.in_flight(n)));
        // Decided once, when the phase starts: whether anything failed
        // before it.
        let failed_before = self.failures > 0 || self.halted.is_some();
        for (bi, batch) in self.opts.rollout.batches(n).into_iter().enumerate() {
            let phase = PhaseCtx {
                pi,
                name: name.clone(),
                when,
                failed_before,
                slots: slots.clone(),
            };
            let mut tasks = JoinSet::new();
            let mut running = Running::new();
            for si in batch {
                let step = pending[si].take().expect("each step is in one batch");
                if let Some(r) = self.start_step(&phase, si, step, &mut tasks, &mut running) {
                    results[si] = Some(r);
                }
            }
            let failed = self.join(&phase, tasks, running, &mut results).await;
            self.judge(bi, failed);
        }
        PhaseReport {
            name: name.to_string(),
            when,
            always: when == PhaseWhen::Always,
            steps: results
                .into_iter()
                .map(|r| r.expect("every step has a result"))
                .collect(),
        }
    }

    /// After a batch: a failed canary, or failures past the budget, halt
    /// the run.
    fn judge(&mut self, batch: usize, failed_nodes: Vec<String>) {
        let canary = self.opts.rollout.canaries > 0 && batch == 0;
        if self.halted.is_none() && canary && !failed_nodes.is_empty() {
            self.halted = Some(format!("canary step failed on {}", failed_nodes.join(", ")));
        } else if self.halted.is_none() && self.failed_nodes.len() > self.budget {
            // Nodes, not steps: the budget is a share of the run's nodes,
            // and a node whose step failed in an `always` phase too must
            // not count twice (so `--max-fail 100%` never halts).
            self.halted = Some(format!(
                "{} node(s) with a failed step exceeded the run's failure budget of {} \
                 (--max-fail)",
                self.failed_nodes.len(),
                self.budget
            ));
        }
        if let Some(why) = &self.halted {
            self.outcomes.halted(why);
        }
    }

    /// Why step `step` of `phase` does not run now, if it does not.
    fn skip_reason(&self, phase: &PhaseCtx, step: &api::Step) -> Option<String> {
        if let Some(sig) = self.signal() {
            return Some(format!("interrupted by {} before it started", sig.name()));
        }
        match phase.when {
            PhaseWhen::Normal => self
                .halted
                .as_deref()
                .or_else(|| {
                    self.failed_nodes
                        .contains(&step.node)
                        .then_some("this node failed earlier in the run")
                })
                .map(str::to_string),
            PhaseWhen::Always => None,
            PhaseWhen::OnFailure => (!phase.failed_before)
                .then(|| "an on-failure phase, and nothing failed".to_string()),
        }
    }

    /// Start step `si`, or give its result at once when it does not run
    /// (skipped, done in an earlier attempt).
    fn start_step(
        &self,
        phase: &PhaseCtx,
        si: usize,
        step: api::Step,
        tasks: &mut JoinSet<(usize, StepReport)>,
        running: &mut Running,
    ) -> Option<StepReport> {
        let pi = phase.pi;
        if let Some(why) = self.skip_reason(phase, &step) {
            self.journal_end(pi, si, StepState::NotRun, &why, None);
            let r = not_run(step, &why);
            self.outcomes
                .finished(finished(pi, si, &phase.name, &r, None));
            return Some(r);
        }
        if let Some((state, message, data)) = self.done.get(&(pi, si)) {
            return Some(StepReport {
                status: StepStatus::from_state(*state),
                message: format!("done in an earlier attempt: {message}"),
                data: data.as_deref().and_then(|d| serde_json::from_str(d).ok()),
                ..not_run(step, "")
            });
        }
        if self.cluster.get(&step.node).is_none() {
            let msg = format!(
                "the plan names node `{}`, which is not part of this run",
                step.node
            );
            self.journal_end(pi, si, StepState::Failed, &msg, None);
            let r = failed_step(step, msg);
            self.outcomes
                .finished(finished(pi, si, &phase.name, &r, None));
            let (node, name) = (r.node.clone(), r.name.clone());
            let task = tasks.spawn(async move { (si, r) });
            running.insert(task.id(), (si, node, name, Default::default()));
            return None;
        }
        let started = Arc::new(AtomicBool::new(false));
        let (node, name) = (step.node.clone(), step.name.clone());
        let job = StepJob {
            pi,
            si,
            phase: phase.name.clone(),
            step,
            slots: phase.slots.clone(),
            started: started.clone(),
            plugin: self.plugin.clone(),
            cluster: self.cluster.clone(),
            invocation: self.invocation.clone(),
            opts: self.opts.clone(),
            journal: self.journal.clone(),
            outcomes: self.outcomes.clone(),
            progress: self.progress.clone(),
        };
        let task = tasks.spawn(async move { (si, job.run().await) });
        running.insert(task.id(), (si, node, name, started));
        None
    }

    /// Wait for the batch's tasks; on SIGINT or SIGTERM stop them all.
    /// Returns the nodes whose steps failed.
    async fn join(
        &mut self,
        phase: &PhaseCtx,
        mut tasks: JoinSet<(usize, StepReport)>,
        mut running: Running,
        results: &mut [Option<StepReport>],
    ) -> Vec<String> {
        let mut failed = Vec::new();
        let mut stopping = false;
        loop {
            let interrupt = self.opts.interrupt.clone().filter(|_| !stopping);
            let joined = match interrupt {
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
                    let entry = running.remove(&e.id()).expect("every task is in `running`");
                    let (si, r) = self.stopped(phase, entry);
                    if r.status == StepStatus::NotRun {
                        results[si] = Some(r);
                        continue;
                    }
                    (si, r)
                }
                // A panic here is a host bug; let it surface as one.
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            };
            if step.status.is_failure() {
                self.failures += 1;
                self.failed_nodes.insert(step.node.clone());
                failed.push(step.node.clone());
            }
            results[si] = Some(step);
        }
        failed
    }

    /// The result of a step stopped by a signal: `not-run` if it never got
    /// a slot (still pending in the journal), else `interrupted`.
    fn stopped(
        &self,
        phase: &PhaseCtx,
        (si, node, name, started): (usize, String, String, Arc<AtomicBool>),
    ) -> (usize, StepReport) {
        let sig = self.signal().map_or("a signal", |s| s.name());
        let step = api::Step {
            node,
            name,
            payload: String::new(),
        };
        let pi = phase.pi;
        if !started.load(Ordering::SeqCst) {
            let r = not_run(step, &format!("interrupted by {sig} before it started"));
            self.outcomes
                .finished(finished(pi, si, &phase.name, &r, None));
            return (si, r);
        }
        let message =
            format!("interrupted by {sig} while running: stopped, and its programs killed");
        self.journal_end(pi, si, StepState::Interrupted, &message, None);
        let r = StepReport {
            status: StepStatus::Interrupted,
            ..failed_step(step, message)
        };
        self.outcomes
            .finished(finished(pi, si, &phase.name, &r, None));
        (si, r)
    }

    /// Journal a step's end, as far as the journal can (a step that never
    /// ran loses nothing if this is not recorded: it is run on resume).
    fn journal_end(&self, pi: usize, si: usize, state: StepState, why: &str, data: Option<&str>) {
        if let Some(j) = &self.journal {
            let _ = j.journal.step_finished(j.run, pi, si, state, why, data);
        }
    }
}

/// What the steps of one batch share about their phase.
struct PhaseCtx {
    pi: usize,
    name: Arc<String>,
    when: PhaseWhen,
    failed_before: bool,
    /// `--max-in-flight`: steps running at once in the phase.
    slots: Arc<tokio::sync::Semaphore>,
}

/// One step to run as a task of its own.
struct StepJob {
    pi: usize,
    si: usize,
    phase: Arc<String>,
    step: api::Step,
    slots: Arc<tokio::sync::Semaphore>,
    started: Arc<AtomicBool>,
    plugin: Arc<LoadedPlugin>,
    cluster: Arc<Cluster>,
    invocation: Arc<api::Invocation>,
    opts: RunOptions,
    journal: Option<JournalHandle>,
    outcomes: Arc<RunOutcomes>,
    progress: Arc<Progress>,
}

impl StepJob {
    /// Wait for a slot, journal the start, run the step, journal its end.
    /// A step that cannot be journaled before it runs does not run.
    async fn run(self) -> StepReport {
        let _permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closes");
        // Interrupted while this step waited for its slot.
        if let Some(sig) = self.opts.interrupt.as_ref().and_then(|i| i.signal()) {
            let why = format!("interrupted by {} before it started", sig.name());
            return not_run(self.step, &why);
        }
        self.started.store(true, Ordering::SeqCst);
        let (pi, si) = (self.pi, self.si);
        if let Some(j) = &self.journal
            && let Err(e) = j.journal.step_started(j.run, pi, si)
        {
            let why = format!("cannot journal the step, so it did not run: {e}");
            return failed_step(self.step, why);
        }
        let live: Arc<dyn LiveStep> =
            Arc::new(self.progress.step(&self.step.node, &self.step.name));
        let read_only = if self.opts.read_only {
            ReadOnly::Command
        } else {
            ReadOnly::No
        };
        let ctx = call_ctx(
            &self.plugin,
            &self.cluster,
            &self.opts,
            read_only,
            Some(self.outcomes.clone()),
            Some(live),
        );
        let secrets = self.opts.secrets.clone();
        let applied = apply_step(
            &self.plugin,
            &secrets,
            ctx,
            self.opts.limits,
            &self.invocation,
            self.step.clone(),
        )
        .await;
        let report = redact_step(&secrets, applied);
        let data = report.data.as_ref().map(|d| d.to_string());
        self.journal_end(&report, data.as_deref());
        self.outcomes
            .finished(finished(pi, si, &self.phase, &report, data));
        report
    }

    /// Journal the step's end. If the journal is out of reach, keep the end
    /// to record once the database is back, and start no more steps, since
    /// none could be journaled before it runs.
    fn journal_end(&self, report: &StepReport, data: Option<&str>) {
        let Some(j) = &self.journal else { return };
        let state = report.status.into();
        let Err(e) = j
            .journal
            .step_finished(j.run, self.pi, self.si, state, &report.message, data)
        else {
            return;
        };
        eprintln!(
            "error: cannot journal the end of step {} on {}: {e}; no new step starts",
            report.name, report.node
        );
        j.unrecorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(UnrecordedStep {
                phase: self.pi,
                step: self.si,
                state,
                message: report.message.clone(),
                data: data.map(str::to_string),
            });
        if let Some(i) = &self.opts.interrupt {
            i.raise(Signal::JournalLost);
        }
    }
}

fn call_ctx(
    plugin: &LoadedPlugin,
    cluster: &Arc<Cluster>,
    opts: &RunOptions,
    read_only: ReadOnly,
    outcomes: Option<Arc<RunOutcomes>>,
    live: Option<Arc<dyn LiveStep>>,
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
        .with_extensions(opts.extensions())
        .in_run(outcomes, live),
    )
}

fn new_report(
    plugin: &LoadedPlugin,
    version: String,
    invocation: &api::Invocation,
    opts: &RunOptions,
    plan_events: Vec<crate::caps::ctx::Event>,
    instantiate: Duration,
) -> RunReport {
    RunReport {
        plugin: plugin.name.clone(),
        version,
        command: invocation.command.clone(),
        dry_run: opts.dry_run,
        plan_error: None,
        usage_error: false,
        declined: None,
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

/// Call the plugin's `apply-step` for `step` and make its report.
async fn apply_step(
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
            match out.data.map(plan::parse_data).transpose() {
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
        Err(e @ CallError::Plugin(WitError::Unreachable(_))) => {
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
