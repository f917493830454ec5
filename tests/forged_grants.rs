//! Every first-party plugin's exec grant, held by a forged component: the
//! `forge` runner (it runs whatever argv it is given, as whatever user)
//! with its manifest overwritten in place by the plugin's capabilities.
//! For each pattern of each manifest the test makes the calls an attacker
//! would: the pattern's argv with an argument appended, an option through
//! each word, number or choice hole, `..` and a newline through each path
//! hole, and (on the container node, where the test may plant one) a
//! symlink out of a directory the grant names. Each is refused, naming the
//! exec grant. The calls run under `--dry-run`, so one that were wrongly
//! allowed would be recorded, not run, and fail the test by saying so.

mod support;

#[path = "support/cluster.rs"]
mod cluster;

use cluster::TestCluster;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use support::{Sandbox, only_step, refs};

/// The first-party plugins and example vendor patches whose manifests
/// hold exact exec patterns.
const PLUGINS: &[&str] = &[
    "backup",
    "docker-image",
    "hello",
    "nagios",
    "newrelic",
    "os-update",
    "patch",
    "quota",
    "relocate",
    "roles",
    "ssh-keys",
    "vendor/aok-endpoint-fix",
    "vendor/logs-endpoint-fix",
];

fn cluster() -> &'static TestCluster {
    static CLUSTER: OnceLock<TestCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let c = TestCluster::up(1, "forged-grants");
        c.remove_at_exit();
        c
    })
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the host crate is in the repository")
        .to_path_buf()
}

/// `plugin`'s manifest with its commands replaced by the forge runner's
/// `exec`, as TOML; `None` when it grants no exact exec patterns.
fn forged_manifest(plugin: &str) -> Option<(String, toml::Table)> {
    let text = std::fs::read_to_string(repo().join("plugins").join(plugin).join("stackhost.toml"))
        .expect("the plugin's manifest");
    let mut m: toml::Table = toml::from_str(&text).expect("the manifest parses");
    let caps = m.get_mut("capabilities")?.as_table_mut()?;
    caps.get("exec")?.get("run")?.as_array()?;
    // The forger picks its own roles: every grant on every node.
    for (_, section) in caps.iter_mut() {
        if let Some(t) = section.as_table_mut() {
            t.remove("roles");
        }
    }
    let forge: toml::Table = toml::from_str(
        &std::fs::read_to_string(repo().join("tests/fixtures/forge/stackhost.toml")).unwrap(),
    )
    .unwrap();
    m.insert("command".into(), forge["command"].clone());
    m.insert("kind".into(), "plugin".into());
    // Paths the plugin's own commands take from the operator are not given
    // here: the forged command has none.
    Some((m["name"].as_str().unwrap().to_string(), m))
}

/// One hole or literal of a pattern, as the manifest writes it.
fn holes(element: &str) -> Option<(&str, &str)> {
    let open = element.rfind('{')?;
    if element[open..].starts_with("{{") || !element.ends_with('}') || element.ends_with("}}") {
        return None;
    }
    Some((&element[..open], &element[open + 1..element.len() - 1]))
}

/// A value each hole takes (paths are not checked until the node resolves
/// them, so any path of the grant's form will do).
fn fill(hole: &str, caps: &toml::Table) -> String {
    let fs = caps.get("fs");
    let first = |key: &str| {
        fs.and_then(|f| f.get(key))
            .and_then(|l| l.as_array())
            .and_then(|l| l.first())
            .and_then(|p| p.as_str())
            .map(str::to_string)
    };
    match hole {
        "path:read" => first("read")
            .or_else(|| first("write"))
            .unwrap_or("/var".into()),
        "path:write" => first("write").unwrap_or("/var".into()),
        "mount" => "/".into(),
        "int" => "1".into(),
        "size" => "1M".into(),
        "node" => "local".into(),
        "role" => "core".into(),
        h if h.starts_with("choice:") => h["choice:".len()..].split('|').next().unwrap().into(),
        _ => "stackhost".into(),
    }
}

/// A pattern's argv with every hole filled, `{{`/`}}` undoubled.
fn filled(argv: &[String], caps: &toml::Table) -> Vec<String> {
    argv.iter()
        .map(|e| match holes(e) {
            Some((lit, hole)) => format!(
                "{}{}",
                lit.replace("{{", "{").replace("}}", "}"),
                fill(hole, caps)
            ),
            None => e.replace("{{", "{").replace("}}", "}"),
        })
        .collect()
}

/// The attacks on one pattern: (what, argv).
fn attacks(argv: &[String], caps: &toml::Table) -> Vec<(String, Vec<String>)> {
    let base = filled(argv, caps);
    let mut out = Vec::new();
    let mut extra = base.clone();
    extra.push("/etc/shadow".into());
    out.push(("an appended argument".to_string(), extra));
    for (i, e) in argv.iter().enumerate() {
        let Some((lit, hole)) = holes(e) else {
            continue;
        };
        let lit = lit.replace("{{", "{").replace("}}", "}");
        let mut with = |what: &str, value: &str| {
            let mut a = base.clone();
            a[i] = format!("{lit}{value}");
            out.push((format!("{what} through `{e}`"), a));
        };
        if hole.starts_with("path") || hole == "mount" {
            let root = fill(hole, caps);
            with("`..`", &format!("{root}/../../../../etc/shadow"));
            with("a newline", &format!("{root}\n"));
            with("a relative path", "etc/shadow");
            if hole == "mount" {
                // A directory on no mount point of its own.
                with("a directory that is no mount point", "/proc/self");
            }
        } else {
            with("an option", "-oProxyCommand=/bin/sh");
            with("an option with `=`", "--output=/etc/shadow");
        }
    }
    out
}

