//! Customers, their identities (emails and mobiles) and create idempotency keys.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Customers {
    Table,
    Id,
    Name,
    Email,
    Mobile,
    Attributes,
    State,
    HubAccessEnabled,
    Source,
    Revision,
    CreateTime,
    UpdateTime,
    DeleteTime,
    TicketCount,
    FirstTicketTime,
    LastTicketTime,
}

#[derive(DeriveIden)]
enum CustomerIdentities {
    Table,
    Id,
    CustomerId,
    Kind,
    Normalized,
    Original,
    IsPrimary,
    LiveKey,
}

#[derive(DeriveIden)]
enum CreateRequests {
    Table,
    RequestId,
    CustomerId,
    CreateTime,
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Customers::Table)
                    .col(string_len(Customers::Id, 36).primary_key())
                    .col(text(Customers::Name))
                    .col(string_len_null(Customers::Email, 320))
                    .col(string_len_null(Customers::Mobile, 32))
                    .col(text(Customers::Attributes))
                    .col(string_len(Customers::State, 16))
                    .col(boolean(Customers::HubAccessEnabled))
                    .col(string_len(Customers::Source, 16))
                    .col(big_integer(Customers::Revision))
                    .col(super::utc_time(manager, Customers::CreateTime, false))
                    .col(super::utc_time(manager, Customers::UpdateTime, false))
                    .col(super::utc_time(manager, Customers::DeleteTime, true))
                    .col(big_integer(Customers::TicketCount).default(0))
                    .col(super::utc_time(manager, Customers::FirstTicketTime, true))
                    .col(super::utc_time(manager, Customers::LastTicketTime, true))
                    .to_owned(),
            )
            .await?;
        // Active list in id (creation) order.
        manager
            .create_index(
                Index::create()
                    .name("idx_customers_state_id")
                    .table(Customers::Table)
                    .col(Customers::State)
                    .col(Customers::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(CustomerIdentities::Table)
                    .col(big_integer(CustomerIdentities::Id).auto_increment().primary_key())
                    .col(string_len(CustomerIdentities::CustomerId, 36))
                    .col(string_len(CustomerIdentities::Kind, 16))
                    .col(string_len(CustomerIdentities::Normalized, 320))
                    .col(string_len(CustomerIdentities::Original, 320))
                    .col(boolean(CustomerIdentities::IsPrimary))
                    .col(string_len_null(CustomerIdentities::LiveKey, 320))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_identities_customer")
                            .from(CustomerIdentities::Table, CustomerIdentities::CustomerId)
                            .to(Customers::Table, Customers::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // The uniqueness guarantee: NULLs (deleted customers) never collide.
        manager
            .create_index(
                Index::create()
                    .name("ux_identities_live")
                    .table(CustomerIdentities::Table)
                    .col(CustomerIdentities::Kind)
                    .col(CustomerIdentities::LiveKey)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // Lookups that include deleted customers (filters, restore on intake).
        manager
            .create_index(
                Index::create()
                    .name("idx_identities_kind_normalized")
                    .table(CustomerIdentities::Table)
                    .col(CustomerIdentities::Kind)
                    .col(CustomerIdentities::Normalized)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_identities_customer")
                    .table(CustomerIdentities::Table)
                    .col(CustomerIdentities::CustomerId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(CreateRequests::Table)
                    .col(string_len(CreateRequests::RequestId, 128).primary_key())
                    .col(string_len(CreateRequests::CustomerId, 36))
                    .col(super::utc_time(manager, CreateRequests::CreateTime, false))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(CreateRequests::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(CustomerIdentities::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Customers::Table).to_owned())
            .await
    }
}
