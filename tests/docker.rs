//! The docker capability and the docker-image plugin against real
//! engines: a three-node cluster whose two DEAs (nodes 2 and 3) each run
//! their own dockerd inside the node container (DESIGN.md's recipe), so
//! two DEAs really are two engines, reached only through each node's SSH
//! connection. Node 1 (core) has the docker package but no engine
//! running: the "no engine" case. The base image
//! `stackato/stack-alsek:latest` is a tiny rootfs (dash, a few coreutils
//! and their libraries) imported into each DEA's engine; nothing is
//! pulled. What the tests check is read back from the engines themselves
//! with `docker exec NODE docker ...`, not from stackhost.
//!
//! One test function walks through everything on one cluster, in order
//! (a cluster with two engines takes a while to start).

mod support;

#[path = "support/cluster.rs"]
mod cluster;

use cluster::TestCluster;
use std::process::Command;
use std::time::{Duration, Instant};
use support::{Sandbox, refs};

const LATEST: &str = "stackato/stack-alsek:latest";

/// `docker run` arguments that let a dockerd run inside a node container.
const ENGINE_RUN_ARGS: &str = "--cap-add SYS_ADMIN --cap-add NET_ADMIN \
    --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
    --cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup:rw";

/// Builds a tiny rootfs inside a node and imports it as the base image.
const TINY_ROOTFS: &str = r#"set -e
r=$(mktemp -d)
mkdir -p $r/bin $r/etc $r/tmp $r/root
for p in /bin/dash /bin/cat /bin/echo /bin/ls /bin/rm /bin/mkdir /bin/touch /bin/true /bin/false /bin/sleep /usr/bin/test; do
  cp $p $r/bin/
  for l in $(ldd $p | grep -o '/[^ ]*'); do mkdir -p $r$(dirname $l); cp -L $l $r$l; done
done
ln -s dash $r/bin/sh
echo 'root:x:0:0:root:/root:/bin/sh' > $r/etc/passwd
tar -C $r -c . | docker import -c 'CMD ["/bin/sh"]' - stackato/stack-alsek:latest >/dev/null
rm -rf $r
"#;

fn docker_image() -> String {
    std::env::var("STACKHOST_DOCKER_NODE_IMAGE")
        .unwrap_or_else(|_| "stackhost-node:bookworm-3-docker".into())
}

const REGISTRY_USER: &str = "stackato";
const REGISTRY_PASSWORD: &str = "registry-pass-8c1f";

/// The registry's configuration on node 1: Debian's docker-registry with
/// htpasswd authentication.
const REGISTRY_CONFIG: &str = "version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/docker-registry
http:
  addr: :5000
auth:
  htpasswd:
    realm: stackhost-test
    path: /etc/docker/registry/htpasswd
";

/// Node 1's registry, as the DEAs' engines reach it.
fn registry(c: &TestCluster) -> String {
    format!("{}:5000", c.bridge_ip(1))
}

