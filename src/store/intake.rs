//! Queries of ticket intake: identity owners, ticket links, ticket counters.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait, Func},
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

/// Counts one more ticket for a customer. Counters are output-only
/// bookkeeping: they do not bump the revision, so agents' etags stay valid.
pub async fn count_ticket(db: &impl ConnectionTrait, customer_id: &str, at: DateTime<Utc>) -> Result<(), DbErr> {
    use super::entities::customer;
    customer::Entity::update_many()
        .col_expr(
            customer::Column::TicketCount,
            Expr::col(customer::Column::TicketCount).add(1),
        )
        .col_expr(
            customer::Column::FirstTicketTime,
            Func::coalesce([Expr::col(customer::Column::FirstTicketTime), Expr::value(at)]).into(),
        )
        .col_expr(customer::Column::LastTicketTime, Expr::value(at))
        .filter(customer::Column::Id.eq(customer_id))
        .exec(db)
        .await?;
    Ok(())
}
