//! `quota enable`: turn quotas on for a filesystem, persisted the modern
//! way (on disk for btrfs; the mount options in /etc/fstab for ext4 and
//! XFS, instead of the guide's edit of an init script).
//!
//! - btrfs: `btrfs quota enable`, then `btrfs quota rescan -w` so usage
//!   numbers are right; the setting lives in the filesystem.
//! - ext4: the guide's remount with journaled user quotas
//!   (`usrjquota=aquota.user,jqfmt=vfsv0`), `quotacheck -cum`, `quotaon
//!   -uv`, then the same options added to the mount's /etc/fstab line.
//!   A kernel without quota support fails at `quotaon`; the error says so
//!   and /etc/fstab is left alone.
//! - XFS: user quotas (`uquota`) can only be turned on when the
//!   filesystem is mounted, so only /etc/fstab changes, and the message
//!   says they take effect at the next mount (or reboot).

use crate::fsinfo::{Mount, qgroups};
use serde::{Deserialize, Serialize};
use stackato::{as_root, to_json, would};
use stackhost_sdk::prelude::*;

const FSTAB: &str = "/etc/fstab";
/// The guide's journaled user quota options for ext4.
const EXT4_OPTIONS: &[&str] = &["usrjquota=aquota.user", "jqfmt=vfsv0"];
const XFS_OPTIONS: &[&str] = &["uquota"];

#[derive(Serialize, Deserialize)]
pub struct EnablePayload {
    /// The mounts to turn quotas on for (btrfs, ext4 or XFS).
    pub mounts: Vec<Mount>,
}

/// Refuse a filesystem `enable` cannot turn quotas on for.
pub fn check_supported(node: &Node, path: &str, mount: &Mount) -> Result<()> {
    match mount.fstype.as_str() {
        "btrfs" | "ext4" | "xfs" => Ok(()),
        other => bail!(
            "{path} on node {} is on {other} ({}), which has no quota support: put the data on btrfs, ext4 or XFS (stackhost run relocate ...)",
            node.name(),
            mount.target
        ),
    }
}

/// `fstab` with `options` added to the options of the line mounting
/// `target`: `Ok(None)` when they are all there already, `Err` when no
/// line mounts `target`.
pub fn add_options(fstab: &str, target: &str, options: &[&str]) -> Result<Option<String>, String> {
    let mut found = false;
    let mut changed = false;
    let lines: Vec<String> = fstab
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 4 || fields[0].starts_with('#') || fields[1] != target {
                return line.to_string();
            }
            found = true;
            let mut opts: Vec<&str> = fields[3]
                .split(',')
                .filter(|o| !o.is_empty() && *o != "defaults")
                .collect();
            let had_defaults = fields[3].split(',').any(|o| o == "defaults");
            let missing: Vec<&str> = options
                .iter()
                .copied()
                .filter(|o| !opts.contains(o))
                .collect();
            if missing.is_empty() {
                return line.to_string();
            }
            changed = true;
            opts.extend(missing);
            let mut joined = opts.join(",");
            if had_defaults {
                joined = format!("defaults,{joined}");
            }
            let mut out = fields.clone();
            out[3] = &joined;
            out.join(" ")
        })
        .collect();
    if !found {
        return Err(format!("no line of {FSTAB} mounts {target}"));
    }
    if !changed {
        return Ok(None);
    }
    let mut text = lines.join("\n");
    text.push('\n');
    Ok(Some(text))
}

/// Add `options` to the mount's fstab line; what happened, for the message.
fn persist(node: &Node, mount: &Mount, options: &[&str]) -> Result<Option<String>> {
    let text = match node.read_to_string(FSTAB) {
        Ok(t) => t,
        Err(e) if e.is_not_found() => String::new(),
        Err(e) => return Err(e),
    };
    match add_options(&text, &mount.target, options) {
        Ok(Some(new)) => {
            node.write(FSTAB, new)?;
            Ok(Some(format!(
                "add {} to {}'s options in {FSTAB}",
                options.join(","),
                mount.target
            )))
        }
        Ok(None) => Ok(None),
        Err(e) => {
            log::warn(format!(
                "node {}: {e}, so the quota options are not persisted: add {} to its options yourself",
                node.name(),
                options.join(",")
            ));
            Ok(None)
        }
    }
}

fn btrfs(inv: &Invocation, node: &Node, mount: &Mount) -> Result<Option<String>> {
    let target = mount.target.as_str();
    if qgroups(node, target)?.is_some() {
        return Ok(None);
    }
    node.run(as_root("btrfs").args(["quota", "enable", target]))?
        .check()?;
    node.run(as_root("btrfs").args(["quota", "rescan", "-w", target]))?
        .check()?;
    let verb = if inv.dry_run() {
        "would turn"
    } else {
        "turned"
    };
    Ok(Some(format!("{verb} btrfs quotas on at {target}")))
}

fn ext4_user_quota_on(node: &Node, target: &str) -> Result<bool> {
    let out = node.run(as_root("quotaon").args(["-p", "-u", target]))?;
    Ok(out.stdout_str().contains(" is on"))
}

