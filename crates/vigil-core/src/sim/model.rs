//! The simulated patient: what a monitor would display at any moment of a
//! [`Scenario`], as a [`Snapshot`] every protocol encoder accepts.
//!
//! # Physiology
//!
//! - Resting values from the scenario, plus the ketamine response after the
//!   dose: a gamma-like rise `(x^2) e^(2(1-x))` (with `x` the time since the
//!   dose over the time to peak) that reaches the full rise at the peak
//!   (about 40 min), then an exponential decay down to a tenth of the peak
//!   at `settle_by` (about 90 min after the dose).
//! - Scripted events on top: hypertensive surges add pressure (smoothly
//!   ramped), desaturations pull SpO2 down at a clinically plausible slope
//!   and let it recover, brady- and tachycardia move the heart rate to a
//!   target; sensor-off and probe artifact change what the oximeter shows
//!   and how it flags it.
//! - Breathing, when the scenario gives the patient a capnograph
//!   (`patient.rr`): the resting rate and etCO2 plus the dose's share, a
//!   respiratory depression moves both to their targets (slower breathing,
//!   CO2 accumulating) and back, an apnoea shows RR 0 with etCO2 held at
//!   the last breath until breathing resumes. Reference values: the
//!   breathing section of the shared alarm reference (alarms.md: RR low 8,
//!   high 30 /min; etCO2 low 30, high 50 mmHg; apnoea after 20 s).
//!
//! # Noise, deterministically
//!
//! Every random number is drawn from a counter-based generator
//! ([`Rng::derive`]) keyed by the seed, a stream per signal, and the second
//! (or the NIBP measurement time) it belongs to. The model keeps no state:
//! [`Patient::snapshot`] is a pure function of the time, so a device asking
//! three times a second or once every five seconds sees the same patient,
//! and the same seed always gives the same values. Heart rate gets a slow
//! wander plus beat-to-beat jitter, SpO2 a slow wander (oximeters average
//! over several seconds), both quantised to whole numbers as monitors
//! display them; each NIBP reading gets its own error; RR and etCO2 a slow
//! wander each (a capnograph averages over breaths), quantised to whole
//! numbers too. Breathing has streams of its own, so a scenario with a
//! capnograph shows the same HR, SpO2 and NIBP as without. Every draw is cut at
//! 2.5 standard deviations so a scenario's margins to alarm limits hold.
//!
//! # NIBP
//!
//! Intermittent: a measurement completes at every AUTO cycle time and at
//! every STAT event; the snapshot carries the latest one with its own
//! `measured_at` (the device clock at completion), so decoders and the engine
//! can tell a repeat from a new reading.
//!
//! Pure. Depends on [`crate::sim::scenario`], [`crate::sim::rng`],
//! [`crate::protocol`] (the `Snapshot`) and [`crate::vitals`].

use core::time::Duration;

use super::rng::Rng;
use super::scenario::{EventKind, Scenario};
use crate::protocol::Snapshot;
use crate::vitals::{DeviceTime, Nibp, NibpMode, Sample, Validity};

/// Noise streams: one per signal, so signals do not share draws.
const STREAM_HR_WANDER: u64 = 1;
const STREAM_HR_BEAT: u64 = 2;
const STREAM_PR: u64 = 3;
const STREAM_SPO2: u64 = 4;
const STREAM_BP_SYS: u64 = 5;
const STREAM_BP_DIA: u64 = 6;
const STREAM_ARTIFACT: u64 = 7;
const STREAM_RR: u64 = 8;
const STREAM_ETCO2: u64 = 9;

/// Draws are cut at this many standard deviations.
const CUT: f64 = 2.5;
/// Seconds between the control points of the heart rate's slow wander.
const HR_WANDER_S: f64 = 6.0;
/// Seconds between the control points of SpO2's wander (oximeter averaging).
const SPO2_WANDER_S: f64 = 8.0;
/// Seconds between the control points of the breathing values' wander.
const BREATH_WANDER_S: f64 = 10.0;

