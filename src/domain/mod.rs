//! The rules: parsing and normalising identifiers, matching, list queries and
//! the customer lifecycle. Handlers call in here; this calls the store.

pub mod attributes;
pub mod customer;
pub mod customers;
pub mod email;
pub mod error;
pub mod filter;
pub mod mobile;
pub mod name;
pub mod page;

pub use error::{Error, FieldViolation};
