//! Rollout policies across several nodes: serial batches, canaries, one
//! failure budget for the whole run, `always` phases after a failure, and
//! nodes that failed are left out of later phases. The nodes are five
//! inventory entries for this machine; each step logs to a file per node.

mod support;

use support::{Sandbox, scratch_rw};

const NODES: [&str; 5] = ["n1", "n2", "n3", "n4", "n5"];

fn inventory(dir: &std::path::Path) -> String {
    let path = dir.join("inventory.toml");
    let text: String = NODES
        .iter()
        .map(|n| format!("[[node]]\nname = \"{n}\"\nlocal = true\nroles = [\"dea\"]\n"))
        .collect();
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Which nodes ran `phase`, from the files on the node.
fn ran(dir: &std::path::Path, phase: &str) -> Vec<&'static str> {
    NODES
        .iter()
        .copied()
        .filter(|n| dir.join(format!("{n}.{phase}")).exists())
        .collect()
}

fn run_each(s: &Sandbox, dir: &std::path::Path, flags: &[&str]) -> (i32, serde_json::Value) {
    let inv = inventory(s.home.path());
    let d = dir.to_str().unwrap().to_string();
    let mut args = vec!["probe", "each", "--inventory", inv.as_str()];
    args.extend_from_slice(flags);
    args.push(&d);
    s.report(&args)
}

fn statuses(r: &serde_json::Value, phase: usize) -> Vec<String> {
    r["phases"][phase]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn serial_one_halts_at_the_first_failure_and_always_phases_still_run() {
    let s = Sandbox::new();
    s.install("probe");
    let dir = scratch_rw();
    std::fs::write(dir.path().join("fail-n2"), "").unwrap();
    let (code, r) = run_each(&s, dir.path(), &["--serial", "1"]);
    assert_eq!(code, 3);
    assert_eq!(
        ran(dir.path(), "work"),
        ["n1"],
        "n3..n5 must not start after n2 failed"
    );
    assert_eq!(
        statuses(&r, 0),
        ["changed", "failed", "not-run", "not-run", "not-run"]
    );
    assert_eq!(ran(dir.path(), "after"), Vec::<&str>::new());
    assert_eq!(
        ran(dir.path(), "cleanup"),
        NODES,
        "the always phase runs on every node"
    );
    assert!(
        r["halted"]
            .as_str()
            .unwrap()
            .contains("exceeded the run's failure budget of 0"),
        "{r:#}"
    );
}

#[test]
fn a_budget_lets_the_run_go_on_without_the_failed_node() {
    let s = Sandbox::new();
    s.install("probe");
    let dir = scratch_rw();
    std::fs::write(dir.path().join("fail-n2"), "").unwrap();
    let (code, r) = run_each(&s, dir.path(), &["--serial", "2", "--max-fail", "1"]);
    assert_eq!(code, 3, "a failed step still fails the run's exit code");
    assert!(r["halted"].is_null(), "{r:#}");
    assert_eq!(ran(dir.path(), "work"), ["n1", "n3", "n4", "n5"]);
    assert_eq!(
        ran(dir.path(), "after"),
        ["n1", "n3", "n4", "n5"],
        "n2 sits out later phases"
    );
    assert_eq!(statuses(&r, 1)[1], "not-run");
}

#[test]
fn the_budget_is_one_for_the_whole_run_not_per_batch() {
    let s = Sandbox::new();
    s.install("probe");
    let dir = scratch_rw();
    std::fs::write(dir.path().join("fail-n2"), "").unwrap();
    std::fs::write(dir.path().join("fail-n4"), "").unwrap();
    // Batches of one: each batch alone is within a budget of 1, the run is not.
    let (code, r) = run_each(&s, dir.path(), &["--serial", "1", "--max-fail", "20%"]);
    assert_eq!(code, 3);
    assert_eq!(ran(dir.path(), "work"), ["n1", "n3"]);
    assert_eq!(
        statuses(&r, 0),
        ["changed", "failed", "changed", "failed", "not-run"]
    );
    assert!(
        r["halted"]
            .as_str()
            .unwrap()
            .contains("2 node(s) with a failed step exceeded the run's failure budget of 1"),
        "{r:#}"
    );
}

#[test]
fn the_budget_counts_nodes_so_a_node_failing_twice_counts_once() {
    let s = Sandbox::new();
    s.install("probe");
    let dir = scratch_rw();
    // n1 fails `work`, then the `always` phase `cleanup` too: two failed
    // steps, one node, within a budget of one node (20% of five).
    std::fs::write(dir.path().join("fail-n1"), "").unwrap();
    std::fs::write(dir.path().join("fail-cleanup-n1"), "").unwrap();
    let (code, r) = run_each(&s, dir.path(), &["--max-fail", "20%"]);
    assert_eq!(code, 3);
    assert!(r["halted"].is_null(), "{r:#}");
    assert_eq!(statuses(&r, 2)[0], "failed");
    // Every node failing everything never halts at 100%.
    for n in NODES {
        std::fs::write(dir.path().join(format!("fail-{n}")), "").unwrap();
        std::fs::write(dir.path().join(format!("fail-cleanup-{n}")), "").unwrap();
    }
    let (code, r) = run_each(&s, dir.path(), &["--max-fail", "100%"]);
    assert_eq!(code, 3);
    assert!(r["halted"].is_null(), "{r:#}");
    assert_eq!(statuses(&r, 2), ["failed"; 5]);
}

#[test]
fn a_failed_canary_halts_the_run() {
    let s = Sandbox::new();
    s.install("probe");
    let dir = scratch_rw();
    std::fs::write(dir.path().join("fail-n1"), "").unwrap();
    let (code, r) = run_each(&s, dir.path(), &["--canaries", "1", "--max-fail", "100%"]);
    assert_eq!(code, 3);
    assert_eq!(ran(dir.path(), "work"), Vec::<&str>::new());
    assert!(
        r["halted"]
            .as_str()
            .unwrap()
            .contains("canary step failed on n1"),
        "{r:#}"
    );
    // With a healthy canary, everything runs.
    std::fs::remove_file(dir.path().join("fail-n1")).unwrap();
    let again = scratch_rw();
    let (code, _) = run_each(
        &s,
        again.path(),
        &["--canaries", "1", "--max-in-flight", "40%"],
    );
    assert_eq!(code, 0);
    assert_eq!(ran(again.path(), "after"), NODES);
}
