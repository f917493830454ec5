//! Node selectors (`--nodes`): names, globs (`dea-*`) and roles
//! (`role:dea`), comma-separated or repeated; a node matching any is kept.

use super::NodeInfo;
use std::collections::BTreeSet;

/// Names of the nodes that `selectors` pick; all nodes when there are no
/// selectors. A selector that matches nothing is an error, so a typo never
/// silently shrinks a run.
pub fn select(nodes: &[NodeInfo], selectors: &[String]) -> Result<BTreeSet<String>, String> {
    if selectors.is_empty() {
        return Ok(nodes.iter().map(|n| n.name.clone()).collect());
    }
    if selectors
        .iter()
        .all(|s| s.split(',').all(|p| p.trim().is_empty()))
    {
        // `--nodes ''` (an unset shell variable, say): never read as "all".
        return Err(
            "--nodes was given but names no node (an empty selector); name nodes, globs or \
             `role:ROLE`, or leave --nodes out to run on every node"
                .into(),
        );
    }
    let mut picked = BTreeSet::new();
    for selector in selectors
        .iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let matched: Vec<&NodeInfo> = match selector.strip_prefix("role:") {
            Some(role) => nodes
                .iter()
                .filter(|n| n.roles.iter().any(|r| r == role))
                .collect(),
            None => nodes.iter().filter(|n| glob(selector, &n.name)).collect(),
        };
        if matched.is_empty() {
            let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
            return Err(format!(
                "node selector `{selector}` matches no node (nodes: {})",
                names.join(", ")
            ));
        }
        picked.extend(matched.into_iter().map(|n| n.name.clone()));
    }
    Ok(picked)
}

/// Shell-style match with `*` and `?`.
fn glob(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_selector_is_an_error_not_all_or_nothing() {
        let nodes = [node("a", &[]), node("b", &[])];
        for empty in [vec![String::new()], vec![" , ".to_string()]] {
            let err = select(&nodes, &empty).unwrap_err();
            assert!(err.contains("names no node"), "{err}");
        }
    }

    fn node(name: &str, roles: &[&str]) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            hostname: None,
            port: 22,
            user: "root".into(),
            address: "127.0.0.1".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            is_local: false,
            http_proxy: None,
            https_proxy: None,
        }
    }

    #[test]
    fn selects_by_name_glob_and_role() {
        let nodes = [
            node("core", &["core", "controller"]),
            node("dea-1", &["dea"]),
            node("dea-2", &["dea"]),
        ];
        let pick = |s: &[&str]| {
            select(&nodes, &s.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
        };
        assert_eq!(pick(&[]).len(), 3);
        assert_eq!(
            pick(&["dea-*"]),
            ["dea-1", "dea-2"].map(String::from).into()
        );
        assert_eq!(
            pick(&["role:controller"]),
            ["core"].map(String::from).into()
        );
        assert_eq!(
            pick(&["core,dea-2"]),
            ["core", "dea-2"].map(String::from).into()
        );
    }

    #[test]
    fn unmatched_selector_is_an_error() {
        let nodes = [node("core", &["core"])];
        let err = select(&nodes, &["role:dea".into()]).unwrap_err();
        assert!(err.contains("`role:dea` matches no node"), "{err}");
    }
}