/// Noise-free vitals at one moment (what the patient "really" has).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Truth {
    /// Heart rate, /min.
    pub hr: f32,
    /// SpO2, %.
    pub spo2: f32,
    /// Systolic pressure, mmHg.
    pub sys: f32,
    /// Diastolic pressure, mmHg.
    pub dia: f32,
    /// Respiration rate, /min (0 without a capnograph, and in an apnoea).
    pub rr: f32,
    /// End-tidal CO2, mmHg (0 without a capnograph).
    pub etco2: f32,
}

/// A simulated patient following a scenario. See the module documentation.
#[derive(Clone, Debug)]
pub struct Patient {
    scenario: Scenario,
    seed: u64,
}

/// `x^2 (3 - 2x)` on `[0, 1]`: a ramp with flat ends.
fn smoothstep(x: f64) -> f64 {
    let x = x.clamp(0.0, 1.0);
    x * x * (3.0 - 2.0 * x)
}

fn minutes(d: Duration) -> f64 {
    d.as_secs_f64() / 60.0
}

/// Weight of an event that ramps in over `ramp` from its start, holds, and
/// ramps out over `ramp` after its end.
fn envelope(t: f64, start: f64, end: f64, ramp: f64) -> f64 {
    if t < start || t >= end + ramp {
        0.0
    } else if ramp <= 0.0 {
        if t < end {
            1.0
        } else {
            0.0
        }
    } else if t < end {
        smoothstep((t - start) / ramp)
    } else {
        // Fall from wherever the ramp-in got to (short events).
        let top = smoothstep((end - start) / ramp);
        top * (1.0 - smoothstep((t - end) / ramp))
    }
}

impl Patient {
    /// A patient following `scenario`, with noise drawn from `seed`.
    pub fn new(scenario: &Scenario, seed: u64) -> Self {
        Patient {
            scenario: scenario.clone(),
            seed,
        }
    }

    /// The scenario followed.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// The ketamine response at `t`, as a fraction of its peak (0..=1).
    pub fn ketamine(&self, t: Duration) -> f64 {
        let Some(dose) = self.scenario.dose else {
            return 0.0;
        };
        let tau = minutes(t) - minutes(dose.at);
        if tau <= 0.0 {
            return 0.0;
        }
        let peak = minutes(dose.peak_after);
        if tau < peak {
            let x = tau / peak;
            x * x * (2.0 * (1.0 - x)).exp()
        } else {
            let settle = minutes(dose.settle_by) - peak;
            (-core::f64::consts::LN_10 * (tau - peak) / settle).exp()
        }
    }

    /// Noise-free vitals at `t`.
    pub fn truth(&self, t: Duration) -> Truth {
        let s = &self.scenario;
        let r = s.resting;
        let k = self.ketamine(t);
        let (mut hr, mut sys, mut dia) = (f64::from(r.hr), f64::from(r.sys), f64::from(r.dia));
        if let Some(d) = s.dose {
            hr += k * f64::from(d.hr_rise);
            sys += k * f64::from(d.sys_rise);
            dia += k * f64::from(d.dia_rise);
        }
        let (mut rr, mut etco2) = r
            .breathing
            .map_or((0.0, 0.0), |b| (f64::from(b.rr), f64::from(b.etco2)));
        if let (Some(d), Some(_)) = (s.dose, r.breathing) {
            rr += k * f64::from(d.rr_rise);
            etco2 += k * f64::from(d.etco2_rise);
        }
        let m = minutes(t);
        let mut drop = 0.0;
        let mut apnoea = false;
        for e in &s.events {
            let (start, end) = (minutes(e.start), minutes(e.end()));
            match e.kind {
                EventKind::HypertensiveSurge {
                    sys: es,
                    dia: ed,
                    hr: eh,
                    ramp,
                } => {
                    let w = envelope(m, start, end, minutes(ramp));
                    sys += w * f64::from(es);
                    dia += w * f64::from(ed);
                    hr += w * f64::from(eh);
                }
                EventKind::Bradycardia { hr: target, ramp }
                | EventKind::Tachycardia { hr: target, ramp } => {
                    let w = envelope(m, start, end, minutes(ramp));
                    hr += w * (f64::from(target) - hr);
                }
                EventKind::Desaturation {
                    target,
                    fall_per_min,
                    recover_per_min,
                } if m >= start => {
                    let depth = (f64::from(r.spo2) - f64::from(target)).max(0.0);
                    let fall = |tau: f64| (tau * f64::from(fall_per_min)).min(depth);
                    drop += if m < end {
                        fall(m - start)
                    } else {
                        (fall(end - start) - (m - end) * f64::from(recover_per_min)).max(0.0)
                    };
                }
                EventKind::RespiratoryDepression {
                    rr: to_rr,
                    etco2: to_etco2,
                    ramp,
                } => {
                    let w = envelope(m, start, end, minutes(ramp));
                    rr += w * (f64::from(to_rr) - rr);
                    etco2 += w * (f64::from(to_etco2) - etco2);
                }
                EventKind::Apnoea => apnoea |= e.contains(t),
                _ => {}
            }
        }
        Truth {
            hr: hr as f32,
            spo2: (f64::from(r.spo2) - drop) as f32,
            sys: sys as f32,
            dia: dia as f32,
            rr: if apnoea { 0.0 } else { rr.max(0.0) as f32 },
            etco2: etco2.max(0.0) as f32,
        }
    }

