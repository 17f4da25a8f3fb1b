//! `customer_identities`: every email and mobile of every customer.
//!
//! `live_key` equals `normalized` while the customer is not deleted and is
//! NULL otherwise; the unique index on (`kind`, `live_key`) is what makes
//! "no two live customers share an email or mobile" a database guarantee.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "customer_identities")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub customer_id: String,
    /// `email` or `mobile`.
    pub kind: String,
    pub normalized: String,
    pub original: String,
    pub is_primary: bool,
    pub live_key: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
