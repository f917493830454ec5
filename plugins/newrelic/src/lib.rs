//! `newrelic`: a New Relic agent on every node, as the guide's
//! "Monitoring" section sets it up, done declaratively: the config (mode
//! 0600, holding the license key, which the host hides everywhere it
//! reports), the APT source and its signing key, the package and its
//! service. A second `install` changes nothing; a new key rewrites only
//! the config and restarts only the service. Which agents there are and
//! how their configs are written is `agent.rs`; the source line and the
//! key are `apt.rs`.

mod agent;
mod apt;
mod image;

use agent::{Agent, Settings};
use serde::Serialize;
use stackato::{apt_as_root, to_json};
use stackhost_sdk::prelude::*;

struct NewRelic;

const SOURCE: &str = "/etc/apt/sources.list.d/newrelic-infra.list";
/// apt 2.4 and later make it; the key is not written without it.
const KEYRINGS: &str = "/etc/apt/keyrings";

/// The installed version of `agent`'s package, if it is installed.
fn installed(node: &Node, agent: &Agent) -> Result<Option<String>> {
    let out = node.run(apt_as_root("dpkg-query").args([
        "-W",
        "-f",
        "${Status} ${Version}",
        agent.package,
    ]))?;
    let text = out.stdout_str();
    Ok(text
        .strip_prefix("install ok installed ")
        .map(|v| v.trim().to_string())
        .filter(|_| out.success()))
}

fn running(node: &Node, agent: &Agent) -> Result<bool> {
    Ok(node
        .run(apt_as_root("service").args([agent.service, "status"]))?
        .success())
}

fn read(node: &Node, path: &str) -> Result<Option<String>> {
    if node.exists(path)? {
        node.read_to_string(path).map(Some)
    } else {
        Ok(None)
    }
}

/// The agent `--package` names (checked in `plan`).
fn chosen(inv: &Invocation) -> &'static Agent {
    agent::by_package(inv.value("package").unwrap_or(agent::INFRA.package)).unwrap_or(&agent::INFRA)
}

/// The `--apt-key-file` key, dearmored; `None` when not given (an empty
/// answer at the host's prompt is none too).
fn apt_key(inv: &Invocation) -> Result<Option<Vec<u8>>> {
    match inv.value("apt-key").filter(|k| !k.trim().is_empty()) {
        Some(text) => apt::dearmor(text).map(Some).map_err(Error::Usage),
        None => Ok(None),
    }
}

/// What a step did (`wrote X; installed Y`), or under `--dry-run` what it
/// would have done (`would have written X; installed Y`).
fn summary(inv: &Invocation, done: &[String]) -> String {
    if !inv.dry_run() {
        return done.join("; ");
    }
    let done: Vec<String> = done
        .iter()
        .map(|d| match d.strip_prefix("wrote ") {
            Some(path) => format!("written {path}"),
            None => d.clone(),
        })
        .collect();
    format!("would have {}", done.join("; "))
}

#[derive(Serialize)]
struct Installed {
    package: &'static str,
    config: &'static str,
    config_written: bool,
    source_written: bool,
    key_written: bool,
    package_installed: bool,
    service: &'static str,
    version: Option<String>,
}

