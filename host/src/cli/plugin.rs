//! `stackhost plugin install|list|info|remove|new` (and the `check`
//! subcommand's arguments; it lives in plugin_check.rs): the plugin store from
//! the operator's side. Install shows what a plugin asks for and records
//! the grant, bound to the file's content digest.

use crate::caps::registry::Capabilities;
use crate::paths::Paths;
use crate::plugin::grant::Grant;
use crate::plugin::inspect;
use crate::plugin::manifest::{Kind, Manifest};
use crate::plugin::prompt;
use crate::plugin::signing::{self, Signer, TrustedKeys};
use crate::plugin::store::{self, InstallRecord, Installed, PluginStore};
use crate::runtime::{Runtime, imports};
use crate::text::escape_line as one_line;
use anyhow::{Context as _, bail};
use clap::Subcommand;
use serde::Serialize;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Install plugin files, after showing and granting what they ask for.
    ///
    /// A file with a minisign signature beside it (FILE.minisig) must verify
    /// against a trusted key (`stackhost keys trust`); it is checked again
    /// before every run. Vendor patches must be signed.
    #[command(after_help = "\
Examples:
  stackhost plugin install plugins/dist/hello.wasm            # asks, capability by capability
  stackhost plugin install --yes plugins/dist/*.wasm          # grants everything requested
  stackhost plugin install --grant exec plugins/dist/hello.wasm
  stackhost keys trust acme.pub && stackhost plugin install --yes aok-endpoint-fix.wasm")]
    Install {
        /// `.wasm` component files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Grant every capability the plugin requests, without asking.
        #[arg(long, conflicts_with = "grant")]
        yes: bool,
        #[arg(long, value_delimiter = ',', value_name = "CAPS", help = grant_help())]
        grant: Option<Vec<String>>,
        /// Replace an installed plugin of the same name and version whose content differs.
        #[arg(long)]
        replace: bool,
        /// Install a vendor patch with no signature, or one whose signature does not verify, as unsigned.
        #[arg(long)]
        allow_unsigned: bool,
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
    #[command(
        after_help = "Examples:\n  stackhost plugin remove multi@^1\n  stackhost plugin remove hello --yes"
    )]
    Remove {
        /// NAME or NAME@REQUIREMENT.
        plugin: String,
        /// Remove without asking (needed off a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check a built plugin file without installing it, listing every problem.
    ///
    /// Runs what `plugin install` checks: the file is a WebAssembly
    /// component carrying one valid manifest (wit/MANIFEST.md), it targets
    /// a WIT version this host serves, every interface it imports is
    /// provided by this host and requested in its manifest, and a
    /// FILE.minisig beside it verifies against a trusted key (a vendor
    /// patch must have one). Nothing is installed and nothing is granted.
    /// A `.toml` FILE is checked as a manifest alone (what a `plugin new`
    /// crate's build script does, so `cargo build` fails on a manifest
    /// install would refuse).
    #[command(after_help = "\
Examples:
  stackhost plugin check target/wasm32-wasip2/release/disk_report.wasm
  stackhost plugin check --json plugins/dist/backup.wasm
  stackhost plugin check stackhost.toml

Exit codes:
  0  no problems: `plugin install` would accept the file
  1  problems, each listed (or the file cannot be read)")]
    Check {
        /// The `.wasm` component file (or a `stackhost.toml` manifest).
        file: PathBuf,
        /// Print JSON: file, ok, plugin, digest, imports, signed_by, problems, warnings.
        #[arg(long)]
        json: bool,
    },
    /// Build, sign, check, install and run a plugin crate, in one command.
    ///
    /// Builds DIR (a crate `plugin new` made) in release for wasm32-wasip2,
    /// signs the component with this home's development key (made and
    /// trusted here on first use; a vendor's release signing stays
    /// `minisign -S` and `keys trust`), checks it as `plugin check` does,
    /// installs it with --replace granting what it requests, and runs
    /// COMMAND. With a cluster inventory configured, the run is a dry run
    /// unless --for-real.
    #[command(
        after_help = "Examples:\n  stackhost plugin dev disk-report -- uptime\n  stackhost plugin dev . -- uptime --json\n  stackhost plugin dev disk-report --for-real -- uptime --nodes 'dea-*'\n  stackhost plugin dev --watch -- uptime"
    )]
    Dev(super::dev::DevArgs),
    /// Scaffold a new plugin crate that builds with nothing but stackhost.
    ///
    /// The crate (NAME/, or --dir) has one command, `uptime`, and its own
    /// copy of the SDK this binary carries in NAME/.stackhost-sdk/ (the
    /// stackhost-sdk crate and the WIT package beside it, as `stackhost sdk
    /// export` writes them). Its Cargo.toml names that copy by the relative
    /// path .stackhost-sdk/stackhost-sdk, so the crate needs no stackhost
    /// checkout and can be moved or committed whole; refresh the copy after
    /// upgrading stackhost with `stackhost sdk export --force
    /// NAME/.stackhost-sdk`. With --sdk PATH the crate depends on the SDK at
    /// PATH instead, by its absolute path, and gets no copy.
    #[command(after_help = "\
Examples:
  stackhost plugin new disk-report && cd disk-report
  cargo build --release        # -> target/wasm32-wasip2/release/disk_report.wasm
  stackhost plugin install target/wasm32-wasip2/release/disk_report.wasm
  stackhost run disk-report uptime

  stackhost sdk export ~/stackhost-sdk && stackhost plugin new disk-report --sdk ~/stackhost-sdk")]
    New {
        /// The plugin's name: lower-case letters, digits and `-`.
        name: String,
        /// Directory to create (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Depend on the stackhost-sdk crate at PATH (a directory `stackhost sdk export` wrote, or
        /// its stackhost-sdk/) instead of a copy of the embedded SDK.
        #[arg(long, value_name = "PATH")]
        sdk: Option<PathBuf>,
    },
}

// Long because it is one arm per `plugin` subcommand.
pub fn run(paths: &Paths, cmd: PluginCommand) -> anyhow::Result<ExitCode> {
    let store = PluginStore::new(&paths.plugins());
    match cmd {
        PluginCommand::Install {
            files,
            yes,
            grant,
            replace,
            allow_unsigned,
            json,
        } => {
            let runtime = Runtime::new(&paths.compiled())?;
            let keys = TrustedKeys::new(&paths.config);
            let mut installed = Vec::new();
            for file in &files {
                let how = Install {
                    yes,
                    only: grant.as_deref(),
                    replace,
                    allow_unsigned,
                };
                let p = install(&runtime, &store, &keys, file, &how)
                    .with_context(|| format!("while installing {}", file.display()))?;
                if !json {
                    println!(
                        "installed {} {} {} (sha256 {}) granted: {}; {}",
                        p.kind().as_str(),
                        one_line(p.name()),
                        p.version(),
                        &p.record.digest[..16],
                        granted_text(&p.record.grant),
                        one_line(&signed_text(p.record.signer.as_ref()))
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
                    "{:<20} {:<10} {:<7} {:<24} {:<18} DESCRIPTION",
                    "NAME", "VERSION", "KIND", "GRANTED", "SIGNED BY"
                );
                for p in &all {
                    println!(
                        "{:<20} {:<10} {:<7} {:<24} {:<18} {}",
                        one_line(p.name()),
                        p.version().to_string(),
                        p.kind().as_str(),
                        granted_text(&p.record.grant),
                        p.record
                            .signer
                            .as_ref()
                            .map_or("-".to_string(), |s| one_line(&s.key_id).into_owned()),
                        one_line(&p.record.manifest.description)
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
                    requested: prompt::sections(&p.record.manifest),
                })?;
            } else {
                print_info(&p);
            }
        }
        PluginCommand::Remove { plugin, yes, json } => {
            let (name, req) = store::parse_spec(&plugin)?;
            if !yes {
                let doomed: Vec<String> = store
                    .list()?
                    .iter()
                    .filter(|p| {
                        p.name() == name && req.as_ref().is_none_or(|r| r.matches(p.version()))
                    })
                    .map(|p| format!("{} {}", p.name(), p.version()))
                    .collect();
                if !doomed.is_empty() && !confirm_removal(&doomed)? {
                    eprintln!("not confirmed: nothing was removed");
                    return Ok(ExitCode::from(super::EXIT_ERROR));
                }
            }
            let removed = store.remove(name, req.as_ref())?;
            if json {
                super::print_json(&removed.iter().map(summary).collect::<Vec<_>>())?;
            } else {
                for p in removed {
                    println!("removed {} {}", p.name(), p.version());
                }
            }
        }
        PluginCommand::Check { file, json } => return super::plugin_check::run(paths, &file, json),
        PluginCommand::New { name, dir, sdk } => super::scaffold::new_plugin(&name, dir, sdk)?,
        PluginCommand::Dev(args) => return super::dev::run(paths, args),
    }
    Ok(ExitCode::SUCCESS)
}

/// How `plugin install` was asked to install.
pub(super) struct Install<'a> {
    pub yes: bool,
    pub only: Option<&'a [String]>,
    pub replace: bool,
    pub allow_unsigned: bool,
}

/// Validate, verify the signature, compile (warming the cache), check
/// imports, grant, record.
pub(super) fn install(
    runtime: &Runtime,
    store: &PluginStore,
    keys: &TrustedKeys,
    file: &std::path::Path,
    how: &Install<'_>,
) -> anyhow::Result<Installed> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let manifest = inspect::read_manifest(&bytes)?;
    let (signer, signature) = signature(keys, file, &bytes, &manifest, how.allow_unsigned)?;
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
        imports::Allowed::Requested(&requested.capabilities),
    )?;
    let imported = imports.iter().map(String::as_str);
    if let Some(e) = imports::newer_than_manifest(&manifest.name, &manifest.wit, imported) {
        return Err(e.into());
    }
    let grant = match (how.yes, how.only) {
        (true, _) => requested,
        (false, Some(names)) => {
            Grant::only(&manifest.capabilities, names).map_err(anyhow::Error::msg)?
        }
        (false, None) => ask(&manifest)?,
    };
    if how.yes || how.only.is_some() {
        // Granted without a prompt: the warnings the prompt would have shown.
        for warning in root_warnings(&grant.capabilities) {
            eprintln!("{warning} (plugin `{}`)", one_line(&manifest.name));
        }
    }
    imports::check(
        &manifest.name,
        imports.iter().map(String::as_str),
        imports::Allowed::Granted(&grant.capabilities),
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
        signer,
    };
    Ok(store.install(&bytes, signature.as_deref(), record, how.replace)?)
}

/// Check `FILE.minisig` against the trusted keys. A vendor patch must be
/// signed; `--allow-unsigned` installs one unsigned (with a warning), and
/// installs any file whose signature does not verify as unsigned.
fn signature(
    keys: &TrustedKeys,
    file: &std::path::Path,
    bytes: &[u8],
    manifest: &Manifest,
    allow_unsigned: bool,
) -> anyhow::Result<(Option<Signer>, Option<String>)> {
    let sig_path = signing::signature_path(file);
    let what = format!("{} `{}`", manifest.kind.as_str(), manifest.name);
    let text = match std::fs::read_to_string(&sig_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if manifest.kind == Kind::Patch {
                if !allow_unsigned {
                    bail!(
                        "{what} is not signed ({} is missing); vendor patches must be signed \
                         by a trusted key, or installed with --allow-unsigned",
                        sig_path.display()
                    );
                }
                eprintln!("warning: installing unsigned {what} (--allow-unsigned)");
            }
            return Ok((None, None));
        }
        Err(e) => bail!("cannot read {}: {e}", sig_path.display()),
    };
    match keys.verify(bytes, &text) {
        Ok(signer) => Ok((Some(signer), Some(text))),
        Err(e) if allow_unsigned => {
            eprintln!(
                "warning: the signature of {what} does not verify ({e}); \
                 installing it as unsigned (--allow-unsigned)"
            );
            Ok((None, None))
        }
        Err(e) => bail!(
            "{what} fails signature verification ({}): {e}",
            sig_path.display()
        ),
    }
}

/// Where a plugin file's minisign signature is: `FILE.minisig`.
fn signed_text(signer: Option<&Signer>) -> String {
    match signer {
        Some(s) => format!("signed by {s}"),
        None => "unsigned".into(),
    }
}

/// Ask before removing `doomed` (installed versions); off a terminal,
/// refuse without --yes.
fn confirm_removal(doomed: &[String]) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "removing {} needs confirming, and this is not a terminal: pass --yes",
            doomed.join(", ")
        );
    }
    print!("remove {}? [y/N] ", doomed.join(", "));
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// Show each request and ask the operator, on a terminal only.
fn ask(manifest: &Manifest) -> anyhow::Result<Grant> {
    let requests = manifest.capabilities.requests();
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
                .map(|r| r.name)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!(
        "{} {} requests:",
        one_line(&manifest.name),
        manifest.version
    );
    print!(
        "{}",
        prompt::render(
            manifest,
            "  ",
            prompt::use_color(std::io::stdout().is_terminal())
        )
    );
    let mut names = Vec::new();
    let mut stdin = std::io::stdin().lock();
    for request in requests {
        let name = request.name;
        print!("  grant {name}? [y/N] ");
        std::io::stdout().flush()?;
        let mut answer = String::new();
        stdin.read_line(&mut answer)?;
        if matches!(answer.trim(), "y" | "Y" | "yes") {
            names.push(name.to_string());
        }
    }
    Grant::only(&manifest.capabilities, &names).map_err(anyhow::Error::msg)
}

/// Warnings the operator must see before granting `c`: each part of a
/// grant that amounts to root on the node.
pub(super) fn root_warnings(c: &Capabilities) -> Vec<String> {
    c.requests()
        .into_iter()
        .flat_map(|r| r.root_warnings)
        .map(|w| format!("warning: {w}"))
        .collect()
}

/// The `--grant` help, naming every capability a plugin can request.
fn grant_help() -> String {
    format!(
        "Grant only these capabilities (comma-separated: {})",
        crate::caps::registry::grantable().join(",")
    )
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
    kind: &'static str,
    granted: Vec<&'static str>,
    signed_by: Option<String>,
    installed_at: u64,
}

#[derive(Serialize)]
struct Detail<'a> {
    #[serde(flatten)]
    summary: Summary,
    record: &'a InstallRecord,
    /// What the manifest requests, as the install prompt groups it.
    requested: Vec<prompt::Section>,
}

fn summary(p: &Installed) -> Summary {
    Summary {
        name: p.name().into(),
        version: p.version().to_string(),
        description: p.record.manifest.description.clone(),
        digest: p.record.digest.clone(),
        kind: p.kind().as_str(),
        granted: p.record.grant.names(),
        signed_by: p.record.signer.as_ref().map(|s| s.key_id.clone()),
        installed_at: p.record.installed_at,
    }
}

fn print_info(p: &Installed) {
    let r = &p.record;
    let m = &r.manifest;
    println!("{} {} ({})", one_line(&m.name), m.version, m.kind.as_str());
    println!("  {}", one_line(&m.description));
    println!("  targets:     stackhost:host@{}", m.wit);
    println!("  sha256:      {}", r.digest);
    println!(
        "  installed:   {} from {}",
        crate::time::format_time(r.installed_at),
        one_line(&r.source)
    );
    match &r.signer {
        Some(s) => {
            println!(
                "  signed by:   key {} ({})",
                one_line(&s.key_id),
                one_line(&crate::plugin::signing::shown_comment(&s.key_comment))
            );
            println!(
                "  signed as:   {}",
                one_line(&crate::plugin::signing::shown_comment(&s.trusted_comment))
            );
        }
        None => println!("  signature:   none (unsigned)"),
    }
    if !m.commands.is_empty() {
        println!("  commands:");
        for c in &m.commands {
            println!("    {:<16} {}", one_line(&c.name), one_line(&c.about));
            let defaults = c.defaults.as_flags();
            if !defaults.is_empty() {
                println!(
                    "    {:<16} (defaults: {})",
                    "",
                    one_line(&defaults.join(" "))
                );
            }
        }
    }
    println!("  requested:");
    print!(
        "{}",
        prompt::render(
            m,
            "    ",
            prompt::use_color(std::io::stdout().is_terminal())
        )
    );
    println!("  granted:     {}", granted_text(&r.grant));
    println!("  imports:");
    for i in &r.imports {
        println!("    {}", one_line(i));
    }
}
