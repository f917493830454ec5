//! What a capability call sees: the call context ([`CallCtx`]: the
//! plugin, its grant, the run's nodes and modes, what the call recorded),
//! and the view of a plugin's store the capabilities work on
//! ([`CapsView`], in the manner of wasmtime-wasi's `WasiView`). The runtime
//! implements the view for its store; the capabilities never name the
//! runtime.

use crate::caps::bindings::WitError;
use crate::caps::registry::Capabilities;
use crate::caps::run::RunOutcomes;
use crate::cluster::{Cluster, Node};
use crate::text::cap_text;
use serde::Serialize;
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;

/// A plugin store, as the capabilities see it: the call context and the
/// resource table (the handles of archive writers and readers).
pub trait CapsView: Send + 'static {
    fn caps(&mut self) -> CapsCtxView<'_>;
}

/// What [`CapsView::caps`] lends: the call and the store's resources.
pub struct CapsCtxView<'a> {
    pub call: &'a CallCtx,
    pub table: &'a mut ResourceTable,
}

/// The view the `Host` impls of capabilities without resources work on.
pub struct CapView<'a> {
    pub call: &'a CallCtx,
}

impl CapView<'_> {
    /// The node called `name`, if the run selected it.
    pub fn node(&self, name: &str) -> Result<Arc<Node>, WitError> {
        self.call.node(name)
    }
}

/// What a run lends its capabilities, by type: a capability that needs
/// something only a layer above can give (the vendor patches need the
/// plugin store and the runtime) defines a type for it, and the run puts
/// a value of that type here. The call context never names them.
#[derive(Clone, Default)]
pub struct Extensions(HashMap<TypeId, Arc<dyn Any + Send + Sync>>);

impl Extensions {
    /// Lend `value` (replacing one of the same type).
    pub fn insert<T: Any + Send + Sync>(&mut self, value: T) {
        self.0.insert(TypeId::of::<T>(), Arc::new(value));
    }

    /// The value of type `T`, if the run lent one.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.0
            .get(&TypeId::of::<T>())
            .and_then(|v| v.downcast_ref())
    }
}

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Extensions({} lent)", self.0.len())
    }
}

/// The live line of the step a call carries out (drawn by the run's
/// progress display).
pub trait LiveStep: Send + Sync {
    /// A line of a program's output.
    fn line(&self, text: &str);
    /// `done` of `total` `unit`s.
    fn set(&self, done: u64, total: Option<u64>, unit: &str);
}

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
    pub cluster: Arc<Cluster>,
    pub grant: Arc<Capabilities>,
    pub dry_run: bool,
    /// Whether mutating calls are refused, and why.
    pub read_only: ReadOnly,
    /// Default and upper bound for a program's run time.
    pub exec_timeout: Duration,
    /// What the run lends its capabilities (the vendor patches, for one):
    /// each capability defines the type it looks for.
    pub extensions: Extensions,
    /// The run this call belongs to (none for a vendor patch's `info`).
    pub run: Option<Arc<RunOutcomes>>,
    /// The live line of the step this call carries out.
    pub progress: Option<Arc<dyn LiveStep>>,
    mutations: Mutex<Recorded<Mutation>>,
    events: Mutex<Recorded<Event>>,
    /// Nanoseconds spent in host calls, so the CPU limit counts only the
    /// guest's own computing.
    host_nanos: AtomicU64,
}

/// How much of each host call's time counts against the plugin's CPU
/// limit (all of a call shorter than this).
pub const CHARGED_PER_CALL: Duration = Duration::from_micros(100);

impl CallCtx {
    /// The node called `name`, if the run selected it.
    pub fn node(&self, name: &str) -> Result<Arc<Node>, WitError> {
        self.cluster.get(name).cloned().ok_or_else(|| {
            WitError::NotFound(format!(
                "node `{name}` is not part of this run (see `stackhost node list`)"
            ))
        })
    }

    pub fn new(
        plugin: String,
        cluster: Arc<Cluster>,
        grant: Arc<Capabilities>,
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
            extensions: Extensions::default(),
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

    /// Lend the capabilities what the run holds for them.
    pub fn with_extensions(mut self, extensions: Extensions) -> CallCtx {
        self.extensions = extensions;
        self
    }

    /// Belong to `run`; show the step's progress on `progress`.
    pub fn in_run(
        mut self,
        run: Option<Arc<RunOutcomes>>,
        progress: Option<Arc<dyn LiveStep>>,
    ) -> CallCtx {
        self.run = run;
        self.progress = progress;
        self
    }

    /// In a read-only call, the refusal of mutating call `call`.
    pub fn refuse_mutation(&self, node: &str, call: &str) -> Result<(), WitError> {
        let why = match self.read_only {
            ReadOnly::No => return Ok(()),
            ReadOnly::Command => "this command is read-only",
            ReadOnly::Plan => "a plan may only read (make changes in a step)",
        };
        Err(WitError::PermissionDenied(format!(
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

    /// Run a host call, counting its time past [`CHARGED_PER_CALL`] as
    /// host time: the first part of every call counts against the CPU
    /// limit, so a loop on cheap calls is stopped by it, while the time a
    /// call waits on a node (a program, a file over SSH) does not.
    pub async fn timed<F: Future>(&self, fut: F) -> F::Output {
        let start = Instant::now();
        let out = fut.await;
        let waited = start.elapsed().saturating_sub(CHARGED_PER_CALL);
        self.host_nanos
            .fetch_add(waited.as_nanos() as u64, Ordering::Relaxed);
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
