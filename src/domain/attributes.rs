//! Custom attributes: a string map with trimmed, bounded keys and values.

use std::collections::BTreeMap;

use super::FieldViolation;

/// Longest attribute key, in characters.
pub const MAX_KEY_CHARS: usize = 64;
/// Longest attribute value, in characters.
pub const MAX_VALUE_CHARS: usize = 1024;
/// Most attributes one customer may carry.
pub const MAX_ATTRIBUTES: usize = 64;

/// Validated custom attributes, ordered by key.
pub type Attributes = BTreeMap<String, String>;

/// Trims keys and values and checks the limits. `field` prefixes the
/// violation paths (e.g. `customer.attributes`).
pub fn parse_attributes<'a>(
    raw: impl IntoIterator<Item = (&'a String, &'a String)>,
    field: &str,
) -> Result<Attributes, Vec<FieldViolation>> {
    let mut out = Attributes::new();
    let mut violations = Vec::new();
    for (key, value) in raw {
        let key = key.trim();
        let path = format!("{field}.{key}");
        if key.is_empty() {
            violations.push(FieldViolation::new(field, "attribute keys must not be empty"));
            continue;
        }
        if key.chars().count() > MAX_KEY_CHARS {
            violations.push(FieldViolation::new(
                path,
                format!("key is longer than {MAX_KEY_CHARS} characters"),
            ));
            continue;
        }
        let value = value.trim();
        if value.chars().count() > MAX_VALUE_CHARS {
            violations.push(FieldViolation::new(
                path,
                format!("value is longer than {MAX_VALUE_CHARS} characters"),
            ));
            continue;
        }
        out.insert(key.to_owned(), value.to_owned());
    }
    if out.len() > MAX_ATTRIBUTES {
        violations.push(FieldViolation::new(
            field,
            format!("at most {MAX_ATTRIBUTES} attributes are allowed"),
        ));
    }
    if violations.is_empty() {
        Ok(out)
    } else {
        Err(violations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_bounds() {
        let raw: BTreeMap<String, String> =
            [(" role ".into(), " Admin ".into()), ("department".into(), "IT".into())].into();
        let parsed = parse_attributes(&raw, "customer.attributes").unwrap();
        assert_eq!(parsed.get("role").map(String::as_str), Some("Admin"));

        let bad: BTreeMap<String, String> = [("  ".into(), "x".into()), ("k".into(), "v".repeat(2000))].into();
        let errs = parse_attributes(&bad, "customer.attributes").unwrap_err();
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[1].field, "customer.attributes.k");
    }
}
