//! `stackhost run NAME[@REQ] COMMAND [ARGS]`: resolve the plugin, build its
//! command line from the manifest, plan and apply, print the report.
//!
//! In stages, as ripgrep takes its flags: [`args`] parses and checks with
//! no I/O; [`config`] is the config file, read once; [`resolve`] turns the
//! arguments into what the run needs (cluster, plugin, secrets,
//! confirmation); [`execute`] carries the run out under the lock and
//! prints it.

pub mod args;
pub mod config;
mod execute;
mod resolve;

pub use args::{ClusterFlags, ExecFlags, RunArgs, RunFlags};
pub(super) use execute::{execute, finish};
pub(super) use resolve::{InvocationRecord, load, patch_host};

use crate::caps::bindings::exports::stackhost::host::commands as api;
use crate::paths::Paths;
use crate::plugin::manifest::{CommandSpec, Kind, Output};
use crate::plugin::store::{self, Installed, PluginStore};
use crate::redact::Redactor;
use crate::run::apply::{self, Confirm, JournalHandle};
use crate::run::journal::{self, Journal};
use crate::run::report::RunReport;
use clap::FromArgMatches;
use config::Config;
use std::process::ExitCode;
use std::sync::Arc;

pub fn run(paths: &Paths, args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(paths)?;
    let argv = config.run_argv(args::host_flags_after_command(&args.argv))?;
    let Some((spec, rest)) = argv.split_first().filter(|(s, _)| !s.starts_with('-')) else {
        println!("{}", args::RUN_HELP);
        let help_only = argv.iter().any(|a| a == "-h" || a == "--help");
        return Ok(ExitCode::from(if help_only { 0 } else { 2 }));
    };
    let store = PluginStore::new(&paths.plugins());
    let (name, req) = store::parse_spec(spec)?;
    let installed = store.resolve(name, req.as_ref())?;
    let manifest = &installed.record.manifest;
    if manifest.kind == Kind::Patch {
        anyhow::bail!(
            "`{}` is a vendor patch, not a plugin: apply it with `stackhost run patch install {}`",
            manifest.name,
            manifest.name
        );
    }
    let matches = args::plugin_cli(manifest)
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
    let spec_cmd = manifest
        .command(command)
        .expect("clap only accepts declared commands");
    let secrets = resolve::secrets(spec_cmd, sub)?;
    let invocation = args::invocation(spec_cmd, sub, &secrets, &flags);
    let caps = match installed.record.grant.for_run(spec_cmd, &invocation) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {}", crate::text::escape_for_terminal(&e));
            eprintln!(
                "See `stackhost run {} {} --help`.",
                manifest.name, spec_cmd.name
            );
            return Ok(ExitCode::from(super::EXIT_USAGE));
        }
    };
    let journal_at = journal::location_in(paths, &config.table, &config.file)?;
    let prepared = Prepared {
        installed: &installed,
        caps,
        spec_cmd,
        flags: &flags,
        secrets: secrets.into_iter().map(|(_, v)| v).collect(),
    };
    prepared.run(paths, invocation, &journal_at)
}

/// A plugin command with its arguments parsed and its secrets read.
struct Prepared<'a> {
    installed: &'a Installed,
    /// The run's capabilities: the grant and the paths the operator gave.
    caps: crate::caps::registry::Capabilities,
    spec_cmd: &'a CommandSpec,
    flags: &'a RunFlags,
    /// The values of the secret arguments.
    secrets: Vec<String>,
}

