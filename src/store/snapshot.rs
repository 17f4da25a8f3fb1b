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

use rusqlite::Connection;

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

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
