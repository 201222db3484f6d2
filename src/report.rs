//! `vigil report`: a clinician's one-page HTML report of a recorded session.
//!
//! The recording is replayed (the same decoders and engine as live) and
//! drawn as one self-contained HTML file: inline CSS and inline SVG, no
//! scripts, fonts or anything else fetched, so it opens offline, prints, and
//! can be attached to the session's documentation as it is.
//!
//! It shows:
//!
//! - charts over the session's clock time: heart rate and pulse rate, SpO2,
//!   breathing (respiration rate and etCO2, when the recording has them: a
//!   monitor with a capnograph), and NIBP (systolic to diastolic as a bar
//!   with end ticks, the mean as a dot); the baseline band of each vital (from the session's baseline
//!   events and the recorded configuration's baseline rules) and the alarm
//!   limits of the recorded configuration as lines;
//! - every alarm from start to end on an alarm lane, coloured by priority
//!   (high red, medium yellow, low cyan; physiological solid, technical
//!   hatched; a change of colour where it escalated), with the
//!   acknowledgements marked; physiological alarms also shade their chart;
//! - the session phases, and the doses as lines across every chart;
//! - the date and clock times in a time zone ([`ReportOptions::zone`]: the
//!   CLI takes the system's, TZ or /etc/localtime, with its daylight-saving
//!   rules, or a fixed `--utc-offset`), and the time from the last dose to
//!   discharge readiness (counted only in recovery: readiness reached while
//!   still dosing is not discharge, and the events table says so);
//! - a summary: the peaks (highest NIBP by systolic, highest HR, lowest
//!   SpO2, and with breathing the lowest RR and highest etCO2) with their times, the doses with amount and route, and time to
//!   acknowledge (median and maximum) per FINAL priority (an alarm
//!   escalated to high before anyone acknowledged it counts as high);
//! - tables: the vitals as a clinic charts them (the session's readings at
//!   [`ReportOptions::interval`], default [`DEFAULT_INTERVAL`], plus every
//!   NIBP, sampled as the FHIR and HL7 exports do: [`crate::record::chart`]),
//!   alarms per priority and kind, time outside the limits per vital, the
//!   list of alarms (named in the displays' words, [`crate::alarm_text`],
//!   with the id as the cell's title), and the session's events.
//!
//! Printed (A4 or Letter, portrait), the header, summary and charts fill
//! the first page and the tables follow on the next ones.
//!
//! A dose's amount: the engine's dose carries a route and a note, and the
//! displays write the amount at the head of the note (`25 mg; racemic`);
//! [`dose_amount`] takes it from there.
//!
//! Only the pseudonymous session id identifies the session: the recordings
//! hold no patient names. Who acknowledged (staff initials) is shown.

use core::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::alarm_text::alarm_name;
use crate::config::Config;
use crate::engine::{
    AlarmId, AlarmKind, EventKind, Phase, Priority, SessionEvent, SessionPhase, Subject, VitalRules,
};
pub use crate::record::chart::DEFAULT_INTERVAL;
use crate::record::chart::{self, describe, quality, Quality, Sampling, Value};
use crate::record::export::{offset, started};
use crate::replay::{self, ReplayError, Session};
use crate::vitals::{Measurement, Vital};

/// Errors making a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The recording could not be loaded.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// Writing the report failed.
    #[error("writing {path}: {cause}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        cause: std::io::Error,
    },
}

/// Colours, shared with the render check.
pub mod colour {
    /// High priority alarms.
    pub const HIGH: &str = "#d62728";
    /// Medium priority alarms.
    pub const MEDIUM: &str = "#f2c200";
    /// Low priority alarms.
    pub const LOW: &str = "#1fb5e0";
    /// Heart rate.
    pub const HR: &str = "#1a7f37";
    /// Pulse rate.
    pub const PR: &str = "#8d6e63";
    /// SpO2.
    pub const SPO2: &str = "#0b63b6";
    /// NIBP.
    pub const NIBP: &str = "#5b3f99";
    /// Respiration rate.
    pub const RR: &str = "#00838f";
    /// End-tidal CO2.
    pub const ETCO2: &str = "#6d4c41";
    /// Dose markers.
    pub const DOSE: &str = "#c2185b";
    /// Baseline band and line.
    pub const BASELINE: &str = "#2e7d32";
    /// Alarm limits.
    pub const LIMIT: &str = "#555555";
    /// Critical alarm limits.
    pub const CRITICAL: &str = "#a61b1b";
}

/// The colour of a priority.
pub fn priority_colour(p: Priority) -> &'static str {
    match p {
        Priority::High => colour::HIGH,
        Priority::Medium => colour::MEDIUM,
        Priority::Low => colour::LOW,
    }
}

/// Report settings.
#[derive(Clone, Debug)]
pub struct ReportOptions {
    /// Clock times and the date are shown in this zone (UTC by default;
    /// `TimeZone::system()` for the machine's, `TimeZone::fixed` for an
    /// offset).
    pub zone: TimeZone,
    /// The interval of the vitals table.
    pub interval: Duration,
    /// The recording's file name, shown in the footer.
    pub file_name: Option<String>,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            zone: TimeZone::UTC,
            interval: DEFAULT_INTERVAL,
            file_name: None,
        }
    }
}

/// One NIBP measurement on the chart.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NibpPoint {
    /// Seconds since the start.
    pub t: f64,
    /// Systolic, diastolic, mean (valid values only).
    pub values: [Option<f32>; 3],
}

/// One alarm from its start to its end.
#[derive(Clone, Debug, PartialEq)]
pub struct Episode {
    /// Which alarm.
    pub id: AlarmId,
    /// Its text id.
    pub key: String,
    /// Physiological or technical.
    pub kind: AlarmKind,
    /// Start (seconds since the start of the recording).
    pub start: f64,
    /// End; `None` when still present when the recording ends.
    pub end: Option<f64>,
    /// From when which priority held (the start's, then escalations).
    pub priorities: Vec<(f64, Priority)>,
    /// Acknowledgements: when, by whom.
    pub acks: Vec<(f64, String)>,
    /// The value and limit at the start.
    pub value: Option<f32>,
    /// The limit crossed.
    pub limit: Option<f32>,
}

impl Episode {
    /// Priority at the start.
    pub fn first_priority(&self) -> Priority {
        self.priorities.first().map_or(Priority::Low, |p| p.1)
    }

    /// The priority it ended with (or has at the end of the recording).
    pub fn final_priority(&self) -> Priority {
        self.priorities.last().map_or(Priority::Low, |p| p.1)
    }

    /// Highest priority reached.
    pub fn max_priority(&self) -> Priority {
        self.priorities
            .iter()
            .map(|p| p.1)
            .max()
            .unwrap_or(Priority::Low)
    }
}

/// A session event on the chart.
#[derive(Clone, Debug, PartialEq)]
pub enum Mark {
    /// A dose.
    Dose {
        /// Seconds since the start.
        t: f64,
        /// Which dose.
        number: u16,
        /// Route.
        route: String,
        /// The amount with its unit (`0.5 mg/kg`), when recorded.
        amount: Option<String>,
        /// Note.
        note: String,
    },
    /// A baseline was set.
    Baseline {
        /// Seconds since the start.
        t: f64,
        /// Which vital.
        vital: Vital,
        /// Value.
        value: f32,
    },
    /// The session phase changed.
    Phase {
        /// Seconds since the start.
        t: f64,
        /// New phase.
        phase: SessionPhase,
        /// Session id.
        session: String,
    },
    /// A dose was given with some baselines missing.
    BaselineIncomplete {
        /// Seconds since the start.
        t: f64,
        /// The vitals without a baseline.
        missing: Vec<Vital>,
    },
    /// Discharge readiness changed.
    Discharge {
        /// Seconds since the start.
        t: f64,
        /// Ready or not.
        ready: bool,
    },
}

/// Everything the report shows, gathered by one replay.
#[derive(Clone, Debug, Default)]
pub struct Analysis {
    /// Continuous series (HR, PR, SpO2, RR, etCO2, in [`CONTINUOUS`]
    /// order): seconds, value when valid.
    pub series: [Vec<(f64, Option<f32>)>; 5],
    /// NIBP measurements.
    pub nibp: Vec<NibpPoint>,
    /// Alarms in order of start.
    pub episodes: Vec<Episode>,
    /// Session events in order.
    pub marks: Vec<Mark>,
    /// Length of the recording, seconds.
    pub duration: f64,
}

impl Analysis {
    /// Doses: time, number, route, amount, note.
    pub fn doses(&self) -> impl Iterator<Item = (f64, u16, &str, Option<&str>, &str)> {
        self.marks.iter().filter_map(|m| match m {
            Mark::Dose {
                t,
                number,
                route,
                amount,
                note,
            } => Some((
                *t,
                *number,
                route.as_str(),
                amount.as_deref(),
                note.as_str(),
            )),
            _ => None,
        })
    }
}

/// The continuous vitals of [`Analysis::series`], in its order.
pub const CONTINUOUS: [Vital; 5] = [
    Vital::HeartRate,
    Vital::PulseRate,
    Vital::SpO2,
    Vital::RespRate,
    Vital::EtCo2,
];
const RR: usize = 3;
const ETCO2: usize = 4;

impl Analysis {
    /// Whether the recording has breathing (a capnograph sent RR or
    /// etCO2): only then are its chart, peaks and rows shown.
    pub fn has_breathing(&self) -> bool {
        !self.series[RR].is_empty() || !self.series[ETCO2].is_empty()
    }
}

