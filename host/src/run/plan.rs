//! The plan a plugin returns, as the host holds it: its size capped (the
//! plugin made it), journaled step by step with secrets hidden, and read
//! back from the journal to resume a run without planning again.

use crate::caps::bindings::exports::stackhost::host::commands as api;
use crate::caps::run::{Finished, StepStatus};
use crate::redact::Redactor;
use crate::run::journal::{PhaseWhen, RunRecord, StepRecord, StepState};
use crate::text::cap_text;
use std::collections::HashMap;

/// Longest step message (or plan error) kept in the report and journal.
pub const MAX_STEP_MESSAGE: usize = 64 << 10;
/// Most steps in one plan, the largest step payload, and the most bytes
/// of payloads, names and node names in one plan together.
pub const MAX_PLAN_STEPS: usize = 100_000;
pub const MAX_PAYLOAD: usize = 1 << 20;
pub const MAX_PLAN_BYTES: usize = 64 << 20;

/// Refuse a plan bigger than the host keeps (the plugin made it).
pub fn check_plan_size(plan: api::ExecutionPlan) -> Result<api::ExecutionPlan, String> {
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
pub fn plan_records(plan: &api::ExecutionPlan, secrets: &Redactor) -> Vec<StepRecord> {
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
pub fn when(w: api::PhaseWhen) -> PhaseWhen {
    match w {
        api::PhaseWhen::Normal => PhaseWhen::Normal,
        api::PhaseWhen::Always => PhaseWhen::Always,
        api::PhaseWhen::OnFailure => PhaseWhen::OnFailure,
    }
}

/// The most bytes of data one step may return.
pub const MAX_DATA: usize = 1 << 20;

/// A step's data: a JSON document of at most [`MAX_DATA`] bytes.
pub fn parse_data(text: String) -> Result<serde_json::Value, String> {
    if text.len() > MAX_DATA {
        return Err(format!(
            "it is {} bytes, more than the {MAX_DATA} bytes a step's data may be",
            text.len()
        ));
    }
    serde_json::from_str(&text).map_err(|e| format!("it is not JSON: {e}"))
}

/// A finished step from an earlier attempt: its state, message and data.
pub type Done = (StepState, String, Option<String>);

/// A journaled run, as `resume` takes it up: the plan it recorded, and
/// the steps that finished in earlier attempts (never run again; their
/// outcomes are there for `run.outcomes`).
pub struct Recorded {
    pub plan: api::ExecutionPlan,
    pub done: HashMap<(usize, usize), Done>,
    pub finished: Vec<Finished>,
}

/// The plan and finished steps of a journaled run.
pub fn recorded(record: &RunRecord) -> Recorded {
    let mut phases: Vec<api::Phase> = Vec::new();
    let mut done = HashMap::new();
    let mut finished = Vec::new();
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
            finished.push(Finished {
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
    Recorded {
        plan: api::ExecutionPlan { phases },
        done,
        finished,
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
