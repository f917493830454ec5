//! Which fs write grants amount to root on the node: places whose
//! contents the system runs, trusts or mounts as root. A plugin that may
//! write `/etc/cron.d/x` may make cron run anything as root, whatever the
//! grant's reason says; the prompt flags such a grant with why.

use std::path::Path;

/// Places (a file or a directory and everything in it) whose contents
/// root runs, trusts or mounts, and why.
const ROOT_PLACES: &[(&str, &str)] = &[
    (
        "/etc/sudoers",
        "sudo reads it to decide who may run what as root",
    ),
    (
        "/etc/sudoers.d",
        "sudo reads it to decide who may run what as root",
    ),
    ("/etc/passwd", "it defines the users"),
    ("/etc/shadow", "it holds the users' passwords"),
    ("/etc/group", "it defines the groups (sudo, adm)"),
    ("/etc/crontab", "cron runs what it lists, as root"),
    ("/etc/cron.d", "cron runs what it lists, as root"),
    ("/etc/cron.hourly", "cron runs what it holds, as root"),
    ("/etc/cron.daily", "cron runs what it holds, as root"),
    ("/etc/cron.weekly", "cron runs what it holds, as root"),
    ("/etc/cron.monthly", "cron runs what it holds, as root"),
    ("/var/spool/cron", "cron runs what it lists"),
    (
        "/etc/apt/apt.conf",
        "apt options run commands as root (APT::Update::Pre-Invoke, DPkg::Pre-Invoke)",
    ),
    (
        "/etc/apt/apt.conf.d",
        "apt options run commands as root (APT::Update::Pre-Invoke, DPkg::Pre-Invoke)",
    ),
    (
        "/etc/apt/sources.list",
        "a package source installs its packages as root at the next upgrade",
    ),
    (
        "/etc/apt/sources.list.d",
        "a package source installs its packages as root at the next upgrade",
    ),
    (
        "/etc/apt/keyrings",
        "a trusted key lets a package source sign packages installed as root",
    ),
    (
        "/etc/apt/trusted.gpg.d",
        "a trusted key lets a package source sign packages installed as root",
    ),
    (
        "/etc/dpkg",
        "dpkg options run commands as root (pre-invoke, post-invoke)",
    ),
    ("/etc/systemd", "systemd runs its units as root"),
    ("/lib/systemd", "systemd runs its units as root"),
    ("/usr/lib/systemd", "systemd runs its units as root"),
    ("/etc/init.d", "init scripts run as root"),
    ("/etc/rc.local", "it runs as root at boot"),
    (
        "/etc/ld.so.preload",
        "it loads a library into every program",
    ),
    (
        "/etc/ld.so.conf",
        "it decides which libraries every program loads",
    ),
    (
        "/etc/ld.so.conf.d",
        "it decides which libraries every program loads",
    ),
    ("/etc/profile", "it runs in every login shell, root's too"),
    ("/etc/profile.d", "it runs in every login shell, root's too"),
    ("/etc/bash.bashrc", "it runs in every bash, root's too"),
    (
        "/etc/environment",
        "it sets every login's environment (LD_PRELOAD, PATH)",
    ),
    (
        "/root",
        "root's own files (its shell start-up, its SSH keys)",
    ),
    (
        "/etc/ssh",
        "sshd's configuration decides who logs in, and as whom",
    ),
    ("/etc/pam.d", "PAM decides who logs in"),
    ("/etc/security", "PAM decides who logs in"),
    (
        "/etc/modprobe.d",
        "modprobe runs the commands it names, as root",
    ),
    (
        "/etc/udev",
        "udev runs the commands its rules name, as root",
    ),
    (
        "/etc/fstab",
        "what it lists is mounted at boot, over any directory",
    ),
    ("/usr/local/sbin", "it holds programs root runs"),
    ("/usr/local/bin", "it holds programs root runs"),
    ("/usr/sbin", "it holds programs root runs"),
    ("/usr/bin", "it holds programs root runs"),
    ("/sbin", "it holds programs root runs"),
    ("/bin", "it holds programs root runs"),
    ("/usr/lib", "it holds the libraries programs load"),
    ("/lib", "it holds the libraries programs load"),
    ("/boot", "it holds the kernel and what boots it"),
];

/// Why writing `path` amounts to root on the node, if it does: it is (or
/// lies in) one of the places above, holds one, or is an SSH
/// `authorized_keys` (or a `.ssh` directory holding one).
pub fn write_root_reason(path: &str) -> Option<&'static str> {
    let path = path.trim_end_matches('/');
    let parts: Vec<&str> = path.split('/').collect();
    if parts
        .iter()
        .any(|p| *p == ".ssh" || *p == "authorized_keys" || *p == "authorized_keys2")
    {
        return Some("a key written to an authorized_keys file logs in as its user");
    }
    ROOT_PLACES.iter().find_map(|(place, why)| {
        // Component by component: `/etc/fstab.d` is not `/etc/fstab`.
        let (path, place) = (Path::new(path), Path::new(place));
        (path.starts_with(place) || place.starts_with(path)).then_some(*why)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_root_trusts_are_flagged_with_why() {
        for (path, says) in [
            ("/etc/cron.d/stackhost-backup", "cron runs"),
            ("/etc/apt/apt.conf.d/20auto-upgrades", "Pre-Invoke"),
            (
                "/etc/apt/sources.list.d/newrelic-infra.list",
                "package source",
            ),
            ("/etc", "sudo"),
            ("/", "sudo"),
            ("/root/.ssh", "authorized_keys"),
            ("/home/stackato/.ssh/authorized_keys", "authorized_keys"),
            ("/etc/fstab", "mounted at boot"),
            ("/usr/local/bin/", "programs root runs"),
        ] {
            let why = write_root_reason(path).unwrap_or_else(|| panic!("{path} not flagged"));
            assert!(why.contains(says), "{path}: {why}");
        }
        for path in [
            "/var/stackato",
            "/var/tmp/stackhost-hello",
            "/etc/nagios4/conf.d/stackhost",
            "/etc/newrelic-infra.yml",
            "/etc/fstab.d",
            "/var/lib/stackhost/patches",
            "/usr/libexec-not",
        ] {
            assert_eq!(write_root_reason(path), None, "{path}");
        }
    }
}
