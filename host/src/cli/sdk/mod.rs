//! `stackhost sdk export DIR`: write out the plugin SDK and WIT package
//! this binary carries, so a plugin author needs nothing but `stackhost`.

pub mod embedded;

use embedded as sdk;

use anyhow::Context as _;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum SdkCommand {
    /// Write the plugin SDK (the stackhost-sdk crate) and the WIT package it
    /// builds from into DIR.
    ///
    /// DIR gets two directories: DIR/stackhost-sdk/, the crate a plugin
    /// depends on (`stackhost-sdk = { path = "DIR/stackhost-sdk" }`), and
    /// DIR/wit/, the `stackhost:host` WIT package, which the crate reads as
    /// its `../wit` when it builds: keep the two side by side. Its
    /// README.md explains how to write, build, sign and install a plugin.
    ///
    /// A DIR that exists and is not empty is refused unless --force; with
    /// --force, DIR/stackhost-sdk/ and DIR/wit/ are replaced whole and
    /// nothing else in DIR is touched. `stackhost plugin new` does this
    /// for you, inside the new crate.
    #[command(after_help = "\
Examples:
  stackhost sdk export ~/stackhost-sdk
      # then in a plugin's Cargo.toml:
      # stackhost-sdk = { path = \"/home/me/stackhost-sdk/stackhost-sdk\" }
  stackhost sdk export --force ~/stackhost-sdk        # refresh it after upgrading stackhost
  stackhost sdk export --force my-plugin/.stackhost-sdk   # refresh a `plugin new` crate's copy")]
    Export {
        /// Directory to write into (created when missing).
        dir: PathBuf,
        /// Replace DIR/stackhost-sdk/ and DIR/wit/ in a DIR that is not empty.
        #[arg(long)]
        force: bool,
    },
    /// Run a plugin crate's unit tests (a `cargo test` binary for
    /// wasm32-wasip2): the runner `plugin new` names in the crate's
    /// .cargo/config.toml, so `cargo test` works there.
    ///
    /// The test binary gets this terminal's output, its arguments and
    /// environment, no files and no network; the stackhost:host interfaces
    /// trap when called (test plan logic here, and run the plugin end to
    /// end with `stackhost plugin dev`).
    #[command(
        after_help = "Example (what cargo runs):\n  stackhost sdk test-runner target/wasm32-wasip2/debug/deps/my_plugin-1234.wasm --nocapture"
    )]
    TestRunner {
        /// The test binary.
        file: PathBuf,
        /// Its arguments (libtest's: a filter, --nocapture, ...).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

pub fn run(cmd: SdkCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SdkCommand::TestRunner { file, args } => {
            let code = crate::runtime::test_runner::run(&file, &args)?;
            return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
        }
        SdkCommand::Export { dir, force } => {
            let out = sdk::export(&dir, force)
                .with_context(|| format!("while exporting the SDK to {}", dir.display()))?;
            println!(
                "exported stackhost-sdk {} and the WIT package {}@{} ({} files) to {}",
                sdk::sdk_version(),
                crate::caps::bindings::WIT_PACKAGE,
                sdk::wit_version(),
                out.files,
                dir.display()
            );
            println!("  {}  the crate", out.crate_dir.display());
            println!(
                "  {}  the WIT it builds from (keep it beside the crate)",
                out.wit_dir.display()
            );
            println!(
                "depend on it with: stackhost-sdk = {{ path = \"{}\" }}",
                std::path::absolute(&out.crate_dir)
                    .unwrap_or(out.crate_dir)
                    .display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
