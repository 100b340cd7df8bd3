//! Rate limits of one key, team or customer: requests per minute, tokens per minute (input and
//! output, reserved up front from an estimate and corrected to the real usage after) and
//! requests in flight. Minute windows are UTC minutes, counted in the same one-word atomic
//! ledgers as budgets, so admitting a request is a few compare-and-swaps and never a lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::budget::{Ledger, Period, Reservation, Window};

/// The limits as configured; `None` means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitSettings {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub concurrency: Option<u64>,
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    Requests,
    Tokens,
    Concurrency,
}

/// A refusal, with what the client needs for `retry-after` and the rate-limit headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub kind: LimitKind,
    pub limit: u64,
    /// Seconds until the window admits the request again (at least 1; concurrency: 1).
    pub retry_after: u64,
}

/// What a limit has left after admitting a request (for `x-ratelimit-*` headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Remaining {
    pub requests: Option<(u64, u64)>,
    pub tokens: Option<(u64, u64)>,
}

/// Live limits of one key, team or customer.
#[derive(Debug)]
pub struct Limits {
    rpm: Option<Ledger>,
    tpm: Option<Ledger>,
    concurrency: Option<(u64, Arc<AtomicU64>)>,
}

const MINUTE: Window = Window {
    period: Period::Minute,
    anchor: None,
};

impl Limits {
    pub fn new(s: LimitSettings) -> Self {
        Limits {
            rpm: s.rpm.map(|n| Ledger::counting(n, MINUTE)),
            tpm: s.tpm.map(|n| Ledger::counting(n, MINUTE)),
            concurrency: s.concurrency.map(|n| (n, Arc::new(AtomicU64::new(0)))),
        }
    }

    /// Admits a request expected to use `tokens` (input counted or estimated, plus the most it
    /// may generate), or says which limit refuses it. Nothing is held when it is refused.
    pub fn admit(&self, now: i64, tokens: u64) -> Result<(Admission, Remaining), Limited> {
        let retry_after = |resets_at: Option<i64>| {
            resets_at.map_or(1, |end| u64::try_from(end - now).unwrap_or(1).max(1))
        };
        let mut admission = Admission::default();
        if let Some((limit, count)) = &self.concurrency {
            let before = count.fetch_add(1, Ordering::AcqRel);
            if before >= *limit {
                count.fetch_sub(1, Ordering::AcqRel);
                return Err(Limited {
                    kind: LimitKind::Concurrency,
                    limit: *limit,
                    retry_after: 1,
                });
            }
            admission.slot = Some(Arc::clone(count));
        }
        if let Some(rpm) = &self.rpm {
            match rpm.reserve(now, 1) {
                Ok(r) => admission.request = Some(r),
                Err(e) => {
                    return Err(Limited {
                        kind: LimitKind::Requests,
                        limit: rpm.limit(),
                        retry_after: retry_after(e.resets_at),
                    })
                }
            }
        }
        if let Some(tpm) = &self.tpm {
            // A request larger than the whole limit could never pass: it is reserved as the
            // whole minute instead, so it runs alone rather than never. At least one token is
            // reserved, so a full minute (or a limit of 0) refuses even a zero estimate.
            match tpm.reserve(now, tokens.clamp(1, tpm.limit().max(1))) {
                Ok(r) => admission.tokens = Some(r),
                Err(e) => {
                    // Give back what this request already holds.
                    if let (Some(rpm), Some(r)) = (&self.rpm, admission.request.take()) {
                        rpm.settle(now, r, 0);
                    }
                    return Err(Limited {
                        kind: LimitKind::Tokens,
                        limit: tpm.limit(),
                        retry_after: retry_after(e.resets_at),
                    });
                }
            }
        }
        let remaining = Remaining {
            requests: self
                .rpm
                .as_ref()
                .map(|l| (l.limit(), l.limit().saturating_sub(l.used(now)))),
            tokens: self
                .tpm
                .as_ref()
                .map(|l| (l.limit(), l.limit().saturating_sub(l.used(now)))),
        };
        Ok((admission, remaining))
    }

    /// The request finished having used `tokens` (its real usage; its estimate if unknown).
    pub fn finish(&self, now: i64, mut admission: Admission, tokens: u64) {
        if let (Some(tpm), Some(r)) = (&self.tpm, admission.tokens.take()) {
            tpm.settle(now, r, tokens);
        }
        // The request count stays in the minute the request was admitted in (settling it
        // would count a request that ends in the next minute there too).
        let _ = admission.request.take();
        // The concurrency slot is released when `admission` drops.
    }
}

impl Limits {
    /// Gives back everything an admission took: the request is refused by another level and
    /// counts for nothing.
    pub fn cancel(&self, now: i64, mut admission: Admission) {
        if let (Some(rpm), Some(r)) = (&self.rpm, admission.request.take()) {
            rpm.settle(now, r, 0);
        }
        if let (Some(tpm), Some(r)) = (&self.tpm, admission.tokens.take()) {
            tpm.settle(now, r, 0);
        }
    }
}

