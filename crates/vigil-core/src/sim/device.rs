//! A simulated monitor: the monitor side of one protocol, driven by a
//! [`Patient`], sans-IO.
//!
//! # API
//!
//! Like the host-side decoders, a [`SimDevice`] never reads a clock and
//! never does IO: the caller passes the time in and moves the bytes.
//!
//! - [`SimDevice::handle_timeout`]: time passed; frames due by then are
//!   built (each from the patient at its own scheduled time);
//! - [`SimDevice::handle_bytes`]: what the host sent (GE request records,
//!   Philips association and polls, Nonin format select);
//! - [`SimDevice::poll_transmit`]: the next chunk of bytes the device sends
//!   (a frame, a packet, a burst of line noise, an answer);
//! - [`SimDevice::poll_timeout`]: when to call `handle_timeout` next.
//!
//! [`Instant::ZERO`] is the start of the scenario. A device first called at
//! a later instant (a reconnecting daemon) starts there: the patient is a
//! function of time, so it continues the same session.
//!
//! # Timing, per protocol
//!
//! | protocol | sends |
//! |---|---|
//! | vigil-line | one snapshot (a line per vital, NIBP with `at=`) per second, after a `vigil-line 1` header |
//! | Masimo | one line per second |
//! | Nonin DF2 / DF7 | a 25-frame packet every 1/3 s (75 frames/s) |
//! | Nonin DF8 | one 4-byte frame per second |
//! | GE S/5 | nothing until a request record asks; then displayed values at the requested interval (at least 5 s), once for `-1`, stop for `0` |
//! | Philips IntelliVue | nothing until associated (accept + MDS Create, then our event result); then one poll result per poll; the association is dropped after [`PHILIPS_KEEPALIVE`] without a poll |
//!
//! A Nonin device also answers a format select request (`02 70 02 02 ZZ
//! 03`) with ACK and switches to DF2, DF7 or DF8, or NAK for other formats.
//!
//! # Scripted equipment events
//!
//! - cable unplugged: nothing goes out and nothing comes in (the device
//!   itself keeps running);
//! - garbage: bursts of random bytes (8 to 48) every `every` between frames;
//!   for Nonin DF8, which has no checksum, noise bytes have bit 7 set (a
//!   run of random 7-bit bytes could otherwise decode as a plausible
//!   reading and make "line noise" look like physiology);
//! - reboot: the frame being sent is cut off part-way, the device is deaf
//!   and silent for the event's duration, forgets GE requests and Philips
//!   associations, then starts again (vigil-line with its header, Masimo
//!   with the NUL bytes some models send at power-up).
//!
//! Every random choice comes from [`Rng::derive`] keyed by the seed and the
//! event, so the same seed and the same host bytes at the same times give
//! the same output bytes.
//!
//! The protocol-specific part (what a frame is, how the host is answered)
//! is each protocol's [`Monitor`], taken from the protocol registry
//! ([`crate::protocol::registry`]); this module owns the patient, the
//! scripted equipment events and the streaming cadence, the same for all.
//!
//! Pure. Depends on [`crate::sim`], [`crate::protocol`] (the registry and
//! its monitor sides) and [`crate::time`].

use core::time::Duration;
use std::any::Any;
use std::collections::VecDeque;

use super::link::Device;
use super::model::Patient;
use super::rng::Rng;
use super::scenario::{EventKind, Scenario, ScriptedEvent};
use crate::protocol::nonin::{NoninFormat, NoninMonitor};
use crate::protocol::{Monitor, MonitorIo, ProtocolKind, Snapshot};
use crate::time::Instant;

// The monitor sides live with their protocols; these stay here for
// `vigil-sim`'s capture emulator and the tests.
pub use crate::protocol::ge::parse_host_request as parse_ge_request;
pub use crate::protocol::philips::{
    parse_host_frame as parse_philips_frame, MONITOR_KEEPALIVE as PHILIPS_KEEPALIVE,
    MONITOR_MODEL as PHILIPS_MODEL,
};

/// Random streams of the device (the patient uses small numbers).
const STREAM_GARBAGE: u64 = 0x100;
const STREAM_REBOOT: u64 = 0x101;

