//! The payloads vigil publishes, as types: the daemon serialises them
//! ([`super::payload`] fills them in) and the displays deserialise the same
//! types ([`crate::display::feed`] reads them), so the two sides cannot
//! drift apart. Commands ([`Command`]) go the other way: the displays
//! write them, the daemon ([`super::command`]) reads them. `schemas/*.schema.json` describe the same shapes; a test
//! validates what the daemon sends against them.
//!
//! Field order is the order on the wire. Strings are `Cow`: borrowed when
//! the daemon writes, owned when a display reads. Reading is tolerant, so
//! that a display keeps working beside a newer daemon: unknown fields are
//! ignored, and nearly every field has a default when it is missing (the
//! daemon always writes them all). Enumerations (priority, state, validity)
//! are their text keys, which a display maps itself (an unknown priority
//! reads as high: never under-alarm).
//!
//! Pure data. Depends on nothing else in vigil.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::{Deserialize, Serialize};

/// Text: borrowed when writing, owned when reading.
pub type Text<'a> = Cow<'a, str>;

/// The payloads' schema version.
pub const SCHEMA_VERSION: u32 = 1;

fn schema_version() -> u32 {
    SCHEMA_VERSION
}

fn yes() -> bool {
    true
}

fn valid() -> Text<'static> {
    Cow::Borrowed("valid")
}

fn technical() -> Text<'static> {
    Cow::Borrowed("technical")
}

/// What every payload carries first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Head<'a> {
    /// [`SCHEMA_VERSION`].
    #[serde(default = "schema_version")]
    pub schema_version: u32,
    /// Site.
    #[serde(default)]
    pub site: Text<'a>,
    /// Bed.
    #[serde(default)]
    pub bed: Text<'a>,
    /// The stream epoch: `seq` is ordered within it.
    #[serde(default)]
    pub epoch: Option<Text<'a>>,
    /// The event sequence number.
    #[serde(default)]
    pub seq: u64,
    /// RFC 3339 UTC.
    #[serde(default)]
    pub time: Option<Text<'a>>,
    /// `alarms` and `session` only: consecutive per topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_seq: Option<u64>,
}

/// Pairs kept in their order, written as a JSON object (`vitals` by vital
/// key, in the table order of [`crate::vitals::Vital::ALL`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Keyed<'a, V>(pub Vec<(Text<'a>, V)>);

impl<V> Default for Keyed<'_, V> {
    fn default() -> Self {
        Keyed(Vec::new())
    }
}

impl<V: Serialize> Serialize for Keyed<'_, V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl<'de, 'a, V: Deserialize<'de>> Deserialize<'de> for Keyed<'a, V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Pairs<'a, V>(PhantomData<(&'a (), V)>);
        impl<'de, 'a, V: Deserialize<'de>> serde::de::Visitor<'de> for Pairs<'a, V> {
            type Value = Keyed<'a, V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, V>()? {
                    out.push((Cow::Owned(k), v));
                }
                Ok(Keyed(out))
            }
        }
        d.deserialize_map(Pairs(PhantomData))
    }
}

/// `vitals`: the latest reading of every vital seen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Vitals<'a> {
    /// The head.
    #[serde(flatten)]
    pub head: Head<'a>,
    /// By vital key.
    #[serde(default)]
    pub vitals: Keyed<'a, VitalValue<'a>>,
}

/// One vital's latest reading.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VitalValue<'a> {
    /// The value; null when the device gave none.
    #[serde(default)]
    pub value: Option<f64>,
    /// Validity key.
    #[serde(default = "valid")]
    pub validity: Text<'a>,
    /// Unit symbol.
    #[serde(default)]
    pub unit: Text<'a>,
    /// Arrival at the daemon, RFC 3339.
    #[serde(default)]
    pub time: Option<Text<'a>>,
    /// Source name.
    #[serde(default)]
    pub source: Option<Text<'a>>,
}

