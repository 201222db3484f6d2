//! Monitor protocols: pure decoders and encoders, one module per device family.
//!
//! A decoder takes bytes as they arrive (in chunks of any size, split
//! anywhere) with the [`Instant`] they arrived at, and queues
//! [`Output`]s: readings for the engine and device status for the technical
//! alarms. Protocols that talk back (GE request records, Philips association
//! and polls) queue the bytes to write; the IO layer writes them. Nothing here
//! performs IO, reads a clock, or allocates per frame once warmed up: buffers
//! are bounded and reused.
//!
//! Bad input never panics: garbage, truncated frames, wrong checksums and
//! oversized frames are dropped, counted by [`DropReason`] in
//! [`DecodeStats`], reported as [`Output::Dropped`], and the decoder
//! resynchronises at the next frame.
//!
//! [`registry`] is the one place a protocol's identity lives: its
//! [`ProtocolKind`], the configuration's name for it, its usual serial
//! settings, its decoder and its simulated monitor side ([`Monitor`]).
//!
//! Depends on [`crate::vitals`] and [`crate::time`] only.

pub mod ge;
pub mod line;
pub mod masimo;
pub mod nonin;
pub mod philips;
pub mod registry;
#[cfg(test)]
mod testkit;

pub use registry::{
    BoxedProtocol, Entry, Monitor, MonitorIo, Parity, ProtocolKind, SerialSettings, REGISTRY,
};

use std::collections::VecDeque;

use crate::time::Instant;
use crate::vitals::{DeviceTime, Nibp, Reading, Sample, Validity, Vital};

/// Why bytes were thrown away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Bytes outside any frame (noise, the middle of a frame we joined late).
    Garbage,
    /// A frame that ended early (a new frame start, an abort sequence).
    Truncated,
    /// Checksum or CRC mismatch.
    Checksum,
    /// A frame longer than the protocol allows (bounded buffer).
    Oversized,
    /// A frame that framed correctly but whose content does not parse.
    Malformed,
}

impl DropReason {
    /// Every reason, in table order.
    pub const ALL: [DropReason; 5] = [
        DropReason::Garbage,
        DropReason::Truncated,
        DropReason::Checksum,
        DropReason::Oversized,
        DropReason::Malformed,
    ];
    /// Number of reasons.
    pub const COUNT: usize = 5;

    /// Position in [`DropReason::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Stable short name.
    pub const fn key(self) -> &'static str {
        match self {
            DropReason::Garbage => "garbage",
            DropReason::Truncated => "truncated",
            DropReason::Checksum => "checksum",
            DropReason::Oversized => "oversized",
            DropReason::Malformed => "malformed",
        }
    }
}

/// Cumulative decoding counters of one decoder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecodeStats {
    /// Frames (or lines, or packets) decoded successfully.
    pub frames_ok: u64,
    /// Frames (or runs of garbage) dropped, by [`DropReason::index`].
    pub dropped: [u64; DropReason::COUNT],
    /// Bytes received in total.
    pub bytes: u64,
    /// Well-formed frames this host does not use (waveform and trend
    /// records, results of requests it did not make): neither data nor
    /// errors.
    pub ignored: u64,
}

impl DecodeStats {
    /// Frames dropped for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    /// Count one drop.
    pub fn count_drop(&mut self, reason: DropReason) {
        self.dropped[reason.index()] += 1;
    }
}

/// The decoded outputs a streaming decoder has not handed out yet, its
/// counters and why it last dropped a line or frame: what the vigil-line,
/// Masimo and Nonin decoders keep the same way. `E` is the protocol's own
/// error, shown by [`Protocol::drop_detail`].
#[derive(Debug)]
pub(crate) struct Decoded<E = core::convert::Infallible> {
    queue: VecDeque<Output>,
    stats: DecodeStats,
    last_error: Option<E>,
}

