//! From CSV records and structured rows to validated import records, with
//! per-row problems a person can act on.

use std::collections::HashMap;

use super::csv::Fields;
use crate::domain::{
    Error, FieldViolation,
    attributes::{Attributes, MAX_ATTRIBUTES, MAX_KEY_CHARS, MAX_VALUE_CHARS},
    email::{Email, EmailError},
    mobile::{Mobile, MobileError, Region},
    name::MAX_NAME_CHARS,
    spreadsheet,
};

/// Longest offending value quoted back in a problem, in characters.
const MAX_QUOTED_CHARS: usize = 100;

/// One problem with one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowProblem {
    /// 1-based number of the data record.
    pub row_number: u64,
    /// Column at fault; empty for the whole row.
    pub column: String,
    /// The offending value, truncated.
    pub value: String,
    pub message: String,
    /// Machine-readable, e.g. `INVALID_EMAIL`.
    pub reason: &'static str,
}

impl RowProblem {
    /// A problem of row `row_number`.
    pub fn new(row_number: u64, column: &str, value: &str, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            row_number,
            column: column.to_owned(),
            value: value.chars().take(MAX_QUOTED_CHARS).collect(),
            message: message.into(),
            reason,
        }
    }
}

/// A row that passed validation: only its non-empty cells are here.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportRecord {
    pub row_number: u64,
    pub name: Option<String>,
    pub email: Option<Email>,
    pub mobile: Option<Mobile>,
    /// Non-empty attribute cells, including organization, role, department.
    pub attributes: Attributes,
    pub hub_access: Option<bool>,
}

/// What one row turned into.
#[derive(Debug)]
pub enum Parsed {
    /// Every cell empty: not a row at all (spreadsheets pad files with these).
    Blank,
    Record(ImportRecord),
    Failed(Vec<RowProblem>),
}

/// Attributes with a column of their own in the template.
pub const TEMPLATE_ATTRIBUTES: [&str; 3] = ["organization", "role", "department"];

/// The CSV column an attribute key can travel in, if any: keys that a header
/// would read as something else (`Email`, `Organisation`) or that hold
/// control characters cannot.
pub fn attribute_column(key: &str) -> Option<&str> {
    let plain = !key.is_empty() && !key.chars().any(char::is_control) && key.trim() == key;
    (plain && target_of(key) == Target::Attribute(key.to_owned())).then_some(key)
}

/// Where a CSV column goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Target {
    Name,
    Email,
    Mobile,
    HubAccess,
    /// The CLI's error-report column: a fixed file imports without it.
    Ignored,
    Attribute(String),
}

/// The column the CLI's error report adds to failed rows.
pub const ERROR_COLUMN: &str = "import_error";

/// Column names with a meaning of their own, after trimming and lower-casing.
fn target_of(header: &str) -> Target {
    match header.to_lowercase().as_str() {
        "name" => Target::Name,
        "email" => Target::Email,
        "mobile" => Target::Mobile,
        "hub_access" => Target::HubAccess,
        ERROR_COLUMN => Target::Ignored,
        "organization" | "organisation" => Target::Attribute("organization".to_owned()),
        "role" => Target::Attribute("role".to_owned()),
        "department" => Target::Attribute("department".to_owned()),
        _ => Target::Attribute(header.to_owned()),
    }
}

/// The header row of a CSV import.
#[derive(Debug, Clone)]
pub struct Header {
    /// Column names as written (trimmed), for problems and error reports.
    names: Vec<String>,
    targets: Vec<Target>,
}

fn header_error(description: impl Into<String>) -> Error {
    Error::InvalidArgument(vec![FieldViolation::new("csv_chunk", description)])
}

impl Header {
    /// Checks the header row; a file whose first line cannot be a header is
    /// rejected as a whole.
    pub fn parse(fields: Fields<'_>) -> Result<Self, Error> {
        let mut names = Vec::with_capacity(fields.len());
        for raw in fields.iter() {
            let Ok(name) = std::str::from_utf8(raw) else {
                return Err(header_error(
                    "this does not look like a CSV file: the first line is not UTF-8 text \
                     (save spreadsheets as \"CSV UTF-8\")",
                ));
            };
            if name.chars().any(|c| c.is_control() && c != '\t') {
                return Err(header_error(
                    "this does not look like a CSV file: the first line holds control characters",
                ));
            }
            names.push(spreadsheet::unprotect(name.trim()).to_owned());
        }
        let mut targets = Vec::with_capacity(names.len());
        let mut seen: HashMap<Target, usize> = HashMap::new();
        for (i, name) in names.iter().enumerate() {
            if name.is_empty() {
                return Err(header_error(format!(
                    "column {} of the header row has no name; name it or delete the column",
                    i + 1
                )));
            }
            if name.chars().count() > MAX_KEY_CHARS {
                return Err(header_error(format!(
                    "column {} of the header row is longer than {MAX_KEY_CHARS} characters",
                    i + 1
                )));
            }
            let target = target_of(name);
            if let Some(first) = seen.insert(target.clone(), i) {
                return Err(header_error(format!(
                    "columns {} and {} of the header row are both {:?}; keep one",
                    first + 1,
                    i + 1,
                    name
                )));
            }
            targets.push(target);
        }
        if !targets.iter().any(|t| matches!(t, Target::Email | Target::Mobile)) {
            return Err(header_error(format!(
                "the header row needs an email or a mobile column (the template's columns are \
                 name,email,mobile,organization,role,department); found: {}",
                names.join(",")
            )));
        }
        let attributes = targets.iter().filter(|t| matches!(t, Target::Attribute(_))).count();
        if attributes > MAX_ATTRIBUTES {
            return Err(header_error(format!(
                "the file has {attributes} attribute columns; a customer holds at most {MAX_ATTRIBUTES}"
            )));
        }
        Ok(Self { names, targets })
    }

