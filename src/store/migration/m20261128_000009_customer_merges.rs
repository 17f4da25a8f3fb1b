//! `customers.merged_into_id`: set on a customer that MergeCustomers merged
//! into another. Intake follows it from the merged customer's email or
//! mobile and from its tickets' stored answers; UndeleteCustomer refuses it.
//! A nullable column added at the end, so rows and older replicas' inserts
//! (which name their columns) are untouched. Replicas of the previous
//! release ignore it: until they are replaced they neither follow merges
//! nor refuse to undelete a merged customer, so merge after the upgrade.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Customers {
    Table,
    MergedIntoId,
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Customers::Table)
                    .add_column(string_len_null(Customers::MergedIntoId, 36))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Customers::Table)
                    .drop_column(Customers::MergedIntoId)
                    .to_owned(),
            )
            .await
    }
}
