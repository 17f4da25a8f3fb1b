//! The one place domain errors become gRPC statuses (AIP-193): a code, a
//! readable message, `ErrorInfo` with an UPPER_SNAKE reason and the ids
//! involved, and `BadRequest` field violations for bad input.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::{Error, error::Resource};

/// `ErrorInfo.domain` of every error this service sends.
pub const ERROR_DOMAIN: &str = "customers.v1";

fn resource_upper(r: Resource) -> &'static str {
    match r {
        Resource::Customer => "CUSTOMER",
        Resource::Organization => "ORGANIZATION",
        Resource::Membership => "MEMBERSHIP",
    }
}

fn borrowed<'a>(metadata: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    metadata.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        let mut details = ErrorDetails::new();
        let mut info = |reason: &str, metadata: &[(&str, &str)]| {
            let metadata: HashMap<String, String> = metadata
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            details.set_error_info(reason, ERROR_DOMAIN, metadata);
        };
        let (code, message) = match &err {
            Error::InvalidArgument(violations) => {
                info("INVALID_ARGUMENT", &[]);
                for v in violations {
                    details.add_bad_request_violation(v.field.clone(), v.description.clone());
                }
                (Code::InvalidArgument, err.to_string())
            }
            Error::NotFound { resource, id } => {
                let reason = format!("{}_NOT_FOUND", resource_upper(*resource));
                info(&reason, &[("id", id)]);
                (Code::NotFound, err.to_string())
            }
            Error::AlreadyExists {
                resource,
                field,
                existing_id,
            } => {
                let reason = format!("{}_ALREADY_EXISTS", resource_upper(*resource));
                let id_key = format!("{resource}_id");
                info(&reason, &[(&id_key, existing_id), ("field", field)]);
                (Code::AlreadyExists, err.to_string())
            }
            Error::EtagMismatch { resource, id } => {
                info("ETAG_MISMATCH", &[("resource", &resource.to_string()), ("id", id)]);
                (Code::Aborted, err.to_string())
            }
            Error::FailedPrecondition {
                reason,
                message,
                metadata,
            } => {
                let pairs = borrowed(metadata);
                info(reason, &pairs);
                details.add_precondition_failure_violation(*reason, pairs.first().map_or("", |p| p.1), message.clone());
                (Code::FailedPrecondition, message.clone())
            }
            Error::Unauthenticated(message) => {
                info("UNAUTHENTICATED", &[]);
                (Code::Unauthenticated, message.clone())
            }
            Error::PermissionDenied { principal, permission } => {
                info(
                    "PERMISSION_DENIED",
                    &[("principal", principal), ("permission", permission)],
                );
                (Code::PermissionDenied, err.to_string())
            }
            Error::ResourceExhausted {
                reason,
                message,
                metadata,
            } => {
                info(reason, &borrowed(metadata));
                (Code::ResourceExhausted, message.clone())
            }
            Error::Aborted(message) => {
                info("CONCURRENT_MODIFICATION", &[]);
                (Code::Aborted, message.clone())
            }
            Error::Unavailable(detail) => {
                tracing::warn!(error = %detail, "storage unavailable");
                info("STORAGE_UNAVAILABLE", &[]);
                (
                    Code::Unavailable,
                    "the customer store is unavailable; retry later".to_owned(),
                )
            }
            Error::Internal(detail) => {
                // The detail may hold SQL; it goes to the log, never to the caller.
                tracing::error!(error = %detail, "internal error");
                info("INTERNAL", &[]);
                (Code::Internal, "internal error".to_owned())
            }
        };
        Status::with_error_details(code, message, details)
    }
}