/// Counters of what a device did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceStats {
    /// Frames (lines, packets, records, answers) sent whole.
    pub frames: u64,
    /// Bytes handed to [`SimDevice::poll_transmit`].
    pub bytes: u64,
    /// Bytes of line noise among them.
    pub garbage_bytes: u64,
    /// Bytes that would have gone out while the cable was unplugged.
    pub lost_bytes: u64,
    /// Frames cut off by a reboot.
    pub cut_frames: u64,
    /// Host messages understood (requests, association, polls, format selects).
    pub host_messages: u64,
}

/// What is due next; ties go to the smaller variant (a reboot wins over the
/// frame it cuts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    RebootStart(usize),
    RebootEnd,
    Stream,
    /// The protocol's own deadline (a requested record, an association
    /// timeout).
    Protocol,
    Garbage(usize),
}

/// The device's side of the cable: the patient it shows, the scripted
/// cable events, the streaming cadence and what goes out. The protocol's
/// [`Monitor`] acts through it.
#[derive(Debug)]
struct Wire {
    patient: Patient,
    events: Vec<ScriptedEvent>,
    stream_base: Instant,
    stream_k: u64,
    tx: VecDeque<Vec<u8>>,
    stats: DeviceStats,
}

impl Wire {
    fn unplugged(&self, t: Instant) -> bool {
        let t = t.since_origin();
        self.events
            .iter()
            .any(|e| e.kind == EventKind::CableUnplugged && e.contains(t))
    }

    /// Queues bytes sent at `t` unless the cable is out; true when queued.
    fn send(&mut self, t: Instant, bytes: Vec<u8>) -> bool {
        if bytes.is_empty() {
            return false;
        }
        if self.unplugged(t) {
            self.stats.lost_bytes += bytes.len() as u64;
            return false;
        }
        self.tx.push_back(bytes);
        true
    }
}

impl MonitorIo for Wire {
    fn snapshot(&self, t: Instant) -> Snapshot {
        self.patient.snapshot(t.since_origin())
    }

    fn send_frame(&mut self, t: Instant, frame: Vec<u8>) {
        if self.send(t, frame) {
            self.stats.frames += 1;
        }
    }

    fn host_message(&mut self) {
        self.stats.host_messages += 1;
    }

    fn restart_stream(&mut self, t: Instant) {
        self.stream_base = t;
        self.stream_k = 1;
    }
}

/// A simulated monitor. See the module documentation.
#[derive(Debug)]
pub struct SimDevice {
    kind: ProtocolKind,
    monitor: Box<dyn Monitor>,
    seed: u64,
    started: bool,
    rebooting_until: Option<Instant>,
    reboot_done: Vec<bool>,
    garbage_next: Vec<u64>,
    /// A header (vigil-line) or boot NULs (Masimo) go before the next frame.
    announce: bool,
    wire: Wire,
}

fn at(d: Duration) -> Instant {
    Instant::ZERO + d
}

impl SimDevice {
    /// A device of `kind` showing a patient that follows `scenario`, with
    /// every random draw from `seed`.
    pub fn new(scenario: &Scenario, kind: ProtocolKind, seed: u64) -> Self {
        let n = scenario.events.len();
        SimDevice {
            kind,
            monitor: kind.monitor(),
            seed,
            started: false,
            rebooting_until: None,
            reboot_done: vec![false; n],
            garbage_next: vec![0; n],
            announce: true,
            wire: Wire {
                patient: Patient::new(scenario, seed),
                events: scenario.events.clone(),
                stream_base: Instant::ZERO,
                stream_k: 0,
                tx: VecDeque::new(),
                stats: DeviceStats::default(),
            },
        }
    }

    /// The protocol spoken.
    pub fn kind(&self) -> ProtocolKind {
        self.kind
    }

    /// The patient shown.
    pub fn patient(&self) -> &Patient {
        &self.wire.patient
    }

    /// What the device did so far.
    pub fn stats(&self) -> DeviceStats {
        self.wire.stats
    }

    /// The Nonin format currently sent (DF2 for non-Nonin devices).
    pub fn nonin_format(&self) -> NoninFormat {
        let monitor: &dyn Any = self.monitor.as_ref();
        monitor
            .downcast_ref::<NoninMonitor>()
            .map_or(NoninFormat::Df2, NoninMonitor::format)
    }

    /// Whether the data cable is out at `t`.
    pub fn unplugged(&self, t: Instant) -> bool {
        self.wire.unplugged(t)
    }

