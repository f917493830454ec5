//! Backup and migration on real clusters: real PostgreSQL 15 on the core
//! node, droplet and service trees, exports streamed to the operator's
//! host, imported into a different cluster, and the results compared with
//! what the nodes themselves say (read with `docker exec`).

mod support;

#[path = "support/cluster.rs"]
mod cluster;

use cluster::TestCluster;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};
use support::{Sandbox, only_step, refs};

/// Start PostgreSQL on node `i` (the image has the packages, no cluster).
fn pg_up(c: &TestCluster, i: usize) {
    c.sh(i, "pg_createcluster 15 main --start >/dev/null");
}

fn psql(c: &TestCluster, i: usize, db: &str, sql: &str) -> String {
    let out = c.docker(&[
        "exec",
        &c.node(i),
        "su",
        "postgres",
        "-c",
        &format!("psql -XAtq -d {db} -c \"{sql}\""),
    ]);
    out.trim().to_string()
}

/// Two databases with thousands of rows, a droplet tree with small and
/// large files, filesystem service data and settings.
fn seed(c: &TestCluster) {
    pg_up(c, 1);
    c.sh(
        1,
        "su postgres -c 'createdb aok && createdb cloud_controller'",
    );
    psql(
        c,
        1,
        "aok",
        "create table access_tokens(id serial primary key, token text not null); \
         insert into access_tokens(token) select md5(i::text) from generate_series(1, 5000) i;",
    );
    psql(
        c,
        1,
        "cloud_controller",
        "create table apps(id serial primary key, name text); \
         insert into apps(name) select concat('app-', i) from generate_series(1, 3000) i; \
         create table spaces(id int primary key); insert into spaces select generate_series(1, 1200);",
    );
    c.sh(
        1,
        "mkdir -p /var/stackato/data/droplets/a1/b2 /etc/stackato && \
         for i in $(seq 1 40); do head -c $((i * 997)) /dev/urandom > /var/stackato/data/droplets/a1/d$i; done && \
         head -c 3000000 /dev/urandom > /var/stackato/data/droplets/a1/b2/big.tgz && \
         ln -s a1/b2/big.tgz /var/stackato/data/droplets/latest && \
         echo 3.4.2 > /etc/stackato/version",
    );
    let fs = 3;
    c.sh(
        fs,
        "mkdir -p /var/stackato/services/filesystem/svc-1 && \
         head -c 200000 /dev/urandom > /var/stackato/services/filesystem/svc-1/data.bin",
    );
}

/// sha256 of every file under `dir` on node `i`, sorted by path.
fn checksums(c: &TestCluster, i: usize, dir: &str) -> String {
    c.sh(
        i,
        &format!("cd {dir} && find . -type f -print0 | sort -z | xargs -0 sha256sum"),
    )
}

fn only_file(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        files.len(),
        1,
        "expected one file in {}: {files:?}",
        dir.display()
    );
    files.into_iter().next().unwrap()
}

fn message(report: &serde_json::Value, step: &str) -> (String, String) {
    for p in report["phases"].as_array().unwrap() {
        for s in p["steps"].as_array().unwrap() {
            if s["name"] == step {
                return (
                    s["status"].as_str().unwrap().into(),
                    s["message"].as_str().unwrap().into(),
                );
            }
        }
    }
    panic!("no step {step} in {report:#}");
}

