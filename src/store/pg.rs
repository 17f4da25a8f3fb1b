//! PostgreSQL fast paths for bulk statements (import and intake batches):
//! one array parameter per column (`= ANY($1)`, `UNNEST`) instead of
//! thousands of placeholders, so every batch size shares one statement text,
//! one prepared statement and one plan.

use sea_orm::{ConnectionTrait, DbBackend, DbErr, QueryResult, Statement, Value};

/// Whether `db` is PostgreSQL.
pub fn is_pg(db: &impl ConnectionTrait) -> bool {
    db.get_database_backend() == DbBackend::Postgres
}

/// A `text[]` parameter.
pub fn texts<S: Into<String>>(items: impl IntoIterator<Item = S>) -> Value {
    Value::from(items.into_iter().map(Into::into).collect::<Vec<String>>())
}

/// A `boolean[]` parameter.
pub fn bools(items: impl IntoIterator<Item = bool>) -> Value {
    Value::from(items.into_iter().collect::<Vec<bool>>())
}

/// `SELECT *` of `table`'s rows whose `column` is one of `keys`, as one
/// index probe per distinct key. An `IN` list or `= ANY($1)` is planned by
/// the table's statistics; a plan made while the table was small (a fresh
/// database, statistics not yet gathered) scans the whole table, and the
/// connection keeps that plan while the table grows: tens of milliseconds
/// per intake batch once `ticket_links` held a few thousand rows.
pub fn rows_by_keys(table: &str, column: &str, keys: impl IntoIterator<Item = String>) -> Statement {
    Statement::from_sql_and_values(
        DbBackend::Postgres,
        format!(
            "SELECT t.* FROM (SELECT DISTINCT UNNEST($1::text[])) AS k(key) \
             CROSS JOIN LATERAL (SELECT * FROM {table} WHERE {column} = k.key OFFSET 0) AS t"
        ),
        [texts(keys)],
    )
}

/// Runs a query with positional `$n` parameters.
pub async fn query(db: &impl ConnectionTrait, sql: &str, values: Vec<Value>) -> Result<Vec<QueryResult>, DbErr> {
    db.query_all_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, values))
        .await
}

/// Runs a statement with positional `$n` parameters.
pub async fn execute(db: &impl ConnectionTrait, sql: &str, values: Vec<Value>) -> Result<(), DbErr> {
    db.execute_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, values))
        .await
        .map(|_| ())
}
