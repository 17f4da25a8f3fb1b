//! TLS and mTLS with certificates the test makes (rcgen): the real binary,
//! real tonic clients.

use std::time::Duration;

use customer_service::proto::v1::{self as pb, customer_service_client::CustomerServiceClient};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

use crate::{
    harness::{TestDb, customer},
    lifecycle::start_binary,
};

/// A CA, a server certificate for `localhost` and a client certificate, as
/// PEM files in a temporary folder.
struct Pki {
    dir: tempfile::TempDir,
    ca: String,
    client: (String, String),
    stranger: (String, String),
    /// Signed by the CA, but no tokens-file entry names its subject.
    unlisted: (String, String),
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = authority("customer-service test CA");
        let other_ca = authority("someone else's CA");
        let (server_cert, server_key) = leaf(&ca.1, "localhost", ExtendedKeyUsagePurpose::ServerAuth);
        std::fs::write(dir.path().join("server.pem"), server_cert).unwrap();
        std::fs::write(dir.path().join("server.key"), server_key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), &ca.0).unwrap();
        Self {
            dir,
            client: leaf(&ca.1, "reporting-job", ExtendedKeyUsagePurpose::ClientAuth),
            stranger: leaf(&other_ca.1, "reporting-job", ExtendedKeyUsagePurpose::ClientAuth),
            unlisted: leaf(&ca.1, "unlisted-job", ExtendedKeyUsagePurpose::ClientAuth),
            ca: ca.0,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }

    /// The binary serving TLS with the server certificate; with `mtls`, also
    /// requiring client certificates from the CA.
    fn start(&self, db: &TestDb, mtls: bool) -> (std::process::Child, String) {
        self.start_with(db, mtls, &[])
    }

    fn start_with(&self, db: &TestDb, mtls: bool, extra: &[String]) -> (std::process::Child, String) {
        let mut args = vec![
            "--tls-cert".to_owned(),
            self.path("server.pem"),
            "--tls-key".to_owned(),
            self.path("server.key"),
        ];
        if mtls {
            args.extend(["--tls-client-ca".to_owned(), self.path("ca.pem")]);
        }
        args.extend_from_slice(extra);
        start_binary(&db.url, &args.iter().map(String::as_str).collect::<Vec<_>>())
    }
}

fn authority(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

fn leaf(issuer: &Issuer<'static, KeyPair>, name: &str, usage: ExtendedKeyUsagePurpose) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A TLS channel trusting the test CA, with a client certificate if given.
async fn tls_channel(addr: &str, ca: &str, identity: Option<&(String, String)>) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

/// Whether a health check over `channel` says SERVING (waiting for start-up).
async fn serves(channel: Channel) -> bool {
    let mut health = HealthClient::new(channel);
    for _ in 0..100 {
        match health.check(HealthCheckRequest { service: String::new() }).await {
            Ok(r) if r.get_ref().status == ServingStatus::Serving as i32 => return true,
            Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(_) => return false,
        }
    }
    false
}

#[tokio::test]
async fn tls_serves_encrypted_and_refuses_plaintext() {
    let pki = Pki::new();
    let db = TestDb::new().await;
    let (mut child, addr) = pki.start(&db, false);
    let channel = tls_channel(&addr, &pki.ca, None).await.expect("TLS connect");
    assert!(serves(channel.clone()).await, "SERVING over TLS");
    let created = CustomerServiceClient::new(channel)
        .create_customer(pb::CreateCustomerRequest {
            customer: Some(customer("Tls", "tls@example.com", "")),
            request_id: String::new(),
        })
        .await
        .expect("create over TLS")
        .into_inner();
    assert_eq!(created.email, "tls@example.com");

    let plain = Channel::from_shared(format!("http://{addr}")).unwrap().connect_lazy();
    assert!(!serves(plain).await, "plaintext gRPC is not served");
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn mtls_admits_only_clients_with_a_certificate_from_the_ca() {
    let pki = Pki::new();
    let db = TestDb::new().await;
    let (mut child, addr) = pki.start(&db, true);
    let admitted = tls_channel(&addr, &pki.ca, Some(&pki.client))
        .await
        .expect("mTLS connect");
    assert!(
        serves(admitted).await,
        "a client with a CA-signed certificate is served"
    );

    for identity in [None, Some(&pki.stranger)] {
        let refused = match tls_channel(&addr, &pki.ca, identity).await {
            Err(_) => true,
            Ok(channel) => !serves(channel).await,
        };
        assert!(
            refused,
            "a client {} is refused",
            if identity.is_some() {
                "with a foreign certificate"
            } else {
                "without a certificate"
            }
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn a_client_certificate_subject_stands_for_a_principal() {
    use std::io::Write;
    use tonic::{Code, Request, metadata::MetadataValue};

    let pki = Pki::new();
    let mut tokens = tempfile::NamedTempFile::new().unwrap();
    write!(
        tokens,
        "[[principals]]\nname = \"reporting-job\"\nclient_cert_subject = \"CN=reporting-job\"\n\
         permissions = [\"read\", \"write\"]\n\n\
         [[principals]]\nname = \"ticketing\"\ntoken_sha256 = \"{}\"\npermissions = [\"intake\"]\n",
        customer_service::domain::auth::hex(&customer_service::domain::auth::sha256("cs_intake"))
    )
    .unwrap();
    let db = TestDb::new().await;
    let (mut child, addr) = pki.start_with(
        &db,
        true,
        &["--tokens-file".to_owned(), tokens.path().to_string_lossy().into_owned()],
    );

    // The certificate alone authenticates, with its principal's permissions.
    let channel = tls_channel(&addr, &pki.ca, Some(&pki.client))
        .await
        .expect("mTLS connect");
    assert!(serves(channel.clone()).await);
    let mut client = CustomerServiceClient::new(channel.clone());
    let created = client
        .create_customer(pb::CreateCustomerRequest {
            customer: Some(customer("Cert", "cert@example.com", "")),
            request_id: String::new(),
        })
        .await
        .expect("create as the certificate's principal")
        .into_inner();
    let history = client
        .list_customer_history(pb::ListCustomerHistoryRequest {
            customer_id: created.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(history[0].principal, "reporting-job");
    let denied = client
        .delete_customer(pb::DeleteCustomerRequest {
            id: created.id.clone(),
            etag: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    // A bearer token, when sent, decides over the certificate.
    let mut request = Request::new(pb::GetCustomerRequest { id: created.id.clone() });
    request
        .metadata_mut()
        .insert("authorization", MetadataValue::from_static("Bearer cs_intake"));
    let by_token = client.get_customer(request).await.unwrap_err();
    assert_eq!(by_token.code(), Code::PermissionDenied, "{by_token:?}");

    // A certificate from the CA whose subject no entry names is not enough.
    let unlisted = tls_channel(&addr, &pki.ca, Some(&pki.unlisted))
        .await
        .expect("mTLS connect");
    let refused = CustomerServiceClient::new(unlisted)
        .get_customer(pb::GetCustomerRequest { id: created.id })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(refused.message().contains("CN=unlisted-job"), "{}", refused.message());
    let _ = child.kill();
    let _ = child.wait();
}
