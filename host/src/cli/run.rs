//! `stackhost run NAME[@REQ] COMMAND [ARGS]`: resolve the plugin, build its
//! command line from the manifest, plan and apply, print the report.

use crate::caps::bindings::exports::stackhost::host::commands as api;
use crate::caps::patches::PatchRunner;
use crate::cluster::Cluster;
use crate::cluster::inventory;
use crate::cluster::ssh::{HANDSHAKES, SshOptions};
use crate::paths::Paths;
use crate::plugin::manifest::{ArgKind, CommandDefaults, Manifest, Output};
use crate::plugin::signing::TrustedKeys;
use crate::plugin::store::{self, Installed, PluginStore};
use crate::run::apply::{self, JournalHandle, RunOptions};
use crate::run::journal::{Journal, RunEnd, Takeover};
use crate::run::patches::PatchHost;
use crate::run::policy::{Amount, RolloutPolicy};
use crate::run::report::RunReport;
use crate::runtime::{CallLimits, LoadedPlugin, Runtime};
use crate::time::parse_duration;
use anyhow::Context as _;
use clap::builder::ValueRange;
use clap::{Arg, ArgAction, Args, Command, FromArgMatches};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Arguments of `stackhost run`, taken raw: the plugin's own command line
/// is only known once its manifest is read.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// NAME[@REQUIREMENT], then the plugin's command and arguments.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PLUGIN COMMAND ARGS"
    )]
    argv: Vec<String>,
}

/// Flags the host takes for every plugin command.
#[derive(Debug, Clone, Args)]
pub struct RunFlags {
    /// Run read-only calls for real and record mutating ones instead of making them.
    #[arg(long)]
    dry_run: bool,
    /// Nodes to run on: names, globs (`dea-*`) or roles (`role:dea`); comma-separated or repeated.
    #[arg(long, value_name = "SELECTOR")]
    nodes: Vec<String>,
    /// Confirm a destructive command (import, prune, disable-passwords) without being asked.
    #[arg(long, short = 'y')]
    yes: bool,
    #[command(flatten)]
    exec: ExecFlags,
}

/// Flags shared by `run` and `resume`.
#[derive(Debug, Clone, Args)]
pub struct ExecFlags {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Show every line of the programs' live output; by default a line every few seconds per step when stderr is not a terminal (on a terminal, each running step's latest line).
    #[arg(long, short = 'v', conflicts_with = "quiet")]
    pub verbose: bool,
    /// Show no live progress or program output while steps run (the report still follows).
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// After the recap, time the nodes: SSH handshake, first byte back and step total, as p50, p90 and slowest (also in `--json`, per step).
    #[arg(long)]
    pub timing: bool,
    /// Most linear memory one plugin instance may use, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 512)]
    memory_limit: usize,
    /// Most time a plugin may compute in one call (time spent in host calls does not count).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    cpu_limit: Duration,
    /// Most time one plugin call may take in all [default: 1h, or the command's own].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Default and upper bound for one program run by a plugin [default: 10m, or the command's own].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    exec_timeout: Option<Duration>,
    /// Steps per batch: each batch finishes before the next starts [default: all at once, or the command's own].
    #[arg(long, value_name = "N", value_parser = parse_serial)]
    serial: Option<usize>,
    /// Most steps running at once: a count or a percentage of the phase's steps.
    #[arg(long, value_name = "N|P%", default_value = "16")]
    max_in_flight: Amount,
    /// Run this many steps first, alone; any failure among them halts the run.
    #[arg(long, value_name = "N", default_value_t = 0)]
    canaries: usize,
    /// Failed or unreachable steps the whole run may absorb and go on (a count or a percentage of its nodes).
    #[arg(long, value_name = "N|P%", default_value = "0")]
    max_fail: Amount,
    /// Take the cluster lock even from a live holder (prints a warning).
    #[arg(long)]
    force_unlock: bool,
    /// How long the cluster lock outlives its holder if the holder dies.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    lock_ttl: Duration,
    #[command(flatten)]
    pub cluster: ClusterFlags,
}

