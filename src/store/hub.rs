//! Customer Hub settings: one row, absent until first set.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveValue::Set, ConnectionTrait, DbErr, EntityTrait, sea_query::OnConflict};

use super::entities::hub_settings;

/// The stored settings, if anyone set them.
pub async fn get(db: &impl ConnectionTrait) -> Result<Option<hub_settings::Model>, DbErr> {
    hub_settings::Entity::find_by_id(1).one(db).await
}

/// Stores the settings (insert or replace the single row).
pub async fn put(
    db: &impl ConnectionTrait,
    support_email: &str,
    support_phone: &str,
    support_hours: &str,
    denied_message: &str,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    use hub_settings::Column as C;
    let row = hub_settings::ActiveModel {
        id: Set(1),
        support_email: Set(support_email.to_owned()),
        support_phone: Set(support_phone.to_owned()),
        support_hours: Set(support_hours.to_owned()),
        denied_message: Set(denied_message.to_owned()),
        update_time: Set(at),
    };
    hub_settings::Entity::insert(row)
        .on_conflict(
            OnConflict::column(C::Id)
                .update_columns([
                    C::SupportEmail,
                    C::SupportPhone,
                    C::SupportHours,
                    C::DeniedMessage,
                    C::UpdateTime,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}
