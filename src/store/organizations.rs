//! Organisation, domain and membership queries.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::Expr,
};

use super::entities::{membership, organization, organization_domain};
use crate::domain::{
    customer::State,
    organizations::{Membership, Organization, OrganizationDraft},
};

fn to_domain(m: organization::Model) -> Result<Organization, DbErr> {
    let corrupt = |what: &str| DbErr::Custom(format!("organization {} has a corrupt {what}", m.id));
    Ok(Organization {
        domains: serde_json::from_str(&m.domains).map_err(|_| corrupt("domains"))?,
        attributes: serde_json::from_str(&m.attributes).map_err(|_| corrupt("attributes"))?,
        state: State::parse(&m.state).ok_or_else(|| corrupt("state"))?,
        id: m.id,
        name: m.name,
        revision: m.revision,
        create_time: m.create_time,
        update_time: m.update_time,
        delete_time: m.delete_time,
    })
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// The organisation with `id`, deleted or not.
pub async fn find(db: &impl ConnectionTrait, id: &str) -> Result<Option<Organization>, DbErr> {
    organization::Entity::find_by_id(id.to_owned())
        .one(db)
        .await?
        .map(to_domain)
        .transpose()
}

/// The Active organisation with this name (case-insensitive).
pub async fn find_live_by_name(db: &impl ConnectionTrait, name: &str) -> Result<Option<Organization>, DbErr> {
    organization::Entity::find()
        .filter(organization::Column::LiveNameKey.eq(name.trim().to_lowercase()))
        .one(db)
        .await?
        .map(to_domain)
        .transpose()
}

/// The oldest Active organisation claiming an email domain.
pub async fn find_live_by_domain(db: &impl ConnectionTrait, domain: &str) -> Result<Option<Organization>, DbErr> {
    let ids: Vec<String> = organization_domain::Entity::find()
        .select_only()
        .column(organization_domain::Column::OrganizationId)
        .filter(organization_domain::Column::Domain.eq(domain))
        .into_tuple()
        .all(db)
        .await?;
    if ids.is_empty() {
        return Ok(None);
    }
    organization::Entity::find()
        .filter(organization::Column::Id.is_in(ids))
        .filter(organization::Column::State.eq(State::Active.as_str()))
        .order_by_asc(organization::Column::Id)
        .one(db)
        .await?
        .map(to_domain)
        .transpose()
}

/// Inserts a new Active organisation; a unique violation means the name is taken.
pub async fn insert(
    db: &impl ConnectionTrait,
    id: &str,
    draft: &OrganizationDraft,
    now: DateTime<Utc>,
) -> Result<Organization, DbErr> {
    let row = organization::ActiveModel {
        id: Set(id.to_owned()),
        name: Set(draft.name.clone()),
        live_name_key: Set(Some(draft.name.to_lowercase())),
        domains: Set(json(&draft.domains)),
        attributes: Set(json(&draft.attributes)),
        state: Set(State::Active.as_str().to_owned()),
        revision: Set(1),
        create_time: Set(now),
        update_time: Set(now),
        delete_time: Set(None),
    };
    organization::Entity::insert(row).exec_without_returning(db).await?;
    replace_domains(db, id, &draft.domains).await?;
    find(db, id).await?.ok_or_else(|| DbErr::RecordNotFound(id.to_owned()))
}

async fn replace_domains(db: &impl ConnectionTrait, id: &str, domains: &[String]) -> Result<(), DbErr> {
    organization_domain::Entity::delete_many()
        .filter(organization_domain::Column::OrganizationId.eq(id))
        .exec(db)
        .await?;
    if !domains.is_empty() {
        let rows = domains.iter().map(|d| organization_domain::ActiveModel {
            domain: Set(d.clone()),
            organization_id: Set(id.to_owned()),
        });
        organization_domain::Entity::insert_many(rows)
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// Writes `draft` and/or `state` over `before` if it is still at its revision.
/// `Ok(None)` means someone changed it meanwhile.
pub async fn save(
    db: &impl ConnectionTrait,
    before: &Organization,
    draft: &OrganizationDraft,
    state: State,
    now: DateTime<Utc>,
) -> Result<Option<Organization>, DbErr> {
    let live_key = (state == State::Active).then(|| draft.name.to_lowercase());
    let delete_time = match state {
        State::Active => None,
        State::Deleted => Some(before.delete_time.unwrap_or(now)),
    };
    let updated = organization::Entity::update_many()
        .col_expr(organization::Column::Name, Expr::value(draft.name.clone()))
        .col_expr(organization::Column::LiveNameKey, Expr::value(live_key))
        .col_expr(organization::Column::Domains, Expr::value(json(&draft.domains)))
        .col_expr(organization::Column::Attributes, Expr::value(json(&draft.attributes)))
        .col_expr(organization::Column::State, Expr::value(state.as_str()))
        .col_expr(organization::Column::DeleteTime, Expr::value(delete_time))
        .col_expr(organization::Column::Revision, Expr::value(before.revision + 1))
        .col_expr(organization::Column::UpdateTime, Expr::value(now))
        .filter(organization::Column::Id.eq(before.id.as_str()))
        .filter(organization::Column::Revision.eq(before.revision))
        .exec(db)
        .await?;
    if updated.rows_affected != 1 {
        return Ok(None);
    }
    if draft.domains != before.domains {
        replace_domains(db, &before.id, &draft.domains).await?;
    }
    find(db, &before.id).await
}

/// A page of organisations in id order.
pub async fn list(
    db: &impl ConnectionTrait,
    show_deleted: bool,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<Organization>, DbErr> {
    let mut query = organization::Entity::find();
    if !show_deleted {
        query = query.filter(organization::Column::State.eq(State::Active.as_str()));
    }
    super::keyset_page(query, organization::Column::Id, after, limit)
        .all(db)
        .await?
        .into_iter()
        .map(to_domain)
        .collect()
}

fn membership_of(m: membership::Model) -> Membership {
    Membership {
        organization_id: m.organization_id,
        customer_id: m.customer_id,
        can_view_tickets: m.can_view_tickets,
        can_create_tickets: m.can_create_tickets,
        create_time: m.create_time,
        update_time: m.update_time,
    }
}

/// One membership.
pub async fn find_membership(
    db: &impl ConnectionTrait,
    organization_id: &str,
    customer_id: &str,
) -> Result<Option<Membership>, DbErr> {
    Ok(
        membership::Entity::find_by_id((organization_id.to_owned(), customer_id.to_owned()))
            .one(db)
            .await?
            .map(membership_of),
    )
}

fn membership_row(m: &Membership) -> membership::ActiveModel {
    membership::ActiveModel {
        organization_id: Set(m.organization_id.clone()),
        customer_id: Set(m.customer_id.clone()),
        can_view_tickets: Set(m.can_view_tickets),
        can_create_tickets: Set(m.can_create_tickets),
        create_time: Set(m.create_time),
        update_time: Set(m.update_time),
    }
}

/// Inserts a membership; a unique violation means it exists already.
pub async fn insert_membership(db: &impl ConnectionTrait, m: &Membership) -> Result<(), DbErr> {
    membership::Entity::insert(membership_row(m))
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Inserts many memberships with multi-row statements.
pub async fn insert_memberships(db: &impl ConnectionTrait, memberships: &[Membership]) -> Result<(), DbErr> {
    if memberships.is_empty() {
        return Ok(());
    }
    if super::pg::is_pg(db) {
        use super::pg::{bools, execute, texts};
        return execute(
            db,
            "INSERT INTO memberships (organization_id, customer_id, can_view_tickets, can_create_tickets, \
             create_time, update_time) SELECT o, c, v, n, t, u \
             FROM UNNEST($1::text[], $2::text[], $3::boolean[], $4::boolean[], $5::timestamptz[], $6::timestamptz[]) \
             AS x(o, c, v, n, t, u)",
            vec![
                texts(memberships.iter().map(|m| m.organization_id.clone())),
                texts(memberships.iter().map(|m| m.customer_id.clone())),
                bools(memberships.iter().map(|m| m.can_view_tickets)),
                bools(memberships.iter().map(|m| m.can_create_tickets)),
                memberships.iter().map(|m| m.create_time).collect::<Vec<_>>().into(),
                memberships.iter().map(|m| m.update_time).collect::<Vec<_>>().into(),
            ],
        )
        .await;
    }
    for chunk in super::pow2_chunks(memberships, 256) {
        membership::Entity::insert_many(chunk.iter().map(membership_row))
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// (organisation id, customer id) of every membership of these customers.
pub async fn memberships_of_customers(
    db: &impl ConnectionTrait,
    customer_ids: &std::collections::BTreeSet<&str>,
) -> Result<std::collections::HashSet<(String, String)>, DbErr> {
    let mut found = std::collections::HashSet::new();
    if customer_ids.is_empty() {
        return Ok(found);
    }
    if super::pg::is_pg(db) {
        let rows = super::pg::query(
            db,
            "SELECT organization_id, customer_id FROM memberships WHERE customer_id = ANY($1)",
            vec![super::pg::texts(customer_ids.iter().copied())],
        )
        .await?;
        for row in rows {
            found.insert((row.try_get("", "organization_id")?, row.try_get("", "customer_id")?));
        }
        return Ok(found);
    }
    let ids: Vec<&str> = customer_ids.iter().copied().collect();
    for chunk in ids.chunks(1000) {
        let rows: Vec<(String, String)> = membership::Entity::find()
            .select_only()
            .column(membership::Column::OrganizationId)
            .column(membership::Column::CustomerId)
            .filter(membership::Column::CustomerId.is_in(super::padded(chunk.iter().copied())))
            .into_tuple()
            .all(db)
            .await?;
        found.extend(rows);
    }
    Ok(found)
}

/// Active organisation ids by lower-cased name.
pub async fn find_live_ids_by_name_keys(
    db: &impl ConnectionTrait,
    keys: &std::collections::BTreeSet<String>,
) -> Result<std::collections::HashMap<String, String>, DbErr> {
    let rows: Vec<(Option<String>, String)> = organization::Entity::find()
        .select_only()
        .column(organization::Column::LiveNameKey)
        .column(organization::Column::Id)
        .filter(organization::Column::LiveNameKey.is_in(super::padded(keys.iter().cloned())))
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().filter_map(|(k, id)| Some((k?, id))).collect())
}

/// Sets the rights of an existing membership.
pub async fn update_rights(db: &impl ConnectionTrait, m: &Membership) -> Result<(), DbErr> {
    membership::Entity::update_many()
        .col_expr(membership::Column::CanViewTickets, Expr::value(m.can_view_tickets))
        .col_expr(membership::Column::CanCreateTickets, Expr::value(m.can_create_tickets))
        .col_expr(membership::Column::UpdateTime, Expr::value(m.update_time))
        .filter(membership::Column::OrganizationId.eq(m.organization_id.as_str()))
        .filter(membership::Column::CustomerId.eq(m.customer_id.as_str()))
        .exec(db)
        .await?;
    Ok(())
}

/// Deletes a membership; false when there was none.
pub async fn delete_membership(
    db: &impl ConnectionTrait,
    organization_id: &str,
    customer_id: &str,
) -> Result<bool, DbErr> {
    let result = membership::Entity::delete_many()
        .filter(membership::Column::OrganizationId.eq(organization_id))
        .filter(membership::Column::CustomerId.eq(customer_id))
        .exec(db)
        .await?;
    Ok(result.rows_affected > 0)
}

/// A page of an organisation's members, in customer id order.
pub async fn list_members(
    db: &impl ConnectionTrait,
    organization_id: &str,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<Membership>, DbErr> {
    let query = membership::Entity::find().filter(membership::Column::OrganizationId.eq(organization_id));
    Ok(super::keyset_page(query, membership::Column::CustomerId, after, limit)
        .all(db)
        .await?
        .into_iter()
        .map(membership_of)
        .collect())
}

/// Every membership of a customer with its organisation.
pub async fn customer_memberships(
    db: &impl ConnectionTrait,
    customer_id: &str,
) -> Result<Vec<(Membership, Organization)>, DbErr> {
    let memberships: Vec<Membership> = membership::Entity::find()
        .filter(membership::Column::CustomerId.eq(customer_id))
        .order_by_asc(membership::Column::OrganizationId)
        .all(db)
        .await?
        .into_iter()
        .map(membership_of)
        .collect();
    let ids: Vec<String> = memberships.iter().map(|m| m.organization_id.clone()).collect();
    let orgs: std::collections::HashMap<String, Organization> = organization::Entity::find()
        .filter(organization::Column::Id.is_in(ids))
        .all(db)
        .await?
        .into_iter()
        .map(|m| to_domain(m).map(|o| (o.id.clone(), o)))
        .collect::<Result<_, _>>()?;
    Ok(memberships
        .into_iter()
        .filter_map(|m| orgs.get(&m.organization_id).cloned().map(|o| (m, o)))
        .collect())
}
