//! Grants: the capabilities the operator accepted for one plugin file
//! (keyed by its content digest, in its install record). Each section is a
//! capability's own grant type; every call is checked against it (see
//! [`crate::caps`]).

use crate::caps::registry::Capabilities;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refuses_unrequested() {
        let err = Grant::only(&Capabilities::default(), &["fs".into()]).unwrap_err();
        assert!(err.contains("does not request it"), "{err}");
        let err = Grant::only(&Capabilities::default(), &["net".into()]).unwrap_err();
        assert!(err.contains("unknown capability `net`"), "{err}");
    }
}
