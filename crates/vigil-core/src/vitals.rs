//! The domain model shared by every layer: vitals, readings and their validity.
//!
//! A [`Reading`] is what a protocol decoder produces and what the engine
//! consumes. Values are stored in one canonical unit per vital (beats per
//! minute, percent, mmHg); decoders convert on the way in. A value is only a
//! physiological measurement when its [`Validity`] is [`Validity::Valid`]:
//! everything else (sensor off, unavailable, artifact, ...) is a technical
//! condition and must never reach a physiological rule.
//!
//! Every type here is `Copy` and heap-free so that readings and events can flow
//! through the hot path without allocating. Depends only on [`crate::time`].

use core::fmt;
use core::str::FromStr;

use crate::time::Instant;

/// A vital sign parameter that alarms can be configured for.
///
/// NIBP is measured as one reading (see [`Nibp`]) but its three components
/// have limits of their own, so each is a `Vital`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Vital {
    /// Heart rate from the ECG (or the monitor's chosen HR source).
    HeartRate,
    /// Pulse rate from the pulse oximeter's plethysmogram.
    PulseRate,
    /// Functional oxygen saturation.
    SpO2,
    /// Non-invasive blood pressure, systolic.
    NibpSystolic,
    /// Non-invasive blood pressure, diastolic.
    NibpDiastolic,
    /// Non-invasive blood pressure, mean arterial.
    NibpMean,
    /// Respiration rate (breaths per minute), from the capnograph (awRR) or
    /// the impedance respiration. A valid 0 is "no breath detected" (see
    /// the apnoea rule in the engine).
    RespRate,
    /// End-tidal CO2, mmHg (capnography).
    EtCo2,
}

impl Vital {
    /// Every vital, in a fixed order used for table indexing.
    ///
    /// Recordings store a vital by its position here (a baseline command):
    /// new vitals are appended, never inserted.
    pub const ALL: [Vital; 8] = [
        Vital::HeartRate,
        Vital::PulseRate,
        Vital::SpO2,
        Vital::NibpSystolic,
        Vital::NibpDiastolic,
        Vital::NibpMean,
        Vital::RespRate,
        Vital::EtCo2,
    ];
    /// Number of vitals.
    pub const COUNT: usize = 8;

    /// Position in [`Vital::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Stable short name, used in configuration keys, alarm ids and payloads.
    pub const fn key(self) -> &'static str {
        match self {
            Vital::HeartRate => "hr",
            Vital::PulseRate => "pr",
            Vital::SpO2 => "spo2",
            Vital::NibpSystolic => "nibp_sys",
            Vital::NibpDiastolic => "nibp_dia",
            Vital::NibpMean => "nibp_mean",
            Vital::RespRate => "rr",
            Vital::EtCo2 => "etco2",
        }
    }

    /// The canonical unit values of this vital are stored in.
    pub const fn unit(self) -> Unit {
        match self {
            Vital::HeartRate | Vital::PulseRate | Vital::RespRate => Unit::PerMinute,
            Vital::SpO2 => Unit::Percent,
            Vital::NibpSystolic | Vital::NibpDiastolic | Vital::NibpMean | Vital::EtCo2 => {
                Unit::MmHg
            }
        }
    }

    /// Continuous vitals arrive as a stream (about once a second); NIBP
    /// arrives as intermittent measurements, each a decision of its own.
    pub const fn is_continuous(self) -> bool {
        matches!(
            self,
            Vital::HeartRate | Vital::PulseRate | Vital::SpO2 | Vital::RespRate | Vital::EtCo2
        )
    }

    /// Whether this vital is a component of an NIBP measurement.
    pub const fn is_nibp(self) -> bool {
        !self.is_continuous()
    }
}

impl fmt::Display for Vital {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// Error returned when a string names no vital.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown vital `{0}` (expected one of hr, pr, spo2, nibp_sys, nibp_dia, nibp_mean, rr, etco2)"
)]
pub struct UnknownVital(pub String);

impl FromStr for Vital {
    type Err = UnknownVital;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Vital::ALL
            .into_iter()
            .find(|v| v.key() == s)
            .ok_or_else(|| UnknownVital(s.to_owned()))
    }
}

