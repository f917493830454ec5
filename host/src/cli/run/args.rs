//! The arguments of `stackhost run` and `resume`, parsed and checked with
//! no I/O: the host's run flags, the plugin's own command line built from
//! its manifest, and host flags given before the plugin name moved after
//! its command. What needs files, terminals or the network is resolved in
//! [`super::resolve`].

use crate::caps::bindings::exports::stackhost::host::commands as api;
use crate::cluster::ssh::HANDSHAKES;
use crate::plugin::manifest::{ArgKind, CommandDefaults, CommandSpec, Manifest, Output};
use crate::run::apply::RunOptions;
use crate::run::policy::{Amount, RolloutPolicy};
use crate::runtime::CallLimits;
use crate::time::parse_duration;
use clap::builder::ValueRange;
use clap::{Arg, ArgAction, ArgMatches, Args, Command};
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
    pub(super) argv: Vec<String>,
}

impl RunArgs {
    /// `stackhost run` with `argv` (the plugin, its command, arguments).
    pub(in crate::cli) fn new(argv: Vec<String>) -> RunArgs {
        RunArgs { argv }
    }
}

/// Flags the host takes for every plugin command.
#[derive(Debug, Clone, Args)]
pub struct RunFlags {
    /// Run read-only calls for real and record mutating ones instead of making them.
    #[arg(long)]
    pub(super) dry_run: bool,
    /// Nodes to run on: names, globs (`dea-*`) or roles (`role:dea`); comma-separated or repeated.
    #[arg(long, value_name = "SELECTOR")]
    pub(super) nodes: Vec<String>,
    /// Confirm a destructive command without being asked.
    #[arg(long, short = 'y')]
    pub(super) yes: bool,
    #[command(flatten)]
    pub(super) exec: ExecFlags,
}

/// Flags shared by `run` and `resume`.
#[derive(Debug, Clone, Args)]
pub struct ExecFlags {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Show the plugin's info and debug lines in the report, and every line of the programs' live output (by default a line every few seconds per step when stderr is not a terminal; on a terminal, each running step's latest line).
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
    /// Nodes with a failed or unreachable step the whole run may absorb and go on (a count, or a percentage of its nodes: 100% never halts).
    #[arg(long, value_name = "N|P%", default_value = "0")]
    max_fail: Amount,
    /// Take the cluster lock even from a live holder (prints a warning).
    #[arg(long)]
    pub(super) force_unlock: bool,
    /// How long the cluster lock outlives its holder if the holder dies.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub(super) lock_ttl: Duration,
    #[command(flatten)]
    pub cluster: ClusterFlags,
}

/// Which cluster a command works on, and how to reach it.
#[derive(Debug, Clone, Args)]
pub struct ClusterFlags {
    /// Inventory file (default: ~/.config/stackhost/inventory.toml if it exists, else this machine alone).
    #[arg(long, value_name = "FILE", env = "STACKHOST_INVENTORY")]
    pub(super) inventory: Option<std::path::PathBuf>,
    /// Record the host key of a node not yet in known_hosts instead of refusing it.
    #[arg(long)]
    pub(super) accept_new_host_keys: bool,
    /// Most time to wait for a node's SSH connection.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub(super) connect_timeout: Duration,
    /// known_hosts file for node host keys.
    #[arg(long, value_name = "FILE", default_value = "~/.ssh/known_hosts")]
    pub(super) known_hosts: String,
    /// Most SSH handshakes (connect, key exchange, authentication) in flight at once, whatever --max-in-flight says; raise it when the nodes, not this machine, are the slow side of a handshake.
    #[arg(long, value_name = "N", default_value_t = HANDSHAKES, value_parser = parse_handshakes)]
    pub(super) max_handshakes: usize,
}

impl RunFlags {
    /// Whether `long` names one of the host's run flags.
    pub fn takes(long: &str) -> bool {
        RunFlags::augment_args(Command::new("flags"))
            .get_arguments()
            .any(|a| a.get_long() == Some(long))
    }
}

/// The invocation the plugin is given: each declared argument's values
/// as parsed (a secret's from `secrets`), and, for a command that prints
/// its own document, `json` when `--json` was given.
pub(super) fn invocation(
    spec: &CommandSpec,
    sub: &ArgMatches,
    secrets: &[(String, String)],
    flags: &RunFlags,
) -> api::Invocation {
    // A command that prints its own document learns about --json through
    // an argument named `json` (see wit/MANIFEST.md).
    let json_arg = (spec.output == Output::Message).then(|| api::Arg {
        name: "json".into(),
        values: if flags.exec.json {
            vec!["true".into()]
        } else {
            vec![]
        },
    });
    let secret_of = |name: &str| {
        secrets
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| vec![v.clone()])
            .unwrap_or_default()
    };
    let values = |a: &crate::plugin::manifest::ArgSpec| match a.kind {
        _ if a.secret => secret_of(&a.name),
        ArgKind::Flag if sub.get_flag(&a.name) => vec!["true".into()],
        ArgKind::Flag => vec![],
        _ => sub
            .get_many::<String>(&a.name)
            .map(|v| v.cloned().collect())
            .unwrap_or_default(),
    };
    api::Invocation {
        command: spec.name.clone(),
        args: spec
            .args
            .iter()
            .map(|a| api::Arg {
                name: a.name.clone(),
                values: values(a),
            })
            .chain(json_arg)
            .collect(),
        dry_run: flags.dry_run,
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
            confirm: None,
        }
    }
}

pub(super) const RUN_HELP: &str = "\
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
pub(super) fn host_flags_after_command(argv: &[String]) -> Vec<String> {
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

/// The plugin's command line, built from its manifest, with the host's
/// run flags on every command. The manifest's texts reach the terminal
/// through clap's help, so they are escaped here.
pub(super) fn plugin_cli(m: &Manifest) -> Command {
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
            .about(one_line(&c.about).into_owned())
            .mut_arg("yes", |a| {
                a.help(if c.destructive {
                    "Run this destructive command without asking for confirmation"
                } else {
                    "Confirm a destructive command without being asked (this one is not: it \
                     asks nothing)"
                })
            });
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
