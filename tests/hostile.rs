//! A hostile plugin against the sandbox: each attempt to leave the grant
//! (symlinks planted in copies and artifacts, races swapping a directory
//! for a link, predictable temporary names, set-uid copies, FIFOs, huge
//! reads, messages and records, an oversized manifest) must fail, leave
//! the outside file as it was, and leave the host serving `hello info`.
//! Every case runs on the local node; the same attempts over SSH run on
//! one container node in `the_sandbox_holds_on_a_node_over_ssh`.

mod support;

#[path = "support/cluster.rs"]
mod cluster;

use cluster::TestCluster;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use support::{Sandbox, only_step, refs, wasm};

const RO: &str = "/tmp/stackhost-hostile/ro";
const RW: &str = "/tmp/stackhost-hostile/rw";
const ART: &str = "/tmp/stackhost-hostile/art";

/// A fresh directory under each grant root, and one outside every grant.
struct Scratch {
    ro: tempfile::TempDir,
    rw: tempfile::TempDir,
    art: tempfile::TempDir,
    outside: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        for root in [RO, RW, ART] {
            std::fs::create_dir_all(root).unwrap();
        }
        Scratch {
            ro: tempfile::tempdir_in(RO).unwrap(),
            rw: tempfile::tempdir_in(RW).unwrap(),
            art: tempfile::tempdir_in(ART).unwrap(),
            outside: tempfile::tempdir().unwrap(),
        }
    }

    fn ro(&self, p: &str) -> String {
        format!("{}/{p}", self.ro.path().display())
    }
    fn rw(&self, p: &str) -> String {
        format!("{}/{p}", self.rw.path().display())
    }
    fn art(&self, p: &str) -> String {
        format!("{}/{p}", self.art.path().display())
    }
    fn outside(&self, p: &str) -> PathBuf {
        self.outside.path().join(p)
    }

    /// A root-only file outside every grant, for an attempt to aim at.
    fn victim(&self, name: &str, content: &str) -> PathBuf {
        let victim = self.outside(name);
        std::fs::write(&victim, content).unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
        victim
    }
}

/// The victim still holds `content`, with its mode.
fn untouched(victim: &Path, content: &str) {
    assert_eq!(std::fs::read_to_string(victim).unwrap(), content);
    assert_eq!(mode(victim), 0o600);
}

fn host() -> Sandbox {
    let s = Sandbox::new();
    s.install("hostile");
    s.install("hello");
    s
}

/// Run `hostile do ARGS` and return (exit code, step status, message).
fn attempt(s: &Sandbox, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["hostile", "do"];
    all.extend_from_slice(args);
    let (code, report) = s.report(&all);
    let (status, message) = only_step(&report);
    (code, status, message)
}

/// The attempt fails with `permission denied` (or `kind`) naming `what`.
fn refused(s: &Sandbox, args: &[&str], kind: &str, what: &str) -> String {
    let (code, status, message) = attempt(s, args);
    assert_eq!(
        (code, status.as_str()),
        (3, "failed"),
        "{args:?}: {message}"
    );
    assert!(message.starts_with(kind), "{args:?}: {message}");
    assert!(message.contains(what), "{args:?}: {message}");
    message
}

