//! stackhost against a real cluster: Debian bookworm containers running
//! sshd (tests/cluster). exec on every node, selectors, a node stopped
//! during a serial rollout and the run resumed, host keys checked.

mod support;

#[path = "support/cluster.rs"]
mod cluster;

use cluster::TestCluster;
use support::{Sandbox, refs};

fn nodes_of(r: &serde_json::Value, phase: usize) -> Vec<(String, String)> {
    r["phases"][phase]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["node"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn exec_on_every_node_and_selectors_pick_the_right_ones() {
    let c = TestCluster::up(3, "sh-sel");
    let s = Sandbox::new();
    s.install("hello");
    let (code, r) = s.report(&refs(&c.args(&["hello", "info"])));
    assert_eq!(code, 0, "{r:#}");
    let steps = r["phases"][0]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    for (i, step) in steps.iter().enumerate() {
        assert_eq!(step["node"], c.node(i + 1));
        assert!(
            step["message"]
                .as_str()
                .unwrap()
                .starts_with("Debian GNU/Linux 12 (bookworm)"),
            "{step}"
        );
    }
    let picked = |sel: &str| {
        let (_, r) = s.report(&refs(&c.args(&["hello", "info", "--nodes", sel])));
        nodes_of(&r, 0)
            .into_iter()
            .map(|(n, _)| n)
            .collect::<Vec<_>>()
    };
    assert_eq!(picked("role:dea"), [c.node(2), c.node(3)]);
    assert_eq!(picked("role:core"), [c.node(1)]);
    assert_eq!(
        picked(&format!("{}-3,{}-1", c.name, c.name)),
        [c.node(1), c.node(3)]
    );
    assert_eq!(picked(&format!("{}-*", c.name)).len(), 3);
    let list = s.ok(&refs(&c.args(&["node", "list"])));
    assert!(
        list.contains(&format!(
            "127.0.0.1 core controller postgresql ({})",
            c.node(1)
        )),
        "{list}"
    );
}

#[test]
fn a_node_stopped_mid_rollout_halts_it_and_resume_finishes_without_repeats() {
    let c = TestCluster::up(3, "sh-res");
    let s = Sandbox::new();
    s.install("probe");
    let dir = "/tmp/stackhost-test/rw/rollout";
    for i in 1..=3 {
        c.sh(i, &format!("mkdir -p {dir}"));
    }
    // Node 1's step holds until released; node 2 is stopped while it runs.
    c.sh(1, &format!("touch {dir}/hold-{}", c.node(1)));
    let owned = c.args(&["run", "probe", "each", dir, "--serial", "1", "--json"]);
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_stackhost"))
        .args(&owned)
        .env("STACKHOST_HOME", s.home.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let shown = s.run(&["runs", "show", "1", "--json"]);
        let running = serde_json::from_slice::<serde_json::Value>(&shown.stdout)
            .is_ok_and(|r| r["steps"][0]["state"] == "running");
        if running {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node 1's step never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    c.docker(&["stop", "-t", "1", &c.node(2)]);
    c.sh(1, &format!("rm {dir}/hold-{}", c.node(1)));
    let out = child.wait_with_output().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    let (code, run, r) = (
        out.status.code().unwrap(),
        json["run"].as_i64().unwrap(),
        json["report"].clone(),
    );
    assert_eq!(code, 3, "{r:#}");
    let work = nodes_of(&r, 0);
    assert_eq!(
        work.iter().map(|(_, st)| st.as_str()).collect::<Vec<_>>(),
        ["changed", "unreachable", "not-run"]
    );
    assert!(
        r["halted"]
            .as_str()
            .unwrap()
            .contains("failure budget of 0"),
        "{r:#}"
    );

    c.docker(&["start", &c.node(2)]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (code, _) = s.report(&refs(&c.args(&[
            "probe",
            "exec",
            "true",
            "--nodes",
            &c.node(2),
        ])));
        if code == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node 2 did not come back"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let out = s.ok(&refs(&c.args(&["resume", &run.to_string()])));
    assert!(out.contains("done in an earlier attempt"), "{out}");
    // From the nodes themselves: every step ran exactly once on every node.
    for i in 1..=3 {
        let node = c.node(i);
        for phase in ["work", "after", "cleanup"] {
            // One line per run of the step: node 1's work and the cleanup on
            // nodes 1 and 3 ran in the first attempt and were not repeated.
            let log = c.sh(i, &format!("cat {dir}/{node}.{phase} 2>/dev/null || true"));
            assert_eq!(log, "ran\n", "{node} {phase}");
        }
    }
}

#[test]
fn a_changed_host_key_on_one_node_is_refused_while_the_others_go_on() {
    let c = TestCluster::up(2, "sh-key");
    let s = Sandbox::new();
    s.install("hello");
    // Node 2 is "reinstalled": new host keys.
    c.sh(2, "rm -f /etc/ssh/ssh_host_* && ssh-keygen -A >/dev/null");
    c.docker(&["restart", "-t", "1", &c.node(2)]);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let fingerprint = c.sh(
        2,
        "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f2",
    );
    let (code, r) = s.report(&refs(&c.args(&["hello", "info", "--max-fail", "1"])));
    assert_eq!(code, 3);
    let steps = nodes_of(&r, 0);
    assert_eq!(steps[0].1, "ok");
    assert_eq!(steps[1].1, "unreachable");
    let message = r["phases"][0]["steps"][1]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "ITS HOST KEY HAS CHANGED: it now presents {}",
            fingerprint.trim()
        )),
        "{message}"
    );
}

/// Node `i`'s address on the Docker network, as the other nodes reach it.
fn ip_of(c: &TestCluster, i: usize) -> String {
    c.docker(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.IPAddress}}",
        &c.node(i),
    ])
    .trim()
    .to_string()
}

