//! What an exact argv pattern lets a plugin do beyond what it shows:
//! whether a pattern listed as read-only could write or run code (refused
//! at install), and whether a pattern amounts to root on the node (flagged
//! in the prompt). Programs are judged by their file name, so
//! `/usr/sbin/sshd` is `sshd`. The tables are in `wit/MANIFEST.md`.

use super::pattern::{Argv, Hole, PathAccess};
use super::scope::root_equivalent;

/// Programs that write files, change the system or run other programs
/// whatever their arguments: never read-only.
const WRITERS: &[&str] = &[
    "tee",
    "dd",
    "cp",
    "mv",
    "rm",
    "ln",
    "install",
    "mkdir",
    "rmdir",
    "touch",
    "chmod",
    "chown",
    "chgrp",
    "chattr",
    "truncate",
    "shred",
    "rsync",
    "scp",
    "sftp",
    "tar",
    "cpio",
    "unzip",
    "gzip",
    "gunzip",
    "zstd",
    "xz",
    "bzip2",
    "mount",
    "umount",
    "swapon",
    "swapoff",
    "kill",
    "pkill",
    "killall",
    "reboot",
    "shutdown",
    "halt",
    "poweroff",
    "ssh-keygen",
    "dpkg",
    "apt",
    "aptitude",
    "useradd",
    "usermod",
    "userdel",
    "groupadd",
    "passwd",
    "chpasswd",
    "crontab",
    "update-rc.d",
    "update-alternatives",
    "unattended-upgrade",
    "quotacheck",
    "setquota",
    "edquota",
    "mkfs",
    "fdisk",
    "parted",
    "wipefs",
    "sysctl",
    "modprobe",
    "insmod",
    "rmmod",
    "iptables",
    "ip",
    "ifconfig",
    "route",
    "hostnamectl",
    "timedatectl",
    "localectl",
    "loginctl",
    "ln",
    "patch",
    "wget",
    "curl",
    "git",
    "make",
    "awk",
    "gawk",
    "mawk",
    "ed",
    "ex",
];

/// Programs known only to read and print, with the options of theirs that
/// write or change something (refused in a read-only pattern).
const READERS: &[(&str, &[&str])] = &[
    ("cat", &[]),
    ("head", &[]),
    ("tail", &[]),
    ("ls", &[]),
    ("stat", &[]),
    ("realpath", &[]),
    ("readlink", &[]),
    ("df", &[]),
    ("du", &[]),
    ("findmnt", &[]),
    ("lsblk", &[]),
    ("blkid", &["-g", "--garbage-collect"]),
    ("uname", &[]),
    ("dpkg-query", &[]),
    ("ps", &[]),
    ("id", &[]),
    ("whoami", &[]),
    ("test", &[]),
    ("wc", &[]),
    ("md5sum", &[]),
    ("sha1sum", &[]),
    ("sha256sum", &[]),
    ("grep", &[]),
    ("nproc", &[]),
    ("free", &[]),
    ("uptime", &[]),
    ("mountpoint", &[]),
    ("getent", &[]),
    ("cmp", &[]),
    ("diff", &[]),
    ("sort", &["-o", "--output"]),
    ("date", &["-s", "--set"]),
    (
        "journalctl",
        &[
            "--vacuum-size",
            "--vacuum-time",
            "--vacuum-files",
            "--rotate",
            "--flush",
            "--relinquish-var",
            "--sync",
            "--setup-keys",
            "--update-catalog",
        ],
    ),
];

/// Programs that only read when called with one of these verbs (the first
/// argument that is not an option), and write or run code otherwise.
const READ_VERBS: &[(&str, &[&str])] = &[
    (
        "systemctl",
        &[
            "status",
            "show",
            "cat",
            "is-active",
            "is-enabled",
            "is-failed",
            "is-system-running",
            "list-units",
            "list-unit-files",
            "list-timers",
            "list-dependencies",
        ],
    ),
    (
        "btrfs",
        &[
            "qgroup show",
            "filesystem show",
            "filesystem df",
            "filesystem usage",
            "subvolume show",
            "subvolume list",
            "device stats",
        ],
    ),
    ("docker", &["ps", "images", "inspect", "version", "info"]),
];

fn file_name(program: &str) -> &str {
    program.rsplit('/').next().unwrap_or(program)
}