#[test]
fn export_then_import_into_another_cluster() {
    let a = TestCluster::up(3, "sh-bk-a");
    let b = TestCluster::up(3, "sh-bk-b");
    seed(&a);
    pg_up(&b, 1);
    let out = tempfile::Builder::new()
        .prefix("sh-bk-")
        .tempdir_in("/tmp")
        .unwrap();
    let dest = format!("{}/", out.path().display());
    let s = Sandbox::new();
    s.install("backup");

    let (code, r) = s.report(&refs(&a.args(&["backup", "export", &dest])));
    assert_eq!(code, 0, "{r:#}");
    let (status, msg) = message(&r, "export");
    assert_eq!(status, "changed");
    assert!(msg.contains("databases: aok, cloud_controller"), "{msg}");
    let file = only_file(out.path());
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("stackato-export-") && name.ends_with(".tar.zst"),
        "{name}"
    );

    // Plain tar lists it, and it holds the topology and a manifest.
    let listing = Command::new("tar").arg("-tf").arg(&file).output().unwrap();
    assert!(listing.status.success());
    let listing = String::from_utf8_lossy(&listing.stdout);
    for member in [
        "backup.json",
        "databases/aok.dump",
        "databases/cloud_controller.dump",
        "droplets/a1/b2/big.tgz",
        "droplets/latest",
        "services/filesystem/svc-1/data.bin",
        "settings/version",
        "stackhost-manifest.json",
    ] {
        assert!(
            listing.lines().any(|l| l.trim_end_matches('/') == member),
            "{member} missing:\n{listing}"
        );
    }
    let meta = Command::new("tar")
        .arg("-xOf")
        .arg(&file)
        .arg("backup.json")
        .output()
        .unwrap();
    let meta: serde_json::Value = serde_json::from_slice(&meta.stdout).unwrap();
    assert_eq!(meta["product_version"], "3.4.2");
    assert_eq!(meta["topology"].as_array().unwrap().len(), 3);

    let f = file.to_str().unwrap();
    let (code, r) = s.report(&refs(&a.args(&["backup", "verify", f])));
    assert_eq!((code, message(&r, "verify").0.as_str()), (0, "ok"), "{r:#}");

    // --only-this-node for a remote node: only what node 3 (dea and
    // filesystem) holds, the step bound to that node.
    let node3 = a.node(3);
    let one = out.path().join("node3.tar.zst");
    let (code, r) = s.report(&refs(&a.args(&[
        "backup",
        "export",
        "--nodes",
        &node3,
        "--only-this-node",
        one.to_str().unwrap(),
    ])));
    assert_eq!(code, 0, "{r:#}");
    let meta = Command::new("tar")
        .arg("-xOf")
        .arg(&one)
        .arg("backup.json")
        .output()
        .unwrap();
    let meta: serde_json::Value = serde_json::from_slice(&meta.stdout).unwrap();
    assert_eq!(meta["scope"], format!("node {node3}"), "{meta:#}");
    let contents = meta["contents"].as_array().unwrap();
    assert_eq!(contents.len(), 1, "{meta:#}");
    assert_eq!(contents[0]["node"], node3.as_str());
    assert_eq!(contents[0]["item"], "services/filesystem");
    std::fs::remove_file(&one).unwrap();
    // Two nodes and --only-this-node: which one is not said, so refused.
    let out2 = s.fails(
        2,
        &refs(&a.args(&[
            "run",
            "backup",
            "export",
            "--nodes",
            &format!("{},{node3}", a.node(2)),
            "--only-this-node",
            one.to_str().unwrap(),
        ])),
    );
    assert!(
        out2.contains("--only-this-node exports one node: select it with --nodes NAME"),
        "{out2}"
    );

    // One flipped byte: verify names the damaged item, import refuses and
    // changes nothing.
    let flipped = out.path().join("flipped.tar.zst");
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::write(&flipped, &bytes).unwrap();
    let fl = flipped.to_str().unwrap();
    let (code, r) = s.report(&refs(&a.args(&["backup", "verify", fl])));
    let (status, msg) = message(&r, "verify");
    assert_eq!((code, status.as_str()), (3, "failed"), "{r:#}");
    let items: Vec<&str> = listing.lines().filter(|l| !l.ends_with('/')).collect();
    assert!(
        msg.contains("fails verification: ")
            && items.iter().any(|i| msg.contains(&format!(": {i} ("))),
        "the damaged item is named: {msg}"
    );
    let (code, r) = s.report(&refs(&b.args(&["backup", "import", fl, "--yes"])));
    let (status, msg) = message(&r, "import");
    assert_eq!((code, status.as_str()), (3, "failed"), "{r:#}");
    assert!(msg.contains("nothing was imported"), "{msg}");
    assert_eq!(
        psql(
            &b,
            1,
            "postgres",
            "select count(*) from pg_database where datname = 'aok'"
        ),
        "0"
    );
    assert!(
        !b.sh(1, "ls /var/stackato/data 2>/dev/null || true")
            .contains("droplets")
    );
    std::fs::remove_file(&flipped).unwrap();

    // Import into cluster B: same rows, same files.
    let (code, r) = s.report(&refs(&b.args(&[
        "backup",
        "import",
        "--cluster",
        f,
        "--yes",
    ])));
    assert_eq!(code, 0, "{r:#}");
    let (_, msg) = message(&r, "import");
    assert!(msg.contains("Not restored: settings"), "{msg}");
    for (db, table) in [
        ("aok", "access_tokens"),
        ("cloud_controller", "apps"),
        ("cloud_controller", "spaces"),
    ] {
        let sql =
            format!("select count(*), md5(string_agg(t::text, ',' order by 1)) from {table} t");
        assert_eq!(psql(&b, 1, db, &sql), psql(&a, 1, db, &sql), "{db}.{table}");
    }
    assert_eq!(
        psql(&b, 1, "aok", "select count(*) from access_tokens"),
        "5000"
    );
    let droplets = "/var/stackato/data/droplets";
    assert_eq!(checksums(&b, 1, droplets), checksums(&a, 1, droplets));
    assert_eq!(
        b.sh(1, &format!("readlink {droplets}/latest")),
        "a1/b2/big.tgz\n"
    );
    let services = "/var/stackato/services/filesystem";
    assert_eq!(checksums(&b, 3, services), checksums(&a, 3, services));

    // dump-table: the guide's single-table pg_dump, as SQL. (A second
    // later, so `list` orders the two by time.)
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (code, r) = s.report(&refs(&a.args(&[
        "backup",
        "dump-table",
        "--db",
        "aok",
        "--table",
        "access_tokens",
        &dest,
    ])));
    assert_eq!(code, 0, "{r:#}");
    let dumps: Vec<PathBuf> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("aok-access_tokens-"))
        .collect();
    assert_eq!(dumps.len(), 1);
    let sql = Command::new("tar")
        .arg("-xOf")
        .arg(&dumps[0])
        .arg("aok/access_tokens.sql")
        .output()
        .unwrap();
    let sql = String::from_utf8_lossy(&sql.stdout);
    assert!(
        sql.contains("CREATE TABLE public.access_tokens"),
        "{}",
        &sql[..sql.len().min(500)]
    );
    assert!(!sql.contains("CREATE TABLE public.apps"));

    // list shows both, newest first; prune keeps the newest.
    let listed = s.ok(&refs(&a.args(&[
        "run",
        "backup",
        "list",
        out.path().to_str().unwrap(),
    ])));
    assert!(
        listed.contains(
            "cluster: databases (aok, cloud_controller), droplets, services/filesystem, settings  "
        ),
        "{listed}"
    );
    assert_eq!(listed.lines().count(), 3, "{listed}");
    let (code, r) = s.report(&refs(&a.args(&[
        "backup",
        "prune",
        "--keep",
        "1",
        out.path().to_str().unwrap(),
        "--yes",
    ])));
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(
        only_file(out.path()),
        dumps[0],
        "the newest (the table dump) is kept"
    );

    // A DEST ending in .sql gets the plain SQL file (`pg_dump ... > x.sql`),
    // private, with no spool left beside it; it is never overwritten.
    let sql_file = out.path().join("export.sql");
    let sql_dest = sql_file.to_str().unwrap();
    let args = [
        "backup",
        "dump-table",
        "--db",
        "aok",
        "--table",
        "access_tokens",
        sql_dest,
    ];
    let (code, r) = s.report(&refs(&a.args(&args)));
    assert_eq!(code, 0, "{r:#}");
    let (_, msg) = message(&r, "dump-table");
    assert!(
        msg.starts_with(&format!("wrote {sql_dest}: "))
            && msg.ends_with(" bytes of plain SQL (aok.access_tokens)"),
        "{msg}"
    );
    let text = std::fs::read_to_string(&sql_file).unwrap();
    assert!(
        text.contains("CREATE TABLE public.access_tokens"),
        "{}",
        &text[..text.len().min(300)]
    );
    assert!(!text.contains("CREATE TABLE public.apps"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&sql_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let mut names: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names.len(),
        2,
        "the table dump and export.sql only: {names:?}"
    );
    let (code, r) = s.report(&refs(&a.args(&args)));
    assert_eq!(code, 3, "{r:#}");
    let (_, msg) = message(&r, "dump-table");
    assert!(
        msg.contains("export.sql already exists; extracting never replaces a file"),
        "{msg}"
    );
    assert_eq!(std::fs::read_to_string(&sql_file).unwrap(), text);
}

