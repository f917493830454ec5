//! The plugin runtime: one wasmtime `Engine` per process, compiled
//! components cached on disk, a linker per plugin holding only what it was
//! granted, an `InstancePre` per plugin and a fresh store per call, with
//! memory, CPU and wall-clock limits.

mod cache;
pub mod imports;
pub mod limits;
pub mod state;
pub mod test_runner;

pub use cache::CacheOutcome;
pub use limits::{CallLimits, LimitExceeded};
pub use state::PluginState;

use crate::caps::bindings::exports::stackhost::host::commands as api;
use crate::caps::bindings::legacy::Plugin010Pre;
use crate::caps::bindings::legacy::exports::stackhost::host::plugin_api as v010;
use crate::caps::bindings::patch::PatchPre;
use crate::caps::bindings::stackhost::host::types::PatchInfo;
use crate::caps::bindings::{PluginPre, WitError};
use crate::caps::ctx::{CallCtx, Event, Mutation};
use crate::caps::patches::PatchOp;
use crate::caps::registry::Capabilities;
use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store, UpdateDeadline};

/// How often the epoch advances; the CPU limit is checked at this grain.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The process-wide runtime. Clones share the engine (and its epoch
/// ticker).
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    compiled_dir: PathBuf,
}

/// A plugin (world `plugin`) or vendor patch (world `patch`) ready to be
/// instantiated, any number of times.
pub struct LoadedPlugin {
    pub name: String,
    pre: Pre,
    pub grant: Arc<Capabilities>,
    /// Whether the compiled code came from the cache.
    pub cache: CacheOutcome,
    /// Time to load or compile the component and link it.
    pub load_time: Duration,
}

/// The linked component, by world.
enum Pre {
    Plugin(PluginPre<PluginState>),
    /// A plugin built against WIT 0.1.0 (exports `plugin-api`).
    Legacy(Plugin010Pre<PluginState>),
    Patch(PatchPre<PluginState>),
}

/// Why a plugin call did not produce a value.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The plugin returned an error value (including a capability's
    /// permission-denied that it passed on).
    #[error("{}", crate::caps::describe_error(.0))]
    Plugin(WitError),
    /// The plugin's plan refused the operator's arguments.
    #[error("{0}")]
    Usage(String),
    /// The call ran into a limit and was stopped.
    #[error("plugin `{plugin}` was stopped: {limit}")]
    Limit {
        plugin: String,
        limit: LimitExceeded,
    },
    /// The plugin trapped (a panic, an unreachable instruction, ...).
    #[error("plugin `{plugin}` crashed: {message}")]
    Trap { plugin: String, message: String },
}

/// A finished call: its result, plus what it recorded and how long
/// instantiation took.
pub struct CallReport<T> {
    pub result: Result<T, CallError>,
    pub mutations: Vec<Mutation>,
    pub events: Vec<Event>,
    pub instantiate: Duration,
}

impl<T> CallReport<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> CallReport<U> {
        CallReport {
            result: self.result.map(f),
            mutations: self.mutations,
            events: self.events,
            instantiate: self.instantiate,
        }
    }
}

