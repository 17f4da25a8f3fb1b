//! Integration tests: a real server on 127.0.0.1:0, a real database (SQLite
//! by default; PostgreSQL or MySQL when TEST_DATABASE_URL is set), and the
//! generated tonic clients. One test binary, so one link for the whole suite.

mod harness;

mod auth;
mod cli;
mod customers;
mod external;
mod history;
mod hub;
mod import;
mod intake;
mod lifecycle;
mod limits;
mod merge;
mod organizations;
mod outage;
mod tls;
