//! What a chart takes from a recording: the readings that go into an EHR
//! export (FHIR, HL7), chosen the way clinics chart, with their session,
//! device and wall-clock time.
//!
//! The recording is replayed (same decoders and engine as live). Only
//! readings inside a session (from its start to its end, phases baseline,
//! dosing and recovery) are charted: the pseudonymous session id is the
//! only link to the patient, and readings outside a session have none.
//! A value the device sent as an old measurement ([`Validity::Old`]) is
//! left out: its true measurement time is not known, and charting it at the
//! time it was resent would place it wrongly.
//!
//! Two samplings:
//! - [`Sampling::Interval`] (the default, every [`DEFAULT_INTERVAL`]): for
//!   each continuous vital, the first valid reading of each interval (counted
//!   from the recording's start), or the first reading when none of the
//!   interval is valid, so a sensor off for a whole interval is charted as
//!   absent; plus every NIBP measurement.
//! - [`Sampling::EveryReading`]: every reading.
//!
//! [`quality`] maps a sample's validity to what an export says about it.
//! [`Sampler`] does the sampling event by event, for a replay ([`chart`])
//! and for the live HL7 sink alike.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use crate::engine::{EventKind, SessionEvent, SessionPhase};
use crate::replay::{self, Session};
use crate::vitals::{Measurement, Nibp, Sample, Validity, Vital};

use super::export::{offset, started};

/// The default charting interval (clinics chart vitals every 5-15 minutes).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);

/// Errors gathering a chart.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// The recording has no wall-clock start.
    #[error(
        "the recording has no `started` time, so readings have no date; \
         re-import it with `vigil record import --start`"
    )]
    NoStart,
    /// No session was started in the recording.
    #[error(
        "the recording holds no session (no readings between a session start and end), \
         so nothing links its readings to a patient; use `--format csv` for the raw table"
    )]
    NoSession,
    /// A zero interval.
    #[error("the interval must be longer than zero")]
    ZeroInterval,
}

/// Which readings are charted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sampling {
    /// The first valid reading of each vital per interval, and every NIBP.
    Interval(Duration),
    /// Every reading.
    EveryReading,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling::Interval(DEFAULT_INTERVAL)
    }
}

/// A charted value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    /// HR, PR or SpO2.
    Continuous(Vital, Sample),
    /// One NIBP measurement.
    Nibp(Nibp),
}

/// One charted reading.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// Offset from the recording's start.
    pub time: Duration,
    /// Wall-clock time.
    pub wall: SystemTime,
    /// Index of the source in [`Chart::sources`].
    pub source: usize,
    /// The pseudonymous session id.
    pub session: String,
    /// Readings of the same group belong in one message: the interval's
    /// number, or (every reading) the reading's time in milliseconds.
    pub group: u64,
    /// The value.
    pub value: Value,
}

/// A source as a chart names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// The configured source name.
    pub name: String,
    /// The protocol key (`ge-s5`, `philips-intellivue`, ...).
    pub protocol: &'static str,
}

/// What the exports need from a recording.
#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    /// Site from the recording's metadata (or its configuration).
    pub site: String,
    /// Bed.
    pub bed: String,
    /// Every configured source, by index.
    pub sources: Vec<Device>,
    /// The charted readings, in time order.
    pub points: Vec<Point>,
}

/// What an export says about a sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Quality {
    /// A valid value.
    Valid(f32),
    /// A value the device flags as questionable.
    Questionable(f32),
    /// Below the device's measuring range (the value, when it sent one).
    BelowRange(Option<f32>),
    /// Above the device's measuring range.
    AboveRange(Option<f32>),
    /// No usable value, for the validity's reason.
    Absent(Validity),
}

impl Quality {
    /// The number an export carries, if any.
    pub fn value(self) -> Option<f32> {
        match self {
            Quality::Valid(v) | Quality::Questionable(v) => Some(v),
            Quality::BelowRange(v) | Quality::AboveRange(v) => v,
            Quality::Absent(_) => None,
        }
    }
}

/// Maps a sample to what an export says: a number only when the device
/// stands behind it (valid, questionable, off-scale with a number); never
/// for invalid, artifact, sensor-off or unavailable values.
pub fn quality(s: Sample) -> Quality {
    let finite = s.value.is_finite().then_some(s.value);
    match (s.validity, finite) {
        (Validity::Valid, Some(v)) => Quality::Valid(v),
        (Validity::Questionable, Some(v)) => Quality::Questionable(v),
        (Validity::UnderRange, v) => Quality::BelowRange(v),
        (Validity::OverRange, v) => Quality::AboveRange(v),
        (validity, _) => Quality::Absent(validity),
    }
}

