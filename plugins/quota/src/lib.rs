//! `quota`: the guide's "To Enable Filesystem Quotas" and "To Adjust
//! Filesystem Quotas Retroactively". Limits are btrfs qgroups: each
//! `stackatofs-*` filesystem service is a subvolume, and its qgroup's
//! limit on referenced bytes plays `setquota -u NAME 0 LIMIT 0 0 -a` (the
//! kernel answers a write past it with EDQUOT, as a user quota would).
//!
//! `show` reports the filesystem under each data path and its qgroups;
//! `enable` turns quotas on for btrfs, ext4 and XFS (enable.rs); `set`
//! limits services, idempotently, after checking that a backup export
//! exists.
//!
//! Not built: `set` on ext4 and XFS (the guide's `setquota`; this test
//! machine's kernel cannot run ext4 user quotas, so it could not be
//! tested): refused by name. `show` reports whether their mount options
//! carry user quotas, not per-user use.

mod enable;
mod fsinfo;
mod set;
mod units;

use enable::{EnablePayload, check_supported};
use fsinfo::{Mount, Qgroup, mount_of, qgroups};
use serde::{Deserialize, Serialize};
use stackato::{from_json, to_json};
use stackhost_sdk::prelude::*;
use units::{human, human_limit};

struct Quota;

/// The data path of each role, where its quota-relevant data lives (the
/// same places the relocate plugin moves; relocate keeps these paths
/// working through bind mounts, so they stay right after a relocation).
///
/// | role         | data path                                    |
/// |--------------|----------------------------------------------|
/// | `filesystem` | `/var/stackato/services/filesystem/storage`  |
/// | `dea`        | `/var/stackato/containers`                   |
/// | `controller` | `/var/stackato/data/droplets`                |
const DATA_PATHS: &[(&str, &str)] = &[
    ("filesystem", STORAGE),
    ("dea", "/var/stackato/containers"),
    ("controller", "/var/stackato/data/droplets"),
];

/// Where the filesystem services live, one `stackatofs-*` each.
pub(crate) const STORAGE: &str = "/var/stackato/services/filesystem/storage";
const SERVICE_PREFIX: &str = "stackatofs-";
/// How recent a backup export must be for `set`.
pub(crate) const BACKUP_MAX_AGE_SECS: u64 = 24 * 3600;

/// The data paths of `node`'s roles that exist on it (under /var/stackato,
/// which the fs grant covers).
fn default_paths(node: &Node) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (role, path) in DATA_PATHS {
        if node.has_role(role) && node.exists(path)? {
            out.push((*path).to_string());
        }
    }
    Ok(out)
}

fn paths_for(inv: &Invocation, node: &Node) -> Result<Vec<String>> {
    match inv.value("path") {
        Some(p) => Ok(vec![p.to_string()]),
        None => default_paths(node),
    }
}

pub(crate) fn check_path(path: &str) -> Result<()> {
    if !path.starts_with('/') || path.split('/').any(|c| c == "..") {
        usage!("PATH must be an absolute path without `..`, not `{path}`");
    }
    Ok(())
}

pub(crate) fn payload<T: for<'a> Deserialize<'a>>(step: &Step) -> Result<T> {
    from_json(step.payload(), "the step's payload")
}

// ---- show ----

/// One data path as `show` reports it.
#[derive(Debug, Serialize)]
struct PathReport {
    path: String,
    mount: Mount,
    /// btrfs: quotas (qgroups) on; ext4/XFS: user quota mount options.
    quota_enabled: bool,
    /// btrfs only: the subvolumes under `path`, with use and limits.
    qgroups: Vec<Qgroup>,
    note: Option<String>,
}

/// The qgroups of subvolumes at or below `path` on `mount`, with their
/// path made relative to `path` (`stackatofs-1`, or `.` for itself).
pub(crate) fn below(mount: &Mount, path: &str, rows: Vec<Qgroup>) -> Vec<Qgroup> {
    let base = mount.fs_relative(path);
    rows.into_iter()
        .filter_map(|mut q| {
            let rel = if base.is_empty() {
                Some(q.path.as_str())
            } else if q.path == base {
                Some(".")
            } else {
                q.path
                    .strip_prefix(base.as_str())
                    .and_then(|r| r.strip_prefix('/'))
            }?;
            if rel.starts_with('<') {
                return None; // <toplevel>, <stale>
            }
            q.path = rel.to_string();
            Some(q)
        })
        .collect()
}

fn report_path(node: &Node, path: &str, user: Option<&str>) -> Result<PathReport> {
    let mount = mount_of(node, path)?;
    let (quota_enabled, mut rows, note) = match mount.fstype.as_str() {
        "btrfs" => match qgroups(node, &mount.target)? {
            Some(rows) => (true, below(&mount, path, rows), None),
            None => (
                false,
                Vec::new(),
                Some(format!(
                    "btrfs quotas are off: stackhost run quota enable {path}"
                )),
            ),
        },
        "ext4" | "xfs" => (
            mount.user_quota_option(),
            Vec::new(),
            Some(format!(
                "{}: per-user usage is not shown (not built for ext4/XFS)",
                mount.fstype
            )),
        ),
        other => (
            false,
            Vec::new(),
            Some(format!("{other} has no quota support")),
        ),
    };
    if let Some(u) = user {
        rows.retain(|q| q.path == u);
    }
    Ok(PathReport {
        path: path.to_string(),
        mount,
        quota_enabled,
        qgroups: rows,
        note,
    })
}