impl<E: Copy + core::fmt::Display + 'static> Decoded<E> {
    /// An empty queue with room for `capacity` outputs (reserved once).
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Decoded {
            queue: VecDeque::with_capacity(capacity),
            stats: DecodeStats::default(),
            last_error: None,
        }
    }

    /// Counts a chunk of received bytes.
    pub(crate) fn count_bytes(&mut self, len: usize) {
        self.stats.bytes = self.stats.bytes.wrapping_add(len as u64);
    }

    /// Counts one line or frame decoded.
    pub(crate) fn count_ok(&mut self) {
        self.stats.frames_ok = self.stats.frames_ok.wrapping_add(1);
    }

    /// Queues one output.
    pub(crate) fn push(&mut self, output: Output) {
        self.queue.push_back(output);
    }

    /// Counts and reports one drop.
    pub(crate) fn discard(&mut self, reason: DropReason) {
        self.stats.count_drop(reason);
        self.queue.push_back(Output::Dropped(reason));
    }

    /// Counts and reports one drop, keeping `error` as the reason to log.
    pub(crate) fn reject(&mut self, reason: DropReason, error: E) {
        self.last_error = Some(error);
        self.discard(reason);
    }

    /// The next output ([`Protocol::poll_output`]).
    pub(crate) fn pop(&mut self) -> Option<Output> {
        self.queue.pop_front()
    }

    /// The counters ([`Protocol::stats`]).
    pub(crate) fn stats(&self) -> DecodeStats {
        self.stats
    }

    /// The error of the most recent rejected line or frame.
    pub(crate) fn last_error(&self) -> Option<E> {
        self.last_error
    }

    /// [`Decoded::last_error`] for the log ([`Protocol::drop_detail`]).
    pub(crate) fn detail(&self) -> Option<&dyn core::fmt::Display> {
        self.last_error
            .as_ref()
            .map(|e| e as &dyn core::fmt::Display)
    }
}

/// How old, by the device's own clock, a value may be and still be taken as
/// current. Older values are decoded as [`Validity::Old`]: shown as an old
/// measurement, never judged against alarm limits.
///
/// Decoders compare a value's own time stamp with the device clock of the
/// same message, so host and device clocks never meet. The NIBP limit is the
/// configured cycle plus grace (a result older than that is one the cycle
/// should long have replaced); continuous vitals update about once a second,
/// so a time stamp a minute behind the clock means the device resends a
/// value it no longer measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgeLimits {
    /// Oldest NIBP measurement taken as current.
    pub nibp: core::time::Duration,
    /// Oldest continuous value (HR, pulse rate, SpO2) taken as current.
    pub continuous: core::time::Duration,
}

impl AgeLimits {
    /// Default continuous limit: one minute (GE's own "older than 60 s").
    pub const CONTINUOUS: core::time::Duration = core::time::Duration::from_secs(60);

    /// Limits for the engine's NIBP cycle and its grace.
    pub const fn for_nibp_cycle(cycle: core::time::Duration, grace: core::time::Duration) -> Self {
        AgeLimits {
            nibp: cycle.saturating_add(grace),
            continuous: Self::CONTINUOUS,
        }
    }

    /// Whether a value stamped `stamp` is old at device time `clock`. A
    /// stamp ahead of the clock (clock set back) is not old.
    pub fn is_old(limit: core::time::Duration, stamp: DeviceTime, clock: DeviceTime) -> bool {
        let age = clock.0.saturating_sub(stamp.0);
        u64::try_from(age).is_ok_and(|age| age > limit.as_secs())
    }
}

impl Default for AgeLimits {
    /// The default NIBP cycle (15 min) and grace (3 min).
    fn default() -> Self {
        AgeLimits::for_nibp_cycle(
            core::time::Duration::from_secs(15 * 60),
            core::time::Duration::from_secs(3 * 60),
        )
    }
}

/// Why a session-based protocol (Philips) has no association.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AssociationProblem {
    /// The monitor refused the association request.
    Refused,
    /// The monitor aborted the association.
    Aborted,
    /// The monitor released the association.
    Released,
    /// The monitor did not answer the association request in time.
    NoAnswer,
    /// The monitor accepted but its MDS Create event did not come in time.
    NoMdsCreate,
    /// Associated, but poll results stopped coming.
    DataTimeout,
    /// The link (serial port, TCP) went down.
    LinkDown,
}

impl AssociationProblem {
    /// Stable short name.
    pub const fn key(self) -> &'static str {
        match self {
            AssociationProblem::Refused => "refused",
            AssociationProblem::Aborted => "aborted",
            AssociationProblem::Released => "released",
            AssociationProblem::NoAnswer => "no_answer",
            AssociationProblem::NoMdsCreate => "no_mds_create",
            AssociationProblem::DataTimeout => "data_timeout",
            AssociationProblem::LinkDown => "link_down",
        }
    }
}

