//! What the protocol modules' unit tests share: picking outputs apart,
//! proptest strategies for validities, samples and snapshots, and the two
//! properties every decoder has (bytes cut anywhere decode as the whole;
//! arbitrary bytes never give a valid value that is not a finite number).
//!
//! Test-only; depends on the protocol types, [`crate::vitals`] and proptest.

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::Union;

use super::{DeviceNote, DropReason, Output, Protocol, Snapshot};
use crate::time::Instant;
use crate::vitals::{DeviceTime, Measurement, Nibp, Reading, Sample, Validity};

/// Bytes from space-separated hex pairs ("7e 31 00").
pub(crate) fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect()
}

/// Every output the decoder has queued.
pub(crate) fn drain(p: &mut (impl Protocol + ?Sized)) -> Vec<Output> {
    std::iter::from_fn(|| p.poll_output()).collect()
}

/// Hands `bytes` to the decoder at `now` and drains it.
pub(crate) fn feed(p: &mut (impl Protocol + ?Sized), now: Instant, bytes: &[u8]) -> Vec<Output> {
    p.handle_bytes(now, bytes);
    drain(p)
}

/// The readings among `outs`.
pub(crate) fn readings(outs: &[Output]) -> Vec<Reading> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Reading(r) => Some(*r),
            _ => None,
        })
        .collect()
}

/// What the readings among `outs` measured.
pub(crate) fn measurements(outs: &[Output]) -> Vec<Measurement> {
    readings(outs).into_iter().map(|r| r.measurement).collect()
}

/// The device notes among `outs`.
pub(crate) fn notes(outs: &[Output]) -> Vec<DeviceNote> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Note(n) => Some(*n),
            _ => None,
        })
        .collect()
}

/// The drops among `outs`.
pub(crate) fn drops(outs: &[Output]) -> Vec<DropReason> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Dropped(r) => Some(*r),
            _ => None,
        })
        .collect()
}

// -- strategies ----------------------------------------------------------

/// [`Validity::Valid`] six times as often as each of `others`: the
/// validities a protocol carries through an encode and decode unchanged.
pub(crate) fn mostly_valid(others: &'static [Validity]) -> impl Strategy<Value = Validity> {
    let weighted = std::iter::once((6, Just(Validity::Valid)))
        .chain(others.iter().map(|v| (1, Just(*v))))
        .collect();
    Union::new_weighted(weighted)
}

/// A sample whose valid value is `k / divisor`, k in `0..=max`; a sample
/// of any other validity (from [`mostly_valid`]`(others)`) has no value.
pub(crate) fn stepped_sample(
    max: u16,
    divisor: f32,
    others: &'static [Validity],
) -> impl Strategy<Value = Sample> {
    (0..=max, mostly_valid(others)).prop_map(move |(k, v)| {
        if v.is_valid() {
            Sample::valid(f32::from(k) / divisor)
        } else {
            Sample::missing(v)
        }
    })
}

/// A snapshot of these values; `breath` (RR, etCO2) `None` is a monitor
/// without a capnograph.
pub(crate) fn snapshot_of(
    [heart_rate, pulse_rate, spo2]: [Sample; 3],
    nibp: Option<Nibp>,
    device_time: DeviceTime,
    breath: Option<(Sample, Sample)>,
) -> Snapshot {
    let none = Sample::missing(Validity::Unavailable);
    let (resp_rate, etco2) = breath.unwrap_or((none, none));
    Snapshot {
        heart_rate,
        pulse_rate,
        spo2,
        nibp,
        resp_rate,
        etco2,
        device_time,
    }
}

/// An oximeter's snapshot at `device_time`: SpO2 and pulse rate, each a
/// value under the one condition `cond` or not measured (`None`).
pub(crate) fn oximeter_snapshot(
    device_time: DeviceTime,
    spo2: Option<f32>,
    pulse_rate: Option<f32>,
    cond: Validity,
) -> Snapshot {
    let s = |v: Option<f32>| match v {
        Some(x) => Sample::new(x, cond),
        None => Sample::missing(Validity::Unavailable),
    };
    let mut snap = Snapshot::empty(device_time);
    snap.spo2 = s(spo2);
    snap.pulse_rate = s(pulse_rate);
    snap
}

