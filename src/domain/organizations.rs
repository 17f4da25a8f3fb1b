//! Organisations, memberships and ticket rights on behalf of organisations.

use chrono::{DateTime, Utc};

use super::{
    Error, FieldViolation,
    attributes::{Attributes, parse_attributes},
    auth::Principal,
    customer::State,
    customers::{Customers, Page, new_id},
    error::Resource,
    history::{Action, Entry, History, Journal, Origin, organization_resource},
    page::{PageToken, page_size, paged},
};
use crate::store::{
    Store, customers as cq, is_unique_violation,
    organizations::{self as q},
};

const MAX_NAME: usize = 200;
/// The customer attribute that links a customer to an organisation by name.
pub const ORGANIZATION_ATTRIBUTE: &str = "organization";
const MAX_DOMAINS: usize = 50;

/// A stored organisation.
#[derive(Debug, Clone, PartialEq)]
pub struct Organization {
    pub id: String,
    pub name: String,
    pub domains: Vec<String>,
    pub attributes: Attributes,
    pub state: State,
    pub revision: i64,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    pub delete_time: Option<DateTime<Utc>>,
}

impl Organization {
    /// Opaque version token.
    pub fn etag(&self) -> String {
        super::customer::etag_of(self.revision)
    }

    fn draft(&self) -> OrganizationDraft {
        OrganizationDraft {
            name: self.name.clone(),
            domains: self.domains.clone(),
            attributes: self.attributes.clone(),
        }
    }
}

/// Validated organisation fields.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OrganizationDraft {
    pub name: String,
    /// Lower case, sorted, unique.
    pub domains: Vec<String>,
    pub attributes: Attributes,
}

/// Unvalidated organisation fields.
#[derive(Debug, Clone, Default)]
pub struct OrganizationInput {
    pub name: String,
    pub domains: Vec<String>,
    pub attributes: std::collections::HashMap<String, String>,
}

/// A customer's membership of an organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub organization_id: String,
    pub customer_id: String,
    pub can_view_tickets: bool,
    pub can_create_tickets: bool,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

/// What a customer wants to do for an organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketAction {
    View,
    Create,
}

/// Rights a membership made by import, intake or domain assignment gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultRights {
    pub can_view_tickets: bool,
    pub can_create_tickets: bool,
}

impl Default for DefaultRights {
    fn default() -> Self {
        Self {
            can_view_tickets: true,
            can_create_tickets: false,
        }
    }
}

fn parse_domain(raw: &str) -> Option<String> {
    let d = raw.trim().trim_start_matches('@').to_lowercase();
    let ok = !d.is_empty()
        && d.len() <= 253
        && d.contains('.')
        && !d.starts_with(['.', '-'])
        && !d.ends_with(['.', '-'])
        && !d.contains("..")
        && d.chars().all(|c| c.is_alphanumeric() || c == '.' || c == '-');
    ok.then_some(d)
}

impl OrganizationInput {
    fn into_draft(self, prefix: &str) -> Result<OrganizationDraft, Vec<FieldViolation>> {
        let OrganizationInput {
            name,
            domains,
            attributes,
        } = self;
        let mut violations = Vec::new();
        let name = name.trim().to_owned();
        if name.is_empty() {
            violations.push(FieldViolation::new(format!("{prefix}name"), "is required"));
        } else if name.chars().count() > MAX_NAME {
            violations.push(FieldViolation::new(
                format!("{prefix}name"),
                format!("is longer than {MAX_NAME} characters"),
            ));
        }
        let mut parsed = Vec::new();
        for raw in &domains {
            match parse_domain(raw) {
                Some(d) => parsed.push(d),
                None => violations.push(FieldViolation::new(
                    format!("{prefix}domains"),
                    format!("{raw:?} is not a domain"),
                )),
            }
        }
        parsed.sort();
        parsed.dedup();
        if parsed.len() > MAX_DOMAINS {
            violations.push(FieldViolation::new(
                format!("{prefix}domains"),
                format!("at most {MAX_DOMAINS} domains"),
            ));
        }
        let attributes = parse_attributes(&attributes, &format!("{prefix}attributes")).unwrap_or_else(|v| {
            violations.extend(v);
            Attributes::new()
        });
        if violations.is_empty() {
            Ok(OrganizationDraft {
                name,
                domains: parsed,
                attributes,
            })
        } else {
            Err(violations)
        }
    }
}

/// The organisation use cases.
#[derive(Clone, Debug)]
pub struct Organizations {
    customers: Customers,
}