impl Prepared<'_> {
    /// Load the plugin, open the cluster, confirm a destructive command,
    /// journal the run and carry it out.
    fn run(
        self,
        paths: &Paths,
        invocation: api::Invocation,
        journal_at: &str,
    ) -> anyhow::Result<ExitCode> {
        let manifest = &self.installed.record.manifest;
        let (flags, spec_cmd) = (self.flags, self.spec_cmd);
        let (runtime, plugin) = load(paths, self.installed, self.caps.clone())?;
        let cluster = flags
            .exec
            .cluster
            .open(paths)?
            .select(&flags.nodes)
            .map_err(anyhow::Error::msg)?;
        let journal = Journal::open_at(journal_at)?;
        let resumable = self.secrets.is_empty();
        let redactor = Redactor::new(self.secrets);
        let run = begin_run(
            &journal,
            self.installed,
            spec_cmd,
            &invocation,
            &redactor,
            flags,
        )?;
        let mut opts = flags.exec.options(flags.dry_run, &spec_cmd.defaults);
        opts.secrets = Arc::new(redactor);
        opts.read_only = spec_cmd.read_only;
        opts.patches = patch_host(paths, &runtime, self.installed, opts.limits)?;
        if spec_cmd.destructive && !flags.dry_run && !flags.yes {
            let asked = resolve::Confirmation {
                plugin: manifest.name.clone(),
                command: spec_cmd.name.clone(),
                about: spec_cmd.about.clone(),
                arguments: shown_arguments(&invocation, &opts.secrets),
            };
            opts.confirm = Some(Confirm(Arc::new(move |plan| asked.ask(plan))));
        }
        let version = manifest.version.to_string();
        let mutating = !flags.dry_run && !spec_cmd.read_only;
        let interrupt = opts.interrupt.clone();
        let cluster_name = cluster.name().to_string();
        let handle = JournalHandle::new(journal.clone(), run);
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
        if let Some(why) = &report.declined {
            // Nothing ran: like a usage error, the run is not kept.
            journal.discard_run(run)?;
            if flags.exec.json {
                super::print_json(&serde_json::json!({
                    "run": null,
                    "plugin": manifest.name,
                    "command": spec_cmd.name,
                    "status": "not-confirmed",
                    "report": null,
                    "data": [],
                    "error": why,
                }))?;
            }
            eprintln!("{}", crate::text::escape_for_terminal(why));
            return Ok(ExitCode::from(super::EXIT_ERROR));
        }
        if report.usage_error {
            return usage_error(
                &journal,
                run,
                &manifest.name,
                &spec_cmd.name,
                &report,
                flags,
            );
        }
        if spec_cmd.output == Output::Message && report.succeeded() {
            return print_messages(&report);
        }
        finish(&flags.exec, run, &report, resumable)
    }
}

/// Journal a new run, its invocation kept with secrets hidden.
fn begin_run(
    journal: &Journal,
    installed: &Installed,
    spec_cmd: &CommandSpec,
    invocation: &api::Invocation,
    redactor: &Redactor,
    flags: &RunFlags,
) -> anyhow::Result<i64> {
    let mut record = InvocationRecord::from(invocation);
    for (_, values) in &mut record.args {
        for v in values.iter_mut() {
            *v = redactor.text(std::mem::take(v));
        }
    }
    let manifest = &installed.record.manifest;
    Ok(journal.begin_run(
        &manifest.name,
        &manifest.version.to_string(),
        &installed.record.digest,
        &spec_cmd.name,
        &serde_json::to_string(&record)?,
        flags.dry_run,
        !spec_cmd.read_only,
    )?)
}

/// The plan refused the operator's arguments: nothing ran, nothing to
/// show in `runs list`.
fn usage_error(
    journal: &Journal,
    run: i64,
    plugin: &str,
    command: &str,
    report: &RunReport,
    flags: &RunFlags,
) -> anyhow::Result<ExitCode> {
    journal.discard_run(run)?;
    if flags.exec.json {
        super::print_json(&serde_json::json!({
            "run": null,
            "plugin": plugin,
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
    eprintln!("See `stackhost run {plugin} {command} --help`.");
    Ok(ExitCode::from(super::EXIT_USAGE))
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

/// The arguments a run was given, `name=value` (flags by name), secrets
/// as `***`: what a confirmation shows.
fn shown_arguments(invocation: &api::Invocation, secrets: &crate::redact::Redactor) -> Vec<String> {
    invocation
        .args
        .iter()
        .filter(|a| !a.values.is_empty())
        .map(|a| match a.values.as_slice() {
            [v] if v == "true" => a.name.clone(),
            values => format!("{}={}", a.name, secrets.text(values.join(" "))),
        })
        .collect()
}
