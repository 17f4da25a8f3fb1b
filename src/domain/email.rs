//! Email addresses: trimmed as given, matched case-insensitively.

use std::fmt;

/// Longest address accepted (RFC 5321 path limit).
const MAX_LEN: usize = 254;

/// A syntactically valid email address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email {
    original: String,
    normalised: String,
}

/// Why an email address was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("is longer than {MAX_LEN} characters")]
    TooLong,
    #[error("must look like name@example.com")]
    Malformed,
}

impl Email {
    /// Parses a raw address. Surrounding white space is dropped; the
    /// normalised form (used for matching and uniqueness) is lower case.
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let original = raw.trim();
        if original.chars().count() > MAX_LEN {
            return Err(EmailError::TooLong);
        }
        let (local, domain) = original.rsplit_once('@').ok_or(EmailError::Malformed)?;
        let domain_ok = !domain.is_empty()
            && domain.len() <= 253
            && !domain.starts_with(['.', '-'])
            && !domain.ends_with(['.', '-'])
            && !domain.contains("..")
            && domain.contains('.')
            && domain.chars().all(|c| c.is_alphanumeric() || c == '.' || c == '-');
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.contains('@')
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .chars()
                .all(|c| !c.is_whitespace() && !c.is_control() && !"(),:;<>[\\]\"".contains(c));
        if !domain_ok || !local_ok {
            return Err(EmailError::Malformed);
        }
        Ok(Self {
            original: original.to_owned(),
            normalised: original.to_lowercase(),
        })
    }

    /// An address read back from storage, where only parsed ones are written.
    pub fn from_stored(original: &str) -> Self {
        Self {
            original: original.to_owned(),
            normalised: original.to_lowercase(),
        }
    }

    /// The address as given, trimmed.
    pub fn as_str(&self) -> &str {
        &self.original
    }

    /// The matching key: lower case.
    pub fn normalised(&self) -> &str {
        &self.normalised
    }

    /// The part after the `@`, lower case.
    pub fn domain(&self) -> &str {
        self.normalised.rsplit_once('@').map_or("", |(_, d)| d)
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_normalises_case() {
        let email = Email::parse("  Ada.Lovelace@Example.COM ").unwrap();
        assert_eq!(email.as_str(), "Ada.Lovelace@Example.COM");
        assert_eq!(email.normalised(), "ada.lovelace@example.com");
        assert_eq!(email.domain(), "example.com");
    }

    #[test]
    fn rejects_malformed() {
        for raw in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "a b@example.com",
            "ada@example",
            "ada@@x.com",
            "a..b@x.com",
        ] {
            assert_eq!(Email::parse(raw), Err(EmailError::Malformed), "{raw:?}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(Email::parse(&long), Err(EmailError::TooLong));
    }

    #[test]
    fn accepts_plus_and_unicode_domains() {
        assert!(Email::parse("ada+tickets@example.co.uk").is_ok());
        assert!(Email::parse("jose@exämple.de").is_ok());
    }
}
