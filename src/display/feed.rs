//! The MQTT feed as the displays read it: every payload the daemon
//! publishes (parsed tolerantly) and the commands a display sends; the topic
//! layout is the daemon's own ([`crate::mqtt::topics`], re-exported here).
//!
//! The payloads are read into the very types the daemon writes them from
//! ([`crate::mqtt::messages`]), then turned into the displays' own model
//! here, so this one module changes when the publisher's shapes change.
//! The shapes (`schemas/*.schema.json`):
//!
//! - every payload: `schema_version` (1), `site`, `bed`, `seq`, `time` (RFC 3339 UTC);
//! - `vitals`: `vitals.{hr,pr,spo2,nibp_sys,nibp_dia,nibp_mean,rr,etco2}` =
//!   `{value, validity, unit, time, source}` (`validity` per NIBP
//!   component: the mean may be missing, one component questionable);
//! - `alarms`: `stream_seq`, `alarm` = `{id, kind, priority, base_priority,
//!   phase, state, value, limit, validity, delay_ms, onset, determined, ack}`;
//! - `alarms/active`: `alarms` (the same objects), `audio_paused_until`;
//! - `limits`: `vitals.{hr,...}` = `{enabled, unit, low, high, critical_low,
//!   critical_high}`, each limit `{value, priority}` or null;
//! - `session`: `event`, `state` = `{phase, session, baselines, doses, discharge_ready}`;
//! - `status`: `state` = `online` (heartbeat: `beat`, `uptime_s`, `sources`,
//!   `latency_us`) or `offline` (`reason`: `connection_lost` by Last Will, `shutdown`);
//! - `cmd/result`: `id`, `command`, `result` (`accepted`/`rejected`), `reason`.
//!
//! Unknown fields are ignored and most fields are optional, so additions on
//! the publisher's side do not break the displays; a `schema_version` other
//! than 1 is refused (the display cannot know what it means).
//!
//! Pure: times come in as arguments. Depends on [`crate::engine`] (the
//! alarm vocabulary), [`crate::mqtt::messages`], the text rule of
//! [`crate::mqtt::command`] and [`crate::time::rfc3339`].

use std::collections::BTreeMap;
use std::time::SystemTime;

use std::borrow::Cow;

use crate::mqtt::command;
use crate::mqtt::messages as m;

use crate::engine::{AlarmState, Priority};
use crate::time::rfc3339;

/// The payload schema version this display understands.
pub const SCHEMA_VERSION: u64 = m::SCHEMA_VERSION as u64;

// The topic layout, shared with the daemon.
pub use crate::mqtt::topics::{BedKey, TopicKind, Topics, BRIDGE_SEGMENT, DEFAULT_PREFIX};

/// Why a feed message could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FeedError {
    /// The payload is not JSON of the expected shape.
    #[error("payload on {topic} is not a vigil message: {problem}")]
    Malformed {
        /// The topic.
        topic: String,
        /// What serde said.
        problem: String,
    },
    /// A schema version this display does not know.
    #[error("payload on {topic} has schema_version {found}; this display reads version {SCHEMA_VERSION}: update vigil on the display")]
    Version {
        /// The topic.
        topic: String,
        /// The version found.
        found: u64,
    },
    /// A topic outside the feed's layout.
    #[error("topic {0} is not one of the feed's topics")]
    Topic(String),
    /// The staff name or initials for an acknowledgement.
    #[error(
        "name or initials must be 1 to 32 bytes of printable text (an accented letter takes two)"
    )]
    By,
    /// A session code that is not a pseudonymous code.
    #[error("the session code must be 1 to 32 letters, digits, '-', '_' or '.' (a pseudonymous code such as K-0142, never a name)")]
    SessionCode,
    /// A dose field out of bounds.
    #[error("dose {0}")]
    Dose(&'static str),
    /// An audio pause of no time, or too long for a display to ask.
    #[error("an audio pause lasts 1 to {MAX_PAUSE_S} s")]
    Pause,
}

/// What every payload carries.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    /// The event sequence number.
    pub seq: u64,
    /// The stream's identity: `seq` is ordered only within one epoch (a new
    /// or untrustworthy state directory starts a new one).
    pub epoch: Option<String>,
    /// The event time by the daemon's clock.
    pub time: Option<SystemTime>,
    /// `alarms` and `session`: consecutive per topic; a jump means a lost message.
    pub stream_seq: Option<u64>,
}

