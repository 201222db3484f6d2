//! The engine's validated configuration: limits, delays, trends and
//! priorities per vital, and the engine-wide settings.
//!
//! These types are built by `vigil`'s `config` module from the TOML file (which checks
//! every constraint and names the key at fault) and by tests directly. The
//! defaults here are the adult ketamine-session defaults shipped in
//! `config/vigil.toml`; a test keeps the two identical.
//!
//! Depends on [`crate::vitals`] and [`super::alarm`].

use core::time::Duration;

use super::alarm::Priority;
use crate::vitals::{Sample, Validity, Vital};

/// How close to a limit a value may be and still count as AT the limit.
///
/// Every rule is strict: a low limit alarms on values BELOW it, a high limit
/// on values ABOVE it, a trend or rate rule on a change of MORE THAN its
/// amount; a value at the limit does not alarm. Values are `f32` and some
/// thresholds are computed (a baseline plus a percentage, a converted unit),
/// so a value that is at the limit on paper can land a few millionths beside
/// it; a margin far below any monitor's resolution keeps it "at" the limit,
/// as the configuration's wording promises.
pub const AT_LIMIT: f32 = 1e-3;

/// `value` is above `limit` (by more than [`AT_LIMIT`]).
#[inline]
pub fn above(value: f32, limit: f32) -> bool {
    value - limit > AT_LIMIT
}

/// `value` is below `limit` (by more than [`AT_LIMIT`]).
#[inline]
pub fn below(value: f32, limit: f32) -> bool {
    limit - value > AT_LIMIT
}

/// One limit with the priority of the alarm it raises.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limit {
    /// The limit, in the vital's canonical unit.
    pub value: f32,
    /// Priority of the alarm.
    pub priority: Priority,
    /// A condition delay for this limit only, overriding the vital's.
    pub delay: Option<Duration>,
}

impl Limit {
    /// A limit with no delay override.
    pub const fn new(value: f32, priority: Priority) -> Self {
        Limit {
            value,
            priority,
            delay: None,
        }
    }
}

/// Trend relative to the session's pre-dose baseline.
///
/// The threshold is `baseline + min(percent of baseline, absolute)` over the
/// parts that are set, so the alarm fires when EITHER is exceeded (clinic
/// wording: "above baseline + 20% or + 40 mmHg"); likewise for falls.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct BaselineRule {
    /// Rise in percent of the baseline.
    pub rise_percent: Option<f32>,
    /// Rise in the vital's unit.
    pub rise_abs: Option<f32>,
    /// Fall in percent of the baseline.
    pub fall_percent: Option<f32>,
    /// Fall in the vital's unit.
    pub fall_abs: Option<f32>,
    /// Priority of the trend alarms.
    pub priority: Option<Priority>,
}

impl BaselineRule {
    /// The value above which the rise alarm holds, for a baseline.
    pub fn rise_threshold(&self, baseline: f32) -> Option<f32> {
        let pct = self.rise_percent.map(|p| baseline * p / 100.0);
        min_opt(pct, self.rise_abs).map(|d| baseline + d)
    }

    /// The value below which the fall alarm holds, for a baseline.
    pub fn fall_threshold(&self, baseline: f32) -> Option<f32> {
        let pct = self.fall_percent.map(|p| baseline * p / 100.0);
        min_opt(pct, self.fall_abs).map(|d| baseline - d)
    }

    /// Whether any part is configured.
    pub fn is_enabled(&self) -> bool {
        self.rise_percent.is_some()
            || self.rise_abs.is_some()
            || self.fall_percent.is_some()
            || self.fall_abs.is_some()
    }
}

fn min_opt(a: Option<f32>, b: Option<f32>) -> Option<f32> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// Rate of change over a sliding window (continuous vitals only).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateRule {
    /// The window the change is measured over.
    pub window: Duration,
    /// Alarm when the value rose by more than this within the window.
    pub rise: Option<f32>,
    /// Alarm when the value fell by more than this within the window.
    pub fall: Option<f32>,
    /// Priority of the rate alarms.
    pub priority: Priority,
}

