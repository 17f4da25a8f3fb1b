//! `customers`: one row per person; primary email/mobile are denormalised
//! here for reads, while `customer_identities` enforces uniqueness.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "customers")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub name: String,
    pub email: Option<String>,
    pub mobile: Option<String>,
    /// JSON object of string attributes, keys sorted.
    pub attributes: String,
    pub state: String,
    pub hub_access_enabled: bool,
    pub source: String,
    pub revision: i64,
    pub create_time: DateTimeUtc,
    pub update_time: DateTimeUtc,
    pub delete_time: Option<DateTimeUtc>,
    pub ticket_count: i64,
    pub first_ticket_time: Option<DateTimeUtc>,
    pub last_ticket_time: Option<DateTimeUtc>,
    /// The customer this one was merged into (it stays DELETED).
    pub merged_into_id: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