/// One vital's latest reading.
#[derive(Clone, Debug, PartialEq)]
pub struct VitalReading {
    /// The value, absent when the device gave none.
    pub value: Option<f64>,
    /// `valid`, `invalid`, `sensor_off`, ...
    pub validity: String,
    /// Unit symbol.
    pub unit: String,
    /// When it was measured (arrival at the daemon).
    pub time: Option<SystemTime>,
}

/// The acknowledgement of an alarm.
#[derive(Clone, Debug, PartialEq)]
pub struct AckInfo {
    /// Name or initials.
    pub by: String,
    /// When.
    pub at: Option<SystemTime>,
}

/// One alarm as published.
#[derive(Clone, Debug, PartialEq)]
pub struct Alarm {
    /// Text id (`spo2.low`, `source.monitor.disconnected`).
    pub id: String,
    /// `physiological` or `technical`.
    pub kind: String,
    /// Priority now.
    pub priority: Priority,
    /// Phase of the last change (`start`, `update`, `escalate`, ...).
    pub phase: String,
    /// State after it.
    pub state: AlarmState,
    /// The triggering value.
    pub value: Option<f64>,
    /// The limit crossed.
    pub limit: Option<f64>,
    /// The validity behind a technical alarm.
    pub validity: Option<String>,
    /// When the condition began.
    pub onset: Option<SystemTime>,
    /// When the daemon decided it exists.
    pub determined: Option<SystemTime>,
    /// The acknowledgement, while one holds.
    pub ack: Option<AckInfo>,
}

/// One dose marker.
#[derive(Clone, Debug, PartialEq)]
pub struct Dose {
    /// Dose number in the session.
    pub number: u32,
    /// Route (`im`, `iv`, `nasal`, ...).
    pub route: String,
    /// The amount with its unit (`25 mg`), when given.
    pub amount: Option<String>,
    /// When.
    pub time: Option<SystemTime>,
}

/// The session's state after an event.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Session {
    /// `idle`, `baseline`, `dosing`, `recovery`, `ended`.
    pub phase: String,
    /// Pseudonymous session code (never a name).
    pub session: String,
    /// Baselines by vital key.
    pub baselines: BTreeMap<String, f64>,
    /// Doses so far.
    pub doses: Vec<Dose>,
    /// Discharge readiness.
    pub discharge_ready: bool,
}

/// A source's state in the heartbeat.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceState {
    /// Configured name.
    pub name: String,
    /// Connected and delivering valid readings.
    pub up: bool,
    /// What it delivers, for people: `up`, `DOWN`, `NOT ASSOCIATED`,
    /// `NO VALID DATA (invalid values only)`.
    pub status: String,
}

/// A heartbeat's source `health` (and `up`, for daemons that send no
/// health) as the displays word it.
pub fn source_status(health: Option<&str>, up: bool) -> String {
    let s = match health {
        Some("ok") => "up",
        Some("link_down") => "DOWN (link down)",
        Some("silent") => "DOWN (nothing received)",
        Some("garbage") => "NO VALID DATA (unreadable bytes)",
        Some("not_associated") => "NOT ASSOCIATED",
        Some("no_readings") => "NO VALID DATA (no readings)",
        Some("invalid_only") => "NO VALID DATA (invalid values only)",
        _ if up => "up",
        _ => "DOWN",
    };
    s.to_owned()
}

/// `status`.
#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    /// A heartbeat.
    Online {
        /// Heartbeat number.
        beat: u64,
        /// Seconds since the daemon started.
        uptime_s: u64,
        /// Sources.
        sources: Vec<SourceState>,
        /// Reading-to-event latency inside the daemon, p50 and p99 (µs).
        latency_us: Option<(u64, u64)>,
    },
    /// The daemon is gone.
    Offline {
        /// `connection_lost` (Last Will) or `shutdown`.
        reason: String,
    },
}

/// `cmd/result`.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandResult {
    /// The request id of the command.
    pub id: Option<String>,
    /// The command's name.
    pub command: Option<String>,
    /// Accepted or not.
    pub accepted: bool,
    /// Why not.
    pub reason: Option<String>,
}

/// One limit in force: the value and the priority of the alarm it raises.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LimitValue {
    /// The limit, in the vital's unit.
    pub value: f64,
    /// The priority of its alarm.
    pub priority: Priority,
}

/// The limits in force for one vital (`limits`).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct VitalLimits {
    /// Whether the vital is watched at all.
    pub enabled: bool,
    /// Low limit.
    pub low: Option<LimitValue>,
    /// High limit.
    pub high: Option<LimitValue>,
    /// Critical low limit.
    pub critical_low: Option<LimitValue>,
    /// Critical high limit.
    pub critical_high: Option<LimitValue>,
}

