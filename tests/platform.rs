//! What WIT 0.1.1 added, seen from the operator's side: a plugin built
//! against 0.1.0 still installs and runs; `on-failure` phases run only
//! after a failure and see what earlier steps did; step data under
//! `--json`; the whole inventory under `--nodes`; usage errors exit 2;
//! dry-run diffs of file writes; live program output.

mod support;

use support::{Sandbox, only_step, repo, scratch_rw};

/// The checked-in component built against `stackhost:host@0.1.0`.
fn old_probe() -> String {
    repo()
        .join("tests/fixtures/wit-0.1.0/probe-0-1-0.wasm")
        .display()
        .to_string()
}

#[test]
fn a_plugin_built_against_wit_0_1_0_still_installs_and_runs() {
    let s = Sandbox::new();
    let check = s.ok(&["plugin", "check", &old_probe()]);
    assert!(
        check.contains("probe-0-1-0 0.1.0 (plugin), stackhost:host@0.1.0"),
        "{check}"
    );
    s.ok(&["plugin", "install", "--yes", &old_probe()]);
    let dir = scratch_rw();
    let file = dir.path().join("f");
    let path = file.to_str().unwrap();

    // Its fs, exec and nodes imports are 0.1.0's, served by 0.1.1.
    let (code, r) = s.report(&["probe-0-1-0", "write", path, "hello"]);
    assert_eq!((code, only_step(&r).0.as_str()), (0, "changed"), "{r:#}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "hello");
    let (code, r) = s.report(&["probe-0-1-0", "read", path]);
    assert_eq!(
        (code, only_step(&r)),
        (0, ("ok".into(), "hello".into())),
        "{r:#}"
    );
    let (code, r) = s.report(&["probe-0-1-0", "exec", "echo", "from", "0.1.0"]);
    assert_eq!((code, only_step(&r).1.trim()), (0, "from 0.1.0"), "{r:#}");
    // Its `always` phases keep their meaning.
    let (code, r) = s.report(&["probe-0-1-0", "chain", dir.path().to_str().unwrap()]);
    assert_eq!(
        code, 3,
        "the second phase fails until the gate exists: {r:#}"
    );
    let phases: Vec<(&str, &str)> = r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["when"].as_str().unwrap()))
        .collect();
    assert_eq!(
        phases,
        [
            ("first", "normal"),
            ("second", "normal"),
            ("cleanup", "always")
        ]
    );
    assert_eq!(r["phases"][2]["steps"][0]["status"], "changed", "{r:#}");
    // A dry run of its write shows the diff, as for any plugin.
    let (code, r) = s.report(&["probe-0-1-0", "write", path, "hello\nworld", "--dry-run"]);
    assert_eq!(code, 0);
    let diff = r["phases"][0]["steps"][0]["mutations"][0]["diff"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        diff.starts_with(&format!("--- a{path}\n+++ b{path}\n@@ -1 +1,2 @@\n-hello")),
        "{diff}"
    );
    assert!(diff.contains("\n+world"), "{diff}");
}

/// A step as the tests compare it: (node, status, message).
type StepSeen = (String, String, String);

/// (phase, when, [(node, status, message)]) of a report.
fn phases(r: &serde_json::Value) -> Vec<(String, String, Vec<StepSeen>)> {
    r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["when"].as_str().unwrap().to_string(),
                p["steps"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| {
                        (
                            s["node"].as_str().unwrap().to_string(),
                            s["status"].as_str().unwrap().to_string(),
                            s["message"].as_str().unwrap().to_string(),
                        )
                    })
                    .collect(),
            )
        })
        .collect()
}

/// Three local nodes (`a`, `b`, `c`) and one over SSH that no test here
/// selects, so it is never contacted.
fn inventory(dir: &std::path::Path) -> String {
    let path = dir.join("inventory.toml");
    std::fs::write(
        &path,
        r#"
[defaults]
user = "stackato"
port = 2222

[[node]]
name = "a"
local = true
roles = ["core"]

[[node]]
name = "dea-9"
address = "10.9.9.9"
hostname = "dea-9.example.internal"
port = 2200
roles = ["dea", "router"]

[[node]]
name = "db"
address = "10.9.9.10"
roles = ["postgresql"]
"#,
    )
    .unwrap();
    path.display().to_string()
}