/// The literal arguments, in order, up to the first hole.
fn literals(argv: &Argv) -> Vec<&str> {
    argv.elements()[1..]
        .iter()
        .take_while(|e| e.hole.is_none())
        .map(|e| e.literal.as_str())
        .collect()
}

/// Why a pattern listed as read-only could write or run code, if it could.
// Long because it is one rule per kind of program, in the order they apply.
pub fn read_only_problem(argv: &Argv) -> Option<String> {
    if argv.is_variadic() {
        return Some("it takes any arguments ({args...})".into());
    }
    if argv.has_hole(|h| *h == Hole::Path(PathAccess::Write)) {
        return Some("it names a path to write ({path:write})".into());
    }
    let program = argv.program();
    let name = file_name(program);
    let args: Vec<&str> = argv.elements()[1..]
        .iter()
        .map(|e| e.literal.as_str())
        .collect();
    if let Some((_, writing)) = READERS.iter().find(|(p, _)| *p == name) {
        let bad = args.iter().find(|a| {
            writing
                .iter()
                .any(|w| *a == w || a.starts_with(&format!("{w}=")))
        });
        return bad.map(|b| format!("`{name} {b}` writes or changes the system"));
    }
    if let Some((_, verbs)) = READ_VERBS.iter().find(|(p, _)| *p == name) {
        let words: Vec<&str> = literals(argv)
            .into_iter()
            .filter(|a| !a.starts_with('-'))
            .collect();
        let ok = verbs.iter().any(|v| {
            let v: Vec<&str> = v.split(' ').collect();
            words.len() >= v.len() && words[..v.len()] == v[..]
        });
        return (!ok).then(|| format!("`{name}` only reads with the verbs {}", verbs.join(", ")));
    }
    if name == "service" {
        let ok = args.len() == 2 && args[1] == "status" && !args[0].starts_with('-');
        return (!ok).then(|| "`service` only reads as `service NAME status`".into());
    }
    if program.starts_with("/etc/init.d/") {
        return (args != ["status"]).then(|| "an init script only reads with `status`".into());
    }
    if name == "apt-get" || name == "apt-cache" {
        if let Some(o) = args.iter().find(|a| {
            ["-o", "-c", "--option", "--config-file"]
                .iter()
                .any(|o| a.starts_with(o))
        }) {
            return Some(format!("`{name} {o}` sets options that run commands"));
        }
        if name == "apt-get"
            && !args.iter().any(|a| {
                [
                    "-s",
                    "--simulate",
                    "--just-print",
                    "--dry-run",
                    "--recon",
                    "--no-act",
                ]
                .contains(a)
            })
        {
            return Some("`apt-get` only reads when it simulates (-s)".into());
        }
        if name == "apt-cache" && args.contains(&"gencaches") {
            return Some("`apt-cache gencaches` writes the cache".into());
        }
        return None;
    }
    if name == "sed" {
        let ok = args.len() >= 2
            && args[0] == "-n"
            && argv.elements()[2].hole.is_none()
            && args[1]
                .chars()
                .all(|c| c.is_ascii_digit() || ",$p".contains(c));
        return (!ok).then(|| "`sed` only reads as `sed -n LINESp`".into());
    }
    if name == "find" {
        let writing = [
            "-exec", "-execdir", "-ok", "-okdir", "-delete", "-fprint", "-fprint0", "-fprintf",
            "-fls",
        ];
        return args
            .iter()
            .find(|a| writing.contains(a))
            .map(|a| format!("`find {a}` runs programs or writes files"));
    }
    if name == "quotaon" {
        return (!args.contains(&"-p")).then(|| "`quotaon` only reads with -p".into());
    }
    if name == "sshd" {
        let ok = args.iter().any(|a| *a == "-T" || *a == "-t")
            && !args.iter().any(|a| a.starts_with("-E"));
        return (!ok).then(|| "`sshd` only reads with -T or -t".into());
    }
    if name == "nagios4" || name == "nagios" {
        return (args.first() != Some(&"-v")).then(|| format!("`{name}` only reads with -v"));
    }
    if WRITERS.contains(&name) || root_equivalent(program) {
        return Some(format!("`{name}` writes files or runs programs"));
    }
    argv.has_hole(|h| !matches!(h, Hole::Choice(_))).then(|| {
        format!(
            "`{name}` is not a program stackhost knows to only read; a read-only pattern of it \
             must be all literals (or choices among literals)"
        )
    })
}

