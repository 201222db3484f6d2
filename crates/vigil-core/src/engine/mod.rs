//! The alarm engine: a pure, synchronous state machine that turns readings,
//! commands and device inputs into alarm, session and status events.
//!
//! # API (sans-IO)
//!
//! - inputs: [`Engine::handle_reading`], [`Engine::handle_command`],
//!   [`Engine::handle_device`], [`Engine::handle_system`],
//!   [`Engine::handle_timeout`], each with the current [`Instant`];
//! - outputs: [`Engine::poll_event`] until `None`, then
//!   [`Engine::poll_timeout`] says when to call `handle_timeout` next.
//!
//! # Determinism
//!
//! The engine never reads a clock. Timer-driven events (an alarm whose delay
//! elapsed, stale data, re-alert, escalation, the end of an audio pause) are
//! stamped with their DEADLINE, not with the time the caller happened to
//! wake up, and every input first runs the timers due before it, in deadline
//! order. So the event stream depends only on the inputs and their times,
//! not on when `handle_timeout` was called: live and replay agree exactly.
//! `poll_timeout` may answer early (a deadline that has since moved); an
//! early `handle_timeout` does nothing.
//!
//! # Allocation
//!
//! All tables are allocated in [`Engine::new`]; the event queue keeps its
//! capacity. Handling a reading allocates nothing.
//!
//! # Rules
//!
//! Threshold alarms (with condition delay for continuous vitals, hysteresis,
//! latching), a critical tier with no delay, NIBP confirmation over two
//! measurements, trends against the pre-dose baseline and rates of change,
//! technical alarms for stale, invalid, sensor-off and implausible data, NIBP
//! cycle overdue, source and system problems; acknowledgement (one alarm
//! or all), re-alert, escalation and bounded audio pause with
//! break-through; the session lifecycle, baselines that need a configured
//! minimum of pre-dose readings, and discharge readiness (judged in
//! recovery only).
//!
//! Depends on [`crate::vitals`], [`crate::time`] and [`crate::protocol`]'s
//! device notes. No IO, no tokio.

pub mod alarm;
pub mod event;
pub mod rules;
pub mod window;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use core::time::Duration;
use std::collections::VecDeque;

pub use alarm::{
    Ack, AlarmEvent, AlarmId, AlarmKind, AlarmState, ComponentValue, Condition, Phase, Priority,
    Subject,
};
pub use event::{
    AudioEvent, Command, CommandError, DeviceInput, DoseAmount, DoseUnit, Event, EventKind,
    ResumeReason, SessionEvent, SessionId, SessionPhase, SourceHealth, SystemCondition,
    TechnicalStatus,
};
pub use rules::{
    ApnoeaRule, BaselineMinimum, EngineConfig, Limit, NibpConfirm, QuestionablePolicy, VitalRules,
};

use crate::protocol::line::severity;
use crate::protocol::DeviceNote;
use crate::time::Instant;
use crate::vitals::{Measurement, Nibp, Reading, Sample, ShortText, SourceId, Validity, Vital};
use rules::{above, below};
use window::{BaselineCollector, RateWindow};

/// Events the queue holds before it has to grow.
const EVENT_CAPACITY: usize = 1024;
/// Values kept per vital for the baseline median.
const BASELINE_CAPACITY: usize = 512;
/// Subjects before the per-source ones: the vitals, NIBP, system.
const FIXED_SUBJECTS: usize = Vital::COUNT + 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    Inactive,
    Pending { deadline: Instant },
    Active,
    Latched,
}

/// One alarm's state.
#[derive(Clone, Copy, Debug)]
struct Slot {
    id: AlarmId,
    base_priority: Priority,
    priority: Priority,
    delay: Duration,
    latching: bool,
    state: SlotState,
    onset: Instant,
    determined: Instant,
    value: Option<f32>,
    limit: Option<f32>,
    validity: Option<Validity>,
    ack: Option<Ack>,
    realert_at: Instant,
    escalate_at: Instant,
    components: Option<[ComponentValue; 2]>,
}

impl Slot {
    fn engaged(&self) -> bool {
        matches!(self.state, SlotState::Active)
    }
    fn present(&self) -> bool {
        matches!(self.state, SlotState::Active | SlotState::Latched)
    }
}

#[derive(Clone, Debug)]
struct VitalState {
    last_seen: Option<Instant>,
    last_valid: Option<f32>,
    baseline: Option<f32>,
    collector: BaselineCollector,
    /// The first valid reading of the baseline phase.
    collecting_since: Option<Instant>,
    rate: Option<RateWindow>,
    /// NIBP confirmation: the arrival of the previous measurement when it was
    /// beyond the low (index 0) or high (index 1) limit.
    prev_beyond: [Option<Instant>; 2],
}

#[derive(Clone, Copy, Debug, Default)]
struct SourceState {
    window_start: Instant,
    good: u32,
    dropped: u32,
    /// What the pipeline last said the source delivers.
    health: SourceHealth,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Audio {
    On,
    Paused { until: Instant, ceiling: Priority },
}

#[derive(Clone, Copy, Debug)]
struct Session {
    phase: SessionPhase,
    id: SessionId,
    doses: u16,
    within_since: Option<Instant>,
    ready: bool,
}

/// Counters the engine keeps for status reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Readings handled.
    pub readings: u64,
    /// Valid values outside the plausible range (turned into artifacts).
    pub implausible: u64,
    /// Values that were not valid.
    pub not_valid: u64,
    /// Readings of vitals that are disabled.
    pub ignored: u64,
    /// NIBP readings that repeated the previous measurement.
    pub nibp_repeats: u64,
    /// Events emitted.
    pub events: u64,
}

/// Which timer is due.
#[derive(Clone, Copy, Debug)]
enum Timer {
    Pending(usize),
    Realert(usize),
    Escalate(usize),
    Stale(Vital),
    NibpOverdue,
    AudioResume,
    Discharge,
}

/// The alarm engine. See the module documentation.
#[derive(Debug)]
pub struct Engine {
    cfg: EngineConfig,
    slots: Vec<Slot>,
    events: VecDeque<Event>,
    seq: u64,
    now: Instant,
    wake: Instant,
    vitals: Vec<VitalState>,
    nibp_last: Option<Nibp>,
    nibp_last_new: Option<Instant>,
    sources: Vec<SourceState>,
    session: Session,
    audio: Audio,
    stats: EngineStats,
    scratch: Vec<f32>,
}

impl Engine {
    /// An engine with the given (validated) configuration, at time zero.
    pub fn new(cfg: EngineConfig) -> Self {
        let n_sources = cfg.source_names.len();
        let subjects = FIXED_SUBJECTS + n_sources;
        let mut slots = Vec::with_capacity(subjects * Condition::COUNT);
        for s in 0..subjects {
            let subject = subject_at(s);
            for condition in Condition::ALL {
                slots.push(new_slot(&cfg, AlarmId { subject, condition }));
            }
        }
        let vitals = Vital::ALL
            .iter()
            .map(|&v| {
                let r = cfg.rules(v);
                VitalState {
                    last_seen: None,
                    last_valid: None,
                    baseline: None,
                    collector: BaselineCollector::new(BASELINE_CAPACITY),
                    collecting_since: None,
                    rate: r
                        .rate
                        .filter(|_| v.is_continuous())
                        .map(|rule| RateWindow::new(rule.window)),
                    prev_beyond: [None; 2],
                }
            })
            .collect();
        Engine {
            slots,
            events: VecDeque::with_capacity(EVENT_CAPACITY),
            seq: 0,
            now: Instant::ZERO,
            wake: Instant::MAX,
            vitals,
            nibp_last: None,
            nibp_last_new: None,
            sources: vec![SourceState::default(); n_sources],
            session: Session {
                phase: SessionPhase::Idle,
                id: SessionId::empty(),
                doses: 0,
                within_since: None,
                ready: false,
            },
            audio: Audio::On,
            stats: EngineStats::default(),
            scratch: Vec::with_capacity(BASELINE_CAPACITY),
            cfg,
        }
    }

