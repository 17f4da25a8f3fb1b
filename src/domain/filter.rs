//! The `filter` of ListCustomers / ExportCustomers: a small AIP-160 subset.
//!
//! `term (AND term)*`, where a term is `field = value` or `field : value`
//! and a value is a bare word or a double-quoted string (`\"` and `\\`
//! escape). Fields: `email`, `mobile`, `name` (`:` = substring),
//! `attributes.KEY`, `source`, `hub_access_enabled`, `state`,
//! `merged_into_id` (which implies deleted customers).

use super::{
    Error,
    customer::{Source, State},
    email::Email,
    mobile::{Mobile, Region},
};

/// A parsed filter; every condition must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CustomerFilter {
    /// Normalised email.
    pub email: Option<String>,
    /// E.164 mobile.
    pub mobile: Option<String>,
    /// Lower-case substring of the name.
    pub name_contains: Option<String>,
    /// Exact attribute values.
    pub attributes: Vec<(String, String)>,
    pub source: Option<Source>,
    pub hub_access_enabled: Option<bool>,
    pub state: Option<State>,
    /// Customers merged into this one (all deleted).
    pub merged_into: Option<String>,
}

const FIELD: &str = "filter";

impl CustomerFilter {
    /// Parses `text`; empty means no condition.
    pub fn parse(text: &str, region: Region) -> Result<Self, Error> {
        let mut filter = Self::default();
        let mut lexer = Lexer { rest: text.trim() };
        if lexer.rest.is_empty() {
            return Ok(filter);
        }
        loop {
            let field = lexer.ident()?;
            let op = lexer.op()?;
            let value = lexer.value()?;
            filter.add(&field, op, value, region)?;
            if lexer.at_end() {
                return Ok(filter);
            }
            lexer.keyword("AND")?;
        }
    }

    fn add(&mut self, field: &str, op: char, value: String, region: Region) -> Result<(), Error> {
        let bad = |msg: String| Error::invalid(FIELD, msg);
        let want_eq = |what: &str| {
            if op == '=' {
                Ok(())
            } else {
                Err(bad(format!("use `{what} = ...`")))
            }
        };
        match field {
            "email" => {
                want_eq("email")?;
                let email = Email::parse(&value).map_err(|e| bad(format!("email {value:?} {e}")))?;
                self.email = Some(email.normalised().to_owned());
            }
            "mobile" => {
                want_eq("mobile")?;
                let mobile = Mobile::parse(&value, region).map_err(|e| bad(format!("mobile {value:?} {e}")))?;
                self.mobile = Some(mobile.e164().to_owned());
            }
            "name" => self.name_contains = Some(value.to_lowercase()),
            "source" => {
                want_eq("source")?;
                self.source = Some(Source::parse(&value).ok_or_else(|| bad(format!("unknown source {value:?}")))?);
            }
            "state" => {
                want_eq("state")?;
                self.state = Some(State::parse(&value).ok_or_else(|| bad(format!("unknown state {value:?}")))?);
            }
            "merged_into_id" => {
                want_eq("merged_into_id")?;
                if value.trim().is_empty() {
                    return Err(bad("merged_into_id needs a customer id".into()));
                }
                self.merged_into = Some(value);
            }
            "hub_access_enabled" => {
                want_eq("hub_access_enabled")?;
                self.hub_access_enabled = Some(match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad(format!("hub_access_enabled takes true or false, not {value:?}"))),
                });
            }
            other => match other.strip_prefix("attributes.") {
                Some(key) if !key.is_empty() => {
                    want_eq(other)?;
                    self.attributes.push((key.to_owned(), value));
                }
                _ => {
                    return Err(bad(format!(
                        "unknown field {other:?}; filter on email, mobile, name, attributes.KEY, source, hub_access_enabled, state or \
                         merged_into_id"
                    )));
                }
            },
        }
        Ok(())
    }
}

struct Lexer<'a> {
    rest: &'a str,
}

impl Lexer<'_> {
    fn skip_ws(&mut self) {
        self.rest = self.rest.trim_start();
    }

    fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.rest.is_empty()
    }

    fn ident(&mut self) -> Result<String, Error> {
        self.skip_ws();
        let end = self
            .rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.' || c == '-'))
            .unwrap_or(self.rest.len());
        if end == 0 {
            return Err(Error::invalid(
                FIELD,
                format!("expected a field name at {:?}", self.rest),
            ));
        }
        let (ident, rest) = self.rest.split_at(end);
        self.rest = rest;
        Ok(ident.to_owned())
    }

    fn op(&mut self) -> Result<char, Error> {
        self.skip_ws();
        match self.rest.chars().next() {
            Some(c @ ('=' | ':')) => {
                self.rest = &self.rest[1..];
                Ok(c)
            }
            _ => Err(Error::invalid(FIELD, format!("expected `=` or `:` at {:?}", self.rest))),
        }
    }

    fn value(&mut self) -> Result<String, Error> {
        self.skip_ws();
        let Some(quoted) = self.rest.strip_prefix('"') else {
            let end = self.rest.find(char::is_whitespace).unwrap_or(self.rest.len());
            if end == 0 {
                return Err(Error::invalid(FIELD, "expected a value"));
            }
            let (value, rest) = self.rest.split_at(end);
            self.rest = rest;
            return Ok(value.to_owned());
        };
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.rest = &quoted[i + 1..];
                    return Ok(value);
                }
                '\\' => match chars.next() {
                    Some((_, escaped)) => value.push(escaped),
                    None => break,
                },
                c => value.push(c),
            }
        }
        Err(Error::invalid(FIELD, "unterminated quoted value"))
    }

    fn keyword(&mut self, word: &str) -> Result<(), Error> {
        self.skip_ws();
        match self.rest.strip_prefix(word) {
            Some(rest) if rest.starts_with(char::is_whitespace) => {
                self.rest = rest;
                Ok(())
            }
            _ => Err(Error::invalid(FIELD, format!("expected `{word}` at {:?}", self.rest))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<CustomerFilter, Error> {
        CustomerFilter::parse(s, Region::default())
    }

    #[test]
    fn parses_every_field() {
        let f = parse(
            r#"email = "Ada@Example.com" AND mobile="07911 123456" AND name:"LOVE" AND attributes.organization = "Acme \"UK\"" AND source = TICKET AND hub_access_enabled = false AND state = DELETED AND merged_into_id = "c-1""#,
        )
        .unwrap();
        assert_eq!(f.email.as_deref(), Some("ada@example.com"));
        assert_eq!(f.mobile.as_deref(), Some("+447911123456"));
        assert_eq!(f.name_contains.as_deref(), Some("love"));
        assert_eq!(
            f.attributes,
            vec![("organization".to_owned(), "Acme \"UK\"".to_owned())]
        );
        assert_eq!(f.source, Some(Source::Ticket));
        assert_eq!(f.hub_access_enabled, Some(false));
        assert_eq!(f.state, Some(State::Deleted));
        assert_eq!(f.merged_into.as_deref(), Some("c-1"));
        assert_eq!(parse("  ").unwrap(), CustomerFilter::default());
    }

    #[test]
    fn rejects_nonsense() {
        for bad in [
            "email",
            "email ~ x",
            "colour = red",
            "name:\"open",
            "a = b OR c = d",
            "email = nope",
            "source = FAX",
            "merged_into_id = \"\"",
        ] {
            assert!(matches!(parse(bad), Err(Error::InvalidArgument(_))), "{bad}");
        }
    }
}
