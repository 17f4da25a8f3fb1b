//! Customer queries. Every function takes any connection or transaction, so
//! the domain decides the transaction boundaries.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, UpdateMany,
    sea_query::{Expr, ExprTrait, Func, LikeExpr, Query},
};

use super::entities::{create_request, customer, identity};
use crate::domain::{
    attributes::Attributes,
    customer::{Customer, CustomerDraft, Source, State},
    filter::CustomerFilter,
};

/// Identity kinds as stored.
pub const EMAIL: &str = "email";
/// Identity kinds as stored.
pub const MOBILE: &str = "mobile";

/// Which kind of identity: an email or a mobile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentityKind {
    Email,
    Mobile,
}

impl IdentityKind {
    /// Stored spelling, also the API field name.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::Email => EMAIL,
            IdentityKind::Mobile => MOBILE,
        }
    }

    /// From the stored spelling; anything but `email` is a mobile.
    pub fn parse(stored: &str) -> Self {
        if stored == EMAIL {
            IdentityKind::Email
        } else {
            IdentityKind::Mobile
        }
    }
}

/// Why a write failed.
#[derive(Debug)]
pub enum WriteError {
    /// A live customer already holds this identity.
    Taken(IdentityKind),
    /// The row changed since it was read (revision mismatch) or vanished.
    Stale,
    Db(DbErr),
}

impl From<DbErr> for WriteError {
    fn from(e: DbErr) -> Self {
        WriteError::Db(e)
    }
}

pub(crate) fn to_domain(m: customer::Model) -> Result<Customer, DbErr> {
    let corrupt = |what: &str| DbErr::Custom(format!("customer {} has a corrupt {what}", m.id));
    Ok(Customer {
        attributes: serde_json::from_str(&m.attributes).map_err(|_| corrupt("attributes"))?,
        state: State::parse(&m.state).ok_or_else(|| corrupt("state"))?,
        source: Source::parse(&m.source).ok_or_else(|| corrupt("source"))?,
        id: m.id,
        name: m.name,
        email: m.email,
        mobile: m.mobile,
        hub_access_enabled: m.hub_access_enabled,
        create_time: m.create_time,
        update_time: m.update_time,
        delete_time: m.delete_time,
        revision: m.revision,
        ticket_count: m.ticket_count,
        first_ticket_time: m.first_ticket_time,
        last_ticket_time: m.last_ticket_time,
        merged_into: m.merged_into_id,
    })
}

pub(crate) fn attributes_json(attributes: &Attributes) -> String {
    // A map of strings always serialises.
    serde_json::to_string(attributes).unwrap_or_else(|_| "{}".to_owned())
}

/// Maps a unique violation to `Taken(kind)`, other errors to `Db`.
fn taken_as(kind: IdentityKind) -> impl Fn(DbErr) -> WriteError {
    move |e| {
        if super::is_unique_violation(&e) {
            WriteError::Taken(kind)
        } else {
            WriteError::Db(e)
        }
    }
}

/// The customer with `id`, deleted or not.
pub async fn find(db: &impl ConnectionTrait, id: &str) -> Result<Option<Customer>, DbErr> {
    customer::Entity::find_by_id(id.to_owned())
        .one(db)
        .await?
        .map(to_domain)
        .transpose()
}

/// The live customer holding `kind`/`normalised`, if any.
pub async fn live_owner(
    db: &impl ConnectionTrait,
    kind: IdentityKind,
    normalised: &str,
) -> Result<Option<String>, DbErr> {
    identity::Entity::find()
        .select_only()
        .column(identity::Column::CustomerId)
        .filter(identity::Column::Kind.eq(kind.as_str()))
        .filter(identity::Column::LiveKey.eq(normalised))
        .into_tuple::<String>()
        .one(db)
        .await
}

/// Inserts a new Active customer and its identities.
pub async fn insert(
    db: &impl ConnectionTrait,
    id: &str,
    draft: &CustomerDraft,
    source: Source,
    now: DateTime<Utc>,
) -> Result<Customer, WriteError> {
    let customer = Customer::new_active(id.to_owned(), draft, source, now);
    customer::Entity::insert(customer_row(&customer))
        .exec_without_returning(db)
        .await?;
    insert_identities(db, id, draft, true).await?;
    Ok(customer)
}

