//! SeaORM entities: one module per table.

pub mod create_request;
pub mod customer;
pub mod history_entry;
pub mod hub_settings;
pub mod identity;
pub mod membership;
pub mod organization;
pub mod organization_domain;
pub mod ticket_link;
