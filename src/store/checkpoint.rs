//! SQLite: WAL checkpoints in the background, off the writers' path.
//!
//! By default the connection whose commit fills the WAL past 1,000 pages
//! copies them into the database file, and syncs both files, inside that
//! commit: under a steady write load every few dozen intake batches one
//! commit took 5–15 ms and every ticket queued behind it. So the writers'
//! automatic checkpoint is only a far backstop ([`BACKSTOP_PAGES`]) and this
//! checkpointer runs after commits, beside the writer.
//!
//! A PASSIVE checkpoint never blocks the writer, but under a steady load it
//! never quite finishes (frames land while it copies), and SQLite rewinds
//! the WAL to its start only once every frame is copied. So when the WAL
//! has grown past [`REWIND_PAGES`], the checkpointer checkpoints again until
//! little landed meanwhile, then copies that short tail with the store's
//! writer slot held: the next write transaction starts the WAL over instead
//! of growing it.
//!
//! The copy with the slot held syncs the WAL and the database file, and a
//! sync writes everything the OS holds for the file, not just the tail: up
//! to ~40 ms at 100,000 customers. Both files are synced just before the
//! slot is taken, so that little is left to write while writers wait.
//!
//! It runs on a thread of its own with a connection of its own (rusqlite).
//! Through the pool, each statement's answer woke it on the server's
//! runtime behind the gRPC tasks; during a rewind it waited there with the
//! writer slot held, and every writer with it (3–30 ms under intake load,
//! every ~0.3 s: most of SQLite's p99).

use std::{
    fs::File,
    path::Path,
    sync::{
        Arc,
        mpsc::{self, Receiver, SyncSender},
    },
    time::Duration,
};

use rusqlite::Connection;

use super::writer_slot::WriterSlot;

/// At most one checkpoint per this long: each one copies a hot page once
/// however often it was written since the last (100 ms against 20 ms: a
/// quarter less checkpointing CPU per intake call, the same calls/s and
/// p99).
const PAUSE: Duration = Duration::from_millis(100);

/// WAL length (pages, ~16 MiB) past which the checkpointer rewinds it.
const REWIND_PAGES: i64 = 4096;

/// Pages landed during a checkpoint below which the rewind holds writers off.
const SHORT_TAIL: i64 = 128;

/// Checkpoints tried to shorten the tail before holding writers off anyway.
const CATCH_UP: usize = 4;

/// The writers' own automatic checkpoint (every connection's
/// `wal_autocheckpoint`), a backstop should the checkpointer fall behind (a
/// long reader pins old frames): ~64 MiB of WAL.
pub const BACKSTOP_PAGES: u32 = 16_384;

/// Tells the checkpointer that a transaction committed.
#[derive(Clone, Debug)]
pub struct Committed(SyncSender<()>);

impl Committed {
    pub fn notify(&self) {
        // Full means a checkpoint is already due.
        let _ = self.0.try_send(());
    }
}

/// Starts the checkpointer of the SQLite database `file`; `writer` is the
/// store's writer slot. It stops when every `Committed` is gone. `None` if
/// no thread could be had (the writers' backstop checkpoints then do).
pub fn spawn(file: &Path, writer: Arc<WriterSlot>) -> Option<Committed> {
    let (tx, rx) = mpsc::sync_channel(1);
    let file = file.to_owned();
    let spawned = std::thread::Builder::new()
        .name("wal-checkpoint".into())
        .spawn(move || run(&file, &writer, &rx));
    match spawned {
        Ok(_) => Some(Committed(tx)),
        Err(e) => {
            tracing::warn!(error = %e, "no thread for the WAL checkpointer; commits checkpoint themselves");
            None
        }
    }
}

fn run(file: &Path, writer: &WriterSlot, committed: &Receiver<()>) {
    let conn = match super::open_sqlite(file) {
        Ok(conn) => conn,
        Err(e) => {
            tracing::warn!(error = %e, "no connection for the WAL checkpointer; commits checkpoint themselves");
            return;
        }
    };
    while committed.recv().is_ok() {
        if let Err(e) = checkpoint(&conn, file, writer) {
            // Harmless: the writers' backstop checkpoint still runs.
            tracing::debug!(error = %e, "background WAL checkpoint failed");
        }
        std::thread::sleep(PAUSE);
    }
}

/// A checkpoint, and a rewind when the WAL is long.
fn checkpoint(conn: &Connection, file: &Path, writer: &WriterSlot) -> rusqlite::Result<()> {
    let mut wal = passive(conn)?;
    if wal < REWIND_PAGES {
        return Ok(());
    }
    // Each checkpoint copies what landed while the last one ran; once that
    // is little, so is the copy that holds writers off.
    for _ in 0..CATCH_UP {
        let now = passive(conn)?;
        let landed = now - wal;
        if landed < 0 {
            return Ok(()); // a writer already rewound it
        }
        wal = now;
        if landed <= SHORT_TAIL {
            break;
        }
    }
    let mut wal_file = file.as_os_str().to_owned();
    wal_file.push("-wal");
    for path in [file, Path::new(&wal_file)] {
        // Only an early start on the checkpoint's own sync: a failure here is no loss.
        if let Ok(f) = File::open(path) {
            let _ = f.sync_data();
        }
    }
    let _slot = writer.blocking_take();
    passive(conn).map(drop)
}

/// One PASSIVE checkpoint; the WAL's length in pages when it started.
fn passive(conn: &Connection) -> rusqlite::Result<i64> {
    // Columns: busy, WAL pages, pages checkpointed.
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wal_pages(conn: &Connection) -> i64 {
        // A checkpoint of nothing: reports the WAL's length.
        passive(conn).unwrap()
    }

    /// Past the rewind length, a checkpoint copies the last frames with the
    /// writer slot held, so the next write starts the WAL over.
    #[test]
    fn a_long_wal_is_rewound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        conn.execute_batch("CREATE TABLE t (b BLOB)").unwrap();
        let fill = |pages: i64| {
            for _ in 0..pages {
                conn.execute("INSERT INTO t VALUES (zeroblob(4000))", []).unwrap();
            }
        };
        fill(REWIND_PAGES + 64);
        let checkpointer = super::super::open_sqlite(&path).unwrap();
        let slot = Arc::new(WriterSlot::new());
        let held = slot.try_take().unwrap();
        let rewind = std::thread::spawn({
            let (slot, path) = (slot.clone(), path.clone());
            move || checkpoint(&checkpointer, &path, &slot)
        });
        // Copying 16 MiB without the slot would be done well within this.
        std::thread::sleep(Duration::from_millis(500));
        assert!(!rewind.is_finished(), "the last copy waits for the writer slot");
        assert!(slot.wanted(), "and counts as waiting for it");
        drop(held);
        rewind.join().unwrap().unwrap();
        assert!(slot.try_take().is_some(), "the slot is given back");
        fill(1);
        assert!(wal_pages(&conn) < 16, "the write after the rewind started the WAL over");
    }
}
