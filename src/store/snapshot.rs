//! SQLite: a private copy of the database for a dry-run import.
//!
//! A dry run writes every batch as a real import would, inside one
//! transaction that it rolls back at the end. SQLite has one write lock per
//! file, so on the live file that transaction held up every other write,
//! tickets too, for the whole run (a minute for a million rows). A dry run
//! on SQLite therefore writes into a copy instead: a fresh file beside the
//! database, migrated, filled from the live file in one read transaction
//! (a consistent snapshot that takes no lock writers wait for), and removed
//! when the dry run ends. The copy leaves out the two logs that no import
//! reads (ticket links and history), which grow with every ticket and
//! change; what an import does read is copied whole, so its matching is the
//! same as on the live file.

use std::{
    fs,
    path::{Path, PathBuf},
};

use rusqlite::{Connection, ErrorCode};
use sea_orm::DbErr;

use super::quoted;
use crate::domain::Error;

/// Tables an import never reads, so a copy for a dry run leaves them empty.
const NOT_COPIED: [&str; 3] = ["ticket_links", "history_entries", "seaql_migrations"];

/// Where the copies of `live` go: `<file>.dry-runs/` beside it, on the same
/// disk (a temporary directory may be memory).
pub(super) fn dir_of(live: &Path) -> PathBuf {
    let mut name = live.file_name().unwrap_or_default().to_owned();
    name.push(".dry-runs");
    live.with_file_name(name)
}

/// Removes copies that a stopped process left behind. Called once, when the
/// server opens its store.
pub(super) fn remove_stale(live: &Path) {
    let dir = dir_of(live);
    if dir.exists()
        && let Err(e) = fs::remove_dir_all(&dir)
    {
        tracing::warn!(dir = %dir.display(), error = %e, "could not remove old dry-run copies");
    }
}

/// A copy's files; removed when the last handle to the copy's store drops.
/// The directory stays (another dry run may be making its copy there).
#[derive(Debug)]
pub(super) struct Files(pub PathBuf);

impl Drop for Files {
    fn drop(&mut self) {
        // SQLite names its companions by appending to the file's name.
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = fs::remove_file(path);
        }
    }
}

/// Copies what an import reads from `live` into `copy`, whose schema is
/// already up to date. Blocking; run it off the async runtime.
pub(super) fn fill(live: &Path, copy: &Path) -> rusqlite::Result<()> {
    let conn = Connection::open(copy)?;
    conn.busy_timeout(super::SQLITE_BUSY_TIMEOUT)?;
    // The copy is thrown away; it need not survive a power cut.
    conn.pragma_update(None, "synchronous", "OFF")?;
    conn.execute("ATTACH DATABASE ?1 AS live", [live.to_string_lossy()])?;
    // One transaction: its first read of `live` fixes the snapshot every
    // table is copied from.
    conn.execute_batch("BEGIN; PRAGMA defer_foreign_keys = ON;")?;
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM live.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    for table in tables.iter().filter(|t| !NOT_COPIED.contains(&t.as_str())) {
        // Named columns, not `*`: the copy's columns come from the same
        // migrations, but this does not depend on their order.
        let columns: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info(?1, 'live')")?
            .query_map([table], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        let columns = columns.iter().map(|c| quoted(c)).collect::<Vec<_>>().join(", ");
        let table = quoted(table);
        // Rows a migration may have seeded make way for the live ones.
        conn.execute_batch(&format!(
            "DELETE FROM main.{table}; INSERT INTO main.{table} ({columns}) SELECT {columns} FROM live.{table};"
        ))?;
    }
    conn.execute_batch("COMMIT; DETACH DATABASE live;")
}

/// Why a copy could not be made.
#[derive(Debug)]
pub(super) enum Failed {
    Dir(std::io::Error),
    Schema(DbErr),
    Fill(rusqlite::Error),
}

impl Failed {
    fn disk_full(&self) -> bool {
        match self {
            Failed::Dir(e) => e.kind() == std::io::ErrorKind::StorageFull,
            Failed::Schema(e) => super::is_disk_full(e),
            Failed::Fill(e) => e.sqlite_error_code() == Some(ErrorCode::DiskFull),
        }
    }
}

/// A full disk is the operator's to fix, and the caller's to be told of;
/// anything else is a fault of ours.
impl From<Failed> for Error {
    fn from(failed: Failed) -> Self {
        if failed.disk_full() {
            return Error::ResourceExhausted {
                reason: "DRY_RUN_DISK_FULL",
                message: "a dry run on SQLite works on a copy of the customers beside the database, and the disk \
                          has no room for it; nothing was imported (free disk space and run it again)"
                    .into(),
                metadata: Vec::new(),
            };
        }
        Error::Internal(format!("dry-run copy: {failed:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_resource_exhausted_and_other_failures_internal() {
        let full = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL), None);
        let Error::ResourceExhausted { reason, .. } = Error::from(Failed::Fill(full)) else {
            panic!("a full disk is RESOURCE_EXHAUSTED");
        };
        assert_eq!(reason, "DRY_RUN_DISK_FULL");
        let dir = std::io::Error::from(std::io::ErrorKind::StorageFull);
        assert!(matches!(Error::from(Failed::Dir(dir)), Error::ResourceExhausted { .. }));
        let io = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR), None);
        assert!(matches!(Error::from(Failed::Fill(io)), Error::Internal(_)));
    }
}
