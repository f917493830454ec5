//! A hostile plugin against the `postgres` capability (fixture
//! `pg-hostile`, granted the one database `aok`), on a real PostgreSQL 15
//! in a test-cluster node reached over SSH: leaving the read-only
//! transaction, reading server files, running programs, psql
//! meta-commands in queries and `.sql` restores, extensions reaching
//! other databases, `pg_authid` through a dump, crafted dumps, listings
//! beyond the grant. Each case checks the node afterwards (the other
//! database's table, files a program would have written, `pg_authid` in
//! artifacts); the honest flows (query, dump of a table and of the
//! database, restores) must keep working. One case runs against this
//! machine's own PostgreSQL when it has one.

mod support;

#[path = "support/cluster.rs"]
mod cluster;

use cluster::TestCluster;
use serde_json::Value;
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use support::{Sandbox, only_step, refs};

/// Where artifacts go on this machine and crafted dumps lie on the node
/// (the fixture's archive and fs grants).
const DIR: &str = "/tmp/stackhost-pg";
/// The fixture's login role, as the host names it.
const LOGIN: &str = "stackhost_pg-hostile";
/// Files a hostile program or shell command would leave on the node.
const PWNED: &[&str] = &[
    "/tmp/pwned-copy-program",
    "/tmp/pwned-copy-file",
    "/tmp/pwned-shell",
    "/tmp/pwned-g",
    "/tmp/pwned-restore-shell",
    "/tmp/pwned-restore-program",
    "/var/lib/postgresql/pwned-copy-program",
];

/// The one test cluster of this file: node 1 with PostgreSQL, seeded
/// once; removed when the test binary exits, with this run's artifacts.
fn cluster() -> &'static TestCluster {
    static CLUSTER: OnceLock<TestCluster> = OnceLock::new();
    extern "C" fn down() {
        // This run's artifacts (see `artifact`).
        let mine = format!("{}-", std::process::id());
        for entry in std::fs::read_dir(DIR).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with(&mine) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    CLUSTER.get_or_init(|| {
        let c = TestCluster::up(1, "hostile-pg");
        c.remove_at_exit();
        // SAFETY: registers a plain function to run at exit.
        unsafe { libc::atexit(down) };
        c.sh(1, "pg_createcluster 15 main --start >/dev/null");
        seed(&|sql, db| psql_on(&c, db, sql), &|script| {
            c.sh(1, script);
        });
        c
    })
}

/// The cases change `aok` (restores, owner switches): one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Run SQL as postgres on node 1 (the test's own view, not stackhost's).
fn psql_on(c: &TestCluster, db: &str, sql: &str) -> String {
    let out = Command::new("docker")
        .args(["exec", &c.node(1), "runuser", "-u", "postgres", "--"])
        .args([
            "psql",
            "-XAtq",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            db,
            "-c",
            sql,
        ])
        .output()
        .expect("docker runs");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn psql(db: &str, sql: &str) -> String {
    psql_on(cluster(), db, sql)
}

/// `aok` owned by the plain role `aok_owner`, with its table `t`; `other`
/// owned by postgres with a secret; a login role with a password, so
/// pg_authid holds a SCRAM hash.
fn seed(sql: &dyn Fn(&str, &str) -> String, sh: &dyn Fn(&str)) {
    sql(
        "CREATE ROLE aok_owner NOLOGIN; CREATE ROLE app LOGIN PASSWORD 'app-secret-password'",
        "postgres",
    );
    sql("CREATE DATABASE aok OWNER aok_owner", "postgres");
    sql("CREATE DATABASE other", "postgres");
    sql(
        "SET ROLE aok_owner; CREATE TABLE t (id int PRIMARY KEY, note text); \
         INSERT INTO t VALUES (1, 'first'), (2, 'second'), (3, NULL)",
        "aok",
    );
    sql(
        "CREATE TABLE secret (s text); INSERT INTO secret VALUES ('top secret')",
        "other",
    );
    sh(&format!("mkdir -p {DIR}"));
}

/// `run pg-hostile ARGS --json` on node 1: (exit code, status, message).
fn run(s: &Sandbox, args: &[&str]) -> (i32, String, String) {
    let c = cluster();
    let mut all = vec!["pg-hostile"];
    all.extend_from_slice(args);
    let (code, r): (i32, Value) = s.report(&refs(&c.args(&all)));
    let (status, message) = only_step(&r);
    (code, status, message)
}

fn sandbox() -> Sandbox {
    std::fs::create_dir_all(DIR).unwrap();
    let s = Sandbox::new();
    s.install("pg-hostile");
    s
}

/// A fresh artifact path on this machine.
fn artifact(name: &str) -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{DIR}/{}-{n}-{name}.tar", std::process::id())
}