/// One parsed message.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// `vitals`: by vital key.
    Vitals(BTreeMap<String, VitalReading>),
    /// `alarms`: one phase change.
    Alarm(Alarm),
    /// `alarms/active`: the alarms present now.
    Active {
        /// Alarms.
        alarms: Vec<Alarm>,
        /// Audio paused until.
        audio_paused_until: Option<SystemTime>,
    },
    /// `limits`: by vital key.
    Limits(BTreeMap<String, VitalLimits>),
    /// `session`.
    Session(Session),
    /// `status`.
    Status(Status),
    /// `cmd/result`.
    Result(CommandResult),
    /// A command on `cmd` (ours or another display's): ignored.
    Command,
}

/// Parses the payload of one topic kind, into the daemon's own payload
/// types ([`crate::mqtt::messages`]) and from them into the display's.
pub fn parse(
    topic: &str,
    kind: TopicKind,
    payload: &[u8],
) -> Result<(Envelope, Message), FeedError> {
    let bad = |e: serde_json::Error| FeedError::Malformed {
        topic: topic.to_owned(),
        problem: e.to_string(),
    };
    // The version first: a payload of another version may have another
    // shape, even in its head.
    #[derive(serde::Deserialize)]
    struct Version {
        schema_version: Option<u64>,
    }
    let version: Version = serde_json::from_slice(payload).map_err(bad)?;
    match version.schema_version {
        None | Some(SCHEMA_VERSION) => {}
        Some(found) => {
            return Err(FeedError::Version {
                topic: topic.to_owned(),
                found,
            })
        }
    }
    let head: m::Head = serde_json::from_slice(payload).map_err(bad)?;
    let env = Envelope {
        seq: head.seq,
        epoch: head.epoch.map(Cow::into_owned),
        time: time(&head.time),
        stream_seq: head.stream_seq,
    };
    let missing = |field: &str| FeedError::Malformed {
        topic: topic.to_owned(),
        problem: format!("missing field `{field}`"),
    };
    let msg = match kind {
        TopicKind::Vitals => {
            let v: m::Vitals = serde_json::from_slice(payload).map_err(bad)?;
            Message::Vitals(
                v.vitals
                    .0
                    .into_iter()
                    .map(|(k, v)| {
                        let reading = VitalReading {
                            value: v.value,
                            validity: v.validity.into_owned(),
                            unit: v.unit.into_owned(),
                            time: time(&v.time),
                        };
                        (k.into_owned(), reading)
                    })
                    .collect(),
            )
        }
        TopicKind::Alarms => {
            let a: m::AlarmChange = serde_json::from_slice(payload).map_err(bad)?;
            Message::Alarm(alarm(a.alarm).ok_or_else(|| missing("alarm.id"))?)
        }
        TopicKind::Active => {
            let a: m::Active = serde_json::from_slice(payload).map_err(bad)?;
            Message::Active {
                alarms: a.alarms.into_iter().filter_map(alarm).collect(),
                audio_paused_until: time(&a.audio_paused_until),
            }
        }
        TopicKind::Limits => {
            let l: m::Limits = serde_json::from_slice(payload).map_err(bad)?;
            let limit = |l: Option<m::Limit>| {
                l.map(|l| LimitValue {
                    value: l.value,
                    // An unknown priority reads as high: never under-alarm.
                    priority: Priority::parse(&l.priority).unwrap_or(Priority::High),
                })
            };
            Message::Limits(
                l.vitals
                    .0
                    .into_iter()
                    .map(|(k, v)| {
                        let l = VitalLimits {
                            enabled: v.enabled,
                            low: limit(v.low),
                            high: limit(v.high),
                            critical_low: limit(v.critical_low),
                            critical_high: limit(v.critical_high),
                        };
                        (k.into_owned(), l)
                    })
                    .collect(),
            )
        }
        TopicKind::Session => {
            let s: m::Session = serde_json::from_slice(payload).map_err(bad)?;
            let s = s.state;
            Message::Session(Session {
                phase: s.phase.into_owned(),
                session: s.session.into_owned(),
                baselines: s
                    .baselines
                    .0
                    .into_iter()
                    .map(|(k, v)| (k.into_owned(), v))
                    .collect(),
                doses: s
                    .doses
                    .into_iter()
                    .map(|d| Dose {
                        number: d.number,
                        route: d.route.into_owned(),
                        amount: match (d.amount, d.unit) {
                            (Some(a), Some(u)) => Some(format!("{a} {u}")),
                            _ => None,
                        },
                        time: time(&d.time),
                    })
                    .collect(),
                discharge_ready: s.discharge_ready,
            })
        }
        TopicKind::Status => {
            let s: m::Status = serde_json::from_slice(payload)
                .map_err(|_| missing("state (online or offline)"))?;
            Message::Status(match s.state {
                m::StatusState::Online(b) => Status::Online {
                    beat: b.beat,
                    uptime_s: b.uptime_s,
                    sources: b
                        .sources
                        .into_iter()
                        .map(|s| SourceState {
                            status: source_status(s.health.as_deref(), s.up),
                            name: s.name.into_owned(),
                            up: s.up,
                        })
                        .collect(),
                    latency_us: b.latency_us.map(|l| (l.p50, l.p99)),
                },
                m::StatusState::Offline { reason } => Status::Offline {
                    reason: reason.map_or_else(|| "unknown".into(), Cow::into_owned),
                },
            })
        }
        TopicKind::CmdResult => {
            let r: m::CommandResult = serde_json::from_slice(payload).map_err(bad)?;
            Message::Result(CommandResult {
                id: r.id.map(Cow::into_owned),
                command: r.command.map(Cow::into_owned),
                accepted: r.result == "accepted",
                reason: r.reason.map(Cow::into_owned),
            })
        }
        TopicKind::Cmd => Message::Command,
    };
    Ok((env, msg))
}

