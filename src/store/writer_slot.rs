//! SQLite's one writer at a time, queued in process.
//!
//! Queueing writers here is fair (first come, first served) and cheap; left
//! to SQLite they would spin on `busy_timeout`. The slot also counts who is
//! waiting, and remembers when the last two started to, so that a long
//! writer (an import) can commit early and let them in when they come in a
//! stream.

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
    /// When the last two counted writers started to wait: microseconds
    /// since `epoch`, plus one (0: never).
    last_wait: AtomicU64,
    wait_before: AtomicU64,
    epoch: Instant,
}

impl WriterSlot {
    pub fn new() -> Self {
        Self {
            lock: Arc::default(),
            waiting: AtomicUsize::new(0),
            last_wait: AtomicU64::new(0),
            wait_before: AtomicU64::new(0),
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

    /// [`WriterSlot::take`] for a long writer that gives way to others (an
    /// import): its waits are not counted, since it waits only behind them.
    pub async fn take_quietly(&self) -> Held {
        self.lock.clone().lock_owned().await
    }

    /// [`WriterSlot::take`] for the checkpointer's thread. Its wait counts
    /// as waiting, so that an import lets its rewind in early, but not as
    /// part of a stream of writers: a rewind is one short write.
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

    /// Whether writers come in a stream: one waits now, or the last two
    /// both started to wait within `window`.
    pub fn streaming(&self, window: Duration) -> bool {
        let before = self.wait_before.load(Ordering::Relaxed);
        self.wanted() || (before > 0 && self.micros().saturating_sub(before - 1) <= window.as_micros() as u64)
    }

    fn wait(&self) -> Waiting<'_> {
        let last = self.last_wait.swap(self.micros() + 1, Ordering::Relaxed);
        self.wait_before.store(last, Ordering::Relaxed);
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
        assert!(!slot.streaming(Duration::from_secs(3600)), "nobody ever waited");

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
        assert!(slot.streaming(Duration::from_secs(10)), "two waited at once");
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!slot.streaming(Duration::from_millis(10)), "but not lately");
    }

    /// Holds the slot while another task waits for it, then lets it in.
    async fn wait_behind_a_holder(slot: &Arc<WriterSlot>, quietly: bool) {
        let held = slot.take().await;
        let waiter = tokio::spawn({
            let slot = slot.clone();
            async move {
                drop(if quietly {
                    slot.take_quietly().await
                } else {
                    slot.take().await
                })
            }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(slot.wanted(), !quietly);
        drop(held);
        waiter.await.unwrap();
    }

    #[tokio::test]
    async fn a_stream_is_two_counted_waits_within_the_window() {
        let slot = Arc::new(WriterSlot::new());
        wait_behind_a_holder(&slot, false).await;
        assert!(!slot.streaming(Duration::from_secs(10)), "one wait is no stream");
        wait_behind_a_holder(&slot, true).await;
        assert!(
            !slot.streaming(Duration::from_secs(10)),
            "an import's own wait does not count"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        wait_behind_a_holder(&slot, false).await;
        assert!(slot.streaming(Duration::from_secs(10)));
        assert!(
            !slot.streaming(Duration::from_millis(40)),
            "the two were over 50 ms apart"
        );
    }

    #[tokio::test]
    async fn a_checkpointer_waiting_is_wanted_but_no_stream() {
        let slot = Arc::new(WriterSlot::new());
        wait_behind_a_holder(&slot, false).await;
        let held = slot.take().await;
        let rewind = tokio::task::spawn_blocking({
            let slot = slot.clone();
            move || drop(slot.blocking_take())
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(slot.wanted(), "an import lets a rewind in early");
        drop(held);
        rewind.await.unwrap();
        assert!(
            !slot.streaming(Duration::from_secs(10)),
            "its wait is not a second writer's"
        );
    }
}
