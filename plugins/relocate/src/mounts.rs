//! The node's mount table, read from `/proc/self/mountinfo`, and the
//! decisions taken from it: which mount a path lies on, and whether a
//! filesystem type may hold Stackato data at all.

use serde::{Deserialize, Serialize};

/// One line of `/proc/self/mountinfo` (proc(5)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountEntry {
    /// `major:minor` of the filesystem: equal for two mounts of one filesystem.
    pub device: String,
    /// The directory of the filesystem mounted here (a bind mount's source
    /// directory, a btrfs subvolume).
    pub root: String,
    /// Where it is mounted.
    pub mount_point: String,
    pub fstype: String,
    pub source: String,
    /// Per-mount and per-filesystem options, comma separated.
    pub options: String,
}

/// mountinfo escapes space, tab, newline and backslash as `\NNN` (octal).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let digit = |b: u8| u32::from(b - b'0');
            let v = digit(bytes[i + 1]) * 64 + digit(bytes[i + 2]) * 8 + digit(bytes[i + 3]);
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse `/proc/self/mountinfo`: `ID PARENT MAJ:MIN ROOT POINT OPTS
/// [OPTIONAL...] - TYPE SOURCE SUPEROPTS`. Lines that do not have that
/// shape are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            if l.len() < 6 || r.len() < 2 {
                return None;
            }
            let super_opts = r.get(2).copied().unwrap_or("");
            Some(MountEntry {
                device: l[2].to_string(),
                root: unescape(l[3]),
                mount_point: unescape(l[4]),
                fstype: r[0].to_string(),
                source: unescape(r[1]),
                options: format!("{},{super_opts}", l[5]),
            })
        })
        .collect()
}

/// Whether `path` is `dir` or lies below it.
fn under(path: &str, dir: &str) -> bool {
    dir == "/"
        || path == dir
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The mount `path` (absolute, canonical) lies on: the one with the
/// longest mount point above it, the last mounted when several share it.
pub fn mount_for<'a>(table: &'a [MountEntry], path: &str) -> Option<&'a MountEntry> {
    table
        .iter()
        .enumerate()
        .filter(|(_, m)| under(path, &m.mount_point))
        .max_by_key(|(i, m)| (m.mount_point.len(), *i))
        .map(|(_, m)| m)
}

/// The mounts strictly below `path`: a copy of `path` would cross into
/// them, and a rename of `path` would carry them along.
pub fn mounts_below<'a>(table: &'a [MountEntry], path: &str) -> Vec<&'a MountEntry> {
    table
        .iter()
        .filter(|m| m.mount_point != path && under(&m.mount_point, path))
        .collect()
}

/// Whether one of two canonical paths lies inside the other (or they are
/// the same).
pub fn nested(a: &str, b: &str) -> bool {
    under(a, b) || under(b, a)
}

/// Refuse filesystem types Stackato data must not live on: the guide says
/// not to put the filesystem service on NFS ("use the block storage
/// mechanism native to your hypervisor or sshfs"), and CIFS/SMB shares
/// have the same trouble with ownership, locking and quotas.
pub fn refuse_fstype(fstype: &str) -> Option<String> {
    let network =
        matches!(fstype, "nfs" | "nfs4" | "cifs" | "smb3" | "smbfs") || fstype.starts_with("nfs");
    network.then(|| {
        format!(
            "is on {fstype}, a network filesystem: Stackato data must not be relocated to NFS or CIFS; use the block storage mechanism native to your hypervisor (or sshfs), as the guide says"
        )
    })
}

/// Whether the mount can enforce the quotas Stackato sets for containers
/// and filesystem services: btrfs (when its quotas are on, checked
/// separately) or ext4/XFS mounted with user quotas.
pub fn has_quota_option(m: &MountEntry) -> bool {
    m.options.split(',').any(|o| {
        matches!(o, "usrquota" | "uquota" | "quota" | "uqnoenforce") || o.starts_with("usrjquota=")
    })
}

