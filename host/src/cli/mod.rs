//! The command line: one file per subcommand. Arguments are parsed and
//! validated by clap with no I/O, then each subcommand resolves what it
//! needs (paths, store, runtime) and runs.

mod dev;
mod inventory;
mod keys;
mod node;
mod plugin;
mod plugin_check;
mod report;
mod run;
mod runs;
mod scaffold;
mod sdk;

use crate::paths::Paths;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Exit code for an error before or outside a run (bad input, refused plugin).
pub const EXIT_ERROR: u8 = 1;
/// Exit code for a usage error: the host's own, or a plugin's plan that
/// refused the operator's arguments.
pub const EXIT_USAGE: u8 = 2;
/// Exit code for a run that finished with failed steps or a failed plan.
pub const EXIT_FAILED_STEPS: u8 = 3;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  error: bad input, refused or missing plugin, unreadable files
  2  usage error on the command line (the host's, or a plugin's own)
  3  the run finished, but its plan or some of its steps failed

Files live under ~/.config/stackhost, ~/.local/share/stackhost and
~/.cache/stackhost, or all under $STACKHOST_HOME when it is set.
Set STACKHOST_LOG=debug for a trace.";

const EXAMPLES: &str = "\
Examples:
  stackhost plugin install --yes plugins/dist/hello.wasm
  stackhost plugin list
  stackhost run hello info
  stackhost run hello stamp --message 'maintenance at 3am' --dry-run
  stackhost run hello@^0.1 info --json
  stackhost keys trust vendor.pub
  stackhost run patch status
  stackhost runs list
  stackhost resume 12
  stackhost plugin new my-plugin
  stackhost sdk export ~/stackhost-sdk";

/// stackhost: cluster maintenance with sandboxed WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "stackhost", version, about, after_help = EXAMPLES, after_long_help = format!("{EXAMPLES}\n\n{EXIT_CODES}"))]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a plugin command on the cluster (see `stackhost run NAME --help`).
    #[command(disable_help_flag = true)]
    Run(run::RunArgs),
    /// Install, list, inspect and remove plugins; scaffold new ones.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Trust, list and remove the keys that sign plugins and vendor patches.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Write an example inventory, or check one and list its nodes.
    #[command(subcommand)]
    Inventory(inventory::InventoryCommand),
    /// Show the cluster's nodes.
    #[command(subcommand)]
    Node(node::NodeCommand),
    /// Show journaled runs and their steps.
    #[command(subcommand)]
    Runs(runs::RunsCommand),
    /// Resume a failed or interrupted run: re-run what did not finish.
    Resume(runs::ResumeArgs),
    /// Write out the plugin SDK and WIT package this binary carries.
    #[command(subcommand)]
    Sdk(sdk::SdkCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "Examples:\n  stackhost completions bash > /etc/bash_completion.d/stackhost\n  stackhost completions zsh > \"${fpath[1]}/_stackhost\"\n  stackhost completions fish > ~/.config/fish/completions/stackhost.fish"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), for `man -l -` or /usr/local/share/man/man1.
    #[command(
        after_help = "Examples:\n  stackhost man | man -l -\n  stackhost man > /usr/local/share/man/man1/stackhost.1"
    )]
    Man,
}

/// Bash: `stackhost run <TAB>` completes the installed plugins' names and
/// `stackhost run NAME <TAB>` their commands, asked of stackhost itself
/// when completing (the static script above knows only the host's own
/// commands).
const BASH_PLUGINS: &str = r#"
_stackhost_plugins() {
    if [[ "${COMP_WORDS[1]}" == run && "$COMP_CWORD" -le 3 ]]; then
        local cur="${COMP_WORDS[COMP_CWORD]}" words
        if [[ "$COMP_CWORD" -eq 2 ]]; then
            words="$(stackhost plugin list --json 2>/dev/null | sed -n 's/^    "name": "\([^"]*\)",$/\1/p')"
        else
            words="$(stackhost run "${COMP_WORDS[2]}" --help 2>/dev/null | awk '/^Commands:/ {f=1; next} /^$/ {f=0} f && $1 != "help" {print $1}')"
        fi
        COMPREPLY=($(compgen -W "$words" -- "$cur"))
        return 0
    fi
    _stackhost "$@"
}
complete -F _stackhost_plugins -o bashdefault -o default stackhost
"#;

/// Parse the command line and run it.
pub fn main() -> anyhow::Result<ExitCode> {
    let paths = Paths::from_env();
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // `resume` takes the `[run]` defaults of config.toml as `run` does
    // (`run` adds them itself, once the plugin's command is known).
    let mut config = None;
    if argv.get(1).is_some_and(|a| a == "resume") {
        let loaded = run::config::Config::load(&paths)?;
        let tail: Vec<String> = argv
            .split_off(2)
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        argv.extend(loaded.resume_argv(tail)?.into_iter().map(Into::into));
        config = Some(loaded);
    }
    let cli = Cli::parse_from(argv);
    match cli.command {
        Command::Run(args) => run::run(&paths, args),
        Command::Plugin(cmd) => plugin::run(&paths, cmd),
        Command::Keys(cmd) => keys::run(&paths, cmd),
        Command::Inventory(cmd) => inventory::run(&paths, cmd),
        Command::Node(cmd) => node::run(&paths, cmd),
        Command::Runs(cmd) => runs::run(&paths, cmd),
        Command::Resume(args) => runs::resume(&paths, &config.unwrap_or_default(), args),
        Command::Sdk(cmd) => sdk::run(cmd),
        Command::Man => {
            use clap::CommandFactory;
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "stackhost",
                &mut std::io::stdout(),
            );
            if shell == clap_complete::Shell::Bash {
                print!("{BASH_PLUGINS}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Print `value` as pretty JSON on stdout.
fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
