//! `stackhost node list`: the cluster's nodes, like `kato node list`.

use super::run::ClusterFlags;
use crate::paths::Paths;
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List the nodes: address, then roles (`kato node list` format).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        cluster: ClusterFlags,
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
    }
    Ok(ExitCode::SUCCESS)
}