    /// Validates one data record.
    pub fn record(&self, row_number: u64, fields: Fields<'_>, region: Region) -> Parsed {
        if fields.len() != self.names.len() {
            if fields.iter().all(|f| f.iter().all(u8::is_ascii_whitespace)) {
                return Parsed::Blank;
            }
            return Parsed::Failed(vec![RowProblem::new(
                row_number,
                "",
                "",
                "WRONG_FIELD_COUNT",
                format!(
                    "The row has {} values but the header has {} columns (a missing separator, or a \
                     value with a comma that is not in quotes?).",
                    fields.len(),
                    self.names.len()
                ),
            )]);
        }
        let mut builder = RecordBuilder::new(row_number, region);
        for ((raw, name), target) in fields.iter().zip(&self.names).zip(&self.targets) {
            match std::str::from_utf8(raw) {
                Ok(cell) => builder.cell(name, target, spreadsheet::unprotect(cell.trim())),
                Err(_) => builder.problem(
                    name,
                    &String::from_utf8_lossy(raw),
                    "INVALID_UTF8",
                    "The text is not valid UTF-8; save the file as \"CSV UTF-8\" and import it again.",
                ),
            }
        }
        builder.finish()
    }
}

/// A structured row as sent in an `ImportRow` message.
#[derive(Debug, Clone, Default)]
pub struct RowInput {
    pub name: String,
    pub email: String,
    pub mobile: String,
    pub attributes: HashMap<String, String>,
    pub hub_access_enabled: Option<bool>,
}

impl RowInput {
    /// Validates a structured row; problems name the message's fields.
    pub fn parse(self, row_number: u64, region: Region) -> Parsed {
        let mut builder = RecordBuilder::new(row_number, region);
        builder.cell("name", &Target::Name, self.name.trim());
        builder.cell("email", &Target::Email, self.email.trim());
        builder.cell("mobile", &Target::Mobile, self.mobile.trim());
        if self.attributes.len() > MAX_ATTRIBUTES {
            builder.problem(
                "attributes",
                "",
                "TOO_MANY_ATTRIBUTES",
                format!("A customer holds at most {MAX_ATTRIBUTES} attributes."),
            );
        }
        let mut keys: Vec<_> = self.attributes.iter().collect();
        keys.sort();
        for (key, value) in keys {
            let key = key.trim();
            let column = format!("attributes.{key}");
            if key.is_empty() || key.chars().count() > MAX_KEY_CHARS {
                builder.problem(
                    &column,
                    key,
                    "INVALID_ATTRIBUTE_KEY",
                    format!("Attribute names must have 1 to {MAX_KEY_CHARS} characters."),
                );
                continue;
            }
            builder.cell(&column, &target_of(key), value.trim());
        }
        builder.hub_access = self.hub_access_enabled;
        builder.finish()
    }
}

/// Collects one row's cells and problems.
struct RecordBuilder {
    record: ImportRecord,
    region: Region,
    problems: Vec<RowProblem>,
    any_cell: bool,
    hub_access: Option<bool>,
}

impl RecordBuilder {
    fn new(row_number: u64, region: Region) -> Self {
        Self {
            record: ImportRecord {
                row_number,
                name: None,
                email: None,
                mobile: None,
                attributes: Attributes::new(),
                hub_access: None,
            },
            region,
            problems: Vec::new(),
            any_cell: false,
            hub_access: None,
        }
    }

    fn problem(&mut self, column: &str, value: &str, reason: &'static str, message: impl Into<String>) {
        self.any_cell = true;
        self.problems
            .push(RowProblem::new(self.record.row_number, column, value, reason, message));
    }