/// Longest text a device note carries (the monitor's own INOP text).
pub const NOTE_TEXT_LEN: usize = 31;

/// A short, printable ASCII text stored inline (so outputs stay `Copy` and
/// allocation-free). Anything else is replaced by `?`; longer texts are cut.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct NoteText {
    len: u8,
    bytes: [u8; NOTE_TEXT_LEN],
}

impl NoteText {
    /// The empty text.
    pub const EMPTY: NoteText = NoteText {
        len: 0,
        bytes: [0; NOTE_TEXT_LEN],
    };

    /// Copies up to [`NOTE_TEXT_LEN`] bytes of `raw`, trimmed of surrounding
    /// blanks and NULs, with every byte that is not printable ASCII as `?`.
    pub fn new(raw: &[u8]) -> Self {
        let is_blank = |b: &u8| *b == 0 || b.is_ascii_whitespace();
        let start = raw.iter().position(|b| !is_blank(b)).unwrap_or(raw.len());
        let end = raw
            .iter()
            .rposition(|b| !is_blank(b))
            .map_or(start, |e| e + 1);
        let mut t = NoteText::EMPTY;
        for &b in raw[start..end].iter().take(NOTE_TEXT_LEN) {
            t.bytes[usize::from(t.len)] = if (0x20..0x7F).contains(&b) { b } else { b'?' };
            t.len += 1;
        }
        t
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only printable ASCII is ever stored.
        core::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }

    /// Whether there is no text.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl core::fmt::Debug for NoteText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl core::fmt::Display for NoteText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A technical alarm the device itself reports (a Philips INOP such as
/// "SpO2 NO SENSOR"), begun or ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceInop {
    /// The vital it is about, when the device says so.
    pub vital: Option<Vital>,
    /// The device's own code for it.
    pub code: u16,
    /// The device's own text, when it gives one.
    pub text: NoteText,
    /// Began (true) or ended.
    pub active: bool,
}

/// Something the device told us about itself (not a vital sign).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceNote {
    /// The device reports a low battery.
    LowBattery(bool),
    /// The device's own alarm is sounding (Masimo ALARM bit 0x10) or silenced.
    DeviceAlarm {
        /// The device's alarm is active.
        active: bool,
        /// The device's alarm audio is silenced.
        silenced: bool,
    },
    /// A session-based protocol (Philips) is associated and data flows.
    Associated,
    /// A session-based protocol has no association, or lost it, and why.
    AssociationLost(AssociationProblem),
    /// The monitor announced itself anew while associated (an MDS Create or
    /// accept out of turn): it restarted or was taken over by another host.
    MonitorRestarted,
    /// The device raised or ended one of its own technical alarms.
    Inop(DeviceInop),
    /// The device acknowledged a configuration request (Nonin format select).
    Acknowledged(bool),
}

/// One output of a decoder.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Output {
    /// A reading (of any validity).
    Reading(Reading),
    /// A frame (or run of garbage bytes) was dropped.
    Dropped(DropReason),
    /// Device status.
    Note(DeviceNote),
}

/// What a monitor displays at one moment: the input of every encoder.
///
/// Simulators and round-trip tests build a `Snapshot` and hand it to a
/// protocol's encoder to get the bytes a real device of that family would
/// send. A vital the device does not measure is [`Sample::missing`] with
/// [`Validity::Unavailable`]; `nibp` is the latest NIBP measurement, if any.
/// Encoders leave out what a device without that module would not send
/// (no capnograph: no RR or etCO2 at all), so a snapshot without breathing
/// encodes to the bytes it always did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Snapshot {
    /// Heart rate (ECG), per minute.
    pub heart_rate: Sample,
    /// Pulse rate (oximeter), per minute.
    pub pulse_rate: Sample,
    /// SpO2, percent.
    pub spo2: Sample,
    /// The latest NIBP measurement.
    pub nibp: Option<Nibp>,
    /// Respiration rate (capnograph awRR), per minute; a valid 0 is "no
    /// breath detected".
    pub resp_rate: Sample,
    /// End-tidal CO2, mmHg.
    pub etco2: Sample,
    /// The device's clock.
    pub device_time: DeviceTime,
}

