//! The newrelic plugin on three real Debian nodes. Each gets a local APT
//! archive, built in the test with dpkg-deb, holding stand-in
//! `newrelic-infra` and `newrelic-sysmond` packages whose services (SysV
//! init scripts, as the containers have no systemd) just run `sleep`. The
//! license key must reach each node's config and appear nowhere the host
//! writes. A copy of the archive signed with a key made here by gpg proves
//! `--apt-key-file`: apt takes it with that key and with no other.

mod support;

#[path = "support/cluster.rs"]
mod cluster;

use cluster::TestCluster;
use support::{Sandbox, refs};

const KEY: &str = "NRAK-5f3a9c1e7d2b4a6f8e0c";
const NEW_KEY: &str = "NRAK-0b1c2d3e4f5a6b7c8d9e";
const SOURCE: &str = "deb [trusted=yes] file:/srv/nr ./";

/// The stand-in packages in a local archive: `newrelic-infra` and the
/// guide's older `newrelic-sysmond`, each a sleeping daemon behind its
/// init script; Debian's own sources removed.
const SETUP: &str = r#"
set -e
mkdir -p /srv/nr
stand_in() { # package version binary
    d=$(mktemp -d); mkdir -p "$d/DEBIAN" "$d/etc/init.d" "$d/usr/bin" "$d/etc/newrelic"
    printf 'Package: %s\nVersion: %s\nArchitecture: all\nMaintainer: test <t@example>\nDescription: stand-in New Relic agent\n' "$1" "$2" > "$d/DEBIAN/control"
    printf '#!/bin/sh\nexec sleep infinity\n' > "$d/usr/bin/$3"
    cat > "$d/etc/init.d/$1" <<EOF
#!/bin/sh
PID=/run/$1.pid
case "\$1" in
    start) start-stop-daemon --start --quiet --background --make-pidfile --pidfile \$PID --startas /usr/bin/$3 ;;
    stop) start-stop-daemon --stop --quiet --pidfile \$PID --remove-pidfile --retry 5; exit 0 ;;
    restart) "\$0" stop; "\$0" start ;;
    status) start-stop-daemon --status --pidfile \$PID ;;
esac
EOF
    chmod 755 "$d/usr/bin/$3" "$d/etc/init.d/$1"
    dpkg-deb --build "$d" "/srv/nr/$1_$2_all.deb" >/dev/null
}
stand_in newrelic-infra 1.20.0 newrelic-infra
stand_in newrelic-sysmond 2.3.0 nrsysmond
cd /srv/nr
: > Packages
for f in *.deb; do
    { dpkg-deb -f "$f"; echo "Filename: ./$f"; echo "Size: $(stat -c %s "$f")"; echo "SHA256: $(sha256sum "$f" | cut -d' ' -f1)"; echo; } >> Packages
done
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

    sysmond_is_the_guides_older_agent(&c, &s, key_arg);
    a_signed_source_is_trusted_only_with_its_key(&c, &s, key_arg);
}