    /// Whether the device is rebooting (deaf and silent) at `t`.
    pub fn rebooting(&self, t: Instant) -> bool {
        self.rebooting_until.is_some_and(|u| t < u)
    }

    /// Time passed: builds everything due at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.started {
            self.begin(now);
        }
        while let Some((t, action)) = self.next_action() {
            if t > now {
                break;
            }
            self.run(t, action);
        }
    }

    /// Bytes from the host arrived at `now`. Runs what was due before them
    /// first, and what they make due at once (answers, a first GE record).
    pub fn handle_bytes(&mut self, now: Instant, bytes: &[u8]) {
        self.handle_timeout(now);
        if self.unplugged(now) || self.rebooting(now) {
            return;
        }
        for &b in bytes {
            self.monitor.handle_host_byte(now, b, &mut self.wire);
        }
        // Whatever the bytes made due now (a GE record) goes out now.
        self.handle_timeout(now);
    }

    /// Appends the next chunk the device sends to `out`; false when there is
    /// nothing to send.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool {
        match self.wire.tx.pop_front() {
            Some(chunk) => {
                self.wire.stats.bytes += chunk.len() as u64;
                out.extend_from_slice(&chunk);
                true
            }
            None => false,
        }
    }

    /// When [`SimDevice::handle_timeout`] wants to be called next
    /// ([`Instant::ZERO`] before the first call: "now").
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.started {
            return Some(Instant::ZERO);
        }
        self.next_action().map(|(t, _)| t)
    }

    // ----- scheduling ------------------------------------------------------

    fn begin(&mut self, now: Instant) {
        self.started = true;
        self.wire.stream_base = now;
        self.wire.stream_k = 0;
        let t = now.since_origin();
        for (i, e) in self.wire.events.iter().enumerate() {
            match e.kind {
                EventKind::Reboot => self.reboot_done[i] = e.start < t,
                EventKind::Garbage { every } if t > e.start => {
                    let since = (t - e.start).as_nanos();
                    let every = every.as_nanos().max(1);
                    self.garbage_next[i] = u64::try_from(since.div_ceil(every)).unwrap_or(u64::MAX);
                }
                _ => {}
            }
        }
    }

    fn stream_time(&self, rate: u64) -> Instant {
        let offset = self.wire.stream_k.saturating_mul(1_000_000_000) / rate;
        Instant::from_nanos(self.wire.stream_base.as_nanos().saturating_add(offset))
    }

    fn garbage_time(&self, i: usize) -> Option<Instant> {
        let e = self.wire.events.get(i)?;
        let EventKind::Garbage { every } = e.kind else {
            return None;
        };
        let j = u32::try_from(self.garbage_next[i]).ok()?;
        let t = e.start + every.checked_mul(j)?;
        (t < e.end()).then(|| at(t))
    }

    fn next_action(&self) -> Option<(Instant, Action)> {
        let mut best: Option<(Instant, Action)> = None;
        let mut offer = |t: Instant, a: Action| {
            if best.is_none_or(|b| (t, a) < b) {
                best = Some((t, a));
            }
        };
        for (i, e) in self.wire.events.iter().enumerate() {
            if e.kind == EventKind::Reboot && !self.reboot_done[i] {
                offer(at(e.start), Action::RebootStart(i));
            }
            if let Some(t) = self.garbage_time(i) {
                offer(t, Action::Garbage(i));
            }
        }
        match self.rebooting_until {
            Some(until) => offer(until, Action::RebootEnd),
            None => {
                if let Some(rate) = self.monitor.stream_rate() {
                    offer(self.stream_time(rate), Action::Stream);
                }
                if let Some(t) = self.monitor.poll_timeout() {
                    offer(t, Action::Protocol);
                }
            }
        }
        best
    }

    fn run(&mut self, t: Instant, action: Action) {
        match action {
            Action::RebootStart(i) => self.reboot(t, i),
            Action::RebootEnd => {
                self.rebooting_until = None;
                self.monitor.power_on(t);
                self.wire.stream_base = t;
                self.wire.stream_k = 0;
            }
            Action::Stream => {
                self.wire.stream_k += 1;
                let mut frame = Vec::with_capacity(256);
                self.build_frame(t, &mut frame);
                self.wire.send_frame(t, frame);
            }
            Action::Protocol => self.monitor.handle_timeout(t, &mut self.wire),
            Action::Garbage(i) => {
                let j = self.garbage_next[i];
                self.garbage_next[i] = j.saturating_add(1);
                let mut r = Rng::derive(self.seed, STREAM_GARBAGE, ((i as u64) << 32) | j);
                let n = 8 + r.below(41) as usize;
                let mut noise = Vec::with_capacity(n);
                r.fill_bytes(&mut noise, n);
                if self.monitor.noise_high_bit() {
                    noise.iter_mut().for_each(|b| *b |= 0x80);
                }
                if self.wire.send(t, noise.clone()) {
                    self.wire.stats.garbage_bytes += noise.len() as u64;
                }
            }
        }
    }

    // ----- output ----------------------------------------------------------

    /// The protocol's frame (line, Masimo line, Nonin packet or frame, GE
    /// record, Philips poll result) for `t`.
    fn build_frame(&mut self, t: Instant, out: &mut Vec<u8>) {
        let snap = self.wire.snapshot(t);
        let fresh = core::mem::take(&mut self.announce);
        self.monitor.frame(t, &snap, fresh, out);
    }

    fn reboot(&mut self, t: Instant, i: usize) {
        self.reboot_done[i] = true;
        if self.rebooting(t) {
            return;
        }
        let Some(e) = self.wire.events.get(i).copied() else {
            return;
        };
        // The frame on the wire when the power goes.
        if self.monitor.sending() {
            let mut frame = Vec::with_capacity(512);
            self.build_frame(t, &mut frame);
            let mut r = Rng::derive(self.seed, STREAM_REBOOT, i as u64);
            let (lo, hi) = (frame.len() / 4, frame.len() * 3 / 4);
            let cut = lo + r.below((hi - lo + 1) as u64) as usize;
            frame.truncate(cut.max(1));
            if self.wire.send(t, frame) {
                self.wire.stats.cut_frames += 1;
            }
        }
        self.rebooting_until = Some(t + e.duration);
        self.monitor.power_off();
        self.announce = true;
    }
}