/// What a value the device flags questionable (low signal quality, pulse
/// search, low perfusion) does.
///
/// A desaturation read through a poor signal is still possibly a
/// desaturation: by default such a value drives the physiological alarms
/// like a valid one, the alarm event carries validity `questionable` so a
/// display can show the doubt, and the technical `<vital>.questionable`
/// condition says why the value is in doubt. It never becomes a baseline
/// and never counts towards discharge readiness.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum QuestionablePolicy {
    /// Questionable values drive physiological alarms, marked questionable.
    #[default]
    Alarm,
    /// Questionable values are technical only (`<vital>.invalid`), as for
    /// any other value the device does not stand behind.
    Off,
}

impl QuestionablePolicy {
    /// Stable short name (the configuration's spelling).
    pub const fn key(self) -> &'static str {
        match self {
            QuestionablePolicy::Alarm => "alarm",
            QuestionablePolicy::Off => "off",
        }
    }
}

/// Everything configurable for one vital.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VitalRules {
    /// Whether the vital is watched at all.
    pub enabled: bool,
    /// Low limit (condition delay applies to continuous vitals).
    pub low: Option<Limit>,
    /// High limit.
    pub high: Option<Limit>,
    /// Critical low limit: no delay.
    pub critical_low: Option<Limit>,
    /// Critical high limit: no delay.
    pub critical_high: Option<Limit>,
    /// Alarm condition delay for continuous vitals.
    pub delay: Duration,
    /// An active limit alarm ends only once the value is this far back inside.
    pub hysteresis: f32,
    /// Physiological alarms persist after the condition ends until acknowledged.
    pub latching: bool,
    /// Data stale after this long without a reading (continuous vitals).
    pub stale_after: Duration,
    /// Values outside `[plausible_min, plausible_max]` are artifacts.
    pub plausible_min: f32,
    /// See `plausible_min`.
    pub plausible_max: f32,
    /// Baseline trend rule.
    pub baseline: BaselineRule,
    /// Rate-of-change rule.
    pub rate: Option<RateRule>,
    /// What a questionable value does.
    pub questionable: QuestionablePolicy,
    /// Whether this vital's baseline takes part in discharge readiness.
    pub discharge: bool,
}

impl VitalRules {
    /// A vital with no limits and no trends, only the plausibility range.
    pub const fn plain(plausible_min: f32, plausible_max: f32) -> Self {
        VitalRules {
            enabled: true,
            low: None,
            high: None,
            critical_low: None,
            critical_high: None,
            delay: Duration::from_secs(10),
            hysteresis: 0.0,
            latching: false,
            stale_after: Duration::from_secs(10),
            plausible_min,
            plausible_max,
            baseline: BaselineRule {
                rise_percent: None,
                rise_abs: None,
                fall_percent: None,
                fall_abs: None,
                priority: None,
            },
            rate: None,
            questionable: QuestionablePolicy::Alarm,
            discharge: true,
        }
    }

    /// The value of a sample that may drive this vital's physiological
    /// alarms: a valid one, or a questionable number when the policy says
    /// so. (Plausibility is the engine's check before this.)
    pub fn alarm_value(&self, s: Sample) -> Option<f32> {
        match s.validity {
            Validity::Valid => Some(s.value),
            Validity::Questionable
                if self.questionable == QuestionablePolicy::Alarm && s.value.is_finite() =>
            {
                Some(s.value)
            }
            _ => None,
        }
    }
}

