//! The grant as the operator reads it, at install and in `plugin info`:
//! grouped (reads, writes, runs read-only, runs and changes, databases,
//! Docker, ...), one grant per line with the plugin's reason beside it,
//! and everything equivalent to root on the node first, with why. Every
//! text from the manifest is escaped, so a `reason` or a pattern can
//! neither erase nor fake a line.

use crate::caps::fs::Fs;
use crate::caps::interface::{Group, PromptLine};
use crate::plugin::manifest::{GivenPath, Manifest};
use crate::text::escape_line;
use serde::Serialize;

/// The manifest's grant lines, root-equivalent ones first, then by group.
pub fn lines(m: &Manifest) -> Vec<PromptLine> {
    let c = &m.capabilities;
    let mut lines: Vec<PromptLine> = c.requests().into_iter().flat_map(|r| r.lines).collect();
    lines.extend(given_paths(m));
    lines.sort_by_key(|l| (l.root.is_none(), l.group));
    lines
}

/// The paths the operator gives that a run may read or write (`path` on
/// a command's argument): a line per argument and access, naming the
/// commands that take it. None without an fs request: the paths join the
/// fs grant only.
fn given_paths(m: &Manifest) -> Vec<PromptLine> {
    let Some(fs) = m.capabilities.get::<Fs>() else {
        return Vec::new();
    };
    let mut by_arg: Vec<(String, GivenPath, Vec<&str>)> = Vec::new();
    for c in &m.commands {
        for a in &c.args {
            let Some(access) = a.path else { continue };
            let name = a.name.to_uppercase();
            match by_arg
                .iter_mut()
                .find(|(n, p, _)| *n == name && *p == access)
            {
                Some((_, _, cmds)) => cmds.push(&c.name),
                None => by_arg.push((name, access, vec![&c.name])),
            }
        }
    }
    by_arg
        .into_iter()
        .map(|(name, access, cmds)| {
            let group = match access {
                GivenPath::Read => Group::Reads,
                GivenPath::Write => Group::Writes,
            };
            let cmds: Vec<String> = cmds.iter().map(|c| format!("`{} {c}`", m.name)).collect();
            let mut line = PromptLine::new(
                group,
                format!("{name}, the path you give to {}", cmds.join(", ")),
            );
            line.capability = "fs";
            line.reason = fs.reason.clone();
            line.roles = fs.roles.clone();
            line
        })
        .collect()
}

/// One group of the view, as `--json` gives it.
#[derive(Debug, Serialize)]
pub struct Section {
    pub title: &'static str,
    /// `root` for the root-equivalent grants, else the group.
    pub group: String,
    pub lines: Vec<PromptLine>,
}

/// The view as sections, in the order it is printed.
pub fn sections(m: &Manifest) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    for line in lines(m) {
        let (title, group) = if line.root.is_some() {
            ("equivalent to root on the node", "root".to_string())
        } else {
            (line.group.title(), group_name(line.group))
        };
        match out.last_mut() {
            Some(s) if s.group == group => s.lines.push(line),
            _ => out.push(Section {
                title,
                group,
                lines: vec![line],
            }),
        }
    }
    out
}

fn group_name(g: Group) -> String {
    serde_json::to_value(g)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The view as text, each line starting with `indent`; with `color`,
/// titles bold and root-equivalent lines red.
pub fn render(m: &Manifest, indent: &str, color: bool) -> String {
    let (bold, red, reset) = if color {
        ("\x1b[1m", "\x1b[31m", "\x1b[0m")
    } else {
        ("", "", "")
    };
    let mut out = String::new();
    for section in sections(m) {
        out.push_str(&format!("{indent}{bold}{}:{reset}\n", section.title));
        for l in &section.lines {
            let mut text = format!("{:<8} {}", l.capability, escape_line(&l.text));
            if let Some(user) = &l.user {
                text.push_str(&format!(" (as {})", escape_line(user)));
            }
            if !l.roles.is_empty() {
                let roles: Vec<String> = l
                    .roles
                    .iter()
                    .map(|r| escape_line(r).into_owned())
                    .collect();
                text.push_str(&format!(" on roles {}", roles.join(", ")));
            }
            if let Some(why) = &l.root {
                text = format!("{red}! {text}: {}{reset}", escape_line(why));
            } else {
                text = format!("  {text}");
            }
            if !l.reason.is_empty() {
                text.push_str(&format!(" — {}", escape_line(&l.reason)));
            }
            out.push_str(&format!("{indent}  {text}\n"));
        }
    }
    out
}

/// Whether to colour: a terminal, and `NO_COLOR` unset.
pub fn use_color(stream_is_terminal: bool) -> bool {
    stream_is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::manifest::Manifest;

    #[test]
    fn a_reason_cannot_fake_a_line_and_root_comes_first() {
        let m = Manifest::parse(
            br#"name = "p"
version = "0.1.0"
description = "d"
wit = "0.1.1"

[[command]]
name = "c"
about = "a"

[capabilities.fs]
reason = "config\n  exec  nothing at all"
read = ["/etc/x"]

[capabilities.exec]
reason = "r"

[[capabilities.exec.run]]
argv = ["uname", "-r"]
read-only = true

[[capabilities.exec.run]]
argv = ["rsync", "{args...}"]
user = "root"
reason = "copies"
"#,
        )
        .unwrap();
        let text = render(&m, "", false);
        assert_eq!(
            text,
            "equivalent to root on the node:\n  \
             ! exec     rsync {args...} (as root): any arguments — copies\n\
             reads files:\n    \
             fs       /etc/x — config\\x0a  exec  nothing at all\n\
             runs, read-only (also under --dry-run):\n    \
             exec     uname -r — r\n"
        );
        let coloured = render(&m, "", true);
        assert!(coloured.contains("\x1b[31m! exec"), "{coloured}");
    }

    #[test]
    fn paths_the_operator_gives_are_lines_of_their_own() {
        let m = Manifest::parse(
            br#"name = "mover"
version = "0.1.0"
description = "d"
wit = "0.1.2"

[[command]]
name = "a"
about = "a"

[[command.arg]]
name = "dest"
kind = "positional"
path = "write"

[[command]]
name = "b"
about = "b"

[[command.arg]]
name = "dest"
kind = "positional"
path = "write"

[[command.arg]]
name = "src"
kind = "option"
path = "read"

[capabilities.fs]
reason = "moves data"
read = ["/etc/x"]
"#,
        )
        .unwrap();
        assert_eq!(
            render(&m, "", false),
            "reads files:\n    \
             fs       /etc/x — moves data\n    \
             fs       SRC, the path you give to `mover b` — moves data\n\
             writes files:\n    \
             fs       DEST, the path you give to `mover a`, `mover b` — moves data\n"
        );
    }
}