#[test]
fn failures_leave_nothing_behind_and_maintenance_is_lifted() {
    let c = TestCluster::up(2, "sh-bk-fail");
    seed_small(&c);
    let out = tempfile::Builder::new()
        .prefix("sh-bk-")
        .tempdir_in("/tmp")
        .unwrap();
    let dest = out.path().join("export.tar.zst");
    let d = dest.to_str().unwrap();
    let s = Sandbox::new();
    s.install("backup");

    // kill -9 in the middle of streaming: no file under the final name;
    // the next export succeeds and verifies.
    c.sh(
        1,
        "head -c 400000000 /dev/urandom > /var/stackato/data/droplets/huge.bin",
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_stackhost"))
        .args(refs(&c.args(&["run", "backup", "export", d])))
        .env("STACKHOST_HOME", s.home.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let partial_grew = (0..600).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::fs::read_dir(out.path()).unwrap().any(|e| {
            let e = e.unwrap();
            // The writer's hidden temporary: `.NAME.stackhost-RANDOM`.
            e.file_name().to_string_lossy().contains(".stackhost-")
                && e.metadata().unwrap().len() > 1_000_000
        })
    });
    assert!(partial_grew, "the export never got going");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !dest.exists(),
        "a killed export must not leave a file under the final name"
    );
    c.sh(1, "rm /var/stackato/data/droplets/huge.bin");
    let (code, r) = s.report(&refs(&c.args(&["backup", "export", "--force-unlock", d])));
    assert_eq!(code, 0, "{r:#}");
    let (code, r) = s.report(&refs(&c.args(&["backup", "verify", d])));
    assert_eq!(code, 0, "{r:#}");
    for e in std::fs::read_dir(out.path()).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }

    // PostgreSQL down on the core node: a clear error naming the node and
    // the database, nothing partial left, and --maintenance lifted.
    let before = c.sh(1, "cat /run/stackato-controller.pid");
    c.sh(1, "pg_ctlcluster 15 main stop");
    let (code, r) = s.report(&refs(&c.args(&["backup", "export", "--maintenance", d])));
    assert_eq!(code, 3, "{r:#}");
    let (status, msg) = message(&r, "export");
    assert_eq!(status, "failed");
    assert!(
        msg.contains(&format!("postgres on node {}", c.node(1))) && msg.contains("database"),
        "{msg}"
    );
    assert_eq!(message(&r, "maintenance-on").0, "changed");
    assert_eq!(
        message(&r, "maintenance-off").0,
        "changed",
        "maintenance is lifted after a failed export"
    );
    let after = c.sh(1, "cat /run/stackato-controller.pid");
    assert_ne!(
        before, after,
        "the controller was stopped and started again"
    );
    assert!(
        c.sh(1, &format!("test -d /proc/{} && echo up", after.trim()))
            .contains("up")
    );
    assert_eq!(
        std::fs::read_dir(out.path()).unwrap().count(),
        0,
        "nothing partial is left"
    );

    // PostgreSQL stops between listing and dumping: the dump's own error
    // names the database, and again nothing is left.
    c.sh(1, "pg_ctlcluster 15 main start");
    let (code, r) = s.report(&refs(&c.args(&[
        "backup",
        "dump-table",
        "--db",
        "nosuchdb",
        "--table",
        "t",
        d,
    ])));
    assert_eq!(code, 3, "{r:#}");
    let (_, msg) = message(&r, "dump-table");
    assert!(
        msg.contains("database nosuchdb") && msg.contains(&c.node(1)),
        "{msg}"
    );
    assert_eq!(
        std::fs::read_dir(out.path()).unwrap().count(),
        0,
        "nothing partial is left"
    );

    // Service data with no exporter yet: the export fails naming each,
    // before anything is stopped or written...
    c.sh(
        2,
        "mkdir -p /var/stackato/services/mysql/d1 /var/stackato/services/redis/r1 \
         && echo row > /var/stackato/services/mysql/d1/t.ibd",
    );
    let n2 = c.node(2);
    let (code, r) = s.report(&refs(&c.args(&["backup", "export", "--maintenance", d])));
    assert_eq!(code, 3, "{r:#}");
    let err = r["plan_error"].as_str().unwrap_or_default();
    assert!(
        err.contains(&format!(
            "this export would leave out service data: mysql on node {n2} \
             (/var/stackato/services/mysql: stackhost has no exporter for it yet); redis on node \
             {n2} (/var/stackato/services/redis: stackhost has no exporter for it yet)"
        )) && err.contains("pass --allow-partial"),
        "{err}"
    );
    assert!(
        r["phases"].as_array().unwrap().is_empty(),
        "nothing ran: {r:#}"
    );
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
    // ... and with --allow-partial the rest is exported, the omission kept
    // in the artifact and said by export, verify and import.
    let (code, r) = s.report(&refs(&c.args(&["backup", "export", "--allow-partial", d])));
    assert_eq!(code, 0, "{r:#}");
    let (_, msg) = message(&r, "export");
    assert!(
        msg.contains(&format!(
            ", mysql on node {n2} (/var/stackato/services/mysql: stackhost has no exporter for it yet)"
        )),
        "{msg}"
    );
    let (code, r) = s.report(&refs(&c.args(&["backup", "verify", d])));
    assert_eq!(code, 0, "{r:#}");
    let (_, msg) = message(&r, "verify");
    assert!(
        msg.contains(&format!(
            "the export left out (--allow-partial): mysql on node {n2}"
        )),
        "{msg}"
    );
    c.sh(
        2,
        "rm -rf /var/stackato/services/mysql /var/stackato/services/redis",
    );
}

