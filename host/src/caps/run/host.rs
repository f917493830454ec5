//! The `run` Host impl and its linker.

use super::{Run, StepStatus};
use crate::caps::bindings::stackhost::host::run::{self, OutcomeStatus, StepResult};
use crate::caps::ctx::CapView;
use crate::caps::ctx::CapsView;
use crate::caps::linker::Link;
use wasmtime::component::{HasData, Linker};

impl HasData for Run {
    type Data<'a> = CapView<'a>;
}

impl Link for Run {
    fn add_to_linker<T: CapsView>(linker: &mut Linker<T>) -> anyhow::Result<()> {
        run::add_to_linker::<T, Run>(linker, |s| CapView {
            call: s.caps().call,
        })
        .map_err(anyhow::Error::from)
    }
}

fn status(s: StepStatus) -> OutcomeStatus {
    match s {
        StepStatus::Ok => OutcomeStatus::Ok,
        StepStatus::Changed => OutcomeStatus::Changed,
        StepStatus::Skipped => OutcomeStatus::Skipped,
        StepStatus::Failed => OutcomeStatus::Failed,
        StepStatus::Unreachable => OutcomeStatus::Unreachable,
        StepStatus::NotRun => OutcomeStatus::NotRun,
        // Never seen by a step: nothing starts after an interruption, and
        // `resume` runs an interrupted step again.
        StepStatus::Interrupted => OutcomeStatus::Failed,
    }
}

impl run::Host for CapView<'_> {
    async fn outcomes(&mut self, node: Option<String>) -> wasmtime::Result<Vec<StepResult>> {
        let Some(shared) = &self.call.run else {
            return Ok(Vec::new());
        };
        Ok(shared
            .outcomes(node.as_deref())
            .into_iter()
            .map(|f| StepResult {
                phase: f.phase,
                node: f.node,
                name: f.name,
                status: status(f.status),
                message: f.message,
                data: f.data,
            })
            .collect())
    }

    async fn failure(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(self.call.run.as_ref().and_then(|r| r.failure()))
    }
}
