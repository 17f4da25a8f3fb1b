//! Customer Hub access: who may log in to the self-service portal, and what
//! a person who may not is told.

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;

use super::{
    Error, FieldViolation,
    auth::Principal,
    customer::State,
    customers::{Customers, Page},
    email::Email,
    history::{Entry, HUB_SETTINGS_RESOURCE, History, Journal, Origin},
    mobile::Mobile,
};
use crate::store::{
    customers::{self as q, IdentityKind},
    hub as hq, intake as iq,
};

/// Message shown before anyone configures one.
pub const DEFAULT_DENIED_MESSAGE: &str =
    "Your access to the Customer Hub is not enabled. Please contact our support department.";
const MAX_HOURS: usize = 200;
const MAX_MESSAGE: usize = 1000;

/// Customer Hub settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubSettings {
    pub support_email: String,
    /// E.164, or empty.
    pub support_phone: String,
    pub support_hours: String,
    pub denied_message: String,
    /// `None` while the defaults apply.
    pub update_time: Option<DateTime<Utc>>,
}

impl Default for HubSettings {
    fn default() -> Self {
        Self {
            support_email: String::new(),
            support_phone: String::new(),
            support_hours: String::new(),
            denied_message: DEFAULT_DENIED_MESSAGE.to_owned(),
            update_time: None,
        }
    }
}

/// Who is logging in.
#[derive(Debug, Clone)]
pub enum LoginIdentifier {
    CustomerId(String),
    Email(String),
    Mobile(String),
}

/// The answer to a login attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginDecision {
    pub allowed: bool,
    /// Set only when allowed, so a denial reveals nothing.
    pub customer_id: String,
    pub message: String,
    pub settings: HubSettings,
}

/// The Hub access use cases.
#[derive(Clone, Debug)]
pub struct HubAccess {
    customers: Customers,
}

impl HubAccess {
    /// Hub access over the customer directory.
    pub fn new(customers: Customers) -> Self {
        Self { customers }
    }

    /// Allowed only for an existing, Active customer with Hub access.
    /// Unknown, deleted and disabled customers get the same denial. A
    /// merged customer's id, email or mobile (when no Active customer holds
    /// it now) stands for the customer it was merged into.
    pub async fn check_login(&self, who: Option<LoginIdentifier>) -> Result<LoginDecision, Error> {
        let db = self.customers.store().conn();
        let region = self.customers.settings().default_region;
        let id = match who {
            None => return Err(Error::invalid("identifier", "give customer_id, email or mobile")),
            Some(LoginIdentifier::CustomerId(id)) if id.trim().is_empty() => {
                return Err(Error::invalid("customer_id", "is required"));
            }
            Some(LoginIdentifier::CustomerId(id)) => Some(id),
            Some(LoginIdentifier::Email(raw)) => {
                let email = Email::parse(&raw).map_err(|e| Error::invalid("email", format!("{raw:?} {e}")))?;
                owner(db, IdentityKind::Email, email.normalised()).await?
            }
            Some(LoginIdentifier::Mobile(raw)) => {
                let mobile =
                    Mobile::parse(&raw, region).map_err(|e| Error::invalid("mobile", format!("{raw:?} {e}")))?;
                owner(db, IdentityKind::Mobile, mobile.e164()).await?
            }
        };
        let customer = match id {
            Some(id) => q::find(db, &id).await?,
            None => None,
        };
        let customer = match customer {
            Some(c) if c.merged_into.is_some() => Some(self.customers.follow_merges(db, c).await?),
            other => other,
        };
        let settings = self.settings().await?;
        Ok(match customer {
            Some(c) if c.state == State::Active && c.hub_access_enabled => LoginDecision {
                allowed: true,
                customer_id: c.id,
                message: String::new(),
                settings,
            },
            _ => LoginDecision {
                allowed: false,
                customer_id: String::new(),
                message: settings.denied_message.clone(),
                settings,
            },
        })
    }

    /// One page of the settings' history.
    pub async fn history(&self, page_size: i32, page_token: &str) -> Result<Page<Entry>, Error> {
        History::new(self.customers.store().clone())
            .list(HUB_SETTINGS_RESOURCE, page_size, page_token)
            .await
    }

