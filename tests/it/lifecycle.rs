//! The binary as an operator runs it: start, health, migrate, SIGTERM.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::Duration,
};

use customer_service::proto::v1::{self as pb, customer_service_client::CustomerServiceClient};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

use crate::harness::{TestDb, spawn_app};

const BIN: &str = env!("CARGO_BIN_EXE_customer-service");

/// Starts the binary on port 0 with JSON logs; returns it and its address.
pub fn start_binary(database_url: &str, extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--database-url",
            database_url,
        ])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start customer-service");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines.next().expect("server exited before listening").expect("read log");
        let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if event["message"] == "listening" {
            break event["addr"].as_str().expect("addr in log").to_owned();
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().ok();
            panic!("server did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn health_reports_every_service_serving() {
    let app = spawn_app().await;
    let mut health = app.health.clone();
    for service in ["", "customers.v1.CustomerService", "customers.v1.TicketIntakeService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "nope.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
}

/// The server's end of each connection sends without Nagle's delay: with
/// it, a response's last frame could wait 40 ms for the client's delayed
/// ACK. The server runs in this process, so its sockets are ours to read.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn accepted_connections_have_tcp_nodelay() {
    let app = spawn_app().await;
    app.health
        .clone()
        .check(HealthCheckRequest { service: String::new() })
        .await
        .unwrap();
    let mut accepted = 0;
    customer_service::store::sockets::each_socket(|socket| {
        let local = socket.local_addr().ok().and_then(|a| a.as_socket());
        // The listener has no peer; the server keeps the connections open
        // while `app` lives, so reading their option cannot fail.
        if let Ok(peer) = socket.peer_addr()
            && local == Some(app.addr)
        {
            accepted += 1;
            let peer = peer.as_socket();
            assert!(
                socket.tcp_nodelay().unwrap(),
                "connection from {peer:?}: TCP_NODELAY is off"
            );
        }
    });
    assert!(accepted > 0, "found none of the server's accepted sockets");
}

#[tokio::test]
async fn data_survives_a_restart_and_shutdown_is_graceful() {
    let app = spawn_app().await;
    let created = app.create("Persistent", "keep@example.com", "").await;
    let db: TestDb = app.stop().await;
    let app = crate::harness::spawn_on(db, crate::harness::test_settings()).await;
    let got = app.get(&created.id).await;
    assert_eq!(got, created);
}

#[tokio::test]
async fn binary_serves_migrates_and_exits_zero_on_sigterm() {
    let db = TestDb::new().await;
    let migrate = Command::new(BIN)
        .args(["migrate", "--database-url", &db.url])
        .output()
        .expect("run migrate");
    assert!(
        migrate.status.success(),
        "migrate: {}",
        String::from_utf8_lossy(&migrate.stderr)
    );

    let (mut child, addr) = start_binary(&db.url, &[]);
    let channel = serving_channel(&addr).await;
    let mut client = CustomerServiceClient::new(channel);
    let created = client
        .create_customer(pb::CreateCustomerRequest {
            customer: Some(crate::harness::customer("Bin", "bin@example.com", "")),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.email, "bin@example.com");

    sigterm(&child);
    let status = tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(15)))
        .await
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn help_explains_every_option() {
    let out = Command::new(BIN).arg("--help").output().expect("run --help");
    let help = String::from_utf8_lossy(&out.stdout);
    for option in [
        "--listen",
        "--database-url",
        "--data-dir",
        "--default-region",
        "--log-format",
        "--drain-timeout-secs",
        "migrate",
    ] {
        assert!(help.contains(option), "--help mentions {option}:\n{help}");
    }
}

/// Waits until the binary at `addr` says SERVING; returns a channel to it.
pub async fn serving_channel(addr: &str) -> tonic::transport::Channel {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel.clone());
    for _ in 0..200 {
        if let Ok(r) = health.check(HealthCheckRequest { service: String::new() }).await
            && r.into_inner().status == ServingStatus::Serving as i32
        {
            return channel;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("binary never became SERVING");
}

#[tokio::test]
async fn sigterm_during_an_import_writes_what_arrived_and_reports_it() {
    use customer_service::proto::v1::import_customers_request::Part;
    let db = TestDb::new().await;
    let (mut child, addr) = start_binary(&db.url, &["--drain-timeout-secs", "20"]);
    let (tx, call) = crate::harness::open_import(CustomerServiceClient::new(serving_channel(&addr).await), 4);
    let mut file = String::from("email\n");
    for i in 0..1500 {
        file.push_str(&format!("term{i}@example.com\n"));
    }
    file.push_str("half-a-ro"); // cut mid-record: not imported
    tx.send(pb::ImportCustomersRequest {
        part: Some(Part::CsvChunk(file.into_bytes())),
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    sigterm(&child);
    let report = tokio::time::timeout(Duration::from_secs(15), call)
        .await
        .expect("the import answers before the drain deadline")
        .unwrap()
        .expect("an answer, not an error")
        .into_inner();
    assert!(report.interrupted, "{report:?}");
    assert_eq!((report.received, report.created, report.failed), (1500, 1500, 0));
    drop(tx);
    let status = tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(20)))
        .await
        .unwrap();
    assert!(status.success(), "exit status {status:?}");

    // Everything reported is stored: a fresh server sees it.
    let (mut child, addr) = start_binary(&db.url, &[]);
    let mut client = CustomerServiceClient::new(serving_channel(&addr).await);
    let listed = client
        .list_customers(pb::ListCustomersRequest {
            page_size: 1000,
            filter: "email = \"term1499@example.com\"".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.customers.len(), 1);
    sigterm(&child);
    tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(15)))
        .await
        .unwrap();
}

#[tokio::test]
async fn processes_migrating_one_fresh_database_at_once_all_succeed() {
    let db = TestDb::new().await;
    if !db.is_postgres() {
        eprintln!("SKIPPED: concurrent migration is a PostgreSQL scenario (set TEST_DATABASE_URL)");
        return;
    }
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(BIN)
                .args(["migrate", "--database-url", &db.url])
                .stderr(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .expect("run migrate")
        })
        .collect();
    for child in children {
        let out = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        assert!(
            out.status.success(),
            "migrate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // And the schema works.
    let (mut child, addr) = start_binary(&db.url, &[]);
    let mut client = CustomerServiceClient::new(serving_channel(&addr).await);
    client
        .create_customer(pb::CreateCustomerRequest {
            customer: Some(crate::harness::customer("Migrated", "migrated@example.com", "")),
            request_id: String::new(),
        })
        .await
        .unwrap();
    sigterm(&child);
    tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(15)))
        .await
        .unwrap();
}

