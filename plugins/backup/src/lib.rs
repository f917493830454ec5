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

use serde::{Deserialize, Serialize};
use stackhost_sdk::archive::{self, Compression};
use stackhost_sdk::clock::{self, utc_stamp};
use stackhost_sdk::postgres;
use stackhost_sdk::prelude::*;

const DROPLETS: &str = "/var/stackato/data/droplets";
const SERVICES: &str = "/var/stackato/services/filesystem";
const SETTINGS: &str = "/etc/stackato";
const VERSION_FILE: &str = "/etc/stackato/version";
const META: &str = "backup.json";
/// Databases PostgreSQL itself keeps, never exported.
const SYSTEM_DATABASES: &[&str] = &["postgres"];
/// The roles whose data an export can hold, in export order.
const ROLES: &[&str] = &["postgresql", "controller", "filesystem", "core"];

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
fn check_usage(inv: &Invocation) -> Result<()> {
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
fn export_roles_named(inv: &Invocation) -> Result<()> {
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
fn compression_agrees(inv: &Invocation) -> Result<()> {
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
fn refuse_existing(inv: &Invocation, path: &str) -> Result<()> {
    if !inv.flag("force") && archive::open(path).is_ok() {
        bail!("{path} already exists; pass --force to replace it");
    }
    Ok(())
}

fn core_node() -> Result<Node> {
    nodes::with_role("core")
        .into_iter()
        .next()
        .or_else(|| nodes::all().into_iter().next())
        .ok_or_else(|| Error::plugin("no node is selected"))
}

fn postgres_node() -> Result<Node> {
    nodes::with_role("postgresql")
        .into_iter()
        .next()
        .ok_or_else(|| Error::plugin("no selected node holds the `postgresql` role"))
}

const SUFFIXES: &[&str] = &[".tar.zst", ".tar.gz", ".tgz", ".tar"];
const DEFAULT_DEST: &str = "/var/backups/stackato/";

/// True when `dest` names the artifact file itself (by its suffix) rather
/// than a directory to put a dated one in.
fn names_file(dest: &str) -> bool {
    SUFFIXES.iter().any(|s| dest.ends_with(s))
}

fn export_dest(inv: &Invocation) -> &str {
    inv.value("dest").unwrap_or(DEFAULT_DEST)
}

/// The artifact path for `dest`: a file name as given, or a dated name in
/// a directory.
fn artifact_path(dest: &str, base: &str, gzip: bool) -> String {
    if names_file(dest) {
        return dest.to_string();
    }
    let ext = if gzip { "tar.gz" } else { "tar.zst" };
    format!(
        "{}/{base}-{}.{ext}",
        dest.trim_end_matches('/'),
        utc_stamp(clock::now())
    )
}

fn compression_of(path: &str) -> Compression {
    if path.ends_with(".tar.gz") || path.ends_with(".tgz") {
        Compression::Gzip
    } else if path.ends_with(".tar") {
        Compression::None
    } else {
        Compression::Zstd
    }
}

/// What an export holds, as recorded in `backup.json`.
#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    format: String,
    product_version: Option<String>,
    created: u64,
    /// `cluster`, or `node NAME` for --only-this-node.
    scope: String,
    roles: Vec<String>,
    topology: Vec<TopologyNode>,
    contents: Vec<Content>,
}

#[derive(Debug, Serialize, Deserialize)]
struct TopologyNode {
    name: String,
    address: String,
    roles: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Content {
    /// `database`, `droplets`, `services`, `settings`.
    kind: String,
    /// Item name (or prefix) in the artifact.
    item: String,
    /// The role it came from.
    role: String,
    node: String,
    /// Database name, or path on the node.
    source: String,
}

/// The roles an export covers, from --only, --exclude and --only-this-node.
fn export_roles(inv: &Invocation) -> Result<(Vec<String>, String)> {
    for r in inv.values("only").iter().chain(inv.values("exclude")) {
        ensure!(
            ROLES.contains(&r.as_str()),
            "unknown role `{r}` (exportable: {})",
            ROLES.join(", ")
        );
    }
    let mut roles: Vec<String> = if inv.values("only").is_empty() {
        ROLES.iter().map(|r| r.to_string()).collect()
    } else {
        inv.values("only").to_vec()
    };
    roles.retain(|r| !inv.values("exclude").contains(r));
    let mut scope = "cluster".to_string();
    if inv.flag("only-this-node") {
        ensure!(
            !inv.flag("cluster"),
            "--cluster and --only-this-node exclude each other"
        );
        let local = nodes::local().ok_or_else(|| {
            Error::plugin("--only-this-node: no selected node is this machine (mark it `local = true` in the inventory)")
        })?;
        roles.retain(|r| local.has_role(r));
        scope = format!("node {}", local.name());
    }
    ensure!(
        !roles.is_empty(),
        "nothing to export: no role is left after --only, --exclude and --only-this-node"
    );
    Ok((roles, scope))
}

fn plan_export(inv: &Invocation, core: &Node) -> Result<Plan> {
    let (roles, scope) = export_roles(inv)?;
    let mut plan = Plan::new();
    let writers = nodes::with_role("controller");
    if inv.flag("maintenance") {
        plan.push(writers.iter().fold(Phase::new("maintenance on"), |p, n| {
            p.step(n, "maintenance-on", "controller")
        }));
    }
    let payload = format!("{scope}\t{}", roles.join(","));
    plan.push(Phase::new("export").step(core, "export", payload));
    if inv.flag("maintenance") {
        plan.push(
            writers
                .iter()
                .fold(Phase::new("maintenance off").always(), |p, n| {
                    p.step(n, "maintenance-off", "controller")
                }),
        );
    }
    Ok(plan)
}

/// Stop or start the roles in the payload (`service stackato-ROLE ACTION`).
fn maintenance(inv: &Invocation, step: &Step, action: &str) -> Result<Outcome> {
    let node = step.node();
    for role in step.payload().split(',').filter(|r| !r.is_empty()) {
        let out = node.run(
            Command::new("service")
                .arg(format!("stackato-{role}"))
                .arg(action),
        )?;
        ensure!(
            out.success(),
            "service stackato-{role} {action} on {} failed (exit {}): {}",
            node.name(),
            out.status(),
            out.stderr_str().trim()
        );
    }
    let verb = match (action, inv.dry_run()) {
        ("stop", false) => "stopped",
        ("stop", true) => "would stop",
        (_, false) => "started",
        (_, true) => "would start",
    };
    Ok(Outcome::changed(format!(
        "{verb} {} for the export",
        step.payload()
    )))
}

fn topology() -> Vec<TopologyNode> {
    nodes::all()
        .into_iter()
        .map(|n| TopologyNode {
            name: n.name().into(),
            address: n.address().into(),
            roles: n.roles().to_vec(),
        })
        .collect()
}

fn product_version(core: &Node) -> Option<String> {
    core.read_to_string(VERSION_FILE)
        .ok()
        .map(|v| v.trim().to_string())
}

fn export(inv: &Invocation) -> Result<Outcome> {
    let (roles, scope) = export_roles(inv)?;
    let core = core_node()?;
    let path = artifact_path(export_dest(inv), "stackato-export", inv.flag("gzip"));
    // Again here: a dated name from a run in the same second, or a file
    // that appeared since the plan.
    refuse_existing(inv, &path)?;
    let local = inv.flag("only-this-node").then(nodes::local).flatten();
    let holder = |role: &str| -> Option<Node> {
        match &local {
            Some(n) => n.has_role(role).then(|| n.clone()),
            None => nodes::with_role(role).into_iter().next(),
        }
    };
    // Decide everything before the artifact exists, so a plan that cannot
    // work leaves nothing behind.
    let mut contents = Vec::new();
    let mut skipped = Vec::new();
    for role in &roles {
        let Some(node) = holder(role) else {
            skipped.push(format!("{role} (no node holds it)"));
            continue;
        };
        match role.as_str() {
            "postgresql" => {
                let dbs = postgres::list_databases(&node)?;
                for db in dbs
                    .into_iter()
                    .filter(|d| !SYSTEM_DATABASES.contains(&d.as_str()))
                {
                    contents.push(Content {
                        kind: "database".into(),
                        item: format!("databases/{db}.dump"),
                        role: role.clone(),
                        node: node.name().into(),
                        source: db,
                    });
                }
            }
            "controller" | "filesystem" | "core" => {
                let (kind, item, source) = match role.as_str() {
                    "controller" => ("droplets", "droplets", DROPLETS),
                    "filesystem" => ("services", "services/filesystem", SERVICES),
                    _ => ("settings", "settings", SETTINGS),
                };
                if !node.exists(source)? {
                    skipped.push(format!(
                        "{kind} ({source} does not exist on {})",
                        node.name()
                    ));
                    continue;
                }
                contents.push(Content {
                    kind: kind.into(),
                    item: item.into(),
                    role: role.clone(),
                    node: node.name().into(),
                    source: source.into(),
                });
            }
            _ => unreachable!("roles are checked"),
        }
    }
    ensure!(
        !contents.is_empty(),
        "nothing to export: {}",
        skipped.join(", ")
    );
    let meta = Meta {
        format: "stackhost-backup/1".into(),
        product_version: product_version(&core),
        created: clock::now(),
        scope,
        roles: roles.clone(),
        topology: topology(),
        contents,
    };
    let artifact = archive::create(&path, compression_of(&path))?;
    let json = serde_json::to_vec_pretty(&meta).map_err(|e| Error::plugin(e.to_string()))?;
    artifact.add_bytes(META, json)?;
    let mut files = 0usize;
    for c in &meta.contents {
        let node = Node::named(c.node.clone());
        match c.kind.as_str() {
            "database" => {
                postgres::dump(&node, &c.source, None, &artifact, &c.item)?;
                files += 1;
            }
            _ => files += artifact.add_path(&node, &c.source, &c.item)?.len(),
        }
    }
    let items = artifact.finish()?;
    let bytes: u64 = items.iter().map(|i| i.size).sum();
    let dbs = databases(&meta);
    let mut msg = format!(
        "{} {path}: {} items, {:.1} MiB before compression; databases: {}; files: {files}",
        if inv.dry_run() {
            "would write"
        } else {
            "wrote"
        },
        items.len(),
        bytes as f64 / (1 << 20) as f64,
        if dbs.is_empty() {
            "none".to_string()
        } else {
            dbs.join(", ")
        },
    );
    if !skipped.is_empty() {
        msg.push_str(&format!("; not exported: {}", skipped.join(", ")));
    }
    Ok(Outcome::changed(msg))
}

fn dump_table(inv: &Invocation, step: &Step) -> Result<Outcome> {
    let (db, table) = (inv.require("db")?, inv.require("table")?);
    let node = step.node();
    let dest = inv.value("dest").unwrap_or(DEFAULT_DEST);
    if dest.ends_with(".sql") {
        return dump_table_sql(inv, &node, db, table, dest);
    }
    let path = artifact_path(
        inv.value("dest").unwrap_or(DEFAULT_DEST),
        &format!("{db}-{table}"),
        false,
    );
    let item = dump_into(&node, db, table, &path, compression_of(&path))?;
    let verb = if inv.dry_run() {
        "would write"
    } else {
        "wrote"
    };
    Ok(Outcome::changed(format!(
        "{verb} {path}: {} ({} bytes of SQL)",
        item.name, item.size
    )))
}

/// `pg_dump DB -t TABLE` on `node` into a new artifact at `path`, as its
/// one item `DB/TABLE.sql`.
fn dump_into(
    node: &Node,
    db: &str,
    table: &str,
    path: &str,
    compression: archive::Compression,
) -> Result<archive::Item> {
    let artifact = archive::create(path, compression)?;
    let item = postgres::dump(
        node,
        db,
        Some(table),
        &artifact,
        &format!("{db}/{table}.sql"),
    )?;
    artifact.finish()?;
    Ok(item)
}

/// `pg_dump DB -t TABLE > DEST.sql`: the plain SQL file, as the guide
/// makes it. The dump streams into a hidden uncompressed artifact beside
/// DEST (so it is hashed on the way), which is extracted to DEST and
/// removed.
fn dump_table_sql(
    inv: &Invocation,
    node: &Node,
    db: &str,
    table: &str,
    dest: &str,
) -> Result<Outcome> {
    let (dir, file) = dest.rsplit_once('/').unwrap_or((".", dest));
    let spool = format!("{dir}/.{file}.dump.tar");
    let item = dump_into(node, db, table, &spool, archive::Compression::None)?;
    if inv.dry_run() {
        return Ok(Outcome::changed(format!(
            "would write {dest}: plain SQL of {db}.{table}"
        )));
    }
    let extracted = archive::open(&spool).and_then(|r| r.extract(&item.name, dest));
    let removed = archive::remove(&spool);
    let bytes = extracted?;
    removed?;
    Ok(Outcome::changed(format!(
        "wrote {dest}: {bytes} bytes of plain SQL ({db}.{table})"
    )))
}

fn verify(inv: &Invocation) -> Result<Outcome> {
    let file = inv.require("file")?;
    let artifact = archive::open(file)?;
    let bad = artifact.verify()?;
    if !bad.is_empty() {
        let names: Vec<String> = bad
            .iter()
            .map(|m| {
                format!(
                    "{} (expected {}, found {})",
                    m.name, m.expected_sha256, m.actual_sha256
                )
            })
            .collect();
        bail!("{file} fails verification: {}", names.join("; "));
    }
    Ok(Outcome::ok(format!(
        "{file}: all {} items match their sha256",
        artifact.items()?.len()
    )))
}

/// The artifacts in `dir`, newest first; `None` when the directory does
/// not exist (yet), which holds no exports rather than being a failure.
fn artifacts_in(dir: &str) -> Result<Option<Vec<archive::Listed>>> {
    match archive::list(dir) {
        Ok(listed) => Ok(Some(listed)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

fn no_exports_yet(dir: &str) -> Outcome {
    Outcome::ok(format!("no exports in {dir} (it does not exist yet)"))
}

/// Bytes for people: KiB under a MiB, MiB under a GiB.
fn human_size(bytes: u64) -> String {
    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    let b = bytes as f64;
    if bytes < KIB {
        format!("{bytes} B")
    } else if bytes < MIB {
        format!("{:.1} KiB", b / KIB as f64)
    } else if bytes < GIB {
        format!("{:.1} MiB", b / MIB as f64)
    } else {
        format!("{:.1} GiB", b / GIB as f64)
    }
}

/// The databases an export holds, in export order.
fn databases(meta: &Meta) -> Vec<&str> {
    meta.contents
        .iter()
        .filter(|c| c.kind == "database")
        .map(|c| c.source.as_str())
        .collect()
}

/// What an export holds, from its `backup.json`: the databases by name,
/// then the other items (`droplets`, `services/filesystem`, `settings`).
/// Every content recorded there went in: an export that cannot write one
/// leaves no file at all.
fn held(meta: &Meta) -> Vec<String> {
    let dbs = databases(meta);
    let mut out = Vec::new();
    if !dbs.is_empty() {
        out.push(format!("databases ({})", dbs.join(", ")));
    }
    out.extend(
        meta.contents
            .iter()
            .filter(|c| c.kind != "database")
            .map(|c| c.item.clone()),
    );
    out
}

/// One row of `list --json`.
#[derive(Serialize)]
struct Listing {
    path: String,
    size: u64,
    modified: u64,
    /// `cluster`, or `node NAME` for --only-this-node.
    scope: Option<String>,
    /// Item names as the export's `backup.json` records them.
    items: Option<Vec<String>>,
    product_version: Option<String>,
}

fn list(inv: &Invocation) -> Result<Outcome> {
    let dir = inv.require("dir")?;
    let json = inv.flag("json");
    let Some(listed) = artifacts_in(dir)? else {
        return Ok(if json {
            Outcome::ok("[]")
        } else {
            no_exports_yet(dir)
        });
    };
    let exports: Vec<(archive::Listed, Option<Meta>)> = listed
        .into_iter()
        .map(|l| {
            // backup.json is the first item, so this reads only the start.
            let meta = archive::open(&l.path)
                .and_then(|a| a.read(META, 1 << 20))
                .ok()
                .and_then(|b| serde_json::from_slice::<Meta>(&b).ok());
            (l, meta)
        })
        .collect();
    if json {
        let rows: Vec<Listing> = exports
            .into_iter()
            .map(|(l, meta)| Listing {
                path: l.path,
                size: l.size,
                modified: l.modified,
                scope: meta.as_ref().map(|m| m.scope.clone()),
                items: meta
                    .as_ref()
                    .map(|m| m.contents.iter().map(|c| c.item.clone()).collect()),
                product_version: meta.and_then(|m| m.product_version),
            })
            .collect();
        return Ok(Outcome::ok(
            serde_json::to_string_pretty(&rows).map_err(|e| Error::plugin(e.to_string()))?,
        ));
    }
    if exports.is_empty() {
        return Ok(Outcome::ok(format!("no exports in {dir}")));
    }
    let contents: Vec<String> = exports
        .iter()
        .map(|(_, meta)| match meta {
            Some(m) => format!("{}: {}", m.scope, held(m).join(", ")),
            None => "? (no backup.json)".into(),
        })
        .collect();
    let width = contents
        .iter()
        .map(String::len)
        .chain(["CONTENTS".len()])
        .max()
        .unwrap_or(0);
    let mut out = format!(
        "{:<16}  {:>10}  {:<width$}  PATH\n",
        "DATE (UTC)", "SIZE", "CONTENTS"
    );
    for ((l, _), contents) in exports.iter().zip(contents) {
        let s = utc_stamp(l.modified);
        let date = format!(
            "{}-{}-{} {}:{}",
            &s[..4],
            &s[4..6],
            &s[6..8],
            &s[9..11],
            &s[11..13]
        );
        out.push_str(&format!(
            "{date:<16}  {:>10}  {contents:<width$}  {}\n",
            human_size(l.size),
            l.path
        ));
    }
    Ok(Outcome::ok(out))
}

fn exports(n: usize) -> String {
    if n == 1 {
        "1 export".into()
    } else {
        format!("{n} exports")
    }
}

/// Whether `path` is a stackhost artifact whose manifest reads (it is at
/// the end, so this reads the whole stream once and catches a file cut
/// short): the only kind prune counts or deletes.
fn readable_artifact(path: &str) -> bool {
    archive::open(path).and_then(|a| a.items()).is_ok()
}

fn prune(inv: &Invocation) -> Result<Outcome> {
    let dir = inv.require("dir")?;
    let keep: usize = inv
        .require("keep")?
        .parse()
        .map_err(|_| Error::plugin("--keep takes a whole number"))?;
    let Some(listed) = artifacts_in(dir)? else {
        return Ok(no_exports_yet(dir));
    };
    // Foreign and damaged files neither count towards --keep nor are ever
    // deleted: counting them could leave fewer good exports than asked.
    let (good, skipped): (Vec<_>, Vec<_>) = listed
        .into_iter()
        .map(|l| l.path)
        .partition(|p| readable_artifact(p));
    let doomed = good.get(keep..).unwrap_or_default();
    for path in doomed {
        archive::remove(path)?;
    }
    let mut msg = if doomed.is_empty() {
        format!(
            "{} in {dir}, keeping {keep}: nothing to delete",
            exports(good.len())
        )
    } else {
        format!(
            "{} {} of {}: {}",
            if inv.dry_run() {
                "would delete"
            } else {
                "deleted"
            },
            doomed.len(),
            exports(good.len()),
            doomed.join(", ")
        )
    };
    if !skipped.is_empty() {
        msg.push_str(&format!(
            "; skipped (not readable stackhost exports, never deleted; `backup verify FILE` says why): {}",
            skipped.join(", ")
        ));
    }
    Ok(if doomed.is_empty() {
        Outcome::ok(msg)
    } else {
        Outcome::changed(msg)
    })
}

fn import(inv: &Invocation) -> Result<Outcome> {
    let file = inv.require("file")?;
    let artifact = archive::open(file)?;
    let bad = artifact.verify()?;
    if !bad.is_empty() {
        let names: Vec<&str> = bad.iter().map(|m| m.name.as_str()).collect();
        bail!(
            "{file} fails verification (damaged: {}); nothing was imported",
            names.join(", ")
        );
    }
    let meta: Meta = serde_json::from_slice(&artifact.read(META, 16 << 20)?)
        .map_err(|e| Error::plugin(format!("{file} has no readable {META}: {e}")))?;
    let mut done = Vec::new();
    let mut not_restored = Vec::new();
    for c in &meta.contents {
        let target = nodes::with_role(&c.role).into_iter().next();
        let Some(node) = target else {
            not_restored.push(format!(
                "{} {} (no node holds the {} role here)",
                c.kind, c.source, c.role
            ));
            continue;
        };
        match c.kind.as_str() {
            "database" => {
                postgres::restore(&node, &c.source, &artifact, &c.item)?;
                done.push(format!("database {} on {}", c.source, node.name()));
            }
            "droplets" | "services" => {
                let bytes = artifact.unpack(&c.item, &node, &c.source)?;
                done.push(format!("{} into {}:{} ({bytes} bytes)", c.kind, node.name(), c.source));
            }
            _ => not_restored.push(format!(
                "{} (kept in the export under `{}`; the target's own settings stay; review and copy by hand)",
                c.kind, c.item
            )),
        }
    }
    let mut msg = format!(
        "{} {file}: {}",
        if inv.dry_run() {
            "would import"
        } else {
            "imported"
        },
        done.join("; ")
    );
    if !not_restored.is_empty() {
        msg.push_str(&format!(". Not restored: {}", not_restored.join("; ")));
    }
    msg.push_str(". Apps that wrote database connection details during staging must be re-staged.");
    Ok(Outcome::changed(msg))
}

const CRON_FILE: &str = "/etc/cron.d/stackhost-backup";

/// The node scheduled exports run on: the guide's filesystem node (the
/// core node when no node holds that role).
fn schedule_node() -> Result<Node> {
    nodes::with_role("filesystem")
        .into_iter()
        .next()
        .map_or_else(core_node, Ok)
}

/// A cron schedule: five fields of digits, `*`, `/`, `,`, `-` or names.
fn check_cron(at: &str) -> Result<()> {
    let fields: Vec<&str> = at.split_whitespace().collect();
    let ok = fields.len() == 5
        && fields.iter().all(|f| {
            f.chars()
                .all(|c| c.is_ascii_alphanumeric() || "*/,-".contains(c))
        });
    ensure!(
        ok,
        "`{at}` is not a cron schedule (five fields, e.g. \"0 3 * * *\")"
    );
    Ok(())
}

/// Quote a word for sh, and escape `%`, which cron turns into a newline.
fn cron_word(w: &str) -> String {
    let plain = !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@".contains(c));
    let quoted = if plain {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    };
    quoted.replace('%', r"\%")
}

fn schedule(inv: &Invocation, step: &Step) -> Result<Outcome> {
    let node = step.node();
    let current = match node.read_to_string(CRON_FILE) {
        Ok(text) => Some(text),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e),
    };
    if inv.flag("list") {
        let entries: Vec<&str> = current
            .as_deref()
            .unwrap_or("")
            .lines()
            .filter(|l| l.contains(" root "))
            .collect();
        return Ok(Outcome::ok(if entries.is_empty() {
            format!("no export is scheduled on {}", node.name())
        } else {
            format!("on {} ({CRON_FILE}): {}", node.name(), entries.join("; "))
        }));
    }
    if inv.flag("remove") {
        if current.is_none() {
            return Ok(Outcome::ok(format!(
                "no export is scheduled on {}",
                node.name()
            )));
        }
        node.remove(CRON_FILE)?;
        return Ok(Outcome::changed(format!(
            "removed {CRON_FILE} on {}",
            node.name()
        )));
    }
    let dest = inv
        .value("dest")
        .ok_or_else(|| Error::plugin("schedule needs DEST (or --list / --remove)"))?;
    ensure!(
        dest.starts_with('/'),
        "DEST must be an absolute path on {}",
        node.name()
    );
    let at = inv.require("at")?;
    check_cron(at)?;
    if !node.exists("/usr/sbin/cron")? {
        let systemd = node.exists("/run/systemd/system")?;
        bail!(
            "cron is not installed on {}{}; install it (apt-get install cron)",
            node.name(),
            if systemd {
                " (systemd timers are not built yet)"
            } else {
                ""
            }
        );
    }
    let mut words = vec![
        inv.require("stackhost")?.to_string(),
        "run".into(),
        "backup".into(),
        "export".into(),
        "--cluster".into(),
    ];
    if names_file(dest) {
        // The same file every time: each run replaces the last one's
        // export, which stays in place until the new one is complete.
        words.push("--force".into());
    }
    if let Some(inventory) = inv.value("inventory-file") {
        words.extend(["--inventory".into(), inventory.to_string()]);
    }
    words.push(dest.to_string());
    let command: Vec<String> = words.iter().map(|w| cron_word(w)).collect();
    let text = format!(
        "# Scheduled export, installed by `stackhost run backup schedule`;\n\
         # remove it with `stackhost run backup schedule --remove`.\n\
         SHELL=/bin/sh\n\
         PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
         {at} root {}\n",
        command.join(" ")
    );
    if current.as_deref() == Some(text.as_str()) {
        return Ok(Outcome::ok(format!(
            "already scheduled on {}: {at}",
            node.name()
        )));
    }
    node.write_with_mode(CRON_FILE, &text, 0o644)?;
    let verb = if inv.dry_run() {
        "would schedule"
    } else {
        "scheduled"
    };
    Ok(Outcome::changed(format!(
        "{verb} the export on {} at `{at}` into {dest} ({CRON_FILE})",
        node.name()
    )))
}

export_plugin!(Backup);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_compressions() {
        assert_eq!(artifact_path("/x/y.tgz", "e", false), "/x/y.tgz");
        assert!(artifact_path("/x/", "e", true).starts_with("/x/e-"));
        assert!(artifact_path("/x", "e", false).ends_with(".tar.zst"));
        assert_eq!(compression_of("/a.tgz"), Compression::Gzip);
        assert!(names_file("/x/y.tar") && !names_file("/x/y.tar/"));
    }

    #[test]
    fn sizes_for_people() {
        assert_eq!(human_size(500), "500 B");
        assert_eq!(human_size(3000), "2.9 KiB");
        assert_eq!(human_size(2_200_000), "2.1 MiB");
        assert_eq!(human_size(5 << 30), "5.0 GiB");
    }
}
