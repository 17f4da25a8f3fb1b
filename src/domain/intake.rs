//! Ticket intake: find or create the customer behind a new ticket.
//!
//! Matching: live customer by normalised email, else by E.164 mobile, else
//! the latest deleted customer with that email (then mobile), restored, else
//! a new customer (source TICKET). When the email and the mobile belong to
//! two different customers the email wins and the other is reported.
//! Race-free: the unique identity index decides who creates; losers retry
//! and match the winner. Idempotent: the answer per ticket is stored.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use sea_orm::DbErr;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::{
    Error, FieldViolation,
    auth::Principal,
    customer::{Customer, CustomerDraft, CustomerInput, Source, State},
    customers::{Customers, new_id},
    history::{Action, Entry, Journal, Origin},
    organizations::{DefaultRights, ORGANIZATION_ATTRIBUTE as ORGANIZATION, link_by_domain, link_by_name},
};
use crate::store::{
    WriteTxn,
    customers::{self as q, IdentityKind, WriteError},
    entities::ticket_link,
    intake::{self as iq, Keys, Owners},
    intake_batch::{BatchWriter, NewRows, Snapshot},
};

/// Longest accepted ticket id.
const MAX_TICKET_ID: usize = 128;
/// Attempts before giving up on a hot contended identity.
const ATTEMPTS: usize = 8;
/// Most tickets resolved in one batch transaction.
const MAX_BATCH: usize = 256;

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
///
/// Calls queue for a batch writer that resolves whatever has accumulated with
/// two set-based statements, one read and one atomic write (group commit):
/// the cost of a transaction is paid once per batch instead of once per
/// ticket. Tickets a
/// batch should not decide alone (fill-in, restore, a ticket twice in one
/// batch) and whole batches that fail (a concurrent replica won a race) go
/// through the single-ticket path, which handles every case.
#[derive(Clone, Debug)]
pub struct TicketIntake {
    customers: Customers,
    queue: mpsc::Sender<Job>,
}

/// One queued ticket; the answer is `None` when the batch defers it.
#[derive(Debug)]
struct Job {
    ticket_id: String,
    draft: CustomerDraft,
    /// Who asked, for the history of a customer the ticket creates.
    principal: String,
    reply: oneshot::Sender<Option<Resolution>>,
}

enum Attempt {
    Done(Box<Resolution>),
    Retry,
}

impl TicketIntake {
    /// Intake over the customer directory; starts the batch writer.
    ///
    /// The writer runs on a thread of its own: on the server's runtime each
    /// statement's result woke it through the runtime's shared queue,
    /// behind the gRPC tasks (on SQLite half of each batch's time was that
    /// wait); its connection is its own, opened on its thread.
    /// One writer on every backend: two overlapped their round trips but
    /// split the queue into batches half as large, which cost the database
    /// up to 40% more CPU per ticket (MySQL ~30%) for no more tickets a
    /// second.
    pub fn new(customers: Customers) -> Self {
        let (queue, jobs) = mpsc::channel(4 * MAX_BATCH);
        // Shared, so that a writer can start again on the server's runtime.
        let jobs = Arc::new(Mutex::new(jobs));
        if let Err(e) = spawn_dedicated(batch_writer(customers.clone(), jobs.clone())) {
            tracing::warn!(error = %e, "no thread for the intake writer; it shares the server's runtime");
            tokio::spawn(batch_writer(customers.clone(), jobs));
        }
        Self { customers, queue }
    }

    /// Resolves the ticket's customer; see the module docs.
    pub async fn resolve(&self, request: TicketRequester, by: &Principal) -> Result<Resolution, Error> {
        let (ticket_id, draft) = self.validate(request)?;
        // The single-ticket path's future is kilobytes (SeaORM's); boxed,
        // the common path's future stays small and cheap to move.
        if self.links_organizations(&draft) {
            return Box::pin(self.resolve_one(&ticket_id, &draft, by)).await;
        }
        let (reply, answer) = oneshot::channel();
        let job = Job {
            ticket_id: ticket_id.clone(),
            draft: draft.clone(),
            principal: by.name.clone(),
            reply,
        };
        if self.queue.send(job).await.is_ok()
            && let Ok(Some(resolution)) = answer.await
        {
            return Ok(resolution);
        }
        Box::pin(self.resolve_one(&ticket_id, &draft, by)).await
    }