/// Replays the session and gathers what the report shows.
pub fn analyse(session: &Session) -> Analysis {
    let names = session.config.engine.source_names.clone();
    let mut a = Analysis {
        duration: offset(session, session.last()).as_secs_f64(),
        ..Analysis::default()
    };
    let mut open: Vec<(AlarmId, usize)> = Vec::new();
    replay::run(
        session,
        None,
        |ev| {
            let t = offset(session, ev.at).as_secs_f64();
            match ev.kind {
                EventKind::Reading(r) => match r.measurement {
                    Measurement::Nibp(n) => a.nibp.push(NibpPoint {
                        t,
                        values: [n.systolic.get(), n.diastolic.get(), n.mean.get()],
                    }),
                    m => {
                        if let Some((v, s)) = m.continuous() {
                            if let Some(i) = CONTINUOUS.iter().position(|c| *c == v) {
                                a.series[i].push((t, s.get()));
                            }
                        }
                    }
                },
                EventKind::Alarm(al) => {
                    let slot = open.iter().position(|(id, _)| *id == al.id);
                    match (al.phase, slot) {
                        (Phase::Start, _) => {
                            if let Some(k) = slot {
                                // A start while open: close the old one.
                                let (_, i) = open.remove(k);
                                a.episodes[i].end = Some(t);
                            }
                            open.push((al.id, a.episodes.len()));
                            a.episodes.push(Episode {
                                id: al.id,
                                key: al.id.key(&names),
                                kind: al.kind,
                                start: t,
                                end: None,
                                priorities: vec![(t, al.priority)],
                                acks: Vec::new(),
                                value: al.value,
                                limit: al.limit,
                            });
                        }
                        (Phase::End, Some(k)) => {
                            let (_, i) = open.remove(k);
                            a.episodes[i].end = Some(t);
                        }
                        (_, Some(k)) => {
                            let e = &mut a.episodes[open[k].1];
                            if e.priorities.last().map(|p| p.1) != Some(al.priority) {
                                e.priorities.push((t, al.priority));
                            }
                            if al.phase == Phase::Acknowledge {
                                let by = al.ack.map(|k| k.by.as_str().to_owned());
                                e.acks.push((t, by.unwrap_or_default()));
                            }
                        }
                        (_, None) => {}
                    }
                }
                EventKind::Session(s) => a.marks.push(match s {
                    SessionEvent::Dose {
                        number,
                        route,
                        amount,
                        note,
                    } => {
                        // Recordings made before doses had an amount field
                        // carry it at the head of the note.
                        let (amount, note) = match amount {
                            Some(a) => (Some(a.to_string()), note.as_str().trim()),
                            None => {
                                let (a, rest) = dose_amount(note.as_str());
                                (a.map(str::to_owned), rest)
                            }
                        };
                        Mark::Dose {
                            t,
                            number,
                            route: route.as_str().to_owned(),
                            amount,
                            note: note.to_owned(),
                        }
                    }
                    SessionEvent::Baseline { vital, value, .. } => {
                        Mark::Baseline { t, vital, value }
                    }
                    SessionEvent::Phase { phase, session } => Mark::Phase {
                        t,
                        phase,
                        session: session.as_str().to_owned(),
                    },
                    SessionEvent::DischargeReadiness { ready } => Mark::Discharge { t, ready },
                    SessionEvent::BaselineIncomplete { .. } => Mark::BaselineIncomplete {
                        t,
                        missing: s.missing_baselines().collect(),
                    },
                }),
                EventKind::Technical(_) | EventKind::Audio(_) => {}
            }
        },
        |_| {},
    );
    a
}

/// When the last dose was given.
pub fn last_dose(a: &Analysis) -> Option<f64> {
    a.marks.iter().rev().find_map(|m| match m {
        Mark::Dose { t, .. } => Some(*t),
        _ => None,
    })
}

/// The first moment after the last dose at which the discharge criteria
/// held in the recovery phase: readiness reached during dosing counts only
/// from the start of recovery, when discharge is actually judged.
pub fn discharge_ready_at(a: &Analysis) -> Option<f64> {
    let dose = last_dose(a)?;
    let (mut phase, mut ready) = (SessionPhase::Idle, false);
    for m in &a.marks {
        let t = match m {
            Mark::Phase { t, phase: p, .. } => {
                phase = *p;
                *t
            }
            Mark::Discharge { t, ready: r } => {
                ready = *r;
                *t
            }
            Mark::Dose { t, .. }
            | Mark::Baseline { t, .. }
            | Mark::BaselineIncomplete { t, .. } => *t,
        };
        if t >= dose && ready && phase == SessionPhase::Recovery {
            return Some(t);
        }
    }
    None
}

/// A peak value and when it was first reached.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Peak {
    /// Seconds since the start.
    pub t: f64,
    /// The value.
    pub value: f32,
}

/// The peaks a chart note gives (valid readings only).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Peaks {
    /// The NIBP measurement with the highest systolic pressure.
    pub nibp: Option<NibpPoint>,
    /// The highest heart rate.
    pub hr: Option<Peak>,
    /// The lowest SpO2.
    pub spo2: Option<Peak>,
    /// The lowest respiration rate (0: an apnoea).
    pub rr: Option<Peak>,
    /// The highest etCO2.
    pub etco2: Option<Peak>,
}

/// The first reading of a series that beats every other one by `better`.
fn extreme(series: &[(f64, Option<f32>)], better: fn(f32, f32) -> bool) -> Option<Peak> {
    let mut best: Option<Peak> = None;
    for &(t, v) in series {
        let Some(value) = v else { continue };
        if best.is_none_or(|b| better(value, b.value)) {
            best = Some(Peak { t, value });
        }
    }
    best
}

/// The peaks of an analysed recording.
pub fn peaks(a: &Analysis) -> Peaks {
    let mut nibp: Option<NibpPoint> = None;
    for n in &a.nibp {
        let Some(sys) = n.values[0] else { continue };
        if nibp.is_none_or(|b| b.values[0].is_none_or(|best| sys > best)) {
            nibp = Some(*n);
        }
    }
    Peaks {
        nibp,
        hr: extreme(&a.series[0], |v, best| v > best),
        spo2: extreme(&a.series[2], |v, best| v < best),
        rr: extreme(&a.series[RR], |v, best| v < best),
        etco2: extreme(&a.series[ETCO2], |v, best| v > best),
    }
}

/// A dose's amount as the displays write it at the head of the note
/// (`25 mg`, `0.5 mg/kg`, then `; ` and the rest of the note): the amount
/// and the rest; `None` and the whole note when the note does not start so.
pub fn dose_amount(note: &str) -> (Option<&str>, &str) {
    let (head, rest) = match note.split_once("; ") {
        Some((head, rest)) => (head.trim(), rest.trim()),
        None => (note.trim(), ""),
    };
    let amount = head.split_once(' ').filter(|(number, unit)| {
        matches!(*unit, "mg" | "mg/kg")
            && number.chars().all(|c| c.is_ascii_digit() || c == '.')
            && number
                .parse::<f64>()
                .is_ok_and(|n| n.is_finite() && n > 0.0)
    });
    match amount {
        Some(_) => (Some(head), rest),
        None => (None, note.trim()),
    }
}

/// Median and maximum of durations in seconds.
fn median_max(mut v: Vec<f64>) -> Option<(f64, f64)> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some((median, v[n - 1]))
}

/// Time a continuous vital spent below its low and above its high limit
/// (each valid reading holds until the next one, at most the vital's stale
/// timeout), and the time it was monitored.
pub fn time_outside(
    series: &[(f64, Option<f32>)],
    rules: &VitalRules,
    end: f64,
) -> (f64, f64, f64) {
    let low = rules.low.or(rules.critical_low).map(|l| l.value);
    let high = rules.high.or(rules.critical_high).map(|l| l.value);
    let cap = rules.stale_after.as_secs_f64();
    let (mut below, mut above, mut monitored) = (0.0, 0.0, 0.0);
    for (i, &(t, v)) in series.iter().enumerate() {
        let Some(v) = v else { continue };
        let next = series.get(i + 1).map_or(end, |n| n.0);
        let hold = (next - t).clamp(0.0, cap);
        monitored += hold;
        if low.is_some_and(|l| v < l) {
            below += hold;
        }
        if high.is_some_and(|h| v > h) {
            above += hold;
        }
    }
    (below, above, monitored)
}

/// The unit as a clinician writes it.
fn unit(v: Vital) -> &'static str {
    match v.unit() {
        crate::vitals::Unit::PerMinute => "/min",
        crate::vitals::Unit::Percent => "%",
        crate::vitals::Unit::MmHg => "mmHg",
    }
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// `1 h 02 min`, `3 min 05 s`, `12 s`.
fn span(secs: f64) -> String {
    let s = secs.round().max(0.0) as u64;
    if s >= 3600 {
        format!("{} h {:02} min", s / 3600, s / 60 % 60)
    } else if s >= 60 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{s} s")
    }
}

/// `5 min`, `90 s`, `1 h`, `1 h 30 min`.
fn interval_words(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, sec) => format!("{sec} s"),
        (0, m, 0) => format!("{m} min"),
        (h, 0, 0) => format!("{h} h"),
        (h, m, 0) => format!("{h} h {m} min"),
        _ => format!("{s} s"),
    }
}

/// Clock times of the report.
struct Clock {
    started: Option<SystemTime>,
    zone: TimeZone,
}

/// `+01:00`, `-05:30`.
fn offset_words(seconds: i32) -> String {
    let o = seconds.unsigned_abs();
    format!(
        "{}{:02}:{:02}",
        if seconds < 0 { '-' } else { '+' },
        o / 3600,
        o / 60 % 60
    )
}

impl Clock {
    /// The instant of a session time (whole seconds).
    fn timestamp(&self, t: f64) -> Option<Timestamp> {
        let start = self.started?;
        let base = start
            .duration_since(SystemTime::UNIX_EPOCH)
            .ok()?
            .as_secs_f64();
        Timestamp::from_second((base + t).floor() as i64).ok()
    }

    /// Wall-clock seconds of the day (in the zone) of a session time.
    fn day_seconds(&self, t: f64) -> Option<i64> {
        let z = self.timestamp(t)?.to_zoned(self.zone.clone());
        Some(i64::from(z.hour()) * 3600 + i64::from(z.minute()) * 60 + i64::from(z.second()))
    }

