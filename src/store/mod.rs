//! Storage through SeaORM: connection set-up per backend, migrations, and
//! the queries the domain needs.

mod checkpoint;
pub mod customers;
pub mod entities;
pub mod history;
pub mod hub;
pub mod intake;
pub mod intake_batch;
pub mod migration;
pub mod organizations;
pub mod pg;
mod shadow;
mod snapshot;
pub mod sockets;
mod writer_slot;

use std::{path::Path, sync::Arc, time::Duration};

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    SqliteTransactionMode, TransactionOptions, TransactionTrait, sqlx::sqlite::SqliteJournalMode,
};
use sea_orm_migration::MigratorTrait;

use crate::domain::Error;
use migration::Migrator;
use sockets::DeadPeer;
use writer_slot::WriterSlot;

/// Connection pool settings.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Upper bound of pooled connections.
    pub max_connections: u32,
    /// How long a call may wait for a connection before failing UNAVAILABLE.
    pub acquire_timeout: Duration,
    /// When a silent database connection counts as dead (TCP); `None`
    /// leaves the operating system's defaults.
    pub dead_peer: Option<DeadPeer>,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            dead_peer: Some(DeadPeer(Duration::from_secs(15))),
        }
    }
}

/// Handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
    /// SQLite only: a one-connection pool for writes. SQLite drops a
    /// connection's page cache whenever another connection has written, so
    /// writing through one connection keeps its cache warm across
    /// transactions.
    sqlite_write_conn: Option<DatabaseConnection>,
    /// SQLite allows one writer at a time; writers queue here, in process.
    /// Readers never take it (WAL lets them run beside a write).
    sqlite_writer: Option<Arc<WriterSlot>>,
    /// SQLite only: wakes the background WAL checkpointer.
    committed: Option<checkpoint::Committed>,
    /// SQLite on a file (not in memory): its path, for connections of
    /// other drivers (the intake batch writer's).
    sqlite_file: Option<Arc<Path>>,
    /// For connections opened outside the pool (the intake batch writer's).
    dead_peer: Option<DeadPeer>,
    /// A dry run's private copy of a SQLite file: its files, removed when
    /// the last handle drops (after the pools above).
    copy: Option<Arc<snapshot::Files>>,
}

/// A write transaction. On SQLite it holds the writer slot until dropped.
pub struct WriteTxn {
    // Field order matters: the transaction ends before the slot is released.
    txn: DatabaseTransaction,
    _writer: Option<writer_slot::Held>,
    committed: Option<checkpoint::Committed>,
}

impl std::ops::Deref for WriteTxn {
    type Target = DatabaseTransaction;
    fn deref(&self) -> &DatabaseTransaction {
        &self.txn
    }
}

impl WriteTxn {
    /// Commits; dropping without commit rolls back.
    pub async fn commit(self) -> Result<(), DbErr> {
        self.txn.commit().await?;
        if let Some(committed) = &self.committed {
            committed.notify();
        }
        Ok(())
    }
}

impl Store {
    /// Connects to `url` (`sqlite://…`, `postgres://…` or `mysql://…`).
    /// A SQLite file is created when missing and tuned for a server.
    pub async fn connect(url: &str, pool: &PoolSettings) -> Result<Self, DbErr> {
        let db = Database::connect(Self::options(url, pool, pool.max_connections)).await?;
        if db.get_database_backend() != DbBackend::Sqlite {
            return Ok(Self {
                db,
                sqlite_write_conn: None,
                sqlite_writer: None,
                committed: None,
                sqlite_file: None,
                dead_peer: pool.dead_peer,
                copy: None,
            });
        }
        let writer = Database::connect(Self::options(url, pool, 1)).await?;
        let options = writer.get_sqlite_connection_pool().connect_options();
        let path = options.get_filename();
        // An in-memory database has no file (its name is sqlx's URI).
        let sqlite_file = path.is_file().then(|| Arc::from(path));
        let slot = Arc::new(WriterSlot::new());
        // In memory there is no WAL to checkpoint.
        let committed = sqlite_file
            .as_deref()
            .and_then(|file| checkpoint::spawn(file, slot.clone()));
        Ok(Self {
            sqlite_file,
            sqlite_write_conn: Some(writer),
            committed,
            sqlite_writer: Some(slot),
            db,
            dead_peer: None,
            copy: None,
        })
    }

