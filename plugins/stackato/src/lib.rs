//! What the first-party plugins know about a Stackato cluster, and the
//! small things each of them used to write again: where Stackato keeps its
//! data, the service a role runs as, a command run as root, a file that may
//! be missing, the "would …" wording of a dry run, and JSON step data.
//!
//! Third-party plugins may depend on it by path; it adds nothing to what a
//! plugin may do (every call goes through the SDK and the plugin's grants).

use serde::Serialize;
use serde::de::DeserializeOwned;
use stackhost_sdk::prelude::*;

/// Where Stackato keeps its settings and data on a node.
pub mod paths {
    /// The cluster's settings (`kato config`'s files, the version file).
    pub const SETTINGS: &str = "/etc/stackato";
    /// The release a node runs, one line (`3.6.2`).
    pub const VERSION_FILE: &str = "/etc/stackato/version";
    /// Every data service's files, one directory per service.
    pub const SERVICES: &str = "/var/stackato/services";
    /// The filesystem service (its metadata and its storage).
    pub const FILESYSTEM_SERVICE: &str = "/var/stackato/services/filesystem";
    /// The filesystem service's instances, one `stackatofs-*` each.
    pub const FILESYSTEM_STORAGE: &str = "/var/stackato/services/filesystem/storage";
    /// The controller's application droplets.
    pub const DROPLETS: &str = "/var/stackato/data/droplets";
    /// The DEA's application containers.
    pub const CONTAINERS: &str = "/var/stackato/containers";
    /// The controller's Docker registry.
    pub const DOCKER_REGISTRY: &str = "/var/stackato/data/docker_registry";
}

/// The roles that are data services (their data lives in
/// `/var/stackato/services`): stopped after every other role, started
/// before them.
pub const DATA_SERVICE_ROLES: &[&str] = &[
    "filesystem",
    "postgresql",
    "mysql",
    "redis",
    "mongodb",
    "rabbitmq",
    "memcached",
];

/// The system service a role runs as: `stackato-ROLE`.
pub fn role_service(role: &str) -> String {
    format!("stackato-{role}")
}

/// The init script of a role's service: `/etc/init.d/stackato-ROLE`.
pub fn role_init_script(role: &str) -> String {
    format!("/etc/init.d/{}", role_service(role))
}

/// `program` as root, with `LANG=C` so its output parses the same on every
/// node.
pub fn as_root(program: &str) -> Command {
    Command::new(program).user("root").env("LANG", "C")
}

/// A package manager (`apt-get`, `dpkg-query`, …) as root that never asks a
/// question: [`as_root`] plus `DEBIAN_FRONTEND=noninteractive`.
pub fn apt_as_root(program: &str) -> Command {
    as_root(program).env("DEBIAN_FRONTEND", "noninteractive")
}

/// A file's text, or `None` when it does not exist; any other error (no
/// grant, not text) is an error.
pub fn read_optional(node: &Node, path: &str) -> Result<Option<String>> {
    match node.read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// `text` (a verb in the present: "add usrquota to /srv") as a dry run
/// says it: "would add usrquota to /srv"; unchanged on a real run.
pub fn would(inv: &Invocation, text: impl Into<String>) -> String {
    let text = text.into();
    if inv.dry_run() {
        format!("would {text}")
    } else {
        text
    }
}

/// `done` (what a step did: "stopped dea") as a dry run says it: "would
/// have stopped dea"; unchanged on a real run.
pub fn would_have(inv: &Invocation, done: impl Into<String>) -> String {
    let done = done.into();
    if inv.dry_run() {
        format!("would have {done}")
    } else {
        done
    }
}

/// A step's payload or data as JSON.
pub fn to_json(value: &impl Serialize) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::plugin(e.to_string()))
}

/// A step's payload or data read back; `what` names it in the error
/// ("the upgrade step's data: expected …").
pub fn from_json<T: DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::plugin(format!("{what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_runs_as_its_stackato_service() {
        assert_eq!(role_service("dea"), "stackato-dea");
        assert_eq!(
            role_init_script("controller"),
            "/etc/init.d/stackato-controller"
        );
    }

    #[test]
    fn as_root_sets_the_user_and_the_locale() {
        let c = apt_as_root("apt-get");
        assert_eq!(c.program(), "apt-get");
        let dbg = format!("{c:?}");
        assert!(
            dbg.contains("root") && dbg.contains("LANG") && dbg.contains("DEBIAN_FRONTEND"),
            "{dbg}"
        );
    }

    #[test]
    fn json_round_trips_and_a_bad_payload_is_named() {
        let text = to_json(&vec![1, 2]).unwrap();
        assert_eq!(from_json::<Vec<u32>>(&text, "x").unwrap(), [1, 2]);
        let err = from_json::<Vec<u32>>("{", "the step's payload").unwrap_err();
        assert!(err.to_string().contains("the step's payload"), "{err}");
    }
}
