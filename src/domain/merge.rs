//! Merging a duplicate customer into the one that stays.
//!
//! One transaction, both rows locked first: the duplicate is deleted for
//! good (`merged_into`), the one that stays gains what it lacks (as a
//! ticket's fill-in would: never overwriting), takes over the duplicate's
//! ticket counters and memberships, and both histories get a MERGE entry.
//! Ticket links stay where they are: intake follows `merged_into` from a
//! stored answer and from the duplicate's email or mobile, so re-pointing
//! them (a scan of every link: the table has no index by customer) is not
//! needed.

use super::{
    Error, FieldViolation,
    auth::Principal,
    customer::{Customer, State},
    customers::Customers,
    history::{Journal, Origin},
    intake::fill_in,
    organizations::Membership,
};
use crate::store::{
    WriteTxn,
    customers::{self as q, WriteError},
    intake as iq, is_unique_violation, organizations as oq,
};

/// Attempts before a merge that keeps losing races gives up.
const ATTEMPTS: usize = 5;
/// Longest chain of merges followed (A into B, later B into C, ...).
const MAX_HOPS: usize = 16;

/// What MergeCustomers asks for.
#[derive(Debug, Clone, Default)]
pub struct MergeRequest {
    /// The customer that stays.
    pub id: String,
    /// The duplicate merged into it.
    pub source_id: String,
    pub etag: String,
    pub source_etag: String,
}

/// The two customers as the merge left them.
#[derive(Debug, Clone)]
pub struct Merged {
    pub customer: Customer,
    pub merged: Customer,
}

enum Attempt {
    Done(Box<Merged>),
    Retry,
}

