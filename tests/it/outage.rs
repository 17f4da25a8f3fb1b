//! Database outage: calls fail fast with UNAVAILABLE, health turns
//! NOT_SERVING, and both recover without a restart. PostgreSQL only: the
//! test makes the server refuse this test's database, then lets it back.
//! Ticket intake is checked too: its batch writer keeps a connection of its
//! own, outside the pool, and must lose it and reconnect like the pool.

use std::{process::Command, time::Duration};

use customer_service::{
    proto::v1 as pb,
    store::{PoolSettings, sockets::DeadPeer},
};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use tonic::{Code, Status};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use crate::harness::{TestApp, external_tool, require_external, spawn_app, spawn_with_pool};

async fn health_becomes(app: &TestApp, want: ServingStatus) -> bool {
    let mut health = app.health.clone();
    for _ in 0..200 {
        if let Ok(r) = health.check(HealthCheckRequest { service: String::new() }).await
            && r.into_inner().status == want as i32
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn resolve(app: &TestApp, ticket_id: &str, email: &str) -> Result<pb::ResolveTicketCustomerResponse, Status> {
    let req = pb::ResolveTicketCustomerRequest {
        ticket_id: ticket_id.into(),
        name: "Outage Requester".into(),
        email: email.into(),
        ..Default::default()
    };
    app.intake
        .clone()
        .resolve_ticket_customer(req)
        .await
        .map(tonic::Response::into_inner)
}

/// The client ports of the connections whose last statement was one of the
/// intake batch writer's (its read or its write).
async fn batch_connections(admin: &DatabaseConnection, name: &str) -> Vec<i32> {
    let sql = format!(
        "SELECT client_port FROM pg_stat_activity WHERE datname = '{name}' \
         AND (query LIKE 'WITH l AS MATERIALIZED%' OR query LIKE 'WITH c AS (INSERT INTO customers%')"
    );
    admin
        .query_all_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get_by_index::<i32>(0).unwrap())
        .collect()
}

#[tokio::test]
async fn database_outage_is_unavailable_and_recovers_without_restart() {
    let app = spawn_app().await;
    // .ci/run's PostgreSQL leg runs this; the SQLite and MariaDB legs skip it.
    let Some((admin_url, name)) = app.db.postgres_admin() else {
        eprintln!("SKIPPED: the outage test needs PostgreSQL (TEST_DATABASE_URL=postgres://...)");
        return;
    };
    let created = app.create("Durable", "durable@example.com", "").await;
    // Opens the batch writer's own connection, which the outage then cuts.
    let before = resolve(&app, "T-before", "durable@example.com").await.unwrap();
    assert_eq!(before.customer.as_ref().map(|c| &c.id), Some(&created.id));
    let admin = Database::connect(&admin_url).await.unwrap();

    // Outage: no new connections to this database, existing ones cut.
    admin
        .execute_unprepared(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .await
        .unwrap();
    admin
        .execute_unprepared(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        ))
        .await
        .unwrap();
    assert!(
        health_becomes(&app, ServingStatus::NotServing).await,
        "health turns NOT_SERVING"
    );
    let err = app
        .customers
        .clone()
        .get_customer(pb::GetCustomerRequest { id: created.id.clone() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    let err = resolve(&app, "T-during", "new-in-outage@example.com")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "intake during the outage: {err:?}");
    let liveness = app
        .health
        .clone()
        .check(HealthCheckRequest {
            service: customer_service::server::LIVENESS_SERVICE.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        liveness.status,
        ServingStatus::Serving as i32,
        "liveness stays SERVING: an outage must not restart replicas"
    );

    // Recovery: the same process serves again.
    admin
        .execute_unprepared(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .await
        .unwrap();
    assert!(
        health_becomes(&app, ServingStatus::Serving).await,
        "health returns to SERVING"
    );
    // The ticket refused during the outage was not half-stored: asked
    // again, it creates its customer once; the earlier ticket replays.
    let during = resolve(&app, "T-during", "new-in-outage@example.com").await.unwrap();
    assert!(during.created, "{during:?}");
    let again = resolve(&app, "T-during", "new-in-outage@example.com").await.unwrap();
    assert_eq!(again, during, "replayed after the outage");
    // The first batch after the outage found the writer's connection cut
    // and left its ticket to the single-ticket path; the next one opened a
    // new connection of the writer's own.
    assert_eq!(
        batch_connections(&admin, &name).await.len(),
        1,
        "the batch writer reconnected"
    );
    let replayed = resolve(&app, "T-before", "durable@example.com").await.unwrap();
    assert_eq!(replayed.created, before.created);
    assert_eq!(replayed.customer.map(|c| c.id), Some(created.id.clone()));
    let got = app.get(&created.id).await;
    assert_eq!(got.id, created.id);
    assert_eq!(
        (got.name.as_str(), got.email.as_str(), got.ticket_count),
        ("Durable", "durable@example.com", 1),
        "nothing lost, the first ticket counted once"
    );
    admin.close().await.ok();
}

/// iptables rules dropping one loopback connection's packets both ways, as
/// a vanished database host would (no FIN, no RST); removed when dropped.
struct Blackhole {
    iptables: std::path::PathBuf,
    port: u16,
}

impl Blackhole {
    /// `None` (after printing why) when iptables is missing or refuses:
    /// it needs root.
    fn iptables() -> Option<std::path::PathBuf> {
        let iptables = external_tool("iptables")?;
        let usable = Command::new(&iptables)
            .args(["-w", "-S", "INPUT"])
            .output()
            .is_ok_and(|out| out.status.success());
        if !usable {
            assert!(
                !require_external(),
                "iptables is required (REQUIRE_EXTERNAL=1) but refused: run as root"
            );
            eprintln!("SKIPPED: iptables refused (needs root)");
            return None;
        }
        Some(iptables)
    }

    fn new(iptables: std::path::PathBuf, port: u16) -> Self {
        let hole = Self { iptables, port };
        hole.rules("-I");
        hole
    }

    fn rules(&self, op: &str) {
        for side in ["--sport", "--dport"] {
            let port = self.port.to_string();
            let status = Command::new(&self.iptables)
                .args(["-w", op, "INPUT", "-i", "lo", "-p", "tcp", side, &port, "-j", "DROP"])
                .status()
                .unwrap();
            assert!(status.success() || op == "-D", "iptables {op} {side} {port}");
        }
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.rules("-D");
    }
}

/// A database connection that goes silent (a failover, a host gone) is
/// closed once it has been silent for the configured TCP user timeout:
/// the ticket waiting on the intake batch writer's connection is answered
/// through the single-ticket path, and the writer opens a new connection.
/// Without the timeout the kernel retransmits for ~15 minutes and every
/// ticket meanwhile fails DEADLINE_EXCEEDED.
#[tokio::test]
async fn a_silent_database_connection_is_replaced() {
    let pool = PoolSettings {
        dead_peer: Some(DeadPeer(Duration::from_secs(2))),
        ..PoolSettings::default()
    };
    let app = spawn_with_pool(pool).await;
    let Some((admin_url, name)) = app.db.postgres_admin() else {
        eprintln!("SKIPPED: the silent-connection test needs PostgreSQL (TEST_DATABASE_URL=postgres://...)");
        return;
    };
    let Some(iptables) = Blackhole::iptables() else {
        return;
    };
    let admin = Database::connect(&admin_url).await.unwrap();
    let first = resolve(&app, "T-1", "first@example.com").await.unwrap();
    let writer = batch_connections(&admin, &name).await;
    assert_eq!(writer.len(), 1, "the batch writer's connection: {writer:?}");
    let port = u16::try_from(writer[0]).unwrap();

    let hole = Blackhole::new(iptables, port);
    let during = tokio::time::timeout(Duration::from_secs(20), resolve(&app, "T-2", "second@example.com"))
        .await
        .expect("the ticket waited on the silent connection")
        .unwrap();
    drop(hole);
    assert!(during.created, "{during:?}");

    let after = resolve(&app, "T-3", "first@example.com").await.unwrap();
    assert_eq!(after.customer.map(|c| c.id), first.customer.map(|c| c.id));
    let writers = batch_connections(&admin, &name).await;
    assert!(
        writers.iter().any(|p| *p != i32::from(port)),
        "the batch writer opened a new connection: {writers:?}"
    );
    admin.close().await.ok();
}

/// Every connection the server holds to the database, the pool's and the
/// batch writer's, sends without Nagle's delay and is watched for a silent
/// server (keepalive probes and TCP_USER_TIMEOUT): sqlx sets neither
/// (`store/sockets.rs`). The server runs in this process, so its sockets
/// are ours to read; PostgreSQL names their ports.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn database_connections_are_watched_for_a_silent_server() {
    let app = spawn_app().await;
    let Some((admin_url, name)) = app.db.postgres_admin() else {
        eprintln!("SKIPPED: the database socket test needs PostgreSQL (TEST_DATABASE_URL=postgres://...)");
        return;
    };
    let created = app.create("Watched", "watched@example.com", "").await;
    resolve(&app, "T-watched", "watched@example.com").await.unwrap();
    assert_eq!(app.get(&created.id).await.ticket_count, 1);
    let admin = Database::connect(&admin_url).await.unwrap();
    let sql = format!("SELECT client_port FROM pg_stat_activity WHERE datname = '{name}'");
    let ports: Vec<u16> = admin
        .query_all_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .unwrap()
        .iter()
        .map(|row| u16::try_from(row.try_get_by_index::<i32>(0).unwrap()).unwrap())
        .collect();
    assert!(
        !batch_connections(&admin, &name).await.is_empty(),
        "the batch writer is connected"
    );
    admin.close().await.ok();

    let mut checked = 0;
    customer_service::store::sockets::each_socket(|socket| {
        let local = socket.local_addr().ok().and_then(|a| a.as_socket());
        if let Some(local) = local
            && ports.contains(&local.port())
        {
            checked += 1;
            assert!(socket.tcp_nodelay().unwrap(), "{local}: TCP_NODELAY is off");
            assert!(socket.keepalive().unwrap(), "{local}: no keepalive probes");
            assert!(
                socket.tcp_user_timeout().unwrap().is_some(),
                "{local}: no TCP_USER_TIMEOUT"
            );
        }
    });
    assert_eq!(
        checked,
        ports.len(),
        "found each of the server's database sockets: {ports:?}"
    );
}
