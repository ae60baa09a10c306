//! `--workload console`: page latencies of the web console at inventory scale. Signs in like a
//! browser (the sign-in form's hidden `csrf` field and its `__Host-renewgate-login` cookie, then
//! the session cookie), then times sequential GETs of the overview (its first, uncached answer
//! apart), the first inventory page, a keyset page deep in the listing, a folder-limited user's
//! first page, exact serial and thumbprint searches, a DN-prefix and a name-prefix search and
//! (no target) a substring search; beside them `/health` and the Venafi certificate list, measured
//! the same way in the same run.
use std::time::Instant;

use serde_json::{Value, json};

use super::client;
use super::gateway::Deployment;
use super::latency::Latencies;
use crate::db::bench_support;

const LOGIN_COOKIE: &str = "__Host-renewgate-login";
const SESSION_COOKIE: &str = "__Host-renewgate-session";
/// The p99 every measured console page should stay under (a million objects, release build).
pub const TARGET_P99_MS: f64 = 200.0;
/// Requests per measurement (after a warm-up of WARMUP).
const REQUESTS: usize = 100;
const WARMUP: usize = 5;
/// The keyset page measured: this many rows deep (at most half the inventory).
const DEEP_ROWS: i64 = 10_000;
/// An inventory row in a page.
const ROW: &str = "<tr data-guid=";

/// A signed-in console user: its cookie, sent by every client of a measurement.
#[derive(Clone)]
pub struct Session {
    pub user: String,
    pub cookie: String,
}

/// The value of cookie `name` among a response's `Set-Cookie` headers.
fn cookie_of(headers: &ureq::http::HeaderMap, name: &str) -> Option<String> {
    headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).find_map(|v| {
        let first = v.split(';').next()?;
        let (k, val) = first.split_once('=')?;
        (k.trim() == name && !val.is_empty()).then(|| val.trim().to_string())
    })
}

/// The `value` of the hidden input `name` in an HTML page.
fn hidden_field(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\""))?;
    let rest = &html[at..];
    let v = rest.find("value=\"")? + 7;
    let end = rest[v..].find('"')?;
    Some(rest[v..v + end].to_string())
}

/// Undoes the HTML escaping of an attribute value (an href).
fn unescape(s: &str) -> String {
    s.replace("&amp;", "&").replace("&#x2f;", "/").replace("&#x2F;", "/").replace("&#61;", "=").replace("&quot;", "\"")
}

/// Signs in like a browser: GET the form, POST it with its cookie, keep the session cookie.
pub fn sign_in(ca_pem: &[u8], base: &str, user: &str, password: &str) -> anyhow::Result<Session> {
    let agent = client::agent_for_pem(ca_pem)?;
    let mut r = agent.get(format!("{base}/console/login")).call()?;
    anyhow::ensure!(r.status().as_u16() == 200, "GET /console/login answered {}", r.status());
    let login = cookie_of(r.headers(), LOGIN_COOKIE).ok_or_else(|| anyhow::anyhow!("no {LOGIN_COOKIE} cookie"))?;
    let html = r.body_mut().read_to_string()?;
    let csrf = hidden_field(&html, "csrf").ok_or_else(|| anyhow::anyhow!("no csrf field in the sign-in form"))?;
    let form = serde_urlencoded::to_string([("username", user), ("password", password), ("csrf", &csrf)])?;
    let r = agent
        .post(format!("{base}/console/login"))
        .header("Cookie", format!("{LOGIN_COOKIE}={login}"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(form.as_str())?;
    anyhow::ensure!(r.status().as_u16() == 303, "POST /console/login answered {} for {user}", r.status());
    let cookie = cookie_of(r.headers(), SESSION_COOKIE)
        .ok_or_else(|| anyhow::anyhow!("sign-in of {user}: no {SESSION_COOKIE} cookie"))?;
    Ok(Session { user: user.to_string(), cookie: format!("{SESSION_COOKIE}={cookie}") })
}

/// What one measured GET sends and must find in its answer.
#[derive(Clone)]
pub struct Probe {
    pub name: String,
    pub path: String,
    /// A console session's cookie, or an `Authorization` value for the API.
    pub cookie: Option<String>,
    pub auth: Option<String>,
    /// Text the 200 answer must contain (the row searched for).
    pub expect: Option<String>,
    /// Whether the p99 target applies.
    pub target: bool,
}

fn get(agent: &ureq::Agent, base: &str, p: &Probe) -> Result<String, String> {
    let mut req = agent.get(format!("{base}{}", p.path));
    if let Some(c) = &p.cookie {
        req = req.header("Cookie", c);
    }
    if let Some(a) = &p.auth {
        req = req.header("Authorization", a).header("Accept", "application/json");
    }
    let mut r = req.call().map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let body = r.body_mut().with_config().limit(64 << 20).read_to_string().map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("{}: HTTP {status}", p.path));
    }
    if let Some(e) = &p.expect
        && !body.contains(e.as_str())
    {
        return Err(format!("{}: the answer lacks {e:?}", p.path));
    }
    Ok(body)
}

