//! The steps of one node's relocation, in plan order: `stop`, `copy`,
//! `verify`, `switch`; `switch-back` (on failure) and `start` (always);
//! and `already`, when the data is at DEST before the run.

use crate::{Move, bytes, identity, mount_table};
use serde::Serialize;
use stackato::{as_root, role_init_script, to_json, would_have};
use stackhost_sdk::prelude::*;

const FSTAB: &str = "/etc/fstab";

pub fn apply(inv: &Invocation, node: &Node, step: &str, m: &Move) -> Result<Outcome> {
    match step {
        "already" => already(node, m),
        "stop" => stop(inv, node, m),
        "copy" => copy(inv, node, m),
        "verify" => verify(inv, node, m),
        "switch" => switch(inv, node, m),
        "switch-back" => switch_back(inv, node, m),
        "start" => start(inv, node, m),
        other => bail!("unknown step `{other}`"),
    }
}

fn service(role: &str, action: &str) -> Command {
    as_root(&role_init_script(role)).arg(action)
}

fn running(node: &Node, role: &str) -> Result<bool> {
    Ok(node.run(service(role, "status"))?.success())
}

fn fstab(node: &Node) -> Result<String> {
    match node.read_to_string(FSTAB) {
        Ok(t) => Ok(t),
        Err(e) if e.is_not_found() => Ok(String::new()),
        Err(e) => Err(e),
    }
}

/// Whether `text` holds the bind line of `m` (as `fstab_line` writes it,
/// whitespace aside).
fn has_line(text: &str, m: &Move) -> bool {
    let want: Vec<String> = m
        .fstab_line()
        .split_whitespace()
        .map(String::from)
        .collect();
    text.lines()
        .any(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>() == want)
}

/// `text` without the lines this plugin added for `m`.
fn without_line(text: &str, m: &Move) -> String {
    let want: Vec<String> = m
        .fstab_line()
        .split_whitespace()
        .map(String::from)
        .collect();
    let comment = m.fstab_comment_start();
    let mut out: String = text
        .lines()
        .filter(|l| {
            l.split_whitespace().map(String::from).collect::<Vec<_>>() != want
                && *l != comment
                && !l.starts_with(&format!("{comment} ("))
        })
        .collect::<Vec<_>>()
        .join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

fn with_line(text: &str, m: &Move, with_old: bool) -> String {
    let mut out = text.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&format!(
        "{}\n{}\n",
        m.fstab_comment(with_old),
        m.fstab_line()
    ));
    out
}

/// The data is at DEST already: make sure the switch is persisted.
fn already(node: &Node, m: &Move) -> Result<Outcome> {
    let text = fstab(node)?;
    if has_line(&text, m) {
        return Ok(Outcome::ok(format!("{} is already at {}", m.src, m.dest)));
    }
    // Where the old data went is not known here: say only what the line is.
    node.write(FSTAB, with_line(&text, m, false))?;
    Ok(Outcome::changed(format!(
        "{} is already at {}; added its bind mount to {FSTAB}",
        m.src, m.dest
    )))
}

#[derive(Serialize)]
struct Stopped {
    stopped: Vec<String>,
}

fn stop(inv: &Invocation, node: &Node, m: &Move) -> Result<Outcome> {
    let mut stopped = Vec::new();
    for role in &m.roles {
        if running(node, role)? {
            node.run(service(role, "stop"))?.check()?;
            stopped.push(role.clone());
        }
    }
    let data = to_json(&Stopped {
        stopped: stopped.clone(),
    })?;
    Ok(if stopped.is_empty() {
        Outcome::ok("no role using the data was running")
    } else {
        Outcome::changed(would_have(inv, &format!("stopped {}", stopped.join(", "))))
    }
    .with_data(data))
}

fn copy(inv: &Invocation, node: &Node, m: &Move) -> Result<Outcome> {
    log::info(format!(
        "copying {} ({}) to {}",
        m.src,
        bytes(m.size),
        m.dest
    ));
    node.run(
        as_root("rsync")
            .args(["-aHAXS", "--numeric-ids", "--info=progress2"])
            .arg(format!("{}/", m.src))
            .arg(format!("{}/", m.dest))
            .live(),
    )?
    .check()?;
    Ok(Outcome::changed(would_have(
        inv,
        &format!("copied {} ({}) to {}", m.src, bytes(m.size), m.dest),
    )))
}