    /// Tickets that may join organisations take the single-ticket path.
    fn links_organizations(&self, draft: &CustomerDraft) -> bool {
        draft.attributes.get(ORGANIZATION).is_some_and(|o| !o.trim().is_empty())
            || (self.customers.settings().org_domain_assignment && draft.email.is_some())
    }

    /// The single-ticket path: every case, retried until the races settle.
    async fn resolve_one(&self, ticket_id: &str, draft: &CustomerDraft, by: &Principal) -> Result<Resolution, Error> {
        let ticket_id = ticket_id.to_owned();
        let store = self.customers.store();
        if let Some(link) = iq::find_link(store.conn(), &ticket_id).await? {
            return self.replay(link).await;
        }
        for _ in 0..ATTEMPTS {
            if let Attempt::Done(resolution) = self.attempt(&ticket_id, draft, by).await? {
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

    /// The stored answer, with the customer as it is now (the one it was
    /// merged into, if it was).
    async fn replay(&self, link: ticket_link::Model) -> Result<Resolution, Error> {
        let customer = self.customers.get_following_merges(&link.customer_id).await?;
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
    async fn attempt(&self, ticket_id: &str, draft: &CustomerDraft, by: &Principal) -> Result<Attempt, Error> {
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
        let mut journal = Journal::new(by, Origin::Ticket(ticket_id.to_owned()));

        let matched = match (&owners.email, &owners.mobile) {
            (Some(id), other) => Some((id.clone(), MatchedBy::Email, other.clone().filter(|o| o != id), false)),
            (None, Some(id)) => Some((id.clone(), MatchedBy::Mobile, None, false)),
            (None, None) => self
                .deleted_match(&txn, draft)
                .await?
                .map(|(id, by, restore)| (id, by, None, restore)),
        };

        let mut resolution = match matched {
            None => match q::insert(&*txn, &new_id(), draft, Source::Ticket, now).await {
                Ok(customer) => Resolution {
                    customer: {
                        journal.customer_created(&customer);
                        customer
                    },
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
                        Ok(c) => {
                            journal.customer_state(&c.id, Action::Undelete);
                            c
                        }
                        Err(WriteError::Taken(_) | WriteError::Stale) => return Ok(Attempt::Retry),
                        Err(WriteError::Db(e)) => return Err(e.into()),
                    };
                }
                if let Some(filled) = fill_in(&customer, draft, &owners) {
                    customer = match q::save(&*txn, &customer, &filled, now).await {
                        Ok(c) => {
                            journal.customer_updated(&c.id, &customer.to_draft(), &filled);
                            c
                        }
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

        // Organisation links: by the `organization` attribute (created if
        // missing), and for new customers by email domain when enabled.
        let id = resolution.customer.id.clone();
        let linked = async {
            if let Some(name) = draft.attributes.get(ORGANIZATION) {
                link_by_name(&*txn, &mut journal, &id, name, DefaultRights::default()).await?;
            }
            if resolution.created
                && self.customers.settings().org_domain_assignment
                && let Some(email) = &draft.email
            {
                link_by_domain(&*txn, &mut journal, &id, email.domain(), DefaultRights::default()).await?;
            }
            journal.write(&*txn).await
        };
        match linked.await {
            Ok(()) => {}
            Err(e) if crate::store::is_unique_violation(&e) => return Ok(Attempt::Retry),
            Err(e) => return Err(e.into()),
        }
        // Storing the link counts the ticket on the customer row.
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

    /// With no live match: the latest deleted customer with the ticket's
    /// email (else mobile). One that was merged stands for the customer it
    /// was merged into, matched as it is when Active (`restore` false);
    /// a deleted one is restored only if its identities are all free again,
    /// so restoring it breaks no rule.
    async fn deleted_match(
        &self,
        txn: &WriteTxn,
        draft: &CustomerDraft,
    ) -> Result<Option<(String, MatchedBy, bool)>, Error> {
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
            let Some(mut deleted) = q::find(&**txn, &id).await? else {
                continue;
            };
            if deleted.merged_into.is_some() {
                deleted = self.customers.follow_merges(&**txn, deleted).await?;
                if deleted.state == State::Active {
                    return Ok(Some((deleted.id, by, false)));
                }
            }
            let own = deleted.to_draft();
            let owners = iq::live_owners_of(&**txn, &own).await?;
            if owners == Owners::default() {
                return Ok(Some((deleted.id, by, true)));
            }
        }
        Ok(None)
    }
}

/// What a matched customer lacks and the ticket (or a merged duplicate)
/// has: a missing email or mobile (when no one else holds it), a missing
/// name, missing attribute keys. Never overwrites what is there. `None`
/// when nothing is missing.
pub(super) fn fill_in(customer: &Customer, ticket: &CustomerDraft, owners: &Owners) -> Option<CustomerDraft> {
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

/// Runs `writer` on a thread with a runtime of its own; the thread ends with
/// the writer, when the intake is dropped.
fn spawn_dedicated(writer: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new()
        .name("intake-writer".into())
        .spawn(move || runtime.block_on(writer))?;
    Ok(())
}

/// Drains the queue in batches until the intake is dropped.
async fn batch_writer(customers: Customers, jobs: Arc<Mutex<mpsc::Receiver<Job>>>) {
    let mut writer = BatchWriter::new(customers.store().clone());
    writer.warm_up().await;
    loop {
        let mut batch = Vec::new();
        {
            let mut jobs = jobs.lock().await;
            match jobs.recv().await {
                Some(job) => batch.push(job),
                None => return writer.close().await,
            }
            while batch.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
        }
        let started = std::time::Instant::now();
        let answers = match resolve_batch(&mut writer, &batch).await {
            Ok(answers) => {
                let deferred = answers.iter().filter(|a| a.is_none()).count();
                tracing::debug!(size = batch.len(), deferred, elapsed = ?started.elapsed(), "intake batch");
                answers
            }
            Err(e) => {
                tracing::debug!(error = %e, size = batch.len(), "intake batch deferred to the single-ticket path");
                vec![None; batch.len()]
            }
        };
        for (job, answer) in batch.into_iter().zip(answers) {
            // The caller may have gone (deadline, cancel); its ticket is stored anyway.
            let _ = job.reply.send(answer);
        }
    }
}

/// What the batch decided for one ticket.
enum Decision {
    Replay(ticket_link::Model),
    Resolved {
        customer_id: String,
        created: bool,
        matched_by: MatchedBy,
        conflicting: Option<String>,
    },
}

/// Resolves the simple tickets of a batch with one read and one atomic
/// write; `None` for each ticket left to the single-ticket path.
async fn resolve_batch(writer: &mut BatchWriter, jobs: &[Job]) -> Result<Vec<Option<Resolution>>, DbErr> {
    let mut batch = writer.start().await?;
    let now = super::now();

    let ticket_ids: Vec<String> = jobs.iter().map(|j| j.ticket_id.clone()).collect();
    let key_of = |j: &Job| {
        (
            j.draft
                .email
                .as_ref()
                .map(|e| (IdentityKind::Email, e.normalised().to_owned())),
            j.draft
                .mobile
                .as_ref()
                .map(|m| (IdentityKind::Mobile, m.e164().to_owned())),
        )
    };
    let mut keys = Keys::default();
    for job in jobs {
        let (email, mobile) = key_of(job);
        keys.emails.extend(email.map(|k| k.1));
        keys.mobiles.extend(mobile.map(|k| k.1));
    }
    let Snapshot {
        links,
        owners,
        deleted,
        customers: found,
    } = batch.read(&ticket_ids, &keys).await?;
    let mut known: HashMap<String, Customer> = found.into_iter().map(|c| (c.id.clone(), c)).collect();

    let mut pending: HashMap<(IdentityKind, String), String> = HashMap::new();
    let mut created: Vec<(Customer, CustomerDraft)> = Vec::new();
    let mut counts: HashMap<String, i64> = HashMap::new();
    let mut journals = Vec::new();
    let mut seen = HashSet::new();
    let mut decisions = Vec::with_capacity(jobs.len());
    for job in jobs {
        if !seen.insert(job.ticket_id.as_str()) {
            decisions.push(None); // the same ticket twice: replay after commit
            continue;
        }
        if let Some(link) = links.get(&job.ticket_id) {
            decisions.push(Some(Decision::Replay(link.clone())));
            continue;
        }
        let (email, mobile) = key_of(job);
        let owner = |key: &Option<(IdentityKind, String)>| {
            key.as_ref()
                .and_then(|k| owners.get(k).or_else(|| pending.get(k)))
                .cloned()
        };
        let ticket_owners = Owners {
            email: owner(&email),
            mobile: owner(&mobile),
        };
        let (customer_id, matched_by, conflicting) = match (&ticket_owners.email, &ticket_owners.mobile) {
            (Some(a), b) => (a.clone(), MatchedBy::Email, b.clone().filter(|b| b != a)),
            (None, Some(b)) => (b.clone(), MatchedBy::Mobile, None),
            (None, None) => {
                if [&email, &mobile].into_iter().flatten().any(|k| deleted.contains(k)) {
                    decisions.push(None); // a restore: single-ticket path
                    continue;
                }
                let customer = Customer::new_active(new_id(), &job.draft, Source::Ticket, now);
                let mut entry = Journal::named(job.principal.clone(), Origin::Ticket(job.ticket_id.clone()));
                entry.customer_created(&customer);
                journals.push(entry);
                for key in [email, mobile].into_iter().flatten() {
                    pending.insert(key, customer.id.clone());
                }
                *counts.entry(customer.id.clone()).or_default() += 1;
                decisions.push(Some(Decision::Resolved {
                    customer_id: customer.id.clone(),
                    created: true,
                    matched_by: MatchedBy::None,
                    conflicting: None,
                }));
                created.push((customer, job.draft.clone()));
                continue;
            }
        };
        let customer = known
            .get(&customer_id)
            .or_else(|| created.iter().map(|(c, _)| c).find(|c| c.id == customer_id));
        match customer {
            Some(customer) if fill_in(customer, &job.draft, &ticket_owners).is_none() => {
                *counts.entry(customer_id.clone()).or_default() += 1;
                decisions.push(Some(Decision::Resolved {
                    customer_id,
                    created: false,
                    matched_by,
                    conflicting,
                }));
            }
            _ => decisions.push(None), // fill-in: single-ticket path
        }
    }

    // New customers are stored without tickets; storing the links counts
    // them on the customer rows.
    let new_links: Vec<ticket_link::Model> = jobs
        .iter()
        .zip(&decisions)
        .filter_map(|(job, decision)| match decision {
            Some(Decision::Resolved {
                customer_id,
                created,
                matched_by,
                conflicting,
            }) => Some(ticket_link::Model {
                ticket_id: job.ticket_id.clone(),
                customer_id: customer_id.clone(),
                created: *created,
                matched_by: matched_by.as_str().to_owned(),
                conflicting_customer_id: conflicting.clone(),
                restored: false,
                create_time: now,
            }),
            _ => None,
        })
        .collect();
    let history: Vec<Entry> = journals.into_iter().flat_map(Journal::into_entries).collect();
    let rows = NewRows {
        customers: &created,
        links: &new_links,
        history: &history,
    };
    batch.finish(rows).await?;

    // Answers show each customer as the batch left it.
    known.extend(created.into_iter().map(|(c, _)| (c.id.clone(), c)));
    for (id, n) in &counts {
        if let Some(c) = known.get_mut(id) {
            c.ticket_count += n;
            c.first_ticket_time.get_or_insert(now);
            c.last_ticket_time = Some(now);
        }
    }
    Ok(decisions
        .into_iter()
        .map(|decision| match decision? {
            // A merged customer's answer: the single-ticket path follows it.
            Decision::Replay(link) => Some(Resolution {
                customer: known
                    .get(&link.customer_id)
                    .filter(|c| c.merged_into.is_none())?
                    .clone(),
                created: link.created,
                matched_by: MatchedBy::parse(&link.matched_by),
                conflicting_customer_id: link.conflicting_customer_id,
                restored: link.restored,
            }),
            Decision::Resolved {
                customer_id,
                created,
                matched_by,
                conflicting,
            } => Some(Resolution {
                customer: known.get(&customer_id)?.clone(),
                created,
                matched_by,
                conflicting_customer_id: conflicting,
                restored: false,
            }),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every intake call's future is allocated and moved whole; inlined,
    /// the single-ticket path made it ~6 KiB (SeaORM futures) on every call.
    #[tokio::test]
    async fn the_common_paths_future_stays_small() {
        let store = crate::store::Store::connect("sqlite::memory:", &Default::default())
            .await
            .unwrap();
        let intake = TicketIntake::new(Customers::new(store, Default::default()));
        let by = Principal::anonymous();
        let resolving = intake.resolve(TicketRequester::default(), &by);
        let size = std::mem::size_of_val(&resolving);
        assert!(size < 2048, "resolve's future is {size} bytes");
    }
}
