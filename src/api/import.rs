//! ImportCustomers, ExportCustomers and GetImportTemplate.

use std::time::Duration;

use tokio::sync::watch;
use tokio_stream::{StreamExt, wrappers::ReceiverStream};
use tonic::{Status, Streaming};

use super::customers::ExportStream;
use crate::{
    domain::{
        Error,
        auth::Principal,
        customers::Customers,
        export,
        import::{
            DEFAULT_MAX_ERRORS, ImportOptions, ImportReport, ImportRun, MAX_MAX_ERRORS, plan::Mode, row::RowInput,
            row::RowProblem,
        },
        mobile::Region,
    },
    proto::v1::{self as pb, import_customers_request::Part, import_options},
};

/// The template shipped in the repository, served as is.
pub const TEMPLATE: &[u8] = include_bytes!("../../import_customers_template.csv");

/// The next message, unless the client has been silent for `idle`: a
/// stalled import must not hold its transaction (on SQLite, a dry run holds
/// the only write slot) for ever.
async fn next(
    stream: &mut Streaming<pb::ImportCustomersRequest>,
    idle: Duration,
) -> Result<Option<pb::ImportCustomersRequest>, Status> {
    match tokio::time::timeout(idle, stream.message()).await {
        Ok(message) => message,
        Err(_) => Err(Status::deadline_exceeded(format!(
            "no message for {} s; the import was stopped (batches already written are kept; re-run the file)",
            idle.as_secs_f64()
        ))),
    }
}

/// Runs one import stream. When `draining` turns true (the server is
/// shutting down) it stops reading, writes the rows it has and reports
/// `interrupted`.
pub async fn import(
    customers: &Customers,
    by: &Principal,
    mut stream: Streaming<pb::ImportCustomersRequest>,
    mut draining: watch::Receiver<bool>,
    idle: Duration,
) -> Result<pb::ImportCustomersResponse, Status> {
    let first = next(&mut stream, idle).await?;
    let (options, first) = match first {
        Some(pb::ImportCustomersRequest {
            part: Some(Part::Options(options)),
        }) => (options, None),
        other => (pb::ImportOptions::default(), other),
    };
    let mut run = ImportRun::start(customers, import_options(options, customers)?, by).await?;
    tracing::info!(import_id = %run.id(), "import started");
    if let Some(message) = first {
        feed(&mut run, message).await?;
    }
    loop {
        let message = tokio::select! {
            biased;
            true = async { draining.wait_for(|d| *d).await.is_ok() } => {
                let report = run.interrupt().await?;
                tracing::warn!(import_id = %report.import_id, received = report.received, "import interrupted by shutdown");
                return Ok(report.into());
            }
            message = next(&mut stream, idle) => message?,
        };
        match message {
            Some(message) => feed(&mut run, message).await?,
            None => break,
        }
    }
    let report = run.finish().await?;
    tracing::info!(
        import_id = %report.import_id,
        received = report.received,
        created = report.created,
        updated = report.updated,
        unchanged = report.unchanged,
        skipped = report.skipped,
        failed = report.failed,
        nothing_stored = report.nothing_stored,
        "import finished"
    );
    Ok(report.into())
}

async fn feed(run: &mut ImportRun, message: pb::ImportCustomersRequest) -> Result<(), Error> {
    match message.part {
        Some(Part::CsvChunk(bytes)) => run.csv(&bytes).await,
        Some(Part::Row(row)) => run.row(row_input(row)).await,
        Some(Part::Options(_)) => Err(Error::invalid("options", "only the first message may carry options")),
        None => Err(Error::invalid("part", "each message carries options, csv_chunk or row")),
    }
}

fn import_options(options: pb::ImportOptions, customers: &Customers) -> Result<ImportOptions, Error> {
    let pb::ImportOptions {
        mode,
        dry_run,
        all_or_nothing,
        default_region,
        max_errors,
    } = options;
    let mode = match import_options::Mode::try_from(mode) {
        Ok(import_options::Mode::Unspecified | import_options::Mode::Upsert) => Mode::Upsert,
        Ok(import_options::Mode::CreateOnly) => Mode::CreateOnly,
        Err(_) => return Err(Error::invalid("options.mode", format!("{mode} is not a mode"))),
    };
    let region = if default_region.trim().is_empty() {
        customers.settings().default_region
    } else {
        Region::parse(&default_region).ok_or_else(|| {
            Error::invalid(
                "options.default_region",
                format!("{default_region:?} is not a region code like GB or US"),
            )
        })?
    };
    let max_errors = match max_errors {
        0 => DEFAULT_MAX_ERRORS,
        n if n > 0 && n as usize <= MAX_MAX_ERRORS => n as usize,
        n => {
            return Err(Error::invalid(
                "options.max_errors",
                format!("{n} is not between 1 and {MAX_MAX_ERRORS}"),
            ));
        }
    };
    Ok(ImportOptions {
        mode,
        dry_run,
        all_or_nothing,
        region,
        max_errors,
    })
}

fn row_input(row: pb::ImportRow) -> RowInput {
    let pb::ImportRow {
        name,
        email,
        mobile,
        attributes,
        hub_access_enabled,
    } = row;
    RowInput {
        name,
        email,
        mobile,
        attributes,
        hub_access_enabled,
    }
}

impl From<RowProblem> for pb::ImportError {
    fn from(p: RowProblem) -> Self {
        pb::ImportError {
            row_number: p.row_number as i64,
            column: p.column,
            value: p.value,
            message: p.message,
            reason: p.reason.to_owned(),
        }
    }
}

impl From<ImportReport> for pb::ImportCustomersResponse {
    fn from(r: ImportReport) -> Self {
        pb::ImportCustomersResponse {
            received: r.received as i64,
            created: r.created as i64,
            updated: r.updated as i64,
            unchanged: r.unchanged as i64,
            skipped: r.skipped as i64,
            failed: r.failed as i64,
            errors: r.errors.into_iter().map(Into::into).collect(),
            errors_omitted: r.errors_omitted as i64,
            nothing_stored: r.nothing_stored,
            import_id: r.import_id,
            interrupted: r.interrupted,
        }
    }
}

/// Streams the export as `ExportCustomersResponse` chunks.
pub fn export(customers: Customers, request: pb::ExportCustomersRequest) -> ExportStream {
    let pb::ExportCustomersRequest { filter, show_deleted } = request;
    let chunks = export::export(customers, filter, show_deleted);
    Box::pin(ReceiverStream::new(chunks).map(|chunk| {
        chunk
            .map(|csv_chunk| pb::ExportCustomersResponse { csv_chunk })
            .map_err(Status::from)
    }))
}

/// The import template.
pub fn template() -> pb::GetImportTemplateResponse {
    pb::GetImportTemplateResponse {
        csv: TEMPLATE.to_vec(),
        filename: "import_customers_template.csv".to_owned(),
        content_type: "text/csv".to_owned(),
    }
}
