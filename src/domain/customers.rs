//! The customer lifecycle: create, read, list, update, delete, undelete.
//! Each write is one transaction; uniqueness comes from the database.

use super::{
    Error, FieldViolation,
    auth::Principal,
    customer::{Customer, CustomerDraft, CustomerInput, FieldParser, Source, State},
    filter::CustomerFilter,
    history::{Action, Entry, History, Journal, Origin, customer_resource},
    mobile::Region,
    page::{PageToken, page_size, paged},
};
use crate::store::{
    Store, WriteTxn,
    customers::{self as q, IdentityKind, WriteError},
    is_unique_violation,
};

/// Longest accepted `request_id`.
const MAX_REQUEST_ID: usize = 128;
/// How often a write is retried after losing an optimistic-concurrency race.
const STALE_RETRIES: usize = 5;

/// Settings that shape customer rules.
#[derive(Debug, Clone, Copy)]
pub struct CustomerSettings {
    /// Region for national phone numbers.
    pub default_region: Region,
    /// Hub access of customers created without saying.
    pub hub_access_default: bool,
    /// New customers join the Active organisation that claims their email domain.
    pub org_domain_assignment: bool,
}

impl Default for CustomerSettings {
    fn default() -> Self {
        Self {
            default_region: Region::default(),
            hub_access_default: true,
            org_domain_assignment: false,
        }
    }
}

/// What UpdateCustomer asks for.
#[derive(Debug, Clone, Default)]
pub struct CustomerUpdate {
    pub id: String,
    pub fields: CustomerInput,
    /// Field mask paths; empty means every field set in `fields`.
    pub mask: Vec<String>,
    /// Expected etag; empty means "whatever is stored".
    pub etag: String,
}

pub use super::page::Page;

/// The customer directory.
#[derive(Clone, Debug)]
pub struct Customers {
    store: Store,
    settings: CustomerSettings,
}

impl Customers {
    /// A directory over `store`.
    pub fn new(store: Store, settings: CustomerSettings) -> Self {
        Self { store, settings }
    }

    /// The settings in force.
    pub fn settings(&self) -> CustomerSettings {
        self.settings
    }

    /// The store, for sibling domain services.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Creates a customer; a repeated `request_id` returns the first result.
    pub async fn create(&self, input: CustomerInput, request_id: &str, by: &Principal) -> Result<Customer, Error> {
        if request_id.len() > MAX_REQUEST_ID {
            return Err(Error::invalid(
                "request_id",
                format!("is longer than {MAX_REQUEST_ID} characters"),
            ));
        }
        let draft = input
            .into_draft(
                "customer.",
                self.settings.default_region,
                self.settings.hub_access_default,
            )
            .map_err(Error::InvalidArgument)?;
        if !request_id.is_empty()
            && let Some(id) = q::find_create_request(self.store.conn(), request_id).await?
        {
            return self.get(&id).await;
        }
        let id = new_id();
        let now = super::now();
        let txn = self.store.begin_write().await?;
        let created = match q::insert(&*txn, &id, &draft, Source::Manual, now).await {
            Ok(c) => c,
            Err(e) => {
                drop(txn);
                // A concurrent twin of this request may hold the identity:
                // then its result is this request's result too.
                if !request_id.is_empty()
                    && let Some(id) = q::find_create_request(self.store.conn(), request_id).await?
                {
                    return self.get(&id).await;
                }
                return Err(self.write_failed(e, &draft).await);
            }
        };
        let mut journal = Journal::new(by, Origin::Call);
        journal.customer_created(&created);
        if self.settings.org_domain_assignment
            && let Some(email) = &draft.email
        {
            super::organizations::link_by_domain(&*txn, &mut journal, &id, email.domain(), Default::default()).await?;
        }
        if !request_id.is_empty()
            && let Err(e) = q::insert_create_request(&*txn, request_id, &id, now).await
        {
            drop(txn);
            if !is_unique_violation(&e) {
                return Err(e.into());
            }
            // A concurrent twin of this request won; answer with its result.
            let winner = q::find_create_request(self.store.conn(), request_id).await?;
            return self
                .get(&winner.ok_or_else(|| Error::Aborted("retry the request".into()))?)
                .await;
        }
        journal.write(&*txn).await?;
        txn.commit().await?;
        Ok(created)
    }

