//! Operator commands that talk to a running server: `import` and `export`.

pub mod export;
pub mod import;
mod progress;

use tonic::{
    Request, Status,
    metadata::MetadataValue,
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Channel, Endpoint},
};

use crate::{config::ClientArgs, proto::v1::customer_service_client::CustomerServiceClient};

/// Errors of a CLI command, shown to the operator as they are.
pub type CliError = Box<dyn std::error::Error + Send + Sync>;

/// Adds `authorization: Bearer …` when a token was given.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<tonic::metadata::Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A CustomerService client for `args`.
pub async fn connect(
    args: &ClientArgs,
) -> Result<CustomerServiceClient<InterceptedService<Channel, Bearer>>, CliError> {
    let channel = Endpoint::from_shared(args.server.clone())
        .map_err(|e| format!("--server {:?}: {e}", args.server))?
        .connect()
        .await
        .map_err(|e| format!("cannot reach {}: {e}", args.server))?;
    let bearer = match &args.token {
        Some(token) => Some(
            format!("Bearer {token}")
                .parse()
                .map_err(|_| "--token holds characters a header cannot carry")?,
        ),
        None => None,
    };
    Ok(CustomerServiceClient::with_interceptor(channel, Bearer(bearer)))
}

/// A gRPC status as one readable line.
pub fn describe(status: &Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}
