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
//!
//! This file holds the checker and its leaf checks (`val`, `dur_in`,
//! `text`, ...) and walks the top level; each section has its file:
//! [`sources`] (`[[source]]`), [`alarms`] (`[alarms]`, `[session]`) and
//! [`outputs`] (`[recording]`, `[hl7]`, `[mqtt]`).

mod alarms;
mod outputs;
mod sources;

use core::time::Duration;

use super::raw::{self, fields_of, Node, RawConfig, Val};
use super::{format_duration, is_topic_safe, Config};

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
}
