//! Database outage: calls fail fast with UNAVAILABLE, health turns
//! NOT_SERVING, and both recover without a restart. PostgreSQL only: the
//! test makes the server refuse this test's database, then lets it back.

use std::time::Duration;

use customer_service::proto::v1 as pb;
use sea_orm::{ConnectionTrait, Database};
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use crate::harness::{TestApp, spawn_app};

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

#[tokio::test]
async fn database_outage_is_unavailable_and_recovers_without_restart() {
    let app = spawn_app().await;
    // .ci/run's PostgreSQL leg runs this; the SQLite and MariaDB legs skip it.
    let Some((admin_url, name)) = app.db.postgres_admin() else {
        eprintln!("SKIPPED: the outage test needs PostgreSQL (TEST_DATABASE_URL=postgres://...)");
        return;
    };
    let created = app.create("Durable", "durable@example.com", "").await;
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
    let got = app.get(&created.id).await;
    assert_eq!(got, created, "nothing lost");
    admin.close().await.ok();
}
