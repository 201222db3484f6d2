//! The engine's steady state allocates nothing per reading, even while
//! alarms start, escalate and end.

use vigil::engine::{Engine, EventKind};
use vigil::time::Instant;
use vigil::vitals::{Measurement, Reading, Sample, Validity};

use crate::util::alloc::count_allocations;
use crate::util::readings::{hr, nibp, pr, spo2};
use crate::util::session;

/// One second of input: HR, PR and SpO2 wandering across their limits, an
/// invalid SpO2 now and then, and an NIBP measurement every 5 minutes.
fn second(e: &mut Engine, s: u64, sink: &mut u64) {
    let t = s * 1000;
    let phase = (s % 240) as f32;
    let wave = if phase < 120.0 { phase } else { 240.0 - phase };
    let readings: [Reading; 3] = [
        hr(t, 60.0 + wave * 0.8),
        pr(t + 1, 61.0 + wave * 0.8),
        if s.is_multiple_of(97) {
            crate::util::readings::at(
                t + 2,
                Measurement::SpO2(Sample::missing(Validity::SensorOff)),
            )
        } else {
            spo2(t + 2, 99.0 - wave / 8.0)
        },
    ];
    for r in readings {
        e.handle_reading(r.arrival, r);
        drain(e, sink);
    }
    if s.is_multiple_of(300) {
        let r = nibp(t + 3, 120.0 + wave, 80.0 + wave / 2.0, s as i64);
        e.handle_reading(r.arrival, r);
    }
    if let Some(due) = e.poll_timeout() {
        e.handle_timeout(due.min(Instant::from_millis(t + 999)));
    }
    drain(e, sink);
}

/// Counts alarm events (without allocating).
fn drain(e: &mut Engine, alarms: &mut u64) {
    while let Some(ev) = e.poll_event() {
        if matches!(ev.kind, EventKind::Alarm(_)) {
            *alarms += 1;
        }
    }
}

#[test]
fn steady_state_handles_readings_without_allocating() {
    let mut e = Engine::new(session::one_monitor());
    let mut sink = 0u64;
    // Warm up: a session with a baseline and a dose, then an hour of data.
    session::start(&mut e, "S-1");
    for s in 0..600 {
        second(&mut e, s, &mut sink);
    }
    session::dose(&mut e, Instant::from_secs(600));
    for s in 600..3600 {
        second(&mut e, s, &mut sink);
    }
    let events_before = e.stats().events;
    let alarms_before = sink;

    let ((), allocations) = count_allocations(|| {
        for s in 3600..7200 {
            second(&mut e, s, &mut sink);
        }
    });
    let events = e.stats().events - events_before;
    assert!(
        events > 10_000,
        "the measured hour must exercise the engine ({events} events)"
    );
    // The measured hour raised and ended alarms, not just readings.
    let alarm_events = sink - alarms_before;
    assert!(alarm_events >= 30, "{alarm_events} alarm events");
    assert_eq!(allocations, 0, "allocations in one hour of steady state");
}

#[test]
fn the_counter_does_count() {
    let (v, n) = count_allocations(|| vec![1u8; 16]);
    assert_eq!(v.len(), 16);
    assert!(n >= 1);
}
