//! Schema migrations, one file per change, named by date and purpose.

use sea_orm_migration::prelude::*;

mod m20261125_000001_create_customers;
mod m20261125_000002_create_ticket_links;
mod m20261125_000003_create_hub_and_organizations;

/// Every migration, oldest first.
pub struct Migrator;

#[sea_orm_migration::async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_customers::Migration),
            Box::new(m20261125_000002_create_ticket_links::Migration),
            Box::new(m20261125_000003_create_hub_and_organizations::Migration),
        ]
    }
}
