//! `vigil record export`: a recording's readings and events as tables, for
//! spreadsheets, statistics and audits.
//!
//! The recording is replayed (the same decoders and engine as live), so the
//! rows are exactly what the daemon saw and decided. Two formats:
//!
//! - CSV: a header row, then one row per record, with every column below
//!   (empty where a column does not apply), written with the `csv` crate:
//!   fields holding a comma, a quote or a line break are quoted (RFC 4180),
//!   lines end in LF.
//! - JSONL: one JSON object per line with the same names; columns that do
//!   not apply are left out; numbers are JSON numbers.
//!
//! # Columns
//!
//! | column | reading | alarm | session |
//! |---|---|---|---|
//! | `type` | `reading` | `alarm` | `session` |
//! | `time` | seconds since the recording started, millisecond resolution | same | same |
//! | `wall_time` | RFC 3339 UTC, from the recording's `started` metadata | same | same |
//! | `source` | configured source name | source name for source alarms | |
//! | `vital` | `hr`, `pr`, `spo2`, `nibp_sys`, `nibp_dia`, `nibp_mean`, `rr`, `etco2` | the vital, or `nibp` | the vital of a baseline |
//! | `value` | the value (empty when the device gave none) | the value that triggered it | the baseline value |
//! | `unit` | `/min`, `%`, `mm[Hg]` | the vital's unit | the vital's unit |
//! | `validity` | `valid`, `sensor_off`, ... (`Validity::key`) | the validity behind a technical data alarm | |
//! | `alarm` | | alarm id (`spo2.low`, `source.monitor.disconnected`) | |
//! | `kind` | | `physiological` or `technical` | `phase`, `baseline`, `dose` or `discharge` |
//! | `phase` | | `start`, `update`, `escalate`, `acknowledge`, `re_alert`, `end` | the new session phase |
//! | `priority` | | `low`, `medium`, `high` (after escalation) | |
//! | `state` | | `active`, `acknowledged`, `latched`, `ended` | |
//! | `limit` | | the limit it crossed | |
//! | `ack_by` | | who acknowledged (while an acknowledgement holds) | |
//! | `detail` | | base priority and condition delay | session id, dose number and note, readiness |
//!
//! An NIBP measurement gives three reading rows (systolic, diastolic, mean)
//! at the same time. Rows come in the order the engine emitted them, which
//! is time order. Technical status and audio-pause events are not exported.

use core::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::engine::{AlarmEvent, Event, EventKind, SessionEvent, Subject};
use crate::replay::{self, ReplayError, Session};
use crate::time::rfc3339;
use crate::time::Instant;
use crate::vitals::{Measurement, Reading, Sample, Vital};

/// Errors exporting a recording.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The recording could not be loaded.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// Writing the output failed.
    #[error("writing the export: {0}")]
    Io(std::io::Error),
    /// The recording cannot be charted (FHIR, HL7).
    #[error(transparent)]
    Chart(#[from] super::chart::ChartError),
}

// By hand, not `#[from]`: the message already says the cause, so it is not
// also a `source()` (a chain printed with `{:#}` would say it twice).
impl From<std::io::Error> for ExportError {
    fn from(e: std::io::Error) -> Self {
        ExportError::Io(e)
    }
}

/// The formats an EHR takes: the recording's chart ([`super::chart`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChartFormat {
    /// A FHIR R4 Bundle of vital-signs Observations ([`super::fhir`]).
    Fhir,
    /// HL7 v2.6 ORU^R01 messages, IHE PCD-01 ([`super::hl7`]).
    Hl7,
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// The columns, in CSV order.
pub const COLUMNS: [&str; 16] = [
    "type",
    "time",
    "wall_time",
    "source",
    "vital",
    "value",
    "unit",
    "validity",
    "alarm",
    "kind",
    "phase",
    "priority",
    "state",
    "limit",
    "ack_by",
    "detail",
];

