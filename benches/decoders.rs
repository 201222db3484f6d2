//! Decoder throughput per protocol, in bytes per second: a monitor sends a
//! few hundred bytes a second, so the point is that decoding costs next to
//! nothing. Each stream is built by the protocol's own encoder from varying
//! snapshots (real protocol bytes), then decoded in 512-byte chunks (the
//! serial read size), draining every output.
//!
//! Run: `cargo bench --bench decoders`.

use divan::counter::BytesCount;
use divan::Bencher;
use vigil::protocol::{ge, line, masimo, nonin, philips, Output, Protocol, Snapshot};
use vigil::time::Instant;
use vigil::vitals::{DeviceTime, Nibp, NibpMode, Sample, SourceId, Validity};

fn main() {
    divan::main();
}

const SNAPSHOTS: usize = 2_000;

fn snapshot(i: usize) -> Snapshot {
    let w = (i % 60) as f32;
    Snapshot {
        heart_rate: Sample::valid(60.0 + w),
        pulse_rate: Sample::valid(61.0 + w),
        spo2: Sample::valid(90.0 + w / 6.0),
        nibp: Some(Nibp {
            systolic: Sample::valid(110.0 + w),
            diastolic: Sample::valid(70.0 + w / 2.0),
            mean: Sample::valid(85.0 + w / 2.0),
            measured_at: Some(DeviceTime(1_795_000_000 + (i as i64 / 300) * 300)),
            mode: NibpMode::Auto,
        }),
        resp_rate: Sample::missing(Validity::Unavailable),
        etco2: Sample::missing(Validity::Unavailable),
        device_time: DeviceTime(1_795_000_000 + i as i64),
    }
}

fn stream(encode: impl Fn(usize, &Snapshot, &mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..SNAPSHOTS {
        encode(i, &snapshot(i), &mut out);
    }
    out
}

/// Decodes the whole stream; returns the number of readings.
fn decode(p: &mut dyn Protocol, bytes: &[u8]) -> usize {
    let mut readings = 0;
    for (i, chunk) in bytes.chunks(512).enumerate() {
        p.handle_bytes(Instant::from_millis(i as u64), chunk);
        while let Some(o) = p.poll_output() {
            if matches!(o, Output::Reading(_)) {
                readings += 1;
            }
        }
    }
    readings
}

fn bench_protocol(bencher: Bencher, bytes: Vec<u8>, make: impl Fn() -> Box<dyn Protocol> + Sync) {
    // The stream must really decode, or the figure means nothing.
    let readings = decode(make().as_mut(), &bytes);
    assert!(readings >= SNAPSHOTS, "only {readings} readings decoded");
    bencher
        .counter(BytesCount::new(bytes.len()))
        .with_inputs(&make)
        .bench_local_values(|mut p| divan::black_box(decode(p.as_mut(), &bytes)));
}

#[divan::bench(sample_count = 30)]
fn ge_s5(bencher: Bencher) {
    let bytes = stream(|_, s, out| ge::encode_displayed_values(s, out));
    bench_protocol(bencher, bytes, || {
        Box::new(ge::GeS5::new(SourceId(0), 5).expect("valid interval"))
    });
}

#[divan::bench(sample_count = 30)]
fn philips_intellivue(bencher: Bencher) {
    let bytes = stream(|i, s, out| philips::encode_poll_result(i as u16, i as u16, s, None, out));
    bench_protocol(bencher, bytes, || {
        Box::new(philips::IntelliVueMonitorStream::new(SourceId(0)))
    });
}

#[divan::bench(sample_count = 30)]
fn masimo(bencher: Bencher) {
    let bytes = stream(|_, s, out| masimo::encode_line(s, out));
    bench_protocol(bencher, bytes, || {
        Box::new(masimo::Masimo::new(SourceId(0)))
    });
}

#[divan::bench(sample_count = 30)]
fn nonin_df2(bencher: Bencher) {
    let bytes = stream(|_, s, out| nonin::encode(nonin::NoninFormat::Df2, s, out));
    bench_protocol(bencher, bytes, || {
        Box::new(nonin::Nonin::new(SourceId(0), nonin::NoninFormat::Df2))
    });
}

#[divan::bench(sample_count = 30)]
fn vigil_line(bencher: Bencher) {
    let bytes = stream(|_, s, out| line::encode_snapshot(s, out));
    bench_protocol(bencher, bytes, || {
        Box::new(line::VigilLine::new(SourceId(0)))
    });
}
