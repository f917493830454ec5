//! The `patch` plugin: the guide's "To Apply Updates Using kato patch".
//! It drives the vendor patches installed on the operator's host (signed
//! components of world `patch`) through the host's `patches` capability:
//!
//! * `status` prints what `kato patch status` prints: how many updates are
//!   available for the cluster's product version (read from a file on the
//!   core node) and, per patch, its id, the roles it affects, and the nodes
//!   it is installed on and still to be installed on.
//! * `install [NAME]` applies every applicable patch (or one) to the nodes
//!   holding the roles it affects, as a rollout, then restarts the patched
//!   roles (`--no-restart` leaves them alone; `--local` keeps to this
//!   machine's node).
//! * `revert NAME` undoes a patch.
//!
//! What is installed is known from the patch's own `check` and from a
//! ledger on each node (`/var/lib/stackhost/patches/ledger`), which
//! survives a reinstalled operator machine.

use semver::{Version, VersionReq};
use serde::Serialize;
use stackato::role_service;
use stackhost_sdk::patches::{self, InstalledPatch};
use stackhost_sdk::prelude::*;
use std::collections::BTreeMap;

const LEDGER_DIR: &str = "/var/lib/stackhost/patches";
const LEDGER: &str = "/var/lib/stackhost/patches/ledger";
const LEDGER_MAX: u64 = 1 << 20;

struct PatchPlugin;

impl Plugin for PatchPlugin {
    fn plan(inv: &Invocation) -> Result<Plan> {
        match inv.command() {
            // The status is worked out in its one step, on the core node,
            // so it is journaled like any other.
            "status" => {
                Ok(Plan::new().phase(Phase::new("status").step(&core_node()?, "status", "")))
            }
            "install" => plan_install(inv),
            "revert" => plan_revert(inv),
            _ => Err(inv.unknown_command()),
        }
    }

    fn apply(inv: &Invocation, step: &Step) -> Result<Outcome> {
        match step
            .name()
            .split_once(' ')
            .map_or(step.name(), |(op, _)| op)
        {
            "status" => status(inv),
            "apply" => apply_patch(inv, step),
            "revert" => revert_patch(inv, step),
            "restart" => restart(inv, step),
            other => bail!("unknown step `{other}`"),
        }
    }
}

/// The node holding `core`, where the product version is kept.
fn core_node() -> Result<Node> {
    nodes::with_role("core")
        .into_iter()
        .next()
        .ok_or_else(|| Error::plugin("no selected node holds the `core` role, where the product version is kept (check --nodes and the inventory)"))
}

fn product_version(inv: &Invocation) -> Result<Version> {
    let core = core_node()?;
    let path = inv.require("version-file")?;
    let text = core.read_to_string(path).map_err(|e| {
        if e.is_not_found() {
            return Error::plugin(format!(
                "{path} does not exist on core node {}, so the product version is unknown: on a \
                 Stackato core node it holds the version (`cat {path}` shows e.g. 3.4.2); if the \
                 version is kept elsewhere, pass --version-file FILE (under /etc/stackato)",
                core.name()
            ));
        }
        Error::plugin(format!(
            "cannot read the product version from {path} on core node {}: {}",
            core.name(),
            e.message()
        ))
    })?;
    let text = text.trim();
    Version::parse(text).map_err(|e| {
        Error::plugin(format!(
            "{path} on core node {} holds `{text}`, which is not a version ({e})",
            core.name()
        ))
    })
}

/// Whether `p` applies to product `version`; a malformed requirement is
/// the vendor's error and says so.
fn applicable(p: &InstalledPatch, version: &Version) -> Result<bool> {
    let req = VersionReq::parse(&p.info.product_versions).map_err(|e| {
        Error::plugin(format!(
            "patch {} declares product versions `{}`, which is not a semver requirement ({e})",
            p.info.name, p.info.product_versions
        ))
    })?;
    Ok(req.matches(version))
}

