//! Exact argv patterns: each element of a `[[capabilities.exec.run]]`
//! entry's `argv` is a literal or ends in a typed hole, and a call matches
//! only an argv of exactly the pattern's length, unless the pattern ends in
//! the one variadic hole `{args...}` (which the prompt always flags as
//! root-equivalent).
//!
//! An element is a literal, optionally followed by one hole:
//! `stackato-{role}`, `--output={choice:size|avail}`, `{path:read}`.
//! Literal braces are written doubled (`${{Status}}`), as in Rust's
//! `format!`.
//!
//! | hole            | matches                                                      |
//! |-----------------|--------------------------------------------------------------|
//! | `{path:read}`   | an absolute path that resolves, on the node and after symlinks, inside the fs read (or write) grant; the resolved path is passed |
//! | `{path:write}`  | the same inside the fs write grant (the last part may not exist yet) |
//! | `{word}`        | `[A-Za-z0-9_][A-Za-z0-9_.@:+=-]*`, at most 255 bytes (never an option, never a path) |
//! | `{int}`         | decimal digits, at most 19                                   |
//! | `{size}`        | digits with an optional unit (`K`, `M`, `G`, `T`, `P`, then `i`/`B`/`iB`) |
//! | `{choice:a\|b}` | one of the listed literals                                    |
//! | `{mount}`       | the mount point, on the node, of a filesystem holding one of the fs grant's paths (read or write); passed as given |
//! | `{node}`        | the name of a node in the inventory                          |
//! | `{role}`        | a role some node in the inventory holds                      |
//! | `{args...}`     | any further arguments (last element only): equivalent to root |

use serde::{Deserialize, Serialize};
use std::fmt;

/// The longest value a word hole takes.
const MAX_WORD: usize = 255;

/// A typed hole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hole {
    Path(PathAccess),
    Word,
    Int,
    Size,
    Choice(Vec<String>),
    /// The mount point of a filesystem the fs grant reaches.
    Mount,
    Node,
    Role,
    /// `{args...}`: any further arguments.
    Args,
}

/// Which fs grant a path hole resolves inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathAccess {
    Read,
    Write,
}

/// One element of a pattern: a literal, then at most one hole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub literal: String,
    pub hole: Option<Hole>,
}

/// An exact argv pattern, as written in the manifest (a list of strings)
/// and parsed when the manifest is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Argv {
    /// The manifest's strings, kept to serialize the grant back as written.
    source: Vec<String>,
    elements: Vec<Element>,
}

/// What a call's argument must still pass once its element matched: the
/// checks that need the node (paths) or the inventory (nodes, roles).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    /// Argument `index` (0 is the program) names a path: `value` after the
    /// element's literal, to be resolved inside the fs grant and passed as
    /// `literal` + the resolved path.
    Path {
        index: usize,
        literal: String,
        value: String,
        access: PathAccess,
    },
    /// Argument `index` must be the mount point of a filesystem holding
    /// a path of the fs grant.
    Mount {
        index: usize,
        value: String,
    },
    Node {
        index: usize,
        value: String,
    },
    Role {
        index: usize,
        value: String,
    },
}

impl Hole {
    fn parse(spec: &str) -> Result<Hole, String> {
        let (name, arg) = match spec.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (spec, None),
        };
        Ok(match (name, arg) {
            ("path", Some("read")) => Hole::Path(PathAccess::Read),
            ("path", Some("write")) => Hole::Path(PathAccess::Write),
            ("word", None) => Hole::Word,
            ("int", None) => Hole::Int,
            ("size", None) => Hole::Size,
            ("mount", None) => Hole::Mount,
            ("node", None) => Hole::Node,
            ("role", None) => Hole::Role,
            ("args...", None) => Hole::Args,
            ("choice", Some(list)) => {
                let items: Vec<String> = list.split('|').map(str::to_string).collect();
                if items.iter().any(|i| i.is_empty() || i.starts_with('-')) {
                    return Err(format!(
                        "`{{{spec}}}` lists an empty choice or one starting with `-`; write \
                         options as literals"
                    ));
                }
                Hole::Choice(items)
            }
            _ => {
                return Err(format!(
                    "`{{{spec}}}` is not a hole; holes are {{path:read}}, {{path:write}}, \
                     {{word}}, {{int}}, {{size}}, {{choice:A|B}}, {{mount}}, {{node}}, {{role}} and \
                     {{args...}} (write a literal brace doubled: `{{{{`)"
                ));
            }
        })
    }

    /// Whether `value` is of this hole's type (paths, nodes and roles are
    /// only checked for their form here; see [`Pending`]).
    fn accepts(&self, value: &str) -> bool {
        match self {
            Hole::Path(_) | Hole::Mount => is_path_form(value),
            Hole::Word => is_word(value),
            Hole::Int => {
                !value.is_empty() && value.len() <= 19 && value.bytes().all(|b| b.is_ascii_digit())
            }
            Hole::Size => is_size(value),
            Hole::Choice(items) => items.iter().any(|i| i == value),
            Hole::Node | Hole::Role => is_word(value),
            Hole::Args => true,
        }
    }
}

