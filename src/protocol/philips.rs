//! Philips IntelliVue Data Export over the MIB/RS232 port: framing, the
//! host's session state machine, decoding of numerics from poll results, and
//! monitor-side encoders for simulators and scripted-monitor tests.
//!
//! # Wire format
//!
//! A frame is `0xC0`, the escaped header + data + FCS, and `0xC1`. Bytes
//! `0xC0`, `0xC1` and `0x7D` are sent as `0x7D, b ^ 0x20`; `0x7D 0xC1`
//! aborts a frame. The header is `0x11 0x01` and the big-endian data length;
//! the FCS is the PPP CRC-16 ([`fcs16`]) over header and data, sent low byte
//! first. The data is either a session message (association request `0x0D`,
//! accept `0x0E`, refuse `0x0C`, release request `0x09` / response `0x0A`,
//! abort `0x19`) or a data export message: `SPpdu` (`0xE100`, context),
//! `ROapdus` (type, length) and a remote operation (invoke, result, linked
//! result or error) whose argument or result is big-endian CMIP data.
//!
//! # Session (host side, [`IntelliVueHost`])
//!
//! Association request -> accept -> the monitor's MDS Create event report ->
//! our event result -> an extended poll for numerics (action `0xF13B`) every
//! poll interval. The polls double as the keep-alive (the interval is capped
//! at [`MAX_POLL_INTERVAL`]). The association counts as lost on an abort,
//! refuse or release from the monitor, when the accept or the MDS Create does
//! not come in time, or when no poll result arrives within the data timeout;
//! the host then aborts (when it was the one to give up), reports
//! [`DeviceNote::AssociationLost`], and associates again after an exponential
//! backoff. Every timer runs through [`Protocol::handle_timeout`] /
//! [`Protocol::poll_timeout`]; nothing reads a clock. The host never queues
//! more than two frames at once, inside the monitor's 4-frames-per-128-ms limit.
//!
//! [`IntelliVueMonitorStream`] decodes a monitor-side byte stream alone (a
//! recording of what the monitor sent), with no session state.
//!
//! # Values and validity
//!
//! Numerics come from attribute `0x0950` (single) and `0x094B` (compound,
//! NIBP). FLOAT-Type is an `i8` exponent and an `i24` mantissa; special
//! mantissas are recognised by the MANTISSA alone whatever the exponent: NaN
//! and "no resolution" -> `Invalid`, +inf -> `OverRange`, -inf ->
//! `UnderRange`. Measurement state bits win over the value: invalid ->
//! `Invalid`; test or demo data -> `Invalid` (simulated data is never patient
//! physiology); unavailable -> `Unavailable`; calibrating -> `Unavailable`;
//! questionable or early indication -> `Questionable`. A unit other than the
//! vital's own (bpm, %, mmHg; kPa is converted) makes a value `Invalid`.
//! Per poll result one reading per vital comes out: the pleth pulse
//! (`0x4822`) is preferred over the generic pulse (`0x480A`); an NIBP whose
//! state says "measurement ongoing" is skipped (the cuff is busy, the numbers
//! are not a result); NIBP readings carry the numeric's absolute time stamp
//! (attribute `0x0990`) as `measured_at`, and every reading carries the poll
//! result's absolute time stamp as its device time. The numerics do not say
//! how an NIBP measurement was started, so its mode is `NibpMode::Unknown`.
//! Poll results are taken whatever their invoke id (the monitor answers in
//! order and the host has at most one poll outstanding per interval).
//!
//! Depends on [`crate::protocol`], [`crate::vitals`] and [`crate::time`] only.

use core::time::Duration;
use std::collections::VecDeque;

use crate::protocol::{
    AssociationProblem, DecodeStats, DeviceNote, DropReason, Output, Protocol, Snapshot,
};
use crate::time::Instant;
use crate::vitals::{DeviceTime, Measurement, Nibp, NibpMode, Reading, Sample, SourceId, Validity};

// ---------------------------------------------------------------- framing

/// Beginning of frame.
pub const BOF: u8 = 0xC0;
/// End of frame.
pub const EOF: u8 = 0xC1;
const ESC: u8 = 0x7D;
const ESC_XOR: u8 = 0x20;
const PROTOCOL_ID: u8 = 0x11;
const MSG_TYPE: u8 = 0x01;
const HEADER_LEN: usize = 4;
const FCS_LEN: usize = 2;
/// Largest unescaped frame (header + data + FCS) accepted.
pub const MAX_FRAME_LEN: usize = 4096;

const FCS_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut v = i as u16;
        let mut bit = 0;
        while bit < 8 {
            v = if v & 1 != 0 {
                (v >> 1) ^ 0x8408
            } else {
                v >> 1
            };
            bit += 1;
        }
        table[i] = v;
        i += 1;
    }
    table
};

/// Running PPP FCS-16 (RFC 1662): reflected polynomial 0x8408, init 0xFFFF.
#[derive(Clone, Copy, Debug)]
struct Fcs(u16);

impl Fcs {
    const fn new() -> Self {
        Fcs(0xFFFF)
    }
    fn update(&mut self, b: u8) {
        self.0 = (self.0 >> 8) ^ FCS_TABLE[usize::from((self.0 ^ u16::from(b)) & 0xFF)];
    }
    /// The value to send: the ones-complement.
    fn finish(self) -> u16 {
        !self.0
    }
}

/// The FCS of `data` as sent on the wire (ones-complement of the CRC; the
/// low byte goes first).
pub fn fcs16(data: &[u8]) -> u16 {
    let mut f = Fcs::new();
    data.iter().for_each(|&b| f.update(b));
    f.finish()
}

fn push_escaped(out: &mut Vec<u8>, b: u8) {
    if b == BOF || b == EOF || b == ESC {
        out.push(ESC);
        out.push(b ^ ESC_XOR);
    } else {
        out.push(b);
    }
}

/// Appends `content` framed: `0xC0`, escaped content and FCS, `0xC1`. The
/// content is sent as given (no header added).
pub fn frame_raw(content: &[u8], out: &mut Vec<u8>) {
    out.push(BOF);
    let mut f = Fcs::new();
    for &b in content {
        f.update(b);
        push_escaped(out, b);
    }
    let fcs = f.finish();
    for b in fcs.to_le_bytes() {
        push_escaped(out, b);
    }
    out.push(EOF);
}

/// Appends a whole frame carrying `data` (header `0x11 0x01 len` added).
/// Data longer than 65535 bytes is cut (no message comes near that).
pub fn frame_message(data: &[u8], out: &mut Vec<u8>) {
    let data = data.get(..usize::from(u16::MAX)).unwrap_or(data);
    let len = (data.len() as u16).to_be_bytes();
    out.push(BOF);
    let mut f = Fcs::new();
    for &b in [PROTOCOL_ID, MSG_TYPE, len[0], len[1]].iter().chain(data) {
        f.update(b);
        push_escaped(out, b);
    }
    for b in f.finish().to_le_bytes() {
        push_escaped(out, b);
    }
    out.push(EOF);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RxState {
    /// Between frames: anything but `0xC0` is garbage.
    Idle,
    InFrame,
    /// Skipping the rest of an oversized frame.
    Discarding,
}

/// Byte-level frame assembly shared by both decoders.
#[derive(Debug)]
struct Deframer {
    buf: Vec<u8>,
    state: RxState,
    escaped: bool,
    garbage_run: bool,
}

/// What one byte completed.
enum RxEvent {
    /// A frame passed framing, FCS and header checks: its data is `buf[4..len-2]`.
    Frame,
    Drop(DropReason),
}

impl Deframer {
    fn new() -> Self {
        Deframer {
            buf: Vec::with_capacity(MAX_FRAME_LEN),
            state: RxState::Idle,
            escaped: false,
            garbage_run: false,
        }
    }

    fn start(&mut self) {
        self.buf.clear();
        self.escaped = false;
        self.state = RxState::InFrame;
        self.garbage_run = false;
    }

    fn push(&mut self, b: u8) -> Option<RxEvent> {
        match self.state {
            RxState::Idle => {
                if b == BOF {
                    self.start();
                    None
                } else if !self.garbage_run {
                    self.garbage_run = true;
                    Some(RxEvent::Drop(DropReason::Garbage))
                } else {
                    None
                }
            }
            RxState::Discarding => {
                if b == BOF {
                    self.start();
                } else if b == EOF {
                    self.state = RxState::Idle;
                }
                None
            }
            RxState::InFrame => match b {
                BOF => {
                    // A new frame starts before this one ended.
                    self.start();
                    Some(RxEvent::Drop(DropReason::Truncated))
                }
                EOF if self.escaped => {
                    self.state = RxState::Idle;
                    Some(RxEvent::Drop(DropReason::Truncated))
                }
                EOF => {
                    self.state = RxState::Idle;
                    Some(self.check())
                }
                ESC if !self.escaped => {
                    self.escaped = true;
                    None
                }
                _ => {
                    let v = if self.escaped { b ^ ESC_XOR } else { b };
                    self.escaped = false;
                    if self.buf.len() >= MAX_FRAME_LEN {
                        self.buf.clear();
                        self.state = RxState::Discarding;
                        Some(RxEvent::Drop(DropReason::Oversized))
                    } else {
                        self.buf.push(v);
                        None
                    }
                }
            },
        }
    }

    fn check(&self) -> RxEvent {
        let n = self.buf.len();
        if n < FCS_LEN + 1 {
            return RxEvent::Drop(DropReason::Truncated);
        }
        let (content, fcs) = self.buf.split_at(n - FCS_LEN);
        if fcs16(content).to_le_bytes() != fcs {
            return RxEvent::Drop(DropReason::Checksum);
        }
        match content {
            [PROTOCOL_ID, MSG_TYPE, hi, lo, data @ ..]
                if usize::from(u16::from_be_bytes([*hi, *lo])) == data.len() =>
            {
                RxEvent::Frame
            }
            _ => RxEvent::Drop(DropReason::Malformed),
        }
    }

    /// The data of the frame just completed.
    fn data(&self) -> &[u8] {
        let end = self.buf.len().saturating_sub(FCS_LEN);
        self.buf.get(HEADER_LEN..end).unwrap_or(&[])
    }
}

// ------------------------------------------------------------ byte reader

/// A bounds-checked big-endian reader; every read returns `None` past the end.
#[derive(Clone, Copy)]
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2)?.try_into().ok().map(u16::from_be_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)?.try_into().ok().map(u32::from_be_bytes)
    }
    /// A u16 length followed by that many bytes, as a reader of its own.
    fn sized(&mut self) -> Option<Reader<'a>> {
        let len = self.u16()?;
        Some(Reader::new(self.take(usize::from(len))?))
    }
    /// A `count, length` header followed by `length` bytes: the count and a
    /// reader over exactly those bytes.
    fn list(&mut self) -> Option<(u16, Reader<'a>)> {
        let count = self.u16()?;
        let len = self.u16()?;
        Some((count, Reader::new(self.take(usize::from(len))?)))
    }
}

// ------------------------------------------------------- protocol numbers

const SESSION_CONNECT: u8 = 0x0D;
const SESSION_ACCEPT: u8 = 0x0E;
const SESSION_REFUSE: u8 = 0x0C;
const SESSION_FINISH: u8 = 0x09;
const SESSION_DISCONNECT: u8 = 0x0A;
const SESSION_ABORT: u8 = 0x19;
const SPPDU_SESSION_ID: u16 = 0xE100;
const PRESENTATION_CONTEXT: u16 = 0x0002;

const ROIV_APDU: u16 = 1;
const RORS_APDU: u16 = 2;
const ROER_APDU: u16 = 3;
const ROLRS_APDU: u16 = 5;

const CMD_EVENT_REPORT: u16 = 0;
const CMD_CONFIRMED_EVENT_REPORT: u16 = 1;
const CMD_CONFIRMED_ACTION: u16 = 7;

