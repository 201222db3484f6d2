//! GE/Datex-Ohmeda S/5 Computer Interface (DRI records): framing, the host's
//! request records, and decoding of the displayed physiological values
//! (HR, SpO2, pulse rate, NIBP, respiration rate, end-tidal CO2) a monitor
//! sends back.
//!
//! # Wire format
//!
//! A frame is `0x7E`, the byte-stuffed record followed by its checksum, and
//! `0x7E`. Stuffing replaces `0x7E` by `0x7D 0x5E` and `0x7D` by `0x7D 0x5D`.
//! The checksum is the 8-bit sum of the UNSTUFFED record bytes. A record is a
//! 40-byte little-endian header (length, time, main type, up to eight
//! subrecord descriptors ending at type `0xFF`) followed by subrecords whose
//! offsets count from byte 40.
//!
//! # Host side
//!
//! The monitor sends nothing until asked: [`GeS5`] queues a "displayed values
//! every N s" request at start and again the moment the link comes up
//! ([`Protocol::handle_link`]; a real monitor answers within a second), and
//! sends it again when no valid physiological record arrived for a while (the
//! monitor was switched off or rebooted and forgot the request). When the
//! link goes down, what was queued and any half-received frame are
//! forgotten. [`GeS5::stop`] asks the monitor to stop.
//!
//! # Validity decisions
//!
//! - A group whose "module exists" status bit is clear yields
//!   [`Validity::Unavailable`] (HR, SpO2, pulse rate) or no NIBP reading.
//! - A group whose "measurement active" bit is clear yields
//!   [`Validity::SensorOff`] for HR, SpO2 and pulse rate.
//! - ECG noise or artifact status bits yield [`Validity::Artifact`] for HR.
//! - Special values (<= -32001): -32767 invalid -> `Invalid`, -32766 not
//!   updated -> `Unavailable`, -32764 -> `UnderRange`, -32763 -> `OverRange`,
//!   -32762 not calibrated -> `Questionable` (there is no number behind it),
//!   any other -> `Invalid`. Other negative values are `Invalid`.
//! - Breathing: the CO2 group (basic class, data offset 132: `et`, `fi` in
//!   1/100 %, `rr` in 1/min, `amb_press` in 1/10 mmHg; its label bits 0..2
//!   name the RR source, 1 CO2, 2 ECG impedance). When the CO2 module
//!   exists, its `rr` is the respiration rate and etCO2 in mmHg is
//!   `et / 100 % x amb_press / 10` (a percentage of the ambient pressure);
//!   an ambient pressure that is no number makes etCO2 `Invalid`. Status
//!   bits as for the other groups: module absent, nothing; not active,
//!   `SensorOff`. An `rr` of "not updated" from an active module is
//!   `Unavailable`: the module measures but reports no rate (the engine's
//!   apnoea candidate). Status bit 2 is NOT read as apnoea: a real S/5
//!   capture has it set while the patient breathes 16 /min at 30 mmHg.
//!   Without a CO2 module the ECG group's impedance rate (`imp_rr`) is the
//!   respiration rate when it is a number; otherwise no RR is sent (an ECG
//!   without impedance respiration is not an RR problem).
//! - NIBP: while the cuff is busy (label bits "measuring", "stasis" or
//!   "calibrating") the numbers on screen are not a result, so no NIBP reading
//!   is emitted. The reading carries `measured_at` from the latest auxiliary
//!   subrecord (`nibp_time`, kept across records), which lets the engine tell
//!   a repeat from a new measurement. Mode: STAT bit -> `Stat`, AUTO bit ->
//!   `Auto`, neither -> `Manual`.
//! - Old NIBP ([`Validity::Old`], see [`AgeLimits`]): with a measurement time
//!   and a record time, an NIBP measured more than the NIBP limit (cycle +
//!   grace) before the record is old, whatever the label says. Without a
//!   measurement time the label's "data older than 60 s" bit decides: set
//!   before any unflagged result was seen on this connection, the result is
//!   from before we connected, of unknown age, and is old; set after one (a
//!   real monitor sets it on every repeat from 60 s after the measurement,
//!   see the real captures), it is that result again and no reading is
//!   emitted, as the engine could not tell it from a new one.
//! - HR, SpO2 and pulse rate of a displayed-values subrecord whose time is
//!   more than the continuous limit behind the record's time are old.
//! - Trend subrecords (10 s, 60 s) are never taken as current readings, and
//!   non-basic classes are skipped. Records with nothing we asked for
//!   (waveform records, r_maintype 1; alarm records; trend-only records) are
//!   well formed and counted in [`DecodeStats::ignored`], neither data
//!   (`frames_ok`) nor errors.
//!
//! Depends on [`crate::protocol`], [`crate::vitals`] and [`crate::time`] only.

use core::time::Duration;
use std::collections::VecDeque;

use crate::protocol::registry::{BoxedProtocol, HostRx, Monitor, MonitorIo, MAX_HOST_FRAME};
use crate::protocol::{AgeLimits, DecodeStats, DropReason, Output, Protocol, Snapshot};
use crate::time::Instant;
use crate::vitals::{DeviceTime, Measurement, Nibp, NibpMode, Reading, Sample, SourceId, Validity};

/// Frame delimiter.
pub const FLAG: u8 = 0x7E;
/// Stuffing escape byte.
const ESC: u8 = 0x7D;
/// Value XORed into an escaped byte.
const ESC_XOR: u8 = 0x20;

/// Largest record accepted (records are below 1500 bytes).
pub const MAX_RECORD_LEN: usize = 1500;
/// Length of the record header.
pub const HEADER_LEN: usize = 40;
/// Length of a physiological (displayed / trend) subrecord.
pub const PHDB_SUBRECORD_LEN: usize = 278;
/// Length of the auxiliary information subrecord.
pub const AUX_SUBRECORD_LEN: usize = 114;
/// Length of a physiological data request record.
pub const REQUEST_LEN: usize = 49;
/// Length of the record [`encode_displayed_values`] builds.
pub const DISPLAYED_RECORD_LEN: usize = HEADER_LEN + PHDB_SUBRECORD_LEN + AUX_SUBRECORD_LEN;

/// Class request bits of a request record: ask for the ext1, ext2 and ext3
/// classes on top of the basic one (basic is requested by a clear bit 0).
pub const CLASSES_ALL: u32 = 0x0000_000E;

const MAX_DESCRIPTORS: usize = 8;
const DESCRIPTORS_AT: usize = 16;
const EOL_SUBRECORD: u8 = 0xFF;
const MAINTYPE_PHDB: i16 = 0;
const SR_DISPLAYED: u8 = 1;
const SR_TREND_10S: u8 = 2;
const SR_TREND_60S: u8 = 3;
const SR_AUX_INFO: u8 = 4;
const CLASS_BASIC: u16 = 0;

const DATA_INVALID_LIMIT: i16 = -32001;
const DATA_INVALID: i16 = -32767;
const DATA_NOT_UPDATED: i16 = -32766;
const DATA_UNDER_RANGE: i16 = -32764;
const DATA_OVER_RANGE: i16 = -32763;
const DATA_NOT_CALIBRATED: i16 = -32762;

const STATUS_EXISTS: u32 = 1 << 0;
const STATUS_ACTIVE: u32 = 1 << 1;
const ECG_NOISE: u32 = 1 << 7;
const ECG_ARTIFACT: u32 = 1 << 8;
const NIBP_AUTO: u16 = 1 << 3;
const NIBP_STAT: u16 = 1 << 4;
const NIBP_MEASURING: u16 = 1 << 5;
const NIBP_STASIS: u16 = 1 << 6;
const NIBP_CALIBRATING: u16 = 1 << 7;
const NIBP_OLDER_THAN_60S: u16 = 1 << 8;

// Basic class: offsets from the start of the subrecord (data area at +4).
const SR_DATA: usize = 4;
const GROUP_HEADER: usize = 6;
const ECG_GROUP: usize = SR_DATA;
const INVP_GROUPS: [usize; 4] = [SR_DATA + 16, SR_DATA + 30, SR_DATA + 44, SR_DATA + 58];
const NIBP_GROUP: usize = SR_DATA + 72;
const TEMP_GROUPS: [usize; 4] = [SR_DATA + 86, SR_DATA + 94, SR_DATA + 102, SR_DATA + 110];
const SPO2_GROUP: usize = SR_DATA + 118;
const CO2_GROUP: usize = SR_DATA + 132;
/// CO2 group label bits 0..2: the respiration rate comes from the CO2
/// module.
const CO2_LABEL_RR_FROM_CO2: u16 = 1;
/// The ambient pressure a simulated monitor reports, mmHg (sea level; the
/// real capture db02 has 759.8).
const MONITOR_AMBIENT_MMHG: f32 = 760.0;
const SR_CLASS_WORD: usize = PHDB_SUBRECORD_LEN - 2;

/// Errors of the GE request builders.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GeError {
    /// The monitor sends displayed values at most every 5 s.
    #[error(
        "displayed values can be requested every {min} to {max} s, not every {0} s",
        min = MIN_DISPLAYED_INTERVAL_S,
        max = i16::MAX
    )]
    IntervalOutOfRange(u16),
}

/// Shortest interval the monitor accepts for displayed values, seconds.
pub const MIN_DISPLAYED_INTERVAL_S: u16 = 5;

/// Which physiological database records a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PhdbRecordType {
    /// The values the monitor displays.
    Displayed = 1,
    /// 10 s trend values.
    Trend10s = 2,
    /// 60 s trend values.
    Trend60s = 3,
    /// Auxiliary information (NIBP measurement time and the like).
    AuxInfo = 4,
}

/// A physiological data transmission request (host -> monitor).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhdbRequest {
    /// What to send.
    pub record_type: PhdbRecordType,
    /// Seconds between transmissions; -1 sends once, 0 stops.
    pub tx_interval: i16,
    /// Class request bits (see [`CLASSES_ALL`]); 0 requests the basic class.
    pub classes: u32,
}

impl PhdbRequest {
    /// Any request, unchecked.
    pub const fn new(record_type: PhdbRecordType, tx_interval: i16, classes: u32) -> Self {
        PhdbRequest {
            record_type,
            tx_interval,
            classes,
        }
    }

    /// Displayed values (all classes) every `secs` seconds (at least 5).
    pub fn displayed_every(secs: u16) -> Result<Self, GeError> {
        match i16::try_from(secs) {
            Ok(ival) if secs >= MIN_DISPLAYED_INTERVAL_S => {
                Ok(Self::new(PhdbRecordType::Displayed, ival, CLASSES_ALL))
            }
            _ => Err(GeError::IntervalOutOfRange(secs)),
        }
    }

    /// Displayed values (all classes), sent once.
    pub const fn displayed_once() -> Self {
        Self::new(PhdbRecordType::Displayed, -1, CLASSES_ALL)
    }

    /// Stop sending displayed values.
    pub const fn stop_displayed() -> Self {
        Self::new(PhdbRecordType::Displayed, 0, 0)
    }