impl Customers {
    /// Merges `source_id` into `id`; see the module docs.
    pub async fn merge(&self, request: &MergeRequest, by: &Principal) -> Result<Merged, Error> {
        check(request)?;
        for _ in 0..ATTEMPTS {
            let txn = self.store().begin_write().await?;
            match self.merge_once(&txn, request, by).await {
                Ok(Attempt::Done(merged)) => {
                    txn.commit().await?;
                    return Ok(*merged);
                }
                Ok(Attempt::Retry) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Aborted(format!(
            "customers {} and {} are changing too fast; retry",
            request.id, request.source_id
        )))
    }

    async fn merge_once(&self, txn: &WriteTxn, request: &MergeRequest, by: &Principal) -> Result<Attempt, Error> {
        let mut locked = q::lock_many(&**txn, &[&request.id, &request.source_id]).await?;
        let take = |locked: &mut Vec<Customer>, id: &str| {
            let at = locked.iter().position(|c| c.id == id);
            at.map(|at| locked.swap_remove(at))
                .ok_or_else(|| Error::customer_not_found(id))
        };
        let target = take(&mut locked, &request.id)?;
        let source = take(&mut locked, &request.source_id)?;
        check_states(request, &target, &source)?;

        let now = super::now();
        let merged = match q::mark_merged(&**txn, &source, &target.id, now).await {
            Ok(c) => c,
            Err(WriteError::Stale | WriteError::Taken(_)) => return Ok(Attempt::Retry),
            Err(WriteError::Db(e)) => return Err(e.into()),
        };
        // What the one that stays lacks, as a ticket would fill it in; its
        // Hub access flag stays its own. Asked after the duplicate let go
        // of its identities, so only someone else's hold stops them.
        let theirs = source.to_draft();
        let holders = iq::live_owners_of(&**txn, &theirs).await?;
        let mut customer = target.clone();
        if let Some(filled) = fill_in(&target, &theirs, &holders) {
            customer = match q::save(&**txn, &target, &filled, now).await {
                Ok(c) => c,
                Err(WriteError::Stale | WriteError::Taken(_)) => return Ok(Attempt::Retry),
                Err(WriteError::Db(e)) => return Err(e.into()),
            };
        }
        q::add_tickets(&**txn, &target.id, &source).await?;

        let mut journal = Journal::new(by, Origin::Call);
        journal.customers_merged((&target, &customer), (&source, &merged));
        let moved = async {
            for (theirs, _) in oq::customer_memberships(&**txn, &source.id).await? {
                let ours = oq::find_membership(&**txn, &theirs.organization_id, &target.id).await?;
                let joined = Membership {
                    customer_id: target.id.clone(),
                    can_view_tickets: theirs.can_view_tickets || ours.as_ref().is_some_and(|m| m.can_view_tickets),
                    can_create_tickets: theirs.can_create_tickets
                        || ours.as_ref().is_some_and(|m| m.can_create_tickets),
                    create_time: ours.as_ref().map_or(now, |m| m.create_time),
                    update_time: now,
                    ..theirs.clone()
                };
                match &ours {
                    None => oq::insert_membership(&**txn, &joined).await?,
                    Some(m)
                        if (m.can_view_tickets, m.can_create_tickets)
                            != (joined.can_view_tickets, joined.can_create_tickets) =>
                    {
                        oq::update_rights(&**txn, &joined).await?
                    }
                    Some(_) => {}
                }
                journal.membership(ours.as_ref(), Some(&joined));
                oq::delete_membership(&**txn, &theirs.organization_id, &source.id).await?;
                journal.membership(Some(&theirs), None);
            }
            journal.write(&**txn).await
        };
        match moved.await {
            Ok(()) => {}
            // A concurrent AddMember for the one that stays: start again.
            Err(e) if is_unique_violation(&e) => return Ok(Attempt::Retry),
            Err(e) => return Err(e.into()),
        }
        // Counters were added in the database; show them as stored.
        let customer = q::find(&**txn, &customer.id)
            .await?
            .ok_or_else(|| Error::customer_not_found(&customer.id))?;
        Ok(Attempt::Done(Box::new(Merged { customer, merged })))
    }

    /// The customer with `id`, or the one it was merged into (following a
    /// chain of merges).
    pub async fn get_following_merges(&self, id: &str) -> Result<Customer, Error> {
        let customer = self.get(id).await?;
        self.follow_merges(self.store().conn(), customer).await
    }

    /// Where `customer` ended up: itself, unless it was merged.
    pub(super) async fn follow_merges(
        &self,
        db: &impl sea_orm::ConnectionTrait,
        mut customer: Customer,
    ) -> Result<Customer, Error> {
        for _ in 0..MAX_HOPS {
            let Some(next) = &customer.merged_into else {
                return Ok(customer);
            };
            customer = q::find(db, next)
                .await?
                .ok_or_else(|| Error::customer_not_found(next))?;
        }
        Err(Error::Internal(format!(
            "customer {}: a chain of more than {MAX_HOPS} merges",
            customer.id
        )))
    }
}

fn check(request: &MergeRequest) -> Result<(), Error> {
    let mut violations = Vec::new();
    if request.id.trim().is_empty() {
        violations.push(FieldViolation::new("id", "is required"));
    }
    if request.source_id.trim().is_empty() {
        violations.push(FieldViolation::new("source_id", "is required"));
    } else if request.source_id == request.id {
        violations.push(FieldViolation::new("source_id", "must differ from id"));
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(Error::InvalidArgument(violations))
    }
}

fn check_states(request: &MergeRequest, target: &Customer, source: &Customer) -> Result<(), Error> {
    for (etag, c) in [(&request.etag, target), (&request.source_etag, source)] {
        if !etag.is_empty() && *etag != c.etag() {
            return Err(Error::EtagMismatch {
                resource: super::error::Resource::Customer,
                id: c.id.clone(),
            });
        }
    }
    if target.state == State::Deleted {
        return Err(Error::FailedPrecondition {
            reason: "CUSTOMER_DELETED",
            message: format!(
                "customer {} is deleted; merge into an active customer (or undelete it first)",
                target.id
            ),
            metadata: vec![("customer_id", target.id.clone())],
        });
    }
    if let Some(into) = &source.merged_into {
        return Err(Error::FailedPrecondition {
            reason: "CUSTOMER_MERGED",
            message: format!("customer {} was already merged into {into}", source.id),
            metadata: vec![("customer_id", source.id.clone()), ("merged_into_id", into.clone())],
        });
    }
    Ok(())
}