fn install(inv: &Invocation, node: &Node) -> Result<Outcome> {
    let agent = chosen(inv);
    let key = inv.require("license-key")?;
    let me = nodes::inventory()
        .into_iter()
        .find(|n| n.name == node.name())
        .ok_or_else(|| Error::plugin(format!("node {} is not in the inventory", node.name())))?;
    let display_name = match inv.value("display-name-from").unwrap_or("node") {
        "hostname" => me.hostname.clone().unwrap_or_else(|| me.name.clone()),
        _ => me.name.clone(),
    };
    let wanted = agent
        .render(&Settings {
            license_key: key,
            display_name: &display_name,
            proxy: inv.value("proxy"),
            node: &me.name,
            roles: &me.roles,
        })
        .map_err(|e| Error::plugin(format!("{} on {}: {e}", agent.config, me.name)))?;
    let mut done = Vec::new();
    // Rewritten when its text differs, or when its mode would let anyone
    // but root read the key.
    let write_config = |done: &mut Vec<String>| -> Result<bool> {
        let changed = read(node, agent.config)?.as_deref() != Some(wanted.as_str())
            || node
                .stat(agent.config)?
                .is_some_and(|m| m.mode & 0o7777 != 0o600);
        if changed {
            node.write_with_mode(agent.config, &wanted, 0o600)?;
            done.push(format!("wrote {}", agent.config));
        }
        Ok(changed)
    };
    let mut config_written = false;
    if !agent.config_after_package {
        config_written = write_config(&mut done)?;
    }
    let key_bytes = apt_key(inv)?;
    let mut source_written = false;
    if let Some(line) = inv.value("apt-source") {
        let line = apt::source_line(line, key_bytes.is_some()).map_err(Error::Usage)?;
        let wanted = format!("{line}\n");
        if read(node, SOURCE)?.as_deref() != Some(wanted.as_str()) {
            node.write_with_mode(SOURCE, &wanted, 0o644)?;
            source_written = true;
            done.push(format!("wrote {SOURCE}"));
        }
    }
    let mut key_written = false;
    if let Some(bytes) = &key_bytes {
        if !node.exists(KEYRINGS)? {
            bail!(
                "{KEYRINGS} is missing on {}: create it (mkdir -m 0755 {KEYRINGS}; apt 2.4 and later have it) and run again",
                me.name
            );
        }
        let current = match node.stat(apt::KEYRING)? {
            Some(meta) => Some((node.read(apt::KEYRING, 1 << 20)?, meta.mode & 0o7777)),
            None => None,
        };
        if current.as_ref() != Some(&(bytes.clone(), 0o644)) {
            node.write_with_mode(apt::KEYRING, bytes, 0o644)?;
            key_written = true;
            done.push(format!("wrote {}", apt::KEYRING));
        }
    }
    let before = installed(node, agent)?;
    let package_installed = before.is_none();
    if package_installed {
        node.run(apt_as_root("apt-get").args(["update", "-q"]).live())?
            .check()
            .map_err(|e| Error::plugin(format!("apt-get update on {}: {e}", me.name)))?;
        node.run(
            apt_as_root("apt-get")
                .args(["-y", "install", agent.package])
                .live(),
        )?
        .check()
        .map_err(|e| Error::plugin(format!("installing {} on {}: {e}", agent.package, me.name)))?;
        done.push(format!("installed {}", agent.package));
    }
    if agent.config_after_package {
        config_written = write_config(&mut done)?;
    }
    // A new config is read only on a restart; a stopped agent is started.
    let service = if config_written || package_installed {
        node.run(apt_as_root("service").args([agent.service, "restart"]))?
            .check()?;
        "restarted"
    } else if !running(node, agent)? {
        node.run(apt_as_root("service").args([agent.service, "start"]))?
            .check()?;
        "started"
    } else {
        "running"
    };
    if service != "running" {
        done.push(format!("{service} {}", agent.service));
    }
    let version = if inv.dry_run() {
        before
    } else {
        installed(node, agent)?
    };
    let data = to_json(&Installed {
        package: agent.package,
        config: agent.config,
        config_written,
        source_written,
        key_written,
        package_installed,
        service,
        version: version.clone(),
    })?;
    Ok(if done.is_empty() {
        Outcome::ok(format!(
            "{} {} installed, configured and running",
            agent.package,
            version.unwrap_or_default()
        ))
    } else {
        Outcome::changed(summary(inv, &done))
    }
    .with_data(data))
}

#[derive(Serialize)]
struct Status {
    package: &'static str,
    version: Option<String>,
    running: bool,
    proxy: Option<String>,
    /// Whether the config holds the key given (none: no key given, or no config).
    license_key_matches: Option<bool>,
}

/// Each agent that is installed or has a config; the infrastructure
/// agent's absence when neither has.
fn status(inv: &Invocation, node: &Node) -> Result<Outcome> {
    let mut found = Vec::new();
    for agent in agent::ALL {
        let version = installed(node, agent)?;
        let text = read(node, agent.config)?;
        if version.is_some() || text.is_some() {
            found.push((agent, version, text));
        }
    }
    if found.is_empty() {
        found.push((&agent::INFRA, None, None));
    }
    let mut parts = Vec::new();
    let mut agents = Vec::new();
    for (agent, version, text) in found {
        let running = version.is_some() && running(node, agent)?;
        let proxy = text.as_deref().and_then(|t| agent.value(t, "proxy"));
        let license_key_matches = match (inv.value("license-key"), text.as_deref()) {
            (Some(key), Some(t)) => Some(agent.value(t, "license_key").as_deref() == Some(key)),
            _ => None,
        };
        parts.push(match &version {
            Some(v) => format!(
                "{} {v}, {}",
                agent.package,
                if running { "running" } else { "stopped" }
            ),
            None => format!("{} not installed", agent.package),
        });
        parts.push(match &proxy {
            Some(p) => format!("proxy {p}"),
            None => "no proxy".into(),
        });
        match license_key_matches {
            Some(true) => parts.push("license key matches".into()),
            Some(false) => parts.push("license key differs".into()),
            None if text.is_none() => parts.push(format!("no {}", agent.config)),
            None => {}
        }
        agents.push(Status {
            package: agent.package,
            version,
            running,
            proxy,
            license_key_matches,
        });
    }
    let data = serde_json::json!({ "agents": agents }).to_string();
    Ok(Outcome::ok(parts.join("; ")).with_data(data))
}

