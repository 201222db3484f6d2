//! vigil's own open line protocol ("vigil-line", version 1): one reading per
//! line of plain text, easy to type by hand into `nc` and easy to emit from a
//! simulator, a DIY sensor or a serial-to-TCP bridge.
//!
//! ```text
//! vigil-line 1                      # optional header: the protocol version
//! hr 72                             # heart rate, per minute
//! pr 70 t=1700000000                # pulse rate, with the device's clock
//! spo2 97
//! spo2 - sensor_off                 # no value, and why
//! nibp 128/82/97 at=1700000000 mode=auto
//! nibp 128/82 (97)                  # the same, as a monitor prints it
//! nibp 128/82/- mean=invalid        # a validity per component
//! rr 14                             # respiration rate, per minute
//! etco2 38                          # end-tidal CO2, mmHg
//! ```
//!
//! The full specification (grammar, validity keywords, versioning, error
//! handling) is `docs/line-protocol.md`. This module holds the decoder
//! ([`VigilLine`]), a one-line parser ([`parse_line`]), the encoders
//! ([`encode_snapshot`], [`encode_measurement`], [`encode_header`]), and the
//! bounded line assembler that the Masimo decoder reuses.
//!
//! Pure: no IO, no clock. Depends on [`crate::protocol`], [`crate::vitals`]
//! and [`crate::time`] only.

use std::fmt::{self, Write as _};

use crate::protocol::registry::{BoxedProtocol, Monitor, TextStream};
use crate::protocol::AgeLimits;
use crate::protocol::{DecodeStats, Decoded, DropReason, Output, Protocol, Snapshot};
use crate::time::Instant;
use crate::vitals::{
    DeviceTime, Measurement, Nibp, NibpMode, Reading, Sample, ShortText, SourceId, Validity,
};

/// The protocol version this module speaks.
pub const VERSION: u32 = 1;

/// First word of the optional header line (`vigil-line 1`).
pub const HEADER_KEYWORD: &str = "vigil-line";

/// Longest accepted line in bytes, without its line ending. Longer lines are
/// dropped as [`DropReason::Oversized`] and decoding resumes after the next
/// line ending.
pub const MAX_LINE: usize = 256;

/// Outputs queued before the queue has to grow (one chunk of typical size
/// never needs more).
const OUTPUT_CAPACITY: usize = 64;

/// A word from the input, kept inline for error messages.
pub type Word = ShortText<24>;

/// Why one line of the line protocol was rejected. Every message says what to
/// write instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// The line holds bytes that are not UTF-8 text.
    #[error("the line is not UTF-8 text")]
    NotText,
    /// The line is longer than [`MAX_LINE`] bytes.
    #[error("the line is longer than {MAX_LINE} bytes")]
    TooLong,
    /// The first word names no vital and is not the header keyword.
    #[error(
        "unknown keyword `{0}`: a line starts with hr, pr, spo2, nibp, rr, etco2 or vigil-line"
    )]
    UnknownKeyword(Word),
    /// A vital without a value.
    #[error("`{0}` needs a value: a number, or - when there is none")]
    MissingValue(&'static str),
    /// A value that is not a plain decimal number.
    #[error(
        "bad number `{0}`: write digits with an optional decimal point (72, 36.5), or - for none"
    )]
    BadNumber(Word),
    /// A blood pressure value of the wrong shape.
    #[error("bad blood pressure `{0}`: write sys/dia, sys/dia/mean or sys/dia (mean)")]
    BadNibp(Word),
    /// A word after the value that is neither a validity nor an option.
    #[error("unknown word `{0}`: expected a validity (valid, invalid, unavailable, artifact, sensor_off, under_range, over_range, questionable, old) or an option such as t=<unix seconds>")]
    UnknownWord(Word),
    /// Two validity words on one line.
    #[error("more than one validity on the line; give at most one")]
    DuplicateValidity,
    /// `-` (no value) marked `valid`.
    #[error("a missing value (-) cannot be valid: drop the word `valid` or give a number")]
    MissingButValid,
    /// An option this version does not know.
    #[error(
        "unknown option `{0}`: version 1 knows t=, and for nibp at=, mode=, sys=, dia= and mean="
    )]
    UnknownOption(Word),
    /// A component validity option (`sys=`, `dia=`, `mean=`) whose value
    /// names no validity.
    #[error("bad validity `{0}`: write sys=, dia= or mean= with one of valid, invalid, unavailable, artifact, sensor_off, under_range, over_range, questionable")]
    BadComponentValidity(Word),
    /// The same option twice.
    #[error("option `{0}=` given twice")]
    DuplicateOption(&'static str),
    /// An NIBP option on another vital.
    #[error("option `{0}=` only applies to nibp lines")]
    NibpOnlyOption(&'static str),
    /// A time that is not whole Unix seconds.
    #[error("bad time `{0}`: write whole seconds since 1970-01-01 UTC, e.g. t=1700000000")]
    BadTime(Word),
    /// An unknown NIBP mode.
    #[error("bad mode `{0}`: write mode=auto, mode=stat, mode=manual or mode=unknown")]
    BadMode(Word),
    /// A header line that does not read `vigil-line <number>`.
    #[error("bad header: write `vigil-line 1`")]
    BadHeader,
    /// The header announces a version this decoder does not speak.
    #[error(
        "unsupported protocol version {0}: this vigil speaks vigil-line 1; send `vigil-line 1`"
    )]
    UnsupportedVersion(u32),
    /// A line after a header with an unsupported version; such lines are all
    /// rejected until a supported header arrives.
    #[error(
        "line ignored: the sender announced unsupported version {0}; send `vigil-line 1` to resume"
    )]
    VersionRejected(u32),
}

/// One meaningful line of the protocol.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Item {
    /// The header line `vigil-line 1`.
    Header,
    /// A reading line.
    Reading {
        /// What was measured.
        measurement: Measurement,
        /// The device's clock (`t=`), when given.
        device_time: Option<DeviceTime>,
    },
}

