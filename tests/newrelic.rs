//! The newrelic plugin on three real Debian nodes. The nodes have no
//! network, so each gets a local APT archive, built in the test with
//! dpkg-deb, holding a stand-in `newrelic-infra` package whose service
//! (a SysV init script, as the containers have no systemd) just runs
//! `sleep`. The license key must reach each node's config and appear
//! nowhere the host writes.

mod support;

#[path = "support/cluster.rs"]
mod cluster;

use cluster::TestCluster;
use support::{Sandbox, refs};

const KEY: &str = "NRAK-5f3a9c1e7d2b4a6f8e0c";
const NEW_KEY: &str = "NRAK-0b1c2d3e4f5a6b7c8d9e";
const SOURCE: &str = "deb [trusted=yes] file:/srv/nr ./";

/// The stand-in package in a local archive; Debian's own sources removed.
const SETUP: &str = r#"
set -e
d=$(mktemp -d); mkdir -p "$d/DEBIAN" "$d/etc/init.d" "$d/usr/bin"
printf 'Package: newrelic-infra\nVersion: 1.20.0\nArchitecture: all\nMaintainer: test <t@example>\nDescription: stand-in New Relic agent\n' > "$d/DEBIAN/control"
printf '#!/bin/sh\nexec sleep infinity\n' > "$d/usr/bin/newrelic-infra"
cat > "$d/etc/init.d/newrelic-infra" <<'EOF'
#!/bin/sh
PID=/run/newrelic-infra.pid
case "$1" in
    start) start-stop-daemon --start --quiet --background --make-pidfile --pidfile $PID --startas /usr/bin/newrelic-infra ;;
    stop) start-stop-daemon --stop --quiet --pidfile $PID --remove-pidfile --retry 5; exit 0 ;;
    restart) "$0" stop; "$0" start ;;
    status) start-stop-daemon --status --pidfile $PID ;;
esac
EOF
chmod 755 "$d/usr/bin/newrelic-infra" "$d/etc/init.d/newrelic-infra"
mkdir -p /srv/nr
dpkg-deb --build "$d" /srv/nr/newrelic-infra_1.20.0_all.deb >/dev/null
cd /srv/nr
f=newrelic-infra_1.20.0_all.deb
{ dpkg-deb -f "$f"; echo "Filename: ./$f"; echo "Size: $(stat -c %s "$f")"; echo "SHA256: $(sha256sum "$f" | cut -d' ' -f1)"; echo; } > Packages
printf 'Origin: NewRelic\nLabel: NewRelic\nSuite: stable\nCodename: stable\nDate: %s\nSHA256:\n %s %s Packages\n' "$(date -Ru)" "$(sha256sum Packages | cut -d' ' -f1)" "$(stat -c %s Packages)" > Release
: > /etc/apt/sources.list
"#;