    /// Connects to the server's own database: [`Store::connect`], and on a
    /// SQLite file the removal of dry-run copies a stopped process left.
    pub async fn open(url: &str, pool: &PoolSettings) -> Result<Self, DbErr> {
        let store = Self::connect(url, pool).await?;
        if let Some(file) = &store.sqlite_file {
            snapshot::remove_stale(file);
        }
        Ok(store)
    }

    /// Where a dry-run import writes: on a SQLite file, a private copy of
    /// what an import reads, so that the dry run's long transaction holds
    /// up no other writer (see `snapshot.rs`); elsewhere this store, whose
    /// [`Store::begin_dry_run`] keeps the run off the real rows.
    pub async fn for_dry_run(&self) -> Result<Store, Error> {
        let Some(live) = self.sqlite_file.clone() else {
            return Ok(self.clone());
        };
        let start = std::time::Instant::now();
        let dir = snapshot::dir_of(&live);
        std::fs::create_dir_all(&dir).map_err(snapshot::Failed::Dir)?;
        let files = Arc::new(snapshot::Files(dir.join(format!("{}.db", uuid::Uuid::now_v7()))));
        let url = format!("sqlite://{}", files.0.display());
        let pool = PoolSettings {
            max_connections: 2,
            ..PoolSettings::default()
        };
        let mut copy = Self::connect(&url, &pool).await.map_err(snapshot::Failed::Schema)?;
        copy.migrate().await.map_err(snapshot::Failed::Schema)?;
        let target = files.0.clone();
        tokio::task::spawn_blocking(move || snapshot::fill(&live, &target))
            .await
            .map_err(|e| Error::Internal(format!("dry-run copy: {e}")))?
            .map_err(snapshot::Failed::Fill)?;
        tracing::info!(
            copy = %files.0.display(),
            elapsed_ms = start.elapsed().as_millis() as u64,
            "dry run: made its copy of the database"
        );
        copy.copy = Some(files);
        Ok(copy)
    }

    fn options(url: &str, pool: &PoolSettings, max_connections: u32) -> ConnectOptions {
        let mut opts = ConnectOptions::new(url.to_owned());
        if let Some(port) = tcp_port(url) {
            // sqlx's own hook runs for every connection the pool opens.
            let dead_peer = pool.dead_peer;
            opts.map_sqlx_postgres_pool_opts(move |o| {
                o.after_connect(move |_, _| {
                    sockets::apply(port, dead_peer);
                    Box::pin(async { Ok(()) })
                })
            })
            .map_sqlx_mysql_pool_opts(move |o| {
                o.after_connect(move |_, _| {
                    sockets::apply(port, dead_peer);
                    Box::pin(async { Ok(()) })
                })
            });
        }
        opts.max_connections(max_connections)
            .min_connections(1)
            // A ping on every checkout is one more round trip per query (on
            // SQLite one more hop to the connection's thread: 0.8 ms per
            // intake batch under load); pinging only connections idle long
            // enough to have been dropped keeps the protection.
            .test_before_acquire_if_idle_for(Duration::from_secs(30))
            .acquire_timeout(pool.acquire_timeout)
            .connect_timeout(pool.acquire_timeout)
            .sqlx_logging(false)
            .map_sqlx_sqlite_opts(|o| {
                let o = o
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(SQLITE_BUSY_TIMEOUT);
                sqlite_pragmas()
                    .into_iter()
                    .fold(o, |o, (name, value)| o.pragma(name, value))
            });
        opts
    }

    /// Brings the schema up to date. Safe with several processes starting at
    /// once on PostgreSQL: they serialise on an advisory lock and the
    /// migrations run in one transaction.
    pub async fn migrate(&self) -> Result<(), DbErr> {
        match self.backend() {
            DbBackend::Postgres => {
                let txn = self.db.begin().await?;
                txn.execute_unprepared("SELECT pg_advisory_xact_lock(7325010421)")
                    .await?;
                Migrator::up(&txn, None).await?;
                txn.commit().await
            }
            _ => {
                let _writer = self.writer_slot().await;
                Migrator::up(self.write_conn(), None).await
            }
        }
    }

    /// Checks the database answers.
    pub async fn ping(&self) -> Result<(), DbErr> {
        self.db.ping().await
    }