/// `Number of files: 1,234 (reg: ...)` and `Total file size: 5,678 bytes`
/// of `rsync --stats`.
fn stats(text: &str) -> Option<(u64, u64)> {
    let number = |prefix: &str| {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(prefix)?;
            let digits: String = rest
                .trim()
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == ',')
                .filter(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
    };
    Some((number("Number of files:")?, number("Total file size:")?))
}

/// The itemized changes of `rsync -i --stats`: every line before the
/// statistics that is not blank.
fn itemized(text: &str) -> Vec<&str> {
    text.lines()
        .take_while(|l| !l.starts_with("Number of files:"))
        .filter(|l| !l.trim().is_empty())
        .collect()
}

#[derive(Serialize)]
struct Verified {
    files: u64,
    bytes: u64,
}

fn verify(inv: &Invocation, node: &Node, m: &Move) -> Result<Outcome> {
    if inv.dry_run() {
        return Ok(Outcome::changed(format!(
            "would have checked the copy in {} against {} (rsync --checksum, file count, total size)",
            m.dest, m.src
        )));
    }
    let dry = |from: &str, to: &str, extra: &[&str]| -> Result<String> {
        let out = node
            .run(
                as_root("rsync")
                    .args(["--dry-run", "-aHAXS", "--numeric-ids", "--stats"])
                    .args(extra.iter().copied())
                    .arg(format!("{from}/"))
                    .arg(format!("{to}/")),
            )?
            .check()?;
        Ok(out.stdout_str().into_owned())
    };
    let forward = dry(
        &m.src,
        &m.dest,
        &["--checksum", "--delete", "--itemize-changes"],
    )?;
    let differ = itemized(&forward);
    if !differ.is_empty() {
        let shown: Vec<&str> = differ.iter().take(20).copied().collect();
        bail!(
            "the copy in {} differs from {} in {} entr(y/ies): {}",
            m.dest,
            m.src,
            differ.len(),
            shown.join("; ")
        );
    }
    let backward = dry(&m.dest, &m.src, &[])?;
    let (Some((files, size)), Some((files_dest, size_dest))) = (stats(&forward), stats(&backward))
    else {
        bail!("rsync printed no statistics on node {}", node.name());
    };
    if (files, size) != (files_dest, size_dest) {
        bail!(
            "the copy does not add up: {} holds {files} files and {size} bytes, {} holds {files_dest} files and {size_dest} bytes",
            m.src,
            m.dest
        );
    }
    Ok(Outcome::changed(format!(
        "verified: {files} files, {size} bytes in both, and rsync --checksum finds every file equal"
    ))
    .with_data(to_json(&Verified { files, bytes: size })?))
}

fn switch(inv: &Invocation, node: &Node, m: &Move) -> Result<Outcome> {
    node.rename(&m.src, &m.old)?;
    node.mkdir(&m.src)?;
    node.run(as_root("mount").args(["--bind", &m.dest, &m.src]))?
        .check()?;
    let text = fstab(node)?;
    if !has_line(&text, m) {
        node.write(FSTAB, with_line(&text, m, true))?;
    }
    let verified = node.run(as_root("findmnt").args(["--verify", "--tab-file", FSTAB]))?;
    if !verified.success() {
        bail!(
            "findmnt --verify refuses {FSTAB} on node {} after adding the bind mount: {}",
            node.name(),
            verified.stdout_str().trim()
        );
    }
    if !inv.dry_run() {
        let ids = identity(node, &[&m.src, &m.dest])?;
        ensure!(
            ids.len() == 2 && ids[0] == ids[1],
            "{} on node {} does not show {} after the bind mount",
            m.src,
            node.name(),
            m.dest
        );
    }
    Ok(Outcome::changed(would_have(
        inv,
        &format!(
            "switched: {} is now {} (bind mount, in {FSTAB}); the old data is kept in {}",
            m.src, m.dest, m.old
        ),
    )))
}