/// `--package newrelic-sysmond` on node 2: its own config format and
/// service, the key as secret as before; status and remove know it.
fn sysmond_is_the_guides_older_agent(c: &TestCluster, s: &Sandbox, key_arg: &str) {
    let n2 = c.node(2);
    let install = || {
        s.run(&refs(&c.args(&[
            "run",
            "newrelic",
            "install",
            "--json",
            "--package",
            "newrelic-sysmond",
            "--license-key-file",
            key_arg,
            "--apt-source",
            SOURCE,
            "--proxy",
            "http://proxy.example:3128",
            "--nodes",
            &n2,
        ])))
    };
    let out = install();
    assert_eq!(
        steps(&out),
        [(
            "changed".to_string(),
            "wrote /etc/apt/sources.list.d/newrelic-infra.list; installed newrelic-sysmond; \
             wrote /etc/newrelic/nrsysmond.cfg; restarted newrelic-sysmond"
                .to_string()
        )]
    );
    assert_eq!(s.leaks(&out, KEY), Vec::<String>::new());
    let config = c.sh(2, "cat /etc/newrelic/nrsysmond.cfg");
    let lines: Vec<&str> = config.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        lines,
        [
            format!("license_key={KEY}"),
            format!("hostname={n2}"),
            "proxy=http://proxy.example:3128".to_string(),
            "labels=stackhost_node:".to_string() + &n2 + ";stackhost_roles:router,dea",
        ]
    );
    assert_eq!(
        c.sh(2, "stat -c %a /etc/newrelic/nrsysmond.cfg").trim(),
        "600"
    );
    c.sh(2, "service newrelic-sysmond status"); // exit 0: running
    assert_eq!(
        c.sh(2, "ls /etc/newrelic-infra.yml 2>/dev/null | wc -l")
            .trim(),
        "0"
    );

    let out = install();
    assert_eq!(
        steps(&out),
        [(
            "ok".to_string(),
            "newrelic-sysmond 2.3.0 installed, configured and running".to_string()
        )]
    );

    // A config others can read is written again, 0600.
    c.sh(2, "chmod 644 /etc/newrelic/nrsysmond.cfg");
    assert_eq!(
        steps(&install()),
        [(
            "changed".to_string(),
            "wrote /etc/newrelic/nrsysmond.cfg; restarted newrelic-sysmond".to_string()
        )]
    );
    assert_eq!(
        c.sh(2, "stat -c %a /etc/newrelic/nrsysmond.cfg").trim(),
        "600"
    );

    let out = s.run(&refs(&c.args(&[
        "run",
        "newrelic",
        "status",
        "--json",
        "--license-key-file",
        key_arg,
        "--nodes",
        &n2,
    ])));
    assert_eq!(
        steps(&out),
        [(
            "ok".to_string(),
            "newrelic-sysmond 2.3.0, running; proxy http://proxy.example:3128; license key matches"
                .to_string()
        )]
    );
    assert_eq!(s.leaks(&out, KEY), Vec::<String>::new());

    let out = s.run(&refs(&c.args(&[
        "run", "newrelic", "remove", "--json", "--yes", "--nodes", &n2,
    ])));
    assert_eq!(
        steps(&out),
        [(
            "changed".to_string(),
            "stopped newrelic-sysmond; purged newrelic-sysmond; removed /etc/newrelic/nrsysmond.cfg; \
             removed /etc/apt/sources.list.d/newrelic-infra.list"
                .to_string()
        )]
    );
    assert_eq!(
        c.sh(
            2,
            "ls /etc/newrelic/nrsysmond.cfg /usr/bin/nrsysmond 2>/dev/null | wc -l"
        )
        .trim(),
        "0"
    );

    let out = s.run(&refs(&c.args(&[
        "run",
        "newrelic",
        "install",
        "--package",
        "newrelic-agent",
        "--license-key-file",
        key_arg,
    ])));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).lines().next(),
        Some("error: --package takes `newrelic-infra` or `newrelic-sysmond`, not `newrelic-agent`")
    );
}

