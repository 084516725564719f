//! Stopping a running workflow from outside: Ctrl-C in the CLI, later
//! KeyboardInterrupt in Python. Awaiting code is cancelled by dropping it;
//! a loop of pure computation never awaits, so it polls this flag instead.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// A handle that stops a workflow; clones share the same switch.
#[derive(Clone, Debug, Default)]
pub struct Interrupt(Arc<Switch>);

#[derive(Debug, Default)]
struct Switch {
    set: AtomicBool,
    changed: Notify,
}

impl Interrupt {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops the workflow: it ends with an "interrupted" error after its
    /// running tasks are cancelled. Safe from any thread; idempotent.
    pub fn trigger(&self) {
        self.0.set.store(true, Ordering::Relaxed);
        self.0.changed.notify_waiters();
    }

    pub fn is_triggered(&self) -> bool {
        self.0.set.load(Ordering::Relaxed)
    }

    /// Resolves once `trigger` has been called.
    pub async fn triggered(&self) {
        loop {
            let changed = self.0.changed.notified();
            if self.is_triggered() {
                return;
            }
            changed.await;
        }
    }
}
