//! Intake batches: a read of all a batch needs, then one atomic write of all
//! it decided, on a connection the batch writer keeps. MySQL (and an
//! in-memory SQLite database) takes the portable path: SeaORM statements in
//! one transaction.
//!
//! SQLite: through sqlx every statement was a hand-off to sqlx's connection
//! thread and back; the writer now drives a connection of its own
//! (rusqlite) on its own thread, with cached prepared statements, one per
//! row. PostgreSQL: every statement is a round trip, so the read is one
//! statement returning JSON arrays built by the database and the write one
//! statement taking one array per column, whatever the batch size. The
//! connection is the writer's own because a pool pings every connection it
//! gets back (one more round trip per transaction) and the next batch waited
//! for that ping.

mod postgres;
mod sqlite;

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::{
    DatabaseConnection, DbBackend, DbErr, RuntimeErr, SqlxMySqlConnector, TransactionTrait,
    sqlx::{self, Connection, PgConnection, Row, postgres::PgRow},
};
use serde::Deserialize;

use super::{
    Store, WriteTxn,
    checkpoint::Committed,
    customers::{self as q, IdentityKind},
    entities::{customer, ticket_link},
    history,
    intake::{self as portable, Keys},
};
use crate::domain::{
    customer::{Customer, CustomerDraft},
    history::Entry,
};

/// What the database holds for a batch's tickets and identities.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Stored answers, by ticket id.
    pub links: HashMap<String, ticket_link::Model>,
    /// Live owners: (kind, normalised) → customer id.
    pub owners: HashMap<(IdentityKind, String), String>,
    /// Identities nobody live holds that a deleted customer had.
    pub deleted: HashSet<(IdentityKind, String)>,
    /// The owners and the linked customers.
    pub customers: Vec<Customer>,
}

/// What a batch stores: new customers (fresh: no tickets, not deleted) with
/// their identities, ticket links (counted on their customers as they are
/// stored) and history.
#[derive(Debug, Clone, Copy)]
pub struct NewRows<'a> {
    pub customers: &'a [(Customer, CustomerDraft)],
    pub links: &'a [ticket_link::Model],
    pub history: &'a [Entry],
}

/// One batch writer's connection, opened on first use with the store's
/// settings and replaced after a failure.
#[derive(Debug)]
pub struct BatchWriter {
    store: Store,
    sqlite: Option<rusqlite::Connection>,
    pg: Option<PgConnection>,
    /// A pool of one, so that it reconnects as the store's pool does.
    mysql: Option<DatabaseConnection>,
}

impl BatchWriter {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            sqlite: None,
            pg: None,
            mysql: None,
        }
    }

    /// Opens the PostgreSQL connection ahead of the first batch, which
    /// otherwise waited for it: 100+ ms over TLS, whose handshake runs
    /// before TCP_NODELAY can be set (`store/sockets.rs`). On failure the
    /// first batch tries again. SQLite's connection opens in microseconds.
    pub async fn warm_up(&mut self) {
        let opened = match self.store.backend() {
            DbBackend::Postgres if self.pg.is_none() => {
                Box::pin(connect_pg(&self.store)).await.map(|conn| self.pg = Some(conn))
            }
            DbBackend::MySql if self.mysql.is_none() => Box::pin(connect_mysql(&self.store))
                .await
                .map(|conn| self.mysql = Some(conn)),
            _ => Ok(()),
        };
        if let Err(e) = opened {
            tracing::debug!(error = %e, "the intake batch connection opens with the first batch");
        }
    }

    /// Closes the writer's connection, if open (dropping a PostgreSQL one
    /// would leave the server to notice a vanished client).
    pub async fn close(self) {
        if let Some(conn) = self.pg
            && let Err(e) = conn.close().await
        {
            tracing::debug!(error = %e, "closing the intake batch connection");
        }
        if let Some(conn) = self.mysql
            && let Err(e) = conn.close().await
        {
            tracing::debug!(error = %e, "closing the intake batch connection");
        }
    }

    /// Starts a batch. On SQLite it holds the store's writer slot until it
    /// ends, so nothing writes between its read and its write.
    pub async fn start(&mut self) -> Result<Batch<'_>, DbErr> {
        let Self {
            store,
            sqlite,
            pg,
            mysql,
        } = self;
        let conn = match (store.backend(), store.sqlite_file()) {
            (DbBackend::Sqlite, Some(file)) => {
                let slot = store.writer_slot().await;
                if sqlite.is_none() {
                    *sqlite = Some(sqlite::open(&file)?);
                }
                Conn::Sqlite {
                    conn: sqlite,
                    _slot: slot,
                    committed: store.committed.clone(),
                }
            }
            (DbBackend::Postgres, _) => {
                if pg.is_none() {
                    *pg = Some(Box::pin(connect_pg(store)).await?);
                }
                Conn::Postgres(pg)
            }
            (DbBackend::MySql, _) => {
                let own = match mysql {
                    Some(own) => own,
                    None => mysql.insert(Box::pin(connect_mysql(store)).await?),
                };
                Conn::Orm(WriteTxn {
                    txn: Box::pin(own.begin()).await?,
                    _writer: None,
                    committed: None,
                })
            }
            // SQLite in memory (no file for a second driver).
            // SeaORM's futures are kilobytes: boxed, here and below, so that
            // the SQLite and PostgreSQL batches do not carry them.
            _ => Conn::Orm(Box::pin(store.begin_write()).await?),
        };
        Ok(Batch { conn })
    }
}

