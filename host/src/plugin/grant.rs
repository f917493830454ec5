//! Grants: the capabilities the operator accepted for one plugin file
//! (keyed by its content digest, in its install record). Each section is a
//! capability's own grant type; every call is checked against it (see
//! [`crate::caps`]).

use crate::caps::bindings::exports::stackhost::host::commands as api;
use crate::caps::fs::Fs;
use crate::caps::registry::Capabilities;
use crate::plugin::manifest::{CommandSpec, GivenPath};
use serde::{Deserialize, Serialize};

/// What the operator granted a plugin: a subset of its requests, each with
/// the scope the manifest asked for.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub capabilities: Capabilities,
}

impl Grant {
    /// Grant every request of the manifest.
    pub fn all(requested: &Capabilities) -> Grant {
        Grant {
            capabilities: requested.clone(),
        }
    }

    /// Grant only the named capabilities; each must have been requested.
    pub fn only(requested: &Capabilities, names: &[String]) -> Result<Grant, String> {
        Ok(Grant {
            capabilities: requested.only(names)?,
        })
    }

    /// Whether the interface `name` (`exec`, `fs`, ...) is granted.
    pub fn has(&self, name: &str) -> bool {
        self.capabilities.has(name)
    }

    /// Names of the granted interfaces, for display.
    pub fn names(&self) -> Vec<&'static str> {
        self.capabilities.names()
    }

    /// The capabilities of one run of `command`: the grant, with the
    /// paths the operator gave for its `path` arguments added to the fs
    /// grant (reads, or reads and writes). Nothing is added when fs was
    /// not granted. A given path must be absolute, without `..` or control
    /// characters, and not `/` itself.
    pub fn for_run(
        &self,
        command: &CommandSpec,
        invocation: &api::Invocation,
    ) -> Result<Capabilities, String> {
        let mut caps = self.capabilities.clone();
        let Some(fs) = caps.get_mut::<Fs>() else {
            return Ok(caps);
        };
        for spec in &command.args {
            let Some(access) = spec.path else { continue };
            let given = invocation.args.iter().filter(|a| a.name == spec.name);
            for value in given.flat_map(|a| &a.values) {
                check_given(&spec.name, value)?;
                if access == GivenPath::Write
                    && let Some(why) = crate::caps::fs::judge::write_root_reason(value)
                {
                    return Err(format!(
                        "{} `{}` is a place whose contents root trusts ({why}): a plugin may \
                         not be given it to write",
                        spec.name.to_uppercase(),
                        crate::text::escape_line(value)
                    ));
                }
                let list = match access {
                    GivenPath::Read => &mut fs.read,
                    GivenPath::Write => &mut fs.write,
                };
                if !list.contains(value) {
                    list.push(value.clone());
                }
            }
        }
        Ok(caps)
    }
}

/// A path the operator gave for argument `name`, as a grant root.
fn check_given(name: &str, value: &str) -> Result<(), String> {
    let shown = crate::text::escape_line(value);
    let why = if !value.starts_with('/') {
        "is not an absolute path"
    } else if value.chars().any(char::is_control) {
        "holds a control character"
    } else if value.split('/').any(|p| p == "..") {
        "holds `..`"
    } else if value.trim_end_matches('/').is_empty() {
        "is the root directory, which would grant the whole node"
    } else {
        return Ok(());
    };
    Err(format!(
        "{} `{shown}` {why}: give the absolute path of the place itself",
        name.to_uppercase()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relocate() -> (Grant, CommandSpec) {
        let m = crate::plugin::manifest::Manifest::parse(
            br#"name = "p"
version = "0.1.0"
description = "d"
wit = "0.1.2"

[[command]]
name = "move"
about = "a"

[[command.arg]]
name = "dest"
kind = "positional"
path = "write"

[[command.arg]]
name = "from"
kind = "option"
multiple = true
path = "read"

[capabilities.fs]
reason = "r"
read = ["/etc/x"]
"#,
        )
        .unwrap();
        let cmd = m.command("move").unwrap().clone();
        (Grant::all(&m.capabilities), cmd)
    }

    fn invocation(args: &[(&str, &[&str])]) -> api::Invocation {
        api::Invocation {
            command: "move".into(),
            args: args
                .iter()
                .map(|(n, v)| api::Arg {
                    name: (*n).into(),
                    values: v.iter().map(|s| s.to_string()).collect(),
                })
                .collect(),
            dry_run: false,
        }
    }

    #[test]
    fn given_paths_join_the_fs_grant_for_the_run() {
        let (grant, cmd) = relocate();
        let inv = invocation(&[("dest", &["/mnt/ebs"]), ("from", &["/srv/a", "/srv/b"])]);
        let caps = grant.for_run(&cmd, &inv).unwrap();
        let fs = caps.get::<Fs>().unwrap();
        assert_eq!(fs.write, ["/mnt/ebs"]);
        assert_eq!(fs.read, ["/etc/x", "/srv/a", "/srv/b"]);
        // The grant itself is unchanged.
        assert_eq!(grant.capabilities.get::<Fs>().unwrap().write.len(), 0);
    }

    #[test]
    fn given_paths_that_would_widen_more_are_refused() {
        let (grant, cmd) = relocate();
        for (bad, why) in [
            ("mnt/ebs", "not an absolute path"),
            ("/mnt/../etc", "`..`"),
            ("/mnt/ebs\n", "control character"),
            ("/", "root directory"),
            ("//", "root directory"),
            ("/etc", "root trusts"),
            ("/usr/bin/x", "root trusts"),
        ] {
            let err = grant
                .for_run(&cmd, &invocation(&[("dest", &[bad])]))
                .unwrap_err();
            assert!(
                err.contains(why) && err.starts_with("DEST `"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn without_an_fs_grant_nothing_is_added() {
        let (grant, cmd) = relocate();
        let without = Grant::only(&grant.capabilities, &[]).unwrap();
        let caps = without
            .for_run(&cmd, &invocation(&[("dest", &["/mnt/ebs"])]))
            .unwrap();
        assert!(caps.get::<Fs>().is_none());
    }

    #[test]
    fn only_refuses_unrequested() {
        let err = Grant::only(&Capabilities::default(), &["fs".into()]).unwrap_err();
        assert!(err.contains("does not request it"), "{err}");
        let err = Grant::only(&Capabilities::default(), &["net".into()]).unwrap_err();
        assert!(err.contains("unknown capability `net`"), "{err}");
    }
}
