//! The rules: parsing and normalising identifiers, matching, list queries and
//! the customer lifecycle. Handlers call in here; this calls the store.

pub mod attributes;
pub mod auth;
pub mod customer;
pub mod customers;
pub mod email;
pub mod error;
pub mod export;
pub mod filter;
pub mod history;
pub mod hub;
pub mod import;
pub mod intake;
pub mod mask;
pub mod merge;
pub mod mobile;
pub mod name;
pub mod organizations;
pub mod page;
pub mod spreadsheet;

pub use error::{Error, FieldViolation};

/// The current time at the precision every backend stores (microseconds),
/// so an answer computed in memory equals the same answer read back.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}