    /// Applies a new configuration (SIGHUP) without losing state: present
    /// alarms stay present, with their new priorities, delays and latching;
    /// a pending condition keeps its deadline. Source names cannot change
    /// (a different source list needs a restart) and are kept.
    pub fn reconfigure(&mut self, now: Instant, mut cfg: EngineConfig) {
        self.advance(now);
        cfg.source_names = self.cfg.source_names.clone();
        for slot in &mut self.slots {
            let fresh = new_slot(&cfg, slot.id);
            slot.base_priority = fresh.base_priority;
            slot.priority = slot.priority.max(fresh.base_priority);
            slot.delay = fresh.delay;
            slot.latching = fresh.latching;
        }
        for vital in Vital::ALL {
            let (old, new) = (self.cfg.rules(vital).rate, cfg.rules(vital).rate);
            if old.map(|r| r.window) != new.map(|r| r.window) {
                self.vitals[vital.index()].rate = new
                    .filter(|_| vital.is_continuous())
                    .map(|rule| RateWindow::new(rule.window));
            }
        }
        self.cfg = cfg;
        // Deadlines may have moved: rescan at the next input.
        self.wake = Instant::ZERO;
        self.settle();
    }

    /// The configuration in force.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Counters for status reports.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// The session's phase and id.
    pub fn session(&self) -> (SessionPhase, SessionId) {
        (self.session.phase, self.session.id)
    }

    /// The baseline of a vital, when one is set.
    pub fn baseline(&self, vital: Vital) -> Option<f32> {
        self.vitals[vital.index()].baseline
    }

    /// Whether audio is paused, and until when.
    pub fn audio_paused_until(&self) -> Option<Instant> {
        match self.audio {
            Audio::On => None,
            Audio::Paused { until, .. } => Some(until),
        }
    }