fn seed_small(c: &TestCluster) {
    pg_up(c, 1);
    c.sh(1, "su postgres -c 'createdb aok'");
    psql(
        c,
        1,
        "aok",
        "create table t(i int); insert into t select generate_series(1, 100);",
    );
    c.sh(
        1,
        "mkdir -p /var/stackato/data/droplets && echo small > /var/stackato/data/droplets/one",
    );
}

#[test]
fn a_scheduled_export_really_runs_on_the_filesystem_node() {
    let c = TestCluster::up(3, "sh-bk-cron");
    seed_small(&c);
    let s = Sandbox::new();
    s.install("backup");

    // The filesystem node gets stackhost, the backup plugin, the cluster's
    // key and an inventory of its own: node 1 over SSH, itself local.
    let fs_node = c.node(3);
    let bin = env!("CARGO_BIN_EXE_stackhost");
    c.docker(&["cp", bin, &format!("{fs_node}:/usr/local/bin/stackhost")]);
    // Its file operations on node 1 go through the agent beside it.
    let agent = env!("CARGO_BIN_EXE_stackhost-agent");
    c.docker(&[
        "cp",
        agent,
        &format!("{fs_node}:/usr/local/bin/stackhost-agent"),
    ]);
    c.docker(&[
        "cp",
        support::wasm("backup").to_str().unwrap(),
        &format!("{fs_node}:/tmp/backup.wasm"),
    ]);
    c.docker(&[
        "cp",
        c.path("id_ed25519").to_str().unwrap(),
        &format!("{fs_node}:/root/.ssh/id_ed25519"),
    ]);
    let ip1 = c.bridge_ip(1);
    let inventory = format!(
        "[[node]]\nname = \"core\"\naddress = \"{ip1}\"\nport = 22\nuser = \"root\"\nidentity = \"/root/.ssh/id_ed25519\"\n\
         roles = [\"core\", \"controller\", \"postgresql\"]\n\n[[node]]\nname = \"fs\"\nlocal = true\nroles = [\"dea\", \"filesystem\"]\n"
    );
    c.sh(
        3,
        &format!(
            "chmod 600 /root/.ssh/id_ed25519 && mkdir -p /root/.config/stackhost && \
             printf '%s' '{inventory}' > /root/.config/stackhost/inventory.toml && \
             ssh-keyscan -t ed25519 {ip1} >> /root/.ssh/known_hosts 2>/dev/null && \
             HOME=/root stackhost plugin install --yes /tmp/backup.wasm >/dev/null"
        ),
    );

    let dest = "/var/backups/stackato/nightly.tar.zst";
    let (code, r) = s.report(&refs(&c.args(&[
        "backup",
        "schedule",
        "--at",
        "30 2 * * *",
        dest,
    ])));
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(
        r["phases"][0]["steps"][0]["node"],
        fs_node.as_str(),
        "scheduled on the filesystem node"
    );
    let cron = c.sh(3, "cat /etc/cron.d/stackhost-backup");
    let entry = cron
        .lines()
        .find(|l| !l.starts_with('#') && l.contains(" root "))
        .expect("an entry");
    let (when, command) = entry.split_once(" root ").unwrap();
    assert_eq!(when, "30 2 * * *");
    assert_eq!(
        command,
        format!("/usr/local/bin/stackhost run backup export --cluster --force {dest}"),
        "a file name is the same file every night: each run replaces the last"
    );
    assert_eq!(
        c.sh(3, "stat -c %a /etc/cron.d/stackhost-backup").trim(),
        "644"
    );

    // Run the entry's command the way cron does (sh -c, cron's PATH, as
    // root), twice, as on two nights (the second replaces the first's
    // export), and check the export it leaves.
    for _night in 0..2 {
        c.docker(&[
            "exec",
            &fs_node,
            "env",
            "-i",
            "HOME=/root",
            "SHELL=/bin/sh",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "sh",
            "-c",
            command,
        ]);
    }
    let members = c.sh(3, &format!("tar -tf {dest}"));
    for m in [
        "backup.json",
        "databases/aok.dump",
        "droplets/one",
        "stackhost-manifest.json",
    ] {
        assert!(
            members.lines().any(|l| l == m),
            "{m} missing from the scheduled export:\n{members}"
        );
    }
    let verified = c.sh(
        3,
        &format!("HOME=/root stackhost run backup verify {dest} --json"),
    );
    assert!(
        verified.contains("all ") && verified.contains("match their sha256"),
        "{verified}"
    );

    let (_, r) = s.report(&refs(&c.args(&["backup", "schedule", "--list"])));
    assert!(
        r["phases"][0]["steps"][0]["message"]
            .as_str()
            .unwrap()
            .contains("30 2 * * * root"),
        "{r:#}"
    );
    let (code, _) = s.report(&refs(&c.args(&["backup", "schedule", "--remove"])));
    assert_eq!(code, 0);
    assert!(
        c.sh(
            3,
            "test -e /etc/cron.d/stackhost-backup && echo yes || echo no"
        )
        .contains("no")
    );
    // A usage error: a plain `error:` line and exit 2, nothing journaled.
    let out = s.fails(
        2,
        &refs(&c.args(&["run", "backup", "schedule", "--at", "3am", dest])),
    );
    assert!(
        out.starts_with("error: `3am` is not a cron schedule (five fields, e.g. \"0 3 * * *\")\n"),
        "{out}"
    );
}