    /// The settings in force.
    pub async fn settings(&self) -> Result<HubSettings, Error> {
        read_settings(self.customers.store().conn()).await
    }

    /// Updates the fields in `mask` (or every non-empty field of `new`).
    pub async fn update_settings(
        &self,
        new: HubSettings,
        mask: Vec<String>,
        by: &Principal,
    ) -> Result<HubSettings, Error> {
        let paths = super::mask::effective_paths(
            mask,
            &[
                ("support_email", !new.support_email.is_empty()),
                ("support_phone", !new.support_phone.is_empty()),
                ("support_hours", !new.support_hours.is_empty()),
                ("denied_message", !new.denied_message.is_empty()),
            ],
        )?;
        let region = self.customers.settings().default_region;
        let txn = self.customers.store().begin_write().await?;
        // Read inside the write transaction, so concurrent updates cannot
        // write back each other's stale fields.
        let mut current = read_settings(&*txn).await?;
        let before = current.clone();
        let mut violations = Vec::new();
        for path in &paths {
            match path.as_str() {
                "support_email" => match new.support_email.trim() {
                    "" => current.support_email.clear(),
                    raw => match Email::parse(raw) {
                        Ok(e) => current.support_email = e.as_str().to_owned(),
                        Err(e) => {
                            violations.push(FieldViolation::new("settings.support_email", format!("{raw:?} {e}")))
                        }
                    },
                },
                "support_phone" => match new.support_phone.trim() {
                    "" => current.support_phone.clear(),
                    raw => match Mobile::parse(raw, region) {
                        Ok(m) => current.support_phone = m.e164().to_owned(),
                        Err(e) => {
                            violations.push(FieldViolation::new("settings.support_phone", format!("{raw:?} {e}")))
                        }
                    },
                },
                "support_hours" => {
                    let hours = new.support_hours.trim();
                    if hours.chars().count() > MAX_HOURS {
                        violations.push(FieldViolation::new(
                            "settings.support_hours",
                            format!("is longer than {MAX_HOURS} characters"),
                        ));
                    }
                    current.support_hours = hours.to_owned();
                }
                "denied_message" => {
                    let message = new.denied_message.trim();
                    if message.is_empty() {
                        violations.push(FieldViolation::new("settings.denied_message", "must not be empty"));
                    } else if message.chars().count() > MAX_MESSAGE {
                        violations.push(FieldViolation::new(
                            "settings.denied_message",
                            format!("is longer than {MAX_MESSAGE} characters"),
                        ));
                    }
                    current.denied_message = message.to_owned();
                }
                other => violations.push(FieldViolation::new(
                    "update_mask",
                    format!(
                        "{other:?} is not a setting; use support_email, support_phone, support_hours or denied_message"
                    ),
                )),
            }
        }
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        let now = super::now();
        hq::put(
            &*txn,
            &current.support_email,
            &current.support_phone,
            &current.support_hours,
            &current.denied_message,
            now,
        )
        .await?;
        let mut journal = Journal::new(by, Origin::Call);
        journal.settings_updated(&before, &current);
        journal.write(&*txn).await?;
        txn.commit().await?;
        current.update_time = Some(now);
        Ok(current)
    }
}

/// The settings in force, read through `db` (a pool or a transaction).
async fn read_settings(db: &impl sea_orm::ConnectionTrait) -> Result<HubSettings, Error> {
    Ok(match hq::get(db).await? {
        Some(row) => HubSettings {
            support_email: row.support_email,
            support_phone: row.support_phone,
            support_hours: row.support_hours,
            denied_message: row.denied_message,
            update_time: Some(row.update_time),
        },
        None => HubSettings::default(),
    })
}

/// Who holds an identity: the Active customer, else the latest deleted one
/// (which leads on if it was merged; deleted ones are denied anyway).
async fn owner(db: &impl ConnectionTrait, kind: IdentityKind, key: &str) -> Result<Option<String>, sea_orm::DbErr> {
    match q::live_owner(db, kind, key).await? {
        Some(id) => Ok(Some(id)),
        None => iq::deleted_owner(db, kind, key).await,
    }
}