    /// The calendar date (in the zone) of a session time, `YYYY-MM-DD`.
    fn date(&self, t: f64) -> Option<String> {
        let d = self.timestamp(t)?.to_zoned(self.zone.clone()).date();
        Some(format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day()))
    }

    /// `HH:MM:SS` (wall clock) or `+h:mm:ss` (offset, when the start is unknown).
    fn at(&self, t: f64) -> String {
        match self.day_seconds(t) {
            Some(s) => format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60),
            None => format!("+{}", offset_text(t)),
        }
    }

    /// `HH:MM` for axis ticks.
    fn short(&self, t: f64, seconds: bool) -> String {
        match self.day_seconds(t) {
            Some(s) if seconds => format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60),
            Some(s) => format!("{:02}:{:02}", s / 3600, s / 60 % 60),
            None => format!("+{}", offset_text(t)),
        }
    }

    /// The zone at a session time: `CET, UTC+01:00`.
    fn zone_at(&self, ts: Timestamp) -> String {
        let info = self.zone.to_offset_info(ts);
        let offset = offset_words(info.offset().seconds());
        let abbr = info.abbreviation();
        if abbr.is_empty() || abbr.starts_with(['+', '-']) || abbr == "UTC" {
            format!("UTC{offset}")
        } else {
            format!("{abbr}, UTC{offset}")
        }
    }

    /// What the clock times are, for the header and the time axis:
    /// `clock time, UTC`, `clock time, UTC+01:00` (a fixed offset),
    /// `clock time, Europe/Berlin (CET, UTC+01:00)`, and both offsets when
    /// the zone changed its offset (daylight saving) between `0` and `end`.
    fn zone(&self, end: f64) -> String {
        let (Some(first), Some(last)) = (self.timestamp(0.0), self.timestamp(end)) else {
            return "time since the recording started".into();
        };
        let utc_name = self.zone.iana_name().is_none_or(|n| {
            matches!(
                n,
                "UTC"
                    | "Etc/UTC"
                    | "Etc/UCT"
                    | "UCT"
                    | "Etc/Universal"
                    | "Universal"
                    | "Etc/Zulu"
                    | "Zulu"
            )
        });
        let (o0, o1) = (self.zone.to_offset(first), self.zone.to_offset(last));
        if utc_name && o0.seconds() == 0 && o1.seconds() == 0 {
            return "clock time, UTC".into();
        }
        if self.zone.to_fixed_offset().is_ok() {
            return format!("clock time, UTC{}", offset_words(o0.seconds()));
        }
        let mut text = self.zone_at(first);
        if o0 != o1 {
            let _ = write!(text, " at the start, {} at the end", self.zone_at(last));
        }
        match self.zone.iana_name() {
            Some(name) => format!("clock time, {name} ({text})"),
            None => format!("clock time, {text}"),
        }
    }
}

