//! customer-service: the single source of truth for the customers of a
//! helpdesk / ticketing platform, served over gRPC.
//!
//! Layers, each in its own module, data flowing one way:
//! [`api`] (gRPC handlers) → [`domain`] (rules) → [`store`] (SeaORM).

pub mod api;
pub mod cli;
pub mod config;
pub mod domain;
pub mod proto;
pub mod server;
pub mod store;
pub mod telemetry;
