//! `stackhost:host/postgres`: PostgreSQL on nodes, with each grant
//! enforced by PostgreSQL itself. The host checks the node and database
//! against the grant ([`scope`]); everything else runs as the plugin's
//! own limited roles ([`roles`]), never as a superuser: listings, table
//! look-ups and plugin queries over the protocol ([`session`]; one
//! statement, read-only, rows and bytes capped, values as text by
//! [`text`]), dumps with the node's `pg_dump` and custom restores with its
//! `pg_restore` ([`tools`]), plain SQL restores over the protocol
//! ([`sql_stream`]). No plugin text reaches psql. Dumps and restores
//! stream; the plugin sees names and counts.

mod host;
pub mod roles;
mod scope;
mod session;
mod sql_stream;
mod text;
mod tools;

use crate::caps::interface::{Granted, Group, Interface, PromptLine, list, on_roles};
use crate::text::escape_line;
use semver::Version;
use serde::{Deserialize, Serialize};

/// Marker for the `postgres` interface.
pub struct Postgres;

impl Interface for Postgres {
    const NAME: &'static str = "postgres";
    const SINCE: Version = Version::new(0, 1, 0);
    const IN_PATCH_WORLD: bool = false;
}

/// `[capabilities.postgres]`: databases a plugin may list, dump and
/// restore.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PostgresGrant {
    pub reason: String,
    #[serde(default)]
    pub databases: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}

impl Granted for Postgres {
    type Grant = PostgresGrant;

    fn reason(g: &PostgresGrant) -> &str {
        &g.reason
    }

    fn validate(_: &PostgresGrant) -> Result<(), String> {
        Ok(())
    }

    fn prompt(p: &PostgresGrant) -> Vec<PromptLine> {
        p.databases
            .iter()
            .map(|d| {
                PromptLine::new(Group::Databases, format!("postgres database {d}"))
                    .reason(&p.reason)
                    .roles(&p.roles)
            })
            .collect()
    }

    fn describe(p: &PostgresGrant) -> String {
        format!(
            "postgres: databases {}{} — {}",
            list(&p.databases),
            on_roles(&p.roles),
            escape_line(&p.reason)
        )
    }
}
