//! PostgreSQL: private tables for a dry-run import.
//!
//! A dry run writes every batch as a real import would, inside one
//! transaction that it rolls back at the end. On the real tables that
//! transaction kept the row locks of every customer it updated until the
//! run ended, so a ticket or an edit for one of them waited for it. So the
//! dry run's transaction first copies the tables into temporary tables of
//! the same names (PostgreSQL looks in the session's temporary schema
//! first), and the run writes there: it takes no lock another writer waits
//! for. Like SQLite's copy (`snapshot.rs`), it leaves the two logs no
//! import reads (ticket links and history) empty. The temporary tables go
//! with the transaction.

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, Statement};

use super::quoted;

/// Tables an import never reads: shadowed, but left empty.
const NOT_COPIED: [&str; 2] = ["ticket_links", "history_entries"];

/// Shadows the current schema's tables inside `txn`.
pub(super) async fn shadow_tables(txn: &DatabaseTransaction) -> Result<(), DbErr> {
    let start = std::time::Instant::now();
    let rows = txn
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT current_schema() AS s, tablename AS t FROM pg_tables \
             WHERE schemaname = current_schema() AND tablename <> 'seaql_migrations' ORDER BY tablename",
        ))
        .await?;
    let tables = rows
        .iter()
        .map(|row| {
            Ok((
                quoted(&row.try_get::<String>("", "s")?),
                row.try_get::<String>("", "t")?,
            ))
        })
        .collect::<Result<Vec<_>, DbErr>>()?;
    let mut sql = String::new();
    let mut fills = Vec::new();
    for (schema, table) in &tables {
        let name = quoted(table);
        // Foreign keys do not come along; indexes are built once the tables
        // are filled (faster than row by row).
        sql.push_str(&format!(
            "CREATE TEMPORARY TABLE {name} (LIKE {schema}.{name} INCLUDING ALL EXCLUDING INDEXES) ON COMMIT DROP;"
        ));
        if !NOT_COPIED.contains(&table.as_str()) {
            fills.push(format!(
                "f{} AS (INSERT INTO pg_temp.{name} SELECT * FROM {schema}.{name})",
                fills.len()
            ));
        }
    }
    // One statement, so that all the tables are copied from one snapshot
    // (in READ COMMITTED each statement takes its own).
    if !fills.is_empty() {
        sql.push_str(&format!("WITH {} SELECT 1;", fills.join(", ")));
    }
    let indexes = txn
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT replace(pg_get_indexdef(i.indexrelid), ' ON ' || quote_ident(current_schema()) || '.', \
             ' ON pg_temp.') AS d FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid \
             WHERE c.relnamespace = to_regnamespace(current_schema()) AND c.relkind = 'r' \
             AND c.relname <> 'seaql_migrations' ORDER BY c.relname, i.indexrelid",
        ))
        .await?;
    for index in &indexes {
        sql.push_str(&index.try_get::<String>("", "d")?);
        sql.push(';');
    }
    for (_, table) in &tables {
        // Autovacuum never analyzes temporary tables.
        sql.push_str(&format!("ANALYZE pg_temp.{};", quoted(table)));
    }
    // A statement this connection prepared before still names the real
    // table; dropping the plans makes each one look its tables up again.
    sql.push_str("DISCARD PLANS;");
    txn.execute_unprepared(&sql).await?;
    tracing::info!(
        tables = tables.len(),
        elapsed_ms = start.elapsed().as_millis() as u64,
        "dry run: made its own copies of the tables"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use sea_orm::{TransactionTrait, Value};

    use super::*;
    use crate::store::{PoolSettings, Store};

    async fn name(db: &impl ConnectionTrait) -> String {
        let select = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT name FROM customers WHERE id = $1",
            [Value::from("c1")],
        );
        let row = db.query_one_raw(select).await.unwrap().unwrap();
        row.try_get::<String>("", "name").unwrap()
    }

    async fn history(db: &impl ConnectionTrait) -> i64 {
        let count = Statement::from_string(DbBackend::Postgres, "SELECT count(*) AS n FROM history_entries");
        let row = db.query_one_raw(count).await.unwrap().unwrap();
        row.try_get::<i64>("", "n").unwrap()
    }

    /// On TEST_DATABASE_URL's PostgreSQL. A statement the connection
    /// prepared before a dry run reads the copy during it and the real
    /// table after it.
    #[tokio::test]
    async fn a_prepared_statement_follows_the_shadow_and_comes_back() {
        let Some(url) = crate::store::test_database_url("postgres") else {
            return;
        };
        let one = PoolSettings {
            max_connections: 1,
            ..PoolSettings::default()
        };
        let store = Store::connect(&url, &one).await.unwrap();
        let db = store.conn();
        let schema = format!("shadow_{}", uuid::Uuid::now_v7().simple());
        db.execute_unprepared(&format!(
            "CREATE SCHEMA {schema}; SET search_path = {schema}; \
             CREATE TABLE customers (id text PRIMARY KEY, name text NOT NULL); \
             INSERT INTO customers VALUES ('c1', 'real'); \
             CREATE TABLE history_entries (id text PRIMARY KEY); INSERT INTO history_entries VALUES ('h1');"
        ))
        .await
        .unwrap();
        assert_eq!((name(db).await, history(db).await), ("real".to_owned(), 1));

        // A temporary table committed before, so that the session's temporary
        // schema exists (the search path then stays the same).
        db.execute_unprepared("CREATE TEMPORARY TABLE earlier (x int)")
            .await
            .unwrap();
        for _ in 0..2 {
            let txn = db.begin().await.unwrap();
            shadow_tables(&txn).await.unwrap();
            assert_eq!(name(&txn).await, "real", "the copy holds the rows");
            assert_eq!(history(&txn).await, 0, "the history is not copied");
            let indexes = Statement::from_string(
                DbBackend::Postgres,
                "SELECT count(*) AS n FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid \
                 WHERE c.relnamespace = pg_my_temp_schema() AND c.relname = 'customers' AND i.indisunique",
            );
            let row = txn.query_one_raw(indexes).await.unwrap().unwrap();
            assert_eq!(
                row.try_get::<i64>("", "n").unwrap(),
                1,
                "the copy has the primary key's index"
            );
            txn.execute_unprepared("UPDATE customers SET name = 'dry'")
                .await
                .unwrap();
            assert_eq!(name(&txn).await, "dry", "the prepared statement reads the copy");
            let real = format!("SELECT name FROM {schema}.customers");
            let row = txn
                .query_one_raw(Statement::from_string(DbBackend::Postgres, real))
                .await
                .unwrap();
            assert_eq!(
                row.unwrap().try_get::<String>("", "name").unwrap(),
                "real",
                "the real row is untouched"
            );
            txn.rollback().await.unwrap();

            assert_eq!(
                name(db).await,
                "real",
                "after the rollback it reads the real table again"
            );
            assert_eq!(history(db).await, 1);
        }
        db.execute_unprepared(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .unwrap();
        store.close().await.unwrap();
    }
}
