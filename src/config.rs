//! Command line and environment configuration (flags override variables,
//! which override defaults). `--help` documents every option.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{
    domain::{customers::CustomerSettings, mobile::Region},
    store::{PoolSettings, sockets::DeadPeer},
};

/// customer-service: the customers of a helpdesk, over gRPC.
#[derive(Debug, Parser)]
#[command(name = "customer-service", version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of `serve`, the default command.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC server (the default).
    Serve(ServeArgs),
    /// Bring the database schema up to date, then exit.
    Migrate(DatabaseArgs),
    /// Manage caller tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Import customers from a CSV file into a running server.
    Import(ImportArgs),
    /// Export customers from a running server as CSV.
    Export(ExportArgs),
}

/// How the CLI reaches a running server.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The server's URL.
    #[arg(long, env = "CUSTOMER_SERVICE_URL", default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// Bearer token (needs the import permission to import, read to export).
    #[arg(long, env = "CUSTOMER_SERVICE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Import mode.
#[derive(Debug, Clone, Copy, ValueEnum, Default)]
pub enum ImportMode {
    /// Create new people, update matched ones with the row's non-empty cells.
    #[default]
    Upsert,
    /// Create new people; skip and report matched ones.
    CreateOnly,
}

/// `customer-service import`.
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The CSV file (UTF-8; header row with an email and/or mobile column).
    pub file: PathBuf,
    #[command(flatten)]
    pub client: ClientArgs,
    /// Validate, match and count exactly as a real run would; store nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// What to do with rows that match an existing customer.
    #[arg(long, value_enum, default_value_t)]
    pub mode: ImportMode,
    /// Store nothing if any row fails.
    #[arg(long)]
    pub all_or_nothing: bool,
    /// Region for phone numbers without +country (default: the server's).
    #[arg(long)]
    pub region: Option<String>,
    /// Write the failed rows, with an import_error column, to this CSV file
    /// (fix them and import that file).
    #[arg(long)]
    pub errors_out: Option<PathBuf>,
}

/// `customer-service export`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Write to this file instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Only customers matching this filter (same syntax as ListCustomers).
    #[arg(long, default_value = "")]
    pub filter: String,
    /// Include deleted customers.
    #[arg(long)]
    pub show_deleted: bool,
}

/// Token commands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a fresh random token (once) and the tokens-file block for it.
    New {
        /// Name of the principal (who uses the token), e.g. ticketing-platform.
        #[arg(long)]
        name: String,
        /// Comma-separated permissions: read, write, delete, import, intake, hub, admin.
        #[arg(long, value_delimiter = ',', required = true)]
        permissions: Vec<crate::domain::auth::Permission>,
    },
}

/// Where the data lives.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Database URL: sqlite://FILE, postgres://USER@HOST/DB or mysql://USER@HOST/DB.
    /// Default: the SQLite file customers.db in --data-dir, created on first start.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Folder of the default SQLite database.
    #[arg(long, env = "DATA_DIR", default_value = ".")]
    pub data_dir: PathBuf,
    /// Most pooled database connections.
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
    /// Seconds a call waits for a database connection before failing UNAVAILABLE.
    #[arg(long, env = "DB_ACQUIRE_TIMEOUT_SECS", default_value_t = 5)]
    pub db_acquire_timeout_secs: u64,
    /// Seconds a database TCP connection may leave data or keepalive probes
    /// unanswered before it counts as dead and is replaced (a failover, a
    /// host gone); 0 leaves the OS defaults, under which a statement waits
    /// ~15 minutes on a vanished server.
    #[arg(long, env = "DB_TCP_USER_TIMEOUT_SECS", default_value_t = 15)]
    pub db_tcp_user_timeout_secs: u64,
}

impl DatabaseArgs {
    /// The database URL to use; creates the data folder for the SQLite default.
    pub fn url(&self) -> std::io::Result<String> {
        if let Some(url) = &self.database_url {
            return Ok(url.clone());
        }
        std::fs::create_dir_all(&self.data_dir)?;
        Ok(format!("sqlite://{}", self.data_dir.join("customers.db").display()))
    }

