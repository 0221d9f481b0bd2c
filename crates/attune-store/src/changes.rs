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
    /// What the latest announcement of each recent execution said, watched or not: a
    /// waiter that starts watching it knows without reading it back. Emptied when many
    /// changed at once ([`ANY_EXECUTION`]: also when announcements may have been missed)
    /// and when it reaches [`KNOWN_MAX`].
    known: HashMap<i64, Change>,
}

/// The most executions whose latest announcement is kept.
const KNOWN_MAX: usize = 4096;

impl Announcer {
    pub(crate) fn new() -> Arc<Announcer> {
        Arc::new(Announcer {
            watched: Mutex::new(Watched {
                by_id: HashMap::new(),
                sweep_at: 1024,
                known: HashMap::new(),
            }),
            any: watch::channel(0).0,
        })
    }

    /// Wakes the waiters of execution `id` (all of them for [`ANY_EXECUTION`]); what the
    /// change was is not known here.
    pub(crate) fn announce(&self, id: i64) {
        self.announce_as(id, Change::Unknown);
    }

    /// Wakes the waiters of execution `id`, telling them whether its new status is final.
    pub(crate) fn announce_status(&self, id: i64, is_final: bool) {
        let change = match is_final {
            true => Change::Final,
            false => Change::NotFinal,
        };
        self.announce_as(id, change);
    }

    fn announce_as(&self, id: i64, change: Change) {
        if id == ANY_EXECUTION {
            if let Ok(mut w) = self.watched.lock() {
                w.known.clear();
            }
            self.any.send_modify(|n| *n = n.wrapping_add(1));
            return;
        }
        let sender = match self.watched.lock() {
            Ok(mut w) => {
                w.remember(id, change);
                match w.by_id.get(&id).map(Weak::upgrade) {
                    Some(Some(s)) => Some(s),
                    Some(None) => {
                        w.by_id.remove(&id);
                        None
                    }
                    None => None,
                }
            }
            Err(_) => None,
        };
        if let Some(s) = sender {
            // A counter, so that every announcement wakes; the low bits say what changed.
            s.send_modify(|n| *n = ((*n >> 2).wrapping_add(1) << 2) | change as u64);
        }
    }

    /// Starts watching execution `id`: changes announced from now on, and what the latest
    /// announcement before said ([`StatusChanges::last_known`]). Both under one lock: an
    /// announcement is either in what is known or wakes this waiter.
    pub(crate) fn watch(&self, id: i64) -> StatusChanges {
        match self.watched.lock() {
            Ok(mut w) => {
                let existing = w.by_id.get(&id).and_then(Weak::upgrade);
                let sender = match existing {
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
                };
                StatusChanges {
                    one: sender.subscribe(),
                    any: self.any.subscribe(),
                    known: w.known.get(&id).copied().unwrap_or(Change::Unknown),
                    _sender: sender,
                }
            }
            // A poisoned map: this waiter reads the status and falls back on its poll.
            Err(_) => {
                let sender = Arc::new(watch::channel(0).0);
                StatusChanges {
                    one: sender.subscribe(),
                    any: self.any.subscribe(),
                    known: Change::Unknown,
                    _sender: sender,
                }
            }
        }
    }
}

impl Watched {
    fn remember(&mut self, id: i64, change: Change) {
        if change == Change::Unknown {
            self.known.remove(&id);
            return;
        }
        if self.known.len() >= KNOWN_MAX && !self.known.contains_key(&id) {
            self.known.clear();
        }
        // A final status never changes: an announcement of an earlier one that arrives
        // late (another task's, or through the listener) does not undo it.
        let known = self.known.entry(id).or_insert(change);
        if *known != Change::Final {
            *known = change;
        }
    }
}

/// What a waiter was told about the change that woke it. Only the latest announcement of
/// an execution is kept: a waiter that was told `NotFinal` after a final status (two
/// announcements racing) reads the status at its next poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Read the status to know (another process's change, many at once, or a poll).
    Unknown = 0,
    /// The execution is in a status that is not final (claimed, started, canceling).
    NotFinal = 1,
    /// The execution has ended.
    Final = 2,
}

/// Hears of the status changes of one execution: those this process's store made, and on
/// PostgreSQL those of every process (through a [`crate::Listener`] run by the caller).
#[derive(Debug)]
pub struct StatusChanges {
    one: watch::Receiver<u64>,
    any: watch::Receiver<u64>,
    known: Change,
    /// Keeps the execution's entry alive while this waits.
    _sender: Arc<watch::Sender<u64>>,
}

impl StatusChanges {
    /// What the latest announcement before this was made said of the execution: whether
    /// its status is final, or [`Change::Unknown`] (then read it). On PostgreSQL another
    /// process's change may still be on its way: it wakes this waiter when it arrives.
    pub fn last_known(&self) -> Change {
        self.known
    }

    /// Returns once the execution may have changed status since this was made or last
    /// returned, or after `poll` at the latest (a missed announcement, say while
    /// PostgreSQL's listener reconnects, then costs one `poll`). Made before the status is
    /// read, it misses no change in between.
    pub async fn changed(&mut self, poll: Duration) -> Change {
        tokio::select! {
            r = self.one.changed() => match (r, *self.one.borrow_and_update() & 3) {
                (Ok(()), 1) => Change::NotFinal,
                (Ok(()), 2) => Change::Final,
                _ => Change::Unknown,
            },
            _ = self.any.changed() => Change::Unknown,
            _ = tokio::time::sleep(poll) => Change::Unknown,
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
        let any = tokio::time::timeout(Duration::from_secs(1), w.changed(long))
            .await
            .expect("woken by any");
        assert_eq!(any, Change::Unknown);
        // What changed is passed on; of two announcements, the latest.
        a.announce_status(7, false);
        assert_eq!(w.changed(long).await, Change::NotFinal);
        a.announce_status(7, false);
        a.announce_status(7, true);
        assert_eq!(w.changed(long).await, Change::Final);
        a.announce(7);
        assert_eq!(w.changed(long).await, Change::Unknown);
        // Two waiters of one execution share its entry; a dropped one leaves no entry.
        let w2 = a.watch(7);
        drop(w);
        a.announce(7);
        drop(w2);
        a.announce(7);
        assert!(a.watched.lock().unwrap().by_id.is_empty());
        // What the latest announcement said is known to a waiter that starts watching.
        a.announce_status(9, false);
        assert_eq!(a.watch(9).last_known(), Change::NotFinal);
        a.announce_status(9, true);
        a.announce_status(9, false);
        assert_eq!(
            a.watch(9).last_known(),
            Change::Final,
            "a late announcement undid the end"
        );
        a.announce(10);
        assert_eq!(a.watch(10).last_known(), Change::Unknown);
        a.announce_status(11, false);
        a.announce(ANY_EXECUTION);
        assert_eq!(
            a.watch(11).last_known(),
            Change::Unknown,
            "kept after many changed"
        );
    }
}
