//! Audit history: every kind of change leaves one entry naming who made it,
//! written in the same transaction as the change.

use customer_service::proto::v1::{
    self as pb, customer_service_client::CustomerServiceClient, history_entry::Action,
    hub_access_service_client::HubAccessServiceClient, organization_service_client::OrganizationServiceClient,
};
use tonic::{Code, Request, Status, metadata::MetadataValue, service::Interceptor, transport::Channel};

use crate::{
    auth::tokens_file,
    harness::{TestApp, customer, error_info, spawn_app, spawn_with_tokens},
    import::import_csv,
};

/// Every entry of a customer's history, paging with small pages.
async fn customer_history(app: &TestApp, id: &str) -> Vec<pb::HistoryEntry> {
    let mut entries = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = app
            .customers
            .clone()
            .list_customer_history(pb::ListCustomerHistoryRequest {
                customer_id: id.into(),
                page_size: 2,
                page_token,
            })
            .await
            .expect("history")
            .into_inner();
        assert!(page.entries.len() <= 2);
        entries.extend(page.entries);
        if page.next_page_token.is_empty() {
            return entries;
        }
        page_token = page.next_page_token;
    }
}

fn actions(entries: &[pb::HistoryEntry]) -> Vec<Action> {
    entries.iter().map(|e| e.action()).collect()
}

fn changes(entry: &pb::HistoryEntry) -> Vec<(&str, &str, &str)> {
    entry
        .changes
        .iter()
        .map(|c| (c.field.as_str(), c.old_value.as_str(), c.new_value.as_str()))
        .collect()
}