/// Priorities of the technical alarms.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TechnicalPriorities {
    /// No reading of a continuous vital within its timeout.
    pub stale: Priority,
    /// Sensor off or disconnected from the patient.
    pub sensor_off: Priority,
    /// Invalid, unavailable, out-of-range or questionable values.
    pub invalid: Priority,
    /// Artifacts and implausible values.
    pub artifact: Priority,
    /// NIBP cycle overdue.
    pub cycle_overdue: Priority,
    /// A source disconnected or silent.
    pub disconnected: Priority,
    /// A source's frames fail to decode too often.
    pub link_errors: Priority,
    /// A session-based monitor is not associated with vigil.
    pub not_associated: Priority,
    /// A source sends bytes or frames but no valid reading.
    pub no_valid_data: Priority,
    /// A monitor restarted or was taken over while associated.
    pub monitor_restarted: Priority,
    /// A device's battery is low.
    pub low_battery: Priority,
    /// A sink dropped events.
    pub queue_overflow: Priority,
    /// The MQTT broker is unreachable.
    pub broker_unreachable: Priority,
    /// The session recording cannot be written.
    pub storage_failure: Priority,
    /// The MQTT outbox journal cannot be written.
    pub journal_failure: Priority,
    /// The outbox journal was found damaged.
    pub journal_corrupt: Priority,
    /// The broker link is in a reconnect loop.
    pub broker_link_unstable: Priority,
    /// A source floods vigil; input is dropped.
    pub input_overload: Priority,
    /// The live HL7 sink's messages do not reach the receiver.
    pub hl7_undelivered: Priority,
    /// The live HL7 sink's backlog file cannot be written.
    pub hl7_backlog_failure: Priority,
    /// The MQTT broker refuses vigil's alarm or session messages.
    pub broker_refused: Priority,
}

/// Which side of the NIBP `low`/`high` tier needs a second measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NibpConfirm {
    /// Only the high side: hypertension alarms on the second consecutive
    /// reading, hypotension on the first (clinic protocols confirm "> 180/110
    /// on two readings"; a low pressure must not wait a whole cycle).
    High,
    /// Both sides need two consecutive readings.
    Both,
    /// Every measurement is a decision of its own.
    Off,
}

impl NibpConfirm {
    /// Stable short name (the configuration's spelling).
    pub const fn key(self) -> &'static str {
        match self {
            NibpConfirm::High => "high",
            NibpConfirm::Both => "both",
            NibpConfirm::Off => "off",
        }
    }

    /// Whether the given side (`low == true`: the low limit) needs confirmation.
    pub const fn applies(self, low: bool) -> bool {
        match self {
            NibpConfirm::High => !low,
            NibpConfirm::Both => true,
            NibpConfirm::Off => false,
        }
    }
}

/// NIBP-wide rules.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NibpRules {
    /// Which side of the `low`/`high` tier of an NIBP component needs
    /// confirmation by a second measurement.
    pub confirm: NibpConfirm,
    /// A confirmed side alarms only when two consecutive measurements at
    /// most this far apart both cross the limit. `None` disables
    /// confirmation whatever `confirm` says. The critical tier always
    /// alarms on one measurement.
    pub confirm_window: Option<Duration>,
    /// Expected interval between NIBP measurements.
    pub cycle: Duration,
    /// Slack on top of `cycle` before "cycle overdue".
    pub grace: Duration,
    /// Whether the cycle-overdue alarm is raised at all.
    pub watch_cycle: bool,
    /// Systolic and diastolic above their `high` limits in one measurement
    /// are one alarm condition, `nibp.high` (either component over its
    /// limit), carrying both values and limits, instead of `nibp_sys.high`
    /// and `nibp_dia.high`. Its priority is the higher of the two limits'.
    pub combined_high: bool,
}

/// Link error rate rule for sources.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkRules {
    /// The window the error rate is computed over.
    pub window: Duration,
    /// Alarm when more than this fraction of frames is dropped (0..1).
    pub max_error_rate: f32,
    /// ... and at least this many frames were dropped in the window.
    pub min_errors: u32,
}

/// Discharge readiness.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DischargeRules {
    /// Every vital with a baseline must be within this percentage of it.
    pub within_percent: f32,
    /// ... continuously for this long.
    pub hold: Duration,
}

/// How much of the baseline phase a baseline needs. A dose without it is
/// accepted, with an advisory `baseline incomplete` session event naming
/// the vitals whose baselines are missing; those vitals get no baseline
/// (no trend alarms, no part in discharge readiness) rather than one from
/// too little data (a "median" of one NIBP reading).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BaselineMinimum {
    /// NIBP: at least this many valid measurements per component.
    pub nibp_readings: u32,
    /// Continuous vitals (HR, PR, SpO2): valid readings for at least this
    /// long, from the first valid reading of the baseline phase to the dose.
    pub continuous: Duration,
}

