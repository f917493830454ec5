//! The plugin store: versions side by side, WIT compatibility, malformed
//! files and manifests, tampering, list/info/remove.

mod support;

use support::{Sandbox, only_step, wasm};

#[test]
fn two_versions_side_by_side_and_requirements_pick_the_right_one() {
    let s = Sandbox::new();
    s.install("multi-v1");
    s.install("multi-v2");
    let list = s.ok(&["plugin", "list"]);
    assert!(list.contains("1.2.0") && list.contains("2.0.0"), "{list}");
    let (_, r) = s.report(&["multi@^1", "which"]);
    assert_eq!(only_step(&r).1, "multi 1.2.0");
    let (_, r) = s.report(&["multi", "which"]);
    assert_eq!(only_step(&r).1, "multi 2.0.0");
    let (_, r) = s.report(&["multi@=2.0.0", "which"]);
    assert_eq!(only_step(&r).1, "multi 2.0.0");
    let out = s.fails(1, &["run", "multi@^3", "which"]);
    assert!(
        out.contains("no installed version matching `^3` (installed: 1.2.0, 2.0.0)"),
        "{out}"
    );
    let out = s.fails(1, &["plugin", "remove", "multi@^1"]);
    assert!(
        out.contains(
            "removing multi 1.2.0 needs confirming, and this is not a terminal: pass --yes"
        ),
        "{out}"
    );
    s.ok(&["plugin", "remove", "multi@^1", "--yes"]);
    let out = s.fails(1, &["run", "multi@^1", "which"]);
    assert!(out.contains("(installed: 2.0.0)"), "{out}");
}

#[test]
fn an_incompatible_wit_version_is_refused_naming_both() {
    let s = Sandbox::new();
    let path = wasm("future-wit");
    let out = s.fails(1, &["plugin", "install", "--yes", path.to_str().unwrap()]);
    assert!(
        out.contains("stackhost:host@1.0.0") && out.contains("stackhost:host@0.1.1"),
        "{out}"
    );
    assert!(s.ok(&["plugin", "list"]).contains("no plugins installed"));
}

/// Install `bytes` as a plugin file and return the combined output.
fn install_bytes(s: &Sandbox, name: &str, bytes: &[u8]) -> String {
    let file = s.home.path().join(name);
    std::fs::write(&file, bytes).unwrap();
    s.fails(1, &["plugin", "install", "--yes", file.to_str().unwrap()])
}

/// hello.wasm with one manifest fragment replaced by another of the same
/// length, so the binary's section sizes stay valid.
fn patched_hello(from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut bytes = std::fs::read(wasm("hello")).unwrap();
    let at = bytes
        .windows(from.len())
        .position(|w| w == from.as_bytes())
        .expect("fragment in manifest");
    bytes[at..at + to.len()].copy_from_slice(to.as_bytes());
    bytes
}

#[test]
fn malformed_plugins_get_clear_errors() {
    let s = Sandbox::new();
    let out = install_bytes(&s, "script.wasm", b"#!/bin/sh\necho not wasm\n");
    assert!(out.contains("not a WebAssembly file"), "{out}");
    let out = install_bytes(&s, "core.wasm", b"\0asm\x01\0\0\0");
    assert!(
        out.contains("core WebAssembly module, not a component"),
        "{out}"
    );
    let out = install_bytes(
        &s,
        "unknown-field.wasm",
        &patched_hello("description =", "descriptiox ="),
    );
    assert!(out.contains("unknown field `descriptiox`"), "{out}");
    let out = install_bytes(
        &s,
        "bad-semver.wasm",
        &patched_hello("version = \"0.1.0\"", "version = \"0.1.x\""),
    );
    assert!(
        out.contains("manifest is not valid") && out.contains("0.1.x"),
        "{out}"
    );
    let out = s.fails(
        1,
        &[
            "plugin",
            "install",
            "--yes",
            wasm("nomanifest").to_str().unwrap(),
        ],
    );
    assert!(
        out.contains("carries no `stackhost-manifest` section"),
        "{out}"
    );
    let out = s.fails(
        1,
        &["plugin", "install", "--yes", "/nonexistent/plugin.wasm"],
    );
    assert!(
        out.contains("cannot read /nonexistent/plugin.wasm"),
        "{out}"
    );
    assert!(s.ok(&["plugin", "list"]).contains("no plugins installed"));
}

#[test]
fn a_changed_plugin_file_is_refused_until_reinstalled() {
    let s = Sandbox::new();
    s.install("probe");
    let installed = s.home.path().join("data/plugins/probe/0.1.0/plugin.wasm");
    let mut bytes = std::fs::read(&installed).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&installed, &bytes).unwrap();
    let out = s.fails(1, &["run", "probe", "exec", "true"]);
    assert!(out.contains("has changed since it was granted"), "{out}");
}

#[test]
fn reinstalling_different_content_needs_replace() {
    let s = Sandbox::new();
    s.install("hello");
    let other = s.home.path().join("hello-other.wasm");
    std::fs::write(&other, patched_hello("Say hello", "Say howdy")).unwrap();
    let out = s.fails(1, &["plugin", "install", "--yes", other.to_str().unwrap()]);
    assert!(
        out.contains("already installed with different content"),
        "{out}"
    );
    s.ok(&[
        "plugin",
        "install",
        "--yes",
        "--replace",
        other.to_str().unwrap(),
    ]);
    assert!(s.ok(&["plugin", "info", "hello"]).contains("Say howdy"));
}

#[test]
fn info_shows_requests_grants_and_imports() {
    let s = Sandbox::new();
    let path = wasm("hello");
    s.ok(&[
        "plugin",
        "install",
        "--grant",
        "exec,fs",
        path.to_str().unwrap(),
    ]);
    let info = s.ok(&["plugin", "info", "hello"]);
    for needle in [
        "hello 0.1.0",
        "stackhost:host/exec@0.1.1",
        "granted:     exec,fs",
        "    runs, read-only (also under --dry-run):\n        exec     uname -srm — reports the kernel\n",
    ] {
        assert!(info.contains(needle), "`{needle}` missing from:\n{info}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&s.ok(&["plugin", "info", "hello", "--json"])).unwrap();
    assert_eq!(json["granted"], serde_json::json!(["exec", "fs"]));
}

#[test]
fn install_without_a_terminal_needs_yes_or_grant() {
    let s = Sandbox::new();
    let out = s.fails(1, &["plugin", "install", wasm("hello").to_str().unwrap()]);
    assert!(
        out.contains("pass --yes to grant everything requested, or --grant CAPS"),
        "{out}"
    );
}

#[test]
fn run_help_lists_the_plugins_commands_and_arguments() {
    let s = Sandbox::new();
    s.install("hello");
    let help = s.ok(&["run", "hello", "--help"]);
    assert!(help.contains("info") && help.contains("stamp"), "{help}");
    let help = s.ok(&["run", "hello", "stamp", "--help"]);
    assert!(
        help.contains("--message") && help.contains("--dry-run"),
        "{help}"
    );
    // The host's flags say what they do, whatever the terminal's width.
    let words = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        words.contains(
            "--max-handshakes <N> Most SSH handshakes (connect, key exchange, authentication) \
             in flight at once, whatever --max-in-flight says; raise it when the nodes, not this \
             machine, are the slow side of a handshake [default: 64]"
        ),
        "{help}"
    );
    let out = s.fails(2, &["run", "hello", "nonsense"]);
    assert!(out.contains("nonsense"), "{out}");
    let out = s.fails(1, &["run", "absent", "x"]);
    assert!(
        out.contains("no plugin named `absent` is installed"),
        "{out}"
    );
}
