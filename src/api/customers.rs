//! `customers.v1.CustomerService`.

use std::pin::Pin;

use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::convert::{history_page, principal};
use crate::{
    domain::{
        Error,
        customers::{CustomerUpdate, Customers},
        merge::{MergeRequest, Merged},
    },
    proto::v1::{self as pb, customer_service_server::CustomerService},
};

/// Handlers of CustomerService.
#[derive(Clone, Debug)]
pub struct CustomerApi {
    customers: Customers,
    /// Turns true when the server starts shutting down (imports stop early).
    draining: watch::Receiver<bool>,
    /// Longest silence of an import's client before the import is stopped.
    stream_idle_timeout: std::time::Duration,
}

impl CustomerApi {
    /// Handlers over the customer directory.
    pub fn new(
        customers: Customers,
        draining: watch::Receiver<bool>,
        stream_idle_timeout: std::time::Duration,
    ) -> Self {
        Self {
            customers,
            draining,
            stream_idle_timeout,
        }
    }
}

/// The stream ExportCustomers answers with.
pub type ExportStream = Pin<Box<dyn Stream<Item = Result<pb::ExportCustomersResponse, Status>> + Send>>;

#[tonic::async_trait]
impl CustomerService for CustomerApi {
    async fn create_customer(
        &self,
        request: Request<pb::CreateCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        let by = principal(&request)?;
        let pb::CreateCustomerRequest { customer, request_id } = request.into_inner();
        let customer = customer.ok_or_else(|| Error::invalid("customer", "is required"))?;
        let created = self.customers.create(customer.into(), &request_id, &by).await?;
        Ok(Response::new(created.into()))
    }

    async fn get_customer(&self, request: Request<pb::GetCustomerRequest>) -> Result<Response<pb::Customer>, Status> {
        let pb::GetCustomerRequest { id } = request.into_inner();
        Ok(Response::new(self.customers.get(&id).await?.into()))
    }

    async fn list_customers(
        &self,
        request: Request<pb::ListCustomersRequest>,
    ) -> Result<Response<pb::ListCustomersResponse>, Status> {
        let pb::ListCustomersRequest {
            page_size,
            page_token,
            filter,
            show_deleted,
        } = request.into_inner();
        let page = self
            .customers
            .list(page_size, &page_token, &filter, show_deleted)
            .await?;
        Ok(Response::new(pb::ListCustomersResponse {
            customers: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_customer(
        &self,
        request: Request<pb::UpdateCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        let by = principal(&request)?;
        let pb::UpdateCustomerRequest { customer, update_mask } = request.into_inner();
        let customer = customer.ok_or_else(|| Error::invalid("customer", "is required"))?;
        let update = CustomerUpdate {
            id: customer.id.clone(),
            etag: customer.etag.clone(),
            mask: update_mask.map(|m| m.paths).unwrap_or_default(),
            fields: customer.into(),
        };
        Ok(Response::new(self.customers.update(update, &by).await?.into()))
    }

    async fn delete_customer(
        &self,
        request: Request<pb::DeleteCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        let by = principal(&request)?;
        let pb::DeleteCustomerRequest { id, etag } = request.into_inner();
        Ok(Response::new(self.customers.delete(&id, &etag, &by).await?.into()))
    }

    async fn undelete_customer(
        &self,
        request: Request<pb::UndeleteCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        let by = principal(&request)?;
        let pb::UndeleteCustomerRequest { id, etag } = request.into_inner();
        Ok(Response::new(self.customers.undelete(&id, &etag, &by).await?.into()))
    }

    async fn merge_customers(
        &self,
        request: Request<pb::MergeCustomersRequest>,
    ) -> Result<Response<pb::MergeCustomersResponse>, Status> {
        let by = principal(&request)?;
        let pb::MergeCustomersRequest {
            id,
            source_id,
            etag,
            source_etag,
        } = request.into_inner();
        let request = MergeRequest {
            id,
            source_id,
            etag,
            source_etag,
        };
        let Merged { customer, merged } = self.customers.merge(&request, &by).await?;
        Ok(Response::new(pb::MergeCustomersResponse {
            customer: Some(customer.into()),
            merged_customer: Some(merged.into()),
        }))
    }

    async fn import_customers(
        &self,
        request: Request<Streaming<pb::ImportCustomersRequest>>,
    ) -> Result<Response<pb::ImportCustomersResponse>, Status> {
        let by = principal(&request)?;
        let report = super::import::import(
            &self.customers,
            &by,
            request.into_inner(),
            self.draining.clone(),
            self.stream_idle_timeout,
        )
        .await?;
        Ok(Response::new(report))
    }

    type ExportCustomersStream = ExportStream;

    async fn export_customers(
        &self,
        request: Request<pb::ExportCustomersRequest>,
    ) -> Result<Response<Self::ExportCustomersStream>, Status> {
        Ok(Response::new(super::import::export(
            self.customers.clone(),
            request.into_inner(),
        )))
    }

    async fn get_import_template(
        &self,
        _request: Request<pb::GetImportTemplateRequest>,
    ) -> Result<Response<pb::GetImportTemplateResponse>, Status> {
        Ok(Response::new(super::import::template()))
    }

    async fn list_customer_history(
        &self,
        request: Request<pb::ListCustomerHistoryRequest>,
    ) -> Result<Response<pb::ListCustomerHistoryResponse>, Status> {
        let pb::ListCustomerHistoryRequest {
            customer_id,
            page_size,
            page_token,
        } = request.into_inner();
        let page = self.customers.history(&customer_id, page_size, &page_token).await?;
        let (entries, next_page_token) = history_page(page);
        Ok(Response::new(pb::ListCustomerHistoryResponse {
            entries,
            next_page_token,
        }))
    }
}