fn steps(out: &std::process::Output) -> Vec<(String, String)> {
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    json["report"]["phases"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["status"].as_str().unwrap().to_string(),
                s["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn install_keeps_the_key_secret_is_idempotent_and_a_new_key_only_restarts() {
    let c = TestCluster::up(3, "sh-nr");
    for i in 1..=3 {
        c.sh(i, SETUP);
    }
    let s = Sandbox::new();
    s.install("newrelic");
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("nr.key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let key_arg = key_file.to_str().unwrap();
    let install = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "newrelic",
            "install",
            "--json",
            "--license-key-file",
            key_arg,
            "--apt-source",
            SOURCE,
        ];
        args.extend_from_slice(extra);
        s.run(&refs(&c.args(&args)))
    };

    // A dry run: the config's diff, key hidden; nothing written.
    let out = install(&["--dry-run"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let diff = json["report"]["phases"][0]["steps"][0]["mutations"][0]["diff"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(diff.contains("\n+license_key: \"***\"\n"), "{diff}");
    assert_eq!(s.leaks(&out, KEY), Vec::<String>::new());
    assert_eq!(
        c.sh(1, "ls /etc/newrelic-infra.yml 2>/dev/null | wc -l")
            .trim(),
        "0"
    );

    // Install on the three nodes.
    let out = install(&[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for (status, message) in steps(&out) {
        assert_eq!(
            (status.as_str(), message.as_str()),
            (
                "changed",
                "wrote /etc/newrelic-infra.yml; wrote /etc/apt/sources.list.d/newrelic-infra.list; \
                 installed newrelic-infra; restarted newrelic-infra"
            )
        );
    }
    for i in 1..=3 {
        let config = c.sh(i, "cat /etc/newrelic-infra.yml");
        assert!(
            config.contains(&format!("license_key: \"{KEY}\"\n")),
            "{config}"
        );
        assert!(
            config.contains(&format!("display_name: \"{}\"\n", c.node(i))),
            "{config}"
        );
        assert_eq!(c.sh(i, "stat -c %a /etc/newrelic-infra.yml").trim(), "600");
        c.sh(i, "service newrelic-infra status"); // exit 0: running
    }
    assert_eq!(s.leaks(&out, KEY), Vec::<String>::new());

    // Again: nothing to do anywhere.
    let out = install(&[]);
    for (status, message) in steps(&out) {
        assert_eq!(status, "ok", "{message}");
        assert_eq!(
            message,
            "newrelic-infra 1.20.0 installed, configured and running"
        );
    }

    // A new key: only the config is rewritten and the service restarted.
    let pid_before = c.sh(2, "cat /run/newrelic-infra.pid");
    std::fs::write(&key_file, format!("{NEW_KEY}\n")).unwrap();
    let out = install(&[]);
    for (status, message) in steps(&out) {
        assert_eq!(
            (status.as_str(), message.as_str()),
            (
                "changed",
                "wrote /etc/newrelic-infra.yml; restarted newrelic-infra"
            )
        );
    }
    assert_ne!(c.sh(2, "cat /run/newrelic-infra.pid"), pid_before);
    assert!(c.sh(2, "cat /etc/newrelic-infra.yml").contains(NEW_KEY));
    assert_eq!(s.leaks(&out, NEW_KEY), Vec::<String>::new());

    // status compares the key without printing it.
    let out = s.run(&refs(&c.args(&[
        "run",
        "newrelic",
        "status",
        "--json",
        "--license-key-file",
        key_arg,
    ])));
    for (status, message) in steps(&out) {
        assert_eq!(
            (status.as_str(), message.as_str()),
            (
                "ok",
                "newrelic-infra 1.20.0, running; no proxy; license key matches"
            )
        );
    }
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let out = s.run(&refs(&c.args(&[
        "run",
        "newrelic",
        "status",
        "--json",
        "--license-key-file",
        key_arg,
        "--nodes",
        &c.node(1),
    ])));
    assert_eq!(
        steps(&out)[0].1,
        "newrelic-infra 1.20.0, running; no proxy; license key differs"
    );
    assert_eq!(s.leaks(&out, KEY), Vec::<String>::new());
    assert_eq!(s.leaks(&out, NEW_KEY), Vec::<String>::new());

    // remove: destructive, so --yes; then nothing is left.
    let agent = c.sh(3, "cat /run/newrelic-infra.pid").trim().to_string();
    let out = s.run(&refs(
        &c.args(&["run", "newrelic", "remove", "--json", "--yes"]),
    ));
    for (status, message) in steps(&out) {
        assert_eq!(
            (status.as_str(), message.as_str()),
            (
                "changed",
                "stopped newrelic-infra; purged newrelic-infra; removed /etc/newrelic-infra.yml; \
                 removed /etc/apt/sources.list.d/newrelic-infra.list"
            )
        );
    }
    assert_eq!(
        c.sh(
            3,
            "ls /etc/newrelic-infra.yml /usr/bin/newrelic-infra 2>/dev/null | wc -l"
        )
        .trim(),
        "0"
    );
    assert_eq!(
        c.sh(
            3,
            &format!("kill -0 {agent} 2>/dev/null && echo alive || echo gone")
        )
        .trim(),
        "gone"
    );

    // A malformed --apt-source is a usage error.
    let out = s.run(&refs(&c.args(&[
        "run",
        "newrelic",
        "install",
        "--license-key-file",
        key_arg,
        "--apt-source",
        "deb x\nrm -rf /",
    ])));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .starts_with("error: --apt-source takes one `deb ...` line"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
