//! Commands from displays on `{prefix}cmd`: strict parsing and validation.
//!
//! A command is one JSON object:
//!
//! ```json
//! {"schema_version": 1, "id": "tab-3-0042", "time": "2026-11-23T19:04:05.123Z",
//!  "command": "acknowledge", "alarm": "spo2.low", "by": "RN JD"}
//! ```
//!
//! `command` is one of `acknowledge` (`alarm`, `by`), `acknowledge_all`
//! (`by`: every alarm of this bed that waits for an acknowledgement), `pause_audio`
//! (`duration_s`), `resume_audio`, `start_session` (`session`: a
//! pseudonymous code, never a name), `set_baseline` (`vital`, `value`),
//! `dose` (`route`, optional `amount` with `unit`, optional `note`),
//! `start_recovery`, `end_session`.
//! Every string field is printable text (no control character, no bidi
//! override or zero-width mark) of a bounded length: `id` 64 bytes, `by`
//! and `session` 32, `route` 16, `note` 64 (the [`ShortText`] sizes),
//! `alarm` 96;
//! a rejection names the field and its bound. The request id and command
//! name are echoed in the result only when they are themselves printable.
//! Unknown fields, missing fields, wrong types, over-long texts, unknown
//! alarm ids and vitals, and timestamps older than `mqtt.command_max_age`
//! (or that far in the future) are rejected with a reason that says what to
//! fix. `schemas/command.schema.json` is the same contract.
//!
//! The fields are checked one by one first, so that a rejection names its
//! field and bound in words a display's author can act on; then the payload
//! is read into [`m::Command`], the type the displays write it from
//! ([`crate::display::feed`]), and that into the engine's [`Command`].
//! `tests/fixtures/commands.txt` pins the bytes the displays send.
//!
//! Pure: the current time is an argument. Depends on [`crate::engine`],
//! [`crate::vitals`], [`super::messages`] and [`crate::time::parse_rfc3339`].

use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

use super::messages::{self as m, CommandKind, SCHEMA_VERSION};
use crate::engine::{AlarmId, Command, DoseAmount, DoseUnit};
use crate::time::parse_rfc3339;
use crate::vitals::{ShortText, Vital};

/// Why a command was rejected before it reached the engine.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandRejection {
    /// The payload is not a JSON object.
    #[error("not a JSON object: {0}")]
    Malformed(String),
    /// A required field is absent.
    #[error("missing field `{0}`")]
    Missing(&'static str),
    /// A field that no command of this kind has.
    #[error("unknown field `{field}` for command `{command}`")]
    UnknownField {
        /// The field.
        field: String,
        /// The command.
        command: String,
    },
    /// A field of the wrong type or out of range.
    #[error("field `{field}`: {problem}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong and what to send instead.
        problem: String,
    },
    /// The command is older than the configured maximum age.
    #[error("stale: sent {age_s:.1} s ago, more than the {max_s} s allowed (mqtt.command_max_age); send it again")]
    Stale {
        /// How old.
        age_s: f64,
        /// The limit.
        max_s: u64,
    },
    /// The timestamp lies in the future beyond the allowed skew.
    #[error("`time` is {ahead_s:.1} s in the future: check the display's clock")]
    Future {
        /// How far ahead.
        ahead_s: f64,
    },
    /// No command by that name.
    #[error("unknown command `{0}` (expected acknowledge, acknowledge_all, pause_audio, resume_audio, start_session, set_baseline, dose, start_recovery or end_session)")]
    UnknownCommand(String),
    /// The alarm id names no alarm.
    #[error("unknown alarm id `{0}` (ids look like spo2.low, nibp_sys.high, source.<name>.disconnected)")]
    UnknownAlarm(String),
}

/// A command that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The display's request id, echoed in the result.
    pub id: String,
    /// The command for the engine.
    pub command: Command,
}

/// A rejected command with what could be read of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// The request id, if one could be read.
    pub id: Option<String>,
    /// The command name, if one could be read.
    pub command: Option<String>,
    /// Why.
    pub reason: CommandRejection,
}

