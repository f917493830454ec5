//! Plan, then apply: the host asks the plugin for a plan, then runs its
//! phases in order, the steps of a phase concurrently across nodes, each
//! step in a fresh instance. After a failure the remaining phases are
//! skipped except those marked `always`.

use crate::bindings::exports::stackhost::host::plugin_api as api;
use crate::cluster::Cluster;
use crate::runtime::{CallCtx, CallError, CallLimits, CallReport, Event, LoadedPlugin, Mutation};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a run is carried out.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub dry_run: bool,
    pub limits: CallLimits,
    /// Default and upper bound for one program's run time.
    pub exec_timeout: Duration,
    /// Most steps running at once.
    pub max_in_flight: usize,
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepStatus {
    Ok,
    Changed,
    Skipped,
    Failed,
    /// Not run because an earlier phase failed.
    NotRun,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Ok => "ok",
            StepStatus::Changed => "changed",
            StepStatus::Skipped => "skipped",
            StepStatus::Failed => "failed",
            StepStatus::NotRun => "not-run",
        }
    }
}

/// The result of one step.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub node: String,
    pub name: String,
    pub status: StepStatus,
    pub message: String,
    pub events: Vec<Event>,
    pub mutations: Vec<Mutation>,
    pub instantiate_us: u64,
    pub duration_ms: u64,
}

/// The result of one phase.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    pub name: String,
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
    pub plan_events: Vec<Event>,
    pub phases: Vec<PhaseReport>,
    pub metrics: Metrics,
}

impl RunReport {
    /// True when the plan and every step that ran succeeded.
    pub fn succeeded(&self) -> bool {
        self.plan_error.is_none()
            && self
                .phases
                .iter()
                .flat_map(|p| &p.steps)
                .all(|s| s.status != StepStatus::Failed)
    }

    /// Every mutation recorded during a dry run, in order.
    pub fn mutations(&self) -> impl Iterator<Item = &Mutation> {
        self.phases
            .iter()
            .flat_map(|p| &p.steps)
            .flat_map(|s| &s.mutations)
    }
}

/// Plan and apply `invocation` with `plugin` on `cluster`.
pub async fn run(
    plugin: Arc<LoadedPlugin>,
    version: String,
    cluster: Arc<Cluster>,
    invocation: api::Invocation,
    opts: RunOptions,
) -> RunReport {
    let start = Instant::now();
    let ctx = |opts: &RunOptions| {
        Arc::new(CallCtx::new(
            plugin.name.clone(),
            cluster.clone(),
            plugin.grant.clone(),
            opts.dry_run,
            opts.exec_timeout,
        ))
    };
    let CallReport {
        result,
        events: plan_events,
        instantiate,
        ..
    } = plugin.plan(ctx(&opts), opts.limits, &invocation).await;
    let mut report = RunReport {
        plugin: plugin.name.clone(),
        version,
        command: invocation.command.clone(),
        dry_run: opts.dry_run,
        plan_error: None,
        plan_events,
        phases: Vec::new(),
        metrics: Metrics {
            compile_cache: plugin.cache,
            load_ms: plugin.load_time.as_secs_f64() * 1e3,
            plan_instantiate_us: instantiate.as_micros() as u64,
            total_ms: 0.0,
        },
    };
    let plan = match result {
        Ok(plan) => plan,
        Err(e) => {
            report.plan_error = Some(e.to_string());
            report.metrics.total_ms = start.elapsed().as_secs_f64() * 1e3;
            return report;
        }
    };
    let invocation = Arc::new(invocation);
    let semaphore = Arc::new(tokio::sync::Semaphore::new(opts.max_in_flight.max(1)));
    let mut failed = false;
    for phase in plan.phases {
        if failed && !phase.always {
            let steps = phase
                .steps
                .into_iter()
                .map(|s| not_run(s, "an earlier phase failed"))
                .collect();
            report.phases.push(PhaseReport {
                name: phase.name,
                always: false,
                steps,
            });
            continue;
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (index, step) in phase.steps.into_iter().enumerate() {
            if cluster.get(&step.node).is_none() {
                let msg = format!(
                    "the plan names node `{}`, which is not part of this run",
                    step.node
                );
                tasks.spawn(async move { (index, failed_step(step, msg)) });
                continue;
            }
            let (plugin, inv, sem, ctx) = (
                plugin.clone(),
                invocation.clone(),
                semaphore.clone(),
                ctx(&opts),
            );
            let limits = opts.limits;
            tasks.spawn(async move {
                let _permit = sem.acquire_owned().await.expect("semaphore never closes");
                (index, apply(&plugin, ctx, limits, &inv, step).await)
            });
        }
        let mut steps: Vec<(usize, StepReport)> = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(pair) => steps.push(pair),
                // A panic here is a host bug; let it surface as one.
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        }
        steps.sort_by_key(|(i, _)| *i);
        let steps: Vec<StepReport> = steps.into_iter().map(|(_, s)| s).collect();
        failed |= steps.iter().any(|s| s.status == StepStatus::Failed);
        report.phases.push(PhaseReport {
            name: phase.name,
            always: phase.always,
            steps,
        });
    }
    report.metrics.total_ms = start.elapsed().as_secs_f64() * 1e3;
    report
}

async fn apply(
    plugin: &LoadedPlugin,
    ctx: Arc<CallCtx>,
    limits: CallLimits,
    inv: &api::Invocation,
    step: api::Step,
) -> StepReport {
    let start = Instant::now();
    let CallReport {
        result,
        mutations,
        events,
        instantiate,
    } = plugin.apply_step(ctx, limits, inv, &step).await;
    let (status, message) = match result {
        Ok(out) => (
            match out.status {
                api::StepStatus::Ok => StepStatus::Ok,
                api::StepStatus::Changed => StepStatus::Changed,
                api::StepStatus::Skipped => StepStatus::Skipped,
            },
            out.message,
        ),
        Err(e @ (CallError::Plugin(_) | CallError::Limit { .. } | CallError::Trap { .. })) => {
            (StepStatus::Failed, e.to_string())
        }
    };
    StepReport {
        node: step.node,
        name: step.name,
        status,
        message,
        events,
        mutations,
        instantiate_us: instantiate.as_micros() as u64,
        duration_ms: start.elapsed().as_millis() as u64,
    }
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
        events: vec![],
        mutations: vec![],
        instantiate_us: 0,
        duration_ms: 0,
    }
}