/// A connection of the writer's own, with the pool's settings, opened on
/// the writer's runtime so that its socket's readiness wakes the writer
/// there, not behind the gRPC tasks of the server's runtime. Bounded by
/// the pool's acquire timeout, as a connection from the pool would be.
async fn connect_pg(store: &Store) -> Result<PgConnection, DbErr> {
    let pool = store.conn().get_postgres_connection_pool();
    let options = pool.connect_options();
    let limit = pool.options().get_acquire_timeout();
    let mut conn = tokio::time::timeout(limit, PgConnection::connect_with(&options))
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)
        .and_then(|connected| connected)
        .map_err(|e| DbErr::Conn(RuntimeErr::SqlxError(e.into())))?;
    if options.get_socket().is_none() {
        super::sockets::apply(options.get_port(), store.dead_peer());
    }
    session_settings(&mut conn, options.get_options().unwrap_or_default()).await;
    Ok(conn)
}

/// The writer's session settings on PostgreSQL, each unless the URL's
/// `options` set it (an operator's choice stands). One round trip; if it
/// fails (a pooler that refuses them), intake is only slower or, under a
/// long-held lock, waits with everything queued behind it.
///
/// - `plan_cache_mode = force_generic_plan`: the batch statements' plans do
///   not depend on their values (one index probe per key), yet PostgreSQL
///   kept planning them afresh, its custom plans for the first, small
///   batches looking cheaper than a generic one; a batch of one ticket
///   spent about half of the database's CPU on it.
/// - `lock_timeout`: one batch carries every queued ticket, so a batch
///   waiting on a customer row that another transaction holds (an open
///   all-or-nothing import updated it) held up every ticket
///   behind it for as long as that transaction stayed open. After
///   [`LOCK_TIMEOUT`] the batch gives up, its tickets take the
///   single-ticket path (where only the locked customer's ticket waits)
///   and the writer moves on.
async fn session_settings(conn: &mut PgConnection, url_options: &str) {
    let settings = [
        ("plan_cache_mode", "force_generic_plan".to_owned()),
        ("lock_timeout", format!("{}ms", LOCK_TIMEOUT.as_millis())),
    ];
    let sql: String = settings
        .iter()
        .filter(|(name, _)| !url_options.contains(name))
        .map(|(name, value)| format!("SET {name} = '{value}';"))
        .collect();
    if !sql.is_empty()
        // Values of our own, not callers'.
        && let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut *conn).await
    {
        tracing::debug!(error = %e, "intake batches keep PostgreSQL's own plans and lock waits");
    }
}

