//! Intake benchmark: drives the real server binary over loopback.
//!
//! `cargo bench --bench intake -- [--seconds 30] [--concurrency 64]
//!  [--seed 10000] [--backend all|sqlite|postgres|mysql] [--ticket-ids sequential|per-caller]
//!  [--slices 6]`
//!
//! `all` is SQLite and PostgreSQL; `mysql` (MySQL or MariaDB, from
//! `BENCH_MYSQL_URL`) runs only when asked for.
//!
//! For each backend: a fresh database, `--seed` customers, then
//! ResolveTicketCustomer at `--concurrency` calls in flight for `--seconds`
//! (90% existing requesters, a third of those by mobile only; 10% new, half
//! of them mobile-only), and the gRPC ceiling: health Check, a trivial
//! unary RPC on the same server and the same client settings. The two take
//! turns in `--slices` slices each (default 6: 5 s at a time), so that a
//! shared machine's drift in speed weighs on both sides of their ratio.
//! Prints calls/s, the latency at p50/p90/p99/p99.9 and of the slowest
//! call, the CPU per call of the server, of this client and of a local
//! database server's processes (steadier than calls/s on a shared machine), the
//! ratio that CPU allows, intake's mean latency beside the calls in flight
//! over calls/s, the ratio in each turn, and the server's peak RSS.
//!
//! Ticket ids are `T` and a zero-padded number counting up across callers,
//! as a ticketing platform issues them (`--ticket-ids per-caller`: one
//! sequence per caller, `bench-<caller>-<n>`, the ids of earlier figures).

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

mod common;

use common::{Rng, Server};
use customer_service::proto::v1::{
    self as pb, customer_service_client::CustomerServiceClient, ticket_intake_service_client::TicketIntakeServiceClient,
};
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

/// Workers share this many HTTP/2 connections (same for every scenario).
const CHANNELS: usize = 4;

struct Args {
    seconds: u64,
    concurrency: usize,
    seed: usize,
    backend: String,
    sequential_ids: bool,
    slices: u64,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 30,
        concurrency: 64,
        seed: 10_000,
        backend: "all".into(),
        sequential_ids: true,
        slices: 6,
    };
    for (flag, value) in common::flags() {
        match flag.as_str() {
            "--seconds" => a.seconds = value.parse().expect("--seconds N"),
            "--concurrency" => a.concurrency = value.parse().expect("--concurrency N"),
            "--seed" => a.seed = value.parse().expect("--seed N"),
            "--backend" => {
                assert!(
                    ["all", "sqlite", "postgres", "mysql"].contains(&value.as_str()),
                    "--backend all|sqlite|postgres|mysql, not {value}"
                );
                a.backend = value
            }
            "--slices" => a.slices = value.parse::<u64>().expect("--slices N").max(1),
            "--ticket-ids" => {
                a.sequential_ids = match value.as_str() {
                    "sequential" => true,
                    "per-caller" => false,
                    other => panic!("--ticket-ids sequential|per-caller, not {other}"),
                }
            }
            other => panic!("unknown option {other}"),
        }
    }
    a
}

fn seeded_email(i: usize) -> String {
    format!("seed{i}@bench.example.com")
}
fn seeded_mobile(i: usize) -> String {
    format!("+4479110{i:05}")
}