    /// Which database this is.
    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// The pool, for reads.
    pub fn conn(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Closes the pools.
    pub async fn close(self) -> Result<(), DbErr> {
        if let Some(writer) = self.sqlite_write_conn {
            writer.close().await?;
        }
        self.db.close().await
    }

    /// Begins a write transaction: IMMEDIATE on SQLite, so it takes the write
    /// lock up front instead of failing SQLITE_BUSY when it first writes.
    pub async fn begin_write(&self) -> Result<WriteTxn, DbErr> {
        let writer = self.writer_slot().await;
        self.begin_holding(writer).await
    }

    /// The rolled-back transaction a dry-run import writes in. On
    /// PostgreSQL it first gives itself temporary copies of the tables (see
    /// `shadow.rs`), so that it holds no row lock another writer waits for;
    /// on MySQL it holds the row locks of the customers it updated.
    pub async fn begin_dry_run(&self) -> Result<WriteTxn, DbErr> {
        let txn = self.begin_write().await?;
        if self.db.get_database_backend() == DbBackend::Postgres {
            shadow::shadow_tables(&txn).await?;
        }
        Ok(txn)
    }

    /// [`Store::begin_write`] for a long writer that gives way to others (an
    /// import): on SQLite its wait for the writer slot is not counted, since
    /// it waits only behind them (see [`Store::writes_streaming`]).
    pub async fn begin_long_write(&self) -> Result<WriteTxn, DbErr> {
        let writer = match &self.sqlite_writer {
            Some(slot) => Some(slot.take_quietly().await),
            None => None,
        };
        self.begin_holding(writer).await
    }

    async fn begin_holding(&self, writer: Option<writer_slot::Held>) -> Result<WriteTxn, DbErr> {
        let txn = self
            .write_conn()
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..Default::default()
            })
            .await?;
        Ok(WriteTxn {
            txn,
            _writer: writer,
            committed: self.committed.clone(),
        })
    }

    /// When the store's TCP connections count as dead, for connections
    /// opened outside the pool.
    pub(crate) fn dead_peer(&self) -> Option<DeadPeer> {
        self.dead_peer
    }

    /// The SQLite database's file, unless it lives in memory.
    pub(crate) fn sqlite_file(&self) -> Option<Arc<Path>> {
        self.sqlite_file.clone()
    }

    fn write_conn(&self) -> &DatabaseConnection {
        self.sqlite_write_conn.as_ref().unwrap_or(&self.db)
    }

    async fn writer_slot(&self) -> Option<writer_slot::Held> {
        match &self.sqlite_writer {
            Some(slot) => Some(slot.take().await),
            None => None,
        }
    }

    /// Whether a write is waiting for its turn (SQLite only: elsewhere
    /// writes do not take turns).
    pub fn write_waiting(&self) -> bool {
        self.sqlite_writer.as_ref().is_some_and(|slot| slot.wanted())
    }

    /// Whether writes come in a stream (SQLite only): one is waiting for its
    /// turn, or the last one asked within `window` of the one before it
    /// getting in, and got in within `window` of now.
    pub fn writes_streaming(&self, window: Duration) -> bool {
        self.sqlite_writer.as_ref().is_some_and(|slot| slot.streaming(window))
    }
}

/// How long a SQLite connection waits for another process's write lock.
pub(crate) const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of every SQLite connection, the pool's and the intake batch
/// writer's own (on top of WAL mode and the busy timeout).
pub(crate) fn sqlite_pragmas() -> [(&'static str, String); 5] {
    [
        ("synchronous", "NORMAL".into()),
        ("foreign_keys", "ON".into()),
        // Reads through the memory map skip a copy per page. Mapped pages
        // count as resident memory, so the map is kept at 64 MiB: enough for
        // the hot indexes, while a big import stays far under its memory
        // budget.
        ("mmap_size", "67108864".into()),
        // Multi-row statements keep a statement journal (to undo a half-done
        // statement); in memory it costs no writes to a temporary file.
        // Imports ran 10–15% faster.
        ("temp_store", "MEMORY".into()),
        // A backstop: checkpoints are the checkpointer's job.
        ("wal_autocheckpoint", checkpoint::BACKSTOP_PAGES.to_string()),
    ]
}

/// A connection of the service's own on the store's SQLite file (rusqlite,
/// over the SQLite library sqlx links), set up as the pool's; the file is
/// already in WAL mode (the pool set it). The intake batch writer and the
/// WAL checkpointer each keep one on a thread of their own.
pub(crate) fn open_sqlite(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    use rusqlite::{Connection, OpenFlags};
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(SQLITE_BUSY_TIMEOUT)?;
    for (name, value) in sqlite_pragmas() {
        conn.pragma_update(None, name, value)?;
    }
    Ok(conn)
}

/// One keyset page of `query`: rows whose `key` is after `after`, in `key`
/// order, at most `limit`. Every list of the service pages this way.
pub(crate) fn keyset_page<E: sea_orm::EntityTrait>(
    query: sea_orm::Select<E>,
    key: E::Column,
    after: Option<&str>,
    limit: u64,
) -> sea_orm::Select<E> {
    use sea_orm::{ColumnTrait, QueryFilter, QueryOrder, QuerySelect};
    let query = match after {
        Some(after) => query.filter(key.gt(after)),
        None => query,
    };
    query.order_by_asc(key).limit(limit)
}

/// Splits `items` into runs whose lengths are powers of two, at most `max`.
/// Multi-row statements then come in a few distinct texts, so each
/// connection's prepared-statement cache holds a handful of them instead of
/// one (large) statement per batch size: that cache was most of the memory
/// of a SQLite import.
pub(crate) fn pow2_chunks<T>(mut items: &[T], max: usize) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        if items.is_empty() {
            return None;
        }
        let len = items.len().min(max);
        let run = 1 << len.ilog2();
        let (head, rest) = items.split_at(run);
        items = rest;
        Some(head)
    })
}