/// One exported row: a value per column (`None` where it does not apply).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Row {
    /// `reading`, `alarm` or `session`.
    pub kind: &'static str,
    /// Offset from the recording's start.
    pub time: Duration,
    /// Wall-clock time.
    pub wall_time: Option<SystemTime>,
    /// Source name.
    pub source: Option<String>,
    /// Vital key (or `nibp`).
    pub vital: Option<&'static str>,
    /// Value.
    pub value: Option<f32>,
    /// Unit symbol.
    pub unit: Option<&'static str>,
    /// Validity key.
    pub validity: Option<&'static str>,
    /// Alarm id.
    pub alarm: Option<String>,
    /// Alarm kind, or session event kind.
    pub event_kind: Option<&'static str>,
    /// Alarm phase, or new session phase.
    pub phase: Option<&'static str>,
    /// Priority.
    pub priority: Option<&'static str>,
    /// Alarm state.
    pub state: Option<&'static str>,
    /// Limit crossed.
    pub limit: Option<f32>,
    /// Who acknowledged.
    pub ack_by: Option<String>,
    /// Free text.
    pub detail: Option<String>,
}

impl Row {
    /// The row's fields as text, in [`COLUMNS`] order (empty where absent).
    pub fn fields(&self) -> [String; 16] {
        let opt = |s: Option<&str>| s.unwrap_or("").to_owned();
        let num = |v: Option<f32>| {
            v.filter(|v| v.is_finite())
                .map(|v| v.to_string())
                .unwrap_or_default()
        };
        [
            self.kind.to_owned(),
            seconds(self.time),
            self.wall_time.map(rfc3339).unwrap_or_default(),
            opt(self.source.as_deref()),
            opt(self.vital),
            num(self.value),
            opt(self.unit),
            opt(self.validity),
            opt(self.alarm.as_deref()),
            opt(self.event_kind),
            opt(self.phase),
            opt(self.priority),
            opt(self.state),
            num(self.limit),
            opt(self.ack_by.as_deref()),
            opt(self.detail.as_deref()),
        ]
    }
}

/// Formats an offset as seconds with millisecond resolution (`12.500`).
pub fn seconds(d: Duration) -> String {
    format!("{}.{:03}", d.as_secs(), d.subsec_millis())
}

/// The recording's start as wall-clock time (`started` metadata).
pub fn started(session: &Session) -> Option<SystemTime> {
    session.meta("started").and_then(parse_rfc3339)
}

/// An instant of the recording as an offset from its start.
pub fn offset(session: &Session, at: Instant) -> Duration {
    at - session.start
}

pub use crate::time::parse_rfc3339;

