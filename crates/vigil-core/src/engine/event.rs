//! What goes into the engine besides readings (commands, device and system
//! inputs) and what comes out of it (events).
//!
//! All types are `Copy` and heap-free, so the engine's event queue never
//! allocates once warmed up. Depends on [`super::alarm`], [`crate::vitals`],
//! [`crate::protocol`] (for device notes) and [`crate::time`].

use core::fmt;
use core::time::Duration;

use super::alarm::{AlarmEvent, AlarmId, Condition, Priority};
use crate::protocol::DeviceNote;
use crate::time::Instant;
use crate::vitals::{Reading, ShortText, SourceId, Vital};

/// Session identifiers are pseudonymous codes, never patient names.
pub type SessionId = ShortText<32>;

/// The session's phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum SessionPhase {
    /// No session.
    #[default]
    Idle,
    /// Pre-dose: readings are collected for the baseline.
    Baseline,
    /// A dose was given: trend alarms against the baseline are armed.
    Dosing,
    /// Recovery observation; discharge readiness is watched.
    Recovery,
    /// The session is over.
    Ended,
}

impl SessionPhase {
    /// Stable short name.
    pub const fn key(self) -> &'static str {
        match self {
            SessionPhase::Idle => "idle",
            SessionPhase::Baseline => "baseline",
            SessionPhase::Dosing => "dosing",
            SessionPhase::Recovery => "recovery",
            SessionPhase::Ended => "ended",
        }
    }
}

impl fmt::Display for SessionPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// A session change.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SessionEvent {
    /// The phase changed.
    Phase {
        /// The new phase.
        phase: SessionPhase,
        /// The pseudonymous session id.
        session: SessionId,
    },
    /// A baseline was set for a vital.
    Baseline {
        /// Which vital.
        vital: Vital,
        /// The baseline value.
        value: f32,
        /// How many baseline-phase readings the median was taken over (0 when set by command).
        readings: u32,
    },
    /// A dose was given.
    Dose {
        /// Which dose of the session (1 for the first).
        number: u16,
        /// Route (e.g. `im`, `iv`, `sl`, `in`).
        route: ShortText<16>,
        /// The amount, when the nurse gave one.
        amount: Option<DoseAmount>,
        /// Free text (product, remarks); no patient identifiers.
        note: ShortText<64>,
    },
    /// A dose was accepted although some baselines are missing: the vitals
    /// marked had too little data in the baseline phase (see
    /// [`super::rules::BaselineMinimum`]) and no baseline set by command.
    /// Advisory: trend alarms for them stay unarmed.
    BaselineIncomplete {
        /// Indexed by [`Vital::index`]: `true` where the baseline is missing.
        missing: [bool; Vital::COUNT],
    },
    /// All vitals with a baseline have (or no longer have) been within the
    /// discharge bounds for the configured time.
    DischargeReadiness {
        /// Ready or no longer ready.
        ready: bool,
    },
}

impl SessionEvent {
    /// The vitals a `BaselineIncomplete` event names, in table order (empty
    /// for other events).
    pub fn missing_baselines(&self) -> impl Iterator<Item = Vital> + '_ {
        let missing = match self {
            SessionEvent::BaselineIncomplete { missing } => Some(missing),
            _ => None,
        };
        Vital::ALL
            .into_iter()
            .filter(move |v| missing.is_some_and(|m| m[v.index()]))
    }
}

/// Why an audio pause ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResumeReason {
    /// Its time ran out.
    Expired,
    /// A command ended it.
    Command,
    /// A new alarm of higher priority broke through.
    BreakThrough(AlarmId),
}

/// An audio inactivation state change (AUDIO PAUSED and its end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AudioEvent {
    /// Audio paused until the given time.
    Paused {
        /// When the pause ends by itself.
        until: Instant,
        /// Alarms of higher priority than this break through.
        ceiling: Priority,
    },
    /// Audio signals resumed.
    Resumed {
        /// Why.
        reason: ResumeReason,
    },
}

/// A technical status change that is not an alarm by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TechnicalStatus {
    /// What a source delivers changed (see [`SourceHealth`]).
    Source {
        /// Which source.
        source: SourceId,
        /// What it delivers now.
        health: SourceHealth,
    },
    /// Something a device said about itself.
    Device {
        /// Which source.
        source: SourceId,
        /// What it said.
        note: DeviceNote,
    },
}

/// What an event is about.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum EventKind {
    /// An alarm phase change.
    Alarm(AlarmEvent),
    /// A session change.
    Session(SessionEvent),
    /// A reading accepted (for displays), with the validity the engine gave it.
    Reading(Reading),
    /// Technical status.
    Technical(TechnicalStatus),
    /// Audio inactivation.
    Audio(AudioEvent),
}

/// One engine output.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Event {
    /// Strictly increasing within one engine.
    pub seq: u64,
    /// When it happened (the input's arrival time, or the deadline of the
    /// timer that caused it).
    pub at: Instant,
    /// What happened.
    pub kind: EventKind,
}