impl Device for SimDevice {
    fn handle_timeout(&mut self, now: Instant) {
        SimDevice::handle_timeout(self, now)
    }
    fn handle_bytes(&mut self, now: Instant, bytes: &[u8]) {
        SimDevice::handle_bytes(self, now, bytes)
    }
    fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool {
        SimDevice::poll_transmit(self, out)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        SimDevice::poll_timeout(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::open_protocol;
    use crate::protocol::ge::PhdbRequest;
    use crate::protocol::masimo::BOOT_NULS as MASIMO_BOOT_NULS;
    use crate::protocol::philips::{self, Message};
    use crate::protocol::{nonin, Output, Protocol};
    use crate::sim::link::{exchange, next_deadline};
    use crate::vitals::{Measurement, SourceId};

    fn builtin(name: &str) -> Scenario {
        Scenario::builtin(name).unwrap().unwrap()
    }

    fn secs(s: u64) -> Instant {
        Instant::from_secs(s)
    }

    /// Runs a device against the real host-side protocol for `duration`,
    /// stepping time to each next deadline; returns every byte the device
    /// sent with the time it was sent, and the host's decoded outputs.
    fn converse(
        scenario: &Scenario,
        kind: ProtocolKind,
        seed: u64,
        duration: Duration,
    ) -> (Vec<(Instant, Vec<u8>)>, Vec<Output>) {
        let mut device = SimDevice::new(scenario, kind, seed);
        let mut host = open_protocol(kind, SourceId(0));
        let end = at(duration);
        let mut now = Instant::ZERO;
        let mut sent = Vec::new();
        let mut outputs = Vec::new();
        let mut buf = Vec::new();
        loop {
            device.handle_timeout(now);
            host.handle_timeout(now);
            exchange(&mut device, &mut *host, now, &mut buf, |chunk| {
                sent.push((now, core::mem::take(chunk)));
            });
            outputs.extend(std::iter::from_fn(|| host.poll_output()));
            match next_deadline(now, [device.poll_timeout(), host.poll_timeout()]) {
                Some(t) if t < end => now = t,
                _ => break,
            }
        }
        (sent, outputs)
    }

    fn bytes_of(sent: &[(Instant, Vec<u8>)]) -> Vec<u8> {
        sent.iter().flat_map(|(_, b)| b.iter().copied()).collect()
    }

    fn readings(outputs: &[Output]) -> Vec<Measurement> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Reading(r) => Some(r.measurement),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn capnograph_monitors_send_breathing_and_the_host_reads_the_apnoea() {
        let s = builtin("apnoea");
        let e = *s.events_of("apnoea").next().unwrap();
        for kind in [ProtocolKind::Line, ProtocolKind::Ge, ProtocolKind::Philips] {
            let (_, outputs) = converse(&s, kind, 5, e.end() + Duration::from_secs(30));
            let (mut rr, mut et) = (Vec::new(), Vec::new());
            for o in &outputs {
                let Output::Reading(r) = o else { continue };
                let t = r.arrival.since_origin();
                match r.measurement {
                    Measurement::RespRate(s) => rr.push((t, s)),
                    Measurement::EtCo2(s) => et.push((t, s)),
                    _ => {}
                }
            }
            assert!(rr.len() > 20 && et.len() == rr.len(), "{kind:?}: {rr:?}");
            for (t, s) in &rr {
                let v = s
                    .get()
                    .unwrap_or_else(|| panic!("{kind:?}: {s:?} at {t:?}"));
                if e.contains(*t) {
                    assert_eq!(v, 0.0, "{kind:?}: no breath at {t:?}");
                } else {
                    assert!((9.0..=19.0).contains(&v), "{kind:?}: RR {v} at {t:?}");
                }
            }
            assert!(rr.iter().any(|(t, _)| e.contains(*t)), "{kind:?}");
            assert!(rr.iter().any(|(t, _)| *t > e.end()), "{kind:?}");
            for (t, s) in &et {
                let v = s
                    .get()
                    .unwrap_or_else(|| panic!("{kind:?}: {s:?} at {t:?}"));
                // Whole mmHg, through GE's 1/100 % of 760 mmHg.
                assert!((34.5..=41.5).contains(&v), "{kind:?}: etCO2 {v} at {t:?}");
                assert!((v - v.round()).abs() < 0.04, "{kind:?}: {v}");
            }
        }
        // Monitors of the oximeter protocols have no capnograph to send.
        for kind in [ProtocolKind::Masimo, ProtocolKind::NoninDf2] {
            let (_, outputs) = converse(&s, kind, 5, Duration::from_secs(30));
            assert!(readings(&outputs)
                .iter()
                .all(|m| !matches!(m, Measurement::RespRate(_) | Measurement::EtCo2(_))));
        }
    }

    #[test]
    fn same_seed_same_bytes_different_seed_different_bytes() {
        let s = builtin("sensor-problems");
        // 40 simulated minutes cover sensor off, artifact, noise and the reboot.
        let d = Duration::from_secs(40 * 60);
        for kind in ProtocolKind::ALL {
            let (a, _) = converse(&s, kind, 11, d);
            let (b, _) = converse(&s, kind, 11, d);
            let (c, _) = converse(&s, kind, 12, d);
            assert!(!a.is_empty(), "{kind:?} sent nothing");
            assert_eq!(a, b, "{kind:?}: same seed, same bytes at the same times");
            assert_ne!(bytes_of(&a), bytes_of(&c), "{kind:?}: seeds differ");
        }
    }

    #[test]
    fn every_protocol_decodes_to_valid_readings() {
        let s = builtin("typical");
        for kind in ProtocolKind::ALL {
            let (_, outputs) = converse(&s, kind, 5, Duration::from_secs(120));
            let ms = readings(&outputs);
            let spo2: Vec<f32> = ms
                .iter()
                .filter_map(|m| match m {
                    Measurement::SpO2(s) => s.get(),
                    _ => None,
                })
                .collect();
            assert!(spo2.len() >= 10, "{kind:?}: {} SpO2 readings", spo2.len());
            assert!(
                spo2.iter().all(|v| (94.0..=100.0).contains(v)),
                "{kind:?}: {spo2:?}"
            );
            let drops = outputs
                .iter()
                .filter(|o| matches!(o, Output::Dropped(_)))
                .count();
            assert_eq!(drops, 0, "{kind:?}: clean line, no drops");
        }
    }

    #[test]
    fn streaming_protocols_keep_their_own_cadence() {
        let s = builtin("typical");
        let ten_s = Duration::from_secs(10);
        let count = |kind| converse(&s, kind, 1, ten_s).0.len();
        // One line (or DF8 frame) per second, a DF2/DF7 packet every 1/3 s.
        assert_eq!(count(ProtocolKind::Line), 10);
        assert_eq!(count(ProtocolKind::Masimo), 10);
        assert_eq!(count(ProtocolKind::NoninDf8), 10);
        let (df2, _) = converse(&s, ProtocolKind::NoninDf2, 1, ten_s);
        assert_eq!(df2.len(), 30);
        let frames = bytes_of(&df2).len() / 5;
        assert_eq!(frames, 750, "75 frames a second");
        assert_eq!(df2[1].0 - df2[0].0, Duration::from_nanos(333_333_333));
    }

    #[test]
    fn ge_sends_nothing_until_asked_then_at_the_requested_interval() {
        let s = builtin("typical");
        let mut d = SimDevice::new(&s, ProtocolKind::Ge, 1);
        d.handle_timeout(secs(0));
        d.handle_timeout(secs(60));
        let mut buf = Vec::new();
        assert!(
            !d.poll_transmit(&mut buf),
            "a GE monitor waits for a request"
        );
        assert_eq!(d.poll_timeout(), None);

        let mut req = Vec::new();
        PhdbRequest::displayed_every(10).unwrap().encode(&mut req);
        d.handle_bytes(secs(60), &req);
        assert!(d.poll_transmit(&mut buf), "the first record goes at once");
        assert_eq!(d.poll_timeout(), Some(secs(70)));
        d.handle_timeout(secs(95));
        let mut n = 0;
        while d.poll_transmit(&mut buf) {
            n += 1;
        }
        assert_eq!(n, 3, "at 70, 80 and 90 s");

        req.clear();
        PhdbRequest::stop_displayed().encode(&mut req);
        d.handle_bytes(secs(96), &req);
        d.handle_timeout(secs(200));
        assert!(!d.poll_transmit(&mut buf));

        req.clear();
        PhdbRequest::displayed_once().encode(&mut req);
        d.handle_bytes(secs(201), &req);
        d.handle_timeout(secs(400));
        assert!(d.poll_transmit(&mut buf));
        assert!(!d.poll_transmit(&mut buf), "once means once");
        assert_eq!(d.stats().host_messages, 3);
    }

    #[test]
    fn ge_request_parser_reads_the_spec_vector() {
        // "request displayed values every 10 s" from the interface spec.
        let hex = "31 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 ff 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01 0a 00 0e 00 00 00 00 00 49";
        let frame: Vec<u8> = hex
            .split_whitespace()
            .map(|h| u8::from_str_radix(h, 16).unwrap())
            .collect();
        assert_eq!(
            parse_ge_request(&frame),
            Some(PhdbRequest::displayed_every(10).unwrap())
        );
        let mut bad = frame.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(parse_ge_request(&bad), None, "checksum");
    }

    #[test]
    fn philips_sends_nothing_before_association_and_drops_it_without_polls() {
        let s = builtin("typical");
        let mut d = SimDevice::new(&s, ProtocolKind::Philips, 1);
        let mut buf = Vec::new();
        d.handle_timeout(secs(30));
        let mut poll = Vec::new();
        philips::encode_poll_request(1, 1, &mut poll);
        d.handle_bytes(secs(31), &poll);
        assert!(!d.poll_transmit(&mut buf), "no association, no data");

        // The real host associates and polls; the device answers every poll.
        let (sent, outputs) = converse(&s, ProtocolKind::Philips, 1, Duration::from_secs(90));
        assert!(sent.len() >= 88, "{} frames", sent.len());
        let ms = readings(&outputs);
        assert!(ms
            .iter()
            .any(|m| matches!(m, Measurement::HeartRate(s) if s.get().is_some())));
        assert!(ms.iter().any(|m| matches!(m, Measurement::Nibp(_))));
        // As a real monitor: the absolute time of every result unspecified,
        // so the device time comes from the MDS Create's clock and the
        // relative time; one set of readings per linked result.
        let patient = Patient::new(&s, 1);
        for o in &outputs {
            if let Output::Reading(r) = o {
                let want = patient.snapshot(r.arrival.since_origin()).device_time;
                assert_eq!(r.device_time, Some(want), "{r:?}");
            }
        }
        let polls = ms
            .iter()
            .filter(|m| matches!(m, Measurement::HeartRate(_)))
            .count();
        assert!((85..=91).contains(&polls), "{polls} heart rates in 90 s");
        let frames: Vec<Message> = sent.iter().flat_map(|(_, b)| parse_frames(b)).collect();
        assert!(matches!(
            frames[..2],
            [Message::AssociationAccept, Message::MdsCreate { info, .. }]
                if info.model.as_str() == PHILIPS_MODEL && info.rel_time.is_some()
        ));

        // Associated, then silence from the host: dropped after the keep-alive.
        let mut d = SimDevice::new(&s, ProtocolKind::Philips, 1);
        let mut host = philips::IntelliVueHost::new(SourceId(0));
        host.handle_timeout(secs(1));
        let mut req = Vec::new();
        while host.poll_transmit(&mut req) {}
        d.handle_bytes(secs(1), &req);
        while d.poll_transmit(&mut buf) {}
        host.handle_bytes(secs(1), &buf);
        req.clear();
        while host.poll_transmit(&mut req) {}
        d.handle_bytes(secs(1), &req);
        buf.clear();
        while d.poll_transmit(&mut buf) {}
        let answer = parse_frames(&buf);
        assert_eq!(
            answer.len(),
            4,
            "the answers to the first polls: {answer:?}"
        );
        assert!(matches!(
            answer[..],
            [
                Message::PollResult {
                    linked: Some(philips::LinkedState::First),
                    ..
                },
                Message::PollResult {
                    linked: Some(philips::LinkedState::Last),
                    ..
                },
                Message::PollResult { linked: None, .. },
                Message::PollResult {
                    object: philips::NOM_MOC_VMO_AL_MON,
                    ..
                },
            ]
        ));
        assert_eq!(d.poll_timeout(), Some(secs(1) + PHILIPS_KEEPALIVE));
        buf.clear();
        d.handle_timeout(secs(1) + PHILIPS_KEEPALIVE);
        while d.poll_transmit(&mut buf) {}
        assert_eq!(parse_frames(&buf), vec![Message::Abort]);
    }

    /// Every Philips message in a monitor-side byte stream.
    fn parse_frames(bytes: &[u8]) -> Vec<Message> {
        let mut out = Vec::new();
        for chunk in bytes.split(|&b| b == philips::EOF) {
            let Some(pos) = chunk.iter().position(|&b| b == philips::BOF) else {
                continue;
            };
            let mut frame = Vec::new();
            let mut esc = false;
            for &b in &chunk[pos + 1..] {
                if b == 0x7D {
                    esc = true;
                } else {
                    frame.push(if esc { b ^ 0x20 } else { b });
                    esc = false;
                }
            }
            out.extend(parse_philips_frame(&frame));
        }
        out
    }

    #[test]
    fn nonin_answers_format_select_and_switches() {
        let s = builtin("typical");
        let mut d = SimDevice::new(&s, ProtocolKind::NoninDf2, 1);
        d.handle_timeout(secs(1));
        let mut buf = Vec::new();
        while d.poll_transmit(&mut buf) {}
        d.handle_bytes(secs(1), &nonin::format_select_request(NoninFormat::Df8));
        buf.clear();
        assert!(d.poll_transmit(&mut buf));
        assert_eq!(buf, [nonin::ACK]);
        assert_eq!(d.nonin_format(), NoninFormat::Df8);
        buf.clear();
        d.handle_timeout(secs(3));
        while d.poll_transmit(&mut buf) {}
        assert_eq!(buf.len(), 8, "two DF8 frames in the next two seconds");
        // An unsupported format is refused.
        let mut req = nonin::format_select_request(NoninFormat::Df2);
        req[4] = 0x0D;
        d.handle_bytes(secs(3), &req);
        buf.clear();
        assert!(d.poll_transmit(&mut buf));
        assert_eq!(buf, [nonin::NAK]);
    }

    #[test]
    fn unplugged_cable_sends_nothing_and_hears_nothing() {
        let s = builtin("comm-loss");
        let e = *s.events_of("cable-unplugged").next().unwrap();
        let (sent, _) = converse(&s, ProtocolKind::Line, 1, e.end() + Duration::from_secs(30));
        assert!(sent.iter().all(|(t, _)| !e.contains(t.since_origin())));
        let last_before = sent.iter().rfind(|(t, _)| at(e.start) > *t).unwrap().0;
        let first_after = sent.iter().find(|(t, _)| *t >= at(e.end())).unwrap().0;
        assert!(at(e.start) - last_before <= Duration::from_secs(1));
        assert_eq!(first_after, at(e.end()), "data flows again at once");

        // A GE request sent while unplugged is lost: the monitor stays quiet.
        let mut d = SimDevice::new(&s, ProtocolKind::Ge, 1);
        let mut req = Vec::new();
        PhdbRequest::displayed_every(5).unwrap().encode(&mut req);
        d.handle_bytes(at(e.start + Duration::from_secs(1)), &req);
        d.handle_timeout(at(e.end() + Duration::from_secs(60)));
        assert!(!d.poll_transmit(&mut Vec::new()));
    }

    #[test]
    fn reboot_cuts_a_frame_then_falls_silent_then_starts_again() {
        let s = builtin("sensor-problems");
        let e = *s.events_of("reboot").next().unwrap();
        for kind in [ProtocolKind::Line, ProtocolKind::Masimo, ProtocolKind::Ge] {
            let (sent, outputs) = converse(&s, kind, 3, e.end() + Duration::from_secs(60));
            let cut = sent
                .iter()
                .find(|(t, _)| *t == at(e.start))
                .expect("a cut frame");
            assert!(
                sent.iter()
                    .all(|(t, _)| *t <= at(e.start) || *t >= at(e.end())),
                "{kind:?}: silent while rebooting"
            );
            let after: Vec<_> = sent.iter().filter(|(t, _)| *t >= at(e.end())).collect();
            assert!(!after.is_empty(), "{kind:?}: frames again after the reboot");
            // The host dropped the cut frame as truncated or malformed.
            assert!(
                outputs.iter().any(|o| matches!(o, Output::Dropped(_))),
                "{kind:?}: the cut frame {:?} was noticed",
                cut.1.len()
            );
            if kind == ProtocolKind::Line {
                assert!(after[0].1.starts_with(b"vigil-line 1\n"));
            }
            if kind == ProtocolKind::Masimo {
                assert!(after[0].1.starts_with(&[0, 0, 0]));
            }
        }
    }

    #[test]
    fn garbage_is_injected_between_frames_and_df8_noise_has_bit_7_set() {
        let s = builtin("sensor-problems");
        let e = *s.events_of("garbage").next().unwrap();
        let mut d = SimDevice::new(&s, ProtocolKind::NoninDf8, 2);
        d.handle_timeout(at(e.start - Duration::from_secs(1)));
        while d.poll_transmit(&mut Vec::new()) {}
        let frames_before = d.stats().frames;
        d.handle_timeout(at(e.end()));
        let mut buf = Vec::new();
        while d.poll_transmit(&mut buf) {}
        let st = d.stats();
        let bursts = (e.duration.as_millis() / 250) as u64;
        assert!(st.garbage_bytes >= 8 * bursts, "{st:?}");
        // DF8 frames are 4 bytes; everything else is noise with bit 7 set.
        let frames = st.frames - frames_before;
        assert_eq!(frames, e.duration.as_secs() + 1);
        assert_eq!(buf.len() as u64 - 4 * frames, st.garbage_bytes);
        let noise_bits = buf.iter().filter(|b| **b & 0x80 != 0).count() as u64;
        assert!(noise_bits >= st.garbage_bytes + frames);
        let (_, outputs) = converse(
            &s,
            ProtocolKind::NoninDf8,
            2,
            e.end() + Duration::from_secs(5),
        );
        for m in readings(&outputs) {
            if let Measurement::SpO2(s) = m {
                assert!(s.get().is_none_or(|v| v >= 94.0), "noise decoded as {s:?}");
            }
        }
    }

    #[test]
    fn a_device_started_late_continues_the_same_session() {
        let s = builtin("typical");
        let (early, _) = converse(&s, ProtocolKind::Masimo, 9, Duration::from_secs(700));
        let mut late = SimDevice::new(&s, ProtocolKind::Masimo, 9);
        late.handle_timeout(secs(600));
        let mut buf = Vec::new();
        assert!(late.poll_transmit(&mut buf));
        let line_600 = &early.iter().find(|(t, _)| *t == secs(600)).unwrap().1;
        // Same line, after the boot NULs of a device that just started.
        assert_eq!(&buf[MASIMO_BOOT_NULS..], line_600.as_slice());
    }
}
