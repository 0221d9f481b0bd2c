//! SQLite group commit. The writes a caller acts on once they are on disk (a new execution
//! before the API answers 201, a claim before its action starts) commit with
//! `synchronous = NORMAL`, which writes the WAL without flushing it, then wait here for an
//! `fdatasync` of the WAL that began after their commit. Callers that wait together share
//! one flush, and the one writer connection is free while the disk works: with
//! `synchronous = FULL` every such commit flushed the WAL by itself while holding the
//! writer, and every other write queued behind it.
//!
//! What this relies on: SQLite appends each commit's frames to the WAL with `write` before
//! the commit returns, so a flush of the WAL file that starts afterwards puts them on disk,
//! with everything committed before them (the WAL is in commit order). The WAL is removed
//! only once all of it is copied into the database file and that file flushed (when the
//! last connection closes); so when the file at the WAL's path is another one than this
//! process has open, the one it had is no longer needed, and when there is none, the
//! database file is flushed instead.

use crate::StoreError;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A commit that is perhaps not on disk yet: its number in this process's order of
/// commits that wait for a flush. [`crate::Store::flushed`] waits until it is on disk.
#[must_use = "the commit is on disk only once `Store::flushed` has returned for it"]
#[derive(Debug)]
pub struct Unflushed(pub(crate) u64);

/// The WAL of one SQLite database, and the flushes of it that this process made.
#[derive(Debug)]
pub(crate) struct WalFlush {
    wal: PathBuf,
    db: PathBuf,
    /// How many commits have taken a number: each takes the next once it has committed.
    numbered: AtomicU64,
    /// How many flushes this process has made (for tests and the curious).
    flushes: AtomicU64,
    state: tokio::sync::Mutex<State>,
    /// The number up to which every commit is on disk, for those who wait for a flush
    /// without making one ([`WalFlush::flushed_within`]).
    done: tokio::sync::watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct State {
    /// Every commit numbered up to this one is on disk.
    flushed: u64,
    /// The WAL file this process has open, and its (device, inode).
    file: Option<(Arc<File>, (u64, u64))>,
    /// A flush failed. After a failed `fdatasync` the kernel may have dropped the pages it
    /// could not write and report the next one as a success, so no later flush can be
    /// trusted either: every commit waiting for one fails until the server restarts.
    failed: Option<String>,
}

impl WalFlush {
    /// The flusher of the database file at `db` (its WAL is `db` + `-wal`).
    pub(crate) fn new(db: &Path) -> WalFlush {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        WalFlush {
            wal: PathBuf::from(wal),
            db: db.to_path_buf(),
            numbered: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            state: Default::default(),
            done: tokio::sync::watch::Sender::new(0),
        }
    }

    /// A commit that has just returned takes its number.
    pub(crate) fn committed(&self) -> Unflushed {
        Unflushed(self.numbered.fetch_add(1, Ordering::SeqCst) + 1)
    }

    /// How many flushes this process has made.
    pub(crate) fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    /// Returns once commit `c` is on disk: at once if a flush that began after it has
    /// ended, else after one more flush, which covers every commit numbered before it
    /// began (those that waited meanwhile among them).
    pub(crate) async fn flushed(&self, c: Unflushed) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        if let Some(failed) = &state.failed {
            return Err(StoreError::Database(failed.clone()));
        }
        if state.flushed >= c.0 {
            return Ok(());
        }
        // Each of these commits wrote its frames before it took its number.
        let upto = self.numbered.load(Ordering::SeqCst);
        let synced = match state.open(&self.wal, &self.db) {
            Ok(file) => match tokio::task::spawn_blocking(move || file.sync_data()).await {
                Ok(r) => r,
                Err(e) => Err(std::io::Error::other(e.to_string())),
            },
            Err(e) => Err(e),
        };
        self.flushes.fetch_add(1, Ordering::Relaxed);
        match synced {
            Ok(()) => {
                state.flushed = upto;
                self.done.send_replace(upto);
                Ok(())
            }
            Err(e) => {
                let failed = format!(
                    "cannot flush {} to disk ({e}); what was committed since the last flush may be lost: restart the server",
                    self.wal.display()
                );
                state.failed = Some(failed.clone());
                state.file = None;
                Err(StoreError::Database(failed))
            }
        }
    }
}

impl WalFlush {
    /// [`WalFlush::flushed`], but leaving the flush to another caller for up to `patience`
    /// first: for a commit that is followed at once by another that will wait for the
    /// disk (an execution's insert by its claim), one flush then covers both.
    pub(crate) async fn flushed_within(
        &self,
        c: Unflushed,
        patience: std::time::Duration,
    ) -> Result<(), StoreError> {
        let mut done = self.done.subscribe();
        let until = tokio::time::Instant::now() + patience;
        while *done.borrow_and_update() < c.0 {
            match tokio::time::timeout_at(until, done.changed()).await {
                Ok(Ok(())) => {}
                _ => break,
            }
        }
        self.flushed(c).await
    }
}