/// The guide's `quota -s`, one block per path.
fn render(reports: &[PathReport]) -> String {
    let mut out = String::new();
    for r in reports {
        let on = if r.quota_enabled { "on" } else { "off" };
        out.push_str(&format!(
            "{} on {} ({}, {}): quotas {on}\n",
            r.path, r.mount.target, r.mount.fstype, r.mount.source
        ));
        if let Some(note) = &r.note {
            out.push_str(&format!("  {note}\n"));
        }
        if !r.qgroups.is_empty() {
            let width = r
                .qgroups
                .iter()
                .map(|q| q.path.len())
                .max()
                .unwrap_or(0)
                .max(9);
            out.push_str(&format!(
                "  {:<width$}  {:<8}  {:>8}  {:>9}  {:>8}\n",
                "Subvolume", "Qgroup", "Used", "Exclusive", "Limit"
            ));
            for q in &r.qgroups {
                out.push_str(&format!(
                    "  {:<width$}  {:<8}  {:>8}  {:>9}  {:>8}\n",
                    q.path,
                    q.id,
                    human(q.referenced),
                    human(q.exclusive),
                    human_limit(q.max_referenced)
                ));
            }
        }
    }
    out.trim_end().to_string()
}

#[derive(Serialize, Deserialize)]
struct ShowPayload {
    paths: Vec<String>,
    user: Option<String>,
}

fn show(step: &Step) -> Result<Outcome> {
    let p: ShowPayload = payload(step)?;
    let node = step.node();
    let reports = p
        .paths
        .iter()
        .map(|path| report_path(&node, path, p.user.as_deref()))
        .collect::<Result<Vec<_>>>()?;
    if let Some(u) = &p.user
        && reports.iter().all(|r| r.qgroups.is_empty())
    {
        // Services live on one filesystem node each: the others say so.
        return Ok(Outcome::skipped(format!(
            "no subvolume `{u}` under {} on this node",
            p.paths.join(", ")
        ))
        .with_data(to_json(&reports)?));
    }
    Ok(Outcome::ok(render(&reports)).with_data(to_json(&reports)?))
}

pub(crate) fn valid_service(name: &str) -> bool {
    name.len() > SERVICE_PREFIX.len()
        && name.starts_with(SERVICE_PREFIX)
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl Plugin for Quota {
    fn plan(inv: &Invocation) -> Result<Plan> {
        if let Some(p) = inv.value("path") {
            check_path(p)?;
        }
        match inv.command() {
            "show" => {
                if let Some(u) = inv.value("user")
                    && !valid_service(u)
                {
                    usage!("--user takes a filesystem service name (stackatofs-...), not `{u}`");
                }
                let mut phase = Phase::new("show");
                for node in nodes::all() {
                    let paths = paths_for(inv, &node)?;
                    if paths.is_empty() {
                        continue;
                    }
                    let p = ShowPayload {
                        paths,
                        user: inv.value("user").map(String::from),
                    };
                    phase.push_step(&node, "show", to_json(&p)?);
                }
                ensure!(
                    !phase.is_empty(),
                    "none of the selected nodes has a data path ({}); name one as PATH",
                    DATA_PATHS
                        .iter()
                        .map(|(r, p)| format!("{r}: {p}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                Ok(Plan::new().phase(phase))
            }
            "enable" => {
                let mut phase = Phase::new("enable");
                for node in nodes::all() {
                    let mut mounts: Vec<Mount> = Vec::new();
                    for path in paths_for(inv, &node)? {
                        let mount = mount_of(&node, &path)?;
                        check_supported(&node, &path, &mount)?;
                        if !mounts.iter().any(|m: &Mount| m.target == mount.target) {
                            mounts.push(mount);
                        }
                    }
                    if !mounts.is_empty() {
                        phase.push_step(&node, "enable", to_json(&EnablePayload { mounts })?);
                    }
                }
                ensure!(
                    !phase.is_empty(),
                    "none of the selected nodes has a data path; name the filesystem as PATH"
                );
                Ok(Plan::new().phase(phase))
            }
            "set" => set::plan_set(inv),
            _ => Err(inv.unknown_command()),
        }
    }

    fn apply(inv: &Invocation, step: &Step) -> Result<Outcome> {
        match step.name() {
            "show" => show(step),
            "enable" => enable::enable(inv, step),
            "set" => set::set(inv, step),
            other => bail!("unknown step `{other}`"),
        }
    }
}

export_plugin!(Quota);

#[cfg(test)]
mod tests {
    use super::*;

    fn q(path: &str) -> Qgroup {
        Qgroup {
            id: "0/1".into(),
            referenced: 1,
            exclusive: 1,
            max_referenced: None,
            max_exclusive: None,
            path: path.into(),
        }
    }

    #[test]
    fn subvolumes_below_a_path_are_named_relative_to_it() {
        let m = Mount {
            target: "/srv".into(),
            source: "/dev/loop0".into(),
            fstype: "btrfs".into(),
            options: String::new(),
            fsroot: "/".into(),
        };
        let rows = vec![
            q("<toplevel>"),
            q("storage"),
            q("storage/stackatofs-a"),
            q("storagex/b"),
            q("other"),
        ];
        let got: Vec<String> = below(&m, "/srv/storage", rows.clone())
            .into_iter()
            .map(|q| q.path)
            .collect();
        assert_eq!(got, [".", "stackatofs-a"]);
        let got: Vec<String> = below(&m, "/srv", rows)
            .into_iter()
            .map(|q| q.path)
            .collect();
        assert_eq!(
            got,
            ["storage", "storage/stackatofs-a", "storagex/b", "other"]
        );
    }

    #[test]
    fn service_names() {
        assert!(valid_service("stackatofs-2623db6af1dc84b"));
        assert!(!valid_service("stackatofs-"));
        assert!(!valid_service("stackatofs-../x"));
        assert!(!valid_service("root"));
    }
}
