//! `stackhost inventory init|check`: write a commented example inventory
//! to start from, and read one back as runs will see it, node by node, or
//! with the parser's reason for refusing it.

use crate::cluster::NodeInfo;
use crate::cluster::inventory;
use crate::paths::Paths;
use crate::text::escape_line;
use anyhow::{Context as _, bail};
use clap::Subcommand;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum InventoryCommand {
    /// Write a commented example inventory to edit into your cluster's.
    #[command(after_help = "\
Writes to the inventory runs use: $STACKHOST_INVENTORY when set, else
~/.config/stackhost/inventory.toml ($STACKHOST_HOME/config/inventory.toml
when STACKHOST_HOME is set), creating its directory. From then on every
run reads its nodes from it: replace the example nodes with yours.

Examples:
  stackhost inventory init
  stackhost inventory init --out cluster.toml
  stackhost inventory init --force      # start over from the example")]
    Init {
        /// Write here instead (runs use it with --inventory FILE).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Replace a file that is already there.
        #[arg(long)]
        force: bool,
    },
    /// Read an inventory and list its nodes as runs will see them, or say what is wrong with it.
    #[command(after_help = "\
Exit codes:
  0  the inventory is valid; its nodes are listed
  1  it is not (the reason is printed), or it cannot be read

Examples:
  stackhost inventory check
  stackhost inventory check cluster.toml")]
    Check {
        /// The inventory (default: $STACKHOST_INVENTORY, else ~/.config/stackhost/inventory.toml).
        file: Option<PathBuf>,
    },
}

pub fn run(paths: &Paths, cmd: InventoryCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        InventoryCommand::Init { out, force } => init(paths, out, force)?,
        InventoryCommand::Check { file } => check(paths, file)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The inventory runs use when no `--inventory` is given (whether or not
/// it exists yet).
fn in_effect(paths: &Paths) -> PathBuf {
    std::env::var_os("STACKHOST_INVENTORY")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| inventory::default_path(paths))
}

fn init(paths: &Paths, out: Option<PathBuf>, force: bool) -> anyhow::Result<()> {
    let used_by_runs = out.is_none();
    let path = out.unwrap_or_else(|| in_effect(paths));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    }
    write_example(&path, force)?;
    println!("wrote an example inventory to {}", path.display());
    if used_by_runs {
        println!(
            "Runs now take their nodes from it: replace the example nodes with your \
             cluster's, then check it with `stackhost inventory check`."
        );
    } else {
        println!(
            "Replace the example nodes with your cluster's, check it with `stackhost \
             inventory check {0}`, and use it with --inventory {0}.",
            path.display()
        );
    }
    Ok(())
}

/// Write [`inventory::EXAMPLE`] to `path`; an existing file only with
/// `force` (`create_new` leaves no window in which a file could appear
/// and be overwritten).
fn write_example(path: &Path, force: bool) -> anyhow::Result<()> {
    let mut open = std::fs::OpenOptions::new();
    open.write(true);
    if force {
        open.create(true).truncate(true);
    } else {
        open.create_new(true);
    }
    let mut file = match open.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
            "{} already exists; not overwriting it (--force replaces it with the example)",
            path.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot write {}", path.display())),
    };
    file.write_all(inventory::EXAMPLE.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn check(paths: &Paths, file: Option<PathBuf>) -> anyhow::Result<()> {
    let given = file.is_some();
    let path = file.unwrap_or_else(|| in_effect(paths));
    if !given && !path.exists() {
        bail!(
            "there is no inventory at {}: runs work on this machine alone (`stackhost node \
             list` shows it); write one with `stackhost inventory init`",
            path.display()
        );
    }
    let nodes = inventory::read_nodes(&path)?;
    print!("{}", node_table(&nodes));
    let count = match nodes.len() {
        1 => "1 node".to_string(),
        n => format!("{n} nodes"),
    };
    println!("{}: valid, {count}", path.display());
    Ok(())
}

/// One aligned line per node: name, where it is reached, user, roles and
/// host name, under a header.
fn node_table(nodes: &[NodeInfo]) -> String {
    let dash = |s: String| if s.is_empty() { "-".to_string() } else { s };
    let mut rows = vec![["NODE", "ADDRESS", "USER", "ROLES", "HOSTNAME"].map(String::from)];
    for n in nodes {
        let address = if n.is_local {
            "this machine".to_string()
        } else if n.address.contains(':') {
            format!("[{}]:{}", n.address, n.port)
        } else {
            format!("{}:{}", n.address, n.port)
        };
        rows.push(
            [
                n.name.clone(),
                address,
                n.user.clone(),
                dash(n.roles.join(",")),
                dash(n.hostname.clone().unwrap_or_default()),
            ]
            .map(|cell| escape_line(&cell).into_owned()),
        );
    }
    let mut widths = [0; 5];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(widths) {
            line.push_str(&format!("{cell:<w$}  "));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_nodes_aligned_with_dashes_for_what_is_missing() {
        let node =
            |name: &str, address: &str, port, local, roles: &[&str], host: Option<&str>| NodeInfo {
                name: name.into(),
                address: address.into(),
                roles: roles.iter().map(|r| r.to_string()).collect(),
                is_local: local,
                hostname: host.map(String::from),
                port,
                user: "op".into(),
                http_proxy: None,
                https_proxy: None,
            };
        let table = node_table(&[
            node(
                "core",
                "127.0.0.1",
                0,
                true,
                &["core", "dea"],
                Some("c.example"),
            ),
            node("v6", "fd00::1", 2222, false, &[], None),
        ]);
        assert_eq!(
            table,
            "NODE  ADDRESS         USER  ROLES     HOSTNAME\n\
             core  this machine    op    core,dea  c.example\n\
             v6    [fd00::1]:2222  op    -         -\n"
        );
    }
}
