//! MergeCustomers: what moves to the customer that stays, what the merged
//! one keeps, how tickets follow a merge, and what is refused.

use std::collections::HashMap;

use customer_service::proto::v1::{
    self as pb, check_hub_login_request::Identifier, customer::State, history_entry::Action,
    resolve_ticket_customer_response::MatchedBy,
};
use tonic::Code;

use crate::harness::{TestApp, bad_fields, customer, error_info, spawn_app};

fn merge_request(id: &str, source_id: &str) -> pb::MergeCustomersRequest {
    pb::MergeCustomersRequest {
        id: id.into(),
        source_id: source_id.into(),
        ..Default::default()
    }
}

async fn merge(app: &TestApp, id: &str, source_id: &str) -> pb::MergeCustomersResponse {
    app.customers
        .clone()
        .merge_customers(merge_request(id, source_id))
        .await
        .unwrap_or_else(|s| panic!("merge {source_id} into {id}: {s:?}"))
        .into_inner()
}

async fn create_with(
    app: &TestApp,
    name: &str,
    email: &str,
    mobile: &str,
    attributes: &[(&str, &str)],
) -> pb::Customer {
    let mut c = customer(name, email, mobile);
    c.attributes = attributes.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    app.customers
        .clone()
        .create_customer(pb::CreateCustomerRequest {
            customer: Some(c),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn ticket(app: &TestApp, id: &str, email: &str, mobile: &str) -> pb::ResolveTicketCustomerResponse {
    app.intake
        .clone()
        .resolve_ticket_customer(pb::ResolveTicketCustomerRequest {
            ticket_id: id.into(),
            email: email.into(),
            mobile: mobile.into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|s| panic!("ticket {id}: {s:?}"))
        .into_inner()
}

async fn history(app: &TestApp, id: &str) -> Vec<pb::HistoryEntry> {
    app.customers
        .clone()
        .list_customer_history(pb::ListCustomerHistoryRequest {
            customer_id: id.into(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries
}

fn changes(entry: &pb::HistoryEntry) -> HashMap<&str, (&str, &str)> {
    entry
        .changes
        .iter()
        .map(|c| (c.field.as_str(), (c.old_value.as_str(), c.new_value.as_str())))
        .collect()
}

async fn organization(app: &TestApp, name: &str) -> String {
    app.orgs
        .clone()
        .create_organization(pb::CreateOrganizationRequest {
            organization: Some(pb::Organization {
                name: name.into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .id
}

async fn add_member(app: &TestApp, org: &str, customer: &str, view: bool, create: bool) {
    app.orgs
        .clone()
        .add_member(pb::AddMemberRequest {
            organization_id: org.into(),
            customer_id: customer.into(),
            can_view_tickets: view,
            can_create_tickets: create,
        })
        .await
        .unwrap();
}

/// (organisation id, view, create) of each membership, sorted.
async fn memberships(app: &TestApp, customer: &str) -> Vec<(String, bool, bool)> {
    let mut found: Vec<_> = app
        .orgs
        .clone()
        .list_customer_organizations(pb::ListCustomerOrganizationsRequest {
            customer_id: customer.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .memberships
        .into_iter()
        .map(|m| (m.organization_id, m.can_view_tickets, m.can_create_tickets))
        .collect();
    found.sort();
    found
}

fn secs(t: &Option<prost_types::Timestamp>) -> (i64, i32) {
    let t = t.as_ref().expect("timestamp");
    (t.seconds, t.nanos)
}

#[tokio::test]
async fn the_customer_that_stays_gains_the_duplicates_details_tickets_and_memberships() {
    let app = spawn_app().await;
    let dup = create_with(
        &app,
        "Ada",
        "ada@example.com",
        "",
        &[("role", "Buyer"), ("department", "Sales")],
    )
    .await;
    let stays = create_with(&app, "Ada Lovelace", "", "+447911123456", &[("role", "Manager")]).await;
    ticket(&app, "T-1", "ada@example.com", "").await;
    ticket(&app, "T-2", "ada@example.com", "").await;
    ticket(&app, "T-3", "", "+447911123456").await;
    let dup = app.get(&dup.id).await;
    let stays = app.get(&stays.id).await;
    assert_eq!((dup.ticket_count, stays.ticket_count), (2, 1));
    let shared = organization(&app, "Acme").await;
    let only_dup = organization(&app, "Globex").await;
    add_member(&app, &shared, &dup.id, true, true).await;
    add_member(&app, &shared, &stays.id, true, false).await;
    add_member(&app, &only_dup, &dup.id, true, false).await;

    let answer = merge(&app, &stays.id, &dup.id).await;
    let kept = answer.customer.unwrap();
    let merged = answer.merged_customer.unwrap();
    assert_eq!(kept.id, stays.id);
    assert_eq!(kept.state(), State::Active);
    assert_eq!(kept.name, "Ada Lovelace", "its own name stays");
    assert_eq!(kept.email, "ada@example.com", "it lacked an email");
    assert_eq!(kept.mobile, "+447911123456");
    assert_eq!(kept.attributes["role"], "Manager", "its own attribute stays");
    assert_eq!(kept.attributes["department"], "Sales", "an attribute it lacked");
    assert_eq!(kept.ticket_count, 3);
    assert_eq!(secs(&kept.first_ticket_time), secs(&dup.first_ticket_time));
    assert_eq!(secs(&kept.last_ticket_time), secs(&stays.last_ticket_time));
    assert_ne!(kept.etag, stays.etag, "its fields changed");
    assert_eq!(kept, app.get(&stays.id).await);

    assert_eq!(merged.id, dup.id);
    assert_eq!(merged.state(), State::Deleted);
    assert_eq!(merged.merged_into_id, stays.id);
    assert_eq!(merged.ticket_count, 0, "its tickets count on the one that stays");
    assert!(merged.delete_time.is_some());
    assert_eq!(merged, app.get(&dup.id).await);
    let listed = crate::harness::list_all(
        &app,
        pb::ListCustomersRequest {
            filter: format!("merged_into_id = \"{}\"", stays.id),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        listed,
        std::slice::from_ref(&merged),
        "merged customers are listed without show_deleted"
    );

    assert_eq!(
        memberships(&app, &stays.id).await,
        {
            let mut want = vec![(shared.clone(), true, true), (only_dup.clone(), true, false)];
            want.sort();
            want
        },
        "rights are joined"
    );
    assert!(memberships(&app, &dup.id).await.is_empty());

    let theirs = history(&app, &dup.id).await;
    let merge_entry = theirs
        .iter()
        .find(|e| e.action() == Action::Merge)
        .expect("MERGE on the duplicate");
    assert_eq!(changes(merge_entry)["merged_into_id"], ("", stays.id.as_str()));
    assert_eq!(changes(merge_entry)["state"], ("ACTIVE", "DELETED"));
    assert_eq!(
        theirs.iter().filter(|e| e.action() == Action::RemoveMembership).count(),
        2
    );
    let ours = history(&app, &stays.id).await;
    let at = ours
        .iter()
        .position(|e| e.action() == Action::Merge)
        .expect("MERGE on the one that stays");
    let c = changes(&ours[at]);
    assert_eq!(c["merged_customer_id"], ("", dup.id.as_str()));
    assert_eq!(c["email"], ("", "ada@example.com"));
    assert_eq!(c["attributes.department"], ("", "Sales"));
    assert!(!c.contains_key("name"), "{c:?}");
    let added: Vec<_> = ours[at..]
        .iter()
        .filter(|e| matches!(e.action(), Action::AddMembership | Action::UpdateMembership))
        .map(|e| (e.organization_id.clone(), e.action()))
        .collect();
    assert!(added.contains(&(only_dup.clone(), Action::AddMembership)), "{added:?}");
    assert!(added.contains(&(shared.clone(), Action::UpdateMembership)), "{added:?}");

    // A merged customer stays merged.
    let status = app
        .customers
        .clone()
        .undelete_customer(pb::UndeleteCustomerRequest {
            id: dup.id.clone(),
            etag: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    let (reason, meta) = error_info(&status);
    assert_eq!(
        (reason.as_str(), meta["merged_into_id"].as_str()),
        ("CUSTOMER_MERGED", stays.id.as_str())
    );
    let other = app.create("Someone", "someone@example.com", "").await;
    let status = app
        .customers
        .clone()
        .merge_customers(merge_request(&other.id, &dup.id))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(error_info(&status).0, "CUSTOMER_MERGED");
}

#[tokio::test]
async fn tickets_follow_a_merge() {
    let app = spawn_app().await;
    let dup = app.create("Grace", "grace@old.example", "").await;
    let stays = app.create("Grace Hopper", "grace@navy.example", "").await;
    let first = ticket(&app, "T-1", "grace@old.example", "").await;
    assert_eq!(first.customer.unwrap().id, dup.id);
    merge(&app, &stays.id, &dup.id).await;

    // The stored answer now names the customer it was merged into.
    let replay = ticket(&app, "T-1", "grace@old.example", "").await;
    assert_eq!(replay.customer.as_ref().unwrap().id, stays.id);
    assert_eq!((replay.created, replay.matched_by()), (false, MatchedBy::Email));
    assert_eq!(replay.customer.unwrap().ticket_count, 1, "a replay counts nothing");

    // The duplicate's email still finds the person; nothing is created or restored.
    let next = ticket(&app, "T-2", "grace@old.example", "").await;
    let c = next.customer.clone().unwrap();
    assert_eq!(c.id, stays.id);
    assert_eq!(c.email, "grace@navy.example");
    assert_eq!(
        (next.created, next.restored, next.matched_by()),
        (false, false, MatchedBy::Email)
    );
    assert_eq!(c.ticket_count, 2);
    assert_eq!(app.get(&dup.id).await.state(), State::Deleted);

    // Merges chain: the duplicate's email and its tickets follow both.
    let last = app.create("G. Hopper", "", "+14155550100").await;
    merge(&app, &last.id, &stays.id).await;
    let chained = ticket(&app, "T-3", "grace@old.example", "").await;
    assert_eq!(chained.customer.as_ref().unwrap().id, last.id);
    assert_eq!(
        ticket(&app, "T-1", "grace@old.example", "").await.customer.unwrap().id,
        last.id
    );
    let last = app.get(&last.id).await;
    assert_eq!(last.ticket_count, 3);
    assert_eq!(last.email, "grace@navy.example", "it gained the email it lacked");
    // The email it gained is a live match now; the first one still follows.
    assert_eq!(
        ticket(&app, "T-4", "grace@navy.example", "").await.customer.unwrap().id,
        last.id
    );
}

#[tokio::test]
async fn merge_refuses_bad_requests_and_changes_nothing() {
    let app = spawn_app().await;
    let a = app.create("A", "a@example.com", "").await;
    let b = app.create("B", "b@example.com", "+447911123457").await;
    let mut client = app.customers.clone();

    let status = client.merge_customers(merge_request("", "")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(bad_fields(&status), ["id", "source_id"]);
    let status = client.merge_customers(merge_request(&a.id, &a.id)).await.unwrap_err();
    assert_eq!(bad_fields(&status), ["source_id"]);

    for (id, source) in [(a.id.as_str(), "no-such-id"), ("no-such-id", a.id.as_str())] {
        let status = client.merge_customers(merge_request(id, source)).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(error_info(&status).1["id"], "no-such-id");
    }

    let stale = pb::MergeCustomersRequest {
        etag: "\"stale\"".into(),
        ..merge_request(&a.id, &b.id)
    };
    let status = client.merge_customers(stale).await.unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    assert_eq!(error_info(&status).1["id"], a.id);
    let stale = pb::MergeCustomersRequest {
        source_etag: "\"stale\"".into(),
        ..merge_request(&a.id, &b.id)
    };
    let status = client.merge_customers(stale).await.unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    assert_eq!(error_info(&status).1["id"], b.id);

    let gone = app.create("Gone", "gone@example.com", "").await;
    app.delete(&gone.id).await;
    let status = client
        .merge_customers(merge_request(&gone.id, &a.id))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(error_info(&status).0, "CUSTOMER_DELETED");

    assert_eq!(app.get(&a.id).await, a);
    assert_eq!(app.get(&b.id).await, b);
    assert!(history(&app, &a.id).await.iter().all(|e| e.action() != Action::Merge));

    // A deleted duplicate merges too; a mobile someone else took meanwhile
    // stays theirs.
    app.delete(&b.id).await;
    let taker = app.create("Taker", "", "+447911123457").await;
    let current = pb::MergeCustomersRequest {
        etag: a.etag.clone(),
        source_etag: app.get(&b.id).await.etag,
        ..merge_request(&a.id, &b.id)
    };
    let answer = client.merge_customers(current).await.unwrap().into_inner();
    let kept = answer.customer.unwrap();
    assert_eq!(kept.mobile, "", "{kept:?}");
    assert_eq!(answer.merged_customer.unwrap().merged_into_id, a.id);
    assert_eq!(app.get(&taker.id).await.mobile, "+447911123457");
}

/// Tickets for the duplicate racing its merge: every ticket is counted
/// exactly once, on one of the two, and every replay then answers with
/// the customer that stays.
#[tokio::test]
async fn tickets_racing_a_merge_are_each_counted_once() {
    let app = spawn_app().await;
    let dup = app.create("Linus", "linus@example.com", "").await;
    let stays = app.create("Linus T.", "lt@example.com", "").await;
    let tickets: Vec<String> = (0..60).map(|i| format!("R-{i}")).collect();
    // Spread over ~120 ms, with the merge in the middle.
    let calls = tickets.iter().enumerate().map(|(i, id)| {
        let app = &app;
        async move {
            tokio::time::sleep(std::time::Duration::from_millis(2 * i as u64)).await;
            ticket(app, id, "linus@example.com", "").await
        }
    });
    let merging = async {
        tokio::time::sleep(std::time::Duration::from_millis(60)).await;
        merge(&app, &stays.id, &dup.id).await
    };
    let (answers, _) = tokio::join!(futures_util::future::join_all(calls), merging);
    assert!(answers.iter().all(|a| !a.created));
    let (on_dup, on_stays) = (
        app.get(&dup.id).await.ticket_count,
        app.get(&stays.id).await.ticket_count,
    );
    let total = on_dup + on_stays;
    assert_eq!(total, tickets.len() as i64);
    for id in &tickets {
        assert_eq!(
            ticket(&app, id, "linus@example.com", "").await.customer.unwrap().id,
            stays.id,
            "{id}"
        );
    }
}

/// A Hub session or login from before the merge: the duplicate's id and
/// identities stand for the customer that stays, whose flag decides.
#[tokio::test]
async fn hub_logins_of_a_merged_customer_are_decided_by_the_one_that_stays() {
    let app = spawn_app().await;
    let dup = app.create("Alan", "alan@old.example", "+447911123458").await;
    // It has an email and a mobile of its own, so the duplicate's stay
    // the duplicate's.
    let stays = app.create("Alan Turing", "alan@new.example", "+447911123459").await;
    let login = |who: Identifier| {
        let mut hub = app.hub.clone();
        async move {
            hub.check_hub_login(pb::CheckHubLoginRequest { identifier: Some(who) })
                .await
                .unwrap()
                .into_inner()
        }
    };
    merge(&app, &stays.id, &dup.id).await;
    let whos = [
        Identifier::CustomerId(dup.id.clone()),
        Identifier::Email("Alan@Old.Example".into()),
        Identifier::Mobile("07911 123458".into()),
    ];
    for who in whos.clone() {
        let answer = login(who.clone()).await;
        assert!(answer.allowed, "{who:?}");
        assert_eq!(answer.customer_id, stays.id, "{who:?}");
    }
    let mut disabled = customer("", "", "");
    disabled.id = stays.id.clone();
    disabled.hub_access_enabled = Some(false);
    app.customers
        .clone()
        .update_customer(pb::UpdateCustomerRequest {
            customer: Some(disabled),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["hub_access_enabled".into()],
            }),
        })
        .await
        .unwrap();
    for who in whos {
        let answer = login(who.clone()).await;
        assert!(!answer.allowed, "{who:?}");
        assert_eq!(answer.customer_id, "", "{who:?}");
    }
}
