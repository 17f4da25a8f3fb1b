//! CustomerService standard methods, their rules and their error codes.

use std::collections::HashSet;

use customer_service::proto::v1::{self as pb, customer::State};
use prost_types::FieldMask;
use tonic::Code;

use crate::harness::{bad_fields, customer, error_info, list_all, spawn_app};

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

#[tokio::test]
async fn create_then_get_returns_normalised_customer() {
    let app = spawn_app().await;
    let mut input = customer("Lovelace, Ada", "  Ada@Example.COM ", "07911 123456");
    input.attributes = [
        ("organization".into(), " Analytical Engines ".into()),
        ("role".into(), "Admin".into()),
    ]
    .into();
    let created = app
        .customers
        .clone()
        .create_customer(pb::CreateCustomerRequest {
            customer: Some(input),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();

    assert!(!created.id.is_empty());
    assert_eq!(created.name, "Lovelace, Ada");
    assert_eq!(created.email, "Ada@Example.COM");
    assert_eq!(created.mobile, "+447911123456");
    assert_eq!(created.initials, "AL");
    assert_eq!(
        created.attributes.get("organization").map(String::as_str),
        Some("Analytical Engines")
    );
    assert_eq!(created.state(), State::Active);
    assert_eq!(created.source(), pb::customer::Source::Manual);
    assert_eq!(created.hub_access_enabled, Some(true), "server default");
    assert!(created.create_time.is_some() && created.delete_time.is_none());
    assert!(!created.etag.is_empty());

    let got = app.get(&created.id).await;
    assert_eq!(got, created);
}

#[tokio::test]
async fn create_rejects_bad_input_with_field_violations() {
    let app = spawn_app().await;
    let mut client = app.customers.clone();

    let none = client
        .create_customer(pb::CreateCustomerRequest {
            customer: Some(customer("Nobody", "", "")),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(none.code(), Code::InvalidArgument);
    assert_eq!(bad_fields(&none), ["customer.email", "customer.mobile"]);

    let both_bad = client
        .create_customer(pb::CreateCustomerRequest {
            customer: Some(customer("X", "not-an-email", "12")),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(both_bad.code(), Code::InvalidArgument);
    assert_eq!(bad_fields(&both_bad), ["customer.email", "customer.mobile"]);
    assert_eq!(error_info(&both_bad).0, "INVALID_ARGUMENT");

    let mut long_attr = customer("X", "x@example.com", "");
    long_attr.attributes = [("note".into(), "v".repeat(5000))].into();
    let err = client
        .create_customer(pb::CreateCustomerRequest {
            customer: Some(long_attr),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["customer.attributes.note"]);

    let missing = client
        .create_customer(pb::CreateCustomerRequest::default())
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);

    // Nothing was stored by any of these.
    let list = client
        .list_customers(pb::ListCustomersRequest {
            show_deleted: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(list.into_inner().customers.is_empty());
}

#[tokio::test]
async fn duplicates_by_normalised_email_or_mobile_are_already_exists_naming_the_holder() {
    let app = spawn_app().await;
    let first = app.create("Ada", "ada@example.com", "+44 7911 123456").await;
    let mut client = app.customers.clone();

    let by_email = client
        .create_customer(pb::CreateCustomerRequest {
            customer: Some(customer("Imposter", "ADA@EXAMPLE.com ", "")),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(by_email.code(), Code::AlreadyExists);
    let (reason, meta) = error_info(&by_email);
    assert_eq!(reason, "CUSTOMER_ALREADY_EXISTS");
    assert_eq!(meta["customer_id"], first.id);
    assert_eq!(meta["field"], "email");

    let by_mobile = client
        .create_customer(pb::CreateCustomerRequest {
            customer: Some(customer("Other", "other@example.com", "07911-123-456")),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(by_mobile.code(), Code::AlreadyExists);
    let (_, meta) = error_info(&by_mobile);
    assert_eq!(meta["customer_id"], first.id);
    assert_eq!(meta["field"], "mobile");

    // The failed create left nothing behind: other@example.com is still free.
    app.create("Other", "other@example.com", "").await;
}

#[tokio::test]
async fn concurrent_creates_of_one_person_store_exactly_one() {
    let app = spawn_app().await;
    let attempts = (0..20).map(|i| {
        let mut client = app.customers.clone();
        async move {
            client
                .create_customer(pb::CreateCustomerRequest {
                    customer: Some(customer(&format!("Racer {i}"), "race@example.com", "")),
                    request_id: String::new(),
                })
                .await
        }
    });
    let results = futures_util::future::join_all(attempts).await;
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one create wins");
    let winner = winners[0].get_ref().id.clone();
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(r.code(), Code::AlreadyExists, "{r:?}");
        assert_eq!(error_info(r).1["customer_id"], winner);
    }
}

#[tokio::test]
async fn request_id_makes_create_idempotent() {
    let app = spawn_app().await;
    let request = |name: &str| pb::CreateCustomerRequest {
        customer: Some(customer(name, "idem@example.com", "")),
        request_id: "req-42".into(),
    };
    let first = app
        .customers
        .clone()
        .create_customer(request("First"))
        .await
        .unwrap()
        .into_inner();
    let again = app
        .customers
        .clone()
        .create_customer(request("Second try"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, first, "the replay returns the first result");

    // Concurrent twins of a new request id also agree.
    let twins = (0..8).map(|_| {
        let mut client = app.customers.clone();
        async move {
            client
                .create_customer(pb::CreateCustomerRequest {
                    customer: Some(customer("Twin", "twin@example.com", "")),
                    request_id: "req-twin".into(),
                })
                .await
                .map(|r| r.into_inner().id)
        }
    });
    let ids: HashSet<String> = futures_util::future::join_all(twins)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(ids.len(), 1);

    let long = pb::CreateCustomerRequest {
        customer: Some(customer("L", "l@example.com", "")),
        request_id: "r".repeat(200),
    };
    assert_eq!(
        app.customers.clone().create_customer(long).await.unwrap_err().code(),
        Code::InvalidArgument
    );
}

#[tokio::test]
async fn get_unknown_is_not_found_and_empty_id_invalid() {
    let app = spawn_app().await;
    let mut client = app.customers.clone();
    let err = client
        .get_customer(pb::GetCustomerRequest { id: "nope".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(
        error_info(&err),
        (
            "CUSTOMER_NOT_FOUND".to_owned(),
            [("id".to_owned(), "nope".to_owned())].into()
        )
    );
    let err = client
        .get_customer(pb::GetCustomerRequest { id: String::new() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(bad_fields(&err), ["id"]);
}

#[tokio::test]
async fn pagination_has_no_repeats_or_gaps_while_rows_are_inserted() {
    let app = spawn_app().await;
    let mut expected = Vec::new();
    for i in 0..7 {
        expected.push(app.create(&format!("P{i}"), &format!("p{i}@example.com"), "").await.id);
    }
    let mut client = app.customers.clone();
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_customers(pb::ListCustomersRequest {
                page_size: 3,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.customers.len() <= 3);
        seen.extend(page.customers.into_iter().map(|c| c.id));
        pages += 1;
        if pages == 1 {
            // Rows inserted between pages land after the cursor, in order.
            for i in 7..9 {
                expected.push(app.create(&format!("P{i}"), &format!("p{i}@example.com"), "").await.id);
            }
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, expected, "every customer once, in creation order");
    assert_eq!(pages, 3);

    let err = client
        .list_customers(pb::ListCustomersRequest {
            page_size: -1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(bad_fields(&err), ["page_size"]);
    let err = client
        .list_customers(pb::ListCustomersRequest {
            page_token: "garbage".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["page_token"]);

    // A token is bound to its query.
    let first = client
        .list_customers(pb::ListCustomersRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let err = client
        .list_customers(pb::ListCustomersRequest {
            page_size: 2,
            page_token: first.next_page_token,
            show_deleted: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["page_token"]);
}

#[tokio::test]
async fn list_filters_by_identity_name_attribute_and_flags() {
    let app = spawn_app().await;
    let mut ada = customer("Ada Lovelace", "ada@example.com", "07911 123456");
    ada.attributes = [
        ("organization".into(), "Acme Ltd".into()),
        ("department".into(), "R&D".into()),
    ]
    .into();
    let ada = app
        .customers
        .clone()
        .create_customer(pb::CreateCustomerRequest {
            customer: Some(ada),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut grace = customer("Grace Hopper", "grace@example.com", "");
    grace.attributes = [("organization".into(), "Navy".into())].into();
    grace.hub_access_enabled = Some(false);
    let grace = app
        .customers
        .clone()
        .create_customer(pb::CreateCustomerRequest {
            customer: Some(grace),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let alan = app.create("Alan Turing 100%", "alan@example.com", "").await;

    let ids = |filter: &str| {
        let app = &app;
        let filter = filter.to_owned();
        async move {
            list_all(
                app,
                pb::ListCustomersRequest {
                    filter,
                    ..Default::default()
                },
            )
            .await
            .into_iter()
            .map(|c| c.id)
            .collect::<Vec<_>>()
        }
    };
    assert_eq!(ids(r#"email = "ADA@example.com""#).await, vec![ada.id.clone()]);
    assert_eq!(ids(r#"mobile = "+44 7911 123456""#).await, vec![ada.id.clone()]);
    assert_eq!(ids(r#"name : "HOP""#).await, vec![grace.id.clone()]);
    assert_eq!(
        ids(r#"name : "100%""#).await,
        vec![alan.id.clone()],
        "LIKE wildcards are literal"
    );
    assert_eq!(
        ids(r#"attributes.organization = "Acme Ltd""#).await,
        vec![ada.id.clone()]
    );
    assert_eq!(
        ids(r#"attributes.department = "R&D" AND name:"ada""#).await,
        vec![ada.id.clone()]
    );
    assert_eq!(ids("hub_access_enabled = false").await, vec![grace.id.clone()]);
    assert_eq!(ids("source = MANUAL").await.len(), 3);
    assert!(
        ids(r#"attributes.organization = "acme ltd""#).await.is_empty(),
        "attribute match is exact"
    );

    let err = app
        .customers
        .clone()
        .list_customers(pb::ListCustomersRequest {
            filter: "colour = red".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(bad_fields(&err), ["filter"]);
}

#[tokio::test]
async fn update_honours_mask_and_etag() {
    let app = spawn_app().await;
    let mut ada = customer("Ada", "ada@example.com", "");
    ada.attributes = [("role".into(), "Agent".into()), ("department".into(), "IT".into())].into();
    let ada = app
        .customers
        .clone()
        .create_customer(pb::CreateCustomerRequest {
            customer: Some(ada),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut client = app.customers.clone();

    // Mask: only the name changes even though email is sent too.
    let renamed = client
        .update_customer(pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                id: ada.id.clone(),
                name: "Ada Lovelace".into(),
                email: "other@example.com".into(),
                ..Default::default()
            }),
            update_mask: mask(&["name"]),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.name, "Ada Lovelace");
    assert_eq!(renamed.email, "ada@example.com");
    assert_eq!(renamed.initials, "AL");
    assert_ne!(renamed.etag, ada.etag);

    // One attribute by path; the others stay.
    let attr = client
        .update_customer(pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                id: ada.id.clone(),
                attributes: [("role".into(), "Manager".into())].into(),
                ..Default::default()
            }),
            update_mask: mask(&["attributes.role", "attributes.department"]),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        attr.attributes,
        [("role".to_owned(), "Manager".to_owned())].into(),
        "department removed, role set"
    );

    // No mask: the fields that are set.
    let implied = client
        .update_customer(pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                id: ada.id.clone(),
                mobile: "+1 415 555 2671".into(),
                hub_access_enabled: Some(false),
                ..Default::default()
            }),
            update_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(implied.mobile, "+14155552671");
    assert_eq!(implied.hub_access_enabled, Some(false));
    assert_eq!(implied.name, "Ada Lovelace");

    // A stale etag is ABORTED and changes nothing.
    let stale = client
        .update_customer(pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                id: ada.id.clone(),
                name: "Stale".into(),
                etag: ada.etag.clone(),
                ..Default::default()
            }),
            update_mask: mask(&["name"]),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    assert_eq!(error_info(&stale).0, "ETAG_MISMATCH");
    // The current etag works.
    let fresh = client
        .update_customer(pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                id: ada.id.clone(),
                name: "Fresh".into(),
                etag: implied.etag.clone(),
                ..Default::default()
            }),
            update_mask: mask(&["name"]),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fresh.name, "Fresh");

    // Bad paths and removing the last identifier are INVALID_ARGUMENT.
    let err = client
        .update_customer(pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                id: ada.id.clone(),
                ..Default::default()
            }),
            update_mask: mask(&["state"]),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["update_mask"]);
    let err = client
        .update_customer(pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                id: ada.id.clone(),
                ..Default::default()
            }),
            update_mask: mask(&["email", "mobile"]),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(bad_fields(&err), ["customer.email", "customer.mobile"]);

    let unknown = client
        .update_customer(pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                id: "missing".into(),
                name: "x".into(),
                ..Default::default()
            }),
            update_mask: None,
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    let stored = client
        .get_customer(pb::GetCustomerRequest { id: ada.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored, fresh);
}

#[tokio::test]
async fn update_to_a_taken_identity_is_already_exists_and_frees_nothing() {
    let app = spawn_app().await;
    let ada = app.create("Ada", "ada@example.com", "07911 123456").await;
    let grace = app.create("Grace", "grace@example.com", "").await;
    let mut client = app.customers.clone();
    let err = client
        .update_customer(pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                id: grace.id.clone(),
                email: "Ada@Example.com".into(),
                ..Default::default()
            }),
            update_mask: mask(&["email"]),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert_eq!(error_info(&err).1["customer_id"], ada.id);
    let still = client
        .get_customer(pb::GetCustomerRequest { id: grace.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(still, grace, "nothing half-written");

    // Changing one's own email frees the old one.
    client
        .update_customer(pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                id: ada.id.clone(),
                email: "ada@new.example.com".into(),
                ..Default::default()
            }),
            update_mask: mask(&["email"]),
        })
        .await
        .unwrap();
    app.create("New Ada", "ada@example.com", "").await;
}

#[tokio::test]
async fn delete_frees_identities_and_undelete_refuses_duplicates() {
    let app = spawn_app().await;
    let old = app.create("Old", "person@example.com", "+44 7911 123456").await;
    let mut client = app.customers.clone();

    let stale = client
        .delete_customer(pb::DeleteCustomerRequest {
            id: old.id.clone(),
            etag: "\"999\"".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);

    let deleted = client
        .delete_customer(pb::DeleteCustomerRequest {
            id: old.id.clone(),
            etag: old.etag.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.state(), State::Deleted);
    assert!(deleted.delete_time.is_some());
    let again = client
        .delete_customer(pb::DeleteCustomerRequest {
            id: old.id.clone(),
            etag: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);

    // Deleted: not in the Active list, still readable, listed with show_deleted.
    assert!(list_all(&app, Default::default()).await.is_empty());
    assert_eq!(
        list_all(
            &app,
            pb::ListCustomersRequest {
                show_deleted: true,
                ..Default::default()
            }
        )
        .await
        .len(),
        1
    );
    assert_eq!(
        list_all(
            &app,
            pb::ListCustomersRequest {
                filter: "state = DELETED".into(),
                ..Default::default()
            }
        )
        .await
        .len(),
        1
    );
    assert_eq!(
        client
            .get_customer(pb::GetCustomerRequest { id: old.id.clone() })
            .await
            .unwrap()
            .into_inner()
            .state(),
        State::Deleted
    );
    let upd = client
        .update_customer(pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                id: old.id.clone(),
                name: "x".into(),
                ..Default::default()
            }),
            update_mask: None,
        })
        .await
        .unwrap_err();
    assert_eq!(upd.code(), Code::FailedPrecondition);

    // The email is free for someone new; now undelete must refuse.
    let new = app.create("New", "PERSON@example.com", "").await;
    let refused = client
        .undelete_customer(pb::UndeleteCustomerRequest {
            id: old.id.clone(),
            etag: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let (reason, meta) = error_info(&refused);
    assert_eq!(reason, "IDENTITY_TAKEN");
    assert_eq!(meta["existing_customer_id"], new.id);
    assert_eq!(meta["field"], "email");
    let still = client
        .get_customer(pb::GetCustomerRequest { id: old.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(still.state(), State::Deleted, "refused undelete changed nothing");

    // Once the newcomer is gone, the old customer comes back whole.
    client
        .delete_customer(pb::DeleteCustomerRequest {
            id: new.id.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    let restored = client
        .undelete_customer(pb::UndeleteCustomerRequest {
            id: old.id.clone(),
            etag: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(restored.state(), State::Active);
    assert!(restored.delete_time.is_none());
    assert_eq!(restored.email, old.email);
    let not_deleted = client
        .undelete_customer(pb::UndeleteCustomerRequest {
            id: old.id.clone(),
            etag: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(not_deleted.code(), Code::FailedPrecondition);
    // Restored identities are claimed again.
    let dup = client
        .create_customer(pb::CreateCustomerRequest {
            customer: Some(customer("Dup", "", "07911123456")),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists);
    assert_eq!(error_info(&dup).1["customer_id"], old.id);
}
