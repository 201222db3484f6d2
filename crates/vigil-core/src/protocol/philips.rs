//! Philips IntelliVue Data Export over the MIB/RS232 port: framing, the
//! host's session state machine, decoding of numerics and of the monitor's
//! technical alarm list from poll results, and monitor-side encoders for
//! simulators and scripted-monitor tests.
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
//! our event result -> every poll interval two single extended polls (action
//! `0xF13B`, no poll period attribute): numerics (`NOM_MOC_VMO_METRIC_NU`,
//! all attribute groups) and the alert monitor (`NOM_MOC_VMO_AL_MON`,
//! group `NOM_ATTR_GRP_AL_MON`). The association request and the numerics
//! poll are byte for byte those of the public VSCaptureMP implementation
//! (`aarq_msg_ext_poll2`, `ext_poll_request_msg`); its serial loop adds a
//! 30 s `NOM_ATTR_TIME_PD_POLL` period and re-sends every second, which we
//! do not, so that each request has exactly one answer. The polls double as
//! the keep-alive (the interval is capped at [`MAX_POLL_INTERVAL`]); the
//! host queues at most four frames at once, inside the monitor's
//! 4-frames-per-128-ms limit.
//!
//! The session follows the link ([`Protocol::handle_link`]): link up sends
//! the association request at once; link down forgets the session
//! ([`AssociationProblem::LinkDown`] when one was up) and sends nothing until
//! the next up. Without link calls the first timer call starts the session.
//!
//! What the monitor sends is taken in any state: an accept while waiting or
//! backing off leads on to the MDS Create; an MDS Create completes the
//! association whatever came before (a lost accept, a request given up a
//! moment ago) and is always answered; an MDS Create or accept while
//! associated is [`DeviceNote::MonitorRestarted`]. Data export traffic while
//! no association of ours is up means the monitor is still associated with
//! an earlier host: the host aborts it and asks again at once (once per
//! attempt); a refusal is followed by an abort too, for the same reason.
//! The association counts as lost on an abort, refuse or release from the
//! monitor, when the accept or the MDS Create does not come in time, or when
//! no result of our polls arrives within the data timeout; the host then
//! aborts (when it was the one to give up), reports
//! [`DeviceNote::AssociationLost`], and associates again after an
//! exponential backoff. Every timer runs through
//! [`Protocol::handle_timeout`] / [`Protocol::poll_timeout`]; nothing reads
//! a clock.
//!
//! Only results whose invoke id and polled object match one of our last
//! polls are data. Wave results, GET / SET results, errors and results of
//! other invoke ids are well formed and counted in [`DecodeStats::ignored`],
//! neither data nor link errors. A linked result (first, middle..., last,
//! then a plain, usually empty, closing result; a real monitor's first part
//! may carry labels only) is put together into one set: at most one reading
//! per vital, the first part's value winning.
//!
//! [`IntelliVueMonitorStream`] decodes a monitor-side byte stream alone (a
//! recording of what the monitor sent), with no session state: numerics and
//! alert results are taken whatever their invoke id.
//!
//! # Time
//!
//! Real monitors send the poll result's absolute time unspecified (all
//! 0xFF). The MDS Create's absolute time (`0x0987`) and relative time
//! (`0x098F`, 1/8 ms ticks) anchor the clock; a result's device time is the
//! anchor moved on by the result's relative time (an absolute time stamp,
//! when a monitor does send one, is taken as is). The anchor follows every
//! result, so the relative time wrapping (every 6.2 days) does no harm.
//! Without an anchor readings carry no device time rather than a wrong one.
//! An NIBP carries its own measurement time as `measured_at`: the absolute
//! stamp `0x0990`, or the relative stamp `0x0991` converted by the anchor
//! (within 3.1 days of it). A monitor keeps an NIBP result for days: an
//! NIBP whose own time stamp is more than the NIBP age limit (the configured
//! cycle + grace, [`AgeLimits`]) behind the result's time is decoded as
//! [`Validity::Old`], shown as an old measurement and never judged. The same
//! holds, with the continuous limit, for HR, pulse rate and SpO2 when the
//! object they came in carries a time stamp of its own. A relative stamp is
//! compared with the result's relative time directly (no anchor needed); an
//! absolute one with the result's device time.
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
//! questionable or early indication -> `Questionable`; validated, in alarm
//! and alarm inhibited say nothing against the value. A unit other than the
//! vital's own (bpm, %, mmHg; kPa is converted) makes a value `Invalid`.
//! The pleth pulse (`0x4822`) is preferred over the generic pulse
//! (`0x480A`). An NIBP whose state says "measurement ongoing" or "early
//! indication" (the systolic alone, the rest still being derived) is
//! skipped: the numbers are not a result. The numerics do not say how an
//! NIBP measurement was started, so its mode is `NibpMode::Unknown`.
//!
//! # Technical alarms
//!
//! The alert monitor's technical alarm list (`0x0904`, the INOPs) is read
//! from each alert result: source, event code and the monitor's own text
//! (UTF-16, kept as printable ASCII). When the set changes, ended alarms
//! become [`DeviceNote::Inop`] with `active: false` and new ones with
//! `active: true`; losing the association ends them all.
//!
//! Depends on [`crate::protocol`], [`crate::vitals`] and [`crate::time`] only.

use core::time::Duration;
use std::collections::VecDeque;

use crate::protocol::registry::{BoxedProtocol, HostRx, Monitor, MonitorIo, MAX_HOST_FRAME};
use crate::protocol::{
    AgeLimits, AssociationProblem, DecodeStats, DeviceInop, DeviceNote, DropReason, NoteText,
    Output, Protocol, Snapshot, NOTE_TEXT_LEN,
};
use crate::time::Instant;
use crate::vitals::{
    DeviceTime, Measurement, Nibp, NibpMode, Reading, Sample, SourceId, Validity, Vital,
};

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
    /// Everything not read yet.
    fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
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

const RORLS_FIRST: u8 = 1;
const RORLS_NOT_FIRST_NOT_LAST: u8 = 2;
const RORLS_LAST: u8 = 3;

const NOM_MOC_VMS_MDS: u16 = 33;
/// Polled object type: numerics.
pub const NOM_MOC_VMO_METRIC_NU: u16 = 6;
/// Polled object type: real-time sample arrays (waves).
pub const NOM_MOC_VMO_METRIC_SA_RT: u16 = 9;
/// Polled object type: the alert monitor (alarm lists).
pub const NOM_MOC_VMO_AL_MON: u16 = 54;
const NOM_PART_OBJ: u16 = 1;
const NOM_NOTI_MDS_CREAT: u16 = 0x0D06;
const NOM_ACT_POLL_MDIB_DATA: u16 = 0x0C16;
/// Extended poll action (numerics with the extended reply).
pub const NOM_ACT_POLL_MDIB_DATA_EXT: u16 = 0xF13B;
/// Attribute group of the alert monitor's alarm lists.
const NOM_ATTR_GRP_AL_MON: u16 = 0x0801;

const NOM_ATTR_ID_LABEL: u16 = 0x0924;
const NOM_ATTR_ID_MODEL: u16 = 0x0928;
const NOM_ATTR_NU_VAL_OBS: u16 = 0x0950;
const NOM_ATTR_NU_CMPD_VAL_OBS: u16 = 0x094B;
const NOM_ATTR_SA_VAL_OBS: u16 = 0x096E;
const NOM_ATTR_AL_MON_T_AL_LIST: u16 = 0x0904;
const NOM_ATTR_TIME_ABS: u16 = 0x0987;
const NOM_ATTR_TIME_REL: u16 = 0x098F;
const NOM_ATTR_TIME_STAMP_ABS: u16 = 0x0990;
const NOM_ATTR_TIME_STAMP_REL: u16 = 0x0991;

/// `alert_info_id` of an alarm entry carrying a text (`StrAlMonInfo`).
const STR_ALMON_INFO: u16 = 516;
/// `alert_info_id` of an alarm entry without a text (`AlMonGenInfo`).
const GEN_ALMON_INFO: u16 = 513;

/// RelativeTime ticks per second (1/8 ms).
pub const REL_TICKS_PER_SEC: i64 = 8_000;

const NOM_ECG_ELEC_POTL: u16 = 0x0100;
const NOM_ECG_ELEC_POTL_LAST: u16 = 0x013F;
const NOM_ECG_CARD_BEAT_RATE: u16 = 0x4182;
const NOM_PRESS_BLD_NONINV: u16 = 0x4A04;
const NOM_PULS_OXIM_FIRST: u16 = 0x4BB0;
const NOM_PULS_OXIM_LAST: u16 = 0x4BBF;
const NOM_PULS_RATE: u16 = 0x480A;
const NOM_PLETH_PULS_RATE: u16 = 0x4822;
const NOM_PRESS_BLD_NONINV_SYS: u16 = 0x4A05;
const NOM_PRESS_BLD_NONINV_DIA: u16 = 0x4A06;
const NOM_PRESS_BLD_NONINV_MEAN: u16 = 0x4A07;
/// Respiration rate (impedance), awRR (airway, from the capnograph) and
/// etCO2: the nomenclature codes as xeonfusion/VSCaptureMP and other
/// public IntelliVue clients list them (20490, 20498, 20656).
const NOM_RESP_RATE: u16 = 0x500A;
const NOM_AWAY_RESP_RATE: u16 = 0x5012;
const NOM_AWAY_CO2_ET: u16 = 0x50B0;
/// SpO2 (also the source of SpO2 technical alarms).
pub const NOM_PULS_OXIM_SAT_O2: u16 = 0x4BB8;
/// Event code: sensor disconnected (e.g. "SpO2 NO SENSOR").
pub const NOM_EVT_SENSOR_DISCONN: u16 = 308;
/// Event code: ECG lead disconnected ("LEADS OFF").
pub const NOM_EVT_LEAD_DISCONN: u16 = 268;

const NOM_DIM_PERCENT: u16 = 0x0220;
const NOM_DIM_BEAT_PER_MIN: u16 = 0x0AA0;
const NOM_DIM_MMHG: u16 = 0x0F20;
const NOM_DIM_RESP_PER_MIN: u16 = 0x0AE0;
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
const RESP_UNITS: &[(u16, f64)] = &[(NOM_DIM_RESP_PER_MIN, 1.0)];
const PRESSURE_UNITS: &[(u16, f64)] = &[(NOM_DIM_MMHG, 1.0), (NOM_DIM_KILO_PASCAL, MMHG_PER_KPA)];

/// One BCD byte as a number.
fn bcd(x: u8) -> Option<i64> {
    let (hi, lo) = (x >> 4, x & 0x0F);
    (hi < 10 && lo < 10).then_some(i64::from(hi * 10 + lo))
}

/// AbsoluteTime (BCD century, year, month, day, hour, minute, second,
/// fraction) as seconds since the Unix epoch by the device's clock.
fn decode_abs_time(b: &[u8]) -> Option<DeviceTime> {
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
    let bcd = |v: i64| to_bcd(v.rem_euclid(100) as u8);
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

/// A number below 100 as one BCD byte.
fn to_bcd(v: u8) -> u8 {
    ((v / 10) << 4) | (v % 10)
}

/// The vitals one poll result (or one linked group) carried: at most one
/// value per vital.
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
    /// The poll result's absolute time stamp; `None` when the monitor sends
    /// it unspecified (all 0xFF), as real monitors do.
    pub device_time: Option<DeviceTime>,
    /// The poll result's relative time stamp (1/8 ms ticks since the
    /// monitor's own epoch).
    pub rel_time: u32,
    /// The NIBP's relative measurement time (attribute `0x0991`) when it came
    /// without a usable absolute one.
    pub nibp_rel_time: Option<u32>,
    /// Respiration rate (awRR from the capnograph preferred over the
    /// impedance RR: it is the breathing the CO2 module sees).
    pub resp_rate: Option<Sample>,
    /// End-tidal CO2, mmHg (kPa converted).
    pub etco2: Option<Sample>,
    /// The time stamps of the objects HR, pulse rate, SpO2, RR and etCO2
    /// came from (in that order), when the monitor sent one.
    stamps: [Option<Stamp>; 5],
    pulse_from_pleth: bool,
    resp_from_airway: bool,
}

/// An observation's own time stamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stamp {
    /// Absolute time (`0x0990`).
    Abs(DeviceTime),
    /// Relative time (`0x0991`), 1/8 ms ticks.
    Rel(u32),
}

/// Index of a continuous vital in [`PollValues`]' stamps.
const HR: usize = 0;
const PR: usize = 1;
const SPO2: usize = 2;
const RR: usize = 3;
const ETCO2: usize = 4;

impl PollValues {
    /// Whether no vital came with it (a closing or labels-only part).
    pub fn is_empty(&self) -> bool {
        self.heart_rate.is_none()
            && self.pulse_rate.is_none()
            && self.spo2.is_none()
            && self.nibp.is_none()
            && self.resp_rate.is_none()
            && self.etco2.is_none()
    }

    /// Adds the vitals of a later part of the same linked result: a vital
    /// already present stays (one value per vital per group), except that a
    /// pleth pulse replaces a generic one. Time stamps stay the first part's.
    fn merge(&mut self, later: &PollValues) {
        if self.heart_rate.is_none() {
            self.heart_rate = later.heart_rate;
            self.stamps[HR] = later.stamps[HR];
        }
        if self.spo2.is_none() {
            self.spo2 = later.spo2;
            self.stamps[SPO2] = later.stamps[SPO2];
        }
        if (later.pulse_from_pleth && !self.pulse_from_pleth) || self.pulse_rate.is_none() {
            self.pulse_rate = later.pulse_rate;
            self.pulse_from_pleth |= later.pulse_from_pleth;
            self.stamps[PR] = later.stamps[PR];
        }
        if self.nibp.is_none() {
            self.nibp = later.nibp;
            self.nibp_rel_time = later.nibp_rel_time;
        }
        if (later.resp_from_airway && !self.resp_from_airway) || self.resp_rate.is_none() {
            self.resp_rate = later.resp_rate;
            self.resp_from_airway |= later.resp_from_airway;
            self.stamps[RR] = later.stamps[RR];
        }
        if self.etco2.is_none() {
            self.etco2 = later.etco2;
            self.stamps[ETCO2] = later.stamps[ETCO2];
        }
    }

    fn observation(&mut self, r: Reader<'_>) -> Option<()> {
        let (count, mut attrs) = {
            let mut r = r;
            r.list()?
        };
        let mut nibp: [Option<NuObs>; 3] = [None; 3];
        let mut nibp_time = None;
        let mut nibp_rel = None;
        // Which continuous vitals this object set (its stamp is theirs).
        let mut set = [false; 5];
        for _ in 0..count {
            let id = attrs.u16()?;
            let len = attrs.u16()?;
            let mut v = Reader::new(attrs.take(usize::from(len))?);
            match id {
                NOM_ATTR_NU_VAL_OBS => {
                    let obs = NuObs::read(&mut v)?;
                    self.numeric(obs, &mut nibp, &mut set);
                }
                NOM_ATTR_NU_CMPD_VAL_OBS => {
                    let (n, mut entries) = v.list()?;
                    for _ in 0..n {
                        let obs = NuObs::read(&mut entries)?;
                        self.numeric(obs, &mut nibp, &mut set);
                    }
                }
                NOM_ATTR_TIME_STAMP_ABS => nibp_time = decode_abs_time(v.take(8)?),
                NOM_ATTR_TIME_STAMP_REL => nibp_rel = Some(v.u32()?),
                _ => {}
            }
        }
        let stamp = nibp_time.map(Stamp::Abs).or(nibp_rel.map(Stamp::Rel));
        for (slot, set) in self.stamps.iter_mut().zip(set) {
            if set {
                *slot = stamp;
            }
        }
        if nibp.iter().any(Option::is_some) && self.nibp.is_none() {
            // A cuff still measuring, or a result still being derived (the
            // early indication comes with the systolic alone), is no result.
            let busy = nibp
                .iter()
                .flatten()
                .any(|o| o.state & (STATE_MSMT_ONGOING | STATE_EARLY_INDICATION) != 0);
            if !busy {
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
                self.nibp_rel_time = if nibp_time.is_none() { nibp_rel } else { None };
            }
        }
        Some(())
    }

