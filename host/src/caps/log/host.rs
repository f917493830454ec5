//! The `log` Host impl and its linker.

use super::Log;
use crate::caps::bindings::stackhost::host::log::{self, Level};
use crate::caps::ctx::CapView;
use crate::caps::ctx::CapsView;
use crate::caps::linker::Link;
use wasmtime::component::{HasData, Linker};

impl HasData for Log {
    type Data<'a> = CapView<'a>;
}

impl Link for Log {
    fn add_to_linker<T: CapsView>(linker: &mut Linker<T>) -> anyhow::Result<()> {
        log::add_to_linker::<T, Log>(linker, |s| CapView {
            call: s.caps().call,
        })
        .map_err(anyhow::Error::from)
    }
}

/// Longest message kept; longer ones are cut, so a chatty plugin cannot
/// fill the host's memory (CallCtx also caps the number of events).
const MAX_MESSAGE: usize = 4096;

impl log::Host for CapView<'_> {
    async fn event(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        let mut message = message;
        if message.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        tracing::event!(tracing::Level::DEBUG, plugin = %self.call.plugin, level, "{message}");
        self.call.event(level, message);
        Ok(())
    }

    async fn progress(
        &mut self,
        done: u64,
        total: Option<u64>,
        unit: String,
    ) -> wasmtime::Result<()> {
        tracing::debug!(plugin = %self.call.plugin, done, ?total, %unit, "progress");
        if let Some(progress) = &self.call.progress {
            progress.set(done, total, &unit);
        }
        Ok(())
    }
}
