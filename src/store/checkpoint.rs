//! SQLite: WAL checkpoints in the background.
//!
//! By default the connection whose commit fills the WAL past 1,000 pages
//! copies them into the database file inside that commit: under a steady
//! write load every few dozen intake batches, one commit took 5–9 ms and every
//! ticket queued behind it. After each write commit this task runs a PASSIVE
//! checkpoint (it never blocks readers or the writer) on a reader connection,
//! so the copying happens beside the writer, on another core. SQLite's own
//! automatic checkpoint stays as the bound on the WAL's size should this task
//! fall behind.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection};
use tokio::sync::mpsc;

/// At most one checkpoint per this long: each one copies a hot page once
/// however often it was written since the last.
const PAUSE: Duration = Duration::from_millis(20);

/// Tells the checkpointer that a transaction committed.
#[derive(Clone, Debug)]
pub struct Committed(mpsc::Sender<()>);

impl Committed {
    pub fn notify(&self) {
        // Full means a checkpoint is already due.
        let _ = self.0.try_send(());
    }
}

/// Starts the checkpointer on `db`; it stops when every `Committed` is gone.
pub fn spawn(db: DatabaseConnection) -> Committed {
    let (tx, mut rx) = mpsc::channel(1);
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            if let Err(e) = db.execute_unprepared("PRAGMA wal_checkpoint(PASSIVE)").await {
                // Harmless: the writer's own automatic checkpoint still runs.
                tracing::debug!(error = %e, "background WAL checkpoint failed");
            }
            tokio::time::sleep(PAUSE).await;
        }
    });
    Committed(tx)
}
