//! The relocate plugin on a real node (the core node: controller and
//! postgresql roles, tests/cluster), started with `--cap-add SYS_ADMIN` so
//! it can bind-mount, with a btrfs image loop-mounted on this machine
//! bound in at /srv/dest (the "larger partition") and a small tmpfs at
//! /srv/tiny. Every check of the data, the mounts, /etc/fstab and the
//! roles' processes is made on the node itself (`docker exec`), not
//! through stackhost.

mod support;

#[path = "support/cluster.rs"]
mod cluster;

use cluster::{LoopFs, TestCluster};
use support::{Sandbox, refs};

const DROPLETS: &str = "/var/stackato/data/droplets";
const REGISTRY: &str = "/var/stackato/data/docker_registry";
const SERVICES: &str = "/var/stackato/services";

/// A droplet tree with what a copy most easily loses: hard links, a
/// relative and a dangling absolute symlink, owners with and without a
/// name, set-uid and sticky bits, old mtimes, user xattrs, a POSIX ACL
/// (written as its xattr: the node has no setfacl), a sparse file and
/// 12 MiB of random data.
const TREE: &str = r#"
set -e
mkdir -p /var/stackato/data/droplets && cd /var/stackato/data/droplets
useradd -M -u 1501 droplet-owner
mkdir -p app1/bin app2 shared
head -c 12582912 /dev/urandom > app1/blob
echo hello > app1/bin/run && chmod 4755 app1/bin/run && chown 1501:1501 app1/bin/run
ln app1/blob app2/blob-hardlink
ln -s ../app1/bin/run app2/run-link
ln -s /nonexistent/target app2/dangling
echo secret > app2/private && chmod 0600 app2/private && chown 4242:4343 app2/private
chmod 1777 shared && chmod 0700 app2
truncate -s 40M app1/sparse
python3 - <<'PY'
import os, struct
os.setxattr("app1/blob", "user.stackhost", b"droplet 1")
os.setxattr("app2/private", "user.checksum", b"\x00\x01binary")
# POSIX ACL v2: user::rw- user:1501:r-- group::r-- mask::r-- other::---
acl = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", t, p, i) for t, p, i in
    [(1, 6, 0xFFFFFFFF), (2, 4, 1501), (4, 4, 0xFFFFFFFF), (0x10, 4, 0xFFFFFFFF), (0x20, 0, 0xFFFFFFFF)])
os.setxattr("app2/private", "system.posix_acl_access", acl)
PY
touch -h -d '2020-02-29 12:34:56' app2/run-link
touch -d '2021-03-04 05:06:07' app1/blob app1/bin app2/private
touch -d '2019-01-01 00:00:00' app1 app2 shared
"#;

/// Every entry below a directory, one line each: type, owner, mode,
/// mtime (ns), size and sha256 of files, link count, the first path of
/// its inode (hard links), a link's target, and xattrs.
const MANIFEST: &str = r#"
import hashlib, os, stat, sys
root = sys.argv[1]
first = {}
def line(path):
    st = os.lstat(path)
    rel = os.path.relpath(path, root)
    kind = "l" if stat.S_ISLNK(st.st_mode) else "d" if stat.S_ISDIR(st.st_mode) else "f"
    same = first.setdefault((st.st_dev, st.st_ino), rel)
    extra, xattrs = "", []
    if kind == "l":
        extra = os.readlink(path)
    else:
        xattrs = sorted((x, os.getxattr(path, x).hex()) for x in os.listxattr(path))
    if kind == "f":
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        extra = f"{st.st_size} {h.hexdigest()} nlink={st.st_nlink}"
    print(rel, kind, st.st_uid, st.st_gid, oct(st.st_mode), st.st_mtime_ns, same, extra, xattrs)
line(root)
for d, dirs, files in os.walk(root):
    dirs.sort()
    for name in sorted(dirs + files):
        line(os.path.join(d, name))
"#;

fn manifest(c: &TestCluster, dir: &str) -> String {
    let out = c.docker(&["exec", &c.node(1), "python3", "-c", MANIFEST, dir]);
    assert!(out.lines().count() > 2, "{out}");
    out
}

