//! Exact argv patterns with typed holes (fixture `exact-grants`, whose
//! patterns are the kinds the first-party manifests use): a call matches
//! only argument for argument; extra arguments, options slipped through a
//! word hole, `..`, symlinks and control characters through a path hole
//! are refused naming the grant; a path hole hands the program the
//! resolved path. Locally and on a container node over SSH.

mod support;

#[path = "support/cluster.rs"]
mod cluster;

use cluster::TestCluster;
use serde_json::Value;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::OnceLock;
use support::{Sandbox, only_step, plain, refs};

const RO: &str = "/tmp/stackhost-exact/ro";
const RW: &str = "/tmp/stackhost-exact/rw";

fn cluster() -> &'static TestCluster {
    static CLUSTER: OnceLock<TestCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let c = TestCluster::up(1, "exact-grants");
        c.remove_at_exit();
        c
    })
}

fn sandbox() -> Sandbox {
    std::fs::create_dir_all(RO).unwrap();
    std::fs::create_dir_all(RW).unwrap();
    let s = Sandbox::new();
    s.install("exact-grants");
    s
}

/// Where a call runs: the local node, or node 1 of the container cluster.
#[derive(Clone, Copy, Debug)]
enum At {
    Local,
    Node,
}

fn run(s: &Sandbox, at: At, words: &[&str]) -> (i32, String, String) {
    let mut all = vec!["exact-grants", "exec"];
    let node;
    let (code, report): (i32, Value) = match at {
        At::Local => {
            all.push("--");
            all.extend_from_slice(words);
            s.report(&all)
        }
        At::Node => {
            let c = cluster();
            node = c.node(1);
            all.extend(["--nodes", node.as_str(), "--"]);
            all.extend_from_slice(words);
            s.report(&refs(&c.args(&all)))
        }
    };
    let (status, message) = only_step(&report);
    (code, status, message)
}

fn allowed(s: &Sandbox, at: At, words: &[&str]) -> String {
    let (code, status, message) = run(s, at, words);
    assert_eq!(
        (code, status.as_str()),
        (0, "ok"),
        "{at:?} {words:?}: {message}"
    );
    message
}

fn refused(s: &Sandbox, at: At, words: &[&str]) -> String {
    let (code, status, message) = run(s, at, words);
    assert_eq!(
        (code, status.as_str()),
        (3, "failed"),
        "{at:?} {words:?} was not refused: {message}"
    );
    assert!(message.starts_with("permission denied: "), "{message}");
    message
}

/// Make the grant roots on the node too, and a file outside them.
fn prepare(at: At) {
    match at {
        At::Local => {
            std::fs::write(format!("{RO}/data"), "granted\n").unwrap();
            std::fs::write("/tmp/stackhost-exact-secret", "secret\n").unwrap();
            let _ = std::fs::remove_file(format!("{RO}/out"));
            symlink("/tmp/stackhost-exact-secret", format!("{RO}/out")).unwrap();
        }
        At::Node => {
            cluster().sh(
                1,
                &format!(
                    "mkdir -p {RO} {RW} && echo granted > {RO}/data && echo secret > /tmp/stackhost-exact-secret \
                     && ln -sfn /tmp/stackhost-exact-secret {RO}/out"
                ),
            );
        }
    }
}

fn every_refusal(s: &Sandbox, at: At) {
    prepare(at);
    // Exactly the pattern's arguments: nothing appended.
    assert_eq!(allowed(s, at, &["cat", &format!("{RO}/data")]), "granted\n");
    let m = refused(s, at, &["cat", &format!("{RO}/data"), "/etc/shadow"]);
    assert!(
        m.contains("not in the exec grant") && m.contains("cat {path:read} (read-only)"),
        "{m}"
    );
    // Options through a word hole, or in place of a path.
    refused(s, at, &["echo", "--format=-n"]);
    refused(s, at, &["echo", "--format=a/b"]);
    refused(s, at, &["du", "-sxB1", "--files0-from=/etc/shadow"]);
    refused(s, at, &["ls", "-A", "--", "-R"]);
    // A choice takes only its literals; an int only digits; a role only a
    // role of the inventory.
    assert_eq!(allowed(s, at, &["echo", "-HUP", "1234"]), "-HUP 1234\n");
    refused(s, at, &["echo", "-HUP", "-1"]);
    refused(s, at, &["echo", "stackato-core", "restart"]);
    let m = refused(s, at, &["echo", "stackato-nosuchrole", "stop"]);
    assert!(
        m.contains("no node of the inventory holds the role `nosuchrole`"),
        "{m}"
    );
    refused(s, at, &["echo", "stackato-../../bin/sh", "stop"]);
    // Paths: `..`, a relative path, a control character, a symlink out.
    refused(s, at, &["cat", &format!("{RO}/../../../etc/passwd")]);
    refused(s, at, &["cat", "etc/passwd"]);
    refused(s, at, &["cat", &format!("{RO}/data\n")]);
    let m = refused(s, at, &["cat", &format!("{RO}/out")]);
    assert!(
        m.contains("matches the exec grant `cat {path:read}`") && m.contains("outside"),
        "{m}"
    );
    refused(s, at, &["cat", "/etc/passwd"]);
    // A write hole resolves inside the write grant only.
    refused(s, at, &["touch", &format!("{RO}/new")]);
    // The literal braces of a pattern match the text with single braces.
    assert_eq!(
        allowed(s, at, &["echo", "-f", "${Status}", "nagios4-core"]),
        "-f ${Status} nagios4-core\n"
    );
    refused(s, at, &["echo", "-f", "${{Status}}", "nagios4-core"]);
}

