//! `newrelic`: the New Relic infrastructure agent on every node, as the
//! guide's "Monitoring" section sets it up, done declaratively: the config
//! (`/etc/newrelic-infra.yml`, mode 0600, holding the license key, which
//! the host hides everywhere it reports), the APT source, the package and
//! its service. A second `install` changes nothing; a new key rewrites
//! only the config and restarts only the service.

use serde::Serialize;
use stackhost_sdk::prelude::*;

struct NewRelic;

const CONFIG: &str = "/etc/newrelic-infra.yml";
const SOURCE: &str = "/etc/apt/sources.list.d/newrelic-infra.list";
const PACKAGE: &str = "newrelic-infra";

/// A YAML double-quoted scalar: everything outside printable ASCII, and
/// `"` and `\`, escaped, so no value can end its line or open another key.
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// The agent's config for one node.
fn config(
    key: &str,
    display_name: &str,
    proxy: Option<&str>,
    node: &str,
    roles: &[String],
) -> String {
    let mut out =
        String::from("# Written by `stackhost run newrelic install`; the license key is secret.\n");
    out.push_str(&format!("license_key: {}\n", quoted(key)));
    out.push_str(&format!("display_name: {}\n", quoted(display_name)));
    if let Some(p) = proxy {
        out.push_str(&format!("proxy: {}\n", quoted(p)));
    }
    out.push_str("custom_attributes:\n");
    out.push_str(&format!("  stackhost_node: {}\n", quoted(node)));
    out.push_str(&format!(
        "  stackhost_roles: {}\n",
        quoted(&roles.join(","))
    ));
    out
}

/// The value of `key:` in the agent's config, unquoted.
fn config_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix(':')?.trim();
        Some(
            v.trim_matches('"')
                .replace("\\\"", "\"")
                .replace("\\\\", "\\"),
        )
    })
}

fn root(program: &str) -> Command {
    Command::new(program)
        .user("root")
        .env("LANG", "C")
        .env("DEBIAN_FRONTEND", "noninteractive")
}

/// The installed version of the package, if it is installed.
fn installed(node: &Node) -> Result<Option<String>> {
    let out = node.run(root("dpkg-query").args(["-W", "-f", "${Status} ${Version}", PACKAGE]))?;
    let text = out.stdout_str();
    Ok(text
        .strip_prefix("install ok installed ")
        .map(|v| v.trim().to_string())
        .filter(|_| out.success()))
}

fn running(node: &Node) -> Result<bool> {
    Ok(node
        .run(root("service").args([PACKAGE, "status"]))?
        .success())
}

fn read(node: &Node, path: &str) -> Result<Option<String>> {
    if node.exists(path)? {
        node.read_to_string(path).map(Some)
    } else {
        Ok(None)
    }
}

#[derive(Serialize)]
struct Installed {
    config_written: bool,
    source_written: bool,
    package_installed: bool,
    service: &'static str,
    version: Option<String>,
}

fn install(inv: &Invocation, node: &Node) -> Result<Outcome> {
    let key = inv.require("license-key")?;
    let me = nodes::inventory()
        .into_iter()
        .find(|n| n.name == node.name())
        .ok_or_else(|| Error::plugin(format!("node {} is not in the inventory", node.name())))?;
    let display_name = match inv.value("display-name-from").unwrap_or("node") {
        "hostname" => me.hostname.clone().unwrap_or_else(|| me.name.clone()),
        _ => me.name.clone(),
    };
    let wanted = config(key, &display_name, inv.value("proxy"), &me.name, &me.roles);
    let config_written = read(node, CONFIG)?.as_deref() != Some(wanted.as_str());
    if config_written {
        node.write_with_mode(CONFIG, &wanted, 0o600)?;
    }
    let mut source_written = false;
    if let Some(line) = inv.value("apt-source") {
        let wanted = format!("{line}\n");
        if read(node, SOURCE)?.as_deref() != Some(wanted.as_str()) {
            node.write_with_mode(SOURCE, &wanted, 0o644)?;
            source_written = true;
        }
    }
    let before = installed(node)?;
    let package_installed = before.is_none();
    if package_installed {
        node.run(root("apt-get").args(["update", "-q"]).live())?
            .check()?;
        node.run(root("apt-get").args(["-y", "install", PACKAGE]).live())?
            .check()?;
    }
    // A new config is read only on a restart; a stopped agent is started.
    let service = if config_written || package_installed {
        node.run(root("service").args([PACKAGE, "restart"]))?
            .check()?;
        "restarted"
    } else if !running(node)? {
        node.run(root("service").args([PACKAGE, "start"]))?
            .check()?;
        "started"
    } else {
        "running"
    };
    let version = if inv.dry_run() {
        before
    } else {
        installed(node)?
    };
    let mut done = Vec::new();
    if config_written {
        done.push(format!("wrote {CONFIG}"));
    }
    if source_written {
        done.push(format!("wrote {SOURCE}"));
    }
    if package_installed {
        done.push(format!("installed {PACKAGE}"));
    }
    if service != "running" {
        done.push(format!("{service} {PACKAGE}"));
    }
    let data = serde_json::to_string(&Installed {
        config_written,
        source_written,
        package_installed,
        service,
        version: version.clone(),
    })
    .map_err(|e| Error::plugin(e.to_string()))?;
    let verb = if inv.dry_run() { "would have " } else { "" };
    Ok(if done.is_empty() {
        Outcome::ok(format!(
            "{PACKAGE} {} installed, configured and running",
            version.unwrap_or_default()
        ))
    } else {
        Outcome::changed(format!("{verb}{}", done.join("; ")))
    }
    .with_data(data))
}

