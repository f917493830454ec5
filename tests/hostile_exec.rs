//! A hostile plugin against `exec` and the terminal (fixture
//! `exec-hostile`), locally and over SSH on one shared test cluster:
//! environment names outside the allowlist, users outside the grant, NUL
//! bytes, background processes that outlive a timeout or the run's wall
//! clock, more concurrent steps than sshd's MaxSessions, a connection lost
//! mid-step, a capped capture passed off as whole, and terminal escapes in
//! every text a plugin controls.

mod support;

#[path = "support/cluster.rs"]
mod cluster;

use cluster::TestCluster;
use serde_json::Value;
use stackhost::cluster::NodeError;
use stackhost::cluster::ssh::{HANDSHAKES, SshNode, SshOptions, SshTarget};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use support::{Sandbox, only_step, refs, wasm};

/// The test cluster every test of this file shares: node 1 for most
/// tests, node 2 only for the lost-connection test (it cuts every SSH
/// connection to its node). Removed when the test binary exits.
fn cluster() -> &'static TestCluster {
    static CLUSTER: OnceLock<TestCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let c = TestCluster::up(2, "hostile-exec");
        c.remove_at_exit();
        c
    })
}

/// A sandbox with the fixture installed (everything it requests granted).
fn sandbox() -> Sandbox {
    let s = Sandbox::new();
    s.install("exec-hostile");
    s
}

/// `run exec-hostile exec ARGS --json` on the local node (options first,
/// then `--` before a program whose arguments start with `-`).
fn local(s: &Sandbox, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["exec-hostile", "exec"];
    all.extend_from_slice(args);
    s.report(&all)
}

/// `run exec-hostile exec ARGS --json` on node `i` of the cluster.
fn remote(s: &Sandbox, i: usize, args: &[&str]) -> (i32, Value) {
    let c = cluster();
    let node = c.node(i);
    let mut all = vec!["exec-hostile", "exec", "--nodes", node.as_str()];
    all.extend_from_slice(args);
    s.report(&refs(&c.args(&all)))
}

