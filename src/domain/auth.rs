//! Callers and permissions: principals from a tokens file, each with a set
//! of permissions; which permission each RPC needs.

use std::{collections::BTreeSet, fmt, path::Path, str::FromStr};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a principal may do. `Admin` implies every other permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    Read,
    Write,
    Delete,
    Import,
    Intake,
    Hub,
    Admin,
}

impl Permission {
    /// The spelling in tokens files and error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Delete => "delete",
            Permission::Import => "import",
            Permission::Intake => "intake",
            Permission::Hub => "hub",
            Permission::Admin => "admin",
        }
    }
}

impl FromStr for Permission {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.trim() {
            "read" => Permission::Read,
            "write" => Permission::Write,
            "delete" => Permission::Delete,
            "import" => Permission::Import,
            "intake" => Permission::Intake,
            "hub" => Permission::Hub,
            "admin" => Permission::Admin,
            other => {
                return Err(format!(
                    "unknown permission {other:?}; use read, write, delete, import, intake, hub or admin"
                ));
            }
        })
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub permissions: BTreeSet<Permission>,
}

impl Principal {
    /// The caller of a service running without a tokens file.
    pub fn anonymous() -> Self {
        Self {
            name: "anonymous".into(),
            permissions: [Permission::Admin].into(),
        }
    }

    /// Whether this principal holds `permission` (admin holds all).
    pub fn allows(&self, permission: Permission) -> bool {
        self.permissions.contains(&Permission::Admin) || self.permissions.contains(&permission)
    }
}

/// What an RPC requires, by its HTTP/2 path (`/package.Service/Method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Health and reflection: no token needed.
    Open,
    /// Every one of these permissions.
    Needs(&'static [Permission]),
}

/// The one table of RPC permissions. Anything of ours it does not name
/// needs admin, so a new method is closed until someone decides.
pub fn requirement(path: &str) -> Requirement {
    use Permission::*;
    let Some((service, method)) = path.trim_start_matches('/').split_once('/') else {
        return Requirement::Needs(&[Admin]);
    };
    if service.starts_with("grpc.health.") || service.starts_with("grpc.reflection.") {
        return Requirement::Open;
    }
    Requirement::Needs(match (service, method) {
        ("customers.v1.CustomerService", "GetCustomer" | "ListCustomers" | "ExportCustomers" | "GetImportTemplate") => {
            &[Read]
        }
        ("customers.v1.CustomerService", "ListCustomerHistory") => &[Read],
        ("customers.v1.CustomerService", "CreateCustomer" | "UpdateCustomer" | "UndeleteCustomer") => &[Write],
        ("customers.v1.CustomerService", "DeleteCustomer") => &[Delete],
        // It changes one customer and removes another.
        ("customers.v1.CustomerService", "MergeCustomers") => &[Write, Delete],
        ("customers.v1.CustomerService", "ImportCustomers") => &[Import],
        ("customers.v1.TicketIntakeService", "ResolveTicketCustomer") => &[Intake],
        ("customers.v1.HubAccessService", "CheckHubLogin" | "GetHubSettings") => &[Hub],
        ("customers.v1.HubAccessService", "UpdateHubSettings" | "ListHubSettingsHistory") => &[Admin],
        (
            "customers.v1.OrganizationService",
            "GetOrganization"
            | "ListOrganizations"
            | "ListMembers"
            | "ListCustomerOrganizations"
            | "ListOrganizationHistory",
        ) => &[Read],
        (
            "customers.v1.OrganizationService",
            "CreateOrganization" | "UpdateOrganization" | "UndeleteOrganization" | "AddMember" | "RemoveMember",
        ) => &[Write],
        ("customers.v1.OrganizationService", "DeleteOrganization") => &[Delete],
        ("customers.v1.OrganizationService", "CheckTicketAccess") => &[Hub],
        _ => &[Admin],
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    principals: Vec<PrincipalEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalEntry {
    name: String,
    #[serde(default)]
    token_sha256: Option<String>,
    /// Under mTLS: the client certificate subject that stands for this principal.
    #[serde(default)]
    client_cert_subject: Option<String>,
    permissions: Vec<String>,
}

/// A certificate subject as a set of (attribute, value) pairs, e.g.
/// `CN=reporting-job, O=Example`: attribute names are compared without
/// regard to case, values exactly, and the order does not matter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject(BTreeSet<(String, String)>);

impl Subject {
    /// A subject from (attribute short name, value) pairs.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.as_ref().trim().to_ascii_uppercase(), v.as_ref().trim().to_owned()))
                .collect(),
        )
    }
}

impl FromStr for Subject {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut pairs = Vec::new();
        for part in s.split(',') {
            let (key, value) = part
                .split_once('=')
                .filter(|(k, v)| !k.trim().is_empty() && !v.trim().is_empty())
                .ok_or_else(|| format!("{part:?} is not ATTRIBUTE=value (e.g. CN=reporting-job)"))?;
            pairs.push((key, value));
        }
        Ok(Self::from_pairs(pairs))
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        f.write_str(&parts.join(", "))
    }
}

