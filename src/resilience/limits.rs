//! A per-target concurrency cap with a bounded wait queue.
//!
//! At most `max` requests hold a [`Permit`]; at most `queue` more wait for one (first come,
//! first served, as `tokio::sync::Semaphore` is fair); beyond that a request is refused at once
//! so the caller can fall back or answer 429 instead of buffering without bound. Permits are
//! RAII and return themselves on drop.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// Serialises resizes, which happen on reload only (never on the request path).
#[allow(clippy::disallowed_types)]
type ReloadLock = std::sync::Mutex<()>;

use tokio::sync::Semaphore;

/// The outcome of [`ConcurrencyLimit::try_acquire`].
#[derive(Debug)]
pub enum Acquire {
    /// A slot was free.
    Now(Permit),
    /// No slot, but the queue has room: [`ConcurrencyLimit::wait`] may get one.
    Queue,
    /// No slot and the queue is full.
    Full,
}

/// A concurrency cap. Cloning shares the same cap.
#[derive(Debug, Clone)]
pub struct ConcurrencyLimit {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    semaphore: Semaphore,
    max: AtomicU32,
    queue: AtomicU32,
    waiting: AtomicU32,
    in_use: AtomicU32,
    /// Permits to retire instead of returning, after `max` was lowered below the permits held.
    debt: AtomicU32,
    /// Serialises `set_limits` (reloads only, never the request path).
    resize: ReloadLock,
}

/// A slot held; released when dropped.
#[derive(Debug)]
#[must_use = "the slot is released as soon as the permit is dropped"]
pub struct Permit {
    shared: Arc<Shared>,
}

impl ConcurrencyLimit {
    /// At most `max` in use and `queue` waiting. `max` 0 admits nobody (waiters time out).
    pub fn new(max: u32, queue: u32) -> Self {
        let max = clamp_permits(max);
        ConcurrencyLimit {
            shared: Arc::new(Shared {
                semaphore: Semaphore::new(max as usize),
                max: AtomicU32::new(max),
                queue: AtomicU32::new(queue),
                waiting: AtomicU32::new(0),
                in_use: AtomicU32::new(0),
                debt: AtomicU32::new(0),
                resize: ReloadLock::new(()),
            }),
        }
    }

    /// A slot now if one is free; otherwise whether waiting is allowed. Never waits. `Queue` is
    /// advice: the queue may fill before [`ConcurrencyLimit::wait`] is called, which then says
    /// no.
    pub fn try_acquire(&self) -> Acquire {
        if let Some(permit) = self.try_permit() {
            return Acquire::Now(permit);
        }
        let s = &self.shared;
        if s.waiting.load(Ordering::Relaxed) < s.queue.load(Ordering::Relaxed) {
            Acquire::Queue
        } else {
            Acquire::Full
        }
    }

    /// A slot, waiting in the queue until `deadline` if none is free. `None` when the queue is
    /// full or the deadline passes first; a waiter that gives up (or is cancelled) leaves the
    /// queue.
    pub async fn wait(&self, deadline: tokio::time::Instant) -> Option<Permit> {
        if let Some(permit) = self.try_permit() {
            return Some(permit);
        }
        let s = &self.shared;
        // Take a queue place, or give up if there is none.
        let mut waiting = s.waiting.load(Ordering::Relaxed);
        loop {
            if waiting >= s.queue.load(Ordering::Relaxed) {
                return None;
            }
            match s.waiting.compare_exchange_weak(
                waiting,
                waiting + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => waiting = actual,
            }
        }
        let _place = QueuePlace(&s.waiting);
        match tokio::time::timeout_at(deadline, s.semaphore.acquire()).await {
            Ok(Ok(permit)) => {
                // The count lives in `Permit` from here on (no await in between).
                permit.forget();
                Some(self.permit())
            }
            // Timed out, or the semaphore was closed (it never is).
            _ => None,
        }
    }

