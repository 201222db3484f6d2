//! Scenario files: what a simulated patient and monitor do during a session.
//!
//! A scenario is a small TOML file (the built-in ones live in
//! `simulators/scenarios/` and are compiled in): the patient's resting
//! vitals, how noisy the readings are, the session timeline (pre-dose
//! baseline, the dose and the ketamine response), the NIBP cycle, and
//! scripted events with a start time and a duration. Times are minutes from
//! the start of the session unless a key says otherwise (`duration_s`).
//!
//! ```toml
//! description = "An uneventful session"
//!
//! [session]
//! duration_min = 120          # how long the session runs
//! baseline_min = 10           # pre-dose baseline phase
//! device_clock = 2026-11-23T09:00:00Z   # optional: the monitor's clock at the start
//!
//! [patient]                   # resting values
//! hr = 72
//! spo2 = 97
//! sys = 124
//! dia = 78
//! rr = 14                     # optional: a capnograph (awRR, /min); none without
//! etco2 = 38                  # optional with rr: end-tidal CO2, mmHg (default 38)
//!
//! [noise]                     # optional: standard deviations
//! hr = 2.5                    # /min, beat to beat
//! spo2 = 0.7                  # %
//! bp = 4                      # mmHg systolic, reading to reading (diastolic ~0.7 x)
//! rr = 1                      # /min, slow wander (default 1)
//! etco2 = 1                   # mmHg, slow wander (default 1)
//!
//! [dose]                      # optional: no dose, no ketamine response
//! at_min = 10
//! sys_rise = 16               # mmHg at the peak
//! dia_rise = 11
//! hr_rise = 8                 # /min at the peak
//! rr_rise = 0                 # optional: /min at the peak (default 0)
//! etco2_rise = 0              # optional: mmHg at the peak (default 0)
//! peak_after_min = 40         # peak this long after the dose
//! settle_by_min = 90          # down to a tenth of the peak this long after the dose
//!
//! [nibp]                      # optional: no cuff
//! every_min = 5               # AUTO cycle
//! first_at_min = 1
//!
//! [[event]]
//! kind = "desaturation"       # see EventKind for every kind and its keys
//! at_min = 35
//! duration_min = 3
//! target = 82
//! ```
//!
//! Breathing is opt-in: a scenario without `patient.rr` has no capnograph,
//! and its monitors send exactly what they always did. The breathing
//! events (`respiratory-depression`, `apnoea`) need it.
//!
//! Unknown keys and unknown event kinds are refused with a message naming
//! them; values are range-checked with the key at fault in the message.
//!
//! Pure: [`Scenario::parse`] takes the text; `vigil::sim::find_scenario`
//! reads a file when the name is not a built-in one. Depends on
//! [`crate::vitals`].

use core::time::Duration;

use serde::Deserialize;

use crate::vitals::DeviceTime;

/// The built-in scenarios: name and file text.
const BUILTIN: [(&str, &str); 7] = [
    (
        "typical",
        include_str!("../../../../simulators/scenarios/typical.toml"),
    ),
    (
        "hypertensive",
        include_str!("../../../../simulators/scenarios/hypertensive.toml"),
    ),
    (
        "desaturation",
        include_str!("../../../../simulators/scenarios/desaturation.toml"),
    ),
    (
        "sensor-problems",
        include_str!("../../../../simulators/scenarios/sensor-problems.toml"),
    ),
    (
        "comm-loss",
        include_str!("../../../../simulators/scenarios/comm-loss.toml"),
    ),
    (
        "demo",
        include_str!("../../../../simulators/scenarios/demo.toml"),
    ),
    (
        "apnoea",
        include_str!("../../../../simulators/scenarios/apnoea.toml"),
    ),
];

/// etCO2 when a scenario gives `patient.rr` but no `patient.etco2`, mmHg
/// (the middle of the usual 35-45 mmHg).
const DEFAULT_ETCO2: f64 = 38.0;

/// The monitor's clock at the start when a scenario does not set it:
/// 2026-11-23T09:00:00Z.
pub const DEFAULT_DEVICE_CLOCK: DeviceTime = DeviceTime(1_795_424_400);

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// Neither a built-in name nor a readable file.
    #[error("scenario `{name}` is not a built-in scenario (built in: {builtins}) and cannot be read as a file: {cause}")]
    NotFound {
        /// What was asked for.
        name: String,
        /// The built-in names, comma separated.
        builtins: String,
        /// Why the file could not be read.
        cause: std::io::Error,
    },
    /// The TOML does not parse, or has an unknown key, kind or wrong type.
    #[error("scenario {origin}: {message}")]
    Syntax {
        /// The scenario's name or path.
        origin: String,
        /// What the parser said (it names the key).
        message: String,
    },
    /// A value is out of range.
    #[error("scenario {origin}: {key}: {problem}")]
    Invalid {
        /// The scenario's name or path.
        origin: String,
        /// The key at fault, e.g. `event[2].target`.
        key: String,
        /// What is wrong and what is allowed.
        problem: String,
    },
}

