//! `stackhost plugin check FILE`: every problem `plugin install` would
//! refuse a file for, listed at once, with nothing installed.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::{Sandbox, repo, wasm};

/// A copy of the built component of `krate` in `dir`, named `name`.
fn copy(dir: &Path, krate: &str, name: &str) -> PathBuf {
    let file = dir.join(name);
    std::fs::copy(wasm(krate), &file).unwrap();
    file
}

/// Sign `file` with the test vendor key, as `minisign` would for a vendor.
fn sign(file: &Path) {
    let out = Command::new("minisign")
        .args(["-S", "-s"])
        .arg(repo().join("tests/keys/test-vendor.key"))
        .arg("-m")
        .arg(file)
        .args(["-t", "test vendor: check"])
        .output()
        .expect("minisign is installed (tests/run installs it)");
    assert!(out.status.success(), "{out:?}");
}

/// `plugin check FILE --json`, which must exit `code`.
fn check_json(s: &Sandbox, file: &Path, code: i32) -> serde_json::Value {
    let out = s.run(&["plugin", "check", "--json", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(code), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn assert_nothing_installed(s: &Sandbox) {
    assert!(s.ok(&["plugin", "list"]).contains("no plugins installed"));
}

#[test]
fn a_good_plugin_passes_and_nothing_is_installed() {
    let s = Sandbox::new();
    let file = wasm("hello");
    let out = s.ok(&["plugin", "check", file.to_str().unwrap()]);
    assert_eq!(
        out,
        format!(
            "ok: {}: hello 0.1.0 (plugin), stackhost:host@0.1.1, requests exec, fs; unsigned\n",
            file.display()
        )
    );
    let json = check_json(&s, &file, 0);
    assert_eq!(json["ok"], true);
    assert_eq!(json["problems"], serde_json::json!([]));
    assert_eq!(json["plugin"]["name"], "hello");
    assert!(
        json["imports"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("stackhost:host/exec@0.1.1")),
        "{json:#}"
    );
    assert_nothing_installed(&s);
}

#[test]
fn root_equivalent_grants_are_warned_about_but_pass() {
    let s = Sandbox::new();
    let file = wasm("argv-grants");
    let out = s.ok(&["plugin", "check", file.to_str().unwrap()]);
    let why = "is equivalent to root on the node: any arguments (an argv prefix: it takes any \
               further arguments)";
    let warnings: Vec<String> = ["touch -m", "date", "docker", "ls -d", "date -u"]
        .iter()
        .map(|p| format!("`{p} {{args...}}` {why}"))
        .collect();
    let text: String = warnings
        .iter()
        .map(|w| format!("  warning: {w}\n"))
        .collect();
    assert!(
        out.ends_with(&format!("requests exec; unsigned\n{text}")),
        "{out}"
    );
    let json = check_json(&s, &file, 0);
    assert_eq!(json["warnings"], serde_json::json!(warnings));
}

#[test]
fn an_import_the_manifest_does_not_request_fails_naming_it() {
    let s = Sandbox::new();
    let file = wasm("sneaky");
    let out = s.fails(1, &["plugin", "check", file.to_str().unwrap()]);
    assert_eq!(
        out,
        format!(
            "{}: 1 problem:\n  - plugin `sneaky` imports `stackhost:host/fs@0.1.1` but its \
             manifest does not request `fs`; add [capabilities.fs] with a reason to its \
             stackhost.toml\n  warning: `echo {{args...}}` is equivalent to root on the node: any \
             arguments (an argv prefix: it takes any further arguments)\n",
            file.display()
        )
    );
    assert_nothing_installed(&s);
}

#[test]
fn a_component_without_a_manifest_fails_naming_it() {
    let s = Sandbox::new();
    let file = wasm("nomanifest");
    let out = s.fails(1, &["plugin", "check", file.to_str().unwrap()]);
    assert!(
        out.contains(
            ": 1 problem:\n  - the component carries no `stackhost-manifest` section; plugins \
             declare their manifest with stackhost_sdk::export_plugin! (see wit/MANIFEST.md)\n"
        ),
        "{out}"
    );
}

#[test]
fn an_incompatible_wit_version_is_named_once() {
    let s = Sandbox::new();
    let json = check_json(&s, &wasm("future-wit"), 1);
    assert_eq!(
        json["problems"],
        serde_json::json!([
            "plugin `future-wit` targets stackhost:host@1.0.0, but this host serves \
             stackhost:host@0.1.1; the versions are incompatible (rebuild the plugin against \
             stackhost:host@0.1.1)"
        ])
    );
}

#[test]
fn files_that_are_not_components_fail_clearly() {
    let s = Sandbox::new();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("plugin.wasm");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    let out = s.fails(1, &["plugin", "check", script.to_str().unwrap()]);
    assert_eq!(
        out,
        format!(
            "{}: 1 problem:\n  - not a WebAssembly file (it does not start with the `\\0asm` \
             magic number)\n",
            script.display()
        )
    );
    let module = dir.path().join("core.wasm");
    std::fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
    let out = s.fails(1, &["plugin", "check", module.to_str().unwrap()]);
    assert!(
        out.contains("this is a core WebAssembly module, not a component; build the plugin for `wasm32-wasip2`"),
        "{out}"
    );
    let missing = dir.path().join("missing.wasm");
    let out = s.fails(1, &["plugin", "check", missing.to_str().unwrap()]);
    assert!(
        out.contains(&format!(
            "  - cannot read {}: No such file",
            missing.display()
        )),
        "{out}"
    );
}

#[test]
fn every_problem_is_listed_at_once() {
    let s = Sandbox::new();
    let dir = tempfile::tempdir().unwrap();
    // The argv-grants component with its manifest edited in place (same
    // length, so the binary stays well formed): `date` granted twice.
    let file = copy(dir.path(), "argv-grants", "twice.wasm");
    let bytes = std::fs::read(&file).unwrap();
    let from = br#"programs = [["touch", "-m"], "date", "docker"]"#;
    let to = br#"programs = [["touch", "-m"], "date", "date"  ]"#;
    assert_eq!(from.len(), to.len());
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .expect("the manifest is in the file verbatim");
    let mut edited = bytes.clone();
    edited[at..at + to.len()].copy_from_slice(to);
    std::fs::write(&file, &edited).unwrap();
    // ... and a signature beside it that is not a signature.
    std::fs::write(dir.path().join("twice.wasm.minisig"), "not a signature\n").unwrap();
    let out = s.fails(1, &["plugin", "check", file.to_str().unwrap()]);
    assert!(
        out.starts_with(&format!(
            "{}: 2 problems:\n  - the manifest is not valid: exec pattern `date` is listed twice \
             in `programs`\n  - the signature {}.minisig does not verify against the trusted \
             keys: not a minisign signature",
            file.display(),
            file.display()
        )),
        "{out}"
    );
    let json = check_json(&s, &file, 1);
    assert_eq!(json["problems"].as_array().unwrap().len(), 2, "{json:#}");
    assert_eq!(json["plugin"], serde_json::Value::Null);
    // Without the signature, only the manifest.
    std::fs::remove_file(dir.path().join("twice.wasm.minisig")).unwrap();
    assert_eq!(
        check_json(&s, &file, 1)["problems"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Sneaky with a bad signature: its import and the signature.
    let sneaky = copy(dir.path(), "sneaky", "sneaky.wasm");
    std::fs::write(dir.path().join("sneaky.wasm.minisig"), "garbage").unwrap();
    let json = check_json(&s, &sneaky, 1);
    let problems: Vec<&str> = json["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems[0].contains("does not request `fs`"),
        "{problems:#?}"
    );
    assert!(
        problems[1].contains("sneaky.wasm.minisig does not verify"),
        "{problems:#?}"
    );
    assert_nothing_installed(&s);
}

#[test]
fn a_signature_beside_the_file_must_verify_against_a_trusted_key() {
    let s = Sandbox::new();
    let dir = tempfile::tempdir().unwrap();
    let file = copy(dir.path(), "hello", "hello.wasm");
    sign(&file);
    // Signed, but by a key the operator does not trust.
    let json = check_json(&s, &file, 1);
    let problem = json["problems"][0].as_str().unwrap();
    assert!(
        problem.starts_with(&format!(
            "the signature {}.minisig does not verify against the trusted keys: signed by key ",
            file.display()
        )) && problem.ends_with(
            ", which is not trusted (trust the vendor's key with `stackhost keys trust FILE.pub`)"
        ),
        "{problem}"
    );
    s.ok(&[
        "keys",
        "trust",
        repo().join("tests/keys/test-vendor.pub").to_str().unwrap(),
    ]);
    let out = s.ok(&["plugin", "check", file.to_str().unwrap()]);
    let key = check_json(&s, &file, 0)["signed_by"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        out.ends_with(&format!("requests exec, fs; signed by key {key}\n")),
        "{out}"
    );
    // The file changed after it was signed.
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.extend_from_slice(b"\0\x05extra");
    let tampered = dir.path().join("tampered.wasm");
    std::fs::write(&tampered, &bytes).unwrap();
    std::fs::copy(
        dir.path().join("hello.wasm.minisig"),
        dir.path().join("tampered.wasm.minisig"),
    )
    .unwrap();
    let json = check_json(&s, &tampered, 1);
    assert!(
        json["problems"].as_array().unwrap().iter().any(|p| p
            .as_str()
            .unwrap()
            .contains("does not match the file: the file or its signature was altered")),
        "{json:#}"
    );
}

#[test]
fn help_has_an_example() {
    let s = Sandbox::new();
    let help = s.ok(&["plugin", "check", "--help"]);
    assert!(
        help.contains("stackhost plugin check target/wasm32-wasip2/release/disk_report.wasm"),
        "{help}"
    );
    assert!(help.contains("--json"), "{help}");
}

#[test]
fn a_request_never_imported_warns_and_a_wit_older_than_the_imports_fails() {
    // The forge runner imports exec (and nodes, log) at 0.1.1; its manifest
    // here claims 0.1.0 and also requests fs, which it never imports.
    let s = Sandbox::new();
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/forge/stackhost.toml"),
    )
    .unwrap()
    .split("# Room for")
    .next()
    .unwrap()
    .replace("wit = \"0.1.1\"", "wit = \"0.1.0\"")
    .replace(
        "[capabilities.exec]",
        "[capabilities.fs]\nreason = \"reads its settings\"\nread = [\"/etc/forge\"]\n\n[capabilities.exec]",
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("forge.wasm");
    std::fs::write(&file, support::forge(&manifest)).unwrap();
    let json = check_json(&s, &file, 1);
    assert_eq!(
        json["problems"],
        serde_json::json!([
            "plugin `forge` imports `stackhost:host/types@0.1.1`, `stackhost:host/nodes@0.1.1`, \
             `stackhost:host/exec@0.1.1`, newer than the `wit = \"0.1.0\"` its manifest \
             declares; set `wit` to the version the component was built against"
        ]),
        "{json:#}"
    );
    assert_eq!(
        json["warnings"],
        serde_json::json!([
            "requests `fs`, but the component never imports stackhost:host/fs: a grant it \
             cannot use (drop [capabilities.fs])"
        ]),
        "{json:#}"
    );
    // Install refuses it the same way.
    let out = s.fails(1, &["plugin", "install", "--yes", file.to_str().unwrap()]);
    assert!(out.contains("newer than the `wit = \"0.1.0\"`"), "{out}");
    assert_nothing_installed(&s);
}