/// Parses a UTC offset `+HH:MM` / `-HH:MM` into seconds.
pub fn parse_utc_offset(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 6 || b[3] != b':' {
        return None;
    }
    let sign = match b[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let h: i64 = s.get(1..3)?.parse().ok()?;
    let m: i64 = s.get(4..6)?.parse().ok()?;
    (h <= 23 && m <= 59).then_some(sign * (h * 3600 + m * 60))
}

/// Rows for one engine event (none for the events that are not exported).
pub fn rows_for_event(session: &Session, start: Option<SystemTime>, ev: &Event) -> Vec<Row> {
    let names = &session.config.engine.source_names;
    let time = offset(session, ev.at);
    let base = Row {
        time,
        wall_time: start.map(|s| s + time),
        ..Row::default()
    };
    match ev.kind {
        EventKind::Reading(r) => reading_rows(&base, names, &r),
        EventKind::Alarm(a) => vec![alarm_row(base, names, &a)],
        EventKind::Session(s) => vec![session_row(base, &s)],
        EventKind::Technical(_) | EventKind::Audio(_) => Vec::new(),
    }
}

fn source_name(names: &[String], index: usize) -> String {
    names
        .get(index)
        .cloned()
        .unwrap_or_else(|| index.to_string())
}

fn reading_rows(base: &Row, names: &[String], r: &Reading) -> Vec<Row> {
    let row = |vital: Vital, s: Sample| Row {
        kind: "reading",
        source: Some(source_name(names, r.source.index())),
        vital: Some(vital.key()),
        value: s.value.is_finite().then_some(s.value),
        unit: Some(vital.unit().symbol()),
        validity: Some(s.validity.key()),
        ..base.clone()
    };
    match r.measurement {
        Measurement::Nibp(n) => vec![
            row(Vital::NibpSystolic, n.systolic),
            row(Vital::NibpDiastolic, n.diastolic),
            row(Vital::NibpMean, n.mean),
        ],
        m => m
            .continuous()
            .map(|(v, s)| vec![row(v, s)])
            .unwrap_or_default(),
    }
}

fn alarm_row(base: Row, names: &[String], a: &AlarmEvent) -> Row {
    let (source, vital, unit) = match a.id.subject {
        Subject::Vital(v) => (None, Some(v.key()), Some(v.unit().symbol())),
        Subject::Nibp => (None, Some("nibp"), None),
        Subject::Source(s) => (Some(source_name(names, s.index())), None, None),
        Subject::System => (None, None, None),
    };
    let mut detail = format!("base_priority={}", a.base_priority.key());
    if !a.delay.is_zero() {
        let _ = write!(detail, " delay={}", crate::config::format_duration(a.delay));
    }
    Row {
        kind: "alarm",
        source,
        vital,
        value: a.value,
        unit,
        validity: a.validity.map(|v| v.key()),
        alarm: Some(a.id.key(names)),
        event_kind: Some(a.kind.key()),
        phase: Some(a.phase.key()),
        priority: Some(a.priority.key()),
        state: Some(a.state.key()),
        limit: a.limit,
        ack_by: a.ack.map(|k| k.by.as_str().to_owned()),
        detail: Some(detail),
        ..base
    }
}

fn session_row(base: Row, s: &SessionEvent) -> Row {
    let row = Row {
        kind: "session",
        ..base
    };
    match *s {
        SessionEvent::Phase { phase, session } => Row {
            event_kind: Some("phase"),
            phase: Some(phase.key()),
            detail: Some(format!("session {}", session.as_str())),
            ..row
        },
        SessionEvent::Baseline {
            vital,
            value,
            readings,
        } => Row {
            event_kind: Some("baseline"),
            vital: Some(vital.key()),
            value: Some(value),
            unit: Some(vital.unit().symbol()),
            detail: Some(if readings == 0 {
                "set by command".to_owned()
            } else {
                format!("median of {readings} readings")
            }),
            ..row
        },
        SessionEvent::Dose {
            number,
            route,
            amount,
            note,
        } => Row {
            event_kind: Some("dose"),
            value: amount.map(|a| a.value),
            unit: amount.map(|a| a.unit.key()),
            detail: Some(format!(
                "dose {number} route={} note={}",
                route.as_str(),
                note.as_str()
            )),
            ..row
        },
        SessionEvent::BaselineIncomplete { .. } => Row {
            event_kind: Some("baseline_incomplete"),
            detail: Some(format!(
                "missing {}",
                s.missing_baselines()
                    .map(|v| v.key())
                    .collect::<Vec<_>>()
                    .join(" ")
            )),
            ..row
        },
        SessionEvent::DischargeReadiness { ready } => Row {
            event_kind: Some("discharge"),
            detail: Some(if ready { "ready" } else { "not ready" }.to_owned()),
            ..row
        },
    }
}

/// Replays a session and returns every exported row.
pub fn rows(session: &Session) -> Vec<Row> {
    let start = started(session);
    let mut out = Vec::new();
    replay::run(
        session,
        None,
        |ev| out.extend(rows_for_event(session, start, ev)),
        |_| {},
    );
    out
}

/// A JSON string literal.
pub fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// Writes rows in a format.
pub fn write_rows(
    rows: &[Row],
    format: Format,
    out: &mut impl std::io::Write,
) -> std::io::Result<()> {
    match format {
        Format::Csv => {
            // Quotes a field only when it holds a comma, a quote or a line
            // break; lines end in LF.
            let mut csv = csv::Writer::from_writer(&mut *out);
            csv.write_record(COLUMNS)?;
            for r in rows {
                csv.write_record(r.fields())?;
            }
            csv.flush()?;
        }
        Format::Jsonl => {
            for r in rows {
                let f = r.fields();
                let mut o = String::from("{");
                for (i, (name, text)) in COLUMNS.iter().zip(f.iter()).enumerate() {
                    if text.is_empty() {
                        continue;
                    }
                    if i > 0 {
                        o.push(',');
                    }
                    let numeric = matches!(*name, "time" | "value" | "limit");
                    let v = if numeric {
                        text.clone()
                    } else {
                        json_string(text)
                    };
                    let _ = write!(o, "{}:{v}", json_string(name));
                }
                o.push('}');
                writeln!(out, "{o}")?;
            }
        }
    }
    Ok(())
}

/// Loads, replays and writes a recording's rows; returns how many.
pub fn export(
    path: &Path,
    format: Format,
    out: &mut impl std::io::Write,
) -> Result<usize, ExportError> {
    let session = replay::load(path)?;
    let rows = rows(&session);
    write_rows(&rows, format, out)?;
    out.flush()?;
    Ok(rows.len())
}

/// Loads, replays and writes a recording's chart; returns how many
/// Observations (FHIR) or messages (HL7). `generated` stamps the Bundle or
/// the messages.
pub fn export_chart(
    path: &Path,
    format: ChartFormat,
    sampling: super::chart::Sampling,
    generated: SystemTime,
    out: &mut impl std::io::Write,
) -> Result<usize, ExportError> {
    let session = replay::load(path)?;
    let chart = super::chart::chart(&session, sampling)?;
    let n = match format {
        ChartFormat::Fhir => {
            let bundle = super::fhir::bundle(&chart, generated);
            serde_json::to_writer_pretty(&mut *out, &bundle).map_err(std::io::Error::from)?;
            writeln!(out)?;
            chart.points.len()
        }
        ChartFormat::Hl7 => {
            let messages = super::hl7::messages(&chart, generated);
            for m in &messages {
                out.write_all(m.as_bytes())?;
            }
            messages.len()
        }
    };
    out.flush()?;
    Ok(n)
}

/// Loads and replays a recording; returns its chart as HL7 messages.
pub fn hl7_messages(
    path: &Path,
    sampling: super::chart::Sampling,
    generated: SystemTime,
) -> Result<Vec<String>, ExportError> {
    let session = replay::load(path)?;
    let chart = super::chart::chart(&session, sampling)?;
    Ok(super::hl7::messages(&chart, generated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_parses_zones_and_fractions() {
        let t = |s| {
            parse_rfc3339(s).map(|t| {
                t.duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap()
                    .as_millis()
            })
        };
        assert_eq!(t("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(t("2026-11-23T19:04:05.123Z"), Some(1_795_460_645_123));
        assert_eq!(t("2026-11-23T20:04:05.123+01:00"), Some(1_795_460_645_123));
        assert_eq!(t("2000-02-29T00:00:00.5Z"), Some(951_782_400_500));
        assert_eq!(t("2001-02-29T00:00:00Z"), None, "not a leap year");
        assert_eq!(t("2026-11-23 19:04:05"), None, "a zone is required");
        assert_eq!(t("2026-13-01T00:00:00Z"), None);
        assert_eq!(t("yesterday"), None);
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_460_645_123);
        assert_eq!(parse_rfc3339(&rfc3339(now)), Some(now));
    }

    #[test]
    fn csv_and_json_quote_what_they_must() {
        let row = Row {
            kind: "session",
            ack_by: Some("plain".to_owned()),
            alarm: Some("a,b".to_owned()),
            detail: Some("say \"hi\"\nand go".to_owned()),
            ..Row::default()
        };
        let mut out = Vec::new();
        write_rows(std::slice::from_ref(&row), Format::Csv, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text.lines().nth(1).unwrap(),
            "session,0.000,,,,,,,\"a,b\",,,,,,plain,\"say \"\"hi\"\"",
            "{text}"
        );
        assert!(text.ends_with("\nand go\"\n"), "{text}");
        // It reads back as it was written.
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let back = reader.records().next().unwrap().unwrap();
        assert_eq!(back.iter().collect::<Vec<_>>(), row.fields());
        assert_eq!(json_string("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u0001\"");
    }

    #[test]
    fn jsonl_leaves_out_empty_columns_and_keeps_numbers() {
        let row = Row {
            kind: "reading",
            time: Duration::from_millis(1500),
            vital: Some("spo2"),
            value: Some(97.5),
            unit: Some("%"),
            validity: Some("valid"),
            ..Row::default()
        };
        let mut out = Vec::new();
        write_rows(std::slice::from_ref(&row), Format::Jsonl, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"type\":\"reading\",\"time\":1.500,\"vital\":\"spo2\",\"value\":97.5,\"unit\":\"%\",\"validity\":\"valid\"}\n"
        );
        let mut out = Vec::new();
        write_rows(&[row], Format::Csv, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next().unwrap().split(',').count(), COLUMNS.len());
        assert_eq!(
            lines.next().unwrap(),
            "reading,1.500,,,spo2,97.5,%,valid,,,,,,,,"
        );
    }
}
