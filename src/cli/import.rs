//! `customer-service import FILE.csv`: streams a file to ImportCustomers with
//! progress, prints the report, optionally writes the failed rows out.

use std::collections::BTreeMap;

use tokio::{io::AsyncReadExt, sync::mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::{CliError, connect, describe, progress::Progress};
use crate::{
    config::{ImportArgs, ImportMode},
    domain::import::{
        MAX_MAX_ERRORS,
        csv::{SplitError, Splitter},
        row::ERROR_COLUMN,
    },
    proto::v1::{self as pb, import_customers_request::Part, import_options::Mode},
};

/// Bytes per message.
const CHUNK: usize = 256 * 1024;
/// Problems printed to the terminal.
const PRINTED: usize = 20;

/// Runs the import; `Ok(true)` when no row failed.
pub async fn run(args: ImportArgs) -> Result<bool, CliError> {
    let mut file = tokio::fs::File::open(&args.file)
        .await
        .map_err(|e| format!("{}: {e}", args.file.display()))?;
    let size = file.metadata().await?.len();
    let mut client = connect(&args.client).await?;

    let options = pb::ImportOptions {
        mode: match args.mode {
            ImportMode::Upsert => Mode::Upsert,
            ImportMode::CreateOnly => Mode::CreateOnly,
        } as i32,
        dry_run: args.dry_run,
        all_or_nothing: args.all_or_nothing,
        default_region: args.region.clone().unwrap_or_default(),
        max_errors: if args.errors_out.is_some() {
            MAX_MAX_ERRORS as i32
        } else {
            0
        },
    };
    let (tx, rx) = mpsc::channel(4);
    tx.send(pb::ImportCustomersRequest {
        part: Some(Part::Options(options)),
    })
    .await?;
    let sender = tokio::spawn(async move {
        let mut progress = Progress::new("sent", Some(size));
        let mut splitter = Splitter::default();
        let mut records = 0u64;
        let mut buf = vec![0; CHUNK];
        loop {
            let n = file.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            // Counting only; the server reports what is wrong with a row.
            let _ = splitter.push(&buf[..n], &mut |_| {
                records += 1;
                Ok::<_, SplitError>(())
            });
            progress.advance(n as u64, records.saturating_sub(1));
            let message = pb::ImportCustomersRequest {
                part: Some(Part::CsvChunk(buf[..n].to_vec())),
            };
            if tx.send(message).await.is_err() {
                break; // The server answered early (an error); the answer says why.
            }
        }
        progress.finish();
        Ok::<_, std::io::Error>(())
    });
    let answer = client.import_customers(ReceiverStream::new(rx)).await;
    sender.await??;
    let report = answer
        .map_err(|s| format!("import failed: {}", describe(&s)))?
        .into_inner();
    print_report(&report, args.dry_run);
    if let Some(path) = &args.errors_out {
        let written = write_failed_rows(&args.file, path, &report)?;
        println!(
            "{written} failed rows written to {} (fix them and import that file)",
            path.display()
        );
        if report.errors_omitted > 0 {
            println!(
                "note: the server listed the first {} problems only",
                report.errors.len()
            );
        }
    }
    Ok(report.failed == 0)
}

fn print_report(r: &pb::ImportCustomersResponse, dry_run: bool) {
    let what = if dry_run { "Dry run" } else { "Import" };
    println!(
        "{what} {} finished{}",
        r.import_id,
        if r.interrupted {
            " EARLY (server shutting down; re-run the file)"
        } else {
            ""
        }
    );
    if r.nothing_stored {
        println!(
            "  nothing was stored{}",
            if dry_run {
                " (dry run)"
            } else {
                " (all-or-nothing and some rows failed)"
            }
        );
    }
    for (label, n) in [
        ("received", r.received),
        ("created", r.created),
        ("updated", r.updated),
        ("unchanged", r.unchanged),
        ("skipped", r.skipped),
        ("failed", r.failed),
    ] {
        println!("  {label:<10} {n:>10}");
    }
    if r.errors.is_empty() {
        return;
    }
    let total = r.errors.len() as i64 + r.errors_omitted;
    println!("Problems (first {} of {total}):", r.errors.len().min(PRINTED));
    for e in r.errors.iter().take(PRINTED) {
        let at = if e.column.is_empty() {
            String::new()
        } else {
            format!(", {} {:?}", e.column, e.value)
        };
        println!("  row {}{at}: {} [{}]", e.row_number, e.message, e.reason);
    }
}

/// Copies the rows that failed (not the skipped ones) from `source` to
/// `target`, each with its problems in an `import_error` column.
fn write_failed_rows(
    source: &std::path::Path,
    target: &std::path::Path,
    r: &pb::ImportCustomersResponse,
) -> Result<usize, CliError> {
    let mut failed: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for e in r.errors.iter().filter(|e| e.reason != "SKIPPED_EXISTING") {
        let text = if e.column.is_empty() {
            e.message.clone()
        } else {
            format!("{}: {}", e.column, e.message)
        };
        failed.entry(e.row_number as u64).or_default().push(text);
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_path(source)?;
    let mut writer = csv::WriterBuilder::new().flexible(true).from_path(target)?;
    let mut record = csv::ByteRecord::new();
    let mut number = 0u64;
    let mut written = 0;
    while reader.read_byte_record(&mut record)? {
        if number == 0 {
            let mut header = record.clone();
            header.push_field(ERROR_COLUMN.as_bytes());
            writer.write_byte_record(&header)?;
        } else if let Some(problems) = failed.get(&number) {
            let mut row = record.clone();
            row.push_field(problems.join("; ").as_bytes());
            writer.write_byte_record(&row)?;
            written += 1;
        }
        number += 1;
    }
    writer.flush()?;
    Ok(written)
}