/// An RFC 3339 time as written; `None` when absent or not one.
fn time(t: &Option<m::Text<'_>>) -> Option<SystemTime> {
    t.as_deref().and_then(parse_rfc3339)
}

fn alarm(a: m::Alarm) -> Option<Alarm> {
    if a.id.is_empty() {
        return None;
    }
    Some(Alarm {
        onset: time(&a.onset),
        determined: time(&a.determined),
        id: a.id.into_owned(),
        kind: a.kind.into_owned(),
        // An unknown priority is shown as high: never under-alarm.
        priority: Priority::parse(&a.priority).unwrap_or(Priority::High),
        phase: a.phase.into_owned(),
        state: match &*a.state {
            "acknowledged" => AlarmState::Acknowledged,
            "latched" => AlarmState::Latched,
            "ended" => AlarmState::Ended,
            _ => AlarmState::Active,
        },
        value: a.value,
        limit: a.limit,
        validity: a.validity.map(Cow::into_owned),
        ack: a.ack.map(|k| AckInfo {
            at: time(&k.at),
            by: k.by.into_owned(),
        }),
    })
}

/// Checks a staff name or initials for an acknowledgement.
pub fn check_by(by: &str) -> Result<String, FeedError> {
    let by = by.trim();
    if by.is_empty() || !printable(by, 32) {
        return Err(FeedError::By);
    }
    Ok(by.to_owned())
}

/// Text vigil takes in a command: at most `max` bytes (its bound on the
/// wire) and nothing [`command::unprintable`], so that what a display
/// sends is never refused for its text.
fn printable(s: &str, max: usize) -> bool {
    s.len() <= max && !s.chars().any(command::unprintable)
}

/// The longest audio pause a display asks for (vigil refuses more than its
/// `alarms.max_audio_pause`, and says so on `cmd/result`).
pub const MAX_PAUSE_S: u32 = 600;

/// A session or audio command a display sends for a bed (the board's
/// buttons, `vigil watch`'s keys): see `schemas/command.schema.json`.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum BedCommand {
    /// Start a session with a pseudonymous code.
    StartSession {
        /// The code.
        session: String,
    },
    /// A dose was given.
    Dose {
        /// Amount, e.g. `25` (optional).
        #[serde(default)]
        amount: Option<f64>,
        /// Unit of the amount: `mg` or `mg/kg`.
        #[serde(default)]
        unit: Option<String>,
        /// Route: `im`, `iv`, `sl`, `in`, `po`.
        route: String,
        /// Free text (product, site); no patient identifiers.
        #[serde(default)]
        note: String,
    },
    /// Enter recovery observation.
    StartRecovery,
    /// End the session.
    EndSession,
    /// Pause audio signals at the bed.
    PauseAudio {
        /// How long, in seconds.
        duration_s: u32,
    },
    /// End an audio pause.
    ResumeAudio,
}

/// Dose routes a display offers (and vigil's engine takes as free text).
pub const DOSE_ROUTES: [&str; 5] = ["im", "iv", "sl", "in", "po"];

