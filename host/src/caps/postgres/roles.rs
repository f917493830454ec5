//! The PostgreSQL roles that enforce a plugin's postgres grant, kept by
//! the host with its own fixed SQL (psql as the `postgres` user on the
//! node, fed on stdin; names quoted here, never plugin SQL):
//!
//! - `stackhost_<plugin>`, the *login role*: LOGIN NOSUPERUSER NOCREATEDB
//!   NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS. Plugin SQL (queries,
//!   `.sql` restores), listings and table look-ups run as it, over the
//!   protocol. It is a member of the owner of each granted database whose
//!   owner is a *plain* role (not a superuser, no CREATEROLE or
//!   REPLICATION, a member of no role, owning no database outside the
//!   grant) and of nothing else, so PostgreSQL lets it do what that owner
//!   may do in a database the host connects it to, and only the granted
//!   databases are ever connected to. It is deliberately not a member of
//!   `pg_read_all_data`: that role reads `pg_authid` (every password hash)
//!   and a member can switch to it inside one statement
//!   (`set_config('role', ...)`).
//! - `stackhost_<plugin>_dump`, the *dump role*: LOGIN, member of
//!   `pg_read_all_data` only. Only `pg_dump` runs as it, with an argv the
//!   host builds (the database from the grant, a table the host looked up
//!   and quoted), so dumps of databases owned by `postgres` keep working.
//!   Plugin text never runs as it.
//!
//! Both get a fresh random password and `VALID UNTIL` half an hour ahead
//! once per run and node (renewed after 20 minutes); the roles persist
//! between runs but cannot log in with an expired password. Memberships
//! are recomputed from the grant every time, and any role granted
//! membership *in* them is revoked. A restore creates a missing database
//! owned by a NOLOGIN role of the database's name, and refuses a database
//! whose owner is not plain, naming why (see [`restore_owner`]).

use super::scope::Databases;
use crate::caps::bindings::WitError;
use crate::caps::ctx::CallCtx;
use crate::cluster::{ExecRequest, Node};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

/// The OS user psql runs as for the host's own SQL.
const PG_USER: &str = "postgres";
/// How long a run's passwords stay valid (SQL interval).
const PASSWORD_LIFETIME: &str = "30 minutes";
/// When the host renews them.
const RENEW_AFTER: Duration = Duration::from_secs(20 * 60);

/// A password, never printed.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// 32 random bytes from the kernel, hex: no quote, dollar or backslash
    /// can occur in it.
    fn random() -> Result<Secret, WitError> {
        use std::io::Read;
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(|e| WitError::Io(format!("cannot read /dev/urandom: {e}")))?;
        Ok(Secret(hex::encode(bytes)))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// A role and its password for this run.
#[derive(Debug, Clone)]
pub struct Role {
    pub name: String,
    pub password: Secret,
}

/// A granted database as the host found it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct DatabaseState {
    pub name: String,
    pub owner: String,
    /// Why its owner is not lent to the login role (None: it is).
    pub refusal: Option<String>,
}

/// What a plugin's calls on one node connect with.
#[derive(Debug)]
pub struct Session {
    /// PostgreSQL's port on the node's loopback.
    pub port: u16,
    pub login: Role,
    pub dump: Role,
    /// The granted databases that existed when the session was made.
    pub databases: Vec<DatabaseState>,
    made: Instant,
}

impl Session {
    /// The state of `database` when the session was made.
    pub fn database(&self, database: &str) -> Option<&DatabaseState> {
        self.databases.iter().find(|d| d.name == database)
    }
}

/// PostgreSQL's own quoting of an identifier (always quoted, `"` doubled).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A string literal that reads the same whatever
/// `standard_conforming_strings` says (`E''` when a backslash occurs),
/// as PostgreSQL's `quote_literal` writes it.
pub fn quote_literal(value: &str) -> String {
    let body = value.replace('\'', "''");
    if value.contains('\\') {
        format!("E'{}'", body.replace('\\', "\\\\"))
    } else {
        format!("'{body}'")
    }
}

