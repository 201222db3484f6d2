//! Nonin pulse oximeter serial data formats 2, 7 and 8 (OEM III, 9560,
//! WristOx): decoder, monitor-side encoders and the format select request.
//!
//! Formats:
//!
//! - **DF2**: 5-byte frames `01, status, pleth, data, checksum`, 75 frames a
//!   second, 25 frames a packet. The status byte has bit 7 set and the SYNC
//!   bit (bit 0) on frame 1 only. The data byte's meaning depends on the frame
//!   number: 1 HR MSB, 2 HR LSB, 3 SpO2, 8 STAT2, ... The checksum is the sum
//!   of the first four bytes modulo 256.
//! - **DF7**: as DF2, but the frame is `status, pleth MSB, pleth LSB, data,
//!   checksum` (16-bit pleth).
//! - **DF8**: 4 bytes once a second, no checksum: `status+HR bits 8..7, HR bits
//!   6..0, SpO2, STAT2`; only the first byte has bit 7 set.
//!
//! HR is `((MSB & 0x03) << 7) | (LSB & 0x7F)`; 511 (HR) and 127 (SpO2) mean
//! "no value". Both come out as [`Measurement::PulseRate`] and
//! [`Measurement::SpO2`] readings, one each per packet (DF2/DF7) or frame
//! (DF8), without device time (the formats carry none).
//!
//! Status to [`Validity`] (the most severe condition wins; for DF2/DF7 the
//! status bits of all 25 frames of a packet count, since the displayed values
//! are averages over that time):
//!
//! | status | validity |
//! |---|---|
//! | sensor disconnect (bit 6), sensor alarm (bit 3; DF8: STAT2 bit 3) | `SensorOff` |
//! | artifact (bit 5; DF8: bit 2) | `Artifact` |
//! | out of track (bit 4; DF8: bit 5) | `Questionable` |
//! | red perfusion only, i.e. low perfusion (bit 2 without bit 1; DF8: bit 4) | `Questionable` |
//! | yellow/green perfusion, marginal perfusion | (no effect) |
//!
//! Out of track means the oximeter has lost consecutive good pulses and is
//! holding or searching: the device doubts its numbers rather than seeing
//! motion, hence `Questionable`, as for Masimo's pulse search. Values outside
//! the device's range (HR above 321, SpO2 above 100) are `Invalid`. A missing
//! value is `Unavailable`, or carries the status condition when there is one.
//! Low battery comes from STAT2 (DF2/DF7 frame 8 bit 0; DF8 bits 0 and 1) as a
//! [`DeviceNote::LowBattery`] when it changes.
//!
//! Resynchronisation: a candidate frame that fails its checks is dropped
//! ([`DropReason::Checksum`], [`DropReason::Malformed`] for a good checksum
//! with bit 7 of the status clear, [`DropReason::Garbage`] otherwise) and the
//! decoder slides on by one byte; one drop is counted per run of bad bytes. A
//! packet that loses a frame is abandoned (its frame numbers would be wrong);
//! a packet cut short by a new SYNC frame is [`DropReason::Truncated`];
//! frames outside any packet (joining the stream late) are one
//! [`DropReason::Garbage`] drop.
//!
//! Format select (9560): [`Nonin::request_format`] queues `02 70 02 02 ZZ 03`
//! for [`Protocol::poll_transmit`]; the device's ACK (0x06) or NAK (0x15) comes
//! out as [`DeviceNote::Acknowledged`], and on ACK the decoder switches to the
//! new format. No answer within [`ACK_TIMEOUT`] is reported as
//! `Acknowledged(false)`.
//!
//! Pure: no IO, no clock. Depends on [`crate::protocol`], [`crate::vitals`]
//! and [`crate::time`] only.

use core::time::Duration;

use crate::protocol::line::severity;
use crate::protocol::registry::{BoxedProtocol, Monitor, MonitorIo};
use crate::protocol::AgeLimits;
use crate::protocol::{DecodeStats, Decoded, DeviceNote, DropReason, Output, Protocol, Snapshot};
use crate::time::Instant;
use crate::vitals::{Measurement, Reading, Sample, SourceId, Validity};

/// Frames in a DF2/DF7 packet.
pub const FRAMES_PER_PACKET: u8 = 25;
/// HR value meaning "no value".
pub const MISSING_HR: u16 = 511;
/// SpO2 value meaning "no value".
pub const MISSING_SPO2: u8 = 127;
/// Highest heart rate the devices measure; above it a value is invalid.
pub const MAX_HR: u16 = 321;
/// The device's positive answer to a format select request.
pub const ACK: u8 = 0x06;
/// The device's negative answer to a format select request.
pub const NAK: u8 = 0x15;
/// How long to wait for ACK/NAK after a format select request.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// DF2/DF7 status bits.
const ST_ALWAYS: u8 = 0x80;
const ST_DISCONNECT: u8 = 0x40;
const ST_ARTIFACT: u8 = 0x20;
const ST_OUT_OF_TRACK: u8 = 0x10;
const ST_SENSOR_ALARM: u8 = 0x08;
const ST_RED: u8 = 0x04;
const ST_GREEN: u8 = 0x02;
const ST_SYNC: u8 = 0x01;
/// DF2/DF7 STAT2 (frame 8) low battery bit.
const STAT2_LOW_BATTERY: u8 = 0x01;

/// DF8 first-byte bits.
const D8_DISCONNECT: u8 = 0x40;
const D8_OUT_OF_TRACK: u8 = 0x20;
const D8_LOW_PERFUSION: u8 = 0x10;
const D8_ARTIFACT: u8 = 0x04;
/// DF8 STAT2 bits.
const D8_SENSOR_ALARM: u8 = 0x08;
const D8_BATTERY: u8 = 0x02 | 0x01;

