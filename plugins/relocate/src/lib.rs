//! `relocate`: the guide's `kato relocate services|droplets|containers|
//! docker_registry DEST` (the last one spelt `docker-registry` here: command
//! names take no `_`). `plan` checks everything it can without changing
//! anything (DEST exists, is on a mounted volume that is not NFS/CIFS nor
//! the data's own filesystem, is empty, has room for the data plus a
//! margin; warns when quotas would be lost). The run then stops the roles
//! using the data, copies it (`rsync -aHAXS --numeric-ids`: owners, modes,
//! times, hard links, ACLs, xattrs, sparse files), verifies the copy
//! (`rsync --checksum` finds nothing to change, and the file count and
//! total size agree both ways), and switches: the old directory is renamed
//! to `PATH.pre-relocate-DATE` and DEST is bind-mounted at PATH, persisted
//! in `/etc/fstab` and checked with `findmnt --verify`. Every role keeps
//! its configured path, so nothing else needs to know. If any step fails,
//! `switch-back` undoes the switch; the roles are started again whatever
//! happened. `status` and `cleanup` (delete the old copies) finish the set.
//!
//! Which data each kind is, and which roles use it, is [`KINDS`].

mod mounts;
mod steps;
mod view;

use mounts::{
    MountEntry, has_quota_option, mount_for, mounts_below, nested, network_block_device,
    parse_mountinfo, refuse_fstype,
};
use serde::{Deserialize, Serialize};
use stackato::{as_root, from_json, to_json};
use stackhost_sdk::prelude::*;

struct Relocate;

/// One kind of data `relocate` moves.
pub struct Kind {
    /// The command name, kato's word.
    pub name: &'static str,
    /// Where the roles keep it (and keep finding it after a relocation).
    pub path: &'static str,
    /// The node roles that hold this data: the nodes it is relocated on.
    pub held_by: &'static [&'static str],
    /// The roles stopped while it is copied (those the node has and whose
    /// service, /etc/init.d/stackato-ROLE, exists).
    pub stop: &'static [&'static str],
    /// Stackato enforces quotas here: warn when DEST cannot.
    pub needs_quota: bool,
}

const SERVICE_ROLES: &[&str] = stackato::DATA_SERVICE_ROLES;

/// The kinds, their data and the roles using it.
///
/// | kind              | path                                  | nodes (roles)              | roles stopped      |
/// |-------------------|---------------------------------------|----------------------------|--------------------|
/// | `services`        | `/var/stackato/services`              | data services (filesystem, postgresql, mysql, redis, mongodb, rabbitmq, memcached) | those the node has |
/// | `droplets`        | `/var/stackato/data/droplets`         | controller                 | controller         |
/// | `containers`      | `/var/stackato/containers`            | dea                        | dea                |
/// | `docker-registry` | `/var/stackato/data/docker_registry`  | controller                 | docker_registry    |
pub const KINDS: &[Kind] = &[
    Kind {
        name: "services",
        path: "/var/stackato/services",
        held_by: SERVICE_ROLES,
        stop: SERVICE_ROLES,
        needs_quota: true,
    },
    Kind {
        name: "droplets",
        path: "/var/stackato/data/droplets",
        held_by: &["controller"],
        stop: &["controller"],
        needs_quota: false,
    },
    Kind {
        name: "containers",
        path: "/var/stackato/containers",
        held_by: &["dea"],
        stop: &["dea"],
        needs_quota: true,
    },
    Kind {
        name: "docker-registry",
        path: "/var/stackato/data/docker_registry",
        held_by: &["controller"],
        stop: &["docker_registry"],
        needs_quota: false,
    },
];

pub fn kind(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

/// Room asked for beyond the data's size: a tenth of it plus 16 MiB, for
/// directories, metadata and the data growing while the roles stop.
fn margin(size: u64) -> u64 {
    size / 10 + (16 << 20)
}

/// What every step of one node's relocation needs, decided in `plan`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Move {
    pub kind: String,
    /// The data's path (the roles' configured path).
    pub src: String,
    /// DEST, canonical.
    pub dest: String,
    /// Where the old data is kept after the switch.
    pub old: String,
    /// Role services to stop and start again.
    pub roles: Vec<String>,
    pub size: u64,
}