    /// The customer with `id`, deleted or not.
    pub async fn get(&self, id: &str) -> Result<Customer, Error> {
        check_id(id)?;
        q::find(self.store.conn(), id)
            .await?
            .ok_or_else(|| Error::customer_not_found(id))
    }

    /// One page of customers in creation order.
    pub async fn list(
        &self,
        page_size_req: i32,
        page_token: &str,
        filter: &str,
        show_deleted: bool,
    ) -> Result<Page<Customer>, Error> {
        let limit = page_size(page_size_req)?;
        let parsed = CustomerFilter::parse(filter, self.settings.default_region)?;
        let query = format!("{show_deleted}|{filter}");
        let after = PageToken::decode(page_token, &query)?.map(|t| t.after);
        let items = q::list(self.store.conn(), &parsed, show_deleted, after.as_deref(), limit + 1).await?;
        Ok(paged(items, limit, query, |c| c.id.clone()))
    }

    /// One page of the customer's history (NOT_FOUND for unknown ids).
    pub async fn history(&self, id: &str, page_size: i32, page_token: &str) -> Result<Page<Entry>, Error> {
        self.get(id).await?;
        History::new(self.store.clone())
            .list(&customer_resource(id), page_size, page_token)
            .await
    }

    /// Applies an update; see [`CustomerUpdate`].
    pub async fn update(&self, update: CustomerUpdate, by: &Principal) -> Result<Customer, Error> {
        check_id(&update.id)?;
        let paths = update_paths(&update)?;
        self.retrying(
            &update.id,
            &update.etag,
            by,
            WriteOp::Update {
                paths: &paths,
                fields: &update.fields,
            },
        )
        .await
    }

    /// Soft-deletes: out of the Active list, identities freed, restorable.
    pub async fn delete(&self, id: &str, etag: &str, by: &Principal) -> Result<Customer, Error> {
        check_id(id)?;
        self.retrying(id, etag, by, WriteOp::Delete).await
    }

    /// Restores a deleted customer unless its identities were taken meanwhile.
    pub async fn undelete(&self, id: &str, etag: &str, by: &Principal) -> Result<Customer, Error> {
        check_id(id)?;
        self.retrying(id, etag, by, WriteOp::Undelete).await
    }

    /// Runs `op` in a write transaction on the current row; retries when a
    /// concurrent writer got there first, unless the caller pinned an etag.
    async fn retrying(&self, id: &str, etag: &str, by: &Principal, op: WriteOp<'_>) -> Result<Customer, Error> {
        let mismatch = || Error::EtagMismatch {
            resource: super::error::Resource::Customer,
            id: id.to_owned(),
        };
        for _ in 0..STALE_RETRIES {
            let txn = self.store.begin_write().await?;
            let before = q::find(&*txn, id).await?.ok_or_else(|| Error::customer_not_found(id))?;
            if !etag.is_empty() && etag != before.etag() {
                return Err(mismatch());
            }
            let step = match op {
                WriteOp::Update { paths, fields } => self.update_step(&txn, &before, paths, fields).await?,
                WriteOp::Delete => self.delete_step(&txn, &before).await?,
                WriteOp::Undelete => self.undelete_step(&txn, &before).await?,
            };
            match step {
                Step::Done(customer) => {
                    let mut journal = Journal::new(by, Origin::Call);
                    match op {
                        _ if customer.revision == before.revision => {} // nothing changed
                        WriteOp::Update { .. } => {
                            journal.customer_updated(id, &before.to_draft(), &customer.to_draft())
                        }
                        WriteOp::Delete => journal.customer_state(id, Action::Delete),
                        WriteOp::Undelete => journal.customer_state(id, Action::Undelete),
                    }
                    journal.write(&*txn).await?;
                    txn.commit().await?;
                    return Ok(*customer);
                }
                Step::Stale if !etag.is_empty() => return Err(mismatch()),
                Step::Stale => continue,
            }
        }
        Err(Error::Aborted(format!("customer {id} is changing too fast; retry")))
    }

