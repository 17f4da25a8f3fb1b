//! `spawn_app()`: a fresh database and a running server per test.

use std::{net::SocketAddr, time::Duration};

use customer_service::{
    api::limits::Limits,
    domain::customers::CustomerSettings,
    proto::v1::{
        self as pb, customer_service_client::CustomerServiceClient, hub_access_service_client::HubAccessServiceClient,
        organization_service_client::OrganizationServiceClient,
        ticket_intake_service_client::TicketIntakeServiceClient,
    },
    server::{self, AuthSettings, ServerConfig},
    store::PoolSettings,
};
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

/// A running server with clients and its own database.
pub struct TestApp {
    pub addr: SocketAddr,
    pub customers: CustomerServiceClient<Channel>,
    pub intake: TicketIntakeServiceClient<Channel>,
    pub health: HealthClient<Channel>,
    pub hub: HubAccessServiceClient<Channel>,
    pub orgs: OrganizationServiceClient<Channel>,
    pub db: TestDb,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

/// The test database; removed when dropped.
pub struct TestDb {
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    /// Another TestDb owns the database.
    Shared,
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Server {
        admin_url: String,
        name: String,
        backend: Backend,
    },
}

#[derive(Clone, Copy, PartialEq)]
enum Backend {
    Postgres,
    MySql,
}

impl TestDb {
    /// A fresh, empty database of the kind TEST_DATABASE_URL names.
    pub async fn new() -> Self {
        let Some(admin_url) = std::env::var("TEST_DATABASE_URL").ok().filter(|u| !u.is_empty()) else {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}", dir.path().join("customers.db").display());
            return Self {
                url,
                cleanup: Cleanup::Sqlite(dir),
            };
        };
        let backend = if admin_url.starts_with("mysql") {
            Backend::MySql
        } else {
            Backend::Postgres
        };
        let name = format!("cs_test_{}", uuid::Uuid::now_v7().simple());
        let admin = Database::connect(&admin_url)
            .await
            .expect("connect to TEST_DATABASE_URL");
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        admin.close().await.ok();
        let url = replace_database(&admin_url, &name);
        Self {
            url,
            cleanup: Cleanup::Server {
                admin_url,
                name,
                backend,
            },
        }
    }

    /// A handle on the same database that does not remove it.
    pub fn share(&self) -> Self {
        Self {
            url: self.url.clone(),
            cleanup: Cleanup::Shared,
        }
    }

    /// The admin URL and database name, on PostgreSQL.
    #[allow(dead_code)]
    pub fn postgres_admin(&self) -> Option<(String, String)> {
        match &self.cleanup {
            Cleanup::Server {
                admin_url,
                name,
                backend: Backend::Postgres,
            } => Some((admin_url.clone(), name.clone())),
            _ => None,
        }
    }

    /// The database's name, on a database server (PostgreSQL or MySQL).
    #[allow(dead_code)]
    pub fn server_name(&self) -> Option<&str> {
        match &self.cleanup {
            Cleanup::Server { name, .. } => Some(name),
            _ => None,
        }
    }

    /// Whether this suite runs on SQLite.
    #[allow(dead_code)]
    pub fn is_sqlite(&self) -> bool {
        self.url.starts_with("sqlite:")
    }

    /// Whether this suite runs on PostgreSQL.
    #[allow(dead_code)]
    pub fn is_postgres(&self) -> bool {
        matches!(
            self.cleanup,
            Cleanup::Server {
                backend: Backend::Postgres,
                ..
            }
        )
    }
}

fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].rfind('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Cleanup::Server {
            admin_url,
            name,
            backend,
        } = &self.cleanup
        else {
            return;
        };
        let (admin_url, name, backend) = (admin_url.clone(), name.clone(), *backend);
        // Drop runs inside the test's runtime: clean up from a thread of our own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let admin = Database::connect(&admin_url).await.ok()?;
                let sql = match backend {
                    Backend::Postgres => format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                    Backend::MySql => {
                        // As FORCE does: a test that failed midway can leave
                        // a transaction open, and the drop would wait for it
                        // for ever.
                        let sessions = format!("SELECT id FROM information_schema.processlist WHERE db = '{name}'");
                        for row in admin
                            .query_all_raw(Statement::from_string(DbBackend::MySql, sessions))
                            .await
                            .ok()?
                        {
                            if let Ok(id) = row.try_get_by_index::<i64>(0) {
                                admin.execute_unprepared(&format!("KILL {id}")).await.ok();
                            }
                        }
                        format!("DROP DATABASE IF EXISTS {name}")
                    }
                };
                admin.execute_unprepared(&sql).await.ok();
                admin.close().await.ok()
            })
        })
        .join();
    }
}

/// Server settings used by tests unless a test says otherwise.
pub fn test_settings() -> CustomerSettings {
    CustomerSettings::default()
}

/// Starts a server on a fresh database and waits until health says SERVING.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(test_settings()).await
}

/// [`spawn_app`] with custom customer settings.
pub async fn spawn_app_with(settings: CustomerSettings) -> TestApp {
    let db = TestDb::new().await;
    spawn_on(db, settings).await
}

/// Starts a server on an existing test database.
pub async fn spawn_on(db: TestDb, settings: CustomerSettings) -> TestApp {
    spawn_configured(
        db,
        settings,
        AuthSettings::default(),
        Limits::default(),
        PoolSettings::default(),
    )
    .await
}

/// Starts a server that authenticates callers with a tokens file.
#[allow(dead_code)]
pub async fn spawn_with_tokens(tokens_file: std::path::PathBuf) -> TestApp {
    let auth = AuthSettings {
        tokens_file: Some(tokens_file),
        allow_unauthenticated: false,
    };
    spawn_configured(
        TestDb::new().await,
        test_settings(),
        auth,
        Limits::default(),
        PoolSettings::default(),
    )
    .await
}

/// Starts a server with custom protective limits.
#[allow(dead_code)]
pub async fn spawn_with_limits(limits: Limits) -> TestApp {
    spawn_configured(
        TestDb::new().await,
        test_settings(),
        AuthSettings::default(),
        limits,
        PoolSettings::default(),
    )
    .await
}

/// Starts a server with custom database connection settings.
#[allow(dead_code)]
pub async fn spawn_with_pool(pool: PoolSettings) -> TestApp {
    spawn_configured(
        TestDb::new().await,
        test_settings(),
        AuthSettings::default(),
        Limits::default(),
        pool,
    )
    .await
}

async fn spawn_configured(
    db: TestDb,
    settings: CustomerSettings,
    auth: AuthSettings,
    limits: Limits,
    pool: PoolSettings,
) -> TestApp {
    init_logs();
    let listener = server::bind("127.0.0.1:0".parse().unwrap()).await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let config = ServerConfig {
        database_url: db.url.clone(),
        pool,
        customers: settings,
        drain_timeout: Duration::from_secs(5),
        auth,
        limits,
        tls: None,
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        server::serve(config, listener, async {
            let _ = stopped.await;
        })
        .await
        .expect("server failed");
    });
    let channel = Channel::from_shared(format!("http://{addr}")).unwrap().connect_lazy();
    let app = TestApp {
        addr,
        customers: CustomerServiceClient::new(channel.clone()),
        intake: TicketIntakeServiceClient::new(channel.clone()),
        health: HealthClient::new(channel.clone()),
        hub: HubAccessServiceClient::new(channel.clone()),
        orgs: OrganizationServiceClient::new(channel),
        db,
        stop: Some(stop),
        handle: Some(handle),
    };
    app.wait_serving().await;
    app
}

