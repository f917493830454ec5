//! Secret arguments: given by file, environment or hidden prompt, never
//! in argv; they reach the plugin, and everything the host writes (the
//! report, `--json`, dry-run records, events, errors, the journal
//! database, stderr) shows `***` instead, even when the plugin echoes the
//! secret back in every way it can (the `secretive` fixture).

mod support;

use support::{Sandbox, refs};

const KEY: &str = "NR-license-5f3a9c1e7d2b";

fn report(out: &std::process::Output) -> serde_json::Value {
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    json["report"].clone()
}

#[test]
fn a_secret_reaches_the_plugin_and_is_shown_nowhere() {
    let s = Sandbox::new();
    s.install("secretive");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("license-key");
    std::fs::write(&file, format!("{KEY}\n")).unwrap();
    let reversed: String = KEY.chars().rev().collect();

    // From a file: the plugin gets the key (its reverse comes back), the
    // report says `***` where the plugin echoed it.
    let out = s.run(&[
        "run",
        "secretive",
        "leak",
        "--json",
        "--license-key-file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = report(&out);
    let step = &r["phases"][0]["steps"][0];
    assert_eq!(
        step["message"],
        format!("the key is ***, reversed {reversed}"),
        "{r:#}"
    );
    assert_eq!(step["events"][0]["message"], "applying with key ***");
    assert_eq!(r["plan_events"][0]["message"], "planning with key ***");
    // The step's data, echoed by the plugin, hides it too.
    assert_eq!(
        step["data"],
        serde_json::json!({"license_key": "***", "reversed": reversed}),
        "{r:#}"
    );
    assert_eq!(s.leaks(&out, KEY), Vec::<String>::new());

    // From the environment, under --dry-run: the recorded call too.
    let out = s.run_env(
        &["run", "secretive", "leak", "--json", "--dry-run"],
        &[("STACKHOST_SECRET_LICENSE_KEY", KEY)],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = report(&out);
    let mutations = &r["phases"][0]["steps"][0]["mutations"];
    assert_eq!(mutations[0]["detail"], "touch /tmp/***", "{r:#}");
    // The diff of the config file the step would write: all `+`, key hidden.
    assert_eq!(
        mutations[1]["diff"],
        "--- /dev/null\n+++ b/tmp/stackhost-secretive/newrelic-infra.yml\n@@ -0,0 +1,2 @@\n\
         +license_key: ***\n+proxy: none\n",
        "{r:#}"
    );
    assert_eq!(s.leaks(&out, KEY), Vec::<String>::new());

    // A failure carrying the key, in JSON and on the terminal.
    for json in [true, false] {
        let mut args = vec!["run", "secretive", "leak", "--fail"];
        if json {
            args.push("--json");
        }
        let out = s.run_env(&args, &[("STACKHOST_SECRET_LICENSE_KEY", KEY)]);
        assert_eq!(out.status.code(), Some(3));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("failed with key ***"), "{text}");
        assert_eq!(s.leaks(&out, KEY), Vec::<String>::new());
    }
}

#[test]
fn a_secret_never_comes_through_argv_and_its_absence_is_explained() {
    let s = Sandbox::new();
    s.install("secretive");
    // There is no `--license-key VALUE`.
    let out = s.fails(2, &["run", "secretive", "leak", "--license-key", KEY]);
    assert!(out.contains("unexpected argument '--license-key'"), "{out}");
    // Not given, and no terminal to ask on.
    let out = s.fails(1, &["run", "secretive", "leak"]);
    assert!(
        out.contains(
            "the secret `license-key` was not given: pass --license-key-file FILE, set STACKHOST_SECRET_LICENSE_KEY, or run on a terminal to be asked"
        ),
        "{out}"
    );
    // The help says how to give it.
    let help = s.ok(&["run", "secretive", "leak", "--help"]);
    // clap wraps the help: compare with whitespace collapsed.
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        help.contains("--license-key-file <FILE> The license key")
            && help.contains(
                "The license key [secret: read from FILE, or $STACKHOST_SECRET_LICENSE_KEY, or asked for on a terminal]"
            ),
        "{help}"
    );
}

#[test]
fn a_run_that_took_a_secret_is_not_resumed_from_the_journal() {
    let s = Sandbox::new();
    s.install("secretive");
    let out = s.run_env(
        &["run", "secretive", "leak", "--json", "--fail"],
        &[("STACKHOST_SECRET_LICENSE_KEY", KEY)],
    );
    assert_eq!(out.status.code(), Some(3));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let run = json["run"].as_i64().unwrap().to_string();
    let args = vec!["resume".to_string(), run.clone()];
    let out = s.fails(1, &refs(&args));
    assert!(
        out.contains(&format!(
            "run {run} took secret arguments, which the journal does not keep; run the command again"
        )),
        "{out}"
    );
    // Refused before anything was reopened: the run is as it was journaled.
    let shown: serde_json::Value =
        serde_json::from_str(&s.ok(&["runs", "show", &run, "--json"])).unwrap();
    assert_eq!(shown["status"], "failed", "{shown:#}");
}

#[test]
fn a_secret_asked_for_on_a_terminal_is_not_echoed() {
    use std::io::{Read, Write};
    let s = Sandbox::new();
    s.install("secretive");
    // A pseudo-terminal, so it asks.
    let mut child = s.on_terminal(&["run", "secretive", "leak"]);
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        let mut told = false;
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if !told && String::from_utf8_lossy(&seen).contains("license-key (hidden): ") {
                told = true;
                let _ = tx.send(());
            }
        }
        seen
    });
    // Type only once the prompt is up (echo is off by then).
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("the run asked for the secret");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{KEY}\n").as_bytes()).unwrap();
    let status = child.wait().unwrap();
    drop(stdin);
    let text = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
    assert!(status.success(), "{text}");
    assert!(!text.contains(KEY), "the key was shown: {text}");
    let reversed: String = KEY.chars().rev().collect();
    assert!(
        text.contains(&format!("the key is ***, reversed {reversed}")),
        "{text}"
    );
}

#[test]
fn an_optional_secret_left_out_is_not_asked_for_on_a_terminal() {
    // `newrelic status` takes the license key only to compare it: on a
    // terminal, without it, the run goes ahead without a prompt (stdin
    // stays open, so a prompt would wait for ever; the child is killed
    // after 60 s).
    let s = Sandbox::new();
    s.install("newrelic");
    let mut child = s.on_terminal(&["run", "newrelic", "status"]);
    let _stdin = child.stdin.take();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("(hidden)"), "{text}");
    assert!(text.contains("RECAP"), "the run finished: {text}");
}