    fn numeric(&mut self, o: NuObs, nibp: &mut [Option<NuObs>; 3], set: &mut [bool; 5]) {
        match o.physio_id {
            NOM_ECG_CARD_BEAT_RATE if self.heart_rate.is_none() => {
                self.heart_rate = Some(o.sample(RATE_UNITS));
                set[HR] = true;
            }
            NOM_PLETH_PULS_RATE if !self.pulse_from_pleth => {
                self.pulse_rate = Some(o.sample(RATE_UNITS));
                self.pulse_from_pleth = true;
                set[PR] = true;
            }
            NOM_PULS_RATE if self.pulse_rate.is_none() => {
                self.pulse_rate = Some(o.sample(RATE_UNITS));
                set[PR] = true;
            }
            NOM_PULS_OXIM_SAT_O2 if self.spo2.is_none() => {
                self.spo2 = Some(o.sample(PERCENT_UNITS));
                set[SPO2] = true;
            }
            NOM_AWAY_RESP_RATE if !self.resp_from_airway => {
                self.resp_rate = Some(o.sample(RESP_UNITS));
                self.resp_from_airway = true;
                set[RR] = true;
            }
            NOM_RESP_RATE if self.resp_rate.is_none() => {
                self.resp_rate = Some(o.sample(RESP_UNITS));
                set[RR] = true;
            }
            NOM_AWAY_CO2_ET if self.etco2.is_none() => {
                self.etco2 = Some(o.sample(PRESSURE_UNITS));
                set[ETCO2] = true;
            }
            NOM_PRESS_BLD_NONINV_SYS => nibp[0] = Some(o),
            NOM_PRESS_BLD_NONINV_DIA => nibp[1] = Some(o),
            NOM_PRESS_BLD_NONINV_MEAN => nibp[2] = Some(o),
            _ => {}
        }
    }
}

// ------------------------------------------------------ technical alarms

/// Most technical alarms (INOPs) kept from one alarm list.
pub const MAX_TECH_ALARMS: usize = 16;

/// One entry of the monitor's technical alarm list (an INOP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TechAlarm {
    /// What the alarm is about (a physiological id such as SpO2 `0x4BB8`).
    pub source: u16,
    /// The event (`NOM_EVT_*`, e.g. 308 sensor disconnected).
    pub code: u16,
    /// The monitor's own text, when it sends one.
    pub text: NoteText,
}

impl TechAlarm {
    /// The vital an alarm source stands for, when it is one vigil shows.
    /// NIBP alarms name the systolic vital (the measurement as a whole).
    pub fn vital(&self) -> Option<Vital> {
        match self.source {
            NOM_ECG_CARD_BEAT_RATE | NOM_ECG_ELEC_POTL..=NOM_ECG_ELEC_POTL_LAST => {
                Some(Vital::HeartRate)
            }
            NOM_PULS_RATE | NOM_PLETH_PULS_RATE => Some(Vital::PulseRate),
            NOM_PULS_OXIM_FIRST..=NOM_PULS_OXIM_LAST => Some(Vital::SpO2),
            NOM_PRESS_BLD_NONINV..=NOM_PRESS_BLD_NONINV_MEAN => Some(Vital::NibpSystolic),
            _ => None,
        }
    }

    fn same(&self, other: &TechAlarm) -> bool {
        self.source == other.source && self.code == other.code
    }

    fn note(&self, active: bool) -> DeviceNote {
        DeviceNote::Inop(DeviceInop {
            vital: self.vital(),
            code: self.code,
            text: self.text,
            active,
        })
    }
}

/// A bounded set of technical alarms (the rest of a longer list is cut).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TechAlarms {
    len: u8,
    items: [TechAlarm; MAX_TECH_ALARMS],
    /// A technical alarm list was read (an empty list is news; a result
    /// part without the list is not).
    listed: bool,
}

impl Default for TechAlarms {
    fn default() -> Self {
        TechAlarms::EMPTY
    }
}

impl TechAlarms {
    /// No alarm.
    pub const EMPTY: TechAlarms = TechAlarms {
        len: 0,
        items: [TechAlarm {
            source: 0,
            code: 0,
            text: NoteText::EMPTY,
        }; MAX_TECH_ALARMS],
        listed: false,
    };

    /// The alarms.
    pub fn as_slice(&self) -> &[TechAlarm] {
        &self.items[..usize::from(self.len)]
    }

    /// Adds `a` unless it is there already or the set is full.
    pub fn push(&mut self, a: TechAlarm) {
        if usize::from(self.len) < MAX_TECH_ALARMS && !self.contains(&a) {
            self.items[usize::from(self.len)] = a;
            self.len += 1;
        }
    }

    fn contains(&self, a: &TechAlarm) -> bool {
        self.as_slice().iter().any(|b| b.same(a))
    }

    fn merge(&mut self, later: &TechAlarms) {
        later.as_slice().iter().for_each(|a| self.push(*a));
        self.listed |= later.listed;
    }

    /// Device notes for the change from `self` to `now`: ended alarms first,
    /// then begun ones.
    fn changes<'a>(&'a self, now: &'a TechAlarms) -> impl Iterator<Item = DeviceNote> + 'a {
        let ended = self.as_slice().iter().filter(|a| !now.contains(a));
        let begun = now.as_slice().iter().filter(|a| !self.contains(a));
        ended
            .map(|a| a.note(false))
            .chain(begun.map(|a| a.note(true)))
    }

    /// Reads a `DevAlarmList` (count, length, entries).
    fn read_list(&mut self, mut r: Reader<'_>) -> Option<()> {
        let (count, mut entries) = r.list()?;
        for _ in 0..count {
            let source = entries.u16()?;
            let code = entries.u16()?;
            let _al_type = entries.u16()?;
            let _al_state = entries.u16()?;
            let _object = ManagedObject::read(&mut entries)?;
            let info_id = entries.u16()?;
            let mut info = entries.sized()?;
            let text = if info_id == STR_ALMON_INFO {
                let _inst = info.u16()?;
                let _text_id = info.u32()?;
                let _priority = info.u16()?;
                let _flags = info.u16()?;
                decode_string(info.sized()?)
            } else {
                NoteText::EMPTY
            };
            self.push(TechAlarm { source, code, text });
        }
        Some(())
    }

    /// Reads the technical alarm list out of one observation's attributes.
    fn observation(&mut self, mut r: Reader<'_>) -> Option<()> {
        let (count, mut attrs) = r.list()?;
        for _ in 0..count {
            let id = attrs.u16()?;
            let v = attrs.sized()?;
            if id == NOM_ATTR_AL_MON_T_AL_LIST {
                self.listed = true;
                self.read_list(v)?;
            }
        }
        Some(())
    }
}

/// An IntelliVue `String` (UTF-16BE, NUL-terminated) as a note text: ASCII
/// kept, the alarm star as `*`, anything else `?`.
fn decode_string(mut r: Reader<'_>) -> NoteText {
    let mut buf = [0u8; NOTE_TEXT_LEN];
    let mut n = 0;
    while let Some(c) = r.u16() {
        if c == 0 || n == buf.len() {
            break;
        }
        buf[n] = match c {
            0x20..=0x7E => c as u8,
            ALARM_STAR_CHAR => b'*',
            _ => b'?',
        };
        n += 1;
    }
    NoteText::new(&buf[..n])
}

/// The IntelliVue private character for the alarm star.
const ALARM_STAR_CHAR: u16 = 0xE40D;

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
    /// Last of several (a plain, often empty, result closes the sequence).
    Last,
}

/// What the monitor's MDS Create told about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MdsInfo {
    /// The monitor's clock (attribute `0x0987`); `None` when unspecified.
    pub abs_time: Option<DeviceTime>,
    /// Hundredths of a second of `abs_time`.
    pub abs_hundredths: u8,
    /// The monitor's relative time at the same moment (attribute `0x098F`,
    /// or the event time when that is missing).
    pub rel_time: Option<u32>,
    /// The model number (attribute `0x0928`), e.g. "MX800".
    pub model: NoteText,
}

impl Default for MdsInfo {
    fn default() -> Self {
        MdsInfo {
            abs_time: None,
            abs_hundredths: 0,
            rel_time: None,
            model: NoteText::EMPTY,
        }
    }
}

impl MdsInfo {
    /// The clock anchor: absolute time and relative time of one moment.
    pub fn anchor(&self) -> Option<ClockAnchor> {
        Some(ClockAnchor {
            abs_ticks: self.abs_time?.0 * REL_TICKS_PER_SEC
                + i64::from(self.abs_hundredths) * (REL_TICKS_PER_SEC / 100),
            rel: self.rel_time?,
        })
    }
}

/// One moment on both monitor clocks: absolute time in relative-time ticks
/// since the Unix epoch, and the relative time stamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockAnchor {
    /// Absolute time, 1/8 ms ticks since 1970 (device clock).
    pub abs_ticks: i64,
    /// The monitor's relative time at that moment.
    pub rel: u32,
}

impl ClockAnchor {
    /// The absolute time of relative time `rel`, in ticks. Relative times
    /// wrap (about every 6.2 days): the difference is taken as signed, so
    /// stamps up to 3.1 days either side of the anchor convert right.
    fn ticks_at(&self, rel: u32) -> i64 {
        self.abs_ticks + i64::from(rel.wrapping_sub(self.rel) as i32)
    }

    /// The device time (whole seconds) of relative time `rel`.
    pub fn device_time(&self, rel: u32) -> DeviceTime {
        DeviceTime(self.ticks_at(rel).div_euclid(REL_TICKS_PER_SEC))
    }
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
        /// The event time (relative time), echoed in the event result.
        event_time: u32,
        /// Model and clock.
        info: MdsInfo,
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
        /// The polled object type (numerics, alert monitor, ...).
        object: u16,
    },
    /// A poll result (or one part of a linked result).
    PollResult {
        /// Echoed invoke id.
        invoke_id: u16,
        /// Echoed poll number.
        poll_number: u16,
        /// `Some` for a linked (partial) result.
        linked: Option<LinkedState>,
        /// The polled object type: numerics carry `values`; the alert
        /// monitor's lists are read with [`parse_tech_alarms`]; waves and
        /// the rest are not used.
        object: u16,
        /// The numerics it carried (numerics results only).
        values: PollValues,
    },
    /// Any other result or error of a remote operation (GET, SET, other
    /// actions): well-formed, not used.
    OtherResult {
        /// Echoed invoke id.
        invoke_id: u16,
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

/// The parts of a result (`RORS` / `ROLRS`) every reader needs.
struct ResultParts<'a> {
    invoke_id: u16,
    linked: Option<LinkedState>,
    command: u16,
    body: Reader<'a>,
}

fn linked_state(b: u8) -> Option<LinkedState> {
    match b {
        RORLS_FIRST => Some(LinkedState::First),
        RORLS_NOT_FIRST_NOT_LAST => Some(LinkedState::Middle),
        RORLS_LAST => Some(LinkedState::Last),
        _ => None,
    }
}

/// SPpdu + ROapdus: the remote operation type and its body.
fn export_body(data: &[u8]) -> Option<(u16, Reader<'_>)> {
    let mut r = Reader::new(data);
    if r.u16()? != SPPDU_SESSION_ID {
        return None;
    }
    let _context = r.u16()?;
    let ro_type = r.u16()?;
    Some((ro_type, r.sized()?))
}

fn result_parts(ro_type: u16, mut body: Reader<'_>) -> Option<ResultParts<'_>> {
    let linked = if ro_type == ROLRS_APDU {
        let state = linked_state(body.u8()?)?;
        let _count = body.u8()?;
        Some(state)
    } else {
        None
    };
    Some(ResultParts {
        invoke_id: body.u16()?,
        linked,
        command: body.u16()?,
        body: body.sized()?,
    })
}

/// The action type and reply of an action result.
fn action_reply(mut res: Reader<'_>) -> Option<(u16, Reader<'_>)> {
    let _mo = ManagedObject::read(&mut res)?;
    let action = res.u16()?;
    Some((action, res.sized()?))
}

fn parse_data_export(data: &[u8]) -> Option<Message> {
    let (ro_type, mut body) = export_body(data)?;
    match ro_type {
        ROIV_APDU => {
            let invoke_id = body.u16()?;
            let command = body.u16()?;
            let mut arg = body.sized()?;
            let managed_object = ManagedObject::read(&mut arg)?;
            match command {
                CMD_EVENT_REPORT | CMD_CONFIRMED_EVENT_REPORT => {
                    let event_time = arg.u32()?;
                    if arg.u16()? == NOM_NOTI_MDS_CREAT {
                        let info = parse_mds_create_info(arg.sized()?, event_time)?;
                        return Some(Message::MdsCreate {
                            invoke_id,
                            managed_object,
                            event_time,
                            info,
                        });
                    }
                }
                CMD_CONFIRMED_ACTION => {
                    let _scope = arg.u32()?;
                    let action = arg.u16()?;
                    let mut req = arg.sized()?;
                    if action == NOM_ACT_POLL_MDIB_DATA_EXT || action == NOM_ACT_POLL_MDIB_DATA {
                        let poll_number = req.u16()?;
                        let _partition = req.u16()?;
                        return Some(Message::PollRequest {
                            invoke_id,
                            poll_number,
                            object: req.u16()?,
                        });
                    }
                }
                _ => {}
            }
            Some(Message::Other)
        }
        RORS_APDU | ROLRS_APDU => {
            let parts = result_parts(ro_type, body)?;
            let (invoke_id, linked) = (parts.invoke_id, parts.linked);
            let other = Some(Message::OtherResult { invoke_id });
            match parts.command {
                CMD_CONFIRMED_EVENT_REPORT => Some(Message::EventResult { invoke_id }),
                CMD_CONFIRMED_ACTION => {
                    let (action, reply) = action_reply(parts.body)?;
                    let extended = match action {
                        NOM_ACT_POLL_MDIB_DATA_EXT => true,
                        NOM_ACT_POLL_MDIB_DATA => false,
                        _ => return other,
                    };
                    let (poll_number, object, values) = parse_poll_reply(reply, extended)?;
                    Some(Message::PollResult {
                        invoke_id,
                        poll_number,
                        linked,
                        object,
                        values,
                    })
                }
                _ => other,
            }
        }
        ROER_APDU => Some(Message::OtherResult {
            invoke_id: body.u16()?,
        }),
        _ => None,
    }
}

/// MdsCreateInfo: the MDS object and its attribute list.
fn parse_mds_create_info(mut r: Reader<'_>, event_time: u32) -> Option<MdsInfo> {
    let _mds = ManagedObject::read(&mut r)?;
    let mut info = MdsInfo {
        rel_time: Some(event_time),
        ..MdsInfo::default()
    };
    // Some monitors send the MDS alone, without attributes.
    let Some((count, mut attrs)) = r.list() else {
        return Some(info);
    };
    for _ in 0..count {
        let id = attrs.u16()?;
        let mut v = attrs.sized()?;
        match id {
            NOM_ATTR_TIME_ABS => {
                let b = v.take(8)?;
                info.abs_time = decode_abs_time(b);
                info.abs_hundredths = bcd(b[7]).unwrap_or(0) as u8;
            }
            NOM_ATTR_TIME_REL => info.rel_time = Some(v.u32()?),
            NOM_ATTR_ID_MODEL => {
                let _manufacturer = v.sized()?;
                let model = v.sized()?;
                info.model = NoteText::new(model.rest());
            }
            _ => {}
        }
    }
    Some(info)
}

/// The poll reply header (numbers, time stamps, polled type), then the
/// PollInfoList of SingleContextPolls of ObservationPolls: `each` gets every
/// observation's attribute list.
fn walk_poll_reply<'a>(
    mut r: Reader<'a>,
    extended: bool,
    mut each: impl FnMut(u16, Reader<'a>) -> Option<()>,
) -> Option<(u16, u16, PollValues)> {
    let poll_number = r.u16()?;
    if extended {
        let _sequence_no = r.u16()?;
    }
    let rel_time = r.u32()?;
    let abs_time = r.take(8)?;
    let _partition = r.u16()?;
    let object = r.u16()?;
    let _attr_group = r.u16()?;
    let header = PollValues {
        device_time: decode_abs_time(abs_time),
        rel_time,
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
            each(object, start)?;
        }
    }
    Some((poll_number, object, header))
}

