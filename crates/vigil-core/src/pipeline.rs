//! The pure pipeline from bytes to events: one protocol decoder per source,
//! merged into one patient stream, feeding the alarm engine.
//!
//! Its inputs are exactly what a recording stores: bytes per source with
//! their arrival time, link state changes, commands and system conditions.
//! The live daemon and `vigil replay` both drive a `Pipeline`, so a recorded
//! session replays to the same events.
//!
//! Writes: what a talking protocol wants to send is taken from it right
//! after every input that reached it, but only while the source's link is
//! up, and kept in a small per-source outbox for the IO layer
//! ([`Pipeline::poll_transmit`]). So a request queued before the link opened
//! waits for it, and the protocol's state never depends on whether (or when)
//! the IO layer drains the outbox: replay, which writes nothing, leaves every
//! protocol in the state live left it in.
//!
//! Besides decoding, it watches each source. Only a valid reading counts as
//! data: a source that gave none for its timeout is blind, whether nothing
//! arrives or bytes arrive that never become a valid reading, and the
//! pipeline tells the engine which ([`SourceHealth`]): link down or silent
//! (`disconnected`), a monitor that is not associated (`not_associated`),
//! unreadable bytes, frames without readings or invalid values only
//! (`no_valid_data`); invalid values only raise their vitals' own technical
//! alarms. The verdict looks at what arrived lately (within half the
//! timeout), so it follows the source as it changes, and a valid reading
//! ends it at once. After start-up and after the link comes up again the
//! source has one timeout of grace to deliver; a reason that would replace
//! one source alarm by another must hold for a timeout first, so a monitor
//! coming back (silent, then associating, then data) gives one alarm. Like the
//! engine, it stamps timer-driven inputs with their deadline, so the outputs
//! depend only on the inputs.
//!
//! The one way in is [`Pipeline::feed`]: it writes what it is fed to a
//! [`Journal`] (the session recording live, the records an import builds)
//! and then hands it on, so what is recorded is what the pipeline saw. An
//! input and new alarm settings (a reload) both go this way; replay feeds
//! the recording back with no journal.
//!
//! Depends on [`crate::engine`], [`crate::protocol`] and [`crate::vitals`]. No IO.

use core::time::Duration;
use std::collections::VecDeque;

use crate::engine::{
    Command, CommandError, DeviceInput, Engine, EngineConfig, Event, SourceHealth, SystemCondition,
};
use crate::protocol::{
    AgeLimits, AssociationProblem, DecodeStats, DeviceNote, Output, ProtocolKind,
};
use crate::time::Instant;
use crate::vitals::{Reading, SourceId, Vital};

/// One input of the pipeline, as recorded and replayed. Timer ticks are
/// inputs too: talking protocols (Philips polls, GE re-requests) act on
/// them, so replay calls `handle_timeout` at the very instants live did.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// Bytes from a source.
    Bytes {
        /// Which source.
        source: SourceId,
        /// The bytes.
        data: Vec<u8>,
    },
    /// A source's link went up or down.
    Link {
        /// Which source.
        source: SourceId,
        /// Up (opened) or down (hung up).
        up: bool,
    },
    /// A command.
    Command(Command),
    /// A system condition began or ended.
    System {
        /// Which.
        condition: SystemCondition,
        /// Began (true) or ended.
        present: bool,
    },
    /// The driver ran `handle_timeout`.
    Tick,
}

pub use crate::protocol::BoxedProtocol;

/// Settings a session can switch to while it runs (a reload): the daemon's
/// whole configuration, of which the pipeline applies the alarm settings.
pub trait Settings {
    /// The alarm settings to apply.
    fn engine(&self) -> &EngineConfig;
}

