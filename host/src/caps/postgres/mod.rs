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

use crate::caps::archive::ResView;
use crate::runtime::PluginState;
use wasmtime::component::{HasData, Linker};

/// Marker for the `postgres` interface.
pub struct Postgres;

impl HasData for Postgres {
    type Data<'a> = ResView<'a>;
}

pub fn add_to_linker(linker: &mut Linker<PluginState>) -> anyhow::Result<()> {
    crate::caps::bindings::stackhost::host::postgres::add_to_linker::<PluginState, Postgres>(
        linker,
        |s| s.res_view(),
    )
    .map_err(anyhow::Error::from)
}
