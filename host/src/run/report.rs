//! What a run produced: per phase and step the status, message, data,
//! events and dry-run mutations, and the run's timing; the document
//! `--json` prints and the text report is drawn from.

use crate::caps::ctx::{Event, Mutation};
use crate::caps::run::StepStatus;
use crate::run::journal::PhaseWhen;
use serde::Serialize;

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
    /// The plan was made but the operator did not confirm it (or could
    /// not, off a terminal): why. Nothing ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub declined: Option<String>,
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
