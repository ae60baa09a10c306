//! Process-wide metrics through `prometheus-client`: labelled counters and histograms in one
//! registry, exposed in the Prometheus text format (0.0.4) by [`render`]. Gauges that describe the
//! shared database (queue depth, certificates by state and expiry) are computed at scrape time by
//! `api::admin::metrics` into a registry of their own, so every instance reports the same truth.
//!
//! The series names, label names and label values are a contract (dashboards,
//! `docs/prometheus-alerts.yml`): a counter is registered without its `_total` suffix, which the
//! encoder appends.
mod classic_text;

use std::sync::LazyLock;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// `renewgate_http_requests_total`: one request, by route template (never the raw path).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpRequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

/// Renewals and enrollments: which dialect asked (venafi, keyfactor, acme, console, scheduler)
/// and whether it went through (success, failure).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DialectOutcomeLabels {
    pub dialect: &'static str,
    pub outcome: &'static str,
}

/// Issuance jobs, store pushes, scheduler passes: one outcome word.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

/// The issuer that signed (its configured name).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IssuerLabels {
    pub issuer: String,
}

/// A failed issuance attempt: the issuer and its problem type.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IssuerProblemLabels {
    pub issuer: String,
    pub problem: String,
}

const ISSUANCE_BUCKETS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];
const ISSUER_BUCKETS: [f64; 14] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];

fn issuer_histogram() -> Histogram {
    Histogram::new(ISSUER_BUCKETS)
}

/// Seconds as a histogram observation: a clock that went backwards or a NaN counts as 0.
pub fn seconds(secs: f64) -> f64 {
    if secs.is_finite() && secs > 0.0 { secs } else { 0.0 }
}

/// A metric whose HELP and TYPE lines are written even before its first series: the registry
/// skips an empty family, but a scrape has always listed every series the alert rules
/// (`docs/prometheus-alerts.yml`) may name, and `test_metrics.py` checks them by their TYPE line.
#[derive(Debug)]
struct Listed<M>(M);

impl<M: EncodeMetric> EncodeMetric for Listed<M> {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        self.0.metric_type()
    }
}

pub struct Metrics {
    pub http_requests: Family<HttpRequestLabels, Counter>,
    pub renewals: Family<DialectOutcomeLabels, Counter>,
    pub enrollments: Family<DialectOutcomeLabels, Counter>,
    pub issuance: Histogram,
    pub issuance_jobs: Family<OutcomeLabels, Counter>,
    pub store_push_results: Family<OutcomeLabels, Counter>,
    pub scheduler_runs: Family<OutcomeLabels, Counter>,
    pub issuer_latency: Family<IssuerLabels, Histogram, fn() -> Histogram>,
    pub issuer_failures: Family<IssuerProblemLabels, Counter>,
    /// The same metrics (they are shared handles), registered under their names for encoding.
    registry: Registry,
}

impl Metrics {
    fn new() -> Metrics {
        let m = Metrics {
            http_requests: Family::default(),
            renewals: Family::default(),
            enrollments: Family::default(),
            issuance: Histogram::new(ISSUANCE_BUCKETS),
            issuance_jobs: Family::default(),
            store_push_results: Family::default(),
            scheduler_runs: Family::default(),
            issuer_latency: Family::new_with_constructor(issuer_histogram),
            issuer_failures: Family::default(),
            registry: Registry::default(),
        };
        // Help texts without their final period: the registry appends one.
        let mut r = Registry::default();
        r.register(
            "renewgate_http_requests",
            "HTTP requests by method, route template and status",
            Listed(m.http_requests.clone()),
        );
        r.register(
            "renewgate_renewals",
            "Renewal requests by dialect (venafi, keyfactor, acme, scheduler) and outcome (success, failure)",
            Listed(m.renewals.clone()),
        );
        r.register(
            "renewgate_enrollments",
            "Enrollment requests by dialect and outcome",
            Listed(m.enrollments.clone()),
        );
        r.register(
            "renewgate_issuance_duration_seconds",
            "Time from a job's acceptance to its certificate being issued, by this instance's workers",
            Listed(m.issuance.clone()),
        );
        r.register(
            "renewgate_issuance_jobs",
            "Issuance jobs finished by this instance's workers, by outcome (issued, retry, failed)",
            Listed(m.issuance_jobs.clone()),
        );
        r.register(
            "renewgate_store_push_results",
            "Store push results reported by agents to this instance, by outcome (success, warning, failure)",
            Listed(m.store_push_results.clone()),
        );
        r.register(
            "renewgate_scheduler_runs",
            "Passes of the automatic-renewal scheduler in this instance, by outcome",
            Listed(m.scheduler_runs.clone()),
        );
        r.register(
            "renewgate_issuer_duration_seconds",
            "Time an issuer took to sign one certificate (an upstream CA: the whole order), by issuer",
            Listed(m.issuer_latency.clone()),
        );
        r.register(
            "renewgate_issuer_failures",
            "Failed issuance attempts by issuer and problem type (an upstream ACME error type such as \
             rateLimited or badNonce, or unreachable, crypto, policy)",
            Listed(m.issuer_failures.clone()),
        );
        Metrics { registry: r, ..m }
    }