impl State {
    /// The file to flush: the WAL now at its path (the one already open if it is still
    /// that), or the database file when there is no WAL.
    fn open(&mut self, wal: &Path, db: &Path) -> std::io::Result<Arc<File>> {
        let now = match std::fs::metadata(wal) {
            Ok(m) => (m.dev(), m.ino()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.file = None;
                return File::open(db).map(Arc::new);
            }
            Err(e) => return Err(e),
        };
        if let Some((file, id)) = &self.file {
            if *id == now {
                return Ok(file.clone());
            }
        }
        let file = Arc::new(File::open(wal)?);
        let m = file.metadata()?;
        self.file = Some((file.clone(), (m.dev(), m.ino())));
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database file and its WAL in a new directory, and their flusher.
    fn scratch() -> (tempfile::TempDir, Arc<WalFlush>) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        std::fs::write(&db, b"db").unwrap();
        std::fs::write(dir.path().join("x.db-wal"), b"wal").unwrap();
        let f = Arc::new(WalFlush::new(&db));
        (dir, f)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiters_share_flushes_and_a_later_commit_gets_its_own() {
        let (_dir, f) = scratch();

        // One commit, one flush.
        f.flushed(f.committed()).await.unwrap();
        assert_eq!(f.flushes(), 1);
        // Already covered: no flush.
        let covered = Unflushed(1);
        f.flushed(covered).await.unwrap();
        assert_eq!(f.flushes(), 1);

        // Many commits waiting at once share flushes: at most one running and one next.
        let numbered: Vec<_> = (0..64).map(|_| f.committed()).collect();
        let waits: Vec<_> = numbered
            .into_iter()
            .map(|c| {
                let f = f.clone();
                tokio::spawn(async move { f.flushed(c).await })
            })
            .collect();
        for w in waits {
            w.await.unwrap().unwrap();
        }
        // All numbered before the first of them flushed: that flush covers them all.
        assert_eq!(
            f.flushes(),
            2,
            "64 waiters numbered at once share one flush"
        );

        // A commit after that flush is not covered by it.
        f.flushed(f.committed()).await.unwrap();
        assert_eq!(f.flushes(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_patient_commit_is_covered_by_the_next_ones_flush_or_flushes_itself() {
        let (_dir, f) = scratch();

        // An insert, then the claim that follows it: the claim's flush covers both.
        let insert = f.committed();
        let patient = {
            let f = f.clone();
            tokio::spawn(async move {
                f.flushed_within(insert, std::time::Duration::from_secs(60))
                    .await
            })
        };
        let claim = f.committed();
        f.flushed(claim).await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), patient)
            .await
            .expect("the claim's flush ended the insert's wait")
            .unwrap()
            .unwrap();
        assert_eq!(f.flushes(), 1);

        // Nobody else flushes: after its patience, it does.
        f.flushed_within(f.committed(), std::time::Duration::from_millis(5))
            .await
            .unwrap();
        assert_eq!(f.flushes(), 2);
    }

    #[tokio::test]
    async fn a_failed_flush_fails_every_later_wait() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        let wal = dir.path().join("x.db-wal");
        std::fs::write(&db, b"db").unwrap();
        // fdatasync of a character device fails (EINVAL).
        std::os::unix::fs::symlink("/dev/null", &wal).unwrap();
        let f = WalFlush::new(&db);
        let first = f.flushed(f.committed()).await.unwrap_err().to_string();
        assert!(
            first.contains("cannot flush") && first.contains("x.db-wal"),
            "{first}"
        );
        // A good WAL again: what the kernel dropped is not back, so it still fails.
        std::fs::remove_file(&wal).unwrap();
        std::fs::write(&wal, b"wal").unwrap();
        let later = f.flushed(f.committed()).await.unwrap_err().to_string();
        assert_eq!(later, first);
        assert_eq!(f.flushes(), 1, "no flush is trusted after a failed one");
    }

    #[tokio::test]
    async fn a_replaced_or_removed_wal_is_followed() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        let wal = dir.path().join("x.db-wal");
        std::fs::write(&db, b"db").unwrap();
        std::fs::write(&wal, b"one").unwrap();
        let f = WalFlush::new(&db);
        f.flushed(f.committed()).await.unwrap();
        let first = f.state.lock().await.file.as_ref().unwrap().1;

        // Removed (all of it copied into the database): the database file is flushed.
        // (The old WAL is held open here, so the new one cannot take its inode number.)
        let hold = File::open(&wal).unwrap();
        std::fs::remove_file(&wal).unwrap();
        f.flushed(f.committed()).await.unwrap();
        assert!(f.state.lock().await.file.is_none());

        // A new WAL: that one is opened.
        std::fs::write(&wal, b"two").unwrap();
        f.flushed(f.committed()).await.unwrap();
        let second = f.state.lock().await.file.as_ref().unwrap().1;
        assert_ne!(first, second);
        let m = std::fs::metadata(&wal).unwrap();
        assert_eq!(second, (m.dev(), m.ino()));
        drop(hold);
        assert_eq!(f.flushes(), 3);
    }
}
