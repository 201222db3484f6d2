//! The validate step: the raw structs as written, checked and turned into a
//! [`Config`], EVERY problem collected rather than the first.
//!
//! Each problem names its key (`alarms.spo2.low (95) must be below
//! alarms.spo2.high (90)`); the caller adds the file, line and column from
//! the key's place in the document. Cross-field checks compare the values
//! as written: a limit whose priority is misspelt still takes part with its
//! written number, and only an absent key stands for its default.
//!
//! Every number, duration and string has bounds, named in the message with
//! the allowed range (issue #12): durations between sane limits, alarm
//! limits inside the vital's plausible range which lies inside what any
//! reading of it can be, strings printable and bounded, MQTT topic parts
//! topic-safe.

use core::time::Duration;
use std::collections::BTreeMap;
use std::path::PathBuf;

use super::raw::{self, fields_of, Node, OrOff, RawConfig, Val};
use super::{
    format_duration, is_topic_safe, parse_broker_url, technical_slots, Config, Hl7Config, Link,
    MqttConfig, Parity, ProtocolKind, RecordingConfig, SourceConfig, StateDir,
};
use crate::engine::rules::{
    ApnoeaRule, BaselineRule, EngineConfig, Limit, LinkRules, NibpConfirm, NibpRules,
    QuestionablePolicy, RateRule, TechnicalPriorities, VitalRules,
};
use crate::engine::Priority;
use crate::vitals::Vital;

/// Longest file path or scenario name accepted (characters).
const MAX_PATH: usize = 1024;

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);
const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// Problems found so far: (the key whose place the problem is shown at, the message).
#[derive(Default)]
pub(super) struct Check {
    pub problems: Vec<(String, String)>,
    unknown: Vec<String>,
}

/// Validates `raw` (with the paths of its unknown keys). The configuration
/// is complete only when no problem was found.
pub(super) fn validate(raw: &RawConfig, unknown: Vec<String>) -> (Config, Check) {
    let mut c = Check {
        problems: Vec::new(),
        unknown,
    };
    let cfg = c.config(raw);
    for key in std::mem::take(&mut c.unknown) {
        let msg = unknown_message(&key, None);
        c.err(&key, msg);
    }
    (cfg, c)
}

fn parent(key: &str) -> &str {
    key.rsplit_once('.').map_or("", |(p, _)| p)
}