impl BedCommand {
    /// Checks the fields; returns the command as it will be sent.
    pub fn checked(self) -> Result<BedCommand, FeedError> {
        match &self {
            BedCommand::StartSession { session } => {
                let ok = !session.is_empty()
                    && session.len() <= 32
                    && session
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
                if !ok {
                    return Err(FeedError::SessionCode);
                }
            }
            BedCommand::Dose {
                amount,
                unit,
                route,
                note,
            } => {
                if !DOSE_ROUTES.contains(&route.as_str()) {
                    return Err(FeedError::Dose("route must be one of im, iv, sl, in, po"));
                }
                if amount.is_some_and(|a| !(a.is_finite() && a > 0.0 && a < 10_000.0)) {
                    return Err(FeedError::Dose("amount must be a positive number"));
                }
                if amount.is_some() != unit.is_some()
                    || unit.as_deref().is_some_and(|u| u != "mg" && u != "mg/kg")
                {
                    return Err(FeedError::Dose("amount needs a unit, mg or mg/kg"));
                }
                if !printable(note, 64) {
                    return Err(FeedError::Dose(
                        "note must be at most 64 bytes of printable text (an accented letter takes two)",
                    ));
                }
            }
            BedCommand::PauseAudio { duration_s } => {
                if *duration_s == 0 || *duration_s > MAX_PAUSE_S {
                    return Err(FeedError::Pause);
                }
            }
            BedCommand::StartRecovery | BedCommand::EndSession | BedCommand::ResumeAudio => {}
        }
        Ok(self)
    }

    /// The command's name on the wire.
    pub fn key(&self) -> &'static str {
        match self {
            BedCommand::StartSession { .. } => "start_session",
            BedCommand::Dose { .. } => "dose",
            BedCommand::StartRecovery => "start_recovery",
            BedCommand::EndSession => "end_session",
            BedCommand::PauseAudio { .. } => "pause_audio",
            BedCommand::ResumeAudio => "resume_audio",
        }
    }

    /// What it asks for, for the board's result line: `dose 25 mg im`.
    pub fn describe(&self) -> String {
        match self {
            BedCommand::StartSession { session } => format!("start session {session}"),
            BedCommand::Dose { route, note, .. } => {
                format!("dose {}", self.dose_parts(Some(route), note).join(" "))
            }
            BedCommand::StartRecovery => "start recovery".into(),
            BedCommand::EndSession => "end session".into(),
            BedCommand::PauseAudio { duration_s } => format!("pause audio {duration_s} s"),
            BedCommand::ResumeAudio => "resume audio".into(),
        }
    }

    /// A dose's words, in order: the amount with its unit (`25 mg`), the
    /// route when given, the note when not blank.
    fn dose_parts(&self, route: Option<&str>, note: &str) -> Vec<String> {
        let amount = match self {
            BedCommand::Dose {
                amount: Some(a),
                unit: Some(u),
                ..
            } => Some(format!("{a} {u}")),
            _ => None,
        };
        let note = Some(note.trim()).filter(|n| !n.is_empty());
        [amount, route.map(str::to_owned), note.map(str::to_owned)]
            .into_iter()
            .flatten()
            .collect()
    }

    /// The `cmd` payload.
    pub fn payload(&self, request_id: &str, now: SystemTime) -> Vec<u8> {
        let kind = match self {
            BedCommand::StartSession { session } => m::CommandKind::StartSession {
                session: session.into(),
            },
            BedCommand::Dose {
                route,
                amount,
                unit,
                note,
            } => {
                let (amount, unit) = match (amount, unit) {
                    (Some(a), Some(u)) => (Some(*a), Some(u.into())),
                    _ => (None, None),
                };
                let note = Some(note.trim()).filter(|n| !n.is_empty());
                m::CommandKind::Dose {
                    route: route.into(),
                    amount,
                    unit,
                    note: note.map(Cow::Borrowed),
                }
            }
            BedCommand::PauseAudio { duration_s } => m::CommandKind::PauseAudio {
                duration_s: (*duration_s).into(),
            },
            BedCommand::StartRecovery => m::CommandKind::StartRecovery,
            BedCommand::EndSession => m::CommandKind::EndSession,
            BedCommand::ResumeAudio => m::CommandKind::ResumeAudio,
        };
        command(request_id, now, kind)
    }
}

/// The `acknowledge_all` command payload for `cmd`.
pub fn acknowledge_all(request_id: &str, by: &str, now: SystemTime) -> Vec<u8> {
    command(
        request_id,
        now,
        m::CommandKind::AcknowledgeAll { by: by.into() },
    )
}

/// The `acknowledge` command payload for `cmd`.
pub fn acknowledge(request_id: &str, alarm: &str, by: &str, now: SystemTime) -> Vec<u8> {
    let kind = m::CommandKind::Acknowledge {
        alarm: alarm.into(),
        by: by.into(),
    };
    command(request_id, now, kind)
}