/// How long a batch waits for a row lock (see [`session_settings`]). Long
/// enough for the short transactions that take customer rows (a single
/// ticket, an update, an import batch of 1,000 rows).
const LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// MySQL's: a pool of one connection with the store pool's settings,
/// opened on the writer's runtime (see [`connect_pg`]). Its sessions wait
/// at most [`LOCK_TIMEOUT`] for a row lock, not InnoDB's default 50 s, for
/// the reason PostgreSQL's do (see [`session_settings`]).
async fn connect_mysql(store: &Store) -> Result<DatabaseConnection, DbErr> {
    let pool = store.conn().get_mysql_connection_pool();
    let connect = (*pool.connect_options()).clone();
    let tcp = connect.get_socket().is_none().then_some(connect.get_port());
    let dead_peer = store.dead_peer();
    let own = pool
        .options()
        .clone()
        .max_connections(1)
        .min_connections(1)
        // Replaces the pool's hook, which sets the socket options only.
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if let Some(port) = tcp {
                    super::sockets::apply(port, dead_peer);
                }
                let sql = format!(
                    "SET SESSION innodb_lock_wait_timeout = {}",
                    LOCK_TIMEOUT.as_secs().max(1)
                );
                if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(conn).await {
                    tracing::debug!(error = %e, "intake batches keep the server's lock wait timeout");
                }
                Ok(())
            })
        })
        .connect_with(connect)
        .await
        .map_err(|e| DbErr::Conn(RuntimeErr::SqlxError(e.into())))?;
    Ok(SqlxMySqlConnector::from_sqlx_mysql_pool(own))
}

fn exec_err(e: sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(e.into()))
}

/// One batch: [`Batch::read`], then [`Batch::finish`], which stores all of
/// its rows or none. Two statements on SQLite and PostgreSQL: the read runs
/// outside a transaction (on PostgreSQL, READ COMMITTED, a transaction would
/// see no more), the write is atomic on its own, and whatever changed in
/// between fails it on a unique index (then the batch's tickets take the
/// single-ticket path).
pub struct Batch<'w> {
    conn: Conn<'w>,
}

enum Conn<'w> {
    Sqlite {
        conn: &'w mut Option<rusqlite::Connection>,
        _slot: Option<super::writer_slot::Held>,
        committed: Option<Committed>,
    },
    Postgres(&'w mut Option<PgConnection>),
    Orm(WriteTxn),
}

impl Batch<'_> {
    /// What the database holds for `ticket_ids` and `keys`.
    pub async fn read(&mut self, ticket_ids: &[String], keys: &Keys) -> Result<Snapshot, DbErr> {
        match &mut self.conn {
            Conn::Sqlite { conn, .. } => {
                let result = sqlite::read(opened(conn)?, ticket_ids, keys);
                discard_on_err(conn, result)
            }
            Conn::Postgres(conn) => {
                let result = postgres::read(opened(conn)?, ticket_ids, keys).await;
                discard_unless_statement_error(conn, result)
            }
            Conn::Orm(txn) => Box::pin(portable::snapshot(&**txn, ticket_ids, keys)).await,
        }
    }

    /// Stores `rows` atomically; a unique violation stores none of them.
    pub async fn finish(self, rows: NewRows<'_>) -> Result<(), DbErr> {
        debug_assert!(rows.customers.iter().all(|(c, _)| q::is_fresh(c)));
        let empty = rows.customers.is_empty() && rows.links.is_empty() && rows.history.is_empty();
        match self.conn {
            Conn::Orm(txn) => {
                if !empty {
                    Box::pin(portable_write(&txn, rows)).await?;
                }
                Box::pin(txn.commit()).await
            }
            _ if empty => Ok(()),
            Conn::Sqlite { conn, _slot, committed } => {
                let result = sqlite::write(opened(conn)?, rows);
                if result.is_ok()
                    && let Some(committed) = committed
                {
                    committed.notify();
                }
                discard_on_err(conn, result)
            }
            Conn::Postgres(conn) => {
                let result = postgres::write(opened(conn)?, rows).await;
                discard_unless_statement_error(conn, result)
            }
        }
    }
}