/// PollMdibDataReply(Ext): the poll number, the polled object type, and for
/// numerics the values.
fn parse_poll_reply(r: Reader<'_>, extended: bool) -> Option<(u16, u16, PollValues)> {
    let mut values = PollValues::default();
    // Only a numerics result carries numerics; a wave or alert result is
    // only checked for structure.
    let (poll_number, object, header) = walk_poll_reply(r, extended, |object, obs| {
        if object == NOM_MOC_VMO_METRIC_NU {
            values.observation(obs)
        } else {
            Some(())
        }
    })?;
    values.device_time = header.device_time;
    values.rel_time = header.rel_time;
    Some((poll_number, object, values))
}

/// The technical alarm list (INOPs) of an alert monitor poll result, given
/// the data of its frame; `None` when the frame is no such result.
pub fn parse_tech_alarms(data: &[u8]) -> Option<TechAlarms> {
    let (ro_type, body) = export_body(data)?;
    if ro_type != RORS_APDU && ro_type != ROLRS_APDU {
        return None;
    }
    let parts = result_parts(ro_type, body)?;
    if parts.command != CMD_CONFIRMED_ACTION {
        return None;
    }
    let (action, reply) = action_reply(parts.body)?;
    let extended = action == NOM_ACT_POLL_MDIB_DATA_EXT;
    let mut alarms = TechAlarms::EMPTY;
    let (_, object, _) = walk_poll_reply(reply, extended, |object, obs| {
        if object == NOM_MOC_VMO_AL_MON {
            alarms.observation(obs)
        } else {
            Some(())
        }
    })?;
    (object == NOM_MOC_VMO_AL_MON).then_some(alarms)
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
const MAX_EXPORT_LEN: usize = 2048;

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

/// Monitor: the MDS Create event report the host must answer, with the
/// monitor's clock (absolute and relative time of one moment; absolute
/// unspecified when `info.abs_time` is `None`) and model.
pub fn encode_mds_create_event(invoke_id: u16, info: &MdsInfo, out: &mut Vec<u8>) {
    let mut w = Writer::new();
    let ro = export_header(&mut w, ROIV_APDU);
    w.u16(invoke_id);
    w.u16(CMD_CONFIRMED_EVENT_REPORT);
    let arg = w.len_slot();
    ManagedObject::MDS.write(&mut w);
    w.u32(info.rel_time.unwrap_or(0)); // event time
    w.u16(NOM_NOTI_MDS_CREAT);
    let create = w.len_slot();
    ManagedObject::MDS.write(&mut w);
    let has_rel = info.rel_time.is_some();
    w.u16(2 + u16::from(has_rel));
    let attrs = w.len_slot();
    w.u16(NOM_ATTR_ID_MODEL);
    let model = w.len_slot();
    for label in [b"Philips".as_slice(), info.model.as_str().as_bytes()] {
        // VariableLabel: length, text, padded to an even length.
        let padded = label.len() + label.len() % 2;
        w.u16(padded as u16);
        w.bytes(label);
        if padded > label.len() {
            w.bytes(&[0]);
        }
    }
    w.fill(model);
    w.u16(NOM_ATTR_TIME_ABS);
    w.u16(8);
    let mut abs = info.abs_time.map_or([0xFF; 8], encode_abs_time);
    if info.abs_time.is_some() {
        abs[7] = to_bcd(info.abs_hundredths.min(99));
    }
    w.bytes(&abs);
    if let Some(rel) = info.rel_time {
        w.u16(NOM_ATTR_TIME_REL);
        w.u16(4);
        w.u32(rel);
    }
    w.fill(attrs);
    w.fill(create);
    w.fill(arg);
    w.fill(ro);
    frame_message(w.as_slice(), out);
}

/// Host: the event result answering an MDS Create (the event time echoed).
pub fn encode_event_result(
    invoke_id: u16,
    managed_object: ManagedObject,
    event_time: u32,
    out: &mut Vec<u8>,
) {
    let mut w = Writer::new();
    let ro = export_header(&mut w, RORS_APDU);
    w.u16(invoke_id);
    w.u16(CMD_CONFIRMED_EVENT_REPORT);
    let res = w.len_slot();
    managed_object.write(&mut w);
    w.u32(event_time);
    w.u16(NOM_NOTI_MDS_CREAT);
    w.u16(0);
    w.fill(res);
    w.fill(ro);
    frame_message(w.as_slice(), out);
}

/// Host: an extended poll of one object type and attribute group (0: all),
/// with no extra attributes: a single poll, answered once.
pub fn encode_ext_poll_request(
    invoke_id: u16,
    poll_number: u16,
    object: u16,
    attr_group: u16,
    out: &mut Vec<u8>,
) {
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
    w.u16(object);
    w.u16(attr_group);
    w.u32(0); // no extra attributes
    w.fill(req);
    w.fill(arg);
    w.fill(ro);
    frame_message(w.as_slice(), out);
}

/// Host: an extended poll for all numeric attributes.
pub fn encode_poll_request(invoke_id: u16, poll_number: u16, out: &mut Vec<u8>) {
    encode_ext_poll_request(invoke_id, poll_number, NOM_MOC_VMO_METRIC_NU, 0, out);
}

/// Host: an extended poll for the alert monitor's alarm lists.
pub fn encode_alert_poll_request(invoke_id: u16, poll_number: u16, out: &mut Vec<u8>) {
    encode_ext_poll_request(
        invoke_id,
        poll_number,
        NOM_MOC_VMO_AL_MON,
        NOM_ATTR_GRP_AL_MON,
        out,
    );
}

/// The wire state and FLOAT for a sample (`exponent` sets the resolution).
fn numeric_for(sample: Sample, exponent: i8) -> (u16, u32) {
    let nan = MANTISSA_NAN;
    let float = |v: f32| encode_float(v, exponent);
    match sample.validity {
        // A monitor sends an old result as it is; its age is in the time stamp.
        Validity::Valid | Validity::Old => match float(sample.value) {
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

/// How the NIBP measurement time goes into a poll result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NibpStamp {
    /// Absolute time stamp (attribute `0x0990`).
    Absolute,
    /// Relative time stamp (attribute `0x0991`), derived from the result's
    /// relative time and the snapshot's clock.
    Relative,
    /// No measurement time.
    Omitted,
}

/// What one poll result (part) carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResultContent {
    /// The snapshot's numerics.
    Values,
    /// Only the numerics' labels (the first part of a real linked result).
    LabelsOnly,
    /// Nothing (the plain result closing a linked sequence).
    Empty,
}

/// The shape of a monitor-side poll result (see [`encode_poll_result_with`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResultShape {
    /// The relative time stamp (1/8 ms ticks).
    pub rel_time: u32,
    /// Send the snapshot's device time as the absolute time stamp; `false`
    /// sends it unspecified (all 0xFF), as real monitors do.
    pub abs_time: bool,
    /// How the NIBP's measurement time is sent.
    pub nibp_stamp: NibpStamp,
    /// `Some` for one part of a linked result.
    pub linked: Option<LinkedState>,
    /// What it carries.
    pub content: ResultContent,
    /// State bits added to every numeric's state.
    pub extra_state: u16,
    /// `Some(age)`: HR, pulse rate and SpO2 carry a relative time stamp
    /// `age` seconds before the result's (a monitor resending values it no
    /// longer measures).
    pub values_age: Option<u32>,
}

impl ResultShape {
    /// A whole result with absolute time, as the programming guide shows.
    pub const SIMPLE: ResultShape = ResultShape {
        rel_time: 0,
        abs_time: true,
        nibp_stamp: NibpStamp::Absolute,
        linked: None,
        content: ResultContent::Values,
        extra_state: 0,
        values_age: None,
    };

    /// As a real monitor sends it: unspecified absolute time, the given
    /// relative time.
    pub const fn field(rel_time: u32) -> ResultShape {
        ResultShape {
            rel_time,
            abs_time: false,
            nibp_stamp: NibpStamp::Absolute,
            linked: None,
            content: ResultContent::Values,
            extra_state: 0,
            values_age: None,
        }
    }
}

/// Writes a result header (`RORS`, or `ROLRS` with its state), the action
/// result for an extended poll, and the reply header; returns the length
/// slots to fill, innermost last.
fn poll_reply_header(
    w: &mut Writer,
    invoke_id: u16,
    poll_number: u16,
    linked: Option<LinkedState>,
    rel_time: u32,
    abs_time: [u8; 8],
    object: u16,
) -> [usize; 3] {
    let ro = match linked {
        None => export_header(w, RORS_APDU),
        Some(state) => {
            let ro = export_header(w, ROLRS_APDU);
            w.bytes(&[
                match state {
                    LinkedState::First => RORLS_FIRST,
                    LinkedState::Middle => RORLS_NOT_FIRST_NOT_LAST,
                    LinkedState::Last => RORLS_LAST,
                },
                1,
            ]);
            ro
        }
    };
    w.u16(invoke_id);
    w.u16(CMD_CONFIRMED_ACTION);
    let res = w.len_slot();
    ManagedObject::MDS.write(w);
    w.u16(NOM_ACT_POLL_MDIB_DATA_EXT);
    let reply = w.len_slot();
    w.u16(poll_number);
    w.u16(0); // sequence number
    w.u32(rel_time);
    w.bytes(&abs_time);
    w.u16(NOM_PART_OBJ);
    w.u16(object);
    w.u16(0);
    [ro, res, reply]
}

fn finish_reply(mut w: Writer, slots: [usize; 3], out: &mut Vec<u8>) {
    for slot in slots.into_iter().rev() {
        w.fill(slot);
    }
    frame_message(w.as_slice(), out);
}

/// Monitor: a poll result carrying `snapshot`'s numerics (HR, pleth pulse,
/// SpO2 as single numerics; NIBP as a compound numeric with its measurement
/// time), with the absolute time stamp set. `linked` makes it one part of a
/// linked result.
///
/// With breathing in the snapshot, awRR and etCO2 follow as single
/// numerics (etCO2 in mmHg); without, they are left out as by a monitor
/// without a capnograph.
///
/// Resolution: rates 1/min, SpO2 0.1 %, NIBP 1 mmHg, etCO2 1 mmHg. Sensor-off is sent as
/// unavailable and artifact as questionable (the export has no such states);
/// an old value is sent as a plain value (its age is its time stamp).
pub fn encode_poll_result(
    invoke_id: u16,
    poll_number: u16,
    snapshot: &Snapshot,
    linked: Option<LinkedState>,
    out: &mut Vec<u8>,
) {
    let shape = ResultShape {
        linked,
        ..ResultShape::SIMPLE
    };
    encode_poll_result_with(invoke_id, poll_number, snapshot, &shape, out);
}

/// Monitor: a numerics poll result shaped by `shape`.
pub fn encode_poll_result_with(
    invoke_id: u16,
    poll_number: u16,
    snapshot: &Snapshot,
    shape: &ResultShape,
    out: &mut Vec<u8>,
) {
    let mut w = Writer::new();
    let abs = if shape.abs_time {
        encode_abs_time(snapshot.device_time)
    } else {
        [0xFF; 8]
    };
    let slots = poll_reply_header(
        &mut w,
        invoke_id,
        poll_number,
        shape.linked,
        shape.rel_time,
        abs,
        NOM_MOC_VMO_METRIC_NU,
    );
    if shape.content == ResultContent::Empty {
        w.u32(0); // PollInfoList: no context
        finish_reply(w, slots, out);
        return;
    }
    // PollInfoList with one SingleContextPoll.
    w.u16(1);
    let contexts = w.len_slot();
    w.u16(0); // context id
              // A monitor with a capnograph adds awRR and etCO2 (mmHg) numerics.
    let breathing = snapshot.has_breathing();
    let observations: u16 = 3 + 2 * u16::from(breathing) + u16::from(snapshot.nibp.is_some());
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
    let airway = [
        (
            0x0014,
            nu_obs(
                NOM_AWAY_RESP_RATE,
                NOM_DIM_RESP_PER_MIN,
                snapshot.resp_rate,
                0,
            ),
        ),
        (
            0x0015,
            nu_obs(NOM_AWAY_CO2_ET, NOM_DIM_MMHG, snapshot.etco2, 0),
        ),
    ];
    let singles = singles
        .into_iter()
        .chain(airway.into_iter().filter(|_| breathing));
    let label = |w: &mut Writer, physio: u16| {
        w.u16(NOM_ATTR_ID_LABEL);
        w.u16(4);
        w.u32(0x0002_0000 | u32::from(physio));
    };
    let labels_only = shape.content == ResultContent::LabelsOnly;
    for (handle, mut obs) in singles {
        w.u16(handle);
        let age = shape.values_age.filter(|_| !labels_only);
        w.u16(if age.is_some() { 2 } else { 1 });
        let attrs = w.len_slot();
        if labels_only {
            label(&mut w, obs.physio_id);
        } else {
            obs.state |= shape.extra_state;
            w.u16(NOM_ATTR_NU_VAL_OBS);
            w.u16(10);
            obs.write(&mut w);
        }
        if let Some(age) = age {
            w.u16(NOM_ATTR_TIME_STAMP_REL);
            w.u16(4);
            w.u32(
                shape
                    .rel_time
                    .wrapping_sub(age.wrapping_mul(REL_TICKS_PER_SEC as u32)),
            );
        }
        w.fill(attrs);
    }
    if let Some(n) = snapshot.nibp {
        w.u16(0x0013);
        let stamp = n.measured_at.map(|t| (t, shape.nibp_stamp));
        let stamped = !labels_only && matches!(stamp, Some((_, s)) if s != NibpStamp::Omitted);
        w.u16(if stamped { 2 } else { 1 });
        let attrs = w.len_slot();
        if labels_only {
            label(&mut w, NOM_PRESS_BLD_NONINV);
        } else {
            w.u16(NOM_ATTR_NU_CMPD_VAL_OBS);
            let cmpd = w.len_slot();
            w.u16(3);
            w.u16(30);
            for (id, s) in [
                (NOM_PRESS_BLD_NONINV_SYS, n.systolic),
                (NOM_PRESS_BLD_NONINV_DIA, n.diastolic),
                (NOM_PRESS_BLD_NONINV_MEAN, n.mean),
            ] {
                let mut obs = nu_obs(id, NOM_DIM_MMHG, s, 0);
                obs.state |= shape.extra_state;
                obs.write(&mut w);
            }
            w.fill(cmpd);
            match stamp {
                Some((t, NibpStamp::Absolute)) => {
                    w.u16(NOM_ATTR_TIME_STAMP_ABS);
                    w.u16(8);
                    w.bytes(&encode_abs_time(t));
                }
                Some((t, NibpStamp::Relative)) => {
                    let age = (snapshot.device_time.0 - t.0) * REL_TICKS_PER_SEC;
                    w.u16(NOM_ATTR_TIME_STAMP_REL);
                    w.u16(4);
                    w.u32(shape.rel_time.wrapping_sub(age as u32));
                }
                _ => {}
            }
        }
        w.fill(attrs);
    }
    w.fill(polls);
    w.fill(contexts);
    finish_reply(w, slots, out);
}

/// Monitor: the answer to a numerics poll as a real monitor sends it: a
/// linked result of a labels-only first part and a last part with the
/// values, then an empty closing result, all with the absolute time
/// unspecified and relative time `rel_time`.
pub fn encode_field_numerics(
    invoke_id: u16,
    poll_number: u16,
    snapshot: &Snapshot,
    rel_time: u32,
    out: &mut Vec<u8>,
) {
    for (linked, content) in [
        (Some(LinkedState::First), ResultContent::LabelsOnly),
        (Some(LinkedState::Last), ResultContent::Values),
        (None, ResultContent::Empty),
    ] {
        let shape = ResultShape {
            linked,
            content,
            ..ResultShape::field(rel_time)
        };
        encode_poll_result_with(invoke_id, poll_number, snapshot, &shape, out);
    }
}

/// Monitor: an alert monitor poll result whose technical alarm list holds
/// `alarms` (each with its text; an empty text goes as an entry without one).
pub fn encode_alert_result(
    invoke_id: u16,
    poll_number: u16,
    rel_time: u32,
    alarms: &[TechAlarm],
    out: &mut Vec<u8>,
) {
    let alert_monitor = Observed {
        object: NOM_MOC_VMO_AL_MON,
        handle: 0x0001,
        attribute: NOM_ATTR_AL_MON_T_AL_LIST,
    };
    alert_monitor.encode_result(invoke_id, poll_number, rel_time, out, |w| {
        encode_alarm_list(alarms, w)
    });
}

/// The technical alarm list: its first [`MAX_TECH_ALARMS`] `alarms`.
fn encode_alarm_list(alarms: &[TechAlarm], w: &mut Writer) {
    let alarms = &alarms[..alarms.len().min(MAX_TECH_ALARMS)];
    w.u16(alarms.len() as u16);
    let entries = w.len_slot();
    for a in alarms {
        w.u16(a.source);
        w.u16(a.code);
        w.u16(2); // MED_PRI_T_AL
        w.u16(0); // state
        ManagedObject {
            class: NOM_MOC_VMO_METRIC_NU,
            context: 0,
            handle: 0x0012,
        }
        .write(w);
        w.u16(if a.text.is_empty() {
            GEN_ALMON_INFO
        } else {
            STR_ALMON_INFO
        });
        let info = w.len_slot();
        w.u16(1); // instance
        w.u32(0x0001_0000 | u32::from(a.code)); // text id
        w.u16(2); // priority
        w.u16(0); // flags
        if !a.text.is_empty() {
            let text = a.text.as_str().as_bytes();
            w.u16((text.len() as u16 + 1) * 2);
            for &c in text {
                w.u16(u16::from(c));
            }
            w.u16(0);
        }
        w.fill(info);
    }
    w.fill(entries);
}

/// Monitor: a wave (real-time sample array) poll result with a few pleth
/// samples: what a monitor sends other hosts, or after a wave poll.
pub fn encode_wave_result(invoke_id: u16, poll_number: u16, rel_time: u32, out: &mut Vec<u8>) {
    let pleth_wave = Observed {
        object: NOM_MOC_VMO_METRIC_SA_RT,
        handle: 0x0020,
        attribute: NOM_ATTR_SA_VAL_OBS,
    };
    pleth_wave.encode_result(invoke_id, poll_number, rel_time, out, |w| {
        w.u16(0x4BB4); // pleth
        w.u16(0);
        w.u16(32);
        for i in 0..16u16 {
            w.u16(0x0800 + i * 64);
        }
    });
}

/// The one attribute of the one object a monitor-side poll result
/// reports (an alert monitor's alarm list, a wave's samples).
struct Observed {
    /// The polled object type.
    object: u16,
    /// The object's handle.
    handle: u16,
    /// The attribute's id.
    attribute: u16,
}

impl Observed {
    /// Monitor: a poll result (absolute time unspecified) of one context
    /// holding this object with this attribute, whose value `value` writes.
    fn encode_result(
        &self,
        invoke_id: u16,
        poll_number: u16,
        rel_time: u32,
        out: &mut Vec<u8>,
        value: impl FnOnce(&mut Writer),
    ) {
        let mut w = Writer::new();
        let slots = poll_reply_header(
            &mut w,
            invoke_id,
            poll_number,
            None,
            rel_time,
            [0xFF; 8],
            self.object,
        );
        w.u16(1);
        let contexts = w.len_slot();
        w.u16(0); // context id
        w.u16(1);
        let polls = w.len_slot();
        w.u16(self.handle);
        w.u16(1);
        let attrs = w.len_slot();
        w.u16(self.attribute);
        let attr = w.len_slot();
        value(&mut w);
        w.fill(attr);
        w.fill(attrs);
        w.fill(polls);
        w.fill(contexts);
        finish_reply(w, slots, out);
    }
}

// -------------------------------------------------------------- decoders

/// One part of a result that linked results are put together from.
trait Part: Copy + Default {
    /// Adds a later part of the same result.
    fn merge(&mut self, later: &Self);
}

impl Part for PollValues {
    fn merge(&mut self, later: &Self) {
        PollValues::merge(self, later);
    }
}

impl Part for TechAlarms {
    fn merge(&mut self, later: &Self) {
        TechAlarms::merge(self, later);
    }
}

/// Puts the parts of a linked result (first, middle..., last, then a plain
/// and usually empty closing result) together into one set.
#[derive(Clone, Copy, Debug, Default)]
struct Assembler<T: Part> {
    /// A sequence whose last part has not come: its invoke id and parts.
    open: Option<(u16, T)>,
}

impl<T: Part> Assembler<T> {
    /// Takes one part; `done` gets every complete set (a sequence cut short
    /// by another is complete as far as it got).
    fn part(
        &mut self,
        invoke_id: u16,
        linked: Option<LinkedState>,
        part: T,
        mut done: impl FnMut(T),
    ) {
        let open = match self.open.take() {
            Some((id, acc)) if id == invoke_id => Some(acc),
            Some((_, cut)) => {
                done(cut);
                None
            }
            None => None,
        };
        match (linked, open) {
            (Some(LinkedState::First), prev) => {
                if let Some(cut) = prev {
                    done(cut);
                }
                self.open = Some((invoke_id, part));
            }
            (Some(LinkedState::Middle), Some(mut acc)) => {
                acc.merge(&part);
                self.open = Some((invoke_id, acc));
            }
            (Some(LinkedState::Middle), None) => self.open = Some((invoke_id, part)),
            (_, Some(mut acc)) => {
                acc.merge(&part);
                done(acc);
            }
            (_, None) => done(part),
        }
    }

    fn clear(&mut self) {
        self.open = None;
    }
}

/// State shared by both decoders: framing, output queue, counters, the
/// monitor's clock, result assembly and the active INOPs.
#[derive(Debug)]
struct Core {
    source: SourceId,
    deframer: Deframer,
    outputs: VecDeque<Output>,
    stats: DecodeStats,
    clock: Option<ClockAnchor>,
    model: NoteText,
    numerics: Assembler<PollValues>,
    alerts: Assembler<TechAlarms>,
    inops: TechAlarms,
    ages: AgeLimits,
}

impl Core {
    fn new(source: SourceId) -> Self {
        Core {
            source,
            deframer: Deframer::new(),
            outputs: VecDeque::with_capacity(64),
            stats: DecodeStats::default(),
            clock: None,
            model: NoteText::EMPTY,
            numerics: Assembler::default(),
            alerts: Assembler::default(),
            inops: TechAlarms::EMPTY,
            ages: AgeLimits::default(),
        }
    }

    fn drop_frame(&mut self, reason: DropReason) {
        self.stats.count_drop(reason);
        self.outputs.push_back(Output::Dropped(reason));
    }

    /// Feeds one byte; returns a message when a frame completed and parsed
    /// (the caller counts it as used or ignored).
    fn push(&mut self, b: u8) -> Option<Message> {
        match self.deframer.push(b)? {
            RxEvent::Drop(reason) => {
                self.drop_frame(reason);
                None
            }
            RxEvent::Frame => match parse_message(self.deframer.data()) {
                Ok(m) => Some(m),
                Err(reason) => {
                    self.drop_frame(reason);
                    None
                }
            },
        }
    }

    fn used(&mut self) {
        self.stats.frames_ok += 1;
    }

    fn ignored(&mut self) {
        self.stats.ignored += 1;
    }

    fn note(&mut self, n: DeviceNote) {
        self.outputs.push_back(Output::Note(n));
    }

    fn mds_create(&mut self, info: &MdsInfo) {
        if let Some(anchor) = info.anchor() {
            self.clock = Some(anchor);
        }
        if !info.model.is_empty() {
            self.model = info.model;
        }
    }

    /// A numerics result (part): complete sets become readings.
    fn numerics_part(
        &mut self,
        now: Instant,
        invoke_id: u16,
        linked: Option<LinkedState>,
        v: PollValues,
    ) {
        let mut asm = self.numerics;
        asm.part(invoke_id, linked, v, |set| self.emit(now, &set));
        self.numerics = asm;
    }

    /// An alert monitor result (part): a complete list that changed the
    /// set of active INOPs becomes begin / end notes.
    fn alerts_part(&mut self, invoke_id: u16, linked: Option<LinkedState>, list: TechAlarms) {
        let mut asm = self.alerts;
        asm.part(invoke_id, linked, list, |set| self.tech_alarms(set));
        self.alerts = asm;
    }

    fn tech_alarms(&mut self, now: TechAlarms) {
        if !now.listed {
            return; // a closing or empty part: no list, no news
        }
        let old = self.inops;
        for n in old.changes(&now) {
            self.outputs.push_back(Output::Note(n));
        }
        self.inops = now;
    }

    /// Forget the session's partial results; end the active INOPs (with no
    /// association the monitor's alarm list is unknown).
    fn reset_session(&mut self) {
        self.numerics.clear();
        self.alerts.clear();
        self.tech_alarms(TechAlarms {
            listed: true,
            ..TechAlarms::EMPTY
        });
    }

    /// The device time of a result: its absolute time stamp when the
    /// monitor sends one, else the MDS Create's clock anchor moved on by the
    /// result's relative time. The anchor follows every result, so relative
    /// time wrapping in a long session does no harm.
    fn device_time(&mut self, v: &PollValues) -> Option<DeviceTime> {
        match (v.device_time, self.clock) {
            (Some(t), _) => {
                self.clock = Some(ClockAnchor {
                    abs_ticks: t.0 * REL_TICKS_PER_SEC,
                    rel: v.rel_time,
                });
                Some(t)
            }
            (None, Some(anchor)) => {
                let ticks = anchor.ticks_at(v.rel_time);
                self.clock = Some(ClockAnchor {
                    abs_ticks: ticks,
                    rel: v.rel_time,
                });
                Some(DeviceTime(ticks.div_euclid(REL_TICKS_PER_SEC)))
            }
            (None, None) => None,
        }
    }

    fn emit(&mut self, now: Instant, values: &PollValues) {
        if values.is_empty() {
            return;
        }
        let source = self.source;
        let device_time = self.device_time(values);
        let clock = self.clock;
        let ages = self.ages;
        // Whether a stamp is more than `limit` behind this result.
        let older = |limit: Duration, stamp: Option<Stamp>| match stamp {
            Some(Stamp::Abs(t)) => device_time.is_some_and(|c| AgeLimits::is_old(limit, t, c)),
            Some(Stamp::Rel(r)) => {
                // Relative times wrap: a stamp ahead of the result (a wrapped
                // difference in the upper half) is not old.
                let ticks = values.rel_time.wrapping_sub(r);
                ticks < 1 << 31 && i64::from(ticks) / REL_TICKS_PER_SEC > limit.as_secs() as i64
            }
            None => false,
        };
        let aged = |s: Sample, i: usize| {
            if older(ages.continuous, values.stamps[i]) {
                s.into_old()
            } else {
                s
            }
        };
        let mut push = |measurement| {
            self.outputs.push_back(Output::Reading(Reading {
                source,
                arrival: now,
                device_time,
                measurement,
            }))
        };
        if let Some(s) = values.heart_rate {
            push(Measurement::HeartRate(aged(s, HR)));
        }
        if let Some(s) = values.spo2 {
            push(Measurement::SpO2(aged(s, SPO2)));
        }
        if let Some(s) = values.pulse_rate {
            push(Measurement::PulseRate(aged(s, PR)));
        }
        if let Some(s) = values.resp_rate {
            push(Measurement::RespRate(aged(s, RR)));
        }
        if let Some(s) = values.etco2 {
            push(Measurement::EtCo2(aged(s, ETCO2)));
        }
        if let Some(mut n) = values.nibp {
            let stamp = n
                .measured_at
                .map(Stamp::Abs)
                .or(values.nibp_rel_time.map(Stamp::Rel));
            if n.measured_at.is_none() {
                n.measured_at = values
                    .nibp_rel_time
                    .zip(clock)
                    .map(|(rel, anchor)| anchor.device_time(rel));
            }
            if older(ages.nibp, stamp) {
                n = n.into_old();
            }
            push(Measurement::Nibp(n));
        }
    }
}

/// Decodes a monitor-side IntelliVue byte stream alone (a recording or a
/// tap on the monitor's transmit line): numerics results become readings,
/// alert monitor results INOP notes, accept / abort / refuse / release
/// association notes; the MDS Create sets the clock. Wave and other results
/// are counted as ignored.
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

    /// How old a value may be, by the monitor's clock, and still be taken as
    /// current (default: [`AgeLimits::default`]).
    pub fn with_age_limits(mut self, ages: AgeLimits) -> Self {
        self.core.ages = ages;
        self
    }
}

