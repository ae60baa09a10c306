//! `renewgate bench`: the load benchmark (issue 8). It starts its own gateway as a child process
//! (or targets a running one), creates certificate objects up front, renews them with C
//! concurrent keep-alive HTTPS clients for a fixed time, and compares the gateway's rate with the
//! raw single-thread cost of the crypto one renewal needs, measured in the same run. Output: one
//! human line per run while it goes, then one JSON object per line per (workload, backend, clients).
pub mod acme;
pub mod client;
pub mod console;
pub mod gateway;
mod latency;
pub mod raw;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{Value, json};

use crate::db::bench_support;
use gateway::{Deployment, Store};
use latency::Latencies;

pub const WORKLOADS: &[&str] = &["csr-ec", "keygen-ec", "keygen-rsa", "keyfactor-resign", "acme", "acme-pebble"];
/// The console's page latencies (not a renewal workload: only run when named).
pub const CONSOLE: &str = "console";

const FOLDER_CSR: &str = "\\VED\\Policy\\Bench\\Csr";
const FOLDER_KEYGEN_EC: &str = "\\VED\\Policy\\Bench\\KeygenEc";
const FOLDER_KEYGEN_RSA: &str = "\\VED\\Policy\\Bench\\KeygenRsa";
const FOLDER_ACME: &str = "\\VED\\Policy\\Bench\\Acme";
const FOLDER_FILL: &str = "\\VED\\Policy\\Bench\\Inventory";
/// Objects created through the API; more than this are cloned in the database (inventory scale).
const API_SEED_MAX: usize = 10_000;
/// keygen-rsa renews a few per second: it needs no more objects than this.
const RSA_OBJECTS_MAX: usize = 1_000;
/// Every this-many successful renewals per client, the certificate's chain is checked.
const CHAIN_SAMPLE_EVERY: u64 = 25;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// How long each run lasts (e.g. 20s, 1m).
    #[arg(long, default_value = "20s")]
    pub duration: String,
    /// Concurrent clients: one number or a comma-separated list (one run each).
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub clients: Vec<usize>,
    /// Run only this workload: csr-ec, keygen-ec, keygen-rsa, keyfactor-resign, acme, acme-pebble
    /// (comma-separated for several). Default: all of these. `console` (only when named): the web
    /// console's page latencies at `--objects`.
    #[arg(long, value_delimiter = ',')]
    pub workload: Vec<String>,
    /// Storage backend of the gateway the bench starts: sqlite, postgres (comma-separated for both).
    #[arg(long, value_delimiter = ',', default_value = "sqlite")]
    pub backend: Vec<String>,
    /// PostgreSQL server for `--backend postgres`: the bench creates a fresh database there and drops it after.
    #[arg(long, env = "RENEWGATE_BENCH_DATABASE_URL", default_value = "postgres://root@127.0.0.1:5432/postgres")]
    pub database_url: String,
    /// Certificate objects created up front. Up to 10,000 through the API; beyond that, the rest
    /// are cloned directly in the database (inventory scale).
    #[arg(long, default_value_t = 10_000)]
    pub objects: usize,
    /// Measure a running gateway (https://host:port) instead of starting one; needs --token and --ca-bundle.
    #[arg(long)]
    pub target: Option<String>,
    /// With --target: a bearer token with the certificate:manage scope.
    #[arg(long, env = "RENEWGATE_BENCH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// With --target: the gateway's CA bundle (PEM).
    #[arg(long)]
    pub ca_bundle: Option<PathBuf>,
    /// With --target: the gateway's process id, for its peak RSS.
    #[arg(long)]
    pub target_pid: Option<u32>,
    /// Gateway instances on the one database (PostgreSQL); clients are spread over them.
    #[arg(long, default_value_t = 1)]
    pub instances: usize,
    /// Print the query plans of the request-path lookups (always printed beyond 10,000 objects).
    #[arg(long)]
    pub explain: bool,
    /// The pebble binary for the acme-pebble workload.
    #[arg(long, default_value = "/usr/bin/pebble")]
    pub pebble: PathBuf,
    /// Keep the temporary directory (logs, SQLite file) instead of removing it.
    #[arg(long)]
    pub keep: bool,
}

/// One certificate object a client renews.
#[derive(Clone)]
struct Obj {
    dn: String,
    csr_pem: Option<String>,
    last_serial: String,
    thumbprint: String,
}

#[derive(Default)]
struct ClientResult {
    renewals: u64,
    errors: u64,
    latencies: Latencies,
    chain_checks: u64,
    error_samples: Vec<String>,
}

impl ClientResult {
    fn error(&mut self, msg: String) {
        self.errors += 1;
        if self.error_samples.len() < 3 {
            self.error_samples.push(msg);
        }
    }
}

struct RunResult {
    renewals: u64,
    errors: u64,
    elapsed: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    chain_checks: u64,
    error_samples: Vec<String>,
}

fn combine(results: Vec<ClientResult>, elapsed: f64) -> RunResult {
    let mut lat = Latencies::default();
    let (mut renewals, mut errors, mut chain_checks, mut samples) = (0, 0, 0, vec![]);
    for r in results {
        renewals += r.renewals;
        errors += r.errors;
        chain_checks += r.chain_checks;
        lat.add(&r.latencies);
        for s in r.error_samples {
            if samples.len() < 5 && !samples.contains(&s) {
                samples.push(s);
            }
        }
    }
    RunResult {
        renewals,
        errors,
        elapsed,
        p50: lat.percentile_ms(50.0),
        p90: lat.percentile_ms(90.0),
        p99: lat.percentile_ms(99.0),
        chain_checks,
        error_samples: samples,
    }
}