fn opened<C>(conn: &mut Option<C>) -> Result<&mut C, DbErr> {
    conn.as_mut()
        .ok_or_else(|| DbErr::Custom("the intake batch connection was discarded".into()))
}

/// A connection that failed is dropped (closing it ends whatever it had
/// open); the next batch takes a fresh one.
fn discard_on_err<C, T>(conn: &mut Option<C>, result: Result<T, DbErr>) -> Result<T, DbErr> {
    if result.is_err() {
        *conn = None;
    }
    result
}

/// A PostgreSQL statement that failed on its own leaves its connection as
/// it was (both statements run outside a transaction): a unique violation
/// after a race with another writer, or a lock wait given up. Reconnecting
/// after those cost the next batch a connection set-up (~100 ms over TLS).
/// Any other failure may have broken the connection.
fn discard_unless_statement_error<T>(conn: &mut Option<PgConnection>, result: Result<T, DbErr>) -> Result<T, DbErr> {
    let on_its_own = |e: &DbErr| {
        let (DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e))) = e else {
            return false;
        };
        e.as_database_error()
            .and_then(|d| d.code())
            .is_some_and(|code| code.starts_with("23") || code == "55P03")
    };
    match result {
        Err(e) if on_its_own(&e) => Err(e),
        result => discard_on_err(conn, result),
    }
}

async fn portable_write(txn: &WriteTxn, rows: NewRows<'_>) -> Result<(), DbErr> {
    q::insert_many(&**txn, rows.customers).await?;
    portable::insert_links(&**txn, rows.links).await?;
    history::insert_many(&**txn, rows.history).await
}

/// PostgreSQL's read: four JSON arrays (NULL when empty).
struct Arrays {
    links: Option<String>,
    owners: Option<String>,
    deleted: Option<String>,
    customers: Option<String>,
}

impl Arrays {
    /// The read's row: columns `links`, `owners`, `deleted`, `customers`.
    fn from_row(row: &PgRow) -> Result<Self, DbErr> {
        let column = |name: &str| row.try_get::<Option<String>, _>(name).map_err(exec_err);
        Ok(Self {
            links: column("links")?,
            owners: column("owners")?,
            deleted: column("deleted")?,
            customers: column("customers")?,
        })
    }

    fn decode(self) -> Result<Snapshot, DbErr> {
        let links: Vec<LinkRow> = parse(self.links)?;
        let owners: Vec<(String, String, String)> = parse(self.owners)?;
        let deleted: Vec<(String, String)> = parse(self.deleted)?;
        let customers: Vec<CustomerRow> = parse(self.customers)?;
        Ok(Snapshot {
            links: links
                .into_iter()
                .map(|l| l.into_model().map(|m| (m.ticket_id.clone(), m)))
                .collect::<Result<_, DbErr>>()?,
            owners: owners
                .into_iter()
                .map(|(kind, key, id)| ((IdentityKind::parse(&kind), key), id))
                .collect(),
            deleted: deleted
                .into_iter()
                .map(|(kind, key)| (IdentityKind::parse(&kind), key))
                .collect(),
            customers: customers
                .into_iter()
                .map(|c| q::to_domain(c.into_model()?))
                .collect::<Result<_, DbErr>>()?,
        })
    }
}

fn parse<T: for<'de> Deserialize<'de>>(json: Option<String>) -> Result<Vec<T>, DbErr> {
    match json {
        None => Ok(Vec::new()),
        Some(json) => serde_json::from_str(&json).map_err(|e| DbErr::Custom(format!("intake snapshot: {e}"))),
    }
}

/// Timestamps as sqlx stores them in SQLite and PostgreSQL's JSON shows them.
fn time(s: &str) -> Result<DateTime<Utc>, DbErr> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| DbErr::Custom(format!("intake snapshot: bad time {s:?}: {e}")))
}

fn time_opt(s: Option<String>) -> Result<Option<DateTime<Utc>>, DbErr> {
    s.as_deref().map(time).transpose()
}

/// A timestamp as sqlx writes one to SQLite, so that both paths store the
/// same text.
fn stored_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

