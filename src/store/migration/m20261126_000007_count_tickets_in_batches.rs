//! Drops migration 5's counting trigger: the code that stores ticket links
//! now counts them, one update per customer per batch
//! (`store::intake::TicketCount`). On PostgreSQL the per-row PL/pgSQL call
//! (an executor started and ended for every ticket) was about a sixth of
//! the database's CPU under intake; on SQLite a trigger makes every link
//! insert keep a statement journal.
//!
//! Rolling upgrade: replicas of the previous release rely on the trigger,
//! so tickets they store after this migration has run are not counted.
//! Upgrade all replicas of a PostgreSQL deployment together (or accept
//! counters short by the tickets of the upgrade window).

use sea_orm_migration::prelude::*;

use super::m20261126_000005_ticket_counter_trigger as counter_trigger;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        counter_trigger::Migration.down(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        counter_trigger::Migration.up(manager).await
    }
}
