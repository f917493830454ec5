//! The shared journal: two operators (two STACKHOST_HOMEs, and for the
//! lease, two host names) on one real PostgreSQL, in a node container of
//! the test cluster. The lock is per cluster name; the runs of one are
//! seen, and resumed, from the other's home.

mod support;

#[path = "support/cluster.rs"]
mod cluster;

use cluster::TestCluster;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use support::Sandbox;

/// PostgreSQL 15 on node 1, listening on its bridge address: cluster
/// `main` on 5432, and cluster `down` on 5433 for the test that stops its
/// server; each with a password-protected role `ops`.
struct Server {
    cluster: TestCluster,
    ip: String,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let c = TestCluster::up(1, "sh-jpg");
        c.remove_at_exit();
        for (name, port) in [("main", 5432), ("down", 5433)] {
            c.sh(
                1,
                &format!(
                    "pg_createcluster 15 {name} --port {port} >/dev/null && \
                     echo \"listen_addresses = '*'\" >> /etc/postgresql/15/{name}/postgresql.conf && \
                     echo 'host all all 0.0.0.0/0 scram-sha-256' >> /etc/postgresql/15/{name}/pg_hba.conf && \
                     pg_ctlcluster 15 {name} start && \
                     su postgres -c \"psql -q -p {port} -c \\\"CREATE ROLE ops LOGIN CREATEDB PASSWORD 's3cret-pw'\\\"\""
                ),
            );
        }
        let ip = c.bridge_ip(1);
        Server { cluster: c, ip }
    })
}

/// A database of its own for one test, on the cluster at `port`.
struct Db {
    cluster: &'static TestCluster,
    url: String,
    name: String,
    port: u16,
}

fn db(name: &str, port: u16) -> Db {
    let s = server();
    s.cluster.sh(
        1,
        &format!("su postgres -c \"psql -q -p {port} -c 'CREATE DATABASE {name} OWNER ops'\""),
    );
    Db {
        cluster: &s.cluster,
        url: format!("postgres://ops:s3cret-pw@{}:{port}/{name}", s.ip),
        name: name.into(),
        port,
    }
}

impl Db {
    /// `sql` as the superuser in this test's database; its output.
    fn psql(&self, sql: &str) -> String {
        self.cluster.sh(
            1,
            &format!(
                "su postgres -c \"psql -tA -p {} -d {} -c \\\"{sql}\\\"\"",
                self.port, self.name
            ),
        )
    }
}

/// An operator: a home of their own, with the plugin installed.
fn operator() -> Sandbox {
    let s = Sandbox::new();
    s.install("exec-hostile");
    s
}

fn env(db: &Db) -> Vec<(&'static str, String)> {
    vec![("STACKHOST_JOURNAL", db.url.clone())]
}

