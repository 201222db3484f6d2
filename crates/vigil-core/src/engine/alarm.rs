//! Alarm vocabulary in the terms of IEC 60601-1-8 and IHE ACM: identities,
//! priorities, kinds, phases and states, and the alarm event the engine emits.
//!
//! Everything here is `Copy` and heap-free. Depends on [`crate::vitals`] and
//! [`crate::time`].

use core::fmt;
use core::time::Duration;

use crate::time::Instant;
use crate::vitals::{ShortText, SourceId, Validity, Vital};

/// Alarm priority. Ordered: `Low < Medium < High`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Priority {
    /// Awareness.
    Low,
    /// Prompt response: reversible injury is possible.
    Medium,
    /// Immediate response: death or irreversible injury is likely otherwise.
    High,
}

impl Priority {
    /// Stable short name.
    pub const fn key(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
        }
    }

    /// One step up, saturating at `High`.
    pub const fn raised(self) -> Priority {
        match self {
            Priority::Low => Priority::Medium,
            _ => Priority::High,
        }
    }

    /// Parses `low`, `medium` or `high`.
    pub fn parse(s: &str) -> Option<Priority> {
        match s {
            "low" => Some(Priority::Low),
            "medium" => Some(Priority::Medium),
            "high" => Some(Priority::High),
            _ => None,
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// Physiological (the patient) or technical (equipment, sensor, communication).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AlarmKind {
    /// A valid patient measurement crossed a limit or a trend rule.
    Physiological,
    /// Equipment, sensor, data or communication problem.
    Technical,
}

impl AlarmKind {
    /// Stable short name.
    pub const fn key(self) -> &'static str {
        match self {
            AlarmKind::Physiological => "physiological",
            AlarmKind::Technical => "technical",
        }
    }
}

/// What an alarm is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    /// One vital sign.
    Vital(Vital),
    /// The NIBP measurement as a whole (cycle, cuff and measurement problems).
    Nibp,
    /// A configured source (monitor, oximeter).
    Source(SourceId),
    /// vigil itself (delivery, storage).
    System,
}

/// The condition an alarm stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Condition {
    /// Below the low limit (after the condition delay for continuous vitals).
    Low,
    /// Above the high limit.
    High,
    /// Below the critical low limit: no delay.
    CriticalLow,
    /// Above the critical high limit: no delay.
    CriticalHigh,
    /// Risen too far above the session's pre-dose baseline.
    BaselineRise,
    /// Fallen too far below the session's pre-dose baseline.
    BaselineFall,
    /// Risen too fast within the rate window.
    RateRise,
    /// Fallen too fast within the rate window.
    RateFall,
    /// No reading for longer than the vital's timeout.
    Stale,
    /// The device reports the sensor off or disconnected.
    SensorOff,
    /// The device reports the value invalid, unavailable, out of range or questionable.
    Invalid,
    /// Artifact, or a value outside the physiological range.
    Artifact,
    /// No new NIBP measurement within the cycle interval plus grace.
    CycleOverdue,
    /// The source is disconnected or silent.
    Disconnected,
    /// Too many frames from the source fail to decode.
    LinkErrors,
    /// A session-based monitor is not associated with vigil (refused,
    /// aborted, released, no answer, or never associated): it sends nothing.
    NotAssociated,
    /// Bytes or frames arrive from the source but no valid reading has come
    /// for its timeout (garbage, session frames only, invalid values only).
    NoValidData,
    /// The monitor restarted or was taken over by another host while
    /// associated; its own settings may have changed. Latched until
    /// acknowledged.
    MonitorRestarted,
    /// The device reports a low battery.
    LowBattery,
    /// A sink's queue overflowed and events were dropped.
    QueueOverflow,
    /// The MQTT broker has been unreachable for too long.
    BrokerUnreachable,
    /// Writing the session recording fails (disk full, permission).
    StorageFailure,
    /// The MQTT outbox journal cannot be written: undelivered alarms are
    /// held in memory only and would not survive a restart.
    JournalFailure,
    /// The outbox journal was found damaged at start-up (not a torn tail):
    /// undelivered messages may have been lost. Latched until acknowledged.
    JournalCorrupt,
    /// The link to the broker keeps breaking right after it comes up (a
    /// reconnect loop): displays may get nothing and commands are not read.
    LinkUnstable,
    /// A source floods vigil with more input than it processes; input is
    /// being dropped.
    InputOverload,
    /// The device flags the vital's value questionable (low signal quality,
    /// pulse search, low perfusion) and the vital's questionable policy lets
    /// such values drive physiological alarms: this says why those alarms
    /// are marked questionable. (With the policy `off` a questionable value
    /// raises `invalid` instead.)
    Questionable,
    /// The chart does not reach the HL7 receiver (`[hl7]`): it is
    /// unreachable, does not acknowledge, or refuses the messages.
    Hl7Undelivered,
    /// The HL7 backlog file cannot be written: undelivered chart messages
    /// are held in memory only (lost if vigil stops).
    Hl7BacklogFailure,
    /// The MQTT broker refuses vigil's alarm or session messages: the
    /// displays do not get them.
    BrokerRefused,
    /// No breath (apnoea), on the respiration rate: a valid rate below
    /// 1 /min, or a capnograph that measures but reports no rate, for the
    /// apnoea delay. Physiological: the patient is not breathing; a module
    /// that is off or a sensor that is off is a technical condition instead.
    Apnoea,
}