/// Runs `clients` threads for `duration`; each gets its share of `objs` and a factory-made state.
/// `op` does one renewal and says whether it counted.
fn drive<S: Send + 'static>(
    clients: usize,
    duration: Duration,
    objs: Vec<Obj>,
    make: impl Fn(usize) -> anyhow::Result<S>,
    op: impl Fn(&mut S, &mut Obj, u64) -> Result<bool, String> + Send + Sync + 'static,
) -> anyhow::Result<(RunResult, Vec<Obj>)> {
    let clients = clients.max(1);
    let mut parts: Vec<Vec<Obj>> = (0..clients).map(|_| vec![]).collect();
    for (i, o) in objs.into_iter().enumerate() {
        parts[i % clients].push(o);
    }
    let states = (0..clients).map(&make).collect::<anyhow::Result<Vec<S>>>()?;
    let barrier = Arc::new(Barrier::new(clients + 1));
    let op = Arc::new(op);
    let mut handles = vec![];
    for (mut part, mut st) in parts.into_iter().zip(states) {
        let barrier = barrier.clone();
        let op = op.clone();
        handles.push(std::thread::spawn(move || {
            let mut r = ClientResult::default();
            barrier.wait();
            let deadline = Instant::now() + duration;
            let mut i = 0usize;
            let mut seq = 0u64;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let outcome = if part.is_empty() {
                    let mut scratch =
                        Obj { dn: String::new(), csr_pem: None, last_serial: String::new(), thumbprint: String::new() };
                    op(&mut st, &mut scratch, seq)
                } else {
                    let n = part.len();
                    op(&mut st, &mut part[i % n], seq)
                };
                let elapsed = t0.elapsed();
                i += 1;
                match outcome {
                    Ok(checked) => {
                        r.renewals += 1;
                        r.latencies.record(elapsed);
                        if checked {
                            r.chain_checks += 1;
                        }
                    }
                    Err(e) => r.error(e),
                }
                seq += 1;
            }
            (r, part)
        }));
    }
    barrier.wait();
    let start = Instant::now();
    // The clients' set-up (one TLS context and handshake each) is not a renewal's cost.
    *WINDOW_BENCH_CPU.lock().unwrap_or_else(|e| e.into_inner()) = Some(own_cpu_seconds());
    let mut results = vec![];
    let mut objs = vec![];
    for h in handles {
        let (r, part) = h.join().map_err(|_| anyhow::anyhow!("a client thread panicked"))?;
        results.push(r);
        objs.extend(part);
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok((combine(results, elapsed), objs))
}

/// Checks a Venafi Renew answer: 200, a certificate, a serial new for the object; every
/// CHAIN_SAMPLE_EVERY-th one also verified against the CA bundle.
fn check_venafi(
    store: &openssl::x509::store::X509Store,
    obj: &mut Obj,
    seq: u64,
    status: u16,
    body: &Value,
) -> Result<bool, String> {
    if status != 200 {
        return Err(format!("HTTP {status}: {}", short(body)));
    }
    let pem = client::pem_of(body).ok_or_else(|| format!("200 without a certificate: {}", short(body)))?;
    let der = client::first_der(&pem).ok_or_else(|| format!("200 without a certificate: {}", short(body)))?;
    let serial = client::serial_of_der(&der).ok_or_else(|| format!("{}: unreadable certificate", obj.dn))?;
    if serial == obj.last_serial {
        return Err(format!("{}: the answer carries the old serial {serial}", obj.dn));
    }
    obj.last_serial = serial;
    obj.thumbprint = client::sha1_thumbprint(&der);
    if seq.is_multiple_of(CHAIN_SAMPLE_EVERY) {
        let certs = client::certs_of(body).ok_or_else(|| format!("{}: unreadable certificates", obj.dn))?;
        if client::serial_of_der(&certs[0].to_der().unwrap_or_default()).as_deref() != Some(obj.last_serial.as_str()) {
            return Err(format!("{}: the serial read from the DER is not the certificate's", obj.dn));
        }
        if !client::chains_to(store, &certs[0], &certs[1..]) {
            return Err(format!("{}: the new certificate does not chain to the CA bundle", obj.dn));
        }
        return Ok(true);
    }
    Ok(false)
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    s.chars().take(200).collect()
}

/// What a workload's runs are compared with.
fn raw_parts(workload: &str, raw: &raw::RawRates) -> (f64, BTreeMap<&'static str, f64>) {
    let mut parts = BTreeMap::new();
    let total = match workload {
        "csr-ec" | "acme" | "acme-pebble" => {
            parts.insert("raw_csr_verify_per_s", raw.csr_verify);
            parts.insert("raw_leaf_sign_per_s", raw.leaf_sign_ec);
            raw::serial_rate(&[raw.csr_verify, raw.leaf_sign_ec])
        }
        "keygen-ec" => {
            parts.insert("raw_keygen_per_s", raw.keygen_ec);
            parts.insert("raw_leaf_sign_per_s", raw.leaf_sign_ec);
            raw::serial_rate(&[raw.keygen_ec, raw.leaf_sign_ec])
        }
        "keygen-rsa" => {
            parts.insert("raw_keygen_per_s", raw.keygen_rsa);
            parts.insert("raw_leaf_sign_per_s", raw.leaf_sign_rsa);
            raw::serial_rate(&[raw.keygen_rsa, raw.leaf_sign_rsa])
        }
        _ => {
            // keyfactor-resign: the key is known; only the leaf is built and signed.
            parts.insert("raw_leaf_sign_per_s", raw.leaf_sign_ec);
            raw.leaf_sign_ec
        }
    };
    (total, parts)
}