fn offset_text(t: f64) -> String {
    let s = t.max(0.0) as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

// ---------------------------------------------------------------------------
// Chart geometry

const WIDTH: f64 = 1240.0;
const LEFT: f64 = 170.0;
const RIGHT: f64 = 1100.0;
const LANE_ROW: f64 = 16.0;

struct Panel {
    top: f64,
    height: f64,
    lo: f64,
    hi: f64,
}

impl Panel {
    fn y(&self, v: f64) -> f64 {
        let f = (v - self.lo) / (self.hi - self.lo);
        self.top + self.height * (1.0 - f.clamp(-0.02, 1.02))
    }
    fn bottom(&self) -> f64 {
        self.top + self.height
    }
}

struct TimeAxis {
    end: f64,
}

impl TimeAxis {
    fn x(&self, t: f64) -> f64 {
        LEFT + (RIGHT - LEFT) * (t / self.end).clamp(0.0, 1.0)
    }
}

fn nice_step(range: f64, target: f64) -> f64 {
    let raw = (range / target).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

fn time_step(end: f64) -> f64 {
    [
        10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 10800.0, 21600.0,
    ]
    .into_iter()
    .find(|s| end / s <= 12.0)
    .unwrap_or(43200.0)
}

/// Writes labels at the right of the plot, pushed apart so they do not overlap.
fn right_labels(o: &mut String, mut labels: Vec<(f64, String, &str)>) {
    labels.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut last = f64::NEG_INFINITY;
    for (y, text, fill) in labels {
        let y = if y - last < 11.0 { last + 11.0 } else { y };
        last = y;
        let _ = writeln!(
            o,
            r#"<text x="{:.1}" y="{:.1}" class="lim" fill="{fill}">{}</text>"#,
            RIGHT + 6.0,
            y + 3.5,
            esc(&text)
        );
    }
}

fn limits_of(rules: &VitalRules) -> Vec<(f32, &'static str, bool)> {
    [
        (rules.critical_high, "crit. high", true),
        (rules.high, "high", false),
        (rules.low, "low", false),
        (rules.critical_low, "crit. low", true),
    ]
    .into_iter()
    .filter(|_| rules.enabled)
    .filter_map(|(l, name, critical)| l.map(|l| (l.value, name, critical)))
    .collect()
}

struct Baseline {
    t: f64,
    until: f64,
    value: f32,
    lo: f32,
    hi: f32,
}

fn baselines(a: &Analysis, cfg: &Config, vital: Vital) -> Vec<Baseline> {
    let rules = cfg.engine.rules(vital);
    let mut out: Vec<Baseline> = Vec::new();
    for m in &a.marks {
        match *m {
            Mark::Baseline { t, vital: v, value } if v == vital => {
                if let Some(prev) = out.last_mut() {
                    prev.until = prev.until.min(t);
                }
                let hi = rules.baseline.rise_threshold(value).unwrap_or(value);
                let lo = rules.baseline.fall_threshold(value).unwrap_or(value);
                out.push(Baseline {
                    t,
                    until: a.duration,
                    value,
                    lo,
                    hi,
                });
            }
            Mark::Phase {
                t,
                phase: SessionPhase::Ended | SessionPhase::Idle,
                ..
            } => {
                if let Some(prev) = out.last_mut() {
                    prev.until = prev.until.min(t);
                }
            }
            _ => {}
        }
    }
    out
}

struct Chart<'a> {
    a: &'a Analysis,
    cfg: &'a Config,
    clock: &'a Clock,
    axis: TimeAxis,
    out: String,
}

impl Chart<'_> {
    fn panel_frame(&mut self, p: &Panel, title: &str, step: f64) {
        let o = &mut self.out;
        let _ = writeln!(
            o,
            r#"<text x="{LEFT}" y="{:.1}" class="ptitle">{}</text>"#,
            p.top - 7.0,
            esc(title)
        );
        let _ = writeln!(
            o,
            r##"<rect x="{LEFT}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#fff" stroke="#bbb"/>"##,
            p.top,
            RIGHT - LEFT,
            p.height
        );
        let mut v = (p.lo / step).ceil() * step;
        while v <= p.hi + 1e-9 {
            let y = p.y(v);
            let _ = writeln!(
                o,
                r##"<line x1="{LEFT}" x2="{RIGHT}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" class="tick" text-anchor="end">{v}</text>"##,
                LEFT - 6.0,
                y + 4.0
            );
            v += step;
        }
    }

    fn vertical_grid(&mut self, top: f64, bottom: f64) {
        let step = time_step(self.axis.end);
        let mut t = 0.0;
        while t <= self.axis.end + 1e-9 {
            let x = self.axis.x(t);
            let _ = writeln!(
                self.out,
                r##"<line x1="{x:.1}" x2="{x:.1}" y1="{top:.1}" y2="{bottom:.1}" stroke="#eee"/>"##
            );
            t += step;
        }
    }

    fn limits(
        &mut self,
        p: &Panel,
        vital: Vital,
        prefix: &str,
        labels: &mut Vec<(f64, String, &'static str)>,
    ) {
        for (value, name, critical) in limits_of(self.cfg.engine.rules(vital)) {
            let y = p.y(f64::from(value));
            let (stroke, dash, class) = if critical {
                (colour::CRITICAL, "8,3", "limit critical")
            } else {
                (colour::LIMIT, "5,4", "limit")
            };
            let _ = writeln!(
                self.out,
                r#"<line class="{class}" x1="{LEFT}" x2="{RIGHT}" y1="{y:.1}" y2="{y:.1}" stroke="{stroke}" stroke-dasharray="{dash}" stroke-width="1.2"><title>{prefix}{name} limit {value}</title></line>"#
            );
            labels.push((y, format!("{prefix}{name} {value}"), stroke));
        }
    }

    fn baseline_band(
        &mut self,
        p: &Panel,
        vital: Vital,
        labels: &mut Vec<(f64, String, &'static str)>,
    ) {
        for b in baselines(self.a, self.cfg, vital) {
            let (x0, x1) = (self.axis.x(b.t), self.axis.x(b.until));
            let (y0, y1) = (p.y(f64::from(b.hi)), p.y(f64::from(b.lo)));
            let _ = writeln!(
                self.out,
                r#"<rect class="baseline-band" x="{x0:.1}" y="{y0:.1}" width="{:.1}" height="{:.1}" fill="{}" fill-opacity="0.13"><title>{} baseline {} (band {}–{})</title></rect>"#,
                (x1 - x0).max(1.0),
                (y1 - y0).max(2.0),
                colour::BASELINE,
                vital.key(),
                b.value,
                b.lo,
                b.hi
            );
            let y = p.y(f64::from(b.value));
            let _ = writeln!(
                self.out,
                r#"<line x1="{x0:.1}" x2="{x1:.1}" y1="{y:.1}" y2="{y:.1}" stroke="{}" stroke-dasharray="2,2"/>"#,
                colour::BASELINE
            );
            labels.push((
                y,
                format!("{} baseline {}", vital.key(), b.value),
                colour::BASELINE,
            ));
        }
    }

    /// Shades the times a physiological alarm of these vitals was on, in
    /// the colour of the highest priority on at each moment.
    fn alarm_shading(&mut self, p: &Panel, vitals: &[Vital]) {
        let mut segments: Vec<(f64, f64, Priority)> = Vec::new();
        for e in &self.a.episodes {
            let Subject::Vital(v) = e.id.subject else {
                continue;
            };
            if e.kind != AlarmKind::Physiological || !vitals.contains(&v) {
                continue;
            }
            let end = e.end.unwrap_or(self.a.duration);
            for (i, &(from, prio)) in e.priorities.iter().enumerate() {
                let to = e.priorities.get(i + 1).map_or(end, |n| n.0);
                segments.push((from, to, prio));
            }
        }
        let mut cuts: Vec<f64> = segments.iter().flat_map(|s| [s.0, s.1]).collect();
        cuts.sort_by(f64::total_cmp);
        cuts.dedup();
        let mut merged: Vec<(f64, f64, Priority)> = Vec::new();
        for w in cuts.windows(2) {
            let (from, to) = (w[0], w[1]);
            let top = segments
                .iter()
                .filter(|s| s.0 < to && s.1 > from)
                .map(|s| s.2)
                .max();
            let Some(prio) = top else { continue };
            match merged.last_mut() {
                Some(last) if last.1 == from && last.2 == prio => last.1 = to,
                _ => merged.push((from, to, prio)),
            }
        }
        for (from, to, prio) in merged {
            let (x0, x1) = (self.axis.x(from), self.axis.x(to));
            let _ = writeln!(
                self.out,
                r#"<rect class="alarm-shade {}" x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}" fill-opacity="0.22"/>"#,
                prio.key(),
                p.top,
                (x1 - x0).max(2.0),
                p.height,
                priority_colour(prio)
            );
        }
    }

    /// Rectangles of an episode, one per priority it held.
    fn spans(&mut self, e: &Episode, top: f64, height: f64, opacity: f64, hatched: bool) {
        let end = e.end.unwrap_or(self.a.duration);
        for (i, &(from, p)) in e.priorities.iter().enumerate() {
            let to = e.priorities.get(i + 1).map_or(end, |n| n.0);
            let (x0, x1) = (self.axis.x(from), self.axis.x(to));
            let fill = if hatched {
                format!("url(#hatch-{})", p.key())
            } else {
                priority_colour(p).to_owned()
            };
            let _ = writeln!(
                self.out,
                r#"<rect class="alarm-span {} {}" x="{x0:.1}" y="{top:.1}" width="{:.1}" height="{height:.1}" fill="{fill}" fill-opacity="{opacity}" stroke="{}" stroke-opacity="{}"><title>{} ({} {}) {}–{}</title></rect>"#,
                p.key(),
                e.kind.key(),
                (x1 - x0).max(2.0),
                priority_colour(p),
                if opacity < 1.0 { 0.0 } else { 1.0 },
                esc(&e.key),
                p.key(),
                e.kind.key(),
                self.clock.at(from),
                if e.end.is_some() {
                    self.clock.at(to)
                } else {
                    "end of recording".into()
                }
            );
        }
    }

    fn line(
        &mut self,
        p: &Panel,
        series: &[(f64, Option<f32>)],
        gap: f64,
        stroke: &str,
        class: &str,
    ) {
        let mut d = String::new();
        let mut prev: Option<f64> = None;
        for &(t, v) in series {
            let Some(v) = v else {
                prev = None;
                continue;
            };
            let cmd = if prev.is_some_and(|pt| t - pt <= gap) {
                'L'
            } else {
                'M'
            };
            let _ = write!(d, "{cmd}{:.1} {:.1}", self.axis.x(t), p.y(f64::from(v)));
            prev = Some(t);
        }
        if !d.is_empty() {
            let _ = writeln!(
                self.out,
                r#"<path class="{class}" d="{d}" fill="none" stroke="{stroke}" stroke-width="2" stroke-linejoin="round"/>"#
            );
        }
    }

    fn range(&self, vitals: &[Vital], data: &[f32], pad: f64, step: f64) -> (f64, f64) {
        let mut lo = f64::INFINITY;
        let mut hi = f64::NEG_INFINITY;
        let mut add = |v: f64| {
            lo = lo.min(v);
            hi = hi.max(v);
        };
        for v in data {
            add(f64::from(*v));
        }
        for v in vitals {
            for (l, _, _) in limits_of(self.cfg.engine.rules(*v)) {
                add(f64::from(l));
            }
            for b in baselines(self.a, self.cfg, *v) {
                add(f64::from(b.lo));
                add(f64::from(b.hi));
            }
        }
        if !lo.is_finite() {
            return (0.0, 100.0);
        }
        let lo = ((lo - pad) / step).floor() * step;
        let hi = ((hi + pad) / step).ceil() * step;
        (lo.max(0.0), hi.max(lo + step))
    }
}

fn svg_chart(a: &Analysis, cfg: &Config, clock: &Clock) -> String {
    let end = a.duration.max(60.0);
    let mut c = Chart {
        a,
        cfg,
        clock,
        axis: TimeAxis { end },
        out: String::new(),
    };
    // Alarm lane rows, one per alarm id in order of first start.
    let mut lane: Vec<&str> = Vec::new();
    for e in &a.episodes {
        if !lane.contains(&e.key.as_str()) {
            lane.push(&e.key);
        }
    }
    let phase_top = 34.0;
    let hr = {
        let data: Vec<f32> = a.series[0]
            .iter()
            .chain(&a.series[1])
            .filter_map(|s| s.1)
            .collect();
        let (lo, hi) = c.range(&[Vital::HeartRate, Vital::PulseRate], &data, 5.0, 10.0);
        Panel {
            top: phase_top + 44.0,
            height: 180.0,
            lo,
            hi,
        }
    };
    let spo2 = {
        let data: Vec<f32> = a.series[2].iter().filter_map(|s| s.1).collect();
        let (lo, _) = c.range(&[Vital::SpO2], &data, 2.0, 5.0);
        let hi = data.iter().copied().fold(100.0f32, f32::max).ceil();
        Panel {
            top: hr.bottom() + 32.0,
            height: 130.0,
            lo,
            hi: f64::from(hi),
        }
    };
    // Breathing, only for a recording that has it.
    let breath = a.has_breathing().then(|| {
        let data: Vec<f32> = a.series[RR]
            .iter()
            .chain(&a.series[ETCO2])
            .filter_map(|s| s.1)
            .collect();
        let (lo, hi) = c.range(&[Vital::RespRate, Vital::EtCo2], &data, 3.0, 10.0);
        Panel {
            top: spo2.bottom() + 32.0,
            height: 120.0,
            lo,
            hi,
        }
    });
    let nibp = {
        let data: Vec<f32> = a.nibp.iter().flat_map(|n| n.values).flatten().collect();
        let (lo, hi) = c.range(
            &[Vital::NibpSystolic, Vital::NibpDiastolic, Vital::NibpMean],
            &data,
            10.0,
            20.0,
        );
        Panel {
            top: breath.as_ref().unwrap_or(&spo2).bottom() + 32.0,
            height: 170.0,
            lo,
            hi,
        }
    };
    let lane_top = nibp.bottom() + 32.0;
    let lane_height = (lane.len().max(1) as f64) * LANE_ROW + 8.0;
    let axis_y = lane_top + lane_height;
    let height = axis_y + 46.0;

    let _ = writeln!(
        c.out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" id="chart" viewBox="0 0 {WIDTH} {height:.0}" width="{WIDTH}" height="{height:.0}" role="img" aria-label="Vital signs, alarms and doses over the session">"#
    );
    c.out.push_str("<defs>");
    for p in [Priority::High, Priority::Medium, Priority::Low] {
        let _ = write!(
            c.out,
            r##"<pattern id="hatch-{}" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#fff"/><rect width="3" height="6" fill="{}"/></pattern>"##,
            p.key(),
            priority_colour(p)
        );
    }
    c.out.push_str("</defs>\n");

    // Session phases strip.
    let _ = writeln!(
        c.out,
        r#"<text x="{:.1}" y="{:.1}" class="tick" text-anchor="end">phase</text>"#,
        LEFT - 6.0,
        phase_top + 11.0
    );
    let phases: Vec<(f64, SessionPhase)> = a
        .marks
        .iter()
        .filter_map(|m| match *m {
            Mark::Phase { t, phase, .. } => Some((t, phase)),
            _ => None,
        })
        .collect();
    for (i, &(t, phase)) in phases.iter().enumerate() {
        let to = phases.get(i + 1).map_or(end, |n| n.0);
        let fill = match phase {
            SessionPhase::Baseline => "#e3e7ee",
            SessionPhase::Dosing => "#f3dbe7",
            SessionPhase::Recovery => "#dcefdc",
            SessionPhase::Idle | SessionPhase::Ended => continue,
        };
        let (x0, x1) = (c.axis.x(t), c.axis.x(to));
        let _ = writeln!(
            c.out,
            r##"<rect class="phase" x="{x0:.1}" y="{phase_top}" width="{:.1}" height="15" fill="{fill}"/><text x="{:.1}" y="{:.1}" class="small" fill="#333">{}</text>"##,
            (x1 - x0).max(1.0),
            x0 + 3.0,
            phase_top + 11.0,
            phase.key()
        );
    }

    c.vertical_grid(hr.top, nibp.bottom());

    // Heart rate and pulse rate.
    c.panel_frame(
        &hr,
        "Heart rate (HR) and pulse rate (PR), /min",
        nice_step(hr.hi - hr.lo, 6.0),
    );
    c.vertical_grid(hr.top, hr.bottom());
    c.alarm_shading(&hr, &[Vital::HeartRate, Vital::PulseRate]);
    let mut labels = Vec::new();
    c.baseline_band(&hr, Vital::HeartRate, &mut labels);
    c.limits(&hr, Vital::HeartRate, "HR ", &mut labels);
    let rules = |v: Vital| cfg.engine.rules(v).stale_after.as_secs_f64();
    c.line(
        &hr,
        &a.series[1],
        rules(Vital::PulseRate),
        colour::PR,
        "series pr",
    );
    c.line(
        &hr,
        &a.series[0],
        rules(Vital::HeartRate),
        colour::HR,
        "series hr",
    );
    right_labels(&mut c.out, labels);

    // SpO2.
    c.panel_frame(&spo2, "SpO2, %", nice_step(spo2.hi - spo2.lo, 5.0));
    c.vertical_grid(spo2.top, spo2.bottom());
    c.alarm_shading(&spo2, &[Vital::SpO2]);
    let mut labels = Vec::new();
    c.baseline_band(&spo2, Vital::SpO2, &mut labels);
    c.limits(&spo2, Vital::SpO2, "", &mut labels);
    c.line(
        &spo2,
        &a.series[2],
        rules(Vital::SpO2),
        colour::SPO2,
        "series spo2",
    );
    right_labels(&mut c.out, labels);

    // Breathing: RR and etCO2 share a panel, as HR and PR do.
    if let Some(p) = &breath {
        c.panel_frame(
            p,
            "Breathing: respiration rate (RR), /min, and end-tidal CO2 (etCO2), mmHg",
            nice_step(p.hi - p.lo, 5.0),
        );
        c.vertical_grid(p.top, p.bottom());
        c.alarm_shading(p, &[Vital::RespRate, Vital::EtCo2]);
        let mut labels = Vec::new();
        c.baseline_band(p, Vital::RespRate, &mut labels);
        c.baseline_band(p, Vital::EtCo2, &mut labels);
        c.limits(p, Vital::RespRate, "RR ", &mut labels);
        c.limits(p, Vital::EtCo2, "etCO2 ", &mut labels);
        c.line(
            p,
            &a.series[ETCO2],
            rules(Vital::EtCo2),
            colour::ETCO2,
            "series etco2",
        );
        c.line(
            p,
            &a.series[RR],
            rules(Vital::RespRate),
            colour::RR,
            "series rr",
        );
        right_labels(&mut c.out, labels);
    }

    // NIBP.
    c.panel_frame(
        &nibp,
        "Non-invasive blood pressure (NIBP), mmHg: systolic–diastolic bar, mean dot",
        nice_step(nibp.hi - nibp.lo, 6.0),
    );
    c.vertical_grid(nibp.top, nibp.bottom());
    c.alarm_shading(
        &nibp,
        &[Vital::NibpSystolic, Vital::NibpDiastolic, Vital::NibpMean],
    );
    let mut labels = Vec::new();
    c.baseline_band(&nibp, Vital::NibpSystolic, &mut labels);
    c.baseline_band(&nibp, Vital::NibpDiastolic, &mut labels);
    c.limits(&nibp, Vital::NibpSystolic, "sys ", &mut labels);
    c.limits(&nibp, Vital::NibpDiastolic, "dia ", &mut labels);
    c.limits(&nibp, Vital::NibpMean, "mean ", &mut labels);
    for n in &a.nibp {
        let x = c.axis.x(n.t);
        let [sys, dia, mean] = n.values.map(|v| v.map(|v| nibp.y(f64::from(v))));
        let text = format!(
            "NIBP {} {}/{} ({})",
            clock.at(n.t),
            n.values[0].map_or("-".into(), |v| v.to_string()),
            n.values[1].map_or("-".into(), |v| v.to_string()),
            n.values[2].map_or("-".into(), |v| v.to_string())
        );
        let _ = write!(c.out, r#"<g class="nibp"><title>{}</title>"#, esc(&text));
        if let (Some(s), Some(d)) = (sys, dia) {
            let _ = write!(
                c.out,
                r#"<line x1="{x:.1}" x2="{x:.1}" y1="{s:.1}" y2="{d:.1}" stroke="{}" stroke-width="3"/>"#,
                colour::NIBP
            );
        }
        for y in [sys, dia].into_iter().flatten() {
            let _ = write!(
                c.out,
                r#"<line x1="{:.1}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="{}" stroke-width="3"/>"#,
                x - 6.0,
                x + 6.0,
                colour::NIBP
            );
        }
        if let Some(m) = mean {
            let _ = write!(
                c.out,
                r##"<circle cx="{x:.1}" cy="{m:.1}" r="4" fill="#fff" stroke="{}" stroke-width="2.5"/>"##,
                colour::NIBP
            );
        }
        c.out.push_str("</g>\n");
    }
    right_labels(&mut c.out, labels);

    // Alarm lane.
    let _ = writeln!(
        c.out,
        r#"<text x="{LEFT}" y="{:.1}" class="ptitle">Alarms, start to end (colour: priority; solid: physiological, hatched: technical; ▼ acknowledged)</text>"#,
        lane_top - 7.0
    );
    let _ = writeln!(
        c.out,
        r##"<rect x="{LEFT}" y="{lane_top:.1}" width="{:.1}" height="{lane_height:.1}" fill="#fff" stroke="#bbb"/>"##,
        RIGHT - LEFT
    );
    c.vertical_grid(lane_top, lane_top + lane_height);
    if lane.is_empty() {
        let _ = writeln!(
            c.out,
            r#"<text x="{:.1}" y="{:.1}" class="small">no alarms</text>"#,
            LEFT + 8.0,
            lane_top + 16.0
        );
    }
    for (row, key) in lane.iter().enumerate() {
        let y = lane_top + 4.0 + row as f64 * LANE_ROW;
        let _ = writeln!(
            c.out,
            r#"<text x="{:.1}" y="{:.1}" class="lane" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            y + 11.0,
            esc(key)
        );
        let episodes: Vec<Episode> = a
            .episodes
            .iter()
            .filter(|e| e.key == *key)
            .cloned()
            .collect();
        for e in &episodes {
            c.spans(
                e,
                y + 2.0,
                LANE_ROW - 5.0,
                1.0,
                e.kind == AlarmKind::Technical,
            );
            for (t, by) in &e.acks {
                let x = c.axis.x(*t);
                let _ = writeln!(
                    c.out,
                    r##"<path class="ack" d="M{:.1} {:.1}L{:.1} {:.1}L{x:.1} {:.1}Z" fill="#111"><title>{} acknowledged at {} by {}</title></path>"##,
                    x - 5.0,
                    y - 3.0,
                    x + 5.0,
                    y - 3.0,
                    y + 5.0,
                    esc(&e.key),
                    clock.at(*t),
                    esc(if by.is_empty() { "?" } else { by })
                );
            }
        }
    }

    // Doses across every chart.
    for (t, number, route, amount, note) in a.doses() {
        let x = c.axis.x(t);
        let what = [amount.unwrap_or_default(), note]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            c.out,
            r#"<g class="dose"><title>Dose {number} at {} ({}) {}</title><line x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{:.1}" stroke="{}" stroke-width="2" stroke-dasharray="6,3"/><text x="{:.1}" y="{:.1}" class="dose-label" fill="{}">Dose {number} {}</text></g>"#,
            clock.at(t),
            esc(route),
            esc(&what),
            phase_top - 14.0,
            lane_top + lane_height,
            colour::DOSE,
            x + 4.0,
            phase_top - 4.0,
            colour::DOSE,
            esc(route)
        );
    }

    // Time axis.
    let step = time_step(end);
    let mut t = 0.0;
    while t <= end + 1e-9 {
        let x = c.axis.x(t);
        let _ = writeln!(
            c.out,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{axis_y:.1}" y2="{:.1}" stroke="#444"/><text x="{x:.1}" y="{:.1}" class="tick" text-anchor="middle">{}</text>"##,
            axis_y + 5.0,
            axis_y + 18.0,
            clock.short(t, step < 60.0)
        );
        t += step;
    }
    let _ = writeln!(
        c.out,
        r#"<text x="{:.1}" y="{:.1}" class="axis" text-anchor="middle">{} (hh:mm)</text>"#,
        (LEFT + RIGHT) / 2.0,
        axis_y + 38.0,
        clock.zone(a.duration)
    );
    c.out.push_str("</svg>\n");
    c.out
}

fn legend(breathing: bool) -> String {
    let mut o = String::from(r#"<div class="legend">"#);
    let item = |o: &mut String, svg: String, text: &str| {
        let _ = write!(
            o,
            r#"<span><svg width="30" height="14" viewBox="0 0 30 14">{svg}</svg>{}</span>"#,
            esc(text)
        );
    };
    let line = |c: &str, dash: &str| {
        format!(
            r#"<line x1="1" x2="29" y1="7" y2="7" stroke="{c}" stroke-width="2.5" stroke-dasharray="{dash}"/>"#
        )
    };
    item(&mut o, line(colour::HR, ""), "HR");
    item(&mut o, line(colour::PR, ""), "PR");
    item(&mut o, line(colour::SPO2, ""), "SpO2");
    if breathing {
        item(&mut o, line(colour::RR, ""), "RR");
        item(&mut o, line(colour::ETCO2, ""), "etCO2");
    }
    item(
        &mut o,
        format!(
            r##"<line x1="15" x2="15" y1="1" y2="13" stroke="{0}" stroke-width="3"/><circle cx="15" cy="7" r="3.5" fill="#fff" stroke="{0}" stroke-width="2"/>"##,
            colour::NIBP
        ),
        "NIBP sys–dia, mean",
    );
    item(
        &mut o,
        format!(
            r#"<rect x="1" y="2" width="28" height="10" fill="{0}" fill-opacity="0.13"/><line x1="1" x2="29" y1="7" y2="7" stroke="{0}" stroke-dasharray="2,2"/>"#,
            colour::BASELINE
        ),
        "baseline and its band",
    );
    item(&mut o, line(colour::LIMIT, "5,4"), "alarm limit");
    item(&mut o, line(colour::CRITICAL, "8,3"), "critical limit");
    for p in [Priority::High, Priority::Medium, Priority::Low] {
        item(
            &mut o,
            format!(
                r#"<rect x="1" y="2" width="13" height="10" fill="{0}"/><rect x="16" y="2" width="13" height="10" fill="url(#legend-hatch-{1})" stroke="{0}"/>"#,
                priority_colour(p),
                p.key()
            ),
            &format!("{} priority: physiological | technical", p.key()),
        );
    }
    item(
        &mut o,
        r##"<path d="M10 2L20 2L15 11Z" fill="#111"/>"##.to_owned(),
        "acknowledged",
    );
    item(&mut o, line(colour::DOSE, "6,3"), "dose");
    o.push_str("</div>\n");
    // Patterns for the legend swatches (each inline SVG has its own scope in
    // practice, but ids are document-wide: define them once, hidden).
    o.push_str(r#"<svg width="0" height="0" style="position:absolute"><defs>"#);
    for p in [Priority::High, Priority::Medium, Priority::Low] {
        let _ = write!(
            o,
            r##"<pattern id="legend-hatch-{}" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#fff"/><rect width="3" height="6" fill="{}"/></pattern>"##,
            p.key(),
            priority_colour(p)
        );
    }
    o.push_str("</defs></svg>\n");
    o
}

/// Time to acknowledge per final priority.
fn ack_table(a: &Analysis) -> String {
    let mut o = String::new();
    let priorities = [Priority::High, Priority::Medium, Priority::Low];
    // Time to acknowledge.
    o.push_str("<section><h2>Time to acknowledge</h2><table class=\"acks\"><thead><tr><th>final priority</th><th>acknowledged</th><th>median</th><th>maximum</th><th>never acknowledged</th></tr></thead><tbody>\n");
    let mut rows: Vec<(String, Vec<&Episode>)> = priorities
        .iter()
        .map(|p| {
            (
                p.key().to_owned(),
                a.episodes
                    .iter()
                    .filter(|e| e.final_priority() == *p)
                    .collect(),
            )
        })
        .collect();
    rows.push(("all".into(), a.episodes.iter().collect()));
    for (name, eps) in rows {
        let times: Vec<f64> = eps
            .iter()
            .filter_map(|e| e.acks.first().map(|(t, _)| t - e.start))
            .collect();
        let stats = median_max(times.clone());
        let _ = writeln!(
            o,
            "<tr><td>{name}</td><td>{} of {}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            times.len(),
            eps.len(),
            stats.map_or("–".into(), |s| span(s.0)),
            stats.map_or("–".into(), |s| span(s.1)),
            eps.len() - times.len()
        );
    }
    o.push_str("</tbody></table><p class=\"note\">From the alarm's start to its first acknowledgement, by the priority the alarm ended with: an alarm escalated to high before it was acknowledged counts as high.</p></section>\n");

    o
}

/// A sample in a table cell: the value, `?` when questionable, `<`/`>` off
/// scale, `–` when absent (the reason as the cell's title).
fn sample_cell(s: crate::vitals::Sample) -> String {
    match quality(s) {
        Quality::Valid(v) => v.to_string(),
        Quality::Questionable(v) => format!(
            "<span title=\"{}\">{v}?</span>",
            describe(crate::vitals::Validity::Questionable)
        ),
        Quality::BelowRange(v) => format!(
            "<span title=\"{}\">&lt;{}</span>",
            describe(crate::vitals::Validity::UnderRange),
            v.map_or(String::new(), |v| v.to_string())
        ),
        Quality::AboveRange(v) => format!(
            "<span title=\"{}\">&gt;{}</span>",
            describe(crate::vitals::Validity::OverRange),
            v.map_or(String::new(), |v| v.to_string())
        ),
        Quality::Absent(why) => format!("<span title=\"{}\">–</span>", esc(describe(why))),
    }
}

fn vital_label(v: Vital) -> &'static str {
    match v {
        Vital::HeartRate => "HR",
        Vital::PulseRate => "PR",
        Vital::SpO2 => "SpO2",
        Vital::RespRate => "RR",
        Vital::EtCo2 => "etCO2",
        v => v.key(),
    }
}

/// The vitals table: the session's readings at the interval (the first
/// valid reading of each vital per interval) plus every NIBP.
fn vitals_table(session: &Session, clock: &Clock, interval: Duration) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<section class=\"vitals\"><h2>Vitals every {}, and every NIBP</h2>",
        interval_words(interval)
    );
    let chart = match chart::chart(session, Sampling::Interval(interval)) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(
                o,
                "<p class=\"note\">No vitals table: {}.</p></section>",
                esc(&e.to_string())
            );
            return o;
        }
    };
    let mut vitals: Vec<Vital> = Vec::new();
    for p in &chart.points {
        if let Value::Continuous(v, _) = p.value {
            if !vitals.contains(&v) {
                vitals.push(v);
            }
        }
    }
    vitals.sort_by_key(|v| v.index());
    // (time, continuous values by column, NIBP) per row.
    type Row = (
        Duration,
        Vec<Option<crate::vitals::Sample>>,
        Option<crate::vitals::Nibp>,
    );
    let mut rows: Vec<Row> = Vec::new();
    let mut by_group: Vec<(u64, usize)> = Vec::new();
    for p in &chart.points {
        match p.value {
            Value::Continuous(v, sample) => {
                let column = vitals.iter().position(|c| *c == v).unwrap_or(0);
                let row = match by_group.iter().find(|(g, _)| *g == p.group) {
                    Some(&(_, r)) => r,
                    None => {
                        by_group.push((p.group, rows.len()));
                        rows.push((p.time, vec![None; vitals.len()], None));
                        rows.len() - 1
                    }
                };
                rows[row].0 = rows[row].0.min(p.time);
                rows[row].1[column] = Some(sample);
            }
            Value::Nibp(n) => rows.push((p.time, vec![None; vitals.len()], Some(n))),
        }
    }
    rows.sort_by_key(|r| (r.0, r.2.is_some()));
    // An NIBP taken in the same second as an interval's readings shares its row.
    let mut merged: Vec<Row> = Vec::with_capacity(rows.len());
    for row in rows {
        match merged.last_mut() {
            Some(last)
                if row.2.is_some() && last.2.is_none() && last.0.as_secs() == row.0.as_secs() =>
            {
                last.2 = row.2;
            }
            _ => merged.push(row),
        }
    }
    let rows = merged;
    o.push_str("<table class=\"vitals\"><thead><tr><th>time</th>");
    for v in &vitals {
        let _ = write!(o, "<th>{} {}</th>", vital_label(*v), unit(*v));
    }
    o.push_str("<th>NIBP mmHg sys/dia (mean)</th></tr></thead><tbody>\n");
    for (time, values, nibp) in &rows {
        let _ = write!(
            o,
            "<tr class=\"{}\"><td>{}</td>",
            if values.iter().all(Option::is_none) {
                "nibp"
            } else {
                "interval"
            },
            clock.at(time.as_secs_f64())
        );
        for v in values {
            let _ = write!(o, "<td>{}</td>", v.map_or(String::new(), sample_cell));
        }
        let bp = nibp.map_or(String::new(), |n| {
            format!(
                "{}/{} ({})",
                sample_cell(n.systolic),
                sample_cell(n.diastolic),
                sample_cell(n.mean)
            )
        });
        let _ = writeln!(o, "<td>{bp}</td></tr>");
    }
    o.push_str("</tbody></table><p class=\"note\">Readings from the session's start to its end. Each interval shows the first valid reading of each vital in it (– when none was valid: hover for why); ? questionable, &lt; &gt; off the device's scale. Intervals count from the recording's start.</p></section>\n");
    o
}

