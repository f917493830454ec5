//! `nagios install`: Nagios Core and the monitoring plugins its generated
//! checks run, installed on the Nagios server from the node's own APT
//! sources, enabled at boot and started. Each part is probed first
//! (read-only, so `--dry-run` sees the node as it is) and done only when
//! missing: a second run is `ok`.

use serde::Serialize;
use stackato::{apt_as_root, to_json, would_have};
use stackhost_sdk::prelude::*;

/// What `config` needs on the server: the daemon with `nagios4 -v`
/// (nagios4-core, which brings nagios4-common and its init script) and
/// the check programs it writes commands for (check_ssh, check_tcp,
/// check_http: monitoring-plugins-basic). Debian's `nagios4` and
/// `monitoring-plugins` would add the CGI web interface with Apache and
/// PHP, and the plugins with heavy dependencies, none of which the
/// generated configuration uses.
pub const PACKAGES: [&str; 2] = ["nagios4-core", "monitoring-plugins-basic"];
const SERVICE: &str = "nagios4";
const SYSTEMD: &str = "/run/systemd/system";
/// Where Debian's default runlevel keeps its start links.
const RUNLEVEL_DIR: &str = "/etc/rc2.d";

/// The installed version of `package`, if it is installed.
fn installed(node: &Node, package: &str) -> Result<Option<String>> {
    let out =
        node.run(apt_as_root("dpkg-query").args(["-W", "-f", "${Status} ${Version}", package]))?;
    let text = out.stdout_str();
    Ok(text
        .strip_prefix("install ok installed ")
        .map(|v| v.trim().to_string())
        .filter(|_| out.success()))
}

/// The version APT would install from the node's sources, from
/// `apt-cache policy` (which prints nothing for a name no source knows).
fn candidate(policy: &str) -> Option<&str> {
    policy
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate:"))
        .map(str::trim)
        .filter(|v| !v.is_empty() && *v != "(none)")
}

/// How the node starts services at boot.
enum Boot {
    Enabled,
    /// Stop links only (`update-rc.d disable`), or systemd says disabled.
    Disabled,
    /// No links at all.
    Missing,
}

fn boot(node: &Node) -> Result<Boot> {
    if node.exists(SYSTEMD)? {
        let out = node.run(apt_as_root("systemctl").args(["is-enabled", SERVICE]))?;
        return Ok(if out.success() {
            Boot::Enabled
        } else {
            Boot::Disabled
        });
    }
    if !node.exists(RUNLEVEL_DIR)? {
        return Ok(Boot::Missing);
    }
    let links: Vec<String> = node
        .list_dir(RUNLEVEL_DIR)?
        .into_iter()
        .map(|e| e.name)
        .filter(|n| n.len() > 3 && &n[3..] == SERVICE)
        .collect();
    Ok(if links.iter().any(|n| n.starts_with('S')) {
        Boot::Enabled
    } else if links.is_empty() {
        Boot::Missing
    } else {
        Boot::Disabled
    })
}

/// The step's result, as `--json` shows it.
#[derive(Serialize)]
struct Installed {
    server: String,
    packages: Vec<Package>,
    enabled_now: bool,
    started_now: bool,
}

#[derive(Serialize)]
struct Package {
    name: &'static str,
    version: Option<String>,
    installed_now: bool,
}

