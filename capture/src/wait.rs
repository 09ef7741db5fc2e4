//! Waiting for a lock-free ring without burning a core: spin, then yield, then park.
//!
//! A consumer that finds its ring empty calls [`Backoff::snooze`] repeatedly. The first calls
//! spin (the cheapest wait when the producer is about to push), the next ones yield, and after
//! that the thread parks until a producer rings its [`Doorbell`] or a short timeout passes.
//! Producers ring the doorbell once per pushed *batch*, never per packet, and the ring costs a
//! single atomic load when the consumer is awake.
//!
//! The park timeout (1 ms) bounds the cost of a missed wake-up; the `SeqCst` fences make one
//! impossible in practice (the consumer publishes "sleeping" before its final check, the
//! producer publishes its push before reading "sleeping").

use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::sync::{Arc, OnceLock};
use std::thread::{self, Thread};
use std::time::Duration;

/// Longest park before a consumer re-checks its rings on its own.
const PARK_TIMEOUT: Duration = Duration::from_millis(1);
/// Spins before yielding.
const SPINS: u32 = 64;
/// Yields before parking.
const YIELDS: u32 = 8;

/// Wakes a parked consumer thread. Cloned into every producer of that consumer.
#[derive(Debug, Clone)]
pub struct Doorbell {
    inner: Arc<DoorbellInner>,
}

#[derive(Debug, Default)]
struct DoorbellInner {
    sleeping: AtomicBool,
    thread: OnceLock<Thread>,
}

impl Doorbell {
    /// A doorbell not yet bound to a thread. Producers may hold and ring it before the
    /// consumer binds it: an unbound consumer is not asleep.
    #[must_use]
    pub fn new() -> Doorbell {
        Doorbell { inner: Arc::new(DoorbellInner::default()) }
    }

    /// A doorbell bound to the calling thread.
    #[must_use]
    pub fn for_current_thread() -> Doorbell {
        let bell = Doorbell::new();
        bell.bind_current();
        bell
    }

    /// Binds the doorbell to the calling thread (the consumer). Later calls are ignored.
    pub fn bind_current(&self) {
        let _ = self.inner.thread.set(thread::current());
    }

    /// Called by a producer after it pushed: wakes the consumer if it is parked.
    #[inline]
    pub fn ring(&self) {
        fence(Ordering::SeqCst);
        if self.inner.sleeping.load(Ordering::Relaxed) {
            if let Some(t) = self.inner.thread.get() {
                t.unpark();
            }
        }
    }
}

impl Default for Doorbell {
    fn default() -> Doorbell {
        Doorbell::new()
    }
}

/// Escalating wait of one consumer. Reset it whenever work was found.
#[derive(Debug)]
pub struct Backoff {
    step: u32,
    spins: u32,
    yields: u32,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff::new()
    }
}

impl Backoff {
    /// A fresh backoff for a latency-sensitive consumer: spins, then yields, then parks.
    #[must_use]
    pub fn new() -> Backoff {
        Backoff { step: 0, spins: SPINS, yields: YIELDS }
    }

    /// A backoff that parks almost at once: for consumers whose latency does not matter (the
    /// collector), so they leave the cores to the threads that do the work.
    #[must_use]
    pub fn lazy() -> Backoff {
        Backoff { step: 0, spins: 0, yields: 1 }
    }

    /// Forgets earlier waiting: call after finding work.
    #[inline]
    pub fn reset(&mut self) {
        self.step = 0;
    }

    /// Waits a little. `ready` is checked once more after announcing sleep, so a push that
    /// raced with going to sleep is never slept through.
    pub fn snooze(&mut self, bell: &Doorbell, ready: impl FnOnce() -> bool) {
        if self.step < self.spins {
            std::hint::spin_loop();
        } else if self.step < self.spins + self.yields {
            thread::yield_now();
        } else {
            bell.inner.sleeping.store(true, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            if !ready() {
                thread::park_timeout(PARK_TIMEOUT);
            }
            bell.inner.sleeping.store(false, Ordering::Relaxed);
        }
        self.step = self.step.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn parked_consumer_wakes_on_ring() {
        let flag = Arc::new(AtomicU32::new(0));
        let (tx, rx) = std::sync::mpsc::channel();
        let f = flag.clone();
        let consumer = thread::spawn(move || {
            let bell = Doorbell::for_current_thread();
            tx.send(bell.clone()).unwrap();
            let mut b = Backoff::new();
            while f.load(Ordering::Acquire) == 0 {
                b.snooze(&bell, || f.load(Ordering::Acquire) != 0);
            }
        });
        let bell = rx.recv().unwrap();
        thread::sleep(Duration::from_millis(20));
        flag.store(1, Ordering::Release);
        bell.ring();
        consumer.join().unwrap();
    }
}