fn find<'a>(all: &'a [InstalledPatch], name: &str) -> Result<&'a InstalledPatch> {
    all.iter().find(|p| p.info.name == name).ok_or_else(|| {
        let known: Vec<&str> = all.iter().map(|p| p.info.name.as_str()).collect();
        Error::plugin(format!(
            "no vendor patch named `{name}` is installed (installed: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ))
    })
}

/// The nodes holding a role the patch affects (only this machine's under
/// `--local`).
fn targets(p: &InstalledPatch, local: bool) -> Result<Vec<Node>> {
    if local && nodes::local().is_none() {
        bail!(
            "--local: no selected node is this machine (mark it `local = true` in the inventory, or run without one)"
        );
    }
    Ok(nodes::all()
        .into_iter()
        .filter(|n| !local || n.is_local())
        .filter(|n| p.info.roles_affected.iter().any(|r| n.has_role(r)))
        .collect())
}

/// One line of a node's ledger.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct Entry {
    name: String,
    id: u32,
    version: String,
    digest: String,
    installed_at: u64,
}

impl Entry {
    fn of(p: &InstalledPatch) -> Entry {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Entry {
            name: p.info.name.clone(),
            id: p.info.id,
            version: p.version.clone(),
            digest: p.digest.clone(),
            installed_at: now,
        }
    }

    /// `NAME ID VERSION DIGEST INSTALLED-AT`, tab-separated; the step
    /// payload uses the same form.
    fn to_line(&self) -> String {
        format!(
            "{}\t{}\t{}\t{}\t{}",
            self.name, self.id, self.version, self.digest, self.installed_at
        )
    }

    fn parse(line: &str) -> Option<Entry> {
        let mut f = line.split('\t');
        Some(Entry {
            name: f.next()?.to_string(),
            id: f.next()?.parse().ok()?,
            version: f.next()?.to_string(),
            digest: f.next()?.to_string(),
            installed_at: f.next()?.parse().ok()?,
        })
    }
}

fn read_ledger(node: &Node) -> Result<Vec<Entry>> {
    match node.read(LEDGER, LEDGER_MAX) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(Entry::parse)
            .collect()),
        Err(e) if e.is_not_found() => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn write_ledger(node: &Node, entries: &[Entry]) -> Result<()> {
    node.mkdir_all(LEDGER_DIR)?;
    let text: String = entries.iter().map(|e| e.to_line() + "\n").collect();
    node.write(LEDGER, text)
}

/// Where one patch stands on the cluster.
#[derive(Serialize)]
struct PatchStatus {
    name: String,
    id: u32,
    description: String,
    version: String,
    signed_by: Option<String>,
    product_versions: String,
    applicable: bool,
    roles_affected: Vec<String>,
    installed_on: Vec<String>,
    to_be_installed_on: Vec<String>,
    /// Nodes whose state could not be read, with why.
    unknown_on: BTreeMap<String, String>,
    /// Nodes whose ledger disagrees with the patch's own check.
    ledger_disagrees_on: Vec<String>,
}

#[derive(Serialize)]
struct Status {
    product_version: String,
    updates_available: usize,
    patches: Vec<PatchStatus>,
}

