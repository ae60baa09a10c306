//! Latency percentiles of a bench run: an HDR histogram per client thread (microseconds, three
//! significant digits: a percentile is exact to 0.1%), merged when the run ends.
use std::time::Duration;

use hdrhistogram::Histogram;

pub struct Latencies(Histogram<u64>);

/// The slowest latency kept apart (1 hour, in microseconds); a slower one counts as this.
const HIGHEST_US: u64 = 3_600_000_000;

impl Default for Latencies {
    #[expect(clippy::expect_used, reason = "constant bounds that hdrhistogram accepts")]
    fn default() -> Self {
        Latencies(
            Histogram::new_with_bounds(1, HIGHEST_US, 3).expect("1 µs..1 h at 3 significant digits is a valid range"),
        )
    }
}

impl Latencies {
    pub fn record(&mut self, elapsed: Duration) {
        self.0.saturating_record(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
    }

    #[expect(clippy::expect_used, reason = "every Latencies has the same bounds, so adding never fails")]
    pub fn add(&mut self, other: &Latencies) {
        self.0.add(&other.0).expect("histograms of the same range add up");
    }

    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The `p`th percentile (0..=100) in milliseconds; 0 when nothing was recorded.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.0.is_empty() { 0.0 } else { self.0.value_at_quantile(p / 100.0) as f64 / 1000.0 }
    }

    /// The slowest in milliseconds; 0 when nothing was recorded.
    pub fn max_ms(&self) -> f64 {
        if self.0.is_empty() { 0.0 } else { self.0.max() as f64 / 1000.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_merged_clients() {
        let (mut a, mut b) = (Latencies::default(), Latencies::default());
        for ms in 1..=50u64 {
            a.record(Duration::from_millis(ms));
        }
        for ms in 51..=100u64 {
            b.record(Duration::from_millis(ms));
        }
        a.add(&b);
        assert_eq!(a.count(), 100);
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.001;
        assert!(close(a.percentile_ms(50.0), 50.0), "{}", a.percentile_ms(50.0));
        assert!(close(a.percentile_ms(90.0), 90.0), "{}", a.percentile_ms(90.0));
        assert!(close(a.percentile_ms(99.0), 99.0), "{}", a.percentile_ms(99.0));
        assert!(close(a.max_ms(), 100.0), "{}", a.max_ms());
        assert_eq!(Latencies::default().percentile_ms(99.0), 0.0);
    }
}