/// The forged plugins, installed in `s`: (name, capabilities, patterns
/// as (argv, user)).
type Forged = Vec<(String, toml::Table, Vec<(Vec<String>, Option<String>)>)>;

fn install_forged(s: &Sandbox) -> Forged {
    let dir = tempfile::tempdir().unwrap();
    let mut out = Vec::new();
    for plugin in PLUGINS {
        let Some((name, manifest)) = forged_manifest(plugin) else {
            continue;
        };
        let file = dir.path().join(format!("{name}.wasm"));
        std::fs::write(&file, support::forge(&toml::to_string(&manifest).unwrap())).unwrap();
        s.ok(&["plugin", "install", "--yes", file.to_str().unwrap()]);
        let caps = manifest["capabilities"].as_table().unwrap().clone();
        let patterns = caps["exec"]["run"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let argv = e["argv"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|w| w.as_str().unwrap().to_string())
                    .collect();
                (
                    argv,
                    e.get("user").and_then(|u| u.as_str()).map(String::from),
                )
            })
            .collect();
        out.push((name, caps, patterns));
    }
    assert!(
        out.len() >= 8,
        "only {} first-party manifests forged",
        out.len()
    );
    out
}

/// Run `argv` as `plugin exec` under --dry-run (on `node`, when given):
/// (exit code, step status, message).
fn run(
    s: &Sandbox,
    plugin: &str,
    user: Option<&str>,
    argv: &[String],
    node: Option<&str>,
) -> (i32, String, String) {
    let mut all: Vec<String> = vec![plugin.into(), "exec".into(), "--dry-run".into()];
    if let Some(u) = user {
        all.extend(["--as-user".into(), u.into()]);
    }
    let (code, report): (i32, Value) = match node {
        None => {
            all.push("--".into());
            all.extend(argv.iter().cloned());
            s.report(&refs(&all))
        }
        Some(n) => {
            all.extend(["--nodes".into(), n.into(), "--".into()]);
            all.extend(argv.iter().cloned());
            s.report(&refs(&cluster().args(&refs(&all))))
        }
    };
    let (status, message) = only_step(&report);
    (code, status, message)
}

fn assert_refused(
    s: &Sandbox,
    plugin: &str,
    user: Option<&str>,
    what: &str,
    argv: &[String],
    node: Option<&str>,
) {
    let (code, status, message) = run(s, plugin, user, argv, node);
    assert!(
        code == 3
            && status == "failed"
            && message.starts_with("permission denied: ")
            && message.contains("exec grant"),
        "{plugin}: {what} {argv:?} (as {user:?}) on {node:?} was not refused naming the grant: \
         exit {code}, {status}: {message}"
    );
}

#[test]
fn every_first_party_pattern_refuses_what_it_does_not_name_locally() {
    let s = Sandbox::new();
    let mut tried = 0;
    for (name, caps, patterns) in install_forged(&s) {
        for (argv, user) in &patterns {
            for (what, attack) in attacks(argv, &caps) {
                assert_refused(&s, &name, user.as_deref(), &what, &attack, None);
                tried += 1;
            }
        }
    }
    assert!(tried > 100, "only {tried} attacks");
}

#[test]
fn every_first_party_path_hole_refuses_a_symlink_out_on_a_node() {
    let s = Sandbox::new();
    let c = cluster();
    let node = c.node(1);
    let mut tried = 0;
    for (name, caps, patterns) in install_forged(&s) {
        for (argv, user) in &patterns {
            for (i, e) in argv.iter().enumerate() {
                let Some((lit, hole)) = holes(e) else {
                    continue;
                };
                if !hole.starts_with("path") {
                    continue;
                }
                // A link planted in the directory the hole resolves in,
                // out to a file no grant names.
                let root = fill(hole, &caps);
                let link = format!("{root}/stackhost-forged-link");
                c.sh(
                    1,
                    &format!(
                        "if [ -f {root} ]; then exit 0; fi; mkdir -p {root} && echo secret > /tmp/stackhost-forged-secret \
                         && ln -sfn /tmp/stackhost-forged-secret {link}"
                    ),
                );
                if c.sh(1, &format!("test -L {link} && echo yes || true"))
                    .trim()
                    != "yes"
                {
                    // A file root: nothing can be planted beneath it.
                    continue;
                }
                let mut attack = filled(argv, &caps);
                attack[i] = format!("{lit}{link}");
                assert_refused(
                    &s,
                    &name,
                    user.as_deref(),
                    &format!("a symlink out through `{e}`"),
                    &attack,
                    Some(&node),
                );
                let mut extra = filled(argv, &caps);
                extra.push("/etc/shadow".into());
                assert_refused(
                    &s,
                    &name,
                    user.as_deref(),
                    "an appended argument",
                    &extra,
                    Some(&node),
                );
                tried += 1;
            }
        }
    }
    assert!(tried > 10, "only {tried} path holes tried");
}