/// Parses one line (without its line ending).
///
/// Returns `Ok(None)` for blank lines and comments, `Ok(Some(item))` for a
/// header or a reading, and the reason otherwise. A header announcing any
/// version but [`VERSION`] is [`LineError::UnsupportedVersion`].
pub fn parse_line(line: &str) -> Result<Option<Item>, LineError> {
    let text = match line.find('#') {
        Some(at) => line.get(..at).unwrap_or(""),
        None => line,
    };
    let mut words = text.split_ascii_whitespace();
    let Some(keyword) = words.next() else {
        return Ok(None);
    };
    let kind = if keyword.eq_ignore_ascii_case(HEADER_KEYWORD) {
        return parse_header(words).map(Some);
    } else if keyword.eq_ignore_ascii_case("hr") {
        Kind::HeartRate
    } else if keyword.eq_ignore_ascii_case("pr") {
        Kind::PulseRate
    } else if keyword.eq_ignore_ascii_case("spo2") {
        Kind::SpO2
    } else if keyword.eq_ignore_ascii_case("nibp") {
        Kind::Nibp
    } else if keyword.eq_ignore_ascii_case("rr") {
        Kind::RespRate
    } else if keyword.eq_ignore_ascii_case("etco2") {
        Kind::EtCo2
    } else {
        return Err(LineError::UnknownKeyword(Word::new(keyword)));
    };
    parse_reading(kind, words).map(Some)
}

fn parse_header<'a>(mut words: impl Iterator<Item = &'a str>) -> Result<Item, LineError> {
    let version = words.next().ok_or(LineError::BadHeader)?;
    if words.next().is_some() || version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(LineError::BadHeader);
    }
    // All digits: the only failure left is overflow, which no version reaches.
    let version: u32 = version.parse().map_err(|_| LineError::BadHeader)?;
    if version == VERSION {
        Ok(Item::Header)
    } else {
        Err(LineError::UnsupportedVersion(version))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    HeartRate,
    PulseRate,
    SpO2,
    Nibp,
    RespRate,
    EtCo2,
}

impl Kind {
    const fn keyword(self) -> &'static str {
        match self {
            Kind::HeartRate => "hr",
            Kind::PulseRate => "pr",
            Kind::SpO2 => "spo2",
            Kind::Nibp => "nibp",
            Kind::RespRate => "rr",
            Kind::EtCo2 => "etco2",
        }
    }
}

fn parse_reading<'a>(
    kind: Kind,
    mut words: impl Iterator<Item = &'a str>,
) -> Result<Item, LineError> {
    let value = words
        .next()
        .ok_or(LineError::MissingValue(kind.keyword()))?;
    // Components: one value, or sys/dia/mean for NIBP.
    let mut parts: [Option<f32>; 3] = [None; 3];
    let mut mean_open = false;
    if kind == Kind::Nibp {
        let (sys, dia, mean) = parse_nibp_value(value)?;
        parts = [sys, dia, mean.unwrap_or(None)];
        // `sys/dia` may be followed by `(mean)`.
        mean_open = mean.is_none();
    } else {
        parts[0] = parse_number(value)?;
    }

    let mut validity: Option<Validity> = None;
    let mut device_time: Option<DeviceTime> = None;
    let mut measured_at: Option<DeviceTime> = None;
    let mut mode: Option<NibpMode> = None;
    // Per-component validity of an NIBP line (`sys=`, `dia=`, `mean=`).
    let mut component: [Option<Validity>; 3] = [None; 3];
    let mut first_after_value = true;
    for word in words {
        let was_first = core::mem::replace(&mut first_after_value, false);
        if mean_open && was_first && word.starts_with('(') {
            let inner = word
                .strip_prefix('(')
                .and_then(|w| w.strip_suffix(')'))
                .ok_or(LineError::BadNibp(Word::new(word)))?;
            parts[2] = parse_number(inner).map_err(|_| LineError::BadNibp(Word::new(word)))?;
            continue;
        }
        if let Some((key, val)) = word.split_once('=') {
            if key.eq_ignore_ascii_case("t") {
                set_once(&mut device_time, parse_time(val)?, "t")?;
            } else if key.eq_ignore_ascii_case("at") {
                if kind != Kind::Nibp {
                    return Err(LineError::NibpOnlyOption("at"));
                }
                set_once(&mut measured_at, parse_time(val)?, "at")?;
            } else if key.eq_ignore_ascii_case("mode") {
                if kind != Kind::Nibp {
                    return Err(LineError::NibpOnlyOption("mode"));
                }
                set_once(&mut mode, parse_mode(val)?, "mode")?;
            } else if let Some(k) = COMPONENTS.iter().position(|c| key.eq_ignore_ascii_case(c)) {
                let name = COMPONENTS[k];
                if kind != Kind::Nibp {
                    return Err(LineError::NibpOnlyOption(name));
                }
                let v = Validity::ALL
                    .into_iter()
                    .find(|v| v.key().eq_ignore_ascii_case(val))
                    .ok_or(LineError::BadComponentValidity(Word::new(word)))?;
                set_once(&mut component[k], v, name)?;
            } else {
                return Err(LineError::UnknownOption(Word::new(word)));
            }
            continue;
        }
        let v = Validity::ALL
            .into_iter()
            .find(|v| v.key().eq_ignore_ascii_case(word))
            .ok_or(LineError::UnknownWord(Word::new(word)))?;
        if validity.replace(v).is_some() {
            return Err(LineError::DuplicateValidity);
        }
    }

    let used = if kind == Kind::Nibp { 3 } else { 1 };
    let parts = parts.get(..used).unwrap_or(&[]);
    if validity == Some(Validity::Valid) && parts.iter().all(Option::is_none) {
        return Err(LineError::MissingButValid);
    }
    let mut samples = [Sample::missing(Validity::Unavailable); 3];
    for (k, slot) in samples.iter_mut().enumerate().take(used) {
        let part = parts.get(k).copied().flatten();
        // A component's own validity overrides the line's.
        let validity = match component[k] {
            Some(Validity::Valid) if part.is_none() => return Err(LineError::MissingButValid),
            Some(v) => v,
            None => validity.unwrap_or(Validity::Valid),
        };
        *slot = match part {
            Some(v) => Sample::new(v, validity),
            None if validity.is_valid() => Sample::missing(Validity::Unavailable),
            None => Sample::missing(validity),
        };
    }
    let [first, diastolic, mean] = samples;
    let measurement = match kind {
        Kind::HeartRate => Measurement::HeartRate(first),
        Kind::PulseRate => Measurement::PulseRate(first),
        Kind::SpO2 => Measurement::SpO2(first),
        Kind::RespRate => Measurement::RespRate(first),
        Kind::EtCo2 => Measurement::EtCo2(first),
        Kind::Nibp => Measurement::Nibp(Nibp {
            systolic: first,
            diastolic,
            mean,
            measured_at,
            mode: mode.unwrap_or_default(),
        }),
    };
    Ok(Item::Reading {
        measurement,
        device_time,
    })
}

