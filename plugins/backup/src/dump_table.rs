//! `backup dump-table`: one table of one database, as pg_dump's custom
//! format or as plain SQL.

use crate::artifact::{DEFAULT_DEST, artifact_path, compression_of};
use stackhost_sdk::archive;
use stackhost_sdk::postgres;
use stackhost_sdk::prelude::*;

pub(crate) fn dump_table(inv: &Invocation, step: &Step) -> Result<Outcome> {
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
