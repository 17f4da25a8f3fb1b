//! ImportCustomers, ExportCustomers and GetImportTemplate over gRPC.

use std::time::Duration;

use customer_service::proto::v1::{self as pb, import_customers_request::Part, import_options::Mode};
use tonic::Code;

use crate::harness::{TestApp, bad_fields, error_info, list_all, open_import, spawn_app};

/// Options, then each piece as a `csv_chunk` message.
pub(crate) fn messages(options: Option<pb::ImportOptions>, pieces: &[&[u8]]) -> Vec<pb::ImportCustomersRequest> {
    options
        .map(Part::Options)
        .into_iter()
        .chain(pieces.iter().map(|p| Part::CsvChunk(p.to_vec())))
        .map(|part| pb::ImportCustomersRequest { part: Some(part) })
        .collect()
}

async fn import(
    app: &TestApp,
    requests: Vec<pb::ImportCustomersRequest>,
) -> Result<pb::ImportCustomersResponse, tonic::Status> {
    app.customers
        .clone()
        .import_customers(tokio_stream::iter(requests))
        .await
        .map(|r| r.into_inner())
}

pub(crate) async fn import_csv(
    app: &TestApp,
    options: Option<pb::ImportOptions>,
    file: &[u8],
) -> pb::ImportCustomersResponse {
    import(app, messages(options, &[file])).await.expect("import")
}

fn dry_run() -> Option<pb::ImportOptions> {
    Some(pb::ImportOptions {
        dry_run: true,
        ..Default::default()
    })
}

/// Active customers, in creation order.
async fn all(app: &TestApp) -> Vec<pb::Customer> {
    list_all(
        app,
        pb::ListCustomersRequest {
            page_size: 1000,
            ..Default::default()
        },
    )
    .await
}

/// (created, updated, unchanged, skipped, failed) of a report.
fn counts(r: &pb::ImportCustomersResponse) -> (i64, i64, i64, i64, i64) {
    (r.created, r.updated, r.unchanged, r.skipped, r.failed)
}

/// (row, column, reason) of each listed problem.
fn problems(r: &pb::ImportCustomersResponse) -> Vec<(i64, String, String)> {
    r.errors
        .iter()
        .map(|e| (e.row_number, e.column.clone(), e.reason.clone()))
        .collect()
}

/// A file with every CSV hazard real exports have.
const MESSY: &str = "\u{feff} Name ,EMAIL,mobile,Organisation,Role,department,Shoe Size\r\n\
\"Doe, Jane\",jane@example.com,07911 123456,Acme,\"Lead \"\"Ops\"\"\",IT,42\r\n\
\r\n\
\"Multi\nLine Name\",Émile@exämple.fr,,,,,\r\n\
Zoë 🚀,,+44 7911 123457,,,,'=1+2\r\n\
,,,,,,\r\n\
last,last@example.com,,,,,";

#[tokio::test]
async fn messy_real_world_csv_imports_exactly() {
    let app = spawn_app().await;
    let report = import_csv(&app, None, MESSY.as_bytes()).await;
    assert_eq!((report.received, counts(&report)), (4, (4, 0, 0, 0, 0)), "{report:?}");
    assert!(report.errors.is_empty() && !report.nothing_stored && !report.import_id.is_empty());

    let customers = all(&app).await;
    let jane = customers.iter().find(|c| c.name == "Doe, Jane").expect("jane");
    assert_eq!(jane.email, "jane@example.com");
    assert_eq!(jane.mobile, "+447911123456");
    assert_eq!(jane.attributes["organization"], "Acme");
    assert_eq!(jane.attributes["role"], "Lead \"Ops\"");
    assert_eq!(jane.attributes["department"], "IT");
    assert_eq!(jane.attributes["Shoe Size"], "42");
    assert_eq!(jane.source, pb::customer::Source::Import as i32);
    let multi = customers
        .iter()
        .find(|c| c.name == "Multi\nLine Name")
        .expect("quoted newline");
    assert_eq!(multi.email, "Émile@exämple.fr");
    let zoe = customers.iter().find(|c| c.name == "Zoë 🚀").expect("emoji name");
    assert_eq!(zoe.attributes["Shoe Size"], "=1+2", "formula protection undone");
    assert!(
        customers.iter().any(|c| c.email == "last@example.com"),
        "unterminated last line"
    );
}

