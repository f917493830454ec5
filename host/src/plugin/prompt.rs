//! The grant as the operator reads it, at install and in `plugin info`:
//! grouped (reads, writes, runs read-only, runs and changes, databases,
//! Docker, ...), one grant per line with the plugin's reason beside it,
//! and everything equivalent to root on the node first, with why. Every
//! text from the manifest is escaped, so a `reason` or a pattern can
//! neither erase nor fake a line.

use crate::caps::interface::{Group, PromptLine};
use crate::caps::registry::Capabilities;
use crate::text::escape_line;
use serde::Serialize;

/// The grant's lines, root-equivalent ones first, then by group.
pub fn lines(c: &Capabilities) -> Vec<PromptLine> {
    let mut lines: Vec<PromptLine> = c.requests().into_iter().flat_map(|r| r.lines).collect();
    lines.sort_by_key(|l| (l.root.is_none(), l.group));
    lines
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
pub fn sections(c: &Capabilities) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    for line in lines(c) {
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
pub fn render(c: &Capabilities, indent: &str, color: bool) -> String {
    let (bold, red, reset) = if color {
        ("\x1b[1m", "\x1b[31m", "\x1b[0m")
    } else {
        ("", "", "")
    };
    let mut out = String::new();
    for section in sections(c) {
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
        let text = render(&m.capabilities, "", false);
        assert_eq!(
            text,
            "equivalent to root on the node:\n  \
             ! exec     rsync {args...} (as root): any arguments — copies\n\
             reads files:\n    \
             fs       /etc/x — config\\x0a  exec  nothing at all\n\
             runs, read-only (also under --dry-run):\n    \
             exec     uname -r — r\n"
        );
        let coloured = render(&m.capabilities, "", true);
        assert!(coloured.contains("\x1b[31m! exec"), "{coloured}");
    }
}