/// Peaks and doses, for the summary.
fn summary(a: &Analysis, clock: &Clock) -> String {
    let mut o = String::new();
    let p = peaks(a);
    o.push_str("<section><h2>Peaks</h2><table class=\"peaks\"><thead><tr><th></th><th>value</th><th>at</th></tr></thead><tbody>\n");
    let row = |o: &mut String, id: &str, what: &str, value: Option<(String, f64)>| {
        let (v, t) = value.map_or(("none valid".to_owned(), "–".to_owned()), |(v, t)| {
            (v, clock.at(t))
        });
        let _ = writeln!(
            o,
            "<tr id=\"peak-{id}\"><td>{what}</td><td>{}</td><td>{t}</td></tr>",
            esc(&v)
        );
    };
    let num = |v: Option<f32>| v.map_or("–".to_owned(), |v| v.to_string());
    row(
        &mut o,
        "nibp",
        "Highest NIBP",
        p.nibp.map(|n| {
            (
                format!(
                    "{}/{} ({}) mmHg",
                    num(n.values[0]),
                    num(n.values[1]),
                    num(n.values[2])
                ),
                n.t,
            )
        }),
    );
    row(
        &mut o,
        "hr",
        "Highest HR",
        p.hr.map(|h| (format!("{} /min", h.value), h.t)),
    );
    row(
        &mut o,
        "spo2",
        "Lowest SpO2",
        p.spo2.map(|s| (format!("{} %", s.value), s.t)),
    );
    if a.has_breathing() {
        row(
            &mut o,
            "rr",
            "Lowest RR",
            p.rr.map(|s| (format!("{} /min", s.value), s.t)),
        );
        row(
            &mut o,
            "etco2",
            "Highest etCO2",
            p.etco2.map(|s| (format!("{} mmHg", s.value), s.t)),
        );
    }
    o.push_str("</tbody></table></section>\n");

    o.push_str("<section><h2>Doses</h2><table class=\"doses\"><thead><tr><th>#</th><th>at</th><th>amount</th><th>route</th><th>note</th></tr></thead><tbody>\n");
    let mut any = false;
    for (t, number, route, amount, rest) in a.doses() {
        any = true;
        let _ = writeln!(
            o,
            "<tr class=\"dose\"><td>{number}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            clock.at(t),
            esc(amount.unwrap_or("not recorded")),
            esc(route),
            esc(rest)
        );
    }
    if !any {
        o.push_str("<tr><td colspan=\"5\">no dose recorded</td></tr>\n");
    }
    o.push_str("</tbody></table></section>\n");
    o.push_str(&ack_table(a));
    o
}