fn remove(inv: &Invocation, node: &Node) -> Result<Outcome> {
    let mut done = Vec::new();
    for agent in agent::ALL {
        if installed(node, agent)?.is_some() {
            if running(node, agent)? {
                node.run(apt_as_root("service").args([agent.service, "stop"]))?
                    .check()?;
                done.push(format!("stopped {}", agent.service));
            }
            node.run(
                apt_as_root("apt-get")
                    .args(["-y", "purge", agent.package])
                    .live(),
            )?
            .check()?;
            done.push(format!("purged {}", agent.package));
        }
        if node.exists(agent.config)? {
            node.remove(agent.config)?;
            done.push(format!("removed {}", agent.config));
        }
    }
    for path in [SOURCE, apt::KEYRING] {
        if node.exists(path)? {
            node.remove(path)?;
            done.push(format!("removed {path}"));
        }
    }
    Ok(if done.is_empty() {
        Outcome::ok("nothing to remove")
    } else {
        Outcome::changed(summary(inv, &done))
    })
}

impl Plugin for NewRelic {
    fn plan(inv: &Invocation) -> Result<Plan> {
        let name = inv.command();
        if !["install", "status", "remove", "image"].contains(&name) {
            return Err(inv.unknown_command());
        }
        if let Some(from) = inv
            .value("display-name-from")
            .filter(|f| !["node", "hostname"].contains(f))
        {
            usage!("--display-name-from takes `node` or `hostname`, not `{from}`");
        }
        if let Some(package) = inv
            .value("package")
            .filter(|p| agent::by_package(p).is_none())
        {
            usage!(
                "--package takes `newrelic-infra` or `newrelic-sysmond`, not `{}`",
                package.escape_default()
            );
        }
        if let Some(line) = inv
            .value("apt-source")
            .filter(|l| l.contains(['\n', '\r']) || !l.starts_with("deb "))
        {
            usage!(
                "--apt-source takes one `deb ...` line, not `{}`",
                line.escape_default()
            );
        }
        let key = apt_key(inv)?;
        match (inv.value("apt-source"), key.is_some()) {
            (Some(line), with_key) => {
                apt::source_line(line, with_key).map_err(Error::Usage)?;
            }
            (None, true) => usage!(
                "--apt-key-file needs --apt-source: the key only checks the repository that line adds"
            ),
            (None, false) => {}
        }
        if name == "image" {
            // The app base image lives on the DEAs; on failure, latest goes
            // back to what it was on the DEAs already done.
            let deas = nodes::with_role("dea");
            ensure!(!deas.is_empty(), "no selected node holds the `dea` role");
            let phase = |p: Phase, n: &Node, step: &str| p.step(n, step, "");
            let image = deas
                .iter()
                .fold(Phase::new("image"), |p, n| phase(p, n, "image"));
            let restore = deas
                .iter()
                .fold(Phase::new("restore").on_failure(), |p, n| {
                    phase(p, n, "restore")
                });
            return Ok(Plan::new().phase(image).phase(restore));
        }
        let nodes = nodes::all();
        ensure!(!nodes.is_empty(), "no node is selected");
        Ok(Plan::new().phase(
            nodes
                .iter()
                .fold(Phase::new(name), |p, n| p.step(n, name, "")),
        ))
    }

    fn apply(inv: &Invocation, step: &Step) -> Result<Outcome> {
        let node = step.node();
        match step.name() {
            "install" => install(inv, &node),
            "status" => status(inv, &node),
            "remove" => remove(inv, &node),
            "image" => {
                let package = inv.value("package").unwrap_or("newrelic-infra");
                let key = apt_key(inv)?;
                let source = match inv.value("apt-source") {
                    Some(line) => {
                        Some(apt::source_line(line, key.is_some()).map_err(Error::Usage)?)
                    }
                    None => None,
                };
                image::image(inv, &node, package, source.as_deref(), key.as_deref())
            }
            "restore" => image::restore(&node),
            other => bail!("unknown step `{other}`"),
        }
    }
}

export_plugin!(NewRelic);