    /// Changes the limits in place (config reload). Permits already held stay valid: a higher
    /// `max` frees slots (and wakes waiters) at once, a lower one takes effect as held permits
    /// are returned. Waiters already queued keep their place even if `queue` shrinks below
    /// their number; the new bound applies to newcomers.
    pub fn set_limits(&self, max: u32, queue: u32) {
        let s = &self.shared;
        let _serial = s.resize.lock().unwrap_or_else(|p| p.into_inner());
        s.queue.store(queue, Ordering::Relaxed);
        let max = clamp_permits(max);
        let old = s.max.swap(max, Ordering::Relaxed);
        if max > old {
            let mut add = max - old;
            // Cancel pending retirements first.
            let mut debt = s.debt.load(Ordering::Relaxed);
            loop {
                let cancel = debt.min(add);
                match s.debt.compare_exchange_weak(
                    debt,
                    debt - cancel,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        add -= cancel;
                        break;
                    }
                    Err(actual) => debt = actual,
                }
            }
            s.semaphore.add_permits(add as usize);
        } else if max < old {
            let cut = old - max;
            // Free slots go at once; the rest are retired as their holders return them.
            let forgotten = u32::try_from(s.semaphore.forget_permits(cut as usize)).unwrap_or(cut);
            s.debt
                .fetch_add(cut.saturating_sub(forgotten), Ordering::AcqRel);
        }
    }

    /// Slots held now.
    pub fn in_use(&self) -> u32 {
        self.shared.in_use.load(Ordering::Relaxed)
    }

    /// Requests waiting for a slot now.
    pub fn waiting(&self) -> u32 {
        self.shared.waiting.load(Ordering::Relaxed)
    }

    /// The configured maximum in use.
    pub fn max(&self) -> u32 {
        self.shared.max.load(Ordering::Relaxed)
    }

    /// The configured maximum waiting.
    pub fn queue(&self) -> u32 {
        self.shared.queue.load(Ordering::Relaxed)
    }

    fn try_permit(&self) -> Option<Permit> {
        let permit = self.shared.semaphore.try_acquire().ok()?;
        permit.forget();
        Some(self.permit())
    }

    /// Wraps a semaphore permit already taken (and forgotten).
    fn permit(&self) -> Permit {
        self.shared.in_use.fetch_add(1, Ordering::Relaxed);
        Permit {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let s = &self.shared;
        s.in_use.fetch_sub(1, Ordering::Relaxed);
        // Retire this slot if the limit was lowered meanwhile; otherwise give it back.
        let mut debt = s.debt.load(Ordering::Acquire);
        while debt > 0 {
            match s
                .debt
                .compare_exchange_weak(debt, debt - 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(actual) => debt = actual,
            }
        }
        s.semaphore.add_permits(1);
    }
}