/// What an admitted request holds: its requests-per-minute and tokens-per-minute reservations
/// and its concurrency slot (released on drop, so a request that panics or is cancelled
/// gives it back).
#[derive(Debug, Default)]
#[must_use = "an admission holds limits until the request finishes"]
pub struct Admission {
    request: Option<Reservation>,
    tokens: Option<Reservation>,
    slot: Option<Arc<AtomicU64>>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(count) = self.slot.take() {
            count.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-07 15:30:00 UTC.
    const NOW: i64 = 1_796_657_400;

    fn limits(rpm: Option<u64>, tpm: Option<u64>, concurrency: Option<u64>) -> Limits {
        Limits::new(LimitSettings {
            rpm,
            tpm,
            concurrency,
        })
    }

    #[test]
    fn requests_per_minute_refuse_with_the_seconds_left_in_the_minute() {
        let l = limits(Some(2), None, None);
        let (a, rem) = l.admit(NOW + 15, 0).unwrap();
        assert_eq!(rem.requests, Some((2, 1)));
        let (b, _) = l.admit(NOW + 15, 0).unwrap();
        let refused = l.admit(NOW + 15, 0).unwrap_err();
        assert_eq!(refused.kind, LimitKind::Requests);
        assert_eq!(refused.retry_after, 45);
        l.finish(NOW + 16, a, 0);
        l.finish(NOW + 16, b, 0);
        // Finished requests still count for their minute; the next minute starts fresh.
        assert!(l.admit(NOW + 30, 0).is_err());
        assert!(l.admit(NOW + 60, 0).is_ok());
    }

    #[test]
    fn tokens_are_reserved_then_corrected_to_the_real_usage() {
        let l = limits(Some(100), Some(1000), None);
        let (a, rem) = l.admit(NOW, 800).unwrap();
        assert_eq!(rem.tokens, Some((1000, 200)));
        let refused = l.admit(NOW, 300).unwrap_err();
        assert_eq!(refused.kind, LimitKind::Tokens);
        // The refused request gave its rpm reservation back.
        assert_eq!(l.rpm.as_ref().unwrap().used(NOW), 1);
        l.finish(NOW, a, 150);
        let (_b, rem) = l.admit(NOW, 300).unwrap();
        assert_eq!(rem.tokens, Some((1000, 550)));
        // A request bigger than the whole limit takes the whole minute instead of never running.
        let l = limits(None, Some(1000), None);
        assert!(l.admit(NOW, 5000).is_ok());
        assert!(l.admit(NOW, 1).is_err());
        // A full minute refuses a zero estimate too, and a limit of 0 refuses everything.
        assert!(l.admit(NOW, 0).is_err());
        assert!(limits(None, Some(0), None).admit(NOW, 0).is_err());
    }

    #[test]
    fn a_request_that_ends_in_the_next_minute_counts_once() {
        let l = limits(Some(2), None, None);
        let (a, _) = l.admit(NOW + 59, 0).unwrap();
        l.finish(NOW + 61, a, 0);
        let (_b, rem) = l.admit(NOW + 61, 0).unwrap();
        assert_eq!(
            rem.requests,
            Some((2, 1)),
            "the first request counted in its own minute"
        );
    }

    #[test]
    fn concurrency_slots_come_back_when_a_request_ends_or_is_dropped() {
        let l = limits(None, None, Some(2));
        let a = l.admit(NOW, 0).unwrap().0;
        let b = l.admit(NOW, 0).unwrap().0;
        let refused = l.admit(NOW, 0).unwrap_err();
        assert_eq!(refused.kind, LimitKind::Concurrency);
        l.finish(NOW, a, 0);
        let c = l.admit(NOW, 0).unwrap().0;
        drop(b); // cancelled: never finished
        drop(c);
        assert!(l.admit(NOW, 0).is_ok());
    }

    #[test]
    fn concurrent_admissions_never_exceed_the_limits() {
        let l = Arc::new(limits(Some(50), None, Some(10)));
        let barrier = Arc::new(std::sync::Barrier::new(64));
        let admitted = Arc::new(AtomicU64::new(0));
        let peak = Arc::new(AtomicU64::new(0));
        let handles: Vec<_> = (0..64)
            .map(|_| {
                let (l, barrier, admitted, peak) = (
                    Arc::clone(&l),
                    Arc::clone(&barrier),
                    Arc::clone(&admitted),
                    Arc::clone(&peak),
                );
                std::thread::spawn(move || {
                    barrier.wait();
                    // Until the minute's requests are used up; a full house means try again.
                    loop {
                        match l.admit(NOW, 0) {
                            Ok((a, _)) => {
                                let now_in = admitted.fetch_add(1, Ordering::AcqRel) + 1;
                                peak.fetch_max(now_in, Ordering::AcqRel);
                                std::thread::yield_now();
                                admitted.fetch_sub(1, Ordering::AcqRel);
                                l.finish(NOW, a, 0);
                            }
                            Err(e) if e.kind == LimitKind::Concurrency => std::thread::yield_now(),
                            Err(_) => break,
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert!(peak.load(Ordering::Acquire) <= 10);
        assert_eq!(
            l.rpm.as_ref().unwrap().used(NOW),
            50,
            "exactly the rpm limit admitted"
        );
    }
}