/// The principals of a tokens file: by the SHA-256 of their tokens and by
/// client certificate subject.
#[derive(Debug, Clone, Default)]
pub struct Principals {
    entries: Vec<([u8; 32], Principal)>,
    subjects: Vec<(Subject, Principal)>,
}

impl Principals {
    /// Reads and validates a tokens file (TOML, see API.md).
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses tokens-file text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: TokensFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut entries = Vec::new();
        let mut subjects = Vec::new();
        for (i, p) in file.principals.into_iter().enumerate() {
            let at = format!("principals[{i}] ({:?})", p.name);
            if p.name.trim().is_empty() {
                return Err(format!("{at}: name is empty"));
            }
            if p.token_sha256.is_none() && p.client_cert_subject.is_none() {
                return Err(format!("{at}: needs token_sha256, client_cert_subject or both"));
            }
            let hash = p
                .token_sha256
                .as_deref()
                .map(|h| parse_hex32(h).ok_or_else(|| format!("{at}: token_sha256 must be 64 hex digits")))
                .transpose()?;
            if let Some(hash) = hash
                && entries.iter().any(|(h, _): &([u8; 32], Principal)| *h == hash)
            {
                return Err(format!("{at}: the same token is listed twice"));
            }
            let subject = p
                .client_cert_subject
                .as_deref()
                .map(|s| {
                    s.parse::<Subject>()
                        .map_err(|e| format!("{at}: client_cert_subject: {e}"))
                })
                .transpose()?;
            if let Some(subject) = &subject
                && subjects.iter().any(|(s, _): &(Subject, Principal)| s == subject)
            {
                return Err(format!("{at}: the same client_cert_subject is listed twice"));
            }
            let permissions = p
                .permissions
                .iter()
                .map(|s| s.parse())
                .collect::<Result<BTreeSet<Permission>, _>>()
                .map_err(|e| format!("{at}: {e}"))?;
            let principal = Principal {
                name: p.name,
                permissions,
            };
            if let Some(subject) = subject {
                subjects.push((subject, principal.clone()));
            }
            if let Some(hash) = hash {
                entries.push((hash, principal));
            }
        }
        Ok(Self { entries, subjects })
    }

    /// How many ways in (tokens and certificate subjects) there are.
    pub fn len(&self) -> usize {
        self.entries.len() + self.subjects.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The principal a verified client certificate's subject stands for.
    pub fn by_subject(&self, subject: &Subject) -> Option<&Principal> {
        self.subjects.iter().find(|(s, _)| s == subject).map(|(_, p)| p)
    }

    /// The principal whose token this is. Every entry is compared in
    /// constant time, so timing says nothing about near misses.
    pub fn authenticate(&self, token: &str) -> Option<&Principal> {
        let digest = sha256(token);
        let mut found = None;
        for (hash, principal) in &self.entries {
            if bool::from(hash.ct_eq(&digest)) {
                found = Some(principal);
            }
        }
        found
    }
}

