//! The `customer-service` binary.

use std::process::ExitCode;

use clap::Parser;
use customer_service::{
    config::{Cli, Command},
    server::{self, ServerConfig},
    store::Store,
    telemetry,
};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Migrate(db)) => {
            telemetry::init(Default::default());
            migrate(db).await
        }
        Some(Command::Serve(args)) => serve(args).await,
        None => serve(cli.serve).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "exiting");
            eprintln!("customer-service: {e}");
            ExitCode::FAILURE
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn serve(args: customer_service::config::ServeArgs) -> Result<(), BoxError> {
    telemetry::init(args.log_format);
    let config = ServerConfig {
        database_url: args.database.url()?,
        pool: args.database.pool(),
        customers: args.customer_settings(),
        drain_timeout: args.drain_timeout(),
    };
    let listener = server::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    server::serve(config, listener, server::shutdown_signal()).await
}

async fn migrate(db: customer_service::config::DatabaseArgs) -> Result<(), BoxError> {
    let store = Store::connect(&db.url()?, &db.pool()).await?;
    store.migrate().await?;
    tracing::info!("schema is up to date");
    store.close().await?;
    Ok(())
}
