//! `customers.v1.OrganizationService`.

use tonic::{Request, Response, Status};

use super::convert::{history_page, principal, timestamp};
use crate::{
    domain::{
        Error,
        customer::State,
        organizations::{Membership, Organization, OrganizationInput, Organizations, TicketAction},
    },
    proto::v1::{self as pb, check_ticket_access_request::Action, organization_service_server::OrganizationService},
};

/// Handlers of OrganizationService.
#[derive(Clone, Debug)]
pub struct OrganizationApi {
    organizations: Organizations,
}

impl OrganizationApi {
    /// Handlers over the organisation use cases.
    pub fn new(organizations: Organizations) -> Self {
        Self { organizations }
    }
}

impl From<Organization> for pb::Organization {
    fn from(o: Organization) -> Self {
        let etag = o.etag();
        let Organization {
            id,
            name,
            domains,
            attributes,
            state,
            revision: _,
            create_time,
            update_time,
            delete_time,
        } = o;
        pb::Organization {
            id,
            name,
            domains,
            attributes: attributes.into_iter().collect(),
            state: match state {
                State::Active => pb::organization::State::Active,
                State::Deleted => pb::organization::State::Deleted,
            }
            .into(),
            create_time: Some(timestamp(create_time)),
            update_time: Some(timestamp(update_time)),
            delete_time: delete_time.map(timestamp),
            etag,
        }
    }
}

fn membership(m: Membership, organization: Option<Organization>) -> pb::Membership {
    let Membership {
        organization_id,
        customer_id,
        can_view_tickets,
        can_create_tickets,
        create_time,
        update_time,
    } = m;
    pb::Membership {
        organization_id,
        customer_id,
        can_view_tickets,
        can_create_tickets,
        create_time: Some(timestamp(create_time)),
        update_time: Some(timestamp(update_time)),
        organization: organization.map(Into::into),
    }
}

fn input(o: pb::Organization) -> OrganizationInput {
    let pb::Organization {
        id: _,
        name,
        domains,
        attributes,
        state: _,
        create_time: _,
        update_time: _,
        delete_time: _,
        etag: _,
    } = o;
    OrganizationInput {
        name,
        domains,
        attributes,
    }
}

#[tonic::async_trait]
impl OrganizationService for OrganizationApi {
    async fn create_organization(
        &self,
        request: Request<pb::CreateOrganizationRequest>,
    ) -> Result<Response<pb::Organization>, Status> {
        let by = principal(&request)?;
        let pb::CreateOrganizationRequest { organization } = request.into_inner();
        let organization = organization.ok_or_else(|| Error::invalid("organization", "is required"))?;
        Ok(Response::new(
            self.organizations.create(input(organization), &by).await?.into(),
        ))
    }

    async fn get_organization(
        &self,
        request: Request<pb::GetOrganizationRequest>,
    ) -> Result<Response<pb::Organization>, Status> {
        let pb::GetOrganizationRequest { id } = request.into_inner();
        Ok(Response::new(self.organizations.get(&id).await?.into()))
    }