    /// One trimmed, unprotected cell.
    fn cell(&mut self, column: &str, target: &Target, cell: &str) {
        if cell.is_empty() || *target == Target::Ignored {
            return;
        }
        self.any_cell = true;
        match target {
            Target::Name => {
                if cell.chars().count() > MAX_NAME_CHARS {
                    self.problem(
                        column,
                        cell,
                        "NAME_TOO_LONG",
                        format!("The name is longer than {MAX_NAME_CHARS} characters."),
                    );
                } else {
                    self.record.name = Some(cell.to_owned());
                }
            }
            Target::Email => match Email::parse(cell) {
                Ok(email) => self.record.email = Some(email),
                Err(EmailError::TooLong) => self.problem(
                    column,
                    cell,
                    "INVALID_EMAIL",
                    "The email is longer than 254 characters.",
                ),
                Err(EmailError::Malformed) => self.problem(
                    column,
                    cell,
                    "INVALID_EMAIL",
                    "This is not an email address; it must look like name@example.com.",
                ),
            },
            Target::Mobile => match Mobile::parse(cell, self.region) {
                Ok(mobile) => self.record.mobile = Some(mobile),
                Err(MobileError::Unparseable) => {
                    self.problem(column, cell, "INVALID_MOBILE", "This is not a phone number.")
                }
                Err(MobileError::Invalid) => {
                    let message = format!(
                        "This is not a valid phone number for its country (numbers without a +country \
                         code are read as {} numbers).",
                        self.region
                    );
                    self.problem(column, cell, "INVALID_MOBILE", message)
                }
            },
            Target::HubAccess => match parse_bool(cell) {
                Some(enabled) => self.hub_access = Some(enabled),
                None => self.problem(
                    column,
                    cell,
                    "INVALID_HUB_ACCESS",
                    "Hub access must be true or false (yes/no and 1/0 work too), or empty to keep it as it is.",
                ),
            },
            Target::Attribute(key) => {
                if cell.chars().count() > MAX_VALUE_CHARS {
                    self.problem(
                        column,
                        cell,
                        "VALUE_TOO_LONG",
                        format!("The value is longer than {MAX_VALUE_CHARS} characters."),
                    );
                } else {
                    self.record.attributes.insert(key.clone(), cell.to_owned());
                }
            }
            Target::Ignored => {}
        }
    }

    fn finish(mut self) -> Parsed {
        if self.hub_access.is_some() {
            self.any_cell = true;
        }
        if !self.any_cell {
            return Parsed::Blank;
        }
        if !self.problems.is_empty() {
            return Parsed::Failed(self.problems);
        }
        if self.record.email.is_none() && self.record.mobile.is_none() {
            return Parsed::Failed(vec![RowProblem::new(
                self.record.row_number,
                "",
                "",
                "MISSING_CONTACT",
                "The row has neither an email nor a mobile; a customer needs at least one.",
            )]);
        }
        self.record.hub_access = self.hub_access;
        Parsed::Record(self.record)
    }
}

/// `true`/`false` in the spellings spreadsheets and people use.
fn parse_bool(cell: &str) -> Option<bool> {
    match cell.to_lowercase().as_str() {
        "true" | "yes" | "y" | "1" => Some(true),
        "false" | "no" | "n" | "0" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::import::csv::{SplitError, Splitter};

    fn records(file: &str) -> Result<Vec<Parsed>, Error> {
        let mut header = None;
        let mut out = Vec::new();
        let mut number = 0;
        let mut sink = |f: Fields<'_>| -> Result<(), SplitError> {
            match &header {
                None => header = Some(Header::parse(f)),
                Some(Ok(h)) => {
                    number += 1;
                    out.push(h.record(number, f, Region::default()));
                }
                Some(Err(_)) => {}
            }
            Ok(())
        };
        let mut splitter = Splitter::default();
        splitter.push(file.as_bytes(), &mut sink).unwrap();
        splitter.finish(&mut sink).unwrap();
        header.unwrap()?;
        Ok(out)
    }

    #[test]
    fn maps_columns_case_insensitively() {
        let rows = records(" Name ,EMAIL,Mobile,Organisation,Tier\nAda,ada@x.com,07911 123456,Acme,'=gold\n").unwrap();
        let Parsed::Record(r) = &rows[0] else {
            panic!("{rows:?}")
        };
        assert_eq!(r.name.as_deref(), Some("Ada"));
        assert_eq!(r.mobile.as_ref().unwrap().e164(), "+447911123456");
        assert_eq!(r.attributes.get("organization").map(String::as_str), Some("Acme"));
        assert_eq!(r.attributes.get("Tier").map(String::as_str), Some("=gold"));
    }

    #[test]
    fn rejects_bad_headers() {
        for file in ["name,role\n", "email,Email\n", "email,,role\n", "\u{1}\u{2}\u{3}\n"] {
            assert!(matches!(records(file), Err(Error::InvalidArgument(_))), "{file:?}");
        }
    }

    #[test]
    fn reports_row_problems() {
        let rows = records("email,mobile,hub_access\nnot-an-email,123,maybe\n,,\nx@y.com\n").unwrap();
        let Parsed::Failed(p) = &rows[0] else { panic!() };
        let reasons: Vec<_> = p.iter().map(|p| (p.column.as_str(), p.reason)).collect();
        assert_eq!(
            reasons,
            [
                ("email", "INVALID_EMAIL"),
                ("mobile", "INVALID_MOBILE"),
                ("hub_access", "INVALID_HUB_ACCESS")
            ]
        );
        assert!(matches!(rows[1], Parsed::Blank));
        let Parsed::Failed(p) = &rows[2] else { panic!() };
        assert_eq!(p[0].reason, "WRONG_FIELD_COUNT");
    }
}