#[test]
fn ssh_keys_distribute_is_idempotent_and_the_key_really_logs_in() {
    let c = TestCluster::up(3, "sh-keys");
    let s = Sandbox::new();
    s.install("ssh-keys");
    s.install("hello");
    c.sh(1, "ssh-keygen -q -t ed25519 -N '' -f /root/.ssh/id_ed25519");
    let core_key = c.sh(1, "cat /root/.ssh/id_ed25519.pub");

    let (code, r) = s.report(&refs(&c.args(&["ssh-keys", "distribute", "--dry-run"])));
    assert_eq!(code, 0, "{r:#}");
    assert!(
        !c.sh(2, "cat /root/.ssh/authorized_keys")
            .contains(core_key.trim()),
        "dry run changed a node"
    );

    let (code, r) = s.report(&refs(&c.args(&["ssh-keys", "distribute"])));
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(
        nodes_of(&r, 0),
        [(c.node(2), "changed".into()), (c.node(3), "changed".into())]
    );
    let (_, r) = s.report(&refs(&c.args(&["ssh-keys", "distribute"])));
    assert_eq!(
        nodes_of(&r, 0),
        [(c.node(2), "ok".into()), (c.node(3), "ok".into())]
    );
    for i in [2, 3] {
        let keys = c.sh(i, "cat /root/.ssh/authorized_keys");
        assert_eq!(keys.matches(core_key.trim()).count(), 1, "node {i}: {keys}");
    }
    // The proof: the core node logs in to node 2 with its own key.
    let ip = ip_of(&c, 2);
    let login = format!(
        "ssh -o BatchMode=yes -o StrictHostKeyChecking=no root@{} hostname",
        ip.trim()
    );
    assert_eq!(c.sh(1, &login).trim(), c.node(2));

    // --self: node 3 gets a key pair and authorizes it on itself.
    let (code, r) = s.report(&refs(&c.args(&[
        "ssh-keys",
        "distribute",
        "--self",
        "--nodes",
        &format!("role:core,{}", c.node(3)),
    ])));
    assert_eq!(code, 0, "{r:#}");
    let own = c.sh(3, "cat /root/.ssh/id_ed25519.pub");
    assert!(
        c.sh(3, "cat /root/.ssh/authorized_keys")
            .contains(own.trim())
    );
    assert_eq!(
        c.sh(
            3,
            "ssh -o BatchMode=yes -o StrictHostKeyChecking=no root@127.0.0.1 hostname"
        )
        .trim(),
        c.node(3)
    );
}

#[test]
fn ssh_keys_distribute_for_the_stackato_account_logs_in_as_stackato() {
    let c = TestCluster::up(3, "sh-keys-st");
    let s = Sandbox::new();
    s.install("ssh-keys");
    // The stackato account on nodes 1 and 2 (not 3), with a key on core.
    for i in [1, 2] {
        c.sh(
            i,
            "useradd -m -s /bin/sh stackato && usermod -p '*' stackato",
        );
    }
    c.sh(
        1,
        "su stackato -c \"ssh-keygen -q -t ed25519 -N '' -f /home/stackato/.ssh/id_ed25519\"",
    );
    let key = c.sh(1, "cat /home/stackato/.ssh/id_ed25519.pub");
    let both = format!("{},{}", c.node(1), c.node(2));
    let (code, r) = s.report(&refs(&c.args(&[
        "ssh-keys",
        "distribute",
        "--user",
        "stackato",
        "--nodes",
        &both,
    ])));
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(nodes_of(&r, 0), [(c.node(2), "changed".into())]);
    let owners = c.sh(
        2,
        "stat -c '%U %a' /home/stackato/.ssh /home/stackato/.ssh/authorized_keys",
    );
    assert_eq!(owners, "stackato 700\nstackato 600\n", "{owners}");
    assert!(
        c.sh(2, "cat /home/stackato/.ssh/authorized_keys")
            .contains(key.trim())
    );
    assert!(
        !c.sh(2, "cat /root/.ssh/authorized_keys 2>/dev/null || true")
            .contains(key.trim()),
        "root's keys are left alone"
    );
    // The proof: stackato on core logs in to node 2 as stackato.
    let ip = ip_of(&c, 2);
    let login = format!(
        "su stackato -c 'ssh -o BatchMode=yes -o StrictHostKeyChecking=no stackato@{} id -un'",
        ip.trim()
    );
    assert_eq!(c.sh(1, &login).trim(), "stackato");
    // A node without the account fails, naming it; the others are fine.
    let (code, r) = s.report(&refs(&c.args(&[
        "ssh-keys",
        "distribute",
        "--user",
        "stackato",
    ])));
    assert_eq!(code, 3, "{r:#}");
    let steps = r["phases"][0]["steps"].as_array().unwrap();
    let on3 = steps
        .iter()
        .find(|st| st["node"] == c.node(3).as_str())
        .unwrap();
    assert!(
        on3["message"]
            .as_str()
            .unwrap()
            .contains(&format!("node {} has no stackato account", c.node(3))),
        "{on3:#}"
    );
}

