//! `--runs N`: each point measured N times, weft and the ceiling
//! alternating, reported as medians. On a VM one run's ratio can move by
//! more than a target's margin; the median of several, with the spread of
//! the per-run ratios beside it, is what the README's tables show.

use super::stats::Point;

/// What one run of one system measured at a point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub calls_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

impl Sample {
    pub fn of(p: &Point) -> Sample {
        Sample {
            calls_per_sec: p.calls_per_sec(),
            p50_us: p.quantile_us(0.5),
            p99_us: p.quantile_us(0.99),
        }
    }
}

/// Every run of one point: weft's, and the ceiling's measured right after
/// each (empty without `--baseline`).
#[derive(Debug, Clone)]
pub struct Summary {
    pub system: String,
    pub pin: &'static str,
    pub size: usize,
    pub concurrency: usize,
    pub weft: Vec<Sample>,
    pub raw: Vec<Sample>,
}

/// The median of `values` (the mean of the middle two for an even count);
/// 0 for none.
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    match values.len() % 2 {
        1 => values[mid],
        _ => (values[mid - 1] + values[mid]) / 2.0,
    }
}

impl Summary {
    fn med(samples: &[Sample], field: fn(&Sample) -> f64) -> f64 {
        median(samples.iter().map(field).collect())
    }

    fn weft(&self, field: fn(&Sample) -> f64) -> f64 {
        Self::med(&self.weft, field)
    }

    fn raw(&self, field: fn(&Sample) -> f64) -> f64 {
        Self::med(&self.raw, field)
    }

    /// Each run's weft p50 over the ceiling's p50 of the same run: the
    /// lowest and the highest.
    fn p50_ratio_range(&self) -> Option<(f64, f64)> {
        let ratios: Vec<f64> = self
            .weft
            .iter()
            .zip(&self.raw)
            .filter(|(_, r)| r.p50_us > 0.0)
            .map(|(w, r)| w.p50_us / r.p50_us)
            .collect();
        let lo = ratios.iter().copied().reduce(f64::min)?;
        let hi = ratios.iter().copied().reduce(f64::max)?;
        Some((lo, hi))
    }

    fn has_baseline(&self) -> bool {
        !self.raw.is_empty() && self.raw(|s| s.calls_per_sec) > 0.0
    }

    /// One JSON object, `"summary": true`, with the medians and, with a
    /// baseline, the ratios.
    pub fn json(&self) -> String {
        let mut v = serde_json::json!({
            "summary": true,
            "system": self.system,
            "pin": self.pin,
            "size": self.size,
            "concurrency": self.concurrency,
            "runs": self.weft.len(),
            "calls_per_sec": round(self.weft(|s| s.calls_per_sec)),
            "p50_us": round(self.weft(|s| s.p50_us)),
            "p99_us": round(self.weft(|s| s.p99_us)),
        });
        if self.has_baseline() {
            let (lo, hi) = self.p50_ratio_range().unwrap_or_default();
            let extra = serde_json::json!({
                "raw_calls_per_sec": round(self.raw(|s| s.calls_per_sec)),
                "raw_p50_us": round(self.raw(|s| s.p50_us)),
                "raw_p99_us": round(self.raw(|s| s.p99_us)),
                "ratio": round3(self.weft(|s| s.calls_per_sec) / self.raw(|s| s.calls_per_sec)),
                "p50_ratio": round3(self.weft(|s| s.p50_us) / self.raw(|s| s.p50_us)),
                "p99_ratio": round3(self.weft(|s| s.p99_us) / self.raw(|s| s.p99_us)),
                "p50_ratio_min": round3(lo),
                "p50_ratio_max": round3(hi),
            });
            if let (Some(v), serde_json::Value::Object(extra)) = (v.as_object_mut(), extra) {
                v.extend(extra);
            }
        }
        v.to_string()
    }