/// One alarm (in `alarms` and `alarms/active`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alarm<'a> {
    /// Text id (`spo2.low`); a display skips an alarm without one.
    #[serde(default)]
    pub id: Text<'a>,
    /// `physiological` or `technical`.
    #[serde(default = "technical")]
    pub kind: Text<'a>,
    /// Priority key now.
    #[serde(default)]
    pub priority: Text<'a>,
    /// Priority key before escalation.
    #[serde(default)]
    pub base_priority: Text<'a>,
    /// Phase key of the last change.
    #[serde(default)]
    pub phase: Text<'a>,
    /// State key after it.
    #[serde(default)]
    pub state: Text<'a>,
    /// The triggering value.
    #[serde(default)]
    pub value: Option<f64>,
    /// The limit crossed.
    #[serde(default)]
    pub limit: Option<f64>,
    /// The validity behind a technical alarm.
    #[serde(default)]
    pub validity: Option<Text<'a>>,
    /// The condition delay.
    #[serde(default)]
    pub delay_ms: u64,
    /// When the condition began, RFC 3339.
    #[serde(default)]
    pub onset: Option<Text<'a>>,
    /// When the daemon decided it exists.
    #[serde(default)]
    pub determined: Option<Text<'a>>,
    /// The acknowledgement, while one holds.
    #[serde(default)]
    pub ack: Option<Ack<'a>>,
    /// Combined NIBP alarms: each component's value and limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<Keyed<'a, Component>>,
}

/// An acknowledgement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ack<'a> {
    /// Name or initials.
    #[serde(default)]
    pub by: Text<'a>,
    /// When, RFC 3339.
    #[serde(default)]
    pub at: Option<Text<'a>>,
}

/// One component of a combined NIBP alarm.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Component {
    /// Its value.
    #[serde(default)]
    pub value: Option<f64>,
    /// Its limit.
    #[serde(default)]
    pub limit: Option<f64>,
}

/// `alarms`: one alarm phase change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlarmChange<'a> {
    /// The head (with `stream_seq`).
    #[serde(flatten)]
    pub head: Head<'a>,
    /// The alarm after the change.
    pub alarm: Alarm<'a>,
}

/// `alarms/active`: the alarms present now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Active<'a> {
    /// The head.
    #[serde(flatten)]
    pub head: Head<'a>,
    /// Highest priority first.
    pub alarms: Vec<Alarm<'a>>,
    /// RFC 3339, while audio is paused.
    #[serde(default)]
    pub audio_paused_until: Option<Text<'a>>,
}

/// `limits`: the alarm limits in force.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Limits<'a> {
    /// The head.
    #[serde(flatten)]
    pub head: Head<'a>,
    /// By vital key.
    #[serde(default)]
    pub vitals: Keyed<'a, VitalLimits<'a>>,
}

/// The limits of one vital.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VitalLimits<'a> {
    /// Whether the vital is watched at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Unit symbol.
    #[serde(default)]
    pub unit: Text<'a>,
    /// Low limit.
    #[serde(default)]
    pub low: Option<Limit<'a>>,
    /// High limit.
    #[serde(default)]
    pub high: Option<Limit<'a>>,
    /// Critical low limit.
    #[serde(default)]
    pub critical_low: Option<Limit<'a>>,
    /// Critical high limit.
    #[serde(default)]
    pub critical_high: Option<Limit<'a>>,
    /// Condition delay.
    #[serde(default)]
    pub delay_ms: u64,
    /// Hysteresis, in the vital's unit.
    #[serde(default)]
    pub hysteresis: f64,
}

/// One limit and the priority of its alarm.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Limit<'a> {
    /// The limit.
    pub value: f64,
    /// Priority key.
    #[serde(default)]
    pub priority: Text<'a>,
}

/// `session`: the event and the state after it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Session<'a> {
    /// The head (with `stream_seq`).
    #[serde(flatten)]
    pub head: Head<'a>,
    /// What happened.
    #[serde(default)]
    pub event: SessionEvent<'a>,
    /// The state after it.
    pub state: SessionState<'a>,
}

/// A session event, tagged by `type` (a display reads the state, not the
/// event: every field may be missing).
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SessionEvent<'a> {
    /// The phase changed.
    Phase {
        /// Phase key.
        #[serde(default)]
        phase: Text<'a>,
        /// Pseudonymous session code.
        #[serde(default)]
        session: Text<'a>,
    },
    /// A baseline was set.
    Baseline {
        /// Vital key.
        #[serde(default)]
        vital: Text<'a>,
        /// The baseline.
        #[serde(default)]
        value: f64,
        /// Readings behind it (0: set by command).
        #[serde(default)]
        readings: u32,
    },
    /// A dose was given.
    Dose(Dose<'a>),
    /// Discharge readiness changed.
    DischargeReadiness {
        /// Ready or not.
        #[serde(default)]
        ready: bool,
    },
    /// A dose on an incomplete baseline.
    BaselineIncomplete {
        /// Vital keys without a baseline.
        #[serde(default)]
        missing: Vec<Text<'a>>,
        /// The advisory, for people.
        #[serde(default)]
        text: Text<'a>,
    },
    /// An event type this display does not know (a newer daemon's).
    #[default]
    #[serde(other)]
    Other,
}