/// A fresh directory inside the backup plugin's archive grant (`/tmp`).
fn out_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("sh-bk-")
        .tempdir_in("/tmp")
        .unwrap()
}

/// The names of the entries in `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0; n];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut bytes)
        .unwrap();
    bytes
}

/// Date `path` `secs` seconds back (list and prune order by time).
fn age(path: &Path, secs: u64) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(secs))
        .unwrap();
}

/// An export laid out as the plugin writes one (`backup.json` first, then
/// the items, then the host's manifest), written by the host's own
/// artifact writer: every role was asked for, only database `aok` is in
/// it. For the tests that need exports but no cluster.
fn export_of_aok(path: &Path, secs_ago: u64) {
    let meta = serde_json::json!({
        "format": "stackhost-backup/1",
        "product_version": "3.4.2",
        "created": 1_795_546_740u64,
        "scope": "cluster",
        "roles": ["postgresql", "controller", "filesystem", "core"],
        "topology": [{"name": "core-1", "address": "10.0.0.1", "roles": ["core", "postgresql"]}],
        "contents": [{
            "kind": "database",
            "item": "databases/aok.dump",
            "role": "postgresql",
            "node": "core-1",
            "source": "aok",
        }],
    });
    let json = serde_json::to_vec_pretty(&meta).unwrap();
    let dump = random_bytes(20_000);
    let dir = std::fs::File::open(path.parent().unwrap()).unwrap();
    let mut w = stackhost::artifact::Writer::create_in(
        dir.into(),
        path.file_name().unwrap(),
        path,
        stackhost::artifact::Compression::Zstd,
        1,
    )
    .unwrap();
    w.add_reader("backup.json", json.len() as u64, &json[..])
        .unwrap();
    w.add_reader("databases/aok.dump", dump.len() as u64, &dump[..])
        .unwrap();
    w.finish().unwrap();
    age(path, secs_ago);
}

