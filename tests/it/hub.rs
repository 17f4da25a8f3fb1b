//! HubAccessService: login decisions and configurable support contact.

use customer_service::proto::v1::{self as pb, check_hub_login_request::Identifier};
use prost_types::FieldMask;
use tonic::Code;

use crate::harness::{TestApp, bad_fields, customer, spawn_app};

async fn login(app: &TestApp, who: Identifier) -> pb::CheckHubLoginResponse {
    app.hub
        .clone()
        .check_hub_login(pb::CheckHubLoginRequest { identifier: Some(who) })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn logins_are_allowed_only_for_active_customers_with_access_and_denials_look_alike() {
    let app = spawn_app().await;
    let settings = app
        .hub
        .clone()
        .update_hub_settings(pb::UpdateHubSettingsRequest {
            settings: Some(pb::HubSettings {
                support_email: "help@example.com".into(),
                support_phone: "020 7946 0018".into(),
                support_hours: "Mon-Fri 9-17".into(),
                denied_message: "Please call support.".into(),
                update_time: None,
            }),
            update_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(settings.support_phone, "+442079460018");

    let enabled = app.create("On", "on@example.com", "+44 7911 123456").await;
    let mut off = customer("Off", "off@example.com", "");
    off.hub_access_enabled = Some(false);
    let disabled = app
        .customers
        .clone()
        .create_customer(pb::CreateCustomerRequest {
            customer: Some(off),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let deleted = app.create("Gone", "gone@example.com", "").await;
    app.delete(&deleted.id).await;

    for who in [
        Identifier::CustomerId(enabled.id.clone()),
        Identifier::Email("ON@example.com".into()),
        Identifier::Mobile("07911123456".into()),
    ] {
        let r = login(&app, who).await;
        assert!(r.allowed);
        assert_eq!(r.customer_id, enabled.id);
        assert!(r.message.is_empty());
    }

    let denials = [
        login(&app, Identifier::CustomerId(disabled.id.clone())).await,
        login(&app, Identifier::Email("off@example.com".into())).await,
        login(&app, Identifier::Email("gone@example.com".into())).await,
        login(&app, Identifier::CustomerId(deleted.id.clone())).await,
        login(&app, Identifier::Email("nobody@example.com".into())).await,
        login(&app, Identifier::CustomerId("no-such-id".into())).await,
    ];
    for d in &denials {
        assert_eq!(d, &denials[0], "unknown, deleted and disabled are indistinguishable");
    }
    let d = &denials[0];
    assert!(!d.allowed);
    assert!(d.customer_id.is_empty());
    assert_eq!(d.message, "Please call support.");
    let contact = d.support_contact.clone().unwrap();
    assert_eq!(
        (contact.email.as_str(), contact.phone.as_str(), contact.hours.as_str()),
        ("help@example.com", "+442079460018", "Mon-Fri 9-17")
    );

    // Enabling access through UpdateCustomer lets them in.
    app.customers
        .clone()
        .update_customer(pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                id: disabled.id.clone(),
                hub_access_enabled: Some(true),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["hub_access_enabled".into()],
            }),
        })
        .await
        .unwrap();
    assert!(login(&app, Identifier::CustomerId(disabled.id)).await.allowed);

    let err = app
        .hub
        .clone()
        .check_hub_login(pb::CheckHubLoginRequest { identifier: None })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = app
        .hub
        .clone()
        .check_hub_login(pb::CheckHubLoginRequest {
            identifier: Some(Identifier::Email("nope".into())),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["email"]);
}

#[tokio::test]
async fn settings_have_defaults_validate_and_honour_the_mask() {
    let app = spawn_app().await;
    let mut hub = app.hub.clone();
    let defaults = hub
        .get_hub_settings(pb::GetHubSettingsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!defaults.denied_message.is_empty());
    assert!(defaults.update_time.is_none());

    let err = hub
        .update_hub_settings(pb::UpdateHubSettingsRequest {
            settings: Some(pb::HubSettings {
                support_email: "not-an-email".into(),
                support_phone: "12".into(),
                denied_message: String::new(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["support_email".into(), "support_phone".into(), "denied_message".into()],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        bad_fields(&err),
        [
            "settings.support_email",
            "settings.support_phone",
            "settings.denied_message"
        ]
    );
    assert_eq!(
        hub.get_hub_settings(pb::GetHubSettingsRequest {})
            .await
            .unwrap()
            .into_inner(),
        defaults,
        "nothing stored"
    );

    let set = hub
        .update_hub_settings(pb::UpdateHubSettingsRequest {
            settings: Some(pb::HubSettings {
                support_email: "Help@Example.com".into(),
                support_hours: "ignored".into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["support_email".into()],
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(set.support_email, "Help@Example.com");
    assert_eq!(set.support_hours, "", "not in the mask");
    assert_eq!(set.denied_message, defaults.denied_message);
    assert!(set.update_time.is_some());
    assert_eq!(
        hub.get_hub_settings(pb::GetHubSettingsRequest {})
            .await
            .unwrap()
            .into_inner(),
        set
    );

    let err = hub
        .update_hub_settings(pb::UpdateHubSettingsRequest {
            settings: None,
            update_mask: Some(FieldMask {
                paths: vec!["colour".into()],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["update_mask"]);
}
