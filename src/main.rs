//! The `customer-service` binary.

use std::process::ExitCode;

use clap::Parser;
use customer_service::{
    cli,
    config::{Cli, Command, TokenCommand},
    server::{self, ServerConfig},
    store::Store,
    telemetry,
};

/// jemalloc: under glibc's malloc, allocation was ~13% of the server's CPU
/// in the intake benchmark (fastbin consolidation between a batch's small
/// and large allocations, on the batch writer's thread, which is the limit).
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its start. Freed pages go back to the system
/// within a second, from one background thread, so an idle server shrinks
/// and a large import's peak stays where glibc's was.
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8] =
    b"background_thread:true,max_background_threads:1,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Migrate(db)) => {
            telemetry::init(Default::default());
            migrate(db).await
        }
        Some(Command::Serve(args)) => serve(args).await,
        Some(Command::Token(TokenCommand::New { name, permissions })) => new_token(&name, &permissions),
        Some(Command::Import(args)) => {
            return match cli::import::run(args).await {
                Ok(true) => ExitCode::SUCCESS,
                // Some rows failed: the report says which.
                Ok(false) => ExitCode::from(2),
                Err(e) => {
                    eprintln!("customer-service import: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(Command::Export(args)) => cli::export::run(args).await,
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
        limits: args.limits(),
        tls: args.tls(),
        auth: server::AuthSettings {
            tokens_file: args.tokens_file.clone(),
            allow_unauthenticated: args.allow_unauthenticated,
        },
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

fn new_token(name: &str, permissions: &[customer_service::domain::auth::Permission]) -> Result<(), BoxError> {
    use customer_service::domain::auth::{hex, new_token, sha256};
    if name.trim().is_empty() {
        return Err("--name must not be empty".into());
    }
    let token = new_token()?;
    let list: Vec<String> = permissions.iter().map(|p| format!("{:?}", p.as_str())).collect();
    println!("# Token for {name:?}; shown once. Give it to the caller; store only the hash below.");
    println!("# token: {token}");
    println!();
    println!("[[principals]]");
    println!("name = {name:?}");
    println!("token_sha256 = \"{}\"", hex(&sha256(&token)));
    println!("permissions = [{}]", list.join(", "));
    Ok(())
}
