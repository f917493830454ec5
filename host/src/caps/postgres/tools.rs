//! `pg_dump` and `pg_restore` on the node, streamed (see
//! [`crate::cluster::stream`]), run as the transport's own user and
//! logged in to PostgreSQL over TCP as a limited role, never as
//! `postgres`. The role's password is the first line of the script's
//! stdin, read into `PGPASSWORD` inside the script: it is in no argv, so
//! not in the node's process list, and never in an error. The connection
//! string is built here with libpq's quoting, so a database name cannot
//! add connection options; a table is passed as a quoted exact name the
//! host looked up, never a pattern from the plugin.

use super::roles::{Role, Session};
use crate::cluster::Node;
use crate::cluster::stream::{PipeStatus, Script, chunks};
use tokio::sync::mpsc;

/// A libpq connection-string value: quoted, `\` and `'` escaped.
fn conninfo_value(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The connection string to `database` on the node's loopback as `role`.
pub fn conninfo(session: &Session, role: &Role, database: &str) -> String {
    format!(
        "host=127.0.0.1 port={} user={} dbname={} application_name=stackhost",
        session.port,
        conninfo_value(&role.name),
        conninfo_value(database)
    )
}

/// A `pg_dump --table` pattern that matches exactly `schema.name`
/// (inside double quotes every character is literal, `"` doubled).
pub fn exact_table_pattern(schema: &str, name: &str) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    format!("{}.{}", quote(schema), quote(name))
}

/// The dump script: `$1` the connection string, `$2` the exact table
/// pattern (empty: the whole database, custom format). A table dump is
/// plain SQL without `OWNER TO`, so a non-superuser can restore it.
const DUMP: &str = r#"IFS= read -r PGPASSWORD || exit 90
export PGPASSWORD
cd / || exit 90
if [ -n "$2" ]; then
  exec pg_dump --format=plain --no-owner --strict-names --table="$2" --dbname="$1" </dev/null
fi
exec pg_dump --format=custom --dbname="$1" </dev/null"#;

/// The restore script: `$1` the connection string, `$2` the database
/// owner the restore runs as (`SET ROLE`).
const RESTORE: &str = r#"IFS= read -r PGPASSWORD || exit 90
export PGPASSWORD
cd / || exit 90
exec pg_restore --role="$2" --no-owner --exit-on-error --dbname="$1""#;

/// The first chunk of a script's stdin: the password line.
fn password_line(role: &Role) -> Vec<u8> {
    format!("{}\n", role.password.expose()).into_bytes()
}

/// Run `pg_dump` as the dump role, its output sent chunk by chunk to
/// `out`.
pub async fn pg_dump(
    node: &Node,
    session: &Session,
    database: &str,
    table: Option<&str>,
    out: mpsc::Sender<Vec<u8>>,
) -> Result<PipeStatus, crate::cluster::NodeError> {
    let (tx, rx) = chunks();
    // Capacity is 8 chunks: this send never waits.
    let _ = tx.send(password_line(&session.dump)).await;
    drop(tx);
    let conn = conninfo(session, &session.dump, database);
    node.transport
        .pipe(
            &Script {
                op: "pg_dump",
                script: DUMP,
                args: &[&conn, table.unwrap_or("")],
                user: None,
            },
            Some(rx),
            Some(out),
        )
        .await
}

/// Run `pg_restore` as the login role with `--role=owner`, fed the
/// custom-format dump from `dump` after the password line.
pub async fn pg_restore(
    node: &Node,
    session: &Session,
    database: &str,
    owner: &str,
    mut dump: mpsc::Receiver<Vec<u8>>,
) -> Result<PipeStatus, crate::cluster::NodeError> {
    let (tx, rx) = chunks();
    let first = password_line(&session.login);
    let feed = async move {
        if tx.send(first).await.is_err() {
            return;
        }
        while let Some(chunk) = dump.recv().await {
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
    };
    let conn = conninfo(session, &session.login, database);
    let script = Script {
        op: "pg_restore",
        script: RESTORE,
        args: &[&conn, owner],
        user: None,
    };
    let (status, ()) = tokio::join!(node.transport.pipe(&script, Some(rx), None), feed);
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_add_connection_options() {
        assert_eq!(
            conninfo_value(r"aok' host=/run/postgresql user=postgres \"),
            r"'aok\' host=/run/postgresql user=postgres \\'"
        );
    }

    #[test]
    fn table_patterns_are_exact() {
        assert_eq!(exact_table_pattern("public", "t*"), r#""public"."t*""#);
        assert_eq!(exact_table_pattern("a.b", r#"x"y"#), r#""a.b"."x""y""#);
    }
}
