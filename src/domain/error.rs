//! The one error type of the domain. `api::status` maps it to gRPC statuses.

use std::fmt;

/// One bad field of a request (becomes a `google.rpc.BadRequest` violation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the field, e.g. `customer.email`.
    pub field: String,
    /// What is wrong with it, readable by a person.
    pub description: String,
}

impl FieldViolation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.description)
    }
}

/// Which kind of resource an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Customer,
    Organization,
    Membership,
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Resource::Customer => "customer",
            Resource::Organization => "organization",
            Resource::Membership => "membership",
        })
    }
}

/// Everything that can go wrong in the domain, typed by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; each violation names a field.
    #[error("invalid request: {}", join(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// The resource does not exist.
    #[error("{resource} {id:?} not found")]
    NotFound { resource: Resource, id: String },
    /// Another Active resource holds the same unique value.
    #[error("an active {resource} with this {field} already exists: {existing_id}")]
    AlreadyExists {
        resource: Resource,
        field: &'static str,
        existing_id: String,
    },
    /// The caller's etag is stale.
    #[error("{resource} {id:?} was changed by someone else (etag mismatch); get it again and retry")]
    EtagMismatch { resource: Resource, id: String },
    /// The system is not in a state that allows the operation.
    #[error("{message}")]
    FailedPrecondition {
        reason: &'static str,
        message: String,
        metadata: Vec<(&'static str, String)>,
    },
    /// No credentials, or credentials nobody issued.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but lacks the permission.
    #[error("principal {principal:?} lacks the {permission:?} permission")]
    PermissionDenied {
        principal: String,
        permission: &'static str,
    },
    /// A limit was exceeded (a row too long, too many columns...).
    #[error("{message}")]
    ResourceExhausted {
        reason: &'static str,
        message: String,
        metadata: Vec<(&'static str, String)>,
    },
    /// A concurrent change won a race the caller may simply retry.
    #[error("{0}")]
    Aborted(String),
    /// The database cannot be reached; retrying later may work.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected storage failure. The text is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// A single-field INVALID_ARGUMENT.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    /// NOT_FOUND for a customer id.
    pub fn customer_not_found(id: &str) -> Self {
        Self::NotFound {
            resource: Resource::Customer,
            id: id.to_owned(),
        }
    }
}

fn join(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
