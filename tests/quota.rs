//! The quota plugin on a real filesystem node: a btrfs image loop-mounted
//! on this machine and bound into the node container (started with
//! `--cap-add SYS_ADMIN`) at the filesystem services' storage directory,
//! one subvolume per `stackatofs-*` service. This kernel enforces btrfs
//! qgroups (and has no usable ext4 user quotas: DESIGN.md), so a limit
//! `quota set` puts on a service is proven by writing past it as that
//! service's user and getting EDQUOT. Everything is checked on the node
//! itself (`docker exec`), not through stackhost.

mod support;

#[path = "support/cluster.rs"]
mod cluster;

use cluster::{LoopFs, TestCluster};
use support::{Sandbox, refs};

const STORAGE: &str = "/var/stackato/services/filesystem/storage";
const A: &str = "stackatofs-2623db6af1dc84b";
const B: &str = "stackatofs-77aa01";

/// The storage's qgroup rows as btrfs itself prints them: path -> (referenced, max referenced).
fn qgroups(c: &TestCluster) -> std::collections::BTreeMap<String, (u64, String)> {
    c.sh(3, &format!("btrfs qgroup show --raw -re {STORAGE}"))
        .lines()
        .filter(|l| l.starts_with("0/"))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w[5].to_string(), (w[1].parse().unwrap(), w[3].to_string()))
        })
        .collect()
}

