//! The `hello` plugin: the smallest real plugin, and the host's smoke
//! test. `info` reports each node's OS and kernel (read-only); `stamp`
//! leaves a stamp file on each node (mutating, idempotent).

use stackhost_sdk::prelude::*;

const STAMP_DIR: &str = "/var/tmp/stackhost-hello";
const STAMP_FILE: &str = "/var/tmp/stackhost-hello/stamp.txt";
const TOUCHED: &str = "/var/tmp/stackhost-hello/.touched";

struct Hello;

impl Plugin for Hello {
    fn plan(inv: &Invocation) -> Result<Plan> {
        // Each step runs in a fresh instance, so `stamp` carries its
        // message in the payload rather than re-reading the invocation.
        let (phase, payload) = match inv.command() {
            "info" => ("info", String::new()),
            "stamp" => ("stamp", inv.require("message")?.to_owned()),
            _ => return Err(inv.unknown_command()),
        };
        let mut phase = Phase::new(phase);
        for node in nodes::all() {
            phase.push_step(&node, inv.command(), payload.clone());
        }
        Ok(Plan::new().phase(phase))
    }

    fn apply(inv: &Invocation, step: &Step) -> Result<Outcome> {
        match inv.command() {
            "info" => info(step),
            "stamp" => stamp(inv, step),
            _ => Err(inv.unknown_command()),
        }
    }
}

fn info(step: &Step) -> Result<Outcome> {
    let node = step.node();
    let uname = node.run(Command::new("uname").arg("-srm"))?.check()?;
    let os_release = node.read_to_string("/etc/os-release")?;
    let pretty = pretty_name(&os_release).unwrap_or("unknown OS");
    Ok(Outcome::ok(format!(
        "{pretty} · {}",
        uname.stdout_str().trim()
    )))
}

/// `PRETTY_NAME` from os-release(5) text, unquoted.
fn pretty_name(os_release: &str) -> Option<&str> {
    let value = os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))?;
    let value = value.trim();
    let unquoted = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
        .unwrap_or(value);
    Some(unquoted)
}

fn stamp(inv: &Invocation, step: &Step) -> Result<Outcome> {
    let node = step.node();
    let wanted = format!("{}\n", step.payload());
    node.mkdir_all(STAMP_DIR)?;
    // Under --dry-run the directory may not exist yet (mkdir was only
    // recorded), so "not found" just means "not stamped"; a file longer
    // than the stamp (invalid-argument) cannot hold it either.
    let current = match node.read(STAMP_FILE, wanted.len() as u64 + 1) {
        Ok(bytes) => Some(bytes),
        Err(Error::NotFound(_) | Error::InvalidArgument(_)) => None,
        Err(e) => return Err(e),
    };
    if current.as_deref() == Some(wanted.as_bytes()) {
        return Ok(Outcome::ok("already stamped"));
    }
    node.write(STAMP_FILE, &wanted)?;
    node.run(Command::new("touch").arg(TOUCHED))?.check()?;
    let verb = if inv.dry_run() {
        "would write"
    } else {
        "wrote"
    };
    Ok(Outcome::changed(format!("{verb} {STAMP_FILE}")))
}

export_plugin!(Hello);
