//! How a run goes: the plan a plugin makes, its application under the
//! rollout policy, the report, the journal of every step, the live
//! progress display and the signals that stop a run.

pub mod apply;
pub mod interrupt;
pub mod journal;
pub mod patches;
pub mod plan;
pub mod policy;
pub mod progress;
pub mod report;
