//! Spreadsheet formula-injection protection for CSV cells (OWASP "CSV
//! injection"): a cell a spreadsheet would evaluate gets a leading `'`, which
//! spreadsheets show as "this is text" and our importer removes again.
//!
//! E.164 mobiles start with `+`, so exported mobiles carry the `'` too. That
//! is deliberate: unprotected, a spreadsheet reads `+447700900123` as the
//! number 447700900123 and saves it back without its `+`.

/// First characters that make a spreadsheet treat a cell as a formula.
const TRIGGERS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// Whether a cell, after any leading `'`s, would start a formula. Counting
/// the `'`s in makes a value that really starts with `'=` round-trip too.
fn looks_like_formula(cell: &str) -> bool {
    cell.trim_start_matches('\'').starts_with(TRIGGERS)
}

/// The cell as written to an exported CSV.
pub fn protect(cell: &str) -> std::borrow::Cow<'_, str> {
    if looks_like_formula(cell) {
        format!("'{cell}").into()
    } else {
        cell.into()
    }
}

/// Undoes [`protect`]: a leading `'` before a formula-like rest is dropped.
/// Any other leading `'` is kept as data.
pub fn unprotect(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if looks_like_formula(rest) => rest,
        _ => cell,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for cell in [
            "=SUM(A1)",
            "+447700900123",
            "-5",
            "@cmd",
            "\tx",
            "\rx",
            "plain",
            "'quoted",
            "",
            "'=x",
            "''-1",
        ] {
            assert_eq!(unprotect(&protect(cell)), cell, "{cell:?}");
        }
        assert_eq!(protect("+44"), "'+44");
        assert_eq!(protect("a=b"), "a=b");
        assert_eq!(unprotect("'hello"), "'hello");
    }
}
