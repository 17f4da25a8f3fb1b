//! Conversions between protobuf messages and domain types. Messages are
//! destructured field by field, so a new proto field fails the build here
//! until someone decides what it means.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

use crate::{
    domain::{
        Error,
        auth::Principal,
        customer::{Customer, CustomerInput, Source, State},
        customers::Page,
        history::{Action, Entry, Origin},
    },
    proto::v1 as pb,
};

/// The caller the auth layer put on the request. Every customers.v1 call
/// has one; a missing one is a wiring bug, never an anonymous write.
pub fn principal<T>(request: &tonic::Request<T>) -> Result<Principal, Error> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Error::Internal("request reached a handler without a principal".into()))
}

/// A page of history entries as (entries, next_page_token).
pub fn history_page(page: Page<Entry>) -> (Vec<pb::HistoryEntry>, String) {
    (page.items.into_iter().map(Into::into).collect(), page.next_page_token)
}

impl From<Entry> for pb::HistoryEntry {
    fn from(e: Entry) -> Self {
        use pb::history_entry::Action as A;
        let Entry {
            resource: _,
            id,
            action,
            principal,
            time,
            origin,
            organization_id,
            changes,
        } = e;
        let (import_id, ticket_id) = match origin {
            Origin::Call => (String::new(), String::new()),
            Origin::Import(id) => (id, String::new()),
            Origin::Ticket(id) => (String::new(), id),
        };
        pb::HistoryEntry {
            id,
            action: match action {
                Action::Create => A::Create,
                Action::Update => A::Update,
                Action::Delete => A::Delete,
                Action::Undelete => A::Undelete,
                Action::AddMembership => A::AddMembership,
                Action::UpdateMembership => A::UpdateMembership,
                Action::RemoveMembership => A::RemoveMembership,
                Action::Merge => A::Merge,
            }
            .into(),
            create_time: Some(timestamp(time)),
            principal,
            import_id,
            ticket_id,
            organization_id: organization_id.unwrap_or_default(),
            changes: changes
                .into_iter()
                .map(|c| pb::FieldChange {
                    field: c.field,
                    old_value: c.old,
                    new_value: c.new,
                })
                .collect(),
        }
    }
}

/// A protobuf timestamp for a UTC time.
pub fn timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

impl From<pb::Customer> for CustomerInput {
    fn from(c: pb::Customer) -> Self {
        let pb::Customer {
            id: _,
            name,
            email,
            mobile,
            attributes,
            state: _,
            hub_access_enabled,
            source: _,
            initials: _,
            create_time: _,
            update_time: _,
            delete_time: _,
            etag: _,
            ticket_count: _,
            first_ticket_time: _,
            last_ticket_time: _,
            merged_into_id: _,
        } = c;
        CustomerInput {
            name,
            email,
            mobile,
            attributes,
            hub_access_enabled,
        }
    }
}

impl From<State> for pb::customer::State {
    fn from(s: State) -> Self {
        match s {
            State::Active => Self::Active,
            State::Deleted => Self::Deleted,
        }
    }
}

impl From<Source> for pb::customer::Source {
    fn from(s: Source) -> Self {
        match s {
            Source::Manual => Self::Manual,
            Source::Import => Self::Import,
            Source::Ticket => Self::Ticket,
        }
    }
}

impl From<Customer> for pb::Customer {
    fn from(c: Customer) -> Self {
        let initials = c.initials();
        let etag = c.etag();
        let Customer {
            id,
            name,
            email,
            mobile,
            attributes,
            state,
            hub_access_enabled,
            source,
            create_time,
            update_time,
            delete_time,
            revision: _,
            ticket_count,
            first_ticket_time,
            last_ticket_time,
            merged_into,
        } = c;
        pb::Customer {
            id,
            name,
            email: email.unwrap_or_default(),
            mobile: mobile.unwrap_or_default(),
            attributes: attributes.into_iter().collect(),
            state: pb::customer::State::from(state).into(),
            hub_access_enabled: Some(hub_access_enabled),
            source: pb::customer::Source::from(source).into(),
            initials,
            create_time: Some(timestamp(create_time)),
            update_time: Some(timestamp(update_time)),
            delete_time: delete_time.map(timestamp),
            etag,
            ticket_count,
            first_ticket_time: first_ticket_time.map(timestamp),
            last_ticket_time: last_ticket_time.map(timestamp),
            merged_into_id: merged_into.unwrap_or_default(),
        }
    }
}
