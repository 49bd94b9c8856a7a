//! Interval estimates for the numbers a run reports: Wilson score intervals for an accuracy,
//! Student t intervals for a mean over seeds.

/// The normal quantile of a two-sided 95 % interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// The 95 % Wilson score interval of `correct` successes in `total` trials, as fractions in
/// [0, 1]; `(0, 1)` when there are no trials. Unlike the normal approximation it stays inside
/// [0, 1] and is sensible at 0 % and 100 %.
pub fn wilson(correct: usize, total: usize) -> (f64, f64) {
    if total == 0 {
        return (0.0, 1.0);
    }
    let (n, z2) = (total as f64, Z95 * Z95);
    let p = correct as f64 / n;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    ((center - half).max(0.0), (center + half).min(1.0))
}

/// The 0.975 quantile of Student's t distribution for 1–30 degrees of freedom (the standard
/// table values); more degrees of freedom use 2.042 down to the normal 1.96 (see [`t975`]).
const T975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
];

/// The two-sided 95 % quantile of Student's t with `df` degrees of freedom (`df` ≥ 1).
pub fn t975(df: usize) -> f64 {
    match df {
        0 => f64::INFINITY,
        1..=30 => T975[df - 1],
        31..=60 => 2.0,
        _ => Z95,
    }
}

/// A mean over `n` values with its 95 % Student t interval; a single value has no interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeanInterval {
    pub mean: f64,
    pub n: usize,
    /// `(low, high)`; `None` for one value.
    pub interval: Option<(f64, f64)>,
}

impl MeanInterval {
    /// The mean and interval times `scale`, one decimal: `51.8% [50.0, 53.5]` (`unit` "%"), with
    /// a sign when `signed` (`+4.9 [+3.2, +6.7]`), or `65.6% (n = 1, no interval)`.
    ///
    /// ```
    /// let m = trainer::stats::mean_interval(&[0.5]).unwrap();
    /// assert_eq!(m.render(100.0, "%", false), "50.0% (n = 1, no interval)");
    /// ```
    pub fn render(&self, scale: f64, unit: &str, signed: bool) -> String {
        let num = |v: f64| {
            if signed {
                format!("{:+.1}", scale * v)
            } else {
                format!("{:.1}", scale * v)
            }
        };
        match self.interval {
            Some((lo, hi)) => format!("{}{unit} [{}, {}]", num(self.mean), num(lo), num(hi)),
            None => format!("{}{unit} (n = {}, no interval)", num(self.mean), self.n),
        }
    }

    /// Whether the interval lies wholly on one side of 0; never for a value with no interval.
    pub fn excludes_zero(&self) -> bool {
        self.interval.is_some_and(|(lo, hi)| lo > 0.0 || hi < 0.0)
    }
}

/// The mean of `values` with its 95 % Student t interval (`None` for an empty slice; no
/// interval for a single value).
pub fn mean_interval(values: &[f64]) -> Option<MeanInterval> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return Some(MeanInterval {
            mean,
            n,
            interval: None,
        });
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let half = t975(n - 1) * (var / n as f64).sqrt();
    Some(MeanInterval {
        mean,
        n,
        interval: Some((mean - half, mean + half)),
    })
}

/// McNemar's exact two-sided p-value for `b` and `c` discordant pairs: twice the binomial(b + c,
/// 1/2) tail of the smaller count, at most 1.
pub fn mcnemar_p(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // ln C(n, i) accumulated term by term, summed in probability space.
    let mut log_term = -(n as f64) * std::f64::consts::LN_2; // i = 0: C(n,0) / 2^n
    let mut tail = log_term.exp();
    for i in 1..=k {
        log_term += ((n - i + 1) as f64).ln() - (i as f64).ln();
        tail += log_term.exp();
    }
    (2.0 * tail).min(1.0)
}

/// The mean of `values` with a 95 % percentile bootstrap interval from `resamples` resamples drawn
/// with a generator seeded by `seed`: `(mean, low, high)`.
pub fn bootstrap_mean_interval(values: &[f64], resamples: usize, seed: u64) -> (f64, f64, f64) {
    let n = values.len();
    if n == 0 {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let mut rng = crate::rng::Rng::derived(seed, &[crate::rng::hash_str("bootstrap")]);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| {
            (0..n)
                .map(|_| values[rng.below(n as u64) as usize])
                .sum::<f64>()
                / n as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * resamples as f64) as usize).min(resamples - 1)];
    (mean, at(0.025), at(0.975))
}

/// The change of accuracy between two evals of the same questions, paired per question.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PairedChange {
    /// after − before, as a fraction.
    pub diff: f64,
    /// Its standard error from the discordant questions.
    pub se: f64,
    /// Questions right before and wrong after, and wrong before and right after.
    pub lost: usize,
    pub gained: usize,
    pub total: usize,
}