pub struct Stats {
    pub requests: usize,
    pub errors: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub error_samples: Vec<String>,
}

/// `requests` GETs of `p` spread over `clients` keep-alive clients (each warmed up first).
pub fn measure(ca_pem: &[u8], base: &str, p: &Probe, clients: usize, requests: usize) -> anyhow::Result<Stats> {
    let clients = clients.max(1);
    let per = requests.div_ceil(clients).max(1);
    let agents = (0..clients).map(|_| client::agent_for_pem(ca_pem)).collect::<anyhow::Result<Vec<_>>>()?;
    for a in &agents {
        for _ in 0..WARMUP.div_ceil(clients).max(1) {
            get(a, base, p).map_err(|e| anyhow::anyhow!("{} (warm-up): {e}", p.name))?;
        }
    }
    let barrier = std::sync::Barrier::new(clients);
    let results: Vec<(Latencies, Vec<String>)> = std::thread::scope(|s| {
        let hs: Vec<_> = agents
            .iter()
            .map(|a| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let (mut lat, mut errs) = (Latencies::default(), vec![]);
                    for _ in 0..per {
                        let t0 = Instant::now();
                        match get(a, base, p) {
                            Ok(_) => lat.record(t0.elapsed()),
                            Err(e) => errs.push(e),
                        }
                    }
                    (lat, errs)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    });
    let mut lat = Latencies::default();
    let mut errs = vec![];
    for (l, e) in results {
        lat.add(&l);
        errs.extend(e);
    }
    let pct = |q| lat.percentile_ms(q);
    let mut samples: Vec<String> = vec![];
    for e in &errs {
        if samples.len() < 3 && !samples.contains(e) {
            samples.push(e.clone());
        }
    }
    Ok(Stats {
        requests: lat.count() as usize + errs.len(),
        errors: errs.len(),
        p50: pct(50.0),
        p90: pct(90.0),
        p99: pct(99.0),
        max: lat.max_ms(),
        error_samples: samples,
    })
}

/// One GET, timed (the cold overview: its first answer computes the figures).
fn once(ca_pem: &[u8], base: &str, p: &Probe) -> anyhow::Result<f64> {
    let agent = client::agent_for_pem(ca_pem)?;
    // The connection first, so the TLS handshake is not timed.
    let mut r = agent.get(format!("{base}/health")).call()?;
    r.body_mut().read_to_vec()?;
    let t0 = Instant::now();
    get(&agent, base, p).map_err(|e| anyhow::anyhow!("{}: {e}", p.name))?;
    Ok(t0.elapsed().as_secs_f64() * 1000.0)
}

/// Users the console workload signs in as.
pub struct Users {
    pub all: Session,
    /// (session, folder, objects in it)
    pub limited: Vec<(Session, String, i64)>,
}

/// Creates the console users (one unlimited, one per folder in `folders`) and signs them in.
pub fn users(d: &Deployment, ca_pem: &[u8], base: &str, folders: &[&str]) -> anyhow::Result<Users> {
    let password = format!("Bench-{}-console-Pw9", &crate::db::new_guid()[..12]);
    d.cli(&["user", "add", "bench-console", "--password", &password, "--scope", "certificate:manage"])?;
    let all = sign_in(ca_pem, base, "bench-console", &password)?;
    let mut c = d.db()?;
    let mut limited = vec![];
    for (i, f) in folders.iter().enumerate() {
        let name = format!("bench-folder{i}");
        d.cli(&[
            "user",
            "add",
            &name,
            "--password",
            &password,
            "--scope",
            "certificate:manage",
            "--folder",
            &format!("{f}:read,write"),
        ])?;
        let n = bench_support::count(
            &mut c,
            &format!("SELECT COUNT(*) AS n FROM cert_objects WHERE policy_dn = '{}'", f.replace('\'', "''")),
        )?;
        limited.push((sign_in(ca_pem, base, &name, &password)?, f.to_string(), n));
    }
    Ok(Users { all, limited })
}

/// Everything the console workload measures, in order; `(name, probe)`. The cold overviews are
/// measured apart by the caller (before these).
pub fn probes(d: &Deployment, users: &Users, api_auth: &str, fill: &str) -> anyhow::Result<Vec<Probe>> {
    let mut c = d.db()?;
    let total = bench_support::object_count(&mut c)?;
    let page = |name: &str, path: String, s: &Session, expect: Option<String>, target: bool| Probe {
        name: name.to_string(),
        path,
        cookie: Some(s.cookie.clone()),
        auth: None,
        expect,
        target,
    };
    let row = || Some(ROW.to_string());
    let named = |n: &str| Some(format!(">{n}</a>"));
    let enc = |s: &str| serde_urlencoded::to_string([("q", s)]).unwrap_or_default();
    let mut out = vec![
        Probe {
            name: "baseline-health".into(),
            path: "/health".into(),
            cookie: None,
            auth: None,
            expect: None,
            target: false,
        },
        Probe {
            name: "baseline-venafi-list50".into(),
            path: "/vedsdk/Certificates/?Limit=50".into(),
            cookie: None,
            auth: Some(api_auth.to_string()),
            expect: Some("Certificates".into()),
            target: false,
        },
        page("overview", "/console/".into(), &users.all, None, true),
        page("inventory-first", "/console/inventory".into(), &users.all, row(), true),
    ];
    // Deep keyset page: the cursor is the id of the row DEEP_ROWS deep (newest first).
    let depth = DEEP_ROWS.min(total / 2).max(1);
    let cursor = bench_support::count(
        &mut c,
        &format!("SELECT id AS n FROM cert_objects ORDER BY id DESC LIMIT 1 OFFSET {}", depth - 1),
    )?;
    out.push(page(
        &format!("inventory-keyset-{depth}-deep"),
        format!("/console/inventory?after={cursor}"),
        &users.all,
        Some(ROW.into()),
        true,
    ));
    for (i, (s, folder, n)) in users.limited.iter().enumerate() {
        let share = *n as f64 * 100.0 / total.max(1) as f64;
        let what = format!("({folder}: {n} objects, {share:.1}%)");
        out.push(page(&format!("inventory-folder-user{} {what}", i + 1), "/console/inventory".into(), s, row(), true));
        out.push(page(&format!("overview-folder-user{} {what}", i + 1), "/console/".into(), s, None, true));
    }
    // Real values from the database: a clone in the middle of the fill, and an API-made one.
    let mid = bench_support::count(
        &mut c,
        &format!(
            "SELECT id AS n FROM cert_objects WHERE policy_dn = '{}' ORDER BY id LIMIT 1 OFFSET {}",
            fill.replace('\'', "''"),
            (total / 2).saturating_sub(1)
        ),
    )
    .or_else(|_| bench_support::first_object_id(&mut c))?;
    let (serial, thumbprint, name) = bench_support::current_serial_thumbprint(&mut c, mid)?;
    let first = bench_support::first_object_id(&mut c)?;
    let (api_serial, _, api_name) = bench_support::current_serial_thumbprint(&mut c, first)?;
    out.push(page(
        "search-serial",
        format!("/console/inventory?{}", enc(&api_serial)),
        &users.all,
        named(&api_name),
        true,
    ));
    out.push(page(
        "search-thumbprint",
        format!("/console/inventory?{}", enc(&thumbprint)),
        &users.all,
        named(&name),
        true,
    ));
    out.push(page(
        "search-serial-clone",
        format!("/console/inventory?{}", enc(&serial)),
        &users.all,
        named(&name),
        true,
    ));
    // A DN prefix matching about one object in 9 (inv-12, inv-120…, inv-12xxxx).
    let prefix = format!("{fill}\\inv-12");
    out.push(page("search-dn-prefix", format!("/console/inventory?{}", enc(&prefix)), &users.all, row(), true));
    // A name prefix (CN/SAN or object name) of the middle clone: it and its tens, hundreds….
    out.push(page("search-name-prefix", format!("/console/inventory?{}", enc(&name)), &users.all, row(), true));
    out.push(page("search-substring", format!("/console/inventory?{}", enc("*nv-4242*")), &users.all, None, false));
    Ok(out)
}

/// Follows the first page's `a[rel=next]` once: the link's cursor must be the page's last row.
pub fn check_next_link(ca_pem: &[u8], base: &str, s: &Session) -> anyhow::Result<String> {
    let agent = client::agent_for_pem(ca_pem)?;
    let p = Probe {
        name: "next".into(),
        path: "/console/inventory".into(),
        cookie: Some(s.cookie.clone()),
        auth: None,
        expect: None,
        target: false,
    };
    let body = get(&agent, base, &p).map_err(|e| anyhow::anyhow!("{e}"))?;
    let at = body.find("rel=\"next\" href=\"").ok_or_else(|| anyhow::anyhow!("no rel=next link on the first page"))?;
    let rest = &body[at + 17..];
    let href = unescape(&rest[..rest.find('"').unwrap_or(0)]);
    let p2 = Probe { path: href.clone(), ..p };
    get(&agent, base, &p2).map_err(|e| anyhow::anyhow!("following {href}: {e}"))?;
    Ok(href)
}

/// The measured run: the cold overviews, then each probe with each client count.
#[allow(clippy::too_many_arguments)]
pub fn run(
    d: &Deployment,
    ca_pem: &[u8],
    base: &str,
    api_auth: &str,
    fill: &str,
    limited_folders: &[&str],
    clients: &[usize],
    mut line: impl FnMut(Value),
) -> anyhow::Result<bool> {
    let users = users(d, ca_pem, base, limited_folders)?;
    let mut ok = true;
    let mut cold = |name: &str, s: &Session| -> anyhow::Result<()> {
        let p = Probe {
            name: name.into(),
            path: "/console/".into(),
            cookie: Some(s.cookie.clone()),
            auth: None,
            expect: None,
            target: false,
        };
        let ms = once(ca_pem, base, &p)?;
        println!("console {name} (first answer, computes the cached figures): {ms:.1} ms");
        line(json!({"workload": "console", "measure": name, "clients": 1, "requests": 1, "errors": 0,
                    "p50_ms": super::round(ms, 2), "p99_ms": super::round(ms, 2), "cold": true}));
        Ok(())
    };
    cold("overview-cold", &users.all)?;
    for (i, (s, _, _)) in users.limited.iter().enumerate() {
        cold(&format!("overview-cold-folder-user{}", i + 1), s)?;
    }
    let href = check_next_link(ca_pem, base, &users.all)?;
    println!("console: the first page's rel=next link {href} answers 200");
    for p in probes(d, &users, api_auth, fill)? {
        for &c in clients {
            let st = measure(ca_pem, base, &p, c, REQUESTS)?;
            let verdict = if !p.target {
                "no target"
            } else if st.p99 < TARGET_P99_MS {
                "under target"
            } else {
                "OVER TARGET"
            };
            println!(
                "console {} clients={c}: {} requests, {} errors; p50 {:.2} ms p90 {:.2} ms p99 {:.2} ms max {:.2} ms ({verdict}{})",
                p.name,
                st.requests,
                st.errors,
                st.p50,
                st.p90,
                st.p99,
                st.max,
                if p.target { format!(" {TARGET_P99_MS:.0} ms p99") } else { String::new() },
            );
            for e in &st.error_samples {
                println!("  error sample: {e}");
            }
            if st.errors > 0 {
                ok = false;
            }
            line(json!({"workload": "console", "measure": p.name, "path": p.path, "clients": c,
                        "requests": st.requests, "errors": st.errors,
                        "p50_ms": super::round(st.p50, 2), "p90_ms": super::round(st.p90, 2),
                        "p99_ms": super::round(st.p99, 2), "max_ms": super::round(st.max, 2),
                        "target_p99_ms": p.target.then_some(TARGET_P99_MS)}));
        }
    }
    Ok(ok)
}
