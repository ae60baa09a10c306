//! `prometheus-client` writes OpenMetrics text; `GET /metrics` has always served the Prometheus
//! text format (0.0.4, `text/plain`), and scrapers, `promtool check metrics` and the series names
//! users query were built on it. The two differ in two places for what this gateway exposes:
//! - a counter's family is named without `_total` in OpenMetrics (`# TYPE x counter`, samples
//!   `x_total`); in the text format the HELP and TYPE lines name the sample, `x_total`;
//! - a bucket bound is written `le="1.0"` by OpenMetrics; the gateway has always written the
//!   shortest form, `le="1"`, so the bucket series keep their label values.
//!
//! OpenMetrics' `# EOF` is never written (`encode_registry`, not `encode`), and no metric has a
//! unit (no `# UNIT` line).

/// The text-format rendering of `encode_registry`'s output.
pub(super) fn from_openmetrics(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len() + 256);
    // A family's HELP line comes before its TYPE line, which says whether to rename it.
    let mut help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = rest.split_once(' ');
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let suffix = if kind == "counter" { "_total" } else { "" };
            if let Some((help_name, text)) = help.take().filter(|(n, _)| *n == name) {
                out.push_str(&format!("# HELP {help_name}{suffix} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name}{suffix} {kind}\n"));
            continue;
        }
        out.push_str(&shortest_bucket_bound(line));
        out.push('\n');
    }
    out
}

/// A `_bucket` sample with its `le` value in Rust's shortest float form. A label starts after `{`
/// or `,`, and a `"` inside a value is escaped: `{le="` or `,le="` is the `le` label.
fn shortest_bucket_bound(line: &str) -> std::borrow::Cow<'_, str> {
    let Some((series, _)) = line.split_once('{') else { return line.into() };
    if !series.ends_with("_bucket") {
        return line.into();
    }
    let Some(start) = line.find("{le=\"").or_else(|| line.find(",le=\"")).map(|i| i + 5) else {
        return line.into();
    };
    let Some(len) = line[start..].find('"') else { return line.into() };
    match line[start..start + len].parse::<f64>() {
        Ok(bound) if bound.is_finite() => format!("{}{bound}{}", &line[..start], &line[start + len..]).into(),
        _ => line.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_by_their_samples_and_bounds_are_shortest() {
        let om = "# HELP renewgate_x Things.\n# TYPE renewgate_x counter\nrenewgate_x_total{a=\"1.0\"} 3\n\
                  # HELP renewgate_g A gauge.\n# TYPE renewgate_g gauge\nrenewgate_g{version=\"0.1.0\"} 1\n\
                  # HELP renewgate_h_seconds H.\n# TYPE renewgate_h_seconds histogram\n\
                  renewgate_h_seconds_sum 0.5\nrenewgate_h_seconds_count 1\n\
                  renewgate_h_seconds_bucket{role=\",le=\\\"2.0\",le=\"0.005\"} 0\n\
                  renewgate_h_seconds_bucket{le=\"120.0\",issuer=\"a\"} 1\n\
                  renewgate_h_seconds_bucket{issuer=\"a\",le=\"+Inf\"} 1\n";
        let text = from_openmetrics(om);
        assert_eq!(
            text,
            "# HELP renewgate_x_total Things.\n# TYPE renewgate_x_total counter\nrenewgate_x_total{a=\"1.0\"} 3\n\
             # HELP renewgate_g A gauge.\n# TYPE renewgate_g gauge\nrenewgate_g{version=\"0.1.0\"} 1\n\
             # HELP renewgate_h_seconds H.\n# TYPE renewgate_h_seconds histogram\n\
             renewgate_h_seconds_sum 0.5\nrenewgate_h_seconds_count 1\n\
             renewgate_h_seconds_bucket{role=\",le=\\\"2.0\",le=\"0.005\"} 0\n\
             renewgate_h_seconds_bucket{le=\"120\",issuer=\"a\"} 1\n\
             renewgate_h_seconds_bucket{issuer=\"a\",le=\"+Inf\"} 1\n"
        );
    }
}
