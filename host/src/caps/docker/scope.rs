//! The docker grant check: which operations a plugin may use, on which
//! nodes, and which image names it may touch. Names are checked as Docker
//! references (`[HOST[:PORT]/]PATH[:TAG]`) after normalising (`:latest`
//! added, `docker.io/` dropped), never with a digest, so `@sha256:...` or
//! a registry host spelled another way cannot slip past a pattern.

use super::{Docker, DockerGrant};
use crate::caps::bindings::WitError;
use crate::caps::registry::Capabilities;
use crate::caps::roles_allow;
use crate::cluster::NodeInfo;

/// The operations a docker grant can name.
pub const OPERATIONS: &[&str] = &["list", "inspect", "build", "tag", "remove", "push", "pull"];

/// Longest image reference accepted (Docker's own limit on a name).
pub const MAX_NAME: usize = 255;
/// Longest tag (Docker's limit).
const MAX_TAG: usize = 128;

/// Check a manifest's docker request once, at install.
pub fn validate_request(req: &DockerGrant) -> Result<(), String> {
    for op in &req.operations {
        if op == "restart" {
            return Err(
                "docker operation `restart` is never granted: the guide says \"Do not run the \
                 docker restart command\"; app containers are restarted through the platform"
                    .into(),
            );
        }
        if !OPERATIONS.contains(&op.as_str()) {
            return Err(format!(
                "docker operation `{}` is unknown (known: {})",
                shown(op),
                OPERATIONS.join(", ")
            ));
        }
    }
    for pattern in &req.images {
        ImagePattern::parse(pattern)?;
    }
    Ok(())
}

/// An image-name pattern of a grant: a normalised reference in which `*`
/// stands for any run of characters (`stackato/stack-alsek:*`,
/// `registry.local:5000/*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePattern(String);

