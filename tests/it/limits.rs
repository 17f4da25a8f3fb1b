//! Protective limits: overload is shed with RESOURCE_EXHAUSTED, oversized
//! messages are refused, slow unary calls hit the server's deadline while
//! imports do not, imports the server is not reading hold up no other
//! call on their connection, and the service keeps serving throughout.

use std::time::Duration;

use customer_service::{
    api::limits::Limits,
    domain::import::BATCH_ROWS,
    proto::v1::{self as pb, import_customers_request::Part},
};
use tokio::task::JoinHandle;
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use crate::harness::{ImportCall, customer, error_info, list_all, open_import, spawn_app, spawn_with_limits};

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

#[tokio::test]
async fn imports_the_server_is_not_reading_hold_up_no_other_call_on_their_connection() {
    let app = spawn_app().await;
    // An all-or-nothing import writes a full batch (a part batch waits for
    // the stream's end) and stays open: its transaction holds those
    // identities (and on SQLite the write slot).
    let (held, first) = open_import(app.customers.clone(), 2);
    let mut csv = String::from("email\n");
    for i in 0..BATCH_ROWS {
        csv.push_str(&format!("held.{i}@example.com\n"));
    }
    for part in [Part::Options(all_or_nothing()), Part::CsvChunk(csv.into_bytes())] {
        held.send(pb::ImportCustomersRequest { part: Some(part) })
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Two more imports on the same connection whose first batches need one
    // of those identities: their writers wait, so the server stops reading
    // them. Together they could fill the whole connection's window.
    let waiting = [stalled_import(&app, 0), stalled_import(&app, 1)];
    tokio::time::sleep(Duration::from_millis(500)).await;
    let still_sending =
        |waiting: &[(JoinHandle<()>, ImportCall); 2]| waiting.iter().all(|(feeder, _)| !feeder.is_finished());
    assert!(still_sending(&waiting), "the waiting imports are not read");
    let listed = tokio::time::timeout(
        Duration::from_secs(3),
        app.customers
            .clone()
            .list_customers(pb::ListCustomersRequest::default()),
    )
    .await
    .expect("a call on the same connection is answered while the imports wait")
    .expect("listed");
    assert!(listed.into_inner().customers.is_empty(), "nothing committed yet");
    assert!(still_sending(&waiting), "the imports were still waiting");
    // Their caller gives up on them; the first import then commits.
    for (feeder, call) in waiting {
        call.abort();
        feeder.abort();
    }
    drop(held);
    let report = first.await.unwrap().expect("the first import").into_inner();
    assert_eq!((report.created, report.nothing_stored), (BATCH_ROWS as i64, false));
    let stored = list_all(&app, pb::ListCustomersRequest::default()).await;
    assert_eq!(stored.len(), BATCH_ROWS, "only the first import's rows are stored");
}

/// An import whose first row is `held.{n}@example.com`, followed by 2 MiB of
/// new rows (more than a stream's window and all the import's buffers), fed
/// by a task that stops when flow control holds it.
fn stalled_import(app: &crate::harness::TestApp, n: usize) -> (JoinHandle<()>, ImportCall) {
    let (tx, call) = open_import(app.customers.clone(), 1);
    let feeder = tokio::spawn(async move {
        let mut rows = format!("email\nheld.{n}@example.com\n");
        for i in 0..100_000 {
            rows.push_str(&format!("w{n}.{i:06}@example.com\n"));
        }
        let options = std::iter::once(Part::Options(pb::ImportOptions::default()));
        let chunks = rows.as_bytes().chunks(16 * 1024).map(|c| Part::CsvChunk(c.to_vec()));
        for part in options.chain(chunks) {
            if tx.send(pb::ImportCustomersRequest { part: Some(part) }).await.is_err() {
                return;
            }
        }
    });
    (feeder, call)
}
