//! Budgets in USD over a period, exact under concurrency: reserve the worst case before the
//! upstream call, refuse what does not fit, settle the real cost after (releasing the rest).
//!
//! One budget is one atomic word: the period's window tag (16 bits) and the amount spent or
//! reserved in it (48 bits, in units of 10⁻⁸ USD, so up to about 2.8 million USD per period and
//! a cheap model's few-token request still counts). Reserving is a compare-and-swap loop that
//! starts a fresh window when the period rolled over, so concurrent requests can never
//! together reserve past the limit, and no lock is taken. (The tag wraps after 65,536 windows:
//! a key untouched for exactly that many periods — 7.5 years of hourly windows — would see its
//! old spend again; anything shorter or longer is told apart.)

use std::sync::atomic::{AtomicU64, Ordering};

/// 10⁻⁸ USD: the unit budgets count in.
pub const UNITS_PER_USD: f64 = 1e8;
const AMOUNT_BITS: u32 = 48;
const AMOUNT_MASK: u64 = (1 << AMOUNT_BITS) - 1;
/// The largest amount one window can hold.
pub const MAX_UNITS: u64 = AMOUNT_MASK;

/// USD → budget units, rounded up (a reservation never undercounts) and capped.
pub fn units(usd: f64) -> u64 {
    to_units(usd, f64::ceil)
}

/// USD → budget units, rounded to the nearest (a real cost, charged exactly as the spend
/// rows record it).
pub fn units_nearest(usd: f64) -> u64 {
    to_units(usd, f64::round)
}

fn to_units(usd: f64, round: fn(f64) -> f64) -> u64 {
    // NaN and anything ≤ 0 cost nothing.
    if usd.is_nan() || usd <= 0.0 {
        return 0;
    }
    let u = round(usd * UNITS_PER_USD);
    if u >= MAX_UNITS as f64 {
        MAX_UNITS
    } else {
        u as u64
    }
}

/// The first second of a calendar month (UTC).
pub fn month_start(year: i64, month: u32) -> i64 {
    days_from_civil(year, month, 1) * 86_400
}

/// How long a budget's window lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// Rate-limit windows (requests or tokens per minute); not a budget period.
    Minute,
    Hour,
    Day,
    Week,
    Days30,
    /// A calendar month, UTC.
    Month,
    /// Never resets.
    Total,
}

impl Period {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "1h" => Period::Hour,
            "1d" => Period::Day,
            "7d" => Period::Week,
            "30d" => Period::Days30,
            "1mo" => Period::Month,
            "total" => Period::Total,
            _ => return None,
        })
    }

    fn seconds(self) -> Option<i64> {
        match self {
            Period::Minute => Some(60),
            Period::Hour => Some(3600),
            Period::Day => Some(86_400),
            Period::Week => Some(7 * 86_400),
            Period::Days30 => Some(30 * 86_400),
            Period::Month | Period::Total => None,
        }
    }
}

/// Where a budget's windows start: UTC calendar boundaries (the hour, midnight, Monday, the
/// first of the month), or fixed-length windows counted from an anchor (the budget's creation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub period: Period,
    /// `Some(anchor)`: windows of the period's length from this Unix time; `None`: calendar.
    pub anchor: Option<i64>,
}

impl Window {
    /// The length of a window; `None` for calendar months and total budgets.
    pub fn period_seconds(&self) -> Option<i64> {
        self.period.seconds()
    }

    /// The index of the window `now` (Unix seconds) falls in, and when that window ends
    /// (`None` for a total budget).
    pub fn at(&self, now: i64) -> (i64, Option<i64>) {
        match (self.period, self.period.seconds(), self.anchor) {
            (Period::Total, _, _) => (0, None),
            (Period::Month, _, _) => {
                let (y, m, _) = civil_from_days(now.div_euclid(86_400));
                let index = y * 12 + i64::from(m) - 1;
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                (index, Some(days_from_civil(ny, nm, 1) * 86_400))
            }
            (_, Some(len), Some(anchor)) => {
                let index = (now - anchor).div_euclid(len);
                (index, Some(anchor + (index + 1) * len))
            }
            (Period::Week, Some(len), None) => {
                // 1970-01-01 was a Thursday; weeks start on Monday (ISO 8601).
                let monday_epoch = -3 * 86_400;
                let index = (now - monday_epoch).div_euclid(len);
                (index, Some(monday_epoch + (index + 1) * len))
            }
            (_, Some(len), None) => {
                let index = now.div_euclid(len);
                (index, Some((index + 1) * len))
            }
            (_, None, _) => (0, None),
        }
    }
}