const NOM_MOC_VMS_MDS: u16 = 33;
const NOM_MOC_VMO_METRIC_NU: u16 = 6;
const NOM_PART_OBJ: u16 = 1;
const NOM_NOTI_MDS_CREAT: u16 = 0x0D06;
const NOM_ACT_POLL_MDIB_DATA: u16 = 0x0C16;
/// Extended poll action (numerics with the extended reply).
pub const NOM_ACT_POLL_MDIB_DATA_EXT: u16 = 0xF13B;

const NOM_ATTR_NU_VAL_OBS: u16 = 0x0950;
const NOM_ATTR_NU_CMPD_VAL_OBS: u16 = 0x094B;
const NOM_ATTR_TIME_STAMP_ABS: u16 = 0x0990;

const NOM_ECG_CARD_BEAT_RATE: u16 = 0x4182;
const NOM_PULS_RATE: u16 = 0x480A;
const NOM_PLETH_PULS_RATE: u16 = 0x4822;
const NOM_PRESS_BLD_NONINV_SYS: u16 = 0x4A05;
const NOM_PRESS_BLD_NONINV_DIA: u16 = 0x4A06;
const NOM_PRESS_BLD_NONINV_MEAN: u16 = 0x4A07;
const NOM_PULS_OXIM_SAT_O2: u16 = 0x4BB8;

const NOM_DIM_PERCENT: u16 = 0x0220;
const NOM_DIM_BEAT_PER_MIN: u16 = 0x0AA0;
const NOM_DIM_MMHG: u16 = 0x0F20;
const NOM_DIM_KILO_PASCAL: u16 = 0x0F03;
const MMHG_PER_KPA: f64 = 7.500_616_827;

const STATE_INVALID: u16 = 0x8000;
const STATE_QUESTIONABLE: u16 = 0x4000;
const STATE_UNAVAILABLE: u16 = 0x2000;
const STATE_CALIBRATING: u16 = 0x1000;
const STATE_TEST_DATA: u16 = 0x0800;
const STATE_DEMO_DATA: u16 = 0x0400;
const STATE_EARLY_INDICATION: u16 = 0x0040;
const STATE_MSMT_ONGOING: u16 = 0x0020;

const MANTISSA_NAN: u32 = 0x7F_FFFF;
const MANTISSA_NRES: u32 = 0x80_0000;
const MANTISSA_POS_INF: u32 = 0x7F_FFFE;
const MANTISSA_NEG_INF: u32 = 0x80_0002;

// ---------------------------------------------------------------- values

/// The validity the measurement state bits impose, if any.
fn state_validity(state: u16) -> Option<Validity> {
    if state & STATE_INVALID != 0 || state & (STATE_TEST_DATA | STATE_DEMO_DATA) != 0 {
        Some(Validity::Invalid)
    } else if state & (STATE_UNAVAILABLE | STATE_CALIBRATING) != 0 {
        Some(Validity::Unavailable)
    } else if state & (STATE_QUESTIONABLE | STATE_EARLY_INDICATION) != 0 {
        Some(Validity::Questionable)
    } else {
        None
    }
}

/// A FLOAT-Type as a number, or the validity its special mantissa stands for.
fn decode_float(raw: u32) -> Result<f64, Validity> {
    let mantissa_bits = raw & 0x00FF_FFFF;
    match mantissa_bits {
        MANTISSA_NAN | MANTISSA_NRES => return Err(Validity::Invalid),
        MANTISSA_POS_INF => return Err(Validity::OverRange),
        MANTISSA_NEG_INF => return Err(Validity::UnderRange),
        _ => {}
    }
    let exponent = i32::from((raw >> 24) as u8 as i8);
    // Sign-extend the 24-bit mantissa.
    let mantissa = ((mantissa_bits << 8) as i32) >> 8;
    // Divide for negative exponents: 901 / 10 is 90.1, 901 * 0.1 is not.
    let scale = 10f64.powi(exponent.abs());
    let v = if exponent < 0 {
        f64::from(mantissa) / scale
    } else {
        f64::from(mantissa) * scale
    };
    if v.is_finite() {
        Ok(v)
    } else {
        Err(Validity::Invalid)
    }
}

/// Encodes `value` as FLOAT-Type with the given exponent, or `None` when the
/// mantissa would not fit (or collide with a special mantissa).
fn encode_float(value: f32, exponent: i8) -> Option<u32> {
    let m = (f64::from(value) * 10f64.powi(-i32::from(exponent))).round();
    if !m.is_finite() || m > f64::from(0x7F_FFFD) || m < -f64::from(0x7F_FFFD) {
        return None;
    }
    let m = m as i32;
    Some((u32::from(exponent as u8) << 24) | (m as u32 & 0x00FF_FFFF))
}

/// One numeric observation as sent: physiological id, state, unit, value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct NuObs {
    physio_id: u16,
    state: u16,
    unit: u16,
    value: u32,
}

impl NuObs {
    fn read(r: &mut Reader<'_>) -> Option<NuObs> {
        Some(NuObs {
            physio_id: r.u16()?,
            state: r.u16()?,
            unit: r.u16()?,
            value: r.u32()?,
        })
    }

    fn write(&self, w: &mut Writer) {
        w.u16(self.physio_id);
        w.u16(self.state);
        w.u16(self.unit);
        w.u32(self.value);
    }

    /// The sample in canonical units, given the units accepted for its vital
    /// and their factors to the canonical unit.
    fn sample(&self, units: &[(u16, f64)]) -> Sample {
        if let Some(v) = state_validity(self.state) {
            // Keep a questionable number; the rest carry none.
            if v == Validity::Questionable {
                if let (Ok(x), Some((_, k))) = (
                    decode_float(self.value),
                    units.iter().find(|(u, _)| *u == self.unit),
                ) {
                    return Sample::new((x * k) as f32, v);
                }
            }
            return Sample::missing(v);
        }
        let Some(&(_, factor)) = units.iter().find(|(u, _)| *u == self.unit) else {
            return Sample::missing(Validity::Invalid);
        };
        match decode_float(self.value) {
            Ok(x) => Sample::valid((x * factor) as f32),
            Err(v) => Sample::missing(v),
        }
    }
}

const RATE_UNITS: &[(u16, f64)] = &[(NOM_DIM_BEAT_PER_MIN, 1.0)];
const PERCENT_UNITS: &[(u16, f64)] = &[(NOM_DIM_PERCENT, 1.0)];
const PRESSURE_UNITS: &[(u16, f64)] = &[(NOM_DIM_MMHG, 1.0), (NOM_DIM_KILO_PASCAL, MMHG_PER_KPA)];

/// AbsoluteTime (BCD century, year, month, day, hour, minute, second,
/// fraction) as seconds since the Unix epoch by the device's clock.
fn decode_abs_time(b: &[u8]) -> Option<DeviceTime> {
    let bcd = |x: u8| -> Option<i64> {
        let (hi, lo) = (x >> 4, x & 0x0F);
        (hi < 10 && lo < 10).then_some(i64::from(hi * 10 + lo))
    };
    let [c, y, mo, d, h, mi, s, _] = <[u8; 8]>::try_from(b).ok()?;
    let year = bcd(c)? * 100 + bcd(y)?;
    let (month, day) = (bcd(mo)?, bcd(d)?);
    let (hour, min, sec) = (bcd(h)?, bcd(mi)?, bcd(s)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let days = crate::time::days_from_civil(year, month as u32, day as u32);
    Some(DeviceTime(days * 86_400 + hour * 3_600 + min * 60 + sec))
}

/// AbsoluteTime for a device time (UTC fields); all 0xFF ("unspecified")
/// when outside years 0..=9999.
fn encode_abs_time(t: DeviceTime) -> [u8; 8] {
    let days = t.0.div_euclid(86_400);
    let secs = t.0.rem_euclid(86_400);
    let (year, month, day) = crate::time::civil_from_days(days);
    let (month, day) = (i64::from(month), i64::from(day));
    if !(0..=9999).contains(&year) {
        return [0xFF; 8];
    }
    let bcd = |v: i64| -> u8 {
        let v = v.rem_euclid(100) as u8;
        ((v / 10) << 4) | (v % 10)
    };
    [
        bcd(year / 100),
        bcd(year % 100),
        bcd(month),
        bcd(day),
        bcd(secs / 3_600),
        bcd(secs / 60 % 60),
        bcd(secs % 60),
        0,
    ]
}

/// The vitals one poll result carried (at most one value per vital).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PollValues {
    /// ECG heart rate.
    pub heart_rate: Option<Sample>,
    /// Pulse rate (pleth preferred).
    pub pulse_rate: Option<Sample>,
    /// SpO2.
    pub spo2: Option<Sample>,
    /// NIBP (skipped while the cuff measures).
    pub nibp: Option<Nibp>,
    /// The poll result's absolute time stamp.
    pub device_time: Option<DeviceTime>,
    pulse_from_pleth: bool,
}

impl PollValues {
    fn observation(&mut self, r: Reader<'_>) -> Option<()> {
        let (count, mut attrs) = {
            let mut r = r;
            r.list()?
        };
        let mut nibp: [Option<NuObs>; 3] = [None; 3];
        let mut nibp_time = None;
        for _ in 0..count {
            let id = attrs.u16()?;
            let len = attrs.u16()?;
            let mut v = Reader::new(attrs.take(usize::from(len))?);
            match id {
                NOM_ATTR_NU_VAL_OBS => {
                    let obs = NuObs::read(&mut v)?;
                    self.numeric(obs, &mut nibp);
                }
                NOM_ATTR_NU_CMPD_VAL_OBS => {
                    let (n, mut entries) = v.list()?;
                    for _ in 0..n {
                        let obs = NuObs::read(&mut entries)?;
                        self.numeric(obs, &mut nibp);
                    }
                }
                NOM_ATTR_TIME_STAMP_ABS => nibp_time = decode_abs_time(v.take(8)?),
                _ => {}
            }
        }
        if nibp.iter().any(Option::is_some) && self.nibp.is_none() {
            let ongoing = nibp
                .iter()
                .flatten()
                .any(|o| o.state & STATE_MSMT_ONGOING != 0);
            if !ongoing {
                let part = |o: Option<NuObs>| {
                    o.map_or(Sample::missing(Validity::Unavailable), |o| {
                        o.sample(PRESSURE_UNITS)
                    })
                };
                self.nibp = Some(Nibp {
                    systolic: part(nibp[0]),
                    diastolic: part(nibp[1]),
                    mean: part(nibp[2]),
                    measured_at: nibp_time,
                    mode: NibpMode::Unknown,
                });
            }
        }
        Some(())
    }

    fn numeric(&mut self, o: NuObs, nibp: &mut [Option<NuObs>; 3]) {
        match o.physio_id {
            NOM_ECG_CARD_BEAT_RATE => {
                self.heart_rate.get_or_insert(o.sample(RATE_UNITS));
            }
            NOM_PLETH_PULS_RATE if !self.pulse_from_pleth => {
                self.pulse_rate = Some(o.sample(RATE_UNITS));
                self.pulse_from_pleth = true;
            }
            NOM_PULS_RATE => {
                self.pulse_rate.get_or_insert(o.sample(RATE_UNITS));
            }
            NOM_PULS_OXIM_SAT_O2 => {
                self.spo2.get_or_insert(o.sample(PERCENT_UNITS));
            }
            NOM_PRESS_BLD_NONINV_SYS => nibp[0] = Some(o),
            NOM_PRESS_BLD_NONINV_DIA => nibp[1] = Some(o),
            NOM_PRESS_BLD_NONINV_MEAN => nibp[2] = Some(o),
            _ => {}
        }
    }
}

// -------------------------------------------------------------- messages

/// A managed object id (class, context, handle).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ManagedObject {
    /// Object class (33 = MDS).
    pub class: u16,
    /// MDS context id.
    pub context: u16,
    /// Object handle.
    pub handle: u16,
}

impl ManagedObject {
    /// The MDS object polls are addressed to.
    pub const MDS: ManagedObject = ManagedObject {
        class: NOM_MOC_VMS_MDS,
        context: 0,
        handle: 0,
    };