/// One item of an (uncompressed) artifact.
fn item(artifact: &str, name: &str) -> Vec<u8> {
    let out = Command::new("tar")
        .args(["-xOf", artifact, name])
        .output()
        .unwrap();
    assert!(out.status.success(), "{artifact}: no {name}");
    out.stdout
}

/// A custom-format dump as SQL text (this machine's pg_restore).
fn custom_as_sql(dump: &[u8]) -> String {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), dump).unwrap();
    let out = Command::new("pg_restore")
        .arg("-f")
        .arg("-")
        .arg(file.path())
        .output()
        .expect("pg_restore on this machine");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Nothing on the node that a hostile statement would have written, the
/// other database's secret and aok's rows still there, and the login
/// role still no superuser.
fn assert_node_unharmed() {
    let c = cluster();
    let left = c.sh(
        1,
        &format!(
            "for f in {}; do [ -e $f ] && echo $f; done; true",
            PWNED.join(" ")
        ),
    );
    assert_eq!(left.trim(), "", "files written by hostile statements");
    assert_eq!(psql("other", "SELECT s FROM secret"), "top secret");
    assert_eq!(psql("aok", "SELECT count(*) FROM t"), "3");
    assert_eq!(
        psql(
            "postgres",
            &format!(
                "SELECT rolsuper, rolcreaterole, rolcreatedb, rolinherit FROM pg_roles WHERE rolname = '{LOGIN}'"
            )
        ),
        "f|f|f|f"
    );
    assert_eq!(
        psql(
            "aok",
            "SELECT count(*) FROM pg_extension WHERE extname IN ('dblink', 'postgres_fdw')"
        ),
        "0"
    );
}

/// Expect a failed step whose message holds every one of `needles`.
fn refused(got: (i32, String, String), what: &str, needles: &[&str]) -> String {
    let (code, status, msg) = got;
    assert_eq!((code, status.as_str()), (3, "failed"), "{what}: {msg}");
    for n in needles {
        assert!(msg.contains(n), "{what}: `{n}` not in: {msg}");
    }
    msg
}

