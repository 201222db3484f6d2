//! Masimo ASCII serial output (Rad-8, Radical-5/7, Rad-87): decoder and a
//! Rad-8 style encoder.
//!
//! The oximeter streams one line per second, e.g.
//!
//! ```text
//! 02/22/16 22:47:45 SN=0000056661 SPO2=098% BPM=097 PI=03.60% ... ALARM=0000 EXC=000800
//! ```
//!
//! Lines are parsed by key, never by position: the keys present differ by
//! model. `SPO2` and `BPM` become a [`Measurement::SpO2`] and a
//! [`Measurement::PulseRate`] reading per line; `EXC` (exception bits) decides
//! their validity; `ALARM` bits become [`DeviceNote`]s when they change. The
//! leading `MM/DD/YY HH:MM:SS` is the device's wall clock, read as if it were
//! UTC (the device does not say its time zone).
//!
//! Mapping of the EXC bits to [`Validity`] (the most severe condition wins):
//!
//! | EXC bits | condition | validity |
//! |---|---|---|
//! | 0x1, 0x20, 0x1000 | no sensor, sensor off, no cable | `SensorOff` |
//! | 0x2, 0x80, 0x100, 0x2000, 0x4000, 0x8000, 0x10000, 0x40000, 0x80000, 0x100000 | defective / unrecognised / incompatible / expired sensor or cable, emitter temperature, sensor current limit | `Invalid` |
//! | 0x20000 | sensor calibrating | `Unavailable` |
//! | 0x10, 0x40 | interference, ambient light | `Artifact` |
//! | 0x4, 0x8, 0x400 | low perfusion, pulse search, low signal IQ | `Questionable` |
//! | 0x800 | "SET" mode: normal operation | (no effect) |
//! | any other bit | not documented | `Questionable` |
//!
//! Interference and ambient light are external signals corrupting the
//! measurement, hence `Artifact`; low perfusion, searching and low signal IQ
//! mean the device itself doubts a possibly right value, hence `Questionable`.
//! An undocumented bit is never silently trusted.
//!
//! Framing: lines end in CR LF (a bare LF or CR works too); leading NUL bytes
//! are skipped; a NUL inside a line (the device rebooting mid-line) drops the
//! partial line as [`DropReason::Truncated`], and so does a partial line that
//! sees no byte for [`PARTIAL_LINE_TIMEOUT`]. Lines longer than [`MAX_LINE`]
//! bytes are dropped as [`DropReason::Oversized`]; a line that does not parse
//! is [`DropReason::Malformed`].
//!
//! Pure: no IO, no clock. Depends on [`crate::protocol`] (and its line
//! assembler), [`crate::vitals`] and [`crate::time`] only.

use core::time::Duration;
use std::fmt::Write as _;

use crate::protocol::line::{severity, ByteWriter, Feed, LineAssembler};
use crate::protocol::registry::{BoxedProtocol, Monitor, TextStream};
use crate::protocol::AgeLimits;
use crate::protocol::{DecodeStats, Decoded, DeviceNote, DropReason, Output, Protocol, Snapshot};
use crate::time::Instant;
use crate::vitals::{DeviceTime, Measurement, Reading, Sample, ShortText, SourceId, Validity};

/// Longest accepted line in bytes (real lines are about 130 bytes).
pub const MAX_LINE: usize = 512;

/// A partial line that sees no new byte for this long is dropped as
/// truncated (a whole line takes about 150 ms at 9600 baud).
pub const PARTIAL_LINE_TIMEOUT: Duration = Duration::from_secs(2);

const OUTPUT_CAPACITY: usize = 16;

/// ALARM bit: the device's alarm is active.
pub const ALARM_ACTIVE: u32 = 0x0010;
/// ALARM bit: the device's alarm audio is silenced.
pub const ALARM_SILENCED: u32 = 0x0020;
/// ALARM bit: low battery.
pub const ALARM_LOW_BATTERY: u32 = 0x0040;

/// EXC bit: "SET" mode, normal operation (not an exception).
pub const EXC_SET_MODE: u32 = 0x800;
const EXC_SENSOR_OFF: u32 = 0x1 | 0x20 | 0x1000;
const EXC_FAULT: u32 =
    0x2 | 0x80 | 0x100 | 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x40000 | 0x80000 | 0x10_0000;