    /// A cut normal draw for `index` in `stream`.
    fn draw(&self, stream: u64, index: u64) -> f64 {
        Rng::derive(self.seed, stream, index)
            .normal()
            .clamp(-CUT, CUT)
    }

    /// Smooth noise with unit scale: draws every `cell_s` seconds, blended
    /// in between.
    fn wander(&self, stream: u64, t: f64, cell_s: f64) -> f64 {
        let x = t / cell_s;
        let k = x.floor();
        let (a, b) = (self.draw(stream, k as u64), self.draw(stream, k as u64 + 1));
        a + (b - a) * smoothstep(x - k)
    }

    /// The event of `key` under way at `t`, if any.
    fn active(&self, t: Duration, pred: fn(&EventKind) -> bool) -> bool {
        self.scenario
            .events
            .iter()
            .any(|e| pred(&e.kind) && e.contains(t))
    }

    /// The latest NIBP measurement completed at or before `t`.
    pub fn nibp(&self, t: Duration) -> Option<Nibp> {
        let s = &self.scenario;
        let auto = s.nibp.and_then(|c| {
            let since = t.checked_sub(c.first_at)?;
            let n = since.as_nanos() / c.every.as_nanos().max(1);
            Some(c.first_at + c.every * u32::try_from(n).ok()?)
        });
        let stat = s
            .events
            .iter()
            .filter(|e| e.kind == EventKind::StatNibp && e.start <= t)
            .map(|e| e.start)
            .max();
        let (at, mode) = match (auto, stat) {
            (None, None) => return None,
            (Some(a), Some(st)) if st >= a => (st, NibpMode::Stat),
            (Some(a), _) => (a, NibpMode::Auto),
            (None, Some(st)) => (st, NibpMode::Stat),
        };
        let truth = self.truth(at);
        let sd = f64::from(s.noise.bp);
        let secs = at.as_secs();
        let (n1, n2) = (
            self.draw(STREAM_BP_SYS, secs),
            self.draw(STREAM_BP_DIA, secs),
        );
        let sys = (f64::from(truth.sys) + sd * n1).round();
        // Diastolic error: 0.7 x the systolic spread, correlated with it.
        let nd = ((n1 + n2) * core::f64::consts::FRAC_1_SQRT_2).clamp(-CUT, CUT);
        let dia = (f64::from(truth.dia) + 0.7 * sd * nd).round();
        let mean = (dia + (sys - dia) / 3.0).round();
        Some(Nibp {
            systolic: Sample::valid(sys as f32),
            diastolic: Sample::valid(dia as f32),
            mean: Sample::valid(mean as f32),
            measured_at: Some(self.device_time(at)),
            mode,
        })
    }

