//! `ticket_links`: the answer given for each ticket, replayed on retries.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "ticket_links")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub ticket_id: String,
    pub customer_id: String,
    pub created: bool,
    /// `EMAIL`, `MOBILE` or `NONE`.
    pub matched_by: String,
    pub conflicting_customer_id: Option<String>,
    pub restored: bool,
    pub create_time: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