/// A command from a display or an operator.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Command {
    /// Acknowledge an alarm.
    Acknowledge {
        /// Which alarm.
        alarm: AlarmId,
        /// Who (name or initials).
        by: ShortText<32>,
    },
    /// Acknowledge every alarm of this bed that waits for it (active and not
    /// yet acknowledged, or latched), as one person's decision.
    AcknowledgeAll {
        /// Who (name or initials).
        by: ShortText<32>,
    },
    /// Pause audio signals for a bounded time.
    PauseAudio {
        /// How long (at most the configured maximum).
        duration: Duration,
    },
    /// End an audio pause now.
    ResumeAudio,
    /// Start a session: the baseline phase begins.
    StartSession {
        /// A pseudonymous session id.
        session: SessionId,
    },
    /// A dose was given: the baseline is fixed and trend alarms arm.
    Dose {
        /// Route.
        route: ShortText<16>,
        /// The amount, when given (see [`DoseAmount::new`]).
        amount: Option<DoseAmount>,
        /// Free-text note.
        note: ShortText<64>,
    },
    /// Set a vital's baseline by hand.
    SetBaseline {
        /// Which vital.
        vital: Vital,
        /// The value, in the vital's unit.
        value: f32,
    },
    /// Enter the recovery phase.
    StartRecovery,
    /// End the session.
    EndSession,
}

/// How much was given in one dose: a number in a unit, as charted.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DoseAmount {
    /// The number, above 0 and below [`DoseAmount::MAX`].
    pub value: f32,
    /// Its unit.
    pub unit: DoseUnit,
}

impl DoseAmount {
    /// Amounts are below this (in either unit): anything larger is a typing
    /// error, not a dose.
    pub const MAX: f32 = 10_000.0;

    /// An amount, if `value` is a number above 0 and below [`Self::MAX`].
    pub fn new(value: f32, unit: DoseUnit) -> Option<DoseAmount> {
        let amount = DoseAmount { value, unit };
        amount.is_valid().then_some(amount)
    }

    /// Whether the value is a number above 0 and below [`Self::MAX`].
    pub fn is_valid(&self) -> bool {
        self.value.is_finite() && self.value > 0.0 && self.value < Self::MAX
    }
}

impl core::fmt::Display for DoseAmount {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} {}", self.value, self.unit.key())
    }
}

/// The unit of a [`DoseAmount`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DoseUnit {
    /// Milligrams.
    Mg,
    /// Milligrams per kilogram of body weight.
    MgPerKg,
}

impl DoseUnit {
    /// Every unit, in the order of its recording code.
    pub const ALL: [DoseUnit; 2] = [DoseUnit::Mg, DoseUnit::MgPerKg];

    /// The unit as written: `mg`, `mg/kg`.
    pub const fn key(self) -> &'static str {
        match self {
            DoseUnit::Mg => "mg",
            DoseUnit::MgPerKg => "mg/kg",
        }
    }

    /// The unit written `key`, if any.
    pub fn parse(key: &str) -> Option<DoseUnit> {
        DoseUnit::ALL.into_iter().find(|u| u.key() == key)
    }
}

impl Command {
    /// Stable short name of the command.
    pub const fn key(&self) -> &'static str {
        match self {
            Command::Acknowledge { .. } => "acknowledge",
            Command::AcknowledgeAll { .. } => "acknowledge_all",
            Command::PauseAudio { .. } => "pause_audio",
            Command::ResumeAudio => "resume_audio",
            Command::StartSession { .. } => "start_session",
            Command::Dose { .. } => "dose",
            Command::SetBaseline { .. } => "set_baseline",
            Command::StartRecovery => "start_recovery",
            Command::EndSession => "end_session",
        }
    }
}

/// What a source delivers, as the pipeline's watchdog judges it. Anything
/// but [`SourceHealth::Ok`] means no valid reading came from the source for
/// its timeout (or its link is down), and raises a technical alarm: bytes
/// that never turn into a valid reading are as bad as silence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum SourceHealth {
    /// Valid readings arrive.
    #[default]
    Ok,
    /// The link (serial port, TCP connection) is down.
    LinkDown,
    /// The link is open but nothing arrives.
    Silent,
    /// Bytes arrive but none decodes into a frame.
    Garbage,
    /// A session-based monitor (Philips) is not associated with vigil, so
    /// it sends no data.
    NotAssociated,
    /// Frames decode but none carries a reading (session, waveform or
    /// trend frames only).
    NoReadings,
    /// Readings arrive but none is valid (sensor off, invalid, old).
    InvalidOnly,
}

impl SourceHealth {
    /// Every state, in a fixed order.
    pub const ALL: [SourceHealth; 7] = [
        SourceHealth::Ok,
        SourceHealth::LinkDown,
        SourceHealth::Silent,
        SourceHealth::Garbage,
        SourceHealth::NotAssociated,
        SourceHealth::NoReadings,
        SourceHealth::InvalidOnly,
    ];

