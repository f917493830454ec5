//! Nothing lost: runs and steps are journaled, a failed run resumes
//! without repeating a finished step (proved from the node's own files),
//! and the cluster lock keeps two mutating runs apart until its holder dies.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{Sandbox, scratch_rw};

fn count(dir: &std::path::Path, step: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(format!("{step}.count")))
        .ok()
        .map(|s| s.trim().to_string())
}

#[test]
fn a_failed_run_resumes_without_repeating_finished_steps() {
    let s = Sandbox::new();
    s.install("probe");
    let dir = scratch_rw();
    let d = dir.path().to_str().unwrap();

    let (code, run, _) = s.journaled(&["probe", "chain", d]);
    assert_eq!(code, 3);
    assert_eq!(
        (count(dir.path(), "first"), count(dir.path(), "second")),
        (Some("1".into()), None)
    );
    assert_eq!(
        count(dir.path(), "cleanup").as_deref(),
        Some("1"),
        "the always phase runs after a failure"
    );

    let shown: serde_json::Value =
        serde_json::from_str(&s.ok(&["runs", "show", &run.to_string(), "--json"])).unwrap();
    let states: Vec<&str> = shown["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        (shown["status"].as_str().unwrap(), states),
        ("failed", vec!["changed", "failed", "changed"])
    );

    std::fs::write(dir.path().join("gate"), "").unwrap();
    let out = s.ok(&["resume", &run.to_string()]);
    assert!(out.contains("done in an earlier attempt"), "{out}");
    // From the node itself: every step ran exactly once over both attempts.
    for step in ["first", "second", "cleanup"] {
        assert_eq!(count(dir.path(), step).as_deref(), Some("1"), "step {step}");
    }
    let shown: serde_json::Value =
        serde_json::from_str(&s.ok(&["runs", "show", &run.to_string(), "--json"])).unwrap();
    let attempts: Vec<i64> = shown["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["attempts"].as_i64().unwrap())
        .collect();
    assert_eq!(
        (shown["status"].as_str().unwrap(), attempts),
        ("succeeded", vec![1, 2, 1])
    );

    let out = s.fails(1, &["resume", &run.to_string()]);
    assert!(out.contains("already succeeded"), "{out}");
    let out = s.fails(1, &["resume", "999"]);
    assert!(out.contains("no run with id 999"), "{out}");
    assert!(s.ok(&["runs", "list"]).contains("probe 0.1.0"));
}

/// Start `stackhost run platform live N` (a step printing a line every
/// 0.2 s for hours, using no CPU) in the background and wait until it holds
/// the cluster lock (its run is journaled as running).
#[allow(clippy::zombie_processes)] // each caller kills and waits for it
fn start_lock_holder(s: &Sandbox, ttl: &str) -> std::process::Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stackhost"))
        .args(["run", "platform", "live", "99999", "--lock-ttl", ttl])
        .env("STACKHOST_HOME", s.home.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list: serde_json::Value =
            serde_json::from_str(&s.ok(&["runs", "list", "--json"])).unwrap();
        if list
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["plugin"] == "platform" && r["status"] == "running")
        {
            return child;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output();
            panic!(
                "the lock holder never started ({out:?}); runs:\n{}",
                s.ok(&["runs", "list"])
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_second_mutating_run_is_refused_and_a_dead_holders_lock_expires() {
    let s = Sandbox::new();
    s.install("platform");
    s.install("probe");
    let mut holder = start_lock_holder(&s, "2s");
    // Alive, it keeps renewing a 2 s lock: still refused after the TTL.
    std::thread::sleep(Duration::from_secs(3));
    let out = s.fails(1, &["run", "probe", "exec", "true"]);
    assert!(
        out.contains("the cluster is locked by run 1 (platform live, pid"),
        "{out}"
    );
    // A dry run mutates nothing and takes no lock.
    s.ok(&["run", "probe", "exec", "true", "--dry-run"]);

    // kill -9: the holder cannot release its lock. It ran on this machine
    // and its pid is gone, so the next run takes the lock at once, without
    // waiting out the lease, and says so; the run shows as abandoned.
    let pid = holder.id();
    holder.kill().unwrap();
    holder.wait().unwrap();
    let list = s.ok(&["runs", "list"]);
    assert!(list.contains("    1  abandoned "), "{list}");
    let shown = s.ok(&["runs", "show", "1"]);
    assert!(
        shown.contains(&format!(
            "  abandoned: its process ({pid}) is gone: killed, or its machine restarted"
        )),
        "{shown}"
    );
    let out = s.run(&["run", "probe", "exec", "true"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "note: the cluster lock was held by run 1, whose process {pid} on this machine is \
             gone; taking it over"
        )),
        "{stderr}"
    );
}

#[test]
fn an_expired_lock_of_another_machine_is_taken_over() {
    let s = Sandbox::new();
    s.install("platform");
    s.install("probe");
    let mut holder = start_lock_holder(&s, "2s");
    holder.kill().unwrap();
    holder.wait().unwrap();
    // As if the holder had run elsewhere: only its lease can free the lock.
    let db = s.home.path().join("data/journal.sqlite");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("UPDATE cluster_lock SET host = 'elsewhere'", [])
        .unwrap();
    let out = s.fails(1, &["run", "probe", "exec", "true"]);
    assert!(out.contains("the cluster is locked by run 1"), "{out}");
    std::thread::sleep(Duration::from_secs(3));
    let out = s.run(&["run", "probe", "exec", "true"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("the cluster lock of run 1 had expired (its holder is gone)"),
        "{stderr}"
    );
}

#[test]
fn force_unlock_takes_a_live_lock_with_a_warning() {
    let s = Sandbox::new();
    s.install("platform");
    s.install("probe");
    let mut holder = start_lock_holder(&s, "60s");
    let out = s.run(&["run", "probe", "exec", "true", "--force-unlock"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: --force-unlock took the cluster lock from run 1"),
        "{stderr}"
    );
}

#[test]
fn resume_takes_the_config_files_run_defaults_as_run_does() {
    let s = Sandbox::new();
    s.install("probe");
    let dir = scratch_rw();
    let d = dir.path().to_str().unwrap();
    // The inventory comes from config.toml only: a resume that ignored the
    // file would open the local node alone, which the plan does not name.
    let config = s.home.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    let inv = s.home.path().join("site.toml");
    std::fs::write(
        &inv,
        "[[node]]\nname = \"site-core\"\nlocal = true\nroles = [\"core\"]\n",
    )
    .unwrap();
    std::fs::write(
        config.join("config.toml"),
        format!(
            "[run]\ninventory = \"{}\"\nnodes = [\"site-core\"]\n",
            inv.display()
        ),
    )
    .unwrap();
    let (code, run, _) = s.journaled(&["probe", "chain", d]);
    assert_eq!(code, 3);
    std::fs::write(dir.path().join("gate"), "").unwrap();
    let out = s.ok(&["resume", &run.to_string()]);
    assert!(out.contains("site-core"), "{out}");
    let shown: serde_json::Value =
        serde_json::from_str(&s.ok(&["runs", "show", &run.to_string(), "--json"])).unwrap();
    assert_eq!(shown["status"], "succeeded", "{shown:#}");
}