const EXC_CALIBRATING: u32 = 0x20000;
const EXC_ARTIFACT: u32 = 0x10 | 0x40;
const EXC_QUESTIONABLE: u32 = 0x4 | 0x8 | 0x400;
const EXC_KNOWN: u32 =
    EXC_SENSOR_OFF | EXC_FAULT | EXC_CALIBRATING | EXC_ARTIFACT | EXC_QUESTIONABLE | EXC_SET_MODE;

/// A value from the input, kept inline for error messages.
pub type Word = ShortText<24>;

/// Why a Masimo line was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MasimoError {
    /// The line holds bytes that are not UTF-8 text.
    #[error("the line is not text: is the monitor's serial output set to ASCII mode at 9600 8N1?")]
    NotText,
    /// A key the decoder uses appears twice (two lines run together).
    #[error("key {0} appears twice in one line")]
    DuplicateKey(&'static str),
    /// A value of a key the decoder uses does not parse.
    #[error("bad value `{value}` for key {key}")]
    BadValue {
        /// The key.
        key: &'static str,
        /// The value as received (truncated).
        value: Word,
    },
    /// Neither SPO2 nor BPM is on the line.
    #[error(
        "the line has neither SPO2= nor BPM=: is the monitor's serial output set to ASCII mode?"
    )]
    NoVitals,
}

/// A displayed integer value, or dashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// A number.
    Value(u16),
    /// Dashes: no value.
    Missing,
}

/// The fields of one Masimo line that vigil uses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MasimoLine {
    /// The device clock, when the line starts with a well-formed timestamp.
    pub device_time: Option<DeviceTime>,
    /// `SPO2=`, percent.
    pub spo2: Option<Field>,
    /// `BPM=`, pulse rate per minute.
    pub bpm: Option<Field>,
    /// `PI=`, perfusion index in percent (informative; not a vigil vital).
    pub pi: Option<f32>,
    /// `ALARM=` bits.
    pub alarm: Option<u32>,
    /// `EXC=` exception bits.
    pub exc: Option<u32>,
}

/// Parses one line (without its line ending). Unknown keys and other words
/// are ignored; a malformed timestamp just leaves `device_time` empty.
pub fn parse_line(line: &[u8]) -> Result<MasimoLine, MasimoError> {
    let text = core::str::from_utf8(line).map_err(|_| MasimoError::NotText)?;
    let mut parsed = MasimoLine {
        device_time: None,
        spo2: None,
        bpm: None,
        pi: None,
        alarm: None,
        exc: None,
    };
    let mut date: Option<&str> = None;
    let mut time: Option<&str> = None;
    let mut ambiguous_time = false;
    let mut seen_pi = false;
    for word in text.split_ascii_whitespace() {
        let Some((key, value)) = word.split_once('=') else {
            if looks_like(word, b'/') {
                ambiguous_time |= date.replace(word).is_some();
            } else if looks_like(word, b':') {
                ambiguous_time |= time.replace(word).is_some();
            }
            continue;
        };
        match key {
            "SPO2" => once(&mut parsed.spo2, parse_field("SPO2", value)?, "SPO2")?,
            "BPM" => once(&mut parsed.bpm, parse_field("BPM", value)?, "BPM")?,
            "ALARM" => once(&mut parsed.alarm, parse_hex("ALARM", value)?, "ALARM")?,
            "EXC" => once(&mut parsed.exc, parse_hex("EXC", value)?, "EXC")?,
            "PI" => {
                if core::mem::replace(&mut seen_pi, true) {
                    return Err(MasimoError::DuplicateKey("PI"));
                }
                parsed.pi = parse_pi(value);
            }
            _ => {}
        }
    }
    if parsed.spo2.is_none() && parsed.bpm.is_none() {
        return Err(MasimoError::NoVitals);
    }
    if !ambiguous_time {
        if let (Some(d), Some(t)) = (date, time) {
            parsed.device_time = parse_timestamp(d, t);
        }
    }
    Ok(parsed)
}

fn once<T>(slot: &mut Option<T>, value: T, key: &'static str) -> Result<(), MasimoError> {
    if slot.replace(value).is_some() {
        Err(MasimoError::DuplicateKey(key))
    } else {
        Ok(())
    }
}