/// The patient's resting values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Resting {
    /// Heart rate, /min.
    pub hr: f32,
    /// SpO2, %.
    pub spo2: f32,
    /// Systolic blood pressure, mmHg.
    pub sys: f32,
    /// Diastolic blood pressure, mmHg.
    pub dia: f32,
    /// Breathing as a capnograph shows it; `None`: no capnograph.
    pub breathing: Option<Breathing>,
}

/// Resting breathing, as a capnograph measures it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Breathing {
    /// Respiration rate (awRR), /min.
    pub rr: f32,
    /// End-tidal CO2, mmHg.
    pub etco2: f32,
}

/// Standard deviations of the measurement noise.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Noise {
    /// Heart rate, /min.
    pub hr: f32,
    /// SpO2, %.
    pub spo2: f32,
    /// Systolic pressure, mmHg, per NIBP reading (diastolic gets about 0.7 x).
    pub bp: f32,
    /// Respiration rate, /min.
    pub rr: f32,
    /// End-tidal CO2, mmHg.
    pub etco2: f32,
}

/// The dose and the ketamine response it causes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dose {
    /// When the dose is given.
    pub at: Duration,
    /// Systolic rise at the peak, mmHg.
    pub sys_rise: f32,
    /// Diastolic rise at the peak, mmHg.
    pub dia_rise: f32,
    /// Heart rate rise at the peak, /min.
    pub hr_rise: f32,
    /// Respiration rate change at the peak, /min.
    pub rr_rise: f32,
    /// etCO2 change at the peak, mmHg.
    pub etco2_rise: f32,
    /// Time from the dose to the peak.
    pub peak_after: Duration,
    /// Time from the dose until the response is down to a tenth of its peak.
    pub settle_by: Duration,
}

/// The NIBP cuff's automatic cycle.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NibpCycle {
    /// Interval of the AUTO cycle.
    pub every: Duration,
    /// When the first AUTO measurement completes.
    pub first_at: Duration,
}

/// What a scripted event does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum EventKind {
    /// `hypertensive-surge`: blood pressure (and optionally heart rate) rises
    /// by extra amounts on top of everything else, smoothly over `ramp` at
    /// each end. Keys: `sys_mmhg`, `dia_mmhg`, `hr` (default 0),
    /// `ramp_min` (default 3).
    HypertensiveSurge {
        /// Extra systolic, mmHg.
        sys: f32,
        /// Extra diastolic, mmHg.
        dia: f32,
        /// Extra heart rate, /min.
        hr: f32,
        /// Time to reach the full surge, and to lose it at the end.
        ramp: Duration,
    },
    /// `desaturation`: SpO2 falls at `fall_per_min` %/min (default 6) to
    /// `target`, stays there until the event's end, then recovers at
    /// `recover_per_min` %/min (default 8).
    Desaturation {
        /// Lowest SpO2, %.
        target: f32,
        /// Fall rate, %/min.
        fall_per_min: f32,
        /// Recovery rate, %/min.
        recover_per_min: f32,
    },
    /// `bradycardia`: heart rate moves to `hr` over `ramp_min` (default 1)
    /// and back at the end.
    Bradycardia {
        /// Heart rate during the event, /min.
        hr: f32,
        /// Time to get there and back.
        ramp: Duration,
    },
    /// `tachycardia`: as bradycardia, upwards.
    Tachycardia {
        /// Heart rate during the event, /min.
        hr: f32,
        /// Time to get there and back.
        ramp: Duration,
    },
    /// `sensor-off`: the oximeter probe is off the finger: SpO2 and pulse
    /// rate are flagged sensor off.
    SensorOff,
    /// `probe-artifact`: the patient moves: wild SpO2 and pulse values,
    /// flagged as artifact.
    ProbeArtifact,
    /// `cable-unplugged`: the data cable is out: the device sends nothing and
    /// hears nothing.
    CableUnplugged,
    /// `garbage`: line noise: bursts of random bytes every `every_s` seconds
    /// (default 0.5) between the device's frames.
    Garbage {
        /// Time between bursts.
        every: Duration,
    },
    /// `reboot`: the monitor restarts: the frame being sent is cut off, the
    /// device is silent for the event's duration and forgets any session or
    /// data request, then sends frames again.
    Reboot,
    /// `stat-nibp`: a STAT NIBP measurement completes at `at_min` (no duration).
    StatNibp,
    /// `respiratory-depression`: breathing slows to `rr` /min and etCO2
    /// rises to `etco2` mmHg (hypoventilation: CO2 accumulates) over
    /// `ramp_min` (default 2), and back at the end. Needs `patient.rr`.
    RespiratoryDepression {
        /// Respiration rate during the event, /min.
        rr: f32,
        /// etCO2 during the event, mmHg.
        etco2: f32,
        /// Time to get there and back.
        ramp: Duration,
    },
    /// `apnoea`: no breath for the event's duration: the capnograph's rate
    /// is 0 and its etCO2 stays at the last breath's value (there is no new
    /// end-tidal value to show); breathing resumes at the end. Needs
    /// `patient.rr`.
    Apnoea,
}