/// Start the registry on node 1 (core), with one user.
fn start_registry(c: &TestCluster) {
    let out = Command::new("python3")
        .args([
            "-c",
            "import crypt, sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))",
            REGISTRY_PASSWORD,
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
    c.sh(
        1,
        &format!(
            "printf '%s' '{REGISTRY_CONFIG}' > /etc/docker/registry/test.yml && \
             echo '{REGISTRY_USER}:{hash}' > /etc/docker/registry/htpasswd"
        ),
    );
    c.docker(&[
        "exec",
        "-d",
        &c.node(1),
        "sh",
        "-c",
        "docker-registry serve /etc/docker/registry/test.yml >/var/log/registry.log 2>&1",
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !c.sh(1, "ss -ltn").contains(":5000") {
        assert!(
            Instant::now() < deadline,
            "{}",
            c.sh(1, "cat /var/log/registry.log")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The cluster, with both DEA engines up and the base image imported.
fn cluster() -> TestCluster {
    // tests/run builds it up front; a lone `cargo test` builds it here.
    let out = Command::new(support::repo().join("tests/cluster"))
        .args(["image", "docker"])
        .output()
        .expect("tests/cluster runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let image = docker_image();
    let c = TestCluster::up_with_env(
        3,
        "stackhost-docker",
        &[
            ("STACKHOST_NODE_IMAGE", &image),
            ("STACKHOST_CLUSTER_RUN_ARGS_2", ENGINE_RUN_ARGS),
            ("STACKHOST_CLUSTER_RUN_ARGS_3", ENGINE_RUN_ARGS),
        ],
    );
    start_registry(&c);
    let dockerd = format!(
        "dockerd --storage-driver vfs --iptables=false --bridge=none \
         --insecure-registry {} >/var/log/dockerd.log 2>&1",
        registry(&c)
    );
    for i in [2, 3] {
        c.docker(&["exec", "-d", &c.node(i), "sh", "-c", &dockerd]);
    }
    for i in [2, 3] {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !engine_ok(&c, i) {
            assert!(
                Instant::now() < deadline,
                "dockerd on {} did not start: {}",
                c.node(i),
                c.sh(i, "tail -5 /var/log/dockerd.log")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        c.sh(i, TINY_ROOTFS);
    }
    c
}

fn engine_ok(c: &TestCluster, i: usize) -> bool {
    Command::new("docker")
        .args(["exec", &c.node(i), "docker", "info"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// `docker ARGS` run by node `i`'s own engine (through docker exec, not
/// stackhost); stdout trimmed.
fn engine(c: &TestCluster, i: usize, args: &[&str]) -> String {
    let mut all = vec!["exec", c.node(i).leak() as &str, "docker"];
    all.extend_from_slice(args);
    c.docker(&all).trim().to_string()
}

/// The id of `image` on node `i`, or None.
fn image_id(c: &TestCluster, i: usize, image: &str) -> Option<String> {
    let out = Command::new("docker")
        .args([
            "exec",
            &c.node(i),
            "docker",
            "image",
            "inspect",
            "-f",
            "{{.Id}}",
            image,
        ])
        .output()
        .expect("docker runs");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Every image and tag on node `i`, as its engine lists them (sorted:
/// the engine lists names of one image in no fixed order).
fn image_list(c: &TestCluster, i: usize) -> Vec<String> {
    let text = engine(
        c,
        i,
        &[
            "images",
            "--no-trunc",
            "--format",
            "{{.Repository}}:{{.Tag}} {{.ID}}",
        ],
    );
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines.sort();
    lines
}

/// `stackhost run ARGS --json` on the cluster: (exit code, report).
fn report(s: &Sandbox, c: &TestCluster, args: &[&str]) -> (i32, serde_json::Value) {
    report_env(s, c, args, &[]).0
}

/// [`report`] with environment; also stdout and stderr as text.
fn report_env(
    s: &Sandbox,
    c: &TestCluster,
    args: &[&str],
    env: &[(&str, &str)],
) -> ((i32, serde_json::Value), String) {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    let all = c.args(&all);
    let all = support::with_flags(&refs(&all), &["--json".to_string()]);
    let out = s.run_env(&refs(&all), env);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stackhost {all:?} printed no JSON report ({e}):\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (
        (out.status.code().unwrap_or(-1), json["report"].clone()),
        text,
    )
}

/// Every step of a report: (phase, node, status, message).
fn steps(r: &serde_json::Value) -> Vec<(String, String, String, String)> {
    r["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .flat_map(|p| {
            let phase = p["name"].as_str().unwrap_or("").to_string();
            p["steps"].as_array().expect("steps").iter().map(move |s| {
                (
                    phase.clone(),
                    s["node"].as_str().unwrap_or("").to_string(),
                    s["status"].as_str().unwrap_or("").to_string(),
                    s["message"].as_str().unwrap_or("").to_string(),
                )
            })
        })
        .collect()
}

/// The probe's one step on node `i`: (status, message).
fn probe(s: &Sandbox, c: &TestCluster, i: usize, call: &[&str]) -> (String, String) {
    probe_with(s, c, i, call, &[])
}

fn probe_with(
    s: &Sandbox,
    c: &TestCluster,
    i: usize,
    call: &[&str],
    flags: &[&str],
) -> (String, String) {
    let node = c.node(i);
    let mut args = vec!["docker-probe", "call", "--nodes", &node];
    args.extend_from_slice(flags);
    args.push("--");
    args.extend_from_slice(call);
    let (_, r) = report(s, c, &args);
    let all = steps(&r);
    assert_eq!(all.len(), 1, "{r:#}");
    (all[0].2.clone(), all[0].3.clone())
}

fn refused(s: &Sandbox, c: &TestCluster, call: &[&str], needles: &[&str]) {
    let (status, m) = probe(s, c, 2, call);
    assert_eq!(status, "failed", "{call:?}: {m}");
    for n in needles {
        assert!(m.contains(n), "{call:?}: `{n}` not in: {m}");
    }
    assert!(
        !m.contains('\u{1b}'),
        "{call:?}: a raw escape reached the message: {m:?}"
    );
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn docker_capability_and_base_image_upgrade_on_two_engines() {
    let c = cluster();
    let s = Sandbox::new();
    s.install("docker-probe");
    s.install("docker-image");
    let out = s.run(&["plugin", "info", "docker-image"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(
            "  Docker:\n        docker   list, inspect, build, tag, remove, push, pull on images stackato/stack-alsek:*, */stackato/stack-alsek:* on roles dea — "
        ),
        "the install shows the docker grant: {text}"
    );

    let base2 = image_id(&c, 2, LATEST).expect("base image on node 2");
    let base3 = image_id(&c, 3, LATEST).expect("base image on node 3");
    assert_ne!(base2, base3, "two imports, two engines: two ids");
    reads_on_each_engine(&s, &c, &base2, &base3);
    builds_tags_and_removes(&s, &c);
    refusals(&s, &c, &base2);
    dry_runs_change_nothing(&s, &c);
    status_upgrade_and_rollback(&s, &c, &base2, &base3);
    let marked3 = a_failure_restores_the_first_dea(&s, &c, &base2);
    push_once_pull_elsewhere(&s, &c, &marked3);
    prune_keeps_the_newest(&s, &c);
    per_call_overhead(&s, &c);
    newrelic_image_on_each_dea(&s, &c);
    dial_stdio_where_streamlocal_is_refused(&s, &c);
}

/// An `apt-get` for the tiny base image, which has no apt: it logs its
/// arguments, and `install PKG` leaves /usr/share/doc/PKG/stand-in, or
/// fails as apt does when /etc/apt-fail names PKG.
const APT_STAND_IN: &str = r#"#!/bin/sh
echo "$*" >> /var/log/apt-get.log
[ "$1" = install ] || exit 0
for a in "$@"; do last=$a; done
if [ -e /etc/apt-fail ] && [ "$(cat /etc/apt-fail)" = "$last" ]; then
    echo "E: Unable to locate package $last" >&2
    exit 100
fi
mkdir -p /usr/share/doc/$last && touch /usr/share/doc/$last/stand-in
"#;

/// Make node `i`'s latest the current latest plus the apt stand-in (and
/// /etc/apt-fail naming `fail`, if given), built by the engine itself.
fn with_apt_stand_in(c: &TestCluster, i: usize, fail: Option<&str>) {
    let fail = fail.map_or(String::new(), |p| {
        format!("echo {p} > $d/apt-fail && echo 'COPY apt-fail /etc/apt-fail' >> $d/Dockerfile && ")
    });
    c.sh(
        i,
        &format!(
            "set -e; d=$(mktemp -d); cat > $d/apt-get <<'EOF'\n{APT_STAND_IN}EOF\n\
             chmod 755 $d/apt-get; printf 'FROM {LATEST}\\nCOPY apt-get /usr/bin/apt-get\\nRUN mkdir -p /var/log\\n' > $d/Dockerfile; \
             {fail}docker build -q -t {LATEST} $d >/dev/null; rm -rf $d"
        ),
    );
}

/// `newrelic image`: the agent package built into each DEA's base image
/// (through the apt stand-in), labelled, latest moved with the previous
/// one kept; idempotent; a DEA that fails puts latest back on the one
/// done before it.
fn newrelic_image_on_each_dea(s: &Sandbox, c: &TestCluster) {
    s.install("newrelic");
    for i in [2, 3] {
        with_apt_stand_in(c, i, None);
    }
    let before = [
        image_id(c, 2, LATEST).unwrap(),
        image_id(c, 3, LATEST).unwrap(),
    ];
    let lists = [image_list(c, 2), image_list(c, 3)];
    let (code, r) = report(
        s,
        c,
        &["newrelic", "image", "--tag", "nr-test", "--dry-run"],
    );
    assert_eq!(code, 0, "{r:#}");
    for (phase, _, status, m) in steps(&r).into_iter().filter(|s| s.0 == "image") {
        assert_eq!(
            (phase.as_str(), status.as_str()),
            ("image", "changed"),
            "{m}"
        );
        assert!(
            m.starts_with("would keep latest (") && m.ends_with(
                " as pre-nr-test, build nr-test FROM latest with newrelic-infra (3 RUN steps) and tag it latest"
            ),
            "{m}"
        );
    }
    assert_eq!(
        [image_list(c, 2), image_list(c, 3)],
        lists,
        "a dry run changes nothing"
    );

    let (code, r) = report(s, c, &["newrelic", "image", "--tag", "nr-test"]);
    assert_eq!(code, 0, "{r:#}");
    for (n, i) in [(0, 2), (1, 3)] {
        let latest = image_id(c, i, LATEST).unwrap();
        assert_ne!(latest, before[n]);
        assert_eq!(
            image_id(c, i, "stackato/stack-alsek:nr-test").as_deref(),
            Some(latest.as_str())
        );
        assert_eq!(
            image_id(c, i, "stackato/stack-alsek:pre-nr-test").as_deref(),
            Some(before[n].as_str())
        );
        assert_eq!(
            engine(
                c,
                i,
                &[
                    "image",
                    "inspect",
                    "-f",
                    "{{index .Config.Labels \"com.stackhost.newrelic\"}}",
                    LATEST
                ]
            ),
            "newrelic-infra"
        );
        // The package is in the image, installed by the steps the plugin gave.
        assert_eq!(
            engine(
                c,
                i,
                &["run", "--rm", LATEST, "cat", "/var/log/apt-get.log"]
            ),
            "update\ninstall -y --no-install-recommends newrelic-infra\nclean"
        );
        engine(
            c,
            i,
            &[
                "run",
                "--rm",
                LATEST,
                "test",
                "-e",
                "/usr/share/doc/newrelic-infra/stand-in",
            ],
        );
    }
    let m = &steps(&r)[0].3;
    assert!(m.contains("The image holds no license key"), "{m}");
    // Again: ok, nothing built.
    let (code, r) = report(s, c, &["newrelic", "image", "--tag", "nr-test"]);
    assert_eq!(code, 0, "{r:#}");
    for (_, _, status, m) in steps(&r).into_iter().filter(|s| s.0 == "image") {
        assert_eq!(status, "ok", "{m}");
        assert!(m.ends_with(") already has newrelic-infra"), "{m}");
    }

    // The sysmond agent fails on node 3: node 2's latest goes back.
    with_apt_stand_in(c, 3, Some("newrelic-sysmond"));
    let latest2 = image_id(c, 2, LATEST).unwrap();
    let latest3 = image_id(c, 3, LATEST).unwrap();
    let (code, r) = report(
        s,
        c,
        &[
            "newrelic",
            "image",
            "--package",
            "newrelic-sysmond",
            "--tag",
            "nr-sysmond",
        ],
    );
    assert_eq!(code, 3, "{r:#}");
    let all = steps(&r);
    let status = |phase: &str, i: usize| {
        all.iter()
            .find(|s| s.0 == phase && s.1 == c.node(i))
            .map(|s| (s.2.clone(), s.3.clone()))
            .unwrap()
    };
    assert_eq!(status("image", 2).0, "changed");
    let (st, m) = status("image", 3);
    assert_eq!(st, "failed");
    assert!(
        m.contains("E: Unable to locate package newrelic-sysmond"),
        "{m}"
    );
    let (st, m) = status("restore", 2);
    assert_eq!(st, "changed", "{m}");
    assert!(m.starts_with("latest back to pre-nr-sysmond ("), "{m}");
    assert_eq!(image_id(c, 2, LATEST).unwrap(), latest2);
    assert_eq!(image_id(c, 3, LATEST).unwrap(), latest3);
}

/// A node whose sshd refuses stream-local forwarding: the host falls back
/// to `docker system dial-stdio` on an exec channel, and the same calls
/// work (read and write).
fn dial_stdio_where_streamlocal_is_refused(s: &Sandbox, c: &TestCluster) {
    // sshd (PID 1) rereads its configuration on SIGHUP; new connections
    // get it.
    c.sh(
        3,
        "echo 'AllowStreamLocalForwarding no' >> /etc/ssh/sshd_config && kill -HUP 1",
    );
    std::thread::sleep(Duration::from_secs(1));
    let node = c.node(3);
    let latest = image_id(c, 3, LATEST).unwrap();
    let ((code, r), text) = report_env(
        s,
        c,
        &["docker-probe", "call", "--nodes", &node, "--", "images"],
        &[("STACKHOST_LOG", "stackhost=debug")],
    );
    assert_eq!(code, 0, "{r:#}\n{text}");
    assert!(text.contains("trying `docker system dial-stdio`"), "{text}");
    let (_, m) = support::only_step(&r);
    assert!(
        m.split(' ')
            .any(|e| e.contains(LATEST) && e.ends_with(&format!("={latest}"))),
        "{m}"
    );
    let (status, m) = probe(
        s,
        c,
        3,
        &["tag", LATEST, "stackato/stack-alsek:through-dial-stdio"],
    );
    assert_eq!(status, "changed", "{m}");
    assert_eq!(
        image_id(c, 3, "stackato/stack-alsek:through-dial-stdio"),
        Some(latest)
    );
}

/// Each engine lists and inspects its own images and containers.
fn reads_on_each_engine(s: &Sandbox, c: &TestCluster, base2: &str, base3: &str) {
    let (base2, base3) = (base2.to_string(), base3.to_string());
    for (i, base) in [(2, &base2), (3, &base3)] {
        let (status, m) = probe(s, c, i, &["images"]);
        assert_eq!(status, "changed", "{m}");
        assert!(m.contains(&format!("{LATEST}={base}")), "node {i}: {m}");
        let (_, m) = probe(s, c, i, &["inspect", LATEST]);
        assert!(m.contains(&format!("id={base} tags={LATEST}")), "{m}");
        assert!(m.contains("layers=1"), "{m}");
        let created: i64 = m
            .split("created=")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .expect("created");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!((now - created).abs() < 3600, "created {created}, now {now}");
    }
    // A container the engine runs, listed with its image id.
    engine(
        c,
        2,
        &[
            "run",
            "-d",
            "--name",
            "app1",
            "--network",
            "none",
            LATEST,
            "sleep",
            "100000",
        ],
    );
    let (_, m) = probe(s, c, 2, &["containers"]);
    assert!(m.contains(&format!("app1:running:{base2}")), "{m}");
}

/// A real build (its log streamed, escaped), labels, a tag and a remove.
fn builds_tags_and_removes(s: &Sandbox, c: &TestCluster) {
    // The 0.1.0 `build` (no options: no cache) still builds.
    let (status, m) = probe(
        s,
        c,
        2,
        &[
            "build-plain",
            LATEST,
            "stackato/stack-alsek:plain",
            "echo plain > /plain",
        ],
    );
    assert_eq!(status, "changed", "{m}");
    let plain = image_id(c, 2, "stackato/stack-alsek:plain").expect("the plain build's tag");
    assert_eq!(m, format!("built={plain}"));
    let (status, m) = probe(
        s,
        c,
        2,
        &[
            "build",
            LATEST,
            "stackato/stack-alsek:probe",
            "echo built-by-probe > /probe",
        ],
    );
    assert_eq!(status, "changed", "{m}");
    let built = image_id(c, 2, "stackato/stack-alsek:probe").expect("the build's tag");
    assert_eq!(m, format!("built={built}"));
    assert_eq!(
        engine(
            c,
            2,
            &[
                "run",
                "--rm",
                "--network",
                "none",
                "stackato/stack-alsek:probe",
                "cat",
                "/probe"
            ]
        ),
        "built-by-probe"
    );
    assert_eq!(
        image_id(c, 3, "stackato/stack-alsek:probe"),
        None,
        "built on node 2 only"
    );
    // The build log streams to the progress display, escaped.
    let node2 = c.node(2);
    let out = s.run(&refs(&c.args(&[
        "run",
        "docker-probe",
        "call",
        "--nodes",
        &node2,
        "--verbose",
        "--",
        "build",
        LATEST,
        "stackato/stack-alsek:logged",
        "printf '\\033[31mred-line\\n'",
    ])));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("{node2} call: Step 2/2 : RUN")),
        "{err}"
    );
    assert!(
        err.contains("red-line") && !err.contains('\u{1b}'),
        "{err:?}"
    );
    // Labels reach the image; inspect shows them.
    let (status, m) = probe(
        s,
        c,
        2,
        &[
            "label",
            LATEST,
            "stackato/stack-alsek:labelled",
            "org.example.by",
            "probe",
        ],
    );
    assert_eq!(status, "changed", "{m}");
    let (_, m) = probe(s, c, 2, &["inspect", "stackato/stack-alsek:labelled"]);
    assert!(m.contains(r#"("org.example.by", "probe")"#), "{m}");
    // Tag and remove.
    let (status, m) = probe(
        s,
        c,
        2,
        &[
            "tag",
            "stackato/stack-alsek:probe",
            "stackato/stack-alsek:probe2",
        ],
    );
    assert_eq!(status, "changed", "{m}");
    assert_eq!(
        image_id(c, 2, "stackato/stack-alsek:probe2").as_deref(),
        Some(built.as_str())
    );
    let (status, m) = probe(s, c, 2, &["rmi", "stackato/stack-alsek:probe2"]);
    assert_eq!(status, "changed", "{m}");
    assert_eq!(image_id(c, 2, "stackato/stack-alsek:probe2"), None);
    assert!(
        image_id(c, 2, "stackato/stack-alsek:probe").is_some(),
        "only the name went"
    );
}

/// Every call outside the grant or its caps is refused with a message
/// that names why, with terminal escapes shown escaped.
fn refusals(s: &Sandbox, c: &TestCluster, base2: &str) {
    let base2 = base2.to_string();
    refused(
        s,
        c,
        &["tag", LATEST, "evil/image:latest"],
        &[
            "permission denied: docker tag of image `evil/image:latest` is outside the grant",
            "(grant: docker images [stackato/stack-alsek:*, registry.local:5000/*])",
        ],
    );
    refused(
        s,
        c,
        &[
            "tag",
            LATEST,
            "stackato/stack-alsek@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ],
        &[
            "invalid argument: image name `stackato/stack-alsek@sha256:",
            "has a digest",
        ],
    );
    refused(
        s,
        c,
        &[
            "tag",
            LATEST,
            "registry.local:5000.evil.com/stackato/stack-alsek:latest",
        ],
        &["has a malformed registry host"],
    );
    refused(
        s,
        c,
        &[
            "tag",
            LATEST,
            "registry.local.evil.com:5000/stackato/stack-alsek:latest",
        ],
        &["`registry.local.evil.com:5000/stackato/stack-alsek:latest` is outside the grant"],
    );
    refused(
        s,
        c,
        &["tag", LATEST, "evil.io/stackato/stack-alsek:latest"],
        &["is outside the grant"],
    );
    refused(
        s,
        c,
        &["tag", LATEST, "stackato/stack-alsek:x\u{1b}[2J"],
        &["invalid argument: image name `stackato/stack-alsek:x\\u{1b}[2J` has a malformed tag"],
    );
    refused(
        s,
        c,
        &[
            "build",
            "busybox:latest",
            "stackato/stack-alsek:from-hub",
            "true",
        ],
        &["docker build (FROM) of image `busybox:latest` is outside the grant"],
    );
    refused(
        s,
        c,
        &[
            "build",
            "stackato/stack-alsek:nowhere",
            "stackato/stack-alsek:x",
            "true",
        ],
        &[
            "not found: base image `stackato/stack-alsek:nowhere` is not on node",
            "a build does not pull it",
        ],
    );
    refused(
        s,
        c,
        &[
            "label",
            LATEST,
            "stackato/stack-alsek:l",
            "key\u{1b}[31m",
            "v",
        ],
        &["invalid argument: label `key\\u{1b}[31m` has a NUL or control character"],
    );
    refused(
        s,
        c,
        &["many-steps", LATEST, "stackato/stack-alsek:many", "65"],
        &["65 RUN steps given; a build takes at most 64"],
    );
    refused(
        s,
        c,
        &["big-step", LATEST, "stackato/stack-alsek:big", "9000"],
        &["RUN step 1 is 9005 bytes; a step is at most 8192"],
    );
    let long = format!("stackato/stack-alsek:{}", "a".repeat(300));
    refused(s, c, &["inspect", &long], &["is longer than 255 bytes"]);
    refused(
        s,
        c,
        &["rmi", &base2],
        &["invalid argument: docker remove-image takes a name, not an id"],
    );
    refused(
        s,
        c,
        &["push", "evil.io/x:latest"],
        &["is outside the grant"],
    );
    refused(
        s,
        c,
        &["restart", "app1"],
        &["permission denied: docker restart on", "is never granted"],
    );
    // The probe's grant has no `pull`: neither a pull nor a build that
    // would pull its base image.
    let no_pull = "permission denied: docker operation `pull` is not granted (grant: docker \
                   operations [list, inspect, build, tag, remove, push])";
    refused(
        s,
        c,
        &["pull", "registry.local:5000/stackato/stack-alsek:latest"],
        &[no_pull],
    );
    refused(
        s,
        c,
        &["build-pull", LATEST, "stackato/stack-alsek:pulled"],
        &[no_pull],
    );
    refused(
        s,
        c,
        &["build-context", "/srv/app", "stackato/stack-alsek:ctx"],
        &["unsupported: docker build from a context directory is not built into this host yet"],
    );
    // A push the grant allows reaches the engine, which answers (here: no
    // such image), and the answer names the call and the node.
    refused(
        s,
        c,
        &["push", "registry.local:5000/stackato/stack-alsek:none"],
        &[
            "docker push on node",
            "registry.local:5000/stackato/stack-alsek",
        ],
    );
    // A RUN step cannot add Dockerfile instructions: a newline stays in
    // the one step (the shell runs both lines), no `USER` instruction.
    let (status, m) = probe(
        s,
        c,
        2,
        &[
            "build",
            LATEST,
            "stackato/stack-alsek:nl",
            "echo a > /nl\nUSER nobody",
        ],
    );
    assert_eq!(
        status, "failed",
        "the shell runs `USER nobody` as a command: {m}"
    );
    assert!(
        m.contains("docker build of stackato/stack-alsek:nl on node"),
        "{m}"
    );
    // A node whose engine is not running: a clear error naming it.
    let (status, m) = probe(s, c, 1, &["images"]);
    assert_eq!(status, "unreachable", "{m}");
    assert!(
        m.contains(&format!(
            "node {} has no Docker engine at /var/run/docker.sock",
            c.node(1)
        )),
        "{m}"
    );
}

/// Dry runs record build, tag and remove, and change no image.
fn dry_runs_change_nothing(s: &Sandbox, c: &TestCluster) {
    let before = image_list(c, 2);
    let node = c.node(2);
    let (code, r) = report(
        s,
        c,
        &[
            "docker-probe",
            "call",
            "--nodes",
            &node,
            "--dry-run",
            "--",
            "build",
            LATEST,
            "stackato/stack-alsek:dry",
            "echo \u{1b}[31mred",
        ],
    );
    assert_eq!(code, 0, "{r:#}");
    let mutations = r["phases"][0]["steps"][0]["mutations"].to_string();
    assert!(
        mutations.contains(r#"build stackato/stack-alsek:dry FROM stackato/stack-alsek:latest, 1 RUN step(s), no cache; RUN echo \\u{1b}[31mred"#),
        "{mutations}"
    );
    for call in [
        vec![
            "tag",
            "stackato/stack-alsek:probe",
            "stackato/stack-alsek:dry2",
        ],
        vec!["rmi", "stackato/stack-alsek:probe"],
    ] {
        let (status, m) = probe_with(s, c, 2, &call, &["--dry-run"]);
        assert_eq!(status, "changed", "{m}");
    }
    let out = s.run(&refs(&c.args(&[
        "run",
        "docker-image",
        "upgrade",
        "--dry-run",
        "--tag",
        "upgrade-dry",
        "--run",
        "echo \u{1b}[2Jx",
    ])));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("make upgrade-dry (built FROM latest, 1 RUN step(s)) and tag it latest"),
        "{text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "raw escape in the dry-run output: {text:?}"
    );
    // Without --run, the guide's steps.
    let (code, r) = report(
        s,
        c,
        &[
            "docker-image",
            "upgrade",
            "--dry-run",
            "--nodes",
            &node,
            "--tag",
            "upgrade-guide",
        ],
    );
    assert_eq!(code, 0, "{r:#}");
    let mutations = r["phases"][0]["steps"][0]["mutations"].to_string();
    assert!(
        mutations.contains(
            "3 RUN step(s), no cache; RUN apt-get update; RUN unattended-upgrades -d; \
             RUN apt-get clean && apt-get autoremove"
        ),
        "{mutations}"
    );
    assert_eq!(
        image_list(c, 2),
        before,
        "the dry runs changed node 2's images"
    );
}

/// docker-image status, upgrade on both DEAs (then again: ok), rollback.
fn status_upgrade_and_rollback(s: &Sandbox, c: &TestCluster, base2: &str, base3: &str) {
    let (base2, base3) = (base2.to_string(), base3.to_string());
    let (code, r) = report(s, c, &["docker-image", "status"]);
    assert_eq!(code, 0, "{r:#}");
    let st = steps(&r);
    assert_eq!(st.len(), 2, "status runs on the two DEAs only: {r:#}");
    for (i, base) in [(2, &base2), (3, &base3)] {
        let step = r["phases"][0]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["node"] == c.node(i))
            .expect("a step per DEA");
        let data = &step["data"];
        assert_eq!(data["latest"]["id"], base.as_str(), "{data:#}");
        assert_eq!(data["stale"], serde_json::json!([]), "{data:#}");
    }

    // ------------------------------------------------ upgrade on two DEAs
    let upgrade = |tag: &str, run: &str| {
        report(
            s,
            c,
            &["docker-image", "upgrade", "--tag", tag, "--run", run],
        )
    };
    let (code, r) = upgrade("upgrade-t1", "echo upgraded > /upgraded");
    assert_eq!(code, 0, "{r:#}");
    for (i, base) in [(2, &base2), (3, &base3)] {
        let new = image_id(c, i, "stackato/stack-alsek:upgrade-t1").expect("the new tag");
        assert_eq!(
            image_id(c, i, LATEST).as_ref(),
            Some(&new),
            "node {i}: latest is the new image"
        );
        assert_eq!(
            image_id(c, i, "stackato/stack-alsek:pre-upgrade-t1").as_ref(),
            Some(base),
            "node {i}: the previous latest is kept"
        );
        assert_eq!(
            engine(
                c,
                i,
                &[
                    "run",
                    "--rm",
                    "--network",
                    "none",
                    LATEST,
                    "cat",
                    "/upgraded"
                ]
            ),
            "upgraded"
        );
    }
    let st = steps(&r);
    let on2 = st
        .iter()
        .find(|s| s.0 == "upgrade" && s.1 == c.node(2))
        .expect("node 2 step");
    assert_eq!(on2.2, "changed");
    assert!(
        on2.3.contains(
            "1 running container(s) on an older image: app1 (stackato/stack-alsek:pre-upgrade-t1)"
        ) && on2.3.contains("do not run docker restart"),
        "{}",
        on2.3
    );
    assert!(
        st.iter().any(|s| s.0 == "restore" && s.2 == "not-run"),
        "{r:#}"
    );
    // Again: nothing to do.
    let (code, r) = upgrade("upgrade-t1", "echo upgraded > /upgraded");
    assert_eq!(code, 0, "{r:#}");
    let ups: Vec<_> = steps(&r).into_iter().filter(|s| s.0 == "upgrade").collect();
    assert!(
        ups.iter()
            .all(|s| s.2 == "ok" && s.3.starts_with("latest is already upgrade-t1")),
        "{ups:?}"
    );
    // Status now names app1 as running an older image.
    let (_, r) = report(s, c, &["docker-image", "status", "--nodes", &c.node(2)]);
    let (_, _, _, m) = &steps(&r)[0];
    assert!(
        m.contains("app1 (stackato/stack-alsek:pre-upgrade-t1)"),
        "{m}"
    );

    // ------------------------------------------------ rollback
    let (code, r) = report(s, c, &["docker-image", "rollback"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(image_id(c, 2, LATEST).as_ref(), Some(&base2));
    assert_eq!(image_id(c, 3, LATEST).as_ref(), Some(&base3));
    let (_, r) = report(s, c, &["docker-image", "rollback"]);
    assert!(
        steps(&r).iter().all(|s| s.2 == "ok"),
        "a second rollback has nothing to do: {r:#}"
    );
}

/// A RUN step failing on the second DEA: the run halts and the on-failure
/// phase puts the first DEA's latest back. Returns node 3's latest.
fn a_failure_restores_the_first_dea(s: &Sandbox, c: &TestCluster, base2: &str) -> String {
    let base2 = base2.to_string();
    let upgrade = |tag: &str, run: &str| {
        report(
            s,
            c,
            &["docker-image", "upgrade", "--tag", tag, "--run", run],
        )
    };
    // Node 3's latest carries a marker the RUN step refuses.
    engine(c, 3, &["tag", LATEST, "stackato/stack-alsek:unmarked"]);
    c.sh(3, "printf 'FROM stackato/stack-alsek:unmarked\\nRUN touch /refuse-upgrade\\n' | docker build -q -t stackato/stack-alsek:latest - >/dev/null");
    let marked3 = image_id(c, 3, LATEST).unwrap();
    let (code, r) = upgrade("upgrade-t2", "test ! -e /refuse-upgrade");
    assert_ne!(code, 0, "{r:#}");
    let st = steps(&r);
    let failed = st
        .iter()
        .find(|s| s.0 == "upgrade" && s.1 == c.node(3))
        .unwrap();
    assert_eq!(failed.2, "failed", "{st:?}");
    assert!(
        failed
            .3
            .contains("docker build of stackato/stack-alsek:upgrade-t2 on node"),
        "{}",
        failed.3
    );
    let restored = st
        .iter()
        .find(|s| s.0 == "restore" && s.1 == c.node(2))
        .unwrap();
    assert_eq!(restored.2, "changed", "{st:?}");
    assert_eq!(
        image_id(c, 2, LATEST).as_ref(),
        Some(&base2),
        "node 2's latest restored"
    );
    assert_eq!(
        image_id(c, 3, LATEST).as_ref(),
        Some(&marked3),
        "node 3's latest untouched"
    );
    marked3
}

/// --push: built once on node 2, pushed to node 1's registry (htpasswd),
/// pulled by node 3; a wrong password fails without showing it.
fn push_once_pull_elsewhere(s: &Sandbox, c: &TestCluster, marked3: &str) {
    let marked3 = marked3.to_string();
    let reg = registry(c);
    // Each push's RUN step names its tag: two builds of the same step on
    // the same base within one second would be one image (same id).
    let push = |tag: &str, password: &str| {
        report_env(
            s,
            c,
            &[
                "docker-image",
                "upgrade",
                "--tag",
                tag,
                "--run",
                &format!("echo pushed {tag} > /pushed"),
                "--push",
                &reg,
                "--registry-user",
                REGISTRY_USER,
            ],
            &[("STACKHOST_SECRET_REGISTRY_PASSWORD", password)],
        )
    };
    // A wrong password: the push fails, nothing changes, the password is
    // never shown.
    let before2 = image_id(c, 2, LATEST);
    let ((code, r), text) = push("upgrade-t4", "wrong-pass-5d2e");
    assert_ne!(code, 0, "{r:#}");
    let st = steps(&r);
    let failed = st
        .iter()
        .find(|s| s.1 == c.node(2) && s.0 == "upgrade")
        .unwrap();
    assert_eq!(failed.2, "failed", "{st:?}");
    assert!(failed.3.contains("docker push on node"), "{}", failed.3);
    assert!(
        !text.contains("wrong-pass-5d2e"),
        "the password leaked: {text}"
    );
    assert_eq!(
        image_id(c, 2, LATEST),
        before2,
        "a failed push leaves latest as it was"
    );
    // The right one. Image times have one-second resolution, and prune
    // keeps the newest upgrade by creation time: build t3 a second after
    // t4, or the two tie (seen on a fast run).
    std::thread::sleep(Duration::from_millis(1100));
    let ((code, r), text) = push("upgrade-t3", REGISTRY_PASSWORD);
    assert_eq!(code, 0, "{r:#}");
    assert!(
        !text.contains(REGISTRY_PASSWORD),
        "the password leaked: {text}"
    );
    let st = steps(&r);
    let on3 = st
        .iter()
        .find(|s| s.1 == c.node(3) && s.0 == "upgrade-pull")
        .unwrap();
    assert!(on3.3.contains(&format!("pulled from {reg}")), "{st:?}");
    let built = image_id(c, 2, "stackato/stack-alsek:upgrade-t3").expect("built on node 2");
    assert_eq!(
        image_id(c, 3, "stackato/stack-alsek:upgrade-t3").as_ref(),
        Some(&built),
        "node 3 has the very image node 2 built (its own base differs: a build there would not)"
    );
    assert_eq!(image_id(c, 3, LATEST).as_ref(), Some(&built));
    assert_eq!(
        image_id(c, 3, "stackato/stack-alsek:pre-upgrade-t3").as_ref(),
        Some(&marked3)
    );
    assert_eq!(
        engine(
            c,
            3,
            &["run", "--rm", "--network", "none", LATEST, "cat", "/pushed"]
        ),
        "pushed upgrade-t3"
    );
    // A registry outside the grant: refused before anything is sent.
    refused(
        s,
        c,
        &["push", &format!("{reg}/stackato/stack-alsek:upgrade-t3")],
        &[
            "permission denied: docker push of image",
            "is outside the grant (grant: docker images [stackato/stack-alsek:*, registry.local:5000/*])",
        ],
    );
}

/// prune --keep 1, dry run first, then twice.
fn prune_keeps_the_newest(s: &Sandbox, c: &TestCluster) {
    let before = (image_list(c, 2), image_list(c, 3));
    let (code, r) = report(s, c, &["docker-image", "prune", "--keep", "1", "--dry-run"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(
        (image_list(c, 2), image_list(c, 3)),
        before,
        "a dry run prunes nothing"
    );
    let (code, r) = report(s, c, &["docker-image", "prune", "--keep", "1", "--yes"]);
    assert_eq!(code, 0, "{r:#}");
    let st = steps(&r);
    let on2 = &st.iter().find(|s| s.1 == c.node(2)).unwrap().3;
    assert!(
        on2.contains("kept pre-upgrade-t4 (used by app1)"),
        "{on2}\nnode 2 before: {:#?}",
        before.0
    );
    let has =
        |i: usize, tag: &str| image_id(c, i, &format!("stackato/stack-alsek:{tag}")).is_some();
    for tag in ["upgrade-t1", "upgrade-t2", "upgrade-t4"] {
        assert!(!has(2, tag), "node 2 still has {tag}: {on2}");
    }
    assert!(
        has(2, "upgrade-t3") && has(2, "pre-upgrade-t3"),
        "the newest upgrade stays"
    );
    assert!(has(2, "pre-upgrade-t1"), "its image runs app1");
    assert!(!has(3, "upgrade-t1") && !has(3, "pre-upgrade-t2"), "{st:?}");
    assert!(has(3, "upgrade-t3") && has(3, "pre-upgrade-t3"));
    let (_, r) = report(s, c, &["docker-image", "prune", "--keep", "1", "--yes"]);
    assert!(
        steps(&r).iter().all(|s| s.2 == "ok"),
        "a second prune has nothing to do: {r:#}"
    );
}

/// Figures, not assertions: `list-images` through stackhost (a whole
/// `stackhost run`: process, plugin instance, SSH connection, a
/// streamlocal channel) against `ssh node docker images`, same node.
fn per_call_overhead(s: &Sandbox, c: &TestCluster) {
    // `list-images` through stackhost (a whole `stackhost run`: process,
    // plugin instance, SSH connection, a streamlocal channel) against
    // `ssh node docker images` (ssh connection, docker CLI), same node.
    let port = c.docker(&["port", &c.node(2), "22/tcp"]);
    let port = port
        .lines()
        .next()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .trim()
        .to_string();
    let key = c.path("id_ed25519");
    let known = c.path("known_hosts");
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let (status, _) = probe(s, c, 2, &["images"]);
        ours.push(t.elapsed());
        assert_eq!(status, "changed");
        let t = Instant::now();
        let out = Command::new("ssh")
            .args([
                "-i",
                key.to_str().unwrap(),
                "-p",
                &port,
                "-o",
                "BatchMode=yes",
            ])
            .arg(format!("-oUserKnownHostsFile={}", known.display()))
            .args(["root@127.0.0.1", "docker", "images"])
            .output()
            .expect("ssh runs");
        theirs.push(t.elapsed());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (ours, theirs) = (median(ours), median(theirs));
    eprintln!(
        "list-images, median of 20: stackhost run docker-probe call images {ours:?}, \
         ssh node docker images {theirs:?}, ratio {:.2}",
        ours.as_secs_f64() / theirs.as_secs_f64()
    );
    // The whole status command on both DEAs (3 engine calls per DEA).
    let status: Vec<Duration> = (0..10)
        .map(|_| {
            let t = Instant::now();
            let (code, _) = report(s, c, &["docker-image", "status"]);
            assert_eq!(code, 0);
            t.elapsed()
        })
        .collect();
    eprintln!(
        "docker-image status on 2 DEAs, median of 10: {:?}",
        median(status)
    );
}

/// The local node reaches its engine through the socket directly (no
/// SSH): `list-images` on this machine's own engine (read only) gives the
/// ids `docker images` gives.
#[test]
fn the_local_node_lists_its_own_engine_through_the_socket() {
    let s = Sandbox::new();
    s.install("docker-probe");
    let (code, r) = s.report(&["docker-probe", "call", "images"]);
    assert_eq!(code, 0, "{r:#}");
    let (status, m) = support::only_step(&r);
    assert_eq!(status, "changed", "{m}");
    let out = Command::new("docker")
        .args([
            "images",
            "--no-trunc",
            "--format",
            "{{.Repository}}:{{.Tag}} {{.ID}}",
        ])
        .output()
        .expect("docker runs");
    let listed = String::from_utf8_lossy(&out.stdout);
    // The node images only: other tests add and remove images meanwhile.
    let tagged: Vec<&str> = listed
        .lines()
        .filter(|l| l.starts_with("stackhost-node:"))
        .collect();
    assert!(
        !tagged.is_empty(),
        "this machine's engine has the node images"
    );
    for line in tagged {
        let (tag, id) = line.split_once(' ').unwrap();
        assert!(
            m.split(' ')
                .any(|e| e.ends_with(&format!("={id}")) && e.contains(tag)),
            "{tag} {id} not in {m}"
        );
    }
}

/// The docker-probe component with its manifest edited in place (same
/// length, so the binary stays well formed): `find` replaced by `put`.
fn edited_probe(dir: &std::path::Path, find: &str, put: &str) -> std::path::PathBuf {
    let put = format!("{put:<width$}", width = find.len());
    assert_eq!(find.len(), put.len(), "{put:?} is longer than {find:?}");
    let bytes = std::fs::read(support::wasm("docker-probe")).unwrap();
    let at = bytes
        .windows(find.len())
        .position(|w| w == find.as_bytes())
        .expect("the manifest is in the file verbatim");
    let mut edited = bytes.clone();
    edited[at..at + put.len()].copy_from_slice(put.as_bytes());
    let file = dir.join("edited.wasm");
    std::fs::write(&file, &edited).unwrap();
    file
}

/// `restart` (in the WIT since 0.1.0) is never granted, and an image
/// pattern with a digest is not a pattern: both refused at install.
#[test]
fn a_manifest_asking_for_docker_restart_or_a_digest_pattern_is_refused() {
    let s = Sandbox::new();
    let dir = tempfile::tempdir().unwrap();
    for (find, put, needle) in [
        (
            r#""remove", "push"]"#,
            r#""restart"]"#,
            "docker operation `restart` is never granted: the guide says \"Do not run the \
             docker restart command\"; app containers are restarted through the platform",
        ),
        (
            r#""registry.local:5000/*"]"#,
            r#""stackato/x@sha256:*"]"#,
            "docker image pattern `stackato/x@sha256:*` is not a reference pattern",
        ),
    ] {
        let file = edited_probe(dir.path(), find, put);
        let out = s.run(&["plugin", "install", "--yes", file.to_str().unwrap()]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "installed: {text}");
        assert!(text.contains(needle), "{text}");
    }
    assert!(
        !s.ok(&["plugin", "list"]).contains("docker-probe"),
        "nothing was installed"
    );
}
