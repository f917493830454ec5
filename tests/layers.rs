//! The layers of `host/src` import only downward: the order written at
//! the top of `host/src/lib.rs` is checked here against every
//! `crate::`/`super::` path in the source (comments left out), so a new
//! import that points up a layer fails the build's tests, naming the file
//! and the path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Top to bottom. A module may import only modules listed after it; the
/// leaves at the end import none of the others.
const ORDER: &[&str] = &[
    "cli", "run", "plugin", "runtime", "caps", "cluster", "artifact", "sandbox",
];
const LEAVES: &[&str] = &["text", "redact", "time", "process", "paths"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without `//` and `/* */` comments (string contents kept:
/// a path inside a string is rare and harmless to over-count).
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("//") {
            rest = r.find('\n').map_or("", |i| &r[i..]);
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.find("*/").map_or("", |i| &r[i + 2..]);
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// The module path of a file below `src/` (`caps/ctx.rs` is
/// `[caps, ctx]`, `caps/mod.rs` is `[caps]`).
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The top-level modules that the paths in `text` name, for a file whose
/// module is `module`.
fn top_level_targets(module: &[String], text: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let bytes = text.as_bytes();
    for (start, _) in text.char_indices() {
        if start > 0 && is_ident(bytes[start - 1] as char) {
            continue;
        }
        let rest = &text[start..];
        let (mut base, mut tail): (Vec<String>, &str) =
            if let Some(t) = rest.strip_prefix("crate::") {
                (Vec::new(), t)
            } else if rest.starts_with("super::") {
                (module.to_vec(), rest)
            } else {
                continue;
            };
        while let Some(t) = tail.strip_prefix("super::") {
            base.pop();
            tail = t;
        }
        let shown: String = rest
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != ';')
            .collect();
        let names: Vec<String> = if let Some(list) = tail.strip_prefix('{') {
            // `crate::{a, b::c}`: the first name of each item at depth 0.
            let mut depth = 0;
            let mut items = vec![String::new()];
            for c in list.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => items.push(String::new()),
                    _ => items.last_mut().unwrap().push(c),
                }
            }
            items
                .iter()
                .map(|i| i.trim().chars().take_while(|c| is_ident(*c)).collect())
                .collect()
        } else {
            vec![tail.chars().take_while(|c| is_ident(*c)).collect()]
        };
        for name in names {
            let top = base.first().cloned().unwrap_or(name);
            if !top.is_empty() && top != "self" {
                found.push((top, shown.clone()));
            }
        }
    }
    found
}

#[test]
fn every_layer_imports_only_the_layers_below_it() {
    let src = src();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let rank = |m: &str| {
        ORDER
            .iter()
            .position(|o| *o == m)
            .or_else(|| LEAVES.contains(&m).then_some(ORDER.len()))
    };
    let mut wrong: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut seen_modules = std::collections::BTreeSet::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let module = module_of(rel);
        let Some(top) = module.first() else { continue };
        if ["lib", "main", "bin"].contains(&top.as_str()) {
            continue;
        }
        seen_modules.insert(top.clone());
        let from = rank(top).unwrap_or_else(|| {
            panic!(
                "host/src/{} is in no layer: add `{top}` to ORDER or LEAVES here and to the \
                 list in host/src/lib.rs",
                rel.display()
            )
        });
        let text = strip_comments(&std::fs::read_to_string(file).unwrap());
        for (target, path) in top_level_targets(&module, &text) {
            if &target == top {
                continue;
            }
            let Some(to) = rank(&target) else { continue };
            // Down the order only; a leaf imports no other module.
            if to <= from || (from == ORDER.len() && to == ORDER.len()) {
                wrong
                    .entry(format!("host/src/{}", rel.display()))
                    .or_default()
                    .push(format!("{path} ({top} -> {target})"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that point up (or sideways) a layer:\n{wrong:#?}"
    );
    // The order names only modules that exist, so it cannot go stale.
    for m in ORDER.iter().chain(LEAVES) {
        assert!(
            seen_modules.contains(*m),
            "ORDER names `{m}`, which host/src has not"
        );
    }
}

#[test]
fn the_checker_sees_an_upward_import() {
    let found = top_level_targets(
        &["caps".to_string(), "ctx".to_string()],
        &strip_comments("use super::run::RunOutcomes; // crate::cli\nuse crate::{text, run::x};"),
    );
    let names: Vec<&str> = found.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(names, ["caps", "text", "run"]);
}

#[test]
fn lib_rs_states_the_same_order() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let mut at = 0;
    for layer in ORDER {
        let needle = format!("//! {layer} ");
        let found = lib[at..].find(&needle).unwrap_or_else(|| {
            panic!("host/src/lib.rs does not list `{layer}` in the layer order")
        });
        at += found + needle.len();
    }
}