    /// Pool settings.
    pub fn pool(&self) -> PoolSettings {
        PoolSettings {
            max_connections: self.db_max_connections.max(1),
            acquire_timeout: Duration::from_secs(self.db_acquire_timeout_secs.max(1)),
            dead_peer: (self.db_tcp_user_timeout_secs > 0)
                .then(|| DeadPeer(Duration::from_secs(self.db_tcp_user_timeout_secs))),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Options of the server.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the log says which).
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Region (ISO 3166-1 alpha-2) for phone numbers written without +country.
    #[arg(long, env = "DEFAULT_REGION", default_value = "GB", value_parser = parse_region)]
    pub default_region: Region,
    /// Customer Hub access of customers created without saying.
    #[arg(long, env = "HUB_ACCESS_DEFAULT", default_value_t = true, action = clap::ArgAction::Set)]
    pub hub_access_default: bool,
    /// New customers join the Active organisation that lists their email domain.
    #[arg(long, env = "ORG_DOMAIN_ASSIGNMENT", default_value_t = false, action = clap::ArgAction::Set)]
    pub org_domain_assignment: bool,
    /// Seconds in-flight calls get to finish after SIGTERM/SIGINT.
    #[arg(long, env = "DRAIN_TIMEOUT_SECS", default_value_t = 20)]
    pub drain_timeout_secs: u64,
    /// Largest message a caller may send, in bytes (an import's CSV chunks too).
    #[arg(long, env = "MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// Calls in flight across all connections; more are refused at once with
    /// RESOURCE_EXHAUSTED (OVERLOADED).
    #[arg(long, env = "MAX_CONCURRENT_CALLS", default_value_t = 1024)]
    pub max_concurrent_calls: usize,
    /// Streams one HTTP/2 connection may have open at once.
    #[arg(long, env = "MAX_STREAMS_PER_CONNECTION", default_value_t = 256)]
    pub max_streams_per_connection: u32,
    /// Seconds a unary call may take (DEADLINE_EXCEEDED after); imports and
    /// exports are not limited.
    #[arg(long, env = "UNARY_TIMEOUT_SECS", default_value_t = 30)]
    pub unary_timeout_secs: u64,
    /// PEM certificate chain: serve over TLS (with --tls-key).
    #[arg(long, env = "TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates: clients must present a certificate they signed (mTLS).
    #[arg(long, env = "TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Seconds an import's client may send nothing before the import is
    /// stopped (DEADLINE_EXCEEDED; batches already written are kept).
    #[arg(long, env = "STREAM_IDLE_TIMEOUT_SECS", default_value_t = 60)]
    pub stream_idle_timeout_secs: u64,
    /// Seconds between HTTP/2 keepalive pings (0: none); a client that does
    /// not answer within 20 s is disconnected.
    #[arg(long, env = "KEEPALIVE_SECS", default_value_t = 30)]
    pub keepalive_secs: u64,
    /// TOML file of principals (name, token_sha256, permissions); re-read on SIGHUP.
    /// Without it the service serves unauthenticated, and only on a loopback address.
    #[arg(long, env = "TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,
    /// Serve without a tokens file on a non-loopback address (not for production).
    #[arg(long, env = "ALLOW_UNAUTHENTICATED", default_value_t = false)]
    pub allow_unauthenticated: bool,
    /// Log format; the level comes from RUST_LOG (default info).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl ServeArgs {
    /// Customer rules configured here.
    pub fn customer_settings(&self) -> CustomerSettings {
        CustomerSettings {
            default_region: self.default_region,
            hub_access_default: self.hub_access_default,
            org_domain_assignment: self.org_domain_assignment,
        }
    }

    /// The drain deadline.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }

    /// TLS files, when TLS is on.
    pub fn tls(&self) -> Option<crate::server::TlsFiles> {
        Some(crate::server::TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.tls_client_ca.clone(),
        })
    }

    /// The protective limits.
    pub fn limits(&self) -> crate::api::limits::Limits {
        crate::api::limits::Limits {
            max_concurrent_calls: self.max_concurrent_calls,
            unary_timeout: Duration::from_secs(self.unary_timeout_secs.max(1)),
            max_message_bytes: self.max_message_bytes,
            max_streams_per_connection: self.max_streams_per_connection,
            keepalive: (self.keepalive_secs > 0).then(|| Duration::from_secs(self.keepalive_secs)),
            stream_idle_timeout: Duration::from_secs(self.stream_idle_timeout_secs.max(1)),
            ..Default::default()
        }
    }
}

fn parse_region(s: &str) -> Result<Region, String> {
    Region::parse(s).ok_or_else(|| format!("{s:?} is not an ISO 3166-1 alpha-2 region such as GB or US"))
}
