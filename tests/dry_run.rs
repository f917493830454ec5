//! Dry-run by construction: read-only calls run for real, mutating calls
//! are recorded and listed per node, and nothing changes on disk.

mod support;

use support::{Sandbox, only_step, scratch_rw};

#[test]
fn a_dry_run_changes_nothing_and_lists_the_mutations() {
    let s = Sandbox::new();
    s.install("probe");
    let dir = scratch_rw();
    let file = dir.path().join("would-write");
    let (code, r) = s.report(&[
        "probe",
        "write",
        file.to_str().unwrap(),
        "twelve bytes",
        "--dry-run",
    ]);
    assert_eq!(code, 0, "{r:#}");
    assert!(!file.exists(), "dry run wrote the file");
    assert_eq!(r["dry_run"], true);
    let mutations = &r["phases"][0]["steps"][0]["mutations"];
    assert_eq!(
        mutations,
        &serde_json::json!([{
            "node": "local",
            "call": "fs.write",
            "detail": format!("{} (12 bytes)", file.display()),
            "diff": format!(
                "--- /dev/null\n+++ b{}\n@@ -0,0 +1 @@\n+twelve bytes\n\\ No newline at end of file\n",
                file.display()
            ),
        }])
    );

    let touched = dir.path().join("touched");
    let out = s.ok(&[
        "run",
        "probe",
        "exec",
        "touch",
        touched.to_str().unwrap(),
        "--dry-run",
    ]);
    assert!(!touched.exists(), "dry run ran touch");
    assert!(
        out.contains("Dry run: these mutations would be made:"),
        "{out}"
    );
    assert!(
        out.contains(&format!("exec       touch {}", touched.display())),
        "{out}"
    );
}

#[test]
fn read_only_programs_run_for_real_in_a_dry_run() {
    let s = Sandbox::new();
    s.install("probe");
    let (code, r) = s.report(&["probe", "exec", "echo", "really ran", "--dry-run"]);
    assert_eq!(code, 0);
    assert_eq!(only_step(&r).1.trim(), "really ran");
    assert_eq!(
        r["phases"][0]["steps"][0]["mutations"],
        serde_json::json!([])
    );
}

#[test]
fn hello_stamp_dry_run_lists_mkdir_write_and_touch() {
    let s = Sandbox::new();
    s.install("hello");
    let message = format!("dry {}", std::process::id());
    let out = s.ok(&["run", "hello", "stamp", "--message", &message, "--dry-run"]);
    for needle in [
        "fs.mkdir",
        "would write /var/tmp/stackhost-hello/stamp.txt",
        "fs.write",
        "exec       touch",
    ] {
        assert!(out.contains(needle), "`{needle}` missing:\n{out}");
    }
    let on_disk = std::fs::read_to_string("/var/tmp/stackhost-hello/stamp.txt").unwrap_or_default();
    assert_ne!(on_disk, format!("{message}\n"), "dry run wrote the stamp");
}