/// `NN?NN?NN` with the given separator.
fn looks_like(word: &str, sep: u8) -> bool {
    let b = word.as_bytes();
    b.len() == 8
        && b.iter().enumerate().all(|(i, &c)| {
            if i == 2 || i == 5 {
                c == sep
            } else {
                c.is_ascii_digit()
            }
        })
}

/// `098%`, `097`, `---%`, `---`.
fn parse_field(key: &'static str, value: &str) -> Result<Field, MasimoError> {
    let v = value.strip_suffix('%').unwrap_or(value);
    if !v.is_empty() && v.bytes().all(|b| b == b'-') {
        return Ok(Field::Missing);
    }
    if (1..=4).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = v.parse::<u16>() {
            return Ok(Field::Value(n));
        }
    }
    Err(MasimoError::BadValue {
        key,
        value: Word::new(value),
    })
}

/// Hex words of any width up to 32 bits: `20`, `0000`, `000800`.
fn parse_hex(key: &'static str, value: &str) -> Result<u32, MasimoError> {
    let digits = value.trim_start_matches('0');
    if !value.is_empty() && digits.len() <= 8 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        if digits.is_empty() {
            return Ok(0);
        }
        if let Ok(n) = u32::from_str_radix(digits, 16) {
            return Ok(n);
        }
    }
    Err(MasimoError::BadValue {
        key,
        value: Word::new(value),
    })
}