#[tokio::test]
async fn chunks_split_anywhere_give_the_same_result() {
    let app = spawn_app().await;
    let file = MESSY.as_bytes();
    let whole = import_csv(&app, dry_run(), file).await;
    assert_eq!(whole.created, 4);
    for at in 1..file.len() {
        let split = import(&app, messages(dry_run(), &[&file[..at], &file[at..]]))
            .await
            .unwrap();
        assert_eq!(
            (split.received, counts(&split), problems(&split)),
            (whole.received, counts(&whole), problems(&whole)),
            "split at byte {at}"
        );
    }
    // And one byte per message, for real.
    let bytes: Vec<&[u8]> = file.chunks(1).collect();
    let report = import(&app, messages(None, &bytes)).await.unwrap();
    assert_eq!(counts(&report), counts(&whole));
    let names: Vec<String> = all(&app).await.into_iter().map(|c| c.name).collect();
    assert!(
        names.contains(&"Zoë 🚀".to_owned()) && names.contains(&"Multi\nLine Name".to_owned()),
        "{names:?}"
    );
}

#[tokio::test]
async fn every_row_problem_has_its_row_column_and_reason() {
    let app = spawn_app().await;
    app.create("Owner", "owner@example.com", "").await;
    app.create("Other", "", "+447911123459").await;
    let long_name = "x".repeat(300);
    let mut file = format!(
        "name,email,mobile,hub_access\n\
         \"Two\nLines\",ok1@example.com,,\n\
         Bad Email,not-an-email,,\n\
         Bad Mobile,,12,\n\
         Short,short@example.com\n\
         {long_name},long@example.com,,\n\
         Nobody,,,\n\
         Hub,hub@example.com,,maybe\n\
         Conflict,owner@example.com,+447911123459,\n\
         Fine,ok2@example.com,,no\n"
    )
    .into_bytes();
    file.extend_from_slice(b"Latin1 \xe9,latin@example.com,,\n");
    let report = import_csv(&app, None, &file).await;
    let expected: Vec<(i64, String, String)> = [
        (2, "email", "INVALID_EMAIL"),
        (3, "mobile", "INVALID_MOBILE"),
        (4, "", "WRONG_FIELD_COUNT"),
        (5, "name", "NAME_TOO_LONG"),
        (6, "", "MISSING_CONTACT"),
        (7, "hub_access", "INVALID_HUB_ACCESS"),
        (8, "mobile", "IDENTITY_CONFLICT"),
        (10, "name", "INVALID_UTF8"),
    ]
    .into_iter()
    .map(|(r, c, reason)| (r, c.to_owned(), reason.to_owned()))
    .collect();
    assert_eq!(problems(&report), expected);
    assert_eq!((report.received, counts(&report)), (10, (2, 0, 0, 0, 8)));
    let bad_email = &report.errors[0];
    assert_eq!(bad_email.value, "not-an-email");
    assert!(bad_email.message.contains("name@example.com"), "{}", bad_email.message);
    assert_eq!(report.errors[3].value.chars().count(), 100, "values are truncated");

    let emails: Vec<String> = all(&app).await.into_iter().map(|c| c.email).collect();
    assert!(emails.contains(&"ok1@example.com".into()) && emails.contains(&"ok2@example.com".into()));
    assert_eq!(emails.len(), 4, "good rows stored, bad ones not: {emails:?}");
}

#[tokio::test]
async fn files_that_cannot_be_imported_fail_fast_with_invalid_argument() {
    let app = spawn_app().await;
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01";
    for file in [
        png.as_slice(),
        b"name,role\nAda,Engineer\n",
        b"email,Email\na@x.com,b@x.com\n",
        b"email,,role\na@x.com,,x\n",
        b"",
    ] {
        let status = import(&app, messages(None, &[file])).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{file:?}: {status:?}");
        assert_eq!(bad_fields(&status), ["csv_chunk"], "{status:?}");
    }
    let late_options = vec![
        pb::ImportCustomersRequest {
            part: Some(Part::CsvChunk(b"email\n".to_vec())),
        },
        pb::ImportCustomersRequest {
            part: Some(Part::Options(Default::default())),
        },
    ];
    let status = import(&app, late_options).await.unwrap_err();
    assert_eq!(bad_fields(&status), ["options"]);
    let bad_region = Some(pb::ImportOptions {
        default_region: "XX".into(),
        ..Default::default()
    });
    let status = import(&app, messages(bad_region, &[b"email\n"])).await.unwrap_err();
    assert_eq!(bad_fields(&status), ["options.default_region"]);
    assert!(all(&app).await.is_empty());
}

