//! Deny by default: ungranted imports are refused before anything runs,
//! and calls outside a grant's scope return permission-denied naming the
//! grant, with nothing changed on disk.

mod support;

use support::{Sandbox, only_step, scratch_rw, wasm};

#[test]
fn an_import_the_manifest_does_not_request_is_refused_at_install() {
    let s = Sandbox::new();
    let out = s.fails(
        1,
        &[
            "plugin",
            "install",
            "--yes",
            wasm("sneaky").to_str().unwrap(),
        ],
    );
    assert!(
        out.contains("imports `stackhost:host/fs@0.1.1` but its manifest does not request `fs`"),
        "{out}"
    );
}

#[test]
fn an_import_the_operator_did_not_grant_is_refused_before_it_runs() {
    let s = Sandbox::new();
    let out = s.fails(
        1,
        &[
            "plugin",
            "install",
            "--grant",
            "exec",
            wasm("probe").to_str().unwrap(),
        ],
    );
    assert!(
        out.contains("imports `stackhost:host/fs@0.1.1` but was not granted `fs`"),
        "{out}"
    );
    assert!(s.ok(&["plugin", "list"]).contains("no plugins installed"));
}

fn denied(s: &Sandbox, args: &[&str]) -> String {
    let (code, report) = s.report(args);
    let (status, message) = only_step(&report);
    assert_eq!((code, status.as_str()), (3, "failed"), "{report:#}");
    assert!(message.starts_with("permission denied: "), "{message}");
    message
}

#[test]
fn reading_outside_the_grant_is_denied_naming_the_grant() {
    let s = Sandbox::new();
    s.install("probe");
    let m = denied(&s, &["probe", "read", "/etc/hostname"]);
    assert!(
        m.contains("fs read of `/etc/hostname` on node local is outside the grant (fs read: /tmp/stackhost-test/ro, /tmp/stackhost-test/rw)"),
        "{m}"
    );
}

#[test]
fn writing_to_a_read_only_scope_is_denied() {
    let s = Sandbox::new();
    s.install("probe");
    std::fs::create_dir_all("/tmp/stackhost-test/ro").unwrap();
    let target = format!("/tmp/stackhost-test/ro/w-{}", std::process::id());
    let m = denied(&s, &["probe", "write", &target, "x"]);
    assert!(m.contains("(fs write: /tmp/stackhost-test/rw)"), "{m}");
    assert!(!std::path::Path::new(&target).exists());
}

#[test]
fn dot_dot_is_denied_and_nothing_is_written() {
    let s = Sandbox::new();
    s.install("probe");
    let dir = scratch_rw();
    let sneaky = format!("{}/../escaped-{}", dir.path().display(), std::process::id());
    let m = denied(&s, &["probe", "write", &sneaky, "x"]);
    assert!(
        m.contains("`..` is not allowed in paths (fs write: /tmp/stackhost-test/rw)"),
        "{m}"
    );
    assert!(!std::path::Path::new(&sneaky).exists());
}

#[test]
fn a_symlink_that_escapes_is_denied_and_nothing_is_written() {
    let s = Sandbox::new();
    s.install("probe");
    let dir = scratch_rw();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
    let via_link = format!("{}/link/planted", dir.path().display());
    let m = denied(&s, &["probe", "write", &via_link, "x"]);
    assert!(
        m.contains(&format!(
            "fs.write `{via_link}` on node local: {}/link leads outside its grant root through a symlink",
            dir.path().file_name().unwrap().to_string_lossy()
        )),
        "{m}"
    );
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        0,
        "something was written outside"
    );
    // Reading through the link is refused as well.
    std::fs::write(outside.path().join("secret"), "s").unwrap();
    denied(
        &s,
        &[
            "probe",
            "read",
            &format!("{}/link/secret", dir.path().display()),
        ],
    );
}

#[test]
fn a_program_not_in_the_grant_is_denied_and_does_not_run() {
    let s = Sandbox::new();
    s.install("probe");
    let dir = scratch_rw();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "keep me").unwrap();
    let m = denied(
        &s,
        &["probe", "exec", "--", "rm", "-f", victim.to_str().unwrap()],
    );
    assert_eq!(
        m,
        format!(
            "permission denied: `rm -f {}` is not in the exec grant: no granted pattern matches \
             it, argument for argument and as that user (exec grants: touch {{args...}}, \
             mkdir {{args...}}, echo {{args...}} (read-only), cat {{args...}} (read-only), \
             true {{args...}} (read-only), sleep {{args...}} (read-only))",
            victim.display()
        )
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    // A path to a granted program's name is not the granted program.
    denied(&s, &["probe", "exec", "/bin/echo", "x"]);
}

