//! `stackhost node list|local`: the cluster's nodes, like `kato node
//! list`, and the roles of the local node when there is no inventory.

use crate::cli::run::ClusterFlags;
use crate::cluster::inventory::{self, LocalNodeRoles};
use crate::paths::Paths;
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List the nodes: address, then roles (`kato node list` format).
    #[command(
        after_help = "Examples:\n  stackhost node list\n  stackhost node list --inventory cluster.toml --json"
    )]
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        cluster: ClusterFlags,
    },
    /// Show or set the roles of this machine when there is no inventory.
    #[command(after_help = "\
Without an inventory the cluster is this machine alone, one node named
`local` holding the role `core`. --roles gives it other roles without
writing an inventory (kept in local-node.toml in the config directory);
an inventory, once there is one, replaces this setting.

Examples:
  stackhost node local
  stackhost node local --roles core,controller,postgresql,filesystem
  stackhost node local --reset")]
    Local {
        /// The roles, comma-separated (each not empty, no `:` or space).
        #[arg(long, value_name = "ROLE,...", conflicts_with = "reset")]
        roles: Option<String>,
        /// Go back to the default: the role `core` alone.
        #[arg(long)]
        reset: bool,
    },
}

pub fn run(paths: &Paths, cmd: NodeCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        NodeCommand::List { json, cluster } => {
            let cluster = cluster.open(paths)?;
            let infos: Vec<_> = cluster.nodes().iter().map(|n| &n.info).collect();
            if json {
                super::print_json(&infos)?;
            } else {
                for n in infos {
                    println!("{} {} ({})", n.address, n.roles.join(" "), n.name);
                }
            }
        }
        NodeCommand::Local { roles, reset } => local(paths, roles, reset)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `node local`: show, store or forget the local node's roles.
fn local(paths: &Paths, roles: Option<String>, reset: bool) -> anyhow::Result<()> {
    let stored = LocalNodeRoles::in_config(&paths.config);
    let file = stored.path().display();
    let default = inventory::DEFAULT_LOCAL_ROLES.join(",");
    if reset {
        let had = stored.reset()?;
        let what = if had {
            format!("removed {file}")
        } else {
            "none were stored".into()
        };
        println!("local node roles: {default} (the default; {what})");
    } else if let Some(roles) = roles {
        // `--roles ''` names no role (refused); a role given twice is kept once.
        let mut list: Vec<String> = Vec::new();
        for role in roles.split(',').filter(|_| !roles.is_empty()) {
            if !list.iter().any(|r| r == role) {
                list.push(role.to_string());
            }
        }
        stored.save(&list)?;
        println!("local node roles: {} (saved in {file})", list.join(","));
    } else {
        match stored.load()? {
            Some(list) => println!("local node roles: {} (from {file})", list.join(",")),
            None => println!(
                "local node roles: {default} (the default; set others with \
                 `stackhost node local --roles ROLE,...`)"
            ),
        }
    }
    // An inventory replaces the local node: say so rather than let the
    // operator wonder why the roles do not show in runs.
    let in_effect = std::env::var_os("STACKHOST_INVENTORY")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| Some(inventory::default_path(paths)).filter(|p| p.exists()));
    if let Some(inv) = in_effect {
        eprintln!(
            "note: runs take their nodes from the inventory {}; these roles apply only \
             when there is none",
            inv.display()
        );
    }
    Ok(())
}