    /// What the capnograph shows at `t`: RR and etCO2, both unavailable
    /// without one. Outside an apnoea the patient breathes: the rate shown
    /// is at least 1 /min. In an apnoea the rate is 0 and etCO2 stays what
    /// the last breath (the apnoea's start) gave.
    fn breathing(&self, t: Duration) -> (Sample, Sample) {
        let none = Sample::missing(Validity::Unavailable);
        if self.scenario.resting.breathing.is_none() {
            return (none, none);
        }
        let apnoea = self
            .scenario
            .events
            .iter()
            .find(|e| e.kind == EventKind::Apnoea && e.contains(t));
        if let Some(e) = apnoea {
            let last_breath = e.start.saturating_sub(Duration::from_secs(1));
            let (_, etco2) = self.breathing_shown(last_breath);
            return (Sample::valid(0.0), etco2);
        }
        self.breathing_shown(t)
    }

    /// RR and etCO2 with their noise at `t`, as if the patient breathed.
    fn breathing_shown(&self, t: Duration) -> (Sample, Sample) {
        let truth = self.truth(t);
        let noise = self.scenario.noise;
        let secs = t.as_secs_f64();
        let rr = f64::from(truth.rr.max(1.0))
            + f64::from(noise.rr) * self.wander(STREAM_RR, secs, BREATH_WANDER_S);
        let etco2 = f64::from(truth.etco2)
            + f64::from(noise.etco2) * self.wander(STREAM_ETCO2, secs, BREATH_WANDER_S);
        (
            Sample::valid(rr.round().max(1.0) as f32),
            Sample::valid(etco2.round().max(0.0) as f32),
        )
    }

    /// The monitor's clock at `t` (whole seconds).
    pub fn device_time(&self, t: Duration) -> DeviceTime {
        DeviceTime(self.scenario.device_clock.0 + t.as_secs() as i64)
    }

