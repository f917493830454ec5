//! The nagios plugin on a real four-node Debian cluster whose image holds
//! Nagios Core 4 and the monitoring plugins (nagios4-core,
//! monitoring-plugins-basic). The inventory names the nodes by their
//! container addresses, which both stackhost and the Nagios server among
//! them reach, and node 3 by a second sshd on port 2222, so the SSH checks
//! Nagios really runs prove each node's port came from the inventory.

mod support;

#[path = "support/cluster.rs"]
mod cluster;

use cluster::TestCluster;
use std::process::Command;
use std::time::{Duration, Instant};
use support::{Sandbox, only_step, refs};

const DIR: &str = "/etc/nagios4/conf.d/stackhost";

fn ip(c: &TestCluster, i: usize) -> String {
    c.bridge_ip(i)
}

fn port(i: usize) -> u16 {
    if i == 3 { 2222 } else { 22 }
}

/// Node `i`'s `[[node]]` entry with `roles` (TOML array items) and any
/// extra lines.
fn entry(c: &TestCluster, i: usize, roles: &str, extra: &str) -> String {
    format!(
        "[[node]]\nname = \"{}\"\naddress = \"{}\"\nport = {}\nuser = \"root\"\nidentity = \"{}\"\nroles = [{roles}]\n{extra}\n",
        c.node(i),
        ip(c, i),
        port(i),
        c.path("id_ed25519").display()
    )
}

fn roles(i: usize) -> &'static str {
    match i {
        1 => "\"core\", \"nagios\"",
        2 => "\"router\"",
        3 => "\"controller\"",
        _ => "\"postgresql\"",
    }
}

/// The inventory of nodes `which`, node 1 with a hostname.
fn inventory(c: &TestCluster, which: &[usize]) -> String {
    which
        .iter()
        .map(|&i| {
            let extra = if i == 1 {
                "hostname = \"core-1.example.internal\"\n"
            } else {
                ""
            };
            entry(c, i, roles(i), extra)
        })
        .collect()
}

fn write_inventory(c: &TestCluster, text: &str) {
    std::fs::write(c.path("inventory.toml"), text).unwrap();
}