/// Words for a validity, for free-text notes.
pub fn describe(v: Validity) -> &'static str {
    match v {
        Validity::Valid => "valid",
        Validity::Invalid => "the device marks the value invalid",
        Validity::Unavailable => "no value: the measurement is not available",
        Validity::Artifact => {
            "artifact: motion, interference or a value outside the plausible range"
        }
        Validity::SensorOff => "the sensor is off the patient or disconnected",
        Validity::UnderRange => "below the device's measuring range",
        Validity::OverRange => "above the device's measuring range",
        Validity::Questionable => "the device flags the value as questionable",
        Validity::Old => "an old measurement resent by the device",
    }
}

fn is_valid(v: &Value) -> bool {
    match v {
        Value::Continuous(_, s) => s.validity.is_valid(),
        Value::Nibp(n) => n.systolic.validity.is_valid(),
    }
}

/// The sources of a configuration as a chart names them.
pub fn devices(cfg: &crate::config::Config) -> Vec<Device> {
    cfg.sources
        .iter()
        .map(|s| Device {
            name: s.name.clone(),
            protocol: s.protocol.key(),
        })
        .collect()
}

/// Charts engine events as they come (sans-IO): [`chart`] feeds it a
/// replay, the live HL7 sink the running engine's events.
#[derive(Debug)]
pub struct Sampler {
    sampling: Sampling,
    /// The session in progress, if any.
    current: Option<String>,
    /// Charted points, in order of their first reading (so by group).
    points: Vec<Point>,
    /// (vital, group, session) -> index of the point chosen for it.
    chosen: HashMap<(usize, u64, String), usize>,
}

impl Sampler {
    /// A sampler; a zero interval is refused.
    pub fn new(sampling: Sampling) -> Result<Sampler, ChartError> {
        if sampling == Sampling::Interval(Duration::ZERO) {
            return Err(ChartError::ZeroInterval);
        }
        Ok(Sampler {
            sampling,
            current: None,
            points: Vec::new(),
            chosen: HashMap::new(),
        })
    }

    /// Whether a session is in progress (readings are charted).
    pub fn in_session(&self) -> bool {
        self.current.is_some()
    }

    /// The group of a time (intervals count from time zero).
    pub fn group(&self, time: Duration) -> u64 {
        match self.sampling {
            Sampling::Interval(i) => (time.as_nanos() / i.as_nanos()) as u64,
            Sampling::EveryReading => time.as_millis() as u64,
        }
    }

    /// Takes one event at `time` (from the start the intervals count from)
    /// and wall-clock `wall`.
    pub fn push(&mut self, time: Duration, wall: SystemTime, kind: &EventKind) {
        match kind {
            EventKind::Session(SessionEvent::Phase { phase, session }) => {
                self.current = match phase {
                    SessionPhase::Baseline | SessionPhase::Dosing | SessionPhase::Recovery => {
                        Some(session.as_str().to_owned())
                    }
                    SessionPhase::Idle | SessionPhase::Ended => None,
                };
            }
            EventKind::Reading(r) => {
                let Some(id) = self.current.clone() else {
                    return;
                };
                let value = match r.measurement {
                    Measurement::Nibp(n) if n.is_old() => return,
                    Measurement::Nibp(n) => Value::Nibp(n),
                    m => match m.continuous() {
                        Some((_, s)) if s.validity == Validity::Old => return,
                        Some((v, s)) => Value::Continuous(v, s),
                        None => return,
                    },
                };
                let group = self.group(time);
                let point = Point {
                    time,
                    wall,
                    source: r.source.index(),
                    session: id.clone(),
                    group,
                    value,
                };
                match (self.sampling, value) {
                    (Sampling::Interval(_), Value::Continuous(v, _)) => {
                        match self.chosen.get(&(v.index(), group, id.clone())) {
                            None => {
                                self.chosen
                                    .insert((v.index(), group, id), self.points.len());
                                self.points.push(point);
                            }
                            Some(&i) => {
                                if !is_valid(&self.points[i].value) && is_valid(&point.value) {
                                    self.points[i] = point;
                                }
                            }
                        }
                    }
                    _ => self.points.push(point),
                }
            }
            _ => {}
        }
    }

    /// Takes the points of the groups complete at `time` (those before its
    /// group), in time order.
    pub fn take_complete(&mut self, time: Duration) -> Vec<Point> {
        let group = self.group(time);
        let n = self.points.iter().take_while(|p| p.group < group).count();
        self.chosen.retain(|k, _| k.1 >= group);
        for i in self.chosen.values_mut() {
            *i -= n;
        }
        let mut done: Vec<Point> = self.points.drain(..n).collect();
        done.sort_by_key(|p| p.time);
        done
    }

