//! The audit trail. Every use case that changes a customer, an organisation
//! or the Hub settings fills a [`Journal`] and writes it in the same
//! transaction as the change, so a change and its record commit together.

use chrono::{DateTime, Utc};

use super::{
    Error,
    attributes::Attributes,
    auth::Principal,
    customer::{Customer, CustomerDraft},
    customers::{Page, new_id},
    hub::HubSettings,
    organizations::{Membership, Organization},
    page::{PageToken, page_size, paged},
};
use crate::store::{Store, history as q};

/// What happened to the resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    Delete,
    Undelete,
    AddMembership,
    UpdateMembership,
    RemoveMembership,
    Merge,
}

impl Action {
    /// The stored spelling (the proto enum's value name).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "CREATE",
            Action::Update => "UPDATE",
            Action::Delete => "DELETE",
            Action::Undelete => "UNDELETE",
            Action::AddMembership => "ADD_MEMBERSHIP",
            Action::UpdateMembership => "UPDATE_MEMBERSHIP",
            Action::RemoveMembership => "REMOVE_MEMBERSHIP",
            Action::Merge => "MERGE",
        }
    }

    /// The action a stored spelling names.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Action::Create,
            Action::Update,
            Action::Delete,
            Action::Undelete,
            Action::AddMembership,
            Action::UpdateMembership,
            Action::RemoveMembership,
            Action::Merge,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }
}

/// What made the change, besides the principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A direct call.
    Call,
    /// A row of the import with this id.
    Import(String),
    /// Intake of the ticket with this id.
    Ticket(String),
}

/// One field's change; unset values are empty strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub field: String,
    pub old: String,
    pub new: String,
}

/// One recorded change of one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `customers/{id}`, `organizations/{id}` or `hubSettings`.
    pub resource: String,
    pub id: String,
    pub action: Action,
    pub principal: String,
    pub time: DateTime<Utc>,
    pub origin: Origin,
    /// The organisation of a membership entry.
    pub organization_id: Option<String>,
    pub changes: Vec<Change>,
}

/// The resource name of a customer's history.
pub fn customer_resource(id: &str) -> String {
    format!("customers/{id}")
}

/// The resource name of an organisation's history.
pub fn organization_resource(id: &str) -> String {
    format!("organizations/{id}")
}

/// The resource name of the Hub settings' history.
pub const HUB_SETTINGS_RESOURCE: &str = "hubSettings";

/// The entries one operation records, for one principal and origin.
#[derive(Debug)]
pub struct Journal {
    principal: String,
    origin: Origin,
    entries: Vec<Entry>,
    /// Position of each customer's CREATE entry in `entries`.
    created: std::collections::HashMap<String, usize>,
}

impl Journal {
    /// An empty journal of `principal`'s operation.
    pub fn new(principal: &Principal, origin: Origin) -> Self {
        Self::named(principal.name.clone(), origin)
    }

    /// [`Journal::new`] from a principal's name.
    pub fn named(principal: String, origin: Origin) -> Self {
        Self {
            principal,
            origin,
            entries: Vec::new(),
            created: Default::default(),
        }
    }

