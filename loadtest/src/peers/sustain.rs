//! When a contestant "cannot sustain" an offered rate, so that its higher
//! rates are skipped. Pure: numbers in, verdict out.

use serde::{Deserialize, Serialize};

use crate::report::Measurement;

/// Thresholds of the rule; all three must hold for a rate to count as sustained.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SustainRule {
    /// Successful responses per second ÷ offered rate must reach this (0.95).
    pub min_achieved_share: f64,
    /// Late sends ÷ measured requests must stay at or below this (0.05).
    pub max_late_share: f64,
    /// Share of responses that were 200 and complete (1.0 = every one).
    pub min_success: f64,
}

impl Default for SustainRule {
    fn default() -> Self {
        Self {
            min_achieved_share: 0.95,
            max_late_share: 0.05,
            min_success: 1.0,
        }
    }
}

/// The figures the rule looks at, taken from one open-loop measurement.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateFigures {
    pub offered_rps: f64,
    pub achieved_rps: f64,
    pub requests: u64,
    pub late_sends: u64,
    pub success_rate: f64,
}

impl RateFigures {
    pub fn of(m: &Measurement, offered_rps: f64) -> Self {
        Self {
            offered_rps,
            achieved_rps: m.achieved_rps,
            requests: m.requests,
            late_sends: m.late_sends,
            success_rate: m.success_rate,
        }
    }
}

impl SustainRule {
    /// The reasons the rate was not sustained; empty when it was.
    pub fn judge(&self, f: &RateFigures) -> Vec<String> {
        let mut why = Vec::new();
        if f.requests == 0 {
            why.push("no request completed".to_string());
            return why;
        }
        if f.achieved_rps < self.min_achieved_share * f.offered_rps {
            why.push(format!(
                "achieved {:.0}/s < {:.0}% of {:.0}/s",
                f.achieved_rps,
                self.min_achieved_share * 100.0,
                f.offered_rps
            ));
        }
        let late = f.late_sends as f64 / f.requests as f64;
        if late > self.max_late_share {
            why.push(format!(
                "{:.1}% late sends > {:.0}%",
                late * 100.0,
                self.max_late_share * 100.0
            ));
        }
        if f.success_rate < self.min_success {
            why.push(format!(
                "success {:.2}% < {:.0}%",
                f.success_rate * 100.0,
                self.min_success * 100.0
            ));
        }
        why
    }
}

/// What happened to one contestant at one offered rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RateStatus {
    Sustained,
    NotSustained,
    /// Not offered: the contestant had already failed a lower rate (or died).
    Skipped,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figs(achieved: f64, late: u64, success: f64) -> RateFigures {
        RateFigures {
            offered_rps: 500.0,
            achieved_rps: achieved,
            requests: 5000,
            late_sends: late,
            success_rate: success,
        }
    }

    #[test]
    fn sustained_when_all_three_hold() {
        let r = SustainRule::default();
        assert!(r.judge(&figs(499.0, 0, 1.0)).is_empty());
        // Exactly at the thresholds still counts.
        assert!(r.judge(&figs(475.0, 250, 1.0)).is_empty());
    }

    #[test]
    fn each_threshold_fails_on_its_own() {
        let r = SustainRule::default();
        let slow = r.judge(&figs(70.0, 0, 1.0));
        assert_eq!(slow.len(), 1);
        assert!(slow[0].contains("achieved 70/s"), "{slow:?}");
        let late = r.judge(&figs(500.0, 251, 1.0));
        assert_eq!(late.len(), 1);
        assert!(late[0].contains("late"), "{late:?}");
        let failing = r.judge(&figs(500.0, 0, 0.999));
        assert_eq!(failing.len(), 1);
        assert!(failing[0].contains("success"), "{failing:?}");
        assert_eq!(r.judge(&figs(10.0, 4000, 0.5)).len(), 3);
    }

    #[test]
    fn nothing_completed_is_not_sustained() {
        let f = RateFigures {
            requests: 0,
            ..figs(0.0, 0, 0.0)
        };
        assert_eq!(SustainRule::default().judge(&f).len(), 1);
    }
}