fn ext4(inv: &Invocation, node: &Node, mount: &Mount) -> Result<Option<String>> {
    let target = mount.target.as_str();
    let n = node.name();
    if mount.user_quota_option() && ext4_user_quota_on(node, target)? {
        return Ok(persist(node, mount, EXT4_OPTIONS)?.map(|p| would(inv, p)));
    }
    let remount = format!("remount,{}", EXT4_OPTIONS.join(","));
    node.run(as_root("mount").args(["-o", &remount, target]))?
        .check()?;
    node.run(as_root("quotacheck").args(["-cum", target]))?
        .check()?;
    let on = node.run(as_root("quotaon").args(["-uv", target]))?;
    if !on.success() {
        let err = on.stderr_str();
        let why = if err.contains("not supported in kernel") || err.contains("No such process") {
            "this kernel lacks support for Linux user quotas on ext4 (the quota format is not supported in the kernel): use btrfs, whose qgroups work here"
        } else {
            "see quotaon's message"
        };
        bail!(
            "quotaon -uv {target} failed on node {n}: {why}. quotaon said: {}. {target} stays mounted with {} until its next mount; {FSTAB} was not changed",
            err.trim().replace('\n', " / "),
            EXT4_OPTIONS.join(",")
        );
    }
    let mut done = vec![format!(
        "turn user quotas on at {target} (mount -o {remount}; quotacheck -cum; quotaon -uv)"
    )];
    done.extend(persist(node, mount, EXT4_OPTIONS)?);
    Ok(Some(would(inv, done.join("; "))))
}

fn xfs(inv: &Invocation, node: &Node, mount: &Mount) -> Result<Option<String>> {
    if mount.user_quota_option() {
        return Ok(persist(node, mount, XFS_OPTIONS)?.map(|p| would(inv, p)));
    }
    let Some(done) = persist(node, mount, XFS_OPTIONS)? else {
        bail!(
            "{} on node {} has no line in {FSTAB}: XFS turns user quotas on only at mount time, with `uquota`; mount it with that option yourself",
            mount.target,
            node.name()
        );
    };
    Ok(Some(format!(
        "{}; XFS turns user quotas on only when it is mounted: they take effect at {}'s next mount (umount and mount it, or reboot)",
        would(inv, done),
        mount.target
    )))
}

pub fn enable(inv: &Invocation, step: &Step) -> Result<Outcome> {
    let p: EnablePayload = crate::payload(step)?;
    let node = step.node();
    let mut done = Vec::new();
    let mut already = Vec::new();
    for mount in &p.mounts {
        let result = match mount.fstype.as_str() {
            "btrfs" => btrfs(inv, &node, mount)?,
            "ext4" => ext4(inv, &node, mount)?,
            "xfs" => xfs(inv, &node, mount)?,
            other => bail!("{other} has no quota support"),
        };
        match result {
            Some(text) => done.push(text),
            None => already.push(mount.target.clone()),
        }
    }
    let mut message = done.join("; ");
    if !already.is_empty() {
        if !message.is_empty() {
            message.push_str("; ");
        }
        message.push_str(&format!("quotas already on at {}", already.join(", ")));
    }
    let data = to_json(&serde_json::json!({"changed": done, "already": already}))?;
    Ok(if done.is_empty() {
        Outcome::ok(message)
    } else {
        Outcome::changed(message)
    }
    .with_data(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FSTAB_TEXT: &str = "# /etc/fstab: static file system information.\n\
        UUID=1 / ext4 errors=remount-ro 0 1\n\
        /dev/sdb1   /mnt/containers   ext4   defaults   0   2\n\
        /dev/sdc1 /mnt/xfs xfs rw,noatime 0 2\n";

    #[test]
    fn quota_options_go_into_the_mounts_fstab_line_once() {
        let ext4 = add_options(FSTAB_TEXT, "/mnt/containers", EXT4_OPTIONS)
            .unwrap()
            .unwrap();
        assert!(ext4.contains(
            "\n/dev/sdb1 /mnt/containers ext4 defaults,usrjquota=aquota.user,jqfmt=vfsv0 0 2\n"
        ));
        assert!(ext4.starts_with(
            "# /etc/fstab: static file system information.\nUUID=1 / ext4 errors=remount-ro 0 1\n"
        ));
        assert_eq!(
            add_options(&ext4, "/mnt/containers", EXT4_OPTIONS),
            Ok(None)
        );
        let xfs = add_options(FSTAB_TEXT, "/mnt/xfs", XFS_OPTIONS)
            .unwrap()
            .unwrap();
        assert!(xfs.ends_with("\n/dev/sdc1 /mnt/xfs xfs rw,noatime,uquota 0 2\n"));
        assert_eq!(
            add_options(FSTAB_TEXT, "/srv/none", XFS_OPTIONS),
            Err("no line of /etc/fstab mounts /srv/none".to_string())
        );
        assert!(add_options("#/dev/x /mnt/c ext4 defaults 0 2\n", "/mnt/c", XFS_OPTIONS).is_err());
    }
}