    /// The unframed 49-byte request record.
    pub fn to_record(&self) -> [u8; REQUEST_LEN] {
        let mut r = [0u8; REQUEST_LEN];
        put_i16(&mut r, 0, REQUEST_LEN as i16);
        put_i16(&mut r, 14, MAINTYPE_PHDB);
        // Descriptor 0: offset 0, type 0 (transmission request); then the end.
        put_i16(&mut r, DESCRIPTORS_AT, 0);
        put_u8(&mut r, DESCRIPTORS_AT + 2, 0);
        put_u8(&mut r, DESCRIPTORS_AT + 5, EOL_SUBRECORD);
        put_u8(&mut r, HEADER_LEN, self.record_type as u8);
        put_i16(&mut r, HEADER_LEN + 1, self.tx_interval);
        put_u32(&mut r, HEADER_LEN + 3, self.classes);
        r
    }

    /// Appends the framed request to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        frame_record(&self.to_record(), out);
    }
}

/// Appends `record` framed (flags, stuffing, checksum) to `out`.
pub fn frame_record(record: &[u8], out: &mut Vec<u8>) {
    out.push(FLAG);
    let mut sum: u8 = 0;
    for &b in record {
        sum = sum.wrapping_add(b);
        push_stuffed(out, b);
    }
    push_stuffed(out, sum);
    out.push(FLAG);
}

fn push_stuffed(out: &mut Vec<u8>, b: u8) {
    if b == FLAG || b == ESC {
        out.push(ESC);
        out.push(b ^ ESC_XOR);
    } else {
        out.push(b);
    }
}

fn put_u8(buf: &mut [u8], at: usize, v: u8) {
    if let Some(slot) = buf.get_mut(at) {
        *slot = v;
    }
}

fn put_bytes(buf: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(slot) = at
        .checked_add(bytes.len())
        .and_then(|end| buf.get_mut(at..end))
    {
        slot.copy_from_slice(bytes);
    }
}

fn put_i16(buf: &mut [u8], at: usize, v: i16) {
    put_bytes(buf, at, &v.to_le_bytes());
}

fn put_u16(buf: &mut [u8], at: usize, v: u16) {
    put_bytes(buf, at, &v.to_le_bytes());
}

fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    put_bytes(buf, at, &v.to_le_bytes());
}

fn get<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn get_i16(buf: &[u8], at: usize) -> Option<i16> {
    get::<2>(buf, at).map(i16::from_le_bytes)
}

fn get_u16(buf: &[u8], at: usize) -> Option<u16> {
    get::<2>(buf, at).map(u16::from_le_bytes)
}

fn get_u32(buf: &[u8], at: usize) -> Option<u32> {
    get::<4>(buf, at).map(u32::from_le_bytes)
}

/// The raw basic-class fields this decoder uses, as they are on the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct BasicRaw {
    ecg_status: u32,
    hr: i16,
    nibp_status: u32,
    nibp_label: u16,
    sys: i16,
    dia: i16,
    mean: i16,
    spo2_status: u32,
    spo2: i16,
    pr: i16,
    /// ECG impedance respiration rate, 1/min.
    imp_rr: i16,
    co2_status: u32,
    co2_label: u16,
    /// End-tidal CO2, 1/100 %.
    co2_et: i16,
    /// Inspired CO2, 1/100 % (carried, not a vital).
    co2_fi: i16,
    /// Respiration rate of the CO2 group's source, 1/min.
    co2_rr: i16,
    /// Ambient pressure, 1/10 mmHg.
    co2_amb: i16,
}

impl BasicRaw {
    fn read(sr: &[u8]) -> Option<BasicRaw> {
        Some(BasicRaw {
            ecg_status: get_u32(sr, ECG_GROUP)?,
            hr: get_i16(sr, ECG_GROUP + GROUP_HEADER)?,
            nibp_status: get_u32(sr, NIBP_GROUP)?,
            nibp_label: get_u16(sr, NIBP_GROUP + 4)?,
            sys: get_i16(sr, NIBP_GROUP + GROUP_HEADER)?,
            dia: get_i16(sr, NIBP_GROUP + GROUP_HEADER + 2)?,
            mean: get_i16(sr, NIBP_GROUP + GROUP_HEADER + 4)?,
            spo2_status: get_u32(sr, SPO2_GROUP)?,
            spo2: get_i16(sr, SPO2_GROUP + GROUP_HEADER)?,
            pr: get_i16(sr, SPO2_GROUP + GROUP_HEADER + 2)?,
            imp_rr: get_i16(sr, ECG_GROUP + GROUP_HEADER + 8)?,
            co2_status: get_u32(sr, CO2_GROUP)?,
            co2_label: get_u16(sr, CO2_GROUP + 4)?,
            co2_et: get_i16(sr, CO2_GROUP + GROUP_HEADER)?,
            co2_fi: get_i16(sr, CO2_GROUP + GROUP_HEADER + 2)?,
            co2_rr: get_i16(sr, CO2_GROUP + GROUP_HEADER + 4)?,
            co2_amb: get_i16(sr, CO2_GROUP + GROUP_HEADER + 6)?,
        })
    }

    /// Writes a whole basic displayed-values subrecord into `sr`
    /// ([`PHDB_SUBRECORD_LEN`] bytes). Groups this decoder does not use are
    /// marked absent with invalid values.
    fn write(&self, sr: &mut [u8], time: u32) {
        sr.fill(0);
        put_u32(sr, 0, time);
        // ECG: hr, st1, st2, st3, imp_rr.
        put_u32(sr, ECG_GROUP, self.ecg_status);
        put_i16(sr, ECG_GROUP + GROUP_HEADER, self.hr);
        for k in 1..4 {
            put_i16(sr, ECG_GROUP + GROUP_HEADER + 2 * k, DATA_INVALID);
        }
        put_i16(sr, ECG_GROUP + GROUP_HEADER + 8, self.imp_rr);
        for g in INVP_GROUPS {
            for k in 0..4 {
                put_i16(sr, g + GROUP_HEADER + 2 * k, DATA_INVALID);
            }
        }
        put_u32(sr, NIBP_GROUP, self.nibp_status);
        put_u16(sr, NIBP_GROUP + 4, self.nibp_label);
        put_i16(sr, NIBP_GROUP + GROUP_HEADER, self.sys);
        put_i16(sr, NIBP_GROUP + GROUP_HEADER + 2, self.dia);
        put_i16(sr, NIBP_GROUP + GROUP_HEADER + 4, self.mean);
        put_i16(sr, NIBP_GROUP + GROUP_HEADER + 6, DATA_INVALID);
        for g in TEMP_GROUPS {
            put_i16(sr, g + GROUP_HEADER, DATA_INVALID);
        }
        put_u32(sr, SPO2_GROUP, self.spo2_status);
        put_i16(sr, SPO2_GROUP + GROUP_HEADER, self.spo2);
        put_i16(sr, SPO2_GROUP + GROUP_HEADER + 2, self.pr);
        put_i16(sr, SPO2_GROUP + GROUP_HEADER + 4, DATA_INVALID);
        put_i16(sr, SPO2_GROUP + GROUP_HEADER + 6, DATA_INVALID);
        put_u32(sr, CO2_GROUP, self.co2_status);
        put_u16(sr, CO2_GROUP + 4, self.co2_label);
        put_i16(sr, CO2_GROUP + GROUP_HEADER, self.co2_et);
        put_i16(sr, CO2_GROUP + GROUP_HEADER + 2, self.co2_fi);
        put_i16(sr, CO2_GROUP + GROUP_HEADER + 4, self.co2_rr);
        put_i16(sr, CO2_GROUP + GROUP_HEADER + 6, self.co2_amb);
        // marker, reserved, then class (bits 8..11) and subtype.
        put_u16(
            sr,
            SR_CLASS_WORD,
            (CLASS_BASIC << 8) | u16::from(SR_DISPLAYED),
        );
    }

    fn from_snapshot(s: &Snapshot) -> BasicRaw {
        let present = STATUS_EXISTS | STATUS_ACTIVE;
        let ecg_status = match s.heart_rate.validity {
            Validity::SensorOff => STATUS_EXISTS,
            Validity::Artifact => present | ECG_ARTIFACT,
            _ => present,
        };
        let spo2_off =
            s.spo2.validity == Validity::SensorOff || s.pulse_rate.validity == Validity::SensorOff;
        let spo2_status = if spo2_off { STATUS_EXISTS } else { present };
        let (nibp_status, nibp_label, sys, dia, mean) = match s.nibp {
            None => (0, 0, DATA_INVALID, DATA_INVALID, DATA_INVALID),
            Some(n) => {
                let label = match n.mode {
                    NibpMode::Auto => NIBP_AUTO,
                    NibpMode::Stat => NIBP_STAT,
                    NibpMode::Manual | NibpMode::Unknown => 0,
                };
                (
                    present,
                    label,
                    encode_value(n.systolic, 100.0),
                    encode_value(n.diastolic, 100.0),
                    encode_value(n.mean, 100.0),
                )
            }
        };
        BasicRaw {
            ecg_status,
            hr: encode_value(s.heart_rate, 1.0),
            nibp_status,
            nibp_label,
            sys,
            dia,
            mean,
            spo2_status,
            spo2: encode_value(s.spo2, 100.0),
            pr: encode_value(s.pulse_rate, 1.0),
            // No impedance respiration: a monitor with a CO2 module shows
            // the capnograph's rate, and one without sends nothing.
            imp_rr: DATA_INVALID,
            ..BasicRaw::co2_group(s)
        }
    }

    /// The CO2 group fields for `s`: absent (all zero, the bytes
    /// simulations have always sent) without breathing; otherwise laid out
    /// as the real capture db02 has them (module present and active, RR
    /// source CO2, `et` in 1/100 % of the ambient pressure, `fi` 0 for room
    /// air, `rr` in 1/min, `amb_press` in 1/10 mmHg). The other status and
    /// label bits db02 sets (status 0x104, label 0x08) are undocumented in
    /// the decoder's sources and left clear.
    fn co2_group(s: &Snapshot) -> BasicRaw {
        let mut raw = BasicRaw::default();
        if !s.has_breathing() {
            return raw;
        }
        let off =
            s.resp_rate.validity == Validity::SensorOff || s.etco2.validity == Validity::SensorOff;
        raw.co2_status = if off {
            STATUS_EXISTS
        } else {
            STATUS_EXISTS | STATUS_ACTIVE
        };
        raw.co2_label = CO2_LABEL_RR_FROM_CO2;
        // etCO2 in % of the ambient pressure, as the module measures it.
        let percent = Sample {
            value: s.etco2.value / MONITOR_AMBIENT_MMHG * 100.0,
            validity: s.etco2.validity,
        };
        raw.co2_et = encode_value(percent, 100.0);
        raw.co2_rr = encode_value(s.resp_rate, 1.0);
        raw.co2_amb = encode_value(Sample::valid(MONITOR_AMBIENT_MMHG), 10.0);
        raw
    }
}

