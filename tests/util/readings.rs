//! Building readings for tests.

use vigil::time::Instant;
use vigil::vitals::{DeviceTime, Measurement, Nibp, NibpMode, Reading, Sample, SourceId};

pub fn at(ms: u64, measurement: Measurement) -> Reading {
    Reading {
        source: SourceId(0),
        arrival: Instant::from_millis(ms),
        device_time: None,
        measurement,
    }
}

pub fn hr(ms: u64, v: f32) -> Reading {
    at(ms, Measurement::HeartRate(Sample::valid(v)))
}

pub fn pr(ms: u64, v: f32) -> Reading {
    at(ms, Measurement::PulseRate(Sample::valid(v)))
}

pub fn spo2(ms: u64, v: f32) -> Reading {
    at(ms, Measurement::SpO2(Sample::valid(v)))
}

pub fn nibp(ms: u64, sys: f32, dia: f32, measured: i64) -> Reading {
    at(
        ms,
        Measurement::Nibp(Nibp {
            systolic: Sample::valid(sys),
            diastolic: Sample::valid(dia),
            mean: Sample::valid((sys + 2.0 * dia) / 3.0),
            measured_at: Some(DeviceTime(measured)),
            mode: NibpMode::Auto,
        }),
    )
}