    /// Stable short name (status line, heartbeat).
    pub const fn key(self) -> &'static str {
        match self {
            SourceHealth::Ok => "ok",
            SourceHealth::LinkDown => "link_down",
            SourceHealth::Silent => "silent",
            SourceHealth::Garbage => "garbage",
            SourceHealth::NotAssociated => "not_associated",
            SourceHealth::NoReadings => "no_readings",
            SourceHealth::InvalidOnly => "invalid_only",
        }
    }

    /// What it means, for people.
    pub const fn text(self) -> &'static str {
        match self {
            SourceHealth::Ok => "valid data",
            SourceHealth::LinkDown => "link down",
            SourceHealth::Silent => "nothing received",
            SourceHealth::Garbage => "no valid data (unreadable bytes only)",
            SourceHealth::NotAssociated => "not associated",
            SourceHealth::NoReadings => "no valid data (no readings in its messages)",
            SourceHealth::InvalidOnly => "no valid data (invalid values only)",
        }
    }

    /// Whether valid readings arrive.
    pub const fn is_ok(self) -> bool {
        matches!(self, SourceHealth::Ok)
    }

    /// The source alarm this state raises: one per source at a time says
    /// why it is blind. Invalid values only raise none of their own: each
    /// one already raises its vital's technical alarm (`spo2.sensor_off`,
    /// `hr.invalid`, ...), which says more than the source could.
    pub const fn alarm(self) -> Option<Condition> {
        match self {
            SourceHealth::Ok | SourceHealth::InvalidOnly => None,
            SourceHealth::LinkDown | SourceHealth::Silent => Some(Condition::Disconnected),
            SourceHealth::NotAssociated => Some(Condition::NotAssociated),
            SourceHealth::Garbage | SourceHealth::NoReadings => Some(Condition::NoValidData),
        }
    }
}

impl fmt::Display for SourceHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// Input about a source's device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceInput {
    /// What the source delivers changed: the source-level technical alarms
    /// (`disconnected`, `not_associated`, `no_valid_data`) follow it.
    Health(SourceHealth),
    /// Frames decoded and dropped since the last report.
    Frames {
        /// Decoded.
        good: u32,
        /// Dropped.
        dropped: u32,
    },
    /// Something the device said about itself.
    Note(DeviceNote),
}

/// A problem of vigil itself that nurses must see.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SystemCondition {
    /// A sink's bounded queue overflowed; events were dropped.
    QueueOverflow,
    /// The MQTT broker has been unreachable for longer than allowed.
    BrokerUnreachable,
    /// Writing the session recording fails.
    StorageFailure,
    /// Writing the MQTT outbox journal fails.
    JournalFailure,
    /// The outbox journal was damaged (not just a torn tail).
    JournalCorrupt,
    /// The broker link breaks again and again right after connecting.
    LinkUnstable,
    /// A source sends more input than vigil processes; input is dropped.
    InputOverload,
    /// The live HL7 sink's messages do not reach the receiver (unreachable,
    /// no ACK, or refused).
    Hl7Undelivered,
    /// The live HL7 sink's backlog file cannot be written: undelivered
    /// chart messages are held in memory only.
    Hl7BacklogFailure,
    /// The MQTT broker refuses vigil's alarm or session messages (an MQTT 5
    /// acknowledgement with a failure reason, such as not authorised): the
    /// displays do not get them.
    BrokerRefused,
}

/// Why a command was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    /// The alarm is not active, so there is nothing to acknowledge.
    #[error("alarm `{alarm}` is not active")]
    NotActive {
        /// The alarm's text id.
        alarm: String,
    },
    /// Acknowledge-all found no alarm present.
    #[error("no alarm is present, so there is nothing to acknowledge")]
    NothingToAcknowledge,
    /// The pause asked for is longer than allowed.
    #[error("audio pause of {asked:?} exceeds the maximum of {max:?} (alarms.max_audio_pause)")]
    PauseTooLong {
        /// Asked for.
        asked: Duration,
        /// Allowed.
        max: Duration,
    },
    /// A zero-length pause.
    #[error("audio pause must be longer than zero")]
    PauseEmpty,
    /// Audio is not paused.
    #[error("audio is not paused")]
    NotPaused,
    /// The command does not fit the session's phase.
    #[error("`{command}` is not possible in session phase `{phase}`")]
    WrongPhase {
        /// The command.
        command: &'static str,
        /// The phase.
        phase: SessionPhase,
    },
    /// A baseline value that is not a plausible value of the vital.
    #[error("baseline {value} for {vital} is outside its plausible range")]
    BadBaseline {
        /// Which vital.
        vital: Vital,
        /// The value given.
        value: f32,
    },
    /// The session id is empty or too long.
    #[error("session id must be 1 to 32 bytes")]
    BadSessionId,
    /// A dose amount that is not a number above 0 and below 10,000.
    #[error("dose amount {value} must be a number above 0 and below 10000")]
    BadDoseAmount {
        /// The value given.
        value: f32,
    },
}
