//! The runtime end to end: real components run programs on the local node,
//! limits stop runaway plugins and the host carries on, the compile cache
//! is used on the second run.

mod support;

use support::{Sandbox, only_step};

#[test]
fn hello_info_runs_uname_on_the_local_node() {
    let s = Sandbox::new();
    s.install("hello");
    let (code, report) = s.report(&["hello", "info"]);
    assert_eq!(code, 0, "{report:#}");
    let (status, message) = only_step(&report);
    let uname = std::process::Command::new("uname")
        .arg("-srm")
        .output()
        .unwrap();
    let uname = String::from_utf8(uname.stdout).unwrap();
    assert_eq!(status, "ok");
    assert!(
        message.contains(uname.trim()),
        "step message {message:?} lacks `{}`",
        uname.trim()
    );
}

#[test]
fn a_plugin_gets_the_output_of_the_program_it_runs() {
    let s = Sandbox::new();
    s.install("probe");
    let (code, report) = s.report(&["probe", "exec", "echo", "hello", "from", "echo"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(only_step(&report).1.trim(), "hello from echo");
    // Arguments that look like flags reach the program after `--`.
    let (_, report) = s.report(&["probe", "exec", "--", "echo", "-n", "no newline"]);
    assert_eq!(only_step(&report).1, "no newline");
}

#[test]
fn hello_stamp_changes_once_then_is_ok() {
    let s = Sandbox::new();
    s.install("hello");
    let message = format!("stamp {}", std::process::id());
    let (code, first) = s.report(&["hello", "stamp", "--message", &message]);
    assert_eq!(code, 0, "{first:#}");
    assert_eq!(only_step(&first).0, "changed");
    let on_disk = std::fs::read_to_string("/var/tmp/stackhost-hello/stamp.txt").unwrap();
    assert_eq!(on_disk, format!("{message}\n"));
    let (_, second) = s.report(&["hello", "stamp", "--message", &message]);
    assert_eq!(only_step(&second).0, "ok", "{second:#}");
}

#[test]
fn an_infinite_loop_is_stopped_by_the_cpu_limit_and_the_next_run_works() {
    let s = Sandbox::new();
    s.install("spin");
    s.install("probe");
    let out = s.fails(3, &["run", "spin", "loop", "--cpu-limit", "1s"]);
    assert!(
        out.contains("plugin `spin` was stopped") && out.contains("past its CPU limit"),
        "{out}"
    );
    let (code, report) = s.report(&["probe", "exec", "echo", "still here"]);
    assert_eq!((code, only_step(&report).1.trim()), (0, "still here"));
}

#[test]
fn a_loop_on_cheap_host_calls_is_stopped_by_the_cpu_limit() {
    let s = Sandbox::new();
    s.install("spin");
    // Without charging host calls only the wall clock would end it.
    let out = s.fails(
        3,
        &[
            "run",
            "spin",
            "calls",
            "--cpu-limit",
            "1s",
            "--timeout",
            "60s",
        ],
    );
    assert!(
        out.contains("plugin `spin` was stopped") && out.contains("past its CPU limit"),
        "{out}"
    );
}

#[test]
fn a_panicking_plugin_is_said_to_have_crashed_without_a_backtrace_hint() {
    let s = Sandbox::new();
    s.install("spin");
    let out = s.fails(3, &["run", "spin", "panic"]);
    assert!(
        out.contains("plugin `spin` crashed: ") && out.contains("the plugin gave up on panic"),
        "{out}"
    );
    assert!(!out.contains("RUST_BACKTRACE"), "{out}");
}

#[test]
fn the_wall_clock_limit_stops_a_call() {
    let s = Sandbox::new();
    s.install("spin");
    let out = s.fails(
        3,
        &[
            "run",
            "spin",
            "loop",
            "--cpu-limit",
            "1h",
            "--timeout",
            "1s",
        ],
    );
    assert!(out.contains("past its wall-clock limit"), "{out}");
}

#[test]
fn a_plugin_growing_past_its_memory_limit_is_stopped() {
    let s = Sandbox::new();
    s.install("hog");
    s.install("probe");
    let out = s.fails(3, &["run", "hog", "grow", "--memory-limit", "64"]);
    assert!(
        out.contains("plugin `hog` was stopped") && out.contains("past its limit of 64 MiB"),
        "{out}"
    );
    let (code, _) = s.report(&["probe", "exec", "true"]);
    assert_eq!(code, 0);
}

#[test]
fn limits_in_one_process_leave_the_runtime_usable() {
    use stackhost::caps::bindings::exports::stackhost::host::commands::Invocation;
    use stackhost::caps::ctx::CallCtx;
    use stackhost::caps::registry::Capabilities as Grant;
    use stackhost::runtime::{CallError, CallLimits, LimitExceeded, Runtime};
    use std::sync::Arc;
    use std::time::Duration;

    let cache = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(cache.path()).unwrap();
    let load = |krate: &str, grant: Grant| {
        let wasm = std::fs::read(support::wasm(krate)).unwrap();
        let digest = stackhost::plugin::store::digest(&wasm);
        runtime.load(krate, &digest, &wasm, grant).unwrap()
    };
    // `spin calls` stats a path, so the component imports fs.
    let fs = stackhost::caps::fs::FsGrant {
        reason: "stats a path".into(),
        read: vec!["/nonexistent-stackhost-spin".into()],
        write: Vec::new(),
        roles: Vec::new(),
    };
    let spin = load("spin", Grant::default().with::<stackhost::caps::fs::Fs>(fs));
    let hog = load("hog", Grant::default());
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let cluster = Arc::new(stackhost::cluster::Cluster::local());
    let ctx = |name: &str| {
        Arc::new(CallCtx::new(
            name.into(),
            cluster.clone(),
            Arc::new(Grant::default()),
            false,
            Duration::from_secs(5),
        ))
    };
    let limits = CallLimits {
        memory: 32 << 20,
        cpu: Duration::from_millis(300),
        wall: Duration::from_secs(30),
    };
    let inv = |c: &str| Invocation {
        command: c.into(),
        args: vec![],
        dry_run: false,
    };
    tokio.block_on(async {
        for _ in 0..2 {
            let r = spin.plan(ctx("spin"), limits, &inv("loop")).await;
            assert!(matches!(
                r.result,
                Err(CallError::Limit {
                    limit: LimitExceeded::Cpu(_),
                    ..
                })
            ));
            let r = hog.plan(ctx("hog"), limits, &inv("grow")).await;
            assert!(matches!(
                r.result,
                Err(CallError::Limit {
                    limit: LimitExceeded::Memory { limit: 32, .. },
                    ..
                })
            ));
        }
    });
}

#[test]
fn the_second_run_uses_the_compile_cache() {
    let s = Sandbox::new();
    s.install("probe");
    let cache = s.home.path().join("cache/compiled");
    std::fs::remove_dir_all(&cache).unwrap();
    let (_, first) = s.report(&["probe", "exec", "true"]);
    assert_eq!(first["metrics"]["compile_cache"], "compiled");
    let files: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let written = std::fs::metadata(&files[0]).unwrap().modified().unwrap();
    let (_, second) = s.report(&["probe", "exec", "true"]);
    assert_eq!(second["metrics"]["compile_cache"], "hit");
    assert_eq!(
        std::fs::metadata(&files[0]).unwrap().modified().unwrap(),
        written,
        "cache file was rewritten"
    );
}

#[test]
fn a_scaffolded_plugin_builds_installs_and_runs() {
    // The stranger's path: only the binary, in a directory outside the
    // repository; the crate carries its own copy of the embedded SDK.
    let s = Sandbox::new();
    let dir = s.home.path().join("my-uptime");
    assert!(!dir.starts_with(support::repo()));
    let out = s.ok(&["plugin", "new", "my-uptime", "--dir", dir.to_str().unwrap()]);
    assert!(
        out.contains("stackhost-sdk 0.2.0 (stackhost:host@0.1.1)"),
        "{out}"
    );
    let cargo_toml = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(
        cargo_toml.contains(
            r#"stackhost-sdk = { path = ".stackhost-sdk/stackhost-sdk", version = "0.2.0" }"#
        ),
        "{cargo_toml}"
    );
    let repo = support::repo().canonicalize().unwrap();
    for (path, bytes) in support::tree(&dir) {
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(repo.to_str().unwrap()),
            "{path} names the repository:\n{text}"
        );
    }
    let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
    assert!(lib.contains("stackhost run my-uptime uptime"), "{lib}");
    assert!(lib.contains(".check()?"), "{lib}");
    let wasm = support::build_plugin_crate(&dir, "my-uptime");
    s.ok(&["plugin", "install", "--yes", wasm.to_str().unwrap()]);
    let (code, report) = s.report(&["my-uptime", "uptime"]);
    assert_eq!(code, 0, "{report:#}");
    let (status, message) = only_step(&report);
    assert_eq!(status, "ok");
    assert!(message.contains("load average"), "{message}");
    let out = s.fails(1, &["plugin", "new", "Bad Name"]);
    assert!(out.contains("must be lower-case letters"), "{out}");
    let out = s.fails(
        1,
        &["plugin", "new", "again", "--dir", dir.to_str().unwrap()],
    );
    assert!(out.contains("already exists; pick another --dir"), "{out}");
}

#[test]
fn a_commands_own_defaults_apply_unless_a_flag_overrides_them() {
    let s = Sandbox::new();
    s.install("probe");
    // `exec-quick` sets `exec-timeout = "1s"` in its manifest.
    let (code, report) = s.report(&["probe", "exec-quick", "--", "sleep", "3"]);
    let (status, message) = only_step(&report);
    assert_eq!((code, status.as_str()), (3, "failed"), "{report:#}");
    assert!(
        message.contains("`sleep` on node local ran past its timeout of 1s"),
        "{message}"
    );
    // A flag given on the command line still wins.
    let (code, report) = s.report(&[
        "probe",
        "exec-quick",
        "--exec-timeout",
        "10s",
        "--",
        "sleep",
        "2",
    ]);
    assert_eq!(code, 0, "{report:#}");
    // `plugin info` says what the command sets.
    let info = s.ok(&["plugin", "info", "probe"]);
    assert!(
        info.contains("(defaults: --serial 1 --exec-timeout 1s)"),
        "{info}"
    );
    // The host's own default (10m) is untouched for other commands.
    let (code, report) = s.report(&["probe", "exec", "--", "sleep", "2"]);
    assert_eq!(code, 0, "{report:#}");
}