/// The steps' messages of a report, joined.
fn messages(r: &serde_json::Value) -> String {
    r["phases"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["steps"].as_array().into_iter().flatten())
        .map(|s| format!("{}: {}", s["status"], s["message"].as_str().unwrap_or("")))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn enable_set_enforce_show_and_refusals_on_a_btrfs_filesystem_node() {
    let btrfs = LoopFs::new("btrfs", "300M");
    let ext4 = LoopFs::new("ext4", "32M");
    let ext4_dev = ext4.device();
    assert!(ext4_dev.starts_with("/dev/loop"), "{ext4_dev}");
    // quotacheck and quotaon look for the device node.
    let run_args = format!(
        "--cap-add SYS_ADMIN -v {}:{STORAGE} -v {}:/srv/ext4 --device {ext4_dev}:{ext4_dev}",
        btrfs.mnt().display(),
        ext4.mnt().display()
    );
    // Node 3 is dea and filesystem (tests/cluster); the cluster is
    // declared after the images so it is dropped (containers gone) first.
    let c = TestCluster::up_with_env(
        3,
        "sh-quota",
        &[("STACKHOST_CLUSTER_RUN_ARGS_3", &run_args)],
    );
    let fs_node = c.node(3);
    c.sh(
        3,
        &format!(
            "set -e; cd {STORAGE}
             for s in {A} {B}; do useradd -M -s /bin/sh $s; btrfs subvolume create $s >/dev/null; chown $s $s; done"
        ),
    );
    let s = Sandbox::new();
    s.install("quota");
    let on3 = |args: &[&str]| {
        let mut all = vec!["quota"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--nodes", &fs_node]);
        c.args(&all)
    };

    // `quota set --user A --limit LIMIT EXTRA...` on the filesystem node.
    let set_a = |limit: &str, extra: &[&str]| {
        let mut args = vec!["set", "--user", A, "--limit", limit];
        args.extend_from_slice(extra);
        s.report(&refs(&on3(&args)))
    };

    // show before quotas are on: the mount, quotas off, and the way out.
    let (code, r) = s.report(&refs(&on3(&["show"])));
    assert_eq!(code, 0, "{r:#}");
    let step = &r["phases"][0]["steps"][0];
    let text = step["message"].as_str().unwrap();
    assert!(
        text.starts_with(&format!("{STORAGE} on {STORAGE} (btrfs, /dev/loop")),
        "{text}"
    );
    assert!(text.contains("quotas off"), "{text}");
    assert!(
        text.contains(&format!("stackhost run quota enable {STORAGE}")),
        "{text}"
    );
    assert_eq!(step["data"][0]["quota_enabled"], false, "{step:#}");
    assert_eq!(step["data"][0]["mount"]["fstype"], "btrfs");

    // set while quotas are off: refused in the plan, nothing changes.
    let (code, r) = set_a("1M", &["--no-backup-check"]);
    assert_eq!(code, 3, "{r:#}");
    assert!(
        r["plan_error"]
            .as_str()
            .unwrap_or("")
            .contains("btrfs quotas are off"),
        "{r:#}"
    );

    // enable: a dry run says what it would do and leaves quotas off.
    let (code, r) = s.report(&refs(&on3(&["enable", "--dry-run"])));
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(
        messages(&r),
        format!("\"changed\": would turn btrfs quotas on at {STORAGE}")
    );
    let off = c.docker(&[
        "exec",
        &fs_node,
        "sh",
        "-c",
        &format!("btrfs qgroup show {STORAGE} 2>&1 || true"),
    ]);
    assert!(off.contains("quotas not enabled"), "{off}");
    // ... the real run turns them on; a second run is ok.
    let (code, r) = s.report(&refs(&on3(&["enable"])));
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(
        messages(&r),
        format!("\"changed\": turned btrfs quotas on at {STORAGE}")
    );
    assert!(qgroups(&c).contains_key(A), "{:?}", qgroups(&c));
    let (_, r) = s.report(&refs(&on3(&["enable"])));
    assert_eq!(
        messages(&r),
        format!("\"ok\": quotas already on at {STORAGE}")
    );

    // Bad input is a usage error (exit 2) before anything runs.
    for (args, says) in [
        (
            vec!["set", "--user", A, "--limit", "12X"],
            "--limit takes a size such as 200M, 1G or 204800K (or `none`), not `12X`",
        ),
        (vec!["set", "--user", A, "--limit", "1.5G"], "not `1.5G`"),
        (
            vec!["set", "--user", "stackatofs-nope", "--limit", "1M"],
            "no filesystem service `stackatofs-nope` under /var/stackato/services/filesystem/storage",
        ),
        (
            vec!["set", "--user", "root", "--limit", "1M"],
            "--user takes a filesystem service name (stackatofs-...), not `root`",
        ),
        (
            vec!["set", "--limit", "1M"],
            "say which services: --user stackatofs-... or --all-filesystem-services",
        ),
        (
            vec![
                "set",
                "--user",
                A,
                "--all-filesystem-services",
                "--limit",
                "1M",
            ],
            "exclude each other",
        ),
        (
            vec!["show", "relative/path"],
            "PATH `relative/path` is not an absolute path: give the absolute path of the place itself",
        ),
        (
            vec!["show", "--user", "../etc"],
            "--user takes a filesystem service name (stackatofs-...), not `../etc`",
        ),
    ] {
        let out = s.fails(
            2,
            &refs(&c.args(&[&["run", "quota"], &args[..], &["--nodes", &fs_node]].concat())),
        );
        assert!(
            out.starts_with("error: ") && out.contains(says),
            "{args:?}: {out}"
        );
    }

    // No backup export newer than a day: refused, with the guide's reason.
    let empty = tempfile::tempdir_in("/tmp").unwrap();
    let dir = empty.path().to_str().unwrap();
    let (code, r) = set_a("1M", &["--backup-dir", dir]);
    assert_eq!(code, 3, "{r:#}");
    let err = r["plan_error"].as_str().unwrap_or("");
    assert!(
        err.contains(&format!(
            "refused: no backup export of the filesystem services newer than a day in {dir}"
        )) && err.contains("--no-backup-check"),
        "{r:#}"
    );
    assert_eq!(qgroups(&c)[A].1, "none");

    // A backup directory outside the plugin's archive grant is refused
    // by the host, naming the grant.
    let (code, r) = set_a("1M", &["--backup-dir", "/etc"]);
    assert_eq!(code, 3, "{r:#}");
    let err = r["plan_error"].as_str().unwrap_or("");
    assert!(
        err.contains("permission denied") && err.contains("/etc"),
        "{err}"
    );

    // With a fresh export of the filesystem role (backup's own), the same
    // set passes the check (shown as a dry run: nothing changes yet).
    s.install("backup");
    let backups = tempfile::tempdir_in("/tmp").unwrap();
    let bdir = backups.path().to_str().unwrap();
    let (code, r) = s.report(&refs(&c.args(&[
        "backup",
        "export",
        "--only",
        "filesystem",
        bdir,
    ])));
    assert_eq!(code, 0, "{r:#}");
    let (code, r) = set_a("1M", &["--backup-dir", bdir, "--dry-run"]);
    assert_eq!(code, 0, "{r:#}");
    let events = format!("{:?}", r["plan_events"]);
    assert!(
        events.contains(&format!("backup export found: {bdir}/")),
        "{events}"
    );
    assert_eq!(qgroups(&c)[A].1, "none");

    // A dry run says what it would limit and changes nothing.
    let (code, r) = set_a("1M", &["--no-backup-check", "--dry-run"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(
        messages(&r),
        format!("\"changed\": would limit {A} to 1M (was none)")
    );
    assert_eq!(qgroups(&c)[A].1, "none");

    // The real run sets the qgroup limit; again is ok.
    let (code, r) = set_a("1M", &["--no-backup-check"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(
        messages(&r),
        format!("\"changed\": limited {A} to 1M (was none)")
    );
    assert_eq!(qgroups(&c)[A].1, "1048576");
    assert_eq!(qgroups(&c)[B].1, "none");
    let (_, r) = set_a("1024K", &["--no-backup-check"]);
    assert_eq!(messages(&r), format!("\"ok\": already 1M: {A}"));

    // Enforcement: the service's user cannot write past its limit; the
    // unlimited one can.
    let write = |user: &str| {
        c.sh(
            3,
            &format!(
                "su -s /bin/sh {user} -c 'dd if=/dev/zero of={STORAGE}/{user}/f bs=64k count=32 conv=fsync' 2>&1; echo rc=$?"
            ),
        )
    };
    let a = write(A);
    assert!(
        a.contains("Disk quota exceeded") && a.contains("rc=1"),
        "{a}"
    );
    let b = write(B);
    assert!(b.contains("rc=0") && !b.contains("quota"), "{b}");

    // show --user: the numbers are btrfs's own.
    c.sh(3, "sync");
    let (code, r) = s.report(&refs(&on3(&["show", "--user", A])));
    assert_eq!(code, 0, "{r:#}");
    let step = &r["phases"][0]["steps"][0];
    let rows = step["data"][0]["qgroups"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{step:#}");
    let truth = qgroups(&c);
    assert_eq!(rows[0]["path"], A);
    assert_eq!(rows[0]["referenced"].as_u64().unwrap(), truth[A].0);
    assert_eq!(rows[0]["max_referenced"].as_u64().unwrap(), 1 << 20);
    let text = step["message"].as_str().unwrap();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(A))
        .unwrap();
    assert!(line.trim_end().ends_with("1M"), "{text}");
    assert!(!text.contains(B), "{text}");

    // A service that is not on this node: skipped, saying so.
    let (code, r) = s.report(&refs(&on3(&["show", "--user", "stackatofs-elsewhere"])));
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(
        messages(&r),
        format!("\"skipped\": no subvolume `stackatofs-elsewhere` under {STORAGE} on this node")
    );

    // Every service at once, the guide's retroactive adjustment.
    let (code, r) = s.report(&refs(&on3(&[
        "set",
        "--all-filesystem-services",
        "--limit",
        "2M",
        "--no-backup-check",
    ])));
    assert_eq!(code, 0, "{r:#}");
    let m = messages(&r);
    assert!(
        m.contains(&format!("limited {A} to 2M (was 1M)"))
            && m.contains(&format!("limited {B} to 2M (was none)")),
        "{m}"
    );
    assert_eq!(qgroups(&c)[A].1, "2097152");
    assert_eq!(qgroups(&c)[B].1, "2097152");

    // A service kept as a plain directory cannot be limited: refused,
    // nothing changes.
    c.sh(3, &format!("mkdir {STORAGE}/stackatofs-plain"));
    let (code, r) = s.report(&refs(&on3(&[
        "set",
        "--all-filesystem-services",
        "--limit",
        "3M",
        "--no-backup-check",
    ])));
    assert_eq!(code, 3, "{r:#}");
    assert!(
        r["plan_error"].as_str().unwrap_or("").contains("stackatofs-plain under /var/stackato/services/filesystem/storage are plain directories, not btrfs subvolumes"),
        "{r:#}"
    );
    assert_eq!(qgroups(&c)[A].1, "2097152");
    c.sh(3, &format!("rmdir {STORAGE}/stackatofs-plain"));

    // ext4: the dry run shows the guide's commands and the /etc/fstab
    // diff; the real run fails at quotaon, saying this kernel cannot, and
    // leaves /etc/fstab alone.
    let fstab_line = format!("{ext4_dev} /srv/ext4 ext4 defaults 0 2");
    c.sh(3, &format!("echo '{fstab_line}' >> /etc/fstab"));
    let fstab0 = c.sh(3, "cat /etc/fstab");
    let (code, r) = s.report(&refs(&on3(&["enable", "/srv/ext4", "--dry-run"])));
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(
        messages(&r),
        "\"changed\": would turn user quotas on at /srv/ext4 (mount -o remount,usrjquota=aquota.user,jqfmt=vfsv0; quotacheck -cum; quotaon -uv); add usrjquota=aquota.user,jqfmt=vfsv0 to /srv/ext4's options in /etc/fstab"
    );
    let mutations = r["phases"][0]["steps"][0]["mutations"].as_array().unwrap();
    let details: Vec<&str> = mutations
        .iter()
        .filter_map(|m| m["detail"].as_str())
        .collect();
    let all = details.join("\n");
    for cmd in [
        "mount -o remount,usrjquota=aquota.user,jqfmt=vfsv0 /srv/ext4",
        "quotacheck -cum /srv/ext4",
        "quotaon -uv /srv/ext4",
    ] {
        assert!(all.contains(cmd), "{cmd} in {mutations:#?}");
    }
    let diff: String = mutations
        .iter()
        .filter_map(|m| m["diff"].as_str())
        .collect();
    assert!(
        diff.contains(&format!("-{fstab_line}\n"))
            && diff.contains(&format!(
                "+{ext4_dev} /srv/ext4 ext4 defaults,usrjquota=aquota.user,jqfmt=vfsv0 0 2\n"
            )),
        "{diff}"
    );
    assert_eq!(c.sh(3, "cat /etc/fstab"), fstab0);
    assert!(
        !c.sh(3, "findmnt -n -o OPTIONS /srv/ext4")
            .contains("usrjquota")
    );
    let (code, r) = s.report(&refs(&on3(&["enable", "/srv/ext4"])));
    assert_eq!(code, 3, "{r:#}");
    let m = messages(&r);
    assert!(
        m.starts_with("\"failed\": quotaon -uv /srv/ext4 failed on node ")
            && m.contains("this kernel lacks support for Linux user quotas on ext4")
            && m.contains("Quota format not supported in kernel")
            && m.ends_with("/etc/fstab was not changed"),
        "{m}"
    );
    assert_eq!(c.sh(3, "cat /etc/fstab"), fstab0);
    // quota set is built for btrfs only, and says so.
    c.sh(3, &format!("mkdir /srv/ext4/{A}"));
    let (code, r) = s.report(&refs(&on3(&[
        "set",
        "/srv/ext4",
        "--user",
        A,
        "--limit",
        "1M",
        "--no-backup-check",
    ])));
    assert_eq!(code, 3, "{r:#}");
    assert!(
        r["plan_error"]
            .as_str()
            .unwrap_or("")
            .contains("is on ext4 (/srv/ext4): `quota set` is built for btrfs qgroups only"),
        "{r:#}"
    );
    // A filesystem with no quotas at all is refused by name.
    c.sh(1, "mkdir -p /var/stackato/data/droplets");
    let (code, r) = s.report(&refs(&c.args(&["quota", "enable", "--nodes", &c.node(1)])));
    assert_eq!(code, 3, "{r:#}");
    assert!(
        r["plan_error"]
            .as_str()
            .unwrap_or("")
            .contains("is on overlay (/), which has no quota support"),
        "{r:#}"
    );
}
