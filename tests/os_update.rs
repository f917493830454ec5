//! The os-update plugin on real Debian nodes (containers of the test
//! cluster) with real apt and unattended-upgrades. The nodes have no
//! network, so each gets a local apt repository (a `file:` source, built
//! with dpkg-deb) that plays Debian's security archive (`Label:
//! Debian-Security`, suite `bookworm-security`) and another archive
//! that unattended-upgrades does not take from:
//! `osu-demo` 1.0 is installed and 1.1 is a security upgrade, `osu-other`
//! 2.0 is installed and 2.1 is an ordinary upgrade.

mod support;

#[path = "support/cluster.rs"]
mod cluster;

use cluster::TestCluster;
use support::{Sandbox, refs};

/// Build the two packages, install the old versions, and serve the new
/// ones from two local repositories in place of Debian's own sources.
const DEB_TOOLS: &str = r#"
set -e
mkdeb() { # name version dir
    d=$(mktemp -d); mkdir -p "$d/DEBIAN" "$d/usr/share/$1"
    echo "$2" > "$d/usr/share/$1/version"
    printf 'Package: %s\nVersion: %s\nArchitecture: all\nMaintainer: test <t@example>\nDescription: stackhost os-update test package\n' "$1" "$2" > "$d/DEBIAN/control"
    dpkg-deb --build "$d" "$3/$1_$2_all.deb" >/dev/null
}
repo() { # dir origin label suite
    (cd "$1" && for f in *.deb; do
        dpkg-deb -f "$f"; echo "Filename: ./$f"; echo "Size: $(stat -c %s "$f")"
        echo "SHA256: $(sha256sum "$f" | cut -d' ' -f1)"; echo
    done > Packages)
    printf 'Origin: %s\nLabel: %s\nSuite: %s\nCodename: %s\nDate: %s\nSHA256:\n %s %s Packages\n' \
        "$2" "$3" "$4" "$4" "$(date -Ru)" "$(sha256sum "$1/Packages" | cut -d' ' -f1)" \
        "$(stat -c %s "$1/Packages")" > "$1/Release"
}
"#;