    fn read(r: &mut Reader<'_>) -> Option<Self> {
        Some(ManagedObject {
            class: r.u16()?,
            context: r.u16()?,
            handle: r.u16()?,
        })
    }

    fn write(&self, w: &mut Writer) {
        w.u16(self.class);
        w.u16(self.context);
        w.u16(self.handle);
    }
}

/// Where a linked result stands in its sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkedState {
    /// First of several.
    First,
    /// Neither first nor last.
    Middle,
    /// Last of several.
    Last,
}

/// One decoded frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Message {
    /// Session: association request (host -> monitor).
    AssociationRequest,
    /// Session: the monitor accepts the association.
    AssociationAccept,
    /// Session: the monitor refuses the association.
    AssociationRefuse,
    /// Session: release request.
    ReleaseRequest,
    /// Session: release response.
    ReleaseResponse,
    /// Session: abort.
    Abort,
    /// The monitor's MDS Create event report; must be answered.
    MdsCreate {
        /// Invoke id to echo in the event result.
        invoke_id: u16,
        /// The MDS object.
        managed_object: ManagedObject,
    },
    /// The host's event result for the MDS Create.
    EventResult {
        /// Echoed invoke id.
        invoke_id: u16,
    },
    /// A poll request (host -> monitor).
    PollRequest {
        /// Invoke id to echo in the result.
        invoke_id: u16,
        /// Poll number to echo in the result.
        poll_number: u16,
    },
    /// A poll result (or one part of a linked result).
    PollResult {
        /// Echoed invoke id.
        invoke_id: u16,
        /// Echoed poll number.
        poll_number: u16,
        /// `Some` for a linked (partial) result.
        linked: Option<LinkedState>,
        /// The numerics it carried.
        values: PollValues,
    },
    /// A well-formed message this implementation does not act on.
    Other,
}

/// Parses the data of one frame (after header and FCS checks).
pub fn parse_message(data: &[u8]) -> Result<Message, DropReason> {
    let first = *data.first().ok_or(DropReason::Malformed)?;
    let session = match first {
        SESSION_CONNECT => Some(Message::AssociationRequest),
        SESSION_ACCEPT => Some(Message::AssociationAccept),
        SESSION_REFUSE => Some(Message::AssociationRefuse),
        SESSION_FINISH => Some(Message::ReleaseRequest),
        SESSION_DISCONNECT => Some(Message::ReleaseResponse),
        SESSION_ABORT => Some(Message::Abort),
        _ => None,
    };
    if let Some(m) = session {
        return if data.len() >= 2 {
            Ok(m)
        } else {
            Err(DropReason::Malformed)
        };
    }
    parse_data_export(data).ok_or(DropReason::Malformed)
}

fn parse_data_export(data: &[u8]) -> Option<Message> {
    let mut r = Reader::new(data);
    if r.u16()? != SPPDU_SESSION_ID {
        return None;
    }
    let _context = r.u16()?;
    let ro_type = r.u16()?;
    let mut body = r.sized()?;
    match ro_type {
        ROIV_APDU => {
            let invoke_id = body.u16()?;
            let command = body.u16()?;
            let mut arg = body.sized()?;
            let managed_object = ManagedObject::read(&mut arg)?;
            match command {
                CMD_EVENT_REPORT | CMD_CONFIRMED_EVENT_REPORT => {
                    let _event_time = arg.u32()?;
                    if arg.u16()? == NOM_NOTI_MDS_CREAT {
                        return Some(Message::MdsCreate {
                            invoke_id,
                            managed_object,
                        });
                    }
                }
                CMD_CONFIRMED_ACTION => {
                    let _scope = arg.u32()?;
                    let action = arg.u16()?;
                    let mut req = arg.sized()?;
                    if action == NOM_ACT_POLL_MDIB_DATA_EXT || action == NOM_ACT_POLL_MDIB_DATA {
                        return Some(Message::PollRequest {
                            invoke_id,
                            poll_number: req.u16()?,
                        });
                    }
                }
                _ => {}
            }
            Some(Message::Other)
        }
        RORS_APDU | ROLRS_APDU => {
            let linked = if ro_type == ROLRS_APDU {
                let state = body.u8()?;
                let _count = body.u8()?;
                Some(match state {
                    1 => LinkedState::First,
                    3 => LinkedState::Last,
                    _ => LinkedState::Middle,
                })
            } else {
                None
            };
            let invoke_id = body.u16()?;
            let command = body.u16()?;
            let mut res = body.sized()?;
            match command {
                CMD_CONFIRMED_EVENT_REPORT => Some(Message::EventResult { invoke_id }),
                CMD_CONFIRMED_ACTION => {
                    let _mo = ManagedObject::read(&mut res)?;
                    let action = res.u16()?;
                    let reply = res.sized()?;
                    let extended = match action {
                        NOM_ACT_POLL_MDIB_DATA_EXT => true,
                        NOM_ACT_POLL_MDIB_DATA => false,
                        _ => return Some(Message::Other),
                    };
                    let (poll_number, values) = parse_poll_reply(reply, extended)?;
                    Some(Message::PollResult {
                        invoke_id,
                        poll_number,
                        linked,
                        values,
                    })
                }
                _ => Some(Message::Other),
            }
        }
        ROER_APDU => Some(Message::Other),
        _ => None,
    }
}

/// PollMdibDataReply(Ext): numbers, time stamps, then the PollInfoList of
/// SingleContextPolls of ObservationPolls of attribute lists.
fn parse_poll_reply(mut r: Reader<'_>, extended: bool) -> Option<(u16, PollValues)> {
    let poll_number = r.u16()?;
    if extended {
        let _sequence_no = r.u16()?;
    }
    let _rel_time = r.u32()?;
    let abs_time = r.take(8)?;
    let _polled_obj_type = r.take(4)?;
    let _attr_group = r.u16()?;
    let mut values = PollValues {
        device_time: decode_abs_time(abs_time),
        ..PollValues::default()
    };
    let (contexts, mut list) = r.list()?;
    for _ in 0..contexts {
        let _context_id = list.u16()?;
        let (observations, mut polls) = list.list()?;
        for _ in 0..observations {
            let _handle = polls.u16()?;
            // The observation's attribute list, bounded by its own length.
            let start = polls;
            let (_, _) = polls.list()?;
            values.observation(start)?;
        }
    }
    Some((poll_number, values))
}

// -------------------------------------------------------------- encoders

/// Session parameters sent with association request and accept.
const SESSION_PARAMS: [u8; 14] = [
    0x05, 0x08, 0x13, 0x01, 0x00, 0x16, 0x01, 0x02, 0x80, 0x00, 0x14, 0x02, 0x00, 0x02,
];

/// Presentation header of the association request (fixed ASN.1 preamble).
const ASSOC_REQ_PRESENTATION: [u8; 131] = [
    0x31, 0x80, 0xA0, 0x80, 0x80, 0x01, 0x01, 0x00, 0x00, 0xA2, 0x80, 0xA0, 0x03, 0x00, 0x00, 0x01,
    0xA4, 0x80, 0x30, 0x80, 0x02, 0x01, 0x01, 0x06, 0x04, 0x52, 0x01, 0x00, 0x01, 0x30, 0x80, 0x06,
    0x02, 0x51, 0x01, 0x00, 0x00, 0x00, 0x00, 0x30, 0x80, 0x02, 0x01, 0x02, 0x06, 0x0C, 0x2A, 0x86,
    0x48, 0xCE, 0x14, 0x02, 0x01, 0x00, 0x00, 0x00, 0x01, 0x01, 0x30, 0x80, 0x06, 0x0C, 0x2A, 0x86,
    0x48, 0xCE, 0x14, 0x02, 0x01, 0x00, 0x00, 0x00, 0x02, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x61, 0x80, 0x30, 0x80, 0x02, 0x01, 0x01, 0xA0, 0x80, 0x60, 0x80, 0xA1, 0x80, 0x06, 0x0C, 0x2A,
    0x86, 0x48, 0xCE, 0x14, 0x02, 0x01, 0x00, 0x00, 0x00, 0x03, 0x01, 0x00, 0x00, 0xBE, 0x80, 0x28,
    0x80, 0x06, 0x0C, 0x2A, 0x86, 0x48, 0xCE, 0x14, 0x02, 0x01, 0x00, 0x00, 0x00, 0x01, 0x01, 0x02,
    0x01, 0x02, 0x81,
];

/// Presentation header of the association accept.
const ASSOC_ACCEPT_PRESENTATION: [u8; 101] = [
    0x31, 0x80, 0xA0, 0x80, 0x80, 0x01, 0x01, 0x00, 0x00, 0xA2, 0x80, 0xA0, 0x03, 0x00, 0x00, 0x01,
    0xA5, 0x80, 0x30, 0x80, 0x80, 0x01, 0x00, 0x81, 0x02, 0x51, 0x01, 0x00, 0x00, 0x30, 0x80, 0x80,
    0x01, 0x00, 0x81, 0x0C, 0x2A, 0x86, 0x48, 0xCE, 0x14, 0x02, 0x01, 0x00, 0x00, 0x00, 0x02, 0x01,
    0x00, 0x00, 0x00, 0x00, 0x61, 0x80, 0x30, 0x80, 0x02, 0x01, 0x01, 0xA0, 0x80, 0x61, 0x80, 0xA1,
    0x80, 0x06, 0x0C, 0x2A, 0x86, 0x48, 0xCE, 0x14, 0x02, 0x01, 0x00, 0x00, 0x00, 0x03, 0x01, 0x00,
    0x00, 0xA2, 0x03, 0x02, 0x01, 0x00, 0xA3, 0x05, 0xA1, 0x03, 0x02, 0x01, 0x00, 0xBE, 0x80, 0x28,
    0x80, 0x02, 0x01, 0x02, 0x81,
];

/// Presentation part of a release request (`0x09`).
const RELEASE_REQ_PRESENTATION: [u8; 18] = [
    0x61, 0x80, 0x30, 0x80, 0x02, 0x01, 0x01, 0xA0, 0x80, 0x62, 0x80, 0x80, 0x01, 0x00, 0x00, 0x00,
    0x00, 0x00,
];

/// Presentation part of a release response (`0x0A`).
const RELEASE_RSP_PRESENTATION: [u8; 18] = [
    0x61, 0x80, 0x30, 0x80, 0x02, 0x01, 0x01, 0xA0, 0x80, 0x63, 0x80, 0x80, 0x01, 0x00, 0x00, 0x00,
    0x00, 0x00,
];

/// Presentation part of an abort (`0x19`).
const ABORT_PRESENTATION: [u8; 37] = [
    0xA0, 0x80, 0xA0, 0x80, 0x30, 0x80, 0x02, 0x01, 0x01, 0x06, 0x02, 0x51, 0x01, 0x00, 0x00, 0x00,
    0x00, 0x61, 0x80, 0x30, 0x80, 0x02, 0x01, 0x01, 0xA0, 0x80, 0x64, 0x80, 0x80, 0x01, 0x01, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00,
];

const MDDL_VERSION1: u32 = 0x8000_0000;
const NOMEN_VERSION: u32 = 0x4000_0000;
const SYST_CLIENT: u32 = 0x8000_0000;
const SYST_SERVER: u32 = 0x0080_0000;
const COLD_START: u32 = 0x2000_0000;
const HOT_START: u32 = 0x8000_0000;
const NOM_POLL_PROFILE_SUPPORT: u16 = 0x0001;
const NOM_ATTR_POLL_PROFILE_EXT: u16 = 0xF001;
const POLL_PROFILE_REV_0: u32 = 0x8000_0000;
const P_OPT_DYN_OBJECTS: u32 = 0x6000_0000;
/// Extended poll options: 1 s numerics period, and the rest the spec's
/// example asks for.
const POLL_EXT_OPTIONS: u32 = 0x8C00_0000;

