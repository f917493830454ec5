//! `backup export`: stop the roles, stream every role's data into one
//! artifact, start the roles again.

use crate::artifact::{
    Content, Meta, Omitted, TopologyNode, artifact_path, compression_of, databases, export_dest,
};
use crate::{META, ROLES, SYSTEM_DATABASES, core_node, refuse_existing};
use stackato::{paths, role_service};
use stackhost_sdk::archive;
use stackhost_sdk::clock;
use stackhost_sdk::postgres;
use stackhost_sdk::prelude::*;

/// The roles an export covers, from --only, --exclude and --only-this-node.
pub(crate) fn export_roles(inv: &Invocation) -> Result<(Vec<String>, String)> {
    for r in inv.values("only").iter().chain(inv.values("exclude")) {
        ensure!(
            ROLES.contains(&r.as_str()),
            "unknown role `{r}` (exportable: {})",
            ROLES.join(", ")
        );
    }
    let mut roles: Vec<String> = if inv.values("only").is_empty() {
        ROLES.iter().map(|r| r.to_string()).collect()
    } else {
        inv.values("only").to_vec()
    };
    roles.retain(|r| !inv.values("exclude").contains(r));
    let mut scope = "cluster".to_string();
    if inv.flag("only-this-node") {
        ensure!(
            !inv.flag("cluster"),
            "--cluster and --only-this-node exclude each other"
        );
        let node = this_node()?;
        roles.retain(|r| node.has_role(r));
        scope = format!("node {}", node.name());
    }
    ensure!(
        !roles.is_empty(),
        "nothing to export: no role is left after --only, --exclude and --only-this-node"
    );
    Ok((roles, scope))
}

/// The node `--only-this-node` exports: the one node selected
/// (`--nodes NAME --only-this-node`, kato's `--only-this-node` on any
/// node), else this machine when it is among the selected nodes.
pub(crate) fn this_node() -> Result<Node> {
    let selected = nodes::all();
    if let [one] = selected.as_slice() {
        return Ok(one.clone());
    }
    nodes::local().ok_or_else(|| {
        let names: Vec<&str> = selected.iter().map(|n| n.name()).collect();
        Error::Usage(format!(
            "--only-this-node exports one node: select it with --nodes NAME (selected: {}), \
             or run where the inventory marks this machine `local = true`",
            names.join(", ")
        ))
    })
}

/// The data services whose data an export takes (their directory under
/// /var/stackato/services): the filesystem service's files, and the
/// PostgreSQL service's databases, dumped from the postgresql role.
const EXPORTED_SERVICES: &[(&str, &str)] =
    &[("filesystem", "filesystem"), ("postgresql", "postgresql")];

/// Service data on the nodes in scope that this export does not take:
/// every directory of /var/stackato/services but those of
/// [`EXPORTED_SERVICES`] whose role is exported. Nothing is skipped
/// silently: the run fails on them unless --allow-partial.
pub(crate) fn omitted_services(inv: &Invocation, roles: &[String]) -> Result<Vec<Omitted>> {
    let in_scope: Vec<Node> = if inv.flag("only-this-node") {
        vec![this_node()?]
    } else {
        nodes::all()
    };
    let mut out = Vec::new();
    for node in in_scope {
        if !node.exists(paths::SERVICES)? {
            continue;
        }
        for entry in node.list_dir(paths::SERVICES)? {
            if entry.file_type != stackhost_sdk::fs::FileType::Directory {
                continue;
            }
            let service = entry.name;
            let why = match EXPORTED_SERVICES.iter().find(|(s, _)| *s == service) {
                Some((_, role)) if roles.iter().any(|r| r == role) => continue,
                Some((_, role)) => format!("its role `{role}` is excluded from this export"),
                None => "stackhost has no exporter for it yet".to_string(),
            };
            out.push(Omitted {
                node: node.name().into(),
                path: format!("{}/{service}", paths::SERVICES),
                service,
                why,
            });
        }
    }
    Ok(out)
}

pub(crate) fn plan_export(inv: &Invocation, core: &Node) -> Result<Plan> {
    let (roles, scope) = export_roles(inv)?;
    let omitted = omitted_services(inv, &roles)?;
    if !omitted.is_empty() && !inv.flag("allow-partial") {
        let listed: Vec<String> = omitted.iter().map(ToString::to_string).collect();
        bail!(
            "this export would leave out service data: {}. A backup without it loses that data on \
             restore; pass --allow-partial to export the rest (the artifact records what it left out)",
            listed.join("; ")
        );
    }
    let mut plan = Plan::new();
    let writers = nodes::with_role("controller");
    if inv.flag("maintenance") {
        plan.push(writers.iter().fold(Phase::new("maintenance on"), |p, n| {
            p.step(n, "maintenance-on", "controller")
        }));
    }
    let payload = format!("{scope}\t{}", roles.join(","));
    plan.push(Phase::new("export").step(core, "export", payload));
    if inv.flag("maintenance") {
        plan.push(
            writers
                .iter()
                .fold(Phase::new("maintenance off").always(), |p, n| {
                    p.step(n, "maintenance-off", "controller")
                }),
        );
    }
    Ok(plan)
}