/// The host still runs a plugin after the attempt.
fn still_serves(s: &Sandbox) {
    let (code, report) = s.report(&["hello", "info"]);
    assert_eq!(code, 0, "hello info after the attempt: {report:#}");
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn copy_never_plants_or_writes_through_an_outward_symlink() {
    let s = host();
    let x = Scratch::new();
    let victim = x.victim("victim", "outside");
    // Stage one: a read-scope tree holding a link out.
    std::fs::create_dir(x.ro.path().join("tree")).unwrap();
    symlink(&victim, x.ro.path().join("tree/victim")).unwrap();
    refused(
        &s,
        &["copy", &x.ro("tree"), &x.rw("tree")],
        "permission denied: ",
        "would point outside the grant",
    );
    assert!(std::fs::symlink_metadata(x.rw.path().join("tree/victim")).is_err());
    // Stage two: the link already in the write scope (planted by a local
    // user); copying a plain tree over it replaces the link.
    std::fs::create_dir(x.ro.path().join("plain")).unwrap();
    std::fs::write(x.ro.path().join("plain/victim"), "from the plugin").unwrap();
    std::fs::create_dir_all(x.rw.path().join("tree2")).unwrap();
    symlink(&victim, x.rw.path().join("tree2/victim")).unwrap();
    let (code, status, m) = attempt(&s, &["copy", &x.ro("plain"), &x.rw("tree2")]);
    assert_eq!((code, status.as_str()), (0, "changed"), "{m}");
    untouched(&victim, "outside");
    assert_eq!(
        std::fs::read_to_string(x.rw.path().join("tree2/victim")).unwrap(),
        "from the plugin"
    );
    // A dangling link in the write scope: the copy must not create its
    // outside target.
    std::fs::write(x.ro.path().join("file"), "data").unwrap();
    symlink(x.outside("created"), x.rw.path().join("dangling")).unwrap();
    attempt(&s, &["copy", &x.ro("file"), &x.rw("dangling")]);
    assert!(
        !x.outside("created").exists(),
        "the copy created the link's target"
    );
    // And straight through a directory link out.
    symlink(x.outside.path(), x.rw.path().join("out")).unwrap();
    refused(
        &s,
        &["copy", &x.ro("file"), &x.rw("out/file")],
        "permission denied: ",
        "leads outside its grant root through a symlink",
    );
    assert!(!x.outside("file").exists());
    still_serves(&s);
}

#[test]
fn a_race_swapping_a_directory_for_a_link_never_reads_outside() {
    let s = host();
    let x = Scratch::new();
    std::fs::write(x.outside("secret"), "OUTSIDE").unwrap();
    let d = x.rw.path().join("d");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("secret"), "inside").unwrap();
    symlink(x.outside.path(), x.rw.path().join("evil")).unwrap();
    // A local user swaps `d` and the link as fast as it can while the
    // plugin reads d/secret.
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        let dir = x.rw.path().to_path_buf();
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = std::fs::rename(dir.join("d"), dir.join("tmp"));
                let _ = std::fs::rename(dir.join("evil"), dir.join("d"));
                let _ = std::fs::rename(dir.join("d"), dir.join("evil"));
                let _ = std::fs::rename(dir.join("tmp"), dir.join("d"));
                swaps += 1;
            }
            swaps
        })
    };
    let (code, status, m) = attempt(&s, &["read-loop", &x.rw("d/secret"), "3000", "OUTSIDE"]);
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert_eq!((code, status.as_str()), (0, "ok"), "{m}");
    assert!(m.contains("escaped=0"), "{m}");
    let inside: u64 = m
        .split_whitespace()
        .find_map(|w| w.strip_prefix("inside="))
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(
        inside > 0 && swaps > 100,
        "the race did not run: {m}, {swaps} swaps"
    );
    still_serves(&s);
}

#[test]
fn a_planted_temporary_name_is_never_written_through() {
    let s = host();
    let x = Scratch::new();
    let victim = x.victim("root-only", "root's");
    // Links at every name the old scheme could use (`.NAME.stackhost-PID`).
    for pid in 1..4096 {
        symlink(&victim, x.rw.path().join(format!(".f.stackhost-{pid}"))).unwrap();
    }
    let (code, _, m) = attempt(&s, &["write", &x.rw("f"), "plugin text"]);
    assert_eq!(code, 0, "{m}");
    untouched(&victim, "root's");
    assert_eq!(
        std::fs::read_to_string(x.rw.path().join("f")).unwrap(),
        "plugin text"
    );
    // Nothing of the write's own is left behind.
    let left = std::fs::read_dir(x.rw.path())
        .unwrap()
        .filter(|e| {
            let e = e.as_ref().unwrap();
            !e.file_type().unwrap().is_symlink() && e.file_name() != "f"
        })
        .count();
    assert_eq!(left, 0);
    still_serves(&s);
}

