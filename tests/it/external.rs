//! Real outside clients against the real binary: grpcurl as an operator uses it.

use std::process::Command;

use crate::{
    harness::{TestDb, external_tool},
    lifecycle::start_binary,
};

fn grpcurl(bin: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(bin).args(args).output().expect("run grpcurl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn grpcurl_lists_describes_and_creates() {
    let Some(bin) = external_tool("grpcurl") else { return };
    let db = TestDb::new().await;
    let (mut child, addr) = start_binary(&db.url, &[]);
    // Wait for SERVING through grpcurl itself.
    let mut ready = false;
    for _ in 0..100 {
        let (ok, out) = grpcurl(&bin, &["-plaintext", &addr, "grpc.health.v1.Health/Check"]);
        if ok && out.contains("SERVING") && !out.contains("NOT_SERVING") {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ready, "server became SERVING");

    let (ok, list) = grpcurl(&bin, &["-plaintext", &addr, "list"]);
    assert!(ok, "{list}");
    for service in [
        "customers.v1.CustomerService",
        "customers.v1.TicketIntakeService",
        "customers.v1.HubAccessService",
        "customers.v1.OrganizationService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(list.contains(service), "list shows {service}:\n{list}");
    }

    let (ok, describe) = grpcurl(&bin, &["-plaintext", &addr, "describe", "customers.v1.Customer"]);
    assert!(ok, "{describe}");
    assert!(
        describe.contains("hub_access_enabled") && describe.contains("map<string, string> attributes"),
        "{describe}"
    );
    let (ok, describe) = grpcurl(&bin, &["-plaintext", &addr, "describe", "grpc.health.v1.Health"]);
    assert!(ok, "{describe}");

    let body = r#"{"customer": {"name": "Ada Lovelace", "email": "ADA@example.com", "mobile": "07911 123456", "attributes": {"organization": "Acme"}}}"#;
    let (ok, created) = grpcurl(
        &bin,
        &[
            "-plaintext",
            "-d",
            body,
            &addr,
            "customers.v1.CustomerService/CreateCustomer",
        ],
    );
    assert!(ok, "{created}");
    let created: serde_json::Value = serde_json::from_str(&created).expect("JSON");
    assert_eq!(created["mobile"], "+447911123456");
    assert_eq!(created["initials"], "AL");
    assert_eq!(created["state"], "ACTIVE");

    // The same person again: grpcurl shows the code and the holder's id.
    let (ok, dup) = grpcurl(
        &bin,
        &[
            "-plaintext",
            "-d",
            body,
            &addr,
            "customers.v1.CustomerService/CreateCustomer",
        ],
    );
    assert!(!ok);
    assert!(dup.contains("AlreadyExists"), "{dup}");

    let update = format!(
        r#"{{"customer": {{"id": {}, "name": "Ada King"}}, "updateMask": {{"paths": ["name"]}}}}"#,
        created["id"]
    );
    let (ok, updated) = grpcurl(
        &bin,
        &[
            "-plaintext",
            "-d",
            &update,
            &addr,
            "customers.v1.CustomerService/UpdateCustomer",
        ],
    );
    assert!(ok && updated.contains("Ada King"), "{updated}");

    // Operators set the Hub's support contact and denied message.
    let settings = r#"{"settings": {"supportEmail": "help@example.com", "supportPhone": "020 7946 0018", "deniedMessage": "Call us."}, "updateMask": {"paths": ["support_email", "support_phone", "denied_message"]}}"#;
    let (ok, out) = grpcurl(
        &bin,
        &[
            "-plaintext",
            "-d",
            settings,
            &addr,
            "customers.v1.HubAccessService/UpdateHubSettings",
        ],
    );
    assert!(ok && out.contains("+442079460018"), "{out}");
    let (ok, out) = grpcurl(
        &bin,
        &[
            "-plaintext",
            "-d",
            r#"{"email": "nobody@example.com"}"#,
            &addr,
            "customers.v1.HubAccessService/CheckHubLogin",
        ],
    );
    assert!(ok, "{out}");
    let denied: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(denied["message"], "Call us.");
    assert_eq!(denied["supportContact"]["email"], "help@example.com");
    assert!(
        denied.get("allowed").is_none(),
        "false is omitted in proto3 JSON: {out}"
    );

    child.kill().ok();
    child.wait().ok();
}

#[test]
fn buf_lint_passes_with_standard_rules() {
    let Some(buf) = external_tool("buf") else { return };
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(buf)
        .arg("lint")
        .current_dir(root)
        .output()
        .expect("run buf");
    assert!(
        out.status.success(),
        "buf lint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
