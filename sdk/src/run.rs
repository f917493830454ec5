//! The run a step belongs to: what its earlier steps did, so a rollback
//! phase ([`Phase::on_failure`](crate::Phase::on_failure)) knows what to
//! undo instead of guessing from marker files.

use crate::bindings::stackhost::host::run as wit;

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Nothing needed doing.
    Ok,
    /// The step changed the node.
    Changed,
    /// The step decided not to run.
    Skipped,
    /// The step failed.
    Failed,
    /// The node could not be reached.
    Unreachable,
    /// Not run: the run halted, or the node failed earlier.
    NotRun,
}

/// A finished step of this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepResult {
    /// Its phase's name.
    pub phase: String,
    /// The node it ran on.
    pub node: String,
    /// Its name.
    pub name: String,
    /// How it ended.
    pub status: Status,
    /// Its message (or error), with secrets hidden.
    pub message: String,
    /// The data its outcome carried ([`Outcome::with_data`](crate::Outcome::with_data)).
    pub data: Option<String>,
}

impl StepResult {
    /// Whether the step changed its node.
    pub fn changed(&self) -> bool {
        self.status == Status::Changed
    }
}

/// The steps of this run that finished before the current call began, in
/// plan order; only those on `node` when it is given. Every step of an
/// earlier phase is there (with a resumed run's earlier attempts); a step
/// of the current phase only if it finished first. Empty while planning.
pub fn outcomes(node: Option<&str>) -> Vec<StepResult> {
    wit::outcomes(node)
        .into_iter()
        .map(|r| StepResult {
            phase: r.phase,
            node: r.node,
            name: r.name,
            status: match r.status {
                wit::OutcomeStatus::Ok => Status::Ok,
                wit::OutcomeStatus::Changed => Status::Changed,
                wit::OutcomeStatus::Skipped => Status::Skipped,
                wit::OutcomeStatus::Failed => Status::Failed,
                wit::OutcomeStatus::Unreachable => Status::Unreachable,
                wit::OutcomeStatus::NotRun => Status::NotRun,
            },
            message: r.message,
            data: r.data,
        })
        .collect()
}

/// Why the run is failing (the first failed step, `step NAME failed on
/// NODE: MESSAGE`, or else the halt reason); `None` while everything has
/// succeeded.
pub fn failure() -> Option<String> {
    wit::failure()
}