impl fmt::Display for Hole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hole::Path(PathAccess::Read) => f.write_str("{path:read}"),
            Hole::Path(PathAccess::Write) => f.write_str("{path:write}"),
            Hole::Word => f.write_str("{word}"),
            Hole::Int => f.write_str("{int}"),
            Hole::Size => f.write_str("{size}"),
            Hole::Choice(items) => write!(f, "{{choice:{}}}", items.join("|")),
            Hole::Mount => f.write_str("{mount}"),
            Hole::Node => f.write_str("{node}"),
            Hole::Role => f.write_str("{role}"),
            Hole::Args => f.write_str("{args...}"),
        }
    }
}

/// A word: never an option, never a path, no shell or terminal character.
pub fn is_word(value: &str) -> bool {
    value.len() <= MAX_WORD
        && value.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.@:+=-".contains(c))
}

/// An absolute path with no control character (a newline would end a
/// line the program writes or reads) and no `..`.
fn is_path_form(value: &str) -> bool {
    value.starts_with('/')
        && !value.chars().any(char::is_control)
        && !value.split('/').any(|part| part == "..")
}

fn is_size(value: &str) -> bool {
    let digits = value.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 19 {
        return false;
    }
    let unit = &value[digits..];
    unit.is_empty()
        || ["K", "M", "G", "T", "P"].iter().any(|u| {
            unit.strip_prefix(u)
                .is_some_and(|rest| ["", "i", "B", "iB"].contains(&rest))
        })
}

/// Split a manifest element into its literal and its hole, undoubling
/// `{{` and `}}`.
fn parse_element(text: &str) -> Result<Element, String> {
    let mut literal = String::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|&(_, c)| c) == Some('{') => {
                chars.next();
                literal.push('{');
            }
            '}' if chars.peek().map(|&(_, c)| c) == Some('}') => {
                chars.next();
                literal.push('}');
            }
            '{' => {
                let rest = &text[i + 1..];
                let Some(end) = rest.find('}') else {
                    return Err(format!(
                        "`{text}` opens a hole with `{{` and never closes it"
                    ));
                };
                if end + 1 != rest.len() {
                    return Err(format!(
                        "`{text}` has text after its hole; a hole ends its element \
                         (write a literal brace doubled)"
                    ));
                }
                let hole = Hole::parse(&rest[..end])?;
                return Ok(Element {
                    literal,
                    hole: Some(hole),
                });
            }
            '}' => {
                return Err(format!(
                    "`{text}` has a lone `}}` (write a literal one as `}}}}`)"
                ));
            }
            c => literal.push(c),
        }
    }
    Ok(Element {
        literal,
        hole: None,
    })
}

impl Argv {
    pub fn parse(source: Vec<String>) -> Result<Argv, String> {
        let mut elements = Vec::with_capacity(source.len());
        for (i, text) in source.iter().enumerate() {
            if text.contains('\0') {
                return Err("an argv element contains a NUL byte".into());
            }
            let e = parse_element(text)?;
            if i == 0 && e.hole.is_some() {
                return Err(format!(
                    "`{text}`: the program (the first element) must be a literal"
                ));
            }
            if e.hole == Some(Hole::Args) && (i + 1 != source.len() || !e.literal.is_empty()) {
                return Err("`{args...}` may only be the whole last element".into());
            }
            if i == 0 && e.literal.is_empty() {
                return Err("the program (the first element) is empty".into());
            }
            elements.push(e);
        }
        if elements.is_empty() {
            return Err("`argv` is empty; give the program and its arguments".into());
        }
        Ok(Argv { source, elements })
    }

    /// The program: the first element, a literal.
    pub fn program(&self) -> &str {
        &self.elements[0].literal
    }

