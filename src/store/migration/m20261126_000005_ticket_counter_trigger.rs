//! Ticket counters kept by the database: every stored ticket link adds one
//! to its customer's `ticket_count` and sets the first / last ticket time,
//! inside the statement that stores the link. Intake then writes one
//! statement fewer per batch, and no code path can forget the counters.

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const SQLITE: &str = "CREATE TRIGGER ticket_links_count AFTER INSERT ON ticket_links FOR EACH ROW BEGIN \
    UPDATE customers SET ticket_count = ticket_count + 1, \
    first_ticket_time = COALESCE(first_ticket_time, NEW.create_time), last_ticket_time = NEW.create_time \
    WHERE id = NEW.customer_id; END";

const POSTGRES: [&str; 2] = [
    "CREATE FUNCTION ticket_links_count() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
     UPDATE customers SET ticket_count = ticket_count + 1, \
     first_ticket_time = COALESCE(first_ticket_time, NEW.create_time), last_ticket_time = NEW.create_time \
     WHERE id = NEW.customer_id; RETURN NULL; END $$",
    "CREATE TRIGGER ticket_links_count AFTER INSERT ON ticket_links FOR EACH ROW \
     EXECUTE FUNCTION ticket_links_count()",
];

const MYSQL: &str = "CREATE TRIGGER ticket_links_count AFTER INSERT ON ticket_links FOR EACH ROW \
    UPDATE customers SET ticket_count = ticket_count + 1, \
    first_ticket_time = COALESCE(first_ticket_time, NEW.create_time), last_ticket_time = NEW.create_time \
    WHERE id = NEW.customer_id";

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let statements: &[&str] = match manager.get_database_backend() {
            DbBackend::Sqlite => &[SQLITE],
            DbBackend::Postgres => &POSTGRES,
            _ => &[MYSQL],
        };
        for sql in statements {
            db.execute_unprepared(sql).await?;
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