/// What a session is fed: one input, or new settings.
#[derive(Debug)]
pub enum Feed<'a, S> {
    /// An input (bytes, a link change, a command, a condition, a tick).
    Input(&'a Input),
    /// New settings take effect (a reload).
    Settings(&'a S),
}

/// Where [`Pipeline::feed`] writes down what it is fed, in order, before
/// the pipeline sees it.
pub trait Journal<S> {
    /// One input at `at`.
    fn input(&mut self, at: Instant, input: &Input);
    /// New settings took effect at `at`.
    fn settings(&mut self, at: Instant, settings: &S);
}

/// No journal (replay: the recording is what is being fed).
impl<S> Journal<S> for () {
    fn input(&mut self, _at: Instant, _input: &Input) {}
    fn settings(&mut self, _at: Instant, _settings: &S) {}
}

/// One source as the pipeline sees it.
pub struct SourceSpec {
    /// Its decoder (and, for talking protocols, its host-side state machine).
    pub protocol: BoxedProtocol,
    /// No valid reading for longer than this means the source is blind.
    pub timeout: Duration,
}

struct SourceSlot {
    protocol: BoxedProtocol,
    timeout: Duration,
    /// What the engine was last told the source delivers.
    health: SourceHealth,
    /// When `health` was last judged: deadlines up to here are done.
    judged: Instant,
    /// Start-up or the last link up: the grace period runs from here.
    grace_from: Instant,
    /// Another reason for a blind source, and since when it holds: it
    /// replaces the reported one only once it has held for a timeout (a
    /// monitor coming back from silence goes through association before
    /// its first reading; that is no reason to change the alarm).
    candidate: Option<(SourceHealth, Instant)>,
    /// A `Link { up: false }` came last.
    link_down: bool,
    /// Whether a session-based protocol is associated (`None` until it
    /// says either way; protocols without sessions never do).
    associated: Option<bool>,
    /// The last association loss: why, and when.
    lost: Option<(AssociationProblem, Instant)>,
    /// When bytes, a dropped frame or run of garbage, a well-formed frame,
    /// a reading of any validity and a valid reading last arrived on the
    /// current connection.
    last_bytes: Option<Instant>,
    last_drop: Option<Instant>,
    last_frame: Option<Instant>,
    last_reading: Option<Instant>,
    last_valid: Option<Instant>,
    /// Counters as last reported to the engine.
    reported: DecodeStats,
    /// Whether the link is open (a `Link { up: true }` came last).
    link_up: bool,
    /// Messages taken from the protocol for the IO layer to write.
    outbox: VecDeque<Vec<u8>>,
    /// Messages the outbox had to drop because nobody drained it.
    writes_dropped: u64,
}

/// Messages a source's outbox holds before it drops the oldest. The live
/// driver drains it after every input, so only a pipeline nobody writes for
/// (replay) ever fills it.
pub const OUTBOX_CAPACITY: usize = 32;

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
                    health: SourceHealth::Ok,
                    judged: start,
                    grace_from: start,
                    candidate: None,
                    link_down: false,
                    associated: None,
                    lost: None,
                    last_bytes: None,
                    last_drop: None,
                    last_frame: None,
                    last_reading: None,
                    last_valid: None,
                    reported: DecodeStats::default(),
                    link_up: false,
                    outbox: VecDeque::new(),
                    writes_dropped: 0,
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

    /// The one way in: writes `feed` to `journal`, then handles it (an
    /// input as [`Pipeline::handle`], settings as [`Pipeline::reconfigure`]),
    /// so a replay of the journal sees exactly what this pipeline saw. A
    /// command's verdict is returned (the replay reaches the same one).
    pub fn feed<S: Settings>(
        &mut self,
        journal: &mut impl Journal<S>,
        at: Instant,
        feed: Feed<'_, S>,
    ) -> Result<(), CommandError> {
        match feed {
            Feed::Input(input) => {
                journal.input(at, input);
                self.handle(at, input)
            }
            Feed::Settings(settings) => {
                journal.settings(at, settings);
                self.reconfigure(at, settings.engine().clone());
                Ok(())
            }
        }
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

    /// Why the source's protocol dropped its most recent line or frame,
    /// when it can say (see [`crate::protocol::Protocol::last_error`]).
    pub fn source_drop_detail(&self, source: SourceId) -> Option<&dyn core::fmt::Display> {
        self.sources.get(source.index())?.protocol.drop_detail()
    }

    /// Whether a source is currently reported blind (no valid data, for
    /// whatever reason: see [`Pipeline::source_health`]).
    pub fn source_down(&self, source: SourceId) -> Option<bool> {
        self.source_health(source).map(|h| !h.is_ok())
    }

    /// What a source delivers, as last reported to the engine.
    pub fn source_health(&self, source: SourceId) -> Option<SourceHealth> {
        self.sources.get(source.index()).map(|s| s.health)
    }

    /// Whether a session-based source is associated (`None` for protocols
    /// without sessions, and before a session protocol said either way).
    pub fn source_associated(&self, source: SourceId) -> Option<bool> {
        self.sources.get(source.index()).and_then(|s| s.associated)
    }

    /// Dispatches one recorded input. Command results are returned so that
    /// replay can report rejected commands.
    pub fn handle(&mut self, now: Instant, input: &Input) -> Result<(), CommandError> {
        match input {
            Input::Bytes { source, data } => self.handle_bytes(now, *source, data),
            Input::Link { source, up } => self.handle_link(now, *source, *up),
            Input::Command(c) => return self.handle_command(now, *c),
            Input::System { condition, present } => self.handle_system(now, *condition, *present),
            Input::Tick => self.handle_timeout(now),
        }
        Ok(())
    }

    /// Bytes arrived from a source.
    pub fn handle_bytes(&mut self, now: Instant, source: SourceId, bytes: &[u8]) {
        self.advance(now);
        let Some(slot) = self.sources.get_mut(source.index()) else {
            return;
        };
        if !bytes.is_empty() {
            slot.last_bytes = Some(now);
        }
        slot.protocol.handle_bytes(now, bytes);
        self.drain_source(now, source);
    }

    /// A source's link went up or down (opened, hung up, reset). The
    /// protocol hears of it first: a talking protocol starts its session
    /// now, and what it queues is in [`Pipeline::poll_transmit`] on return.
    /// Messages still in the outbox when the link goes down were meant for
    /// the connection that is gone and are discarded. What arrived before a
    /// hang-up does not count for the next connection: a source that was
    /// disconnected stays so until a valid reading arrives on the new one.
    pub fn handle_link(&mut self, now: Instant, source: SourceId, up: bool) {
        self.advance(now);
        let Some(slot) = self.sources.get_mut(source.index()) else {
            return;
        };
        slot.link_up = up;
        slot.link_down = !up;
        if up {
            slot.grace_from = now;
        } else {
            slot.outbox.clear();
            slot.last_bytes = None;
            slot.last_drop = None;
            slot.last_frame = None;
            slot.last_reading = None;
            slot.last_valid = None;
        }
        slot.protocol.handle_link(now, up);
        self.drain_source(now, source);
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

    /// Appends the next message for a source's device to `out` (see the
    /// module documentation on writes).
    pub fn poll_transmit(&mut self, source: SourceId, out: &mut Vec<u8>) -> bool {
        match self
            .sources
            .get_mut(source.index())
            .and_then(|s| s.outbox.pop_front())
        {
            Some(msg) => {
                out.extend_from_slice(&msg);
                true
            }
            None => false,
        }
    }

    /// Messages a source's outbox dropped because it was not drained.
    pub fn writes_dropped(&self, source: SourceId) -> Option<u64> {
        self.sources.get(source.index()).map(|s| s.writes_dropped)
    }

    /// Whether a source's link is open.
    pub fn link_up(&self, source: SourceId) -> Option<bool> {
        self.sources.get(source.index()).map(|s| s.link_up)
    }

    /// When [`Pipeline::handle_timeout`] wants to be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.engine.poll_timeout();
        for s in &self.sources {
            for candidate in [s.protocol.poll_timeout(), s.next_judgement()]
                .into_iter()
                .flatten()
            {
                t = Some(t.map_or(candidate, |x| x.min(candidate)));
            }
        }
        t
    }

    /// Watchdog deadlines strictly before `now`, in deadline order.
    fn advance(&mut self, now: Instant) {
        self.watchdog(now, false);
    }

    fn advance_inclusive(&mut self, now: Instant) {
        self.watchdog(now, true);
    }

    fn watchdog(&mut self, now: Instant, inclusive: bool) {
        loop {
            let next = self
                .sources
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.next_judgement().map(|t| (t, i)))
                .min();
            match next {
                Some((t, i)) if t < now || (inclusive && t == now) => {
                    self.judge(t, SourceId(i as u16));
                }
                _ => return,
            }
        }
    }

    /// Judges a source at `now` and tells the engine if its health changed.
    fn judge(&mut self, now: Instant, source: SourceId) {
        let slot = &mut self.sources[source.index()];
        slot.judged = slot.judged.max(now);
        let health = slot.verdict(now);
        if health != slot.health {
            slot.health = health;
            self.engine
                .handle_device(now, source, DeviceInput::Health(health));
        }
    }

    fn drain_source(&mut self, now: Instant, source: SourceId) {
        let i = source.index();
        while let Some(out) = self.sources[i].protocol.poll_output() {
            match out {
                Output::Reading(mut r) => {
                    r.source = source;
                    let slot = &mut self.sources[i];
                    slot.last_reading = Some(now);
                    if reading_is_valid(&r) {
                        slot.last_valid = Some(now);
                    }
                    if self.accept(&r) {
                        self.engine.handle_reading(now, r);
                    }
                }
                Output::Dropped(_) => {}
                Output::Note(note) => {
                    match note {
                        DeviceNote::Associated => self.sources[i].associated = Some(true),
                        DeviceNote::AssociationLost(why) => {
                            self.sources[i].associated = Some(false);
                            self.sources[i].lost = Some((why, now));
                        }
                        _ => {}
                    }
                    self.engine
                        .handle_device(now, source, DeviceInput::Note(note))
                }
            }
        }
        let slot = &mut self.sources[i];
        if slot.link_up {
            let mut msg = Vec::new();
            while slot.protocol.poll_transmit(&mut msg) {
                if slot.outbox.len() == OUTBOX_CAPACITY {
                    slot.outbox.pop_front();
                    slot.writes_dropped += 1;
                }
                slot.outbox.push_back(core::mem::take(&mut msg));
            }
        }
        let stats = slot.protocol.stats();
        // Well-formed frames a host does not use (waveforms, trends, other
        // hosts' results) are not errors: they count as good for the
        // link-error rate, though not as data.
        let good = (stats.frames_ok + stats.ignored)
            .saturating_sub(slot.reported.frames_ok + slot.reported.ignored);
        let dropped = stats
            .dropped_total()
            .saturating_sub(slot.reported.dropped_total());
        slot.reported = stats;
        if good > 0 {
            slot.last_frame = Some(now);
        }
        if dropped > 0 {
            slot.last_drop = Some(now);
        }
        self.judge(now, source);
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
    /// (Validity is judged the same way as for the watchdog.)
    fn accept(&mut self, r: &Reading) -> bool {
        let src = r.source.0;
        let vital = match r.measurement.continuous() {
            Some((v, _)) => v,
            None => Vital::NibpSystolic,
        };
        if reading_is_valid(r) {
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

/// Whether a reading carries a value the device stands behind (for an
/// NIBP: its systolic value).
fn reading_is_valid(r: &Reading) -> bool {
    match r.measurement {
        crate::vitals::Measurement::Nibp(n) => n.systolic.validity.is_valid(),
        m => m.continuous().is_some_and(|(_, s)| s.validity.is_valid()),
    }
}

impl SourceSlot {
    /// What the source delivers at `now`: valid data within the last
    /// timeout, else what arrives lately, within the last half of it (the
    /// tail of a frame cut off by a reboot is not a stream of garbage).
    fn classify(&self, now: Instant) -> SourceHealth {
        if self.link_down {
            return SourceHealth::LinkDown;
        }
        if self.last_valid.is_some_and(|t| now < t + self.timeout) {
            return SourceHealth::Ok;
        }
        let within = |t: Option<Instant>| t.is_some_and(|t| now < t + self.recent());
        if !within(self.last_bytes) {
            return SourceHealth::Silent;
        }
        if self.associated == Some(false) {
            // A monitor that stopped answering and has sent nothing since
            // is silent (rebooting, cable pulled); one that refuses,
            // aborts, or keeps talking without association is not
            // associated.
            return match self.lost {
                Some((
                    AssociationProblem::NoAnswer
                    | AssociationProblem::NoMdsCreate
                    | AssociationProblem::DataTimeout
                    | AssociationProblem::LinkDown,
                    at,
                )) if self.last_bytes.is_none_or(|b| b <= at) => SourceHealth::Silent,
                _ => SourceHealth::NotAssociated,
            };
        }
        if !within(self.last_frame) {
            // Bytes the decoder neither used nor threw away are the start
            // of a frame that never finished (a monitor cut off mid-frame
            // by a reboot or a pulled cable): that is silence.
            if within(self.last_drop) {
                SourceHealth::Garbage
            } else {
                SourceHealth::Silent
            }
        } else if !within(self.last_reading) {
            SourceHealth::NoReadings
        } else {
            SourceHealth::InvalidOnly
        }
    }

    /// The verdict at `now` (see the module documentation): a valid reading
    /// and a link going down count at once; the first reason that raises an
    /// alarm, once the grace is over; a reason that would replace one alarm
    /// by another only once it has held for a timeout.
    fn verdict(&mut self, now: Instant) -> SourceHealth {
        let raw = self.classify(now);
        let current = self.health;
        if raw.is_ok() || raw == SourceHealth::LinkDown {
            self.candidate = None;
            return raw;
        }
        if current.alarm().is_none() {
            if current.is_ok() && now < self.grace_from + self.timeout {
                return current;
            }
            return raw;
        }
        if raw.alarm() == current.alarm() {
            self.candidate = None;
            return raw;
        }
        match self.candidate {
            Some((c, since)) if c == raw => {
                if now >= since + self.timeout {
                    self.candidate = None;
                    raw
                } else {
                    current
                }
            }
            _ => {
                self.candidate = Some((raw, now));
                current
            }
        }
    }

    /// How long what arrived counts as arriving lately.
    fn recent(&self) -> Duration {
        self.timeout / 2
    }

    /// The next instant at which the verdict may change by itself: when
    /// something that arrived leaves its window, or the grace ends.
    fn next_judgement(&self) -> Option<Instant> {
        let full = [
            Some(self.grace_from),
            self.candidate.map(|(_, since)| since),
            self.last_valid,
        ]
        .into_iter()
        .flatten()
        .map(|t| t + self.timeout);
        let half = [
            self.last_bytes,
            self.last_drop,
            self.last_frame,
            self.last_reading,
        ]
        .into_iter()
        .flatten()
        .map(|t| t + self.recent());
        full.chain(half).filter(|&t| t > self.judged).min()
    }
}

/// One source's state for status reports and heartbeats.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SourceState {
    /// The configured name.
    pub name: String,
    /// Whether valid readings arrive (`health` is ok).
    pub up: bool,
    /// What the source delivers, as the pipeline's watchdog judges it.
    pub health: crate::engine::SourceHealth,
    /// For session-based protocols: whether the monitor is associated.
    pub associated: Option<bool>,
    /// Frames decoded so far.
    pub frames_ok: u64,
    /// Well-formed frames not used (waveforms, trends, others' results).
    pub frames_ignored: u64,
    /// Frames dropped so far.
    pub frames_dropped: u64,
}

/// The daemon's current state, kept up to date by the daemon's driver loop for publishers
/// (heartbeat, retained `alarms/active` and `session` snapshots).
#[derive(Clone, Debug, Default)]
pub struct LiveState {
    /// The last event sequence number emitted.
    pub last_seq: u64,
    /// Time since the daemon started (core time).
    pub uptime: Duration,
    /// Every source.
    pub sources: Vec<SourceState>,
    /// Arrival-to-emission latency in microseconds: p50, p99, p99.9, max.
    pub latency_us: [u64; 4],
    /// Events dropped because a sink queue was full.
    pub events_dropped: u64,
    /// Alarms present now, highest priority first.
    pub present_alarms: Vec<crate::engine::AlarmEvent>,
    /// Session phase and pseudonymous id.
    pub session: (crate::engine::SessionPhase, crate::engine::SessionId),
    /// Baselines, indexed by `Vital::index`.
    pub baselines: [Option<f32>; crate::vitals::Vital::COUNT],
    /// Audio paused until (core time), if paused.
    pub audio_paused_until: Option<crate::time::Instant>,
    /// Bumped whenever `present_alarms` or `session` changed.
    pub snapshot_version: u64,
    /// The alarm rules in force per vital, indexed by `Vital::index` (the
    /// published `limits`); `None` until the driver sets them.
    pub limits: Option<[crate::engine::VitalRules; crate::vitals::Vital::COUNT]>,
    /// Bumped whenever `limits` changed (start-up, a configuration reload).
    pub limits_version: u64,
}

/// What the pipeline needs to know of a configured source (implemented by
/// `vigil`'s `SourceConfig`; the core does not know the configuration file).
pub trait SourceRole {
    /// The protocol it speaks.
    fn protocol(&self) -> ProtocolKind;
    /// Silence longer than this means disconnected.
    fn timeout(&self) -> Duration;
    /// The vitals taken from it.
    fn vitals(&self) -> &[Vital];
}

/// The pipeline for a configuration's sources, with each vital's source
/// preference set from the sources' `vitals` lists (file order wins). Live
/// and replay both build it here, so they merge sources identically.
pub fn for_sources<S: SourceRole>(start: Instant, engine: EngineConfig, sources: &[S]) -> Pipeline {
    let ages = AgeLimits::for_nibp_cycle(engine.nibp.cycle, engine.nibp.grace);
    let specs = sources
        .iter()
        .enumerate()
        .map(|(i, s)| SourceSpec {
            protocol: open_protocol_with(s.protocol(), SourceId(i as u16), ages),
            timeout: s.timeout(),
        })
        .collect();
    let mut p = Pipeline::new(start, engine, specs);
    for vital in Vital::ALL {
        let suppliers: Vec<SourceId> = sources
            .iter()
            .enumerate()
            .filter(|(_, s)| s.vitals().contains(&vital))
            .map(|(i, _)| SourceId(i as u16))
            .collect();
        if sources.len() > 1 || suppliers.len() < sources.len() {
            p.set_preference(vital, suppliers);
        }
    }
    p
}

/// The host-side protocol endpoint for a configured protocol, with the
/// default age limits (see [`open_protocol_with`]).
pub fn open_protocol(kind: ProtocolKind, source: SourceId) -> BoxedProtocol {
    open_protocol_with(kind, source, AgeLimits::default())
}

/// The host-side protocol endpoint for a configured protocol; decoders that
/// see device time stamps take values older than `ages` as old measurements.
/// The constructor comes from the protocol's registry entry.
pub fn open_protocol_with(kind: ProtocolKind, source: SourceId, ages: AgeLimits) -> BoxedProtocol {
    kind.open(source, ages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EventKind, Phase};
    use crate::protocol::Protocol;

    const SEC: u64 = 1_000;

    fn ms(t: u64) -> Instant {
        Instant::from_millis(t)
    }

    fn pipeline(sources: usize) -> Pipeline {
        let names: Vec<String> = (0..sources).map(|i| format!("s{i}")).collect();
        let cfg = EngineConfig {
            source_names: names,
            ..EngineConfig::default()
        };
        let specs = (0..sources)
            .map(|i| SourceSpec {
                protocol: open_protocol(ProtocolKind::Line, SourceId(i as u16)),
                timeout: Duration::from_secs(5),
            })
            .collect();
        Pipeline::new(ms(0), cfg, specs)
    }

    fn alarms(p: &mut Pipeline) -> Vec<(String, Phase, u64)> {
        let names = p.engine().config().source_names.clone();
        std::iter::from_fn(|| p.poll_event())
            .filter_map(|e| match e.kind {
                EventKind::Alarm(a) => {
                    Some((a.id.key(&names), a.phase, e.at.as_nanos() / 1_000_000))
                }
                _ => None,
            })
            .collect()
    }

    fn readings(p: &mut Pipeline) -> Vec<Reading> {
        std::iter::from_fn(|| p.poll_event())
            .filter_map(|e| match e.kind {
                EventKind::Reading(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    fn key(k: &str, phase: Phase, t: u64) -> (String, Phase, u64) {
        (k.to_owned(), phase, t)
    }

    #[test]
    fn bytes_split_anywhere_become_readings_stamped_with_the_last_chunk() {
        let mut p = pipeline(1);
        p.handle_bytes(ms(100), SourceId(0), b"spo2 9");
        p.handle_bytes(ms(150), SourceId(0), b"7\nhr 7");
        p.handle_bytes(ms(200), SourceId(0), b"2\n");
        let r = readings(&mut p);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].arrival, ms(150));
        assert_eq!(r[1].arrival, ms(200));
        assert_eq!(r[1].source, SourceId(0));
    }

    #[test]
    fn silence_raises_disconnected_at_the_timeout_and_data_clears_it() {
        let mut p = pipeline(1);
        p.handle_bytes(ms(1000), SourceId(0), b"hr 72\n");
        alarms(&mut p);
        // No frame since 1 s; the timeout is 5 s.
        assert!(p.poll_timeout().is_some_and(|t| t <= ms(6 * SEC)));
        p.handle_timeout(ms(6 * SEC).saturating_sub(Duration::from_nanos(1)));
        assert!(!alarms(&mut p).iter().any(|a| a.0.contains("disconnected")));
        p.handle_timeout(ms(6 * SEC));
        assert_eq!(
            alarms(&mut p),
            vec![key("source.s0.disconnected", Phase::Start, 6 * SEC)]
        );
        assert_eq!(p.source_down(SourceId(0)), Some(true));
        p.handle_bytes(ms(9 * SEC), SourceId(0), b"hr 72\n");
        assert_eq!(
            alarms(&mut p),
            vec![key("source.s0.disconnected", Phase::End, 9 * SEC)]
        );
    }

    #[test]
    fn garbage_alone_is_not_data_and_raises_link_errors() {
        let mut p = pipeline(1);
        for i in 0..50 {
            p.handle_bytes(ms(100 * i), SourceId(0), b"this is not a reading\n");
        }
        p.handle_timeout(ms(5 * SEC));
        let a = alarms(&mut p);
        assert!(
            a.contains(&key("source.s0.link_errors", Phase::Start, 400)),
            "{a:?}"
        );
        assert!(
            a.contains(&key("source.s0.no_valid_data", Phase::Start, 5 * SEC)),
            "{a:?}"
        );
        assert_eq!(p.source_health(SourceId(0)), Some(SourceHealth::Garbage));
        // The garbage stops too (its last bytes, at 4.9 s, are no longer
        // recent at 7.4 s): the source is silent, a new reason that
        // replaces the old one once it has held for a timeout.
        p.handle_timeout(ms(12_399));
        assert!(alarms(&mut p).is_empty());
        p.handle_timeout(ms(13 * SEC));
        assert_eq!(
            alarms(&mut p),
            vec![
                key("source.s0.disconnected", Phase::Start, 12_400),
                key("source.s0.no_valid_data", Phase::End, 12_400),
            ]
        );
    }

    /// A protocol driven by single-byte commands, to put a source in every
    /// state a real monitor can: `A` associated, `L` association lost, `F`
    /// a frame without readings, `V` a valid heart rate, `I` an invalid
    /// one; any other byte is garbage.
    struct Scripted {
        out: VecDeque<Output>,
        stats: DecodeStats,
    }

    impl Protocol for Scripted {
        fn handle_bytes(&mut self, now: Instant, bytes: &[u8]) {
            use crate::protocol::{AssociationProblem, DropReason};
            use crate::vitals::{Measurement, Sample, Validity};
            for &b in bytes {
                let reading = |s| {
                    Output::Reading(Reading {
                        source: SourceId(0),
                        arrival: now,
                        device_time: None,
                        measurement: Measurement::HeartRate(s),
                    })
                };
                let out = match b {
                    b'A' => Output::Note(DeviceNote::Associated),
                    b'L' => Output::Note(DeviceNote::AssociationLost(AssociationProblem::Refused)),
                    b'F' => {
                        self.stats.frames_ok += 1;
                        continue;
                    }
                    b'V' => reading(Sample::valid(72.0)),
                    b'I' => reading(Sample::missing(Validity::SensorOff)),
                    _ => {
                        self.stats.count_drop(DropReason::ALL[0]);
                        Output::Dropped(DropReason::ALL[0])
                    }
                };
                if matches!(out, Output::Reading(_)) {
                    self.stats.frames_ok += 1;
                }
                self.out.push_back(out);
            }
        }
        fn poll_output(&mut self) -> Option<Output> {
            self.out.pop_front()
        }
        fn stats(&self) -> DecodeStats {
            self.stats
        }
    }

    /// Settings as a test gives them, and a journal that writes down what
    /// it is given, in order.
    struct Alarms(EngineConfig);
    impl Settings for Alarms {
        fn engine(&self) -> &EngineConfig {
            &self.0
        }
    }
    #[derive(Default)]
    struct Written(Vec<(u64, Option<Input>)>);
    impl Journal<Alarms> for Written {
        fn input(&mut self, at: Instant, input: &Input) {
            self.0
                .push((at.since_origin().as_millis() as u64, Some(input.clone())));
        }
        fn settings(&mut self, at: Instant, _settings: &Alarms) {
            self.0.push((at.since_origin().as_millis() as u64, None));
        }
    }

    #[test]
    fn feed_writes_each_input_and_reload_down_and_then_handles_it() {
        let mut p = scripted();
        let mut journal = Written::default();
        let bytes = Input::Bytes {
            source: SourceId(0),
            data: b"F".to_vec(),
        };
        p.feed(&mut journal, ms(10), Feed::Input(&bytes)).unwrap();
        let cfg = EngineConfig {
            source_names: vec!["s0".into()],
            realert_after: Duration::from_secs(33),
            ..EngineConfig::default()
        };
        p.feed(&mut journal, ms(20), Feed::Settings(&Alarms(cfg.clone())))
            .unwrap();
        p.feed(&mut journal, ms(30), Feed::<Alarms>::Input(&Input::Tick))
            .unwrap();
        assert_eq!(
            journal.0,
            [(10, Some(bytes)), (20, None), (30, Some(Input::Tick))]
        );
        assert_eq!(p.engine().config(), &cfg, "the settings were applied");
        assert_eq!(
            p.source_stats(SourceId(0)).unwrap().frames_ok,
            1,
            "the bytes were handled"
        );
    }

    fn scripted() -> Pipeline {
        let cfg = EngineConfig {
            source_names: vec!["s0".into()],
            ..EngineConfig::default()
        };
        let spec = SourceSpec {
            protocol: Box::new(Scripted {
                out: VecDeque::new(),
                stats: DecodeStats::default(),
            }),
            timeout: Duration::from_secs(5),
        };
        Pipeline::new(ms(0), cfg, vec![spec])
    }

    /// Feeds `script` one byte every 500 ms from `from` on.
    fn feed(p: &mut Pipeline, from: u64, script: &[u8]) -> u64 {
        let mut t = from;
        for b in script {
            p.handle_bytes(ms(t), SourceId(0), &[*b]);
            t += 500;
        }
        t
    }

    fn source_alarms(p: &mut Pipeline) -> Vec<(String, Phase, u64)> {
        alarms(p)
            .into_iter()
            .filter(|a| a.0.starts_with("source.") && !a.0.ends_with("link_errors"))
            .collect()
    }

    #[test]
    fn a_monitor_that_streams_but_never_associates_is_not_associated_from_start_up() {
        let mut p = scripted();
        // Refused at once, then session traffic only: frames, no readings.
        let t = feed(&mut p, 100, b"LFFFFFFFFFFFFFFFFFFF");
        p.handle_timeout(ms(t));
        assert_eq!(
            source_alarms(&mut p),
            vec![key("source.s0.not_associated", Phase::Start, 5 * SEC)],
            "after the start-up grace, exactly like a silent source"
        );
        assert_eq!(p.source_associated(SourceId(0)), Some(false));
        // Associated at 10.1 s, but still no reading: the new reason
        // replaces the old one once it has held for a timeout; then the
        // first valid reading ends it.
        let t = feed(&mut p, t, b"AFFFFFFFFFFFFF");
        assert_eq!(
            source_alarms(&mut p),
            vec![
                key("source.s0.not_associated", Phase::End, 15_100),
                key("source.s0.no_valid_data", Phase::Start, 15_100),
            ]
        );
        assert_eq!(p.source_health(SourceId(0)), Some(SourceHealth::NoReadings));
        feed(&mut p, t, b"V");
        assert_eq!(
            source_alarms(&mut p),
            vec![key("source.s0.no_valid_data", Phase::End, t)]
        );
        assert_eq!(p.source_health(SourceId(0)), Some(SourceHealth::Ok));
    }

    #[test]
    fn invalid_values_only_raise_their_vitals_alarms_and_the_source_says_why() {
        let mut p = scripted();
        let t = feed(&mut p, 0, b"VIIIIIIIIIIIIIIII");
        let a = alarms(&mut p);
        // The heart rate's own technical alarm says what is wrong (after
        // the technical delay); the source adds no second alarm for it.
        assert_eq!(a, vec![key("hr.sensor_off", Phase::Start, 5_500)]);
        assert_eq!(
            p.source_health(SourceId(0)),
            Some(SourceHealth::InvalidOnly)
        );
        assert_eq!(p.source_down(SourceId(0)), Some(true));
        // The values stop altogether (the last at t - 500 ms is no longer
        // recent half a timeout later): silence is an alarm at once.
        p.handle_timeout(ms(t + 5 * SEC));
        assert_eq!(
            source_alarms(&mut p),
            vec![key("source.s0.disconnected", Phase::Start, t - 500 + 2_500)]
        );
        let t = feed(&mut p, t + 6 * SEC, b"V");
        assert_eq!(
            source_alarms(&mut p),
            vec![key("source.s0.disconnected", Phase::End, t - 500)]
        );
        assert_eq!(p.source_health(SourceId(0)), Some(SourceHealth::Ok));
    }

    #[test]
    fn a_monitor_coming_back_gives_no_passing_reason_before_its_first_reading() {
        let mut p = scripted();
        feed(&mut p, 0, b"AV");
        // Silent from 500 ms: disconnected at 5.5 s.
        p.handle_timeout(ms(5_500));
        assert_eq!(
            source_alarms(&mut p),
            vec![key("source.s0.disconnected", Phase::Start, 5_500)]
        );
        // It comes back and associates (frames, no reading yet): within a
        // timeout of the last verdict the reason stays, and the first
        // reading ends the only alarm there was.
        let t = feed(&mut p, 8_000, b"LFAFF");
        feed(&mut p, t, b"V");
        assert_eq!(
            source_alarms(&mut p),
            vec![key("source.s0.disconnected", Phase::End, t)]
        );
    }

    #[test]
    fn the_watchdog_wakes_only_when_a_verdict_can_change() {
        let mut p = scripted();
        feed(&mut p, 0, b"V");
        let mut wakes = Vec::new();
        while let Some(t) = p.poll_timeout().filter(|&t| t <= ms(60 * SEC)) {
            p.handle_timeout(t);
            wakes.push(t);
            assert!(wakes.len() < 10, "busy watchdog: {wakes:?}");
        }
        // The reading stops being recent at 2.5 s (nothing changes: valid
        // data is judged over the whole timeout), and valid at 5 s; later
        // wake-ups are the engine's (the heart rate goes stale at 10 s).
        assert_eq!(wakes[..2], [ms(2_500), ms(5 * SEC)]);
        assert!(wakes[2..].iter().all(|&t| t >= ms(10 * SEC)), "{wakes:?}");
        assert_eq!(p.source_health(SourceId(0)), Some(SourceHealth::Silent));
    }

    #[test]
    fn a_hang_up_disconnects_at_once() {
        let mut p = pipeline(1);
        p.handle_bytes(ms(100), SourceId(0), b"hr 72\n");
        p.handle_link(ms(200), SourceId(0), false);
        assert_eq!(
            alarms(&mut p),
            vec![key("source.s0.disconnected", Phase::Start, 200)]
        );
        // Reopening alone does not clear it; data does.
        p.handle_link(ms(300), SourceId(0), true);
        assert!(alarms(&mut p).is_empty());
        p.handle_bytes(ms(400), SourceId(0), b"hr 72\n");
        assert_eq!(
            alarms(&mut p),
            vec![key("source.s0.disconnected", Phase::End, 400)]
        );
    }

    #[test]
    fn preferred_source_wins_while_it_delivers() {
        let mut p = pipeline(2);
        p.set_preference(crate::vitals::Vital::SpO2, vec![SourceId(1), SourceId(0)]);
        p.handle_bytes(ms(0), SourceId(1), b"spo2 97\n");
        p.handle_bytes(ms(10), SourceId(0), b"spo2 80\n");
        let r = readings(&mut p);
        assert_eq!(r.len(), 1, "the less preferred source is ignored");
        assert_eq!(r[0].source, SourceId(1));
        // The preferred source goes quiet for longer than SpO2's stale time:
        // the other one takes over.
        p.handle_bytes(ms(11 * SEC), SourceId(0), b"spo2 96\n");
        let r = readings(&mut p);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].source, SourceId(0));
    }

    fn ge_pipeline() -> Pipeline {
        let cfg = EngineConfig {
            source_names: vec!["ge".to_owned()],
            ..EngineConfig::default()
        };
        let spec = SourceSpec {
            protocol: open_protocol(ProtocolKind::Ge, SourceId(0)),
            timeout: Duration::from_secs(10),
        };
        Pipeline::new(ms(0), cfg, vec![spec])
    }

    fn written(p: &mut Pipeline) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut msg = Vec::new();
        while p.poll_transmit(SourceId(0), &mut msg) {
            out.push(core::mem::take(&mut msg));
        }
        out
    }

    fn ge_request() -> Vec<u8> {
        let mut r = Vec::new();
        crate::protocol::ge::PhdbRequest::displayed_every(
            crate::protocol::ge::MIN_DISPLAYED_INTERVAL_S,
        )
        .unwrap()
        .encode(&mut r);
        r
    }

    #[test]
    fn writes_wait_for_the_link_and_go_out_the_moment_it_comes_up() {
        let mut p = ge_pipeline();
        // Ticks before the port opened: the request is held, not lost.
        p.handle_timeout(ms(0));
        p.handle_timeout(ms(500));
        assert!(written(&mut p).is_empty());
        assert_eq!(p.link_up(SourceId(0)), Some(false));
        p.handle_link(ms(700), SourceId(0), true);
        assert_eq!(written(&mut p), vec![ge_request()], "at link up, once");
        assert!(written(&mut p).is_empty());
        // Reconnect: the new connection gets its own request at once
        // (not after the 15 s silence re-request).
        p.handle_link(ms(2_000), SourceId(0), false);
        assert!(written(&mut p).is_empty());
        p.handle_link(ms(2_300), SourceId(0), true);
        assert_eq!(written(&mut p), vec![ge_request()]);
        assert_eq!(p.writes_dropped(SourceId(0)), Some(0));
    }

    #[test]
    fn an_undrained_outbox_is_bounded_and_leaves_the_protocol_alone() {
        // Replay writes nothing: link flaps queue a request each time; the
        // outbox keeps the newest and counts the rest.
        let mut p = ge_pipeline();
        let flaps = OUTBOX_CAPACITY as u64 + 5;
        for i in 0..flaps {
            p.handle_link(ms(10 * i), SourceId(0), true);
        }
        assert_eq!(p.writes_dropped(SourceId(0)), Some(5));
        assert_eq!(written(&mut p).len(), OUTBOX_CAPACITY);
        // Going down discards what the old connection did not get.
        p.handle_link(ms(10 * flaps), SourceId(0), true);
        p.handle_link(ms(10 * flaps + 1), SourceId(0), false);
        assert!(written(&mut p).is_empty());
    }

    #[test]
    fn unknown_sources_are_ignored() {
        let mut p = pipeline(1);
        p.handle_bytes(ms(0), SourceId(7), b"hr 72\n");
        p.handle_link(ms(0), SourceId(7), false);
        assert!(p.poll_event().is_none());
        assert_eq!(p.source_stats(SourceId(7)), None);
    }
}
