//! Matching one batch of import rows against the stored customers and the
//! rows before them, in file order. Pure: the caller looks the batch's emails
//! and mobiles up first and writes the plan afterwards, in one transaction.
//!
//! Rows are applied one after another, as if each were its own request: a
//! row that is the same person as an earlier row (or an earlier batch)
//! updates the customer that row created, so one file never makes two
//! customers of one person.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::row::{ImportRecord, RowProblem};
use crate::{
    domain::{
        attributes::Attributes,
        customer::{Customer, CustomerDraft, Source},
        organizations::{ORGANIZATION_ATTRIBUTE, OrgLink},
    },
    store::{customers::IdentityKind, intake::Keys},
};

/// What to do with rows that match an existing customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Update matched customers with the row's non-empty cells.
    #[default]
    Upsert,
    /// Skip and report rows that match.
    CreateOnly,
}

/// What happened to one valid row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
    Skipped(RowProblem),
    Failed(RowProblem),
}

/// One customer the batch touches.
#[derive(Debug)]
struct Slot {
    id: String,
    draft: CustomerDraft,
    /// The stored customer; `None` when a row of this batch creates it.
    before: Option<Customer>,
    /// Row that created it or first matched it.
    first_row: u64,
    changed: bool,
    /// Organisations whose names rows set, to link the customer to.
    organizations: Vec<String>,
}

/// The batch's effect, ready to write.
#[derive(Debug, Default)]
pub struct Plan {
    slots: Vec<Slot>,
    /// One per input row, in order.
    pub outcomes: Vec<Outcome>,
}

/// The emails and mobiles of a batch, to look up before planning.
pub fn keys(records: &[ImportRecord]) -> Keys {
    let mut keys = Keys::default();
    for r in records {
        if let Some(e) = &r.email {
            keys.emails.push(e.normalised().to_owned());
        }
        if let Some(m) = &r.mobile {
            keys.mobiles.push(m.e164().to_owned());
        }
    }
    keys.emails.sort_unstable();
    keys.emails.dedup();
    keys.mobiles.sort_unstable();
    keys.mobiles.dedup();
    keys
}

/// The stored side of a batch: live owners of its keys and those customers.
pub struct Stored {
    pub owners: HashMap<(IdentityKind, String), String>,
    pub customers: Vec<Customer>,
}

/// Settings planning needs.
pub struct PlanSettings {
    pub mode: Mode,
    pub hub_access_default: bool,
}

