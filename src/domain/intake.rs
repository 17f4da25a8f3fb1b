//! Ticket intake: find or create the customer behind a new ticket.
//!
//! Matching: live customer by normalised email, else by E.164 mobile, else
//! the latest deleted customer with that email (then mobile), restored, else
//! a new customer (source TICKET). When the email and the mobile belong to
//! two different customers the email wins and the other is reported.
//! Race-free: the unique identity index decides who creates; losers retry
//! and match the winner. Idempotent: the answer per ticket is stored.

use std::collections::HashMap;

use super::{
    Error, FieldViolation,
    customer::{Customer, CustomerDraft, CustomerInput, Source, State},
    customers::{Customers, new_id},
};
use crate::store::{
    WriteTxn,
    customers::{self as q, IdentityKind, WriteError},
    entities::ticket_link,
    intake::{self as iq, Owners},
};

/// Longest accepted ticket id.
const MAX_TICKET_ID: usize = 128;
/// Attempts before giving up on a hot contended identity.
const ATTEMPTS: usize = 8;

/// What the ticketing platform sends.
#[derive(Debug, Clone, Default)]
pub struct TicketRequester {
    pub ticket_id: String,
    pub name: String,
    pub email: String,
    pub mobile: String,
    pub attributes: HashMap<String, String>,
}

/// Which identifier matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchedBy {
    Email,
    Mobile,
    None,
}

impl MatchedBy {
    fn as_str(self) -> &'static str {
        match self {
            MatchedBy::Email => "EMAIL",
            MatchedBy::Mobile => "MOBILE",
            MatchedBy::None => "NONE",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "EMAIL" => MatchedBy::Email,
            "MOBILE" => MatchedBy::Mobile,
            _ => MatchedBy::None,
        }
    }
}

/// The answer for one ticket.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    pub customer: Customer,
    pub created: bool,
    pub matched_by: MatchedBy,
    /// The other customer holding the ticket's mobile, when the email won.
    pub conflicting_customer_id: Option<String>,
    /// The match was a deleted customer that this ticket restored.
    pub restored: bool,
}

/// The intake use case.
#[derive(Clone, Debug)]
pub struct TicketIntake {
    customers: Customers,
}

enum Attempt {
    Done(Box<Resolution>),
    Retry,
}

impl TicketIntake {
    /// Intake over the customer directory.
    pub fn new(customers: Customers) -> Self {
        Self { customers }
    }

    /// Resolves the ticket's customer; see the module docs.
    pub async fn resolve(&self, request: TicketRequester) -> Result<Resolution, Error> {
        let (ticket_id, draft) = self.validate(request)?;
        let store = self.customers.store();
        if let Some(link) = iq::find_link(store.conn(), &ticket_id).await? {
            return self.replay(link).await;
        }
        for _ in 0..ATTEMPTS {
            if let Attempt::Done(resolution) = self.attempt(&ticket_id, &draft).await? {
                return Ok(*resolution);
            }
        }
        Err(Error::Aborted(format!(
            "ticket {ticket_id}: the requester's customer is contended; retry"
        )))
    }

    fn validate(&self, request: TicketRequester) -> Result<(String, CustomerDraft), Error> {
        let TicketRequester {
            ticket_id,
            name,
            email,
            mobile,
            attributes,
        } = request;
        let settings = self.customers.settings();
        let mut violations = Vec::new();
        let ticket_id = ticket_id.trim().to_owned();
        if ticket_id.is_empty() {
            violations.push(FieldViolation::new("ticket_id", "is required"));
        } else if ticket_id.len() > MAX_TICKET_ID {
            violations.push(FieldViolation::new(
                "ticket_id",
                format!("is longer than {MAX_TICKET_ID} characters"),
            ));
        }
        let input = CustomerInput {
            name,
            email,
            mobile,
            attributes,
            hub_access_enabled: None,
        };
        match input.into_draft("", settings.default_region, settings.hub_access_default) {
            Ok(draft) if violations.is_empty() => Ok((ticket_id, draft)),
            Ok(_) => Err(Error::InvalidArgument(violations)),
            Err(more) => {
                violations.extend(more);
                Err(Error::InvalidArgument(violations))
            }
        }
    }

    /// The stored answer, with the customer as it is now.
    async fn replay(&self, link: ticket_link::Model) -> Result<Resolution, Error> {
        let customer = self.customers.get(&link.customer_id).await?;
        Ok(Resolution {
            customer,
            created: link.created,
            matched_by: MatchedBy::parse(&link.matched_by),
            conflicting_customer_id: link.conflicting_customer_id,
            restored: link.restored,
        })
    }