/// The login and dump role names of plugin `plugin` (plugin names are
/// `[a-z][a-z0-9-]*`, at most 64 bytes; role names at most 63, so long
/// names are cut and keep a hash). Plugin names hold no `_`, so the
/// `_dump` suffix never collides with another plugin's login role.
pub fn role_names(plugin: &str) -> (String, String) {
    let base = if plugin.len() <= 48 {
        plugin.to_string()
    } else {
        use sha2::Digest;
        let digest = hex::encode(sha2::Sha256::digest(plugin.as_bytes()));
        format!("{}-{}", &plugin[..39], &digest[..8])
    };
    (
        format!("stackhost_{base}"),
        format!("stackhost_{base}_dump"),
    )
}

/// `col IN granted` as SQL.
fn granted_filter(databases: &Databases, col: &str) -> String {
    match databases {
        Databases::All => "true".into(),
        Databases::Only(names) if names.is_empty() => "false".into(),
        Databases::Only(names) => {
            let list: Vec<String> = names.iter().map(|n| quote_literal(n)).collect();
            format!("{col}::text = ANY (ARRAY[{}]::text[])", list.join(", "))
        }
    }
}

/// Why role row `o` (of pg_roles) must not be lent to a login role, as a
/// SQL text expression (NULL when it may).
fn refusal_sql(databases: &Databases) -> String {
    let outside = granted_filter(databases, "x.datname");
    format!(
        r"CASE
  WHEN o.rolsuper THEN 'is a superuser'
  WHEN o.rolcreaterole THEN 'has CREATEROLE'
  WHEN o.rolreplication THEN 'has REPLICATION'
  WHEN o.rolname LIKE E'stackhost\\_%' THEN 'is one of stackhost''s own roles'
  WHEN o.rolname LIKE E'pg\\_%' THEN 'is a predefined role'
  WHEN EXISTS (SELECT FROM pg_catalog.pg_auth_members a WHERE a.member = o.oid)
    THEN 'is a member of other roles (' || (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(g.rolname), ', ' ORDER BY g.rolname)
      FROM pg_catalog.pg_auth_members a JOIN pg_catalog.pg_roles g ON g.oid = a.roleid WHERE a.member = o.oid) || ')'
  WHEN EXISTS (SELECT FROM pg_catalog.pg_database x WHERE x.datdba = o.oid AND NOT ({outside}))
    THEN 'also owns databases outside the grant (' || (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(x.datname), ', ' ORDER BY x.datname)
      FROM pg_catalog.pg_database x WHERE x.datdba = o.oid AND NOT ({outside})) || ')'
END"
    )
}

/// Preamble of every script: no plugin-controlled search path, quiet.
const PREAMBLE: &str = "SET search_path = pg_catalog;\nSET client_min_messages = warning;\n";