#[test]
fn a_two_stage_zip_slip_through_an_artifact_is_refused() {
    let s = host();
    let x = Scratch::new();
    std::fs::create_dir(x.outside("target")).unwrap();
    // Stage one: pack a read-scope tree holding a link out, then unpack it
    // into the write scope.
    let tree = x.ro.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    symlink(x.outside("target"), tree.join("esc")).unwrap();
    std::fs::write(tree.join("ok"), "fine").unwrap();
    let (code, _, m) = attempt(&s, &["pack", &x.ro("tree"), &x.art("one.tar")]);
    assert_eq!(code, 0, "{m}");
    refused(
        &s,
        &["unpack", &x.art("one.tar"), "tree", &x.rw("u")],
        "permission denied: ",
        "would point outside the grant",
    );
    assert!(std::fs::symlink_metadata(x.rw.path().join("u/esc")).is_err());
    // Stage two: the link is there already (a local user put it); an
    // artifact with a member under its name must not land outside.
    let two = x.ro.path().join("two");
    std::fs::create_dir_all(two.join("esc")).unwrap();
    std::fs::write(two.join("esc/planted"), "x").unwrap();
    let (code, _, m) = attempt(&s, &["pack", &x.ro("two"), &x.art("two.tar")]);
    assert_eq!(code, 0, "{m}");
    std::fs::create_dir_all(x.rw.path().join("u2")).unwrap();
    symlink(x.outside("target"), x.rw.path().join("u2/esc")).unwrap();
    refused(
        &s,
        &["unpack", &x.art("two.tar"), "tree", &x.rw("u2")],
        "permission denied: ",
        "through a symlink",
    );
    assert_eq!(std::fs::read_dir(x.outside("target")).unwrap().count(), 0);
    still_serves(&s);
}