    /// The recorded entries.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    fn push(&mut self, resource: String, action: Action, organization_id: Option<String>, changes: Vec<Change>) {
        self.entries.push(Entry {
            resource,
            id: new_id(),
            action,
            principal: self.principal.clone(),
            time: super::now(),
            origin: self.origin.clone(),
            organization_id,
            changes,
        });
    }

    /// A new customer. Its initial field values are not repeated here: they
    /// are the customer's values, or the `old` values of the first UPDATE
    /// of each field, and leaving them out keeps imports fast (the entry
    /// would be as big as the customer row).
    pub fn customer_created(&mut self, customer: &Customer) {
        self.created.insert(customer.id.clone(), self.entries.len());
        self.push(customer_resource(&customer.id), Action::Create, None, Vec::new());
    }

    /// Records the fields that differ; nothing when none does.
    pub fn customer_updated(&mut self, id: &str, before: &CustomerDraft, after: &CustomerDraft) {
        let changes = customer_changes(before, after);
        if !changes.is_empty() {
            self.push(customer_resource(id), Action::Update, None, changes);
        }
    }

    /// A delete (`Action::Delete`) or a restore (`Action::Undelete`).
    pub fn customer_state(&mut self, id: &str, action: Action) {
        self.push(customer_resource(id), action, None, Vec::new());
    }

    /// A merge: on the customer that stayed, the duplicate's id and the
    /// fields it gained; on the duplicate, where it went and its state.
    pub fn customers_merged(&mut self, stayed: (&Customer, &Customer), merged: (&Customer, &Customer)) {
        let (before, after) = merged;
        let mut changes = Vec::new();
        diff(&mut changes, "merged_into_id", String::new(), stayed.1.id.clone());
        diff(
            &mut changes,
            "state",
            before.state.as_str().to_owned(),
            after.state.as_str().to_owned(),
        );
        self.push(customer_resource(&before.id), Action::Merge, None, changes);
        let mut changes = vec![Change {
            field: "merged_customer_id".to_owned(),
            old: String::new(),
            new: before.id.clone(),
        }];
        changes.extend(customer_changes(&stayed.0.to_draft(), &stayed.1.to_draft()));
        self.push(customer_resource(&stayed.1.id), Action::Merge, None, changes);
    }

    pub fn organization_created(&mut self, org: &Organization) {
        let changes = organization_changes(None, org);
        self.push(organization_resource(&org.id), Action::Create, None, changes);
    }

    /// Records the fields that differ; nothing when none does.
    pub fn organization_updated(&mut self, before: &Organization, after: &Organization) {
        let changes = organization_changes(Some(before), after);
        if !changes.is_empty() {
            self.push(organization_resource(&after.id), Action::Update, None, changes);
        }
    }

    /// A delete (`Action::Delete`) or a restore (`Action::Undelete`).
    pub fn organization_state(&mut self, id: &str, action: Action) {
        self.push(organization_resource(id), action, None, Vec::new());
    }

    /// A membership added (`before` is `None`), changed or removed (`after`
    /// is `None`); recorded in the customer's history. A membership that a
    /// customer gets as it is created (import, intake) is one more initial
    /// value of its CREATE entry: `memberships.ORG_ID` = the rights.
    pub fn membership(&mut self, before: Option<&Membership>, after: Option<&Membership>) {
        if let (None, Some(m)) = (before, after)
            && let Some(&at) = self.created.get(&m.customer_id)
        {
            let rights = match (m.can_view_tickets, m.can_create_tickets) {
                (true, true) => "view,create",
                (true, false) => "view",
                (false, true) => "create",
                (false, false) => "none",
            };
            self.entries[at].changes.push(Change {
                field: format!("memberships.{}", m.organization_id),
                old: String::new(),
                new: rights.to_owned(),
            });
            return;
        }
        let (action, m) = match (before, after) {
            (None, Some(m)) => (Action::AddMembership, m),
            (Some(_), Some(m)) => (Action::UpdateMembership, m),
            (Some(m), None) => (Action::RemoveMembership, m),
            (None, None) => return,
        };
        let rights = |m: Option<&Membership>| {
            [
                ("can_view_tickets", m.map(|m| m.can_view_tickets)),
                ("can_create_tickets", m.map(|m| m.can_create_tickets)),
            ]
        };
        let mut changes = Vec::new();
        for ((field, old), (_, new)) in rights(before).into_iter().zip(rights(after)) {
            let text = |v: Option<bool>| v.map(|b| b.to_string()).unwrap_or_default();
            diff(&mut changes, field, text(old), text(new));
        }
        if action == Action::UpdateMembership && changes.is_empty() {
            return;
        }
        self.push(
            customer_resource(&m.customer_id),
            action,
            Some(m.organization_id.clone()),
            changes,
        );
    }

    /// Records the settings that differ; nothing when none does.
    pub fn settings_updated(&mut self, before: &HubSettings, after: &HubSettings) {
        let mut changes = Vec::new();
        for (field, old, new) in [
            ("support_email", &before.support_email, &after.support_email),
            ("support_phone", &before.support_phone, &after.support_phone),
            ("support_hours", &before.support_hours, &after.support_hours),
            ("denied_message", &before.denied_message, &after.denied_message),
        ] {
            diff(&mut changes, field, old.clone(), new.clone());
        }
        if !changes.is_empty() {
            self.push(HUB_SETTINGS_RESOURCE.to_owned(), Action::Update, None, changes);
        }
    }

    /// Writes the entries through `db`: the transaction of the change.
    pub async fn write(self, db: &impl sea_orm::ConnectionTrait) -> Result<(), sea_orm::DbErr> {
        q::insert_many(db, &self.entries).await
    }

    /// The recorded entries, to be written with other rows.
    pub fn into_entries(self) -> Vec<Entry> {
        self.entries
    }
}

fn diff(changes: &mut Vec<Change>, field: &str, old: String, new: String) {
    if old != new {
        changes.push(Change {
            field: field.to_owned(),
            old,
            new,
        });
    }
}

fn diff_attributes(changes: &mut Vec<Change>, before: &Attributes, after: &Attributes) {
    let keys: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for key in keys {
        let value = |a: &Attributes| a.get(key).cloned().unwrap_or_default();
        diff(changes, &format!("attributes.{key}"), value(before), value(after));
    }
}