/// The names of the per-component validity options of an NIBP line, in
/// systolic, diastolic, mean order.
const COMPONENTS: [&str; 3] = ["sys", "dia", "mean"];

fn set_once<T>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), LineError> {
    if slot.replace(value).is_some() {
        Err(LineError::DuplicateOption(name))
    } else {
        Ok(())
    }
}

/// A plain decimal (`72`, `36.5`, `-3`) or `-` for "no value".
fn parse_number(word: &str) -> Result<Option<f32>, LineError> {
    if word == "-" {
        return Ok(None);
    }
    let bad = || LineError::BadNumber(Word::new(word));
    let unsigned = word.strip_prefix('-').unwrap_or(word);
    let (int, frac) = match unsigned.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (unsigned, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || !frac.is_none_or(digits) {
        return Err(bad());
    }
    match word.parse::<f32>() {
        Ok(v) if v.is_finite() => Ok(Some(v)),
        _ => Err(bad()),
    }
}

/// `S/D`, `S/D/M` or `-`; the mean is `None` when only two parts are given
/// (it may follow as `(M)`), `Some(None)` when given as `-`.
#[allow(clippy::type_complexity)]
fn parse_nibp_value(
    word: &str,
) -> Result<(Option<f32>, Option<f32>, Option<Option<f32>>), LineError> {
    if word == "-" {
        return Ok((None, None, Some(None)));
    }
    let bad = || LineError::BadNibp(Word::new(word));
    let mut parts = word.split('/');
    let sys = parts.next().ok_or_else(bad)?;
    let dia = parts.next().ok_or_else(bad)?;
    let mean = parts.next();
    if parts.next().is_some() {
        return Err(bad());
    }
    let sys = parse_number(sys).map_err(|_| bad())?;
    let dia = parse_number(dia).map_err(|_| bad())?;
    let mean = match mean {
        Some(m) => Some(parse_number(m).map_err(|_| bad())?),
        None => None,
    };
    Ok((sys, dia, mean))
}

fn parse_time(word: &str) -> Result<DeviceTime, LineError> {
    let bad = || LineError::BadTime(Word::new(word));
    let unsigned = word.strip_prefix('-').unwrap_or(word);
    if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    word.parse::<i64>().map(DeviceTime).map_err(|_| bad())
}

fn parse_mode(word: &str) -> Result<NibpMode, LineError> {
    [
        NibpMode::Auto,
        NibpMode::Stat,
        NibpMode::Manual,
        NibpMode::Unknown,
    ]
    .into_iter()
    .find(|m| m.key().eq_ignore_ascii_case(word))
    .ok_or(LineError::BadMode(Word::new(word)))
}

// ---------------------------------------------------------------------------
// Encoders

/// Writes `fmt` output into a byte buffer (writing to a `Vec` cannot fail).
pub(crate) struct ByteWriter<'a>(pub(crate) &'a mut Vec<u8>);

impl fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Appends the header line `vigil-line 1` (with LF).
pub fn encode_header(out: &mut Vec<u8>) {
    out.extend_from_slice(HEADER_KEYWORD.as_bytes());
    let _ = writeln!(ByteWriter(out), " {VERSION}");
}

/// Appends one reading line (with LF) for `measurement`, with `t=` when
/// `device_time` is given.
///
/// Numbers are written exactly (the shortest decimal that reads back as the
/// same `f32`). An NIBP whose components share one validity is written with
/// one word for the line (the form every vigil-line reader knows); one whose
/// components differ (systolic and diastolic valid with the mean invalid, a
/// diastolic artifact) is written with a `sys=`/`dia=`/`mean=` option for each
/// component that is not plainly valid or unavailable.
pub fn encode_measurement(
    measurement: &Measurement,
    device_time: Option<DeviceTime>,
    out: &mut Vec<u8>,
) {
    let mut w = ByteWriter(out);
    let mut components = [None; 3];
    let validity = match measurement {
        Measurement::HeartRate(s)
        | Measurement::PulseRate(s)
        | Measurement::SpO2(s)
        | Measurement::RespRate(s)
        | Measurement::EtCo2(s) => {
            let keyword = match measurement {
                Measurement::HeartRate(_) => "hr",
                Measurement::PulseRate(_) => "pr",
                Measurement::RespRate(_) => "rr",
                Measurement::EtCo2(_) => "etco2",
                _ => "spo2",
            };
            let _ = write!(w, "{keyword} ");
            write_value(&mut w, *s);
            line_validity(&[*s])
        }
        Measurement::Nibp(n) => {
            let _ = write!(w, "nibp ");
            write_value(&mut w, n.systolic);
            let _ = write!(w, "/");
            write_value(&mut w, n.diastolic);
            let _ = write!(w, "/");
            write_value(&mut w, n.mean);
            let parts = [n.systolic, n.diastolic, n.mean];
            let shared = line_validity(&parts);
            if parts.iter().all(|s| read_back(*s, shared) == written(*s)) {
                shared
            } else {
                // No line word: each component that is not plainly valid
                // (a number) or unavailable (`-`) says its own validity.
                for (slot, s) in components.iter_mut().zip(parts) {
                    if read_back(s, Validity::Valid) != written(s) {
                        *slot = Some(written(s));
                    }
                }
                Validity::Valid
            }
        }
    };
    if !validity.is_valid() {
        let _ = write!(w, " {}", validity.key());
    }
    for (name, v) in COMPONENTS.iter().zip(components) {
        if let Some(v) = v {
            let _ = write!(w, " {name}={}", v.key());
        }
    }
    if let Measurement::Nibp(n) = measurement {
        if let Some(DeviceTime(at)) = n.measured_at {
            let _ = write!(w, " at={at}");
        }
        if n.mode != NibpMode::Unknown {
            let _ = write!(w, " mode={}", n.mode.key());
        }
    }
    if let Some(DeviceTime(t)) = device_time {
        let _ = write!(w, " t={t}");
    }
    let _ = writeln!(w);
}