    pub fn renewal(&self, dialect: &'static str, outcome: &'static str) {
        self.renewals.get_or_create(&DialectOutcomeLabels { dialect, outcome }).inc();
    }

    pub fn enrollment(&self, dialect: &'static str, outcome: &'static str) {
        self.enrollments.get_or_create(&DialectOutcomeLabels { dialect, outcome }).inc();
    }

    pub fn issuance_job(&self, outcome: &'static str) {
        self.issuance_jobs.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn store_push_result(&self, outcome: &'static str) {
        self.store_push_results.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn scheduler_run(&self, outcome: &'static str) {
        self.scheduler_runs.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn issuer_signed(&self, issuer: &str, secs: f64) {
        self.issuer_latency.get_or_create(&IssuerLabels { issuer: issuer.to_string() }).observe(seconds(secs));
    }

    pub fn issuer_failure(&self, issuer: &str, problem: &str) {
        self.issuer_failures
            .get_or_create(&IssuerProblemLabels { issuer: issuer.to_string(), problem: problem.to_string() })
            .inc();
    }
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's series, then `scrape`'s (the per-scrape gauges), in the Prometheus text format.
pub fn render(scrape: &Registry) -> Result<String, std::fmt::Error> {
    let mut openmetrics = String::new();
    prometheus_client::encoding::text::encode_registry(&mut openmetrics, &METRICS.registry)?;
    prometheus_client::encoding::text::encode_registry(&mut openmetrics, scrape)?;
    Ok(classic_text::from_openmetrics(&openmetrics))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms_in_the_text_format() {
        let counter: Family<IssuerLabels, Counter> = Family::default();
        counter.get_or_create(&IssuerLabels { issuer: "x\"y".into() }).inc();
        counter.get_or_create(&IssuerLabels { issuer: "z".into() }).inc_by(2);
        let histogram = Histogram::new([0.1, 1.0]);
        histogram.observe(0.05);
        histogram.observe(0.5);
        let mut r = Registry::default();
        r.register("renewgate_test", "Test", counter);
        r.register("renewgate_test_seconds", "Test", histogram);
        let s = render(&r).unwrap();
        assert!(s.contains("# HELP renewgate_test_total Test.\n# TYPE renewgate_test_total counter\n"), "{s}");
        assert!(s.contains("renewgate_test_total{issuer=\"x\\\"y\"} 1\n"), "{s}");
        assert!(s.contains("renewgate_test_total{issuer=\"z\"} 2\n"), "{s}");
        assert!(s.contains("# TYPE renewgate_test_seconds histogram\n"), "{s}");
        assert!(s.contains("renewgate_test_seconds_bucket{le=\"0.1\"} 1\n"), "{s}");
        assert!(s.contains("renewgate_test_seconds_bucket{le=\"1\"} 2\n"), "{s}");
        assert!(s.contains("renewgate_test_seconds_bucket{le=\"+Inf\"} 2\n"), "{s}");
        assert!(s.contains("renewgate_test_seconds_count 2\n"), "{s}");
        assert!(!s.contains("# EOF"), "{s}");
    }

    #[test]
    fn the_process_series_keep_their_names() {
        METRICS.renewal("venafi", "success");
        METRICS.issuer_signed("Built-in", 0.2);
        METRICS.issuer_failure("Built-in", "crypto");
        let s = render(&Registry::default()).unwrap();
        for line in [
            "# TYPE renewgate_renewals_total counter\n",
            "renewgate_renewals_total{dialect=\"venafi\",outcome=\"success\"} ",
            "renewgate_issuer_duration_seconds_bucket{le=\"1\",issuer=\"Built-in\"} ",
            "renewgate_issuer_failures_total{issuer=\"Built-in\",problem=\"crypto\"} ",
        ] {
            assert!(s.contains(line), "{line:?} not in {s}");
        }
    }
}
