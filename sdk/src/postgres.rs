//! PostgreSQL on nodes, through the node's own tools as the `postgres`
//! user. Dumps stream straight into an artifact and restores straight out
//! of one.

use crate::archive::{ArtifactReader, ArtifactWriter, Item};
use crate::bindings::stackhost::host::postgres as wit;
use crate::{Node, Result};

pub use wit::Table;

/// Databases on `node` (like `\list`), templates left out.
pub fn list_databases(node: &Node) -> Result<Vec<String>> {
    wit::list_databases(node.name()).map_err(Into::into)
}

/// Tables of `database` (like `\dt`).
pub fn list_tables(node: &Node, database: &str) -> Result<Vec<Table>> {
    wit::list_tables(node.name(), database).map_err(Into::into)
}

/// `pg_dump` `database` (custom format), or one `table` of it (plain SQL),
/// into `into` as item `name`.
pub fn dump(
    node: &Node,
    database: &str,
    table: Option<&str>,
    into: &ArtifactWriter,
    name: &str,
) -> Result<Item> {
    wit::dump(node.name(), database, table, &into.0, name).map_err(Into::into)
}

/// Restore item `name` of `from` into `database` on `node` (created when
/// missing), as the database's owner: `pg_restore` for a custom-format
/// dump, the protocol for a `.sql` item (psql meta-commands are refused).
pub fn restore(node: &Node, database: &str, from: &ArtifactReader, name: &str) -> Result<()> {
    wit::restore(node.name(), database, &from.0, name).map_err(Into::into)
}

/// A small read-only query; values as text, None for NULL.
pub fn query(node: &Node, database: &str, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
    wit::query(node.name(), database, sql).map_err(Into::into)
}
