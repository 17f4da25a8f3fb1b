//! Callers and permissions: every RPC against no token, a bad token, a
//! token without the permission, and one with it; open mode rules; reload.

use std::{io::Write, process::Command, time::Duration};

use customer_service::domain::auth::{hex, sha256};
use http::uri::PathAndQuery;
use tonic::{Code, Request, metadata::MetadataValue, transport::Channel};
use tonic_prost::ProstCodec;

use crate::{
    harness::{TestDb, spawn_with_tokens},
    lifecycle::start_binary,
};

/// Every RPC of ours with the permissions the table gives it (`a+b`: both).
const RPCS: &[(&str, &str)] = &[
    ("/customers.v1.CustomerService/CreateCustomer", "write"),
    ("/customers.v1.CustomerService/GetCustomer", "read"),
    ("/customers.v1.CustomerService/ListCustomers", "read"),
    ("/customers.v1.CustomerService/UpdateCustomer", "write"),
    ("/customers.v1.CustomerService/DeleteCustomer", "delete"),
    ("/customers.v1.CustomerService/UndeleteCustomer", "write"),
    ("/customers.v1.CustomerService/MergeCustomers", "write+delete"),
    ("/customers.v1.CustomerService/ImportCustomers", "import"),
    ("/customers.v1.CustomerService/ExportCustomers", "read"),
    ("/customers.v1.CustomerService/GetImportTemplate", "read"),
    ("/customers.v1.CustomerService/ListCustomerHistory", "read"),
    ("/customers.v1.TicketIntakeService/ResolveTicketCustomer", "intake"),
    ("/customers.v1.HubAccessService/CheckHubLogin", "hub"),
    ("/customers.v1.HubAccessService/GetHubSettings", "hub"),
    ("/customers.v1.HubAccessService/UpdateHubSettings", "admin"),
    ("/customers.v1.HubAccessService/ListHubSettingsHistory", "admin"),
    ("/customers.v1.OrganizationService/CreateOrganization", "write"),
    ("/customers.v1.OrganizationService/GetOrganization", "read"),
    ("/customers.v1.OrganizationService/ListOrganizations", "read"),
    ("/customers.v1.OrganizationService/UpdateOrganization", "write"),
    ("/customers.v1.OrganizationService/DeleteOrganization", "delete"),
    ("/customers.v1.OrganizationService/UndeleteOrganization", "write"),
    ("/customers.v1.OrganizationService/AddMember", "write"),
    ("/customers.v1.OrganizationService/RemoveMember", "write"),
    ("/customers.v1.OrganizationService/ListMembers", "read"),
    ("/customers.v1.OrganizationService/ListCustomerOrganizations", "read"),
    ("/customers.v1.OrganizationService/CheckTicketAccess", "hub"),
    ("/customers.v1.OrganizationService/ListOrganizationHistory", "read"),
];

/// The list above names every method the protos define, so a new RPC
/// cannot ship without a row (and a decision) here.
#[test]
fn the_rpc_list_is_complete() {
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(customer_service::proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut defined: Vec<String> = set
        .file
        .iter()
        .filter(|f| f.package() == "customers.v1")
        .flat_map(|f| {
            f.service.iter().flat_map(|s| {
                s.method
                    .iter()
                    .map(move |m| format!("/customers.v1.{}/{}", s.name(), m.name()))
            })
        })
        .collect();
    defined.sort();
    let mut listed: Vec<String> = RPCS.iter().map(|(p, _)| p.to_string()).collect();
    listed.sort();
    assert_eq!(defined, listed);
}
const PERMISSIONS: &[&str] = &["read", "write", "delete", "import", "intake", "hub", "admin"];

pub(crate) fn tokens_file(entries: &[(&str, &str, &[&str])]) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    for (name, token, permissions) in entries {
        let list: Vec<String> = permissions.iter().map(|p| format!("{p:?}")).collect();
        writeln!(
            file,
            "[[principals]]\nname = {name:?}\ntoken_sha256 = \"{}\"\npermissions = [{}]\n",
            hex(&sha256(token)),
            list.join(", ")
        )
        .unwrap();
    }
    file.flush().unwrap();
    file
}

/// Calls any RPC with an empty message (every request type decodes from
/// it); streaming RPCs get one empty message. Returns the status code.
async fn call(channel: Channel, path: &'static str, token: Option<&str>) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = PathAndQuery::from_static(path);
    let codec = ProstCodec::<(), ()>::default();
    fn with_token<T>(mut req: Request<T>, token: Option<&str>) -> Request<T> {
        if let Some(t) = token {
            req.metadata_mut()
                .insert("authorization", MetadataValue::try_from(format!("Bearer {t}")).unwrap());
        }
        req
    }
    let result = if path.path().ends_with("/ImportCustomers") {
        grpc.client_streaming(
            with_token(Request::new(tokio_stream::iter(vec![()])), token),
            path,
            codec,
        )
        .await
        .map(|_| ())
    } else if path.path().ends_with("/ExportCustomers") {
        grpc.server_streaming(with_token(Request::new(()), token), path, codec)
            .await
            .map(|_| ())
    } else {
        grpc.unary(with_token(Request::new(()), token), path, codec)
            .await
            .map(|_| ())
    };
    result.err().map_or(Code::Ok, |s| s.code())
}

