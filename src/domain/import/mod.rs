//! Bulk import: a stream of CSV bytes and structured rows becomes customers,
//! batch by batch, with a per-row report.
//!
//! Each batch is matched and written in one transaction (on SQLite it may
//! commit early to let a waiting writer in: see [`TURN_ROWS`]), so a dropped
//! connection leaves only whole rows behind and re-running the file in
//! UPSERT mode finishes the job. A dry run and an all-or-nothing import run
//! the very same code inside one outer transaction that is rolled back (dry
//! run, or any row failed) or committed at the end; batches are savepoints.
//! On SQLite a dry run writes into a private copy of the database
//! (`Store::for_dry_run`), on PostgreSQL into temporary copies of the tables
//! (`Store::begin_dry_run`), so that its transaction holds up no other writer.

pub mod csv;
pub mod plan;
pub mod row;

use self::{
    csv::{Fields, SplitError, Splitter},
    plan::{Mode, Outcome, Plan, PlanSettings, Stored},
    row::{Header, ImportRecord, Parsed, RowInput, RowProblem},
};
use tokio::{sync::mpsc, task::JoinHandle};

use super::{
    Error,
    auth::Principal,
    customers::{Customers, new_id},
    history::{Journal, Origin},
    mobile::Region,
    organizations::{DefaultRights, link_many_by_name},
};
use crate::store::{
    Store, WriteTxn,
    customers::{self as q, WriteError},
    intake::live_owner_map,
    is_unique_violation,
};

/// Rows matched and written per transaction.
pub const BATCH_ROWS: usize = 1000;
/// On SQLite, where writes take turns: while other writers come in a
/// stream, an import matches and writes this many rows at a time and lets a
/// waiting writer in between them. A batch written in such parts costs ~25%
/// more, so this is done only while writers come less than [`STREAM_GAP`]
/// apart.
pub const TURN_ROWS: usize = 100;
/// Writers that ask for their turn this soon after the one before got in
/// are a stream.
const STREAM_GAP: std::time::Duration = std::time::Duration::from_millis(100);
/// Problems listed by default.
pub const DEFAULT_MAX_ERRORS: usize = 1000;
/// Most problems a caller may ask to have listed.
pub const MAX_MAX_ERRORS: usize = 100_000;
/// Attempts at a batch that lost a race with a concurrent writer.
const ATTEMPTS: usize = 5;

/// How to import.
#[derive(Debug, Clone, Copy)]
pub struct ImportOptions {
    pub mode: Mode,
    pub dry_run: bool,
    pub all_or_nothing: bool,
    pub region: Region,
    pub max_errors: usize,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportReport {
    pub import_id: String,
    pub received: u64,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub skipped: u64,
    pub failed: u64,
    /// Problems in row order, at most `max_errors`.
    pub errors: Vec<RowProblem>,
    pub errors_omitted: u64,
    pub nothing_stored: bool,
    /// The server stopped reading before the end of the input.
    pub interrupted: bool,
}

impl ImportReport {
    fn problem(&mut self, problem: RowProblem, max: usize) {
        if self.errors.len() < max {
            self.errors.push(problem);
        } else {
            self.errors_omitted += 1;
        }
    }
}

/// One import in progress. Feed it with [`ImportRun::csv`] and
/// [`ImportRun::row`], then call [`ImportRun::finish`]. Parsing and
/// validation run here while a writer task matches and writes the previous
/// batch. Dropping the run midway stops the writer, which rolls back the
/// batch in flight (and, for dry runs and all-or-nothing imports,
/// everything).
pub struct ImportRun {
    options: ImportOptions,
    /// Counts and problems of parsing and validation.
    report: ImportReport,
    splitter: Splitter,
    csv_seen: bool,
    header: Option<Header>,
    /// Number of the last data row seen (CSV records and rows share it).
    last_row: u64,
    pending: Vec<ImportRecord>,
    writer: Writer,
    /// A dry run's copy of a SQLite store, kept until its transaction ends.
    _copy: Option<Store>,
}

/// The writer task and the queue to it (one batch waits while one is written).
struct Writer {
    queue: Option<mpsc::Sender<Vec<ImportRecord>>>,
    task: Option<JoinHandle<Result<Written, Error>>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl Writer {
    /// Queues a batch; if the writer has stopped, returns why.
    async fn send(&mut self, batch: Vec<ImportRecord>) -> Result<(), Error> {
        let Some(queue) = &self.queue else {
            return Err(Error::Internal("import writer already finished".into()));
        };
        if queue.send(batch).await.is_ok() {
            return Ok(());
        }
        match self.finish().await {
            Err(e) => Err(e),
            Ok(_) => Err(Error::Internal("import writer stopped early".into())),
        }
    }

    /// Closes the queue and waits for the last batch.
    async fn finish(&mut self) -> Result<Written, Error> {
        self.queue = None;
        let task = self
            .task
            .take()
            .ok_or_else(|| Error::Internal("import writer already finished".into()))?;
        task.await
            .map_err(|e| Error::Internal(format!("import writer failed: {e}")))?
    }
}

/// What the writer did.
#[derive(Default)]
struct Written {
    report: ImportReport,
    /// The outer transaction of a dry run or an all-or-nothing import.
    outer: Option<WriteTxn>,
}

/// Why feeding the splitter stopped.
enum Stop {
    Split(SplitError),
    Error(Error),
}

impl From<SplitError> for Stop {
    fn from(e: SplitError) -> Self {
        Stop::Split(e)
    }
}

impl ImportRun {
    /// Starts an import into `customers`' store.
    pub async fn start(customers: &Customers, options: ImportOptions, by: &Principal) -> Result<Self, Error> {
        let store = if options.dry_run {
            customers.store().for_dry_run().await?
        } else {
            customers.store().clone()
        };
        let outer = if options.dry_run {
            Some(store.begin_dry_run().await?)
        } else if options.all_or_nothing {
            Some(store.begin_write().await?)
        } else {
            None
        };
        let (queue, batches) = mpsc::channel(1);
        let settings = PlanSettings {
            mode: options.mode,
            hub_access_default: customers.settings().hub_access_default,
        };
        let import_id = new_id();
        let author = Author {
            principal: by.name.clone(),
            import_id: import_id.clone(),
        };
        let copy = options.dry_run.then(|| store.clone());
        let task = tokio::spawn(write_all(store, outer, batches, settings, author, options.max_errors));
        Ok(Self {
            options,
            report: ImportReport {
                import_id,
                ..Default::default()
            },
            splitter: Splitter::default(),
            csv_seen: false,
            header: None,
            last_row: 0,
            pending: Vec::new(),
            writer: Writer {
                queue: Some(queue),
                task: Some(task),
            },
            _copy: copy,
        })
    }