    /// The markdown table's header, with or without the ceiling's columns.
    pub fn header(baseline: bool) -> &'static str {
        match baseline {
            true => {
                "| pin | size | in flight | weft calls/s | raw calls/s | ratio | weft p50 / p99 us | raw p50 / p99 us | p50 ratio | p99 ratio | p50 ratio, each run |\n\
                 | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
            }
            false => {
                "| pin | size | in flight | weft calls/s | weft p50 / p99 us |\n\
                 | --- | ---: | ---: | ---: | ---: |"
            }
        }
    }

    /// This point's row of the markdown table.
    pub fn row(&self) -> String {
        let size = match self.size {
            s if s >= 1 << 20 && s % (1 << 20) == 0 => format!("{} MiB", s >> 20),
            s if s >= 1 << 10 && s % (1 << 10) == 0 => format!("{} KiB", s >> 10),
            s => s.to_string(),
        };
        let (wc, w50, w99) = (
            self.weft(|s| s.calls_per_sec),
            self.weft(|s| s.p50_us),
            self.weft(|s| s.p99_us),
        );
        let head = format!(
            "| {} | {size} | {} | {} |",
            self.pin,
            self.concurrency,
            thousands(wc)
        );
        if !self.has_baseline() {
            return format!("{head} {w50:.1} / {w99:.1} |");
        }
        let (rc, r50, r99) = (
            self.raw(|s| s.calls_per_sec),
            self.raw(|s| s.p50_us),
            self.raw(|s| s.p99_us),
        );
        let (lo, hi) = self.p50_ratio_range().unwrap_or_default();
        format!(
            "{head} {} | {:.2} | {w50:.1} / {w99:.1} | {r50:.1} / {r99:.1} | {:.2} | {:.2} | {lo:.2}-{hi:.2} |",
            thousands(rc),
            wc / rc,
            w50 / r50,
            w99 / r99,
        )
    }
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// `1234567.8` as `1 234 568`.
fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(calls_per_sec: f64, p50_us: f64, p99_us: f64) -> Sample {
        Sample {
            calls_per_sec,
            p50_us,
            p99_us,
        }
    }

    fn summary() -> Summary {
        Summary {
            system: "weft-mio".into(),
            pin: "split",
            size: 64,
            concurrency: 16,
            weft: vec![
                sample(100.0, 10.0, 40.0),
                sample(300.0, 30.0, 20.0),
                sample(200.0, 20.0, 30.0),
            ],
            raw: vec![
                sample(400.0, 10.0, 10.0),
                sample(500.0, 10.0, 20.0),
                sample(600.0, 20.0, 10.0),
            ],
        }
    }

    #[test]
    fn medians_are_taken_per_quantity() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
        let s = summary();
        // Medians: weft 200 calls/s, p50 20, p99 30; raw 500, 10, 10.
        let v: serde_json::Value = serde_json::from_str(&s.json()).unwrap();
        assert_eq!(v["calls_per_sec"], 200.0);
        assert_eq!(v["p50_us"], 20.0);
        assert_eq!(v["p99_us"], 30.0);
        assert_eq!(v["raw_calls_per_sec"], 500.0);
        assert_eq!(v["ratio"], 0.4);
        assert_eq!(v["p50_ratio"], 2.0);
        assert_eq!(v["p99_ratio"], 3.0);
        // Per run: 10/10, 30/10, 20/20.
        assert_eq!(v["p50_ratio_min"], 1.0);
        assert_eq!(v["p50_ratio_max"], 3.0);
        assert_eq!(v["runs"], 3);
    }

    #[test]
    fn a_row_shows_medians_ratios_and_the_spread() {
        assert_eq!(
            summary().row(),
            "| split | 64 | 16 | 200 | 500 | 0.40 | 20.0 / 30.0 | 10.0 / 10.0 | 2.00 | 3.00 | 1.00-3.00 |"
        );
        let mut big = summary();
        big.size = 1 << 20;
        big.raw.clear();
        assert_eq!(big.row(), "| split | 1 MiB | 16 | 200 | 20.0 / 30.0 |");
        assert!(!big.json().contains("ratio"));
        assert_eq!(thousands(1_234_567.8), "1 234 568");
        assert_eq!(thousands(999.0), "999");
    }
}
