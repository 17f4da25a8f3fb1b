//! The customer resource and the validated input it is made from.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{
    FieldViolation,
    attributes::{Attributes, parse_attributes},
    email::Email,
    mobile::{Mobile, Region},
    name::{MAX_NAME_CHARS, initials},
};

/// Lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Active,
    Deleted,
}

impl State {
    /// Storage and filter spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Active => "ACTIVE",
            State::Deleted => "DELETED",
        }
    }

    /// Inverse of [`State::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ACTIVE" => Some(State::Active),
            "DELETED" => Some(State::Deleted),
            _ => None,
        }
    }
}

/// How a customer came to exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Manual,
    Import,
    Ticket,
}

impl Source {
    /// Storage and filter spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Manual => "MANUAL",
            Source::Import => "IMPORT",
            Source::Ticket => "TICKET",
        }
    }

    /// Inverse of [`Source::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "MANUAL" => Some(Source::Manual),
            "IMPORT" => Some(Source::Import),
            "TICKET" => Some(Source::Ticket),
            _ => None,
        }
    }
}

/// A stored customer.
#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    pub id: String,
    pub name: String,
    /// Primary email as given.
    pub email: Option<String>,
    /// Primary mobile, E.164.
    pub mobile: Option<String>,
    pub attributes: Attributes,
    pub state: State,
    pub hub_access_enabled: bool,
    pub source: Source,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    pub delete_time: Option<DateTime<Utc>>,
    /// Bumped on every change; the etag is derived from it.
    pub revision: i64,
    pub ticket_count: i64,
    pub first_ticket_time: Option<DateTime<Utc>>,
    pub last_ticket_time: Option<DateTime<Utc>>,
    /// The customer this one was merged into; it then stays deleted.
    pub merged_into: Option<String>,
}

impl Customer {
    /// A new Active customer as it will be stored.
    pub fn new_active(id: String, draft: &CustomerDraft, source: Source, now: DateTime<Utc>) -> Self {
        Self {
            id,
            name: draft.name.clone(),
            email: draft.email.as_ref().map(|e| e.as_str().to_owned()),
            mobile: draft.mobile.as_ref().map(|m| m.e164().to_owned()),
            attributes: draft.attributes.clone(),
            state: State::Active,
            hub_access_enabled: draft.hub_access_enabled,
            source,
            create_time: now,
            update_time: now,
            delete_time: None,
            revision: 1,
            ticket_count: 0,
            first_ticket_time: None,
            last_ticket_time: None,
            merged_into: None,
        }
    }

    /// Opaque version token (AIP-154).
    pub fn etag(&self) -> String {
        etag_of(self.revision)
    }

    /// Initials of the name.
    pub fn initials(&self) -> String {
        initials(&self.name)
    }

    /// The stored fields as a draft, for read-modify-write.
    pub fn to_draft(&self) -> CustomerDraft {
        CustomerDraft {
            name: self.name.clone(),
            email: self.email.as_deref().map(Email::from_stored),
            mobile: self.mobile.as_deref().map(Mobile::from_stored),
            attributes: self.attributes.clone(),
            hub_access_enabled: self.hub_access_enabled,
        }
    }
}

/// The etag for a revision.
pub fn etag_of(revision: i64) -> String {
    format!("\"{revision}\"")
}

/// Validated customer fields, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerDraft {
    pub name: String,
    pub email: Option<Email>,
    pub mobile: Option<Mobile>,
    pub attributes: Attributes,
    pub hub_access_enabled: bool,
}

impl CustomerDraft {
    /// The rule every stored customer obeys: at least one way to reach them.
    pub fn check_reachable(&self, prefix: &str) -> Result<(), Vec<FieldViolation>> {
        if self.email.is_none() && self.mobile.is_none() {
            return Err(vec![
                FieldViolation::new(format!("{prefix}email"), "a customer needs an email or a mobile"),
                FieldViolation::new(format!("{prefix}mobile"), "a customer needs an email or a mobile"),
            ]);
        }
        Ok(())
    }
}

/// Unvalidated customer fields as a caller sent them.
#[derive(Debug, Clone, Default)]
pub struct CustomerInput {
    pub name: String,
    pub email: String,
    pub mobile: String,
    pub attributes: HashMap<String, String>,
    pub hub_access_enabled: Option<bool>,
}

/// Field parsers shared by create, update, import and intake. Each returns
/// the value or pushes a violation under `prefix` + field name.
pub struct FieldParser<'a> {
    pub prefix: &'a str,
    pub region: Region,
    pub violations: Vec<FieldViolation>,
}

impl<'a> FieldParser<'a> {
    /// A parser whose violation paths start with `prefix` (e.g. `customer.`).
    pub fn new(prefix: &'a str, region: Region) -> Self {
        Self {
            prefix,
            region,
            violations: Vec::new(),
        }
    }

    /// A trimmed name within the length limit.
    pub fn name(&mut self, raw: &str) -> String {
        let name = raw.trim();
        if name.chars().count() > MAX_NAME_CHARS {
            self.violations.push(FieldViolation::new(
                format!("{}name", self.prefix),
                format!("is longer than {MAX_NAME_CHARS} characters"),
            ));
        }
        name.to_owned()
    }

    /// An email, or `None` for an empty string.
    pub fn email(&mut self, raw: &str) -> Option<Email> {
        if raw.trim().is_empty() {
            return None;
        }
        Email::parse(raw)
            .map_err(|e| {
                self.violations.push(FieldViolation::new(
                    format!("{}email", self.prefix),
                    format!("{raw:?} {e}"),
                ))
            })
            .ok()
    }

    /// A mobile, or `None` for an empty string.
    pub fn mobile(&mut self, raw: &str) -> Option<Mobile> {
        if raw.trim().is_empty() {
            return None;
        }
        Mobile::parse(raw, self.region)
            .map_err(|e| {
                self.violations.push(FieldViolation::new(
                    format!("{}mobile", self.prefix),
                    format!("{raw:?} {e} (national numbers are read as {})", self.region),
                ))
            })
            .ok()
    }

    /// Custom attributes.
    pub fn attributes(&mut self, raw: &HashMap<String, String>) -> Attributes {
        parse_attributes(raw, &format!("{}attributes", self.prefix)).unwrap_or_else(|v| {
            self.violations.extend(v);
            Attributes::new()
        })
    }

    /// All violations collected, or `value`.
    pub fn finish<T>(self, value: T) -> Result<T, Vec<FieldViolation>> {
        if self.violations.is_empty() {
            Ok(value)
        } else {
            Err(self.violations)
        }
    }
}

impl CustomerInput {
    /// Validates every field, reporting all problems at once.
    pub fn into_draft(
        self,
        prefix: &str,
        region: Region,
        hub_default: bool,
    ) -> Result<CustomerDraft, Vec<FieldViolation>> {
        let CustomerInput {
            name,
            email,
            mobile,
            attributes,
            hub_access_enabled,
        } = self;
        let mut p = FieldParser::new(prefix, region);
        let draft = CustomerDraft {
            name: p.name(&name),
            email: p.email(&email),
            mobile: p.mobile(&mobile),
            attributes: p.attributes(&attributes),
            hub_access_enabled: hub_access_enabled.unwrap_or(hub_default),
        };
        let draft = p.finish(draft)?;
        draft.check_reachable(prefix)?;
        Ok(draft)
    }
}
