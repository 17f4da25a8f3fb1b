//! Schema migrations, one file per change, named by date and purpose.

use sea_orm_migration::prelude::*;

mod m20261125_000001_create_customers;
mod m20261125_000002_create_ticket_links;
mod m20261125_000003_create_hub_and_organizations;
mod m20261126_000004_create_history;
mod m20261126_000005_ticket_counter_trigger;
mod m20261126_000006_drop_ticket_links_customer_index;
mod m20261126_000007_count_tickets_in_batches;
mod m20261127_000008_bytewise_keys;
mod m20261128_000009_customer_merges;

/// Every migration, oldest first.
pub struct Migrator;

#[sea_orm_migration::async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_customers::Migration),
            Box::new(m20261125_000002_create_ticket_links::Migration),
            Box::new(m20261125_000003_create_hub_and_organizations::Migration),
            Box::new(m20261126_000004_create_history::Migration),
            Box::new(m20261126_000005_ticket_counter_trigger::Migration),
            Box::new(m20261126_000006_drop_ticket_links_customer_index::Migration),
            Box::new(m20261126_000007_count_tickets_in_batches::Migration),
            Box::new(m20261127_000008_bytewise_keys::Migration),
            Box::new(m20261128_000009_customer_merges::Migration),
        ]
    }
}

/// A UTC timestamp column with microseconds on every backend. MySQL's
/// default TIMESTAMP keeps whole seconds and ends in 2038, so it gets
/// DATETIME(6); SQLite and PostgreSQL keep `timestamp with time zone`.
pub(crate) fn utc_time(manager: &SchemaManager, column: impl IntoIden, nullable: bool) -> ColumnDef {
    use sea_orm_migration::schema::{timestamp_with_time_zone, timestamp_with_time_zone_null};
    if manager.get_database_backend() == sea_orm::DbBackend::MySql {
        let mut def = ColumnDef::new(column);
        def.custom(Alias::new("DATETIME(6)"));
        if nullable {
            def.null()
        } else {
            def.not_null()
        };
        return def;
    }
    if nullable {
        timestamp_with_time_zone_null(column)
    } else {
        timestamp_with_time_zone(column)
    }
}