    pub fn elements(&self) -> &[Element] {
        &self.elements
    }

    /// Whether the pattern ends in `{args...}`.
    pub fn is_variadic(&self) -> bool {
        self.elements.last().and_then(|e| e.hole.as_ref()) == Some(&Hole::Args)
    }

    /// Whether it holds a hole of `kind`.
    pub fn has_hole(&self, test: impl Fn(&Hole) -> bool) -> bool {
        self.elements
            .iter()
            .any(|e| e.hole.as_ref().is_some_and(&test))
    }

    /// Whether every element is a literal.
    pub fn all_literal(&self) -> bool {
        self.elements.iter().all(|e| e.hole.is_none())
    }

    /// Match a call: the program exactly, then each argument against its
    /// element. `None` when it does not match; else the checks still to
    /// make on the node.
    pub fn matches(&self, program: &str, args: &[String]) -> Option<Vec<Pending>> {
        if program != self.program() {
            return None;
        }
        let rest = &self.elements[1..];
        let fixed = if self.is_variadic() {
            rest.len() - 1
        } else {
            rest.len()
        };
        if args.len() < fixed || (!self.is_variadic() && args.len() != fixed) {
            return None;
        }
        let mut pending = Vec::new();
        for (i, (e, arg)) in rest[..fixed].iter().zip(args).enumerate() {
            let value = arg.strip_prefix(e.literal.as_str())?;
            let index = i + 1;
            match &e.hole {
                None if value.is_empty() => {}
                None => return None,
                Some(h) if !h.accepts(value) => return None,
                Some(Hole::Path(access)) => pending.push(Pending::Path {
                    index,
                    literal: e.literal.clone(),
                    value: value.to_string(),
                    access: *access,
                }),
                Some(Hole::Mount) => pending.push(Pending::Mount {
                    index,
                    value: value.to_string(),
                }),
                Some(Hole::Node) => pending.push(Pending::Node {
                    index,
                    value: value.to_string(),
                }),
                Some(Hole::Role) => pending.push(Pending::Role {
                    index,
                    value: value.to_string(),
                }),
                Some(_) => {}
            }
        }
        Some(pending)
    }
}

/// Shown with holes as holes and literals quoted where a shell would need
/// it: `service 'stackato-{role}' {choice:stop|start}` reads as
/// `service stackato-{role} {choice:stop|start}`.
impl fmt::Display for Argv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.elements.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            if e.literal.is_empty() && e.hole.is_none() {
                // An empty argument (`ssh-keygen -N ''`) must show as one.
                f.write_str("''")?;
            } else if e.literal.is_empty() {
            } else if e.hole.is_some() && is_plain(&e.literal) {
                f.write_str(&e.literal)?;
            } else {
                f.write_str(&crate::text::shell_quote(&e.literal))?;
            }
            if let Some(h) = &e.hole {
                write!(f, "{h}")?;
            }
        }
        Ok(())
    }
}

fn is_plain(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "_.@:+=/,-".contains(c))
}

impl Serialize for Argv {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.source.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Argv {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Argv, D::Error> {
        let source = Vec::<String>::deserialize(d)?;
        Argv::parse(source).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Argv {
        Argv::parse(words.iter().map(|w| w.to_string()).collect()).unwrap()
    }

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn an_exact_pattern_matches_only_its_own_length() {
        let p = argv(&["cat", "/proc/self/mountinfo"]);
        assert!(p.matches("cat", &args(&["/proc/self/mountinfo"])).is_some());
        assert!(
            p.matches("cat", &args(&["/proc/self/mountinfo", "/etc/shadow"]))
                .is_none()
        );
        assert!(p.matches("cat", &args(&[])).is_none());
        assert!(
            p.matches("/bin/cat", &args(&["/proc/self/mountinfo"]))
                .is_none()
        );
    }

