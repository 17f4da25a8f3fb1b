//! The batch statements on SQLite: JSON in (`json_each`), JSON out
//! (`json_group_array`), so one row crosses to sqlx's thread each way.

use sea_orm::{
    DbErr,
    sqlx::{self, SqliteConnection},
};
use serde::Serialize;
use serde_json::json;

use super::{Arrays, NewRows, Snapshot, exec_err, stored_time};
use crate::store::{customers as q, history, intake::Keys};

/// `?1` ticket ids, `?2` `[kind, key]` pairs, both JSON arrays.
/// `+i.live_key` keeps the planner on the (kind, normalized) index for
/// deleted identities instead of scanning every deleted one of a kind.
const READ: &str = "\
WITH t(id) AS (SELECT value FROM json_each(?1)), \
k(kind, key) AS (SELECT value ->> 0, value ->> 1 FROM json_each(?2)), \
l AS MATERIALIZED (SELECT ticket_links.* FROM t CROSS JOIN ticket_links ON ticket_links.ticket_id = t.id), \
o AS MATERIALIZED (SELECT i.kind, i.live_key AS key, i.customer_id FROM k \
  CROSS JOIN customer_identities AS i ON i.kind = k.kind AND i.live_key = k.key), \
d AS (SELECT DISTINCT k.kind, k.key FROM k \
  CROSS JOIN customer_identities AS i ON i.kind = k.kind AND i.normalized = k.key \
  WHERE +i.live_key IS NULL AND NOT EXISTS (SELECT 1 FROM o WHERE o.kind = k.kind AND o.key = k.key)), \
c AS (SELECT customers.* FROM customers WHERE id IN (SELECT customer_id FROM o UNION SELECT customer_id FROM l)) \
SELECT \
(SELECT json_group_array(json_array(ticket_id, customer_id, created, matched_by, conflicting_customer_id, \
  restored, create_time)) FROM l) AS links, \
(SELECT json_group_array(json_array(kind, key, customer_id)) FROM o) AS owners, \
(SELECT json_group_array(json_array(kind, key)) FROM d) AS deleted, \
(SELECT json_group_array(json_array(id, name, email, mobile, attributes, state, hub_access_enabled, source, \
  revision, create_time, update_time, delete_time, ticket_count, first_ticket_time, last_ticket_time)) FROM c) \
  AS customers";

pub(super) async fn read(conn: &mut SqliteConnection, ticket_ids: &[String], keys: &Keys) -> Result<Snapshot, DbErr> {
    let pairs: Vec<(&str, &String)> = keys.pairs().map(|(kind, key)| (kind.as_str(), key)).collect();
    let row = sqlx::query(READ)
        .bind(to_json(&ticket_ids))
        .bind(to_json(&pairs))
        .fetch_one(conn)
        .await
        .map_err(exec_err)?;
    Arrays::from_row(&row)?.decode()
}

/// One transaction in one call: four inserts between `BEGIN IMMEDIATE` and
/// `COMMIT`, all reading one JSON document `?1` (`{"customers": [...],
/// ...}`). One parameter because sqlx binds a later statement's unused lower
/// slots from the argument list and stops at its end: a fourth statement's
/// `?4` was left NULL.
const WRITE: &str = "\
BEGIN IMMEDIATE; \
INSERT INTO customers (id, name, email, mobile, attributes, state, hub_access_enabled, source, revision, \
  create_time, update_time, ticket_count) \
  SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, value ->> 7, \
  value ->> 8, value ->> 9, value ->> 10, 0 FROM json_each(?1, '$.customers'); \
INSERT INTO customer_identities (customer_id, kind, normalized, original, is_primary, live_key) \
  SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, 1, value ->> 2 FROM json_each(?1, '$.identities'); \
INSERT INTO ticket_links (ticket_id, customer_id, created, matched_by, conflicting_customer_id, restored, \
  create_time) \
  SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6 \
  FROM json_each(?1, '$.links'); \
INSERT INTO history_entries (resource, id, action, principal, create_time, import_id, ticket_id, \
  organization_id, changes) \
  SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, value ->> 7, \
  value ->> 8 FROM json_each(?1, '$.history'); \
COMMIT;";

pub(super) async fn write(conn: &mut SqliteConnection, rows: NewRows<'_>) -> Result<(), DbErr> {
    let customers: Vec<_> = rows
        .customers
        .iter()
        .map(|(c, _)| {
            json!([
                c.id,
                c.name,
                c.email,
                c.mobile,
                q::attributes_json(&c.attributes),
                c.state.as_str(),
                i64::from(c.hub_access_enabled),
                c.source.as_str(),
                c.revision,
                stored_time(&c.create_time),
                stored_time(&c.update_time),
            ])
        })
        .collect();
    let identities: Vec<_> = rows
        .customers
        .iter()
        .flat_map(|(c, d)| q::identity_keys(&c.id, d))
        .collect();
    let links: Vec<_> = rows
        .links
        .iter()
        .map(|l| {
            json!([
                l.ticket_id,
                l.customer_id,
                i64::from(l.created),
                l.matched_by,
                l.conflicting_customer_id,
                i64::from(l.restored),
                stored_time(&l.create_time),
            ])
        })
        .collect();
    let history: Vec<_> = rows
        .history
        .iter()
        .map(|e| {
            let (import_id, ticket_id, changes) = history::columns(e);
            json!([
                e.resource,
                e.id,
                e.action.as_str(),
                e.principal,
                stored_time(&e.time),
                import_id,
                ticket_id,
                e.organization_id,
                changes,
            ])
        })
        .collect();
    let document = json!({
        "customers": customers,
        "identities": identities,
        "links": links,
        "history": history,
    });
    let written = sqlx::query(WRITE).bind(document.to_string()).execute(&mut *conn).await;
    if let Err(e) = written {
        // A statement failed before `COMMIT`. Roll back now, so the write
        // lock is free for the single-ticket path that retries these
        // tickets (the caller then drops this connection anyway).
        let _ = sqlx::query("ROLLBACK").execute(conn).await;
        return Err(exec_err(e));
    }
    Ok(())
}

fn to_json(value: &impl Serialize) -> String {
    // Strings and tuples of strings always serialise.
    serde_json::to_string(value).unwrap_or_else(|_| "[]".to_owned())
}