#[test]
fn disable_passwords_turns_passwords_off_and_key_login_keeps_working() {
    let c = TestCluster::up(2, "sh-pw");
    let s = Sandbox::new();
    s.install("ssh-keys");
    s.install("hello");
    let out = s.ok(&refs(&c.args(&[
        "run",
        "ssh-keys",
        "disable-passwords",
        "--dry-run",
    ])));
    assert!(
        out.contains("50-stackhost-no-passwords.conf") && out.contains("kill -HUP"),
        "{out}"
    );
    assert!(
        c.sh(1, "sshd -T").contains("passwordauthentication yes"),
        "dry run changed sshd"
    );

    // Destructive: refused off a terminal without --yes, nothing changed.
    let out = s.fails(1, &refs(&c.args(&["run", "ssh-keys", "disable-passwords"])));
    assert!(
        out.contains(
            "`ssh-keys disable-passwords` is destructive: Turn SSH password authentication off \
             on each node, after proving key login works there, then reload sshd; not on a \
             terminal, so it cannot be confirmed: pass --yes to run it, or --dry-run to see \
             what it would do"
        ),
        "{out}"
    );
    assert!(c.sh(1, "sshd -T").contains("passwordauthentication yes"));

    let (code, r) = s.report(&refs(&c.args(&[
        "ssh-keys",
        "disable-passwords",
        "--serial",
        "1",
        "--yes",
    ])));
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(
        nodes_of(&r, 0),
        [(c.node(1), "changed".into()), (c.node(2), "changed".into())]
    );
    for i in [1, 2] {
        assert!(
            c.sh(i, "sshd -T").contains("passwordauthentication no"),
            "node {i}"
        );
    }
    // New connections still log in with keys; a second run is a no-op.
    let (code, _) = s.report(&refs(&c.args(&["hello", "info"])));
    assert_eq!(code, 0);
    let (_, r) = s.report(&refs(&c.args(&["ssh-keys", "disable-passwords", "--yes"])));
    assert_eq!(
        nodes_of(&r, 0),
        [(c.node(1), "ok".into()), (c.node(2), "ok".into())]
    );
}

#[test]
fn a_non_root_login_reaches_root_through_sudo() {
    let c = TestCluster::up(2, "sh-sudo");
    let s = Sandbox::new();
    s.install("ssh-keys");
    for i in [1, 2] {
        c.sh(
            i,
            "useradd -m -s /bin/sh stackato && echo 'stackato ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/stackato \
             && mkdir -p /home/stackato/.ssh && cp /root/.ssh/authorized_keys /home/stackato/.ssh/ \
             && chown -R stackato: /home/stackato/.ssh",
        );
    }
    c.sh(1, "ssh-keygen -q -t ed25519 -N '' -f /root/.ssh/id_ed25519");
    let inv = std::fs::read_to_string(c.path("inventory.toml")).unwrap();
    std::fs::write(
        c.path("inventory.toml"),
        inv.replace("user = \"root\"", "user = \"stackato\"\nsudo = true"),
    )
    .unwrap();

    let (code, r) = s.report(&refs(&c.args(&["ssh-keys", "distribute"])));
    assert_eq!(code, 0, "{r:#}");
    let core_key = c.sh(1, "cat /root/.ssh/id_ed25519.pub");
    assert!(
        c.sh(2, "cat /root/.ssh/authorized_keys")
            .contains(core_key.trim()),
        "written as root through sudo"
    );
    let (code, r) = s.report(&refs(&c.args(&["ssh-keys", "disable-passwords", "-y"])));
    assert_eq!(code, 0, "{r:#}");
    assert!(c.sh(2, "sshd -T").contains("passwordauthentication no"));

    // Without sudo the same login cannot touch root's files, and says so.
    let inv = std::fs::read_to_string(c.path("inventory.toml")).unwrap();
    std::fs::write(
        c.path("inventory.toml"),
        inv.replace("sudo = true", "sudo = false"),
    )
    .unwrap();
    c.sh(2, "rm /root/.ssh/authorized_keys");
    let (code, r) = s.report(&refs(&c.args(&[
        "ssh-keys",
        "distribute",
        "--nodes",
        &format!("role:core,{}", c.node(2)),
    ])));
    assert_eq!(code, 3, "{r:#}");
    // The plan already fails: it cannot read root's key on the core node.
    let error = r["plan_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("Permission denied") && error.contains("/root/.ssh"),
        "{r:#}"
    );
}
