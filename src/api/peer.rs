//! The verified client certificate of an mTLS connection, as a subject
//! that the tokens file can name.

use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use crate::domain::auth::Subject;

/// The subject of the client certificate that rustls verified for this
/// request's connection; `None` without TLS or without a certificate.
pub fn client_subject(extensions: &http::Extensions) -> Option<Subject> {
    let info = extensions.get::<TlsConnectInfo<TcpConnectInfo>>()?;
    let certs = info.peer_certs()?;
    let leaf = certs.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let pairs: Vec<(String, String)> = cert
        .subject()
        .iter_attributes()
        .filter_map(|attr| {
            let value = attr.as_str().ok()?;
            let oid = attr.attr_type().to_id_string();
            let name = rfc4514_name(&oid).map_or(oid, str::to_owned);
            Some((name, value.to_owned()))
        })
        .collect();
    Some(Subject::from_pairs(pairs))
}

/// The short attribute names of RFC 4514 section 3; other attributes are
/// named by their dotted OID.
fn rfc4514_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        _ => return None,
    })
}
