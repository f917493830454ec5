//! The `postgres` Host impl: each call checked against the grant
//! ([`super::scope`]), then carried out as the plugin's limited roles
//! ([`super::roles`]): over the protocol ([`super::session`]) or with the
//! node's `pg_dump` / `pg_restore` ([`super::tools`]).

use super::Postgres;
use crate::caps::ctx::CapsView;
use crate::caps::linker::Link;
use wasmtime::component::{HasData, Linker};

use super::roles;
use super::scope::scoped;
use super::session::{Connection, Purpose};
use super::tools;
use crate::artifact::handle::{ArtifactReader, ArtifactWriter};
use crate::caps::archive::{art_err, run_blocking};
use crate::caps::bindings::WitError;
use crate::caps::bindings::stackhost::host::archive::Item;
use crate::caps::bindings::stackhost::host::postgres::{Host, Table};
use crate::caps::ctx::CallCtx;
use crate::caps::ctx::CapsCtxView;
use crate::cluster::stream::{self, ChunkReader, ChunkWriter};
use std::sync::{Arc, Mutex};
use wasmtime::component::Resource;

type R<T> = wasmtime::Result<Result<T, WitError>>;

// Long because it is scope, dry-run record, role session, spool, pg_dump and
// the add in one sequence, each failure leaving nothing behind.
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
    // The table named exactly, looked up as the login role; never a
    // pattern, never a system catalog.
    let (session, pattern) = match &table {
        Some(spec) => {
            let mut conn = Connection::open(call, &node, &database, Purpose::Read).await?;
            let (schema, name) = conn.find_table(spec).await?;
            (
                conn.session.clone(),
                Some(tools::exact_table_pattern(&schema, &name)),
            )
        }
        None => (roles::session(call, &node).await?, None),
    };
    // Spool first, beside the artifact through its directory's handle:
    // the item goes into the artifact only once pg_dump has succeeded, so
    // a failed dump leaves nothing partial behind.
    let spool = {
        let inner = inner.clone();
        run_blocking(move || {
            let guard = inner.lock().unwrap_or_else(|e| e.into_inner());
            let w = guard
                .as_ref()
                .ok_or_else(|| WitError::Failed("the artifact is already finished".into()))?;
            w.spool_file().map_err(art_err)
        })
        .await?
    };
    let (tx, rx) = stream::chunks();
    let spooler = tokio::task::spawn_blocking(move || -> Result<(std::fs::File, u64), WitError> {
        let mut spool = spool;
        let size = std::io::copy(&mut ChunkReader::new(rx), &mut spool)
            .map_err(|e| WitError::Io(format!("spooling the dump: {e}")))?;
        Ok((spool, size))
    });
    let status = tools::pg_dump(&node, &session, &database, pattern.as_deref(), tx).await?;
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
            "pg_dump of {what} on node {} (as role {}) failed (exit {}): {}",
            node.info.name, session.dump.name, status.status, status.stderr
        )));
    }
    let (spool, size) = spooled?;
    run_blocking(move || {
        let mut guard = inner.lock().unwrap_or_else(|e| e.into_inner());
        let w = guard
            .as_mut()
            .ok_or_else(|| WitError::Failed("the artifact is already finished".into()))?;
        w.add_spool(&name, spool, size)
            .map(|i| Item {
                name: i.name,
                size: i.size,
                sha256: i.sha256,
            })
            .map_err(art_err)
    })
    .await
}

/// Restore item `name` into `database` as the database's owner (a plain
/// role, see [`roles::restore_owner`]): pg_restore for a custom-format
/// dump, the protocol for `.sql`.
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
    let session = roles::session(call, &node).await?;
    let owner = roles::restore_owner(call, &node, &session, &database).await?;
    let (tx, rx) = stream::chunks();
    let item = name.clone();
    let producer = tokio::task::spawn_blocking(move || {
        reader
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .copy_item(&item, ChunkWriter::new(tx))
            .map_err(art_err)
    });
    let restored = if name.ends_with(".sql") {
        let mut conn = Connection::open(call, &node, &database, Purpose::Restore).await?;
        conn.restore_sql(&owner, rx).await
    } else {
        let status = tools::pg_restore(&node, &session, &database, &owner, rx).await?;
        if status.status != 0 {
            Err(WitError::Failed(format!(
                "restoring {name} into database {database} on node {} (pg_restore as role {} \
                 with --role={owner}) failed (exit {}): {}",
                node.info.name, session.login.name, status.status, status.stderr
            )))
        } else {
            Ok(())
        }
    };
    let produced = producer
        .await
        .map_err(|e| WitError::Failed(format!("restore worker failed: {e}")))?;
    // The restore's own error says more than a reader that lost its
    // consumer.
    restored?;
    produced?;
    Ok(())
}

impl Host for CapsCtxView<'_> {
    async fn list_databases(&mut self, node: String) -> R<Vec<String>> {
        let call = self.call;
        Ok(call
            .timed(async {
                let node = scoped(call, &node, None)?;
                roles::list_databases(call, &node).await
            })
            .await)
    }

    async fn list_tables(&mut self, node: String, database: String) -> R<Vec<Table>> {
        let call = self.call;
        Ok(call
            .timed(async {
                let node = scoped(call, &node, Some(&database))?;
                let mut conn = Connection::open(call, &node, &database, Purpose::Read).await?;
                conn.tables().await
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
                let mut conn = Connection::open(call, &node, &database, Purpose::Read).await?;
                conn.query(&sql).await
            })
            .await)
    }
}

impl HasData for Postgres {
    type Data<'a> = CapsCtxView<'a>;
}

impl Link for Postgres {
    fn add_to_linker<T: CapsView>(linker: &mut Linker<T>) -> anyhow::Result<()> {
        crate::caps::bindings::stackhost::host::postgres::add_to_linker::<T, Postgres>(
            linker,
            |s| s.caps(),
        )
        .map_err(anyhow::Error::from)
    }
}