#[derive(Serialize)]
struct Status {
    version: Option<String>,
    running: bool,
    proxy: Option<String>,
    /// Whether the config holds the key given (none: no key given, or no config).
    license_key_matches: Option<bool>,
}

fn status(inv: &Invocation, node: &Node) -> Result<Outcome> {
    let version = installed(node)?;
    let running = version.is_some() && running(node)?;
    let text = read(node, CONFIG)?;
    let proxy = text.as_deref().and_then(|t| config_value(t, "proxy"));
    let license_key_matches = match (inv.value("license-key"), text.as_deref()) {
        (Some(key), Some(t)) => Some(config_value(t, "license_key").as_deref() == Some(key)),
        _ => None,
    };
    let mut parts = vec![match &version {
        Some(v) => format!(
            "{PACKAGE} {v}, {}",
            if running { "running" } else { "stopped" }
        ),
        None => format!("{PACKAGE} not installed"),
    }];
    parts.push(match &proxy {
        Some(p) => format!("proxy {p}"),
        None => "no proxy".into(),
    });
    match license_key_matches {
        Some(true) => parts.push("license key matches".into()),
        Some(false) => parts.push("license key differs".into()),
        None if text.is_none() => parts.push(format!("no {CONFIG}")),
        None => {}
    }
    let data = serde_json::to_string(&Status {
        version,
        running,
        proxy,
        license_key_matches,
    })
    .map_err(|e| Error::plugin(e.to_string()))?;
    Ok(Outcome::ok(parts.join("; ")).with_data(data))
}

fn remove(inv: &Invocation, node: &Node) -> Result<Outcome> {
    let mut done = Vec::new();
    if installed(node)?.is_some() {
        if running(node)? {
            node.run(root("service").args([PACKAGE, "stop"]))?.check()?;
            done.push(format!("stopped {PACKAGE}"));
        }
        node.run(root("apt-get").args(["-y", "purge", PACKAGE]).live())?
            .check()?;
        done.push(format!("purged {PACKAGE}"));
    }
    for path in [CONFIG, SOURCE] {
        if node.exists(path)? {
            node.remove(path)?;
            done.push(format!("removed {path}"));
        }
    }
    let verb = if inv.dry_run() { "would have " } else { "" };
    Ok(if done.is_empty() {
        Outcome::ok("nothing to remove")
    } else {
        Outcome::changed(format!("{verb}{}", done.join("; ")))
    })
}

impl Plugin for NewRelic {
    fn plan(inv: &Invocation) -> Result<Plan> {
        let name = inv.command();
        if !["install", "status", "remove"].contains(&name) {
            return Err(inv.unknown_command());
        }
        if let Some(from) = inv
            .value("display-name-from")
            .filter(|f| !["node", "hostname"].contains(f))
        {
            usage!("--display-name-from takes `node` or `hostname`, not `{from}`");
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
            other => bail!("unknown step `{other}`"),
        }
    }
}

export_plugin!(NewRelic);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_quotes_every_value_so_none_can_add_a_key() {
        let c = config(
            "k\"ey\nproxy: evil",
            "dea-1",
            Some("http://p:3128"),
            "dea-1",
            &["dea".into(), "router".into()],
        );
        assert_eq!(
            c,
            "# Written by `stackhost run newrelic install`; the license key is secret.\n\
             license_key: \"k\\\"ey\\U0000000aproxy: evil\"\n\
             display_name: \"dea-1\"\n\
             proxy: \"http://p:3128\"\n\
             custom_attributes:\n  stackhost_node: \"dea-1\"\n  stackhost_roles: \"dea,router\"\n"
        );
        assert_eq!(c.lines().filter(|l| l.starts_with("proxy:")).count(), 1);
        assert_eq!(config_value(&c, "proxy").as_deref(), Some("http://p:3128"));
        assert_eq!(config_value(&c, "display_name").as_deref(), Some("dea-1"));
    }
}