impl Plan {
    /// Applies `records` in order.
    pub fn build(
        records: &[ImportRecord],
        stored: Stored,
        settings: &PlanSettings,
        mut new_id: impl FnMut() -> String,
    ) -> Self {
        let mut plan = Plan::default();
        let mut customers: HashMap<String, Customer> =
            stored.customers.into_iter().map(|c| (c.id.clone(), c)).collect();
        // Who holds each key now: a slot, or nobody (freed by an earlier row).
        let mut holders: HashMap<(IdentityKind, String), Option<usize>> = HashMap::new();
        let mut slot_of_id: HashMap<String, usize> = HashMap::new();

        for record in records {
            let email_key = record
                .email
                .as_ref()
                .map(|e| (IdentityKind::Email, e.normalised().to_owned()));
            let mobile_key = record
                .mobile
                .as_ref()
                .map(|m| (IdentityKind::Mobile, m.e164().to_owned()));
            let mut holder = |key: &Option<(IdentityKind, String)>, plan: &mut Plan| -> Option<usize> {
                let key = key.as_ref()?;
                if let Some(held) = holders.get(key) {
                    return *held;
                }
                let id = stored.owners.get(key)?;
                if let Some(&slot) = slot_of_id.get(id) {
                    return Some(slot);
                }
                let customer = customers.remove(id)?;
                plan.slots.push(Slot {
                    id: id.clone(),
                    draft: customer.to_draft(),
                    before: Some(customer),
                    first_row: record.row_number,
                    changed: false,
                    organizations: Vec::new(),
                });
                slot_of_id.insert(id.clone(), plan.slots.len() - 1);
                Some(plan.slots.len() - 1)
            };
            let by_email = holder(&email_key, &mut plan);
            let by_mobile = holder(&mobile_key, &mut plan);

            let outcome = match (by_email, by_mobile) {
                (Some(a), Some(b)) if a != b => Outcome::Failed(RowProblem::new(
                    record.row_number,
                    "mobile",
                    record.mobile.as_ref().map_or("", |m| m.original()),
                    "IDENTITY_CONFLICT",
                    format!(
                        "The email belongs to customer {} but this mobile belongs to another customer, {}; \
                         the row was not imported. If they are one person, merge them (MergeCustomers).",
                        plan.slots[a].id, plan.slots[b].id
                    ),
                )),
                (None, None) => {
                    let draft = CustomerDraft {
                        name: record.name.clone().unwrap_or_default(),
                        email: record.email.clone(),
                        mobile: record.mobile.clone(),
                        attributes: record.attributes.clone(),
                        hub_access_enabled: record.hub_access.unwrap_or(settings.hub_access_default),
                    };
                    let index = plan.slots.len();
                    for key in [&email_key, &mobile_key].into_iter().flatten() {
                        holders.insert(key.clone(), Some(index));
                    }
                    plan.slots.push(Slot {
                        id: new_id(),
                        draft,
                        before: None,
                        first_row: record.row_number,
                        changed: true,
                        organizations: organization_of(&record.attributes),
                    });
                    Outcome::Created
                }
                (Some(slot), _) | (None, Some(slot)) => match settings.mode {
                    Mode::CreateOnly => {
                        let s = &plan.slots[slot];
                        let message = if s.before.is_some() {
                            format!(
                                "Customer {} already has this email or mobile; CREATE_ONLY leaves it as it is.",
                                s.id
                            )
                        } else {
                            format!(
                                "Row {} of this file is the same person; CREATE_ONLY keeps that row.",
                                s.first_row
                            )
                        };
                        Outcome::Skipped(RowProblem::new(record.row_number, "", "", "SKIPPED_EXISTING", message))
                    }
                    Mode::Upsert => {
                        let s = &mut plan.slots[slot];
                        let merged = merge(&mut s.draft, record);
                        for key in merged.freed {
                            holders.insert(key, None);
                        }
                        for key in [&email_key, &mobile_key].into_iter().flatten() {
                            holders.insert(key.clone(), Some(slot));
                        }
                        if let Some(name) = merged.organization {
                            s.organizations.push(name);
                        }
                        if merged.changed {
                            s.changed = true;
                            Outcome::Updated
                        } else {
                            Outcome::Unchanged
                        }
                    }
                },
            };
            plan.outcomes.push(outcome);
        }
        plan
    }

    /// Customers to insert, with their drafts.
    pub fn inserts(&self, now: DateTime<Utc>) -> Vec<(Customer, CustomerDraft)> {
        self.slots
            .iter()
            .filter(|s| s.before.is_none())
            .map(|s| {
                (
                    Customer::new_active(s.id.clone(), &s.draft, Source::Import, now),
                    s.draft.clone(),
                )
            })
            .collect()
    }

    /// Stored customers that changed: (as read, as they should be).
    pub fn updates(&self) -> impl Iterator<Item = (&Customer, &CustomerDraft)> {
        self.slots
            .iter()
            .filter(|s| s.changed)
            .filter_map(|s| Some((s.before.as_ref()?, &s.draft)))
    }

    /// Customers to link to organisations the rows named.
    pub fn organization_links(&self) -> Vec<OrgLink> {
        let mut links: Vec<OrgLink> = self
            .slots
            .iter()
            .flat_map(|s| {
                s.organizations.iter().map(|o| OrgLink {
                    customer_id: s.id.clone(),
                    organization: o.clone(),
                    customer_is_new: s.before.is_none(),
                })
            })
            .collect();
        links.sort();
        links.dedup();
        links
    }
}

fn organization_of(attributes: &Attributes) -> Vec<String> {
    attributes.get(ORGANIZATION_ATTRIBUTE).cloned().into_iter().collect()
}