/// MDSEUserInfoStd: versions, system type, startup mode, no options, and the
/// poll profile (min poll period 1000 x 1/8 ms, MTUs 2500 / 1000).
fn push_user_info(w: &mut Writer, system_type: u32, startup: u32) {
    let words: [u32; 19] = [
        MDDL_VERSION1,
        NOMEN_VERSION,
        0, // functional units
        system_type,
        startup,
        0x0000_0000, // option_list: empty
        0x0001_002C, // supported_aprofiles: one AVA, 44 bytes
        (u32::from(NOM_POLL_PROFILE_SUPPORT) << 16) | 0x28,
        POLL_PROFILE_REV_0,
        1_000, // min poll period
        2_500, // max MTU rx
        1_000, // max MTU tx
        0xFFFF_FFFF,
        P_OPT_DYN_OBJECTS,
        0x0001_000C, // optional packages: one AVA, 12 bytes
        (u32::from(NOM_ATTR_POLL_PROFILE_EXT) << 16) | 0x08,
        POLL_EXT_OPTIONS,
        0, // no extended attributes
        0, // placeholder, not written
    ];
    for word in &words[..USER_INFO_LEN / 4] {
        w.u32(*word);
    }
}

const USER_INFO_LEN: usize = 72;

/// Session length indicator: one byte below 255, else 0xFF + u16.
fn push_li(w: &mut Writer, len: usize) {
    match u8::try_from(len) {
        Ok(l) if l < 0xFF => w.bytes(&[l]),
        _ => {
            w.bytes(&[0xFF]);
            w.u16(len.min(usize::from(u16::MAX)) as u16);
        }
    }
}

fn li_len(len: usize) -> usize {
    if len < 0xFF {
        1
    } else {
        3
    }
}

/// A session message with parameters and a presentation part
/// (`0xC1 LI presentation user-data trailer`), framed.
fn frame_session(
    kind: u8,
    params: &[u8],
    presentation: &[u8],
    user_info: Option<(u32, u32)>,
    trailer: usize,
    out: &mut Vec<u8>,
) {
    let user_len = if user_info.is_some() {
        1 + USER_INFO_LEN
    } else {
        0
    };
    let pres_len = presentation.len() + user_len + trailer;
    let session_len = params.len() + 1 + li_len(pres_len) + pres_len;
    let mut w = Writer::new();
    w.bytes(&[kind]);
    push_li(&mut w, session_len);
    w.bytes(params);
    w.bytes(&[0xC1]);
    push_li(&mut w, pres_len);
    w.bytes(presentation);
    if let Some((system, startup)) = user_info {
        w.bytes(&[USER_INFO_LEN as u8]);
        push_user_info(&mut w, system, startup);
    }
    for _ in 0..trailer {
        w.bytes(&[0]);
    }
    frame_message(w.as_slice(), out);
}

/// Host: the association request (as in the programming guide's example).
pub fn encode_association_request(out: &mut Vec<u8>) {
    frame_session(
        SESSION_CONNECT,
        &SESSION_PARAMS,
        &ASSOC_REQ_PRESENTATION,
        Some((SYST_CLIENT, COLD_START)),
        16,
        out,
    );
}

/// Monitor: the association accept.
pub fn encode_association_response(out: &mut Vec<u8>) {
    frame_session(
        SESSION_ACCEPT,
        &SESSION_PARAMS,
        &ASSOC_ACCEPT_PRESENTATION,
        Some((SYST_SERVER, HOT_START)),
        16,
        out,
    );
}

/// Monitor: refuse the association.
pub fn encode_refuse(out: &mut Vec<u8>) {
    frame_message(&[SESSION_REFUSE, 0x03, 0x32, 0x01, 0x00], out);
}

/// Either side: release request.
pub fn encode_release_request(out: &mut Vec<u8>) {
    frame_session(SESSION_FINISH, &[], &RELEASE_REQ_PRESENTATION, None, 4, out);
}

/// Either side: release response.
pub fn encode_release_response(out: &mut Vec<u8>) {
    frame_session(
        SESSION_DISCONNECT,
        &[],
        &RELEASE_RSP_PRESENTATION,
        None,
        4,
        out,
    );
}

/// Either side: abort the association.
pub fn encode_abort(out: &mut Vec<u8>) {
    frame_session(
        SESSION_ABORT,
        &[0x11, 0x01, 0x03],
        &ABORT_PRESENTATION,
        None,
        4,
        out,
    );
}

/// Largest data-export message the encoders build.
const MAX_EXPORT_LEN: usize = 512;

/// A fixed-capacity big-endian writer for data-export messages.
struct Writer {
    buf: [u8; MAX_EXPORT_LEN],
    len: usize,
}

impl Writer {
    fn new() -> Self {
        Writer {
            buf: [0; MAX_EXPORT_LEN],
            len: 0,
        }
    }
    fn bytes(&mut self, b: &[u8]) {
        if let Some(slot) = self.buf.get_mut(self.len..self.len + b.len()) {
            slot.copy_from_slice(b);
            self.len += b.len();
        }
    }
    fn u16(&mut self, v: u16) {
        self.bytes(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_be_bytes());
    }
    /// Reserves a u16 length slot; returns its position.
    fn len_slot(&mut self) -> usize {
        let at = self.len;
        self.u16(0);
        at
    }
    /// Fills a length slot with the byte count written after it.
    fn fill(&mut self, slot: usize) {
        let n = self.len.saturating_sub(slot + 2) as u16;
        if let Some(s) = self.buf.get_mut(slot..slot + 2) {
            s.copy_from_slice(&n.to_be_bytes());
        }
    }
    fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Writes SPpdu + ROapdus header; returns the ROapdus length slot.
fn export_header(w: &mut Writer, ro_type: u16) -> usize {
    w.u16(SPPDU_SESSION_ID);
    w.u16(PRESENTATION_CONTEXT);
    w.u16(ro_type);
    w.len_slot()
}

/// Monitor: the MDS Create event report the host must answer.
pub fn encode_mds_create_event(invoke_id: u16, out: &mut Vec<u8>) {
    let mut w = Writer::new();
    let ro = export_header(&mut w, ROIV_APDU);
    w.u16(invoke_id);
    w.u16(CMD_CONFIRMED_EVENT_REPORT);
    let arg = w.len_slot();
    ManagedObject::MDS.write(&mut w);
    w.u32(0); // event time
    w.u16(NOM_NOTI_MDS_CREAT);
    let info = w.len_slot();
    ManagedObject::MDS.write(&mut w); // MdsCreateInfo: the MDS, no attributes
    w.u32(0);
    w.fill(info);
    w.fill(arg);
    w.fill(ro);
    frame_message(w.as_slice(), out);
}

/// Host: the event result answering an MDS Create.
pub fn encode_event_result(invoke_id: u16, managed_object: ManagedObject, out: &mut Vec<u8>) {
    let mut w = Writer::new();
    let ro = export_header(&mut w, RORS_APDU);
    w.u16(invoke_id);
    w.u16(CMD_CONFIRMED_EVENT_REPORT);
    let res = w.len_slot();
    managed_object.write(&mut w);
    w.u32(0); // current time
    w.u16(NOM_NOTI_MDS_CREAT);
    w.u16(0);
    w.fill(res);
    w.fill(ro);
    frame_message(w.as_slice(), out);
}

/// Host: an extended poll for all numeric attributes.
pub fn encode_poll_request(invoke_id: u16, poll_number: u16, out: &mut Vec<u8>) {
    let mut w = Writer::new();
    let ro = export_header(&mut w, ROIV_APDU);
    w.u16(invoke_id);
    w.u16(CMD_CONFIRMED_ACTION);
    let arg = w.len_slot();
    ManagedObject::MDS.write(&mut w);
    w.u32(0); // scope
    w.u16(NOM_ACT_POLL_MDIB_DATA_EXT);
    let req = w.len_slot();
    w.u16(poll_number);
    w.u16(NOM_PART_OBJ);
    w.u16(NOM_MOC_VMO_METRIC_NU);
    w.u16(0); // all attribute groups
    w.u32(0); // no extra attributes
    w.fill(req);
    w.fill(arg);
    w.fill(ro);
    frame_message(w.as_slice(), out);
}

/// The wire state and FLOAT for a sample (`exponent` sets the resolution).
fn numeric_for(sample: Sample, exponent: i8) -> (u16, u32) {
    let nan = MANTISSA_NAN;
    let float = |v: f32| encode_float(v, exponent);
    match sample.validity {
        Validity::Valid => match float(sample.value) {
            Some(f) => (0, f),
            None => (0, MANTISSA_POS_INF),
        },
        Validity::Invalid => (STATE_INVALID, nan),
        Validity::Unavailable | Validity::SensorOff => (STATE_UNAVAILABLE, nan),
        Validity::UnderRange => (0, MANTISSA_NEG_INF),
        Validity::OverRange => (0, MANTISSA_POS_INF),
        Validity::Questionable | Validity::Artifact => {
            (STATE_QUESTIONABLE, float(sample.value).unwrap_or(nan))
        }
    }
}

fn nu_obs(physio_id: u16, unit: u16, sample: Sample, exponent: i8) -> NuObs {
    let (state, value) = numeric_for(sample, exponent);
    NuObs {
        physio_id,
        state,
        unit,
        value,
    }
}

/// Monitor: a poll result carrying `snapshot`'s numerics (HR, pleth pulse,
/// SpO2 as single numerics; NIBP as a compound numeric with its measurement
/// time). `linked` makes it one part of a linked result.
///
/// Resolution: rates 1/min, SpO2 0.1 %, NIBP 1 mmHg. Sensor-off is sent as
/// unavailable and artifact as questionable (the export has no such states).
pub fn encode_poll_result(
    invoke_id: u16,
    poll_number: u16,
    snapshot: &Snapshot,
    linked: Option<LinkedState>,
    out: &mut Vec<u8>,
) {
    let mut w = Writer::new();
    let ro = match linked {
        None => export_header(&mut w, RORS_APDU),
        Some(state) => {
            let ro = export_header(&mut w, ROLRS_APDU);
            w.bytes(&[
                match state {
                    LinkedState::First => 1,
                    LinkedState::Middle => 2,
                    LinkedState::Last => 3,
                },
                1,
            ]);
            ro
        }
    };
    w.u16(invoke_id);
    w.u16(CMD_CONFIRMED_ACTION);
    let res = w.len_slot();
    ManagedObject::MDS.write(&mut w);
    w.u16(NOM_ACT_POLL_MDIB_DATA_EXT);
    let reply = w.len_slot();
    w.u16(poll_number);
    w.u16(0); // sequence number
    w.u32(0); // relative time
    w.bytes(&encode_abs_time(snapshot.device_time));
    w.u16(NOM_PART_OBJ);
    w.u16(NOM_MOC_VMO_METRIC_NU);
    w.u16(0);
    // PollInfoList with one SingleContextPoll.
    w.u16(1);
    let contexts = w.len_slot();
    w.u16(0); // context id
    let observations: u16 = if snapshot.nibp.is_some() { 4 } else { 3 };
    w.u16(observations);
    let polls = w.len_slot();
    let singles = [
        (
            0x0010,
            nu_obs(
                NOM_ECG_CARD_BEAT_RATE,
                NOM_DIM_BEAT_PER_MIN,
                snapshot.heart_rate,
                0,
            ),
        ),
        (
            0x0011,
            nu_obs(
                NOM_PLETH_PULS_RATE,
                NOM_DIM_BEAT_PER_MIN,
                snapshot.pulse_rate,
                0,
            ),
        ),
        (
            0x0012,
            nu_obs(NOM_PULS_OXIM_SAT_O2, NOM_DIM_PERCENT, snapshot.spo2, -1),
        ),
    ];
    for (handle, obs) in singles {
        w.u16(handle);
        w.u16(1);
        let attrs = w.len_slot();
        w.u16(NOM_ATTR_NU_VAL_OBS);
        w.u16(10);
        obs.write(&mut w);
        w.fill(attrs);
    }
    if let Some(n) = snapshot.nibp {
        w.u16(0x0013);
        w.u16(if n.measured_at.is_some() { 2 } else { 1 });
        let attrs = w.len_slot();
        w.u16(NOM_ATTR_NU_CMPD_VAL_OBS);
        let cmpd = w.len_slot();
        w.u16(3);
        w.u16(30);
        for (id, s) in [
            (NOM_PRESS_BLD_NONINV_SYS, n.systolic),
            (NOM_PRESS_BLD_NONINV_DIA, n.diastolic),
            (NOM_PRESS_BLD_NONINV_MEAN, n.mean),
        ] {
            nu_obs(id, NOM_DIM_MMHG, s, 0).write(&mut w);
        }
        w.fill(cmpd);
        if let Some(t) = n.measured_at {
            w.u16(NOM_ATTR_TIME_STAMP_ABS);
            w.u16(8);
            w.bytes(&encode_abs_time(t));
        }
        w.fill(attrs);
    }
    w.fill(polls);
    w.fill(contexts);
    w.fill(reply);
    w.fill(res);
    w.fill(ro);
    frame_message(w.as_slice(), out);
}

// -------------------------------------------------------------- decoders

/// State shared by both decoders: framing, output queue, counters.
#[derive(Debug)]
struct Core {
    source: SourceId,
    deframer: Deframer,
    outputs: VecDeque<Output>,
    stats: DecodeStats,
}

impl Core {
    fn new(source: SourceId) -> Self {
        Core {
            source,
            deframer: Deframer::new(),
            outputs: VecDeque::with_capacity(64),
            stats: DecodeStats::default(),
        }
    }