/// Which cluster a command works on, and how to reach it.
#[derive(Debug, Clone, Args)]
pub struct ClusterFlags {
    /// Inventory file (default: ~/.config/stackhost/inventory.toml if it exists, else this machine alone).
    #[arg(long, value_name = "FILE", env = "STACKHOST_INVENTORY")]
    inventory: Option<std::path::PathBuf>,
    /// Record the host key of a node not yet in known_hosts instead of refusing it.
    #[arg(long)]
    accept_new_host_keys: bool,
    /// Most time to wait for a node's SSH connection.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    connect_timeout: Duration,
    /// known_hosts file for node host keys.
    #[arg(long, value_name = "FILE", default_value = "~/.ssh/known_hosts")]
    known_hosts: String,
    /// Most SSH handshakes (connect, key exchange, authentication) in flight at once, whatever --max-in-flight says; raise it when the nodes, not this machine, are the slow side of a handshake.
    #[arg(long, value_name = "N", default_value_t = HANDSHAKES, value_parser = parse_handshakes)]
    max_handshakes: usize,
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

/// The host's own defaults for `--timeout` and `--exec-timeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);
const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(600);

impl ExecFlags {
    /// The run's options: each flag given wins, then the command's own
    /// default from its manifest, then the host's.
    pub fn options(&self, dry_run: bool, command: &CommandDefaults) -> RunOptions {
        let (exec_timeout, timeout) = command.durations();
        RunOptions {
            dry_run,
            limits: CallLimits {
                memory: self.memory_limit << 20,
                cpu: self.cpu_limit,
                wall: self.timeout.or(timeout).unwrap_or(DEFAULT_TIMEOUT),
            },
            exec_timeout: self
                .exec_timeout
                .or(exec_timeout)
                .unwrap_or(DEFAULT_EXEC_TIMEOUT),
            rollout: RolloutPolicy {
                serial: self.serial.or(command.serial),
                max_in_flight: self.max_in_flight,
                canaries: self.canaries,
                max_fail: self.max_fail,
            },
            read_only: false,
            patches: None,
            secrets: Default::default(),
            progress: if self.quiet {
                crate::run::progress::Mode::Off
            } else {
                crate::run::progress::Mode::detect(self.verbose)
            },
            interrupt: Some(crate::run::interrupt::Interrupt::new()),
        }
    }
}

const RUN_HELP: &str = "\
Run a plugin command on the cluster.

Usage: stackhost run NAME[@REQUIREMENT] COMMAND [ARGS] [FLAGS]

NAME@REQUIREMENT picks the highest installed version matching a semver
requirement (hello@0.1, multi@^1, multi@=2.0.0). `stackhost run NAME --help`
lists the plugin's commands; `stackhost run NAME COMMAND --help` its arguments
and the host's flags (--dry-run, --json, --nodes, limits).

Examples:
  stackhost run hello info
  stackhost run hello stamp --message 'patched' --dry-run
  stackhost run hello@^0.1 info --json";

/// `argv` with host flags given before the plugin name (`run --json hello
/// info`, as ansible and kubectl take them) moved after its command, where
/// the plugin's parser takes them; a flag's value moves with it. Help
/// flags stay first.
fn host_flags_after_command(argv: &[String]) -> Vec<String> {
    let flags = RunFlags::augment_args(Command::new("flags"));
    let mut leading = Vec::new();
    let mut i = 0;
    while let Some(word) = argv.get(i) {
        let Some(long) = word.strip_prefix("--").filter(|w| !w.is_empty()) else {
            break;
        };
        let (name, inline) = long
            .split_once('=')
            .map_or((long, false), |(n, _)| (n, true));
        let Some(arg) = flags.get_arguments().find(|a| a.get_long() == Some(name)) else {
            break;
        };
        leading.push(word.clone());
        i += 1;
        if !inline
            && arg.get_action().takes_values()
            && let Some(value) = argv.get(i)
        {
            leading.push(value.clone());
            i += 1;
        }
    }
    if leading.is_empty() {
        return argv.to_vec();
    }
    let rest = &argv[i..];
    let at = rest.len().min(2);
    let mut out: Vec<String> = rest[..at].to_vec();
    out.extend(leading);
    out.extend(rest[at..].iter().cloned());
    out
}

/// Defaults for the host's run flags from `config.toml` (`[run]`, keys
/// named as the long flags: `inventory = "..."`, `max-in-flight = 8`,
/// `verbose = true`), added after the command where the command line does
/// not give the flag (and, for a flag with an environment variable, the
/// environment does not either). The command line wins, then the
/// environment, then the config file, then the built-in default.
fn with_config_defaults(paths: &Paths, argv: Vec<String>) -> anyhow::Result<Vec<String>> {
    let file = paths.config.join("config.toml");
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(argv),
        Err(e) => anyhow::bail!("cannot read {}: {e}", file.display()),
    };
    let config: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", file.display()))?;
    let Some(run) = config.get("run") else {
        return Ok(argv);
    };
    if let Some(other) = config.keys().find(|k| *k != "run" && *k != "journal") {
        anyhow::bail!(
            "{}: unknown key `{other}` (the config file has `journal`, where the journal is, \
             and `[run]`, the defaults of the host's run flags)",
            file.display()
        );
    }
    let run = run
        .as_table()
        .with_context(|| format!("{}: `run` must be a table (`[run]`)", file.display()))?;
    let flags = RunFlags::augment_args(Command::new("flags"));
    let until_args = argv.iter().position(|a| a == "--").unwrap_or(argv.len());
    let given = |long: &str| {
        argv[..until_args]
            .iter()
            .any(|a| a == &format!("--{long}") || a.starts_with(&format!("--{long}=")))
    };
    let mut extra = Vec::new();
    for (key, value) in run {
        let arg = flags
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()) && key != "help")
            .with_context(|| {
                format!(
                    "{}: `{key}` is not one of the host's run flags (see `stackhost run NAME \
                     COMMAND --help`, \"Host flags\")",
                    file.display()
                )
            })?;
        if matches!(key.as_str(), "dry-run" | "yes" | "force-unlock") {
            anyhow::bail!(
                "{}: `{key}` cannot be a default; give it on the command line each time",
                file.display()
            );
        }
        let from_env = arg
            .get_env()
            .is_some_and(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()));
        if given(key) || from_env {
            continue;
        }
        match value {
            toml::Value::Boolean(true) => extra.push(format!("--{key}")),
            toml::Value::Boolean(false) => {}
            toml::Value::String(s) => extra.push(format!("--{key}={s}")),
            toml::Value::Integer(n) => extra.push(format!("--{key}={n}")),
            toml::Value::Array(items) => {
                for item in items {
                    let item = match item {
                        toml::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    extra.push(format!("--{key}={item}"));
                }
            }
            other => anyhow::bail!(
                "{}: `{key} = {other}` is neither a string, a number, a boolean nor a list",
                file.display()
            ),
        }
    }
    // Only where a command was named: `run NAME` alone lists commands.
    if extra.is_empty() || until_args < 2 || argv[1].starts_with('-') || argv[0].starts_with('-') {
        return Ok(argv);
    }
    let at = 2;
    let mut out = argv[..at].to_vec();
    out.extend(extra);
    out.extend(argv[at..].iter().cloned());
    Ok(out)
}

