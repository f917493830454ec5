//! Remote nodes over real SSH (OpenSSH's sshd on a loopback port): exec
//! and fs behave as on the local node, grants hold, host keys are verified,
//! and an unreachable node is reported while the others go on.

mod support;

#[path = "support/sshd.rs"]
mod sshd;

use sshd::Sshd;
use std::time::{Duration, Instant};
use support::{Sandbox, only_step, refs, scratch_rw};

/// `args` with the inventory and the server's known_hosts after the command.
fn with_inventory(sshd: &Sshd, inv: &std::path::Path, args: &[&str]) -> Vec<String> {
    let flags = [
        "--inventory".to_string(),
        inv.display().to_string(),
        "--known-hosts".to_string(),
        sshd.path("known_hosts").display().to_string(),
    ];
    support::with_flags(args, &flags)
}

#[test]
fn exec_and_fs_over_ssh_behave_as_on_the_local_node() {
    let sshd = Sshd::start();
    let inv = sshd.inventory("remote-1", &["dea"], "");
    let s = Sandbox::new();
    s.install("hello");
    s.install("probe");

    let list = s.ok(&refs(&with_inventory(&sshd, &inv, &["node", "list"])));
    assert_eq!(list.trim(), "127.0.0.1 dea (remote-1)");

    let (code, r) = s.report(&refs(&with_inventory(&sshd, &inv, &["hello", "info"])));
    assert_eq!(code, 0, "{r:#}");
    let (local_code, local) = s.report(&["hello", "info"]);
    assert_eq!(local_code, 0);
    assert_eq!(
        only_step(&r).1,
        only_step(&local).1,
        "same machine, same answer over SSH"
    );
    assert_eq!(r["phases"][0]["steps"][0]["node"], "remote-1");

    let dir = scratch_rw();
    let file = dir.path().join("over-ssh.txt");
    let f = file.to_str().unwrap();
    let (code, r) = s.report(&refs(&with_inventory(
        &sshd,
        &inv,
        &["probe", "write", f, "written over ssh"],
    )));
    assert_eq!((code, only_step(&r).0.as_str()), (0, "changed"), "{r:#}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "written over ssh");
    let (_, r) = s.report(&refs(&with_inventory(&sshd, &inv, &["probe", "read", f])));
    assert_eq!(only_step(&r).1, "written over ssh");
    let (_, r) = s.report(&refs(&with_inventory(
        &sshd,
        &inv,
        &["probe", "list", dir.path().to_str().unwrap()],
    )));
    assert_eq!(only_step(&r).1, "over-ssh.txt");

    // The grant holds over SSH too, symlinks resolved on the node.
    let (_, r) = s.report(&refs(&with_inventory(
        &sshd,
        &inv,
        &["probe", "read", "/etc/hostname"],
    )));
    assert!(
        only_step(&r)
            .1
            .contains("permission denied: fs read of `/etc/hostname` on node remote-1"),
        "{r:#}"
    );
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
    let via = format!("{}/link/planted", dir.path().display());
    let (_, r) = s.report(&refs(&with_inventory(
        &sshd,
        &inv,
        &["probe", "write", &via, "x"],
    )));
    assert!(
        only_step(&r)
            .1
            .contains("link leads outside its grant root through a symlink"),
        "{r:#}"
    );
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);

    // Program output and exit status come back over the channel.
    let (_, r) = s.report(&refs(&with_inventory(
        &sshd,
        &inv,
        &["probe", "exec", "--", "echo", "-n", "it's quoted"],
    )));
    assert_eq!(only_step(&r).1, "it's quoted");
}

#[test]
fn an_unknown_host_key_is_refused_unless_accepted() {
    let sshd = Sshd::start();
    let inv = sshd.inventory("remote-1", &["dea"], "");
    std::fs::write(sshd.path("known_hosts"), "").unwrap();
    let s = Sandbox::new();
    s.install("probe");
    let (code, r) = s.report(&refs(&with_inventory(
        &sshd,
        &inv,
        &["probe", "exec", "true"],
    )));
    let message = only_step(&r).1;
    assert_eq!(code, 3);
    assert!(
        message.starts_with("unreachable: node remote-1"),
        "{message}"
    );
    assert!(
        message.contains(&format!("its host key ({}) is not in", sshd.fingerprint())),
        "{message}"
    );
    assert!(message.contains("--accept-new-host-keys"), "{message}");

    let mut args = with_inventory(&sshd, &inv, &["probe", "exec", "true"]);
    args.push("--accept-new-host-keys".into());
    let (code, _) = s.report(&refs(&args));
    assert_eq!(code, 0);
    assert!(
        std::fs::read_to_string(sshd.path("known_hosts"))
            .unwrap()
            .contains("ssh-ed25519")
    );
    let (code, _) = s.report(&refs(&with_inventory(
        &sshd,
        &inv,
        &["probe", "exec", "true"],
    )));
    assert_eq!(code, 0, "the recorded key is trusted from now on");
}

