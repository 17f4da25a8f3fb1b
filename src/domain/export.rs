//! CSV export in the import template's columns, so an export imports back
//! unchanged: zero created, zero failed.

use std::collections::BTreeMap;

use tokio::sync::mpsc;

use super::{
    Error,
    customer::Customer,
    customers::Customers,
    import::row::{TEMPLATE_ATTRIBUTES, attribute_column},
    spreadsheet::protect,
};

/// Customers read per query.
const PAGE: i32 = 1000;
/// Bytes per streamed chunk (roughly).
const CHUNK_BYTES: usize = 64 * 1024;

/// Columns before the custom attributes.
pub const FIXED_COLUMNS: [&str; 7] = [
    "name",
    "email",
    "mobile",
    "organization",
    "role",
    "department",
    "hub_access",
];

/// Streams the customers matching `filter` as CSV chunks. The file is built
/// in two passes over keyset pages: the first finds the attribute columns.
/// Dropping the receiver stops the export.
pub fn export(customers: Customers, filter: String, show_deleted: bool) -> mpsc::Receiver<Result<Vec<u8>, Error>> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        if let Err(e) = run(&customers, &filter, show_deleted, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    rx
}

async fn run(
    customers: &Customers,
    filter: &str,
    show_deleted: bool,
    tx: &mpsc::Sender<Result<Vec<u8>, Error>>,
) -> Result<(), Error> {
    // Pass 1: which attribute keys exist (lower-cased key → spelling kept).
    let mut extra: BTreeMap<String, String> = BTreeMap::new();
    let mut token = String::new();
    loop {
        let page = customers.list(PAGE, &token, filter, show_deleted).await?;
        for c in &page.items {
            for key in c.attributes.keys() {
                if !TEMPLATE_ATTRIBUTES.contains(&key.as_str()) {
                    match attribute_column(key) {
                        Some(k) => {
                            extra.entry(k.to_lowercase()).or_insert_with(|| k.to_owned());
                        }
                        None => tracing::warn!(customer_id = %c.id, key, "attribute not exportable as a CSV column"),
                    }
                }
            }
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let extra: Vec<String> = extra.into_values().collect();

    let header: Vec<&str> = FIXED_COLUMNS
        .iter()
        .copied()
        .chain(extra.iter().map(String::as_str))
        .collect();
    let mut chunk = to_csv([header])?;

    // Pass 2: the rows.
    let mut token = String::new();
    loop {
        let page = customers.list(PAGE, &token, filter, show_deleted).await?;
        chunk.extend(to_csv(page.items.iter().map(|c| cells(c, &extra)))?);
        if chunk.len() >= CHUNK_BYTES && tx.send(Ok(std::mem::take(&mut chunk))).await.is_err() {
            return Ok(());
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    if !chunk.is_empty() {
        let _ = tx.send(Ok(chunk)).await;
    }
    Ok(())
}

/// CSV lines of `rows`, each cell protected against formula injection.
fn to_csv<'a>(rows: impl IntoIterator<Item = Vec<&'a str>>) -> Result<Vec<u8>, Error> {
    let mut csv = csv::Writer::from_writer(Vec::new());
    for row in rows {
        csv.write_record(row.iter().map(|cell| protect(cell).into_owned()))
            .map_err(|e| internal(e.to_string()))?;
    }
    csv.into_inner().map_err(|e| internal(e.to_string()))
}

fn cells<'a>(c: &'a Customer, extra: &'a [String]) -> Vec<&'a str> {
    let attr = |k: &str| c.attributes.get(k).map_or("", String::as_str);
    let mut row = vec![
        c.name.as_str(),
        c.email.as_deref().unwrap_or(""),
        c.mobile.as_deref().unwrap_or(""),
        attr("organization"),
        attr("role"),
        attr("department"),
        if c.hub_access_enabled { "true" } else { "false" },
    ];
    row.extend(extra.iter().map(|k| attr(k)));
    row
}

fn internal(e: String) -> Error {
    Error::Internal(format!("writing CSV: {e}"))
}