#[tokio::test]
async fn an_unclosed_quote_is_resource_exhausted_and_earlier_batches_stay() {
    let app = spawn_app().await;
    let mut file = String::from("email\n");
    for i in 0..1500 {
        file.push_str(&format!("p{i}@example.com\n"));
    }
    file.push_str("\"never closed\n");
    let filler = "x".repeat(64 * 1024);
    let mut pieces: Vec<&[u8]> = vec![file.as_bytes()];
    for _ in 0..20 {
        pieces.push(filler.as_bytes());
    }
    let status = import(&app, messages(None, &pieces)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let (reason, metadata) = error_info(&status);
    assert_eq!(
        (reason.as_str(), metadata["row_number"].as_str()),
        ("ROW_TOO_LONG", "1501")
    );
    assert_eq!(all(&app).await.len(), 1500, "the rows before the broken one are stored");
}

#[tokio::test]
async fn dry_run_counts_like_a_real_run_and_stores_nothing() {
    let app = spawn_app().await;
    app.create("Existing", "jane@example.com", "").await;
    // A deleted customer's email makes a new customer: the dry run must
    // see the deleted one as deleted.
    let gone = app.create("Gone", "last@example.com", "").await;
    app.delete(&gone.id).await;
    // An unchanged row, so the dry run must see the stored values.
    import_csv(&app, None, b"name,email\nZo\xc3\xab,zoe@example.com\n").await;
    let before = all(&app).await;
    let file = format!("{MESSY}\nZo\u{eb},zoe@example.com,,,,,\n");
    let dry = import_csv(&app, dry_run(), file.as_bytes()).await;
    assert!(dry.nothing_stored);
    assert_eq!(all(&app).await, before);
    let real = import_csv(&app, None, file.as_bytes()).await;
    assert!(!real.nothing_stored);
    assert_eq!((counts(&dry), problems(&dry)), (counts(&real), problems(&real)));
    assert_eq!(counts(&real), (3, 1, 1, 0, 0));
}

/// A dry run writes into a private copy of the database on SQLite and into
/// temporary copies of the tables on PostgreSQL, so its long transaction
/// holds up no other writer; the copy is removed when it ends. (On MySQL
/// it holds the row locks of the customers it updated.)
#[tokio::test]
async fn a_dry_run_holds_up_no_other_writes() {
    use crate::intake::{resolve, ticket};
    let app = spawn_app().await;
    let kept = app.create("Kept", "kept@example.com", "").await;
    // A full batch (it is written while the stream stays open) that renames
    // `kept`, and the start of a second.
    let mut file = String::from("name,email\nKept Renamed,kept@example.com\n");
    for i in 1..1500 {
        file.push_str(&format!("Person {i},p{i}@example.com\n"));
    }
    let (tx, call) = open_import(app.customers.clone(), 4);
    for message in messages(dry_run(), &[file.as_bytes()]) {
        tx.send(message).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let quick = Duration::from_secs(3);
    let during = tokio::time::timeout(quick, app.create("During", "during@example.com", ""))
        .await
        .expect("a create during a dry run is not held up");
    let ticket_for = |id: &str, email: &str| ticket(id, "", email, "");
    let new = tokio::time::timeout(quick, resolve(&app, ticket_for("T-new", "new@example.com")))
        .await
        .expect("a ticket during a dry run is not held up");
    assert!(new.created);
    if !app.db.url.starts_with("mysql") {
        // Even the customer the dry run updated takes its ticket and an edit.
        let old = tokio::time::timeout(quick, resolve(&app, ticket_for("T-kept", "kept@example.com")))
            .await
            .expect("a ticket for a customer the dry run updated is not held up");
        assert_eq!(old.customer.unwrap().id, kept.id);
        let edit = pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                id: kept.id.clone(),
                mobile: "+447911123456".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["mobile".into()],
            }),
        };
        let edited = tokio::time::timeout(quick, app.customers.clone().update_customer(edit))
            .await
            .expect("an edit of a customer the dry run updated is not held up")
            .unwrap()
            .into_inner();
        assert_eq!(
            (edited.name.as_str(), edited.mobile.as_str()),
            ("Kept", "+447911123456")
        );
    }

    drop(tx);
    let report = call.await.unwrap().expect("dry run").into_inner();
    assert_eq!((counts(&report), report.nothing_stored), ((1499, 1, 0, 0, 0), true));
    let after = app.get(&kept.id).await;
    assert_eq!(after.name, "Kept", "the dry run's rename is not stored");
    if !app.db.url.starts_with("mysql") {
        assert_eq!(after.mobile, "+447911123456", "the edit made during the dry run is");
    }
    let ids: Vec<String> = all(&app).await.into_iter().map(|c| c.id).collect();
    assert!(ids.contains(&during.id) && ids.contains(&new.customer.unwrap().id));
    assert_eq!(ids.len(), 3, "nothing of the dry run was stored");
    if let Some(path) = app.db.url.strip_prefix("sqlite://") {
        let copies = std::path::PathBuf::from(format!("{path}.dry-runs"));
        let left: Vec<_> = std::fs::read_dir(&copies)
            .expect("the dry run made its copy there")
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "the copy is removed when the dry run ends: {left:?}");
    }
}