    /// The import's id.
    pub fn id(&self) -> &str {
        &self.report.import_id
    }

    /// The next bytes of the CSV file.
    pub async fn csv(&mut self, chunk: &[u8]) -> Result<(), Error> {
        self.csv_seen = true;
        self.split(Some(chunk)).await?;
        self.flush_full().await
    }

    /// Feeds the splitter `input`, or ends its input (`None`).
    async fn split(&mut self, input: Option<&[u8]>) -> Result<(), Error> {
        let Self {
            splitter,
            header,
            last_row,
            pending,
            report,
            options,
            ..
        } = self;
        let mut sink = |fields: Fields<'_>| accept(fields, header, last_row, pending, report, options);
        let fed = match input {
            Some(bytes) => splitter.push(bytes, &mut sink),
            None => splitter.finish(&mut sink),
        };
        match self.check(fed) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.stop(e).await),
        }
    }

    /// After a fatal problem in the input: the rows before it are still
    /// written (and committed, unless a dry run or all-or-nothing import
    /// holds them in its outer transaction, which is rolled back).
    async fn stop(&mut self, error: Error) -> Error {
        let rest = std::mem::take(&mut self.pending);
        if !rest.is_empty()
            && let Err(e) = self.writer.send(rest).await
        {
            return e;
        }
        match self.writer.finish().await {
            Ok(_) => error,
            Err(e) => e,
        }
    }

    /// One structured row.
    pub async fn row(&mut self, input: RowInput) -> Result<(), Error> {
        self.last_row += 1;
        let parsed = input.parse(self.last_row, self.options.region);
        take(parsed, &mut self.pending, &mut self.report, &self.options);
        self.flush_full().await
    }

    /// Ends the input, writes what is left and reports.
    pub async fn finish(mut self) -> Result<ImportReport, Error> {
        if self.csv_seen {
            self.split(None).await?;
            if self.header.is_none() {
                return Err(Error::invalid(
                    "csv_chunk",
                    "the CSV file is empty; it needs a header row",
                ));
            }
        }
        self.complete(false).await
    }

    /// Stops early (the server is shutting down): writes the complete rows
    /// received so far and reports; a CSV record cut off midway is dropped.
    /// A dry run or all-or-nothing import stores nothing.
    pub async fn interrupt(self) -> Result<ImportReport, Error> {
        self.complete(true).await
    }