/// gpg on this machine, with its own home.
fn gpg(home: &std::path::Path, args: &[&str], stdin: Option<&str>) -> Vec<u8> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("gpg")
        .arg("--homedir")
        .arg(home)
        .args([
            "--batch",
            "--quiet",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gpg runs (tests/run installs gnupg)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or("").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "gpg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A repository whose InRelease is signed with a key made here: apt on
/// node 1 refuses it without the key and with another key, and takes it
/// with `--apt-key-file`, which lands in /etc/apt/keyrings and is named
/// by the `signed-by=` stackhost adds. No `trusted=yes` anywhere.
fn a_signed_source_is_trusted_only_with_its_key(c: &TestCluster, s: &Sandbox, key_arg: &str) {
    let n1 = c.node(1);
    let home = tempfile::tempdir().unwrap();
    for uid in ["repo@stackhost.test", "other@stackhost.test"] {
        gpg(
            home.path(),
            &["--quick-gen-key", uid, "ed25519", "sign", "never"],
            None,
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let armored = |uid: &str, file: &str| {
        let path = dir.path().join(file);
        std::fs::write(&path, gpg(home.path(), &["--armor", "--export", uid], None)).unwrap();
        path.display().to_string()
    };
    let (good, other) = (
        armored("repo@stackhost.test", "repo.asc"),
        armored("other@stackhost.test", "other.asc"),
    );
    let release = c.sh(
        1,
        "mkdir -p /srv/nrs && cp /srv/nr/*.deb /srv/nr/Packages /srv/nr/Release /srv/nrs/ && cat /srv/nrs/Release",
    );
    let signed = String::from_utf8(gpg(
        home.path(),
        &["--local-user", "repo@stackhost.test", "--clearsign"],
        Some(&release),
    ))
    .unwrap();
    c.sh(
        1,
        &format!("cat > /srv/nrs/InRelease <<'END_OF_INRELEASE'\n{signed}END_OF_INRELEASE\n"),
    );
    const SIGNED: &str = "deb file:/srv/nrs ./";
    let install_with = |key: Option<&str>, extra: &[&str]| {
        let mut args = vec![
            "run",
            "newrelic",
            "install",
            "--json",
            "--license-key-file",
            key_arg,
            "--apt-source",
            SIGNED,
            "--nodes",
            &n1,
        ];
        if let Some(k) = key {
            args.extend(["--apt-key-file", k]);
        }
        args.extend_from_slice(extra);
        s.run(&refs(&c.args(&args)))
    };
    let install = |key: Option<&str>| install_with(key, &[]);

    // A dry run lists the keyring and the line naming it; writes nothing.
    let out = install_with(Some(&good), &["--dry-run"]);
    assert_eq!(
        steps(&out),
        [(
            "changed".to_string(),
            "would have written /etc/newrelic-infra.yml; written /etc/apt/sources.list.d/newrelic-infra.list; \
             written /etc/apt/keyrings/newrelic.gpg; installed newrelic-infra; restarted newrelic-infra"
                .to_string()
        )]
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mutations = json["report"]["phases"][0]["steps"][0]["mutations"]
        .as_array()
        .unwrap();
    let source = mutations
        .iter()
        .find(|m| {
            m["detail"]
                .as_str()
                .unwrap()
                .starts_with("/etc/apt/sources.list.d/")
        })
        .unwrap();
    assert!(
        source["diff"]
            .as_str()
            .unwrap()
            .contains("\n+deb [signed-by=/etc/apt/keyrings/newrelic.gpg] file:/srv/nrs ./\n"),
        "{source:#}"
    );
    assert!(
        mutations.iter().any(|m| m["detail"]
            .as_str()
            .unwrap()
            .starts_with("/etc/apt/keyrings/newrelic.gpg (")),
        "{mutations:#?}"
    );
    assert_eq!(
        c.sh(1, "ls /etc/apt/keyrings/newrelic.gpg /etc/apt/sources.list.d/newrelic-infra.list 2>/dev/null | wc -l")
            .trim(),
        "0"
    );

    // Without the key, and with a key that did not sign it: apt refuses.
    for key in [None, Some(other.as_str())] {
        let out = install(key);
        assert_eq!(out.status.code(), Some(3), "{key:?}");
        let (status, message) = steps(&out).remove(0);
        assert_eq!(status, "failed");
        assert!(
            message.starts_with(&format!(
                "apt-get update on {n1}: `apt-get` exited with status 100"
            )) && message.contains("NO_PUBKEY")
                && message
                    .contains("E: The repository 'file:/srv/nrs ./ InRelease' is not signed."),
            "{key:?}: {message}"
        );
        assert_eq!(
            c.sh(1, "dpkg-query -W newrelic-infra 2>/dev/null | wc -l")
                .trim(),
            "0"
        );
    }

    // With it: the keyring holds exactly that key, the line names it.
    let out = install(Some(&good));
    assert_eq!(
        steps(&out),
        [(
            "changed".to_string(),
            "wrote /etc/apt/keyrings/newrelic.gpg; installed newrelic-infra; restarted newrelic-infra"
                .to_string()
        )]
    );
    assert_eq!(
        c.sh(1, "cat /etc/apt/sources.list.d/newrelic-infra.list"),
        "deb [signed-by=/etc/apt/keyrings/newrelic.gpg] file:/srv/nrs ./\n"
    );
    let binary = gpg(home.path(), &["--export", "repo@stackhost.test"], None);
    assert_eq!(
        c.sh(1, "stat -c %a /etc/apt/keyrings/newrelic.gpg; od -An -v -tx1 /etc/apt/keyrings/newrelic.gpg | tr -d ' \\n'"),
        format!(
            "644\n{}",
            binary.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    );
    c.sh(1, "service newrelic-infra status");
    assert_eq!(s.leaks(&out, KEY), Vec::<String>::new());

    // Again: nothing to write.
    let out = install(Some(&good));
    assert_eq!(steps(&out)[0].0, "ok", "{:?}", steps(&out));

    // A line that sends apt to another keyring, a key without a line.
    for (args, want) in [
        (
            vec![
                "--apt-source",
                "deb [signed-by=/usr/share/keyrings/x.gpg] file:/srv/nrs ./",
            ],
            "error: --apt-source says signed-by=/usr/share/keyrings/x.gpg, but --apt-key-file installs the key as /etc/apt/keyrings/newrelic.gpg",
        ),
        (
            vec![],
            "error: --apt-key-file needs --apt-source: the key only checks the repository that line adds",
        ),
    ] {
        let mut all = vec![
            "run",
            "newrelic",
            "install",
            "--license-key-file",
            key_arg,
            "--apt-key-file",
            &good,
        ];
        all.extend(args);
        let out = s.run(&refs(&c.args(&all)));
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with(want), "{stderr}");
    }
}
