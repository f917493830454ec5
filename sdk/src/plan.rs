//! What a command is asked to do ([`Invocation`]) and what it answers:
//! a [`Plan`] of [`Phase`]s of [`Step`]s, each step ending in an
//! [`Outcome`].

use crate::bindings::exports::stackhost::host::commands as wit;
use crate::nodes::Node;
use crate::{Error, Result};

/// What the operator asked for: the command, its arguments as declared in
/// the manifest, and whether this is a dry run.
#[derive(Debug, Clone)]
pub struct Invocation {
    inner: wit::Invocation,
}

impl Invocation {
    /// Build an invocation by hand, for unit tests of a plugin's logic.
    /// `args` are `(name, values)` pairs in the shape the host sends.
    pub fn new<'a>(
        command: &str,
        args: impl IntoIterator<Item = (&'a str, Vec<String>)>,
        dry_run: bool,
    ) -> Invocation {
        let args = args
            .into_iter()
            .map(|(name, values)| wit::Arg {
                name: name.to_owned(),
                values,
            })
            .collect();
        Invocation {
            inner: wit::Invocation {
                command: command.to_owned(),
                args,
                dry_run,
            },
        }
    }

    pub(crate) fn from_wit(inner: wit::Invocation) -> Invocation {
        Invocation { inner }
    }

    /// The command name (`info`, `stamp`, ...).
    pub fn command(&self) -> &str {
        &self.inner.command
    }

    /// True under `--dry-run`: mutating calls are recorded, not made.
    pub fn dry_run(&self) -> bool {
        self.inner.dry_run
    }

    /// Every value of argument `name`: none for an absent option, several
    /// for a repeated option or a trailing positional.
    pub fn values(&self, name: &str) -> &[String] {
        self.inner
            .args
            .iter()
            .find(|a| a.name == name)
            .map_or(&[], |a| a.values.as_slice())
    }

    /// The (first) value of argument `name`, after the manifest's default
    /// was applied by the host.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.values(name).first().map(String::as_str)
    }

    /// Whether flag `name` was given.
    pub fn flag(&self, name: &str) -> bool {
        self.values(name).iter().any(|v| v == "true")
    }

    /// The value of argument `name`, or an error naming it when it is
    /// absent (for arguments the manifest does not mark `required`).
    pub fn require(&self, name: &str) -> Result<&str> {
        self.value(name).ok_or_else(|| {
            Error::Plugin(format!("`{}` needs the argument `{name}`", self.command()))
        })
    }

    /// The error to return for a command this plugin does not know (the
    /// host only sends commands from the manifest, so this means the code
    /// and the manifest disagree).
    pub fn unknown_command(&self) -> Error {
        Error::Plugin(format!(
            "command `{}` is in the manifest but not implemented",
            self.command()
        ))
    }
}

/// The work a command will do: phases, run in order.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    phases: Vec<Phase>,
}

impl Plan {
    /// An empty plan (nothing to do).
    pub fn new() -> Plan {
        Plan::default()
    }

    /// Add `phase` after the ones already there.
    #[must_use = "returns the plan with the phase added; use `push` to add in place"]
    pub fn phase(mut self, phase: Phase) -> Plan {
        self.phases.push(phase);
        self
    }

    /// Add `phase` in place.
    pub fn push(&mut self, phase: Phase) {
        self.phases.push(phase);
    }

    /// The phases so far.
    pub fn phases(&self) -> &[Phase] {
        &self.phases
    }

    pub(crate) fn into_wit(self) -> wit::ExecutionPlan {
        wit::ExecutionPlan {
            phases: self.phases.into_iter().map(|p| p.inner).collect(),
        }
    }
}

/// Steps the host may run concurrently, across nodes.
#[derive(Debug, Clone)]
pub struct Phase {
    inner: wit::Phase,
}

impl Phase {
    /// An empty phase called `name`.
    pub fn new(name: impl Into<String>) -> Phase {
        Phase {
            inner: wit::Phase {
                name: name.into(),
                when: wit::PhaseWhen::Normal,
                steps: Vec::new(),
            },
        }
    }

    /// Run this phase even after an earlier phase failed (cleanup: unlock,
    /// restart).
    #[must_use = "returns the changed phase"]
    pub fn always(mut self) -> Phase {
        self.inner.when = wit::PhaseWhen::Always;
        self
    }