#[test]
fn export_refuses_a_contradicting_name_and_an_existing_file() {
    let s = Sandbox::new();
    s.install("backup");
    let out = out_dir();

    // --gzip with a name that says otherwise: a usage error, nothing written.
    for (name, says) in [("e.tar.zst", "zstd"), ("e.tar", "no compression")] {
        let dest = out.path().join(name);
        let d = dest.to_str().unwrap();
        let text = s.fails(2, &["run", "backup", "export", "--gzip", d]);
        assert!(
            text.starts_with(&format!(
                "error: --gzip contradicts DEST {d}, whose name says {says}; \
                 name it .tar.gz or .tgz, or leave out --gzip\n\
                 See `stackhost run backup export --help`.\n"
            )),
            "{text}"
        );
    }
    assert!(names_in(out.path()).is_empty(), "nothing is written");

    // An existing file is refused without --force (under --dry-run too,
    // as the real run would be) and left as it was.
    let old = out.path().join("old.tar.zst");
    let o = old.to_str().unwrap();
    let bytes = random_bytes(5000);
    std::fs::write(&old, &bytes).unwrap();
    for dry_run in [false, true] {
        let mut args = vec!["run", "backup", "export"];
        if dry_run {
            args.push("--dry-run");
        }
        args.push(o);
        let text = s.fails(2, &args);
        assert!(
            text.starts_with(&format!(
                "error: {o} already exists; pass --force to replace it\n"
            )),
            "{text}"
        );
    }
    assert_eq!(std::fs::read(&old).unwrap(), bytes, "left as it was");
    assert_eq!(names_in(out.path()), ["old.tar.zst"]);
}

