//! The command line as a new operator meets it: help text that says what
//! each command does, host flags accepted before the plugin name, an empty
//! `--nodes` refused, a mistyped plugin name answered with the nearest one,
//! and `runs list` filters that hide dry runs and read-only commands.

mod support;

use support::Sandbox;

#[test]
fn help_shows_each_commands_own_description() {
    let s = Sandbox::new();
    s.install("hello");
    let help = s.ok(&["run", "hello", "--help"]);
    assert!(
        help.contains(
            "Commands:\n  info   Show the OS and kernel of every node\n  stamp  Leave a stamp \
             file in /var/tmp/stackhost-hello on every node\n"
        ),
        "{help}"
    );
    let help = s.ok(&["run", "hello", "info", "--help"]);
    assert!(
        help.starts_with("Show the OS and kernel of every node\n\nUsage: stackhost run hello info"),
        "{help}"
    );
    assert!(help.contains("\nHost flags:\n"), "{help}");
    assert!(
        help.contains("Examples:\n  stackhost run hello info\n"),
        "{help}"
    );
    let top = s.ok(&["--help"]);
    assert!(
        top.starts_with(
            "A maintenance host for PaaS clusters with sandboxed WebAssembly plugins\n"
        ),
        "{top}"
    );
    let trust = s.ok(&["keys", "trust", "--help"]);
    assert!(!trust.contains("\\\n"), "{trust}");
    assert!(
        trust.contains("Examples:\n  stackhost keys trust acme-patches.pub\n"),
        "{trust}"
    );
}

#[test]
fn host_flags_go_before_or_after_the_plugin_name() {
    let s = Sandbox::new();
    s.install("hello");
    for args in [
        &["run", "--json", "hello", "info"][..],
        &["run", "hello", "info", "--json"][..],
        &["run", "--nodes", "local", "--json", "hello", "info"][..],
    ] {
        let out = s.ok(args);
        let json: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {out}"));
        assert_eq!(json["report"]["command"], "info", "{args:?}");
    }
}

#[test]
fn an_empty_node_selection_and_a_mistyped_plugin_are_errors_that_help() {
    let s = Sandbox::new();
    s.install("hello");
    let out = s.fails(1, &["run", "hello", "info", "--nodes", ""]);
    assert!(
        out.contains("--nodes was given but names no node (an empty selector)"),
        "{out}"
    );
    let out = s.fails(1, &["run", "helo", "info"]);
    assert!(
        out.contains("no plugin named `helo` is installed; did you mean `hello`?"),
        "{out}"
    );
    let out = s.fails(1, &["run", "nagios", "config"]);
    assert!(
        out.contains("no plugin named `nagios` is installed (see `stackhost plugin list`)"),
        "{out}"
    );
}