/// The apnoea (no breath) rule on the respiration rate.
///
/// A "no breath" reading is a respiration rate that may drive alarms and is
/// BELOW [`ApnoeaRule::NO_BREATH_BELOW`] (a monitor sends 0), or an `rr`
/// reading with validity `unavailable`: the capnograph or respiration
/// module measures but finds no rate to report. The alarm starts when no
/// breath has been seen for `delay` (from the first no-breath reading,
/// every reading since being one); a rate of 1 /min or more ends it. A
/// reading the device flags (sensor off, invalid, artifact) neither
/// confirms nor clears it: a pending apnoea starts over, an active one
/// stays. A module that is off or a sensor that is off is the technical
/// `rr.sensor_off`, never apnoea. No-breath readings are not judged
/// against the `rr` limits, baseline or rate rules (one alarm per
/// condition: an RR of 0 is apnoea, not also "RR low").
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ApnoeaRule {
    /// Whether the apnoea alarm is raised at all.
    pub enabled: bool,
    /// How long no breath must last before the alarm starts.
    pub delay: Duration,
    /// Priority of the alarm.
    pub priority: Priority,
}

impl ApnoeaRule {
    /// A respiration rate below this (per minute) is no breath.
    pub const NO_BREATH_BELOW: f32 = 1.0;
}

/// The whole engine configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineConfig {
    /// Per-vital rules, indexed by [`Vital::index`].
    pub vitals: [VitalRules; Vital::COUNT],
    /// NIBP-wide rules.
    pub nibp: NibpRules,
    /// Technical alarm priorities.
    pub technical: TechnicalPriorities,
    /// Condition delay of technical data alarms (sensor off, invalid, artifact)
    /// on continuous vitals.
    pub technical_delay: Duration,
    /// An acknowledged alarm still present after this long alerts again.
    pub realert_after: Duration,
    /// An alarm not acknowledged within this long is raised one priority step
    /// (repeatedly, up to high). `None` disables escalation.
    pub escalate_after: Option<Duration>,
    /// Longest audio pause a command may ask for.
    pub max_audio_pause: Duration,
    /// Source link error rule.
    pub link: LinkRules,
    /// Discharge readiness rule.
    pub discharge: DischargeRules,
    /// What a baseline needs.
    pub baseline_min: BaselineMinimum,
    /// The apnoea rule on the respiration rate.
    pub apnoea: ApnoeaRule,
    /// Names of the configured sources, indexed by `SourceId`.
    pub source_names: Vec<String>,
}

impl EngineConfig {
    /// The rules of one vital.
    pub fn rules(&self, vital: Vital) -> &VitalRules {
        &self.vitals[vital.index()]
    }
}