/// Inserts new customers and their (live) identities with multi-row
/// statements. A unique violation fails the whole call.
pub async fn insert_many(db: &impl ConnectionTrait, new: &[(Customer, CustomerDraft)]) -> Result<(), DbErr> {
    if new.is_empty() {
        return Ok(());
    }
    if super::pg::is_pg(db) && new.iter().all(|(c, _)| is_fresh(c)) {
        return insert_many_pg(db, new).await;
    }
    // Runs of at most 256 rows stay under every backend's bind-parameter limit.
    for chunk in super::pow2_chunks(new, 256) {
        customer::Entity::insert_many(chunk.iter().map(|(c, _)| customer_row(c)))
            .exec_without_returning(db)
            .await?;
    }
    let identities: Vec<_> = new.iter().flat_map(|(c, d)| identity_rows(&c.id, d, true)).collect();
    for chunk in super::pow2_chunks(&identities, 256) {
        identity::Entity::insert_many(chunk.iter().cloned())
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// A customer as created: no deletion, no tickets yet.
pub(crate) fn is_fresh(c: &Customer) -> bool {
    c.delete_time.is_none() && c.ticket_count == 0 && c.first_ticket_time.is_none() && c.last_ticket_time.is_none()
}

/// [`insert_many`] on PostgreSQL: two UNNEST statements, whatever the count.
async fn insert_many_pg(db: &impl ConnectionTrait, new: &[(Customer, CustomerDraft)]) -> Result<(), DbErr> {
    use super::pg::{bools, execute, texts};
    let column = |f: fn(&Customer) -> String| texts(new.iter().map(|(c, _)| f(c)));
    execute(
        db,
        "INSERT INTO customers (id, name, email, mobile, attributes, state, hub_access_enabled, source, revision, \
         create_time, update_time, ticket_count) \
         SELECT id, name, NULLIF(email, ''), NULLIF(mobile, ''), attributes, state, hub, source, revision, ct, ut, 0 \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::boolean[], \
         $8::text[], $9::bigint[], $10::timestamptz[], $11::timestamptz[]) \
         AS u(id, name, email, mobile, attributes, state, hub, source, revision, ct, ut)",
        vec![
            column(|c| c.id.clone()),
            column(|c| c.name.clone()),
            column(|c| c.email.clone().unwrap_or_default()),
            column(|c| c.mobile.clone().unwrap_or_default()),
            column(|c| attributes_json(&c.attributes)),
            column(|c| c.state.as_str().to_owned()),
            bools(new.iter().map(|(c, _)| c.hub_access_enabled)),
            column(|c| c.source.as_str().to_owned()),
            new.iter().map(|(c, _)| c.revision).collect::<Vec<i64>>().into(),
            new.iter()
                .map(|(c, _)| c.create_time)
                .collect::<Vec<DateTime<Utc>>>()
                .into(),
            new.iter()
                .map(|(c, _)| c.update_time)
                .collect::<Vec<DateTime<Utc>>>()
                .into(),
        ],
    )
    .await?;
    let identities: Vec<_> = new.iter().flat_map(|(c, d)| identity_keys(&c.id, d)).collect();
    execute(
        db,
        "INSERT INTO customer_identities (customer_id, kind, normalized, original, is_primary, live_key) \
         SELECT c, k, n, o, true, n FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) \
         AS u(c, k, n, o)",
        vec![
            texts(identities.iter().map(|i| i.0.clone())),
            texts(identities.iter().map(|i| i.1)),
            texts(identities.iter().map(|i| i.2.clone())),
            texts(identities.iter().map(|i| i.3.clone())),
        ],
    )
    .await?;
    Ok(())
}

/// Customers by id, in no particular order; missing ids are left out.
pub async fn find_many(db: &impl ConnectionTrait, ids: &[String]) -> Result<Vec<Customer>, DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = if super::pg::is_pg(db) {
        let probe = super::pg::rows_by_keys("customers", "id", ids.iter().cloned());
        customer::Entity::find().from_raw_sql(probe).all(db).await?
    } else {
        customer::Entity::find()
            .filter(customer::Column::Id.is_in(super::padded(ids.iter().cloned())))
            .all(db)
            .await?
    };
    rows.into_iter().map(to_domain).collect()
}

fn customer_row(c: &Customer) -> customer::ActiveModel {
    customer::ActiveModel {
        id: Set(c.id.clone()),
        name: Set(c.name.clone()),
        email: Set(c.email.clone()),
        mobile: Set(c.mobile.clone()),
        attributes: Set(attributes_json(&c.attributes)),
        state: Set(c.state.as_str().to_owned()),
        hub_access_enabled: Set(c.hub_access_enabled),
        source: Set(c.source.as_str().to_owned()),
        revision: Set(c.revision),
        create_time: Set(c.create_time),
        update_time: Set(c.update_time),
        delete_time: Set(c.delete_time),
        ticket_count: Set(c.ticket_count),
        first_ticket_time: Set(c.first_ticket_time),
        last_ticket_time: Set(c.last_ticket_time),
        merged_into_id: Set(c.merged_into.clone()),
    }
}

/// A draft's identities as (customer id, kind, normalised, original).
pub(crate) fn identity_keys(id: &str, draft: &CustomerDraft) -> Vec<(String, &'static str, String, String)> {
    let email = draft.email.as_ref().map(|e| (EMAIL, e.normalised(), e.as_str()));
    let mobile = draft.mobile.as_ref().map(|m| (MOBILE, m.e164(), m.original()));
    [email, mobile]
        .into_iter()
        .flatten()
        .map(|(kind, key, original)| (id.to_owned(), kind, key.to_owned(), original.to_owned()))
        .collect()
}

/// Identity rows of a draft; `live` is false for deleted customers.
fn identity_rows(id: &str, draft: &CustomerDraft, live: bool) -> Vec<identity::ActiveModel> {
    identity_keys(id, draft)
        .into_iter()
        .map(|(customer_id, kind, normalised, original)| identity::ActiveModel {
            id: NotSet,
            customer_id: Set(customer_id),
            kind: Set(kind.to_owned()),
            live_key: Set(live.then(|| normalised.clone())),
            normalized: Set(normalised),
            original: Set(original),
            is_primary: Set(true),
        })
        .collect()
}

/// Inserts the draft's identities; `live` is false for deleted customers.
async fn insert_identities(
    db: &impl ConnectionTrait,
    id: &str,
    draft: &CustomerDraft,
    live: bool,
) -> Result<(), WriteError> {
    // One statement per identity, so a violation says which one it was.
    for row in identity_rows(id, draft, live) {
        let kind = if row.kind.as_ref() == EMAIL {
            IdentityKind::Email
        } else {
            IdentityKind::Mobile
        };
        identity::Entity::insert(row)
            .exec_without_returning(db)
            .await
            .map_err(taken_as(kind))?;
    }
    Ok(())
}

/// Updates `before`'s row with the columns `set` adds, bumping its
/// revision, if it is still at `before.revision` (else `Stale`).
async fn update_versioned(
    db: &impl ConnectionTrait,
    before: &Customer,
    now: DateTime<Utc>,
    set: impl FnOnce(UpdateMany<customer::Entity>) -> UpdateMany<customer::Entity>,
) -> Result<(), WriteError> {
    let updated = set(customer::Entity::update_many())
        .col_expr(customer::Column::Revision, Expr::value(before.revision + 1))
        .col_expr(customer::Column::UpdateTime, Expr::value(now))
        .filter(customer::Column::Id.eq(before.id.as_str()))
        .filter(customer::Column::Revision.eq(before.revision))
        .exec(db)
        .await?;
    if updated.rows_affected != 1 {
        return Err(WriteError::Stale);
    }
    Ok(())
}

/// Writes `draft` over customer `before`, if it is still at `before.revision`,
/// and reads the customer back. Identities that changed are replaced.
pub async fn save(
    db: &impl ConnectionTrait,
    before: &Customer,
    draft: &CustomerDraft,
    now: DateTime<Utc>,
) -> Result<Customer, WriteError> {
    overwrite(db, before, draft, now).await?;
    find(db, &before.id).await?.ok_or(WriteError::Stale)
}

/// [`save`] without reading the customer back: an import has no use for
/// it, and the read is one statement more per updated row.
pub async fn overwrite(
    db: &impl ConnectionTrait,
    before: &Customer,
    draft: &CustomerDraft,
    now: DateTime<Utc>,
) -> Result<(), WriteError> {
    update_versioned(db, before, now, |update| {
        update
            .col_expr(customer::Column::Name, Expr::value(draft.name.clone()))
            .col_expr(
                customer::Column::Email,
                Expr::value(draft.email.as_ref().map(|e| e.as_str().to_owned())),
            )
            .col_expr(
                customer::Column::Mobile,
                Expr::value(draft.mobile.as_ref().map(|m| m.e164().to_owned())),
            )
            .col_expr(
                customer::Column::Attributes,
                Expr::value(attributes_json(&draft.attributes)),
            )
            .col_expr(
                customer::Column::HubAccessEnabled,
                Expr::value(draft.hub_access_enabled),
            )
    })
    .await?;
    let before_draft = before.to_draft();
    let email_changed =
        before_draft.email.as_ref().map(|e| e.normalised()) != draft.email.as_ref().map(|e| e.normalised());
    let mobile_changed = before_draft.mobile.as_ref().map(|m| m.e164()) != draft.mobile.as_ref().map(|m| m.e164());
    let live = before.state == State::Active;
    let mut replacement = CustomerDraft {
        email: None,
        mobile: None,
        ..draft.clone()
    };
    if email_changed {
        delete_identities(db, &before.id, IdentityKind::Email).await?;
        replacement.email = draft.email.clone();
    }
    if mobile_changed {
        delete_identities(db, &before.id, IdentityKind::Mobile).await?;
        replacement.mobile = draft.mobile.clone();
    }
    insert_identities(db, &before.id, &replacement, live).await
}

async fn delete_identities(db: &impl ConnectionTrait, id: &str, kind: IdentityKind) -> Result<(), DbErr> {
    identity::Entity::delete_many()
        .filter(identity::Column::CustomerId.eq(id))
        .filter(identity::Column::Kind.eq(kind.as_str()))
        .exec(db)
        .await?;
    Ok(())
}

/// Moves customer `before` to `state` if it is still at `before.revision`,
/// freeing (deleted) or re-claiming (active) its identities.
pub async fn set_state(
    db: &impl ConnectionTrait,
    before: &Customer,
    state: State,
    now: DateTime<Utc>,
) -> Result<Customer, WriteError> {
    let delete_time = (state == State::Deleted).then_some(now);
    update_versioned(db, before, now, |update| {
        update
            .col_expr(customer::Column::State, Expr::value(state.as_str()))
            .col_expr(customer::Column::DeleteTime, Expr::value(delete_time))
    })
    .await?;
    // Re-claim one kind at a time so a violation names the identity.
    for kind in [IdentityKind::Email, IdentityKind::Mobile] {
        let live_key = match state {
            State::Active => Expr::col(identity::Column::Normalized),
            State::Deleted => Expr::value(Option::<String>::None),
        };
        identity::Entity::update_many()
            .col_expr(identity::Column::LiveKey, live_key)
            .filter(identity::Column::CustomerId.eq(before.id.as_str()))
            .filter(identity::Column::Kind.eq(kind.as_str()))
            .exec(db)
            .await
            .map_err(taken_as(kind))?;
    }
    find(db, &before.id).await?.ok_or(WriteError::Stale)
}

/// Customers by id, locked for the rest of the transaction (row locks on
/// PostgreSQL and MySQL, taken in id order; SQLite's write transaction
/// already excludes every other writer).
pub async fn lock_many(db: &impl ConnectionTrait, ids: &[&str]) -> Result<Vec<Customer>, DbErr> {
    customer::Entity::find()
        .filter(customer::Column::Id.is_in(ids.iter().copied()))
        .order_by_asc(customer::Column::Id)
        .lock_exclusive()
        .all(db)
        .await?
        .into_iter()
        .map(to_domain)
        .collect()
}

/// Marks `before` as merged into `into`, if it is still at
/// `before.revision`: deleted (its identities freed), its ticket counters
/// handed over (zeroed here), `merged_into_id` set.
pub async fn mark_merged(
    db: &impl ConnectionTrait,
    before: &Customer,
    into: &str,
    now: DateTime<Utc>,
) -> Result<Customer, WriteError> {
    update_versioned(db, before, now, |update| {
        update
            .col_expr(customer::Column::State, Expr::value(State::Deleted.as_str()))
            .col_expr(
                customer::Column::DeleteTime,
                Expr::value(before.delete_time.unwrap_or(now)),
            )
            .col_expr(customer::Column::MergedIntoId, Expr::value(into))
            .col_expr(customer::Column::TicketCount, Expr::value(0i64))
            .col_expr(
                customer::Column::FirstTicketTime,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(
                customer::Column::LastTicketTime,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
    })
    .await?;
    identity::Entity::update_many()
        .col_expr(identity::Column::LiveKey, Expr::value(Option::<String>::None))
        .filter(identity::Column::CustomerId.eq(before.id.as_str()))
        .exec(db)
        .await?;
    find(db, &before.id).await?.ok_or(WriteError::Stale)
}

/// Adds `from`'s tickets to customer `id`'s counters. Like the intake
/// writers' updates, it leaves the revision (and so the etag) alone.
pub async fn add_tickets(db: &impl ConnectionTrait, id: &str, from: &Customer) -> Result<(), DbErr> {
    let (Some(first), Some(last)) = (from.first_ticket_time, from.last_ticket_time) else {
        return Ok(());
    };
    let first_col = || Expr::col(customer::Column::FirstTicketTime);
    let last_col = || Expr::col(customer::Column::LastTicketTime);
    customer::Entity::update_many()
        .col_expr(
            customer::Column::TicketCount,
            Expr::col(customer::Column::TicketCount).add(from.ticket_count),
        )
        .col_expr(
            customer::Column::FirstTicketTime,
            Expr::case(first_col().is_null().or(first_col().gt(first)), Expr::value(first))
                .finally(first_col())
                .into(),
        )
        .col_expr(
            customer::Column::LastTicketTime,
            Expr::case(last_col().is_null().or(last_col().lt(last)), Expr::value(last))
                .finally(last_col())
                .into(),
        )
        .filter(customer::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// The customer a create `request_id` made, if that request ran before.
pub async fn find_create_request(db: &impl ConnectionTrait, request_id: &str) -> Result<Option<String>, DbErr> {
    Ok(create_request::Entity::find_by_id(request_id.to_owned())
        .one(db)
        .await?
        .map(|r| r.customer_id))
}

/// Records that `request_id` created `customer_id`. Fails with a unique
/// violation when a concurrent request with the same id won.
pub async fn insert_create_request(
    db: &impl ConnectionTrait,
    request_id: &str,
    customer_id: &str,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let row = create_request::ActiveModel {
        request_id: Set(request_id.to_owned()),
        customer_id: Set(customer_id.to_owned()),
        create_time: Set(now),
    };
    create_request::Entity::insert(row).exec_without_returning(db).await?;
    Ok(())
}

/// One page of customers in id order, after `after`, matching `filter`.
pub async fn list(
    db: &impl ConnectionTrait,
    filter: &CustomerFilter,
    show_deleted: bool,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<Customer>, DbErr> {
    let backend = db.get_database_backend();
    let mut query = customer::Entity::find();
    match filter.state {
        Some(state) => query = query.filter(customer::Column::State.eq(state.as_str())),
        // Merged customers are all deleted: that filter implies show_deleted.
        None if !show_deleted && filter.merged_into.is_none() => {
            query = query.filter(customer::Column::State.eq(State::Active.as_str()))
        }
        None => {}
    }
    for (kind, value) in [(EMAIL, &filter.email), (MOBILE, &filter.mobile)] {
        if let Some(value) = value {
            query = query.filter(
                customer::Column::Id.in_subquery(
                    Query::select()
                        .column(identity::Column::CustomerId)
                        .from(identity::Entity)
                        .and_where(identity::Column::Kind.eq(kind))
                        .and_where(identity::Column::Normalized.eq(value.as_str()))
                        .to_owned(),
                ),
            );
        }
    }
    if let Some(needle) = &filter.name_contains {
        let pattern = format!("%{}%", escape_like(needle));
        query = query.filter(Func::lower(Expr::col(customer::Column::Name)).like(LikeExpr::new(pattern).escape('\\')));
    }
    for (key, value) in &filter.attributes {
        query = query.filter(attribute_equals(backend, key, value));
    }
    if let Some(source) = filter.source {
        query = query.filter(customer::Column::Source.eq(source.as_str()));
    }
    if let Some(id) = &filter.merged_into {
        query = query.filter(customer::Column::MergedIntoId.eq(id.as_str()));
    }
    if let Some(hub) = filter.hub_access_enabled {
        query = query.filter(customer::Column::HubAccessEnabled.eq(hub));
    }
    super::keyset_page(query, customer::Column::Id, after, limit)
        .all(db)
        .await?
        .into_iter()
        .map(to_domain)
        .collect()
}

/// `attributes.KEY = value` on the JSON text column, per backend.
fn attribute_equals(backend: DbBackend, key: &str, value: &str) -> sea_orm::sea_query::SimpleExpr {
    // JSON path with the key quoted, so dots and spaces in keys are literal.
    let path = format!("$.\"{}\"", key.replace('\\', "\\\\").replace('"', "\\\""));
    match backend {
        DbBackend::Postgres => Expr::cust_with_values("(CAST(\"attributes\" AS jsonb) ->> $1) = $2", [key, value]),
        DbBackend::MySql => Expr::cust_with_values(
            "JSON_UNQUOTE(JSON_EXTRACT(`attributes`, ?)) = ?",
            [path.as_str(), value],
        ),
        _ => Expr::cust_with_values("json_extract(\"attributes\", ?) = ?", [path.as_str(), value]),
    }
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}
