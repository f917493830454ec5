//! The `postgres` Host impl.

use crate::bindings::WitError;
use crate::bindings::stackhost::host::archive::Item;
use crate::bindings::stackhost::host::postgres::{Host, Table};
use crate::caps::CapView;
use crate::caps::archive::{ArtifactReader, ArtifactWriter, ResView, art_err, run_blocking};
use crate::cluster::stream::{self, ChunkReader, ChunkWriter, Script};
use crate::cluster::{ExecRequest, Node};
use crate::grant::roles_allow;
use crate::runtime::CallCtx;
use std::sync::{Arc, Mutex};
use wasmtime::component::Resource;

type R<T> = wasmtime::Result<Result<T, WitError>>;

/// The user PostgreSQL's tools run as on a node.
const PG_USER: &str = "postgres";
/// Most rows `query` returns.
const MAX_ROWS: usize = 10_000;
const FIELD: char = '\u{1f}';
const RECORD: char = '\u{1e}';
const NULL: &str = "\u{1d}";

/// The node and database, checked against the postgres grant.
fn scoped(call: &CallCtx, node: &str, database: Option<&str>) -> Result<Arc<Node>, WitError> {
    let Some(grant) = &call.grant.capabilities.postgres else {
        return Err(WitError::PermissionDenied(
            "the plugin has no postgres grant".into(),
        ));
    };
    let node = CapView { call }.node(node)?;
    if !roles_allow(&grant.roles, &node.info.roles) {
        return Err(WitError::PermissionDenied(format!(
            "postgres on node {} is outside the grant (postgres roles: {})",
            node.info.name,
            grant.roles.join(", ")
        )));
    }
    if let Some(db) = database
        && !grant.databases.iter().any(|d| d == "*" || d == db)
    {
        return Err(WitError::PermissionDenied(format!(
            "database `{db}` on node {} is outside the grant (postgres databases: {})",
            node.info.name,
            grant.databases.join(", ")
        )));
    }
    Ok(node)
}