/// Units of the canonical values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unit {
    /// Beats per minute.
    PerMinute,
    /// Percent (SpO2).
    Percent,
    /// Millimetres of mercury.
    MmHg,
}

impl Unit {
    /// UCUM-style unit string used in payloads.
    pub const fn symbol(self) -> &'static str {
        match self {
            Unit::PerMinute => "/min",
            Unit::Percent => "%",
            Unit::MmHg => "mm[Hg]",
        }
    }
}

/// Whether a value may be trusted as a physiological measurement.
///
/// Only [`Validity::Valid`] values reach physiological alarm rules. Every
/// other state is reported by the device (or found by a plausibility check)
/// and leads to a technical alarm instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Validity {
    /// A measurement the device stands behind.
    Valid,
    /// The device marks the value invalid.
    Invalid,
    /// No value: the measurement is not available (module absent, not yet measured).
    Unavailable,
    /// Motion, interference, or a value outside the physiological range.
    Artifact,
    /// The sensor is off the patient or disconnected.
    SensorOff,
    /// Below the device's measurement range.
    UnderRange,
    /// Above the device's measurement range.
    OverRange,
    /// The device flags the value as questionable (low signal quality, searching).
    Questionable,
    /// Measured long before it was sent: the device still shows (and sends)
    /// an old result, e.g. an NIBP taken hours or days ago. The number is
    /// right but is not the patient's current state, so it is shown as an
    /// old measurement and never judged; it raises no technical alarm of its
    /// own (a missing fresh NIBP is the cycle-overdue alarm's business, a
    /// continuous vital with only old values goes stale).
    Old,
}

impl Validity {
    /// Every validity, in a fixed order.
    pub const ALL: [Validity; 9] = [
        Validity::Valid,
        Validity::Invalid,
        Validity::Unavailable,
        Validity::Artifact,
        Validity::SensorOff,
        Validity::UnderRange,
        Validity::OverRange,
        Validity::Questionable,
        Validity::Old,
    ];

    /// True only for [`Validity::Valid`].
    pub const fn is_valid(self) -> bool {
        matches!(self, Validity::Valid)
    }

    /// Stable short name for payloads and the line protocol.
    pub const fn key(self) -> &'static str {
        match self {
            Validity::Valid => "valid",
            Validity::Invalid => "invalid",
            Validity::Unavailable => "unavailable",
            Validity::Artifact => "artifact",
            Validity::SensorOff => "sensor_off",
            Validity::UnderRange => "under_range",
            Validity::OverRange => "over_range",
            Validity::Questionable => "questionable",
            Validity::Old => "old",
        }
    }
}

impl fmt::Display for Validity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// Error returned when a string names no validity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown validity `{0}`")]
pub struct UnknownValidity(pub String);

impl FromStr for Validity {
    type Err = UnknownValidity;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Validity::ALL
            .into_iter()
            .find(|v| v.key() == s)
            .ok_or_else(|| UnknownValidity(s.to_owned()))
    }
}

/// One value with its validity. A non-valid sample's `value` is meaningless
/// (decoders store `f32::NAN` there) and must not be used as physiology.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// The value in the vital's canonical unit.
    pub value: f32,
    /// Whether `value` may be trusted.
    pub validity: Validity,
}

impl Sample {
    /// A valid value. A NaN or infinite value is downgraded to
    /// [`Validity::Invalid`]: a non-number is never a measurement.
    pub fn valid(value: f32) -> Self {
        if value.is_finite() {
            Sample {
                value,
                validity: Validity::Valid,
            }
        } else {
            Sample::missing(Validity::Invalid)
        }
    }

    /// A value with the given validity. A non-finite value is never valid.
    pub fn new(value: f32, validity: Validity) -> Self {
        if validity.is_valid() {
            Sample::valid(value)
        } else {
            Sample { value, validity }
        }
    }

    /// No value, for the given (non-valid) reason.
    pub const fn missing(validity: Validity) -> Self {
        Sample {
            value: f32::NAN,
            validity,
        }
    }

    /// The value when it is valid.
    pub fn get(self) -> Option<f32> {
        self.validity.is_valid().then_some(self.value)
    }

    /// This sample as an old measurement ([`Validity::Old`]) when it is
    /// valid, keeping the number for display. A non-valid sample keeps its
    /// own reason: "sensor off" says more than "old".
    pub fn into_old(self) -> Self {
        if self.validity.is_valid() {
            Sample {
                value: self.value,
                validity: Validity::Old,
            }
        } else {
            self
        }
    }
}