impl Condition {
    /// Every condition, in table order.
    ///
    /// Recordings store a condition by its position here: new conditions
    /// are appended, never inserted.
    pub const ALL: [Condition; 31] = [
        Condition::Low,
        Condition::High,
        Condition::CriticalLow,
        Condition::CriticalHigh,
        Condition::BaselineRise,
        Condition::BaselineFall,
        Condition::RateRise,
        Condition::RateFall,
        Condition::Stale,
        Condition::SensorOff,
        Condition::Invalid,
        Condition::Artifact,
        Condition::CycleOverdue,
        Condition::Disconnected,
        Condition::LinkErrors,
        Condition::NotAssociated,
        Condition::NoValidData,
        Condition::MonitorRestarted,
        Condition::LowBattery,
        Condition::QueueOverflow,
        Condition::BrokerUnreachable,
        Condition::StorageFailure,
        Condition::JournalFailure,
        Condition::JournalCorrupt,
        Condition::LinkUnstable,
        Condition::InputOverload,
        Condition::Questionable,
        Condition::Hl7Undelivered,
        Condition::Hl7BacklogFailure,
        Condition::BrokerRefused,
        Condition::Apnoea,
    ];
    /// Number of conditions.
    pub const COUNT: usize = 31;

    /// The physiological conditions: the first eight of the table, and
    /// apnoea (appended later).
    pub const PHYSIOLOGICAL: [Condition; 9] = {
        let mut all = [Condition::Apnoea; 9];
        let mut i = 0;
        while i < 8 {
            all[i] = Condition::ALL[i];
            i += 1;
        }
        all
    };

    /// Position in [`Condition::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Stable short name.
    pub const fn key(self) -> &'static str {
        match self {
            Condition::Low => "low",
            Condition::High => "high",
            Condition::CriticalLow => "critical_low",
            Condition::CriticalHigh => "critical_high",
            Condition::BaselineRise => "baseline_rise",
            Condition::BaselineFall => "baseline_fall",
            Condition::RateRise => "rate_rise",
            Condition::RateFall => "rate_fall",
            Condition::Stale => "stale",
            Condition::SensorOff => "sensor_off",
            Condition::Invalid => "invalid",
            Condition::Artifact => "artifact",
            Condition::CycleOverdue => "cycle_overdue",
            Condition::Disconnected => "disconnected",
            Condition::LinkErrors => "link_errors",
            Condition::NotAssociated => "not_associated",
            Condition::NoValidData => "no_valid_data",
            Condition::MonitorRestarted => "monitor_restarted",
            Condition::LowBattery => "low_battery",
            Condition::QueueOverflow => "queue_overflow",
            Condition::BrokerUnreachable => "broker_unreachable",
            Condition::StorageFailure => "storage_failure",
            Condition::JournalFailure => "journal_failure",
            Condition::JournalCorrupt => "journal_corrupt",
            Condition::LinkUnstable => "broker_link_unstable",
            Condition::InputOverload => "input_overload",
            Condition::Questionable => "questionable",
            Condition::Hl7Undelivered => "hl7_undelivered",
            Condition::Hl7BacklogFailure => "hl7_backlog_failure",
            Condition::BrokerRefused => "broker_refused",
            Condition::Apnoea => "apnoea",
        }
    }

    /// Physiological or technical.
    pub const fn kind(self) -> AlarmKind {
        if self.index() < 8 || matches!(self, Condition::Apnoea) {
            AlarmKind::Physiological
        } else {
            AlarmKind::Technical
        }
    }

    /// The technical condition a non-valid value raises.
    pub const fn for_validity(validity: Validity) -> Option<Condition> {
        match validity {
            // An old measurement is right but not current: no alarm of its
            // own (cycle overdue covers a missing fresh NIBP, stale a
            // continuous vital with only old values).
            Validity::Valid | Validity::Old => None,
            Validity::SensorOff => Some(Condition::SensorOff),
            Validity::Artifact => Some(Condition::Artifact),
            Validity::Invalid
            | Validity::Unavailable
            | Validity::UnderRange
            | Validity::OverRange
            | Validity::Questionable => Some(Condition::Invalid),
        }
    }
}