/// What applying one row to a customer did.
struct Merged {
    changed: bool,
    /// Keys the customer no longer holds.
    freed: Vec<(IdentityKind, String)>,
    /// A new organisation name the row set.
    organization: Option<String>,
}

/// Applies the row's non-empty cells; empty cells keep what is stored.
fn merge(draft: &mut CustomerDraft, record: &ImportRecord) -> Merged {
    let mut merged = Merged {
        changed: false,
        freed: Vec::new(),
        organization: None,
    };
    if let Some(name) = &record.name
        && *name != draft.name
    {
        draft.name = name.clone();
        merged.changed = true;
    }
    if let Some(email) = &record.email
        && draft.email.as_ref().map(|e| e.as_str()) != Some(email.as_str())
    {
        if let Some(old) = draft.email.replace(email.clone())
            && old.normalised() != email.normalised()
        {
            merged.freed.push((IdentityKind::Email, old.normalised().to_owned()));
        }
        merged.changed = true;
    }
    if let Some(mobile) = &record.mobile
        && draft.mobile.as_ref().map(|m| m.e164()) != Some(mobile.e164())
    {
        if let Some(old) = draft.mobile.replace(mobile.clone()) {
            merged.freed.push((IdentityKind::Mobile, old.e164().to_owned()));
        }
        merged.changed = true;
    }
    for (key, value) in &record.attributes {
        if draft.attributes.get(key) != Some(value) {
            if key == ORGANIZATION_ATTRIBUTE {
                merged.organization = Some(value.clone());
            }
            draft.attributes.insert(key.clone(), value.clone());
            merged.changed = true;
        }
    }
    if let Some(hub) = record.hub_access
        && hub != draft.hub_access_enabled
    {
        draft.hub_access_enabled = hub;
        merged.changed = true;
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        email::Email,
        mobile::{Mobile, Region},
    };

    fn record(row: u64, email: Option<&str>, mobile: Option<&str>, name: &str) -> ImportRecord {
        ImportRecord {
            row_number: row,
            name: (!name.is_empty()).then(|| name.to_owned()),
            email: email.map(|e| Email::parse(e).unwrap()),
            mobile: mobile.map(|m| Mobile::parse(m, Region::default()).unwrap()),
            attributes: Attributes::new(),
            hub_access: None,
        }
    }

    fn build(records: &[ImportRecord], stored: Stored, mode: Mode) -> Plan {
        let mut n = 0;
        Plan::build(
            records,
            stored,
            &PlanSettings {
                mode,
                hub_access_default: true,
            },
            || {
                n += 1;
                format!("new-{n}")
            },
        )
    }

    fn nothing_stored() -> Stored {
        Stored {
            owners: HashMap::new(),
            customers: Vec::new(),
        }
    }

    #[test]
    fn later_rows_update_the_customer_an_earlier_row_created() {
        let rows = [
            record(1, Some("ada@x.com"), None, "Ada"),
            record(2, None, Some("+447911123456"), "Bob"),
            record(3, Some("ADA@x.com"), Some("+447911123457"), "Ada L"),
            record(4, Some("bob@x.com"), Some("07911 123456"), ""),
            record(5, Some("ada@x.com"), Some("+447911123456"), ""),
        ];
        let plan = build(&rows, nothing_stored(), Mode::Upsert);
        assert_eq!(
            plan.outcomes[..4],
            [Outcome::Created, Outcome::Created, Outcome::Updated, Outcome::Updated]
        );
        assert!(matches!(&plan.outcomes[4], Outcome::Failed(p) if p.reason == "IDENTITY_CONFLICT"));
        let inserts = plan.inserts(Utc::now());
        assert_eq!(inserts.len(), 2);
        assert_eq!(inserts[0].0.name, "Ada L");
        assert_eq!(inserts[0].0.email.as_deref(), Some("ADA@x.com"));
        assert_eq!(inserts[1].0.email.as_deref(), Some("bob@x.com"));

        let plan = build(&rows, nothing_stored(), Mode::CreateOnly);
        assert!(matches!(&plan.outcomes[2], Outcome::Skipped(p) if p.message.contains("Row 1")));
    }
}
