//! Samples, percentiles and the results table.

use std::fmt::Write;

/// Measurements of one thing, in one unit (milliseconds unless said).
#[derive(Debug, Default, Clone)]
pub struct Samples(pub Vec<f64>);

impl Samples {
    pub fn push(&mut self, value: f64) {
        self.0.push(value);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The `p`th percentile (nearest rank), NaN when empty.
    pub fn pct(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }

    pub fn p50(&self) -> f64 {
        self.pct(50.0)
    }

    /// `p50 / p95 / p99` with a unit.
    pub fn spread(&self, unit: &str) -> String {
        format!(
            "{} / {} / {} {unit}",
            num(self.pct(50.0)),
            num(self.pct(95.0)),
            num(self.pct(99.0))
        )
    }
}

/// A number with sensible digits.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        "–".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// `num` with its sign: `+50.3` or `−76.5` (a difference against a floor).
pub fn signed(v: f64) -> String {
    if v < 0.0 {
        format!("−{}", num(-v))
    } else {
        format!("+{}", num(v))
    }
}

/// One line of the results table.
pub struct Row {
    pub metric: String,
    pub floor: String,
    pub gantry: String,
    pub ratio: String,
    pub spread: String,
    pub target: String,
    /// `None` where there is nothing to hold (a report-only line).
    pub holds: Option<bool>,
}

pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| metric | floor | Gantry | ratio | Gantry p50 / p95 / p99 | target | holds |"
    );
    let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- | --- |");
    for r in rows {
        let holds = match r.holds {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "–",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {holds} |",
            r.metric, r.floor, r.gantry, r.ratio, r.spread, r.target
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let s = Samples((1..=100).map(f64::from).collect());
        assert_eq!(s.pct(50.0), 50.0);
        assert_eq!(s.pct(99.0), 99.0);
        assert_eq!(s.pct(100.0), 100.0);
        assert!(Samples::default().p50().is_nan());
    }

    #[test]
    fn differences_carry_one_sign() {
        assert_eq!(signed(50.34), "+50.3");
        assert_eq!(signed(-99.8), "−99.8");
        assert_eq!(signed(-125.0), "−125");
    }
}