    async fn update_step(
        &self,
        txn: &WriteTxn,
        before: &Customer,
        paths: &[String],
        fields: &CustomerInput,
    ) -> Result<Step, Error> {
        if before.state == State::Deleted {
            return Err(Error::FailedPrecondition {
                reason: "CUSTOMER_DELETED",
                message: format!("customer {} is deleted; undelete it before updating", before.id),
                metadata: vec![("customer_id", before.id.clone())],
            });
        }
        let draft = apply_paths(before.to_draft(), paths, fields, self.settings.default_region)?;
        if draft == before.to_draft() {
            return Ok(Step::Done(Box::new(before.clone())));
        }
        self.finish_write(q::save(&**txn, before, &draft, super::now()).await, &draft)
            .await
    }

    async fn delete_step(&self, txn: &WriteTxn, before: &Customer) -> Result<Step, Error> {
        if before.state == State::Deleted {
            return Err(Error::FailedPrecondition {
                reason: "CUSTOMER_ALREADY_DELETED",
                message: format!("customer {} is already deleted", before.id),
                metadata: vec![("customer_id", before.id.clone())],
            });
        }
        let result = q::set_state(&**txn, before, State::Deleted, super::now()).await;
        self.finish_write(result, &before.to_draft()).await
    }

    async fn undelete_step(&self, txn: &WriteTxn, before: &Customer) -> Result<Step, Error> {
        let id = &before.id;
        if before.state == State::Active {
            return Err(Error::FailedPrecondition {
                reason: "CUSTOMER_NOT_DELETED",
                message: format!("customer {id} is not deleted"),
                metadata: vec![("customer_id", id.clone())],
            });
        }
        if let Some(into) = &before.merged_into {
            return Err(Error::FailedPrecondition {
                reason: "CUSTOMER_MERGED",
                message: format!("customer {id} was merged into {into}; it cannot be undeleted"),
                metadata: vec![("customer_id", id.clone()), ("merged_into_id", into.clone())],
            });
        }
        let result = q::set_state(&**txn, before, State::Active, super::now()).await;
        match self.finish_write(result, &before.to_draft()).await {
            Err(Error::AlreadyExists { field, existing_id, .. }) => Err(Error::FailedPrecondition {
                reason: "IDENTITY_TAKEN",
                message: format!(
                    "cannot undelete customer {id}: active customer {existing_id} now has the same {field}"
                ),
                metadata: vec![
                    ("customer_id", id.clone()),
                    ("existing_customer_id", existing_id),
                    ("field", field.to_owned()),
                ],
            }),
            other => other,
        }
    }

    /// Turns a write result into a step, looking up who holds a taken identity.
    async fn finish_write(&self, result: Result<Customer, WriteError>, draft: &CustomerDraft) -> Result<Step, Error> {
        match result {
            Ok(c) => Ok(Step::Done(Box::new(c))),
            Err(WriteError::Stale) => Ok(Step::Stale),
            Err(e) => Err(self.write_failed(e, draft).await),
        }
    }

    /// The error for a failed write. Must run after the failed transaction
    /// was dropped when it reads (PostgreSQL aborts it on a violation).
    async fn write_failed(&self, err: WriteError, draft: &CustomerDraft) -> Error {
        match err {
            WriteError::Taken(kind) => {
                let key = match kind {
                    IdentityKind::Email => draft.email.as_ref().map(|e| e.normalised().to_owned()),
                    IdentityKind::Mobile => draft.mobile.as_ref().map(|m| m.e164().to_owned()),
                };
                let Some(key) = key else {
                    return Error::Internal(format!("{} conflict without a value", kind.as_str()));
                };
                match q::live_owner(self.store.conn(), kind, &key).await {
                    Ok(Some(existing_id)) => Error::AlreadyExists {
                        resource: super::error::Resource::Customer,
                        field: kind.as_str(),
                        existing_id,
                    },
                    Ok(None) => Error::Aborted(format!("the {} was in use a moment ago; retry", kind.as_str())),
                    Err(e) => e.into(),
                }
            }
            WriteError::Stale => Error::Aborted("the customer changed meanwhile; retry".into()),
            WriteError::Db(e) => e.into(),
        }
    }
}

