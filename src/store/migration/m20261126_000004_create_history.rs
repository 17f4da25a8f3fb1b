//! `history_entries`: the audit trail of customers, organisations and the
//! Hub settings, keyed by resource name so one index serves every history.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum HistoryEntries {
    Table,
    Resource,
    Id,
    Action,
    Principal,
    CreateTime,
    ImportId,
    TicketId,
    OrganizationId,
    Changes,
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut table = Table::create();
        table
            .table(HistoryEntries::Table)
            .col(string_len(HistoryEntries::Resource, 64))
            .col(string_len(HistoryEntries::Id, 36))
            .col(string_len(HistoryEntries::Action, 32))
            .col(string_len(HistoryEntries::Principal, 200))
            .col(super::utc_time(manager, HistoryEntries::CreateTime, false))
            .col(string_len_null(HistoryEntries::ImportId, 36))
            .col(string_len_null(HistoryEntries::TicketId, 128))
            .col(string_len_null(HistoryEntries::OrganizationId, 36))
            .col(text(HistoryEntries::Changes))
            .primary_key(Index::create().col(HistoryEntries::Resource).col(HistoryEntries::Id));
        if manager.get_database_backend() == sea_orm::DbBackend::Sqlite {
            // The rows live in the primary-key B-tree: one insert per entry.
            table.extra("WITHOUT ROWID");
        }
        manager.create_table(table).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(HistoryEntries::Table).to_owned())
            .await
    }
}