    fn drop_frame(&mut self, reason: DropReason) {
        self.stats.count_drop(reason);
        self.outputs.push_back(Output::Dropped(reason));
    }

    /// Feeds one byte; returns a message when a frame completed and parsed.
    fn push(&mut self, b: u8) -> Option<Message> {
        match self.deframer.push(b)? {
            RxEvent::Drop(reason) => {
                self.drop_frame(reason);
                None
            }
            RxEvent::Frame => match parse_message(self.deframer.data()) {
                Ok(m) => {
                    self.stats.frames_ok += 1;
                    Some(m)
                }
                Err(reason) => {
                    self.drop_frame(reason);
                    None
                }
            },
        }
    }

    fn emit(&mut self, now: Instant, values: &PollValues) {
        let source = self.source;
        let device_time = values.device_time;
        let mut push = |measurement| {
            self.outputs.push_back(Output::Reading(Reading {
                source,
                arrival: now,
                device_time,
                measurement,
            }))
        };
        if let Some(s) = values.heart_rate {
            push(Measurement::HeartRate(s));
        }
        if let Some(s) = values.spo2 {
            push(Measurement::SpO2(s));
        }
        if let Some(s) = values.pulse_rate {
            push(Measurement::PulseRate(s));
        }
        if let Some(n) = values.nibp {
            push(Measurement::Nibp(n));
        }
    }
}

/// Decodes a monitor-side IntelliVue byte stream alone (a recording or a
/// tap on the monitor's transmit line): poll results become readings;
/// accept / abort / refuse / release become association notes.
#[derive(Debug)]
pub struct IntelliVueMonitorStream {
    core: Core,
}

impl IntelliVueMonitorStream {
    /// A decoder for `source`.
    pub fn new(source: SourceId) -> Self {
        IntelliVueMonitorStream {
            core: Core::new(source),
        }
    }
}

impl Protocol for IntelliVueMonitorStream {
    fn handle_bytes(&mut self, now: Instant, bytes: &[u8]) {
        self.core.stats.bytes = self.core.stats.bytes.wrapping_add(bytes.len() as u64);
        for &b in bytes {
            match self.core.push(b) {
                Some(Message::PollResult { values, .. }) => self.core.emit(now, &values),
                Some(Message::AssociationAccept) => self
                    .core
                    .outputs
                    .push_back(Output::Note(DeviceNote::Associated)),
                Some(
                    m @ (Message::Abort
                    | Message::AssociationRefuse
                    | Message::ReleaseRequest
                    | Message::ReleaseResponse),
                ) => {
                    let why = match m {
                        Message::Abort => AssociationProblem::Aborted,
                        Message::AssociationRefuse => AssociationProblem::Refused,
                        _ => AssociationProblem::Released,
                    };
                    self.core
                        .outputs
                        .push_back(Output::Note(DeviceNote::AssociationLost(why)))
                }
                _ => {}
            }
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.core.outputs.pop_front()
    }

    fn stats(&self) -> DecodeStats {
        self.core.stats
    }
}

/// Longest poll interval: polls are also the keep-alive.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// Timers of the host session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntelliVueConfig {
    /// Time between extended polls (capped at [`MAX_POLL_INTERVAL`]).
    pub poll_interval: Duration,
    /// How long to wait for the accept, and then for the MDS Create.
    pub association_timeout: Duration,
    /// No poll result for this long: the association is lost.
    pub data_timeout: Duration,
    /// First re-association delay; doubles after each failure.
    pub backoff_min: Duration,
    /// Longest re-association delay.
    pub backoff_max: Duration,
}

impl Default for IntelliVueConfig {
    fn default() -> Self {
        IntelliVueConfig {
            poll_interval: Duration::from_secs(1),
            association_timeout: Duration::from_secs(5),
            data_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// Where the host session stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// Waiting to (re)associate; `None` until the first timer call.
    Backoff(Option<Instant>),
    /// Association request sent; waiting for the accept until the deadline.
    AwaitingAccept(Instant),
    /// Accepted; waiting for the MDS Create until the deadline.
    AwaitingMdsCreate(Instant),
    /// Polling.
    Associated {
        /// When the next poll goes out.
        next_poll: Instant,
        /// When silence means the association is lost.
        data_deadline: Instant,
    },
    /// Released by [`IntelliVueHost::release`]; nothing more is sent.
    Released,
}

/// A message the host will send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tx {
    AssociationRequest,
    EventResult(u16, ManagedObject),
    Poll(u16, u16),
    Abort,
    ReleaseRequest,
    ReleaseResponse,
}

/// The host side of an IntelliVue Data Export session over the MIB port.
#[derive(Debug)]
pub struct IntelliVueHost {
    core: Core,
    config: IntelliVueConfig,
    state: SessionState,
    transmit: VecDeque<Tx>,
    backoff: Duration,
    invoke_id: u16,
    poll_number: u16,
    associations: u64,
}

impl IntelliVueHost {
    /// A host session for `source` with default timers.
    pub fn new(source: SourceId) -> Self {
        Self::with_config(source, IntelliVueConfig::default())
    }

    /// A host session with the given timers.
    pub fn with_config(source: SourceId, mut config: IntelliVueConfig) -> Self {
        let floor = Duration::from_millis(100);
        config.poll_interval = config.poll_interval.clamp(floor, MAX_POLL_INTERVAL);
        config.association_timeout = config.association_timeout.max(floor);
        config.data_timeout = config.data_timeout.max(config.poll_interval);
        config.backoff_min = config.backoff_min.max(floor);
        config.backoff_max = config.backoff_max.max(config.backoff_min);
        IntelliVueHost {
            core: Core::new(source),
            config,
            state: SessionState::Backoff(None),
            transmit: VecDeque::with_capacity(8),
            backoff: config.backoff_min,
            invoke_id: 0,
            poll_number: 0,
            associations: 0,
        }
    }

    /// The session state.
    pub fn state(&self) -> SessionState {
        self.state
    }

    /// How many associations were completed (MDS Create answered).
    pub fn associations(&self) -> u64 {
        self.associations
    }

    /// Releases the association for good (shutdown): a release request goes
    /// out and the session stays quiet afterwards.
    pub fn release(&mut self) {
        self.transmit.clear();
        if !matches!(
            self.state,
            SessionState::Backoff(_) | SessionState::Released
        ) {
            self.transmit.push_back(Tx::ReleaseRequest);
        }
        self.state = SessionState::Released;
    }

    fn send(&mut self, tx: Tx) {
        // At most a handful is ever queued; never grow past that.
        if self.transmit.len() < 8 {
            self.transmit.push_back(tx);
        }
    }

    fn is_session_up(&self) -> bool {
        matches!(
            self.state,
            SessionState::AwaitingAccept(_)
                | SessionState::AwaitingMdsCreate(_)
                | SessionState::Associated { .. }
        )
    }

    /// The association is gone: report it once, abort if we are the ones
    /// giving up, and wait before trying again.
    fn lose(&mut self, now: Instant, send_abort: bool, why: AssociationProblem) {
        if !self.is_session_up() {
            return;
        }
        if send_abort {
            self.send(Tx::Abort);
        }
        self.core
            .outputs
            .push_back(Output::Note(DeviceNote::AssociationLost(why)));
        self.state = SessionState::Backoff(Some(now + self.backoff));
        self.backoff = (self.backoff * 2).min(self.config.backoff_max);
    }

    fn poll(&mut self) {
        self.invoke_id = self.invoke_id.wrapping_add(1);
        self.poll_number = self.poll_number.wrapping_add(1);
        self.send(Tx::Poll(self.invoke_id, self.poll_number));
    }

    fn on_message(&mut self, now: Instant, m: Message) {
        match (m, self.state) {
            (_, SessionState::Released) => {}
            (Message::AssociationAccept, SessionState::AwaitingAccept(_)) => {
                self.state = SessionState::AwaitingMdsCreate(now + self.config.association_timeout);
            }
            (
                Message::MdsCreate {
                    invoke_id,
                    managed_object,
                },
                SessionState::AwaitingMdsCreate(_) | SessionState::Associated { .. },
            ) => {
                self.send(Tx::EventResult(invoke_id, managed_object));
                if matches!(self.state, SessionState::AwaitingMdsCreate(_)) {
                    self.associations = self.associations.wrapping_add(1);
                    self.core
                        .outputs
                        .push_back(Output::Note(DeviceNote::Associated));
                    self.poll();
                    self.state = SessionState::Associated {
                        next_poll: now + self.config.poll_interval,
                        data_deadline: now + self.config.data_timeout,
                    };
                }
            }
            (Message::PollResult { values, .. }, SessionState::Associated { next_poll, .. }) => {
                self.backoff = self.config.backoff_min;
                self.state = SessionState::Associated {
                    next_poll,
                    data_deadline: now + self.config.data_timeout,
                };
                self.core.emit(now, &values);
            }
            (Message::ReleaseRequest, _) => {
                if self.is_session_up() {
                    self.send(Tx::ReleaseResponse);
                }
                self.lose(now, false, AssociationProblem::Released);
            }
            (Message::Abort, _) => self.lose(now, false, AssociationProblem::Aborted),
            (Message::AssociationRefuse, _) => self.lose(now, false, AssociationProblem::Refused),
            (Message::ReleaseResponse, _) => self.lose(now, false, AssociationProblem::Released),
            _ => {}
        }
    }
}

impl Protocol for IntelliVueHost {
    fn handle_bytes(&mut self, now: Instant, bytes: &[u8]) {
        self.core.stats.bytes = self.core.stats.bytes.wrapping_add(bytes.len() as u64);
        for &b in bytes {
            if let Some(m) = self.core.push(b) {
                self.on_message(now, m);
            }
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            SessionState::Released => {}
            SessionState::Backoff(until) => {
                if until.is_none_or(|t| now >= t) {
                    self.send(Tx::AssociationRequest);
                    self.state =
                        SessionState::AwaitingAccept(now + self.config.association_timeout);
                }
            }
            SessionState::AwaitingAccept(deadline) => {
                if now >= deadline {
                    self.lose(now, true, AssociationProblem::NoAnswer);
                }
            }
            SessionState::AwaitingMdsCreate(deadline) => {
                if now >= deadline {
                    self.lose(now, true, AssociationProblem::NoMdsCreate);
                }
            }
            SessionState::Associated {
                next_poll,
                data_deadline,
            } => {
                if now >= data_deadline {
                    self.lose(now, true, AssociationProblem::DataTimeout);
                } else if now >= next_poll {
                    self.poll();
                    // Keep the cadence; after a long gap, restart it from now.
                    let mut next = next_poll + self.config.poll_interval;
                    if next <= now {
                        next = now + self.config.poll_interval;
                    }
                    self.state = SessionState::Associated {
                        next_poll: next,
                        data_deadline,
                    };
                }
            }
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.core.outputs.pop_front()
    }

    fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool {
        let Some(tx) = self.transmit.pop_front() else {
            return false;
        };
        match tx {
            Tx::AssociationRequest => encode_association_request(out),
            Tx::EventResult(invoke_id, mo) => encode_event_result(invoke_id, mo, out),
            Tx::Poll(invoke_id, poll_number) => encode_poll_request(invoke_id, poll_number, out),
            Tx::Abort => encode_abort(out),
            Tx::ReleaseRequest => encode_release_request(out),
            Tx::ReleaseResponse => encode_release_response(out),
        }
        true
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            SessionState::Released => None,
            SessionState::Backoff(until) => Some(until.unwrap_or(Instant::ZERO)),
            SessionState::AwaitingAccept(d) | SessionState::AwaitingMdsCreate(d) => Some(d),
            SessionState::Associated {
                next_poll,
                data_deadline,
            } => Some(next_poll.min(data_deadline)),
        }
    }