/// `03.60%`; dashes or anything odd give `None` (PI is informative only).
fn parse_pi(value: &str) -> Option<f32> {
    let v = value.strip_suffix('%').unwrap_or(value);
    let (i, f) = v.split_once('.').unwrap_or((v, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if digits(i) && digits(f) {
        v.parse::<f32>().ok().filter(|x| x.is_finite())
    } else {
        None
    }
}

/// `MM/DD/YY` + `HH:MM:SS` (shapes already checked), years 2000..=2099.
fn parse_timestamp(date: &str, time: &str) -> Option<DeviceTime> {
    let two = |s: &str, at: usize| -> Option<u32> { s.get(at..at + 2)?.parse().ok() };
    let (month, day, yy) = (two(date, 0)?, two(date, 3)?, two(date, 6)?);
    let (hour, minute, second) = (two(time, 0)?, two(time, 3)?, two(time, 6)?);
    let year = 2000 + i64::from(yy);
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let days = crate::time::days_from_civil(year, month, day);
    Some(DeviceTime(
        days * 86_400 + i64::from(hour * 3600 + minute * 60 + second),
    ))
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// The validity that the exception bits of one line give its values (see the
/// module documentation for the table).
pub fn exception_validity(exc: u32) -> Validity {
    if exc & EXC_SENSOR_OFF != 0 {
        Validity::SensorOff
    } else if exc & EXC_FAULT != 0 {
        Validity::Invalid
    } else if exc & EXC_CALIBRATING != 0 {
        Validity::Unavailable
    } else if exc & EXC_ARTIFACT != 0 {
        Validity::Artifact
    } else if exc & (EXC_QUESTIONABLE | !EXC_KNOWN) != 0 {
        Validity::Questionable
    } else {
        Validity::Valid
    }
}

fn to_sample(field: Field, validity: Validity, max: u16) -> Sample {
    match field {
        Field::Value(v) if v > max => Sample::new(f32::from(v), Validity::Invalid),
        Field::Value(v) => Sample::new(f32::from(v), validity),
        Field::Missing if validity.is_valid() => Sample::missing(Validity::Unavailable),
        Field::Missing => Sample::missing(validity),
    }
}

// ---------------------------------------------------------------------------
// Encoder

/// Appends one Rad-8 style line (CR LF terminated) showing `snapshot`'s SpO2
/// and pulse rate, with its device time as the timestamp (years 2000..=2099
/// round-trip; others are written modulo 100).
///
/// Values are rounded to whole numbers. One EXC word covers both values: the
/// most severe non-valid validity of the two is written as sensor off (0x20),
/// defective sensor (0x2, also for under/over range), interference (0x10) or
/// pulse search (0x8). A value without a number, or merely unavailable, is
/// written as dashes.
pub fn encode_line(snapshot: &Snapshot, out: &mut Vec<u8>) {
    let secs = snapshot.device_time.0;
    let (year, month, day) = crate::time::civil_from_days(secs.div_euclid(86_400));
    let tod = secs.rem_euclid(86_400);
    let mut w = ByteWriter(out);
    let _ = write!(
        w,
        "{month:02}/{day:02}/{:02} {:02}:{:02}:{:02} SN=0000000000 SPO2=",
        year.rem_euclid(100),
        tod / 3600,
        tod / 60 % 60,
        tod % 60
    );
    write_field(&mut w, snapshot.spo2);
    let _ = write!(w, "% BPM=");
    write_field(&mut w, snapshot.pulse_rate);
    let worst = [snapshot.spo2, snapshot.pulse_rate]
        .into_iter()
        .map(|s| s.validity)
        .filter(|v| *v != Validity::Unavailable)
        .max_by_key(|v| severity(*v))
        .unwrap_or(Validity::Valid);
    let exc = EXC_SET_MODE
        | match worst {
            // The output has no "old" state: the number is sent as it is.
            Validity::Valid | Validity::Unavailable | Validity::Old => 0,
            Validity::SensorOff => 0x20,
            Validity::Invalid | Validity::UnderRange | Validity::OverRange => 0x2,
            Validity::Artifact => 0x10,
            Validity::Questionable => 0x8,
        };
    let _ = write!(
        w,
        " PI=--.--% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC={exc:06X}\r\n"
    );
}

fn write_field(w: &mut ByteWriter<'_>, s: Sample) {
    if s.value.is_finite() && s.validity != Validity::Unavailable {
        // Clamped to the three digits a Masimo shows; in range for u16.
        let v = s.value.round().clamp(0.0, 999.0) as u16;
        let _ = write!(w, "{v:03}");
    } else {
        let _ = write!(w, "---");
    }
}

// ---------------------------------------------------------------------------
// Decoder

/// Decoder for the Masimo ASCII output of one oximeter.
#[derive(Debug)]
pub struct Masimo {
    source: SourceId,
    lines: LineAssembler,
    out: Decoded<MasimoError>,
    last_byte: Instant,
    alarm: (bool, bool),
    low_battery: bool,
}

impl Masimo {
    /// A decoder for readings from `source`. The device's alarm and battery
    /// are assumed quiet until a line says otherwise.
    pub fn new(source: SourceId) -> Self {
        Masimo {
            source,
            lines: LineAssembler::new(MAX_LINE),
            out: Decoded::with_capacity(OUTPUT_CAPACITY),
            last_byte: Instant::ZERO,
            alarm: (false, false),
            low_battery: false,
        }
    }

    /// Why the most recent malformed line was rejected, for the log.
    pub fn last_error(&self) -> Option<MasimoError> {
        self.out.last_error()
    }

    fn has_partial(&self) -> bool {
        !self.lines.is_discarding() && self.lines.line().iter().any(|b| !b.is_ascii_whitespace())
    }

    fn finish_line(&mut self, now: Instant) {
        if !self.has_partial() {
            return;
        }
        let parsed = match parse_line(self.lines.line()) {
            Ok(p) => p,
            Err(e) => {
                self.out.reject(DropReason::Malformed, e);
                return;
            }
        };
        self.out.count_ok();
        let validity = exception_validity(parsed.exc.unwrap_or(0));
        let reading = |measurement| {
            Output::Reading(Reading {
                source: self.source,
                arrival: now,
                device_time: parsed.device_time,
                measurement,
            })
        };
        let spo2 = parsed
            .spo2
            .map(|f| reading(Measurement::SpO2(to_sample(f, validity, 100))));
        let pulse = parsed
            .bpm
            .map(|f| reading(Measurement::PulseRate(to_sample(f, validity, u16::MAX))));
        for output in [spo2, pulse].into_iter().flatten() {
            self.out.push(output);
        }
        if let Some(alarm) = parsed.alarm {
            let state = (alarm & ALARM_ACTIVE != 0, alarm & ALARM_SILENCED != 0);
            if state != self.alarm {
                self.alarm = state;
                self.out.push(Output::Note(DeviceNote::DeviceAlarm {
                    active: state.0,
                    silenced: state.1,
                }));
            }
            let low = alarm & ALARM_LOW_BATTERY != 0;
            if low != self.low_battery {
                self.low_battery = low;
                self.out.push(Output::Note(DeviceNote::LowBattery(low)));
            }
        }
    }
}

impl Protocol for Masimo {
    fn handle_bytes(&mut self, now: Instant, bytes: &[u8]) {
        self.out.count_bytes(bytes.len());
        // A partial line left over from long ago is stale: drop it first.
        self.handle_timeout(now);
        for &byte in bytes {
            if byte == 0 {
                // Leading NULs are padding; a NUL inside a line means the
                // device restarted its output.
                if self.has_partial() {
                    self.out.discard(DropReason::Truncated);
                }
                self.lines.reset();
                continue;
            }
            match self.lines.feed(byte) {
                Feed::Pending => {}
                Feed::Overflow => self.out.discard(DropReason::Oversized),
                Feed::Line => {
                    self.finish_line(now);
                    self.lines.clear();
                }
            }
        }
        if !bytes.is_empty() {
            self.last_byte = now;
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.poll_timeout() else {
            return;
        };
        if now >= deadline {
            if self.has_partial() {
                self.out.discard(DropReason::Truncated);
            }
            self.lines.reset();
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let idle = self.lines.line().is_empty() && !self.lines.is_discarding();
        (!idle).then(|| self.last_byte + PARTIAL_LINE_TIMEOUT)
    }

    fn stats(&self) -> DecodeStats {
        self.out.stats()
    }

    fn drop_detail(&self) -> Option<&dyn core::fmt::Display> {
        self.out.detail()
    }
}

// ------------------------------------------ registry: host and monitor side

/// The host side for the registry (Masimo lines carry no device time
/// stamps worth an age limit).
pub fn open(source: SourceId, _ages: AgeLimits) -> BoxedProtocol {
    Box::new(Masimo::new(source))
}

/// NUL bytes some models send when they start.
pub const BOOT_NULS: usize = 3;

/// The monitor side, for simulated devices: one line per second, after the
/// NUL bytes some models send at power-up.
pub fn monitor() -> Box<dyn Monitor> {
    TextStream::boxed(|out| out.extend_from_slice(&[0; BOOT_NULS]), encode_line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::testkit::*;
    use proptest::prelude::*;

    const SRC: SourceId = SourceId(1);
    const VECTOR_1: &str = "02/22/16 22:47:45 SN=0000056661 SPO2=098% BPM=097 PI=03.60% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800";
    const VECTOR_2: &str = "12/01/05 11:56:29 SN=0123456789 SPO2=098% BPM=240 PI=20.00% SPCO=01.0% SPMET=00.5% DESAT=01 PIDELTA=-02 PVI=027 ALARM=0000 EXC=000820";
    const VECTOR_3: &str = "09/15/10 15:10:29 SPO2=097% BPM=064 PI=11.82% ALARM=20 EXC=800";

    fn line(text: &str) -> Vec<u8> {
        let mut v = text.as_bytes().to_vec();
        v.extend_from_slice(b"\r\n");
        v
    }

    fn sample_of(r: &Reading) -> Sample {
        r.measurement.continuous().expect("continuous").1
    }

    #[test]
    fn vector_1_real_rad8_line_is_valid() {
        let mut d = Masimo::new(SRC);
        let out = feed(&mut d, Instant::from_secs(9), &line(VECTOR_1));
        assert_eq!(
            out,
            vec![
                Output::Reading(Reading {
                    source: SRC,
                    arrival: Instant::from_secs(9),
                    device_time: Some(DeviceTime(1_456_181_265)),
                    measurement: Measurement::SpO2(Sample::valid(98.0)),
                }),
                Output::Reading(Reading {
                    source: SRC,
                    arrival: Instant::from_secs(9),
                    device_time: Some(DeviceTime(1_456_181_265)),
                    measurement: Measurement::PulseRate(Sample::valid(97.0)),
                }),
            ]
        );
        assert_eq!(d.stats().frames_ok, 1);
        let p = parse_line(VECTOR_1.as_bytes()).unwrap();
        assert_eq!(p.pi, Some(3.6));
        assert_eq!((p.alarm, p.exc), (Some(0), Some(0x800)));
    }

    #[test]
    fn vector_2_sensor_off_is_never_valid() {
        let mut d = Masimo::new(SRC);
        let r = readings(&feed(&mut d, Instant::ZERO, &line(VECTOR_2)));
        assert_eq!(r.len(), 2);
        for reading in &r {
            assert_eq!(sample_of(reading).validity, Validity::SensorOff);
            assert_eq!(reading.device_time, Some(DeviceTime(1_133_438_189)));
        }
        assert!(matches!(r[0].measurement, Measurement::SpO2(_)));
        assert_eq!(sample_of(&r[1]).value, 240.0);
    }

    #[test]
    fn vector_3_short_hex_words_and_silenced_alarm() {
        let mut d = Masimo::new(SRC);
        let out = feed(&mut d, Instant::ZERO, &line(VECTOR_3));
        let r = readings(&out);
        assert_eq!(sample_of(&r[0]), Sample::valid(97.0));
        assert_eq!(sample_of(&r[1]), Sample::valid(64.0));
        assert_eq!(r[0].device_time, Some(DeviceTime(1_284_563_429)));
        assert_eq!(
            out.last(),
            Some(&Output::Note(DeviceNote::DeviceAlarm {
                active: false,
                silenced: true
            }))
        );
        // The same alarm state again is not repeated.
        let again = feed(&mut d, Instant::from_secs(1), &line(VECTOR_3));
        assert!(again.iter().all(|o| matches!(o, Output::Reading(_))));
    }

    #[test]
    fn alarm_and_battery_notes_on_change_only() {
        let mut d = Masimo::new(SRC);
        let l = |alarm: &str| line(&format!("SPO2=097% BPM=064 ALARM={alarm} EXC=800"));
        assert!(notes(&feed(&mut d, Instant::ZERO, &l("0000"))).is_empty());
        assert_eq!(
            notes(&feed(&mut d, Instant::ZERO, &l("0052"))),
            vec![
                DeviceNote::DeviceAlarm {
                    active: true,
                    silenced: false
                },
                DeviceNote::LowBattery(true)
            ]
        );
        assert!(notes(&feed(&mut d, Instant::ZERO, &l("0053"))).is_empty());
        assert_eq!(
            notes(&feed(&mut d, Instant::ZERO, &l("0"))),
            vec![
                DeviceNote::DeviceAlarm {
                    active: false,
                    silenced: false
                },
                DeviceNote::LowBattery(false)
            ]
        );
    }

    #[test]
    fn keys_in_any_order_dashes_and_nul_padding() {
        let mut d = Masimo::new(SRC);
        let out = feed(
            &mut d,
            Instant::ZERO,
            b"\0\0\0EXC=000800 BPM=--- FOO=1 SPO2=---% 03/01/24 00:00:00\n",
        );
        let r = readings(&out);
        assert_eq!(r.len(), 2);
        for reading in &r {
            assert_eq!(sample_of(reading).validity, Validity::Unavailable);
            // 2024-03-01, after a leap day.
            assert_eq!(reading.device_time, Some(DeviceTime(1_709_251_200)));
        }
        assert_eq!(d.stats().dropped_total(), 0);
    }

    #[test]
    fn exception_bits_map_to_validity() {
        use Validity::*;
        for (exc, v) in [
            (0x0, Valid),
            (0x800, Valid),
            (0x801, SensorOff),
            (0x820, SensorOff),
            (0x1000, SensorOff),
            (0x2, Invalid),
            (0x80, Invalid),
            (0x100, Invalid),
            (0x10000, Invalid),
            (0x10_0000, Invalid),
            (0x20000, Unavailable),
            (0x10, Artifact),
            (0x40, Artifact),
            (0x4, Questionable),
            (0x8, Questionable),
            (0x400, Questionable),
            (0x200, Questionable),
            (0x8000_0000, Questionable),
            (0x28, SensorOff),
            (0x18, Artifact),
            (0x12, Invalid),
        ] {
            assert_eq!(exception_validity(exc), v, "EXC {exc:#x}");
        }
        // Dashes with a sensor-off exception say why.
        let p = parse_line(b"SPO2=---% BPM=--- EXC=000820").unwrap();
        assert_eq!(
            to_sample(p.spo2.unwrap(), exception_validity(0x820), 100).validity,
            SensorOff
        );
        // An impossible SpO2 is never valid.
        assert_eq!(to_sample(Field::Value(101), Valid, 100).validity, Invalid);
    }

    #[test]
    fn malformed_lines_are_counted_and_decoding_resumes() {
        let mut d = Masimo::new(SRC);
        let mut input = Vec::new();
        for bad in [
            "SPO2=9x% BPM=097",
            "SPO2=098% SPO2=097%",
            "SPO2=098% EXC=zz",
            "SPO2=098% ALARM=123456789",
            "SN=0000056661 PI=03.60%",
            "hello",
        ] {
            input.extend(line(bad));
        }
        input.extend(b"\xff\xfe SPO2=098%\r\n");
        input.extend(line(VECTOR_1));
        let out = feed(&mut d, Instant::ZERO, &input);
        assert_eq!(d.stats().dropped[DropReason::Malformed.index()], 7);
        assert_eq!(d.stats().frames_ok, 1);
        assert_eq!(readings(&out).len(), 2);
        assert_eq!(
            parse_line(b"SPO2=098% SPO2=097%"),
            Err(MasimoError::DuplicateKey("SPO2"))
        );
        assert_eq!(parse_line(b"hello"), Err(MasimoError::NoVitals));
        assert!(matches!(
            parse_line(b"BPM=1e3"),
            Err(MasimoError::BadValue { key: "BPM", .. })
        ));
    }

    #[test]
    fn malformed_timestamps_give_no_device_time() {
        for ts in [
            "13/01/16 10:00:00",
            "02/30/16 10:00:00",
            "02/29/23 10:00:00",
            "02/22/16 24:00:00",
            "02/22/16 10:60:00",
            "02/22/16",
            "2/22/16 10:00:00",
            "02/22/16 10:00:00 02/23/16",
        ] {
            let p = parse_line(format!("{ts} SPO2=098% BPM=070").as_bytes()).unwrap();
            assert_eq!(p.device_time, None, "{ts}");
        }
        let p = parse_line(b"02/29/24 10:00:00 SPO2=098%").unwrap();
        assert_eq!(p.device_time, Some(DeviceTime(1_709_200_800)));
    }

    #[test]
    fn oversized_line_is_dropped_and_next_line_decodes() {
        let mut d = Masimo::new(SRC);
        let mut input = vec![b'A'; MAX_LINE + 100];
        input.extend_from_slice(b"\r\n");
        input.extend(line(VECTOR_1));
        let out = feed(&mut d, Instant::ZERO, &input);
        assert_eq!(out.first(), Some(&Output::Dropped(DropReason::Oversized)));
        assert_eq!(d.stats().dropped_total(), 1);
        assert_eq!(readings(&out).len(), 2);
    }

    #[test]
    fn reboot_mid_line_truncates_and_resyncs() {
        let mut d = Masimo::new(SRC);
        let mut input = b"02/22/16 22:47:45 SN=0000056661 SPO2=09".to_vec();
        input.extend_from_slice(b"\0\0");
        input.extend(line(VECTOR_1));
        let out = feed(&mut d, Instant::ZERO, &input);
        assert_eq!(out.first(), Some(&Output::Dropped(DropReason::Truncated)));
        assert_eq!(readings(&out).len(), 2);
        assert_eq!(d.stats().dropped[DropReason::Truncated.index()], 1);
    }

    #[test]
    fn stale_partial_line_times_out() {
        let mut d = Masimo::new(SRC);
        assert_eq!(d.poll_timeout(), None);
        let out = feed(&mut d, Instant::from_secs(10), b"02/22/16 22:47:45 SPO2=09");
        assert!(out.is_empty());
        assert_eq!(d.poll_timeout(), Some(Instant::from_secs(12)));
        d.handle_timeout(Instant::from_secs(11));
        assert_eq!(d.poll_output(), None);
        d.handle_timeout(Instant::from_secs(12));
        assert_eq!(
            d.poll_output(),
            Some(Output::Dropped(DropReason::Truncated))
        );
        assert_eq!(d.poll_timeout(), None);
        // The rest of the old line arrives much later: it does not join up.
        let out = feed(&mut d, Instant::from_secs(30), b"8% BPM=097\r\n");
        assert!(readings(&out)
            .iter()
            .all(|r| !matches!(r.measurement, Measurement::SpO2(_))));
        // The same gap found by handle_bytes alone (no timer call).
        let mut d = Masimo::new(SRC);
        feed(&mut d, Instant::from_secs(10), b"SPO2=09");
        let out = feed(&mut d, Instant::from_secs(20), &line(VECTOR_1));
        assert_eq!(out.first(), Some(&Output::Dropped(DropReason::Truncated)));
        assert_eq!(readings(&out).len(), 2);
    }

    #[test]
    fn encoder_writes_a_rad8_line() {
        let mut snap = Snapshot::empty(DeviceTime(1_456_181_265));
        snap.spo2 = Sample::valid(98.0);
        snap.pulse_rate = Sample::valid(97.0);
        let mut out = Vec::new();
        encode_line(&snap, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "02/22/16 22:47:45 SN=0000000000 SPO2=098% BPM=097 PI=--.--% SPCO=--.-% \
             SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n"
        );
        let mut snap = Snapshot::empty(DeviceTime(1_133_438_189));
        snap.spo2 = Sample::new(98.0, Validity::SensorOff);
        let mut out = Vec::new();
        encode_line(&snap, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("12/01/05 11:56:29 "), "{text}");
        assert!(
            text.contains(" SPO2=098% BPM=--- ") && text.ends_with(" EXC=000820\r\n"),
            "{text}"
        );
    }

    #[test]
    fn civil_conversion_round_trips() {
        for days in (-800_000i64..800_000).step_by(997) {
            let (y, m, d) = crate::time::civil_from_days(days);
            assert!((1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m));
            assert_eq!(crate::time::days_from_civil(y, m, d), days);
        }
        assert_eq!(crate::time::civil_from_days(0), (1970, 1, 1));
        assert_eq!(crate::time::days_from_civil(2000, 3, 1), 11_017);
    }

    // -- property tests ------------------------------------------------------

    /// A validity that one EXC word can carry for both values.
    fn arb_condition() -> impl Strategy<Value = Validity> {
        proptest::sample::select(vec![
            Validity::Valid,
            Validity::SensorOff,
            Validity::Invalid,
            Validity::Artifact,
            Validity::Questionable,
        ])
    }

    fn arb_snapshot() -> impl Strategy<Value = Snapshot> {
        (
            proptest::option::of(0.0f32..=100.0),
            proptest::option::of(20.0f32..=300.0),
            arb_condition(),
            // 2000-01-01 .. 2099-12-31
            946_684_800i64..4_102_444_799,
        )
            .prop_map(|(spo2, pr, cond, t)| oximeter_snapshot(DeviceTime(t), spo2, pr, cond))
    }

    proptest! {
        #[test]
        fn snapshots_round_trip(snap in arb_snapshot()) {
            let mut bytes = Vec::new();
            encode_line(&snap, &mut bytes);
            let mut d = Masimo::new(SRC);
            let r = readings(&feed(&mut d, Instant::ZERO, &bytes));
            prop_assert_eq!(r.len(), 2);
            let cond = shared_condition(&[snap.spo2, snap.pulse_rate]);
            prop_assert!(matches!(r[0].measurement, Measurement::SpO2(_)));
            prop_assert!(matches!(r[1].measurement, Measurement::PulseRate(_)));
            check_oximeter_sample(sample_of(&r[0]), snap.spo2, cond)?;
            check_oximeter_sample(sample_of(&r[1]), snap.pulse_rate, cond)?;
            for reading in &r {
                prop_assert_eq!(reading.device_time, Some(snap.device_time));
            }
        }

        #[test]
        fn chunking_does_not_change_outputs(
            snaps in proptest::collection::vec(arb_snapshot(), 1..6),
            noise in proptest::collection::vec(any::<u8>(), 0..60),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let mut bytes = noise;
            bytes.extend_from_slice(b"\r\n\0\0");
            for s in &snaps {
                encode_line(s, &mut bytes);
            }
            let expect = cut_anywhere(|| Masimo::new(SRC), Instant::ZERO, &bytes, &cuts)?;
            prop_assert!(readings(&expect).len() >= 2 * snaps.len());
        }

        #[test]
        fn arbitrary_bytes_never_panic_or_yield_non_finite_valid_values(
            bytes in proptest::collection::vec(any::<u8>(), 0..3000)
        ) {
            let mut d = Masimo::new(SRC);
            let outs = feed(&mut d, Instant::ZERO, &bytes);
            valid_values_are_finite(&outs, Checked::ContinuousOnly)?;
        }
    }
}