fn round(x: f64, places: i32) -> f64 {
    let m = 10f64.powi(places);
    (x * m).round() / m
}

/// The gateway(s) being measured: either started here or given by --target.
struct Under {
    deployment: Option<Deployment>,
    urls: Vec<String>,
    ca_pem: Vec<u8>,
    auth: String,
    pids: Vec<u32>,
    backend: String,
    eab: Option<(String, String)>,
    /// CPU seconds of the gateway(s), of this process, stolen from the machine, and the wall
    /// clock, when the current run started (`reset_rss`).
    cpu_mark: std::cell::Cell<Option<CpuMark>>,
}

#[derive(Clone, Copy)]
struct CpuMark {
    gateway_s: f64,
    bench_s: f64,
    steal_s: f64,
    at: Instant,
}

/// CPU use over one run: per renewal for the gateway(s) and for the load generator (this
/// process), and the cores the hypervisor took from the machine meanwhile.
#[derive(Clone, Copy)]
struct CpuUse {
    gateway_ms_per_renewal: f64,
    bench_ms_per_renewal: f64,
    steal_cores: f64,
}

/// This process's CPU seconds when the last measured window opened (set by `drive`).
static WINDOW_BENCH_CPU: std::sync::Mutex<Option<f64>> = std::sync::Mutex::new(None);

fn own_cpu_seconds() -> f64 {
    gateway::cpu_seconds(std::process::id()).unwrap_or(0.0)
}

impl Under {
    fn cpu_now(&self) -> CpuMark {
        CpuMark {
            gateway_s: self.pids.iter().filter_map(|p| gateway::cpu_seconds(*p)).sum(),
            bench_s: own_cpu_seconds(),
            steal_s: gateway::steal_seconds().unwrap_or(0.0),
            at: Instant::now(),
        }
    }

    /// CPU used since the run started, over `renewals`; None without the gateway's pid.
    fn cpu_use(&self, renewals: u64) -> Option<CpuUse> {
        let start = self.cpu_mark.get()?;
        if self.pids.is_empty() || renewals == 0 {
            return None;
        }
        let end = self.cpu_now();
        let bench_start = WINDOW_BENCH_CPU.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or(start.bench_s);
        let n = renewals as f64;
        Some(CpuUse {
            gateway_ms_per_renewal: (end.gateway_s - start.gateway_s) * 1000.0 / n,
            bench_ms_per_renewal: (end.bench_s - bench_start.max(start.bench_s)) * 1000.0 / n,
            steal_cores: (end.steal_s - start.steal_s) / end.at.duration_since(start.at).as_secs_f64().max(1e-9),
        })
    }

    fn peak_rss(&self) -> Option<f64> {
        self.pids.iter().filter_map(|p| gateway::peak_rss_mb(*p)).reduce(f64::max)
    }

