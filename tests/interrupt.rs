//! Ctrl-C and SIGTERM sent to a real `stackhost` process in the middle of
//! a step: it stops the step and kills its programs, removes the
//! unfinished artifact, journals the run as `interrupted` with the reason,
//! releases the cluster lock, says how to resume, and exits 130 (SIGINT)
//! or 143 (SIGTERM).

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::Sandbox;

/// `stackhost ARGS` in the background, its output piped.
fn spawn(s: &Sandbox, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_stackhost"))
        .args(args)
        .env("STACKHOST_HOME", s.home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Processes whose command line contains `marker`.
fn processes(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let line = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if line.contains(marker) && !line.contains("cargo") {
                found.push(line);
            }
        }
    }
    found
}

/// Wait (at most `limit`) until `ready` holds.
fn wait_until(limit: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    let rc = unsafe { libc::kill(child.id() as i32, sig) };
    assert_eq!(rc, 0, "kill failed");
}

/// Wait for the child to exit (at most `limit`); its status code and output.
fn finish(mut child: Child, limit: Duration) -> (Option<i32>, String, String) {
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "stackhost did not exit within {limit:?} of the signal:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn run_json(s: &Sandbox, id: &str) -> serde_json::Value {
    serde_json::from_str(&s.ok(&["runs", "show", id, "--json"])).unwrap()
}

#[test]
fn ctrl_c_mid_rollout_stops_the_step_kills_its_program_and_releases_the_lock() {
    let s = Sandbox::new();
    s.install("platform");
    // The step runs a shell printing "line N of 4242" every 0.2 s: 14 min.
    let marker = "of 4242";
    let child = spawn(&s, &["run", "platform", "live", "4242"]);
    wait_until(Duration::from_secs(60), "the step's program", || {
        !processes(marker).is_empty()
    });
    let started = Instant::now();
    signal(&child, libc::SIGINT);
    let (code, stdout, stderr) = finish(child, Duration::from_secs(20));
    let took = started.elapsed();
    assert_eq!(code, Some(130), "{stdout}\n{stderr}");
    assert!(took < Duration::from_secs(10), "stopping took {took:?}");
    assert!(
        stderr.contains("SIGINT: stopping: no new step starts"),
        "{stderr}"
    );
    assert!(
        stdout.contains(
            "Interrupted by SIGINT: 0 step(s) finished, 1 stopped while running (their programs \
             killed), 0 not started."
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "local  interrupted live: interrupted by SIGINT while running: stopped, and its \
             programs killed"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "run 1 is journaled as interrupted: `stackhost runs show 1`; `stackhost resume 1` runs \
             what was stopped or not started"
        ),
        "{stdout}"
    );
    // The program and its whole process group are gone.
    wait_until(Duration::from_secs(5), "the program to die", || {
        processes(marker).is_empty()
    });

    // The journal says what happened and why.
    let run = run_json(&s, "1");
    assert_eq!(run["status"], "interrupted", "{run:#}");
    assert_eq!(run["reason"], "interrupted by SIGINT", "{run:#}");
    assert_eq!(run["steps"][0]["state"], "interrupted", "{run:#}");
    assert!(run["finished_at"].is_i64(), "{run:#}");
    let shown = s.ok(&["runs", "show", "1"]);
    assert!(
        shown.contains("  interrupted: interrupted by SIGINT\n"),
        "{shown}"
    );

    // The lock was released: the next mutating run goes ahead at once,
    // with no takeover.
    let out = s.run(&["run", "platform", "count", "1"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("lock"), "{stderr}");
}

/// `n` files of `size` bytes of incompressible data under `dir`.
fn incompressible_tree(dir: &std::path::Path, n: usize, size: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; size];
    for i in 0..n {
        for chunk in buf.chunks_mut(8) {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        std::fs::write(dir.join(format!("f{i:03}")), &buf).unwrap();
    }
}

#[test]
fn sigterm_mid_export_leaves_no_partial_artifact() {
    let s = Sandbox::new();
    s.install("pack");
    std::fs::create_dir_all("/tmp/stackhost-test").unwrap();
    let work = tempfile::tempdir_in("/tmp/stackhost-test").unwrap();
    let src = work.path().join("src");
    // 384 MiB that gzip packs at a few tens of MB/s: many seconds of work.
    incompressible_tree(&src, 48, 8 << 20);
    let out_dir = work.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let dest = out_dir.join("export.tar.gz");
    let child = spawn(
        &s,
        &[
            "run",
            "pack",
            "pack",
            src.to_str().unwrap(),
            dest.to_str().unwrap(),
        ],
    );
    // Mid-export: the unfinished artifact exists and is growing.
    wait_until(
        Duration::from_secs(60),
        "the export to be under way",
        || {
            std::fs::read_dir(&out_dir)
                .unwrap()
                .flatten()
                .any(|e| e.metadata().map(|m| m.len() > (1 << 20)).unwrap_or(false))
        },
    );
    signal(&child, libc::SIGTERM);
    let (code, stdout, stderr) = finish(child, Duration::from_secs(40));
    assert_eq!(code, Some(143), "{stdout}\n{stderr}");
    assert!(stdout.contains("Interrupted by SIGTERM"), "{stdout}");
    let left: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left,
        Vec::<String>::new(),
        "the unfinished artifact is removed"
    );
    let run = run_json(&s, "1");
    assert_eq!(
        (run["status"].as_str(), run["reason"].as_str()),
        (Some("interrupted"), Some("interrupted by SIGTERM")),
        "{run:#}"
    );
}