/// On SQLite writes take turns. A create or a ticket that queues behind an
/// import's batch waits for one turn of it (`TURN_ROWS` rows), not for the
/// whole batch. (Elsewhere they do not wait for an import at all.)
#[tokio::test]
async fn writes_queued_behind_an_import_wait_for_one_turn_not_the_whole_batch() {
    use crate::intake::ticket;
    use customer_service::domain::import::{BATCH_ROWS, TURN_ROWS};
    let app = spawn_app().await;
    if !app.db.is_sqlite() {
        eprintln!("SKIPPED: only SQLite's writes take turns (elsewhere a write does not wait for an import)");
        return;
    }
    // An all-or-nothing import holds the write slot while its stream is open.
    let (holder, held) = open_import(app.customers.clone(), 2);
    let all_or_nothing = pb::ImportOptions {
        all_or_nothing: true,
        ..Default::default()
    };
    for message in messages(Some(all_or_nothing), &[b"email\nholder@example.com\n"]) {
        holder.send(message).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A real import's whole batch queues for the slot. Then a create and a
    // ticket queue behind it, for the people of the batch's rows just after
    // its first turn.
    let email = |row: usize| format!("turn.{row:04}@example.com");
    let mut file = String::from("email\n");
    for row in 0..BATCH_ROWS {
        file.push_str(&format!("{}\n", email(row)));
    }
    let requests = messages(None, &[file.as_bytes()]);
    let mut client = app.customers.clone();
    let batch = tokio::spawn(async move { client.import_customers(tokio_stream::iter(requests)).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut client = app.customers.clone();
    let customer = Some(crate::harness::customer("Queued", &email(TURN_ROWS), ""));
    let create = tokio::spawn(async move {
        let request = pb::CreateCustomerRequest {
            customer,
            request_id: String::new(),
        };
        client.create_customer(request).await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut intake = app.intake.clone();
    let request = ticket("T-queued", "", &email(TURN_ROWS + 1), "");
    let ticket = tokio::spawn(async move { intake.resolve_ticket_customer(request).await });
    tokio::time::sleep(Duration::from_millis(200)).await;

    drop(holder);
    let held = held.await.unwrap().expect("the holding import").into_inner();
    assert_eq!(held.created, 1);
    // Had they waited for the whole batch, the create would have found its
    // email taken and the ticket its customer there.
    let created = create
        .await
        .unwrap()
        .expect("the create went in after the import's first turn");
    let resolved = ticket.await.unwrap().expect("the ticket").into_inner();
    assert!(resolved.created, "so did the ticket");
    let report = batch.await.unwrap().expect("the import").into_inner();
    assert_eq!(
        (report.created, report.unchanged, report.failed),
        (BATCH_ROWS as i64 - 2, 2, 0),
        "the import found those two stored"
    );
    assert_eq!(app.get(&created.into_inner().id).await.name, "Queued");
    assert_eq!(all(&app).await.len(), BATCH_ROWS + 1);
}

/// A copy that a crashed process left behind is removed when the server
/// opens the database again.
#[tokio::test]
async fn a_dry_run_copy_left_by_a_crash_is_removed_at_start() {
    let db = crate::harness::TestDb::new().await;
    let Some(path) = db.url.strip_prefix("sqlite://") else {
        eprintln!("SKIPPED: dry-run copies are made on SQLite only");
        return;
    };
    let copies = std::path::PathBuf::from(format!("{path}.dry-runs"));
    std::fs::create_dir_all(&copies).unwrap();
    std::fs::write(copies.join("0190-left.db"), b"left by a crash").unwrap();
    let app = crate::harness::spawn_on(db, crate::harness::test_settings()).await;
    assert!(!copies.exists(), "the old copy is gone");
    app.create("After", "after@example.com", "").await;
}

#[tokio::test]
async fn all_or_nothing_stores_nothing_when_a_row_fails() {
    let app = spawn_app().await;
    let options = Some(pb::ImportOptions {
        all_or_nothing: true,
        ..Default::default()
    });
    let mut file = String::from("email\n");
    for i in 0..2500 {
        file.push_str(&format!("p{i}@example.com\n"));
    }
    let failing = format!("{file}broken\n");
    let report = import_csv(&app, options.clone(), failing.as_bytes()).await;
    assert_eq!((report.created, report.failed, report.nothing_stored), (2500, 1, true));
    assert!(all(&app).await.is_empty());

    let report = import_csv(&app, options, file.as_bytes()).await;
    assert_eq!((report.created, report.nothing_stored), (2500, false));
    assert_eq!(all(&app).await.len(), 2500);
}

#[tokio::test]
async fn create_only_skips_and_reports_matches() {
    let app = spawn_app().await;
    let existing = app.create("Kept", "jane@example.com", "").await;
    let options = Some(pb::ImportOptions {
        mode: Mode::CreateOnly as i32,
        ..Default::default()
    });
    let file = "name,email,mobile\nChanged,JANE@example.com,\nNew,new@example.com,07911 123460\nAgain,,+447911123460\n";
    let report = import_csv(&app, options, file.as_bytes()).await;
    assert_eq!(counts(&report), (1, 0, 0, 2, 0));
    assert_eq!(
        problems(&report),
        [
            (1, String::new(), "SKIPPED_EXISTING".to_owned()),
            (3, String::new(), "SKIPPED_EXISTING".to_owned())
        ]
    );
    assert!(report.errors[0].message.contains(&existing.id));
    let kept = app.get(&existing.id).await;
    assert_eq!(kept.name, "Kept");
}

#[tokio::test]
async fn same_person_twice_is_one_customer_and_a_rerun_creates_nothing() {
    let app = spawn_app().await;
    let stored = app.create("Agent Typed", "kim@example.com", "").await;
    let file = "name,email,mobile,role\n\
                Kim,KIM@Example.com,07911 123461,\n\
                Lee,lee@example.com,,Buyer\n\
                ,,+44 7911 123461,Manager\n\
                Lee Smith,,,\n\
                Lee S,LEE@example.com,,\n";
    let report = import_csv(&app, None, file.as_bytes()).await;
    assert_eq!(counts(&report), (1, 3, 0, 0, 1), "{report:?}");
    assert_eq!(problems(&report), [(4, String::new(), "MISSING_CONTACT".to_owned())]);
    let customers = all(&app).await;
    assert_eq!(customers.len(), 2);
    let kim = customers.iter().find(|c| c.id == stored.id).unwrap();
    assert_eq!(
        (
            kim.name.as_str(),
            kim.email.as_str(),
            kim.mobile.as_str(),
            kim.attributes["role"].as_str()
        ),
        ("Kim", "KIM@Example.com", "+447911123461", "Manager"),
        "matched by email, then by mobile; empty cells keep stored values"
    );
    let lee = customers
        .iter()
        .find(|c| c.email.eq_ignore_ascii_case("lee@example.com"))
        .unwrap();
    assert_eq!(
        (lee.name.as_str(), lee.attributes["role"].as_str()),
        ("Lee S", "Buyer"),
        "later rows win"
    );

    let again = import_csv(&app, None, file.as_bytes()).await;
    assert_eq!(again.created, 0);
    assert_eq!(all(&app).await.len(), 2);
}

#[tokio::test]
async fn structured_rows_and_csv_chunks_mix() {
    let app = spawn_app().await;
    let row = |email: &str, hub: Option<bool>| pb::ImportCustomersRequest {
        part: Some(Part::Row(pb::ImportRow {
            name: "Row".into(),
            email: email.into(),
            attributes: [("organization".to_owned(), "Rowco".to_owned())].into(),
            hub_access_enabled: hub,
            ..Default::default()
        })),
    };
    let mut requests = vec![row("r1@example.com", Some(false))];
    requests.extend(messages(None, &[b"email,hub_access\nc1@example.com,no\n"]));
    requests.push(row("bad", None));
    let report = import(&app, requests).await.unwrap();
    assert_eq!(counts(&report), (2, 0, 0, 0, 1));
    assert_eq!(problems(&report), [(3, "email".to_owned(), "INVALID_EMAIL".to_owned())]);
    let customers = all(&app).await;
    assert!(
        customers.iter().all(|c| c.hub_access_enabled == Some(false)),
        "{customers:?}"
    );

    let orgs = app
        .orgs
        .clone()
        .list_organizations(pb::ListOrganizationsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .organizations;
    assert_eq!(orgs.len(), 1);
    assert_eq!(orgs[0].name, "Rowco");
    let members = app
        .orgs
        .clone()
        .list_members(pb::ListMembersRequest {
            organization_id: orgs[0].id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .memberships;
    assert_eq!(members.len(), 1, "linked by the organization attribute");
    assert!(members[0].can_view_tickets && !members[0].can_create_tickets);
}

#[tokio::test]
async fn a_cancelled_import_leaves_whole_batches_and_a_rerun_completes() {
    let app = spawn_app().await;
    let rows = 3500;
    let mut file = String::from("name,email\n");
    for i in 0..rows {
        file.push_str(&format!("Person {i},p{i}@example.com\n"));
    }
    // The import goes through a TCP proxy the test cuts, as a network would.
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = proxy.local_addr().unwrap();
    let server = app.addr;
    let cable = tokio::spawn(async move {
        let (mut inbound, _) = proxy.accept().await.unwrap();
        let mut outbound = tokio::net::TcpStream::connect(server).await.unwrap();
        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
    });
    let channel = tonic::transport::Channel::from_shared(format!("http://{proxy_addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let client = customer_service::proto::v1::customer_service_client::CustomerServiceClient::new(channel);
    let (tx, call) = open_import(client, 16);
    // Send the first 2,600 rows, then lose the connection mid-row.
    let cut = file.match_indices('\n').nth(2600).unwrap().0 - 3;
    for piece in file.as_bytes()[..cut].chunks(4096) {
        tx.send(pb::ImportCustomersRequest {
            part: Some(Part::CsvChunk(piece.to_vec())),
        })
        .await
        .unwrap();
    }
    let mut stored = 0;
    for _ in 0..200 {
        stored = all(&app).await.len();
        if stored >= 2000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cable.abort();
    let answer = call.await.unwrap();
    assert!(answer.is_err(), "the client sees the connection fail");
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(tx);
    let after = all(&app).await;
    assert_eq!((stored, after.len()), (2000, 2000), "whole batches only");
    assert!(
        after
            .iter()
            .all(|c| c.name.starts_with("Person ") && c.email.ends_with("@example.com"))
    );

    let report = import_csv(&app, None, file.as_bytes()).await;
    assert_eq!((report.created, report.unchanged), (1500, 2000));
    assert_eq!(all(&app).await.len(), rows);
}

#[tokio::test]
async fn other_calls_proceed_while_an_import_stream_is_open() {
    let app = spawn_app().await;
    let (tx, call) = open_import(app.customers.clone(), 4);
    let mut file = String::from("email\n");
    for i in 0..1500 {
        file.push_str(&format!("q{i}@example.com\n"));
    }
    tx.send(pb::ImportCustomersRequest {
        part: Some(Part::CsvChunk(file.into_bytes())),
    })
    .await
    .unwrap();
    // The import is mid-stream: reads and writes elsewhere still answer.
    let created = tokio::time::timeout(
        Duration::from_secs(5),
        app.create("Meanwhile", "meanwhile@example.com", ""),
    )
    .await
    .expect("a create during an import");
    assert_eq!(created.name, "Meanwhile");
    drop(tx);
    let report = call.await.unwrap().unwrap().into_inner();
    assert_eq!(report.created, 1500);
}

/// The whole export as one string.
async fn export(app: &TestApp, request: pb::ExportCustomersRequest) -> String {
    let mut stream = app
        .customers
        .clone()
        .export_customers(request)
        .await
        .unwrap()
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        bytes.extend(chunk.csv_chunk);
    }
    String::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn export_imports_back_unchanged_with_formulas_neutralised() {
    let app = spawn_app().await;
    let file = "name,email,mobile,organization,role,Tier,Note\n\
                =HYPERLINK(\"x\"),a@example.com,07911 123470,Acme,-lead,@gold,\"comma, and \"\"quote\"\"\"\n\
                Plain,,+447911123471,,,,\"two\nlines\"\n";
    import_csv(&app, None, file.as_bytes()).await;
    for i in 0..1200 {
        app.create(&format!("Bulk {i}"), &format!("bulk{i}@example.com"), "")
            .await;
    }
    let csv = export(&app, Default::default()).await;
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("name,email,mobile,organization,role,department,hub_access,Note,Tier")
    );
    assert!(
        csv.contains("\"'=HYPERLINK(\"\"x\"\")\",a@example.com,'+447911123470,Acme,'-lead,,true,"),
        "{csv:.400}"
    );
    assert!(csv.contains(",'@gold"));

    let back = import_csv(&app, None, csv.as_bytes()).await;
    assert_eq!(
        (back.received, counts(&back)),
        (1202, (0, 0, 1202, 0, 0)),
        "{:?}",
        back.errors
    );

    let filtered = export(
        &app,
        pb::ExportCustomersRequest {
            filter: "email = \"a@example.com\"".into(),
            show_deleted: false,
        },
    )
    .await;
    assert_eq!(filtered.lines().count(), 2, "{filtered}");
}

#[tokio::test]
async fn the_template_is_the_shipped_file_and_imports() {
    let app = spawn_app().await;
    let template = app
        .customers
        .clone()
        .get_import_template(pb::GetImportTemplateRequest {})
        .await
        .unwrap()
        .into_inner();
    let shipped = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/import_customers_template.csv")).unwrap();
    assert_eq!(template.csv, shipped);
    assert_eq!(
        (template.filename.as_str(), template.content_type.as_str()),
        ("import_customers_template.csv", "text/csv")
    );
    assert!(
        template
            .csv
            .starts_with(b"name,email,mobile,organization,role,department\n")
    );
    let report = import_csv(&app, None, &template.csv).await;
    assert_eq!(counts(&report), (1, 0, 0, 0, 0));
}

#[tokio::test]
async fn replicas_on_one_database_see_each_others_imports_and_page_tokens() {
    let first = spawn_app().await;
    let second = crate::harness::spawn_on(first.db.share(), crate::harness::test_settings()).await;
    let mut file = String::from("name,email\n");
    for i in 0..250 {
        file.push_str(&format!("Replica {i},replica{i}@example.com\n"));
    }
    let report = import_csv(&first, None, file.as_bytes()).await;
    assert_eq!(report.created, 250);

    // Page through on alternating replicas: tokens from one work on the other.
    let mut seen = Vec::new();
    let mut token = String::new();
    for turn in 0.. {
        let app = if turn % 2 == 0 { &second } else { &first };
        let page = app
            .customers
            .clone()
            .list_customers(pb::ListCustomersRequest {
                page_size: 100,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.customers.into_iter().map(|c| c.email));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 250);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 250, "no customer twice, none missing");

    // The same file again, on the other replica, creates nothing.
    let again = import_csv(&second, None, file.as_bytes()).await;
    assert_eq!((again.created, again.unchanged), (0, 250));
}
