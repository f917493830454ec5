//! Test support: builds the real plugin and fixture components once per
//! test binary (cargo, target wasm32-wasip2), and runs the real
//! `stackhost` binary in a throwaway STACKHOST_HOME.

#![allow(dead_code)] // each test binary uses a different part

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// Where the wasm builds land (shared by plugins/ and tests/fixtures/).
fn wasm_target() -> PathBuf {
    repo().join("plugins/target/wasm32-wasip2/release")
}

/// Build plugins/ and tests/fixtures/ for wasm32-wasip2, once.
fn build_components() -> &'static Result<(), String> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT.get_or_init(|| {
        for workspace in ["plugins", "tests/fixtures"] {
            let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args([
                    "build",
                    "--release",
                    "--target",
                    "wasm32-wasip2",
                    "--manifest-path",
                ])
                .arg(repo().join(workspace).join("Cargo.toml"))
                .env("CARGO_TARGET_DIR", repo().join("plugins/target"))
                .output()
                .map_err(|e| format!("cannot run cargo: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "building {workspace} failed:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        Ok(())
    })
}

/// Path of the built component of crate `krate` (`hello`, `multi-v1`, ...).
pub fn wasm(krate: &str) -> PathBuf {
    if let Err(e) = build_components() {
        panic!("{e}");
    }
    let path = wasm_target().join(format!("{}.wasm", krate.replace('-', "_")));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// A throwaway stackhost home.
pub struct Sandbox {
    pub home: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            home: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// Run `stackhost ARGS`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    /// Run `stackhost ARGS` with extra environment variables.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_stackhost"))
            .args(args)
            .env("STACKHOST_HOME", self.home.path())
            .env_remove("STACKHOST_LOG")
            .envs(env.iter().copied())
            .output()
            .expect("stackhost runs")
    }

    /// Run and expect success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "stackhost {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run and expect exit code `code`; returns stdout + stderr.
    pub fn fails(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            out.status.code(),
            Some(code),
            "stackhost {args:?}: expected exit {code}, got:\n{text}"
        );
        text
    }

    /// Install crate `krate`'s component, granting everything it requests.
    pub fn install(&self, krate: &str) {
        let path = wasm(krate);
        self.ok(&[
            "plugin",
            "install",
            "--yes",
            path.to_str().expect("utf-8 path"),
        ]);
    }

    /// `stackhost ARGS` on a pseudo-terminal (through util-linux
    /// `script`), with piped stdin and stdout, so it acts as it would for
    /// an operator at a terminal.
    pub fn on_terminal(&self, args: &[&str]) -> std::process::Child {
        use std::process::Stdio;
        let line = format!(
            "STACKHOST_HOME={} {} {}",
            self.home.path().display(),
            env!("CARGO_BIN_EXE_stackhost"),
            args.join(" ")
        );
        Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("script (util-linux) runs")
    }

    /// `plugin install FILE` on a pseudo-terminal, so it prompts; `answer`
    /// is typed at the prompt. Returns what the terminal showed.
    pub fn install_on_terminal(&self, file: &Path, answer: &str) -> Output {
        use std::io::Write;
        let file = file.display().to_string();
        let mut child = self.on_terminal(&["plugin", "install", &file]);
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(format!("{answer}\n").as_bytes())
            .expect("the answer is typed");
        child.wait_with_output().expect("script finishes")
    }

    /// Every file the host left under its home (the journal database and
    /// its write-ahead log, the plugin store), and stdout and stderr of
    /// `out`, that hold `secret`.
    #[allow(dead_code)] // the secret tests use it
    pub fn leaks(&self, out: &Output, secret: &str) -> Vec<String> {
        let mut found = Vec::new();
        let mut dirs = vec![self.home.path().to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if std::fs::read(&path)
                    .unwrap()
                    .windows(secret.len())
                    .any(|w| w == secret.as_bytes())
                {
                    found.push(path.display().to_string());
                }
            }
        }
        for (name, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            if String::from_utf8_lossy(bytes).contains(secret) {
                found.push(name.into());
            }
        }
        found
    }

    /// Run a plugin command with --json and parse the report.
    pub fn report(&self, args: &[&str]) -> (i32, serde_json::Value) {
        let all = json_run_args(args);
        let out = self.run(&refs(&all));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "stackhost {all:?} printed no JSON report ({e}):\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), json["report"].clone())
    }

    /// Run a plugin command with --json; returns (exit code, run id, report).
    pub fn journaled(&self, args: &[&str]) -> (i32, i64, serde_json::Value) {
        let all = json_run_args(args);
        let out = self.run(&refs(&all));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
        (
            out.status.code().unwrap_or(-1),
            json["run"].as_i64().expect("run id"),
            json["report"].clone(),
        )
    }
}