/// `[ticket_id, customer_id, created, matched_by, conflicting, restored,
/// create_time]`; flags as 0/1 on both backends. A JSON array on
/// PostgreSQL, a row on SQLite.
#[derive(Deserialize)]
struct LinkRow((String, String, i64, String, Option<String>, i64, String));

impl LinkRow {
    fn into_model(self) -> Result<ticket_link::Model, DbErr> {
        let (ticket_id, customer_id, created, matched_by, conflicting, restored, create_time) = self.0;
        Ok(ticket_link::Model {
            create_time: time(&create_time)?,
            ticket_id,
            customer_id,
            created: created != 0,
            matched_by,
            conflicting_customer_id: conflicting,
            restored: restored != 0,
        })
    }
}

/// The columns of `customers`, in table order; flags as 0/1.
#[derive(Deserialize)]
struct CustomerRow(CustomerColumns);

type CustomerColumns = (
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    i64,
    String,
    i64,
    String,
    String,
    Option<String>,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
);

impl CustomerRow {
    fn into_model(self) -> Result<customer::Model, DbErr> {
        let (id, name, email, mobile, attributes, state, hub, source, revision, ct, ut, dt, count, ft, lt, merged) =
            self.0;
        Ok(customer::Model {
            id,
            name,
            email,
            mobile,
            attributes,
            state,
            hub_access_enabled: hub != 0,
            source,
            revision,
            create_time: time(&ct)?,
            update_time: time(&ut)?,
            delete_time: time_opt(dt)?,
            ticket_count: count,
            first_ticket_time: time_opt(ft)?,
            last_ticket_time: time_opt(lt)?,
            merged_into_id: merged,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        domain::{
            customer::{CustomerInput, Source},
            mobile::Region,
        },
        store::PoolSettings,
    };

    fn draft(name: &str, email: &str) -> CustomerDraft {
        let input = CustomerInput {
            name: name.into(),
            email: email.into(),
            ..Default::default()
        };
        input.into_draft("", Region::default(), true).unwrap()
    }

    fn link(ticket_id: &str, customer_id: &str, now: DateTime<Utc>) -> ticket_link::Model {
        ticket_link::Model {
            ticket_id: ticket_id.into(),
            customer_id: customer_id.into(),
            created: true,
            matched_by: "NONE".into(),
            conflicting_customer_id: None,
            restored: false,
            create_time: now,
        }
    }

    /// A second process on the same SQLite file creates the person between
    /// a batch's read and its write: the write fails whole, and the writer's
    /// next batch runs on a fresh connection.
    #[tokio::test]
    async fn a_write_that_lost_a_race_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("race.db").display());
        let store = Store::connect(&url, &PoolSettings::default()).await.unwrap();
        store.migrate().await.unwrap();
        let other = Store::connect(&url, &PoolSettings::default()).await.unwrap();
        let keys = Keys {
            emails: vec!["ada@example.com".into()],
            mobiles: Vec::new(),
        };
        let now = crate::domain::now();
        let mut writer = BatchWriter::new(store.clone());

        let mut batch = writer.start().await.unwrap();
        let before = batch.read(&["T-1".into()], &keys).await.unwrap();
        assert!(before.owners.is_empty(), "nobody holds the email yet");
        let winner = other.begin_write().await.unwrap();
        q::insert(
            &*winner,
            "winner",
            &draft("Ada", "ada@example.com"),
            Source::Manual,
            now,
        )
        .await
        .unwrap();
        winner.commit().await.unwrap();

        let ada = draft("Ada L.", "ada@example.com");
        let mine = Customer::new_active("mine".into(), &ada, Source::Ticket, now);
        let new = [(mine, ada)];
        let links = [link("T-1", "mine", now)];
        let rows = NewRows {
            customers: &new,
            links: &links,
            history: &[],
        };
        assert!(
            batch.finish(rows).await.is_err(),
            "the unique email index fails the write"
        );

        let mut batch = writer.start().await.unwrap();
        let after = batch.read(&["T-1".into()], &keys).await.unwrap();
        assert!(after.links.is_empty(), "no link stored");
        assert_eq!(after.owners.values().collect::<Vec<_>>(), ["winner"]);
        assert!(
            q::find(store.conn(), "mine").await.unwrap().is_none(),
            "the batch's customer was not stored"
        );
        let winner = q::find(store.conn(), "winner").await.unwrap().unwrap();
        assert_eq!(winner.ticket_count, 0, "no ticket counted");
        batch
            .finish(NewRows {
                customers: &[],
                links: &[link("T-1", "winner", now)],
                history: &[],
            })
            .await
            .unwrap();
        let counted = q::find(store.conn(), "winner").await.unwrap().unwrap();
        assert_eq!(counted.ticket_count, 1);
    }