fn status(inv: &Invocation) -> Result<Outcome> {
    let version = product_version(inv)?;
    let mut ledgers: BTreeMap<String, Result<Vec<Entry>>> = BTreeMap::new();
    let mut out = Vec::new();
    for p in patches::list()? {
        let applicable = applicable(&p, &version)?;
        let mut s = PatchStatus {
            name: p.info.name.clone(),
            id: p.info.id,
            description: p.info.description.clone(),
            version: p.version.clone(),
            signed_by: p.signer.clone(),
            product_versions: p.info.product_versions.clone(),
            applicable,
            roles_affected: p.info.roles_affected.clone(),
            installed_on: vec![],
            to_be_installed_on: vec![],
            unknown_on: BTreeMap::new(),
            ledger_disagrees_on: vec![],
        };
        if applicable {
            for node in targets(&p, false)? {
                let ledger = ledgers
                    .entry(node.name().to_string())
                    .or_insert_with(|| read_ledger(&node));
                let in_ledger = match ledger {
                    Ok(entries) => entries.iter().any(|e| e.name == p.info.name),
                    Err(e) => {
                        s.unknown_on.insert(node.name().into(), e.message().into());
                        continue;
                    }
                };
                match patches::check(&p.info.name, &node) {
                    Ok(true) => s.installed_on.push(node.name().into()),
                    Ok(false) => s.to_be_installed_on.push(node.name().into()),
                    Err(e) => {
                        s.unknown_on.insert(node.name().into(), e.message().into());
                        continue;
                    }
                }
                if in_ledger != s.installed_on.iter().any(|n| n == node.name()) {
                    s.ledger_disagrees_on.push(node.name().into());
                }
            }
        }
        out.push(s);
    }
    let status = Status {
        product_version: version.to_string(),
        updates_available: out
            .iter()
            .filter(|s| s.applicable && !s.to_be_installed_on.is_empty())
            .count(),
        patches: out,
    };
    if inv.flag("json") {
        let json =
            serde_json::to_string_pretty(&status).map_err(|e| Error::plugin(e.to_string()))?;
        return Ok(Outcome::ok(json));
    }
    Ok(Outcome::ok(render(&status)))
}

/// `kato patch status`'s text.
fn render(s: &Status) -> String {
    let mut out = String::new();
    let n = s.updates_available;
    let (noun, verb) = if n == 1 {
        ("update", "is")
    } else {
        ("updates", "are")
    };
    out.push_str(&format!(
        "{n} {noun} {verb} available for {}.\n",
        s.product_version
    ));
    let field = |out: &mut String, name: &str, value: &str| {
        let line = format!("        {:<20}{value}", format!("{name}:"));
        out.push_str(line.trim_end());
        out.push('\n');
    };
    let nodes = |list: &[String]| {
        if list.is_empty() {
            "none".to_string()
        } else {
            list.join(", ")
        }
    };
    if s.patches.is_empty() {
        out.push_str(
            "No vendor patches are installed: install a signed one with `stackhost plugin \
             install PATCH.wasm` (its vendor's key trusted with `stackhost keys trust`).\n",
        );
    }
    for p in s.patches.iter().filter(|p| p.applicable) {
        out.push_str(&format!("    {}: {}\n", p.name, p.description));
        if p.installed_on.is_empty() && p.to_be_installed_on.is_empty() && p.unknown_on.is_empty() {
            field(
                &mut out,
                "no node selected",
                &format!(
                    "no selected node holds {} (check --nodes and the inventory's roles)",
                    p.roles_affected.join(", ")
                ),
            );
        }
        field(&mut out, "patch id", &p.id.to_string());
        field(&mut out, "roles affected", &p.roles_affected.join(", "));
        field(&mut out, "installed on", &nodes(&p.installed_on));
        field(
            &mut out,
            "to be installed on",
            &p.to_be_installed_on.join(", "),
        );
        for (node, why) in &p.unknown_on {
            field(&mut out, "unknown on", &format!("{node} ({why})"));
        }
        if !p.ledger_disagrees_on.is_empty() {
            field(
                &mut out,
                "ledger disagrees",
                &p.ledger_disagrees_on.join(", "),
            );
        }
    }
    let other: Vec<&PatchStatus> = s.patches.iter().filter(|p| !p.applicable).collect();
    if !other.is_empty() {
        let (noun, verb) = if other.len() == 1 {
            ("patch", "is")
        } else {
            ("patches", "are")
        };
        out.push_str(&format!(
            "{} {noun} {verb} not applicable to {}:\n",
            other.len(),
            s.product_version
        ));
        for p in other {
            out.push_str(&format!("    {}: {}\n", p.name, p.description));
            field(&mut out, "patch id", &p.id.to_string());
            field(&mut out, "applies to", &p.product_versions);
        }
    }
    out
}

