//! Stopping a running workflow from outside: Ctrl-C in the CLI, `workflow
//! kill` and shutdown in the daemon, KeyboardInterrupt in Python and Lua.
//!
//! [`Interrupt`] is the one cancellation type of oxiida: the interpreter,
//! the CLI, the daemon and the embedders all use it. It is a thin wrapper
//! over [`tokio_util::sync::CancellationToken`] (whose future awaiting code
//! selects on) plus a flag: a loop of pure computation never awaits, so it
//! reads the flag on every iteration, and `CancellationToken::is_cancelled`
//! takes a mutex, which the counting loop would pay for on each turn.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// A handle that stops a workflow (or anything else waiting on it, such as
/// the daemon's accept loop); clones share the same switch. Triggering is
/// the only way to cancel it, so the flag and the token never disagree.
#[derive(Clone, Debug, Default)]
pub struct Interrupt(Arc<Switch>);

#[derive(Debug, Default)]
struct Switch {
    /// Set before `token` is cancelled: one relaxed load for loops.
    set: AtomicBool,
    token: CancellationToken,
}

impl Interrupt {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops the workflow: it ends with an "interrupted" error after its
    /// running tasks are cancelled. Safe from any thread; idempotent.
    pub fn trigger(&self) {
        self.0.set.store(true, Ordering::Relaxed);
        self.0.token.cancel();
    }

    /// Whether [`trigger`](Self::trigger) was called: one relaxed atomic load.
    pub fn is_triggered(&self) -> bool {
        self.0.set.load(Ordering::Relaxed)
    }

    /// Resolves once `trigger` has been called (at once if it already was).
    pub fn triggered(&self) -> WaitForCancellationFuture<'_> {
        self.0.token.cancelled()
    }
}

#[cfg(test)]
mod tests {
    use super::Interrupt;

    #[test]
    fn clones_share_the_switch_and_waiters_wake() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let interrupt = Interrupt::new();
        let other = interrupt.clone();
        assert!(!other.is_triggered());
        let waiter = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(other.triggered());
            other.is_triggered()
        });
        interrupt.trigger();
        assert!(waiter.join().unwrap());
        rt.block_on(interrupt.triggered());
    }
}