/// One dose (the event, and each entry of the state's `doses`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dose<'a> {
    /// Dose number in the session.
    #[serde(default)]
    pub number: u32,
    /// Route.
    #[serde(default)]
    pub route: Text<'a>,
    /// Free text.
    #[serde(default)]
    pub note: Text<'a>,
    /// When, RFC 3339 (in the state only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Text<'a>>,
    /// The amount, when given (with `unit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<f64>,
    /// `mg` or `mg/kg`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<Text<'a>>,
}

/// The session's state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionState<'a> {
    /// Phase key.
    #[serde(default)]
    pub phase: Text<'a>,
    /// Pseudonymous session code.
    #[serde(default)]
    pub session: Text<'a>,
    /// Baselines by vital key.
    #[serde(default)]
    pub baselines: Keyed<'a, f64>,
    /// Doses so far.
    #[serde(default)]
    pub doses: Vec<Dose<'a>>,
    /// Discharge readiness.
    #[serde(default)]
    pub discharge_ready: bool,
}

/// `status`: the heartbeat, or the daemon gone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status<'a> {
    /// The head.
    #[serde(flatten)]
    pub head: Head<'a>,
    /// By `state`.
    #[serde(flatten)]
    pub state: StatusState<'a>,
}

/// What `status` says, tagged by `state`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum StatusState<'a> {
    /// Running: the heartbeat.
    Online(Heartbeat<'a>),
    /// Gone.
    Offline {
        /// `connection_lost` (Last Will) or `shutdown`.
        #[serde(default)]
        reason: Option<Text<'a>>,
    },
}

/// The heartbeat's figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat<'a> {
    /// Heartbeat number.
    #[serde(default)]
    pub beat: u64,
    /// Seconds since the daemon started.
    #[serde(default)]
    pub uptime_s: u64,
    /// Every source.
    #[serde(default)]
    pub sources: Vec<Source<'a>>,
    /// Reading-to-event latency inside the daemon (µs).
    #[serde(default)]
    pub latency_us: Option<Latency>,
    /// Events dropped because a sink queue was full.
    #[serde(default)]
    pub events_dropped: u64,
    /// Readings coalesced into a later `vitals` message.
    #[serde(default)]
    pub vitals_coalesced: u64,
    /// The outbox.
    #[serde(default)]
    pub outbox: Option<Outbox>,
    /// Commands refused.
    #[serde(default)]
    pub commands: Option<Commands>,
}

/// A source in the heartbeat.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Source<'a> {
    /// Configured name.
    #[serde(default)]
    pub name: Text<'a>,
    /// Valid readings arrive.
    #[serde(default)]
    pub up: bool,
    /// Health key (`ok`, `link_down`, ...).
    #[serde(default)]
    pub health: Option<Text<'a>>,
    /// Session-based protocols: associated with the monitor.
    #[serde(default)]
    pub associated: Option<bool>,
    /// Frames decoded.
    #[serde(default)]
    pub frames_ok: u64,
    /// Well-formed frames not used.
    #[serde(default)]
    pub frames_ignored: u64,
    /// Frames dropped.
    #[serde(default)]
    pub frames_dropped: u64,
}

/// Latency percentiles (µs).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    #[serde(default)]
    pub p999: u64,
    /// Maximum.
    #[serde(default)]
    pub max: u64,
}

/// The outbox figures.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outbox {
    /// Undelivered alarm and session messages.
    pub pending: usize,
    /// Evicted since start.
    pub evicted: u64,
    /// Refused by the broker.
    pub refused: u64,
    /// The limit.
    pub max: u32,
    /// Journaled to disk.
    pub durable: bool,
    /// Reconnections since start.
    pub reconnects: u64,
}

/// Commands refused since start.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Commands {
    /// Answered `rejected`.
    pub rejected: u64,
    /// Of them, too large to read.
    pub oversized: u64,
}

/// `cmd/result`: the verdict on one command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommandResult<'a> {
    /// The head.
    #[serde(flatten)]
    pub head: Head<'a>,
    /// The command's request id.
    #[serde(default)]
    pub id: Option<Text<'a>>,
    /// The command's name.
    #[serde(default)]
    pub command: Option<Text<'a>>,
    /// `accepted` or `rejected`.
    #[serde(default)]
    pub result: Text<'a>,
    /// Why not.
    #[serde(default)]
    pub reason: Option<Text<'a>>,
}

