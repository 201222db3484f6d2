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
use vigil::engine::{Command, Engine, EngineConfig, Priority};
use vigil::time::Instant;
use vigil::vitals::{
    DeviceTime, Measurement, Nibp, NibpMode, Reading, Sample, ShortText, SourceId, Validity, Vital,
};

fn main() {
    divan::main();
}

const N: usize = 100_000;

/// A deterministic stream of readings that crosses limits regularly.
fn stream() -> Vec<Reading> {
    let mut out = Vec::with_capacity(N);
    let mut x: u32 = 12345;
    for i in 0..N {
        // 3 continuous readings per second, an NIBP every 5 minutes.
        let t = 600_000 + (i as u64) * 333;
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let noise = ((x >> 16) % 7) as f32 - 3.0;
        let slow = ((i / 300) % 40) as f32;
        let measurement = if i % 900 == 899 {
            Measurement::Nibp(Nibp {
                systolic: Sample::valid(150.0 + slow * 1.5),
                diastolic: Sample::valid(90.0 + slow),
                mean: Sample::valid(110.0 + slow),
                measured_at: Some(DeviceTime(i as i64)),
                mode: NibpMode::Auto,
            })
        } else {
            match i % 3 {
                0 => Measurement::HeartRate(Sample::valid(90.0 + slow + noise)),
                1 => Measurement::PulseRate(Sample::valid(91.0 + slow + noise)),
                _ if i % 500 == 2 => Measurement::SpO2(Sample::missing(Validity::Artifact)),
                _ => Measurement::SpO2(Sample::valid(95.0 - slow / 5.0 + noise / 2.0)),
            }
        };
        out.push(Reading {
            source: SourceId(0),
            arrival: Instant::from_millis(t),
            device_time: None,
            measurement,
        });
    }
    out
}

/// As [`stream`], with RR and etCO2: five continuous vitals, one reading
/// each per second, RR at 0 (apnoea) for 40 s every 10 minutes.
fn stream_breathing() -> Vec<Reading> {
    let mut out = Vec::with_capacity(N);
    let mut x: u32 = 12345;
    for i in 0..N {
        let t = 600_000 + (i as u64) * 200;
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let noise = ((x >> 16) % 7) as f32 - 3.0;
        let slow = ((i / 500) % 40) as f32;
        let second = i / 5;
        let measurement = if i % 1500 == 1499 {
            Measurement::Nibp(Nibp {
                systolic: Sample::valid(150.0 + slow * 1.5),
                diastolic: Sample::valid(90.0 + slow),
                mean: Sample::valid(110.0 + slow),
                measured_at: Some(DeviceTime(i as i64)),
                mode: NibpMode::Auto,
            })
        } else {
            match i % 5 {
                0 => Measurement::HeartRate(Sample::valid(90.0 + slow + noise)),
                1 => Measurement::PulseRate(Sample::valid(91.0 + slow + noise)),
                2 if i % 500 == 2 => Measurement::SpO2(Sample::missing(Validity::Artifact)),
                2 => Measurement::SpO2(Sample::valid(95.0 - slow / 5.0 + noise / 2.0)),
                3 if second % 600 < 40 => Measurement::RespRate(Sample::valid(0.0)),
                3 => Measurement::RespRate(Sample::valid(12.0 + slow / 2.0 + noise)),
                _ => Measurement::EtCo2(Sample::valid(36.0 + slow / 2.0 + noise)),
            }
        };
        out.push(Reading {
            source: SourceId(0),
            arrival: Instant::from_millis(t),
            device_time: None,
            measurement,
        });
    }
    out
}

fn dosed_engine() -> Engine {
    let mut cfg = EngineConfig {
        source_names: vec!["monitor".into()],
        ..EngineConfig::default()
    };
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
    e.handle_command(
        Instant::ZERO,
        Command::StartSession {
            session: ShortText::new("bench"),
        },
    )
    .unwrap();
    for s in 0..600u64 {
        for m in [
            Measurement::HeartRate(Sample::valid(75.0)),
            Measurement::PulseRate(Sample::valid(75.0)),
            Measurement::SpO2(Sample::valid(97.0)),
            Measurement::RespRate(Sample::valid(14.0)),
            Measurement::EtCo2(Sample::valid(38.0)),
        ] {
            let r = Reading {
                source: SourceId(0),
                arrival: Instant::from_secs(s),
                device_time: None,
                measurement: m,
            };
            e.handle_reading(r.arrival, r);
        }
    }
    e.handle_command(
        Instant::from_secs(600),
        Command::Dose {
            route: ShortText::new("im"),
            amount: None,
            note: ShortText::empty(),
        },
    )
    .unwrap();
    while e.poll_event().is_some() {}
    e
}

/// One reading in, every event out (the driver loop's work per reading).
#[divan::bench(sample_count = 30)]
fn readings(bencher: Bencher) {
    let input = stream();
    bencher
        .counter(ItemsCount::new(input.len()))
        .with_inputs(dosed_engine)
        .bench_local_values(|mut e| {
            let mut events = 0u64;
            for r in &input {
                e.handle_reading(r.arrival, *r);
                while let Some(ev) = e.poll_event() {
                    events = events.wrapping_add(ev.seq);
                }
            }
            divan::black_box(events);
            e
        });
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
    bencher
        .counter(ItemsCount::new(input.len()))
        .with_inputs(dosed_engine)
        .bench_local_values(|mut e| {
            let mut events = 0u64;
            for r in &input {
                e.handle_reading(r.arrival, *r);
                while let Some(ev) = e.poll_event() {
                    events = events.wrapping_add(ev.seq);
                }
            }
            divan::black_box(events);
            e
        });
}
