//! What the node says about its filesystems: the mount under a path
//! (`findmnt -J -T`), and btrfs qgroups (`btrfs qgroup show --raw -re`).
//! Parsing is separate from running so it is unit-tested natively.

use serde::{Deserialize, Serialize};
use stackhost_sdk::prelude::*;

/// The mount a path lies on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Where it is mounted.
    pub target: String,
    pub source: String,
    pub fstype: String,
    pub options: String,
    /// The directory of the filesystem mounted there (a btrfs subvolume,
    /// or a bind mount's root); `/` for a whole filesystem.
    pub fsroot: String,
}

impl Mount {
    /// Whether the mount options turn Linux user quotas on (ext4, XFS).
    pub fn user_quota_option(&self) -> bool {
        self.options.split(',').any(|o| {
            matches!(o, "usrquota" | "uquota" | "quota" | "uqnoenforce")
                || o.starts_with("usrjquota=")
        })
    }

    /// `path` (on this mount) as btrfs names it in `qgroup show`:
    /// relative to the top of the filesystem, no leading `/`.
    pub fn fs_relative(&self, path: &str) -> String {
        let inside = path
            .strip_prefix(self.target.as_str())
            .unwrap_or("")
            .trim_matches('/');
        let root = self.fsroot.trim_matches('/');
        match (root.is_empty(), inside.is_empty()) {
            (true, _) => inside.to_string(),
            (false, true) => root.to_string(),
            (false, false) => format!("{root}/{inside}"),
        }
    }
}

#[derive(Deserialize)]
struct FindmntJson {
    filesystems: Vec<Mount>,
}

/// The output of `findmnt -J -o TARGET,SOURCE,FSTYPE,OPTIONS,FSROOT -T PATH`.
pub fn parse_findmnt(json: &str) -> Result<Mount, String> {
    let parsed: FindmntJson =
        serde_json::from_str(json).map_err(|e| format!("findmnt printed no mount table: {e}"))?;
    parsed
        .filesystems
        .into_iter()
        .next()
        .ok_or_else(|| "findmnt listed no filesystem".to_string())
}

/// The mount `path` lies on, on `node`.
pub fn mount_of(node: &Node, path: &str) -> Result<Mount> {
    let out = node.run(
        Command::new("findmnt")
            .args([
                "-J",
                "-o",
                "TARGET,SOURCE,FSTYPE,OPTIONS,FSROOT",
                "-T",
                path,
            ])
            .user("root")
            .env("LANG", "C"),
    )?;
    if !out.success() {
        bail!(
            "{path} on node {}: findmnt found no mount for it ({}); does it exist?",
            node.name(),
            out.stderr_str().trim()
        );
    }
    parse_findmnt(&out.stdout_str())
        .map_err(|e| Error::plugin(format!("node {}: {e}", node.name())))
}

/// One row of `btrfs qgroup show --raw -re`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Qgroup {
    /// `0/257`.
    pub id: String,
    /// Bytes referenced (shared or not).
    pub referenced: u64,
    /// Bytes only this subvolume holds.
    pub exclusive: u64,
    /// The limit on referenced bytes (`btrfs qgroup limit`), if any.
    pub max_referenced: Option<u64>,
    pub max_exclusive: Option<u64>,
    /// The subvolume, relative to the top of the filesystem.
    pub path: String,
}

fn limit(field: &str) -> Result<Option<u64>, String> {
    if field == "none" {
        Ok(None)
    } else {
        field
            .parse()
            .map(Some)
            .map_err(|_| format!("`{field}` is not a number of bytes"))
    }
}