/// Appends the lines for everything `snapshot` shows: one line per vital that
/// carries a value or a reason (a vital that is simply unavailable is left
/// out), and the NIBP measurement if any, each with `t=` from the snapshot.
/// Breathing goes as `rr` and `etco2` lines after SpO2 (`rr 0` is no breath).
pub fn encode_snapshot(snapshot: &Snapshot, out: &mut Vec<u8>) {
    let t = Some(snapshot.device_time);
    for m in [
        Measurement::HeartRate(snapshot.heart_rate),
        Measurement::PulseRate(snapshot.pulse_rate),
        Measurement::SpO2(snapshot.spo2),
        Measurement::RespRate(snapshot.resp_rate),
        Measurement::EtCo2(snapshot.etco2),
    ] {
        if let Some((_, s)) = m.continuous() {
            if is_unmeasured(s) {
                continue;
            }
        }
        encode_measurement(&m, t, out);
    }
    if let Some(nibp) = snapshot.nibp {
        encode_measurement(&Measurement::Nibp(nibp), t, out);
    }
}

/// The validity a component written as a number (or `-`) reads back with
/// under the line's validity word `line`. A missing value the model calls
/// valid (it has no number) reads back as unavailable, the only way it can.
fn read_back(s: Sample, line: Validity) -> Validity {
    if s.value.is_finite() {
        line
    } else if line.is_valid() {
        Validity::Unavailable
    } else {
        line
    }
}

/// The validity a component is written with: a missing value is never valid.
fn written(s: Sample) -> Validity {
    if !s.value.is_finite() && s.validity.is_valid() {
        Validity::Unavailable
    } else {
        s.validity
    }
}

fn is_unmeasured(s: Sample) -> bool {
    !s.value.is_finite() && (s.validity == Validity::Unavailable || s.validity.is_valid())
}

/// A number for a valid finite value or a non-valid value the device still
/// showed; `-` otherwise.
fn write_value(w: &mut ByteWriter<'_>, s: Sample) {
    if s.value.is_finite() {
        let _ = write!(w, "{}", s.value);
    } else {
        let _ = write!(w, "-");
    }
}

/// The validity word for a line: the most severe non-valid validity among the
/// samples that carry a value or a reason (plain "unavailable" missing
/// components are written as `-` and read back as unavailable anyway).
fn line_validity(samples: &[Sample]) -> Validity {
    let mut worst = Validity::Valid;
    let mut any_value = false;
    for s in samples {
        if s.value.is_finite() {
            any_value = true;
        }
        if s.validity.is_valid() || (is_unmeasured(*s) && s.validity == Validity::Unavailable) {
            continue;
        }
        if severity(s.validity) > severity(worst) {
            worst = s.validity;
        }
    }
    if worst.is_valid() && !any_value {
        // Only `-` parts: say nothing; they read back as unavailable.
        return Validity::Valid;
    }
    worst
}

/// Order used to pick one validity for several samples: the condition a nurse
/// must act on first wins.
pub(crate) const fn severity(v: Validity) -> u8 {
    match v {
        Validity::Valid => 0,
        // Right but not current: the least a nurse must act on.
        Validity::Old => 1,
        Validity::Questionable => 2,
        Validity::Artifact => 3,
        Validity::UnderRange => 4,
        Validity::OverRange => 5,
        Validity::Unavailable => 6,
        Validity::Invalid => 7,
        Validity::SensorOff => 8,
    }
}

// ---------------------------------------------------------------------------
// Line assembly (shared with the Masimo decoder)

/// What one byte did to a [`LineAssembler`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Feed {
    /// Nothing to do yet.
    Pending,
    /// A line ending arrived: the line is in [`LineAssembler::line`] (possibly
    /// empty); call [`LineAssembler::clear`] after reading it.
    Line,
    /// The line outgrew the bound; the rest of it up to the next line ending
    /// is discarded.
    Overflow,
}

/// Collects bytes into lines ended by LF or CR (so CR LF yields an extra
/// empty line, which callers ignore), in a buffer reserved once.
#[derive(Debug)]
pub(crate) struct LineAssembler {
    buf: Vec<u8>,
    max: usize,
    overflow: bool,
}

impl LineAssembler {
    /// An assembler for lines of at most `max` bytes.
    pub(crate) fn new(max: usize) -> Self {
        LineAssembler {
            buf: Vec::with_capacity(max),
            max,
            overflow: false,
        }
    }

    /// Takes one byte.
    pub(crate) fn feed(&mut self, byte: u8) -> Feed {
        if byte == b'\n' || byte == b'\r' {
            if self.overflow {
                self.overflow = false;
                self.buf.clear();
                return Feed::Pending;
            }
            return Feed::Line;
        }
        if self.overflow {
            return Feed::Pending;
        }
        if self.buf.len() >= self.max {
            self.overflow = true;
            self.buf.clear();
            return Feed::Overflow;
        }
        self.buf.push(byte);
        Feed::Pending
    }

    /// The line collected so far.
    pub(crate) fn line(&self) -> &[u8] {
        &self.buf
    }