impl Default for EngineConfig {
    /// Adult defaults for ketamine sessions; `config/vigil.toml` documents the
    /// source of each value.
    fn default() -> Self {
        use Priority::*;
        let secs = Duration::from_secs;
        let mins = |m: u64| Duration::from_secs(60 * m);
        let hr = VitalRules {
            low: Some(Limit::new(50.0, Medium)),
            high: Some(Limit::new(120.0, Medium)),
            critical_low: Some(Limit::new(40.0, High)),
            critical_high: Some(Limit::new(150.0, High)),
            delay: secs(10),
            hysteresis: 3.0,
            stale_after: secs(10),
            baseline: BaselineRule {
                rise_percent: Some(30.0),
                priority: Some(Low),
                ..BaselineRule::default()
            },
            rate: Some(RateRule {
                window: mins(5),
                rise: Some(30.0),
                fall: None,
                priority: Low,
            }),
            ..VitalRules::plain(20.0, 300.0)
        };
        let pr = hr;
        let spo2 = VitalRules {
            low: Some(Limit::new(90.0, Medium)),
            critical_low: Some(Limit::new(85.0, High)),
            delay: secs(15),
            hysteresis: 1.0,
            rate: Some(RateRule {
                window: secs(60),
                rise: None,
                fall: Some(4.0),
                priority: Medium,
            }),
            ..VitalRules::plain(30.0, 100.0)
        };
        let sys = VitalRules {
            low: Some(Limit::new(90.0, Medium)),
            high: Some(Limit::new(180.0, High)),
            critical_high: Some(Limit::new(200.0, High)),
            delay: Duration::ZERO,
            hysteresis: 5.0,
            baseline: BaselineRule {
                rise_percent: Some(20.0),
                rise_abs: Some(40.0),
                priority: Some(Low),
                ..BaselineRule::default()
            },
            ..VitalRules::plain(40.0, 300.0)
        };
        let dia = VitalRules {
            low: Some(Limit::new(50.0, Medium)),
            high: Some(Limit::new(110.0, High)),
            critical_high: Some(Limit::new(120.0, High)),
            delay: Duration::ZERO,
            hysteresis: 5.0,
            baseline: BaselineRule {
                rise_abs: Some(25.0),
                priority: Some(Low),
                ..BaselineRule::default()
            },
            ..VitalRules::plain(20.0, 250.0)
        };
        let mean = VitalRules {
            low: Some(Limit::new(60.0, Medium)),
            delay: Duration::ZERO,
            hysteresis: 5.0,
            ..VitalRules::plain(30.0, 270.0)
        };
        // Breathing: the monitors' adult defaults (alarms.md, "Breathing").
        // Breathing numbers swing more than 15 % at rest, so they are no
        // discharge criterion by default.
        let rr = VitalRules {
            low: Some(Limit::new(8.0, Medium)),
            high: Some(Limit::new(30.0, Medium)),
            delay: secs(10),
            hysteresis: 2.0,
            stale_after: secs(10),
            discharge: false,
            ..VitalRules::plain(0.0, 150.0)
        };
        let etco2 = VitalRules {
            low: Some(Limit::new(30.0, Medium)),
            high: Some(Limit::new(50.0, Medium)),
            delay: secs(10),
            hysteresis: 2.0,
            stale_after: secs(10),
            discharge: false,
            ..VitalRules::plain(0.0, 150.0)
        };
        EngineConfig {
            vitals: [hr, pr, spo2, sys, dia, mean, rr, etco2],
            nibp: NibpRules {
                confirm: NibpConfirm::High,
                confirm_window: Some(mins(15)),
                cycle: mins(15),
                grace: mins(3),
                watch_cycle: true,
                combined_high: true,
            },
            technical: TechnicalPriorities {
                stale: Medium,
                sensor_off: Medium,
                invalid: Low,
                artifact: Low,
                cycle_overdue: Medium,
                disconnected: High,
                link_errors: Medium,
                not_associated: High,
                no_valid_data: High,
                monitor_restarted: Low,
                low_battery: Low,
                queue_overflow: High,
                broker_unreachable: High,
                storage_failure: Medium,
                journal_failure: Medium,
                journal_corrupt: High,
                broker_link_unstable: High,
                input_overload: Medium,
                hl7_undelivered: Low,
                hl7_backlog_failure: Low,
                broker_refused: High,
            },
            technical_delay: secs(5),
            realert_after: mins(2),
            escalate_after: Some(mins(2)),
            max_audio_pause: mins(2),
            link: LinkRules {
                window: secs(30),
                max_error_rate: 0.2,
                min_errors: 5,
            },
            discharge: DischargeRules {
                within_percent: 15.0,
                hold: mins(15),
            },
            baseline_min: BaselineMinimum {
                nibp_readings: 2,
                continuous: secs(60),
            },
            apnoea: ApnoeaRule {
                enabled: true,
                delay: secs(20),
                priority: High,
            },
            source_names: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_threshold_takes_the_nearer_of_percent_and_absolute() {
        let rule = BaselineRule {
            rise_percent: Some(20.0),
            rise_abs: Some(40.0),
            ..BaselineRule::default()
        };
        // 20% of 120 is 24 < 40: the percentage decides.
        assert_eq!(rule.rise_threshold(120.0), Some(144.0));
        // 20% of 250 is 50 > 40: the absolute rise decides.
        assert_eq!(rule.rise_threshold(250.0), Some(290.0));
        assert_eq!(rule.fall_threshold(120.0), None);
        assert!(rule.is_enabled());
        assert!(!BaselineRule::default().is_enabled());
    }
}