/// `keys` padded to a power-of-two length by repeating the last one, for
/// `IN (...)` lists (see [`pow2_chunks`]); repeats match nothing new.
pub(crate) fn padded<T: Clone>(keys: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut keys: Vec<T> = keys.into_iter().collect();
    if let Some(last) = keys.last().cloned() {
        keys.resize(keys.len().next_power_of_two(), last);
    }
    keys
}

/// The TCP port of a PostgreSQL or MySQL URL; `None` for SQLite and sockets.
fn tcp_port(url: &str) -> Option<u16> {
    let (scheme, rest) = url.split_once("://")?;
    let default = match scheme {
        "postgres" | "postgresql" => 5432,
        "mysql" | "mariadb" => 3306,
        _ => return None,
    };
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.is_empty() || host_port.starts_with('%') {
        return None;
    }
    match host_port.rsplit_once(':') {
        Some((_, port)) if !host_port.ends_with(']') => port.parse().ok(),
        _ => Some(default),
    }
}

/// Whether a database error is a unique-index violation.
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_)))
}

/// Whether a database error means "the database cannot be reached" (retry
/// later) rather than "this statement failed".
pub fn is_connection_error(err: &DbErr) -> bool {
    use sea_orm::{RuntimeErr, sqlx::Error as Sqlx};
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => matches!(
            e.as_ref(),
            Sqlx::Io(_)
                | Sqlx::Tls(_)
                | Sqlx::PoolTimedOut
                | Sqlx::PoolClosed
                | Sqlx::WorkerCrashed
                | Sqlx::Protocol(_)
        ),
        _ => false,
    }
}

/// Whether a database error means its disk is full: SQLite's SQLITE_FULL,
/// PostgreSQL's `disk_full` (53100), MySQL's "disk full" (1021) and "table
/// is full" (1114, what InnoDB answers when its tablespace cannot grow).
pub(crate) fn is_disk_full(err: &DbErr) -> bool {
    use sea_orm::{
        RuntimeErr,
        sqlx::{Error as Sqlx, mysql::MySqlDatabaseError},
    };
    let (DbErr::Conn(RuntimeErr::SqlxError(e))
    | DbErr::Exec(RuntimeErr::SqlxError(e))
    | DbErr::Query(RuntimeErr::SqlxError(e))) = err
    else {
        return false;
    };
    let Sqlx::Database(d) = e.as_ref() else {
        return false;
    };
    // MySQL's SQLSTATE for these is the catch-all HY000: its own number tells.
    matches!(d.code().as_deref(), Some("13" | "53100"))
        || d.try_downcast_ref::<MySqlDatabaseError>()
            .is_some_and(|m| matches!(m.number(), 1021 | 1114))
}

/// `name` as an SQL identifier in double quotes (SQLite and PostgreSQL).
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// TEST_DATABASE_URL if it names a `scheme` database; else says why the
/// test skips.
#[cfg(test)]
pub(crate) fn test_database_url(scheme: &str) -> Option<String> {
    let url = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with(scheme));
    if url.is_none() {
        eprintln!("SKIPPED: TEST_DATABASE_URL names no {scheme} database");
    }
    url
}

