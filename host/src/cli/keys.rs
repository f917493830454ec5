//! `stackhost keys trust|list|remove`: the minisign public keys whose
//! signatures the operator accepts on plugins and vendor patches.

use crate::paths::Paths;
use crate::plugin::signing::TrustedKeys;
use anyhow::Context as _;
use clap::Subcommand;
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Trust a minisign public key (the vendor's `minisign.pub`).
    #[command(after_help = "Examples:
  stackhost keys trust acme-patches.pub

The vendor signs each patch with the matching secret key:
  minisign -S -s acme.key -m aok-endpoint-fix.wasm
which writes aok-endpoint-fix.wasm.minisig beside it.")]
    Trust {
        /// A minisign public key file.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the trusted keys.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop trusting a key: plugins it signed are refused from then on.
    #[command(after_help = "Example:\n  stackhost keys remove DA681CFFEB2BC438")]
    Remove {
        /// The key id, as `stackhost keys list` shows it.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Serialize)]
struct KeyLine {
    id: String,
    comment: String,
}

pub fn run(paths: &Paths, cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    let keys = TrustedKeys::new(&paths.config);
    match cmd {
        KeysCommand::Trust { file, json } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let (key, new) = keys
                .trust(&text)
                .with_context(|| format!("while trusting {}", file.display()))?;
            if json {
                super::print_json(&KeyLine {
                    id: key.id(),
                    comment: key.comment.clone(),
                })?;
            } else if new {
                println!(
                    "trusted key {} ({})",
                    key.id(),
                    crate::text::escape_line(&key.comment)
                );
            } else {
                println!("key {} was already trusted", key.id());
            }
        }
        KeysCommand::List { json } => {
            let all: Vec<KeyLine> = keys
                .list()?
                .into_iter()
                .map(|k| KeyLine {
                    id: k.id(),
                    comment: k.comment.clone(),
                })
                .collect();
            if json {
                super::print_json(&all)?;
            } else if all.is_empty() {
                println!("no trusted keys (trust one with `stackhost keys trust FILE.pub`)");
            } else {
                println!("{:<18} COMMENT", "KEY ID");
                for k in all {
                    println!("{:<18} {}", k.id, crate::text::escape_line(&k.comment));
                }
            }
        }
        KeysCommand::Remove { id, json } => {
            if !keys.remove(&id)? {
                anyhow::bail!("key {id} is not trusted (see `stackhost keys list`)");
            }
            if json {
                super::print_json(&serde_json::json!({ "removed": id.to_ascii_uppercase() }))?;
            } else {
                println!("removed key {}", id.to_ascii_uppercase());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