/// The wire value for a sample: the scaled value when valid, else the
/// special value closest to its validity.
fn encode_value(s: Sample, scale: f32) -> i16 {
    match s.validity {
        // A monitor sends an old value as it is (its age is in the label).
        Validity::Valid | Validity::Old => {
            let x = (s.value * scale).round();
            if !x.is_finite() {
                DATA_INVALID
            } else if x < 0.0 {
                DATA_UNDER_RANGE
            } else if x > f32::from(i16::MAX) {
                DATA_OVER_RANGE
            } else {
                x as i16
            }
        }
        Validity::Invalid | Validity::Artifact => DATA_INVALID,
        Validity::Unavailable | Validity::SensorOff => DATA_NOT_UPDATED,
        Validity::UnderRange => DATA_UNDER_RANGE,
        Validity::OverRange => DATA_OVER_RANGE,
        Validity::Questionable => DATA_NOT_CALIBRATED,
    }
}

/// The validity a special value (<= -32001) stands for.
fn special_validity(raw: i16) -> Option<Validity> {
    if raw > DATA_INVALID_LIMIT {
        return None;
    }
    Some(match raw {
        DATA_NOT_UPDATED => Validity::Unavailable,
        DATA_UNDER_RANGE => Validity::UnderRange,
        DATA_OVER_RANGE => Validity::OverRange,
        DATA_NOT_CALIBRATED => Validity::Questionable,
        _ => Validity::Invalid,
    })
}

/// A wire value as a sample in canonical units (`raw / divisor`).
fn decode_value(raw: i16, divisor: f32, status: u32, artifact: bool) -> Sample {
    if status & STATUS_EXISTS == 0 {
        return Sample::missing(Validity::Unavailable);
    }
    if status & STATUS_ACTIVE == 0 {
        return Sample::missing(Validity::SensorOff);
    }
    let value = match special_validity(raw) {
        Some(_) if artifact => return Sample::missing(Validity::Artifact),
        Some(v) => return Sample::missing(v),
        None if raw < 0 => return Sample::missing(Validity::Invalid),
        None => f32::from(raw) / divisor,
    };
    if artifact {
        Sample::new(value, Validity::Artifact)
    } else {
        Sample::valid(value)
    }
}

/// The respiration rate and etCO2 of a basic subrecord (see the module
/// doc): `None` where the monitor has no such measurement.
fn breathing(b: &BasicRaw) -> (Option<Sample>, Option<Sample>) {
    if b.co2_status & STATUS_EXISTS == 0 {
        // No capnograph: the ECG impedance rate when it is a number.
        let imp = decode_value(b.imp_rr, 1.0, b.ecg_status, false);
        return (imp.validity.is_valid().then_some(imp), None);
    }
    let rr = decode_value(b.co2_rr, 1.0, b.co2_status, false);
    let et = decode_value(b.co2_et, 100.0, b.co2_status, false);
    let amb = decode_value(b.co2_amb, 10.0, b.co2_status, false);
    let etco2 = match (et.get(), amb.get()) {
        (Some(pct), Some(p)) if p > 0.0 => Sample::valid(pct / 100.0 * p),
        (Some(_), _) => Sample::missing(Validity::Invalid),
        (None, _) => et,
    };
    (Some(rr), Some(etco2))
}

/// What one record told us.
#[derive(Clone, Copy, Debug, Default)]
struct ParsedRecord {
    device_time: Option<DeviceTime>,
    /// `Some(t)` when an auxiliary subrecord was present (`t` its NIBP time).
    aux_nibp_time: Option<Option<DeviceTime>>,
    basic: Option<BasicRaw>,
    /// The time of the displayed-values subrecord `basic` came from.
    basic_time: Option<DeviceTime>,
    /// A physiological database record (as opposed to waveform, alarm...).
    phdb: bool,
    /// A displayed-values or auxiliary subrecord was present: the record
    /// carries what we asked for (a trend-only record does not).
    current: bool,
}

/// Checks and parses one unstuffed frame (record + checksum).
fn parse_frame(frame: &[u8]) -> Result<ParsedRecord, DropReason> {
    let n = frame.len();
    if n < HEADER_LEN + 1 {
        return Err(DropReason::Truncated);
    }
    let r_len = get_i16(frame, 0).ok_or(DropReason::Truncated)?;
    let r_len = usize::try_from(r_len).map_err(|_| DropReason::Malformed)?;
    if r_len < HEADER_LEN {
        return Err(DropReason::Malformed);
    }
    let expected = r_len + 1;
    if n < expected {
        return Err(DropReason::Truncated);
    }
    if n > expected {
        return Err(DropReason::Malformed);
    }
    let (record, checksum) = frame.split_at(r_len);
    let sum = record.iter().fold(0u8, |a, &b| a.wrapping_add(b));
    if checksum.first() != Some(&sum) {
        return Err(DropReason::Checksum);
    }
    parse_record(record)
}

/// Parses a checked record. Waveform, alarm and other records parse to an
/// empty result.
fn parse_record(record: &[u8]) -> Result<ParsedRecord, DropReason> {
    let mut parsed = ParsedRecord::default();
    let maintype = get_i16(record, 14).ok_or(DropReason::Malformed)?;
    if maintype != MAINTYPE_PHDB {
        return Ok(parsed);
    }
    parsed.phdb = true;
    let r_time = get_u32(record, 6).ok_or(DropReason::Malformed)?;
    parsed.device_time = (r_time != 0).then_some(DeviceTime(i64::from(r_time)));
    for i in 0..MAX_DESCRIPTORS {
        let at = DESCRIPTORS_AT + 3 * i;
        let sr_type = *record.get(at + 2).ok_or(DropReason::Malformed)?;
        if sr_type == EOL_SUBRECORD {
            break;
        }
        let len = match sr_type {
            SR_DISPLAYED => PHDB_SUBRECORD_LEN,
            SR_AUX_INFO => AUX_SUBRECORD_LEN,
            // Trend values are averages of the past, never current readings.
            SR_TREND_10S | SR_TREND_60S => continue,
            _ => continue, // requests and types we do not know: not ours
        };
        parsed.current = true;
        let offset = get_i16(record, at).ok_or(DropReason::Malformed)?;
        let start = usize::try_from(offset)
            .ok()
            .and_then(|o| o.checked_add(HEADER_LEN))
            .ok_or(DropReason::Malformed)?;
        let sr = start
            .checked_add(len)
            .and_then(|end| record.get(start..end))
            .ok_or(DropReason::Malformed)?;
        if sr_type == SR_AUX_INFO {
            let t = get_u32(sr, 0).ok_or(DropReason::Malformed)?;
            parsed.aux_nibp_time = Some((t != 0).then_some(DeviceTime(i64::from(t))));
        } else {
            let class = (get_u16(sr, SR_CLASS_WORD).ok_or(DropReason::Malformed)? >> 8) & 0x0F;
            if class == CLASS_BASIC {
                parsed.basic = Some(BasicRaw::read(sr).ok_or(DropReason::Malformed)?);
                let t = get_u32(sr, 0).ok_or(DropReason::Malformed)?;
                parsed.basic_time = (t != 0).then_some(DeviceTime(i64::from(t)));
            }
        }
    }
    Ok(parsed)
}

/// Builds the unframed displayed-values record a monitor would send for
/// `snapshot`: one basic-class displayed-values subrecord plus an auxiliary
/// subrecord carrying the NIBP measurement time.
fn build_displayed_record(raw: &BasicRaw, time: u32, nibp_time: u32) -> [u8; DISPLAYED_RECORD_LEN] {
    let mut r = [0u8; DISPLAYED_RECORD_LEN];
    put_i16(&mut r, 0, DISPLAYED_RECORD_LEN as i16);
    put_u32(&mut r, 6, time);
    put_i16(&mut r, 14, MAINTYPE_PHDB);
    put_i16(&mut r, DESCRIPTORS_AT, 0);
    put_u8(&mut r, DESCRIPTORS_AT + 2, SR_DISPLAYED);
    put_i16(&mut r, DESCRIPTORS_AT + 3, PHDB_SUBRECORD_LEN as i16);
    put_u8(&mut r, DESCRIPTORS_AT + 5, SR_AUX_INFO);
    put_u8(&mut r, DESCRIPTORS_AT + 8, EOL_SUBRECORD);
    if let Some(sr) = r.get_mut(HEADER_LEN..HEADER_LEN + PHDB_SUBRECORD_LEN) {
        raw.write(sr, time);
    }
    put_u32(&mut r, HEADER_LEN + PHDB_SUBRECORD_LEN, nibp_time);
    r
}

fn device_time_u32(t: Option<DeviceTime>) -> u32 {
    t.and_then(|t| u32::try_from(t.0).ok()).unwrap_or(0)
}

