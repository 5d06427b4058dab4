//! [`InFlight`]: the service's operations still running. A write whose request went away
//! (client gone, timeout, stream reset) runs on as its own task, so a server that drains its
//! connections must also wait for these before it exits, or a write could land unaudited.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// A count of running operations, shared by a service, its clones and its stack. A write
/// whose request went away runs on as its own task: a server that drains its connections waits
/// for [`drained`](Self::drained) too, or such a write could land unaudited.
#[derive(Debug, Clone, Default)]
pub struct InFlight {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    running: AtomicUsize,
    idle: Notify,
}

/// One running operation; dropping it ends it.
pub(crate) struct Entered(Arc<Shared>);

impl Drop for Entered {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl InFlight {
    pub(crate) fn enter(&self) -> Entered {
        self.shared.running.fetch_add(1, Ordering::AcqRel);
        Entered(self.shared.clone())
    }

    /// How many operations are running now.
    #[must_use]
    pub fn running(&self) -> usize {
        self.shared.running.load(Ordering::Acquire)
    }

    /// Resolves once no operation is running.
    pub async fn drained(&self) {
        loop {
            let idle = self.shared.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.running() == 0 {
                return;
            }
            idle.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drained_waits_for_the_last_operation() {
        let in_flight = InFlight::default();
        in_flight.drained().await;
        let first = in_flight.enter();
        let second = in_flight.enter();
        assert_eq!(in_flight.running(), 2);
        let waiter = tokio::spawn({
            let in_flight = in_flight.clone();
            async move { in_flight.drained().await }
        });
        drop(first);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "one operation still runs");
        drop(second);
        waiter.await.unwrap();
        assert_eq!(in_flight.running(), 0);
    }
}