/// The script that creates or refreshes both roles, syncs the login
/// role's memberships and reports the port and the granted databases as
/// one JSON line.
fn session_sql(login: &Role, dump: &Role, databases: &Databases) -> String {
    let (l_id, l_lit) = (quote_ident(&login.name), quote_literal(&login.name));
    let (d_id, d_lit) = (quote_ident(&dump.name), quote_literal(&dump.name));
    let lifetime = quote_literal(PASSWORD_LIFETIME);
    let mut sql = String::from(PREAMBLE);
    sql.push_str("SET password_encryption = 'scram-sha-256';\n");
    sql.push_str(&format!(
        "SELECT (pg_catalog.now() + {lifetime}::interval)::text AS stackhost_until \\gset\n"
    ));
    for (role, id, lit, inherit) in [
        (login, &l_id, &l_lit, "NOINHERIT"),
        (dump, &d_id, &d_lit, "INHERIT"),
    ] {
        // The password is hex (see Secret::random), so a plain literal.
        sql.push_str(&format!(
            "SELECT NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {lit}) AS stackhost_missing \\gset\n\
             \\if :stackhost_missing\n\
             CREATE ROLE {id};\n\
             \\endif\n\
             ALTER ROLE {id} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE {inherit} NOREPLICATION NOBYPASSRLS \
             PASSWORD '{}' VALID UNTIL :'stackhost_until';\n\
             ALTER ROLE {id} RESET ALL;\n",
            role.password.expose()
        ));
    }
    sql.push_str(&format!(
        "SELECT pg_catalog.format('ALTER ROLE %I IN DATABASE %I RESET ALL', r.rolname, d.datname)
  FROM pg_catalog.pg_db_role_setting s
  JOIN pg_catalog.pg_roles r ON r.oid = s.setrole
  JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase
  WHERE r.rolname IN ({l_lit}, {d_lit}) \\gexec
SELECT pg_catalog.format('REVOKE %I FROM %I', g.rolname, m.rolname)
  FROM pg_catalog.pg_auth_members a
  JOIN pg_catalog.pg_roles g ON g.oid = a.roleid
  JOIN pg_catalog.pg_roles m ON m.oid = a.member
  WHERE (m.rolname IN ({l_lit}, {d_lit}) OR g.rolname IN ({l_lit}, {d_lit}))
    AND NOT (m.rolname = {d_lit} AND g.rolname = 'pg_read_all_data') \\gexec
GRANT pg_read_all_data TO {d_id};
CREATE TEMP VIEW stackhost_databases AS
  SELECT d.datname::text AS name, o.rolname::text AS owner, {refusal} AS refusal
  FROM pg_catalog.pg_database d JOIN pg_catalog.pg_roles o ON o.oid = d.datdba
  WHERE NOT d.datistemplate AND {granted};
SELECT DISTINCT pg_catalog.format('GRANT %I TO %I', owner, {l_lit})
  FROM pg_temp.stackhost_databases WHERE refusal IS NULL \\gexec
SELECT pg_catalog.json_build_object(
  'port', pg_catalog.current_setting('port')::int,
  'databases', COALESCE((SELECT pg_catalog.json_agg(s ORDER BY s.name) FROM pg_temp.stackhost_databases s), '[]'::json));
",
        refusal = refusal_sql(databases),
        granted = granted_filter(databases, "d.datname"),
    ));
    sql
}

