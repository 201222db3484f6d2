//! Engine throughput: readings per second with every rule kind enabled on
//! three continuous vitals (HR, PR, SpO2: limits, critical tier, delays,
//! hysteresis, baseline trend, rate windows, stale and validity checks) plus
//! NIBP with confirmation, during a dosed session so baseline trends are armed.
//!
//! `readings_with_breathing` adds the respiration rate (limits, a baseline
//! trend, apnoea spells) and etCO2 (limits, a rate window) to the same mix.
//!
//! Run: `cargo bench --bench engine`. Divan reports the time per reading
//! (the "items" throughput is readings per second).

use divan::counter::ItemsCount;
use divan::Bencher;
use std::time::Duration;

use vigil::engine::rules::{BaselineRule, RateRule};
use vigil::engine::{Engine, Priority};
use vigil::time::Instant;
use vigil::vitals::{DeviceTime, Measurement, Nibp, NibpMode, Reading, Sample, Validity, Vital};

#[path = "../tests/util/readings.rs"]
#[allow(dead_code)]
mod readings;
#[path = "../tests/util/session.rs"]
mod session;

fn main() {
    divan::main();
}

const N: usize = 100_000;

/// `N` deterministic readings `step_ms` apart from 600 s on: an NIBP every
/// `nibp_every` readings, drifting up every `drift_every`; the others from
/// `continuous` (the reading's index, the drift and a pseudo-random noise).
fn generate(
    step_ms: u64,
    drift_every: usize,
    nibp_every: usize,
    continuous: impl Fn(usize, f32, f32) -> Measurement,
) -> Vec<Reading> {
    let mut out = Vec::with_capacity(N);
    let mut x: u32 = 12345;
    for i in 0..N {
        let t = 600_000 + (i as u64) * step_ms;
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let noise = ((x >> 16) % 7) as f32 - 3.0;
        let slow = ((i / drift_every) % 40) as f32;
        let measurement = if i % nibp_every == nibp_every - 1 {
            Measurement::Nibp(Nibp {
                systolic: Sample::valid(150.0 + slow * 1.5),
                diastolic: Sample::valid(90.0 + slow),
                mean: Sample::valid(110.0 + slow),
                measured_at: Some(DeviceTime(i as i64)),
                mode: NibpMode::Auto,
            })
        } else {
            continuous(i, slow, noise)
        };
        out.push(readings::at(t, measurement));
    }
    out
}

/// A deterministic stream of readings that crosses limits regularly: 3
/// continuous readings per second, an NIBP every 5 minutes.
fn stream() -> Vec<Reading> {
    generate(333, 300, 900, |i, slow, noise| match i % 3 {
        0 => Measurement::HeartRate(Sample::valid(90.0 + slow + noise)),
        1 => Measurement::PulseRate(Sample::valid(91.0 + slow + noise)),
        _ if i % 500 == 2 => Measurement::SpO2(Sample::missing(Validity::Artifact)),
        _ => Measurement::SpO2(Sample::valid(95.0 - slow / 5.0 + noise / 2.0)),
    })
}

/// As [`stream`], with RR and etCO2: five continuous vitals, one reading
/// each per second, RR at 0 (apnoea) for 40 s every 10 minutes.
fn stream_breathing() -> Vec<Reading> {
    generate(200, 500, 1500, |i, slow, noise| {
        let second = i / 5;
        match i % 5 {
            0 => Measurement::HeartRate(Sample::valid(90.0 + slow + noise)),
            1 => Measurement::PulseRate(Sample::valid(91.0 + slow + noise)),
            2 if i % 500 == 2 => Measurement::SpO2(Sample::missing(Validity::Artifact)),
            2 => Measurement::SpO2(Sample::valid(95.0 - slow / 5.0 + noise / 2.0)),
            3 if second % 600 < 40 => Measurement::RespRate(Sample::valid(0.0)),
            3 => Measurement::RespRate(Sample::valid(12.0 + slow / 2.0 + noise)),
            _ => Measurement::EtCo2(Sample::valid(36.0 + slow / 2.0 + noise)),
        }
    })
}

fn dosed_engine() -> Engine {
    let mut cfg = session::one_monitor();
    // Every rule kind on the breathing vitals too (the defaults have no
    // RR trend and no etCO2 rate rule).
    cfg.vitals[Vital::RespRate.index()].baseline = BaselineRule {
        fall_percent: Some(40.0),
        priority: Some(Priority::Low),
        ..BaselineRule::default()
    };
    cfg.vitals[Vital::EtCo2.index()].rate = Some(RateRule {
        window: Duration::from_secs(60),
        rise: Some(10.0),
        fall: Some(10.0),
        priority: Priority::Medium,
    });
    let mut e = Engine::new(cfg);
    session::start(&mut e, "bench");
    for s in 0..600u64 {
        for m in [
            Measurement::HeartRate(Sample::valid(75.0)),
            Measurement::PulseRate(Sample::valid(75.0)),
            Measurement::SpO2(Sample::valid(97.0)),
            Measurement::RespRate(Sample::valid(14.0)),
            Measurement::EtCo2(Sample::valid(38.0)),
        ] {
            let r = readings::at(s * 1000, m);
            e.handle_reading(r.arrival, r);
        }
    }
    session::dose(&mut e, Instant::from_secs(600));
    while e.poll_event().is_some() {}
    e
}

/// One reading in, every event out (the driver loop's work per reading),
/// for every reading of `input`, on a dosed engine each sample.
fn feed_each(bencher: Bencher, input: &[Reading]) {
    bencher
        .counter(ItemsCount::new(input.len()))
        .with_inputs(dosed_engine)
        .bench_local_values(|mut e| {
            let mut events = 0u64;
            for r in input {
                e.handle_reading(r.arrival, *r);
                while let Some(ev) = e.poll_event() {
                    events = events.wrapping_add(ev.seq);
                }
            }
            divan::black_box(events);
            e
        });
}

/// One reading in, every event out (the driver loop's work per reading).
#[divan::bench(sample_count = 30)]
fn readings(bencher: Bencher) {
    let input = stream();
    feed_each(bencher, &input);
}

/// The same with RR and etCO2 in the mix (every rule kind on five vitals).
#[divan::bench(sample_count = 30)]
fn readings_with_breathing(bencher: Bencher) {
    let input = stream_breathing();
    {
        // The stream must exercise apnoea: check it once.
        let mut e = dosed_engine();
        let mut apnoea = false;
        for r in &input {
            e.handle_reading(r.arrival, *r);
            while let Some(ev) = e.poll_event() {
                if let vigil::engine::EventKind::Alarm(a) = ev.kind {
                    apnoea |= a.id.key(&[]) == "rr.apnoea";
                }
            }
        }
        assert!(apnoea, "the breathing stream raises rr.apnoea");
    }
    feed_each(bencher, &input);
}
