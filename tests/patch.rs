//! Patching on a real cluster: vendor patches signed with the standard
//! `minisign` tool, trusted keys, `patch status|install|revert` in kato's
//! vocabulary, checked against the files, ledgers and role processes on
//! the nodes themselves (read with `docker exec`, not through stackhost).

mod support;

#[path = "support/cluster.rs"]
mod cluster;

use cluster::TestCluster;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::{Sandbox, refs, repo, wasm};

const AOK: &str = "aok-endpoint-fix";
const LOGS: &str = "logs-endpoint-fix";
/// An original configuration file with no trailing newline and a line the
/// patch replaces, so "byte for byte" means something.
const AOK_ORIGINAL: &str = "# aok settings\ncustom_uri_redirect: loose\ntoken_ttl: 3600";

fn minisign(args: &[&str]) {
    let out = Command::new("minisign")
        .args(args)
        .output()
        .expect("minisign is installed (tests/run installs it)");
    assert!(
        out.status.success(),
        "minisign {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Copy the built patch `krate` into `dir` and sign it with `key` the way
/// a vendor would; returns the `.wasm` path (the `.minisig` is beside it).
fn signed(dir: &Path, krate: &str, key: &Path) -> PathBuf {
    let file = dir.join(format!("{krate}.wasm"));
    std::fs::copy(wasm(krate), &file).unwrap();
    minisign(&[
        "-S",
        "-s",
        key.to_str().unwrap(),
        "-m",
        file.to_str().unwrap(),
        "-t",
        &format!("test vendor: {krate} 1.0.0"),
    ]);
    file
}

fn test_key() -> PathBuf {
    repo().join("tests/keys/test-vendor.key")
}

fn test_pub() -> String {
    repo()
        .join("tests/keys/test-vendor.pub")
        .display()
        .to_string()
}

/// A sandbox with the `patch` plugin, the test key trusted and both
/// example patches installed, signed.
fn patched_sandbox(dir: &Path) -> Sandbox {
    let s = Sandbox::new();
    s.install("patch");
    s.ok(&["keys", "trust", &test_pub()]);
    for krate in [AOK, LOGS] {
        let file = signed(dir, krate, &test_key());
        let out = s.ok(&["plugin", "install", "--yes", file.to_str().unwrap()]);
        assert!(out.contains("signed by key"), "{out}");
    }
    s
}

/// The PID of role `role`'s stand-in service on node `i`.
fn role_pid(c: &TestCluster, i: usize, role: &str) -> String {
    let pid = c.sh(i, &format!("cat /run/stackato-{role}.pid"));
    let pid = pid.trim().to_string();
    assert!(
        c.sh(i, &format!("test -d /proc/{pid} && echo alive || true"))
            .contains("alive"),
        "role {role} on node {i} is not running"
    );
    pid
}

/// Whether `path` exists on node `i`.
fn exists(c: &TestCluster, i: usize, path: &str) -> bool {
    c.sh(i, &format!("test -e {path} && echo yes || echo no"))
        .trim()
        == "yes"
}

fn statuses(report: &serde_json::Value) -> Vec<(String, String, String)> {
    report["phases"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["steps"].as_array().unwrap())
        .map(|s| {
            (
                s["node"].as_str().unwrap().to_string(),
                s["name"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn status_install_revert_on_the_cluster() {
    let c = TestCluster::up(3, "sh-patch");
    let dir = tempfile::tempdir().unwrap();
    let s = patched_sandbox(dir.path());
    let (n1, n2) = (c.node(1), c.node(2));
    c.sh(
        1,
        "mkdir -p /etc/stackato && echo 3.4.2 > /etc/stackato/version",
    );
    c.sh(
        1,
        &format!("printf '%s' '{AOK_ORIGINAL}' > /etc/stackato/aok.yml"),
    );

    // Before: kato's wording, both patches to be installed where their
    // roles are (controller on node 1, router on node 2), nowhere else.
    let before = s.ok(&refs(&c.args(&["run", "patch", "status"])));
    let expected = format!(
        "2 updates are available for 3.4.2.
    aok-endpoint-fix: Correct aok endpoint redirecting to custom uri
        patch id:           1
        roles affected:     router, controller
        installed on:       none
        to be installed on: {n1}, {n2}
    logs-endpoint-fix: Allow custom logs endpoint
        patch id:           2
        roles affected:     controller
        installed on:       none
        to be installed on: {n1}
"
    );
    assert_eq!(before, expected);
    let json: serde_json::Value =
        serde_json::from_str(&s.ok(&refs(&c.args(&["run", "patch", "status", "--json"])))).unwrap();
    assert_eq!(json["updates_available"], 2);
    assert_eq!(
        json["patches"][0]["to_be_installed_on"],
        serde_json::json!([n1, n2])
    );
    assert!(
        json["patches"][0]["signed_by"]
            .as_str()
            .unwrap()
            .contains("test vendor: aok-endpoint-fix 1.0.0"),
        "{json:#}"
    );

    // Install without restarting: only the affected nodes change, and the
    // role processes keep their PIDs.
    let pids = (role_pid(&c, 1, "controller"), role_pid(&c, 2, "router"));
    let dea3 = role_pid(&c, 3, "dea");
    let (code, r) = s.report(&refs(&c.args(&["patch", "install", "--no-restart"])));
    assert_eq!(code, 0, "{r:#}");
    let mut got = statuses(&r);
    got.sort();
    let changed = |n: &str, p: &str| (n.to_string(), format!("apply {p}"), "changed".to_string());
    assert_eq!(
        got,
        vec![changed(&n1, AOK), changed(&n1, LOGS), changed(&n2, AOK)]
    );
    assert_eq!(
        c.sh(1, "cat /etc/stackato/aok.yml"),
        "# aok settings\ncustom_uri_redirect: exact\ntoken_ttl: 3600"
    );
    assert_eq!(
        c.sh(1, "cat /etc/stackato/logyard.yml"),
        "allow_custom_endpoint: true\n"
    );
    assert_eq!(
        c.sh(2, "cat /etc/stackato/router.yml"),
        "aok_endpoint_redirect: preserve-custom-uri\n"
    );
    assert!(
        !exists(&c, 2, "/etc/stackato/logyard.yml"),
        "logs-endpoint-fix is controller-only"
    );
    assert!(
        !exists(&c, 3, "/etc/stackato"),
        "node 3 holds no affected role"
    );
    assert!(!exists(&c, 3, "/var/lib/stackhost/patches/ledger"));
    assert_eq!(
        (role_pid(&c, 1, "controller"), role_pid(&c, 2, "router")),
        pids
    );
    assert_eq!(role_pid(&c, 3, "dea"), dea3);
    let ledger1 = c.sh(1, "cut -f1 /var/lib/stackhost/patches/ledger");
    assert_eq!(ledger1, format!("{AOK}\n{LOGS}\n"));

    // After: the status agrees with the nodes.
    let after = s.ok(&refs(&c.args(&["run", "patch", "status"])));
    assert!(
        after.starts_with("0 updates are available for 3.4.2.\n"),
        "{after}"
    );
    assert!(
        after.contains(&format!("installed on:       {n1}, {n2}\n")),
        "{after}"
    );
    assert!(
        after.contains(&format!("installed on:       {n1}\n")),
        "{after}"
    );

    // Again: a no-op reported as ok, no restart planned.
    let (code, r) = s.report(&refs(&c.args(&["patch", "install"])));
    assert_eq!(code, 0, "{r:#}");
    let got = statuses(&r);
    assert_eq!(got.len(), 3, "{r:#}");
    assert!(got.iter().all(|(_, _, st)| st == "ok"), "{r:#}");
    assert_eq!(
        (role_pid(&c, 1, "controller"), role_pid(&c, 2, "router")),
        pids
    );

    // Revert restores the original byte for byte, removes what the patch
    // created, updates the ledger, and restarts the roles.
    let (code, r) = s.report(&refs(&c.args(&["patch", "revert", AOK])));
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(c.sh(1, "cat /etc/stackato/aok.yml"), AOK_ORIGINAL);
    assert!(!exists(&c, 2, "/etc/stackato/router.yml"));
    assert_eq!(
        c.sh(1, "cut -f1 /var/lib/stackhost/patches/ledger"),
        format!("{LOGS}\n")
    );
    assert_ne!(
        role_pid(&c, 1, "controller"),
        pids.0,
        "controller restarted"
    );
    assert_ne!(role_pid(&c, 2, "router"), pids.1, "router restarted");
    assert_eq!(role_pid(&c, 3, "dea"), dea3, "dea untouched");
    let status = s.ok(&refs(&c.args(&["run", "patch", "status"])));
    assert!(
        status.starts_with("1 update is available for 3.4.2.\n"),
        "{status}"
    );

    // A patch for another product version is listed as not applicable and
    // never applied.
    c.sh(1, "echo 3.6.0 > /etc/stackato/version");
    let status = s.ok(&refs(&c.args(&["run", "patch", "status"])));
    assert!(
        status.starts_with("0 updates are available for 3.6.0.\n"),
        "{status}"
    );
    assert!(
        status.contains("2 patches are not applicable to 3.6.0:\n"),
        "{status}"
    );
    assert!(
        status.contains("        applies to:         =3.4.2\n"),
        "{status}"
    );
    let out = s.fails(3, &refs(&c.args(&["run", "patch", "install", AOK])));
    assert!(out.contains("it is not applicable"), "{out}");
    let (code, r) = s.report(&refs(&c.args(&["patch", "install"])));
    assert_eq!(code, 0, "{r:#}");
    assert!(statuses(&r).is_empty(), "nothing planned: {r:#}");
    assert_eq!(c.sh(1, "cat /etc/stackato/aok.yml"), AOK_ORIGINAL);
    assert!(!exists(&c, 2, "/etc/stackato/router.yml"));
}

#[test]
fn local_applies_to_this_machine_only() {
    let c = TestCluster::up(2, "sh-patch-local");
    let dir = tempfile::tempdir().unwrap();
    let s = patched_sandbox(dir.path());
    c.sh(
        1,
        "mkdir -p /etc/stackato && echo 3.4.2 > /etc/stackato/version",
    );
    // This machine joins the inventory as a controller node.
    let inv = dir.path().join("inventory.toml");
    let mut text = std::fs::read_to_string(c.path("inventory.toml")).unwrap();
    text.push_str("[[node]]\nname = \"operator\"\nlocal = true\nroles = [\"controller\"]\n");
    std::fs::write(&inv, text).unwrap();
    let args = |a: &[&str]| {
        support::with_flags(
            a,
            &[
                "--inventory".into(),
                inv.display().to_string(),
                "--known-hosts".into(),
                c.path("known_hosts").display().to_string(),
            ],
        )
    };
    let logyard = Path::new("/etc/stackato/logyard.yml");
    assert!(
        !logyard.exists(),
        "this machine must not carry Stackato configuration"
    );

    let (code, r) = s.report(&refs(&args(&[
        "patch",
        "install",
        LOGS,
        "--local",
        "--no-restart",
    ])));
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(
        statuses(&r),
        vec![(
            "operator".to_string(),
            format!("apply {LOGS}"),
            "changed".to_string()
        )]
    );
    assert_eq!(
        std::fs::read_to_string(logyard).unwrap(),
        "allow_custom_endpoint: true\n"
    );
    assert!(
        !exists(&c, 1, "/etc/stackato/logyard.yml"),
        "node 1 untouched by --local"
    );

    let (code, r) = s.report(&refs(&args(&[
        "patch",
        "revert",
        LOGS,
        "--local",
        "--no-restart",
    ])));
    assert_eq!(code, 0, "{r:#}");
    assert!(!logyard.exists(), "revert removed what the patch created");
    // What the patch and the ledger leave on this machine, empty now.
    let _ = std::fs::remove_dir("/etc/stackato");
    let _ = std::fs::remove_dir_all("/var/lib/stackato/patch-backups/logs-endpoint-fix");
    let _ = std::fs::remove_dir_all("/var/lib/stackhost/patches");

    // Without a local node in the inventory, --local is refused.
    let out = s.fails(3, &refs(&c.args(&["run", "patch", "install", "--local"])));
    assert!(
        out.contains("--local: no selected node is this machine"),
        "{out}"
    );
}

#[test]
fn unsigned_untrusted_and_tampered_patches_are_refused() {
    let c = TestCluster::up(2, "sh-patch-sig");
    let dir = tempfile::tempdir().unwrap();
    c.sh(
        1,
        "mkdir -p /etc/stackato && echo 3.4.2 > /etc/stackato/version",
    );
    let s = Sandbox::new();
    s.install("patch");

    // Unsigned: refused, unless --allow-unsigned.
    let bare = dir.path().join("bare");
    std::fs::create_dir(&bare).unwrap();
    let unsigned = bare.join(format!("{LOGS}.wasm"));
    std::fs::copy(wasm(LOGS), &unsigned).unwrap();
    let out = s.fails(
        1,
        &["plugin", "install", "--yes", unsigned.to_str().unwrap()],
    );
    assert!(out.contains("is not signed"), "{out}");

    // Signed by a key the operator does not trust: refused.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let other_key = other.join("other.key");
    minisign(&[
        "-G",
        "-W",
        "-p",
        other.join("other.pub").to_str().unwrap(),
        "-s",
        other_key.to_str().unwrap(),
    ]);
    s.ok(&["keys", "trust", &test_pub()]);
    let untrusted = signed(&other, AOK, &other_key);
    let out = s.fails(
        1,
        &["plugin", "install", "--yes", untrusted.to_str().unwrap()],
    );
    assert_eq!(
        out.matches("which is not trusted").count(),
        1,
        "said once: {out}"
    );

    // Signed by the trusted key, but the file changed after signing.
    let good = dir.path().join("good");
    std::fs::create_dir(&good).unwrap();
    let file = signed(&good, AOK, &test_key());
    let mut bytes = std::fs::read(&file).unwrap();
    let tampered_dir = dir.path().join("tampered");
    std::fs::create_dir(&tampered_dir).unwrap();
    let tampered = tampered_dir.join(format!("{AOK}.wasm"));
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&tampered, &bytes).unwrap();
    std::fs::copy(
        good.join(format!("{AOK}.wasm.minisig")),
        tampered_dir.join(format!("{AOK}.wasm.minisig")),
    )
    .unwrap();
    let out = s.fails(
        1,
        &["plugin", "install", "--yes", tampered.to_str().unwrap()],
    );
    assert!(out.contains("does not match the file"), "{out}");
    assert!(
        s.ok(&["plugin", "list"])
            .lines()
            .all(|l| !l.starts_with(AOK)),
        "nothing installed"
    );

    // Properly signed: installed, and `plugin info` says who signed it.
    s.ok(&["plugin", "install", "--yes", file.to_str().unwrap()]);
    let info = s.ok(&["plugin", "info", AOK]);
    assert!(info.contains("signed by:   key 22B4A2B7CF97A4A8"), "{info}");
    assert!(
        info.contains(&format!("signed as:   test vendor: {AOK} 1.0.0")),
        "{info}"
    );

    // The installed file is altered afterwards: verified again before
    // apply, so nothing is applied on any node.
    let stored = s
        .home
        .path()
        .join(format!("data/plugins/{AOK}/1.0.0/plugin.wasm"));
    let mut installed = std::fs::read(&stored).unwrap();
    installed.push(0);
    std::fs::write(&stored, &installed).unwrap();
    let out = s.fails(3, &refs(&c.args(&["run", "patch", "install"])));
    assert!(out.contains("has changed since it was granted"), "{out}");
    installed.pop();
    std::fs::write(&stored, &installed).unwrap();

    // The stored signature is swapped for a valid signature of another
    // file by the same key: refused before apply.
    let decoy = dir.path().join("decoy.bin");
    std::fs::write(&decoy, b"not the patch").unwrap();
    minisign(&[
        "-S",
        "-s",
        test_key().to_str().unwrap(),
        "-m",
        decoy.to_str().unwrap(),
    ]);
    let sig = stored.with_extension("wasm.minisig");
    let original_sig = std::fs::read(&sig).unwrap();
    std::fs::copy(dir.path().join("decoy.bin.minisig"), &sig).unwrap();
    let out = s.fails(3, &refs(&c.args(&["run", "patch", "install"])));
    assert!(
        out.contains("no longer verifies") && out.contains("does not match"),
        "{out}"
    );
    std::fs::write(&sig, original_sig).unwrap();

    // The key is no longer trusted: its patches are refused from then on.
    s.ok(&["keys", "remove", "22B4A2B7CF97A4A8"]);
    let out = s.fails(3, &refs(&c.args(&["run", "patch", "install"])));
    assert_eq!(
        out.matches("which is not trusted").count(),
        1,
        "said once: {out}"
    );
    for i in 1..=2 {
        assert!(
            !exists(&c, i, "/etc/stackato/aok.yml"),
            "nothing applied on node {i}"
        );
        assert!(
            !exists(&c, i, "/etc/stackato/router.yml"),
            "nothing applied on node {i}"
        );
    }

    // --allow-unsigned installs an unsigned patch, and says so.
    let out = s.run(&[
        "plugin",
        "install",
        "--yes",
        "--allow-unsigned",
        unsigned.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning: installing unsigned patch"));
    let info = s.ok(&["plugin", "info", LOGS]);
    assert!(info.contains("signature:   none (unsigned)"), "{info}");
}
