//! `relocate status` (where each kind's data lives, how full) and
//! `relocate cleanup` (delete the old copies relocations kept).

use crate::mounts::mount_for;
use crate::{KINDS, Kind, bytes, kind, mount_table, realpath};
use serde::Serialize;
use stackato::{as_root, from_json, to_json};
use stackhost_sdk::fs::FileType;
use stackhost_sdk::prelude::*;

/// The old copies of `k`'s data on `node`: `PATH.pre-relocate-*`.
fn old_copies(node: &Node, k: &Kind) -> Result<Vec<String>> {
    let (parent, base) = k.path.rsplit_once('/').unwrap_or(("/", k.path));
    if !node.exists(parent)? {
        return Ok(Vec::new());
    }
    let prefix = format!("{base}.pre-relocate-");
    Ok(node
        .list_dir(parent)?
        .into_iter()
        .filter(|e| e.file_type == FileType::Directory && e.name.starts_with(&prefix))
        .map(|e| format!("{parent}/{}", e.name))
        .collect())
}

/// DEST of the bind mount /etc/fstab has for `path`, if any.
fn fstab_source(node: &Node, path: &str) -> Result<Option<String>> {
    let text = match node.read_to_string("/etc/fstab") {
        Ok(t) => t,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(text.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() >= 4
            && !f[0].starts_with('#')
            && f[1] == path
            && f[3].split(',').any(|o| o == "bind"))
        .then(|| f[0].to_string())
    }))
}

/// One kind on one node, as `status` shows it.
#[derive(Serialize)]
struct Place {
    kind: &'static str,
    path: &'static str,
    /// Where the data is: DEST for a relocated kind, else the path itself.
    location: String,
    relocated: bool,
    mount_point: String,
    fstype: String,
    source: String,
    size: u64,
    used: u64,
    avail: u64,
    old_copies: Vec<String>,
}

fn df(node: &Node, path: &str) -> Result<(u64, u64, u64)> {
    let out = node
        .run(as_root("df").args(["-B1", "--output=size,used,avail", path]))?
        .check()?;
    let nums: Vec<u64> = out
        .stdout_str()
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    match nums[..] {
        [size, used, avail] => Ok((size, used, avail)),
        _ => bail!("df printed no sizes for {path} on node {}", node.name()),
    }
}

pub fn plan_status() -> Result<Plan> {
    let phase = nodes::all()
        .iter()
        .fold(Phase::new("status"), |p, n| p.step(n, "status", ""));
    ensure!(!phase.is_empty(), "no node is selected");
    Ok(Plan::new().phase(phase))
}

pub fn status(node: &Node) -> Result<Outcome> {
    let table = mount_table(node)?;
    let mut places = Vec::new();
    for k in KINDS {
        let Some(real) = realpath(node, k.path)? else {
            continue;
        };
        let Some(m) = mount_for(&table, &real) else {
            continue;
        };
        let relocated = m.mount_point == real;
        let location = if relocated {
            fstab_source(node, k.path)?.unwrap_or_else(|| format!("{}:{}", m.source, m.root))
        } else {
            real.clone()
        };
        let (size, used, avail) = df(node, &real)?;
        places.push(Place {
            kind: k.name,
            path: k.path,
            location,
            relocated,
            mount_point: m.mount_point.clone(),
            fstype: m.fstype.clone(),
            source: m.source.clone(),
            size,
            used,
            avail,
            old_copies: old_copies(node, k)?,
        });
    }
    if places.is_empty() {
        return Ok(Outcome::ok(
            "no Stackato data (services, droplets, containers, docker-registry) on this node",
        ));
    }
    let mut rows = vec![[
        "KIND".to_string(),
        "LIVES IN".to_string(),
        "TYPE".to_string(),
        "USED / SIZE".to_string(),
        "OLD COPIES".to_string(),
    ]];
    for p in &places {
        let pct = (p.used * 100).checked_div(p.size).unwrap_or(0);
        rows.push([
            p.kind.to_string(),
            if p.relocated {
                p.location.clone()
            } else {
                format!("{} (not relocated)", p.location)
            },
            p.fstype.clone(),
            format!("{} / {} ({pct}%)", bytes(p.used), bytes(p.size)),
            if p.old_copies.is_empty() {
                "-".to_string()
            } else {
                p.old_copies.join(", ")
            },
        ]);
    }
    let width = |i: usize| rows.iter().map(|r| r[i].len()).max().unwrap_or(0);
    let widths = [width(0), width(1), width(2), width(3)];
    let lines: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {}",
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
                w3 = widths[3]
            )
        })
        .collect();
    Ok(Outcome::ok(lines.join("\n")).with_data(to_json(&places)?))
}

pub fn plan_cleanup(inv: &Invocation) -> Result<Plan> {
    let kinds: Vec<&str> = match inv.value("kind") {
        Some(name) => match kind(name) {
            Some(k) => vec![k.name],
            None => usage!(
                "KIND is one of services, droplets, containers, docker-registry, not `{name}`"
            ),
        },
        None => KINDS.iter().map(|k| k.name).collect(),
    };
    let payload = to_json(&kinds)?;
    let phase = nodes::all().iter().fold(Phase::new("cleanup"), |p, n| {
        p.step(n, "cleanup", payload.clone())
    });
    ensure!(!phase.is_empty(), "no node is selected");
    Ok(Plan::new().phase(phase))
}

pub fn cleanup(inv: &Invocation, node: &Node, payload: &str) -> Result<Outcome> {
    let kinds: Vec<String> = from_json(payload, "the step's payload")?;
    let table = mount_table(node)?;
    let mut removed = Vec::new();
    for k in kinds.iter().filter_map(|n| kind(n)) {
        let olds = old_copies(node, k)?;
        if olds.is_empty() {
            continue;
        }
        // Only a relocated kind's old copy is a spare: otherwise it may be
        // the only copy of the data (a switch that was undone by hand).
        let relocated = table.iter().any(|e| e.mount_point == k.path);
        ensure!(
            relocated,
            "{} on node {} is not relocated (nothing is mounted there), so {} may be the only copy of its data: not removed",
            k.path,
            node.name(),
            olds.join(", ")
        );
        for old in olds {
            node.remove_all(&old)?;
            removed.push(old);
        }
    }
    Ok(if removed.is_empty() {
        Outcome::ok("no old copies to remove")
    } else {
        let verb = if inv.dry_run() {
            "would have removed"
        } else {
            "removed"
        };
        Outcome::changed(format!("{verb} {}", removed.join(", ")))
    })
}
