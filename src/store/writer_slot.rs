//! SQLite's one writer at a time, queued in process.
//!
//! Queueing writers here is fair (first come, first served) and cheap; left
//! to SQLite they would spin on `busy_timeout`. The slot also counts who is
//! waiting, and remembers how soon the last writer came after the one
//! before it got in, so that a long writer (an import) can commit early and
//! let them in when they come in a stream.

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
    /// When the last counted writer got the slot: microseconds since
    /// `epoch`, plus one (0: never).
    served: AtomicU64,
    /// How long after the writer before it got the slot the last counted
    /// writer asked for it, in microseconds (`u64::MAX`: it was the first).
    gap: AtomicU64,
    epoch: Instant,
}

impl WriterSlot {
    pub fn new() -> Self {
        Self {
            lock: Arc::default(),
            waiting: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            gap: AtomicU64::new(u64::MAX),
            epoch: Instant::now(),
        }
    }

    /// Waits for the slot, counted as waiting until it is had (or the wait
    /// is cancelled).
    pub async fn take(&self) -> Held {
        let served = self.served.load(Ordering::Relaxed);
        let gap = match served {
            0 => u64::MAX,
            _ => self.micros().saturating_sub(served - 1),
        };
        self.gap.store(gap, Ordering::Relaxed);
        let held = match self.try_take() {
            Some(held) => held,
            None => {
                let _waiting = Waiting::start(&self.waiting);
                self.lock.clone().lock_owned().await
            }
        };
        self.served.store(self.micros() + 1, Ordering::Relaxed);
        held
    }

    /// [`WriterSlot::take`] for a long writer that gives way to others (an
    /// import): its waits are not counted, since it waits only behind them.
    pub async fn take_quietly(&self) -> Held {
        self.lock.clone().lock_owned().await
    }

    /// [`WriterSlot::take`] for the checkpointer's thread. Its wait counts
    /// as waiting, so that an import lets its rewind in early, but it is no
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

    /// Whether writers come in a stream: one waits now, or the last one
    /// asked within `window` of the one before it getting in, and got in
    /// itself within `window` of now. Timed from when writers get in, not
    /// from when they start to wait, the rule does not depend on how long
    /// a long writer kept them waiting.
    pub fn streaming(&self, window: Duration) -> bool {
        let window = window.as_micros() as u64;
        let served = self.served.load(Ordering::Relaxed);
        self.wanted()
            || (served > 0
                && self.gap.load(Ordering::Relaxed) <= window
                && self.micros().saturating_sub(served - 1) <= window)
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
        assert!(!slot.streaming(Duration::from_secs(3600)), "one writer is no stream");

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
        assert!(
            slot.streaming(Duration::from_secs(10)),
            "writers came one after another"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!slot.streaming(Duration::from_millis(10)), "but not lately");
    }

    #[tokio::test]
    async fn a_stream_is_a_writer_asking_soon_after_the_one_before_got_in() {
        let slot = Arc::new(WriterSlot::new());
        drop(slot.take().await);
        assert!(!slot.streaming(Duration::from_secs(10)), "one writer is no stream");
        drop(slot.take_quietly().await);
        assert!(
            !slot.streaming(Duration::from_secs(10)),
            "an import's own turn does not count"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(slot.take().await);
        assert!(slot.streaming(Duration::from_secs(10)));
        assert!(
            !slot.streaming(Duration::from_millis(40)),
            "it came 50 ms after the one before"
        );

        // Kept waiting by a long writer, a writer still comes soon after
        // the one before it got in.
        let long = slot.take_quietly().await;
        let waiter = tokio::spawn({
            let slot = slot.clone();
            async move { drop(slot.take().await) }
        });
        tokio::time::sleep(Duration::from_millis(60)).await;
        drop(long);
        waiter.await.unwrap();
        assert!(
            slot.streaming(Duration::from_millis(40)),
            "it asked right away, however long it then waited"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!slot.streaming(Duration::from_millis(40)), "but not lately");
    }

    #[tokio::test]
    async fn a_checkpointer_waiting_is_wanted_but_no_stream() {
        let slot = Arc::new(WriterSlot::new());
        let held = slot.take().await;
        let rewind = tokio::task::spawn_blocking({
            let slot = slot.clone();
            move || drop(slot.blocking_take())
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(slot.wanted(), "an import lets a rewind in early");
        drop(held);
        rewind.await.unwrap();
        assert!(!slot.streaming(Duration::from_secs(10)), "it is not a second writer");
    }
}