/// Undo what `switch` did, whatever part of it happened, looking at the
/// node rather than at step results (a failed step leaves none).
fn switch_back(inv: &Invocation, node: &Node, m: &Move) -> Result<Outcome> {
    let mut done = Vec::new();
    let mounted = mount_table(node)?.iter().any(|e| e.mount_point == m.src);
    if mounted {
        let ids = identity(node, &[&m.src, &m.dest])?;
        if ids.len() == 2 && ids[0] == ids[1] {
            node.run(as_root("umount").arg(&m.src))?.check()?;
            done.push(format!("unmounted {} from {}", m.dest, m.src));
        }
    }
    let text = fstab(node)?;
    let kept = without_line(&text, m);
    if kept != text {
        node.write(FSTAB, &kept)?;
        done.push(format!("removed the bind mount from {FSTAB}"));
    }
    if node.exists(&m.old)? {
        if node.exists(&m.src)? {
            ensure!(
                node.list_dir(&m.src)?.is_empty(),
                "cannot move {} back on node {}: {} is not empty; the old data is untouched in {}",
                m.old,
                node.name(),
                m.src,
                m.old
            );
            node.remove(&m.src)?;
        }
        node.rename(&m.old, &m.src)?;
        done.push(format!("moved {} back to {}", m.old, m.src));
    }
    let partial = node
        .run(as_root("ls").args(["-A", &m.dest]))?
        .stdout_str()
        .trim()
        .to_string();
    let note = if partial.is_empty() {
        String::new()
    } else {
        format!(
            "; the (partial) copy in {} was left for you to inspect or remove",
            m.dest
        )
    };
    Ok(if done.is_empty() {
        Outcome::ok(format!("{} was not switched: nothing to undo{note}", m.src))
    } else {
        Outcome::changed(format!("{}{note}", would_have(inv, &done.join("; "))))
    })
}

fn start(inv: &Invocation, node: &Node, m: &Move) -> Result<Outcome> {
    let mut started = Vec::new();
    for role in &m.roles {
        if !running(node, role)? {
            node.run(service(role, "start"))?.check()?;
            started.push(role.clone());
        }
    }
    Ok(if started.is_empty() {
        Outcome::ok("every role using the data is running")
    } else {
        Outcome::changed(would_have(inv, &format!("started {}", started.join(", "))))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mv() -> Move {
        Move {
            kind: "droplets".into(),
            src: "/var/stackato/data/droplets".into(),
            dest: "/mnt/ebs/droplets".into(),
            old: "/var/stackato/data/droplets.pre-relocate-20261206-013312".into(),
            roles: vec!["controller".into()],
            size: 0,
        }
    }

    #[test]
    fn the_fstab_line_is_added_once_and_removed_with_its_comment() {
        let base = "# UNCONFIGURED FSTAB FOR BASE SYSTEM\nUUID=1 / ext4 defaults 0 1";
        let m = mv();
        assert!(!has_line(base, &m));
        let added = with_line(base, &m, true);
        assert!(has_line(&added, &m));
        assert!(added.ends_with(
            "# stackhost relocate droplets: /var/stackato/data/droplets lives in /mnt/ebs/droplets (old data kept in /var/stackato/data/droplets.pre-relocate-20261206-013312 until `relocate cleanup`)\n/mnt/ebs/droplets /var/stackato/data/droplets none bind 0 0\n"
        ));
        assert_eq!(without_line(&added, &m), format!("{base}\n"));
        let plain = with_line(base, &m, false);
        assert!(plain.ends_with(
            "\n# stackhost relocate droplets: /var/stackato/data/droplets lives in /mnt/ebs/droplets\n/mnt/ebs/droplets /var/stackato/data/droplets none bind 0 0\n"
        ));
        assert_eq!(without_line(&plain, &m), format!("{base}\n"));
        assert!(has_line(
            "/mnt/ebs/droplets\t/var/stackato/data/droplets  none bind 0 0",
            &m
        ));
    }

    #[test]
    fn rsync_statistics_and_changes() {
        let same = "\nNumber of files: 1,234 (reg: 1,000, dir: 230, link: 4)\nNumber of created files: 0\nTotal file size: 5,678,901 bytes\n";
        assert_eq!(stats(same), Some((1234, 5_678_901)));
        assert!(itemized(same).is_empty());
        let differ = ">fc.T...... a/file\n*deleting   extra\n\nNumber of files: 3 (reg: 2, dir: 1)\nTotal file size: 10 bytes\n";
        assert_eq!(
            itemized(differ),
            [">fc.T...... a/file", "*deleting   extra"]
        );
        assert_eq!(stats("nothing"), None);
    }
}