/// Parses and validates one command payload received at `now`.
pub fn parse(
    payload: &[u8],
    now: SystemTime,
    max_age: Duration,
    source_names: &[String],
) -> Result<Parsed, Rejected> {
    let value: Value = serde_json::from_slice(payload).map_err(|e| Rejected {
        id: None,
        command: None,
        reason: CommandRejection::Malformed(e.to_string()),
    })?;
    let Value::Object(obj) = value else {
        return Err(Rejected {
            id: None,
            command: None,
            reason: CommandRejection::Malformed("expected an object {...}".into()),
        });
    };
    // Echoed in the result and the log only when printable and bounded.
    let id = echoable(obj.get("id"), 64);
    let name = echoable(obj.get("command"), 32);
    match validate(obj, now, max_age, source_names) {
        Ok(command) => Ok(Parsed {
            id: id.unwrap_or_default(),
            command,
        }),
        Err(reason) => Err(Rejected {
            id,
            command: name,
            reason,
        }),
    }
}

/// Checks the fields one by one (so that a rejection names the field),
/// then reads them into [`m::Command`], the type the displays write, and
/// that into the engine's [`Command`].
fn validate(
    obj: Map<String, Value>,
    now: SystemTime,
    max_age: Duration,
    names: &[String],
) -> Result<Command, CommandRejection> {
    match obj.get("schema_version") {
        None => return Err(CommandRejection::Missing("schema_version")),
        Some(v) if v.as_u64() == Some(u64::from(SCHEMA_VERSION)) => {}
        Some(v) => {
            return Err(CommandRejection::Invalid {
                field: "schema_version",
                problem: format!(
                    "{v} is not supported; this vigil speaks version {SCHEMA_VERSION}"
                ),
            })
        }
    }
    if text(&obj, "id")?.is_empty() {
        return Err(CommandRejection::Invalid {
            field: "id",
            problem: "must not be empty".into(),
        });
    }
    let time = text(&obj, "time")?;
    let sent = parse_rfc3339(time).ok_or_else(|| CommandRejection::Invalid {
        field: "time",
        problem: format!("`{time}` is not an RFC 3339 time such as 2026-11-23T19:04:05.123Z"),
    })?;
    match now.duration_since(sent) {
        Ok(age) if age > max_age => {
            return Err(CommandRejection::Stale {
                age_s: age.as_secs_f64(),
                max_s: max_age.as_secs(),
            })
        }
        Err(ahead) if ahead.duration() > max_age => {
            return Err(CommandRejection::Future {
                ahead_s: ahead.duration().as_secs_f64(),
            })
        }
        _ => {}
    }
    let name = text(&obj, "command")?;
    let fields: &[&'static str] = match name {
        "acknowledge" => &["alarm", "by"],
        "acknowledge_all" => &["by"],
        "pause_audio" => &["duration_s"],
        "resume_audio" | "start_recovery" | "end_session" => &[],
        "start_session" => &["session"],
        "set_baseline" => &["vital", "value"],
        "dose" => &["route", "amount", "unit", "note"],
        other => return Err(CommandRejection::UnknownCommand(other.to_owned())),
    };
    for key in obj.keys() {
        let common = ["schema_version", "id", "time", "command"].contains(&key.as_str());
        if !common && !fields.contains(&key.as_str()) {
            return Err(CommandRejection::UnknownField {
                field: key.clone(),
                command: name.to_owned(),
            });
        }
    }
    for &field in fields {
        // A dose's amount, unit and note are optional.
        if obj.contains_key(field) || !matches!(field, "amount" | "unit" | "note") {
            checked(&obj, field)?;
        }
    }
    // Every field is there and of its type: reading cannot fail.
    let read: m::Command = serde_json::from_value(Value::Object(obj))
        .map_err(|e| CommandRejection::Malformed(e.to_string()))?;
    Ok(match read.kind {
        CommandKind::Acknowledge { alarm, by } => Command::Acknowledge {
            alarm: AlarmId::parse(&alarm, names)
                .ok_or_else(|| CommandRejection::UnknownAlarm(alarm.into_owned()))?,
            by: named("by", &by)?,
        },
        CommandKind::AcknowledgeAll { by } => Command::AcknowledgeAll {
            by: named("by", &by)?,
        },
        CommandKind::PauseAudio { duration_s } => {
            let secs = duration_s.as_f64().unwrap_or_default();
            if !(secs > 0.0 && secs <= 86_400.0) {
                return Err(CommandRejection::Invalid {
                    field: "duration_s",
                    problem: format!("{secs} must be a number of seconds above 0"),
                });
            }
            Command::PauseAudio {
                duration: Duration::from_secs_f64(secs),
            }
        }
        CommandKind::ResumeAudio => Command::ResumeAudio,
        CommandKind::StartSession { session } => Command::StartSession {
            session: named("session", &session)?,
        },
        CommandKind::SetBaseline { vital, value } => Command::SetBaseline {
            vital: vital
                .parse::<Vital>()
                .map_err(|e| CommandRejection::Invalid {
                    field: "vital",
                    problem: e.to_string(),
                })?,
            value: value as f32,
        },
        CommandKind::Dose {
            route,
            amount,
            unit,
            note,
        } => Command::Dose {
            route: named("route", &route)?,
            amount: dose_amount(amount, unit.as_deref())?,
            note: ShortText::new(note.as_deref().unwrap_or_default()),
        },
        CommandKind::StartRecovery => Command::StartRecovery,
        CommandKind::EndSession => Command::EndSession,
    })
}