impl TestApp {
    async fn wait_serving(&self) {
        let mut health = self.health.clone();
        for _ in 0..200 {
            let status = health.check(HealthCheckRequest { service: String::new() }).await;
            if let Ok(r) = status
                && r.into_inner().status == ServingStatus::Serving as i32
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("server did not become SERVING");
    }

    /// Stops the server gracefully and waits for it; returns the database.
    pub async fn stop(mut self) -> TestDb {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.expect("server task");
        }

        std::mem::replace(
            &mut self.db,
            TestDb {
                url: String::new(),
                cleanup: Cleanup::Sqlite(tempfile::tempdir().unwrap()),
            },
        )
    }

    /// Creates a customer, panicking on failure.
    pub async fn create(&self, name: &str, email: &str, mobile: &str) -> pb::Customer {
        self.customers
            .clone()
            .create_customer(pb::CreateCustomerRequest {
                customer: Some(customer(name, email, mobile)),
                request_id: String::new(),
            })
            .await
            .unwrap_or_else(|s| panic!("create {name}: {s:?}"))
            .into_inner()
    }

    /// Reads a customer, panicking on failure.
    pub async fn get(&self, id: &str) -> pb::Customer {
        self.customers
            .clone()
            .get_customer(pb::GetCustomerRequest { id: id.to_owned() })
            .await
            .unwrap_or_else(|s| panic!("get {id}: {s:?}"))
            .into_inner()
    }

    /// Deletes a customer (no etag check), panicking on failure.
    pub async fn delete(&self, id: &str) -> pb::Customer {
        self.customers
            .clone()
            .delete_customer(pb::DeleteCustomerRequest {
                id: id.to_owned(),
                etag: String::new(),
            })
            .await
            .unwrap_or_else(|s| panic!("delete {id}: {s:?}"))
            .into_inner()
    }
}

/// A customer message with the given identity fields.
pub fn customer(name: &str, email: &str, mobile: &str) -> pb::Customer {
    pb::Customer {
        name: name.into(),
        email: email.into(),
        mobile: mobile.into(),
        ..Default::default()
    }
}

fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        customer_service::telemetry::init(Default::default());
    }
}

/// Whether a missing outside tool must fail the test instead of skipping it.
pub fn require_external() -> bool {
    std::env::var("REQUIRE_EXTERNAL").is_ok_and(|v| v == "1")
}

/// Finds an outside tool on PATH; `None` (after printing why) means skip.
pub fn external_tool(name: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            !require_external(),
            "{name} is required (REQUIRE_EXTERNAL=1) but not on PATH"
        );
        eprintln!("SKIPPED: {name} not on PATH (install it, or run .ci/run)");
    }
    found
}

/// The ErrorInfo reason and metadata of a status.
pub fn error_info(status: &tonic::Status) -> (String, std::collections::HashMap<String, String>) {
    use tonic_types::StatusExt;
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    (info.reason, info.metadata)
}

/// The BadRequest field paths of a status.
pub fn bad_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// Every customer `req` lists, following page tokens.
pub async fn list_all(app: &TestApp, req: pb::ListCustomersRequest) -> Vec<pb::Customer> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .customers
            .clone()
            .list_customers(pb::ListCustomersRequest {
                page_token: token.clone(),
                ..req.clone()
            })
            .await
            .unwrap()
            .into_inner();
        out.extend(page.customers);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

/// An ImportCustomers call in flight.
pub type ImportCall = JoinHandle<Result<tonic::Response<pb::ImportCustomersResponse>, tonic::Status>>;

/// Starts an import whose messages are what the returned sender sends; the
/// stream ends when the sender is dropped.
pub fn open_import(
    mut client: CustomerServiceClient<Channel>,
    buffer: usize,
) -> (tokio::sync::mpsc::Sender<pb::ImportCustomersRequest>, ImportCall) {
    let (tx, rx) = tokio::sync::mpsc::channel(buffer);
    let call = tokio::spawn(async move {
        client
            .import_customers(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    (tx, call)
}
