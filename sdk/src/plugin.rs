//! The [`Plugin`] trait a plugin implements, and the adapter that turns it
//! into the component's `commands` export (used by
//! [`export_plugin!`](crate::export_plugin)).

use crate::bindings::exports::stackhost::host::commands as wit;
use crate::bindings::stackhost::host::types::Error as WitError;
use crate::{Error, Invocation, Outcome, Plan, Result, Step};
use std::marker::PhantomData;

/// A maintenance plugin.
///
/// The host calls [`plan`](Plugin::plan) once per run, then
/// [`apply`](Plugin::apply) once per step, each call in a fresh instance:
/// nothing survives between calls except a step's payload. Both are
/// associated functions for that reason; there is no `self` to keep state
/// in.
pub trait Plugin {
    /// Turn the invocation into a plan. Only read-only capability calls
    /// belong here (probing nodes, reading files): the host refuses
    /// mutating ones with [`Error::PermissionDenied`](crate::Error). It runs
    /// `plan` under `--dry-run` too. Return [`Error::Usage`](crate::Error)
    /// (see [`usage!`](crate::usage)) when the operator's arguments are
    /// wrong: the host prints it as a plain `error:` line and exits 2.
    fn plan(inv: &Invocation) -> Result<Plan>;

    /// Carry out one step of the plan. Under `--dry-run` the same code
    /// runs, with mutating calls recorded instead of made.
    fn apply(inv: &Invocation, step: &Step) -> Result<Outcome>;
}

/// Implements the generated `Guest` trait for any [`Plugin`]; the
/// export macro needs a plain type name, so `export_plugin!` aliases this.
#[doc(hidden)]
pub struct Export<P>(PhantomData<fn() -> P>);

impl<P: Plugin> wit::Guest for Export<P> {
    fn plan(invocation: wit::Invocation) -> Result<wit::ExecutionPlan, wit::PlanError> {
        let inv = Invocation::from_wit(invocation);
        P::plan(&inv).map(Plan::into_wit).map_err(|e| match e {
            Error::Usage(m) => wit::PlanError::Usage(m),
            other => wit::PlanError::Other(other.into()),
        })
    }

    fn apply_step(
        invocation: wit::Invocation,
        step: wit::Step,
    ) -> Result<wit::StepOutcome, WitError> {
        let inv = Invocation::from_wit(invocation);
        P::apply(&inv, &Step::from_wit(step))
            .map(Outcome::into_wit)
            .map_err(Into::into)
    }
}
