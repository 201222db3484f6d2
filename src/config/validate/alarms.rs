//! `[alarms]` and `[session]`: the engine's rules. Per vital: the limits
//! with their priorities and the cross-field checks between them (on the
//! values as written), rate rules, questionable-value policy; apnoea, NIBP,
//! technical priorities, link errors; baseline and discharge rules.

use core::time::Duration;
use std::collections::BTreeMap;

use super::super::raw::{self, fields_of, Node, OrOff, Val};
use super::super::{format_duration, technical_slots};
use super::{join, shown, unknown_message, Check, HOUR, MIN, SEC};
use crate::engine::rules::{
    ApnoeaRule, BaselineRule, EngineConfig, Limit, LinkRules, NibpConfirm, NibpRules,
    QuestionablePolicy, RateRule, TechnicalPriorities, VitalRules,
};
use crate::engine::Priority;
use crate::vitals::Vital;

impl Check {
    pub(super) fn alarms(&mut self, t: &raw::RawAlarms, e: &mut EngineConfig) {
        let p = "alarms";
        if let Some(d) = self.dur_in(p, "realert_after", &t.realert_after, (SEC, HOUR), "") {
            e.realert_after = d;
        }
        if let Some(OrOff(d)) = self.val(p, "escalate_after", &t.escalate_after) {
            match d {
                None => e.escalate_after = None,
                Some(d) => {
                    let ok = (SEC..=HOUR).contains(&d);
                    if self.bound(
                        "alarms.escalate_after",
                        ok,
                        format_duration(d),
                        "between 1s and 1h (or \"off\")",
                    ) {
                        e.escalate_after = Some(d);
                    }
                }
            }
        }
        let iec = " (IEC 60601-1-8 audio paused is bounded)";
        if let Some(d) = self.dur_in(
            p,
            "max_audio_pause",
            &t.max_audio_pause,
            (SEC, 2 * MIN),
            iec,
        ) {
            e.max_audio_pause = d;
        }
        if let Some(d) = self.dur_in(
            p,
            "technical_delay",
            &t.technical_delay,
            (Duration::ZERO, MIN),
            "",
        ) {
            e.technical_delay = d;
        }
        let vitals = [
            (Vital::HeartRate, &t.hr),
            (Vital::PulseRate, &t.pr),
            (Vital::SpO2, &t.spo2),
            (Vital::NibpSystolic, &t.nibp_sys),
            (Vital::NibpDiastolic, &t.nibp_dia),
            (Vital::NibpMean, &t.nibp_mean),
            (Vital::RespRate, &t.rr),
            (Vital::EtCo2, &t.etco2),
        ];
        for (vital, raw) in vitals {
            debug_assert_eq!(
                fields_of::<raw::RawAlarms>()[4 + vital.index()],
                vital.key()
            );
            if let Some(vt) = self.vital_table(vital, raw) {
                let path = format!("alarms.{}", vital.key());
                e.vitals[vital.index()] = self.vital(&path, vital, vt, e.vitals[vital.index()]);
            }
        }
        if let Some(at) = self.table(p, "apnoea", &t.apnoea) {
            self.apnoea(at, &mut e.apnoea);
        }
        if let Some(nt) = self.table(p, "nibp", &t.nibp) {
            self.nibp(nt, &mut e.nibp);
        }
        if let Some(tt) = self.table(p, "technical", &t.technical) {
            self.technical(tt, &mut e.technical);
        }
        if let Some(lt) = self.table(p, "link", &t.link) {
            self.link(lt, &mut e.link);
        }
    }