#[test]
fn runs_list_hides_dry_runs_and_read_only_commands_and_filters() {
    let s = Sandbox::new();
    s.install("hello");
    s.install("probe");
    assert_eq!(s.ok(&["runs", "list"]), "no runs yet\n");
    s.ok(&["run", "hello", "info"]); // 1: read-only
    // An empty list says what --all would show.
    assert_eq!(
        s.ok(&["runs", "list"]),
        "no mutating runs yet; 1 dry run(s) or read-only run(s) are shown with --all\n"
    );
    assert_eq!(
        s.ok(&["runs", "list", "--plugin", "probe", "--all"]),
        "no runs match\n"
    );
    s.ok(&["run", "probe", "exec", "true"]); // 2
    s.ok(&["run", "probe", "exec", "true", "--dry-run"]); // 3: dry run
    s.fails(
        3,
        &["run", "probe", "exec", "false-program-that-is-not-granted"],
    ); // 4: failed

    let ids = |args: &[&str]| -> Vec<i64> {
        let mut all = vec!["runs", "list", "--json"];
        all.extend_from_slice(args);
        let list: serde_json::Value = serde_json::from_str(&s.ok(&all)).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(ids(&[]), [4, 2]);
    assert_eq!(ids(&["--all"]), [4, 3, 2, 1]);
    assert_eq!(ids(&["--status", "failed"]), [4]);
    assert_eq!(ids(&["--plugin", "hello", "--all"]), [1]);
    assert_eq!(ids(&["--since", "1h", "--limit", "1"]), [4]);
    let text = s.ok(&["runs", "list"]);
    assert!(!text.contains("hello"), "{text}");

    // `runs show --json` holds the invocation as JSON, not as a string.
    let shown: serde_json::Value =
        serde_json::from_str(&s.ok(&["runs", "show", "2", "--json"])).unwrap();
    assert_eq!(shown["invocation"]["command"], "exec", "{shown:#}");
    assert_eq!(shown["mutating"], true);
    let shown = s.ok(&["runs", "show", "4"]);
    assert!(
        shown.contains("  arguments: program=false-program-that-is-not-granted"),
        "{shown}"
    );
    assert!(
        shown.contains(
            "  failed: the rollout halted: 1 node(s) with a failed step exceeded the run's failure budget of 0"
        ),
        "{shown}"
    );
    assert!(shown.contains(", ended "), "{shown}");

    let out = s.fails(2, &["runs", "list", "--status", "weird"]);
    assert!(out.contains("invalid value 'weird'"), "{out}");
}

#[test]
fn completions_quiet_colors_and_the_inventory_from_the_environment() {
    let s = Sandbox::new();
    s.install("hello");
    s.install("platform");
    // Completion scripts name the commands.
    let bash = s.ok(&["completions", "bash"]);
    assert!(bash.starts_with("_stackhost() {"), "{bash}");
    assert!(bash.contains("resume") && bash.contains("runs"), "{bash}");
    // Bash completes installed plugins and their commands.
    let complete = |words: &str, cword: usize| -> String {
        let bin = std::path::Path::new(env!("CARGO_BIN_EXE_stackhost"));
        let out = std::process::Command::new("bash")
            .args([
                "-c",
                &format!(
                    "source <(stackhost completions bash); COMP_WORDS=({words}); \
                     COMP_CWORD={cword}; _stackhost_plugins; echo \"${{COMPREPLY[*]}}\""
                ),
            ])
            .env("STACKHOST_HOME", s.home.path())
            .env(
                "PATH",
                format!("{}:/usr/bin:/bin", bin.parent().unwrap().display()),
            )
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(complete("stackhost run h", 2), "hello");
    assert_eq!(complete("stackhost run ''", 2), "hello platform");
    assert_eq!(complete("stackhost run hello ''", 3), "info stamp");
    let fish = s.ok(&["completions", "fish"]);
    assert!(fish.contains("complete -c stackhost"), "{fish}");

    // --quiet: no live lines, the report still comes.
    let out = s.run(&["run", "platform", "live", "2", "--quiet"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert!(String::from_utf8_lossy(&out.stdout).contains("live: 2 lines"));

    // STACKHOST_INVENTORY stands in for --inventory.
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inv.toml");
    std::fs::write(
        &inv,
        "[[node]]\nname = \"box\"\nlocal = true\nroles = [\"core\"]\n",
    )
    .unwrap();
    let out = s.run_env(
        &["run", "hello", "info"],
        &[("STACKHOST_INVENTORY", inv.to_str().unwrap())],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("\n  box   ok       info: "), "{text}");

    // Colors on a terminal, none with NO_COLOR or in a pipe.
    let colored = s
        .on_terminal(&["run", "hello", "info"])
        .wait_with_output()
        .unwrap();
    let screen = String::from_utf8_lossy(&colored.stdout);
    assert!(
        screen.contains("\x1b[32mok      \x1b[0m info: "),
        "{screen}"
    );
    let plain = std::process::Command::new("script")
        .args([
            "-qec",
            &format!(
                "NO_COLOR=1 STACKHOST_HOME={} {} run hello info",
                s.home.path().display(),
                env!("CARGO_BIN_EXE_stackhost")
            ),
            "/dev/null",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&plain.stdout);
    assert!(!screen.contains("\x1b[32m"), "{screen}");
    assert!(!s.ok(&["run", "hello", "info"]).contains('\x1b'));
}

#[test]
fn a_destructive_command_is_confirmed_or_needs_yes() {
    use std::io::Write;
    let s = Sandbox::new();
    s.install("platform");
    let out = s.fails(1, &["run", "platform", "wipe"]);
    assert!(
        out.contains(
            "`platform wipe` is destructive: Pretend to wipe the node's data (a destructive \
             command: confirmed, or --yes); not on a terminal, so it cannot be confirmed: pass \
             --yes to run it, or --dry-run to see what it would do"
        ),
        "{out}"
    );
    assert!(
        !s.ok(&["runs", "list", "--all"]).contains("wipe"),
        "nothing journaled"
    );
    // -y's help says what it does for this command.
    // clap wraps help to the terminal's width: compare words, not lines.
    let words = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
    let help = words(&s.ok(&["run", "platform", "wipe", "--help"]));
    assert!(
        help.contains("-y, --yes")
            && help.contains("Run this destructive command without asking for confirmation"),
        "{help}"
    );
    let help = words(&s.ok(&["run", "platform", "inventory", "--help"]));
    assert!(
        help.contains(
            "Confirm a destructive command without being asked (this one is not: it asks nothing)"
        ),
        "{help}"
    );
    // The arguments are checked (the plan) before it is confirmed: a bad
    // one is a usage error, not a question.
    s.install("backup");
    let out = s.fails(
        2,
        &["run", "backup", "prune", "--keep", "abc", "/var/backups/x"],
    );
    assert!(
        out.contains("error: --keep takes a whole number") && !out.contains("destructive"),
        "{out}"
    );
    assert!(
        s.ok(&["run", "platform", "wipe", "--dry-run"])
            .contains("would wipe")
    );
    assert!(
        s.ok(&["run", "platform", "wipe", "--yes"])
            .contains("wipe: wiped")
    );

    for (answer, done) in [("n", false), ("y", true)] {
        let mut child = s.on_terminal(&["run", "platform", "wipe"]);
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{answer}\n").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let screen = String::from_utf8_lossy(&out.stdout);
        assert!(
            screen.contains(
                "Arguments: none\r\nPlan: 1 step(s) in 1 phase(s)\r\nRun it on 1 node(s): local? [y/N] "
            ),
            "{screen}"
        );
        assert_eq!(screen.contains("wipe: wiped"), done, "{screen}");
        assert_eq!(
            screen.contains("not confirmed: nothing was done"),
            !done,
            "{screen}"
        );
    }
}

#[test]
fn messages_name_the_local_node_as_the_inventory_does() {
    let s = Sandbox::new();
    s.install("probe");
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inv.toml");
    std::fs::write(
        &inv,
        "[[node]]\nname = \"core-1\"\nlocal = true\nroles = [\"core\"]\n",
    )
    .unwrap();
    // exec-quick has a 1 s exec timeout of its own.
    let (code, r) = s.report(&[
        "probe",
        "exec-quick",
        "sleep",
        "5",
        "--inventory",
        inv.to_str().unwrap(),
    ]);
    assert_eq!(code, 3);
    let (_, message) = support::only_step(&r);
    assert!(
        message.starts_with("timeout: `sleep` on node core-1 ran past its timeout of 1s"),
        "{message}"
    );
}

#[test]
fn patch_status_without_a_product_version_says_how_to_fix_it() {
    let s = Sandbox::new();
    s.install("patch");
    let missing = "/etc/stackato/stackhost-test-no-such-version";
    let out = s.run(&["run", "patch", "status", "--version-file", missing]);
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "{missing} does not exist on core node local, so the product version is unknown: on \
             a Stackato core node it holds the version (`cat {missing}` shows e.g. 3.4.2); if the \
             version is kept elsewhere, pass --version-file FILE (under /etc/stackato)"
        )),
        "{text}"
    );
}

#[test]
fn every_json_run_has_one_envelope_success_or_failure() {
    let s = Sandbox::new();
    s.install("platform");
    s.install("hello");
    let doc = |args: &[&str]| -> (i32, serde_json::Value) {
        let out = s.run(args);
        let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?}: no JSON ({e}):\n{}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        (out.status.code().unwrap(), json)
    };
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let envelope = [
        "command", "data", "error", "plugin", "report", "run", "status",
    ];

    let (code, ok) = doc(&["run", "platform", "rollout", "--json"]);
    assert_eq!((code, keys(&ok)), (0, envelope.map(String::from).to_vec()));
    assert_eq!(ok["status"], "succeeded");
    assert_eq!(ok["error"], serde_json::Value::Null);
    assert_eq!(
        ok["data"],
        serde_json::json!([{"phase": "change", "node": "local", "step": "change",
                            "data": {"node": "local", "was": "v1"}}])
    );

    let (code, failed) = doc(&["run", "platform", "rollout", "--fail-on", "local", "--json"]);
    assert_eq!((code, failed["status"].as_str()), (3, Some("failed")));
    assert_eq!(
        failed["error"],
        "1 node(s) with a failed step exceeded the run's failure budget of 0 (--max-fail)"
    );

    let (code, usage) = doc(&["run", "platform", "count", "x", "--json"]);
    assert_eq!(
        (code, keys(&usage)),
        (2, envelope.map(String::from).to_vec())
    );
    assert_eq!(usage["status"], "usage-error");
    assert_eq!(usage["error"], "N must be a number of steps, not `x`");

    // An error before any run: the same shape, status `error`.
    let (code, err) = doc(&["run", "nagios", "config", "--json"]);
    assert_eq!((code, err["status"].as_str()), (1, Some("error")));
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .starts_with("no plugin named `nagios` is installed"),
        "{err:#}"
    );
}