/// A dose's `amount` and `unit`: both or neither; a number above 0 and
/// below 10,000 in `mg` or `mg/kg`.
fn dose_amount(
    amount: Option<f64>,
    unit: Option<&str>,
) -> Result<Option<DoseAmount>, CommandRejection> {
    let invalid = |field, problem: String| CommandRejection::Invalid { field, problem };
    match (amount, unit) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(invalid(
            "unit",
            "an amount needs its unit, mg or mg/kg".into(),
        )),
        (None, Some(_)) => Err(invalid("amount", "a unit needs an amount".into())),
        (Some(value), Some(unit)) => {
            let unit = DoseUnit::parse(unit)
                .ok_or_else(|| invalid("unit", "must be mg or mg/kg".into()))?;
            DoseAmount::new(value as f32, unit)
                .map(Some)
                .ok_or_else(|| {
                    invalid(
                        "amount",
                        format!("{value} must be a number above 0 and below 10000"),
                    )
                })
        }
    }
}

/// A character that must not reach a log line, a board or a recording:
/// control characters (terminal escapes, newlines, NUL), and the Unicode
/// marks that reorder or hide text (bidi overrides, zero-width, line
/// separators).
/// A character a command's text must not carry: a control character, or a
/// mark that reorders or hides text (bidi controls, zero-width characters).
/// The displays check names and notes with the same rule before they send.
pub fn unprintable(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// A string read as it may be echoed (request id, command name): printable
/// and at most `max` bytes, else not read at all.
fn echoable(v: Option<&Value>, max: usize) -> Option<String> {
    v.and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= max && !s.chars().any(unprintable))
        .map(str::to_owned)
}

/// The bound of a text field in bytes (the [`ShortText`] sizes), or `None`
/// for a number.
fn bound(field: &str) -> Option<usize> {
    match field {
        "alarm" => Some(96),
        "id" | "time" | "note" => Some(64),
        "command" | "by" | "session" => Some(32),
        "route" | "vital" => Some(16),
        "unit" => Some(8),
        // duration_s, value, amount
        _ => None,
    }
}

