//! The protocol registry: the one place a protocol's identity lives.
//!
//! A protocol is one module in `protocol/` (its decoder, its encoders and
//! its monitor side for simulations) plus one [`Entry`] in [`REGISTRY`]:
//! the name the configuration uses, the monitor's usual serial settings, the
//! host-side decoder and the simulated monitor. The configuration, the
//! pipeline, the simulated devices, `vigil-sim` and the golden tests all go
//! through the registry, so nothing else matches on [`ProtocolKind`].
//!
//! Adding a protocol: write `protocol/<name>.rs` with a [`Protocol`] (the
//! host side) and a [`Monitor`] (the device side), add its variant to
//! [`ProtocolKind`] and its entry to [`REGISTRY`] (the compiler and a test
//! keep the two in step).
//!
//! [`Protocol`]: super::Protocol

use core::fmt;
use std::any::Any;

use super::{ge, line, masimo, nonin, philips, AgeLimits, Protocol, Snapshot};
use crate::time::Instant;
use crate::vitals::SourceId;

/// A host-side protocol endpoint behind a pointer (the pipeline holds one
/// per source).
pub type BoxedProtocol = Box<dyn Protocol + Send>;

/// The serial line settings of a source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SerialSettings {
    /// Baud rate.
    pub baud: u32,
    /// Parity: `none`, `even` or `odd`.
    pub parity: Parity,
    /// Stop bits: 1 or 2.
    pub stop_bits: u8,
    /// RTS/CTS hardware flow control.
    pub rts_cts: bool,
}

/// Serial parity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parity {
    /// No parity bit.
    None,
    /// Even parity.
    Even,
    /// Odd parity.
    Odd,
}

impl Parity {
    /// Stable short name.
    pub const fn key(self) -> &'static str {
        match self {
            Parity::None => "none",
            Parity::Even => "even",
            Parity::Odd => "odd",
        }
    }
}

/// Which protocol a source speaks: an index into [`REGISTRY`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolKind {
    /// GE/Datex-Ohmeda S/5 Computer Interface.
    Ge,
    /// Philips IntelliVue Data Export (MIB/RS232).
    Philips,
    /// Masimo ASCII output.
    Masimo,
    /// Nonin Data Format 2.
    NoninDf2,
    /// Nonin Data Format 7.
    NoninDf7,
    /// Nonin Data Format 8.
    NoninDf8,
    /// vigil's own line protocol.
    Line,
}

/// One protocol's identity.
pub struct Entry {
    /// Which protocol (its position in [`REGISTRY`]).
    pub kind: ProtocolKind,
    /// The name used in the configuration (`protocol = "ge-s5"`).
    pub key: &'static str,
    /// The monitor's usual serial settings (protocols.md).
    pub serial: SerialSettings,
    /// The host side: the decoder (and, for talking protocols, what it
    /// asks the monitor); decoders that see device time stamps take values
    /// older than the age limits as old measurements.
    pub open: fn(SourceId, AgeLimits) -> BoxedProtocol,
    /// The monitor side, for simulated devices.
    pub monitor: fn() -> Box<dyn Monitor>,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("kind", &self.kind)
            .field("key", &self.key)
            .field("serial", &self.serial)
            .finish_non_exhaustive()
    }
}

// Each protocol must sit at its kind's index (checked when compiling).
const _: () = {
    let mut i = 0;
    while i < REGISTRY.len() {
        assert!(
            REGISTRY[i].kind as usize == i,
            "REGISTRY is not in ProtocolKind order"
        );
        i += 1;
    }
};

const SERIAL_9600: SerialSettings = SerialSettings {
    baud: 9_600,
    parity: Parity::None,
    stop_bits: 1,
    rts_cts: false,
};

/// Every protocol, in [`ProtocolKind`] order.
pub const REGISTRY: [Entry; 7] = [
    Entry {
        kind: ProtocolKind::Ge,
        key: "ge-s5",
        serial: SerialSettings {
            baud: 19_200,
            parity: Parity::Even,
            stop_bits: 1,
            rts_cts: true,
        },
        open: ge::open,
        monitor: ge::GeMonitor::boxed,
    },
    Entry {
        kind: ProtocolKind::Philips,
        key: "philips-intellivue",
        serial: SerialSettings {
            baud: 115_200,
            parity: Parity::None,
            stop_bits: 1,
            rts_cts: false,
        },
        open: philips::open,
        monitor: philips::PhilipsMonitor::boxed,
    },
    Entry {
        kind: ProtocolKind::Masimo,
        key: "masimo",
        serial: SERIAL_9600,
        open: masimo::open,
        monitor: masimo::monitor,
    },
    Entry {
        kind: ProtocolKind::NoninDf2,
        key: "nonin-df2",
        serial: SERIAL_9600,
        open: nonin::open_df2,
        monitor: nonin::NoninMonitor::boxed_df2,
    },
    Entry {
        kind: ProtocolKind::NoninDf7,
        key: "nonin-df7",
        serial: SERIAL_9600,
        open: nonin::open_df7,
        monitor: nonin::NoninMonitor::boxed_df7,
    },
    Entry {
        kind: ProtocolKind::NoninDf8,
        key: "nonin-df8",
        serial: SERIAL_9600,
        open: nonin::open_df8,
        monitor: nonin::NoninMonitor::boxed_df8,
    },
    Entry {
        kind: ProtocolKind::Line,
        key: "vigil-line",
        serial: SERIAL_9600,
        open: line::open,
        monitor: line::monitor,
    },
];