/// Parse `btrfs qgroup show --raw -re` (btrfs-progs 5.x/6.x): a header,
/// a dashed line, then `ID REFERENCED EXCLUSIVE MAX_RFER MAX_EXCL PATH`.
pub fn parse_qgroups(text: &str) -> Result<Vec<Qgroup>, String> {
    let mut rows = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some(id) = words.next() else { continue };
        if !id.contains('/') || !id.chars().next().is_some_and(|c| c.is_ascii_digit()) {
            continue; // the header, the dashes
        }
        let fields: Vec<&str> = words.by_ref().take(4).collect();
        if fields.len() < 4 {
            return Err(format!("cannot read the qgroup line `{line}`"));
        }
        let path = words.collect::<Vec<_>>().join(" ");
        let number = |f: &str| {
            f.parse::<u64>()
                .map_err(|_| format!("cannot read the qgroup line `{line}`"))
        };
        rows.push(Qgroup {
            id: id.to_string(),
            referenced: number(fields[0])?,
            exclusive: number(fields[1])?,
            max_referenced: limit(fields[2])?,
            max_exclusive: limit(fields[3])?,
            path,
        });
    }
    Ok(rows)
}

/// The qgroups of the btrfs filesystem mounted at `mount`, or `None` when
/// its quotas are off.
pub fn qgroups(node: &Node, mount: &str) -> Result<Option<Vec<Qgroup>>> {
    let out = node.run(
        Command::new("btrfs")
            .args(["qgroup", "show", "--raw", "-re", mount])
            .user("root")
            .env("LANG", "C"),
    )?;
    if !out.success() {
        let err = out.stderr_str();
        if err.contains("quotas not enabled") || err.contains("not enabled") {
            return Ok(None);
        }
        bail!(
            "btrfs qgroup show {mount} failed on node {}: {}",
            node.name(),
            err.trim()
        );
    }
    parse_qgroups(&out.stdout_str())
        .map(Some)
        .map_err(|e| Error::plugin(format!("node {}: {e}", node.name())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findmnt_json_gives_the_mount() {
        // As findmnt 2.38 (bookworm) prints it for a bind-mounted btrfs.
        let json = r#"{
   "filesystems": [
      {
         "target": "/var/stackato/services/filesystem/storage",
         "source": "/dev/loop3",
         "fstype": "btrfs",
         "options": "rw,relatime,discard=async,space_cache=v2,subvolid=5,subvol=/",
         "fsroot": "/"
      }
   ]
}"#;
        let m = parse_findmnt(json).unwrap();
        assert_eq!(m.fstype, "btrfs");
        assert_eq!(
            m.fs_relative("/var/stackato/services/filesystem/storage"),
            ""
        );
        assert_eq!(
            m.fs_relative("/var/stackato/services/filesystem/storage/stackatofs-1"),
            "stackatofs-1"
        );
        let sub = Mount {
            fsroot: "/@data".into(),
            ..m
        };
        assert_eq!(
            sub.fs_relative("/var/stackato/services/filesystem/storage/a"),
            "@data/a"
        );
        assert!(parse_findmnt("{}").is_err());
    }

    #[test]
    fn quota_options_are_recognised() {
        let m = |o: &str| Mount {
            target: "/".into(),
            source: "/dev/sda1".into(),
            fstype: "ext4".into(),
            options: o.into(),
            fsroot: "/".into(),
        };
        assert!(m("rw,relatime,jqfmt=vfsv0,usrjquota=aquota.user").user_quota_option());
        assert!(m("rw,usrquota").user_quota_option());
        assert!(!m("rw,relatime,grpquota").user_quota_option());
    }

    #[test]
    fn qgroup_rows_parse() {
        // btrfs-progs 6.2, as a test node printed it.
        let text = "Qgroupid    Referenced    Exclusive  Max referenced  Max exclusive   Path \n\
            --------    ----------    ---------  --------------  -------------   ---- \n\
            0/5              16384        16384            none           none   <toplevel>\n\
            0/256            16384        16384            none           none   sv\n\
            0/257          1032192      1032192         1048576           none   s2\n\
            0/258                0            0            none           none   dir with space/x\n";
        let q = parse_qgroups(text).unwrap();
        assert_eq!(q.len(), 4);
        assert_eq!(
            q[2],
            Qgroup {
                id: "0/257".into(),
                referenced: 1032192,
                exclusive: 1032192,
                max_referenced: Some(1048576),
                max_exclusive: None,
                path: "s2".into(),
            }
        );
        assert_eq!(q[3].path, "dir with space/x");
        assert!(parse_qgroups("0/5 12 x none none a").is_err());
    }
}
