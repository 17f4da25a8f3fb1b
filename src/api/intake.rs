//! `customers.v1.TicketIntakeService`.

use tonic::{Request, Response, Status};

use crate::proto::v1::{self as pb, ticket_intake_service_server::TicketIntakeService};

/// Handlers of TicketIntakeService.
#[derive(Clone, Debug, Default)]
pub struct IntakeApi {}

#[tonic::async_trait]
impl TicketIntakeService for IntakeApi {
    async fn resolve_ticket_customer(
        &self,
        _request: Request<pb::ResolveTicketCustomerRequest>,
    ) -> Result<Response<pb::ResolveTicketCustomerResponse>, Status> {
        Err(Status::unimplemented("ResolveTicketCustomer is not available yet"))
    }
}