    /// The batch writer's own connection is set up as the pool's are.
    #[tokio::test]
    async fn the_writers_connection_has_the_pools_settings() {
        use sea_orm::{ConnectionTrait, Statement};
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("settings.db").display());
        let store = Store::connect(&url, &PoolSettings::default()).await.unwrap();
        let own = sqlite::open(&store.sqlite_file().unwrap()).unwrap();
        let pragmas = [
            "synchronous",
            "foreign_keys",
            "mmap_size",
            "temp_store",
            "wal_autocheckpoint",
            "busy_timeout",
        ];
        for pragma in pragmas {
            let stmt = Statement::from_string(DbBackend::Sqlite, format!("PRAGMA {pragma}"));
            let row = store.conn().query_one_raw(stmt).await.unwrap().unwrap();
            let pooled: i64 = row.try_get_by_index(0).unwrap();
            let mine: i64 = own.pragma_query_value(None, pragma, |r| r.get(0)).unwrap();
            assert_eq!(mine, pooled, "PRAGMA {pragma}");
        }
        let mode: String = own.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
    }

    /// On TEST_DATABASE_URL's PostgreSQL (`.ci/run` runs it there).
    #[tokio::test]
    async fn the_writers_postgres_session_settings_yield_to_the_urls() {
        let Some(url) = crate::store::test_database_url("postgres") else {
            return;
        };
        let separator = if url.contains('?') { '&' } else { '?' };
        let custom = format!("{url}{separator}options=-c%20plan_cache_mode%3Dforce_custom_plan");
        let both = format!("{custom}%20-c%20lock_timeout%3D5s");
        for (url, plans, locks) in [
            (url, "force_generic_plan", "1s"),
            (custom, "force_custom_plan", "1s"),
            (both, "force_custom_plan", "5s"),
        ] {
            let store = Store::connect(&url, &PoolSettings::default()).await.unwrap();
            let mut conn = connect_pg(&store).await.unwrap();
            let (mode, lock_timeout): (String, String) =
                sqlx::query_as("SELECT current_setting('plan_cache_mode'), current_setting('lock_timeout')")
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
            assert_eq!((mode.as_str(), lock_timeout.as_str()), (plans, locks), "{url}");
            conn.close().await.unwrap();
            store.close().await.unwrap();
        }
    }

    /// On TEST_DATABASE_URL's MySQL (`.ci/run` runs it there).
    #[tokio::test]
    async fn the_writers_mysql_sessions_wait_a_second_for_a_lock() {
        let Some(url) = crate::store::test_database_url("mysql") else {
            return;
        };
        let store = Store::connect(&url, &PoolSettings::default()).await.unwrap();
        let own = connect_mysql(&store).await.unwrap();
        use sea_orm::{ConnectionTrait, Statement};
        let row = own
            .query_one_raw(Statement::from_string(
                DbBackend::MySql,
                "SELECT CAST(@@SESSION.innodb_lock_wait_timeout AS SIGNED)",
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.try_get_by_index::<i64>(0).unwrap(), 1);
        own.close().await.unwrap();
        store.close().await.unwrap();
    }

    /// On TEST_DATABASE_URL's PostgreSQL.
    #[tokio::test]
    async fn the_writer_keeps_its_postgres_connection_only_after_a_statement_error_of_its_own() {
        let Some(url) = crate::store::test_database_url("postgres") else {
            return;
        };
        let store = Store::connect(&url, &PoolSettings::default()).await.unwrap();
        let mut conn = Some(connect_pg(&store).await.unwrap());
        let run = async |conn: &mut Option<PgConnection>, sql: &'static str| {
            let result = sqlx::raw_sql(sql)
                .execute(conn.as_mut().unwrap())
                .await
                .map(|_| ())
                .map_err(exec_err);
            discard_unless_statement_error(conn, result)
        };
        run(
            &mut conn,
            "CREATE TEMP TABLE once (id int PRIMARY KEY); INSERT INTO once VALUES (1)",
        )
        .await
        .unwrap();
        let err = run(&mut conn, "INSERT INTO once VALUES (1)").await.unwrap_err();
        assert!(conn.is_some(), "kept after {err}");
        // A lock another session holds, waited for past `lock_timeout`.
        let mut holder = connect_pg(&store).await.unwrap();
        sqlx::raw_sql("SELECT pg_advisory_lock(7325010422)")
            .execute(&mut holder)
            .await
            .unwrap();
        let err = run(&mut conn, "SELECT pg_advisory_lock(7325010422)").await.unwrap_err();
        assert!(conn.is_some(), "kept after {err}");
        holder.close().await.unwrap();
        let err = run(&mut conn, "SELECT 1 / 0").await.unwrap_err();
        assert!(conn.is_none(), "discarded after {err}");
        store.close().await.unwrap();
    }

    #[test]
    fn decodes_both_backends_arrays() {
        let customer = |created: &str| {
            format!(
                r#"[["c1","Ada","ada@example.com",null,"{{\"role\":\"cto\"}}","ACTIVE",1,"TICKET",3,"{created}","{created}",null,2,"{created}","{created}","c0"]]"#
            )
        };
        // SQLite stores sqlx's text; PostgreSQL's JSON writes the session's offset.
        for created in ["2026-11-26T07:18:02.955255+00:00", "2026-11-26T08:18:02.955255+01:00"] {
            let snapshot = Arrays {
                links: Some(format!(r#"[["T-1","c1",0,"EMAIL",null,1,"{created}"]]"#)),
                owners: Some(r#"[["email","ada@example.com","c1"],["mobile","+447911123456","c1"]]"#.into()),
                deleted: Some(r#"[["mobile","+447911000000"]]"#.into()),
                customers: Some(customer(created)),
            }
            .decode()
            .unwrap();
            let at: DateTime<Utc> = "2026-11-26T07:18:02.955255Z".parse().unwrap();
            let link = &snapshot.links["T-1"];
            assert!(!link.created && link.restored);
            assert_eq!(link.create_time, at);
            assert_eq!(snapshot.owners[&(IdentityKind::Mobile, "+447911123456".into())], "c1");
            assert!(
                snapshot
                    .deleted
                    .contains(&(IdentityKind::Mobile, "+447911000000".into()))
            );
            let c = &snapshot.customers[0];
            assert!(c.hub_access_enabled);
            assert_eq!((c.ticket_count, c.revision, c.create_time), (2, 3, at));
            assert_eq!(c.attributes.get("role").map(String::as_str), Some("cto"));
            assert_eq!(c.merged_into.as_deref(), Some("c0"));
        }
    }

    #[test]
    fn empty_arrays_are_empty_snapshots() {
        let none = Arrays {
            links: None,
            owners: Some("[]".into()),
            deleted: None,
            customers: Some("[]".into()),
        };
        let snapshot = none.decode().unwrap();
        assert!(snapshot.links.is_empty() && snapshot.owners.is_empty());
        assert!(snapshot.deleted.is_empty() && snapshot.customers.is_empty());
    }

    #[test]
    fn a_bad_time_is_an_error_not_a_default() {
        let bad = Arrays {
            links: Some(r#"[["T-1","c1",0,"EMAIL",null,0,"yesterday"]]"#.into()),
            owners: None,
            deleted: None,
            customers: None,
        };
        assert!(bad.decode().is_err());
    }
}