#[test]
fn honest_query_listings_dumps_and_restores_work() {
    let _one = serial();
    let s = sandbox();

    let (code, _, rows) = run(
        &s,
        &[
            "query",
            "--db",
            "aok",
            "--sql",
            "SELECT id, note, 1.50::numeric, id > 1, NULL::int, '2024-02-29 10:00:00+00'::timestamptz, ARRAY['a b', NULL] FROM t ORDER BY id",
        ],
    );
    assert_eq!(code, 0, "{rows}");
    assert_eq!(
        rows,
        "1|first|1.50|f|<null>|2024-02-29 10:00:00+00|{\"a b\",NULL}\n\
         2|second|1.50|t|<null>|2024-02-29 10:00:00+00|{\"a b\",NULL}\n\
         3|<null>|1.50|t|<null>|2024-02-29 10:00:00+00|{\"a b\",NULL}"
    );
    let (code, _, tables) = run(&s, &["list-tables", "--db", "aok"]);
    assert_eq!((code, tables.as_str()), (0, "public.t"));

    // The roles: the login role holds aok's owner and nothing else; the
    // dump role pg_read_all_data and nothing else.
    assert_eq!(
        psql(
            "postgres",
            &format!(
                "SELECT string_agg(g.rolname, ',' ORDER BY g.rolname) FROM pg_auth_members a \
                 JOIN pg_roles g ON g.oid = a.roleid JOIN pg_roles m ON m.oid = a.member \
                 WHERE m.rolname = '{LOGIN}'"
            )
        ),
        "aok_owner"
    );
    assert_eq!(
        psql(
            "postgres",
            &format!(
                "SELECT string_agg(g.rolname, ',') FROM pg_auth_members a \
                 JOIN pg_roles g ON g.oid = a.roleid JOIN pg_roles m ON m.oid = a.member \
                 WHERE m.rolname = '{LOGIN}_dump'"
            )
        ),
        "pg_read_all_data"
    );

    // A table dump: plain SQL of that table, no OWNER TO.
    let table = artifact("table");
    let (code, _, msg) = run(
        &s,
        &[
            "dump", "--db", "aok", "--table", "t", "--dest", &table, "--item", "t.sql",
        ],
    );
    assert_eq!(code, 0, "{msg}");
    let sql = String::from_utf8(item(&table, "t.sql")).unwrap();
    assert!(
        sql.contains("CREATE TABLE public.t") && sql.contains("COPY public.t"),
        "{sql}"
    );
    assert!(!sql.contains("OWNER TO"), "{sql}");

    // The whole database, custom format.
    let whole = artifact("db");
    let (code, _, msg) = run(
        &s,
        &[
            "dump", "--db", "aok", "--dest", &whole, "--item", "aok.dump",
        ],
    );
    assert_eq!(code, 0, "{msg}");
    let text = custom_as_sql(&item(&whole, "aok.dump"));
    assert!(text.contains("CREATE TABLE public.t"), "{text}");

    // Restore the custom dump into the emptied database: the rows come
    // back, owned by the database's owner.
    psql("aok", "DROP TABLE t");
    let (code, _, msg) = run(
        &s,
        &[
            "restore", "--db", "aok", "--src", &whole, "--item", "aok.dump",
        ],
    );
    assert_eq!(code, 0, "{msg}");
    assert_eq!(
        psql(
            "aok",
            "SELECT count(*), max(tableowner) FROM t, pg_tables WHERE tablename = 't'"
        ),
        "3|aok_owner"
    );

    // Restore the table's plain SQL (pg_dump's \restrict lines and COPY
    // data included) through the protocol.
    psql("aok", "DROP TABLE t");
    let (code, _, msg) = run(
        &s,
        &["restore", "--db", "aok", "--src", &table, "--item", "t.sql"],
    );
    assert_eq!(code, 0, "{msg}");
    assert_eq!(
        psql(
            "aok",
            "SELECT string_agg(coalesce(note, '-'), ',' ORDER BY id) FROM t"
        ),
        "first,second,-"
    );
    assert_node_unharmed();
}

#[test]
fn listings_show_only_the_granted_database() {
    let _one = serial();
    let s = sandbox();
    let (code, _, dbs) = run(&s, &["list-databases"]);
    assert_eq!((code, dbs.as_str()), (0, "aok"), "not other, not postgres");
    for args in [
        &["list-tables", "--db", "other"][..],
        &["query", "--db", "other", "--sql", "SELECT s FROM secret"],
        &["query", "--db", "postgres", "--sql", "SELECT 1"],
    ] {
        refused(
            run(&s, args),
            &format!("{args:?}"),
            &["permission denied", "database `", "outside the grant"],
        );
    }
    let dest = artifact("other");
    refused(
        run(
            &s,
            &["dump", "--db", "other", "--dest", &dest, "--item", "o.dump"],
        ),
        "dump other",
        &["permission denied", "outside the grant"],
    );
}

#[test]
fn queries_cannot_leave_the_read_only_transaction() {
    let _one = serial();
    let s = sandbox();
    let q = |sql: &str| run(&s, &["query", "--db", "aok", "--sql", sql]);
    for (sql, needles) in [
        (
            "SET transaction_read_only = off; DROP TABLE t",
            &["cannot insert multiple commands into a prepared statement"][..],
        ),
        ("COMMIT; DROP TABLE t", &["multiple commands"]),
        ("BEGIN READ WRITE; DROP TABLE t", &["multiple commands"]),
        ("END; DELETE FROM t", &["multiple commands"]),
        (
            "DROP TABLE t",
            &["permission denied", "read-only transaction"],
        ),
        ("DELETE FROM t", &["read-only transaction"]),
        (
            "WITH gone AS (DELETE FROM t RETURNING *) SELECT count(*) FROM gone",
            &["read-only transaction"],
        ),
        (
            "SELECT set_config('transaction_read_only', 'off', false), (SELECT count(*) FROM t)",
            &["read-write mode must be set before any query"],
        ),
        (
            "SELECT set_config('role', 'postgres', true)",
            &["permission denied to set role"],
        ),
        ("SET SESSION AUTHORIZATION postgres", &["permission denied"]),
        (
            "ALTER ROLE \"stackhost_pg-hostile\" SUPERUSER",
            &["read-only transaction"],
        ),
        ("CREATE EXTENSION dblink", &["read-only transaction"]),
        (
            "SELECT dblink_exec('dbname=other', 'DROP TABLE secret')",
            &["dblink_exec", "does not exist"],
        ),
    ] {
        refused(q(sql), sql, needles);
        assert_node_unharmed();
    }
    // Alone, these end or loosen the transaction, and nothing follows.
    for sql in [
        "COMMIT",
        "SET transaction_read_only = off",
        "BEGIN READ WRITE",
    ] {
        let (code, _, msg) = q(sql);
        assert_eq!(code, 0, "{sql}: {msg}");
        assert_node_unharmed();
    }
}