async fn channels(addr: &str) -> Vec<Channel> {
    let mut out = Vec::new();
    for _ in 0..CHANNELS {
        out.push(
            Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
                .expect("connect"),
        );
    }
    let mut health = HealthClient::new(out[0].clone());
    for _ in 0..400 {
        if let Ok(r) = health.check(HealthCheckRequest { service: String::new() }).await
            && r.into_inner().status == ServingStatus::Serving as i32
        {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("server never became SERVING");
}

async fn seed(channels: &[Channel], n: usize, concurrency: usize) -> f64 {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let workers = (0..concurrency).map(|w| {
        let mut client = CustomerServiceClient::new(channels[w % channels.len()].clone());
        let next = next.clone();
        tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= n {
                    break;
                }
                let customer = pb::Customer {
                    name: format!("Seed Customer {i}"),
                    email: seeded_email(i),
                    mobile: seeded_mobile(i),
                    attributes: [("organization".to_owned(), format!("Org {}", i % 500))].into(),
                    ..Default::default()
                };
                client
                    .create_customer(pb::CreateCustomerRequest {
                        customer: Some(customer),
                        request_id: String::new(),
                    })
                    .await
                    .expect("seed create");
            }
        })
    });
    for w in workers.collect::<Vec<_>>() {
        w.await.unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

struct Outcome {
    calls: usize,
    errors: usize,
    seconds: f64,
    latencies_us: Vec<u32>,
    /// CPU seconds used during the run; `None` without `/proc`.
    cpu: Option<Cpu>,
}

/// CPU seconds of the server, this client and a local database server
/// (`None` for SQLite, in the server's process, or a remote database).
#[derive(Clone, Copy)]
struct Cpu {
    server: f64,
    client: f64,
    database: Option<f64>,
}

impl Cpu {
    fn add(self, other: Cpu) -> Cpu {
        Cpu {
            server: self.server + other.server,
            client: self.client + other.client,
            database: self.database.zip(other.database).map(|(a, b)| a + b),
        }
    }

    fn total(&self) -> f64 {
        self.server + self.client + self.database.unwrap_or(0.0)
    }
}

impl Outcome {
    fn rate(&self) -> f64 {
        self.calls as f64 / self.seconds
    }

    /// Turns as one run.
    fn total(turns: Vec<Outcome>) -> Outcome {
        let mut all = turns
            .into_iter()
            .reduce(|mut a, b| {
                a.calls += b.calls;
                a.errors += b.errors;
                a.seconds += b.seconds;
                a.latencies_us.extend(b.latencies_us);
                a.cpu = a.cpu.zip(b.cpu).map(|(x, y)| x.add(y));
                a
            })
            .expect("at least one turn");
        all.latencies_us.sort_unstable();
        all
    }

    /// Server, client and database CPU per call, µs, or "n/a".
    fn cpu_per_call(&self) -> [String; 3] {
        let per_call =
            |s: Option<f64>| s.map_or("n/a".into(), |s| format!("{:.1}", s * 1e6 / self.calls.max(1) as f64));
        let cpu = self.cpu.as_ref();
        [
            per_call(cpu.map(|c| c.server)),
            per_call(cpu.map(|c| c.client)),
            per_call(cpu.and_then(|c| c.database)),
        ]
    }

    /// All the CPU a call cost on this machine, seconds.
    fn cpu_each(&self) -> Option<f64> {
        self.cpu.map(|c| c.total() / self.calls.max(1) as f64)
    }

    fn mean_ms(&self) -> f64 {
        let sum: u64 = self.latencies_us.iter().map(|&l| u64::from(l)).sum();
        sum as f64 / self.latencies_us.len().max(1) as f64 / 1000.0
    }

    fn pct(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let idx = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us[idx] as f64 / 1000.0
    }
}

/// CPU seconds used so far by the server, by this process and by the
/// local database server's processes.
fn cpu_now(server: &Server, database: Option<&str>) -> Option<(f64, f64, HashMap<u32, f64>)> {
    let db = database.map(common::cpu_by_process).unwrap_or_default();
    Some((server.cpu_seconds()?, common::cpu_seconds("self")?, db))
}

/// Runs `call(worker, sequence)` from one worker per entry of `next_seq` for
/// `seconds`. Each worker's sequence goes on from where its last slice left
/// it, so that no slice repeats another's requests.
async fn drive<F, Fut>(
    server: &Server,
    database: Option<&str>,
    seconds: u64,
    next_seq: &Arc<[AtomicU64]>,
    call: &Arc<F>,
) -> Outcome
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let cpu_before = cpu_now(server, database);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let workers: Vec<_> = (0..next_seq.len())
        .map(|w| {
            let (call, stop, next_seq) = (call.clone(), stop.clone(), next_seq.clone());
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(1 << 16);
                let mut errors = 0;
                let mut seq = next_seq[w].load(Ordering::Relaxed);
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    if !call(w, seq).await {
                        errors += 1;
                    }
                    lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    seq += 1;
                }
                next_seq[w].store(seq, Ordering::Relaxed);
                (lat, errors)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies_us = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (lat, e) = w.await.unwrap();
        latencies_us.extend(lat);
        errors += e;
    }
    let seconds = start.elapsed().as_secs_f64();
    let cpu = cpu_before
        .zip(cpu_now(server, database))
        .map(|((s0, c0, d0), (s1, c1, d1))| Cpu {
            server: s1 - s0,
            client: c1 - c0,
            database: common::cpu_since(&d0, &d1),
        });
    Outcome {
        calls: latencies_us.len(),
        errors,
        seconds,
        latencies_us,
        cpu,
    }
}

