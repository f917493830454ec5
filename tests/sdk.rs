//! The SDK a stranger gets from the binary alone: `stackhost sdk export`
//! writes exactly the repository's SDK crate and WIT package, refuses to
//! write over a directory with something in it unless told, and a plugin
//! built against that export alone (outside the repository) installs and
//! runs; `plugin new --sdk` checks what it is pointed at.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use support::{Sandbox, only_step};

/// What an export must hold: the repository's sdk/Cargo.toml,
/// sdk/README.md and sdk/src/**, as stackhost-sdk/..., and wit/**.
fn repository_sdk() -> BTreeMap<String, Vec<u8>> {
    let repo = support::repo();
    let mut want = BTreeMap::new();
    for name in ["Cargo.toml", "README.md"] {
        want.insert(
            format!("stackhost-sdk/{name}"),
            std::fs::read(repo.join("sdk").join(name)).unwrap(),
        );
    }
    for (rel, bytes) in support::tree(&repo.join("sdk/src")) {
        want.insert(format!("stackhost-sdk/src/{rel}"), bytes);
    }
    for (rel, bytes) in support::tree(&repo.join("wit")) {
        want.insert(format!("wit/{rel}"), bytes);
    }
    want
}

/// `version = "X"` of the repository's sdk/Cargo.toml and the version in
/// `package stackhost:host@X;` of wit/types.wit.
fn repository_versions() -> (String, String) {
    let repo = support::repo();
    let cargo = std::fs::read_to_string(repo.join("sdk/Cargo.toml")).unwrap();
    let sdk = cargo
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("sdk/Cargo.toml states a version")
        .to_string();
    let types = std::fs::read_to_string(repo.join("wit/types.wit")).unwrap();
    let wit = types
        .lines()
        .find_map(|l| l.strip_prefix("package stackhost:host@"))
        .and_then(|v| v.strip_suffix(';'))
        .expect("wit/types.wit names its package")
        .to_string();
    (sdk, wit)
}

#[test]
fn sdk_export_writes_the_repositorys_sdk_and_wit_byte_for_byte() {
    let s = Sandbox::new();
    let dir = s.home.path().join("exported");
    let out = s.ok(&["sdk", "export", dir.to_str().unwrap()]);
    let (sdk, wit) = repository_versions();
    assert!(
        out.contains(&format!(
            "exported stackhost-sdk {sdk} and the WIT package stackhost:host@{wit}"
        )),
        "{out}"
    );
    let got = support::tree(&dir);
    let want = repository_sdk();
    let names = |m: &BTreeMap<String, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&got), names(&want), "the exported files differ");
    for (path, bytes) in &want {
        assert!(got[path] == *bytes, "{path} differs from the repository's");
    }
    // The SDK finds its WIT as ../wit (sdk/src/lib.rs): the export keeps
    // that layout.
    let lib = std::str::from_utf8(&got["stackhost-sdk/src/lib.rs"]).unwrap();
    assert!(
        lib.contains(r#"path: "../wit","#),
        "the SDK no longer reads ../wit"
    );
}

#[test]
fn sdk_export_refuses_a_non_empty_dir_without_force() {
    let s = Sandbox::new();
    let dir = s.home.path().join("mine");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "keep me").unwrap();
    let out = s.fails(1, &["sdk", "export", dir.to_str().unwrap()]);
    assert!(
        out.contains("is not empty; pass --force to replace its stackhost-sdk/ and wit/"),
        "{out}"
    );
    assert_eq!(support::tree(&dir).len(), 1, "something was written");

    // --force replaces the SDK's two directories whole (a stale .wit file
    // would change the package) and leaves everything else alone.
    std::fs::create_dir_all(dir.join("wit")).unwrap();
    std::fs::write(dir.join("wit/removed-since.wit"), "stale").unwrap();
    s.ok(&["sdk", "export", "--force", dir.to_str().unwrap()]);
    let mut want = repository_sdk();
    want.insert("notes.txt".into(), b"keep me".to_vec());
    assert_eq!(support::tree(&dir), want);

    // An empty directory needs no --force; a file is never a directory.
    let empty = s.home.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    s.ok(&["sdk", "export", empty.to_str().unwrap()]);
    let out = s.fails(
        1,
        &[
            "sdk",
            "export",
            "--force",
            dir.join("notes.txt").to_str().unwrap(),
        ],
    );
    assert!(out.contains("exists and is not a directory"), "{out}");
}