#[test]
fn exports_are_private_and_replaced_only_with_force() {
    let c = TestCluster::up(1, "sh-bk-force");
    seed_small(&c);
    let out = out_dir();
    let dest = out.path().join("e.tar.zst");
    let d = dest.to_str().unwrap();
    let s = Sandbox::new();
    s.install("backup");
    let private = |what: &str| {
        let meta = std::fs::metadata(&dest).unwrap();
        assert_eq!(
            meta.permissions().mode() & 0o7777,
            0o600,
            "{what}: an export holds dumps and settings, only its owner may read it"
        );
        meta.ino()
    };

    let (code, r) = s.report(&refs(&c.args(&["backup", "export", d])));
    assert_eq!(code, 0, "{r:#}");
    let first = private("a new export");

    // A second export to the same name is refused and touches nothing.
    let text = s.fails(2, &refs(&c.args(&["run", "backup", "export", d])));
    assert!(
        text.starts_with(&format!(
            "error: {d} already exists; pass --force to replace it\n"
        )),
        "{text}"
    );
    assert_eq!(private("after the refusal"), first, "the same file");
    assert_eq!(names_in(out.path()), ["e.tar.zst"]);

    // --force puts a new file in its place, private too, and it verifies.
    let (code, r) = s.report(&refs(&c.args(&["backup", "export", "--force", d])));
    assert_eq!(code, 0, "{r:#}");
    assert!(
        message(&r, "export").1.starts_with(&format!("wrote {d}: ")),
        "{r:#}"
    );
    assert_ne!(private("a replaced export"), first, "a new file");
    assert_eq!(names_in(out.path()), ["e.tar.zst"]);
    let (code, r) = s.report(&refs(&c.args(&["backup", "verify", d])));
    assert_eq!(code, 0, "{r:#}");

    // list says what the export holds, not what was asked for: every
    // role, but one node has no filesystem role and no /etc/stackato.
    let listed = s.ok(&refs(&c.args(&[
        "run",
        "backup",
        "list",
        out.path().to_str().unwrap(),
    ])));
    let line = listed.lines().find(|l| l.ends_with(d)).expect(&listed);
    assert!(
        line.contains("cluster: databases (aok), droplets  ")
            && !line.contains("settings")
            && !line.contains("services"),
        "{listed}"
    );
}