    fn stats(&self) -> DecodeStats {
        self.core.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MX800_FRAME: &str = "c0 11 01 00 20 e1 00 00 02 00 02 00 18 00 00 00 03 00 12 00 21 00 00 00 00 00 01 00 08 f2 3a 00 04 00 00 00 00 7b d2 c1";
    const HR_60: &str = "09 50 00 0a 41 82 00 00 0a a0 00 00 00 3c";
    const NIBP_UNAVAILABLE: &str = "09 4b 00 22 00 03 00 1e 4a 05 20 00 0f 20 00 7f ff ff 4a 06 20 00 0f 20 00 7f ff ff 4a 07 20 00 0f 20 00 7f ff ff";
    const SPO2_NAN: &str = "09 50 00 0a 4b b8 80 00 02 20 00 7f ff ff";
    /// The association request of the programming guide's example.
    const ASSOC_REQUEST: &str = "0d ec 05 08 13 01 00 16 01 02 80 00 14 02 00 02 c1 dc 31 80 a0 80 80 01 01 00 00 a2 80 a0 03 00 00 01 a4 80 30 80 02 01 01 06 04 52 01 00 01 30 80 06 02 51 01 00 00 00 00 30 80 02 01 02 06 0c 2a 86 48 ce 14 02 01 00 00 00 01 01 30 80 06 0c 2a 86 48 ce 14 02 01 00 00 00 02 01 00 00 00 00 00 00 61 80 30 80 02 01 01 a0 80 60 80 a1 80 06 0c 2a 86 48 ce 14 02 01 00 00 00 03 01 00 00 be 80 28 80 06 0c 2a 86 48 ce 14 02 01 00 00 00 01 01 02 01 02 81 48 80 00 00 00 40 00 00 00 00 00 00 00 80 00 00 00 20 00 00 00 00 00 00 00 00 01 00 2c 00 01 00 28 80 00 00 00 00 00 03 e8 00 00 09 c4 00 00 03 e8 ff ff ff ff 60 00 00 00 00 01 00 0c f0 01 00 08 8c 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00";

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|h| u8::from_str_radix(h, 16).unwrap())
            .collect()
    }

    fn drain(p: &mut impl Protocol) -> Vec<Output> {
        std::iter::from_fn(|| p.poll_output()).collect()
    }

    fn measurements(outs: &[Output]) -> Vec<Measurement> {
        outs.iter()
            .filter_map(|o| match o {
                Output::Reading(r) => Some(r.measurement),
                _ => None,
            })
            .collect()
    }

    fn notes(outs: &[Output]) -> Vec<DeviceNote> {
        outs.iter()
            .filter_map(|o| match o {
                Output::Note(n) => Some(*n),
                _ => None,
            })
            .collect()
    }

    /// Deframes `bytes` and parses every good frame.
    fn messages(bytes: &[u8]) -> Vec<Message> {
        let mut d = Deframer::new();
        let mut out = Vec::new();
        for &b in bytes {
            if let Some(RxEvent::Frame) = d.push(b) {
                out.push(parse_message(d.data()).unwrap());
            }
        }
        out
    }

    /// Poll values of one observation whose attribute list holds `attrs`.
    fn observe(attrs: &[Vec<u8>]) -> PollValues {
        let body: Vec<u8> = attrs.concat();
        let mut list = (attrs.len() as u16).to_be_bytes().to_vec();
        list.extend_from_slice(&(body.len() as u16).to_be_bytes());
        list.extend_from_slice(&body);
        let mut v = PollValues::default();
        v.observation(Reader::new(&list)).unwrap();
        v
    }

    fn single(physio: u16, state: u16, unit: u16, value: u32) -> Vec<u8> {
        let mut a = vec![0x09, 0x50, 0x00, 0x0a];
        for x in [physio, state, unit] {
            a.extend_from_slice(&x.to_be_bytes());
        }
        a.extend_from_slice(&value.to_be_bytes());
        a
    }

    #[test]
    fn fcs_vectors() {
        let mut out = Vec::new();
        frame_raw(&[0x3a, 0x71], &mut out);
        assert_eq!(out, hex("c0 3a 71 9b 26 c1"));
        out.clear();
        frame_raw(&[0x3a, 0x91], &mut out);
        assert_eq!(out, hex("c0 3a 91 95 7d e1 c1"));
        assert_eq!(fcs16(&[0x3a, 0x71]), 0x269b);
        // Both pass the FCS check but carry no header: malformed, not checksum.
        let mut p = IntelliVueMonitorStream::new(SourceId(0));
        p.handle_bytes(
            Instant::ZERO,
            &hex("c0 3a 71 9b 26 c1 c0 3a 91 95 7d e1 c1"),
        );
        let s = p.stats();
        assert_eq!(s.dropped[DropReason::Malformed.index()], 2);
        assert_eq!(s.dropped_total(), 2);
        // A flipped FCS byte is a checksum drop.
        p.handle_bytes(Instant::ZERO, &hex("c0 3a 71 9b 27 c1"));
        assert_eq!(p.stats().dropped[DropReason::Checksum.index()], 1);
    }

    #[test]
    fn real_mx800_frame_parses() {
        let bytes = hex(MX800_FRAME);
        assert_eq!(messages(&bytes), vec![Message::Other]);
        let mut p = IntelliVueMonitorStream::new(SourceId(0));
        p.handle_bytes(Instant::from_secs(1), &bytes);
        assert_eq!(p.stats().frames_ok, 1);
        assert_eq!(p.stats().dropped_total(), 0);
        assert!(drain(&mut p).is_empty());
        // Our framing reproduces it byte for byte from its content.
        let mut out = Vec::new();
        frame_message(&bytes[5..bytes.len() - 3], &mut out);
        assert_eq!(out, bytes);
        // One corrupted byte: dropped by the FCS.
        let mut bad = bytes.clone();
        bad[20] ^= 0x04;
        p.handle_bytes(Instant::from_secs(2), &bad);
        assert_eq!(p.stats().dropped[DropReason::Checksum.index()], 1);
    }

    #[test]
    fn attribute_snippets_decode_as_stated() {
        let v = observe(&[hex(HR_60)]);
        assert_eq!(v.heart_rate, Some(Sample::valid(60.0)));
        let v = observe(&[hex(SPO2_NAN)]);
        let s = v.spo2.unwrap();
        assert_eq!(s.validity, Validity::Invalid);
        assert!(s.value.is_nan());
        let v = observe(&[hex(NIBP_UNAVAILABLE)]);
        let n = v.nibp.unwrap();
        for s in [n.systolic, n.diastolic, n.mean] {
            assert_eq!(s.validity, Validity::Unavailable);
        }
        assert_eq!(n.measured_at, None);
    }

    #[test]
    fn special_mantissas_are_matched_whatever_the_exponent() {
        for (raw, v) in [
            (0x007F_FFFF, Validity::Invalid),
            (0xFE7F_FFFF, Validity::Invalid),
            (0x0280_0000, Validity::Invalid),
            (0x017F_FFFE, Validity::OverRange),
            (0xFF80_0002, Validity::UnderRange),
        ] {
            assert_eq!(decode_float(raw), Err(v), "{raw:#x}");
            let s = observe(&[single(0x4182, 0, 0x0AA0, raw)])
                .heart_rate
                .unwrap();
            assert_eq!(s.validity, v);
        }
        assert_eq!(decode_float(0xFF00_0385), Ok(90.1));
        assert_eq!(decode_float(0xFFFF_FFFB), Ok(-0.5));
        assert_eq!(decode_float(0x0000_003C), Ok(60.0));
    }

    #[test]
    fn state_bits_map_to_validity() {
        let hr = |state: u16| {
            observe(&[single(0x4182, state, 0x0AA0, 72)])
                .heart_rate
                .unwrap()
        };
        assert_eq!(hr(0), Sample::valid(72.0));
        // Alarm, validated and ongoing bits are no reason to distrust a value.
        assert_eq!(hr(0x0080 | 0x0020 | 0x0002 | 0x0001), Sample::valid(72.0));
        assert_eq!(hr(0x8000).validity, Validity::Invalid);
        assert_eq!(hr(0x0800).validity, Validity::Invalid, "test data");
        assert_eq!(hr(0x0400).validity, Validity::Invalid, "demo data");
        assert_eq!(hr(0x2000).validity, Validity::Unavailable);
        assert_eq!(hr(0x1000).validity, Validity::Unavailable);
        let q = hr(0x4000);
        assert_eq!((q.validity, q.value), (Validity::Questionable, 72.0));
        assert_eq!(hr(0x0040).validity, Validity::Questionable);
        // Invalid wins over everything else.
        assert_eq!(hr(0x4000 | 0x8000).validity, Validity::Invalid);
    }

    #[test]
    fn units_are_checked_and_converted() {
        // HR in percent: not a heart rate we can trust.
        let s = observe(&[single(0x4182, 0, 0x0220, 72)])
            .heart_rate
            .unwrap();
        assert_eq!(s.validity, Validity::Invalid);
        // NIBP in kPa (exponent -1): 16.0 kPa = 120.0 mmHg.
        let mut cmpd = vec![0x09, 0x4b, 0x00, 0x22, 0x00, 0x03, 0x00, 0x1e];
        for id in [0x4A05u16, 0x4A06, 0x4A07] {
            cmpd.extend_from_slice(&id.to_be_bytes());
            cmpd.extend_from_slice(&[0x00, 0x00, 0x0f, 0x03, 0xff, 0x00, 0x00, 0xa0]);
        }
        let n = observe(&[cmpd]).nibp.unwrap();
        assert!((n.systolic.value - 120.01).abs() < 0.01, "{:?}", n.systolic);
        assert!(n.systolic.validity.is_valid());
    }

    #[test]
    fn nibp_time_stamp_and_ongoing_measurement() {
        let t = DeviceTime(1_700_000_000);
        let stamp = |t| {
            let mut a = vec![0x09, 0x90, 0x00, 0x08];
            a.extend_from_slice(&encode_abs_time(t));
            a
        };
        let cmpd = |state: u16| {
            let mut c = vec![0x09, 0x4b, 0x00, 0x22, 0x00, 0x03, 0x00, 0x1e];
            for (id, v) in [(0x4A05u16, 120u32), (0x4A06, 80), (0x4A07, 93)] {
                c.extend_from_slice(&id.to_be_bytes());
                c.extend_from_slice(&state.to_be_bytes());
                c.extend_from_slice(&0x0F20u16.to_be_bytes());
                c.extend_from_slice(&v.to_be_bytes());
            }
            c
        };
        let n = observe(&[cmpd(0), stamp(t)]).nibp.unwrap();
        assert_eq!(n.measured_at, Some(t));
        assert_eq!(n.systolic, Sample::valid(120.0));
        assert_eq!(n.diastolic, Sample::valid(80.0));
        assert_eq!(n.mean, Sample::valid(93.0));
        assert!(observe(&[cmpd(0x0020), stamp(t)]).nibp.is_none());
        // Single NIBP numerics (no compound) assemble too; missing parts unavailable.
        let n = observe(&[single(0x4A05, 0, 0x0F20, 110)]).nibp.unwrap();
        assert_eq!(n.systolic, Sample::valid(110.0));
        assert_eq!(n.mean.validity, Validity::Unavailable);
    }

