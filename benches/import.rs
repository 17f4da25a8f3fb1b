//! Import benchmark: generates a realistic CSV and imports it through the
//! real server binary over gRPC, then measures the database's own floor.
//!
//! `cargo bench --bench import -- [--rows 1000000] [--backend all|sqlite|postgres]
//! [--probe-pause-ms 20]`
//!
//! Rows: names, emails (5% mobile-only), mobiles in three spellings (70%),
//! organization/role/department; ~1% invalid (a broken email), ~5% repeats
//! of an earlier person (email in another case: an update). For each
//! backend: a fresh database, the file streamed in 256 KiB messages, rows/s,
//! total time and the server's peak RSS, and how long the CreateCustomer
//! calls another caller made meanwhile took (one at a time, with a pause
//! between; p50, p90 and the slowest: how long the import held up other
//! writers). The same file then goes through again as a dry run over the
//! stored customers (it works on a copy of them). Floors, same
//! run, same customers: PostgreSQL `COPY` into the same tables and
//! indexes (customers, identities, memberships), and a bare SQLite batch
//! insert (multi-row INSERTs, 10,000 rows per transaction) into the same
//! schema.

mod common;

use std::{
    io::Write,
    time::{Duration, Instant},
};

use common::{Rng, Server};
use customer_service::{
    proto::v1::{self as pb, customer_service_client::CustomerServiceClient, import_customers_request::Part},
    store::{PoolSettings, Store},
};
use sea_orm::{ConnectionTrait, sqlx};
use tokio::io::AsyncReadExt;
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

const FIRST: [&str; 12] = [
    "Ada", "Grace", "Alan", "Zoë", "José", "Mei", "Olu", "Priya", "Sven", "Fatima", "Liam", "Noor",
];
const LAST: [&str; 12] = [
    "Lovelace", "Hopper", "Turing", "Müller", "García", "Chen", "Okafor", "Patel", "Larsen", "Haddad", "O'Brien",
    "Nakamura",
];
const ROLES: [&str; 5] = ["Engineer", "Buyer", "Manager", "Director", "Analyst"];
const DEPARTMENTS: [&str; 5] = ["IT", "Finance", "Operations", "Sales", "Research"];
const ORGS: usize = 200;
const CHUNK: usize = 256 * 1024;

struct Args {
    rows: usize,
    backend: String,
    /// The pause between the creates made during an import.
    probe_pause: Duration,
}

fn args() -> Args {
    let mut a = Args {
        rows: 1_000_000,
        backend: "all".into(),
        probe_pause: Duration::from_millis(20),
    };
    for (flag, value) in common::flags() {
        match flag.as_str() {
            "--rows" => a.rows = value.parse().expect("--rows N"),
            "--backend" => a.backend = value,
            "--probe-pause-ms" => a.probe_pause = Duration::from_millis(value.parse().expect("--probe-pause-ms N")),
            other => panic!("unknown option {other}"),
        }
    }
    a
}

/// Person `i`'s fields, the same however often they are asked for.
struct Person(usize);

impl Person {
    fn name(&self) -> String {
        format!("{} {}", FIRST[self.0 % 12], LAST[(self.0 / 12) % 12])
    }
    fn email(&self) -> Option<String> {
        (!self.0.is_multiple_of(20)).then(|| format!("person.{}@example{}.com", self.0, self.0 % 50))
    }
    fn e164(&self) -> Option<String> {
        (self.0 % 10 < 7 || self.0.is_multiple_of(20)).then(|| format!("+447400{:06}", self.0 % 1_000_000))
    }
    /// The mobile as people type it.
    fn mobile_cell(&self) -> String {
        let Some(e164) = self.e164() else { return String::new() };
        let national = &e164[3..];
        match self.0 % 3 {
            0 => e164,
            1 => format!("0{} {}", &national[..4], &national[4..]),
            _ => format!("+44 {} {}", &national[..4], &national[4..]),
        }
    }
    fn organization(&self) -> String {
        format!("Org {}", self.0 % ORGS)
    }
}

