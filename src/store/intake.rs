//! Queries of ticket intake: identity owners, and ticket links with the
//! customer's ticket counters they move.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};

use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{CaseStatement, Expr, ExprTrait, Func},
};

use super::{
    customers::IdentityKind,
    entities::{customer, identity, ticket_link},
    intake_batch::Snapshot,
};
use crate::domain::customer::CustomerDraft;

/// Identity keys to look up in bulk.
#[derive(Debug, Default)]
pub struct Keys {
    pub emails: Vec<String>,
    pub mobiles: Vec<String>,
}

impl Keys {
    pub(super) fn pairs(&self) -> impl Iterator<Item = (IdentityKind, &String)> {
        let emails = self.emails.iter().map(|k| (IdentityKind::Email, k));
        emails.chain(self.mobiles.iter().map(|k| (IdentityKind::Mobile, k)))
    }
}

/// Live owners of an email and a mobile, found with one indexed query.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Owners {
    pub email: Option<String>,
    pub mobile: Option<String>,
}

/// Who holds `draft`'s email and mobile among live customers.
pub async fn live_owners_of(db: &impl ConnectionTrait, draft: &CustomerDraft) -> Result<Owners, DbErr> {
    let email = draft.email.as_ref().map(|e| e.normalised());
    live_owners(db, email, draft.mobile.as_ref().map(|m| m.e164())).await
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

/// Stores the answer for a ticket and counts it on its customer; a unique
/// violation means a concurrent call for the same ticket answered first.
pub async fn insert_link(db: &impl ConnectionTrait, link: ticket_link::Model) -> Result<(), DbErr> {
    insert_links(db, std::slice::from_ref(&link)).await
}

fn link_row(l: ticket_link::Model) -> ticket_link::ActiveModel {
    ticket_link::ActiveModel {
        ticket_id: Set(l.ticket_id),
        customer_id: Set(l.customer_id),
        created: Set(l.created),
        matched_by: Set(l.matched_by),
        conflicting_customer_id: Set(l.conflicting_customer_id),
        restored: Set(l.restored),
        create_time: Set(l.create_time),
    }
}

/// [`super::intake_batch::Batch::read`] as separate statements (MySQL).
pub async fn snapshot(db: &impl ConnectionTrait, ticket_ids: &[String], keys: &Keys) -> Result<Snapshot, DbErr> {
    let links: HashMap<String, ticket_link::Model> = ticket_link::Entity::find()
        .filter(ticket_link::Column::TicketId.is_in(super::padded(ticket_ids.iter().cloned())))
        .all(db)
        .await?
        .into_iter()
        .map(|l| (l.ticket_id.clone(), l))
        .collect();
    let owners = live_owner_map(db, keys).await?;
    // Restore candidates only matter for identities nobody live holds.
    let unowned = |kind: IdentityKind, keys: &[String]| -> Vec<String> {
        keys.iter()
            .filter(|k| !owners.contains_key(&(kind, (*k).clone())))
            .cloned()
            .collect()
    };
    let unowned = Keys {
        emails: unowned(IdentityKind::Email, &keys.emails),
        mobiles: unowned(IdentityKind::Mobile, &keys.mobiles),
    };
    let deleted = deleted_keys(db, &unowned).await?;
    let mut wanted: Vec<String> = owners
        .values()
        .chain(links.values().map(|l| &l.customer_id))
        .cloned()
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let customers = super::customers::find_many(db, &wanted).await?;
    Ok(Snapshot {
        links,
        owners,
        deleted,
        customers,
    })
}

fn keys_condition(keys: &Keys, column: identity::Column) -> Option<sea_orm::Condition> {
    let mut any = sea_orm::Condition::any();
    let mut used = false;
    for (kind, keys) in [
        (IdentityKind::Email, &keys.emails),
        (IdentityKind::Mobile, &keys.mobiles),
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

/// Live owners of many identities: (kind, normalised) → customer id.
pub async fn live_owner_map(
    db: &impl ConnectionTrait,
    keys: &Keys,
) -> Result<HashMap<(IdentityKind, String), String>, DbErr> {
    if super::pg::is_pg(db) {
        return pg_live_owners(db, keys).await;
    }
    let Some(condition) = keys_condition(keys, identity::Column::LiveKey) else {
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
        .filter_map(|(kind, key, id)| Some(((IdentityKind::parse(&kind), key?), id)))
        .collect())
}

/// Which of `keys` belong to deleted customers (restore candidates).
async fn deleted_keys(db: &impl ConnectionTrait, keys: &Keys) -> Result<HashSet<(IdentityKind, String)>, DbErr> {
    let Some(condition) = keys_condition(keys, identity::Column::Normalized) else {
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
    Ok(rows
        .into_iter()
        .map(|(kind, key)| (IdentityKind::parse(&kind), key))
        .collect())
}

/// Stores many answers, a multi-row statement per 256, and counts them on
/// their customers.
pub async fn insert_links(db: &impl ConnectionTrait, links: &[ticket_link::Model]) -> Result<(), DbErr> {
    for chunk in super::pow2_chunks(links, 256) {
        ticket_link::Entity::insert_many(chunk.iter().cloned().map(link_row))
            .exec_without_returning(db)
            .await?;
    }
    let counts = TicketCount::of(links);
    for run in super::pow2_chunks(&counts, 256) {
        count_tickets(db, run).await?;
    }
    Ok(())
}

/// Adds `run` to its customers' counters with one statement: on MySQL,
/// where this is the batch path, one per customer cost a round trip each.
/// `IN` walks the primary key in id order, so concurrent writers still
/// lock the rows in one order.
async fn count_tickets(db: &impl ConnectionTrait, run: &[TicketCount<'_>]) -> Result<(), DbErr> {
    use customer::Column::{FirstTicketTime, Id, LastTicketTime, TicketCount as Count};
    let by_customer = |value: &dyn Fn(&TicketCount) -> Expr| {
        run.iter().fold(CaseStatement::new(), |case, c| {
            case.case(Id.eq(c.customer_id), value(c))
        })
    };
    customer::Entity::update_many()
        .col_expr(
            Count,
            Expr::col(Count).add(by_customer(&|c| Expr::val(c.tickets)).finally(0)),
        )
        .col_expr(
            FirstTicketTime,
            Func::coalesce([Expr::col(FirstTicketTime), by_customer(&|c| Expr::val(c.first)).into()]).into(),
        )
        .col_expr(
            LastTicketTime,
            by_customer(&|c| Expr::val(c.last))
                .finally(Expr::col(LastTicketTime))
                .into(),
        )
        .filter(Id.is_in(run.iter().map(|c| c.customer_id)))
        .exec(db)
        .await?;
    Ok(())
}

/// What a set of stored links adds to one customer's ticket counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketCount<'a> {
    pub customer_id: &'a str,
    pub tickets: i64,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
}

impl<'a> TicketCount<'a> {
    /// One per customer, in customer id order: concurrent writers then
    /// lock customer rows in the same order and cannot deadlock on them.
    pub fn of(links: &'a [ticket_link::Model]) -> Vec<Self> {
        let mut counts: BTreeMap<&str, Self> = BTreeMap::new();
        for l in links {
            counts
                .entry(&l.customer_id)
                .and_modify(|c| {
                    c.tickets += 1;
                    c.first = Ord::min(c.first, l.create_time);
                    c.last = Ord::max(c.last, l.create_time);
                })
                .or_insert(Self {
                    customer_id: &l.customer_id,
                    tickets: 1,
                    first: l.create_time,
                    last: l.create_time,
                });
        }
        counts.into_values().collect()
    }
}

/// PostgreSQL: [`live_owner_map`] by one index probe per key. LATERAL with
/// OFFSET 0 keeps each probe from being flattened into a hash join, whatever
/// the statistics say (a freshly filled table has none).
async fn pg_live_owners(
    db: &impl ConnectionTrait,
    keys: &Keys,
) -> Result<HashMap<(IdentityKind, String), String>, DbErr> {
    let probe = |kind: IdentityKind, param: u8| {
        let kind = kind.as_str();
        format!(
            "SELECT '{kind}' AS kind, k.key, i.customer_id FROM UNNEST(${param}::text[]) AS k(key) \
             CROSS JOIN LATERAL (SELECT customer_id FROM customer_identities \
             WHERE kind = '{kind}' AND live_key = k.key LIMIT 1 OFFSET 0) AS i"
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
                (
                    IdentityKind::parse(&row.try_get::<String>("", "kind")?),
                    row.try_get("", "key")?,
                ),
                row.try_get("", "customer_id")?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone, Utc};

    use super::{TicketCount, ticket_link};

    fn link(ticket: &str, customer: &str, minute: i64) -> ticket_link::Model {
        ticket_link::Model {
            ticket_id: ticket.into(),
            customer_id: customer.into(),
            created: false,
            matched_by: "email".into(),
            conflicting_customer_id: None,
            restored: false,
            create_time: Utc.with_ymd_and_hms(2026, 11, 26, 9, 0, 0).unwrap() + Duration::minutes(minute),
        }
    }

    #[test]
    fn ticket_counts_group_by_customer_in_id_order() {
        let links = [
            link("t1", "b", 5),
            link("t2", "a", 1),
            link("t3", "b", 2),
            link("t4", "b", 9),
        ];
        let at = |minute: i64| links[0].create_time + Duration::minutes(minute - 5);
        let counts = TicketCount::of(&links);
        let got: Vec<_> = counts
            .iter()
            .map(|c| (c.customer_id, c.tickets, c.first, c.last))
            .collect();
        assert_eq!(got, [("a", 1, at(1), at(1)), ("b", 3, at(2), at(9))]);
        assert!(TicketCount::of(&[]).is_empty());
    }
}