    #[test]
    fn pleth_pulse_is_preferred_over_generic_pulse() {
        let pleth = single(0x4822, 0, 0x0AA0, 70);
        let generic = single(0x480A, 0, 0x0AA0, 99);
        for attrs in [
            vec![pleth.clone(), generic.clone()],
            vec![generic.clone(), pleth.clone()],
        ] {
            assert_eq!(observe(&attrs).pulse_rate, Some(Sample::valid(70.0)));
        }
        assert_eq!(observe(&[generic]).pulse_rate, Some(Sample::valid(99.0)));
    }

    #[test]
    fn abs_time_round_trips_and_rejects_non_bcd() {
        for t in [0_i64, 951_782_400, 1_700_000_000, 4_102_444_799] {
            assert_eq!(
                decode_abs_time(&encode_abs_time(DeviceTime(t))),
                Some(DeviceTime(t))
            );
        }
        assert_eq!(
            encode_abs_time(DeviceTime(1_700_000_000)),
            [0x20, 0x23, 0x11, 0x14, 0x22, 0x13, 0x20, 0x00]
        );
        assert_eq!(decode_abs_time(&[0xFF; 8]), None);
        assert_eq!(decode_abs_time(&[0x20, 0x24, 0x13, 0x01, 0, 0, 0, 0]), None);
    }

    #[test]
    fn association_request_matches_the_guide() {
        let mut out = Vec::new();
        encode_association_request(&mut out);
        let mut want = Vec::new();
        frame_message(&hex(ASSOC_REQUEST), &mut want);
        assert_eq!(out, want);
        assert_eq!(messages(&out), vec![Message::AssociationRequest]);
    }

    #[test]
    fn session_messages_round_trip() {
        type Encoder = fn(&mut Vec<u8>);
        let cases: [(Encoder, Message); 5] = [
            (encode_association_response, Message::AssociationAccept),
            (encode_refuse, Message::AssociationRefuse),
            (encode_release_request, Message::ReleaseRequest),
            (encode_release_response, Message::ReleaseResponse),
            (encode_abort, Message::Abort),
        ];
        for (encode, want) in cases {
            let mut out = Vec::new();
            encode(&mut out);
            assert_eq!(messages(&out), vec![want]);
        }
        let mut out = Vec::new();
        encode_abort(&mut out);
        // Session length and presentation length agree with the content.
        let data = &messages_data(&out);
        assert_eq!(data[0], 0x19);
        assert_eq!(usize::from(data[1]) + 2, data.len());
        let mut out = Vec::new();
        encode_mds_create_event(42, &mut out);
        assert_eq!(
            messages(&out),
            vec![Message::MdsCreate {
                invoke_id: 42,
                managed_object: ManagedObject::MDS
            }]
        );
        out.clear();
        encode_event_result(42, ManagedObject::MDS, &mut out);
        assert_eq!(messages(&out), vec![Message::EventResult { invoke_id: 42 }]);
        out.clear();
        encode_poll_request(7, 9, &mut out);
        assert_eq!(
            messages(&out),
            vec![Message::PollRequest {
                invoke_id: 7,
                poll_number: 9
            }]
        );
    }

    fn messages_data(frame: &[u8]) -> Vec<u8> {
        let mut d = Deframer::new();
        for &b in frame {
            if let Some(RxEvent::Frame) = d.push(b) {
                return d.data().to_vec();
            }
        }
        panic!("no frame")
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            heart_rate: Sample::valid(72.0),
            pulse_rate: Sample::valid(71.0),
            spo2: Sample::valid(97.5),
            nibp: Some(Nibp {
                systolic: Sample::valid(121.0),
                diastolic: Sample::valid(79.0),
                mean: Sample::valid(93.0),
                measured_at: Some(DeviceTime(1_700_000_000)),
                mode: NibpMode::Unknown,
            }),
            device_time: DeviceTime(1_700_000_060),
        }
    }

    #[test]
    fn poll_result_decodes_on_the_monitor_stream() {
        let mut bytes = Vec::new();
        encode_poll_result(3, 4, &snapshot(), None, &mut bytes);
        let mut p = IntelliVueMonitorStream::new(SourceId(2));
        p.handle_bytes(Instant::from_secs(5), &bytes);
        let outs = drain(&mut p);
        assert_eq!(outs.len(), 4);
        for o in &outs {
            let Output::Reading(r) = o else {
                panic!("{o:?}")
            };
            assert_eq!(r.source, SourceId(2));
            assert_eq!(r.arrival, Instant::from_secs(5));
            assert_eq!(r.device_time, Some(DeviceTime(1_700_000_060)));
        }
        let s = snapshot();
        assert_eq!(
            measurements(&outs),
            vec![
                Measurement::HeartRate(s.heart_rate),
                Measurement::SpO2(s.spo2),
                Measurement::PulseRate(s.pulse_rate),
                Measurement::Nibp(s.nibp.unwrap()),
            ]
        );
    }

    #[test]
    fn linked_results_each_carry_readings() {
        let mut bytes = Vec::new();
        encode_poll_result(3, 4, &snapshot(), Some(LinkedState::First), &mut bytes);
        encode_poll_result(3, 4, &snapshot(), Some(LinkedState::Last), &mut bytes);
        let m = messages(&bytes);
        assert!(matches!(
            m[0],
            Message::PollResult {
                linked: Some(LinkedState::First),
                poll_number: 4,
                invoke_id: 3,
                ..
            }
        ));
        assert!(matches!(
            m[1],
            Message::PollResult {
                linked: Some(LinkedState::Last),
                ..
            }
        ));
        let mut p = IntelliVueMonitorStream::new(SourceId(2));
        p.handle_bytes(Instant::ZERO, &bytes);
        assert_eq!(measurements(&drain(&mut p)).len(), 8);
    }

    #[test]
    fn garbage_truncation_abort_and_oversize_resynchronise() {
        let mut good = Vec::new();
        encode_poll_result(1, 1, &snapshot(), None, &mut good);
        let mut bytes = b"line noise".to_vec();
        bytes.extend_from_slice(&good);
        // Cut short by a new frame start.
        bytes.extend_from_slice(&good[..40]);
        bytes.extend_from_slice(&good);
        // Aborted with 0x7D 0xC1.
        bytes.extend_from_slice(&good[..30]);
        bytes.extend_from_slice(&[0x7D, 0xC1]);
        bytes.extend_from_slice(&good);
        // Oversized.
        bytes.push(BOF);
        bytes.extend(std::iter::repeat_n(0x55, MAX_FRAME_LEN + 10));
        bytes.push(EOF);
        bytes.extend_from_slice(&good);
        // Wrong length in the header (FCS recomputed): malformed.
        let mut wrong = vec![0x11, 0x01, 0x00, 0x05, 0xE1, 0x00];
        let mut out = Vec::new();
        frame_raw(&wrong, &mut out);
        bytes.extend_from_slice(&out);
        // Data export header with an unknown RO type: malformed.
        wrong = vec![0xE1, 0x00, 0x00, 0x02, 0x00, 0x09, 0x00, 0x00];
        frame_message(&wrong, &mut bytes);
        bytes.extend_from_slice(&good);

        let mut p = IntelliVueMonitorStream::new(SourceId(0));
        p.handle_bytes(Instant::ZERO, &bytes);
        let outs = drain(&mut p);
        let s = p.stats();
        assert_eq!(s.frames_ok, 5);
        assert_eq!(s.dropped[DropReason::Garbage.index()], 1);
        assert_eq!(s.dropped[DropReason::Truncated.index()], 2);
        assert_eq!(s.dropped[DropReason::Oversized.index()], 1);
        assert_eq!(s.dropped[DropReason::Malformed.index()], 2);
        assert_eq!(s.dropped[DropReason::Checksum.index()], 0);
        assert_eq!(measurements(&outs).len(), 5 * 4);
        assert_eq!(s.bytes, bytes.len() as u64);
    }

    /// A monitor built from the encoders: answers association, MDS Create
    /// and polls with the snapshot; can be told to fall silent.
    struct ScriptedMonitor {
        snapshot: Snapshot,
        silent: bool,
        refuse: bool,
        deframer: Deframer,
        polls: u32,
        event_results: u32,
        aborts: u32,
        release_responses: u32,
    }

    impl ScriptedMonitor {
        fn new() -> Self {
            ScriptedMonitor {
                snapshot: snapshot(),
                silent: false,
                refuse: false,
                deframer: Deframer::new(),
                polls: 0,
                event_results: 0,
                aborts: 0,
                release_responses: 0,
            }
        }

        fn receive(&mut self, bytes: &[u8]) -> Vec<u8> {
            let mut reply = Vec::new();
            for &b in bytes {
                let Some(RxEvent::Frame) = self.deframer.push(b) else {
                    continue;
                };
                let m = parse_message(self.deframer.data()).unwrap();
                match m {
                    Message::Abort => self.aborts += 1,
                    Message::ReleaseResponse => self.release_responses += 1,
                    Message::EventResult { invoke_id } => {
                        assert_eq!(invoke_id, 0x55);
                        self.event_results += 1;
                    }
                    _ if self.silent => {}
                    Message::AssociationRequest if self.refuse => encode_refuse(&mut reply),
                    Message::AssociationRequest => {
                        encode_association_response(&mut reply);
                        encode_mds_create_event(0x55, &mut reply);
                    }
                    Message::PollRequest {
                        invoke_id,
                        poll_number,
                    } => {
                        self.polls += 1;
                        encode_poll_result(
                            invoke_id,
                            poll_number,
                            &self.snapshot,
                            None,
                            &mut reply,
                        );
                    }
                    other => panic!("monitor got unexpected {other:?}"),
                }
            }
            reply
        }
    }

    /// Runs the host against the monitor with a virtual clock until `until`,
    /// returning everything the host output.
    fn run(
        host: &mut IntelliVueHost,
        monitor: &mut ScriptedMonitor,
        now: &mut Instant,
        until: Instant,
    ) -> Vec<Output> {
        let mut outs = Vec::new();
        let mut tx = Vec::new();
        loop {
            // Deliver everything the host wants to send, and the replies.
            loop {
                tx.clear();
                let mut sent = false;
                while host.poll_transmit(&mut tx) {
                    sent = true;
                }
                if !sent {
                    break;
                }
                let reply = monitor.receive(&tx);
                if !reply.is_empty() {
                    host.handle_bytes(*now, &reply);
                }
                outs.extend(drain(host));
            }
            let next = host.poll_timeout().expect("host always has a timer");
            if next > until {
                *now = until;
                return outs;
            }
            *now = next.max(*now);
            host.handle_timeout(*now);
            outs.extend(drain(host));
        }
    }