    async fn complete(mut self, interrupted: bool) -> Result<ImportReport, Error> {
        let rest = std::mem::take(&mut self.pending);
        if !rest.is_empty() {
            self.writer.send(rest).await?;
        }
        let written = self.writer.finish().await?;
        let mut report = merge(self.report, written.report, self.options.max_errors);
        report.interrupted = interrupted;
        if let Some(outer) = written.outer {
            if self.options.dry_run || report.failed > 0 || interrupted {
                drop(outer);
                report.nothing_stored = true;
            } else {
                outer.commit().await?;
            }
        }
        Ok(report)
    }

    fn check(&self, fed: Result<(), Stop>) -> Result<(), Error> {
        let next = self.last_row + 1;
        let (reason, message) = match fed {
            Ok(()) => return Ok(()),
            Err(Stop::Error(e)) => return Err(e),
            Err(Stop::Split(SplitError::RecordTooLong)) => (
                "ROW_TOO_LONG",
                format!(
                    "row {next} is longer than {} MiB; a quote that is never closed makes the rest of the file \
                     one value. Rows before it were imported.",
                    csv::MAX_RECORD_BYTES >> 20
                ),
            ),
            Err(Stop::Split(SplitError::TooManyFields)) => (
                "TOO_MANY_COLUMNS",
                format!("row {next} has more than {} values", csv::MAX_FIELDS),
            ),
        };
        Err(Error::ResourceExhausted {
            reason,
            message,
            metadata: vec![("row_number", next.to_string())],
        })
    }

    async fn flush_full(&mut self) -> Result<(), Error> {
        while self.pending.len() >= BATCH_ROWS {
            let rest = self.pending.split_off(BATCH_ROWS);
            let batch = std::mem::replace(&mut self.pending, rest);
            self.writer.send(batch).await?;
        }
        Ok(())
    }
}

/// Combines the validation side's report with the writer's; problems in
/// row order, capped at `max`.
fn merge(parsed: ImportReport, written: ImportReport, max: usize) -> ImportReport {
    let mut errors = parsed.errors;
    errors.extend(written.errors);
    errors.sort_by_key(|p| p.row_number);
    let listed_before = errors.len() as u64;
    errors.truncate(max);
    ImportReport {
        import_id: parsed.import_id,
        received: parsed.received,
        created: written.created,
        updated: written.updated,
        unchanged: written.unchanged,
        skipped: written.skipped,
        failed: parsed.failed + written.failed,
        errors_omitted: parsed.errors_omitted + written.errors_omitted + listed_before - errors.len() as u64,
        errors,
        nothing_stored: false,
        interrupted: false,
    }
}

/// Who the history entries of an import name.
struct Author {
    principal: String,
    import_id: String,
}

impl Author {
    fn journal(&self) -> Journal {
        Journal::named(self.principal.clone(), Origin::Import(self.import_id.clone()))
    }
}

/// The writer task: matches and writes batches as they come, each in its
/// own transaction (or savepoint of `outer`).
async fn write_all(
    store: Store,
    outer: Option<WriteTxn>,
    mut batches: mpsc::Receiver<Vec<ImportRecord>>,
    settings: PlanSettings,
    author: Author,
    max_errors: usize,
) -> Result<Written, Error> {
    let mut written = Written {
        outer,
        ..Default::default()
    };
    while let Some(batch) = batches.recv().await {
        let mut rest = &batch[..];
        while !rest.is_empty() {
            let outcomes = write_retrying(&store, written.outer.as_ref(), rest, &settings, &author).await?;
            // One outcome per row written, in order (`Plan::build`).
            rest = &rest[outcomes.len()..];
            tally(&mut written.report, outcomes, max_errors);
        }
    }
    Ok(written)
}

fn tally(report: &mut ImportReport, outcomes: Vec<Outcome>, max_errors: usize) {
    for outcome in outcomes {
        match outcome {
            Outcome::Created => report.created += 1,
            Outcome::Updated => report.updated += 1,
            Outcome::Unchanged => report.unchanged += 1,
            Outcome::Skipped(p) => {
                report.skipped += 1;
                report.problem(p, max_errors);
            }
            Outcome::Failed(p) => {
                report.failed += 1;
                report.problem(p, max_errors);
            }
        }
    }
}