#[test]
fn queries_read_no_server_files_run_no_programs_see_no_password_hashes() {
    let _one = serial();
    let s = sandbox();
    let q = |sql: &str| run(&s, &["query", "--db", "aok", "--sql", sql]);
    for (sql, needles) in [
        (
            "SELECT pg_read_file('/etc/passwd')",
            &["permission denied for function pg_read_file"][..],
        ),
        ("SELECT pg_ls_dir('/')", &["permission denied"]),
        ("SELECT lo_import('/etc/passwd')", &["permission denied"]),
        (
            "COPY (SELECT 1) TO PROGRAM 'touch /tmp/pwned-copy-program'",
            &["permission denied", "pg_execute_server_program"],
        ),
        (
            "COPY t TO '/tmp/pwned-copy-file'",
            &["permission denied", "pg_write_server_files"],
        ),
        ("COPY t FROM '/etc/passwd'", &["permission denied"]),
        (
            "SELECT rolname, rolpassword FROM pg_authid",
            &["permission denied for table pg_authid"],
        ),
        ("SELECT passwd FROM pg_shadow", &["permission denied"]),
        (
            "SELECT set_config('role', 'pg_read_all_data', true), (SELECT count(*) FROM pg_authid)",
            &["permission denied"],
        ),
        // A role the login role could switch to inside one statement would
        // lend its privileges to the rest of it.
        (
            "SELECT set_config('role', 'pg_read_all_data', true), \
             query_to_xml('SELECT rolpassword FROM pg_catalog.pg_authid', true, false, '')",
            &["permission denied to set role \"pg_read_all_data\""],
        ),
        (
            "SELECT set_config('role', 'stackhost_pg-hostile_dump', true), \
             query_to_xml('SELECT rolpassword FROM pg_catalog.pg_authid', true, false, '')",
            &["permission denied to set role"],
        ),
        (
            "SELECT query_to_xml('SELECT rolpassword FROM pg_catalog.pg_authid', true, false, '')",
            &["permission denied for table pg_authid"],
        ),
    ] {
        let msg = refused(q(sql), sql, needles);
        assert!(!msg.contains("SCRAM-SHA-256$"), "{msg}");
        assert_node_unharmed();
    }
    // The password column of pg_roles is masked for everyone.
    let (code, _, rows) = q("SELECT rolpassword FROM pg_roles WHERE rolname = 'app'");
    assert_eq!((code, rows.as_str()), (0, "********"));
    // The caps: 10,000 rows, 16 MiB.
    refused(
        q("SELECT g FROM generate_series(1, 10001) g"),
        "rows",
        &["more than 10000 rows", "the cap"],
    );
    let (code, _, msg) = q("SELECT count(*) FROM generate_series(1, 10000) g");
    assert_eq!((code, msg.as_str()), (0, "10000"));
    refused(
        q("SELECT repeat('x', 1048576) FROM generate_series(1, 20)"),
        "bytes",
        &["more than 16 MiB", "the cap"],
    );
    refused(
        q("SELECT to_tsvector('a b')"),
        "unsupported type",
        &["tsvector", "::text"],
    );
}

