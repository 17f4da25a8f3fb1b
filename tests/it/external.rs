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

/// `python3` on PATH if it can import `modules`; `None` (after printing why)
/// means skip.
fn python_with(modules: &str) -> Option<std::path::PathBuf> {
    let python = external_tool("python3")?;
    let ok = Command::new(&python)
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            !crate::harness::require_external(),
            "python3 cannot import {modules} (REQUIRE_EXTERNAL=1); .ci/run installs them"
        );
        eprintln!("SKIPPED: python3 lacks {modules} (run .ci/run, or pip install them)");
        return None;
    }
    Some(python)
}

#[tokio::test]
async fn the_python_example_client_works_against_the_server() {
    let Some(python) = python_with("grpc, grpc_tools") else {
        return;
    };
    let db = TestDb::new().await;
    let (mut child, addr) = start_binary(&db.url, &[]);
    // Listening comes before SERVING (the database is migrated meanwhile).
    crate::lifecycle::serving_channel(&addr).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/python/client.py");
    let out = tokio::task::spawn_blocking(move || Command::new(python).args([script, &addr]).output())
        .await
        .unwrap()
        .expect("run the Python client");
    let _ = child.kill();
    let _ = child.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let steps: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(steps.len(), 3, "{stdout}");
    assert_eq!(steps[1]["created"], 1);
    assert_eq!(steps[2]["customer_id"], steps[0]["id"]);
}

#[test]
fn deploy_manifests_validate_against_kubernetes_schemas_and_each_other() {
    let Some(validate) = external_tool("kubernetes-validate") else {
        return;
    };
    let Some(python) = python_with("yaml") else { return };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    // Whole resources; kustomizations and patches are checked by check.py.
    let resources = [
        "base/configmap.yaml",
        "base/deployment.yaml",
        "base/service.yaml",
        "base/pdb.yaml",
        "base/migrate-job.yaml",
        "overlays/example/namespace.yaml",
    ];
    let out = Command::new(validate)
        .args(["--kubernetes-version", "1.33.0", "--strict"])
        .args(resources.iter().map(|r| root.join(r)))
        .output()
        .expect("run kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && !text.contains("ERROR"),
        "kubernetes-validate:\n{text}"
    );
    let out = Command::new(python)
        .arg(root.join("../check.py"))
        .arg(env!("CARGO_BIN_EXE_customer-service"))
        .output()
        .expect("run deploy/check.py");
    assert!(
        out.status.success(),
        "deploy/check.py:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