fn pid(c: &TestCluster, role: &str) -> String {
    c.sh(1, &format!("cat /run/stackato-{role}.pid"))
        .trim()
        .to_string()
}

fn running(c: &TestCluster, role: &str) -> bool {
    c.sh(
        1,
        &format!("/etc/init.d/stackato-{role} status && echo running || echo stopped"),
    )
    .trim()
        == "running"
}

/// `status: message` of every step, in plan order, with its phase.
fn steps(r: &serde_json::Value) -> Vec<String> {
    r["phases"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| {
            p["steps"].as_array().into_iter().flatten().map(move |s| {
                format!(
                    "{} {}: {}",
                    p["name"].as_str().unwrap_or(""),
                    s["status"].as_str().unwrap_or(""),
                    s["message"].as_str().unwrap_or("")
                )
            })
        })
        .collect()
}

fn is_mount_point(c: &TestCluster, path: &str) -> bool {
    c.sh(1, &format!("mountpoint -q {path} && echo yes || echo no"))
        .trim()
        == "yes"
}

#[test]
fn droplets_move_intact_refusals_change_nothing_and_failures_switch_back() {
    let dest = LoopFs::new("btrfs", "300M");
    let run_args = format!(
        "--cap-add SYS_ADMIN -v {}:/srv/dest --tmpfs /srv/tiny:size=8m",
        dest.mnt().display()
    );
    // Declared after the image: dropped (containers gone) before it.
    let c = TestCluster::up_with_env(
        1,
        "sh-reloc",
        &[("STACKHOST_CLUSTER_RUN_ARGS_1", &run_args)],
    );
    c.sh(1, TREE);
    c.sh(1, "mkdir /srv/dest/droplets /srv/dest/full /srv/dest/services /srv/tiny/droplets /var/tmp/rootfs-dest /var/stackato/data/droplets/app1/inner; touch /srv/dest/full/x");
    let before = manifest(&c, DROPLETS);
    assert!(before.contains("system.posix_acl_access"), "{before}");
    let fstab0 = c.sh(1, "cat /etc/fstab");
    let pid0 = pid(&c, "controller");
    let s = Sandbox::new();
    s.install("relocate");
    let run = |args: &[&str]| {
        let mut all = vec!["relocate"];
        all.extend_from_slice(args);
        s.report(&refs(&c.args(&all)))
    };

    // Refusals in the plan: exit 3, the reason, and nothing stopped,
    // copied or switched.
    for (args, says) in [
        (
            vec!["droplets", "/srv/tiny/droplets"],
            "not enough space at DEST /srv/tiny/droplets on node ",
        ),
        (
            vec!["droplets", "/var/tmp/rootfs-dest"],
            "is on the root filesystem, not on a mounted volume",
        ),
        (
            vec!["droplets", "/srv/dest/nothing-here"],
            "DEST /srv/dest/nothing-here does not exist on node ",
        ),
        (
            vec!["droplets", "/srv/dest/full"],
            "DEST /srv/dest/full on node ",
        ),
        (vec!["droplets", "/srv/dest/full"], "is not empty"),
        (
            vec!["droplets", "/var/stackato/data/droplets/app1/inner"],
            "overlaps /var/stackato/data/droplets: choose a directory outside the data",
        ),
    ] {
        let (code, r) = run(&args);
        assert_eq!(code, 3, "{args:?}: {r:#}");
        let err = r["plan_error"].as_str().unwrap_or("");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(r["phases"].as_array().unwrap().is_empty(), "{r:#}");
    }
    // Data reached through a symlink is refused, not half-moved.
    c.sh(
        1,
        &format!("mkdir -p /var/tmp/registry-real && ln -s /var/tmp/registry-real {REGISTRY}"),
    );
    let (code, r) = run(&["docker-registry", "/srv/dest/droplets"]);
    assert_eq!(code, 3, "{r:#}");
    assert!(
        r["plan_error"].as_str().unwrap_or("").contains(&format!(
            "{REGISTRY} on node {} is a symlink: relocating through a link is not built",
            c.node(1)
        )),
        "{r:#}"
    );
    c.sh(1, &format!("rm {REGISTRY}"));
    // So is a tree with a filesystem mounted inside it.
    c.sh(
        1,
        &format!("mkdir -p {REGISTRY}/inner && mount -t tmpfs -o size=1m none {REGISTRY}/inner"),
    );
    let (code, r) = run(&["docker-registry", "/srv/dest/droplets"]);
    assert_eq!(code, 3, "{r:#}");
    assert!(
        r["plan_error"].as_str().unwrap_or("").contains(&format!(
            "{REGISTRY} on node {} has a filesystem mounted inside it ({REGISTRY}/inner)",
            c.node(1)
        )),
        "{r:#}"
    );
    c.sh(1, &format!("umount {REGISTRY}/inner && rm -r {REGISTRY}"));
    let (_, r) = run(&["droplets", "/srv/tiny/droplets"]);
    let err = r["plan_error"].as_str().unwrap();
    assert!(err.ends_with("nothing was stopped or copied"), "{err}");
    assert!(err.contains("8.0 MiB free"), "{err}");
    // Bad arguments are usage errors (exit 2).
    let out = s.fails(
        2,
        &refs(&c.args(&["run", "relocate", "droplets", "srv/dest/droplets"])),
    );
    assert!(
        out.contains("error: DEST `srv/dest/droplets` is not an absolute path"),
        "{out}"
    );
    let out = s.fails(
        2,
        &refs(&c.args(&["run", "relocate", "containers", "/srv/dest/droplets"])),
    );
    assert!(
        out.contains("error: no selected node has a role holding containers (dea)"),
        "{out}"
    );
    let out = s.fails(
        2,
        &refs(&c.args(&["run", "relocate", "cleanup", "logs", "--dry-run"])),
    );
    assert!(
        out.contains(
            "error: KIND is one of services, droplets, containers, docker-registry, not `logs`"
        ),
        "{out}"
    );
    assert_eq!(pid(&c, "controller"), pid0);
    assert!(!is_mount_point(&c, DROPLETS));
    assert_eq!(
        c.sh(1, "ls -A /srv/dest/droplets /srv/tiny/droplets"),
        "/srv/dest/droplets:\n\n/srv/tiny/droplets:\n"
    );

    // A dry run: the real preflight, every mutation listed, none made.
    let (code, r) = run(&["droplets", "/srv/dest/droplets", "--dry-run"]);
    assert_eq!(code, 0, "{r:#}");
    let shown = steps(&r).join("\n");
    for want in [
        "stop changed: would have stopped controller",
        "copy changed: would have copied /var/stackato/data/droplets",
        "switch changed: would have switched: /var/stackato/data/droplets is now /srv/dest/droplets (bind mount, in /etc/fstab)",
    ] {
        assert!(shown.contains(want), "{want}\n{shown}");
    }
    let mutations = |phase: usize| -> Vec<serde_json::Value> {
        r["phases"][phase]["steps"][0]["mutations"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let copy = format!("{:?}", mutations(1));
    assert!(
        copy.contains("rsync -aHAXS --numeric-ids --info=progress2 /var/stackato/data/droplets/ /srv/dest/droplets/"),
        "{copy}"
    );
    let switch = mutations(3);
    let diff: String = switch.iter().filter_map(|m| m["diff"].as_str()).collect();
    assert!(
        diff.contains("\n+/srv/dest/droplets /var/stackato/data/droplets none bind 0 0\n"),
        "{switch:#?}"
    );
    assert!(
        format!("{switch:?}")
            .contains("mount --bind /srv/dest/droplets /var/stackato/data/droplets"),
        "{switch:#?}"
    );
    assert_eq!(pid(&c, "controller"), pid0);
    assert!(!is_mount_point(&c, DROPLETS));
    assert_eq!(c.sh(1, "cat /etc/fstab"), fstab0);
    assert_eq!(c.sh(1, "ls -A /srv/dest/droplets"), "");

    // Services need quotas: DEST's btrfs has them off, so the plan warns.
    c.sh(
        1,
        &format!("mkdir -p {SERVICES}/filesystem/storage/stackatofs-1; echo data > {SERVICES}/filesystem/storage/stackatofs-1/f"),
    );
    let (code, r) = run(&["services", "/srv/dest/services", "--dry-run"]);
    assert_eq!(code, 0, "{r:#}");
    let events = format!("{:?}", r["plan_events"]);
    assert!(
        events.contains("/srv/dest/services is on btrfs without quotas, so the quotas Stackato sets for services will not be enforced there (stackhost run quota enable /srv/dest/services)"),
        "{events}"
    );

    // The move.
    let (code, r) = run(&["droplets", "/srv/dest/droplets"]);
    assert_eq!(code, 0, "{r:#}");
    let shown = steps(&r);
    assert_eq!(shown[0], "stop changed: stopped controller", "{shown:#?}");
    assert!(
        shown[1].starts_with("copy changed: copied /var/stackato/data/droplets"),
        "{shown:#?}"
    );
    assert!(
        shown[2].starts_with("verify changed: verified: "),
        "{shown:#?}"
    );
    assert!(
        shown[2].ends_with("rsync --checksum finds every file equal"),
        "{shown:#?}"
    );
    assert!(
        shown[3].starts_with(
            "switch changed: switched: /var/stackato/data/droplets is now /srv/dest/droplets"
        ),
        "{shown:#?}"
    );
    assert!(shown[4].starts_with("switch-back not-run"), "{shown:#?}");
    assert_eq!(shown[5], "start changed: started controller", "{shown:#?}");
    // The role was stopped and started: a new process, running.
    let pid1 = pid(&c, "controller");
    assert_ne!(pid1, pid0);
    assert!(running(&c, "controller"));
    // Every file's owner, mode, mtime, hash, links and xattrs: the same
    // at the old path (now the bind mount), in DEST, and in the kept copy.
    assert!(is_mount_point(&c, DROPLETS));
    assert_eq!(manifest(&c, DROPLETS), before);
    assert_eq!(manifest(&c, "/srv/dest/droplets"), before);
    let old = c
        .sh(1, "ls -d /var/stackato/data/droplets.pre-relocate-*")
        .trim()
        .to_string();
    assert!(
        old.len() == DROPLETS.len() + ".pre-relocate-20261206-013312".len(),
        "{old}"
    );
    assert_eq!(manifest(&c, &old), before);
    // The old path serves the new place, and the switch is in fstab.
    c.sh(1, &format!("echo new > {DROPLETS}/written-after"));
    assert_eq!(c.sh(1, "cat /srv/dest/droplets/written-after"), "new\n");
    assert_eq!(
        c.sh(1, "findmnt -n -o FSTYPE,FSROOT /var/stackato/data/droplets")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["btrfs", "/droplets"]
    );
    let fstab = c.sh(1, "cat /etc/fstab");
    assert!(fstab.starts_with(&fstab0), "{fstab}");
    assert!(
        fstab.ends_with("\n/srv/dest/droplets /var/stackato/data/droplets none bind 0 0\n"),
        "{fstab}"
    );
    c.sh(1, "findmnt --verify --tab-file /etc/fstab");

    // Again: already there, ok, nothing stopped.
    let (code, r) = run(&["droplets", "/srv/dest/droplets"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(
        steps(&r),
        ["relocate ok: /var/stackato/data/droplets is already at /srv/dest/droplets"]
    );
    assert_eq!(pid(&c, "controller"), pid1);
    // Mounted but no longer in /etc/fstab: the line is put back, once.
    c.sh(1, &format!("printf '%s' '{fstab0}' > /etc/fstab"));
    let (code, r) = run(&["droplets", "/srv/dest/droplets"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(
        steps(&r),
        [
            "relocate changed: /var/stackato/data/droplets is already at /srv/dest/droplets; added its bind mount to /etc/fstab"
        ]
    );
    assert_eq!(
        c.sh(1, "cat /etc/fstab"),
        format!(
            "{fstab0}# stackhost relocate droplets: {DROPLETS} lives in /srv/dest/droplets\n/srv/dest/droplets {DROPLETS} none bind 0 0\n"
        )
    );
    let (_, r) = run(&["droplets", "/srv/dest/droplets"]);
    assert_eq!(
        steps(&r),
        ["relocate ok: /var/stackato/data/droplets is already at /srv/dest/droplets"]
    );

    // Moving relocated data on again is not built, and says so.
    c.sh(1, "mkdir /srv/dest/droplets-2");
    let (code, r) = run(&["droplets", "/srv/dest/droplets-2"]);
    assert_eq!(code, 3, "{r:#}");
    assert!(
        r["plan_error"]
            .as_str()
            .unwrap_or("")
            .contains("/var/stackato/data/droplets on node ")
            && r["plan_error"]
                .as_str()
                .unwrap_or("")
                .contains("is itself a mount point (btrfs from /dev/loop"),
        "{r:#}"
    );
    assert_eq!(pid(&c, "controller"), pid1);

    // status: where each kind lives.
    let (code, r) = run(&["status"]);
    assert_eq!(code, 0, "{r:#}");
    let step = &r["phases"][0]["steps"][0];
    let data = step["data"].as_array().unwrap();
    let droplets = data.iter().find(|p| p["kind"] == "droplets").unwrap();
    assert_eq!(droplets["relocated"], true);
    assert_eq!(droplets["location"], "/srv/dest/droplets");
    assert_eq!(droplets["fstype"], "btrfs");
    assert_eq!(droplets["old_copies"][0], old.as_str());
    let text = step["message"].as_str().unwrap();
    let row = text.lines().find(|l| l.starts_with("droplets ")).unwrap();
    assert!(
        row.contains("/srv/dest/droplets") && row.contains("btrfs") && row.contains(&old),
        "{text}"
    );

    // cleanup: a dry run keeps the old copy, the real one removes it.
    let (code, r) = run(&["cleanup", "--dry-run"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(
        steps(&r),
        [format!("cleanup changed: would have removed {old}")]
    );
    assert_eq!(c.sh(1, &format!("ls -d {old}")).trim(), old);
    let (code, r) = run(&["cleanup", "--yes"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(steps(&r), [format!("cleanup changed: removed {old}")]);
    assert_eq!(
        c.sh(
            1,
            "ls -d /var/stackato/data/droplets.pre-relocate-* 2>/dev/null || echo gone"
        ),
        "gone\n"
    );
    let (_, r) = run(&["cleanup", "--yes"]);
    assert_eq!(steps(&r), ["cleanup ok: no old copies to remove"]);

    // A copy that fails midway (DEST is a subvolume whose quota fills up):
    // the data stays where it was, the role runs again, nothing is lost.
    c.sh(
        1,
        &format!(
            "set -e; sed 's/controller/docker_registry/g' /etc/init.d/stackato-controller > /etc/init.d/stackato-docker_registry
             chmod 755 /etc/init.d/stackato-docker_registry; /etc/init.d/stackato-docker_registry start
             mkdir -p {REGISTRY}/blobs; head -c 3145728 /dev/urandom > {REGISTRY}/blobs/layer1; head -c 3145728 /dev/urandom > {REGISTRY}/blobs/layer2
             btrfs quota enable /srv/dest; btrfs subvolume create /srv/dest/registry >/dev/null; btrfs qgroup limit 2M /srv/dest/registry"
        ),
    );
    let registry_before = manifest(&c, REGISTRY);
    let reg_pid = pid(&c, "docker_registry");
    let (code, r) = run(&["docker-registry", "/srv/dest/registry"]);
    assert_eq!(code, 3, "{r:#}");
    let shown = steps(&r);
    assert_eq!(
        shown[0], "stop changed: stopped docker_registry",
        "{shown:#?}"
    );
    assert!(
        shown[1].starts_with("copy failed: ") && shown[1].contains("Disk quota exceeded"),
        "{shown:#?}"
    );
    assert!(
        shown[2].starts_with("verify not-run") && shown[3].starts_with("switch not-run"),
        "{shown:#?}"
    );
    assert_eq!(
        shown[4],
        "switch-back ok: /var/stackato/data/docker_registry was not switched: nothing to undo; the (partial) copy in /srv/dest/registry was left for you to inspect or remove",
        "{shown:#?}"
    );
    assert_eq!(
        shown[5], "start changed: started docker_registry",
        "{shown:#?}"
    );
    assert!(running(&c, "docker_registry"));
    assert_ne!(pid(&c, "docker_registry"), reg_pid);
    assert!(!is_mount_point(&c, REGISTRY));
    assert_eq!(manifest(&c, REGISTRY), registry_before);
    assert_eq!(
        c.sh(
            1,
            "ls -d /var/stackato/data/docker_registry.pre-relocate-* 2>/dev/null || echo none"
        ),
        "none\n"
    );

    // A switch that fails (findmnt --verify refuses /etc/fstab, here for a
    // line that was broken before) is undone: unmounted, our line gone,
    // the old directory back; services need quotas, and DEST's btrfs has
    // them on by now, so no warning.
    c.sh(
        1,
        "echo '/dev/no-such-disk /mnt/nowhere ext4 defaults 0 2' >> /etc/fstab",
    );
    let services_before = manifest(&c, SERVICES);
    let fstab_broken = c.sh(1, "cat /etc/fstab");
    let pg_pid = pid(&c, "postgresql");
    let (code, r) = run(&["services", "/srv/dest/services"]);
    assert_eq!(code, 3, "{r:#}");
    assert!(r["plan_events"].as_array().unwrap().is_empty(), "{r:#}");
    let shown = steps(&r);
    assert_eq!(shown[0], "stop changed: stopped postgresql", "{shown:#?}");
    assert!(
        shown[2].starts_with("verify changed: verified: "),
        "{shown:#?}"
    );
    assert!(
        shown[3].starts_with("switch failed: ")
            && shown[3].contains("findmnt --verify refuses /etc/fstab"),
        "{shown:#?}"
    );
    assert!(
        shown[4].starts_with("switch-back changed: unmounted /srv/dest/services from /var/stackato/services; removed the bind mount from /etc/fstab; moved /var/stackato/services.pre-relocate-"),
        "{shown:#?}"
    );
    assert_eq!(shown[5], "start changed: started postgresql", "{shown:#?}");
    assert!(running(&c, "postgresql"));
    assert_ne!(pid(&c, "postgresql"), pg_pid);
    assert!(!is_mount_point(&c, SERVICES));
    assert_eq!(manifest(&c, SERVICES), services_before);
    assert_eq!(c.sh(1, "cat /etc/fstab"), fstab_broken);
    assert_eq!(
        c.sh(
            1,
            "ls -d /var/stackato/services.pre-relocate-* 2>/dev/null || echo none"
        ),
        "none\n"
    );
    // The droplets' relocation is untouched by all this.
    assert!(is_mount_point(&c, DROPLETS));

    // cleanup never removes an "old copy" of data that is not relocated:
    // it may be the only copy.
    let stray = "/var/stackato/services.pre-relocate-20200101-000000";
    c.sh(1, &format!("mkdir {stray} && echo only > {stray}/copy"));
    let (code, r) = run(&["cleanup", "services", "--yes"]);
    assert_eq!(code, 3, "{r:#}");
    assert_eq!(
        steps(&r),
        [format!(
            "cleanup failed: /var/stackato/services on node {} is not relocated (nothing is mounted there), so {stray} may be the only copy of its data: not removed",
            c.node(1)
        )]
    );
    assert_eq!(c.sh(1, &format!("cat {stray}/copy")), "only\n");

    // Unmount inside the node before the image goes.
    c.sh(1, &format!("umount {DROPLETS}"));
}
