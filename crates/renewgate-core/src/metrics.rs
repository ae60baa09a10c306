//! Process-wide metrics in the Prometheus text format, hand-rolled (no client crate): labelled
//! counters in a small mutex-guarded map, a histogram on atomics. Gauges that describe the shared
//! database (queue depth, certificates by state and expiry) are computed at scrape time by
//! `api::admin::metrics`, so every instance reports the same truth.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

/// A counter with a fixed list of label names.
pub struct Counter {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    values: Mutex<BTreeMap<Vec<String>, u64>>,
}

impl Counter {
    pub const fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        Counter { name, help, labels, values: Mutex::new(BTreeMap::new()) }
    }

    pub fn inc(&self, label_values: &[&str]) {
        self.add(label_values, 1);
    }

    pub fn add(&self, label_values: &[&str], n: u64) {
        debug_assert_eq!(label_values.len(), self.labels.len());
        let key: Vec<String> = label_values.iter().map(|s| s.to_string()).collect();
        *self.values.lock().unwrap_or_else(|e| e.into_inner()).entry(key).or_insert(0) += n;
    }

    pub fn get(&self, label_values: &[&str]) -> u64 {
        let key: Vec<String> = label_values.iter().map(|s| s.to_string()).collect();
        self.values.lock().unwrap_or_else(|e| e.into_inner()).get(&key).copied().unwrap_or(0)
    }

    fn render(&self, out: &mut String) {
        header(out, self.name, self.help, "counter");
        for (k, v) in self.values.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let pairs: Vec<(&str, &str)> = self.labels.iter().copied().zip(k.iter().map(String::as_str)).collect();
            sample(out, self.name, &pairs, *v as f64);
        }
    }
}

/// A histogram of seconds with fixed buckets.
pub struct Histogram {
    name: &'static str,
    help: &'static str,
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn new(name: &'static str, help: &'static str, bounds: &'static [f64]) -> Self {
        Histogram {
            name,
            help,
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, secs: f64) {
        let secs = if secs.is_finite() && secs > 0.0 { secs } else { 0.0 };
        for (b, bound) in self.buckets.iter().zip(self.bounds) {
            if secs <= *bound {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add((secs * 1e6) as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String) {
        header(out, self.name, self.help, "histogram");
        let bucket = format!("{}_bucket", self.name);
        for (b, bound) in self.buckets.iter().zip(self.bounds) {
            let le = format!("{bound}");
            sample(out, &bucket, &[("le", &le)], b.load(Ordering::Relaxed) as f64);
        }
        let count = self.count.load(Ordering::Relaxed) as f64;
        sample(out, &bucket, &[("le", "+Inf")], count);
        sample(out, &format!("{}_sum", self.name), &[], self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6);
        sample(out, &format!("{}_count", self.name), &[], count);
    }
}

/// A histogram of seconds per value of one label (e.g. per issuer), behind a mutex: it is
/// observed once per issued certificate, not per request.
pub struct LabeledHistogram {
    name: &'static str,
    help: &'static str,
    label: &'static str,
    bounds: &'static [f64],
    values: Mutex<BTreeMap<String, Series>>,
}

/// One label value's bucket counts, count and sum.
type Series = (Vec<u64>, u64, f64);

impl LabeledHistogram {
    pub const fn new(name: &'static str, help: &'static str, label: &'static str, bounds: &'static [f64]) -> Self {
        LabeledHistogram { name, help, label, bounds, values: Mutex::new(BTreeMap::new()) }
    }

    pub fn observe_labeled(&self, label_value: &str, secs: f64) {
        let secs = if secs.is_finite() && secs > 0.0 { secs } else { 0.0 };
        let mut m = self.values.lock().unwrap_or_else(|e| e.into_inner());
        let e = m.entry(label_value.to_string()).or_insert_with(|| (vec![0; self.bounds.len()], 0, 0.0));
        for (b, bound) in e.0.iter_mut().zip(self.bounds) {
            if secs <= *bound {
                *b += 1;
            }
        }
        e.1 += 1;
        e.2 += secs;
    }

    pub fn count(&self, label_value: &str) -> u64 {
        self.values.lock().unwrap_or_else(|e| e.into_inner()).get(label_value).map(|e| e.1).unwrap_or(0)
    }

    fn render(&self, out: &mut String) {
        header(out, self.name, self.help, "histogram");
        let bucket = format!("{}_bucket", self.name);
        for (v, (buckets, count, sum)) in self.values.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            for (b, bound) in buckets.iter().zip(self.bounds) {
                let le = format!("{bound}");
                sample(out, &bucket, &[(self.label, v), ("le", &le)], *b as f64);
            }
            sample(out, &bucket, &[(self.label, v), ("le", "+Inf")], *count as f64);
            sample(out, &format!("{}_sum", self.name), &[(self.label, v)], *sum);
            sample(out, &format!("{}_count", self.name), &[(self.label, v)], *count as f64);
        }
    }
}

pub fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One sample line; label values escaped as the text format requires.
pub fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], v: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, val)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let esc = val.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
            let _ = write!(out, "{k}=\"{esc}\"");
        }
        out.push('}');
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = writeln!(out, " {}", v as i64);
    } else {
        let _ = writeln!(out, " {v}");
    }
}