#[test]
fn the_config_file_gives_defaults_the_command_line_overrides() {
    let s = Sandbox::new();
    s.install("hello");
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
            "[run]\ninventory = \"{}\"\nmax-in-flight = 4\njson = true\n",
            inv.display()
        ),
    )
    .unwrap();
    // From the config: the inventory and --json.
    let out: serde_json::Value = serde_json::from_str(&s.ok(&["run", "hello", "info"])).unwrap();
    assert_eq!(out["report"]["phases"][0]["steps"][0]["node"], "site-core");
    // The command line wins.
    let other = s.home.path().join("other.toml");
    std::fs::write(&other, "[[node]]\nname = \"other\"\nlocal = true\n").unwrap();
    let out: serde_json::Value = serde_json::from_str(&s.ok(&[
        "run",
        "hello",
        "info",
        "--inventory",
        other.to_str().unwrap(),
    ]))
    .unwrap();
    assert_eq!(out["report"]["phases"][0]["steps"][0]["node"], "other");
    // A mistake in the file is named.
    std::fs::write(config.join("config.toml"), "[run]\nmax-inflight = 4\n").unwrap();
    let err = s.fails(1, &["run", "hello", "info"]);
    assert!(
        err.contains("config.toml: `max-inflight` is not one of the host's run flags"),
        "{err}"
    );
    std::fs::write(config.join("config.toml"), "[run]\ndry-run = true\n").unwrap();
    let err = s.fails(1, &["run", "hello", "info"]);
    assert!(err.contains("`dry-run` cannot be a default"), "{err}");
}

#[test]
fn the_manual_page_describes_the_commands() {
    let s = Sandbox::new();
    let man = s.ok(&["man"]);
    assert!(
        man.starts_with(".ie \\n(.g .ds Aq \\(aq"),
        "{}",
        &man[..200.min(man.len())]
    );
    assert!(man.contains(".TH stackhost 1"), "{man}");
    assert!(
        man.contains("A maintenance host for PaaS clusters with sandboxed WebAssembly plugins")
    );
    assert!(man.contains("Run a plugin command on the cluster"), "{man}");
}