impl PairedChange {
    /// `before[i]` and `after[i]`: whether question i was answered correctly. The variance of the
    /// mean paired difference is `((b + c)/n − ((c − b)/n)²) / n` with `b` lost and `c` gained.
    pub fn new(before: &[bool], after: &[bool]) -> PairedChange {
        let total = before.len().min(after.len());
        let (mut lost, mut gained) = (0, 0);
        for (b, a) in before.iter().zip(after) {
            lost += usize::from(*b && !*a);
            gained += usize::from(!*b && *a);
        }
        let n = total.max(1) as f64;
        let diff = (gained as f64 - lost as f64) / n;
        let var = (((gained + lost) as f64 / n) - diff * diff) / n;
        PairedChange {
            diff,
            se: var.max(0.0).sqrt(),
            lost,
            gained,
            total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10 questions: 2 lost, 4 gained. diff = 0.2; the per-question differences are
    /// (-1 x2, +1 x4, 0 x4), whose population variance is 0.6 - 0.04 = 0.56, so
    /// se = sqrt(0.56 / 10) = 0.236643.
    /// Reference values: scipy.stats.binomtest(k, n, 0.5).pvalue (exact two-sided), e.g.
    /// binomtest(2, 12) = 0.03857421875 and binomtest(5, 10) = 1.0.
    #[test]
    fn mcnemar_matches_the_exact_binomial_test() {
        assert!((mcnemar_p(2, 10) - 0.038_574_218_75).abs() < 1e-12);
        assert!((mcnemar_p(10, 2) - 0.038_574_218_75).abs() < 1e-12);
        assert_eq!(mcnemar_p(5, 5), 1.0);
        assert_eq!(mcnemar_p(0, 0), 1.0);
        // binomtest(0, 20) = 2 / 2^20
        assert!((mcnemar_p(0, 20) - 2.0 / 1_048_576.0).abs() < 1e-15);
    }

    #[test]
    fn the_bootstrap_interval_holds_the_mean_and_is_seeded() {
        let values: Vec<f64> = (0..200).map(|i| f64::from(i % 3 == 0)).collect();
        let (m, lo, hi) = bootstrap_mean_interval(&values, 1000, 7);
        assert!((m - 67.0 / 200.0).abs() < 1e-12);
        assert!(lo < m && m < hi && hi - lo < 0.2, "{lo} {hi}");
        assert_eq!(bootstrap_mean_interval(&values, 1000, 7), (m, lo, hi));
    }

    #[test]
    fn a_paired_change_counts_discordant_questions() {
        let before = [
            true, true, false, false, false, false, true, true, false, false,
        ];
        let after = [
            false, false, true, true, true, true, true, true, false, false,
        ];
        let c = PairedChange::new(&before, &after);
        assert_eq!((c.lost, c.gained, c.total), (2, 4, 10));
        assert!((c.diff - 0.2).abs() < 1e-12);
        assert!((c.se - 0.236_643_191).abs() < 1e-8, "{}", c.se);
    }

    /// Reference values from the closed form of Wilson (1927), computed in Python (`math`),
    /// which is what statsmodels' `proportion_confint(method="wilson")` evaluates.
    #[test]
    fn wilson_intervals_match_the_closed_form() {
        let cases = [
            (
                (61, 200),
                (0.245_364_156_307_350_34, 0.371_985_520_979_783_66),
            ),
            ((0, 10), (0.0, 0.277_532_799_862_889_2)),
            ((10, 10), (0.722_467_200_137_110_7, 1.0)),
            ((1, 2), (0.094_531_205_734_230_74, 0.905_468_794_265_769_3)),
        ];
        for ((k, n), (lo, hi)) in cases {
            let (a, b) = wilson(k, n);
            assert!(
                (a - lo).abs() < 1e-12 && (b - hi).abs() < 1e-12,
                "{k}/{n}: {a} {b}"
            );
        }
        assert_eq!(wilson(0, 0), (0.0, 1.0));
    }

    /// Reference: mean 3, sample sd 1.5811 (values 1..5), t(4) = 2.776, half-width
    /// 2.776 · 1.5811 / √5 = 1.9630 (scipy.stats.t.interval(0.95, 4, 3, sem) gives 1.9632 with
    /// the unrounded quantile 2.7764).
    #[test]
    fn t_intervals_use_the_table_quantile() {
        let five = mean_interval(&[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        let (m, (lo, hi)) = (five.mean, five.interval.unwrap());
        assert_eq!(m, 3.0);
        assert!((hi - m - 1.962_95).abs() < 1e-4, "{lo} {hi}");
        assert!((m - lo - (hi - m)).abs() < 1e-12);
        let one = mean_interval(&[2.5]).unwrap();
        assert_eq!((one.mean, one.n, one.interval), (2.5, 1, None));
        assert!(!one.excludes_zero(), "one value is never beyond noise");
        assert_eq!(
            one.render(1.0, " points", true),
            "+2.5 points (n = 1, no interval)"
        );
        assert_eq!(five.render(1.0, "%", false), "3.0% [1.0, 5.0]");
        assert!(five.excludes_zero());
        assert_eq!(mean_interval(&[]), None);
        assert_eq!(t975(1), 12.706);
        assert_eq!(t975(1000), Z95);
    }
}
