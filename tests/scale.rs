//! A run over many real SSH endpoints (`tests/cluster up-many`: a few
//! containers, each with sshd on many ports), started with a low soft
//! limit on open files as many machines have: stackhost raises it to the
//! hard limit, bounds its handshakes, and reports each node's handshake.
//! The figures at 100 to 1,000 endpoints are the `thousand` bench's.

mod support;

use std::process::Command;
use support::Sandbox;

struct Many {
    name: String,
    dir: tempfile::TempDir,
}

impl Drop for Many {
    fn drop(&mut self) {
        let _ = Command::new(support::repo().join("tests/cluster"))
            .args(["down", &self.name])
            .output();
    }
}

#[test]
fn two_hundred_endpoints_under_a_soft_limit_of_128_open_files() {
    let many = Many {
        name: format!("sh-scale-{}", std::process::id()),
        dir: tempfile::tempdir().unwrap(),
    };
    let up = Command::new(support::repo().join("tests/cluster"))
        .args(["up-many", "4", "50", &many.name])
        .arg(many.dir.path())
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let s = Sandbox::new();
    s.install("probe");
    let out = Command::new("prlimit")
        .args(["--nofile=128:", "--"])
        .arg(env!("CARGO_BIN_EXE_stackhost"))
        .args(["run", "probe", "exec", "--json", "--max-in-flight", "200"])
        .arg("--inventory")
        .arg(many.dir.path().join("inventory.toml"))
        .arg("--known-hosts")
        .arg(many.dir.path().join("known_hosts"))
        .arg("true")
        .env("STACKHOST_HOME", s.home.path())
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}):\n{}", String::from_utf8_lossy(&out.stderr)));
    let steps = doc["report"]["phases"][0]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 200);
    let failed: Vec<&serde_json::Value> = steps.iter().filter(|s| s["status"] != "ok").collect();
    assert!(
        failed.is_empty(),
        "{} failed, first: {:#}",
        failed.len(),
        failed[0]
    );
    assert_eq!(out.status.code(), Some(0));
    // Every node's connection was opened by its step, and timed; its
    // first answer came after the handshake, within the step.
    for step in steps {
        let ms = step["handshake_ms"]
            .as_f64()
            .unwrap_or_else(|| panic!("{step:#}"));
        let first = step["first_byte_ms"]
            .as_f64()
            .unwrap_or_else(|| panic!("{step:#}"));
        let total = step["duration_ms"].as_f64().unwrap() + 1.0;
        assert!(ms > 0.0 && ms < total, "{step:#}");
        assert!(first > ms && first < total, "{step:#}");
    }
}