pub fn apply(inv: &Invocation, node: &Node) -> Result<Outcome> {
    let name = node.name();
    let mut before = Vec::new();
    for package in PACKAGES {
        before.push((package, installed(node, package)?));
    }
    let missing: Vec<&str> = before
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(p, _)| *p)
        .collect();
    let mut done = Vec::new();
    if !missing.is_empty() {
        node.run(apt_as_root("apt-get").args(["update", "-q"]).live())?
            .check()
            .map_err(|e| Error::plugin(format!("apt-get update on {name}: {e}")))?;
        for package in &missing {
            let policy = node.run(apt_as_root("apt-cache").args(["policy", package]))?;
            if candidate(&policy.stdout_str()).is_none() {
                let stale = if inv.dry_run() {
                    " (the package lists were not refreshed under --dry-run)"
                } else {
                    ""
                };
                bail!(
                    "{package} cannot be installed on {name}: none of its APT sources offers it{stale}; add a source that has it (Debian's main does) to {name}'s /etc/apt/sources.list, or name another node with --server"
                );
            }
        }
        // Both names, installed or not, so the grant can name the exact
        // command line.
        node.run(
            apt_as_root("apt-get")
                .args(["-y", "install"])
                .args(PACKAGES)
                .live(),
        )?
        .check()
        .map_err(|e| Error::plugin(format!("installing {} on {name}: {e}", PACKAGES.join(" "))))?;
    }
    let packages: Vec<Package> = if inv.dry_run() {
        before
            .into_iter()
            .map(|(p, v)| Package {
                name: p,
                installed_now: v.is_none(),
                version: v,
            })
            .collect()
    } else {
        let mut now = Vec::new();
        for (p, v) in before {
            now.push(Package {
                name: p,
                installed_now: v.is_none(),
                version: installed(node, p)?,
            });
        }
        now
    };
    if !missing.is_empty() {
        let versions: Vec<String> = packages
            .iter()
            .filter(|p| p.installed_now)
            .map(|p| match &p.version {
                Some(v) => format!("{} {v}", p.name),
                None => p.name.to_string(),
            })
            .collect();
        done.push(format!("installed {}", versions.join(", ")));
    }

    // A package install enables the service itself (its postinst); a dry
    // run that would install cannot probe what the package will add.
    let mut enabled_now = false;
    if !inv.dry_run() || missing.is_empty() {
        match boot(node)? {
            Boot::Enabled => {}
            Boot::Disabled if node.exists(SYSTEMD)? => {
                node.run(apt_as_root("systemctl").args(["enable", SERVICE]))?
                    .check()?;
                enabled_now = true;
            }
            state => {
                let how = if matches!(state, Boot::Missing) {
                    "defaults"
                } else {
                    "enable"
                };
                node.run(apt_as_root("update-rc.d").args([SERVICE, how]))?
                    .check()?;
                enabled_now = true;
            }
        }
    }
    if enabled_now {
        done.push(format!("enabled {SERVICE} at boot"));
    }

    let running = node
        .run(apt_as_root("service").args([SERVICE, "status"]))?
        .success();
    if !running {
        node.run(apt_as_root("service").args([SERVICE, "start"]))?
            .check()
            .map_err(|e| {
                Error::plugin(format!(
                    "starting {SERVICE} on {name}: {e}; `nagios4 -v /etc/nagios4/nagios.cfg` there shows what Nagios objects to"
                ))
            })?;
        done.push(format!("started {SERVICE}"));
    }

    let versions: Vec<String> = packages
        .iter()
        .map(|p| format!("{} {}", p.name, p.version.as_deref().unwrap_or("")))
        .collect();
    let data = to_json(&Installed {
        server: name.to_string(),
        enabled_now,
        started_now: !running,
        packages,
    })?;
    if done.is_empty() {
        return Ok(Outcome::ok(format!(
            "{} installed; {SERVICE} enabled at boot and running",
            versions.join(" and ")
        ))
        .with_data(data));
    }
    Ok(Outcome::changed(would_have(inv, done.join("; "))).with_data(data))
}

#[cfg(test)]
mod tests {
    use super::candidate;

    #[test]
    fn a_candidate_is_a_version_apt_would_install() {
        let known =
            "nagios4-core:\n  Installed: (none)\n  Candidate: 4.4.6-4+deb12u1\n  Version table:\n";
        assert_eq!(candidate(known), Some("4.4.6-4+deb12u1"));
        assert_eq!(
            candidate("nagios4-core:\n  Installed: (none)\n  Candidate: (none)\n"),
            None
        );
        // A name no source knows: apt-cache prints nothing.
        assert_eq!(candidate(""), None);
    }
}