    /// Forgets the current line (keeps discarding an oversized one).
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
    }

    /// Forgets everything, including an oversized line being discarded.
    pub(crate) fn reset(&mut self) {
        self.buf.clear();
        self.overflow = false;
    }

    /// True while the rest of an oversized line is being discarded.
    pub(crate) fn is_discarding(&self) -> bool {
        self.overflow
    }
}

// ---------------------------------------------------------------------------
// Decoder

/// Decoder for the vigil line protocol.
///
/// Each line is decoded on its own; a line that does not parse is dropped as
/// [`DropReason::Malformed`] (its reason is kept in
/// [`VigilLine::last_error`]), an overlong one as [`DropReason::Oversized`].
/// After a header with an unsupported version every reading line is rejected
/// until a `vigil-line 1` header arrives.
#[derive(Debug)]
pub struct VigilLine {
    source: SourceId,
    lines: LineAssembler,
    out: Decoded<LineError>,
    rejected_version: Option<u32>,
}

impl VigilLine {
    /// A decoder for readings from `source`.
    pub fn new(source: SourceId) -> Self {
        VigilLine {
            source,
            lines: LineAssembler::new(MAX_LINE),
            out: Decoded::with_capacity(OUTPUT_CAPACITY),
            rejected_version: None,
        }
    }

    /// Why the most recent rejected line was rejected, for the log.
    pub fn last_error(&self) -> Option<LineError> {
        self.out.last_error()
    }

    /// The unsupported version the sender announced, while its lines are
    /// being rejected.
    pub fn rejected_version(&self) -> Option<u32> {
        self.rejected_version
    }

    fn finish_line(&mut self, now: Instant) {
        let parsed = match core::str::from_utf8(self.lines.line()) {
            Ok(text) => parse_line(text),
            Err(_) => Err(LineError::NotText),
        };
        match parsed {
            Ok(None) => {}
            Ok(Some(Item::Header)) => {
                self.rejected_version = None;
                self.out.count_ok();
            }
            Ok(Some(Item::Reading {
                measurement,
                device_time,
            })) => {
                if let Some(v) = self.rejected_version {
                    self.out
                        .reject(DropReason::Malformed, LineError::VersionRejected(v));
                    return;
                }
                self.out.count_ok();
                self.out.push(Output::Reading(Reading {
                    source: self.source,
                    arrival: now,
                    device_time,
                    measurement,
                }));
            }
            Err(error) => {
                if let LineError::UnsupportedVersion(v) = error {
                    self.rejected_version = Some(v);
                }
                self.out.reject(DropReason::Malformed, error);
            }
        }
    }
}