/// Every step of a report: (status, message).
fn steps(r: &Value) -> Vec<(String, String)> {
    r["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .flat_map(|p| p["steps"].as_array().expect("steps"))
        .map(|s| {
            (
                s["status"].as_str().unwrap().to_string(),
                s["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The one step's message, which must have `status`.
fn message(code_and_report: (i32, Value), status: &str) -> String {
    let (code, r) = code_and_report;
    let (got, message) = only_step(&r);
    assert_eq!(got, status, "{r:#}");
    assert_eq!(
        code,
        if status == "failed" || status == "unreachable" {
            3
        } else {
            0
        }
    );
    message
}

/// Sorted lines, for environments whose order differs between nodes.
fn sorted_lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    lines
}

/// Process command lines on the local machine that hold `marker`.
fn local_processes(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline"))
            && String::from_utf8_lossy(&cmdline).contains(marker)
        {
            found.push(String::from_utf8_lossy(&cmdline).replace('\0', " "));
        }
    }
    found
}

/// Processes on node `i` whose command line matches `pattern` (a pgrep
/// regex written so that it does not match the pgrep line itself).
fn node_processes(i: usize, pattern: &str) -> String {
    cluster().sh(i, &format!("pgrep -af '{pattern}' || true"))
}

/// Wait up to five seconds for `check` to come back empty; its last answer.
fn settles<T: Default + PartialEq + std::fmt::Debug>(mut check: impl FnMut() -> T) -> T {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = check();
        if now == T::default() || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A marker no other process has: a sleep duration of 300.<pid><n>.
fn marker(n: u32) -> String {
    format!("300.{}{n}", std::process::id())
}

// ---------------------------------------------------------------- env

#[test]
fn only_allowlisted_and_granted_env_names_reach_a_program() {
    let s = sandbox();
    let env = [
        "printenv",
        "--env-name",
        "LANG",
        "--env-value",
        "C.UTF-8",
        "--env-name",
        "STACKHOST_TEST_VAR",
        "--env-value",
        "granted",
        "--env-name",
        "https_proxy",
        "--env-value",
        "http://proxy:3128",
    ];
    let want = [
        "LANG=C.UTF-8",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "STACKHOST_TEST_VAR=granted",
        "https_proxy=http://proxy:3128",
    ];
    let here = message(local(&s, &env), "ok");
    assert_eq!(sorted_lines(&here), want);
    let there = message(remote(&s, 1, &env), "ok");
    assert_eq!(sorted_lines(&there), want, "the same over SSH");

    for (name, why) in [
        (
            "GCONV_PATH",
            "is not allowed for exec (it changes which code a program loads or runs)",
        ),
        ("PERL5OPT", "is not allowed for exec"),
        ("NODE_OPTIONS", "is not allowed for exec"),
        ("TAR_OPTIONS", "is not allowed for exec"),
        ("LD_PRELOAD", "is not allowed for exec"),
        ("PATH", "is not allowed for exec (the host sets PATH itself"),
        (
            "PGPASSFILE",
            "is not in the exec grant (exec env: STACKHOST_TEST_VAR; always allowed: LANG, LC_*, TZ, \
             DEBIAN_FRONTEND, http_proxy, https_proxy, no_proxy, HTTP_PROXY, HTTPS_PROXY, NO_PROXY)",
        ),
    ] {
        for run in [local, |s: &Sandbox, a: &[&str]| remote(s, 1, a)] {
            let m = message(
                run(
                    &s,
                    &["printenv", "--env-name", name, "--env-value", "/tmp/x"],
                ),
                "failed",
            );
            assert!(
                m.contains(&format!(
                    "permission denied: environment variable `{name}` {why}"
                )),
                "{name}: {m}"
            );
        }
    }
    // A name with `=` would have become a second assignment on the remote
    // `env -i` line (this is how PATH was smuggled in); `%%` is bash's
    // exported-function syntax.
    for name in ["PATH=/tmp/evil:/usr/bin", "BASH_FUNC_id%%", "LANG PATH"] {
        let m = message(
            remote(
                &s,
                1,
                &[
                    "--env-name",
                    name,
                    "--env-value",
                    "() { echo owned; }",
                    "id",
                ],
            ),
            "failed",
        );
        assert!(
            m.contains(&format!(
                "invalid argument: environment variable name `{name}` is not valid for exec"
            )),
            "{name}: {m}"
        );
    }
}

#[test]
fn nul_bytes_are_refused_and_the_connection_lives_on() {
    let s = sandbox();
    for (place, want) in [
        ("arg", "argument 2 of `printenv` contains a NUL byte"),
        (
            "program",
            "the program name of `printenv\\u{0}` contains a NUL byte",
        ),
        (
            "cwd",
            "the working directory of `printenv` contains a NUL byte",
        ),
        (
            "env",
            "the value of environment variable `LANG` contains a NUL byte",
        ),
    ] {
        // Three steps on one node over one connection: the first carries
        // the NUL and is refused, the other two still run.
        let (code, r) = remote(
            &s,
            1,
            &[
                "--nul",
                place,
                "--steps",
                "3",
                "--max-fail",
                "1",
                "--env-name",
                "LANG",
                "--env-value",
                "C",
                "printenv",
                "LANG",
            ],
        );
        let all = steps(&r);
        assert_eq!(code, 3, "{r:#}");
        let failed: Vec<_> = all.iter().filter(|(st, _)| st == "failed").collect();
        assert_eq!(failed.len(), 1, "{place}: {r:#}");
        assert!(
            failed[0].1.contains(&format!("invalid argument: {want}")),
            "{place}: {}",
            failed[0].1
        );
        let ok: Vec<_> = all.iter().filter(|(st, _)| st == "ok").collect();
        assert_eq!(ok.len(), 2, "{place}: {r:#}");
        assert!(ok.iter().all(|(_, m)| m == "C"), "{r:#}");
    }
}

// ---------------------------------------------------------------- users

#[test]
fn only_granted_users_can_be_asked_for() {
    let s = sandbox();
    for run in [local, |s: &Sandbox, a: &[&str]| remote(s, 1, a)] {
        let m = message(run(&s, &["--user", "root", "--", "id", "-un"]), "failed");
        assert!(
            m.contains("permission denied: exec as user `root` on node ")
                && m.contains("is outside the grant (exec users: nobody)"),
            "{m}"
        );
    }
    assert_eq!(
        message(
            remote(&s, 1, &["--user", "nobody", "--", "id", "-un"]),
            "ok"
        ),
        "nobody"
    );
    // No user: the connection's own user.
    assert_eq!(message(remote(&s, 1, &["--", "id", "-un"]), "ok"), "root");
}

#[test]
fn plugin_info_shows_the_users_and_env_granted() {
    let s = sandbox();
    let info = s.ok(&["plugin", "info", "exec-hostile"]);
    for needle in [
        "! exec     sh {args...} (as any of nobody): any arguments (an argv prefix: it takes any further arguments) — ",
        "! exec     printenv {args...} (as any of nobody): any arguments",
        "exec     programs given the environment variables STACKHOST_TEST_VAR — ",
    ] {
        assert!(info.contains(needle), "`{needle}` missing from:\n{info}");
    }
}

#[test]
fn a_manifest_granting_a_loader_variable_is_refused_at_install() {
    let s = Sandbox::new();
    let bytes = std::fs::read(wasm("exec-hostile")).unwrap();
    for (from, to, want) in [
        (
            "env = [\"STACKHOST_TEST_VAR\"]",
            "env = [\"LD_PRELOAD\"]",
            "exec env `LD_PRELOAD` cannot be granted: it changes which code a program loads or runs",
        ),
        (
            "env = [\"STACKHOST_TEST_VAR\"]",
            "env = [\"PATH\"]",
            "exec env `PATH` cannot be granted: the host sets PATH itself",
        ),
        (
            "users = [\"nobody\"]",
            "users = [\"-oroot\"]",
            "exec user `-oroot` is not a user name",
        ),
    ] {
        // Same length, so the component stays valid: TOML ignores the
        // trailing spaces.
        let to = format!("{to:<width$}", width = from.len());
        let at = bytes
            .windows(from.len())
            .position(|w| w == from.as_bytes())
            .expect("the manifest text is in the component");
        let mut patched = bytes.clone();
        patched[at..at + from.len()].copy_from_slice(to.as_bytes());
        let file = s.home.path().join("patched.wasm");
        std::fs::write(&file, &patched).unwrap();
        let out = s.fails(1, &["plugin", "install", "--yes", file.to_str().unwrap()]);
        assert!(out.contains(want), "{out}");
    }
}

// ---------------------------------------------------------------- process groups

#[test]
fn a_timeout_kills_the_whole_process_group_locally() {
    let s = sandbox();
    let mark = marker(1);
    let script = format!("sleep {mark} & sleep 30");
    let m = message(
        local(&s, &["--timeout-ms", "1000", "--", "sh", "-c", &script]),
        "failed",
    );
    assert!(
        m.contains("timeout: `sh` on node local ran past its timeout of 1s and was killed, with every process it started"),
        "{m}"
    );
    assert_eq!(settles(|| local_processes(&mark)), Vec::<String>::new());
}

#[test]
fn the_runs_wall_clock_kills_the_whole_process_group_locally() {
    let s = sandbox();
    let mark = marker(2);
    let script = format!("sleep {mark} & sleep 30");
    let m = message(
        local(&s, &["--timeout", "2s", "--", "sh", "-c", &script]),
        "failed",
    );
    assert!(m.contains("past its wall-clock limit (--timeout)"), "{m}");
    assert_eq!(settles(|| local_processes(&mark)), Vec::<String>::new());
}

#[test]
fn a_timeout_kills_the_whole_process_group_over_ssh() {
    let s = sandbox();
    let mark = marker(3);
    let script = format!("sleep {mark} & sleep 30");
    let m = message(
        remote(&s, 1, &["--timeout-ms", "1000", "--", "sh", "-c", &script]),
        "failed",
    );
    assert!(
        m.contains("ran past its timeout of 1s and was killed, with every process it started")
            && !m.contains("failed"),
        "{m}"
    );
    let pattern = format!("slee[p] {mark}");
    assert_eq!(settles(|| node_processes(1, &pattern)), "");
    // The same as another user, killed through sudo.
    let mark = marker(4);
    let script = format!("sleep {mark} & sleep 30");
    let m = message(
        remote(
            &s,
            1,
            &[
                "--timeout-ms",
                "1000",
                "--user",
                "nobody",
                "--",
                "sh",
                "-c",
                &script,
            ],
        ),
        "failed",
    );
    assert!(
        m.contains("was killed, with every process it started"),
        "{m}"
    );
    let pattern = format!("slee[p] {mark}");
    assert_eq!(settles(|| node_processes(1, &pattern)), "");
}

#[test]
fn a_bare_program_name_runs_by_its_absolute_path_in_the_fixed_path() {
    // argv[0] of the program as it runs: the file found in the host's fixed
    // PATH, not whatever `sh` the login's PATH would find first.
    let s = sandbox();
    let script = r#"tr '\000' ' ' < /proc/$$/cmdline"#;
    for (code, report) in [
        local(&s, &["--", "sh", "-c", script]),
        remote(&s, 1, &["--", "sh", "-c", script]),
    ] {
        assert_eq!(code, 0, "{report}");
        let (status, message) = only_step(&report);
        assert_eq!(status, "ok");
        let argv0 = message.split(' ').next().unwrap_or_default();
        assert!(
            argv0.starts_with('/') && argv0.ends_with("/sh") && message.contains(" -c "),
            "{message}"
        );
    }
}

/// A child that leaves the process group (`setsid`) and a double fork
/// that does the same: both must still end with the program's timeout.
fn detached_script(mark: &str) -> String {
    format!("setsid sleep {mark}1 & (setsid sh -c 'sleep {mark}2' &) ; sleep 30")
}

#[test]
fn a_timeout_kills_what_the_program_started_detached_locally() {
    let s = sandbox();
    let mark = marker(6);
    let script = detached_script(&mark);
    let m = message(
        local(&s, &["--timeout-ms", "1000", "--", "sh", "-c", &script]),
        "failed",
    );
    assert!(
        m.contains("was killed, with every process it started"),
        "{m}"
    );
    assert_eq!(settles(|| local_processes(&mark)), Vec::<String>::new());
    // The run's wall clock too.
    let mark = marker(7);
    let script = detached_script(&mark);
    let m = message(
        local(&s, &["--timeout", "2s", "--", "sh", "-c", &script]),
        "failed",
    );
    assert!(m.contains("past its wall-clock limit (--timeout)"), "{m}");
    assert_eq!(settles(|| local_processes(&mark)), Vec::<String>::new());
}

#[test]
fn a_timeout_kills_what_the_program_started_detached_over_ssh() {
    let s = sandbox();
    let mark = marker(8);
    let script = detached_script(&mark);
    let m = message(
        remote(&s, 1, &["--timeout-ms", "1000", "--", "sh", "-c", &script]),
        "failed",
    );
    assert!(
        m.contains("was killed, with every process it started"),
        "{m}"
    );
    let pattern = format!("slee[p] {mark}");
    assert_eq!(settles(|| node_processes(1, &pattern)), "");
}

#[test]
fn a_daemon_started_by_a_program_that_ends_lives_on() {
    // How an init script's `start` works (start-stop-daemon --background):
    // a program that exits normally leaves what it detached running.
    let s = sandbox();
    let mark = marker(9);
    let (code, report) = remote(
        &s,
        1,
        &[
            "--",
            "sh",
            "-c",
            &format!("setsid sleep {mark} </dev/null >/dev/null 2>&1 &"),
        ],
    );
    assert_eq!(code, 0, "{report}");
    let pattern = format!("slee[p] {mark}");
    assert!(node_processes(1, &pattern).contains(&mark));
    cluster().sh(1, &format!("pkill -f 'slee[p] {mark}' || true"));
}

#[test]
fn the_runs_wall_clock_kills_the_whole_process_group_over_ssh() {
    let s = sandbox();
    let mark = marker(5);
    let script = format!("sleep {mark} & sleep 30");
    let m = message(
        remote(&s, 1, &["--timeout", "3s", "--", "sh", "-c", &script]),
        "failed",
    );
    assert!(m.contains("past its wall-clock limit (--timeout)"), "{m}");
    let pattern = format!("slee[p] {mark}");
    assert_eq!(settles(|| node_processes(1, &pattern)), "");
    assert_eq!(settles(|| node_processes(1, "^sleep 30$")), "");
}

// ---------------------------------------------------------------- channels

#[test]
fn twenty_concurrent_steps_share_one_connection() {
    let s = sandbox();
    let (code, r) = remote(
        &s,
        1,
        &["--steps", "20", "--max-in-flight", "20", "sleep", "1"],
    );
    let all = steps(&r);
    assert_eq!(all.len(), 20, "{r:#}");
    assert!(all.iter().all(|(st, _)| st == "ok"), "{r:#}");
    assert_eq!(code, 0);
}

/// Short steps back to back: each open follows another channel's close,
/// which sshd may not have collected yet (it refused such opens, "Failed to
/// open channel (ConnectFailed)", three runs in three under load).
#[test]
fn sixty_short_steps_reuse_channels_as_sshd_frees_them() {
    let s = sandbox();
    let (code, r) = remote(&s, 1, &["--steps", "60", "--max-in-flight", "60", "true"]);
    let all = steps(&r);
    assert_eq!(all.len(), 60, "{r:#}");
    assert!(all.iter().all(|(st, _)| st == "ok"), "{r:#}");
    assert_eq!(code, 0);
}

/// The first node of the cluster reached directly, without a plugin.
fn ssh_node(i: usize) -> SshNode {
    let c = cluster();
    let port = c.docker(&["port", &c.node(i), "22/tcp"]);
    let port: u16 = port
        .lines()
        .next()
        .and_then(|l| l.rsplit(':').next())
        .and_then(|p| p.trim().parse().ok())
        .expect("published ssh port");
    SshNode::new(
        &c.node(i),
        SshTarget {
            address: "127.0.0.1".into(),
            port,
            user: "root".into(),
            identity: Some(c.path("id_ed25519")),
            sudo: false,
        },
        Arc::new(SshOptions {
            known_hosts: c.path("known_hosts"),
            accept_new_host_keys: false,
            connect_timeout: Duration::from_secs(10),
            handshakes: SshOptions::handshake_limit(HANDSHAKES),
        }),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_script_never_passes_off_a_capped_capture_as_whole() {
    let node = ssh_node(1);
    let small = node
        .script("read", "head -c 1000 /dev/zero", &[], None)
        .await
        .unwrap();
    assert_eq!(small.len(), 1000, "exactly the program's own output");
    let err = node
        .script("read", "head -c 10485760 /dev/zero", &["/dev/zero"], None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, NodeError::Io(m) if m.contains("read `/dev/zero` on node")
            && m.contains("its output passed the capture limit of 4 MiB and was cut")),
        "{err:?}"
    );
    // A NUL below the plugin's checks is refused by the transport too, and
    // the connection goes on.
    let err = node
        .script("read", "cat", &["a\0b"], None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, NodeError::InvalidArgument(m) if m.contains("contains a NUL byte")),
        "{err:?}"
    );
    let out = node.script("echo", "echo alive", &[], None).await.unwrap();
    assert_eq!(out, b"alive\n");
}

// ---------------------------------------------------------------- lost connection

/// Cut every SSH connection to node `i` (its per-connection sshd
/// processes) once `running` shows up there.
fn cut_connections_when(i: usize, running: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while node_processes(i, running).is_empty() {
        assert!(
            Instant::now() < deadline,
            "`{running}` never started on node {i}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    cluster().sh(i, "pkill -f '[s]shd:.*@notty'");
}

#[test]
fn a_lost_connection_is_unreachable_not_a_result() {
    let c = cluster();
    let s = sandbox();
    let args = c.args(&[
        "run",
        "exec-hostile",
        "exec",
        "sleep",
        "30",
        "--nodes",
        &c.node(2),
        "--json",
    ]);
    let child = Command::new(env!("CARGO_BIN_EXE_stackhost"))
        .args(&args)
        .env("STACKHOST_HOME", s.home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The host runs `sleep` by the path it pinned it to.
    cut_connections_when(2, "^(/usr)?/bin/sleep 30$");
    let out = child.wait_with_output().unwrap();
    let json: Value = serde_json::from_slice(&out.stdout).expect("json report");
    let m = message(
        (out.status.code().unwrap(), json["report"].clone()),
        "unreachable",
    );
    assert!(
        m.contains(&format!("unreachable: node {} (root@127.0.0.1:", c.node(2)))
            && m.contains("the connection was lost while `sleep` ran"),
        "{m}"
    );
    c.sh(2, "pkill -f '^(/usr)?/bin/sleep 30$' || true");

    // A stream (archive, pg_dump) is an error too, so no caller can take a
    // cut stream for a whole one.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let node = ssh_node(2);
    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    let piped = rt.spawn(async move {
        let r = node
            .pipe("exec sh -c 'echo started; exec sleep 31'", None, Some(tx))
            .await;
        drop(node);
        r
    });
    let first = rt.block_on(rx.recv()).expect("the stream started");
    assert_eq!(
        first, b"started\n",
        "the group id line is not part of the stream"
    );
    cut_connections_when(2, "^sleep 31$");
    let err = rt.block_on(piped).unwrap().unwrap_err();
    assert!(
        matches!(&err, NodeError::Unreachable(m) if m.contains("the connection was lost while a streaming command ran")),
        "{err:?}"
    );
    c.sh(2, "pkill -f '^sleep 31$' || true");
}

// ---------------------------------------------------------------- terminal text

/// Raw bytes a terminal would act on: ESC, CR (after the pty's own CRLF
/// line ends are taken out), and U+202E RIGHT-TO-LEFT OVERRIDE.
fn assert_inert(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes).replace("\r\n", "\n");
    assert!(
        !text.contains('\x1b'),
        "{what} printed a raw ESC:\n{text:?}"
    );
    assert!(!text.contains('\r'), "{what} printed a raw CR:\n{text:?}");
    assert!(
        !text.contains('\u{202e}'),
        "{what} printed a raw U+202E:\n{text:?}"
    );
    assert!(
        !text.contains('\u{7}'),
        "{what} printed a raw BEL:\n{text:?}"
    );
}

fn assert_escaped(what: &str, bytes: &[u8], needles: &[&str]) {
    assert_inert(what, bytes);
    let text = String::from_utf8_lossy(bytes);
    for needle in needles {
        assert!(
            text.contains(needle),
            "{what}: `{needle}` missing from:\n{text}"
        );
    }
}

const OSC: &str = "\\x1b]0;owned\\x07";
const CLEAR: &str = "\\x1b[2J";
const CR: &str = "\\x0d";
const RLO: &str = "\\u{202e}";

#[test]
fn plugin_text_is_escaped_on_the_terminal() {
    let s = sandbox();
    let info = s.run(&["plugin", "info", "exec-hostile"]);
    assert!(info.status.success());
    assert_escaped("plugin info", &info.stdout, &[OSC, CLEAR, CR, RLO]);
    let list = s.run(&["plugin", "list"]);
    assert_escaped("plugin list", &list.stdout, &[OSC, RLO]);
    let help = s.run(&["run", "exec-hostile", "--help"]);
    assert_escaped("run --help", &help.stdout, &[OSC, CLEAR]);
    let help = s.run(&["run", "exec-hostile", "say", "--help"]);
    assert_escaped(
        "run say --help",
        &help.stdout,
        &[
            &format!("Step messages, events and warnings full of terminal escapes{CR}{OSC}"),
            "\\x1b[31mred\\x1b[0m",
            RLO,
        ],
    );
    let help = s.run(&["run", "exec-hostile", "exec", "--help"]);
    assert_escaped("run exec --help", &help.stdout, &[CLEAR, "[default: 1]"]);

    let say = s.run(&["run", "exec-hostile", "say", "--verbose"]);
    assert!(say.status.success(), "{say:?}");
    assert_escaped(
        "run say",
        &say.stdout,
        &[
            &format!("message {OSC}{CLEAR}{CR}over{RLO}desrever\nsecond line {OSC}"),
            &format!("info event {OSC}"),
            &format!("warning event {OSC}"),
            &format!("plan warning {OSC}"),
            &format!("phase phase {OSC}"),
            &format!("step {OSC}"),
        ],
    );
    let fail = s.run(&["run", "exec-hostile", "fail"]);
    assert_eq!(fail.status.code(), Some(3));
    assert_escaped(
        "run fail",
        &fail.stdout,
        &[&format!("failure {OSC}{CLEAR}{CR}over{RLO}")],
    );
    let shown = s.run(&["runs", "show", "2"]);
    assert_escaped("runs show", &shown.stdout, &[&format!("failure {OSC}")]);
    let listed = s.run(&["runs", "list"]);
    assert_inert("runs list", &listed.stdout);
    // Info lines are shown with --verbose only; warnings always.
    for flags in [&[][..], &["-q"][..]] {
        let mut args = vec!["run", "exec-hostile", "say"];
        args.extend_from_slice(flags);
        let plain = String::from_utf8(s.run(&args).stdout).unwrap();
        assert!(
            plain.contains("warning event")
                && !plain.contains("info event")
                && plain.contains(
                    "\n1 info or debug line(s) from the plugin not shown: --verbose shows them \
                     (--json always has them)\n"
                ),
            "{flags:?}: {plain}"
        );
    }
    // --json stays exact: serde escapes the control characters itself (a
    // bidi mark is valid JSON text and stays as it is).
    let json = String::from_utf8(s.run(&["run", "exec-hostile", "say", "--json"]).stdout).unwrap();
    assert!(!json.contains(['\x1b', '\r', '\x07']), "{json}");
    assert!(
        json.contains("\\u001b]0;owned\\u0007\\u001b[2J\\rover\u{202e}"),
        "{json}"
    );
}

#[test]
fn the_install_prompt_is_escaped_on_a_real_terminal() {
    let s = Sandbox::new();
    // A pseudo-terminal, so it asks; the answer is no.
    let out = s.install_on_terminal(&wasm("exec-hostile"), "n");
    // The host's own colours (bold titles, red root lines) are the only
    // escape sequences allowed through; whatever the plugin wrote is
    // shown escaped.
    let mut shown = String::from_utf8_lossy(&out.stdout).into_owned();
    for sgr in ["\x1b[1m", "\x1b[31m", "\x1b[0m"] {
        shown = shown.replace(sgr, "");
    }
    assert_escaped(
        "the install prompt",
        shown.as_bytes(),
        &[
            "exec-hostile 0.1.0 requests:",
            &format!(
                "! exec     sh {{args...}} (as any of nobody): any arguments (an argv prefix: it takes any further arguments) — runs what it is told {OSC}{CR}{RLO}, for the hostile-exec tests"
            ),
            "grant exec? [y/N]",
        ],
    );
}
