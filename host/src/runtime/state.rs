//! What one plugin call's store holds: an empty WASI context, the memory
//! limiter, and the call context every capability sees.

use super::limits::MemoryLimiter;
use crate::cluster::Cluster;
use crate::plugin::grant::Grant;
use crate::text::cap_text;
use serde::Serialize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// A mutating call recorded instead of made, under `--dry-run`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Mutation {
    pub node: String,
    /// `fs.write`, `exec`, ...
    pub call: String,
    /// What it would have done, for the operator.
    pub detail: String,
    /// For a file write: a unified diff against the file's current
    /// content (text under 1 MiB), or sizes and sha256 of both.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

/// A step of the run that has finished, as `run.outcomes` gives it.
#[derive(Debug, Clone)]
pub struct Finished {
    pub phase_index: usize,
    pub step_index: usize,
    pub phase: String,
    pub node: String,
    pub name: String,
    pub status: crate::run::executor::StepStatus,
    pub message: String,
    /// The step's data, as JSON text.
    pub data: Option<String>,
}

/// What every call of one run shares: the steps finished so far (for the
/// `run` interface) and the live display.
#[derive(Debug)]
pub struct RunShared {
    finished: Mutex<Vec<Finished>>,
    /// The first failed step's message.
    failure: Mutex<Option<String>>,
    /// Why the run halted.
    halt: Mutex<Option<String>>,
    pub progress: crate::run::progress::Progress,
    /// The run's secret values.
    pub secrets: std::sync::Arc<crate::redact::Redactor>,
}

impl RunShared {
    pub fn new(
        progress: crate::run::progress::Progress,
        secrets: std::sync::Arc<crate::redact::Redactor>,
    ) -> RunShared {
        RunShared {
            finished: Mutex::default(),
            failure: Mutex::default(),
            halt: Mutex::default(),
            progress,
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

/// An event the plugin logged.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub level: &'static str,
    pub message: String,
}

/// Whether a call may mutate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOnly {
    No,
    /// The command is declared `read-only` in the manifest.
    Command,
    /// The plugin is planning: `plan` only reads (see wit/plugin.wit).
    Plan,
}

/// Most events one call keeps, and most bytes of their messages together.
const MAX_EVENTS: usize = 10_000;
const MAX_EVENT_BYTES: usize = 1 << 20;
/// Most mutations one dry-run call records, and the longest detail kept
/// of each: the plugin controls both.
const MAX_MUTATIONS: usize = 10_000;
pub const MAX_DETAIL: usize = 1024;
/// The longest diff kept of one recorded write.
pub const MAX_DIFF: usize = 256 << 10;
/// The most bytes of diffs one call keeps together.
const MAX_DIFF_BYTES: usize = 8 << 20;

/// What a call recorded, within its caps, and how much it dropped.
#[derive(Debug)]
struct Recorded<T> {
    items: Vec<T>,
    bytes: usize,
    dropped: u64,
}

impl<T> Default for Recorded<T> {
    fn default() -> Self {
        Recorded {
            items: Vec::new(),
            bytes: 0,
            dropped: 0,
        }
    }
}

/// Shared by the capabilities of one call.
pub struct CallCtx {
    pub plugin: String,
    pub cluster: std::sync::Arc<Cluster>,
    pub grant: std::sync::Arc<Grant>,
    pub dry_run: bool,
    /// Whether mutating calls are refused, and why.
    pub read_only: ReadOnly,
    /// Default and upper bound for a program's run time.
    pub exec_timeout: Duration,
    /// The installed vendor patches, for a plugin granted `patches`.
    pub patches: Option<std::sync::Arc<crate::caps::patches::PatchHost>>,
    /// The run this call belongs to (none for a vendor patch's `info`).
    pub run: Option<std::sync::Arc<RunShared>>,
    /// The live line of the step this call carries out.
    pub progress: Option<std::sync::Arc<crate::run::progress::StepProgress>>,
    mutations: Mutex<Recorded<Mutation>>,
    events: Mutex<Recorded<Event>>,
    /// Nanoseconds spent in host calls, so the CPU limit counts only the
    /// guest's own computing.
    host_nanos: AtomicU64,
}

impl CallCtx {
    pub fn new(
        plugin: String,
        cluster: std::sync::Arc<Cluster>,
        grant: std::sync::Arc<Grant>,
        dry_run: bool,
        exec_timeout: Duration,
    ) -> CallCtx {
        CallCtx {
            plugin,
            cluster,
            grant,
            dry_run,
            read_only: ReadOnly::No,
            exec_timeout,
            patches: None,
            run: None,
            progress: None,
            mutations: Mutex::default(),
            events: Mutex::default(),
            host_nanos: AtomicU64::new(0),
        }
    }

    /// Refuse mutating calls (a read-only command).
    pub fn read_only(mut self, read_only: ReadOnly) -> CallCtx {
        self.read_only = read_only;
        self
    }

    /// Lend the installed vendor patches.
    pub fn with_patches(
        mut self,
        patches: Option<std::sync::Arc<crate::caps::patches::PatchHost>>,
    ) -> CallCtx {
        self.patches = patches;
        self
    }