/// Why a pattern amounts to root on the node, if it does.
pub fn root_reason(argv: &Argv) -> Option<String> {
    if argv.is_variadic() {
        return Some("any arguments".into());
    }
    let name = file_name(argv.program());
    if root_equivalent(argv.program()) && argv.has_hole(|h| *h == Hole::Word) {
        return Some(format!(
            "`{name}` runs or writes whatever its arguments say, and a {{word}} is one of them"
        ));
    }
    let runs_scripts = [
        "sh", "bash", "dash", "zsh", "ksh", "busybox", "perl", "ruby", "node", "php", "lua", "env",
        "sudo", "su", "xargs", "make", "awk", "gawk", "mawk", "tclsh", "expect",
    ]
    .contains(&name)
        || name.starts_with("python");
    if runs_scripts && argv.has_hole(|h| matches!(h, Hole::Path(_))) {
        return Some(format!("`{name}` runs the file a {{path}} names"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Argv {
        Argv::parse(words.iter().map(|w| w.to_string()).collect()).unwrap()
    }

    #[test]
    fn read_only_patterns_that_can_write_are_named() {
        for (words, why) in [
            (&["sed", "-n", "1p", "{path:read}"][..], None),
            (&["sed", "-n", "1w /etc/x", "{path:read}"][..], Some("sed")),
            (&["sed", "-i", "s/a/b/", "{path:read}"][..], Some("sed")),
            (&["find", "/srv", "-delete"][..], Some("-delete")),
            (&["apt-get", "-s", "dist-upgrade"][..], None),
            (&["apt-get", "dist-upgrade"][..], Some("simulates")),
            (
                &[
                    "apt-get",
                    "-s",
                    "-oAPT::Update::Pre-Invoke::=sh",
                    "dist-upgrade",
                ][..],
                Some("-o"),
            ),
            (&["apt-cache", "policy", "{word}"][..], None),
            (&["systemctl", "is-enabled", "nagios4"][..], None),
            (&["systemctl", "enable", "nagios4"][..], Some("verbs")),
            (&["service", "nagios4", "status"][..], None),
            (&["service", "nagios4", "start"][..], Some("status")),
            (&["tee", "{path:read}"][..], Some("tee")),
            (&["cat", "{path:read}"][..], None),
            (&["cat", "{path:write}"][..], Some("write")),
            (&["cat", "{args...}"][..], Some("any arguments")),
            (
                &["sort", "-o", "/etc/passwd", "{path:read}"][..],
                Some("-o"),
            ),
            (&["bash", "-c", "true"][..], Some("bash")),
            (&["frobnicate", "--list"][..], None),
            (&["frobnicate", "{word}"][..], Some("all literals")),
            (&["/etc/init.d/stackato-dea", "status"][..], None),
            (&["/etc/init.d/stackato-dea", "stop"][..], Some("status")),
            (&["btrfs", "qgroup", "show", "{path:read}"][..], None),
            (
                &["btrfs", "qgroup", "limit", "1G", "{path:read}"][..],
                Some("verbs"),
            ),
        ] {
            let got = read_only_problem(&argv(words));
            match why {
                None => assert_eq!(got, None, "{words:?}"),
                Some(w) => assert!(
                    got.as_deref().is_some_and(|g| g.contains(w)),
                    "{words:?}: {got:?}"
                ),
            }
        }
    }

    #[test]
    fn root_is_any_arguments_or_a_hole_in_a_program_that_runs_code() {
        assert!(root_reason(&argv(&["rsync", "{args...}"])).is_some());
        assert!(root_reason(&argv(&["sh", "-c", "{word}"])).is_some());
        assert!(root_reason(&argv(&["sh", "-c", "true"])).is_none());
        assert!(root_reason(&argv(&["bash", "{path:read}"])).is_some());
        assert!(root_reason(&argv(&["rsync", "-aHAXS", "{path:read}", "{path:write}"])).is_none());
        assert!(
            root_reason(&argv(&[
                "service",
                "stackato-{role}",
                "{choice:stop|start}"
            ]))
            .is_none()
        );
    }
}