#[test]
fn on_failure_phases_run_only_after_a_failure_and_see_earlier_outcomes() {
    let s = Sandbox::new();
    s.install("platform");

    // Nothing fails: the rollback phase is not run, cleanup is.
    let (code, r) = s.report(&["platform", "rollout"]);
    assert_eq!(code, 0, "{r:#}");
    let p = phases(&r);
    assert_eq!(
        p[0],
        (
            "change".into(),
            "normal".into(),
            vec![("local".into(), "changed".into(), "changed local".into())]
        )
    );
    assert_eq!(
        r["phases"][0]["steps"][0]["data"],
        serde_json::json!({"node": "local", "was": "v1"})
    );
    assert_eq!(
        p[1],
        (
            "rollback".into(),
            "on-failure".into(),
            vec![(
                "local".into(),
                "not-run".into(),
                "an on-failure phase, and nothing failed".into()
            )]
        )
    );
    assert_eq!(
        p[2].2[0].2,
        "cleanup saw mine: change/local/change=Changed{\"node\":\"local\",\"was\":\"v1\"} \
         rollback/local/rollback=NotRun | all: 2 | failure: none"
    );

    // The change fails: rollback runs, on the failed node too, and reads
    // the failure and the earlier outcomes through the host.
    let (code, r) = s.report(&["platform", "rollout", "--fail-on", "local"]);
    assert_eq!(code, 3, "{r:#}");
    let p = phases(&r);
    assert_eq!(p[0].2[0].1, "failed");
    assert_eq!(
        p[1].2[0],
        (
            "local".into(),
            "ok".into(),
            "rollback saw mine: change/local/change=Failed | all: 1 | failure: step `change` \
             failed on local: change failed on local as asked"
                .into()
        ),
        "{r:#}"
    );
    assert_eq!(p[2].2[0].1, "ok", "cleanup runs after a failure too");

    // The text report names the phase's kind.
    let out = s.run(&["run", "platform", "rollout", "--fail-on", "local"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\nphase rollback (on failure)\n"), "{text}");
    assert!(text.contains("\nphase cleanup (always)\n"), "{text}");
}

#[test]
fn step_data_is_journaled_and_data_that_is_not_json_fails_the_step() {
    let s = Sandbox::new();
    s.install("platform");
    let (code, run, r) = s.journaled(&["platform", "rollout"]);
    assert_eq!(code, 0, "{r:#}");
    let shown: serde_json::Value =
        serde_json::from_str(&s.ok(&["runs", "show", &run.to_string(), "--json"])).unwrap();
    assert_eq!(
        shown["steps"][0]["data"],
        serde_json::json!({"node": "local", "was": "v1"}),
        "{shown:#}"
    );

    let (code, r) = s.report(&["platform", "bad-data"]);
    assert_eq!(code, 3);
    let (status, message) = only_step(&r);
    assert_eq!(status, "failed");
    assert!(
        message.starts_with("data follows (the step's data was refused: it is not JSON: "),
        "{message}"
    );
}

#[test]
fn the_whole_inventory_is_listed_under_a_node_selection() {
    let s = Sandbox::new();
    s.install("platform");
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory(dir.path());
    let (code, r) = s.report(&["platform", "inventory", "--inventory", &inv, "--nodes", "a"]);
    assert_eq!(code, 0, "{r:#}");
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "root".into());
    assert_eq!(
        r["phases"][0]["steps"][0]["data"],
        serde_json::json!([
            {"name": "a", "address": "127.0.0.1", "hostname": null, "port": 0, "user": user,
             "roles": ["core"], "local": true, "selected": true},
            {"name": "dea-9", "address": "10.9.9.9", "hostname": "dea-9.example.internal",
             "port": 2200, "user": "stackato", "roles": ["dea", "router"], "local": false,
             "selected": false},
            {"name": "db", "address": "10.9.9.10", "hostname": null, "port": 2222,
             "user": "stackato", "roles": ["postgresql"], "local": false, "selected": false},
        ]),
        "{r:#}"
    );

    // Seeing a node is not reaching it: only the selected one runs.
    let (code, r) = s.report(&["platform", "reach", "--inventory", &inv, "--nodes", "a"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(
        support::only_step(&r).1,
        "a: ran | dea-9: not found: node `dea-9` is not part of this run (see `stackhost node \
         list`) | db: not found: node `db` is not part of this run (see `stackhost node list`)"
    );

    // A malformed hostname is refused with the inventory's other errors.
    std::fs::write(
        dir.path().join("bad.toml"),
        "[[node]]\nname = \"x\"\naddress = \"10.0.0.1\"\nhostname = \"bad host;rm\"\n",
    )
    .unwrap();
    let bad = dir.path().join("bad.toml").display().to_string();
    let out = s.fails(1, &["run", "platform", "inventory", "--inventory", &bad]);
    assert!(
        out.contains("node `x` has a malformed hostname `bad host;rm`"),
        "{out}"
    );
}

#[test]
fn a_plugins_usage_error_exits_2_with_a_plain_error_and_is_not_journaled() {
    let s = Sandbox::new();
    s.install("platform");
    let out = s.run(&["run", "platform", "count", "abc"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: N must be a number of steps, not `abc`\n\
         See `stackhost run platform count --help`.\n"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    let runs = s.ok(&["runs", "list"]);
    assert!(!runs.contains("platform"), "{runs}");
    // A good count runs.
    let (code, r) = s.report(&["platform", "count", "2"]);
    assert_eq!(
        (code, r["phases"][0]["steps"].as_array().unwrap().len()),
        (0, 2)
    );
}

#[test]
fn a_config_edit_under_dry_run_is_shown_as_a_unified_diff() {
    let s = Sandbox::new();
    s.install("probe");
    let dir = scratch_rw();
    let file = dir.path().join("app.conf");
    let path = file.to_str().unwrap();
    std::fs::write(&file, "# app\nport = 80\nworkers = 4\nlog = info\n").unwrap();
    let (code, r) = s.report(&[
        "probe",
        "write",
        path,
        "# app\nport = 8080\nworkers = 4\nlog = info\n",
        "--dry-run",
    ]);
    assert_eq!(code, 0, "{r:#}");
    let m = &r["phases"][0]["steps"][0]["mutations"][0];
    assert_eq!(m["call"], "fs.write");
    assert_eq!(
        m["diff"],
        format!(
            "--- a{path}\n+++ b{path}\n@@ -1,4 +1,4 @@\n # app\n-port = 80\n+port = 8080\n workers = 4\n log = info\n"
        )
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "# app\nport = 80\nworkers = 4\nlog = info\n",
        "a dry run changes nothing"
    );
    // The text report shows the diff under the mutation.
    let out = s.ok(&[
        "run",
        "probe",
        "write",
        path,
        "# app\nport = 8080\nworkers = 4\nlog = info\n",
        "--dry-run",
    ]);
    assert!(
        out.contains(&format!(
            "    fs.write   {path} (41 bytes)\n      --- a{path}\n      +++ b{path}\n      @@ -1,4 +1,4 @@\n       # app\n      -port = 80\n      +port = 8080\n"
        )),
        "{out}"
    );
    // A binary file: sizes and hashes.
    std::fs::write(&file, [0u8, 1, 2, 3]).unwrap();
    let (_, r) = s.report(&["probe", "write", path, "text", "--dry-run"]);
    let diff = r["phases"][0]["steps"][0]["mutations"][0]["diff"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        diff.starts_with("binary or larger than 1048576 bytes, not shown as text: now 4 bytes, sha256 054edec1d0211f624fed0cbca9d4f9400b0e491c43742af2c5b0abebf0c990d8; would be 4 bytes, sha256 "),
        "{diff}"
    );
}

#[test]
fn live_output_is_shown_while_the_program_runs() {
    let s = Sandbox::new();
    s.install("platform");
    // Not a terminal, --verbose: every line, then the progress at its end.
    let out = s.run(&["run", "platform", "live", "3", "--verbose"]);
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    for line in ["line 1 of 3", "line 2 of 3", "line 3 of 3"] {
        assert!(err.contains(&format!("  … local live: {line}\n")), "{err}");
    }
    assert!(
        err.contains("  … local live: 100% (3 of 3 lines)\n"),
        "{err}"
    );
    let (_, r) = s.report(&["platform", "live", "3"]);
    assert_eq!(only_step(&r), ("ok".into(), "3 lines".into()));

    // Without --verbose, lines are throttled (the first is shown, then at
    // most one every few seconds).
    let out = s.run(&["run", "platform", "live", "5"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("  … local live: 0% (0 of 5 lines)\n"), "{err}");
    assert!(!err.contains("line 2 of 5"), "{err}");

    // On a terminal, the step's line shows the latest output as it comes.
    let child = s.on_terminal(&["run", "platform", "live", "6"]);
    let out = child.wait_with_output().unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(screen.contains("local live"), "{screen}");
    assert!(screen.contains(" of 6"), "{screen}");
    assert!(screen.contains(" live: 6 lines"), "{screen}");
}