/// Not enough budget left for a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exceeded {
    /// Units still free in the current window.
    pub remaining: u64,
    /// When the window ends (Unix seconds); `None` for a total budget.
    pub resets_at: Option<i64>,
}

/// An amount held against a budget until the request settles.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a reservation holds budget until it is settled"]
pub struct Reservation {
    units: u64,
    tag: u64,
}

impl Reservation {
    pub fn units(&self) -> u64 {
        self.units
    }
}

/// One budget: a limit per window and what the current window has spent or reserved.
#[derive(Debug)]
pub struct Ledger {
    limit: u64,
    window: Window,
    state: AtomicU64,
}

fn tag_of(index: i64) -> u64 {
    (index as u64) & 0xffff
}

/// Whether window tag `a` is one or two windows after `b` (tags wrap at 2¹⁶): a caller whose
/// clock reading is a little older than another's must never move the word back to its window
/// and wipe out the newer one. Only a small lead counts, so the word left by a key idle for a
/// long time is never taken for a newer window.
fn later(a: u64, b: u64) -> bool {
    matches!(a.wrapping_sub(b) & 0xffff, 1 | 2)
}

fn pack(tag: u64, amount: u64) -> u64 {
    (tag << AMOUNT_BITS) | amount.min(AMOUNT_MASK)
}

fn unpack(word: u64) -> (u64, u64) {
    (word >> AMOUNT_BITS, word & AMOUNT_MASK)
}

impl Ledger {
    pub fn new(limit_usd: f64, window: Window) -> Self {
        Self::counting(units(limit_usd), window)
    }

    /// A ledger of plain counts (requests, tokens) rather than USD.
    pub fn counting(limit: u64, window: Window) -> Self {
        Ledger {
            limit: limit.min(MAX_UNITS),
            window,
            state: AtomicU64::new(0),
        }
    }

    /// Spent and reserved in the window `now` falls in.
    pub fn used(&self, now: i64) -> u64 {
        let (index, _) = self.window.at(now);
        let (tag, amount) = unpack(self.state.load(Ordering::Acquire));
        let mine = tag_of(index);
        if tag == mine || later(tag, mine) {
            amount
        } else {
            0
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn window(&self) -> &Window {
        &self.window
    }

    /// Starts the window `now` falls in with `units` already spent (restored from the store,
    /// or carried over from counters made for an older setting). Only before the ledger is
    /// shared: it overwrites.
    pub fn preload(&self, now: i64, units: u64) {
        let (index, _) = self.window.at(now);
        self.state
            .store(pack(tag_of(index), units), Ordering::Release);
    }

    /// Holds `units` if they fit in what the current window has left.
    pub fn reserve(&self, now: i64, units: u64) -> Result<Reservation, Exceeded> {
        let (index, resets_at) = self.window.at(now);
        let mine = tag_of(index);
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            let (cur_tag, amount) = unpack(cur);
            // A newer window already started (another caller read the clock later): this
            // request counts against it.
            let (tag, used) = if cur_tag == mine || (amount > 0 && later(cur_tag, mine)) {
                (cur_tag, amount)
            } else {
                (mine, 0)
            };
            let remaining = self.limit.saturating_sub(used);
            if units > remaining {
                return Err(Exceeded {
                    remaining,
                    resets_at,
                });
            }
            match self.state.compare_exchange_weak(
                cur,
                pack(tag, used + units),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(Reservation { units, tag }),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Replaces a reservation with what the request really cost (`actual` units; 0 for a call
    /// that used nothing). A request that outlived its window is charged to the window it ended
    /// in (its reservation went with the old window). The real cost is charged even past the
    /// limit: the work was done.
    pub fn settle(&self, now: i64, r: Reservation, actual: u64) {
        let (index, _) = self.window.at(now);
        let mine = tag_of(index);
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            let (cur_tag, amount) = unpack(cur);
            let next = if cur_tag == mine || (amount > 0 && later(cur_tag, mine)) {
                // The stored window is current (or newer than this caller's clock reading):
                // release the reservation if it was made in it, and charge the real cost.
                let held = if r.tag == cur_tag { r.units } else { 0 };
                pack(cur_tag, amount.saturating_sub(held).saturating_add(actual))
            } else {
                pack(mine, actual)
            };
            match self
                .state
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(actual_word) => cur = actual_word,
            }
        }
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm;
/// a few lines, so no date crate for it).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests;