const SETUP: &str = r#"
mkdir -p /srv/old /srv/security /srv/main
mkdeb osu-demo 1.0 /srv/old; mkdeb osu-other 2.0 /srv/old
dpkg -i /srv/old/*.deb >/dev/null
mkdeb osu-demo 1.1 /srv/security; mkdeb osu-other 2.1 /srv/main
repo /srv/security Debian Debian-Security bookworm-security
repo /srv/main Example Example stable
echo 'deb [trusted=yes] file:/srv/security ./' > /etc/apt/sources.list
echo 'deb [trusted=yes] file:/srv/main ./' >> /etc/apt/sources.list
rm -f /etc/apt/apt.conf.d/20auto-upgrades
apt-get update -q >/dev/null
"#;

fn version(c: &TestCluster, i: usize, pkg: &str) -> String {
    c.sh(i, &format!("dpkg-query -W -f '${{Version}}' {pkg}"))
}

#[test]
fn status_enable_and_apply_security_then_everything_one_node_at_a_time() {
    let c = TestCluster::up(2, "sh-osu");
    for i in [1, 2] {
        c.sh(i, &format!("{DEB_TOOLS}{SETUP}"));
    }
    let s = Sandbox::new();
    s.install("os-update");

    // status: per node, the pending upgrades sorted, as data.
    let (code, r) = s.report(&refs(&c.args(&["os-update", "status"])));
    assert_eq!(code, 0, "{r:#}");
    let steps = r["phases"][0]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    for step in steps {
        assert_eq!(step["status"], "ok");
        assert!(
            step["message"]
                .as_str()
                .unwrap()
                .starts_with("1 security, 1 other upgrade(s) pending; security: osu-demo; "),
            "{step:#}"
        );
        let data = &step["data"];
        assert_eq!(data["security"][0]["name"], "osu-demo", "{data:#}");
        assert_eq!(data["security"][0]["from"], "1.0");
        assert_eq!(data["security"][0]["to"], "1.1");
        assert_eq!(data["other"][0]["name"], "osu-other");
        assert_eq!(data["reboot"]["required"], false);
        assert_eq!(data["unattended_upgrades"], false);
    }

    // A package asked for a reboot on node 2: status names it.
    c.sh(
        2,
        "touch /var/run/reboot-required; echo osu-demo > /var/run/reboot-required.pkgs",
    );
    let (_, r) = s.report(&refs(&c.args(&[
        "os-update",
        "status",
        "--nodes",
        &c.node(2),
    ])));
    let step = &r["phases"][0]["steps"][0];
    assert!(
        step["message"]
            .as_str()
            .unwrap()
            .contains("; reboot required by osu-demo; "),
        "{step:#}"
    );
    assert_eq!(
        step["data"]["reboot"],
        serde_json::json!({"required": true, "packages": ["osu-demo"]})
    );
    c.sh(
        2,
        "rm /var/run/reboot-required /var/run/reboot-required.pkgs",
    );

    // enable-unattended: a dry run shows the file as a diff and writes
    // nothing; the real run writes it; a second run is ok.
    let (code, r) = s.report(&refs(&c.args(&[
        "os-update",
        "enable-unattended",
        "--dry-run",
        "--nodes",
        &c.node(1),
    ])));
    assert_eq!(code, 0, "{r:#}");
    let diff = r["phases"][0]["steps"][0]["mutations"][0]["diff"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        diff.starts_with("--- /dev/null\n+++ b/etc/apt/apt.conf.d/20auto-upgrades\n"),
        "{diff}"
    );
    assert!(
        diff.contains("\n+APT::Periodic::Unattended-Upgrade \"1\";\n"),
        "{diff}"
    );
    assert_eq!(
        c.sh(1, "ls /etc/apt/apt.conf.d/ | grep -c auto-upgrades || true")
            .trim(),
        "0"
    );
    let (code, r) = s.report(&refs(&c.args(&["os-update", "enable-unattended"])));
    assert_eq!(code, 0, "{r:#}");
    assert!(
        c.sh(2, "apt-config dump")
            .contains("APT::Periodic::Unattended-Upgrade \"1\";")
    );
    assert!(
        !c.sh(2, "apt-config dump")
            .contains("Automatic-Reboot \"true\"")
    );
    let (_, r) = s.report(&refs(&c.args(&["os-update", "enable-unattended"])));
    for step in r["phases"][0]["steps"].as_array().unwrap() {
        assert_eq!(step["status"], "ok", "{step:#}");
    }
    let (_, r) = s.report(&refs(&c.args(&["os-update", "status"])));
    assert_eq!(
        r["phases"][0]["steps"][0]["data"]["unattended_upgrades"],
        true
    );

    // Another package manager holds apt's lock on node 1: apply says so,
    // the run halts there, and nothing is installed on either node.
    c.docker(&[
        "exec",
        "-d",
        &c.node(1),
        "python3",
        "-c",
        "import fcntl, time\n\
         locks = [open(p, 'w') for p in ('/var/lib/dpkg/lock-frontend', '/var/lib/dpkg/lock')]\n\
         [fcntl.lockf(f, fcntl.LOCK_EX) for f in locks]\n\
         open('/run/osu-locked', 'w').close()\n\
         time.sleep(600)",
    ]);
    c.sh(
        1,
        "for i in $(seq 50); do [ -e /run/osu-locked ] && break; sleep 0.1; done",
    );
    let (code, r) = s.report(&refs(&c.args(&["os-update", "apply"])));
    assert_eq!(code, 3, "{r:#}");
    let step = &r["phases"][0]["steps"][0];
    assert_eq!(step["status"], "failed", "{step:#}");
    let m = step["message"].as_str().unwrap();
    assert!(
        m.starts_with(&format!(
            "apt's lock on node {} is held by another process (another package manager is \
             running; nothing was installed here): ",
            c.node(1)
        )),
        "{m}"
    );
    assert_eq!(r["phases"][0]["steps"][1]["status"], "not-run", "{r:#}");
    for i in [1, 2] {
        assert_eq!(version(&c, i, "osu-demo"), "1.0");
    }
    c.sh(1, "pkill -f 'dpkg/lock-fronten[d]'");
    c.sh(1, "rm /run/osu-locked");

    // A source that cannot be fetched is an error naming the node, not a
    // warning over stale lists (apt-get update alone exits 0 then).
    c.sh(
        2,
        "cp /etc/apt/sources.list /run/sources.list.good && \
         echo 'deb [trusted=yes] http://127.0.0.1:9/ ./' >> /etc/apt/sources.list",
    );
    let (code, r) = s.report(&refs(&c.args(&[
        "os-update",
        "apply",
        "--nodes",
        &c.node(2),
    ])));
    assert_eq!(code, 3, "{r:#}");
    let m = r["phases"][0]["steps"][0]["message"].as_str().unwrap();
    assert!(
        m.starts_with("`apt-get` exited with status 100: ") && m.contains("127.0.0.1:9"),
        "{m}"
    );
    assert_eq!(version(&c, 2, "osu-demo"), "1.0");
    c.sh(2, "cp /run/sources.list.good /etc/apt/sources.list");

    // apply (security only, the default): one node at a time, live output.
    let out = s.run(&refs(&c.args(&["run", "os-update", "apply", "--verbose"])));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("changed  apply: upgraded osu-demo 1.0 -> 1.1"),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!("  … {} apply: ", c.node(1))),
        "{stderr}"
    );
    for i in [1, 2] {
        assert_eq!(version(&c, i, "osu-demo"), "1.1", "node {i}");
        assert_eq!(
            version(&c, i, "osu-other"),
            "2.0",
            "node {i}: security only"
        );
    }
    // One node at a time (the command's own default): every live line of
    // node 1 comes before the first of node 2.
    let last_1 = stderr.rfind(&format!("  … {} apply: ", c.node(1))).unwrap();
    let first_2 = stderr.find(&format!("  … {} apply: ", c.node(2))).unwrap();
    assert!(last_1 < first_2, "{stderr}");

    // Automatic reboots only when allowed, and turned off again without.
    s.ok(&refs(&c.args(&[
        "run",
        "os-update",
        "enable-unattended",
        "--allow-automatic-reboot",
    ])));
    assert!(
        c.sh(1, "apt-config dump")
            .contains("Unattended-Upgrade::Automatic-Reboot \"true\";")
    );
    let out = s.ok(&refs(&c.args(&["run", "os-update", "enable-unattended"])));
    assert!(
        out.contains("automatic reboots need --allow-automatic-reboot"),
        "{out}"
    );
    assert!(
        !c.sh(1, "apt-config dump")
            .contains("Automatic-Reboot \"true\"")
    );

    // --dry-run --all says what would come and installs nothing.
    let (code, r) = s.report(&refs(&c.args(&[
        "os-update",
        "apply",
        "--all",
        "--dry-run",
    ])));
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(
        r["phases"][0]["steps"][0]["message"],
        "would upgrade osu-other 2.0 -> 2.1"
    );
    assert_eq!(version(&c, 1, "osu-other"), "2.0");

    // --all: the rest too; a second run has nothing to do.
    let (code, r) = s.report(&refs(&c.args(&["os-update", "apply", "--all"])));
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(
        r["phases"][0]["steps"][1]["data"]["upgraded"][0]["name"], "osu-other",
        "{r:#}"
    );
    for i in [1, 2] {
        assert_eq!(version(&c, i, "osu-other"), "2.1", "node {i}");
    }
    let (_, r) = s.report(&refs(&c.args(&["os-update", "apply", "--all"])));
    for step in r["phases"][0]["steps"].as_array().unwrap() {
        assert_eq!(
            (step["status"].as_str(), step["message"].as_str()),
            (Some("ok"), Some("nothing to upgrade")),
            "{step:#}"
        );
    }

    // The proxy from the inventory: node 2 reaches a repository only
    // through an HTTP proxy on its loopback, which logs what it serves.
    c.sh(2, &format!("{DEB_TOOLS}{PROXIED}"));
    c.docker(&["exec", "-d", &c.node(2), "python3", "-c", PROXY]);
    c.sh(
        2,
        "for i in $(seq 50); do [ -e /run/proxy.ready ] && break; sleep 0.1; done",
    );
    let inventory = std::fs::read_to_string(c.path("inventory.toml")).unwrap();
    let node2 = format!("name = \"{}\"\n", c.node(2));
    let inventory = inventory.replace(
        &node2,
        &format!("{node2}http-proxy = \"http://127.0.0.1:3128\"\n"),
    );
    std::fs::write(c.path("inventory.toml"), inventory).unwrap();
    let (code, r) = s.report(&refs(&c.args(&[
        "os-update",
        "apply",
        "--nodes",
        &c.node(2),
    ])));
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(
        r["phases"][0]["steps"][0]["message"], "upgraded osu-demo 1.1 -> 1.2",
        "{r:#}"
    );
    assert_eq!(version(&c, 2, "osu-demo"), "1.2");
    let log = c.sh(2, "cat /run/proxy.log");
    assert!(
        log.contains("GET http://osu-repo.invalid/./Packages")
            || log.contains("GET http://osu-repo.invalid/./Release"),
        "{log}"
    );
    assert!(
        log.contains("GET http://osu-repo.invalid/./osu-demo_1.2_all.deb"),
        "{log}"
    );
}

/// A security archive with osu-demo 1.2, named by a host that only the
/// proxy knows.
const PROXIED: &str = r#"
mkdir -p /srv/proxied
mkdeb osu-demo 1.2 /srv/proxied
repo /srv/proxied Debian Debian-Security bookworm-security
echo 'deb [trusted=yes] http://osu-repo.invalid/ ./' > /etc/apt/sources.list
"#;

/// An HTTP proxy on the node's loopback that serves /srv/proxied for
/// http://osu-repo.invalid/ and logs every request line.
const PROXY: &str = r#"
import http.server, os
ROOT, PREFIX = '/srv/proxied', 'http://osu-repo.invalid/'
class Proxy(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open('/run/proxy.log', 'a') as log:
            log.write(self.requestline + chr(10))
        path = os.path.normpath(os.path.join(ROOT, self.path[len(PREFIX):]))
        if not self.path.startswith(PREFIX) or not path.startswith(ROOT + '/') or not os.path.isfile(path):
            self.send_error(404)
            return
        data = open(path, 'rb').read()
        self.send_response(200)
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(('127.0.0.1', 3128), Proxy)
open('/run/proxy.ready', 'w').close()
server.serve_forever()
"#;

/// PID 1's start time on node `i`, in clock ticks since the (shared)
/// kernel booted: comparable between nodes, and new after a reboot.
fn pid1_start(c: &TestCluster, i: usize) -> u64 {
    c.sh(i, "cut -d' ' -f22 /proc/1/stat")
        .trim()
        .parse()
        .expect("a start time")
}

fn step_of<'a>(r: &'a serde_json::Value, node: &str) -> &'a serde_json::Value {
    r["phases"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["node"] == node)
        .unwrap_or_else(|| panic!("no step on {node}: {r:#}"))
}

#[test]
fn reboots_roll_one_node_at_a_time_and_wait_for_each_node_and_its_roles() {
    // Node 1: core, controller, postgresql; 2: router, dea; 3: dea,
    // filesystem. Nodes 2 and 3 say a package asked for a reboot.
    let c = TestCluster::up(3, "sh-osr");
    for i in [2, 3] {
        c.sh(
            i,
            "touch /var/run/reboot-required; echo osu-kernel > /var/run/reboot-required.pkgs",
        );
    }
    let s = Sandbox::new();
    s.install("os-update");
    let before: Vec<u64> = (1..=3).map(|i| pid1_start(&c, i)).collect();

    // A dry run reboots nothing and says which nodes it would.
    let (code, r) = s.report(&refs(&c.args(&[
        "os-update",
        "reboot",
        "--dry-run",
        "--stop-roles",
    ])));
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(step_of(&r, &c.node(1))["message"], "no reboot required");
    let m = step_of(&r, &c.node(2))["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        m,
        "would stop stackato-router, stackato-dea, then reboot (required by osu-kernel) and wait \
         up to 600s for it and its roles"
    );
    assert_eq!(
        (1..=3).map(|i| pid1_start(&c, i)).collect::<Vec<_>>(),
        before
    );

    // The real run: nodes 2 and 3 reboot, one after the other; node 1 not.
    let (code, r) = s.report(&refs(&c.args(&["os-update", "reboot", "--stop-roles"])));
    assert_eq!(code, 0, "{r:#}");
    let after: Vec<u64> = (1..=3).map(|i| pid1_start(&c, i)).collect();
    assert_eq!(after[0], before[0], "node 1 needed no reboot");
    assert!(
        after[1] > before[1] && after[2] > before[2],
        "{before:?} {after:?}"
    );
    // Node 3 went down only once node 2 was back with its roles (node 2's
    // PID 1 started at least a second, 100 ticks, before node 3's).
    assert!(after[2] >= after[1] + 100, "{after:?}");
    for (i, roles) in [
        (2, "stackato-router, stackato-dea"),
        (3, "stackato-dea, stackato-filesystem"),
    ] {
        let step = step_of(&r, &c.node(i));
        assert_eq!(step["status"], "changed", "{step:#}");
        let m = step["message"].as_str().unwrap();
        assert!(
            m.starts_with("rebooted (required by osu-kernel); back after "),
            "{m}"
        );
        assert!(m.ends_with(&format!("; running again: {roles}")), "{m}");
        assert_eq!(step["data"]["rebooted"], true);
        assert!(
            step["data"]["back_ms"].as_u64().unwrap() >= 1000,
            "{step:#}"
        );
        // The roles really run, and /run was emptied by the reboot.
        for role in roles.split(", ") {
            c.sh(i, &format!("/etc/init.d/{role} status"));
        }
        assert_eq!(
            c.sh(i, "ls /var/run/reboot-required* 2>/dev/null || true"),
            ""
        );
    }

    // Nothing needs a reboot now: a second run is ok everywhere.
    let (code, r) = s.report(&refs(&c.args(&["os-update", "reboot"])));
    assert_eq!(code, 0, "{r:#}");
    for i in 1..=3 {
        assert_eq!(step_of(&r, &c.node(i))["status"], "ok", "{r:#}");
    }
    assert_eq!(
        (1..=3).map(|i| pid1_start(&c, i)).collect::<Vec<_>>(),
        after
    );

    // A node that does not come back (its restart policy is gone) halts
    // the run, named, within the wait; the node after it is not touched.
    c.docker(&["update", "--restart", "no", &c.node(2)]);
    for i in [2, 3] {
        c.sh(i, "touch /var/run/reboot-required");
    }
    let started = std::time::Instant::now();
    let (code, r) = s.report(&refs(&c.args(&["os-update", "reboot", "--wait", "5s"])));
    assert_eq!(code, 3, "{r:#}");
    assert!(started.elapsed().as_secs() < 60, "{:?}", started.elapsed());
    let step = step_of(&r, &c.node(2));
    assert_eq!(step["status"], "failed", "{step:#}");
    let m = step["message"].as_str().unwrap();
    assert!(
        m.contains(&format!(
            "node {} did not come back within 5s of its reboot",
            c.node(2)
        )),
        "{m}"
    );
    assert_eq!(step_of(&r, &c.node(3))["status"], "not-run", "{r:#}");
    assert_eq!(pid1_start(&c, 3), after[2]);
    assert!(
        r["halted"].as_str().unwrap().contains("failure budget"),
        "{r:#}"
    );
    c.docker(&["start", &c.node(2)]);

    // The failed run released the cluster lock: the next run goes ahead
    // and reboots node 3, which still needs it (node 2's restart emptied
    // its /run).
    let (code, r) = s.report(&refs(&c.args(&["os-update", "reboot"])));
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(step_of(&r, &c.node(2))["status"], "ok", "{r:#}");
    assert_eq!(step_of(&r, &c.node(3))["status"], "changed", "{r:#}");
    assert!(pid1_start(&c, 3) > after[2]);

    // `--wait` is checked before anything runs.
    let (code, _) = s.report(&refs(&c.args(&["os-update", "reboot", "--wait", "soon"])));
    assert_eq!(code, 2);
}

#[test]
fn the_machine_stackhost_runs_on_is_never_rebooted() {
    // The embedded inventory: this machine only. `--always` asks for a
    // reboot of every selected node; this one is skipped, and said so.
    let s = Sandbox::new();
    s.install("os-update");
    let (code, r) = s.report(&["os-update", "reboot", "--always"]);
    assert_eq!(code, 0, "{r:#}");
    let step = &r["phases"][0]["steps"][0];
    assert_eq!(step["status"], "skipped", "{step:#}");
    assert_eq!(
        step["message"],
        "needs a reboot, but this is the machine stackhost runs on: reboot it yourself once the \
         run is done"
    );
}