    /// Takes every point, in time order.
    pub fn take_all(&mut self) -> Vec<Point> {
        self.chosen.clear();
        let mut done = std::mem::take(&mut self.points);
        done.sort_by_key(|p| p.time);
        done
    }
}

/// Replays a session and gathers its chart.
pub fn chart(session: &Session, sampling: Sampling) -> Result<Chart, ChartError> {
    let mut sampler = Sampler::new(sampling)?;
    let start = started(session).ok_or(ChartError::NoStart)?;
    let cfg = &session.config;
    replay::run(
        session,
        None,
        |ev| {
            let time = offset(session, ev.at);
            sampler.push(time, start + time, &ev.kind);
        },
        |_| {},
    );
    let points = sampler.take_all();
    if points.is_empty() {
        return Err(ChartError::NoSession);
    }
    Ok(Chart {
        site: session.meta("site").unwrap_or(&cfg.site).to_owned(),
        bed: session.meta("bed").unwrap_or(&cfg.bed).to_owned(),
        sources: devices(cfg),
        points,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::SessionId;
    use crate::time::Instant;
    use crate::vitals::{Reading, SourceId};

    fn reading(m: Measurement) -> EventKind {
        EventKind::Reading(Reading {
            source: SourceId(0),
            arrival: Instant::from_nanos(0),
            device_time: None,
            measurement: m,
        })
    }

    #[test]
    fn the_sampler_hands_out_each_interval_once_it_is_over() {
        let mut s = Sampler::new(Sampling::Interval(Duration::from_secs(60))).unwrap();
        let wall = |t: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(t);
        let at =
            |s: &mut Sampler, t: u64, k: EventKind| s.push(Duration::from_secs(t), wall(t), &k);
        at(&mut s, 1, reading(Measurement::SpO2(Sample::valid(99.0))));
        assert!(!s.in_session());
        assert!(s.take_all().is_empty(), "no session, nothing charted");
        let phase = |phase| {
            EventKind::Session(SessionEvent::Phase {
                phase,
                session: SessionId::new("KT-1"),
            })
        };
        at(&mut s, 2, phase(SessionPhase::Baseline));
        at(
            &mut s,
            3,
            reading(Measurement::SpO2(Sample::missing(Validity::SensorOff))),
        );
        at(&mut s, 4, reading(Measurement::SpO2(Sample::valid(97.0))));
        at(&mut s, 5, reading(Measurement::SpO2(Sample::valid(96.0))));
        assert!(s.take_complete(Duration::from_secs(59)).is_empty());
        at(&mut s, 61, reading(Measurement::SpO2(Sample::valid(95.0))));
        let first = s.take_complete(Duration::from_secs(61));
        assert_eq!(first.len(), 1);
        assert_eq!((first[0].time, first[0].group), (Duration::from_secs(4), 0));
        assert_eq!(first[0].session, "KT-1");
        // The next interval still collects after the first was taken.
        at(&mut s, 62, reading(Measurement::SpO2(Sample::valid(94.0))));
        at(&mut s, 70, phase(SessionPhase::Ended));
        at(&mut s, 71, reading(Measurement::SpO2(Sample::valid(93.0))));
        let rest = s.take_all();
        assert_eq!(rest.len(), 1);
        assert_eq!(
            rest[0].value,
            Value::Continuous(Vital::SpO2, Sample::valid(95.0))
        );
    }

    #[test]
    fn quality_keeps_numbers_only_where_the_device_stands_behind_them() {
        assert_eq!(quality(Sample::valid(72.0)), Quality::Valid(72.0));
        assert_eq!(
            quality(Sample::new(91.0, Validity::Questionable)),
            Quality::Questionable(91.0)
        );
        assert_eq!(
            quality(Sample::new(30.0, Validity::UnderRange)),
            Quality::BelowRange(Some(30.0))
        );
        assert_eq!(
            quality(Sample::missing(Validity::OverRange)),
            Quality::AboveRange(None)
        );
        for v in [
            Validity::Invalid,
            Validity::Artifact,
            Validity::SensorOff,
            Validity::Unavailable,
        ] {
            assert_eq!(quality(Sample::new(250.0, v)), Quality::Absent(v));
            assert_eq!(quality(Sample::new(250.0, v)).value(), None);
        }
        assert_eq!(
            quality(Sample::missing(Validity::Questionable)),
            Quality::Absent(Validity::Questionable)
        );
    }
}
