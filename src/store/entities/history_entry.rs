//! `history_entries`: one recorded change of one resource.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "history_entries")]
pub struct Model {
    /// `customers/{id}`, `organizations/{id}` or `hubSettings`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub resource: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub action: String,
    pub principal: String,
    pub create_time: DateTimeUtc,
    pub import_id: Option<String>,
    pub ticket_id: Option<String>,
    pub organization_id: Option<String>,
    /// JSON array of `{"field", "old", "new"}`.
    pub changes: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