impl Organizations {
    /// Organisations over the customer directory (memberships need customers).
    pub fn new(customers: Customers) -> Self {
        Self { customers }
    }

    fn store(&self) -> &Store {
        self.customers.store()
    }

    /// Creates an organisation with a unique (case-insensitive) name.
    pub async fn create(&self, input: OrganizationInput, by: &Principal) -> Result<Organization, Error> {
        let draft = input.into_draft("organization.").map_err(Error::InvalidArgument)?;
        let txn = self.store().begin_write().await?;
        match q::insert(&*txn, &new_id(), &draft, super::now()).await {
            Ok(org) => {
                let mut journal = Journal::new(by, Origin::Call);
                journal.organization_created(&org);
                journal.write(&*txn).await?;
                txn.commit().await?;
                Ok(org)
            }
            Err(e) if is_unique_violation(&e) => {
                drop(txn);
                Err(self.name_taken(&draft.name).await)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn name_taken(&self, name: &str) -> Error {
        match q::find_live_by_name(self.store().conn(), name).await {
            Ok(Some(holder)) => Error::AlreadyExists {
                resource: Resource::Organization,
                field: "name",
                existing_id: holder.id,
            },
            Ok(None) => Error::Aborted("the name was in use a moment ago; retry".into()),
            Err(e) => e.into(),
        }
    }

    /// The organisation with `id`, deleted or not.
    pub async fn get(&self, id: &str) -> Result<Organization, Error> {
        if id.trim().is_empty() {
            return Err(Error::invalid("id", "is required"));
        }
        q::find(self.store().conn(), id).await?.ok_or_else(|| Error::NotFound {
            resource: Resource::Organization,
            id: id.to_owned(),
        })
    }

    /// One page of the organisation's history (NOT_FOUND for unknown ids).
    pub async fn history(&self, id: &str, page_size: i32, page_token: &str) -> Result<Page<Entry>, Error> {
        self.get(id).await?;
        History::new(self.store().clone())
            .list(&organization_resource(id), page_size, page_token)
            .await
    }

    /// One page of organisations in creation order.
    pub async fn list(
        &self,
        page_size_req: i32,
        page_token: &str,
        show_deleted: bool,
    ) -> Result<Page<Organization>, Error> {
        let limit = page_size(page_size_req)?;
        let query = format!("orgs|{show_deleted}");
        let after = PageToken::decode(page_token, &query)?.map(|t| t.after);
        let items = q::list(self.store().conn(), show_deleted, after.as_deref(), limit + 1).await?;
        Ok(paged(items, limit, query, |o| o.id.clone()))
    }

    /// Updates name/domains/attributes per `mask` (empty: every set field).
    pub async fn update(
        &self,
        id: &str,
        input: OrganizationInput,
        mask: Vec<String>,
        etag: &str,
        by: &Principal,
    ) -> Result<Organization, Error> {
        let paths = super::mask::effective_paths(
            mask,
            &[
                ("name", !input.name.is_empty()),
                ("domains", !input.domains.is_empty()),
                ("attributes", !input.attributes.is_empty()),
            ],
        )?;
        self.change(id, etag, by, |before| {
            if before.state == State::Deleted {
                return Err(Error::FailedPrecondition {
                    reason: "ORGANIZATION_DELETED",
                    message: format!("organization {id} is deleted; undelete it before updating"),
                    metadata: vec![("organization_id", id.to_owned())],
                });
            }
            let mut draft = before.draft();
            // Validate the sent fields as a whole draft, then take the masked ones.
            let name = if input.name.trim().is_empty() {
                before.name.clone()
            } else {
                input.name.clone()
            };
            let sent = OrganizationInput { name, ..input.clone() }
                .into_draft("organization.")
                .map_err(Error::InvalidArgument)?;
            for path in &paths {
                match path.as_str() {
                    "name" => draft.name = sent.name.clone(),
                    "domains" => draft.domains = sent.domains.clone(),
                    "attributes" => draft.attributes = sent.attributes.clone(),
                    other => {
                        return Err(Error::invalid(
                            "update_mask",
                            format!("{other:?} is not updatable; use name, domains or attributes"),
                        ));
                    }
                }
            }
            Ok((draft, State::Active))
        })
        .await
    }

    /// Soft-deletes: memberships stay but grant nothing while deleted.
    pub async fn delete(&self, id: &str, etag: &str, by: &Principal) -> Result<Organization, Error> {
        self.change(id, etag, by, |before| {
            if before.state == State::Deleted {
                return Err(Error::FailedPrecondition {
                    reason: "ORGANIZATION_ALREADY_DELETED",
                    message: format!("organization {id} is already deleted"),
                    metadata: vec![("organization_id", id.to_owned())],
                });
            }
            Ok((before.draft(), State::Deleted))
        })
        .await
    }

    /// Restores a deleted organisation unless its name was taken meanwhile.
    pub async fn undelete(&self, id: &str, by: &Principal) -> Result<Organization, Error> {
        self.change(id, "", by, |before| {
            if before.state == State::Active {
                return Err(Error::FailedPrecondition {
                    reason: "ORGANIZATION_NOT_DELETED",
                    message: format!("organization {id} is not deleted"),
                    metadata: vec![("organization_id", id.to_owned())],
                });
            }
            Ok((before.draft(), State::Active))
        })
        .await
    }

    async fn change(
        &self,
        id: &str,
        etag: &str,
        by: &Principal,
        decide: impl Fn(&Organization) -> Result<(OrganizationDraft, State), Error>,
    ) -> Result<Organization, Error> {
        if id.trim().is_empty() {
            return Err(Error::invalid("id", "is required"));
        }
        let txn = self.store().begin_write().await?;
        let before = q::find(&*txn, id).await?.ok_or_else(|| Error::NotFound {
            resource: Resource::Organization,
            id: id.to_owned(),
        })?;
        if !etag.is_empty() && etag != before.etag() {
            return Err(Error::EtagMismatch {
                resource: Resource::Organization,
                id: id.to_owned(),
            });
        }
        let (draft, state) = decide(&before)?;
        if draft == before.draft() && state == before.state {
            return Ok(before);
        }
        match q::save(&*txn, &before, &draft, state, super::now()).await {
            Ok(Some(org)) => {
                let mut journal = Journal::new(by, Origin::Call);
                match (before.state, state) {
                    (State::Active, State::Deleted) => journal.organization_state(id, Action::Delete),
                    (State::Deleted, State::Active) => journal.organization_state(id, Action::Undelete),
                    _ => journal.organization_updated(&before, &org),
                }
                journal.write(&*txn).await?;
                txn.commit().await?;
                Ok(org)
            }
            Ok(None) => Err(Error::Aborted(format!("organization {id} changed meanwhile; retry"))),
            Err(e) if is_unique_violation(&e) => {
                drop(txn);
                match self.name_taken(&draft.name).await {
                    Error::AlreadyExists { existing_id, .. } if state == before.state => Err(Error::AlreadyExists {
                        resource: Resource::Organization,
                        field: "name",
                        existing_id,
                    }),
                    Error::AlreadyExists { existing_id, .. } => Err(Error::FailedPrecondition {
                        reason: "NAME_TAKEN",
                        message: format!(
                            "cannot undelete organization {id}: active organization {existing_id} has its name"
                        ),
                        metadata: vec![
                            ("organization_id", id.to_owned()),
                            ("existing_organization_id", existing_id),
                        ],
                    }),
                    other => Err(other),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Adds a member, or sets the rights of an existing membership.
    pub async fn add_member(
        &self,
        organization_id: &str,
        customer_id: &str,
        view: bool,
        create: bool,
        by: &Principal,
    ) -> Result<Membership, Error> {
        let org = self.get(organization_id).await?;
        if org.state == State::Deleted {
            return Err(Error::FailedPrecondition {
                reason: "ORGANIZATION_DELETED",
                message: format!("organization {organization_id} is deleted"),
                metadata: vec![("organization_id", organization_id.to_owned())],
            });
        }
        let customer = self.customers.get(customer_id).await?;
        if customer.state == State::Deleted {
            return Err(Error::FailedPrecondition {
                reason: "CUSTOMER_DELETED",
                message: format!("customer {customer_id} is deleted"),
                metadata: vec![("customer_id", customer_id.to_owned())],
            });
        }
        let txn = self.store().begin_write().await?;
        let (before, membership) = upsert_membership(&*txn, organization_id, customer_id, view, create).await?;
        let mut journal = Journal::new(by, Origin::Call);
        journal.membership(before.as_ref(), Some(&membership));
        journal.write(&*txn).await?;
        txn.commit().await?;
        Ok(membership)
    }

    /// Removes a membership; NOT_FOUND when there is none.
    pub async fn remove_member(&self, organization_id: &str, customer_id: &str, by: &Principal) -> Result<(), Error> {
        require(organization_id, "organization_id")?;
        require(customer_id, "customer_id")?;
        let txn = self.store().begin_write().await?;
        let not_found = || Error::NotFound {
            resource: Resource::Membership,
            id: format!("{organization_id}/{customer_id}"),
        };
        let membership = q::find_membership(&*txn, organization_id, customer_id)
            .await?
            .ok_or_else(not_found)?;
        if !q::delete_membership(&*txn, organization_id, customer_id).await? {
            return Err(not_found());
        }
        let mut journal = Journal::new(by, Origin::Call);
        journal.membership(Some(&membership), None);
        journal.write(&*txn).await?;
        txn.commit().await?;
        Ok(())
    }

    /// One page of an organisation's members.
    pub async fn list_members(
        &self,
        organization_id: &str,
        page_size_req: i32,
        page_token: &str,
    ) -> Result<Page<Membership>, Error> {
        self.get(organization_id).await?;
        let limit = page_size(page_size_req)?;
        let query = format!("members|{organization_id}");
        let after = PageToken::decode(page_token, &query)?.map(|t| t.after);
        let items = q::list_members(self.store().conn(), organization_id, after.as_deref(), limit + 1).await?;
        Ok(paged(items, limit, query, |m| m.customer_id.clone()))
    }

    /// Every membership of a customer, with its organisation.
    pub async fn customer_organizations(&self, customer_id: &str) -> Result<Vec<(Membership, Organization)>, Error> {
        self.customers.get(customer_id).await?;
        Ok(q::customer_memberships(self.store().conn(), customer_id).await?)
    }

    /// Whether the customer may do `action` for the organisation, and why.
    pub async fn check_ticket_access(
        &self,
        customer_id: &str,
        organization_id: &str,
        action: Option<TicketAction>,
    ) -> Result<(bool, &'static str), Error> {
        require(customer_id, "customer_id")?;
        require(organization_id, "organization_id")?;
        let action = action.ok_or_else(|| Error::invalid("action", "must be VIEW or CREATE"))?;
        let db = self.store().conn();
        let reason = match cq::find(db, customer_id).await? {
            None => "CUSTOMER_NOT_FOUND",
            Some(c) if c.state == State::Deleted => "CUSTOMER_DELETED",
            Some(c) if !c.hub_access_enabled => "HUB_ACCESS_DISABLED",
            Some(_) => match q::find(db, organization_id).await? {
                None => "ORGANIZATION_NOT_FOUND",
                Some(o) if o.state == State::Deleted => "ORGANIZATION_DELETED",
                Some(_) => match q::find_membership(db, organization_id, customer_id).await? {
                    None => "NOT_A_MEMBER",
                    Some(m) if action == TicketAction::View && !m.can_view_tickets => "NO_VIEW_RIGHT",
                    Some(m) if action == TicketAction::Create && !m.can_create_tickets => "NO_CREATE_RIGHT",
                    Some(_) => "ALLOWED",
                },
            },
        };
        Ok((reason == "ALLOWED", reason))
    }
}

fn require(value: &str, field: &str) -> Result<(), Error> {
    if value.trim().is_empty() {
        Err(Error::invalid(field, "is required"))
    } else {
        Ok(())
    }
}

/// Inserts or updates a membership inside `db`'s transaction; returns the
/// membership before (if any) and after.
async fn upsert_membership(
    db: &impl sea_orm::ConnectionTrait,
    organization_id: &str,
    customer_id: &str,
    view: bool,
    create: bool,
) -> Result<(Option<Membership>, Membership), Error> {
    let now = super::now();
    match q::find_membership(db, organization_id, customer_id).await? {
        Some(before) => {
            let mut m = before.clone();
            if (m.can_view_tickets, m.can_create_tickets) != (view, create) {
                m.can_view_tickets = view;
                m.can_create_tickets = create;
                m.update_time = now;
                q::update_rights(db, &m).await?;
            }
            Ok((Some(before), m))
        }
        None => {
            let m = Membership {
                organization_id: organization_id.to_owned(),
                customer_id: customer_id.to_owned(),
                can_view_tickets: view,
                can_create_tickets: create,
                create_time: now,
                update_time: now,
            };
            q::insert_membership(db, &m).await?;
            Ok((None, m))
        }
    }
}

/// Links a customer to the organisation named `name` (created if missing)
/// with `rights`, unless already a member. Runs in the caller's transaction;
/// a unique violation (a concurrent creator of the same name) surfaces as a
/// `DbErr` for the caller to retry.
pub async fn link_by_name(
    db: &impl sea_orm::ConnectionTrait,
    journal: &mut Journal,
    customer_id: &str,
    name: &str,
    rights: DefaultRights,
) -> Result<(), sea_orm::DbErr> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Ok(());
    }
    let org = match q::find_live_by_name(db, name).await? {
        Some(org) => org,
        None => {
            let draft = OrganizationDraft {
                name: name.to_owned(),
                ..Default::default()
            };
            let org = q::insert(db, &new_id(), &draft, super::now()).await?;
            journal.organization_created(&org);
            org
        }
    };
    link(db, journal, customer_id, &org.id, rights).await
}

/// One customer to link to an organisation by name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct OrgLink {
    pub customer_id: String,
    pub organization: String,
    /// Created in this transaction, so it has no memberships to look up.
    pub customer_is_new: bool,
}

/// [`link_by_name`] for many customers at once, with a few set-based
/// queries (import batches).
pub async fn link_many_by_name(
    db: &impl sea_orm::ConnectionTrait,
    journal: &mut Journal,
    links: &[OrgLink],
    rights: DefaultRights,
) -> Result<(), sea_orm::DbErr> {
    use std::collections::{BTreeSet, HashMap, HashSet};
    let links: Vec<(&OrgLink, &str)> = links
        .iter()
        .map(|l| (l, l.organization.trim()))
        .filter(|(_, o)| !o.is_empty() && o.chars().count() <= MAX_NAME)
        .collect();
    if links.is_empty() {
        return Ok(());
    }
    let keys: BTreeSet<String> = links.iter().map(|(_, o)| o.to_lowercase()).collect();
    let mut org_of_key: HashMap<String, String> = q::find_live_ids_by_name_keys(db, &keys).await?;
    for (_, name) in &links {
        if let std::collections::hash_map::Entry::Vacant(slot) = org_of_key.entry(name.to_lowercase()) {
            let draft = OrganizationDraft {
                name: (*name).to_owned(),
                ..Default::default()
            };
            let org = q::insert(db, &new_id(), &draft, super::now()).await?;
            journal.organization_created(&org);
            slot.insert(org.id);
        }
    }
    let stored: BTreeSet<&str> = links
        .iter()
        .filter(|(l, _)| !l.customer_is_new)
        .map(|(l, _)| l.customer_id.as_str())
        .collect();
    let existing: HashSet<(String, String)> = q::memberships_of_customers(db, &stored).await?;
    let now = super::now();
    let mut new = Vec::new();
    let mut seen = HashSet::new();
    for (link, name) in links {
        let organization_id = &org_of_key[&name.to_lowercase()];
        let key = (organization_id.clone(), link.customer_id.clone());
        if !existing.contains(&key) && seen.insert(key) {
            new.push(Membership {
                organization_id: organization_id.clone(),
                customer_id: link.customer_id.clone(),
                can_view_tickets: rights.can_view_tickets,
                can_create_tickets: rights.can_create_tickets,
                create_time: now,
                update_time: now,
            });
        }
    }
    for m in &new {
        journal.membership(None, Some(m));
    }
    q::insert_memberships(db, &new).await
}

/// Links a customer to the oldest Active organisation claiming the
/// customer's email domain, if any.
pub async fn link_by_domain(
    db: &impl sea_orm::ConnectionTrait,
    journal: &mut Journal,
    customer_id: &str,
    email_domain: &str,
    rights: DefaultRights,
) -> Result<(), sea_orm::DbErr> {
    match q::find_live_by_domain(db, email_domain).await? {
        Some(org) => link(db, journal, customer_id, &org.id, rights).await,
        None => Ok(()),
    }
}

async fn link(
    db: &impl sea_orm::ConnectionTrait,
    journal: &mut Journal,
    customer_id: &str,
    organization_id: &str,
    rights: DefaultRights,
) -> Result<(), sea_orm::DbErr> {
    if q::find_membership(db, organization_id, customer_id).await?.is_none() {
        let now = super::now();
        let m = Membership {
            organization_id: organization_id.to_owned(),
            customer_id: customer_id.to_owned(),
            can_view_tickets: rights.can_view_tickets,
            can_create_tickets: rights.can_create_tickets,
            create_time: now,
            update_time: now,
        };
        q::insert_membership(db, &m).await?;
        journal.membership(None, Some(&m));
    }
    Ok(())
}