#[test]
fn exact_patterns_refuse_every_argument_they_do_not_name_locally() {
    let s = sandbox();
    every_refusal(&s, At::Local);
    // A role hole takes the local node's role; the write hole a new file.
    assert_eq!(
        allowed(&s, At::Local, &["echo", "stackato-core", "stop"]),
        "stackato-core stop\n"
    );
    let new = format!("{RW}/stamp-{}", std::process::id());
    allowed(&s, At::Local, &["touch", &new]);
    assert!(Path::new(&new).exists());
}

#[test]
fn exact_patterns_refuse_every_argument_they_do_not_name_over_ssh() {
    let s = sandbox();
    every_refusal(&s, At::Node);
    let new = format!("{RW}/stamp-remote");
    allowed(&s, At::Node, &["touch", &new]);
    assert_eq!(
        cluster()
            .sh(1, &format!("test -f {new} && echo yes"))
            .trim(),
        "yes"
    );
}

#[test]
fn a_path_hole_hands_the_program_the_resolved_path() {
    let s = sandbox();
    prepare(At::Local);
    let dir = format!("{RO}/real-{}", std::process::id());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(format!("{dir}/f"), "x").unwrap();
    let link = format!("{RO}/link-{}", std::process::id());
    let _ = std::fs::remove_file(&link);
    // Relative: RESOLVE_BENEATH follows a link that stays beneath the root,
    // never an absolute one.
    symlink(format!("real-{}", std::process::id()), &link).unwrap();
    // `ls -A -- LINK` lists the directory the link names, inside the grant.
    assert_eq!(allowed(&s, At::Local, &["ls", "-A", "--", &link]), "f\n");
    let (_, _, message) = run(&s, At::Local, &["du", "-sxB1", &link]);
    assert!(
        message.ends_with(&format!("\t{dir}\n")),
        "du was given the link, not {dir}: {message}"
    );
}

#[test]
fn the_prompt_shows_holes_and_no_root_flag_for_exact_patterns() {
    let s = sandbox();
    let info = s.ok(&["plugin", "info", "exact-grants"]);
    assert!(
        info.contains("runs, read-only (also under --dry-run):"),
        "{info}"
    );
    assert!(
        info.contains("exec     cat {path:read} — runs what the tests tell it to"),
        "{info}"
    );
    assert!(
        info.contains("exec     echo stackato-{role} {choice:stop|start} — stands in for service"),
        "{info}"
    );
    assert!(!info.contains("equivalent to root"), "{info}");
    let json: Value =
        serde_json::from_str(&s.ok(&["plugin", "info", "exact-grants", "--json"])).unwrap();
    let groups: Vec<&str> = json["requested"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["group"].as_str().unwrap())
        .collect();
    assert_eq!(
        groups,
        ["reads", "writes", "runs-read-only", "runs-and-changes"]
    );
}

#[test]
fn the_install_prompt_of_a_first_party_plugin_in_full() {
    let s = Sandbox::new();
    let out = s.install_on_terminal(&support::wasm("hello"), "y\ny");
    let raw = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    // On a terminal the titles are bold.
    assert!(raw.contains("\x1b[1mreads files:\x1b[0m"), "{raw}");
    let text = plain(&raw);
    let start = text.find("hello 0.1.0 requests:").expect("the prompt");
    let end = text.find("  grant exec? [y/N] ").expect("the question");
    assert!(text.contains("installed plugin hello"), "{text}");
    assert_eq!(
        &text[start..end],
        "hello 0.1.0 requests:
  reads files:
      fs       /etc/os-release — reads /etc/os-release and keeps its stamp file
  writes files:
      fs       /var/tmp/stackhost-hello — reads /etc/os-release and keeps its stamp file
  runs, read-only (also under --dry-run):
      exec     uname -srm — reports the kernel
  runs and changes the node:
      exec     touch {path:write} — marks the stamp directory
"
    );
}
