//! Drops `idx_ticket_links_customer`: no query reads ticket links by
//! customer, and every ticket paid for the index with one more random
//! B-tree page written at commit. A feature that lists a customer's tickets
//! brings it back with that query.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum TicketLinks {
    Table,
    CustomerId,
}

const INDEX: &str = "idx_ticket_links_customer";

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(INDEX).table(TicketLinks::Table).to_owned())
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(TicketLinks::Table)
                    .col(TicketLinks::CustomerId)
                    .to_owned(),
            )
            .await
    }
}
