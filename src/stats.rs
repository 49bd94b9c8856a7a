//! Interval estimates for the numbers a run reports: Wilson score intervals for an accuracy.

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