pub fn run(paths: &Paths, args: RunArgs) -> anyhow::Result<ExitCode> {
    let argv = with_config_defaults(paths, host_flags_after_command(&args.argv))?;
    let Some((spec, rest)) = argv.split_first().filter(|(s, _)| !s.starts_with('-')) else {
        println!("{RUN_HELP}");
        let help_only = argv.iter().any(|a| a == "-h" || a == "--help");
        return Ok(if help_only {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        });
    };
    let store = PluginStore::new(&paths.plugins());
    let (name, req) = store::parse_spec(spec)?;
    let installed = store.resolve(name, req.as_ref())?;
    let manifest = &installed.record.manifest;
    if manifest.kind == crate::plugin::manifest::Kind::Patch {
        anyhow::bail!(
            "`{}` is a vendor patch, not a plugin: apply it with `stackhost run patch install {}`",
            manifest.name,
            manifest.name
        );
    }

    let matches = plugin_cli(manifest)
        .try_get_matches_from(std::iter::once(spec.clone()).chain(rest.iter().cloned()));
    let matches = match matches {
        Ok(m) => m,
        Err(e) => {
            e.print()?;
            return Ok(ExitCode::from(if e.use_stderr() { 2 } else { 0 }));
        }
    };
    let (command, sub) = matches.subcommand().expect("a subcommand is required");
    let flags = RunFlags::from_arg_matches(sub)?;
    let command = command.to_string();
    let command = command.as_str();
    let spec_cmd = manifest
        .command(command)
        .expect("clap only accepts declared commands");
    // A command that prints its own document learns about --json through
    // an argument named `json` (see wit/MANIFEST.md).
    let json_arg = (spec_cmd.output == Output::Message).then(|| api::Arg {
        name: "json".into(),
        values: if flags.exec.json {
            vec!["true".into()]
        } else {
            vec![]
        },
    });
    // Secret arguments: from their file, the environment or a prompt.
    let mut secrets: Vec<(String, String)> = Vec::new();
    for a in spec_cmd.args.iter().filter(|a| a.secret) {
        let file = sub.get_one::<String>(&a.name).map(std::path::PathBuf::from);
        if let Some(value) = secret_value(a, file.as_deref())? {
            secrets.push((a.name.clone(), value));
        }
    }
    let secret_of = |name: &str| {
        secrets
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| vec![v.clone()])
            .unwrap_or_default()
    };
    let invocation = api::Invocation {
        command: command.to_string(),
        args: spec_cmd
            .args
            .iter()
            .map(|a| api::Arg {
                name: a.name.clone(),
                values: match a.kind {
                    _ if a.secret => secret_of(&a.name),
                    ArgKind::Flag => {
                        if sub.get_flag(&a.name) {
                            vec!["true".into()]
                        } else {
                            vec![]
                        }
                    }
                    _ => sub
                        .get_many::<String>(&a.name)
                        .map(|v| v.cloned().collect())
                        .unwrap_or_default(),
                },
            })
            .chain(json_arg)
            .collect(),
        dry_run: flags.dry_run,
    };

    let plugin = load(paths, &installed)?;
    let cluster = flags
        .exec
        .cluster
        .open(paths)?
        .select(&flags.nodes)
        .map_err(anyhow::Error::msg)?;
    if spec_cmd.destructive && !flags.dry_run && !flags.yes {
        let nodes: Vec<&str> = cluster
            .nodes()
            .iter()
            .map(|n| n.info.name.as_str())
            .collect();
        if !confirm(&manifest.name, command, &spec_cmd.about, &nodes)? {
            eprintln!("not confirmed: nothing was done");
            return Ok(ExitCode::from(super::EXIT_ERROR));
        }
    }
    let journal = Journal::open_configured(paths)?;
    let resumable = secrets.is_empty();
    let redactor = crate::redact::Redactor::new(secrets.into_iter().map(|(_, v)| v).collect());
    // The journal keeps the invocation with secrets hidden.
    let mut record = InvocationRecord::from(&invocation);
    for (_, values) in &mut record.args {
        for v in values.iter_mut() {
            *v = redactor.text(std::mem::take(v));
        }
    }
    let invocation_json = serde_json::to_string(&record)?;
    let run = journal.begin_run(
        &manifest.name,
        &manifest.version.to_string(),
        &installed.record.digest,
        command,
        &invocation_json,
        flags.dry_run,
        !spec_cmd.read_only,
    )?;
    let handle = JournalHandle::new(journal.clone(), run);
    let mut opts = flags.exec.options(flags.dry_run, &spec_cmd.defaults);
    opts.secrets = Arc::new(redactor);
    opts.read_only = spec_cmd.read_only;
    opts.patches = patch_host(paths, &installed, opts.limits)?;
    let version = manifest.version.to_string();
    let mutating = !flags.dry_run && !spec_cmd.read_only;
    let interrupt = opts.interrupt.clone();
    let cluster_name = cluster.name().to_string();
    let report = execute(
        &flags.exec,
        handle,
        mutating,
        &cluster_name,
        interrupt,
        |h| {
            apply::run(
                Arc::new(plugin),
                version,
                Arc::new(cluster),
                invocation,
                opts,
                Some(h),
            )
        },
    )?;
    if report.usage_error {
        // The operator's arguments were wrong: nothing ran, nothing to
        // show in `runs list`.
        journal.discard_run(run)?;
        if flags.exec.json {
            super::print_json(&serde_json::json!({
                "run": null,
                "plugin": manifest.name,
                "command": command,
                "status": "usage-error",
                "report": null,
                "data": [],
                "error": report.plan_error,
            }))?;
        }
        eprintln!(
            "error: {}",
            crate::text::escape_for_terminal(report.plan_error.as_deref().unwrap_or_default())
        );
        eprintln!("See `stackhost run {} {command} --help`.", manifest.name);
        return Ok(ExitCode::from(super::EXIT_USAGE));
    }
    if spec_cmd.output == Output::Message && report.succeeded() {
        return print_messages(&report);
    }
    finish(&flags.exec, run, &report, resumable)
}

