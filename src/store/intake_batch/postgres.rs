//! The batch statements on PostgreSQL: one array parameter per column in,
//! JSON out (`json_agg`), one round trip each way.

use chrono::{DateTime, Utc};
use sea_orm::{
    DbErr,
    sqlx::{self, PgConnection},
};

use super::{Arrays, NewRows, Snapshot, exec_err};
use crate::{
    domain::customer::Customer,
    store::{
        customers as q, history,
        intake::{Keys, TicketCount},
    },
};

/// `$1` ticket ids, `$2` emails, `$3` mobiles. Each key is one index probe
/// (LATERAL … OFFSET 0, see [`crate::store::pg::rows_by_keys`]); flags
/// leave as 0/1 like SQLite's.
const READ: &str = "\
WITH l AS MATERIALIZED (SELECT t.* FROM (SELECT DISTINCT UNNEST($1::text[])) AS k(id) \
  CROSS JOIN LATERAL (SELECT * FROM ticket_links WHERE ticket_id = k.id OFFSET 0) AS t), \
k AS MATERIALIZED (SELECT DISTINCT 'email' AS kind, key FROM UNNEST($2::text[]) AS e(key) \
  UNION ALL SELECT DISTINCT 'mobile', key FROM UNNEST($3::text[]) AS m(key)), \
o AS MATERIALIZED (SELECT k.kind, k.key, i.customer_id FROM k CROSS JOIN LATERAL \
  (SELECT customer_id FROM customer_identities WHERE kind = k.kind AND live_key = k.key LIMIT 1 OFFSET 0) AS i), \
d AS (SELECT k.kind, k.key FROM k WHERE NOT EXISTS (SELECT 1 FROM o WHERE o.kind = k.kind AND o.key = k.key) \
  AND EXISTS (SELECT 1 FROM customer_identities WHERE kind = k.kind AND normalized = k.key AND live_key IS NULL)), \
c AS (SELECT c.* FROM (SELECT customer_id FROM o UNION SELECT customer_id FROM l) AS w \
  CROSS JOIN LATERAL (SELECT * FROM customers WHERE id = w.customer_id OFFSET 0) AS c) \
SELECT \
(SELECT json_agg(json_build_array(ticket_id, customer_id, created::int, matched_by, conflicting_customer_id, \
  restored::int, create_time)) FROM l)::text AS links, \
(SELECT json_agg(json_build_array(kind, key, customer_id)) FROM o)::text AS owners, \
(SELECT json_agg(json_build_array(kind, key)) FROM d)::text AS deleted, \
(SELECT json_agg(json_build_array(id, name, email, mobile, attributes, state, hub_access_enabled::int, source, \
  revision, create_time, update_time, delete_time, ticket_count, first_ticket_time, last_ticket_time, \
  merged_into_id)) FROM c)::text \
  AS customers";

pub(super) async fn read(conn: &mut PgConnection, ticket_ids: &[String], keys: &Keys) -> Result<Snapshot, DbErr> {
    let row = sqlx::query(READ)
        .bind(ticket_ids)
        .bind(&keys.emails)
        .bind(&keys.mobiles)
        .fetch_one(conn)
        .await
        .map_err(exec_err)?;
    Arrays::from_row(&row)?.decode()
}

/// The four inserts and the counter updates as one statement
/// (data-modifying WITH). Its parts all see the database as it was before
/// it, so new customers are inserted with their tickets counted and only
/// the others are updated. The identities' foreign key runs at the end of
/// the statement and sees its customers.
const WRITE: &str = "\
WITH c AS (INSERT INTO customers (id, name, email, mobile, attributes, state, hub_access_enabled, source, \
  revision, create_time, update_time, ticket_count, first_ticket_time, last_ticket_time) \
  SELECT id, name, NULLIF(email, ''), NULLIF(mobile, ''), attributes, state, hub, source, revision, ct, ut, \
  tc, ft, lt \
  FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::boolean[], \
  $8::text[], $9::bigint[], $10::timestamptz[], $11::timestamptz[], $32::bigint[], $33::timestamptz[], \
  $34::timestamptz[]) \
  AS u(id, name, email, mobile, attributes, state, hub, source, revision, ct, ut, tc, ft, lt)), \
counted AS (UPDATE customers AS cu SET ticket_count = cu.ticket_count + u.n, \
  first_ticket_time = COALESCE(cu.first_ticket_time, u.f), last_ticket_time = u.l \
  FROM UNNEST($35::text[], $36::bigint[], $37::timestamptz[], $38::timestamptz[]) AS u(id, n, f, l) \
  WHERE cu.id = u.id), \
i AS (INSERT INTO customer_identities (customer_id, kind, normalized, original, is_primary, live_key) \
  SELECT c, k, n, o, true, n FROM UNNEST($12::text[], $13::text[], $14::text[], $15::text[]) AS u(c, k, n, o)), \
h AS (INSERT INTO history_entries (resource, id, action, principal, create_time, import_id, ticket_id, \
  organization_id, changes) \
  SELECT r, i, a, p, t, NULLIF(im, ''), NULLIF(tk, ''), NULLIF(o, ''), ch \
  FROM UNNEST($16::text[], $17::text[], $18::text[], $19::text[], $20::timestamptz[], $21::text[], $22::text[], \
  $23::text[], $24::text[]) AS u(r, i, a, p, t, im, tk, o, ch)) \
INSERT INTO ticket_links (ticket_id, customer_id, created, matched_by, conflicting_customer_id, restored, \
  create_time) \
SELECT t, c, cr, m, NULLIF(x, ''), rs, ct \
FROM UNNEST($25::text[], $26::text[], $27::boolean[], $28::text[], $29::text[], $30::boolean[], \
  $31::timestamptz[]) AS u(t, c, cr, m, x, rs, ct)";