fn plan_install(inv: &Invocation) -> Result<Plan> {
    let version = product_version(inv)?;
    let all = patches::list()?;
    let wanted: Vec<&InstalledPatch> = match inv.value("name") {
        Some(name) => {
            let p = find(&all, name)?;
            ensure!(
                applicable(p, &version)?,
                "patch {name} applies to product versions `{}`, and this cluster runs {version}: it is not applicable",
                p.info.product_versions
            );
            vec![p]
        }
        None => {
            let mut v = Vec::new();
            for p in &all {
                if applicable(p, &version)? {
                    v.push(p);
                } else {
                    log::info(format!(
                        "{} is not applicable to {version} (it applies to {})",
                        p.info.name, p.info.product_versions
                    ));
                }
            }
            v
        }
    };
    let local = inv.flag("local");
    let mut plan = Plan::new();
    let mut restarts = Restarts::default();
    for p in wanted {
        let mut phase = Phase::new(format!("apply {}", p.info.name));
        for node in targets(p, local)? {
            if !patches::check(&p.info.name, &node)? {
                restarts.add(&node, p);
            }
            phase.push_step(
                &node,
                format!("apply {}", p.info.name),
                Entry::of(p).to_line(),
            );
        }
        if !phase.is_empty() {
            plan.push(phase);
        }
    }
    if plan.phases().is_empty() {
        log::info("no applicable patch affects the selected nodes: nothing to install");
    }
    restarts.finish(inv, plan)
}

fn plan_revert(inv: &Invocation) -> Result<Plan> {
    let all = patches::list()?;
    let p = find(&all, inv.require("name")?)?;
    let mut phase = Phase::new(format!("revert {}", p.info.name));
    let mut restarts = Restarts::default();
    for node in targets(p, inv.flag("local"))? {
        let in_ledger = read_ledger(&node)?.iter().any(|e| e.name == p.info.name);
        if in_ledger || patches::check(&p.info.name, &node)? {
            restarts.add(&node, p);
            phase.push_step(
                &node,
                format!("revert {}", p.info.name),
                Entry::of(p).to_line(),
            );
        }
    }
    if phase.is_empty() {
        log::info(format!(
            "{} is not installed on any selected node: nothing to revert",
            p.info.name
        ));
        return Ok(Plan::new());
    }
    restarts.finish(inv, Plan::new().phase(phase))
}

/// The roles to restart per node, once every patch is in.
#[derive(Default)]
struct Restarts(BTreeMap<String, (Node, Vec<String>)>);

impl Restarts {
    fn add(&mut self, node: &Node, p: &InstalledPatch) {
        let (_, roles) = self
            .0
            .entry(node.name().to_string())
            .or_insert_with(|| (node.clone(), Vec::new()));
        for r in p.info.roles_to_restart.iter().filter(|r| node.has_role(r)) {
            if !roles.contains(r) {
                roles.push(r.clone());
            }
        }
    }

    /// Add the restart phase to `plan`, unless `--no-restart`.
    fn finish(self, inv: &Invocation, mut plan: Plan) -> Result<Plan> {
        let todo: Vec<_> = self
            .0
            .into_values()
            .filter(|(_, roles)| !roles.is_empty())
            .collect();
        if todo.is_empty() {
            return Ok(plan);
        }
        if inv.flag("no-restart") {
            for (node, roles) in &todo {
                log::info(format!(
                    "--no-restart: {} not restarted on {}",
                    roles.join(", "),
                    node.name()
                ));
            }
            return Ok(plan);
        }
        let mut phase = Phase::new("restart roles");
        for (node, roles) in todo {
            phase.push_step(
                &node,
                format!("restart {}", roles.join(",")),
                roles.join(","),
            );
        }
        plan.push(phase);
        Ok(plan)
    }
}