impl Protocol for IntelliVueMonitorStream {
    fn handle_bytes(&mut self, now: Instant, bytes: &[u8]) {
        self.core.stats.bytes = self.core.stats.bytes.wrapping_add(bytes.len() as u64);
        for &b in bytes {
            let Some(m) = self.core.push(b) else {
                continue;
            };
            let core = &mut self.core;
            match m {
                Message::PollResult {
                    invoke_id,
                    linked,
                    object: NOM_MOC_VMO_METRIC_NU,
                    values,
                    ..
                } => {
                    core.used();
                    core.numerics_part(now, invoke_id, linked, values);
                }
                Message::PollResult {
                    invoke_id,
                    linked,
                    object: NOM_MOC_VMO_AL_MON,
                    ..
                } => {
                    core.used();
                    let list = parse_tech_alarms(core.deframer.data()).unwrap_or_default();
                    core.alerts_part(invoke_id, linked, list);
                }
                Message::MdsCreate { info, .. } => {
                    core.used();
                    core.mds_create(&info);
                }
                Message::AssociationAccept => {
                    core.used();
                    core.note(DeviceNote::Associated);
                }
                Message::Abort
                | Message::AssociationRefuse
                | Message::ReleaseRequest
                | Message::ReleaseResponse => {
                    core.used();
                    let why = match m {
                        Message::Abort => AssociationProblem::Aborted,
                        Message::AssociationRefuse => AssociationProblem::Refused,
                        _ => AssociationProblem::Released,
                    };
                    core.note(DeviceNote::AssociationLost(why));
                }
                _ => core.ignored(),
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
    /// The link is down: nothing is sent until it comes up.
    LinkDown,
    /// Released by [`IntelliVueHost::release`]; nothing more is sent.
    Released,
}

/// A message the host will send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tx {
    AssociationRequest,
    EventResult(u16, ManagedObject, u32),
    Poll(u16, u16),
    AlertPoll(u16, u16),
    Abort,
    ReleaseRequest,
    ReleaseResponse,
}

/// Requests whose results the host takes: the last few polls' invoke ids
/// and polled object types (a late result of the previous poll still
/// counts).
const TRACKED_REQUESTS: usize = 4;

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
    requests: [Option<(u16, u16)>; TRACKED_REQUESTS],
    next_request: usize,
    /// An abort for a monitor still associated from before went out in this
    /// attempt already.
    stale_cleared: bool,
}

impl IntelliVueHost {
    /// A host session for `source` with default timers.
    pub fn new(source: SourceId) -> Self {
        Self::with_config(source, IntelliVueConfig::default())
    }