/// Firmware revision byte the encoder writes in frame 4.
const ENCODER_REVISION: u8 = 0x30;

const OUTPUT_CAPACITY: usize = 16;

/// Which Nonin serial data format the device sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NoninFormat {
    /// Data Format 2: 5-byte frames with 8-bit pleth, 25-frame packets.
    Df2,
    /// Data Format 7: 5-byte frames with status first and 16-bit pleth.
    Df7,
    /// Data Format 8: 4 bytes once a second, no checksum.
    Df8,
}

impl NoninFormat {
    /// The format's code in the format select request.
    pub const fn code(self) -> u8 {
        match self {
            NoninFormat::Df2 => 0x02,
            NoninFormat::Df7 => 0x07,
            NoninFormat::Df8 => 0x08,
        }
    }

    /// Bytes per frame.
    pub const fn frame_len(self) -> usize {
        match self {
            NoninFormat::Df8 => 4,
            NoninFormat::Df2 | NoninFormat::Df7 => 5,
        }
    }
}

/// The host's request to switch a 9560 to `format`: `02 70 02 02 ZZ 03`.
pub const fn format_select_request(format: NoninFormat) -> [u8; 6] {
    [0x02, 0x70, 0x02, 0x02, format.code(), 0x03]
}

/// Conditions seen in status bits, combined over a packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Flags {
    sensor_off: bool,
    artifact: bool,
    questionable: bool,
}

impl Flags {
    fn df27(status: u8) -> Flags {
        Flags {
            sensor_off: status & (ST_DISCONNECT | ST_SENSOR_ALARM) != 0,
            artifact: status & ST_ARTIFACT != 0,
            questionable: status & ST_OUT_OF_TRACK != 0 || (status & (ST_RED | ST_GREEN)) == ST_RED,
        }
    }

    fn df8(status: u8, stat2: u8) -> Flags {
        Flags {
            sensor_off: status & D8_DISCONNECT != 0 || stat2 & D8_SENSOR_ALARM != 0,
            artifact: status & D8_ARTIFACT != 0,
            questionable: status & (D8_OUT_OF_TRACK | D8_LOW_PERFUSION) != 0,
        }
    }

    fn or(self, other: Flags) -> Flags {
        Flags {
            sensor_off: self.sensor_off || other.sensor_off,
            artifact: self.artifact || other.artifact,
            questionable: self.questionable || other.questionable,
        }
    }

    fn validity(self) -> Validity {
        if self.sensor_off {
            Validity::SensorOff
        } else if self.artifact {
            Validity::Artifact
        } else if self.questionable {
            Validity::Questionable
        } else {
            Validity::Valid
        }
    }
}

/// HR from its two 7-bit halves: bits 8..7 in `msb`, bits 6..0 in `lsb`.
pub const fn heart_rate(msb: u8, lsb: u8) -> u16 {
    (((msb & 0x03) as u16) << 7) | (lsb & 0x7F) as u16
}

fn sample(raw: u16, missing: u16, max: u16, condition: Validity) -> Sample {
    if raw == missing {
        if condition.is_valid() {
            Sample::missing(Validity::Unavailable)
        } else {
            Sample::missing(condition)
        }
    } else if raw > max {
        let v = if severity(condition) > severity(Validity::Invalid) {
            condition
        } else {
            Validity::Invalid
        };
        Sample::new(f32::from(raw), v)
    } else {
        Sample::new(f32::from(raw), condition)
    }
}

// ---------------------------------------------------------------------------
// Encoders

/// What an encoder shows for a snapshot: HR and SpO2 codes and conditions.
struct Shown {
    hr: u16,
    spo2: u8,
    condition: Validity,
}

fn shown(snapshot: &Snapshot) -> Shown {
    let samples = [snapshot.pulse_rate, snapshot.spo2];
    let condition = samples
        .iter()
        .map(|s| s.validity)
        .filter(|v| {
            matches!(
                v,
                Validity::SensorOff | Validity::Artifact | Validity::Questionable
            )
        })
        .max_by_key(|v| severity(*v))
        .unwrap_or(Validity::Valid);
    let shows = |s: Sample| {
        s.value.is_finite()
            && matches!(
                s.validity,
                Validity::Valid | Validity::SensorOff | Validity::Artifact | Validity::Questionable
            )
    };
    let hr = if shows(snapshot.pulse_rate) {
        // Clamped below the missing code; in range for u16.
        snapshot.pulse_rate.value.round().clamp(0.0, 510.0) as u16
    } else {
        MISSING_HR
    };
    let spo2 = if shows(snapshot.spo2) {
        snapshot.spo2.value.round().clamp(0.0, 126.0) as u8
    } else {
        MISSING_SPO2
    };
    Shown {
        hr,
        spo2,
        condition,
    }
}

