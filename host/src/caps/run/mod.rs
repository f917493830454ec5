//! `stackhost:host/run` (since 0.1.1): what earlier steps of the current
//! run did, so a rollback phase knows what to undo. Linked for every
//! plugin; it reveals only this run's own outcomes, with secrets hidden.

mod outcomes;

pub use outcomes::{Finished, RunOutcomes, StepStatus};

mod host;

use crate::caps::interface::Interface;
use semver::Version;

/// Marker for the `run` interface.
pub struct Run;

impl Interface for Run {
    const NAME: &'static str = "run";
    const SINCE: Version = Version::new(0, 1, 1);
    const IN_PATCH_WORLD: bool = false;
}