/// How an NIBP measurement was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum NibpMode {
    /// The device did not say.
    #[default]
    Unknown,
    /// Automatic cycle.
    Auto,
    /// STAT (rapid repeated) mode.
    Stat,
    /// Started by hand.
    Manual,
}

impl NibpMode {
    /// Stable short name.
    pub const fn key(self) -> &'static str {
        match self {
            NibpMode::Unknown => "unknown",
            NibpMode::Auto => "auto",
            NibpMode::Stat => "stat",
            NibpMode::Manual => "manual",
        }
    }
}

/// Device time: seconds since the Unix epoch by the DEVICE's clock.
///
/// Informative only (device clocks drift and are set by hand); the engine
/// orders and times everything by arrival [`Instant`]s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceTime(pub i64);

/// One non-invasive blood pressure measurement: three values taken together
/// at one moment, with the device's own measurement time when it sends one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Nibp {
    /// Systolic pressure, mmHg.
    pub systolic: Sample,
    /// Diastolic pressure, mmHg.
    pub diastolic: Sample,
    /// Mean arterial pressure, mmHg.
    pub mean: Sample,
    /// When the device says the measurement was taken. Devices resend the
    /// last measurement with every update; this tells a repeat from a new one.
    pub measured_at: Option<DeviceTime>,
    /// How the measurement was started.
    pub mode: NibpMode,
}

impl Nibp {
    /// The component sample for an NIBP vital; `None` for continuous vitals.
    pub fn component(&self, vital: Vital) -> Option<Sample> {
        match vital {
            Vital::NibpSystolic => Some(self.systolic),
            Vital::NibpDiastolic => Some(self.diastolic),
            Vital::NibpMean => Some(self.mean),
            _ => None,
        }
    }

    /// This measurement with every valid component marked [`Validity::Old`].
    pub fn into_old(self) -> Self {
        Nibp {
            systolic: self.systolic.into_old(),
            diastolic: self.diastolic.into_old(),
            mean: self.mean.into_old(),
            ..self
        }
    }

    /// Whether the device sent this as an old measurement (a component is
    /// [`Validity::Old`]).
    pub fn is_old(&self) -> bool {
        [self.systolic, self.diastolic, self.mean]
            .iter()
            .any(|s| s.validity == Validity::Old)
    }
}

/// What a reading measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Measurement {
    /// Heart rate, per minute.
    HeartRate(Sample),
    /// Pulse rate from the oximeter, per minute.
    PulseRate(Sample),
    /// SpO2, percent.
    SpO2(Sample),
    /// One NIBP measurement.
    Nibp(Nibp),
    /// Respiration rate, per minute.
    RespRate(Sample),
    /// End-tidal CO2, mmHg.
    EtCo2(Sample),
}

impl Measurement {
    /// For continuous measurements, the vital and its sample.
    pub fn continuous(&self) -> Option<(Vital, Sample)> {
        match *self {
            Measurement::HeartRate(s) => Some((Vital::HeartRate, s)),
            Measurement::PulseRate(s) => Some((Vital::PulseRate, s)),
            Measurement::SpO2(s) => Some((Vital::SpO2, s)),
            Measurement::RespRate(s) => Some((Vital::RespRate, s)),
            Measurement::EtCo2(s) => Some((Vital::EtCo2, s)),
            Measurement::Nibp(_) => None,
        }
    }

    /// The measurement of a continuous vital with this sample; `None` for
    /// an NIBP component.
    pub fn of_continuous(vital: Vital, sample: Sample) -> Option<Measurement> {
        match vital {
            Vital::HeartRate => Some(Measurement::HeartRate(sample)),
            Vital::PulseRate => Some(Measurement::PulseRate(sample)),
            Vital::SpO2 => Some(Measurement::SpO2(sample)),
            Vital::RespRate => Some(Measurement::RespRate(sample)),
            Vital::EtCo2 => Some(Measurement::EtCo2(sample)),
            Vital::NibpSystolic | Vital::NibpDiastolic | Vital::NibpMean => None,
        }
    }
}

/// Which configured source a reading came from: an index into the
/// configuration's source list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId(pub u16);