#[test]
fn psql_meta_commands_never_run() {
    let _one = serial();
    let s = sandbox();
    for sql in [
        "\\! touch /tmp/pwned-shell",
        "\\c other",
        "SELECT 1 \\g /tmp/pwned-g",
        "\\copy t to '/tmp/pwned-copy-file'",
    ] {
        refused(
            run(&s, &["query", "--db", "aok", "--sql", sql]),
            sql,
            &["syntax error"],
        );
        assert_node_unharmed();
    }
    for sql in [
        "\\! touch /tmp/pwned-restore-shell\n",
        "SELECT 1;\n\\! touch /tmp/pwned-restore-shell\n",
        "\\c other\nDROP TABLE secret;\n",
        "\\restrict key\nSELECT 1;\n\\unrestrict key\n\\! touch /tmp/pwned-restore-shell\n",
        "\\o /tmp/pwned-g\nSELECT 1;\n",
        "\\set x 1\n",
    ] {
        let dest = artifact("meta");
        let msg = refused(
            run(
                &s,
                &["restore-sql", "--db", "aok", "--sql", sql, "--dest", &dest],
            ),
            sql,
            &["permission denied", "psql meta-command", "line "],
        );
        let command = sql
            .lines()
            .find(|l| l.starts_with('\\') && !l.contains("restrict"))
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        assert!(msg.contains(&format!("`{command}`")), "{msg}");
        assert_node_unharmed();
    }
}

#[test]
fn extensions_cannot_reach_other_databases() {
    let _one = serial();
    let s = sandbox();
    let dest = artifact("dblink");
    refused(
        run(
            &s,
            &[
                "restore-sql",
                "--db",
                "aok",
                "--sql",
                "CREATE EXTENSION dblink;\nSELECT dblink_exec('dbname=other', 'DROP TABLE secret');\n",
                "--dest",
                &dest,
            ],
        ),
        "create extension dblink",
        &["permission denied to create extension \"dblink\""],
    );
    let dest = artifact("fdw");
    refused(
        run(
            &s,
            &[
                "restore-sql",
                "--db",
                "aok",
                "--sql",
                "CREATE EXTENSION postgres_fdw;\n",
                "--dest",
                &dest,
            ],
        ),
        "create extension postgres_fdw",
        &["permission denied to create extension"],
    );
    assert_node_unharmed();
}

#[test]
fn pg_authid_is_in_no_dump() {
    let _one = serial();
    let s = sandbox();
    for (table, needles) in [
        (
            "pg_catalog.pg_authid",
            &["permission denied", "PostgreSQL's own catalog"][..],
        ),
        ("pg_authid", &["permission denied", "pg_catalog.pg_authid"]),
        ("pg_shadow", &["permission denied", "own catalog"]),
        (
            "information_schema.tables",
            &["permission denied", "own catalog"],
        ),
        ("*", &["not found", "no table `*`"]),
        ("pg_catalog.*", &["not found"]),
        ("t|pg_authid", &["not found"]),
        ("*.pg_authid", &["not found"]),
    ] {
        let dest = artifact("authid");
        refused(
            run(
                &s,
                &[
                    "dump", "--db", "aok", "--table", table, "--dest", &dest, "--item", "x.sql",
                ],
            ),
            table,
            needles,
        );
        assert!(
            !std::path::Path::new(&dest).exists(),
            "no artifact is left for {table}"
        );
    }
    // The whole database's dump holds no password hash.
    let dest = artifact("whole");
    let (code, _, msg) = run(
        &s,
        &["dump", "--db", "aok", "--dest", &dest, "--item", "aok.dump"],
    );
    assert_eq!(code, 0, "{msg}");
    let text = custom_as_sql(&item(&dest, "aok.dump"));
    assert!(text.contains("first"), "the data is there");
    for secret in ["SCRAM-SHA-256", "pg_authid", "rolpassword"] {
        assert!(!text.contains(secret), "{secret} in the dump");
    }
    // The check can fail: the same hash is there for postgres to see.
    assert!(
        psql(
            "postgres",
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'app'"
        )
        .starts_with("SCRAM-SHA-256$")
    );
}