/// `cmd`: one command from a display. Here the displays write and the
/// daemon reads: [`crate::mqtt::command`] checks the fields before it reads
/// them into this type (every string printable and bounded, no unknown
/// field), so reading is strict, unlike the payloads above.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Command<'a> {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The display's request id, echoed in `cmd/result`.
    pub id: Text<'a>,
    /// When the display sent it, RFC 3339.
    pub time: Text<'a>,
    /// What it asks for.
    #[serde(flatten)]
    pub kind: CommandKind<'a>,
}

/// What a command asks for, tagged by `command`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum CommandKind<'a> {
    /// Acknowledge one alarm.
    Acknowledge {
        /// Alarm id as published (`spo2.low`).
        alarm: Text<'a>,
        /// Staff name or initials.
        by: Text<'a>,
    },
    /// Acknowledge every alarm of the bed that waits for it.
    AcknowledgeAll {
        /// Staff name or initials.
        by: Text<'a>,
    },
    /// Pause audio signals.
    PauseAudio {
        /// Seconds: a display sends whole seconds, vigil takes fractions.
        duration_s: serde_json::Number,
    },
    /// End an audio pause.
    ResumeAudio,
    /// Start a session.
    StartSession {
        /// Pseudonymous code, never a name.
        session: Text<'a>,
    },
    /// Set a vital's baseline by hand.
    SetBaseline {
        /// Vital key.
        vital: Text<'a>,
        /// The baseline.
        value: f64,
    },
    /// A dose was given.
    Dose {
        /// Route.
        route: Text<'a>,
        /// The amount, with `unit` or not at all.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        amount: Option<f64>,
        /// `mg` or `mg/kg`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unit: Option<Text<'a>>,
        /// Free text, absent when blank.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<Text<'a>>,
    },
    /// Enter recovery observation.
    StartRecovery,
    /// End the session.
    EndSession,
}

/// A payload's bytes (serialising these types cannot fail).
pub fn to_vec(message: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(message).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_tolerates_what_a_newer_daemon_may_send() {
        let s: Session = serde_json::from_str(
            r#"{"schema_version":1,"seq":3,"event":{"type":"future_thing","x":1},
               "state":{"phase":"dosing","baselines":{"spo2":97,"hr":70.5},"extra":[]}}"#,
        )
        .unwrap();
        assert_eq!(s.event, SessionEvent::Other);
        assert_eq!(s.head.seq, 3);
        // Keys keep the order they came in.
        let keys: Vec<&str> = s.state.baselines.0.iter().map(|(k, _)| &**k).collect();
        assert_eq!(keys, ["spo2", "hr"]);
        assert_eq!(s.state.session, "");

        let st: Status = serde_json::from_str(r#"{"seq":1,"state":"online"}"#).unwrap();
        assert_eq!(st.head.schema_version, SCHEMA_VERSION);
        assert!(matches!(
            st.state,
            StatusState::Online(Heartbeat { beat: 0, .. })
        ));
        let gone: Status = serde_json::from_str(r#"{"state":"offline"}"#).unwrap();
        assert_eq!(gone.state, StatusState::Offline { reason: None });
        assert!(serde_json::from_str::<Status>(r#"{"state":"asleep"}"#).is_err());
    }

    #[test]
    fn what_is_written_reads_back_the_same() {
        let a = Active {
            head: Head {
                schema_version: SCHEMA_VERSION,
                site: "s".into(),
                bed: "b".into(),
                epoch: Some("e".into()),
                seq: 9,
                time: Some("2026-11-23T19:04:05.123Z".into()),
                stream_seq: None,
            },
            alarms: vec![Alarm {
                id: "nibp.high".into(),
                kind: "physiological".into(),
                priority: "high".into(),
                base_priority: "medium".into(),
                phase: "start".into(),
                state: "active".into(),
                value: Some(187.0),
                limit: Some(180.0),
                validity: None,
                delay_ms: 0,
                onset: None,
                determined: None,
                ack: Some(Ack {
                    by: "RN".into(),
                    at: None,
                }),
                components: Some(Keyed(vec![(
                    "nibp_sys".into(),
                    Component {
                        value: Some(187.0),
                        limit: Some(180.0),
                    },
                )])),
            }],
            audio_paused_until: None,
        };
        let bytes = to_vec(&a);
        let back: Active = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, a);
        // Absent when there are none; null where the schema has null.
        let text = String::from_utf8(bytes).unwrap();
        assert!(!text.contains("stream_seq"), "{text}");
        assert!(text.contains(r#""validity":null"#), "{text}");
    }
}
