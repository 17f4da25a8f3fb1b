//! `customers.v1.TicketIntakeService`.

use tonic::{Request, Response, Status};

use crate::{
    domain::intake::{MatchedBy, TicketIntake, TicketRequester},
    proto::v1::{
        self as pb, resolve_ticket_customer_response::MatchedBy as PbMatchedBy,
        ticket_intake_service_server::TicketIntakeService,
    },
};

/// Handlers of TicketIntakeService.
#[derive(Clone, Debug)]
pub struct IntakeApi {
    intake: TicketIntake,
}

impl IntakeApi {
    /// Handlers over the intake use case.
    pub fn new(intake: TicketIntake) -> Self {
        Self { intake }
    }
}

impl From<MatchedBy> for PbMatchedBy {
    fn from(m: MatchedBy) -> Self {
        match m {
            MatchedBy::Email => Self::Email,
            MatchedBy::Mobile => Self::Mobile,
            MatchedBy::None => Self::None,
        }
    }
}

#[tonic::async_trait]
impl TicketIntakeService for IntakeApi {
    async fn resolve_ticket_customer(
        &self,
        request: Request<pb::ResolveTicketCustomerRequest>,
    ) -> Result<Response<pb::ResolveTicketCustomerResponse>, Status> {
        let by = super::convert::principal(&request)?;
        // `channel` is informational; it is accepted and not stored yet.
        let pb::ResolveTicketCustomerRequest {
            ticket_id,
            name,
            email,
            mobile,
            attributes,
            channel: _,
        } = request.into_inner();
        let resolution = self
            .intake
            .resolve(
                TicketRequester {
                    ticket_id,
                    name,
                    email,
                    mobile,
                    attributes,
                },
                &by,
            )
            .await?;
        Ok(Response::new(pb::ResolveTicketCustomerResponse {
            customer: Some(resolution.customer.into()),
            created: resolution.created,
            matched_by: PbMatchedBy::from(resolution.matched_by).into(),
            conflicting_customer_id: resolution.conflicting_customer_id.unwrap_or_default(),
            restored: resolution.restored,
        }))
    }
}