/// Field `field`, present and of its type: a number, or printable text
/// within its bound. A rejection names the field and the bound (and never
/// repeats the bad text).
fn checked<'a>(
    obj: &'a Map<String, Value>,
    field: &'static str,
) -> Result<&'a Value, CommandRejection> {
    let v = obj.get(field).ok_or(CommandRejection::Missing(field))?;
    let problem = match (bound(field), v) {
        (None, v) if v.as_f64().is_some_and(f64::is_finite) => return Ok(v),
        (None, v) => format!("expected a number, found {v}"),
        (Some(max), Value::String(s)) if s.len() > max => format!(
            "{} bytes is longer than the {max} allowed (printable text of at most {max} bytes)",
            s.len()
        ),
        (Some(max), Value::String(s)) => match s.chars().enumerate().find(|(_, c)| unprintable(*c))
        {
            None => return Ok(v),
            Some((at, c)) => format!(
                "character {} is U+{:04X}, not printable (printable text of at most {max} bytes)",
                at + 1,
                u32::from(c)
            ),
        },
        (Some(_), other) => format!("expected a string, found {other}"),
    };
    Err(CommandRejection::Invalid { field, problem })
}

/// Text field `field`, checked.
fn text<'a>(obj: &'a Map<String, Value>, field: &'static str) -> Result<&'a str, CommandRejection> {
    Ok(checked(obj, field)?.as_str().unwrap_or_default())
}

