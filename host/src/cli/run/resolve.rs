//! From parsed arguments to what a run needs: the cluster (inventory,
//! known hosts), the loaded plugin and the vendor patches it may drive,
//! secret arguments (from a file, the environment or a hidden prompt), and
//! the operator's confirmation of a destructive command.

use super::args::ClusterFlags;
use crate::caps::bindings::exports::stackhost::host::commands as api;
use crate::caps::patches::PatchRunner;
use crate::caps::registry::Capabilities;
use crate::cluster::Cluster;
use crate::cluster::inventory;
use crate::cluster::ssh::SshOptions;
use crate::paths::Paths;
use crate::plugin::manifest::CommandSpec;
use crate::plugin::signing::TrustedKeys;
use crate::plugin::store::{Installed, PluginStore};
use crate::run::patches::PatchHost;
use crate::runtime::{CallLimits, LoadedPlugin, Runtime};
use anyhow::Context as _;
use clap::ArgMatches;
use std::sync::Arc;

/// The values of a command's secret arguments given or asked for: from
/// their file, the environment or a hidden prompt.
pub(super) fn secrets(
    spec: &CommandSpec,
    sub: &ArgMatches,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut secrets = Vec::new();
    for a in spec.args.iter().filter(|a| a.secret) {
        let file = sub.get_one::<String>(&a.name).map(std::path::PathBuf::from);
        if let Some(value) = secret_value(a, file.as_deref())? {
            secrets.push((a.name.clone(), value));
        }
    }
    Ok(secrets)
}

impl ClusterFlags {
    /// The cluster: the inventory's nodes, or the local node alone.
    pub fn open(&self, paths: &Paths) -> anyhow::Result<Cluster> {
        let default = inventory::default_path(paths);
        let path = match &self.inventory {
            Some(p) => p.clone(),
            None if default.exists() => default,
            None => {
                let roles =
                    inventory::LocalNodeRoles::in_config(&paths.config).load_or_default()?;
                return Ok(Cluster::local_with_roles(roles));
            }
        };
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        let known_hosts = match self.known_hosts.strip_prefix("~/") {
            Some(rest) => std::path::Path::new(&home).join(rest),
            None => self.known_hosts.clone().into(),
        };
        let ssh = SshOptions {
            known_hosts,
            accept_new_host_keys: self.accept_new_host_keys,
            connect_timeout: self.connect_timeout,
            handshakes: SshOptions::handshake_limit(self.max_handshakes),
        };
        Ok(inventory::load(&path, ssh)?)
    }
}

/// The installed vendor patches, lent to a plugin granted `patches`.
pub(in crate::cli) fn patch_host(
    paths: &Paths,
    runtime: &Runtime,
    installed: &Installed,
    limits: CallLimits,
) -> anyhow::Result<Option<Arc<dyn PatchRunner>>> {
    if !installed.record.grant.has("patches") {
        return Ok(None);
    }
    Ok(Some(Arc::new(PatchHost::new(
        runtime.clone(),
        PluginStore::new(&paths.plugins()),
        TrustedKeys::new(&paths.config),
        limits,
    ))))
}

/// Verify the installed file against its grant and signature, and load it
/// into the process's one runtime (which the vendor patches it may drive
/// share: one wasmtime engine per process), with the run's capabilities
/// `caps` (the grant and the paths the operator gave; see
/// [`crate::plugin::grant::Grant::for_run`]).
pub(in crate::cli) fn load(
    paths: &Paths,
    installed: &Installed,
    caps: Capabilities,
) -> anyhow::Result<(Runtime, LoadedPlugin)> {
    let store = PluginStore::new(&paths.plugins());
    let wasm = store.verified_bytes(installed, &TrustedKeys::new(&paths.config))?;
    let runtime = Runtime::new(&paths.compiled())?;
    let m = &installed.record.manifest;
    let plugin = runtime
        .load(m.name.as_str(), &installed.record.digest, &wasm, caps)
        .with_context(|| format!("while loading plugin {} {}", m.name, m.version))?;
    Ok((runtime, plugin))
}

/// What a destructive command's confirmation shows: the command, the
/// arguments the run uses (secrets as `***`), and the plan's nodes.
pub(super) struct Confirmation {
    pub plugin: String,
    pub command: String,
    pub about: String,
    /// `name=value` of every argument given (secrets already `***`).
    pub arguments: Vec<String>,
}

