//! Shared by the benchmarks: the server binary as a child process, a
//! deterministic RNG and throwaway PostgreSQL and MySQL databases.

#![allow(dead_code)] // Each bench uses its own subset.

use std::process::{Child, Command, Stdio};

use sea_orm::{ConnectionTrait, Database, DatabaseConnection};

/// `--name value` pairs from the command line (cargo's own `--bench` is
/// skipped).
pub fn flags() -> Vec<(String, String)> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < argv.len() {
        match argv.get(i + 1) {
            Some(value) if argv[i].starts_with("--") && argv[i] != "--bench" => {
                out.push((argv[i].clone(), value.clone()));
                i += 2;
            }
            _ => i += 1,
        }
    }
    out
}

/// The server binary cargo built for this bench.
pub const BIN: &str = env!("CARGO_BIN_EXE_customer-service");

/// The binary served, as the bench's header reports it.
pub fn server_bin() -> String {
    std::env::var("BENCH_SERVER_BIN").unwrap_or_else(|_| BIN.to_owned())
}

/// The binary to serve: `BENCH_SERVER_BIN` (another build, for an A/B
/// comparison in one session), else this build's. `BENCH_SERVER_WRAP`
/// (e.g. `valgrind --tool=callgrind`) runs it under a tool.
fn server_command() -> Command {
    let bin = server_bin();
    let wrap = std::env::var("BENCH_SERVER_WRAP").unwrap_or_default();
    let mut words = wrap.split_whitespace();
    match words.next() {
        Some(tool) => {
            let mut c = Command::new(tool);
            c.args(words).arg(bin);
            c
        }
        None => Command::new(bin),
    }
}

/// Deterministic pseudo-random numbers (xorshift64*); no dependency needed.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The server binary on a free loopback port.
pub struct Server {
    child: Child,
    pub addr: String,
}

impl Server {
    pub fn start(url: &str) -> Self {
        let mut child = server_command()
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
                "--database-url",
                url,
            ])
            .env(
                "RUST_LOG",
                std::env::var("BENCH_SERVER_LOG_LEVEL").unwrap_or_else(|_| "warn,customer_service=info".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start server");
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("server exited").unwrap();
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if v["message"] == "listening" {
                break v["addr"].as_str().unwrap().to_owned();
            }
        };
        // BENCH_SERVER_LOG=FILE keeps the server's log for profiling.
        let mut keep = std::env::var("BENCH_SERVER_LOG")
            .ok()
            .and_then(|p| std::fs::File::create(p).ok());
        std::thread::spawn(move || {
            use std::io::Write;
            for line in lines.map_while(Result::ok) {
                if let Some(f) = keep.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
            }
        });
        Self { child, addr }
    }

    /// CPU time the server has used so far (user + system, all threads),
    /// seconds; `None` where `/proc` is missing.
    pub fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds(&self.child.id().to_string())
    }

    /// Peak and current resident memory, MiB.
    pub fn memory(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let kib = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (kib("VmHWM:") / 1024.0, kib("VmRSS:") / 1024.0)
    }
}

/// CPU time of a process (`self` or a pid) from `/proc/<pid>/stat`: utime and
/// stime, fields 14 and 15, in Linux's fixed 100 Hz clock ticks.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after it are plain.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// CPU seconds so far of every process named `name` on this machine, by
/// pid: a local database server's postmaster and backends. Empty where
/// `/proc` is missing or the database runs elsewhere.
pub fn cpu_by_process(name: &str) -> std::collections::HashMap<u32, f64> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Default::default();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim_end() == name))
        .filter_map(|pid| Some((pid, cpu_seconds(&pid.to_string())?)))
        .collect()
}

/// The CPU the processes in `after` used since `before`. A process that
/// exited in between is missed; one that started counts from its start.
pub fn cpu_since(
    before: &std::collections::HashMap<u32, f64>,
    after: &std::collections::HashMap<u32, f64>,
) -> Option<f64> {
    (!after.is_empty()).then(|| {
        after
            .iter()
            .map(|(pid, now)| now - before.get(pid).copied().unwrap_or(0.0))
            .sum()
    })
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// A throwaway database on a server the bench does not start.
pub struct ScratchDatabase {
    admin: DatabaseConnection,
    drop_sql: String,
    pub url: String,
}

impl ScratchDatabase {
    /// On BENCH_POSTGRES_URL's server, or says why not.
    pub async fn postgres() -> Result<Self, sea_orm::DbErr> {
        let admin_url =
            std::env::var("BENCH_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        // e.g. `TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'`:
        // the linguistic collation many production databases default to.
        let clauses = std::env::var("BENCH_POSTGRES_CREATE").unwrap_or_default();
        Self::create(&admin_url, &clauses, "WITH (FORCE)").await
    }

    /// On BENCH_MYSQL_URL's MySQL or MariaDB server, or says why not.
    pub async fn mysql() -> Result<Self, sea_orm::DbErr> {
        let admin_url = std::env::var("BENCH_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
        Self::create(&admin_url, "", "").await
    }

    async fn create(admin_url: &str, create_clauses: &str, drop_clauses: &str) -> Result<Self, sea_orm::DbErr> {
        let admin = Database::connect(admin_url).await?;
        let name = format!("cs_bench_{}_{}", std::process::id(), rand_suffix());
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name} {create_clauses}"))
            .await?;
        // The admin URL's options (`?sslmode=...`) apply to the new database too.
        let (base, options) = match admin_url.find('?') {
            Some(at) => admin_url.split_at(at),
            None => (admin_url, ""),
        };
        let server = base.rsplit_once('/').map_or(base, |p| p.0);
        Ok(Self {
            admin,
            drop_sql: format!("DROP DATABASE IF EXISTS {name} {drop_clauses}"),
            url: format!("{server}/{name}{options}"),
        })
    }

    /// Drops it.
    pub async fn drop(self) {
        let _ = self.admin.execute_unprepared(&self.drop_sql).await;
    }
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
}