impl Runtime {
    /// Build the engine and start the epoch ticker.
    pub fn new(compiled_dir: &Path) -> anyhow::Result<Runtime> {
        let mut config = Config::new();
        config.epoch_interruption(true).wasm_component_model(true);
        let engine = Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("while creating the wasm engine")?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })?;
        Ok(Runtime {
            engine,
            compiled_dir: compiled_dir.to_path_buf(),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Names of everything a compiled component imports.
    pub fn imports(&self, component: &Component) -> Vec<String> {
        component
            .component_type()
            .imports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect()
    }

    /// Load (from the compile cache, or by compiling) the plugin `wasm`
    /// with content `digest`, check its imports against `grant`, and link
    /// it.
    pub fn load(
        &self,
        name: &str,
        digest: &str,
        wasm: &[u8],
        grant: Capabilities,
    ) -> anyhow::Result<LoadedPlugin> {
        self.link(name, digest, wasm, grant, |pre| {
            // A 0.1.1 plugin exports `commands`; one built against 0.1.0
            // exports `plugin-api`.
            match PluginPre::new(pre.clone()) {
                Ok(p) => Ok(Pre::Plugin(p)),
                Err(new) => Plugin010Pre::new(pre).map(Pre::Legacy).map_err(|_| {
                    anyhow::Error::from(new).context(format!(
                        "plugin `{name}` exports neither stackhost:host/commands (0.1.1) \
                         nor stackhost:host/plugin-api (0.1.0)"
                    ))
                }),
            }
        })
    }

    /// Load a vendor patch (world `patch`), as [`Runtime::load`] does a plugin.
    pub fn load_patch(
        &self,
        name: &str,
        digest: &str,
        wasm: &[u8],
        grant: Capabilities,
    ) -> anyhow::Result<LoadedPlugin> {
        self.link(name, digest, wasm, grant, |pre| {
            PatchPre::new(pre)
                .map(Pre::Patch)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("patch `{name}` does not export stackhost:host/patch-api"))
        })
    }

    fn link(
        &self,
        name: &str,
        digest: &str,
        wasm: &[u8],
        grant: Capabilities,
        world: impl FnOnce(wasmtime::component::InstancePre<PluginState>) -> anyhow::Result<Pre>,
    ) -> anyhow::Result<LoadedPlugin> {
        let start = Instant::now();
        let (component, cache) = self.compile(digest, || Ok(wasm.to_vec()))?;
        let imports = self.imports(&component);
        imports::check(
            name,
            imports.iter().map(String::as_str),
            imports::Allowed::Granted(&grant),
        )?;
        let linker = self.linker(&grant)?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)?;
        Ok(LoadedPlugin {
            name: name.into(),
            pre: world(pre)?,
            grant: Arc::new(grant),
            cache,
            load_time: start.elapsed(),
        })
    }

    /// Compile through the on-disk cache.
    pub fn compile(
        &self,
        digest: &str,
        wasm: impl FnOnce() -> std::io::Result<Vec<u8>>,
    ) -> anyhow::Result<(Component, CacheOutcome)> {
        cache::load_or_compile(&self.compiled_dir, &self.engine, digest, wasm)
    }

    /// A linker with WASI (empty context) and the granted capabilities only.
    fn linker(&self, grant: &Capabilities) -> anyhow::Result<Linker<PluginState>> {
        let mut linker = Linker::new(&self.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
        crate::caps::linker::link(grant, &mut linker)?;
        Ok(linker)
    }
}