/// Leaves the queue when the waiter is done, whether it got a slot, timed out or was dropped.
struct QueuePlace<'a>(&'a AtomicU32);

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `tokio` panics above `Semaphore::MAX_PERMITS` (2^29 on 32-bit targets).
fn clamp_permits(n: u32) -> u32 {
    n.min(u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::time::Instant;

    const MS: Duration = Duration::from_millis(1);

    fn now_permit(limit: &ConcurrencyLimit) -> Permit {
        match limit.try_acquire() {
            Acquire::Now(p) => p,
            other => panic!("expected a permit, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn permits_up_to_max_then_queue_then_full() {
        let limit = ConcurrencyLimit::new(2, 1);
        let a = now_permit(&limit);
        let _b = now_permit(&limit);
        assert_eq!(limit.in_use(), 2);
        assert!(matches!(limit.try_acquire(), Acquire::Queue));
        let waiter = {
            let limit = limit.clone();
            tokio::spawn(async move { limit.wait(Instant::now() + 1_000 * MS).await })
        };
        tokio::time::sleep(MS).await;
        assert_eq!(limit.waiting(), 1);
        assert!(matches!(limit.try_acquire(), Acquire::Full));
        // A second waiter finds the queue full and is refused at once.
        assert!(limit.wait(Instant::now() + 1_000 * MS).await.is_none());
        drop(a);
        let got = waiter.await.unwrap();
        assert!(got.is_some());
        assert_eq!(limit.waiting(), 0);
        assert_eq!(limit.in_use(), 2);
        drop(got);
        assert_eq!(limit.in_use(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn waiter_times_out_and_leaves_the_queue() {
        let limit = ConcurrencyLimit::new(1, 1);
        let _held = now_permit(&limit);
        let start = Instant::now();
        let got = limit.wait(start + 250 * MS).await;
        assert!(got.is_none());
        assert_eq!(Instant::now() - start, 250 * MS);
        assert_eq!(limit.waiting(), 0);
        // The place is free again.
        assert!(matches!(limit.try_acquire(), Acquire::Queue));
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_waiter_leaves_the_queue() {
        let limit = ConcurrencyLimit::new(1, 1);
        let held = now_permit(&limit);
        let task = {
            let limit = limit.clone();
            tokio::spawn(async move { limit.wait(Instant::now() + 10_000 * MS).await })
        };
        tokio::time::sleep(MS).await;
        assert_eq!(limit.waiting(), 1);
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        assert_eq!(limit.waiting(), 0);
        // The released slot goes to a live caller, not to the cancelled waiter.
        drop(held);
        assert!(matches!(limit.try_acquire(), Acquire::Now(_)));
        assert_eq!(limit.in_use(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn wait_takes_a_free_slot_without_queueing() {
        // Queue 0: waiting is not allowed, but a free slot is still taken.
        let limit = ConcurrencyLimit::new(1, 0);
        let p = limit.wait(Instant::now()).await;
        assert!(p.is_some());
        assert!(matches!(limit.try_acquire(), Acquire::Full));
        assert!(limit.wait(Instant::now() + 100 * MS).await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_are_served_in_order() {
        let limit = ConcurrencyLimit::new(1, 3);
        let held = now_permit(&limit);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for i in 0..3 {
            let (limit, tx) = (limit.clone(), tx.clone());
            tokio::spawn(async move {
                let p = limit.wait(Instant::now() + 10_000 * MS).await.unwrap();
                tx.send(i).unwrap();
                tokio::time::sleep(10 * MS).await;
                drop(p);
            });
            // Let each one queue before the next.
            tokio::time::sleep(MS).await;
        }
        drop(held);
        let order = [
            rx.recv().await.unwrap(),
            rx.recv().await.unwrap(),
            rx.recv().await.unwrap(),
        ];
        assert_eq!(order, [0, 1, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn raising_max_wakes_waiters() {
        let limit = ConcurrencyLimit::new(1, 2);
        let _held = now_permit(&limit);
        let waiter = {
            let limit = limit.clone();
            tokio::spawn(async move { limit.wait(Instant::now() + 1_000 * MS).await })
        };
        tokio::time::sleep(MS).await;
        limit.set_limits(2, 2);
        assert!(waiter.await.unwrap().is_some());
        assert_eq!(limit.max(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn lowering_max_retires_returned_permits() {
        let limit = ConcurrencyLimit::new(3, 0);
        let a = now_permit(&limit);
        let b = now_permit(&limit);
        // One free slot; lower to 1: the free one goes now, one held one on return.
        limit.set_limits(1, 0);
        assert!(matches!(limit.try_acquire(), Acquire::Full));
        drop(a);
        // Still full: `a`'s slot was retired, `b` holds the single one.
        assert!(matches!(limit.try_acquire(), Acquire::Full));
        drop(b);
        let c = now_permit(&limit);
        assert!(matches!(limit.try_acquire(), Acquire::Full));
        drop(c);
        // Raising again while nothing is owed just adds slots.
        limit.set_limits(2, 5);
        let _d = now_permit(&limit);
        let _e = now_permit(&limit);
        assert!(matches!(limit.try_acquire(), Acquire::Queue));
        assert_eq!(limit.queue(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn raising_max_cancels_pending_retirements() {
        let limit = ConcurrencyLimit::new(2, 0);
        let a = now_permit(&limit);
        let b = now_permit(&limit);
        limit.set_limits(0, 0); // two retirements owed
        limit.set_limits(1, 0); // one cancelled
        drop(a); // retired
        assert!(matches!(limit.try_acquire(), Acquire::Full));
        drop(b); // returned
        let _c = now_permit(&limit);
        assert!(matches!(limit.try_acquire(), Acquire::Full));
        assert_eq!(limit.in_use(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_max_admits_nobody() {
        let limit = ConcurrencyLimit::new(0, 1);
        assert!(matches!(limit.try_acquire(), Acquire::Queue));
        assert!(limit.wait(Instant::now() + 50 * MS).await.is_none());
        assert_eq!(limit.waiting(), 0);
    }
}
