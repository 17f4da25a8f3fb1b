//! Queries of the audit trail.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Statement, Value};

use super::entities::history_entry;
use crate::domain::history::{Action, Change, Entry, Origin};

/// Stored form of the changes: `[[field, old, new], ...]`.
fn changes_json(changes: &[Change]) -> String {
    let rows: Vec<[&str; 3]> = changes
        .iter()
        .map(|c| [c.field.as_str(), c.old.as_str(), c.new.as_str()])
        .collect();
    serde_json::to_string(&rows).unwrap_or_else(|_| "[]".into())
}

fn origin_columns(origin: &Origin) -> (Option<String>, Option<String>) {
    match origin {
        Origin::Call => (None, None),
        Origin::Import(id) => (Some(id.clone()), None),
        Origin::Ticket(id) => (None, Some(id.clone())),
    }
}

/// An entry's derived columns: import id, ticket id, stored changes.
pub(crate) fn columns(e: &Entry) -> (Option<String>, Option<String>, String) {
    let (import_id, ticket_id) = origin_columns(&e.origin);
    (import_id, ticket_id, changes_json(&e.changes))
}

fn to_domain(m: history_entry::Model) -> Result<Entry, DbErr> {
    let action =
        Action::parse(&m.action).ok_or_else(|| DbErr::Custom(format!("unknown history action {:?}", m.action)))?;
    let rows: Vec<[String; 3]> = serde_json::from_str(&m.changes)
        .map_err(|e| DbErr::Custom(format!("history entry {} has bad changes: {e}", m.id)))?;
    let origin = match (m.import_id, m.ticket_id) {
        (Some(id), _) => Origin::Import(id),
        (None, Some(id)) => Origin::Ticket(id),
        (None, None) => Origin::Call,
    };
    Ok(Entry {
        resource: m.resource,
        id: m.id,
        action,
        principal: m.principal,
        time: m.create_time,
        origin,
        organization_id: m.organization_id,
        changes: rows
            .into_iter()
            .map(|[field, old, new]| Change { field, old, new })
            .collect(),
    })
}

/// Appends entries (many-row statements; arrays on PostgreSQL).
pub async fn insert_many(db: &impl ConnectionTrait, entries: &[Entry]) -> Result<(), DbErr> {
    if entries.is_empty() {
        return Ok(());
    }
    if super::pg::is_pg(db) {
        return insert_many_pg(db, entries).await;
    }
    // Plain multi-row INSERTs: building them through the query builder cost
    // more CPU than SQLite spent storing the rows.
    let backend = db.get_database_backend();
    for chunk in super::pow2_chunks(entries, 128) {
        let mut sql = String::from(
            "INSERT INTO history_entries (resource, id, action, principal, create_time, import_id, ticket_id, \
             organization_id, changes) VALUES ",
        );
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 9);
        for (i, e) in chunk.iter().enumerate() {
            sql.push_str(if i == 0 {
                "(?,?,?,?,?,?,?,?,?)"
            } else {
                ",(?,?,?,?,?,?,?,?,?)"
            });
            let (import_id, ticket_id, changes) = columns(e);
            values.extend([
                e.resource.clone().into(),
                e.id.clone().into(),
                e.action.as_str().into(),
                e.principal.clone().into(),
                e.time.into(),
                import_id.into(),
                ticket_id.into(),
                e.organization_id.clone().into(),
                changes.into(),
            ]);
        }
        db.execute_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
    }
    Ok(())
}

async fn insert_many_pg(db: &impl ConnectionTrait, entries: &[Entry]) -> Result<(), DbErr> {
    use super::pg::{execute, texts};
    let column = |f: &dyn Fn(&Entry) -> String| texts(entries.iter().map(f));
    let derived: Vec<_> = entries.iter().map(columns).collect();
    execute(
        db,
        "INSERT INTO history_entries (resource, id, action, principal, create_time, import_id, ticket_id, \
         organization_id, changes) \
         SELECT r, i, a, p, t, NULLIF(im, ''), NULLIF(tk, ''), NULLIF(o, ''), c \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[], $7::text[], \
         $8::text[], $9::text[]) AS u(r, i, a, p, t, im, tk, o, c)",
        vec![
            column(&|e| e.resource.clone()),
            column(&|e| e.id.clone()),
            column(&|e| e.action.as_str().to_owned()),
            column(&|e| e.principal.clone()),
            entries.iter().map(|e| e.time).collect::<Vec<DateTime<Utc>>>().into(),
            texts(derived.iter().map(|d| d.0.clone().unwrap_or_default())),
            texts(derived.iter().map(|d| d.1.clone().unwrap_or_default())),
            column(&|e| e.organization_id.clone().unwrap_or_default()),
            texts(derived.iter().map(|d| d.2.clone())),
        ],
    )
    .await
}

/// Up to `limit` entries of `resource` after entry `after`, oldest first.
pub async fn list(
    db: &impl ConnectionTrait,
    resource: &str,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<Entry>, DbErr> {
    let query = history_entry::Entity::find().filter(history_entry::Column::Resource.eq(resource));
    super::keyset_page(query, history_entry::Column::Id, after, limit)
        .all(db)
        .await?
        .into_iter()
        .map(to_domain)
        .collect()
}