#[test]
fn unpack_drops_setuid_and_world_write_and_keeps_the_destination_mode() {
    let s = host();
    let x = Scratch::new();
    let tree = x.ro.path().join("tree");
    std::fs::create_dir_all(tree.join("open")).unwrap();
    std::fs::set_permissions(tree.join("open"), std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(tree.join("open/suid"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        tree.join("open/suid"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    let (code, _, m) = attempt(&s, &["pack", &x.ro("tree"), &x.art("t.tar")]);
    assert_eq!(code, 0, "{m}");
    let dest = x.rw.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o700)).unwrap();
    let (code, _, m) = attempt(&s, &["unpack", &x.art("t.tar"), "tree", &x.rw("dest")]);
    assert_eq!(code, 0, "{m}");
    assert_eq!(mode(&dest), 0o700, "the existing destination kept its mode");
    assert_eq!(mode(&dest.join("open")), 0o775);
    assert_eq!(mode(&dest.join("open/suid")), 0o755);
    // fs.write and fs.copy make no set-uid file either.
    refused(
        &s,
        &["write-mode", &x.rw("s"), "x", "4755"],
        "permission denied: ",
        "set-uid",
    );
    let (code, _, m) = attempt(&s, &["copy", &x.ro("tree/open/suid"), &x.rw("copied")]);
    assert_eq!(code, 0, "{m}");
    assert_eq!(mode(&x.rw.path().join("copied")), 0o755);
    still_serves(&s);
}

#[test]
fn fifos_huge_reads_and_links_out_are_refused_without_hanging() {
    let s = host();
    let x = Scratch::new();
    let fifo = x.rw.path().join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    refused(
        &s,
        &["read", &x.rw("fifo")],
        "invalid argument: ",
        "is a FIFO",
    );
    // A 2 GiB sparse file with max-bytes of 4 GiB: refused at the cap,
    // without reading it.
    let big = std::fs::File::create(x.rw.path().join("big")).unwrap();
    big.set_len(2 << 30).unwrap();
    refused(
        &s,
        &["read", &x.rw("big"), "4294967296"],
        "invalid argument: ",
        "fs.read returns at most 16777216 bytes",
    );
    std::fs::write(x.outside("secret"), "s").unwrap();
    symlink(x.outside("secret"), x.rw.path().join("abs")).unwrap();
    symlink("../../../../../../../..", x.rw.path().join("up")).unwrap();
    for link in ["abs", "up/etc/passwd"] {
        refused(
            &s,
            &["read", &x.rw(link)],
            "permission denied: ",
            "outside its grant root",
        );
    }
    refused(
        &s,
        &["list", &x.rw("up")],
        "permission denied: ",
        "outside its grant root",
    );
    refused(
        &s,
        &["stat", &x.rw("up/etc")],
        "permission denied: ",
        "outside its grant root",
    );
    refused(
        &s,
        &["mkdir", &x.rw("up/tmp/made")],
        "permission denied: ",
        "",
    );
    // Creating links out, absolute or relative.
    for target in ["/etc/passwd", "../../../../etc", "../../rw-sibling"] {
        refused(
            &s,
            &["symlink", target, &x.rw("l")],
            "permission denied: ",
            "the target is outside the write grant",
        );
    }
    // The grant root itself cannot be renamed or removed.
    refused(
        &s,
        &["remove", RW],
        "invalid argument: ",
        "grant root itself",
    );
    refused(
        &s,
        &["rename", RW, &x.rw("moved")],
        "invalid argument: ",
        "grant root itself",
    );
    // A symlink inside the grant still works for an honest plugin.
    std::fs::write(x.rw.path().join("real"), "inside").unwrap();
    let (code, _, m) = attempt(&s, &["symlink", "real", &x.rw("alias")]);
    assert_eq!(code, 0, "{m}");
    let (_, _, m) = attempt(&s, &["read", &x.rw("alias")]);
    assert_eq!(m, "inside");
    still_serves(&s);
}

#[test]
fn artifacts_on_the_operators_host_are_made_and_read_through_handles() {
    let s = host();
    let x = Scratch::new();
    let victim = x.victim("root-only", "root's");
    std::fs::create_dir(x.ro.path().join("tree")).unwrap();
    std::fs::write(x.ro.path().join("tree/f"), "data").unwrap();
    // Links at every temporary name the old scheme could use.
    for pid in 1..4096 {
        symlink(&victim, x.art.path().join(format!(".a.tar.partial-{pid}"))).unwrap();
    }
    let (code, _, m) = attempt(&s, &["pack", &x.ro("tree"), &x.art("a.tar")]);
    assert_eq!(code, 0, "{m}");
    untouched(&victim, "root's");
    // An artifact path through a link out of the archive grant.
    symlink(x.outside.path(), x.art.path().join("out")).unwrap();
    refused(
        &s,
        &["pack", &x.ro("tree"), &x.art("out/b.tar")],
        "permission denied: ",
        "outside its grant root",
    );
    assert!(!x.outside("b.tar").exists());
    // A FIFO where an artifact should be is refused, not opened.
    assert!(
        std::process::Command::new("mkfifo")
            .arg(x.art.path().join("fifo.tar"))
            .status()
            .unwrap()
            .success()
    );
    refused(
        &s,
        &["unpack", &x.art("fifo.tar"), "tree", &x.rw("u")],
        "invalid argument: ",
        "is a FIFO",
    );
    still_serves(&s);
}

#[test]
fn extracting_an_item_never_leaves_the_grant_or_replaces_a_file() {
    let s = host();
    let x = Scratch::new();
    let victim = x.victim("root-only", "root's");
    std::fs::create_dir(x.ro.path().join("tree")).unwrap();
    std::fs::write(x.ro.path().join("tree/f"), "data").unwrap();
    let (code, _, m) = attempt(&s, &["pack", &x.ro("tree"), &x.art("a.tar")]);
    assert_eq!(code, 0, "{m}");
    // Outside the archive grant, by path and through a link.
    refused(
        &s,
        &[
            "extract",
            &x.art("a.tar"),
            "tree/f",
            victim.to_str().unwrap(),
        ],
        "permission denied: ",
        "outside the grant",
    );
    symlink(x.outside.path(), x.art.path().join("out")).unwrap();
    refused(
        &s,
        &["extract", &x.art("a.tar"), "tree/f", &x.art("out/planted")],
        "permission denied: ",
        "outside its grant root",
    );
    assert!(!x.outside("planted").exists());
    // A link at the name, pointing at the victim, is never written through.
    symlink(&victim, x.art.path().join("link")).unwrap();
    refused(
        &s,
        &["extract", &x.art("a.tar"), "tree/f", &x.art("link")],
        "invalid argument: ",
        "already exists; extracting never replaces a file",
    );
    untouched(&victim, "root's");
    // An item that is not there; then a good one, private.
    refused(
        &s,
        &["extract", &x.art("a.tar"), "tree/nope", &x.art("x")],
        "not found: ",
        "no item tree/nope",
    );
    assert!(!x.art.path().join("x").exists());
    let (code, _, m) = attempt(&s, &["extract", &x.art("a.tar"), "tree/f", &x.art("f")]);
    assert_eq!((code, m.as_str()), (0, "4 bytes"));
    assert_eq!(
        std::fs::read_to_string(x.art.path().join("f")).unwrap(),
        "data"
    );
    assert_eq!(mode(&x.art.path().join("f")), 0o600);
    // Only the artifact, the two links and the extracted file are left.
    assert_eq!(std::fs::read_dir(x.art.path()).unwrap().count(), 4);
    still_serves(&s);
}

#[test]
fn a_dry_run_diff_never_reads_through_a_link_or_opens_a_fifo() {
    let s = host();
    let x = Scratch::new();
    let victim = x.victim("root-only", "root's secret line\n");
    symlink(&victim, x.rw.path().join("link")).unwrap();
    assert!(
        std::process::Command::new("mkfifo")
            .arg(x.rw.path().join("fifo"))
            .status()
            .unwrap()
            .success()
    );
    let diff = |path: &str| -> String {
        let (code, report) = s.report(&["hostile", "do", "--dry-run", "write", path, "new\n"]);
        assert_eq!(code, 0, "{report:#}");
        report["phases"][0]["steps"][0]["mutations"][0]["diff"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let through_link = diff(&x.rw("link"));
    assert!(
        through_link.contains("now a symlink (it would be replaced)"),
        "{through_link}"
    );
    assert!(!through_link.contains("secret"), "{through_link}");
    let fifo = diff(&x.rw("fifo"));
    assert!(fifo.contains("now not a regular file"), "{fifo}");
    untouched(&victim, "root's secret line\n");
    still_serves(&s);
}

#[test]
fn a_newline_at_the_end_of_a_path_is_part_of_the_name() {
    let s = host();
    let x = Scratch::new();
    let victim = x.outside("unit");
    std::fs::write(&victim, "root's unit").unwrap();
    symlink(&victim, x.rw.path().join("link")).unwrap();
    let path = format!("{}\n", x.rw("link"));
    let (code, _, m) = attempt(&s, &["write", &path, "plugin text"]);
    assert_eq!(code, 0, "{m}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root's unit");
    assert_eq!(
        std::fs::read_to_string(x.rw.path().join("link\n")).unwrap(),
        "plugin text"
    );
}

#[test]
fn huge_messages_records_and_events_are_capped_and_the_host_survives() {
    let s = host();
    // A 128 MiB step message is cut to the report's cap.
    let (code, status, m) = attempt(&s, &["message", "134217728"]);
    assert_eq!((code, status.as_str()), (0, "ok"));
    assert!(m.len() < 70_000, "{} bytes kept", m.len());
    assert!(
        m.ends_with("more bytes not kept)"),
        "{}",
        &m[m.len() - 60..]
    );
    // 3,000 recorded calls with 1 MiB arguments under --dry-run.
    let (code, report) = s.report(&["hostile", "do", "--dry-run", "record", "3000", "1048576"]);
    assert_eq!(code, 0, "{report:#}");
    let mutations = report["phases"][0]["steps"][0]["mutations"]
        .as_array()
        .unwrap();
    assert_eq!(mutations.len(), 3000);
    assert!(
        mutations
            .iter()
            .all(|m| m["detail"].as_str().unwrap().len() < 1200)
    );
    // 20,000 small records: the first 10,000 kept, the rest counted.
    let (code, report) = s.report(&["hostile", "do", "--dry-run", "record", "20000", "1"]);
    assert_eq!(code, 0, "{report:#}");
    let mutations = report["phases"][0]["steps"][0]["mutations"]
        .as_array()
        .unwrap();
    assert_eq!(mutations.len(), 10_001);
    assert!(
        mutations[10_000]["detail"]
            .as_str()
            .unwrap()
            .starts_with("10000 more mutations recorded but not kept"),
        "{}",
        mutations[10_000]
    );
    // Events: at most 1 MiB of messages per call.
    let (code, report) = s.report(&["hostile", "do", "events", "5000", "4096"]);
    assert_eq!(code, 0, "{report:#}");
    let events = report["phases"][0]["steps"][0]["events"]
        .as_array()
        .unwrap();
    let bytes: usize = events
        .iter()
        .map(|e| e["message"].as_str().unwrap().len())
        .sum();
    assert!(bytes <= (1 << 20) + 200, "{bytes} bytes of events kept");
    assert!(
        events.last().unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("more events not kept")
    );
    still_serves(&s);
}

#[test]
fn an_oversized_manifest_is_refused_at_install() {
    let s = Sandbox::new();
    // The manifest-less fixture with a 50 MB manifest section appended.
    let mut bytes = std::fs::read(wasm("nomanifest")).unwrap();
    let name = b"stackhost-manifest";
    let payload = vec![b' '; 50_000_000];
    let mut section = Vec::new();
    leb128(&mut section, name.len() as u64);
    section.extend_from_slice(name);
    section.extend_from_slice(&payload);
    bytes.push(0);
    leb128(&mut bytes, section.len() as u64);
    bytes.extend_from_slice(&section);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big-manifest.wasm");
    std::fs::write(&file, &bytes).unwrap();
    let out = s.fails(1, &["plugin", "install", "--yes", file.to_str().unwrap()]);
    assert!(
        out.contains("section is 50000000 bytes, more than the 262144 bytes a manifest may be"),
        "{out}"
    );
}

fn leb128(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The same attempts on a Debian node over SSH, through the node's agent.
#[test]
fn the_sandbox_holds_on_a_node_over_ssh() {
    let c = TestCluster::up(1, "sh-hostile");
    let s = host();
    let node = c.node(1);
    let run = |args: &[&str]| -> (i32, String, String) {
        let mut all = vec!["hostile", "do"];
        all.extend_from_slice(args);
        let all = c.args(&all);
        let (code, report) = s.report(&refs(&all));
        let (status, message) = only_step(&report);
        (code, status, message)
    };
    let refused = |args: &[&str], kind: &str, what: &str| {
        let (code, status, message) = run(args);
        assert_eq!(
            (code, status.as_str()),
            (3, "failed"),
            "{args:?}: {message}"
        );
        assert!(
            message.starts_with(kind) && message.contains(what),
            "{args:?}: {message}"
        );
    };
    c.sh(
        1,
        "set -e; mkdir -p /tmp/stackhost-hostile/ro/tree /tmp/stackhost-hostile/rw /tmp/stackhost-hostile/art /outside/target
         echo -n outside > /outside/victim; chmod 600 /outside/victim
         ln -s /outside/victim /tmp/stackhost-hostile/ro/tree/victim
         ln -s /outside /tmp/stackhost-hostile/rw/out
         ln -s /outside/victim /tmp/stackhost-hostile/rw/link",
    );
    let victim = || c.sh(1, "cat /outside/victim; stat -c ' %a' /outside/victim");
    let untouched = "outside 600\n";

    // The agent is copied once and checked by digest.
    let (code, _, m) = run(&["write", &format!("{RW}/first"), "hello"]);
    assert_eq!(code, 0, "{m}");
    let agents = c.sh(1, "ls /var/lib/stackhost/agent");
    assert!(agents.starts_with("stackhost-agent-"), "{agents}");

    // Copy of a tree with a link out; writes through a directory link.
    refused(
        &["copy", &format!("{RO}/tree"), &format!("{RW}/tree")],
        "permission denied: ",
        "outside the grant",
    );
    refused(
        &["write", &format!("{RW}/out/x"), "x"],
        "permission denied: ",
        "outside its grant root",
    );
    // A trailing newline is part of the name, not a way through `link`.
    let (code, _, m) = run(&["write", &format!("{RW}/link\n"), "plugin"]);
    assert_eq!(code, 0, "{m}");
    assert_eq!(c.sh(1, "cat '/tmp/stackhost-hostile/rw/link\n'"), "plugin");
    // Linking onto an existing directory link makes nothing outside.
    refused(
        &["symlink", "first", &format!("{RW}/out")],
        "i/o error: ",
        "exists",
    );
    // Set-uid copies.
    refused(
        &["write-mode", &format!("{RW}/s"), "x", "4755"],
        "permission denied: ",
        "set-uid",
    );
    assert_eq!(victim(), untouched);
    assert_eq!(c.sh(1, "ls -A /outside/target | wc -l").trim(), "0");
    assert!(
        !c.sh(1, "ls -A /outside").contains("x"),
        "nothing was written outside"
    );

    // Unpack: a member under a planted link; set-uid and world-writable
    // entries; an existing 0700 destination.
    c.sh(
        1,
        "set -e; mkdir -p /tmp/stackhost-hostile/ro/two/esc /tmp/stackhost-hostile/ro/perm/open /tmp/stackhost-hostile/rw/u2 /tmp/stackhost-hostile/rw/d700
         echo x > /tmp/stackhost-hostile/ro/two/esc/planted
         ln -s /outside/target /tmp/stackhost-hostile/rw/u2/esc
         chmod 777 /tmp/stackhost-hostile/ro/perm/open
         cp /bin/true /tmp/stackhost-hostile/ro/perm/open/suid; chmod 4755 /tmp/stackhost-hostile/ro/perm/open/suid
         chmod 700 /tmp/stackhost-hostile/rw/d700",
    );
    let (code, _, m) = run(&[
        "pack",
        &format!("{RO}/two"),
        &format!("{}/two.tar", x_art()),
    ]);
    assert_eq!(code, 0, "{m}");
    refused(
        &[
            "unpack",
            &format!("{}/two.tar", x_art()),
            "tree",
            &format!("{RW}/u2"),
        ],
        "permission denied: ",
        "through a symlink",
    );
    assert_eq!(c.sh(1, "ls -A /outside/target | wc -l").trim(), "0");
    let (code, _, m) = run(&[
        "pack",
        &format!("{RO}/perm"),
        &format!("{}/perm.tar", x_art()),
    ]);
    assert_eq!(code, 0, "{m}");
    let (code, _, m) = run(&[
        "unpack",
        &format!("{}/perm.tar", x_art()),
        "tree",
        &format!("{RW}/d700"),
    ]);
    assert_eq!(code, 0, "{m}");
    assert_eq!(
        c.sh(
            1,
            "cd /tmp/stackhost-hostile/rw/d700 && stat -c '%a %n' . open open/suid"
        ),
        "700 .\n775 open\n755 open/suid\n"
    );

    // A race: a shell loop on the node swaps a directory and a link out.
    c.sh(
        1,
        "set -e; mkdir -p /tmp/stackhost-hostile/rw/d; echo -n inside > /tmp/stackhost-hostile/rw/d/secret
         echo -n OUTSIDE > /outside/secret; ln -s /outside /tmp/stackhost-hostile/rw/evil",
    );
    c.docker(&[
        "exec",
        "-d",
        &node,
        "sh",
        "-c",
        "cd /tmp/stackhost-hostile/rw; while [ ! -e /tmp/stop-swapping ]; do mv d tmp; mv evil d; mv d evil; mv tmp d; done",
    ]);
    let (code, _, m) = run(&["read-loop", &format!("{RW}/d/secret"), "300", "OUTSIDE"]);
    c.sh(1, "touch /tmp/stop-swapping");
    assert_eq!(code, 0, "{m}");
    assert!(m.contains("escaped=0") && !m.contains("inside=0 "), "{m}");

    // Reads: a FIFO is refused, a 10 MiB file comes back whole (not cut
    // at the capture limit), a 2 GiB one is refused at the cap.
    c.sh(
        1,
        "set -e; mkfifo /tmp/stackhost-hostile/rw/fifo
         head -c 10485760 /dev/zero > /tmp/stackhost-hostile/rw/ten
         truncate -s 2G /tmp/stackhost-hostile/rw/big",
    );
    refused(
        &["read", &format!("{RW}/fifo")],
        "invalid argument: ",
        "is a FIFO",
    );
    let (code, _, m) = run(&["read", &format!("{RW}/ten"), "20971520"]);
    assert_eq!((code, m.as_str()), (0, "10485760 bytes"));
    refused(
        &["read", &format!("{RW}/big"), "4294967296"],
        "invalid argument: ",
        "at most 16777216 bytes",
    );

    // The agent killed again and again during 15 MiB writes: the target is
    // the old file or the whole new one, never a part.
    c.sh(
        1,
        "echo -n old > /tmp/stackhost-hostile/rw/target; rm -f /tmp/stop-killing",
    );
    c.docker(&[
        "exec",
        "-d",
        &node,
        "sh",
        "-c",
        "while [ ! -e /tmp/stop-killing ]; do pkill -KILL -f '[a]gent/stackhost-agent-'; sleep 0.05; done",
    ]);
    let mut failed = 0;
    for _ in 0..5 {
        let (code, _, _) = run(&["write-big", &format!("{RW}/target"), "15728640"]);
        failed += usize::from(code != 0);
        let size = c.sh(1, "stat -c %s /tmp/stackhost-hostile/rw/target");
        assert!(
            size == "3\n" || size == "15728640\n",
            "a partial target: {size}"
        );
    }
    c.sh(1, "touch /tmp/stop-killing");
    assert!(failed > 0, "the agent was never killed mid-write");

    assert_eq!(victim(), untouched);
    let hello = c.args(&["hello", "info"]);
    let (code, report) = s.report(&refs(&hello));
    assert_eq!(code, 0, "hello info after the attempts: {report:#}");
}

/// The artifact directory of the remote test (on this machine: artifacts
/// live on the operator's host).
fn x_art() -> String {
    let dir = format!("{ART}/ssh-{}", std::process::id());
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_key_comment_cannot_write_to_the_terminal() {
    let s = Sandbox::new();
    let dir = tempfile::tempdir().unwrap();
    let key = std::fs::read_to_string(support::repo().join("tests/keys/test-vendor.pub")).unwrap();
    let body = key.lines().nth(1).unwrap();
    let file = dir.path().join("evil.pub");
    std::fs::write(
        &file,
        format!("untrusted comment: vendor \u{1b}]0;owned\u{7}\u{1b}[2J\u{202e}\n{body}\n"),
    )
    .unwrap();
    for out in [
        s.ok(&["keys", "trust", file.to_str().unwrap()]),
        s.ok(&["keys", "list"]),
    ] {
        assert!(
            !out.contains('\u{1b}') && !out.contains('\u{202e}'),
            "{out:?}"
        );
        assert!(out.contains("vendor \\x1b]0;owned"), "{out}");
    }
}

/// A disk that fills during an export on the operator's side: the error
/// names the artifact, the full filesystem and its free space, and nothing
/// partial is left. (Mounting the small tmpfs needs root, which the test
/// runs as in CI.)
#[test]
fn a_disk_that_fills_names_where_and_leaves_nothing_behind() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED a_disk_that_fills_...: mounting a small tmpfs needs root");
        return;
    }
    let base = Path::new("/tmp/stackhost-test").join(format!("full-{}", std::process::id()));
    let (src, full) = (base.join("src"), base.join("full"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&full).unwrap();
    std::fs::write(src.join("blob"), random_bytes(4 << 20)).unwrap();
    let mounted = std::process::Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=1m",
            "tmpfs",
            full.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(mounted.success());
    let s = Sandbox::new();
    s.install("pack");
    let dest = full.join("x.tar");
    let (code, report) = s.report(&[
        "pack",
        "pack",
        src.to_str().unwrap(),
        dest.to_str().unwrap(),
    ]);
    let left: Vec<_> = std::fs::read_dir(&full)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let _ = std::process::Command::new("umount").arg(&full).status();
    let _ = std::fs::remove_dir_all(&base);
    assert_eq!(code, 3, "{report:#}");
    let (status, message) = only_step(&report);
    assert_eq!(status, "failed");
    assert!(
        message.contains("No space left on device")
            && message.contains(&format!(
                "the filesystem holding {} is full (",
                full.display()
            ))
            && message.contains(" MiB free there); ")
            && message.contains(&format!(
                "{} was not written and the partial artifact is removed",
                dest.display()
            )),
        "{message}"
    );
    assert!(left.is_empty(), "left behind: {left:?}");
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    rustix::rand::getrandom(&mut out, rustix::rand::GetRandomFlags::empty()).unwrap();
    out
}
