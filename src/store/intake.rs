//! Queries of ticket intake: identity owners and ticket links (whose
//! insert trigger keeps the customer's ticket counters).

use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::ExprTrait,
};

use super::{
    customers::IdentityKind,
    entities::{identity, ticket_link},
};

/// Live owners of an email and a mobile, found with one indexed query.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Owners {
    pub email: Option<String>,
    pub mobile: Option<String>,
}

/// Who holds `email` and `mobile` (normalised) among live customers.
pub async fn live_owners(
    db: &impl ConnectionTrait,
    email: Option<&str>,
    mobile: Option<&str>,
) -> Result<Owners, DbErr> {
    let by = |kind: IdentityKind, key: Option<&str>| {
        key.map(|k| {
            identity::Column::Kind
                .eq(kind.as_str())
                .and(identity::Column::LiveKey.eq(k))
        })
    };
    let conditions: Vec<_> = [by(IdentityKind::Email, email), by(IdentityKind::Mobile, mobile)]
        .into_iter()
        .flatten()
        .collect();
    let Some(condition) = conditions.into_iter().reduce(|a, b| a.or(b)) else {
        return Ok(Owners::default());
    };
    let rows: Vec<(String, String)> = identity::Entity::find()
        .select_only()
        .column(identity::Column::Kind)
        .column(identity::Column::CustomerId)
        .filter(condition)
        .into_tuple()
        .all(db)
        .await?;
    let mut owners = Owners::default();
    for (kind, customer_id) in rows {
        if kind == IdentityKind::Email.as_str() {
            owners.email = Some(customer_id);
        } else {
            owners.mobile = Some(customer_id);
        }
    }
    Ok(owners)
}

/// The most recently created deleted customer that had this identity.
pub async fn deleted_owner(
    db: &impl ConnectionTrait,
    kind: IdentityKind,
    normalised: &str,
) -> Result<Option<String>, DbErr> {
    identity::Entity::find()
        .select_only()
        .column(identity::Column::CustomerId)
        .filter(identity::Column::Kind.eq(kind.as_str()))
        .filter(identity::Column::Normalized.eq(normalised))
        .filter(identity::Column::LiveKey.is_null())
        .order_by_desc(identity::Column::CustomerId)
        .into_tuple::<String>()
        .one(db)
        .await
}

/// The stored answer for a ticket.
pub async fn find_link(db: &impl ConnectionTrait, ticket_id: &str) -> Result<Option<ticket_link::Model>, DbErr> {
    ticket_link::Entity::find_by_id(ticket_id.to_owned()).one(db).await
}

/// Stores the answer for a ticket; a unique violation means a concurrent
/// call for the same ticket answered first.
pub async fn insert_link(db: &impl ConnectionTrait, link: ticket_link::Model) -> Result<(), DbErr> {
    let ticket_link::Model {
        ticket_id,
        customer_id,
        created,
        matched_by,
        conflicting_customer_id,
        restored,
        create_time,
    } = link;
    let row = ticket_link::ActiveModel {
        ticket_id: Set(ticket_id),
        customer_id: Set(customer_id),
        created: Set(created),
        matched_by: Set(matched_by),
        conflicting_customer_id: Set(conflicting_customer_id),
        restored: Set(restored),
        create_time: Set(create_time),
    };
    ticket_link::Entity::insert(row).exec_without_returning(db).await?;
    Ok(())
}

/// Stored answers for any of `ticket_ids`.
pub async fn find_links(db: &impl ConnectionTrait, ticket_ids: &[String]) -> Result<Vec<ticket_link::Model>, DbErr> {
    if ticket_ids.is_empty() {
        return Ok(Vec::new());
    }
    if super::pg::is_pg(db) {
        let probe = super::pg::rows_by_keys("ticket_links", "ticket_id", ticket_ids.iter().cloned());
        return ticket_link::Entity::find().from_raw_sql(probe).all(db).await;
    }
    ticket_link::Entity::find()
        .filter(ticket_link::Column::TicketId.is_in(super::padded(ticket_ids.iter().cloned())))
        .all(db)
        .await
}

/// Identity keys to look up in bulk.
#[derive(Debug, Default)]
pub struct Keys {
    pub emails: Vec<String>,
    pub mobiles: Vec<String>,
}

impl Keys {
    fn condition(&self, column: identity::Column) -> Option<sea_orm::Condition> {
        let mut any = sea_orm::Condition::any();
        let mut used = false;
        for (kind, keys) in [
            (IdentityKind::Email, &self.emails),
            (IdentityKind::Mobile, &self.mobiles),
        ] {
            if !keys.is_empty() {
                used = true;
                any = any.add(
                    identity::Column::Kind
                        .eq(kind.as_str())
                        .and(column.is_in(super::padded(keys.iter().cloned()))),
                );
            }
        }
        used.then_some(any)
    }
}

