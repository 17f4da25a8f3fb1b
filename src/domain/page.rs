//! AIP-158 pagination: page sizes and opaque keyset page tokens.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};

use super::Error;

/// Page size when the caller sends 0.
pub const DEFAULT_PAGE_SIZE: u64 = 50;
/// Largest page served; bigger requests are clamped.
pub const MAX_PAGE_SIZE: u64 = 1000;

/// The effective page size for a requested one.
pub fn page_size(requested: i32) -> Result<u64, Error> {
    match requested {
        n if n < 0 => Err(Error::invalid("page_size", "must not be negative")),
        0 => Ok(DEFAULT_PAGE_SIZE),
        n => Ok((n as u64).min(MAX_PAGE_SIZE)),
    }
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: String,
}

/// The page of `items` (fetched with one extra to see whether more
/// follow): at most `limit` items, and the token for the next page, made
/// from the last item's `key`, when there is one.
pub fn paged<T>(mut items: Vec<T>, limit: u64, query: String, key: impl Fn(&T) -> String) -> Page<T> {
    let next_page_token = if items.len() as u64 > limit {
        items.truncate(limit as usize);
        items
            .last()
            .map(|last| {
                PageToken {
                    after: key(last),
                    query,
                }
                .encode()
            })
            .unwrap_or_default()
    } else {
        String::new()
    };
    Page { items, next_page_token }
}

/// What a page token remembers: where the last page ended, and the query it
/// belongs to, so a token is refused with a different filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageToken {
    /// Key of the last item served.
    #[serde(rename = "a")]
    pub after: String,
    /// A fingerprint of the query (filter and flags).
    #[serde(rename = "q")]
    pub query: String,
}

impl PageToken {
    /// The opaque string form.
    pub fn encode(&self) -> String {
        // Serialising two strings cannot fail.
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Decodes a token and checks it belongs to `query`. Empty = first page.
    pub fn decode(token: &str, query: &str) -> Result<Option<Self>, Error> {
        if token.is_empty() {
            return Ok(None);
        }
        let invalid = || Error::invalid("page_token", "is not a token this service issued");
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        let parsed: Self = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        if parsed.query != query {
            return Err(Error::invalid(
                "page_token",
                "was issued for a different filter or show_deleted; start again without a token",
            ));
        }
        Ok(Some(parsed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(page_size(0).unwrap(), 50);
        assert_eq!(page_size(5000).unwrap(), 1000);
        assert!(page_size(-1).is_err());
    }

    #[test]
    fn round_trip_and_query_binding() {
        let t = PageToken {
            after: "abc".into(),
            query: "q1".into(),
        };
        assert_eq!(PageToken::decode(&t.encode(), "q1").unwrap(), Some(t.clone()));
        assert!(PageToken::decode(&t.encode(), "q2").is_err());
        assert!(PageToken::decode("!!!", "q1").is_err());
        assert_eq!(PageToken::decode("", "q1").unwrap(), None);
    }
}