    /// The alarms present now (active, acknowledged or latched), highest
    /// priority first, as `Update` events (for retained snapshots).
    pub fn present_alarms(&self) -> Vec<AlarmEvent> {
        let mut v: Vec<AlarmEvent> = self
            .slots
            .iter()
            .filter(|s| s.present())
            .map(|s| view(s, Phase::Update))
            .collect();
        v.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.onset.cmp(&b.onset)));
        v
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Engine::handle_timeout`] should be called next (possibly early).
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.wake != Instant::MAX).then_some(self.wake)
    }

    /// Time passed: runs every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.run_timers(now, true);
    }

    /// A reading arrived at `now`.
    pub fn handle_reading(&mut self, now: Instant, reading: Reading) {
        self.advance(now);
        let now = self.now;
        self.stats.readings += 1;
        match reading.measurement {
            Measurement::HeartRate(s) => self.on_continuous(now, reading, Vital::HeartRate, s),
            Measurement::PulseRate(s) => self.on_continuous(now, reading, Vital::PulseRate, s),
            Measurement::SpO2(s) => self.on_continuous(now, reading, Vital::SpO2, s),
            Measurement::RespRate(s) => self.on_continuous(now, reading, Vital::RespRate, s),
            Measurement::EtCo2(s) => self.on_continuous(now, reading, Vital::EtCo2, s),
            Measurement::Nibp(n) => self.on_nibp(now, reading, n),
        }
        self.settle();
    }

    /// Something happened to a source's device.
    pub fn handle_device(&mut self, now: Instant, source: SourceId, input: DeviceInput) {
        self.advance(now);
        self.device(source, input);
        self.settle();
    }

    fn device(&mut self, source: SourceId, input: DeviceInput) {
        let now = self.now;
        if source.index() >= self.sources.len() {
            return;
        }
        match input {
            DeviceInput::Health(health) => {
                let st = &mut self.sources[source.index()];
                if st.health == health {
                    return;
                }
                st.health = health;
                self.emit(
                    now,
                    EventKind::Technical(TechnicalStatus::Source { source, health }),
                );
                // One source-level alarm at a time says why the source is
                // blind; a change of reason ends one and starts the other.
                let raised = health.alarm();
                for c in [
                    Condition::Disconnected,
                    Condition::NotAssociated,
                    Condition::NoValidData,
                ] {
                    let idx = self.index(AlarmId {
                        subject: Subject::Source(source),
                        condition: c,
                    });
                    self.set_condition(idx, now, raised == Some(c), None, None, None);
                }
            }
            DeviceInput::Frames { good, dropped } => self.on_frames(now, source, good, dropped),
            DeviceInput::Note(note) => {
                let source_alarm = |condition| AlarmId {
                    subject: Subject::Source(source),
                    condition,
                };
                match note {
                    DeviceNote::LowBattery(low) => {
                        let idx = self.index(source_alarm(Condition::LowBattery));
                        self.set_condition(idx, now, low, None, None, None);
                    }
                    // A lost association is the pipeline's to judge: it
                    // reports `NotAssociated` health when no valid reading
                    // came for the source's timeout, like a silent source,
                    // so a monitor gives one source alarm at a time.
                    DeviceNote::MonitorRestarted => {
                        // A moment, latched: on until acknowledged.
                        let idx = self.index(source_alarm(Condition::MonitorRestarted));
                        self.set_condition(idx, now, true, None, None, None);
                        self.set_condition(idx, now, false, None, None, None);
                    }
                    _ => {}
                }
                self.emit(
                    now,
                    EventKind::Technical(TechnicalStatus::Device { source, note }),
                );
            }
        }
    }

    /// A problem of vigil itself began (`present`) or ended.
    pub fn handle_system(&mut self, now: Instant, condition: SystemCondition, present: bool) {
        self.advance(now);
        let condition = match condition {
            SystemCondition::QueueOverflow => Condition::QueueOverflow,
            SystemCondition::BrokerUnreachable => Condition::BrokerUnreachable,
            SystemCondition::StorageFailure => Condition::StorageFailure,
            SystemCondition::JournalFailure => Condition::JournalFailure,
            SystemCondition::JournalCorrupt => Condition::JournalCorrupt,
            SystemCondition::LinkUnstable => Condition::LinkUnstable,
            SystemCondition::InputOverload => Condition::InputOverload,
            SystemCondition::Hl7Undelivered => Condition::Hl7Undelivered,
            SystemCondition::Hl7BacklogFailure => Condition::Hl7BacklogFailure,
            SystemCondition::BrokerRefused => Condition::BrokerRefused,
        };
        let idx = self.index(AlarmId {
            subject: Subject::System,
            condition,
        });
        self.set_condition(idx, self.now, present, None, None, None);
        self.settle();
    }

    /// A command arrived at `now`. Rejected commands change nothing.
    pub fn handle_command(&mut self, now: Instant, command: Command) -> Result<(), CommandError> {
        self.advance(now);
        let result = self.command(command);
        self.settle();
        result
    }

    fn command(&mut self, command: Command) -> Result<(), CommandError> {
        let now = self.now;
        let phase = self.session.phase;
        let wrong_phase = || CommandError::WrongPhase {
            command: command.key(),
            phase,
        };
        match command {
            Command::Acknowledge { alarm, by } => self.acknowledge(now, alarm, by),
            Command::AcknowledgeAll { by } => self.acknowledge_all(now, by),
            Command::PauseAudio { duration } => {
                if duration.is_zero() {
                    return Err(CommandError::PauseEmpty);
                }
                if duration > self.cfg.max_audio_pause {
                    return Err(CommandError::PauseTooLong {
                        asked: duration,
                        max: self.cfg.max_audio_pause,
                    });
                }
                let ceiling = self
                    .slots
                    .iter()
                    .filter(|s| s.present())
                    .map(|s| s.priority)
                    .max()
                    .unwrap_or(Priority::Low);
                let until = now + duration;
                self.audio = Audio::Paused { until, ceiling };
                self.wake_at(until);
                self.emit(now, EventKind::Audio(AudioEvent::Paused { until, ceiling }));
                Ok(())
            }
            Command::ResumeAudio => {
                if self.audio == Audio::On {
                    return Err(CommandError::NotPaused);
                }
                self.resume_audio(now, ResumeReason::Command);
                Ok(())
            }
            Command::StartSession { session } => {
                if !matches!(phase, SessionPhase::Idle | SessionPhase::Ended) {
                    return Err(wrong_phase());
                }
                if session.is_empty() {
                    return Err(CommandError::BadSessionId);
                }
                for v in &mut self.vitals {
                    v.baseline = None;
                    v.collector.clear();
                    v.collecting_since = None;
                }
                self.session = Session {
                    phase: SessionPhase::Baseline,
                    id: session,
                    doses: 0,
                    within_since: None,
                    ready: false,
                };
                self.emit_phase(now);
                // Trend alarms of an earlier session no longer apply.
                self.clear_trend_alarms(now);
                Ok(())
            }
            Command::Dose {
                route,
                amount,
                note,
            } => {
                if !matches!(phase, SessionPhase::Baseline | SessionPhase::Dosing) {
                    return Err(wrong_phase());
                }
                if let Some(a) = amount.filter(|a| !a.is_valid()) {
                    return Err(CommandError::BadDoseAmount { value: a.value });
                }
                if phase == SessionPhase::Baseline {
                    self.fix_baselines(now);
                    self.session.phase = SessionPhase::Dosing;
                    self.emit_phase(now);
                }
                self.session.doses = self.session.doses.saturating_add(1);
                let number = self.session.doses;
                self.emit(
                    now,
                    EventKind::Session(SessionEvent::Dose {
                        number,
                        route,
                        amount,
                        note,
                    }),
                );
                Ok(())
            }
            Command::SetBaseline { vital, value } => {
                if matches!(phase, SessionPhase::Idle | SessionPhase::Ended) {
                    return Err(wrong_phase());
                }
                let r = self.cfg.rules(vital);
                if !(value.is_finite() && value >= r.plausible_min && value <= r.plausible_max) {
                    return Err(CommandError::BadBaseline { vital, value });
                }
                self.vitals[vital.index()].baseline = Some(value);
                self.emit(
                    now,
                    EventKind::Session(SessionEvent::Baseline {
                        vital,
                        value,
                        readings: 0,
                    }),
                );
                Ok(())
            }
            Command::StartRecovery => {
                if phase != SessionPhase::Dosing {
                    return Err(wrong_phase());
                }
                self.session.phase = SessionPhase::Recovery;
                self.emit_phase(now);
                // Discharge is judged from here on, on the latest values.
                self.update_discharge(now);
                Ok(())
            }
            Command::EndSession => {
                if matches!(phase, SessionPhase::Idle | SessionPhase::Ended) {
                    return Err(wrong_phase());
                }
                self.session.phase = SessionPhase::Ended;
                self.session.within_since = None;
                self.emit_phase(now);
                self.clear_trend_alarms(now);
                Ok(())
            }
        }
    }

    // ----- readings -------------------------------------------------------

    fn on_continuous(&mut self, now: Instant, reading: Reading, vital: Vital, sample: Sample) {
        let vi = vital.index();
        let rules = self.cfg.vitals[vi];
        if !rules.enabled {
            self.stats.ignored += 1;
            return;
        }
        // An old value (measured long before it was sent) is shown but is
        // no sign of a live measurement: it does not hold off "stale", and
        // the device's last word on the sensor stands.
        let current = sample.validity != Validity::Old;
        if current {
            self.vitals[vi].last_seen = Some(now);
            self.wake_at(now + rules.stale_after);
            let stale = self.index(AlarmId::vital(vital, Condition::Stale));
            self.set_condition(stale, now, false, None, None, None);
        } else if self.vitals[vi].last_seen.is_none() {
            // Only old values so far: the vital goes stale from the first.
            self.vitals[vi].last_seen = Some(now);
            self.wake_at(now + rules.stale_after);
        }

        let judged = self.judge(sample, &rules);
        // Apnoea: a rate below 1 /min, or a module that measures but finds
        // no rate (`unavailable`), is no breath (see `ApnoeaRule`).
        let no_breath = vital == Vital::RespRate
            && self.cfg.apnoea.enabled
            && match rules.alarm_value(judged) {
                Some(v) => below(v, ApnoeaRule::NO_BREATH_BELOW),
                None => judged.validity == Validity::Unavailable,
            };
        if current {
            // "No rate" from a measuring module is physiology (apnoea),
            // not missing data.
            let data = if no_breath && judged.validity == Validity::Unavailable {
                Sample::valid(0.0)
            } else {
                judged
            };
            self.set_data_conditions(Subject::Vital(vital), now, data, rules.questionable);
        }
        if vital == Vital::RespRate {
            let idx = self.index(AlarmId::vital(vital, Condition::Apnoea));
            if !self.cfg.apnoea.enabled {
                // Turned off by a reload while present.
                self.set_condition(idx, now, false, None, None, None);
            } else if no_breath {
                // The event's value is the rate: 0 when the module found none.
                let value = rules.alarm_value(judged);
                let doubt =
                    (value.is_some() && !judged.validity.is_valid()).then_some(judged.validity);
                self.set_condition(idx, now, true, Some(value.unwrap_or(0.0)), None, doubt);
            } else if let Some(rate) = rules.alarm_value(judged) {
                // Ends with the rate that resumed, as a limit alarm ends with
                // the value back inside (not the 0 it started with).
                self.set_condition(idx, now, false, Some(rate), None, None);
            }
        }

        match rules.alarm_value(judged).filter(|_| !no_breath) {
            Some(v) => {
                // A questionable value drives the alarms (marked so) but is
                // no baseline and no sign of recovery.
                let doubt = (!judged.validity.is_valid()).then_some(judged.validity);
                self.vitals[vi].last_valid = judged.get();
                self.check_limits(now, vital, &rules, v, None, doubt);
                self.check_baseline(now, vital, &rules, v, doubt);
                self.check_rate(now, vital, &rules, v, doubt);
                if doubt.is_none() && self.session.phase == SessionPhase::Baseline {
                    let st = &mut self.vitals[vi];
                    st.collector.push(v);
                    st.collecting_since.get_or_insert(now);
                }
            }
            None => {
                self.vitals[vi].last_valid = None;
                // An invalid value neither confirms nor clears a physiological
                // condition: pending ones restart, active ones stay. (A
                // no-breath reading is judged by the apnoea rule alone.)
                for c in Condition::PHYSIOLOGICAL {
                    if no_breath && c == Condition::Apnoea {
                        continue;
                    }
                    let idx = self.index(AlarmId::vital(vital, c));
                    if let SlotState::Pending { .. } = self.slots[idx].state {
                        self.slots[idx].state = SlotState::Inactive;
                    }
                }
            }
        }
        let mut reading = reading;
        if let Some(m) = Measurement::of_continuous(vital, judged) {
            reading.measurement = m;
        }
        self.emit(now, EventKind::Reading(reading));
        self.update_discharge(now);
    }

    fn on_nibp(&mut self, now: Instant, reading: Reading, n: Nibp) {
        let repeat = match self.nibp_last {
            None => false,
            Some(last) => match (n.measured_at, last.measured_at) {
                (Some(a), Some(b)) => a == b,
                _ => same_nibp_values(&n, &last),
            },
        };
        self.nibp_last = Some(n);
        if repeat {
            self.stats.nibp_repeats += 1;
            return;
        }
        if !Vital::ALL
            .iter()
            .any(|v| v.is_nibp() && self.cfg.rules(*v).enabled)
        {
            self.stats.ignored += 1;
            return;
        }
        if n.is_old() {
            // Measured long before it was sent: shown, never judged, and no
            // new measurement. The cycle watch goes on (it starts here when
            // it was not running), so a missing fresh NIBP is overdue.
            self.stats.not_valid += 1;
            if self.nibp_last_new.is_none() {
                self.nibp_last_new = Some(now);
                if self.cfg.nibp.watch_cycle {
                    self.wake_at(now + self.cfg.nibp.cycle + self.cfg.nibp.grace);
                }
            }
            self.emit(now, EventKind::Reading(reading));
            return;
        }
        let previous = self.nibp_last_new.replace(now);
        if self.cfg.nibp.watch_cycle {
            self.wake_at(now + self.cfg.nibp.cycle + self.cfg.nibp.grace);
        }
        let overdue = self.index(AlarmId {
            subject: Subject::Nibp,
            condition: Condition::CycleOverdue,
        });
        self.set_condition(overdue, now, false, None, None, None);

        // One measurement is one determination. A component that carries a
        // value the device flags or that is implausible (a diastolic of 10)
        // makes the whole measurement an artifact: none of its components
        // drives a physiological alarm. A component that is merely missing
        // (no value, whatever the reason) leaves the others alone, so
        // systolic and diastolic alarm without a mean. A questionable
        // component whose policy lets it alarm makes the whole measurement
        // questionable: its numbers alarm, every one marked questionable.
        let mut judged_nibp = n;
        let mut taint: Option<Sample> = None;
        let mut missing: Option<Sample> = None;
        let mut any_valid = false;
        let mut doubtful = false;
        // Components whose number may drive alarms.
        let mut usable = [false; 3];
        for (i, (vital, slot)) in [
            (Vital::NibpSystolic, &mut judged_nibp.systolic),
            (Vital::NibpDiastolic, &mut judged_nibp.diastolic),
            (Vital::NibpMean, &mut judged_nibp.mean),
        ]
        .into_iter()
        .enumerate()
        {
            let rules = self.cfg.vitals[vital.index()];
            if !rules.enabled {
                continue;
            }
            let judged = self.judge(*slot, &rules);
            usable[i] = rules.alarm_value(judged).is_some();
            *slot = judged;
            let worse = |w: Option<Sample>| {
                w.is_none_or(|w: Sample| severity(judged.validity) > severity(w.validity))
            };
            if judged.validity.is_valid() {
                any_valid = true;
            } else if usable[i] {
                any_valid = true;
                doubtful = true;
            } else if judged.value.is_finite() {
                if worse(taint) {
                    taint = Some(judged);
                }
            } else if worse(missing) {
                missing = Some(judged);
            }
        }
        let components = [
            &mut judged_nibp.systolic,
            &mut judged_nibp.diastolic,
            &mut judged_nibp.mean,
        ];
        if taint.is_some() {
            for (slot, usable) in components.into_iter().zip(usable) {
                if usable || slot.get().is_some() {
                    *slot = Sample::new(slot.value, Validity::Artifact);
                }
            }
        } else if doubtful {
            for slot in components {
                if let Some(v) = slot.get() {
                    *slot = Sample::new(v, Validity::Questionable);
                }
            }
        }
        // The technical alarm says why the measurement gives no physiology
        // (its flagged component, or when nothing is valid why it is
        // empty), or why its alarms are marked questionable.
        let technical = match (taint, any_valid) {
            (Some(t), _) => t,
            (None, true) if doubtful => Sample::missing(Validity::Questionable),
            (None, true) => Sample::valid(0.0),
            (None, false) => missing.unwrap_or(Sample::valid(0.0)),
        };
        let policy = if taint.is_none() && doubtful {
            QuestionablePolicy::Alarm
        } else {
            QuestionablePolicy::Off
        };
        let parts = [
            (Vital::NibpSystolic, judged_nibp.systolic),
            (Vital::NibpDiastolic, judged_nibp.diastolic),
            (Vital::NibpMean, judged_nibp.mean),
        ];
        // Limits first (all components, then the combined high), so that
        // the baseline rules see which limit alarms hold.
        let mut high = [None; 2];
        let mut doubt = None;
        for (i, (vital, judged)) in parts.into_iter().enumerate() {
            let rules = self.cfg.vitals[vital.index()];
            if !rules.enabled {
                continue;
            }
            self.vitals[vital.index()].last_seen = Some(now);
            match rules.alarm_value(judged) {
                Some(v) => {
                    let d = (!judged.validity.is_valid()).then_some(judged.validity);
                    doubt = doubt.or(d);
                    self.vitals[vital.index()].last_valid = judged.get();
                    let h = self.check_limits(now, vital, &rules, v, previous, d);
                    if let Some(slot) = high.get_mut(i) {
                        *slot = h.map(|present| (v, present));
                    }
                }
                None => {
                    self.vitals[vital.index()].last_valid = None;
                    self.vitals[vital.index()].prev_beyond = [None; 2];
                }
            }
        }
        if high.iter().any(Option::is_some) {
            self.set_combined_high(now, high, doubt);
        }
        for (vital, judged) in parts {
            let rules = self.cfg.vitals[vital.index()];
            if !rules.enabled {
                continue;
            }
            if let Some(v) = rules.alarm_value(judged) {
                let d = (!judged.validity.is_valid()).then_some(judged.validity);
                self.check_baseline(now, vital, &rules, v, d);
                if d.is_none() && self.session.phase == SessionPhase::Baseline {
                    self.vitals[vital.index()].collector.push(v);
                }
            }
        }
        self.set_data_conditions(Subject::Nibp, now, technical, policy);
        let mut reading = reading;
        reading.measurement = Measurement::Nibp(judged_nibp);
        self.emit(now, EventKind::Reading(reading));
        self.update_discharge(now);
    }

    /// Applies the plausibility range: a value that may drive alarms
    /// (valid, or questionable under the policy `alarm`) outside it is an
    /// artifact.
    fn judge(&mut self, sample: Sample, rules: &VitalRules) -> Sample {
        match rules.alarm_value(sample) {
            Some(v) if v < rules.plausible_min || v > rules.plausible_max => {
                self.stats.implausible += 1;
                Sample::new(v, Validity::Artifact)
            }
            Some(_) if sample.validity.is_valid() => sample,
            _ => {
                self.stats.not_valid += 1;
                sample
            }
        }
    }

    /// Raises or clears the sensor-off / invalid / artifact / questionable
    /// alarms of a subject. A questionable value raises `questionable` when
    /// `policy` lets it drive physiological alarms, `invalid` otherwise.
    ///
    /// A technical alarm carries no physiological value: a number the device
    /// still sends beside "sensor off" (often the last valid one) or an
    /// implausible one is not a reading, and an event that showed it would
    /// read as one. The validity says why.
    fn set_data_conditions(
        &mut self,
        subject: Subject,
        now: Instant,
        sample: Sample,
        policy: QuestionablePolicy,
    ) {
        let raised = match sample.validity {
            Validity::Questionable if policy == QuestionablePolicy::Alarm => {
                Some(Condition::Questionable)
            }
            v => Condition::for_validity(v),
        };
        for condition in [
            Condition::SensorOff,
            Condition::Invalid,
            Condition::Artifact,
            Condition::Questionable,
        ] {
            let idx = self.index(AlarmId { subject, condition });
            let present = raised == Some(condition);
            let validity = present.then_some(sample.validity);
            self.set_condition(idx, now, present, None, None, validity);
        }
    }

    /// Threshold and critical limits. For NIBP, `previous` is the arrival of
    /// the previous new measurement (for confirmation). `doubt` is the
    /// value's validity when it is not plain valid (questionable).
    ///
    /// With `nibp.combined_high`, the systolic and diastolic `high` tier is
    /// not raised here: its presence for this component is returned (`None`
    /// when it has no high limit or is not such a component) for
    /// [`Engine::set_combined_high`].
    fn check_limits(
        &mut self,
        now: Instant,
        vital: Vital,
        rules: &VitalRules,
        v: f32,
        previous: Option<Instant>,
        doubt: Option<Validity>,
    ) -> Option<bool> {
        let combined = self.cfg.nibp.combined_high
            && matches!(vital, Vital::NibpSystolic | Vital::NibpDiastolic);
        let combined_idx = self.index(AlarmId {
            subject: Subject::Nibp,
            condition: Condition::High,
        });
        let mut combined_present = None;
        let h = rules.hysteresis;
        for (condition, limit, low) in [
            (Condition::Low, rules.low, true),
            (Condition::High, rules.high, false),
            (Condition::CriticalLow, rules.critical_low, true),
            (Condition::CriticalHigh, rules.critical_high, false),
        ] {
            let Some(limit) = limit else { continue };
            let idx = self.index(AlarmId::vital(vital, condition));
            let into_combined = combined && condition == Condition::High;
            // The alarm that stands for this condition: the component's own
            // or the combined one.
            let engaged = if into_combined {
                self.slots[combined_idx].engaged()
            } else {
                self.slots[idx].engaged()
            };
            let beyond = if low {
                below(v, limit.value)
            } else {
                above(v, limit.value)
            };
            // An active alarm ends once the value is at least `h` back inside.
            let mut present = if engaged {
                if low {
                    below(v, limit.value + h)
                } else {
                    above(v, limit.value - h)
                }
            } else {
                beyond
            };
            let tiered = matches!(condition, Condition::Low | Condition::High);
            if vital.is_nibp() && tiered && self.cfg.nibp.confirm.applies(low) {
                if let Some(window) = self.cfg.nibp.confirm_window {
                    let side = usize::from(!low);
                    let st = &mut self.vitals[vital.index()];
                    let confirmed = match (st.prev_beyond[side], previous) {
                        (Some(p), Some(prev)) => p == prev && now - prev <= window,
                        _ => false,
                    };
                    st.prev_beyond[side] = beyond.then_some(now);
                    if !engaged {
                        present = beyond && confirmed;
                    }
                }
            }
            if into_combined {
                combined_present = Some(present);
                // Left over from a configuration that kept them apart.
                self.set_condition(idx, now, false, None, None, None);
            } else {
                self.set_condition(idx, now, present, Some(v), Some(limit.value), doubt);
            }
        }
        if !self.cfg.nibp.combined_high && vital.is_nibp() {
            // Left over from a configuration that combined them.
            self.set_condition(combined_idx, now, false, None, None, None);
        }
        combined_present
    }

    /// The combined `nibp.high`: present while either component is above
    /// its high limit (after confirmation; once active, until both are the
    /// hysteresis back below). `high` holds each component's value and
    /// presence (systolic, diastolic). The event's own value and limit are
    /// the systolic's when it is over its limit, else the diastolic's.
    fn set_combined_high(
        &mut self,
        now: Instant,
        high: [Option<(f32, bool)>; 2],
        doubt: Option<Validity>,
    ) {
        let idx = self.index(AlarmId {
            subject: Subject::Nibp,
            condition: Condition::High,
        });
        let component = |i: usize, vital: Vital| ComponentValue {
            vital,
            value: high[i].map(|(v, _)| v),
            limit: self.cfg.rules(vital).high.map(|l| l.value),
        };
        let components = [
            component(0, Vital::NibpSystolic),
            component(1, Vital::NibpDiastolic),
        ];
        let present = high.iter().flatten().any(|&(_, p)| p);
        let lead = high
            .iter()
            .position(|h| h.is_some_and(|(_, p)| p))
            .or_else(|| high.iter().position(Option::is_some))
            .unwrap_or(0);
        self.slots[idx].components = Some(components);
        let c = components[lead];
        self.set_condition(idx, now, present, c.value, c.limit, doubt);
    }

    /// Whether a baseline alarm of `vital` is covered by a limit alarm on
    /// the same side that is active with at least its priority (the more
    /// severe condition: one alarm per condition, IEC 60601-1-8).
    fn baseline_inhibited(&self, vital: Vital, rise: bool, priority: Priority) -> bool {
        let conditions = if rise {
            [Condition::High, Condition::CriticalHigh]
        } else {
            [Condition::Low, Condition::CriticalLow]
        };
        let covering = |id: AlarmId| {
            let s = &self.slots[self.index(id)];
            s.engaged() && s.priority >= priority
        };
        conditions
            .into_iter()
            .any(|c| covering(AlarmId::vital(vital, c)))
            || (rise
                && matches!(vital, Vital::NibpSystolic | Vital::NibpDiastolic)
                && covering(AlarmId {
                    subject: Subject::Nibp,
                    condition: Condition::High,
                }))
    }

    fn check_baseline(
        &mut self,
        now: Instant,
        vital: Vital,
        rules: &VitalRules,
        v: f32,
        doubt: Option<Validity>,
    ) {
        if !matches!(
            self.session.phase,
            SessionPhase::Dosing | SessionPhase::Recovery
        ) {
            return;
        }
        let Some(base) = self.vitals[vital.index()].baseline else {
            return;
        };
        let h = rules.hysteresis;
        if let Some(t) = rules.baseline.rise_threshold(base) {
            let idx = self.index(AlarmId::vital(vital, Condition::BaselineRise));
            let present = if self.slots[idx].engaged() {
                above(v, t - h)
            } else {
                above(v, t)
            };
            let inhibited = self.baseline_inhibited(vital, true, self.slots[idx].base_priority);
            self.set_condition(idx, now, present && !inhibited, Some(v), Some(t), doubt);
        }
        if let Some(t) = rules.baseline.fall_threshold(base) {
            let idx = self.index(AlarmId::vital(vital, Condition::BaselineFall));
            let present = if self.slots[idx].engaged() {
                below(v, t + h)
            } else {
                below(v, t)
            };
            let inhibited = self.baseline_inhibited(vital, false, self.slots[idx].base_priority);
            self.set_condition(idx, now, present && !inhibited, Some(v), Some(t), doubt);
        }
    }

    fn check_rate(
        &mut self,
        now: Instant,
        vital: Vital,
        rules: &VitalRules,
        v: f32,
        doubt: Option<Validity>,
    ) {
        let (Some(rule), Some(window)) = (rules.rate, self.vitals[vital.index()].rate.as_mut())
        else {
            return;
        };
        let (lo, hi) = window.push(now, v);
        // Like limits, an active rate alarm ends only once the change is
        // back by the vital's hysteresis: whole-percent SpO2 hovering at the
        // threshold must not flap.
        let h = rules.hysteresis;
        for (limit, condition, change) in [
            (rule.rise, Condition::RateRise, v - lo),
            (rule.fall, Condition::RateFall, hi - v),
        ] {
            let Some(limit) = limit else { continue };
            let idx = self.index(AlarmId::vital(vital, condition));
            let bound = if self.slots[idx].engaged() {
                limit - h
            } else {
                limit
            };
            self.set_condition(
                idx,
                now,
                above(change, bound),
                Some(change),
                Some(limit),
                doubt,
            );
        }
    }

    fn on_frames(&mut self, now: Instant, source: SourceId, good: u32, dropped: u32) {
        let rule = self.cfg.link;
        let idx = self.index(AlarmId {
            subject: Subject::Source(source),
            condition: Condition::LinkErrors,
        });
        let st = &mut self.sources[source.index()];
        if now - st.window_start >= rule.window {
            // A whole window has passed: a quiet one ends the alarm.
            let was_bad = is_bad(st.good, st.dropped, &rule);
            *st = SourceState {
                window_start: now,
                good: 0,
                dropped: 0,
                health: st.health,
            };
            if !was_bad {
                self.set_condition(idx, now, false, None, None, None);
            }
        }
        let st = &mut self.sources[source.index()];
        st.good = st.good.saturating_add(good);
        st.dropped = st.dropped.saturating_add(dropped);
        if is_bad(st.good, st.dropped, &rule) {
            let total = st.good.saturating_add(st.dropped).max(1);
            let rate = st.dropped as f32 / total as f32;
            self.set_condition(idx, now, true, Some(rate), Some(rule.max_error_rate), None);
        }
    }

    // ----- sessions -------------------------------------------------------

    fn emit_phase(&mut self, now: Instant) {
        let (phase, session) = (self.session.phase, self.session.id);
        self.emit(
            now,
            EventKind::Session(SessionEvent::Phase { phase, session }),
        );
    }

    /// At the first dose: each vital's baseline is the median of its
    /// baseline-phase readings when there are enough of them
    /// ([`BaselineMinimum`]). A vital with too few gets none; when it has a
    /// trend rule or had some readings, the advisory `BaselineIncomplete`
    /// event names it.
    fn fix_baselines(&mut self, now: Instant) {
        let min = self.cfg.baseline_min;
        let mut missing = [false; Vital::COUNT];
        for vital in Vital::ALL {
            let rules = self.cfg.vitals[vital.index()];
            let st = &mut self.vitals[vital.index()];
            if st.baseline.is_some() {
                // Set by command during the baseline phase: keep it.
                continue;
            }
            let enough = if vital.is_continuous() {
                st.collecting_since
                    .is_some_and(|since| now - since >= min.continuous)
            } else {
                st.collector.seen() >= min.nibp_readings
            };
            if !enough {
                let wanted = rules.baseline.is_enabled() || st.collector.seen() > 0;
                missing[vital.index()] = rules.enabled && wanted;
                continue;
            }
            let Some(value) = st.collector.median(&mut self.scratch) else {
                continue;
            };
            st.baseline = Some(value);
            let readings = st.collector.seen();
            self.emit(
                now,
                EventKind::Session(SessionEvent::Baseline {
                    vital,
                    value,
                    readings,
                }),
            );
        }
        if missing.contains(&true) {
            self.emit(
                now,
                EventKind::Session(SessionEvent::BaselineIncomplete { missing }),
            );
        }
    }

    fn clear_trend_alarms(&mut self, now: Instant) {
        for vital in Vital::ALL {
            for c in [Condition::BaselineRise, Condition::BaselineFall] {
                let idx = self.index(AlarmId::vital(vital, c));
                // Forced end, even when latching: the baseline is gone.
                if self.slots[idx].present() {
                    self.end(idx, now);
                } else {
                    self.slots[idx].state = SlotState::Inactive;
                }
            }
        }
    }

    /// Discharge readiness is judged only in recovery: vitals back near
    /// baseline while the dose still acts (dosing) mean nothing for
    /// discharge.
    fn update_discharge(&mut self, now: Instant) {
        if self.session.phase != SessionPhase::Recovery {
            return;
        }
        let pct = self.cfg.discharge.within_percent / 100.0;
        let mut any = false;
        let mut all = true;
        for (st, rules) in self.vitals.iter().zip(&self.cfg.vitals) {
            if !rules.discharge {
                continue;
            }
            if let Some(base) = st.baseline {
                any = true;
                match st.last_valid {
                    Some(v) if !above((v - base).abs(), base.abs() * pct) => {}
                    _ => all = false,
                }
            }
        }
        if any && all {
            if self.session.within_since.is_none() {
                self.session.within_since = Some(now);
                self.wake_at(now + self.cfg.discharge.hold);
            }
        } else {
            self.session.within_since = None;
            if self.session.ready {
                self.session.ready = false;
                self.emit(
                    now,
                    EventKind::Session(SessionEvent::DischargeReadiness { ready: false }),
                );
            }
        }
    }

    // ----- alarm lifecycle ------------------------------------------------

    fn index(&self, id: AlarmId) -> usize {
        let subject = match id.subject {
            Subject::Vital(v) => v.index(),
            Subject::Nibp => Vital::COUNT,
            Subject::System => Vital::COUNT + 1,
            Subject::Source(s) => FIXED_SUBJECTS + s.index(),
        };
        subject * Condition::COUNT + id.condition.index()
    }

    /// The core of the lifecycle: the condition of alarm `idx` is (or is not)
    /// present at `at`.
    fn set_condition(
        &mut self,
        idx: usize,
        at: Instant,
        present: bool,
        value: Option<f32>,
        limit: Option<f32>,
        validity: Option<Validity>,
    ) {
        let slot = &mut self.slots[idx];
        if value.is_some() {
            slot.value = value;
        }
        if limit.is_some() {
            slot.limit = limit;
        }
        if present {
            slot.validity = validity;
            match slot.state {
                SlotState::Inactive => {
                    slot.onset = at;
                    if slot.delay.is_zero() {
                        self.activate(idx, at);
                    } else {
                        let deadline = at + slot.delay;
                        slot.state = SlotState::Pending { deadline };
                        self.wake_at(deadline);
                    }
                }
                SlotState::Pending { .. } | SlotState::Active => {}
                SlotState::Latched => {
                    slot.state = SlotState::Active;
                    self.emit_alarm(idx, at, Phase::Update);
                }
            }
        } else {
            match slot.state {
                SlotState::Inactive | SlotState::Latched => {}
                SlotState::Pending { .. } => slot.state = SlotState::Inactive,
                SlotState::Active => {
                    if slot.latching && slot.ack.is_none() {
                        slot.state = SlotState::Latched;
                        slot.realert_at = Instant::MAX;
                        self.emit_alarm(idx, at, Phase::Update);
                    } else {
                        self.end(idx, at);
                    }
                }
            }
        }
    }

    fn activate(&mut self, idx: usize, at: Instant) {
        let escalate_after = self.cfg.escalate_after;
        let slot = &mut self.slots[idx];
        slot.state = SlotState::Active;
        slot.determined = at;
        slot.ack = None;
        slot.priority = slot.base_priority;
        slot.realert_at = Instant::MAX;
        slot.escalate_at = escalate_after.map_or(Instant::MAX, |d| at + d);
        let (priority, id, escalate_at) = (slot.priority, slot.id, slot.escalate_at);
        self.wake_at(escalate_at);
        self.emit_alarm(idx, at, Phase::Start);
        if let Audio::Paused { ceiling, .. } = self.audio {
            if priority > ceiling {
                self.resume_audio(at, ResumeReason::BreakThrough(id));
            }
        }
    }

    fn end(&mut self, idx: usize, at: Instant) {
        let slot = &mut self.slots[idx];
        slot.state = SlotState::Inactive;
        slot.realert_at = Instant::MAX;
        slot.escalate_at = Instant::MAX;
        self.emit_alarm(idx, at, Phase::End);
        self.slots[idx].ack = None;
    }

    fn acknowledge(
        &mut self,
        now: Instant,
        alarm: AlarmId,
        by: ShortText<32>,
    ) -> Result<(), CommandError> {
        let in_table = match alarm.subject {
            Subject::Source(s) => s.index() < self.sources.len(),
            _ => true,
        };
        if !in_table {
            return Err(self.not_active(alarm));
        }
        let idx = self.index(alarm);
        let realert = self.cfg.realert_after;
        let slot = &mut self.slots[idx];
        match slot.state {
            SlotState::Active if slot.ack.is_some() => Ok(()),
            SlotState::Active => {
                slot.ack = Some(Ack { by, at: now });
                slot.escalate_at = Instant::MAX;
                slot.realert_at = now + realert;
                let t = slot.realert_at;
                self.wake_at(t);
                self.emit_alarm(idx, now, Phase::Acknowledge);
                Ok(())
            }
            SlotState::Latched => {
                slot.ack = Some(Ack { by, at: now });
                self.emit_alarm(idx, now, Phase::Acknowledge);
                self.end(idx, now);
                Ok(())
            }
            SlotState::Inactive | SlotState::Pending { .. } => Err(self.not_active(alarm)),
        }
    }

    /// Acknowledges every present alarm that waits for it, highest priority
    /// first (then oldest), each with its own `acknowledge` event, exactly as
    /// one acknowledgement each would. Alarms already acknowledged stay so
    /// (their re-alert time is not reset). With no alarm present at all the
    /// command is rejected, so a display learns that nothing was there.
    fn acknowledge_all(&mut self, now: Instant, by: ShortText<32>) -> Result<(), CommandError> {
        if !self.slots.iter().any(Slot::present) {
            return Err(CommandError::NothingToAcknowledge);
        }
        // A short list (only present alarms): a command may allocate, the
        // reading path does not.
        let mut waiting: Vec<(Priority, Instant, AlarmId)> = self
            .slots
            .iter()
            .filter(|s| {
                matches!(s.state, SlotState::Latched)
                    || (matches!(s.state, SlotState::Active) && s.ack.is_none())
            })
            .map(|s| (s.priority, s.onset, s.id))
            .collect();
        waiting.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        for (_, _, id) in waiting {
            self.acknowledge(now, id, by)?;
        }
        Ok(())
    }

    fn not_active(&self, alarm: AlarmId) -> CommandError {
        CommandError::NotActive {
            alarm: alarm.key(&self.cfg.source_names),
        }
    }

    fn resume_audio(&mut self, at: Instant, reason: ResumeReason) {
        self.audio = Audio::On;
        self.emit(at, EventKind::Audio(AudioEvent::Resumed { reason }));
    }

    // ----- timers ---------------------------------------------------------

    fn wake_at(&mut self, t: Instant) {
        if t < self.wake {
            self.wake = t;
        }
    }

    /// Runs the timers due before an input at `now` (strictly before: an
    /// input at the very instant of a deadline is seen first).
    fn advance(&mut self, now: Instant) {
        self.run_timers(now, false);
    }

    /// After an input at `self.now`: runs the timers due at that very instant.
    fn settle(&mut self) {
        self.run_timers(self.now, true);
    }

    fn run_timers(&mut self, now: Instant, inclusive: bool) {
        if now > self.now {
            self.now = now;
        }
        let now = self.now;
        let due = |t: Instant| if inclusive { t <= now } else { t < now };
        if !due(self.wake) {
            return;
        }
        loop {
            match self.next_timer() {
                Some((t, timer)) if due(t) => self.fire(t, timer),
                next => {
                    self.wake = next.map_or(Instant::MAX, |(t, _)| t);
                    return;
                }
            }
        }
    }

    /// The earliest pending timer (exact: a full scan).
    fn next_timer(&self) -> Option<(Instant, Timer)> {
        let mut best: Option<(Instant, Timer)> = None;
        let mut consider = |t: Instant, timer: Timer| {
            if t != Instant::MAX && best.is_none_or(|(b, _)| t < b) {
                best = Some((t, timer));
            }
        };
        for (i, s) in self.slots.iter().enumerate() {
            match s.state {
                SlotState::Pending { deadline } => consider(deadline, Timer::Pending(i)),
                SlotState::Active => {
                    consider(s.realert_at, Timer::Realert(i));
                    consider(s.escalate_at, Timer::Escalate(i));
                }
                SlotState::Latched => consider(s.escalate_at, Timer::Escalate(i)),
                SlotState::Inactive => {}
            }
        }
        for vital in Vital::ALL {
            if !vital.is_continuous() || !self.cfg.rules(vital).enabled {
                continue;
            }
            if let Some(seen) = self.vitals[vital.index()].last_seen {
                let idx = self.index(AlarmId::vital(vital, Condition::Stale));
                if !self.slots[idx].present() {
                    consider(
                        seen + self.cfg.rules(vital).stale_after,
                        Timer::Stale(vital),
                    );
                }
            }
        }
        if let (true, Some(last)) = (self.cfg.nibp.watch_cycle, self.nibp_last_new) {
            let idx = self.index(AlarmId {
                subject: Subject::Nibp,
                condition: Condition::CycleOverdue,
            });
            if !self.slots[idx].present() {
                consider(
                    last + self.cfg.nibp.cycle + self.cfg.nibp.grace,
                    Timer::NibpOverdue,
                );
            }
        }
        if let Audio::Paused { until, .. } = self.audio {
            consider(until, Timer::AudioResume);
        }
        if let (Some(since), false) = (self.session.within_since, self.session.ready) {
            consider(since + self.cfg.discharge.hold, Timer::Discharge);
        }
        best
    }

    fn fire(&mut self, t: Instant, timer: Timer) {
        match timer {
            Timer::Pending(i) => {
                // A trend alarm whose limit alarm became active meanwhile
                // (at the same deadline, or earlier) is covered by it.
                let id = self.slots[i].id;
                let covered = match (id.subject, id.condition) {
                    (
                        Subject::Vital(v),
                        c @ (Condition::BaselineRise | Condition::BaselineFall),
                    ) => self.baseline_inhibited(
                        v,
                        c == Condition::BaselineRise,
                        self.slots[i].base_priority,
                    ),
                    _ => false,
                };
                if covered {
                    self.slots[i].state = SlotState::Inactive;
                } else {
                    self.activate(i, t);
                }
            }
            Timer::Realert(i) => {
                let escalate_after = self.cfg.escalate_after;
                let s = &mut self.slots[i];
                s.ack = None;
                s.realert_at = Instant::MAX;
                s.escalate_at = escalate_after.map_or(Instant::MAX, |d| t + d);
                self.emit_alarm(i, t, Phase::ReAlert);
            }
            Timer::Escalate(i) => {
                let escalate_after = self.cfg.escalate_after;
                let s = &mut self.slots[i];
                s.priority = s.priority.raised();
                s.escalate_at = match escalate_after {
                    Some(d) if s.priority < Priority::High => t + d,
                    _ => Instant::MAX,
                };
                self.emit_alarm(i, t, Phase::Escalate);
            }
            Timer::Stale(vital) => {
                let idx = self.index(AlarmId::vital(vital, Condition::Stale));
                self.vitals[vital.index()].last_valid = None;
                self.set_condition(idx, t, true, None, None, None);
                // Physiological conditions cannot be confirmed without data.
                for c in Condition::PHYSIOLOGICAL {
                    let j = self.index(AlarmId::vital(vital, c));
                    if let SlotState::Pending { .. } = self.slots[j].state {
                        self.slots[j].state = SlotState::Inactive;
                    }
                }
                self.update_discharge(t);
            }
            Timer::NibpOverdue => {
                let idx = self.index(AlarmId {
                    subject: Subject::Nibp,
                    condition: Condition::CycleOverdue,
                });
                self.set_condition(idx, t, true, None, None, None);
            }
            Timer::AudioResume => self.resume_audio(t, ResumeReason::Expired),
            Timer::Discharge => {
                self.session.ready = true;
                self.emit(
                    t,
                    EventKind::Session(SessionEvent::DischargeReadiness { ready: true }),
                );
            }
        }
    }

    // ----- output ---------------------------------------------------------

    fn emit_alarm(&mut self, idx: usize, at: Instant, phase: Phase) {
        let ev = view(&self.slots[idx], phase);
        self.emit(at, EventKind::Alarm(ev));
    }

    fn emit(&mut self, at: Instant, kind: EventKind) {
        self.seq += 1;
        self.stats.events += 1;
        self.events.push_back(Event {
            seq: self.seq,
            at,
            kind,
        });
    }
}

fn subject_at(i: usize) -> Subject {
    if i < Vital::COUNT {
        Subject::Vital(Vital::ALL[i])
    } else if i == Vital::COUNT {
        Subject::Nibp
    } else if i == Vital::COUNT + 1 {
        Subject::System
    } else {
        Subject::Source(SourceId((i - FIXED_SUBJECTS) as u16))
    }
}

fn is_bad(good: u32, dropped: u32, rule: &rules::LinkRules) -> bool {
    let total = good.saturating_add(dropped);
    dropped >= rule.min_errors && total > 0 && dropped as f32 / total as f32 > rule.max_error_rate
}

fn same_nibp_values(a: &Nibp, b: &Nibp) -> bool {
    let same =
        |x: Sample, y: Sample| x.validity == y.validity && x.value.to_bits() == y.value.to_bits();
    same(a.systolic, b.systolic) && same(a.diastolic, b.diastolic) && same(a.mean, b.mean)
}

/// Priority, delay and latching of one alarm, from the configuration.
fn new_slot(cfg: &EngineConfig, id: AlarmId) -> Slot {
    let t = &cfg.technical;
    let (priority, delay, latching) = match (id.subject, id.condition) {
        (Subject::Vital(v), c) => {
            let r = cfg.rules(v);
            let continuous_delay = |limit: Option<Limit>| {
                if v.is_continuous() {
                    limit.and_then(|l| l.delay).unwrap_or(r.delay)
                } else {
                    Duration::ZERO
                }
            };
            let limit_priority = |limit: Option<Limit>| limit.map_or(Priority::Low, |l| l.priority);
            match c {
                Condition::Low => (limit_priority(r.low), continuous_delay(r.low), r.latching),
                Condition::High => (limit_priority(r.high), continuous_delay(r.high), r.latching),
                Condition::CriticalLow => {
                    (limit_priority(r.critical_low), Duration::ZERO, r.latching)
                }
                Condition::CriticalHigh => {
                    (limit_priority(r.critical_high), Duration::ZERO, r.latching)
                }
                Condition::BaselineRise | Condition::BaselineFall => (
                    r.baseline.priority.unwrap_or(Priority::Low),
                    continuous_delay(None),
                    r.latching,
                ),
                Condition::RateRise | Condition::RateFall => (
                    r.rate.map_or(Priority::Low, |rate| rate.priority),
                    Duration::ZERO,
                    r.latching,
                ),
                Condition::Stale => (t.stale, Duration::ZERO, false),
                Condition::SensorOff => (t.sensor_off, cfg.technical_delay, false),
                Condition::Invalid => (t.invalid, cfg.technical_delay, false),
                Condition::Artifact => (t.artifact, cfg.technical_delay, false),
                Condition::Questionable => (t.invalid, cfg.technical_delay, false),
                Condition::Apnoea if v == Vital::RespRate => {
                    (cfg.apnoea.priority, cfg.apnoea.delay, r.latching)
                }
                _ => (Priority::Low, Duration::ZERO, false),
            }
        }
        (Subject::Nibp, Condition::High) => {
            let (sys, dia) = (
                cfg.rules(Vital::NibpSystolic),
                cfg.rules(Vital::NibpDiastolic),
            );
            let p = |r: &VitalRules| r.high.map_or(Priority::Low, |l| l.priority);
            (
                p(sys).max(p(dia)),
                Duration::ZERO,
                sys.latching || dia.latching,
            )
        }
        (_, c) => {
            let p = match c {
                Condition::SensorOff => t.sensor_off,
                Condition::Invalid => t.invalid,
                Condition::Artifact => t.artifact,
                Condition::Questionable => t.invalid,
                Condition::CycleOverdue => t.cycle_overdue,
                Condition::Disconnected => t.disconnected,
                Condition::LinkErrors => t.link_errors,
                Condition::NotAssociated => t.not_associated,
                Condition::NoValidData => t.no_valid_data,
                Condition::MonitorRestarted => t.monitor_restarted,
                Condition::LowBattery => t.low_battery,
                Condition::QueueOverflow => t.queue_overflow,
                Condition::BrokerUnreachable => t.broker_unreachable,
                Condition::StorageFailure => t.storage_failure,
                Condition::JournalFailure => t.journal_failure,
                Condition::JournalCorrupt => t.journal_corrupt,
                Condition::LinkUnstable => t.broker_link_unstable,
                Condition::InputOverload => t.input_overload,
                Condition::Hl7Undelivered => t.hl7_undelivered,
                Condition::Hl7BacklogFailure => t.hl7_backlog_failure,
                Condition::BrokerRefused => t.broker_refused,
                _ => Priority::Low,
            };
            // Damage found once, or a monitor that restarted, stays on the
            // board until a nurse saw it.
            let latching = matches!(c, Condition::JournalCorrupt | Condition::MonitorRestarted);
            (p, Duration::ZERO, latching)
        }
    };
    Slot {
        id,
        base_priority: priority,
        priority,
        delay,
        latching,
        state: SlotState::Inactive,
        onset: Instant::ZERO,
        determined: Instant::ZERO,
        value: None,
        limit: None,
        validity: None,
        ack: None,
        realert_at: Instant::MAX,
        escalate_at: Instant::MAX,
        components: None,
    }
}

fn view(s: &Slot, phase: Phase) -> AlarmEvent {
    let state = match (phase, s.state) {
        (Phase::End, _) | (_, SlotState::Inactive) | (_, SlotState::Pending { .. }) => {
            AlarmState::Ended
        }
        (_, SlotState::Latched) => AlarmState::Latched,
        (_, SlotState::Active) if s.ack.is_some() => AlarmState::Acknowledged,
        (_, SlotState::Active) => AlarmState::Active,
    };
    AlarmEvent {
        id: s.id,
        kind: s.id.condition.kind(),
        base_priority: s.base_priority,
        priority: s.priority,
        phase,
        state,
        value: s.value,
        limit: s.limit,
        validity: s.validity,
        delay: s.delay,
        onset: s.onset,
        determined: s.determined,
        ack: s.ack,
        components: s.components,
    }
}