pub(super) async fn write(conn: &mut PgConnection, rows: NewRows<'_>) -> Result<(), DbErr> {
    fn column<T, U>(items: &[T], f: impl Fn(&T) -> U) -> Vec<U> {
        items.iter().map(f).collect()
    }
    let customers: Vec<_> = rows.customers.iter().map(|(c, _)| c).collect();
    let identities: Vec<_> = rows
        .customers
        .iter()
        .flat_map(|(c, d)| q::identity_keys(&c.id, d))
        .collect();
    let history: Vec<_> = rows.history.iter().map(|e| (e, history::columns(e))).collect();
    let links = rows.links;
    let (of_new, of_existing): (Vec<_>, Vec<_>) = TicketCount::of(links)
        .into_iter()
        .partition(|t| customers.iter().any(|c| c.id == t.customer_id));
    let counted = |c: &&Customer| of_new.iter().find(|t| t.customer_id == c.id);
    sqlx::query(WRITE)
        .bind(column(&customers, |c| c.id.clone()))
        .bind(column(&customers, |c| c.name.clone()))
        .bind(column(&customers, |c| c.email.clone().unwrap_or_default()))
        .bind(column(&customers, |c| c.mobile.clone().unwrap_or_default()))
        .bind(column(&customers, |c| q::attributes_json(&c.attributes)))
        .bind(column(&customers, |c| c.state.as_str()))
        .bind(column(&customers, |c| c.hub_access_enabled))
        .bind(column(&customers, |c| c.source.as_str()))
        .bind(column(&customers, |c| c.revision))
        .bind(column(&customers, |c| c.create_time))
        .bind(column(&customers, |c| c.update_time))
        .bind(column(&identities, |i| i.0.clone()))
        .bind(column(&identities, |i| i.1))
        .bind(column(&identities, |i| i.2.clone()))
        .bind(column(&identities, |i| i.3.clone()))
        .bind(column(&history, |(e, _)| e.resource.clone()))
        .bind(column(&history, |(e, _)| e.id.clone()))
        .bind(column(&history, |(e, _)| e.action.as_str()))
        .bind(column(&history, |(e, _)| e.principal.clone()))
        .bind(column(&history, |(e, _)| e.time))
        .bind(column(&history, |(_, c)| c.0.clone().unwrap_or_default()))
        .bind(column(&history, |(_, c)| c.1.clone().unwrap_or_default()))
        .bind(column(&history, |(e, _)| e.organization_id.clone().unwrap_or_default()))
        .bind(column(&history, |(_, c)| c.2.clone()))
        .bind(column(links, |l| l.ticket_id.clone()))
        .bind(column(links, |l| l.customer_id.clone()))
        .bind(column(links, |l| l.created))
        .bind(column(links, |l| l.matched_by.clone()))
        .bind(column(links, |l| l.conflicting_customer_id.clone().unwrap_or_default()))
        .bind(column(links, |l| l.restored))
        .bind(column::<_, DateTime<Utc>>(links, |l| l.create_time))
        .bind(column(&customers, |c| counted(c).map_or(0, |t| t.tickets)))
        .bind(column(&customers, |c| counted(c).map(|t| t.first)))
        .bind(column(&customers, |c| counted(c).map(|t| t.last)))
        .bind(column(&of_existing, |t| t.customer_id))
        .bind(column(&of_existing, |t| t.tickets))
        .bind(column(&of_existing, |t| t.first))
        .bind(column(&of_existing, |t| t.last))
        .execute(conn)
        .await
        .map_err(exec_err)?;
    Ok(())
}