#[tokio::test]
async fn every_rpc_checks_token_and_permission() {
    let mut entries: Vec<(String, String, Vec<&str>)> = PERMISSIONS
        .iter()
        .map(|p| (format!("only-{p}"), format!("cs_token_{p}"), vec![*p]))
        .collect();
    entries.push(("nothing".into(), "cs_token_none".into(), vec![]));
    entries.push((
        "write-delete".into(),
        "cs_token_write_delete".into(),
        vec!["write", "delete"],
    ));
    let borrowed: Vec<(&str, &str, &[&str])> = entries
        .iter()
        .map(|(n, t, p)| (n.as_str(), t.as_str(), p.as_slice()))
        .collect();
    let file = tokens_file(&borrowed);
    let app = spawn_with_tokens(file.path().to_path_buf()).await;
    let channel = Channel::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();

    for (path, needed) in RPCS {
        assert_eq!(
            call(channel.clone(), path, None).await,
            Code::Unauthenticated,
            "{path} without a token"
        );
        assert_eq!(
            call(channel.clone(), path, Some("cs_forged")).await,
            Code::Unauthenticated,
            "{path} with a bad token"
        );
        assert_eq!(
            call(channel.clone(), path, Some("cs_token_none")).await,
            Code::PermissionDenied,
            "{path} with no permissions"
        );
        let needed: Vec<&str> = needed.split('+').collect();
        for permission in PERMISSIONS {
            let code = call(channel.clone(), path, Some(&format!("cs_token_{permission}"))).await;
            let should_pass = needed == [*permission] || *permission == "admin";
            assert_eq!(
                !matches!(code, Code::Unauthenticated | Code::PermissionDenied),
                should_pass,
                "{path} with {permission}: {code:?}"
            );
        }
        let code = call(channel.clone(), path, Some("cs_token_write_delete")).await;
        assert_eq!(
            !matches!(code, Code::Unauthenticated | Code::PermissionDenied),
            needed.iter().all(|p| ["write", "delete"].contains(p)),
            "{path} with write and delete: {code:?}"
        );
    }

    // Health and reflection stay open.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    health
        .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
        .await
        .unwrap();

    // PERMISSION_DENIED names the principal and the permission.
    let mut client = customer_service::proto::v1::customer_service_client::CustomerServiceClient::new(channel);
    let mut req = Request::new(customer_service::proto::v1::GetCustomerRequest { id: "x".into() });
    req.metadata_mut()
        .insert("authorization", MetadataValue::from_static("Bearer cs_token_intake"));
    let denied = client.get_customer(req).await.unwrap_err();
    let (reason, meta) = crate::harness::error_info(&denied);
    assert_eq!(reason, "PERMISSION_DENIED");
    assert_eq!(
        (meta["principal"].as_str(), meta["permission"].as_str()),
        ("only-intake", "read")
    );
}

#[test]
fn open_mode_is_refused_on_a_non_loopback_address() {
    let out = Command::new(env!("CARGO_BIN_EXE_customer-service"))
        .args(["serve", "--listen", "0.0.0.0:0", "--database-url", "sqlite::memory:"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("refusing to serve") && text.contains("--tokens-file"),
        "{text}"
    );
}

#[test]
fn token_new_prints_a_working_block() {
    let out = Command::new(env!("CARGO_BIN_EXE_customer-service"))
        .args(["token", "new", "--name", "reporting", "--permissions", "read,hub"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let token = text
        .lines()
        .find_map(|l| l.strip_prefix("# token: "))
        .unwrap()
        .trim()
        .to_owned();
    let principals = customer_service::domain::auth::Principals::parse(&text).unwrap();
    let p = principals.authenticate(&token).unwrap();
    assert_eq!(p.name, "reporting");
    assert_eq!(p.permissions.len(), 2);
    let bad = Command::new(env!("CARGO_BIN_EXE_customer-service"))
        .args(["token", "new", "--name", "x", "--permissions", "root"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

#[tokio::test]
async fn sighup_reloads_the_tokens_file_and_a_broken_file_keeps_the_old_one() {
    let db = TestDb::new().await;
    let file = tokens_file(&[("old", "cs_old", &["read"])]);
    let path = file.path().to_str().unwrap().to_owned();
    let (mut child, addr) = start_binary(&db.url, &["--tokens-file", &path]);
    let channel = Channel::from_shared(format!("http://{addr}")).unwrap().connect_lazy();
    const LIST: &str = "/customers.v1.CustomerService/ListCustomers";
    let wait_for = |token: &'static str, want: Code| {
        let channel = channel.clone();
        async move {
            for _ in 0..200 {
                if call(channel.clone(), LIST, Some(token)).await == want {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            false
        }
    };
    assert!(wait_for("cs_old", Code::Ok).await, "old token works");

    std::fs::write(
        &path,
        std::fs::read_to_string(tokens_file(&[("new", "cs_new", &["read"])]).path()).unwrap(),
    )
    .unwrap();
    let hup = |pid: u32| Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap();
    assert!(hup(child.id()).success());
    assert!(wait_for("cs_new", Code::Ok).await, "new token works after SIGHUP");
    assert_eq!(
        call(channel.clone(), LIST, Some("cs_old")).await,
        Code::Unauthenticated,
        "old token revoked"
    );

    std::fs::write(&path, "this is [ not toml").unwrap();
    assert!(hup(child.id()).success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        call(channel.clone(), LIST, Some("cs_new")).await,
        Code::Ok,
        "a broken file keeps the previous principals"
    );

    child.kill().ok();
    child.wait().ok();
}