pub struct Metrics {
    pub http_requests: Counter,
    pub renewals: Counter,
    pub enrollments: Counter,
    pub issuance: Histogram,
    pub issuance_jobs: Counter,
    pub store_push_results: Counter,
    pub scheduler_runs: Counter,
    pub issuer_latency: LabeledHistogram,
    pub issuer_failures: Counter,
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    http_requests: Counter::new(
        "renewgate_http_requests_total",
        "HTTP requests by method, route template and status.",
        &["method", "route", "status"],
    ),
    renewals: Counter::new(
        "renewgate_renewals_total",
        "Renewal requests by dialect (venafi, keyfactor, acme, scheduler) and outcome (success, failure).",
        &["dialect", "outcome"],
    ),
    enrollments: Counter::new(
        "renewgate_enrollments_total",
        "Enrollment requests by dialect and outcome.",
        &["dialect", "outcome"],
    ),
    issuance: Histogram::new(
        "renewgate_issuance_duration_seconds",
        "Time from a job's acceptance to its certificate being issued, by this instance's workers.",
        &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0],
    ),
    issuance_jobs: Counter::new(
        "renewgate_issuance_jobs_total",
        "Issuance jobs finished by this instance's workers, by outcome (issued, retry, failed).",
        &["outcome"],
    ),
    store_push_results: Counter::new(
        "renewgate_store_push_results_total",
        "Store push results reported by agents to this instance, by outcome (success, warning, failure).",
        &["outcome"],
    ),
    scheduler_runs: Counter::new(
        "renewgate_scheduler_runs_total",
        "Passes of the automatic-renewal scheduler in this instance, by outcome.",
        &["outcome"],
    ),
    issuer_latency: LabeledHistogram::new(
        "renewgate_issuer_duration_seconds",
        "Time an issuer took to sign one certificate (an upstream CA: the whole order), by issuer.",
        "issuer",
        &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0],
    ),
    issuer_failures: Counter::new(
        "renewgate_issuer_failures_total",
        "Failed issuance attempts by issuer and problem type (an upstream ACME error type such as \
         rateLimited or badNonce, or unreachable, crypto, policy).",
        &["issuer", "problem"],
    ),
});

/// The process-local series, rendered.
pub fn render_process(out: &mut String) {
    let m = &*METRICS;
    m.http_requests.render(out);
    m.renewals.render(out);
    m.enrollments.render(out);
    m.issuance.render(out);
    m.issuance_jobs.render(out);
    m.store_push_results.render(out);
    m.scheduler_runs.render(out);
    m.issuer_latency.render(out);
    m.issuer_failures.render(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let c = Counter::new("renewgate_test_total", "Test.", &["a"]);
        c.inc(&["x\"y"]);
        c.add(&["z"], 2);
        let h = Histogram::new("renewgate_test_seconds", "Test.", &[0.1, 1.0]);
        h.observe(0.05);
        h.observe(0.5);
        let mut s = String::new();
        c.render(&mut s);
        h.render(&mut s);
        assert!(s.contains("# TYPE renewgate_test_total counter\n"));
        assert!(s.contains("renewgate_test_total{a=\"x\\\"y\"} 1\n"));
        assert!(s.contains("renewgate_test_total{a=\"z\"} 2\n"));
        assert!(s.contains("renewgate_test_seconds_bucket{le=\"0.1\"} 1\n"));
        assert!(s.contains("renewgate_test_seconds_bucket{le=\"1\"} 2\n"));
        assert!(s.contains("renewgate_test_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(s.contains("renewgate_test_seconds_count 2\n"));
    }
}
