//! `nagios`: `config` writes Nagios Core object configuration for every
//! node of the inventory (selected or not) onto the Nagios server node,
//! validates it with `nagios4 -v`, puts the previous files back when the
//! checker refuses it, and reloads Nagios when it passes. What the files
//! hold, and which inventory values may go into them, is `config.rs`;
//! `install` (Nagios itself on that server) is `install.rs`.

mod config;
mod install;

use config::{Host, MainConfig, Templates};
use serde::{Deserialize, Serialize};
use stackato::{as_root, from_json, to_json};
use stackhost_sdk::nodes::InventoryNode;
use stackhost_sdk::prelude::*;

const DIR: &str = "/etc/nagios4/conf.d/stackhost";
const NAGIOS_CFG: &str = "/etc/nagios4/nagios.cfg";
const DEBIAN_TEMPLATES: &str = "/etc/nagios4/objects/templates.cfg";
const SYSTEMD: &str = "/run/systemd/system";
const DEFAULT_LOCK_FILE: &str = "/run/nagios4/nagios4.pid";

struct Nagios;

/// What the `config` step needs, decided while planning.
#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    hosts: Vec<Host>,
}

/// The step's result, as `--json` shows it.
#[derive(Debug, Serialize)]
struct Summary<'a> {
    server: &'a str,
    directory: &'static str,
    files_written: Vec<String>,
    files_removed: Vec<String>,
    hosts: usize,
    services: usize,
    templates: &'static str,
    validated: bool,
    reloaded: bool,
}

/// The Nagios server: `--server`, else the first node with role `nagios`,
/// else the first with `core`; it must be selected, since only selected
/// nodes can be written to.
fn server(inv: &Invocation, inventory: &[InventoryNode]) -> Result<Node> {
    let chosen = match inv.value("server") {
        Some(name) => match inventory.iter().find(|n| n.name == name) {
            Some(n) => n,
            None => usage!("--server `{name}` is not a node of the inventory"),
        },
        None => match inventory
            .iter()
            .find(|n| n.has_role("nagios"))
            .or_else(|| inventory.iter().find(|n| n.has_role("core")))
        {
            Some(n) => n,
            None => usage!(
                "no node has the role `nagios` or `core`; name the Nagios server with --server NODE"
            ),
        },
    };
    match nodes::get(&chosen.name) {
        Some(node) => Ok(node),
        None => usage!(
            "the Nagios server `{}` is not among the selected nodes; select it (--nodes {}) or name another with --server",
            chosen.name,
            chosen.name
        ),
    }
}

fn path(file: &str) -> String {
    format!("{DIR}/{file}")
}

/// A file as it was before this run: its bytes and mode, or absent.
struct Previous {
    file: &'static str,
    content: Option<(Vec<u8>, u32)>,
}

fn read_previous(node: &Node, file: &'static str) -> Result<Previous> {
    let p = path(file);
    let content = match node.stat(&p)? {
        Some(meta) => Some((node.read(&p, 16 << 20)?, meta.mode & 0o7777)),
        None => None,
    };
    Ok(Previous { file, content })
}

/// Put back what was there before: the old bytes and mode, or no file.
fn restore(node: &Node, previous: &[Previous]) -> Result<()> {
    for prev in previous {
        match &prev.content {
            Some((bytes, mode)) => node.write_with_mode(&path(prev.file), bytes, *mode)?,
            None => node.remove(&path(prev.file))?,
        }
    }
    Ok(())
}

/// Whether the PID in the lock file is a running Nagios.
fn running_nagios(node: &Node, lock_file: &str) -> Result<Option<u32>> {
    // /var/run is a link to /run on every current distribution; the grant
    // names the real path.
    let lock_file = match lock_file.strip_prefix("/var/run/") {
        Some(rest) => format!("/run/{rest}"),
        None => lock_file.to_string(),
    };
    if !node.exists(&lock_file)? {
        return Ok(None);
    }
    let Ok(pid) = node.read_to_string(&lock_file)?.trim().parse::<u32>() else {
        return Ok(None);
    };
    let out = node.run(as_root("ps").args(["-o", "comm=", "-p", &pid.to_string()]))?;
    let comm = out.stdout_str();
    Ok((out.success() && comm.trim().starts_with("nagios")).then_some(pid))
}

/// Reload Nagios so it reads the new files; says how, or why not.
fn reload(node: &Node, main: &MainConfig) -> Result<(bool, String)> {
    if node.exists(SYSTEMD)? {
        node.run(as_root("systemctl").args(["reload", "nagios4"]))?
            .check()?;
        return Ok((true, "reloaded Nagios (systemctl reload nagios4)".into()));
    }
    let lock_file = main.lock_file.as_deref().unwrap_or(DEFAULT_LOCK_FILE);
    match running_nagios(node, lock_file)? {
        Some(pid) => {
            node.run(as_root("kill").args(["-HUP", &pid.to_string()]))?
                .check()?;
            Ok((true, format!("reloaded Nagios (kill -HUP {pid})")))
        }
        None => Ok((
            false,
            "Nagios is not running; it reads the configuration when it starts".into(),
        )),
    }
}