/// Which export a call makes.
enum Export<'a> {
    Plan(&'a api::Invocation),
    ApplyStep(&'a api::Invocation, &'a api::Step),
    PatchInfo,
    PatchCheck(&'a String),
    PatchApply(&'a String),
    PatchRevert(&'a String),
}

/// What an export returned.
enum Returned {
    Plan(api::ExecutionPlan),
    Outcome(api::StepOutcome),
    Info(PatchInfo),
    Installed(bool),
    Done,
}

impl LoadedPlugin {
    /// Call the plugin's `plan`.
    pub async fn plan(
        &self,
        ctx: Arc<CallCtx>,
        limits: CallLimits,
        inv: &api::Invocation,
    ) -> CallReport<api::ExecutionPlan> {
        self.call(ctx, limits, Export::Plan(inv))
            .await
            .map(|r| match r {
                Returned::Plan(p) => p,
                _ => unreachable!("plan returns a plan"),
            })
    }

    /// Call the plugin's `apply-step`.
    pub async fn apply_step(
        &self,
        ctx: Arc<CallCtx>,
        limits: CallLimits,
        inv: &api::Invocation,
        step: &api::Step,
    ) -> CallReport<api::StepOutcome> {
        self.call(ctx, limits, Export::ApplyStep(inv, step))
            .await
            .map(|r| match r {
                Returned::Outcome(o) => o,
                _ => unreachable!("apply-step returns an outcome"),
            })
    }

    /// Call a vendor patch's `info`.
    pub async fn patch_info(&self, ctx: Arc<CallCtx>, limits: CallLimits) -> CallReport<PatchInfo> {
        self.call(ctx, limits, Export::PatchInfo)
            .await
            .map(|r| match r {
                Returned::Info(i) => i,
                _ => unreachable!("info returns patch info"),
            })
    }

    /// Call a vendor patch's `check`, `apply` or `revert` for `node`; the
    /// value is whether the patch is in place (for `check`; true after
    /// `apply`, false after `revert`).
    pub async fn patch_op(
        &self,
        ctx: Arc<CallCtx>,
        limits: CallLimits,
        op: PatchOp,
        node: &String,
    ) -> CallReport<bool> {
        let export = match op {
            PatchOp::Check => Export::PatchCheck(node),
            PatchOp::Apply => Export::PatchApply(node),
            PatchOp::Revert => Export::PatchRevert(node),
        };
        self.call(ctx, limits, export).await.map(|r| match r {
            Returned::Installed(b) => b,
            Returned::Done => op == PatchOp::Apply,
            _ => unreachable!("check, apply and revert return no document"),
        })
    }

    /// A fresh store for one call: the memory limiter, and an epoch
    /// deadline that stops a plugin computing past its CPU limit (time in
    /// host calls not counted) and yields so the wall-clock timeout fires.
    fn store(&self, ctx: Arc<CallCtx>, limits: CallLimits) -> Store<PluginState> {
        let mut store = Store::new(
            match &self.pre {
                Pre::Plugin(p) => p.engine(),
                Pre::Legacy(p) => p.engine(),
                Pre::Patch(p) => p.engine(),
            },
            PluginState::new(ctx, limits.memory),
        );
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        let started = Instant::now();
        let cpu = limits.cpu;
        store.epoch_deadline_callback(move |store| {
            let guest = started
                .elapsed()
                .saturating_sub(store.data().call.host_time());
            if guest > cpu {
                return Err(wasmtime::Error::new(LimitExceeded::Cpu(cpu)));
            }
            // Yield so the wall-clock timeout can fire even in a tight loop.
            Ok(UpdateDeadline::Yield(1))
        });

        store
    }

    /// Instantiate in a fresh store and make one call under the limits.
    async fn call(
        &self,
        ctx: Arc<CallCtx>,
        limits: CallLimits,
        export: Export<'_>,
    ) -> CallReport<Returned> {
        let mut store = self.store(ctx.clone(), limits);
        let run = async {
            match &self.pre {
                Pre::Plugin(pre) => self.call_plugin(pre, &mut store, export).await,
                Pre::Legacy(pre) => self.call_legacy(pre, &mut store, export).await,
                Pre::Patch(pre) => self.call_patch(pre, &mut store, export).await,
            }
        };
        let outcome = tokio::time::timeout(limits.wall, run).await;
        let (result, instantiate) = match outcome {
            Ok(Ok((out, inst))) => (out, inst),
            Ok(Err(trap)) => (Err(self.trap_error(trap, &store)), Duration::ZERO),
            Err(_) => (
                Err(CallError::Limit {
                    plugin: self.name.clone(),
                    limit: LimitExceeded::Wall(limits.wall),
                }),
                Duration::ZERO,
            ),
        };
        let (mutations, events) = ctx.take();
        CallReport {
            result,
            mutations,
            events,
            instantiate,
        }
    }

    /// Instantiate a component of world `plugin` and call its export.
    async fn call_plugin(
        &self,
        pre: &PluginPre<PluginState>,
        store: &mut Store<PluginState>,
        export: Export<'_>,
    ) -> wasmtime::Result<(Result<Returned, CallError>, Duration)> {
        let t = Instant::now();
        let plugin = pre.instantiate_async(&mut *store).await?;
        let instantiate = t.elapsed();
        let api = plugin.stackhost_host_commands();
        let out = match export {
            Export::Plan(inv) => match api.call_plan(&mut *store, inv).await? {
                Ok(plan) => Ok(Returned::Plan(plan)),
                Err(api::PlanError::Usage(m)) => {
                    return Ok((Err(CallError::Usage(m)), instantiate));
                }
                Err(api::PlanError::Other(e)) => Err(e),
            },
            Export::ApplyStep(inv, step) => api
                .call_apply_step(&mut *store, inv, step)
                .await?
                .map(Returned::Outcome),
            _ => return Err(wrong_world(&self.name, "plugin")),
        };
        Ok((out.map_err(CallError::Plugin), instantiate))
    }

    /// Instantiate a component of world `plugin-0-1-0` and call its export.
    async fn call_legacy(
        &self,
        pre: &Plugin010Pre<PluginState>,
        store: &mut Store<PluginState>,
        export: Export<'_>,
    ) -> wasmtime::Result<(Result<Returned, CallError>, Duration)> {
        let t = Instant::now();
        let plugin = pre.instantiate_async(&mut *store).await?;
        let instantiate = t.elapsed();
        let api = plugin.stackhost_host_plugin_api();
        let out = match export {
            Export::Plan(inv) => api
                .call_plan(&mut *store, &legacy::invocation(inv))
                .await?
                .map(|p| Returned::Plan(legacy::plan(p))),
            Export::ApplyStep(inv, step) => api
                .call_apply_step(&mut *store, &legacy::invocation(inv), &legacy::step(step))
                .await?
                .map(|o| Returned::Outcome(legacy::outcome(o))),
            _ => return Err(wrong_world(&self.name, "plugin")),
        };
        Ok((out.map_err(CallError::Plugin), instantiate))
    }

    /// Instantiate a component of world `patch` and call its export.
    async fn call_patch(
        &self,
        pre: &PatchPre<PluginState>,
        store: &mut Store<PluginState>,
        export: Export<'_>,
    ) -> wasmtime::Result<(Result<Returned, CallError>, Duration)> {
        let t = Instant::now();
        let patch = pre.instantiate_async(&mut *store).await?;
        let instantiate = t.elapsed();
        let api = patch.stackhost_host_patch_api();
        let out = match export {
            Export::PatchInfo => Ok(Returned::Info(api.call_info(&mut *store).await?)),
            Export::PatchCheck(node) => api
                .call_check(&mut *store, node)
                .await?
                .map(Returned::Installed),
            Export::PatchApply(node) => api
                .call_apply(&mut *store, node)
                .await?
                .map(|()| Returned::Done),
            Export::PatchRevert(node) => api
                .call_revert(&mut *store, node)
                .await?
                .map(|()| Returned::Done),
            _ => return Err(wrong_world(&self.name, "patch")),
        };
        Ok((out.map_err(CallError::Plugin), instantiate))
    }

    fn trap_error(&self, trap: wasmtime::Error, store: &Store<PluginState>) -> CallError {
        if let Some(limit) = trap.chain().find_map(|e| e.downcast_ref::<LimitExceeded>()) {
            return CallError::Limit {
                plugin: self.name.clone(),
                limit: limit.clone(),
            };
        }
        // Rust's panic hook adds a hint about RUST_BACKTRACE, which means
        // nothing inside a wasm component: left out.
        let printed: Vec<String> = String::from_utf8_lossy(&store.data().output.contents())
            .lines()
            .filter(|l| !l.starts_with("note: run with `RUST_BACKTRACE=1`"))
            .map(str::to_string)
            .collect();
        let printed = printed.join("\n").trim().to_string();
        let message = if printed.is_empty() {
            format!("{trap:#}")
        } else {
            format!(
                "{printed} ({})",
                trap.chain()
                    .last()
                    .map(|e| e.to_string())
                    .unwrap_or_default()
            )
        };
        CallError::Trap {
            plugin: self.name.clone(),
            message,
        }
    }
}

/// The 0.1.0 export's types, to and from this host's (`commands`).
mod legacy {
    use super::{api, v010};

    pub fn invocation(i: &api::Invocation) -> v010::Invocation {
        v010::Invocation {
            command: i.command.clone(),
            args: i
                .args
                .iter()
                .map(|a| v010::Arg {
                    name: a.name.clone(),
                    values: a.values.clone(),
                })
                .collect(),
            dry_run: i.dry_run,
        }
    }

    pub fn step(s: &api::Step) -> v010::Step {
        v010::Step {
            node: s.node.clone(),
            name: s.name.clone(),
            payload: s.payload.clone(),
        }
    }

    pub fn plan(p: v010::ExecutionPlan) -> api::ExecutionPlan {
        api::ExecutionPlan {
            phases: p
                .phases
                .into_iter()
                .map(|ph| api::Phase {
                    name: ph.name,
                    when: if ph.always {
                        api::PhaseWhen::Always
                    } else {
                        api::PhaseWhen::Normal
                    },
                    steps: ph
                        .steps
                        .into_iter()
                        .map(|s| api::Step {
                            node: s.node,
                            name: s.name,
                            payload: s.payload,
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    pub fn outcome(o: v010::StepOutcome) -> api::StepOutcome {
        api::StepOutcome {
            status: match o.status {
                v010::StepStatus::Ok => api::StepStatus::Ok,
                v010::StepStatus::Changed => api::StepStatus::Changed,
                v010::StepStatus::Skipped => api::StepStatus::Skipped,
            },
            message: o.message,
            data: None,
        }
    }
}

fn wrong_world(name: &str, world: &str) -> wasmtime::Error {
    wasmtime::Error::msg(format!(
        "`{name}` is a component of world `{world}` and has no such export"
    ))
}
