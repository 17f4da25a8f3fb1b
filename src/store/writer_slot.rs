//! SQLite's one writer at a time, queued in process.
//!
//! Queueing writers here is fair (first come, first served) and cheap; left
//! to SQLite they would spin on `busy_timeout`. The slot also counts who is
//! waiting, and remembers when someone last had to, so that a long writer
//! (an import) can commit early and let them in.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::{Mutex, OwnedMutexGuard};

/// The right to write; dropping it lets the next writer in.
pub type Held = OwnedMutexGuard<()>;

#[derive(Debug)]
pub struct WriterSlot {
    lock: Arc<Mutex<()>>,
    waiting: AtomicUsize,
    /// When a writer last started to wait: microseconds since `epoch`, plus
    /// one (0: never).
    last_wait: AtomicU64,
    epoch: Instant,
}

impl WriterSlot {
    pub fn new() -> Self {
        Self {
            lock: Arc::default(),
            waiting: AtomicUsize::new(0),
            last_wait: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Waits for the slot, counted as waiting until it is had (or the wait
    /// is cancelled).
    pub async fn take(&self) -> Held {
        if let Some(held) = self.try_take() {
            return held;
        }
        let _waiting = self.wait();
        self.lock.clone().lock_owned().await
    }

    /// [`WriterSlot::take`] for the checkpointer's thread. Its wait counts
    /// as waiting, so that an import lets its rewind in early, but does not
    /// set an import writing in parts: a rewind is one short write, not a
    /// stream of them.
    pub fn blocking_take(&self) -> Held {
        if let Some(held) = self.try_take() {
            return held;
        }
        let _waiting = Waiting::start(&self.waiting);
        self.lock.clone().blocking_lock_owned()
    }

    /// The slot, if no one holds it.
    pub fn try_take(&self) -> Option<Held> {
        self.lock.clone().try_lock_owned().ok()
    }

    /// Whether another writer is waiting for the slot.
    pub fn wanted(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0
    }

    /// Whether a writer started to wait within `window`, or waits now.
    pub fn waited_within(&self, window: Duration) -> bool {
        let last = self.last_wait.load(Ordering::Relaxed);
        self.wanted() || (last > 0 && self.micros().saturating_sub(last - 1) <= window.as_micros() as u64)
    }

    fn wait(&self) -> Waiting<'_> {
        self.last_wait.store(self.micros() + 1, Ordering::Relaxed);
        Waiting::start(&self.waiting)
    }

    fn micros(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }
}

/// One waiter, counted for as long as it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn start(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn waiters_are_counted_until_served_or_gone() {
        let slot = Arc::new(WriterSlot::new());
        let held = slot.take().await;
        assert!(!slot.wanted(), "the holder itself is not waiting");
        assert!(!slot.waited_within(Duration::from_secs(3600)), "nobody ever waited");

        let next = tokio::spawn({
            let slot = slot.clone();
            async move { drop(slot.take().await) }
        });
        let gave_up = tokio::spawn({
            let slot = slot.clone();
            async move {
                tokio::time::timeout(Duration::from_millis(50), slot.take())
                    .await
                    .is_err()
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(slot.waiting.load(Ordering::Relaxed), 2);
        assert!(slot.wanted());

        assert!(gave_up.await.unwrap(), "the second waiter timed out");
        assert!(slot.wanted(), "the first still waits");
        drop(held);
        next.await.unwrap();
        assert!(!slot.wanted(), "served waiters are no longer counted");
        assert!(slot.try_take().is_some());
        assert!(slot.waited_within(Duration::from_secs(10)), "but remembered a while");
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!slot.waited_within(Duration::from_millis(10)), "not for longer");
    }
}