/// The identity of an alarm: what it is about and which condition.
///
/// Its text form (`spo2.low`, `nibp.cycle_overdue`, `source.<name>.disconnected`,
/// `system.broker_unreachable`) is what displays show and send back in
/// acknowledgements; see [`AlarmId::write_key`] and [`AlarmId::parse`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AlarmId {
    /// What the alarm is about.
    pub subject: Subject,
    /// Which condition.
    pub condition: Condition,
}

impl AlarmId {
    /// An alarm about a vital.
    pub const fn vital(vital: Vital, condition: Condition) -> Self {
        AlarmId {
            subject: Subject::Vital(vital),
            condition,
        }
    }

    /// Writes the text form; `source_names` maps source ids to their configured names.
    pub fn write_key(&self, out: &mut impl fmt::Write, source_names: &[String]) -> fmt::Result {
        match self.subject {
            Subject::Vital(v) => write!(out, "{}.{}", v.key(), self.condition.key()),
            Subject::Nibp => write!(out, "nibp.{}", self.condition.key()),
            Subject::Source(s) => match source_names.get(s.index()) {
                Some(name) => write!(out, "source.{}.{}", name, self.condition.key()),
                None => write!(out, "source.{}.{}", s.0, self.condition.key()),
            },
            Subject::System => write!(out, "system.{}", self.condition.key()),
        }
    }

    /// The text form as a `String` (not for the hot path).
    pub fn key(&self, source_names: &[String]) -> String {
        let mut s = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_key(&mut s, source_names);
        s
    }

    /// Parses the text form. Returns `None` for anything that names no alarm.
    pub fn parse(text: &str, source_names: &[String]) -> Option<AlarmId> {
        let (head, cond) = text.rsplit_once('.')?;
        let condition = Condition::ALL.into_iter().find(|c| c.key() == cond)?;
        let subject = if head == "nibp" {
            Subject::Nibp
        } else if head == "system" {
            Subject::System
        } else if let Some(name) = head.strip_prefix("source.") {
            let idx = source_names.iter().position(|n| n == name)?;
            Subject::Source(SourceId(u16::try_from(idx).ok()?))
        } else {
            Subject::Vital(head.parse().ok()?)
        };
        Some(AlarmId { subject, condition })
    }
}

/// The phase of an alarm event (IHE ACM vocabulary).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// The alarm became active.
    Start,
    /// Its state changed otherwise (latched, present again while latched).
    Update,
    /// Its priority was raised because nobody acknowledged it in time.
    Escalate,
    /// Someone acknowledged it.
    Acknowledge,
    /// It was acknowledged but is still present after the re-alert interval.
    ReAlert,
    /// It is over.
    End,
}

impl Phase {
    /// Stable short name.
    pub const fn key(self) -> &'static str {
        match self {
            Phase::Start => "start",
            Phase::Update => "update",
            Phase::Escalate => "escalate",
            Phase::Acknowledge => "acknowledge",
            Phase::ReAlert => "re_alert",
            Phase::End => "end",
        }
    }
}

/// The alarm's state after the event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AlarmState {
    /// The condition is present and nobody has acknowledged it.
    Active,
    /// The condition is present; a person acknowledged it (signal silenced).
    Acknowledged,
    /// The condition is gone, but the alarm latches until acknowledged.
    Latched,
    /// Over: no longer listed.
    Ended,
}

