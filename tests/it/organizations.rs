//! OrganizationService: standard methods, memberships, ticket rights, and
//! organisation links made by intake and domain assignment.

use customer_service::{
    domain::customers::CustomerSettings,
    proto::v1::{self as pb, check_ticket_access_request::Action},
};
use prost_types::FieldMask;
use tonic::Code;

use crate::harness::{TestApp, bad_fields, error_info, spawn_app, spawn_app_with};

async fn create_org(app: &TestApp, name: &str, domains: &[&str]) -> pb::Organization {
    app.orgs
        .clone()
        .create_organization(pb::CreateOrganizationRequest {
            organization: Some(pb::Organization {
                name: name.into(),
                domains: domains.iter().map(|d| (*d).to_owned()).collect(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_or_else(|s| panic!("{s:?}"))
        .into_inner()
}

async fn access(app: &TestApp, customer: &str, org: &str, action: Action) -> (bool, String) {
    let r = app
        .orgs
        .clone()
        .check_ticket_access(pb::CheckTicketAccessRequest {
            customer_id: customer.into(),
            organization_id: org.into(),
            action: action as i32,
        })
        .await
        .unwrap()
        .into_inner();
    (r.allowed, r.reason)
}

#[tokio::test]
async fn organizations_have_unique_names_and_standard_methods() {
    let app = spawn_app().await;
    let acme = create_org(&app, "Acme Ltd", &["@ACME.example.com", "acme.example.com"]).await;
    assert_eq!(acme.domains, ["acme.example.com"]);
    let mut orgs = app.orgs.clone();
    let dup = orgs
        .create_organization(pb::CreateOrganizationRequest {
            organization: Some(pb::Organization {
                name: "acme ltd".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists);
    let (reason, meta) = error_info(&dup);
    assert_eq!(
        (reason.as_str(), meta["organization_id"].as_str()),
        ("ORGANIZATION_ALREADY_EXISTS", acme.id.as_str())
    );
    let bad = orgs
        .create_organization(pb::CreateOrganizationRequest {
            organization: Some(pb::Organization {
                name: " ".into(),
                domains: vec!["not a domain".into()],
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&bad), ["organization.name", "organization.domains"]);

    let renamed = orgs
        .update_organization(pb::UpdateOrganizationRequest {
            organization: Some(pb::Organization {
                id: acme.id.clone(),
                name: "Acme Group".into(),
                etag: acme.etag.clone(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["name".into()],
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.name, "Acme Group");
    assert_eq!(renamed.domains, acme.domains);
    let stale = orgs
        .update_organization(pb::UpdateOrganizationRequest {
            organization: Some(pb::Organization {
                id: acme.id.clone(),
                name: "X".into(),
                etag: acme.etag.clone(),
                ..Default::default()
            }),
            update_mask: None,
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);

    // Deleting frees the name; undelete refuses while another holds it.
    orgs.delete_organization(pb::DeleteOrganizationRequest {
        id: acme.id.clone(),
        etag: String::new(),
    })
    .await
    .unwrap();
    let listed = orgs
        .list_organizations(pb::ListOrganizationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.organizations.is_empty());
    let newcomer = create_org(&app, "ACME GROUP", &[]).await;
    let refused = orgs
        .undelete_organization(pb::UndeleteOrganizationRequest { id: acme.id.clone() })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(error_info(&refused).1["existing_organization_id"], newcomer.id);
    assert_eq!(
        orgs.get_organization(pb::GetOrganizationRequest { id: "missing".into() })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
}

#[tokio::test]
async fn ticket_access_needs_an_active_customer_with_hub_access_membership_and_the_right() {
    let app = spawn_app().await;
    let org = create_org(&app, "Globex", &[]).await;
    let ada = app.create("Ada", "ada@example.com", "").await;
    let mut orgs = app.orgs.clone();

    assert_eq!(
        access(&app, &ada.id, &org.id, Action::View).await,
        (false, "NOT_A_MEMBER".into())
    );
    let m = orgs
        .add_member(pb::AddMemberRequest {
            organization_id: org.id.clone(),
            customer_id: ada.id.clone(),
            can_view_tickets: true,
            can_create_tickets: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(m.can_view_tickets && !m.can_create_tickets);
    assert_eq!(
        access(&app, &ada.id, &org.id, Action::View).await,
        (true, "ALLOWED".into())
    );
    assert_eq!(
        access(&app, &ada.id, &org.id, Action::Create).await,
        (false, "NO_CREATE_RIGHT".into())
    );

    // AddMember on an existing membership updates its rights.
    orgs.add_member(pb::AddMemberRequest {
        organization_id: org.id.clone(),
        customer_id: ada.id.clone(),
        can_view_tickets: false,
        can_create_tickets: true,
    })
    .await
    .unwrap();
    assert_eq!(
        access(&app, &ada.id, &org.id, Action::Create).await,
        (true, "ALLOWED".into())
    );
    assert_eq!(
        access(&app, &ada.id, &org.id, Action::View).await,
        (false, "NO_VIEW_RIGHT".into())
    );
    let members = orgs
        .list_members(pb::ListMembersRequest {
            organization_id: org.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(members.memberships.len(), 1);
    let mine = orgs
        .list_customer_organizations(pb::ListCustomerOrganizationsRequest {
            customer_id: ada.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.memberships[0].organization.as_ref().unwrap().name, "Globex");

    // Deleting the organisation or the customer ends the rights; undelete restores them.
    orgs.delete_organization(pb::DeleteOrganizationRequest {
        id: org.id.clone(),
        etag: String::new(),
    })
    .await
    .unwrap();
    assert_eq!(
        access(&app, &ada.id, &org.id, Action::Create).await,
        (false, "ORGANIZATION_DELETED".into())
    );
    orgs.undelete_organization(pb::UndeleteOrganizationRequest { id: org.id.clone() })
        .await
        .unwrap();
    assert!(access(&app, &ada.id, &org.id, Action::Create).await.0);
    app.delete(&ada.id).await;
    assert_eq!(
        access(&app, &ada.id, &org.id, Action::Create).await,
        (false, "CUSTOMER_DELETED".into())
    );
    app.customers
        .clone()
        .undelete_customer(pb::UndeleteCustomerRequest {
            id: ada.id.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    assert!(access(&app, &ada.id, &org.id, Action::Create).await.0);

    // Hub access off: no rights.
    app.customers
        .clone()
        .update_customer(pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                id: ada.id.clone(),
                hub_access_enabled: Some(false),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["hub_access_enabled".into()],
            }),
        })
        .await
        .unwrap();
    assert_eq!(
        access(&app, &ada.id, &org.id, Action::Create).await,
        (false, "HUB_ACCESS_DISABLED".into())
    );

    orgs.remove_member(pb::RemoveMemberRequest {
        organization_id: org.id.clone(),
        customer_id: ada.id.clone(),
    })
    .await
    .unwrap();
    let again = orgs
        .remove_member(pb::RemoveMemberRequest {
            organization_id: org.id.clone(),
            customer_id: ada.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound);
    assert_eq!(
        access(&app, "nobody", &org.id, Action::View).await,
        (false, "CUSTOMER_NOT_FOUND".into())
    );
    let err = orgs
        .check_ticket_access(pb::CheckTicketAccessRequest {
            customer_id: ada.id.clone(),
            organization_id: org.id.clone(),
            action: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["action"]);
}

#[tokio::test]
async fn intake_links_the_organization_attribute_creating_it_when_missing() {
    let app = spawn_app().await;
    let existing = create_org(&app, "Initech", &[]).await;
    let mut req = pb::ResolveTicketCustomerRequest {
        ticket_id: "T-org".into(),
        email: "peter@initech.example".into(),
        ..Default::default()
    };
    req.attributes = [("organization".into(), "initech".into())].into();
    let r = app
        .intake
        .clone()
        .resolve_ticket_customer(req)
        .await
        .unwrap()
        .into_inner();
    let customer = r.customer.unwrap();
    assert_eq!(
        access(&app, &customer.id, &existing.id, Action::View).await,
        (true, "ALLOWED".into()),
        "matched by name, case-insensitively"
    );
    assert!(
        !access(&app, &customer.id, &existing.id, Action::Create).await.0,
        "default rights: view only"
    );

    let mut req = pb::ResolveTicketCustomerRequest {
        ticket_id: "T-org2".into(),
        email: "bill@other.example".into(),
        ..Default::default()
    };
    req.attributes = [("organization".into(), "Brand New Co".into())].into();
    let r = app
        .intake
        .clone()
        .resolve_ticket_customer(req)
        .await
        .unwrap()
        .into_inner();
    let mine = app
        .orgs
        .clone()
        .list_customer_organizations(pb::ListCustomerOrganizationsRequest {
            customer_id: r.customer.unwrap().id,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.memberships.len(), 1);
    assert_eq!(mine.memberships[0].organization.as_ref().unwrap().name, "Brand New Co");
}

#[tokio::test]
async fn domain_assignment_joins_new_customers_only_when_enabled() {
    for enabled in [false, true] {
        let app = spawn_app_with(CustomerSettings {
            org_domain_assignment: enabled,
            ..Default::default()
        })
        .await;
        let org = create_org(&app, "Umbrella", &["umbrella.example"]).await;
        let created = app.create("Alice", "alice@Umbrella.example", "").await;
        let by_ticket = app
            .intake
            .clone()
            .resolve_ticket_customer(pb::ResolveTicketCustomerRequest {
                ticket_id: "T-dom".into(),
                email: "bob@umbrella.example".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .customer
            .unwrap();
        let outsider = app.create("Eve", "eve@elsewhere.example", "").await;
        for id in [&created.id, &by_ticket.id] {
            let (allowed, reason) = access(&app, id, &org.id, Action::View).await;
            assert_eq!(allowed, enabled, "{reason}");
        }
        assert_eq!(
            access(&app, &outsider.id, &org.id, Action::View).await.1,
            "NOT_A_MEMBER"
        );
    }
}
