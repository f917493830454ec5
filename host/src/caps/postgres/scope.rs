//! The postgres grant check done by the host before anything reaches a
//! node: the node's roles and the database name against the grant. What a
//! granted database then allows is enforced by PostgreSQL itself (see
//! [`super::roles`]).

use super::{Postgres, PostgresGrant};
use crate::caps::bindings::WitError;
use crate::caps::ctx::CallCtx;
use crate::caps::ctx::CapView;
use crate::caps::roles_allow;
use crate::cluster::Node;
use std::sync::Arc;

/// The plugin's postgres grant.
pub fn grant(call: &CallCtx) -> Result<&PostgresGrant, WitError> {
    call.grant
        .get::<Postgres>()
        .ok_or_else(|| WitError::PermissionDenied("the plugin has no postgres grant".into()))
}

/// Which databases a grant names: every one (`*`) or these.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Databases {
    All,
    Only(Vec<String>),
}

impl Databases {
    pub fn of(grant: &PostgresGrant) -> Databases {
        if grant.databases.iter().any(|d| d == "*") {
            Databases::All
        } else {
            let mut names = grant.databases.clone();
            names.sort();
            names.dedup();
            Databases::Only(names)
        }
    }

    pub fn allows(&self, database: &str) -> bool {
        match self {
            Databases::All => true,
            Databases::Only(names) => names.iter().any(|d| d == database),
        }
    }
}

/// The node and database, checked against the postgres grant.
pub fn scoped(call: &CallCtx, node: &str, database: Option<&str>) -> Result<Arc<Node>, WitError> {
    let grant = grant(call)?;
    let node = CapView { call }.node(node)?;
    if !roles_allow(&grant.roles, &node.info.roles) {
        return Err(WitError::PermissionDenied(format!(
            "postgres on node {} is outside the grant (postgres roles: {})",
            node.info.name,
            grant.roles.join(", ")
        )));
    }
    if let Some(db) = database {
        if !Databases::of(grant).allows(db) {
            return Err(WitError::PermissionDenied(format!(
                "database `{db}` on node {} is outside the grant (postgres databases: {})",
                node.info.name,
                grant.databases.join(", ")
            )));
        }
        if db.is_empty() || db.contains('\0') {
            return Err(WitError::InvalidArgument(format!(
                "`{}` is not a database name",
                db.escape_debug()
            )));
        }
    }
    Ok(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(dbs: &[&str]) -> PostgresGrant {
        PostgresGrant {
            reason: "test".into(),
            databases: dbs.iter().map(|d| d.to_string()).collect(),
            roles: vec![],
        }
    }

    #[test]
    fn star_allows_every_database_names_only_themselves() {
        assert_eq!(Databases::of(&request(&["aok", "*"])), Databases::All);
        let only = Databases::of(&request(&["b", "aok", "b"]));
        assert_eq!(only, Databases::Only(vec!["aok".into(), "b".into()]));
        assert!(only.allows("aok") && !only.allows("aok2") && !only.allows("*"));
    }
}