    #[test]
    fn holes_take_only_their_type() {
        let p = argv(&["service", "stackato-{role}", "{choice:stop|start}"]);
        let m = p
            .matches("service", &args(&["stackato-dea", "stop"]))
            .unwrap();
        assert_eq!(
            m,
            vec![Pending::Role {
                index: 1,
                value: "dea".into()
            }]
        );
        for bad in [
            ["stackato-dea", "restart"],
            ["stackato-../../bin/sh", "stop"],
            ["stackato--x", "stop"],
            ["stackato-", "stop"],
            ["dea", "stop"],
        ] {
            assert!(p.matches("service", &args(&bad)).is_none(), "{bad:?}");
        }
        let w = argv(&["apt-get", "-y", "install", "{word}"]);
        assert!(
            w.matches("apt-get", &args(&["-y", "install", "nagios4"]))
                .is_some()
        );
        for bad in [
            "-oDpkg::Pre-Invoke::=sh",
            "--no-simulate",
            "a/b",
            "a b",
            "x\n",
            "",
        ] {
            assert!(
                w.matches("apt-get", &args(&["-y", "install", bad]))
                    .is_none(),
                "{bad:?}"
            );
        }
        let n = argv(&["kill", "-HUP", "{int}"]);
        assert!(n.matches("kill", &args(&["-HUP", "1234"])).is_some());
        assert!(n.matches("kill", &args(&["-HUP", "-1"])).is_none());
        let s = argv(&["btrfs", "qgroup", "limit", "{size}", "{path:write}"]);
        assert!(
            s.matches("btrfs", &args(&["qgroup", "limit", "10G", "/srv/x"]))
                .is_some()
        );
        assert!(
            s.matches("btrfs", &args(&["qgroup", "limit", "10X", "/srv/x"]))
                .is_none()
        );
    }

    #[test]
    fn a_path_hole_takes_an_absolute_path_without_dots_or_controls() {
        let p = argv(&["du", "-sxB1", "{path:read}"]);
        let m = p.matches("du", &args(&["-sxB1", "/srv/data"])).unwrap();
        assert!(
            matches!(&m[0], Pending::Path { index: 2, value, access: PathAccess::Read, .. } if value == "/srv/data")
        );
        for bad in [
            "--files0-from=/etc/shadow",
            "srv",
            "/srv/../etc",
            "/srv/x\n",
            "-x",
        ] {
            assert!(p.matches("du", &args(&["-sxB1", bad])).is_none(), "{bad:?}");
        }
        let eq = argv(&["findmnt", "--tab-file={path:read}"]);
        let m = eq
            .matches("findmnt", &args(&["--tab-file=/etc/fstab"]))
            .unwrap();
        assert!(
            matches!(&m[0], Pending::Path { literal, value, .. } if literal == "--tab-file=" && value == "/etc/fstab")
        );
    }

    #[test]
    fn args_is_the_only_way_to_take_more() {
        let p = argv(&["rsync", "{args...}"]);
        assert!(p.is_variadic());
        assert!(p.matches("rsync", &args(&["-e", "sh -c x"])).is_some());
        assert!(p.matches("rsync", &args(&[])).is_some());
        assert!(Argv::parse(args(&["rsync", "{args...}", "x"])).is_err());
        assert!(Argv::parse(args(&["rsync", "-x{args...}"])).is_err());
    }

    #[test]
    fn malformed_patterns_are_refused_with_the_reason() {
        let err = |w: &[&str]| Argv::parse(args(w)).unwrap_err();
        assert!(err(&["{word}"]).contains("program"));
        assert!(err(&["ls", "{wrod}"]).contains("not a hole"));
        assert!(err(&["ls", "{word"]).contains("never closes"));
        assert!(err(&["ls", "{word}x"]).contains("after its hole"));
        assert!(err(&["ls", "a}b"]).contains("lone"));
        assert!(err(&["", "x"]).contains("empty"));
        assert!(err(&[]).contains("empty"));
        assert!(err(&["ls", "{choice:a|-b}"]).contains("-"));
    }

    #[test]
    fn an_empty_argument_shows_as_one() {
        let a = argv(&["ssh-keygen", "-N", "", "-f", "{path:write}"]);
        assert_eq!(a.to_string(), "ssh-keygen -N '' -f {path:write}");
    }

    #[test]
    fn doubled_braces_are_literal_and_show_as_written() {
        let p = argv(&[
            "dpkg-query",
            "-W",
            "-f",
            "${{Status}} ${{Version}}",
            "{word}",
        ]);
        assert!(
            p.matches(
                "dpkg-query",
                &args(&["-W", "-f", "${Status} ${Version}", "nagios4"])
            )
            .is_some()
        );
        assert_eq!(
            p.to_string(),
            "dpkg-query -W -f '${Status} ${Version}' {word}"
        );
        let q = argv(&["service", "stackato-{role}", "{choice:stop|start}"]);
        assert_eq!(q.to_string(), "service stackato-{role} {choice:stop|start}");
    }
}