impl SourceId {
    /// As a table index.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// One reading from one device.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reading {
    /// The device it came from.
    pub source: SourceId,
    /// When its last byte arrived (monotonic, stamped by the IO edge).
    pub arrival: Instant,
    /// The device's own timestamp, when the protocol carries one.
    pub device_time: Option<DeviceTime>,
    /// What was measured.
    pub measurement: Measurement,
}

/// A short text stored inline (no heap): names and initials of who
/// acknowledged, session ids, dose routes and notes.
///
/// Longer input is truncated at a character boundary.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShortText<const N: usize> {
    len: u8,
    bytes: [u8; N],
}

impl<const N: usize> ShortText<N> {
    /// Capacity in bytes.
    pub const CAPACITY: usize = N;

    /// The empty text.
    pub const fn empty() -> Self {
        ShortText {
            len: 0,
            bytes: [0; N],
        }
    }

    /// Copies `s`, truncated to at most `N` bytes (and at most 255) on a
    /// character boundary.
    pub fn new(s: &str) -> Self {
        let max = N.min(u8::MAX as usize);
        let mut end = s.len().min(max);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let mut bytes = [0; N];
        bytes[..end].copy_from_slice(&s.as_bytes()[..end]);
        ShortText {
            len: end as u8,
            bytes,
        }
    }

    /// Whether `s` fits without truncation.
    pub fn fits(s: &str) -> bool {
        s.len() <= N.min(u8::MAX as usize)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ever filled from a &str cut at a char boundary.
        core::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<const N: usize> Default for ShortText<N> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<const N: usize> fmt::Debug for ShortText<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> fmt::Display for ShortText<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_values_are_never_valid() {
        assert_eq!(Sample::valid(f32::NAN).validity, Validity::Invalid);
        assert_eq!(Sample::valid(f32::INFINITY).validity, Validity::Invalid);
        assert_eq!(
            Sample::new(f32::NEG_INFINITY, Validity::Valid).validity,
            Validity::Invalid
        );
        assert_eq!(Sample::valid(97.0).get(), Some(97.0));
        assert_eq!(Sample::new(97.0, Validity::SensorOff).get(), None);
    }

    #[test]
    fn an_old_sample_keeps_its_number_but_is_never_valid() {
        let old = Sample::valid(120.0).into_old();
        assert_eq!((old.value, old.validity), (120.0, Validity::Old));
        assert_eq!(old.get(), None);
        // A reason the device gave stays: it says more than the age.
        let off = Sample::missing(Validity::SensorOff).into_old();
        assert_eq!(off.validity, Validity::SensorOff);
        let n = Nibp {
            systolic: Sample::valid(120.0),
            diastolic: Sample::valid(80.0),
            mean: Sample::missing(Validity::Unavailable),
            measured_at: Some(DeviceTime(1)),
            mode: NibpMode::Auto,
        };
        assert!(!n.is_old());
        let o = n.into_old();
        assert!(o.is_old());
        assert_eq!(
            [o.systolic.validity, o.diastolic.validity, o.mean.validity],
            [Validity::Old, Validity::Old, Validity::Unavailable]
        );
        assert_eq!((o.measured_at, o.mode), (n.measured_at, n.mode));
        assert_eq!("old".parse::<Validity>(), Ok(Validity::Old));
    }

    #[test]
    fn vital_keys_round_trip() {
        for v in Vital::ALL {
            assert_eq!(v.key().parse::<Vital>().unwrap(), v);
            assert_eq!(Vital::ALL[v.index()], v);
        }
        assert!("bp".parse::<Vital>().is_err());
        for v in Validity::ALL {
            assert_eq!(v.key().parse::<Validity>().unwrap(), v);
        }
    }

    #[test]
    fn short_text_truncates_on_char_boundary() {
        let t = ShortText::<4>::new("abcdef");
        assert_eq!(t.as_str(), "abcd");
        // 'é' is two bytes: "aé" is 3 bytes, "aéé" would be 5.
        let t = ShortText::<4>::new("aéé");
        assert_eq!(t.as_str(), "aé");
        assert!(ShortText::<4>::fits("abcd"));
        assert!(!ShortText::<4>::fits("abcde"));
        assert!(ShortText::<8>::empty().is_empty());
    }
}
