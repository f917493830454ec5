//! `os-update`: the guide's "Applying Ubuntu Security Updates" on Debian
//! and Ubuntu nodes. `status` simulates a dist-upgrade and sorts what it
//! would install into security and other upgrades; `enable-unattended`
//! writes the unattended-upgrades switch declaratively; `apply` runs
//! `apt-get update` and then `unattended-upgrade` (security only) or
//! `apt-get -y dist-upgrade` (`--all`), one node at a time by default,
//! with the output shown live, and reports what changed per node;
//! `reboot` (and `apply --reboot`) reboots the nodes that need it one at a
//! time, waiting for each to come back with its roles running before the
//! next one goes down.

use serde::Serialize;
use stackato::{apt_as_root, from_json, role_init_script, role_service, to_json, would_have};
use stackhost_sdk::prelude::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

struct OsUpdate;

const AUTO_UPGRADES: &str = "/etc/apt/apt.conf.d/20auto-upgrades";
const AUTO_REBOOT: &str = "/etc/apt/apt.conf.d/52stackhost-automatic-reboot";
const REBOOT_REQUIRED: &str = "/var/run/reboot-required";
const REBOOT_PKGS: &str = "/var/run/reboot-required.pkgs";

/// What the guide's `dpkg-reconfigure -plow unattended-upgrades` writes.
const AUTO_UPGRADES_TEXT: &str = "// Written by `stackhost run os-update enable-unattended` (what
// `dpkg-reconfigure -plow unattended-upgrades` sets): refresh the package
// lists and install security upgrades every day.
APT::Periodic::Update-Package-Lists \"1\";
APT::Periodic::Unattended-Upgrade \"1\";
";

const AUTO_REBOOT_TEXT: &str =
    "// Written by `stackhost run os-update enable-unattended --allow-automatic-reboot`.
Unattended-Upgrade::Automatic-Reboot \"true\";
";

/// One package an upgrade would install or did install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Upgrade {
    name: String,
    /// The installed version, none for a new package.
    from: Option<String>,
    to: String,
    /// Where the new version comes from, as apt says (`Debian-Security:12/stable-security`).
    origin: String,
}

impl Upgrade {
    fn is_security(&self) -> bool {
        self.origin.to_ascii_lowercase().contains("security")
    }

    fn short(&self) -> String {
        match &self.from {
            Some(from) => format!("{} {from} -> {}", self.name, self.to),
            None => format!("{} (new) {}", self.name, self.to),
        }
    }
}

/// The `Inst` lines of `apt-get -s dist-upgrade`:
/// `Inst NAME [OLD] (NEW ORIGIN [ARCH])`.
fn parse_simulation(text: &str) -> Vec<Upgrade> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("Inst ")?;
            let (name, rest) = rest.split_once(' ')?;
            let (from, rest) = match rest.strip_prefix('[') {
                Some(r) => {
                    let (old, r) = r.split_once(']')?;
                    (Some(old.to_string()), r.trim_start())
                }
                None => (None, rest),
            };
            let inner = rest.strip_prefix('(')?;
            let inner = inner.rsplit_once(')').map_or(inner, |(i, _)| i);
            let (to, origin) = inner.split_once(' ').unwrap_or((inner, ""));
            let origin = origin
                .rsplit_once(" [")
                .map_or(origin, |(o, _)| o)
                .to_string();
            Some(Upgrade {
                name: name.to_string(),
                from,
                to: to.to_string(),
                origin,
            })
        })
        .collect()
}

/// `dpkg-query -W` output: package name to version.
fn parse_installed(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let (name, version) = l.split_once(' ')?;
            (!version.is_empty()).then(|| (name.to_string(), version.to_string()))
        })
        .collect()
}