/// Run the host's own SQL with psql as `postgres` on the node, in one
/// transaction unless `autocommit`; its output. `secrets` are blanked out
/// of any error.
async fn admin(
    call: &CallCtx,
    node: &Node,
    what: &str,
    sql: String,
    autocommit: bool,
    secrets: &[&Secret],
) -> Result<String, WitError> {
    let mut args: Vec<String> = ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
        .map(String::from)
        .to_vec();
    if !autocommit {
        args.push("--single-transaction".into());
    }
    args.extend(["-d", "postgres", "-f", "-"].map(String::from));
    // On this machine as root, runuser needs no sudo (which a machine
    // without it lacks); elsewhere the transport switches user with sudo.
    let (program, user) = if node.info.is_local && running_as_root() {
        let mut argv: Vec<String> = ["-u", PG_USER, "--", "psql"].map(String::from).to_vec();
        argv.append(&mut args);
        args = argv;
        ("runuser", None)
    } else {
        ("psql", Some(PG_USER.to_string()))
    };
    let req = ExecRequest {
        program: program.into(),
        pinned: None,
        args,
        env: vec![],
        stdin: Some(sql.into_bytes()),
        user,
        cwd: Some("/".into()),
        timeout: call.exec_timeout,
        live: None,
    };
    let out = node.transport.exec(&req).await?;
    if out.status != 0 {
        let mut err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        for s in secrets {
            err = err.replace(s.expose(), "***");
        }
        return Err(WitError::Failed(format!(
            "postgres on node {}, database postgres ({what}, as the postgres user): {err}",
            node.info.name
        )));
    }
    // Only the script's last statement prints (psql -q): one JSON value,
    // which json_agg spreads over lines.
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Whether the host runs as root (`/proc/self` belongs to the process's
/// effective user).
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[derive(serde::Deserialize)]
struct SessionReport {
    port: u16,
    databases: Vec<DatabaseState>,
}

/// Make (or refresh) both roles on `node` for the calling plugin.
async fn make_session(call: &CallCtx, node: &Node) -> Result<Session, WitError> {
    let databases = Databases::of(super::scope::grant(call)?);
    let (login, dump) = role_names(&call.plugin);
    let login = Role {
        name: login,
        password: Secret::random()?,
    };
    let dump = Role {
        name: dump,
        password: Secret::random()?,
    };
    let what = format!("preparing roles {} and {}", login.name, dump.name);
    let line = admin(
        call,
        node,
        &what,
        session_sql(&login, &dump, &databases),
        false,
        &[&login.password, &dump.password],
    )
    .await?;
    let report: SessionReport = serde_json::from_str(&line).map_err(|e| {
        WitError::Failed(format!(
            "postgres on node {} ({what}): unexpected answer `{line}`: {e}",
            node.info.name
        ))
    })?;
    Ok(Session {
        port: report.port,
        login,
        dump,
        databases: report.databases,
        made: Instant::now(),
    })
}

type Slot = Arc<tokio::sync::Mutex<Option<Arc<Session>>>>;

/// Sessions of this process, by node, plugin and grant: one role refresh
/// per run and node, shared by concurrent steps.
static SESSIONS: LazyLock<Mutex<HashMap<String, Slot>>> = LazyLock::new(Default::default);

fn slot(call: &CallCtx, node: &Node) -> Result<Slot, WitError> {
    let databases = Databases::of(super::scope::grant(call)?);
    let key = format!(
        "{}\0{}\0{}\0{databases:?}",
        node.info.name, node.info.address, call.plugin
    );
    let mut map = SESSIONS.lock().unwrap_or_else(|p| p.into_inner());
    Ok(map.entry(key).or_default().clone())
}

/// The calling plugin's session on `node`, made on first use.
pub async fn session(call: &CallCtx, node: &Node) -> Result<Arc<Session>, WitError> {
    let slot = slot(call, node)?;
    let mut held = slot.lock().await;
    if let Some(s) = held.as_ref().filter(|s| s.made.elapsed() < RENEW_AFTER) {
        return Ok(s.clone());
    }
    let fresh = Arc::new(make_session(call, node).await?);
    *held = Some(fresh.clone());
    Ok(fresh)
}

/// A new session after `stale` stopped working (its password was
/// replaced by another stackhost process, say); a session made meanwhile
/// by another step is reused.
pub async fn renew(
    call: &CallCtx,
    node: &Node,
    stale: &Arc<Session>,
) -> Result<Arc<Session>, WitError> {
    let slot = slot(call, node)?;
    let mut held = slot.lock().await;
    if let Some(s) = held.as_ref().filter(|s| !Arc::ptr_eq(s, stale)) {
        return Ok(s.clone());
    }
    let fresh = Arc::new(make_session(call, node).await?);
    *held = Some(fresh.clone());
    Ok(fresh)
}

/// Granted databases that exist on `node` (templates left out), by name.
pub async fn list_databases(call: &CallCtx, node: &Node) -> Result<Vec<String>, WitError> {
    let databases = Databases::of(super::scope::grant(call)?);
    let sql = format!(
        "{PREAMBLE}SELECT COALESCE(pg_catalog.json_agg(d.datname::text ORDER BY d.datname), '[]'::json)
  FROM pg_catalog.pg_database d WHERE NOT d.datistemplate AND {};\n",
        granted_filter(&databases, "d.datname")
    );
    let line = admin(call, node, "listing databases", sql, false, &[]).await?;
    serde_json::from_str(&line).map_err(|e| {
        WitError::Failed(format!(
            "postgres on node {}: unexpected database list `{line}`: {e}",
            node.info.name
        ))
    })
}

#[derive(serde::Deserialize)]
struct TargetReport {
    /// The database's owner, when it exists.
    owner: Option<String>,
    /// Why that owner (or, for a missing database, the role of its name)
    /// cannot be lent.
    refusal: Option<String>,
}

/// The role a restore into `database` runs as (`SET ROLE`), made a member
/// of the login role. An existing database must be owned by a plain role;
/// a missing one is created, owned by a NOLOGIN role of its own name
/// (made when missing, and plain by the same rule).
// Long because it is a sequence of checked SQL statements that together
// decide the restore role.
pub async fn restore_owner(
    call: &CallCtx,
    node: &Node,
    session: &Session,
    database: &str,
) -> Result<String, WitError> {
    let databases = Databases::of(super::scope::grant(call)?);
    let db_lit = quote_literal(database);
    let sql = format!(
        "{PREAMBLE}SELECT pg_catalog.json_build_object(
  'owner', (SELECT o.rolname FROM pg_catalog.pg_database d JOIN pg_catalog.pg_roles o ON o.oid = d.datdba WHERE d.datname = {db_lit}),
  'refusal', COALESCE(
    (SELECT {refusal} FROM pg_catalog.pg_database d JOIN pg_catalog.pg_roles o ON o.oid = d.datdba WHERE d.datname = {db_lit}),
    (SELECT {refusal} FROM pg_catalog.pg_roles o WHERE o.rolname = {db_lit}
       AND NOT EXISTS (SELECT FROM pg_catalog.pg_database WHERE datname = {db_lit}))));\n",
        refusal = refusal_sql(&databases),
    );
    let what = format!("checking the owner of database {database}");
    let line = admin(call, node, &what, sql, false, &[]).await?;
    let report: TargetReport = serde_json::from_str(&line).map_err(|e| {
        WitError::Failed(format!(
            "postgres on node {} ({what}): unexpected answer `{line}`: {e}",
            node.info.name
        ))
    })?;
    let login = quote_ident(&session.login.name);
    let refused = |owner: &str, why: &str, way_out: &str| {
        WitError::PermissionDenied(format!(
            "restoring into database `{database}` on node {} is refused: its owner {owner} {why}. \
             A dump is SQL run by whoever restores it, so stackhost restores as the database's \
             owner and lends only plain owners (no superuser, CREATEROLE or REPLICATION, a member \
             of no role, owning only granted databases); {way_out}",
            node.info.name
        ))
    };
    match report.owner {
        Some(owner) => {
            if let Some(why) = report.refusal {
                return Err(refused(
                    &owner,
                    &why,
                    &format!(
                        "give `{database}` a plain owner (ALTER DATABASE ... OWNER TO, and its \
                         objects too), or drop it so that the restore creates it"
                    ),
                ));
            }
            let sql = format!("{PREAMBLE}GRANT {} TO {login};\n", quote_ident(&owner));
            admin(call, node, &what, sql, false, &[]).await?;
            Ok(owner)
        }
        None => {
            let owner = database.to_string();
            if owner.starts_with("stackhost_") || owner.starts_with("pg_") {
                return Err(refused(
                    &owner,
                    "would have a reserved role name",
                    "restore into a database with another name",
                ));
            }
            if let Some(why) = report.refusal {
                return Err(refused(
                    &owner,
                    &format!("(the existing role of that name) {why}"),
                    "create the database with a plain owner first",
                ));
            }
            let (id, lit) = (quote_ident(&owner), quote_literal(&owner));
            let sql = format!(
                "{PREAMBLE}SELECT NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {lit}) AS stackhost_missing \\gset
\\if :stackhost_missing
CREATE ROLE {id} NOLOGIN;
\\endif
CREATE DATABASE {id} OWNER {id} TEMPLATE template0;
GRANT {id} TO {login};
"
            );
            let what = format!("creating database {database} owned by role {owner}");
            admin(call, node, &what, sql, true, &[]).await?;
            Ok(owner)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_follows_postgres() {
        assert_eq!(quote_ident(r#"a"b"#), r#""a""b""#);
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal(r"a\'b"), r"E'a\\''b'");
    }

    #[test]
    fn role_names_fit_and_stay_apart() {
        let (login, dump) = role_names("backup");
        assert_eq!(
            (login.as_str(), dump.as_str()),
            ("stackhost_backup", "stackhost_backup_dump")
        );
        let long = format!("p{}", "x".repeat(63));
        let (login, dump) = role_names(&long);
        assert!(login.len() <= 63 && dump.len() <= 63, "{dump}");
        assert_ne!(
            role_names(&long).0,
            role_names(&format!("p{}y", "x".repeat(62))).0
        );
        // A plugin named x-dump does not get x's dump role.
        assert_ne!(role_names("x-dump").0, role_names("x").1);
    }

    #[test]
    fn names_reach_sql_only_quoted() {
        let role = |n: &str| Role {
            name: n.into(),
            password: Secret("00ff".into()),
        };
        let sql = session_sql(
            &role("stackhost_p"),
            &role("stackhost_p_dump"),
            &Databases::Only(vec![r"x'; DROP TABLE t; --\".into()]),
        );
        assert!(sql.contains(r"E'x''; DROP TABLE t; --\\'"), "{sql}");
        assert!(!sql.contains("'x'; DROP"));
    }
}
