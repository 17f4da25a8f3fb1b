//! The batch on SQLite, run by the batch writer on a connection of its own
//! (rusqlite over the SQLite library sqlx links) and on its own thread: each
//! statement is a plain function call, with no hand-off to sqlx's connection
//! thread and back, and rows are read and bound directly, not as JSON.

use std::path::Path;

use rusqlite::{CachedStatement, Connection, OptionalExtension, Params, Row, TransactionBehavior, params};
use sea_orm::{DbErr, RuntimeErr};

use super::{CustomerRow, LinkRow, NewRows, Snapshot, stored_time};
use crate::store::{
    customers as q, history,
    intake::{Keys, TicketCount},
    open_sqlite,
};

/// Opens the writer's connection on the store's file.
pub(super) fn open(path: &Path) -> Result<Connection, DbErr> {
    open_sqlite(path).map_err(err)
}

/// Columns in [`LinkRow`]'s order.
const LINK: &str = "SELECT ticket_id, customer_id, created, matched_by, conflicting_customer_id, restored, \
  create_time FROM ticket_links WHERE ticket_id = ?1";
const OWNER: &str = "SELECT customer_id FROM customer_identities WHERE kind = ?1 AND live_key = ?2";
/// `+live_key` keeps the planner on the (kind, normalized) index instead of
/// scanning every deleted identity of a kind.
const DELETED: &str =
    "SELECT 1 FROM customer_identities WHERE kind = ?1 AND normalized = ?2 AND +live_key IS NULL LIMIT 1";
/// Columns in [`CustomerRow`]'s order.
const CUSTOMER: &str = "SELECT id, name, email, mobile, attributes, state, hub_access_enabled, source, revision, \
  create_time, update_time, delete_time, ticket_count, first_ticket_time, last_ticket_time, merged_into_id \
  FROM customers WHERE id = ?1";

/// One read transaction: a consistent snapshot of what the batch needs.
pub(super) fn read(conn: &mut Connection, ticket_ids: &[String], keys: &Keys) -> Result<Snapshot, DbErr> {
    let txn = conn.transaction().map_err(err)?;
    let mut snapshot = Snapshot::default();
    {
        let mut link = txn.prepare_cached(LINK).map_err(err)?;
        for id in ticket_ids {
            if let Some(found) = one(&mut link, [id], |r| r.try_into().map(LinkRow))? {
                snapshot.links.insert(id.clone(), found.into_model()?);
            }
        }
        let mut owner = txn.prepare_cached(OWNER).map_err(err)?;
        let mut deleted = txn.prepare_cached(DELETED).map_err(err)?;
        for (kind, key) in keys.pairs() {
            match one(&mut owner, params![kind.as_str(), key], |r| r.get::<_, String>(0))? {
                Some(id) => {
                    snapshot.owners.insert((kind, key.clone()), id);
                }
                None if deleted.exists(params![kind.as_str(), key]).map_err(err)? => {
                    snapshot.deleted.insert((kind, key.clone()));
                }
                None => {}
            }
        }
        let mut ids: Vec<&String> = snapshot.owners.values().collect();
        ids.extend(snapshot.links.values().map(|l| &l.customer_id));
        ids.sort_unstable();
        ids.dedup();
        let mut customer = txn.prepare_cached(CUSTOMER).map_err(err)?;
        for id in ids {
            if let Some(found) = one(&mut customer, [id], |r| r.try_into().map(CustomerRow))? {
                snapshot.customers.push(q::to_domain(found.into_model()?)?);
            }
        }
    }
    txn.commit().map_err(err)?;
    Ok(snapshot)
}

/// The row a lookup by key finds, if any.
fn one<T>(
    stmt: &mut CachedStatement<'_>,
    params: impl Params,
    row: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Option<T>, DbErr> {
    stmt.query_row(params, row).optional().map_err(err)
}

const INSERT_CUSTOMER: &str = "INSERT INTO customers (id, name, email, mobile, attributes, state, \
  hub_access_enabled, source, revision, create_time, update_time, ticket_count) \
  VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 0)";
const INSERT_IDENTITY: &str = "INSERT INTO customer_identities (customer_id, kind, normalized, original, \
  is_primary, live_key) VALUES (?1, ?2, ?3, ?4, 1, ?3)";
const INSERT_LINK: &str = "INSERT INTO ticket_links (ticket_id, customer_id, created, matched_by, \
  conflicting_customer_id, restored, create_time) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
const COUNT_TICKETS: &str = "UPDATE customers SET ticket_count = ticket_count + ?2, \
  first_ticket_time = COALESCE(first_ticket_time, ?3), last_ticket_time = ?4 WHERE id = ?1";
const INSERT_HISTORY: &str = "INSERT INTO history_entries (resource, id, action, principal, create_time, \
  import_id, ticket_id, organization_id, changes) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

/// One IMMEDIATE transaction; any failure rolls all of it back.
pub(super) fn write(conn: &mut Connection, rows: NewRows<'_>) -> Result<(), DbErr> {
    let txn = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    {
        let mut insert = txn.prepare_cached(INSERT_CUSTOMER).map_err(err)?;
        for (c, _) in rows.customers {
            insert
                .execute(params![
                    c.id,
                    c.name,
                    c.email,
                    c.mobile,
                    q::attributes_json(&c.attributes),
                    c.state.as_str(),
                    c.hub_access_enabled,
                    c.source.as_str(),
                    c.revision,
                    stored_time(&c.create_time),
                    stored_time(&c.update_time),
                ])
                .map_err(err)?;
        }
        let mut insert = txn.prepare_cached(INSERT_IDENTITY).map_err(err)?;
        for (c, d) in rows.customers {
            for (id, kind, normalised, original) in q::identity_keys(&c.id, d) {
                insert.execute(params![id, kind, normalised, original]).map_err(err)?;
            }
        }
        let mut insert = txn.prepare_cached(INSERT_LINK).map_err(err)?;
        for l in rows.links {
            insert
                .execute(params![
                    l.ticket_id,
                    l.customer_id,
                    l.created,
                    l.matched_by,
                    l.conflicting_customer_id,
                    l.restored,
                    stored_time(&l.create_time),
                ])
                .map_err(err)?;
        }
        let mut count = txn.prepare_cached(COUNT_TICKETS).map_err(err)?;
        for c in TicketCount::of(rows.links) {
            count
                .execute(params![
                    c.customer_id,
                    c.tickets,
                    stored_time(&c.first),
                    stored_time(&c.last)
                ])
                .map_err(err)?;
        }
        let mut insert = txn.prepare_cached(INSERT_HISTORY).map_err(err)?;
        for e in rows.history {
            let (import_id, ticket_id, changes) = history::columns(e);
            insert
                .execute(params![
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
                .map_err(err)?;
        }
    }
    txn.commit().map_err(err)
}

fn err(e: rusqlite::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::Internal(format!("intake batch on SQLite: {e}")))
}