/// Appends to `out` the framed displayed-values record a monitor would send
/// for `snapshot` (monitor side, for simulators and tests).
///
/// Values are rounded to the protocol's resolution (1/min, 0.01 %, 0.01 mmHg);
/// non-valid samples become the closest special value. GE has no per-value
/// artifact flag outside ECG, so an SpO2 or pulse-rate artifact is sent as
/// invalid; sensor-off of SpO2 or pulse rate clears the shared SpO2 group's
/// "active" bit. Breathing (RR, etCO2) goes in the CO2 group when the
/// snapshot has any, with etCO2 as a percentage of a 760.0 mmHg ambient
/// pressure (0.01 % resolution: about 0.08 mmHg); without it the CO2 group
/// is absent, as from a monitor with no capnograph.
pub fn encode_displayed_values(snapshot: &Snapshot, out: &mut Vec<u8>) {
    let raw = BasicRaw::from_snapshot(snapshot);
    let nibp_time = device_time_u32(snapshot.nibp.and_then(|n| n.measured_at));
    let record =
        build_displayed_record(&raw, device_time_u32(Some(snapshot.device_time)), nibp_time);
    frame_record(&record, out);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RxState {
    /// No flag seen yet: bytes are garbage.
    Unsynced,
    /// Collecting a frame.
    InFrame,
    /// An oversized frame: skipping to the next flag.
    Discarding,
}

/// Host-side GE S/5 decoder: requests displayed values, decodes them, and
/// re-requests when the monitor falls silent.
#[derive(Debug)]
pub struct GeS5 {
    source: SourceId,
    request: PhdbRequest,
    resend_after: Duration,
    rx: RxState,
    escaped: bool,
    garbage_run: bool,
    frame: Vec<u8>,
    outputs: VecDeque<Output>,
    transmit: VecDeque<PhdbRequest>,
    /// When to re-send the request; `None` until the first timeout call.
    deadline: Option<Instant>,
    stopped: bool,
    nibp_time: Option<DeviceTime>,
    /// A completed NIBP without the "older than 60 s" flag was seen since
    /// the link came up: a flagged one after it is that measurement again.
    nibp_fresh_seen: bool,
    ages: AgeLimits,
    resends: u64,
    stats: DecodeStats,
}

impl GeS5 {
    /// A decoder for `source` that requests displayed values every
    /// `interval_s` seconds (at least 5). The request is queued for
    /// [`Protocol::poll_transmit`] right away.
    pub fn new(source: SourceId, interval_s: u16) -> Result<Self, GeError> {
        let request = PhdbRequest::displayed_every(interval_s)?;
        let resend_after =
            Duration::from_secs(u64::from(interval_s) * 3).max(Duration::from_secs(15));
        let mut transmit = VecDeque::with_capacity(4);
        transmit.push_back(request);
        Ok(GeS5 {
            source,
            request,
            resend_after,
            rx: RxState::Unsynced,
            escaped: false,
            garbage_run: false,
            frame: Vec::with_capacity(MAX_RECORD_LEN + 1),
            outputs: VecDeque::with_capacity(64),
            transmit,
            deadline: None,
            stopped: false,
            nibp_time: None,
            nibp_fresh_seen: false,
            ages: AgeLimits::default(),
            resends: 0,
            stats: DecodeStats::default(),
        })
    }

    /// Re-send the request when no valid physiological record arrived for
    /// `d` (default: three intervals, at least 15 s; at least 1 s).
    pub fn with_resend_after(mut self, d: Duration) -> Self {
        self.resend_after = d.max(Duration::from_secs(1));
        self
    }

    /// How old a value may be, by the monitor's clock, and still be taken as
    /// current (default: [`AgeLimits::default`]).
    pub fn with_age_limits(mut self, ages: AgeLimits) -> Self {
        self.ages = ages;
        self
    }

    /// Asks the monitor to stop sending and stops re-requesting.
    pub fn stop(&mut self) {
        self.transmit.clear();
        self.transmit.push_back(PhdbRequest::stop_displayed());
        self.stopped = true;
        self.deadline = None;
    }

    /// How often the request was re-sent because the monitor was silent.
    pub fn resends(&self) -> u64 {
        self.resends
    }

    fn drop_frame(&mut self, reason: DropReason) {
        self.stats.count_drop(reason);
        self.outputs.push_back(Output::Dropped(reason));
    }

    fn start_frame(&mut self) {
        self.rx = RxState::InFrame;
        self.frame.clear();
        self.escaped = false;
        self.garbage_run = false;
    }

    fn push_byte(&mut self, now: Instant, b: u8) {
        match self.rx {
            RxState::Unsynced => {
                if b == FLAG {
                    self.start_frame();
                } else if !self.garbage_run {
                    self.garbage_run = true;
                    self.drop_frame(DropReason::Garbage);
                }
            }
            RxState::Discarding => {
                if b == FLAG {
                    self.start_frame();
                }
            }
            RxState::InFrame => {
                if b == FLAG {
                    if self.escaped {
                        self.drop_frame(DropReason::Truncated);
                    } else if !self.frame.is_empty() {
                        self.finish_frame(now);
                    }
                    // A closing flag may also open the next frame.
                    self.start_frame();
                } else if b == ESC {
                    self.escaped = true;
                } else {
                    let v = if self.escaped { b ^ ESC_XOR } else { b };
                    self.escaped = false;
                    if self.frame.len() > MAX_RECORD_LEN {
                        self.drop_frame(DropReason::Oversized);
                        self.frame.clear();
                        self.rx = RxState::Discarding;
                    } else {
                        self.frame.push(v);
                    }
                }
            }
        }
    }

    fn finish_frame(&mut self, now: Instant) {
        match parse_frame(&self.frame) {
            Err(reason) => self.drop_frame(reason),
            Ok(p) => {
                if !p.current {
                    // Waveform, alarm or trend-only records: well formed,
                    // not what we asked for; neither data nor errors.
                    self.stats.ignored += 1;
                    return;
                }
                self.stats.frames_ok += 1;
                if !self.stopped {
                    self.deadline = Some(now + self.resend_after);
                }
                if let Some(t) = p.aux_nibp_time {
                    self.nibp_time = t;
                }
                if let Some(b) = p.basic {
                    self.emit_basic(now, p.device_time, p.basic_time, &b);
                }
            }
        }
    }

    fn emit_basic(
        &mut self,
        now: Instant,
        device_time: Option<DeviceTime>,
        values_time: Option<DeviceTime>,
        b: &BasicRaw,
    ) {
        // Values stamped far behind the record's clock are resent, not current.
        let old = match (values_time, device_time) {
            (Some(at), Some(clock)) => AgeLimits::is_old(self.ages.continuous, at, clock),
            _ => false,
        };
        let aged = |s: Sample| if old { s.into_old() } else { s };
        let nibp = self.nibp(b, device_time);
        let reading = |measurement| {
            Output::Reading(Reading {
                source: self.source,
                arrival: now,
                device_time,
                measurement,
            })
        };
        let artifact = b.ecg_status & (ECG_NOISE | ECG_ARTIFACT) != 0;
        let hr = reading(Measurement::HeartRate(aged(decode_value(
            b.hr,
            1.0,
            b.ecg_status,
            artifact,
        ))));
        let spo2 = reading(Measurement::SpO2(aged(decode_value(
            b.spo2,
            100.0,
            b.spo2_status,
            false,
        ))));
        let pr = reading(Measurement::PulseRate(aged(decode_value(
            b.pr,
            1.0,
            b.spo2_status,
            false,
        ))));
        let nibp = nibp.map(|n| reading(Measurement::Nibp(n)));
        let (rr, etco2) = breathing(b);
        self.outputs.push_back(hr);
        self.outputs.push_back(spo2);
        self.outputs.push_back(pr);
        if let Some(n) = nibp {
            self.outputs.push_back(n);
        }
        if let Some(s) = rr {
            self.outputs
                .push_back(reading(Measurement::RespRate(aged(s))));
        }
        if let Some(s) = etco2 {
            self.outputs.push_back(reading(Measurement::EtCo2(aged(s))));
        }
    }

    /// The NIBP reading of a basic subrecord, if it is one (see the module
    /// doc); `clock` is the record's time.
    fn nibp(&mut self, b: &BasicRaw, clock: Option<DeviceTime>) -> Option<Nibp> {
        if b.nibp_status & STATUS_EXISTS == 0 {
            return None;
        }
        if b.nibp_label & (NIBP_MEASURING | NIBP_STASIS | NIBP_CALIBRATING) != 0 {
            return None;
        }
        let flagged = b.nibp_label & NIBP_OLDER_THAN_60S != 0;
        let old = match (self.nibp_time, clock) {
            // The measurement time, when the monitor sends it, decides.
            (Some(at), Some(clock)) => AgeLimits::is_old(self.ages.nibp, at, clock),
            // Flagged at connect: a result from before we came, of unknown
            // age. Flagged after a fresh one: that one again, which the
            // engine could not tell from a new one without a time.
            _ if flagged && self.nibp_fresh_seen && self.nibp_time.is_none() => return None,
            _ => flagged,
        };
        if !flagged {
            self.nibp_fresh_seen = true;
        }
        // The active bit says nothing about a finished NIBP measurement.
        let status = b.nibp_status | STATUS_ACTIVE;
        let mode = if b.nibp_label & NIBP_STAT != 0 {
            NibpMode::Stat
        } else if b.nibp_label & NIBP_AUTO != 0 {
            NibpMode::Auto
        } else {
            NibpMode::Manual
        };
        let nibp = Nibp {
            systolic: decode_value(b.sys, 100.0, status, false),
            diastolic: decode_value(b.dia, 100.0, status, false),
            mean: decode_value(b.mean, 100.0, status, false),
            measured_at: self.nibp_time,
            mode,
        };
        Some(if old { nibp.into_old() } else { nibp })
    }
}

impl Protocol for GeS5 {
    fn handle_bytes(&mut self, now: Instant, bytes: &[u8]) {
        self.stats.bytes = self.stats.bytes.wrapping_add(bytes.len() as u64);
        for &b in bytes {
            self.push_byte(now, b);
        }
    }

    fn handle_link(&mut self, now: Instant, up: bool) {
        // Whatever was queued was meant for the previous connection.
        self.transmit.clear();
        self.rx = RxState::Unsynced;
        self.frame.clear();
        self.escaped = false;
        self.garbage_run = false;
        // A new connection: the monitor's NIBP may be from before it.
        self.nibp_fresh_seen = false;
        if self.stopped {
            return;
        }
        if up {
            self.transmit.push_back(self.request);
            self.deadline = Some(now + self.resend_after);
        } else {
            self.deadline = None;
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.stopped {
            return;
        }
        match self.deadline {
            None => self.deadline = Some(now + self.resend_after),
            Some(d) if now >= d => {
                if !self.transmit.contains(&self.request) {
                    self.transmit.push_back(self.request);
                }
                self.resends = self.resends.wrapping_add(1);
                self.deadline = Some(now + self.resend_after);
            }
            Some(_) => {}
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool {
        match self.transmit.pop_front() {
            Some(req) => {
                req.encode(out);
                true
            }
            None => false,
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.stopped {
            None
        } else {
            // Unarmed: ask to be called at once so the timer can start.
            Some(self.deadline.unwrap_or(Instant::ZERO))
        }
    }

    fn stats(&self) -> DecodeStats {
        self.stats
    }
}

// ----- registry: host side and monitor side ---------------------------------

/// The host side for the registry: the decoder asking for displayed values
/// at the shortest interval the monitor allows.
pub fn open(source: SourceId, ages: AgeLimits) -> BoxedProtocol {
    Box::new(
        GeS5::new(source, MIN_DISPLAYED_INTERVAL_S)
            .expect("the minimum interval is a valid request")
            .with_age_limits(ages),
    )
}

/// The monitor side, for simulated devices: nothing until a request record
/// asks; then displayed values at the requested interval (at least
/// [`MIN_DISPLAYED_INTERVAL_S`]), once for `-1`, stop for `0`.
#[derive(Debug, Default)]
pub struct GeMonitor {
    rx: HostRx,
    interval: Option<Duration>,
    next: Option<Instant>,
}

impl GeMonitor {
    /// A fresh monitor side for the registry.
    pub fn boxed() -> Box<dyn Monitor> {
        Box::new(GeMonitor::default())
    }

    fn request(&mut self, now: Instant, req: PhdbRequest, io: &mut dyn MonitorIo) {
        if req.record_type != PhdbRecordType::Displayed {
            return;
        }
        io.host_message();
        match req.tx_interval {
            0 => {
                self.interval = None;
                self.next = None;
            }
            ival if ival < 0 => {
                self.interval = None;
                self.next = Some(now);
            }
            ival => {
                let secs = (ival as u16).max(MIN_DISPLAYED_INTERVAL_S);
                self.interval = Some(Duration::from_secs(u64::from(secs)));
                self.next = Some(now);
            }
        }
    }
}

impl Monitor for GeMonitor {
    fn stream_rate(&self) -> Option<u64> {
        None
    }

    fn frame(&mut self, _t: Instant, snap: &Snapshot, _fresh: bool, out: &mut Vec<u8>) {
        encode_displayed_values(snap, out);
    }

    fn sending(&self) -> bool {
        self.interval.is_some()
    }

    /// Unstuffs frames between flags and acts on request records.
    fn handle_host_byte(&mut self, now: Instant, b: u8, io: &mut dyn MonitorIo) {
        const ESC: u8 = 0x7D;
        if b == FLAG {
            if self.rx.in_frame && !self.rx.buf.is_empty() {
                if let Some(req) = parse_host_request(&self.rx.buf) {
                    self.request(now, req, io);
                }
            }
            self.rx.buf.clear();
            self.rx.in_frame = true;
            self.rx.escaped = false;
        } else if !self.rx.in_frame {
            // Outside a frame: noise.
        } else if b == ESC {
            self.rx.escaped = true;
        } else if self.rx.buf.len() >= MAX_HOST_FRAME {
            self.rx.reset();
        } else {
            let v = if self.rx.escaped { b ^ 0x20 } else { b };
            self.rx.escaped = false;
            self.rx.buf.push(v);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.next
    }

    fn handle_timeout(&mut self, t: Instant, io: &mut dyn MonitorIo) {
        self.next = self.interval.map(|iv| t + iv);
        let mut frame = Vec::with_capacity(DISPLAYED_RECORD_LEN + 16);
        encode_displayed_values(&io.snapshot(t), &mut frame);
        io.send_frame(t, frame);
    }

    fn power_off(&mut self) {
        self.interval = None;
        self.next = None;
        self.rx.reset();
    }
}

/// A GE request record from an unstuffed frame (record + checksum), if the
/// frame is one (also used by `vigil-sim`'s capture emulator).
pub fn parse_host_request(frame: &[u8]) -> Option<PhdbRequest> {
    let (&checksum, record) = frame.split_last()?;
    if record.iter().fold(0u8, |a, &b| a.wrapping_add(b)) != checksum {
        return None;
    }
    let i16_at = |at: usize| Some(i16::from_le_bytes(record.get(at..at + 2)?.try_into().ok()?));
    if usize::try_from(i16_at(0)?).ok()? != record.len() || i16_at(14)? != 0 {
        return None;
    }
    const HEADER: usize = HEADER_LEN;
    for d in 0..8 {
        let desc = 16 + 3 * d;
        let sr_type = *record.get(desc + 2)?;
        if sr_type == 0xFF {
            break;
        }
        if sr_type != 0 {
            continue;
        }
        let start = HEADER + usize::try_from(i16_at(desc)?).ok()?;
        let sr = record.get(start..start + 7)?;
        let record_type = match sr[0] {
            1 => PhdbRecordType::Displayed,
            2 => PhdbRecordType::Trend10s,
            3 => PhdbRecordType::Trend60s,
            4 => PhdbRecordType::AuxInfo,
            _ => return None,
        };
        let tx_interval = i16::from_le_bytes([sr[1], sr[2]]);
        let classes = u32::from_le_bytes([sr[3], sr[4], sr[5], sr[6]]);
        return Some(PhdbRequest::new(record_type, tx_interval, classes));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::testkit::*;
    use proptest::prelude::*;

    const REQ_DISPLAYED_10S: &str = "7e 31 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 ff 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01 0a 00 0e 00 00 00 00 00 49 7e";
    const REQ_STOP: &str = "7e 31 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 ff 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 00 31 7e";
    const REQ_TREND_60S: &str = "7e 31 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 ff 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 03 3c 00 0e 00 00 00 00 00 7d 5d 7e";

    fn decoder() -> GeS5 {
        GeS5::new(SourceId(3), 10).unwrap()
    }

    fn present() -> u32 {
        STATUS_EXISTS | STATUS_ACTIVE
    }

    /// A basic subrecord with everything present and valid.
    fn raw_ok() -> BasicRaw {
        BasicRaw {
            ecg_status: present(),
            hr: 72,
            nibp_status: present(),
            nibp_label: NIBP_AUTO,
            sys: 12_000,
            dia: 8_050,
            mean: 9_300,
            spo2_status: present(),
            spo2: 9_750,
            pr: 71,
            imp_rr: DATA_INVALID,
            co2_status: 0,
            co2_label: 0,
            co2_et: 0,
            co2_fi: 0,
            co2_rr: 0,
            co2_amb: 0,
        }
    }

    fn framed(raw: &BasicRaw, time: u32, nibp_time: u32) -> Vec<u8> {
        let mut out = Vec::new();
        frame_record(&build_displayed_record(raw, time, nibp_time), &mut out);
        out
    }

    fn decode(bytes: &[u8]) -> (Vec<Output>, DecodeStats) {
        let mut p = decoder();
        p.handle_bytes(Instant::from_secs(1), bytes);
        (drain(&mut p), p.stats())
    }

    fn sample_of(ms: &[Measurement], pick: fn(&Measurement) -> Option<Sample>) -> Sample {
        let found: Vec<Sample> = ms.iter().filter_map(pick).collect();
        assert_eq!(
            found.len(),
            1,
            "expected exactly one such reading in {ms:?}"
        );
        found[0]
    }

    fn hr(ms: &[Measurement]) -> Sample {
        sample_of(ms, |m| match m {
            Measurement::HeartRate(s) => Some(*s),
            _ => None,
        })
    }

    fn spo2(ms: &[Measurement]) -> Sample {
        sample_of(ms, |m| match m {
            Measurement::SpO2(s) => Some(*s),
            _ => None,
        })
    }

    fn pr(ms: &[Measurement]) -> Sample {
        sample_of(ms, |m| match m {
            Measurement::PulseRate(s) => Some(*s),
            _ => None,
        })
    }

    fn nibps(ms: &[Measurement]) -> Vec<Nibp> {
        ms.iter()
            .filter_map(|m| match m {
                Measurement::Nibp(n) => Some(*n),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn request_records_match_the_spec_vectors() {
        let mut out = Vec::new();
        PhdbRequest::displayed_every(10).unwrap().encode(&mut out);
        assert_eq!(out, hex(REQ_DISPLAYED_10S));
        out.clear();
        PhdbRequest::stop_displayed().encode(&mut out);
        assert_eq!(out, hex(REQ_STOP));
        out.clear();
        PhdbRequest::new(PhdbRecordType::Trend60s, 60, CLASSES_ALL).encode(&mut out);
        assert_eq!(out, hex(REQ_TREND_60S));
    }

    #[test]
    fn send_once_request_carries_minus_one() {
        let r = PhdbRequest::displayed_once().to_record();
        assert_eq!(r[40], 1);
        assert_eq!(i16::from_le_bytes([r[41], r[42]]), -1);
    }

    #[test]
    fn request_interval_is_checked() {
        assert_eq!(
            PhdbRequest::displayed_every(4),
            Err(GeError::IntervalOutOfRange(4))
        );
        assert!(PhdbRequest::displayed_every(0).is_err());
        assert!(PhdbRequest::displayed_every(40_000).is_err());
        assert_eq!(PhdbRequest::displayed_every(5).unwrap().tx_interval, 5);
        assert!(GeS5::new(SourceId(0), 3).is_err());
    }

    #[test]
    fn spec_vectors_deframe_with_their_stuffed_checksum() {
        let mut bytes = hex(REQ_DISPLAYED_10S);
        bytes.extend(hex(REQ_STOP));
        bytes.extend(hex(REQ_TREND_60S));
        let (outs, stats) = decode(&bytes);
        // Well formed, but requests: nothing a monitor sends us.
        assert_eq!((stats.frames_ok, stats.ignored), (0, 3));
        assert_eq!(stats.dropped_total(), 0);
        assert_eq!(stats.bytes, bytes.len() as u64);
        // Requests carry no displayed values.
        assert!(outs.is_empty(), "{outs:?}");
    }

    fn breath(ms: &[Measurement]) -> (Option<Sample>, Option<Sample>) {
        let rr = ms.iter().find_map(|m| match m {
            Measurement::RespRate(s) => Some(*s),
            _ => None,
        });
        let et = ms.iter().find_map(|m| match m {
            Measurement::EtCo2(s) => Some(*s),
            _ => None,
        });
        (rr, et)
    }

    #[test]
    fn the_co2_group_gives_rr_and_etco2_in_mmhg_from_the_ambient_pressure() {
        let mut raw = raw_ok();
        // No CO2 module and no impedance rate: no breathing readings.
        let (outs, _) = decode(&framed(&raw, 1_700_000_000, 0));
        assert_eq!(breath(&measurements(&outs)), (None, None));
        // 5.00 % of 760.0 mmHg is 38 mmHg; RR 14 from the CO2 source.
        raw.co2_status = present();
        raw.co2_label = 1;
        raw.co2_et = 500;
        raw.co2_fi = 0;
        raw.co2_rr = 14;
        raw.co2_amb = 7_600;
        let (outs, _) = decode(&framed(&raw, 1_700_000_000, 0));
        let (rr, et) = breath(&measurements(&outs));
        assert_eq!(rr, Some(Sample::valid(14.0)));
        let et = et.unwrap();
        assert!(
            (et.value - 38.0).abs() < 1e-3 && et.validity.is_valid(),
            "{et:?}"
        );
        // RR 0 is a valid no-breath rate; "not updated" from an active
        // module is no rate (unavailable); a bad ambient pressure makes
        // etCO2 invalid.
        raw.co2_rr = 0;
        raw.co2_amb = DATA_INVALID;
        let (outs, _) = decode(&framed(&raw, 1_700_000_010, 0));
        let (rr, et) = breath(&measurements(&outs));
        assert_eq!(rr, Some(Sample::valid(0.0)));
        assert_eq!(et.unwrap().validity, Validity::Invalid);
        raw.co2_rr = -32766;
        let (outs, _) = decode(&framed(&raw, 1_700_000_020, 0));
        assert_eq!(
            breath(&measurements(&outs)).0.unwrap().validity,
            Validity::Unavailable
        );
        // Module there but not measuring: sensor off, never apnoea.
        raw.co2_status = STATUS_EXISTS;
        let (outs, _) = decode(&framed(&raw, 1_700_000_030, 0));
        let (rr, et) = breath(&measurements(&outs));
        assert_eq!(rr.unwrap().validity, Validity::SensorOff);
        assert_eq!(et.unwrap().validity, Validity::SensorOff);
        // No CO2 module: the ECG impedance rate when it is a number.
        raw.co2_status = 0;
        raw.imp_rr = 12;
        let (outs, _) = decode(&framed(&raw, 1_700_000_040, 0));
        assert_eq!(
            breath(&measurements(&outs)),
            (Some(Sample::valid(12.0)), None)
        );
    }

    #[test]
    fn bad_checksum_is_dropped_and_the_next_frame_decodes() {
        let mut bad = hex(REQ_DISPLAYED_10S);
        let n = bad.len();
        bad[n - 2] = 0x48; // checksum 0x49 -> 0x48
        let mut bytes = bad.clone();
        bytes.extend(framed(&raw_ok(), 1_700_000_000, 0));
        let (outs, stats) = decode(&bytes);
        assert_eq!(stats.dropped[DropReason::Checksum.index()], 1);
        assert_eq!(stats.dropped_total(), 1);
        assert_eq!(stats.frames_ok, 1);
        assert_eq!(outs[0], Output::Dropped(DropReason::Checksum));
        assert_eq!(measurements(&outs).len(), 4);

        // A corrupted value byte is caught by the checksum too.
        let mut frame = framed(&raw_ok(), 1_700_000_000, 0);
        frame[60] ^= 0x01;
        let (outs, stats) = decode(&frame);
        assert_eq!(drops(&outs), vec![DropReason::Checksum]);
        assert_eq!(stats.frames_ok, 0);
        assert!(measurements(&outs).is_empty());
    }

    #[test]
    fn displayed_values_decode_in_canonical_units() {
        let bytes = framed(&raw_ok(), 1_700_000_123, 1_700_000_000);
        let mut p = decoder();
        p.handle_bytes(Instant::from_secs(7), &bytes[..100]);
        assert!(drain(&mut p).is_empty());
        p.handle_bytes(Instant::from_secs(8), &bytes[100..]);
        let outs = drain(&mut p);
        assert_eq!(outs.len(), 4);
        for o in &outs {
            let Output::Reading(r) = o else {
                panic!("not a reading: {o:?}")
            };
            assert_eq!(r.source, SourceId(3));
            assert_eq!(r.arrival, Instant::from_secs(8));
            assert_eq!(r.device_time, Some(DeviceTime(1_700_000_123)));
        }
        let ms = measurements(&outs);
        assert_eq!(hr(&ms), Sample::valid(72.0));
        assert_eq!(spo2(&ms), Sample::valid(97.5));
        assert_eq!(pr(&ms), Sample::valid(71.0));
        let n = nibps(&ms);
        assert_eq!(
            n,
            vec![Nibp {
                systolic: Sample::valid(120.0),
                diastolic: Sample::valid(80.5),
                mean: Sample::valid(93.0),
                measured_at: Some(DeviceTime(1_700_000_000)),
                mode: NibpMode::Auto,
            }]
        );
    }

    #[test]
    fn independently_built_seed_frame_decodes() {
        // Built by hand from the layout (not by this module's encoder); PR 126
        // is 0x7E and must arrive stuffed.
        let bytes = include_bytes!("../../../../fuzz/seeds/ge/displayed_values.bin");
        let (outs, stats) = decode(bytes);
        assert_eq!(stats.frames_ok, 1);
        assert_eq!(stats.dropped_total(), 0);
        let ms = measurements(&outs);
        assert_eq!(hr(&ms), Sample::valid(72.0));
        assert_eq!(spo2(&ms), Sample::valid(97.5));
        assert_eq!(pr(&ms), Sample::valid(126.0));
        let n = nibps(&ms);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].systolic, Sample::valid(120.0));
        assert_eq!(n[0].diastolic, Sample::valid(80.5));
        assert_eq!(n[0].mean, Sample::valid(93.0));
        assert_eq!(n[0].measured_at, Some(DeviceTime(1_700_000_000)));
        assert_eq!(n[0].mode, NibpMode::Auto);
        let bad = include_bytes!("../../../../fuzz/seeds/ge/request_bad_checksum.bin");
        let (outs, _) = decode(bad);
        assert_eq!(drops(&outs), vec![DropReason::Checksum]);
    }

    #[test]
    fn special_values_map_to_validities() {
        let cases = [
            (-32767, Validity::Invalid),
            (-32766, Validity::Unavailable),
            (-32765, Validity::Invalid),
            (-32764, Validity::UnderRange),
            (-32763, Validity::OverRange),
            (-32762, Validity::Questionable),
            (-32768, Validity::Invalid),
            (-32001, Validity::Invalid),
            (-5, Validity::Invalid),
        ];
        for (raw_value, validity) in cases {
            let mut raw = raw_ok();
            raw.hr = raw_value;
            raw.spo2 = raw_value;
            raw.pr = raw_value;
            raw.sys = raw_value;
            let (outs, _) = decode(&framed(&raw, 1, 1));
            let ms = measurements(&outs);
            for s in [hr(&ms), spo2(&ms), pr(&ms), nibps(&ms)[0].systolic] {
                assert_eq!(s.validity, validity, "raw {raw_value}");
                assert!(s.value.is_nan(), "raw {raw_value}");
            }
            assert!(nibps(&ms)[0].diastolic.validity.is_valid());
        }
        // -32000 is the last ordinary value above the flag range; negative, so invalid.
        assert_eq!(special_validity(-32000), None);
        assert_eq!(special_validity(0), None);
    }

    #[test]
    fn module_status_bits_decide_availability() {
        let mut raw = raw_ok();
        raw.ecg_status = 0;
        raw.spo2_status = STATUS_EXISTS; // module there, measurement not active
        raw.nibp_status = 0;
        let (outs, _) = decode(&framed(&raw, 1, 1));
        let ms = measurements(&outs);
        assert_eq!(hr(&ms).validity, Validity::Unavailable);
        assert_eq!(spo2(&ms).validity, Validity::SensorOff);
        assert_eq!(pr(&ms).validity, Validity::SensorOff);
        assert!(
            nibps(&ms).is_empty(),
            "absent NIBP module yields no reading"
        );
        assert_eq!(ms.len(), 3);
    }

    #[test]
    fn ecg_noise_and_artifact_bits_mark_hr_as_artifact() {
        for bit in [ECG_NOISE, ECG_ARTIFACT] {
            let mut raw = raw_ok();
            raw.ecg_status |= bit;
            let (outs, _) = decode(&framed(&raw, 1, 1));
            let ms = measurements(&outs);
            assert_eq!(hr(&ms).validity, Validity::Artifact);
            assert_eq!(spo2(&ms).validity, Validity::Valid);
        }
        // Asystole (bit 2) is physiology: HR stays valid.
        let mut raw = raw_ok();
        raw.ecg_status |= 1 << 2;
        raw.hr = 0;
        let (outs, _) = decode(&framed(&raw, 1, 1));
        assert_eq!(hr(&measurements(&outs)), Sample::valid(0.0));
    }

    #[test]
    fn nibp_label_bits_decide_mode_and_freshness() {
        let nibp_with = |label: u16, nibp_time: u32| {
            let mut raw = raw_ok();
            raw.nibp_label = label;
            let (outs, _) = decode(&framed(&raw, 1_000, nibp_time));
            nibps(&measurements(&outs))
        };
        assert_eq!(nibp_with(NIBP_AUTO, 900)[0].mode, NibpMode::Auto);
        assert_eq!(nibp_with(NIBP_STAT, 900)[0].mode, NibpMode::Stat);
        assert_eq!(nibp_with(0, 900)[0].mode, NibpMode::Manual);
        // Cuff busy: no reading, with or without a measurement time.
        for busy in [NIBP_MEASURING, NIBP_STASIS, NIBP_CALIBRATING] {
            assert!(nibp_with(NIBP_AUTO | busy, 900).is_empty());
            assert!(nibp_with(busy, 0).is_empty());
        }
        // Flagged "older than 60 s" with a measurement time within cycle +
        // grace: the time decides, a current result.
        let recent = nibp_with(NIBP_AUTO | NIBP_OLDER_THAN_60S, 900);
        assert_eq!(recent.len(), 1);
        assert_eq!(recent[0].measured_at, Some(DeviceTime(900)));
        assert!(recent[0].systolic.validity.is_valid());
        // Fresh data without a measurement time: reading, no measured_at.
        assert_eq!(nibp_with(NIBP_AUTO, 0)[0].measured_at, None);
    }

    #[test]
    fn nibp_flagged_old_at_connect_is_an_old_measurement() {
        let mut raw = raw_ok();
        raw.nibp_label = NIBP_AUTO | NIBP_OLDER_THAN_60S;
        // No measurement time: the first result seen is of unknown age.
        let (outs, _) = decode(&framed(&raw, 1_000, 0));
        let n = nibps(&measurements(&outs));
        assert_eq!(n.len(), 1);
        assert!(n[0].is_old());
        assert_eq!(
            [n[0].systolic, n[0].diastolic, n[0].mean],
            [120.0, 80.5, 93.0].map(|v| Sample::valid(v).into_old())
        );
        assert_eq!(n[0].mode, NibpMode::Auto);
        // HR, SpO2 and pulse rate of the same record are current.
        assert!(hr(&measurements(&outs)).validity.is_valid());
    }

    #[test]
    fn nibp_flagged_after_a_fresh_one_is_that_one_again() {
        // As in the real captures: the flag is set from 60 s after the
        // measurement on every record that repeats it.
        let mut p = decoder();
        let mut flagged = raw_ok();
        flagged.nibp_label |= NIBP_OLDER_THAN_60S;
        p.handle_bytes(Instant::from_secs(1), &framed(&raw_ok(), 1_000, 0));
        p.handle_bytes(Instant::from_secs(61), &framed(&flagged, 1_060, 0));
        let n = nibps(&measurements(&drain(&mut p)));
        assert_eq!(n.len(), 1, "{n:?}");
        assert!(n[0].systolic.validity.is_valid());
        // A new connection: the monitor's result may be from before it.
        p.handle_link(Instant::from_secs(70), false);
        p.handle_link(Instant::from_secs(71), true);
        p.handle_bytes(Instant::from_secs(72), &framed(&flagged, 1_072, 0));
        let n = nibps(&measurements(&drain(&mut p)));
        assert_eq!(n.len(), 1);
        assert!(n[0].is_old());
    }

    #[test]
    fn nibp_older_than_cycle_and_grace_by_its_time_is_old() {
        let ages = AgeLimits::for_nibp_cycle(Duration::from_secs(300), Duration::from_secs(60));
        let clock = 1_700_000_000;
        let nibp_at = |age: u32, label: u16| {
            let mut p = decoder().with_age_limits(ages);
            let mut raw = raw_ok();
            raw.nibp_label = label;
            p.handle_bytes(Instant::from_secs(1), &framed(&raw, clock, clock - age));
            nibps(&measurements(&drain(&mut p)))[0]
        };
        let flagged = NIBP_AUTO | NIBP_OLDER_THAN_60S;
        assert!(nibp_at(360, flagged).systolic.validity.is_valid());
        let old = nibp_at(361, flagged);
        assert!(old.is_old());
        assert_eq!(old.measured_at, Some(DeviceTime(i64::from(clock - 361))));
        // The time decides even when the label says fresh (clocks set by hand).
        assert!(nibp_at(24 * 86_400, NIBP_AUTO).is_old());
        // The default limit is the default cycle + grace (18 min).
        let mut p = decoder();
        p.handle_bytes(Instant::ZERO, &framed(&raw_ok(), clock, clock - 17 * 60));
        assert!(!nibps(&measurements(&drain(&mut p)))[0].is_old());
    }

    #[test]
    fn continuous_values_far_behind_the_record_time_are_old() {
        let clock = 1_700_000_000_u32;
        let with_values_at = |at: u32| {
            let mut r = build_displayed_record(&raw_ok(), clock, 0);
            put_u32(&mut r, HEADER_LEN, at);
            let mut bytes = Vec::new();
            frame_record(&r, &mut bytes);
            measurements(&decode(&bytes).0)
        };
        let ms = with_values_at(clock - 60);
        assert_eq!(hr(&ms), Sample::valid(72.0));
        let ms = with_values_at(clock - 61);
        assert_eq!(hr(&ms), Sample::valid(72.0).into_old());
        assert_eq!(spo2(&ms).validity, Validity::Old);
        assert_eq!(pr(&ms).validity, Validity::Old);
    }

    /// A waveform record (r_maintype 1) as the monitor sends it: each
    /// subrecord a 6-byte header (`i16 act_len` samples, `u16 status`, `u16`
    /// reserved) and `act_len` i16 samples. Layout as protocols.md and
    /// xeonfusion/VSCaptureWave (`wf_hdr` in DatexTypes.cs, the `DRI_WF_*`
    /// subrecord types in DataConstants.cs) have it; the real captures
    /// carry such records with types 8 (pleth) and 32 (entropy).
    fn waveform_record(types: &[u8], samples: usize) -> Vec<u8> {
        let sr_len = 6 + 2 * samples;
        let len = HEADER_LEN + types.len() * sr_len;
        let mut r = vec![0u8; len];
        put_i16(&mut r, 0, len as i16);
        put_u32(&mut r, 6, 1_700_000_000);
        put_i16(&mut r, 14, 1);
        for (i, &t) in types.iter().enumerate() {
            put_i16(&mut r, DESCRIPTORS_AT + 3 * i, (i * sr_len) as i16);
            put_u8(&mut r, DESCRIPTORS_AT + 3 * i + 2, t);
            let at = HEADER_LEN + i * sr_len;
            put_i16(&mut r, at, samples as i16);
            for k in 0..samples {
                put_i16(&mut r, at + 6 + 2 * k, (k as i16) * 37 - 900);
            }
        }
        put_u8(&mut r, DESCRIPTORS_AT + 3 * types.len() + 2, EOL_SUBRECORD);
        r
    }

    #[test]
    fn waveform_records_are_ignored_not_dropped() {
        // Types 1 (ECG1) and 4 (INVP1) share their numbers with the
        // displayed-values and auxiliary subrecords of a physiological
        // record: only the main type tells them apart.
        let mut bytes = Vec::new();
        for types in [&[1u8, 4][..], &[8, 32], &[1, 2, 3, 4, 8]] {
            frame_record(&waveform_record(types, 100), &mut bytes);
        }
        // An alarm record (r_maintype 4) is not ours either.
        let mut alarm = build_displayed_record(&raw_ok(), 1, 1);
        put_i16(&mut alarm, 14, 4);
        frame_record(&alarm, &mut bytes);
        bytes.extend(framed(&raw_ok(), 1_000, 0));
        let (outs, stats) = decode(&bytes);
        assert_eq!(
            (stats.ignored, stats.frames_ok, stats.dropped_total()),
            (4, 1, 0)
        );
        let ms = measurements(&outs);
        assert_eq!((ms.len(), hr(&ms)), (4, Sample::valid(72.0)));
        assert!(outs.iter().all(|o| !matches!(o, Output::Dropped(_))));
    }

    #[test]
    fn trend_subrecords_are_never_current_readings() {
        // A physiological record carrying 10 s and 60 s trends (other
        // values than the screen's) next to the displayed values.
        let mut trend = raw_ok();
        trend.hr = 150;
        trend.spo2 = 8_000;
        trend.sys = 20_000;
        let len = HEADER_LEN + 3 * PHDB_SUBRECORD_LEN;
        let with = |types: &[u8]| {
            let mut r = vec![0u8; len];
            put_i16(&mut r, 0, len as i16);
            put_u32(&mut r, 6, 1_000);
            for (i, &t) in types.iter().enumerate() {
                put_i16(
                    &mut r,
                    DESCRIPTORS_AT + 3 * i,
                    (i * PHDB_SUBRECORD_LEN) as i16,
                );
                put_u8(&mut r, DESCRIPTORS_AT + 3 * i + 2, t);
                let at = HEADER_LEN + i * PHDB_SUBRECORD_LEN;
                let sr = &mut r[at..at + PHDB_SUBRECORD_LEN];
                if t == SR_DISPLAYED {
                    raw_ok().write(sr, 1_000);
                } else {
                    trend.write(sr, 900);
                    put_u16(sr, SR_CLASS_WORD, u16::from(t));
                }
            }
            put_u8(&mut r, DESCRIPTORS_AT + 3 * types.len() + 2, EOL_SUBRECORD);
            let mut bytes = Vec::new();
            frame_record(&r, &mut bytes);
            decode(&bytes)
        };
        let (outs, stats) = with(&[SR_TREND_10S, SR_DISPLAYED, SR_TREND_60S]);
        let ms = measurements(&outs);
        assert_eq!((stats.frames_ok, stats.ignored), (1, 0));
        assert_eq!(hr(&ms), Sample::valid(72.0));
        assert_eq!(spo2(&ms), Sample::valid(97.5));
        assert_eq!(nibps(&ms)[0].systolic, Sample::valid(120.0));
        // Trends alone: well formed, nothing current in them.
        let (outs, stats) = with(&[SR_TREND_10S, SR_TREND_60S, SR_TREND_60S]);
        assert!(outs.is_empty(), "{outs:?}");
        assert_eq!(
            (stats.frames_ok, stats.ignored, stats.dropped_total()),
            (0, 1, 0)
        );
    }

    #[test]
    fn aux_nibp_time_is_kept_across_records() {
        // Record 1: basic + aux (nibp_time 500). Record 2: basic only.
        let mut p = decoder();
        p.handle_bytes(Instant::from_secs(1), &framed(&raw_ok(), 1_000, 500));
        let mut only_basic = build_displayed_record(&raw_ok(), 1_010, 0);
        put_u8(&mut only_basic, DESCRIPTORS_AT + 5, EOL_SUBRECORD);
        put_i16(&mut only_basic, 0, (HEADER_LEN + PHDB_SUBRECORD_LEN) as i16);
        let mut bytes = Vec::new();
        frame_record(&only_basic[..HEADER_LEN + PHDB_SUBRECORD_LEN], &mut bytes);
        p.handle_bytes(Instant::from_secs(11), &bytes);
        let outs = drain(&mut p);
        assert_eq!(p.stats().frames_ok, 2);
        let n = nibps(&measurements(&outs));
        assert_eq!(n.len(), 2);
        assert_eq!(n[0].measured_at, Some(DeviceTime(500)));
        assert_eq!(n[1].measured_at, Some(DeviceTime(500)));
        // An aux subrecord with time 0 ("unknown") clears it.
        p.handle_bytes(Instant::from_secs(21), &framed(&raw_ok(), 1_020, 0));
        let n = nibps(&measurements(&drain(&mut p)));
        assert_eq!(n[0].measured_at, None);
    }

    /// A record whose descriptors list the aux subrecord first and the
    /// displayed subrecord second, with the given class in its class word.
    fn reordered_record(class: u16) -> Vec<u8> {
        let len = HEADER_LEN + AUX_SUBRECORD_LEN + PHDB_SUBRECORD_LEN;
        let mut r = vec![0u8; len];
        put_i16(&mut r, 0, len as i16);
        put_u32(&mut r, 6, 42);
        put_i16(&mut r, DESCRIPTORS_AT, 0);
        put_u8(&mut r, DESCRIPTORS_AT + 2, SR_AUX_INFO);
        put_i16(&mut r, DESCRIPTORS_AT + 3, AUX_SUBRECORD_LEN as i16);
        put_u8(&mut r, DESCRIPTORS_AT + 5, SR_DISPLAYED);
        put_u8(&mut r, DESCRIPTORS_AT + 8, EOL_SUBRECORD);
        put_u32(&mut r, HEADER_LEN, 33);
        let sr_at = HEADER_LEN + AUX_SUBRECORD_LEN;
        raw_ok().write(&mut r[sr_at..sr_at + PHDB_SUBRECORD_LEN], 42);
        put_u16(&mut r, sr_at + SR_CLASS_WORD, (class << 8) | 1);
        let mut out = Vec::new();
        frame_record(&r, &mut out);
        out
    }

    #[test]
    fn class_comes_from_the_class_bits_not_the_position() {
        let (outs, stats) = decode(&reordered_record(0));
        let ms = measurements(&outs);
        assert_eq!(ms.len(), 4);
        assert_eq!(hr(&ms), Sample::valid(72.0));
        assert_eq!(nibps(&ms)[0].measured_at, Some(DeviceTime(33)));
        assert_eq!(stats.frames_ok, 1);
        for class in 1..4 {
            let (outs, stats) = decode(&reordered_record(class));
            assert!(outs.is_empty(), "class {class}: {outs:?}");
            assert_eq!(stats.frames_ok, 1);
        }
    }

    #[test]
    fn non_phdb_records_are_accepted_and_ignored() {
        let mut r = build_displayed_record(&raw_ok(), 1, 1);
        put_i16(&mut r, 14, 1); // waveform
        let mut bytes = Vec::new();
        frame_record(&r, &mut bytes);
        let (outs, stats) = decode(&bytes);
        assert!(outs.is_empty());
        assert_eq!((stats.frames_ok, stats.ignored), (0, 1));
    }

    #[test]
    fn bytes_equal_to_flag_or_escape_are_stuffed_and_summed_unstuffed() {
        let mut raw = raw_ok();
        raw.hr = 0x7E;
        raw.pr = 0x7D;
        raw.spo2 = 0x7D7E;
        let bytes = framed(&raw, 0x7E7D_7E7D, 0);
        // Only the two flags are raw 0x7E.
        assert_eq!(bytes.iter().filter(|&&b| b == FLAG).count(), 2);
        let (outs, stats) = decode(&bytes);
        assert_eq!(stats.dropped_total(), 0);
        let ms = measurements(&outs);
        assert_eq!(hr(&ms), Sample::valid(126.0));
        assert_eq!(pr(&ms), Sample::valid(125.0));
        assert_eq!(spo2(&ms), Sample::valid(f32::from(0x7D7E_i16) / 100.0));
    }

    #[test]
    fn garbage_truncation_and_oversize_resynchronise() {
        let good = framed(&raw_ok(), 1, 1);
        let mut bytes = b"noise before sync".to_vec();
        bytes.extend_from_slice(&good);
        // A frame cut short by the monitor rebooting, then a good one.
        bytes.extend_from_slice(&good[..200]);
        bytes.extend_from_slice(&good);
        // An oversized run without a flag, then a good frame.
        bytes.push(FLAG);
        bytes.extend(std::iter::repeat_n(0x11, 3_000));
        bytes.extend_from_slice(&good);
        // A frame aborted by an escape before its flag, then a good one.
        bytes.extend_from_slice(&good[..50]);
        bytes.push(ESC);
        bytes.extend_from_slice(&good);
        // A tiny frame and a frame longer than its r_len.
        bytes.extend_from_slice(&[FLAG, 1, 2, 3, FLAG]);
        let mut long = build_displayed_record(&raw_ok(), 1, 1).to_vec();
        long.push(0);
        frame_record(&long, &mut bytes);
        bytes.extend_from_slice(&good);

        let (outs, stats) = decode(&bytes);
        assert_eq!(stats.frames_ok, 5);
        assert_eq!(stats.dropped[DropReason::Garbage.index()], 1);
        assert_eq!(stats.dropped[DropReason::Oversized.index()], 1);
        // Cut frame (its tail start flag ended it), escape-abort, tiny frame.
        assert_eq!(stats.dropped[DropReason::Truncated.index()], 3);
        // Record longer than r_len says.
        assert_eq!(stats.dropped[DropReason::Malformed.index()], 1);
        assert_eq!(stats.dropped[DropReason::Checksum.index()], 0);
        assert_eq!(drops(&outs).len() as u64, stats.dropped_total());
        assert_eq!(measurements(&outs).len(), 5 * 4);
    }

    #[test]
    fn descriptors_pointing_outside_the_record_are_malformed() {
        for (offset, r_len) in [(300_i16, None), (-4, None), (0, Some(100_i16))] {
            let mut r = build_displayed_record(&raw_ok(), 1, 1).to_vec();
            put_i16(&mut r, DESCRIPTORS_AT, offset);
            if let Some(len) = r_len {
                put_i16(&mut r, 0, len);
                r.truncate(len as usize);
            }
            let mut bytes = Vec::new();
            frame_record(&r, &mut bytes);
            let (outs, stats) = decode(&bytes);
            assert_eq!(drops(&outs), vec![DropReason::Malformed], "{offset}");
            assert_eq!(stats.frames_ok, 0);
        }
        // A negative or short r_len.
        let mut r = build_displayed_record(&raw_ok(), 1, 1).to_vec();
        put_i16(&mut r, 0, -1);
        let mut bytes = Vec::new();
        frame_record(&r, &mut bytes);
        assert_eq!(drops(&decode(&bytes).0), vec![DropReason::Malformed]);
    }

    #[test]
    fn link_up_sends_the_request_at_once_and_link_down_forgets() {
        let mut p = GeS5::new(SourceId(0), 10).unwrap();
        let mut out = Vec::new();
        // Queued at start, before any link: the pipeline holds it back.
        p.handle_link(Instant::from_secs(1), true);
        assert!(p.poll_transmit(&mut out));
        assert_eq!(out, hex(REQ_DISPLAYED_10S));
        assert!(!p.poll_transmit(&mut out), "one request per link up");
        assert_eq!(p.poll_timeout(), Some(Instant::from_secs(31)));
        // Half a frame, then the link drops: the rest of a frame from the
        // next connection must not be glued onto it.
        let frame = framed(&raw_ok(), 1, 1);
        p.handle_bytes(Instant::from_secs(2), &frame[..frame.len() / 2]);
        p.handle_link(Instant::from_secs(3), false);
        assert!(!p.poll_transmit(&mut out), "nothing is sent while down");
        p.handle_link(Instant::from_secs(4), true);
        out.clear();
        assert!(p.poll_transmit(&mut out));
        assert_eq!(out, hex(REQ_DISPLAYED_10S));
        p.handle_bytes(Instant::from_secs(5), &frame);
        let outs = drain(&mut p);
        assert!(drops(&outs).is_empty(), "{outs:?}");
        assert_eq!(measurements(&outs).len(), 4);
    }

    #[test]
    fn request_is_sent_at_start_resent_on_silence_and_stopped() {
        let mut p = GeS5::new(SourceId(0), 10)
            .unwrap()
            .with_resend_after(Duration::from_secs(30));
        let mut out = Vec::new();
        assert!(p.poll_transmit(&mut out));
        assert_eq!(out, hex(REQ_DISPLAYED_10S));
        assert!(!p.poll_transmit(&mut out));
        // Unarmed timer asks for an immediate call.
        assert_eq!(p.poll_timeout(), Some(Instant::ZERO));
        p.handle_timeout(Instant::from_secs(100));
        assert_eq!(p.poll_timeout(), Some(Instant::from_secs(130)));
        p.handle_timeout(Instant::from_secs(129));
        assert!(!p.poll_transmit(&mut out));
        // Data arrives: deadline moves.
        p.handle_bytes(Instant::from_secs(125), &framed(&raw_ok(), 1, 1));
        assert_eq!(p.poll_timeout(), Some(Instant::from_secs(155)));
        p.handle_timeout(Instant::from_secs(130));
        assert!(!p.poll_transmit(&mut out));
        assert_eq!(p.resends(), 0);
        // Silence (monitor rebooted): the request goes out again, once.
        p.handle_timeout(Instant::from_secs(155));
        assert_eq!(p.resends(), 1);
        out.clear();
        assert!(p.poll_transmit(&mut out));
        assert_eq!(out, hex(REQ_DISPLAYED_10S));
        assert!(!p.poll_transmit(&mut out));
        assert_eq!(p.poll_timeout(), Some(Instant::from_secs(185)));
        // Stop: the stop request goes out and the timers end.
        p.handle_timeout(Instant::from_secs(185));
        p.stop();
        out.clear();
        assert!(p.poll_transmit(&mut out));
        assert_eq!(out, hex(REQ_STOP));
        assert!(!p.poll_transmit(&mut out));
        assert_eq!(p.poll_timeout(), None);
        p.handle_timeout(Instant::from_secs(10_000));
        assert!(!p.poll_transmit(&mut out));
    }

    #[test]
    fn default_resend_timeout_covers_three_intervals() {
        let mut p = GeS5::new(SourceId(0), 10).unwrap();
        p.handle_timeout(Instant::ZERO);
        assert_eq!(p.poll_timeout(), Some(Instant::from_secs(30)));
        let mut p = GeS5::new(SourceId(0), 5).unwrap();
        p.handle_timeout(Instant::ZERO);
        assert_eq!(p.poll_timeout(), Some(Instant::from_secs(15)));
    }

    #[test]
    fn snapshot_flags_that_ge_cannot_carry_per_value_are_encoded_conservatively() {
        let mut s = Snapshot::empty(DeviceTime(1_000));
        s.heart_rate = Sample::new(80.0, Validity::Artifact);
        s.spo2 = Sample::missing(Validity::SensorOff);
        s.pulse_rate = Sample::valid(70.0);
        let mut bytes = Vec::new();
        encode_displayed_values(&s, &mut bytes);
        let (outs, _) = decode(&bytes);
        let ms = measurements(&outs);
        assert_eq!(hr(&ms).validity, Validity::Artifact);
        assert_eq!(spo2(&ms).validity, Validity::SensorOff);
        // The shared SpO2 group is inactive, so the pulse rate is too.
        assert_eq!(pr(&ms).validity, Validity::SensorOff);
        assert!(nibps(&ms).is_empty());
    }

    /// The validities besides valid that GE carries through a round trip.
    const ROUND_TRIP: &[Validity] = &[
        Validity::Invalid,
        Validity::Unavailable,
        Validity::UnderRange,
        Validity::OverRange,
        Validity::Questionable,
    ];

    fn sample(max: u16, divisor: f32) -> impl Strategy<Value = Sample> {
        stepped_sample(max, divisor, ROUND_TRIP)
    }

    fn snapshot() -> impl Strategy<Value = Snapshot> {
        let nibp = (
            sample(30_000, 100.0),
            sample(30_000, 100.0),
            sample(30_000, 100.0),
            // Age before the device clock, within the default limit.
            proptest::option::of(0..=18 * 60_i64),
            prop_oneof![
                Just(NibpMode::Auto),
                Just(NibpMode::Stat),
                Just(NibpMode::Manual)
            ],
        )
            .prop_map(|(systolic, diastolic, mean, t, mode)| Nibp {
                systolic,
                diastolic,
                mean,
                measured_at: t.map(DeviceTime),
                mode,
            });
        (
            sample(300, 1.0),
            sample(300, 1.0),
            sample(10_000, 100.0),
            proptest::option::of(nibp),
            2_000..=u32::MAX,
            (
                prop_oneof![1 => Just(None), 3 => sample(150, 1.0).prop_map(Some)],
                sample(1_500, 10.0),
            ),
        )
            .prop_map(|(heart_rate, pulse_rate, spo2, nibp, t, (rr, etco2))| {
                let device_time = DeviceTime(i64::from(t));
                let nibp = nibp.map(|n| Nibp {
                    measured_at: n.measured_at.map(|age| DeviceTime(device_time.0 - age.0)),
                    ..n
                });
                // None: no capnograph at all.
                let breath = rr.map(|rr| (rr, etco2));
                snapshot_of([heart_rate, pulse_rate, spo2], nibp, device_time, breath)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn snapshots_round_trip(s in snapshot()) {
            let mut bytes = Vec::new();
            encode_displayed_values(&s, &mut bytes);
            let (outs, stats) = decode(&bytes);
            prop_assert_eq!(stats.frames_ok, 1);
            prop_assert_eq!(stats.dropped_total(), 0);
            let ms = measurements(&outs);
            prop_assert!(same(hr(&ms), s.heart_rate));
            prop_assert!(same(pr(&ms), s.pulse_rate));
            prop_assert!(same(spo2(&ms), s.spo2));
            let (rr, etco2) = breath(&ms);
            if s.has_breathing() {
                prop_assert!(same(rr.unwrap(), s.resp_rate), "{:?}", rr);
                // etCO2 travels as 1/100 % of 760 mmHg.
                let (got, want) = (etco2.unwrap(), s.etco2);
                prop_assert_eq!(got.validity, want.validity);
                prop_assert!(!want.validity.is_valid() || (got.value - want.value).abs() <= 0.04,
                    "{:?} for {:?}", got, want);
            } else {
                prop_assert_eq!((rr, etco2), (None, None));
            }
            let n = nibps(&ms);
            match s.nibp {
                None => prop_assert!(n.is_empty()),
                Some(want) => {
                    prop_assert_eq!(n.len(), 1);
                    let got = n[0];
                    prop_assert!(same(got.systolic, want.systolic));
                    prop_assert!(same(got.diastolic, want.diastolic));
                    prop_assert!(same(got.mean, want.mean));
                    prop_assert_eq!(got.measured_at, want.measured_at);
                    prop_assert_eq!(got.mode, want.mode);
                }
            }
            for o in &outs {
                if let Output::Reading(r) = o {
                    prop_assert_eq!(r.device_time, Some(s.device_time));
                }
            }
        }

        #[test]
        fn chunking_does_not_change_outputs(
            snaps in proptest::collection::vec(snapshot(), 1..4),
            noise in proptest::collection::vec(any::<u8>(), 0..40),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let mut bytes = noise;
            for s in &snaps {
                encode_displayed_values(s, &mut bytes);
            }
            let whole = cut_anywhere(decoder, Instant::from_secs(1), &bytes, &cuts)?;
            // The last snapshot always decodes, whatever noise came first.
            prop_assert!(measurements(&whole).len() >= 3);
        }

        #[test]
        fn arbitrary_bytes_never_panic_or_yield_non_finite_valid_values(
            bytes in proptest::collection::vec(any::<u8>(), 0..2_000),
        ) {
            let mut p = decoder();
            p.handle_bytes(Instant::from_secs(1), &bytes);
            p.handle_timeout(Instant::from_secs(100));
            valid_values_are_finite(&drain(&mut p), Checked::Continuous)?;
            prop_assert_eq!(p.stats().bytes, bytes.len() as u64);
        }
    }
}