impl Move {
    /// The /etc/fstab line that persists the switch.
    pub fn fstab_line(&self) -> String {
        format!("{} {} none bind 0 0", self.dest, self.src)
    }

    /// The comment above the line: what it is, and (right after the move)
    /// where the old data is kept.
    pub fn fstab_comment(&self, with_old: bool) -> String {
        let mut text = self.fstab_comment_start();
        if with_old {
            text.push_str(&format!(
                " (old data kept in {} until `relocate cleanup`)",
                self.old
            ));
        }
        text
    }

    pub fn fstab_comment_start(&self) -> String {
        format!(
            "# stackhost relocate {}: {} lives in {}",
            self.kind, self.src, self.dest
        )
    }
}

/// The node's mount table.
pub fn mount_table(node: &Node) -> Result<Vec<MountEntry>> {
    let out = node
        .run(as_root("cat").arg("/proc/self/mountinfo"))?
        .check()?;
    Ok(parse_mountinfo(&out.stdout_str()))
}

/// `realpath -e PATH`, or `None` when it does not exist.
pub fn realpath(node: &Node, path: &str) -> Result<Option<String>> {
    // The grant's path hole takes only paths that resolve: ask first.
    if !node.exists(path)? {
        return Ok(None);
    }
    let out = node.run(as_root("realpath").args(["-e", path]))?;
    Ok(out.success().then(|| out.stdout_str().trim().to_string()))
}

/// Device and inode of each path (following links): equal for a path and
/// the directory bind-mounted on it.
pub fn identity(node: &Node, paths: &[&str]) -> Result<Vec<String>> {
    let out = node
        .run(
            as_root("stat")
                .args(["-L", "-c", "%d:%i"])
                .args(paths.iter().copied()),
        )?
        .check()?;
    Ok(out.stdout_str().lines().map(String::from).collect())
}

/// The first number in the second line of `df -B1 --output=FIELD PATH`.
pub fn df_field(node: &Node, path: &str, field: &str) -> Result<u64> {
    let out = node
        .run(as_root("df").args(["-B1", &format!("--output={field}"), path]))?
        .check()?;
    out.stdout_str()
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| {
            Error::plugin(format!(
                "df printed no {field} for {path} on node {}",
                node.name()
            ))
        })
}

/// DEST as given: absolute, plain characters only (it goes into
/// /etc/fstab, where a space would need escaping).
fn check_dest(dest: &str) -> Result<()> {
    let plain = dest
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c));
    if !dest.starts_with('/') || !plain || dest.split('/').any(|c| c == "..") || dest == "/" {
        usage!(
            "DEST must be an absolute directory path of letters, digits, `/`, `.`, `_` and `-` (no `..`), not `{dest}`"
        );
    }
    Ok(())
}

