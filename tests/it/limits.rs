//! Protective limits: overload is shed with RESOURCE_EXHAUSTED, oversized
//! messages are refused, slow unary calls hit the server's deadline while
//! imports do not, and the service keeps serving throughout.

use std::time::Duration;

use customer_service::{
    api::limits::Limits,
    proto::v1::{self as pb, import_customers_request::Part},
};
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use crate::harness::{ImportCall, customer, error_info, open_import, spawn_with_limits};

#[tokio::test]
async fn calls_past_the_limit_are_shed_and_the_service_recovers() {
    let app = spawn_with_limits(Limits {
        max_concurrent_calls: 2,
        ..Limits::default()
    })
    .await;
    // Two imports that stay open hold both slots.
    let mut open = Vec::new();
    for _ in 0..2 {
        let (tx, call) = open_import(app.customers.clone(), 1);
        // A first message makes the client put the call on the wire.
        tx.send(pb::ImportCustomersRequest {
            part: Some(Part::Options(pb::ImportOptions::default())),
        })
        .await
        .unwrap();
        open.push((tx, call));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Whichever call comes third (usually a list; an import if the lists
    // overtook it on the wire) is shed.
    let mut shed = Vec::new();
    for _ in 0..50 {
        match app
            .customers
            .clone()
            .list_customers(pb::ListCustomersRequest::default())
            .await
        {
            Err(status) if status.code() == Code::ResourceExhausted => {
                shed.push(status);
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let health = app
        .health
        .clone()
        .check(HealthCheckRequest { service: String::new() })
        .await
        .expect("health is never shed")
        .into_inner();
    assert_eq!(health.status, ServingStatus::Serving as i32);
    for (tx, call) in open {
        drop(tx);
        match call.await.unwrap() {
            Ok(report) => assert_eq!(report.into_inner().received, 0),
            Err(status) if status.code() == Code::ResourceExhausted => shed.push(status),
            Err(status) => panic!("import failed: {status:?}"),
        }
    }
    assert!(!shed.is_empty(), "a third call is shed while two are in flight");
    for status in &shed {
        assert_eq!(error_info(status).0, "OVERLOADED");
    }
    app.customers
        .clone()
        .list_customers(pb::ListCustomersRequest::default())
        .await
        .expect("served again once the load is gone");
}

#[tokio::test]
async fn oversized_messages_are_resource_exhausted_and_the_service_keeps_serving() {
    let app = spawn_with_limits(Limits {
        max_message_bytes: 64 * 1024,
        ..Limits::default()
    })
    .await;
    let big = customer(&"x".repeat(100 * 1024), "big@example.com", "");
    let status = app
        .customers
        .clone()
        .create_customer(pb::CreateCustomerRequest {
            customer: Some(big),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

    let chunk = pb::ImportCustomersRequest {
        part: Some(Part::CsvChunk(vec![b'a'; 100 * 1024])),
    };
    let status = app
        .customers
        .clone()
        .import_customers(tokio_stream::iter(vec![chunk]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

    app.create("Small", "small@example.com", "").await;
}

fn all_or_nothing() -> pb::ImportOptions {
    pb::ImportOptions {
        all_or_nothing: true,
        ..Default::default()
    }
}

/// An import of one row whose stream stays open until the returned sender
/// is dropped.
async fn open_import_with(
    app: &crate::harness::TestApp,
    options: pb::ImportOptions,
    email: &str,
) -> (tokio::sync::mpsc::Sender<pb::ImportCustomersRequest>, ImportCall) {
    let (tx, call) = open_import(app.customers.clone(), 2);
    for part in [
        Part::Options(options),
        Part::CsvChunk(format!("email\n{email}\n").into_bytes()),
    ] {
        tx.send(pb::ImportCustomersRequest { part: Some(part) }).await.unwrap();
    }
    (tx, call)
}

#[tokio::test]
async fn unary_calls_have_a_deadline_that_imports_do_not() {
    let app = spawn_with_limits(Limits {
        unary_timeout: Duration::from_millis(300),
        ..Limits::default()
    })
    .await;
    // An all-or-nothing import keeps its transaction open for the whole
    // stream; it lasts
    // well past the unary deadline.
    let (tx, call) = open_import_with(&app, all_or_nothing(), "slow@example.com").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    if app.db.url.starts_with("sqlite") {
        // On SQLite the import holds the one write slot, so a create waits
        // until the server's unary deadline cuts it off.
        let status = app
            .customers
            .clone()
            .create_customer(pb::CreateCustomerRequest {
                customer: Some(customer("Waits", "waits@example.com", "")),
                request_id: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    } else {
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    drop(tx);
    let report = call.await.unwrap().expect("a long import is not cut off").into_inner();
    assert_eq!((report.created, report.nothing_stored), (1, false));
    // Unary calls answer normally again.
    app.create("Quick", "quick@example.com", "").await;
}

#[tokio::test]
async fn a_silent_import_is_stopped_and_releases_what_it_held() {
    let app = spawn_with_limits(Limits {
        stream_idle_timeout: Duration::from_millis(400),
        ..Limits::default()
    })
    .await;
    // An all-or-nothing import (on SQLite it holds the write slot), then
    // silence.
    let (tx, call) = open_import_with(&app, all_or_nothing(), "quiet@example.com").await;
    let status = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("stopped by the server")
        .unwrap()
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    drop(tx);
    // Writes go through again at once.
    tokio::time::timeout(Duration::from_secs(2), app.create("After", "after@example.com", ""))
        .await
        .expect("the write slot was released");
}