/// SHA-256 of a token.
pub fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// A fresh random token (256 bits, base64url) with the `cs_` prefix.
pub fn new_token() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
    Ok(format!("cs_{}", URL_SAFE_NO_PAD.encode(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_covers_every_method_with_the_least_permission() {
        assert_eq!(requirement("/grpc.health.v1.Health/Check"), Requirement::Open);
        assert_eq!(
            requirement("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"),
            Requirement::Open
        );
        assert_eq!(
            requirement("/customers.v1.CustomerService/GetCustomer"),
            Requirement::Needs(&[Permission::Read])
        );
        assert_eq!(
            requirement("/customers.v1.CustomerService/DeleteCustomer"),
            Requirement::Needs(&[Permission::Delete])
        );
        assert_eq!(
            requirement("/customers.v1.CustomerService/MergeCustomers"),
            Requirement::Needs(&[Permission::Write, Permission::Delete])
        );
        assert_eq!(
            requirement("/customers.v1.TicketIntakeService/ResolveTicketCustomer"),
            Requirement::Needs(&[Permission::Intake])
        );
        assert_eq!(
            requirement("/customers.v1.CustomerService/SomethingNew"),
            Requirement::Needs(&[Permission::Admin])
        );
        assert_eq!(requirement("garbage"), Requirement::Needs(&[Permission::Admin]));
    }

    #[test]
    fn parses_and_authenticates() {
        let token = "cs_secret";
        let text = format!(
            "[[principals]]\nname = \"ticketing\"\ntoken_sha256 = \"{}\"\npermissions = [\"intake\"]\n",
            hex(&sha256(token))
        );
        let principals = Principals::parse(&text).unwrap();
        let p = principals.authenticate(token).unwrap();
        assert_eq!(p.name, "ticketing");
        assert!(p.allows(Permission::Intake) && !p.allows(Permission::Read));
        assert!(principals.authenticate("cs_wrong").is_none());
        assert!(Principal::anonymous().allows(Permission::Delete));
    }

    #[test]
    fn certificate_subjects_match_as_sets() {
        let text = "[[principals]]\nname = \"reports\"\nclient_cert_subject = \"CN=reporting-job, O=Example\"\n\
                    permissions = [\"read\"]\n";
        let principals = Principals::parse(text).unwrap();
        let same = Subject::from_pairs([("o", "Example"), ("CN", "reporting-job")]);
        assert_eq!(principals.by_subject(&same).unwrap().name, "reports");
        for other in [
            Subject::from_pairs([("CN", "reporting-job")]),
            Subject::from_pairs([("CN", "reporting-job"), ("O", "Example"), ("OU", "x")]),
            Subject::from_pairs([("CN", "Reporting-job"), ("O", "Example")]),
        ] {
            assert!(principals.by_subject(&other).is_none(), "{other}");
        }
    }

    #[test]
    fn rejects_bad_files() {
        for bad in [
            "[[principals]]\nname = \"x\"\ntoken_sha256 = \"abc\"\npermissions = []\n",
            "[[principals]]\nname = \"x\"\ntoken_sha256 = \"00000000000000000000000000000000000000000000000000000000000000zz\"\npermissions = []\n",
            &format!(
                "[[principals]]\nname = \"x\"\ntoken_sha256 = \"{}\"\npermissions = [\"root\"]\n",
                hex(&sha256("t"))
            ),
            "not toml [",
            "[[principals]]\nname = \"x\"\ntoken = \"plaintext\"\npermissions = []\n",
            "[[principals]]\nname = \"x\"\npermissions = []\n",
            "[[principals]]\nname = \"x\"\nclient_cert_subject = \"reporting\"\npermissions = []\n",
        ] {
            assert!(Principals::parse(bad).is_err(), "{bad}");
        }
        let t = new_token().unwrap();
        assert!(t.starts_with("cs_") && t.len() > 40);
    }
}