impl Confirmation {
    /// Ask the operator, once the plan is made (its arguments checked);
    /// off a terminal, refuse (the operator must pass --yes). `Err` says
    /// why the run does not go on.
    pub fn ask(&self, plan: &api::ExecutionPlan) -> Result<(), String> {
        use crate::text::escape_line as one_line;
        use std::io::{BufRead, IsTerminal, Write};
        let what = format!(
            "`{} {}` is destructive: {}",
            one_line(&self.plugin),
            one_line(&self.command),
            one_line(&self.about)
        );
        if !std::io::stdin().is_terminal() {
            return Err(format!(
                "{what}; not on a terminal, so it cannot be confirmed: pass --yes to run it, or \
                 --dry-run to see what it would do"
            ));
        }
        let mut nodes: Vec<String> = Vec::new();
        let mut steps = 0;
        for step in plan.phases.iter().flat_map(|p| &p.steps) {
            steps += 1;
            let node = one_line(&step.node).into_owned();
            if !nodes.contains(&node) {
                nodes.push(node);
            }
        }
        let arguments = if self.arguments.is_empty() {
            "none".to_string()
        } else {
            self.arguments
                .iter()
                .map(|a| one_line(a).into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        };
        eprint!(
            "{what}\nArguments: {arguments}\nPlan: {steps} step(s) in {} phase(s)\nRun it on {} \
             node(s): {}? [y/N] ",
            plan.phases.len(),
            nodes.len(),
            nodes.join(", ")
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .map_err(|e| format!("reading the answer: {e}"))?;
        if matches!(answer.trim(), "y" | "Y" | "yes") {
            Ok(())
        } else {
            Err("not confirmed: nothing was done".into())
        }
    }
}

/// Most bytes of a secret read from a file.
const MAX_SECRET: u64 = 64 << 10;

/// The value of secret argument `a`: from `file` (one trailing newline
/// dropped), else `$STACKHOST_SECRET_NAME`, else, for a required one, a
/// hidden prompt when stdin is a terminal. `None` when none of these gave
/// one and it is not required.
fn secret_value(
    a: &crate::plugin::manifest::ArgSpec,
    file: Option<&std::path::Path>,
) -> anyhow::Result<Option<String>> {
    use anyhow::Context;
    use std::io::{IsTerminal, Read};
    let trim = |mut s: String| {
        if s.ends_with('\n') {
            s.pop();
            if s.ends_with('\r') {
                s.pop();
            }
        }
        s
    };
    if let Some(path) = file {
        let mut text = String::new();
        std::fs::File::open(path)
            .with_context(|| format!("reading --{}-file {}", a.name, path.display()))?
            .take(MAX_SECRET)
            .read_to_string(&mut text)
            .with_context(|| format!("reading --{}-file {}", a.name, path.display()))?;
        return Ok(Some(trim(text)));
    }
    if let Ok(value) = std::env::var(a.secret_env()) {
        return Ok(Some(value));
    }
    // Only a required secret is asked for: an optional one left out stays
    // out, as any optional argument does.
    if a.required && std::io::stdin().is_terminal() {
        return Ok(Some(trim(prompt_hidden(&format!(
            "{} (hidden): ",
            a.name
        ))?)));
    }
    if a.required {
        anyhow::bail!(
            "the secret `{}` was not given: pass --{}-file FILE, set {}, or run on a terminal to be asked",
            a.name,
            a.name,
            a.secret_env()
        );
    }
    Ok(None)
}

/// Read one line from the terminal with echo off.
fn prompt_hidden(prompt: &str) -> anyhow::Result<String> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    use std::io::{BufRead, Write};
    let stdin = std::io::stdin();
    let before = tcgetattr(&stdin)?;
    let mut quiet = before.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    // Echo goes off before the prompt shows: whoever types on seeing it
    // is never echoed.
    tcsetattr(&stdin, OptionalActions::Now, &quiet)?;
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    tcsetattr(&stdin, OptionalActions::Now, &before)?;
    eprintln!();
    read?;
    Ok(line)
}

/// The invocation as the journal keeps it, for `resume`.
#[derive(serde::Serialize, serde::Deserialize)]
pub(in crate::cli) struct InvocationRecord {
    pub command: String,
    pub args: Vec<(String, Vec<String>)>,
    pub dry_run: bool,
}

impl From<&api::Invocation> for InvocationRecord {
    fn from(i: &api::Invocation) -> InvocationRecord {
        InvocationRecord {
            command: i.command.clone(),
            args: i
                .args
                .iter()
                .map(|a| (a.name.clone(), a.values.clone()))
                .collect(),
            dry_run: i.dry_run,
        }
    }
}

impl From<InvocationRecord> for api::Invocation {
    fn from(r: InvocationRecord) -> api::Invocation {
        api::Invocation {
            command: r.command,
            args: r
                .args
                .into_iter()
                .map(|(name, values)| api::Arg { name, values })
                .collect(),
            dry_run: r.dry_run,
        }
    }
}
