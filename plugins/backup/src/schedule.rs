//! `backup schedule`: the cron line that runs an export on the
//! filesystem node.

use crate::artifact::names_file;
use crate::core_node;
use stackhost_sdk::prelude::*;

const CRON_FILE: &str = "/etc/cron.d/stackhost-backup";

/// The node scheduled exports run on: the guide's filesystem node (the
/// core node when no node holds that role).
pub(crate) fn schedule_node() -> Result<Node> {
    nodes::with_role("filesystem")
        .into_iter()
        .next()
        .map_or_else(core_node, Ok)
}

/// A cron schedule: five fields of digits, `*`, `/`, `,`, `-` or names.
pub(crate) fn check_cron(at: &str) -> Result<()> {
    let fields: Vec<&str> = at.split_whitespace().collect();
    let ok = fields.len() == 5
        && fields.iter().all(|f| {
            f.chars()
                .all(|c| c.is_ascii_alphanumeric() || "*/,-".contains(c))
        });
    ensure!(
        ok,
        "`{at}` is not a cron schedule (five fields, e.g. \"0 3 * * *\")"
    );
    Ok(())
}

/// Quote a word for sh, and escape `%`, which cron turns into a newline.
fn cron_word(w: &str) -> String {
    let plain = !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@".contains(c));
    let quoted = if plain {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    };
    quoted.replace('%', r"\%")
}

pub(crate) fn schedule(inv: &Invocation, step: &Step) -> Result<Outcome> {
    let node = step.node();
    let current = match node.read_to_string(CRON_FILE) {
        Ok(text) => Some(text),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e),
    };
    if inv.flag("list") {
        let entries: Vec<&str> = current
            .as_deref()
            .unwrap_or("")
            .lines()
            .filter(|l| l.contains(" root "))
            .collect();
        return Ok(Outcome::ok(if entries.is_empty() {
            format!("no export is scheduled on {}", node.name())
        } else {
            format!("on {} ({CRON_FILE}): {}", node.name(), entries.join("; "))
        }));
    }
    if inv.flag("remove") {
        if current.is_none() {
            return Ok(Outcome::ok(format!(
                "no export is scheduled on {}",
                node.name()
            )));
        }
        node.remove(CRON_FILE)?;
        return Ok(Outcome::changed(format!(
            "removed {CRON_FILE} on {}",
            node.name()
        )));
    }
    let dest = inv
        .value("dest")
        .ok_or_else(|| Error::plugin("schedule needs DEST (or --list / --remove)"))?;
    ensure!(
        dest.starts_with('/'),
        "DEST must be an absolute path on {}",
        node.name()
    );
    let at = inv.require("at")?;
    check_cron(at)?;
    if !node.exists("/usr/sbin/cron")? {
        let systemd = node.exists("/run/systemd/system")?;
        bail!(
            "cron is not installed on {}{}; install it (apt-get install cron)",
            node.name(),
            if systemd {
                " (systemd timers are not built yet)"
            } else {
                ""
            }
        );
    }
    let mut words = vec![
        inv.require("stackhost")?.to_string(),
        "run".into(),
        "backup".into(),
        "export".into(),
        "--cluster".into(),
    ];
    if names_file(dest) {
        // The same file every time: each run replaces the last one's
        // export, which stays in place until the new one is complete.
        words.push("--force".into());
    }
    if let Some(inventory) = inv.value("inventory-file") {
        words.extend(["--inventory".into(), inventory.to_string()]);
    }
    words.push(dest.to_string());
    let command: Vec<String> = words.iter().map(|w| cron_word(w)).collect();
    let text = format!(
        "# Scheduled export, installed by `stackhost run backup schedule`;\n\
         # remove it with `stackhost run backup schedule --remove`.\n\
         SHELL=/bin/sh\n\
         PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
         {at} root {}\n",
        command.join(" ")
    );
    if current.as_deref() == Some(text.as_str()) {
        return Ok(Outcome::ok(format!(
            "already scheduled on {}: {at}",
            node.name()
        )));
    }
    node.write_with_mode(CRON_FILE, &text, 0o644)?;
    let verb = if inv.dry_run() {
        "would schedule"
    } else {
        "scheduled"
    };
    Ok(Outcome::changed(format!(
        "{verb} the export on {} at `{at}` into {dest} ({CRON_FILE})",
        node.name()
    )))
}