/// A read-modify-write on one customer.
#[derive(Clone, Copy)]
enum WriteOp<'a> {
    Update {
        paths: &'a [String],
        fields: &'a CustomerInput,
    },
    Delete,
    Undelete,
}

/// Outcome of one attempt inside [`Customers::retrying`].
enum Step {
    Done(Box<Customer>),
    Stale,
}

/// A new time-ordered id: lexical order is creation order, which keeps
/// keyset pagination stable and index inserts append-only.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn check_id(id: &str) -> Result<(), Error> {
    if id.trim().is_empty() {
        return Err(Error::invalid("id", "is required"));
    }
    Ok(())
}

/// Fields UpdateCustomer may touch.
const UPDATABLE: [&str; 5] = ["name", "email", "mobile", "attributes", "hub_access_enabled"];

fn update_paths(update: &CustomerUpdate) -> Result<Vec<String>, Error> {
    let f = &update.fields;
    let paths = super::mask::effective_paths(
        update.mask.clone(),
        &[
            ("name", !f.name.is_empty()),
            ("email", !f.email.is_empty()),
            ("mobile", !f.mobile.is_empty()),
            ("attributes", !f.attributes.is_empty()),
            ("hub_access_enabled", f.hub_access_enabled.is_some()),
        ],
    )?;
    let mut violations = Vec::new();
    let mut checked = Vec::new();
    for path in &paths {
        match path.as_str() {
            "*" => checked.extend(UPDATABLE.iter().map(|p| (*p).to_owned())),
            p if UPDATABLE.contains(&p) => checked.push(p.to_owned()),
            p if p.strip_prefix("attributes.").is_some_and(|k| !k.trim().is_empty()) => checked.push(p.to_owned()),
            p => violations.push(FieldViolation::new(
                "update_mask",
                format!(
                    "{p:?} is not updatable; use name, email, mobile, attributes, attributes.KEY or hub_access_enabled"
                ),
            )),
        }
    }
    if violations.is_empty() {
        Ok(checked)
    } else {
        Err(Error::InvalidArgument(violations))
    }
}

fn apply_paths(
    mut draft: CustomerDraft,
    paths: &[String],
    f: &CustomerInput,
    region: Region,
) -> Result<CustomerDraft, Error> {
    let mut p = FieldParser::new("customer.", region);
    for path in paths {
        match path.as_str() {
            "name" => draft.name = p.name(&f.name),
            "email" => draft.email = p.email(&f.email),
            "mobile" => draft.mobile = p.mobile(&f.mobile),
            "attributes" => draft.attributes = p.attributes(&f.attributes),
            "hub_access_enabled" => draft.hub_access_enabled = f.hub_access_enabled.unwrap_or(false),
            other => {
                // `attributes.KEY`: set that key, or remove it when absent/empty.
                let key = other.trim_start_matches("attributes.").trim();
                let value = f.attributes.iter().find(|(k, _)| k.trim() == key).map(|(_, v)| v);
                match value {
                    Some(v) if !v.trim().is_empty() => {
                        let single = [(key.to_owned(), v.clone())].into_iter().collect();
                        draft.attributes.extend(p.attributes(&single));
                    }
                    _ => {
                        draft.attributes.remove(key);
                    }
                }
            }
        }
    }
    let draft = p.finish(draft).map_err(Error::InvalidArgument)?;
    draft.check_reachable("customer.").map_err(Error::InvalidArgument)?;
    if draft.attributes.len() > super::attributes::MAX_ATTRIBUTES {
        return Err(Error::invalid("customer.attributes", "too many attributes"));
    }
    Ok(draft)
}