#[test]
fn list_says_what_each_file_holds_in_readable_sizes() {
    let s = Sandbox::new();
    s.install("backup");
    let out = out_dir();

    // A directory that does not exist yet holds no exports.
    let missing = out.path().join("not-yet");
    let m = missing.to_str().unwrap();
    assert_eq!(
        s.ok(&["run", "backup", "list", m]),
        format!("no exports in {m} (it does not exist yet)\n")
    );
    assert!(!missing.exists(), "listing creates nothing");

    export_of_aok(&out.path().join("aok.tar.zst"), 100);
    for (name, size) in [
        ("tiny.tar", 500),
        ("small.tar.zst", 3000),
        ("big.tgz", 2_200_000),
    ] {
        std::fs::write(out.path().join(name), random_bytes(size)).unwrap();
    }
    let listed = s.ok(&["run", "backup", "list", out.path().to_str().unwrap()]);
    let line = |name: &str| {
        listed
            .lines()
            .find(|l| l.ends_with(&format!("/{name}")))
            .unwrap_or_else(|| panic!("{name} is not listed:\n{listed}"))
    };
    assert!(
        line("aok.tar.zst").contains("cluster: databases (aok)  ")
            && line("aok.tar.zst").contains(" KiB  "),
        "the items present, not the roles asked for:\n{listed}"
    );
    assert!(line("tiny.tar").contains(" 500 B  "), "{listed}");
    assert!(
        line("small.tar.zst").contains(" 2.9 KiB  ")
            && line("small.tar.zst").contains("? (no backup.json)"),
        "{listed}"
    );
    assert!(line("big.tgz").contains(" 2.1 MiB  "), "{listed}");
    assert_eq!(
        listed.lines().count(),
        5,
        "a header and four files:\n{listed}"
    );
}

#[test]
fn prune_counts_and_deletes_only_readable_exports() {
    let s = Sandbox::new();
    s.install("backup");
    let out = out_dir();
    let at = |name: &str| out.path().join(name).to_str().unwrap().to_string();
    // Oldest first: two good exports, then a foreign file and an export
    // cut short, the two newest, which counting every file would keep
    // while deleting both good exports.
    export_of_aok(Path::new(&at("good-old.tar.zst")), 4000);
    export_of_aok(Path::new(&at("good-new.tar.zst")), 3000);
    std::fs::write(at("foreign.tar.zst"), random_bytes(30_000)).unwrap();
    age(Path::new(&at("foreign.tar.zst")), 2000);
    let whole = std::fs::read(at("good-new.tar.zst")).unwrap();
    std::fs::write(at("cut.tar.zst"), &whole[..whole.len() / 2]).unwrap();
    age(Path::new(&at("cut.tar.zst")), 1000);
    let dir = out.path().to_str().unwrap();

    let (code, r) = s.report(&["backup", "prune", "--keep", "1", dir, "--yes"]);
    assert_eq!(code, 0, "{r:#}");
    let (status, msg) = only_step(&r);
    assert_eq!(status, "changed", "{msg}");
    assert!(
        msg.starts_with(&format!(
            "deleted 1 of 2 exports: {}; ",
            at("good-old.tar.zst")
        )),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "skipped (not readable stackhost exports, never deleted; `backup verify FILE` says why): {}, {}",
            at("cut.tar.zst"),
            at("foreign.tar.zst")
        )),
        "{msg}"
    );
    assert_eq!(
        names_in(out.path()),
        ["cut.tar.zst", "foreign.tar.zst", "good-new.tar.zst"]
    );

    // Again: the one good export is kept, the others still never touched.
    let (code, r) = s.report(&["backup", "prune", "--keep", "1", dir, "--yes"]);
    assert_eq!(code, 0, "{r:#}");
    let (status, msg) = only_step(&r);
    assert_eq!(status, "ok", "{msg}");
    assert!(
        msg.starts_with(&format!(
            "1 export in {dir}, keeping 1: nothing to delete; skipped"
        )),
        "{msg}"
    );
    assert_eq!(names_in(out.path()).len(), 3);
}
