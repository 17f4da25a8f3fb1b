//! Customer Hub settings (a singleton row), organisations, their email
//! domains, and customer memberships with ticket rights.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum HubSettings {
    Table,
    Id,
    SupportEmail,
    SupportPhone,
    SupportHours,
    DeniedMessage,
    UpdateTime,
}

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
    Name,
    LiveNameKey,
    Domains,
    Attributes,
    State,
    Revision,
    CreateTime,
    UpdateTime,
    DeleteTime,
}

#[derive(DeriveIden)]
enum OrganizationDomains {
    Table,
    Domain,
    OrganizationId,
}

#[derive(DeriveIden)]
enum Memberships {
    Table,
    OrganizationId,
    CustomerId,
    CanViewTickets,
    CanCreateTickets,
    CreateTime,
    UpdateTime,
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(HubSettings::Table)
                    .col(integer(HubSettings::Id).primary_key())
                    .col(string_len(HubSettings::SupportEmail, 320))
                    .col(string_len(HubSettings::SupportPhone, 32))
                    .col(string_len(HubSettings::SupportHours, 200))
                    .col(text(HubSettings::DeniedMessage))
                    .col(super::utc_time(manager, HubSettings::UpdateTime, false))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Organizations::Table)
                    .col(string_len(Organizations::Id, 36).primary_key())
                    .col(string_len(Organizations::Name, 200))
                    // Lower-case name while Active, NULL once deleted: the unique
                    // index below makes names unique among Active organisations.
                    .col(string_len_null(Organizations::LiveNameKey, 200))
                    .col(text(Organizations::Domains))
                    .col(text(Organizations::Attributes))
                    .col(string_len(Organizations::State, 16))
                    .col(big_integer(Organizations::Revision))
                    .col(super::utc_time(manager, Organizations::CreateTime, false))
                    .col(super::utc_time(manager, Organizations::UpdateTime, false))
                    .col(super::utc_time(manager, Organizations::DeleteTime, true))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_organizations_live_name")
                    .table(Organizations::Table)
                    .col(Organizations::LiveNameKey)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(OrganizationDomains::Table)
                    .col(string_len(OrganizationDomains::Domain, 253))
                    .col(string_len(OrganizationDomains::OrganizationId, 36))
                    .primary_key(
                        Index::create()
                            .col(OrganizationDomains::Domain)
                            .col(OrganizationDomains::OrganizationId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_domains_organization")
                            .from(OrganizationDomains::Table, OrganizationDomains::OrganizationId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Memberships::Table)
                    .col(string_len(Memberships::OrganizationId, 36))
                    .col(string_len(Memberships::CustomerId, 36))
                    .col(boolean(Memberships::CanViewTickets))
                    .col(boolean(Memberships::CanCreateTickets))
                    .col(super::utc_time(manager, Memberships::CreateTime, false))
                    .col(super::utc_time(manager, Memberships::UpdateTime, false))
                    .primary_key(
                        Index::create()
                            .col(Memberships::OrganizationId)
                            .col(Memberships::CustomerId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_memberships_organization")
                            .from(Memberships::Table, Memberships::OrganizationId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_memberships_customer")
                    .table(Memberships::Table)
                    .col(Memberships::CustomerId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Memberships::Table.into_iden(),
            OrganizationDomains::Table.into_iden(),
            Organizations::Table.into_iden(),
            HubSettings::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