/// Known host keys for the nodes at their container addresses and ports.
fn scan_host_keys(c: &TestCluster) {
    let mut known = String::new();
    for i in 1..=4 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = Command::new("ssh-keyscan")
                .args(["-T", "2", "-t", "ed25519", "-p", &port(i).to_string()])
                .arg(ip(c, i))
                .output()
                .expect("ssh-keyscan runs");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if !text.trim().is_empty() {
                known.push_str(&text);
                break;
            }
            assert!(Instant::now() < deadline, "no host key from node {i}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    std::fs::write(c.path("known_hosts"), known).unwrap();
}

fn files(c: &TestCluster) -> String {
    c.sh(
        1,
        &format!(
            "if cd {DIR} 2>/dev/null; then for f in *; do echo \"== $f\"; cat \"$f\"; done; fi"
        ),
    )
}

/// The `servicestatus` blocks of Nagios' status file as (host, service,
/// has_been_checked, current_state).
fn service_states(c: &TestCluster) -> Vec<(String, String, String, String)> {
    let text = c.sh(1, "cat /var/lib/nagios4/status.dat 2>/dev/null || true");
    text.split("servicestatus {")
        .skip(1)
        .map(|block| {
            let block = block.split('}').next().unwrap_or("");
            let get = |key: &str| {
                block
                    .lines()
                    .find_map(|l| l.trim().strip_prefix(&format!("{key}=")))
                    .unwrap_or("")
                    .to_string()
            };
            (
                get("host_name"),
                get("service_description"),
                get("has_been_checked"),
                get("current_state"),
            )
        })
        .collect()
}

#[test]
fn config_for_the_whole_inventory_validated_run_by_nagios_and_kept_safe() {
    let c = TestCluster::up(4, "sh-nagios");
    c.sh(3, "/usr/sbin/sshd -p 2222");
    write_inventory(&c, &inventory(&c, &[1, 2, 3, 4]));
    scan_host_keys(&c);
    let s = Sandbox::new();
    s.install("nagios");
    let (n1, n2, n3, n4) = (c.node(1), c.node(2), c.node(3), c.node(4));

    // The server must be among the selected nodes.
    let out = s.fails(
        2,
        &refs(&c.args(&["run", "nagios", "config", "--nodes", &n2, "--server", &n1])),
    );
    assert!(
        out.contains(&format!(
            "error: the Nagios server `{n1}` is not among the selected nodes; select it (--nodes {n1}) or name another with --server"
        )),
        "{out}"
    );

    // --dry-run: diffs of every file, nothing written, nothing validated.
    let (code, r) = s.report(&refs(&c.args(&["nagios", "config", "--dry-run"])));
    assert_eq!(code, 0, "{r:#}");
    let step = &r["phases"][0]["steps"][0];
    assert_eq!(step["node"], n1.as_str(), "{step:#}");
    assert_eq!(step["status"], "changed", "{step:#}");
    assert_eq!(
        step["message"],
        format!(
            "would write commands.cfg, hosts.cfg, hostgroups.cfg, services.cfg in {DIR} (4 hosts, 8 services); validation (nagios4 -v) and reload not run under --dry-run"
        )
    );
    let diffs: String = step["mutations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["diff"].as_str())
        .collect();
    assert!(
        diffs.contains("+++ b/etc/nagios4/conf.d/stackhost/hosts.cfg\n"),
        "{diffs}"
    );
    assert!(
        diffs.contains(&format!("+    host_name               {n4}\n")),
        "{diffs}"
    );
    assert_eq!(files(&c), "");

    // The real run: every node, the checker passes, Nagios is not running.
    let (code, r) = s.report(&refs(&c.args(&["nagios", "config"])));
    assert_eq!(code, 0, "{r:#}");
    let step = &r["phases"][0]["steps"][0];
    assert_eq!(step["status"], "changed", "{step:#}");
    assert_eq!(
        step["message"],
        format!(
            "wrote commands.cfg, hosts.cfg, hostgroups.cfg, services.cfg in {DIR} (4 hosts, 8 services); nagios4 -v passed; Nagios is not running; it reads the configuration when it starts"
        )
    );
    let data = &step["data"];
    assert_eq!(data["hosts"], 4, "{data:#}");
    assert_eq!(data["services"], 8);
    assert_eq!(data["validated"], true);
    assert_eq!(data["reloaded"], false);
    assert_eq!(
        data["templates"],
        "generic-host/generic-service (Debian's templates.cfg)"
    );
    let hosts = c.sh(1, &format!("cat {DIR}/hosts.cfg"));
    for i in 1..=4 {
        assert!(
            hosts.contains(&format!("    host_name               {}\n", c.node(i)))
                && hosts.contains(&format!("    address                 {}\n", ip(&c, i))),
            "{hosts}"
        );
    }
    assert!(
        hosts.contains(&format!(
            "    alias                   Stackato node {n1}: core nagios (hostname core-1.example.internal)\n"
        )),
        "{hosts}"
    );
    assert!(
        hosts.contains(&format!(
            "    host_name               {n3}\n    alias                   Stackato node {n3}: controller\n    address                 {}\n    check_command           stackhost_check_ssh!2222\n",
            ip(&c, 3)
        )),
        "{hosts}"
    );
    let services = c.sh(1, &format!("cat {DIR}/services.cfg"));
    for (node, description, check) in [
        (&n3, "SSH", "stackhost_check_ssh!2222"),
        (&n2, "SSH", "stackhost_check_ssh!22"),
        (&n2, "HTTP", "stackhost_check_http!80"),
        (&n2, "HTTPS", "stackhost_check_https!443"),
        (&n3, "Controller API", "stackhost_check_tcp!9022"),
        (&n4, "PostgreSQL", "stackhost_check_tcp!5432"),
    ] {
        let want = format!(
            "    host_name               {node}\n    service_description     {description}\n    check_command           {check}\n"
        );
        assert!(services.contains(&want), "{want}\nin\n{services}");
    }
    let groups = c.sh(1, &format!("cat {DIR}/hostgroups.cfg"));
    assert!(
        groups.contains(&format!(
            "    hostgroup_name          stackato-router\n    alias                   Stackato router nodes\n    members                 {n2}\n"
        )),
        "{groups}"
    );
    let check = c.sh(1, "nagios4 -v /etc/nagios4/nagios.cfg");
    assert!(check.contains("Total Errors:   0"), "{check}");

    // Again: nothing changed, nothing validated or reloaded.
    let (code, r) = s.report(&refs(&c.args(&["nagios", "config"])));
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(
        only_step(&r),
        (
            "ok".to_string(),
            format!("Nagios configuration in {DIR} is up to date (4 hosts, 8 services)")
        )
    );

    // Nagios itself: started on the server, it checks every node's SSH
    // (node 3's on 2222) and finds it up.
    c.sh(
        1,
        "mkdir -p /run/nagios4 && chown nagios:nagios /run/nagios4 && nagios4 -d /etc/nagios4/nagios.cfg",
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut forced = false;
    loop {
        let states = service_states(&c);
        let ssh_ok = |node: &str| {
            states.iter().any(|(h, d, checked, state)| {
                h == node && d == "SSH" && checked == "1" && state == "0"
            })
        };
        if [&n1, &n2, &n3, &n4].iter().all(|n| ssh_ok(n)) {
            break;
        }
        // Checks start spread over the check interval; ask for them now
        // through the external command file once Nagios has opened it.
        if !forced && !states.is_empty() {
            let now = c.sh(1, "date +%s").trim().to_string();
            let commands: String = [&n1, &n2, &n3, &n4]
                .iter()
                .map(|n| format!("[{now}] SCHEDULE_FORCED_SVC_CHECK;{n};SSH;{now}\n"))
                .collect();
            c.sh(
                1,
                &format!("printf '{commands}' > /var/lib/nagios4/rw/nagios.cmd"),
            );
            forced = true;
        }
        assert!(
            Instant::now() < deadline,
            "Nagios did not find every node's SSH up: {states:?}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }

    // A node leaves the inventory: it leaves the configuration, and the
    // running Nagios is reloaded.
    write_inventory(&c, &inventory(&c, &[1, 2, 3]));
    let pid = c.sh(1, "cat /run/nagios4/nagios4.pid").trim().to_string();
    let (code, r) = s.report(&refs(&c.args(&["nagios", "config"])));
    assert_eq!(code, 0, "{r:#}");
    let (status, message) = only_step(&r);
    assert_eq!(status, "changed");
    assert_eq!(
        message,
        format!(
            "wrote hosts.cfg, hostgroups.cfg, services.cfg in {DIR} (3 hosts, 6 services); nagios4 -v passed; reloaded Nagios (kill -HUP {pid})"
        )
    );
    let written = files(&c);
    assert!(!written.contains(&n4), "{written}");
    assert!(!written.contains("stackato-postgresql"), "{written}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while service_states(&c).iter().any(|(h, ..)| *h == n4) {
        assert!(
            Instant::now() < deadline,
            "the reloaded Nagios still checks {n4}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }

    // Inventory values that would break out of a directive are refused
    // before anything is written; the files stay as they were.
    let before = files(&c);
    for (bad, want) in [
        (
            format!(
                "{}{}",
                inventory(&c, &[1, 2]),
                entry(&c, 3, "\"controller\\n}\\ndefine\\tcommand\\t{\"", "")
            ),
            format!(
                "error: node `{n3}`: role `controller\\n}}\\ndefine\\tcommand\\t{{` holds a newline, `;`, `#`, `{{`, `}}` or NUL, which would break out of a Nagios directive; fix the inventory (nothing was written)"
            ),
        ),
        (
            format!(
                "{}[[node]]\nname = \"ghost\"\naddress = \"10.0.0.9;check_command x\"\nroles = [\"dea\"]\n",
                inventory(&c, &[1, 2, 3])
            ),
            "error: node `ghost`: address `10.0.0.9;check_command x` holds a newline".to_string(),
        ),
    ] {
        write_inventory(&c, &bad);
        let out = s.fails(
            2,
            &refs(&c.args(&["run", "nagios", "config", "--nodes", &n1])),
        );
        assert!(out.contains(&want), "{want}\nin\n{out}");
        assert_eq!(files(&c), before);
    }

    // A configuration the checker refuses (here: another file under
    // conf.d names a host that does not exist) is taken back: the previous
    // files stay byte for byte, and the step fails with the Error: lines.
    c.sh(
        1,
        "printf 'define service {\\n use generic-service\\n host_name no-such-host\\n service_description x\\n check_command stackhost_check_ssh!22\\n}\\n' > /etc/nagios4/conf.d/clash.cfg",
    );
    write_inventory(&c, &inventory(&c, &[1, 2, 3, 4]));
    let (code, r) = s.report(&refs(&c.args(&["nagios", "config"])));
    assert_eq!(code, 3, "{r:#}");
    let (status, message) = only_step(&r);
    assert_eq!(status, "failed");
    assert!(
        message.contains(&format!(
            "nagios4 -v /etc/nagios4/nagios.cfg on {n1} rejected the new configuration; the previous files are back in place:\nError: Could not find any host matching 'no-such-host'"
        )),
        "{message}"
    );
    assert_eq!(files(&c), before);
    c.sh(1, "rm /etc/nagios4/conf.d/clash.cfg");
    let (code, r) = s.report(&refs(&c.args(&["nagios", "config"])));
    assert_eq!(code, 0, "{r:#}");
    assert!(files(&c).contains(&n4));
}

/// Nagios taken off node 1 and the node's APT sources pointed at a local
/// archive of the real Debian packages (debootstrap's copies in the
/// node's apt cache), so `install` really installs Nagios from the node's
/// configured sources without reaching the mirror. `$1` holds the
/// patterns of the .debs the archive offers.
const LOCAL_ARCHIVE: &str = r#"
set -e
rm -rf /srv/debs
mkdir -p /srv/debs
cd /var/cache/apt/archives
cp $1 /srv/debs/
cd /srv/debs
for f in *.deb; do
    { dpkg-deb -f "$f"; echo "Filename: ./$f"; echo "Size: $(stat -c %s "$f")"; echo "SHA256: $(sha256sum "$f" | cut -d' ' -f1)"; echo; } >> Packages
done
echo 'deb [trusted=yes] file:/srv/debs ./' > /etc/apt/sources.list
"#;

fn archive(c: &TestCluster, debs: &str) {
    c.docker(&[
        "exec",
        &c.node(1),
        "sh",
        "-c",
        LOCAL_ARCHIVE,
        "archive",
        debs,
    ]);
}

#[test]
fn install_from_the_nodes_apt_sources_enables_and_starts_nagios() {
    let c = TestCluster::up(1, "sh-nagios-inst");
    let n1 = c.node(1);
    c.sh(
        1,
        "apt-get -y -q purge nagios4-core nagios4-common monitoring-plugins-basic monitoring-plugins-common >/dev/null 2>&1",
    );
    let version = |deb: &str| {
        c.sh(
            1,
            &format!("dpkg-deb -f /var/cache/apt/archives/{deb}_*.deb Version"),
        )
        .trim()
        .to_string()
    };
    let (core, plugins) = (version("nagios4-core"), version("monitoring-plugins-basic"));
    let nagios_debs = "nagios4-core_*.deb nagios4-common_*.deb";
    let all_debs =
        format!("{nagios_debs} monitoring-plugins-basic_*.deb monitoring-plugins-common_*.deb");
    archive(&c, &all_debs);
    c.sh(1, "apt-get update -q >/dev/null");
    let s = Sandbox::new();
    s.install("nagios");
    let installed = || {
        c.sh(
            1,
            "dpkg-query -W -f '${Status}\\n' nagios4-core monitoring-plugins-basic 2>/dev/null || true",
        )
    };

    // --dry-run: the probes run, the mutations are listed, nothing changes.
    let (code, r) = s.report(&refs(&c.args(&["nagios", "install", "--dry-run"])));
    assert_eq!(code, 0, "{r:#}");
    let step = &r["phases"][0]["steps"][0];
    assert_eq!(step["node"], n1.as_str(), "{step:#}");
    assert_eq!(
        (step["status"].as_str(), step["message"].as_str()),
        (
            Some("changed"),
            Some("would have installed nagios4-core, monitoring-plugins-basic; started nagios4")
        ),
        "{step:#}"
    );
    let recorded: Vec<&str> = step["mutations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["detail"].as_str().unwrap())
        .collect();
    assert_eq!(
        recorded,
        [
            "apt-get update -q (as root)",
            "apt-get -y install nagios4-core monitoring-plugins-basic (as root)",
            "service nagios4 start (as root)"
        ]
    );
    assert_eq!(installed(), "");

    // A package no source of the node offers: named with the node, and
    // nothing installed.
    archive(&c, nagios_debs);
    let (code, r) = s.report(&refs(&c.args(&["nagios", "install"])));
    assert_eq!(code, 3, "{r:#}");
    let (status, message) = only_step(&r);
    assert_eq!(status, "failed");
    assert_eq!(
        message,
        format!(
            "monitoring-plugins-basic cannot be installed on {n1}: none of its APT sources offers it; add a source that has it (Debian's main does) to {n1}'s /etc/apt/sources.list, or name another node with --server"
        )
    );
    assert_eq!(installed(), "");

    // The real install: packages from the node's sources, started.
    archive(&c, &all_debs);
    let (code, r) = s.report(&refs(&c.args(&["nagios", "install"])));
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(
        only_step(&r),
        (
            "changed".to_string(),
            format!(
                "installed nagios4-core {core}, monitoring-plugins-basic {plugins}; started nagios4"
            )
        )
    );
    assert_eq!(installed(), "install ok installed\ninstall ok installed\n");
    c.sh(1, "service nagios4 status"); // exit 0: running
    assert!(c.sh(1, "ls /etc/rc2.d").contains("S01nagios4"));
    let pid = c.sh(1, "cat /run/nagios4/nagios4.pid").trim().to_string();
    assert!(
        c.sh(1, &format!("ps -o comm= -p {pid}"))
            .starts_with("nagios4"),
        "no Nagios at PID {pid}"
    );

    // Again: nothing to do.
    let (code, r) = s.report(&refs(&c.args(&["nagios", "install"])));
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(
        only_step(&r),
        (
            "ok".to_string(),
            format!(
                "nagios4-core {core} and monitoring-plugins-basic {plugins} installed; nagios4 enabled at boot and running"
            )
        )
    );

    // Disabled at boot and stopped: a dry run says what it would do and
    // does nothing; the real run enables and starts it again.
    c.sh(
        1,
        &format!(
            "update-rc.d nagios4 disable && kill {pid} && while kill -0 {pid} 2>/dev/null; do sleep 0.1; done"
        ),
    );
    let (code, r) = s.report(&refs(&c.args(&["nagios", "install", "--dry-run"])));
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(
        only_step(&r),
        (
            "changed".to_string(),
            "would have enabled nagios4 at boot; started nagios4".to_string()
        )
    );
    assert!(c.sh(1, "ls /etc/rc2.d").contains("K01nagios4"));
    assert_eq!(
        c.sh(
            1,
            "service nagios4 status >/dev/null && echo running || echo stopped"
        )
        .trim(),
        "stopped"
    );
    let (code, r) = s.report(&refs(&c.args(&["nagios", "install"])));
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(
        only_step(&r),
        (
            "changed".to_string(),
            "enabled nagios4 at boot; started nagios4".to_string()
        )
    );
    assert!(c.sh(1, "ls /etc/rc2.d").contains("S01nagios4"));
    c.sh(1, "service nagios4 status");

    // --server must name a node of the inventory.
    let out = s.fails(
        2,
        &refs(&c.args(&["run", "nagios", "install", "--server", "nope"])),
    );
    assert!(
        out.contains("error: --server `nope` is not a node of the inventory"),
        "{out}"
    );
}