impl AlarmState {
    /// Stable short name.
    pub const fn key(self) -> &'static str {
        match self {
            AlarmState::Active => "active",
            AlarmState::Acknowledged => "acknowledged",
            AlarmState::Latched => "latched",
            AlarmState::Ended => "ended",
        }
    }
}

/// Who acknowledged an alarm, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    /// Name or initials as given by the display.
    pub by: ShortText<32>,
    /// When the acknowledgement arrived.
    pub at: Instant,
}

/// One alarm phase change.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AlarmEvent {
    /// Which alarm.
    pub id: AlarmId,
    /// Physiological or technical.
    pub kind: AlarmKind,
    /// The configured priority.
    pub base_priority: Priority,
    /// The priority now (raised by escalation).
    pub priority: Priority,
    /// What happened.
    pub phase: Phase,
    /// The state after this event.
    pub state: AlarmState,
    /// The value that triggered the alarm (last value seen), if it has one.
    pub value: Option<f32>,
    /// The limit it crossed, if it has one.
    pub limit: Option<f32>,
    /// The validity of the value behind the alarm when it is not plain
    /// valid: why a technical data alarm holds, or `Questionable` on a
    /// physiological alarm whose latest value the device flags
    /// questionable (see [`super::rules::QuestionablePolicy`]).
    pub validity: Option<Validity>,
    /// The alarm condition delay applied.
    pub delay: Duration,
    /// When the condition was first seen.
    pub onset: Instant,
    /// When the engine decided the alarm exists (onset + delay).
    pub determined: Instant,
    /// The acknowledgement, while one holds.
    pub ack: Option<Ack>,
    /// For the combined `nibp.high`: systolic and diastolic, each with its
    /// latest value and its high limit. `None` for every other alarm.
    pub components: Option<[ComponentValue; 2]>,
}

/// One NIBP component's value and limit in a combined alarm.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ComponentValue {
    /// Which component.
    pub vital: Vital,
    /// Its value in the measurement, when it gave one.
    pub value: Option<f32>,
    /// Its limit, when one is configured.
    pub limit: Option<f32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_text() {
        let names = vec!["monitor".to_owned(), "oximeter".to_owned()];
        let ids = [
            AlarmId::vital(Vital::SpO2, Condition::CriticalLow),
            AlarmId::vital(Vital::NibpSystolic, Condition::High),
            AlarmId {
                subject: Subject::Nibp,
                condition: Condition::CycleOverdue,
            },
            AlarmId {
                subject: Subject::Source(SourceId(1)),
                condition: Condition::Disconnected,
            },
            AlarmId {
                subject: Subject::System,
                condition: Condition::BrokerUnreachable,
            },
        ];
        for id in ids {
            let key = id.key(&names);
            assert_eq!(AlarmId::parse(&key, &names), Some(id), "{key}");
        }
        assert_eq!(ids[3].key(&names), "source.oximeter.disconnected");
        assert_eq!(AlarmId::parse("spo2.nonsense", &names), None);
        assert_eq!(AlarmId::parse("source.nobody.disconnected", &names), None);
        assert_eq!(AlarmId::parse("", &names), None);
    }

    #[test]
    fn condition_table_is_consistent() {
        for (i, c) in Condition::ALL.into_iter().enumerate() {
            assert_eq!(c.index(), i);
        }
        for c in Condition::PHYSIOLOGICAL {
            assert_eq!(c.kind(), AlarmKind::Physiological);
            assert_eq!(Condition::ALL[c.index()], c);
        }
        let physiological = Condition::ALL
            .iter()
            .filter(|c| c.kind() == AlarmKind::Physiological)
            .count();
        assert_eq!(physiological, Condition::PHYSIOLOGICAL.len());
        assert_eq!(Condition::Low.kind(), AlarmKind::Physiological);
        assert_eq!(Condition::Apnoea.kind(), AlarmKind::Physiological);
        assert_eq!(Condition::Stale.kind(), AlarmKind::Technical);
        assert_eq!(
            Condition::for_validity(Validity::UnderRange),
            Some(Condition::Invalid)
        );
        assert_eq!(Condition::for_validity(Validity::Valid), None);
    }

    #[test]
    fn priorities_order_and_raise() {
        assert!(Priority::Low < Priority::Medium && Priority::Medium < Priority::High);
        assert_eq!(Priority::Low.raised(), Priority::Medium);
        assert_eq!(Priority::High.raised(), Priority::High);
    }
}