/// The single step of a one-step report: (status, message).
pub fn only_step(report: &serde_json::Value) -> (String, String) {
    let steps: Vec<&serde_json::Value> = report["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .flat_map(|p| p["steps"].as_array().expect("steps"))
        .collect();
    assert_eq!(steps.len(), 1, "expected one step in {report:#}");
    (
        steps[0]["status"].as_str().unwrap().into(),
        steps[0]["message"].as_str().unwrap().into(),
    )
}

/// `run ARGS` with `--json` after the plugin's command.
fn json_run_args(args: &[&str]) -> Vec<String> {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    with_flags(&all, &["--json".to_string()])
}

/// Borrow a list of owned arguments.
pub fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// `args` with `flags` placed right after the command (`run PLUGIN CMD`
/// or `PLUGIN CMD`, `node list`), so a trailing `-- ARGS` stays the
/// plugin's.
pub fn with_flags(args: &[&str], flags: &[String]) -> Vec<String> {
    let at = if args.first() == Some(&"run") { 3 } else { 2 }.min(args.len());
    let mut all: Vec<String> = args[..at].iter().map(|a| a.to_string()).collect();
    all.extend(flags.iter().cloned());
    all.extend(args[at..].iter().map(|a| a.to_string()));
    all
}

/// A fresh directory inside the probe fixture's write grant.
pub fn scratch_rw() -> tempfile::TempDir {
    std::fs::create_dir_all("/tmp/stackhost-test/rw").expect("create probe grant root");
    tempfile::tempdir_in("/tmp/stackhost-test/rw").expect("scratch dir")
}

/// Build the plugin crate in `dir` (one `stackhost plugin new` wrote) the
/// way its author would, for wasm32-wasip2, and return its component.
/// The build shares the fixtures' target directory only so that the SDK's
/// dependencies compile once; it is a cache of outputs, never a source.
pub fn build_plugin_crate(dir: &Path, krate: &str) -> PathBuf {
    let target = repo().join("plugins/target");
    let build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("cargo runs");
    assert!(
        build.status.success(),
        "building {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&build.stderr)
    );
    let wasm = target.join(format!(
        "wasm32-wasip2/release/{}.wasm",
        krate.replace('-', "_")
    ));
    assert!(wasm.exists(), "{} was not built", wasm.display());
    wasm
}

/// Every file below `dir`, as paths relative to it with `/` separators,
/// mapped to their bytes.
pub fn tree(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).expect("list dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                let rel = path.strip_prefix(base).unwrap().to_str().unwrap();
                out.insert(rel.replace('\\', "/"), std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// `text` without terminal colour sequences.
#[allow(dead_code)] // the prompt tests use it
pub fn plain(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The forge component with its manifest section overwritten by
/// `manifest`, padded to the section's length with a comment.
pub fn forge(manifest: &str) -> Vec<u8> {
    let mut wasm = std::fs::read(wasm("forge")).unwrap();
    let mut at = None;
    for payload in wasmparser::Parser::new(0).parse_all(&wasm) {
        if let wasmparser::Payload::CustomSection(s) = payload.unwrap()
            && s.name() == "stackhost-manifest"
        {
            at = Some((s.data_offset(), s.data().len()));
        }
    }
    let (start, len) = at.expect("the forge component has a manifest section");
    let mut text = format!("{manifest}\n#");
    assert!(text.len() <= len, "the forge manifest has too little room");
    text.extend(std::iter::repeat_n('-', len - text.len()));
    wasm[start..start + len].copy_from_slice(text.as_bytes());
    wasm
}