// -- checks --------------------------------------------------------------

/// Same validity, and the same value (to 1e-3) when valid.
pub(crate) fn same(a: Sample, b: Sample) -> bool {
    a.validity == b.validity && (!a.validity.is_valid() || (a.value - b.value).abs() < 1e-3)
}

/// The condition an oximeter line or packet says for all its values: the
/// first validity among `samples` that is not "not measured", else valid.
pub(crate) fn shared_condition(samples: &[Sample]) -> Validity {
    samples
        .iter()
        .map(|s| s.validity)
        .find(|v| *v != Validity::Unavailable)
        .unwrap_or(Validity::Valid)
}

/// `got` is `want` decoded by an oximeter protocol whose values share the
/// condition `cond`: a value to within 0.5 with its validity, or, for no
/// value, no value with the condition (unavailable when the condition is
/// valid).
pub(crate) fn check_oximeter_sample(
    got: Sample,
    want: Sample,
    cond: Validity,
) -> Result<(), TestCaseError> {
    if want.value.is_finite() {
        prop_assert_eq!(got.validity, want.validity);
        prop_assert!(
            (got.value - want.value).abs() <= 0.5,
            "{:?} vs {:?}",
            got,
            want
        );
    } else {
        prop_assert!(got.value.is_nan());
        // Dashes carry the line's condition when there is one.
        let expect = if cond.is_valid() {
            Validity::Unavailable
        } else {
            cond
        };
        prop_assert_eq!(got.validity, expect);
    }
    Ok(())
}

/// Feeds `bytes` at `now` to one decoder from `open` whole and to another
/// cut at `cuts`, draining after each piece: both must give the same
/// outputs and the same stats. Returns the outputs.
pub(crate) fn cut_anywhere<P: Protocol>(
    mut open: impl FnMut() -> P,
    now: Instant,
    bytes: &[u8],
    cuts: &[Index],
) -> Result<Vec<Output>, TestCaseError> {
    let mut whole = open();
    let expect = feed(&mut whole, now, bytes);
    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
    at.sort_unstable();
    let mut split = open();
    let mut got = Vec::new();
    let mut start = 0;
    for cut in at.into_iter().chain([bytes.len()]) {
        got.extend(feed(&mut split, now, &bytes[start..cut]));
        start = cut;
    }
    prop_assert_eq!(format!("{got:?}"), format!("{expect:?}"));
    prop_assert_eq!(split.stats(), whole.stats());
    Ok(expect)
}

/// Which readings [`valid_values_are_finite`] looks into.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Checked {
    /// Continuous vitals; NIBP readings are passed over.
    Continuous,
    /// Continuous vitals; an NIBP reading fails the test (the protocol has
    /// none).
    ContinuousOnly,
    /// Continuous vitals and each NIBP component.
    WithNibp,
}

/// No valid sample among the readings of `outs` (those `checked` names)
/// has a value that is not a finite number.
pub(crate) fn valid_values_are_finite(
    outs: &[Output],
    checked: Checked,
) -> Result<(), TestCaseError> {
    for r in readings(outs) {
        let samples = match (r.measurement, checked) {
            (Measurement::Nibp(n), Checked::WithNibp) => vec![n.systolic, n.diastolic, n.mean],
            (Measurement::Nibp(_), Checked::Continuous) => Vec::new(),
            (Measurement::Nibp(_), Checked::ContinuousOnly) => {
                return Err(TestCaseError::fail(format!("an NIBP reading: {r:?}")));
            }
            (m, _) => m.continuous().map(|(_, s)| s).into_iter().collect(),
        };
        for s in samples {
            prop_assert!(!s.validity.is_valid() || s.value.is_finite(), "{:?}", r);
        }
    }
    Ok(())
}