    #[test]
    fn host_session_against_a_scripted_monitor() {
        let mut host = IntelliVueHost::new(SourceId(9));
        let mut monitor = ScriptedMonitor::new();
        let mut now = Instant::ZERO;
        assert_eq!(host.poll_timeout(), Some(Instant::ZERO));

        // Association and ten seconds of polling.
        let outs = run(&mut host, &mut monitor, &mut now, Instant::from_secs(10));
        assert_eq!(notes(&outs), vec![DeviceNote::Associated]);
        assert_eq!(monitor.event_results, 1);
        assert!(
            (10..=11).contains(&monitor.polls),
            "{} polls",
            monitor.polls
        );
        let ms = measurements(&outs);
        assert_eq!(ms.len() as u32, 4 * monitor.polls);
        assert!(ms.contains(&Measurement::HeartRate(Sample::valid(72.0))));
        assert!(matches!(host.state(), SessionState::Associated { .. }));
        assert_eq!(host.associations(), 1);

        // The monitor falls silent: lost after the data timeout, then the
        // host aborts and keeps trying to re-associate.
        monitor.silent = true;
        let polls_before = monitor.polls;
        let outs = run(&mut host, &mut monitor, &mut now, Instant::from_secs(20));
        assert_eq!(
            notes(&outs),
            vec![DeviceNote::AssociationLost(AssociationProblem::DataTimeout)]
        );
        assert!(measurements(&outs).is_empty());
        assert_eq!(monitor.polls, polls_before);
        assert!(monitor.aborts >= 1);

        // The monitor comes back: the request sent while it was silent
        // times out (one more loss), then re-association and readings.
        monitor.silent = false;
        let outs = run(&mut host, &mut monitor, &mut now, Instant::from_secs(60));
        assert_eq!(
            notes(&outs),
            vec![
                DeviceNote::AssociationLost(AssociationProblem::NoAnswer),
                DeviceNote::Associated
            ]
        );
        assert_eq!(host.associations(), 2);
        assert!(measurements(&outs).len() >= 4 * 20);

        // The monitor aborts: lost at once, re-associated after the backoff.
        let mut abort = Vec::new();
        encode_abort(&mut abort);
        host.handle_bytes(now, &abort);
        assert_eq!(
            notes(&drain(&mut host)),
            vec![DeviceNote::AssociationLost(AssociationProblem::Aborted)]
        );
        assert_eq!(
            host.state(),
            SessionState::Backoff(Some(now + Duration::from_secs(1)))
        );
        let outs = run(&mut host, &mut monitor, &mut now, Instant::from_secs(70));
        assert_eq!(notes(&outs), vec![DeviceNote::Associated]);
        assert_eq!(host.associations(), 3);

        // The monitor releases: the host answers and loses the association.
        let mut release = Vec::new();
        encode_release_request(&mut release);
        host.handle_bytes(now, &release);
        assert_eq!(
            notes(&drain(&mut host)),
            vec![DeviceNote::AssociationLost(AssociationProblem::Released)]
        );
        let mut tx = Vec::new();
        assert!(host.poll_transmit(&mut tx));
        monitor.receive(&tx);
        assert_eq!(monitor.release_responses, 1);

        // Shutdown: release, then nothing more.
        let _ = run(&mut host, &mut monitor, &mut now, Instant::from_secs(80));
        host.release();
        tx.clear();
        assert!(host.poll_transmit(&mut tx));
        assert_eq!(messages(&tx), vec![Message::ReleaseRequest]);
        assert_eq!(host.poll_timeout(), None);
    }

    #[test]
    fn refused_associations_back_off_exponentially() {
        let mut host = IntelliVueHost::new(SourceId(0));
        let mut monitor = ScriptedMonitor::new();
        monitor.refuse = true;
        let mut now = Instant::ZERO;
        let mut requests = Vec::new();
        let mut tx = Vec::new();
        for _ in 0..6 {
            let t = host.poll_timeout().unwrap().max(now);
            now = t;
            host.handle_timeout(now);
            tx.clear();
            while host.poll_transmit(&mut tx) {}
            if messages(&tx).contains(&Message::AssociationRequest) {
                requests.push(now);
            }
            let reply = monitor.receive(&tx);
            host.handle_bytes(now, &reply);
            assert_eq!(
                notes(&drain(&mut host)),
                vec![DeviceNote::AssociationLost(AssociationProblem::Refused)]
            );
        }
        let gaps: Vec<u64> = requests
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs())
            .collect();
        assert_eq!(gaps, vec![1, 2, 4, 8, 16]);
    }

    #[test]
    fn missing_accept_or_mds_create_times_out() {
        let mut host = IntelliVueHost::new(SourceId(0));
        host.handle_timeout(Instant::ZERO);
        let mut tx = Vec::new();
        assert!(host.poll_transmit(&mut tx));
        assert_eq!(host.poll_timeout(), Some(Instant::from_secs(5)));
        host.handle_timeout(Instant::from_secs(5));
        assert_eq!(
            notes(&drain(&mut host)),
            vec![DeviceNote::AssociationLost(AssociationProblem::NoAnswer)]
        );
        tx.clear();
        assert!(host.poll_transmit(&mut tx));
        assert_eq!(messages(&tx), vec![Message::Abort]);
        // Accept but no MDS Create.
        host.handle_timeout(Instant::from_secs(6));
        let mut accept = Vec::new();
        encode_association_response(&mut accept);
        host.handle_bytes(Instant::from_secs(6), &accept);
        assert_eq!(
            host.state(),
            SessionState::AwaitingMdsCreate(Instant::from_secs(11))
        );
        host.handle_timeout(Instant::from_secs(11));
        assert_eq!(
            notes(&drain(&mut host)),
            vec![DeviceNote::AssociationLost(AssociationProblem::NoMdsCreate)]
        );
        // A poll result outside an association is not taken as data.
        let mut poll = Vec::new();
        encode_poll_result(1, 1, &snapshot(), None, &mut poll);
        host.handle_bytes(Instant::from_secs(12), &poll);
        assert!(measurements(&drain(&mut host)).is_empty());
    }

    fn round_trip_validity() -> impl Strategy<Value = Validity> {
        prop_oneof![
            6 => Just(Validity::Valid),
            1 => Just(Validity::Invalid),
            1 => Just(Validity::Unavailable),
            1 => Just(Validity::UnderRange),
            1 => Just(Validity::OverRange),
        ]
    }

    fn sample(max: u16, divisor: f32) -> impl Strategy<Value = Sample> {
        (0..=max, round_trip_validity()).prop_map(move |(k, v)| {
            if v.is_valid() {
                Sample::valid(f32::from(k) / divisor)
            } else {
                Sample::missing(v)
            }
        })
    }

    /// Device times from 2000 to 2099 (AbsoluteTime is BCD).
    fn device_time() -> impl Strategy<Value = DeviceTime> {
        (946_684_800_i64..4_102_444_800).prop_map(DeviceTime)
    }

    fn snapshots() -> impl Strategy<Value = Snapshot> {
        let nibp = (
            sample(300, 1.0),
            sample(300, 1.0),
            sample(300, 1.0),
            proptest::option::of(device_time()),
        )
            .prop_map(|(systolic, diastolic, mean, measured_at)| Nibp {
                systolic,
                diastolic,
                mean,
                measured_at,
                mode: NibpMode::Unknown,
            });
        (
            sample(300, 1.0),
            sample(300, 1.0),
            sample(1000, 10.0),
            proptest::option::of(nibp),
            device_time(),
        )
            .prop_map(
                |(heart_rate, pulse_rate, spo2, nibp, device_time)| Snapshot {
                    heart_rate,
                    pulse_rate,
                    spo2,
                    nibp,
                    device_time,
                },
            )
    }

    fn same(a: Sample, b: Sample) -> bool {
        a.validity == b.validity && (!a.validity.is_valid() || (a.value - b.value).abs() < 1e-3)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn snapshots_round_trip(s in snapshots(), invoke in any::<u16>(), number in any::<u16>()) {
            let mut bytes = Vec::new();
            encode_poll_result(invoke, number, &s, None, &mut bytes);
            let m = messages(&bytes);
            prop_assert_eq!(m.len(), 1);
            let Message::PollResult { invoke_id, poll_number, values, linked } = m[0] else {
                panic!("not a poll result: {:?}", m[0]);
            };
            prop_assert_eq!((invoke_id, poll_number, linked), (invoke, number, None));
            prop_assert_eq!(values.device_time, Some(s.device_time));
            prop_assert!(same(values.heart_rate.unwrap(), s.heart_rate));
            prop_assert!(same(values.pulse_rate.unwrap(), s.pulse_rate));
            prop_assert!(same(values.spo2.unwrap(), s.spo2));
            match (values.nibp, s.nibp) {
                (None, None) => {}
                (Some(got), Some(want)) => {
                    prop_assert!(same(got.systolic, want.systolic));
                    prop_assert!(same(got.diastolic, want.diastolic));
                    prop_assert!(same(got.mean, want.mean));
                    prop_assert_eq!(got.measured_at, want.measured_at);
                }
                other => prop_assert!(false, "nibp mismatch {:?}", other),
            }
        }

        #[test]
        fn chunking_does_not_change_outputs(
            snaps in proptest::collection::vec(snapshots(), 1..4),
            noise in proptest::collection::vec(any::<u8>(), 0..40),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let mut bytes = noise;
            for (i, s) in snaps.iter().enumerate() {
                encode_poll_result(i as u16, i as u16, s, None, &mut bytes);
            }
            let mut whole = IntelliVueMonitorStream::new(SourceId(1));
            whole.handle_bytes(Instant::from_secs(3), &bytes);
            let whole_out = drain(&mut whole);
            let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            at.sort_unstable();
            let mut chunked = IntelliVueMonitorStream::new(SourceId(1));
            let mut prev = 0;
            for &c in at.iter().chain(std::iter::once(&bytes.len())) {
                chunked.handle_bytes(Instant::from_secs(3), &bytes[prev..c]);
                prev = c;
            }
            let chunked_out = drain(&mut chunked);
            prop_assert_eq!(format!("{whole_out:?}"), format!("{chunked_out:?}"));
            prop_assert_eq!(whole.stats(), chunked.stats());
            prop_assert!(measurements(&whole_out).len() >= 3);
        }

        #[test]
        fn arbitrary_bytes_never_panic_or_yield_non_finite_valid_values(
            bytes in proptest::collection::vec(any::<u8>(), 0..2_000),
        ) {
            let mut host = IntelliVueHost::new(SourceId(0));
            let mut stream = IntelliVueMonitorStream::new(SourceId(0));
            host.handle_timeout(Instant::ZERO);
            host.handle_bytes(Instant::from_secs(1), &bytes);
            host.handle_timeout(Instant::from_secs(100));
            stream.handle_bytes(Instant::from_secs(1), &bytes);
            let mut outs = drain(&mut host);
            outs.extend(drain(&mut stream));
            for o in outs {
                if let Output::Reading(r) = o {
                    if let Some((_, s)) = r.measurement.continuous() {
                        prop_assert!(!s.validity.is_valid() || s.value.is_finite());
                    }
                }
            }
            prop_assert_eq!(stream.stats().bytes, bytes.len() as u64);
        }
    }
}

#[cfg(test)]
mod seed_tests {
    use super::*;

    /// The fuzz seed holding a whole monitor-side session drives the host
    /// through association, one poll result and an abort.
    #[test]
    fn session_seed_drives_the_host() {
        let bytes = include_bytes!("../../fuzz/seeds/philips/session.bin");
        let mut host = IntelliVueHost::new(SourceId(4));
        host.handle_timeout(Instant::ZERO);
        let mut tx = Vec::new();
        assert!(host.poll_transmit(&mut tx));
        host.handle_bytes(Instant::from_millis(300), bytes);
        let outs: Vec<Output> = std::iter::from_fn(|| host.poll_output()).collect();
        assert_eq!(outs.first(), Some(&Output::Note(DeviceNote::Associated)));
        assert_eq!(
            outs.last(),
            Some(&Output::Note(DeviceNote::AssociationLost(
                AssociationProblem::Aborted
            )))
        );
        let readings: Vec<Measurement> = outs
            .iter()
            .filter_map(|o| match o {
                Output::Reading(r) => Some(r.measurement),
                _ => None,
            })
            .collect();
        assert_eq!(readings.len(), 4);
        assert_eq!(readings[0], Measurement::HeartRate(Sample::valid(60.0)));
        let Measurement::SpO2(spo2) = readings[1] else {
            panic!("{readings:?}")
        };
        assert_eq!(spo2.validity, Validity::Invalid);
        let Measurement::Nibp(n) = readings[3] else {
            panic!("{readings:?}")
        };
        assert_eq!(n.systolic.validity, Validity::Unavailable);
        assert_eq!(n.measured_at, Some(DeviceTime(1_700_000_000)));
        assert_eq!(host.stats().dropped_total(), 0);
    }
}