#[test]
fn a_changed_host_key_is_always_refused_with_its_fingerprint() {
    let sshd = Sshd::start();
    let inv = sshd.inventory("remote-1", &["dea"], "");
    let other = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(other.path().join("k"))
        .output()
        .unwrap();
    assert!(out.status.success());
    sshd.write_known_hosts(&std::fs::read_to_string(other.path().join("k.pub")).unwrap());
    let s = Sandbox::new();
    s.install("probe");
    let mut args = with_inventory(&sshd, &inv, &["probe", "exec", "true"]);
    args.push("--accept-new-host-keys".into());
    let (code, r) = s.report(&refs(&args));
    let message = only_step(&r).1;
    assert_eq!(code, 3);
    assert!(
        message.contains(&format!(
            "ITS HOST KEY HAS CHANGED: it now presents {}",
            sshd.fingerprint()
        )),
        "{message}"
    );
}

#[test]
fn an_unreachable_node_is_reported_while_the_others_go_on() {
    let sshd = Sshd::start();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let inv = sshd.inventory(
        "remote-1",
        &["dea"],
        &format!("[[node]]\nname = \"gone\"\naddress = \"127.0.0.1\"\nport = {closed}\nroles = [\"dea\"]\n"),
    );
    let s = Sandbox::new();
    s.install("hello");
    // The default budget is 0, but the steps of one batch all run: the
    // reachable node finishes while the other is reported.
    let (code, r) = s.report(&refs(&with_inventory(&sshd, &inv, &["hello", "info"])));
    assert_eq!(code, 3);
    let steps = r["phases"][0]["steps"].as_array().unwrap();
    assert_eq!(
        (steps[0]["node"].as_str(), steps[0]["status"].as_str()),
        (Some("remote-1"), Some("ok"))
    );
    assert_eq!(
        (steps[1]["node"].as_str(), steps[1]["status"].as_str()),
        (Some("gone"), Some("unreachable"))
    );
    assert!(
        steps[1]["message"]
            .as_str()
            .unwrap()
            .starts_with("unreachable: node gone"),
        "{r:#}"
    );

    // --nodes picks nodes from the inventory; an unknown selector is an error.
    let (code, r) = s.report(&refs(&with_inventory(
        &sshd,
        &inv,
        &["hello", "info", "--nodes", "remote-*"],
    )));
    assert_eq!(
        (code, r["phases"][0]["steps"].as_array().unwrap().len()),
        (0, 1)
    );
    let out = s.fails(
        1,
        &refs(&with_inventory(
            &sshd,
            &inv,
            &["run", "hello", "info", "--nodes", "role:router"],
        )),
    );
    assert!(out.contains("`role:router` matches no node"), "{out}");
}

#[test]
fn a_malformed_inventory_gets_a_clear_error() {
    let s = Sandbox::new();
    s.install("hello");
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inventory.toml");
    std::fs::write(&inv, "[[node]]\nname = \"a\"\nadress = \"10.0.0.1\"\n").unwrap();
    let out = s.fails(
        1,
        &["run", "hello", "info", "--inventory", inv.to_str().unwrap()],
    );
    assert!(
        out.contains("is not valid") && out.contains("unknown field `adress`"),
        "{out}"
    );
}

