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
//! Besides decoding, it watches each source: a source from which no frame has
//! decoded for longer than its timeout (silence, garbage only) or whose link
//! went down (hang-up, TCP reset) is reported to the engine as disconnected;
//! the alarm clears when frames decode again. Like the engine, it stamps
//! timer-driven inputs with their deadline, so the outputs depend only on the
//! inputs.
//!
//! Depends on [`crate::engine`], [`crate::protocol`] and [`crate::vitals`]. No IO.

use core::time::Duration;
use std::collections::VecDeque;

use crate::engine::{
    Command, CommandError, DeviceInput, Engine, EngineConfig, Event, SystemCondition,
};
use crate::protocol::{AgeLimits, DecodeStats, Output, Protocol};
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
                    last_data: start,
                    down: false,
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
        slot.protocol.handle_bytes(now, bytes);
        self.drain_source(now, source);
    }

    /// A source's link went up or down (opened, hung up, reset). The
    /// protocol hears of it first: a talking protocol starts its session
    /// now, and what it queues is in [`Pipeline::poll_transmit`] on return.
    /// Messages still in the outbox when the link goes down were meant for
    /// the connection that is gone and are discarded.
    pub fn handle_link(&mut self, now: Instant, source: SourceId, up: bool) {
        self.advance(now);
        let Some(slot) = self.sources.get_mut(source.index()) else {
            return;
        };
        slot.link_up = up;
        if !up {
            slot.outbox.clear();
        }
        slot.protocol.handle_link(now, up);
        self.drain_source(now, source);
        let slot = &mut self.sources[source.index()];
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

/// The pipeline for a configuration's sources, with each vital's source
/// preference set from the sources' `vitals` lists (file order wins). Live
/// and replay both build it here, so they merge sources identically.
pub fn for_sources(
    start: Instant,
    engine: EngineConfig,
    sources: &[crate::config::SourceConfig],
) -> Pipeline {
    let ages = AgeLimits::for_nibp_cycle(engine.nibp.cycle, engine.nibp.grace);
    let specs = sources
        .iter()
        .enumerate()
        .map(|(i, s)| SourceSpec {
            protocol: open_protocol_with(s.protocol, SourceId(i as u16), ages),
            timeout: s.timeout,
        })
        .collect();
    let mut p = Pipeline::new(start, engine, specs);
    for vital in Vital::ALL {
        let suppliers: Vec<SourceId> = sources
            .iter()
            .enumerate()
            .filter(|(_, s)| s.vitals.contains(&vital))
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
pub fn open_protocol(kind: crate::config::ProtocolKind, source: SourceId) -> BoxedProtocol {
    open_protocol_with(kind, source, AgeLimits::default())
}

/// The host-side protocol endpoint for a configured protocol; decoders that
/// see device time stamps take values older than `ages` as old measurements.
pub fn open_protocol_with(
    kind: crate::config::ProtocolKind,
    source: SourceId,
    ages: AgeLimits,
) -> BoxedProtocol {
    use crate::config::ProtocolKind as K;
    use crate::protocol::{ge, line, masimo, nonin, philips};
    match kind {
        K::Ge => Box::new(
            ge::GeS5::new(source, ge::MIN_DISPLAYED_INTERVAL_S)
                .expect("the minimum interval is a valid request")
                .with_age_limits(ages),
        ),
        K::Philips => Box::new(philips::IntelliVueHost::new(source).with_age_limits(ages)),
        K::Masimo => Box::new(masimo::Masimo::new(source)),
        K::NoninDf2 => Box::new(nonin::Nonin::new(source, nonin::NoninFormat::Df2)),
        K::NoninDf7 => Box::new(nonin::Nonin::new(source, nonin::NoninFormat::Df7)),
        K::NoninDf8 => Box::new(nonin::Nonin::new(source, nonin::NoninFormat::Df8)),
        K::Line => Box::new(line::VigilLine::new(source)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProtocolKind;
    use crate::engine::{EventKind, Phase};

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
        for i in 0..10 {
            p.handle_bytes(ms(100 * i), SourceId(0), b"this is not a reading\n");
        }
        let a = alarms(&mut p);
        assert!(
            a.contains(&key("source.s0.link_errors", Phase::Start, 400)),
            "{a:?}"
        );
        p.handle_timeout(ms(5 * SEC));
        assert!(alarms(&mut p).contains(&key("source.s0.disconnected", Phase::Start, 5 * SEC)));
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

    #[test]
    fn configured_vitals_decide_which_source_supplies_what() {
        let cfg = crate::config::parse(
            r#"
            [[source]]
            name = "oximeter"
            protocol = "vigil-line"
            tcp = "127.0.0.1:1"
            vitals = ["spo2", "pr"]
            [[source]]
            name = "monitor"
            protocol = "vigil-line"
            tcp = "127.0.0.1:2"
            "#,
            "test",
        )
        .unwrap();
        let mut p = for_sources(ms(0), cfg.engine.clone(), &cfg.sources);
        // HR from the oximeter is not taken; SpO2 from both: the oximeter wins.
        p.handle_bytes(ms(0), SourceId(0), b"hr 70\nspo2 97\n");
        p.handle_bytes(ms(10), SourceId(1), b"hr 71\nspo2 90\n");
        let r = readings(&mut p);
        let got: Vec<(u16, String)> = r
            .iter()
            .map(|r| {
                (
                    r.source.0,
                    format!("{:?}", r.measurement.continuous().unwrap().0),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![(0, "SpO2".to_owned()), (1, "HeartRate".to_owned())]
        );
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