    /// What the monitor shows at `t` (time since the start of the session).
    pub fn snapshot(&self, t: Duration) -> Snapshot {
        let truth = self.truth(t);
        let noise = self.scenario.noise;
        let secs = t.as_secs_f64();
        let second = t.as_secs();

        let hr_sd = f64::from(noise.hr);
        let hr_exact = f64::from(truth.hr)
            + hr_sd
                * (0.8 * self.wander(STREAM_HR_WANDER, secs, HR_WANDER_S)
                    + 0.6 * self.draw(STREAM_HR_BEAT, second));
        let pr_exact = hr_exact + 0.4 * hr_sd * self.draw(STREAM_PR, second);
        let spo2_exact = f64::from(truth.spo2)
            + f64::from(noise.spo2) * self.wander(STREAM_SPO2, secs, SPO2_WANDER_S);

        let heart_rate = Sample::valid(hr_exact.round().max(0.0) as f32);
        let mut pulse_rate = Sample::valid(pr_exact.round().max(0.0) as f32);
        let mut spo2 = Sample::valid(spo2_exact.round().clamp(0.0, 100.0) as f32);

        if self.active(t, |k| *k == EventKind::ProbeArtifact) {
            let mut r = Rng::derive(self.seed, STREAM_ARTIFACT, second);
            spo2 = Sample::new((55 + r.below(46)) as f32, Validity::Artifact);
            pulse_rate = Sample::new((30 + r.below(191)) as f32, Validity::Artifact);
        }
        if self.active(t, |k| *k == EventKind::SensorOff) {
            spo2 = Sample::missing(Validity::SensorOff);
            pulse_rate = Sample::missing(Validity::SensorOff);
        }
        let (resp_rate, etco2) = self.breathing(t);
        Snapshot {
            heart_rate,
            pulse_rate,
            spo2,
            nibp: self.nibp(t),
            resp_rate,
            etco2,
            device_time: self.device_time(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn min(m: u64) -> Duration {
        Duration::from_secs(60 * m)
    }

    fn builtin(name: &str) -> Scenario {
        Scenario::builtin(name).unwrap().unwrap()
    }

    #[test]
    fn ketamine_response_peaks_near_40_min_and_settles_by_90() {
        let s = builtin("typical");
        let dose = s.dose.unwrap().at;
        let p = Patient::new(&s, 1);
        // The peak of the noise-free curve, searched minute by minute.
        let (peak_min, peak) = (0..180)
            .map(|m| (m, p.ketamine(dose + min(m))))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap();
        assert!((38..=42).contains(&peak_min), "peak at {peak_min} min");
        assert!((peak - 1.0).abs() < 1e-3);
        assert_eq!(p.ketamine(dose), 0.0);
        assert_eq!(p.ketamine(Duration::ZERO), 0.0);
        assert!(p.ketamine(dose + min(90)) <= 0.11);
        assert!(p.ketamine(dose + min(20)) > 0.5);
        // The vitals follow: systolic highest around the peak, back near
        // the resting value by 90 min.
        let r = s.resting;
        let d = s.dose.unwrap();
        let at_peak = p.truth(dose + min(40));
        assert!((at_peak.sys - (r.sys + d.sys_rise)).abs() < 0.1);
        assert!((at_peak.hr - (r.hr + d.hr_rise)).abs() < 0.1);
        let later = p.truth(dose + min(90));
        assert!(later.sys - r.sys < 0.15 * d.sys_rise, "{later:?}");
        // Measured NIBP follows too, noise and all: averaged over seeds, the
        // readings around the peak are well above the pre-dose ones, and by
        // 90-105 min after the dose they are back within a few mmHg.
        let mean_sys = |readings_at_min: &[u64]| {
            let mut sum = 0.0;
            for seed in 0..40 {
                let p = Patient::new(&s, seed);
                for &m in readings_at_min {
                    sum += p.nibp(min(m)).unwrap().systolic.value;
                }
            }
            sum / (40 * readings_at_min.len()) as f32
        };
        let base = mean_sys(&[1, 6]);
        let peak_bp = mean_sys(&[46, 51, 56]);
        let settled = mean_sys(&[101, 106, 111, 116]);
        assert!(peak_bp - base > 12.0, "{base} -> {peak_bp}");
        assert!(settled - base < 3.0, "{base} -> {settled}");
    }

    #[test]
    fn same_seed_same_patient_different_seed_different_noise() {
        let s = builtin("typical");
        let (a, b, c) = (
            Patient::new(&s, 7),
            Patient::new(&s, 7),
            Patient::new(&s, 8),
        );
        // Debug form: a vital not measured is NaN, never equal as a float.
        let series = |p: &Patient| -> Vec<String> {
            (0..600)
                .map(|i| format!("{:?}", p.snapshot(Duration::from_secs(i * 7))))
                .collect()
        };
        assert_eq!(series(&a), series(&b));
        assert_ne!(series(&a), series(&c));
        // Pure in t: asking in another order changes nothing.
        let t = Duration::from_millis(1_234_567);
        let first = format!("{:?}", a.snapshot(t));
        let _ = a.snapshot(Duration::from_secs(5000));
        assert_eq!(format!("{:?}", a.snapshot(t)), first);
    }

    #[test]
    fn breathing_is_opt_in_and_leaves_the_other_vitals_as_they_were() {
        // Without patient.rr: no capnograph.
        let s = builtin("typical");
        let snap = Patient::new(&s, 4).snapshot(min(3));
        assert!(!snap.has_breathing(), "{snap:?}");
        // The same scenario with a capnograph: HR, SpO2 and NIBP draw
        // from their own streams, unchanged second by second.
        let text = Scenario::builtin_text("typical")
            .unwrap()
            .replace("dia = 78", "dia = 78\nrr = 14\netco2 = 38");
        let with = Scenario::parse(&text, "typical+co2").unwrap();
        assert!(with.resting.breathing.is_some(), "the edit took");
        let (p, q) = (Patient::new(&s, 4), Patient::new(&with, 4));
        for i in 0..(30 * 60) {
            let t = Duration::from_secs(i * 3);
            let (a, b) = (p.snapshot(t), q.snapshot(t));
            assert_eq!(
                (a.heart_rate, a.pulse_rate, a.spo2, a.nibp),
                (b.heart_rate, b.pulse_rate, b.spo2, b.nibp),
                "at {t:?}"
            );
            let (rr, et) = (b.resp_rate.get().unwrap(), b.etco2.get().unwrap());
            assert_eq!((rr.fract(), et.fract()), (0.0, 0.0));
            assert!((14.0 - rr).abs() <= 2.5 * with.noise.rr + 0.5, "{rr}");
            assert!((38.0 - et).abs() <= 2.5 * with.noise.etco2 + 0.5, "{et}");
        }
    }

    #[test]
    fn apnoea_shows_no_breath_and_the_last_etco2_then_breathing_resumes() {
        let s = builtin("apnoea");
        let p = Patient::new(&s, 1);
        let e = *s.events_of("apnoea").next().unwrap();
        let before = p.snapshot(e.start - Duration::from_secs(1));
        assert!(before.resp_rate.get().unwrap() >= 8.0, "{before:?}");
        for i in 0..e.duration.as_secs() {
            let snap = p.snapshot(e.start + Duration::from_secs(i));
            assert_eq!(snap.resp_rate, Sample::valid(0.0), "no breath at +{i} s");
            assert_eq!(snap.etco2, before.etco2, "the last breath's etCO2");
            assert!(
                snap.spo2.get().unwrap() >= 94.0,
                "oxygen on: no desaturation"
            );
        }
        let after = p.snapshot(e.end());
        assert!(after.resp_rate.get().unwrap() >= 8.0, "{after:?}");
    }

    #[test]
    fn respiratory_depression_slows_breathing_and_raises_etco2_and_recovers() {
        let s = builtin("apnoea");
        let p = Patient::new(&s, 1);
        let e = *s.events_of("respiratory-depression").next().unwrap();
        let EventKind::RespiratoryDepression { rr, etco2, ramp } = e.kind else {
            unreachable!()
        };
        let b = s.resting.breathing.unwrap();
        let t = p.truth(e.start + ramp);
        assert!(
            (t.rr - rr).abs() < 1e-3 && (t.etco2 - etco2).abs() < 1e-3,
            "{t:?}"
        );
        let mid = p.truth(e.start + ramp / 2);
        assert!(mid.rr < b.rr && mid.rr > rr, "ramping: {mid:?}");
        let back = p.truth(e.end() + ramp);
        assert!((back.rr - b.rr).abs() < 1e-3 && (back.etco2 - b.etco2).abs() < 1e-3);
        // Shown, noise and all: beyond the default limits (RR < 8,
        // etCO2 > 50) all through the hold.
        for i in 0..(e.duration - ramp).as_secs() {
            let snap = p.snapshot(e.start + ramp + Duration::from_secs(i));
            assert!(snap.resp_rate.get().unwrap() < 8.0, "{snap:?}");
            assert!(snap.etco2.get().unwrap() > 50.0, "{snap:?}");
        }
    }

    #[test]
    fn noise_is_quantised_and_within_the_described_spread() {
        let s = builtin("typical");
        let p = Patient::new(&s, 3);
        for i in 0..(8 * 60) {
            let t = Duration::from_secs(i);
            let snap = p.snapshot(t);
            let truth = p.truth(t);
            let hr = snap.heart_rate.get().unwrap();
            let spo2 = snap.spo2.get().unwrap();
            assert_eq!(hr.fract(), 0.0);
            assert_eq!(spo2.fract(), 0.0);
            assert!(
                (hr - truth.hr).abs() <= 3.0 * s.noise.hr + 0.5,
                "{hr} {truth:?}"
            );
            assert!((spo2 - truth.spo2).abs() <= 2.5 * s.noise.spo2 + 0.5);
            let pr = snap.pulse_rate.get().unwrap();
            assert!((pr - hr).abs() <= 3.0, "{pr} vs {hr}");
        }
        // Noise is there at all: the heart rate is not constant.
        let distinct: std::collections::BTreeSet<u32> = (0..300)
            .map(|i| p.snapshot(Duration::from_secs(i)).heart_rate.value as u32)
            .collect();
        assert!(distinct.len() >= 4, "{distinct:?}");
    }

    #[test]
    fn nibp_is_intermittent_with_its_own_measurement_time() {
        let s = builtin("typical");
        let c = s.nibp.unwrap();
        let p = Patient::new(&s, 1);
        assert_eq!(p.nibp(c.first_at - Duration::from_secs(1)), None);
        let first = p.nibp(c.first_at).unwrap();
        assert_eq!(first.measured_at, Some(p.device_time(c.first_at)));
        assert_eq!(first.mode, NibpMode::Auto);
        // Held until the next cycle, then a new measurement.
        assert_eq!(
            p.nibp(c.first_at + c.every - Duration::from_secs(1)),
            Some(first)
        );
        let second = p.nibp(c.first_at + c.every).unwrap();
        assert_ne!(second.measured_at, first.measured_at);
        let n = second;
        let (sys, dia, mean) = (n.systolic.value, n.diastolic.value, n.mean.value);
        assert!(dia < mean && mean < sys, "{n:?}");
    }

    #[test]
    fn stat_measurement_and_sensor_events_show_in_the_snapshot() {
        let s = builtin("sensor-problems");
        let p = Patient::new(&s, 1);
        let stat = s.events_of("stat-nibp").next().expect("a STAT NIBP");
        let n = p.nibp(stat.start).unwrap();
        assert_eq!(n.mode, NibpMode::Stat);
        assert_eq!(n.measured_at, Some(p.device_time(stat.start)));

        let off = s.events_of("sensor-off").next().unwrap();
        let snap = p.snapshot(off.start + Duration::from_secs(5));
        assert_eq!(snap.spo2.validity, Validity::SensorOff);
        assert_eq!(snap.pulse_rate.validity, Validity::SensorOff);
        assert!(snap.heart_rate.validity.is_valid(), "ECG is another lead");

        let art = s.events_of("probe-artifact").next().unwrap();
        let snaps: Vec<_> = (0..20)
            .map(|i| p.snapshot(art.start + Duration::from_secs(i)))
            .collect();
        assert!(snaps.iter().all(|s| s.spo2.validity == Validity::Artifact));
        assert!(snaps
            .iter()
            .any(|s| s.pulse_rate.value > 150.0 || s.pulse_rate.value < 45.0));
        assert!(p.snapshot(art.end()).spo2.validity.is_valid());
    }

    #[test]
    fn heart_rate_events_move_to_their_target_and_back() {
        let text = r#"
            [[event]]
            kind = "bradycardia"
            at_min = 10
            duration_min = 5
            hr = 42
            [[event]]
            kind = "tachycardia"
            at_min = 30
            duration_min = 5
            hr = 135
            ramp_min = 2
        "#;
        let s = crate::sim::scenario::tests::with(text).unwrap();
        let p = Patient::new(&s, 1);
        let hr = |m: u64, sec: u64| p.truth(min(m) + Duration::from_secs(sec)).hr;
        assert_eq!(hr(9, 59), 70.0);
        assert!(hr(10, 30) < 70.0 && hr(10, 30) > 42.0, "ramping down");
        assert!((hr(12, 0) - 42.0).abs() < 1e-3);
        assert!((hr(16, 0) - 70.0).abs() < 1e-3, "back after the ramp");
        assert!((hr(33, 0) - 135.0).abs() < 1e-3);
        assert!(hr(36, 0) > 70.0 && hr(36, 0) < 135.0, "still ramping back");
        assert!((hr(37, 0) - 70.0).abs() < 1e-3);
        // The displayed rate follows, noise and all.
        let shown = p.snapshot(min(12)).heart_rate.get().unwrap();
        assert!((shown - 42.0).abs() <= 8.0, "{shown}");
    }

    #[test]
    fn desaturation_falls_at_its_slope_and_recovers() {
        let s = builtin("desaturation");
        let p = Patient::new(&s, 1);
        let e = s.events_of("desaturation").next().unwrap();
        let EventKind::Desaturation {
            target,
            fall_per_min,
            ..
        } = e.kind
        else {
            unreachable!()
        };
        let start = p.truth(e.start).spo2;
        let after_1min = p.truth(e.start + min(1)).spo2;
        assert!((start - after_1min - fall_per_min).abs() < 0.01);
        assert!((p.truth(e.end() - Duration::from_secs(1)).spo2 - target).abs() < 0.01);
        assert!((p.truth(e.end() + min(10)).spo2 - s.resting.spo2).abs() < 0.01);
    }
}