#[test]
fn keys_from_ssh_agent_are_used_when_the_inventory_names_none() {
    let sshd = Sshd::start();
    // The inventory names no key and HOME has no ~/.ssh: only the agent can log in.
    let inv = sshd.path("agent-inventory.toml");
    std::fs::write(
        &inv,
        format!(
            "[[node]]\nname = \"remote-1\"\naddress = \"127.0.0.1\"\nport = {}\nuser = \"root\"\n",
            sshd.port
        ),
    )
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    let sock = sshd.path("agent.sock");
    let agent = std::process::Command::new("ssh-agent")
        .arg("-a")
        .arg(&sock)
        .output()
        .unwrap();
    assert!(
        agent.status.success(),
        "{}",
        String::from_utf8_lossy(&agent.stderr)
    );
    let pid = String::from_utf8_lossy(&agent.stdout)
        .split("SSH_AGENT_PID=")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .map(str::to_string)
        .expect("ssh-agent prints its pid");
    let s = Sandbox::new();
    s.install("probe");
    let owned = with_inventory(
        &sshd,
        &inv,
        &["run", "probe", "exec", "--", "echo", "via agent"],
    );
    let args = refs(&owned);
    let sock_text = sock.display().to_string();
    let home_text = home.path().display().to_string();

    let without = s.run_env(
        &args,
        &[("HOME", &home_text), ("SSH_AUTH_SOCK", &sock_text)],
    );
    let text = String::from_utf8_lossy(&without.stdout).into_owned();
    assert_eq!(without.status.code(), Some(3), "{text}");
    assert!(
        text.contains("public-key authentication as root failed; tried no key files found"),
        "{text}"
    );

    let add = std::process::Command::new("ssh-add")
        .arg(sshd.path("client_key"))
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    let with = s.run_env(
        &args,
        &[("HOME", &home_text), ("SSH_AUTH_SOCK", &sock_text)],
    );
    let _ = std::process::Command::new("kill").arg(&pid).output();
    let text = String::from_utf8_lossy(&with.stdout).into_owned();
    assert!(with.status.success(), "{text}");
    assert!(text.contains("via agent"), "{text}");
}

#[test]
fn a_known_hosts_that_cannot_be_read_is_said_so_not_taken_for_empty() {
    let sshd = Sshd::start();
    let inv = sshd.inventory("remote-1", &["dea"], "");
    let s = Sandbox::new();
    s.install("probe");
    // A path under a regular file: opening it fails (ENOTDIR), which
    // russh alone would read as "no key recorded".
    let args = support::with_flags(
        &["probe", "exec", "true"],
        &[
            "--inventory".to_string(),
            inv.display().to_string(),
            "--known-hosts".to_string(),
            format!("{}/known_hosts", inv.display()),
            "--accept-new-host-keys".to_string(),
        ],
    );
    let (code, r) = s.report(&refs(&args));
    assert_eq!(code, 3, "{r:#}");
    let message = only_step(&r).1;
    assert!(
        message.contains(&format!(
            "cannot read {}/known_hosts: Not a directory",
            inv.display()
        )),
        "{message}"
    );
    assert!(!message.contains("is not in"), "{message}");
}

#[test]
fn a_plugin_without_the_reboot_grant_cannot_reboot_a_node() {
    // The probe's exec grant runs programs but has no `reboot = true`:
    // the host refuses before anything reaches the node, over SSH and on
    // the local node alike.
    let sshd = Sshd::start();
    let inv = sshd.inventory("remote-1", &["dea"], "");
    let s = Sandbox::new();
    s.install("probe");
    for args in [
        with_inventory(&sshd, &inv, &["probe", "reboot"]),
        vec!["probe".into(), "reboot".into()],
    ] {
        let (code, r) = s.report(&refs(&args));
        assert_eq!(code, 3, "{r:#}");
        let (status, message) = only_step(&r);
        assert_eq!(status, "failed");
        assert!(
            message.contains("is outside the grant (it needs `reboot = true` in the exec grant)"),
            "{message}"
        );
    }
}

#[test]
fn timing_shows_the_handshake_first_byte_and_total_of_the_nodes() {
    let sshd = Sshd::start();
    let inv = sshd.inventory("remote-1", &["dea"], "");
    let s = Sandbox::new();
    s.install("probe");
    let out = s.ok(&refs(&with_inventory(
        &sshd,
        &inv,
        &["run", "probe", "exec", "--timing", "true"],
    )));
    let timing: Vec<&str> = out
        .lines()
        .skip_while(|l| *l != "TIMING")
        .skip(1)
        .take(3)
        .collect();
    assert_eq!(timing.len(), 3, "{out}");
    // `  LABEL p50 X ms  p90 Y ms  slowest Z ms (NODE), N step(s)`
    let figures: Vec<(String, f64, f64)> = timing
        .iter()
        .map(|l| {
            assert!(l.ends_with("(remote-1), 1 step(s)"), "{out}");
            let w: Vec<&str> = l.split_whitespace().collect();
            let at = w.iter().position(|x| *x == "p50").unwrap();
            (
                w[..at].join(" "),
                w[at + 1].parse().unwrap(),
                w[at + 7].parse().unwrap(),
            )
        })
        .collect();
    let labels: Vec<&str> = figures.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(labels, ["handshake", "first byte", "total"], "{out}");
    // One node: every percentile is its own figure, and the node answered
    // after its handshake, within its step.
    for (_, p50, slowest) in &figures {
        assert_eq!(p50, slowest, "{out}");
    }
    assert!(figures[0].1 > 0.0, "{out}");
    assert!(figures[1].1 > figures[0].1, "{out}");
    assert!(figures[2].1 >= figures[1].1.floor(), "{out}");
}

