//! `stackhost node list`: the cluster's nodes, like `kato node list`.

use crate::cluster::Cluster;
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List the nodes: address, then roles (`kato node list` format).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: NodeCommand) -> anyhow::Result<ExitCode> {
    // Inventories (remote nodes over SSH) are not built yet: the cluster is
    // the embedded default, this machine.
    let cluster = Cluster::local();
    match cmd {
        NodeCommand::List { json } => {
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
