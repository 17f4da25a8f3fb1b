//! Ticket counters kept by the database: every stored ticket link adds one
//! to its customer's `ticket_count` and sets the first / last ticket time,
//! inside the statement that stores the link. Intake then writes one
//! statement fewer per batch, and no code path can forget the counters.

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// What every backend's trigger does for one inserted link (`NEW`).
const COUNT: &str = "UPDATE customers SET ticket_count = ticket_count + 1, \
    first_ticket_time = COALESCE(first_ticket_time, NEW.create_time), last_ticket_time = NEW.create_time \
    WHERE id = NEW.customer_id";

const ON_INSERT: &str = "CREATE TRIGGER ticket_links_count AFTER INSERT ON ticket_links FOR EACH ROW";

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let statements = match manager.get_database_backend() {
            DbBackend::Sqlite => vec![format!("{ON_INSERT} BEGIN {COUNT}; END")],
            DbBackend::Postgres => vec![
                format!(
                    "CREATE FUNCTION ticket_links_count() RETURNS trigger LANGUAGE plpgsql AS \
                     $$ BEGIN {COUNT}; RETURN NULL; END $$"
                ),
                format!("{ON_INSERT} EXECUTE FUNCTION ticket_links_count()"),
            ],
            _ => vec![format!("{ON_INSERT} {COUNT}")],
        };
        for sql in statements {
            db.execute_unprepared(&sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let statements: &[&str] = match manager.get_database_backend() {
            DbBackend::Postgres => &[
                "DROP TRIGGER ticket_links_count ON ticket_links",
                "DROP FUNCTION ticket_links_count()",
            ],
            _ => &["DROP TRIGGER ticket_links_count"],
        };
        for sql in statements {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
