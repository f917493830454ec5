//! Connections to PostgreSQL over its own protocol (tokio-postgres) as
//! the plugin's login role (see [`super::roles`]): to 127.0.0.1 on the
//! local node, through a `direct-tcpip` channel of the node's SSH
//! connection on a remote one. Only granted databases are connected to.
//! Plugin SQL is one statement of the extended query protocol (the server
//! refuses a second) inside a `READ ONLY` transaction the host starts,
//! with capped rows and bytes; `.sql` restores go statement by statement
//! (see [`super::sql_stream`]). No plugin text ever reaches psql.

use super::roles::{self, Session, quote_ident};
use super::sql_stream::{Piece, Splitter};
use super::text::{Raw, TextError, to_text};
use crate::caps::bindings::WitError;
use crate::caps::bindings::stackhost::host::postgres::Table;
use crate::caps::ctx::CallCtx;
use crate::cluster::{Node, Transport, pg_tunnel};
use futures_util::SinkExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

/// Most rows `query` returns.
pub const MAX_ROWS: usize = 10_000;
/// Most bytes of values `query` returns.
pub const MAX_BYTES: usize = 16 << 20;
/// Rows fetched per round trip.
const BATCH: i32 = 256;

/// What a connection is for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Purpose {
    /// Listings, look-ups and plugin queries: read-only by default, with
    /// the call's timeout as statement timeout.
    Read,
    /// A `.sql` restore: writes, no statement timeout.
    Restore,
}

/// One connection as the login role to one granted database.
pub struct Connection<'a> {
    node: &'a Node,
    database: String,
    client: Client,
    pub session: Arc<Session>,
}

/// `postgres on node N, database D: ...` with a WIT error kind that
/// matches what PostgreSQL said.
pub fn pg_error(
    node: &Node,
    database: &str,
    session: &Session,
    e: &tokio_postgres::Error,
) -> WitError {
    let place = format!("postgres on node {}, database {database}", node.info.name);
    let Some(db) = e.as_db_error() else {
        return WitError::Failed(format!(
            "{place}: {e} (stackhost connects as role {} to 127.0.0.1:{} on the node; is PostgreSQL \
             running and listening on localhost?)",
            session.login.name, session.port
        ));
    };
    let mut msg = format!("{place}: {}", db.message());
    if let Some(detail) = db.detail() {
        msg.push_str(&format!(" ({detail})"));
    }
    if let Some(hint) = db.hint() {
        msg.push_str(&format!("; hint: {hint}"));
    }
    let code = db.code();
    if *code == SqlState::INSUFFICIENT_PRIVILEGE || *code == SqlState::READ_ONLY_SQL_TRANSACTION {
        let lent = match session.database(database) {
            Some(d) if d.refusal.is_none() => format!("the privileges of its owner {}", d.owner),
            Some(d) => format!(
                "no owner's privileges (its owner {} {}, so it is not lent)",
                d.owner,
                d.refusal.as_deref().unwrap_or("")
            ),
            None => "no owner's privileges".into(),
        };
        msg.push_str(&format!(
            " [the plugin runs as role {} with {lent}; queries are read-only]",
            session.login.name
        ));
        return WitError::PermissionDenied(msg);
    }
    if *code == SqlState::INVALID_PASSWORD || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
    {
        msg.push_str(&format!(
            " (stackhost logs in as role {} over TCP to 127.0.0.1:{} with a password; pg_hba.conf \
             must allow scram-sha-256 from 127.0.0.1, as Debian's default does)",
            session.login.name, session.port
        ));
        return WitError::Failed(msg);
    }
    if *code == SqlState::INVALID_CATALOG_NAME {
        return WitError::NotFound(msg);
    }
    if *code == SqlState::QUERY_CANCELED {
        return WitError::Timeout(msg);
    }
    WitError::Failed(msg)
}