    fn reset_rss(&self) {
        for p in &self.pids {
            gateway::reset_peak_rss(*p);
        }
        self.cpu_mark.set(Some(self.cpu_now()));
        *WINDOW_BENCH_CPU.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

struct Ctx {
    args: BenchArgs,
    duration: Duration,
    raw: raw::RawRates,
    speed: raw::OpensslSpeed,
    lines: Vec<Value>,
    failed: bool,
}

/// Entry point; returns the exit code (1 when any run had errors or could not run).
pub fn run(args: BenchArgs) -> anyhow::Result<i32> {
    let duration = crate::settings::parse_duration(&args.duration)?;
    let workloads: Vec<String> = if args.workload.is_empty() {
        WORKLOADS.iter().map(|s| s.to_string()).collect()
    } else {
        args.workload.clone()
    };
    for w in &workloads {
        anyhow::ensure!(
            WORKLOADS.contains(&w.as_str()) || w == CONSOLE,
            "unknown workload {w:?}; known: {}, {CONSOLE}",
            WORKLOADS.join(", ")
        );
    }
    for b in &args.backend {
        anyhow::ensure!(b == "sqlite" || b == "postgres", "unknown backend {b:?}: sqlite or postgres");
    }
    anyhow::ensure!(args.clients.iter().all(|c| *c > 0), "--clients must be positive");
    anyhow::ensure!(args.instances >= 1, "--instances must be at least 1");
    // A gateway on SQLite holds its data directory's lock: a second one would refuse to start.
    anyhow::ensure!(
        args.instances == 1 || args.backend.iter().all(|b| b == "postgres"),
        "--instances {} needs --backend postgres: one SQLite database serves one gateway",
        args.instances
    );
    eprintln!("bench: measuring the raw single-thread crypto rates");
    let raw = raw::measure(workloads.iter().any(|w| w == "keygen-rsa"))?;
    let speed = raw::openssl_speed();
    println!(
        "raw single-thread: csr parse+verify {:.0}/s, leaf build+sign (P-256 CA) EC {:.0}/s RSA-key {:.0}/s, keygen EC P-256 {:.0}/s RSA-2048 {:.1}/s",
        raw.csr_verify, raw.leaf_sign_ec, raw.leaf_sign_rsa, raw.keygen_ec, raw.keygen_rsa
    );
    println!("openssl speed -seconds 1 ecdsap256: {}", speed.line);
    let mut ctx = Ctx { args, duration, raw, speed, lines: vec![], failed: false };
    let backends = ctx.args.backend.clone();
    for backend in &backends {
        if let Err(e) = run_backend(&mut ctx, backend, &workloads) {
            println!("error: backend {backend}: {e:#}");
            ctx.failed = true;
        }
    }
    // acme vs acme-pebble: both rates and their ratio on both lines.
    let rate_of = |lines: &[Value], w: &str, b: &str, c: u64| {
        lines
            .iter()
            .find(|l| l["workload"] == w && l["backend"] == b && l["clients"] == c)
            .and_then(|l| l["renewals_per_s"].as_f64())
    };
    let snapshot = ctx.lines.clone();
    for l in ctx.lines.iter_mut() {
        if l["workload"] == "acme" || l["workload"] == "acme-pebble" {
            let b = l["backend"].as_str().unwrap_or_default().to_string();
            let c = l["clients"].as_u64().unwrap_or_default();
            if let (Some(g), Some(p)) = (rate_of(&snapshot, "acme", &b, c), rate_of(&snapshot, "acme-pebble", &b, c))
                && p > 0.0
            {
                l["acme_per_s"] = json!(g);
                l["pebble_per_s"] = json!(p);
                l["acme_over_pebble"] = json!(round(g / p, 3));
                if l["workload"] == "acme" {
                    println!(
                        "acme vs pebble ({b}, {c} clients): gateway {g:.1}/s, pebble {p:.1}/s, ratio {:.2}",
                        g / p
                    );
                }
            }
        }
    }
    // The summary: one JSON object per line, the selected workload's last.
    for l in &ctx.lines {
        println!("{l}");
    }
    Ok(if ctx.failed { 1 } else { 0 })
}

fn run_backend(ctx: &mut Ctx, backend: &str, workloads: &[String]) -> anyhow::Result<()> {
    let tmp = std::env::temp_dir().join(format!("renewgate-bench-{}", &crate::db::new_guid()[..8]));
    std::fs::create_dir_all(&tmp)?;
    let mut under = match setup(ctx, backend, &tmp, workloads) {
        Ok(u) => u,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    let result = run_workloads(ctx, &mut under, &tmp, workloads);
    if let Some(d) = under.deployment.as_mut() {
        d.teardown();
    }
    if ctx.args.keep {
        eprintln!("bench: kept {}", tmp.display());
    } else {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

fn setup(ctx: &Ctx, backend: &str, tmp: &std::path::Path, workloads: &[String]) -> anyhow::Result<Under> {
    if let Some(target) = &ctx.args.target {
        let token = ctx.args.token.clone().ok_or_else(|| anyhow::anyhow!("--target needs --token"))?;
        let ca = ctx.args.ca_bundle.clone().ok_or_else(|| anyhow::anyhow!("--target needs --ca-bundle"))?;
        return Ok(Under {
            deployment: None,
            urls: vec![target.trim_end_matches('/').to_string()],
            ca_pem: std::fs::read(&ca)?,
            auth: format!("Bearer {token}"),
            pids: ctx.args.target_pid.into_iter().collect(),
            backend: "target".into(),
            eab: None,
            cpu_mark: Default::default(),
        });
    }
    let store = match backend {
        "postgres" => Store::new_postgres(&ctx.args.database_url)?,
        _ => Store::Sqlite,
    };
    let mut env = BTreeMap::new();
    // The workloads wait for their certificate (WorkToDoTimeout 10); nothing else to tune.
    env.insert("RENEWGATE_LOG__LEVEL".to_string(), "info".to_string());
    let mut d = Deployment::new(tmp, store, env);
    let r = (|| -> anyhow::Result<Under> {
        eprintln!("bench: starting the gateway ({backend})");
        let mut urls = vec![d.start()?];
        let needs = |w: &str| workloads.iter().any(|x| x == w);
        d.cli(&["policy", "set", FOLDER_CSR, "key_reuse=true"])?;
        d.cli(&["policy", "set", FOLDER_KEYGEN_EC, "key_algorithm=ECC", "ec_curves=P256"])?;
        d.cli(&["policy", "set", FOLDER_KEYGEN_RSA, "key_algorithm=ECC", "ec_curves=P256"])?;
        let mut eab = None;
        if needs("acme") {
            d.cli(&["policy", "set", FOLDER_ACME, "domains=bench.example"])?;
            let out = d.cli(&["acme", "eab", "create", "--policy", FOLDER_ACME, "--prevalidated"])?;
            let kv: BTreeMap<&str, &str> = out.lines().filter_map(|l| l.split_once('=')).collect();
            eab = Some((
                kv.get("EAB_KID").ok_or_else(|| anyhow::anyhow!("no EAB_KID"))?.to_string(),
                kv.get("EAB_HMAC_KEY").ok_or_else(|| anyhow::anyhow!("no EAB_HMAC_KEY"))?.to_string(),
            ));
        }
        let token = d.cli(&["token", "create", "--user", "admin", "--scope", "certificate:manage,revoke"])?;
        for _ in 1..ctx.args.instances {
            urls.push(d.start()?);
        }
        Ok(Under {
            urls,
            ca_pem: std::fs::read(d.ca_bundle())?,
            auth: format!("Bearer {}", token.trim()),
            pids: d.pids(),
            backend: backend.to_string(),
            eab,
            deployment: None,
            cpu_mark: Default::default(),
        })
    })();
    match r {
        Ok(mut u) => {
            u.deployment = Some(d);
            Ok(u)
        }
        Err(e) => {
            d.teardown();
            Err(e)
        }
    }
}

/// Creates `n` objects in `folder` through the API with `threads` parallel clients.
fn seed(under: &Under, folder: &str, prefix: &str, n: usize, with_csr: bool) -> anyhow::Result<Vec<Obj>> {
    let t0 = Instant::now();
    let threads = 8.min(n.max(1));
    let mut handles = vec![];
    for t in 0..threads {
        let url = under.urls[t % under.urls.len()].clone();
        let auth = under.auth.clone();
        let agent = client::agent_for_pem(&under.ca_pem)?;
        let folder = folder.to_string();
        let prefix = prefix.to_string();
        handles.push(std::thread::spawn(move || -> anyhow::Result<Vec<Obj>> {
            let mut out = vec![];
            let mut i = t;
            while i < n {
                let name = format!("{prefix}-{i:07}.bench.example");
                let (csr_pem, res) = if with_csr {
                    let key = raw::ec_key()?;
                    let csr = String::from_utf8(raw::make_csr(&key, &name)?.to_pem()?)?;
                    let r = client::venafi_request_csr(&agent, &url, &auth, &folder, &name, &csr);
                    (Some(csr), r)
                } else {
                    (None, client::venafi_request_service(&agent, &url, &auth, &folder, &name))
                };
                let (dn, leaf) = res.map_err(|e| anyhow::anyhow!("seeding {name}: {e}"))?;
                out.push(Obj {
                    dn,
                    csr_pem,
                    last_serial: client::serial_of_der(&leaf.to_der()?).unwrap_or_default(),
                    thumbprint: client::sha1_thumbprint(&leaf.to_der()?),
                });
                i += threads;
            }
            Ok(out)
        }));
    }
    let mut objs = vec![];
    for h in handles {
        objs.extend(h.join().map_err(|_| anyhow::anyhow!("seeding thread panicked"))??);
    }
    objs.sort_by(|a, b| a.dn.cmp(&b.dn));
    eprintln!("bench: {n} objects created in {folder} in {:.1} s", t0.elapsed().as_secs_f64());
    Ok(objs)
}

fn run_workloads(ctx: &mut Ctx, under: &mut Under, tmp: &std::path::Path, workloads: &[String]) -> anyhow::Result<()> {
    let n = ctx.args.objects.max(1);
    let needs = |w: &str| workloads.iter().any(|x| x == w);
    // The console workload keeps a tenth of the inventory (at most API_SEED_MAX) in the API-made
    // folder, for its folder-limited users; the rest is cloned into FOLDER_FILL.
    let api_n = if needs(CONSOLE) { (n / 10).clamp(1, API_SEED_MAX) } else { n.min(API_SEED_MAX) };
    let mut csr_objs = if needs("csr-ec") || needs("keyfactor-resign") || needs(CONSOLE) {
        seed(under, FOLDER_CSR, "csr", api_n, true)?
    } else {
        vec![]
    };
    let mut ec_objs = if needs("keygen-ec") { seed(under, FOLDER_KEYGEN_EC, "kec", api_n, false)? } else { vec![] };
    let mut rsa_objs = if needs("keygen-rsa") {
        let objs = seed(under, FOLDER_KEYGEN_RSA, "krsa", api_n.min(RSA_OBJECTS_MAX), false)?;
        // Seeded with EC keys (fast); renewals now generate RSA-2048 keys (the folder's locked algorithm).
        if let Some(d) = &under.deployment {
            d.cli(&[
                "policy",
                "set",
                FOLDER_KEYGEN_RSA,
                "key_algorithm=RSA",
                "rsa_key_sizes=2048",
                "--lock",
                "key_algorithm",
            ])?;
        }
        objs
    } else {
        vec![]
    };
    if n > api_n {
        let d = under
            .deployment
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("--objects above 10000 needs a gateway the bench starts"))?;
        fill_inventory(d, n - api_n)?;
    }
    if (ctx.args.explain || n > api_n)
        && let Some(d) = &under.deployment
    {
        print_plans(d, &csr_objs)?;
    }
    for w in workloads {
        if w == CONSOLE {
            if let Err(e) = run_console(ctx, under) {
                println!("error: console ({}): {e:#}", under.backend);
                ctx.lines.push(json!({"workload": w, "backend": under.backend, "error": format!("{e:#}")}));
                ctx.failed = true;
            }
            continue;
        }
        for &clients in &ctx.args.clients.clone() {
            let res = match w.as_str() {
                "csr-ec" => run_venafi(ctx, under, &mut csr_objs, clients, true),
                "keygen-ec" => run_venafi(ctx, under, &mut ec_objs, clients, false),
                "keygen-rsa" => run_venafi(ctx, under, &mut rsa_objs, clients, false),
                "keyfactor-resign" => run_keyfactor(ctx, under, &mut csr_objs, clients),
                "acme" => run_acme_gateway(ctx, under, clients),
                "acme-pebble" => run_acme_pebble(ctx, under, tmp, clients),
                _ => unreachable!(),
            };
            match res {
                Ok((r, rss)) => record(ctx, under, w, clients, &r, rss),
                Err(e) => {
                    println!("error: {w} ({}, {clients} clients): {e:#}", under.backend);
                    ctx.lines.push(json!({"workload": w, "backend": under.backend, "clients": clients,
                                          "error": format!("{e:#}")}));
                    ctx.failed = true;
                }
            }
        }
    }
    if let Some(d) = &under.deployment {
        db_check(ctx, d, &under.backend)?;
    }
    Ok(())
}

fn record(ctx: &mut Ctx, under: &Under, w: &str, clients: usize, r: &RunResult, rss: Option<f64>) {
    let rate = r.renewals as f64 / r.elapsed.max(1e-9);
    let (raw_total, parts) = raw_parts(w, &ctx.raw);
    let ratio = if raw_total > 0.0 { rate / raw_total } else { 0.0 };
    let cpu = under.cpu_use(r.renewals);
    println!(
        "{w} {} clients={clients}{}: {} renewals, {} errors in {:.1} s = {rate:.1}/s; p50 {:.2} ms p90 {:.2} ms p99 {:.2} ms; raw {raw_total:.0}/s, ratio {ratio:.3}; peak RSS {}; {} chains checked{}",
        under.backend,
        if under.urls.len() > 1 { format!(" instances={}", under.urls.len()) } else { String::new() },
        r.renewals,
        r.errors,
        r.elapsed,
        r.p50,
        r.p90,
        r.p99,
        rss.map(|m| format!("{m:.1} MB")).unwrap_or_else(|| "n/a".into()),
        r.chain_checks,
        cpu.map(|c| format!(
            "; CPU per renewal: gateway {:.2} ms, load generator {:.2} ms; steal {:.2} cores",
            c.gateway_ms_per_renewal, c.bench_ms_per_renewal, c.steal_cores
        ))
        .unwrap_or_default(),
    );
    for s in &r.error_samples {
        println!("  error sample: {s}");
    }
    if r.errors > 0 || r.renewals == 0 {
        ctx.failed = true;
    }
    let mut l = json!({
        "workload": w,
        "backend": under.backend,
        "clients": clients,
        "renewals": r.renewals,
        "errors": r.errors,
        "renewals_per_s": round(rate, 1),
        "p50_ms": round(r.p50, 2),
        "p90_ms": round(r.p90, 2),
        "p99_ms": round(r.p99, 2),
        "raw_crypto_per_s": round(raw_total, 0),
        "ratio": round(ratio, 3),
        "peak_rss_mb": rss.map(|m| round(m, 1)),
        "duration_s": round(r.elapsed, 2),
        "objects": ctx.args.objects,
        "instances": under.urls.len(),
        "openssl_speed_p256_sign_per_s": ctx.speed.sign_per_s,
        "openssl_speed_p256_verify_per_s": ctx.speed.verify_per_s,
    });
    for (k, v) in parts {
        l[k] = json!(round(v, 0));
    }
    if let Some(c) = cpu {
        l["gateway_cpu_ms_per_renewal"] = json!(round(c.gateway_ms_per_renewal, 3));
        l["bench_cpu_ms_per_renewal"] = json!(round(c.bench_ms_per_renewal, 3));
        l["steal_cores"] = json!(round(c.steal_cores, 2));
    }
    if rss.is_none() {
        l["peak_rss_note"] = json!("no process id of the gateway (give --target-pid with --target)");
    }
    ctx.lines.push(l);
}

/// The console workload (see `console`): its lines carry the backend, the object count and the
/// gateway's peak RSS over the whole console run.
fn run_console(ctx: &mut Ctx, under: &Under) -> anyhow::Result<()> {
    let d = under
        .deployment
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("the console workload needs a gateway the bench starts"))?;
    under.reset_rss();
    let t0 = Instant::now();
    let mut lines = vec![];
    let ok = console::run(
        d,
        &under.ca_pem,
        &under.urls[0],
        &under.auth,
        FOLDER_FILL,
        &[FOLDER_CSR, FOLDER_FILL],
        &ctx.args.clients.clone(),
        |l| lines.push(l),
    )?;
    let rss = under.peak_rss();
    println!(
        "console ({}, {} objects): measured in {:.0} s; gateway peak RSS {}",
        under.backend,
        ctx.args.objects,
        t0.elapsed().as_secs_f64(),
        rss.map(|m| format!("{m:.1} MB")).unwrap_or_else(|| "n/a".into())
    );
    for mut l in lines {
        l["backend"] = json!(under.backend);
        l["objects"] = json!(ctx.args.objects);
        l["peak_rss_mb"] = json!(rss.map(|m| round(m, 1)));
        ctx.lines.push(l);
    }
    if !ok {
        ctx.failed = true;
    }
    Ok(())
}

/// A client agent already connected to `base` (TLS handshake done before the measured window;
/// the clients are keep-alive clients, so the handshake is not part of a renewal).
fn warm_agent(ca_pem: &[u8], base: &str) -> anyhow::Result<ureq::Agent> {
    let agent = client::agent_for_pem(ca_pem)?;
    let mut r = agent.get(format!("{base}/health")).call()?;
    r.body_mut().read_to_vec()?;
    Ok(agent)
}

/// Venafi Renew with WorkToDoTimeout 10 and Base64 output; with the object's CSR for csr-ec.
fn run_venafi(
    ctx: &Ctx,
    under: &Under,
    objs: &mut Vec<Obj>,
    clients: usize,
    with_csr: bool,
) -> anyhow::Result<(RunResult, Option<f64>)> {
    anyhow::ensure!(!objs.is_empty(), "no objects");
    let store = Arc::new(client::ca_store(&under.ca_pem)?);
    let urls = under.urls.clone();
    let auth = under.auth.clone();
    let ca_pem = under.ca_pem.clone();
    under.reset_rss();
    let (r, back) = drive(
        clients,
        ctx.duration,
        std::mem::take(objs),
        |i| {
            Ok((
                warm_agent(&ca_pem, &urls[i % urls.len()])?,
                format!("{}/vedsdk/Certificates/Renew", urls[i % urls.len()]),
            ))
        },
        move |(agent, url), obj, seq| {
            let mut body = json!({"CertificateDN": obj.dn, "WorkToDoTimeout": 10, "Format": "Base64"});
            if with_csr {
                body["PKCS10"] = json!(obj.csr_pem);
            }
            let (status, v) = client::post_json(agent, url, &auth, &body).map_err(|e| e.to_string())?;
            check_venafi(&store, obj, seq, status, &v)
        },
    )?;
    *objs = back;
    Ok((r, under.peak_rss()))
}

/// Keyfactor classic `CertEnroll/3/Renew` by thumbprint of objects without a key in the gateway:
/// the gateway re-signs their public key.
fn run_keyfactor(
    ctx: &Ctx,
    under: &Under,
    objs: &mut Vec<Obj>,
    clients: usize,
) -> anyhow::Result<(RunResult, Option<f64>)> {
    anyhow::ensure!(!objs.is_empty(), "no objects");
    let urls = under.urls.clone();
    let auth = under.auth.clone();
    let ca_pem = under.ca_pem.clone();
    under.reset_rss();
    let (r, back) = drive(
        clients,
        ctx.duration,
        std::mem::take(objs),
        |i| {
            Ok((
                warm_agent(&ca_pem, &urls[i % urls.len()])?,
                format!("{}/CMSApi/CertEnroll/3/Renew", urls[i % urls.len()]),
            ))
        },
        move |(agent, url), obj, _| {
            let body = json!({"Lookup": {"Type": "Thumbprint", "Thumbprint": obj.thumbprint}});
            let mut r = agent
                .post(url.as_str())
                .header("Authorization", &auth)
                .header("Accept", "application/json")
                .header("x-keyfactor-requested-with", "APIClient")
                .send_json(&body)
                .map_err(|e| e.to_string())?;
            let status = r.status().as_u16();
            let v: Value = r.body_mut().read_json().unwrap_or(Value::Null);
            if status != 200 {
                return Err(format!("HTTP {status}: {}", short(&v)));
            }
            let tp = v["Thumbprint"].as_str().unwrap_or_default();
            if v["RequestDisposition"] != "Issued" || tp.is_empty() {
                return Err(format!("not issued: {}", short(&v)));
            }
            if tp.eq_ignore_ascii_case(&obj.thumbprint) {
                return Err(format!("{}: the answer names the old certificate", obj.dn));
            }
            obj.thumbprint = tp.to_string();
            // The serial is unknown here; the next Venafi check only compares with this.
            obj.last_serial = String::new();
            Ok(false)
        },
    )?;
    *objs = back;
    Ok((r, under.peak_rss()))
}

#[allow(clippy::too_many_arguments)]
/// ACME issuance with `clients` connections of one account: each order for a new name under
/// `suffix`, a CSR made by the client (one key per client), the chain checked on a sample.
fn drive_acme(
    duration: Duration,
    clients: usize,
    directory: &str,
    tls_pem: &[u8],
    issuing_root_pem: &[u8],
    key: &acme::AccountKey,
    kid: &str,
    suffix: &str,
) -> anyhow::Result<RunResult> {
    let store = Arc::new(client::ca_store(issuing_root_pem)?);
    let run_id = crate::db::new_guid()[..6].to_string();
    let suffix = suffix.to_string();
    let (r, _) = drive(
        clients,
        duration,
        vec![],
        |i| {
            let mut c = acme::AcmeClient::new(client::agent_for_pem(tls_pem)?, directory, key.clone())?;
            c.kid = Some(kid.to_string());
            Ok((c, raw::ec_key()?, i, String::new()))
        },
        move |(c, csr_key, i, last_serial), _, seq| {
            let name = format!("o{run_id}-{i}-{seq}.{suffix}");
            let csr = raw::make_csr(csr_key, &name).and_then(|r| Ok(r.to_der()?)).map_err(|e| e.to_string())?;
            let issued = c.issue(&name, &csr).map_err(|e| format!("{e:#}"))?;
            // What counts is a new certificate: a serial this client has not just been given.
            if issued.serial == *last_serial {
                return Err(format!("{name}: the previous order's certificate again (serial {})", issued.serial));
            }
            *last_serial = issued.serial.clone();
            if seq.is_multiple_of(CHAIN_SAMPLE_EVERY) {
                let chain = issued.chain().map_err(|e| format!("{name}: {e:#}"))?;
                if !client::chains_to(&store, &chain[0], &chain[1..]) {
                    return Err(format!("{name}: the certificate does not chain to the issuing root"));
                }
                return Ok(true);
            }
            Ok(false)
        },
    )?;
    Ok(r)
}

fn run_acme_gateway(ctx: &Ctx, under: &Under, clients: usize) -> anyhow::Result<(RunResult, Option<f64>)> {
    let (kid, hmac) = under.eab.clone().ok_or_else(|| {
        anyhow::anyhow!("the acme workload needs a gateway the bench starts (it creates the EAB key)")
    })?;
    let directory = format!("{}/acme/directory", under.urls[0]);
    let key = acme::AccountKey::generate()?;
    let mut c = acme::AcmeClient::new(client::agent_for_pem(&under.ca_pem)?, &directory, key.clone())?;
    c.register(Some((&kid, &hmac)))?;
    let kid = c.kid.clone().ok_or_else(|| anyhow::anyhow!("the account has no kid after registering"))?;
    under.reset_rss();
    let r = drive_acme(ctx.duration, clients, &directory, &under.ca_pem, &under.ca_pem, &key, &kid, "bench.example")?;
    Ok((r, under.peak_rss()))
}

fn run_acme_pebble(
    ctx: &Ctx,
    under: &Under,
    tmp: &std::path::Path,
    clients: usize,
) -> anyhow::Result<(RunResult, Option<f64>)> {
    // Pebble serves this run, not the gateway: its line carries no gateway CPU figures.
    under.cpu_mark.set(None);
    let mut p = acme::start_pebble(&ctx.args.pebble, &tmp.join("pebble"))?;
    let res = (|| {
        let key = acme::AccountKey::generate()?;
        let mut c = acme::AcmeClient::new(client::agent_for_pem(&p.tls_ca_pem)?, &p.directory, key.clone())?;
        c.register(Some((&p.eab_kid, &p.eab_hmac)))?;
        let kid = c.kid.clone().ok_or_else(|| anyhow::anyhow!("the account has no kid after registering"))?;
        let root = p.root_pem()?;
        let r = drive_acme(ctx.duration, clients, &p.directory, &p.tls_ca_pem, &root, &key, &kid, "bench.example")?;
        Ok((r, gateway::peak_rss_mb(p.child.id())))
    })();
    gateway::stop(&mut p.child);
    res
}

/// Clones the first object of the CSR folder `extra` times (distinct DN, GUID, serial,
/// thumbprint, key hash), with a certificate and a finished job each: the inventory a large
/// deployment has, made in seconds instead of through the API.
fn fill_inventory(d: &Deployment, extra: usize) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let mut c = d.db()?;
    let tmpl = bench_support::first_object_id(&mut c)?;
    d.cli(&["policy", "set", FOLDER_FILL])?;
    bench_support::clone_inventory(&mut c, tmpl, FOLDER_FILL, extra, |done| {
        eprintln!("bench: inventory {done}/{extra} objects");
    })?;
    let total = bench_support::object_count(&mut c)?;
    eprintln!("bench: inventory filled to {total} objects in {:.1} s", t0.elapsed().as_secs_f64());
    println!("inventory: {total} certificate objects in the database");
    Ok(())
}

/// EXPLAIN of the lookups a renewal makes (by DN, thumbprint, serial, CMSID, key hash; the job claim).
fn print_plans(d: &Deployment, objs: &[Obj]) -> anyhow::Result<()> {
    let mut c = d.db()?;
    let dn = objs.first().map(|o| o.dn.clone()).unwrap_or_default();
    let tp = objs.first().map(|o| o.thumbprint.clone()).unwrap_or_default();
    println!("query plans of the request-path lookups ({}):", d.store.backend());
    bench_support::request_path_plans(&mut c, &dn, &tp, |what, plan| {
        println!("  {what}: {}", plan.join(" | "));
    })
}

/// After the runs: every finished job has exactly one certificate and none ran twice.
fn db_check(ctx: &mut Ctx, d: &Deployment, backend: &str) -> anyhow::Result<()> {
    let mut c = d.db()?;
    let bench_support::JobCheck { done, certificates: certs, duplicates: dup, retried, open } =
        bench_support::job_check(&mut c)?;
    println!(
        "database check ({backend}, {} instance(s)): {done} jobs done, {certs} certificates from jobs, {dup} jobs with more than one certificate, {retried} jobs claimed more than once, {open} jobs still open",
        d.procs.len()
    );
    let ok = dup == 0 && retried == 0 && done == certs;
    if !ok {
        println!("error: database check failed: a job was processed twice or left a mismatch");
        ctx.failed = true;
    }
    for l in ctx.lines.iter_mut().filter(|l| l["backend"] == backend) {
        l["db_jobs_done"] = json!(done);
        l["db_certificates_from_jobs"] = json!(certs);
        l["db_jobs_claimed_twice"] = json!(retried);
        l["db_duplicate_results"] = json!(dup);
    }
    Ok(())
}