fn unknown_message(key: &str, expected: Option<&[&str]>) -> String {
    let leaf = key.rsplit_once('.').map_or(key, |(_, l)| l);
    if leaf.starts_with("$__toml_private") {
        // A date-time where a table belongs: toml hands it over as a map.
        return format!("{}: expected a table, found a date-time", parent(key));
    }
    match expected {
        Some(fields) => format!(
            "{key}: unknown key (expected one of: {})",
            fields.join(", ")
        ),
        None => format!("{key}: unknown key"),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// A written string in backticks, control characters escaped.
fn quoted(s: &str) -> String {
    format!("`{}`", s.escape_debug())
}

/// A number as the user wrote it (`95`, `0.2`).
fn shown(v: f32) -> String {
    format!("{v}")
}

impl Check {
    fn err(&mut self, key: &str, msg: String) {
        self.problems.push((key.to_owned(), msg));
    }

    /// Reports the unknown keys directly under `path`, listing `fields`.
    fn unknown_under(&mut self, path: &str, fields: &[&str]) {
        let (here, rest): (Vec<String>, Vec<String>) = std::mem::take(&mut self.unknown)
            .into_iter()
            .partition(|k| parent(k) == path);
        self.unknown = rest;
        for key in here {
            let msg = unknown_message(&key, Some(fields));
            self.err(&key, msg);
        }
    }

    /// A leaf as written: `None` when absent or not of its type (reported).
    fn val<T: Clone>(&mut self, path: &str, key: &str, v: &Option<Val<T>>) -> Option<T> {
        match v {
            None => None,
            Some(Val(Ok(t))) => Some(t.clone()),
            Some(Val(Err(e))) => {
                let key = join(path, key);
                self.err(&key, format!("{key}: {e}"));
                None
            }
        }
    }

    /// A table as written; unknown keys under it are reported.
    fn table<'n, T: serde::Deserialize<'n>>(
        &mut self,
        path: &str,
        key: &str,
        n: &'n Option<Node<T>>,
    ) -> Option<&'n T> {
        let here = join(path, key);
        match n.as_ref()? {
            Node::Table(t) => {
                self.unknown_under(&here, fields_of::<T>());
                Some(t)
            }
            other => {
                let found = other.not_a_table().unwrap_or_default();
                self.err(&here, format!("{here}: expected a table, {found}"));
                None
            }
        }
    }

    /// `ok`, or the problem `{key} ({value}) must be {rule}`.
    fn bound(&mut self, key: &str, ok: bool, value: impl core::fmt::Display, rule: &str) -> bool {
        if !ok {
            self.err(key, format!("{key} ({value}) must be {rule}"));
        }
        ok
    }

    /// A duration within `[min, max]`; out of range is reported (`why`
    /// appended), and `None` returned.
    fn dur_in(
        &mut self,
        path: &str,
        key: &str,
        v: &Option<Val<Duration>>,
        (min, max): (Duration, Duration),
        why: &str,
    ) -> Option<Duration> {
        let d = self.val(path, key, v)?;
        let rule = if min.is_zero() {
            format!("at most {}{why}", format_duration(max))
        } else {
            format!(
                "between {} and {}{why}",
                format_duration(min),
                format_duration(max)
            )
        };
        self.bound(
            &join(path, key),
            d >= min && d <= max,
            format_duration(d),
            &rule,
        )
        .then_some(d)
    }

    /// A number within `[min, max]`.
    fn num_in(
        &mut self,
        path: &str,
        key: &str,
        v: &Option<Val<f64>>,
        (min, max): (f64, f64),
    ) -> Option<f32> {
        let n = self.val(path, key, v)?;
        self.bound(
            &join(path, key),
            n >= min && n <= max,
            n,
            &format!("between {min} and {max}"),
        )
        .then_some(n as f32)
    }

    /// A whole number within `[min, max]`.
    fn int_in(
        &mut self,
        path: &str,
        key: &str,
        v: &Option<Val<i64>>,
        (min, max): (i64, i64),
    ) -> Option<i64> {
        let n = self.val(path, key, v)?;
        self.bound(
            &join(path, key),
            (min..=max).contains(&n),
            n,
            &format!("a whole number from {min} to {max}"),
        )
        .then_some(n)
    }

    /// A printable string of 1 to `max` characters (paths, names, addresses).
    fn text(
        &mut self,
        path: &str,
        key: &str,
        v: &Option<Val<String>>,
        max: usize,
    ) -> Option<String> {
        let s = self.val(path, key, v)?;
        let key = join(path, key);
        let len = s.chars().count();
        if let Some(c) = s.chars().find(|c| c.is_control()) {
            self.err(
                &key,
                format!(
                    "{key}: {} contains the control character U+{:04X} (only printable characters are allowed)",
                    quoted(&s),
                    u32::from(c)
                ),
            );
            None
        } else if len == 0 || len > max {
            self.err(
                &key,
                format!("{key}: must be 1 to {max} characters, found {len}"),
            );
            None
        } else {
            Some(s)
        }
    }

    /// A topic-safe name (site, bed, source name).
    fn name(
        &mut self,
        path: &str,
        key: &str,
        v: &Option<Val<String>>,
        why: &str,
    ) -> Option<String> {
        let s = self.val(path, key, v)?;
        if is_topic_safe(&s) {
            Some(s)
        } else {
            let key = join(path, key);
            self.err(
                &key,
                format!(
                    "{key}: {} must be 1-64 letters, digits, '-' or '_'{why}",
                    quoted(&s)
                ),
            );
            None
        }
    }

    fn missing(&mut self, path: &str, key: &str, written: bool) {
        if !written {
            let key = join(path, key);
            self.err(&key, format!("{key}: missing"));
        }
    }

    // ----- sections --------------------------------------------------------------

    fn config(&mut self, raw: &RawConfig) -> Config {
        self.unknown_under("", fields_of::<RawConfig>());
        let mut cfg = Config::default();
        if let Some(s) = self.table("", "site", &raw.site) {
            let why = " (it is part of MQTT topics)";
            if let Some(v) = self.name("site", "site", &s.site, why) {
                cfg.site = v;
            }
            if let Some(v) = self.name("site", "bed", &s.bed, why) {
                cfg.bed = v;
            }
        }
        match &raw.source {
            None => {}
            Some(Node::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let path = format!("source[{i}]");
                    match item {
                        Node::Table(t) => {
                            self.unknown_under(&path, fields_of::<raw::RawSource>());
                            if let Some(s) = self.source(&path, t) {
                                cfg.sources.push(s);
                            }
                        }
                        other => {
                            let found = other.not_a_table().unwrap_or_default();
                            self.err(
                                &path,
                                format!("{path}: expected a table ([[source]]), {found}"),
                            );
                        }
                    }
                }
            }
            Some(other) => {
                let found = other.not_a_table().unwrap_or_default();
                self.err(
                    "source",
                    format!("source: expected [[source]] tables, {found}"),
                );
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, s) in cfg.sources.iter().enumerate() {
            if !seen.insert(s.name.clone()) {
                self.problems.push((
                    format!("source[{i}].name"),
                    format!("source: the name `{}` is used twice", s.name),
                ));
            }
        }
        if let Some(a) = self.table("", "alarms", &raw.alarms) {
            self.alarms(a, &mut cfg.engine);
        }
        if let Some(s) = self.table("", "session", &raw.session) {
            self.session(s, &mut cfg.engine);
        }
        if let Some(r) = self.table("", "recording", &raw.recording) {
            self.recording(r, &mut cfg.recording);
        }
        if let Some(m) = self.table("", "mqtt", &raw.mqtt) {
            self.mqtt(m, &mut cfg.mqtt);
        }
        if let Some(h) = self.table("", "hl7", &raw.hl7) {
            cfg.hl7 = self.hl7(h);
        }
        cfg.engine.source_names = cfg.sources.iter().map(|s| s.name.clone()).collect();
        cfg
    }

    fn source(&mut self, path: &str, t: &raw::RawSource) -> Option<SourceConfig> {
        self.missing(path, "name", t.name.is_some());
        let name = self.name(path, "name", &t.name, "");
        self.missing(path, "protocol", t.protocol.is_some());
        let protocol = self.val(path, "protocol", &t.protocol).and_then(|p| {
            let found = ProtocolKind::ALL.into_iter().find(|k| k.key() == p);
            if found.is_none() {
                let names: Vec<_> = ProtocolKind::ALL.iter().map(|k| k.key()).collect();
                self.err(
                    &format!("{path}.protocol"),
                    format!(
                        "{path}.protocol: unknown protocol `{p}` (expected one of: {})",
                        names.join(", ")
                    ),
                );
            }
            found
        });
        let links: Vec<&str> = [
            ("serial", t.serial.is_some()),
            ("tcp", t.tcp.is_some()),
            ("simulated", t.simulated.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, present)| present.then_some(k))
        .collect();
        if links.len() != 1 {
            self.err(
                path,
                format!(
                    "{path}: give exactly one of serial = \"/dev/...\", tcp = \"host:port\" or simulated = \"scenario\" (found {})",
                    if links.is_empty() { "none".to_owned() } else { links.join(" and ") }
                ),
            );
        }
        let timeout = self
            .dur_in(path, "timeout", &t.timeout, (SEC, HOUR), "")
            .unwrap_or(Duration::from_secs(10));
        let vitals = match self.val(path, "vitals", &t.vitals) {
            None => Vital::ALL.to_vec(),
            Some(names) => {
                let key = format!("{path}.vitals");
                let mut out = Vec::new();
                for n in names {
                    match n.parse::<Vital>() {
                        Ok(v) if !out.contains(&v) => out.push(v),
                        Ok(v) => self.err(&key, format!("{key}: `{v}` listed twice")),
                        Err(e) => self.err(&key, format!("{key}: {e}")),
                    }
                }
                if out.is_empty() {
                    self.err(&key, format!("{key}: list at least one vital"));
                }
                out
            }
        };
        let link = match links.first().copied() {
            Some("serial") if links.len() == 1 => {
                let device = self.text(path, "serial", &t.serial, MAX_PATH);
                let mut settings = protocol.unwrap_or(ProtocolKind::Line).default_serial();
                if let Some(b) = self.int_in(path, "baud", &t.baud, (50, 4_000_000)) {
                    settings.baud = b as u32;
                }
                if let Some(p) = self.val(path, "parity", &t.parity) {
                    match p.as_str() {
                        "none" => settings.parity = Parity::None,
                        "even" => settings.parity = Parity::Even,
                        "odd" => settings.parity = Parity::Odd,
                        _ => self.err(
                            &format!("{path}.parity"),
                            format!("{path}.parity: `{p}` (expected none, even or odd)"),
                        ),
                    }
                }
                if let Some(s) = self.int_in(path, "stop_bits", &t.stop_bits, (1, 2)) {
                    settings.stop_bits = s as u8;
                }
                if let Some(f) = self.val(path, "rts_cts", &t.rts_cts) {
                    settings.rts_cts = f;
                }
                device.map(|d| Link::Serial {
                    device: PathBuf::from(d),
                    settings,
                })
            }
            Some("tcp") if links.len() == 1 => {
                self.text(path, "tcp", &t.tcp, 260).and_then(|a| {
                    let ok = a.rsplit_once(':').is_some_and(|(h, p)| {
                        !h.is_empty() && h.len() <= 253 && p.parse::<u16>().is_ok()
                    });
                    if !ok {
                        self.err(
                            &format!("{path}.tcp"),
                            format!("{path}.tcp: `{a}` is not host:port with a port up to 65535 (e.g. \"10.1.2.3:4001\")"),
                        );
                    }
                    ok.then_some(Link::Tcp { address: a })
                })
            }
            Some("simulated") if links.len() == 1 => {
                let scenario = self.text(path, "simulated", &t.simulated, MAX_PATH);
                let speed = self.val(path, "speed", &t.speed).unwrap_or(1.0);
                let speed_ok = speed > 0.0 && speed <= 10_000.0;
                self.bound(&format!("{path}.speed"), speed_ok, speed, "above 0 and at most 10000");
                let seed = self.int_in(path, "seed", &t.seed, (0, i64::MAX)).unwrap_or(1);
                scenario.filter(|_| speed_ok).map(|scenario| Link::Simulated {
                    scenario,
                    speed,
                    seed: seed as u64,
                })
            }
            _ => None,
        };
        if links != ["serial"] {
            for (k, present) in [
                ("baud", t.baud.is_some()),
                ("parity", t.parity.is_some()),
                ("stop_bits", t.stop_bits.is_some()),
                ("rts_cts", t.rts_cts.is_some()),
            ] {
                if present {
                    let key = format!("{path}.{k}");
                    self.err(&key, format!("{key}: only applies to serial sources"));
                }
            }
        }
        if links != ["simulated"] {
            for (k, present) in [("speed", t.speed.is_some()), ("seed", t.seed.is_some())] {
                if present {
                    let key = format!("{path}.{k}");
                    self.err(&key, format!("{key}: only applies to simulated sources"));
                }
            }
        }
        Some(SourceConfig {
            name: name?,
            protocol: protocol?,
            link: link?,
            timeout,
            vitals,
        })
    }

    fn alarms(&mut self, t: &raw::RawAlarms, e: &mut EngineConfig) {
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

    fn session(&mut self, t: &raw::RawSession, e: &mut EngineConfig) {
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

    fn hl7(&mut self, t: &raw::RawHl7) -> Option<Hl7Config> {
        let p = "hl7";
        self.missing(p, "to", t.to.is_some());
        let to = self.text(p, "to", &t.to, 255)?;
        let port_ok = to.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !port_ok {
            self.err(
                "hl7.to",
                format!("hl7.to: `{to}` is not \"host:port\" (e.g. \"ehr.clinic.example:2575\")"),
            );
            return None;
        }
        let mut h = Hl7Config::to(&to);
        if let Some(d) = self.dur_in(p, "interval", &t.interval, (SEC, DAY), "") {
            h.interval = d;
        }
        if let Some(d) = self.dur_in(p, "timeout", &t.timeout, (MS, 2 * MIN), "") {
            h.timeout = d;
        }
        if let Some(b) = self.val(p, "tls", &t.tls) {
            h.tls = b;
        }
        if let Some(f) = self.text(p, "ca_file", &t.ca_file, MAX_PATH) {
            h.ca_file = Some(PathBuf::from(f));
        }
        match (h.tls, &h.ca_file) {
            (true, None) => self.err(
                "hl7.ca_file",
                "hl7.ca_file: hl7.tls = true needs the CA certificate file (PEM) that signs the receiver's certificate".into(),
            ),
            (false, Some(_)) => self.err(
                "hl7.tls",
                "hl7.tls: hl7.ca_file is given but tls is off: set tls = true to send over TLS, or remove ca_file".into(),
            ),
            _ => {}
        }
        Some(h)
    }

    fn recording(&mut self, t: &raw::RawRecording, r: &mut RecordingConfig) {
        let p = "recording";
        if let Some(b) = self.val(p, "enabled", &t.enabled) {
            r.enabled = b;
        }
        if let Some(d) = self.text(p, "dir", &t.dir, MAX_PATH) {
            r.dir = PathBuf::from(d);
        }
        if let Some(d) = self.dur_in(p, "retention", &t.retention, (DAY, 3650 * DAY), "") {
            r.retention = d;
        }
        if let Some(d) = self.dur_in(p, "sync_every", &t.sync_every, (MS, MIN), "") {
            r.sync_every = d;
        }
    }

    /// A file path, or `"off"`.
    fn optional_path(&mut self, key: &str, v: &Option<Val<String>>) -> Option<Option<PathBuf>> {
        match v {
            Some(Val(Ok(s))) if s == "off" => Some(None),
            _ => self
                .text("mqtt", key, v, MAX_PATH)
                .map(|s| Some(PathBuf::from(s))),
        }
    }

    fn mqtt(&mut self, t: &raw::RawMqtt, m: &mut MqttConfig) {
        let p = "mqtt";
        if let Some(b) = self.val(p, "enabled", &t.enabled) {
            m.enabled = b;
        }
        if let Some(b) = self.val(p, "embedded", &t.embedded) {
            m.embedded = b;
        }
        if let Some(v) = self.val(p, "listen", &t.listen) {
            match v.parse() {
                Ok(a) => m.listen = a,
                Err(_) => self.err(
                    "mqtt.listen",
                    format!("mqtt.listen: `{v}` is not an address:port (e.g. \"127.0.0.1:1883\")"),
                ),
            }
        }
        if let Some(v) = self.text(p, "broker", &t.broker, 300) {
            match parse_broker_url(&v) {
                Ok(_) => m.broker = v,
                Err(e) => self.err(
                    "mqtt.broker",
                    format!(
                        "mqtt.broker: `{v}` {e} (e.g. \"mqtt://127.0.0.1:1883\" or \"mqtts://broker.example:8883\")"
                    ),
                ),
            }
        }
        if let Some(v) = self.val(p, "prefix", &t.prefix) {
            let bad = v.is_empty()
                || !v.ends_with('/')
                || v.starts_with('/')
                || v.len() > 200
                || v.contains(['+', '#'])
                || v.chars().any(char::is_control)
                || v.contains("//");
            let unknown_placeholder = v
                .replace("{site}", "")
                .replace("{bed}", "")
                .contains(['{', '}']);
            if bad || unknown_placeholder {
                self.err(
                    "mqtt.prefix",
                    format!(
                        "mqtt.prefix: {} must be a topic path of at most 200 printable characters ending in '/', without '+', '#', empty levels or placeholders other than {{site}} and {{bed}}",
                        quoted(&v)
                    ),
                );
            } else {
                m.prefix = v;
            }
        }
        if let Some(v) = self.val(p, "client_id", &t.client_id) {
            let plain = v.replace("{site}", "").replace("{bed}", "");
            if v.is_empty()
                || v.len() > 64
                || !plain
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                self.err(
                    "mqtt.client_id",
                    format!(
                        "mqtt.client_id: {} must be 1-64 letters, digits, '-' or '_' (placeholders {{site}} and {{bed}} allowed)",
                        quoted(&v)
                    ),
                );
            } else {
                m.client_id = v;
            }
        }
        for (key, v, slot) in [
            (
                "credentials_file",
                &t.credentials_file,
                &mut m.credentials_file,
            ),
            ("ca_file", &t.ca_file, &mut m.ca_file),
            ("client_cert", &t.client_cert, &mut m.client_cert),
            ("client_key", &t.client_key, &mut m.client_key),
        ] {
            if let Some(path) = self.optional_path(key, v) {
                *slot = path;
            }
        }
        if let Some(v) = self.val(p, "protocol", &t.protocol) {
            match crate::mqtt::wire::Protocol::parse(&v) {
                Some(proto) => m.protocol = proto,
                None => self.err(
                    "mqtt.protocol",
                    format!(
                        "mqtt.protocol: {} must be \"5\" (MQTT 5, the default) or \"3.1.1\" (for a broker that does not speak MQTT 5)",
                        quoted(&v)
                    ),
                ),
            }
        }
        if let Some(d) = self.dur_in(p, "vitals_expiry", &t.vitals_expiry, (SEC, HOUR), "") {
            m.vitals_expiry = d;
        }
        if let Some(d) = self.dur_in(p, "heartbeat", &t.heartbeat, (100 * MS, MIN), "") {
            m.heartbeat = d;
        }
        if let Some(d) = self.dur_in(
            p,
            "unreachable_after",
            &t.unreachable_after,
            (SEC, HOUR),
            "",
        ) {
            m.unreachable_after = d;
        }
        if let Some(d) = self.dur_in(p, "command_max_age", &t.command_max_age, (SEC, HOUR), "") {
            m.command_max_age = d;
        }
        match &t.state_dir {
            Some(Val(Ok(s))) if s == "auto" => m.state_dir = StateDir::Auto,
            v => {
                if let Some(dir) = self.text(p, "state_dir", v, MAX_PATH) {
                    m.state_dir = StateDir::Path(PathBuf::from(dir));
                }
            }
        }
        if let Some(n) = self.int_in(p, "outbox_max", &t.outbox_max, (10, 1_000_000)) {
            m.outbox_max = n as u32;
        }
        let tls = parse_broker_url(&m.broker).is_ok_and(|u| u.tls);
        if tls && !m.embedded && m.ca_file.is_none() {
            self.err(
                "mqtt.broker",
                format!(
                    "mqtt.ca_file: `{}` uses TLS: give the CA certificate file that signs the broker's certificate",
                    m.broker
                ),
            );
        }
        if m.client_cert.is_some() != m.client_key.is_some() {
            let at = if m.client_cert.is_some() {
                "mqtt.client_cert"
            } else {
                "mqtt.client_key"
            };
            self.err(
                at,
                "mqtt.client_cert and mqtt.client_key: give both or neither".into(),
            );
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