fn apply_config(inv: &Invocation, node: &Node, payload: &Payload) -> Result<Outcome> {
    let name = node.name();
    if !node.exists(NAGIOS_CFG)? {
        bail!(
            "{NAGIOS_CFG} is missing on {name}: install Nagios there (`stackhost run nagios install --server {name}`) or name another node with --server"
        );
    }
    let main = MainConfig::parse(&node.read_to_string(NAGIOS_CFG)?);
    if !main.reads_dir(DIR) {
        bail!(
            "{NAGIOS_CFG} on {name} has no cfg_dir that includes {DIR}; add `cfg_dir={DIR}` (or `cfg_dir=/etc/nagios4/conf.d`) to it"
        );
    }
    let templates = if main.cfg_files.iter().any(|f| f == DEBIAN_TEMPLATES)
        && node.exists(DEBIAN_TEMPLATES)?
        && config::defines_debian_templates(&node.read_to_string(DEBIAN_TEMPLATES)?)
    {
        Templates::Debian
    } else {
        Templates::Own
    };
    let wanted = config::render(&payload.hosts, templates);
    let services: usize = payload
        .hosts
        .iter()
        .map(|h| config::services(h).len())
        .sum();

    let mut previous = Vec::new();
    for (file, content) in &wanted {
        let prev = read_previous(node, file)?;
        let same = match (&prev.content, content) {
            (Some((old, _)), Some(new)) => old == new.as_bytes(),
            (None, None) => true,
            _ => false,
        };
        if !same {
            previous.push(prev);
        }
    }
    let mut summary = Summary {
        server: name,
        directory: DIR,
        files_written: Vec::new(),
        files_removed: Vec::new(),
        hosts: payload.hosts.len(),
        services,
        templates: match templates {
            Templates::Debian => "generic-host/generic-service (Debian's templates.cfg)",
            Templates::Own => "stackhost-host/stackhost-service (templates.cfg here)",
        },
        validated: false,
        reloaded: false,
    };
    let counts = format!("{} hosts, {services} services", payload.hosts.len());
    let data = |s: &Summary| to_json(s);
    if previous.is_empty() {
        return Ok(Outcome::ok(format!(
            "Nagios configuration in {DIR} is up to date ({counts})"
        ))
        .with_data(data(&summary)?));
    }

    node.mkdir_all(DIR)?;
    for prev in &previous {
        match wanted.iter().find(|(f, _)| *f == prev.file) {
            Some((file, Some(content))) => {
                node.write_with_mode(&path(file), content, 0o644)?;
                summary.files_written.push(file.to_string());
            }
            _ => {
                node.remove(&path(prev.file))?;
                summary.files_removed.push(prev.file.to_string());
            }
        }
    }
    let (write, remove) = if inv.dry_run() {
        ("would write", "would remove")
    } else {
        ("wrote", "removed")
    };
    let mut done = Vec::new();
    if !summary.files_written.is_empty() {
        done.push(format!("{write} {}", summary.files_written.join(", ")));
    }
    if !summary.files_removed.is_empty() {
        done.push(format!("{remove} {}", summary.files_removed.join(", ")));
    }
    let done = format!("{} in {DIR} ({counts})", done.join("; "));

    if inv.dry_run() {
        return Ok(Outcome::changed(format!(
            "{done}; validation (nagios4 -v) and reload not run under --dry-run"
        ))
        .with_data(data(&summary)?));
    }

    let check = node.run(as_root("nagios4").args(["-v", NAGIOS_CFG]))?;
    if !check.success() {
        let errors = config::checker_errors(&check.stdout_str());
        restore(node, &previous)?;
        bail!(
            "nagios4 -v {NAGIOS_CFG} on {name} rejected the new configuration; the previous files are back in place:\n{errors}"
        );
    }
    summary.validated = true;
    let (reloaded, how) = reload(node, &main)?;
    summary.reloaded = reloaded;
    Ok(Outcome::changed(format!("{done}; nagios4 -v passed; {how}")).with_data(data(&summary)?))
}

impl Plugin for Nagios {
    fn plan(inv: &Invocation) -> Result<Plan> {
        let inventory = nodes::inventory();
        match inv.command() {
            "config" => {}
            "install" => {
                let server = server(inv, &inventory)?;
                return Ok(Plan::new().phase(Phase::new("install").step(&server, "install", "")));
            }
            _ => return Err(inv.unknown_command()),
        }
        let server = server(inv, &inventory)?;
        let payload = Payload {
            hosts: config::hosts(&inventory)?,
        };
        let payload = to_json(&payload)?;
        Ok(Plan::new().phase(Phase::new("config").step(&server, "config", payload)))
    }

    fn apply(inv: &Invocation, step: &Step) -> Result<Outcome> {
        match step.name() {
            "config" => {
                let payload: Payload = from_json(step.payload(), "the step's payload")?;
                apply_config(inv, &step.node(), &payload)
            }
            "install" => install::apply(inv, &step.node()),
            other => bail!("unknown step `{other}`"),
        }
    }
}

export_plugin!(Nagios);
