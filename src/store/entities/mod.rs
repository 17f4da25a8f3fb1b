//! SeaORM entities: one module per table.

pub mod create_request;
pub mod customer;
pub mod identity;
pub mod ticket_link;