impl ProtocolKind {
    /// Every protocol.
    pub const ALL: [ProtocolKind; REGISTRY.len()] = {
        let mut all = [ProtocolKind::Ge; REGISTRY.len()];
        let mut i = 0;
        while i < REGISTRY.len() {
            all[i] = REGISTRY[i].kind;
            i += 1;
        }
        all
    };

    /// The protocol's registry entry.
    pub const fn entry(self) -> &'static Entry {
        &REGISTRY[self as usize]
    }

    /// The name used in the configuration.
    pub const fn key(self) -> &'static str {
        self.entry().key
    }

    /// The protocol's usual serial settings (protocols.md).
    pub const fn default_serial(self) -> SerialSettings {
        let s = &self.entry().serial;
        SerialSettings {
            baud: s.baud,
            parity: s.parity,
            stop_bits: s.stop_bits,
            rts_cts: s.rts_cts,
        }
    }

    /// The host-side endpoint for a source speaking this protocol.
    pub fn open(self, source: SourceId, ages: AgeLimits) -> BoxedProtocol {
        (self.entry().open)(source, ages)
    }

    /// A fresh monitor side, for a simulated device.
    pub fn monitor(self) -> Box<dyn Monitor> {
        (self.entry().monitor)()
    }
}

/// The longest host frame a monitor side buffers.
pub(crate) const MAX_HOST_FRAME: usize = 4096;

/// A host frame being assembled by a monitor side (GE, Philips).
#[derive(Debug, Default)]
pub(crate) struct HostRx {
    pub(crate) buf: Vec<u8>,
    pub(crate) in_frame: bool,
    pub(crate) escaped: bool,
}

impl HostRx {
    pub(crate) fn reset(&mut self) {
        self.buf.clear();
        self.in_frame = false;
        self.escaped = false;
    }
}

/// What a [`Monitor`] can do to the simulated device it runs in
/// (`sim::device::SimDevice`): read the patient, send, count.
pub trait MonitorIo {
    /// What the patient shows at `t`.
    fn snapshot(&self, t: Instant) -> Snapshot;
    /// Sends a whole frame (an answer, a scheduled record) at `t`, unless
    /// the cable is out.
    fn send_frame(&mut self, t: Instant, frame: Vec<u8>);
    /// A host message was understood (a request, a poll, a format select).
    fn host_message(&mut self);
    /// The streaming cadence restarts at `t`: the next frame goes out one
    /// period later (a Nonin format switch).
    fn restart_stream(&mut self, t: Instant);
}

/// The monitor side of a protocol that streams one text snapshot a second
/// and answers nothing (vigil-line, Masimo).
#[derive(Debug)]
pub struct TextStream {
    /// What the monitor sends first after power-on (a header, boot bytes).
    start: fn(&mut Vec<u8>),
    /// One snapshot.
    encode: fn(&Snapshot, &mut Vec<u8>),
}

impl TextStream {
    /// A monitor side that sends `start` once after power-on, then one
    /// `encode`d snapshot a second.
    pub fn boxed(start: fn(&mut Vec<u8>), encode: fn(&Snapshot, &mut Vec<u8>)) -> Box<dyn Monitor> {
        Box::new(TextStream { start, encode })
    }
}

impl Monitor for TextStream {
    fn stream_rate(&self) -> Option<u64> {
        Some(1)
    }

    fn frame(&mut self, _t: Instant, snap: &Snapshot, fresh: bool, out: &mut Vec<u8>) {
        if fresh {
            (self.start)(out);
        }
        (self.encode)(snap, out);
    }
}

/// The monitor's side of a protocol, for simulated devices: what it sends
/// and how it answers the host. Sans-IO like the decoders: time comes in,
/// bytes go out through [`MonitorIo`]. The device around it owns the
/// patient, the scripted equipment events (cable, noise, reboots) and the
/// streaming cadence.
pub trait Monitor: Any + fmt::Debug + Send {
    /// Frames per second of a streaming protocol; `None` for one that talks
    /// only when asked (GE, Philips).
    fn stream_rate(&self) -> Option<u64>;

    /// Appends the frame showing `snap` at `t`: the streaming frame, or
    /// the frame on the wire when a reboot cuts it. `fresh`: the first
    /// frame after power-on (a header, boot bytes).
    fn frame(&mut self, t: Instant, snap: &Snapshot, fresh: bool, out: &mut Vec<u8>);

    /// Whether a frame is on the wire (a reboot cuts it off).
    fn sending(&self) -> bool {
        true
    }

    /// One byte from the host at `now`.
    fn handle_host_byte(&mut self, now: Instant, byte: u8, io: &mut dyn MonitorIo) {
        let _ = (now, byte, io);
    }

    /// The protocol's own next deadline (a requested record, an association
    /// timeout), if any.
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// The deadline from [`Monitor::poll_timeout`] came at `t`.
    fn handle_timeout(&mut self, t: Instant, io: &mut dyn MonitorIo) {
        let _ = (t, io);
    }

    /// Power lost: forget requests, associations and half-received frames.
    fn power_off(&mut self) {}

    /// Power back at `t` (clocks that count from power-on restart).
    fn power_on(&mut self, t: Instant) {
        let _ = t;
    }

    /// Whether line noise must have bit 7 set (a format without a checksum,
    /// where random 7-bit bytes could decode as a plausible reading).
    fn noise_high_bit(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_sit_at_their_kinds_index_with_unique_keys() {
        for (i, e) in REGISTRY.iter().enumerate() {
            assert_eq!(e.kind as usize, i, "{}", e.key);
            assert_eq!(ProtocolKind::ALL[i], e.kind);
            assert_eq!(e.kind.key(), e.key);
        }
        let mut keys: Vec<_> = REGISTRY.iter().map(|e| e.key).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), REGISTRY.len());
    }
}