#[test]
fn calls_inside_the_grant_work() {
    let s = Sandbox::new();
    s.install("probe");
    let dir = scratch_rw();
    let file = dir.path().join("note.txt");
    let (code, r) = s.report(&["probe", "write", file.to_str().unwrap(), "inside the grant"]);
    assert_eq!((code, only_step(&r).0.as_str()), (0, "changed"), "{r:#}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "inside the grant");
    let (_, r) = s.report(&["probe", "read", file.to_str().unwrap()]);
    assert_eq!(only_step(&r).1, "inside the grant");
}

#[test]
fn a_command_declared_read_only_cannot_mutate_even_inside_the_grant() {
    let s = Sandbox::new();
    s.install("probe");
    let dir = scratch_rw();
    let target = dir.path().join("sneaked.txt");
    let t = target.to_str().unwrap();
    let m = denied(&s, &["probe", "sneak-write", t, "x"]);
    assert!(
        m.contains("this command is read-only, so `fs.write` on local is not allowed"),
        "{m}"
    );
    assert!(!target.exists());
    // The same call from the mutating command is inside the grant.
    let (code, report) = s.report(&["probe", "write", t, "x"]);
    assert_eq!(
        (code, only_step(&report).0.as_str()),
        (0, "changed"),
        "{report:#}"
    );
}

#[test]
fn archive_paths_are_scoped_and_dry_run_writes_nothing() {
    let s = Sandbox::new();
    s.install("pack");
    let dir = scratch_rw();
    std::fs::write(dir.path().join("a.txt"), "a").unwrap();
    let src = dir.path().to_str().unwrap();
    let dest = format!("{src}/out.tar.zst");

    let m = denied(&s, &["pack", "pack", src, "/etc/evil.tar.zst"]);
    assert!(
        m.contains("archive path `/etc/evil.tar.zst` is outside the grant (archive paths: /tmp/stackhost-test, /var/tmp/stackhost-bench)"),
        "{m}"
    );
    let m = denied(&s, &["pack", "pack", "/etc", &dest]);
    assert!(
        m.contains("fs read of `/etc` on node local is outside the grant"),
        "{m}"
    );
    assert!(!std::path::Path::new(&dest).exists());

    let (code, report) = s.report(&["pack", "pack", src, &dest, "--dry-run"]);
    assert_eq!(code, 0, "{report:#}");
    assert!(
        !std::path::Path::new(&dest).exists(),
        "a dry run writes no artifact"
    );
    let calls: Vec<&str> = report["phases"][0]["steps"][0]["mutations"]
        .as_array()
        .expect("the step's mutations")
        .iter()
        .map(|m| m["call"].as_str().unwrap())
        .collect();
    assert_eq!(
        calls,
        ["archive.create", "archive.add", "archive.finish"],
        "{report:#}"
    );
}

#[test]
fn a_disk_that_fills_fails_the_artifact_and_leaves_nothing() {
    let s = Sandbox::new();
    s.install("pack");
    let src = scratch_rw();
    let random: Vec<u8> = (0..4_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(src.path().join("big.bin"), &random).unwrap();
    let full = std::path::PathBuf::from(format!("/tmp/stackhost-test/full-{}", std::process::id()));
    std::fs::create_dir_all(&full).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=512k", "tmpfs"])
        .arg(&full)
        .status()
        .expect("mount runs");
    assert!(
        mounted.success(),
        "mounting a small tmpfs needs root (tests/run runs as root)"
    );
    let dest = full.join("out.tar");
    let (code, report) = s.report(&[
        "pack",
        "pack",
        src.path().to_str().unwrap(),
        dest.to_str().unwrap(),
    ]);
    let left: Vec<_> = std::fs::read_dir(&full)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let _ = std::process::Command::new("umount").arg(&full).status();
    let _ = std::fs::remove_dir(&full);
    let (status, message) = only_step(&report);
    assert_eq!((code, status.as_str()), (3, "failed"), "{report:#}");
    assert!(message.contains("No space left on device"), "{message}");
    assert!(
        left.is_empty(),
        "nothing is left on the full disk: {left:?}"
    );
}

#[test]
fn a_plan_may_only_read() {
    let s = Sandbox::new();
    s.install("probe");
    let dir = scratch_rw();
    let target = dir.path().join("planned.txt");
    for dry_run in [false, true] {
        let mut args = vec!["probe", "plan-write", target.to_str().unwrap(), "x"];
        if dry_run {
            args.push("--dry-run");
        }
        let (code, report) = s.report(&args);
        assert_eq!(code, 3, "{report:#}");
        let err = report["plan_error"].as_str().unwrap_or_default();
        assert!(
            err.contains("a plan may only read (make changes in a step), so `fs.write` on local is not allowed"),
            "{report:#}"
        );
        assert!(!target.exists());
    }
}