/// Field-by-field difference of two customers' editable fields.
fn customer_changes(before: &CustomerDraft, after: &CustomerDraft) -> Vec<Change> {
    let mut changes = Vec::new();
    let email = |d: &CustomerDraft| d.email.as_ref().map(|e| e.as_str().to_owned()).unwrap_or_default();
    let mobile = |d: &CustomerDraft| d.mobile.as_ref().map(|m| m.e164().to_owned()).unwrap_or_default();
    diff(&mut changes, "name", before.name.clone(), after.name.clone());
    diff(&mut changes, "email", email(before), email(after));
    diff(&mut changes, "mobile", mobile(before), mobile(after));
    diff_attributes(&mut changes, &before.attributes, &after.attributes);
    diff(
        &mut changes,
        "hub_access_enabled",
        before.hub_access_enabled.to_string(),
        after.hub_access_enabled.to_string(),
    );
    changes
}

fn organization_changes(before: Option<&Organization>, after: &Organization) -> Vec<Change> {
    let mut changes = Vec::new();
    let name = |o: Option<&Organization>| o.map(|o| o.name.clone()).unwrap_or_default();
    let domains = |o: Option<&Organization>| o.map(|o| o.domains.join(",")).unwrap_or_default();
    diff(&mut changes, "name", name(before), name(Some(after)));
    diff(&mut changes, "domains", domains(before), domains(Some(after)));
    diff_attributes(
        &mut changes,
        &before.map(|o| o.attributes.clone()).unwrap_or_default(),
        &after.attributes,
    );
    changes
}

/// Reads histories.
#[derive(Clone, Debug)]
pub struct History {
    store: Store,
}

impl History {
    /// Histories kept in `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// One page of `resource`'s entries, oldest first.
    pub async fn list(&self, resource: &str, page_size_req: i32, page_token: &str) -> Result<Page<Entry>, Error> {
        let limit = page_size(page_size_req)?;
        let query = format!("history|{resource}");
        let after = PageToken::decode(page_token, &query)?.map(|t| t.after);
        let items = q::list(self.store.conn(), resource, after.as_deref(), limit + 1).await?;
        Ok(paged(items, limit, query, |e| e.id.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{email::Email, mobile::Mobile};

    fn draft(name: &str, email: Option<&str>, attrs: &[(&str, &str)]) -> CustomerDraft {
        CustomerDraft {
            name: name.into(),
            email: email.map(|e| Email::parse(e).unwrap()),
            mobile: None,
            attributes: attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            hub_access_enabled: true,
        }
    }

    fn fields(changes: &[Change]) -> Vec<(&str, &str, &str)> {
        changes
            .iter()
            .map(|c| (c.field.as_str(), c.old.as_str(), c.new.as_str()))
            .collect()
    }

    #[test]
    fn update_lists_only_what_differs() {
        let before = draft("Ada", Some("ada@example.com"), &[("role", "cto"), ("team", "x")]);
        let mut after = draft("Ada L", Some("ada@example.com"), &[("role", "ceo"), ("dept", "ops")]);
        after.mobile = Some(Mobile::parse("+447911123456", Default::default()).unwrap());
        assert_eq!(
            fields(&customer_changes(&before, &after)),
            [
                ("name", "Ada", "Ada L"),
                ("mobile", "", "+447911123456"),
                ("attributes.dept", "", "ops"),
                ("attributes.role", "cto", "ceo"),
                ("attributes.team", "x", ""),
            ]
        );
        assert!(customer_changes(&before, &before).is_empty());
    }

    #[test]
    fn unchanged_membership_records_nothing() {
        let m = Membership {
            organization_id: "o".into(),
            customer_id: "c".into(),
            can_view_tickets: true,
            can_create_tickets: false,
            create_time: Utc::now(),
            update_time: Utc::now(),
        };
        let mut journal = Journal::named("ops".into(), Origin::Call);
        journal.membership(Some(&m), Some(&m));
        assert!(journal.entries().is_empty());
        journal.membership(None, Some(&m));
        journal.membership(Some(&m), None);
        let actions: Vec<_> = journal.entries().iter().map(|e| e.action).collect();
        assert_eq!(actions, [Action::AddMembership, Action::RemoveMembership]);
        assert_eq!(journal.entries()[0].resource, "customers/c");
        assert_eq!(journal.entries()[0].organization_id.as_deref(), Some("o"));
    }

    #[test]
    fn actions_round_trip() {
        for a in [Action::Create, Action::RemoveMembership, Action::Undelete] {
            assert_eq!(Action::parse(a.as_str()), Some(a));
        }
    }
}
