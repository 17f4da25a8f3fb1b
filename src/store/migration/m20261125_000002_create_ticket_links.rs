//! Ticket → customer links: what makes intake idempotent per ticket.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum TicketLinks {
    Table,
    TicketId,
    CustomerId,
    Created,
    MatchedBy,
    ConflictingCustomerId,
    Restored,
    CreateTime,
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TicketLinks::Table)
                    .col(string_len(TicketLinks::TicketId, 128).primary_key())
                    .col(string_len(TicketLinks::CustomerId, 36))
                    .col(boolean(TicketLinks::Created))
                    .col(string_len(TicketLinks::MatchedBy, 16))
                    .col(string_len_null(TicketLinks::ConflictingCustomerId, 36))
                    .col(boolean(TicketLinks::Restored))
                    .col(super::utc_time(manager, TicketLinks::CreateTime, false))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_ticket_links_customer")
                    .table(TicketLinks::Table)
                    .col(TicketLinks::CustomerId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TicketLinks::Table).to_owned())
            .await
    }
}
