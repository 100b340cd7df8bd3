use super::*;
use std::sync::Arc;

/// 2026-12-07 15:30:00 UTC, a Monday.
const NOW: i64 = 1_796_657_400;

fn calendar(period: Period) -> Window {
    Window {
        period,
        anchor: None,
    }
}

#[test]
fn dates_convert_both_ways() {
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(NOW / 86_400), (2026, 12, 7));
    assert_eq!(days_from_civil(2026, 12, 7), NOW / 86_400);
    assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    assert_eq!(civil_from_days(-1), (1969, 12, 31));
    for d in (-800_000..800_000).step_by(997) {
        let (y, m, day) = civil_from_days(d);
        assert_eq!(days_from_civil(y, m, day), d);
    }
}

#[test]
fn calendar_windows_end_on_utc_boundaries() {
    let (_, end) = calendar(Period::Hour).at(NOW);
    assert_eq!(end, Some(NOW + 1800));
    let (_, end) = calendar(Period::Day).at(NOW);
    assert_eq!(end, Some(days_from_civil(2026, 12, 8) * 86_400));
    // The week ends next Monday 00:00.
    let (_, end) = calendar(Period::Week).at(NOW);
    assert_eq!(end, Some(days_from_civil(2026, 12, 14) * 86_400));
    // The month ends on the first of January, across the year.
    let (dec, end) = calendar(Period::Month).at(NOW);
    assert_eq!(end, Some(days_from_civil(2027, 1, 1) * 86_400));
    let (jan, _) = calendar(Period::Month).at(days_from_civil(2027, 1, 1) * 86_400);
    assert_eq!(jan, dec + 1);
    // February of a leap year lasts 29 days.
    let feb = days_from_civil(2028, 2, 10) * 86_400;
    assert_eq!(
        calendar(Period::Month).at(feb).1,
        Some(days_from_civil(2028, 3, 1) * 86_400)
    );
    assert_eq!(calendar(Period::Total).at(NOW), (0, None));
}

#[test]
fn anchored_windows_count_from_the_anchor() {
    let w = Window {
        period: Period::Day,
        anchor: Some(NOW - 100),
    };
    assert_eq!(w.at(NOW), (0, Some(NOW - 100 + 86_400)));
    assert_eq!(w.at(NOW - 100 + 86_400).0, 1);
}

#[test]
fn reserve_refuses_what_does_not_fit_and_settle_keeps_the_real_cost() {
    let ledger = Ledger::new(1.0, calendar(Period::Day));
    assert_eq!(ledger.limit(), 100_000_000);
    let a = ledger.reserve(NOW, units(0.6)).unwrap();
    let err = ledger.reserve(NOW, units(0.5)).unwrap_err();
    assert_eq!(err.remaining, units(0.4));
    assert_eq!(err.resets_at, Some(days_from_civil(2026, 12, 8) * 86_400));
    // The first request cost less than its worst case: the rest is free again.
    ledger.settle(NOW, a, units(0.1));
    assert_eq!(ledger.used(NOW), units(0.1));
    let b = ledger.reserve(NOW, units(0.5)).unwrap();
    assert_eq!(ledger.used(NOW), units(0.6));
    // A call that failed before using anything settles at 0.
    ledger.settle(NOW, b, 0);
    assert_eq!(ledger.used(NOW), units(0.1));
}

#[test]
fn a_new_window_starts_empty_and_late_settlements_go_to_it() {
    let ledger = Ledger::new(1.0, calendar(Period::Hour));
    let r = ledger.reserve(NOW, units(0.9)).unwrap();
    let next_hour = NOW + 3600;
    assert_eq!(ledger.used(next_hour), 0);
    // Settled after the hour turned: charged to the new hour, the old reservation is gone.
    ledger.settle(next_hour, r, units(0.2));
    assert_eq!(ledger.used(next_hour), units(0.2));
    assert!(ledger.reserve(next_hour, units(0.8)).is_ok());
}

#[test]
fn tiny_costs_still_count_and_amounts_round_up() {
    assert_eq!(units(0.0), 0);
    assert_eq!(units(-1.0), 0);
    assert_eq!(units(f64::NAN), 0);
    // gpt-4o-mini, 10 prompt tokens: 1.5e-6 USD.
    assert_eq!(units(1.5e-6), 150);
    assert_eq!(units(1e-9), 1);
    assert_eq!(units(1e12), MAX_UNITS);
}

/// The concurrency proof at the ledger level: 200 threads race to reserve; the total reserved
/// never exceeds the limit, and exactly as many succeed as fit.
#[test]
fn concurrent_reservations_never_exceed_the_limit() {
    let ledger = Arc::new(Ledger::new(10.0, calendar(Period::Total)));
    let each = units(1.0);
    let barrier = Arc::new(std::sync::Barrier::new(200));
    let handles: Vec<_> = (0..200)
        .map(|_| {
            let ledger = Arc::clone(&ledger);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                ledger.reserve(NOW, each).ok()
            })
        })
        .collect();
    let granted: Vec<Reservation> = handles
        .into_iter()
        .filter_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(granted.len(), 10);
    assert_eq!(ledger.used(NOW), units(10.0));
    // Settling each at a real cost below the reservation frees exactly the difference.
    for r in granted {
        ledger.settle(NOW, r, units(0.25));
    }
    assert_eq!(ledger.used(NOW), units(2.5));
}

#[test]
fn a_late_clock_reading_never_wipes_out_a_newer_window() {
    let ledger = Ledger::new(1.0, calendar(Period::Hour));
    let end_of_hour = NOW + 1799; // 15:59:59
    let next_hour = NOW + 1801; // 16:00:01
    let r1 = ledger.reserve(end_of_hour, units(0.1)).unwrap();
    let _r2 = ledger.reserve(next_hour, units(0.9)).unwrap();
    // Settled with the older reading: hour 16 keeps its 0.9 and gains the real cost.
    ledger.settle(end_of_hour, r1, units(0.05));
    assert_eq!(ledger.used(next_hour), units(0.95));
    // A reservation with the older reading counts against hour 16 too.
    assert!(ledger.reserve(end_of_hour, units(0.1)).is_err());
    assert!(ledger.reserve(end_of_hour, units(0.05)).is_ok());
    assert_eq!(ledger.used(next_hour), units(1.0));
}

#[test]
fn window_tags_compare_as_serial_numbers() {
    assert!(later(1, 0));
    assert!(later(2, 0));
    assert!(!later(0, 1));
    assert!(later(0, 0xffff), "after the wrap");
    assert!(!later(5, 5));
    // Far ahead is an old word from long ago, not a newer window.
    assert!(!later(40_000, 0));
}

#[test]
fn a_key_idle_for_weeks_starts_a_fresh_minute() {
    let ledger = Ledger::counting(5, calendar(Period::Minute));
    for _ in 0..5 {
        let _ = ledger.reserve(NOW, 1).unwrap();
    }
    assert!(ledger.reserve(NOW, 1).is_err());
    // 30 days later (43,200 minutes: more than half the tag space away).
    let later_on = NOW + 30 * 86_400;
    assert_eq!(ledger.used(later_on), 0);
    assert!(ledger.reserve(later_on, 5).is_ok());
}