/// Run a read-only statement with psql as the postgres user; rows of
/// fields, NULL as None.
async fn psql(
    call: &CallCtx,
    node: &Node,
    database: &str,
    sql: &str,
) -> Result<Vec<Vec<Option<String>>>, WitError> {
    let req = ExecRequest {
        program: "psql".into(),
        args: [
            "-XAtq",
            "-v",
            "ON_ERROR_STOP=1",
            "-F",
            &FIELD.to_string(),
            "-R",
            &RECORD.to_string(),
            "-P",
            &format!("null={NULL}"),
            "-d",
            database,
            "-c",
            sql,
        ]
        .map(String::from)
        .to_vec(),
        env: vec![(
            "PGOPTIONS".into(),
            "-c default_transaction_read_only=on".into(),
        )],
        stdin: None,
        user: Some(PG_USER.into()),
        cwd: Some("/".into()),
        timeout: call.exec_timeout,
    };
    let out = node.transport.exec(&req).await?;
    if out.status != 0 {
        return Err(WitError::Failed(format!(
            "postgres on node {}, database {database}: {}",
            node.info.name,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let text = text.strip_suffix('\n').unwrap_or(&text);
    if text.is_empty() {
        return Ok(Vec::new());
    }
    Ok(text
        .split(RECORD)
        .take(MAX_ROWS)
        .map(|row| {
            row.split(FIELD)
                .map(|f| (f != NULL).then(|| f.to_string()))
                .collect()
        })
        .collect())
}

fn text(v: &Option<String>) -> String {
    v.clone().unwrap_or_default()
}

async fn dump(
    call: &CallCtx,
    node: &str,
    database: String,
    table: Option<String>,
    writer: (
        std::path::PathBuf,
        Option<Arc<Mutex<Option<crate::artifact::Writer>>>>,
    ),
    name: String,
) -> Result<Item, WitError> {
    crate::artifact::check_name(&name).map_err(art_err)?;
    let node = scoped(call, node, Some(&database))?;
    let what = match &table {
        Some(t) => format!("table {t} of database {database}"),
        None => format!("database {database}"),
    };
    let (artifact, inner) = writer;
    let Some(inner) = inner else {
        call.record(
            &node.info.name,
            "pg_dump",
            format!("{what} as {name} into {}", artifact.display()),
        );
        return Ok(Item {
            name,
            size: 0,
            sha256: String::new(),
        });
    };
    // Spool first: the item goes into the artifact only once pg_dump has
    // succeeded, so a failed dump leaves nothing partial behind.
    let (tx, rx) = stream::chunks();
    let spool_dir = artifact
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_else(|| "/tmp".into());
    let spooler = tokio::task::spawn_blocking(move || -> Result<(std::fs::File, u64), WitError> {
        let mut spool = tempfile::tempfile_in(&spool_dir)
            .map_err(|e| WitError::Io(format!("cannot spool in {}: {e}", spool_dir.display())))?;
        let size = std::io::copy(&mut ChunkReader::new(rx), &mut spool)
            .map_err(|e| WitError::Io(format!("spooling the dump: {e}")))?;
        Ok((spool, size))
    });
    let table_arg = table.clone().unwrap_or_default();
    let status = node
        .transport
        .pipe(
            &Script {
                op: "pg_dump",
                script: r#"cd / && if [ -n "$2" ]; then exec pg_dump --format=plain --table="$2" -- "$1"; else exec pg_dump --format=custom -- "$1"; fi"#,
                args: &[&database, &table_arg],
                user: Some(PG_USER),
            },
            None,
            Some(tx),
        )
        .await?;
    let spooled = spooler
        .await
        .map_err(|e| WitError::Failed(format!("dump worker failed: {e}")))?;
    if status.consumer_gone
        && let Err(e) = spooled
    {
        // Spooling failed (a full disk, say) and stopped pg_dump.
        return Err(e);
    }
    if status.status != 0 {
        return Err(WitError::Failed(format!(
            "pg_dump of {what} on node {} failed (exit {}): {}",
            node.info.name, status.status, status.stderr
        )));
    }
    let (spool, size) = spooled?;
    run_blocking(move || {
        use std::io::Seek;
        let mut spool = spool;
        spool
            .seek(std::io::SeekFrom::Start(0))
            .map_err(|e| WitError::Io(format!("rewinding the spool: {e}")))?;
        let mut guard = inner.lock().unwrap_or_else(|e| e.into_inner());
        let w = guard
            .as_mut()
            .ok_or_else(|| WitError::Failed("the artifact is already finished".into()))?;
        w.add_reader(&name, size, std::io::BufReader::new(spool))
            .map(|i| Item {
                name: i.name,
                size: i.size,
                sha256: i.sha256,
            })
            .map_err(art_err)
    })
    .await
}

async fn restore(
    call: &CallCtx,
    node: &str,
    database: String,
    reader: Arc<Mutex<crate::artifact::Reader>>,
    name: String,
) -> Result<(), WitError> {
    let node = scoped(call, node, Some(&database))?;
    call.refuse_mutation(&node.info.name, "pg_restore")?;
    if call.dry_run {
        call.record(
            &node.info.name,
            "pg_restore",
            format!("{name} into database {database}"),
        );
        return Ok(());
    }
    let kind = if name.ends_with(".sql") {
        "sql"
    } else {
        "custom"
    };
    let (tx, rx) = stream::chunks();
    let item = name.clone();
    let producer = tokio::task::spawn_blocking(move || {
        reader
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .copy_item(&item, ChunkWriter::new(tx))
            .map_err(art_err)
    });
    let status = node
        .transport
        .pipe(
            &Script {
                op: "pg_restore",
                script: r#"set -e; cd /
found=$(psql -XAtq -d postgres -v db="$1" <<'SQL'
select 1 from pg_database where datname = :'db';
SQL
)
[ -n "$found" ] || createdb -- "$1"
if [ "$2" = sql ]; then exec psql -XAtq -v ON_ERROR_STOP=1 -d "$1" -f -; fi
exec pg_restore --no-owner --exit-on-error -d "$1""#,
                args: &[&database, kind],
                user: Some(PG_USER),
            },
            Some(rx),
            None,
        )
        .await?;
    let produced = producer
        .await
        .map_err(|e| WitError::Failed(format!("restore worker failed: {e}")))?;
    produced?;
    if status.status != 0 {
        return Err(WitError::Failed(format!(
            "restoring {name} into database {database} on node {} failed (exit {}): {}",
            node.info.name, status.status, status.stderr
        )));
    }
    Ok(())
}

impl Host for ResView<'_> {
    async fn list_databases(&mut self, node: String) -> R<Vec<String>> {
        let call = self.call;
        Ok(call
            .timed(async {
                let node = scoped(call, &node, None)?;
                let rows = psql(
                    call,
                    &node,
                    "postgres",
                    "select datname from pg_database where not datistemplate order by 1",
                )
                .await?;
                Ok(rows.iter().map(|r| text(&r[0])).collect())
            })
            .await)
    }

    async fn list_tables(&mut self, node: String, database: String) -> R<Vec<Table>> {
        let call = self.call;
        Ok(call
            .timed(async {
                let node = scoped(call, &node, Some(&database))?;
                let rows = psql(
                    call,
                    &node,
                    &database,
                    "select schemaname, tablename, tableowner from pg_tables \
                     where schemaname not in ('pg_catalog', 'information_schema') order by 1, 2",
                )
                .await?;
                Ok(rows
                    .iter()
                    .map(|r| Table {
                        schema: text(&r[0]),
                        name: text(&r[1]),
                        owner: text(&r[2]),
                    })
                    .collect())
            })
            .await)
    }

    async fn dump(
        &mut self,
        node: String,
        database: String,
        table: Option<String>,
        into: Resource<ArtifactWriter>,
        name: String,
    ) -> R<Item> {
        let w = self.table.get(&into)?;
        let writer = (w.path.clone(), w.inner.clone());
        let call = self.call;
        Ok(call
            .timed(dump(call, &node, database, table, writer, name))
            .await)
    }

    async fn restore(
        &mut self,
        node: String,
        database: String,
        source: Resource<ArtifactReader>,
        name: String,
    ) -> R<()> {
        let reader = self.table.get(&source)?.inner.clone();
        let call = self.call;
        Ok(call
            .timed(restore(call, &node, database, reader, name))
            .await)
    }

    async fn query(
        &mut self,
        node: String,
        database: String,
        sql: String,
    ) -> R<Vec<Vec<Option<String>>>> {
        let call = self.call;
        Ok(call
            .timed(async {
                let node = scoped(call, &node, Some(&database))?;
                psql(call, &node, &database, &sql).await
            })
            .await)
    }
}