/// A name, code or route: not blank.
fn named<const N: usize>(field: &'static str, s: &str) -> Result<ShortText<N>, CommandRejection> {
    if s.trim().is_empty() {
        return Err(CommandRejection::Invalid {
            field,
            problem: "must not be empty".into(),
        });
    }
    Ok(ShortText::new(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Condition;
    use crate::time::rfc3339;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_460_645)
    }

    fn names() -> Vec<String> {
        vec!["monitor".into()]
    }

    fn cmd(body: &str, sent: SystemTime) -> Result<Parsed, Rejected> {
        let text = format!(
            r#"{{"schema_version":1,"id":"r1","time":"{}",{body}}}"#,
            rfc3339(sent)
        );
        parse(text.as_bytes(), now(), Duration::from_secs(30), &names())
    }

    #[test]
    fn a_valid_acknowledge_parses() {
        let p = cmd(
            r#""command":"acknowledge","alarm":"spo2.low","by":"RN JD""#,
            now(),
        )
        .unwrap();
        assert_eq!(p.id, "r1");
        assert_eq!(
            p.command,
            Command::Acknowledge {
                alarm: AlarmId::vital(Vital::SpO2, Condition::Low),
                by: ShortText::new("RN JD"),
            }
        );
        let p = cmd(
            r#""command":"acknowledge","alarm":"source.monitor.disconnected","by":"x""#,
            now(),
        )
        .unwrap();
        assert!(matches!(p.command, Command::Acknowledge { .. }));
    }

    #[test]
    fn acknowledge_all_parses_and_needs_who() {
        let p = cmd(r#""command":"acknowledge_all","by":"RN JD""#, now()).unwrap();
        assert_eq!(
            p.command,
            Command::AcknowledgeAll {
                by: ShortText::new("RN JD"),
            }
        );
        let reason = |r: Result<Parsed, Rejected>| r.unwrap_err().reason.to_string();
        assert_eq!(
            reason(cmd(r#""command":"acknowledge_all""#, now())),
            "missing field `by`"
        );
        // No alarm id: it covers every alarm of the bed.
        assert!(reason(cmd(
            r#""command":"acknowledge_all","by":"RN","alarm":"spo2.low""#,
            now()
        ))
        .starts_with("unknown field `alarm`"));
    }

    #[test]
    fn every_command_kind_parses() {
        for body in [
            r#""command":"pause_audio","duration_s":60"#,
            r#""command":"resume_audio""#,
            r#""command":"start_session","session":"S-042""#,
            r#""command":"set_baseline","vital":"nibp_sys","value":128"#,
            r#""command":"dose","route":"im""#,
            r#""command":"dose","route":"in","note":"esketamine 56 mg""#,
            r#""command":"start_recovery""#,
            r#""command":"end_session""#,
        ] {
            assert!(cmd(body, now()).is_ok(), "{body}");
        }
    }

    #[test]
    fn every_string_field_is_printable_and_bounded() {
        let reason = |r: Result<Parsed, Rejected>| r.unwrap_err().reason.to_string();
        let huge = "x".repeat(100_000);
        for (body, field) in [
            (
                r#""command":"acknowledge","alarm":"spo2.low","by":"RN\u001b[2JJD""#,
                "by",
            ),
            (
                r#""command":"acknowledge_all","by":"a\nINFO forged line""#,
                "by",
            ),
            (
                r#""command":"start_session","session":"K-01\u0000""#,
                "session",
            ),
            (
                r#""command":"start_session","session":"K-\u202e0142""#,
                "session",
            ),
            (r#""command":"dose","route":"im\r""#, "route"),
            (
                r#""command":"dose","route":"im","note":"56 mg\u0007""#,
                "note",
            ),
            (r#""command":"dose","route":"im","note":"\u200b""#, "note"),
            (
                r#""command":"set_baseline","vital":"hr\t","value":70"#,
                "vital",
            ),
            (
                r#""command":"acknowledge","alarm":"spo2.low\u0085","by":"x""#,
                "alarm",
            ),
        ] {
            let r = reason(cmd(body, now()));
            assert!(
                r.starts_with(&format!("field `{field}`: character ")),
                "{body}: {r}"
            );
            // The published contract refuses the same text.
            assert!(!schema_accepts(body), "the schema accepts {body}");
            assert!(r.contains("not printable") && r.contains("at most"), "{r}");
            assert!(!r.chars().any(unprintable), "{r:?}");
        }
        for (field, max, body) in [
            (
                "by",
                32,
                format!(r#""command":"acknowledge_all","by":"{huge}""#),
            ),
            (
                "session",
                32,
                format!(r#""command":"start_session","session":"{huge}""#),
            ),
            ("route", 16, format!(r#""command":"dose","route":"{huge}""#)),
            (
                "note",
                64,
                format!(r#""command":"dose","route":"im","note":"{huge}""#),
            ),
            (
                "alarm",
                96,
                format!(r#""command":"acknowledge","alarm":"{huge}","by":"x""#),
            ),
        ] {
            let r = reason(cmd(&body, now()));
            assert_eq!(
                r,
                format!("field `{field}`: 100000 bytes is longer than the {max} allowed (printable text of at most {max} bytes)")
            );
        }
        // Plain accented text and spaces are printable.
        let fine = r#""command":"acknowledge_all","by":"Zoë R.""#;
        assert!(cmd(fine, now()).is_ok());
        assert!(schema_accepts(fine));
        assert!(schema_accepts(
            r#""command":"dose","route":"im","amount":0.5,"unit":"mg/kg","note":"racémique 0,5""#
        ));
    }

    /// Whether schemas/command.schema.json accepts the command `body`.
    fn schema_accepts(body: &str) -> bool {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/command.schema.json");
        let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let text = format!(
            r#"{{"schema_version":1,"id":"r1","time":"{}",{body}}}"#,
            rfc3339(now())
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        jsonschema::validator_for(&schema).unwrap().is_valid(&v)
    }

    /// Every command a display sends, as `name: json` lines.
    fn what_the_displays_send() -> Vec<(&'static str, Vec<u8>)> {
        use crate::display::feed::{self, BedCommand};
        let t = now() + Duration::from_millis(123);
        let dose = |amount: Option<f64>, unit: Option<&str>, note: &str| BedCommand::Dose {
            amount,
            unit: unit.map(str::to_owned),
            route: "im".into(),
            note: note.into(),
        };
        let session = BedCommand::StartSession {
            session: "K-0142".into(),
        };
        vec![
            (
                "acknowledge",
                feed::acknowledge("d-1", "spo2.low", "RN JD", t),
            ),
            ("acknowledge_all", feed::acknowledge_all("d-2", "Zoë R.", t)),
            ("start_session", session.payload("d-3", t)),
            (
                "dose",
                dose(Some(0.5), Some("mg/kg"), " racémique, \"left\" arm ").payload("d-4", t),
            ),
            ("dose bare", dose(None, None, "  ").payload("d-5", t)),
            (
                "dose amount",
                dose(Some(25.0), Some("mg"), "").payload("d-6", t),
            ),
            (
                "start_recovery",
                BedCommand::StartRecovery.payload("d-7", t),
            ),
            ("end_session", BedCommand::EndSession.payload("d-8", t)),
            (
                "pause_audio",
                BedCommand::PauseAudio { duration_s: 120 }.payload("d-9", t),
            ),
            ("resume_audio", BedCommand::ResumeAudio.payload("d-10", t)),
        ]
    }

    /// The commands' bytes as the displays send them today, one
    /// `name: json` line each (`VIGIL_BLESS=1` rewrites the file after a
    /// deliberate change): each matches the schema and vigil accepts it.
    #[test]
    fn what_the_displays_send_keeps_its_bytes_and_is_accepted() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/commands.txt");
        let sent = what_the_displays_send();
        let got: String = sent
            .iter()
            .map(|(name, bytes)| format!("{name}: {}\n", std::str::from_utf8(bytes).unwrap()))
            .collect();
        if std::env::var_os("VIGIL_BLESS").is_some() {
            std::fs::write(path, &got).unwrap();
        }
        let want = std::fs::read_to_string(path).unwrap();
        for (g, w) in got.lines().zip(want.lines()) {
            assert_eq!(g, w);
        }
        assert_eq!(got.lines().count(), want.lines().count());
        let schema: Value = serde_json::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/schemas/command.schema.json"
            ))
            .unwrap(),
        )
        .unwrap();
        let schema = jsonschema::validator_for(&schema).unwrap();
        for (name, bytes) in sent {
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            assert!(schema.is_valid(&v), "{name}: {v}");
            let p = parse(&bytes, now(), Duration::from_secs(30), &names());
            assert_eq!(
                p.map(|p| p.command.key()),
                Ok(name.split(' ').next().unwrap())
            );
        }
    }

    #[test]
    fn a_baseline_written_with_the_displays_type_is_read_back() {
        let sent = m::Command {
            schema_version: SCHEMA_VERSION,
            id: "r1".into(),
            time: rfc3339(now()).into(),
            kind: CommandKind::SetBaseline {
                vital: "nibp_sys".into(),
                value: 128.0,
            },
        };
        let bytes = m::to_vec(&sent);
        assert_eq!(serde_json::from_slice::<m::Command>(&bytes).unwrap(), sent);
        let p = parse(&bytes, now(), Duration::from_secs(30), &names()).unwrap();
        assert_eq!(
            p.command,
            Command::SetBaseline {
                vital: Vital::NibpSystolic,
                value: 128.0,
            }
        );
    }

    #[test]
    fn unprintable_ids_and_bytes_that_are_not_utf8_are_never_echoed() {
        let at = rfc3339(now());
        let body = format!(
            r#"{{"schema_version":1,"id":"r\u001b]0;x\u0007","time":"{at}","command":"resume_audio"}}"#
        );
        let r = parse(body.as_bytes(), now(), Duration::from_secs(30), &names()).unwrap_err();
        assert_eq!(r.id, None);
        assert!(r
            .reason
            .to_string()
            .starts_with("field `id`: character 2 is U+001B"));
        let mut bytes = format!(
            r#"{{"schema_version":1,"id":"r1","time":"{at}","command":"acknowledge_all","by":""#
        )
        .into_bytes();
        bytes.extend_from_slice(b"\xff\xfeRN\"}");
        let r = parse(&bytes, now(), Duration::from_secs(30), &names()).unwrap_err();
        assert!(
            matches!(r.reason, CommandRejection::Malformed(_)),
            "{:?}",
            r.reason
        );
        let huge = format!(r#"{{"id":"{}"}}"#, "i".repeat(1 << 20));
        let r = parse(huge.as_bytes(), now(), Duration::from_secs(30), &names()).unwrap_err();
        assert_eq!(r.id, None);
    }

    #[test]
    fn a_dose_carries_its_amount_and_unit_both_or_neither() {
        let p = cmd(
            r#""command":"dose","route":"im","amount":0.5,"unit":"mg/kg","note":"racemic""#,
            now(),
        )
        .unwrap();
        assert_eq!(
            p.command,
            Command::Dose {
                route: ShortText::new("im"),
                amount: DoseAmount::new(0.5, DoseUnit::MgPerKg),
                note: ShortText::new("racemic"),
            }
        );
        let p = cmd(
            r#""command":"dose","route":"sl","amount":25,"unit":"mg""#,
            now(),
        )
        .unwrap();
        assert!(matches!(
            p.command,
            Command::Dose { amount: Some(a), .. } if a == DoseAmount { value: 25.0, unit: DoseUnit::Mg }
        ));
        let reason = |body: &str| cmd(body, now()).unwrap_err().reason.to_string();
        let dose = |rest: &str| reason(&format!(r#""command":"dose","route":"im",{rest}"#));
        assert!(dose(r#""amount":25"#).contains("needs its unit"));
        assert!(dose(r#""unit":"mg""#).contains("needs an amount"));
        assert!(dose(r#""amount":25,"unit":"ml""#).contains("mg or mg/kg"));
        assert!(dose(r#""amount":"25","unit":"mg""#).contains("expected a number"));
        // The boundaries: above 0, below 10,000.
        for bad in ["0", "-1", "10000", "1e9"] {
            let r = dose(&format!(r#""amount":{bad},"unit":"mg""#));
            assert!(r.contains("above 0 and below 10000"), "{bad}: {r}");
        }
        assert!(cmd(
            r#""command":"dose","route":"im","amount":9999.5,"unit":"mg""#,
            now()
        )
        .is_ok());
    }

    #[test]
    fn bad_commands_are_rejected_with_reasons() {
        let reason = |r: Result<Parsed, Rejected>| r.unwrap_err().reason.to_string();
        let stale = now() - Duration::from_secs(120);
        assert!(reason(cmd(r#""command":"resume_audio""#, stale)).starts_with("stale"));
        let future = now() + Duration::from_secs(120);
        assert!(reason(cmd(r#""command":"resume_audio""#, future)).contains("future"));
        assert_eq!(
            reason(cmd(r#""command":"acknowledge","alarm":"spo2.nonsense","by":"x""#, now())),
            "unknown alarm id `spo2.nonsense` (ids look like spo2.low, nibp_sys.high, source.<name>.disconnected)"
        );
        assert_eq!(
            reason(cmd(r#""command":"acknowledge","alarm":"spo2.low""#, now())),
            "missing field `by`"
        );
        assert!(reason(cmd(r#""command":"reboot""#, now())).starts_with("unknown command"));
        assert!(reason(cmd(r#""command":"resume_audio","extra":1"#, now()))
            .starts_with("unknown field `extra`"));
        assert!(
            reason(cmd(r#""command":"pause_audio","duration_s":"60""#, now()))
                .contains("expected a number")
        );
        assert!(reason(cmd(
            r#""command":"start_session","session":"a-very-long-session-identifier-beyond-32""#,
            now()
        ))
        .contains("longer than"));
        let r = parse(b"{not json", now(), Duration::from_secs(30), &names()).unwrap_err();
        assert!(matches!(r.reason, CommandRejection::Malformed(_)));
        assert_eq!(r.id, None);
        let r = parse(b"[1,2]", now(), Duration::from_secs(30), &names()).unwrap_err();
        assert!(matches!(r.reason, CommandRejection::Malformed(_)));
        let r = parse(
            br#"{"id":"q","time":"2026-11-23T19:04:05Z","command":"end_session"}"#,
            now(),
            Duration::from_secs(30),
            &names(),
        )
        .unwrap_err();
        assert_eq!(r.reason, CommandRejection::Missing("schema_version"));
        assert_eq!(r.id.as_deref(), Some("q"));
        assert_eq!(r.command.as_deref(), Some("end_session"));
    }
}