/// A custom-format dump whose index calls a function that runs a program
/// (`COPY ... TO PROGRAM`, from a volatile function: an immutable one may
/// not run COPY) while the index is built, made on the node as postgres:
/// what a hostile plugin could hand to a restore.
fn crafted_dump(path: &str) {
    psql("postgres", "DROP DATABASE IF EXISTS crafted_src");
    psql("postgres", "CREATE DATABASE crafted_src");
    psql(
        "crafted_src",
        "CREATE FUNCTION run() RETURNS void LANGUAGE plpgsql AS $$ BEGIN \
         EXECUTE 'COPY (SELECT 1) TO PROGRAM ''touch /tmp/pwned-restore-program'''; END $$; \
         CREATE FUNCTION evil(int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$ BEGIN RETURN $1; END $$; \
         CREATE TABLE e (i int); INSERT INTO e VALUES (1); CREATE INDEX ON e (evil(i)); \
         CREATE OR REPLACE FUNCTION evil(int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$ BEGIN \
         PERFORM public.run(); RETURN $1; END $$",
    );
    cluster().sh(
        1,
        &format!("runuser -u postgres -- pg_dump -Fc crafted_src > {path}"),
    );
}

#[test]
fn crafted_dumps_restore_as_the_owner_never_as_a_superuser() {
    let _one = serial();
    let s = sandbox();
    let c = cluster();
    let dump = format!("{DIR}/crafted.dump");
    crafted_dump(&dump);

    // The check can fail: restored as postgres, the dump runs its program.
    psql("postgres", "CREATE DATABASE crafted_check");
    c.sh(
        1,
        &format!("runuser -u postgres -- pg_restore -d crafted_check {dump} || true"),
    );
    assert!(
        c.sh(1, "ls /tmp/pwned-restore-program 2>/dev/null || true")
            .contains("pwned"),
        "the crafted dump does run a program for a superuser"
    );
    c.sh(1, "rm -f /tmp/pwned-restore-program");
    psql("postgres", "DROP DATABASE crafted_check");

    // As aok's owner the program is refused and the restore fails.
    let dest = artifact("crafted");
    refused(
        run(
            &s,
            &[
                "restore-node-file",
                "--db",
                "aok",
                "--path",
                &dump,
                "--dest",
                &dest,
                "--item",
                "crafted.dump",
            ],
        ),
        "crafted dump into aok",
        &[
            "pg_restore as role stackhost_pg-hostile with --role=aok_owner",
            "pg_execute_server_program",
        ],
    );
    psql(
        "aok",
        "DROP TABLE IF EXISTS e; DROP FUNCTION IF EXISTS evil(int); DROP FUNCTION IF EXISTS run()",
    );
    assert_node_unharmed();

    // A database owned by a superuser is refused before anything runs.
    psql("postgres", "ALTER DATABASE aok OWNER TO postgres");
    let dest = artifact("crafted-su");
    let got = run(
        &s,
        &[
            "restore-node-file",
            "--db",
            "aok",
            "--path",
            &dump,
            "--dest",
            &dest,
            "--item",
            "crafted.dump",
        ],
    );
    psql("postgres", "ALTER DATABASE aok OWNER TO aok_owner");
    refused(
        got,
        "into a superuser's database",
        &[
            "permission denied",
            "restoring into database `aok`",
            "its owner postgres is a superuser",
        ],
    );
    assert_eq!(
        psql("aok", "SELECT count(*) FROM pg_class WHERE relname = 'e'"),
        "0"
    );
    // And the owner of a query's database is lent only when plain.
    psql("postgres", "ALTER DATABASE aok OWNER TO postgres");
    let got = run(
        &s,
        &["query", "--db", "aok", "--sql", "SELECT count(*) FROM t"],
    );
    psql("postgres", "ALTER DATABASE aok OWNER TO aok_owner");
    refused(
        got,
        "query while postgres owns aok",
        &[
            "permission denied for table t",
            "is a superuser, so it is not lent",
        ],
    );
    assert_node_unharmed();
}

