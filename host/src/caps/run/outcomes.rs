//! What the `run` capability reveals: the steps of the current run that
//! have finished, how each ended, and the run's first failure, with
//! secrets hidden. The run (above) records them; calls read them.

use crate::redact::Redactor;
use serde::Serialize;
use std::sync::{Arc, Mutex};

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepStatus {
    Ok,
    Changed,
    Skipped,
    Failed,
    /// The node could not be reached.
    Unreachable,
    /// Not run: the run halted, or the node failed earlier.
    NotRun,
    /// Stopped while it ran, by SIGINT or SIGTERM; `resume` runs it again.
    Interrupted,
}

impl StepStatus {
    /// Failed and unreachable steps count against the failure budget.
    pub fn is_failure(self) -> bool {
        matches!(self, StepStatus::Failed | StepStatus::Unreachable)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Ok => "ok",
            StepStatus::Changed => "changed",
            StepStatus::Skipped => "skipped",
            StepStatus::Failed => "failed",
            StepStatus::Unreachable => "unreachable",
            StepStatus::NotRun => "not-run",
            StepStatus::Interrupted => "interrupted",
        }
    }
}

/// A step of the run that has finished, as `run.outcomes` gives it.
#[derive(Debug, Clone)]
pub struct Finished {
    pub phase_index: usize,
    pub step_index: usize,
    pub phase: String,
    pub node: String,
    pub name: String,
    pub status: StepStatus,
    pub message: String,
    /// The step's data, as JSON text.
    pub data: Option<String>,
}

/// What every call of one run shares: the steps finished so far (for the
/// `run` interface), the first failure and the run's secrets.
#[derive(Debug)]
pub struct RunOutcomes {
    finished: Mutex<Vec<Finished>>,
    /// The first failed step's message.
    failure: Mutex<Option<String>>,
    /// Why the run halted.
    halt: Mutex<Option<String>>,
    /// The run's secret values.
    pub secrets: Arc<Redactor>,
}

impl RunOutcomes {
    pub fn new(secrets: Arc<Redactor>) -> RunOutcomes {
        RunOutcomes {
            finished: Mutex::default(),
            failure: Mutex::default(),
            halt: Mutex::default(),
            secrets,
        }
    }

    /// Note a finished step (its message and data already redacted).
    pub fn finished(&self, step: Finished) {
        if step.status.is_failure() {
            let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
            failure.get_or_insert_with(|| {
                format!(
                    "step `{}` failed on {}: {}",
                    step.name, step.node, step.message
                )
            });
        }
        self.finished
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(step);
    }

    /// The run halted.
    pub fn halted(&self, why: &str) {
        *self.halt.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.to_string());
    }

    /// Finished steps in plan order, only those on `node` when given.
    pub fn outcomes(&self, node: Option<&str>) -> Vec<Finished> {
        let mut all: Vec<Finished> = self
            .finished
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|f| node.is_none_or(|n| f.node == n))
            .cloned()
            .collect();
        all.sort_by_key(|f| (f.phase_index, f.step_index));
        all
    }

    /// The first failed step's message, or else why the run halted.
    pub fn failure(&self) -> Option<String> {
        let first = self
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        first.or_else(|| self.halt.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }
}
