//! The `backup` plugin: the guide's "Backing Up and Migrating Data", like
//! `kato data export` and `kato data import`.
//!
//! An export is one artifact on the operator's host (tar + zstd, or gzip),
//! which plain `tar` lists and extracts. Its first item, `backup.json`,
//! records the cluster's topology, the product version, the time and what
//! was exported from where; the host adds a manifest with every item's
//! sha256. What goes in, by the role that holds it:
//!
//! | role         | what                       | item                 |
//! |--------------|----------------------------|----------------------|
//! | `postgresql` | every database (pg_dump)   | `databases/DB.dump`  |
//! | `controller` | droplets                   | `droplets`           |
//! | `filesystem` | filesystem service storage | `services/filesystem`|
//! | `core`       | settings (`/etc/stackato`) | `settings`           |
//!
//! The bytes stream node -> host -> file; this plugin only names them.

mod artifact;
mod dump_table;
mod export;
mod import;
mod list;
mod prune;
mod schedule;
mod verify;

use stackhost_sdk::archive::{self, Compression};
use stackhost_sdk::prelude::*;

use artifact::{compression_of, export_dest, names_file};
use dump_table::dump_table;
use export::{export, maintenance, plan_export};
use import::import;
use list::list;
use prune::prune;
use schedule::{check_cron, schedule, schedule_node};
use verify::verify;

pub(crate) const META: &str = "backup.json";
/// Databases PostgreSQL itself keeps, never exported.
pub(crate) const SYSTEM_DATABASES: &[&str] = &["postgres"];
/// The roles whose data an export can hold, in export order.
pub(crate) const ROLES: &[&str] = &["postgresql", "controller", "filesystem", "core"];

struct Backup;

impl Plugin for Backup {
    fn plan(inv: &Invocation) -> Result<Plan> {
        check_usage(inv)?;
        let core = core_node()?;
        let one = |name: &str| Ok(Plan::new().phase(Phase::new(name).step(&core, name, "")));
        match inv.command() {
            "export" => plan_export(inv, &core),
            "dump-table" => {
                let node = postgres_node()?;
                Ok(Plan::new().phase(Phase::new("dump-table").step(&node, "dump-table", "")))
            }
            "verify" => one("verify"),
            "list" => one("list"),
            "prune" => one("prune"),
            "import" => one("import"),
            "schedule" => {
                let node = schedule_node()?;
                Ok(Plan::new().phase(Phase::new("schedule").step(&node, "schedule", "")))
            }
            _ => Err(inv.unknown_command()),
        }
    }

    fn apply(inv: &Invocation, step: &Step) -> Result<Outcome> {
        match step.name() {
            "maintenance-on" => maintenance(inv, step, "stop"),
            "maintenance-off" => maintenance(inv, step, "start"),
            "export" => export(inv),
            "dump-table" => dump_table(inv, step),
            "verify" => verify(inv),
            "list" => list(inv),
            "prune" => prune(inv),
            "import" => import(inv),
            "schedule" => schedule(inv, step),
            other => bail!("unknown step `{other}`"),
        }
    }
}

/// The operator's arguments, checked before anything is planned: a wrong
/// one is a usage error (`error: ...`, exit 2), not a failed run.
pub(crate) fn check_usage(inv: &Invocation) -> Result<()> {
    let checked = match inv.command() {
        "export" => export_roles_named(inv)
            .and_then(|()| compression_agrees(inv))
            .and_then(|()| {
                // A dated name in a directory is new; a file name may not be.
                let dest = export_dest(inv);
                if names_file(dest) {
                    refuse_existing(inv, dest)
                } else {
                    Ok(())
                }
            }),
        "prune" => inv
            .require("keep")?
            .parse::<usize>()
            .map(drop)
            .map_err(|_| Error::plugin("--keep takes a whole number")),
        "schedule" if !inv.flag("list") && !inv.flag("remove") => match inv.value("dest") {
            None => Err(Error::plugin("schedule needs DEST (or --list / --remove)")),
            Some(d) if !d.starts_with('/') => Err(Error::plugin(format!(
                "DEST must be an absolute path, not `{d}`"
            ))),
            Some(_) => inv.value("at").map_or(Ok(()), check_cron),
        },
        _ => Ok(()),
    };
    checked.map_err(|e| Error::Usage(e.message().to_string()))
}

/// --only and --exclude name exportable roles; --cluster and
/// --only-this-node exclude each other.
pub(crate) fn export_roles_named(inv: &Invocation) -> Result<()> {
    for r in inv.values("only").iter().chain(inv.values("exclude")) {
        ensure!(
            ROLES.contains(&r.as_str()),
            "unknown role `{r}` (exportable: {})",
            ROLES.join(", ")
        );
    }
    ensure!(
        !(inv.flag("cluster") && inv.flag("only-this-node")),
        "--cluster and --only-this-node exclude each other"
    );
    Ok(())
}

/// --gzip and a DEST file name that says otherwise contradict each other.
/// (zstd is the default and has no flag, so only --gzip can disagree.)
pub(crate) fn compression_agrees(inv: &Invocation) -> Result<()> {
    let dest = export_dest(inv);
    if !inv.flag("gzip") || !names_file(dest) {
        return Ok(());
    }
    let named = match compression_of(dest) {
        Compression::Gzip => return Ok(()),
        Compression::Zstd => "zstd",
        Compression::None => "no compression",
    };
    bail!(
        "--gzip contradicts DEST {dest}, whose name says {named}; \
         name it .tar.gz or .tgz, or leave out --gzip"
    )
}

/// An export never replaces a file silently: an existing one needs
/// --force. Only a file that opens counts as there; anything else at that
/// name (a directory, a path outside the grant) is left to the export
/// step, which names what it finds.
pub(crate) fn refuse_existing(inv: &Invocation, path: &str) -> Result<()> {
    if !inv.flag("force") && archive::open(path).is_ok() {
        bail!("{path} already exists; pass --force to replace it");
    }
    Ok(())
}

pub(crate) fn core_node() -> Result<Node> {
    nodes::with_role("core")
        .into_iter()
        .next()
        .or_else(|| nodes::all().into_iter().next())
        .ok_or_else(|| Error::plugin("no node is selected"))
}

pub(crate) fn postgres_node() -> Result<Node> {
    nodes::with_role("postgresql")
        .into_iter()
        .next()
        .ok_or_else(|| Error::plugin("no selected node holds the `postgresql` role"))
}

export_plugin!(Backup);