/// What changed between two `dpkg-query -W` listings.
fn changed(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<Upgrade> {
    after
        .iter()
        .filter(|(name, v)| before.get(*name) != Some(*v))
        .map(|(name, v)| Upgrade {
            name: name.clone(),
            from: before.get(name).cloned(),
            to: v.clone(),
            origin: String::new(),
        })
        .collect()
}

/// `out` if apt succeeded; otherwise an error that says plainly when
/// another package manager holds apt's lock (apt and unattended-upgrade
/// both refuse then, the latter on stdout).
fn apt_check(node: &Node, out: Output) -> Result<Output> {
    if out.success() {
        return Ok(out);
    }
    let text = format!("{}\n{}", out.stdout_str(), out.stderr_str());
    if let Some(line) = text
        .lines()
        .find(|l| l.contains("lock") && (l.contains("acquire") || l.contains("Could not get")))
    {
        bail!(
            "apt's lock on node {} is held by another process (another package manager is \
             running; nothing was installed here): {}",
            node.name(),
            line.trim()
        );
    }
    out.check()
}

fn simulate(node: &Node) -> Result<Vec<Upgrade>> {
    let out = node
        .run(apt_as_root("apt-get").args(["-s", "-q", "dist-upgrade"]))?
        .check()?;
    Ok(parse_simulation(&out.stdout_str()))
}

fn installed(node: &Node) -> Result<BTreeMap<String, String>> {
    let out = node
        .run(apt_as_root("dpkg-query").args(["-W", "-f", "${Package} ${Version}\\n"]))?
        .check()?;
    Ok(parse_installed(&out.stdout_str()))
}

#[derive(Debug, Serialize)]
struct Reboot {
    required: bool,
    /// The packages that asked for it (`reboot-required.pkgs`).
    packages: Vec<String>,
}

fn reboot(node: &Node) -> Result<Reboot> {
    let required = node.exists(REBOOT_REQUIRED)?;
    let packages = if node.exists(REBOOT_PKGS)? {
        node.read_to_string(REBOOT_PKGS)?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    } else {
        Vec::new()
    };
    Ok(Reboot { required, packages })
}

#[derive(Debug, Serialize)]
struct Kernel {
    running: String,
    /// The newest `vmlinuz-*` in /boot, if /boot has any (a container has none).
    newest_installed: Option<String>,
}

/// Compare Debian-ish versions well enough for kernel releases: numbers
/// as numbers, the rest as text.
fn version_key(v: &str) -> Vec<(u64, String)> {
    v.split(['.', '-', '+', '~'])
        .map(|part| {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            (
                digits.parse().unwrap_or(0),
                part[digits.len()..].to_string(),
            )
        })
        .collect()
}

fn kernel(node: &Node) -> Result<Kernel> {
    let running = node
        .run(Command::new("uname").arg("-r"))?
        .check()?
        .stdout_str()
        .trim()
        .to_string();
    let newest_installed = if node.exists("/boot")? {
        node.list_dir("/boot")?
            .into_iter()
            .filter_map(|e| e.name.strip_prefix("vmlinuz-").map(String::from))
            .max_by_key(|v| version_key(v))
    } else {
        None
    };
    Ok(Kernel {
        running,
        newest_installed,
    })
}

fn unattended_enabled(node: &Node) -> Result<bool> {
    if !node.exists(AUTO_UPGRADES)? {
        return Ok(false);
    }
    let text = node.read_to_string(AUTO_UPGRADES)?;
    Ok(text.lines().any(|l| {
        let l = l.trim();
        !l.starts_with("//")
            && l.starts_with("APT::Periodic::Unattended-Upgrade")
            && (l.contains("\"1\"") || l.contains("\"true\""))
    }))
}

#[derive(Debug, Serialize)]
struct Status {
    security: Vec<Upgrade>,
    other: Vec<Upgrade>,
    reboot: Reboot,
    kernel: Kernel,
    unattended_upgrades: bool,
}

fn names(list: &[Upgrade]) -> String {
    list.iter()
        .map(|u| u.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn status(node: &Node) -> Result<Outcome> {
    let (security, other): (Vec<_>, Vec<_>) =
        simulate(node)?.into_iter().partition(Upgrade::is_security);
    let st = Status {
        security,
        other,
        reboot: reboot(node)?,
        kernel: kernel(node)?,
        unattended_upgrades: unattended_enabled(node)?,
    };
    let mut parts = vec![format!(
        "{} security, {} other upgrade(s) pending",
        st.security.len(),
        st.other.len()
    )];
    if !st.security.is_empty() {
        parts.push(format!("security: {}", names(&st.security)));
    }
    if st.reboot.required {
        parts.push(if st.reboot.packages.is_empty() {
            "reboot required".to_string()
        } else {
            format!("reboot required by {}", st.reboot.packages.join(", "))
        });
    }
    match &st.kernel.newest_installed {
        Some(newest) if version_key(newest) > version_key(&st.kernel.running) => parts.push(
            format!("kernel {} running, {newest} installed", st.kernel.running),
        ),
        _ => {}
    }
    parts.push(format!(
        "unattended-upgrades {}",
        if st.unattended_upgrades { "on" } else { "off" }
    ));
    let data = to_json(&st)?;
    Ok(Outcome::ok(parts.join("; ")).with_data(data))
}

fn enable_unattended(inv: &Invocation, node: &Node) -> Result<Outcome> {
    let mut done = Vec::new();
    let current = if node.exists(AUTO_UPGRADES)? {
        Some(node.read_to_string(AUTO_UPGRADES)?)
    } else {
        None
    };
    if current.as_deref() != Some(AUTO_UPGRADES_TEXT) {
        node.write_with_mode(AUTO_UPGRADES, AUTO_UPGRADES_TEXT, 0o644)?;
        done.push(format!("wrote {AUTO_UPGRADES}"));
    }
    let reboot_on = node.exists(AUTO_REBOOT)?;
    if inv.flag("allow-automatic-reboot") {
        if !reboot_on || node.read_to_string(AUTO_REBOOT)? != AUTO_REBOOT_TEXT {
            node.write_with_mode(AUTO_REBOOT, AUTO_REBOOT_TEXT, 0o644)?;
            done.push(format!("wrote {AUTO_REBOOT} (automatic reboots on)"));
        }
    } else if reboot_on {
        node.remove(AUTO_REBOOT)?;
        done.push(format!(
            "removed {AUTO_REBOOT} (automatic reboots need --allow-automatic-reboot)"
        ));
    }
    Ok(if done.is_empty() {
        Outcome::ok("unattended security upgrades already on")
    } else {
        Outcome::changed(would_have(inv, done.join("; ")))
    })
}

#[derive(Debug, Serialize)]
struct Applied {
    upgraded: Vec<Upgrade>,
    reboot: Reboot,
}

fn apply(inv: &Invocation, node: &Node) -> Result<Outcome> {
    let all = inv.flag("all");
    // The flags win; else what the inventory gives this node.
    let listed = nodes::inventory()
        .into_iter()
        .find(|n| n.name == node.name());
    let http_proxy = inv
        .value("http-proxy")
        .map(String::from)
        .or_else(|| listed.as_ref().and_then(|n| n.http_proxy.clone()));
    let https_proxy = inv
        .value("https-proxy")
        .map(String::from)
        .or_else(|| listed.as_ref().and_then(|n| n.https_proxy.clone()));
    let proxied = |mut cmd: Command| {
        if let Some(p) = &http_proxy {
            cmd = cmd.env("http_proxy", p);
        }
        if let Some(p) = &https_proxy {
            cmd = cmd.env("https_proxy", p);
        }
        cmd
    };
    if inv.dry_run() {
        // Nothing is installed: say what would be, from the simulation of
        // the package lists as they are now.
        node.run(proxied(apt_as_root("apt-get").arg("update")))?;
        let pending: Vec<Upgrade> = simulate(node)?
            .into_iter()
            .filter(|u| all || u.is_security())
            .collect();
        let list: Vec<String> = pending.iter().map(Upgrade::short).collect();
        let data = to_json(&Applied {
            upgraded: pending,
            reboot: reboot(node)?,
        })?;
        return Ok(if list.is_empty() {
            Outcome::ok("nothing to upgrade (as the package lists stand now)")
        } else {
            Outcome::changed(format!("would upgrade {}", list.join(", ")))
        }
        .with_data(data));
    }
    let before = installed(node)?;
    // Error-Mode=any: a source that cannot be fetched is an error, not a
    // warning over stale package lists.
    let update = apt_as_root("apt-get").args(["update", "-q", "-o", "APT::Update::Error-Mode=any"]);
    apt_check(node, node.run(proxied(update).live())?)?;
    let upgrade = if all {
        apt_as_root("apt-get").args([
            "-y",
            "-q",
            "-o",
            "Dpkg::Options::=--force-confdef",
            "-o",
            "Dpkg::Options::=--force-confold",
            "dist-upgrade",
        ])
    } else {
        apt_as_root("unattended-upgrade").arg("-d")
    };
    apt_check(node, node.run(proxied(upgrade).live())?)?;
    let upgraded = changed(&before, &installed(node)?);
    let reboot = reboot(node)?;
    let mut message = if upgraded.is_empty() {
        "nothing to upgrade".to_string()
    } else {
        format!(
            "upgraded {}",
            upgraded
                .iter()
                .map(Upgrade::short)
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    if reboot.required {
        message.push_str("; a reboot is now required");
    }
    let outcome = if upgraded.is_empty() {
        Outcome::ok(message)
    } else {
        Outcome::changed(message)
    };
    let data = to_json(&Applied { upgraded, reboot })?;
    Ok(outcome.with_data(data))
}

/// How long a node is given to come back from a reboot, roles running,
/// unless `--wait` says otherwise.
const DEFAULT_WAIT: Duration = Duration::from_secs(600);

/// `--wait` as `90s`, `10m`, `1h` or plain seconds.
fn parse_wait(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (digits, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = digits.parse().ok()?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        _ => return None,
    };
    (secs > 0 && secs <= 24 * 3600).then(|| Duration::from_secs(secs))
}

fn wait_of(inv: &Invocation) -> Result<Duration> {
    match inv.value("wait") {
        None => Ok(DEFAULT_WAIT),
        Some(w) => parse_wait(w).ok_or_else(|| {
            Error::Usage(format!(
                "--wait `{w}` is not a duration from 1s to 24h (for example 90s, 10m, 1h)"
            ))
        }),
    }
}

/// The node's roles that have a Stackato service (`/etc/init.d/stackato-ROLE`).
fn role_services(node: &Node) -> Result<Vec<String>> {
    let mut services = Vec::new();
    for role in node.roles() {
        let service = role_service(role);
        if node.exists(&role_init_script(role))? {
            services.push(service);
        }
    }
    Ok(services)
}

fn service(name: &str, action: &str) -> Command {
    Command::new("service")
        .args([name, action])
        .user("root")
        .env("LANG", "C")
}

/// What a reboot did, as data.
#[derive(Debug, Serialize)]
struct Rebooted {
    rebooted: bool,
    /// Why (the packages that asked for it), or why not.
    reason: String,
    down_ms: u64,
    back_ms: u64,
    /// The role services stopped before and found running after.
    roles: Vec<String>,
}

/// Reboot `node` if it needs it (or `always`), optionally stopping its
/// role services first, then wait until it is back and every role service
/// runs again, all within `wait`.
fn reboot_node(inv: &Invocation, node: &Node, always: bool) -> Result<Outcome> {
    let wait = wait_of(inv)?;
    let needed = reboot(node)?;
    if !needed.required && !always {
        let data = Rebooted {
            rebooted: false,
            reason: "no reboot required".into(),
            down_ms: 0,
            back_ms: 0,
            roles: Vec::new(),
        };
        return Ok(Outcome::ok("no reboot required").with_data(to_json(&data)?));
    }
    if node.is_local() {
        // Rebooting the machine that runs stackhost would end the run.
        return Ok(Outcome::skipped(
            "needs a reboot, but this is the machine stackhost runs on: reboot it yourself once \
             the run is done",
        ));
    }
    let reason = match (needed.required, needed.packages.is_empty()) {
        (true, false) => format!("required by {}", needed.packages.join(", ")),
        (true, true) => "required".to_string(),
        (false, _) => "asked for (--always)".to_string(),
    };
    let services = role_services(node)?;
    let stop = inv.flag("stop-roles");
    if stop {
        for s in &services {
            node.run(service(s, "stop"))?.check()?;
        }
    }
    let started = Instant::now();
    let r = node.reboot(wait)?;
    if r.recorded() {
        let stopped = if stop && !services.is_empty() {
            format!("stop {}, then ", services.join(", "))
        } else {
            String::new()
        };
        return Ok(Outcome::changed(format!(
            "would {stopped}reboot ({reason}) and wait up to {}s for it and its roles",
            wait.as_secs()
        )));
    }
    // The roles start with the node; wait for each to say it runs.
    let mut pending: Vec<&String> = services.iter().collect();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for s in pending {
            if !node.run(service(s, "status"))?.success() {
                still.push(s);
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if started.elapsed() >= wait {
            let names: Vec<&str> = pending.iter().map(|s| s.as_str()).collect();
            bail!(
                "node {} came back from its reboot, but {} did not run within {}s",
                node.name(),
                names.join(", "),
                wait.as_secs()
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let back = r.back();
    let mut message = format!("rebooted ({reason}); back after {:.1}s", back.as_secs_f64());
    if !services.is_empty() {
        message.push_str(&format!("; running again: {}", services.join(", ")));
    }
    let data = Rebooted {
        rebooted: true,
        reason,
        down_ms: r.down().as_millis() as u64,
        back_ms: back.as_millis() as u64,
        roles: services,
    };
    Ok(Outcome::changed(message).with_data(to_json(&data)?))
}

/// `apply --reboot`: the upgrade, then the reboot if the node now needs
/// one; the data holds both (`rebooted` added to apply's).
fn apply_then_reboot(inv: &Invocation, node: &Node) -> Result<Outcome> {
    let applied = apply(inv, node)?;
    let (message, rebooted) = if inv.dry_run() && !reboot(node)?.required {
        (
            "then would reboot if the upgrade asks for it".to_string(),
            serde_json::Value::Null,
        )
    } else {
        let r = reboot_node(inv, node, false)?;
        let data = match r.data() {
            Some(d) => from_json(d, "the reboot step's data")?,
            None => serde_json::Value::Null,
        };
        (r.message().to_string(), data)
    };
    let mut data: serde_json::Value = match applied.data() {
        Some(d) => from_json(d, "the upgrade step's data")?,
        None => serde_json::json!({}),
    };
    if let Some(map) = data.as_object_mut() {
        map.insert("rebooted".into(), rebooted.clone());
    }
    let message = format!("{}; {message}", applied.message());
    let changed = applied.status() == stackhost_sdk::Status::Changed
        || rebooted.get("rebooted") == Some(&serde_json::Value::Bool(true));
    let outcome = if changed {
        Outcome::changed(message)
    } else {
        Outcome::ok(message)
    };
    Ok(outcome.with_data(to_json(&data)?))
}

impl Plugin for OsUpdate {
    fn plan(inv: &Invocation) -> Result<Plan> {
        let name = inv.command();
        if !["status", "enable-unattended", "apply", "reboot"].contains(&name) {
            return Err(inv.unknown_command());
        }
        if name == "reboot" || inv.flag("reboot") {
            wait_of(inv)?;
        }
        let mut nodes = nodes::all();
        ensure!(!nodes.is_empty(), "no node is selected");
        // The machine stackhost runs on goes last (and is never rebooted).
        nodes.sort_by_key(Node::is_local);
        let phase = nodes
            .iter()
            .fold(Phase::new(name), |p, n| p.step(n, name, ""));
        Ok(Plan::new().phase(phase))
    }

    fn apply(inv: &Invocation, step: &Step) -> Result<Outcome> {
        let node = step.node();
        match step.name() {
            "status" => status(&node),
            "enable-unattended" => enable_unattended(inv, &node),
            "apply" if inv.flag("reboot") => apply_then_reboot(inv, &node),
            "apply" => apply(inv, &node),
            "reboot" => reboot_node(inv, &node, inv.flag("always")),
            other => bail!("unknown step `{other}`"),
        }
    }
}

export_plugin!(OsUpdate);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simulated_upgrade_is_sorted_into_security_and_other() {
        let text = "NOTE: This is only a simulation!\n\
            Inst libssl3 [3.0.11-1~deb12u1] (3.0.13-1~deb12u1 Debian-Security:12/stable-security [amd64])\n\
            Inst tzdata [2024a-0+deb12u1] (2025b-0+deb12u1 Debian:12.11/stable [all])\n\
            Inst newdep (1.2-3 Debian:12.11/stable [amd64])\n\
            Conf libssl3 (3.0.13-1~deb12u1 Debian-Security:12/stable-security [amd64])\n";
        let u = parse_simulation(text);
        assert_eq!(u.len(), 3);
        assert_eq!(
            u[0],
            Upgrade {
                name: "libssl3".into(),
                from: Some("3.0.11-1~deb12u1".into()),
                to: "3.0.13-1~deb12u1".into(),
                origin: "Debian-Security:12/stable-security".into(),
            }
        );
        assert!(u[0].is_security() && !u[1].is_security());
        assert_eq!(u[2].from, None);
        assert_eq!(u[2].short(), "newdep (new) 1.2-3");
    }

    #[test]
    fn installed_versions_and_what_changed() {
        let before = parse_installed("a 1.0\nb 2.0\n");
        let after = parse_installed("a 1.1\nb 2.0\nc 0.1\n");
        let c = changed(&before, &after);
        let shown: Vec<String> = c.iter().map(Upgrade::short).collect();
        assert_eq!(shown, ["a 1.0 -> 1.1", "c (new) 0.1"]);
    }

    #[test]
    fn waits_are_durations_within_a_day() {
        assert_eq!(parse_wait("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_wait("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_wait("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_wait("2h"), Some(Duration::from_secs(7200)));
        for bad in [
            "",
            "0",
            "abc",
            "10x",
            "25h",
            "-1m",
            "1.5m",
            "99999999999999999999h",
        ] {
            assert_eq!(parse_wait(bad), None, "{bad}");
        }
    }

    #[test]
    fn kernel_versions_compare_by_number() {
        assert!(version_key("6.1.0-21-amd64") > version_key("6.1.0-9-amd64"));
        assert!(version_key("6.10.0-1-amd64") > version_key("6.9.12-1-amd64"));
    }
}