fn summary_tables(a: &Analysis, cfg: &Config, clock: &Clock) -> String {
    let mut o = String::new();
    let priorities = [Priority::High, Priority::Medium, Priority::Low];
    // Alarms per priority and kind.
    o.push_str("<section><h2>Alarms started, by priority and kind</h2><table class=\"counts\"><thead><tr><th>priority</th><th>physiological</th><th>technical</th><th>total</th><th>escalated later</th></tr></thead><tbody>\n");
    let count = |p: Priority, k: Option<AlarmKind>| {
        a.episodes
            .iter()
            .filter(|e| e.first_priority() == p && k.is_none_or(|k| e.kind == k))
            .count()
    };
    for p in priorities {
        let escalated = a
            .episodes
            .iter()
            .filter(|e| e.first_priority() == p && e.max_priority() > p)
            .count();
        let _ = writeln!(
            o,
            r#"<tr class="prio-{}"><td><span class="chip" style="background:{}"></span>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            p.key(),
            priority_colour(p),
            p.key(),
            count(p, Some(AlarmKind::Physiological)),
            count(p, Some(AlarmKind::Technical)),
            count(p, None),
            escalated
        );
    }
    let _ = writeln!(
        o,
        "<tr class=\"total\"><td>all</td><td>{}</td><td>{}</td><td>{}</td><td></td></tr></tbody></table>",
        a.episodes.iter().filter(|e| e.kind == AlarmKind::Physiological).count(),
        a.episodes.iter().filter(|e| e.kind == AlarmKind::Technical).count(),
        a.episodes.len()
    );
    o.push_str("<p class=\"note\">Priority at the start of each alarm; \"escalated later\" counts those raised because nobody acknowledged them in time.</p></section>\n");

    // Time outside limits.
    o.push_str("<section><h2>Time outside the alarm limits</h2><table class=\"outside\"><thead><tr><th>vital</th><th>low limit</th><th>below it</th><th>high limit</th><th>above it</th><th>monitored</th></tr></thead><tbody>\n");
    for (i, v) in CONTINUOUS.into_iter().enumerate() {
        if i >= RR && !a.has_breathing() {
            continue;
        }
        let r = cfg.engine.rules(v);
        let (below, above, monitored) = time_outside(&a.series[i], r, a.duration);
        let low = r
            .low
            .or(r.critical_low)
            .map_or("–".into(), |l| l.value.to_string());
        let high = r
            .high
            .or(r.critical_high)
            .map_or("–".into(), |l| l.value.to_string());
        let _ = writeln!(
            o,
            r#"<tr data-vital="{}"><td>{} ({})</td><td>{low}</td><td>{}</td><td>{high}</td><td>{}</td><td>{}</td></tr>"#,
            v.key(),
            v.key(),
            unit(v),
            if r.low.or(r.critical_low).is_some() {
                span(below)
            } else {
                "–".into()
            },
            if r.high.or(r.critical_high).is_some() {
                span(above)
            } else {
                "–".into()
            },
            span(monitored)
        );
    }
    for (k, v) in [Vital::NibpSystolic, Vital::NibpDiastolic, Vital::NibpMean]
        .into_iter()
        .enumerate()
    {
        let r = cfg.engine.rules(v);
        let low = r.low.or(r.critical_low).map(|l| l.value);
        let high = r.high.or(r.critical_high).map(|l| l.value);
        let values: Vec<f32> = a.nibp.iter().filter_map(|n| n.values[k]).collect();
        let below = values
            .iter()
            .filter(|x| low.is_some_and(|l| **x < l))
            .count();
        let above = values
            .iter()
            .filter(|x| high.is_some_and(|h| **x > h))
            .count();
        let _ = writeln!(
            o,
            r#"<tr data-vital="{}"><td>{} (mmHg)</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} measurement(s)</td></tr>"#,
            v.key(),
            v.key(),
            low.map_or("–".into(), |l| l.to_string()),
            if low.is_some() {
                format!("{below} measurement(s)")
            } else {
                "–".into()
            },
            high.map_or("–".into(), |l| l.to_string()),
            if high.is_some() {
                format!("{above} measurement(s)")
            } else {
                "–".into()
            },
            values.len()
        );
    }
    o.push_str("</tbody></table><p class=\"note\">Limits of the recorded configuration (the ordinary limit, or the critical one where there is no ordinary one). A continuous reading counts until the next one, at most the vital's stale timeout; NIBP is intermittent, so its measurements are counted.</p></section>\n");

    // Alarm list.
    o.push_str("<section><h2>Alarm list</h2><table class=\"alarms\"><thead><tr><th>start</th><th>end</th><th>duration</th><th>alarm</th><th>kind</th><th>priority</th><th>value / limit</th><th>acknowledged</th></tr></thead><tbody>\n");
    if a.episodes.is_empty() {
        o.push_str("<tr><td colspan=\"8\">no alarms</td></tr>\n");
    }
    for e in &a.episodes {
        let end = e.end.unwrap_or(a.duration);
        let prios: Vec<&str> = e.priorities.iter().map(|p| p.1.key()).collect();
        let ack = match e.acks.first() {
            Some((t, by)) => format!(
                "{} by {} (after {})",
                clock.at(*t),
                esc(if by.is_empty() { "?" } else { by }),
                span(t - e.start)
            ),
            None => "–".into(),
        };
        let _ = writeln!(
            o,
            r#"<tr class="alarm prio-{}"><td>{}</td><td>{}</td><td>{}</td><td title="{}">{}</td><td>{}</td><td><span class="chip" style="background:{}"></span>{}</td><td>{} / {}</td><td>{ack}</td></tr>"#,
            e.max_priority().key(),
            clock.at(e.start),
            if e.end.is_some() {
                clock.at(end)
            } else {
                "still on at the end".into()
            },
            span(end - e.start),
            esc(&e.key),
            esc(&alarm_name(&e.key).text),
            e.kind.key(),
            priority_colour(e.max_priority()),
            prios.join(" → "),
            e.value
                .filter(|v| v.is_finite())
                .map_or("–".into(), |v| v.to_string()),
            e.limit.map_or("–".into(), |v| v.to_string()),
        );
    }
    o.push_str("</tbody></table></section>\n");

    // Session events.
    o.push_str("<section><h2>Session events</h2><table class=\"events\"><thead><tr><th>time</th><th>event</th></tr></thead><tbody>\n");
    let mut phase = SessionPhase::Idle;
    for m in &a.marks {
        if let Mark::Phase { phase: p, .. } = m {
            phase = *p;
        }
        let (t, text) = match m {
            Mark::Dose {
                t,
                number,
                route,
                amount,
                note,
            } => (
                *t,
                format!(
                    "Dose {number}, {}route {}{}",
                    amount
                        .as_ref()
                        .map_or(String::new(), |a| format!("{} ", esc(a))),
                    esc(route),
                    if note.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", esc(note))
                    }
                ),
            ),
            Mark::Baseline { t, vital, value } => (
                *t,
                format!("Baseline {} {} {}", vital.key(), value, unit(*vital)),
            ),
            Mark::Phase { t, phase, session } => (
                *t,
                format!("Session {}: phase {}", esc(session), phase.key()),
            ),
            Mark::BaselineIncomplete { t, missing } => (
                *t,
                format!(
                    "Baseline incomplete: no baseline for {} (too few readings before the dose; their trend alarms were not armed)",
                    missing.iter().map(|v| v.key()).collect::<Vec<_>>().join(", ")
                ),
            ),
            Mark::Discharge { t, ready } => (
                *t,
                match (phase == SessionPhase::Recovery, *ready) {
                    (true, true) => "Discharge criteria met".to_owned(),
                    (true, false) => "Discharge criteria no longer met".to_owned(),
                    (false, true) => format!(
                        "Vitals back within the discharge range (phase {}: discharge is judged only in recovery)",
                        phase.key()
                    ),
                    (false, false) => "Vitals outside the discharge range".to_owned(),
                },
            ),
        };
        let _ = writeln!(o, "<tr><td>{}</td><td>{text}</td></tr>", clock.at(t));
    }
    if a.marks.is_empty() {
        o.push_str("<tr><td colspan=\"2\">none (no session was started)</td></tr>\n");
    }
    o.push_str("</tbody></table></section>\n");
    o
}

