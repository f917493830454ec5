//! `config.toml`: the journal's location (`journal = ...`) and `[run]`,
//! defaults for the host's run flags. Read and parsed once per command,
//! then handed to whatever needs it (the run flags, the journal).

use super::args::{ExecFlags, RunFlags};
use crate::paths::Paths;
use anyhow::Context as _;
use clap::{Args, Command};
use std::path::PathBuf;

/// The parsed config file (empty when there is none).
#[derive(Debug, Default)]
pub struct Config {
    pub file: PathBuf,
    pub table: toml::Table,
}

impl Config {
    /// Read `<config>/config.toml`; a missing file is an empty config.
    pub fn load(paths: &Paths) -> anyhow::Result<Config> {
        let file = paths.config.join("config.toml");
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => anyhow::bail!("cannot read {}: {e}", file.display()),
        };
        let table: toml::Table = toml::from_str(&text)
            .with_context(|| format!("{} is not valid TOML", file.display()))?;
        Ok(Config { file, table })
    }

    /// `stackhost run` argv (`NAME COMMAND ARGS`) with the `[run]`
    /// defaults added after the command (only where a command was named:
    /// `run NAME` alone lists commands).
    pub fn run_argv(&self, argv: Vec<String>) -> anyhow::Result<Vec<String>> {
        let flags = RunFlags::augment_args(Command::new("flags"));
        let named = argv.len() >= 2 && !argv[0].starts_with('-') && !argv[1].starts_with('-');
        self.with_defaults(argv, &flags, named.then_some(2), false)
    }

    /// `stackhost resume` argv (`ID FLAGS`) with the `[run]` defaults that
    /// apply to a resume (the flags `resume` takes; `nodes`, say, is fixed
    /// by the run being resumed) added after the id.
    pub fn resume_argv(&self, argv: Vec<String>) -> anyhow::Result<Vec<String>> {
        let flags = ExecFlags::augment_args(Command::new("flags"));
        let named = argv.first().is_some_and(|a| !a.starts_with('-'));
        self.with_defaults(argv, &flags, named.then_some(1), true)
    }

    /// Defaults for the host's run flags (`[run]`, keys named as the long
    /// flags: `inventory = "..."`, `max-in-flight = 8`, `verbose = true`),
    /// put in at `at` where the command line does not give the flag (and,
    /// for a flag with an environment variable, the environment does not
    /// either). The command line wins, then the environment, then the
    /// config file, then the built-in default. With `only_known`, keys
    /// that `flags` does not take are left out rather than refused.
    fn with_defaults(
        &self,
        argv: Vec<String>,
        flags: &Command,
        at: Option<usize>,
        only_known: bool,
    ) -> anyhow::Result<Vec<String>> {
        let Some(run) = self.table.get("run") else {
            return Ok(argv);
        };
        let file = self.file.display();
        if let Some(other) = self.table.keys().find(|k| *k != "run" && *k != "journal") {
            anyhow::bail!(
                "{file}: unknown key `{other}` (the config file has `journal`, where the journal \
                 is, and `[run]`, the defaults of the host's run flags)"
            );
        }
        let run = run
            .as_table()
            .with_context(|| format!("{file}: `run` must be a table (`[run]`)"))?;
        let until_args = argv.iter().position(|a| a == "--").unwrap_or(argv.len());
        let given = |long: &str| {
            argv[..until_args]
                .iter()
                .any(|a| a == &format!("--{long}") || a.starts_with(&format!("--{long}=")))
        };
        let mut extra = Vec::new();
        for (key, value) in run {
            if matches!(key.as_str(), "dry-run" | "yes" | "force-unlock") {
                anyhow::bail!(
                    "{file}: `{key}` cannot be a default; give it on the command line each time"
                );
            }
            let arg = flags
                .get_arguments()
                .find(|a| a.get_long() == Some(key.as_str()) && key != "help");
            let arg = match arg {
                Some(arg) => arg,
                None if only_known && RunFlags::takes(key) => continue,
                None => anyhow::bail!(
                    "{file}: `{key}` is not one of the host's run flags (see `stackhost run NAME \
                     COMMAND --help`, \"Host flags\")"
                ),
            };
            let from_env = arg
                .get_env()
                .is_some_and(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()));
            if given(key) || from_env {
                continue;
            }
            flag_words(key, value, &mut extra).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
        }
        let Some(at) = at.filter(|at| !extra.is_empty() && until_args >= *at) else {
            return Ok(argv);
        };
        let mut out = argv[..at].to_vec();
        out.extend(extra);
        out.extend(argv[at..].iter().cloned());
        Ok(out)
    }
}

/// The command-line words that give `key = value`.
fn flag_words(key: &str, value: &toml::Value, out: &mut Vec<String>) -> Result<(), String> {
    match value {
        toml::Value::Boolean(true) => out.push(format!("--{key}")),
        toml::Value::Boolean(false) => {}
        toml::Value::String(s) => out.push(format!("--{key}={s}")),
        toml::Value::Integer(n) => out.push(format!("--{key}={n}")),
        toml::Value::Array(items) => {
            for item in items {
                let item = match item {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                out.push(format!("--{key}={item}"));
            }
        }
        other => {
            return Err(format!(
                "`{key} = {other}` is neither a string, a number, a boolean nor a list"
            ));
        }
    }
    Ok(())
}