/// A TCP server that accepts and never speaks (a node whose sshd hangs
/// before its banner), recording when each connection opened and closed.
struct Tarpit {
    port: u16,
    conns: Conns,
}

type Conns = std::sync::Arc<std::sync::Mutex<Vec<(Instant, Option<Instant>)>>>;

impl Tarpit {
    fn start() -> Tarpit {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let conns = Conns::default();
        let log = conns.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let at = {
                    let mut log = log.lock().unwrap();
                    log.push((Instant::now(), None));
                    log.len() - 1
                };
                let log = log.clone();
                std::thread::spawn(move || {
                    // Held until the client gives up and closes.
                    let _ = std::io::copy(&mut conn, &mut std::io::sink());
                    log.lock().unwrap()[at].1 = Some(Instant::now());
                });
            }
        });
        Tarpit { port, conns }
    }

    /// The most connections open at once since the last call, counted
    /// 300 ms into each connection's life: one closing as the next opens
    /// (the client's teardown and its next connect race by microseconds)
    /// is not two at once.
    fn most_at_once(&self) -> usize {
        // The client has exited: every close arrives, if not yet seen.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && self.conns.lock().unwrap().iter().any(|c| c.1.is_none())
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        let conns = std::mem::take(&mut *self.conns.lock().unwrap());
        conns
            .iter()
            .map(|(opened, _)| {
                let t = *opened + Duration::from_millis(300);
                conns
                    .iter()
                    .filter(|(a, b)| *a <= t && b.is_none_or(|b| t < b))
                    .count()
            })
            .max()
            .unwrap_or(0)
    }
}

#[test]
fn max_handshakes_bounds_the_handshakes_in_flight() {
    let sshd = Sshd::start();
    let tarpit = Tarpit::start();
    let nodes: String = (1..=4)
        .map(|i| {
            format!(
                "[[node]]\nname = \"hung-{i}\"\naddress = \"127.0.0.1\"\nport = {}\nuser = \"root\"\nidentity = \"{}\"\nroles = [\"dea\"]\n",
                tarpit.port,
                sshd.path("client_key").display()
            )
        })
        .collect();
    let inv = sshd.inventory("remote-1", &["dea"], &nodes);
    let s = Sandbox::new();
    s.install("hello");
    let run = |slots: &str| {
        s.report(&refs(&with_inventory(
            &sshd,
            &inv,
            &[
                "hello",
                "info",
                "--max-handshakes",
                slots,
                "--connect-timeout",
                "1s",
                "--max-fail",
                "100%",
            ],
        )))
    };

    // One slot: the four hung nodes wait their turn, one connection at a
    // time, and each is reported unreachable; the good node still runs.
    let (code, r) = run("1");
    assert_eq!(code, 3, "{r:#}");
    let steps = r["phases"][0]["steps"].as_array().unwrap();
    let status: Vec<(&str, &str)> = steps
        .iter()
        .map(|s| (s["node"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        status,
        [
            ("remote-1", "ok"),
            ("hung-1", "unreachable"),
            ("hung-2", "unreachable"),
            ("hung-3", "unreachable"),
            ("hung-4", "unreachable")
        ],
        "{r:#}"
    );
    assert_eq!(
        tarpit.most_at_once(),
        1,
        "one handshake slot, one hung connection at a time"
    );

    // Five slots: all four hang at once, so the bound above was the flag's.
    let (code, _) = run("5");
    assert_eq!(code, 3);
    assert_eq!(tarpit.most_at_once(), 4);

    // Nonsense is refused before anything connects.
    for (bad, says) in [
        ("0", "--max-handshakes must be at least 1"),
        ("5000", "--max-handshakes is at most 4096 (got 5000)"),
        ("many", "`many` is not a number of handshakes"),
    ] {
        let out = s.run(&refs(&with_inventory(
            &sshd,
            &inv,
            &["run", "hello", "info", "--max-handshakes", bad],
        )));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(says), "{err}");
    }
    assert_eq!(tarpit.most_at_once(), 0);
}
