//! gRPC handlers: decode the request, call the domain, encode the answer.

pub mod auth;
pub mod convert;
pub mod customers;
pub mod gate;
pub mod hub;
pub mod import;
pub mod intake;
pub mod limits;
pub mod organizations;
pub mod peer;
pub mod status;