/// Matches and writes the batch `rows` in one transaction (or savepoint of
/// `outer`), retrying when a concurrent writer took an identity or changed
/// a customer between our read and our write. Returns the outcomes of the
/// rows written: all of them, unless another writer waited for its turn
/// (see [`TURN_ROWS`]).
async fn write_retrying(
    store: &Store,
    outer: Option<&WriteTxn>,
    rows: &[ImportRecord],
    settings: &PlanSettings,
    author: &Author,
) -> Result<Vec<Outcome>, Error> {
    for attempt in 1..=ATTEMPTS {
        let written = match outer {
            Some(outer) => {
                let savepoint = sea_orm::TransactionTrait::begin(&**outer).await?;
                match write_batch(&savepoint, rows, settings, author.journal()).await {
                    Ok(plan) => savepoint.commit().await.map(|_| plan.outcomes).map_err(WriteError::Db),
                    Err(e) => {
                        savepoint.rollback().await?;
                        Err(e)
                    }
                }
            }
            None => {
                let txn = store.begin_long_write().await?;
                match write_in_turns(store, &txn, rows, settings, author).await {
                    Ok(outcomes) => txn.commit().await.map(|_| outcomes).map_err(WriteError::Db),
                    Err(e) => Err(e),
                }
            }
        };
        match written {
            Ok(outcomes) => return Ok(outcomes),
            Err(WriteError::Db(e)) if !is_unique_violation(&e) => return Err(e.into()),
            Err(_) if attempt < ATTEMPTS => {
                tracing::debug!(attempt, "import batch raced a concurrent write; retrying");
            }
            Err(_) => break,
        }
    }
    Err(Error::Aborted(format!(
        "rows {} to {} kept conflicting with concurrent changes; rows before them were imported, re-run the file",
        rows[0].row_number,
        rows[rows.len() - 1].row_number
    )))
}

/// Writes `rows` into `txn`: all at once, unless (on SQLite) writers come
/// in a stream. Then it is [`TURN_ROWS`] at a time, and it stops as soon as
/// a writer is waiting, so that a create or a ticket waits for ~100 rows of
/// the import, not for the whole batch.
async fn write_in_turns(
    store: &Store,
    txn: &WriteTxn,
    rows: &[ImportRecord],
    settings: &PlanSettings,
    author: &Author,
) -> Result<Vec<Outcome>, WriteError> {
    let mut outcomes = Vec::with_capacity(rows.len());
    let mut rest = rows;
    while !rest.is_empty() {
        let part = if store.writes_streaming(STREAM_GAP) {
            TURN_ROWS
        } else {
            rest.len()
        };
        let (part, tail) = rest.split_at(part.min(rest.len()));
        outcomes.extend(write_batch(&**txn, part, settings, author.journal()).await?.outcomes);
        rest = tail;
        if store.write_waiting() {
            break;
        }
    }
    Ok(outcomes)
}

/// One CSV record from the splitter: the header, or a data row.
fn accept(
    fields: Fields<'_>,
    header: &mut Option<Header>,
    last_row: &mut u64,
    pending: &mut Vec<ImportRecord>,
    report: &mut ImportReport,
    options: &ImportOptions,
) -> Result<(), Stop> {
    let Some(h) = header else {
        *header = Some(Header::parse(fields).map_err(Stop::Error)?);
        return Ok(());
    };
    *last_row += 1;
    take(h.record(*last_row, fields, options.region), pending, report, options);
    Ok(())
}

fn take(parsed: Parsed, pending: &mut Vec<ImportRecord>, report: &mut ImportReport, options: &ImportOptions) {
    match parsed {
        Parsed::Blank => {}
        Parsed::Record(record) => {
            report.received += 1;
            pending.push(record);
        }
        Parsed::Failed(problems) => {
            report.received += 1;
            report.failed += 1;
            for p in problems {
                report.problem(p, options.max_errors);
            }
        }
    }
}

/// Reads what the batch needs, plans it, writes the plan and its history.
async fn write_batch(
    db: &impl sea_orm::ConnectionTrait,
    batch: &[ImportRecord],
    settings: &PlanSettings,
    mut journal: Journal,
) -> Result<Plan, WriteError> {
    let owners = live_owner_map(db, &plan::keys(batch)).await?;
    let mut ids: Vec<String> = owners.values().cloned().collect();
    ids.sort_unstable();
    ids.dedup();
    let customers = q::find_many(db, &ids).await?;
    let plan = Plan::build(batch, Stored { owners, customers }, settings, new_id);
    let now = super::now();
    for (before, draft) in plan.updates() {
        q::overwrite(db, before, draft, now).await?;
        journal.customer_updated(&before.id, &before.to_draft(), draft);
    }
    let inserts = plan.inserts(now);
    q::insert_many(db, &inserts).await?;
    for (customer, _) in &inserts {
        journal.customer_created(customer);
    }
    link_many_by_name(db, &mut journal, &plan.organization_links(), DefaultRights::default()).await?;
    journal.write(db).await?;
    Ok(plan)
}
