//! Ctrl-C and SIGTERM during a run. The first signal asks the run to stop:
//! no new step starts, running steps are dropped (their programs' process
//! groups are killed on the node, unfinished artifacts removed), the
//! journal marks the run `interrupted` and the lock is released. A second
//! signal exits at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use tokio::sync::Notify;

/// The signal that interrupted a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Int,
    Term,
    /// Not a signal: the run could no longer renew its cluster lock (the
    /// journal's database was out of reach past the lease, or the lock was
    /// taken with --force-unlock), so it stops as if interrupted.
    LockLost,
    /// Not a signal: the journal could not record a step's end, so no step
    /// that it could not record first may start.
    JournalLost,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Int => "SIGINT",
            Signal::Term => "SIGTERM",
            Signal::LockLost => "the loss of the cluster lock",
            Signal::JournalLost => "the journal database going away",
        }
    }

    /// The exit status a shell gives a process killed by this signal.
    pub fn exit_code(self) -> u8 {
        match self {
            Signal::Int => 130,
            Signal::Term => 143,
            // A failed run's status.
            Signal::LockLost | Signal::JournalLost => 3,
        }
    }

    fn number(self) -> i32 {
        match self {
            Signal::Int => 2,
            Signal::Term => 15,
            Signal::LockLost => 1000,
            Signal::JournalLost => 1001,
        }
    }

    fn from_number(n: i32) -> Option<Signal> {
        match n {
            2 => Some(Signal::Int),
            15 => Some(Signal::Term),
            1000 => Some(Signal::LockLost),
            1001 => Some(Signal::JournalLost),
            _ => None,
        }
    }
}

/// Whether (and by what) the current run was interrupted.
#[derive(Debug, Default)]
pub struct Interrupt {
    signal: AtomicI32,
    notify: Notify,
}

impl Interrupt {
    pub fn new() -> Arc<Interrupt> {
        Arc::new(Interrupt::default())
    }

    /// The signal received, if any.
    pub fn signal(&self) -> Option<Signal> {
        Signal::from_number(self.signal.load(Ordering::SeqCst))
    }

    /// Mark the run interrupted by `signal`; true the first time.
    pub fn raise(&self, signal: Signal) -> bool {
        let first = self
            .signal
            .compare_exchange(0, signal.number(), Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        if first {
            self.notify.notify_waiters();
        }
        first
    }

    /// Resolves once the run is interrupted.
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a raise in between is seen.
            notified.as_mut().enable();
            if self.signal().is_some() {
                return;
            }
            notified.await;
        }
    }

    /// Listen for SIGINT and SIGTERM on the current tokio runtime: the
    /// first asks the run to stop, a second exits at once.
    pub fn listen(self: &Arc<Self>) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let got = tokio::select! {
                    _ = int.recv() => Signal::Int,
                    _ = term.recv() => Signal::Term,
                };
                if this.raise(got) {
                    eprintln!(
                        "\n{}: stopping: no new step starts, running steps are stopped and their \
                         programs killed (press Ctrl-C again to exit at once)",
                        got.name()
                    );
                } else {
                    eprintln!(
                        "\n{}: exiting at once; the run stays `running` in the journal until \
                         the next run sees its holder is gone",
                        got.name()
                    );
                    std::process::exit(got.exit_code().into());
                }
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_signal_wins_and_wakes_waiters() {
        let i = Interrupt::new();
        let waiter = {
            let i = i.clone();
            tokio::spawn(async move { i.wait().await })
        };
        tokio::task::yield_now().await;
        assert_eq!(i.signal(), None);
        assert!(i.raise(Signal::Term));
        assert!(!i.raise(Signal::Int), "only the first counts");
        waiter.await.unwrap();
        assert_eq!(i.signal(), Some(Signal::Term));
        assert_eq!(Signal::Term.exit_code(), 143);
        // Waiting after the fact returns at once.
        i.wait().await;
    }
}