/// Appends what a Nonin device in `format` sends for `snapshot`: one full
/// 25-frame packet (DF2, DF7) or one 4-byte frame (DF8).
///
/// The pulse rate and SpO2 are rounded to whole numbers; a value the device
/// would not show (none, unavailable, invalid, out of range) is sent as the
/// missing code. The most severe of sensor off, artifact and questionable
/// among the two is sent as sensor alarm, artifact or out of track on every
/// frame; a valid snapshot is sent with green perfusion. The pleth is a
/// fixed ramp.
pub fn encode(format: NoninFormat, snapshot: &Snapshot, out: &mut Vec<u8>) {
    let s = shown(snapshot);
    match format {
        NoninFormat::Df8 => {
            let mut b1 = ST_ALWAYS | ((s.hr >> 7) & 0x03) as u8;
            let mut stat2 = 0;
            match s.condition {
                Validity::SensorOff => stat2 |= D8_SENSOR_ALARM,
                Validity::Artifact => b1 |= D8_ARTIFACT,
                Validity::Questionable => b1 |= D8_OUT_OF_TRACK,
                _ => {}
            }
            out.extend_from_slice(&[b1, (s.hr & 0x7F) as u8, s.spo2 & 0x7F, stat2]);
        }
        NoninFormat::Df2 | NoninFormat::Df7 => {
            let flags = match s.condition {
                Validity::SensorOff => ST_SENSOR_ALARM,
                Validity::Artifact => ST_ARTIFACT,
                Validity::Questionable => ST_OUT_OF_TRACK,
                _ => ST_GREEN,
            };
            let hr_msb = ((s.hr >> 7) & 0x03) as u8;
            let hr_lsb = (s.hr & 0x7F) as u8;
            for frame in 1..=FRAMES_PER_PACKET {
                let data = match frame {
                    1 | 14 | 20 | 22 => hr_msb,
                    2 | 15 | 21 | 23 => hr_lsb,
                    3 | 9 | 10 | 11 | 16 | 17 => s.spo2,
                    4 => ENCODER_REVISION,
                    _ => 0,
                };
                let sync = if frame == 1 { ST_SYNC } else { 0 };
                let status = ST_ALWAYS | flags | sync;
                let bytes = if format == NoninFormat::Df2 {
                    [
                        0x01,
                        status,
                        0x40u8.wrapping_add(frame.wrapping_mul(5)),
                        data,
                    ]
                } else {
                    let pleth = 0x4000u16.wrapping_add(u16::from(frame).wrapping_mul(257));
                    let [hi, lo] = pleth.to_be_bytes();
                    [status, hi, lo, data]
                };
                let sum = bytes.iter().fold(0u8, |acc, b| acc.wrapping_add(*b));
                out.extend_from_slice(&bytes);
                out.push(sum);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Decoder

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Assembly {
    /// Between packets: the next frame should carry SYNC.
    Idle,
    /// Collecting a packet; the number of frames so far.
    Collecting(u8),
    /// A packet was lost (already counted); waiting quietly for SYNC.
    Skipping,
}

#[derive(Clone, Copy, Debug)]
struct Packet {
    state: Assembly,
    flags: Flags,
    hr_msb: u8,
    hr_lsb: u8,
    spo2: u8,
    stat2: u8,
}

impl Packet {
    const fn new() -> Self {
        Packet {
            state: Assembly::Idle,
            flags: Flags {
                sensor_off: false,
                artifact: false,
                questionable: false,
            },
            hr_msb: 0,
            hr_lsb: 0,
            spo2: 0,
            stat2: 0,
        }
    }
}

/// Decoder for a Nonin oximeter's serial output.
#[derive(Debug)]
pub struct Nonin {
    source: SourceId,
    format: NoninFormat,
    window: [u8; 5],
    len: usize,
    discarding: bool,
    packet: Packet,
    low_battery: bool,
    out: Decoded,
    transmit: Option<[u8; 6]>,
    awaiting_ack: Option<(NoninFormat, Instant)>,
}

impl Nonin {
    /// A decoder for a device sending `format`, for readings from `source`.
    pub fn new(source: SourceId, format: NoninFormat) -> Self {
        Nonin {
            source,
            format,
            window: [0; 5],
            len: 0,
            discarding: false,
            packet: Packet::new(),
            low_battery: false,
            out: Decoded::with_capacity(OUTPUT_CAPACITY),
            transmit: None,
            awaiting_ack: None,
        }
    }

    /// The format being decoded (changes when the device ACKs a request).
    pub fn format(&self) -> NoninFormat {
        self.format
    }

    /// Asks the device (9560) to switch to `format`: the request comes out of
    /// [`Protocol::poll_transmit`]; the answer, or its absence by
    /// `now + ACK_TIMEOUT`, comes out as [`DeviceNote::Acknowledged`].
    pub fn request_format(&mut self, now: Instant, format: NoninFormat) {
        self.transmit = Some(format_select_request(format));
        self.awaiting_ack = Some((format, now + ACK_TIMEOUT));
    }

    /// Bytes are being thrown away: count once per run, and abandon the
    /// packet being collected (its frame numbering is lost).
    fn discard(&mut self, reason: DropReason) {
        if !self.discarding {
            self.discarding = true;
            self.out.discard(reason);
        }
        if self.format != NoninFormat::Df8 {
            self.packet.state = Assembly::Skipping;
        }
    }

    fn shift(&mut self, n: usize) {
        let n = n.min(self.len);
        self.window.copy_within(n..self.len, 0);
        self.len -= n;
    }

    fn can_start(&self, byte: u8) -> bool {
        match self.format {
            NoninFormat::Df2 => byte == 0x01,
            NoninFormat::Df7 | NoninFormat::Df8 => byte & 0x80 != 0,
        }
    }

    fn acknowledge(&mut self, ack: bool) {
        if let Some((format, _)) = self.awaiting_ack.take() {
            self.out.push(Output::Note(DeviceNote::Acknowledged(ack)));
            if ack && format != self.format {
                self.format = format;
                self.packet = Packet::new();
            }
        }
    }

    fn handle_byte(&mut self, now: Instant, byte: u8) {
        if let Some(slot) = self.window.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
        loop {
            let Some(&head) = self.window.get(..self.len).and_then(<[u8]>::first) else {
                return;
            };
            if !self.can_start(head) {
                self.shift(1);
                if self.awaiting_ack.is_some() && (head == ACK || head == NAK) {
                    self.acknowledge(head == ACK);
                } else {
                    self.discard(DropReason::Garbage);
                }
                continue;
            }
            if self.format == NoninFormat::Df8 {
                // Only the first byte of a DF8 frame has bit 7 set: another
                // such byte means the frame was cut short.
                let body = self.window.get(1..self.len).unwrap_or(&[]);
                if let Some(pos) = body.iter().position(|b| b & 0x80 != 0) {
                    self.discard(DropReason::Truncated);
                    self.shift(pos + 1);
                    continue;
                }
            }
            if self.len < self.format.frame_len() {
                return;
            }
            match self.check_frame() {
                Ok(()) => {
                    let frame = self.window;
                    self.len = 0;
                    self.discarding = false;
                    self.handle_frame(now, frame);
                    return;
                }
                Err(reason) => {
                    self.discard(reason);
                    self.shift(1);
                }
            }
        }
    }

    /// Checks a full window whose first byte can start a frame.
    fn check_frame(&self) -> Result<(), DropReason> {
        let [b0, b1, b2, b3, b4] = self.window;
        match self.format {
            NoninFormat::Df8 => Ok(()),
            NoninFormat::Df2 | NoninFormat::Df7 => {
                let sum = b0.wrapping_add(b1).wrapping_add(b2).wrapping_add(b3);
                if sum != b4 {
                    Err(DropReason::Checksum)
                } else if self.format == NoninFormat::Df2 && b1 & ST_ALWAYS == 0 {
                    Err(DropReason::Malformed)
                } else {
                    Ok(())
                }
            }
        }
    }

    fn handle_frame(&mut self, now: Instant, frame: [u8; 5]) {
        let [b0, b1, _, b3, _] = frame;
        match self.format {
            NoninFormat::Df8 => {
                self.out.count_ok();
                let flags = Flags::df8(b0, b3);
                self.emit(now, heart_rate(b0, b1), frame[2], flags.validity());
                self.battery(b3 & D8_BATTERY != 0);
            }
            NoninFormat::Df2 | NoninFormat::Df7 => {
                let status = if self.format == NoninFormat::Df2 {
                    b1
                } else {
                    b0
                };
                self.packet_frame(now, status, b3);
            }
        }
    }

    fn packet_frame(&mut self, now: Instant, status: u8, data: u8) {
        let flags = Flags::df27(status);
        if status & ST_SYNC != 0 {
            if let Assembly::Collecting(_) = self.packet.state {
                self.out.discard(DropReason::Truncated);
            }
            self.packet = Packet {
                state: Assembly::Collecting(1),
                flags,
                hr_msb: data,
                ..Packet::new()
            };
            return;
        }
        let n = match self.packet.state {
            Assembly::Collecting(n) => n.saturating_add(1),
            Assembly::Idle => {
                self.packet.state = Assembly::Skipping;
                self.out.discard(DropReason::Garbage);
                return;
            }
            Assembly::Skipping => return,
        };
        let p = &mut self.packet;
        p.flags = p.flags.or(flags);
        match n {
            2 => p.hr_lsb = data,
            3 => p.spo2 = data,
            8 => p.stat2 = data,
            _ => {}
        }
        if n < FRAMES_PER_PACKET {
            p.state = Assembly::Collecting(n);
            return;
        }
        p.state = Assembly::Idle;
        let p = *p;
        self.out.count_ok();
        self.emit(
            now,
            heart_rate(p.hr_msb, p.hr_lsb),
            p.spo2,
            p.flags.validity(),
        );
        self.battery(p.stat2 & STAT2_LOW_BATTERY != 0);
    }

    fn emit(&mut self, now: Instant, hr: u16, spo2: u8, condition: Validity) {
        let reading = |measurement| {
            Output::Reading(Reading {
                source: self.source,
                arrival: now,
                device_time: None,
                measurement,
            })
        };
        let pulse = reading(Measurement::PulseRate(sample(
            hr, MISSING_HR, MAX_HR, condition,
        )));
        let spo2 = reading(Measurement::SpO2(sample(
            u16::from(spo2),
            u16::from(MISSING_SPO2),
            100,
            condition,
        )));
        self.out.push(pulse);
        self.out.push(spo2);
    }

    fn battery(&mut self, low: bool) {
        if low != self.low_battery {
            self.low_battery = low;
            self.out.push(Output::Note(DeviceNote::LowBattery(low)));
        }
    }
}

impl Protocol for Nonin {
    fn handle_bytes(&mut self, now: Instant, bytes: &[u8]) {
        self.out.count_bytes(bytes.len());
        for &byte in bytes {
            self.handle_byte(now, byte);
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if let Some((_, deadline)) = self.awaiting_ack {
            if now >= deadline {
                self.awaiting_ack = None;
                self.out.push(Output::Note(DeviceNote::Acknowledged(false)));
            }
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop()
    }

    fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool {
        match self.transmit.take() {
            Some(request) => {
                out.extend_from_slice(&request);
                true
            }
            None => false,
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.awaiting_ack.map(|(_, deadline)| deadline)
    }

    fn stats(&self) -> DecodeStats {
        self.out.stats()
    }
}

// ------------------------------------------ registry: host and monitor side

/// The host side for the registry, data format 2.
pub fn open_df2(source: SourceId, _ages: AgeLimits) -> BoxedProtocol {
    Box::new(Nonin::new(source, NoninFormat::Df2))
}

/// The host side for the registry, data format 7.
pub fn open_df7(source: SourceId, _ages: AgeLimits) -> BoxedProtocol {
    Box::new(Nonin::new(source, NoninFormat::Df7))
}

/// The host side for the registry, data format 8.
pub fn open_df8(source: SourceId, _ages: AgeLimits) -> BoxedProtocol {
    Box::new(Nonin::new(source, NoninFormat::Df8))
}

/// The monitor side, for simulated devices: a 25-frame packet every 1/3 s
/// (DF2, DF7) or a 4-byte frame per second (DF8); answers a format select
/// request (`02 70 02 02 ZZ 03`) with ACK and switches to DF2, DF7 or DF8,
/// or NAK for other formats.
#[derive(Debug)]
pub struct NoninMonitor {
    format: NoninFormat,
    /// The last six host bytes, for the format select request.
    window: [u8; 6],
}

impl NoninMonitor {
    /// A monitor side sending `format`.
    pub fn new(format: NoninFormat) -> Self {
        NoninMonitor {
            format,
            window: [0; 6],
        }
    }

    /// For the registry: DF2.
    pub fn boxed_df2() -> Box<dyn Monitor> {
        Box::new(NoninMonitor::new(NoninFormat::Df2))
    }

    /// For the registry: DF7.
    pub fn boxed_df7() -> Box<dyn Monitor> {
        Box::new(NoninMonitor::new(NoninFormat::Df7))
    }

    /// For the registry: DF8.
    pub fn boxed_df8() -> Box<dyn Monitor> {
        Box::new(NoninMonitor::new(NoninFormat::Df8))
    }

    /// The format currently sent.
    pub fn format(&self) -> NoninFormat {
        self.format
    }
}

impl Monitor for NoninMonitor {
    fn stream_rate(&self) -> Option<u64> {
        Some(match self.format {
            NoninFormat::Df8 => 1,
            NoninFormat::Df2 | NoninFormat::Df7 => 3,
        })
    }

    fn frame(&mut self, _t: Instant, snap: &Snapshot, _fresh: bool, out: &mut Vec<u8>) {
        encode(self.format, snap, out);
    }

    /// Watches for `02 70 02 02 ZZ 03`.
    fn handle_host_byte(&mut self, now: Instant, b: u8, io: &mut dyn MonitorIo) {
        let w = &mut self.window;
        w.copy_within(1.., 0);
        w[5] = b;
        let [0x02, 0x70, 0x02, 0x02, code, 0x03] = *w else {
            return;
        };
        self.window = [0; 6];
        io.host_message();
        let format = match code {
            0x02 => Some(NoninFormat::Df2),
            0x07 => Some(NoninFormat::Df7),
            0x08 => Some(NoninFormat::Df8),
            _ => None,
        };
        match format {
            Some(f) => {
                io.send_frame(now, vec![ACK]);
                if f != self.format {
                    self.format = f;
                    // The new format's cadence starts with the next frame.
                    io.restart_stream(now);
                }
            }
            None => io.send_frame(now, vec![NAK]),
        }
    }

    fn power_off(&mut self) {
        self.window = [0; 6];
    }

    /// DF8 has no checksum: random 7-bit bytes could decode as a plausible
    /// reading and make line noise look like physiology.
    fn noise_high_bit(&self) -> bool {
        self.format == NoninFormat::Df8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::testkit::*;
    use crate::vitals::DeviceTime;
    use proptest::prelude::*;

    const SRC: SourceId = SourceId(2);
    const T: Instant = Instant::from_secs(7);

    fn samples(outputs: &[Output]) -> Vec<(Measurement, Instant)> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Reading(r) => {
                    assert_eq!(r.source, SRC);
                    assert_eq!(r.device_time, None);
                    Some((r.measurement, r.arrival))
                }
                _ => None,
            })
            .collect()
    }

    fn pr_spo2(outputs: &[Output]) -> Vec<(Sample, Sample)> {
        let s = samples(outputs);
        s.chunks(2)
            .map(|pair| match pair {
                [(Measurement::PulseRate(p), _), (Measurement::SpO2(o), _)] => (*p, *o),
                other => panic!("unexpected readings {other:?}"),
            })
            .collect()
    }

    /// A DF2 frame with a correct checksum.
    fn df2(status: u8, pleth: u8, data: u8) -> [u8; 5] {
        let sum = 1u8
            .wrapping_add(status)
            .wrapping_add(pleth)
            .wrapping_add(data);
        [0x01, status, pleth, data, sum]
    }

    /// A DF2 packet from per-frame data bytes (frame 1 first) and a status
    /// for all frames.
    fn df2_packet(status: u8, data: &[(u8, u8)]) -> Vec<u8> {
        let mut out = Vec::new();
        for n in 1..=FRAMES_PER_PACKET {
            let d = data.iter().find(|(f, _)| *f == n).map_or(0, |(_, d)| *d);
            let sync = if n == 1 { ST_SYNC } else { 0 };
            out.extend(df2(status | sync, 0x11, d));
        }
        out
    }

    #[test]
    fn spec_vector_valid_frames_give_hr_72_spo2_97() {
        let mut bytes = hex("01 81 01 00 83 01 80 01 48 ca 01 80 01 61 e3 01 80 01 30 b2");
        for _ in 5..=FRAMES_PER_PACKET {
            bytes.extend(df2(0x80, 0x01, 0x00));
        }
        let mut d = Nonin::new(SRC, NoninFormat::Df2);
        // Nothing before the 25th frame.
        assert!(feed(&mut d, Instant::ZERO, &bytes[..bytes.len() - 1]).is_empty());
        let out = feed(&mut d, T, &bytes[bytes.len() - 1..]);
        assert_eq!(
            samples(&out),
            vec![
                (Measurement::PulseRate(Sample::valid(72.0)), T),
                (Measurement::SpO2(Sample::valid(97.0)), T)
            ]
        );
        assert_eq!(d.stats().frames_ok, 1);
        assert_eq!(d.stats().dropped_total(), 0);
        assert_eq!(d.stats().bytes, 125);
    }

    #[test]
    fn spec_vector_first_and_later_frames_are_accepted() {
        let mut bytes = hex("01 81 02 00 84");
        for _ in 2..=FRAMES_PER_PACKET {
            bytes.extend(hex("01 80 02 00 83"));
        }
        let mut d = Nonin::new(SRC, NoninFormat::Df2);
        let out = feed(&mut d, T, &bytes);
        assert_eq!(
            pr_spo2(&out),
            vec![(Sample::valid(0.0), Sample::valid(0.0))]
        );
        assert_eq!(d.stats().dropped_total(), 0);
    }

    #[test]
    fn spec_vector_bad_checksum_is_dropped_then_resyncs() {
        let mut d = Nonin::new(SRC, NoninFormat::Df2);
        let out = feed(&mut d, T, &hex("01 81 02 00 00"));
        assert_eq!(out, vec![Output::Dropped(DropReason::Checksum)]);
        let packet = df2_packet(0x80, &[(2, 72), (3, 97)]);
        let out = feed(&mut d, T, &packet);
        assert_eq!(
            pr_spo2(&out),
            vec![(Sample::valid(72.0), Sample::valid(97.0))]
        );
        assert_eq!(d.stats().dropped[DropReason::Checksum.index()], 1);
        assert_eq!(d.stats().dropped_total(), 1);
    }

    #[test]
    fn spec_vector_bad_status_is_malformed() {
        let mut d = Nonin::new(SRC, NoninFormat::Df2);
        let out = feed(&mut d, T, &hex("01 7f 02 00 82"));
        assert_eq!(out, vec![Output::Dropped(DropReason::Malformed)]);
        assert_eq!(d.stats().frames_ok, 0);
    }

    #[test]
    fn hr_uses_two_bits_of_msb_shifted_by_seven() {
        assert_eq!(heart_rate(0x01, 0x2C), 172);
        // High bits of the MSB byte are not part of HR (a 0x18 mask would be).
        assert_eq!(heart_rate(0xFD, 0x2C), 172);
        assert_eq!(heart_rate(0x00, 0xC8), 72);
        assert_eq!(heart_rate(0x03, 0x7F), MISSING_HR);
        let mut d = Nonin::new(SRC, NoninFormat::Df2);
        let out = feed(&mut d, T, &df2_packet(0x80, &[(1, 1), (2, 0x2C), (3, 95)]));
        assert_eq!(
            pr_spo2(&out),
            vec![(Sample::valid(172.0), Sample::valid(95.0))]
        );
    }

    #[test]
    fn status_bits_decide_validity() {
        use Validity::*;
        let cases: [(u8, Validity); 8] = [
            (0x80, Valid),
            (0x80 | ST_GREEN, Valid),
            (0x80 | ST_RED | ST_GREEN, Valid),
            (0x80 | ST_RED, Questionable),
            (0x80 | ST_OUT_OF_TRACK, Questionable),
            (0x80 | ST_ARTIFACT | ST_OUT_OF_TRACK, Artifact),
            (0x80 | ST_SENSOR_ALARM | ST_ARTIFACT, SensorOff),
            (0x80 | ST_DISCONNECT, SensorOff),
        ];
        for (status, want) in cases {
            // The condition on a single late frame taints the whole packet.
            let mut bytes = df2_packet(0x80, &[(2, 72), (3, 97)]);
            let frame = df2(status, 0x11, 0);
            bytes.splice(20 * 5..21 * 5, frame);
            let mut d = Nonin::new(SRC, NoninFormat::Df2);
            let got = pr_spo2(&feed(&mut d, T, &bytes));
            assert_eq!(got.len(), 1, "status {status:#x}");
            assert_eq!(got[0].0.validity, want, "status {status:#x}");
            assert_eq!(got[0].1.validity, want, "status {status:#x}");
            if !want.is_valid() {
                assert_eq!(got[0].0.get(), None);
            }
        }
    }

    #[test]
    fn missing_and_out_of_range_values_are_never_valid() {
        let mut d = Nonin::new(SRC, NoninFormat::Df2);
        let out = feed(&mut d, T, &df2_packet(0x80, &[(1, 3), (2, 0x7F), (3, 127)]));
        let [(p, o)] = pr_spo2(&out)[..] else {
            panic!()
        };
        assert_eq!(
            (p.validity, o.validity),
            (Validity::Unavailable, Validity::Unavailable)
        );
        assert!(p.value.is_nan() && o.value.is_nan());
        let out = feed(
            &mut d,
            T,
            &df2_packet(0x80 | ST_SENSOR_ALARM, &[(1, 3), (2, 0x7F), (3, 127)]),
        );
        let [(p, o)] = pr_spo2(&out)[..] else {
            panic!()
        };
        assert_eq!(
            (p.validity, o.validity),
            (Validity::SensorOff, Validity::SensorOff)
        );
        // 400 bpm and 120 % are beyond the device's range.
        let out = feed(&mut d, T, &df2_packet(0x80, &[(1, 3), (2, 0x10), (3, 120)]));
        let [(p, o)] = pr_spo2(&out)[..] else {
            panic!()
        };
        assert_eq!((p.value, p.validity), (400.0, Validity::Invalid));
        assert_eq!((o.value, o.validity), (120.0, Validity::Invalid));
    }

    #[test]
    fn low_battery_note_on_change() {
        let mut d = Nonin::new(SRC, NoninFormat::Df2);
        let notes = |out: &[Output]| -> Vec<Output> {
            out.iter()
                .filter(|o| matches!(o, Output::Note(_)))
                .copied()
                .collect()
        };
        let low = df2_packet(0x80, &[(2, 72), (3, 97), (8, STAT2_LOW_BATTERY | 0x20)]);
        let ok = df2_packet(0x80, &[(2, 72), (3, 97), (8, 0x20)]);
        assert!(notes(&feed(&mut d, T, &ok)).is_empty());
        assert_eq!(
            notes(&feed(&mut d, T, &low)),
            vec![Output::Note(DeviceNote::LowBattery(true))]
        );
        assert!(notes(&feed(&mut d, T, &low)).is_empty());
        assert_eq!(
            notes(&feed(&mut d, T, &ok)),
            vec![Output::Note(DeviceNote::LowBattery(false))]
        );
    }

    #[test]
    fn joining_mid_stream_and_garbage_resync() {
        let packet = df2_packet(0x80, &[(2, 72), (3, 97)]);
        let mut bytes = vec![0xAA, 0x01, 0x55];
        // The last 10 frames of a packet, then two whole packets.
        bytes.extend_from_slice(&packet[15 * 5..]);
        bytes.extend_from_slice(&packet);
        bytes.extend_from_slice(&packet);
        let mut d = Nonin::new(SRC, NoninFormat::Df2);
        let out = feed(&mut d, T, &bytes);
        assert_eq!(pr_spo2(&out).len(), 2);
        // One run of garbage bytes; the late frames are skipped quietly.
        assert_eq!(d.stats().dropped_total(), 1);
        assert_eq!(out.first(), Some(&Output::Dropped(DropReason::Garbage)));
        // Joining exactly at a frame boundary: one Garbage drop for the late frames.
        let mut d = Nonin::new(SRC, NoninFormat::Df2);
        let mut bytes = packet[20 * 5..].to_vec();
        bytes.extend_from_slice(&packet);
        let out = feed(&mut d, T, &bytes);
        assert_eq!(d.stats().dropped[DropReason::Garbage.index()], 1);
        assert_eq!(pr_spo2(&out).len(), 1);
    }

    #[test]
    fn corrupted_frame_abandons_packet_without_misnumbering() {
        let mut bytes = df2_packet(0x80, &[(2, 72), (3, 97)]);
        // Corrupt frame 2's checksum: frame 3 must not be taken as frame 2.
        bytes[9] ^= 0x5A;
        bytes.extend(df2_packet(0x80, &[(2, 60), (3, 99)]));
        let mut d = Nonin::new(SRC, NoninFormat::Df2);
        let out = feed(&mut d, T, &bytes);
        assert_eq!(
            pr_spo2(&out),
            vec![(Sample::valid(60.0), Sample::valid(99.0))]
        );
        assert_eq!(d.stats().dropped[DropReason::Checksum.index()], 1);
        assert_eq!(d.stats().dropped_total(), 1);
    }

    #[test]
    fn packet_cut_short_by_sync_is_truncated() {
        let packet = df2_packet(0x80, &[(2, 72), (3, 97)]);
        let mut bytes = packet[..10 * 5].to_vec();
        bytes.extend_from_slice(&packet);
        let mut d = Nonin::new(SRC, NoninFormat::Df2);
        let out = feed(&mut d, T, &bytes);
        assert_eq!(out.first(), Some(&Output::Dropped(DropReason::Truncated)));
        assert_eq!(pr_spo2(&out).len(), 1);
        assert_eq!(d.stats().dropped_total(), 1);
    }

    #[test]
    fn df7_frames_decode() {
        let mut snap = Snapshot::empty(DeviceTime(0));
        snap.pulse_rate = Sample::valid(130.0);
        snap.spo2 = Sample::valid(91.0);
        let mut bytes = Vec::new();
        encode(NoninFormat::Df7, &snap, &mut bytes);
        assert_eq!(bytes.len(), 125);
        // Frame 1: status with SYNC and green perfusion, 16-bit pleth, HR MSB.
        assert_eq!(bytes[0], 0x80 | ST_GREEN | ST_SYNC);
        assert_eq!(bytes[3], 1);
        assert_eq!(
            bytes[4],
            bytes[..4].iter().fold(0u8, |a, b| a.wrapping_add(*b))
        );
        let mut d = Nonin::new(SRC, NoninFormat::Df7);
        let out = feed(&mut d, T, &bytes);
        assert_eq!(
            pr_spo2(&out),
            vec![(Sample::valid(130.0), Sample::valid(91.0))]
        );
        // A DF7 decoder given DF2 bytes finds no frames.
        let mut d = Nonin::new(SRC, NoninFormat::Df7);
        let mut df2_bytes = Vec::new();
        encode(NoninFormat::Df2, &snap, &mut df2_bytes);
        let out = feed(&mut d, T, &df2_bytes);
        assert!(pr_spo2(&out).is_empty());
        assert!(d.stats().dropped_total() >= 1);
    }

    #[test]
    fn df8_frames_decode_and_resync() {
        let mut d = Nonin::new(SRC, NoninFormat::Df8);
        // HR 172 (0x01, 0x2C), SpO2 95, STAT2 0; then a frame cut short by a
        // new one; then stray low bytes; then a sensor alarm frame.
        let bytes = [
            0x81,
            0x2C,
            95,
            0x00, // ok
            0x80,
            0x48, // cut short
            0x80,
            0x48,
            97,
            0x00, // ok: 72 / 97
            0x11,
            0x22, // garbage
            0x83,
            0x7F,
            127,
            D8_SENSOR_ALARM | 0x01, // missing, sensor alarm, low battery
        ];
        let out = feed(&mut d, T, &bytes);
        let got = pr_spo2(&out);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], (Sample::valid(172.0), Sample::valid(95.0)));
        assert_eq!(got[1], (Sample::valid(72.0), Sample::valid(97.0)));
        assert_eq!(got[2].0.validity, Validity::SensorOff);
        assert_eq!(got[2].1.validity, Validity::SensorOff);
        assert_eq!(d.stats().dropped[DropReason::Truncated.index()], 1);
        assert_eq!(d.stats().dropped[DropReason::Garbage.index()], 1);
        assert_eq!(d.stats().frames_ok, 3);
        assert_eq!(
            out.last(),
            Some(&Output::Note(DeviceNote::LowBattery(true)))
        );
        for (b1, want) in [
            (0x80 | D8_OUT_OF_TRACK, Validity::Questionable),
            (0x80 | D8_LOW_PERFUSION, Validity::Questionable),
            (0x80 | 0x08, Validity::Valid), // marginal perfusion
            (0x80 | D8_ARTIFACT, Validity::Artifact),
            (0x80 | D8_DISCONNECT, Validity::SensorOff),
        ] {
            let mut d = Nonin::new(SRC, NoninFormat::Df8);
            let got = pr_spo2(&feed(&mut d, T, &[b1, 72, 97, 0]));
            assert_eq!(got[0].0.validity, want, "{b1:#x}");
        }
    }

    #[test]
    fn format_select_request_and_ack_switch_the_decoder() {
        assert_eq!(
            format_select_request(NoninFormat::Df8),
            [0x02, 0x70, 0x02, 0x02, 0x08, 0x03]
        );
        assert_eq!(format_select_request(NoninFormat::Df7)[4], 0x07);
        assert_eq!(format_select_request(NoninFormat::Df2)[4], 0x02);

        let mut d = Nonin::new(SRC, NoninFormat::Df2);
        let mut tx = Vec::new();
        assert!(!d.poll_transmit(&mut tx));
        d.request_format(Instant::from_secs(1), NoninFormat::Df8);
        assert!(d.poll_transmit(&mut tx));
        assert_eq!(tx, hex("02 70 02 02 08 03"));
        assert!(!d.poll_transmit(&mut tx));
        assert_eq!(d.poll_timeout(), Some(Instant::from_secs(3)));
        // The rest of a DF2 packet, the ACK, then DF8 frames.
        let mut bytes = df2_packet(0x80, &[(2, 72), (3, 97)]);
        bytes.push(ACK);
        bytes.extend_from_slice(&[0x80, 0x48, 97, 0x00]);
        let out = feed(&mut d, T, &bytes);
        assert_eq!(
            out.get(2),
            Some(&Output::Note(DeviceNote::Acknowledged(true)))
        );
        assert_eq!(pr_spo2(&[out[0], out[1], out[3], out[4]]).len(), 2);
        assert_eq!(d.format(), NoninFormat::Df8);
        assert_eq!(d.poll_timeout(), None);
        assert_eq!(d.stats().dropped_total(), 0);

        // NAK keeps the format.
        let mut d = Nonin::new(SRC, NoninFormat::Df2);
        d.request_format(T, NoninFormat::Df7);
        assert_eq!(
            feed(&mut d, T, &[NAK]),
            vec![Output::Note(DeviceNote::Acknowledged(false))]
        );
        assert_eq!(d.format(), NoninFormat::Df2);

        // No answer: reported once at the deadline.
        let mut d = Nonin::new(SRC, NoninFormat::Df2);
        d.request_format(Instant::from_secs(10), NoninFormat::Df7);
        d.handle_timeout(Instant::from_secs(11));
        assert_eq!(d.poll_output(), None);
        d.handle_timeout(Instant::from_secs(12));
        assert_eq!(
            d.poll_output(),
            Some(Output::Note(DeviceNote::Acknowledged(false)))
        );
        assert_eq!(d.poll_timeout(), None);
        // An ACK byte when nothing was asked is just garbage.
        assert_eq!(
            feed(&mut d, T, &[ACK]),
            vec![Output::Dropped(DropReason::Garbage)]
        );
    }

    // -- property tests ------------------------------------------------------

    fn arb_format() -> impl Strategy<Value = NoninFormat> {
        proptest::sample::select(vec![NoninFormat::Df2, NoninFormat::Df7, NoninFormat::Df8])
    }

    /// Snapshots a Nonin can show: values within its ranges (or none), one
    /// shared condition.
    fn arb_snapshot() -> impl Strategy<Value = Snapshot> {
        (
            proptest::option::of(0.0f32..=321.0),
            proptest::option::of(0.0f32..=100.0),
            proptest::sample::select(vec![
                Validity::Valid,
                Validity::SensorOff,
                Validity::Artifact,
                Validity::Questionable,
            ]),
        )
            .prop_map(|(pr, spo2, cond)| oximeter_snapshot(DeviceTime(0), spo2, pr, cond))
    }

    proptest! {
        #[test]
        fn snapshots_round_trip(format in arb_format(), snap in arb_snapshot()) {
            let mut bytes = Vec::new();
            encode(format, &snap, &mut bytes);
            let mut d = Nonin::new(SRC, format);
            let out = feed(&mut d, T, &bytes);
            prop_assert_eq!(d.stats().dropped_total(), 0);
            let got = pr_spo2(&out);
            prop_assert_eq!(got.len(), 1);
            let cond = shared_condition(&[snap.pulse_rate, snap.spo2]);
            check_oximeter_sample(got[0].0, snap.pulse_rate, cond)?;
            check_oximeter_sample(got[0].1, snap.spo2, cond)?;
        }

        #[test]
        fn chunking_does_not_change_outputs(
            format in arb_format(),
            snaps in proptest::collection::vec(arb_snapshot(), 1..5),
            noise in proptest::collection::vec(any::<u8>(), 0..30),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..16),
        ) {
            let mut bytes = noise;
            for s in &snaps {
                encode(format, s, &mut bytes);
            }
            let expect = cut_anywhere(|| Nonin::new(SRC, format), T, &bytes, &cuts)?;
            // Noise may swallow at most the first packet.
            prop_assert!(pr_spo2(&expect).len() + 1 >= snaps.len());
        }

        #[test]
        fn arbitrary_bytes_never_panic_or_yield_non_finite_valid_values(
            format in arb_format(),
            bytes in proptest::collection::vec(any::<u8>(), 0..3000),
        ) {
            let mut d = Nonin::new(SRC, format);
            d.request_format(Instant::ZERO, NoninFormat::Df8);
            valid_values_are_finite(&feed(&mut d, T, &bytes), Checked::ContinuousOnly)?;
            d.handle_timeout(Instant::from_secs(100));
            prop_assert_eq!(d.poll_timeout(), None);
        }
    }
}