/// Stop or start the roles in the payload (`service stackato-ROLE ACTION`).
pub(crate) fn maintenance(inv: &Invocation, step: &Step, action: &str) -> Result<Outcome> {
    let node = step.node();
    for role in step.payload().split(',').filter(|r| !r.is_empty()) {
        let out = node.run(Command::new("service").arg(role_service(role)).arg(action))?;
        ensure!(
            out.success(),
            "service stackato-{role} {action} on {} failed (exit {}): {}",
            node.name(),
            out.status(),
            out.stderr_str().trim()
        );
    }
    let verb = match (action, inv.dry_run()) {
        ("stop", false) => "stopped",
        ("stop", true) => "would stop",
        (_, false) => "started",
        (_, true) => "would start",
    };
    Ok(Outcome::changed(format!(
        "{verb} {} for the export",
        step.payload()
    )))
}

fn topology() -> Vec<TopologyNode> {
    nodes::all()
        .into_iter()
        .map(|n| TopologyNode {
            name: n.name().into(),
            address: n.address().into(),
            roles: n.roles().to_vec(),
        })
        .collect()
}

fn product_version(core: &Node) -> Option<String> {
    core.read_to_string(paths::VERSION_FILE)
        .ok()
        .map(|v| v.trim().to_string())
}

pub(crate) fn export(inv: &Invocation) -> Result<Outcome> {
    let (roles, scope) = export_roles(inv)?;
    let core = core_node()?;
    let path = artifact_path(export_dest(inv), "stackato-export", inv.flag("gzip"));
    // Again here: a dated name from a run in the same second, or a file
    // that appeared since the plan.
    refuse_existing(inv, &path)?;
    let local = if inv.flag("only-this-node") {
        Some(this_node()?)
    } else {
        None
    };
    let holder = |role: &str| -> Option<Node> {
        match &local {
            Some(n) => n.has_role(role).then(|| n.clone()),
            None => nodes::with_role(role).into_iter().next(),
        }
    };
    // Decide everything before the artifact exists, so a plan that cannot
    // work leaves nothing behind.
    let mut contents = Vec::new();
    let mut skipped = Vec::new();
    for role in &roles {
        let Some(node) = holder(role) else {
            skipped.push(format!("{role} (no node holds it)"));
            continue;
        };
        match role.as_str() {
            "postgresql" => {
                let dbs = postgres::list_databases(&node)?;
                for db in dbs
                    .into_iter()
                    .filter(|d| !SYSTEM_DATABASES.contains(&d.as_str()))
                {
                    contents.push(Content {
                        kind: "database".into(),
                        item: format!("databases/{db}.dump"),
                        role: role.clone(),
                        node: node.name().into(),
                        source: db,
                    });
                }
            }
            "controller" | "filesystem" | "core" => {
                let (kind, item, source) = match role.as_str() {
                    "controller" => ("droplets", "droplets", paths::DROPLETS),
                    "filesystem" => ("services", "services/filesystem", paths::FILESYSTEM_SERVICE),
                    _ => ("settings", "settings", paths::SETTINGS),
                };
                if !node.exists(source)? {
                    skipped.push(format!(
                        "{kind} ({source} does not exist on {})",
                        node.name()
                    ));
                    continue;
                }
                contents.push(Content {
                    kind: kind.into(),
                    item: item.into(),
                    role: role.clone(),
                    node: node.name().into(),
                    source: source.into(),
                });
            }
            _ => unreachable!("roles are checked"),
        }
    }
    ensure!(
        !contents.is_empty(),
        "nothing to export: {}",
        skipped.join(", ")
    );
    let omitted = omitted_services(inv, &roles)?;
    ensure!(
        omitted.is_empty() || inv.flag("allow-partial"),
        "service data appeared since the plan and would be left out: {}",
        omitted
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    );
    skipped.extend(omitted.iter().map(ToString::to_string));
    let meta = Meta {
        format: "stackhost-backup/1".into(),
        product_version: product_version(&core),
        created: clock::now(),
        scope,
        roles: roles.clone(),
        topology: topology(),
        contents,
        omitted,
    };
    let artifact = archive::create(&path, compression_of(&path))?;
    let json = serde_json::to_vec_pretty(&meta).map_err(|e| Error::plugin(e.to_string()))?;
    artifact.add_bytes(META, json)?;
    let mut files = 0usize;
    for c in &meta.contents {
        let node = Node::named(c.node.clone());
        match c.kind.as_str() {
            "database" => {
                postgres::dump(&node, &c.source, None, &artifact, &c.item)?;
                files += 1;
            }
            _ => files += artifact.add_path(&node, &c.source, &c.item)?.len(),
        }
    }
    let items = artifact.finish()?;
    let bytes: u64 = items.iter().map(|i| i.size).sum();
    let dbs = databases(&meta);
    let mut msg = format!(
        "{} {path}: {} items, {:.1} MiB before compression; databases: {}; files: {files}",
        if inv.dry_run() {
            "would write"
        } else {
            "wrote"
        },
        items.len(),
        bytes as f64 / (1 << 20) as f64,
        if dbs.is_empty() {
            "none".to_string()
        } else {
            dbs.join(", ")
        },
    );
    if !skipped.is_empty() {
        msg.push_str(&format!("; not exported: {}", skipped.join(", ")));
    }
    Ok(Outcome::changed(msg))
}