#[test]
fn sdk_and_plugin_new_help_say_where_the_sdk_goes() {
    let s = Sandbox::new();
    // clap wraps help to the terminal's width: compare words, not lines.
    let words = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
    let help = words(&s.ok(&["sdk", "export", "--help"]));
    for want in [
        "Write the plugin SDK (the stackhost-sdk crate) and the WIT package",
        "DIR/stackhost-sdk/",
        "DIR/wit/",
        "refused unless --force",
        "Examples: stackhost sdk export ~/stackhost-sdk",
        "stackhost sdk export --force my-plugin/.stackhost-sdk",
    ] {
        assert!(help.contains(want), "`{want}` is not in:\n{help}");
    }
    let help = words(&s.ok(&["plugin", "new", "--help"]));
    for want in [
        "NAME/.stackhost-sdk/",
        "relative path .stackhost-sdk/stackhost-sdk",
        "needs no stackhost checkout",
        "With --sdk PATH the crate depends on the SDK at PATH",
        "stackhost run disk-report uptime",
    ] {
        assert!(help.contains(want), "`{want}` is not in:\n{help}");
    }
}

#[test]
fn a_plugin_built_against_an_exported_sdk_alone_installs_and_runs() {
    let s = Sandbox::new();
    let repo = support::repo().canonicalize().unwrap();
    let shared = s.home.path().join("shared-sdk");
    assert!(!shared.starts_with(&repo));
    s.ok(&["sdk", "export", shared.to_str().unwrap()]);
    let dir = s.home.path().join("disk-uptime");
    let out = s.ok(&[
        "plugin",
        "new",
        "disk-uptime",
        "--dir",
        dir.to_str().unwrap(),
        "--sdk",
        shared.to_str().unwrap(),
    ]);
    let exported = shared.join("stackhost-sdk").canonicalize().unwrap();
    assert!(
        out.contains(&format!("using the SDK at {}", exported.display())),
        "{out}"
    );
    assert!(!dir.join(".stackhost-sdk").exists(), "--sdk makes no copy");
    let cargo_toml = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(
        cargo_toml.contains(&format!(
            "stackhost-sdk = {{ path = \"{}\" }}",
            exported.display()
        )),
        "{cargo_toml}"
    );
    assert!(
        !cargo_toml.contains(repo.to_str().unwrap()),
        "Cargo.toml names the repository:\n{cargo_toml}"
    );
    let wasm = support::build_plugin_crate(&dir, "disk-uptime");
    s.ok(&["plugin", "install", "--yes", wasm.to_str().unwrap()]);
    let (code, report) = s.report(&["disk-uptime", "uptime"]);
    assert_eq!(code, 0, "{report:#}");
    let (status, message) = only_step(&report);
    assert_eq!(status, "ok");
    assert!(message.contains("load average"), "{message}");
}

#[test]
fn plugin_new_refuses_an_sdk_path_that_cannot_build() {
    let s = Sandbox::new();
    let dir = |name: &str| s.home.path().join(name);
    let new = |sdk: &Path| {
        let target = dir("never-made");
        let out = s.fails(
            1,
            &[
                "plugin",
                "new",
                "never-made",
                "--dir",
                target.to_str().unwrap(),
                "--sdk",
                sdk.to_str().unwrap(),
            ],
        );
        assert!(
            !target.exists(),
            "a refused scaffold left {}",
            target.display()
        );
        out
    };
    let out = new(&dir("nowhere"));
    assert!(out.contains("no stackhost-sdk crate at"), "{out}");
    assert!(out.contains("stackhost sdk export DIR"), "{out}");

    // A crate that is not the SDK.
    std::fs::create_dir_all(dir("other")).unwrap();
    std::fs::write(
        dir("other/Cargo.toml"),
        "[package]\nname = \"other\"\nversion = \"1.0.0\"\n",
    )
    .unwrap();
    let out = new(&dir("other"));
    assert!(
        out.contains("is not the stackhost-sdk crate's manifest (its package is `other`)"),
        "{out}"
    );

    // The SDK crate without the WIT it builds from beside it.
    s.ok(&["sdk", "export", dir("lonely").to_str().unwrap()]);
    std::fs::remove_dir_all(dir("lonely/wit")).unwrap();
    let out = new(&dir("lonely"));
    assert!(out.contains("has no WIT package beside it"), "{out}");
}