    /// How old a value may be, by the monitor's clock, and still be taken as
    /// current (default: [`AgeLimits::default`]).
    pub fn with_age_limits(mut self, ages: AgeLimits) -> Self {
        self.core.ages = ages;
        self
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
            requests: [None; TRACKED_REQUESTS],
            next_request: 0,
            stale_cleared: false,
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

    /// The monitor's model, as its MDS Create gave it (empty before).
    pub fn monitor_model(&self) -> NoteText {
        self.core.model
    }

    /// The monitor's clock anchor (absolute and relative time of one
    /// moment), from the MDS Create and kept current by each result.
    pub fn monitor_clock(&self) -> Option<ClockAnchor> {
        self.core.clock
    }

    /// The monitor's active technical alarms (INOPs), as last polled.
    pub fn monitor_inops(&self) -> &[TechAlarm] {
        self.core.inops.as_slice()
    }

    /// Releases the association for good (shutdown): a release request goes
    /// out and the session stays quiet afterwards.
    pub fn release(&mut self) {
        self.transmit.clear();
        if self.is_session_up() {
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

    /// Sends the association request and waits for the accept.
    fn request_association(&mut self, now: Instant) {
        self.send(Tx::AssociationRequest);
        self.state = SessionState::AwaitingAccept(now + self.config.association_timeout);
    }

    /// Forgets every request of the session.
    fn forget_requests(&mut self) {
        self.requests = [None; TRACKED_REQUESTS];
        self.core.reset_session();
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
        self.core.note(DeviceNote::AssociationLost(why));
        self.forget_requests();
        self.state = SessionState::Backoff(Some(now + self.backoff));
        self.backoff = (self.backoff * 2).min(self.config.backoff_max);
    }

    fn poll(&mut self) {
        for alerts in [false, true] {
            self.invoke_id = self.invoke_id.wrapping_add(1);
            self.poll_number = self.poll_number.wrapping_add(1);
            let (id, n) = (self.invoke_id, self.poll_number);
            let (tx, object) = if alerts {
                (Tx::AlertPoll(id, n), NOM_MOC_VMO_AL_MON)
            } else {
                (Tx::Poll(id, n), NOM_MOC_VMO_METRIC_NU)
            };
            self.send(tx);
            self.requests[self.next_request] = Some((id, object));
            self.next_request = (self.next_request + 1) % TRACKED_REQUESTS;
        }
    }

    /// Whether a result with `invoke_id` for `object` answers one of our polls.
    fn ours(&self, invoke_id: u16, object: u16) -> bool {
        self.requests.contains(&Some((invoke_id, object)))
    }

    /// Data export traffic while no association of ours is up: the monitor
    /// is still associated with an earlier host (or an earlier run of
    /// this one). Abort that association and ask again at once, once per
    /// attempt.
    fn stale_association(&mut self, now: Instant) {
        let waiting = matches!(
            self.state,
            SessionState::AwaitingAccept(_) | SessionState::Backoff(_) | SessionState::LinkDown
        );
        if waiting && !self.stale_cleared {
            self.stale_cleared = true;
            self.transmit.clear();
            self.send(Tx::Abort);
            self.request_association(now);
        }
    }

    /// The MDS Create: answer it in any state; it completes an association
    /// whatever came before (a lost accept, a request timed out a moment
    /// ago), or tells that the monitor restarted.
    fn mds_create(
        &mut self,
        now: Instant,
        invoke_id: u16,
        mo: ManagedObject,
        event_time: u32,
        info: &MdsInfo,
    ) {
        self.send(Tx::EventResult(invoke_id, mo, event_time));
        self.core.mds_create(info);
        if matches!(self.state, SessionState::Associated { .. }) {
            self.core.note(DeviceNote::MonitorRestarted);
            return;
        }
        self.associations = self.associations.wrapping_add(1);
        self.backoff = self.config.backoff_min;
        self.forget_requests();
        self.core.note(DeviceNote::Associated);
        self.poll();
        self.state = SessionState::Associated {
            next_poll: now + self.config.poll_interval,
            data_deadline: now + self.config.data_timeout,
        };
    }

    fn on_message(&mut self, now: Instant, m: Message) {
        if self.state == SessionState::Released {
            self.core.ignored();
            return;
        }
        if self.state == SessionState::LinkDown {
            // Bytes arrive: the link is up after all.
            self.state = SessionState::Backoff(None);
        }
        let associated = matches!(self.state, SessionState::Associated { .. });
        match m {
            Message::AssociationAccept => {
                self.core.used();
                match self.state {
                    SessionState::AwaitingMdsCreate(_) => {}
                    SessionState::Associated { .. } => {
                        // A new association out of turn: the monitor restarted.
                        self.core.note(DeviceNote::MonitorRestarted);
                        self.forget_requests();
                        self.state =
                            SessionState::AwaitingMdsCreate(now + self.config.association_timeout);
                    }
                    _ => {
                        self.state =
                            SessionState::AwaitingMdsCreate(now + self.config.association_timeout)
                    }
                }
            }
            Message::MdsCreate {
                invoke_id,
                managed_object,
                event_time,
                info,
            } => {
                self.core.used();
                self.mds_create(now, invoke_id, managed_object, event_time, &info);
            }
            Message::PollResult {
                invoke_id,
                linked,
                object,
                values,
                ..
            } if associated && self.ours(invoke_id, object) => {
                self.core.used();
                self.backoff = self.config.backoff_min;
                if let SessionState::Associated { next_poll, .. } = self.state {
                    self.state = SessionState::Associated {
                        next_poll,
                        data_deadline: now + self.config.data_timeout,
                    };
                }
                if object == NOM_MOC_VMO_METRIC_NU {
                    self.core.numerics_part(now, invoke_id, linked, values);
                } else {
                    let list = parse_tech_alarms(self.core.deframer.data()).unwrap_or_default();
                    self.core.alerts_part(invoke_id, linked, list);
                }
            }
            Message::PollResult { .. } | Message::OtherResult { .. } | Message::Other => {
                self.core.ignored();
                if !associated {
                    self.stale_association(now);
                }
            }
            Message::ReleaseRequest => {
                self.core.used();
                if self.is_session_up() {
                    self.send(Tx::ReleaseResponse);
                }
                self.lose(now, false, AssociationProblem::Released);
            }
            Message::Abort => {
                self.core.used();
                self.lose(now, false, AssociationProblem::Aborted);
            }
            Message::AssociationRefuse => {
                self.core.used();
                if matches!(
                    self.state,
                    SessionState::AwaitingAccept(_) | SessionState::AwaitingMdsCreate(_)
                ) {
                    // The monitor may still hold an association from before:
                    // abort it, so that the next request finds it free.
                    self.lose(now, true, AssociationProblem::Refused);
                }
            }
            Message::ReleaseResponse => {
                self.core.used();
                self.lose(now, false, AssociationProblem::Released);
            }
            Message::AssociationRequest
            | Message::EventResult { .. }
            | Message::PollRequest { .. } => {
                // Host messages: an echo on the line, not the monitor.
                self.core.ignored();
            }
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

    fn handle_link(&mut self, now: Instant, up: bool) {
        if self.state == SessionState::Released {
            return;
        }
        if self.is_session_up() {
            self.core
                .note(DeviceNote::AssociationLost(AssociationProblem::LinkDown));
        }
        // Whatever was queued belongs to the old link.
        self.transmit.clear();
        self.forget_requests();
        self.core.deframer = Deframer::new();
        self.backoff = self.config.backoff_min;
        self.stale_cleared = false;
        if up {
            // Ask at once: the monitor sends nothing until associated.
            self.request_association(now);
        } else {
            self.state = SessionState::LinkDown;
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            SessionState::Released | SessionState::LinkDown => {}
            SessionState::Backoff(until) => {
                if until.is_none_or(|t| now >= t) {
                    self.stale_cleared = false;
                    self.request_association(now);
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
            Tx::EventResult(invoke_id, mo, time) => encode_event_result(invoke_id, mo, time, out),
            Tx::Poll(invoke_id, poll_number) => encode_poll_request(invoke_id, poll_number, out),
            Tx::AlertPoll(invoke_id, poll_number) => {
                encode_alert_poll_request(invoke_id, poll_number, out)
            }
            Tx::Abort => encode_abort(out),
            Tx::ReleaseRequest => encode_release_request(out),
            Tx::ReleaseResponse => encode_release_response(out),
        }
        true
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            SessionState::Released | SessionState::LinkDown => None,
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

// ------------------------------------------ registry: host and monitor side

/// The host side for the registry: associate, then poll.
pub fn open(source: SourceId, ages: AgeLimits) -> BoxedProtocol {
    Box::new(IntelliVueHost::new(source).with_age_limits(ages))
}

/// A simulated monitor drops an association after this long without a poll.
pub const MONITOR_KEEPALIVE: Duration = Duration::from_secs(10);

/// The model a simulated monitor names in its MDS Create.
pub const MONITOR_MODEL: &str = "vigil-sim";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MonitorState {
    Idle,
    AwaitingEventResult,
    Associated { last_poll: Instant },
}

/// The monitor side, for simulated devices: nothing until associated
/// (accept + MDS Create, then the host's event result); then one poll
/// result per poll; the association is dropped after
/// [`MONITOR_KEEPALIVE`] without a poll.
#[derive(Debug)]
pub struct PhilipsMonitor {
    rx: HostRx,
    state: MonitorState,
    invoke_id: u16,
    /// When the relative clock (1/8 ms ticks) was zero: power-on.
    epoch: Instant,
}

impl PhilipsMonitor {
    /// A fresh monitor side for the registry.
    pub fn boxed() -> Box<dyn Monitor> {
        Box::new(PhilipsMonitor {
            rx: HostRx::default(),
            state: MonitorState::Idle,
            invoke_id: 0,
            epoch: Instant::ZERO,
        })
    }

    /// The relative time at `t`: 1/8 ms ticks since power-on, wrapping as
    /// the monitor's does.
    fn rel(&self, t: Instant) -> u32 {
        ((t - self.epoch).as_micros() / 125) as u32
    }

    fn message(&mut self, now: Instant, m: Message, io: &mut dyn MonitorIo) {
        let mut out = Vec::with_capacity(256);
        match (m, self.state) {
            (Message::AssociationRequest, _) => {
                encode_association_response(&mut out);
                self.invoke_id = self.invoke_id.wrapping_add(1);
                let info = MdsInfo {
                    abs_time: Some(io.snapshot(now).device_time),
                    abs_hundredths: 0,
                    rel_time: Some(self.rel(now)),
                    model: NoteText::new(MONITOR_MODEL.as_bytes()),
                };
                encode_mds_create_event(self.invoke_id, &info, &mut out);
                self.state = MonitorState::AwaitingEventResult;
            }
            (Message::EventResult { .. }, MonitorState::AwaitingEventResult) => {
                self.state = MonitorState::Associated { last_poll: now };
            }
            (
                Message::PollRequest {
                    invoke_id,
                    poll_number,
                    object,
                },
                MonitorState::Associated { .. },
            ) => {
                self.answer(now, invoke_id, poll_number, object, io, &mut out);
                self.state = MonitorState::Associated { last_poll: now };
            }
            (Message::ReleaseRequest, _) => {
                encode_release_response(&mut out);
                self.state = MonitorState::Idle;
            }
            (Message::Abort, _) => self.state = MonitorState::Idle,
            _ => return,
        }
        io.host_message();
        io.send_frame(now, out);
    }

    /// Answers a poll as a real monitor does: numerics as a linked result
    /// (labels first, then values, then an empty closing result) with the
    /// absolute time unspecified; the alert monitor with its technical
    /// alarm list; nothing for objects it does not model.
    fn answer(
        &self,
        now: Instant,
        invoke_id: u16,
        poll: u16,
        object: u16,
        io: &dyn MonitorIo,
        out: &mut Vec<u8>,
    ) {
        let snap = io.snapshot(now);
        let rel = self.rel(now);
        match object {
            NOM_MOC_VMO_METRIC_NU => encode_field_numerics(invoke_id, poll, &snap, rel, out),
            NOM_MOC_VMO_AL_MON => {
                let sensor_off = TechAlarm {
                    source: NOM_PULS_OXIM_SAT_O2,
                    code: NOM_EVT_SENSOR_DISCONN,
                    text: NoteText::new(b"SpO2 NO SENSOR"),
                };
                let alarms: &[TechAlarm] = if snap.spo2.validity == Validity::SensorOff {
                    &[sensor_off]
                } else {
                    &[]
                };
                encode_alert_result(invoke_id, poll, rel, alarms, out);
            }
            _ => {}
        }
    }
}

impl Monitor for PhilipsMonitor {
    fn stream_rate(&self) -> Option<u64> {
        None
    }

    fn frame(&mut self, t: Instant, snap: &Snapshot, _fresh: bool, out: &mut Vec<u8>) {
        encode_poll_result_with(
            self.invoke_id,
            0,
            snap,
            &ResultShape::field(self.rel(t)),
            out,
        );
    }

    fn sending(&self) -> bool {
        matches!(self.state, MonitorState::Associated { .. })
    }

    /// Deframes (escapes, FCS, header) and acts on messages.
    fn handle_host_byte(&mut self, now: Instant, b: u8, io: &mut dyn MonitorIo) {
        const ESC: u8 = 0x7D;
        match b {
            BOF => {
                self.rx.buf.clear();
                self.rx.in_frame = true;
                self.rx.escaped = false;
            }
            EOF => {
                if self.rx.in_frame && !self.rx.escaped {
                    if let Some(m) = parse_host_frame(&self.rx.buf) {
                        self.message(now, m, io);
                    }
                }
                self.rx.buf.clear();
                self.rx.in_frame = false;
            }
            ESC if self.rx.in_frame => self.rx.escaped = true,
            _ if self.rx.in_frame => {
                if self.rx.buf.len() >= MAX_HOST_FRAME {
                    self.rx.reset();
                } else {
                    let v = if self.rx.escaped { b ^ 0x20 } else { b };
                    self.rx.escaped = false;
                    self.rx.buf.push(v);
                }
            }
            _ => {}
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            MonitorState::Associated { last_poll } => Some(last_poll + MONITOR_KEEPALIVE),
            _ => None,
        }
    }

    fn handle_timeout(&mut self, t: Instant, io: &mut dyn MonitorIo) {
        self.state = MonitorState::Idle;
        let mut frame = Vec::new();
        encode_abort(&mut frame);
        io.send_frame(t, frame);
    }

    fn power_off(&mut self) {
        self.state = MonitorState::Idle;
        self.rx.reset();
    }

    fn power_on(&mut self, t: Instant) {
        self.epoch = t;
    }
}

/// A Philips message from an unescaped frame (header + data + FCS), if the
/// frame is whole (also used by `vigil-sim`'s capture emulator).
pub fn parse_host_frame(frame: &[u8]) -> Option<Message> {
    if frame.len() < 6 {
        return None;
    }
    let (content, fcs) = frame.split_at(frame.len() - 2);
    if fcs16(content).to_le_bytes() != fcs {
        return None;
    }
    match content {
        [0x11, 0x01, hi, lo, data @ ..]
            if usize::from(u16::from_be_bytes([*hi, *lo])) == data.len() =>
        {
            parse_message(data).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::testkit::*;
    use proptest::prelude::*;

    const MX800_FRAME: &str = "c0 11 01 00 20 e1 00 00 02 00 02 00 18 00 00 00 03 00 12 00 21 00 00 00 00 00 01 00 08 f2 3a 00 04 00 00 00 00 7b d2 c1";
    const HR_60: &str = "09 50 00 0a 41 82 00 00 0a a0 00 00 00 3c";
    const NIBP_UNAVAILABLE: &str = "09 4b 00 22 00 03 00 1e 4a 05 20 00 0f 20 00 7f ff ff 4a 06 20 00 0f 20 00 7f ff ff 4a 07 20 00 0f 20 00 7f ff ff";
    const SPO2_NAN: &str = "09 50 00 0a 4b b8 80 00 02 20 00 7f ff ff";
    /// The association request of the programming guide's example; also
    /// VSCaptureMP's `aarq_msg_ext_poll2`, byte for byte.
    const ASSOC_REQUEST: &str = "0d ec 05 08 13 01 00 16 01 02 80 00 14 02 00 02 c1 dc 31 80 a0 80 80 01 01 00 00 a2 80 a0 03 00 00 01 a4 80 30 80 02 01 01 06 04 52 01 00 01 30 80 06 02 51 01 00 00 00 00 30 80 02 01 02 06 0c 2a 86 48 ce 14 02 01 00 00 00 01 01 30 80 06 0c 2a 86 48 ce 14 02 01 00 00 00 02 01 00 00 00 00 00 00 61 80 30 80 02 01 01 a0 80 60 80 a1 80 06 0c 2a 86 48 ce 14 02 01 00 00 00 03 01 00 00 be 80 28 80 06 0c 2a 86 48 ce 14 02 01 00 00 00 01 01 02 01 02 81 48 80 00 00 00 40 00 00 00 00 00 00 00 80 00 00 00 20 00 00 00 00 00 00 00 00 01 00 2c 00 01 00 28 80 00 00 00 00 00 03 e8 00 00 09 c4 00 00 03 e8 ff ff ff ff 60 00 00 00 00 01 00 0c f0 01 00 08 8c 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00";

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
        // A GET result (the wave priority list, empty) for invoke id 0: well
        // formed, not used.
        assert_eq!(
            messages(&bytes),
            vec![Message::OtherResult { invoke_id: 0 }]
        );
        let mut p = IntelliVueMonitorStream::new(SourceId(0));
        p.handle_bytes(Instant::from_secs(1), &bytes);
        assert_eq!(p.stats().ignored, 1);
        assert_eq!(p.stats().frames_ok, 0);
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
    fn breathing_numerics_prefer_airway_rr_and_convert_kpa() {
        // awRR (airway) wins over the impedance RR in either order.
        for order in [[0x5012u16, 0x500A], [0x500A, 0x5012]] {
            let v = observe(&[
                single(
                    order[0],
                    0,
                    0x0AE0,
                    if order[0] == 0x5012 { 14 } else { 16 },
                ),
                single(
                    order[1],
                    0,
                    0x0AE0,
                    if order[1] == 0x5012 { 14 } else { 16 },
                ),
            ]);
            assert_eq!(v.resp_rate, Some(Sample::valid(14.0)), "{order:x?}");
        }
        // Impedance RR alone; a valid 0 is no breath, kept as 0.
        let v = observe(&[single(0x500A, 0, 0x0AE0, 0)]);
        assert_eq!(v.resp_rate, Some(Sample::valid(0.0)));
        // etCO2 in mmHg, and in kPa (5.0 kPa = 37.5 mmHg).
        let v = observe(&[single(0x50B0, 0, 0x0F20, 38)]);
        assert_eq!(v.etco2, Some(Sample::valid(38.0)));
        let kpa = observe(&[single(0x50B0, 0, 0x0F03, 0xFF00_0032)])
            .etco2
            .unwrap();
        assert!(
            (kpa.value - 37.503).abs() < 0.01 && kpa.validity.is_valid(),
            "{kpa:?}"
        );
        // A unit that is no pressure is not taken as a number.
        let pct = observe(&[single(0x50B0, 0, 0x0220, 5)]).etco2.unwrap();
        assert!(!pct.validity.is_valid(), "{pct:?}");
        // The monitor's invalid flag stays technical.
        let bad = observe(&[single(0x500A, 0x8000, 0x0AE0, 12)])
            .resp_rate
            .unwrap();
        assert_eq!(bad.validity, Validity::Invalid);
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

    /// Messages as the public VSCaptureMP implementation sends them over
    /// serial (its `ext_poll_request_msg` and `mds_create_resp_msg`), framed
    /// by us: the data export parts must agree byte for byte.
    const VSCAPTURE_EXT_POLL: &str = "e1 00 00 02 00 01 00 20 00 01 00 07 00 1a 00 21 00 00 00 00 00 00 00 00 f1 3b 00 0c 00 01 00 01 00 06 00 00 00 00 00 00";
    const VSCAPTURE_MDS_CREATE_RESULT: &str =
        "e1 00 00 02 00 02 00 14 00 01 00 01 00 0e 00 21 00 00 00 00 00 0a bd 00 0d 06 00 00";

    #[test]
    fn host_messages_match_the_public_implementation() {
        let mut ours = Vec::new();
        encode_poll_request(1, 1, &mut ours);
        assert_eq!(messages_data(&ours), hex(VSCAPTURE_EXT_POLL));
        ours.clear();
        encode_event_result(1, ManagedObject::MDS, 0x000A_BD00, &mut ours);
        assert_eq!(messages_data(&ours), hex(VSCAPTURE_MDS_CREATE_RESULT));
        // The alert poll: VSCaptureMP's, without its poll period attribute.
        ours.clear();
        encode_alert_poll_request(5, 4, &mut ours);
        let data = messages_data(&ours);
        assert_eq!(
            data,
            hex("e1 00 00 02 00 01 00 20 00 05 00 07 00 1a 00 21 00 00 00 00 00 00 00 00 f1 3b 00 0c 00 04 00 01 00 36 08 01 00 00 00 00")
        );
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
        let info = MdsInfo {
            abs_time: Some(DeviceTime(1_700_000_000)),
            abs_hundredths: 25,
            rel_time: Some(0x1234_5678),
            model: NoteText::new(b"MX800"),
        };
        encode_mds_create_event(42, &info, &mut out);
        assert_eq!(
            messages(&out),
            vec![Message::MdsCreate {
                invoke_id: 42,
                managed_object: ManagedObject::MDS,
                event_time: 0x1234_5678,
                info,
            }]
        );
        let anchor = info.anchor().unwrap();
        assert_eq!(anchor.abs_ticks, 1_700_000_000 * 8_000 + 2_000);
        assert_eq!(
            anchor.device_time(0x1234_5678 + 10 * 8_000),
            DeviceTime(1_700_000_010)
        );
        // An MDS Create with no attributes at all still parses.
        out.clear();
        encode_mds_create_event(1, &MdsInfo::default(), &mut out);
        let [Message::MdsCreate { info, .. }] = messages(&out)[..] else {
            panic!()
        };
        assert_eq!((info.abs_time, info.rel_time), (None, Some(0)));
        out.clear();
        encode_event_result(42, ManagedObject::MDS, 7, &mut out);
        assert_eq!(messages(&out), vec![Message::EventResult { invoke_id: 42 }]);
        out.clear();
        encode_poll_request(7, 9, &mut out);
        assert_eq!(
            messages(&out),
            vec![Message::PollRequest {
                invoke_id: 7,
                poll_number: 9,
                object: NOM_MOC_VMO_METRIC_NU,
            }]
        );
        out.clear();
        encode_alert_poll_request(8, 10, &mut out);
        assert_eq!(
            messages(&out),
            vec![Message::PollRequest {
                invoke_id: 8,
                poll_number: 10,
                object: NOM_MOC_VMO_AL_MON,
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
            resp_rate: Sample::missing(Validity::Unavailable),
            etco2: Sample::missing(Validity::Unavailable),
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
    fn a_linked_result_is_one_set_of_values() {
        let mut bytes = Vec::new();
        encode_field_numerics(3, 4, &snapshot(), 0, &mut bytes);
        let m = messages(&bytes);
        assert!(matches!(
            m[0],
            Message::PollResult {
                linked: Some(LinkedState::First),
                poll_number: 4,
                invoke_id: 3,
                object: NOM_MOC_VMO_METRIC_NU,
                ..
            }
        ));
        let Message::PollResult { values, .. } = m[0] else {
            panic!()
        };
        assert!(values.is_empty(), "labels only: {values:?}");
        assert!(matches!(
            m[1],
            Message::PollResult {
                linked: Some(LinkedState::Last),
                ..
            }
        ));
        assert!(
            matches!(m[2], Message::PollResult { linked: None, values, .. } if values.is_empty())
        );
        let mut p = IntelliVueMonitorStream::new(SourceId(2));
        p.handle_bytes(Instant::ZERO, &bytes);
        let outs = drain(&mut p);
        assert_eq!(measurements(&outs).len(), 4, "{outs:?}");

        // Values spread over first, middle and last parts: still one set,
        // and a vital sent twice comes out once (the first part wins).
        let s = snapshot();
        let mut other = s;
        other.heart_rate = Sample::valid(99.0);
        let mut bytes = Vec::new();
        for (linked, snap) in [
            (Some(LinkedState::First), &s),
            (Some(LinkedState::Middle), &other),
            (Some(LinkedState::Last), &other),
        ] {
            let shape = ResultShape {
                linked,
                ..ResultShape::SIMPLE
            };
            encode_poll_result_with(5, 5, snap, &shape, &mut bytes);
        }
        encode_poll_result_with(
            5,
            5,
            &s,
            &ResultShape {
                content: ResultContent::Empty,
                ..ResultShape::SIMPLE
            },
            &mut bytes,
        );
        p.handle_bytes(Instant::ZERO, &bytes);
        let ms = measurements(&drain(&mut p));
        assert_eq!(ms.len(), 4);
        assert!(ms.contains(&Measurement::HeartRate(Sample::valid(72.0))));
        // A sequence cut short (no last part) is complete once another starts.
        let mut bytes = Vec::new();
        let first = ResultShape {
            linked: Some(LinkedState::First),
            ..ResultShape::SIMPLE
        };
        encode_poll_result_with(6, 6, &s, &first, &mut bytes);
        encode_poll_result_with(7, 7, &s, &first, &mut bytes);
        p.handle_bytes(Instant::ZERO, &bytes);
        assert_eq!(measurements(&drain(&mut p)).len(), 4);
    }

    #[test]
    fn device_time_comes_from_the_mds_create_clock_and_relative_time() {
        // Real monitors send the poll result's absolute time unspecified.
        let t0 = DeviceTime(1_795_000_000);
        let rel0 = u32::MAX - 4 * 8_000; // wraps 4 s later
        let mut bytes = Vec::new();
        let info = MdsInfo {
            abs_time: Some(t0),
            abs_hundredths: 50,
            rel_time: Some(rel0),
            model: NoteText::new(b"MX800"),
        };
        encode_mds_create_event(1, &info, &mut bytes);
        let mut s = snapshot();
        s.device_time = DeviceTime(0); // never sent: abs time unspecified
        for secs in [0u32, 3, 10] {
            let shape = ResultShape::field(rel0.wrapping_add(secs * 8_000));
            encode_poll_result_with(1, 1, &s, &shape, &mut bytes);
        }
        let mut p = IntelliVueMonitorStream::new(SourceId(0));
        p.handle_bytes(Instant::ZERO, &bytes);
        let times: Vec<Option<DeviceTime>> = drain(&mut p)
            .iter()
            .filter_map(|o| match o {
                Output::Reading(r) => Some(r.device_time),
                _ => None,
            })
            .step_by(4)
            .collect();
        assert_eq!(
            times,
            [0, 3, 10].map(|d| Some(DeviceTime(t0.0 + d))).to_vec()
        );
        // Without the anchor there is no device time, rather than a wrong one.
        let mut bytes = Vec::new();
        encode_poll_result_with(1, 1, &s, &ResultShape::field(5), &mut bytes);
        let mut p = IntelliVueMonitorStream::new(SourceId(0));
        p.handle_bytes(Instant::ZERO, &bytes);
        let outs = drain(&mut p);
        assert!(outs
            .iter()
            .all(|o| matches!(o, Output::Reading(r) if r.device_time.is_none())));
    }

    #[test]
    fn nibp_keeps_its_own_measurement_time_however_old() {
        let clock = DeviceTime(1_795_000_000);
        let anchor_rel = 1_000_000;
        let mut bytes = Vec::new();
        let info = MdsInfo {
            abs_time: Some(clock),
            abs_hundredths: 0,
            rel_time: Some(anchor_rel),
            model: NoteText::EMPTY,
        };
        encode_mds_create_event(1, &info, &mut bytes);
        // 24 days old, as one real MX800 sent it: absolute stamp.
        let mut s = snapshot();
        s.device_time = clock;
        let old = DeviceTime(clock.0 - 24 * 86_400);
        s.nibp.as_mut().unwrap().measured_at = Some(old);
        encode_poll_result_with(1, 1, &s, &ResultShape::field(anchor_rel), &mut bytes);
        // Two hours old, as a relative stamp.
        let recent = DeviceTime(clock.0 - 7_200);
        s.nibp.as_mut().unwrap().measured_at = Some(recent);
        let shape = ResultShape {
            nibp_stamp: NibpStamp::Relative,
            ..ResultShape::field(anchor_rel)
        };
        encode_poll_result_with(1, 1, &s, &shape, &mut bytes);
        let mut p = IntelliVueMonitorStream::new(SourceId(0));
        p.handle_bytes(Instant::ZERO, &bytes);
        let nibps: Vec<(Option<DeviceTime>, Option<DeviceTime>)> = drain(&mut p)
            .iter()
            .filter_map(|o| match o {
                Output::Reading(Reading {
                    measurement: Measurement::Nibp(n),
                    device_time,
                    ..
                }) => Some((n.measured_at, *device_time)),
                _ => None,
            })
            .collect();
        assert_eq!(
            nibps,
            vec![(Some(old), Some(clock)), (Some(recent), Some(clock))]
        );
    }

    /// The NIBP readings of a monitor-side stream decoded with `ages`.
    fn decoded_nibps(bytes: &[u8], ages: AgeLimits) -> Vec<Nibp> {
        let mut p = IntelliVueMonitorStream::new(SourceId(0)).with_age_limits(ages);
        p.handle_bytes(Instant::ZERO, bytes);
        drain(&mut p)
            .iter()
            .filter_map(|o| match o {
                Output::Reading(Reading {
                    measurement: Measurement::Nibp(n),
                    ..
                }) => Some(*n),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn nibp_older_than_cycle_and_grace_by_the_monitor_clock_is_old() {
        // As one real MX800 sent it: the monitor's clock from the MDS
        // Create, the poll result's absolute time unspecified, an NIBP
        // measured 24 days before.
        let clock = DeviceTime(1_795_000_000);
        let anchor_rel = 1_000_000;
        let info = MdsInfo {
            abs_time: Some(clock),
            abs_hundredths: 0,
            rel_time: Some(anchor_rel),
            model: NoteText::EMPTY,
        };
        let ages = AgeLimits::for_nibp_cycle(Duration::from_secs(900), Duration::from_secs(180));
        let result = |age: i64, stamp: NibpStamp| {
            let mut bytes = Vec::new();
            encode_mds_create_event(1, &info, &mut bytes);
            let mut s = snapshot();
            s.device_time = clock;
            s.nibp.as_mut().unwrap().measured_at = Some(DeviceTime(clock.0 - age));
            let shape = ResultShape {
                nibp_stamp: stamp,
                ..ResultShape::field(anchor_rel)
            };
            encode_poll_result_with(1, 1, &s, &shape, &mut bytes);
            let n = decoded_nibps(&bytes, ages);
            assert_eq!(n.len(), 1);
            n[0]
        };
        let old = result(24 * 86_400, NibpStamp::Absolute);
        assert!(old.is_old(), "{old:?}");
        // The numbers stay, to be shown as the old measurement they are.
        assert_eq!(old.systolic.value, snapshot().nibp.unwrap().systolic.value);
        assert_eq!(old.measured_at, Some(DeviceTime(clock.0 - 24 * 86_400)));
        // A relative stamp reaches 3.1 days back (the relative time wraps).
        for stamp in [NibpStamp::Absolute, NibpStamp::Relative] {
            assert!(result(2 * 86_400, stamp).is_old(), "{stamp:?}");
            let limit = 900 + 180;
            assert!(result(limit + 1, stamp).is_old(), "{stamp:?}");
            let current = result(limit, stamp);
            assert!(current.systolic.validity.is_valid(), "{stamp:?}");
        }
        // A relative stamp needs no clock anchor to be judged old.
        let mut bytes = Vec::new();
        let mut s = snapshot();
        s.nibp.as_mut().unwrap().measured_at = Some(DeviceTime(s.device_time.0 - 7_200));
        let shape = ResultShape {
            nibp_stamp: NibpStamp::Relative,
            ..ResultShape::field(anchor_rel)
        };
        encode_poll_result_with(1, 1, &s, &shape, &mut bytes);
        let n = decoded_nibps(&bytes, ages);
        assert!(n[0].is_old() && n[0].measured_at.is_none(), "{n:?}");
    }

    #[test]
    fn continuous_values_stamped_far_before_the_result_are_old() {
        let decode_with_age = |age: u32| {
            let shape = ResultShape {
                values_age: Some(age),
                ..ResultShape::field(50_000_000)
            };
            let mut bytes = Vec::new();
            encode_poll_result_with(1, 1, &snapshot(), &shape, &mut bytes);
            let mut p = IntelliVueMonitorStream::new(SourceId(0));
            p.handle_bytes(Instant::ZERO, &bytes);
            drain(&mut p)
                .iter()
                .filter_map(|o| match o {
                    Output::Reading(r) => r.measurement.continuous(),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        let fresh = decode_with_age(60);
        assert_eq!(fresh.len(), 3);
        assert!(
            fresh.iter().all(|(_, s)| s.validity.is_valid()),
            "{fresh:?}"
        );
        let old = decode_with_age(61);
        assert_eq!(old.len(), 3);
        for (vital, s) in old {
            assert_eq!(s.validity, Validity::Old, "{vital}");
            assert!(s.value.is_finite(), "{vital}: the number stays");
        }
    }

    #[test]
    fn nibp_still_being_derived_is_no_result() {
        let cmpd = |state: u16| {
            let mut c = vec![0x09, 0x4b, 0x00, 0x22, 0x00, 0x03, 0x00, 0x1e];
            for (id, v, st) in [
                (0x4A05u16, 120u32, state),
                (0x4A06, 0, 0x2000),
                (0x4A07, 0, 0x2000),
            ] {
                c.extend_from_slice(&id.to_be_bytes());
                c.extend_from_slice(&st.to_be_bytes());
                c.extend_from_slice(&0x0F20u16.to_be_bytes());
                c.extend_from_slice(&v.to_be_bytes());
            }
            c
        };
        // Early indication: the systolic alone, mean and diastolic to come.
        assert!(observe(&[cmpd(STATE_EARLY_INDICATION)]).nibp.is_none());
        assert!(observe(&[cmpd(STATE_MSMT_ONGOING)]).nibp.is_none());
        let done = observe(&[cmpd(0)]).nibp.unwrap();
        assert_eq!(done.systolic, Sample::valid(120.0));
        assert_eq!(done.mean.validity, Validity::Unavailable);
        // For a continuous vital an early estimate is a questionable value.
        let hr = observe(&[single(0x4182, STATE_EARLY_INDICATION, 0x0AA0, 80)]);
        assert_eq!(hr.heart_rate.unwrap().validity, Validity::Questionable);
    }

    #[test]
    fn wave_get_and_error_results_are_ignored_not_errors() {
        let mut bytes = Vec::new();
        encode_wave_result(9, 1, 0, &mut bytes);
        bytes.extend_from_slice(&hex(MX800_FRAME));
        // A remote operation error for invoke id 4.
        frame_message(
            &hex("e1 00 00 02 00 03 00 06 00 04 00 02 00 00"),
            &mut bytes,
        );
        encode_poll_result(1, 1, &snapshot(), None, &mut bytes);
        let mut p = IntelliVueMonitorStream::new(SourceId(0));
        p.handle_bytes(Instant::ZERO, &bytes);
        let outs = drain(&mut p);
        assert_eq!(measurements(&outs).len(), 4);
        let s = p.stats();
        assert_eq!((s.ignored, s.frames_ok, s.dropped_total()), (3, 1, 0));
        assert_eq!(
            messages(&bytes)[..3],
            [
                Message::PollResult {
                    invoke_id: 9,
                    poll_number: 1,
                    linked: None,
                    object: NOM_MOC_VMO_METRIC_SA_RT,
                    values: PollValues::default(),
                },
                Message::OtherResult { invoke_id: 0 },
                Message::OtherResult { invoke_id: 4 },
            ]
        );
    }

    fn spo2_no_sensor() -> TechAlarm {
        TechAlarm {
            source: NOM_PULS_OXIM_SAT_O2,
            code: NOM_EVT_SENSOR_DISCONN,
            text: NoteText::new(b"SpO2 NO SENSOR"),
        }
    }

    #[test]
    fn technical_alarm_list_round_trips_and_becomes_inop_notes() {
        let leads = TechAlarm {
            source: NOM_ECG_ELEC_POTL,
            code: NOM_EVT_LEAD_DISCONN,
            text: NoteText::EMPTY,
        };
        let mut bytes = Vec::new();
        encode_alert_result(2, 2, 0, &[spo2_no_sensor(), leads], &mut bytes);
        let data = messages_data(&bytes);
        let list = parse_tech_alarms(&data).unwrap();
        assert_eq!(list.as_slice(), [spo2_no_sensor(), leads]);
        assert_eq!(spo2_no_sensor().vital(), Some(Vital::SpO2));
        assert_eq!(leads.vital(), Some(Vital::HeartRate));
        // Not an alert result: none.
        let mut other = Vec::new();
        encode_poll_result(1, 1, &snapshot(), None, &mut other);
        assert_eq!(parse_tech_alarms(&messages_data(&other)), None);

        let mut p = IntelliVueMonitorStream::new(SourceId(0));
        p.handle_bytes(Instant::ZERO, &bytes);
        let begun = notes(&drain(&mut p));
        assert_eq!(
            begun,
            vec![
                DeviceNote::Inop(DeviceInop {
                    vital: Some(Vital::SpO2),
                    code: NOM_EVT_SENSOR_DISCONN,
                    text: NoteText::new(b"SpO2 NO SENSOR"),
                    active: true,
                }),
                DeviceNote::Inop(DeviceInop {
                    vital: Some(Vital::HeartRate),
                    code: NOM_EVT_LEAD_DISCONN,
                    text: NoteText::EMPTY,
                    active: true,
                }),
            ]
        );
        // The same list again: no news. Then the leads are fixed.
        bytes.clear();
        encode_alert_result(3, 3, 0, &[spo2_no_sensor(), leads], &mut bytes);
        encode_alert_result(4, 4, 0, &[spo2_no_sensor()], &mut bytes);
        p.handle_bytes(Instant::ZERO, &bytes);
        assert_eq!(
            notes(&drain(&mut p)),
            vec![DeviceNote::Inop(DeviceInop {
                vital: Some(Vital::HeartRate),
                code: NOM_EVT_LEAD_DISCONN,
                text: NoteText::EMPTY,
                active: false,
            })]
        );
        // The alarm star and characters beyond ASCII in a monitor's text.
        let mut raw = Vec::new();
        for c in [0xE40Du16, b'S' as u16, 0x00B0, b'2' as u16, 0] {
            raw.extend_from_slice(&c.to_be_bytes());
        }
        assert_eq!(decode_string(Reader::new(&raw)).as_str(), "*S?2");
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

    /// Ticks of the scripted monitor's relative clock at virtual time `t`.
    fn ticks(t: Instant) -> u32 {
        (t.since_origin().as_micros() / 125) as u32
    }

    /// A monitor built from the encoders that behaves as in the field when
    /// told to: answers association, MDS Create and polls; can lose the
    /// host's first frames (writes lost across connect), stay associated
    /// with an earlier host (refusing us and streaming that host's results
    /// until aborted), send the absolute time unspecified, answer numerics
    /// as linked results with a wave and a GET result of other hosts'
    /// invoke ids interleaved, add state bits, and report INOPs.
    struct ScriptedMonitor {
        snapshot: Snapshot,
        silent: bool,
        refuse: bool,
        field: bool,
        extra_state: u16,
        inops: Vec<TechAlarm>,
        /// Host frames still to lose.
        lose: usize,
        /// Associated with an earlier host.
        stale: bool,
        associated: bool,
        /// The monitor's clock at virtual time zero.
        clock: DeviceTime,
        rel_base: u32,
        deframer: Deframer,
        requests: u32,
        polls: u32,
        alert_polls: u32,
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
                field: false,
                extra_state: 0,
                inops: Vec::new(),
                lose: 0,
                stale: false,
                associated: false,
                clock: DeviceTime(1_700_000_000),
                rel_base: 0x4000_0000,
                deframer: Deframer::new(),
                requests: 0,
                polls: 0,
                alert_polls: 0,
                event_results: 0,
                aborts: 0,
                release_responses: 0,
            }
        }

        /// As a real monitor: unspecified absolute time, linked results,
        /// other hosts' results interleaved.
        fn field() -> Self {
            ScriptedMonitor {
                field: true,
                ..ScriptedMonitor::new()
            }
        }

        fn rel(&self, now: Instant) -> u32 {
            self.rel_base.wrapping_add(ticks(now))
        }

        fn snapshot_at(&self, now: Instant) -> Snapshot {
            Snapshot {
                resp_rate: Sample::missing(Validity::Unavailable),
                etco2: Sample::missing(Validity::Unavailable),
                device_time: DeviceTime(self.clock.0 + now.since_origin().as_secs() as i64),
                ..self.snapshot
            }
        }

        /// What the monitor sends of its own accord at `now`: results of
        /// the earlier host's timed poll while still associated with it.
        fn tick(&mut self, now: Instant) -> Vec<u8> {
            let mut out = Vec::new();
            if self.stale && !self.silent {
                let mut s = self.snapshot_at(now);
                s.heart_rate = Sample::valid(150.0);
                encode_poll_result_with(
                    0x0777,
                    1,
                    &s,
                    &ResultShape::field(self.rel(now)),
                    &mut out,
                );
            }
            out
        }

        fn receive(&mut self, now: Instant, bytes: &[u8]) -> Vec<u8> {
            let mut reply = Vec::new();
            for &b in bytes {
                let Some(RxEvent::Frame) = self.deframer.push(b) else {
                    continue;
                };
                if self.lose > 0 {
                    self.lose -= 1;
                    continue;
                }
                let m = parse_message(self.deframer.data()).unwrap();
                match m {
                    Message::Abort => {
                        self.aborts += 1;
                        self.associated = false;
                        self.stale = false;
                    }
                    Message::ReleaseResponse => self.release_responses += 1,
                    Message::EventResult { invoke_id } => {
                        assert_eq!(invoke_id, 0x55);
                        self.event_results += 1;
                        self.associated = true;
                    }
                    _ if self.silent => {}
                    Message::AssociationRequest => {
                        self.requests += 1;
                        if self.refuse || self.stale {
                            encode_refuse(&mut reply);
                        } else {
                            encode_association_response(&mut reply);
                            let info = MdsInfo {
                                abs_time: Some(self.snapshot_at(now).device_time),
                                abs_hundredths: 0,
                                rel_time: Some(self.rel(now)),
                                model: NoteText::new(b"MX800"),
                            };
                            encode_mds_create_event(0x55, &info, &mut reply);
                        }
                    }
                    Message::PollRequest { .. } if !self.associated => {}
                    Message::PollRequest {
                        invoke_id,
                        poll_number,
                        object: NOM_MOC_VMO_METRIC_NU,
                    } => {
                        self.polls += 1;
                        let mut s = self.snapshot_at(now);
                        let rel = self.rel(now);
                        if self.field {
                            encode_wave_result(0x0F00, 3, rel, &mut reply);
                            reply.extend_from_slice(&hex(MX800_FRAME));
                            s.device_time = DeviceTime(0); // must not be used
                            encode_field_numerics(invoke_id, poll_number, &s, rel, &mut reply);
                        } else {
                            let shape = ResultShape {
                                extra_state: self.extra_state,
                                ..ResultShape::SIMPLE
                            };
                            encode_poll_result_with(invoke_id, poll_number, &s, &shape, &mut reply);
                        }
                    }
                    Message::PollRequest {
                        invoke_id,
                        poll_number,
                        object: NOM_MOC_VMO_AL_MON,
                    } => {
                        self.alert_polls += 1;
                        encode_alert_result(
                            invoke_id,
                            poll_number,
                            self.rel(now),
                            &self.inops,
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
                let reply = monitor.receive(*now, &tx);
                if !reply.is_empty() {
                    host.handle_bytes(*now, &reply);
                }
                outs.extend(drain(host));
            }
            let Some(next) = host.poll_timeout() else {
                *now = until;
                return outs;
            };
            if next > until {
                *now = until;
                return outs;
            }
            *now = next.max(*now);
            let unsolicited = monitor.tick(*now);
            if !unsolicited.is_empty() {
                host.handle_bytes(*now, &unsolicited);
            }
            host.handle_timeout(*now);
            outs.extend(drain(host));
        }
    }

    fn first_reading(outs: &[Output]) -> Option<&Reading> {
        outs.iter().find_map(|o| match o {
            Output::Reading(r) => Some(r),
            _ => None,
        })
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
        assert_eq!(monitor.alert_polls, monitor.polls, "alerts polled alike");
        let ms = measurements(&outs);
        assert_eq!(ms.len() as u32, 4 * monitor.polls);
        assert!(ms.contains(&Measurement::HeartRate(Sample::valid(72.0))));
        assert!(matches!(host.state(), SessionState::Associated { .. }));
        assert_eq!(host.associations(), 1);
        assert_eq!(host.monitor_model().as_str(), "MX800");

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
        monitor.associated = false;
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
        monitor.receive(now, &tx);
        assert_eq!(monitor.release_responses, 1);
        monitor.associated = false;

        // Shutdown: release, then nothing more.
        let _ = run(&mut host, &mut monitor, &mut now, Instant::from_secs(80));
        host.release();
        tx.clear();
        assert!(host.poll_transmit(&mut tx));
        assert_eq!(messages(&tx), vec![Message::ReleaseRequest]);
        assert_eq!(host.poll_timeout(), None);
        assert_eq!(host.stats().dropped_total(), 0);
    }

    #[test]
    fn link_up_associates_at_once_and_link_down_forgets_the_session() {
        let mut host = IntelliVueHost::new(SourceId(1));
        let mut monitor = ScriptedMonitor::field();
        let mut now = Instant::from_secs(3);
        host.handle_link(now, true);
        // The request goes out at once, before any timer.
        let mut tx = Vec::new();
        assert!(host.poll_transmit(&mut tx));
        assert_eq!(messages(&tx), vec![Message::AssociationRequest]);
        let reply = monitor.receive(now, &tx);
        host.handle_bytes(now + Duration::from_millis(40), &reply);
        let outs = run(&mut host, &mut monitor, &mut now, Instant::from_secs(8));
        let first = first_reading(&outs).expect("readings");
        assert!(first.arrival - Instant::from_secs(3) <= Duration::from_secs(2));
        // Device time from the MDS Create's clock: the monitor's clock at
        // virtual second 3, although every result's absolute time is unset.
        assert_eq!(first.device_time, Some(DeviceTime(1_700_000_003)));
        let s = host.stats();
        assert_eq!(s.dropped_total(), 0);
        assert!(s.ignored >= 2 * u64::from(monitor.polls), "{s:?}");
        // One set per poll although each came in three parts.
        assert_eq!(measurements(&outs).len() as u32, 4 * monitor.polls);

        // The link goes: the session is over, nothing goes out.
        host.handle_link(now, false);
        assert_eq!(
            notes(&drain(&mut host)),
            vec![DeviceNote::AssociationLost(AssociationProblem::LinkDown)]
        );
        assert_eq!(host.state(), SessionState::LinkDown);
        assert_eq!(host.poll_timeout(), None);
        assert!(!host.poll_transmit(&mut tx));
        // Down again: no second note.
        host.handle_link(now, false);
        assert!(drain(&mut host).is_empty());

        // Back up: a new association at once.
        monitor.associated = false;
        now = now + Duration::from_secs(5);
        host.handle_link(now, true);
        let outs = run(&mut host, &mut monitor, &mut now, Instant::from_secs(15));
        assert_eq!(notes(&outs), vec![DeviceNote::Associated]);
        assert_eq!(host.associations(), 2);
    }

    #[test]
    fn a_stale_nibp_24_days_older_than_the_monitor_clock_never_alarms() {
        // A monitor in the field keeps a critically high NIBP from 24 days
        // ago; HR and SpO2 are current and normal.
        let mut monitor = ScriptedMonitor::field();
        let nibp = monitor.snapshot.nibp.as_mut().unwrap();
        nibp.systolic = Sample::valid(250.0);
        nibp.diastolic = Sample::valid(140.0);
        nibp.mean = Sample::valid(177.0);
        nibp.measured_at = Some(DeviceTime(monitor.clock.0 - 24 * 86_400));
        let mut host = IntelliVueHost::new(SourceId(0));
        let mut now = Instant::ZERO;
        host.handle_link(now, true);
        let outs = run(&mut host, &mut monitor, &mut now, Instant::from_secs(30));
        let mut engine = crate::engine::Engine::new(crate::engine::EngineConfig {
            source_names: vec!["mx800".into()],
            ..crate::engine::EngineConfig::default()
        });
        let mut nibps = 0;
        for o in &outs {
            if let Output::Reading(r) = o {
                if let Measurement::Nibp(n) = r.measurement {
                    assert!(n.is_old(), "{n:?}");
                    assert_eq!(n.systolic.value, 250.0);
                    nibps += 1;
                }
                engine.handle_reading(r.arrival, *r);
            }
        }
        assert!(nibps > 0);
        engine.handle_timeout(now);
        let alarms: Vec<crate::engine::AlarmId> = std::iter::from_fn(|| engine.poll_event())
            .filter_map(|e| match e.kind {
                crate::engine::EventKind::Alarm(a) => Some(a.id),
                _ => None,
            })
            .collect();
        assert!(alarms.is_empty(), "{alarms:?}");
    }

    #[test]
    fn a_request_lost_across_connect_is_retried() {
        let mut host = IntelliVueHost::new(SourceId(1));
        let mut monitor = ScriptedMonitor::field();
        monitor.lose = 1;
        let mut now = Instant::ZERO;
        host.handle_link(now, true);
        let outs = run(&mut host, &mut monitor, &mut now, Instant::from_secs(15));
        assert_eq!(
            notes(&outs),
            vec![
                DeviceNote::AssociationLost(AssociationProblem::NoAnswer),
                DeviceNote::Associated
            ]
        );
        assert_eq!(monitor.aborts, 1);
        let first = first_reading(&outs).unwrap();
        assert_eq!(
            first.arrival,
            Instant::from_secs(6),
            "5 s timeout + 1 s backoff"
        );
    }

    #[test]
    fn a_monitor_still_associated_from_before_is_aborted_and_reassociated() {
        // It refuses our request and streams the earlier host's results.
        let mut host = IntelliVueHost::new(SourceId(1));
        let mut monitor = ScriptedMonitor::field();
        monitor.stale = true;
        let mut now = Instant::ZERO;
        let stale = monitor.tick(now);
        host.handle_bytes(now, &stale);
        host.handle_link(now, true);
        let outs = run(&mut host, &mut monitor, &mut now, Instant::from_secs(10));
        assert!(monitor.aborts >= 1);
        assert!(
            notes(&outs).contains(&DeviceNote::Associated),
            "{:?}",
            notes(&outs)
        );
        let first = first_reading(&outs).unwrap();
        assert!(first.arrival <= Instant::from_secs(2), "{first:?}");
        // The earlier host's numbers never count as ours.
        assert!(!measurements(&outs).contains(&Measurement::HeartRate(Sample::valid(150.0))));
        assert!(host.stats().ignored >= 1);

        // Data of an earlier association while we wait for our accept:
        // aborted and asked again at once, without waiting for a timeout.
        let mut host = IntelliVueHost::new(SourceId(1));
        host.handle_link(Instant::ZERO, true);
        let mut tx = Vec::new();
        while host.poll_transmit(&mut tx) {}
        let mut stale = Vec::new();
        encode_poll_result(0x0777, 1, &snapshot(), None, &mut stale);
        host.handle_bytes(Instant::from_millis(100), &stale);
        tx.clear();
        while host.poll_transmit(&mut tx) {}
        assert_eq!(
            messages(&tx),
            vec![Message::Abort, Message::AssociationRequest]
        );
        assert!(measurements(&drain(&mut host)).is_empty());
        // Only once per attempt: more stale data does not loop.
        host.handle_bytes(Instant::from_millis(200), &stale);
        tx.clear();
        assert!(!host.poll_transmit(&mut tx));
    }

    #[test]
    fn accept_and_mds_create_are_taken_in_any_state() {
        let mut accept = Vec::new();
        encode_association_response(&mut accept);
        let mut create = Vec::new();
        let info = MdsInfo {
            abs_time: Some(DeviceTime(1_700_000_000)),
            abs_hundredths: 0,
            rel_time: Some(8_000),
            model: NoteText::new(b"MX800"),
        };
        encode_mds_create_event(0x55, &info, &mut create);

        // Backing off after a timeout, the late accept and MDS Create come.
        let mut host = IntelliVueHost::new(SourceId(0));
        host.handle_link(Instant::ZERO, true);
        host.handle_timeout(Instant::from_secs(5));
        assert!(matches!(host.state(), SessionState::Backoff(Some(_))));
        drain(&mut host);
        host.handle_bytes(Instant::from_millis(5_200), &accept);
        assert!(matches!(host.state(), SessionState::AwaitingMdsCreate(_)));
        host.handle_bytes(Instant::from_millis(5_300), &create);
        assert!(matches!(host.state(), SessionState::Associated { .. }));
        assert_eq!(notes(&drain(&mut host)), vec![DeviceNote::Associated]);
        let mut tx = Vec::new();
        while host.poll_transmit(&mut tx) {}
        let sent = messages(&tx);
        assert!(
            sent.contains(&Message::EventResult { invoke_id: 0x55 }),
            "{sent:?}"
        );
        assert!(sent.iter().any(|m| matches!(
            m,
            Message::PollRequest {
                object: NOM_MOC_VMO_METRIC_NU,
                ..
            }
        )));

        // The accept lost: the MDS Create alone associates.
        let mut host = IntelliVueHost::new(SourceId(0));
        host.handle_link(Instant::ZERO, true);
        host.handle_bytes(Instant::from_millis(100), &create);
        assert_eq!(notes(&drain(&mut host)), vec![DeviceNote::Associated]);
        assert_eq!(
            host.monitor_clock(),
            Some(ClockAnchor {
                abs_ticks: 1_700_000_000 * 8_000,
                rel: 8_000
            })
        );

        // Associated, an MDS Create again: the monitor restarted. It is
        // answered and polling goes on; a second accept says the same.
        host.handle_bytes(Instant::from_secs(2), &create);
        assert_eq!(notes(&drain(&mut host)), vec![DeviceNote::MonitorRestarted]);
        assert!(matches!(host.state(), SessionState::Associated { .. }));
        host.handle_bytes(Instant::from_secs(3), &accept);
        assert_eq!(notes(&drain(&mut host)), vec![DeviceNote::MonitorRestarted]);
        assert!(matches!(host.state(), SessionState::AwaitingMdsCreate(_)));
        host.handle_bytes(Instant::from_secs(3), &create);
        assert_eq!(notes(&drain(&mut host)), vec![DeviceNote::Associated]);
        assert_eq!(host.stats().dropped_total(), 0);
    }

    #[test]
    fn only_results_of_our_own_polls_are_data() {
        let mut host = IntelliVueHost::new(SourceId(0));
        let mut monitor = ScriptedMonitor::new();
        let mut now = Instant::ZERO;
        host.handle_link(now, true);
        let _ = run(&mut host, &mut monitor, &mut now, Instant::from_millis(500));
        let before = host.stats();
        let mut foreign = Vec::new();
        encode_poll_result(0x0F0F, 1, &snapshot(), None, &mut foreign);
        // Our numerics invoke id, but an alert result: not what we asked.
        encode_alert_result(1, 1, 0, &[spo2_no_sensor()], &mut foreign);
        host.handle_bytes(now, &foreign);
        assert!(drain(&mut host).is_empty());
        let after = host.stats();
        assert_eq!(after.ignored - before.ignored, 2);
        assert_eq!(after.frames_ok, before.frames_ok);
        assert!(matches!(host.state(), SessionState::Associated { .. }));
    }

    #[test]
    fn monitor_inops_begin_and_end() {
        let mut host = IntelliVueHost::new(SourceId(0));
        let mut monitor = ScriptedMonitor::field();
        monitor.inops = vec![spo2_no_sensor()];
        let mut now = Instant::ZERO;
        host.handle_link(now, true);
        let outs = run(&mut host, &mut monitor, &mut now, Instant::from_secs(5));
        let begun = DeviceNote::Inop(DeviceInop {
            vital: Some(Vital::SpO2),
            code: NOM_EVT_SENSOR_DISCONN,
            text: NoteText::new(b"SpO2 NO SENSOR"),
            active: true,
        });
        assert_eq!(notes(&outs), vec![DeviceNote::Associated, begun]);
        assert_eq!(host.monitor_inops(), [spo2_no_sensor()]);
        monitor.inops.clear();
        let outs = run(&mut host, &mut monitor, &mut now, Instant::from_secs(8));
        let ended = DeviceNote::Inop(DeviceInop {
            active: false,
            ..match begun {
                DeviceNote::Inop(i) => i,
                _ => unreachable!(),
            }
        });
        assert_eq!(notes(&outs), vec![ended]);
        // An INOP still active when the association goes ends with it.
        monitor.inops = vec![spo2_no_sensor()];
        let _ = run(&mut host, &mut monitor, &mut now, Instant::from_secs(10));
        host.handle_link(now, false);
        assert_eq!(
            notes(&drain(&mut host)),
            vec![
                DeviceNote::AssociationLost(AssociationProblem::LinkDown),
                ended
            ]
        );
    }

    #[test]
    fn state_bits_of_demo_data_make_every_value_invalid() {
        let mut host = IntelliVueHost::new(SourceId(0));
        let mut monitor = ScriptedMonitor::new();
        monitor.extra_state = STATE_DEMO_DATA;
        let mut now = Instant::ZERO;
        host.handle_link(now, true);
        let outs = run(&mut host, &mut monitor, &mut now, Instant::from_secs(3));
        let ms = measurements(&outs);
        assert!(!ms.is_empty());
        for m in ms {
            match m {
                Measurement::Nibp(n) => assert_eq!(n.systolic.validity, Validity::Invalid),
                other => {
                    let (_, s) = other.continuous().unwrap();
                    assert_eq!(s.validity, Validity::Invalid, "{other:?}");
                }
            }
        }
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
            let reply = monitor.receive(now, &tx);
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
        // Each refusal is followed by an abort, freeing a monitor that still
        // holds an association from before.
        assert_eq!(monitor.aborts, 5);
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
        assert_eq!(host.stats().ignored, 1);
    }

    /// The validities besides valid that a poll result carries through a
    /// round trip.
    const ROUND_TRIP: &[Validity] = &[
        Validity::Invalid,
        Validity::Unavailable,
        Validity::UnderRange,
        Validity::OverRange,
    ];

    fn sample(max: u16, divisor: f32) -> impl Strategy<Value = Sample> {
        stepped_sample(max, divisor, ROUND_TRIP)
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
            proptest::option::of((sample(150, 1.0), sample(150, 1.0))),
        )
            .prop_map(
                |(heart_rate, pulse_rate, spo2, nibp, device_time, breath)| {
                    // None: no capnograph.
                    snapshot_of([heart_rate, pulse_rate, spo2], nibp, device_time, breath)
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn snapshots_round_trip(s in snapshots(), invoke in any::<u16>(), number in any::<u16>()) {
            let mut bytes = Vec::new();
            encode_poll_result(invoke, number, &s, None, &mut bytes);
            let m = messages(&bytes);
            prop_assert_eq!(m.len(), 1);
            let Message::PollResult { invoke_id, poll_number, values, linked, .. } = m[0] else {
                panic!("not a poll result: {:?}", m[0]);
            };
            prop_assert_eq!((invoke_id, poll_number, linked), (invoke, number, None));
            prop_assert_eq!(values.device_time, Some(s.device_time));
            prop_assert!(same(values.heart_rate.unwrap(), s.heart_rate));
            prop_assert!(same(values.pulse_rate.unwrap(), s.pulse_rate));
            prop_assert!(same(values.spo2.unwrap(), s.spo2));
            if s.has_breathing() {
                prop_assert!(same(values.resp_rate.unwrap(), s.resp_rate));
                prop_assert!(same(values.etco2.unwrap(), s.etco2));
            } else {
                prop_assert_eq!((values.resp_rate, values.etco2), (None, None));
            }
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
            let open = || IntelliVueMonitorStream::new(SourceId(1));
            let whole = cut_anywhere(open, Instant::from_secs(3), &bytes, &cuts)?;
            prop_assert!(measurements(&whole).len() >= 3);
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
            valid_values_are_finite(&outs, Checked::Continuous)?;
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
        let bytes = include_bytes!("../../../../fuzz/seeds/philips/session.bin");
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