    async fn list_organizations(
        &self,
        request: Request<pb::ListOrganizationsRequest>,
    ) -> Result<Response<pb::ListOrganizationsResponse>, Status> {
        let pb::ListOrganizationsRequest {
            page_size,
            page_token,
            show_deleted,
        } = request.into_inner();
        let page = self.organizations.list(page_size, &page_token, show_deleted).await?;
        Ok(Response::new(pb::ListOrganizationsResponse {
            organizations: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_organization(
        &self,
        request: Request<pb::UpdateOrganizationRequest>,
    ) -> Result<Response<pb::Organization>, Status> {
        let by = principal(&request)?;
        let pb::UpdateOrganizationRequest {
            organization,
            update_mask,
        } = request.into_inner();
        let organization = organization.ok_or_else(|| Error::invalid("organization", "is required"))?;
        let (id, etag) = (organization.id.clone(), organization.etag.clone());
        let mask = update_mask.map(|m| m.paths).unwrap_or_default();
        Ok(Response::new(
            self.organizations
                .update(&id, input(organization), mask, &etag, &by)
                .await?
                .into(),
        ))
    }

    async fn delete_organization(
        &self,
        request: Request<pb::DeleteOrganizationRequest>,
    ) -> Result<Response<pb::Organization>, Status> {
        let by = principal(&request)?;
        let pb::DeleteOrganizationRequest { id, etag } = request.into_inner();
        Ok(Response::new(self.organizations.delete(&id, &etag, &by).await?.into()))
    }

    async fn undelete_organization(
        &self,
        request: Request<pb::UndeleteOrganizationRequest>,
    ) -> Result<Response<pb::Organization>, Status> {
        let by = principal(&request)?;
        let pb::UndeleteOrganizationRequest { id } = request.into_inner();
        Ok(Response::new(self.organizations.undelete(&id, &by).await?.into()))
    }

    async fn add_member(&self, request: Request<pb::AddMemberRequest>) -> Result<Response<pb::Membership>, Status> {
        let by = principal(&request)?;
        let pb::AddMemberRequest {
            organization_id,
            customer_id,
            can_view_tickets,
            can_create_tickets,
        } = request.into_inner();
        let m = self
            .organizations
            .add_member(
                &organization_id,
                &customer_id,
                can_view_tickets,
                can_create_tickets,
                &by,
            )
            .await?;
        Ok(Response::new(membership(m, None)))
    }

    async fn remove_member(
        &self,
        request: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::RemoveMemberResponse>, Status> {
        let by = principal(&request)?;
        let pb::RemoveMemberRequest {
            organization_id,
            customer_id,
        } = request.into_inner();
        self.organizations
            .remove_member(&organization_id, &customer_id, &by)
            .await?;
        Ok(Response::new(pb::RemoveMemberResponse {}))
    }

    async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        let pb::ListMembersRequest {
            organization_id,
            page_size,
            page_token,
        } = request.into_inner();
        let page = self
            .organizations
            .list_members(&organization_id, page_size, &page_token)
            .await?;
        Ok(Response::new(pb::ListMembersResponse {
            memberships: page.items.into_iter().map(|m| membership(m, None)).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn list_customer_organizations(
        &self,
        request: Request<pb::ListCustomerOrganizationsRequest>,
    ) -> Result<Response<pb::ListCustomerOrganizationsResponse>, Status> {
        let pb::ListCustomerOrganizationsRequest { customer_id } = request.into_inner();
        let memberships = self.organizations.customer_organizations(&customer_id).await?;
        Ok(Response::new(pb::ListCustomerOrganizationsResponse {
            memberships: memberships.into_iter().map(|(m, o)| membership(m, Some(o))).collect(),
        }))
    }

    async fn check_ticket_access(
        &self,
        request: Request<pb::CheckTicketAccessRequest>,
    ) -> Result<Response<pb::CheckTicketAccessResponse>, Status> {
        let pb::CheckTicketAccessRequest {
            customer_id,
            organization_id,
            action,
        } = request.into_inner();
        let action = match Action::try_from(action) {
            Ok(Action::View) => Some(TicketAction::View),
            Ok(Action::Create) => Some(TicketAction::Create),
            Ok(Action::Unspecified) | Err(_) => None,
        };
        let (allowed, reason) = self
            .organizations
            .check_ticket_access(&customer_id, &organization_id, action)
            .await?;
        Ok(Response::new(pb::CheckTicketAccessResponse {
            allowed,
            reason: reason.to_owned(),
        }))
    }

    async fn list_organization_history(
        &self,
        request: Request<pb::ListOrganizationHistoryRequest>,
    ) -> Result<Response<pb::ListOrganizationHistoryResponse>, Status> {
        let pb::ListOrganizationHistoryRequest {
            organization_id,
            page_size,
            page_token,
        } = request.into_inner();
        let page = self
            .organizations
            .history(&organization_id, page_size, &page_token)
            .await?;
        let (entries, next_page_token) = history_page(page);
        Ok(Response::new(pb::ListOrganizationHistoryResponse {
            entries,
            next_page_token,
        }))
    }
}