/// Network block devices (nbd, rbd, iSCSI shows as sd*): the guide warns
/// against putting containers on network storage such as EBS; nbd and rbd
/// can be told from the device name.
pub fn network_block_device(m: &MountEntry) -> bool {
    m.source.starts_with("/dev/nbd") || m.source.starts_with("/dev/rbd")
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real lines: a Debian node's root and /proc, an NFSv4 mount and a
    // CIFS share as the kernel prints them (nfs-utils and cifs-utils
    // mounts on Debian 12), a btrfs image bind-mounted into a container,
    // and a tmpfs.
    const MOUNTINFO: &str = "\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
98 22 0:53 / /mnt/nfs rw,relatime shared:210 - nfs4 10.0.0.5:/export/stackato rw,vers=4.2,rsize=1048576,wsize=1048576,namlen=255,hard,proto=tcp,timeo=600,retrans=2,sec=sys,clientaddr=10.0.0.9,local_lock=none,addr=10.0.0.5
99 22 0:54 / /mnt/smb rw,relatime shared:220 - cifs //fileserver/stackato rw,vers=3.1.1,cache=strict,username=stackato,uid=0,noforceuid,gid=0,noforcegid,addr=10.0.0.6,file_mode=0755,dir_mode=0755,soft,nounix,serverino,mapposix,rsize=4194304,wsize=4194304,bsize=1048576,echo_interval=60,actimeo=1
100 22 0:55 / /mnt/old\\040nfs rw,relatime - nfs 10.0.0.5:/old rw,vers=3,addr=10.0.0.5
94 77 0:40 / /srv/dest rw,relatime - btrfs /dev/loop0 rw,discard=async,space_cache=v2,subvolid=5,subvol=/
95 77 0:40 /droplets /var/stackato/data/droplets rw,relatime - btrfs /dev/loop0 rw,discard=async,space_cache=v2,subvolid=5,subvol=/
98 77 0:49 / /srv/tiny rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,size=1024k
";

    #[test]
    fn network_filesystems_are_refused_from_the_real_table() {
        let t = parse_mountinfo(MOUNTINFO);
        assert_eq!(t.len(), 8);
        let nfs = mount_for(&t, "/mnt/nfs/services").unwrap();
        assert_eq!(nfs.fstype, "nfs4");
        assert_eq!(nfs.source, "10.0.0.5:/export/stackato");
        let why = refuse_fstype(&nfs.fstype).unwrap();
        assert!(
            why.contains("nfs4, a network filesystem") && why.contains("sshfs"),
            "{why}"
        );
        let smb = mount_for(&t, "/mnt/smb/droplets").unwrap();
        assert_eq!(smb.fstype, "cifs");
        assert!(refuse_fstype(&smb.fstype).is_some());
        let old = mount_for(&t, "/mnt/old nfs/x").unwrap();
        assert_eq!(
            (old.mount_point.as_str(), old.fstype.as_str()),
            ("/mnt/old nfs", "nfs")
        );
        assert!(refuse_fstype("nfs").is_some());
        for ok in ["btrfs", "ext4", "xfs", "tmpfs", "fuse.sshfs"] {
            assert_eq!(refuse_fstype(ok), None, "{ok}");
        }
    }

    #[test]
    fn the_longest_mount_point_wins_and_bind_mounts_show_their_root() {
        let t = parse_mountinfo(MOUNTINFO);
        assert_eq!(
            mount_for(&t, "/var/stackato/services").unwrap().mount_point,
            "/"
        );
        assert_eq!(mount_for(&t, "/srv/destination").unwrap().mount_point, "/");
        let d = mount_for(&t, "/srv/dest/droplets").unwrap();
        assert_eq!(
            (d.mount_point.as_str(), d.device.as_str()),
            ("/srv/dest", "0:40")
        );
        let bind = mount_for(&t, "/var/stackato/data/droplets").unwrap();
        assert_eq!(bind.root, "/droplets");
        assert!(!has_quota_option(bind));
        assert!(!network_block_device(bind));
    }

    #[test]
    fn mounts_inside_the_data_and_overlapping_paths_are_seen() {
        let t = parse_mountinfo(MOUNTINFO);
        let inside: Vec<&str> = mounts_below(&t, "/var/stackato/data")
            .iter()
            .map(|m| m.mount_point.as_str())
            .collect();
        assert_eq!(inside, ["/var/stackato/data/droplets"]);
        assert!(mounts_below(&t, "/var/stackato/data/droplets").is_empty());
        assert!(nested(
            "/var/stackato/data/droplets",
            "/var/stackato/data/droplets/new"
        ));
        assert!(nested("/srv", "/srv/dest/x") && nested("/srv/a", "/srv/a"));
        assert!(!nested("/srv/dest", "/srv/destination"));
    }
}