/// Print the steps' messages as they are: the document a `message`
/// command produced (kato-style text, or JSON under --json).
fn print_messages(report: &RunReport) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for step in report.phases.iter().flat_map(|p| &p.steps) {
        writeln!(
            out,
            "{}",
            crate::text::escape_for_terminal(step.message.trim_end())
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The installed vendor patches, lent to a plugin granted `patches`.
pub(super) fn patch_host(
    paths: &Paths,
    installed: &Installed,
    limits: CallLimits,
) -> anyhow::Result<Option<Arc<dyn PatchRunner>>> {
    if !installed.record.grant.has("patches") {
        return Ok(None);
    }
    Ok(Some(Arc::new(PatchHost::new(
        Runtime::new(&paths.compiled())?,
        PluginStore::new(&paths.plugins()),
        TrustedKeys::new(&paths.config),
        limits,
    ))))
}

/// Verify the installed file against its grant and signature, and load it.
pub(super) fn load(paths: &Paths, installed: &Installed) -> anyhow::Result<LoadedPlugin> {
    let store = PluginStore::new(&paths.plugins());
    let wasm = store.verified_bytes(installed, &TrustedKeys::new(&paths.config))?;
    let runtime = Runtime::new(&paths.compiled())?;
    let m = &installed.record.manifest;
    runtime
        .load(
            m.name.as_str(),
            &installed.record.digest,
            &wasm,
            installed.record.grant.capabilities.clone(),
        )
        .with_context(|| format!("while loading plugin {} {}", m.name, m.version))
}

/// Run `work` on a tokio runtime; a mutating run holds the cluster lock,
/// renewed while it runs and released after, and is journaled to the end.
pub(super) fn execute<F, Fut>(
    flags: &ExecFlags,
    h: JournalHandle,
    mutating: bool,
    cluster: &str,
    interrupt: Option<Arc<crate::run::interrupt::Interrupt>>,
    work: F,
) -> anyhow::Result<RunReport>
where
    F: FnOnce(JournalHandle) -> Fut,
    Fut: Future<Output = RunReport>,
{
    let (journal, run, unrecorded) = (h.journal.clone(), h.run, h.unrecorded.clone());
    if mutating {
        match journal.lock(run, cluster, flags.lock_ttl, flags.force_unlock) {
            Ok(None) => {}
            Ok(Some(Takeover::Forced(prev))) => eprintln!(
                "warning: --force-unlock took the cluster lock from run {prev}; \
                 if that run is still going, two mutating runs now overlap"
            ),
            Ok(Some(Takeover::Expired(prev))) => eprintln!(
                "note: the cluster lock of run {prev} had expired (its holder is gone); taking it over"
            ),
            Ok(Some(Takeover::HolderGone { run: prev, pid })) => eprintln!(
                "note: the cluster lock was held by run {prev}, whose process {pid} on this machine \
                 is gone; taking it over (`stackhost runs show {prev}`, `stackhost resume {prev}`)"
            ),
            Err(e) => {
                journal.finish_run(run, RunEnd::Failed, Some(&e.to_string()))?;
                return Err(e.into());
            }
        }
    }
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = tokio.block_on(async {
        if let Some(i) = &interrupt
            && let Err(e) = i.listen()
        {
            tracing::warn!("cannot listen for SIGINT and SIGTERM: {e}");
        }
        let ttl = flags.lock_ttl;
        let heartbeat = mutating.then(|| {
            let journal = journal.clone();
            let interrupt = interrupt.clone();
            let cluster = cluster.to_string();
            // Renew every third of the lease. A run that can no longer
            // claim the lock stops starting steps (as if interrupted)
            // before its last lease runs out and another run may take it.
            tokio::spawn(async move {
                let mut renewed = std::time::Instant::now();
                let lost = |why: String| {
                    eprintln!("error: run {run} {why}; stopping: no new step starts");
                    if let Some(i) = &interrupt {
                        i.raise(crate::run::interrupt::Signal::LockLost);
                    }
                };
                loop {
                    tokio::time::sleep(ttl / 3).await;
                    let journal = journal.clone();
                    let cluster = cluster.clone();
                    let answer =
                        tokio::task::spawn_blocking(move || journal.renew(run, &cluster, ttl))
                            .await;
                    match answer {
                        Ok(Ok(true)) => renewed = std::time::Instant::now(),
                        Ok(Ok(false)) => {
                            lost("lost the cluster lock (taken with --force-unlock?)".into());
                            break;
                        }
                        Ok(Err(e)) if renewed.elapsed() >= ttl * 2 / 3 => {
                            lost(format!(
                                "could not renew the cluster lock before its lease ends: {e}"
                            ));
                            break;
                        }
                        Ok(Err(e)) => tracing::warn!("cannot renew the cluster lock: {e}"),
                        Err(e) => tracing::warn!("the lock's heartbeat failed: {e}"),
                    }
                }
            })
        });
        let report = work(h).await;
        if let Some(hb) = heartbeat {
            hb.abort();
        }
        report
    });
    // Blocking work of stopped steps (an artifact being written) ends, and
    // cleans up, before the run is recorded as over.
    tokio.shutdown_timeout(std::time::Duration::from_secs(30));
    let (end, reason) = if let Some(sig) = report.interrupted {
        (RunEnd::Interrupted, Some(format!("interrupted by {sig}")))
    } else if report.succeeded() {
        (RunEnd::Succeeded, None)
    } else if let Some(e) = &report.plan_error {
        (RunEnd::Failed, Some(format!("the plan failed: {e}")))
    } else if let Some(h) = &report.halted {
        (RunEnd::Failed, Some(format!("the rollout halted: {h}")))
    } else {
        (RunEnd::Failed, Some("some steps failed".to_string()))
    };
    // What the journal must hear before the run is over: the ends of
    // steps it could not record, the run's end, the lock's release. If its
    // database is out of reach, wait for it a while: a step whose end is
    // lost would run again on resume.
    let steps: Vec<_> = std::mem::take(&mut *unrecorded.lock().unwrap_or_else(|p| p.into_inner()));
    let record = || -> Result<(), crate::run::journal::JournalError> {
        for s in &steps {
            journal.step_finished(run, s.phase, s.step, s.state, &s.message, s.data.as_deref())?;
        }
        journal.finish_run(run, end, reason.as_deref())?;
        if mutating {
            journal.unlock(run, cluster)?;
        }
        Ok(())
    };
    let deadline = std::time::Instant::now() + JOURNAL_WAIT;
    let (mut said, mut recorded) = (false, false);
    loop {
        match record() {
            Ok(()) => {
                recorded = true;
                break;
            }
            Err(e) if std::time::Instant::now() < deadline => {
                if !said {
                    eprintln!(
                        "error: cannot record the end of run {run} in the journal: {e}; \
                         retrying for up to {}s",
                        JOURNAL_WAIT.as_secs()
                    );
                    said = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            Err(e) => {
                eprintln!(
                    "error: the journal did not record the end of run {run}: {e}. It shows as \
                     running until its holder is seen gone; its lock lapses after --lock-ttl; \
                     `stackhost resume {run}` may run again the steps whose end was not recorded"
                );
                break;
            }
        }
    }
    if said && recorded {
        eprintln!("note: the journal is back; run {run} is recorded");
    }
    Ok(report)
}

/// How long the end of a run waits for an unreachable journal database.
const JOURNAL_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Print the report and pick the exit code.
pub(super) fn finish(
    flags: &ExecFlags,
    run: i64,
    report: &RunReport,
    resumable: bool,
) -> anyhow::Result<ExitCode> {
    if flags.json {
        super::print_json(&envelope(run, report))?;
    } else {
        super::report::print(report)?;
        if flags.timing {
            super::report::print_timing(report)?;
        }
        if report.interrupted.is_some() && !report.dry_run {
            println!(
                "\nrun {run} is journaled as interrupted: `stackhost runs show {run}`; \
                 `stackhost resume {run}` runs what was stopped or not started"
            );
        } else if !report.succeeded() && !report.dry_run && report.plan_error.is_none() {
            if resumable {
                println!(
                    "\nrun {run} is journaled: `stackhost runs show {run}`; after fixing the cause, `stackhost resume {run}`"
                );
            } else {
                println!(
                    "\nrun {run} is journaled: `stackhost runs show {run}`; it took secret arguments, \
                     which the journal does not keep, so it cannot be resumed: run the command again"
                );
            }
        } else if report.plan_error.is_some() {
            println!(
                "\nrun {run} is journaled: `stackhost runs show {run}`; its plan failed, so there is \
                 nothing to resume: fix the cause and run the command again"
            );
        }
    }
    if let Some(sig) = report.interrupted {
        let code = match sig {
            "SIGTERM" => 143,
            "SIGINT" => 130,
            // The lock or the journal was lost: a failed run.
            _ => super::EXIT_FAILED_STEPS,
        };
        return Ok(ExitCode::from(code));
    }
    Ok(if report.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::EXIT_FAILED_STEPS)
    })
}

/// The one `--json` document of `run` and `resume`, success or failure:
/// `{run, plugin, command, status, report, data, error}`. `data` lists
/// the steps that returned data (phase, node, step, data); `error` is the
/// plan's failure or the halt reason.
pub(super) fn envelope(run: i64, report: &RunReport) -> serde_json::Value {
    let status = if report.interrupted.is_some() {
        "interrupted"
    } else if report.succeeded() {
        "succeeded"
    } else {
        "failed"
    };
    let data: Vec<serde_json::Value> = report
        .phases
        .iter()
        .flat_map(|p| p.steps.iter().map(move |s| (p, s)))
        .filter_map(|(p, s)| {
            s.data.as_ref().map(
                |d| serde_json::json!({"phase": p.name, "node": s.node, "step": s.name, "data": d}),
            )
        })
        .collect();
    let error = report
        .plan_error
        .clone()
        .or_else(|| report.halted.clone())
        .or_else(|| report.interrupted.map(|s| format!("interrupted by {s}")));
    serde_json::json!({
        "run": run,
        "plugin": report.plugin,
        "command": report.command,
        "status": status,
        "report": report,
        "data": data,
        "error": error,
    })
}

/// The invocation as the journal keeps it, for `resume`.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct InvocationRecord {
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

/// The plugin's command line, built from its manifest, with the host's
/// run flags on every command. The manifest's texts reach the terminal
/// through clap's help, so they are escaped here.
fn plugin_cli(m: &Manifest) -> Command {
    use crate::text::escape_line as one_line;
    let mut cli = Command::new(format!("stackhost run {}", m.name))
        .bin_name(format!("stackhost run {}", m.name))
        .about(one_line(&m.description).into_owned())
        .version(m.version.to_string())
        .subcommand_required(true)
        .arg_required_else_help(true);
    for c in &m.commands {
        let mut sub = Command::new(c.name.clone()).about(one_line(&c.about).into_owned());
        if !c.examples.is_empty() {
            let examples: Vec<_> = c.examples.iter().map(|e| one_line(e)).collect();
            sub = sub.after_help(format!("Examples:\n  {}", examples.join("\n  ")));
        }
        for a in &c.args {
            let mut help = one_line(&a.help).into_owned();
            if let Some(d) = &a.default {
                // clap would print the default raw: show it escaped in the
                // help instead.
                help = format!("{help} [default: {}]", one_line(d))
                    .trim_start()
                    .to_string();
            }
            let mut arg = Arg::new(a.name.clone())
                .help(help.clone())
                .hide_default_value(a.default.is_some());
            arg = match a.kind {
                ArgKind::Positional => arg
                    .required(a.required)
                    .num_args(if a.multiple {
                        ValueRange::new(1..)
                    } else {
                        ValueRange::new(1..=1)
                    })
                    .action(if a.multiple {
                        ArgAction::Append
                    } else {
                        ArgAction::Set
                    }),
                // A secret never comes through argv: only its file does;
                // otherwise the environment or a hidden prompt.
                ArgKind::Option if a.secret => arg
                    .long(format!("{}-file", a.name))
                    .value_name("FILE")
                    .help(
                        format!(
                            "{help} [secret: read from FILE, or ${}, or asked for on a terminal]",
                            a.secret_env()
                        )
                        .trim_start()
                        .to_string(),
                    )
                    .action(ArgAction::Set),
                ArgKind::Option => arg
                    .long(a.name.clone())
                    .value_name(a.name.to_uppercase())
                    .required(a.required)
                    .action(if a.multiple {
                        ArgAction::Append
                    } else {
                        ArgAction::Set
                    }),
                ArgKind::Flag => arg.long(a.name.clone()).action(ArgAction::SetTrue),
            };
            if let Some(d) = &a.default {
                arg = arg.default_value(d.clone());
            }
            sub = sub.arg(arg);
        }
        // augment_args sets RunFlags' own doc comment as the about: put
        // the command's back.
        sub = RunFlags::augment_args(sub.next_help_heading("Host flags"))
            .about(one_line(&c.about).into_owned());
        cli = cli.subcommand(sub);
    }
    cli
}

/// Most `--max-handshakes`: each handshake in flight holds a socket and a
/// key exchange's state, and the descriptors of a run are bounded too.
const MAX_HANDSHAKES: usize = 4096;

fn parse_handshakes(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("--max-handshakes must be at least 1".into()),
        Ok(n) if n > MAX_HANDSHAKES => Err(format!(
            "--max-handshakes is at most {MAX_HANDSHAKES} (got {n})"
        )),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{s}` is not a number of handshakes")),
    }
}

/// `--serial`: one step per batch at least.
fn parse_serial(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("--serial must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{s}` is not a number of steps")),
    }
}

/// Ask the operator to confirm destructive command `command` on `nodes`;
/// off a terminal, refuse (the operator must pass --yes).
fn confirm(plugin: &str, command: &str, about: &str, nodes: &[&str]) -> anyhow::Result<bool> {
    use crate::text::escape_line as one_line;
    use std::io::{BufRead, IsTerminal, Write};
    let what = format!("`{plugin} {command}` is destructive: {}", one_line(about));
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "{what}; not on a terminal, so it cannot be confirmed: pass --yes to run it, or \
             --dry-run to see what it would do"
        );
    }
    let shown: Vec<_> = nodes.iter().map(|n| one_line(n)).collect();
    eprint!(
        "{what}\nRun it on {} node(s): {}? [y/N] ",
        nodes.len(),
        shown.join(", ")
    );
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
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

#[cfg(test)]
mod tests {
    use super::host_flags_after_command as moved;

    fn words(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn host_flags_before_the_plugin_name_move_after_its_command() {
        assert_eq!(
            moved(&words("--json hello info")),
            words("hello info --json")
        );
        assert_eq!(
            moved(&words("--nodes dea-1 --dry-run backup export -- x")),
            words("backup export --nodes dea-1 --dry-run -- x")
        );
        assert_eq!(moved(&words("--serial=1 hello")), words("hello --serial=1"));
        // Already after, an unknown flag, or help: left as they are.
        for same in ["hello info --json", "--bogus hello info", "--help"] {
            assert_eq!(moved(&words(same)), words(same));
        }
    }

    #[test]
    fn every_host_flag_is_reserved() {
        use clap::CommandFactory as _;
        #[derive(clap::Parser)]
        struct Probe {
            #[command(flatten)]
            flags: super::RunFlags,
        }
        for arg in Probe::command().get_arguments() {
            if let Some(long) = arg.get_long() {
                assert!(
                    crate::plugin::manifest::RESERVED_ARGS.contains(&long),
                    "host flag --{long} is not in RESERVED_ARGS"
                );
            }
        }
    }
}