/// What the generator wrote.
struct Generated {
    rows: usize,
    bytes: u64,
    invalid: usize,
    repeats: usize,
    /// Persons that end up stored, in order of first appearance.
    people: Vec<usize>,
}

fn generate(path: &std::path::Path, rows: usize) -> Generated {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut csv = csv::Writer::from_writer(&mut out);
    csv.write_record(["name", "email", "mobile", "organization", "role", "department"])
        .unwrap();
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let mut stored = vec![false; rows];
    let mut g = Generated {
        rows,
        bytes: 0,
        invalid: 0,
        repeats: 0,
        people: Vec::with_capacity(rows),
    };
    for i in 0..rows {
        let roll = rng.below(100);
        let (person, email) = if roll == 0 {
            g.invalid += 1;
            (Person(i), Some(format!("broken.{i}@")))
        } else if roll <= 5 && i > 0 {
            g.repeats += 1;
            let p = Person(rng.below(i as u64) as usize);
            let email = p.email().map(|e| e.to_uppercase());
            (p, email)
        } else {
            let p = Person(i);
            let email = p.email();
            (p, email)
        };
        if roll != 0 && !stored[person.0] {
            stored[person.0] = true;
            g.people.push(person.0);
        }
        csv.write_record([
            person.name(),
            email.unwrap_or_default(),
            person.mobile_cell(),
            person.organization(),
            ROLES[i % 5].to_owned(),
            DEPARTMENTS[i % 5].to_owned(),
        ])
        .unwrap();
    }
    drop(csv);
    out.flush().unwrap();
    g.bytes = std::fs::metadata(path).unwrap().len();
    g
}