#[test]
fn plugin_dev_goes_from_source_to_a_signed_run_in_one_command() {
    let s = Sandbox::new();
    let dir = s.home.path().join("dev-uptime");
    s.ok(&[
        "plugin",
        "new",
        "dev-uptime",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    let target = support::repo().join("plugins/target");
    let target = target.to_str().unwrap();
    let dev = |args: &[&str]| {
        let mut all = vec!["plugin", "dev", dir.to_str().unwrap()];
        all.extend_from_slice(args);
        s.run_env(&all, &[("CARGO_TARGET_DIR", target)])
    };
    let out = dev(&["--", "uptime", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (status, message) = only_step(&json["report"]);
    assert_eq!(status, "ok");
    assert!(message.contains("load average"), "{message}");
    assert!(
        stderr.contains("made a development signing key")
            && stderr.contains("trusted in this home only")
            && stderr.contains("==> installed dev-uptime 0.1.0 (signed by development key")
            && stderr.contains("==> stackhost run dev-uptime uptime --json"),
        "{stderr}"
    );
    // Signed by the development key, which `keys list` shows, and which
    // minisign itself accepts.
    let info = s.ok(&["plugin", "info", "dev-uptime"]);
    assert!(
        info.contains("stackhost development key") && info.contains("stackhost plugin dev build, "),
        "{info}"
    );
    let keys: serde_json::Value = serde_json::from_str(&s.ok(&["keys", "list", "--json"])).unwrap();
    let id = keys[0]["id"].as_str().unwrap().to_string();
    let wasm = support::repo().join("plugins/target/wasm32-wasip2/release/dev_uptime.wasm");
    let public = s.home.path().join(format!("config/trusted-keys/{id}.pub"));
    let verified = std::process::Command::new("minisign")
        .args([
            "-V",
            "-p",
            public.to_str().unwrap(),
            "-m",
            wasm.to_str().unwrap(),
        ])
        .output()
        .expect("minisign is installed (tests/run installs it)");
    assert!(verified.status.success(), "{verified:?}");

    // An edit: built again, the key kept, the installed copy replaced.
    let lib = dir.join("src/lib.rs");
    let code = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(&lib, format!("{code}\n// edited\n")).unwrap();
    let out = dev(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("made a development signing key"),
        "{stderr}"
    );
    assert!(stderr.contains("no command given"), "{stderr}");

    // With an inventory configured the run is a dry run, and says so.
    let inventory = s.home.path().join("inventory.toml");
    std::fs::write(
        &inventory,
        "[[node]]\nname = \"here\"\nlocal = true\nroles = [\"dea\"]\n",
    )
    .unwrap();
    let out = dev(&["--", "uptime", "--inventory", inventory.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr
            .contains("a cluster inventory is configured: this is a dry run (--for-real runs it)"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("(dry run: nothing is changed)"));

    // A manifest install would refuse: nothing is installed, and the
    // messages are `plugin check`'s.
    let manifest = dir.join("stackhost.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("[[command]]", "colour = \"red\"\n\n[[command]]"),
    )
    .unwrap();
    let out = dev(&["--", "uptime"]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("1 problem:")
            && all.contains("unknown field `colour`")
            && all.contains("the plugin has problems (listed above); nothing was installed"),
        "{all}"
    );
}

#[test]
fn cargo_test_passes_in_a_fresh_scaffold_and_a_failing_test_fails() {
    let s = Sandbox::new();
    let dir = s.home.path().join("tested");
    s.ok(&["plugin", "new", "tested", "--dir", dir.to_str().unwrap()]);
    // The scaffold's runner is the `stackhost` on PATH.
    let path = path_with_stackhost();
    let cargo_test = || {
        cargo_in(&dir)
            .arg("test")
            .env("PATH", &path)
            .env_remove("RUST_BACKTRACE")
            .output()
            .expect("cargo runs")
    };
    let out = cargo_test();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("test tests::the_load_average_is_picked_out_of_uptimes_line ... ok"),
        "{stdout}"
    );
    // A failing assertion fails `cargo test`, with its message shown.
    let lib = dir.join("src/lib.rs");
    let code = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(
        &lib,
        code.replace("\"odd\"), \"odd\"", "\"odd\"), \"even\""),
    )
    .unwrap();
    let out = cargo_test();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("right: \"even\"") && all.contains("a test panicked (its message is above)"),
        "{all}"
    );
}

#[test]
fn cargo_build_fails_on_a_manifest_install_would_refuse() {
    let s = Sandbox::new();
    let dir = s.home.path().join("checked");
    s.ok(&["plugin", "new", "checked", "--dir", dir.to_str().unwrap()]);
    // The manifest alone, as the crate's build script checks it.
    let manifest = dir.join("stackhost.toml");
    let out = s.ok(&["plugin", "check", manifest.to_str().unwrap()]);
    assert_eq!(
        out,
        format!(
            "ok: {}: checked 0.1.0 (plugin), stackhost:host@0.1.1, requests exec; unsigned\n",
            manifest.display()
        )
    );
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("description", "colour = \"red\"\ndescription"),
    )
    .unwrap();
    let path = path_with_stackhost();
    let build = cargo_in(&dir)
        .args(["build", "--release"])
        .env("PATH", &path)
        .output()
        .expect("cargo runs");
    let stderr = String::from_utf8_lossy(&build.stderr);
    assert!(!build.status.success(), "{stderr}");
    assert!(
        stderr.contains("stackhost.toml: 1 problem:")
            && stderr.contains("- the manifest is not valid: TOML parse error at line")
            && stderr.contains("unknown field `colour`")
            && !stderr.contains("\\x0a"),
        "{stderr}"
    );
}

/// The shell lines of the first ```sh block under `heading` in
/// sdk/README.md.
fn readme_block(heading: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(support::repo().join("sdk/README.md")).unwrap();
    let section = readme
        .split(&format!("## {heading}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("sdk/README.md has no `## {heading}`"));
    let block = section
        .split("```sh\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    block.lines().map(str::to_string).collect()
}

#[test]
fn the_first_plugin_page_runs_as_written() {
    let lines = readme_block("Your first plugin in ten minutes");
    assert!(lines.len() >= 5, "{lines:?}");
    let s = Sandbox::new();
    let mut cwd = s.home.path().join("empty");
    std::fs::create_dir(&cwd).unwrap();
    let path = path_with_stackhost();
    let mut last = String::new();
    for line in &lines {
        if let Some(dir) = line.strip_prefix("cd ") {
            cwd = cwd.join(dir);
            continue;
        }
        // Every other line runs through a shell, as the reader's would.
        let out = std::process::Command::new("sh")
            .args(["-c", line])
            .current_dir(&cwd)
            .env("PATH", &path)
            .env("STACKHOST_HOME", s.home.path())
            .env("CARGO_TARGET_DIR", support::repo().join("plugins/target"))
            .env_remove("STACKHOST_INVENTORY")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "`{line}` failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        last = String::from_utf8_lossy(&out.stdout).into_owned();
    }
    // The last line's JSON report: the new command ran on this machine.
    let json: serde_json::Value = serde_json::from_str(&last).unwrap();
    let (status, message) = only_step(&json["report"]);
    assert_eq!(status, "ok");
    assert!(message.starts_with("load average"), "{message}");
}

#[test]
fn plugin_dev_watch_goes_round_again_on_an_edit_and_stops_on_ctrl_c() {
    use std::io::{BufRead, BufReader};
    let s = Sandbox::new();
    let dir = s.home.path().join("watched");
    s.ok(&["plugin", "new", "watched", "--dir", dir.to_str().unwrap()]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_stackhost"))
        .args([
            "plugin",
            "dev",
            dir.to_str().unwrap(),
            "--watch",
            "--",
            "uptime",
        ])
        .env("STACKHOST_HOME", s.home.path())
        .env("CARGO_TARGET_DIR", support::repo().join("plugins/target"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut wait_for = |want: &str, n: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
        while seen.iter().filter(|l: &&String| l.contains(want)).count() < n {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => seen.push(line),
                Err(_) => panic!("no `{want}` ({n}) in:\n{}", seen.join("\n")),
            }
        }
    };
    wait_for("==> watching", 1);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let lib = dir.join("src/lib.rs");
    let code = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(&lib, format!("{code}\n// edited while watched\n")).unwrap();
    wait_for("src/lib.rs changed", 1);
    wait_for("==> stackhost run watched uptime", 2);
    wait_for("==> watching", 2);
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{}", seen.join("\n"));
}

/// `$PATH` with the `stackhost` under test first: what a plugin author's
/// shell has (the scaffold's runner and build script call `stackhost`).
fn path_with_stackhost() -> String {
    let bin = Path::new(env!("CARGO_BIN_EXE_stackhost")).parent().unwrap();
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// `cargo` run in the plugin crate `dir`, sharing the plugins' target dir.
fn cargo_in(dir: &Path) -> std::process::Command {
    let mut cmd =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(dir)
        .env("CARGO_TARGET_DIR", support::repo().join("plugins/target"));
    cmd
}