#[tokio::test]
async fn every_migration_rolls_back_and_forward() {
    use customer_service::store::migration::Migrator;
    use sea_orm_migration::MigratorTrait;

    let db = TestDb::new().await;
    // The service's own connect: it creates a missing SQLite file.
    let store = customer_service::store::Store::connect(&db.url, &Default::default())
        .await
        .expect("connect");
    let conn = store.conn();
    let all = Migrator::migrations().len();
    Migrator::up(conn, None).await.expect("up");
    assert_eq!(Migrator::get_applied_migrations(conn).await.unwrap().len(), all);
    Migrator::down(conn, None).await.expect("every down step runs");
    assert!(Migrator::get_applied_migrations(conn).await.unwrap().is_empty());
    Migrator::up(conn, None).await.expect("up again after a full rollback");
    assert_eq!(Migrator::get_applied_migrations(conn).await.unwrap().len(), all);
    store.close().await.ok();
}

/// PostgreSQL: every text column that an index of the service's holds
/// compares bytewise (migration 8), whatever the database's own collation.
#[tokio::test]
async fn postgres_indexed_text_columns_compare_bytewise() {
    use customer_service::store::migration::Migrator;
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    use sea_orm_migration::MigratorTrait;

    let db = TestDb::new().await;
    if !db.is_postgres() {
        eprintln!("SKIPPED: column collations are a PostgreSQL matter (set TEST_DATABASE_URL)");
        return;
    }
    let store = customer_service::store::Store::connect(&db.url, &Default::default())
        .await
        .expect("connect");
    let conn = store.conn();
    Migrator::up(conn, None).await.expect("up");
    let indexed = Statement::from_string(
        DbBackend::Postgres,
        "SELECT DISTINCT t.relname || '.' || a.attname AS col, COALESCE(c.collname, '') AS coll \
         FROM pg_index i \
         JOIN pg_class t ON t.oid = i.indrelid \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) \
         LEFT JOIN pg_collation c ON c.oid = a.attcollation \
         WHERE t.relnamespace = current_schema()::regnamespace AND a.attcollation <> 0 \
           AND t.relname <> 'seaql_migrations' \
         ORDER BY 1",
    );
    let rows = conn.query_all_raw(indexed).await.expect("read the catalogue");
    let columns: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.try_get("", "col").unwrap(), r.try_get("", "coll").unwrap()))
        .collect();
    assert!(
        columns.iter().any(|(c, _)| c == "customer_identities.live_key"),
        "the catalogue query finds the service's indexes: {columns:?}"
    );
    let linguistic: Vec<_> = columns.iter().filter(|(_, coll)| coll != "C").collect();
    assert!(
        linguistic.is_empty(),
        "indexed text columns not COLLATE \"C\": {linguistic:?}"
    );
    store.close().await.ok();
}