async fn connect(addr: &str) -> Channel {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect");
    let mut health = HealthClient::new(channel.clone());
    for _ in 0..400 {
        if let Ok(r) = health.check(HealthCheckRequest { service: String::new() }).await
            && r.into_inner().status == ServingStatus::Serving as i32
        {
            return channel;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("server never became SERVING");
}

/// What one import through the server measured.
struct Run {
    report: pb::ImportCustomersResponse,
    seconds: f64,
    /// Server's peak RSS, MiB.
    peak: f64,
    /// How long each CreateCustomer call made meanwhile took, fastest first.
    probes: Vec<Duration>,
}

/// Streams the file through ImportCustomers while another caller creates
/// customers one after the other: does the import hold up other writers?
/// The creates share the import's connection, as a client's calls do, so
/// the figure also shows what the import's stream does to them.
async fn import(url: &str, path: &std::path::Path, dry_run: bool, pause: Duration) -> Run {
    let server = Server::start(url);
    let channel = connect(&server.addr).await;
    let mut client = CustomerServiceClient::new(channel.clone());
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut file = tokio::fs::File::open(path).await.unwrap();
    let start = Instant::now();
    let sender = tokio::spawn(async move {
        let options = pb::ImportOptions {
            dry_run,
            ..Default::default()
        };
        let first = pb::ImportCustomersRequest {
            part: Some(Part::Options(options)),
        };
        if tx.send(first).await.is_err() {
            return;
        }
        let mut buf = vec![0; CHUNK];
        loop {
            let n = file.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            let part = Some(Part::CsvChunk(buf[..n].to_vec()));
            if tx.send(pb::ImportCustomersRequest { part }).await.is_err() {
                break;
            }
        }
    });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prober = tokio::spawn({
        let (mut client, stop) = (CustomerServiceClient::new(channel), stop.clone());
        let tag = if dry_run { "dry" } else { "real" };
        async move {
            let mut probes = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                let customer = pb::Customer {
                    name: "Probe".into(),
                    email: format!("probe.{tag}.{}@bench.example.com", probes.len()),
                    ..Default::default()
                };
                let created = client
                    .create_customer(pb::CreateCustomerRequest {
                        customer: Some(customer),
                        request_id: String::new(),
                    })
                    .await;
                probes.push(t.elapsed());
                if let Err(e) = created {
                    println!("  a probe's create failed: {:?} after {:?}", e.code(), t.elapsed());
                }
                tokio::time::sleep(pause).await;
            }
            probes.sort_unstable();
            probes
        }
    });
    let report = client
        .import_customers(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("import")
        .into_inner();
    let seconds = start.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let probes = prober.await.unwrap();
    sender.await.unwrap();
    let (peak, _) = server.memory();
    Run {
        report,
        seconds,
        peak,
        probes,
    }
}

/// A fresh schema through the service's own migrations.
async fn schema(url: &str) -> Store {
    let store = Store::connect(url, &PoolSettings::default()).await.unwrap();
    store.migrate().await.unwrap();
    store
}

const CUSTOMER_COLUMNS: &str = "id, name, email, mobile, attributes, state, hub_access_enabled, source, revision, \
                                create_time, update_time, delete_time, ticket_count, first_ticket_time, last_ticket_time";

fn customer_id(p: usize) -> String {
    format!("00000000-0000-7000-8000-{p:012}")
}

fn org_id(o: usize) -> String {
    format!("00000000-0000-7000-9000-{o:012}")
}

fn attributes_json(p: &Person, i: usize) -> String {
    serde_json::json!({
        "department": DEPARTMENTS[i % 5],
        "organization": p.organization(),
        "role": ROLES[i % 5],
    })
    .to_string()
}

async fn create_orgs(db: &impl ConnectionTrait) {
    for o in 0..ORGS {
        db.execute_unprepared(&format!(
            "INSERT INTO organizations (id, name, live_name_key, domains, attributes, state, revision, create_time, \
             update_time) VALUES ('{}', 'Org {o}', 'org {o}', '[]', '{{}}', 'ACTIVE', 1, '2026-11-25 00:00:00+00', \
             '2026-11-25 00:00:00+00')",
            org_id(o)
        ))
        .await
        .unwrap();
    }
}

/// PostgreSQL COPY of the same customers, identities and memberships.
async fn copy_floor(url: &str, people: &[usize]) -> f64 {
    let store = schema(url).await;
    create_orgs(store.conn()).await;
    let now = "2026-11-25 00:00:00+00";
    let (mut customers, mut identities, mut members) = (Vec::new(), Vec::new(), Vec::new());
    for &i in people {
        let p = Person(i);
        let mut w = csv::Writer::from_writer(&mut customers);
        w.write_record([
            customer_id(i).as_str(),
            &p.name(),
            &p.email().unwrap_or_default(),
            &p.e164().unwrap_or_default(),
            &attributes_json(&p, i),
            "ACTIVE",
            "true",
            "IMPORT",
            "1",
            now,
            now,
            "",
            "0",
            "",
            "",
        ])
        .unwrap();
        drop(w);
        let mut w = csv::Writer::from_writer(&mut identities);
        if let Some(e) = p.email() {
            w.write_record([customer_id(i).as_str(), "email", &e, &e, "true", &e])
                .unwrap();
        }
        if let Some(m) = p.e164() {
            w.write_record([customer_id(i).as_str(), "mobile", &m, &p.mobile_cell(), "true", &m])
                .unwrap();
        }
        drop(w);
        writeln!(
            members,
            "{},{},true,false,{now},{now}",
            org_id(i % ORGS),
            customer_id(i)
        )
        .unwrap();
    }
    let pool = store.conn().get_postgres_connection_pool();
    let mut conn = pool.acquire().await.unwrap();
    let start = Instant::now();
    for (statement, data) in [
        (
            format!("COPY customers ({CUSTOMER_COLUMNS}) FROM STDIN (FORMAT csv)"),
            &customers,
        ),
        (
            "COPY customer_identities (customer_id, kind, normalized, original, is_primary, live_key) FROM STDIN \
             (FORMAT csv)"
                .to_owned(),
            &identities,
        ),
        (
            "COPY memberships (organization_id, customer_id, can_view_tickets, can_create_tickets, create_time, \
             update_time) FROM STDIN (FORMAT csv)"
                .to_owned(),
            &members,
        ),
    ] {
        let mut copy = conn.copy_in_raw(&statement).await.unwrap();
        for chunk in data.chunks(CHUNK) {
            copy.send(chunk).await.unwrap();
        }
        copy.finish().await.unwrap();
    }
    let seconds = start.elapsed().as_secs_f64();
    drop(conn);
    store.close().await.unwrap();
    seconds
}

/// A bare SQLite batch insert of the same rows into the same schema.
async fn sqlite_floor(url: &str, people: &[usize]) -> f64 {
    let store = schema(url).await;
    create_orgs(store.conn()).await;
    let pool = store.conn().get_sqlite_connection_pool().clone();
    let now = chrono::DateTime::parse_from_rfc3339("2026-11-25T00:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    const PER_STATEMENT: usize = 100;
    let start = Instant::now();
    for txn_people in people.chunks(10_000) {
        let mut txn = pool.begin().await.unwrap();
        for rows in txn_people.chunks(PER_STATEMENT) {
            let values =
                vec!["(?, ?, ?, ?, ?, 'ACTIVE', 1, 'IMPORT', 1, ?, ?, NULL, 0, NULL, NULL)"; rows.len()].join(",");
            let sql = format!("INSERT INTO customers ({CUSTOMER_COLUMNS}) VALUES {values}");
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for &i in rows {
                let p = Person(i);
                q = q
                    .bind(customer_id(i))
                    .bind(p.name())
                    .bind(p.email())
                    .bind(p.e164())
                    .bind(attributes_json(&p, i))
                    .bind(now)
                    .bind(now);
            }
            q.execute(&mut *txn).await.unwrap();

            let mut ids = Vec::new();
            for &i in rows {
                let p = Person(i);
                if let Some(e) = p.email() {
                    ids.push((i, "email", e.clone(), e));
                }
                if let Some(m) = p.e164() {
                    ids.push((i, "mobile", m.clone(), p.mobile_cell()));
                }
            }
            let values = vec!["(?, ?, ?, ?, 1, ?)"; ids.len()].join(",");
            let sql = format!(
                "INSERT INTO customer_identities (customer_id, kind, normalized, original, is_primary, live_key) \
                 VALUES {values}"
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (i, kind, key, original) in ids {
                q = q
                    .bind(customer_id(i))
                    .bind(kind)
                    .bind(key.clone())
                    .bind(original)
                    .bind(key);
            }
            q.execute(&mut *txn).await.unwrap();

            let values = vec!["(?, ?, 1, 0, ?, ?)"; rows.len()].join(",");
            let sql = format!(
                "INSERT INTO memberships (organization_id, customer_id, can_view_tickets, can_create_tickets, \
                 create_time, update_time) VALUES {values}"
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for &i in rows {
                q = q.bind(org_id(i % ORGS)).bind(customer_id(i)).bind(now).bind(now);
            }
            q.execute(&mut *txn).await.unwrap();
        }
        txn.commit().await.unwrap();
    }
    let seconds = start.elapsed().as_secs_f64();
    store.close().await.unwrap();
    seconds
}

fn report_line(label: &str, g: &Generated, run: &Run) {
    let r = &run.report;
    println!(
        "| {label} | {} | {:.1} | {:.0} | {:.1} |",
        g.rows,
        run.seconds,
        g.rows as f64 / run.seconds,
        run.peak
    );
    println!(
        "  report: received {} created {} updated {} unchanged {} skipped {} failed {} (expected created {}, failed {})",
        r.received,
        r.created,
        r.updated,
        r.unchanged,
        r.skipped,
        r.failed,
        g.people.len(),
        g.invalid
    );
    let ms = |q: f64| {
        let i = ((run.probes.len() as f64 * q).ceil() as usize).clamp(1, run.probes.len().max(1)) - 1;
        run.probes.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "  meanwhile {} CreateCustomer calls, one at a time: p50 {:.1} ms, p90 {:.1} ms, the slowest took {:.1} ms",
        run.probes.len(),
        ms(0.5),
        ms(0.9),
        ms(1.0)
    );
    assert_eq!(r.failed as usize, g.invalid, "failed");
}

#[tokio::main]
async fn main() {
    let a = args();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("import.csv");
    let t = Instant::now();
    let g = generate(&file, a.rows);
    println!(
        "import benchmark on {} cores: {} rows ({:.1} MB; {} invalid, {} repeats, {} people) generated in {:.1} s",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        g.rows,
        g.bytes as f64 / 1e6,
        g.invalid,
        g.repeats,
        g.people.len(),
        t.elapsed().as_secs_f64()
    );
    // BENCH_CSV_OUT=FILE keeps a copy of the generated file (to replay it).
    if let Ok(keep) = std::env::var("BENCH_CSV_OUT") {
        std::fs::copy(&file, keep).unwrap();
    }
    println!("\n| run | rows | seconds | rows/s | server peak RSS MiB |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let people_rate = |s: f64| g.people.len() as f64 / s;
    if a.backend == "all" || a.backend == "sqlite" {
        let url = format!("sqlite://{}", dir.path().join("import.db").display());
        let run = import(&url, &file, false, a.probe_pause).await;
        report_line("SQLite import via gRPC", &g, &run);
        assert_eq!(run.report.created as usize, g.people.len(), "created");
        let seconds = run.seconds;
        // The same file again as a dry run, over the customers it stored:
        // SQLite's dry run first copies them (src/store/snapshot.rs).
        let dry = import(&url, &file, true, a.probe_pause).await;
        report_line("SQLite dry run of it again", &g, &dry);
        assert!(
            dry.report.created == 0 && dry.report.nothing_stored,
            "a dry run over the stored file"
        );
        let floor_url = format!("sqlite://{}", dir.path().join("floor.db").display());
        let floor = sqlite_floor(&floor_url, &g.people).await;
        println!(
            "| SQLite bare batch insert ({} customers) | {} | {floor:.1} | {:.0} | - |",
            g.people.len(),
            g.people.len(),
            people_rate(floor)
        );
        println!(
            "  SQLite: {:.0} rows/s through gRPC; stored customers/s {:.0} = {:.0}% of the bare insert",
            g.rows as f64 / seconds,
            people_rate(seconds),
            100.0 * floor / seconds
        );
    }
    if a.backend == "all" || a.backend == "postgres" {
        match common::ScratchDatabase::postgres().await {
            Ok(db) => {
                let run = import(&db.url, &file, false, a.probe_pause).await;
                report_line("PostgreSQL import via gRPC", &g, &run);
                assert_eq!(run.report.created as usize, g.people.len(), "created");
                let seconds = run.seconds;
                // The dry run copies the tables too (src/store/shadow.rs).
                let dry = import(&db.url, &file, true, a.probe_pause).await;
                report_line("PostgreSQL dry run of it again", &g, &dry);
                assert!(
                    dry.report.created == 0 && dry.report.nothing_stored,
                    "a dry run over the stored file"
                );
                db.drop().await;
                let floor_db = common::ScratchDatabase::postgres().await.unwrap();
                let floor = copy_floor(&floor_db.url, &g.people).await;
                floor_db.drop().await;
                println!(
                    "| PostgreSQL COPY ({} customers) | {} | {floor:.1} | {:.0} | - |",
                    g.people.len(),
                    g.people.len(),
                    people_rate(floor)
                );
                println!(
                    "  PostgreSQL: stored customers/s {:.0} = {:.0}% of COPY",
                    people_rate(seconds),
                    100.0 * floor / seconds
                );
            }
            Err(e) => println!("\nPostgreSQL: skipped ({e}); set BENCH_POSTGRES_URL"),
        }
    }
}