fn apply_patch(inv: &Invocation, step: &Step) -> Result<Outcome> {
    let entry =
        Entry::parse(step.payload()).ok_or_else(|| Error::plugin("malformed step payload"))?;
    let node = step.node();
    let name = &entry.name.clone();
    let mut ledger = read_ledger(&node)?;
    let recorded = ledger.iter().any(|e| &e.name == name);
    if patches::check(name, &node)? {
        if recorded {
            return Ok(Outcome::ok("already installed"));
        }
        ledger.push(entry);
        write_ledger(&node, &ledger)?;
        return Ok(Outcome::ok(
            "already installed; now recorded in the node's ledger",
        ));
    }
    patches::apply(name, &node)?;
    if !inv.dry_run() {
        ensure!(
            patches::check(name, &node)?,
            "{name} was applied on {}, but its own check still finds it missing",
            node.name()
        );
    }
    ledger.retain(|e| &e.name != name);
    let version = entry.version.clone();
    ledger.push(entry);
    write_ledger(&node, &ledger)?;
    let verb = if inv.dry_run() {
        "would apply"
    } else {
        "applied"
    };
    Ok(Outcome::changed(format!("{verb} {name} {version}")))
}

fn revert_patch(inv: &Invocation, step: &Step) -> Result<Outcome> {
    let entry =
        Entry::parse(step.payload()).ok_or_else(|| Error::plugin("malformed step payload"))?;
    let node = step.node();
    let name = &entry.name;
    let mut ledger = read_ledger(&node)?;
    let recorded = ledger.iter().any(|e| &e.name == name);
    if !recorded && !patches::check(name, &node)? {
        return Ok(Outcome::ok("not installed"));
    }
    patches::revert(name, &node)?;
    if !inv.dry_run() {
        ensure!(
            !patches::check(name, &node)?,
            "{name} was reverted on {}, but its own check still finds it in place",
            node.name()
        );
    }
    if recorded {
        ledger.retain(|e| &e.name != name);
        write_ledger(&node, &ledger)?;
    }
    let verb = if inv.dry_run() {
        "would revert"
    } else {
        "reverted"
    };
    Ok(Outcome::changed(format!("{verb} {name}")))
}

/// Restart the roles in the payload: `service stackato-ROLE restart`.
fn restart(inv: &Invocation, step: &Step) -> Result<Outcome> {
    let node = step.node();
    let roles: Vec<&str> = step
        .payload()
        .split(',')
        .filter(|r| !r.is_empty())
        .collect();
    for role in &roles {
        let service = role_service(role);
        let out = node.run(Command::new("service").arg(&service).arg("restart"))?;
        ensure!(
            out.success(),
            "restarting role {role} on {} failed (service {service} restart exited {}): {}",
            node.name(),
            out.status(),
            out.stderr_str().trim()
        );
    }
    let verb = if inv.dry_run() {
        "would restart"
    } else {
        "restarted"
    };
    Ok(Outcome::changed(format!("{verb} {}", roles.join(", "))))
}

export_plugin!(PatchPlugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_says_when_no_patch_is_installed_or_no_node_holds_its_roles() {
        let empty = Status {
            product_version: "3.4.2".into(),
            updates_available: 0,
            patches: vec![],
        };
        assert_eq!(
            render(&empty),
            "0 updates are available for 3.4.2.\nNo vendor patches are installed: install a \
             signed one with `stackhost plugin install PATCH.wasm` (its vendor's key trusted \
             with `stackhost keys trust`).\n"
        );
        let nowhere = Status {
            product_version: "3.4.2".into(),
            updates_available: 0,
            patches: vec![PatchStatus {
                name: "aok-endpoint-fix".into(),
                id: 7,
                description: "Fix the AOK endpoint".into(),
                version: "1.0.0".into(),
                signed_by: None,
                product_versions: "=3.4.2".into(),
                applicable: true,
                roles_affected: vec!["controller".into()],
                installed_on: vec![],
                to_be_installed_on: vec![],
                unknown_on: BTreeMap::new(),
                ledger_disagrees_on: vec![],
            }],
        };
        assert!(
            render(&nowhere).contains(
                "no node selected:   no selected node holds controller (check --nodes and the \
                 inventory's roles)"
            ),
            "{}",
            render(&nowhere)
        );
    }
}
