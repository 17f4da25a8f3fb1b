//! Mobile numbers: parsed with libphonenumber's rules, stored and matched in E.164.

use std::{
    fmt,
    hash::{Hash, Hasher},
    str::FromStr,
    sync::LazyLock,
};

use phonenumber::{Mode, country};
use quick_cache::{Equivalent, sync::Cache};

/// A region for national numbers (ISO 3166-1 alpha-2, e.g. `GB`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Region(country::Id);

impl Region {
    /// Parses a two-letter region code, case-insensitively.
    pub fn parse(code: &str) -> Option<Self> {
        country::Id::from_str(&code.trim().to_ascii_uppercase()).ok().map(Self)
    }
}

impl Default for Region {
    fn default() -> Self {
        Self(country::Id::GB)
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_ref())
    }
}

/// A valid phone number in E.164 form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mobile {
    original: String,
    e164: String,
}

/// Why a phone number was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MobileError {
    #[error("is not a phone number")]
    Unparseable,
    #[error("is not a valid phone number for its country")]
    Invalid,
}

/// Recent answers of [`Mobile::parse`], by region and trimmed input.
/// libphonenumber's validation runs a dozen regexes: ~18 µs a number on a
/// 2-core VM, where a ticket's whole intake costs ~90 µs of CPU; requesters
/// come back, so most numbers have been seen before.
static PARSED: LazyLock<Cache<(Region, String), Result<String, MobileError>>> =
    LazyLock::new(|| Cache::new(PARSE_CACHE));

/// Entries of the parse cache (~100 bytes each).
const PARSE_CACHE: usize = 16_384;

/// A borrowed `(Region, String)` key: hashes as the tuple does.
struct Key<'a>(Region, &'a str);

impl Hash for Key<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
        self.1.hash(state);
    }
}

impl Equivalent<(Region, String)> for Key<'_> {
    fn equivalent(&self, key: &(Region, String)) -> bool {
        self.0 == key.0 && self.1 == key.1
    }
}

impl Mobile {
    /// Parses `raw`; a number without `+country` prefix is read in `region`.
    pub fn parse(raw: &str, region: Region) -> Result<Self, MobileError> {
        let original = raw.trim();
        if original.is_empty() || original.len() > 64 {
            return Err(MobileError::Unparseable);
        }
        let e164 = match PARSED.get(&Key(region, original)) {
            Some(parsed) => parsed?,
            None => {
                let parsed = e164(original, region);
                PARSED.insert((region, original.to_owned()), parsed.clone());
                parsed?
            }
        };
        Ok(Self {
            original: original.to_owned(),
            e164,
        })
    }

    /// A number read back from storage (E.164), where only parsed ones are written.
    pub fn from_stored(e164: &str) -> Self {
        Self {
            original: e164.to_owned(),
            e164: e164.to_owned(),
        }
    }

    /// The number as given, trimmed.
    pub fn original(&self) -> &str {
        &self.original
    }

    /// The E.164 form: the matching key and what the API shows.
    pub fn e164(&self) -> &str {
        &self.e164
    }
}

/// libphonenumber's reading of `number`, in E.164.
fn e164(number: &str, region: Region) -> Result<String, MobileError> {
    let number = phonenumber::parse(Some(region.0), number).map_err(|_| MobileError::Unparseable)?;
    if !phonenumber::is_valid(&number) {
        return Err(MobileError::Invalid);
    }
    Ok(number.format().mode(Mode::E164).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn national_and_international_forms_agree() {
        let gb = Region::parse("gb").unwrap();
        let a = Mobile::parse("07911 123456", gb).unwrap();
        let b = Mobile::parse("+44 7911-123 456", Region::parse("US").unwrap()).unwrap();
        assert_eq!(a.e164(), "+447911123456");
        assert_eq!(a.e164(), b.e164());
        assert_eq!(a.original(), "07911 123456");
    }

    #[test]
    fn rejects_garbage_and_invalid_numbers() {
        let gb = Region::default();
        assert_eq!(Mobile::parse("not a number", gb), Err(MobileError::Unparseable));
        assert!(Mobile::parse("+44 7700 900123", gb).is_err());
        assert!(Mobile::parse("123", gb).is_err());
    }

    #[test]
    fn cached_answers_are_the_parsers() {
        let gb = Region::default();
        let us = Region::parse("US").unwrap();
        for _ in 0..2 {
            assert_eq!(Mobile::parse(" 07911 123456 ", gb).unwrap().e164(), "+447911123456");
            assert_eq!(Mobile::parse("07911 123456", gb).unwrap().original(), "07911 123456");
            // The same text in another region is another number.
            assert_eq!(Mobile::parse("(201) 555-0123", us).unwrap().e164(), "+12015550123");
            assert_eq!(Mobile::parse("(201) 555-0123", gb).unwrap().e164(), "+442015550123");
            assert_eq!(Mobile::parse("+44 7700 900123", gb), Err(MobileError::Invalid));
            assert_eq!(Mobile::parse("not a number", gb), Err(MobileError::Unparseable));
        }
    }

    #[test]
    fn region_codes() {
        assert_eq!(Region::parse(" de ").unwrap().to_string(), "DE");
        assert!(Region::parse("XX").is_none());
    }
}
