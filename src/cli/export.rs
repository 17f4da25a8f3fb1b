//! `customer-service export`: ExportCustomers into a file or standard output.

use tokio::io::AsyncWriteExt;

use super::{CliError, connect, describe, progress::Progress};
use crate::{
    config::ExportArgs,
    domain::import::csv::{SplitError, Splitter},
    proto::v1 as pb,
};

/// Runs the export.
pub async fn run(args: ExportArgs) -> Result<(), CliError> {
    let mut client = connect(&args.client).await?;
    let request = pb::ExportCustomersRequest {
        filter: args.filter.clone(),
        show_deleted: args.show_deleted,
    };
    let mut stream = client
        .export_customers(request)
        .await
        .map_err(|s| format!("export failed: {}", describe(&s)))?
        .into_inner();
    let mut out: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = match &args.out {
        Some(path) => Box::new(
            tokio::fs::File::create(path)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?,
        ),
        None => Box::new(tokio::io::stdout()),
    };
    // Progress only when the CSV does not go to standard output itself.
    let mut progress = args.out.is_some().then(|| Progress::new("received", None));
    let mut splitter = Splitter::default();
    let mut records = 0u64;
    while let Some(chunk) = stream
        .message()
        .await
        .map_err(|s| format!("export failed midway: {}", describe(&s)))?
    {
        let _ = splitter.push(&chunk.csv_chunk, &mut |_| {
            records += 1;
            Ok::<_, SplitError>(())
        });
        out.write_all(&chunk.csv_chunk).await?;
        if let Some(p) = &mut progress {
            p.advance(chunk.csv_chunk.len() as u64, records.saturating_sub(1));
        }
    }
    let _ = splitter.finish(&mut |_| {
        records += 1;
        Ok::<_, SplitError>(())
    });
    out.flush().await?;
    if let Some(p) = &progress {
        p.finish();
    }
    if let Some(path) = &args.out {
        println!("exported {} customers to {}", records.saturating_sub(1), path.display());
    }
    Ok(())
}