impl ImagePattern {
    pub fn parse(pattern: &str) -> Result<ImagePattern, String> {
        let ok = !pattern.is_empty()
            && pattern.len() <= MAX_NAME
            && pattern
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-:/*".contains(c));
        if !ok {
            return Err(format!(
                "docker image pattern `{}` is not a reference pattern (letters, digits, \
                 `. _ - : /` and `*`, at most {MAX_NAME} characters, no digest)",
                shown(pattern)
            ));
        }
        let p = pattern.strip_prefix("docker.io/").unwrap_or(pattern);
        Ok(ImagePattern(p.to_string()))
    }

    /// Whether the normalised `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        glob(self.0.as_bytes(), name.as_bytes())
    }
}

impl std::fmt::Display for ImagePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `*` matches any run of bytes; everything else itself.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Text from a plugin as it may appear in a message: control characters
/// (terminal escapes) shown escaped, and cut.
pub fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(80).flat_map(char::escape_debug).collect();
    if s.chars().count() > 80 {
        out.push_str("...");
    }
    out
}

/// Normalise an image reference: `NAME[:TAG]` with `:latest` added and a
/// leading `docker.io/` dropped. Refuses digests, upper case in the name,
/// empty components and anything Docker would not take as a reference.
pub fn normalize(reference: &str) -> Result<String, WitError> {
    let bad = |why: &str| {
        Err(WitError::InvalidArgument(format!(
            "image name `{}` {why}",
            shown(reference)
        )))
    };
    if reference.len() > MAX_NAME {
        return bad(&format!("is longer than {MAX_NAME} bytes"));
    }
    if reference.contains('@') {
        return bad(
            "has a digest: name images as NAME:TAG (a digest is not checked against the grant)",
        );
    }
    let (name, tag) = match reference.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, Some(t)),
        _ => (reference, None),
    };
    let mut components: Vec<&str> = name.split('/').collect();
    let host = if components.len() > 1 && is_registry_host(components[0]) {
        Some(components.remove(0))
    } else {
        None
    };
    if let Some(h) = host
        && !valid_host(h)
    {
        return bad("has a malformed registry host");
    }
    if components.is_empty() || !components.iter().all(|c| valid_path_component(c)) {
        return bad(
            "is not a Docker reference (lower-case path components of letters, digits and \
             `._-` separators)",
        );
    }
    let tag = tag.unwrap_or("latest");
    let tag_ok = !tag.is_empty()
        && tag.len() <= MAX_TAG
        && tag
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !tag_ok {
        return bad(&format!(
            "has a malformed tag (letters, digits, `_.-`, at most {MAX_TAG})"
        ));
    }
    let path = components.join("/");
    Ok(match host {
        Some("docker.io") | Some("index.docker.io") => format!("{path}:{tag}"),
        Some(h) => format!("{h}/{path}:{tag}"),
        None => format!("{path}:{tag}"),
    })
}

/// Whether `s` is an image id (`sha256:HEX` or 12 to 64 hex digits).
pub fn is_image_id(s: &str) -> bool {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    (12..=64).contains(&hex.len())
        && hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Docker's rule: the first component names a registry when it has a `.`
/// or a `:`, or is `localhost`.
fn is_registry_host(c: &str) -> bool {
    c.contains('.') || c.contains(':') || c == "localhost"
}

fn valid_host(h: &str) -> bool {
    let (name, port) = match h.split_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (h, None),
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    port_ok
        && !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`.
fn valid_path_component(c: &str) -> bool {
    if c.is_empty()
        || !c
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    {
        return false;
    }
    let b = c.as_bytes();
    if !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    // Separators: `.` or `_` alone, `__`, or any run of `-`.
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_alphanumeric() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !b[i].is_ascii_alphanumeric() {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// The docker grant of a plugin, if it has one.
fn request(grant: &Capabilities) -> Result<&DockerGrant, WitError> {
    grant
        .get::<Docker>()
        .ok_or_else(|| WitError::PermissionDenied("the plugin was not granted `docker`".into()))
}

/// Check that `op` is granted on `node`.
pub fn check_operation(grant: &Capabilities, node: &NodeInfo, op: &str) -> Result<(), WitError> {
    let req = request(grant)?;
    if !req.operations.iter().any(|o| o == op) {
        return Err(WitError::PermissionDenied(format!(
            "docker operation `{op}` is not granted (grant: docker operations [{}]); \
             the plugin's manifest must request it",
            req.operations.join(", ")
        )));
    }
    if !roles_allow(&req.roles, &node.roles) {
        return Err(WitError::PermissionDenied(format!(
            "the docker grant is limited to roles [{}] and node {} has roles [{}]",
            req.roles.join(", "),
            node.name,
            node.roles.join(", ")
        )));
    }
    Ok(())
}

/// Normalise `reference` and check it against the grant's image patterns.
pub fn check_image(grant: &Capabilities, op: &str, reference: &str) -> Result<String, WitError> {
    let name = normalize(reference)?;
    let req = request(grant)?;
    if req.images.is_empty() {
        return Ok(name);
    }
    let allowed = req
        .images
        .iter()
        .filter_map(|p| ImagePattern::parse(p).ok())
        .any(|p| p.matches(&name));
    if allowed {
        Ok(name)
    } else {
        Err(WitError::PermissionDenied(format!(
            "docker {op} of image `{name}` is outside the grant (grant: docker images [{}])",
            req.images.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_references() {
        assert_eq!(
            normalize("stackato/stack-alsek").unwrap(),
            "stackato/stack-alsek:latest"
        );
        assert_eq!(
            normalize("docker.io/stackato/stack-alsek:upgrade-2026-12-06").unwrap(),
            "stackato/stack-alsek:upgrade-2026-12-06"
        );
        assert_eq!(
            normalize("registry.local:5000/stackato/stack-alsek:x").unwrap(),
            "registry.local:5000/stackato/stack-alsek:x"
        );
        assert_eq!(normalize("localhost/a").unwrap(), "localhost/a:latest");
        for bad in [
            "stackato/stack-alsek@sha256:0123",
            "Stackato/x",
            "a//b",
            "a/b:",
            "a/b:-x",
            "a/-b",
            "a/b:t\u{1b}[2J",
            "reg..local:5000/a",
            "reg.local:50a0/a",
            "a/b c",
            "",
        ] {
            assert!(normalize(bad).is_err(), "{bad:?} accepted");
        }
        assert!(normalize(&"a".repeat(300)).is_err());
    }

    #[test]
    fn patterns_hold_against_host_tricks() {
        let alsek = ImagePattern::parse("stackato/stack-alsek:*").unwrap();
        let reg = ImagePattern::parse("registry.local:5000/*").unwrap();
        let n = |s| normalize(s).unwrap();
        assert!(alsek.matches(&n("stackato/stack-alsek")));
        assert!(alsek.matches(&n("docker.io/stackato/stack-alsek:upgrade-1")));
        assert!(!alsek.matches(&n("stackato/stack-alsek-evil:latest")));
        assert!(!alsek.matches(&n("evil.io/stackato/stack-alsek:latest")));
        assert!(!alsek.matches(&n("stackato/stack-alsek/x:latest")));
        assert!(reg.matches(&n("registry.local:5000/stackato/stack-alsek:x")));
        assert!(!reg.matches(&n("registry.local:50000/x")));
        assert!(normalize("registry.local:5000.evil.com/x").is_err());
        assert!(!reg.matches(&n("registry.local.evil.com:5000/x")));
        assert!(!reg.matches(&n("registry.local/x")));
        assert!(ImagePattern::parse("a@sha256:*").is_err());
        assert!(ImagePattern::parse("a\u{1b}").is_err());
    }

    #[test]
    fn ids() {
        assert!(is_image_id(&format!("sha256:{}", "a".repeat(64))));
        assert!(is_image_id("0123456789ab"));
        assert!(!is_image_id("stackato"));
        assert!(!is_image_id("0123"));
    }

    #[test]
    fn restart_is_never_granted() {
        let req = DockerGrant {
            reason: "r".into(),
            operations: vec!["restart".into()],
            roles: vec![],
            images: vec![],
        };
        let e = validate_request(&req).unwrap_err();
        assert!(e.contains("never granted"), "{e}");
    }
}