fn run(s: &Sandbox, db: &Db, args: &[&str]) -> Output {
    let env = env(db);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    s.run_env(args, &env)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// An inventory of the local node alone, under the cluster name `name`.
fn inventory(s: &Sandbox, name: &str) -> String {
    let path = s.home.path().join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "cluster = \"{name}\"\n[[node]]\nname = \"local\"\nlocal = true\nroles = [\"core\"]\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

/// Start `stackhost ARGS` in the background for operator `s`, with
/// `hostname` as its host name (its own UTS namespace, as if on another
/// machine).
fn spawn(s: &Sandbox, db: &Db, hostname: &str, args: &[&str]) -> std::process::Child {
    Command::new("unshare")
        .args([
            "--uts",
            "sh",
            "-c",
            "hostname \"$0\" && exec \"$@\"",
            hostname,
        ])
        .arg(env!("CARGO_BIN_EXE_stackhost"))
        .args(args)
        .env("STACKHOST_HOME", s.home.path())
        .env("STACKHOST_JOURNAL", &db.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait until `cluster`'s lock is held, as the database says.
fn wait_for_lock(db: &Db, cluster: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let held = db.psql(&format!(
            "SELECT count(*) FROM cluster_locks WHERE cluster = '{cluster}'"
        ));
        if held.trim() == "1" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the lock of {cluster} was never taken"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn two_operators_race_for_one_clusters_lock_and_exactly_one_wins() {
    let db = &db("race", 5432);
    let (a, b) = (operator(), operator());
    let (inv_a, inv_b) = (inventory(&a, "race"), inventory(&b, "race"));
    let args = |inv: &str| {
        vec![
            "run".to_string(),
            "exec-hostile".into(),
            "exec".into(),
            "--inventory".into(),
            inv.to_string(),
            "--".into(),
            "sleep".into(),
            // Long enough that the second process, started right after,
            // asks for the lock while the first holds it, even on a slow
            // machine (a cold compile of the plugin in its own home).
            "8".into(),
        ]
    };
    let (args_a, args_b) = (args(&inv_a), args(&inv_b));
    let args_a: Vec<&str> = args_a.iter().map(String::as_str).collect();
    let args_b: Vec<&str> = args_b.iter().map(String::as_str).collect();
    let first = spawn(&a, db, "ops-a", &args_a);
    let second = spawn(&b, db, "ops-b", &args_b);
    let (first, second) = (
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    );
    let codes = [first.status.code(), second.status.code()];
    assert!(
        codes.contains(&Some(0)) && codes.contains(&Some(1)),
        "{codes:?}\n{}\n{}",
        text(&first),
        text(&second)
    );
    let (winner, loser) = if codes[0] == Some(0) {
        ("ops-a", &second)
    } else {
        ("ops-b", &first)
    };
    let refusal = text(loser);
    assert!(
        refusal.contains("error: the cluster is locked by run ")
            && refusal.contains(&format!(" on {winner} as root, since ")),
        "{refusal}"
    );

    // Another cluster's lock is another lock: a run on it goes ahead while
    // `race` is held.
    let holder = spawn(&a, db, "ops-a", &args_a);
    wait_for_lock(db, "race");
    let other = inventory(&b, "other");
    let out = run(
        &b,
        db,
        &[
            "run",
            "exec-hostile",
            "exec",
            "--inventory",
            &other,
            "--",
            "true",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(holder.wait_with_output().unwrap().status.success());
}

#[test]
fn a_killed_holders_lease_runs_out_then_another_operator_takes_over() {
    let db = &db("lease", 5432);
    let (a, b) = (operator(), operator());
    let (inv_a, inv_b) = (inventory(&a, "lease"), inventory(&b, "lease"));
    let mut holder = spawn(
        &a,
        db,
        "ops-a",
        &[
            "run",
            "exec-hostile",
            "exec",
            "--inventory",
            &inv_a,
            "--lock-ttl",
            "12s",
            "--",
            "sleep",
            "60",
        ],
    );
    wait_for_lock(db, "lease");
    holder.kill().unwrap(); // SIGKILL: no chance to release anything
    holder.wait().unwrap();
    let took = Instant::now();
    let args = [
        "run",
        "exec-hostile",
        "exec",
        "--inventory",
        inv_b.as_str(),
        "--",
        "true",
    ];
    // On another machine (host name ops-b) the dead holder's pid cannot be
    // checked: its lease must run out first.
    let out = spawn(&b, db, "ops-b", &args).wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("the lock expires in "),
        "{}",
        text(&out)
    );
    let deadline = took + Duration::from_secs(45);
    loop {
        let out = spawn(&b, db, "ops-b", &args).wait_with_output().unwrap();
        if out.status.success() {
            assert!(
                text(&out).contains("had expired (its holder is gone); taking it over"),
                "{}",
                text(&out)
            );
            assert!(
                took.elapsed() >= Duration::from_secs(3),
                "{:?}",
                took.elapsed()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never taken over: {}",
            text(&out)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_run_halted_by_the_database_going_down_resumes_from_the_other_home_without_repeats() {
    let db = &db("resume", 5433);
    let (a, b) = (operator(), operator());
    let inv_a = inventory(&a, "resume");
    let marks = tempfile::tempdir().unwrap();
    let log = marks.path().join("steps.log");
    // Four steps one after another; each appends a line, then waits 3 s,
    // so the database is stopped well within step 2.
    let script = format!("echo ran >> {}; sleep 3", log.display());
    let mut child = spawn(
        &a,
        db,
        "ops-a",
        &[
            "run",
            "exec-hostile",
            "exec",
            "--inventory",
            &inv_a,
            "--json",
            "--steps",
            "4",
            "--max-in-flight",
            "1",
            // The lock's lease (the default 60 s) outlives the outage:
            // what stops the run is the step's end it cannot journal.
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    // The database goes away during the second step: its end cannot be
    // journaled, so no further step starts; the run waits for the
    // database to record what happened, and it comes back.
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "the steps never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    db.cluster.sh(1, "pg_ctlcluster 15 down stop -m fast");
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run waits for its journal"
    );
    db.cluster.sh(1, "pg_ctlcluster 15 down start");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error: cannot journal the end of step exec on local: the journal database postgres://ops:***@"),
        "{stderr}"
    );
    assert!(stderr.contains("retrying for up to 60s"), "{stderr}");
    assert!(
        stderr.contains("note: the journal is back; run "),
        "{stderr}"
    );
    assert!(!text(&out).contains("s3cret-pw"), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps = report["report"]["phases"][0]["steps"].as_array().unwrap();
    // Steps wait for their slot in no set order: two ran (their ends
    // recorded once the database was back), two never started.
    let mut statuses: Vec<&str> = steps
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    statuses.sort();
    assert_eq!(statuses, ["not-run", "not-run", "ok", "ok"], "{report:#}");
    for step in steps.iter().filter(|s| s["status"] == "not-run") {
        assert_eq!(
            step["message"],
            "interrupted by the journal database going away before it started"
        );
    }
    let id = report["run"].as_i64().unwrap().to_string();
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 2);

    // The other operator sees the run, interrupted, with the two ends
    // recorded late, and resumes it: the steps not done run, the done ones
    // do not run again.
    let shown = run_text(&b, db, &["runs", "show", &id]);
    assert!(
        shown.contains("exec-hostile 0.1.0 · exec · interrupted"),
        "{shown}"
    );
    assert!(
        shown.contains("  interrupted: interrupted by the journal database going away\n"),
        "{shown}"
    );
    assert_eq!(
        shown.matches(" ok        exec (attempts: 1)").count(),
        2,
        "{shown}"
    );
    assert_eq!(
        shown.matches(" pending   exec (attempts: 0)").count(),
        2,
        "{shown}"
    );
    let inv_b = inventory(&b, "resume");
    let out = run(&b, db, &["resume", &id, "--inventory", &inv_b]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 4);
    let shown = run_text(&a, db, &["runs", "show", &id, "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(doc["status"], "succeeded", "{doc:#}");
    let attempts: Vec<i64> = doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["attempts"].as_i64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 1, 1, 1], "{doc:#}");
}

#[test]
fn a_database_at_a_newer_schema_is_refused_and_passwords_never_shown() {
    let db = &db("schema", 5432);
    let s = operator();
    // Make sure the schema exists, then pretend a newer stackhost moved it on.
    let out = run(&s, db, &["runs", "list"]);
    assert!(out.status.success(), "{}", text(&out));
    db.psql("INSERT INTO stackhost_schema VALUES (99)");
    let out = run(&s, db, &["runs", "list"]);
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out);
    assert!(
        t.contains("is at schema version 99, newer than the 1 this stackhost knows"),
        "{t}"
    );
    assert!(
        t.contains("postgres://ops:***@") && !t.contains("s3cret-pw"),
        "{t}"
    );

    // A wrong password: a clear error, without the password.
    let bad = db.url.replace("s3cret-pw", "wrong-pw");
    let out = s.run_env(&["runs", "list"], &[("STACKHOST_JOURNAL", bad.as_str())]);
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out);
    assert!(
        t.contains("the journal database postgres://ops:***@"),
        "{t}"
    );
    assert!(t.contains("password authentication failed"), "{t}");
    assert!(!t.contains("wrong-pw"), "{t}");
}

fn run_text(s: &Sandbox, db: &Db, args: &[&str]) -> String {
    let out = run(s, db, args);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_holder_whose_lock_was_taken_starts_no_more_steps() {
    let db = &db("taken", 5432);
    let (a, b) = (operator(), operator());
    let (inv_a, inv_b) = (inventory(&a, "taken"), inventory(&b, "taken"));
    let holder = spawn(
        &a,
        db,
        "ops-a",
        &[
            "run",
            "exec-hostile",
            "exec",
            "--inventory",
            &inv_a,
            "--json",
            "--steps",
            "8",
            "--max-in-flight",
            "1",
            "--lock-ttl",
            "3s",
            "--",
            "sleep",
            "1",
        ],
    );
    wait_for_lock(db, "taken");
    let out = spawn(
        &b,
        db,
        "ops-b",
        &[
            "run",
            "exec-hostile",
            "exec",
            "--inventory",
            &inv_b,
            "--force-unlock",
            "--",
            "true",
        ],
    )
    .wait_with_output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("warning: --force-unlock took the cluster lock from run "));
    let out = holder.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains("lost the cluster lock (taken with --force-unlock?); stopping"),
        "{}",
        text(&out)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps = report["report"]["phases"][0]["steps"].as_array().unwrap();
    let not_run = steps
        .iter()
        .filter(|s| {
            s["status"] == "not-run"
                && s["message"] == "interrupted by the loss of the cluster lock before it started"
        })
        .count();
    assert!(not_run >= 4, "{report:#}");
}