const CSS: &str = r#"
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: #222; margin: 16px 24px; max-width: 1260px; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 18px 0 6px; }
.facts { font-size: 13px; color: #333; margin: 0 0 8px; }
.facts b { font-weight: 600; }
.legend { font-size: 12px; display: flex; flex-wrap: wrap; gap: 4px 16px; margin: 4px 0 2px; }
.legend span { display: inline-flex; align-items: center; gap: 4px; }
svg text { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; }
.ptitle { font-size: 13px; font-weight: 600; fill: #222; }
.tick { font-size: 11px; fill: #444; }
.small { font-size: 10px; }
.lane { font-size: 11px; fill: #222; }
.lim { font-size: 10px; }
.axis { font-size: 12px; fill: #222; }
.dose-label { font-size: 11px; font-weight: 600; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
th { background: #f3f3f3; font-weight: 600; }
.chip { display: inline-block; width: 10px; height: 10px; margin-right: 5px; border: 1px solid #999; vertical-align: -1px; }
.note { font-size: 12px; color: #555; margin: 4px 0; }
.grid { display: flex; flex-wrap: wrap; gap: 0 32px; }
footer { font-size: 11px; color: #666; margin-top: 20px; border-top: 1px solid #ddd; padding-top: 6px; }
.summary { display: flex; flex-wrap: wrap; gap: 0 28px; align-items: flex-start; }
.summary section { max-width: 420px; }
#chart { max-width: 100%; height: auto; }
@page { margin: 10mm; }
@media print {
  body { margin: 0; max-width: none; -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  .page1 { break-after: page; }
  #chart { width: 100%; }
  h1 { font-size: 15px; }
  h2 { font-size: 11px; margin: 6px 0 2px; }
  .facts { font-size: 9.5px; margin: 0 0 2px; }
  .legend { font-size: 8.5px; gap: 1px 10px; }
  table { font-size: 9px; }
  th, td { padding: 1px 4px; }
  .note { font-size: 8.5px; margin: 2px 0; }
  .summary section { max-width: 300px; }
  section { break-inside: avoid; }
  section.vitals { break-inside: auto; }
  tr { break-inside: avoid; }
  footer { font-size: 8.5px; }
}
"#;

/// Renders the report of an analysed session.
pub fn render(session: &Session, a: &Analysis, options: &ReportOptions) -> String {
    let clock = Clock {
        started: started(session),
        zone: options.zone.clone(),
    };
    let mut ids: Vec<&str> = Vec::new();
    for m in &a.marks {
        if let Mark::Phase { session, .. } = m {
            if !session.is_empty() && !ids.contains(&session.as_str()) {
                ids.push(session);
            }
        }
    }
    let id_text = if ids.is_empty() {
        "no session started".to_owned()
    } else {
        ids.join(", ")
    };
    let doses = a
        .marks
        .iter()
        .filter(|m| matches!(m, Mark::Dose { .. }))
        .count();
    let cfg = &session.config;
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Session {} – vigil report</title><style>{CSS}</style></head><body>\n",
        esc(&id_text)
    );
    o.push_str("<div class=\"page1\">\n");
    let _ = writeln!(
        o,
        "<h1>Session report: <span id=\"session-id\">{}</span></h1>",
        esc(&id_text)
    );
    let start_text = match clock.started {
        Some(_) => format!("{} ({})", clock.at(0.0), clock.zone(a.duration)),
        None => "unknown".to_owned(),
    };
    let discharge = match (last_dose(a), discharge_ready_at(a)) {
        (Some(dose), Some(ready)) => format!(
            "{} (last dose {} → criteria met in recovery {})",
            span(ready - dose),
            clock.at(dose),
            clock.at(ready)
        ),
        (Some(_), None) => "criteria not met in recovery by the end of the recording".to_owned(),
        (None, _) => "no dose recorded".to_owned(),
    };
    let date = match (clock.date(0.0), clock.date(a.duration)) {
        (Some(first), Some(last)) if first != last => format!("{first} – {last}"),
        (Some(first), _) => first,
        (None, _) => "unknown".to_owned(),
    };
    let _ = writeln!(
        o,
        "<p class=\"facts\"><b>Date</b> <span id=\"date\">{}</span> &nbsp; <b>Dose to discharge ready</b> <span id=\"dose-to-discharge\">{}</span></p>",
        esc(&date),
        esc(&discharge)
    );
    let _ = writeln!(
        o,
        "<p class=\"facts\"><b>Site</b> {} &nbsp; <b>Bed</b> {} &nbsp; <b>Start</b> {} &nbsp; <b>Duration</b> {} &nbsp; <b>Doses</b> {} &nbsp; <b>Alarms</b> {} &nbsp; <b>Readings</b> HR {}, PR {}, SpO2 {}, {}NIBP {}</p>",
        esc(session.meta("site").unwrap_or(&cfg.site)),
        esc(session.meta("bed").unwrap_or(&cfg.bed)),
        esc(&start_text),
        span(a.duration),
        doses,
        a.episodes.len(),
        a.series[0].len(),
        a.series[1].len(),
        a.series[2].len(),
        if a.has_breathing() {
            format!(
                "RR {}, etCO2 {}, ",
                a.series[RR].len(),
                a.series[ETCO2].len()
            )
        } else {
            String::new()
        },
        a.nibp.len()
    );
    o.push_str("<div class=\"summary\">\n");
    o.push_str(&summary(a, &clock));
    o.push_str("</div>\n");
    o.push_str(&legend(a.has_breathing()));
    o.push_str(&svg_chart(a, cfg, &clock));
    o.push_str("</div>\n<div class=\"grid\">\n");
    o.push_str(&vitals_table(session, &clock, options.interval));
    o.push_str(&summary_tables(a, cfg, &clock));
    o.push_str("</div>\n");
    let mut notes = Vec::new();
    if session.corrupt_tail.is_some() {
        notes.push(
            "the recording has a torn or corrupt tail: the report covers everything before it",
        );
    }
    if session
        .steps
        .iter()
        .any(|(_, s)| matches!(s, replay::Step::Reconfigure(_)))
    {
        notes.push("the configuration was reloaded during the recording: the limits drawn are those in force at the start");
    }
    let _ = writeln!(
        o,
        "<footer>Made by vigil {} from the recording {} by replaying it through the same decoders and alarm engine as live. Limits, delays and baseline rules are the recorded configuration's. {}Only the pseudonymous session id identifies the session. vigil is a secondary notifier beside the patient monitor, not a certified medical alarm system: the monitor's own records prevail.</footer>",
        env!("CARGO_PKG_VERSION"),
        esc(options.file_name.as_deref().unwrap_or("(unnamed)")),
        notes.iter().map(|n| format!("Note: {n}. ")).collect::<String>()
    );
    o.push_str("</body></html>\n");
    o
}

/// Loads a recording and writes its report to `out`.
pub fn report(path: &Path, out: &Path, options: &ReportOptions) -> Result<Analysis, ReportError> {
    let session = replay::load(path)?;
    let a = analyse(&session);
    let mut options = options.clone();
    if options.file_name.is_none() {
        options.file_name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    }
    let html = render(&session, &a, &options);
    std::fs::write(out, html).map_err(|source| ReportError::Write {
        path: out.display().to_string(),
        cause: source,
    })?;
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_spans() {
        assert_eq!(median_max(vec![]), None);
        assert_eq!(median_max(vec![3.0, 1.0, 2.0]), Some((2.0, 3.0)));
        assert_eq!(median_max(vec![4.0, 1.0, 2.0, 3.0]), Some((2.5, 4.0)));
        assert_eq!(span(12.4), "12 s");
        assert_eq!(span(185.0), "3 min 05 s");
        assert_eq!(span(3720.0), "1 h 02 min");
    }

    #[test]
    fn time_outside_holds_each_reading_until_the_next_capped_at_stale() {
        let rules = crate::engine::EngineConfig::default().vitals[Vital::SpO2.index()];
        // 90 low; stale after 10 s.
        let series = [
            (0.0, Some(97.0)),
            (1.0, Some(88.0)),
            (3.0, Some(87.0)),
            (33.0, None),
            (34.0, Some(95.0)),
        ];
        let (below, above, monitored) = time_outside(&series, &rules, 40.0);
        assert_eq!(below, 2.0 + 10.0);
        assert_eq!(above, 0.0);
        assert_eq!(monitored, 1.0 + 2.0 + 10.0 + 6.0);
    }

    #[test]
    fn discharge_counts_only_in_recovery_after_the_last_dose() {
        let phase = |t, phase| Mark::Phase {
            t,
            phase,
            session: "KT-1".into(),
        };
        let dose = |t, number| Mark::Dose {
            t,
            number,
            route: "im".into(),
            amount: None,
            note: String::new(),
        };
        let mut a = Analysis {
            marks: vec![
                phase(0.0, SessionPhase::Dosing),
                dose(10.0, 1),
                Mark::Discharge {
                    t: 100.0,
                    ready: true,
                },
            ],
            ..Analysis::default()
        };
        assert_eq!(last_dose(&a), Some(10.0));
        // Ready while dosing is not discharge readiness.
        assert_eq!(discharge_ready_at(&a), None);
        a.marks.push(phase(200.0, SessionPhase::Recovery));
        assert_eq!(discharge_ready_at(&a), Some(200.0));
        a.marks.insert(2, dose(50.0, 2));
        a.marks.push(Mark::Discharge {
            t: 300.0,
            ready: false,
        });
        a.marks.push(Mark::Discharge {
            t: 400.0,
            ready: true,
        });
        assert_eq!(
            (last_dose(&a), discharge_ready_at(&a)),
            (Some(50.0), Some(200.0))
        );
        a.marks.clear();
        assert_eq!(discharge_ready_at(&a), None);
    }

    #[test]
    fn dose_amounts_come_from_the_head_of_the_note_as_the_displays_write_it() {
        assert_eq!(dose_amount("25 mg; racemic"), (Some("25 mg"), "racemic"));
        assert_eq!(dose_amount("0.5 mg/kg"), (Some("0.5 mg/kg"), ""));
        assert_eq!(
            dose_amount("ketamine 0.5 mg/kg"),
            (None, "ketamine 0.5 mg/kg")
        );
        assert_eq!(dose_amount("25 ml; x"), (None, "25 ml; x"));
        assert_eq!(dose_amount("-3 mg"), (None, "-3 mg"));
        assert_eq!(dose_amount(""), (None, ""));
    }

    #[test]
    fn peaks_are_the_first_extreme_valid_reading() {
        let mut a = Analysis::default();
        a.series[0] = vec![
            (0.0, Some(80.0)),
            (5.0, Some(131.0)),
            (6.0, None),
            (9.0, Some(131.0)),
        ];
        a.series[2] = vec![
            (0.0, Some(97.0)),
            (3.0, None),
            (4.0, Some(89.0)),
            (8.0, Some(93.0)),
        ];
        a.nibp = vec![
            NibpPoint {
                t: 0.0,
                values: [None, Some(80.0), Some(90.0)],
            },
            NibpPoint {
                t: 300.0,
                values: [Some(150.0), Some(95.0), Some(113.0)],
            },
            NibpPoint {
                t: 600.0,
                values: [Some(141.0), Some(99.0), Some(113.0)],
            },
        ];
        let p = peaks(&a);
        assert_eq!(
            p.hr,
            Some(Peak {
                t: 5.0,
                value: 131.0
            })
        );
        assert_eq!(
            p.spo2,
            Some(Peak {
                t: 4.0,
                value: 89.0
            })
        );
        assert_eq!(p.nibp.map(|n| n.t), Some(300.0));
        assert_eq!((p.rr, p.etco2), (None, None));
        assert!(!a.has_breathing());
        // Breathing: the first lowest RR (an apnoea's 0), the highest etCO2.
        a.series[RR] = vec![(0.0, Some(14.0)), (2.0, Some(0.0)), (3.0, Some(0.0))];
        a.series[ETCO2] = vec![(0.0, Some(38.0)), (7.0, Some(55.0)), (8.0, None)];
        let p = peaks(&a);
        assert_eq!(p.rr, Some(Peak { t: 2.0, value: 0.0 }));
        assert_eq!(
            p.etco2,
            Some(Peak {
                t: 7.0,
                value: 55.0
            })
        );
        assert!(a.has_breathing());
        assert_eq!(peaks(&Analysis::default()), Peaks::default());
    }

    #[test]
    fn clock_times_follow_the_zone_and_its_daylight_saving_change() {
        // 2026-03-29 00:30 UTC: 01:30 CET; Europe moves to CEST at 01:00 UTC.
        let started = SystemTime::UNIX_EPOCH + Duration::from_secs(1_774_744_200);
        let clock = |zone| Clock {
            started: Some(started),
            zone,
        };
        let utc = clock(TimeZone::UTC);
        assert_eq!(
            (utc.at(0.0), utc.zone(3600.0)),
            ("00:30:00".into(), "clock time, UTC".into())
        );
        let berlin = clock(TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap());
        assert_eq!(berlin.at(0.0), "01:30:00");
        assert_eq!(berlin.at(3600.0), "03:30:00");
        assert_eq!(
            berlin.zone(3600.0),
            "clock time, CET, UTC+01:00 at the start, CEST, UTC+02:00 at the end"
        );
        assert_eq!(berlin.zone(60.0), "clock time, CET, UTC+01:00");
        let fixed = clock(TimeZone::fixed(
            jiff::tz::Offset::from_seconds(-5 * 3600).unwrap(),
        ));
        assert_eq!(fixed.at(0.0), "19:30:00");
        assert_eq!(fixed.date(0.0).as_deref(), Some("2026-03-28"));
        assert_eq!(fixed.zone(0.0), "clock time, UTC-05:00");
        let unknown = Clock {
            started: None,
            zone: TimeZone::UTC,
        };
        assert_eq!(unknown.at(65.0), "+0:01:05");
        assert_eq!(unknown.zone(65.0), "time since the recording started");
        assert_eq!(interval_words(Duration::from_secs(300)), "5 min");
        assert_eq!(interval_words(Duration::from_secs(5400)), "1 h 30 min");
        assert_eq!(interval_words(Duration::from_secs(90)), "90 s");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(100.0, 6.0), 20.0);
        assert_eq!(nice_step(15.0, 5.0), 5.0);
        assert_eq!(time_step(7200.0), 600.0);
        assert_eq!(time_step(2400.0), 300.0);
    }
}
