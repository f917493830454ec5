//! `stackhost plugin install|list|info|remove|new`: the plugin store from
//! the operator's side. Install shows what a plugin asks for and records
//! the grant, bound to the file's content digest.

use crate::grant::Grant;
use crate::inspect;
use crate::manifest::{Capabilities, Manifest};
use crate::paths::Paths;
use crate::runtime::{Runtime, imports};
use crate::store::{self, InstallRecord, Installed, PluginStore};
use anyhow::{Context as _, bail};
use clap::Subcommand;
use serde::Serialize;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Install plugin files, after showing and granting what they ask for.
    #[command(after_help = "\
Examples:
  stackhost plugin install plugins/dist/hello.wasm            # asks, capability by capability
  stackhost plugin install --yes plugins/dist/*.wasm          # grants everything requested
  stackhost plugin install --grant exec plugins/dist/hello.wasm")]
    Install {
        /// `.wasm` component files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Grant every capability the plugin requests, without asking.
        #[arg(long, conflicts_with = "grant")]
        yes: bool,
        /// Grant only these capabilities (comma-separated: exec,fs,archive,postgres,docker).
        #[arg(long, value_delimiter = ',', value_name = "CAPS")]
        grant: Option<Vec<String>>,
        /// Replace an installed plugin of the same name and version whose content differs.
        #[arg(long)]
        replace: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List installed plugins, every version.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a plugin's manifest, grant and imports.
    #[command(
        after_help = "Examples:\n  stackhost plugin info hello\n  stackhost plugin info multi@^1 --json"
    )]
    Info {
        /// NAME or NAME@REQUIREMENT.
        plugin: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove installed versions of a plugin (all, or those matching NAME@REQUIREMENT).
    Remove {
        /// NAME or NAME@REQUIREMENT.
        plugin: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Scaffold a new plugin crate.
    #[command(after_help = "\
Example:
  stackhost plugin new disk-report && cd disk-report
  cargo build --release        # -> target/wasm32-wasip2/release/disk_report.wasm
  stackhost plugin install target/wasm32-wasip2/release/disk_report.wasm")]
    New {
        /// The plugin's name: lower-case letters, digits and `-`.
        name: String,
        /// Directory to create (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Path to the stackhost-sdk crate (default: the one this binary was built with).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

pub fn run(paths: &Paths, cmd: PluginCommand) -> anyhow::Result<ExitCode> {
    let store = PluginStore::new(&paths.plugins());
    match cmd {
        PluginCommand::Install {
            files,
            yes,
            grant,
            replace,
            json,
        } => {
            let runtime = Runtime::new(&paths.compiled())?;
            let mut installed = Vec::new();
            for file in &files {
                let p = install(&runtime, &store, file, yes, grant.as_deref(), replace)
                    .with_context(|| format!("while installing {}", file.display()))?;
                if !json {
                    println!(
                        "installed {} {} (sha256 {}) granted: {}",
                        p.name(),
                        p.version(),
                        &p.record.digest[..16],
                        granted_text(&p.record.grant)
                    );
                }
                installed.push(summary(&p));
            }
            if json {
                super::print_json(&installed)?;
            }
        }
        PluginCommand::List { json } => {
            let all = store.list()?;
            if json {
                super::print_json(&all.iter().map(summary).collect::<Vec<_>>())?;
            } else if all.is_empty() {
                println!("no plugins installed (install one with `stackhost plugin install FILE`)");
            } else {
                println!(
                    "{:<20} {:<10} {:<24} DESCRIPTION",
                    "NAME", "VERSION", "GRANTED"
                );
                for p in &all {
                    println!(
                        "{:<20} {:<10} {:<24} {}",
                        p.name(),
                        p.version().to_string(),
                        granted_text(&p.record.grant),
                        p.record.manifest.description
                    );
                }
            }
        }
        PluginCommand::Info { plugin, json } => {
            let (name, req) = store::parse_spec(&plugin)?;
            let p = store.resolve(name, req.as_ref())?;
            if json {
                super::print_json(&Detail {
                    summary: summary(&p),
                    record: &p.record,
                })?;
            } else {
                print_info(&p);
            }
        }
        PluginCommand::Remove { plugin, json } => {
            let (name, req) = store::parse_spec(&plugin)?;
            let removed = store.remove(name, req.as_ref())?;
            if json {
                super::print_json(&removed.iter().map(summary).collect::<Vec<_>>())?;
            } else {
                for p in removed {
                    println!("removed {} {}", p.name(), p.version());
                }
            }
        }
        PluginCommand::New { name, dir, sdk } => super::scaffold::new_plugin(&name, dir, sdk)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Validate, compile (warming the cache), check imports, grant, record.
fn install(
    runtime: &Runtime,
    store: &PluginStore,
    file: &std::path::Path,
    yes: bool,
    only: Option<&[String]>,
    replace: bool,
) -> anyhow::Result<Installed> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let manifest = inspect::read_manifest(&bytes)?;
    if !imports::wit_compatible(&manifest.wit) {
        return Err(imports::ImportError::WitVersion {
            plugin: manifest.name.clone(),
            wanted: manifest.wit.clone(),
        }
        .into());
    }
    let digest = store::digest(&bytes);
    let (component, _) = runtime
        .compile(&digest, || Ok(bytes.clone()))
        .with_context(|| format!("plugin `{}` is not a valid component", manifest.name))?;
    let imports = runtime.imports(&component);
    let requested = Grant::all(&manifest.capabilities);
    imports::check(
        &manifest.name,
        imports.iter().map(String::as_str),
        imports::Allowed::Requested(&requested),
    )?;
    let grant = match (yes, only) {
        (true, _) => requested,
        (false, Some(names)) => {
            Grant::only(&manifest.capabilities, names).map_err(anyhow::Error::msg)?
        }
        (false, None) => ask(&manifest)?,
    };
    imports::check(
        &manifest.name,
        imports.iter().map(String::as_str),
        imports::Allowed::Granted(&grant),
    )?;
    let record = InstallRecord {
        digest,
        manifest,
        grant,
        imports,
        installed_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        source: file.display().to_string(),
    };
    Ok(store.install(&bytes, record, replace)?)
}

/// Show each request and ask the operator, on a terminal only.
fn ask(manifest: &Manifest) -> anyhow::Result<Grant> {
    let requests = describe_requests(&manifest.capabilities);
    if requests.is_empty() {
        return Ok(Grant::default());
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "plugin `{}` requests {}; not on a terminal, so nothing can be asked: \
             pass --yes to grant everything requested, or --grant CAPS",
            manifest.name,
            requests
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!("{} {} requests:", manifest.name, manifest.version);
    let mut names = Vec::new();
    let mut stdin = std::io::stdin().lock();
    for (name, text) in requests {
        print!("  {text}\n  grant {name}? [y/N] ");
        std::io::stdout().flush()?;
        let mut answer = String::new();
        stdin.read_line(&mut answer)?;
        if matches!(answer.trim(), "y" | "Y" | "yes") {
            names.push(name.to_string());
        }
    }
    Grant::only(&manifest.capabilities, &names).map_err(anyhow::Error::msg)
}

/// One line per requested capability: its scope and reason.
fn describe_requests(c: &Capabilities) -> Vec<(&'static str, String)> {
    let roles = |r: &[String]| {
        if r.is_empty() {
            String::new()
        } else {
            format!(" on roles {}", r.join(", "))
        }
    };
    let mut out = Vec::new();
    if let Some(e) = &c.exec {
        out.push((
            "exec",
            format!(
                "exec: run {} (read-only: {}){} — {}",
                list(&e.programs),
                list(&e.read_only),
                roles(&e.roles),
                e.reason
            ),
        ));
    }
    if let Some(f) = &c.fs {
        out.push((
            "fs",
            format!(
                "fs: read {}, write {}{} — {}",
                list(&f.read),
                list(&f.write),
                roles(&f.roles),
                f.reason
            ),
        ));
    }
    if let Some(a) = &c.archive {
        out.push((
            "archive",
            format!(
                "archive: artifacts in {}{} — {}",
                list(&a.paths),
                roles(&a.roles),
                a.reason
            ),
        ));
    }
    if let Some(p) = &c.postgres {
        out.push((
            "postgres",
            format!(
                "postgres: databases {}{} — {}",
                list(&p.databases),
                roles(&p.roles),
                p.reason
            ),
        ));
    }
    if let Some(d) = &c.docker {
        out.push((
            "docker",
            format!(
                "docker: {}{} — {}",
                list(&d.operations),
                roles(&d.roles),
                d.reason
            ),
        ));
    }
    out
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

fn granted_text(g: &Grant) -> String {
    let names = g.names();
    if names.is_empty() {
        "-".into()
    } else {
        names.join(",")
    }
}

#[derive(Serialize)]
struct Summary {
    name: String,
    version: String,
    description: String,
    digest: String,
    granted: Vec<&'static str>,
    installed_at: u64,
}

#[derive(Serialize)]
struct Detail<'a> {
    #[serde(flatten)]
    summary: Summary,
    record: &'a InstallRecord,
}

fn summary(p: &Installed) -> Summary {
    Summary {
        name: p.name().into(),
        version: p.version().to_string(),
        description: p.record.manifest.description.clone(),
        digest: p.record.digest.clone(),
        granted: p.record.grant.names(),
        installed_at: p.record.installed_at,
    }
}

fn print_info(p: &Installed) {
    let r = &p.record;
    let m = &r.manifest;
    println!("{} {}", m.name, m.version);
    println!("  {}", m.description);
    println!("  targets:     stackhost:host@{}", m.wit);
    println!("  sha256:      {}", r.digest);
    println!(
        "  installed:   {} from {}",
        super::format_time(r.installed_at),
        r.source
    );
    println!("  signature:   none (signed plugins are not built yet)");
    println!("  commands:");
    for c in &m.commands {
        println!("    {:<16} {}", c.name, c.about);
    }
    println!("  requested:");
    for (_, text) in describe_requests(&m.capabilities) {
        println!("    {text}");
    }
    println!("  granted:     {}", granted_text(&r.grant));
    println!("  imports:");
    for i in &r.imports {
        println!("    {i}");
    }
}