impl<'a> Connection<'a> {
    /// Connect to `database` (already checked against the grant) as the
    /// calling plugin's login role; a password replaced meanwhile (by
    /// another stackhost process) is renewed once.
    pub async fn open(
        call: &CallCtx,
        node: &'a Node,
        database: &str,
        purpose: Purpose,
    ) -> Result<Connection<'a>, WitError> {
        let mut session = roles::session(call, node).await?;
        let mut renewed = false;
        loop {
            match connect(node, &session, database, purpose, call.exec_timeout).await {
                Ok(client) => {
                    return Ok(Connection {
                        node,
                        database: database.to_string(),
                        client,
                        session,
                    });
                }
                Err(Connect::Pg(e))
                    if !renewed && e.code() == Some(&SqlState::INVALID_PASSWORD) =>
                {
                    session = roles::renew(call, node, &session).await?;
                    renewed = true;
                }
                Err(Connect::Pg(e)) => return Err(pg_error(node, database, &session, &e)),
                Err(Connect::Node(e)) => return Err(e),
            }
        }
    }

    fn fail(&self, e: tokio_postgres::Error) -> WitError {
        pg_error(self.node, &self.database, &self.session, &e)
    }

    /// The owner lent to the login role for this database, if any.
    fn owner(&self) -> Option<String> {
        self.session
            .database(&self.database)
            .filter(|d| d.refusal.is_none())
            .map(|d| d.owner.clone())
    }

    /// Run one plugin statement read-only as the database's owner (when
    /// lent): rows of text values, None for NULL.
    pub async fn query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, WitError> {
        let owner = self.owner();
        let (node, database) = (self.node.info.name.clone(), self.database.clone());
        let tx = self
            .client
            .build_transaction()
            .read_only(true)
            .start()
            .await
            .map_err(|e| pg_error(self.node, &database, &self.session, &e))?;
        let fail = |e: tokio_postgres::Error| pg_error(self.node, &database, &self.session, &e);
        if let Some(owner) = owner {
            tx.batch_execute(&format!("SET LOCAL ROLE {}", quote_ident(&owner)))
                .await
                .map_err(fail)?;
        }
        // Prepared (extended protocol): the server refuses more than one
        // statement.
        let statement = tx.prepare(sql).await.map_err(fail)?;
        let portal = tx.bind(&statement, &[]).await.map_err(fail)?;
        let mut rows = Vec::new();
        let mut bytes = 0usize;
        loop {
            let batch = tx.query_portal(&portal, BATCH).await.map_err(fail)?;
            let done = batch.len() < BATCH as usize;
            for row in batch {
                if rows.len() == MAX_ROWS {
                    return Err(WitError::InvalidArgument(format!(
                        "the query on node {node}, database {database} returns more than {MAX_ROWS} \
                         rows, the cap of postgres.query; narrow it (WHERE, LIMIT) or dump the table"
                    )));
                }
                bytes += row.raw_size_bytes();
                if bytes > MAX_BYTES {
                    return Err(WitError::InvalidArgument(format!(
                        "the query on node {node}, database {database} returns more than {} MiB, \
                         the cap of postgres.query; select fewer columns or rows, or dump the table",
                        MAX_BYTES >> 20
                    )));
                }
                let mut values = Vec::with_capacity(row.len());
                for (i, column) in row.columns().iter().enumerate() {
                    let Raw(raw) = row.try_get(i).map_err(fail)?;
                    let text = match raw {
                        None => None,
                        Some(raw) => Some(to_text(column.type_(), raw).map_err(|e| {
                            let why = match e {
                                TextError::Unsupported(ty) => format!(
                                    "has type {ty}, which postgres.query does not return as text; \
                                     cast it in the query (`{}::text`)",
                                    column.name()
                                ),
                                TextError::Malformed(m) => m,
                            };
                            WitError::InvalidArgument(format!(
                                "the query on node {node}, database {database}: column `{}` {why}",
                                column.name()
                            ))
                        })?),
                    };
                    values.push(text);
                }
                rows.push(values);
            }
            if done {
                break;
            }
        }
        Ok(rows)
    }

    /// The database's tables, schemas `pg_catalog` and
    /// `information_schema` left out.
    pub async fn tables(&mut self) -> Result<Vec<Table>, WitError> {
        let sql = "SELECT schemaname::text, tablename::text, tableowner::text \
                   FROM pg_catalog.pg_tables \
                   WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2";
        let rows = self
            .client
            .query(sql, &[])
            .await
            .map_err(|e| self.fail(e))?;
        rows.iter()
            .map(|r| {
                Ok(Table {
                    schema: r.try_get(0).map_err(|e| self.fail(e))?,
                    name: r.try_get(1).map_err(|e| self.fail(e))?,
                    owner: r.try_get(2).map_err(|e| self.fail(e))?,
                })
            })
            .collect()
    }

    /// The schema and name of the relation `spec` names (`name` or
    /// `schema.name`, exactly), looked up in the catalog: never a system
    /// catalog, never a pattern.
    pub async fn find_table(&mut self, spec: &str) -> Result<(String, String), WitError> {
        let sql = "SELECT n.nspname::text, c.relname::text \
                   FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                   WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') \
                     AND (c.relname::text = $1::text OR n.nspname::text || '.' || c.relname::text = $1::text) \
                   ORDER BY 1, 2";
        let rows = self
            .client
            .query(sql, &[&spec])
            .await
            .map_err(|e| self.fail(e))?;
        let mut found: Vec<(String, String)> = Vec::new();
        for r in &rows {
            found.push((
                r.try_get(0).map_err(|e| self.fail(e))?,
                r.try_get(1).map_err(|e| self.fail(e))?,
            ));
        }
        let system = |schema: &str| schema == "information_schema" || schema.starts_with("pg_");
        let (catalogs, own): (Vec<_>, Vec<_>) = found.into_iter().partition(|(s, _)| system(s));
        let place = format!("database {} on node {}", self.database, self.node.info.name);
        match own.as_slice() {
            [one] => Ok(one.clone()),
            [] if !catalogs.is_empty() => Err(WitError::PermissionDenied(format!(
                "`{spec}` in {place} is PostgreSQL's own catalog ({}), not a table of the \
                 database; dumps hold the database's own tables only",
                catalogs
                    .iter()
                    .map(|(s, n)| format!("{s}.{n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
            [] => Err(WitError::NotFound(format!(
                "no table `{spec}` in {place} (give its exact name, or schema.name; patterns are \
                 not accepted)"
            ))),
            many => Err(WitError::InvalidArgument(format!(
                "`{spec}` in {place} names several tables ({}); give schema.name",
                many.iter()
                    .map(|(s, n)| format!("{s}.{n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Restore plain SQL from `chunks` as `owner` (`SET ROLE`), statement
    /// by statement, `COPY ... FROM stdin` data through COPY; stops at the
    /// first error.
    pub async fn restore_sql(
        &mut self,
        owner: &str,
        mut chunks: mpsc::Receiver<Vec<u8>>,
    ) -> Result<(), WitError> {
        let place = format!(
            "restoring into database {} on node {}",
            self.database, self.node.info.name
        );
        self.client
            .batch_execute(&format!("SET ROLE {}", quote_ident(owner)))
            .await
            .map_err(|e| self.fail(e))?;
        let mut splitter = Splitter::new();
        let mut pieces = Vec::new();
        let mut copy = None;
        loop {
            let chunk = chunks.recv().await;
            let split = match &chunk {
                Some(data) => splitter.feed(data, &mut pieces),
                None => splitter.finish(&mut pieces),
            };
            split.map_err(|e| WitError::PermissionDenied(format!("{place}: {e}")))?;
            for piece in pieces.drain(..) {
                match piece {
                    Piece::Statement(sql) => self
                        .client
                        .batch_execute(&sql)
                        .await
                        .map_err(|e| self.fail(e))?,
                    Piece::Copy(sql) => {
                        let sink = self
                            .client
                            .copy_in::<_, std::io::Cursor<Vec<u8>>>(&sql)
                            .await
                            .map_err(|e| self.fail(e))?;
                        copy = Some(Box::pin(sink));
                    }
                    Piece::CopyData(data) => {
                        let Some(sink) = copy.as_mut() else {
                            continue;
                        };
                        sink.send(std::io::Cursor::new(data))
                            .await
                            .map_err(|e| self.fail(e))?;
                    }
                    Piece::CopyEnd => {
                        if let Some(sink) = copy.take() {
                            let mut sink = sink;
                            sink.as_mut().finish().await.map_err(|e| self.fail(e))?;
                        }
                    }
                }
            }
            if chunk.is_none() {
                return Ok(());
            }
        }
    }
}

/// Why a connection could not be made.
enum Connect {
    Pg(tokio_postgres::Error),
    Node(WitError),
}

async fn connect(
    node: &Node,
    session: &Session,
    database: &str,
    purpose: Purpose,
    timeout: Duration,
) -> Result<Client, Connect> {
    let mut config = tokio_postgres::Config::new();
    let millis = timeout.as_millis();
    let options = match purpose {
        Purpose::Read => format!(
            "-c TimeZone=UTC -c default_transaction_read_only=on -c statement_timeout={millis}"
        ),
        Purpose::Restore => "-c TimeZone=UTC".to_string(),
    };
    config
        .user(&session.login.name)
        .password(session.login.password.expose())
        .dbname(database)
        .application_name("stackhost")
        .options(&options);
    let unreachable = |why: String| {
        Connect::Node(WitError::Unreachable(format!(
            "postgres on node {}, database {database}: {why}",
            node.info.name
        )))
    };
    let connecting = async {
        match &node.transport {
            Transport::Local(_) => {
                config.host("127.0.0.1").port(session.port);
                let (client, connection) = config.connect(NoTls).await.map_err(Connect::Pg)?;
                tokio::spawn(connection);
                Ok(client)
            }
            Transport::Ssh(ssh) => {
                let stream = pg_tunnel::open(&node.info.name, ssh, session.port)
                    .await
                    .map_err(|e| Connect::Node(e.into()))?;
                let (client, connection) = config
                    .connect_raw(stream, NoTls)
                    .await
                    .map_err(Connect::Pg)?;
                tokio::spawn(connection);
                Ok(client)
            }
        }
    };
    match tokio::time::timeout(timeout, connecting).await {
        Ok(r) => r,
        Err(_) => Err(unreachable(format!(
            "no connection to 127.0.0.1:{} within {timeout:?}",
            session.port
        ))),
    }
}