/// The preflight for one node, all read-only: what to do (a step), or why not.
fn preflight(k: &Kind, node: &Node, dest: &str, now: u64) -> Result<(String, Move)> {
    let n = node.name();
    let link = node.stat(k.path)?;
    if link.is_some_and(|m| m.file_type == stackhost_sdk::fs::FileType::Symlink) {
        bail!(
            "{} on node {n} is a symlink: relocating through a link is not built; relocate its target's volume yourself or replace the link by the directory",
            k.path
        );
    }
    let Some(src) = realpath(node, k.path)? else {
        bail!(
            "{} does not exist on node {n}: there are no {} to relocate",
            k.path,
            k.name
        );
    };
    if src != k.path {
        bail!(
            "{} on node {n} leads to {src} (a symlink on the way): relocating through a link is not built; relocate {src}'s volume yourself or replace the link by the directory",
            k.path
        );
    }
    let Some(dest_real) = realpath(node, dest)? else {
        bail!(
            "DEST {dest} does not exist on node {n}: mount the volume and create the directory first (the guide's steps 1 and 2)"
        );
    };
    let table = mount_table(node)?;
    let find = |p: &str| {
        mount_for(&table, p)
            .cloned()
            .ok_or_else(|| Error::plugin(format!("no mount holds {p} on node {n}")))
    };
    let src_mount = find(&src)?;
    let dest_mount = find(&dest_real)?;
    let roles: Vec<String> = roles_to_stop(k, node)?;
    let mv = |size| Move {
        kind: k.name.to_string(),
        src: k.path.to_string(),
        dest: dest_real.clone(),
        old: format!(
            "{}.pre-relocate-{}",
            k.path,
            stackhost_sdk::clock::utc_stamp(now)
        ),
        roles: roles.clone(),
        size,
    };
    let ids = identity(node, &[&src, &dest_real])?;
    if ids.len() == 2 && ids[0] == ids[1] {
        return Ok(("already".into(), mv(0)));
    }
    if src_mount.mount_point == src {
        bail!(
            "{} on node {n} is itself a mount point ({} from {}): relocating data that already has its own volume is not built; move it back first",
            k.path,
            src_mount.fstype,
            src_mount.source
        );
    }
    if let Some(inner) = mounts_below(&table, &src).first() {
        bail!(
            "{} on node {n} has a filesystem mounted inside it ({}): relocating a tree with mounts in it is not built; unmount it first",
            k.path,
            inner.mount_point
        );
    }
    if nested(&src, &dest_real) {
        bail!("DEST {dest} on node {n} overlaps {src}: choose a directory outside the data");
    }
    if let Some(why) = refuse_fstype(&dest_mount.fstype) {
        bail!("DEST {dest} on node {n} {why}");
    }
    if dest_mount.mount_point == "/" {
        bail!(
            "DEST {dest} on node {n} is on the root filesystem, not on a mounted volume: mount the larger partition or block storage first (the guide's step 1)"
        );
    }
    if dest_mount.device == src_mount.device {
        bail!(
            "DEST {dest} on node {n} is on the same filesystem as {} ({}): relocating there gains no space",
            k.path,
            dest_mount.mount_point
        );
    }
    let listing = node.run(as_root("ls").args(["-A", &dest_real]))?.check()?;
    if !listing.stdout_str().trim().is_empty() {
        bail!(
            "DEST {dest} on node {n} is not empty: relocate into an empty directory, so nothing there is overwritten"
        );
    }
    let du = node.run(as_root("du").args(["-sxB1", &src]))?.check()?;
    let size: u64 = du
        .stdout_str()
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::plugin(format!("du printed no size for {src} on node {n}")))?;
    let avail = df_field(node, &dest_real, "avail")?;
    let needed = size + margin(size);
    if avail < needed {
        bail!(
            "not enough space at DEST {dest} on node {n}: {} free, {} needed ({} of {} plus a margin of {}); nothing was stopped or copied",
            bytes(avail),
            bytes(needed),
            bytes(size),
            k.name,
            bytes(margin(size))
        );
    }
    if k.needs_quota && !quota_capable(node, &dest_mount)? {
        log::warn(format!(
            "node {n}: {dest} is on {} without quotas, so the quotas Stackato sets for {} will not be enforced there (stackhost run quota enable {dest})",
            dest_mount.fstype, k.name
        ));
    }
    if k.name == "containers" && network_block_device(&dest_mount) {
        log::warn(format!(
            "node {n}: {dest} is on the network block device {}: the guide advises against putting containers on network volumes",
            dest_mount.source
        ));
    }
    Ok(("move".into(), mv(size)))
}

fn quota_capable(node: &Node, m: &MountEntry) -> Result<bool> {
    if m.fstype == "btrfs" {
        let out = node.run(as_root("btrfs").args(["qgroup", "show", &m.mount_point]))?;
        return Ok(out.success());
    }
    Ok(has_quota_option(m))
}

/// The role services of `k` this node runs.
fn roles_to_stop(k: &Kind, node: &Node) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for role in k.stop {
        // A role that defines the kind must be the node's own; another
        // (the registry on a controller node) is stopped if it is there.
        let runs_here = node.has_role(role) || !k.held_by.contains(role);
        if runs_here && node.exists(&format!("/etc/init.d/stackato-{role}"))? {
            out.push((*role).to_string());
        }
    }
    Ok(out)
}