/// Live owners of many identities: (kind, normalised) → customer id.
pub async fn live_owner_map(
    db: &impl ConnectionTrait,
    keys: &Keys,
) -> Result<std::collections::HashMap<(IdentityKind, String), String>, DbErr> {
    if keys.emails.is_empty() && keys.mobiles.is_empty() {
        return Ok(Default::default());
    }
    if super::pg::is_pg(db) {
        let rows = pg_identity_probes(db, keys, "live_key", "").await?;
        return Ok(rows.into_iter().map(|(kind, key, id)| ((kind, key), id)).collect());
    }
    let Some(condition) = keys.condition(identity::Column::LiveKey) else {
        return Ok(Default::default());
    };
    let rows: Vec<(String, Option<String>, String)> = identity::Entity::find()
        .select_only()
        .column(identity::Column::Kind)
        .column(identity::Column::LiveKey)
        .column(identity::Column::CustomerId)
        .filter(condition)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(kind, key, id)| Some(((kind_of(&kind), key?), id)))
        .collect())
}

/// Which of `keys` belong to deleted customers (restore candidates).
pub async fn deleted_keys(
    db: &impl ConnectionTrait,
    keys: &Keys,
) -> Result<std::collections::HashSet<(IdentityKind, String)>, DbErr> {
    if keys.emails.is_empty() && keys.mobiles.is_empty() {
        return Ok(Default::default());
    }
    if super::pg::is_pg(db) {
        let rows = pg_identity_probes(db, keys, "normalized", " AND live_key IS NULL").await?;
        return Ok(rows.into_iter().map(|(kind, key, _)| (kind, key)).collect());
    }
    let Some(condition) = keys.condition(identity::Column::Normalized) else {
        return Ok(Default::default());
    };
    let rows: Vec<(String, String)> = identity::Entity::find()
        .select_only()
        .column(identity::Column::Kind)
        .column(identity::Column::Normalized)
        .filter(condition)
        .filter(identity::Column::LiveKey.is_null())
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|(kind, key)| (kind_of(&kind), key)).collect())
}

/// PostgreSQL: (kind, key, customer id) of an identity whose `column` is
/// one of `keys` and that meets `filter`, by one index probe per key. LATERAL
/// with OFFSET 0 keeps each probe from being flattened into a hash join,
/// whatever the statistics say (a freshly filled table has none).
async fn pg_identity_probes(
    db: &impl ConnectionTrait,
    keys: &Keys,
    column: &str,
    filter: &str,
) -> Result<Vec<(IdentityKind, String, String)>, DbErr> {
    let probe = |kind: IdentityKind, param: u8| {
        let kind = kind.as_str();
        format!(
            "SELECT '{kind}' AS kind, k.key, i.customer_id FROM UNNEST(${param}::text[]) AS k(key) \
             CROSS JOIN LATERAL (SELECT customer_id FROM customer_identities \
             WHERE kind = '{kind}' AND {column} = k.key{filter} LIMIT 1 OFFSET 0) AS i"
        )
    };
    let sql = format!(
        "{} UNION ALL {}",
        probe(IdentityKind::Email, 1),
        probe(IdentityKind::Mobile, 2)
    );
    let values = vec![
        super::pg::texts(keys.emails.iter().cloned()),
        super::pg::texts(keys.mobiles.iter().cloned()),
    ];
    super::pg::query(db, &sql, values)
        .await?
        .into_iter()
        .map(|row| {
            Ok((
                kind_of(&row.try_get::<String>("", "kind")?),
                row.try_get("", "key")?,
                row.try_get("", "customer_id")?,
            ))
        })
        .collect()
}

fn kind_of(stored: &str) -> IdentityKind {
    if stored == IdentityKind::Email.as_str() {
        IdentityKind::Email
    } else {
        IdentityKind::Mobile
    }
}

/// Stores many answers in one statement.
pub async fn insert_links(db: &impl ConnectionTrait, links: Vec<ticket_link::Model>) -> Result<(), DbErr> {
    for chunk in super::pow2_chunks(&links, 256) {
        let rows = chunk.iter().cloned().map(|l| ticket_link::ActiveModel {
            ticket_id: Set(l.ticket_id),
            customer_id: Set(l.customer_id),
            created: Set(l.created),
            matched_by: Set(l.matched_by),
            conflicting_customer_id: Set(l.conflicting_customer_id),
            restored: Set(l.restored),
            create_time: Set(l.create_time),
        });
        ticket_link::Entity::insert_many(rows)
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}