impl Snapshot {
    /// A snapshot with nothing measured.
    pub const fn empty(device_time: DeviceTime) -> Self {
        Snapshot {
            heart_rate: Sample::missing(Validity::Unavailable),
            pulse_rate: Sample::missing(Validity::Unavailable),
            spo2: Sample::missing(Validity::Unavailable),
            nibp: None,
            resp_rate: Sample::missing(Validity::Unavailable),
            etco2: Sample::missing(Validity::Unavailable),
            device_time,
        }
    }

    /// Whether the device shows breathing at all (has a capnograph): RR or
    /// etCO2 is anything but "not measured".
    pub fn has_breathing(&self) -> bool {
        [self.resp_rate, self.etco2]
            .iter()
            .any(|s| s.value.is_finite() || s.validity != Validity::Unavailable)
    }
}

/// A pure protocol endpoint on the host side.
///
/// The driver calls [`Protocol::handle_bytes`] for each chunk read, then
/// drains [`Protocol::poll_output`] and [`Protocol::poll_transmit`], and calls
/// [`Protocol::handle_timeout`] when [`Protocol::poll_timeout`] is due.
pub trait Protocol {
    /// Bytes received from the device; `now` is when the chunk arrived.
    fn handle_bytes(&mut self, now: Instant, bytes: &[u8]);

    /// The link to the device came up (`up`) or went down. A protocol that
    /// talks (GE request, Philips association) starts its session at once
    /// when the link comes up and forgets it when the link goes down; what it
    /// queues in [`Protocol::poll_transmit`] after `up` must reach the device.
    fn handle_link(&mut self, _now: Instant, _up: bool) {}

    /// Time passed; protocols with timers (polls, keep-alives) act here.
    fn handle_timeout(&mut self, _now: Instant) {}

    /// The next decoded output, if any.
    fn poll_output(&mut self) -> Option<Output>;

    /// Appends the next message to send to the device to `out` and returns
    /// true, or returns false when there is nothing to send.
    fn poll_transmit(&mut self, _out: &mut Vec<u8>) -> bool {
        false
    }

    /// When [`Protocol::handle_timeout`] wants to be called next.
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// Cumulative decoding counters.
    fn stats(&self) -> DecodeStats;

    /// Why the most recent dropped line or frame was dropped, in words a
    /// person can act on, when the protocol can say more than its
    /// [`DropReason`] (for the log; `None` by default).
    fn drop_detail(&self) -> Option<&dyn core::fmt::Display> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_text_is_printable_trimmed_and_bounded() {
        assert_eq!(
            NoteText::new(b"  SpO2 NO SENSOR\0\0").as_str(),
            "SpO2 NO SENSOR"
        );
        assert_eq!(NoteText::new(b"a\x1bb").as_str(), "a?b");
        assert_eq!(NoteText::new(&[b'x'; 80]).as_str().len(), NOTE_TEXT_LEN);
        assert!(NoteText::new(b"\0 ").is_empty());
    }

    #[test]
    fn drop_reason_table_is_consistent() {
        for (i, r) in DropReason::ALL.into_iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        let mut s = DecodeStats::default();
        s.count_drop(DropReason::Checksum);
        s.count_drop(DropReason::Checksum);
        s.count_drop(DropReason::Garbage);
        assert_eq!(s.dropped[DropReason::Checksum.index()], 2);
        assert_eq!(s.dropped_total(), 3);
    }

    #[test]
    fn age_limits_compare_a_stamp_with_the_device_clock() {
        let clock = DeviceTime(1_800_000_000);
        let limit = core::time::Duration::from_secs(600);
        assert!(!AgeLimits::is_old(limit, DeviceTime(clock.0 - 600), clock));
        assert!(AgeLimits::is_old(limit, DeviceTime(clock.0 - 601), clock));
        // A stamp ahead of the clock (the clock was set back) is not old.
        assert!(!AgeLimits::is_old(
            limit,
            DeviceTime(clock.0 + 86_400),
            clock
        ));
        assert!(AgeLimits::is_old(limit, DeviceTime(i64::MIN), clock));
        // The default follows the engine's default cycle and grace.
        let nibp = crate::engine::EngineConfig::default().nibp;
        assert_eq!(AgeLimits::default().nibp, nibp.cycle + nibp.grace);
        assert_eq!(AgeLimits::default().continuous, AgeLimits::CONTINUOUS);
    }
}