/// This machine's own PostgreSQL (Debian's 15/main), when it has one:
/// started for this test if it is down, and stopped again.
#[test]
fn the_local_node_is_sandboxed_too() {
    let _one = serial();
    let clusters = Command::new("pg_lsclusters").arg("-h").output();
    let Ok(clusters) = clusters else {
        eprintln!(
            "SKIPPED the_local_node_is_sandboxed_too: pg_lsclusters is missing here (no Debian PostgreSQL on this machine)"
        );
        return;
    };
    let listing = String::from_utf8_lossy(&clusters.stdout).into_owned();
    let Some(line) = listing.lines().find(|l| l.starts_with("15 main ")) else {
        eprintln!(
            "SKIPPED the_local_node_is_sandboxed_too: no PostgreSQL 15/main cluster on this machine ({listing:?})"
        );
        return;
    };
    let is_root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if !is_root {
        eprintln!(
            "SKIPPED the_local_node_is_sandboxed_too: the test is not root, so it cannot start this machine's PostgreSQL"
        );
        return;
    }
    let was_down = line.contains(" down ");
    let pg = |args: &[&str]| {
        let out = Command::new("pg_ctlcluster").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    if was_down {
        pg(&["15", "main", "start"]);
    }
    struct Cleanup(bool);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let sql = "DROP DATABASE IF EXISTS aok; DROP DATABASE IF EXISTS other; \
                       DROP ROLE IF EXISTS aok_owner; DROP ROLE IF EXISTS app; \
                       DROP OWNED BY \"stackhost_pg-hostile\"; DROP ROLE IF EXISTS \"stackhost_pg-hostile\"; \
                       DROP ROLE IF EXISTS \"stackhost_pg-hostile_dump\"";
            for statement in sql.split("; ") {
                let _ = local_psql("postgres", statement);
            }
            if self.0 {
                let _ = Command::new("pg_ctlcluster")
                    .args(["15", "main", "stop"])
                    .output();
            }
        }
    }
    let _cleanup = Cleanup(was_down);
    let _ = local_psql("postgres", "DROP DATABASE IF EXISTS aok");
    let _ = local_psql("postgres", "DROP DATABASE IF EXISTS other");
    let _ = local_psql("postgres", "DROP ROLE IF EXISTS aok_owner");
    let _ = local_psql("postgres", "DROP ROLE IF EXISTS app");
    seed(
        &|sql, db| local_psql(db, sql).unwrap_or_else(|e| panic!("{sql}: {e}")),
        &|script| {
            let ok = Command::new("sh").args(["-c", script]).status().unwrap();
            assert!(ok.success());
        },
    );

    let s = sandbox();
    let local = |args: &[&str]| {
        let mut all = vec!["pg-hostile"];
        all.extend_from_slice(args);
        let (code, r) = s.report(&all);
        let (status, message) = only_step(&r);
        (code, status, message)
    };
    let (code, _, dbs) = local(&["list-databases"]);
    assert_eq!((code, dbs.as_str()), (0, "aok"));
    let (code, _, rows) = local(&["query", "--db", "aok", "--sql", "SELECT count(*) FROM t"]);
    assert_eq!((code, rows.as_str()), (0, "3"));
    refused(
        local(&[
            "query",
            "--db",
            "aok",
            "--sql",
            "COPY (SELECT 1) TO PROGRAM 'touch /tmp/pwned-local-copy'",
        ]),
        "local COPY TO PROGRAM",
        &["pg_execute_server_program"],
    );
    assert!(!std::path::Path::new("/tmp/pwned-local-copy").exists());
    refused(
        local(&[
            "query",
            "--db",
            "aok",
            "--sql",
            "SELECT rolpassword FROM pg_authid",
        ]),
        "local pg_authid",
        &["permission denied for table pg_authid"],
    );
    let dest = artifact("local");
    let (code, _, msg) = local(&[
        "dump", "--db", "aok", "--table", "t", "--dest", &dest, "--item", "t.sql",
    ]);
    assert_eq!(code, 0, "{msg}");
    assert!(
        String::from_utf8(item(&dest, "t.sql"))
            .unwrap()
            .contains("COPY public.t")
    );
    let dest = artifact("local-sql");
    refused(
        local(&[
            "restore-sql",
            "--db",
            "aok",
            "--sql",
            "\\! touch /tmp/pwned-local-shell\n",
            "--dest",
            &dest,
        ]),
        "local meta-command",
        &["psql meta-command"],
    );
    assert!(!std::path::Path::new("/tmp/pwned-local-shell").exists());
    assert_eq!(
        local_psql("other", "SELECT s FROM secret").unwrap(),
        "top secret"
    );
}

/// Run one SQL statement as postgres on this machine.
fn local_psql(db: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("runuser")
        .args([
            "-u",
            "postgres",
            "--",
            "psql",
            "-XAtq",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            db,
            "-c",
            sql,
        ])
        .current_dir("/")
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}