impl EventKind {
    /// The kind's name in scenario files.
    pub const fn key(&self) -> &'static str {
        match self {
            EventKind::HypertensiveSurge { .. } => "hypertensive-surge",
            EventKind::Desaturation { .. } => "desaturation",
            EventKind::Bradycardia { .. } => "bradycardia",
            EventKind::Tachycardia { .. } => "tachycardia",
            EventKind::SensorOff => "sensor-off",
            EventKind::ProbeArtifact => "probe-artifact",
            EventKind::CableUnplugged => "cable-unplugged",
            EventKind::Garbage { .. } => "garbage",
            EventKind::Reboot => "reboot",
            EventKind::StatNibp => "stat-nibp",
            EventKind::RespiratoryDepression { .. } => "respiratory-depression",
            EventKind::Apnoea => "apnoea",
        }
    }
}

/// One scripted event.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScriptedEvent {
    /// When it starts, from the start of the session.
    pub start: Duration,
    /// How long it lasts (zero for a STAT NIBP).
    pub duration: Duration,
    /// What happens.
    pub kind: EventKind,
}

impl ScriptedEvent {
    /// When it ends.
    pub fn end(&self) -> Duration {
        self.start + self.duration
    }

    /// Whether `t` falls within `[start, end)`.
    pub fn contains(&self, t: Duration) -> bool {
        t >= self.start && t < self.end()
    }
}

/// A validated scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// Its name (built-in) or the path it was read from.
    pub name: String,
    /// One line for humans.
    pub description: String,
    /// How long the session runs.
    pub duration: Duration,
    /// Length of the pre-dose baseline phase.
    pub baseline: Duration,
    /// The monitor's clock at the start of the session.
    pub device_clock: DeviceTime,
    /// Resting vitals.
    pub resting: Resting,
    /// Measurement noise.
    pub noise: Noise,
    /// The dose, if one is given.
    pub dose: Option<Dose>,
    /// The NIBP cycle, if a cuff is on.
    pub nibp: Option<NibpCycle>,
    /// Scripted events, in file order.
    pub events: Vec<ScriptedEvent>,
}

impl Scenario {
    /// The names of the built-in scenarios.
    pub fn builtin_names() -> impl Iterator<Item = &'static str> {
        BUILTIN.iter().map(|(name, _)| *name)
    }

    /// The text of a built-in scenario file.
    pub fn builtin_text(name: &str) -> Option<&'static str> {
        BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
    }

    /// A built-in scenario by name.
    pub fn builtin(name: &str) -> Option<Result<Scenario, ScenarioError>> {
        Self::builtin_text(name).map(|text| Scenario::parse(text, name))
    }

    /// Parses and validates scenario text; `name` names it in messages.
    pub fn parse(text: &str, name: &str) -> Result<Scenario, ScenarioError> {
        let raw: RawScenario = toml::from_str(text).map_err(|e| ScenarioError::Syntax {
            origin: name.to_owned(),
            message: e.to_string().trim_end().replace('\n', "\n  "),
        })?;
        let mut check = Checker {
            origin: name,
            error: None,
        };
        let scenario = raw.validate(name, &mut check);
        match check.error {
            Some(e) => Err(e),
            None => Ok(scenario),
        }
    }

    /// The events of one kind (by [`EventKind::key`]), in file order.
    pub fn events_of<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a ScriptedEvent> {
        self.events.iter().filter(move |e| e.kind.key() == key)
    }
}