impl Protocol for VigilLine {
    fn handle_bytes(&mut self, now: Instant, bytes: &[u8]) {
        self.out.count_bytes(bytes.len());
        for &byte in bytes {
            match self.lines.feed(byte) {
                Feed::Pending => {}
                Feed::Overflow => self.out.reject(DropReason::Oversized, LineError::TooLong),
                Feed::Line => {
                    self.finish_line(now);
                    self.lines.clear();
                }
            }
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop()
    }

    fn stats(&self) -> DecodeStats {
        self.out.stats()
    }

    fn drop_detail(&self) -> Option<&dyn core::fmt::Display> {
        self.out.detail()
    }
}

// ------------------------------------------ registry: host and monitor side

/// The host side for the registry.
pub fn open(source: SourceId, _ages: AgeLimits) -> BoxedProtocol {
    Box::new(VigilLine::new(source))
}

/// The monitor side, for simulated devices: one snapshot (a line per vital,
/// NIBP with `at=`) per second, after a `vigil-line 1` header.
pub fn monitor() -> Box<dyn Monitor> {
    TextStream::boxed(encode_header, encode_snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::testkit::*;
    use proptest::prelude::*;

    const SRC: SourceId = SourceId(3);

    fn decode(text: &str) -> (Vec<Output>, VigilLine) {
        let mut d = VigilLine::new(SRC);
        let out = feed(&mut d, Instant::from_secs(5), text.as_bytes());
        (out, d)
    }

    fn measurement(line: &str) -> Measurement {
        match parse_line(line) {
            Ok(Some(Item::Reading { measurement, .. })) => measurement,
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    fn valid(v: f32) -> Sample {
        Sample::valid(v)
    }

    /// Each line is refused with its error.
    fn refused(cases: &[(&str, LineError)]) {
        for &(line, error) in cases {
            assert_eq!(parse_line(line), Err(error), "{line}");
        }
    }

    #[test]
    fn simple_readings_decode_with_arrival_and_source() {
        let (out, d) = decode("hr 72\npr 70.5 t=1700000000\r\nspo2 97\n");
        assert_eq!(
            out,
            vec![
                Output::Reading(Reading {
                    source: SRC,
                    arrival: Instant::from_secs(5),
                    device_time: None,
                    measurement: Measurement::HeartRate(valid(72.0)),
                }),
                Output::Reading(Reading {
                    source: SRC,
                    arrival: Instant::from_secs(5),
                    device_time: Some(DeviceTime(1_700_000_000)),
                    measurement: Measurement::PulseRate(valid(70.5)),
                }),
                Output::Reading(Reading {
                    source: SRC,
                    arrival: Instant::from_secs(5),
                    device_time: None,
                    measurement: Measurement::SpO2(valid(97.0)),
                }),
            ]
        );
        assert_eq!(d.stats().frames_ok, 3);
        assert_eq!(d.stats().dropped_total(), 0);
        assert_eq!(d.stats().bytes, 36);
    }

    #[test]
    fn breathing_keywords_parse_and_round_trip() {
        assert_eq!(measurement("rr 14"), Measurement::RespRate(valid(14.0)));
        assert_eq!(measurement("EtCO2 38.5"), Measurement::EtCo2(valid(38.5)));
        assert_eq!(measurement("rr 0"), Measurement::RespRate(valid(0.0)));
        let Measurement::RespRate(s) = measurement("rr - sensor_off") else {
            panic!("not rr")
        };
        assert_eq!(s.validity, Validity::SensorOff);
        let Measurement::RespRate(s) = measurement("rr -") else {
            panic!("not rr")
        };
        assert_eq!(s.validity, Validity::Unavailable);
        assert_eq!(
            parse_line("rr 14 at=1"),
            Err(LineError::NibpOnlyOption("at"))
        );
        for m in [
            Measurement::RespRate(valid(12.0)),
            Measurement::EtCo2(Sample::new(41.0, Validity::Questionable)),
        ] {
            let mut out = Vec::new();
            encode_measurement(&m, Some(DeviceTime(7)), &mut out);
            let line = String::from_utf8(out).unwrap();
            assert_eq!(measurement(line.trim_end()), m, "{line}");
        }
    }

    #[test]
    fn missing_values_and_validity_words() {
        // NaN != NaN, so missing samples are compared by validity and NaN-ness.
        let Measurement::SpO2(s) = measurement("spo2 - sensor_off") else {
            panic!("not spo2")
        };
        assert!(s.value.is_nan());
        assert_eq!(s.validity, Validity::SensorOff);
        let Measurement::SpO2(s) = measurement("spo2 -") else {
            panic!("not spo2")
        };
        assert!(s.value.is_nan());
        assert_eq!(s.validity, Validity::Unavailable);
        let Measurement::HeartRate(s) = measurement("HR 140 Artifact") else {
            panic!("not hr")
        };
        assert_eq!((s.value, s.validity), (140.0, Validity::Artifact));
        for v in Validity::ALL {
            let Measurement::PulseRate(s) = measurement(&format!("pr 60 {}", v.key())) else {
                panic!("not pr")
            };
            assert_eq!(s.validity, v);
        }
        assert_eq!(parse_line("spo2 - valid"), Err(LineError::MissingButValid));
        assert_eq!(
            parse_line("spo2 97 artifact questionable"),
            Err(LineError::DuplicateValidity)
        );
    }

    #[test]
    fn nibp_forms() {
        let expected = Nibp {
            systolic: valid(128.0),
            diastolic: valid(82.0),
            mean: valid(97.0),
            measured_at: None,
            mode: NibpMode::Unknown,
        };
        assert_eq!(measurement("nibp 128/82/97"), Measurement::Nibp(expected));
        assert_eq!(measurement("nibp 128/82 (97)"), Measurement::Nibp(expected));
        assert_eq!(
            measurement("nibp 128/82/97 at=1700000000 mode=auto # cuff"),
            Measurement::Nibp(Nibp {
                measured_at: Some(DeviceTime(1_700_000_000)),
                mode: NibpMode::Auto,
                ..expected
            })
        );
        let Measurement::Nibp(n) = measurement("nibp 128/82") else {
            panic!("not nibp")
        };
        assert_eq!(n.mean.validity, Validity::Unavailable);
        assert!(n.systolic.get().is_some());
        let Measurement::Nibp(n) = measurement("nibp - sensor_off") else {
            panic!("not nibp")
        };
        for s in [n.systolic, n.diastolic, n.mean] {
            assert_eq!(s.validity, Validity::SensorOff);
        }
        for bad in [
            "nibp 128",
            "nibp 128/82/97/1",
            "nibp 128//97",
            "nibp a/b",
            "nibp 120/80 (9x)",
        ] {
            assert!(
                matches!(parse_line(bad), Err(LineError::BadNibp(_))),
                "{bad}: {:?}",
                parse_line(bad)
            );
        }
        refused(&[
            ("hr 60 mode=auto", LineError::NibpOnlyOption("mode")),
            (
                "nibp 120/80 mode=sometimes",
                LineError::BadMode(Word::new("sometimes")),
            ),
        ]);
    }

    #[test]
    fn nibp_components_carry_their_own_validity() {
        let nibp = |line: &str| match measurement(line) {
            Measurement::Nibp(n) => [n.systolic, n.diastolic, n.mean].map(|s| s.validity),
            m => panic!("{line}: {m:?}"),
        };
        use Validity::*;
        // Real monitor shapes: the mean missing for a reason, or alone.
        assert_eq!(nibp("nibp 128/82/- mean=invalid"), [Valid, Valid, Invalid]);
        assert_eq!(nibp("nibp -/-/97"), [Unavailable, Unavailable, Valid]);
        assert_eq!(
            nibp("nibp 120/10/80 DIA=Artifact"),
            [Valid, Artifact, Valid]
        );
        // The line word is the default; a component option overrides it.
        assert_eq!(
            nibp("nibp 120/80/- questionable sys=valid"),
            [Valid, Questionable, Questionable]
        );
        let Measurement::Nibp(n) = measurement("nibp 120/10/80 dia=artifact") else {
            panic!("not nibp")
        };
        assert_eq!((n.diastolic.value, n.systolic.get()), (10.0, Some(120.0)));
        // Lines without the options read exactly as before.
        assert_eq!(nibp("nibp 128/82"), [Valid, Valid, Unavailable]);
        assert_eq!(nibp("nibp 1/2/3 artifact"), [Artifact; 3]);
        refused(&[
            ("hr 72 sys=valid", LineError::NibpOnlyOption("sys")),
            (
                "nibp 120/80 dia=wobbly",
                LineError::BadComponentValidity(Word::new("dia=wobbly")),
            ),
            ("nibp 120/- dia=valid", LineError::MissingButValid),
            (
                "nibp 1/2/3 mean=artifact mean=valid",
                LineError::DuplicateOption("mean"),
            ),
        ]);
    }

    #[test]
    fn encoder_writes_component_validities_only_when_they_differ() {
        let line = |n: Nibp| {
            let mut out = Vec::new();
            encode_measurement(&Measurement::Nibp(n), None, &mut out);
            String::from_utf8(out).unwrap()
        };
        let n = Nibp {
            systolic: valid(128.0),
            diastolic: valid(82.0),
            mean: Sample::missing(Validity::Invalid),
            measured_at: None,
            mode: NibpMode::Unknown,
        };
        assert_eq!(line(n), "nibp 128/82/- mean=invalid\n");
        let n = Nibp {
            diastolic: Sample::new(10.0, Validity::Artifact),
            mean: valid(50.0),
            ..n
        };
        assert_eq!(line(n), "nibp 128/10/50 dia=artifact\n");
        // One shared validity keeps the one-word form.
        let n = Nibp {
            systolic: Sample::new(1.0, Validity::Artifact),
            diastolic: Sample::new(2.0, Validity::Artifact),
            mean: Sample::missing(Validity::Artifact),
            ..n
        };
        assert_eq!(line(n), "nibp 1/2/- artifact\n");
        let n = Nibp {
            systolic: valid(128.0),
            diastolic: valid(82.0),
            mean: Sample::missing(Validity::Unavailable),
            ..n
        };
        assert_eq!(line(n), "nibp 128/82/-\n");
    }

    #[test]
    fn comments_blank_lines_and_line_endings_are_ignored() {
        let (out, d) = decode("# a comment\n\n   \r\n\t# another\rhr 60 # trailing\r\n");
        assert_eq!(out.len(), 1);
        assert_eq!(d.stats().frames_ok, 1);
        assert_eq!(d.stats().dropped_total(), 0);
    }

    #[test]
    fn bad_lines_are_counted_and_decoding_continues() {
        let (out, d) =
            decode("hr seventy\nbp 120/80\nhr 72 bpm\nhr\nhr 1e3\nhr nan\nhr inf\nhr 72\n");
        assert_eq!(d.stats().dropped[DropReason::Malformed.index()], 7);
        assert_eq!(d.stats().frames_ok, 1);
        assert_eq!(
            out.iter()
                .filter(|o| **o == Output::Dropped(DropReason::Malformed))
                .count(),
            7
        );
        assert!(matches!(out.last(), Some(Output::Reading(_))));
        assert_eq!(d.last_error(), Some(LineError::BadNumber(Word::new("inf"))));
        refused(&[
            ("bp 120/80", LineError::UnknownKeyword(Word::new("bp"))),
            ("hr 72 t=soon", LineError::BadTime(Word::new("soon"))),
            ("hr 72 x=1", LineError::UnknownOption(Word::new("x=1"))),
            ("hr 72 t=1 t=2", LineError::DuplicateOption("t")),
        ]);
    }

    #[test]
    fn non_utf8_and_binary_garbage_never_decode() {
        let mut d = VigilLine::new(SRC);
        let out = feed(
            &mut d,
            Instant::ZERO,
            b"hr \xff\xfe72\n\x00\x01\x02\nhr 72\n",
        );
        assert_eq!(out.len(), 3);
        assert_eq!(d.stats().dropped[DropReason::Malformed.index()], 2);
        assert_eq!(d.stats().frames_ok, 1);
    }

    #[test]
    fn oversized_line_is_dropped_once_and_next_line_decodes() {
        let mut d = VigilLine::new(SRC);
        let mut input = vec![b'x'; MAX_LINE * 3];
        input.extend_from_slice(b"\nhr 61\n");
        let out = feed(&mut d, Instant::ZERO, &input);
        assert_eq!(out.first(), Some(&Output::Dropped(DropReason::Oversized)));
        assert_eq!(out.len(), 2);
        assert_eq!(d.stats().dropped[DropReason::Oversized.index()], 1);
        assert_eq!(d.stats().dropped_total(), 1);
        assert_eq!(d.last_error(), Some(LineError::TooLong));
        // Exactly MAX_LINE bytes is still accepted.
        let mut line = b"hr 62".to_vec();
        line.resize(MAX_LINE, b' ');
        line.push(b'\n');
        let out = feed(&mut d, Instant::ZERO, &line);
        assert!(matches!(out.as_slice(), [Output::Reading(_)]));
    }

    #[test]
    fn versions_are_checked() {
        let (out, d) =
            decode("vigil-line 1\nhr 60\nvigil-line 2\nhr 61\nspo2 99\nvigil-line 1\nhr 62\n");
        assert_eq!(
            measurements(&out),
            vec![
                Measurement::HeartRate(valid(60.0)),
                Measurement::HeartRate(valid(62.0))
            ]
        );
        // The v2 header and the two lines after it.
        assert_eq!(d.stats().dropped[DropReason::Malformed.index()], 3);
        assert_eq!(d.rejected_version(), None);
        let (_, d) = decode("vigil-line 7\nhr 60\n");
        assert_eq!(d.rejected_version(), Some(7));
        assert_eq!(d.last_error(), Some(LineError::VersionRejected(7)));
        // The IO layer logs it through the trait, in words.
        let (_, d) = decode("hr 7o\n");
        let p: &dyn Protocol = &d;
        let why = p.drop_detail().map(|e| e.to_string()).unwrap_or_default();
        assert!(why.starts_with("bad number `7o`: write digits"), "{why}");
        refused(&[
            ("vigil-line", LineError::BadHeader),
            ("vigil-line one", LineError::BadHeader),
            ("vigil-line 1 2", LineError::BadHeader),
            ("vigil-line 99999999999999", LineError::BadHeader),
        ]);
    }

    #[test]
    fn error_messages_name_the_fix() {
        let msg = parse_line("hr 7o").unwrap_err().to_string();
        assert!(msg.contains("7o") && msg.contains("digits"), "{msg}");
        let msg = LineError::UnsupportedVersion(2).to_string();
        assert!(msg.contains("vigil-line 1"), "{msg}");
    }

    #[test]
    fn encoder_writes_what_the_spec_shows() {
        let mut snap = Snapshot::empty(DeviceTime(1_700_000_000));
        snap.heart_rate = valid(72.0);
        snap.spo2 = Sample::missing(Validity::SensorOff);
        snap.nibp = Some(Nibp {
            systolic: valid(128.0),
            diastolic: valid(82.0),
            mean: valid(97.0),
            measured_at: Some(DeviceTime(1_699_999_940)),
            mode: NibpMode::Auto,
        });
        let mut out = Vec::new();
        encode_header(&mut out);
        encode_snapshot(&snap, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "vigil-line 1\n\
             hr 72 t=1700000000\n\
             spo2 - sensor_off t=1700000000\n\
             nibp 128/82/97 at=1699999940 mode=auto t=1700000000\n"
        );
    }

    // -- property tests ------------------------------------------------------

    fn arb_validity() -> impl Strategy<Value = Validity> {
        proptest::sample::select(Validity::ALL.to_vec())
    }

    /// Samples the protocol represents exactly: a finite value with any
    /// validity, or no value with a non-valid reason.
    fn arb_sample() -> impl Strategy<Value = Sample> {
        prop_oneof![
            (-1000.0f32..1000.0).prop_map(Sample::valid),
            (0u16..400).prop_map(|v| Sample::valid(f32::from(v))),
            ((0.0f32..300.0), arb_validity()).prop_map(|(v, s)| Sample::new(v, s)),
            arb_validity()
                .prop_filter("missing is never valid", |v| !v.is_valid())
                .prop_map(Sample::missing),
        ]
    }

    fn arb_mode() -> impl Strategy<Value = NibpMode> {
        proptest::sample::select(vec![
            NibpMode::Unknown,
            NibpMode::Auto,
            NibpMode::Stat,
            NibpMode::Manual,
        ])
    }

    /// NIBP with one shared validity (what one line can say), some components
    /// possibly absent.
    fn arb_nibp() -> impl Strategy<Value = Nibp> {
        (
            proptest::collection::vec(proptest::option::of(0.0f32..300.0), 3),
            arb_validity(),
            proptest::option::of(0i64..4_000_000_000),
            arb_mode(),
        )
            .prop_filter("some value when valid", |(p, v, _, _)| {
                !v.is_valid() || p.iter().any(Option::is_some)
            })
            .prop_map(|(parts, validity, at, mode)| {
                let s = |p: Option<f32>| match p {
                    Some(x) => Sample::new(x, validity),
                    None if validity.is_valid() => Sample::missing(Validity::Unavailable),
                    None => Sample::missing(validity),
                };
                Nibp {
                    systolic: s(parts[0]),
                    diastolic: s(parts[1]),
                    mean: s(parts[2]),
                    measured_at: at.map(DeviceTime),
                    mode,
                }
            })
    }

    /// NIBP whose components each have their own validity (real monitor
    /// data: the mean missing or invalid while systolic and diastolic are
    /// valid, a single component flagged).
    fn arb_nibp_mixed() -> impl Strategy<Value = Nibp> {
        (
            [arb_sample(), arb_sample(), arb_sample()],
            proptest::option::of(0i64..4_000_000_000),
            arb_mode(),
        )
            .prop_map(|([systolic, diastolic, mean], at, mode)| Nibp {
                systolic,
                diastolic,
                mean,
                measured_at: at.map(DeviceTime),
                mode,
            })
    }

    fn arb_snapshot() -> impl Strategy<Value = Snapshot> {
        (
            arb_sample(),
            arb_sample(),
            arb_sample(),
            proptest::option::of(prop_oneof![arb_nibp(), arb_nibp_mixed()]),
            -10i64..5_000_000_000,
            (arb_sample(), arb_sample()),
        )
            .prop_map(|(hr, pr, spo2, nibp, t, breath)| {
                snapshot_of([hr, pr, spo2], nibp, DeviceTime(t), Some(breath))
            })
    }

    /// The readings a snapshot should decode to (NaN-free comparison form).
    fn expected(snapshot: &Snapshot) -> Vec<String> {
        let t = Some(snapshot.device_time);
        let mut v = Vec::new();
        for m in [
            Measurement::HeartRate(snapshot.heart_rate),
            Measurement::PulseRate(snapshot.pulse_rate),
            Measurement::SpO2(snapshot.spo2),
            Measurement::RespRate(snapshot.resp_rate),
            Measurement::EtCo2(snapshot.etco2),
        ] {
            v.push((m, t));
        }
        if let Some(n) = snapshot.nibp {
            v.push((Measurement::Nibp(n), t));
        }
        v.into_iter()
            .filter(|(m, _)| !matches!(m.continuous(), Some((_, s)) if is_unmeasured(s)))
            .map(|(m, t)| format!("{m:?} {t:?}"))
            .collect()
    }

    fn decoded(outputs: &[Output]) -> Vec<String> {
        outputs
            .iter()
            .map(|o| match o {
                Output::Reading(r) => format!("{:?} {:?}", r.measurement, r.device_time),
                other => format!("{other:?}"),
            })
            .collect()
    }

    proptest! {
        #[test]
        fn snapshots_round_trip(snap in arb_snapshot()) {
            let mut bytes = Vec::new();
            encode_snapshot(&snap, &mut bytes);
            let mut d = VigilLine::new(SRC);
            let out = feed(&mut d, Instant::ZERO, &bytes);
            prop_assert_eq!(decoded(&out), expected(&snap));
            prop_assert_eq!(d.stats().dropped_total(), 0);
        }

        #[test]
        fn chunking_does_not_change_outputs(
            snaps in proptest::collection::vec(arb_snapshot(), 1..6),
            noise in proptest::collection::vec(any::<u8>(), 0..40),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let mut bytes = noise;
            bytes.push(b'\n');
            encode_header(&mut bytes);
            for s in &snaps {
                encode_snapshot(s, &mut bytes);
            }
            cut_anywhere(|| VigilLine::new(SRC), Instant::ZERO, &bytes, &cuts)?;
        }

        #[test]
        fn arbitrary_bytes_never_panic_or_yield_non_finite_valid_values(
            bytes in proptest::collection::vec(any::<u8>(), 0..2000)
        ) {
            let mut d = VigilLine::new(SRC);
            valid_values_are_finite(&feed(&mut d, Instant::ZERO, &bytes), Checked::WithNibp)?;
            prop_assert_eq!(d.stats().bytes, bytes.len() as u64);
        }
    }
}