    /// Run this phase only when an earlier step failed or the run halted
    /// (rollback: switch back, retag back); when everything succeeded its
    /// steps are `not-run`. Its steps run on failed nodes too; read
    /// [`run::outcomes`](crate::run::outcomes) to see what was done.
    #[must_use = "returns the changed phase"]
    pub fn on_failure(mut self) -> Phase {
        self.inner.when = wit::PhaseWhen::OnFailure;
        self
    }

    /// Add a step called `name` on `node`. `payload` is handed back to
    /// [`Plugin::apply`](crate::Plugin::apply) unchanged: every step runs
    /// in a fresh instance, so put everything the step needs there.
    #[must_use = "returns the phase with the step added; use `push_step` to add in place"]
    pub fn step(
        mut self,
        node: &Node,
        name: impl Into<String>,
        payload: impl Into<String>,
    ) -> Phase {
        self.push_step(node, name, payload);
        self
    }

    /// [`Phase::step`] in place.
    pub fn push_step(&mut self, node: &Node, name: impl Into<String>, payload: impl Into<String>) {
        self.inner.steps.push(wit::Step {
            node: node.name().to_owned(),
            name: name.into(),
            payload: payload.into(),
        });
    }

    /// The phase's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Whether the phase has no steps.
    pub fn is_empty(&self) -> bool {
        self.inner.steps.is_empty()
    }
}

/// One step of the plan, as handed to [`Plugin::apply`](crate::Plugin::apply).
#[derive(Debug, Clone)]
pub struct Step {
    inner: wit::Step,
}

impl Step {
    /// Build a step by hand, for unit tests of a plugin's logic.
    pub fn new(
        node: impl Into<String>,
        name: impl Into<String>,
        payload: impl Into<String>,
    ) -> Step {
        Step {
            inner: wit::Step {
                node: node.into(),
                name: name.into(),
                payload: payload.into(),
            },
        }
    }

    pub(crate) fn from_wit(inner: wit::Step) -> Step {
        Step { inner }
    }

    /// The node the step runs on.
    pub fn node(&self) -> Node {
        Node::named(self.inner.node.clone())
    }

    /// The name of the node the step runs on.
    pub fn node_name(&self) -> &str {
        &self.inner.node
    }

    /// The step's name, as given when planning.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The payload given when planning, unchanged.
    pub fn payload(&self) -> &str {
        &self.inner.payload
    }
}

/// How a step ended, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Nothing needed doing.
    Ok,
    /// The step changed the node.
    Changed,
    /// The step decided not to run.
    Skipped,
}

/// The result of a step that did not fail: a status and one line for the
/// operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    status: Status,
    message: String,
    data: Option<String>,
}

impl Outcome {
    /// Nothing needed doing.
    pub fn ok(message: impl Into<String>) -> Outcome {
        Outcome {
            status: Status::Ok,
            message: message.into(),
            data: None,
        }
    }

    /// The step changed the node.
    pub fn changed(message: impl Into<String>) -> Outcome {
        Outcome {
            status: Status::Changed,
            message: message.into(),
            data: None,
        }
    }

    /// The step decided not to run.
    pub fn skipped(message: impl Into<String>) -> Outcome {
        Outcome {
            status: Status::Skipped,
            message: message.into(),
            data: None,
        }
    }

    /// How the step ended.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The line shown to the operator.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Attach a structured result: a JSON document (at most 1 MiB) that
    /// `--json` shows under the step, the journal keeps, and later steps
    /// read through [`run::outcomes`](crate::run::outcomes). The host fails
    /// the step if it is not JSON.
    #[must_use = "returns the outcome with its data"]
    pub fn with_data(mut self, json: impl Into<String>) -> Outcome {
        self.data = Some(json.into());
        self
    }

    /// The data attached with [`Outcome::with_data`].
    pub fn data(&self) -> Option<&str> {
        self.data.as_deref()
    }

    pub(crate) fn into_wit(self) -> wit::StepOutcome {
        let status = match self.status {
            Status::Ok => wit::StepStatus::Ok,
            Status::Changed => wit::StepStatus::Changed,
            Status::Skipped => wit::StepStatus::Skipped,
        };
        wit::StepOutcome {
            status,
            message: self.message,
            data: self.data,
        }
    }
}