// ---------------------------------------------------------------------------
// The file format

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    description: String,
    session: RawSession,
    patient: RawPatient,
    #[serde(default)]
    noise: Option<RawNoise>,
    #[serde(default)]
    dose: Option<RawDose>,
    #[serde(default)]
    nibp: Option<RawNibp>,
    #[serde(default, rename = "event")]
    events: Vec<RawEvent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSession {
    duration_min: f64,
    #[serde(default)]
    baseline_min: f64,
    #[serde(default)]
    device_clock: Option<toml::value::Datetime>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPatient {
    hr: f64,
    spo2: f64,
    sys: f64,
    dia: f64,
    #[serde(default)]
    rr: Option<f64>,
    #[serde(default)]
    etco2: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNoise {
    #[serde(default = "default_hr_noise")]
    hr: f64,
    #[serde(default = "default_spo2_noise")]
    spo2: f64,
    #[serde(default = "default_bp_noise")]
    bp: f64,
    #[serde(default = "default_rr_noise")]
    rr: f64,
    #[serde(default = "default_etco2_noise")]
    etco2: f64,
}

fn default_hr_noise() -> f64 {
    2.5
}
fn default_spo2_noise() -> f64 {
    0.7
}
fn default_bp_noise() -> f64 {
    4.0
}
fn default_rr_noise() -> f64 {
    1.0
}
fn default_etco2_noise() -> f64 {
    1.0
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDose {
    at_min: f64,
    sys_rise: f64,
    dia_rise: f64,
    hr_rise: f64,
    #[serde(default)]
    rr_rise: f64,
    #[serde(default)]
    etco2_rise: f64,
    #[serde(default = "default_peak")]
    peak_after_min: f64,
    #[serde(default = "default_settle")]
    settle_by_min: f64,
}

fn default_peak() -> f64 {
    40.0
}
fn default_settle() -> f64 {
    90.0
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNibp {
    every_min: f64,
    #[serde(default)]
    first_at_min: f64,
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
enum RawEvent {
    HypertensiveSurge(RawSurge),
    Desaturation(RawDesaturation),
    Bradycardia(RawHeartRate),
    Tachycardia(RawHeartRate),
    SensorOff(RawSpan),
    ProbeArtifact(RawSpan),
    CableUnplugged(RawSpan),
    Garbage(RawGarbage),
    Reboot(RawSpan),
    StatNibp(RawAt),
    RespiratoryDepression(RawDepression),
    Apnoea(RawSpan),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDepression {
    at_min: f64,
    duration_min: Option<f64>,
    duration_s: Option<f64>,
    rr: f64,
    etco2: f64,
    #[serde(default = "default_depression_ramp")]
    ramp_min: f64,
}

fn default_depression_ramp() -> f64 {
    2.0
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSurge {
    at_min: f64,
    duration_min: Option<f64>,
    duration_s: Option<f64>,
    sys_mmhg: f64,
    dia_mmhg: f64,
    #[serde(default)]
    hr: f64,
    #[serde(default = "default_surge_ramp")]
    ramp_min: f64,
}

fn default_surge_ramp() -> f64 {
    3.0
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDesaturation {
    at_min: f64,
    duration_min: Option<f64>,
    duration_s: Option<f64>,
    target: f64,
    #[serde(default = "default_fall")]
    fall_per_min: f64,
    #[serde(default = "default_recover")]
    recover_per_min: f64,
}

fn default_fall() -> f64 {
    6.0
}
fn default_recover() -> f64 {
    8.0
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeartRate {
    at_min: f64,
    duration_min: Option<f64>,
    duration_s: Option<f64>,
    hr: f64,
    #[serde(default = "default_hr_ramp")]
    ramp_min: f64,
}

fn default_hr_ramp() -> f64 {
    1.0
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpan {
    at_min: f64,
    duration_min: Option<f64>,
    duration_s: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGarbage {
    at_min: f64,
    duration_min: Option<f64>,
    duration_s: Option<f64>,
    #[serde(default = "default_garbage_every")]
    every_s: f64,
}

fn default_garbage_every() -> f64 {
    0.5
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAt {
    at_min: f64,
}

/// Collects the first validation error.
struct Checker<'a> {
    origin: &'a str,
    error: Option<ScenarioError>,
}

impl Checker<'_> {
    fn fail(&mut self, key: &str, problem: String) {
        if self.error.is_none() {
            self.error = Some(ScenarioError::Invalid {
                origin: self.origin.to_owned(),
                key: key.to_owned(),
                problem,
            });
        }
    }

    /// `v` must lie in `[lo, hi]`; returns it as `f32` (clamped on failure).
    fn range(&mut self, key: &str, v: f64, lo: f64, hi: f64) -> f32 {
        if !(v.is_finite() && v >= lo && v <= hi) {
            self.fail(key, format!("{v} is out of range (expected {lo} to {hi})"));
            return lo as f32;
        }
        v as f32
    }

    /// Minutes in `[lo, hi]` as a duration (rounded to the millisecond).
    fn minutes(&mut self, key: &str, v: f64, lo: f64, hi: f64) -> Duration {
        let m = f64::from(self.range(key, v, lo, hi));
        Duration::from_millis((m * 60_000.0).round() as u64)
    }

    /// Exactly one of `duration_min` and `duration_s`, positive.
    fn span(&mut self, key: &str, min: Option<f64>, s: Option<f64>, max_min: f64) -> Duration {
        let d = match (min, s) {
            (Some(m), None) => self.minutes(&format!("{key}.duration_min"), m, 0.0, max_min),
            (None, Some(s)) => {
                let m = self.range(&format!("{key}.duration_s"), s, 0.0, max_min * 60.0);
                Duration::from_millis((f64::from(m) * 1000.0).round() as u64)
            }
            (Some(_), Some(_)) => {
                self.fail(key, "give duration_min or duration_s, not both".into());
                Duration::ZERO
            }
            (None, None) => {
                self.fail(key, "missing duration_min (or duration_s)".into());
                Duration::ZERO
            }
        };
        if d.is_zero() {
            self.fail(key, "the duration must be longer than zero".into());
        }
        d
    }
}

fn device_clock(dt: &toml::value::Datetime) -> Option<DeviceTime> {
    use toml::value::Offset;
    let (date, time, offset) = (dt.date?, dt.time?, dt.offset?);
    let days = crate::time::days_from_civil(
        i64::from(date.year),
        u32::from(date.month),
        u32::from(date.day),
    );
    let secs = days * 86_400
        + i64::from(time.hour) * 3600
        + i64::from(time.minute) * 60
        + i64::from(time.second);
    let offset_min = match offset {
        Offset::Z => 0,
        Offset::Custom { minutes } => i64::from(minutes),
    };
    Some(DeviceTime(secs - offset_min * 60))
}

impl RawScenario {
    fn validate(self, name: &str, c: &mut Checker<'_>) -> Scenario {
        const DAY_MIN: f64 = 24.0 * 60.0;
        let duration_min = f64::from(c.range(
            "session.duration_min",
            self.session.duration_min,
            1.0,
            DAY_MIN,
        ));
        let duration = c.minutes("session.duration_min", duration_min, 1.0, DAY_MIN);
        let baseline = c.minutes(
            "session.baseline_min",
            self.session.baseline_min,
            0.0,
            duration_min,
        );
        let device_clock = match &self.session.device_clock {
            None => DEFAULT_DEVICE_CLOCK,
            Some(dt) => device_clock(dt).unwrap_or_else(|| {
                c.fail(
                    "session.device_clock",
                    format!("`{dt}` needs a date, a time and an offset, e.g. 2026-11-23T09:00:00Z"),
                );
                DEFAULT_DEVICE_CLOCK
            }),
        };
        let p = &self.patient;
        let breathing = match (p.rr, p.etco2) {
            (None, None) => None,
            (None, Some(_)) => {
                c.fail(
                    "patient.etco2",
                    "needs patient.rr too (a capnograph gives both)".into(),
                );
                None
            }
            (Some(rr), etco2) => Some(Breathing {
                rr: c.range("patient.rr", rr, 4.0, 60.0),
                etco2: c.range("patient.etco2", etco2.unwrap_or(DEFAULT_ETCO2), 15.0, 80.0),
            }),
        };
        let resting = Resting {
            hr: c.range("patient.hr", p.hr, 20.0, 250.0),
            spo2: c.range("patient.spo2", p.spo2, 50.0, 100.0),
            sys: c.range("patient.sys", p.sys, 50.0, 260.0),
            dia: c.range("patient.dia", p.dia, 20.0, 200.0),
            breathing,
        };
        if resting.dia >= resting.sys {
            c.fail(
                "patient.dia",
                format!(
                    "{} must be below the systolic pressure {}",
                    resting.dia, resting.sys
                ),
            );
        }
        let noise = match &self.noise {
            None => Noise {
                hr: default_hr_noise() as f32,
                spo2: default_spo2_noise() as f32,
                bp: default_bp_noise() as f32,
                rr: default_rr_noise() as f32,
                etco2: default_etco2_noise() as f32,
            },
            Some(n) => Noise {
                hr: c.range("noise.hr", n.hr, 0.0, 20.0),
                spo2: c.range("noise.spo2", n.spo2, 0.0, 10.0),
                bp: c.range("noise.bp", n.bp, 0.0, 30.0),
                rr: c.range("noise.rr", n.rr, 0.0, 10.0),
                etco2: c.range("noise.etco2", n.etco2, 0.0, 10.0),
            },
        };
        let dose = self.dose.as_ref().map(|d| {
            let peak = c.range("dose.peak_after_min", d.peak_after_min, 1.0, 240.0);
            let settle = c.range("dose.settle_by_min", d.settle_by_min, 1.0, 600.0);
            if settle <= peak {
                c.fail(
                    "dose.settle_by_min",
                    format!("{settle} must be later than dose.peak_after_min ({peak})"),
                );
            }
            if d.at_min < self.session.baseline_min {
                c.fail(
                    "dose.at_min",
                    format!(
                        "{} is inside the baseline phase (session.baseline_min = {})",
                        d.at_min, self.session.baseline_min
                    ),
                );
            }
            Dose {
                at: c.minutes("dose.at_min", d.at_min, 0.0, duration_min),
                sys_rise: c.range("dose.sys_rise", d.sys_rise, -60.0, 120.0),
                dia_rise: c.range("dose.dia_rise", d.dia_rise, -40.0, 80.0),
                hr_rise: c.range("dose.hr_rise", d.hr_rise, -40.0, 80.0),
                rr_rise: c.range("dose.rr_rise", d.rr_rise, -20.0, 30.0),
                etco2_rise: c.range("dose.etco2_rise", d.etco2_rise, -20.0, 40.0),
                peak_after: c.minutes("dose.peak_after_min", f64::from(peak), 1.0, 240.0),
                settle_by: c.minutes("dose.settle_by_min", f64::from(settle), 1.0, 600.0),
            }
        });
        let nibp = self.nibp.as_ref().map(|n| NibpCycle {
            every: c.minutes("nibp.every_min", n.every_min, 1.0, 120.0),
            first_at: c.minutes("nibp.first_at_min", n.first_at_min, 0.0, duration_min),
        });
        let events = self
            .events
            .iter()
            .enumerate()
            .map(|(i, e)| validate_event(&format!("event[{i}]"), e, &resting, duration_min, c))
            .collect();
        Scenario {
            name: name.to_owned(),
            description: self.description.trim().to_owned(),
            duration,
            baseline,
            device_clock,
            resting,
            noise,
            dose,
            nibp,
            events,
        }
    }
}

/// The resting breathing a breathing event needs (a failure naming `key`
/// without it).
fn breathing(key: &str, resting: &Resting, c: &mut Checker<'_>) -> Breathing {
    resting.breathing.unwrap_or_else(|| {
        c.fail(
            key,
            "a breathing event needs a capnograph: set patient.rr (and patient.etco2)".into(),
        );
        Breathing {
            rr: 0.0,
            etco2: 0.0,
        }
    })
}

fn validate_event(
    key: &str,
    e: &RawEvent,
    resting: &Resting,
    duration_min: f64,
    c: &mut Checker<'_>,
) -> ScriptedEvent {
    let at =
        |c: &mut Checker<'_>, v: f64| c.minutes(&format!("{key}.at_min"), v, 0.0, duration_min);
    let k = |name: &str| format!("{key}.{name}");
    let (start, duration, kind) = match e {
        RawEvent::HypertensiveSurge(s) => (
            at(c, s.at_min),
            c.span(key, s.duration_min, s.duration_s, duration_min),
            EventKind::HypertensiveSurge {
                sys: c.range(&k("sys_mmhg"), s.sys_mmhg, 0.0, 120.0),
                dia: c.range(&k("dia_mmhg"), s.dia_mmhg, 0.0, 80.0),
                hr: c.range(&k("hr"), s.hr, -40.0, 80.0),
                ramp: c.minutes(&k("ramp_min"), s.ramp_min, 0.0, 60.0),
            },
        ),
        RawEvent::Desaturation(d) => (
            at(c, d.at_min),
            c.span(key, d.duration_min, d.duration_s, duration_min),
            EventKind::Desaturation {
                target: c.range(&k("target"), d.target, 40.0, f64::from(resting.spo2)),
                fall_per_min: c.range(&k("fall_per_min"), d.fall_per_min, 0.1, 60.0),
                recover_per_min: c.range(&k("recover_per_min"), d.recover_per_min, 0.1, 60.0),
            },
        ),
        RawEvent::Bradycardia(h) => (
            at(c, h.at_min),
            c.span(key, h.duration_min, h.duration_s, duration_min),
            EventKind::Bradycardia {
                hr: c.range(&k("hr"), h.hr, 20.0, f64::from(resting.hr)),
                ramp: c.minutes(&k("ramp_min"), h.ramp_min, 0.0, 30.0),
            },
        ),
        RawEvent::Tachycardia(h) => (
            at(c, h.at_min),
            c.span(key, h.duration_min, h.duration_s, duration_min),
            EventKind::Tachycardia {
                hr: c.range(&k("hr"), h.hr, f64::from(resting.hr), 250.0),
                ramp: c.minutes(&k("ramp_min"), h.ramp_min, 0.0, 30.0),
            },
        ),
        RawEvent::SensorOff(s) => (
            at(c, s.at_min),
            c.span(key, s.duration_min, s.duration_s, duration_min),
            EventKind::SensorOff,
        ),
        RawEvent::ProbeArtifact(s) => (
            at(c, s.at_min),
            c.span(key, s.duration_min, s.duration_s, duration_min),
            EventKind::ProbeArtifact,
        ),
        RawEvent::CableUnplugged(s) => (
            at(c, s.at_min),
            c.span(key, s.duration_min, s.duration_s, duration_min),
            EventKind::CableUnplugged,
        ),
        RawEvent::Garbage(g) => {
            let every = c.range(&k("every_s"), g.every_s, 0.05, 60.0);
            (
                at(c, g.at_min),
                c.span(key, g.duration_min, g.duration_s, duration_min),
                EventKind::Garbage {
                    every: Duration::from_millis((f64::from(every) * 1000.0).round() as u64),
                },
            )
        }
        RawEvent::Reboot(s) => (
            at(c, s.at_min),
            c.span(key, s.duration_min, s.duration_s, 30.0),
            EventKind::Reboot,
        ),
        RawEvent::StatNibp(s) => (at(c, s.at_min), Duration::ZERO, EventKind::StatNibp),
        RawEvent::RespiratoryDepression(d) => {
            let b = breathing(key, resting, c);
            (
                at(c, d.at_min),
                c.span(key, d.duration_min, d.duration_s, duration_min),
                EventKind::RespiratoryDepression {
                    rr: c.range(&k("rr"), d.rr, 2.0, f64::from(b.rr)),
                    etco2: c.range(&k("etco2"), d.etco2, f64::from(b.etco2), 100.0),
                    ramp: c.minutes(&k("ramp_min"), d.ramp_min, 0.0, 30.0),
                },
            )
        }
        RawEvent::Apnoea(s) => {
            breathing(key, resting, c);
            (
                at(c, s.at_min),
                c.span(key, s.duration_min, s.duration_s, duration_min),
                EventKind::Apnoea,
            )
        }
    };
    ScriptedEvent {
        start,
        duration,
        kind,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        description = "test"
        [session]
        duration_min = 60
        [patient]
        hr = 70
        spo2 = 97
        sys = 120
        dia = 80
    "#;

    /// A one-hour scenario of a steady patient (HR 70, SpO2 97, 120/80)
    /// with `extra` (events, sections) added.
    pub(crate) fn with(extra: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse(&format!("{MINIMAL}\n{extra}"), "test")
    }

    #[test]
    fn every_builtin_parses_and_fits_its_session() {
        let names: Vec<_> = Scenario::builtin_names().collect();
        assert_eq!(
            names,
            [
                "typical",
                "hypertensive",
                "desaturation",
                "sensor-problems",
                "comm-loss",
                "demo",
                "apnoea"
            ]
        );
        for name in names {
            let s = Scenario::builtin(name).unwrap().unwrap();
            assert_eq!(s.name, name);
            assert!(!s.description.is_empty());
            assert!(
                s.duration >= Duration::from_secs(90 * 60),
                "{name}: sessions last about 2 h"
            );
            for e in &s.events {
                assert!(
                    e.end() <= s.duration,
                    "{name}: {e:?} ends after the session"
                );
                // Interesting things happen early enough for a demo at speed 60.
                assert!(e.start <= Duration::from_secs(60 * 60), "{name}: {e:?}");
            }
        }
    }

    #[test]
    fn minimal_file_gets_defaults() {
        let s = with("").unwrap();
        assert_eq!(s.duration, Duration::from_secs(3600));
        assert_eq!(s.baseline, Duration::ZERO);
        assert_eq!(s.device_clock, DEFAULT_DEVICE_CLOCK);
        assert_eq!(s.noise.hr, 2.5);
        assert!(s.dose.is_none() && s.nibp.is_none() && s.events.is_empty());
    }

    #[test]
    fn device_clock_reads_offsets() {
        let s = Scenario::parse(
            &MINIMAL.replace(
                "duration_min = 60",
                "duration_min = 60\ndevice_clock = 2026-11-23T10:00:00+01:00",
            ),
            "t",
        )
        .unwrap();
        assert_eq!(s.device_clock, DEFAULT_DEVICE_CLOCK);
    }

    #[test]
    fn events_parse_with_their_keys_and_defaults() {
        let s = with(
            r#"
            [[event]]
            kind = "desaturation"
            at_min = 30
            duration_min = 2
            target = 84
            [[event]]
            kind = "reboot"
            at_min = 40
            duration_s = 30
            [[event]]
            kind = "stat-nibp"
            at_min = 12.5
            "#,
        )
        .unwrap();
        assert_eq!(
            s.events[0],
            ScriptedEvent {
                start: Duration::from_secs(1800),
                duration: Duration::from_secs(120),
                kind: EventKind::Desaturation {
                    target: 84.0,
                    fall_per_min: 6.0,
                    recover_per_min: 8.0
                },
            }
        );
        assert_eq!(s.events[1].duration, Duration::from_secs(30));
        assert_eq!(s.events[1].kind, EventKind::Reboot);
        assert_eq!(s.events[2].start, Duration::from_secs(750));
        assert_eq!(s.events_of("reboot").count(), 1);
    }

    #[test]
    fn breathing_is_opt_in_with_its_keys_and_defaults() {
        assert_eq!(with("").unwrap().resting.breathing, None);
        let s = Scenario::parse(&MINIMAL.replace("dia = 80", "dia = 80\nrr = 12"), "t").unwrap();
        assert_eq!(
            s.resting.breathing,
            Some(Breathing {
                rr: 12.0,
                etco2: 38.0
            })
        );
        assert_eq!((s.noise.rr, s.noise.etco2), (1.0, 1.0));
        let s = Scenario::parse(
            &MINIMAL.replace("dia = 80", "dia = 80\nrr = 12\netco2 = 41"),
            "t",
        )
        .unwrap();
        let text = format!(
            "{}\n[[event]]\nkind = \"apnoea\"\nat_min = 3\nduration_s = 30\n\
             [[event]]\nkind = \"respiratory-depression\"\nat_min = 10\nduration_min = 5\nrr = 6\netco2 = 55",
            MINIMAL.replace("dia = 80", "dia = 80\nrr = 12\netco2 = 41")
        );
        assert_eq!(s.resting.breathing.unwrap().etco2, 41.0);
        let s = Scenario::parse(&text, "t").unwrap();
        assert_eq!(s.events[0].kind, EventKind::Apnoea);
        assert_eq!(s.events[0].duration, Duration::from_secs(30));
        assert_eq!(
            s.events[1].kind,
            EventKind::RespiratoryDepression {
                rr: 6.0,
                etco2: 55.0,
                ramp: Duration::from_secs(120)
            }
        );
    }

    #[test]
    fn breathing_needs_a_capnograph_and_sane_targets() {
        let e = Scenario::parse(&MINIMAL.replace("dia = 80", "dia = 80\netco2 = 40"), "t")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("patient.etco2") && e.contains("patient.rr"),
            "{e}"
        );
        let e = with("[[event]]\nkind = \"apnoea\"\nat_min = 1\nduration_s = 30")
            .unwrap_err()
            .to_string();
        assert!(e.contains("event[0]") && e.contains("patient.rr"), "{e}");
        let breathing = MINIMAL.replace("dia = 80", "dia = 80\nrr = 12");
        let depression = |rr: f64, etco2: f64| {
            Scenario::parse(
                &format!(
                    "{breathing}\n[[event]]\nkind = \"respiratory-depression\"\nat_min = 1\n\
                     duration_min = 2\nrr = {rr}\netco2 = {etco2}"
                ),
                "t",
            )
        };
        assert!(depression(6.0, 55.0).is_ok());
        let e = depression(14.0, 55.0).unwrap_err().to_string();
        assert!(e.contains("event[0].rr"), "faster than resting: {e}");
        let e = depression(6.0, 30.0).unwrap_err().to_string();
        assert!(e.contains("event[0].etco2"), "CO2 falls: {e}");
        let e = Scenario::parse(&MINIMAL.replace("dia = 80", "dia = 80\nrr = 90"), "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("patient.rr"), "{e}");
    }

    #[test]
    fn unknown_keys_and_kinds_are_named() {
        let e = with("[patient2]\nhr = 1").unwrap_err().to_string();
        assert!(e.contains("patient2"), "{e}");
        let e = with("[noise]\nhrr = 1").unwrap_err().to_string();
        assert!(e.contains("hrr"), "{e}");
        let e = with("[[event]]\nkind = \"sensor-off\"\nat_min = 1\nduration_min = 1\ntarget = 80")
            .unwrap_err()
            .to_string();
        assert!(e.contains("target"), "{e}");
        let e = with("[[event]]\nkind = \"meteor\"\nat_min = 1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("meteor"), "{e}");
    }

    #[test]
    fn values_out_of_range_name_the_key() {
        let e =
            with("[[event]]\nkind = \"desaturation\"\nat_min = 1\nduration_min = 1\ntarget = 99")
                .unwrap_err()
                .to_string();
        assert!(e.contains("event[0].target"), "{e}");
        let e = with("[[event]]\nkind = \"sensor-off\"\nat_min = 1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("event[0]") && e.contains("duration_min"), "{e}");
        let e = Scenario::parse(&MINIMAL.replace("dia = 80", "dia = 130"), "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("patient.dia"), "{e}");
        let e = with(
            "[dose]\nat_min = 10\nsys_rise = 1\ndia_rise = 1\nhr_rise = 1\nsettle_by_min = 30",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("dose.settle_by_min"), "{e}");
    }
}
