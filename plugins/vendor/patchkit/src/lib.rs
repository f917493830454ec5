//! The example vendor's helper for patches that set `key: value` lines in
//! YAML-style configuration files. Before its first change to a file on a
//! node, a patch keeps the original under
//! `/var/lib/stackato/patch-backups/PATCH/` (or a marker when the file did
//! not exist), so `revert` restores it byte for byte.

use stackhost_sdk::prelude::*;

/// Where originals are kept on each node.
pub const BACKUPS: &str = "/var/lib/stackato/patch-backups";

/// Largest configuration file a patch reads.
const MAX_CONFIG: u64 = 4 << 20;

/// One line a patch sets on the nodes holding one of `roles`.
pub struct Edit {
    pub roles: &'static [&'static str],
    pub path: &'static str,
    pub key: &'static str,
    pub value: &'static str,
}

impl Edit {
    fn line(&self) -> String {
        format!("{}: {}", self.key, self.value)
    }

    fn applies_to(&self, node: &Node) -> bool {
        self.roles.iter().any(|r| node.has_role(r))
    }

    fn backup(&self, patch: &str) -> String {
        format!(
            "{BACKUPS}/{patch}/{}",
            self.path.trim_start_matches('/').replace('/', "%")
        )
    }

    fn absent_marker(&self, patch: &str) -> String {
        format!("{}.absent", self.backup(patch))
    }
}

/// The edits of a patch that concern `node`.
fn edits_for<'a>(edits: &'a [Edit], node: &Node) -> Vec<&'a Edit> {
    edits.iter().filter(|e| e.applies_to(node)).collect()
}

fn read_opt(node: &Node, path: &str) -> Result<Option<Vec<u8>>> {
    match node.read(path, MAX_CONFIG) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether `text` sets `key` to exactly `value`.
fn has_line(text: &str, edit: &Edit) -> bool {
    text.lines().any(|l| l.trim_end() == edit.line())
}

/// `text` with the first `key:` line replaced by the edit's line, or the
/// line appended.
fn with_line(text: &str, edit: &Edit) -> String {
    let prefix = format!("{}:", edit.key);
    let mut out = String::with_capacity(text.len() + 64);
    let mut done = false;
    for line in text.split_inclusive('\n') {
        if !done && line.starts_with(&prefix) {
            out.push_str(&edit.line());
            out.push('\n');
            done = true;
        } else {
            out.push_str(line);
        }
    }
    if !done {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&edit.line());
        out.push('\n');
    }
    out
}

/// The patch is in place on `node`: every edit that concerns it is there
/// (false for a node none of the edits concern).
pub fn check(edits: &[Edit], node: &Node) -> Result<bool> {
    let mine = edits_for(edits, node);
    if mine.is_empty() {
        return Ok(false);
    }
    for edit in mine {
        let Some(bytes) = read_opt(node, edit.path)? else {
            return Ok(false);
        };
        if !has_line(&String::from_utf8_lossy(&bytes), edit) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Make every edit that concerns `node`, keeping originals first.
pub fn apply(patch: &str, edits: &[Edit], node: &Node) -> Result<()> {
    let mine = edits_for(edits, node);
    ensure!(
        !mine.is_empty(),
        "{patch} changes nothing on {} (it holds none of the roles the patch affects)",
        node.name()
    );
    node.mkdir_all(&format!("{BACKUPS}/{patch}"))?;
    for edit in mine {
        let current = read_opt(node, edit.path)?;
        let text = current
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        if has_line(&text, edit) {
            continue;
        }
        let backup = edit.backup(patch);
        let marker = edit.absent_marker(patch);
        if !node.exists(&backup)? && !node.exists(&marker)? {
            match &current {
                Some(bytes) => node.write(&backup, bytes)?,
                None => node.write(&marker, "")?,
            }
        }
        if let Some(dir) = edit
            .path
            .rsplit_once('/')
            .map(|(d, _)| d)
            .filter(|d| !d.is_empty())
        {
            node.mkdir_all(dir)?;
        }
        node.write(edit.path, with_line(&text, edit))?;
    }
    Ok(())
}

/// Restore what `apply` changed on `node`.
pub fn revert(patch: &str, edits: &[Edit], node: &Node) -> Result<()> {
    for edit in edits_for(edits, node) {
        let backup = edit.backup(patch);
        let marker = edit.absent_marker(patch);
        if let Some(original) = read_opt(node, &backup)? {
            node.write(edit.path, original)?;
            node.remove(&backup)?;
        } else if node.exists(&marker)? {
            if node.exists(edit.path)? {
                node.remove(edit.path)?;
            }
            node.remove(&marker)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const E: Edit = Edit {
        roles: &["controller"],
        path: "/etc/x.yml",
        key: "mode",
        value: "strict",
    };

    #[test]
    fn replaces_or_appends() {
        assert_eq!(
            with_line("a: 1\nmode: loose\nb: 2\n", &E),
            "a: 1\nmode: strict\nb: 2\n"
        );
        assert_eq!(with_line("a: 1", &E), "a: 1\nmode: strict\n");
        assert_eq!(with_line("", &E), "mode: strict\n");
        assert!(has_line("a: 1\nmode: strict\n", &E));
        assert!(!has_line("a: 1\nmode: strictly\n", &E));
    }
}