    /// Belong to `run`; show the step's progress on `progress`.
    pub fn in_run(
        mut self,
        run: Option<std::sync::Arc<RunShared>>,
        progress: Option<std::sync::Arc<crate::run::progress::StepProgress>>,
    ) -> CallCtx {
        self.run = run;
        self.progress = progress;
        self
    }

    /// In a read-only call, the refusal of mutating call `call`.
    pub fn refuse_mutation(
        &self,
        node: &str,
        call: &str,
    ) -> Result<(), crate::caps::bindings::WitError> {
        let why = match self.read_only {
            ReadOnly::No => return Ok(()),
            ReadOnly::Command => "this command is read-only",
            ReadOnly::Plan => "a plan may only read (make changes in a step)",
        };
        Err(crate::caps::bindings::WitError::PermissionDenied(format!(
            "{why}, so `{call}` on {node} is not allowed"
        )))
    }

    /// Record a mutation that a dry run did not make. Past
    /// [`MAX_MUTATIONS`] only the count is kept (and reported).
    pub fn record(&self, node: &str, call: &str, detail: String) {
        self.record_diff(node, call, detail, None);
    }

    /// Record a mutation with a diff of what it would change (capped at
    /// [`MAX_DIFF`]).
    pub fn record_diff(&self, node: &str, call: &str, detail: String, diff: Option<String>) {
        // Secrets hidden before anything is cut, so a cut cannot leave half
        // a secret showing.
        let (detail, diff) = match &self.run {
            Some(run) => (run.secrets.text(detail), diff.map(|d| run.secrets.text(d))),
            None => (detail, diff),
        };
        let mut kept = self.mutations.lock().unwrap_or_else(|p| p.into_inner());
        if kept.items.len() >= MAX_MUTATIONS {
            kept.dropped += 1;
            return;
        }
        let diff = diff.map(|d| cap_text(d, MAX_DIFF)).map(|d| {
            if kept.bytes + d.len() > MAX_DIFF_BYTES {
                format!(
                    "(diff of {} bytes not kept: a step keeps at most {MAX_DIFF_BYTES} bytes of diffs)",
                    d.len()
                )
            } else {
                kept.bytes += d.len();
                d
            }
        });
        kept.items.push(Mutation {
            node: node.into(),
            call: call.into(),
            detail: cap_text(detail, MAX_DETAIL),
            diff,
        });
    }

    pub fn event(&self, level: &'static str, message: String) {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if events.items.len() >= MAX_EVENTS || events.bytes + message.len() > MAX_EVENT_BYTES {
            events.dropped += 1;
            return;
        }
        events.bytes += message.len();
        events.items.push(Event { level, message });
    }

    /// Time spent in host calls so far.
    pub fn host_time(&self) -> Duration {
        Duration::from_nanos(self.host_nanos.load(Ordering::Relaxed))
    }

    /// Run a host call, counting its time as host time.
    pub async fn timed<F: Future>(&self, fut: F) -> F::Output {
        let start = Instant::now();
        let out = fut.await;
        self.host_nanos
            .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        out
    }

    /// Take what the call recorded; what went past the caps is said in a
    /// last entry, so a dry run never silently shows less than it did.
    pub fn take(&self) -> (Vec<Mutation>, Vec<Event>) {
        let m = std::mem::take(&mut *self.mutations.lock().unwrap_or_else(|p| p.into_inner()));
        let e = std::mem::take(&mut *self.events.lock().unwrap_or_else(|p| p.into_inner()));
        let mut mutations = m.items;
        if m.dropped > 0 {
            mutations.push(Mutation {
                node: mutations.last().map(|l| l.node.clone()).unwrap_or_default(),
                call: "…".into(),
                detail: format!(
                    "{} more mutations recorded but not kept (at most {MAX_MUTATIONS} per step)",
                    m.dropped
                ),
                diff: None,
            });
        }
        let mut events = e.items;
        if e.dropped > 0 {
            events.push(Event {
                level: "warn",
                message: format!(
                    "{} more events not kept (at most {MAX_EVENTS} events or {MAX_EVENT_BYTES} bytes per call)",
                    e.dropped
                ),
            });
        }
        (mutations, events)
    }
}

/// The data of one plugin store.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: MemoryLimiter,
    pub call: std::sync::Arc<CallCtx>,
    /// What the plugin wrote to stdout and stderr (panic messages land here).
    pub output: MemoryOutputPipe,
}

/// Most bytes of a plugin's own stdout/stderr kept for error reports.
const PLUGIN_OUTPUT_LIMIT: usize = 64 << 10;

impl PluginState {
    pub fn new(call: std::sync::Arc<CallCtx>, memory_limit: usize) -> PluginState {
        let output = MemoryOutputPipe::new(PLUGIN_OUTPUT_LIMIT);
        // Deny by default: no preopened directories, no environment, no
        // arguments, no network. Clocks and random remain.
        let wasi = wasmtime_wasi::WasiCtxBuilder::new()
            .stdout(output.clone())
            .stderr(output.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        PluginState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory_limit),
            call,
            output,
        }
    }
}

impl PluginState {
    /// The view of the capabilities that hold resources.
    pub fn res_view(&mut self) -> crate::caps::archive::ResView<'_> {
        crate::caps::archive::ResView {
            call: &self.call,
            table: &mut self.table,
        }
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