    /// A vital's table; NIBP components have no `delay`, `stale_after` or `rate`.
    fn vital_table<'n>(
        &mut self,
        vital: Vital,
        n: &'n Option<Node<raw::RawVital>>,
    ) -> Option<&'n raw::RawVital> {
        let path = format!("alarms.{}", vital.key());
        let mut fields: Vec<&str> = fields_of::<raw::RawVital>().to_vec();
        if !vital.is_continuous() {
            fields.retain(|f| !raw::CONTINUOUS_ONLY.contains(f));
        }
        let t = match n.as_ref()? {
            Node::Table(t) => t,
            other => {
                let found = other.not_a_table().unwrap_or_default();
                self.err(&path, format!("{path}: expected a table, {found}"));
                return None;
            }
        };
        if !vital.is_continuous() {
            for (k, present) in [
                ("delay", t.delay.is_some()),
                ("stale_after", t.stale_after.is_some()),
                ("rate", t.rate.is_some()),
            ] {
                if present {
                    self.unknown.push(format!("{path}.{k}"));
                }
            }
        }
        self.unknown_under(&path, &fields);
        Some(t)
    }

    /// One limit: the effective limit, and the value the cross-field checks
    /// compare (what was written, the default when absent).
    fn limit(
        &mut self,
        path: &str,
        key: &str,
        n: &Option<Node<raw::RawLimit>>,
        default: Option<Limit>,
    ) -> LimitAsWritten {
        let here = join(path, key);
        match n {
            None => LimitAsWritten {
                limit: default,
                value: default.map(|l| l.value),
                written: false,
            },
            Some(Node::Off) => LimitAsWritten {
                limit: None,
                value: None,
                written: true,
            },
            Some(other @ (Node::Bad(_) | Node::Array(_))) => {
                let found = other.not_a_table().unwrap_or_default();
                self.err(
                    &here,
                    format!("{here}: expected {{ limit = ..., priority = \"...\" }} or \"off\", {found}"),
                );
                LimitAsWritten {
                    limit: default,
                    value: None,
                    written: true,
                }
            }
            Some(Node::Table(t)) => {
                self.unknown_under(&here, fields_of::<raw::RawLimit>());
                self.missing(&here, "limit", t.limit.is_some());
                self.missing(&here, "priority", t.priority.is_some());
                let value = self.val(&here, "limit", &t.limit).map(|v| v as f32);
                let priority = self.val(&here, "priority", &t.priority);
                let delay = self.dur_in(&here, "delay", &t.delay, (Duration::ZERO, 10 * MIN), "");
                let limit = match (value, priority) {
                    (Some(value), Some(priority)) => Some(Limit {
                        value,
                        priority,
                        delay,
                    }),
                    _ => default,
                };
                LimitAsWritten {
                    limit,
                    value,
                    written: true,
                }
            }
        }
    }

    fn vital(&mut self, path: &str, vital: Vital, t: &raw::RawVital, d: VitalRules) -> VitalRules {
        let mut r = d;
        if let Some(b) = self.val(path, "enabled", &t.enabled) {
            r.enabled = b;
        }
        if let Some(l) = self.val(path, "latching", &t.latching) {
            r.latching = l;
        }
        if let Some(b) = self.val(path, "discharge", &t.discharge) {
            r.discharge = b;
        }
        if let Some(q) = self.val(path, "questionable", &t.questionable) {
            match [QuestionablePolicy::Alarm, QuestionablePolicy::Off]
                .into_iter()
                .find(|k| k.key() == q)
            {
                Some(k) => r.questionable = k,
                None => {
                    let key = format!("{path}.questionable");
                    self.err(
                        &key,
                        format!("{key}: expected \"alarm\" or \"off\", found {q:?}"),
                    );
                }
            }
        }
        let limits = [
            (
                "critical_low",
                self.limit(path, "critical_low", &t.critical_low, d.critical_low),
            ),
            ("low", self.limit(path, "low", &t.low, d.low)),
            ("high", self.limit(path, "high", &t.high, d.high)),
            (
                "critical_high",
                self.limit(path, "critical_high", &t.critical_high, d.critical_high),
            ),
        ];
        r.critical_low = limits[0].1.limit;
        r.low = limits[1].1.limit;
        r.high = limits[2].1.limit;
        r.critical_high = limits[3].1.limit;
        let why = ": alarms would come too late";
        if let Some(dl) = self.dur_in(path, "delay", &t.delay, (Duration::ZERO, 2 * MIN), why) {
            r.delay = dl;
        }
        if let Some(s) = self.dur_in(path, "stale_after", &t.stale_after, (SEC, 10 * MIN), "") {
            r.stale_after = s;
        }
        if let Some(h) = self.num_in(path, "hysteresis", &t.hysteresis, (0.0, 50.0)) {
            r.hysteresis = h;
        }
        let (lo, hi) = reading_range(vital);
        if let Some([min, max]) = self.val(path, "plausible", &t.plausible) {
            let key = format!("{path}.plausible");
            if min >= max {
                self.err(
                    &key,
                    format!("{key}: min ({min}) must be below max ({max})"),
                );
            } else if self.bound(
                &key,
                min >= f64::from(lo) && max <= f64::from(hi),
                format!("[{min}, {max}]"),
                &format!(
                    "within [{lo}, {hi}], the range of any {} reading",
                    vital.key()
                ),
            ) {
                r.plausible_min = min as f32;
                r.plausible_max = max as f32;
            }
        }
        let span = f64::from(r.plausible_max - r.plausible_min);
        if let Some(bt) = self.table(path, "baseline", &t.baseline) {
            let bp = format!("{path}.baseline");
            r.baseline = BaselineRule {
                rise_percent: self.amount(&bp, "rise_percent", &bt.rise_percent, 100.0),
                rise_abs: self.amount(&bp, "rise", &bt.rise, span),
                fall_percent: self.amount(&bp, "fall_percent", &bt.fall_percent, 100.0),
                fall_abs: self.amount(&bp, "fall", &bt.fall, span),
                priority: self.val(&bp, "priority", &bt.priority),
            };
            let given = [&bt.rise_percent, &bt.rise, &bt.fall_percent, &bt.fall]
                .iter()
                .any(|v| v.is_some());
            if given {
                self.missing(&bp, "priority", bt.priority.is_some());
            }
        }
        match &t.rate {
            None => {}
            Some(Node::Off) => r.rate = None,
            Some(other @ (Node::Bad(_) | Node::Array(_))) => {
                let found = other.not_a_table().unwrap_or_default();
                let key = format!("{path}.rate");
                self.err(&key, format!("{key}: expected a table or \"off\", {found}"));
            }
            Some(Node::Table(rt)) => {
                let rp = format!("{path}.rate");
                self.unknown_under(&rp, fields_of::<raw::RawRate>());
                self.missing(&rp, "window", rt.window.is_some());
                self.missing(&rp, "priority", rt.priority.is_some());
                let window = self.dur_in(&rp, "window", &rt.window, (SEC, HOUR), "");
                let rise = self.amount(&rp, "rise", &rt.rise, span);
                let fall = self.amount(&rp, "fall", &rt.fall, span);
                let priority = self.val(&rp, "priority", &rt.priority);
                if rt.rise.is_none() && rt.fall.is_none() {
                    self.err(&rp, format!("{rp}: give rise, fall or both"));
                }
                if let (Some(window), Some(priority)) = (window, priority) {
                    r.rate = Some(RateRule {
                        window,
                        rise,
                        fall,
                        priority,
                    });
                }
            }
        }
        self.cross_check(path, &limits, &r);
        r
    }

    /// A rise or fall amount: above zero, at most `max`.
    fn amount(&mut self, path: &str, key: &str, v: &Option<Val<f64>>, max: f64) -> Option<f32> {
        let n = self.val(path, key, v)?;
        self.bound(
            &join(path, key),
            n > 0.0 && n <= max,
            n,
            &format!("greater than zero and at most {max}"),
        )
        .then_some(n as f32)
    }

    /// The checks between the limits of one vital, on the values as written.
    fn cross_check(&mut self, path: &str, limits: &[(&str, LimitAsWritten); 4], r: &VitalRules) {
        // Every pair in order: critical_low < low < high < critical_high.
        for (i, (a, la)) in limits.iter().enumerate() {
            for (b, lb) in &limits[i + 1..] {
                if let (Some(x), Some(y)) = (la.value, lb.value) {
                    if x >= y {
                        let at = if la.written { *a } else { *b };
                        self.err(
                            &format!("{path}.{at}"),
                            format!(
                                "{path}.{a} ({}) must be below {path}.{b} ({})",
                                shown(x),
                                shown(y)
                            ),
                        );
                    }
                }
            }
        }
        for (name, l) in limits {
            if let Some(v) = l.value {
                if v < r.plausible_min || v > r.plausible_max {
                    self.err(
                        &format!("{path}.{name}"),
                        format!(
                            "{path}.{name} ({}) lies outside the plausible range [{}, {}]",
                            shown(v),
                            r.plausible_min,
                            r.plausible_max
                        ),
                    );
                }
            }
            if name.starts_with("critical") && l.limit.is_some_and(|l| l.delay.is_some()) {
                let key = format!("{path}.{name}.delay");
                self.err(&key, format!("{key}: the critical tier never has a delay"));
            }
        }
    }

    /// `[alarms.apnoea]`: the delay stays within the monitors' own range
    /// (10-40 s, alarms.md "Breathing").
    fn apnoea(&mut self, t: &raw::RawApnoea, a: &mut ApnoeaRule) {
        let p = "alarms.apnoea";
        if let Some(b) = self.val(p, "enabled", &t.enabled) {
            a.enabled = b;
        }
        let why = " (the monitors' apnoea delay range)";
        if let Some(d) = self.dur_in(p, "delay", &t.delay, (10 * SEC, 40 * SEC), why) {
            a.delay = d;
        }
        if let Some(pr) = self.val(p, "priority", &t.priority) {
            a.priority = pr;
        }
    }

    fn nibp(&mut self, t: &raw::RawNibp, n: &mut NibpRules) {
        let p = "alarms.nibp";
        if let Some(c) = self.val(p, "confirm", &t.confirm) {
            match [NibpConfirm::High, NibpConfirm::Both, NibpConfirm::Off]
                .into_iter()
                .find(|k| k.key() == c)
            {
                Some(k) => n.confirm = k,
                None => self.err(
                    "alarms.nibp.confirm",
                    format!(
                        "alarms.nibp.confirm: expected \"high\", \"both\" or \"off\", found {c:?}"
                    ),
                ),
            }
        }
        if let Some(OrOff(w)) = self.val(p, "confirm_window", &t.confirm_window) {
            match w {
                None => n.confirm_window = None,
                Some(w) => {
                    let ok = (MIN..=2 * HOUR).contains(&w);
                    if self.bound(
                        "alarms.nibp.confirm_window",
                        ok,
                        format_duration(w),
                        "between 1min and 2h (or \"off\")",
                    ) {
                        n.confirm_window = Some(w);
                    }
                }
            }
        }
        if let Some(d) = self.dur_in(p, "cycle", &t.cycle, (MIN, 2 * HOUR), "") {
            n.cycle = d;
        }
        if let Some(d) = self.dur_in(p, "grace", &t.grace, (Duration::ZERO, HOUR), "") {
            n.grace = d;
        }
        if let Some(b) = self.val(p, "watch_cycle", &t.watch_cycle) {
            n.watch_cycle = b;
        }
        if let Some(b) = self.val(p, "combined_high", &t.combined_high) {
            n.combined_high = b;
        }
    }

    fn technical(&mut self, t: &BTreeMap<String, Val<Priority>>, tp: &mut TechnicalPriorities) {
        let p = "alarms.technical";
        let mut slots = technical_slots(tp);
        for (k, v) in t {
            match slots.iter_mut().find(|(name, _)| name == k) {
                Some((_, slot)) => {
                    if let Some(pr) = self.val(p, k, &Some(v.clone())) {
                        **slot = pr;
                    }
                }
                None => {
                    let names: Vec<&str> = slots.iter().map(|(name, _)| *name).collect();
                    let key = format!("{p}.{k}");
                    let msg = unknown_message(&key, Some(&names));
                    self.err(&key, msg);
                }
            }
        }
    }

    fn link(&mut self, t: &raw::RawLink, l: &mut LinkRules) {
        let p = "alarms.link";
        if let Some(d) = self.dur_in(p, "window", &t.window, (SEC, HOUR), "") {
            l.window = d;
        }
        if let Some(r) = self.val(p, "max_error_rate", &t.max_error_rate) {
            if self.bound(
                "alarms.link.max_error_rate",
                (0.0..1.0).contains(&r),
                r,
                "in [0, 1)",
            ) {
                l.max_error_rate = r as f32;
            }
        }
        if let Some(m) = self.int_in(p, "min_errors", &t.min_errors, (1, 10_000)) {
            l.min_errors = m as u32;
        }
    }

    pub(super) fn session(&mut self, t: &raw::RawSession, e: &mut EngineConfig) {
        if let Some(bt) = self.table("session", "baseline", &t.baseline) {
            let p = "session.baseline";
            if let Some(n) = self.int_in(p, "min_nibp_readings", &bt.min_nibp_readings, (1, 100)) {
                e.baseline_min.nibp_readings = n as u32;
            }
            if let Some(d) = self.dur_in(p, "min_continuous", &bt.min_continuous, (SEC, HOUR), "") {
                e.baseline_min.continuous = d;
            }
        }
        if let Some(dt) = self.table("session", "discharge", &t.discharge) {
            let p = "session.discharge";
            if let Some(w) = self.val(p, "within_percent", &dt.within_percent) {
                if self.bound(
                    "session.discharge.within_percent",
                    w > 0.0 && w <= 100.0,
                    w,
                    "in (0, 100]",
                ) {
                    e.discharge.within_percent = w as f32;
                }
            }
            if let Some(h) = self.dur_in(p, "hold", &dt.hold, (MIN, 4 * HOUR), "") {
                e.discharge.hold = h;
            }
        }
    }
}

/// One limit as resolved for the cross-field checks.
struct LimitAsWritten {
    /// The effective limit (the default when absent or not valid).
    limit: Option<Limit>,
    /// The number the cross-field checks compare: as written, the default
    /// when the key is absent, `None` when off or not a number.
    value: Option<f32>,
    /// Whether the file gives this limit.
    written: bool,
}

/// The range any reading of the vital can lie in: a plausible range must
/// stay inside it (SpO2 is a percentage; no heart beats 400 times a minute).
const fn reading_range(v: Vital) -> (f32, f32) {
    match v {
        Vital::HeartRate | Vital::PulseRate => (0.0, 350.0),
        Vital::SpO2 => (0.0, 100.0),
        Vital::NibpSystolic => (0.0, 350.0),
        Vital::NibpDiastolic | Vital::NibpMean => (0.0, 300.0),
        Vital::RespRate => (0.0, 200.0),
        Vital::EtCo2 => (0.0, 200.0),
    }
}
