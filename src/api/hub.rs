//! `customers.v1.HubAccessService`.

use tonic::{Request, Response, Status};

use super::convert::{history_page, principal, timestamp};
use crate::{
    domain::hub::{HubAccess, HubSettings, LoginIdentifier},
    proto::v1::{self as pb, check_hub_login_request::Identifier, hub_access_service_server::HubAccessService},
};

/// Handlers of HubAccessService.
#[derive(Clone, Debug)]
pub struct HubApi {
    hub: HubAccess,
}

impl HubApi {
    /// Handlers over the Hub access use cases.
    pub fn new(hub: HubAccess) -> Self {
        Self { hub }
    }
}

impl From<HubSettings> for pb::HubSettings {
    fn from(s: HubSettings) -> Self {
        let HubSettings {
            support_email,
            support_phone,
            support_hours,
            denied_message,
            update_time,
        } = s;
        pb::HubSettings {
            support_email,
            support_phone,
            support_hours,
            denied_message,
            update_time: update_time.map(timestamp),
        }
    }
}

#[tonic::async_trait]
impl HubAccessService for HubApi {
    async fn check_hub_login(
        &self,
        request: Request<pb::CheckHubLoginRequest>,
    ) -> Result<Response<pb::CheckHubLoginResponse>, Status> {
        let pb::CheckHubLoginRequest { identifier } = request.into_inner();
        let who = identifier.map(|i| match i {
            Identifier::CustomerId(id) => LoginIdentifier::CustomerId(id),
            Identifier::Email(email) => LoginIdentifier::Email(email),
            Identifier::Mobile(mobile) => LoginIdentifier::Mobile(mobile),
        });
        let decision = self.hub.check_login(who).await?;
        let s = decision.settings;
        Ok(Response::new(pb::CheckHubLoginResponse {
            allowed: decision.allowed,
            customer_id: decision.customer_id,
            message: decision.message,
            support_contact: Some(pb::SupportContact {
                email: s.support_email,
                phone: s.support_phone,
                hours: s.support_hours,
            }),
        }))
    }

    async fn get_hub_settings(
        &self,
        _request: Request<pb::GetHubSettingsRequest>,
    ) -> Result<Response<pb::HubSettings>, Status> {
        Ok(Response::new(self.hub.settings().await?.into()))
    }

    async fn update_hub_settings(
        &self,
        request: Request<pb::UpdateHubSettingsRequest>,
    ) -> Result<Response<pb::HubSettings>, Status> {
        let by = principal(&request)?;
        let pb::UpdateHubSettingsRequest { settings, update_mask } = request.into_inner();
        let pb::HubSettings {
            support_email,
            support_phone,
            support_hours,
            denied_message,
            update_time: _,
        } = settings.unwrap_or_default();
        let new = HubSettings {
            support_email,
            support_phone,
            support_hours,
            denied_message,
            update_time: None,
        };
        let mask = update_mask.map(|m| m.paths).unwrap_or_default();
        Ok(Response::new(self.hub.update_settings(new, mask, &by).await?.into()))
    }

    async fn list_hub_settings_history(
        &self,
        request: Request<pb::ListHubSettingsHistoryRequest>,
    ) -> Result<Response<pb::ListHubSettingsHistoryResponse>, Status> {
        let pb::ListHubSettingsHistoryRequest { page_size, page_token } = request.into_inner();
        let (entries, next_page_token) = history_page(self.hub.history(page_size, &page_token).await?);
        Ok(Response::new(pb::ListHubSettingsHistoryResponse {
            entries,
            next_page_token,
        }))
    }
}