    /// One transaction. `Retry` when a concurrent call won a race; the next
    /// attempt then sees the winner's rows.
    async fn attempt(&self, ticket_id: &str, draft: &CustomerDraft) -> Result<Attempt, Error> {
        let store = self.customers.store();
        let txn = store.begin_write().await?;
        if let Some(link) = iq::find_link(&*txn, ticket_id).await? {
            drop(txn);
            return Ok(Attempt::Done(Box::new(self.replay(link).await?)));
        }
        let email = draft.email.as_ref().map(|e| e.normalised());
        let mobile = draft.mobile.as_ref().map(|m| m.e164());
        let owners = iq::live_owners(&*txn, email, mobile).await?;
        let now = super::now();

        let matched = match (&owners.email, &owners.mobile) {
            (Some(id), other) => Some((id.clone(), MatchedBy::Email, other.clone().filter(|o| o != id), false)),
            (None, Some(id)) => Some((id.clone(), MatchedBy::Mobile, None, false)),
            (None, None) => self.restorable(&txn, draft).await?.map(|(id, by)| (id, by, None, true)),
        };

        let mut resolution = match matched {
            None => match q::insert(&*txn, &new_id(), draft, Source::Ticket, now).await {
                Ok(customer) => Resolution {
                    customer,
                    created: true,
                    matched_by: MatchedBy::None,
                    conflicting_customer_id: None,
                    restored: false,
                },
                Err(WriteError::Taken(_) | WriteError::Stale) => return Ok(Attempt::Retry),
                Err(WriteError::Db(e)) => return Err(e.into()),
            },
            Some((id, matched_by, conflicting_customer_id, restore)) => {
                let Some(mut customer) = q::find(&*txn, &id).await? else {
                    return Ok(Attempt::Retry);
                };
                if restore {
                    customer = match q::set_state(&*txn, &customer, State::Active, now).await {
                        Ok(c) => c,
                        Err(WriteError::Taken(_) | WriteError::Stale) => return Ok(Attempt::Retry),
                        Err(WriteError::Db(e)) => return Err(e.into()),
                    };
                }
                if let Some(filled) = fill_in(&customer, draft, &owners) {
                    customer = match q::save(&*txn, &customer, &filled, now).await {
                        Ok(c) => c,
                        Err(WriteError::Taken(_) | WriteError::Stale) => return Ok(Attempt::Retry),
                        Err(WriteError::Db(e)) => return Err(e.into()),
                    };
                }
                Resolution {
                    customer,
                    created: false,
                    matched_by,
                    conflicting_customer_id,
                    restored: restore,
                }
            }
        };

        iq::count_ticket(&*txn, &resolution.customer.id, now).await?;
        let link = ticket_link::Model {
            ticket_id: ticket_id.to_owned(),
            customer_id: resolution.customer.id.clone(),
            created: resolution.created,
            matched_by: resolution.matched_by.as_str().to_owned(),
            conflicting_customer_id: resolution.conflicting_customer_id.clone(),
            restored: resolution.restored,
            create_time: now,
        };
        if let Err(e) = iq::insert_link(&*txn, link).await {
            if crate::store::is_unique_violation(&e) {
                return Ok(Attempt::Retry);
            }
            return Err(e.into());
        }
        txn.commit().await?;
        let c = &mut resolution.customer;
        c.ticket_count += 1;
        c.first_ticket_time.get_or_insert(now);
        c.last_ticket_time = Some(now);
        Ok(Attempt::Done(Box::new(resolution)))
    }

    /// A deleted customer with the ticket's email (else mobile) whose
    /// identities are all free again, so restoring it breaks no rule.
    async fn restorable(&self, txn: &WriteTxn, draft: &CustomerDraft) -> Result<Option<(String, MatchedBy)>, Error> {
        let keys = [
            (
                IdentityKind::Email,
                MatchedBy::Email,
                draft.email.as_ref().map(|e| e.normalised()),
            ),
            (
                IdentityKind::Mobile,
                MatchedBy::Mobile,
                draft.mobile.as_ref().map(|m| m.e164()),
            ),
        ];
        for (kind, by, key) in keys {
            let Some(key) = key else { continue };
            let Some(id) = iq::deleted_owner(&**txn, kind, key).await? else {
                continue;
            };
            let Some(deleted) = q::find(&**txn, &id).await? else {
                continue;
            };
            let own = deleted.to_draft();
            let owners = iq::live_owners(
                &**txn,
                own.email.as_ref().map(|e| e.normalised()),
                own.mobile.as_ref().map(|m| m.e164()),
            )
            .await?;
            if owners == Owners::default() {
                return Ok(Some((id, by)));
            }
        }
        Ok(None)
    }
}

/// What a matched customer lacks and the ticket has: a missing email or
/// mobile (when no one else holds it), a missing name, missing attribute
/// keys. Never overwrites what is there. `None` when nothing is missing.
fn fill_in(customer: &Customer, ticket: &CustomerDraft, owners: &Owners) -> Option<CustomerDraft> {
    let mut draft = customer.to_draft();
    let before = draft.clone();
    if draft.email.is_none() && owners.email.is_none() {
        draft.email = ticket.email.clone();
    }
    if draft.mobile.is_none() && owners.mobile.is_none() {
        draft.mobile = ticket.mobile.clone();
    }
    if draft.name.is_empty() {
        draft.name = ticket.name.clone();
    }
    for (key, value) in &ticket.attributes {
        if !value.is_empty() {
            draft.attributes.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
    (draft != before).then_some(draft)
}
