//! The pure pipeline from bytes to events: one protocol decoder per source,
//! merged into one patient stream, feeding the alarm engine.
//!
//! Its inputs are exactly what a recording stores: bytes per source with
//! their arrival time, link state changes, commands and system conditions.
//! The live daemon and `vigil replay` both drive a `Pipeline`, so a recorded
//! session replays to the same events.
//!
//! Besides decoding, it watches each source: a source from which no frame has
//! decoded for longer than its timeout (silence, garbage only) or whose link
//! went down (hang-up, TCP reset) is reported to the engine as disconnected;
//! the alarm clears when frames decode again. Like the engine, it stamps
//! timer-driven inputs with their deadline, so the outputs depend only on the
//! inputs.
//!
//! Depends on [`crate::engine`], [`crate::protocol`] and [`crate::vitals`]. No IO.

use core::time::Duration;

use crate::engine::{
    Command, CommandError, DeviceInput, Engine, EngineConfig, Event, SystemCondition,
};
use crate::protocol::{DecodeStats, Output, Protocol};
use crate::time::Instant;
use crate::vitals::{Reading, SourceId, Vital};

/// A protocol endpoint the pipeline can own and move across threads.
pub type BoxedProtocol = Box<dyn Protocol + Send>;

/// One source as the pipeline sees it.
pub struct SourceSpec {
    /// Its decoder (and, for talking protocols, its host-side state machine).
    pub protocol: BoxedProtocol,
    /// No decoded frame for longer than this means disconnected.
    pub timeout: Duration,
}

struct SourceSlot {
    protocol: BoxedProtocol,
    timeout: Duration,
    /// When a frame last decoded (or the pipeline started).
    last_data: Instant,
    /// Whether the engine was told this source is disconnected.
    down: bool,
    /// Counters as last reported to the engine.
    reported: DecodeStats,
}

/// The pipeline. See the module documentation.
pub struct Pipeline {
    engine: Engine,
    sources: Vec<SourceSlot>,
    /// For each vital, source indices in order of preference; empty = any.
    preference: [Vec<u16>; Vital::COUNT],
    /// For each vital, the last time each source gave a valid value.
    last_valid: Vec<[Option<Instant>; Vital::COUNT]>,
}

impl Pipeline {
    /// A pipeline starting at `start`, with one decoder per source
    /// (index = `SourceId`).
    pub fn new(start: Instant, engine: EngineConfig, sources: Vec<SourceSpec>) -> Self {
        let n = sources.len();
        let mut engine = Engine::new(engine);
        engine.handle_timeout(start);
        Pipeline {
            engine,
            sources: sources
                .into_iter()
                .map(|s| SourceSlot {
                    protocol: s.protocol,
                    timeout: s.timeout,
                    last_data: start,
                    down: false,
                    reported: DecodeStats::default(),
                })
                .collect(),
            preference: Default::default(),
            last_valid: vec![[None; Vital::COUNT]; n],
        }
    }

    /// Sets which sources may supply a vital, most preferred first. A reading
    /// from a less preferred source is dropped while a more preferred one has
    /// given a valid value of that vital within its stale timeout.
    pub fn set_preference(&mut self, vital: Vital, sources: Vec<SourceId>) {
        self.preference[vital.index()] = sources.into_iter().map(|s| s.0).collect();
    }

    /// Applies new alarm settings (see [`Engine::reconfigure`]).
    pub fn reconfigure(&mut self, now: Instant, engine: EngineConfig) {
        self.advance(now);
        self.engine.reconfigure(now, engine);
    }

    /// The engine (for status and snapshots).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Cumulative decoding counters of a source.
    pub fn source_stats(&self, source: SourceId) -> Option<DecodeStats> {
        self.sources.get(source.index()).map(|s| s.protocol.stats())
    }

    /// Whether a source is currently reported disconnected.
    pub fn source_down(&self, source: SourceId) -> Option<bool> {
        self.sources.get(source.index()).map(|s| s.down)
    }

    /// Bytes arrived from a source.
    pub fn handle_bytes(&mut self, now: Instant, source: SourceId, bytes: &[u8]) {
        self.advance(now);
        let Some(slot) = self.sources.get_mut(source.index()) else {
            return;
        };
        slot.protocol.handle_bytes(now, bytes);
        self.drain_source(now, source);
    }

    /// A source's link went up or down (opened, hung up, reset).
    pub fn handle_link(&mut self, now: Instant, source: SourceId, up: bool) {
        self.advance(now);
        let Some(slot) = self.sources.get_mut(source.index()) else {
            return;
        };
        if !up && !slot.down {
            slot.down = true;
            self.engine
                .handle_device(now, source, DeviceInput::Disconnected);
        }
        if up {
            // Data must flow before the source counts as connected again;
            // the silence timer restarts from the reconnection.
            slot.last_data = now;
        }
    }

    /// A command from a display or an operator.
    pub fn handle_command(&mut self, now: Instant, command: Command) -> Result<(), CommandError> {
        self.advance(now);
        self.engine.handle_command(now, command)
    }

