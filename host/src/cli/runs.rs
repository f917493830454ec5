//! `stackhost runs list|show` and `stackhost resume ID`: the journal from
//! the operator's side.

use crate::cli::run::config::Config;
use crate::cli::run::{ExecFlags, InvocationRecord, execute, finish, load, patch_host};
use crate::paths::Paths;
use crate::plugin::store::PluginStore;
use crate::run::apply::{self, JournalHandle};
use crate::run::journal::{Journal, RunFilter, RunRecord};
use crate::text::{escape_for_terminal as shown, escape_line as one_line};
use anyhow::bail;
use clap::{Args, Subcommand};
use semver::VersionReq;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List recent runs, newest first (mutating runs; --all adds dry runs and read-only commands).
    #[command(
        after_help = "Examples:\n  stackhost runs list\n  stackhost runs list --status failed --since 7d\n  stackhost runs list --plugin backup --all --json"
    )]
    List {
        /// How many runs to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Also show dry runs and read-only commands (`hello info`, `backup list`).
        #[arg(long)]
        all: bool,
        /// Only runs with this status.
        #[arg(long, value_parser = ["running", "succeeded", "failed", "interrupted", "abandoned"])]
        status: Option<String>,
        /// Only runs of this plugin.
        #[arg(long, value_name = "NAME")]
        plugin: Option<String>,
        /// Only runs started within this long (`90m`, `7d`).
        #[arg(long, value_name = "DURATION", value_parser = crate::time::parse_duration)]
        since: Option<std::time::Duration>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one run and each of its steps.
    Show {
        /// The run's id (from `runs list`).
        id: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Arguments of `stackhost resume`.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  stackhost runs list\n  stackhost resume 12")]
pub struct ResumeArgs {
    /// The run to resume (from `runs list`).
    id: i64,
    #[command(flatten)]
    flags: ExecFlags,
}

fn journal(paths: &Paths) -> anyhow::Result<Journal> {
    Ok(Journal::open_configured(paths)?)
}

// Long because it is one arm per `runs` subcommand.
pub fn run(paths: &Paths, cmd: RunsCommand) -> anyhow::Result<ExitCode> {
    let journal = journal(paths)?;
    match cmd {
        RunsCommand::List {
            limit,
            all,
            status,
            plugin,
            since,
            json,
        } => {
            let filter = RunFilter {
                limit,
                all,
                status,
                plugin,
                since: since.map(|d| crate::run::journal::now() - d.as_secs() as i64),
            };
            let runs = journal.list(&filter)?;
            if json {
                super::print_json(&runs.iter().map(run_json).collect::<Vec<_>>())?;
            } else if runs.is_empty() {
                println!("{}", nothing_listed(&journal, &filter)?);
            } else {
                println!(
                    "{:>5}  {:<10} {:<22} {:<24} COMMAND",
                    "ID", "STATUS", "STARTED", "PLUGIN"
                );
                for r in runs {
                    let dry = if r.dry_run { " (dry run)" } else { "" };
                    println!(
                        "{:>5}  {:<10} {:<22} {:<24} {}{dry}",
                        r.id,
                        r.status,
                        crate::time::format_time(r.started_at.max(0) as u64),
                        format!("{} {}", one_line(&r.plugin), one_line(&r.version)),
                        one_line(&r.command)
                    );
                }
            }
        }
        RunsCommand::Show { id, json } => {
            let r = journal.get(id)?;
            if json {
                super::print_json(&run_json(&r))?;
            } else {
                let dry = if r.dry_run { " (dry run)" } else { "" };
                println!(
                    "run {} · {} {} · {}{dry} · {}",
                    r.id,
                    one_line(&r.plugin),
                    one_line(&r.version),
                    one_line(&r.command),
                    r.status
                );
                if let Ok(inv) = serde_json::from_str::<InvocationRecord>(&r.invocation) {
                    let args: Vec<String> = inv
                        .args
                        .iter()
                        .filter(|(_, v)| !v.is_empty())
                        .map(|(n, v)| format!("{n}={}", v.join(",")))
                        .collect();
                    if !args.is_empty() {
                        println!("  arguments: {}", one_line(&args.join(" ")));
                    }
                }
                println!(
                    "  started {}{}",
                    crate::time::format_time(r.started_at.max(0) as u64),
                    r.finished_at
                        .map(|f| format!(
                            ", ended {} ({} s)",
                            crate::time::format_time(f.max(0) as u64),
                            (f - r.started_at).max(0)
                        ))
                        .unwrap_or_default()
                );
                if let Some(why) = &r.reason {
                    println!("  {}: {}", r.status, shown(why));
                }
                for s in &r.steps {
                    println!(
                        "  {:<12} {:<10} {:<9} {} (attempts: {}) {}",
                        one_line(&s.phase),
                        one_line(&s.node),
                        s.state.as_str(),
                        one_line(&s.name),
                        s.attempts,
                        shown(&s.message)
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A run as `--json` shows it: the invocation and each step's data as
/// JSON values, not JSON text inside strings.
fn run_json(r: &RunRecord) -> serde_json::Value {
    fn parse(text: &str) -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(text)
            .unwrap_or_else(|_| serde_json::Value::String(text.to_string()))
    }
    let mut v = serde_json::to_value(r).unwrap_or_default();
    v["invocation"] = parse(&r.invocation);
    if let Some(steps) = v["steps"].as_array_mut() {
        for (step, rec) in steps.iter_mut().zip(&r.steps) {
            step["data"] = rec.data.as_deref().map_or(serde_json::Value::Null, parse);
        }
    }
    v
}

/// Re-run what did not finish in run `id`; finished steps never run again.
pub fn resume(paths: &Paths, config: &Config, args: ResumeArgs) -> anyhow::Result<ExitCode> {
    let journal = Journal::open_at(&crate::run::journal::location_in(
        paths,
        &config.table,
        &config.file,
    )?)?;
    let record = journal.get(args.id)?;
    if record.dry_run {
        bail!(
            "run {} was a dry run; nothing to resume (run the command again without --dry-run)",
            record.id
        );
    }
    if record.status == "succeeded" {
        bail!("run {} already succeeded; nothing to resume", record.id);
    }
    if record.steps.is_empty() {
        bail!(
            "run {} never got a plan (its plan failed); run the command again instead",
            record.id
        );
    }
    let store = PluginStore::new(&paths.plugins());
    let exact = VersionReq::parse(&format!("={}", record.version))?;
    let installed = store.resolve(&record.plugin, Some(&exact))?;
    if installed.record.digest != record.digest {
        bail!(
            "plugin {} {} was reinstalled with different content since run {}; \
             resuming would mix two plugins' steps, so run the command again instead",
            record.plugin,
            record.version,
            record.id
        );
    }
    // Refused before anything is reopened or loaded: the run stays as it
    // was journaled.
    let command = installed.record.manifest.command(&record.command);
    if command.is_some_and(|c| c.args.iter().any(|a| a.secret)) {
        bail!(
            "run {} took secret arguments, which the journal does not keep; run the command again",
            record.id
        );
    }
    let invocation: InvocationRecord = serde_json::from_str(&record.invocation)?;
    let invocation = invocation.into();
    let caps = match command {
        Some(c) => (installed.record.grant)
            .for_run(c, &invocation)
            .map_err(anyhow::Error::msg)?,
        None => installed.record.grant.capabilities.clone(),
    };
    let (runtime, plugin) = load(paths, &installed, caps)?;
    let cluster = args.flags.cluster.open(paths)?;
    journal.reopen_run(record.id)?;
    let handle = JournalHandle::new(journal, record.id);
    // The command's own defaults apply again (flags given now still win).
    let defaults = command.map(|c| c.defaults.clone()).unwrap_or_default();
    let mut opts = args.flags.options(false, &defaults);
    opts.patches = patch_host(paths, &runtime, &installed, opts.limits)?;
    let interrupt = opts.interrupt.clone();
    let cluster_name = cluster.name().to_string();
    let report = execute(&args.flags, handle, true, &cluster_name, interrupt, |h| {
        apply::resume(
            Arc::new(plugin),
            Arc::new(cluster),
            invocation,
            opts,
            h,
            &record,
        )
    })?;
    finish(&args.flags, record.id, &report, true)
}

/// What `runs list` says when it lists nothing: whether there are no runs
/// at all, or only ones `--all` or other filters would show.
fn nothing_listed(journal: &Journal, filter: &RunFilter) -> anyhow::Result<String> {
    let filtered = filter.status.is_some() || filter.plugin.is_some() || filter.since.is_some();
    if !filter.all {
        let hidden = journal
            .list(&RunFilter {
                all: true,
                ..filter.clone()
            })?
            .len();
        if hidden > 0 {
            let more = if hidden >= filter.limit { "+" } else { "" };
            return Ok(format!(
                "no mutating runs{}; {hidden}{more} dry run(s) or read-only run(s) are shown with --all",
                if filtered { " match" } else { " yet" }
            ));
        }
    }
    Ok(if filtered {
        "no runs match".to_string()
    } else {
        "no runs yet".to_string()
    })
}
