//! The gateway under test: a child process (this same binary, `serve`) on a temporary data
//! directory and a random loopback port, on SQLite or on a fresh PostgreSQL database that the
//! bench creates and drops; or a running gateway given by `--target`.
use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::db::bench_support;

/// Where the gateway's data lives.
#[derive(Debug, Clone)]
pub enum Store {
    /// `<data_dir>/renewgate.db`.
    Sqlite,
    /// A database this bench created on the server of `admin_url`; dropped at the end.
    Postgres { admin_url: String, name: String, url: String },
}

impl Store {
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite => "sqlite",
            Store::Postgres { .. } => "postgres",
        }
    }

    /// Creates a fresh PostgreSQL database `renewgate_bench_<random>` on the server `admin_url` names.
    pub fn new_postgres(admin_url: &str) -> anyhow::Result<Store> {
        let name = format!("renewgate_bench_{}", &crate::db::new_guid().replace('-', "")[..12]);
        bench_support::create_postgres_database(admin_url, &name)?;
        let url = replace_db_name(admin_url, &name);
        Ok(Store::Postgres { admin_url: admin_url.to_string(), name, url })
    }

    pub fn drop_database(&self) {
        if let Store::Postgres { admin_url, name, .. } = self
            && let Err(e) = bench_support::drop_postgres_database(admin_url, name)
        {
            eprintln!("bench: could not drop database {name}: {e}");
        }
    }
}

/// `postgres://user@host:port/db?x` with the database part replaced.
fn replace_db_name(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{name}?{q}"),
        None => format!("{host_part}/{name}"),
    }
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A gateway the bench started.
pub struct GatewayProc {
    pub child: Child,
    pub url: String,
    pub log: PathBuf,
}

/// Shared setup of one or more gateway processes on one database.
pub struct Deployment {
    pub root: PathBuf,
    pub data_dir: PathBuf,
    pub store: Store,
    pub procs: Vec<GatewayProc>,
    pub extra_env: BTreeMap<String, String>,
}

impl Deployment {
    pub fn new(root: &Path, store: Store, extra_env: BTreeMap<String, String>) -> Deployment {
        Deployment { root: root.to_path_buf(), data_dir: root.join("data"), store, procs: vec![], extra_env }
    }

    /// Environment of the gateway and of the CLI commands run against it.
    pub fn env(&self, port: Option<u16>) -> BTreeMap<String, String> {
        let mut e = BTreeMap::new();
        e.insert("RENEWGATE_DATA_DIR".into(), self.data_dir.display().to_string());
        if let Store::Postgres { url, .. } = &self.store {
            e.insert("RENEWGATE_DATABASE_URL".into(), url.clone());
        }
        if let Some(p) = port {
            e.insert("RENEWGATE_BIND".into(), format!("127.0.0.1:{p}"));
        }
        for (k, v) in &self.extra_env {
            e.insert(k.clone(), v.clone());
        }
        e
    }

    pub fn ca_bundle(&self) -> PathBuf {
        self.data_dir.join("ca-bundle.pem")
    }

    pub fn sqlite_path(&self) -> PathBuf {
        self.data_dir.join("renewgate.db")
    }

    /// Starts one more gateway process and waits until `/health` answers.
    pub fn start(&mut self) -> anyhow::Result<String> {
        std::fs::create_dir_all(&self.data_dir)?;
        let port = free_port()?;
        let n = self.procs.len();
        let log = self.root.join(format!("gateway-{n}.log"));
        let exe = std::env::current_exe()?;
        let mut cmd = Command::new(exe);
        cmd.arg("serve")
            .env_remove("RENEWGATE_CONFIG")
            .envs(self.env(Some(port)))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(self.root.join(format!("gateway-{n}.out")))?)
            .stderr(std::fs::File::create(&log)?);
        let child = cmd.spawn()?;
        let url = format!("https://127.0.0.1:{port}");
        self.procs.push(GatewayProc { child, url: url.clone(), log });
        let deadline = Instant::now() + Duration::from_secs(90);
        let bundle = self.ca_bundle();
        loop {
            let p = self.procs.last_mut().ok_or_else(|| anyhow::anyhow!("no gateway process to wait for"))?;
            if let Some(st) = p.child.try_wait()? {
                anyhow::bail!("gateway exited with {st}:\n{}", tail(&p.log));
            }
            if bundle.exists()
                && let Ok(agent) = super::client::agent(&bundle)
                && let Ok(r) = agent.get(format!("{url}/health")).call()
                && r.status().as_u16() == 200
            {
                return Ok(url);
            }
            if Instant::now() > deadline {
                anyhow::bail!("gateway not ready after 90 s:\n{}", tail(&p.log));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `renewgate ARGS` against this deployment's data; returns stdout.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let exe = std::env::current_exe()?;
        let out = Command::new(exe)
            .args(args)
            .env_remove("RENEWGATE_CONFIG")
            .envs(self.env(None))
            .env("RENEWGATE_LOG__LEVEL", "warn")
            .stdin(Stdio::null())
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "renewgate {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(|p| p.child.id()).collect()
    }

    /// Stops every process (SIGTERM, then SIGKILL after 20 s) and drops the database.
    pub fn teardown(&mut self) {
        for p in &mut self.procs {
            stop(&mut p.child);
        }
        self.procs.clear();
        self.store.drop_database();
    }

    /// Opens a connection to the deployment's database.
    pub fn db(&self) -> anyhow::Result<crate::db::DbConn> {
        let url = match &self.store {
            Store::Sqlite => self.sqlite_path().display().to_string(),
            Store::Postgres { url, .. } => url.clone(),
        };
        bench_support::open(&url)
    }
}

pub fn stop(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        // SAFETY: kill(2) on the pid of a child this process started and has not reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

pub fn tail(p: &Path) -> String {
    let s = std::fs::read_to_string(p).unwrap_or_default();
    let start = s.len().saturating_sub(4000);
    let start = (start..s.len()).find(|i| s.is_char_boundary(*i)).unwrap_or(s.len());
    s[start..].to_string()
}

/// Peak resident set (VmHWM) of a process, in MB.
pub fn peak_rss_mb(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// CPU time (user + system) a process has used so far, in seconds (`/proc/<pid>/stat`).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count from the closing parenthesis.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz.max(1.0))
}

/// The machine's CPU time stolen by the hypervisor so far, in seconds over all cores (the
/// `steal` column of `/proc/stat`): a busy neighbour shows here, not in the rates' baseline.
pub fn steal_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = s.lines().find(|l| l.starts_with("cpu "))?;
    let steal: f64 = cpu.split_whitespace().nth(8)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(steal / hz.max(1.0))
}

/// Resets a process's peak RSS (Linux `clear_refs` value 5), so each run reports its own peak.
pub fn reset_peak_rss(pid: u32) -> bool {
    std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/{pid}/clear_refs"))
        .and_then(|mut f| f.write_all(b"5"))
        .is_ok()
}