/// `database`: the process name of a database server on this machine,
/// whose CPU counts as the calls' too.
async fn bench_backend(label: &str, url: &str, database: Option<&str>, a: &Args) {
    let server = Server::start(url);
    let chans = channels(&server.addr).await;
    let seed_rate = seed(&chans, a.seed, a.concurrency).await;

    let seeded = a.seed as u64;
    let intake_clients: Vec<_> = chans
        .iter()
        .map(|c| TicketIntakeServiceClient::new(c.clone()))
        .collect();
    let next_ticket = AtomicU64::new(1);
    let sequential_ids = a.sequential_ids;
    let intake_call = Arc::new(move |w: usize, seq: u64| {
        let mut client = intake_clients[w % CHANNELS].clone();
        let ticket_id = if sequential_ids {
            format!("T{:010}", next_ticket.fetch_add(1, Ordering::Relaxed))
        } else {
            format!("bench-{w}-{seq}")
        };
        async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((w as u64) << 32) ^ seq);
            let roll = rng.below(100);
            let (email, mobile) = if roll < 90 {
                let i = rng.below(seeded) as usize;
                if roll < 60 {
                    (seeded_email(i), String::new())
                } else {
                    (String::new(), seeded_mobile(i))
                }
            } else if roll < 95 {
                (format!("new-{w}-{seq}@bench.example.com"), String::new())
            } else {
                (
                    String::new(),
                    format!("+447915{:06}", (w as u64 * 15_000 + seq) % 1_000_000),
                )
            };
            let req = pb::ResolveTicketCustomerRequest {
                ticket_id,
                name: "Bench".into(),
                email,
                mobile,
                ..Default::default()
            };
            client.resolve_ticket_customer(req).await.is_ok()
        }
    });

    let health_clients: Vec<_> = chans.iter().map(|c| HealthClient::new(c.clone())).collect();
    let trivial_call = Arc::new(move |w: usize, _| {
        let mut client = health_clients[w % CHANNELS].clone();
        async move {
            client
                .check(HealthCheckRequest { service: String::new() })
                .await
                .is_ok()
        }
    });

    // Intake and the trivial RPC take turns, slice by slice.
    let counters = || -> Arc<[AtomicU64]> { (0..a.concurrency).map(|_| AtomicU64::new(0)).collect() };
    let (intake_seq, trivial_seq) = (counters(), counters());
    let slice = (a.seconds / a.slices).max(1);
    let (mut intake, mut trivial, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..a.slices {
        let i = drive(&server, database, slice, &intake_seq, &intake_call).await;
        let t = drive(&server, database, slice, &trivial_seq, &trivial_call).await;
        ratios.push(100.0 * i.rate() / t.rate());
        intake.push(i);
        trivial.push(t);
    }
    let (intake, trivial) = (Outcome::total(intake), Outcome::total(trivial));

    let (peak, now) = server.memory();
    println!(
        "\n## {label}  ({} in flight, {} s each in {} turns, {} seeded customers, seeded at {seed_rate:.0}/s)",
        a.concurrency,
        slice * a.slices,
        a.slices,
        a.seed
    );
    println!(
        "| RPC | calls/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors | server CPU µs/call | client CPU µs/call | database CPU µs/call |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (name, o) in [("ResolveTicketCustomer", &intake), ("Health/Check (trivial)", &trivial)] {
        let [server_cpu, client_cpu, db_cpu] = o.cpu_per_call();
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {server_cpu} | {client_cpu} | {db_cpu} |",
            o.rate(),
            o.pct(0.5),
            o.pct(0.9),
            o.pct(0.99),
            o.pct(0.999),
            o.pct(1.0),
            o.errors
        );
    }
    println!("intake / trivial = {:.1}%", 100.0 * intake.rate() / trivial.rate());
    // Were the cores fully busy in both, the ratio would be this.
    if let Some((i, t)) = intake.cpu_each().zip(trivial.cpu_each()) {
        println!("CPU per call, trivial / intake = {:.1}%", 100.0 * t / i);
    }
    // A closed loop: the mean latency is the calls in flight over calls/s
    // (Little's law), so at a given spread p99 moves with calls/s.
    println!(
        "intake latency: mean {:.2} ms ({} in flight / calls/s = {:.2} ms), p99 / mean = {:.2}",
        intake.mean_ms(),
        a.concurrency,
        1000.0 * a.concurrency as f64 / intake.rate(),
        intake.pct(0.99) / intake.mean_ms()
    );
    let ratios: Vec<String> = ratios.iter().map(|r| format!("{r:.1}%")).collect();
    println!("per turn: {}", ratios.join(", "));
    println!("server RSS: peak {peak:.1} MiB, now {now:.1} MiB");
}

#[tokio::main]
async fn main() {
    let a = args();
    println!(
        "intake benchmark on {} cores; server = {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        common::server_bin()
    );
    if a.backend == "all" || a.backend == "sqlite" {
        let dir = tempfile::tempdir().unwrap();
        bench_backend(
            "SQLite",
            &format!("sqlite://{}", dir.path().join("bench.db").display()),
            None,
            &a,
        )
        .await;
    }
    if a.backend == "all" || a.backend == "postgres" {
        match common::ScratchDatabase::postgres().await {
            Ok(db) => {
                bench_backend("PostgreSQL", &db.url, Some("postgres"), &a).await;
                db.drop().await;
            }
            Err(e) => println!("\n## PostgreSQL: skipped ({e}); set BENCH_POSTGRES_URL"),
        }
    }
    if a.backend == "mysql" {
        match common::ScratchDatabase::mysql().await {
            Ok(db) => {
                let process = ["mariadbd", "mysqld"]
                    .into_iter()
                    .find(|name| !common::cpu_by_process(name).is_empty());
                bench_backend("MySQL/MariaDB", &db.url, process, &a).await;
                db.drop().await;
            }
            Err(e) => println!("\n## MySQL/MariaDB: skipped ({e}); set BENCH_MYSQL_URL"),
        }
    }
}