#[tokio::test]
async fn a_customers_life_is_recorded_field_by_field() {
    let app = spawn_app().await;
    let mut client = app.customers.clone();
    let created = app.create("Ada", "ada@example.com", "").await;

    let mut update = customer("Ada Lovelace", "", "+44 7911 123456");
    update.id = created.id.clone();
    update.attributes.insert("role".into(), "cto".into());
    client
        .update_customer(pb::UpdateCustomerRequest {
            customer: Some(update),
            update_mask: None,
        })
        .await
        .unwrap();
    // An update that changes nothing records nothing.
    let mut same = customer("Ada Lovelace", "", "");
    same.id = created.id.clone();
    client
        .update_customer(pb::UpdateCustomerRequest {
            customer: Some(same),
            update_mask: None,
        })
        .await
        .unwrap();
    // A refused update records nothing either: the mobile is someone else's.
    let other = app.create("Bob", "bob@example.com", "+44 7911 123457").await;
    let mut clash = customer("", "", "+44 7911 123457");
    clash.id = created.id.clone();
    let refused = client
        .update_customer(pb::UpdateCustomerRequest {
            customer: Some(clash),
            update_mask: None,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::AlreadyExists);
    client
        .delete_customer(pb::DeleteCustomerRequest {
            id: created.id.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    client
        .undelete_customer(pb::UndeleteCustomerRequest {
            id: created.id.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();

    let history = customer_history(&app, &created.id).await;
    assert_eq!(
        actions(&history),
        [Action::Create, Action::Update, Action::Delete, Action::Undelete]
    );
    // A CREATE carries no values: they are the `old` values of the UPDATE.
    assert!(history[0].changes.is_empty());
    assert_eq!(
        changes(&history[1]),
        [
            ("name", "Ada", "Ada Lovelace"),
            ("mobile", "", "+447911123456"),
            ("attributes.role", "", "cto")
        ]
    );
    for entry in &history {
        assert_eq!(entry.principal, "anonymous");
        assert!(entry.import_id.is_empty() && entry.ticket_id.is_empty());
        assert!(entry.create_time.is_some());
    }
    let times: Vec<_> = history.iter().map(|e| e.create_time.unwrap()).collect();
    assert!(
        times
            .windows(2)
            .all(|w| (w[0].seconds, w[0].nanos) <= (w[1].seconds, w[1].nanos))
    );
    assert_eq!(actions(&customer_history(&app, &other.id).await), [Action::Create]);

    let unknown = client
        .list_customer_history(pb::ListCustomerHistoryRequest {
            customer_id: "no-such-customer".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let bad_token = client
        .list_customer_history(pb::ListCustomerHistoryRequest {
            customer_id: created.id.clone(),
            page_token: "garbage".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_token.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn an_import_records_one_entry_per_changed_customer_with_its_id() {
    let app = spawn_app().await;
    let kept = app.create("Kept", "kept@example.com", "").await;
    let changed = app.create("Changed", "changed@example.com", "").await;

    let dry = import_csv(
        &app,
        Some(pb::ImportOptions {
            dry_run: true,
            ..Default::default()
        }),
        b"name,email\nNew,new@example.com\n",
    )
    .await;
    assert!(dry.nothing_stored);

    let file = b"name,email,organization,role\n\
        Kept,kept@example.com,,\n\
        Changed,changed@example.com,,lead\n\
        New,new@example.com,Acme,\n\
        Broken,not-an-email,,\n";
    let report = import_csv(&app, None, file).await;
    assert_eq!(
        (report.created, report.updated, report.unchanged, report.failed),
        (1, 1, 1, 1)
    );

    assert_eq!(actions(&customer_history(&app, &kept.id).await), [Action::Create]);
    let history = customer_history(&app, &changed.id).await;
    assert_eq!(actions(&history), [Action::Create, Action::Update]);
    assert_eq!(history[1].import_id, report.import_id);
    assert_eq!(changes(&history[1]), [("attributes.role", "", "lead")]);

    let new = app
        .customers
        .clone()
        .list_customers(pb::ListCustomersRequest {
            filter: "email = \"new@example.com\"".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .customers
        .remove(0);
    let history = customer_history(&app, &new.id).await;
    assert_eq!(actions(&history), [Action::Create]);
    assert_eq!(history[0].import_id, report.import_id);
    assert_eq!(history[0].principal, "anonymous");
    // The membership the import gave it is one of its initial values.
    let org_id = &app
        .orgs
        .clone()
        .list_customer_organizations(pb::ListCustomerOrganizationsRequest {
            customer_id: new.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .memberships[0]
        .organization_id;
    assert_eq!(
        changes(&history[0]),
        [(format!("memberships.{org_id}").as_str(), "", "view")]
    );
    // The organisation the import created has its own CREATE entry.
    let org_history = app
        .orgs
        .clone()
        .list_organization_history(pb::ListOrganizationHistoryRequest {
            organization_id: org_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(actions(&org_history), [Action::Create]);
    assert_eq!(org_history[0].import_id, report.import_id);
    assert_eq!(changes(&org_history[0]), [("name", "", "Acme")]);
}

#[tokio::test]
async fn intake_records_creates_fill_ins_and_restores_with_the_ticket_id() {
    let app = spawn_app().await;
    let mut intake = app.intake.clone();
    let resolve = |ticket: &str, email: &str, mobile: &str| pb::ResolveTicketCustomerRequest {
        ticket_id: ticket.into(),
        name: "Grace".into(),
        email: email.into(),
        mobile: mobile.into(),
        ..Default::default()
    };
    let first = intake
        .resolve_ticket_customer(resolve("T-1", "grace@example.com", ""))
        .await
        .unwrap()
        .into_inner();
    let id = first.customer.unwrap().id;
    // Same person again: a plain match changes no field, so no entry.
    intake
        .resolve_ticket_customer(resolve("T-2", "grace@example.com", ""))
        .await
        .unwrap();
    // Fill-in of the missing mobile.
    intake
        .resolve_ticket_customer(resolve("T-3", "grace@example.com", "+44 7911 123456"))
        .await
        .unwrap();
    app.delete(&id).await;
    let restored = intake
        .resolve_ticket_customer(resolve("T-4", "grace@example.com", ""))
        .await
        .unwrap()
        .into_inner();
    assert!(restored.restored);

    let history = customer_history(&app, &id).await;
    assert_eq!(
        actions(&history),
        [Action::Create, Action::Update, Action::Delete, Action::Undelete]
    );
    let tickets: Vec<&str> = history.iter().map(|e| e.ticket_id.as_str()).collect();
    assert_eq!(tickets, ["T-1", "T-3", "", "T-4"]);
    assert_eq!(changes(&history[1]), [("mobile", "", "+447911123456")]);
}

#[tokio::test]
async fn organisations_memberships_and_settings_are_recorded() {
    let app = spawn_app().await;
    let mut orgs = app.orgs.clone();
    let person = app.create("Ada", "ada@example.com", "").await;
    let org = orgs
        .create_organization(pb::CreateOrganizationRequest {
            organization: Some(pb::Organization {
                name: "Acme".into(),
                domains: vec!["acme.example".into()],
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    orgs.update_organization(pb::UpdateOrganizationRequest {
        organization: Some(pb::Organization {
            id: org.id.clone(),
            name: "Acme Ltd".into(),
            ..Default::default()
        }),
        update_mask: None,
    })
    .await
    .unwrap();
    let member = |view, create| pb::AddMemberRequest {
        organization_id: org.id.clone(),
        customer_id: person.id.clone(),
        can_view_tickets: view,
        can_create_tickets: create,
    };
    orgs.add_member(member(true, false)).await.unwrap();
    orgs.add_member(member(true, false)).await.unwrap(); // same rights: nothing to record
    orgs.add_member(member(true, true)).await.unwrap();
    orgs.remove_member(pb::RemoveMemberRequest {
        organization_id: org.id.clone(),
        customer_id: person.id.clone(),
    })
    .await
    .unwrap();
    orgs.delete_organization(pb::DeleteOrganizationRequest {
        id: org.id.clone(),
        etag: String::new(),
    })
    .await
    .unwrap();
    orgs.undelete_organization(pb::UndeleteOrganizationRequest { id: org.id.clone() })
        .await
        .unwrap();

    let org_history = orgs
        .list_organization_history(pb::ListOrganizationHistoryRequest {
            organization_id: org.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(
        actions(&org_history),
        [Action::Create, Action::Update, Action::Delete, Action::Undelete]
    );
    assert_eq!(
        changes(&org_history[0]),
        [("name", "", "Acme"), ("domains", "", "acme.example")]
    );
    assert_eq!(changes(&org_history[1]), [("name", "Acme", "Acme Ltd")]);

    let history = customer_history(&app, &person.id).await;
    assert_eq!(
        actions(&history),
        [
            Action::Create,
            Action::AddMembership,
            Action::UpdateMembership,
            Action::RemoveMembership
        ]
    );
    assert!(history[1..].iter().all(|e| e.organization_id == org.id));
    assert_eq!(
        changes(&history[1]),
        [("can_view_tickets", "", "true"), ("can_create_tickets", "", "false")]
    );
    assert_eq!(changes(&history[2]), [("can_create_tickets", "false", "true")]);
    assert_eq!(
        changes(&history[3]),
        [("can_view_tickets", "true", ""), ("can_create_tickets", "true", "")]
    );

    let mut hub = app.hub.clone();
    hub.update_hub_settings(pb::UpdateHubSettingsRequest {
        settings: Some(pb::HubSettings {
            support_email: "help@example.com".into(),
            ..Default::default()
        }),
        update_mask: None,
    })
    .await
    .unwrap();
    let settings_history = hub
        .list_hub_settings_history(pb::ListHubSettingsHistoryRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(actions(&settings_history), [Action::Update]);
    assert_eq!(
        changes(&settings_history[0]),
        [("support_email", "", "help@example.com")]
    );
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
struct Bearer(&'static str);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut().insert(
            "authorization",
            MetadataValue::try_from(format!("Bearer {}", self.0)).unwrap(),
        );
        Ok(req)
    }
}

#[tokio::test]
async fn entries_name_the_principal_behind_the_token() {
    let file = tokens_file(&[
        ("support-agent", "cs_agent", &["write", "read"]),
        ("ticketing-platform", "cs_intake", &["intake"]),
        ("nightly-import", "cs_import", &["import"]),
        ("operator", "cs_admin", &["admin"]),
    ]);
    let app = spawn_with_tokens(file.path().to_path_buf()).await;
    let channel = Channel::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .connect_lazy();
    let mut agent = CustomerServiceClient::with_interceptor(channel.clone(), Bearer("cs_agent"));
    let mut intake = pb::ticket_intake_service_client::TicketIntakeServiceClient::with_interceptor(
        channel.clone(),
        Bearer("cs_intake"),
    );
    let importer = CustomerServiceClient::with_interceptor(channel.clone(), Bearer("cs_import"));
    let mut admin_hub = HubAccessServiceClient::with_interceptor(channel.clone(), Bearer("cs_admin"));
    let mut admin_orgs = OrganizationServiceClient::with_interceptor(channel, Bearer("cs_admin"));

    let resolved = intake
        .resolve_ticket_customer(pb::ResolveTicketCustomerRequest {
            ticket_id: "T-9".into(),
            email: "lin@example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let id = resolved.customer.unwrap().id;
    let mut update = customer("Lin", "", "");
    update.id = id.clone();
    agent
        .update_customer(pb::UpdateCustomerRequest {
            customer: Some(update),
            update_mask: None,
        })
        .await
        .unwrap();
    let mut importer = importer;
    let report = importer
        .import_customers(tokio_stream::iter(crate::import::messages(
            None,
            &[b"email,role\nlin@example.com,lead\n"],
        )))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.updated, 1);
    let org = admin_orgs
        .create_organization(pb::CreateOrganizationRequest {
            organization: Some(pb::Organization {
                name: "Globex".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    admin_orgs
        .add_member(pb::AddMemberRequest {
            organization_id: org.id.clone(),
            customer_id: id.clone(),
            can_view_tickets: true,
            can_create_tickets: true,
        })
        .await
        .unwrap();

    let history = agent
        .list_customer_history(pb::ListCustomerHistoryRequest {
            customer_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let who: Vec<(Action, &str)> = history.iter().map(|e| (e.action(), e.principal.as_str())).collect();
    assert_eq!(
        who,
        [
            (Action::Create, "ticketing-platform"),
            (Action::Update, "support-agent"),
            (Action::Update, "nightly-import"),
            (Action::AddMembership, "operator"),
        ]
    );
    assert_eq!(history[0].ticket_id, "T-9");
    assert_eq!(history[2].import_id, report.import_id);

    // Settings history is for admins only.
    admin_hub
        .list_hub_settings_history(pb::ListHubSettingsHistoryRequest::default())
        .await
        .unwrap();
    let mut agent_hub = HubAccessServiceClient::with_interceptor(
        Channel::from_shared(format!("http://{}", app.addr))
            .unwrap()
            .connect_lazy(),
        Bearer("cs_agent"),
    );
    let denied = agent_hub
        .list_hub_settings_history(pb::ListHubSettingsHistoryRequest::default())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(error_info(&denied).1["permission"], "admin");
}
