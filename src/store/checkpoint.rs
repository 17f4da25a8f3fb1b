//! SQLite: WAL checkpoints in the background, off the writers' path.
//!
//! By default the connection whose commit fills the WAL past 1,000 pages
//! copies them into the database file, and syncs both files, inside that
//! commit: under a steady write load every few dozen intake batches one
//! commit took 5–15 ms and every ticket queued behind it. So the writers'
//! automatic checkpoint is only a far backstop ([`BACKSTOP_PAGES`]) and this
//! task checkpoints after commits, on a reader connection, beside the writer.
//!
//! A PASSIVE checkpoint never blocks the writer, but under a steady load it
//! never quite finishes (frames land while it copies), and SQLite rewinds
//! the WAL to its start only once every frame is copied. So when the WAL
//! has grown past [`REWIND_PAGES`], the task checkpoints again until little
//! landed meanwhile, then copies that short tail with the store's writer
//! slot held: the next write transaction starts the WAL over instead of
//! growing it. Writers wait for that copy and its two syncs (~1–8 ms,
//! against 5–15 ms for a writer's own checkpoint).

use std::{sync::Arc, time::Duration};

use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, Statement};
use tokio::sync::{Mutex, mpsc};

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
/// `wal_autocheckpoint`), a backstop should this task fall behind (a long
/// reader pins old frames): ~64 MiB of WAL.
pub const BACKSTOP_PAGES: u32 = 16_384;

/// Tells the checkpointer that a transaction committed.
#[derive(Clone, Debug)]
pub struct Committed(mpsc::Sender<()>);

impl Committed {
    pub fn notify(&self) {
        // Full means a checkpoint is already due.
        let _ = self.0.try_send(());
    }
}

/// Starts the checkpointer on `db`; `writer` is the store's writer slot. It
/// stops when every `Committed` is gone.
pub fn spawn(db: DatabaseConnection, writer: Arc<Mutex<()>>) -> Committed {
    let (tx, mut rx) = mpsc::channel(1);
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            if let Err(e) = checkpoint(&db, &writer).await {
                // Harmless: the writers' backstop checkpoint still runs.
                tracing::debug!(error = %e, "background WAL checkpoint failed");
            }
            tokio::time::sleep(PAUSE).await;
        }
    });
    Committed(tx)
}

/// A checkpoint, and a rewind when the WAL is long.
async fn checkpoint(db: &DatabaseConnection, writer: &Mutex<()>) -> Result<(), DbErr> {
    let mut wal = passive(db).await?;
    if wal < REWIND_PAGES {
        return Ok(());
    }
    // Each checkpoint copies what landed while the last one ran; once that
    // is little, so is the copy that holds writers off.
    for _ in 0..CATCH_UP {
        let now = passive(db).await?;
        let landed = now - wal;
        if landed < 0 {
            return Ok(()); // a writer already rewound it
        }
        wal = now;
        if landed <= SHORT_TAIL {
            break;
        }
    }
    let _slot = writer.lock().await;
    passive(db).await.map(drop)
}

/// One PASSIVE checkpoint; the WAL's length in pages when it started.
async fn passive(db: &DatabaseConnection) -> Result<i64, DbErr> {
    let stmt = Statement::from_string(db.get_database_backend(), "PRAGMA wal_checkpoint(PASSIVE)");
    let row = db.query_one_raw(stmt).await?;
    // Columns: busy, WAL pages, pages checkpointed.
    Ok(row.map(|r| r.try_get_by_index::<i64>(1)).transpose()?.unwrap_or(0))
}
