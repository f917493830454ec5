//! `stackhost plugin dev [DIR] [-- COMMAND ARGS...]`: from a plugin's
//! source to a run in one command. Builds the crate in release for
//! `wasm32-wasip2`, signs the component with this home's development key
//! (made and trusted here on first use), checks it as `plugin check` does,
//! installs it with `--replace`, and runs COMMAND. With a cluster
//! inventory configured the run is a `--dry-run` unless `--for-real`.
//! `--watch` goes round again on every change to the crate's sources.

use super::plugin::{Install, install};
use crate::paths::Paths;
use crate::plugin::signing::{DevKey, TrustedKeys, signature_path};
use crate::plugin::store::PluginStore;
use crate::runtime::Runtime;
use anyhow::{Context as _, bail};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `plugin dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// The plugin crate (default: the current directory).
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Run for real on a cluster inventory (without it, a run there is a dry run).
    #[arg(long)]
    for_real: bool,
    /// After the first round, watch src/, stackhost.toml and Cargo.toml and
    /// go round again on every change (Ctrl-C stops).
    #[arg(long)]
    watch: bool,
    /// The command to run once installed, and its arguments (after `--`).
    #[arg(last = true, value_name = "COMMAND ARGS")]
    command: Vec<String>,
}

pub(super) fn run(paths: &Paths, args: DevArgs) -> anyhow::Result<ExitCode> {
    if !args.watch {
        return round(paths, &args);
    }
    let mut seen = sources(&args.dir);
    loop {
        // A failed round is said and waited out: the next edit retries.
        match round(paths, &args) {
            Ok(code) if code != ExitCode::SUCCESS => eprintln!("==> the run failed"),
            Ok(_) => {}
            Err(e) => eprintln!(
                "error: {}",
                crate::text::escape_for_terminal(&format!("{e:#}"))
            ),
        }
        eprintln!(
            "==> watching {} for changes (Ctrl-C stops)",
            args.dir.display()
        );
        // The run's own Ctrl-C handling stays installed after it: wait for
        // a change or a Ctrl-C through the same signal machinery.
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let changed = tokio.block_on(async {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => None,
                now = changes(&args.dir, &seen) => Some(now),
            }
        });
        match changed {
            Some(now) => seen = now,
            None => {
                eprintln!("==> stopped watching");
                return Ok(ExitCode::from(130));
            }
        }
    }
}

/// The crate's sources and their modification times, by path.
type Sources = std::collections::BTreeMap<PathBuf, std::time::SystemTime>;

/// Wait until the crate's sources differ from `seen`; what they are then.
async fn changes(dir: &Path, seen: &Sources) -> Sources {
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let now = sources(dir);
        if now != *seen {
            match now.iter().find(|(p, t)| seen.get(*p) != Some(*t)) {
                Some((p, _)) => eprintln!("==> {} changed", p.display()),
                None => eprintln!("==> a source file was removed"),
            }
            return now;
        }
    }
}

/// The crate's sources and their modification times: src/ (recursively),
/// stackhost.toml, Cargo.toml and build.rs.
fn sources(dir: &Path) -> Sources {
    fn walk(path: &Path, out: &mut Sources) {
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        if meta.is_dir() {
            for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
                walk(&entry.path(), out);
            }
        } else if let Ok(t) = meta.modified() {
            out.insert(path.to_path_buf(), t);
        }
    }
    let mut out = std::collections::BTreeMap::new();
    for part in ["src", "stackhost.toml", "Cargo.toml", "build.rs"] {
        walk(&dir.join(part), &mut out);
    }
    out
}

/// One round: build, sign, check, install, run.
fn round(paths: &Paths, args: &DevArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.dir;
    let name = crate_name(dir)?;
    check_toolchain()?;
    eprintln!(
        "==> cargo build --release --target wasm32-wasip2 ({})",
        dir.display()
    );
    let built = std::process::Command::new(std::env::var_os("CARGO").unwrap_or("cargo".into()))
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .current_dir(dir)
        .status()
        .context("cannot run cargo: install Rust with rustup (https://rustup.rs)")?;
    if !built.success() {
        bail!("cargo build failed (its messages are above); nothing was installed");
    }
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => PathBuf::from(t),
        None => dir.join("target"),
    };
    let file = target.join(format!(
        "wasm32-wasip2/release/{}.wasm",
        name.replace('-', "_")
    ));
    if !file.exists() {
        bail!(
            "cargo built no {} (is the crate a `cdylib`, as `plugin new` writes it?)",
            file.display()
        );
    }
    let keys = TrustedKeys::new(&paths.config);
    let signer = sign(paths, &keys, &file)?;
    let runtime = Runtime::new(&paths.compiled())?;
    let report = crate::plugin::vet::check_file(&runtime, &keys, &file);
    if !report.ok {
        super::plugin_check::print_report(&report);
        bail!("the plugin has problems (listed above); nothing was installed");
    }
    let store = PluginStore::new(&paths.plugins());
    let how = Install {
        yes: true,
        only: None,
        replace: true,
        allow_unsigned: false,
    };
    let p = install(&runtime, &store, &keys, &file, &how)
        .with_context(|| format!("while installing {}", file.display()))?;
    eprintln!(
        "==> installed {} {} (signed by development key {signer}; every capability it requests granted)",
        p.name(),
        p.version()
    );
    if args.command.is_empty() {
        eprintln!(
            "no command given: run one with `stackhost plugin dev {} -- COMMAND`",
            dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut argv = vec![p.name().to_string()];
    argv.extend(args.command.iter().cloned());
    if on_a_cluster(paths, &argv) && !args.for_real && !argv.iter().any(|a| a == "--dry-run") {
        eprintln!("==> a cluster inventory is configured: this is a dry run (--for-real runs it)");
        argv.push("--dry-run".into());
    }
    eprintln!("==> stackhost run {}", argv.join(" "));
    super::run::run(paths, super::run::RunArgs::new(argv))
}

/// The `[package] name` of the crate in `dir`.
fn crate_name(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {} (is {} a plugin crate? `stackhost plugin new NAME` makes one)",
            path.display(),
            dir.display()
        )
    })?;
    let toml: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
    toml.get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_string)
        .with_context(|| format!("{} has no [package] name", path.display()))
}

/// The wasm32-wasip2 target, when rustup manages the toolchain.
fn check_toolchain() -> anyhow::Result<()> {
    let Ok(out) = std::process::Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    else {
        return Ok(()); // not rustup's toolchain: cargo says what is missing
    };
    if out.status.success()
        && !String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l == "wasm32-wasip2")
    {
        bail!(
            "the wasm32-wasip2 target is not installed, and plugins build for it: \
             run `rustup target add wasm32-wasip2`"
        );
    }
    Ok(())
}

/// Sign `file` with this home's development key (made and trusted on
/// first use), writing FILE.minisig; the key's id.
fn sign(paths: &Paths, keys: &TrustedKeys, file: &Path) -> anyhow::Result<String> {
    let (key, new) = DevKey::load_or_create(&paths.config)?;
    let public = key.public();
    keys.trust(&public.to_file_text())?;
    if new {
        eprintln!(
            "==> made a development signing key {} in {}, trusted in this home only",
            public.id(),
            paths.config.display()
        );
    }
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let stamp = crate::time::format_time(now);
    let comment = format!("stackhost plugin dev build, {stamp}");
    let sig = signature_path(file);
    std::fs::write(&sig, key.sign(&bytes, &comment))
        .with_context(|| format!("cannot write {}", sig.display()))?;
    Ok(public.id())
}

/// Whether a run goes to a cluster's inventory rather than the local node.
fn on_a_cluster(paths: &Paths, argv: &[String]) -> bool {
    argv.iter()
        .any(|a| a == "--inventory" || a.starts_with("--inventory="))
        || std::env::var_os("STACKHOST_INVENTORY").is_some()
        || crate::cluster::inventory::default_path(paths).exists()
}
