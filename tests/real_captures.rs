//! Real GE S/5 captures (see tests/fixtures/real/ge-s5/README.md) decoded
//! by vigil and compared with the values an independent decoder read from
//! the same bytes.

use vigil::protocol::ge::GeS5;
use vigil::protocol::{Output, Protocol};
use vigil::time::Instant;
use vigil::vitals::{Measurement, SourceId};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/real/ge-s5/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every output of the GE host decoder for the whole capture.
fn decode(raw: &[u8]) -> (Vec<Output>, vigil::protocol::DecodeStats) {
    let mut ge = GeS5::new(SourceId(0), 10).unwrap();
    let mut out = Vec::new();
    // Arbitrary chunking, as a serial port delivers it.
    for (i, chunk) in raw.chunks(97).enumerate() {
        ge.handle_bytes(Instant::from_millis(i as u64), chunk);
        out.extend(std::iter::from_fn(|| ge.poll_output()));
    }
    (out, ge.stats())
}

/// One row of an `*.expected.csv`: `record,hr,spo2,pr,nibp_sys,nibp_dia,nibp_mean`;
/// an empty cell is a value the independent decoder could not read.
fn expected(name: &str) -> Vec<[Option<f64>; 6]> {
    let text = String::from_utf8(fixture(name)).unwrap();
    text.lines()
        .skip(1)
        .map(|line| {
            let cells: Vec<Option<f64>> = line.split(',').skip(1).map(|c| c.parse().ok()).collect();
            cells.try_into().expect("six values per row")
        })
        .collect()
}

/// HR, SpO2 and pulse rate of each physiological record, in file order
/// (`None` where vigil does not take the value as valid).
fn continuous(out: &[Output]) -> Vec<[Option<f64>; 3]> {
    let mut rows = Vec::new();
    for o in out {
        let Output::Reading(r) = o else { continue };
        let valid = |s: vigil::vitals::Sample| s.validity.is_valid().then_some(f64::from(s.value));
        match r.measurement {
            // HR opens each record's readings.
            Measurement::HeartRate(s) => rows.push([valid(s), None, None]),
            Measurement::SpO2(s) => rows.last_mut().expect("HR first")[1] = valid(s),
            Measurement::PulseRate(s) => rows.last_mut().expect("HR first")[2] = valid(s),
            Measurement::Nibp(_) => {}
        }
    }
    rows
}

fn check_capture(raw: &str, csv: &str) {
    let (out, stats) = decode(&fixture(raw));
    let want = expected(csv);
    assert_eq!(stats.dropped_total(), 0, "{raw}: {stats:?}");
    let got = continuous(&out);
    assert_eq!(
        got.len(),
        want.len(),
        "{raw}: one set of readings per physiological record"
    );
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        for (k, name) in ["hr", "spo2", "pr"].into_iter().enumerate() {
            let (g, w) = (g[k], w[k]);
            match (g, w) {
                (Some(g), Some(w)) => assert!(
                    (g - w).abs() < 0.006,
                    "{raw} record {i} {name}: vigil {g}, independent decoder {w}"
                ),
                // vigil never takes a value the other decoder could not read.
                (Some(g), None) => panic!("{raw} record {i} {name}: vigil {g}, independent none"),
                (None, w) => panic!("{raw} record {i} {name}: vigil invalid, independent {w:?}"),
            }
        }
    }
}

/// NIBP: the independent decoder shows the numbers on screen in every
/// record; vigil emits a reading only for a completed measurement it can
/// tell from a repeat (the cuff idle, the auxiliary record's measurement
/// time), so it gives fewer readings, each equal to what the screen shows.
fn check_nibp(raw: &str, csv: &str) {
    let (out, _) = decode(&fixture(raw));
    let shown: Vec<[f64; 3]> = expected(csv)
        .iter()
        .filter_map(|r| Some([r[3]?, r[4]?, r[5]?]))
        .collect();
    let mut emitted = 0;
    for o in &out {
        let Output::Reading(r) = o else { continue };
        let Measurement::Nibp(n) = r.measurement else {
            continue;
        };
        if !n.systolic.validity.is_valid() {
            continue;
        }
        emitted += 1;
        let got = [n.systolic.value, n.diastolic.value, n.mean.value].map(f64::from);
        assert!(
            shown
                .iter()
                .any(|w| w.iter().zip(&got).all(|(a, b)| (a - b).abs() < 0.01)),
            "{raw}: NIBP {got:?} is not one the monitor showed"
        );
    }
    assert!(emitted > 0, "{raw}: the NIBP measurement was not read");
    assert!(
        emitted < shown.len(),
        "{raw}: repeats taken as new measurements"
    );
}

#[test]
fn ge_nibp_readings_are_the_measurements_the_monitor_showed() {
    check_nibp("raw.raw", "raw.expected.csv");
    check_nibp("db02.raw", "db02.expected.csv");
}

#[test]
fn ge_short_excerpt_decodes_to_the_independent_values() {
    check_capture("raw.raw", "raw.expected.csv");
}

#[test]
fn ge_db02_decodes_to_the_independent_values() {
    check_capture("db02.raw", "db02.expected.csv");
}

#[test]
fn ge_waveform_records_of_real_captures_are_ignored_not_errors() {
    // Each capture interleaves waveform records (r_maintype 1, pleth and
    // entropy subrecords) with the physiological ones: 10 in the excerpt,
    // 106 in db02 (see the README).
    for (raw, csv, waveforms) in [
        ("raw.raw", "raw.expected.csv", 10),
        ("db02.raw", "db02.expected.csv", 106),
    ] {
        let (_, stats) = decode(&fixture(raw));
        assert_eq!(stats.ignored, waveforms, "{raw}: {stats:?}");
        assert_eq!(stats.dropped_total(), 0, "{raw}: {stats:?}");
        assert_eq!(
            stats.frames_ok as usize,
            expected(csv).len(),
            "{raw}: only the physiological records are data"
        );
    }
}
