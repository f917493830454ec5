//! The `roles` plugin: the Stackato roles across the cluster, the way
//! `kato status`, `kato stop` and `kato start` show and order them. A
//! node's roles are the inventory's; each runs as the service
//! `stackato-ROLE` (`/etc/init.d/stackato-ROLE`).
//!
//! Stopping goes in three phases, each on every selected node at once:
//! the roles that serve apps and users (router, DEA, ...), then the
//! controller and core, then the data services, so nothing still running
//! writes to a data service that is gone. Starting goes the other way.

use serde::{Deserialize, Serialize};
use stackato::{from_json, role_init_script, role_service, to_json, would_have};
use stackhost_sdk::prelude::*;

struct Roles;

/// The data services: stopped last, started first.
const DATA_ROLES: &[&str] = stackato::DATA_SERVICE_ROLES;

/// The cluster's own roles: stopped after the app-facing ones.
const CORE_ROLES: &[&str] = &["controller", "core"];

/// Which of the three groups a role is in: 0 app-facing, 1 core, 2 data.
fn group(role: &str) -> usize {
    if DATA_ROLES.contains(&role) {
        2
    } else if CORE_ROLES.contains(&role) {
        1
    } else {
        0
    }
}

const GROUP_NAMES: [&str; 3] = ["roles", "the controller and core", "data services"];

/// One step: these roles of the node, to stop or start.
#[derive(Serialize, Deserialize)]
struct Work {
    action: String,
    roles: Vec<String>,
}

/// A role's state, as step data.
#[derive(Serialize)]
struct RoleState {
    role: String,
    /// `running`, `stopped` or `not installed`.
    state: &'static str,
}

impl Plugin for Roles {
    fn plan(inv: &Invocation) -> Result<Plan> {
        let only = inv.values("role");
        check_roles(only)?;
        let wanted = |node: &Node| -> Vec<String> {
            node.roles()
                .iter()
                .filter(|r| only.is_empty() || only.contains(r))
                .cloned()
                .collect()
        };
        let nodes = nodes::all();
        if inv.command() == "status" {
            let mut phase = Phase::new("status");
            for node in &nodes {
                let work = Work {
                    action: "status".into(),
                    roles: wanted(node),
                };
                phase.push_step(node, "status", to_json(&work)?);
            }
            return Ok(Plan::new().phase(phase));
        }
        let actions: &[&str] = match inv.command() {
            "stop" => &["stop"],
            "start" => &["start"],
            "restart" => &["stop", "start"],
            _ => return Err(inv.unknown_command()),
        };
        let mut plan = Plan::new();
        for action in actions {
            let order: [usize; 3] = if *action == "stop" {
                [0, 1, 2]
            } else {
                [2, 1, 0]
            };
            for g in order {
                let mut phase = Phase::new(format!("{action} {}", GROUP_NAMES[g]));
                for node in &nodes {
                    let roles: Vec<String> =
                        wanted(node).into_iter().filter(|r| group(r) == g).collect();
                    if roles.is_empty() {
                        continue;
                    }
                    let title = format!("{action} {}", roles.join(", "));
                    let work = Work {
                        action: (*action).into(),
                        roles,
                    };
                    phase.push_step(node, &title, to_json(&work)?);
                }
                if !phase.is_empty() {
                    plan = plan.phase(phase);
                }
            }
        }
        Ok(plan)
    }

    fn apply(inv: &Invocation, step: &Step) -> Result<Outcome> {
        let work: Work = from_json(step.payload(), "the roles step's payload")?;
        let node = step.node();
        match work.action.as_str() {
            "status" => status(&node, &work.roles),
            "stop" | "start" => change(inv, &node, &work),
            _ => Err(inv.unknown_command()),
        }
    }
}

/// Every role asked for must be held by some selected node.
fn check_roles(only: &[String]) -> Result<()> {
    let held: Vec<String> = nodes::all()
        .iter()
        .flat_map(|n| n.roles().to_vec())
        .collect();
    for role in only {
        if !held.contains(role) {
            let mut known = held.clone();
            known.sort();
            known.dedup();
            usage!(
                "no selected node holds the role `{role}` (the selected nodes hold: {})",
                known.join(", ")
            );
        }
    }
    Ok(())
}

/// Whether the role's service runs: `service stackato-ROLE status` exits 0
/// when it does; `None` when the node has no such service.
fn running(node: &Node, role: &str) -> Result<Option<bool>> {
    if !node.exists(&role_init_script(role))? {
        return Ok(None);
    }
    let out = node.run(service(role, "status"))?;
    Ok(Some(out.success()))
}

fn service(role: &str, action: &str) -> Command {
    Command::new("service")
        .args([role_service(role).as_str(), action])
        .user("root")
        .env("LANG", "C")
}

fn state_name(s: Option<bool>) -> &'static str {
    match s {
        Some(true) => "running",
        Some(false) => "stopped",
        None => "not installed",
    }
}

fn status(node: &Node, roles: &[String]) -> Result<Outcome> {
    let mut states = Vec::new();
    for role in roles {
        states.push(RoleState {
            role: role.clone(),
            state: state_name(running(node, role)?),
        });
    }
    let text: Vec<String> = states
        .iter()
        .map(|s| format!("{} {}", s.role, s.state))
        .collect();
    let message = if text.is_empty() {
        "no roles".to_string()
    } else {
        text.join(", ")
    };
    Ok(Outcome::ok(message).with_data(to_json(&states)?))
}

/// Stop or start the step's roles, each only when it is not already so,
/// and check that it then is.
fn change(inv: &Invocation, node: &Node, work: &Work) -> Result<Outcome> {
    let want_running = work.action == "start";
    let (mut changed, mut already, mut missing) = (Vec::new(), Vec::new(), Vec::new());
    for role in &work.roles {
        match running(node, role)? {
            None => missing.push(role.as_str()),
            Some(now) if now == want_running => already.push(role.as_str()),
            Some(_) => {
                node.run(service(role, &work.action))?.check()?;
                if !inv.dry_run() && running(node, role)? != Some(want_running) {
                    bail!(
                        "{} {role} on node {}: its service still reports {}",
                        work.action,
                        node.name(),
                        if want_running { "stopped" } else { "running" }
                    );
                }
                changed.push(role.as_str());
            }
        }
    }
    let past = if want_running { "started" } else { "stopped" };
    let mut parts = Vec::new();
    if !changed.is_empty() {
        parts.push(would_have(inv, format!("{past} {}", changed.join(", "))));
    }
    if !already.is_empty() {
        parts.push(format!("already {past}: {}", already.join(", ")));
    }
    if !missing.is_empty() {
        parts.push(format!("no service on this node: {}", missing.join(", ")));
    }
    let message = parts.join("; ");
    Ok(if changed.is_empty() {
        Outcome::ok(message)
    } else {
        Outcome::changed(message)
    })
}

export_plugin!(Roles);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_services_are_the_last_group_and_core_the_middle() {
        assert_eq!(group("dea"), 0);
        assert_eq!(group("router"), 0);
        assert_eq!(group("controller"), 1);
        assert_eq!(group("core"), 1);
        assert_eq!(group("postgresql"), 2);
        assert_eq!(group("filesystem"), 2);
    }
}