pub fn bytes(n: u64) -> String {
    const UNITS: [(u32, &str); 4] = [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")];
    for (shift, unit) in UNITS {
        if n >= 1 << shift {
            return format!("{:.1} {unit}", n as f64 / (1u64 << shift) as f64);
        }
    }
    format!("{n} B")
}

fn plan_move(k: &'static Kind, inv: &Invocation) -> Result<Plan> {
    let dest = inv.require("dest")?;
    check_dest(dest)?;
    let nodes: Vec<Node> = nodes::all()
        .into_iter()
        .filter(|n| k.held_by.iter().any(|r| n.has_role(r)))
        .collect();
    if nodes.is_empty() {
        usage!(
            "no selected node has a role holding {} ({})",
            k.name,
            k.held_by.join(", ")
        );
    }
    let now = stackhost_sdk::clock::now();
    let mut moves = Vec::new();
    let mut already = Phase::new("relocate");
    for node in &nodes {
        let (what, m) = preflight(k, node, dest, now)?;
        if what == "already" {
            already.push_step(node, "already", to_json(&m)?);
        } else {
            moves.push((node.clone(), to_json(&m)?));
        }
    }
    let mut plan = Plan::new();
    if !already.is_empty() {
        plan.push(already);
    }
    if moves.is_empty() {
        return Ok(plan);
    }
    let phase = |name: &str| {
        moves.iter().fold(Phase::new(name), |p, (node, payload)| {
            p.step(node, name, payload.clone())
        })
    };
    plan.push(phase("stop"));
    plan.push(phase("copy"));
    plan.push(phase("verify"));
    plan.push(phase("switch"));
    plan.push(phase("switch-back").on_failure());
    plan.push(phase("start").always());
    Ok(plan)
}

impl Plugin for Relocate {
    fn plan(inv: &Invocation) -> Result<Plan> {
        match inv.command() {
            "status" => view::plan_status(),
            "cleanup" => view::plan_cleanup(inv),
            name => match kind(name) {
                Some(k) => plan_move(k, inv),
                None => Err(inv.unknown_command()),
            },
        }
    }

    fn apply(inv: &Invocation, step: &Step) -> Result<Outcome> {
        let node = step.node();
        match step.name() {
            "status" => view::status(&node),
            "cleanup" => view::cleanup(inv, &node, step.payload()),
            name => {
                let m: Move = from_json(step.payload(), "the step's payload")?;
                steps::apply(inv, &node, name, &m)
            }
        }
    }
}

export_plugin!(Relocate);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dest_must_be_plain_and_absolute() {
        for bad in ["relative/x", "/a b", "/a/../etc", "/", "/x\n", "/x#y"] {
            assert!(matches!(check_dest(bad), Err(Error::Usage(_))), "{bad:?}");
        }
        assert!(check_dest("/mnt/ebs/droplets").is_ok());
    }

    #[test]
    fn the_manifest_grants_what_each_kind_runs() {
        let manifest = include_str!("../stackhost.toml");
        for k in KINDS {
            assert!(
                manifest.contains(&format!("name = \"{}\"", k.name)),
                "{}",
                k.name
            );
            assert!(
                manifest.contains(&format!("[\"umount\", \"{}\"]", k.path)),
                "{}",
                k.path
            );
            for role in k.stop {
                for action in ["status", "{choice:stop|start}"] {
                    let entry = format!("[\"/etc/init.d/stackato-{role}\", \"{action}\"]");
                    assert!(manifest.contains(&entry), "{entry}");
                }
            }
        }
    }

    #[test]
    fn every_kind_is_in_the_table_once() {
        let names: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
        assert_eq!(
            names,
            ["services", "droplets", "containers", "docker-registry"]
        );
        assert!(kind("droplets").unwrap().path.ends_with("/droplets"));
        assert_eq!(margin(0), 16 << 20);
    }
}