    /// A problem of vigil itself began or ended.
    pub fn handle_system(&mut self, now: Instant, condition: SystemCondition, present: bool) {
        self.advance(now);
        self.engine.handle_system(now, condition, present);
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance_inclusive(now);
        for i in 0..self.sources.len() {
            let due = self.sources[i]
                .protocol
                .poll_timeout()
                .is_some_and(|t| t <= now);
            if due {
                self.sources[i].protocol.handle_timeout(now);
                self.drain_source(now, SourceId(i as u16));
            }
        }
        self.engine.handle_timeout(now);
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.engine.poll_event()
    }

    /// Appends the next message for a source's device to `out`.
    pub fn poll_transmit(&mut self, source: SourceId, out: &mut Vec<u8>) -> bool {
        self.sources
            .get_mut(source.index())
            .is_some_and(|s| s.protocol.poll_transmit(out))
    }

    /// When [`Pipeline::handle_timeout`] wants to be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.engine.poll_timeout();
        for s in &self.sources {
            for candidate in [
                s.protocol.poll_timeout(),
                (!s.down).then(|| s.last_data + s.timeout),
            ]
            .into_iter()
            .flatten()
            {
                t = Some(t.map_or(candidate, |x| x.min(candidate)));
            }
        }
        t
    }

    /// Silence deadlines strictly before `now`, in deadline order.
    fn advance(&mut self, now: Instant) {
        self.silence(now, false);
    }

    fn advance_inclusive(&mut self, now: Instant) {
        self.silence(now, true);
    }

    fn silence(&mut self, now: Instant, inclusive: bool) {
        loop {
            let next = self
                .sources
                .iter()
                .enumerate()
                .filter(|(_, s)| !s.down)
                .map(|(i, s)| (s.last_data + s.timeout, i))
                .min();
            match next {
                Some((t, i)) if t < now || (inclusive && t == now) => {
                    self.sources[i].down = true;
                    self.engine
                        .handle_device(t, SourceId(i as u16), DeviceInput::Disconnected);
                }
                _ => return,
            }
        }
    }

    fn drain_source(&mut self, now: Instant, source: SourceId) {
        let i = source.index();
        while let Some(out) = self.sources[i].protocol.poll_output() {
            match out {
                Output::Reading(mut r) => {
                    r.source = source;
                    if self.accept(&r) {
                        self.engine.handle_reading(now, r);
                    }
                }
                Output::Dropped(_) => {}
                Output::Note(note) => {
                    self.engine
                        .handle_device(now, source, DeviceInput::Note(note))
                }
            }
        }
        let stats = self.sources[i].protocol.stats();
        let slot = &mut self.sources[i];
        let good = stats.frames_ok.saturating_sub(slot.reported.frames_ok);
        let dropped = stats
            .dropped_total()
            .saturating_sub(slot.reported.dropped_total());
        slot.reported = stats;
        if good > 0 {
            slot.last_data = now;
            if slot.down {
                slot.down = false;
                self.engine
                    .handle_device(now, source, DeviceInput::Connected);
            }
        }
        if good > 0 || dropped > 0 {
            self.engine.handle_device(
                now,
                source,
                DeviceInput::Frames {
                    good: u32::try_from(good).unwrap_or(u32::MAX),
                    dropped: u32::try_from(dropped).unwrap_or(u32::MAX),
                },
            );
        }
    }

    /// Source preference: whether a reading may reach the engine.
    fn accept(&mut self, r: &Reading) -> bool {
        let src = r.source.0;
        let vital = match r.measurement.continuous() {
            Some((v, _)) => v,
            None => Vital::NibpSystolic,
        };
        let valid = match r.measurement {
            crate::vitals::Measurement::Nibp(n) => n.systolic.validity.is_valid(),
            m => m.continuous().is_some_and(|(_, s)| s.validity.is_valid()),
        };
        if valid {
            self.last_valid[r.source.index()][vital.index()] = Some(r.arrival);
        }
        let pref = &self.preference[vital.index()];
        if pref.is_empty() {
            return true;
        }
        let Some(rank) = pref.iter().position(|&s| s == src) else {
            return false;
        };
        let window = self.engine.config().rules(vital).stale_after;
        let window = if vital.is_nibp() {
            let n = self.engine.config().nibp;
            n.cycle + n.grace
        } else {
            window
        };
        // Refuse it while a better source is delivering valid data.
        !pref[..rank].iter().any(|&better| {
            self.last_valid
                .get(better as usize)
                .and_then(|v| v[vital.index()])
                .is_some_and(|t| r.arrival - t <= window)
        })
    }
}

/// The host-side protocol endpoint for a configured protocol.
pub fn open_protocol(kind: crate::config::ProtocolKind, source: SourceId) -> BoxedProtocol {
    use crate::config::ProtocolKind as K;
    use crate::protocol::{ge, line, masimo, nonin, philips};
    match kind {
        K::Ge => Box::new(
            ge::GeS5::new(source, ge::MIN_DISPLAYED_INTERVAL_S)
                .expect("the minimum interval is a valid request"),
        ),
        K::Philips => Box::new(philips::IntelliVueHost::new(source)),
        K::Masimo => Box::new(masimo::Masimo::new(source)),
        K::NoninDf2 => Box::new(nonin::Nonin::new(source, nonin::NoninFormat::Df2)),
        K::NoninDf7 => Box::new(nonin::Nonin::new(source, nonin::NoninFormat::Df7)),
        K::NoninDf8 => Box::new(nonin::Nonin::new(source, nonin::NoninFormat::Df8)),
        K::Line => Box::new(line::VigilLine::new(source)),
    }
}
