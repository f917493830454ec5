//! `quota set`: the guide's retroactive `setquota -u NAME 0 LIMIT 0 0 -a`
//! for filesystem services, as a btrfs qgroup limit on each service's
//! subvolume. Planned with every check first (the limit, the services,
//! btrfs with quotas on, a backup export newer than a day), so a refusal
//! changes nothing; applied idempotently (a service already at the limit
//! is `ok`).

use crate::fsinfo::{Mount, mount_of, qgroups};
use crate::units::{human_limit, parse_limit};
use crate::{BACKUP_MAX_AGE_SECS, STORAGE, below, check_path, payload, valid_service};
use serde::{Deserialize, Serialize};
use stackato::to_json;
use stackhost_sdk::archive;
use stackhost_sdk::fs::FileType;
use stackhost_sdk::prelude::*;

/// Refuse what `set` cannot do, naming the path and type.
fn require_btrfs(node: &Node, path: &str, mount: &Mount) -> Result<()> {
    match mount.fstype.as_str() {
        "btrfs" => Ok(()),
        "ext4" | "xfs" => bail!(
            "{path} on node {} is on {} ({}): `quota set` is built for btrfs qgroups only; setquota for ext4/XFS user quotas is not built yet",
            node.name(),
            mount.fstype,
            mount.target
        ),
        other => bail!(
            "{path} on node {} is on {other} ({}), which has no quota support: put the data on btrfs (or relocate it there: stackhost run relocate ...)",
            node.name(),
            mount.target
        ),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Target {
    service: String,
    path: String,
}

#[derive(Serialize, Deserialize)]
struct SetPayload {
    mount: String,
    storage: String,
    limit: Option<u64>,
    targets: Vec<Target>,
}

/// One service as `set` left it (step data).
#[derive(Serialize)]
struct SetResult {
    service: String,
    qgroup: String,
    before: Option<u64>,
    after: Option<u64>,
    changed: bool,
}

pub fn set(inv: &Invocation, step: &Step) -> Result<Outcome> {
    let p: SetPayload = payload(step)?;
    let node = step.node();
    let mount = mount_of(&node, &p.storage)?;
    let rows = qgroups(&node, &p.mount)?.ok_or_else(|| {
        Error::plugin(format!(
            "btrfs quotas are off at {} on node {}",
            p.mount,
            node.name()
        ))
    })?;
    let rows = below(&mount, &p.storage, rows);
    let limit_arg = p
        .limit
        .map_or_else(|| "none".to_string(), |b| b.to_string());
    let mut results = Vec::new();
    for t in &p.targets {
        let Some(q) = rows.iter().find(|q| q.path == t.service) else {
            bail!(
                "{} on node {} is no longer a btrfs subvolume",
                t.path,
                node.name()
            );
        };
        let changed = q.max_referenced != p.limit;
        if changed {
            node.run(
                Command::new("btrfs")
                    .args(["qgroup", "limit", &limit_arg, &t.path])
                    .user("root")
                    .env("LANG", "C"),
            )?
            .check()?;
        }
        results.push(SetResult {
            service: t.service.clone(),
            qgroup: q.id.clone(),
            before: q.max_referenced,
            after: p.limit,
            changed,
        });
    }
    let verb = if inv.dry_run() {
        "would limit"
    } else {
        "limited"
    };
    let (changed, same): (Vec<&SetResult>, Vec<&SetResult>) =
        results.iter().partition(|r| r.changed);
    let mut parts: Vec<String> = changed
        .iter()
        .map(|r| {
            format!(
                "{verb} {} to {} (was {})",
                r.service,
                human_limit(r.after),
                human_limit(r.before)
            )
        })
        .collect();
    if !same.is_empty() {
        let names: Vec<&str> = same.iter().map(|r| r.service.as_str()).collect();
        parts.push(format!(
            "already {}: {}",
            human_limit(p.limit),
            names.join(", ")
        ));
    }
    let data = to_json(&results)?;
    Ok(if changed.is_empty() {
        Outcome::ok(parts.join("; "))
    } else {
        Outcome::changed(parts.join("; "))
    }
    .with_data(data))
}

/// What `backup export` writes first into every export (its `backup.json`),
/// as much as this check reads.
#[derive(Deserialize)]
struct ExportMeta {
    created: u64,
    roles: Vec<String>,
}

/// The guide: back up before changing quotas. Accept an export holding
/// the filesystem role's data made within the last day.
fn check_backup(dir: &str) -> Result<String> {
    let now = stackhost_sdk::clock::now();
    let listed = match archive::list(dir) {
        Ok(l) => l,
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => return Err(e),
    };
    for l in listed {
        let meta = archive::open(&l.path)
            .and_then(|a| a.read("backup.json", 1 << 20))
            .ok()
            .and_then(|b| serde_json::from_slice::<ExportMeta>(&b).ok());
        if let Some(m) = meta
            && m.roles.iter().any(|r| r == "filesystem")
            && m.created + BACKUP_MAX_AGE_SECS >= now
        {
            return Ok(l.path);
        }
    }
    bail!(
        "refused: no backup export of the filesystem services newer than a day in {dir}, and the guide says to back up before changing quotas. Export first (stackhost run backup export --only filesystem {dir}), or pass --no-backup-check"
    )
}

pub fn plan_set(inv: &Invocation) -> Result<Plan> {
    let limit = match parse_limit(inv.require("limit")?) {
        Ok(l) => l,
        Err(e) => usage!("{e}"),
    };
    let users = inv.values("user");
    let all = inv.flag("all-filesystem-services");
    match (users.is_empty(), all) {
        (true, false) => {
            usage!("say which services: --user stackatofs-... or --all-filesystem-services")
        }
        (false, true) => usage!("--user and --all-filesystem-services exclude each other"),
        _ => {}
    }
    for u in users {
        if !valid_service(u) {
            usage!("--user takes a filesystem service name (stackatofs-...), not `{u}`");
        }
    }
    let storage = inv.value("path").unwrap_or(STORAGE);
    check_path(storage)?;
    let candidates: Vec<Node> = match inv.value("path") {
        Some(_) => nodes::all(),
        None => nodes::with_role("filesystem"),
    };
    if candidates.is_empty() {
        usage!("no selected node has the role filesystem (select one, or name the storage PATH)");
    }
    let mut phase = Phase::new("set");
    let mut found_users = Vec::new();
    for node in &candidates {
        let mount = mount_of(node, storage)?;
        require_btrfs(node, storage, &mount)?;
        let Some(rows) = qgroups(node, &mount.target)? else {
            bail!(
                "btrfs quotas are off at {} on node {}: stackhost run quota enable {storage}",
                mount.target,
                node.name()
            );
        };
        let subvolumes: Vec<String> = below(&mount, storage, rows)
            .into_iter()
            .map(|q| q.path)
            .filter(|p| valid_service(p))
            .collect();
        // Services kept as plain directories cannot be limited by btrfs.
        let plain: Vec<String> = if storage.starts_with("/var/stackato/") {
            node.list_dir(storage)?
                .into_iter()
                .filter(|e| e.file_type == FileType::Directory && valid_service(&e.name))
                .map(|e| e.name)
                .filter(|n| !subvolumes.contains(n))
                .collect()
        } else {
            Vec::new()
        };
        let wanted: Vec<String> = if all {
            if !plain.is_empty() {
                bail!(
                    "on node {}: {} under {storage} are plain directories, not btrfs subvolumes, so btrfs cannot limit them; nothing was changed",
                    node.name(),
                    plain.join(", ")
                );
            }
            subvolumes.clone()
        } else {
            if let Some(u) = users.iter().find(|u| plain.contains(u)) {
                bail!(
                    "{storage}/{u} on node {} is a plain directory, not a btrfs subvolume, so btrfs cannot limit it; nothing was changed",
                    node.name()
                );
            }
            users
                .iter()
                .filter(|u| subvolumes.contains(u))
                .cloned()
                .collect()
        };
        found_users.extend(wanted.iter().cloned());
        if wanted.is_empty() {
            continue;
        }
        let targets = wanted
            .into_iter()
            .map(|service| Target {
                path: format!("{}/{service}", storage.trim_end_matches('/')),
                service,
            })
            .collect();
        let p = SetPayload {
            mount: mount.target.clone(),
            storage: storage.to_string(),
            limit,
            targets,
        };
        phase.push_step(node, "set", to_json(&p)?);
    }
    for u in users {
        if !found_users.contains(u) {
            usage!(
                "no filesystem service `{u}` under {storage} on {}",
                candidates
                    .iter()
                    .map(Node::name)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    if phase.is_empty() {
        bail!("no filesystem service (stackatofs-* subvolume) under {storage}: nothing to limit");
    }
    if !inv.flag("no-backup-check") {
        let dir = inv.require("backup-dir")?;
        let export = check_backup(dir)?;
        log::info(format!("backup export found: {export}"));
    }
    Ok(Plan::new().phase(phase))
}
