//! Learning-rate schedules as in HF transformers: linear warmup from 0, then constant, linear decay
//! to 0, or cosine decay to 0.

use crate::recipe::Schedule;

/// The learning rate of every optimizer step.
#[derive(Debug, Clone, PartialEq)]
pub struct LrSchedule {
    pub base: f64,
    pub warmup: usize,
    pub total: usize,
    pub kind: Schedule,
}

impl LrSchedule {
    /// `warmup_ratio` of `total` steps (rounded up) warm up.
    pub fn new(base: f64, warmup_ratio: f64, total: usize, kind: Schedule) -> Self {
        let warmup = (warmup_ratio * total as f64).ceil() as usize;
        Self {
            base,
            warmup,
            total,
            kind,
        }
    }

    /// The learning rate of step `step` (0-based).
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.base * step as f64 / self.warmup.max(1) as f64;
        }
        let progress =
            (step - self.warmup) as f64 / (self.total.saturating_sub(self.warmup)).max(1) as f64;
        let factor = match self.kind {
            Schedule::Constant => 1.0,
            Schedule::Linear => (1.0 - progress).max(0.0),
            Schedule::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
        };
        self.base * factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_rises_linearly_then_cosine_falls_to_zero() {
        let s = LrSchedule::new(1.0, 0.2, 10, Schedule::Cosine);
        assert_eq!(s.warmup, 2);
        assert_eq!(s.lr(0), 0.0);
        assert_eq!(s.lr(1), 0.5);
        assert_eq!(s.lr(2), 1.0);
        assert!((s.lr(6) - 0.5).abs() < 1e-12);
        assert!(s.lr(10).abs() < 1e-12);
    }

    #[test]
    fn linear_and_constant_after_warmup() {
        let l = LrSchedule::new(2.0, 0.0, 4, Schedule::Linear);
        assert_eq!((l.lr(0), l.lr(2)), (2.0, 1.0));
        let c = LrSchedule::new(2.0, 0.0, 4, Schedule::Constant);
        assert_eq!(c.lr(3), 2.0);
    }
}
