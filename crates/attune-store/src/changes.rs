//! Status changes, told to the waiters in this process. A waiter watches one execution, and
//! an announcement wakes only that execution's waiters ([`ANY_EXECUTION`] wakes them all):
//! a thousand clients following a thousand executions cost one wake-up per change, not a
//! thousand.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::watch;

/// Announced in place of an id when many executions changed status at once.
pub const ANY_EXECUTION: i64 = 0;

/// Each watched execution's counter of announcements, while someone watches it.
#[derive(Debug)]
pub(crate) struct Announcer {
    watched: Mutex<Watched>,
    any: watch::Sender<u64>,
}

#[derive(Debug)]
struct Watched {
    by_id: HashMap<i64, Weak<watch::Sender<u64>>>,
    /// Entries of executions nobody watches any more are dropped when the map reaches this.
    sweep_at: usize,
}

impl Announcer {
    pub(crate) fn new() -> Arc<Announcer> {
        Arc::new(Announcer {
            watched: Mutex::new(Watched {
                by_id: HashMap::new(),
                sweep_at: 1024,
            }),
            any: watch::channel(0).0,
        })
    }

    /// Wakes the waiters of execution `id` (all of them for [`ANY_EXECUTION`]).
    pub(crate) fn announce(&self, id: i64) {
        if id == ANY_EXECUTION {
            self.any.send_modify(|n| *n = n.wrapping_add(1));
            return;
        }
        let sender = match self.watched.lock() {
            Ok(mut w) => match w.by_id.get(&id).map(Weak::upgrade) {
                Some(Some(s)) => Some(s),
                Some(None) => {
                    w.by_id.remove(&id);
                    None
                }
                None => None,
            },
            Err(_) => None,
        };
        if let Some(s) = sender {
            s.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Starts watching execution `id`: changes announced from now on.
    pub(crate) fn watch(&self, id: i64) -> StatusChanges {
        let sender = match self.watched.lock() {
            Ok(mut w) => {
                let existing = w.by_id.get(&id).and_then(Weak::upgrade);
                match existing {
                    Some(s) => s,
                    None => {
                        if w.by_id.len() >= w.sweep_at {
                            w.by_id.retain(|_, s| s.strong_count() > 0);
                            w.sweep_at = (w.by_id.len() * 2).max(1024);
                        }
                        let s = Arc::new(watch::channel(0).0);
                        w.by_id.insert(id, Arc::downgrade(&s));
                        s
                    }
                }
            }
            // A poisoned map: this waiter falls back on its poll.
            Err(_) => Arc::new(watch::channel(0).0),
        };
        StatusChanges {
            one: sender.subscribe(),
            any: self.any.subscribe(),
            _sender: sender,
        }
    }
}

/// Hears of the status changes of one execution: those this process's store made, and on
/// PostgreSQL those of every process (through a [`crate::Listener`] run by the caller).
#[derive(Debug)]
pub struct StatusChanges {
    one: watch::Receiver<u64>,
    any: watch::Receiver<u64>,
    /// Keeps the execution's entry alive while this waits.
    _sender: Arc<watch::Sender<u64>>,
}

impl StatusChanges {
    /// Returns once the execution may have changed status since this was made or last
    /// returned, or after `poll` at the latest (a missed announcement, say while
    /// PostgreSQL's listener reconnects, then costs one `poll`). Made before the status is
    /// read, it misses no change in between.
    pub async fn changed(&mut self, poll: Duration) {
        tokio::select! {
            _ = self.one.changed() => {}
            _ = self.any.changed() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_waiter_is_woken_by_its_execution_or_any_not_by_others() {
        let a = Announcer::new();
        let mut w = a.watch(7);
        let long = Duration::from_secs(30);
        // Announced before the wait: not lost.
        a.announce(7);
        tokio::time::timeout(Duration::from_secs(1), w.changed(long))
            .await
            .expect("woken by its own execution");
        // Another execution does not wake it; the poll does.
        a.announce(8);
        let t0 = std::time::Instant::now();
        w.changed(Duration::from_millis(200)).await;
        assert!(t0.elapsed() >= Duration::from_millis(190));
        a.announce(ANY_EXECUTION);
        tokio::time::timeout(Duration::from_secs(1), w.changed(long))
            .await
            .expect("woken by any");
        // Two waiters of one execution share its entry; a dropped one leaves no entry.
        let w2 = a.watch(7);
        drop(w);
        a.announce(7);
        drop(w2);
        a.announce(7);
        assert!(a.watched.lock().unwrap().by_id.is_empty());
    }
}