impl From<DbErr> for Error {
    fn from(err: DbErr) -> Self {
        if is_disk_full(&err) {
            // The operator's to fix, and the caller's to be told of: the
            // transaction rolled back, so nothing of the request is stored.
            return Error::ResourceExhausted {
                reason: "STORAGE_FULL",
                message: "the database's disk is full: the write in progress was rolled back, and nothing of it is stored (retry once there is room)"
                    .into(),
                metadata: Vec::new(),
            };
        }
        if is_connection_error(&err) {
            Error::Unavailable(err.to_string())
        } else {
            Error::Internal(err.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tcp_ports() {
        use super::tcp_port;
        assert_eq!(tcp_port("postgres://u@db.example.com:6432/x"), Some(6432));
        assert_eq!(tcp_port("postgres://u:p@127.0.0.1/x"), Some(5432));
        assert_eq!(tcp_port("mysql://root@[::1]/test"), Some(3306));
        assert_eq!(tcp_port("postgres://u@%2Fvar%2Frun%2Fpostgresql/x"), None);
        assert_eq!(tcp_port("sqlite:///tmp/x.db"), None);
    }

    /// A real SQLITE_FULL (a page limit stands in for the disk) becomes
    /// RESOURCE_EXHAUSTED, not an opaque INTERNAL.
    #[tokio::test]
    async fn a_full_database_is_resource_exhausted() {
        use sea_orm::{ConnectOptions, ConnectionTrait, Database};
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("full.db").display());
        let db = Database::connect(ConnectOptions::new(url).max_connections(1).to_owned())
            .await
            .unwrap();
        db.execute_unprepared("CREATE TABLE t (b BLOB)").await.unwrap();
        let pages: i64 = {
            use sea_orm::{DbBackend, Statement};
            let row = db
                .query_one_raw(Statement::from_string(DbBackend::Sqlite, "PRAGMA page_count"))
                .await
                .unwrap()
                .unwrap();
            row.try_get_by_index(0).unwrap()
        };
        db.execute_unprepared(&format!("PRAGMA max_page_count = {}", pages + 2))
            .await
            .unwrap();
        let err = db
            .execute_unprepared("INSERT INTO t VALUES (zeroblob(100000))")
            .await
            .unwrap_err();
        assert!(super::is_disk_full(&err), "{err:?}");
        let super::Error::ResourceExhausted { reason, .. } = super::Error::from(err) else {
            panic!("RESOURCE_EXHAUSTED");
        };
        assert_eq!(reason, "STORAGE_FULL");
    }

    /// A real "table is full" from MySQL (a MEMORY table at its size limit
    /// stands in for InnoDB's full disk) becomes RESOURCE_EXHAUSTED.
    #[tokio::test]
    async fn mysql_table_full_is_resource_exhausted() {
        use sea_orm::{ConnectOptions, ConnectionTrait, Database};
        let Some(url) = super::test_database_url("mysql") else {
            return;
        };
        let db = Database::connect(ConnectOptions::new(url).max_connections(1).to_owned())
            .await
            .unwrap();
        let table = format!("full_{}", uuid::Uuid::now_v7().simple());
        db.execute_unprepared("SET SESSION max_heap_table_size = 16384")
            .await
            .unwrap();
        db.execute_unprepared(&format!("CREATE TABLE {table} (b VARCHAR(1000)) ENGINE=MEMORY"))
            .await
            .unwrap();
        let mut failed = None;
        for _ in 0..1000 {
            if let Err(e) = db
                .execute_unprepared(&format!("INSERT INTO {table} VALUES (REPEAT('x', 1000))"))
                .await
            {
                failed = Some(e);
                break;
            }
        }
        db.execute_unprepared(&format!("DROP TABLE {table}")).await.unwrap();
        let err = failed.expect("the table filled up");
        assert!(super::is_disk_full(&err), "{err:?}");
        let super::Error::ResourceExhausted { reason, .. } = super::Error::from(err) else {
            panic!("RESOURCE_EXHAUSTED");
        };
        assert_eq!(reason, "STORAGE_FULL");
    }

    #[test]
    fn power_of_two_runs() {
        let items: Vec<u32> = (0..1000).collect();
        let runs: Vec<usize> = super::pow2_chunks(&items, 256).map(<[u32]>::len).collect();
        assert_eq!(runs, [256, 256, 256, 128, 64, 32, 8]);
        assert_eq!(super::padded([1, 2, 3]), [1, 2, 3, 3]);
        assert!(super::padded(Vec::<u8>::new()).is_empty());
    }
}