/// One `cmd` payload.
fn command(request_id: &str, now: SystemTime, kind: m::CommandKind<'_>) -> Vec<u8> {
    m::to_vec(&m::Command {
        schema_version: m::SCHEMA_VERSION,
        id: request_id.into(),
        time: rfc3339(now).into(),
        kind,
    })
}

pub use crate::time::parse_rfc3339;

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::vitals::{Measurement, Nibp, NibpMode, Sample, Validity};
    use std::time::Duration;

    /// The daemon's own `vitals` payload (its publisher's function) after
    /// these measurements arrived at `at`; `latest` keeps every vital seen,
    /// as the daemon does.
    pub(in crate::display) fn daemon_vitals(
        latest: &mut crate::mqtt::payload::Latest,
        seq: u64,
        at: SystemTime,
        readings: &[Measurement],
    ) -> Vec<u8> {
        for m in readings {
            latest.apply(m, at, 0);
        }
        let names = ["monitor".to_owned()];
        let ctx = crate::mqtt::payload::Ctx {
            site: "s",
            bed: "b",
            names: &names,
            epoch: "0123456789abcdef",
        };
        crate::mqtt::payload::vitals(&ctx, seq, at, latest)
    }

    /// One NIBP measurement of these components.
    pub(in crate::display) fn nibp_of(sys: Sample, dia: Sample, mean: Sample) -> Measurement {
        Measurement::Nibp(Nibp {
            systolic: sys,
            diastolic: dia,
            mean,
            measured_at: None,
            mode: NibpMode::Auto,
        })
    }

    fn at(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn bed_commands_are_checked_and_become_cmd_payloads() {
        let start = |code: &str| {
            BedCommand::StartSession {
                session: code.into(),
            }
            .checked()
        };
        assert!(start("K-0142").is_ok());
        for name in ["Jane Doe", "", "Zoë", &"K".repeat(33)] {
            assert!(
                matches!(start(name), Err(FeedError::SessionCode)),
                "{name:?}"
            );
        }
        let dose = |amount: Option<f64>, unit: Option<&str>, route: &str| {
            BedCommand::Dose {
                amount,
                unit: unit.map(str::to_owned),
                route: route.into(),
                note: "esketamine".into(),
            }
            .checked()
        };
        assert!(dose(Some(0.5), Some("mg/kg"), "im").is_ok());
        assert!(dose(None, None, "sl").is_ok());
        assert!(
            dose(Some(25.0), None, "im").is_err(),
            "an amount needs its unit"
        );
        assert!(dose(Some(-1.0), Some("mg"), "im").is_err());
        assert!(dose(Some(25.0), Some("ml"), "im").is_err());
        assert!(dose(Some(25.0), Some("mg"), "oral").is_err());
        let pause = |s| BedCommand::PauseAudio { duration_s: s }.checked();
        assert!(pause(MAX_PAUSE_S).is_ok());
        assert!(pause(0).is_err() && pause(MAX_PAUSE_S + 1).is_err());

        let d = dose(Some(25.0), Some("mg"), "im").unwrap();
        assert_eq!(d.describe(), "dose 25 mg im esketamine");
        let v: serde_json::Value = serde_json::from_slice(&d.payload("b-1", at(1_000))).unwrap();
        assert_eq!(v["command"], "dose");
        assert_eq!(v["id"], "b-1");
        assert_eq!(v["route"], "im");
        assert_eq!(v["amount"], 25.0);
        assert_eq!(v["unit"], "mg");
        assert_eq!(v["note"], "esketamine");
        let v: serde_json::Value = serde_json::from_slice(
            &BedCommand::PauseAudio { duration_s: 120 }.payload("b-2", at(1_000)),
        )
        .unwrap();
        assert_eq!(v["duration_s"], 120);
        // The board's JSON, as the page sends it.
        let parsed: BedCommand = serde_json::from_str(r#"{"command":"start_recovery"}"#).unwrap();
        assert_eq!(parsed, BedCommand::StartRecovery);
    }

    #[test]
    fn reads_the_limits_the_daemon_publishes() {
        use crate::engine::{EngineConfig, Limit};
        use crate::mqtt::payload::{limits, Ctx};
        use crate::vitals::Vital;
        let t = Topics::new(DEFAULT_PREFIX).unwrap();
        assert_eq!(
            t.parse("vigil/v1/clinic-a/bed-2/limits"),
            Some((BedKey::new("clinic-a", "bed-2"), TopicKind::Limits))
        );
        let mut rules = EngineConfig::default().vitals;
        rules[Vital::SpO2.index()].low = Some(Limit::new(92.0, Priority::High));
        rules[Vital::NibpMean.index()].enabled = false;
        let ctx = Ctx {
            site: "clinic-a",
            bed: "bed-2",
            names: &[],
            epoch: "0123456789abcdef",
        };
        let body = limits(&ctx, 12, at(5_000), &rules);
        let (env, msg) = parse("t", TopicKind::Limits, &body).unwrap();
        assert_eq!((env.seq, env.time), (12, Some(at(5_000))));
        let Message::Limits(l) = msg else {
            panic!("{msg:?}")
        };
        assert_eq!(l.len(), Vital::COUNT);
        let spo2 = &l["spo2"];
        assert_eq!(
            spo2.low,
            Some(LimitValue {
                value: 92.0,
                priority: Priority::High
            })
        );
        assert_eq!(spo2.critical_low.map(|c| c.value), Some(85.0));
        assert_eq!((spo2.high, spo2.enabled), (None, true));
        assert_eq!(l["hr"].high.map(|h| h.priority), Some(Priority::Medium));
        assert!(!l["nibp_mean"].enabled);
    }

    #[test]
    fn reads_breathing_questionable_values_and_nibp_components_as_published() {
        let mut latest = crate::mqtt::payload::Latest::default();
        let body = daemon_vitals(
            &mut latest,
            3,
            at(1_000),
            &[
                Measurement::RespRate(Sample::valid(14.0)),
                Measurement::EtCo2(Sample::valid(38.0)),
                Measurement::SpO2(Sample::new(82.0, Validity::Questionable)),
                nibp_of(
                    Sample::valid(120.0),
                    Sample::new(79.0, Validity::Questionable),
                    Sample::missing(Validity::Unavailable),
                ),
            ],
        );
        let (_, Message::Vitals(v)) = parse("t", TopicKind::Vitals, &body).unwrap() else {
            panic!()
        };
        let get = |k: &str| (v[k].value, v[k].validity.as_str());
        assert_eq!(get("rr"), (Some(14.0), "valid"));
        assert_eq!(get("etco2"), (Some(38.0), "valid"));
        assert_eq!(v["rr"].unit, "/min");
        assert_eq!(v["rr"].time, Some(at(1_000)));
        // vigil sends a questionable value with its number.
        assert_eq!(get("spo2"), (Some(82.0), "questionable"));
        assert_eq!(get("nibp_sys"), (Some(120.0), "valid"));
        assert_eq!(get("nibp_dia"), (Some(79.0), "questionable"));
        assert_eq!(get("nibp_mean"), (None, "unavailable"));

        let alarm = br#"{"schema_version":1,"seq":4,"alarm":{"id":"spo2.critical_low","kind":"physiological",
            "priority":"high","phase":"start","state":"active","value":82,"limit":85,"validity":"questionable"}}"#;
        let (_, Message::Alarm(a)) = parse("t", TopicKind::Alarms, alarm).unwrap() else {
            panic!()
        };
        assert_eq!(a.validity.as_deref(), Some("questionable"));
        assert_eq!((a.value, a.limit), (Some(82.0), Some(85.0)));
    }

    #[test]
    fn reads_the_publishers_shapes_and_ignores_unknown_fields() {
        let alarm = br#"{"schema_version":1,"site":"s","bed":"b","seq":42,"stream_seq":3,
            "time":"2026-11-23T19:04:05.123Z","future_field":{"x":1},
            "alarm":{"id":"spo2.low","kind":"physiological","priority":"high","base_priority":"medium",
              "phase":"escalate","state":"active","value":86,"limit":90,"validity":null,"delay_ms":10000,
              "onset":"2026-11-23T19:03:55.000Z","determined":"2026-11-23T19:04:05.000Z","ack":null}}"#;
        let (env, msg) = parse("t", TopicKind::Alarms, alarm).unwrap();
        assert_eq!(env.seq, 42);
        assert_eq!(env.stream_seq, Some(3));
        assert_eq!(env.time, parse_rfc3339("2026-11-23T19:04:05.123Z"));
        let Message::Alarm(a) = msg else { panic!() };
        assert_eq!(a.id, "spo2.low");
        assert_eq!(a.priority, Priority::High);
        assert_eq!(a.state, AlarmState::Active);
        assert_eq!(a.value, Some(86.0));

        let vitals = br#"{"schema_version":1,"seq":7,"time":"2026-11-23T19:04:05.123Z","vitals":{
            "hr":{"value":72,"validity":"valid","unit":"/min","time":"2026-11-23T19:04:05.000Z","source":"m"},
            "spo2":{"value":null,"validity":"sensor_off","unit":"%","time":"2026-11-23T19:04:05.000Z","source":"m"}}}"#;
        let (_, Message::Vitals(v)) = parse("t", TopicKind::Vitals, vitals).unwrap() else {
            panic!()
        };
        assert_eq!(v["hr"].value, Some(72.0));
        assert_eq!(v["spo2"].validity, "sensor_off");

        let will = br#"{"schema_version":1,"site":"s","bed":"b","seq":0,"time":"2026-11-23T19:00:00.000Z","state":"offline","reason":"connection_lost"}"#;
        assert_eq!(
            parse("t", TopicKind::Status, will).unwrap().1,
            Message::Status(Status::Offline {
                reason: "connection_lost".into()
            })
        );
        let session = br#"{"schema_version":1,"seq":9,"time":"2026-11-23T19:00:00.000Z","stream_seq":1,
            "event":{"type":"dose","number":1,"route":"im","note":""},
            "state":{"phase":"dosing","session":"S-17","baselines":{"hr":70},"doses":[{"number":1,"route":"im","note":"","time":"2026-11-23T19:00:00.000Z"}],"discharge_ready":false}}"#;
        let (_, Message::Session(s)) = parse("t", TopicKind::Session, session).unwrap() else {
            panic!()
        };
        assert_eq!(s.phase, "dosing");
        assert_eq!(s.doses[0].time, parse_rfc3339("2026-11-23T19:00:00Z"));

        // Another version is refused as such, whatever its shape.
        let v2 = br#"{"schema_version":2,"seq":"one","alarms":{"all":[]}}"#;
        assert!(matches!(
            parse("t", TopicKind::Active, v2),
            Err(FeedError::Version { found: 2, .. })
        ));
        let v2 = br#"{"schema_version":2,"seq":1,"alarms":[]}"#;
        assert!(matches!(
            parse("t", TopicKind::Active, v2),
            Err(FeedError::Version { found: 2, .. })
        ));
        assert!(parse("t", TopicKind::Alarms, b"not json").is_err());
    }

    #[test]
    fn acknowledge_matches_the_command_contract() {
        let body = acknowledge("d-1", "spo2.low", "RN", at(1_795_460_645_123));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["command"], "acknowledge");
        assert_eq!(v["schema_version"], 1);
        assert_eq!(v["time"], "2026-11-23T19:04:05.123Z");
        assert_eq!(v.as_object().unwrap().len(), 6);
        assert_eq!(check_by("  JD "), Ok("JD".into()));
        assert!(check_by("").is_err());
        assert!(check_by(&"x".repeat(33)).is_err());
        assert!(check_by("a\nb").is_err());
    }

    /// What the displays let through, the daemon takes: a name or a note
    /// the daemon would refuse for its length in bytes or for a hidden
    /// character is refused before it is sent.
    #[test]
    fn names_and_notes_are_checked_by_the_daemons_rule() {
        let sent_at = at(1_795_460_645_123);
        let daemon_takes = |body: Vec<u8>| {
            command::parse(&body, sent_at, std::time::Duration::from_secs(30), &[]).is_ok()
        };
        // 16 accented letters are 32 bytes; 17 are 34, over the daemon's 32.
        for (by, ok) in [
            ("é".repeat(16), true),
            ("é".repeat(17), false),
            ("x".repeat(32), true),
            ("J\u{200B}D".into(), false),
            ("J\u{202E}D".into(), false),
            ("J\u{7F}D".into(), false),
        ] {
            assert_eq!(check_by(&by).is_ok(), ok, "{by:?}");
            // The daemon agrees on every one of them.
            assert_eq!(
                daemon_takes(acknowledge_all("d-1", &by, sent_at)),
                ok,
                "{by:?}"
            );
        }
        for (note, ok) in [
            ("x".repeat(64), true),
            ("é".repeat(32), true),
            ("é".repeat(33), false),
            ("Ketalar\u{2066}".into(), false),
        ] {
            let dose = BedCommand::Dose {
                amount: None,
                unit: None,
                route: "im".into(),
                note: note.clone(),
            };
            assert_eq!(dose.clone().checked().is_ok(), ok, "{note:?}");
            assert_eq!(daemon_takes(dose.payload("d-2", sent_at)), ok, "{note:?}");
        }
    }

    #[test]
    fn rfc3339_parses_what_the_daemon_writes() {
        let t = at(1_795_460_645_123);
        assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        assert_eq!(parse_rfc3339("2026-11-23T20:04:05.123+01:00"), Some(t));
        for bad in [
            "",
            "2026-11-23",
            "2026-11-23T19:04:05",
            "2026-13-01T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
